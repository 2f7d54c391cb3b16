//! Scenario `zone-loss`: a zone's nodes deleted during a rolling update.

use super::*;

/// The committed nodes back, and every one of them Ready.
async fn restore_nodes(client: &Client) -> anyhow::Result<()> {
    common::restore_nodes(client, common::HARNESS_MANAGER).await?;
    let want = common::node_manifests()?.len();
    let nodes: Api<Node> = Api::all(client.clone());
    common::poll(Duration::from_secs(120), "every node Ready", || async {
        let list = nodes.list(&ListParams::default()).await.ok()?;
        (list.items.iter().filter(|n| common::node_ready(n)).count() >= want).then_some(())
    })
    .await
}

pub(super) async fn zone_loss(client: &Client, settings: &Settings, scenario: &mut Scenario) -> anyhow::Result<()> {
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

pub(super) async fn zone_loss_in(
    client: &Client,
    settings: &Settings,
    ns: &str,
    scenario: &mut Scenario,
) -> anyhow::Result<()> {
    let api: Api<CourseService> = Api::namespaced(client.clone(), ns);
    let _operator = common::start_operator(ns, "zone", &[], &settings.log_dir).await?;
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
    let zone_a = common::kwok_nodes_in(client, "zone-a").await?;
    let lost_at = Instant::now();
    let before = before_loss.finish().await;
    let while_lost = EndpointWatch::start(client, ns, "catalog").await;
    common::remove_nodes(client, &zone_a).await?;
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
