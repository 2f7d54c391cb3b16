//! The operator's children on the real nodes (kubelet + containerd per zone, hack/nodes.sh):
//! what kwok hides. Readiness probes really run (a readiness delay is visible), traffic really
//! reaches the pods through kube-proxy, and a stopped kubelet is a real zone loss. Every
//! CourseService here has no placement settings, so it lands on the real nodes as a user's
//! first one would, running the locally built test server (hack/images.sh).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cluster::{self, CLUSTER, Operator, eventually, http_get};
use crate::fixtures::{course_manifest, repo_root};
use crate::harness;
use crate::rollouts::{EndpointWatch, wait_endpoints};
use course_operator::api::{CourseService, RolloutPhase};

/// The test server image hack/images.sh imports into every real node.
const TEST_SERVER: &str = "localhost/test-server:dev";
const READY_DELAY_SECONDS: i64 = 3;
const CONVERGE: Duration = Duration::from_secs(180);
const REAL_NODES: [&str; 3] = ["real-zone-a", "real-zone-b", "real-zone-c"];

fn course(name: &str, namespace: &str, replicas: i32, version: &str) -> serde_json::Value {
    course_manifest(
        name,
        namespace,
        serde_json::json!({
            "image": TEST_SERVER,
            "replicas": replicas,
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
            "env": [
                {"name": "READY_DELAY_SECONDS", "value": READY_DELAY_SECONDS.to_string()},
                {"name": "VERSION", "value": version},
            ],
            "probes": {"readinessPath": "/healthz"},
            "disruption": {"maxUnavailable": 1},
            "strategy": {"type": "Rolling", "rolling": {"maxSurge": 1, "maxUnavailable": 0, "zoneByZone": true}},
        }),
    )
}

/// A Ready application pod.
#[derive(Debug)]
pub(crate) struct ReadyPod {
    name: String,
    node: String,
    pub(crate) revision: String,
    /// Seconds from its container's start to Ready.
    delay: i64,
}

/// Application pods of `name` that are Ready.
pub(crate) async fn ready_pods(client: &Client, ns: &str, name: &str) -> Vec<ReadyPod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let selector = format!("app.kubernetes.io/instance={name},app.kubernetes.io/component=app");
    let Ok(list) = pods.list(&ListParams::default().labels(&selector)).await else { return Vec::new() };
    list.items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            let status = p.status.as_ref()?;
            let ready = status.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready" && c.status == "True")?;
            let ready_at = ready.last_transition_time.as_ref()?.0;
            let started =
                status.container_statuses.as_ref()?.first()?.state.as_ref()?.running.as_ref()?.started_at.as_ref()?.0;
            Some(ReadyPod {
                name: p.metadata.name.clone()?,
                node: p.spec.as_ref()?.node_name.clone()?,
                revision: p.metadata.labels.as_ref()?.get("microcourses.io/revision")?.clone(),
                delay: ready_at.as_second() - started.as_second(),
            })
        })
        .collect()
}

/// Zone → (desired, ready, lost) from the CourseService status.
pub(crate) async fn zones(api: &Api<CourseService>, name: &str) -> BTreeMap<String, (i32, i32, bool)> {
    api.get(name)
        .await
        .ok()
        .and_then(|cs| cs.status)
        .map(|s| s.zones.into_iter().map(|z| (z.name, (z.desired, z.ready, z.lost))).collect())
        .unwrap_or_default()
}

pub(crate) fn nodes_sh(args: &[&str]) {
    let status = Command::new(repo_root().join("hack/nodes.sh")).args(args).status();
    assert!(status.is_ok_and(|s| s.success()), "hack/nodes.sh {args:?} failed");
}

