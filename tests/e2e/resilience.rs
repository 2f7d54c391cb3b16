//! The operator when the world moves: the HPA scaling through `/scale` on live metrics, a zone
//! lost and recovered.
//! These tests change the cluster itself, so each holds the cluster lock exclusively.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};

use crate::cluster::{self, CLUSTER, Operator, eventually};
use crate::fixtures::course;
use crate::fixtures::repo_root;
use crate::harness;
use course_operator::api::CourseService;

const CONVERGE: Duration = Duration::from_secs(120);

/// Zone → (desired, ready, lost) from the CourseService status.
async fn zones(api: &Api<CourseService>, name: &str) -> Vec<(String, i32, i32, bool)> {
    api.get(name)
        .await
        .ok()
        .and_then(|cs| cs.status)
        .map(|s| s.zones.into_iter().map(|z| (z.name, z.desired, z.ready, z.lost)).collect())
        .unwrap_or_default()
}

async fn condition(api: &Api<CourseService>, name: &str, type_: &str) -> Option<(String, String)> {
    let cs = api.get(name).await.ok()?;
    let c = cs.status?.conditions.into_iter().find(|c| c.type_ == type_)?;
    Some((c.status, c.reason))
}

async fn restore_nodes(client: &Client) {
    harness::restore_nodes(client, cluster::TEST_MANAGER).await.unwrap_or_else(|e| panic!("{e:#}"));
}

#[tokio::test]
async fn losing_a_zone_moves_its_replicas_and_they_come_back() {
    let _exclusive = CLUSTER.write().await;
    let client = cluster::client().await;
    let nodes: Api<Node> = Api::all(client.clone());
    let zone_a = harness::kwok_nodes_in(&client, "zone-a").await.expect("nodes");
    assert!(!zone_a.is_empty(), "the cluster has no zone-a nodes");
    let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(cluster::with_namespace(
        "zone-loss",
        |client, ns| async move {
            let _operator = Operator::start(&client, &ns, "solo", &[]).await;
            let api: Api<CourseService> = Api::namespaced(client.clone(), &ns);
            cluster::apply(&api, course("catalog", &ns, serde_json::json!({"image": "catalog:1", "replicas": 6})))
                .await;
            eventually(CONVERGE, "2 Ready pods in each zone", || async {
                let z = zones(&api, "catalog").await;
                (z.len() == 3 && z.iter().all(|(_, d, r, lost)| *d == 2 && *r == 2 && !lost)).then_some(())
            })
            .await;

            // Cordon, then delete, zone-a's nodes.
            let lost_at = Instant::now();
            harness::remove_nodes(&client, &zone_a).await.unwrap_or_else(|e| panic!("{e:#}"));
            eventually(CONVERGE, "zone-a's share running Ready in zone-b and zone-c", || async {
                let z = zones(&api, "catalog").await;
                let moved = z.iter().any(|(n, d, _, lost)| n == "zone-a" && *d == 0 && *lost)
                    && z.iter().filter(|(n, ..)| n != "zone-a").all(|(_, d, r, _)| *d == 3 && *r == 3);
                moved.then_some(())
            })
            .await;
            eprintln!("zone loss: capacity restored in zone-b/zone-c after {:?}", lost_at.elapsed());
            assert_eq!(condition(&api, "catalog", "Degraded").await, Some(("True".into(), "ZoneLost".into())));
            assert_eq!(condition(&api, "catalog", "Available").await.map(|c| c.0), Some("True".into()));

            restore_nodes(&client).await;
            let back_at = Instant::now();
            eventually(CONVERGE, "2 Ready pods in each zone again", || async {
                let z = zones(&api, "catalog").await;
                (z.len() == 3 && z.iter().all(|(_, d, r, lost)| *d == 2 && *r == 2 && !lost)).then_some(())
            })
            .await;
            eprintln!("zone recovery: back to 2/2/2 after {:?}", back_at.elapsed());
            assert_eq!(condition(&api, "catalog", "Degraded").await, Some(("False".into(), "AllZonesHealthy".into())));
        },
    )))
    .await;
    // Whatever happened, the cluster gets its nodes back for the other tests.
    restore_nodes(&client).await;
    eventually(CONVERGE, "every kwok node Ready again", || async {
        let list = nodes.list(&ListParams::default().labels("type=kwok")).await.ok()?;
        let want = harness::node_manifests().expect("the committed nodes").len();
        (list.items.iter().filter(|n| harness::node_ready(n)).count() == want).then_some(())
    })
    .await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Sets the allocatable CPU of every node in `zone` (the kwok nodes report 4 CPUs): a zone
/// whose nodes stay Ready, untainted and schedulable but have no room left. (A taint would not
/// do: a node whose taint a CourseService does not tolerate is not among its nodes at all.)
async fn set_zone_cpu(client: &Client, zone: &str, cpu: &str) {
    let nodes: Api<Node> = Api::all(client.clone());
    for name in harness::kwok_nodes_in(client, zone).await.expect("list nodes") {
        let patch = serde_json::json!({"status": {"allocatable": {"cpu": cpu}}});
        nodes.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await.expect("node cpu");
    }
}

