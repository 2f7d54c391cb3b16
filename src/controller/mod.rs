//! The controller shell: watches, caches, leader election, health and metrics endpoints.
//! Decisions are made by the pure modules; this module only observes and writes.

mod analysis;
mod children;
mod cli;
mod error;
mod fence;
mod http;
mod leadership;
pub mod metrics;
mod reconcile;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Node, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::client::ClientBuilder;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Controller;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::api::CourseService;
use crate::labels;
use children::ChildStores;
use metrics::Metrics;
use reconcile::Context;

pub use cli::{LogFormat, RunArgs};
pub use error::Error;

/// Runs the controller until SIGTERM or Ctrl-C.
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    cli::init_tracing(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run_controller(args))
}

/// Objects per page of a cache's (re)list. kube's default of 500 made the initial list of a
/// 1000-CourseService fleet the operator's memory peak: a page of 500 whole Deployments
/// (templates included, before slimming) is ~20 MB of transient heap, twice the steady heap
/// of every cache together; at 100 per page the peak is a fifth of that, for 30 list requests
/// instead of 6.
const LIST_PAGE_SIZE: u32 = 100;

/// Requests queued in front of the write fence (the fence needs a cloneable service below it).
const FENCE_BUFFER: usize = 1024;

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

/// What about a Node matters for the zone inventory; other changes (heartbeats, images) do not
/// trigger reconciles.
fn node_fingerprint(node: &Node) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    node.metadata.labels.as_ref().and_then(|l| l.get(labels::TOPOLOGY_ZONE)).hash(&mut hasher);
    node.spec.as_ref().and_then(|s| s.unschedulable).hash(&mut hasher);
    let ready =
        node.status.as_ref().and_then(|s| s.conditions.as_ref()).and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
    ready.map(|c| c.status.as_str()).hash(&mut hasher);
    Some(hasher.finish())
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

/// A reflector cache of one kind of child and the stream of its changes.
fn watch_children<K>(
    client: &Client,
    namespace: Option<&str>,
    config: &watcher::Config,
    metrics: &Arc<Metrics>,
    slim: fn(&mut K),
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
    (reader, retry_quietly(K::plural(&()).into_owned(), metrics.clone(), events.applied_objects()))
}

/// Counts, logs and drops a cache's failed list/watch requests; the cache retries them on its
/// own back-off. An error must never reach the Controller: kube-runtime pauses *every* trigger
/// stream behind one shared back-off per error, so after an apiserver restart the dozen failed
/// watches were consumed one back-off step at a time and the CourseService watch stayed paused
/// for minutes (measured: the first scale request after a restart waited > 60 s).
fn retry_quietly<K>(
    resource: String,
    metrics: Arc<Metrics>,
    events: impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Send + 'static,
{
    events.filter_map(move |event| {
        futures::future::ready(match event {
            Ok(object) => Some(Ok(object)),
            Err(error) => {
                metrics.watch_error(&resource);
                warn!(%resource, %error, "watch failed; retrying with back-off");
                None
            }
        })
    })
}

/// Memory: of an application pod, the unschedulable-zone check reads labels, the creation
/// time and the PodScheduled condition, and the rollout's restart limit the restart counts.
fn slim_pod(pod: &mut Pod) {
    pod.metadata.managed_fields = None;
    pod.metadata.annotations = None;
    pod.metadata.owner_references = None;
    pod.spec = None;
    let restarts = reconcile::restarts(pod);
    if let Some(status) = pod.status.as_mut() {
        *status = k8s_openapi::api::core::v1::PodStatus {
            conditions: status.conditions.take().map(|c| c.into_iter().filter(|c| c.type_ == "PodScheduled").collect()),
            container_statuses: Some(vec![k8s_openapi::api::core::v1::ContainerStatus {
                restart_count: restarts,
                ..Default::default()
            }]),
            ..Default::default()
        };
    }
}

/// What about an application pod matters to a reconcile: being unschedulable (and since when)
/// and its restarts. Readiness reaches the operator through EndpointSlices instead, so a pod
/// turning Ready triggers no second reconcile.
fn pod_fingerprint(pod: &Pod) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let scheduled = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"));
    scheduled
        .map(|c| (&c.status, &c.reason, c.last_transition_time.as_ref().map(|t| t.0.as_second())))
        .hash(&mut hasher);
    reconcile::restarts(pod).hash(&mut hasher);
    Some(hasher.finish())
}