#[tokio::test]
async fn a_course_service_without_placement_runs_probed_pods_on_the_real_nodes_of_every_zone() {
    let _shared = CLUSTER.read().await;
    cluster::with_namespace("real", |client, ns| async move {
        let _operator = Operator::start(&client, &ns, "solo", &[]).await;
        let api: Api<CourseService> = Api::namespaced(client.clone(), &ns);
        cluster::apply(&api, course("catalog", &ns, 3, "1")).await;

        let pods = eventually(CONVERGE, "3 Ready pods", || async {
            let pods = ready_pods(&client, &ns, "catalog").await;
            (pods.len() == 3).then_some(pods)
        })
        .await;
        let nodes: BTreeSet<&str> = pods.iter().map(|p| p.node.as_str()).collect();
        assert_eq!(nodes, REAL_NODES.into_iter().collect(), "one pod on each real node: {pods:?}");
        // The readiness probe really ran: no pod was Ready before the server said so. (Both
        // timestamps are truncated to the second, so the floor is one second lower.)
        for pod in &pods {
            assert!(pod.delay >= READY_DELAY_SECONDS - 1, "{} was Ready {}s after it started", pod.name, pod.delay);
        }
        // The status follows the pods one ReplicaSet-status hop later (under load, seconds).
        eventually(Duration::from_secs(60), "the status to count one Ready pod in each zone", || async {
            let status = zones(&api, "catalog").await;
            (status.values().map(|(d, r, _)| (*d, *r)).collect::<Vec<_>>() == vec![(1, 1); 3]).then_some(())
        })
        .await;

        // Traffic reaches every pod as users send it: to the LoadBalancer address (MetalLB's
        // controller allocates it, kube-proxy routes it).
        let services: Api<Service> = Api::namespaced(client.clone(), &ns);
        let (ip, port) = eventually(Duration::from_secs(30), "a LoadBalancer address", || async {
            let service = services.get("catalog").await.ok()?;
            let ip = service.status?.load_balancer?.ingress?.first()?.ip.clone()?;
            let port = service.spec?.ports?.first()?.port;
            Some((ip, port))
        })
        .await;
        let expected: BTreeSet<String> = pods.iter().map(|p| p.name.clone()).collect();
        // kube-proxy programs new endpoints within a second or two of their becoming Ready.
        wait_endpoints(&client, &ns, "catalog", 3).await;
        let port = u16::try_from(port).expect("port");
        // kube-proxy routes the address a moment after MetalLB has written it; from the first
        // answer on, every request must be answered.
        eventually(Duration::from_secs(30), "the LoadBalancer address to answer", || async {
            http_get(&ip, port, "/").await.filter(|(code, _)| *code == 200)
        })
        .await;
        let mut answered = BTreeSet::new();
        let mut requests = 0;
        let started = Instant::now();
        while answered != expected && started.elapsed() < Duration::from_secs(60) {
            let (code, body) = http_get(&ip, port, "/").await.expect("the LoadBalancer address answers");
            assert_eq!(code, 200, "{body}");
            answered.insert(body.trim().trim_start_matches("ok from ").to_owned());
            requests += 1;
        }
        eprintln!("{requests} requests to the LoadBalancer address {ip} reached {} pods", answered.len());
        assert_eq!(answered, expected, "every pod serves through the LoadBalancer address");
    })
    .await;
}

#[tokio::test]
async fn a_rolling_update_on_real_pods_keeps_every_replica_serving() {
    let _shared = CLUSTER.read().await;
    cluster::with_namespace("real-rolling", |client, ns| async move {
        let _operator = Operator::start(&client, &ns, "solo", &[]).await;
        let api: Api<CourseService> = Api::namespaced(client.clone(), &ns);
        cluster::apply(&api, course("catalog", &ns, 3, "1")).await;
        wait_endpoints(&client, &ns, "catalog", 3).await;
        let old = eventually(CONVERGE, "a settled first revision", || async {
            let rollout = api.get("catalog").await.ok()?.status?.rollout?;
            (rollout.phase == RolloutPhase::Healthy).then_some(rollout.stable_revision?)
        })
        .await;

        let watch = EndpointWatch::start(&client, &ns, "catalog").await;
        let started = Instant::now();
        cluster::apply(&api, course("catalog", &ns, 3, "2")).await;
        let new = eventually(CONVERGE, "the rollout to finish on the new revision", || async {
            let rollout = api.get("catalog").await.ok()?.status?.rollout?;
            let stable = rollout.stable_revision?;
            (rollout.phase == RolloutPhase::Healthy && stable != old).then_some(stable)
        })
        .await;
        eventually(CONVERGE, "3 Ready pods, all of the new revision", || async {
            let pods = ready_pods(&client, &ns, "catalog").await;
            (pods.len() == 3 && pods.iter().all(|p| p.revision == new)).then_some(())
        })
        .await;
        let took = started.elapsed();
        let sampled = watch.finish().await;
        eprintln!("real-node rolling update: {took:?}, endpoints {sampled:?}");
        // maxUnavailable 0 with a surge of 1: all three keep serving while each zone moves.
        sampled.assert_floor(3, "real-node rolling update");
        // a 100 ms tick: at least 9 samples a second over the rollout
        assert!(sampled.samples as u128 * 1000 >= took.as_millis() * 9, "{sampled:?} in {took:?}");
    })
    .await;
}

