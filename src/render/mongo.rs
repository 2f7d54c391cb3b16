//! MongoDB replica set as the application's database: credentials and connection Secrets,
//! members and arbiter StatefulSets, the init Job that initiates and reconfigures the set, and
//! scheduled backups.
//!
//! The replica-set logic that matters for safety is pure Rust here: which members vote
//! ([`desired_members`]) and how to move from one member list to another one member at a time
//! ([`reconfig_steps`]). The Job runs the same planner in JavaScript (`scripts/mongo-plan.js`);
//! a test feeds both the same cases and requires identical answers.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec};
use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, Job, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, ExecAction,
    KeyToPath, PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, PodSecurityContext,
    PodSpec, PodTemplateSpec, Probe, ResourceRequirements, Secret, SecretKeySelector, SecretVolumeSource, Service,
    ServicePort, ServiceSpec, TCPSocketAction, TopologySpreadConstraint, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use rand::RngExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Child, Context, pdb, security};
use crate::api::{BackupSpec, DatabaseSpec};
use crate::labels::{self, Component};
use crate::names;

/// Port of every member.
pub const MONGO_PORT: i32 = 27017;
/// MongoDB allows at most seven voting members in a replica set.
pub const MAX_VOTING_MEMBERS: usize = 7;
/// The root user the image's entrypoint creates on each member's first start.
pub const ADMIN_USERNAME: &str = "admin";
/// Label telling members, the arbiter and the init Job's pods apart (all are the database's).
pub const DATABASE_ROLE_LABEL: &str = "microcourses.io/database-role";
/// Member `_id` of the arbiter: fixed, because MongoDB never lets a member's `_id` change and
/// the data members' ids follow their ordinals (0..=49).
pub const ARBITER_MEMBER_ID: u32 = 100;
/// The application's user, created by the init Job: `readWrite` on [`APP_DATABASE`] only.
pub const APP_USERNAME: &str = "course-app";
/// The course database, the only one the application's user may read and write. The course
/// app's default too; the connection string names it, so the app uses it whatever its default.
pub const APP_DATABASE: &str = "microcourses";
/// Keys of the credentials Secret.
pub const KEYFILE_KEY: &str = "keyfile";
pub const USERNAME_KEY: &str = "username";
pub const PASSWORD_KEY: &str = "password";
pub const APP_USERNAME_KEY: &str = "app-username";
pub const APP_PASSWORD_KEY: &str = "app-password";

/// The init Job's planner (pure, also run by the unit tests under node).
pub const SCRIPT_PLAN: &str = include_str!("scripts/mongo-plan.js");
/// The init Job's entry point (needs mongosh and live members).
pub const SCRIPT_INIT: &str = include_str!("scripts/mongo-init.js");
/// The backup CronJob's command.
pub const SCRIPT_BACKUP: &str = include_str!("scripts/mongo-backup.sh");

const KEYFILE_LEN: usize = 756;
const PASSWORD_LEN: usize = 32;
const BASE64_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const ALPHANUMERIC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// UID/GID of the `mongodb` user in the official image.
const MONGO_UID: i64 = 999;
const MEMBER_ROLE: &str = "member";
const ARBITER_ROLE: &str = "arbiter";
const INIT_ROLE: &str = "init";
/// The Secret's keyfile, as the kubelet projects it (group-readable under fsGroup).
const KEYFILE_SECRET_VOLUME: &str = "keyfile-secret";
const KEYFILE_SECRET_MOUNT: &str = "/var/run/course-db/secret";
/// Private copy of the keyfile: mongod refuses a keyfile that group or others can read.
const KEYFILE_VOLUME: &str = "keyfile";
const KEYFILE_MOUNT: &str = "/var/run/course-db/keyfile";
const DATA_VOLUME: &str = "data";
const DATA_MOUNT: &str = "/data/db";
/// mongod's unix socket, the entrypoint's temporary files, mongosh's HOME: the root
/// filesystem is read-only.
const TMP_VOLUME: &str = "tmp";
/// Declared as a VOLUME by the image; an unused emptyDir keeps it off the read-only root.
const CONFIGDB_VOLUME: &str = "configdb";
const INIT_CONFIG_VOLUME: &str = "init";
const INIT_CONFIG_MOUNT: &str = "/opt/course-db";
const BACKUP_VOLUME: &str = "backup";
const BACKUP_MOUNT: &str = "/backup";
const REPLICA_SET_FILE: &str = "replica-set.json";

/// Secret `<name>-db-credentials`: keyfile, root user (for the Jobs) and application user.
pub fn credentials_secret_name(name: &str) -> String {
    format!("{name}-db-credentials")
}

/// ConfigMap `<name>-db-init`: the init Job's scripts and desired config.
pub fn init_config_map_name(name: &str) -> String {
    format!("{name}-db-init")
}

/// StatefulSet `<name>-db-arbiter`.
pub fn arbiter_name(name: &str) -> String {
    format!("{name}-db-arbiter")
}

/// PersistentVolumeClaim and CronJob `<name>-db-backup`.
pub fn backup_name(name: &str) -> String {
    format!("{name}-db-backup")
}

