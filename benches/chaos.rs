//! Chaos harness (`make chaos` → hack/chaos.sh → this target). Scenarios, each checking
//! invariants and failing the run when one breaks:
//!
//! - `fuzz`: seeded random CourseService specs (and random rollout status, observed
//!   Deployments, zones, actions) through `app_template` → `validate` → `plan` → `status` →
//!   fingerprint/YAML: no panic, deterministic; a sample of the valid ones (and the
//!   CourseService itself) accepted by the apiserver's server-side dry run;
//! - `kills`: seeded SIGKILLs of the operator (a leader and a warm standby, each victim replaced
//!   at once) at uniformly random moments during canary and blue-green rollouts: each ends Healthy on its new revision, no orphaned Deployments or Services, and
//!   a watch on the Services' EndpointSlices (100 ms samples, ≤ 1 % missed) never sees fewer
//!   than `replicas − maxUnavailable` Ready endpoints;
//! - `failover`: two replicas, the leader SIGKILLed: failover ≤ 15 s, only the
//!   `course-operator` field manager on the children, no write from the standby before it
//!   led; then a leader frozen (SIGSTOP) past its Lease and thawed: it must not write;
//! - `zone-loss`: zone-a's nodes cordoned and deleted during a rollout, then restored
//!   (only on a cluster chaos.sh started itself: it mutates shared Nodes); Ready endpoints stay
//!   ≥ `replicas − maxUnavailable` before the loss and that less the lost zone's share after;
//! - `apiserver-restart`: kube-apiserver SIGKILLed and restarted mid-rollout
//!   (`hack/cluster.sh restart-apiserver --kill`); the rollout must finish, at the replicas
//!   asked for right after the restart, within 30 s of the apiserver's return, and the
//!   operator process must survive (same condition).
//!
//! `cargo bench --bench chaos -- [SCENARIO...]` (default: all). Environment: CHAOS_SEED,
//! CHAOS_KILLS, CHAOS_FUZZ_CASES, CHAOS_DRY_RUN_SAMPLE, CHAOS_OWN_CLUSTER=1 (set by chaos.sh
//! when it started the cluster), CHAOS_OUT_JSON, CHAOS_OUT_MD.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde::Serialize;
use serde_json::{Value, json};

use common::{Operator, Rng, Watched, progress};
#[path = "../tests/support/endpoints.rs"]
#[allow(dead_code)] // `Sampled::assert_floor` is the e2e suite's; chaos reports `violation` instead
mod endpoints;
use course_operator::api::{CourseService, RolloutPhase};
use course_operator::labels;
use course_operator::plan::{self, Observed, ObservedDeployment};
use course_operator::render::Images;
use course_operator::render::deployment::app_template;
use course_operator::render::mongo::DatabaseCredentials;
use course_operator::render::{self, Child};
use course_operator::rollout::analysis::Verdict;
use course_operator::zones::{Zone, ZoneHealth};
use endpoints::EndpointWatch;

/// The outcome of one scenario.
#[derive(Clone, Debug, Default, Serialize)]
struct Scenario {
    name: String,
    /// Why it did not run, when it did not.
    skipped: Option<String>,
    /// Broken invariants; empty means passed.
    violations: Vec<String>,
    /// What was measured, by name.
    figures: BTreeMap<String, Value>,
    seconds: f64,
}

impl Scenario {
    fn new(name: &str) -> Self {
        Self { name: name.to_owned(), ..Self::default() }
    }

    fn figure(&mut self, key: &str, value: impl Into<Value>) {
        self.figures.insert(key.to_owned(), value.into());
    }

    fn check(&mut self, ok: bool, violation: impl FnOnce() -> String) {
        if !ok {
            let v = violation();
            progress(format!("INVARIANT BROKEN [{}]: {v}", self.name));
            self.violations.push(v);
        }
    }
}

struct Settings {
    seed: u64,
    kills: usize,
    fuzz_cases: usize,
    dry_run_sample: usize,
    api_specs: usize,
    own_cluster: bool,
    log_dir: PathBuf,
}