/// Waits until `name` has 2 Ready pods in each of the three zones (6 replicas).
pub(crate) async fn wait_two_per_zone(api: &Api<CourseService>, name: &str, what: &str) {
    eventually(CONVERGE, what, || async {
        let z = zones(api, name).await;
        (z.len() == 3 && z.values().all(|(d, r, lost)| *d == 2 && *r == 2 && !lost)).then_some(())
    })
    .await;
}

/// Stops zone-c's kubelet until `name` (6 replicas) has lost zone-c and runs its share Ready in
/// zone-a and zone-b, then restarts it until the share is back: (moved after the stop, back
/// after the restart).
pub(crate) async fn lose_and_restore_zone_c(api: &Api<CourseService>, name: &str) -> (Duration, Duration) {
    nodes_sh(&["stop-kubelet", "c"]);
    let stopped = Instant::now();
    eventually(CONVERGE, "zone-c lost and its share Ready in zone-a and zone-b", || async {
        let z = zones(api, name).await;
        let lost = z.get("zone-c").is_some_and(|(d, _, lost)| *d == 0 && *lost);
        let moved = ["zone-a", "zone-b"].iter().all(|zone| z.get(*zone) == Some(&(3, 3, false)));
        (lost && moved).then_some(())
    })
    .await;
    let moved_after = stopped.elapsed();
    nodes_sh(&["start-kubelet", "c"]);
    let restarted = Instant::now();
    wait_two_per_zone(api, name, "2 Ready pods in each zone again").await;
    (moved_after, restarted.elapsed())
}

/// Runs `test`; whatever happened, zone-c's kubelet runs again afterwards for the other tests.
/// (Elsewhere than the local cluster's machine there is no kubelet of ours to restart: the
/// test inside is skipped or fails on its own.)
pub(crate) async fn with_kubelet_c_restored(test: impl std::future::Future<Output = ()>) {
    let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(test)).await;
    if cluster::on_local_machine() {
        nodes_sh(&["start-kubelet", "c"]);
    }
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

#[tokio::test]
async fn stopping_a_real_kubelet_loses_its_zone_and_restarting_it_brings_the_share_back() {
    let _exclusive = CLUSTER.write().await;
    with_kubelet_c_restored(cluster::with_namespace("real-zone-loss", |client, ns| async move {
        let _operator = Operator::start(&client, &ns, "solo", &[]).await;
        let api: Api<CourseService> = Api::namespaced(client.clone(), &ns);
        cluster::apply(&api, course("catalog", &ns, 6, "1")).await;
        wait_two_per_zone(&api, "catalog", "2 Ready pods in each zone").await;
        let (lost_after, back_after) = lose_and_restore_zone_c(&api, "catalog").await;
        eprintln!(
            "real zone loss: kubelet stopped → share Ready elsewhere {lost_after:?}; restarted → back to 2/2/2 {back_after:?}"
        );
    }))
    .await;
}

