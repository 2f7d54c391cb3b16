//! The course app on the real nodes, as its users see it: requests through the LoadBalancer
//! address, sent and counted by vegeta (an existing load generator, built by hack/build.sh),
//! while the cluster changes under them. FerretDB (localhost/ferretdb:dev) is the external
//! Mongo-API database; the operator runs the app and its Redis Sentinel cache.
//!
//! Each test holds the cluster alone (like the kubelet-stop test): its figures are the app's
//! and the operator's, not those of seven other tests sharing the machine's two cores.
//!
//! Invariants asserted per scenario: no failed request (a non-2xx answer or a connection
//! error), every acknowledged write readable afterwards; p50/p99 latency and where reads were
//! served from are printed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use kube::api::DeleteParams;
use kube::{Api, Client};

use crate::cluster::{self, CLUSTER, Operator, eventually, http_get};
use crate::fixtures::{course_manifest, repo_root};
use crate::harness;
use crate::real_nodes::{
    agreed_master, cache_pods, lose_and_restore_zone_c, wait_two_per_zone, with_kubelet_c_restored, zones,
};
use crate::rollouts::kubectl_course;
use crate::rollouts::{EndpointWatch, wait_endpoints};
use course_operator::api::{CourseService, RolloutPhase};

const CONVERGE: Duration = Duration::from_secs(240);
/// Requests per second of the steady mix (reads of the list, reads of one course, creates).
const RATE: u32 = 30;

/// The vegeta binary hack/build.sh built (the version pinned in hack/versions.env).
fn vegeta() -> PathBuf {
    let versions = std::fs::read_to_string(repo_root().join("hack/versions.env")).expect("hack/versions.env");
    let version = versions
        .lines()
        .find_map(|l| l.strip_prefix("VEGETA_VERSION="))
        .expect("VEGETA_VERSION in hack/versions.env")
        .trim()
        .to_owned();
    let cache = std::env::var("COURSE_OPERATOR_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/course-operator"));
    let bin = cache.join(format!("vegeta-{version}/bin/vegeta"));
    assert!(bin.is_file(), "{} missing: run hack/build.sh vegeta (hack/cluster.sh up does)", bin.display());
    bin
}

/// The demo's external database (hack/manifests/demo-database.yaml): FerretDB (SQLite backend,
/// data in an emptyDir) as a Deployment and Service, and the Secret holding its connection
/// string, applied in `ns`.
async fn ferretdb(client: &Client, ns: &str) {
    let text =
        std::fs::read_to_string(repo_root().join("hack/manifests/demo-database.yaml")).expect("demo-database.yaml");
    let documents: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).expect("demo-database.yaml is YAML");
    for mut document in documents {
        document["metadata"]["namespace"] = ns.into();
        match document["kind"].as_str() {
            Some("Deployment") => {
                drop(cluster::apply(&Api::<Deployment>::namespaced(client.clone(), ns), document).await)
            }
            Some("Service") => drop(cluster::apply(&Api::<Service>::namespaced(client.clone(), ns), document).await),
            Some("Secret") => drop(cluster::apply(&Api::<Secret>::namespaced(client.clone(), ns), document).await),
            other => panic!("demo-database.yaml: unexpected kind {other:?}"),
        }
    }
    wait_endpoints(client, ns, "ferretdb", 1).await;
}

