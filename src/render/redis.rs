//! Redis with Sentinel as the application's cache: ConfigMap, Services, StatefulSet and PDB.
//!
//! Every pod runs a Redis and a Sentinel. Who is master is decided at start by the scripts in
//! `scripts/` (embedded into the ConfigMap): a starting pod asks every other pod's Sentinel,
//! follows the master they name, and only when no Sentinel anywhere knows a master does pod 0
//! become master. The topology reaches the scripts through environment variables, so the
//! data-tier test runs the very same scripts on 127.0.0.1 with other ports.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, EnvVar, ExecAction, Lifecycle, LifecycleHandler, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, Service, ServiceSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use sha2::{Digest, Sha256};

use super::pod::{container_port, empty_dir, env_field, env_value, isolated, mount, resources, spread};
use super::service::{self, named_port};
use super::{Child, Context, pdb, security};
use crate::api::CacheSpec;
use crate::labels::{self, Component};
use crate::names;
use crate::quantity;

/// Default image of both containers (Redis and Sentinel are the same binary).
pub const REDIS_IMAGE: &str = "docker.io/library/redis:7.2";
/// Port Redis listens on.
pub const REDIS_PORT: i32 = 6379;
/// Sentinel port of the cache pods (the application finds the master through it).
pub const SENTINEL_PORT: i32 = 26379;
/// How long the Sentinels wait for a silent master before failing over. Shorter fails over
/// faster but mistakes a long GC-free stall (a slow fork, a busy node) for a dead master.
pub const DOWN_AFTER_MILLISECONDS: u32 = 5_000;
/// Bound of one failover attempt; a failed attempt is retried after twice this. The usual
/// failed attempt is a split vote: with the master's pod gone, its Sentinel is gone too, and
/// the two left see it down in the same instant, each voting for itself (seen in the data
/// tier's failover test). At 60 s that left the cache without a master for two minutes; at
/// 10 s the retry comes after 20 s, each Sentinel then waiting a random extra up to 1 s, so
/// one of them is elected. A cache fails over in well under 10 s: nothing is persisted.
pub const FAILOVER_TIMEOUT_MILLISECONDS: u32 = 10_000;

/// Shared functions of the three scripts below (sourced).
pub const SCRIPT_COMMON: &str = include_str!("scripts/redis-common.sh");
/// Entry point of the Redis container.
pub const SCRIPT_REDIS_START: &str = include_str!("scripts/redis-start.sh");
/// Entry point of the Sentinel container.
pub const SCRIPT_SENTINEL_START: &str = include_str!("scripts/sentinel-start.sh");
/// preStop hook of the Redis container.
pub const SCRIPT_REDIS_PRESTOP: &str = include_str!("scripts/redis-prestop.sh");

/// Pod annotation holding a hash of the ConfigMap: the scripts read it only at start, so a
/// change must roll the pods (one at a time, each handing mastership over in its preStop).
pub const CONFIG_HASH_ANNOTATION: &str = "microcourses.io/config-hash";

const REDIS_CONTAINER: &str = "redis";
const SENTINEL_CONTAINER: &str = "sentinel";
const REDIS_PORT_NAME: &str = "redis";
const SENTINEL_PORT_NAME: &str = "sentinel";
/// UID/GID of the `redis` user in the official image.
const REDIS_UID: i64 = 999;
/// The ConfigMap: rendered configs and scripts, read-only.
const CONFIG_VOLUME: &str = "config";
const CONFIG_MOUNT: &str = "/opt/course-cache";
/// Effective config files: Redis and Sentinel rewrite them, and the root filesystem is read-only.
const RUN_VOLUME: &str = "run";
const RUN_MOUNT: &str = "/run/redis";
/// Redis working directory. An emptyDir on purpose: this is a cache, nothing is persisted,
/// and a restarted pod resynchronises from the master.
const DATA_VOLUME: &str = "data";
const DATA_MOUNT: &str = "/data";
/// Time the preStop hook waits for the Sentinels to name another master; below the grace
/// period so Redis still gets its SIGTERM in time.
const PRESTOP_WAIT_SECONDS: i64 = 20;
const TERMINATION_GRACE_SECONDS: i64 = 30;
/// Redis's maxmemory when the spec's is not a size; unreachable after validation, and the
/// CRD's default rather than no limit at all (which would let the cache grow until OOM-killed).
const FALLBACK_MAX_MEMORY_BYTES: u64 = 256 << 20;
const MEBIBYTE: u64 = 1 << 20;

