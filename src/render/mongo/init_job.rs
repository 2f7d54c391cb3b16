//! The init Job that initiates the replica set or walks it to the desired members (the
//! planner of `database::membership`, in JavaScript), its ConfigMap of scripts and desired
//! config, and the Job's name, which follows that config.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{ConfigMap, ConfigMapVolumeSource, Container, PodTemplateSpec, Volume};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sha2::{Digest, Sha256};

use super::{DATABASE_ROLE_LABEL, TMP_VOLUME, image, job_pod, replica_set};
use crate::api::DatabaseSpec;
use crate::database;
use crate::database::credentials::{APP_DATABASE, APP_PASSWORD_KEY, APP_USERNAME_KEY, PASSWORD_KEY, USERNAME_KEY};
use crate::labels::{self, Component};
use crate::names;
use crate::render::pod::{env_secret, env_value, mount, resources};
use crate::render::{Context, security};

/// The init Job's planner (pure; `tests/data_mongo_scripts.rs` also runs it under node).
pub const SCRIPT_PLAN: &str = include_str!("../scripts/mongo-plan.js");
/// The init Job's entry point (needs mongosh and live members).
pub const SCRIPT_INIT: &str = include_str!("../scripts/mongo-init.js");

const INIT_ROLE: &str = "init";
const INIT_CONFIG_VOLUME: &str = "init";
const INIT_CONFIG_MOUNT: &str = "/opt/course-db";
const REPLICA_SET_FILE: &str = "replica-set.json";

/// Labels of the init Job's pods, which the database NetworkPolicy admits. They carry no
/// component label on purpose: with `component: database` they would match the database PDB
/// (a PDB refuses pods whose controller has no scale subresource) and the headless Service.
pub fn init_pod_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::INSTANCE.to_owned(), name.to_owned()),
        (labels::MANAGED_BY.to_owned(), labels::MANAGER.to_owned()),
        (DATABASE_ROLE_LABEL.to_owned(), INIT_ROLE.to_owned()),
    ])
}

/// Files of the init ConfigMap: the scripts and the desired config (pretty JSON, so
/// `kubectl get cm -o yaml` is readable).
pub fn init_files(ctx: &Context<'_>, db: &DatabaseSpec) -> BTreeMap<String, String> {
    let config = database::replica_set_config(replica_set(ctx), db, &BTreeMap::new());
    BTreeMap::from([
        ("mongo-init.js".to_owned(), SCRIPT_INIT.to_owned()),
        ("mongo-plan.js".to_owned(), SCRIPT_PLAN.to_owned()),
        (REPLICA_SET_FILE.to_owned(), serde_json::to_string_pretty(&config).unwrap_or_default() + "\n"),
    ])
}

/// ConfigMap `<name>-db-init` with [`init_files`].
pub fn init_config_map(ctx: &Context<'_>, db: &DatabaseSpec) -> ConfigMap {
    ConfigMap {
        metadata: ctx.meta(names::database_init(ctx.name), Component::Database, BTreeMap::new()),
        data: Some(init_files(ctx, db)),
        ..ConfigMap::default()
    }
}

/// 8 hex digits of the SHA-256 of the init files: a new desired config (or a new script)
/// names a new Job, which is what makes it run again; the same config never reruns.
pub fn init_hash(ctx: &Context<'_>, db: &DatabaseSpec) -> String {
    let mut hasher = Sha256::new();
    for (name, text) in init_files(ctx, db) {
        hasher.update(name.as_bytes());
        hasher.update([0]);
        hasher.update(text.as_bytes());
        hasher.update([0]);
    }
    hasher.finalize().iter().take(4).map(|b| format!("{b:02x}")).collect()
}

/// Name of the init Job of the desired config: [`names::database_init_job`] with [`init_hash`].
pub fn init_job_name(ctx: &Context<'_>, db: &DatabaseSpec) -> String {
    names::database_init_job(ctx.name, &init_hash(ctx, db))
}