fn course_app(ns: &str, image: &str) -> serde_json::Value {
    course_manifest(
        "courses",
        ns,
        serde_json::json!({
            "image": image,
            "replicas": 3,
            "resources": {"requests": {"cpu": "20m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
            "probes": {"readinessPath": "/readyz", "livenessPath": "/healthz"},
            "disruption": {"maxUnavailable": 1},
            "strategy": {"type": "Rolling", "rolling": {"maxSurge": 1, "maxUnavailable": 0, "zoneByZone": true}},
            "cache": {"enabled": true, "replicas": 3, "ttlSeconds": 60, "maxMemory": "32Mi", "image": "localhost/redis:dev"},
            "database": {"external": {"uriSecret": {"name": "course-db", "key": "uri"}}},
        }),
    )
}

/// What a load sends.
#[derive(Clone, Copy)]
struct Mix {
    /// Creates between the reads.
    writes: bool,
    /// Persistent connections (vegeta's default). Off, every request opens a connection and
    /// kube-proxy balances each one: the share of answers per version then follows the pods.
    keepalive: bool,
}

const MIXED: Mix = Mix { writes: true, keepalive: true };
const READS: Mix = Mix { writes: false, keepalive: true };
const READS_NEW_CONNECTIONS: Mix = Mix { writes: false, keepalive: false };
const MIXED_NEW_CONNECTIONS: Mix = Mix { writes: true, keepalive: false };

/// One vegeta attack running in the background.
struct Load {
    /// `None` once stopped.
    process: Option<Child>,
    dir: PathBuf,
    started: Instant,
}

/// A test that fails while its load runs must not leave vegeta attacking an address the next
/// test's LoadBalancer may get.
impl Drop for Load {
    fn drop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What vegeta saw between `start` and `stop`.
#[derive(Debug, Default)]
struct Report {
    requests: usize,
    /// "METHOD url → code error" of each failed request (first 20).
    failures: Vec<String>,
    failed: usize,
    p50: Duration,
    p99: Duration,
    /// Ids of the courses whose creation was acknowledged (201).
    created: Vec<String>,
    /// X-Course-Version → answers, in time order of first appearance.
    versions: BTreeMap<String, usize>,
    /// Version of the last answers (the final tenth of the run).
    final_versions: BTreeMap<String, usize>,
    /// X-Course-Pod of every answer.
    pods: Vec<String>,
    /// X-Cache of reads → count.
    cache: BTreeMap<String, usize>,
    /// X-Cache of the reads in the final tenth of the run.
    final_cache: BTreeMap<String, usize>,
    /// First and last answer served around the cache (`bypass`), seconds from the start.
    bypass_window: Option<(f64, f64)>,
}

impl Load {
    /// A steady mix against `base`: the list and one course in turn, and with writes a create
    /// as every tenth request.
    fn start(base: &str, course_id: &str, name: &str, mix: Mix) -> Load {
        let dir = std::env::temp_dir().join(format!("course-traffic-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let body = dir.join("course.json");
        std::fs::write(&body, r#"{"title":"Load test","description":"written under traffic","durationMinutes":15}"#)
            .expect("body");
        // vegeta sends its targets in turn: reads of the list and of one course, and with
        // writes every tenth request a create (a catalogue is read far more than written)
        let read_pair = format!("GET {base}/courses\n\nGET {base}/courses/{course_id}\n");
        let mut targets = read_pair.clone();
        if mix.writes {
            targets = vec![read_pair; 4].join("\n");
            targets += &format!(
                "\nGET {base}/courses\n\nPOST {base}/courses\nContent-Type: application/json\n@{}\n",
                body.display()
            );
        }
        std::fs::write(dir.join("targets"), targets).expect("targets");
        let process = Command::new(vegeta())
            .args(["attack", "-targets", "targets", "-output", "results.bin", "-timeout", "10s", "-duration", "0"])
            .arg(format!("-rate={RATE}/s"))
            .arg(format!("-keepalive={}", mix.keepalive))
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("vegeta attack");
        Load { process: Some(process), dir, started: Instant::now() }
    }

    /// Stops the attack (SIGINT: vegeta finishes in-flight requests and writes them) and
    /// reads every result.
    fn stop(mut self) -> Report {
        let elapsed = self.started.elapsed();
        let process = self.process.take().expect("a running load");
        let pid = process.id().to_string();
        assert!(Command::new("kill").args(["-INT", &pid]).status().is_ok_and(|s| s.success()), "kill -INT vegeta");
        let output = process.wait_with_output().expect("vegeta exits");
        assert!(output.status.success(), "vegeta attack failed: {}", String::from_utf8_lossy(&output.stderr));
        let encoded = Command::new(vegeta())
            .args(["encode", "--to", "json", "results.bin"])
            .current_dir(&self.dir)
            .output()
            .expect("vegeta encode");
        assert!(encoded.status.success(), "vegeta encode: {}", String::from_utf8_lossy(&encoded.stderr));
        let report = report(&String::from_utf8_lossy(&encoded.stdout));
        // vegeta keeps its rate or says why not: a run that sent fewer than 90 % of its
        // requests measured less than it claims
        let expected = elapsed.as_secs_f64() * f64::from(RATE);
        assert!(
            report.requests as f64 >= 0.9 * expected,
            "vegeta sent {} requests in {elapsed:?}, fewer than 90 % of {expected:.0}",
            report.requests
        );
        report
    }
}

fn header<'a>(result: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    result["headers"][name][0].as_str()
}

fn report(lines: &str) -> Report {
    use base64_body::decode;
    let results: Vec<serde_json::Value> = lines.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let mut report = Report { requests: results.len(), ..Report::default() };
    let mut latencies: Vec<u64> = results.iter().filter_map(|r| r["latency"].as_u64()).collect();
    latencies.sort_unstable();
    let quantile = |q: f64| {
        let index = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len().max(1)) - 1;
        Duration::from_nanos(latencies.get(index).copied().unwrap_or_default())
    };
    report.p50 = quantile(0.50);
    report.p99 = quantile(0.99);
    let start = results.iter().filter_map(|r| r["timestamp"].as_str()).min().map(str::to_owned);
    let seconds = |r: &serde_json::Value| -> f64 {
        let parse = |t: &str| t.parse::<k8s_openapi::jiff::Timestamp>().ok();
        match (r["timestamp"].as_str().and_then(parse), start.as_deref().and_then(parse)) {
            (Some(t), Some(s)) => (t - s).total(k8s_openapi::jiff::Unit::Second).unwrap_or_default(),
            _ => 0.0,
        }
    };
    let final_tenth = results.len() - results.len() / 10;
    for (index, result) in results.iter().enumerate() {
        let code = result["code"].as_u64().unwrap_or_default();
        let error = result["error"].as_str().unwrap_or_default();
        let method = result["method"].as_str().unwrap_or_default();
        if !(200..300).contains(&code) || !error.is_empty() {
            report.failed += 1;
            if report.failures.len() < 20 {
                let url = result["url"].as_str().unwrap_or_default();
                let pod = header(result, "X-Course-Pod").unwrap_or("-");
                report.failures.push(format!("{:.1}s {method} {url} → {code} {error} (pod {pod})", seconds(result)));
            }
            continue;
        }
        if let Some(pod) = header(result, "X-Course-Pod") {
            report.pods.push(pod.to_owned());
        }
        if let Some(version) = header(result, "X-Course-Version") {
            *report.versions.entry(version.to_owned()).or_default() += 1;
            if index >= final_tenth {
                *report.final_versions.entry(version.to_owned()).or_default() += 1;
            }
        }
        if let Some(cache) = header(result, "X-Cache") {
            *report.cache.entry(cache.to_owned()).or_default() += 1;
            if index >= final_tenth {
                *report.final_cache.entry(cache.to_owned()).or_default() += 1;
            }
            if cache == "bypass" {
                let at = seconds(result);
                let window = report.bypass_window.get_or_insert((at, at));
                window.0 = window.0.min(at);
                window.1 = window.1.max(at);
            }
        }
        if method == "POST" && code == 201 {
            let body = result["body"].as_str().and_then(decode).unwrap_or_default();
            let created: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            if let Some(id) = created["id"].as_str() {
                report.created.push(id.to_owned());
            }
        }
    }
    report
}

/// vegeta's JSON encodes bodies in standard base64; a small decoder keeps the test
/// dependency-free.
mod base64_body {
    pub fn decode(text: &str) -> Option<Vec<u8>> {
        let value = |c: u8| -> Option<u32> {
            Some(match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'+' => 62,
                b'/' => 63,
                _ => return None,
            } as u32)
        };
        let bytes: Vec<u8> = text.bytes().filter(|b| *b != b'=').collect();
        let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
        for chunk in bytes.chunks(4) {
            let mut n = 0u32;
            for (i, c) in chunk.iter().enumerate() {
                n |= value(*c)? << (18 - 6 * i);
            }
            out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
        }
        Some(out)
    }

    #[test]
    fn decodes_standard_base64() {
        assert_eq!(decode("eyJpZCI6IjEifQ==").unwrap(), br#"{"id":"1"}"#);
        assert_eq!(decode("YWJj").unwrap(), b"abc");
    }
}

/// FerretDB, then `manifest` (the course app on it), until three courses were created
/// through the LoadBalancer address: (address, port, the courses' ids).
async fn deploy(client: &Client, ns: &str, manifest: serde_json::Value) -> (String, u16, Vec<String>) {
    ferretdb(client, ns).await;
    let api: Api<CourseService> = Api::namespaced(client.clone(), ns);
    let replicas = manifest["spec"]["replicas"].as_u64().unwrap_or(3) as usize;
    cluster::apply(&api, manifest).await;
    wait_endpoints(client, ns, "courses", replicas).await;
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let (ip, port) = eventually(Duration::from_secs(60), "a LoadBalancer address", || async {
        let service = services.get("courses").await.ok()?;
        let ip = service.status?.load_balancer?.ingress?.first()?.ip.clone()?;
        Some((ip, u16::try_from(service.spec?.ports?.first()?.port).ok()?))
    })
    .await;
    eventually(Duration::from_secs(60), "the course list through the LoadBalancer", || async {
        http_get(&ip, port, "/courses").await.filter(|(code, _)| *code == 200)
    })
    .await;
    // The cache settles after the app (Sentinels agree on a master, the app's breaker probes it
    // again): from here on, reads are served by it.
    eventually(CONVERGE, "the Sentinels agreeing on a master", || async {
        agreed_master(&cache_pods(client, ns, "courses").await, "courses-cache").await
    })
    .await;
    let status = api.get("courses").await.expect("course service").status.and_then(|s| s.database);
    assert_eq!(status.and_then(|d| d.external).as_deref(), Some("course-db/uri"), "status names the external database");
    let mut seeded = Vec::new();
    for title in ["Kubernetes operators", "Rust for services", "Redis in practice"] {
        let body = format!(r#"{{"title":"{title}","description":"seed","durationMinutes":60}}"#);
        let (code, answer) = harness::http_request(&ip, port, "POST", "/courses", Some(&body), cluster::ANSWER_WITHIN)
            .await
            .expect("create answers");
        assert_eq!(code, 201, "{answer}");
        let created: serde_json::Value = serde_json::from_str(&answer).expect("created course");
        seeded.push(created["id"].as_str().expect("id").to_owned());
    }
    let item = format!("/courses/{}", seeded[0]);
    eventually(Duration::from_secs(90), "five reads in a row served by the cache", || async {
        for _ in 0..5 {
            (x_cache(&ip, port, &item).await?.as_str() == "hit").then_some(())?;
        }
        Some(())
    })
    .await;
    (ip, port, seeded)
}

/// The `X-Cache` header of one GET (a new connection: any pod behind the address).
async fn x_cache(ip: &str, port: u16, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream =
        tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect((ip, port))).await.ok()?.ok()?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: {ip}\r\n\r\n").as_bytes()).await.ok()?;
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response)).await.ok()?.ok()?;
    let head = response.split_once("\r\n\r\n")?.0;
    head.lines().find_map(|l| {
        l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("x-cache")).map(|(_, v)| v.trim().to_owned())
    })
}

/// Waits until the rollout away from `old` finished: the new revision stable and the only one
/// with pods left (a draining pod still answers).
async fn wait_rolled_out(client: &Client, ns: &str, old: Option<&str>) -> String {
    let api: Api<CourseService> = Api::namespaced(client.clone(), ns);
    eventually(CONVERGE, "the rollout to finish", || async {
        let rollout = api.get("courses").await.ok()?.status?.rollout?;
        let done = rollout.phase == RolloutPhase::Healthy && rollout.new_revision == rollout.stable_revision;
        let new = rollout.stable_revision.filter(|r| Some(r.as_str()) != old)?;
        let all = app_pod_revisions(client, ns, "courses").await;
        (done && !all.is_empty() && all.iter().all(|r| *r == new)).then_some(new)
    })
    .await
}

/// The rollout's current (phase, weight, stable revision).
async fn rollout(api: &Api<CourseService>) -> Option<(RolloutPhase, i32, Option<String>)> {
    let rollout = api.get("courses").await.ok()?.status?.rollout?;
    Some((rollout.phase, rollout.weight, rollout.stable_revision))
}

/// Revision labels of every application pod, terminating ones included.
async fn app_pod_revisions(client: &Client, ns: &str, name: &str) -> Vec<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let selector = format!("app.kubernetes.io/instance={name},app.kubernetes.io/component=app");
    let list =
        pods.list(&kube::api::ListParams::default().labels(&selector)).await.map(|l| l.items).unwrap_or_default();
    list.iter()
        .map(|p| {
            p.metadata.labels.as_ref().and_then(|l| l.get("microcourses.io/revision")).cloned().unwrap_or_default()
        })
        .collect()
}

