//! Rollouts on the real control plane: canary with manual promote (through the `kubectl course`
//! binary), canary aborted by a failing gate, blue-green, zone-by-zone rolling, and an operator
//! SIGKILLed at every step boundary. During each, a poller checks the main Service's
//! EndpointSlices every 100 ms: there must never be a moment with zero Ready endpoints.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};

use crate::cluster::{self, CLUSTER, Operator, eventually};
pub(crate) use crate::endpoints::EndpointWatch;
use crate::endpoints::ready_endpoints;
use crate::harness;
use course_operator::api::{CourseService, RolloutPhase};

const ROLLOUT: Duration = Duration::from_secs(120);

fn course(
    name: &str,
    namespace: &str,
    image: &str,
    strategy: serde_json::Value,
    extra: serde_json::Value,
) -> serde_json::Value {
    let mut spec = serde_json::json!({"image": image, "replicas": 4, "strategy": strategy});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    crate::fixtures::course(name, namespace, spec)
}

/// Waits until the main Service has Ready endpoints (the starting point of every rollout).
pub(crate) async fn wait_endpoints(client: &Client, ns: &str, service: &str, count: usize) {
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), ns);
    let params = ListParams::default().labels(&format!("kubernetes.io/service-name={service}"));
    eventually(ROLLOUT, &format!("{count} Ready endpoints behind {service}"), || async {
        let list = api.list(&params).await.ok()?;
        let ready = ready_endpoints(&list.items);
        (ready >= count).then_some(())
    })
    .await;
}

async fn rollout_state(api: &Api<CourseService>, name: &str) -> Option<(RolloutPhase, i32, i32, String, String)> {
    let cs = api.get(name).await.ok()?;
    let r = cs.status?.rollout?;
    Some((r.phase, r.step, r.weight, r.stable_revision.unwrap_or_default(), r.new_revision.unwrap_or_default()))
}

/// Revision → (replicas, ready) summed over the app ReplicaSets.
async fn revisions(client: &Client, ns: &str, name: &str) -> BTreeMap<String, (i32, i32)> {
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    let selector = format!("app.kubernetes.io/instance={name},app.kubernetes.io/component=app");
    let mut result: BTreeMap<String, (i32, i32)> = BTreeMap::new();
    if let Ok(list) = api.list(&ListParams::default().labels(&selector)).await {
        for d in list.items.iter().filter(|d| d.metadata.deletion_timestamp.is_none()) {
            let revision = d.labels().get("microcourses.io/revision").cloned().unwrap_or_default();
            let entry = result.entry(revision).or_default();
            entry.0 += d.spec.replicas.unwrap_or(0);
            entry.1 += d.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
        }
    }
    result
}

/// Pods of `revision` whose Ready condition is True (the operator may act on Ready endpoints
/// before ReplicaSet status catches up, so this reads the pods themselves).
async fn ready_pods(client: &Client, ns: &str, name: &str, revision: &str) -> usize {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let selector = format!("app.kubernetes.io/instance={name},microcourses.io/revision={revision}");
    let Ok(list) = api.list(&ListParams::default().labels(&selector)).await else { return 0 };
    list.items.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).filter(|p| harness::pod_ready(p)).count()
}

/// Waits for a settled rollout on `revision` alone and returns it.
async fn wait_healthy_on_new(client: &Client, api: &Api<CourseService>, ns: &str, name: &str, old: &str) -> String {
    eventually(ROLLOUT, "rollout finished on the new revision alone", || async {
        let (phase, _, weight, stable, new) = rollout_state(api, name).await?;
        let running = revisions(client, ns, name).await;
        let done = phase == RolloutPhase::Healthy && stable == new && stable != old && weight == 100;
        (done && running.len() == 1 && running.get(&stable) == Some(&(4, 4))).then_some(stable)
    })
    .await
}

