//! MongoDB replica set as the application's database, as Kubernetes objects: credentials and
//! connection Secrets (`secrets`), the members and arbiter StatefulSets with their headless
//! Service (`statefulset`), the init Job that initiates and reconfigures the set (`init_job`),
//! and scheduled backups (`backup`). [`children`] renders them all.
//!
//! Which members the set has and how it is reconfigured, and the credentials themselves, are
//! the `database` module's; this module only builds objects from them.

mod backup;
mod init_job;
mod secrets;
mod statefulset;

use k8s_openapi::api::core::v1::{Container, PodSecurityContext, PodSpec, Volume};

pub use self::backup::{SCRIPT_BACKUP, backup_claim, backup_cron_job};
pub use self::init_job::{
    SCRIPT_INIT, SCRIPT_PLAN, init_config_map, init_files, init_hash, init_job, init_job_name, init_pod_labels,
};
pub use self::secrets::{app_secret, connection_uri, credentials_secret};
pub use self::statefulset::{arbiter_stateful_set, headless_service, members_stateful_set};
use super::pod::{empty_dir, isolated};
use super::{Child, Context, pdb, security};
use crate::api::DatabaseSpec;
use crate::database::{DatabaseCredentials, MongoReplicaSet, uses_arbiter};
use crate::labels::Component;
use crate::names;
use crate::plan::DatabasePlan;

/// Label telling members, the arbiter and the init Job's pods apart (all are the database's).
pub const DATABASE_ROLE_LABEL: &str = "microcourses.io/database-role";

/// Default repository of the database images (the official MongoDB image).
pub const MONGO_REPOSITORY: &str = "docker.io/library/mongo";

/// UID/GID of the `mongodb` user in the official image.
const MONGO_UID: i64 = 999;
/// mongod's unix socket, the entrypoint's temporary files, mongosh's HOME: the root
/// filesystem is read-only.
const TMP_VOLUME: &str = "tmp";

/// The replica set `ctx` renders; a file rendered without a namespace names `default`.
pub fn replica_set<'a>(ctx: &Context<'a>) -> MongoReplicaSet<'a> {
    MongoReplicaSet { name: ctx.name, namespace: ctx.namespace.unwrap_or("default") }
}

/// `spec.database.image`, else the operator's database repository at `spec.database.version`.
fn image(ctx: &Context<'_>, db: &DatabaseSpec) -> String {
    db.image.clone().unwrap_or_else(|| format!("{}:{}", ctx.images.database_repository, db.version))
}

/// The pod of a database Job (the init Job, the backup CronJob's Job): `container` run once,
/// unprivileged, with `volume` and a scratch `/tmp`.
fn job_pod(ctx: &Context<'_>, container: Container, volume: Volume) -> PodSpec {
    ctx.placed(PodSpec {
        restart_policy: Some("Never".to_owned()),
        containers: vec![container],
        volumes: Some(vec![volume, empty_dir(TMP_VOLUME)]),
        ..isolated(pod_security())
    })
}

fn pod_security() -> PodSecurityContext {
    PodSecurityContext {
        // Large data volumes: re-owning every file on each start would delay it by minutes.
        fs_group_change_policy: Some("OnRootMismatch".to_owned()),
        ..security::pod(MONGO_UID)
    }
}

/// Every child of the database, Secrets first (the pods reference them): the credentials
/// Secret (generated: created once, missing keys added, never overwritten) and, when `plan`
/// publishes it, the application Secret (applied; neither is ever pruned), headless Service,
/// members StatefulSet (never below `plan.members_floor`), arbiter StatefulSet (when
/// [`uses_arbiter`]), PDB, init ConfigMap and Job, and with `db.backup` the backup volume and
/// CronJob. The member volumes outlive the CourseService (retention policy); so must the
/// credentials that open them and the backups: those carry no owner reference, so garbage
/// collection never takes them.
pub fn children(ctx: &Context<'_>, db: &DatabaseSpec, creds: &DatabaseCredentials, plan: &DatabasePlan) -> Vec<Child> {
    let mut credentials = credentials_secret(ctx, creds);
    credentials.metadata.owner_references = None;
    let mut members = members_stateful_set(ctx, db);
    members.spec.replicas = members.spec.replicas.map(|n| n.max(plan.members_floor));
    let mut children = vec![Child::Secret(Box::new(credentials))];
    if plan.publish_app_secret {
        children.push(Child::Secret(Box::new(app_secret(ctx, db, creds))));
    }
    children.push(Child::Service(Box::new(headless_service(ctx))));
    children.push(Child::StatefulSet(Box::new(members)));
    if uses_arbiter(db) {
        children.push(Child::StatefulSet(Box::new(arbiter_stateful_set(ctx, db))));
    }
    children.push(Child::PodDisruptionBudget(Box::new(pdb::budget(
        ctx,
        names::database(ctx.name),
        Component::Database,
        1,
    ))));
    children.push(Child::ConfigMap(Box::new(init_config_map(ctx, db))));
    children.push(Child::Job(Box::new(init_job(ctx, db))));
    if let Some(backup) = &db.backup {
        let mut claim = backup_claim(ctx, db, backup);
        claim.metadata.owner_references = None;
        children.push(Child::PersistentVolumeClaim(Box::new(claim)));
        children.push(Child::CronJob(Box::new(backup_cron_job(ctx, db, backup))));
    }
    children
}

