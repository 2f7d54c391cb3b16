//! Compact forms of the objects the operator caches by the thousand: application pods, the
//! workloads (ReplicaSets, StatefulSets), the children kept for their metadata only (Services,
//! PDBs, HPAs, …) and the EndpointSlices. They are deserialized straight from the API and hold
//! only what a reconcile reads, so neither the cache nor a list page ever holds a pod spec or a
//! pod template, and none of them holds a label or annotation map.
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

/// `Resource` for a compact form that keeps `metadata`: the kind, group, version and plural of
/// the k8s-openapi type `$as`, so its watch reads the same API.
macro_rules! resource_as {
    ($form:ty, $as:ty) => {
        impl Resource for $form {
            type DynamicType = ();
            type Scope = <$as as Resource>::Scope;

            fn kind(_: &()) -> Cow<'_, str> {
                <$as as Resource>::kind(&())
            }
            fn group(_: &()) -> Cow<'_, str> {
                <$as as Resource>::group(&())
            }
            fn version(_: &()) -> Cow<'_, str> {
                <$as as Resource>::version(&())
            }
            fn plural(_: &()) -> Cow<'_, str> {
                <$as as Resource>::plural(&())
            }
            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

resource_as!(AppPod, k8s_openapi::api::core::v1::Pod);

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

/// An EndpointSlice of the operator's Services as cached: its identity (no label, annotation
/// or owner map), its instance label, and the names of the pods it lists as Ready, sorted.
/// That is all the rollout gates read of it; an endpoint's address, zone or port never is.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServingSlice {
    pub metadata: ObjectMeta,
    /// The `app.kubernetes.io/instance` label (the Service's, copied to its slices).
    pub instance: Option<String>,
    /// Names of the pods behind endpoints whose `ready` condition is true, sorted.
    pub ready_pods: Vec<String>,
}

resource_as!(ServingSlice, k8s_openapi::api::discovery::v1::EndpointSlice);

/// The wire form of an EndpointSlice, as far as `ServingSlice` reads it.
#[derive(Deserialize)]
struct WireSlice {
    metadata: ObjectMeta,
    #[serde(default)]
    endpoints: Option<Vec<WireEndpoint>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireEndpoint {
    #[serde(default)]
    conditions: Option<WireEndpointConditions>,
    #[serde(default)]
    target_ref: Option<WireTargetRef>,
}

#[derive(Deserialize)]
struct WireEndpointConditions {
    #[serde(default)]
    ready: Option<bool>,
}

#[derive(Deserialize)]
struct WireTargetRef {
    #[serde(default)]
    name: Option<String>,
}

impl<'de> Deserialize<'de> for ServingSlice {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = WireSlice::deserialize(deserializer)?;
        let mut ready_pods: Vec<String> = wire
            .endpoints
            .into_iter()
            .flatten()
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
            .filter_map(|e| e.target_ref?.name)
            .collect();
        ready_pods.sort_unstable();
        let mut metadata = wire.metadata;
        let instance = metadata.labels.take().and_then(|mut l| l.remove(crate::labels::INSTANCE));
        metadata.annotations = None;
        metadata.owner_references = None;
        metadata.managed_fields = None;
        Ok(ServingSlice { metadata, instance, ready_pods })
    }
}

/// What is kept of a cached child's label and annotation maps: the labels a reconcile reads
/// and the applied hash, as fields. A `BTreeMap`'s first node costs over 500 bytes however few
/// entries it keeps, and a child carried two (its labels, its annotations); up to 6,000
/// ReplicaSets are cached at the height of a fleet-wide update at N=1000, and heaptrack put
/// their maps at 7.4 MiB of that update's heap peak.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChildTags {
    pub labels: ChildLabels,
    /// The `microcourses.io/applied-hash` annotation: the hash of the form last applied.
    pub applied_hash: Option<String>,
}

/// The labels a reconcile reads of a child; the others are dropped when it is cached.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChildLabels {
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

impl ChildTags {
    /// Takes the labels read and the applied hash out of `metadata`, and drops the rest of its
    /// labels and annotations and its managed fields.
    fn take(metadata: &mut ObjectMeta) -> Self {
        let mut labels = metadata.labels.take().unwrap_or_default();
        metadata.managed_fields = None;
        ChildTags {
            labels: ChildLabels {
                instance: labels.remove(crate::labels::INSTANCE),
                component: labels.remove(crate::labels::COMPONENT),
                managed_by: labels.remove(crate::labels::MANAGED_BY),
                zone: labels.remove(crate::labels::ZONE),
                revision: labels.remove(crate::labels::REVISION),
            },
            applied_hash: metadata.annotations.take().and_then(|mut a| a.remove(crate::labels::APPLIED_HASH)),
        }
    }

