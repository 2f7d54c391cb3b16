//! The database's embedded scripts run as the Jobs run them, without a cluster: the init
//! Job's planner (`mongo-plan.js`) under `node` against [`reconfig_steps`], its entry
//! point (`mongo-init.js`) under `node` against a simulated replica set
//! (`src/render/scripts/mongo-init-sim.js`: MongoDB's reconfig rules, no MongoDB), and the
//! backup CronJob's script under `sh` with a stand-in `mongodump`.
//!
//! Needs `node` and a POSIX `sh`, part of this machine's toolchain: the tests fail (they do
//! not skip) without them. The real-`mongosh` run of the init Job is `tests/data_mongo.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use course_operator::api::{CourseService, DatabaseSpec};
use course_operator::database::credentials::{ADMIN_USERNAME, APP_DATABASE, APP_USERNAME, PASSWORD_LEN};
use course_operator::database::{Member, desired_members, reconfig_steps, replica_set_config};
use course_operator::manifest;
use course_operator::render::Context;
use course_operator::render::mongo::{self, SCRIPT_BACKUP, SCRIPT_PLAN};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

fn full_stack() -> CourseService {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/samples/full-stack.yaml");
    manifest::parse(&std::fs::read_to_string(path).expect("read sample")).expect("sample parses")
}

fn database(members: i32, arbiter: bool) -> DatabaseSpec {
    DatabaseSpec {
        enabled: true,
        members,
        arbiter,
        version: "7.0".to_owned(),
        storage: Quantity("10Gi".to_owned()),
        storage_class_name: None,
        image: None,
        backup: None,
        external: None,
    }
}

/// Hosts whose managed fields differ between two member lists (added or removed count too).
fn changed_hosts(a: &[Member], b: &[Member]) -> usize {
    let hosts: BTreeSet<&str> = a.iter().chain(b).map(|m| m.host.as_str()).collect();
    hosts
        .into_iter()
        .filter(|h| {
            let x = a.iter().find(|m| m.host == *h);
            let y = b.iter().find(|m| m.host == *h);
            match (x, y) {
                (Some(x), Some(y)) => {
                    (x.arbiter_only, x.priority, x.votes, &x.tags) != (y.arbiter_only, y.priority, y.votes, &y.tags)
                }
                _ => true,
            }
        })
        .count()
}

fn members_for(members: i32, arbiter: bool) -> Vec<Member> {
    let cs = full_stack();
    let ctx = Context::new(&cs);
    desired_members(mongo::replica_set(&ctx), &database(members, arbiter), &BTreeMap::new())
}

