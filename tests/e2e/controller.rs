//! The controller on the real control plane, run as its ServiceAccount: children, status,
//! scaling, invalid specs, garbage collection, steady-state economy and leader election.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};

use crate::cluster::{self, CLUSTER, Operator, eventually};
use crate::fixtures::course;
use course_operator::api::CourseService;

const CONVERGE: Duration = Duration::from_secs(90);

/// Application ReplicaSets of a CourseService: name → (spec replicas, ready replicas).
async fn app_replica_sets(client: &Client, ns: &str, name: &str) -> BTreeMap<String, (i32, i32)> {
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    let selector = format!("app.kubernetes.io/instance={name},app.kubernetes.io/component=app");
    api.list(&ListParams::default().labels(&selector))
        .await
        .map(|list| {
            list.items
                .into_iter()
                .filter(|d| d.metadata.deletion_timestamp.is_none())
                // the operator's own, not those a Deployment controller made
                .filter(|d| d.owner_references().iter().any(|o| o.kind == "CourseService"))
                .map(|d| {
                    let ready = d.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
                    (d.name_any(), (d.spec.replicas.unwrap_or(1), ready))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn condition(cs: &CourseService, type_: &str) -> Option<(String, String)> {
    let status = cs.status.as_ref()?;
    let c = status.conditions.iter().find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.reason.clone()))
}

/// Waits until the CourseService is Available with `ready` Ready pods split as `per_zone`
/// (sorted counts) over ReplicaSets of one revision.
async fn wait_converged(client: &Client, ns: &str, name: &str, per_zone: &[i32]) -> BTreeMap<String, (i32, i32)> {
    let api: Api<CourseService> = Api::namespaced(client.clone(), ns);
    let total: i32 = per_zone.iter().sum();
    eventually(CONVERGE, &format!("{name} Available with {per_zone:?} per zone"), || async {
        let cs = api.get(name).await.ok()?;
        let available = condition(&cs, "Available")? == ("True".into(), "MinimumReplicasAvailable".into());
        let status = cs.status.as_ref()?;
        let replica_sets = app_replica_sets(client, ns, name).await;
        let mut counts: Vec<i32> = replica_sets.values().map(|(r, _)| *r).collect();
        counts.sort_unstable();
        let all_ready = replica_sets.values().all(|(r, ready)| r == ready);
        (available && status.ready_replicas == total && counts == per_zone && all_ready).then_some(replica_sets)
    })
    .await
}

/// Waits until the operator made no write for `quiet`.
async fn writes_settled(operator: &Operator, quiet: Duration) {
    eventually(CONVERGE, "writes to settle", || async {
        let first = operator.writes().await;
        tokio::time::sleep(quiet).await;
        (operator.writes().await == first).then_some(())
    })
    .await;
}

#[tokio::test]
async fn create_makes_every_child_and_reports_available() {
    let _shared = CLUSTER.read().await;
    cluster::with_namespace("create", |client, ns| async move {
        let operator = Operator::start(&client, &ns, "solo", &[]).await;
        let api: Api<CourseService> = Api::namespaced(client.clone(), &ns);
        // Every Available condition the status shows, in order, from before the create.
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, String)>::new()));
        let (listed_tx, listed) = tokio::sync::oneshot::channel();
        let watch = {
            let (api, seen) = (api.clone(), seen.clone());
            let config = kube::runtime::watcher::Config::default().fields("metadata.name=catalog");
            let mut events = kube::runtime::watcher(api, config).boxed();
            tokio::spawn(async move {
                let mut listed_tx = Some(listed_tx);
                while let Some(Ok(event)) = events.next().await {
                    use kube::runtime::watcher::Event;
                    let cs = match event {
                        Event::Apply(cs) | Event::InitApply(cs) => cs,
                        Event::InitDone => {
                            listed_tx.take().map(|tx| tx.send(()));
                            continue;
                        }
                        _ => continue,
                    };
                    let Some(available) = condition(&cs, "Available") else { continue };
                    let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
                    if seen.last() != Some(&available) {
                        seen.push(available);
                    }
                }
            })
        };
        listed.await.expect("the CourseService watch listed");
        cluster::apply(&api, course("catalog", &ns, serde_json::json!({"image": "registry.example.com/catalog:1.0", "replicas": 3}))).await;

        let replica_sets = wait_converged(&client, &ns, "catalog", &[1, 1, 1]).await;
        // A new CourseService is Starting, not unavailable, until its pods first serve, and
        // that first availability is in the status only: no Event.
        tokio::time::sleep(Duration::from_secs(2)).await;
        watch.abort();
        let seen = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let starting = ("False".to_owned(), "Starting".to_owned());
        let available = ("True".to_owned(), "MinimumReplicasAvailable".to_owned());
        assert_eq!(seen, [starting, available], "the Available conditions the status showed");
        let about_availability: Vec<String> = event_reasons(&client, &ns, |r| r.name.as_deref() == Some("catalog"))
            .await
            .into_iter()
            .filter(|reason| reason.starts_with("MinimumReplicas") || reason == "Starting")
            .collect();
        assert!(about_availability.is_empty(), "Events about a first availability: {about_availability:?}");
        let zones: Vec<String> = replica_sets.keys().map(|n| n.rsplit('-').next().unwrap_or_default().to_owned()).collect();
        assert_eq!(zones, vec!["a", "b", "c"], "one ReplicaSet per zone: {replica_sets:?}");

        let cs = api.get("catalog").await.expect("course");
        let status = cs.status.clone().expect("status");
        assert_eq!(status.observed_generation, cs.metadata.generation);
        assert_eq!(status.selector.as_deref(), Some("app.kubernetes.io/component=app,app.kubernetes.io/instance=catalog,app.kubernetes.io/managed-by=course-operator"));
        assert_eq!(status.zones.iter().map(|z| (z.name.as_str(), z.desired, z.ready)).collect::<Vec<_>>(), vec![("zone-a", 1, 1), ("zone-b", 1, 1), ("zone-c", 1, 1)]);
        assert_eq!(condition(&cs, "InvalidSpec"), Some(("False".into(), "SpecValid".into())));
        assert_eq!(condition(&cs, "Degraded"), Some(("False".into(), "AllZonesHealthy".into())));

        let uid = cs.uid().expect("uid");
        let service = Api::<Service>::namespaced(client.clone(), &ns).get("catalog").await.expect("Service");
        let pdb = Api::<PodDisruptionBudget>::namespaced(client.clone(), &ns).get("catalog").await.expect("PDB");
        for owners in [service.metadata.owner_references, pdb.metadata.owner_references] {
            assert_eq!(owners.unwrap_or_default().first().map(|o| o.uid.clone()), Some(uid.clone()));
        }
        assert_eq!(service.spec.and_then(|s| s.type_).as_deref(), Some("LoadBalancer"));
        drop(operator);
    })
    .await;
}

