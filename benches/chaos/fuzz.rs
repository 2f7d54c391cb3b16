//! Scenario `fuzz`: random specs offline, a dry-run sample of their children, and through the apiserver.

use super::*;
use course_operator::controller::{fingerprint, server_side_apply};

pub(super) const STABLE_REVISION: &str = "0123456789";

/// How often a field gets a value the schema or `validate` should refuse.
pub(super) const BAD: f64 = 0.04;

/// One of `good`, or rarely (`BAD`) one of `bad`.
pub(super) fn mostly<T: Copy + Into<Value>>(rng: &mut Rng, good: &[T], bad: &[T]) -> Value {
    if !bad.is_empty() && rng.chance(BAD) { (*rng.pick(bad)).into() } else { (*rng.pick(good)).into() }
}

pub(super) fn random_name(rng: &mut Rng) -> String {
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

pub(super) fn maybe(rng: &mut Rng, p: f64, value: impl FnOnce(&mut Rng) -> Value) -> Option<Value> {
    rng.chance(p).then(|| value(rng))
}

pub(super) fn quantity(rng: &mut Rng, kind: &str) -> Value {
    match kind {
        "cpu" => mostly(rng, &["100m", "1", "250m", "0.5", "2", "0"], &["abc", "-1"]),
        _ => mostly(rng, &["128Mi", "1Gi", "64M", "512Ki", "10Gi", "1Mi", "1e3"], &["xyz", "-5Mi"]),
    }
}

pub(super) fn int_or_percent(rng: &mut Rng) -> Value {
    match rng.range(0, 2) {
        0 => json!(rng.range(0, 3)),
        1 => json!(rng.pick(&["25%", "0%", "100%", "50%"])),
        _ => mostly(rng, &["10%"], &["150%", "abc", "-1", "1000%"]),
    }
}

pub(super) fn random_strategy(rng: &mut Rng) -> Value {
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

pub(super) fn random_spec(rng: &mut Rng) -> Value {
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

pub(super) fn random_status(rng: &mut Rng, new_revision: &str) -> Value {
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

pub(super) fn random_zones(rng: &mut Rng) -> Vec<ZoneHealth> {
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

pub(super) fn random_observed(rng: &mut Rng, cs: &CourseService, zones: &[ZoneHealth], new_revision: &str) -> Observed {
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
            observed.workloads.insert(
                format!("{}-{revision}-{}", cs.name_any(), zone.zone.slug()),
                ObservedWorkload {
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
pub(super) struct FuzzCase {
    manifest: Value,
    valid: bool,
    has_data: bool,
}

pub(super) async fn fuzz(client: &Client, settings: &Settings, scenario: &mut Scenario) -> anyhow::Result<()> {
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
            let first = plan::desired(&cs, &zones, &observed, &Images::default());
            let again = plan::desired(&cs, &zones, &observed, &Images::default());
            let deterministic = first == again;
            let status = course_operator::status::compute(&course_operator::status::Inputs {
                cs: &cs,
                plan: first.as_ref().map(|d| &d.plan),
                zones: &zones,
                observed: &observed,
                now: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now()),
            });
            let mut children = 0;
            if let Ok(p) = &first {
                children = p.children.len();
                for child in &p.children {
                    let mut c = child.clone();
                    fingerprint(&mut c);
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
pub(super) fn child_kinds() -> Vec<ApiResource> {
    use k8s_openapi::api::{autoscaling::v2, batch::v1 as batch, core::v1 as core, networking::v1 as net};
    vec![
        ApiResource::erase::<ReplicaSet>(&()),
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
pub(super) struct Labelled {
    /// `Kind/name`
    id: String,
    instance: String,
    uid: String,
    /// The uid of its controller owner; empty when it has none.
    owner: String,
    generation: i64,
}

/// Every object of the operator's child kinds in `ns` that carries the instance label.
pub(super) async fn labelled_children(client: &Client, ns: &str) -> anyhow::Result<Vec<Labelled>> {
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
pub(super) fn retained(id: &str) -> bool {
    id.starts_with("PersistentVolumeClaim/") || (id.starts_with("Secret/") && id.ends_with("-db-credentials"))
}

/// Objects labelled for one CourseService but controlled by something else: neither that
/// CourseService nor one of its own children (a CronJob's Jobs), nor retained on purpose.
pub(super) fn foreign(children: &[Labelled], uids: &BTreeMap<String, String>) -> Vec<String> {
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
pub(super) async fn through_the_apiserver(
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

pub(super) async fn through_the_apiserver_in(
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
    let mut operator = common::start_operator(ns, "fuzz", &[], &settings.log_dir).await?;
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
                for field in rejected_fields(&e) {
                    *reasons.entry(field).or_default() += 1;
                }
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
    //    its ReplicaSets and main Service exist, owned by it alone.
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
            // A ReplicaSet is created once it has pods to run: none for a service at 0 replicas.
            let runs_pods = manifest["spec"]["replicas"].as_i64() != Some(0);
            if (has("ReplicaSet/") || !runs_pods) && main_service {
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
        ("valid specs without their ReplicaSets (replicas > 0) and Service", &missing_children),
        ("InvalidSpec yet children written", &invalid_but_written),
        ("the operator and validate() disagree", &validate_disagrees),
    ] {
        scenario.check(list.is_empty(), || format!("{}: {what}, first {}", list.len(), list[0]));
    }
    scenario.check(stricter == 0, || format!("{stricter} specs validate() accepts were rejected by the CRD"));
    scenario.figure("api_specs", settings.api_specs);
    scenario.figure("api_rejected_by_crd", rejected);
    scenario.figure("api_rejected_by_field", serde_json::to_value(&reasons)?);
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

pub(super) async fn dry_run_sample(
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
            plan::desired(&cs, &zones, &observed, &Images::default()).map_err(|e| anyhow!("re-plan {name}: {e}"))?;
        let mut rejections = Vec::new();
        for child in &planned.children {
            let mut child: Child = child.clone();
            fingerprint(&mut child);
            objects += 1;
            if let Err(e) = server_side_apply(client, ns, &child, &dry).await {
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
pub(super) fn short(error: &kube::Error) -> String {
    let text = match error {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    };
    text.chars().take(240).collect()
}

/// A rejection reduced to its kind (field and complaint, no object names), for counting.
pub(super) fn reason(error: &kube::Error) -> String {
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

/// The spec fields an apiserver rejection names (each once), for counting.
pub(super) fn rejected_fields(error: &kube::Error) -> std::collections::BTreeSet<String> {
    let kube::Error::Api(status) = error else { return ["(no API status)".to_owned()].into() };
    let fields: std::collections::BTreeSet<String> = status
        .details
        .iter()
        .flat_map(|d| d.causes.iter())
        .map(|c| c.field.split('[').next().unwrap_or_default().trim_start_matches('.').to_owned())
        .collect();
    if fields.is_empty() { [status.reason.clone()].into() } else { fields }
}

pub(super) fn panic_message(payload: &Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic".into())
}
