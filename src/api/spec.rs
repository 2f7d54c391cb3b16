//! `CourseService.spec`: what the user asks for.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::CourseServiceStatus;

/// A highly available course application: one ReplicaSet per availability zone and version,
/// a Service, PodDisruptionBudgets, an optional HorizontalPodAutoscaler, and optionally a Redis
/// Sentinel cache and a MongoDB replica set.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "microcourses.io",
    version = "v1alpha1",
    kind = "CourseService",
    plural = "courseservices",
    shortname = "csvc",
    category = "all",
    namespaced,
    status = "CourseServiceStatus",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    doc = "CourseService: a zone-aware, highly available course application (ReplicaSets per zone, Service, HPA, PDBs, Redis cache, MongoDB).",
    validation = Rule::new("self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')")
        .message("metadata.name must be a DNS-1035 label (lowercase letters, digits, '-', starting with a letter)"),
    validation = Rule::new("self.metadata.name.size() <= 40")
        .message("metadata.name must be at most 40 characters: children append -<revision>-<zone> to it"),
    printcolumn(name = "Strategy", type_ = "string", json_path = ".spec.strategy.type"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.rollout.phase"),
    printcolumn(name = "Step", type_ = "integer", json_path = ".status.rollout.step"),
    printcolumn(name = "Weight", type_ = "integer", json_path = ".status.rollout.weight"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(name = "Desired", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct CourseServiceSpec {
    /// Container image of the course application, e.g. registry.example.com/microcourses/catalog:1.4.2.
    /// Changing it starts a rollout with `spec.strategy`.
    #[schemars(length(min = 1, max = 512), pattern(r"^\S+$"))]
    pub image: String,

    /// Port the application container listens on.
    #[serde(default = "defaults::port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,

    /// Total number of application pods over all zones. When `spec.autoscaling` is set the
    /// HorizontalPodAutoscaler owns this field through the `/scale` subresource.
    #[serde(default = "defaults::replicas")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: i32,

    /// Availability zones (values of the node label topology.kubernetes.io/zone) to run in.
    /// Empty: every zone that has a Ready, schedulable node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(min = 1, max = 63), pattern(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub zones: Vec<String>,

    /// Nodes the application, cache and database pods may run on: every label here must be on
    /// the node (as a pod's nodeSelector), e.g. an AKS node pool
    /// (`kubernetes.azure.com/agentpool: courses`). Zones are judged by these nodes only.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 20))]
    pub node_selector: BTreeMap<String, String>,

    /// Taints the application, cache and database pods tolerate (as a pod's tolerations), e.g.
    /// a dedicated node pool's `NoSchedule` taint. Zones are judged by the nodes whose
    /// scheduling taints these tolerate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub tolerations: Vec<Toleration>,

    /// Compute resources of each application container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Extra environment variables of the application container. PORT, CACHE_SENTINELS,
    /// CACHE_MASTER_NAME, CACHE_TTL_SECONDS and MONGODB_URI are set by the operator.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    #[schemars(extend(
        "x-kubernetes-list-type" = "map",
        "x-kubernetes-list-map-keys" = ["name"],
        "x-kubernetes-validations" = [{
            "rule": "self.all(e, !(e.name in ['PORT', 'CACHE_SENTINELS', 'CACHE_MASTER_NAME', 'CACHE_TTL_SECONDS', 'MONGODB_URI']))",
            "message": "spec.env must not set PORT, CACHE_SENTINELS, CACHE_MASTER_NAME, CACHE_TTL_SECONDS or MONGODB_URI: the operator sets them",
        }],
    ))]
    pub env: Vec<EnvVar>,

    /// HTTP health endpoints. Without them the pods are checked with a TCP probe on `spec.port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probes: Option<Probes>,

    /// Horizontal autoscaling on CPU. The HorizontalPodAutoscaler scales this CourseService
    /// (not its ReplicaSets), so the operator and the HPA never fight over replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,

    /// The Service in front of the application pods.
    #[serde(default)]
    pub service: ServiceSpec,

    /// Voluntary disruption budget of the application pods.
    #[serde(default)]
    pub disruption: Disruption,

    /// How a new revision (any change to the pod template) is rolled out.
    #[serde(default)]
    pub strategy: Strategy,

    /// Redis with Sentinel as the application's cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheSpec>,

    /// MongoDB replica set as the application's database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseSpec>,
}