#[tokio::main]
async fn main() -> ExitCode {
    let wanted: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let all = ["fuzz", "kills", "failover", "zone-loss", "apiserver-restart"];
    let run = |name: &str| wanted.is_empty() || wanted.iter().any(|w| w == name || w == "all");
    let full = common::env_flag("CHAOS_FULL");
    let settings = Settings {
        seed: common::env_or("CHAOS_SEED", 20_251_123),
        kills: common::env_or("CHAOS_KILLS", if full { 100 } else { 10 }),
        fuzz_cases: common::env_or("CHAOS_FUZZ_CASES", 10_000),
        dry_run_sample: common::env_or("CHAOS_DRY_RUN_SAMPLE", 50),
        api_specs: common::env_or("CHAOS_API_SPECS", 1000),
        own_cluster: common::env_flag("CHAOS_OWN_CLUSTER"),
        log_dir: PathBuf::from(std::env::var("CHAOS_LOG_DIR").unwrap_or_else(|_| "/tmp/course-operator-chaos".into())),
    };
    progress(format!(
        "seed {} (CHAOS_SEED), kills {}, own cluster: {}",
        settings.seed, settings.kills, settings.own_cluster
    ));
    let client = match common::client().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("chaos: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = common::ensure_crd(&client).await {
        eprintln!("chaos: CRD: {e:#}");
        return ExitCode::FAILURE;
    }
    let mut results = Vec::new();
    for name in all.iter().filter(|n| run(n)) {
        progress(format!("=== {name} ==="));
        let started = Instant::now();
        let mut scenario = Scenario::new(name);
        let outcome = match *name {
            "fuzz" => fuzz(&client, &settings, &mut scenario).await,
            "kills" => kills(&client, &settings, &mut scenario).await,
            "failover" => failover(&client, &settings, &mut scenario).await,
            "zone-loss" => zone_loss(&client, &settings, &mut scenario).await,
            _ => apiserver_restart(&client, &settings, &mut scenario).await,
        };
        if let Err(error) = outcome {
            scenario.violations.push(format!("scenario failed: {error:#}"));
            progress(format!("{name} failed: {error:#}"));
        }
        scenario.seconds = started.elapsed().as_secs_f64();
        progress(format!(
            "{name}: {} in {:.0}s",
            if scenario.skipped.is_some() {
                "skipped"
            } else if scenario.violations.is_empty() {
                "passed"
            } else {
                "FAILED"
            },
            scenario.seconds
        ));
        results.push(scenario);
        if let Err(e) = write_outputs(&settings, &results) {
            eprintln!("chaos: writing results: {e:#}");
        }
    }
    let broken: usize = results.iter().map(|s| s.violations.len()).sum();
    let ran = results.iter().filter(|s| s.skipped.is_none()).count();
    let passed = results.iter().filter(|s| s.skipped.is_none() && s.violations.is_empty()).count();
    let skipped = results.len() - ran;
    println!("chaos: {passed} passed, {} failed, {skipped} skipped", ran - passed);
    // A scenario that could not run proves nothing: that fails the run too, unless the caller
    // said so (name the scenarios to run, or CHAOS_ALLOW_SKIPPED=1).
    let skips_allowed = common::env_flag("CHAOS_ALLOW_SKIPPED");
    if skipped > 0 && !skips_allowed {
        eprintln!(
            "chaos: {skipped} scenario(s) skipped: run `make chaos` with the cluster stopped (it starts its own), \
             name the scenarios to run, or set CHAOS_ALLOW_SKIPPED=1"
        );
    }
    if broken > 0 || (skipped > 0 && !skips_allowed) { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

// ---------------------------------------------------------------------------------------------
// fuzz

const STABLE_REVISION: &str = "0123456789";

/// How often a field gets a value the schema or `validate` should refuse.
const BAD: f64 = 0.04;

/// One of `good`, or rarely (`BAD`) one of `bad`.
fn mostly<T: Copy + Into<Value>>(rng: &mut Rng, good: &[T], bad: &[T]) -> Value {
    if !bad.is_empty() && rng.chance(BAD) { (*rng.pick(bad)).into() } else { (*rng.pick(good)).into() }
}

fn random_name(rng: &mut Rng) -> String {
    const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let len = usize::try_from(rng.range(1, 40)).unwrap_or(8);
    let mut name: String = String::from(char::from(b'a' + u8::try_from(rng.range(0, 25)).unwrap_or(0)));
    for i in 1..len {
        let c = if rng.chance(0.1) && i + 1 < len { '-' } else { char::from(*rng.pick(ALNUM)) };
        name.push(c);
    }
    match rng.range(0, 99) {
        0 => name.to_uppercase(),
        1 => format!("{name}{}", "x".repeat(45)),
        2 => format!("{name}-"),
        3 => format!("9{name}"),
        _ => name,
    }
}

fn maybe(rng: &mut Rng, p: f64, value: impl FnOnce(&mut Rng) -> Value) -> Option<Value> {
    rng.chance(p).then(|| value(rng))
}

fn quantity(rng: &mut Rng, kind: &str) -> Value {
    match kind {
        "cpu" => mostly(rng, &["100m", "1", "250m", "0.5", "2", "0"], &["abc", "-1"]),
        _ => mostly(rng, &["128Mi", "1Gi", "64M", "512Ki", "10Gi", "1Mi", "1e3"], &["xyz", "-5Mi"]),
    }
}

fn int_or_percent(rng: &mut Rng) -> Value {
    match rng.range(0, 2) {
        0 => json!(rng.range(0, 3)),
        1 => json!(rng.pick(&["25%", "0%", "100%", "50%"])),
        _ => mostly(rng, &["10%"], &["150%", "abc", "-1", "1000%"]),
    }
}

fn random_strategy(rng: &mut Rng) -> Value {
    let kind = *rng.pick(&["Rolling", "Canary", "BlueGreen"]);
    let block = if rng.chance(1.0 - BAD) { kind } else { *rng.pick(&["Rolling", "Canary", "BlueGreen", "none"]) };
    let mut strategy = json!({"type": kind});
    if let Some(d) = maybe(rng, 0.3, |r| mostly(r, &[10, 30, 600, 86400], &[5, 0, 100_000])) {
        strategy["progressDeadlineSeconds"] = d;
    }
    match block {
        "Rolling" => {
            let mut rolling = json!({"zoneByZone": rng.chance(0.5)});
            if rng.chance(0.7) {
                rolling["maxSurge"] = int_or_percent(rng);
            }
            if rng.chance(0.7) {
                rolling["maxUnavailable"] = int_or_percent(rng);
            }
            strategy["rolling"] = rolling;
        }
        "Canary" => {
            let count = if rng.chance(BAD) { 0 } else { rng.range(1, 6) };
            let mut weight = 0;
            let steps: Vec<Value> = (0..count)
                .map(|_| match rng.range(0, 9) {
                    0..=4 => {
                        // Mostly non-decreasing weights (decreasing ones are a semantic error).
                        weight = if rng.chance(BAD) { rng.range(0, 110) } else { rng.range(weight.max(1), 100) };
                        json!({"setWeight": weight})
                    }
                    5 | 6 => json!({"pause": {}}),
                    7 | 8 => {
                        json!({"pause": {"duration": mostly(rng, &["30s", "1m", "2h30m", "500ms", "0s"], &["5", "1x"])}})
                    }
                    _ => json!({"setWeight": 20, "pause": {}}),
                })
                .collect();
            let mut canary = json!({"steps": steps});
            if rng.chance(0.2) {
                let url = mostly(rng, &["http://127.0.0.1:9/api/v1/query?query=e", "https://m/q"], &["ftp://x"]);
                let mut analysis = json!({"url": url});
                if rng.chance(0.8) {
                    analysis["max"] = json!(0.05);
                }
                if rng.chance(0.3) {
                    analysis["min"] = json!(0.0);
                }
                analysis["intervalSeconds"] = mostly(rng, &[1, 5, 10, 60], &[0, 4000]);
                analysis["failureLimit"] = mostly(rng, &[0, 1, 3], &[-1]);
                if rng.chance(0.3) {
                    analysis["jsonPointer"] = mostly(rng, &["/data/result/0/value/1", ""], &["bad"]);
                }
                canary["analysis"] = analysis;
            }
            strategy["canary"] = canary;
        }
        "BlueGreen" => {
            let delay = mostly(rng, &[0, 2, 30, 60], &[-1]);
            let mut bg = json!({"previewService": rng.chance(0.7), "scaleDownDelaySeconds": delay});
            if rng.chance(0.6) {
                bg["autoPromotionSeconds"] = mostly(rng, &[0, 1, 10, 100], &[-1]);
            }
            strategy["blueGreen"] = bg;
        }
        _ => {}
    }
    strategy
}

fn random_spec(rng: &mut Rng) -> Value {
    let mut spec = serde_json::Map::new();
    let image = match rng.range(0, 59) {
        0 => json!(""),
        1 => json!("bad image"),
        2 => json!(format!("registry.example.com/app@sha256:{:016x}{:016x}", rng.next_u64(), rng.next_u64())),
        3 => json!("localhost:5000/app"),
        _ => json!(format!(
            "registry.example.com/team/app-{}:{}.{}",
            rng.range(0, 99),
            rng.range(0, 9),
            rng.range(0, 20)
        )),
    };
    spec.insert("image".into(), image);
    if let Some(v) =
        maybe(rng, 0.9, |r| if r.chance(1.0 - BAD) { json!(r.range(1, 65535)) } else { json!(r.pick(&[0, 70000, -1])) })
    {
        spec.insert("port".into(), v);
    }
    if let Some(v) = maybe(rng, 0.9, |r| match r.range(0, 49) {
        0..=34 => json!(r.range(0, 12)),
        35..=47 => json!(r.range(13, 1000)),
        _ => json!(r.pick(&[-1, 1001])),
    }) {
        spec.insert("replicas".into(), v);
    }
    if let Some(v) = maybe(rng, 0.3, |r| {
        let mut zones: Vec<Value> = Vec::new();
        for _ in 0..r.range(1, 4) {
            let zone = mostly(r, &["zone-a", "zone-b", "zone-c", "zone-d"], &["Zone_X"]);
            if !zones.contains(&zone) || r.chance(BAD) {
                zones.push(zone);
            }
        }
        json!(zones)
    }) {
        spec.insert("zones".into(), v);
    }
    if let Some(v) = maybe(rng, 0.5, |r| {
        let mut res = json!({"requests": {"cpu": quantity(r, "cpu"), "memory": quantity(r, "mem")}});
        if r.chance(0.3) {
            res["limits"] = json!({"cpu": quantity(r, "cpu"), "memory": quantity(r, "mem")});
        }
        res
    }) {
        spec.insert("resources".into(), v);
    }
    if let Some(v) = maybe(rng, 0.5, |r| {
        let mut used: Vec<Value> = Vec::new();
        let mut entries: Vec<Value> = Vec::new();
        for _ in 0..r.range(0, 5) {
            let name =
                mostly(r, &["LOG_LEVEL", "FEATURE_X", "A_B", "x.y", "GREETING"], &["PORT", "MONGODB_URI", "1BAD"]);
            if used.contains(&name) && r.chance(1.0 - BAD) {
                continue;
            }
            used.push(name.clone());
            entries.push(if r.chance(0.8) {
                json!({"name": name, "value": format!("v{}", r.range(0, 99))})
            } else {
                json!({"name": name, "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}})
            });
        }
        json!(entries)
    }) {
        spec.insert("env".into(), v);
    }
    if let Some(v) = maybe(rng, 0.4, |r| {
        let mut probes = serde_json::Map::new();
        if r.chance(0.7) {
            probes.insert("readinessPath".into(), mostly(r, &["/healthz", "/", "/ready?x=1"], &["healthz"]));
        }
        if r.chance(0.5) {
            probes.insert("livenessPath".into(), mostly(r, &["/livez", "/"], &["livez"]));
        }
        Value::Object(probes)
    }) {
        spec.insert("probes".into(), v);
    }
    if let Some(v) = maybe(rng, 0.3, |r| {
        let min = if r.chance(BAD) { 0 } else { r.range(1, 12) };
        let max = if r.chance(BAD) { min - 1 } else { r.range(min.max(1), 40) };
        let target = mostly(r, &[50, 70, 90, 100], &[0, 110]);
        json!({"minReplicas": min, "maxReplicas": max, "targetCPUUtilizationPercentage": target})
    }) {
        spec.insert("autoscaling".into(), v);
    }
    if let Some(v) = maybe(rng, 0.5, |r| {
        let port = if r.chance(BAD) { 0 } else { r.range(1, 65535) };
        let mut service = json!({"type": r.pick(&["ClusterIP", "NodePort", "LoadBalancer"]), "port": port});
        if r.chance(0.3) {
            service["annotations"] = json!({"service.beta.kubernetes.io/azure-load-balancer-internal": "true"});
        }
        service
    }) {
        spec.insert("service".into(), v);
    }
    if let Some(v) = maybe(rng, 0.4, |r| json!({"maxUnavailable": mostly(r, &[1, 2, 3, 5], &[0, -1])})) {
        spec.insert("disruption".into(), v);
    }
    if rng.chance(0.8) {
        spec.insert("strategy".into(), random_strategy(rng));
    }
    if let Some(v) = maybe(rng, 0.3, |r| {
        json!({"enabled": r.chance(0.85), "replicas": mostly(r, &[1, 2, 3, 5, 9], &[0, 10]),
               "ttlSeconds": mostly(r, &[1, 60, 300], &[0]), "maxMemory": mostly(r, &["256Mi", "1Mi", "1Gi"], &["512Ki", "abc"])})
    }) {
        spec.insert("cache".into(), v);
    }
    if let Some(v) = maybe(rng, 0.3, |r| {
        let members = if r.chance(BAD) { r.range(0, 8) } else { *r.pick(&[1, 3, 5, 7]) };
        let mut db = json!({"enabled": r.chance(0.85), "members": members, "arbiter": r.chance(0.3),
                            "version": mostly(r, &["7.0", "6.0"], &["7", "latest"]),
                            "storage": mostly(r, &["10Gi", "1Gi"], &["0", "abc"])});
        if r.chance(0.3) {
            db["storageClassName"] = json!("standard");
        }
        if r.chance(0.5) {
            db["backup"] = json!({"schedule": mostly(r, &["0 3 * * *", "@daily", "*/5 * * * *"], &["bad", "* * * *"]),
                                  "keep": mostly(r, &[1, 7, 365], &[0, 400]),
                                  "storage": mostly(r, &["20Gi", "1Gi"], &["abc"])});
        }
        db
    }) {
        spec.insert("database".into(), v);
    }
    Value::Object(spec)
}

fn random_status(rng: &mut Rng, new_revision: &str) -> Value {
    let revision = |r: &mut Rng| -> Value {
        match r.range(0, 3) {
            0 => json!(STABLE_REVISION),
            1 => json!(new_revision),
            2 => json!("ffffffffff"),
            _ => Value::Null,
        }
    };
    let time = |r: &mut Rng| -> Value {
        match r.range(0, 3) {
            0 => json!(Timestamp::now().to_string()),
            1 => json!("2020-01-01T00:00:00Z"),
            2 => json!("not a time"),
            _ => Value::Null,
        }
    };
    let mut rollout = json!({
        "strategy": rng.pick(&["Rolling", "Canary", "BlueGreen"]),
        "step": rng.range(-1, 8),
        "weight": rng.range(-5, 120),
        "phase": rng.pick(&["Healthy", "Progressing", "Paused", "Aborted"]),
        "userPaused": rng.chance(0.2),
        "analysisFailures": rng.range(0, 4),
    });
    for (key, value) in [
        ("stableRevision", revision(rng)),
        ("newRevision", revision(rng)),
        ("stepStartedAt", time(rng)),
        ("analysisCheckedAt", time(rng)),
    ] {
        if !value.is_null() {
            rollout[key] = value;
        }
    }
    if rng.chance(0.3) {
        rollout["lastAction"] = json!("promote@1");
    }
    json!({"observedGeneration": 1, "rollout": rollout})
}

fn random_zones(rng: &mut Rng) -> Vec<ZoneHealth> {
    if rng.chance(0.05) {
        return Vec::new();
    }
    if rng.chance(0.1) {
        return vec![ZoneHealth { zone: Zone::Anywhere, healthy: rng.chance(0.8) }];
    }
    let count = rng.range(1, 4);
    (0..count)
        .map(|i| ZoneHealth {
            zone: Zone::Named(format!("zone-{}", char::from(b'a' + u8::try_from(i).unwrap_or(0)))),
            healthy: rng.chance(0.85),
        })
        .collect()
}

fn random_observed(rng: &mut Rng, cs: &CourseService, zones: &[ZoneHealth], new_revision: &str) -> Observed {
    let template = app_template(&render::Context::new(cs));
    let mut observed = Observed { now: Some(Timestamp::now()), ..Observed::default() };
    for revision in [STABLE_REVISION, new_revision] {
        if !rng.chance(0.5) {
            continue;
        }
        for zone in zones {
            if !rng.chance(0.8) {
                continue;
            }
            let replicas = i32::try_from(rng.range(-1, 10)).unwrap_or(0);
            let ready = i32::try_from(rng.range(-1, i64::from(replicas) + 1)).unwrap_or(0);
            let mut t = template.clone();
            t.revision = revision.to_owned();
            observed.deployments.insert(
                format!("{}-{revision}-{}", cs.name_any(), zone.zone.slug()),
                ObservedDeployment {
                    revision: revision.to_owned(),
                    zone: zone.zone.slug(),
                    replicas,
                    ready,
                    template: rng.chance(0.9).then_some(t),
                },
            );
        }
    }
    if rng.chance(0.3) {
        observed.action = Some(
            (*rng.pick(&["promote@2", "promote-full@3", "abort@4", "retry@5", "pause@6", "resume@7", "bogus@8"]))
                .to_owned(),
        );
    }
    if rng.chance(0.1) {
        observed.analysis = Some(Verdict { passed: rng.chance(0.5), message: "fuzz".into() });
    }
    if cs.spec.database.as_ref().is_some_and(|d| d.enabled) && rng.chance(0.7) {
        observed.database_credentials = Some(DatabaseCredentials::generate());
    }
    observed
}

/// One fuzz case: what was generated and what came out.
struct FuzzCase {
    manifest: Value,
    valid: bool,
    has_data: bool,
}

async fn fuzz(client: &Client, settings: &Settings, scenario: &mut Scenario) -> anyhow::Result<()> {
    let mut rng = Rng::new(settings.seed);
    let mut deserialize_rejected = 0usize;
    let mut invalid = 0usize;
    let mut planned = 0usize;
    let mut children_total = 0usize;
    let mut panics: Vec<String> = Vec::new();
    let mut nondeterministic = 0usize;
    let mut cases: Vec<FuzzCase> = Vec::new();
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {})); // panics are collected, not printed
    let started = Instant::now();
    for i in 0..settings.fuzz_cases {
        let name = random_name(&mut rng);
        let spec = random_spec(&mut rng);
        let mut manifest = json!({
            "apiVersion": "microcourses.io/v1alpha1", "kind": "CourseService",
            "metadata": {"name": name, "namespace": "fuzz", "uid": format!("00000000-0000-4000-8000-{i:012}"), "generation": 2},
            "spec": spec,
        });
        let Ok(mut cs) = serde_json::from_value::<CourseService>(manifest.clone()) else {
            deserialize_rejected += 1;
            continue;
        };
        // The controller computes the revision before validating (analysis_due), so it must
        // cope with any spec that deserializes.
        let new_revision = match std::panic::catch_unwind(|| app_template(&render::Context::new(&cs)).revision) {
            Ok(r) => r,
            Err(p) => {
                panics.push(format!("case {i}: app_template: {}", panic_message(&p)));
                continue;
            }
        };
        if rng.chance(0.4) {
            manifest["status"] = random_status(&mut rng, &new_revision);
            match serde_json::from_value::<CourseService>(manifest.clone()) {
                Ok(with_status) => cs = with_status,
                Err(_) => {
                    manifest.as_object_mut().map(|m| m.remove("status"));
                }
            }
        }
        let zones = random_zones(&mut rng);
        let observed = random_observed(&mut rng, &cs, &zones, &new_revision);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let first = plan::plan(&cs, &zones, &observed, &Images::default());
            let again = plan::plan(&cs, &zones, &observed, &Images::default());
            let deterministic = first == again;
            let status = course_operator::status::compute(&course_operator::status::Inputs {
                cs: &cs,
                plan: first.as_ref(),
                zones: &zones,
                observed: &observed,
                now: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now()),
            });
            let mut children = 0;
            if let Ok(p) = &first {
                children = p.children.len();
                for child in &p.children {
                    let mut c = child.clone();
                    common::fingerprint(&mut c);
                }
                if i % 10 == 0 {
                    let _ = render::to_yaml(&p.children);
                }
            }
            (first.is_ok(), deterministic, children, status.conditions.len())
        }));
        match outcome {
            Err(p) => panics.push(format!("case {i} ({name}): plan/status: {}", panic_message(&p))),
            Ok((valid, deterministic, children, _)) => {
                if !deterministic {
                    nondeterministic += 1;
                }
                if valid {
                    planned += 1;
                    children_total += children;
                } else {
                    invalid += 1;
                }
                let has_data = cs.spec.cache.as_ref().is_some_and(|c| c.enabled)
                    || cs.spec.database.as_ref().is_some_and(|d| d.enabled);
                cases.push(FuzzCase { manifest, valid, has_data });
            }
        }
    }
    std::panic::set_hook(previous_hook);
    let offline = started.elapsed();
    scenario.figure("cases", settings.fuzz_cases);
    scenario.figure("rejected_by_deserialization", deserialize_rejected);
    scenario.figure("invalid_spec", invalid);
    scenario.figure("valid_planned", planned);
    scenario.figure("children_rendered", children_total);
    scenario.figure("offline_seconds", offline.as_secs_f64());
    scenario.figure("panics", panics.len());
    progress(format!(
        "fuzz: {} cases in {:.1}s: {deserialize_rejected} rejected by types, {invalid} InvalidSpec, {planned} planned ({children_total} children), {} panics",
        settings.fuzz_cases,
        offline.as_secs_f64(),
        panics.len()
    ));
    for p in panics.iter().take(10) {
        scenario.check(false, || format!("panic: {p}"));
    }
    if panics.len() > 10 {
        scenario.check(false, || format!("… and {} more panics", panics.len() - 10));
    }
    scenario.check(nondeterministic == 0, || format!("{nondeterministic} specs planned differently twice"));

    // A sample of the valid ones on the apiserver (dry run): the CourseService itself (the CRD
    // must accept what `validate` accepts) and every rendered child.
    let ns = common::create_namespace(client, "chaos-fuzz").await?;
    let outcome = dry_run_sample(client, settings, &ns, &cases, &mut rng, scenario).await;
    common::delete_namespace(client, &ns, None).await?;
    outcome?;
    through_the_apiserver(client, settings, &mut rng, scenario).await
}