#[tokio::test]
async fn the_hpa_scales_up_and_down_on_real_cpu_and_every_zone_follows() {
    let _shared = CLUSTER.read().await;
    cluster::with_namespace("real-hpa", |client, ns| async move {
        let _operator = Operator::start(&client, &ns, "solo", &[]).await;
        let api: Api<CourseService> = Api::namespaced(client.clone(), &ns);
        let mut manifest = course("catalog", &ns, 3, "1");
        manifest["spec"]["autoscaling"] = serde_json::json!({"minReplicas": 3, "maxReplicas": 6,
            "targetCPUUtilizationPercentage": 50, "scaleDownStabilizationSeconds": 30});
        cluster::apply(&api, manifest).await;
        wait_endpoints(&client, &ns, "catalog", 3).await;
        let services: Api<Service> = Api::namespaced(client.clone(), &ns);
        let service = services.get("catalog").await.expect("main Service");
        let ip = service.spec.as_ref().and_then(|s| s.cluster_ip.clone()).expect("cluster IP");

        // Real CPU: clients keep asking the pods to burn 200 ms each, far above 50 % of the
        // 10m they request, until the HPA has raised spec.replicas.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let load: Vec<_> = (0..3)
            .map(|_| {
                let (ip, stop) = (ip.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut served = 0u32;
                    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                        if http_get(&ip, 80, "/burn?ms=200").await.is_some_and(|(code, _)| code == 200) {
                            served += 1;
                        }
                    }
                    served
                })
            })
            .collect();
        let started = Instant::now();
        let scaled = eventually(Duration::from_secs(240), "the HPA to raise spec.replicas above 3", || async {
            let replicas = api.get("catalog").await.ok()?.spec.replicas;
            (replicas > 3).then_some(replicas)
        })
        .await;
        let reaction = started.elapsed();
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut burns = 0;
        for task in load {
            burns += task.await.expect("load task");
        }
        assert!(burns > 0, "no burn request was served");
        // The operator splits the HPA's count over the zones and every new pod becomes Ready.
        eventually(CONVERGE, "the zones to follow the HPA", || async {
            let z = zones(&api, "catalog").await;
            let desired: i32 = z.values().map(|(d, _, _)| *d).sum();
            let ready: i32 = z.values().map(|(_, r, _)| *r).sum();
            (z.len() == 3 && desired >= scaled && ready == desired && z.values().all(|(d, ..)| *d >= 1)).then_some(())
        })
        .await;
        // Without load the pods idle far below the target: after the 30 s stabilization window
        // the HPA lowers spec.replicas back to its minimum and the extra pods go.
        let idle = Instant::now();
        eventually(CONVERGE, "the HPA back at 3 replicas, 3 pods Ready in 3 zones", || async {
            (api.get("catalog").await.ok()?.spec.replicas == 3).then_some(())?;
            let z = zones(&api, "catalog").await;
            let ready: i32 = z.values().map(|(_, r, _)| *r).sum();
            (z.len() == 3 && ready == 3 && z.values().all(|(d, r, _)| *d == 1 && *r == 1)).then_some(())
        })
        .await;
        wait_endpoints(&client, &ns, "catalog", 3).await;
        eprintln!(
            "real-CPU HPA: spec.replicas 3 → {scaled} {reaction:?} after the load started ({burns} burns served); \
             back to 3 (one per zone) {:?} after it stopped (stabilization window 30 s)",
            idle.elapsed()
        );
    })
    .await;
}

/// One Redis/Sentinel command over RESP (inline form) to `ip:port`; the raw reply, read until
/// the server pauses (Sentinel does not know QUIT, so the connection is not closed for us).
async fn redis(ip: &str, port: u16, command: &str) -> Option<String> {
    let connect = tokio::net::TcpStream::connect((ip, port));
    let mut stream = tokio::time::timeout(Duration::from_secs(2), connect).await.ok()?.ok()?;
    stream.write_all(format!("{command}\r\n").as_bytes()).await.ok()?;
    let mut reply = Vec::new();
    let mut buffer = [0u8; 4096];
    let wait = |got: &[u8]| Duration::from_millis(if got.is_empty() { 2000 } else { 200 });
    while let Ok(read) = tokio::time::timeout(wait(&reply), stream.read(&mut buffer)).await {
        match read.ok()? {
            0 => break,
            n => reply.extend_from_slice(&buffer[..n]),
        }
    }
    (!reply.is_empty()).then(|| String::from_utf8_lossy(&reply).into_owned())
}