/// Replica set name: `<name>-db`.
pub fn replica_set_name(name: &str) -> String {
    names::database(name)
}

/// Generated secrets of the database. Created once; the controller never regenerates them,
/// because members and the application keep using the first ones.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseCredentials {
    /// Shared secret the members authenticate each other with (base64 alphabet, 756 chars).
    pub keyfile: String,
    /// Password of the root user `admin`: only the init and backup Jobs use it.
    pub admin_password: String,
    /// Password of the application's user [`APP_USERNAME`].
    pub app_password: String,
}

impl std::fmt::Debug for DatabaseCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseCredentials")
            .field("keyfile", &format_args!("<redacted, {} chars>", self.keyfile.len()))
            .field("admin_password", &format_args!("<redacted>"))
            .field("app_password", &format_args!("<redacted>"))
            .finish()
    }
}

impl DatabaseCredentials {
    /// Fresh credentials from the thread-local CSPRNG (ChaCha seeded by the operating system).
    /// Drawing characters uniformly from the 64-character alphabet carries the same entropy
    /// as base64 of random bytes (6 bits per character).
    pub fn generate() -> Self {
        let mut rng = rand::rng();
        let mut draw = |alphabet: &[u8], len: usize| -> String {
            (0..len).map(|_| char::from(alphabet[rng.random_range(0..alphabet.len())])).collect()
        };
        Self {
            keyfile: draw(BASE64_ALPHABET, KEYFILE_LEN),
            admin_password: draw(ALPHANUMERIC, PASSWORD_LEN),
            app_password: draw(ALPHANUMERIC, PASSWORD_LEN),
        }
    }

    /// The credentials stored in an existing credentials Secret, to render the application
    /// Secret with the passwords the members already use. `None` without a keyfile or root
    /// password: nothing can be kept. A Secret written by an operator version before the
    /// application user has neither app key: the app password is generated here and
    /// [`Self::is_stored_in`] says it still has to be added (the keyfile and root password
    /// are kept as they are).
    pub fn from_secret(secret: &Secret) -> Option<Self> {
        let data = secret.data.as_ref()?;
        let text = |key: &str| data.get(key).and_then(|b| String::from_utf8(b.0.clone()).ok());
        let (keyfile, admin_password) = (text(KEYFILE_KEY)?, text(PASSWORD_KEY)?);
        let app_password = text(APP_PASSWORD_KEY).unwrap_or_else(|| Self::generate().app_password);
        Some(Self { keyfile, admin_password, app_password })
    }

    /// Whether `secret` holds exactly these credentials under every key
    /// [`credentials_secret`] writes: then whatever is derived from them (the application's
    /// connection string) names passwords the database knows or will know.
    pub fn is_stored_in(&self, secret: &Secret) -> bool {
        let expected = credentials_data(self);
        secret.data.as_ref().is_some_and(|data| expected.iter().all(|(k, v)| data.get(k) == Some(v)))
    }
}

fn credentials_data(creds: &DatabaseCredentials) -> BTreeMap<String, ByteString> {
    BTreeMap::from([
        (KEYFILE_KEY.to_owned(), ByteString(creds.keyfile.clone().into_bytes())),
        (USERNAME_KEY.to_owned(), ByteString(ADMIN_USERNAME.as_bytes().to_vec())),
        (PASSWORD_KEY.to_owned(), ByteString(creds.admin_password.clone().into_bytes())),
        (APP_USERNAME_KEY.to_owned(), ByteString(APP_USERNAME.as_bytes().to_vec())),
        (APP_PASSWORD_KEY.to_owned(), ByteString(creds.app_password.clone().into_bytes())),
    ])
}

/// Secret `<name>-db-credentials` with `keyfile`, the root user (`username`, `password`) and
/// the application user (`app-username`, `app-password`). The controller creates it once and
/// never changes or deletes a key: losing it locks the members out. Keys a newer version adds
/// are added to an existing Secret.
pub fn credentials_secret(ctx: &Context<'_>, creds: &DatabaseCredentials) -> Secret {
    let mut metadata = ctx.meta(credentials_secret_name(ctx.name), Component::Database, BTreeMap::new());
    metadata.annotations.get_or_insert_default().insert(labels::GENERATED.to_owned(), "true".to_owned());
    Secret { metadata, type_: Some("Opaque".to_owned()), data: Some(credentials_data(creds)), ..Secret::default() }
}

fn namespace<'a>(ctx: &Context<'a>) -> &'a str {
    ctx.namespace.unwrap_or("default")
}

/// `host:27017` of data member `ordinal`.
fn member_host(ctx: &Context<'_>, ordinal: i32) -> String {
    let host = names::stateful_pod_host(
        &names::database(ctx.name),
        ordinal,
        &names::database_headless(ctx.name),
        namespace(ctx),
    );
    format!("{host}:{MONGO_PORT}")
}

fn arbiter_host(ctx: &Context<'_>) -> String {
    let host =
        names::stateful_pod_host(&arbiter_name(ctx.name), 0, &names::database_headless(ctx.name), namespace(ctx));
    format!("{host}:{MONGO_PORT}")
}