/// Runs `planSteps` of scripts/mongo-plan.js under node for every case and returns its
/// answers. Node is part of this project's machine (JavaScript tooling); without it the
/// test fails rather than pass without checking the script the Job runs.
fn plan_with_node(cases: &[(Vec<Member>, Vec<Member>)]) -> Vec<Vec<Vec<Member>>> {
    let dir = std::env::temp_dir().join(format!("course-operator-mongo-plan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let plan = dir.join("mongo-plan.js");
    let input = dir.join("cases.json");
    std::fs::write(&plan, SCRIPT_PLAN).expect("write plan");
    std::fs::write(&input, serde_json::to_string(cases).expect("cases to JSON")).expect("write cases");
    let program = "const plan = require(process.argv[1]);\
         const cases = JSON.parse(require('fs').readFileSync(process.argv[2], 'utf8'));\
         process.stdout.write(JSON.stringify(cases.map(([c, d]) => plan.planSteps(c, d))));";
    let out = Command::new("node")
        .args(["-e", program])
        .arg(&plan)
        .arg(&input)
        .output()
        .expect("node runs (it is part of this machine's toolchain)");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "node failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("planSteps output parses")
}

#[test]
fn the_jobs_javascript_planner_agrees_with_reconfig_steps() {
    let mut cases = Vec::new();
    for from in 1..=12 {
        for to in 1..=12 {
            for (fa, ta) in [(false, false), (true, true), (false, true), (true, false)] {
                cases.push((members_for(from, fa), members_for(to, ta)));
            }
        }
    }
    for (from, to) in [(1, 50), (50, 1), (7, 9), (9, 7), (49, 50), (50, 3)] {
        cases.push((members_for(from, false), members_for(to, true)));
    }
    // A set configured by hand: other priorities, zone tags, a foreign member, a shuffled id.
    let mut manual = members_for(5, false);
    manual[1].priority = 3;
    manual[2].tags.insert("zone".to_owned(), "b".to_owned());
    manual.push(Member {
        id: 3,
        host: "legacy:27017".to_owned(),
        arbiter_only: false,
        priority: 0,
        votes: 0,
        tags: BTreeMap::new(),
    });
    manual.retain(|m| m.id != 3 || m.host == "legacy:27017");
    cases.push((manual.clone(), members_for(5, false)));
    cases.push((manual, members_for(2, true)));

    let from_node = plan_with_node(&cases);
    assert_eq!(from_node.len(), cases.len());
    for ((current, desired), js) in cases.iter().zip(from_node) {
        let rust = reconfig_steps(current, desired);
        assert_eq!(
            js,
            rust,
            "planSteps differs from reconfig_steps for {} -> {} members",
            current.len(),
            desired.len()
        );
    }
}

/// Runs scripts/mongo-init.js under node against the simulated replica set of
/// scripts/mongo-init-sim.js (MongoDB's reconfig rules, no MongoDB) and returns its report.
fn simulate(scenario: serde_json::Value) -> serde_json::Value {
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/render/scripts");
    let file = std::env::temp_dir().join(format!(
        "course-operator-mongo-sim-{}-{:?}.json",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::write(&file, scenario.to_string()).expect("write scenario");
    let out = Command::new("node")
        .arg(scripts.join("mongo-init-sim.js"))
        .arg(&file)
        .output()
        .expect("node runs (it is part of this machine's toolchain)");
    let _ = std::fs::remove_file(&file);
    assert!(out.status.success(), "simulator failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("simulator report parses")
}

fn config_json(members: i32, arbiter: bool) -> serde_json::Value {
    let cs = full_stack();
    let ctx = Context::new(&cs);
    replica_set_config(mongo::replica_set(&ctx), &database(members, arbiter), &BTreeMap::new())
}

fn initiated(members: i32, arbiter: bool) -> serde_json::Value {
    let mut config = config_json(members, arbiter);
    config["version"] = 1.into();
    config["term"] = 1.into();
    config
}

fn hosts_of(config: &serde_json::Value) -> Vec<String> {
    let members: Vec<Member> = serde_json::from_value(config["members"].clone()).expect("members");
    members.into_iter().map(|m| m.host).collect()
}

fn final_members(report: &serde_json::Value) -> Vec<Member> {
    serde_json::from_value(report["config"]["members"].clone()).expect("final members")
}

fn scenario(desired: &serde_json::Value, alive: &[String], initiated: Option<serde_json::Value>) -> serde_json::Value {
    serde_json::json!({
        "desired": desired,
        "username": ADMIN_USERNAME,
        "password": "P".repeat(PASSWORD_LEN),
        "appUsername": APP_USERNAME,
        "appPassword": "A".repeat(PASSWORD_LEN),
        "appDatabase": APP_DATABASE,
        "alive": alive,
        "initiated": initiated,
        "primary": initiated.as_ref().map(|c| hosts_of(c)[0].clone()),
        "waitSeconds": 30,
    })
}

#[test]
fn init_script_initiates_a_new_set_once_and_then_does_nothing() {
    let desired = config_json(3, false);
    let hosts = hosts_of(&desired);
    let report = simulate(scenario(&desired, &hosts, None));
    assert_eq!(report["exitCode"], 0, "{report:#}");
    assert_eq!(report["initiates"], 1);
    let expected: Vec<Member> = serde_json::from_value(desired["members"].clone()).expect("members");
    assert_eq!(final_members(&report), expected);

    let app_user = serde_json::json!({
        "admin.course-app": {
            "user": APP_USERNAME, "db": "admin", "pwd": "A".repeat(PASSWORD_LEN),
            "roles": [{ "role": "readWrite", "db": APP_DATABASE }],
        }
    });
    assert_eq!(report["users"], app_user, "the app user exists after the first run");

    let mut again = scenario(&desired, &hosts, Some(report["config"].clone()));
    again["users"] = app_user.clone();
    let rerun = simulate(again);
    assert_eq!(
        (rerun["exitCode"].clone(), rerun["initiates"].clone(), rerun["reconfigs"].clone()),
        (0.into(), 0.into(), 0.into()),
        "{rerun:#}"
    );
    assert_eq!(rerun["users"], app_user, "a rerun leaves the user as it is");
}

#[test]
fn init_script_scales_one_member_per_reconfig() {
    for (from, from_arbiter, to, to_arbiter) in
        [(3, false, 5, false), (3, false, 4, true), (1, false, 9, false), (5, false, 3, false), (4, true, 3, false)]
    {
        let desired = config_json(to, to_arbiter);
        let start = initiated(from, from_arbiter);
        let mut alive = hosts_of(&desired);
        alive.extend(hosts_of(&start));
        let report = simulate(scenario(&desired, &alive, Some(start.clone())));
        assert_eq!(report["exitCode"], 0, "{from} -> {to}: {report:#}");
        let expected: Vec<Member> = serde_json::from_value(desired["members"].clone()).expect("members");
        let current: Vec<Member> = serde_json::from_value(start["members"].clone()).expect("members");
        assert_eq!(changed_hosts(&final_members(&report), &expected), 0, "{from} -> {to}: {report:#}");
        assert_eq!(report["reconfigs"], reconfig_steps(&current, &expected).len(), "{from} -> {to}");
    }
}

#[test]
fn init_script_steps_down_a_primary_it_must_remove() {
    let desired = config_json(3, false);
    let start = initiated(5, false);
    let alive = hosts_of(&start);
    let mut input = scenario(&desired, &alive, Some(start));
    input["primary"] = alive[4].clone().into();
    let report = simulate(input);
    assert_eq!(report["exitCode"], 0, "{report:#}");
    assert_eq!(report["stepDowns"], 1);
    assert_eq!(hosts_of(&report["config"]), hosts_of(&desired));
}

#[test]
fn init_script_refuses_a_foreign_set_and_fails_when_members_never_answer() {
    let desired = config_json(3, false);
    let hosts = hosts_of(&desired);
    let mut foreign = initiated(3, false);
    foreign["_id"] = "someone-elses-set".into();
    let report = simulate(scenario(&desired, &hosts, Some(foreign)));
    assert_eq!(report["exitCode"], 1, "{report:#}");
    assert_eq!(report["reconfigs"], 0);

    let report = simulate(scenario(&desired, &hosts[..2], None));
    assert_eq!(report["exitCode"], 1, "{report:#}");
    assert_eq!(report["initiates"], 0, "never initiates without every member");
}

#[test]
fn backup_keeps_the_newest_archives_and_never_a_partial_one() {
    let dir = std::env::temp_dir().join(format!("course-operator-mongo-backup-{}", std::process::id()));
    let bin = dir.join("bin");
    let backups = dir.join("backup");
    std::fs::create_dir_all(&bin).expect("bin dir");
    std::fs::create_dir_all(&backups).expect("backup dir");
    // mongodump stand-in: writes the archive it is asked for, or fails when told to.
    std::fs::write(
        bin.join("mongodump"),
        "#!/bin/sh\n[ -z \"$FAIL\" ] || exit 1\nfor a; do case $a in --archive=*) echo dump > \"${a#--archive=}\";; esac; done\n",
    )
    .expect("write stand-in");
    let chmod = Command::new("chmod").arg("+x").arg(bin.join("mongodump")).status().expect("chmod");
    assert!(chmod.success());
    for day in 1..=9 {
        std::fs::write(backups.join(format!("2026010{day}T030000Z.archive.gz")), "old").expect("old archive");
    }
    std::fs::write(backups.join("20251231T030000Z.archive.gz.partial"), "crashed").expect("partial");
    let run = |fail: bool| {
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
        let mut command = Command::new("sh");
        command
            .args(["-c", SCRIPT_BACKUP])
            .env("PATH", path)
            .env("MONGODB_HOSTS", "db-0:27017,db-1:27017")
            .env("REPLICA_SET", "db")
            .env("MONGODB_USERNAME", "admin")
            .env("MONGODB_PASSWORD", "secret")
            .env("KEEP", "3")
            .env("BACKUP_DIR", &backups);
        if fail {
            command.env("FAIL", "1");
        }
        command.output().expect("run backup script")
    };
    let listing = || {
        let mut names: Vec<String> = std::fs::read_dir(&backups)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };

    assert!(!run(true).status.success(), "a failed dump fails the Job");
    assert_eq!(listing().len(), 10, "a failed dump deletes nothing");

    let out = run(false);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let names = listing();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(names.len(), 3, "{names:?}");
    assert_eq!(&names[..2], ["20260108T030000Z.archive.gz", "20260109T030000Z.archive.gz"]);
    assert!(
        names[2].starts_with("20") && names[2].ends_with("Z.archive.gz") && names[2].as_str() > "2026",
        "{names:?}"
    );
}