#[cfg(test)]
pub(crate) mod test_support {
    //! What the database renderers' tests share: the `full-stack` sample and small specs.

    use std::path::Path;

    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    use crate::api::{CourseService, DatabaseSpec};
    use crate::database::DatabaseCredentials;
    use crate::database::credentials::{KEYFILE_LEN, PASSWORD_LEN};
    use crate::manifest;

    pub(crate) fn full_stack() -> CourseService {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/samples/full-stack.yaml");
        manifest::parse(&std::fs::read_to_string(path).expect("read sample")).expect("sample parses")
    }

    pub(crate) fn database(members: i32, arbiter: bool) -> DatabaseSpec {
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

    /// Obviously fake, fixed credentials so snapshots are stable.
    pub(crate) fn fake_credentials() -> DatabaseCredentials {
        DatabaseCredentials {
            keyfile: "K".repeat(KEYFILE_LEN),
            admin_password: "P".repeat(PASSWORD_LEN),
            app_password: "A".repeat(PASSWORD_LEN),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::{EnvVar, PodSpec};

    use super::test_support::{database, fake_credentials, full_stack};
    use super::*;
    use crate::database::credentials::{APP_DATABASE, APP_PASSWORD_KEY, APP_USERNAME_KEY, PASSWORD_KEY, USERNAME_KEY};

    #[test]
    fn only_the_jobs_get_root_and_the_init_job_gets_the_app_user_from_the_credentials_secret() {
        let cs = full_stack();
        let ctx = Context::new(&cs);
        let mut db = database(3, false);
        db.backup = cs.spec.database.as_ref().and_then(|d| d.backup.clone());
        let creds_secret = names::database_credentials_secret(ctx.name);
        let secret_refs = |env: &[EnvVar]| -> BTreeMap<String, (String, String)> {
            env.iter()
                .filter_map(|e| {
                    let r = e.value_from.as_ref()?.secret_key_ref.as_ref()?;
                    Some((e.name.clone(), (r.name.clone(), r.key.clone())))
                })
                .collect()
        };
        let container_env = |pod: Option<PodSpec>| pod.map(|p| p.containers[0].env.clone().unwrap_or_default());
        let init = container_env(init_job(&ctx, &db).spec.and_then(|s| s.template.spec)).expect("init pod");
        let backup = db.backup.as_ref().expect("full-stack has backups");
        let dump =
            container_env(backup_cron_job(&ctx, &db, backup).spec.job_template.spec.and_then(|s| s.template.spec))
                .expect("backup pod");
        let entry = |key: &str| (creds_secret.clone(), key.to_owned());
        assert_eq!(
            secret_refs(&init),
            BTreeMap::from([
                ("ADMIN_USERNAME".to_owned(), entry(USERNAME_KEY)),
                ("ADMIN_PASSWORD".to_owned(), entry(PASSWORD_KEY)),
                ("APP_USERNAME".to_owned(), entry(APP_USERNAME_KEY)),
                ("APP_PASSWORD".to_owned(), entry(APP_PASSWORD_KEY)),
            ])
        );
        assert!(init.iter().any(|e| e.name == "APP_DATABASE" && e.value.as_deref() == Some(APP_DATABASE)));
        assert_eq!(
            secret_refs(&dump),
            BTreeMap::from([
                ("MONGODB_USERNAME".to_owned(), entry(USERNAME_KEY)),
                ("MONGODB_PASSWORD".to_owned(), entry(PASSWORD_KEY)),
            ])
        );
    }

    /// The plan of a settled database: every child rendered as the spec says.
    fn publish_all() -> DatabasePlan {
        DatabasePlan { init_job: String::new(), members_floor: 0, publish_app_secret: true }
    }

    #[test]
    fn full_stack_database_renders_as_snapshot() {
        let cs = full_stack();
        let ctx = Context::new(&cs);
        let db = cs.spec.database.clone().expect("full-stack has a database");
        let yaml = crate::render::to_yaml(&children(&ctx, &db, &fake_credentials(), &publish_all())).expect("YAML");
        insta::assert_snapshot!("full_stack_database", yaml);
    }

    #[test]
    fn arbiter_renders_only_when_it_makes_the_voters_odd() {
        let cs = full_stack();
        let ctx = Context::new(&cs);
        let kinds = |db: &DatabaseSpec| -> Vec<String> {
            children(&ctx, db, &fake_credentials(), &publish_all()).iter().map(|c| c.name().to_owned()).collect()
        };
        assert!(kinds(&database(4, true)).contains(&"academy-db-arbiter".to_owned()));
        assert!(!kinds(&database(3, true)).contains(&"academy-db-arbiter".to_owned()));
        let yaml = crate::render::to_yaml(&children(&ctx, &database(4, true), &fake_credentials(), &publish_all()))
            .expect("YAML");
        insta::assert_snapshot!("four_members_with_arbiter", yaml);
    }
}
