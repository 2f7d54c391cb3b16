//! Pure planning: (validated spec, status, zones, what runs now, time) → decisions.
//!
//! A [`Plan`] holds every choice the operator makes that the spec alone does not say: the
//! rollout's sizes per revision and zone, which revision the Services select, what the
//! database may be given yet, whether an earlier build's workloads may go. `render::children`
//! turns it into objects. Everything here is deterministic and free of I/O, so it is tested in
//! microseconds.

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;

use crate::api::CourseService;
use crate::names;
use crate::observe::Observed;
use crate::render::{self, Child, Images};
use crate::rollout::{self, Decision, UserAction};
use crate::validate::{FieldError, InvalidSpec, ValidatedCourse};
use crate::zones::{ZoneHealth, ZoneSplit};

/// What the operator decided for one CourseService.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Revision (pod template hash) of the spec.
    pub revision: String,
    /// The rollout decision: sizes per revision and zone, Service pin, rollout status.
    pub rollout: Decision,
    /// The operator's own database; `None` without one (or with an external one).
    pub database: Option<DatabasePlan>,
    /// Every desired application ReplicaSet runs at its size with every replica a Ready
    /// endpoint behind the Services: per-zone Deployments of an earlier build may go now.
    pub workloads_serving: bool,
}

/// What the database may be given in this reconcile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatabasePlan {
    /// Name of the init Job of the current replica-set config.
    pub init_job: String,
    /// The members StatefulSet keeps at least this many replicas (0: no floor). MongoDB
    /// removes members one at a time through the init Job; shrinking the StatefulSet first
    /// would kill members the replica set still counts on (5 → 1 would lose the majority), so
    /// it keeps its current size until the Job for the new config has succeeded.
    pub members_floor: i32,
    /// Whether the application's connection-string Secret is written now (see
    /// [`publish_app_secret`]).
    pub publish_app_secret: bool,
}

/// What `course-operator render`, the benches and the tests want in one call: the plan and the
/// children rendered from it.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    pub plan: Plan,
    pub children: Vec<Child>,
}

/// Validates, plans and renders `cs` in one go (nothing observed between the steps).
pub fn desired(
    cs: &CourseService,
    zones: &[ZoneHealth],
    observed: &Observed,
    images: &Images,
) -> Result<Desired, InvalidSpec> {
    let course = ValidatedCourse::new(cs, images)?;
    let plan = plan(&course, zones, observed)?;
    let children = render::children(&course, &plan, observed);
    Ok(Desired { plan, children })
}

/// Plans a validated CourseService. `Err` only when what it needs from outside the spec is
/// missing (an external database's Secret): the caller must then touch no child.
pub fn plan(course: &ValidatedCourse<'_>, zones: &[ZoneHealth], observed: &Observed) -> Result<Plan, InvalidSpec> {
    // pods whose connection string is missing could not start: touch nothing until it exists
    if let Some(Err(missing)) = &observed.external_database {
        let field = "spec.database.external.uriSecret";
        return Err(InvalidSpec(vec![FieldError { field: field.into(), message: format!("{field}: {missing}") }]));
    }
    let cs = course.cs();
    let action = observed.action.as_deref().and_then(|raw| UserAction::parse(raw).map(|a| (raw, a)));
    let mut decision = rollout::decide(&rollout::Inputs {
        strategy: &cs.spec.strategy,
        total: cs.spec.replicas,
        max_unavailable: cs.spec.disruption.max_unavailable,
        new_revision: course.revision(),
        previous: cs.status.as_ref().and_then(|s| s.rollout.as_ref()),
        observed: &observed.by_revision(zones),
        zones,
        seed: course.ctx.name,
        now: observed.now.unwrap_or(Timestamp::UNIX_EPOCH),
        action,
        analysis: observed.analysis.as_ref(),
        new_pod_restarts: observed.new_pod_restarts,
    });
    create_only_workloads_with_pods(&mut decision.targets, course.ctx.name, observed);
    let database = cs.spec.database.as_ref().filter(|d| d.enabled && d.external.is_none()).map(|db| {
        let init_job = render::mongo::init_job_name(&course.ctx, db);
        let reconfigured = observed.succeeded_jobs.contains(&init_job);
        let current = observed.statefulsets.get(&names::database(course.ctx.name)).map_or(0, |s| s.replicas);
        DatabasePlan {
            members_floor: if reconfigured { 0 } else { current },
            publish_app_secret: publish_app_secret(observed, reconfigured),
            init_job,
        }
    });
    let workloads_serving = workloads_serving(course, &decision, observed);
    Ok(Plan { revision: course.revision().to_owned(), rollout: decision, database, workloads_serving })
}