/// `host:27017` of every data member, comma-separated: the seed list.
fn seed_list(ctx: &Context<'_>, db: &DatabaseSpec) -> String {
    (0..db.members).map(|i| member_host(ctx, i)).collect::<Vec<_>>().join(",")
}

/// Connection string of the application: every data member as seed, the course database,
/// the replica set, the application's user (never root; it is defined in `admin`). The
/// password is alphanumeric, so it needs no escaping.
pub fn connection_uri(ctx: &Context<'_>, db: &DatabaseSpec, creds: &DatabaseCredentials) -> String {
    format!(
        "mongodb://{APP_USERNAME}:{}@{}/{APP_DATABASE}?replicaSet={}&authSource=admin",
        creds.app_password,
        seed_list(ctx, db),
        replica_set_name(ctx.name)
    )
}

/// Secret [`names::database_app_secret`] with the application's connection string under
/// [`names::DATABASE_URI_KEY`].
pub fn app_secret(ctx: &Context<'_>, db: &DatabaseSpec, creds: &DatabaseCredentials) -> Secret {
    Secret {
        metadata: ctx.meta(names::database_app_secret(ctx.name), Component::Database, BTreeMap::new()),
        type_: Some("Opaque".to_owned()),
        data: Some(BTreeMap::from([(
            names::DATABASE_URI_KEY.to_owned(),
            ByteString(connection_uri(ctx, db, creds).into_bytes()),
        )])),
        ..Secret::default()
    }
}

/// One member of a replica-set config, with the fields the operator manages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    #[serde(rename = "_id")]
    pub id: u32,
    pub host: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub arbiter_only: bool,
    pub priority: u32,
    pub votes: u32,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

impl Member {
    fn votes(&self) -> bool {
        self.votes > 0
    }
}

/// Whether the arbiter is part of the set: only when it turns an even number of voting data
/// members odd. With eight or more data members seven of them vote, and an arbiter would make
/// it eight.
pub fn uses_arbiter(db: &DatabaseSpec) -> bool {
    let data_voters = usize::try_from(db.members).unwrap_or(0).min(MAX_VOTING_MEMBERS);
    db.arbiter && data_voters % 2 == 0 && data_voters < MAX_VOTING_MEMBERS
}

/// The members the set should have. The lowest ordinals vote: at most seven voters, always an
/// odd number (an even count can split evenly and elect nobody), so without an arbiter the
/// highest-ordinal would-be voter of an even count gets no vote. Non-voters have priority 0,
/// as MongoDB requires. `zones` (ordinal → zone) adds `{zone: …}` tags where known.
pub fn desired_members(ctx: &Context<'_>, db: &DatabaseSpec, zones: &BTreeMap<i32, String>) -> Vec<Member> {
    let count = usize::try_from(db.members).unwrap_or(0);
    let mut data_voters = count.min(MAX_VOTING_MEMBERS);
    let arbiter = uses_arbiter(db);
    if data_voters % 2 == 0 && !arbiter {
        data_voters = data_voters.saturating_sub(1);
    }
    let mut members: Vec<Member> = (0..db.members)
        .zip(0u32..)
        .map(|(ordinal, id)| {
            let votes = u32::from(usize::try_from(ordinal).is_ok_and(|o| o < data_voters));
            Member {
                id,
                host: member_host(ctx, ordinal),
                arbiter_only: false,
                priority: votes,
                votes,
                tags: zones.get(&ordinal).map(|z| BTreeMap::from([("zone".to_owned(), z.clone())])).unwrap_or_default(),
            }
        })
        .collect();
    if arbiter {
        members.push(Member {
            id: ARBITER_MEMBER_ID,
            host: arbiter_host(ctx),
            arbiter_only: true,
            priority: 0,
            votes: 1,
            tags: BTreeMap::new(),
        });
    }
    members
}

/// The replica-set config document (`rs.initiate` form): `_id` and members.
pub fn replica_set_config(ctx: &Context<'_>, db: &DatabaseSpec, zones: &BTreeMap<i32, String>) -> serde_json::Value {
    serde_json::json!({
        "_id": replica_set_name(ctx.name),
        "members": desired_members(ctx, db, zones),
    })
}

/// One pending change of the walk from the current to the desired members.
#[derive(Clone, Debug)]
enum Change {
    Remove { id: u32, host: String, delta: i32 },
    Update { id: u32, to: Member, delta: i32 },
    Add { id: u32, to: Member, delta: i32 },
}

impl Change {
    fn id(&self) -> u32 {
        match self {
            Self::Remove { id, .. } | Self::Update { id, .. } | Self::Add { id, .. } => *id,
        }
    }

    /// Change in the number of voting members.
    fn delta(&self) -> i32 {
        match self {
            Self::Remove { delta, .. } | Self::Update { delta, .. } | Self::Add { delta, .. } => *delta,
        }
    }
}