/// Every acknowledged write can be read back through the LoadBalancer address.
async fn assert_readable(ip: &str, port: u16, ids: &[String]) {
    for id in ids {
        let answer = http_get(ip, port, &format!("/courses/{id}")).await;
        assert!(matches!(answer, Some((200, _))), "acknowledged course {id} is not readable: {answer:?}");
    }
}

fn print(scenario: &str, report: &Report) {
    let reads: usize = report.cache.values().sum();
    let hits = report.cache.get("hit").copied().unwrap_or_default();
    eprintln!(
        "traffic [{scenario}]: {} requests at {RATE}/s, {} failed, p50 {:?}, p99 {:?}, {} creates acknowledged, versions {:?} (last tenth {:?}), reads {:?} (hit ratio {:.2}), bypass window {:?}",
        report.requests,
        report.failed,
        report.p50,
        report.p99,
        report.created.len(),
        report.versions,
        report.final_versions,
        report.cache,
        hits as f64 / reads.max(1) as f64,
        report.bypass_window,
    );
}

fn assert_no_failure(scenario: &str, report: &Report) {
    assert_eq!(report.failed, 0, "[{scenario}] failed requests: {:#?}", report.failures);
}

#[tokio::test]
async fn the_course_app_answers_every_request_through_a_rolling_update_and_a_cache_failover() {
    let _exclusive = CLUSTER.write().await;
    cluster::with_namespace("traffic", |client, ns| async move {
        let _operator = Operator::start(&client, &ns, "solo", &[]).await;
        let api: Api<CourseService> = Api::namespaced(client.clone(), &ns);
        let (ip, port, seeded) = deploy(&client, &ns, course_app(&ns, "localhost/course-app:dev")).await;
        let base = format!("http://{ip}:{port}");

        // 0. Steady reads (no writes): what the cache saves.
        let steady = Load::start(&base, &seeded[0], "steady", READS);
        tokio::time::sleep(Duration::from_secs(10)).await;
        let steady = steady.stop();
        print("steady reads", &steady);
        assert_no_failure("steady reads", &steady);
        let hits = steady.cache.get("hit").copied().unwrap_or_default();
        assert!(hits * 10 >= steady.requests * 9, "fewer than 90 % of steady reads hit the cache: {:?}", steady.cache);

        // 1. A zone-by-zone rolling update to a new version under load.
        let load = Load::start(&base, &seeded[0], "rolling", MIXED);
        let watch = EndpointWatch::start(&client, &ns, "courses").await;
        tokio::time::sleep(Duration::from_secs(8)).await;
        let old_revision = rollout(&api).await.and_then(|r| r.2);
        assert!(old_revision.is_some(), "a stable revision before the update");
        cluster::apply(&api, course_app(&ns, "localhost/course-app:dev2")).await;
        wait_rolled_out(&client, &ns, old_revision.as_deref()).await;
        tokio::time::sleep(Duration::from_secs(8)).await;
        let rolling = load.stop();
        print("rolling update", &rolling);
        // 3 replicas, spec.disruption.maxUnavailable 1
        watch.finish().await.assert_floor(2, "rolling update");
        assert_no_failure("rolling update", &rolling);
        assert!(
            rolling.versions.contains_key("dev") && rolling.versions.contains_key("dev2"),
            "{:?}",
            rolling.versions
        );
        assert_eq!(
            rolling.final_versions.keys().collect::<Vec<_>>(),
            ["dev2"],
            "only the new version serves at the end"
        );
        assert!(!rolling.created.is_empty(), "no create was acknowledged");
        assert_readable(&ip, port, &rolling.created).await;

        // 2. The Redis master pod deleted under load: reads fall back to the database, writes
        // keep landing, then the cache serves again from the new master.
        let pods = cache_pods(&client, &ns, "courses").await;
        let master = eventually(CONVERGE, "the Sentinels agreeing on a master", || async {
            agreed_master(&cache_pods(&client, &ns, "courses").await, "courses-cache").await
        })
        .await;
        assert_eq!(pods.len(), 3);
        let load = Load::start(&base, &seeded[1], "failover", MIXED);
        tokio::time::sleep(Duration::from_secs(8)).await;
        let cache: Api<Pod> = Api::namespaced(client.clone(), &ns);
        cache.delete(&master, &DeleteParams::default()).await.expect("delete the Redis master pod");
        let deleted = Instant::now();
        let new_master = eventually(CONVERGE, "another cache pod to be master", || async {
            let survivors: BTreeMap<String, String> =
                cache_pods(&client, &ns, "courses").await.into_iter().filter(|(p, _)| *p != master).collect();
            agreed_master(&survivors, "courses-cache").await
        })
        .await;
        let failover = deleted.elapsed();
        tokio::time::sleep(Duration::from_secs(15)).await;
        let failover_load = load.stop();
        print("redis master deleted", &failover_load);
        eprintln!("traffic [redis master deleted]: {master} deleted → {new_master} master after {failover:?}");
        assert_no_failure("redis master deleted", &failover_load);
        assert_readable(&ip, port, &failover_load.created).await;
        assert_readable(&ip, port, &rolling.created).await;
        // after the failover the cache serves again: hits in the last tenth of the run
        assert!(
            failover_load.final_cache.get("hit").is_some_and(|h| *h > 0),
            "no cache hit after the failover: {:?}",
            failover_load.final_cache
        );
        // 3. A plain rolling update (all zones at once) back to dev under load.
        let old_revision = rollout(&api).await.and_then(|r| r.2);
        let load = Load::start(&base, &seeded[2], "rolling-all-zones", MIXED);
        let watch = EndpointWatch::start(&client, &ns, "courses").await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        let mut all_zones = course_app(&ns, "localhost/course-app:dev");
        all_zones["spec"]["strategy"]["rolling"]["zoneByZone"] = false.into();
        cluster::apply(&api, all_zones).await;
        wait_rolled_out(&client, &ns, old_revision.as_deref()).await;
        tokio::time::sleep(Duration::from_secs(6)).await;
        let plain = load.stop();
        print("rolling update, all zones at once", &plain);
        watch.finish().await.assert_floor(2, "rolling update, all zones at once");
        assert_no_failure("rolling update, all zones at once", &plain);
        assert_eq!(plain.final_versions.keys().collect::<Vec<_>>(), ["dev"]);
        assert_readable(&ip, port, &plain.created).await;
    })
    .await;
}