#[tokio::test]
async fn a_zone_whose_pods_stay_unschedulable_is_lost_and_retried() {
    let _exclusive = CLUSTER.write().await;
    let client = cluster::client().await;
    let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(cluster::with_namespace(
        "unschedulable",
        |client, ns| async move {
            let flags = ["--unschedulable-zone-seconds", "5", "--unschedulable-zone-retry-seconds", "20"];
            let _operator = Operator::start(&client, &ns, "solo", &flags).await;
            let api: Api<CourseService> = Api::namespaced(client.clone(), &ns);
            let spec = serde_json::json!({
                "image": "catalog:1", "replicas": 3, "resources": {"requests": {"cpu": "1"}},
            });
            cluster::apply(&api, course("catalog", &ns, spec)).await;
            eventually(CONVERGE, "1 Ready pod in each zone", || async {
                let z = zones(&api, "catalog").await;
                (z.len() == 3 && z.iter().all(|(_, d, r, _)| *d == 1 && *r == 1)).then_some(())
            })
            .await;

            // zone-c's nodes stay Ready and schedulable, but are full: scaling up leaves its new
            // pod (1 CPU) Pending (Unschedulable) while the other zones' start.
            set_zone_cpu(&client, "zone-c", "500m").await;
            let scale = serde_json::json!({"spec": {"replicas": 6}});
            api.patch_scale("catalog", &PatchParams::default(), &Patch::Merge(&scale)).await.expect("scale");
            let scaled_at = Instant::now();
            eventually(CONVERGE, "zone-c lost and its share Ready in zone-a/zone-b", || async {
                let z = zones(&api, "catalog").await;
                let moved = z.iter().any(|(n, d, _, lost)| n == "zone-c" && *d == 0 && *lost)
                    && z.iter().filter(|(n, ..)| n != "zone-c").all(|(_, d, r, _)| *d == 3 && *r == 3);
                moved.then_some(())
            })
            .await;
            eprintln!("unschedulable zone: 6 Ready pods in zone-a/zone-b {:?} after the scale-up", scaled_at.elapsed());
            let status = api.get("catalog").await.expect("get").status.expect("status");
            let zone_c = status.zones.iter().find(|z| z.name == "zone-c").expect("zone-c in status");
            assert!(zone_c.unschedulable_since.is_some(), "zone-c is lost for unschedulable pods: {zone_c:?}");
            let degraded = status.conditions.iter().find(|c| c.type_ == "Degraded").expect("Degraded");
            assert_eq!((degraded.status.as_str(), degraded.reason.as_str()), ("True", "ZoneLost"));
            assert!(degraded.message.contains("unschedulable in zone(s) zone-c"), "{}", degraded.message);

            // The zone has room again: after the retry period its share comes back.
            set_zone_cpu(&client, "zone-c", "4").await;
            let untainted_at = Instant::now();
            eventually(CONVERGE, "2 Ready pods in each zone again", || async {
                let z = zones(&api, "catalog").await;
                (z.len() == 3 && z.iter().all(|(_, d, r, lost)| *d == 2 && *r == 2 && !lost)).then_some(())
            })
            .await;
            eprintln!("unschedulable zone: back to 2/2/2 {:?} after the zone had room again", untainted_at.elapsed());
            assert_eq!(condition(&api, "catalog", "Degraded").await, Some(("False".into(), "AllZonesHealthy".into())));
        },
    )))
    .await;
    set_zone_cpu(&client, "zone-c", "4").await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