/// The application's connection string names the init Job's user and its password. It is
/// written only from credentials already stored in their Secret (a cache lagging behind the
/// Secret must not publish a password no member will ever know). A new set gets it at once (the
/// app starts and connects once the init Job has created its user); once it exists, it is
/// rewritten only after the Job of the current config succeeded (`current_job_done`): a Job of
/// a newer script may be the one that creates the user (an upgrade from root credentials), so
/// until then the Secret keeps its previous connection string. (Older Jobs are no proof of
/// anything: the one a new config replaces is pruned as the new one is applied, and finished
/// Jobs expire.) Secrets are never pruned, so leaving it out keeps it as it is.
fn publish_app_secret(observed: &Observed, current_job_done: bool) -> bool {
    !observed.database_credentials_unsaved && (current_job_done || !observed.database_app_secret_exists)
}

/// Leaves out of `targets` every ReplicaSet that would run 0 pods and does not exist: it is
/// created once it has pods to run, and one that exists is still scaled to 0 (then removed with
/// its revision). Each new ReplicaSet costs kube-controller-manager a status write, at 20 per
/// second with its default client limits: a canary's first step on 3 zones would otherwise
/// create two empty ones per CourseService, and a service with fewer replicas than zones one.
fn create_only_workloads_with_pods(targets: &mut BTreeMap<String, ZoneSplit>, name: &str, observed: &Observed) {
    for (revision, sizes) in targets.iter_mut() {
        sizes.retain(|(zone, n)| *n > 0 || observed.workloads.contains_key(&names::app_workload(name, revision, zone)));
    }
}

