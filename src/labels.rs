//! Label and annotation keys the operator writes, declared once.

use std::collections::BTreeMap;

/// Standard: the application's name (the kind of thing that runs).
pub const NAME: &str = "app.kubernetes.io/name";
/// Standard: the CourseService this object belongs to; unique within a namespace.
pub const INSTANCE: &str = "app.kubernetes.io/instance";
/// Standard: the part of the course application (`app`, `cache`, `database`, `backup`).
pub const COMPONENT: &str = "app.kubernetes.io/component";
/// Standard: the tool that manages the object; prune only ever touches objects carrying
/// this with [`MANAGER`] as value.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Standard: the higher-level application this is part of.
pub const PART_OF: &str = "app.kubernetes.io/part-of";
/// Standard: the version of the application (the image tag).
pub const VERSION: &str = "app.kubernetes.io/version";

/// Hash of the pod template; names the ReplicaSets of one version.
pub const REVISION: &str = "microcourses.io/revision";
/// Zone a ReplicaSet's pods are pinned to.
pub const ZONE: &str = "microcourses.io/zone";

/// Annotation with a hash of the object as last applied; an observed object carrying the hash
/// of the desired one needs no write, which keeps the steady state at zero write requests.
pub const APPLIED_HASH: &str = "microcourses.io/applied-hash";

/// Annotation through which `kubectl course` asks for a rollout action: `<action>@<nonce>`.
pub const ROLLOUT_ACTION: &str = "microcourses.io/rollout-action";

/// Annotation (`"true"`) on a Secret of generated credentials: created once, then only
/// keys a newer version of the operator introduces are added; an existing key is never
/// changed, because the data it opens would be locked out.
pub const GENERATED: &str = "microcourses.io/generated";

/// Node label carrying the availability zone.
pub const TOPOLOGY_ZONE: &str = "topology.kubernetes.io/zone";
/// Node label carrying the host name; pods are spread over it within a zone.
pub const TOPOLOGY_HOSTNAME: &str = "kubernetes.io/hostname";

/// Value of [`NAME`] on every object.
pub const APP_NAME: &str = "course-service";
/// Value of [`MANAGED_BY`], and the server-side-apply field manager.
pub const MANAGER: &str = "course-operator";

/// Which part of the course application an object belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    App,
    Cache,
    Database,
    Backup,
}

impl Component {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::App => "app",
            Self::Cache => "cache",
            Self::Database => "database",
            Self::Backup => "backup",
        }
    }
}

/// Labels that select every object of one component of one CourseService: stable for the
/// object's life, so they are safe in immutable selectors.
pub fn selector(instance: &str, component: Component) -> BTreeMap<String, String> {
    BTreeMap::from([
        (INSTANCE.to_owned(), instance.to_owned()),
        (COMPONENT.to_owned(), component.as_str().to_owned()),
        (MANAGED_BY.to_owned(), MANAGER.to_owned()),
    ])
}

/// The full label set of an object: the selector labels plus the descriptive ones.
pub fn common(instance: &str, component: Component) -> BTreeMap<String, String> {
    let mut labels = selector(instance, component);
    labels.insert(NAME.to_owned(), APP_NAME.to_owned());
    labels.insert(PART_OF.to_owned(), instance.to_owned());
    labels
}

/// `k=v,k=v` form of a label map, as used in label selectors and `status.selector`.
pub fn to_selector_string(labels: &BTreeMap<String, String>) -> String {
    labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}
