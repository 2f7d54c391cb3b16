//! Running the controller: a recipe from the kubeconfig to a stopped process that has handed
//! its Lease on.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use kube::Client;
use kube::client::ClientBuilder;
use kube::runtime::events::{Recorder, Reporter};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::caches::{self, Caches, Stores};
use super::cli::{self, RunArgs};
use super::memory::CourseMemory;
use super::metrics::{self, Metrics};
use super::reconcile::{self, Context};
use super::turns::{self, Turns};
use super::{fence, http, leadership};
use crate::labels;

/// Requests queued in front of the write fence (the fence needs a cloneable service below it).
const FENCE_BUFFER: usize = 1024;

/// Runs the controller until SIGTERM or Ctrl-C.
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    cli::init_tracing(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run_controller(args))
}

async fn run_controller(args: RunArgs) -> anyhow::Result<()> {
    args.images.check().map_err(anyhow::Error::msg)?;
    let metrics = Arc::new(Metrics::default());
    let namespace = args.namespace.as_deref();
    let identity = args.identity.clone().unwrap_or_else(|| format!("{}-{}", hostname(), std::process::id()));

    // 1. clients
    let mut config = kube::Config::infer().await?;
    // Audit logs name the replica that sent each request.
    match ::http::HeaderValue::try_from(format!("course-operator/{} ({identity})", env!("CARGO_PKG_VERSION"))) {
        Ok(agent) => config.headers.push((::http::header::USER_AGENT, agent)),
        Err(_) => warn!(%identity, "identity is not a valid header value; requests carry no user agent"),
    }
    // Lease renewals and the fence's Lease reads go through their own client so the request
    // metrics show only the controller's own work (the steady-state zero-write check reads them).
    let lease_client = Client::try_from(config.clone())?;
    let client = controller_client(config, &args, &lease_client, &identity, &metrics)?;

    // 2. leadership: every replica watches (warm caches), only the holder writes. A refused
    // Lease request is retried in the background; the replica stays up, not ready, not writing.
    let Candidacy { leader, joined, lease_task, always_leader: _always_leader } =
        candidacy(&args, lease_client, &identity, &metrics);

    // 3. caches, and the Controller their changes trigger; what the reconciler remembers of a
    // CourseService goes when the CourseService does
    let memory = Arc::new(CourseMemory::default());
    let Caches { stores, controller } = caches::build(&client, namespace, &metrics, memory.clone());

    // 4. readiness: only once every cache has synced and the leader Lease has been reached
    let ready = Arc::new(AtomicBool::new(false));
    tokio::spawn(become_ready(stores.clone(), joined, ready.clone()));

    // 5. /metrics, /healthz, /readyz. The HTTP server sees leadership through a flag, not a
    // channel receiver: the lease task releases the Lease once every receiver is gone, i.e.
    // when the controller has stopped.
    let is_leader = Arc::new(AtomicBool::new(*leader.borrow()));
    tokio::spawn(http::serve(args.metrics_addr, metrics.clone(), ready.clone(), is_leader.clone()));

    // 6. the controller, until SIGTERM or Ctrl-C
    let became_leader = became_leader(leader.clone(), metrics.clone(), is_leader);
    metrics.set_leader(*leader.borrow());
    let context = Arc::new(Context {
        client: client.clone(),
        nodes: stores.nodes,
        app_pods: stores.app_pods,
        endpoint_slices: stores.endpoint_slices,
        unschedulable: crate::zones::UnschedulablePolicy {
            after: Duration::from_secs(args.unschedulable_zone_seconds),
            retry_after: Duration::from_secs(args.unschedulable_zone_retry_seconds),
        },
        children: stores.children,
        legacy_deployments: stores.legacy_deployments,
        metrics: metrics.clone(),
        recorder: Recorder::new(
            client,
            Reporter { controller: labels::MANAGER.into(), instance: Some(identity.clone()) },
        ),
        leader,
        synced: ready,
        memory,
        resync: Duration::from_secs(args.resync_seconds),
        images: args.images.clone(),
        turns: Turns::new(args.concurrency),
    });
    info!(%identity, namespace = namespace.unwrap_or("<all>"), "starting controller");
    controller
        .with_config(turns::controller_config())
        .reconcile_all_on(became_leader)
        .graceful_shutdown_on({
            let context = context.clone();
            async move {
                shutdown_signal().await;
                context.turns.close();
            }
        })
        .run(reconcile::reconcile_in_turn, reconcile::error_policy, context)
        .for_each(|result| async move {
            if let Err(error) = result {
                match error {
                    kube::runtime::controller::Error::ReconcilerFailed(..) => {} // logged by error_policy
                    other => warn!(error = %other, "controller event"),
                }
            }
        })
        .await;

    // 7. hand the Lease on: every leadership receiver is gone with the controller, so the
    // lease task releases the Lease.
    if let Some(task) = lease_task
        && tokio::time::timeout(Duration::from_secs(5), task).await.is_err()
    {
        warn!("leader lease not released within 5 s");
    }
    info!("stopped");
    Ok(())
}

