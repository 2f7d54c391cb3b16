//! The reflector caches every replica keeps warm, slimmed to what a reconcile reads, and the
//! Controller their changes trigger.

use std::sync::Arc;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use tokio::sync::watch;

use super::children::{ChildStores, MetaStore};
use super::memory::CourseMemory;
use super::metrics::Metrics;
use super::triggers;
use crate::api::CourseService;
use crate::cached::{AppPod, Scaled, ServingSlice, Tagged};
use crate::labels;

/// Objects per page of a cache's (re)list. kube's default of 500 made the initial list of a
/// 1000-CourseService fleet the operator's memory peak: a page of 500 whole workload objects
/// (templates included, before slimming) is ~20 MB of transient heap, twice the steady heap
/// of every cache together; at 100 per page the peak is a fifth of that, for 30 list requests
/// instead of 6.
const LIST_PAGE_SIZE: u32 = 100;

/// Every cache, and the Controller fed by their changes.
pub struct Caches {
    pub stores: Stores,
    /// Not running yet: nothing is listed or watched before it runs.
    pub controller: Controller<CourseService>,
}

/// What a reconcile reads instead of the apiserver. Each field is a handle: clones are cheap.
#[derive(Clone)]
pub struct Stores {
    /// Turns true at the end of the first CourseService list: readiness cannot wait on that
    /// store itself (see `watch_courses`).
    courses_listed: watch::Receiver<bool>,
    pub children: ChildStores,
    /// Per-zone Deployments of earlier builds of the operator, pruned once replaced.
    pub legacy_deployments: MetaStore<Deployment>,
    pub nodes: Store<Node>,
    /// Application pods (all CourseServices), as much as the unschedulable-zone check and the
    /// rollout's restart limit read.
    pub app_pods: Store<AppPod>,
    /// EndpointSlices of the operator's Services (all CourseServices).
    pub endpoint_slices: Store<ServingSlice>,
}

/// The object type a child kind's watch lists: the whole object, its metadata and scale, or
/// its metadata only.
macro_rules! watched {
    (full, $ty:ty) => { $ty };
    (scaled, $ty:ty) => { Scaled<$ty> };
    (meta, $ty:ty) => { Tagged<$ty> };
}