/// The course app with `strategy` and `replicas`.
fn switched(ns: &str, image: &str, replicas: i32, strategy: serde_json::Value) -> serde_json::Value {
    let mut manifest = course_app(ns, image);
    manifest["spec"]["replicas"] = replicas.into();
    manifest["spec"]["strategy"] = strategy;
    manifest
}

/// Waits until every application pod left runs `revision` and `count` of them are Ready
/// behind the Service.
async fn wait_only(client: &Client, ns: &str, revision: &str, count: usize) {
    eventually(CONVERGE, &format!("only {count} pods of revision {revision}"), || async {
        let all = app_pod_revisions(client, ns, "courses").await;
        (all.len() == count && all.iter().all(|r| r == revision)).then_some(())
    })
    .await;
    wait_endpoints(client, ns, "courses", count).await;
}

#[tokio::test]
async fn the_course_app_answers_every_request_through_canary_promote_abort_and_a_blue_green_switch() {
    let _exclusive = CLUSTER.write().await;
    cluster::with_namespace("traffic-switch", |client, ns| async move {
        let _operator = Operator::start(&client, &ns, "solo", &[]).await;
        let api: Api<CourseService> = Api::namespaced(client.clone(), &ns);
        let canary = serde_json::json!({"type": "Canary", "canary": {"steps": [{"setWeight": 40}, {"pause": {}}]}});
        let (ip, port, seeded) =
            deploy(&client, &ns, switched(&ns, "localhost/course-app:dev", 5, canary.clone())).await;
        let base = format!("http://{ip}:{port}");

        // 1. Canary to dev2: paused at 40 %, where the share of answers follows the weight,
        // then promoted.
        let first = rollout(&api).await.and_then(|r| r.2).expect("a stable revision");
        let load = Load::start(&base, &seeded[0], "canary", MIXED);
        let watch = EndpointWatch::start(&client, &ns, "courses").await;
        cluster::apply(&api, switched(&ns, "localhost/course-app:dev2", 5, canary.clone())).await;
        eventually(CONVERGE, "the canary paused at 40 %", || async {
            let (phase, weight, _) = rollout(&api).await?;
            (phase == RolloutPhase::Paused && weight == 40).then_some(())
        })
        .await;
        // the surge and the scaled-down stable pods settle: five pods, all behind the Service
        let pods = eventually(CONVERGE, "five application pods at the pause", || async {
            let pods = app_pod_revisions(&client, &ns, "courses").await;
            (pods.len() == 5).then_some(pods)
        })
        .await;
        let new_pods = pods.iter().filter(|r| **r != first).count();
        wait_endpoints(&client, &ns, "courses", pods.len()).await;
        let share = Load::start(&base, &seeded[0], "canary-share", READS_NEW_CONNECTIONS);
        tokio::time::sleep(Duration::from_secs(10)).await;
        let share = share.stop();
        print("canary share at 40 %", &share);
        assert_no_failure("canary share at 40 %", &share);
        let answers: usize = share.versions.values().sum();
        let new_share = 100.0 * share.versions.get("dev2").copied().unwrap_or_default() as f64 / answers.max(1) as f64;
        eprintln!("traffic [canary]: {new_pods} of {} pods new, {new_share:.1} % of answers from dev2", pods.len());
        assert!((new_share - 40.0).abs() <= 10.0, "{new_share:.1} % of answers from the canary at weight 40 %");
        let (promoted, message) = kubectl_course(&ns, &["promote", "courses"]);
        assert!(promoted, "kubectl course promote: {message}");
        let second = wait_rolled_out(&client, &ns, Some(&first)).await;
        tokio::time::sleep(Duration::from_secs(6)).await;
        let canary_load = load.stop();
        print("canary promoted", &canary_load);
        // 5 replicas, maxUnavailable 1
        watch.finish().await.assert_floor(4, "canary promoted");
        assert_no_failure("canary promoted", &canary_load);
        assert_eq!(canary_load.final_versions.keys().collect::<Vec<_>>(), ["dev2"]);
        assert_readable(&ip, port, &canary_load.created).await;

        // 2. A canary back to dev, aborted at its pause: the stable dev2 pods alone remain.
        let load = Load::start(&base, &seeded[1], "abort", MIXED);
        cluster::apply(&api, switched(&ns, "localhost/course-app:dev", 5, canary.clone())).await;
        eventually(CONVERGE, "the second canary paused at 40 %", || async {
            let (phase, weight, _) = rollout(&api).await?;
            (phase == RolloutPhase::Paused && weight == 40).then_some(())
        })
        .await;
        let (aborted, message) = kubectl_course(&ns, &["abort", "courses"]);
        assert!(aborted, "kubectl course abort: {message}");
        wait_only(&client, &ns, &second, 5).await;
        tokio::time::sleep(Duration::from_secs(6)).await;
        let abort_load = load.stop();
        print("canary aborted", &abort_load);
        assert_no_failure("canary aborted", &abort_load);
        assert_eq!(abort_load.final_versions.keys().collect::<Vec<_>>(), ["dev2"]);
        assert_readable(&ip, port, &abort_load.created).await;

        // 3. Blue-green to a third revision: the green pods come up behind the preview Service,
        // the main Service switches after 5 s, the blue pods go 10 s later.
        let blue_green = serde_json::json!({"type": "BlueGreen",
            "blueGreen": {"previewService": true, "autoPromotionSeconds": 5, "scaleDownDelaySeconds": 10}});
        cluster::apply(&api, switched(&ns, "localhost/course-app:dev2", 5, blue_green.clone())).await;
        let load = Load::start(&base, &seeded[2], "blue-green", MIXED);
        let watch = EndpointWatch::start(&client, &ns, "courses").await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        let mut green = switched(&ns, "localhost/course-app:dev", 5, blue_green);
        green["spec"]["env"] = serde_json::json!([{"name": "COURSE_VERSION", "value": "green"}]);
        cluster::apply(&api, green).await;
        wait_rolled_out(&client, &ns, Some(&second)).await;
        tokio::time::sleep(Duration::from_secs(6)).await;
        let switch_load = load.stop();
        print("blue-green switch", &switch_load);
        watch.finish().await.assert_floor(4, "blue-green switch");
        assert_no_failure("blue-green switch", &switch_load);
        assert_eq!(switch_load.final_versions.keys().collect::<Vec<_>>(), ["green"]);
        assert!(switch_load.versions.contains_key("dev2"), "{:?}", switch_load.versions);
        assert_readable(&ip, port, &switch_load.created).await;
        assert_readable(&ip, port, &canary_load.created).await;
    })
    .await;
}

