//! One reconcile of one CourseService: validate → observe → plan → render (pure but for the
//! few reads the caches cannot answer) → apply → status.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::watch;
use tracing::{debug, info, instrument, warn};

use super::Error;
use super::children::{self, ChildStores, MetaStore, Owner};
use super::memory::CourseMemory;
use super::metrics::{Metrics, Outcome};
use super::turns::Turns;
use crate::api::CourseService;
use crate::database::DatabaseCredentials;
use crate::labels;
use crate::names;
use crate::observe::{self, Observed, ObservedWorkload};
use crate::plan;
use crate::render::workload::AppTemplate;
use crate::render::{Child, Images};
use crate::status;
use crate::validate::ValidatedCourse;
use crate::zones::{self, UnschedulablePolicy, Zone, ZoneInventory};

/// Re-check a CourseService whose pods are still coming up this often. A safety net only: the
/// progress itself arrives through the watches (ReplicaSet Ready counts, EndpointSlices, pods'
/// scheduling and restarts, StatefulSets, Jobs), and timed steps requeue for their own time.
/// It was 15 s, a scan of every cache four times a minute per CourseService still coming up
/// (a 1000-CourseService fleet takes minutes; 11.7 reconciles per CourseService to converge at
/// 15 s, 10.5 at 60 s, one bench run each: the rest are the watches' triggers).
const PROGRESS_POLL: Duration = Duration::from_secs(60);
/// How long a status change that only moves pod counts may wait for the next change before it
/// is written. A fleet coming up wrote a status for each zone whose pod became Ready besides the
/// three that carry news (Starting, Available, settled); conditions are never held back.
const PROGRESS_BATCH: Duration = Duration::from_secs(2);
/// Longest back-off after repeated failures.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How soon a CourseService seen before the caches synced is looked at again.
const CACHE_SYNC_POLL: Duration = Duration::from_millis(500);
/// Look again this soon after the write fence held a reconcile back.
const FENCE_RETRY: Duration = Duration::from_secs(1);

/// Shared state of the controller.
pub struct Context {
    pub client: Client,
    pub nodes: Store<Node>,
    /// Application pods (all CourseServices) in compact form: what the unschedulable-zone check
    /// and the rollout's restart limit read.
    pub app_pods: Store<crate::cached::AppPod>,
    /// EndpointSlices of the operator's Services (all CourseServices).
    pub endpoint_slices: Store<crate::cached::ServingSlice>,
    pub unschedulable: UnschedulablePolicy,
    pub children: ChildStores,
    /// Per-zone Deployments of earlier builds of the operator, pruned once replaced.
    pub legacy_deployments: MetaStore<Deployment>,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    /// True while this replica holds the leader lease; only then does it write.
    pub leader: watch::Receiver<bool>,
    /// True once every cache has finished its first list: before that, a missing child may
    /// only be missing from the cache, and applying "again" would be wasted (or stale) writes.
    pub synced: Arc<AtomicBool>,
    /// Older revisions' templates and failure counts, per CourseService.
    pub memory: Arc<CourseMemory>,
    /// Re-check a settled CourseService this often even without events (a drift safety net
    /// that writes nothing when nothing changed).
    pub resync: Duration,
    /// Default images of the cache, database and backup pods (operator flags).
    pub images: Images,
    /// Reconciles run first come first served, `--concurrency` at once.
    pub turns: Turns,
}

/// How a reconcile ended, when it did not fail.
enum Reconciled {
    /// Children applied; more to do while `progressing`; a timed step wants a look at `requeue`.
    Applied { progressing: bool, requeue: Option<Duration> },
    /// The spec is invalid: nothing was touched. `recheck` when what is missing is outside
    /// the spec (an external database's Secret, which the operator does not watch).
    Invalid { recheck: Option<Duration> },
    /// Being deleted: garbage collection removes the children.
    Deleting,
}

impl Reconciled {
    /// The same outcome, looked at again within `wait` at the latest.
    fn look_again_within(self, wait: Duration) -> Self {
        let sooner = |after: Option<Duration>| Some(after.map_or(wait, |after| after.min(wait)));
        match self {
            Reconciled::Applied { progressing, requeue } => {
                Reconciled::Applied { progressing, requeue: sooner(requeue) }
            }
            Reconciled::Invalid { recheck } => Reconciled::Invalid { recheck: sooner(recheck) },
            Reconciled::Deleting => Reconciled::Deleting,
        }
    }
}