/// The kinds the operator writes, for finding every object in a namespace.
fn child_kinds() -> Vec<ApiResource> {
    use k8s_openapi::api::{autoscaling::v2, batch::v1 as batch, core::v1 as core, networking::v1 as net};
    vec![
        ApiResource::erase::<Deployment>(&()),
        ApiResource::erase::<k8s_openapi::api::apps::v1::StatefulSet>(&()),
        ApiResource::erase::<Service>(&()),
        ApiResource::erase::<PodDisruptionBudget>(&()),
        ApiResource::erase::<v2::HorizontalPodAutoscaler>(&()),
        ApiResource::erase::<core::ConfigMap>(&()),
        ApiResource::erase::<core::Secret>(&()),
        ApiResource::erase::<core::PersistentVolumeClaim>(&()),
        ApiResource::erase::<batch::Job>(&()),
        ApiResource::erase::<batch::CronJob>(&()),
        ApiResource::erase::<net::NetworkPolicy>(&()),
    ]
}

/// One object of the operator's child kinds that carries the instance label.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Labelled {
    /// `Kind/name`
    id: String,
    instance: String,
    uid: String,
    /// The uid of its controller owner; empty when it has none.
    owner: String,
    generation: i64,
}

/// Every object of the operator's child kinds in `ns` that carries the instance label.
async fn labelled_children(client: &Client, ns: &str) -> anyhow::Result<Vec<Labelled>> {
    let mut found = Vec::new();
    for kind in child_kinds() {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &kind);
        let list = api.list(&ListParams::default().labels(labels::INSTANCE)).await?;
        for object in list.items {
            let owner = object
                .metadata
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.controller == Some(true))
                .map(|o| o.uid.clone())
                .unwrap_or_default();
            found.push(Labelled {
                id: format!("{}/{}", kind.kind, object.name_any()),
                instance: object.labels().get(labels::INSTANCE).cloned().unwrap_or_default(),
                uid: object.uid().unwrap_or_default(),
                owner,
                generation: object.metadata.generation.unwrap_or(0),
            });
        }
    }
    found.sort();
    Ok(found)
}

/// Kept on purpose without an owner, so deleting a CourseService never drops data: the
/// generated database credentials and the StatefulSets' volume claims.
fn retained(id: &str) -> bool {
    id.starts_with("PersistentVolumeClaim/") || (id.starts_with("Secret/") && id.ends_with("-db-credentials"))
}

