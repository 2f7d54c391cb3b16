//! The database's pods that run mongod: the members StatefulSet (one pod and volume per data
//! member), the arbiter StatefulSet, and the headless Service that gives each pod the stable
//! DNS name the replica-set config names it by.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Container, ExecAction, KeyToPath, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSpec, PodTemplateSpec,
    Probe, SecretVolumeSource, Service, TCPSocketAction, Volume, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{DATABASE_ROLE_LABEL, TMP_VOLUME, image, pod_security};
use crate::api::DatabaseSpec;
use crate::database::MONGO_PORT;
use crate::database::credentials::{KEYFILE_KEY, PASSWORD_KEY, USERNAME_KEY};
use crate::labels::{self, Component};
use crate::names;
use crate::render::pod::{container_port, empty_dir, env_secret, env_value, isolated, mount, resources, spread};
use crate::render::{Context, security, service};

const MEMBER_ROLE: &str = "member";
const ARBITER_ROLE: &str = "arbiter";
/// The Secret's keyfile, as the kubelet projects it (group-readable under fsGroup).
const KEYFILE_SECRET_VOLUME: &str = "keyfile-secret";
const KEYFILE_SECRET_MOUNT: &str = "/var/run/course-db/secret";
/// Private copy of the keyfile: mongod refuses a keyfile that group or others can read.
const KEYFILE_VOLUME: &str = "keyfile";
const KEYFILE_MOUNT: &str = "/var/run/course-db/keyfile";
const DATA_VOLUME: &str = "data";
const DATA_MOUNT: &str = "/data/db";
/// Declared as a VOLUME by the image; an unused emptyDir keeps it off the read-only root.
const CONFIGDB_VOLUME: &str = "configdb";

/// Headless Service `<name>-db-headless`: the members' (and arbiter's) stable DNS names.
/// Not-ready members are published: they must find each other to become ready.
pub fn headless_service(ctx: &Context<'_>) -> Service {
    let ports = vec![service::named_port("mongodb", MONGO_PORT)];
    service::headless(ctx, names::database_headless(ctx.name), Component::Database, ports)
}

fn role_labels(ctx: &Context<'_>, role: &str) -> BTreeMap<String, String> {
    let mut labels = labels::selector(ctx.name, Component::Database);
    labels.insert(DATABASE_ROLE_LABEL.to_owned(), role.to_owned());
    labels
}

/// Copies the keyfile out of the Secret volume as the mongodb user with mode 0400. The old
/// copy is removed first: the emptyDir outlives a container restart and a 0400 file cannot be
/// overwritten.
fn keyfile_init_container(ctx: &Context<'_>, db: &DatabaseSpec) -> Container {
    let target = format!("{KEYFILE_MOUNT}/{KEYFILE_KEY}");
    Container {
        name: "keyfile".to_owned(),
        image: Some(image(ctx, db)),
        command: Some(vec![
            "sh".to_owned(),
            "-c".to_owned(),
            format!("rm -f {target} && cp {KEYFILE_SECRET_MOUNT}/{KEYFILE_KEY} {target} && chmod 0400 {target}"),
        ]),
        resources: Some(resources("10m", "16Mi", "64Mi")),
        security_context: Some(security::container()),
        volume_mounts: Some(vec![
            mount(KEYFILE_SECRET_VOLUME, KEYFILE_SECRET_MOUNT, true),
            mount(KEYFILE_VOLUME, KEYFILE_MOUNT, false),
        ]),
        ..Container::default()
    }
}

fn keyfile_volumes(ctx: &Context<'_>) -> Vec<Volume> {
    vec![
        Volume {
            name: KEYFILE_SECRET_VOLUME.to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(names::database_credentials_secret(ctx.name)),
                items: Some(vec![KeyToPath {
                    key: KEYFILE_KEY.to_owned(),
                    path: KEYFILE_KEY.to_owned(),
                    ..KeyToPath::default()
                }]),
                default_mode: Some(0o400),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        },
        empty_dir(KEYFILE_VOLUME),
    ]
}

/// `mongosh` ping of the local mongod; `ping` needs no authentication.
fn ping_probe() -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(vec![
                "mongosh".to_owned(),
                "--quiet".to_owned(),
                "--norc".to_owned(),
                "--eval".to_owned(),
                "quit(db.adminCommand({ ping: 1 }).ok === 1 ? 0 : 1)".to_owned(),
            ]),
        }),
        initial_delay_seconds: Some(5),
        period_seconds: Some(10),
        // mongosh is a Node.js program: its start alone can take a few seconds on a busy node.
        timeout_seconds: Some(10),
        failure_threshold: Some(3),
        ..Probe::default()
    }
}

fn tcp_probe(period: i32, failure_threshold: i32) -> Probe {
    Probe {
        tcp_socket: Some(TCPSocketAction { port: IntOrString::String("mongodb".to_owned()), host: None }),
        period_seconds: Some(period),
        timeout_seconds: Some(5),
        failure_threshold: Some(failure_threshold),
        ..Probe::default()
    }
}

