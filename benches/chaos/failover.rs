//! Scenario `failover`: the leader killed, then frozen past its Lease and thawed.

use super::*;

/// Field managers that changed more than status on the object.
pub(super) fn spec_managers(fields: Option<&Vec<ManagedFieldsEntry>>) -> Vec<String> {
    fields
        .into_iter()
        .flatten()
        .filter(|m| m.subresource.as_deref() != Some("status"))
        .filter_map(|m| m.manager.clone())
        .collect()
}

pub(super) async fn failover(client: &Client, settings: &Settings, scenario: &mut Scenario) -> anyhow::Result<()> {
    let ns = common::create_namespace(client, "chaos-leader").await?;
    let outcome = failover_in(client, settings, &ns, scenario).await;
    common::delete_namespace(client, &ns, None).await?;
    outcome
}

pub(super) async fn failover_in(
    client: &Client,
    settings: &Settings,
    ns: &str,
    scenario: &mut Scenario,
) -> anyhow::Result<()> {
    let api: Api<CourseService> = Api::namespaced(client.clone(), ns);
    let mut first = common::start_operator(ns, "replica-a", &[], &settings.log_dir).await?;
    common::poll(Duration::from_secs(30), "replica-a to lead", || async { first.is_leader().await.then_some(()) })
        .await?;
    let second = common::start_operator(ns, "replica-b", &[], &settings.log_dir).await?;
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
    for d in Api::<ReplicaSet>::namespaced(client.clone(), ns).list(&ListParams::default()).await?.items {
        managers.insert(format!("ReplicaSet/{}", d.name_any()), spec_managers(d.metadata.managed_fields.as_ref()));
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
    let mut third = common::start_operator(ns, "replica-c", &[], &settings.log_dir).await?;
    let frozen_writes = second.metrics().await?.writes();
    second.signal("STOP")?;
    let frozen = Instant::now();
    let third_leads = common::poll(Duration::from_secs(30), "replica-c to lead", || async {
        third.is_leader().await.then_some(Instant::now())
    })
    .await;
    // Work for both: a spec change while replica-b is still frozen.
    api.patch("catalog", &PatchParams::default(), &Patch::Merge(&json!({"spec": {"replicas": 4}}))).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    second.signal("CONT")?;
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
