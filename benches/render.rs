//! Micro-benchmark of the pure part of one reconcile (no cluster): validate, plan (with render),
//! the per-child fingerprint the controller computes to skip unchanged children, status, and
//! the cache scans a reconcile makes, with allocations counted. `hack/bench.sh` runs it
//! after the fleet; `valgrind --tool=callgrind` or `perf record` on this binary shows the hot
//! spots (see BENCHMARKS.md).
//!
//! `cargo bench --bench render [-- FILTER]`; `RENDER_BENCH_MS` sets the time per case.

use std::alloc::System;

use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use std::hint::black_box;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;

use course_operator::api::CourseService;
use course_operator::cached::Scaled;
use course_operator::controller::fingerprint;
use course_operator::database::DatabaseCredentials;
use course_operator::labels;
use course_operator::observe::{self, Observed, ObservedWorkload};
use course_operator::plan;
use course_operator::render::Child;
use course_operator::render::Images;
use course_operator::render::workload::AppTemplate;
use course_operator::status;
use course_operator::zones::{Zone, ZoneHealth};

mod common;

/// Counts allocations (stats_alloc wraps the system allocator), so a case reports
/// allocations per iteration beside its time.
#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// (allocations including reallocations, bytes allocated) so far.
fn allocated() -> (u64, u64) {
    let stats = GLOBAL.stats();
    ((stats.allocations + stats.reallocations) as u64, stats.bytes_allocated as u64)
}

struct Case {
    name: String,
    iterations: u64,
    ns_per_iter: f64,
    allocs_per_iter: f64,
    bytes_per_iter: f64,
}

fn measure(name: &str, budget: Duration, mut f: impl FnMut()) -> Case {
    for _ in 0..10 {
        f();
    }
    let (allocs, bytes) = allocated();
    let started = Instant::now();
    let mut iterations = 0u64;
    while started.elapsed() < budget || iterations < 10 {
        f();
        iterations += 1;
    }
    let elapsed = started.elapsed();
    let n = iterations as f64;
    Case {
        name: name.to_owned(),
        iterations,
        ns_per_iter: elapsed.as_nanos() as f64 / n,
        allocs_per_iter: (allocated().0 - allocs) as f64 / n,
        bytes_per_iter: (allocated().1 - bytes) as f64 / n,
    }
}

fn course(yaml_spec: &str) -> CourseService {
    let text = format!(
        "apiVersion: microcourses.io/v1alpha1\nkind: CourseService\nmetadata: {{name: catalog, namespace: bench, uid: 5f1c9e2e-0000-4000-8000-000000000001, generation: 2}}\nspec: {yaml_spec}"
    );
    course_operator::manifest::parse(&text).expect("bench CourseService parses")
}

fn zones() -> Vec<ZoneHealth> {
    ["zone-a", "zone-b", "zone-c"]
        .iter()
        .map(|z| ZoneHealth { zone: Zone::Named((*z).into()), healthy: true })
        .collect()
}

/// What the cluster shows at rest for `cs`: its ReplicaSets, Ready.
fn observed_at_rest(cs: &CourseService, zones: &[ZoneHealth], db: bool) -> (Observed, Vec<ReplicaSet>) {
    let first = Observed {
        now: Some(Timestamp::now()),
        database_credentials: db.then(DatabaseCredentials::generate),
        ..Observed::default()
    };
    let planned = plan::desired(cs, zones, &first, &Images::default()).expect("valid");
    let mut replica_sets = Vec::new();
    let mut observed = first.clone();
    for child in &planned.children {
        if let Child::ReplicaSet(d) = child {
            let mut d = d.as_ref().clone();
            let replicas = d.spec.replicas.unwrap_or(0);
            d.status = Some(k8s_openapi::api::apps::v1::ReplicaSetStatus {
                ready_replicas: Some(replicas),
                replicas,
                ..Default::default()
            });
            let labels = d.labels().clone();
            observed.workloads.insert(
                d.name_any(),
                ObservedWorkload {
                    revision: labels[labels::REVISION].clone(),
                    zone: labels[labels::ZONE].clone(),
                    replicas,
                    ready: replicas,
                    template: AppTemplate::from_replica_set(&d),
                },
            );
            replica_sets.push(d);
        }
    }
    (observed, replica_sets)
}

/// The controller's scan of the ReplicaSet cache for one CourseService.
fn scan_replica_sets(store: &Store<Scaled<ReplicaSet>>, namespace: &str, instance: &str, uid: &str) -> usize {
    observe::workloads(store.state().iter().map(AsRef::as_ref), namespace, instance, uid).len()
}

