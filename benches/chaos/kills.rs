//! Scenario `kills`: rollouts under SIGKILL, with a warm standby; and what "settled" means for every scenario.

use super::*;

pub(super) fn rollout_state(cs: &CourseService) -> Option<(RolloutPhase, String, String, i32)> {
    let r = cs.status.as_ref()?.rollout.as_ref()?;
    Some((r.phase, r.stable_revision.clone()?, r.new_revision.clone()?, r.weight))
}

/// The revision `manifest` renders, as the operator computes it.
pub(super) fn expected_revision(manifest: &Value) -> anyhow::Result<String> {
    let cs: CourseService = serde_json::from_value(manifest.clone())?;
    Ok(app_template(&render::Context::new(&cs)).revision)
}

pub(super) fn instance_of<K: kube::Resource>(object: &K, name: &str) -> bool {
    object.meta().labels.as_ref().and_then(|l| l.get(labels::INSTANCE)).is_some_and(|i| i == name)
        && object.meta().deletion_timestamp.is_none()
}

/// Why `name` is not yet Healthy on `revision` alone (status, ReplicaSets of that revision
/// only and all Ready, Services: the main one only, every replica a Ready endpoint behind it);
/// `None` once it is.
pub(super) async fn settled_on(client: &Client, ns: &str, name: &str, revision: &str, replicas: i32) -> Option<String> {
    let cs = match Api::<CourseService>::namespaced(client.clone(), ns).get(name).await {
        Ok(cs) => cs,
        Err(e) => return Some(format!("read CourseService: {e}")),
    };
    let Some((phase, stable, new, weight)) = rollout_state(&cs) else { return Some("no rollout status yet".into()) };
    if phase != RolloutPhase::Healthy || stable != revision || new != revision || weight != 100 {
        return Some(format!("rollout {phase:?} stable {stable} new {new} weight {weight}"));
    }
    let replica_sets = match Api::<ReplicaSet>::namespaced(client.clone(), ns).list(&ListParams::default()).await {
        Ok(list) => list,
        Err(e) => return Some(format!("list ReplicaSets: {e}")),
    };
    let mine: Vec<&ReplicaSet> = replica_sets.items.iter().filter(|d| instance_of(*d, name)).collect();
    let others: Vec<String> = mine
        .iter()
        .filter(|d| d.labels().get(labels::REVISION).is_none_or(|r| r != revision))
        .map(|d| d.name_any())
        .collect();
    if !others.is_empty() {
        return Some(format!("orphaned ReplicaSets {others:?}"));
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
    // The ReplicaSets' status can be ahead of the EndpointSlices: a floor is measured from a
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

pub(super) async fn kills(client: &Client, settings: &Settings, scenario: &mut Scenario) -> anyhow::Result<()> {
    let ns = common::create_namespace(client, "chaos-kill").await?;
    let outcome = kills_in(client, settings, &ns, scenario).await;
    if scenario.violations.is_empty() && outcome.is_ok() {
        common::delete_namespace(client, &ns, None).await?;
    } else {
        progress(format!("kills: keeping namespace {ns} for inspection"));
    }
    outcome
}

pub(super) async fn kills_in(
    client: &Client,
    settings: &Settings,
    ns: &str,
    scenario: &mut Scenario,
) -> anyhow::Result<()> {
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
    // replaced at once), as the operator's own Deployment of two would have it.
    let mut replicas_of_operator = [
        common::start_operator(ns, "chaos-a0", &lease, &settings.log_dir).await?,
        common::start_operator(ns, "chaos-b0", &lease, &settings.log_dir).await?,
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
                common::spawn_operator(ns, &format!("chaos-{side}{kills}"), &lease, &settings.log_dir)?;
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