/// Cache pod name → pod IP, of the Ready cache pods.
pub(crate) async fn cache_pods(client: &Client, ns: &str, name: &str) -> BTreeMap<String, String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let selector = format!("app.kubernetes.io/instance={name},app.kubernetes.io/component=cache");
    let Ok(list) = pods.list(&ListParams::default().labels(&selector)).await else { return BTreeMap::new() };
    list.items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && harness::pod_ready(p))
        .filter_map(|p| Some((p.metadata.name?, p.status?.pod_ip?)))
        .collect()
}

/// The pod every Sentinel names as master (its announced host name starts with the pod name),
/// when they all agree and that pod's Redis says it is the master.
pub(crate) async fn agreed_master(pods: &BTreeMap<String, String>, master_name: &str) -> Option<String> {
    let mut named = BTreeSet::new();
    for ip in pods.values() {
        let reply = redis(ip, 26379, &format!("SENTINEL get-master-addr-by-name {master_name}")).await?;
        let host = reply.lines().nth(2)?.trim_end().to_owned();
        named.insert(host.split('.').next()?.to_owned());
    }
    let master = (named.len() == 1).then(|| named.pop_first()).flatten()?;
    let role = redis(pods.get(&master)?, 6379, "ROLE").await?;
    role.contains("master").then_some(master)
}