/// HTTP paths probed on `spec.port`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Probes {
    /// Readiness probe path; a pod receives traffic only while it answers 2xx/3xx here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024), pattern(r"^/"))]
    pub readiness_path: Option<String>,
    /// Liveness probe path; the kubelet restarts a container that stops answering here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024), pattern(r"^/"))]
    pub liveness_path: Option<String>,
}

/// Autoscaling bounds and target.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.maxReplicas >= self.minReplicas",
    "message": "spec.autoscaling.maxReplicas must be greater than or equal to spec.autoscaling.minReplicas",
    "fieldPath": ".maxReplicas",
}]))]
pub struct Autoscaling {
    /// Fewest pods the autoscaler may leave running.
    #[serde(default = "defaults::min_replicas")]
    #[schemars(range(min = 1, max = 1000))]
    pub min_replicas: i32,
    /// Most pods the autoscaler may start.
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: i32,
    /// Average CPU utilisation (percent of the CPU request) the autoscaler aims for.
    #[serde(default = "defaults::target_cpu", rename = "targetCPUUtilizationPercentage")]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_utilization_percentage: i32,
    /// Seconds of lower recommendations the autoscaler waits for before it removes pods
    /// (the HPA's `behavior.scaleDown.stabilizationWindowSeconds`); absent: the cluster's
    /// default (5 minutes unless kube-controller-manager was told otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 3600))]
    pub scale_down_stabilization_seconds: Option<i32>,
}

/// Kind of Service exposing the application.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ServiceType {
    ClusterIP,
    NodePort,
    #[default]
    LoadBalancer,
}

/// The application's Service.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// ClusterIP, NodePort or LoadBalancer.
    #[serde(default, rename = "type")]
    pub type_: ServiceType,
    /// Port the Service listens on; traffic goes to `spec.port` of the pods.
    #[serde(default = "defaults::service_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Annotations copied onto the Service, e.g. service.beta.kubernetes.io/azure-load-balancer-internal.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Default for ServiceSpec {
    fn default() -> Self {
        Self { type_: ServiceType::default(), port: defaults::service_port(), annotations: BTreeMap::new() }
    }
}

/// Voluntary disruption budget.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Disruption {
    /// Most application pods that may be unavailable at once through voluntary disruptions
    /// (drains, zone moves, rollouts).
    #[serde(default = "defaults::max_unavailable")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_unavailable: i32,
}

impl Default for Disruption {
    fn default() -> Self {
        Self { max_unavailable: defaults::max_unavailable() }
    }
}

/// Rollout strategy kind.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum StrategyType {
    #[default]
    Rolling,
    Canary,
    BlueGreen,
}

impl std::fmt::Display for StrategyType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Rolling => "Rolling",
            Self::Canary => "Canary",
            Self::BlueGreen => "BlueGreen",
        })
    }
}

