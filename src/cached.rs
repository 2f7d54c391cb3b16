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

/// A workload as cached: its metadata (labels, owners, the applied hash), the replicas it asks
/// for and how many are Ready. `K` is the kind it was read as (`ReplicaSet`, `StatefulSet`).
pub struct Scaled<K> {
    pub metadata: ObjectMeta,
    /// `spec.replicas` (the API's default, 1, when unset).
    pub replicas: i32,
    /// `status.readyReplicas`.
    pub ready: i32,
    kind: PhantomData<fn() -> K>,
}

impl<K> Scaled<K> {
    pub fn new(metadata: ObjectMeta, replicas: i32, ready: i32) -> Self {
        Scaled { metadata, replicas, ready, kind: PhantomData }
    }
}

// By hand: a derive would ask `K` for the same traits.
impl<K> Clone for Scaled<K> {
    fn clone(&self) -> Self {
        Scaled::new(self.metadata.clone(), self.replicas, self.ready)
    }
}

impl<K> std::fmt::Debug for Scaled<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scaled")
            .field("metadata", &self.metadata)
            .field("replicas", &self.replicas)
            .field("ready", &self.ready)
            .finish()
    }
}

impl<K> PartialEq for Scaled<K> {
    fn eq(&self, other: &Self) -> bool {
        (&self.metadata, self.replicas, self.ready) == (&other.metadata, other.replicas, other.ready)
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

/// As the API would show it (what `triggers::content` hashes).
impl<K> Serialize for Scaled<K> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        WireScaled {
            metadata: self.metadata.clone(),
            spec: Some(WireScaledSpec { replicas: Some(self.replicas) }),
            status: Some(WireScaledStatus { ready_replicas: Some(self.ready) }),
        }
        .serialize(serializer)
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
            "metadata": {"name": "rs", "namespace": "ns"},
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
    }

    #[test]
    fn the_cached_forms_are_a_fraction_of_the_whole_objects() {
        let whole = std::mem::size_of::<k8s_openapi::api::core::v1::Pod>();
        assert!(std::mem::size_of::<AppPod>() * 3 < whole, "{} vs {whole}", std::mem::size_of::<AppPod>());
        let whole = std::mem::size_of::<ReplicaSet>();
        assert!(std::mem::size_of::<Scaled<ReplicaSet>>() * 3 < whole);
    }
}