/// Every child of the cache: ConfigMap, headless and client Services, StatefulSet, PDB.
pub fn children(ctx: &Context<'_>, cache: &CacheSpec) -> Vec<Child> {
    vec![
        Child::ConfigMap(Box::new(config_map(ctx, cache))),
        Child::Service(Box::new(headless_service(ctx))),
        Child::Service(Box::new(client_service(ctx))),
        Child::StatefulSet(Box::new(stateful_set(ctx, cache))),
        Child::PodDisruptionBudget(Box::new(pdb::budget(ctx, names::cache(ctx.name), Component::Cache, 1))),
    ]
}

/// Sentinels that must agree a master is down before a failover: a majority, so a minority
/// cut off by a partition can never promote a second master.
pub fn sentinel_quorum(replicas: i32) -> i32 {
    replicas.max(1) / 2 + 1
}

/// maxmemory in bytes from `cache.maxMemory`.
pub fn max_memory_bytes(cache: &CacheSpec) -> u64 {
    quantity::to_bytes(&cache.max_memory.0).unwrap_or(FALLBACK_MAX_MEMORY_BYTES)
}

/// Base redis.conf. redis-start.sh appends the pod's own settings (port, announced name,
/// `replicaof`), which override the values here.
pub fn redis_conf(cache: &CacheSpec) -> String {
    format!(
        "# Rendered by course-operator. redis-start.sh copies it and appends this pod's settings.\n\
         port {REDIS_PORT}\n\
         # Every interface, IPv6 only where the pod has it; the NetworkPolicy limits who connects.\n\
         bind * -::*\n\
         protected-mode no\n\
         maxmemory {maxmemory}\n\
         # A cache: under memory pressure evict the least recently used key, whatever its TTL.\n\
         maxmemory-policy allkeys-lru\n\
         # No persistence: a restarted pod resynchronises from the master.\n\
         save \"\"\n\
         appendonly no\n\
         # Full resyncs stream straight to the replica: there is no disk worth writing to.\n\
         repl-diskless-sync yes\n\
         repl-diskless-sync-delay 0\n\
         replica-read-only yes\n\
         replica-serve-stale-data yes\n",
        maxmemory = max_memory_bytes(cache),
    )
}

/// Base sentinel.conf. sentinel-start.sh appends the pod's settings and the `sentinel monitor`
/// line; Sentinel then rewrites the copy as it learns replicas and peers.
pub fn sentinel_conf() -> String {
    format!(
        "# Rendered by course-operator. sentinel-start.sh copies it and appends this pod's settings.\n\
         port {SENTINEL_PORT}\n\
         bind * -::*\n\
         protected-mode no\n\
         # Pods are known by their stable DNS names, never by pod IPs that change on restart.\n\
         sentinel resolve-hostnames yes\n\
         sentinel announce-hostnames yes\n"
    )
}

/// The ConfigMap's files: base configs and the startup scripts, by file name.
pub fn config_files(cache: &CacheSpec) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("redis.conf".to_owned(), redis_conf(cache)),
        ("sentinel.conf".to_owned(), sentinel_conf()),
        ("redis-common.sh".to_owned(), SCRIPT_COMMON.to_owned()),
        ("redis-start.sh".to_owned(), SCRIPT_REDIS_START.to_owned()),
        ("sentinel-start.sh".to_owned(), SCRIPT_SENTINEL_START.to_owned()),
        ("redis-prestop.sh".to_owned(), SCRIPT_REDIS_PRESTOP.to_owned()),
    ])
}

/// ConfigMap `<name>-cache` with [`config_files`].
pub fn config_map(ctx: &Context<'_>, cache: &CacheSpec) -> ConfigMap {
    ConfigMap {
        metadata: ctx.meta(names::cache(ctx.name), Component::Cache, BTreeMap::new()),
        data: Some(config_files(cache)),
        ..ConfigMap::default()
    }
}