/// Objects labelled for one CourseService but controlled by something else: neither that
/// CourseService nor one of its own children (a CronJob's Jobs), nor retained on purpose.
fn foreign(children: &[Labelled], uids: &BTreeMap<String, String>) -> Vec<String> {
    children
        .iter()
        .filter(|c| {
            let by_course = uids.get(&c.instance) == Some(&c.owner);
            let by_sibling = children.iter().any(|p| p.uid == c.owner && p.instance == c.instance && !p.uid.is_empty());
            let kept = c.owner.is_empty() && retained(&c.id);
            !(by_course || by_sibling || kept)
        })
        .map(|c| format!("{} labelled {} is controlled by uid {:?}", c.id, c.instance, c.owner))
        .collect()
}

/// Item 8 of issue 18: `api_specs` random specs go through the apiserver. Each is first
/// created with a server-side dry run (the schema and CEL rules decide); every one the CRD
/// accepts is then created for real, beside a settled CourseService that must stay untouched,
/// and the operator must reconcile each to its children or to `InvalidSpec` naming a field.
/// A ResourceQuota of 0 pods keeps the run to the objects the operator writes.
async fn through_the_apiserver(
    client: &Client,
    settings: &Settings,
    rng: &mut Rng,
    scenario: &mut Scenario,
) -> anyhow::Result<()> {
    const CIDR: &str = "course-operator-chaos";
    let ns = common::create_namespace(client, "chaos-fuzz-api").await?;
    common::add_service_cidr(client, CIDR, "10.2.0.0/20").await?;
    let outcome = through_the_apiserver_in(client, settings, &ns, rng, scenario).await;
    if scenario.violations.is_empty() && outcome.is_ok() {
        common::delete_namespace(client, &ns, Some(Duration::from_secs(300))).await?;
    } else {
        progress(format!("fuzz: keeping namespace {ns} for inspection"));
    }
    common::remove_service_cidr(client, CIDR).await;
    outcome
}

async fn through_the_apiserver_in(
    client: &Client,
    settings: &Settings,
    ns: &str,
    rng: &mut Rng,
    scenario: &mut Scenario,
) -> anyhow::Result<()> {
    let quota: Api<k8s_openapi::api::core::v1::ResourceQuota> = Api::namespaced(client.clone(), ns);
    let no_pods = json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "no-pods", "namespace": ns},
                         "spec": {"hard": {"pods": "0"}}});
    common::apply_json(&quota, &no_pods, common::HARNESS_MANAGER).await?;
    let courses: Api<CourseService> = Api::namespaced(client.clone(), ns);
    let mut operator = Operator::start(ns, "fuzz", &[], &settings.log_dir).await?;
    // The bystander: settled before the fuzzed specs arrive; its children must not change.
    let bystander = common::course(
        "bystander",
        ns,
        json!({"image": "chaos/bystander:1", "replicas": 3, "service": {"type": "ClusterIP"},
               "cache": {"enabled": true, "replicas": 1}, "database": {"enabled": true, "members": 1}}),
    );
    let bystander = common::apply_json(&courses, &bystander, common::HARNESS_MANAGER).await?;
    let bystander_uid = bystander.uid().unwrap_or_default();
    common::poll(Duration::from_secs(60), "the bystander's children", || async {
        let children = labelled_children(client, ns).await.ok()?;
        let reconciled = courses.get("bystander").await.ok()?.status.is_some_and(|s| s.observed_generation == Some(1));
        (reconciled && children.len() >= 5).then_some(())
    })
    .await?;
    // Settled: the same children (generations included) in two reads 2 s apart.
    let bystanders = || async {
        labelled_children(client, ns)
            .await
            .map(|all| all.into_iter().filter(|c| c.instance == "bystander").collect::<Vec<_>>())
    };
    let mut before = bystanders().await?;
    let settle_by = Instant::now() + Duration::from_secs(60);
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = bystanders().await?;
        if now == before {
            break;
        }
        anyhow::ensure!(Instant::now() < settle_by, "the bystander's children still changing after 60 s");
        before = now;
    }

    // 1. Server-side dry run of every spec: the schema and CEL decide.
    let started = Instant::now();
    let dry = PostParams { dry_run: true, ..PostParams::default() };
    let (mut accepted, mut rejected, mut stricter) = (Vec::new(), 0usize, 0usize);
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..settings.api_specs {
        let name = format!(
            "f{i:04}-{}",
            random_name(rng).to_lowercase().trim_matches('-').chars().take(20).collect::<String>()
        );
        let name = name.trim_end_matches('-').to_owned();
        let manifest = common::course(&name, ns, random_spec(rng));
        let Ok(cs) = serde_json::from_value::<CourseService>(manifest.clone()) else {
            // The CRD may take what the Rust types cannot: then the operator must not choke on
            // it either; the real create below tells.
            accepted.push((name, manifest, None));
            continue;
        };
        match courses.create(&dry, &cs).await {
            Ok(_) => {
                let valid = course_operator::validate::validate(&cs).is_ok();
                accepted.push((name, manifest, Some(valid)));
            }
            Err(e) => {
                rejected += 1;
                *reasons.entry(reason(&e)).or_default() += 1;
                if course_operator::validate::validate(&cs).is_ok() {
                    stricter += 1;
                }
            }
        }
    }
    let dry_seconds = started.elapsed().as_secs_f64();
    progress(format!(
        "fuzz: {} specs through the apiserver's dry run in {dry_seconds:.1}s: {} accepted, {rejected} rejected",
        settings.api_specs,
        accepted.len()
    ));

    // 2. Every accepted spec for real; the operator reconciles them all.
    let started = Instant::now();
    let created: Vec<anyhow::Result<String>> = futures::stream::iter(accepted.iter().map(|(name, manifest, _)| {
        let courses = courses.clone();
        async move {
            common::apply_json(&courses, manifest, common::HARNESS_MANAGER).await?;
            Ok(name.clone())
        }
    }))
    .buffer_unordered(16)
    .collect()
    .await;
    let failed_creates: Vec<String> =
        created.iter().filter_map(|r| r.as_ref().err().map(|e| format!("{e:#}"))).collect();
    scenario.check(failed_creates.is_empty(), || {
        format!("{} dry-run-accepted specs failed to create, first: {}", failed_creates.len(), failed_creates[0])
    });
    let names: std::collections::BTreeSet<String> = created.into_iter().filter_map(Result::ok).collect();
    let watched: Watched<CourseService> = Watched::start(client, ns, None).await?;
    let verdicts = |objects: &[Arc<CourseService>]| -> BTreeMap<String, Option<(bool, String)>> {
        objects
            .iter()
            .filter(|c| names.contains(&c.name_any()))
            .map(|c| {
                let verdict =
                    c.status.as_ref().filter(|s| s.observed_generation == c.metadata.generation).and_then(|s| {
                        let invalid = s
                            .conditions
                            .iter()
                            .find(|c| c.type_ == course_operator::conditions::types::INVALID_SPEC)?;
                        Some((invalid.status == "True", invalid.message.clone()))
                    });
                (c.name_any(), verdict)
            })
            .collect()
    };
    let waited = watched
        .until(Duration::from_secs(600), "every fuzzed CourseService reconciled", |objects| {
            let v = verdicts(objects);
            (v.len() == names.len() && v.values().all(Option::is_some)).then_some(())
        })
        .await;
    let reconcile_seconds = started.elapsed().as_secs_f64();
    let verdicts = verdicts(&watched.objects());
    let unreconciled: Vec<&String> = names.iter().filter(|n| !matches!(verdicts.get(*n), Some(Some(_)))).collect();
    scenario.check(waited.is_ok() && unreconciled.is_empty(), || {
        format!(
            "{} of {} CourseServices not reconciled within 600 s, first {:?}",
            unreconciled.len(),
            names.len(),
            unreconciled.first()
        )
    });

    // 3. Judge each: InvalidSpec names a spec field and nothing was written for it; otherwise
    //    its Deployments and main Service exist, owned by it alone.
    let children = labelled_children(client, ns).await?;
    let uids: BTreeMap<String, String> =
        watched.objects().iter().map(|c| (c.name_any(), c.uid().unwrap_or_default())).collect();
    let (mut invalid, mut with_children) = (0usize, 0usize);
    let mut invalid_messages_without_field = Vec::new();
    let mut missing_children = Vec::new();
    let mut invalid_but_written = Vec::new();
    let mut validate_disagrees = Vec::new();
    for (name, manifest, valid) in &accepted {
        let Some(Some((is_invalid, message))) = verdicts.get(name) else { continue };
        let mine: Vec<&Labelled> = children.iter().filter(|c| c.instance == *name).collect();
        // A missing external-database Secret is InvalidSpec too, which only the cluster knows.
        let cluster_only = message.contains("spec.database.external.uriSecret");
        if let Some(expected) = valid
            && *expected == *is_invalid
            && !(cluster_only && *is_invalid)
        {
            validate_disagrees
                .push(format!("{name}: validate says valid={expected}, the operator InvalidSpec={is_invalid}"));
        }
        if *is_invalid {
            invalid += 1;
            if !message.contains("spec.") {
                invalid_messages_without_field.push(format!("{name}: {message}"));
            }
            if !mine.is_empty() {
                invalid_but_written.push(format!("{name}: {}", mine[0].id));
            }
        } else {
            let has = |kind: &str| mine.iter().any(|c| c.id.starts_with(kind));
            let main_service = mine.iter().any(|c| c.id == format!("Service/{name}"));
            if has("Deployment/") && main_service {
                with_children += 1;
            } else {
                missing_children.push(format!("{name}: {} children; spec {}", mine.len(), manifest["spec"]));
            }
        }
    }
    let foreign = foreign(&children, &uids);
    if let Some(first) = foreign.first() {
        scenario.check(false, || {
            format!("{} children not controlled by their own CourseService, first: {first}", foreign.len())
        });
    }
    let after = bystanders().await?;
    scenario.check(before == after, || format!("the bystander's children changed: before {before:?}, after {after:?}"));
    scenario.check(before.iter().all(|c| c.owner == bystander_uid || (c.owner.is_empty() && retained(&c.id))), || {
        "a bystander child is not controlled by the bystander".to_owned()
    });
    let alive = operator.is_running();
    let panicked = operator.log().matches("panicked").count();
    scenario.check(alive && panicked == 0, || {
        format!("the operator {} ({panicked} panics in its log)", if alive { "lives" } else { "exited" })
    });
    for (what, list) in [
        ("InvalidSpec without a field name", &invalid_messages_without_field),
        ("valid specs without their Deployments and Service", &missing_children),
        ("InvalidSpec yet children written", &invalid_but_written),
        ("the operator and validate() disagree", &validate_disagrees),
    ] {
        scenario.check(list.is_empty(), || format!("{}: {what}, first {}", list.len(), list[0]));
    }
    scenario.check(stricter == 0, || format!("{stricter} specs validate() accepts were rejected by the CRD"));
    scenario.figure("api_specs", settings.api_specs);
    scenario.figure("api_rejected_by_crd", rejected);
    scenario.figure("api_rejection_reasons", serde_json::to_value(&reasons)?);
    scenario.figure("api_accepted", accepted.len());
    scenario.figure("api_reconciled_to_children", with_children);
    scenario.figure("api_reconciled_to_invalid_spec", invalid);
    scenario.figure("api_not_reconciled", unreconciled.len());
    scenario.figure("api_foreign_children", foreign.len());
    scenario.figure("api_dry_run_seconds", dry_seconds);
    scenario.figure("api_reconcile_seconds", reconcile_seconds);
    scenario.figure("api_operator_panics", panicked);
    progress(format!(
        "fuzz: {} accepted specs reconciled in {reconcile_seconds:.1}s: {with_children} to children, {invalid} to InvalidSpec, {} not reconciled",
        accepted.len(),
        unreconciled.len()
    ));
    operator.terminate();
    Ok(())
}

