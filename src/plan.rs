//! Pure planning: (spec, zones, what runs now) → the desired child objects.
//!
//! The controller shell feeds observations in and applies what comes out; everything here is
//! deterministic and free of I/O, so it is tested in microseconds.

use std::collections::BTreeMap;

use crate::api::CourseService;
use crate::names;
use crate::render::{self, Child, Context};
use crate::validate::{InvalidSpec, validate};
use crate::zones::{self, Zone, ZoneHealth, ZoneObserved, ZoneSplit};

/// What the cluster runs now for one CourseService, as far as planning needs it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    /// Replicas and Ready pods of each application Deployment, by Deployment name.
    pub deployments: BTreeMap<String, ZoneObserved>,
}

/// The outcome of planning one CourseService.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Revision (pod template hash) of the spec.
    pub revision: String,
    /// Replicas per zone the spec asks for once capacity has settled.
    pub split: ZoneSplit,
    /// Replicas per zone to ask for now (the split, paced by the disruption budget).
    pub paced: ZoneSplit,
    /// Every child object that should exist, fully rendered.
    pub children: Vec<Child>,
    /// The current revision has enough Ready pods (replicas - maxUnavailable) for older
    /// revisions' Deployments to be removed without dropping below the disruption budget.
    pub revision_available: bool,
}

/// Validates `cs` and plans its children; an invalid spec yields no plan at all, so the caller
/// cannot touch any child because of bad input.
pub fn plan(cs: &CourseService, zones: &[ZoneHealth], observed: &Observed) -> Result<Plan, InvalidSpec> {
    validate(cs)?;
    let ctx = Context::new(cs);
    let template = render::deployment::app_template(&ctx);
    let split = zones::split(cs.spec.replicas, zones, ctx.name);
    let current: BTreeMap<Zone, ZoneObserved> = split
        .iter()
        .filter_map(|(zone, _)| {
            let name = names::app_deployment(ctx.name, &template.revision, zone);
            observed.deployments.get(&name).map(|o| (zone.clone(), *o))
        })
        .collect();
    let paced = zones::pace(&split, &current, cs.spec.disruption.max_unavailable);

    // Lost zones keep a Deployment at zero replicas, ready to take their share back.
    let mut children: Vec<Child> = paced
        .iter()
        .map(|(zone, replicas)| {
            Child::Deployment(Box::new(render::deployment::deployment(&ctx, &template, zone, *replicas)))
        })
        .collect();
    children.push(Child::Service(Box::new(render::service::main(&ctx, None))));
    children.push(Child::PodDisruptionBudget(Box::new(render::pdb::app(&ctx))));
    if let Some(autoscaling) = &cs.spec.autoscaling {
        children.push(Child::HorizontalPodAutoscaler(Box::new(render::hpa::hpa(&ctx, autoscaling))));
    }
    let ready: i32 = current.values().map(|o| o.ready).sum();
    let floor = cs.spec.replicas - cs.spec.disruption.max_unavailable;
    let revision_available = ready >= floor.max(0);
    Ok(Plan { revision: template.revision, split, paced, children, revision_available })
}
