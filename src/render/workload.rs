//! Per-zone application ReplicaSets and the pod template they share.
//!
//! The operator writes one ReplicaSet per revision and zone itself: a revision never changes
//! its pod template (the revision is in the name), so a Deployment above it would only add a
//! kube-controller-manager hop (Deployment → ReplicaSet → pods) and its status writes. Rolling,
//! canary and blue-green steps are the operator's own (`crate::rollout`).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::{
    Affinity, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, HTTPGetAction, NodeAffinity,
    NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PodSpec, PodTemplateSpec, Probe, SecretKeySelector,
    TCPSocketAction, TopologySpreadConstraint, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use sha2::{Digest, Sha256};

use super::redis::SENTINEL_PORT;
use super::{Context, security};
use crate::labels::{self, Component};
use crate::names;
use crate::zones::Zone;

/// Name of the application container.
pub const CONTAINER_NAME: &str = "app";
/// Named container port; Services and probes refer to it by name so a port change is one edit.
pub const HTTP_PORT_NAME: &str = "http";
/// The root filesystem is read-only; applications still need a scratch directory.
const TMP_VOLUME: &str = "tmp";
/// UID/GID of the distroless `nonroot` user: images built FROM root still run unprivileged.
const NON_ROOT_ID: i64 = 65532;

/// The pod template of the current spec, minus the zone, and its revision hash.
#[derive(Clone, Debug, PartialEq)]
pub struct AppTemplate {
    /// Short stable hash of `pod`; names and labels the ReplicaSets of this version.
    pub revision: String,
    pub pod: PodSpec,
    /// `app.kubernetes.io/version` value (the image tag).
    pub version: Option<String>,
}

impl AppTemplate {
    /// The template an existing ReplicaSet of ours was rendered from (zone bits removed), so
    /// an older revision can be re-sized or re-placed after the spec has moved on.
    pub fn from_replica_set(replica_set: &ReplicaSet) -> Option<Self> {
        // Template first: the operator's own ReplicaSet cache keeps none, and this runs for
        // every cached ReplicaSet of a CourseService on each reconcile.
        let mut pod = replica_set.spec.template.as_ref()?.spec.clone()?;
        let labels = replica_set.metadata.labels.as_ref()?;
        let revision = labels.get(labels::REVISION)?.clone();
        pod.affinity = None;
        pod.topology_spread_constraints = None;
        Some(Self { revision, pod, version: labels.get(labels::VERSION).cloned() })
    }
}

/// Builds the zone-independent pod spec and hashes it into the revision.
pub fn app_template(ctx: &Context<'_>) -> AppTemplate {
    let pod = pod_spec(ctx);
    AppTemplate { revision: revision_of(&pod), pod, version: image_tag(&ctx.cs.spec.image) }
}

/// First 10 hex digits of the SHA-256 of the pod spec's JSON. serde_json writes struct fields
/// in declaration order and maps sorted, so equal specs always hash equally.
fn revision_of(pod: &PodSpec) -> String {
    let json = serde_json::to_vec(pod).unwrap_or_default();
    let digest = Sha256::digest(&json);
    digest.iter().take(5).map(|b| format!("{b:02x}")).collect()
}

/// Tag of an image reference (`repo:tag` or `repo@sha256:…` → first 12 digest characters),
/// valid as a label value.
fn image_tag(image: &str) -> Option<String> {
    let tag = if let Some((_, digest)) = image.split_once('@') {
        digest.split_once(':').map_or(digest, |(_, hex)| hex).chars().take(12).collect()
    } else {
        let last = image.rsplit('/').next().unwrap_or(image);
        last.split_once(':').map(|(_, tag)| tag.to_owned())?
    };
    let valid = !tag.is_empty()
        && tag.len() <= 63
        && tag.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && tag.starts_with(|c: char| c.is_ascii_alphanumeric())
        && tag.ends_with(|c: char| c.is_ascii_alphanumeric());
    valid.then_some(tag)
}

