//! Scenario `apiserver-restart`: kube-apiserver SIGKILLed mid-rollout.

use super::*;

pub(super) async fn apiserver_restart(
    client: &Client,
    settings: &Settings,
    scenario: &mut Scenario,
) -> anyhow::Result<()> {
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

pub(super) async fn apiserver_restart_in(
    client: &Client,
    settings: &Settings,
    ns: &str,
    scenario: &mut Scenario,
) -> anyhow::Result<()> {
    let api: Api<CourseService> = Api::namespaced(client.clone(), ns);
    let mut operator = common::start_operator(ns, "restart", &[], &settings.log_dir).await?;
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
    let ready = operator.get("/readyz").await.map(|(code, _)| code);
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
