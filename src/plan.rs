//! Pure planning: (spec, status, zones, what runs now, time) → the desired child objects.
//!
//! The controller shell feeds observations in and applies what comes out; everything here is
//! deterministic and free of I/O, so it is tested in microseconds.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::jiff::Timestamp;

use crate::api::CourseService;
use crate::database::DatabaseCredentials;
use crate::labels::{self, Component};
use crate::names;
use crate::render::workload::AppTemplate;
use crate::render::{self, Child, Context, Images};
use crate::rollout::analysis::Verdict;
use crate::rollout::{self, Decision, UserAction};
use crate::validate::{FieldError, InvalidSpec, validate};
use crate::zones::{Zone, ZoneHealth, ZoneObserved};

/// One application ReplicaSet (a revision in a zone) as the cluster shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct ObservedWorkload {
    pub revision: String,
    /// Zone slug from the ReplicaSet's zone label.
    pub zone: String,
    pub replicas: i32,
    pub ready: i32,
    /// Its pod template, so an older revision can be re-sized after the spec moved on. The
    /// operator's ReplicaSet cache keeps no templates: the controller fills this in for one
    /// ReplicaSet of each older revision (`None` from a template-less ReplicaSet).
    pub template: Option<AppTemplate>,
}

/// The application ReplicaSets (every revision) of one CourseService among `replica_sets`: its
/// namespace, its selector labels and its owner uid, by name.
pub fn observe_workloads<'a>(
    replica_sets: impl IntoIterator<Item = &'a ReplicaSet>,
    namespace: &str,
    instance: &str,
    uid: &str,
) -> BTreeMap<String, ObservedWorkload> {
    let selector = labels::selector(instance, Component::App);
    replica_sets
        .into_iter()
        .filter(|d| d.metadata.namespace.as_deref() == Some(namespace))
        .filter(|d| {
            let labels = d.metadata.labels.as_ref();
            selector.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        })
        .filter(|d| d.metadata.owner_references.as_ref().is_some_and(|refs| refs.iter().any(|r| r.uid == uid)))
        .filter_map(|d| {
            let labels = d.metadata.labels.as_ref()?;
            let observed = ObservedWorkload {
                revision: labels.get(labels::REVISION)?.clone(),
                zone: labels.get(labels::ZONE)?.clone(),
                replicas: d.spec.replicas.unwrap_or(1),
                ready: d.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0),
                template: AppTemplate::from_replica_set(d),
            };
            Some((d.metadata.name.clone()?, observed))
        })
        .collect()
}

/// Ready endpoints behind a CourseService's Services, per ReplicaSet name. `ready_pods` are pod
/// names (duplicates across Services count once); a pod is matched to its ReplicaSet by name
/// (`<replicaset>-<suffix>`).
pub fn serving_by_workload<'a>(ready_pods: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, i32> {
    let pods: std::collections::BTreeSet<&str> = ready_pods.into_iter().collect();
    let mut serving: BTreeMap<String, i32> = BTreeMap::new();
    for pod in pods {
        let Some((workload, _suffix)) = pod.rsplit_once('-') else { continue };
        *serving.entry(workload.to_owned()).or_default() += 1;
    }
    serving
}

/// Raises each ReplicaSet's Ready count to the Ready endpoints the Services' EndpointSlices
/// already show for it (`serving`, from [`serving_by_workload`]). The EndpointSlice controller
/// and the ReplicaSet controller each reflect a pod's readiness one hop after the pod, in either
/// order: the rollout gates (canary steps, the blue-green switch) act on the fresher figure.
/// Never lowers a count and never above the ReplicaSet's replicas.
pub fn count_ready_endpoints(workloads: &mut BTreeMap<String, ObservedWorkload>, serving: &BTreeMap<String, i32>) {
    for (name, observed) in workloads.iter_mut() {
        if let Some(&n) = serving.get(name) {
            observed.ready = observed.ready.max(n.min(observed.replicas));
        }
    }
}