#[tokio::test]
async fn image_change_rolls_to_a_new_revision_and_removes_the_old_one() {
    let _shared = CLUSTER.read().await;
    cluster::with_namespace("image", |client, ns| async move {
        let _operator = Operator::start(&client, &ns, "solo", &[]).await;
        let api: Api<CourseService> = Api::namespaced(client.clone(), &ns);
        cluster::apply(
            &api,
            course("catalog", &ns, serde_json::json!({"image": "registry.example.com/catalog:1.0", "replicas": 3})),
        )
        .await;
        let before = wait_converged(&client, &ns, "catalog", &[1, 1, 1]).await;

        cluster::apply(
            &api,
            course("catalog", &ns, serde_json::json!({"image": "registry.example.com/catalog:1.1", "replicas": 3})),
        )
        .await;
        let after = eventually(CONVERGE, "only new-revision ReplicaSets", || async {
            let now = wait_converged(&client, &ns, "catalog", &[1, 1, 1]).await;
            now.keys().all(|n| !before.contains_key(n)).then_some(now)
        })
        .await;
        let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
        for name in after.keys() {
            let d = replica_sets.get(name).await.expect("replica set");
            let image = d
                .spec
                .template
                .and_then(|t| t.spec)
                .and_then(|s| s.containers.into_iter().next())
                .and_then(|c| c.image);
            assert_eq!(image.as_deref(), Some("registry.example.com/catalog:1.1"));
        }
    })
    .await;
}