fn mongod_container(ctx: &Context<'_>, db: &DatabaseSpec, with_root_user: bool) -> Container {
    let mut env = vec![env_value("HOME", "/tmp")];
    if with_root_user {
        // The image's entrypoint creates this root user on the first start of an empty volume,
        // before --replSet applies; the init Job then authenticates as it from outside.
        env.push(env_secret("MONGO_INITDB_ROOT_USERNAME", names::database_credentials_secret(ctx.name), USERNAME_KEY));
        env.push(env_secret("MONGO_INITDB_ROOT_PASSWORD", names::database_credentials_secret(ctx.name), PASSWORD_KEY));
    }
    let mut mounts = vec![
        mount(KEYFILE_VOLUME, KEYFILE_MOUNT, true),
        mount(DATA_VOLUME, DATA_MOUNT, false),
        mount(TMP_VOLUME, "/tmp", false),
        mount(CONFIGDB_VOLUME, "/data/configdb", false),
    ];
    mounts.sort_by(|a, b| a.mount_path.cmp(&b.mount_path));
    Container {
        name: "mongod".to_owned(),
        image: Some(image(ctx, db)),
        args: Some(
            [
                "mongod",
                "--replSet",
                &names::database_replica_set(ctx.name),
                "--bind_ip_all",
                "--port",
                &MONGO_PORT.to_string(),
                "--keyFile",
                &format!("{KEYFILE_MOUNT}/{KEYFILE_KEY}"),
                "--auth",
            ]
            .map(str::to_owned)
            .to_vec(),
        ),
        ports: Some(vec![container_port("mongodb", MONGO_PORT)]),
        env: Some(env),
        // First start runs the entrypoint's temporary mongod, and a restart replays the journal.
        startup_probe: Some(tcp_probe(5, 60)),
        readiness_probe: Some(ping_probe()),
        liveness_probe: Some(tcp_probe(10, 6)),
        security_context: Some(security::container()),
        volume_mounts: Some(mounts),
        ..Container::default()
    }
}

fn mongo_pod(ctx: &Context<'_>, main: Container, init: Container, mut volumes: Vec<Volume>) -> PodSpec {
    volumes.extend(keyfile_volumes(ctx));
    volumes.push(empty_dir(TMP_VOLUME));
    volumes.push(empty_dir(CONFIGDB_VOLUME));
    ctx.placed(PodSpec {
        // A primary steps down (up to 10 s) and flushes before it exits.
        termination_grace_period_seconds: Some(60),
        init_containers: Some(vec![init]),
        containers: vec![main],
        volumes: Some(volumes),
        ..isolated(pod_security())
    })
}

/// StatefulSet `<name>-db`: one pod per data member, each with its own volume.
pub fn members_stateful_set(ctx: &Context<'_>, db: &DatabaseSpec) -> StatefulSet {
    let selector = role_labels(ctx, MEMBER_ROLE);
    let mut extra = BTreeMap::new();
    extra.insert(DATABASE_ROLE_LABEL.to_owned(), MEMBER_ROLE.to_owned());
    let meta = ctx.meta(names::database(ctx.name), Component::Database, extra);
    let mut container = mongod_container(ctx, db, true);
    container.resources = Some(resources("250m", "1Gi", "2Gi"));
    let mut pod = mongo_pod(ctx, container, keyfile_init_container(ctx, db), Vec::new());
    pod.topology_spread_constraints =
        Some(vec![spread(labels::TOPOLOGY_ZONE, &selector), spread(labels::TOPOLOGY_HOSTNAME, &selector)]);
    let claim = PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(DATA_VOLUME.to_owned()),
            labels: Some(labels::common(ctx.name, Component::Database)),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            storage_class_name: db.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_owned(), db.storage.clone())])),
                limits: None,
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    };
    StatefulSet {
        metadata: meta.clone(),
        spec: StatefulSetSpec {
            replicas: Some(db.members),
            service_name: Some(names::database_headless(ctx.name)),
            // rs.initiate needs every member up at once; ordering buys nothing here.
            pod_management_policy: Some("Parallel".to_owned()),
            selector: LabelSelector { match_labels: Some(selector), match_expressions: None },
            revision_history_limit: Some(3),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: meta.labels, ..ObjectMeta::default() }),
                spec: Some(pod),
            },
            volume_claim_templates: Some(vec![claim]),
            // Data outlives both deletion and scale-down: a mistaken edit must not destroy it.
            persistent_volume_claim_retention_policy: Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
                when_deleted: Some("Retain".to_owned()),
                when_scaled: Some("Retain".to_owned()),
            }),
            ..StatefulSetSpec::default()
        },
        status: None,
    }
}

/// StatefulSet `<name>-db-arbiter`: one arbiter, no volume (it holds no data) and no root
/// user (arbiters never serve users).
pub fn arbiter_stateful_set(ctx: &Context<'_>, db: &DatabaseSpec) -> StatefulSet {
    let selector = role_labels(ctx, ARBITER_ROLE);
    let mut extra = BTreeMap::new();
    extra.insert(DATABASE_ROLE_LABEL.to_owned(), ARBITER_ROLE.to_owned());
    let meta = ctx.meta(names::database_arbiter(ctx.name), Component::Database, extra);
    let mut container = mongod_container(ctx, db, false);
    container.resources = Some(resources("50m", "128Mi", "512Mi"));
    let pod = mongo_pod(ctx, container, keyfile_init_container(ctx, db), vec![empty_dir(DATA_VOLUME)]);
    StatefulSet {
        metadata: meta.clone(),
        spec: StatefulSetSpec {
            replicas: Some(1),
            service_name: Some(names::database_headless(ctx.name)),
            pod_management_policy: Some("Parallel".to_owned()),
            selector: LabelSelector { match_labels: Some(selector), match_expressions: None },
            revision_history_limit: Some(3),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: meta.labels, ..ObjectMeta::default() }),
                spec: Some(pod),
            },
            ..StatefulSetSpec::default()
        },
        status: None,
    }
}