/// Whether every desired ReplicaSet among `children` runs at its desired size (as the cache
/// shows it) with every replica a Ready endpoint behind the Services (`serving`): what users'
/// requests reach, not only the ReplicaSet status.
pub fn workloads_serving(
    children: &[Child],
    workloads: &BTreeMap<String, ObservedWorkload>,
    serving: &BTreeMap<String, i32>,
) -> bool {
    children.iter().all(|child| match child {
        Child::ReplicaSet(rs) => {
            let desired = rs.spec.replicas.unwrap_or(1);
            workloads.get(child.name()).is_some_and(|o| o.replicas == desired)
                && serving.get(child.name()).copied().unwrap_or(0) >= desired
        }
        _ => true,
    })
}

#[cfg(test)]
mod endpoint_tests {
    use super::*;

    #[test]
    fn workloads_serve_when_every_desired_replica_set_has_its_ready_endpoints() {
        let replica_set = |name: &str, replicas: i32| {
            let mut rs = ReplicaSet::default();
            rs.metadata.name = Some(name.to_owned());
            rs.spec.replicas = Some(replicas);
            Child::ReplicaSet(Box::new(rs))
        };
        let desired = [replica_set("c-r2-zone-a", 2), replica_set("c-r2-zone-b", 0)];
        let both: BTreeMap<String, ObservedWorkload> =
            [("c-r2-zone-a".to_owned(), observed(2, 2)), ("c-r2-zone-b".to_owned(), observed(0, 0))].into();
        let serving = |pods: &[&str]| serving_by_workload(pods.iter().copied());
        assert!(workloads_serving(&desired, &both, &serving(&["c-r2-zone-a-x1x2x", "c-r2-zone-a-y1y2y"])));
        assert!(
            !workloads_serving(&desired, &both, &serving(&["c-r2-zone-a-x1x2x"])),
            "the status says Ready, the EndpointSlices show one pod: not yet"
        );
        assert!(
            !workloads_serving(
                &desired,
                &[("c-r2-zone-a".to_owned(), observed(2, 2))].into(),
                &serving(&["c-r2-zone-a-x1x2x", "c-r2-zone-a-y1y2y"])
            ),
            "one not created yet"
        );
        let scaling = [replica_set("c-r2-zone-a", 3), replica_set("c-r2-zone-b", 0)];
        let endpoints = serving(&["c-r2-zone-a-x1x2x", "c-r2-zone-a-y1y2y", "c-r2-zone-a-z1z2z"]);
        assert!(!workloads_serving(&scaling, &both, &endpoints), "the cache has not seen the new size yet");
    }

    fn observed(replicas: i32, ready: i32) -> ObservedWorkload {
        ObservedWorkload { revision: "r".into(), zone: "zone-a".into(), replicas, ready, template: None }
    }

    #[test]
    fn ready_endpoints_raise_a_lagging_replica_set_count_and_never_lower_it() {
        let mut workloads: BTreeMap<String, ObservedWorkload> = [
            ("catalog-abc-zone-a".to_owned(), observed(2, 0)),
            ("catalog-abc-zone-b".to_owned(), observed(2, 2)),
            ("catalog-old-zone-a".to_owned(), observed(1, 0)),
        ]
        .into();
        count_ready_endpoints(
            &mut workloads,
            &serving_by_workload([
                "catalog-abc-zone-a-x1x2x",
                "catalog-abc-zone-a-y1y2y",
                // The same pod behind the main and the preview Service counts once.
                "catalog-abc-zone-a-y1y2y",
                // More endpoints than replicas (a stale slice) are capped.
                "catalog-old-zone-a-a1a2a",
                "catalog-old-zone-a-b1b2b",
                "not-a-pod-name",
            ]),
        );
        let ready: Vec<i32> = workloads.values().map(|d| d.ready).collect();
        assert_eq!(ready, vec![2, 2, 1]);
        // zone-b showed 2 Ready in its status but none in the slices: kept at 2.
    }
}

/// Replicas of a StatefulSet as the cluster shows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ObservedStatefulSet {
    pub replicas: i32,
    pub ready: i32,
}

