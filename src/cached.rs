//! Compact forms of the objects the operator caches by the thousand: application pods and the
//! workloads (ReplicaSets, StatefulSets). They are deserialized straight from the API and hold
//! only what a reconcile reads, so neither the cache nor a list page ever holds a pod spec or a
//! pod template.
//!
//! Why: a k8s-openapi `Pod` or `ReplicaSet` is about 2.3 KiB before any field is set (the pod
//! spec is inline in both), so slimming the fields of one did not shrink what the cache holds
//! per object. heaptrack of the operator restarted on 1000 CourseServices × 3 replicas found
//! the 3,000 cached pods and 3,000 cached ReplicaSets holding 19 of the 48 MB heap peak.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::marker::PhantomData;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Resource;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An application pod as cached: its identity, the three labels a reconcile reads (held as
/// fields: a label map costs its first node, over 500 bytes, however few labels it keeps; 6,000
/// pods are cached at the height of a fleet-wide update at N=1000), and of its status the
/// scheduler's verdict and the restarts of its containers.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AppPod {
    /// Name, namespace, uid, resource version; no labels (see the fields below).
    pub metadata: ObjectMeta,
    /// The `app.kubernetes.io/instance` label: the CourseService the pod belongs to.
    pub instance: Option<String>,
    /// The `microcourses.io/zone` label.
    pub zone: Option<String>,
    /// The `microcourses.io/revision` label.
    pub revision: Option<String>,
    /// Set while the PodScheduled condition is False for reason Unschedulable: since when
    /// (the condition's transition time, else the pod's creation).
    pub unschedulable_since: Option<Time>,
    /// Restarts of every container together.
    pub restarts: i32,
}