/// Headless Service `<name>-cache-headless`: gives every pod the stable DNS name the scripts
/// and Sentinels use. Not-ready pods are published because a starting pod must reach its
/// peers' Sentinels before it can become ready.
pub fn headless_service(ctx: &Context<'_>) -> Service {
    let ports = vec![named_port(REDIS_PORT_NAME, REDIS_PORT), named_port(SENTINEL_PORT_NAME, SENTINEL_PORT)];
    service::headless(ctx, names::cache_headless(ctx.name), Component::Cache, ports)
}

/// Client Service `<name>-cache`: Sentinel only. Clients ask any Sentinel for the master and
/// connect to it by name; a Service in front of Redis itself would route writes to replicas.
pub fn client_service(ctx: &Context<'_>) -> Service {
    Service {
        metadata: ctx.meta(names::cache(ctx.name), Component::Cache, BTreeMap::new()),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(labels::selector(ctx.name, Component::Cache)),
            ports: Some(vec![named_port(SENTINEL_PORT_NAME, SENTINEL_PORT)]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// Host names of every pod's `port`, in ordinal order. The namespace is left to the kubelet
/// (`$(POD_NAMESPACE)`), so a manifest rendered without one still names the right hosts.
fn peers(ctx: &Context<'_>, replicas: i32, port: i32) -> String {
    let statefulset = names::cache(ctx.name);
    let headless = names::cache_headless(ctx.name);
    (0..replicas)
        .map(|i| format!("{}:{port}", names::stateful_pod_host(&statefulset, i, &headless, "$(POD_NAMESPACE)")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The environment redis-common.sh documents, as the StatefulSet provides it.
fn topology_env(ctx: &Context<'_>, cache: &CacheSpec) -> Vec<EnvVar> {
    let headless = names::cache_headless(ctx.name);
    vec![
        env_field("POD_NAME", "metadata.name"),
        env_field("POD_NAMESPACE", "metadata.namespace"),
        env_field("ORDINAL", "metadata.labels['apps.kubernetes.io/pod-index']"),
        env_value("MY_HOST", format!("$(POD_NAME).{headless}.$(POD_NAMESPACE).svc.cluster.local")),
        env_value("MASTER_NAME", names::cache_master(ctx.name)),
        env_value("REDIS_NODES", peers(ctx, cache.replicas, REDIS_PORT)),
        env_value("SENTINELS", peers(ctx, cache.replicas, SENTINEL_PORT)),
        env_value("REDIS_PORT", REDIS_PORT),
        env_value("SENTINEL_PORT", SENTINEL_PORT),
        env_value("CONFIG_DIR", CONFIG_MOUNT),
        env_value("RUN_DIR", RUN_MOUNT),
    ]
}

/// `redis-cli ping` on `port`; redis-cli exits 0 on error replies (LOADING), hence the grep.
fn ping_probe(port: i32, period: i32, failure_threshold: i32) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(vec!["sh".to_owned(), "-c".to_owned(), format!("redis-cli -p {port} ping | grep -q PONG")]),
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(3),
        failure_threshold: Some(failure_threshold),
        ..Probe::default()
    }
}

fn mebibytes(bytes: u64) -> Quantity {
    Quantity(format!("{}Mi", bytes.div_ceil(MEBIBYTE)))
}

/// Requests cover the data plus Redis's own overhead; the limit leaves room for the fork of a
/// full resync (copy-on-write pages) and replication buffers, so a resync is not OOM-killed.
fn redis_resources(cache: &CacheSpec) -> ResourceRequirements {
    let bytes = max_memory_bytes(cache);
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity("50m".to_owned())),
            ("memory".to_owned(), mebibytes(bytes + bytes / 4)),
        ])),
        limits: Some(BTreeMap::from([("memory".to_owned(), mebibytes(2 * bytes + 64 * MEBIBYTE))])),
        ..ResourceRequirements::default()
    }
}

fn script_command(script: &str) -> Vec<String> {
    vec!["sh".to_owned(), format!("{CONFIG_MOUNT}/{script}")]
}

