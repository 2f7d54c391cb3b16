//! Scheduled backups of the database: the volume holding the archives and the CronJob that
//! dumps the set into it and prunes old archives.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{
    Container, PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, PodTemplateSpec,
    Volume, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{TMP_VOLUME, job_pod, replica_set};
use crate::api::{BackupSpec, DatabaseSpec};
use crate::database::credentials::{PASSWORD_KEY, USERNAME_KEY};
use crate::labels::Component;
use crate::names;
use crate::render::pod::{env_secret, env_value, mount, resources};
use crate::render::{Context, security};

/// The backup CronJob's command.
pub const SCRIPT_BACKUP: &str = include_str!("../scripts/mongo-backup.sh");

const BACKUP_VOLUME: &str = "backup";
const BACKUP_MOUNT: &str = "/backup";

/// `spec.database.backup.image`, else the operator's backup repository (default: the database
/// repository) at `spec.database.version`.
fn backup_image(ctx: &Context<'_>, db: &DatabaseSpec, backup: &BackupSpec) -> String {
    backup.image.clone().unwrap_or_else(|| {
        let repository = ctx.images.backup_repository.as_deref().unwrap_or(&ctx.images.database_repository);
        format!("{repository}:{}", db.version)
    })
}

/// PersistentVolumeClaim `<name>-db-backup` holding the archives.
pub fn backup_claim(ctx: &Context<'_>, db: &DatabaseSpec, backup: &BackupSpec) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ctx.meta(names::database_backup(ctx.name), Component::Backup, BTreeMap::new()),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            storage_class_name: db.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_owned(), backup.storage.clone())])),
                limits: None,
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}

/// CronJob `<name>-db-backup`: `mongodump --oplog --gzip` into the backup volume on
/// `backup.schedule`, keeping the newest `backup.keep` archives.
pub fn backup_cron_job(ctx: &Context<'_>, db: &DatabaseSpec, backup: &BackupSpec) -> CronJob {
    let meta = ctx.meta(names::database_backup(ctx.name), Component::Backup, BTreeMap::new());
    let container = Container {
        name: "mongodump".to_owned(),
        image: Some(backup_image(ctx, db, backup)),
        command: Some(vec!["sh".to_owned(), "-c".to_owned(), SCRIPT_BACKUP.to_owned()]),
        env: Some(vec![
            env_value("HOME", "/tmp"),
            env_value("KEEP", backup.keep),
            env_value("BACKUP_DIR", BACKUP_MOUNT),
            // Root, not the application's user: a dump with the oplog reads every database
            // and the oplog, which readWrite on the course database does not allow.
            env_value("MONGODB_HOSTS", replica_set(ctx).seed_list(db.members)),
            env_value("REPLICA_SET", names::database_replica_set(ctx.name)),
            env_secret("MONGODB_USERNAME", names::database_credentials_secret(ctx.name), USERNAME_KEY),
            env_secret("MONGODB_PASSWORD", names::database_credentials_secret(ctx.name), PASSWORD_KEY),
        ]),
        resources: Some(resources("100m", "256Mi", "1Gi")),
        security_context: Some(security::container()),
        volume_mounts: Some(vec![mount(BACKUP_VOLUME, BACKUP_MOUNT, false), mount(TMP_VOLUME, "/tmp", false)]),
        ..Container::default()
    };
    let claim = Volume {
        name: BACKUP_VOLUME.to_owned(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: names::database_backup(ctx.name),
            read_only: None,
        }),
        ..Volume::default()
    };
    let pod = job_pod(ctx, container, claim);
    CronJob {
        metadata: meta.clone(),
        spec: CronJobSpec {
            schedule: backup.schedule.clone(),
            time_zone: Some("Etc/UTC".to_owned()),
            // Two dumps at once would double the load and race on pruning.
            concurrency_policy: Some("Forbid".to_owned()),
            // A run missed by more than an hour (operator or control plane down) is skipped.
            starting_deadline_seconds: Some(3600),
            successful_jobs_history_limit: Some(3),
            failed_jobs_history_limit: Some(3),
            job_template: JobTemplateSpec {
                metadata: Some(ObjectMeta { labels: meta.labels.clone(), ..ObjectMeta::default() }),
                spec: Some(JobSpec {
                    backoff_limit: Some(2),
                    template: PodTemplateSpec {
                        metadata: Some(ObjectMeta { labels: meta.labels, ..ObjectMeta::default() }),
                        spec: Some(pod),
                    },
                    ..JobSpec::default()
                }),
            },
            ..CronJobSpec::default()
        },
        status: None,
    }
}