    /// `metadata` with what is kept put back as the API shows it: the labels read in the label
    /// map, the applied hash as the one annotation.
    fn restored(&self, metadata: &ObjectMeta) -> ObjectMeta {
        let labels: BTreeMap<String, String> = [
            (crate::labels::INSTANCE, &self.labels.instance),
            (crate::labels::COMPONENT, &self.labels.component),
            (crate::labels::MANAGED_BY, &self.labels.managed_by),
            (crate::labels::ZONE, &self.labels.zone),
            (crate::labels::REVISION, &self.labels.revision),
        ]
        .into_iter()
        .filter_map(|(key, value)| Some((key.to_owned(), value.clone()?)))
        .collect();
        let annotations =
            self.applied_hash.clone().map(|hash| BTreeMap::from([(crate::labels::APPLIED_HASH.to_owned(), hash)]));
        ObjectMeta { labels: (!labels.is_empty()).then_some(labels), annotations, ..metadata.clone() }
    }
}

impl ChildLabels {
    /// Whether these carry the selector labels of `instance`'s `component`, managed by the
    /// operator (`labels::selector`).
    pub fn select(&self, instance: &str, component: crate::labels::Component) -> bool {
        self.instance.as_deref() == Some(instance)
            && self.component.as_deref() == Some(component.as_str())
            && self.managed_by.as_deref() == Some(crate::labels::MANAGER)
    }
}

/// A workload as cached: its identity and owners (`metadata`, without label, annotation or
/// managed-field maps), its `tags`, the replicas it asks for and how many are Ready. `K` is the
/// kind it was read as (`ReplicaSet`, `StatefulSet`).
///
/// No pod template is kept: the current revision's is rendered from the spec, and an older
/// revision's is fetched once when a rollout needs it (`reconcile::older_templates`). The counts
/// kube-controller-manager updates on the way (pods created, labelled, available, terminating)
/// are not kept either, so they trigger no reconcile (`triggers::content` hashes this form).
pub struct Scaled<K> {
    pub metadata: ObjectMeta,
    pub tags: ChildTags,
    /// `spec.replicas` (the API's default, 1, when unset).
    pub replicas: i32,
    /// `status.readyReplicas`.
    pub ready: i32,
    kind: PhantomData<fn() -> K>,
}

/// A child cached for its metadata only (Services, PDBs, HPAs, ConfigMaps, …): its identity and
/// owners (`metadata`, without label, annotation or managed-field maps) and its `tags`. `K` is
/// the kind it was read as.
pub struct Tagged<K> {
    pub metadata: ObjectMeta,
    pub tags: ChildTags,
    kind: PhantomData<fn() -> K>,
}

impl<K> Scaled<K> {
    /// The cached form of a workload with this metadata (see `ChildTags::take`).
    pub fn new(mut metadata: ObjectMeta, replicas: i32, ready: i32) -> Self {
        let tags = ChildTags::take(&mut metadata);
        Scaled { metadata, tags, replicas, ready, kind: PhantomData }
    }
}

impl<K> Tagged<K> {
    /// The cached form of a child with this metadata (see `ChildTags::take`).
    pub fn new(mut metadata: ObjectMeta) -> Self {
        let tags = ChildTags::take(&mut metadata);
        Tagged { metadata, tags, kind: PhantomData }
    }
}

// By hand: a derive would ask `K` for the same traits.
impl<K> Clone for Scaled<K> {
    fn clone(&self) -> Self {
        let (metadata, tags) = (self.metadata.clone(), self.tags.clone());
        Scaled { metadata, tags, replicas: self.replicas, ready: self.ready, kind: PhantomData }
    }
}

impl<K> Clone for Tagged<K> {
    fn clone(&self) -> Self {
        Tagged { metadata: self.metadata.clone(), tags: self.tags.clone(), kind: PhantomData }
    }
}

impl<K> std::fmt::Debug for Scaled<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scaled")
            .field("metadata", &self.metadata)
            .field("tags", &self.tags)
            .field("replicas", &self.replicas)
            .field("ready", &self.ready)
            .finish()
    }
}

impl<K> std::fmt::Debug for Tagged<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tagged").field("metadata", &self.metadata).field("tags", &self.tags).finish()
    }
}