/// First 16 hex digits of the SHA-256 of the ConfigMap's files.
fn config_hash(cache: &CacheSpec) -> String {
    let mut hasher = Sha256::new();
    for (name, text) in config_files(cache) {
        hasher.update(name.as_bytes());
        hasher.update([0]);
        hasher.update(text.as_bytes());
        hasher.update([0]);
    }
    hasher.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// `spec.cache.image`, else the operator's default cache image.
fn image(ctx: &Context<'_>, cache: &CacheSpec) -> String {
    cache.image.clone().unwrap_or_else(|| ctx.images.cache.clone())
}

/// StatefulSet `<name>-cache`: `cache.replicas` pods of Redis + Sentinel.
pub fn stateful_set(ctx: &Context<'_>, cache: &CacheSpec) -> StatefulSet {
    let selector = labels::selector(ctx.name, Component::Cache);
    let meta = ctx.meta(names::cache(ctx.name), Component::Cache, BTreeMap::new());
    let env = topology_env(ctx, cache);

    let mut redis_env = env.clone();
    redis_env.push(env_value("DATA_DIR", DATA_MOUNT));
    redis_env.push(env_value("PRESTOP_WAIT_SECONDS", PRESTOP_WAIT_SECONDS));
    let redis = Container {
        name: REDIS_CONTAINER.to_owned(),
        image: Some(image(ctx, cache)),
        command: Some(script_command("redis-start.sh")),
        ports: Some(vec![container_port(REDIS_PORT_NAME, REDIS_PORT)]),
        env: Some(redis_env),
        resources: Some(redis_resources(cache)),
        // Discovery may wait for a failover before Redis listens: the startup probe gives it
        // longer than the scripts' DISCOVERY_TIMEOUT_SECONDS (90 s) before liveness applies.
        startup_probe: Some(ping_probe(REDIS_PORT, 2, 60)),
        readiness_probe: Some(ping_probe(REDIS_PORT, 5, 2)),
        liveness_probe: Some(ping_probe(REDIS_PORT, 10, 3)),
        lifecycle: Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                exec: Some(ExecAction { command: Some(script_command("redis-prestop.sh")) }),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        }),
        security_context: Some(security::container()),
        volume_mounts: Some(vec![
            mount(CONFIG_VOLUME, CONFIG_MOUNT, true),
            mount(RUN_VOLUME, RUN_MOUNT, false),
            mount(DATA_VOLUME, DATA_MOUNT, false),
        ]),
        ..Container::default()
    };

    let mut sentinel_env = env;
    sentinel_env.push(env_value("QUORUM", sentinel_quorum(cache.replicas)));
    sentinel_env.push(env_value("DOWN_AFTER_MILLISECONDS", DOWN_AFTER_MILLISECONDS));
    sentinel_env.push(env_value("FAILOVER_TIMEOUT_MILLISECONDS", FAILOVER_TIMEOUT_MILLISECONDS));
    let sentinel = Container {
        name: SENTINEL_CONTAINER.to_owned(),
        image: Some(image(ctx, cache)),
        command: Some(script_command("sentinel-start.sh")),
        ports: Some(vec![container_port(SENTINEL_PORT_NAME, SENTINEL_PORT)]),
        env: Some(sentinel_env),
        resources: Some(resources("10m", "16Mi", "64Mi")),
        startup_probe: Some(ping_probe(SENTINEL_PORT, 2, 60)),
        readiness_probe: Some(ping_probe(SENTINEL_PORT, 5, 2)),
        liveness_probe: Some(ping_probe(SENTINEL_PORT, 10, 3)),
        security_context: Some(security::container()),
        volume_mounts: Some(vec![
            mount(CONFIG_VOLUME, CONFIG_MOUNT, true),
            mount(RUN_VOLUME, RUN_MOUNT, false),
            // Sentinel's working directory is the image's WORKDIR, /data.
            mount(DATA_VOLUME, DATA_MOUNT, false),
        ]),
        ..Container::default()
    };

    let pod = ctx.placed(PodSpec {
        termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
        topology_spread_constraints: Some(vec![
            spread(labels::TOPOLOGY_ZONE, &selector),
            spread(labels::TOPOLOGY_HOSTNAME, &selector),
        ]),
        containers: vec![redis, sentinel],
        volumes: Some(vec![
            Volume {
                name: CONFIG_VOLUME.to_owned(),
                config_map: Some(ConfigMapVolumeSource {
                    name: names::cache(ctx.name),
                    ..ConfigMapVolumeSource::default()
                }),
                ..Volume::default()
            },
            empty_dir(RUN_VOLUME),
            empty_dir(DATA_VOLUME),
        ]),
        ..isolated(security::pod(REDIS_UID))
    });

    StatefulSet {
        metadata: meta.clone(),
        spec: StatefulSetSpec {
            replicas: Some(cache.replicas),
            service_name: Some(names::cache_headless(ctx.name)),
            // One pod at a time, so pod 0 is master before the others look for one.
            pod_management_policy: Some("OrderedReady".to_owned()),
            selector: LabelSelector { match_labels: Some(selector), match_expressions: None },
            revision_history_limit: Some(3),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: meta.labels,
                    annotations: Some(BTreeMap::from([(CONFIG_HASH_ANNOTATION.to_owned(), config_hash(cache))])),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            ..StatefulSetSpec::default()
        },
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(replicas: i32, max_memory: &str) -> CacheSpec {
        CacheSpec {
            enabled: true,
            replicas,
            ttl_seconds: 300,
            max_memory: Quantity(max_memory.to_owned()),
            image: None,
        }
    }

    #[test]
    fn quorum_is_a_majority_of_the_sentinels() {
        let expected = [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (7, 4), (9, 5)];
        for (replicas, quorum) in expected {
            assert_eq!(sentinel_quorum(replicas), quorum, "replicas {replicas}");
        }
    }

    #[test]
    fn redis_conf_bounds_memory_and_persists_nothing() {
        let conf = redis_conf(&cache(3, "256Mi"));
        assert!(conf.contains("\nmaxmemory 268435456\n"), "{conf}");
        assert!(conf.contains("\nmaxmemory-policy allkeys-lru\n"));
        assert!(conf.contains("\nsave \"\"\n"));
        assert!(conf.contains("\nappendonly no\n"));
        assert!(conf.contains("\nprotected-mode no\n"));
        assert!(conf.contains("\nport 6379\n"));
    }

    #[test]
    fn sentinel_conf_uses_stable_host_names() {
        let conf = sentinel_conf();
        assert!(conf.contains("sentinel resolve-hostnames yes\n"));
        assert!(conf.contains("sentinel announce-hostnames yes\n"));
    }

    #[test]
    fn every_script_is_in_the_config_map() {
        let files = config_files(&cache(3, "64Mi"));
        for script in ["redis-common.sh", "redis-start.sh", "sentinel-start.sh", "redis-prestop.sh"] {
            assert!(files.get(script).is_some_and(|s| !s.is_empty()), "{script}");
        }
    }

    fn full_stack() -> crate::api::CourseService {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/samples/full-stack.yaml");
        crate::manifest::parse(&std::fs::read_to_string(path).expect("read sample")).expect("sample parses")
    }

    fn env_of(container: &Container, name: &str) -> Option<String> {
        container.env.as_ref()?.iter().find(|e| e.name == name)?.value.clone()
    }

    #[test]
    fn pods_know_the_sentinels_and_master_the_application_asks() {
        let mut cs = full_stack();
        cs.metadata.namespace = Some("courses".to_owned());
        let ctx = Context::new(&cs);
        let cache = cs.spec.cache.clone().expect("full-stack has a cache");
        let app = super::super::workload::app_template(&ctx).pod.containers.remove(0);
        let statefulset = stateful_set(&ctx, &cache);
        let pod = statefulset.spec.template.spec.expect("pod spec");
        for container in &pod.containers {
            let sentinels = env_of(container, "SENTINELS").expect("SENTINELS").replace("$(POD_NAMESPACE)", "courses");
            assert_eq!(Some(sentinels.replace(' ', ",")), env_of(&app, "CACHE_SENTINELS"), "{}", container.name);
            assert_eq!(env_of(container, "MASTER_NAME"), env_of(&app, "CACHE_MASTER_NAME"));
        }
    }

    #[test]
    fn full_stack_cache_renders_as_snapshot() {
        let cs = full_stack();
        let ctx = Context::new(&cs);
        let cache = cs.spec.cache.clone().expect("full-stack has a cache");
        let yaml = crate::render::to_yaml(&children(&ctx, &cache)).expect("YAML");
        insta::assert_snapshot!("full_stack_cache", yaml);
    }

    #[test]
    fn a_config_change_rolls_the_pods() {
        assert_ne!(config_hash(&cache(3, "64Mi")), config_hash(&cache(3, "128Mi")));
        assert_eq!(config_hash(&cache(3, "64Mi")), config_hash(&cache(3, "64Mi")));
    }
}
