//! Observation: what the cluster runs now for one CourseService, read from the controller's
//! caches into [`Observed`].
//!
//! Every function here is pure over cached objects (the controller hands in its store
//! snapshots), so how a ReplicaSet, an EndpointSlice or a pod is read is tested without a
//! cluster. What needs I/O (an older revision's template, an external database's Secret, the
//! canary analysis check) is fetched by the controller shell and put into `Observed` as data.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;

use crate::cached::{AppPod, Scaled, ServingSlice};
use crate::database::DatabaseCredentials;
use crate::labels::Component;
use crate::render::workload::AppTemplate;
use crate::rollout::analysis::Verdict;
use crate::zones::{UnschedulablePod, UnschedulableZones, Zone, ZoneHealth, ZoneObserved};

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
/// namespace, its selector labels and its owner uid, by name. Without templates: the cache
/// keeps none (see `ObservedWorkload::template`).
pub fn workloads<'a>(
    replica_sets: impl IntoIterator<Item = &'a Scaled<ReplicaSet>>,
    namespace: &str,
    instance: &str,
    uid: &str,
) -> BTreeMap<String, ObservedWorkload> {
    // The owner first: it turns away every other CourseService's ReplicaSet at the first
    // bytes of a uid, before any label lookup (this scans the whole cache).
    replica_sets
        .into_iter()
        .filter(|d| d.metadata.owner_references.as_ref().is_some_and(|refs| refs.iter().any(|r| r.uid == uid)))
        .filter(|d| d.metadata.namespace.as_deref() == Some(namespace))
        .filter(|d| d.tags.labels.select(instance, Component::App))
        .filter_map(|d| {
            let observed = ObservedWorkload {
                revision: d.tags.labels.revision.clone()?,
                zone: d.tags.labels.zone.clone()?,
                replicas: d.replicas,
                ready: d.ready,
                template: None,
            };
            Some((d.metadata.name.clone()?, observed))
        })
        .collect()
}

/// `workloads` once the ReplicaSets just `applied` are in place: each at its applied replicas,
/// one new to the cluster with none Ready yet. The status written by the same reconcile then
/// already shows the new sizes instead of waiting for the ReplicaSets' watch events to show
/// them, which cost a second status write per scale.
pub fn applied<'a>(
    workloads: &mut BTreeMap<String, ObservedWorkload>,
    applied: impl IntoIterator<Item = &'a ReplicaSet>,
    namespace: &str,
    instance: &str,
    uid: &str,
) {
    let applied: Vec<Scaled<ReplicaSet>> =
        applied.into_iter().map(|r| Scaled::new(r.metadata.clone(), r.spec.replicas.unwrap_or(1), 0)).collect();
    for (name, now) in self::workloads(&applied, namespace, instance, uid) {
        let replicas = now.replicas;
        workloads.entry(name).and_modify(|observed| observed.replicas = replicas).or_insert(now);
    }
}

/// Ready endpoints behind a CourseService's Services, per ReplicaSet name. `ready_pods` are pod
/// names (duplicates across Services count once); a pod is matched to its ReplicaSet by name
/// (`<replicaset>-<suffix>`).
pub fn serving_by_workload<'a>(ready_pods: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, i32> {
    let pods: BTreeSet<&str> = ready_pods.into_iter().collect();
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
    /// Ready endpoints behind the Services per ReplicaSet name ([`serving_by_workload`]): what
    /// users' requests reach.
    pub serving: BTreeMap<String, i32>,
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
    pub unschedulable: UnschedulableZones,
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

/// Names of the Ready pods behind one CourseService's Services (its instance label).
pub fn ready_endpoints<'a>(
    slices: impl IntoIterator<Item = &'a ServingSlice>,
    namespace: &'a str,
    instance: &'a str,
) -> impl Iterator<Item = &'a str> {
    slices
        .into_iter()
        .filter(move |s| s.metadata.namespace.as_deref() == Some(namespace))
        .filter(move |s| s.instance.as_deref() == Some(instance))
        .flat_map(|s| s.ready_pods.iter().map(String::as_str))
}