/// Rollout strategy: `type` plus the one sub-block that matches it.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.rolling) || self.type == 'Rolling'",
     "message": "spec.strategy.rolling is only allowed when spec.strategy.type is Rolling", "fieldPath": ".rolling"},
    {"rule": "!has(self.canary) || self.type == 'Canary'",
     "message": "spec.strategy.canary is only allowed when spec.strategy.type is Canary", "fieldPath": ".canary"},
    {"rule": "!has(self.blueGreen) || self.type == 'BlueGreen'",
     "message": "spec.strategy.blueGreen is only allowed when spec.strategy.type is BlueGreen", "fieldPath": ".blueGreen"},
    {"rule": "self.type != 'Canary' || has(self.canary)",
     "message": "spec.strategy.canary is required when spec.strategy.type is Canary"},
]))]
pub struct Strategy {
    /// Rolling (per-zone rolling update), Canary (stepped traffic shift) or BlueGreen (preview, then switch).
    #[serde(default, rename = "type")]
    pub type_: StrategyType,
    /// A step whose new pods are not Ready within this many seconds fails the rollout.
    #[serde(default = "defaults::progress_deadline")]
    #[schemars(range(min = 10, max = 86400))]
    pub progress_deadline_seconds: i32,
    /// A rollout whose new pods restart more often than this (any container, summed per pod)
    /// fails its gate and is aborted (canary, blue-green) or stopped (rolling).
    #[serde(default = "defaults::max_pod_restarts")]
    #[schemars(range(min = 0, max = 1000))]
    pub max_pod_restarts: i32,
    /// Settings of the Rolling strategy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling: Option<RollingStrategy>,
    /// Settings of the Canary strategy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryStrategy>,
    /// Settings of the BlueGreen strategy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_green: Option<BlueGreenStrategy>,
}

impl Default for Strategy {
    fn default() -> Self {
        Self {
            type_: StrategyType::default(),
            progress_deadline_seconds: defaults::progress_deadline(),
            max_pod_restarts: defaults::max_pod_restarts(),
            rolling: None,
            canary: None,
            blue_green: None,
        }
    }
}

/// Rolling update settings, applied within each zone.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollingStrategy {
    /// Pods above the desired count during the update: a number or a percentage like 25%.
    #[serde(default = "defaults::max_surge")]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "type(self) == int ? self >= 0 : self.matches('^[0-9]{1,3}%$')",
        "message": "spec.strategy.rolling.maxSurge must be a non-negative number or a percentage like 25%",
    }]))]
    pub max_surge: IntOrString,
    /// Pods below the desired count during the update: a number or a percentage.
    #[serde(default = "defaults::rolling_max_unavailable")]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "type(self) == int ? self >= 0 : self.matches('^[0-9]{1,3}%$')",
        "message": "spec.strategy.rolling.maxUnavailable must be a non-negative number or a percentage like 25%",
    }]))]
    pub max_unavailable: IntOrString,
    /// Update one zone at a time, each gated on that zone being fully Available, and stop on
    /// the first failing zone.
    #[serde(default)]
    pub zone_by_zone: bool,
}

impl Default for RollingStrategy {
    fn default() -> Self {
        Self {
            max_surge: defaults::max_surge(),
            max_unavailable: defaults::rolling_max_unavailable(),
            zone_by_zone: false,
        }
    }
}

/// Canary: the new revision runs beside the stable one and takes a growing share of replicas.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStrategy {
    /// Ordered steps; the rollout is promoted after the last one.
    #[schemars(length(min = 1, max = 50))]
    pub steps: Vec<CanaryStep>,
    /// Metric check run during every step; failing it aborts the rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<Analysis>,
}

/// One canary step: exactly one of `setWeight` or `pause`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.setWeight) != has(self.pause)",
    "message": "each spec.strategy.canary.steps entry must set exactly one of setWeight or pause",
}]))]
pub struct CanaryStep {
    /// Share of the replicas, in percent, that run the new revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub set_weight: Option<i32>,
    /// Wait: for `duration`, or until `kubectl course promote` when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<Pause>,
}

/// A pause in a canary rollout.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Pause {
    /// How long to wait, e.g. 30s, 5m, 1h30m. Absent: wait for a manual promote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^([0-9]+(ms|s|m|h))+$"), length(max = 32))]
    pub duration: Option<String>,
}

/// HTTP metric check: fetch `url`, read a number at `jsonPointer`, compare with the bounds.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.min) || has(self.max)",
    "message": "spec.strategy.canary.analysis needs at least one of min or max",
}]))]
pub struct Analysis {
    /// Endpoint answering JSON, e.g. a Prometheus query API URL.
    #[schemars(pattern(r"^https?://"), length(max = 2048))]
    pub url: String,
    /// RFC 6901 pointer to the number in the answer; Prometheus vectors: /data/result/0/value/1.
    #[serde(default = "defaults::json_pointer")]
    #[schemars(pattern(r"^(/[^/]*)*$"))]
    pub json_pointer: String,
    /// The check passes only when the value is at least this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// The check passes only when the value is at most this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Seconds between two checks.
    #[serde(default = "defaults::analysis_interval")]
    #[schemars(range(min = 1, max = 3600))]
    pub interval_seconds: i32,
    /// Failed checks tolerated before the rollout is aborted.
    #[serde(default)]
    #[schemars(range(min = 0, max = 100))]
    pub failure_limit: i32,
}