async fn stable_revision(api: &Api<CourseService>, name: &str) -> String {
    eventually(ROLLOUT, "a stable revision", || async {
        let (phase, _, _, stable, new) = rollout_state(api, name).await?;
        (phase == RolloutPhase::Healthy && stable == new).then_some(stable)
    })
    .await
}

pub(crate) fn kubectl_course(namespace: &str, args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_kubectl-course"))
        .args(["-n", namespace])
        .args(args)
        .output()
        .expect("kubectl-course runs");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

#[tokio::test]
async fn canary_pauses_at_its_weight_and_finishes_on_promote() {
    let _shared = CLUSTER.read().await;
    cluster::with_namespace("canary", |client, ns| async move {
        let _operator = Operator::start(&client, &ns, "solo", &[]).await;
        let api: Api<CourseService> = Api::namespaced(client.clone(), &ns);
        let strategy = serde_json::json!({"type": "Canary", "canary": {"steps": [{"setWeight": 25}, {"pause": {}}]}});
        cluster::apply(&api, course("lessons", &ns, "lessons:1", strategy.clone(), serde_json::json!({}))).await;
        let old = stable_revision(&api, "lessons").await;
        wait_endpoints(&client, &ns, "lessons", 4).await;

        let (refused, message) = kubectl_course(&ns, &["promote", "lessons"]);
        assert!(!refused && message.contains("no rollout in progress"), "promote with nothing to promote: {message}");

        let watch = EndpointWatch::start(&client, &ns, "lessons").await;
        let started = Instant::now();
        cluster::apply(&api, course("lessons", &ns, "lessons:2", strategy, serde_json::json!({}))).await;
        let new = eventually(ROLLOUT, "paused at 25%", || async {
            let (phase, _, weight, stable, new) = rollout_state(&api, "lessons").await?;
            let running = revisions(&client, &ns, "lessons").await;
            let paused = phase == RolloutPhase::Paused && weight == 25 && stable == old;
            (paused && running.get(&new) == Some(&(1, 1)) && running.get(&old) == Some(&(3, 3))).then_some(new)
        })
        .await;
        let to_pause = started.elapsed();
        // A ReplicaSet is created only once it has pods to run: the canary's one pod makes one,
        // not one per zone (two of them empty, each a kube-controller-manager status write).
        let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
        let of_new = replica_sets
            .list(
                &ListParams::default()
                    .labels(&format!("app.kubernetes.io/instance=lessons,microcourses.io/revision={new}")),
            )
            .await
            .expect("list ReplicaSets");
        let sizes: Vec<(String, Option<i32>)> = of_new.items.iter().map(|r| (r.name_any(), r.spec.replicas)).collect();
        assert_eq!(sizes.len(), 1, "the new revision's ReplicaSets at 25% of 4: {sizes:?}");

        let (ok, status) = kubectl_course(&ns, &["status", "lessons"]);
        assert!(ok && status.contains("weight 25%") && status.contains("Paused"), "{status}");
        let (ok, message) = kubectl_course(&ns, &["promote", "lessons"]);
        assert!(ok, "promote failed: {message}");
        let promoted = Instant::now();
        let stable = wait_healthy_on_new(&client, &api, &ns, "lessons", &old).await;
        assert_eq!(stable, new);
        let sampled = watch.finish().await;
        eprintln!("canary: {to_pause:?} to the paused step, {:?} from promote to done", promoted.elapsed());
        sampled.assert_floor(3, "canary promoted");
    })
    .await;
}

#[tokio::test]
async fn canary_with_pods_that_never_get_ready_aborts_back_to_stable() {
    let _shared = CLUSTER.read().await;
    cluster::with_namespace("canary-abort", |client, ns| async move {
        let _operator = Operator::start(&client, &ns, "solo", &[]).await;
        let api: Api<CourseService> = Api::namespaced(client.clone(), &ns);
        let strategy = serde_json::json!({
            "type": "Canary", "progressDeadlineSeconds": 10,
            "canary": {"steps": [{"setWeight": 50}, {"pause": {}}]},
        });
        cluster::apply(&api, course("lessons", &ns, "lessons:1", strategy.clone(), serde_json::json!({}))).await;
        let old = stable_revision(&api, "lessons").await;
        wait_endpoints(&client, &ns, "lessons", 4).await;
        let watch = EndpointWatch::start(&client, &ns, "lessons").await;
        // A revision whose pods run but never pass readiness (hack/kwok/pod-readiness.yaml): the
        // gate fails at the deadline; the stable pods must not have made room for them.
        let broken = serde_json::json!({"env": [{"name": "KWOK_READINESS", "value": "never"}]});
        cluster::apply(&api, course("lessons", &ns, "lessons:2", strategy, broken)).await;
        eventually(ROLLOUT, "aborted and back on stable alone", || async {
            let (phase, _, weight, stable, _) = rollout_state(&api, "lessons").await?;
            let running = revisions(&client, &ns, "lessons").await;
            let back = phase == RolloutPhase::Aborted && weight == 0 && stable == old;
            (back && running.len() == 1 && running.get(&old) == Some(&(4, 4))).then_some(())
        })
        .await;
        let cs = api.get("lessons").await.expect("course");
        let degraded =
            cs.status.expect("status").conditions.into_iter().find(|c| c.type_ == "Degraded").expect("Degraded");
        assert_eq!((degraded.status.as_str(), degraded.reason.as_str()), ("True", "RolloutAborted"));
        // 4 replicas, maxUnavailable 1: the stable pods keep serving while the canary never gets Ready
        watch.finish().await.assert_floor(3, "canary aborted");
        let (ok, message) = kubectl_course(&ns, &["promote", "lessons"]);
        assert!(!ok && message.contains("aborted"), "promote after abort: {message}");
    })
    .await;
}

#[tokio::test]
async fn blue_green_switches_the_service_only_to_a_ready_revision() {
    let _shared = CLUSTER.read().await;
    cluster::with_namespace("blue-green", |client, ns| async move {
        let _operator = Operator::start(&client, &ns, "solo", &[]).await;
        let api: Api<CourseService> = Api::namespaced(client.clone(), &ns);
        let strategy = serde_json::json!({
            "type": "BlueGreen",
            "blueGreen": {"previewService": true, "autoPromotionSeconds": 3, "scaleDownDelaySeconds": 3},
        });
        cluster::apply(&api, course("quizzes", &ns, "quizzes:1", strategy.clone(), serde_json::json!({}))).await;
        let old = stable_revision(&api, "quizzes").await;
        wait_endpoints(&client, &ns, "quizzes", 4).await;
        let services: Api<Service> = Api::namespaced(client.clone(), &ns);
        let selected =
            |s: Service| s.spec.and_then(|s| s.selector).and_then(|s| s.get("microcourses.io/revision").cloned());

        let watch = EndpointWatch::start(&client, &ns, "quizzes").await;
        cluster::apply(&api, course("quizzes", &ns, "quizzes:2", strategy, serde_json::json!({}))).await;
        let new = eventually(ROLLOUT, "the preview Service on the new revision", || async {
            let preview = services.get("quizzes-preview").await.ok()?;
            selected(preview).filter(|r| *r != old)
        })
        .await;
        // Until the switch, the main Service selects the old revision; it switches only when
        // the new revision runs all its pods Ready.
        let switched = eventually(ROLLOUT, "the main Service on the new revision", || async {
            let main = selected(services.get("quizzes").await.ok()?)?;
            if main == old {
                return None;
            }
            Some(ready_pods(&client, &ns, "quizzes", &new).await)
        })
        .await;
        assert_eq!(switched, 4, "switched before the new pods were Ready");
        wait_healthy_on_new(&client, &api, &ns, "quizzes", &old).await;
        eventually(ROLLOUT, "the preview Service gone", || async {
            services.get_opt("quizzes-preview").await.ok()?.is_none().then_some(())
        })
        .await;
        watch.finish().await.assert_floor(3, "blue-green switch");
    })
    .await;
}

#[tokio::test]
async fn zone_by_zone_rolling_updates_zones_in_order() {
    let _shared = CLUSTER.read().await;
    cluster::with_namespace("zones", |client, ns| async move {
        let _operator = Operator::start(&client, &ns, "solo", &[]).await;
        let api: Api<CourseService> = Api::namespaced(client.clone(), &ns);
        let strategy =
            serde_json::json!({"type": "Rolling", "rolling": {"zoneByZone": true, "maxSurge": 1, "maxUnavailable": 0}});
        cluster::apply(&api, course("catalog", &ns, "catalog:1", strategy.clone(), serde_json::json!({"replicas": 6})))
            .await;
        let old = stable_revision(&api, "catalog").await;
        wait_endpoints(&client, &ns, "catalog", 6).await;
        let watch = EndpointWatch::start(&client, &ns, "catalog").await;
        cluster::apply(&api, course("catalog", &ns, "catalog:2", strategy, serde_json::json!({"replicas": 6}))).await;

        // Record the order in which zones first get new-revision pods.
        let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
        let mut order: Vec<String> = Vec::new();
        let deadline = Instant::now() + ROLLOUT;
        loop {
            assert!(Instant::now() < deadline, "rollout did not finish; zones so far {order:?}");
            let (phase, _, _, stable, new) = rollout_state(&api, "catalog").await.unwrap_or((
                RolloutPhase::Progressing,
                0,
                0,
                old.clone(),
                old.clone(),
            ));
            if let Ok(list) =
                replica_sets.list(&ListParams::default().labels("app.kubernetes.io/instance=catalog")).await
            {
                let mut touched: Vec<String> = list
                    .items
                    .iter()
                    .filter(|d| d.labels().get("microcourses.io/revision") == Some(&new) && new != old)
                    .filter(|d| d.spec.replicas.unwrap_or(0) > 0)
                    .filter_map(|d| d.labels().get("microcourses.io/zone").cloned())
                    .filter(|z| !order.contains(z))
                    .collect();
                assert!(touched.len() <= 1, "zones {touched:?} started together after {order:?}");
                order.append(&mut touched);
            }
            if phase == RolloutPhase::Healthy && stable != old {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(order, vec!["zone-a", "zone-b", "zone-c"]);
        watch.finish().await.assert_floor(5, "zone-by-zone rolling update");
    })
    .await;
}

#[tokio::test]
async fn a_canary_survives_the_operator_being_killed_at_every_step() {
    // Several operator processes at once: run alone, so start-up is not starved by other tests.
    let _exclusive = CLUSTER.write().await;
    cluster::with_namespace("canary-kill", |client, ns| async move {
        let mut operator = Operator::start(&client, &ns, "first", &[]).await;
        let api: Api<CourseService> = Api::namespaced(client.clone(), &ns);
        let strategy = serde_json::json!({"type": "Canary", "canary": {"steps": [
            {"setWeight": 25}, {"pause": {"duration": "2s"}}, {"setWeight": 50}, {"pause": {"duration": "2s"}}, {"setWeight": 75},
        ]}});
        cluster::apply(&api, course("lessons", &ns, "lessons:1", strategy.clone(), serde_json::json!({}))).await;
        let old = stable_revision(&api, "lessons").await;
        wait_endpoints(&client, &ns, "lessons", 4).await;
        let watch = EndpointWatch::start(&client, &ns, "lessons").await;
        cluster::apply(&api, course("lessons", &ns, "lessons:2", strategy, serde_json::json!({}))).await;

        let mut kills = 0;
        let mut last_step = -1;
        let deadline = Instant::now() + ROLLOUT;
        loop {
            assert!(Instant::now() < deadline, "rollout did not finish after {kills} kills");
            if let Some((phase, step, _, stable, _)) = rollout_state(&api, "lessons").await {
                if phase == RolloutPhase::Healthy && stable != old {
                    break;
                }
                if step != last_step && phase != RolloutPhase::Healthy {
                    // A step boundary: SIGKILL, then a fresh process (new identity) takes over
                    // once the dead one's Lease expires.
                    last_step = step;
                    operator.kill();
                    kills += 1;
                    operator = Operator::start(&client, &ns, &format!("replacement-{kills}"), &[]).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(kills >= 3, "only {kills} step boundaries seen");
        wait_healthy_on_new(&client, &api, &ns, "lessons", &old).await;
        watch.finish().await.assert_floor(3, "canary with the operator killed at every step");
    })
    .await;
}

/// Serves `body` as JSON to every request on a free 127.0.0.1 port, until dropped.
struct MetricsEndpoint {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl MetricsEndpoint {
    async fn serve(body: &'static str) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buffer = [0u8; 4096];
                    let _ = stream.read(&mut buffer).await;
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                });
            }
        });
        Self { port, task }
    }
}

impl Drop for MetricsEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn canary_analysis_aborts_on_a_bad_metric_and_passes_a_good_one() {
    let _shared = CLUSTER.read().await;
    cluster::with_namespace("analysis", |client, ns| async move {
        // A Prometheus query API answer: an error ratio of 20%.
        let bad = MetricsEndpoint::serve(
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"0.2"]}]}}"#,
        )
        .await;
        let good = MetricsEndpoint::serve(
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"0.01"]}]}}"#,
        )
        .await;
        let _operator = Operator::start(&client, &ns, "solo", &[]).await;
        let api: Api<CourseService> = Api::namespaced(client.clone(), &ns);
        let strategy = |port: u16| {
            serde_json::json!({"type": "Canary", "canary": {
                "steps": [{"setWeight": 25}, {"pause": {"duration": "4s"}}],
                "analysis": {"url": format!("http://127.0.0.1:{port}/api/v1/query?query=errors"), "max": 0.05,
                             "intervalSeconds": 1, "failureLimit": 1},
            }})
        };
        cluster::apply(&api, course("lessons", &ns, "lessons:1", strategy(bad.port), serde_json::json!({}))).await;
        let old = stable_revision(&api, "lessons").await;
        cluster::apply(&api, course("lessons", &ns, "lessons:2", strategy(bad.port), serde_json::json!({}))).await;
        let message = eventually(ROLLOUT, "the analysis to abort the canary", || async {
            let cs = api.get("lessons").await.ok()?;
            let r = cs.status?.rollout?;
            (r.phase == RolloutPhase::Aborted && r.stable_revision.as_deref() == Some(old.as_str()))
                .then_some(r.message)
        })
        .await;
        assert!(message.as_deref().is_some_and(|m| m.contains("0.2")), "{message:?}");

        // The same rollout against a healthy metric goes through.
        cluster::apply(&api, course("lessons", &ns, "lessons:3", strategy(good.port), serde_json::json!({}))).await;
        wait_healthy_on_new(&client, &api, &ns, "lessons", &old).await;
    })
    .await;
}