impl<K> PartialEq for Scaled<K> {
    fn eq(&self, other: &Self) -> bool {
        (&self.metadata, &self.tags, self.replicas, self.ready)
            == (&other.metadata, &other.tags, other.replicas, other.ready)
    }
}

impl<K> PartialEq for Tagged<K> {
    fn eq(&self, other: &Self) -> bool {
        (&self.metadata, &self.tags) == (&other.metadata, &other.tags)
    }
}

/// `Resource` as the kind `K` it was read as, and `CachedChild` from its tags.
macro_rules! cached_form_of_kind {
    ($form:ident) => {
        impl<K: Resource<DynamicType = ()>> Resource for $form<K> {
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

        impl<K: Resource<DynamicType = ()>> CachedChild for $form<K> {
            fn instance(&self) -> Option<&str> {
                self.tags.labels.instance.as_deref()
            }
            fn managed(&self) -> bool {
                self.tags.labels.managed_by.as_deref() == Some(crate::labels::MANAGER)
            }
            fn applied_hash(&self) -> Option<&str> {
                self.tags.applied_hash.as_deref()
            }
        }
    };
}

cached_form_of_kind!(Scaled);
cached_form_of_kind!(Tagged);

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

/// The wire form of any object, as far as `Tagged` reads it.
#[derive(Deserialize, Serialize)]
struct WireTagged {
    metadata: ObjectMeta,
}

impl<'de, K> Deserialize<'de> for Scaled<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = WireScaled::deserialize(deserializer)?;
        let replicas = wire.spec.and_then(|s| s.replicas).unwrap_or(1);
        let ready = wire.status.and_then(|s| s.ready_replicas).unwrap_or(0);
        Ok(Scaled::new(wire.metadata, replicas, ready))
    }
}

impl<'de, K> Deserialize<'de> for Tagged<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Tagged::new(WireTagged::deserialize(deserializer)?.metadata))
    }
}

/// As the API would show what is kept (what `triggers::content` hashes).
impl<K> Serialize for Scaled<K> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        WireScaled {
            metadata: self.tags.restored(&self.metadata),
            spec: Some(WireScaledSpec { replicas: Some(self.replicas) }),
            status: Some(WireScaledStatus { ready_replicas: Some(self.ready) }),
        }
        .serialize(serializer)
    }
}

/// As the API would show what is kept (what `triggers::content` hashes).
impl<K> Serialize for Tagged<K> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        WireTagged { metadata: self.tags.restored(&self.metadata) }.serialize(serializer)
    }
}

/// What the operator reads of any cached child, whatever form its cache keeps (the `tags` of
/// `Scaled` and `Tagged`, or the metadata's maps of an object cached whole).
pub trait CachedChild: Resource {
    /// The `app.kubernetes.io/instance` label.
    fn instance(&self) -> Option<&str>;
    /// Whether the `app.kubernetes.io/managed-by` label names the operator.
    fn managed(&self) -> bool;
    /// The `microcourses.io/applied-hash` annotation.
    fn applied_hash(&self) -> Option<&str>;
}