/// `helm` with the local cluster's kubeconfig.
fn helm(args: &[&str]) -> String {
    let output = Command::new(repo_root().join(".cluster/bin/helm")).args(args).output().expect("helm runs");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "helm {args:?}: {text}");
    text
}

/// The operator as a platform team installs it: the chart, two replicas with leader election,
/// from the image `make images` built, watching `ns` only. Returns the release's full name.
fn install_operator(ns: &str) -> String {
    let name = format!("op-{ns}");
    let chart = repo_root().join("charts/course-operator");
    helm(&[
        "upgrade",
        "--install",
        "op",
        &chart.to_string_lossy(),
        "--namespace",
        ns,
        "--skip-crds",
        "--set",
        "image.repository=localhost/course-operator",
        "--set",
        "image.tag=dev",
        "--set",
        "image.pullPolicy=Never",
        "--set",
        &format!("watchNamespace={ns}"),
        "--set",
        &format!("fullnameOverride={name}"),
        "--wait",
        "--timeout",
        "180s",
    ]);
    name
}

/// SIGKILL to the operator process of `pod` (found by the HOSTNAME the runtime gave it).
fn kill_operator_process(pod: &str) {
    let wanted = format!("HOSTNAME={pod}");
    let pid = std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            cmdline.starts_with(b"/course-operator\0") && environ.split(|b| *b == 0).any(|var| var == wanted.as_bytes())
        })
        .unwrap_or_else(|| panic!("no operator process of pod {pod} on this machine"));
    let status = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
    assert!(status.is_ok_and(|s| s.success()), "kill -KILL {pid}");
}