#[tokio::test]
async fn scaling_through_the_scale_subresource_resizes_every_zone() {
    let _shared = CLUSTER.read().await;
    cluster::with_namespace("scale", |client, ns| async move {
        let _operator = Operator::start(&client, &ns, "solo", &[]).await;
        let api: Api<CourseService> = Api::namespaced(client.clone(), &ns);
        cluster::apply(&api, course("catalog", &ns, serde_json::json!({"image": "registry.example.com/catalog:1.0"}))).await;
        wait_converged(&client, &ns, "catalog", &[1, 1, 1]).await;

        // What `kubectl scale csvc catalog --replicas=7` sends.
        let scale = serde_json::json!({"spec": {"replicas": 7}});
        api.patch_scale("catalog", &PatchParams::default(), &Patch::Merge(&scale)).await.expect("scale");
        wait_converged(&client, &ns, "catalog", &[2, 2, 3]).await;
        let read = api.get_scale("catalog").await.expect("get scale");
        assert_eq!(read.status.as_ref().map(|s| s.replicas), Some(7));
        assert_eq!(
            read.status.and_then(|s| s.selector).as_deref(),
            Some("app.kubernetes.io/component=app,app.kubernetes.io/instance=catalog,app.kubernetes.io/managed-by=course-operator")
        );
    })
    .await;
}

#[tokio::test]
async fn invalid_spec_past_admission_sets_invalid_spec_and_touches_no_child() {
    let _shared = CLUSTER.read().await;
    cluster::with_namespace("invalid-spec", |client, ns| async move {
        let _operator = Operator::start(&client, &ns, "solo", &[]).await;
        let api: Api<CourseService> = Api::namespaced(client.clone(), &ns);
        cluster::apply(&api, course("catalog", &ns, serde_json::json!({"image": "registry.example.com/catalog:1.0"})))
            .await;
        wait_converged(&client, &ns, "catalog", &[1, 1, 1]).await;
        let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
        let before: BTreeMap<String, String> = replica_sets
            .list(&ListParams::default())
            .await
            .expect("list")
            .items
            .iter()
            .map(|d| (d.name_any(), d.resource_version().unwrap_or_default()))
            .collect();

        // Passes the schema, fails the operator's semantic checks (weights go down), and also
        // changes the image: the operator must not roll anything out.
        let bad = serde_json::json!({
            "image": "registry.example.com/catalog:2.0",
            "strategy": {"type": "Canary", "canary": {"steps": [{"setWeight": 50}, {"setWeight": 20}]}},
        });
        cluster::apply(&api, course("catalog", &ns, bad)).await;
        let message = eventually(CONVERGE, "InvalidSpec=True", || async {
            let cs = api.get("catalog").await.ok()?;
            let status = cs.status?;
            let c = status.conditions.iter().find(|c| c.type_ == "InvalidSpec" && c.status == "True")?;
            (status.observed_generation == cs.metadata.generation).then(|| c.message.clone())
        })
        .await;
        assert!(message.contains("spec.strategy.canary.steps[1].setWeight"), "{message}");
        tokio::time::sleep(Duration::from_secs(3)).await;
        let after: BTreeMap<String, String> = replica_sets
            .list(&ListParams::default())
            .await
            .expect("list")
            .items
            .iter()
            .map(|d| (d.name_any(), d.resource_version().unwrap_or_default()))
            .collect();
        assert_eq!(before, after, "a child changed although the spec is invalid");
    })
    .await;
}