/// BlueGreen: the new revision comes up at full size beside the old one, then the Service switches.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlueGreenStrategy {
    /// Create `<name>-preview`, a Service selecting the new revision before promotion.
    #[serde(default = "defaults::yes")]
    pub preview_service: bool,
    /// Promote automatically this many seconds after the new revision is Ready; absent: manual.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 86400))]
    pub auto_promotion_seconds: Option<i32>,
    /// Keep the old revision this long after the switch, for a fast abort.
    #[serde(default = "defaults::scale_down_delay")]
    #[schemars(range(min = 0, max = 86400))]
    pub scale_down_delay_seconds: i32,
}

impl Default for BlueGreenStrategy {
    fn default() -> Self {
        Self {
            preview_service: true,
            auto_promotion_seconds: None,
            scale_down_delay_seconds: defaults::scale_down_delay(),
        }
    }
}

/// Redis with Sentinel, used as a cache.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CacheSpec {
    /// Run the cache.
    #[serde(default = "defaults::yes")]
    pub enabled: bool,
    /// Redis pods, each with a Sentinel; the Sentinel quorum is a majority of them.
    #[serde(default = "defaults::cache_replicas")]
    #[schemars(range(min = 1, max = 9))]
    pub replicas: i32,
    /// Time to live the application gives cached entries (CACHE_TTL_SECONDS).
    #[serde(default = "defaults::cache_ttl")]
    #[schemars(range(min = 1, max = 604800))]
    pub ttl_seconds: i32,
    /// Redis maxmemory; least recently used keys are evicted beyond it.
    #[serde(default = "defaults::cache_max_memory")]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "isQuantity(string(self)) && quantity(string(self)).compareTo(quantity('1Mi')) >= 0",
        "message": "spec.cache.maxMemory must be a memory size of at least 1Mi, e.g. 256Mi",
    }]))]
    pub max_memory: Quantity,
    /// Image with redis-server, redis-sentinel, redis-cli and a POSIX shell (default: the
    /// official Redis image). For a private registry or an air-gapped cluster, point it at a
    /// mirror of the same image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512), pattern(r"^\S+$"))]
    pub image: Option<String>,
}

/// The application's database: a MongoDB replica set run by the operator, or an external
/// Mongo-API database (`external`).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.members % 2 == 1 || self.arbiter",
    "message": "spec.database.members must be odd, or set spec.database.arbiter: true, so elections keep a majority",
    "fieldPath": ".members",
}, {
    "rule": "!has(self.external) || !has(self.backup)",
    "message": "spec.database.backup: backups are taken of the operator's own replica set; back up an external database with its provider's tools",
    "fieldPath": ".backup",
}]))]
pub struct DatabaseSpec {
    /// Run the database.
    #[serde(default = "defaults::yes")]
    pub enabled: bool,
    /// Data-bearing replica-set members, spread over zones (at most 7 of them vote).
    #[serde(default = "defaults::db_members")]
    #[schemars(range(min = 1, max = 50))]
    pub members: i32,
    /// Add an arbiter so an even number of data members still elects a primary.
    #[serde(default)]
    pub arbiter: bool,
    /// MongoDB major.minor version, e.g. 7.0.
    #[serde(default = "defaults::db_version")]
    #[schemars(pattern(r"^[0-9]+\.[0-9]+$"))]
    pub version: String,
    /// Persistent volume size of each member.
    #[serde(default = "defaults::db_storage")]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "isQuantity(string(self)) && quantity(string(self)).isGreaterThan(quantity('0'))",
        "message": "spec.database.storage must be a positive storage size, e.g. 10Gi",
    }]))]
    pub storage: Quantity,
    /// StorageClass of the member volumes; absent: the cluster default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// Image of the members, the arbiter and the init Job: mongod, mongosh and a POSIX shell
    /// of `version` (default: the operator's database repository, tagged `version`; the
    /// official MongoDB image unless the operator was told otherwise). For a private registry
    /// or an air-gapped cluster, point it at a mirror of the same image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512), pattern(r"^\S+$"))]
    pub image: Option<String>,
    /// Scheduled mongodump backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupSpec>,
    /// Use an existing Mongo-API database (Azure Cosmos DB for MongoDB, MongoDB Atlas, FerretDB,
    /// any MongoDB-compatible endpoint) instead of running a replica set: the operator renders
    /// no database objects and wires `MONGODB_URI` from this Secret. The replica-set fields
    /// (members, arbiter, version, storage) are then ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalDatabaseSpec>,
}