/// The pods of one CourseService the scheduler has reported unschedulable, with their zone.
pub fn unschedulable_pods<'a>(
    pods: impl IntoIterator<Item = &'a AppPod>,
    namespace: &str,
    instance: &str,
) -> Vec<UnschedulablePod> {
    pods.into_iter()
        .filter(|pod| pod.metadata.namespace.as_deref() == Some(namespace))
        .filter(|pod| pod.instance.as_deref() == Some(instance))
        .filter_map(|pod| {
            let since = pod.unschedulable_since.as_ref()?.0;
            Some(UnschedulablePod { zone: pod.zone.clone()?, since })
        })
        .collect()
}

/// Most restarts of any pod (all its containers) of `revision` of one CourseService.
pub fn most_restarts<'a>(
    pods: impl IntoIterator<Item = &'a AppPod>,
    namespace: &str,
    instance: &str,
    revision: &str,
) -> i32 {
    pods.into_iter()
        .filter(|pod| pod.metadata.namespace.as_deref() == Some(namespace))
        .filter(|pod| pod.instance.as_deref() == Some(instance))
        .filter(|pod| pod.revision.as_deref() == Some(revision))
        .map(|pod| pod.restarts)
        .max()
        .unwrap_or(0)
}

/// The cache and database StatefulSets owned by the CourseService `uid`, by name.
pub fn statefulsets<'a>(
    sets: impl IntoIterator<Item = &'a Scaled<StatefulSet>>,
    namespace: &str,
    uid: &str,
) -> BTreeMap<String, ObservedStatefulSet> {
    sets.into_iter()
        .filter(|s| owned_by(&s.metadata, namespace, uid))
        .filter_map(|s| Some((s.metadata.name.clone()?, ObservedStatefulSet { replicas: s.replicas, ready: s.ready })))
        .collect()
}

/// Names of the Jobs owned by the CourseService `uid` that have succeeded.
pub fn succeeded_jobs<'a>(jobs: impl IntoIterator<Item = &'a Job>, namespace: &str, uid: &str) -> Vec<String> {
    jobs.into_iter()
        .filter(|j| owned_by(&j.metadata, namespace, uid))
        .filter(|j| j.status.as_ref().and_then(|s| s.succeeded).unwrap_or(0) > 0)
        .filter_map(|j| j.metadata.name.clone())
        .collect()
}

fn owned_by(meta: &ObjectMeta, namespace: &str, uid: &str) -> bool {
    meta.namespace.as_deref() == Some(namespace)
        && meta.owner_references.as_ref().is_some_and(|refs| refs.iter().any(|r| r.uid == uid))
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn replica_set(name: &str, revision: &str, zone: &str, replicas: i32, owner: &str) -> ReplicaSet {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "shop",
                "labels": {"app.kubernetes.io/managed-by": "course-operator", "app.kubernetes.io/instance": "catalog",
                    "app.kubernetes.io/component": "app", "microcourses.io/revision": revision,
                    "microcourses.io/zone": zone},
                "ownerReferences": [{"apiVersion": "microcourses.io/v1alpha1", "kind": "CourseService",
                    "name": "catalog", "uid": owner}]},
            "spec": {"replicas": replicas, "selector": {}},
        }))
        .expect("replica set")
    }

    #[test]
    fn applied_replica_sets_show_their_new_sizes_and_new_ones_none_ready() {
        let mut workloads: BTreeMap<String, ObservedWorkload> =
            [("catalog-r-zone-a".to_owned(), observed(1, 1)), ("catalog-r-zone-b".to_owned(), observed(1, 1))].into();
        let written = [
            replica_set("catalog-r-zone-a", "r", "zone-a", 2, "u1"),
            replica_set("catalog-s-zone-a", "s", "zone-a", 1, "u1"),
            replica_set("someone-elses", "s", "zone-a", 5, "u2"),
        ];
        applied(&mut workloads, &written, "shop", "catalog", "u1");
        let sizes: Vec<(&str, i32, i32)> = workloads.iter().map(|(n, w)| (n.as_str(), w.replicas, w.ready)).collect();
        assert_eq!(sizes, [("catalog-r-zone-a", 2, 1), ("catalog-r-zone-b", 1, 1), ("catalog-s-zone-a", 1, 0)]);
    }
}
