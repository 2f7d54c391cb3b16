//! `CourseService.status`: what the operator observed and decided, the only place rollout
//! state lives (so a restarted operator resumes exactly where it was).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::StrategyType;

/// Observed state of a CourseService.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CourseServiceStatus {
    /// The metadata.generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Application pods that exist (all revisions, all zones); the `/scale` subresource reads it.
    #[serde(default)]
    pub replicas: i32,
    /// Application pods that are Ready.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Label selector of the application pods, for the HorizontalPodAutoscaler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Available, Progressing, Degraded and InvalidSpec, following Kubernetes conventions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Per-zone placement of the application pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<ZoneStatus>,
    /// The current or last rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutStatus>,
    /// Readiness of the Redis cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<ComponentStatus>,
    /// Readiness of the MongoDB replica set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseStatus>,
}

/// One availability zone.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ZoneStatus {
    /// Zone name (topology.kubernetes.io/zone).
    pub name: String,
    /// Pods the operator wants in this zone.
    pub desired: i32,
    /// Ready pods in this zone.
    pub ready: i32,
    /// The zone has no Ready, schedulable node (or its pods are stuck Pending); its share
    /// runs in the other zones until it recovers.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lost: bool,
    /// Set while the zone is lost because the service's pods stayed unschedulable there (its
    /// nodes are full, tainted or refuse them): when that was decided. The share is tried in the
    /// zone again after the operator's retry period. RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unschedulable_since: Option<String>,
}

/// Phase of a rollout.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum RolloutPhase {
    /// Nothing to roll out: one revision runs.
    #[default]
    Healthy,
    /// A new revision is being brought up.
    Progressing,
    /// Waiting, for a duration or a manual promote.
    Paused,
    /// The rollout failed its gate and went back to the stable revision.
    Aborted,
}

/// Rollout bookkeeping.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// Strategy the rollout follows.
    pub strategy: StrategyType,
    /// Revision serving before the rollout (the one aborts go back to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_revision: Option<String>,
    /// Revision being rolled out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_revision: Option<String>,
    /// Index of the current canary step, or of the zone for zone-by-zone rolling updates.
    #[serde(default)]
    pub step: i32,
    /// Percent of replicas running the new revision.
    #[serde(default)]
    pub weight: i32,
    /// Healthy, Progressing, Paused or Aborted.
    #[serde(default)]
    pub phase: RolloutPhase,
    /// Human-readable detail of the phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the current step started (RFC 3339); timed pauses and deadlines count from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_started_at: Option<String>,
    /// Paused by `kubectl course pause` until `kubectl course resume`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub user_paused: bool,
    /// Failed canary analysis checks in the current rollout.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub analysis_failures: i32,
    /// When the canary analysis last ran (RFC 3339); the next run is intervalSeconds later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis_checked_at: Option<String>,
    /// The last `microcourses.io/rollout-action` annotation value acted upon, so each request
    /// is handled exactly once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_action: Option<String>,
}

impl RolloutStatus {
    /// A new revision is on its way and has not settled or been aborted: the one definition the
    /// controller, the status and the canary analysis share.
    pub fn in_progress(&self) -> bool {
        matches!(self.phase, RolloutPhase::Progressing | RolloutPhase::Paused)
            && self.stable_revision != self.new_revision
    }

    /// A rollout of `revision` is under way.
    pub fn rolling_out_to(&self, revision: &str) -> bool {
        self.in_progress() && self.new_revision.as_deref() == Some(revision)
    }
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

/// Ready count of a data component.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatus {
    /// Pods wanted.
    pub desired: i32,
    /// Pods Ready.
    pub ready: i32,
}

/// Readiness of the MongoDB replica set.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseStatus {
    /// Members wanted.
    pub members: i32,
    /// Members Ready.
    pub ready: i32,
    /// The replica set has been initiated with the current member list.
    #[serde(default)]
    pub initialized: bool,
    /// An external database is used: the Secret key (`name/key`) its connection string is
    /// read from. Absent for the operator's own replica set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<String>,
}