fn pending(config: &[Member], desired: &[Member]) -> Vec<Change> {
    let vote = |m: &Member| i32::from(m.votes());
    let mut changes = Vec::new();
    for m in config {
        match desired.iter().find(|d| d.host == m.host) {
            // An arbiter cannot become a data member or back: remove it, add it anew later.
            None => changes.push(Change::Remove { id: m.id, host: m.host.clone(), delta: -vote(m) }),
            Some(d) if d.arbiter_only != m.arbiter_only => {
                changes.push(Change::Remove { id: m.id, host: m.host.clone(), delta: -vote(m) });
            }
            Some(d) if d.priority != m.priority || d.votes != m.votes || d.tags != m.tags => {
                // A member keeps its `_id` for life: MongoDB rejects a reconfig changing it.
                let to = Member { id: m.id, ..d.clone() };
                changes.push(Change::Update { id: m.id, delta: vote(&to) - vote(m), to });
            }
            Some(_) => {}
        }
    }
    for d in desired {
        if !config.iter().any(|m| m.host == d.host) {
            let taken = |id: u32| config.iter().any(|m| m.id == id);
            let id = if taken(d.id) { (0..=255).find(|&id| !taken(id)).unwrap_or(d.id) } else { d.id };
            changes.push(Change::Add { id, delta: vote(d), to: Member { id, ..d.clone() } });
        }
    }
    changes
}

/// Toward the desired voter count, never above [`MAX_VOTING_MEMBERS`], never to zero voters;
/// shrink from the highest `_id`, grow from the lowest.
fn choose(config: &[Member], changes: &[Change], target_voters: usize) -> Option<Change> {
    let voters = config.iter().filter(|m| m.votes()).count();
    let want = match voters.cmp(&target_voters) {
        std::cmp::Ordering::Greater => -1,
        std::cmp::Ordering::Less => 1,
        std::cmp::Ordering::Equal if changes.iter().any(|c| c.delta() == 0) => 0,
        std::cmp::Ordering::Equal if voters < MAX_VOTING_MEMBERS => 1,
        std::cmp::Ordering::Equal => -1,
    };
    let matching: Vec<&Change> = changes.iter().filter(|c| c.delta() == want).collect();
    let pool: Vec<&Change> = if matching.is_empty() { changes.iter().collect() } else { matching };
    let picked =
        if want == -1 { pool.into_iter().max_by_key(|c| c.id()) } else { pool.into_iter().min_by_key(|c| c.id()) };
    picked.cloned()
}

fn apply(config: &mut Vec<Member>, change: Change) {
    match change {
        Change::Remove { host, .. } => config.retain(|m| m.host != host),
        Change::Update { to, .. } => {
            if let Some(m) = config.iter_mut().find(|m| m.host == to.host) {
                *m = to;
            }
        }
        Change::Add { to, .. } => config.push(to),
    }
    config.sort_by_key(|m| m.id);
}

/// Successive member lists from `current` to `desired`, each differing from the one before by
/// exactly one member (added, removed or changed), as MongoDB's reconfig requires; empty when
/// nothing changes. Members are matched by host and keep their `_id`. While the voter count
/// must shrink it shrinks first, while it must grow it grows first, so voters stay within
/// 1..=7 whenever `current` and `desired` are valid configs.
pub fn reconfig_steps(current: &[Member], desired: &[Member]) -> Vec<Vec<Member>> {
    let target_voters = desired.iter().filter(|m| m.votes()).count();
    let mut config: Vec<Member> = current.to_vec();
    config.sort_by_key(|m| m.id);
    let mut steps = Vec::new();
    // Every host changes at most twice (remove + add), so the walk always ends.
    for _ in 0..=2 * (current.len() + desired.len()) {
        let changes = pending(&config, desired);
        let Some(change) = choose(&config, &changes, target_voters) else { break };
        apply(&mut config, change);
        steps.push(config.clone());
    }
    steps
}