impl Resource for AppPod {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("Pod")
    }
    fn group(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("")
    }
    fn version(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("v1")
    }
    fn plural(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("pods")
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// The wire form of a pod, as far as `AppPod` reads it; every other field is skipped unread.
#[derive(Deserialize)]
struct WirePod {
    metadata: ObjectMeta,
    #[serde(default)]
    status: Option<WirePodStatus>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WirePodStatus {
    #[serde(default)]
    conditions: Option<Vec<WireCondition>>,
    #[serde(default)]
    container_statuses: Option<Vec<WireContainerStatus>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireCondition {
    #[serde(rename = "type")]
    type_: String,
    status: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    last_transition_time: Option<Time>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireContainerStatus {
    #[serde(default)]
    restart_count: i32,
}

impl<'de> Deserialize<'de> for AppPod {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = WirePod::deserialize(deserializer)?;
        let status = wire.status;
        let conditions = status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or_default();
        let unschedulable = conditions
            .iter()
            .find(|c| c.type_ == "PodScheduled")
            .filter(|c| c.status == "False" && c.reason.as_deref() == Some("Unschedulable"));
        let unschedulable_since =
            unschedulable.map(|c| c.last_transition_time.clone().or_else(|| wire.metadata.creation_timestamp.clone()));
        let statuses = status.as_ref().and_then(|s| s.container_statuses.as_deref()).unwrap_or_default();
        let mut metadata = wire.metadata;
        let mut labels = metadata.labels.take().unwrap_or_default();
        Ok(AppPod {
            instance: labels.remove(crate::labels::INSTANCE),
            zone: labels.remove(crate::labels::ZONE),
            revision: labels.remove(crate::labels::REVISION),
            unschedulable_since: unschedulable_since.flatten(),
            restarts: statuses.iter().map(|c| c.restart_count).sum(),
            metadata,
        })
    }
}

/// A workload as cached: its identity and owners (`metadata`, without label, annotation or
/// managed-field maps), the labels a reconcile reads and the applied hash as fields, the
/// replicas it asks for and how many are Ready. `K` is the kind it was read as (`ReplicaSet`,
/// `StatefulSet`).
///
/// Why fields: a `BTreeMap`'s first node costs over 500 bytes however few entries it keeps, and
/// a ReplicaSet carried two (its labels, its one annotation). Up to 6,000 ReplicaSets are cached
/// at the height of a fleet-wide update at N=1000; heaptrack put their maps at 7.4 MiB of that
/// update's heap peak.
pub struct Scaled<K> {
    pub metadata: ObjectMeta,
    pub labels: WorkloadLabels,
    /// The `microcourses.io/applied-hash` annotation: the hash of the form last applied.
    pub applied_hash: Option<String>,
    /// `spec.replicas` (the API's default, 1, when unset).
    pub replicas: i32,
    /// `status.readyReplicas`.
    pub ready: i32,
    kind: PhantomData<fn() -> K>,
}

/// The labels a reconcile reads of a workload; the others are dropped when it is cached.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkloadLabels {
    /// `app.kubernetes.io/instance`: the CourseService it belongs to.
    pub instance: Option<String>,
    /// `app.kubernetes.io/component`.
    pub component: Option<String>,
    /// `app.kubernetes.io/managed-by`.
    pub managed_by: Option<String>,
    /// `microcourses.io/zone`.
    pub zone: Option<String>,
    /// `microcourses.io/revision`.
    pub revision: Option<String>,
}

impl WorkloadLabels {
    /// Takes the labels read out of `labels`.
    fn take(labels: &mut BTreeMap<String, String>) -> Self {
        WorkloadLabels {
            instance: labels.remove(crate::labels::INSTANCE),
            component: labels.remove(crate::labels::COMPONENT),
            managed_by: labels.remove(crate::labels::MANAGED_BY),
            zone: labels.remove(crate::labels::ZONE),
            revision: labels.remove(crate::labels::REVISION),
        }
    }

    /// Whether these carry the selector labels of `instance`'s `component`, managed by the
    /// operator (`labels::selector`).
    pub fn select(&self, instance: &str, component: crate::labels::Component) -> bool {
        self.instance.as_deref() == Some(instance)
            && self.component.as_deref() == Some(component.as_str())
            && self.managed_by.as_deref() == Some(crate::labels::MANAGER)
    }

    fn to_map(&self) -> BTreeMap<String, String> {
        [
            (crate::labels::INSTANCE, &self.instance),
            (crate::labels::COMPONENT, &self.component),
            (crate::labels::MANAGED_BY, &self.managed_by),
            (crate::labels::ZONE, &self.zone),
            (crate::labels::REVISION, &self.revision),
        ]
        .into_iter()
        .filter_map(|(key, value)| Some((key.to_owned(), value.clone()?)))
        .collect()
    }
}

impl<K> Scaled<K> {
    /// The cached form of a workload with this metadata: the labels read and the applied hash
    /// are taken out of it, the rest of its labels and annotations and its managed fields are
    /// dropped.
    pub fn new(mut metadata: ObjectMeta, replicas: i32, ready: i32) -> Self {
        let labels = WorkloadLabels::take(&mut metadata.labels.take().unwrap_or_default());
        let applied_hash = metadata.annotations.take().and_then(|mut a| a.remove(crate::labels::APPLIED_HASH));
        metadata.managed_fields = None;
        Scaled { metadata, labels, applied_hash, replicas, ready, kind: PhantomData }
    }
}

// By hand: a derive would ask `K` for the same traits.
impl<K> Clone for Scaled<K> {
    fn clone(&self) -> Self {
        Scaled {
            metadata: self.metadata.clone(),
            labels: self.labels.clone(),
            applied_hash: self.applied_hash.clone(),
            replicas: self.replicas,
            ready: self.ready,
            kind: PhantomData,
        }
    }
}

impl<K> std::fmt::Debug for Scaled<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scaled")
            .field("metadata", &self.metadata)
            .field("labels", &self.labels)
            .field("applied_hash", &self.applied_hash)
            .field("replicas", &self.replicas)
            .field("ready", &self.ready)
            .finish()
    }
}

impl<K> PartialEq for Scaled<K> {
    fn eq(&self, other: &Self) -> bool {
        (&self.metadata, &self.labels, &self.applied_hash, self.replicas, self.ready)
            == (&other.metadata, &other.labels, &other.applied_hash, other.replicas, other.ready)
    }
}

impl<K: Resource<DynamicType = ()>> Resource for Scaled<K> {
    type DynamicType = ();
    type Scope = K::Scope;

    fn kind(_: &()) -> Cow<'_, str> {
        K::kind(&())
    }
    fn group(_: &()) -> Cow<'_, str> {
        K::group(&())
    }
    fn version(_: &()) -> Cow<'_, str> {
        K::version(&())
    }
    fn plural(_: &()) -> Cow<'_, str> {
        K::plural(&())
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct WireScaled {
    metadata: ObjectMeta,
    #[serde(default)]
    spec: Option<WireScaledSpec>,
    #[serde(default)]
    status: Option<WireScaledStatus>,
}

#[derive(Deserialize, Serialize)]
struct WireScaledSpec {
    #[serde(default)]
    replicas: Option<i32>,
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct WireScaledStatus {
    #[serde(default)]
    ready_replicas: Option<i32>,
}

impl<'de, K> Deserialize<'de> for Scaled<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = WireScaled::deserialize(deserializer)?;
        let replicas = wire.spec.and_then(|s| s.replicas).unwrap_or(1);
        let ready = wire.status.and_then(|s| s.ready_replicas).unwrap_or(0);
        Ok(Scaled::new(wire.metadata, replicas, ready))
    }
}