async fn dry_run_sample(
    client: &Client,
    settings: &Settings,
    ns: &str,
    cases: &[FuzzCase],
    rng: &mut Rng,
    scenario: &mut Scenario,
) -> anyhow::Result<()> {
    let valid: Vec<&FuzzCase> = cases.iter().filter(|c| c.valid).collect();
    let mut sample: Vec<&FuzzCase> =
        valid.iter().filter(|c| c.has_data).take(settings.dry_run_sample / 2).copied().collect();
    let mut rest: Vec<&FuzzCase> = valid.iter().filter(|c| !c.has_data).copied().collect();
    while sample.len() < settings.dry_run_sample && !rest.is_empty() {
        let i = usize::try_from(rng.range(0, i64::try_from(rest.len()).unwrap_or(1) - 1)).unwrap_or(0);
        sample.push(rest.swap_remove(i));
    }
    let zones = common::cluster_zones(client).await?;
    let dry = PatchParams::apply(labels::MANAGER).force().dry_run();
    let courses: Api<CourseService> = Api::namespaced(client.clone(), ns);
    let (mut objects, mut rejected_children, mut rejected_courses, mut rejected_specs) = (0usize, 0, 0, 0);
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for case in &sample {
        let mut manifest = case.manifest.clone();
        manifest["metadata"]["namespace"] = json!(ns);
        let cs: CourseService = serde_json::from_value(manifest.clone())?;
        let mut cr = manifest.clone();
        if let Some(meta) = cr["metadata"].as_object_mut() {
            meta.remove("uid");
            meta.remove("generation");
        }
        if let Some(m) = cr.as_object_mut() {
            m.remove("status");
        }
        let name = cs.name_any();
        if let Err(e) = courses.patch(&name, &dry, &Patch::Apply(&cr)).await {
            rejected_courses += 1;
            scenario.check(false, || {
                format!(
                    "validate accepts, the apiserver rejects CourseService {name}: {}; spec {}",
                    short(&e),
                    manifest["spec"]
                )
            });
        }
        let observed = Observed {
            now: Some(Timestamp::now()),
            database_credentials: Some(DatabaseCredentials::generate()),
            ..Observed::default()
        };
        let planned =
            plan::plan(&cs, &zones, &observed, &Images::default()).map_err(|e| anyhow!("re-plan {name}: {e}"))?;
        let mut rejections = Vec::new();
        for child in &planned.children {
            let mut child: Child = child.clone();
            common::fingerprint(&mut child);
            objects += 1;
            if let Err(e) = common::apply_child(client, ns, &child, &dry).await {
                rejected_children += 1;
                *reasons.entry(reason(&e)).or_default() += 1;
                rejections.push(format!("{} {}: {}", child.kind(), child.name(), short(&e)));
            }
        }
        if !rejections.is_empty() {
            rejected_specs += 1;
            scenario.check(false, || {
                format!(
                    "validate accepts, the apiserver rejects {} of {} rendered children, first {}; spec {}",
                    rejections.len(),
                    planned.children.len(),
                    rejections[0],
                    manifest["spec"]
                )
            });
        }
    }
    progress(format!(
        "fuzz: dry run of {} valid specs: {objects} children, {rejected_children} rejected (from {rejected_specs} specs); {rejected_courses} CourseServices rejected",
        sample.len()
    ));
    scenario.figure("dry_run_specs", sample.len());
    scenario.figure("dry_run_children", objects);
    scenario.figure("dry_run_children_rejected", rejected_children);
    scenario.figure("dry_run_specs_with_rejected_children", rejected_specs);
    scenario.figure("dry_run_courses_rejected", rejected_courses);
    scenario.figure("dry_run_rejection_reasons", serde_json::to_value(&reasons)?);
    Ok(())
}

/// The apiserver's message of an error, without the debug dump.
fn short(error: &kube::Error) -> String {
    let text = match error {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    };
    text.chars().take(240).collect()
}

/// A rejection reduced to its kind (field and complaint, no object names), for counting.
fn reason(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) if status.message.contains("quantities must match") => "invalid quantity".into(),
        kube::Error::Api(status) => {
            let causes: Vec<String> = status
                .details
                .iter()
                .flat_map(|d| d.causes.iter())
                .map(|c| {
                    let field = c.field.split('[').next().unwrap_or_default();
                    let what = c.message.split(':').next_back().unwrap_or_default().trim();
                    format!("{field}: {what}")
                })
                .collect();
            if causes.is_empty() { status.message.chars().take(80).collect() } else { causes.join("; ") }
        }
        other => other.to_string().chars().take(80).collect(),
    }
}

fn panic_message(payload: &Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic".into())
}

// ---------------------------------------------------------------------------------------------
// rollouts under SIGKILL

fn rollout_state(cs: &CourseService) -> Option<(RolloutPhase, String, String, i32)> {
    let r = cs.status.as_ref()?.rollout.as_ref()?;
    Some((r.phase, r.stable_revision.clone()?, r.new_revision.clone()?, r.weight))
}

/// The revision `manifest` renders, as the operator computes it.
fn expected_revision(manifest: &Value) -> anyhow::Result<String> {
    let cs: CourseService = serde_json::from_value(manifest.clone())?;
    Ok(app_template(&render::Context::new(&cs)).revision)
}

fn instance_of<K: kube::Resource>(object: &K, name: &str) -> bool {
    object.meta().labels.as_ref().and_then(|l| l.get(labels::INSTANCE)).is_some_and(|i| i == name)
        && object.meta().deletion_timestamp.is_none()
}

/// Why `name` is not yet Healthy on `revision` alone (status, Deployments of that revision
/// only and all Ready, Services: the main one only, every replica a Ready endpoint behind it);
/// `None` once it is.
async fn settled_on(client: &Client, ns: &str, name: &str, revision: &str, replicas: i32) -> Option<String> {
    let cs = match Api::<CourseService>::namespaced(client.clone(), ns).get(name).await {
        Ok(cs) => cs,
        Err(e) => return Some(format!("read CourseService: {e}")),
    };
    let Some((phase, stable, new, weight)) = rollout_state(&cs) else { return Some("no rollout status yet".into()) };
    if phase != RolloutPhase::Healthy || stable != revision || new != revision || weight != 100 {
        return Some(format!("rollout {phase:?} stable {stable} new {new} weight {weight}"));
    }
    let deployments = match Api::<Deployment>::namespaced(client.clone(), ns).list(&ListParams::default()).await {
        Ok(list) => list,
        Err(e) => return Some(format!("list Deployments: {e}")),
    };
    let mine: Vec<&Deployment> = deployments.items.iter().filter(|d| instance_of(*d, name)).collect();
    let others: Vec<String> = mine
        .iter()
        .filter(|d| d.labels().get(labels::REVISION).is_none_or(|r| r != revision))
        .map(|d| d.name_any())
        .collect();
    if !others.is_empty() {
        return Some(format!("orphaned Deployments {others:?}"));
    }
    let ready: i32 = mine.iter().map(|d| d.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0)).sum();
    let wanted: i32 = mine.iter().map(|d| d.spec.replicas.unwrap_or(0)).sum();
    if ready != replicas || wanted != replicas {
        return Some(format!("{ready} Ready of {wanted} wanted, expected {replicas}"));
    }
    let services = match Api::<Service>::namespaced(client.clone(), ns).list(&ListParams::default()).await {
        Ok(list) => list,
        Err(e) => return Some(format!("list Services: {e}")),
    };
    let extra: Vec<String> =
        services.items.iter().filter(|s| instance_of(*s, name) && s.name_any() != name).map(|s| s.name_any()).collect();
    if !extra.is_empty() {
        return Some(format!("orphaned Services {extra:?}"));
    }
    // The Deployments' status can be ahead of the EndpointSlices: a floor is measured from a
    // Service that serves every replica, not from a status that says it could.
    let slices = Api::<EndpointSlice>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={name}")))
        .await;
    match slices {
        Ok(list) if endpoints::ready_endpoints(&list.items) == usize::try_from(replicas).unwrap_or(0) => None,
        Ok(list) => Some(format!("{} Ready endpoints behind the Service", endpoints::ready_endpoints(&list.items))),
        Err(e) => Some(format!("list EndpointSlices: {e}")),
    }
}