/// Memory: of an EndpointSlice the rollout gates read which pods are Ready.
fn slim_endpoint_slice(slice: &mut EndpointSlice) {
    slice.metadata.managed_fields = None;
    slice.metadata.annotations = None;
    slice.metadata.owner_references = None;
    slice.ports = None;
    for endpoint in slice.endpoints.iter_mut().flatten() {
        endpoint.addresses = Vec::new();
        endpoint.hints = None;
        endpoint.hostname = None;
        endpoint.node_name = None;
        endpoint.deprecated_topology = None;
        if let Some(target) = endpoint.target_ref.as_mut() {
            *target = k8s_openapi::api::core::v1::ObjectReference { name: target.name.take(), ..Default::default() };
        }
    }
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

/// Memory: of a Deployment the operator reads labels, owners, its applied hash, replicas and
/// the replica counts. The pod template (over half of a Deployment) is dropped: the current
/// revision's is rendered from the spec, and an older revision's is fetched once when a
/// rollout needs it (`reconcile::older_templates`).
fn slim_deployment(deployment: &mut Deployment) {
    deployment.metadata.managed_fields = None;
    if let Some(annotations) = deployment.metadata.annotations.as_mut() {
        annotations.retain(|key, _| key == labels::APPLIED_HASH);
    }
    deployment.spec.template = Default::default();
    if let Some(status) = deployment.status.as_mut() {
        status.conditions = None;
    }
}

async fn run_controller(args: RunArgs) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::default());
    let config = kube::Config::infer().await?;
    // Lease renewals and the fence's Lease reads go through their own client so the request
    // metrics show only the controller's own work (the steady-state zero-write check reads them).
    let lease_client = Client::try_from(config.clone())?;
    let namespace = args.namespace.as_deref();
    let identity = args.identity.clone().unwrap_or_else(|| format!("{}-{}", hostname(), std::process::id()));
    let counted = ClientBuilder::try_from(config)?.with_layer(&metrics::counting_layer(metrics.clone()));
    let client: Client = if args.no_leader_election {
        counted.build()
    } else {
        // Every write waits for the fence; a denied one never reaches the apiserver (nor the count).
        let fence = fence::LeaseFence::new(lease_client.clone(), &args.lease_namespace, &args.lease_name, &identity);
        counted
            .with_layer(&tower::buffer::BufferLayer::new(FENCE_BUFFER))
            .with_layer(&fence::layer(Arc::new(fence), metrics.clone()))
            .build()
    };

    // Leader election: every replica watches (warm caches), only the holder writes. A refused
    // Lease request is retried in the background; the replica stays up, not ready, not writing.
    let (_always_leader, leader, joined, lease_task) = if args.no_leader_election {
        let (leader_tx, leader) = watch::channel(true);
        let (joined_tx, joined) = watch::channel(true);
        (Some((leader_tx, joined_tx)), leader, joined, None)
    } else {
        let election = leadership::Election {
            lease_namespace: args.lease_namespace.clone(),
            lease_name: args.lease_name.clone(),
            identity: identity.clone(),
            duration_seconds: args.lease_duration_seconds,
        };
        let started = leadership::start(lease_client, election, metrics.clone());
        (None, started.leader, started.joined, Some(started.task))
    };

    // Caches: children are watched by our managed-by label only.
    let managed = list_config().labels(&format!("{}={}", labels::MANAGED_BY, labels::MANAGER));
    let (deployments, deployment_events) =
        watch_children::<Deployment>(&client, namespace, &managed, &metrics, slim_deployment);
    let (statefulsets, statefulset_events) =
        watch_children::<StatefulSet>(&client, namespace, &managed, &metrics, slim_meta);
    let (jobs, job_events) = watch_children::<Job>(&client, namespace, &managed, &metrics, slim_meta);
    let (services, service_events) =
        watch_children::<PartialObjectMeta<Service>>(&client, namespace, &managed, &metrics, slim_meta);
    let (pdbs, pdb_events) =
        watch_children::<PartialObjectMeta<PodDisruptionBudget>>(&client, namespace, &managed, &metrics, slim_meta);
    let (hpas, hpa_events) =
        watch_children::<PartialObjectMeta<HorizontalPodAutoscaler>>(&client, namespace, &managed, &metrics, slim_meta);
    let (configmaps, configmap_events) =
        watch_children::<PartialObjectMeta<ConfigMap>>(&client, namespace, &managed, &metrics, slim_meta);
    let (secrets, secret_events) = watch_children::<Secret>(&client, namespace, &managed, &metrics, slim_meta);
    let (cronjobs, cronjob_events) =
        watch_children::<PartialObjectMeta<CronJob>>(&client, namespace, &managed, &metrics, slim_meta);
    let (network_policies, network_policy_events) =
        watch_children::<PartialObjectMeta<NetworkPolicy>>(&client, namespace, &managed, &metrics, slim_meta);
    // The EndpointSlices of our Services carry the Services' labels: their Ready endpoints
    // are the freshest readiness signal for the rollout gates.
    let (endpoint_slices, endpoint_slice_events) =
        watch_children::<EndpointSlice>(&client, namespace, &managed, &metrics, slim_endpoint_slice);
    let (pvcs, pvc_events) =
        watch_children::<PartialObjectMeta<PersistentVolumeClaim>>(&client, namespace, &managed, &metrics, slim_meta);
    let children = ChildStores {
        deployments,
        statefulsets,
        jobs,
        services,
        pdbs,
        hpas,
        configmaps,
        secrets,
        cronjobs,
        network_policies,
        pvcs,
    };
    let (nodes, nodes_writer) = reflector::store();
    let node_events = watcher(Api::<Node>::all(client.clone()), list_config())
        .modify(slim_node)
        .default_backoff()
        .reflect(nodes_writer)
        .applied_objects()
        .predicate_filter(node_fingerprint, Default::default());
    let node_events = retry_quietly("nodes".into(), metrics.clone(), node_events);

    // Application pods, slimmed to a few hundred bytes each; only changes that matter to a
    // reconcile (unschedulable, restarts) trigger one.
    let app_pods_config = list_config().labels(&format!(
        "{}={},{}={}",
        labels::MANAGED_BY,
        labels::MANAGER,
        labels::COMPONENT,
        labels::Component::App.as_str()
    ));
    let (app_pods, app_pods_writer) = reflector::store();
    let app_pod_events = watcher(api::<Pod>(&client, namespace), app_pods_config)
        .modify(slim_pod)
        .default_backoff()
        .reflect(app_pods_writer)
        .applied_objects()
        .predicate_filter(pod_fingerprint, Default::default());
    let app_pod_events = retry_quietly("pods".into(), metrics.clone(), app_pod_events);

    let (courses, courses_writer) = reflector::store();
    // The Controller itself waits on this store's readiness; a second waiter on the same store
    // can miss the wake-up (one waker per store), so our own readiness check watches for the
    // end of the first list in the stream instead.
    let (courses_listed_tx, mut courses_listed) = watch::channel(false);
    let course_events = watcher(api::<CourseService>(&client, namespace), list_config())
        .modify(slim_course)
        .default_backoff()
        .reflect(courses_writer)
        .inspect(move |event| {
            if matches!(event, Ok(watcher::Event::InitDone)) {
                courses_listed_tx.send_replace(true);
            }
        })
        .applied_objects();
    let course_events = retry_quietly("courseservices".into(), metrics.clone(), course_events);
    let controller = Controller::for_stream(course_events, courses.clone())
        .with_config(kube::runtime::controller::Config::default().concurrency(args.concurrency));

    // Readiness: only once every cache has synced and the leader Lease has been reached.
    let ready = Arc::new(AtomicBool::new(false));
    {
        let mut joined = joined;
        let ready = ready.clone();
        let c = children.clone();
        let nodes = nodes.clone();
        let app_pods = app_pods.clone();
        let endpoint_slices = endpoint_slices.clone();
        tokio::spawn(async move {
            let courses_synced = courses_listed.wait_for(|listed| *listed).await.is_ok();
            let synced = futures::future::try_join_all([
                nodes.wait_until_ready().boxed(),
                app_pods.wait_until_ready().boxed(),
                endpoint_slices.wait_until_ready().boxed(),
                c.deployments.wait_until_ready().boxed(),
                c.statefulsets.wait_until_ready().boxed(),
                c.jobs.wait_until_ready().boxed(),
                c.services.wait_until_ready().boxed(),
                c.pdbs.wait_until_ready().boxed(),
                c.hpas.wait_until_ready().boxed(),
                c.configmaps.wait_until_ready().boxed(),
                c.secrets.wait_until_ready().boxed(),
                c.cronjobs.wait_until_ready().boxed(),
                c.network_policies.wait_until_ready().boxed(),
                c.pvcs.wait_until_ready().boxed(),
            ])
            .await;
            let joined = joined.wait_for(|joined| *joined).await.is_ok();
            if courses_synced && synced.is_ok() && joined {
                info!("caches synced");
                ready.store(true, Ordering::SeqCst);
            }
        });
    }
    // The HTTP server sees leadership through a flag, not a channel receiver: the lease task
    // releases the Lease once every receiver is gone, i.e. when the controller has stopped.
    let is_leader = Arc::new(AtomicBool::new(*leader.borrow()));
    tokio::spawn(http::serve(args.metrics_addr, metrics.clone(), ready.clone(), is_leader.clone()));

    // Becoming leader re-checks every CourseService at once.
    let leadership = futures::stream::unfold(
        (leader.clone(), metrics.clone(), is_leader.clone()),
        |(mut rx, metrics, flag)| async move {
            loop {
                rx.changed().await.ok()?;
                let leading = *rx.borrow_and_update();
                metrics.set_leader(leading);
                flag.store(leading, Ordering::SeqCst);
                info!(leader = leading, "leadership changed");
                if leading {
                    return Some(((), (rx, metrics, flag)));
                }
            }
        },
    );
    metrics.set_leader(*leader.borrow());

    let context = Arc::new(Context {
        client: client.clone(),
        nodes: nodes.clone(),
        app_pods,
        endpoint_slices,
        unschedulable: crate::zones::UnschedulablePolicy {
            after: Duration::from_secs(args.unschedulable_zone_seconds),
            retry_after: Duration::from_secs(args.unschedulable_zone_retry_seconds),
        },
        children,
        metrics: metrics.clone(),
        recorder: Recorder::new(
            client,
            Reporter { controller: labels::MANAGER.into(), instance: Some(identity.clone()) },
        ),
        leader,
        synced: ready,
        templates: Default::default(),
        failures: Default::default(),
        resync: Duration::from_secs(args.resync_seconds),
    });

    let all_courses =
        move |_: Node| courses.state().iter().map(|cs| ObjectRef::from_obj(cs.as_ref())).collect::<Vec<_>>();
    info!(%identity, namespace = namespace.unwrap_or("<all>"), "starting controller");
    controller
        .owns_stream(deployment_events)
        .owns_stream(statefulset_events)
        .owns_stream(job_events)
        .owns_stream(service_events)
        .owns_stream(pdb_events)
        .owns_stream(hpa_events)
        .owns_stream(configmap_events)
        .owns_stream(secret_events)
        .owns_stream(cronjob_events)
        .owns_stream(network_policy_events)
        .owns_stream(pvc_events)
        .watches_stream(node_events, all_courses)
        .watches_stream(app_pod_events, |pod: Pod| course_of(&pod))
        .watches_stream(endpoint_slice_events, |slice: EndpointSlice| course_of(&slice))
        .reconcile_all_on(leadership)
        .graceful_shutdown_on(shutdown_signal())
        .run(reconcile::reconcile, reconcile::error_policy, context)
        .for_each(|result| async move {
            if let Err(error) = result {
                match error {
                    kube::runtime::controller::Error::ReconcilerFailed(..) => {} // logged by error_policy
                    other => warn!(error = %other, "controller event"),
                }
            }
        })
        .await;

    // Every leadership receiver is gone with the controller: the lease task releases the Lease.
    if let Some(task) = lease_task
        && tokio::time::timeout(Duration::from_secs(5), task).await.is_err()
    {
        warn!("leader lease not released within 5 s");
    }
    info!("stopped");
    Ok(())
}