/// `CachedChild` read from an object's metadata maps (for the kinds cached whole).
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
        let labels = &scaled.tags.labels;
        assert_eq!((labels.zone.as_deref(), labels.revision.as_deref()), (Some("zone-a"), Some("r1")));
        assert!(labels.select("catalog", crate::labels::Component::App));
        assert!(!labels.select("catalog", crate::labels::Component::Cache), "another component");
        assert!(!labels.select("cart", crate::labels::Component::App), "another instance");
        assert_eq!((scaled.instance(), scaled.managed(), scaled.applied_hash()), (Some("catalog"), true, Some("h1")));
        let meta = &scaled.metadata;
        assert_eq!((&meta.labels, &meta.annotations, &meta.managed_fields), (&None, &None, &None));
        assert_eq!(meta.owner_references.as_ref().map(|o| o[0].uid.as_str()), Some("c1"), "the owner is kept");
        let unmanaged = ChildLabels { managed_by: Some("someone-else".into()), ..labels.clone() };
        assert!(!unmanaged.select("catalog", crate::labels::Component::App));
    }

    #[test]
    fn a_child_cached_for_its_metadata_keeps_its_identity_owner_labels_read_and_hash_and_no_map() {
        let service = |applied: &str, version: &str| -> Tagged<k8s_openapi::api::core::v1::Service> {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "catalog", "namespace": "ns", "uid": "s1", "resourceVersion": "5",
                    "ownerReferences": [{"apiVersion": "microcourses.io/v1alpha1", "kind": "CourseService", "name": "catalog", "uid": "c1"}],
                    "labels": {"app.kubernetes.io/instance": "catalog", "app.kubernetes.io/managed-by": "course-operator",
                        "app.kubernetes.io/version": version},
                    "annotations": {"microcourses.io/applied-hash": applied, "other": "x"}},
                "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
            }))
            .expect("a Service")
        };
        let cached = service("h1", "1");
        assert_eq!((cached.instance(), cached.managed(), cached.applied_hash()), (Some("catalog"), true, Some("h1")));
        let meta = &cached.metadata;
        assert_eq!((&meta.labels, &meta.annotations), (&None, &None), "no label or annotation map");
        assert_eq!(
            (meta.uid.as_deref(), meta.owner_references.as_ref().map(|o| o[0].uid.as_str())),
            (Some("s1"), Some("c1"))
        );
        assert_eq!(service("h1", "2"), cached, "a label not read is not kept");
        assert_ne!(service("h2", "1"), cached, "applied again");
        let again: Tagged<k8s_openapi::api::core::v1::Service> =
            serde_json::from_value(serde_json::to_value(&cached).expect("json")).expect("back");
        assert_eq!(again, cached, "what is kept round-trips");
    }

    #[test]
    fn a_cached_endpoint_slice_keeps_its_instance_and_its_ready_pods_sorted() {
        let slice: ServingSlice = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "catalog-x1x2x", "namespace": "shop", "generateName": "catalog-",
                "labels": {"app.kubernetes.io/instance": "catalog", "kubernetes.io/service-name": "catalog"},
                "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": "catalog", "uid": "s1"}]},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["10.0.0.2"], "targetRef": {"kind": "Pod", "name": "catalog-b"}, "conditions": {"ready": true}},
                {"addresses": ["10.0.0.3"], "targetRef": {"kind": "Pod", "name": "catalog-c"}, "conditions": {"ready": false, "serving": true}},
                {"addresses": ["10.0.0.4"], "conditions": {"ready": true}},
                {"addresses": ["10.0.0.1"], "targetRef": {"kind": "Pod", "name": "catalog-a"}, "conditions": {"ready": true}},
                {"addresses": ["10.0.0.5"], "targetRef": {"kind": "Pod", "name": "catalog-d"}},
            ],
            "ports": [{"port": 80}],
        }))
        .expect("an EndpointSlice");
        assert_eq!(slice.instance.as_deref(), Some("catalog"));
        assert_eq!(slice.ready_pods, ["catalog-a", "catalog-b"], "Ready with a pod named, sorted");
        let meta = &slice.metadata;
        assert_eq!((&meta.labels, &meta.annotations, &meta.owner_references), (&None, &None, &None));
        assert_eq!((meta.name.as_deref(), meta.namespace.as_deref()), (Some("catalog-x1x2x"), Some("shop")));
        let empty: ServingSlice = serde_json::from_value(
            serde_json::json!({"metadata": {"name": "s"}, "addressType": "IPv4", "endpoints": null}),
        )
        .expect("an empty slice");
        assert!(empty.ready_pods.is_empty() && empty.instance.is_none());
    }

    #[test]
    fn each_compact_form_is_read_from_the_api_of_its_kind() {
        use k8s_openapi::api::core::v1::{Pod, Service};
        use k8s_openapi::api::discovery::v1::EndpointSlice;
        assert_eq!(AppPod::url_path(&(), Some("ns")), Pod::url_path(&(), Some("ns")));
        assert_eq!(ServingSlice::url_path(&(), Some("ns")), EndpointSlice::url_path(&(), Some("ns")));
        assert_eq!(Scaled::<ReplicaSet>::url_path(&(), Some("ns")), ReplicaSet::url_path(&(), Some("ns")));
        assert_eq!(Tagged::<Service>::url_path(&(), Some("ns")), Service::url_path(&(), Some("ns")));
        assert_eq!((AppPod::kind(&()), ServingSlice::kind(&())), ("Pod".into(), "EndpointSlice".into()));
    }

    #[test]
    fn the_cached_forms_are_a_fraction_of_the_whole_objects() {
        let whole = std::mem::size_of::<k8s_openapi::api::core::v1::Pod>();
        assert!(std::mem::size_of::<AppPod>() * 3 < whole, "{} vs {whole}", std::mem::size_of::<AppPod>());
        let whole = std::mem::size_of::<ReplicaSet>();
        assert!(std::mem::size_of::<Scaled<ReplicaSet>>() * 3 < whole);
    }
}