/// Whether every application ReplicaSet the decision keeps (of a revision whose template is
/// known: the others cannot be rendered) runs at its desired size as the cache shows it, with
/// every replica a Ready endpoint behind the Services: what users' requests reach, not only
/// the ReplicaSet status.
fn workloads_serving(course: &ValidatedCourse<'_>, decision: &Decision, observed: &Observed) -> bool {
    decision
        .targets
        .iter()
        .filter(|(revision, _)| course.template_for(revision, observed).is_some())
        .flat_map(|(revision, sizes)| sizes.iter().map(move |(zone, n)| (revision, zone, *n)))
        .all(|(revision, zone, desired)| {
            let name = names::app_workload(course.ctx.name, revision, zone);
            observed.workloads.get(&name).is_some_and(|o| o.replicas == desired)
                && observed.serving.get(&name).copied().unwrap_or(0) >= desired
        })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::*;
    use crate::database::DatabaseCredentials;
    use crate::manifest;
    use crate::observe::{ObservedStatefulSet, ObservedWorkload, serving_by_workload};
    use crate::zones::{Zone, ZoneInventory};

    fn sample(name: &str) -> CourseService {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("manifests/samples/{name}.yaml"));
        manifest::parse(&std::fs::read_to_string(path).expect("read sample")).expect("sample parses")
    }

    fn has_app_secret(cs: &CourseService, observed: &Observed) -> bool {
        let app_secret = names::database_app_secret(cs.metadata.name.as_deref().unwrap_or_default());
        let planned = desired(cs, &[], observed, &Images::default()).expect("the sample is valid");
        planned.children.iter().any(|c| matches!(c, Child::Secret(_)) && c.name() == app_secret)
    }

    #[test]
    fn the_app_secret_is_written_from_stored_credentials_once_its_user_exists() {
        let cs = sample("full-stack");
        let ctx = render::Context::new(&cs);
        let db = cs.spec.database.clone().expect("full-stack has a database");
        let current_job = render::mongo::init_job(&ctx, &db).metadata.name.expect("job name");
        let observed = |unsaved: bool, secret_exists: bool, jobs: &[&str]| Observed {
            database_credentials: Some(DatabaseCredentials::generate()),
            database_credentials_unsaved: unsaved,
            database_app_secret_exists: secret_exists,
            statefulsets: [(names::database(ctx.name), ObservedStatefulSet { replicas: 3, ready: 3 })].into(),
            succeeded_jobs: jobs.iter().map(|j| (*j).to_owned()).collect(),
            ..Observed::default()
        };
        assert!(!has_app_secret(&cs, &observed(true, false, &[])), "credentials not stored yet");
        assert!(
            has_app_secret(&cs, &observed(false, false, &[])),
            "a new set (members running, its first Job not done): published with the stored credentials"
        );
        assert!(
            !has_app_secret(&cs, &observed(false, true, &[])),
            "an existing Secret (older config or root URI; the older Job pruned): kept as it is until the current Job is done"
        );
        assert!(has_app_secret(&cs, &observed(false, true, &[&current_job])), "the current Job created the user");
        assert!(!has_app_secret(&cs, &observed(true, true, &[&current_job])), "never from unsaved credentials");
    }

    /// The ReplicaSet of `course`'s current revision in `zone`, by name, with `replicas` all Ready.
    fn running(course: &ValidatedCourse<'_>, zone: &str, replicas: i32) -> (String, ObservedWorkload) {
        let name = names::app_workload(course.ctx.name, course.revision(), &Zone::Named(zone.into()));
        let revision = course.revision().to_owned();
        (name, ObservedWorkload { revision, zone: zone.to_owned(), replicas, ready: replicas, template: None })
    }

    #[test]
    fn workloads_serve_once_every_desired_replica_set_has_its_ready_endpoints() {
        let mut cs = sample("minimal");
        cs.spec.replicas = 2;
        let images = Images::default();
        let course = ValidatedCourse::new(&cs, &images).expect("valid");
        let zones = ZoneInventory::healthy_zones(&["zone-a", "zone-b"]).for_spec(&[]);
        let name = |zone: &str| names::app_workload(course.ctx.name, course.revision(), &Zone::Named(zone.into()));
        let observed = |sizes: &[(&str, i32)], pods: &[String]| Observed {
            workloads: sizes.iter().map(|(zone, n)| running(&course, zone, *n)).collect::<BTreeMap<_, _>>(),
            serving: serving_by_workload(pods.iter().map(String::as_str)),
            ..Observed::default()
        };
        let serving = |planned: Result<Plan, InvalidSpec>| planned.expect("plan").workloads_serving;
        let pods = |zone: &str, n: usize| (0..n).map(|i| format!("{}-pod{i}", name(zone))).collect::<Vec<_>>();
        let both = [pods("zone-a", 1), pods("zone-b", 1)].concat();
        assert!(serving(plan(&course, &zones, &observed(&[("zone-a", 1), ("zone-b", 1)], &both))));
        assert!(
            !serving(plan(&course, &zones, &observed(&[("zone-a", 1), ("zone-b", 1)], &pods("zone-a", 1)))),
            "the status may say Ready, the EndpointSlices show zone-b's pod not yet"
        );
        assert!(!serving(plan(&course, &zones, &observed(&[("zone-a", 1)], &both))), "one not created yet");
        assert!(
            !serving(plan(&course, &zones, &observed(&[("zone-a", 0), ("zone-b", 1)], &both))),
            "the cache has not seen the new size yet"
        );
    }

    #[test]
    fn a_replica_set_with_no_pods_is_never_created_but_one_that_exists_is_scaled_to_zero() {
        let mut cs = sample("minimal");
        cs.spec.replicas = 2;
        let images = Images::default();
        let course = ValidatedCourse::new(&cs, &images).expect("valid");
        let zones = ZoneInventory::healthy_zones(&["zone-a", "zone-b", "zone-c"]).for_spec(&[]);
        let replica_sets = |observed: &Observed| {
            let planned = desired(&cs, &zones, observed, &images).expect("valid");
            let names: Vec<String> = planned
                .children
                .iter()
                .filter(|c| matches!(c, Child::ReplicaSet(_)))
                .map(|c| c.name().to_owned())
                .collect();
            (planned.plan.rollout.targets[course.revision()].clone(), names)
        };

        let (sizes, created) = replica_sets(&Observed::default());
        assert_eq!(sizes.iter().map(|(_, n)| n).sum::<i32>(), 2, "{sizes:?}");
        assert!(sizes.iter().all(|(_, n)| *n > 0), "2 replicas over 3 zones: no empty ReplicaSet created: {sizes:?}");
        assert_eq!(created.len(), 2, "{created:?}");

        let empty_zone = ["zone-a", "zone-b", "zone-c"]
            .into_iter()
            .find(|z| !sizes.iter().any(|(zone, _)| zone.slug() == *z))
            .expect("one zone has no pod");
        // The same service after a scale-down from 3: the third zone's ReplicaSet is there, empty.
        let (existing, _) = running(&course, empty_zone, 0);
        let observed = Observed {
            workloads: ["zone-a", "zone-b", "zone-c"]
                .into_iter()
                .map(|z| running(&course, z, i32::from(z != empty_zone)))
                .collect::<BTreeMap<_, _>>(),
            ..Observed::default()
        };
        let (sizes, rendered) = replica_sets(&observed);
        assert!(
            sizes.iter().any(|(zone, n)| zone.slug() == empty_zone && *n == 0),
            "the existing one is kept, at 0: {sizes:?}"
        );
        assert!(rendered.contains(&existing), "{rendered:?}");
        assert_eq!(rendered.len(), 3);
    }
}