/// Entry point called by kube-runtime: waits for a turn (`Turns`), then reconciles. Once the
/// turns are closed (shutting down) it ends without reconciling.
pub async fn reconcile_in_turn(cs: Arc<CourseService>, ctx: Arc<Context>) -> Result<Action, Error> {
    let due = Instant::now();
    let turns = ctx.clone();
    let reconciled = turns
        .turns
        .take(move || {
            ctx.metrics.waited_for_turn(due.elapsed());
            reconcile(cs, ctx)
        })
        .await;
    match reconciled {
        Some(result) => result,
        None => Ok(Action::await_change()),
    }
}

async fn reconcile(cs: Arc<CourseService>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    if !*ctx.leader.borrow() {
        ctx.metrics.reconciled(Outcome::Skipped, started.elapsed());
        return Ok(Action::await_change());
    }
    if !ctx.synced.load(Ordering::SeqCst) {
        ctx.metrics.reconciled(Outcome::Skipped, started.elapsed());
        return Ok(Action::requeue(CACHE_SYNC_POLL));
    }
    let result = reconcile_course(&cs, &ctx).await;
    if let Err(error) = &result
        && let Some(fenced) = error.fenced().filter(|f| f.lost_lead())
    {
        // The Lease is no longer confirmed ours: the write was held back. The lease manager
        // turns the leader flag false on its next renewal; until then, look again shortly.
        debug!(namespace = cs.namespace().unwrap_or_default(), name = cs.name_any(), %fenced, "reconcile held back");
        ctx.metrics.reconciled(Outcome::Skipped, started.elapsed());
        return Ok(Action::requeue(FENCE_RETRY));
    }
    if let Err(error) = &result
        && let Some((kind, child, message)) = error.rejected_child()
    {
        // Retrying cannot fix it; say so where `kubectl describe` shows it, not only in our log.
        let note = format!("the apiserver refused {kind} {child} rendered from this spec: {message}");
        publish(&ctx, &cs, EventType::Warning, crate::conditions::reasons::CHILD_REJECTED, "Apply", &note).await;
    }
    let outcome = match &result {
        Ok(Reconciled::Invalid { .. }) => Outcome::InvalidSpec,
        Ok(_) => Outcome::Success,
        Err(_) => Outcome::Error,
    };
    ctx.metrics.reconciled(outcome, started.elapsed());
    let reconciled = result?;
    ctx.memory.succeeded(&ObjectRef::from_obj(&*cs));
    Ok(match reconciled {
        Reconciled::Applied { progressing, requeue } => {
            let fallback = if progressing { PROGRESS_POLL } else { ctx.resync };
            Action::requeue(requeue.map_or(fallback, |r| r.min(fallback)))
        }
        Reconciled::Invalid { recheck: Some(after) } => Action::requeue(after),
        Reconciled::Invalid { recheck: None } | Reconciled::Deleting => Action::await_change(),
    })
}