/// The client of the controller's own requests, each counted in the request metrics.
fn controller_client(
    config: kube::Config,
    args: &RunArgs,
    lease_client: &Client,
    identity: &str,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<Client> {
    let counted = ClientBuilder::try_from(config)?.with_layer(&metrics::counting_layer(metrics.clone()));
    Ok(if args.no_leader_election {
        counted.build()
    } else {
        // Every write waits for the fence; a denied one never reaches the apiserver (nor the count).
        let fence = fence::LeaseFence::new(lease_client.clone(), &args.lease_namespace, &args.lease_name, identity);
        counted
            .with_layer(&tower::buffer::BufferLayer::new(FENCE_BUFFER))
            .with_layer(&fence::layer(Arc::new(fence), metrics.clone()))
            .build()
    })
}

/// This replica's part in the leader election.
struct Candidacy {
    /// True while this replica may write.
    leader: watch::Receiver<bool>,
    /// True once the Lease has been reached.
    joined: watch::Receiver<bool>,
    /// Releases the Lease once every `leader` receiver is gone.
    lease_task: Option<JoinHandle<()>>,
    /// Without leader election: the senders of the two flags, kept so they never close.
    always_leader: Option<(watch::Sender<bool>, watch::Sender<bool>)>,
}

fn candidacy(args: &RunArgs, lease_client: Client, identity: &str, metrics: &Arc<Metrics>) -> Candidacy {
    if args.no_leader_election {
        let (leader_tx, leader) = watch::channel(true);
        let (joined_tx, joined) = watch::channel(true);
        return Candidacy { leader, joined, lease_task: None, always_leader: Some((leader_tx, joined_tx)) };
    }
    let election = leadership::Election {
        lease_namespace: args.lease_namespace.clone(),
        lease_name: args.lease_name.clone(),
        identity: identity.to_owned(),
        duration_seconds: args.lease_duration_seconds,
        step_down_delay: Duration::from_secs(args.test_delay_step_down_seconds),
    };
    let started = leadership::start(lease_client, election, metrics.clone());
    Candidacy { leader: started.leader, joined: started.joined, lease_task: Some(started.task), always_leader: None }
}

/// Turns `ready` true once every cache has synced and the leader Lease has been reached.
async fn become_ready(stores: Stores, mut joined: watch::Receiver<bool>, ready: Arc<AtomicBool>) {
    let synced = stores.synced().await;
    let joined = joined.wait_for(|joined| *joined).await.is_ok();
    if synced && joined {
        info!("caches synced");
        ready.store(true, Ordering::SeqCst);
    }
}

/// Publishes every leadership change (metric, HTTP flag, log) and yields each time this
/// replica becomes leader: becoming leader re-checks every CourseService at once.
fn became_leader(
    leader: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
    is_leader: Arc<AtomicBool>,
) -> impl futures::Stream<Item = ()> + Send + 'static {
    futures::stream::unfold((leader, metrics, is_leader), |(mut rx, metrics, flag)| async move {
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
    })
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