/// Pods Ready only 2 s after they are scheduled (hack/kwok/pod-readiness.yaml, as a readiness
/// probe with a start-up time): a zone-by-zone rolling update waits for them zone after zone,
/// and Ready endpoints never drop below `replicas − maxUnavailable`.
#[tokio::test]
async fn a_rolling_update_waits_for_pods_whose_readiness_is_delayed() {
    let _shared = CLUSTER.read().await;
    cluster::with_namespace("ready-delay", |client, ns| async move {
        let _operator = Operator::start(&client, &ns, "solo", &[]).await;
        let api: Api<CourseService> = Api::namespaced(client.clone(), &ns);
        let strategy =
            serde_json::json!({"type": "Rolling", "rolling": {"zoneByZone": true, "maxSurge": 1, "maxUnavailable": 0}});
        let delayed = |image: &str| {
            let extra = serde_json::json!({"replicas": 6, "env": [{"name": "KWOK_READY_DELAY", "value": "2s"}]});
            course("catalog", &ns, image, strategy.clone(), extra)
        };
        cluster::apply(&api, delayed("catalog:1")).await;
        let old = stable_revision(&api, "catalog").await;
        wait_endpoints(&client, &ns, "catalog", 6).await;
        let watch = EndpointWatch::start(&client, &ns, "catalog").await;
        let started = Instant::now();
        cluster::apply(&api, delayed("catalog:2")).await;
        eventually(ROLLOUT, "the rolling update finished", || async {
            let (phase, _, _, stable, _) = rollout_state(&api, "catalog").await?;
            (phase == RolloutPhase::Healthy && stable != old).then_some(())
        })
        .await;
        let took = started.elapsed();
        watch.finish().await.assert_floor(5, "rolling update, readiness delayed 2 s");
        // Every new pod turned Ready no sooner than 2 s after it was created, and three zones
        // one after another, each at least one delayed pod, took at least 6 s.
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let list = pods.list(&ListParams::default().labels("app.kubernetes.io/instance=catalog")).await.expect("pods");
        assert_eq!(list.items.len(), 6, "6 pods after the update");
        for pod in &list.items {
            let created = pod.metadata.creation_timestamp.as_ref().expect("created").0;
            let ready = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "Ready" && c.status == "True"))
                .and_then(|c| c.last_transition_time.as_ref())
                .expect("Ready")
                .0;
            let delay = ready.duration_since(created);
            assert!(delay.as_secs_f64() >= 1.9, "{} Ready {delay:?} after creation", pod.name_any());
        }
        assert!(took >= Duration::from_secs(6), "three zones of delayed pods rolled in {took:?}");
        eprintln!("rolling update with a 2 s readiness delay: {took:?}");
    })
    .await;
}