/// Headless Service `<name>-db-headless`: the members' (and arbiter's) stable DNS names.
/// Not-ready members are published: they must find each other to become ready.
pub fn headless_service(ctx: &Context<'_>) -> Service {
    Service {
        metadata: ctx.meta(names::database_headless(ctx.name), Component::Database, BTreeMap::new()),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            publish_not_ready_addresses: Some(true),
            selector: Some(labels::selector(ctx.name, Component::Database)),
            ports: Some(vec![ServicePort {
                name: Some("mongodb".to_owned()),
                port: MONGO_PORT,
                target_port: Some(IntOrString::String("mongodb".to_owned())),
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

fn role_labels(ctx: &Context<'_>, role: &str) -> BTreeMap<String, String> {
    let mut labels = labels::selector(ctx.name, Component::Database);
    labels.insert(DATABASE_ROLE_LABEL.to_owned(), role.to_owned());
    labels
}

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

/// Default repository of the database images (the official MongoDB image).
pub const MONGO_REPOSITORY: &str = "docker.io/library/mongo";

/// `spec.database.image`, else the operator's database repository at `spec.database.version`.
fn image(ctx: &Context<'_>, db: &DatabaseSpec) -> String {
    db.image.clone().unwrap_or_else(|| format!("{}:{}", ctx.images.database_repository, db.version))
}

/// `spec.database.backup.image`, else the operator's backup repository (default: the database
/// repository) at `spec.database.version`.
fn backup_image(ctx: &Context<'_>, db: &DatabaseSpec, backup: &BackupSpec) -> String {
    backup.image.clone().unwrap_or_else(|| {
        let repository = ctx.images.backup_repository.as_deref().unwrap_or(&ctx.images.database_repository);
        format!("{repository}:{}", db.version)
    })
}

fn pod_security() -> PodSecurityContext {
    PodSecurityContext {
        // Large data volumes: re-owning every file on each start would delay it by minutes.
        fs_group_change_policy: Some("OnRootMismatch".to_owned()),
        ..security::pod(MONGO_UID)
    }
}

fn env_value(name: &str, value: impl ToString) -> EnvVar {
    EnvVar { name: name.to_owned(), value: Some(value.to_string()), value_from: None }
}

fn env_secret(name: &str, secret: String, key: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector { name: secret, key: key.to_owned(), optional: Some(false) }),
            ..EnvVarSource::default()
        }),
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

fn empty_dir(name: &str) -> Volume {
    Volume { name: name.to_owned(), empty_dir: Some(EmptyDirVolumeSource::default()), ..Volume::default() }
}

fn resources(cpu: &str, memory: &str, memory_limit: &str) -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity(cpu.to_owned())),
            ("memory".to_owned(), Quantity(memory.to_owned())),
        ])),
        limits: Some(BTreeMap::from([("memory".to_owned(), Quantity(memory_limit.to_owned()))])),
        ..ResourceRequirements::default()
    }
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
                secret_name: Some(credentials_secret_name(ctx.name)),
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
        env.push(env_secret("MONGO_INITDB_ROOT_USERNAME", credentials_secret_name(ctx.name), USERNAME_KEY));
        env.push(env_secret("MONGO_INITDB_ROOT_PASSWORD", credentials_secret_name(ctx.name), PASSWORD_KEY));
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
                &replica_set_name(ctx.name),
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
        ports: Some(vec![ContainerPort {
            name: Some("mongodb".to_owned()),
            container_port: MONGO_PORT,
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
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

fn spread(key: &str, selector: &BTreeMap<String, String>) -> TopologySpreadConstraint {
    TopologySpreadConstraint {
        max_skew: 1,
        topology_key: key.to_owned(),
        // Best effort: a one-zone or one-node cluster still runs every member.
        when_unsatisfiable: "ScheduleAnyway".to_owned(),
        label_selector: Some(LabelSelector { match_labels: Some(selector.clone()), match_expressions: None }),
        ..TopologySpreadConstraint::default()
    }
}

fn mongo_pod(ctx: &Context<'_>, main: Container, init: Container, mut volumes: Vec<Volume>) -> PodSpec {
    volumes.extend(keyfile_volumes(ctx));
    volumes.push(empty_dir(TMP_VOLUME));
    volumes.push(empty_dir(CONFIGDB_VOLUME));
    ctx.placed(PodSpec {
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        // A primary steps down (up to 10 s) and flushes before it exits.
        termination_grace_period_seconds: Some(60),
        security_context: Some(pod_security()),
        init_containers: Some(vec![init]),
        containers: vec![main],
        volumes: Some(volumes),
        ..PodSpec::default()
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
    let meta = ctx.meta(arbiter_name(ctx.name), Component::Database, extra);
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

/// Files of the init ConfigMap: the scripts and the desired config (pretty JSON, so
/// `kubectl get cm -o yaml` is readable).
pub fn init_files(ctx: &Context<'_>, db: &DatabaseSpec) -> BTreeMap<String, String> {
    let config = replica_set_config(ctx, db, &BTreeMap::new());
    BTreeMap::from([
        ("mongo-init.js".to_owned(), SCRIPT_INIT.to_owned()),
        ("mongo-plan.js".to_owned(), SCRIPT_PLAN.to_owned()),
        (REPLICA_SET_FILE.to_owned(), serde_json::to_string_pretty(&config).unwrap_or_default() + "\n"),
    ])
}

/// ConfigMap `<name>-db-init` with [`init_files`].
pub fn init_config_map(ctx: &Context<'_>, db: &DatabaseSpec) -> ConfigMap {
    ConfigMap {
        metadata: ctx.meta(init_config_map_name(ctx.name), Component::Database, BTreeMap::new()),
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

/// Job `<name>-db-init-<hash>`: initiates the set, or walks it to the desired members.
pub fn init_job(ctx: &Context<'_>, db: &DatabaseSpec) -> Job {
    let mut extra = BTreeMap::new();
    extra.insert(DATABASE_ROLE_LABEL.to_owned(), INIT_ROLE.to_owned());
    let meta =
        ctx.meta(format!("{}-{}", init_config_map_name(ctx.name), init_hash(ctx, db)), Component::Database, extra);
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
            env_secret("ADMIN_USERNAME", credentials_secret_name(ctx.name), USERNAME_KEY),
            env_secret("ADMIN_PASSWORD", credentials_secret_name(ctx.name), PASSWORD_KEY),
            env_value("APP_DATABASE", APP_DATABASE),
            env_secret("APP_USERNAME", credentials_secret_name(ctx.name), APP_USERNAME_KEY),
            env_secret("APP_PASSWORD", credentials_secret_name(ctx.name), APP_PASSWORD_KEY),
        ]),
        resources: Some(resources("50m", "128Mi", "512Mi")),
        security_context: Some(security::container()),
        volume_mounts: Some(vec![mount(INIT_CONFIG_VOLUME, INIT_CONFIG_MOUNT, true), mount(TMP_VOLUME, "/tmp", false)]),
        ..Container::default()
    };
    let pod = ctx.placed(PodSpec {
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        restart_policy: Some("Never".to_owned()),
        security_context: Some(pod_security()),
        containers: vec![container],
        volumes: Some(vec![
            Volume {
                name: INIT_CONFIG_VOLUME.to_owned(),
                config_map: Some(ConfigMapVolumeSource {
                    name: init_config_map_name(ctx.name),
                    ..ConfigMapVolumeSource::default()
                }),
                ..Volume::default()
            },
            empty_dir(TMP_VOLUME),
        ]),
        ..PodSpec::default()
    });
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

/// PersistentVolumeClaim `<name>-db-backup` holding the archives.
pub fn backup_claim(ctx: &Context<'_>, db: &DatabaseSpec, backup: &BackupSpec) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ctx.meta(backup_name(ctx.name), Component::Backup, BTreeMap::new()),
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
    let meta = ctx.meta(backup_name(ctx.name), Component::Backup, BTreeMap::new());
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
            env_value("MONGODB_HOSTS", seed_list(ctx, db)),
            env_value("REPLICA_SET", replica_set_name(ctx.name)),
            env_secret("MONGODB_USERNAME", credentials_secret_name(ctx.name), USERNAME_KEY),
            env_secret("MONGODB_PASSWORD", credentials_secret_name(ctx.name), PASSWORD_KEY),
        ]),
        resources: Some(resources("100m", "256Mi", "1Gi")),
        security_context: Some(security::container()),
        volume_mounts: Some(vec![mount(BACKUP_VOLUME, BACKUP_MOUNT, false), mount(TMP_VOLUME, "/tmp", false)]),
        ..Container::default()
    };
    let pod = ctx.placed(PodSpec {
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        restart_policy: Some("Never".to_owned()),
        security_context: Some(pod_security()),
        containers: vec![container],
        volumes: Some(vec![
            Volume {
                name: BACKUP_VOLUME.to_owned(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: backup_name(ctx.name),
                    read_only: None,
                }),
                ..Volume::default()
            },
            empty_dir(TMP_VOLUME),
        ]),
        ..PodSpec::default()
    });
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

/// Every child of the database, Secrets first (the pods reference them): the credentials
/// Secret (generated: created once, missing keys added, never overwritten) and the application
/// Secret (applied; neither is ever pruned), headless Service, members StatefulSet, arbiter
/// StatefulSet (when [`uses_arbiter`]), PDB, init ConfigMap and Job, and with `db.backup` the
/// backup volume and CronJob.
pub fn children(ctx: &Context<'_>, db: &DatabaseSpec, creds: &DatabaseCredentials) -> Vec<Child> {
    let mut children = vec![
        Child::Secret(Box::new(credentials_secret(ctx, creds))),
        Child::Secret(Box::new(app_secret(ctx, db, creds))),
        Child::Service(Box::new(headless_service(ctx))),
        Child::StatefulSet(Box::new(members_stateful_set(ctx, db))),
    ];
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
        children.push(Child::PersistentVolumeClaim(Box::new(backup_claim(ctx, db, backup))));
        children.push(Child::CronJob(Box::new(backup_cron_job(ctx, db, backup))));
    }
    children
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;
    use std::process::Command;

    use proptest::prelude::*;

    use super::*;
    use crate::api::CourseService;
    use crate::manifest;

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

    /// Obviously fake, fixed credentials so snapshots are stable.
    fn fake_credentials() -> DatabaseCredentials {
        DatabaseCredentials {
            keyfile: "K".repeat(KEYFILE_LEN),
            admin_password: "P".repeat(PASSWORD_LEN),
            app_password: "A".repeat(PASSWORD_LEN),
        }
    }

    fn voters(members: &[Member]) -> usize {
        members.iter().filter(|m| m.votes > 0).count()
    }

    /// The rules MongoDB and we hold every config to.
    fn assert_valid(members: &[Member], what: &str) {
        assert!(voters(members) <= MAX_VOTING_MEMBERS, "{what}: more than 7 voters");
        assert!(voters(members) >= 1, "{what}: no voter");
        for m in members {
            assert!(m.priority == 0 || m.votes == 1, "{what}: {} has priority without a vote", m.host);
            assert!(!m.arbiter_only || m.priority == 0, "{what}: arbiter {} with priority", m.host);
        }
        let hosts: BTreeSet<&str> = members.iter().map(|m| m.host.as_str()).collect();
        assert_eq!(hosts.len(), members.len(), "{what}: duplicate host");
        let ids: BTreeSet<u32> = members.iter().map(|m| m.id).collect();
        assert_eq!(ids.len(), members.len(), "{what}: duplicate _id");
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
        desired_members(&ctx, &database(members, arbiter), &BTreeMap::new())
    }

    #[test]
    fn credentials_are_random_and_well_formed() {
        let a = DatabaseCredentials::generate();
        let b = DatabaseCredentials::generate();
        assert_ne!(a, b);
        assert_eq!(a.keyfile.len(), 756);
        assert!(a.keyfile.bytes().all(|c| BASE64_ALPHABET.contains(&c)));
        for password in [&a.admin_password, &a.app_password] {
            assert_eq!(password.len(), 32);
            assert!(password.bytes().all(|c| c.is_ascii_alphanumeric()));
        }
        assert_ne!(a.admin_password, a.app_password);
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let creds = DatabaseCredentials::generate();
        let printed = format!("{creds:?} {creds:#?}");
        assert!(!printed.contains(&creds.admin_password));
        assert!(!printed.contains(&creds.app_password));
        assert!(!printed.contains(&creds.keyfile[..16]));
        assert!(printed.contains("redacted"));
    }

    #[test]
    fn credentials_round_trip_through_their_secret() {
        let cs = full_stack();
        let ctx = Context::new(&cs);
        let creds = DatabaseCredentials::generate();
        let secret = credentials_secret(&ctx, &creds);
        assert_eq!(secret.metadata.name.as_deref(), Some("academy-db-credentials"));
        assert_eq!(DatabaseCredentials::from_secret(&secret).as_ref(), Some(&creds));
        assert!(creds.is_stored_in(&secret));
    }

    #[test]
    fn a_secret_from_before_the_application_user_keeps_root_and_keyfile_and_gains_an_app_password() {
        let cs = full_stack();
        let ctx = Context::new(&cs);
        let creds = DatabaseCredentials::generate();
        let mut old = credentials_secret(&ctx, &creds);
        let data = old.data.as_mut().expect("data");
        data.remove(APP_USERNAME_KEY);
        data.remove(APP_PASSWORD_KEY);

        let read = DatabaseCredentials::from_secret(&old).expect("root and keyfile are enough");
        assert_eq!((&read.keyfile, &read.admin_password), (&creds.keyfile, &creds.admin_password));
        assert_eq!(read.app_password.len(), PASSWORD_LEN);
        assert_ne!(read.app_password, creds.app_password, "generated anew, not guessed");
        assert!(!read.is_stored_in(&old), "the app keys still have to be added");

        // What the operator then adds: exactly the two missing keys; the old ones unchanged.
        let desired = credentials_secret(&ctx, &read);
        let desired_data = desired.data.expect("data");
        for (key, value) in old.data.as_ref().expect("data") {
            assert_eq!(desired_data.get(key), Some(value), "{key} kept");
        }
        assert_eq!(desired_data.len(), old.data.as_ref().map_or(0, BTreeMap::len) + 2);
        assert_eq!(desired_data.get(APP_USERNAME_KEY).map(|b| b.0.as_slice()), Some(APP_USERNAME.as_bytes()));

        let mut no_root = credentials_secret(&ctx, &creds);
        no_root.data.as_mut().expect("data").remove(PASSWORD_KEY);
        assert_eq!(DatabaseCredentials::from_secret(&no_root), None, "root is never made up");
    }

    #[test]
    fn the_credentials_secret_is_marked_generated_and_the_app_secret_is_not() {
        let cs = full_stack();
        let ctx = Context::new(&cs);
        let generated = |s: &Secret| s.metadata.annotations.as_ref().and_then(|a| a.get(labels::GENERATED)).cloned();
        assert_eq!(generated(&credentials_secret(&ctx, &fake_credentials())).as_deref(), Some("true"));
        assert_eq!(generated(&app_secret(&ctx, &database(3, false), &fake_credentials())), None);
    }

    #[test]
    fn application_uri_names_the_app_user_and_every_data_member_never_root() {
        let cs = full_stack();
        let ctx = Context::new(&cs);
        let creds = fake_credentials();
        let uri = connection_uri(&ctx, &database(3, false), &creds);
        let password = "A".repeat(32);
        assert_eq!(
            uri,
            format!(
                "mongodb://course-app:{password}@academy-db-0.academy-db-headless.default.svc.cluster.local:27017,\
                 academy-db-1.academy-db-headless.default.svc.cluster.local:27017,\
                 academy-db-2.academy-db-headless.default.svc.cluster.local:27017/\
                 microcourses?replicaSet=academy-db&authSource=admin"
            )
        );
        assert!(!uri.contains(&creds.admin_password) && !uri.contains(&format!("//{ADMIN_USERNAME}:")));
    }

    #[test]
    fn only_the_jobs_get_root_and_the_init_job_gets_the_app_user_from_the_credentials_secret() {
        let cs = full_stack();
        let ctx = Context::new(&cs);
        let mut db = database(3, false);
        db.backup = cs.spec.database.as_ref().and_then(|d| d.backup.clone());
        let creds_secret = credentials_secret_name(ctx.name);
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

    #[test]
    fn three_members_all_vote() {
        let members = members_for(3, false);
        assert_eq!(
            members.iter().map(|m| (m.id, m.votes, m.priority)).collect::<Vec<_>>(),
            [(0, 1, 1), (1, 1, 1), (2, 1, 1)]
        );
    }

    #[test]
    fn an_even_count_gets_an_arbiter_or_loses_a_vote() {
        let with = members_for(4, true);
        assert_eq!(voters(&with), 5);
        assert!(with.last().is_some_and(|m| m.arbiter_only && m.id == ARBITER_MEMBER_ID && m.votes == 1));
        let without = members_for(4, false);
        assert_eq!(voters(&without), 3);
        assert_eq!((without[3].votes, without[3].priority), (0, 0), "highest ordinal steps back");
        // Odd counts need no arbiter even when asked for one.
        assert!(!members_for(5, true).iter().any(|m| m.arbiter_only));
        // Eight members: seven vote, an arbiter would make it eight.
        assert!(!members_for(8, true).iter().any(|m| m.arbiter_only));
        assert_eq!(voters(&members_for(8, true)), 7);
    }

    #[test]
    fn zones_become_member_tags() {
        let cs = full_stack();
        let ctx = Context::new(&cs);
        let zones = BTreeMap::from([(0, "eastus2-1".to_owned()), (2, "eastus2-3".to_owned())]);
        let config = replica_set_config(&ctx, &database(3, false), &zones);
        assert_eq!(config["_id"], "academy-db");
        assert_eq!(config["members"][0]["tags"]["zone"], "eastus2-1");
        assert!(config["members"][1].get("tags").is_none());
        assert_eq!(config["members"][2]["tags"]["zone"], "eastus2-3");
    }

    #[test]
    fn scaling_three_to_five_adds_one_voter_at_a_time() {
        let steps = reconfig_steps(&members_for(3, false), &members_for(5, false));
        let counts: Vec<(usize, usize)> = steps.iter().map(|s| (s.len(), voters(s))).collect();
        assert_eq!(counts, [(4, 4), (5, 5)]);
        assert!(reconfig_steps(&members_for(5, false), &members_for(5, false)).is_empty());
    }

    proptest! {
        #[test]
        fn desired_members_follow_the_voting_rules(members in 1i32..=50, arbiter: bool) {
            let config = members_for(members, arbiter);
            assert_valid(&config, "desired");
            prop_assert_eq!(voters(&config) % 2, 1, "odd number of voters");
            prop_assert!(config.iter().all(|m| m.priority == 0 || m.votes == 1));
            let data = config.iter().filter(|m| !m.arbiter_only).count();
            prop_assert_eq!(data, usize::try_from(members).unwrap_or_default());
        }

        #[test]
        fn reconfig_moves_one_member_per_step(
            from in 1i32..=50, from_arbiter: bool, to in 1i32..=50, to_arbiter: bool,
        ) {
            let current = members_for(from, from_arbiter);
            let desired = members_for(to, to_arbiter);
            let steps = reconfig_steps(&current, &desired);
            let mut previous = current.clone();
            for (i, step) in steps.iter().enumerate() {
                assert_valid(step, &format!("step {i} of {from}{} -> {to}{}", if from_arbiter {"+a"} else {""}, if to_arbiter {"+a"} else {""}));
                prop_assert_eq!(changed_hosts(&previous, step), 1, "one member per step");
                prop_assert!(voters(&previous).abs_diff(voters(step)) <= 1, "one voter per step");
                previous = step.clone();
            }
            prop_assert_eq!(changed_hosts(&previous, &desired), 0, "ends at the desired members");
        }
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
        replica_set_config(&ctx, &database(members, arbiter), &BTreeMap::new())
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

    fn scenario(
        desired: &serde_json::Value,
        alive: &[String],
        initiated: Option<serde_json::Value>,
    ) -> serde_json::Value {
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

    #[test]
    fn full_stack_database_renders_as_snapshot() {
        let cs = full_stack();
        let ctx = Context::new(&cs);
        let db = cs.spec.database.clone().expect("full-stack has a database");
        let yaml = crate::render::to_yaml(&children(&ctx, &db, &fake_credentials())).expect("YAML");
        insta::assert_snapshot!("full_stack_database", yaml);
    }

    #[test]
    fn arbiter_renders_only_when_it_makes_the_voters_odd() {
        let cs = full_stack();
        let ctx = Context::new(&cs);
        let kinds = |db: &DatabaseSpec| -> Vec<String> {
            children(&ctx, db, &fake_credentials()).iter().map(|c| c.name().to_owned()).collect()
        };
        assert!(kinds(&database(4, true)).contains(&"academy-db-arbiter".to_owned()));
        assert!(!kinds(&database(3, true)).contains(&"academy-db-arbiter".to_owned()));
        let yaml = crate::render::to_yaml(&children(&ctx, &database(4, true), &fake_credentials())).expect("YAML");
        insta::assert_snapshot!("four_members_with_arbiter", yaml);
    }
}