/// The CourseService an object without an owner reference to it (a pod, an EndpointSlice)
/// belongs to: the one named by its instance label, in its namespace.
fn course_of<K: Resource>(object: &K) -> Option<ObjectRef<CourseService>> {
    let instance = object.labels().get(labels::INSTANCE)?;
    Some(ObjectRef::new(instance).within(object.meta().namespace.as_deref()?))
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_owned()))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "course-operator".into())
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => futures::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        () = terminate => {},
    }
    info!("shutdown requested");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ready: &str, scheduled: &str, restarts: &[i32]) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "catalog-a-1", "namespace": "shop", "labels": {"app.kubernetes.io/instance": "catalog"},
                "annotations": {"big": "x"}},
            "spec": {"containers": [{"name": "app", "image": "catalog:1"}]},
            "status": {
                "phase": "Running",
                "conditions": [
                    {"type": "Ready", "status": ready},
                    {"type": "PodScheduled", "status": scheduled, "reason": "Unschedulable"},
                ],
                "containerStatuses": restarts.iter().enumerate().map(|(i, r)| serde_json::json!({
                    "name": format!("c{i}"), "image": "catalog:1", "imageID": "", "ready": true, "restartCount": r,
                })).collect::<Vec<_>>(),
            },
        }))
        .expect("pod")
    }

    #[test]
    fn a_slim_pod_keeps_its_labels_scheduling_and_restarts_only() {
        let mut slim = pod("True", "False", &[2, 3]);
        slim_pod(&mut slim);
        assert_eq!(reconcile::restarts(&slim), 5);
        assert!(slim.spec.is_none() && slim.metadata.annotations.is_none());
        let status = slim.status.as_ref().expect("status");
        let kept: Vec<&str> = status.conditions.iter().flatten().map(|c| c.type_.as_str()).collect();
        assert_eq!(kept, ["PodScheduled"]);
        assert_eq!(status.phase, None);
        assert_eq!(slim.labels().get(labels::INSTANCE).map(String::as_str), Some("catalog"));
    }

    #[test]
    fn only_scheduling_and_restarts_change_a_pods_fingerprint() {
        let base = pod_fingerprint(&pod("False", "False", &[0]));
        assert_eq!(base, pod_fingerprint(&pod("True", "False", &[0])), "readiness comes from EndpointSlices");
        assert_ne!(base, pod_fingerprint(&pod("False", "True", &[0])), "scheduled");
        assert_ne!(base, pod_fingerprint(&pod("False", "False", &[1])), "restarted");
    }
}