/// Job `<name>-db-init-<hash>`: initiates the set, or walks it to the desired members.
pub fn init_job(ctx: &Context<'_>, db: &DatabaseSpec) -> Job {
    let mut extra = BTreeMap::new();
    extra.insert(DATABASE_ROLE_LABEL.to_owned(), INIT_ROLE.to_owned());
    let meta = ctx.meta(init_job_name(ctx, db), Component::Database, extra);
    let mut pod_labels = init_pod_labels(ctx.name);
    pod_labels.insert(labels::NAME.to_owned(), labels::APP_NAME.to_owned());
    pod_labels.insert(labels::PART_OF.to_owned(), ctx.name.to_owned());
    let container = Container {
        name: "mongo-init".to_owned(),
        image: Some(image(ctx, db)),
        command: Some(
            ["mongosh", "--nodb", "--norc", "--quiet", &format!("{INIT_CONFIG_MOUNT}/mongo-init.js")]
                .map(str::to_owned)
                .to_vec(),
        ),
        env: Some(vec![
            env_value("HOME", "/tmp"),
            env_value("REPLICA_SET_CONFIG", format!("{INIT_CONFIG_MOUNT}/{REPLICA_SET_FILE}")),
            env_value("PLAN_SCRIPT", format!("{INIT_CONFIG_MOUNT}/mongo-plan.js")),
            env_value("WAIT_SECONDS", 900),
            env_secret("ADMIN_USERNAME", names::database_credentials_secret(ctx.name), USERNAME_KEY),
            env_secret("ADMIN_PASSWORD", names::database_credentials_secret(ctx.name), PASSWORD_KEY),
            env_value("APP_DATABASE", APP_DATABASE),
            env_secret("APP_USERNAME", names::database_credentials_secret(ctx.name), APP_USERNAME_KEY),
            env_secret("APP_PASSWORD", names::database_credentials_secret(ctx.name), APP_PASSWORD_KEY),
        ]),
        resources: Some(resources("50m", "128Mi", "512Mi")),
        security_context: Some(security::container()),
        volume_mounts: Some(vec![mount(INIT_CONFIG_VOLUME, INIT_CONFIG_MOUNT, true), mount(TMP_VOLUME, "/tmp", false)]),
        ..Container::default()
    };
    let config = Volume {
        name: INIT_CONFIG_VOLUME.to_owned(),
        config_map: Some(ConfigMapVolumeSource {
            name: names::database_init(ctx.name),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    };
    let pod = job_pod(ctx, container, config);
    Job {
        metadata: meta,
        spec: Some(JobSpec {
            // Members may still be pulling images or binding volumes: retry, with backoff.
            backoff_limit: Some(6),
            // Kept a day for `kubectl logs`; if the controller then re-creates it, the rerun
            // finds nothing to change.
            ttl_seconds_after_finished: Some(86_400),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(pod_labels), ..ObjectMeta::default() }),
                spec: Some(pod),
            },
            ..JobSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::mongo::test_support::{database, full_stack};

    #[test]
    fn init_job_name_follows_the_desired_config() {
        let cs = full_stack();
        let ctx = Context::new(&cs);
        let three = init_job(&ctx, &database(3, false));
        let five = init_job(&ctx, &database(5, false));
        let name = three.metadata.name.clone().unwrap_or_default();
        assert!(name.starts_with("academy-db-init-") && name.len() == "academy-db-init-".len() + 8, "{name}");
        assert_ne!(three.metadata.name, five.metadata.name);
        assert_eq!(three.metadata.name, init_job(&ctx, &database(3, false)).metadata.name);
    }

    #[test]
    fn init_job_pods_stay_out_of_the_database_selector() {
        let cs = full_stack();
        let ctx = Context::new(&cs);
        let job = init_job(&ctx, &database(3, false));
        let pod_labels = job.spec.and_then(|s| s.template.metadata).and_then(|m| m.labels).unwrap_or_default();
        let database = labels::selector(ctx.name, Component::Database);
        assert!(!database.iter().all(|(k, v)| pod_labels.get(k) == Some(v)), "matches the PDB and headless Service");
        assert!(init_pod_labels(ctx.name).iter().all(|(k, v)| pod_labels.get(k) == Some(v)));
    }
}