/// As the API would show what is kept (what `triggers::content` hashes): the labels read in
/// the label map, the applied hash as the one annotation.
impl<K> Serialize for Scaled<K> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut metadata = self.metadata.clone();
        let labels = self.labels.to_map();
        metadata.labels = (!labels.is_empty()).then_some(labels);
        metadata.annotations =
            self.applied_hash.clone().map(|hash| BTreeMap::from([(crate::labels::APPLIED_HASH.to_owned(), hash)]));
        WireScaled {
            metadata,
            spec: Some(WireScaledSpec { replicas: Some(self.replicas) }),
            status: Some(WireScaledStatus { ready_replicas: Some(self.ready) }),
        }
        .serialize(serializer)
    }
}

/// What the operator reads of any cached child, whatever form its cache keeps (`Scaled`
/// fields, or the metadata's maps).
pub trait CachedChild: Resource {
    /// The `app.kubernetes.io/instance` label.
    fn instance(&self) -> Option<&str>;
    /// Whether the `app.kubernetes.io/managed-by` label names the operator.
    fn managed(&self) -> bool;
    /// The `microcourses.io/applied-hash` annotation.
    fn applied_hash(&self) -> Option<&str>;
}

impl<K: Resource<DynamicType = ()>> CachedChild for Scaled<K> {
    fn instance(&self) -> Option<&str> {
        self.labels.instance.as_deref()
    }
    fn managed(&self) -> bool {
        self.labels.managed_by.as_deref() == Some(crate::labels::MANAGER)
    }
    fn applied_hash(&self) -> Option<&str> {
        self.applied_hash.as_deref()
    }
}

impl<K: Resource> CachedChild for kube::core::PartialObjectMeta<K> {
    fn instance(&self) -> Option<&str> {
        meta::instance(self.meta())
    }
    fn managed(&self) -> bool {
        meta::managed(self.meta())
    }
    fn applied_hash(&self) -> Option<&str> {
        meta::applied_hash(self.meta())
    }
}