/// A settled CourseService whose pods flap (Ready 3 s, not Ready 2 s, again and again): its
/// status follows the Ready count, and the operator neither starts a rollout nor creates or
/// deletes any ReplicaSet because of it.
#[tokio::test]
async fn pods_that_flap_are_reported_and_cause_no_rollout() {
    let _shared = CLUSTER.read().await;
    cluster::with_namespace("flapping", |client, ns| async move {
        let _operator = Operator::start(&client, &ns, "solo", &[]).await;
        let api: Api<CourseService> = Api::namespaced(client.clone(), &ns);
        let strategy = serde_json::json!({"type": "Rolling"});
        let extra = serde_json::json!({"replicas": 3, "env": [{"name": "KWOK_READINESS", "value": "flapping"}]});
        cluster::apply(&api, course("catalog", &ns, "catalog:1", strategy, extra)).await;
        let revision = stable_revision(&api, "catalog").await;
        let before = revisions(&client, &ns, "catalog").await;
        let (mut lowest, mut highest) = (i32::MAX, 0);
        let until = Instant::now() + Duration::from_secs(15);
        while Instant::now() < until {
            let cs = api.get("catalog").await.expect("course");
            let status = cs.status.clone().expect("status");
            lowest = lowest.min(status.ready_replicas);
            highest = highest.max(status.ready_replicas);
            let (phase, _, _, stable, new) = rollout_state(&api, "catalog").await.expect("rollout status");
            assert_eq!((stable.as_str(), new.as_str()), (revision.as_str(), revision.as_str()), "a rollout started");
            assert_ne!(phase, RolloutPhase::Aborted, "flapping pods aborted a rollout");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(
            revisions(&client, &ns, "catalog").await.keys().collect::<Vec<_>>(),
            before.keys().collect::<Vec<_>>()
        );
        assert!(
            highest == 3 && lowest < 3,
            "status.readyReplicas did not follow the flapping pods: {lowest}..{highest}"
        );
        eprintln!("flapping pods: status.readyReplicas between {lowest} and {highest}, no rollout");
    })
    .await;
}