async fn kills(client: &Client, settings: &Settings, scenario: &mut Scenario) -> anyhow::Result<()> {
    let ns = common::create_namespace(client, "chaos-kill").await?;
    let outcome = kills_in(client, settings, &ns, scenario).await;
    if scenario.violations.is_empty() && outcome.is_ok() {
        common::delete_namespace(client, &ns, None).await?;
    } else {
        progress(format!("kills: keeping namespace {ns} for inspection"));
    }
    outcome
}

async fn kills_in(client: &Client, settings: &Settings, ns: &str, scenario: &mut Scenario) -> anyhow::Result<()> {
    let mut rng = Rng::new(settings.seed ^ 0x6b69_6c6c);
    let lease = ["--lease-duration-seconds", "4"];
    let api: Api<CourseService> = Api::namespaced(client.clone(), ns);
    let replicas = 4;
    // replicas - disruption.maxUnavailable (its default, 1): every rollout and kill stays above it
    let floor = 3;
    let strategies = [
        (
            "lessons",
            json!({"type": "Canary", "canary": {"steps": [
                {"setWeight": 25}, {"pause": {"duration": "1s"}}, {"setWeight": 50}, {"pause": {"duration": "1s"}}, {"setWeight": 75},
            ]}}),
        ),
        (
            "quizzes",
            json!({"type": "BlueGreen", "blueGreen": {
                "previewService": true, "autoPromotionSeconds": 1, "scaleDownDelaySeconds": 2,
            }}),
        ),
    ];
    let manifest = |name: &str, strategy: &Value, version: usize| {
        common::course(
            name,
            ns,
            json!({"image": format!("chaos/{name}:{version}"), "replicas": replicas,
                                        "strategy": strategy, "service": {"type": "ClusterIP"}}),
        )
    };
    let mut generation = 0usize;
    // Two replicas at all times: the one that leads and a warm standby (each killed one is
    // replaced at once), as a Deployment of two would have it.
    let mut replicas_of_operator = [
        Operator::start(ns, "chaos-a0", &lease, &settings.log_dir).await?,
        Operator::start(ns, "chaos-b0", &lease, &settings.log_dir).await?,
    ];
    let mut stuck = 0usize;
    for (name, strategy) in &strategies {
        common::apply_json(&api, &manifest(name, strategy, 0), common::HARNESS_MANAGER).await?;
    }
    for (name, strategy) in &strategies {
        let revision = expected_revision(&manifest(name, strategy, 0))?;
        common::poll(Duration::from_secs(120), &format!("{name} settled"), || async {
            settled_on(client, ns, name, &revision, replicas).await.is_none().then_some(())
        })
        .await?;
    }
    let courses: Watched<CourseService> = Watched::start(client, ns, None).await?;
    let mut kills = 0usize;
    let mut rollouts = 0usize;
    let mut kill_phases: BTreeMap<String, usize> = BTreeMap::new();
    let mut longest = 0f64;
    let mut min_ready_seen = usize::MAX;
    while kills < settings.kills {
        generation += 1;
        let mut watches: Vec<(String, EndpointWatch)> = Vec::new();
        for (name, _) in &strategies {
            watches.push(((*name).to_owned(), EndpointWatch::start(client, ns, name).await));
        }
        let expected: Vec<(String, String)> = strategies
            .iter()
            .map(|(name, strategy)| Ok(((*name).to_owned(), expected_revision(&manifest(name, strategy, generation))?)))
            .collect::<anyhow::Result<_>>()?;
        let started = Instant::now();
        for (name, strategy) in &strategies {
            common::apply_json(&api, &manifest(name, strategy, generation), common::HARNESS_MANAGER).await?;
        }
        rollouts += strategies.len();
        // Kill at random moments until both rollouts are done (or the kills are spent).
        let deadline = Instant::now() + Duration::from_secs(240);
        loop {
            let done = |objects: &[Arc<CourseService>]| {
                expected.iter().all(|(name, revision)| {
                    objects.iter().find(|c| c.name_any() == *name).and_then(|c| rollout_state(c)).is_some_and(
                        |(phase, stable, new, _)| {
                            phase == RolloutPhase::Healthy && stable == *revision && new == *revision
                        },
                    )
                })
            };
            if kills >= settings.kills {
                break;
            }
            // A uniformly random moment since the last kill: the replacement's start-up and
            // cache sync, the leaderless gap until the dead leader's Lease expires, the new
            // leader's first writes, or a settled leader mid-rollout.
            let wait = rng.duration(Duration::ZERO, Duration::from_millis(6000));
            match courses.until(wait, "rollouts done", |o| done(o).then_some(())).await {
                Ok(_) => break,
                Err(_) if Instant::now() > deadline => {
                    scenario.check(false, || format!("rollout generation {generation} not done after 240 s"));
                    break;
                }
                Err(_) => {}
            }
            // The victim: the replica that leads; while none does, either one.
            let mut leading = [false, false];
            for (i, replica) in replicas_of_operator.iter().enumerate() {
                leading[i] = replica.is_leader().await;
            }
            let victim = match leading {
                [true, _] => 0,
                [false, true] => 1,
                [false, false] => usize::from(rng.chance(0.5)),
            };
            let moment = if leading[victim] {
                "leader"
            } else if !replicas_of_operator[victim].is_ready().await {
                "starting"
            } else {
                "leaderless"
            };
            *kill_phases.entry(moment.to_owned()).or_default() += 1;
            replicas_of_operator[victim].kill();
            kills += 1;
            progress(format!("kills: SIGKILL #{kills} of the {moment} replica after {wait:?}"));
            let side = if victim == 0 { 'a' } else { 'b' };
            replicas_of_operator[victim] =
                Operator::spawn(ns, &format!("chaos-{side}{kills}"), &lease, &settings.log_dir)?;
            scenario.figure("kills", kills);
        }
        // The kills are over for this generation: both replicas become ready (every cache
        // synced) and one leads, whatever moment the last kill hit.
        for replica in &mut replicas_of_operator {
            if let Err(e) = replica.wait_ready(Duration::from_secs(60)).await {
                stuck += 1;
                scenario.check(false, || {
                    format!(
                        "generation {generation}: a replica not ready 60 s after the last kill ({e}); log tail: {}",
                        replica.log_tail(3).replace('\n', " / ")
                    )
                });
            }
        }
        let pair = &replicas_of_operator;
        let led = common::poll(Duration::from_secs(30), "a replica to lead", || async {
            for replica in pair {
                if replica.is_leader().await {
                    return Some(());
                }
            }
            None
        })
        .await;
        scenario.check(led.is_ok(), || format!("generation {generation}: no replica leads 30 s after the last kill"));
        scenario.figure("replicas_never_ready", stuck);
        // The last operator lives: every rollout must reach its new revision alone.
        for (name, revision) in &expected {
            let result =
                common::poll(Duration::from_secs(180), &format!("{name} Healthy on {revision} alone"), || async {
                    match settled_on(client, ns, name, revision, replicas).await {
                        Some(_) => None,
                        None => Some(()),
                    }
                })
                .await;
            if result.is_err() {
                let why = settled_on(client, ns, name, revision, replicas).await.unwrap_or_default();
                scenario
                    .check(false, || format!("generation {generation}: {name} did not settle on {revision}: {why}"));
            }
        }
        longest = longest.max(started.elapsed().as_secs_f64());
        for (name, watch) in watches {
            let sampled = watch.finish().await;
            min_ready_seen = min_ready_seen.min(sampled.min_ready);
            let violation = sampled.violation(floor);
            scenario.check(violation.is_none(), || {
                format!("generation {generation}: {name}: {}", violation.clone().unwrap_or_default())
            });
        }
        progress(format!("kills: generation {generation} done, {kills} kills so far"));
    }
    let log_errors: usize = replicas_of_operator.iter().map(|r| r.log().matches(" ERROR ").count()).sum();
    scenario.figure("kills", kills);
    scenario.figure("rollouts", rollouts);
    scenario.figure("longest_generation_seconds", longest);
    scenario.figure("fewest_ready_endpoints", min_ready_seen);
    scenario.figure("kills_by_phase", serde_json::to_value(&kill_phases)?);
    scenario.figure("seed", settings.seed);
    scenario.figure("last_operator_error_lines", log_errors);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// leader failover

/// Field managers that changed more than status on the object.
fn spec_managers(fields: Option<&Vec<ManagedFieldsEntry>>) -> Vec<String> {
    fields
        .into_iter()
        .flatten()
        .filter(|m| m.subresource.as_deref() != Some("status"))
        .filter_map(|m| m.manager.clone())
        .collect()
}

async fn failover(client: &Client, settings: &Settings, scenario: &mut Scenario) -> anyhow::Result<()> {
    let ns = common::create_namespace(client, "chaos-leader").await?;
    let outcome = failover_in(client, settings, &ns, scenario).await;
    common::delete_namespace(client, &ns, None).await?;
    outcome
}

async fn failover_in(client: &Client, settings: &Settings, ns: &str, scenario: &mut Scenario) -> anyhow::Result<()> {
    let api: Api<CourseService> = Api::namespaced(client.clone(), ns);
    let mut first = Operator::start(ns, "replica-a", &[], &settings.log_dir).await?;
    common::poll(Duration::from_secs(30), "replica-a to lead", || async { first.is_leader().await.then_some(()) })
        .await?;
    let second = Operator::start(ns, "replica-b", &[], &settings.log_dir).await?;
    let spec = json!({"image": "chaos/leader:1", "replicas": 3, "service": {"type": "ClusterIP"}});
    common::apply_json(&api, &common::course("catalog", ns, spec), common::HARNESS_MANAGER).await?;
    let revision = expected_revision(&common::course(
        "catalog",
        ns,
        json!({"image": "chaos/leader:1", "replicas": 3, "service": {"type": "ClusterIP"}}),
    ))?;
    common::poll(Duration::from_secs(120), "catalog settled", || async {
        settled_on(client, ns, "catalog", &revision, 3).await.is_none().then_some(())
    })
    .await?;
    let standby_writes = second.metrics().await?.writes();
    scenario.check(!second.is_leader().await, || "replica-b leads while replica-a is alive".into());
    scenario.check(standby_writes == 0.0, || format!("the standby wrote {standby_writes} times before leading"));

    first.kill();
    let killed = Instant::now();
    let became = common::poll(Duration::from_secs(30), "replica-b to lead", || async {
        second.is_leader().await.then_some(Instant::now())
    })
    .await?;
    let failover = common::secs_between(killed, became);
    progress(format!("failover: replica-b leads {failover:.1}s after the SIGKILL"));
    scenario.figure("failover_seconds", failover);
    scenario.check(failover <= 15.0, || format!("failover took {failover:.1}s (> 15 s)"));
    // The new leader acts.
    api.patch("catalog", &PatchParams::default(), &Patch::Merge(&json!({"spec": {"replicas": 6}}))).await?;
    let acted = Instant::now();
    common::poll(Duration::from_secs(120), "catalog at 6 under replica-b", || async {
        settled_on(client, ns, "catalog", &revision, 6).await.is_none().then_some(())
    })
    .await?;
    scenario.figure("new_leader_converged_seconds", acted.elapsed().as_secs_f64());
    scenario.check(second.metrics().await?.writes() > 0.0, || "replica-b led but wrote nothing".into());

    // Field managers of every child: the operator's alone (both replicas use the same one;
    // anything else means another writer).
    let mut managers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for d in Api::<Deployment>::namespaced(client.clone(), ns).list(&ListParams::default()).await?.items {
        managers.insert(format!("Deployment/{}", d.name_any()), spec_managers(d.metadata.managed_fields.as_ref()));
    }
    for s in Api::<Service>::namespaced(client.clone(), ns).list(&ListParams::default()).await?.items {
        managers.insert(format!("Service/{}", s.name_any()), spec_managers(s.metadata.managed_fields.as_ref()));
    }
    for p in Api::<PodDisruptionBudget>::namespaced(client.clone(), ns).list(&ListParams::default()).await?.items {
        managers
            .insert(format!("PodDisruptionBudget/{}", p.name_any()), spec_managers(p.metadata.managed_fields.as_ref()));
    }
    let cs = api.get("catalog").await?;
    let status_managers: Vec<String> = cs
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| m.subresource.as_deref() == Some("status"))
        .filter_map(|m| m.manager.clone())
        .collect();
    for (object, list) in &managers {
        scenario.check(list.iter().all(|m| m == labels::MANAGER), || format!("{object} has field managers {list:?}"));
    }
    scenario.check(status_managers.iter().all(|m| m == labels::MANAGER), || {
        format!("CourseService status has field managers {status_managers:?}")
    });
    scenario.figure("children_checked", managers.len());
    let lease = Api::<Lease>::namespaced(client.clone(), ns).get("course-operator-leader").await?;
    scenario.figure("lease_transitions", lease.spec.as_ref().and_then(|s| s.lease_transitions).unwrap_or(0));

    // A leader that is frozen (SIGSTOP: a long GC pause, a stalled VM) past its Lease and
    // then thawed must not write once another replica leads.
    let mut third = Operator::start(ns, "replica-c", &[], &settings.log_dir).await?;
    let frozen_writes = second.metrics().await?.writes();
    let _ = Command::new("kill").args(["-STOP", &second.pid().to_string()]).status();
    let frozen = Instant::now();
    let third_leads = common::poll(Duration::from_secs(30), "replica-c to lead", || async {
        third.is_leader().await.then_some(Instant::now())
    })
    .await;
    // Work for both: a spec change while replica-b is still frozen.
    api.patch("catalog", &PatchParams::default(), &Patch::Merge(&json!({"spec": {"replicas": 4}}))).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = Command::new("kill").args(["-CONT", &second.pid().to_string()]).status();
    let thawed = Instant::now();
    // Replica-b's own counter shows whether it wrote after the thaw.
    let mut after_thaw = 0.0;
    let mut held_back = 0.0;
    let mut still_leader_ms = None;
    while thawed.elapsed() < Duration::from_secs(15) {
        if let Ok(m) = second.metrics().await {
            after_thaw = m.writes() - frozen_writes;
            held_back = m.sum("course_operator_writes_fenced_total", "");
            if still_leader_ms.is_none() && m.sum("course_operator_leader", "") < 1.0 {
                still_leader_ms = Some(thawed.elapsed().as_millis() as f64);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    match third_leads {
        Ok(at) => scenario.figure("frozen_leader_failover_seconds", common::secs_between(frozen, at)),
        Err(e) => scenario.check(false, || format!("no takeover from a frozen leader: {e}")),
    }
    scenario.figure("thawed_leader_writes", after_thaw);
    // Writes the thawed leader attempted and its fence held back (0 when the lease manager
    // noticed the lost Lease before any reconcile ran).
    scenario.figure("thawed_leader_writes_fenced", held_back);
    scenario.figure("thawed_leader_believed_it_led_ms", still_leader_ms.map_or(Value::Null, Value::from));
    scenario.check(after_thaw == 0.0, || {
        format!("double write: the frozen leader wrote {after_thaw} times after it was thawed while replica-c led")
    });
    common::poll(Duration::from_secs(120), "catalog at 4", || async {
        settled_on(client, ns, "catalog", &revision, 4).await.is_none().then_some(())
    })
    .await?;
    third.terminate();
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// zone loss during a rollout

fn node_manifests() -> anyhow::Result<Vec<Value>> {
    let text = std::fs::read_to_string(common::repo_root().join("hack/manifests/nodes.yaml"))?;
    Ok(serde_saphyr::from_multiple(&text)?)
}

async fn restore_nodes(client: &Client) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    for node in node_manifests()? {
        common::apply_json(&nodes, &node, common::HARNESS_MANAGER).await?;
        let name = node["metadata"]["name"].as_str().unwrap_or_default().to_owned();
        // A cordon is a spec field another manager set: clear it explicitly.
        nodes.patch(&name, &PatchParams::default(), &Patch::Merge(&json!({"spec": {"unschedulable": null}}))).await?;
    }
    let want = node_manifests()?.len();
    common::poll(Duration::from_secs(120), "every node Ready", || async {
        let list = nodes.list(&ListParams::default()).await.ok()?;
        let ready = list.items.iter().filter(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        });
        (ready.count() >= want).then_some(())
    })
    .await
}

async fn zone_loss(client: &Client, settings: &Settings, scenario: &mut Scenario) -> anyhow::Result<()> {
    if !settings.own_cluster {
        scenario.skipped =
            Some("the cluster is shared (not started by chaos.sh): deleting its nodes would break other users".into());
        println!("chaos: zone-loss SKIPPED: the cluster was not started by chaos.sh (it mutates shared Nodes)");
        return Ok(());
    }
    let ns = common::create_namespace(client, "chaos-zone").await?;
    let outcome = zone_loss_in(client, settings, &ns, scenario).await;
    let restored = restore_nodes(client).await;
    common::delete_namespace(client, &ns, None).await?;
    outcome.and(restored)
}

async fn zone_loss_in(client: &Client, settings: &Settings, ns: &str, scenario: &mut Scenario) -> anyhow::Result<()> {
    let api: Api<CourseService> = Api::namespaced(client.clone(), ns);
    let _operator = Operator::start(ns, "zone", &[], &settings.log_dir).await?;
    let strategy = json!({"type": "Rolling", "rolling": {"zoneByZone": true, "maxSurge": 1, "maxUnavailable": 0}});
    let manifest = |v: usize| {
        common::course(
            "catalog",
            ns,
            json!({"image": format!("chaos/zone:{v}"), "replicas": 6, "strategy": strategy, "service": {"type": "ClusterIP"}}),
        )
    };
    common::apply_json(&api, &manifest(1), common::HARNESS_MANAGER).await?;
    let old = expected_revision(&manifest(1))?;
    common::poll(Duration::from_secs(120), "catalog settled", || async {
        settled_on(client, ns, "catalog", &old, 6).await.is_none().then_some(())
    })
    .await?;
    // replicas - disruption.maxUnavailable (default 1) until the zone goes; then less the lost
    // zone's share (2 of 6) until the nodes are back and it is Ready again (docs/operations.md)
    let (floor, floor_while_lost) = (5, 3);
    let before_loss = EndpointWatch::start(client, ns, "catalog").await;
    let new = expected_revision(&manifest(2))?;
    common::apply_json(&api, &manifest(2), common::HARNESS_MANAGER).await?;
    let courses: Watched<CourseService> = Watched::start(client, ns, None).await?;
    courses
        .until(Duration::from_secs(60), "the rollout under way", |o| {
            let (phase, ..) = rollout_state(o.iter().find(|c| c.name_any() == "catalog")?)?;
            (phase == RolloutPhase::Progressing).then_some(())
        })
        .await?;
    let nodes: Api<Node> = Api::all(client.clone());
    let zone_a: Vec<String> = nodes
        .list(&ListParams::default().labels("topology.kubernetes.io/zone=zone-a,type=kwok"))
        .await?
        .items
        .iter()
        .map(|n| n.name_any())
        .collect();
    let lost_at = Instant::now();
    let before = before_loss.finish().await;
    let while_lost = EndpointWatch::start(client, ns, "catalog").await;
    for name in &zone_a {
        nodes.patch(name, &PatchParams::default(), &Patch::Merge(&json!({"spec": {"unschedulable": true}}))).await?;
    }
    for name in &zone_a {
        nodes.delete(name, &Default::default()).await?;
    }
    progress(format!("zone-loss: deleted {zone_a:?} during the rollout"));
    // Finishes, or pauses safely (Available, within the budget), while zone-a is gone.
    let (outcome, _) = courses
        .until(Duration::from_secs(180), "the rollout finished or paused safely", |o| {
            let cs = o.iter().find(|c| c.name_any() == "catalog")?;
            let (phase, stable, ..) = rollout_state(cs)?;
            let status = cs.status.as_ref()?;
            let available = status.conditions.iter().any(|c| c.type_ == "Available" && c.status == "True");
            let capacity = status.ready_replicas >= 5;
            match phase {
                RolloutPhase::Healthy if stable == new && available && capacity => Some("finished".to_owned()),
                RolloutPhase::Paused if available => Some("paused".to_owned()),
                RolloutPhase::Aborted if available => Some("aborted".to_owned()),
                _ => None,
            }
        })
        .await?;
    let during = lost_at.elapsed().as_secs_f64();
    progress(format!("zone-loss: rollout {outcome} {during:.1}s after the zone went"));
    scenario.figure("outcome_during_zone_loss", outcome.clone());
    scenario.figure("seconds_to_outcome", during);
    restore_nodes(client).await?;
    let back = Instant::now();
    // Capacity restored: Healthy on the new revision, 2 Ready pods in every zone again.
    let restored = common::poll(Duration::from_secs(180), "capacity restored", || async {
        let cs = api.get("catalog").await.ok()?;
        let status = cs.status.clone()?;
        let zones_ok =
            status.zones.len() == 3 && status.zones.iter().all(|z| z.desired == 2 && z.ready == 2 && !z.lost);
        let settled = settled_on(client, ns, "catalog", &new, 6).await.is_none();
        (zones_ok && settled).then_some(())
    })
    .await;
    match restored {
        Ok(()) => scenario.figure("seconds_to_restore_after_nodes_back", back.elapsed().as_secs_f64()),
        Err(e) => scenario.check(false, || format!("capacity not restored after the nodes came back: {e}")),
    }
    let lost = while_lost.finish().await;
    scenario.figure("fewest_ready_endpoints_before_the_loss", before.min_ready);
    scenario.figure("fewest_ready_endpoints", lost.min_ready);
    let violation = before.violation(floor);
    scenario.check(violation.is_none(), || format!("before the zone loss: {}", violation.clone().unwrap_or_default()));
    let violation = lost.violation(floor_while_lost);
    scenario
        .check(violation.is_none(), || format!("zone lost until restored: {}", violation.clone().unwrap_or_default()));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// kube-apiserver restart

async fn apiserver_restart(client: &Client, settings: &Settings, scenario: &mut Scenario) -> anyhow::Result<()> {
    if !settings.own_cluster {
        scenario.skipped =
            Some("the cluster is shared (not started by chaos.sh): restarting it would break other users".into());
        println!("chaos: apiserver-restart SKIPPED: the cluster was not started by chaos.sh");
        return Ok(());
    }
    let ns = common::create_namespace(client, "chaos-restart").await?;
    let outcome = apiserver_restart_in(client, settings, &ns, scenario).await;
    let _ = common::delete_namespace(client, &ns, None).await;
    outcome
}

async fn apiserver_restart_in(
    client: &Client,
    settings: &Settings,
    ns: &str,
    scenario: &mut Scenario,
) -> anyhow::Result<()> {
    let api: Api<CourseService> = Api::namespaced(client.clone(), ns);
    let mut operator = Operator::start(ns, "restart", &[], &settings.log_dir).await?;
    let spec = |image: &str, r: i32| json!({"image": image, "replicas": r, "service": {"type": "ClusterIP"}, "strategy": {"type": "Rolling"}});
    let first = common::course("catalog", ns, spec("chaos/restart:1", 3));
    common::apply_json(&api, &first, common::HARNESS_MANAGER).await?;
    let revision = expected_revision(&first)?;
    common::poll(Duration::from_secs(120), "catalog settled", || async {
        settled_on(client, ns, "catalog", &revision, 3).await.is_none().then_some(())
    })
    .await?;
    // Mid-rollout: a new image, and the apiserver SIGKILLed as soon as the rollout started.
    let second = common::course("catalog", ns, spec("chaos/restart:2", 3));
    common::apply_json(&api, &second, common::HARNESS_MANAGER).await?;
    let revision = expected_revision(&second)?;
    let mid_rollout = common::poll(Duration::from_secs(30), "the rollout under way", || async {
        let cs = api.get("catalog").await.ok()?;
        let (phase, ..) = rollout_state(&cs)?;
        (phase == RolloutPhase::Progressing).then_some(())
    })
    .await
    .is_ok();
    scenario.figure("restarted_mid_rollout", mid_rollout);
    let log_before = common::strip_ansi(&operator.log()).len();
    progress("apiserver-restart: hack/cluster.sh restart-apiserver --kill (mid-rollout)");
    let started = Instant::now();
    let status =
        Command::new(common::repo_root().join("hack/cluster.sh")).args(["restart-apiserver", "--kill"]).status()?;
    let restart_seconds = started.elapsed().as_secs_f64();
    scenario.figure("restart_seconds", restart_seconds);
    if !status.success() {
        return Err(anyhow!("hack/cluster.sh restart-apiserver failed"));
    }
    // More work for the operator as soon as the apiserver answers again.
    let back = Instant::now();
    common::poll(Duration::from_secs(60), "the apiserver to accept a patch", || async {
        api.patch("catalog", &PatchParams::default(), &Patch::Merge(&json!({"spec": {"replicas": 6}})))
            .await
            .ok()
            .map(|_| ())
    })
    .await?;
    let deadline = Duration::from_secs(common::env_or("CHAOS_RESTART_DEADLINE", 30));
    let recovered = common::poll(deadline, "the rollout finished at 6 replicas after the restart", || async {
        settled_on(client, ns, "catalog", &revision, 6).await.is_none().then_some(Instant::now())
    })
    .await;
    let log = common::strip_ansi(&operator.log());
    let after = &log[log_before.min(log.len())..];
    // What a liveness/readiness probe and the Lease would tell the cluster about this replica.
    let ready = common::http_get(operator.metrics_port, "/readyz").await.map(|(code, _)| code);
    scenario.figure("readyz_after", ready.map_or(Value::Null, Value::from));
    scenario.figure("claims_leadership_after", operator.is_leader().await);
    let connect_errors = after.matches("Connect").count();
    let resets = after.matches("ConnectionReset").count() + after.matches("connection reset").count();
    scenario.figure("connect_error_lines", connect_errors);
    scenario.figure("connection_reset_lines", resets);
    let alive = operator.is_running();
    scenario.figure("operator_alive", alive);
    scenario.check(alive, || "the operator process exited after the apiserver restart".into());
    match recovered {
        Ok(at) => {
            let seconds = common::secs_between(back, at);
            progress(format!(
                "apiserver-restart: the rollout finished at 6 replicas {seconds:.1}s after the apiserver was back"
            ));
            scenario.figure("recovery_seconds", seconds);
        }
        Err(_) => {
            let tail: Vec<&str> = after.lines().rev().take(5).collect();
            scenario.check(false, || {
                format!(
                    "the operator did not act within {deadline:?} after the apiserver restart ({connect_errors} Connect error lines; last: {:?})",
                    tail
                )
            });
        }
    }
    operator.terminate();
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// output

fn write_outputs(settings: &Settings, results: &[Scenario]) -> anyhow::Result<()> {
    let json_path = std::env::var("CHAOS_OUT_JSON").unwrap_or_else(|_| "benchmarks/chaos.json".into());
    let md_path = std::env::var("CHAOS_OUT_MD").unwrap_or_else(|_| "/tmp/course-operator-chaos/table.md".into());
    let doc = json!({
        "benchmark": "chaos",
        "seed": settings.seed,
        "kills": settings.kills,
        "own_cluster": settings.own_cluster,
        "scenarios": results,
    });
    for path in [&json_path, &md_path] {
        if let Some(parent) = PathBuf::from(path).parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
    }
    std::fs::write(&json_path, serde_json::to_string_pretty(&doc)? + "\n")?;
    let mut md = format!(
        "Seed `{}`, {} kills requested, cluster {}.\n\n| scenario | result | figures | broken invariants |\n|---|---|---|---|\n",
        settings.seed,
        settings.kills,
        if settings.own_cluster { "started by chaos.sh" } else { "shared (zone loss and apiserver restart skipped)" }
    );
    for s in results {
        let result = match (&s.skipped, s.violations.is_empty()) {
            (Some(_), _) => "skipped".to_owned(),
            (None, true) => format!("passed ({:.0} s)", s.seconds),
            (None, false) => format!("**FAILED** ({:.0} s)", s.seconds),
        };
        let figures: Vec<String> = s
            .figures
            .iter()
            .map(|(k, v)| match v {
                Value::Number(n) => match n.as_f64() {
                    Some(f) if f.fract() != 0.0 => format!("{k} {f:.2}"),
                    _ => format!("{k} {n}"),
                },
                other => format!("{k} {other}"),
            })
            .collect();
        let broken = if let Some(why) = &s.skipped {
            why.clone()
        } else if s.violations.is_empty() {
            "none".into()
        } else {
            s.violations
                .iter()
                .map(|v| v.replace('|', "\\|").chars().take(300).collect::<String>())
                .collect::<Vec<_>>()
                .join("<br>")
        };
        md.push_str(&format!("| {} | {result} | {} | {broken} |\n", s.name, figures.join(", ").replace('|', "\\|")));
    }
    std::fs::write(&md_path, md)?;
    Ok(())
}