/// Builds `ChildStores` from `render::child_kinds!`: one cache per kind, whose changes trigger
/// their owner through `$controller`.
macro_rules! watch_child_kinds {
    ([$client:expr, $namespace:expr, $config:expr, $metrics:expr, $controller:ident]
        $($(#[$doc:meta])* $variant:ident($ty:ty) => $field:ident, $cache:ident, $slim:ident, $prune:ident;)*) => {
        ChildStores {
            $($field: {
                let (store, events) =
                    watch_children::<watched!($cache, $ty)>($client, $namespace, $config, $metrics, $slim, triggers::content);
                $controller = $controller.owns_stream(events);
                store
            },)*
        }
    };
}

/// Builds every cache of the CourseServices in `namespace` (all namespaces if `None`) and of
/// their children, Nodes and pods, and the Controller their changes trigger: children it owns
/// trigger their owner; Nodes trigger every CourseService; pods and EndpointSlices (no owner
/// reference to a CourseService) trigger the one named by their instance label. Only changes
/// of what a reconcile reads trigger anything (`triggers`). What `memory` holds of a
/// CourseService is forgotten when the CourseService is deleted.
pub fn build(client: &Client, namespace: Option<&str>, metrics: &Arc<Metrics>, memory: Arc<CourseMemory>) -> Caches {
    // Children are watched by our managed-by label only.
    let managed = list_config().labels(&format!("{}={}", labels::MANAGED_BY, labels::MANAGER));
    let (courses, courses_listed, course_events) = watch_courses(client, namespace, metrics, memory);
    let mut controller = Controller::for_stream(course_events, courses.clone());
    // One cache per child kind of the table, each change triggering the owner.
    let children = crate::render::child_kinds!(watch_child_kinds, client, namespace, (&managed), metrics, controller);
    // Per-zone Deployments written by earlier builds of the operator: deleted once the
    // ReplicaSets that replace them are Ready (`children::prune`). Metadata only.
    let (legacy_deployments, legacy_deployment_events) =
        watch_children::<Tagged<Deployment>>(client, namespace, &managed, metrics, slim_meta, triggers::content);
    // The EndpointSlices of our Services carry the Services' labels: their Ready endpoints
    // are the freshest readiness signal for the rollout gates.
    let (endpoint_slices, endpoint_slice_events) =
        watch_children::<ServingSlice>(client, namespace, &managed, metrics, slim_meta, triggers::endpoint_slice);
    let (nodes, node_events) = watch_nodes(client, metrics);
    let (app_pods, app_pod_events) = watch_app_pods(client, namespace, metrics);

    let controller = controller
        .owns_stream(legacy_deployment_events)
        .watches_stream(node_events, move |_: Node| {
            courses.state().iter().map(|cs| ObjectRef::from_obj(cs.as_ref())).collect::<Vec<_>>()
        })
        .watches_stream(app_pod_events, |pod: AppPod| course_of_pod(&pod))
        .watches_stream(endpoint_slice_events, |slice: ServingSlice| course_of_slice(&slice));
    let stores = Stores { courses_listed, children, legacy_deployments, nodes, app_pods, endpoint_slices };
    Caches { stores, controller }
}

impl Stores {
    /// Waits until every cache has finished its first list; false if one never will.
    pub async fn synced(mut self) -> bool {
        let courses_synced = self.courses_listed.wait_for(|listed| *listed).await.is_ok();
        let synced = futures::future::try_join_all([
            self.nodes.wait_until_ready().boxed(),
            self.app_pods.wait_until_ready().boxed(),
            self.endpoint_slices.wait_until_ready().boxed(),
            self.legacy_deployments.wait_until_ready().boxed(),
            self.children.wait_until_ready().boxed(),
        ])
        .await;
        courses_synced && synced.is_ok()
    }
}

/// The CourseService cache, a flag that turns true at the end of its first list, and its
/// changes.
fn watch_courses(
    client: &Client,
    namespace: Option<&str>,
    metrics: &Arc<Metrics>,
    memory: Arc<CourseMemory>,
) -> (
    Store<CourseService>,
    watch::Receiver<bool>,
    impl futures::Stream<Item = Result<CourseService, watcher::Error>> + Send + 'static,
) {
    let (courses, courses_writer) = reflector::store();
    // The Controller itself waits on this store's readiness; a second waiter on the same store
    // can miss the wake-up (one waker per store), so our own readiness check watches for the
    // end of the first list in the stream instead.
    let (courses_listed_tx, courses_listed) = watch::channel(false);
    let course_events = watcher(api::<CourseService>(client, namespace), list_config())
        .modify(slim_course)
        .default_backoff()
        .reflect(courses_writer)
        .inspect(follow_courses(courses_listed_tx, memory));
    (
        courses,
        courses_listed,
        triggers::triggers("courseservices".into(), metrics.clone(), triggers::content, course_events),
    )
}

/// Follows the CourseService watch for what its store does not tell: the end of the first
/// list, and deletions. A deleted CourseService is never reconciled again (the operator sets
/// no finalizer, and the Controller skips an object gone from its store), so this is the one
/// place to forget what is remembered of it. A deletion inside a watch gap reaches no Delete
/// event (the relist just lacks the object); its few entries stay until the process restarts.
fn follow_courses(
    listed: watch::Sender<bool>,
    memory: Arc<CourseMemory>,
) -> impl FnMut(&Result<watcher::Event<CourseService>, watcher::Error>) + Send + 'static {
    move |event| match event {
        Ok(watcher::Event::InitDone) => {
            listed.send_replace(true);
        }
        Ok(watcher::Event::Delete(course)) => memory.forget(&ObjectRef::from_obj(course)),
        _ => {}
    }
}

/// The Node cache (the zone inventory) and the changes that matter to it.
fn watch_nodes(
    client: &Client,
    metrics: &Arc<Metrics>,
) -> (Store<Node>, impl futures::Stream<Item = Result<Node, watcher::Error>> + Send + 'static) {
    let (nodes, nodes_writer) = reflector::store();
    let node_events = watcher(Api::<Node>::all(client.clone()), list_config())
        .modify(slim_node)
        .default_backoff()
        .reflect(nodes_writer);
    (nodes, triggers::triggers("nodes".into(), metrics.clone(), triggers::node, node_events))
}

/// Application pods, a few hundred bytes each (`AppPod`); only changes that matter to a
/// reconcile (unschedulable, restarts) trigger one.
fn watch_app_pods(
    client: &Client,
    namespace: Option<&str>,
    metrics: &Arc<Metrics>,
) -> (Store<AppPod>, impl futures::Stream<Item = Result<AppPod, watcher::Error>> + Send + 'static) {
    let app_pods_config = list_config().labels(&format!(
        "{}={},{}={}",
        labels::MANAGED_BY,
        labels::MANAGER,
        labels::COMPONENT,
        labels::Component::App.as_str()
    ));
    let (app_pods, app_pods_writer) = reflector::store();
    let app_pod_events = watcher(api::<AppPod>(client, namespace), app_pods_config)
        .modify(slim_pod)
        .default_backoff()
        .reflect(app_pods_writer);
    (app_pods, triggers::triggers("pods".into(), metrics.clone(), triggers::pod, app_pod_events))
}

/// A reflector cache of one kind of child and the stream of its changes.
fn watch_children<K>(
    client: &Client,
    namespace: Option<&str>,
    config: &watcher::Config,
    metrics: &Arc<Metrics>,
    slim: fn(&mut K),
    reads: triggers::Reads<K>,
) -> (reflector::Store<K>, impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static)
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let events = watcher(api::<K>(client, namespace), config.clone()).modify(slim).default_backoff().reflect(writer);
    (reader, triggers::triggers(K::plural(&()).into_owned(), metrics.clone(), reads, events))
}