/// An existing database the application connects to.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalDatabaseSpec {
    /// The key of a Secret in the CourseService's namespace holding the connection string,
    /// e.g. `mongodb+srv://user:password@cluster0.example.mongodb.net/courses`.
    pub uri_secret: SecretKeySelector,
}

/// One key of a Secret in the same namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeySelector {
    /// Name of the Secret.
    #[schemars(
        length(min = 1, max = 253),
        pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,
    /// Key within the Secret's data.
    #[schemars(length(min = 1, max = 253), pattern(r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

/// Scheduled backups.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupSpec {
    /// Cron schedule (five fields, or @daily-style macros).
    #[schemars(pattern(r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|(\S+\s+){4}\S+)$"))]
    pub schedule: String,
    /// Backups kept; older ones are deleted after each run.
    #[serde(default = "defaults::backup_keep")]
    #[schemars(range(min = 1, max = 365))]
    pub keep: i32,
    /// Size of the backup volume.
    #[serde(default = "defaults::backup_storage")]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "isQuantity(string(self)) && quantity(string(self)).isGreaterThan(quantity('0'))",
        "message": "spec.database.backup.storage must be a positive storage size, e.g. 20Gi",
    }]))]
    pub storage: Quantity,
    /// Image of the backup Job: mongodump and a POSIX shell (default: the operator's backup
    /// repository, tagged `spec.database.version`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512), pattern(r"^\S+$"))]
    pub image: Option<String>,
}

/// Defaults shared by serde (what the operator assumes) and the schema (what the apiserver fills in).
pub(crate) mod defaults {
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    pub fn port() -> i32 {
        8080
    }
    pub fn replicas() -> i32 {
        3
    }
    pub fn min_replicas() -> i32 {
        1
    }
    pub fn target_cpu() -> i32 {
        70
    }
    pub fn service_port() -> i32 {
        80
    }
    pub fn max_unavailable() -> i32 {
        1
    }
    pub fn max_pod_restarts() -> i32 {
        3
    }
    pub fn progress_deadline() -> i32 {
        600
    }
    pub fn max_surge() -> IntOrString {
        IntOrString::String("25%".into())
    }
    pub fn rolling_max_unavailable() -> IntOrString {
        IntOrString::Int(0)
    }
    pub fn json_pointer() -> String {
        "/data/result/0/value/1".into()
    }
    pub fn analysis_interval() -> i32 {
        10
    }
    pub fn yes() -> bool {
        true
    }
    pub fn scale_down_delay() -> i32 {
        30
    }
    pub fn cache_replicas() -> i32 {
        3
    }
    pub fn cache_ttl() -> i32 {
        300
    }
    pub fn cache_max_memory() -> Quantity {
        Quantity("256Mi".into())
    }
    pub fn db_members() -> i32 {
        3
    }
    pub fn db_version() -> String {
        "7.0".into()
    }
    pub fn db_storage() -> Quantity {
        Quantity("10Gi".into())
    }
    pub fn backup_keep() -> i32 {
        7
    }
    pub fn backup_storage() -> Quantity {
        Quantity("20Gi".into())
    }
}