fn pod_spec(ctx: &Context<'_>) -> PodSpec {
    let spec = &ctx.cs.spec;
    let probe = |path: Option<&String>, initial_delay: i32| Probe {
        http_get: path.map(|path| HTTPGetAction {
            path: Some(path.clone()),
            port: IntOrString::String(HTTP_PORT_NAME.to_owned()),
            ..HTTPGetAction::default()
        }),
        tcp_socket: path
            .is_none()
            .then(|| TCPSocketAction { port: IntOrString::String(HTTP_PORT_NAME.to_owned()), host: None }),
        initial_delay_seconds: Some(initial_delay),
        period_seconds: Some(5),
        failure_threshold: Some(3),
        ..Probe::default()
    };
    let probes = spec.probes.clone().unwrap_or_default();
    ctx.placed(PodSpec {
        termination_grace_period_seconds: Some(30),
        containers: vec![Container {
            name: CONTAINER_NAME.to_owned(),
            image: Some(spec.image.clone()),
            ports: Some(vec![ContainerPort {
                name: Some(HTTP_PORT_NAME.to_owned()),
                container_port: spec.port,
                protocol: Some("TCP".to_owned()),
                ..ContainerPort::default()
            }]),
            env: Some(env(ctx)),
            resources: spec.resources.clone(),
            readiness_probe: Some(probe(probes.readiness_path.as_ref(), 0)),
            liveness_probe: Some(probe(probes.liveness_path.as_ref().or(probes.readiness_path.as_ref()), 10)),
            security_context: Some(security::container()),
            volume_mounts: Some(vec![VolumeMount {
                name: TMP_VOLUME.to_owned(),
                mount_path: "/tmp".to_owned(),
                ..VolumeMount::default()
            }]),
            ..Container::default()
        }],
        volumes: Some(vec![Volume {
            name: TMP_VOLUME.to_owned(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        }]),
        ..super::pod::isolated(security::pod(NON_ROOT_ID))
    })
}

/// Names of the variables the operator injects into the application (the course app reads
/// exactly these; `spec.env` may not set them, see [`crate::validate::RESERVED_ENV`]).
pub mod env_names {
    pub const PORT: &str = "PORT";
    pub const CACHE_SENTINELS: &str = "CACHE_SENTINELS";
    pub const CACHE_MASTER_NAME: &str = "CACHE_MASTER_NAME";
    pub const CACHE_TTL_SECONDS: &str = "CACHE_TTL_SECONDS";
    pub const MONGODB_URI: &str = "MONGODB_URI";
}

/// The wiring the operator provides (port, cache, database), then the user's variables.
fn env(ctx: &Context<'_>) -> Vec<EnvVar> {
    let spec = &ctx.cs.spec;
    let value = |name: &str, value: String| EnvVar { name: name.to_owned(), value: Some(value), value_from: None };
    let mut env = vec![value(env_names::PORT, spec.port.to_string())];
    if let Some(cache) = spec.cache.as_ref().filter(|c| c.enabled) {
        let namespace = ctx.namespace.unwrap_or("default");
        let statefulset = names::cache(ctx.name);
        let headless = names::cache_headless(ctx.name);
        let sentinels: Vec<String> = (0..cache.replicas)
            .map(|i| format!("{}:{SENTINEL_PORT}", names::stateful_pod_host(&statefulset, i, &headless, namespace)))
            .collect();
        env.push(value(env_names::CACHE_SENTINELS, sentinels.join(",")));
        env.push(value(env_names::CACHE_MASTER_NAME, names::cache_master(ctx.name)));
        env.push(value(env_names::CACHE_TTL_SECONDS, cache.ttl_seconds.to_string()));
    }
    if let Some(db) = spec.database.as_ref().filter(|d| d.enabled) {
        // the operator's replica set: the app user's Secret; an external database: the user's
        let (name, key) = match &db.external {
            Some(external) => (external.uri_secret.name.clone(), external.uri_secret.key.clone()),
            None => (names::database_app_secret(ctx.name), names::DATABASE_URI_KEY.to_owned()),
        };
        env.push(EnvVar {
            name: env_names::MONGODB_URI.to_owned(),
            value: None,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector { name, key, optional: Some(false) }),
                ..EnvVarSource::default()
            }),
        });
    }
    env.extend(spec.env.iter().cloned());
    env
}