/// Exponential back-off per object: 1 s, 2 s, 4 s … capped at [`MAX_BACKOFF`].
pub fn error_policy(cs: Arc<CourseService>, error: &Error, ctx: Arc<Context>) -> Action {
    let count = ctx.memory.failed(ObjectRef::from_obj(&*cs));
    let delay = Duration::from_secs(1u64 << count.saturating_sub(1).min(9)).min(MAX_BACKOFF);
    warn!(namespace = cs.namespace().unwrap_or_default(), name = cs.name_any(), %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

#[instrument(skip_all, fields(namespace = cs.namespace().unwrap_or_default(), name = cs.name_any()))]
async fn reconcile_course(cs: &CourseService, ctx: &Context) -> Result<Reconciled, Error> {
    let name = cs.name_any();
    let namespace = cs.namespace().ok_or_else(|| Error::MissingNamespace(name.clone()))?;
    if cs.metadata.deletion_timestamp.is_some() {
        ctx.memory.forget(&ObjectRef::from_obj(cs));
        return Ok(Reconciled::Deleting);
    }
    let uid = cs.uid().ok_or_else(|| Error::MissingNamespace(name.clone()))?;

    // 1. validate (pure): an invalid spec is still observed, for the status, but never planned
    let validated = ValidatedCourse::new(cs, &ctx.images);
    let new_revision = validated.as_ref().ok().map(|course| course.revision().to_owned());

    // 2. observe, from the caches (plus the few reads they cannot answer)
    let nodes = ctx.nodes.state();
    let mut workloads =
        observe::workloads(ctx.children.replica_sets.state().iter().map(AsRef::as_ref), &namespace, &name, &uid);
    let slices = ctx.endpoint_slices.state();
    let serving =
        observe::serving_by_workload(observe::ready_endpoints(slices.iter().map(AsRef::as_ref), &namespace, &name));
    observe::count_ready_endpoints(&mut workloads, &serving);
    if let Some(new_revision) = &new_revision {
        older_templates(ctx, &namespace, &name, new_revision, &mut workloads).await?;
    }
    // Zones as this CourseService's pods see them: only nodes they may be scheduled on count.
    let mut inventory = ZoneInventory::from_nodes(
        nodes
            .iter()
            .map(AsRef::as_ref)
            .filter(|node| zones::admits(node, &cs.spec.node_selector, &cs.spec.tolerations)),
    );
    for zone in workloads.values().map(|d| d.zone.as_str()).filter(|z| *z != Zone::Anywhere.slug()) {
        inventory.remember(zone);
    }
    let mut zones = inventory.for_spec(&cs.spec.zones);
    // Whole seconds, as the apiserver keeps a condition's time: a status computed twice within
    // a second is then the same status, and the second write is skipped, not sent.
    let now = k8s_openapi::jiff::Timestamp::now();
    let now = k8s_openapi::jiff::Timestamp::from_second(now.as_second()).unwrap_or(now);
    let pods = ctx.app_pods.state();
    let unschedulable = zones::unschedulable_zones(
        &zones,
        cs.status.as_ref().map_or(&[][..], |s| &s.zones),
        &observe::unschedulable_pods(pods.iter().map(AsRef::as_ref), &namespace, &name),
        now,
        ctx.unschedulable,
    );
    unschedulable.apply(&mut zones);
    let handled = cs.status.as_ref().and_then(|s| s.rollout.as_ref()).and_then(|r| r.last_action.as_deref());
    let action = cs.annotations().get(labels::ROLLOUT_ACTION).filter(|a| Some(a.as_str()) != handled).cloned();
    let external = cs.spec.database.as_ref().filter(|d| d.enabled).and_then(|d| d.external.as_ref());
    let external_database = match external {
        Some(external) => Some(uri_secret_present(&ctx.client, &namespace, &external.uri_secret).await),
        None => None,
    };
    let (database_credentials, database_credentials_unsaved) = database_credentials(ctx, cs, &namespace, &name);
    // The canary analysis check is the one network call besides the API: made only when due.
    let previous = cs.status.as_ref().and_then(|s| s.rollout.as_ref());
    let due = new_revision.as_deref().and_then(|r| crate::rollout::analysis_due(&cs.spec.strategy, previous, r, now));
    let analysis = match due {
        Some(analysis) => Some(super::analysis::check(analysis).await),
        None => None,
    };
    // Restarts count only once a rollout of this revision is under way (not from pods a
    // retried or re-applied revision left behind before it started).
    let rolling_out = new_revision.as_deref().filter(|r| previous.is_some_and(|p| p.rolling_out_to(r)));
    let new_pod_restarts =
        rolling_out.map_or(0, |r| observe::most_restarts(pods.iter().map(AsRef::as_ref), &namespace, &name, r));
    let stores = &ctx.children;
    let mut observed = Observed {
        new_pod_restarts,
        analysis,
        workloads,
        serving,
        statefulsets: observe::statefulsets(stores.statefulsets.state().iter().map(AsRef::as_ref), &namespace, &uid),
        succeeded_jobs: observe::succeeded_jobs(stores.jobs.state().iter().map(AsRef::as_ref), &namespace, &uid),
        database_credentials,
        database_credentials_unsaved,
        database_app_secret_exists: stores
            .secrets
            .get(&ObjectRef::new(&names::database_app_secret(&name)).within(&namespace))
            .is_some(),
        external_database,
        action,
        now: Some(now),
        unschedulable,
    };

    // 3–4. plan and render (pure)
    let planned = validated.and_then(|course| {
        let plan = plan::plan(&course, &zones, &observed)?;
        let children = crate::render::children(&course, &plan, &observed);
        Ok((plan, children))
    });

    // 5. apply what changed; prune what is no longer desired
    let reconciled = match &planned {
        Err(invalid) => {
            warn!(%invalid, "invalid spec: no child is touched");
            let waits_for_secret = matches!(observed.external_database, Some(Err(_)));
            Reconciled::Invalid { recheck: waits_for_secret.then_some(EXTERNAL_SECRET_RECHECK) }
        }
        Ok((plan, desired)) => {
            let mut writes = 0usize;
            // A HorizontalPodAutoscaler that comes before the status names the pods' selector
            // reads an empty `/scale` and records `SelectorRequired` warnings: it waits for the
            // first status write (below), whose watch event brings the next reconcile.
            let scale_answers = cs.status.as_ref().is_some_and(|s| s.selector.is_some());
            for child in desired {
                if !scale_answers && matches!(child, Child::HorizontalPodAutoscaler(_)) {
                    continue;
                }
                let mut child = child.clone();
                children::fingerprint(&mut child);
                if !ctx.children.is_current(&namespace, &child) {
                    children::apply(&ctx.client, &namespace, &child).await?;
                    writes += 1;
                }
            }
            let owner = Owner { namespace: &namespace, instance: &name, uid: &uid };
            writes += children::prune(
                &ctx.client,
                &ctx.children,
                &ctx.legacy_deployments,
                &owner,
                desired,
                plan.workloads_serving,
            )
            .await?;
            if writes > 0 {
                info!(writes, revision = %plan.revision, phase = ?plan.rollout.status.phase, "children updated");
            }
            let replica_sets = desired.iter().filter_map(|child| match child {
                Child::ReplicaSet(replica_set) => Some(replica_set.as_ref()),
                _ => None,
            });
            observe::applied(&mut observed.workloads, replica_sets, &namespace, &name, &uid);
            if plan.rollout.aborted_now {
                let note = plan.rollout.status.message.as_deref().unwrap_or_default();
                publish(ctx, cs, EventType::Warning, crate::conditions::reasons::ROLLOUT_ABORTED, "Rollout", note)
                    .await;
            }
            let moving = observed.workloads.values().any(|d| d.replicas != d.ready)
                || plan.rollout.status.phase != crate::api::RolloutPhase::Healthy;
            let requeue = [plan.rollout.requeue_after, observed.unschedulable.recheck_in].into_iter().flatten().min();
            Reconciled::Applied { progressing: moving, requeue }
        }
    };

    // 6. status, written only when it changed
    let status = status::compute(&status::Inputs {
        cs,
        plan: planned.as_ref().map(|(plan, _)| plan),
        zones: &zones,
        observed: &observed,
        now: Time(now),
    });
    let previous = cs.status.clone().unwrap_or_default();
    if previous != status && !ctx.memory.status_written(cs, &status) {
        // Pods becoming Ready one by one: let the counts wait a moment for the next change
        // (often the condition that ends them) rather than write each step.
        if status::progress_only(&previous, &status)
            && let Some(wait) = ctx.memory.progress_wait(ObjectRef::from_obj(cs), Instant::now(), PROGRESS_BATCH)
        {
            return Ok(reconciled.look_again_within(wait));
        }
        let api: Api<CourseService> = Api::namespaced(ctx.client.clone(), &namespace);
        let patch = serde_json::json!({
            "apiVersion": CourseService::api_version(&()),
            "kind": CourseService::kind(&()),
            "status": status,
        });
        let written = api
            .patch_status(&name, &PatchParams::apply(labels::MANAGER).force(), &Patch::Apply(&patch))
            .await
            .map_err(|source| Error::Status { namespace: namespace.clone(), name: name.clone(), source })?;
        publish_transitions(ctx, cs, &previous, &status).await;
        ctx.memory.wrote_status(ObjectRef::from_obj(cs), previous, status, written.metadata.resource_version);
    }
    Ok(reconciled)
}

/// The database credentials, when the operator runs the database: read from their Secret, or
/// generated where the Secret lacks them (apply creates it once, adds missing keys and never
/// overwrites one), and whether some are not stored yet.
fn database_credentials(
    ctx: &Context,
    cs: &CourseService,
    namespace: &str,
    name: &str,
) -> (Option<DatabaseCredentials>, bool) {
    if !cs.spec.database.as_ref().is_some_and(|d| d.enabled && d.external.is_none()) {
        return (None, false);
    }
    let secret = ctx.children.secrets.get(&ObjectRef::new(&names::database_credentials_secret(name)).within(namespace));
    let credentials =
        secret.as_ref().and_then(|s| DatabaseCredentials::from_secret(s)).unwrap_or_else(DatabaseCredentials::generate);
    let unsaved = !secret.is_some_and(|s| credentials.is_stored_in(&s));
    (Some(credentials), unsaved)
}

/// Gives one ReplicaSet of every older revision in `workloads` its pod template, from
/// `ctx.memory` or, the first time, from the apiserver (one GET per revision per process).
/// Templates of revisions no longer running are forgotten. A failed GET fails the reconcile:
/// without its template an older revision would look no longer desired and be scaled away.
async fn older_templates(
    ctx: &Context,
    namespace: &str,
    instance: &str,
    new_revision: &str,
    workloads: &mut BTreeMap<String, ObservedWorkload>,
) -> Result<(), Error> {
    let running: std::collections::BTreeSet<String> = workloads.values().map(|d| d.revision.clone()).collect();
    ctx.memory.keep_templates(namespace, instance, |revision| running.contains(revision));
    for revision in running.iter().filter(|r| *r != new_revision) {
        let template = match ctx.memory.template(namespace, instance, revision) {
            Some(template) => Some(template),
            None => {
                let fetched = fetch_template(ctx, namespace, revision, workloads).await?;
                if let Some(template) = &fetched {
                    ctx.memory.remember_template(namespace, instance, revision, template);
                }
                fetched
            }
        };
        if let Some(d) = workloads.values_mut().find(|d| d.revision == *revision) {
            d.template = template;
        }
    }
    Ok(())
}

/// The template of `revision`, read from the first of its ReplicaSets that still exists.
async fn fetch_template(
    ctx: &Context,
    namespace: &str,
    revision: &str,
    workloads: &BTreeMap<String, ObservedWorkload>,
) -> Result<Option<AppTemplate>, Error> {
    let api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), namespace);
    for name in workloads.iter().filter(|(_, d)| d.revision == revision).map(|(name, _)| name) {
        let replica_set = api.get_opt(name).await.map_err(|source| Error::Get {
            kind: "ReplicaSet",
            namespace: namespace.to_owned(),
            name: name.clone(),
            source,
        })?;
        if let Some(template) = replica_set.as_ref().and_then(AppTemplate::from_replica_set) {
            return Ok(Some(template));
        }
    }
    Ok(None)
}