/// What the cluster runs now for one CourseService, as far as planning needs it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    /// Application ReplicaSets (every revision), by name.
    pub workloads: BTreeMap<String, ObservedWorkload>,
    /// The cache and database StatefulSets, by name.
    pub statefulsets: BTreeMap<String, ObservedStatefulSet>,
    /// Names of Jobs that have succeeded (the database init Job of each config).
    pub succeeded_jobs: Vec<String>,
    /// Credentials of the database: read from its Secret, or freshly generated by the shell
    /// when none exists yet. `None` renders placeholders (offline `render`).
    pub database_credentials: Option<DatabaseCredentials>,
    /// Some of `database_credentials` were generated by this reconcile and are not in their
    /// Secret yet (no Secret, or one from a version without the application user): nothing
    /// derived from them may be written, because the database may never learn them.
    pub database_credentials_unsaved: bool,
    /// The application's database Secret (its connection string) exists already.
    pub database_app_secret_exists: bool,
    /// For an external database: whether its connection-string Secret key exists (`Err` says
    /// what is missing). `None` when the database is not external or was not looked up.
    pub external_database: Option<Result<(), String>>,
    /// The rollout-action annotation, when it has not been handled yet.
    pub action: Option<String>,
    /// Time of this reconcile.
    pub now: Option<Timestamp>,
    /// The canary analysis check made for this reconcile, when one was due.
    pub analysis: Option<Verdict>,
    /// Most restarts of any pod of the spec's revision, looked at only during a rollout.
    pub new_pod_restarts: i32,
    /// Zones lost because this service's pods stayed unschedulable there (already marked
    /// unhealthy in the zones handed to `plan`; kept here for the status).
    pub unschedulable: crate::zones::UnschedulableZones,
}

impl Observed {
    /// Revision → zone → counts, for the zones the CourseService runs in.
    pub fn by_revision(&self, zones: &[ZoneHealth]) -> BTreeMap<String, BTreeMap<Zone, ZoneObserved>> {
        let mut result: BTreeMap<String, BTreeMap<Zone, ZoneObserved>> = BTreeMap::new();
        for d in self.workloads.values() {
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
    /// The rollout decision: sizes per revision and zone, Service pin, rollout status.
    pub rollout: Decision,
    /// Every child object that should exist, fully rendered.
    pub children: Vec<Child>,
}

/// MongoDB removes members one at a time through the init Job; shrinking the StatefulSet first
/// would kill members the replica set still counts on (5 → 1 would lose the majority). So the
/// members StatefulSet keeps its current size until the Job for the new config (`init_job`)
/// has succeeded.
fn hold_members_until_reconfigured(ctx: &Context<'_>, init_job: &str, observed: &Observed, children: &mut [Child]) {
    let reconfigured = observed.succeeded_jobs.iter().any(|j| j == init_job);
    let members = names::database(ctx.name);
    let current = observed.statefulsets.get(&members).map_or(0, |s| s.replicas);
    for child in children.iter_mut() {
        if let Child::StatefulSet(set) = child
            && set.metadata.name.as_deref() == Some(members.as_str())
            && !reconfigured
            && current > set.spec.replicas.unwrap_or(0)
        {
            set.spec.replicas = Some(current);
        }
    }
}

/// The application's connection string names the init Job's user and its password. It is
/// written only from credentials already stored in their Secret (a cache lagging behind the
/// Secret must not publish a password no member will ever know). A new set gets it at once (the
/// app starts and connects once the init Job has created its user); once it exists, it is
/// rewritten only after the Job of the current config succeeded: a Job of a newer script may be
/// the one that creates the user (an upgrade from root credentials), so until then the Secret
/// keeps its previous connection string. (Older Jobs are no proof of anything: the one a new
/// config replaces is pruned as the new one is applied, and finished Jobs expire.) Secrets are
/// never pruned, so leaving it out keeps it as it is. `init_job` is the current config's Job.
fn hold_app_secret_until_its_user_exists(
    ctx: &Context<'_>,
    init_job: &str,
    observed: &Observed,
    children: &mut Vec<Child>,
) {
    let current_job_done = observed.succeeded_jobs.iter().any(|j| j == init_job);
    let publish = !observed.database_credentials_unsaved && (current_job_done || !observed.database_app_secret_exists);
    let app_secret = names::database_app_secret(ctx.name);
    children.retain(|child| publish || !(matches!(child, Child::Secret(_)) && child.name() == app_secret));
}

/// Validates `cs` and plans its children; an invalid spec yields no plan at all, so the caller
/// cannot touch any child because of bad input.
pub fn plan(
    cs: &CourseService,
    zones: &[ZoneHealth],
    observed: &Observed,
    images: &Images,
) -> Result<Plan, InvalidSpec> {
    validate(cs)?;
    // pods whose connection string is missing could not start: touch nothing until it exists
    if let Some(Err(missing)) = &observed.external_database {
        let field = "spec.database.external.uriSecret";
        return Err(InvalidSpec(vec![FieldError { field: field.into(), message: format!("{field}: {missing}") }]));
    }
    let ctx = Context::new(cs).with_images(images);
    let template = render::workload::app_template(&ctx);
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
        analysis: observed.analysis.as_ref(),
        new_pod_restarts: observed.new_pod_restarts,
    });