/// Labels that select the pods of one revision in one zone (immutable ReplicaSet selector).
pub fn pod_selector(name: &str, revision: &str, zone: &Zone) -> BTreeMap<String, String> {
    let mut selector = labels::selector(name, Component::App);
    selector.insert(labels::REVISION.to_owned(), revision.to_owned());
    selector.insert(labels::ZONE.to_owned(), zone.slug());
    selector
}

/// The ReplicaSet running `replicas` pods of `template` in `zone`.
pub fn replica_set(ctx: &Context<'_>, template: &AppTemplate, zone: &Zone, replicas: i32) -> ReplicaSet {
    let selector = pod_selector(ctx.name, &template.revision, zone);
    let mut extra = selector.clone();
    if let Some(version) = &template.version {
        extra.insert(labels::VERSION.to_owned(), version.clone());
    }
    let meta = ctx.meta(names::app_workload(ctx.name, &template.revision, zone), Component::App, extra);
    let pod_labels = meta.labels.clone();

    let mut pod = template.pod.clone();
    if let Zone::Named(zone_name) = zone {
        pod.affinity = Some(Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: labels::TOPOLOGY_ZONE.to_owned(),
                            operator: "In".to_owned(),
                            values: Some(vec![zone_name.clone()]),
                        }]),
                        match_fields: None,
                    }],
                }),
                preferred_during_scheduling_ignored_during_execution: None,
            }),
            ..Affinity::default()
        });
    }
    // Within the zone, spread over hosts; best effort so a small zone still takes its share.
    pod.topology_spread_constraints = Some(vec![TopologySpreadConstraint {
        max_skew: 1,
        topology_key: labels::TOPOLOGY_HOSTNAME.to_owned(),
        when_unsatisfiable: "ScheduleAnyway".to_owned(),
        label_selector: Some(LabelSelector { match_labels: Some(selector.clone()), match_expressions: None }),
        ..TopologySpreadConstraint::default()
    }]);

    ReplicaSet {
        metadata: meta,
        spec: ReplicaSetSpec {
            replicas: Some(replicas),
            selector: LabelSelector { match_labels: Some(selector), match_expressions: None },
            template: Some(PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: pod_labels, ..ObjectMeta::default() }),
                spec: Some(pod),
            }),
            min_ready_seconds: None,
        },
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rendered_replica_set_gives_back_its_template() {
        let cs: crate::api::CourseService = crate::manifest::parse(
            "apiVersion: microcourses.io/v1alpha1\nkind: CourseService\nmetadata: {name: c}\nspec: {image: 'i:1'}",
        )
        .expect("manifest");
        let ctx = Context::new(&cs);
        let template = app_template(&ctx);
        let rendered = replica_set(&ctx, &template, &Zone::Named("zone-a".into()), 2);
        assert_eq!(AppTemplate::from_replica_set(&rendered), Some(template));
    }

    #[test]
    fn image_tags_become_version_labels() {
        assert_eq!(image_tag("registry.example.com/microcourses/catalog:1.4.2").as_deref(), Some("1.4.2"));
        assert_eq!(image_tag("localhost:5000/catalog").as_deref(), None);
        assert_eq!(image_tag("catalog@sha256:0123456789abcdef00").as_deref(), Some("0123456789ab"));
        assert_eq!(image_tag("catalog:latest").as_deref(), Some("latest"));
    }
}