#[tokio::test]
async fn the_redis_cache_runs_in_real_pods_and_a_deleted_master_pod_or_killed_master_process_is_replaced() {
    let _shared = CLUSTER.read().await;
    cluster::with_namespace("real-cache", |client, ns| async move {
        let _operator = Operator::start(&client, &ns, "solo", &[]).await;
        let api: Api<CourseService> = Api::namespaced(client.clone(), &ns);
        let mut manifest = course("catalog", &ns, 3, "1");
        manifest["spec"]["cache"] =
            serde_json::json!({"enabled": true, "replicas": 3, "maxMemory": "32Mi", "image": "localhost/redis:dev"});
        cluster::apply(&api, manifest).await;
        let master_name = "catalog-cache";

        let (pods, master) = eventually(CONVERGE, "3 Ready cache pods agreeing on a master", || async {
            let pods = cache_pods(&client, &ns, "catalog").await;
            if pods.len() != 3 {
                return None;
            }
            let master = agreed_master(&pods, master_name).await?;
            Some((pods, master))
        })
        .await;
        let replicas = pods.keys().filter(|p| **p != master).count();
        for (pod, ip) in pods.iter().filter(|(p, _)| **p != master) {
            let role = redis(ip, 6379, "ROLE").await.unwrap_or_default();
            assert!(role.contains("slave"), "{pod} is not a replica: {role:?}");
        }
        assert_eq!(replicas, 2);

        // Delete the master pod (its preStop hook hands the role over); a replica takes over
        // and the Sentinels follow.
        let cache: Api<Pod> = Api::namespaced(client.clone(), &ns);
        cache.delete(&master, &DeleteParams::default()).await.expect("delete the master pod");
        let deleted = Instant::now();
        let (new_master, failover) = eventually(CONVERGE, "another cache pod to be master", || async {
            let pods = cache_pods(&client, &ns, "catalog").await;
            let survivors: BTreeMap<String, String> = pods.into_iter().filter(|(p, _)| *p != master).collect();
            let new_master = agreed_master(&survivors, master_name).await?;
            Some((new_master, deleted.elapsed()))
        })
        .await;
        // The deleted pod comes back (same name) and rejoins as a replica of the new master.
        eventually(CONVERGE, "the old master back as a replica", || async {
            let pods = cache_pods(&client, &ns, "catalog").await;
            let ip = pods.get(&master)?;
            let role = redis(ip, 6379, "ROLE").await?;
            (pods.len() == 3 && role.contains("slave") && agreed_master(&pods, master_name).await? == new_master)
                .then_some(())
        })
        .await;
        eprintln!("real-pod Redis: master {master} deleted → {new_master} master after {failover:?}; {master} rejoined as a replica after {:?}", deleted.elapsed());

        // The master's redis-server process dies (SIGKILL, as the OOM killer would) while its
        // pod and Sentinel stay: the kubelet restarts the container at once, empty. A key every
        // replica acknowledged survives: a replica is promoted and the restarted Redis follows
        // it instead of taking its role back and wiping the others.
        let pods = cache_pods(&client, &ns, "catalog").await;
        let master_ip = pods.get(&new_master).expect("the master is a Ready cache pod").clone();
        // (the rejoined replica may still be in its first full sync: write until both acknowledge)
        eventually(Duration::from_secs(60), "both replicas to acknowledge a key written on the master", || async {
            let set = redis(&master_ip, 6379, "SET course:kill survived").await?;
            assert!(set.starts_with("+OK"), "SET on the master: {set:?}");
            redis(&master_ip, 6379, "WAIT 2 2000").await.filter(|acked| acked.starts_with(":2"))
        })
        .await;
        let uid = cache.get(&new_master).await.expect("master pod").metadata.uid.expect("uid");
        let restarts_before = redis_restarts(&cache, &new_master).await;
        let pid = kill_redis_server(&uid);
        let killed = Instant::now();
        let (promoted, failover) = eventually(CONVERGE, "a replica promoted after the process kill", || async {
            let pods = cache_pods(&client, &ns, "catalog").await;
            let others: BTreeMap<String, String> = pods.into_iter().filter(|(p, _)| *p != new_master).collect();
            Some((agreed_master(&others, master_name).await?, killed.elapsed()))
        })
        .await;
        let rejoined = eventually(CONVERGE, "the restarted Redis back as a replica of the promoted one", || async {
            (redis_restarts(&cache, &new_master).await > restarts_before).then_some(())?;
            let pods = cache_pods(&client, &ns, "catalog").await;
            let role = redis(pods.get(&new_master)?, 6379, "ROLE").await?;
            (pods.len() == 3 && role.contains("slave") && agreed_master(&pods, master_name).await? == promoted)
                .then_some(killed.elapsed())
        })
        .await;
        for (pod, ip) in cache_pods(&client, &ns, "catalog").await {
            let value = eventually(Duration::from_secs(30), "the key on every cache pod", || async {
                redis(&ip, 6379, "GET course:kill").await.filter(|v| v.contains("survived"))
            })
            .await;
            assert!(value.contains("survived"), "{pod} lost the key: {value:?}");
        }
        eprintln!(
            "real-pod Redis: redis-server (pid {pid}) of master {new_master} killed → {promoted} master after \
             {failover:?}; the restarted container rejoined as a replica after {rejoined:?}; the key survived on all 3"
        );
    })
    .await;
}

/// Restarts of the `redis` container of `pod`.
async fn redis_restarts(pods: &Api<Pod>, pod: &str) -> i32 {
    let Ok(pod) = pods.get(pod).await else { return 0 };
    let statuses = pod.status.and_then(|s| s.container_statuses).unwrap_or_default();
    statuses.iter().find(|c| c.name == "redis").map_or(0, |c| c.restart_count)
}

/// SIGKILL of the redis-server process (not the Sentinel) of the pod with `uid`, from this
/// machine: the real nodes' containers are its processes, in cgroups named after the pod.
/// Returns the process id.
fn kill_redis_server(uid: &str) -> u32 {
    let cgroup_mark = format!("pod{uid}");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let read = |file: &str| std::fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap_or_default();
        if read("comm").trim_end() == "redis-server" && read("cgroup").contains(&cgroup_mark) {
            found.push(pid);
        }
    }
    assert_eq!(found.len(), 1, "exactly one redis-server process in the cgroups of pod {uid}: {found:?}");
    let status = Command::new("kill").args(["-KILL", &found[0].to_string()]).status();
    assert!(status.is_ok_and(|s| s.success()), "kill -KILL {}", found[0]);
    found[0]
}