fn fleet_store(n: usize, template: &[ReplicaSet]) -> Store<Scaled<ReplicaSet>> {
    let (reader, mut writer) = reflector::store::<Scaled<ReplicaSet>>();
    writer.apply_watcher_event(&watcher::Event::Init);
    for i in 0..n {
        for d in template {
            let mut d = d.clone();
            let name = format!("c{i:04}");
            d.metadata.name = Some(format!("{name}-{}", d.name_any()));
            d.metadata.labels.get_or_insert_default().insert(labels::INSTANCE.into(), name.clone());
            for r in d.metadata.owner_references.iter_mut().flatten() {
                r.uid = format!("uid-{i}");
            }
            let ready = d.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
            let cached = Scaled::new(d.metadata, d.spec.replicas.unwrap_or(1), ready);
            writer.apply_watcher_event(&watcher::Event::InitApply(cached));
        }
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    reader
}

fn main() {
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let budget = Duration::from_millis(common::env_or("RENDER_BENCH_MS", 1000));
    let zones = zones();
    let plain = course("{image: 'registry.example.com/catalog:1.4.2', replicas: 6}");
    let data = course(
        "{image: 'registry.example.com/catalog:1.4.2', replicas: 6, cache: {enabled: true}, database: {enabled: true, backup: {schedule: '0 3 * * *'}}}",
    );
    let canary = course(
        "{image: 'registry.example.com/catalog:1.4.2', replicas: 6, strategy: {type: Canary, canary: {steps: [{setWeight: 25}, {pause: {duration: 30s}}, {setWeight: 50}]}}}",
    );
    let mut cases = Vec::new();
    let wanted = |name: &str| filter.as_ref().is_none_or(|f| name.contains(f.as_str()));
    for (label, cs, db) in [("plain", &plain, false), ("cache+db", &data, true), ("canary", &canary, false)] {
        let (observed, replica_sets) = observed_at_rest(cs, &zones, db);
        let planned = plan::desired(cs, &zones, &observed, &Images::default()).expect("valid");
        let now = Time(Timestamp::now());
        let mut cs_with_status = cs.clone();
        cs_with_status.status = Some(status::compute(&status::Inputs {
            cs,
            plan: Ok(&planned.plan),
            zones: &zones,
            observed: &observed,
            now: now.clone(),
        }));
        let name = format!("{label}: validate");
        if wanted(&name) {
            cases.push(measure(&name, budget, || {
                black_box(course_operator::validate::validate(black_box(cs)).is_ok());
            }));
        }
        let name = format!("{label}: plan (validate + rollout + render, {} children)", planned.children.len());
        if wanted(&name) {
            cases.push(measure(&name, budget, || {
                black_box(
                    plan::desired(black_box(&cs_with_status), &zones, &observed, &Images::default())
                        .map(|p| p.children.len())
                        .ok(),
                );
            }));
        }
        let name = format!("{label}: clone + fingerprint every child (serde_json + SHA-256)");
        if wanted(&name) {
            cases.push(measure(&name, budget, || {
                for child in &planned.children {
                    let mut child = child.clone();
                    fingerprint(&mut child);
                    black_box(&child);
                }
            }));
        }
        let name = format!("{label}: status::compute");
        if wanted(&name) {
            cases.push(measure(&name, budget, || {
                black_box(status::compute(&status::Inputs {
                    cs: &cs_with_status,
                    plan: Ok(&planned.plan),
                    zones: &zones,
                    observed: &observed,
                    now: now.clone(),
                }));
            }));
        }
        let name = format!("{label}: AppTemplate::from_replica_set per observed ReplicaSet");
        if wanted(&name) {
            cases.push(measure(&name, budget, || {
                for d in &replica_sets {
                    black_box(AppTemplate::from_replica_set(d));
                }
            }));
        }
        let name = format!("{label}: render to YAML (course-operator render)");
        if wanted(&name) {
            cases.push(measure(&name, budget, || {
                black_box(course_operator::render::to_yaml(&planned.children).map(|y| y.len()).ok());
            }));
        }
        if label == "plain" {
            for n in [100usize, 1000] {
                let store = fleet_store(n, &replica_sets);
                let name =
                    format!("plain: scan the ReplicaSet cache for one CourseService, {} ReplicaSets cached", n * 3);
                if wanted(&name) {
                    cases.push(measure(&name, budget, || {
                        black_box(scan_replica_sets(&store, "bench", "c0007", "uid-7"));
                    }));
                }
            }
        }
    }

    println!("| case | iterations | µs/iter | allocations/iter | KiB allocated/iter |");
    println!("|---|---|---|---|---|");
    for c in &cases {
        println!(
            "| {} | {} | {:.1} | {:.0} | {:.1} |",
            c.name,
            c.iterations,
            c.ns_per_iter / 1000.0,
            c.allocs_per_iter,
            c.bytes_per_iter / 1024.0
        );
    }
}
