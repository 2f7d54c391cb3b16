//! Condition types and reasons of `CourseService.status.conditions`, declared once.

/// Condition types.
pub mod types {
    /// Enough Ready pods serve the current revision (at least replicas - maxUnavailable).
    pub const AVAILABLE: &str = "Available";
    /// A change is being rolled out or capacity is being moved.
    pub const PROGRESSING: &str = "Progressing";
    /// Something is wrong that the operator cannot fix on its own (lost zone, failed rollout).
    pub const DEGRADED: &str = "Degraded";
    /// The spec is invalid; nothing was changed in the cluster.
    pub const INVALID_SPEC: &str = "InvalidSpec";
}

/// Condition reasons (CamelCase, as Kubernetes conventions require).
pub mod reasons {
    pub const MINIMUM_REPLICAS_AVAILABLE: &str = "MinimumReplicasAvailable";
    pub const MINIMUM_REPLICAS_UNAVAILABLE: &str = "MinimumReplicasUnavailable";
    /// `Available=False` of a CourseService that has never been Available: its pods are coming
    /// up for the first time (not an outage).
    pub const STARTING: &str = "Starting";
    pub const ROLLOUT_IN_PROGRESS: &str = "RolloutInProgress";
    pub const SCALING: &str = "Scaling";
    pub const RECONCILED: &str = "Reconciled";
    pub const ZONE_LOST: &str = "ZoneLost";
    pub const ALL_ZONES_HEALTHY: &str = "AllZonesHealthy";
    pub const ROLLOUT_ABORTED: &str = "RolloutAborted";
    pub const SPEC_INVALID: &str = "SpecInvalid";
    pub const SPEC_VALID: &str = "SpecValid";
    /// The apiserver refused a child rendered from the spec (a Warning Event).
    pub const CHILD_REJECTED: &str = "ChildRejected";
}