#[tokio::test]
async fn the_course_app_answers_every_request_while_the_leader_operator_pod_is_killed_mid_rollout() {
    let _exclusive = CLUSTER.write().await;
    cluster::with_namespace("traffic-leader", |client, ns| async move {
        let release = install_operator(&ns);
        let api: Api<CourseService> = Api::namespaced(client.clone(), &ns);
        let (ip, port, seeded) = deploy(&client, &ns, course_app(&ns, "localhost/course-app:dev")).await;
        let base = format!("http://{ip}:{port}");
        let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(client.clone(), &ns);
        let holder = || async {
            leases.get("course-operator-leader").await.ok()?.spec?.holder_identity.filter(|h| !h.is_empty())
        };
        let leader = eventually(Duration::from_secs(60), "a leader operator pod", holder).await;

        let old = rollout(&api).await.and_then(|r| r.2);
        let load = Load::start(&base, &seeded[0], "leader", MIXED);
        tokio::time::sleep(Duration::from_secs(5)).await;
        cluster::apply(&api, course_app(&ns, "localhost/course-app:dev2")).await;
        eventually(CONVERGE, "the rollout under way", || async {
            let (phase, weight, _) = rollout(&api).await?;
            (phase == RolloutPhase::Progressing && weight > 0).then_some(())
        })
        .await;
        // SIGKILL to the leader's process on its node (a pod delete, even with grace 0, sends
        // SIGTERM first and the leader hands the Lease over): the standby takes over only when
        // the Lease expires, and the kubelet restarts the container.
        kill_operator_process(&leader);
        let killed = Instant::now();
        // Leadership resumes: the standby after the Lease expires, or the killed pod's restarted
        // container (same pod name, so same identity) when it is back first.
        let killed_at = k8s_openapi::jiff::Timestamp::now();
        let successor = eventually(Duration::from_secs(90), "the Lease renewed after the kill", || async {
            let spec = leases.get("course-operator-leader").await.ok()?.spec?;
            let renewed = spec.renew_time?.0;
            (renewed > killed_at).then_some(spec.holder_identity?)
        })
        .await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let restarts = pods
            .get(&leader)
            .await
            .ok()
            .and_then(|p| p.status?.container_statuses?.first().map(|c| c.restart_count))
            .unwrap_or_default();
        let takeover = killed.elapsed();
        wait_rolled_out(&client, &ns, old.as_deref()).await;
        tokio::time::sleep(Duration::from_secs(6)).await;
        let report = load.stop();
        print("leader operator pod killed mid-rollout", &report);
        eprintln!(
            "traffic [leader killed]: {leader} SIGKILLed (restarts now {restarts}) → {successor} renewed the Lease after {takeover:?}"
        );
        assert_no_failure("leader operator pod killed mid-rollout", &report);
        assert_eq!(report.final_versions.keys().collect::<Vec<_>>(), ["dev2"]);
        assert_readable(&ip, port, &report.created).await;

        // A leader pod deleted (as a node drain or `kubectl delete pod` would): the other
        // replica leads within 15 s.
        let leader = eventually(Duration::from_secs(60), "a leader", holder).await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        pods.delete(&leader, &DeleteParams::default()).await.expect("delete the leader pod");
        let deleted = Instant::now();
        let next = eventually(Duration::from_secs(15), "another pod leading within 15 s", || async {
            holder().await.filter(|h| *h != leader)
        })
        .await;
        eprintln!("traffic [leader pod deleted]: {leader} deleted → {next} leads after {:?}", deleted.elapsed());

        // helm uninstall removes the operator, not what it made: the app keeps serving.
        helm(&["uninstall", "op", "--namespace", &ns, "--wait"]);
        let roles: Api<k8s_openapi::api::rbac::v1::ClusterRole> = Api::all(client.clone());
        assert!(roles.get_opt(&release).await.ok().flatten().is_none(), "helm uninstall left the ClusterRole {release}");
        assert!(api.get_opt("courses").await.ok().flatten().is_some(), "the CourseService is gone after helm uninstall");
        let replica_sets: Api<k8s_openapi::api::apps::v1::ReplicaSet> = Api::namespaced(client.clone(), &ns);
        let selector = "app.kubernetes.io/instance=courses,app.kubernetes.io/component=app";
        let app = replica_sets.list(&kube::api::ListParams::default().labels(selector)).await.expect("list ReplicaSets");
        assert!(!app.items.is_empty(), "helm uninstall took the CourseService's ReplicaSets with it");
        let answer = http_get(&ip, port, "/courses").await;
        assert!(matches!(answer, Some((200, _))), "the app stopped answering after helm uninstall: {answer:?}");
    })
    .await;
}

