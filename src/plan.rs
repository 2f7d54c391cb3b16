//! Pure planning: (spec, status, zones, what runs now, time) → the desired child objects.
//!
//! The controller shell feeds observations in and applies what comes out; everything here is
//! deterministic and free of I/O, so it is tested in microseconds.

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;

use crate::api::CourseService;
use crate::render::deployment::AppTemplate;
use crate::render::{self, Child, Context};
use crate::rollout::{self, Decision, UserAction};
use crate::validate::{InvalidSpec, validate};
use crate::zones::{self, Zone, ZoneHealth, ZoneObserved, ZoneSplit};

/// One application Deployment as the cluster shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct ObservedDeployment {
    pub revision: String,
    /// Zone slug from the Deployment's zone label.
    pub zone: String,
    pub replicas: i32,
    pub ready: i32,
    /// Its pod template, so an older revision can be re-sized after the spec moved on.
    pub template: Option<AppTemplate>,
}

/// What the cluster runs now for one CourseService, as far as planning needs it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    /// Application Deployments (every revision), by name.
    pub deployments: BTreeMap<String, ObservedDeployment>,
    /// The rollout-action annotation, when it has not been handled yet.
    pub action: Option<String>,
    /// Time of this reconcile.
    pub now: Option<Timestamp>,
}

impl Observed {
    /// Revision → zone → counts, for the zones the CourseService runs in.
    pub fn by_revision(&self, zones: &[ZoneHealth]) -> BTreeMap<String, BTreeMap<Zone, ZoneObserved>> {
        let mut result: BTreeMap<String, BTreeMap<Zone, ZoneObserved>> = BTreeMap::new();
        for d in self.deployments.values() {
            if let Some(zone) = zones.iter().map(|z| &z.zone).find(|z| z.slug() == d.zone) {
                let entry = result.entry(d.revision.clone()).or_default().entry(zone.clone()).or_default();
                entry.replicas += d.replicas;
                entry.ready += d.ready;
            }
        }
        result
    }
}

/// The outcome of planning one CourseService.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Revision (pod template hash) of the spec.
    pub revision: String,
    /// Replicas per zone the spec asks for once capacity has settled.
    pub split: ZoneSplit,
    /// The rollout decision: sizes per revision and zone, Service pin, rollout status.
    pub rollout: Decision,
    /// Every child object that should exist, fully rendered.
    pub children: Vec<Child>,
}

/// Validates `cs` and plans its children; an invalid spec yields no plan at all, so the caller
/// cannot touch any child because of bad input.
pub fn plan(cs: &CourseService, zones: &[ZoneHealth], observed: &Observed) -> Result<Plan, InvalidSpec> {
    validate(cs)?;
    let ctx = Context::new(cs);
    let template = render::deployment::app_template(&ctx);
    let split = zones::split(cs.spec.replicas, zones, ctx.name);
    let by_revision = observed.by_revision(zones);
    let action = observed.action.as_deref().and_then(|raw| UserAction::parse(raw).map(|a| (raw, a)));
    let decision = rollout::decide(&rollout::Inputs {
        strategy: &cs.spec.strategy,
        total: cs.spec.replicas,
        max_unavailable: cs.spec.disruption.max_unavailable,
        new_revision: &template.revision,
        previous: cs.status.as_ref().and_then(|s| s.rollout.as_ref()),
        observed: &by_revision,
        zones,
        seed: ctx.name,
        now: observed.now.unwrap_or(Timestamp::UNIX_EPOCH),
        action,
    });

    let mut children = Vec::new();
    for (revision, sizes) in &decision.targets {
        let revision_template = if *revision == template.revision {
            Some(&template)
        } else {
            observed.deployments.values().filter(|d| d.revision == *revision).find_map(|d| d.template.as_ref())
        };
        // An older revision whose Deployments are all gone cannot be re-rendered; it is simply
        // no longer desired.
        let Some(revision_template) = revision_template else { continue };
        // Lost zones keep a Deployment at zero replicas, ready to take their share back.
        for (zone, replicas) in sizes {
            let deployment = render::deployment::deployment(&ctx, revision_template, zone, *replicas);
            children.push(Child::Deployment(Box::new(deployment)));
        }
    }
    children.push(Child::Service(Box::new(render::service::main(&ctx, decision.service_revision.as_deref()))));
    if let Some(preview) = &decision.preview_revision {
        children.push(Child::Service(Box::new(render::service::preview(&ctx, preview))));
    }
    children.push(Child::PodDisruptionBudget(Box::new(render::pdb::app(&ctx))));
    if let Some(autoscaling) = &cs.spec.autoscaling {
        children.push(Child::HorizontalPodAutoscaler(Box::new(render::hpa::hpa(&ctx, autoscaling))));
    }
    Ok(Plan { revision: template.revision, split, rollout: decision, children })
}
