//! Names of the child objects, derived from the CourseService name in one place so renderers
//! and the wiring between components (env vars, Service hosts) always agree.

use crate::zones::Zone;

/// Per-zone ReplicaSet of one revision: `<name>-<revision>-<zone>`.
pub fn app_workload(name: &str, revision: &str, zone: &Zone) -> String {
    format!("{name}-{revision}-{}", zone.slug())
}

/// The main Service, HPA and application PDB share the CourseService's name.
pub fn app(name: &str) -> String {
    name.to_owned()
}

/// Service selecting the new revision during a blue-green rollout.
pub fn preview_service(name: &str) -> String {
    format!("{name}-preview")
}

/// Redis StatefulSet (and its PDB, ConfigMap).
pub fn cache(name: &str) -> String {
    format!("{name}-cache")
}

/// Headless Service giving each Redis pod a stable DNS name.
pub fn cache_headless(name: &str) -> String {
    format!("{name}-cache-headless")
}

/// Sentinel master name the application asks the Sentinels for.
pub fn cache_master(name: &str) -> String {
    format!("{name}-cache")
}

/// MongoDB StatefulSet (and its PDB).
pub fn database(name: &str) -> String {
    format!("{name}-db")
}

/// Headless Service of the MongoDB members.
pub fn database_headless(name: &str) -> String {
    format!("{name}-db-headless")
}

/// Secret holding the application's MongoDB connection string (key [`DATABASE_URI_KEY`]).
pub fn database_app_secret(name: &str) -> String {
    format!("{name}-db-app")
}

/// Key of the connection string in [`database_app_secret`].
pub const DATABASE_URI_KEY: &str = "uri";

/// Secret of the database's generated credentials: keyfile, root user (for the Jobs) and
/// application user.
pub fn database_credentials_secret(name: &str) -> String {
    format!("{name}-db-credentials")
}

/// MongoDB arbiter StatefulSet.
pub fn database_arbiter(name: &str) -> String {
    format!("{name}-db-arbiter")
}

/// Replica set name (`_id` of its config, `mongod --replSet`): the members' StatefulSet name.
pub fn database_replica_set(name: &str) -> String {
    database(name)
}

/// ConfigMap of the database init Job: its scripts and the desired replica-set config.
pub fn database_init(name: &str) -> String {
    format!("{name}-db-init")
}

/// Init Job of one desired config, `<name>-db-init-<config_hash>`: a new config (or a new
/// script) names a new Job, which is what makes it run again.
pub fn database_init_job(name: &str, config_hash: &str) -> String {
    format!("{}-{config_hash}", database_init(name))
}

/// Backup PersistentVolumeClaim and CronJob.
pub fn database_backup(name: &str) -> String {
    format!("{name}-db-backup")
}

/// Stable DNS name of pod `ordinal` of a StatefulSet behind a headless Service.
pub fn stateful_pod_host(statefulset: &str, ordinal: i32, headless: &str, namespace: &str) -> String {
    format!("{statefulset}-{ordinal}.{headless}.{namespace}.svc.cluster.local")
}