#[tokio::test]
async fn the_course_app_answers_every_request_through_a_zone_loss_and_hpa_scaling() {
    let _exclusive = CLUSTER.write().await;
    with_kubelet_c_restored(cluster::with_namespace(
        "traffic-zones",
        |client, ns| async move {
            let _operator = Operator::start(&client, &ns, "solo", &[]).await;
            let api: Api<CourseService> = Api::namespaced(client.clone(), &ns);
            let autoscaled = |min: i32, max: i32| {
                let mut manifest = course_app(&ns, "localhost/course-app:dev");
                manifest["spec"]["autoscaling"] =
                    serde_json::json!({"minReplicas": min, "maxReplicas": max, "targetCPUUtilizationPercentage": 70});
                manifest
            };
            let (ip, port, seeded) = deploy(&client, &ns, autoscaled(3, 6)).await;
            let base = format!("http://{ip}:{port}");
            let hpa_replicas = || async { api.get("courses").await.ok().map(|cs| cs.spec.replicas) };

            // 1. The HPA scales up (its minimum raised) and down (its maximum lowered): pods
            // added, then removed while they serve (the drain).
            // a connection per request, so the pods the HPA adds get their share
            let load = Load::start(&base, &seeded[0], "hpa", MIXED_NEW_CONNECTIONS);
            tokio::time::sleep(Duration::from_secs(5)).await;
            cluster::apply(&api, autoscaled(6, 6)).await;
            eventually(CONVERGE, "the HPA at 6 replicas, all Ready", || async {
                (hpa_replicas().await? == 6).then_some(())?;
                let z = zones(&api, "courses").await;
                (z.values().map(|(_, r, _)| r).sum::<i32>() == 6).then_some(())
            })
            .await;
            wait_endpoints(&client, &ns, "courses", 6).await;
            tokio::time::sleep(Duration::from_secs(5)).await;
            cluster::apply(&api, autoscaled(3, 3)).await;
            eventually(CONVERGE, "the HPA back at 3 replicas and only 3 pods left", || async {
                (hpa_replicas().await? == 3).then_some(())?;
                (app_pod_revisions(&client, &ns, "courses").await.len() == 3).then_some(())
            })
            .await;
            tokio::time::sleep(Duration::from_secs(5)).await;
            let scaling = load.stop();
            print("hpa scale-up and scale-down", &scaling);
            assert_no_failure("hpa scale-up and scale-down", &scaling);
            assert_readable(&ip, port, &scaling.created).await;
            let pods_seen: std::collections::BTreeSet<&String> = scaling.pods.iter().collect();
            assert!(pods_seen.len() >= 6, "answers came from {} pods, the scaled-up ones included: {pods_seen:?}", pods_seen.len());

            // 2. Zone-c's kubelet stops: its node goes NotReady, its pods leave the endpoints, the
            // operator moves zone-c's share; then the kubelet returns and the share comes back.
            cluster::apply(&api, autoscaled(6, 6)).await;
            wait_two_per_zone(&api, "courses", "2 Ready pods in each zone").await;
            let load = Load::start(&base, &seeded[1], "zone-loss", MIXED);
            let watch = EndpointWatch::start(&client, &ns, "courses").await;
            tokio::time::sleep(Duration::from_secs(5)).await;
            let (moved_after, back_after) = lose_and_restore_zone_c(&api, "courses").await;
            tokio::time::sleep(Duration::from_secs(5)).await;
            let zone_loss = load.stop();
            print("zone-c kubelet stopped and restarted", &zone_loss);
            // 6 replicas, maxUnavailable 1, less the lost zone's share of 2 (docs/operations.md)
            watch.finish().await.assert_floor(3, "zone-c kubelet stopped and restarted");
            eprintln!("traffic [zone loss]: share moved {moved_after:?} after the kubelet stopped; back {back_after:?} after its restart");
            assert_no_failure("zone-c kubelet stopped and restarted", &zone_loss);
            assert_readable(&ip, port, &zone_loss.created).await;
        },
    ))
    .await;
}