/// The CourseService a pod belongs to: the one named by its instance label, in its namespace
/// (a pod has no owner reference to it).
fn course_of_pod(pod: &AppPod) -> Option<ObjectRef<CourseService>> {
    course_named(pod.instance.as_deref()?, &pod.metadata)
}

/// The CourseService whose Service an EndpointSlice belongs to: the one named by its instance
/// label, in its namespace.
fn course_of_slice(slice: &ServingSlice) -> Option<ObjectRef<CourseService>> {
    course_named(slice.instance.as_deref()?, &slice.metadata)
}

fn course_named(instance: &str, meta: &ObjectMeta) -> Option<ObjectRef<CourseService>> {
    Some(ObjectRef::new(instance).within(meta.namespace.as_deref()?))
}

fn list_config() -> watcher::Config {
    watcher::Config::default().page_size(LIST_PAGE_SIZE)
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Memory: the inventory needs labels, spec and conditions, not images or managed fields.
fn slim_node(node: &mut Node) {
    node.metadata.managed_fields = None;
    node.metadata.annotations = None;
    if let Some(status) = node.status.as_mut() {
        status.images = None;
        status.volumes_attached = None;
        status.volumes_in_use = None;
    }
}

/// Memory: of an application pod's metadata the operator reads its identity (the labels it
/// reads are fields of `AppPod`, the creation time is already folded into
/// `unschedulable_since`).
fn slim_pod(pod: &mut AppPod) {
    let meta = &mut pod.metadata;
    meta.managed_fields = None;
    meta.annotations = None;
    meta.owner_references = None;
    meta.generate_name = None;
    meta.creation_timestamp = None;
}

/// Memory: managed fields are the largest part of a cached object and are never read.
fn slim_meta<K: Resource>(object: &mut K) {
    object.meta_mut().managed_fields = None;
}

/// Memory: a CourseService as the reconciler reads it, without managed fields or the copy of
/// the whole object `kubectl apply` leaves in an annotation.
fn slim_course(cs: &mut CourseService) {
    cs.metadata.managed_fields = None;
    if let Some(annotations) = cs.metadata.annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::ReplicaSet;

    use super::*;
    use crate::render::workload::AppTemplate;

    fn course_service(namespace: &str, name: &str) -> CourseService {
        let manifest = format!(
            "apiVersion: microcourses.io/v1alpha1\nkind: CourseService\n\
             metadata: {{name: {name}, namespace: {namespace}}}\nspec: {{image: 'catalog:2'}}"
        );
        crate::manifest::parse(&manifest).expect("manifest")
    }

    #[test]
    fn a_deleted_course_service_is_forgotten_and_no_other() {
        let memory = Arc::new(CourseMemory::default());
        let template = AppTemplate { revision: "r1".into(), pod: Default::default(), version: None };
        for name in ["catalog", "cart"] {
            memory.remember_template("shop", name, "r1", &template);
            memory.failed(ObjectRef::new(name).within("shop"));
        }
        let (listed_tx, _listed) = watch::channel(false);
        let mut follow = follow_courses(listed_tx, memory.clone());

        follow(&Ok(watcher::Event::Apply(course_service("shop", "catalog"))));
        follow(&Ok(watcher::Event::InitApply(course_service("shop", "catalog"))));
        assert!(memory.template("shop", "catalog", "r1").is_some(), "a changed CourseService is remembered");
        follow(&Ok(watcher::Event::Delete(course_service("shop", "catalog"))));

        assert_eq!(memory.template("shop", "catalog", "r1"), None, "the deleted one's template");
        assert_eq!(memory.failed(ObjectRef::new("catalog").within("shop")), 1, "the deleted one's failures");
        assert!(memory.template("shop", "cart", "r1").is_some(), "the other one's template");
        assert_eq!(memory.failed(ObjectRef::new("cart").within("shop")), 2, "the other one's failures");
    }

    #[test]
    fn the_course_services_are_listed_at_the_end_of_the_first_list() {
        let (listed_tx, listed) = watch::channel(false);
        let mut follow = follow_courses(listed_tx, Arc::default());
        follow(&Ok(watcher::Event::Init));
        follow(&Ok(watcher::Event::InitApply(course_service("shop", "catalog"))));
        assert!(!*listed.borrow());
        follow(&Ok(watcher::Event::InitDone));
        assert!(*listed.borrow());
    }

    #[test]
    fn a_slim_pod_keeps_the_labels_a_reconcile_reads_and_its_identity_and_no_label_map() {
        let mut pod: AppPod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "catalog-r-zone-a-x1x2x", "namespace": "shop", "uid": "u1", "resourceVersion": "7",
                "generateName": "catalog-r-zone-a-", "creationTimestamp": "2026-11-26T10:00:00Z",
                "annotations": {"big": "x"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "catalog-r-zone-a", "uid": "r1"}],
                "labels": {"app.kubernetes.io/instance": "catalog", "microcourses.io/zone": "zone-a",
                    "microcourses.io/revision": "r", "app.kubernetes.io/name": "course-service",
                    "app.kubernetes.io/part-of": "catalog", "app.kubernetes.io/version": "1.0.0"}},
        }))
        .expect("pod");
        slim_pod(&mut pod);
        assert_eq!(
            (pod.instance.as_deref(), pod.zone.as_deref(), pod.revision.as_deref()),
            (Some("catalog"), Some("zone-a"), Some("r"))
        );
        assert!(pod.metadata.labels.is_none(), "no label map: {:?}", pod.metadata.labels);
        assert_eq!(course_of_pod(&pod), Some(ObjectRef::new("catalog").within("shop")));
        let meta = &pod.metadata;
        assert_eq!((meta.uid.as_deref(), meta.resource_version.as_deref()), (Some("u1"), Some("7")));
        assert!(meta.annotations.is_none() && meta.owner_references.is_none() && meta.generate_name.is_none());
    }

    #[test]
    fn a_cached_replica_set_changes_only_with_what_a_reconcile_reads() {
        let replica_set = |replicas: i32, ready: i32, created: i32, generation: i64, hash: &str| -> ReplicaSet {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "catalog-r-zone-a", "namespace": "shop", "resourceVersion": format!("{created}{ready}"),
                    "labels": {"app.kubernetes.io/instance": "catalog", "microcourses.io/zone": "zone-a",
                        "app.kubernetes.io/version": format!("{generation}")},
                    "annotations": {"microcourses.io/applied-hash": hash, "deployment.kubernetes.io/revision": format!("{generation}")}},
                "spec": {"replicas": replicas, "selector": {},
                    "template": {"spec": {"containers": [{"name": "app", "image": "catalog:1"}]}}},
                "status": {"replicas": created, "fullyLabeledReplicas": created, "readyReplicas": ready,
                    "availableReplicas": ready, "observedGeneration": generation},
            }))
            .expect("replica set")
        };
        let cache = |replica_set: ReplicaSet| {
            let mut cached: Scaled<ReplicaSet> =
                serde_json::from_value(serde_json::to_value(replica_set).expect("json")).expect("cached");
            slim_meta(&mut cached);
            cached
        };
        let reads = |replica_set: ReplicaSet| super::triggers::content(&cache(replica_set));
        let base = reads(replica_set(2, 1, 1, 1, "h1"));
        assert_eq!(
            base,
            reads(replica_set(2, 1, 2, 2, "h1")),
            "a pod created, a generation observed, a label and an annotation not read"
        );
        assert_ne!(base, reads(replica_set(2, 2, 2, 2, "h1")), "a pod Ready");
        assert_ne!(base, reads(replica_set(3, 1, 1, 1, "h1")), "resized");
        assert_ne!(base, reads(replica_set(2, 1, 1, 1, "h2")), "applied again");
        let slim = cache(replica_set(2, 1, 1, 1, "h1"));
        assert_eq!((slim.replicas, slim.ready, slim.tags.applied_hash.as_deref()), (2, 1, Some("h1")));
        assert_eq!(
            (slim.tags.labels.instance.as_deref(), slim.tags.labels.zone.as_deref()),
            (Some("catalog"), Some("zone-a"))
        );
        assert_eq!((&slim.metadata.labels, &slim.metadata.annotations), (&None, &None), "no label or annotation map");
    }
}