/// `CachedChild` read from an object's metadata maps (for kinds cached whole or as metadata).
pub mod meta {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    pub fn instance(meta: &ObjectMeta) -> Option<&str> {
        meta.labels.as_ref()?.get(crate::labels::INSTANCE).map(String::as_str)
    }
    pub fn managed(meta: &ObjectMeta) -> bool {
        meta.labels.as_ref().and_then(|l| l.get(crate::labels::MANAGED_BY)).is_some_and(|v| v == crate::labels::MANAGER)
    }
    pub fn applied_hash(meta: &ObjectMeta) -> Option<&str> {
        meta.annotations.as_ref()?.get(crate::labels::APPLIED_HASH).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::ReplicaSet;

    use super::*;

    #[test]
    fn a_cached_pod_reads_the_scheduler_verdict_and_the_restarts_from_the_wire() {
        let pod: AppPod = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "ns", "creationTimestamp": "2026-11-26T10:00:00Z",
                         "labels": {"app.kubernetes.io/instance": "catalog"}},
            "spec": {"containers": [{"name": "app", "image": "app:1"}]},
            "status": {
                "conditions": [
                    {"type": "Ready", "status": "False"},
                    {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                     "lastTransitionTime": "2026-11-26T10:00:05Z"}],
                "containerStatuses": [{"name": "app", "restartCount": 2}, {"name": "sidecar", "restartCount": 3}],
            },
        }))
        .expect("a pod");
        assert_eq!(pod.restarts, 5);
        assert_eq!(pod.unschedulable_since.map(|t| t.0.to_string()), Some("2026-11-26T10:00:05Z".into()));
        assert_eq!((pod.instance.as_deref(), pod.zone.as_deref()), (Some("catalog"), None));
        assert_eq!(pod.metadata.labels, None, "the labels read are fields, the rest is dropped");
    }

    #[test]
    fn a_cached_pod_is_unschedulable_only_for_that_reason_and_since_its_creation_without_a_time() {
        let pod = |status: &str, reason: &str| -> AppPod {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "p", "creationTimestamp": "2026-11-26T10:00:00Z"},
                "status": {"conditions": [{"type": "PodScheduled", "status": status, "reason": reason}]},
            }))
            .expect("a pod")
        };
        let since = pod("False", "Unschedulable").unschedulable_since.map(|t| t.0.to_string());
        assert_eq!(since, Some("2026-11-26T10:00:00Z".into()));
        assert_eq!(pod("False", "SchedulingGated").unschedulable_since, None);
        assert_eq!(pod("True", "").unschedulable_since, None);
        let bare: AppPod = serde_json::from_value(serde_json::json!({"metadata": {"name": "p"}})).expect("a pod");
        assert_eq!((bare.unschedulable_since, bare.restarts), (None, 0));
    }

    #[test]
    fn a_cached_workload_keeps_its_replicas_and_ready_count_and_round_trips_as_its_kind() {
        let scaled: Scaled<ReplicaSet> = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "rs", "namespace": "ns",
                "labels": {"app.kubernetes.io/instance": "catalog", "app.kubernetes.io/component": "app",
                    "app.kubernetes.io/managed-by": "course-operator", "microcourses.io/zone": "zone-a",
                    "microcourses.io/revision": "r1", "app.kubernetes.io/part-of": "catalog"},
                "annotations": {"microcourses.io/applied-hash": "h1", "deployment.kubernetes.io/revision": "1"}},
            "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "app", "image": "app:1"}]}}},
            "status": {"replicas": 3, "readyReplicas": 2, "availableReplicas": 2},
        }))
        .expect("a ReplicaSet");
        assert_eq!((scaled.replicas, scaled.ready), (3, 2));
        assert_eq!(Scaled::<ReplicaSet>::kind(&()), "ReplicaSet");
        assert_eq!(Scaled::<ReplicaSet>::plural(&()), "replicasets");
        let again: Scaled<ReplicaSet> =
            serde_json::from_value(serde_json::to_value(&scaled).expect("json")).expect("back");
        assert_eq!(again, scaled);
        let defaults: Scaled<ReplicaSet> =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "rs"}})).expect("a ReplicaSet");
        assert_eq!((defaults.replicas, defaults.ready), (1, 0), "the API's default of 1, none Ready");
        assert_eq!((defaults.instance(), defaults.managed(), defaults.applied_hash()), (None, false, None));
    }

    #[test]
    fn a_cached_workload_keeps_the_labels_and_the_hash_it_is_read_for_as_fields_and_no_map() {
        let scaled: Scaled<ReplicaSet> = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "rs", "namespace": "ns", "uid": "u1",
                "ownerReferences": [{"apiVersion": "microcourses.io/v1alpha1", "kind": "CourseService", "name": "catalog", "uid": "c1"}],
                "labels": {"app.kubernetes.io/instance": "catalog", "app.kubernetes.io/component": "app",
                    "app.kubernetes.io/managed-by": "course-operator", "microcourses.io/zone": "zone-a",
                    "microcourses.io/revision": "r1", "app.kubernetes.io/part-of": "catalog"},
                "annotations": {"microcourses.io/applied-hash": "h1", "deployment.kubernetes.io/revision": "1"},
                "managedFields": [{"manager": "course-operator", "operation": "Apply"}]},
        }))
        .expect("a ReplicaSet");
        let labels = &scaled.labels;
        assert_eq!((labels.zone.as_deref(), labels.revision.as_deref()), (Some("zone-a"), Some("r1")));
        assert!(labels.select("catalog", crate::labels::Component::App));
        assert!(!labels.select("catalog", crate::labels::Component::Cache), "another component");
        assert!(!labels.select("cart", crate::labels::Component::App), "another instance");
        assert_eq!((scaled.instance(), scaled.managed(), scaled.applied_hash()), (Some("catalog"), true, Some("h1")));
        let meta = &scaled.metadata;
        assert_eq!((&meta.labels, &meta.annotations, &meta.managed_fields), (&None, &None, &None));
        assert_eq!(meta.owner_references.as_ref().map(|o| o[0].uid.as_str()), Some("c1"), "the owner is kept");
        let unmanaged = WorkloadLabels { managed_by: Some("someone-else".into()), ..labels.clone() };
        assert!(!unmanaged.select("catalog", crate::labels::Component::App));
    }

    #[test]
    fn the_cached_forms_are_a_fraction_of_the_whole_objects() {
        let whole = std::mem::size_of::<k8s_openapi::api::core::v1::Pod>();
        assert!(std::mem::size_of::<AppPod>() * 3 < whole, "{} vs {whole}", std::mem::size_of::<AppPod>());
        let whole = std::mem::size_of::<ReplicaSet>();
        assert!(std::mem::size_of::<Scaled<ReplicaSet>>() * 3 < whole);
    }
}