/// Records one Event on `cs` (its note cut to the 1 kB the API allows); a failure to record it
/// is logged, never a failed reconcile.
async fn publish(ctx: &Context, cs: &CourseService, type_: EventType, reason: &str, action: &str, note: &str) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note.chars().take(1000).collect()),
        action: action.into(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, &cs.object_ref(&())).await {
        warn!(%error, "could not publish event");
    }
}

/// One Event per condition change worth one (`status::events`).
async fn publish_transitions(
    ctx: &Context,
    cs: &CourseService,
    before: &crate::api::CourseServiceStatus,
    after: &crate::api::CourseServiceStatus,
) {
    for (notice, condition) in status::events(&before.conditions, &after.conditions) {
        let type_ = match notice {
            status::Notice::Warning => EventType::Warning,
            status::Notice::Normal => EventType::Normal,
        };
        publish(ctx, cs, type_, &condition.reason, "Reconcile", &condition.message).await;
    }
}

/// How often a CourseService waiting for its external database's Secret looks again.
const EXTERNAL_SECRET_RECHECK: Duration = Duration::from_secs(15);

/// Whether the Secret key holding an external database's connection string exists. One GET
/// per reconcile of such a CourseService (user Secrets are not cached); never logs a value.
async fn uri_secret_present(
    client: &Client,
    namespace: &str,
    selector: &crate::api::SecretKeySelector,
) -> Result<(), String> {
    let secret = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), namespace)
        .get_opt(&selector.name)
        .await
        .map_err(|error| match error {
            kube::Error::Api(status) => format!("Secret {:?} could not be read: {}", selector.name, status.reason),
            other => format!("Secret {:?} could not be read: {other}", selector.name),
        })?
        .ok_or_else(|| format!("Secret {:?} not found in namespace {namespace}", selector.name))?;
    let present = secret.data.as_ref().and_then(|d| d.get(&selector.key)).is_some_and(|v| !v.0.is_empty())
        || secret.string_data.as_ref().and_then(|d| d.get(&selector.key)).is_some_and(|v| !v.is_empty());
    if present { Ok(()) } else { Err(format!("Secret {:?} has no key {:?}", selector.name, selector.key)) }
}