#[tokio::test]
async fn the_hpa_scales_the_course_service_and_zone_replica_sets_follow() {
    let _shared = CLUSTER.read().await;
    cluster::with_namespace("hpa", |client, ns| async move {
        let _operator = Operator::start(&client, &ns, "solo", &[]).await;
        let api: Api<CourseService> = Api::namespaced(client.clone(), &ns);
        let spec = serde_json::json!({
            "image": "catalog:1",
            "replicas": 3,
            "resources": {"requests": {"cpu": "100m"}},
            "autoscaling": {"minReplicas": 3, "maxReplicas": 9, "targetCPUUtilizationPercentage": 50},
        });
        cluster::apply(&api, course("catalog", &ns, spec)).await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let app = ListParams::default().labels("app.kubernetes.io/instance=catalog,app.kubernetes.io/component=app");
        eventually(CONVERGE, "3 app pods", || async { (pods.list(&app).await.ok()?.items.len() == 3).then_some(()) })
            .await;

        // Load: kwok reports 200m CPU (200% of the request) for annotated pods.
        for pod in pods.list(&app).await.expect("pods").items {
            let load = serde_json::json!({"metadata": {"annotations": {"kwok.x-k8s.io/usage-cpu": "200m"}}});
            pods.patch(&pod.name_any(), &PatchParams::default(), &Patch::Merge(&load)).await.expect("annotate pod");
        }
        let started = Instant::now();
        let scaled = eventually(Duration::from_secs(240), "the HPA to raise spec.replicas", || async {
            let cs = api.get("catalog").await.ok()?;
            (cs.spec.replicas > 3).then_some(cs.spec.replicas)
        })
        .await;
        eprintln!("HPA: spec.replicas 3 -> {scaled} after {:?}", started.elapsed());
        // The operator follows: every zone ReplicaSet together runs what the HPA asked for.
        eventually(CONVERGE, "zone ReplicaSets to follow the HPA", || async {
            let cs = api.get("catalog").await.ok()?;
            let status = cs.status?;
            let desired: i32 = status.zones.iter().map(|z| z.desired).sum();
            (desired == cs.spec.replicas && status.ready_replicas == cs.spec.replicas && cs.spec.replicas > 3)
                .then_some(())
        })
        .await;
        // Nothing reverts the HPA's choice: the field is the HPA's, the operator never writes it.
        let cs = api.get("catalog").await.expect("course");
        let writers: Vec<String> = cs
            .metadata
            .managed_fields
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m.subresource.is_none())
            .filter(|m| m.fields_v1.as_ref().is_some_and(|f| f.0.to_string().contains("\"f:replicas\"")))
            .filter_map(|m| m.manager)
            .collect();
        assert!(!writers.iter().any(|w| w == "course-operator"), "the operator owns spec.replicas: {writers:?}");
    })
    .await;
}

/// Restarts kube-apiserver: `E2E_RESTART_APISERVER` (a shell command, e.g. for kind
/// `docker exec kind-control-plane sh -c 'crictl stop $(crictl ps -q --name kube-apiserver)'`),
/// else the local control plane's `hack/cluster.sh restart-apiserver`.
fn restart_apiserver() {
    let command = std::env::var("E2E_RESTART_APISERVER")
        .unwrap_or_else(|_| format!("{}/hack/cluster.sh restart-apiserver", repo_root().display()));
    let status = std::process::Command::new("bash").args(["-c", &command]).status().expect("run the restart command");
    assert!(status.success(), "`{command}` failed ({status}); set E2E_RESTART_APISERVER for this cluster");
}

#[tokio::test]
async fn the_operator_recovers_from_an_apiserver_restart_without_restarting() {
    let _exclusive = CLUSTER.write().await;
    cluster::with_namespace("apiserver-restart", |client, ns| async move {
        let mut operator = Operator::start(&client, &ns, "solo", &[]).await;
        let api: Api<CourseService> = Api::namespaced(client.clone(), &ns);
        cluster::apply(&api, course("catalog", &ns, serde_json::json!({"image": "catalog:1", "replicas": 3}))).await;
        eventually(CONVERGE, "1 Ready pod in each zone", || async {
            let z = zones(&api, "catalog").await;
            (z.len() == 3 && z.iter().all(|(_, d, r, _)| *d == 1 && *r == 1)).then_some(())
        })
        .await;

        restart_apiserver();
        let back_at = Instant::now();
        // The test's own pooled connections died with the apiserver too: retry the request.
        eventually(Duration::from_secs(30), "the scale request accepted", || async {
            let scale = serde_json::json!({"spec": {"replicas": 6}});
            api.patch_scale("catalog", &PatchParams::default(), &Patch::Merge(&scale)).await.ok().map(|_| ())
        })
        .await;
        let replica_sets: Api<k8s_openapi::api::apps::v1::ReplicaSet> = Api::namespaced(client.clone(), &ns);
        eventually(
            Duration::from_secs(30),
            "zone ReplicaSets at 2/2/2 within 30 s of the apiserver's return",
            || async {
                let list = replica_sets.list(&ListParams::default()).await.ok()?;
                let replicas: Vec<i32> = list.items.iter().filter_map(|d| d.spec.replicas).collect();
                (replicas == [2, 2, 2]).then_some(())
            },
        )
        .await;
        eprintln!("apiserver restart: zone ReplicaSets resized {:?} after the apiserver was ready", back_at.elapsed());
        assert!(operator.is_running(), "the operator process exited:\n{}", operator.log());
        eventually(CONVERGE, "2 Ready pods in each zone and Available", || async {
            let z = zones(&api, "catalog").await;
            let settled = z.len() == 3 && z.iter().all(|(_, d, r, _)| *d == 2 && *r == 2);
            (settled && condition(&api, "catalog", "Available").await?.0 == "True").then_some(())
        })
        .await;
        let watch_errors = operator.counter("course_operator_watch_errors_total", "").await;
        eprintln!("apiserver restart: {watch_errors} failed list/watch requests retried by the caches");
    })
    .await;
}