    let mut children = Vec::new();
    for (revision, sizes) in &decision.targets {
        let revision_template = if *revision == template.revision {
            Some(&template)
        } else {
            observed.workloads.values().filter(|d| d.revision == *revision).find_map(|d| d.template.as_ref())
        };
        // An older revision whose ReplicaSets are all gone cannot be re-rendered; it is simply
        // no longer desired.
        let Some(revision_template) = revision_template else { continue };
        // Lost zones keep a ReplicaSet at zero replicas, ready to take their share back.
        for (zone, replicas) in sizes {
            let replica_set = render::workload::replica_set(&ctx, revision_template, zone, *replicas);
            children.push(Child::ReplicaSet(Box::new(replica_set)));
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
    if let Some(cache) = cs.spec.cache.as_ref().filter(|c| c.enabled) {
        children.extend(render::redis::children(&ctx, cache));
        children.push(Child::NetworkPolicy(Box::new(render::network_policy::cache(&ctx))));
    }
    if let Some(db) = cs.spec.database.as_ref().filter(|d| d.enabled && d.external.is_none()) {
        let credentials = observed.database_credentials.clone().unwrap_or_else(|| DatabaseCredentials {
            keyfile: "<generated by the operator>".into(),
            admin_password: "<generated by the operator>".into(),
            app_password: "<generated by the operator>".into(),
        });
        let mut database = render::mongo::children(&ctx, db, &credentials);
        let init_job = render::mongo::init_job_name(&ctx, db);
        hold_members_until_reconfigured(&ctx, &init_job, observed, &mut database);
        hold_app_secret_until_its_user_exists(&ctx, &init_job, observed, &mut database);
        // The member volumes outlive the CourseService (retention policy); so must the
        // credentials that open them and the backups: no owner reference, no garbage collection.
        let credentials_secret = names::database_credentials_secret(ctx.name);
        for child in &mut database {
            let kept = matches!(child, Child::PersistentVolumeClaim(_))
                || (matches!(child, Child::Secret(_)) && child.name() == credentials_secret);
            if kept {
                child.meta_mut().owner_references = None;
            }
        }
        children.extend(database);
        children.push(Child::NetworkPolicy(Box::new(render::network_policy::database(&ctx))));
    }
    Ok(Plan { revision: template.revision, rollout: decision, children })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::manifest;

    fn full_stack() -> CourseService {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/samples/full-stack.yaml");
        manifest::parse(&std::fs::read_to_string(path).expect("read sample")).expect("sample parses")
    }

    fn has_app_secret(cs: &CourseService, observed: &Observed) -> bool {
        let app_secret = names::database_app_secret(cs.metadata.name.as_deref().unwrap_or_default());
        let planned = plan(cs, &[], observed, &Images::default()).expect("the sample is valid");
        planned.children.iter().any(|c| matches!(c, Child::Secret(_)) && c.name() == app_secret)
    }

    #[test]
    fn the_app_secret_is_written_from_stored_credentials_once_its_user_exists() {
        let cs = full_stack();
        let ctx = Context::new(&cs);
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
}