#[tokio::test]
async fn deleting_the_course_service_garbage_collects_its_children() {
    let _shared = CLUSTER.read().await;
    cluster::with_namespace("delete", |client, ns| async move {
        let _operator = Operator::start(&client, &ns, "solo", &[]).await;
        let api: Api<CourseService> = Api::namespaced(client.clone(), &ns);
        cluster::apply(&api, course("catalog", &ns, serde_json::json!({"image": "registry.example.com/catalog:1.0"})))
            .await;
        wait_converged(&client, &ns, "catalog", &[1, 1, 1]).await;
        api.delete("catalog", &Default::default()).await.expect("delete");
        eventually(CONVERGE, "children garbage-collected", || async {
            let replica_sets = app_replica_sets(&client, &ns, "catalog").await;
            let services = Api::<Service>::namespaced(client.clone(), &ns).list(&ListParams::default()).await.ok()?;
            let pdbs =
                Api::<PodDisruptionBudget>::namespaced(client.clone(), &ns).list(&ListParams::default()).await.ok()?;
            (replica_sets.is_empty() && services.items.is_empty() && pdbs.items.is_empty()).then_some(())
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn a_deleted_child_is_put_back_at_once_not_at_the_next_resync() {
    let _shared = CLUSTER.read().await;
    cluster::with_namespace("put-back", |client, ns| async move {
        // The default resync (600 s) is far past the deadline: only the deletions can trigger.
        let _operator = Operator::start(&client, &ns, "solo", &[]).await;
        let api: Api<CourseService> = Api::namespaced(client.clone(), &ns);
        let spec = serde_json::json!({
            "image": "registry.example.com/catalog:1.0", "replicas": 3,
            "autoscaling": {"minReplicas": 3, "maxReplicas": 3},
        });
        cluster::apply(&api, course("catalog", &ns, spec)).await;
        wait_converged(&client, &ns, "catalog", &[1, 1, 1]).await;
        // The HPA came after the status named the selector: its controller never read an empty
        // `/scale` (it records `SelectorRequired` at its first look when the HPA comes first).
        let hpa_events = event_reasons(&client, &ns, |r| r.kind.as_deref() == Some("HorizontalPodAutoscaler")).await;
        assert!(!hpa_events.iter().any(|reason| reason == "SelectorRequired"), "the HPA's Events: {hpa_events:?}");
        let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &ns);
        let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), &ns);
        // Neither kind has anything else that would trigger the owner when it goes: no pods,
        // no EndpointSlices.
        let uids = || async {
            let pdbs = pdbs.list(&ListParams::default()).await.ok()?.items;
            let hpas = hpas.list(&ListParams::default()).await.ok()?.items;
            let pdbs = pdbs.iter().map(|o| (format!("pdb/{}", o.name_any()), o.uid().unwrap_or_default()));
            let hpas = hpas.iter().map(|o| (format!("hpa/{}", o.name_any()), o.uid().unwrap_or_default()));
            Some(pdbs.chain(hpas).collect::<BTreeMap<_, _>>())
        };
        let before = uids().await.expect("list");
        assert!(
            before.keys().any(|k| k.starts_with("pdb/")) && before.keys().any(|k| k.starts_with("hpa/")),
            "{before:?}"
        );
        for name in before.keys() {
            match name.split_once('/') {
                Some(("pdb", name)) => drop(pdbs.delete(name, &Default::default()).await.expect("delete the PDB")),
                Some((_, name)) => drop(hpas.delete(name, &Default::default()).await.expect("delete the HPA")),
                None => unreachable!("keys are kind/name"),
            }
        }
        eventually(Duration::from_secs(20), "every deleted child put back (new uids)", || async {
            let after = uids().await?;
            (after.len() == before.len() && before.iter().all(|(k, uid)| after.get(k).is_some_and(|new| new != uid)))
                .then_some(())
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn steady_state_makes_no_write_requests() {
    let _shared = CLUSTER.read().await;
    cluster::with_namespace("steady", |client, ns| async move {
        // A short resync makes the idle window span many full reconciles.
        let operator = Operator::start(&client, &ns, "solo", &["--resync-seconds", "5"]).await;
        let api: Api<CourseService> = Api::namespaced(client.clone(), &ns);
        cluster::apply(
            &api,
            course("catalog", &ns, serde_json::json!({"image": "registry.example.com/catalog:1.0", "replicas": 6})),
        )
        .await;
        wait_converged(&client, &ns, "catalog", &[2, 2, 2]).await;
        // Let trailing status updates land.
        writes_settled(&operator, Duration::from_secs(6)).await;

        let idle: u64 = std::env::var("E2E_IDLE_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(300);
        let writes_before = operator.writes().await;
        let reconciles_before = operator.counter("course_operator_reconciles_total", "Success").await;
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(idle)).await;
        let writes = operator.writes().await - writes_before;
        let reconciles = operator.counter("course_operator_reconciles_total", "Success").await - reconciles_before;
        eprintln!("steady state: {reconciles} reconciles, {writes} writes in {:?}", started.elapsed());
        assert!(reconciles >= (idle / 5 / 2) as f64, "only {reconciles} reconciles: the window proves nothing");
        assert_eq!(writes, 0.0, "steady state wrote {writes} times in {idle}s\n{}", operator.log());
    })
    .await;
}

#[tokio::test]
async fn a_standby_takes_over_within_15_seconds_when_the_leader_dies() {
    // Several operator processes at once: run alone, so start-up is not starved by other tests.
    let _exclusive = CLUSTER.write().await;
    cluster::with_namespace("leader", |client, ns| async move {
        let mut first = Operator::start(&client, &ns, "first", &[]).await;
        let second = Operator::start(&client, &ns, "second", &[]).await;
        let api: Api<CourseService> = Api::namespaced(client.clone(), &ns);
        cluster::apply(&api, course("catalog", &ns, serde_json::json!({"image": "registry.example.com/catalog:1.0"})))
            .await;
        wait_converged(&client, &ns, "catalog", &[1, 1, 1]).await;
        let leaders = (first.is_leader().await, second.is_leader().await);
        assert!(leaders == (true, false), "expected the first replica alone to lead, got {leaders:?}");
        assert_eq!(second.writes().await, 0.0, "the standby wrote");

        first.kill();
        let killed = Instant::now();
        eventually(Duration::from_secs(20), "the standby to lead", || async { second.is_leader().await.then_some(()) })
            .await;
        let failover = killed.elapsed();
        eprintln!("leader failover took {failover:?}");
        assert!(failover <= Duration::from_secs(15), "failover took {failover:?}");

        // The new leader acts.
        let scale = serde_json::json!({"spec": {"replicas": 6}});
        api.patch_scale("catalog", &PatchParams::default(), &Patch::Merge(&scale)).await.expect("scale");
        wait_converged(&client, &ns, "catalog", &[2, 2, 2]).await;
    })
    .await;
}

/// A stale leader: frozen past its Lease while a standby took over, then thawed and told by a
/// test-only flag to go on believing it leads. A spec change reaches it while the new leader
/// is briefly frozen, so it tries to write: the fence must hold every one of those writes back
/// (counted), the apiserver's audit log must show no write from it after the hand-over, and
/// the standby, now leading, writes unfenced.
#[tokio::test]
async fn a_stale_leader_is_fenced_and_the_apiserver_sees_no_write_from_it() {
    let _shared = CLUSTER.read().await;
    cluster::with_namespace("fence", |client, ns| async move {
        let stale = Operator::start(
            &client,
            &ns,
            "stale",
            &["--lease-duration-seconds", "4", "--test-delay-step-down-seconds", "60"],
        )
        .await;
        let api: Api<CourseService> = Api::namespaced(client.clone(), &ns);
        cluster::apply(&api, course("catalog", &ns, serde_json::json!({"image": "registry.example.com/catalog:1.0"})))
            .await;
        wait_converged(&client, &ns, "catalog", &[1, 1, 1]).await;
        eventually(Duration::from_secs(20), "the first replica to lead", || async {
            stale.is_leader().await.then_some(())
        })
        .await;
        let standby = Operator::start(&client, &ns, "standby", &["--lease-duration-seconds", "4"]).await;
        writes_settled(&stale, Duration::from_secs(3)).await;
        let stale_writes_before = stale.writes().await;

        // Frozen past its Lease: the standby takes it over.
        stale.signal("STOP");
        eventually(Duration::from_secs(30), "the standby to take the expired Lease", || async {
            standby.is_leader().await.then_some(())
        })
        .await;
        let handed_over = k8s_openapi::jiff::Timestamp::now();
        stale.signal("CONT");
        // Its renewal finds the standby's Lease, but the flag keeps it acting as leader.
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(stale.is_leader().await, "the thawed replica stepped down: the stale-leader case did not happen");

        // Only the stale replica sees the spec change at first (the leader is frozen for a
        // second, well within its Lease): it reconciles and tries to write.
        standby.signal("STOP");
        // The Service annotation makes the Service a write too: Services are audited (the lean
        // audit policy leaves ReplicaSets and status out: auditing them slows the apiserver).
        let change = serde_json::json!({"spec": {"replicas": 6, "service": {"annotations": {"fence-test": "after"}}}});
        api.patch("catalog", &PatchParams::default(), &Patch::Merge(&change)).await.expect("spec change");
        let fenced =
            eventually(Duration::from_secs(5), "the fence to hold back the stale replica's writes", || async {
                let fenced = stale.counter("course_operator_writes_fenced_total", "").await;
                (fenced >= 1.0).then_some(fenced)
            })
            .await;
        standby.signal("CONT");
        wait_converged(&client, &ns, "catalog", &[2, 2, 2]).await;

        let stale_writes = stale.writes().await - stale_writes_before;
        assert_eq!(stale_writes, 0.0, "the stale replica sent writes past its fence\n{}", stale.log());
        let standby_fenced = standby.counter("course_operator_writes_fenced_total", "").await;
        assert_eq!(standby_fenced, 0.0, "the leading standby had writes fenced\n{}", standby.log());
        let writes = cluster::audited_writes(&ns, handed_over);
        let from = |identity: &str| -> Vec<&cluster::AuditedWrite> {
            writes
                .iter()
                .filter(|w| w.user_agent.contains(&format!("({identity})")) && w.resource != "leases")
                .collect()
        };
        assert!(from("stale").is_empty(), "the apiserver received writes from the stale replica: {:#?}", from("stale"));
        // (its writes while it led are in the log: it would show later ones)
        let earlier = cluster::audited_writes(&ns, k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        assert!(
            earlier.iter().any(|w| w.user_agent.contains("(stale)")),
            "the replica's writes as leader are not audited"
        );
        // the new leader's write of the changed Service is in the log: it records what it should
        let applied = from("standby").into_iter().any(|w| {
            w.verb == "patch" && w.resource == "services" && w.name == "catalog" && (200..300).contains(&w.code)
        });
        assert!(applied, "no Service patch of the leading standby in the audit log: {writes:#?}");
        eprintln!(
            "stale leader: {fenced} writes fenced, 0 sent, 0 in the audit log; standby: 0 fenced, {} writes audited",
            from("standby").len()
        );
    })
    .await;
}

#[tokio::test]
async fn graceful_shutdown_releases_the_lease() {
    let _shared = CLUSTER.read().await;
    cluster::with_namespace("release", |client, ns| async move {
        let mut operator = Operator::start(&client, &ns, "first", &["--lease-duration-seconds", "30"]).await;
        eventually(Duration::from_secs(20), "the replica to lead", || async {
            operator.is_leader().await.then_some(())
        })
        .await;
        let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
        let holder = |lease: Lease| lease.spec.and_then(|s| s.holder_identity).filter(|h| !h.is_empty());
        assert_eq!(holder(leases.get("course-operator-leader").await.expect("lease")).as_deref(), Some("first"));
        operator.terminate();
        assert!(!operator.is_running(), "SIGTERM did not stop the operator");
        // Released at once, not left to expire 30 s later.
        assert_eq!(holder(leases.get("course-operator-leader").await.expect("lease")), None, "lease still held");
    })
    .await;
}

#[tokio::test]
async fn an_operator_started_before_its_rbac_waits_and_leads_without_a_restart() {
    let _shared = CLUSTER.read().await;
    cluster::with_namespace("rbac-late", |client, ns| async move {
        // The ServiceAccount has no permission yet: every Lease request is refused.
        assert!(
            !cluster::allowed(&client, &ns, "coordination.k8s.io", "leases", "update").await,
            "the ServiceAccount may already update Leases: the test would prove nothing"
        );
        let mut operator = Operator::spawn(&ns, "early", &[]);
        let refusals = eventually(Duration::from_secs(20), "refused Lease requests counted", || async {
            let refused =
                operator.try_counter("course_operator_leader_election_errors_total", "phase=\"Join\"").await?;
            (refused >= 2.0).then_some(refused)
        })
        .await;
        assert!(operator.is_running(), "the operator exited on a refused Lease request\n{}", operator.log());
        let (code, body) = operator.get("/readyz").await.expect("/readyz answers");
        assert_eq!(code, 503, "ready before it could reach its Lease: {body}");
        assert_eq!(operator.get("/healthz").await.map(|(code, _)| code), Some(200), "not live while waiting");
        assert!(!operator.is_leader().await, "leads without a Lease");
        eprintln!("{refusals} refused Lease requests before the binding");

        cluster::bind_service_account(&client, &ns).await;
        let bound = Instant::now();
        eventually(Duration::from_secs(30), "the operator to lead once bound", || async {
            operator.is_leader().await.then_some(())
        })
        .await;
        operator.wait_ready(Duration::from_secs(30)).await;
        eprintln!("led {:?} after the binding took effect", bound.elapsed());
        assert!(operator.is_running(), "the operator exited (the harness never restarts it)\n{}", operator.log());

        // And it does its job.
        let api: Api<CourseService> = Api::namespaced(client.clone(), &ns);
        cluster::apply(&api, course("catalog", &ns, serde_json::json!({"image": "registry.example.com/catalog:1.0"})))
            .await;
        wait_converged(&client, &ns, "catalog", &[1, 1, 1]).await;
        let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
        let holder = leases.get("course-operator-leader").await.expect("lease").spec.and_then(|s| s.holder_identity);
        assert_eq!(holder.as_deref(), Some("early"));
    })
    .await;
}

/// A CourseService left with per-zone Deployments by an earlier build of the operator (before
/// the per-zone workloads became ReplicaSets): the operator creates the ReplicaSets beside them
/// and deletes the Deployments only once every ReplicaSet has all its replicas Ready, so the
/// main Service never has fewer Ready endpoints than before.
#[tokio::test]
async fn deployments_of_an_earlier_build_go_only_once_their_replica_sets_are_ready() {
    use course_operator::observe::Observed;
    use course_operator::plan;
    use course_operator::render::{Child, Images};
    use course_operator::zones::ZoneInventory;
    use k8s_openapi::api::apps::v1::Deployment;

    let _shared = CLUSTER.read().await;
    cluster::with_namespace("legacy", |client, ns| async move {
        let api: Api<CourseService> = Api::namespaced(client.clone(), &ns);
        let spec = serde_json::json!({"image": "registry.example.com/catalog:1.0", "replicas": 3});
        let cs = cluster::apply(&api, course("catalog", &ns, spec)).await;
        // What the earlier build wrote: the same per-zone objects, as Deployments, and the
        // main Service, all owned by the CourseService.
        let zones = ZoneInventory::healthy_zones(&["zone-a", "zone-b", "zone-c"]).for_spec(&[]);
        let planned = plan::desired(&cs, &zones, &Observed::default(), &Images::default()).expect("plan");
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        let mut legacy = Vec::new();
        for child in &planned.children {
            match child {
                Child::ReplicaSet(rs) => {
                    let mut object = serde_json::to_value(rs.as_ref()).expect("json");
                    object["kind"] = "Deployment".into();
                    legacy.push(cluster::apply(&deployments, object).await.name_any());
                }
                Child::Service(service) if service.metadata.name.as_deref() == Some("catalog") => {
                    let object = serde_json::to_value(service.as_ref()).expect("json");
                    cluster::apply(&Api::<Service>::namespaced(client.clone(), &ns), object).await;
                }
                _ => {}
            }
        }
        assert_eq!(legacy.len(), 3, "one legacy Deployment per zone");
        let slices: Api<k8s_openapi::api::discovery::v1::EndpointSlice> = Api::namespaced(client.clone(), &ns);
        let by_service = ListParams::default().labels("kubernetes.io/service-name=catalog");
        eventually(CONVERGE, "the legacy pods Ready behind the Service", || async {
            let list = slices.list(&by_service).await.ok()?;
            (crate::endpoints::ready_endpoints(&list.items) == 3).then_some(())
        })
        .await;

        let watch = crate::endpoints::EndpointWatch::start(&client, &ns, "catalog").await;
        let _operator = Operator::start(&client, &ns, "solo", &[]).await;
        // Sampled until the Deployments are gone: whenever one is missing, the pods of the
        // ReplicaSets must already be 3 Ready endpoints behind the Service (what serves users;
        // the ReplicaSet status may lag behind it).
        let deadline = Instant::now() + CONVERGE;
        loop {
            assert!(Instant::now() < deadline, "the legacy Deployments are still there");
            let left = deployments.list(&ListParams::default()).await.expect("list Deployments").items.len();
            let replica_sets = app_replica_sets(&client, &ns, "catalog").await;
            let listed = slices.list(&by_service).await.expect("list EndpointSlices").items;
            let serving: Vec<String> = listed
                .iter()
                .flat_map(|s| s.endpoints.iter().flatten())
                .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false))
                .filter_map(|e| e.target_ref.as_ref().and_then(|t| t.name.clone()))
                .filter(|pod| pod.rsplit_once('-').is_some_and(|(owner, _)| replica_sets.contains_key(owner)))
                .collect();
            assert!(
                left == 3 || serving.len() >= 3,
                "{left} legacy Deployments left while the ReplicaSets' Ready endpoints are {serving:?} ({replica_sets:?})"
            );
            if left == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        wait_converged(&client, &ns, "catalog", &[1, 1, 1]).await;
        watch.finish().await.assert_floor(3, "Ready endpoints while the Deployments were replaced");
    })
    .await;
}

/// The reasons of the Events in `ns` about the objects `regarding` picks.
async fn event_reasons(
    client: &Client,
    ns: &str,
    regarding: impl Fn(&k8s_openapi::api::core::v1::ObjectReference) -> bool,
) -> Vec<String> {
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    let listed = events.list(&ListParams::default()).await.expect("events").items;
    listed.into_iter().filter(|e| e.regarding.as_ref().is_some_and(&regarding)).filter_map(|e| e.reason).collect()
}