/// Every pod the operator renders (app, cache, database members and init Job) is admitted in a
/// namespace that enforces the `restricted` Pod Security Standard, and the app and cache pods
/// run there on the real nodes. The database's generated credentials never reach the
/// operator's log.
#[tokio::test]
async fn every_rendered_pod_is_admitted_under_the_restricted_pod_security_standard() {
    let _shared = CLUSTER.read().await;
    cluster::with_namespace("real-restricted", |client, ns| async move {
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
        let labels = serde_json::json!({"metadata": {"labels": {
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "latest",
        }}});
        namespaces
            .patch(&ns, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&labels))
            .await
            .expect("label the namespace restricted");
        // the standard is enforced here: a pod without a security context is refused
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let plain: Pod = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "plain"},
            "spec": {"containers": [{"name": "c", "image": TEST_SERVER}]},
        }))
        .expect("pod");
        let refusal = pods.create(&kube::api::PostParams::default(), &plain).await.expect_err("a plain pod is refused");
        assert!(refusal.to_string().contains("PodSecurity"), "{refusal}");
        let operator = Operator::start(&client, &ns, "solo", &[]).await;
        let api: Api<CourseService> = Api::namespaced(client.clone(), &ns);
        let mut manifest = course("catalog", &ns, 3, "1");
        manifest["spec"]["cache"] =
            serde_json::json!({"enabled": true, "replicas": 3, "maxMemory": "32Mi", "image": "localhost/redis:dev"});
        // members are created (admitted) but cannot start here: no mongod image exists
        manifest["spec"]["database"] = serde_json::json!({"members": 1, "storage": "1Gi"});
        cluster::apply(&api, manifest).await;

        let component_pods = |component: &'static str| {
            let pods = pods.clone();
            async move {
                let selector = format!("app.kubernetes.io/instance=catalog,app.kubernetes.io/component={component}");
                pods.list(&ListParams::default().labels(&selector)).await.map(|l| l.items).unwrap_or_default()
            }
        };
        eventually(CONVERGE, "3 Ready app pods and 3 Ready cache pods in a restricted namespace", || async {
            let app = component_pods("app").await;
            let cache = component_pods("cache").await;
            let ready = |pods: &[Pod]| pods.iter().filter(|p| harness::pod_ready(p)).count();
            (ready(&app) == 3 && ready(&cache) == 3).then_some(())
        })
        .await;
        eventually(CONVERGE, "a database member pod created (admitted)", || async {
            (!component_pods("database").await.is_empty()).then_some(())
        })
        .await;
        let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), &ns);
        let refused: Vec<String> = events
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("FailedCreate"))
            .map(|e| e.message.unwrap_or_default())
            .collect();
        assert!(refused.is_empty(), "pods refused in the restricted namespace: {refused:?}");

        // The generated database credentials never appear in the operator's log, in the
        // namespace's Events or in the CourseService's status.
        let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), &ns);
        let credentials = eventually(Duration::from_secs(60), "the database credentials Secret", || async {
            secrets.get("catalog-db-credentials").await.ok()?.data
        })
        .await;
        let log = operator.log();
        assert!(!log.is_empty(), "the operator wrote no log");
        let events = serde_json::to_string(&events.list(&ListParams::default()).await.expect("list Events").items)
            .expect("Events as JSON");
        let courses: Api<CourseService> = Api::namespaced(client.clone(), &ns);
        let status = courses.get("catalog").await.expect("read the CourseService").status;
        assert!(status.is_some(), "the CourseService has no status to search");
        let status = serde_json::to_string(&status).expect("status as JSON");
        let generated: Vec<(String, String)> = credentials
            .into_iter()
            .map(|(key, value)| (key, String::from_utf8_lossy(&value.0).to_string()))
            .filter(|(_, text)| text.len() >= 8)
            .collect();
        assert!(!generated.is_empty(), "no generated credential of 8 characters or more to search for");
        for (key, text) in &generated {
            for (place, haystack) in [("log", &log), ("Events", &events), ("status", &status)] {
                assert!(!haystack.contains(text.as_str()), "the operator's {place} contains the credentials' {key}");
            }
        }
    })
    .await;
}
