//! Small pieces of the pods the operator renders: the settings every pod starts from
//! ([`isolated`]), and for the cache and database pods environment variables, volumes and
//! mounts, resources, container ports and topology spread, declared once for `redis` and
//! `mongo`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, ObjectFieldSelector, PodSecurityContext, PodSpec,
    ResourceRequirements, SecretKeySelector, TopologySpreadConstraint, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// What every pod the operator renders starts from: no API token (none of them talks to the
/// apiserver), no service-link variables (a Service named `redis` would inject
/// `REDIS_PORT=tcp://…` and clash with the pods' own settings) and `security` for the pod.
pub fn isolated(security: PodSecurityContext) -> PodSpec {
    PodSpec {
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        security_context: Some(security),
        ..PodSpec::default()
    }
}

/// `name=value`.
pub fn env_value(name: &str, value: impl ToString) -> EnvVar {
    EnvVar { name: name.to_owned(), value: Some(value.to_string()), value_from: None }
}

/// `name` from `key` of Secret `secret`, which must exist.
pub fn env_secret(name: &str, secret: String, key: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector { name: secret, key: key.to_owned(), optional: Some(false) }),
            ..EnvVarSource::default()
        }),
    }
}

/// `name` from the pod's own `field_path` (downward API).
pub fn env_field(name: &str, field_path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector { field_path: field_path.to_owned(), api_version: None }),
            ..EnvVarSource::default()
        }),
    }
}

/// Volume `name` mounted at `path`.
pub fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

/// An emptyDir volume: scratch space, since every root filesystem is read-only.
pub fn empty_dir(name: &str) -> Volume {
    Volume { name: name.to_owned(), empty_dir: Some(EmptyDirVolumeSource::default()), ..Volume::default() }
}

/// CPU and memory requests and a memory limit.
pub fn resources(cpu: &str, memory: &str, memory_limit: &str) -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity(cpu.to_owned())),
            ("memory".to_owned(), Quantity(memory.to_owned())),
        ])),
        limits: Some(BTreeMap::from([("memory".to_owned(), Quantity(memory_limit.to_owned()))])),
        ..ResourceRequirements::default()
    }
}

/// TCP port `port` named `name` (Services and probes refer to it by name).
pub fn container_port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_owned()),
        container_port: port,
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    }
}

/// Pods matching `selector` spread evenly over `key` (zone or node).
pub fn spread(key: &str, selector: &BTreeMap<String, String>) -> TopologySpreadConstraint {
    TopologySpreadConstraint {
        max_skew: 1,
        topology_key: key.to_owned(),
        // Best effort: a one-zone or one-node cluster still runs every pod.
        when_unsatisfiable: "ScheduleAnyway".to_owned(),
        label_selector: Some(LabelSelector { match_labels: Some(selector.clone()), match_expressions: None }),
        ..TopologySpreadConstraint::default()
    }
}
