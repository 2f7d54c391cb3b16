//! Which changes of a watched object queue a reconcile: only those that change what a reconcile
//! reads of it. Status churn nothing reads (a PodDisruptionBudget's counts, a Service's
//! load-balancer status, a node's heartbeats, a pod being scheduled) queues nothing; a
//! deletion of anything a reconcile read queues its owner, so a deleted child is put back at
//! once rather than at the next resync.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Node;
use kube::Resource;
use kube::runtime::watcher;
use serde::Serialize;
use tracing::warn;

use super::metrics::Metrics;
use crate::cached::{AppPod, ServingSlice};

/// What a reconcile reads of an object, as a hash; `None` when that is nothing at all (a
/// healthy pod), so the object's arrival and departure queue nothing either.
pub type Reads<K> = fn(&K) -> Option<u64>;

/// The objects of a cache's watch whose change should queue a reconcile, each counted in
/// `course_operator_triggers_total`. A failed list or watch request is counted, logged and
/// dropped; the cache retries it on its own back-off. An error must never reach the
/// Controller: kube-runtime pauses *every* trigger stream behind one shared back-off per
/// error, so after an apiserver restart the dozen failed watches were consumed one back-off
/// step at a time and the CourseService watch stayed paused for minutes (measured: the first
/// scale request after a restart waited > 60 s).
pub fn triggers<K>(
    resource: String,
    metrics: Arc<Metrics>,
    reads: Reads<K>,
    events: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource + Send + 'static,
{
    let mut seen = Seen::default();
    let triggered = metrics.triggers(&resource);
    events.filter_map(move |event| {
        futures::future::ready(match event {
            Ok(event) => seen.changed(event, reads).map(|object| {
                triggered.inc();
                Ok(object)
            }),
            Err(error) => {
                metrics.watch_error(&resource);
                warn!(%resource, %error, "watch failed; retrying with back-off");
                None
            }
        })
    })
}

/// What a reconcile last read of each object of one watch, keyed by a hash of its namespace,
/// name and uid (16 bytes an object; objects whose reads are `None` are not kept).
#[derive(Default)]
struct Seen {
    current: HashMap<u64, u64>,
    /// During a relist: what was seen before it. Objects the relist no longer finds were
    /// deleted inside the watch gap; they are forgotten at its end (the reflector's store
    /// drops them too, and the next resync looks at their owners).
    before_relist: Option<HashMap<u64, u64>>,
}

impl Seen {
    /// The object of `event` if what a reconcile reads of it changed: it appeared with
    /// something to read, what is read changed, or it went away having had something read.
    fn changed<K: Resource>(&mut self, event: watcher::Event<K>, reads: Reads<K>) -> Option<K> {
        match event {
            watcher::Event::Init => {
                self.before_relist = Some(std::mem::take(&mut self.current));
                None
            }
            watcher::Event::InitApply(object) => {
                let key = key(&object);
                let before = self.before_relist.as_mut().and_then(|b| b.remove(&key));
                self.record(key, before, object, reads)
            }
            watcher::Event::InitDone => {
                self.before_relist = None;
                None
            }
            watcher::Event::Apply(object) => {
                let key = key(&object);
                let before = self.current.get(&key).copied();
                self.record(key, before, object, reads)
            }
            watcher::Event::Delete(object) => self.current.remove(&key(&object)).map(|_| object),
        }
    }

    fn record<K>(&mut self, key: u64, before: Option<u64>, object: K, reads: Reads<K>) -> Option<K> {
        let now = reads(&object);
        match now {
            Some(hash) => self.current.insert(key, hash),
            None => self.current.remove(&key),
        };
        (now != before).then_some(object)
    }
}

fn key<K: Resource>(object: &K) -> u64 {
    let meta = object.meta();
    hash_of(&(&meta.namespace, &meta.name, &meta.uid))
}

fn hash_of(value: &impl Hash) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

/// A child as cached (already slimmed to what a reconcile reads), less its resource version:
/// for a metadata-only cache its labels, annotations (the applied hash), owners and deletion;
/// for a full one also its spec and status.
pub fn content<K: Resource + Serialize>(object: &K) -> Option<u64> {
    let mut value = serde_json::to_value(object).ok()?;
    if let Some(meta) = value.get_mut("metadata").and_then(serde_json::Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    serialized_hash(&value)
}

/// A fingerprint of `value` as JSON (`None` if it does not serialize).
pub fn serialized_hash(value: &impl Serialize) -> Option<u64> {
    let mut hasher = HashWriter(DefaultHasher::new());
    serde_json::to_writer(&mut hasher, value).ok()?;
    Some(hasher.0.finish())
}

struct HashWriter(DefaultHasher);

impl std::io::Write for HashWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.write(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What the zone inventory reads of a Node: every label and taint (a CourseService's
/// nodeSelector and tolerations decide which nodes, so which zones, it may use), whether it
/// is cordoned, and its Ready status. Heartbeats and images are not read.
pub fn node(node: &Node) -> Option<u64> {
    let spec = node.spec.as_ref();
    let taints = spec.and_then(|s| s.taints.as_deref()).unwrap_or_default();
    let ready =
        node.status.as_ref().and_then(|s| s.conditions.as_ref()).and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
    Some(hash_of(&(
        &node.metadata.labels,
        spec.and_then(|s| s.unschedulable),
        taints.iter().map(|t| (&t.key, &t.value, &t.effect)).collect::<Vec<_>>(),
        ready.map(|c| c.status.as_str()),
    )))
}

/// What a reconcile reads of an application pod: whether the scheduler found no room for it
/// (and since when, in which zone) and its restarts (the rollout's restart limit, by
/// revision). A pod that is neither is read as nothing: pods being created, scheduled, turning
/// Ready (that reaches the operator through EndpointSlices) or deleted queue no reconcile.
pub fn pod(pod: &AppPod) -> Option<u64> {
    let unschedulable = pod.unschedulable_since.as_ref().map(|since| since.0.as_second());
    let restarts = pod.restarts;
    if unschedulable.is_none() && restarts == 0 {
        return None;
    }
    Some(hash_of(&(unschedulable, restarts, &pod.zone, &pod.revision)))
}

/// What the rollout gates read of an EndpointSlice: its CourseService and the pods it lists as
/// Ready. A slice with none is read as nothing.
pub fn endpoint_slice(slice: &ServingSlice) -> Option<u64> {
    if slice.ready_pods.is_empty() {
        return None;
    }
    Some(hash_of(&(&slice.instance, &slice.ready_pods)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cached::Tagged;
    use k8s_openapi::api::policy::v1::PodDisruptionBudget;
    use watcher::Event;

    fn object<K: serde::de::DeserializeOwned>(value: serde_json::Value) -> K {
        serde_json::from_value(value).expect("object")
    }

    fn pod_with(scheduled: &str, reason: &str, restarts: i32) -> AppPod {
        object(serde_json::json!({
            "metadata": {"name": "catalog-a-1", "namespace": "shop", "uid": "u1",
                "creationTimestamp": "2026-11-26T10:00:00Z",
                "labels": {"app.kubernetes.io/instance": "catalog", "microcourses.io/zone": "zone-a"}},
            "status": {
                "conditions": [{"type": "PodScheduled", "status": scheduled, "reason": reason,
                    "lastTransitionTime": "2026-11-26T10:00:01Z"}],
                "containerStatuses": [{"name": "app", "image": "catalog:1", "imageID": "", "ready": true,
                    "restartCount": restarts}],
            },
        }))
    }

    fn pdb(resource_version: &str, healthy: i32, applied: &str) -> PodDisruptionBudget {
        object(serde_json::json!({
            "metadata": {"name": "catalog", "namespace": "shop", "uid": "p1", "resourceVersion": resource_version,
                "annotations": {"microcourses.io/applied-hash": applied}},
            "status": {"currentHealthy": healthy, "desiredHealthy": 2, "disruptionsAllowed": 1, "expectedPods": 3},
        }))
    }

    /// As a metadata-only cache keeps it.
    fn meta(pdb: PodDisruptionBudget) -> Tagged<PodDisruptionBudget> {
        object(serde_json::to_value(pdb).expect("json"))
    }

    #[test]
    fn a_child_triggers_on_arrival_on_what_is_read_and_on_deletion_but_not_on_status_churn() {
        let mut seen = Seen::default();
        let reads: Reads<Tagged<PodDisruptionBudget>> = content;
        let changed = |seen: &mut Seen, event| seen.changed(event, reads).is_some();
        assert!(changed(&mut seen, Event::Apply(meta(pdb("1", 3, "h1")))), "a new child");
        assert!(!changed(&mut seen, Event::Apply(meta(pdb("2", 2, "h1")))), "its status (a new resource version)");
        assert!(changed(&mut seen, Event::Apply(meta(pdb("3", 2, "h2")))), "its applied hash");
        assert!(changed(&mut seen, Event::Delete(meta(pdb("3", 2, "h2")))), "its deletion");
        assert!(changed(&mut seen, Event::Apply(meta(pdb("4", 3, "h2")))), "created again");
    }

    #[test]
    fn a_full_childs_status_is_read() {
        let reads: Reads<PodDisruptionBudget> = content;
        assert_eq!(reads(&pdb("1", 3, "h1")), reads(&pdb("2", 3, "h1")), "resource version alone");
        assert_ne!(reads(&pdb("1", 3, "h1")), reads(&pdb("2", 2, "h1")), "status");
    }

    #[test]
    fn a_relist_triggers_only_what_changed_inside_the_gap() {
        let mut seen = Seen::default();
        let reads: Reads<PodDisruptionBudget> = content;
        assert!(seen.changed(Event::InitApply(pdb("1", 3, "h1")), reads).is_some(), "the first list");
        assert!(seen.changed(Event::InitDone, reads).is_none());
        assert!(seen.changed(Event::Init, reads).is_none());
        assert!(seen.changed(Event::InitApply(pdb("1", 3, "h1")), reads).is_none(), "unchanged in the gap");
        assert!(seen.changed(Event::InitDone, reads).is_none());
        assert!(seen.changed(Event::Init, reads).is_none());
        assert!(seen.changed(Event::InitApply(pdb("9", 2, "h1")), reads).is_some(), "changed in the gap");
        assert!(seen.changed(Event::InitDone, reads).is_none());
        assert!(seen.changed(Event::Delete(pdb("9", 2, "h1")), reads).is_some(), "still known after the relist");
    }

    #[test]
    fn a_healthy_pod_queues_nothing_from_creation_to_deletion() {
        let mut seen = Seen::default();
        let reads: Reads<AppPod> = pod;
        let pending: AppPod =
            object(serde_json::json!({"metadata": {"name": "catalog-a-1", "namespace": "shop", "uid": "u1"}}));
        assert!(seen.changed(Event::Apply(pending), reads).is_none(), "created");
        assert!(seen.changed(Event::Apply(pod_with("True", "", 0)), reads).is_none(), "scheduled");
        assert!(seen.changed(Event::Delete(pod_with("True", "", 0)), reads).is_none(), "deleted");
    }

    #[test]
    fn an_unschedulable_or_restarting_pod_triggers_until_it_is_gone() {
        let mut seen = Seen::default();
        let reads: Reads<AppPod> = pod;
        assert!(seen.changed(Event::Apply(pod_with("False", "Unschedulable", 0)), reads).is_some(), "unschedulable");
        assert!(seen.changed(Event::Apply(pod_with("False", "Unschedulable", 0)), reads).is_none(), "still");
        assert!(seen.changed(Event::Apply(pod_with("True", "", 0)), reads).is_some(), "scheduled at last");
        assert!(seen.changed(Event::Apply(pod_with("True", "", 1)), reads).is_some(), "restarted");
        assert!(seen.changed(Event::Apply(pod_with("True", "", 2)), reads).is_some(), "restarted again");
        assert!(seen.changed(Event::Delete(pod_with("True", "", 2)), reads).is_some(), "a restarted pod gone");
    }

    #[test]
    fn only_labels_taints_cordoning_and_readiness_change_what_is_read_of_a_node() {
        let node_with = |zone: &str, ready: &str, heartbeat: &str, taint: bool| -> Node {
            object(serde_json::json!({
                "metadata": {"name": "n1", "labels": {"topology.kubernetes.io/zone": zone}},
                "spec": {"taints": if taint { serde_json::json!([{"key": "k", "effect": "NoSchedule"}]) } else { serde_json::json!([]) }},
                "status": {"conditions": [{"type": "Ready", "status": ready, "lastHeartbeatTime": heartbeat}]},
            }))
        };
        let base = node(&node_with("zone-a", "True", "2026-11-26T10:00:00Z", false));
        assert_eq!(base, node(&node_with("zone-a", "True", "2026-11-26T10:00:10Z", false)), "a heartbeat");
        assert_ne!(base, node(&node_with("zone-b", "True", "2026-11-26T10:00:00Z", false)), "a zone label");
        assert_ne!(base, node(&node_with("zone-a", "False", "2026-11-26T10:00:00Z", false)), "readiness");
        assert_ne!(base, node(&node_with("zone-a", "True", "2026-11-26T10:00:00Z", true)), "a taint");
    }

    #[test]
    fn only_ready_endpoints_are_read_of_a_slice() {
        let slice = |endpoints: serde_json::Value| -> ServingSlice {
            object(serde_json::json!({
                "metadata": {"name": "catalog-x", "namespace": "shop", "labels": {"app.kubernetes.io/instance": "catalog"}},
                "addressType": "IPv4",
                "endpoints": endpoints,
            }))
        };
        let endpoint = |name: &str, ready: bool, serving: bool| serde_json::json!({"addresses": [], "targetRef": {"name": name}, "conditions": {"ready": ready, "serving": serving}});
        assert_eq!(endpoint_slice(&slice(serde_json::json!([endpoint("a", false, true)]))), None, "none Ready");
        let one = endpoint_slice(&slice(serde_json::json!([endpoint("a", true, true), endpoint("b", false, false)])));
        assert!(one.is_some());
        assert_eq!(
            one,
            endpoint_slice(&slice(serde_json::json!([endpoint("b", false, true), endpoint("a", true, true)]))),
            "serving and order are not read"
        );
        assert_ne!(
            one,
            endpoint_slice(&slice(serde_json::json!([endpoint("a", true, true), endpoint("b", true, true)]))),
            "a second Ready pod"
        );
    }
}
