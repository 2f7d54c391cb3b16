//! The `CourseService` custom resource: the contract users write and read.
//!
//! Every bound the OpenAPI schema or CEL can express lives here as a schema attribute, so the
//! apiserver rejects bad input at admission with a message naming the field. The same rules are
//! repeated as plain Rust in [`crate::validate`] so `course-operator render` and the controller
//! give identical answers without a cluster.

mod spec;
mod status;

pub use spec::*;
pub use status::*;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// API group of every resource this operator defines.
pub const GROUP: &str = "microcourses.io";
/// The served and stored version.
pub const VERSION: &str = "v1alpha1";
/// Longest `metadata.name` accepted: children append `-<revision>-<zone>` and Services must stay
/// valid DNS-1035 labels (63 characters) with a `-preview` suffix.
pub const MAX_NAME_LEN: usize = 40;

/// The CustomResourceDefinition, exactly as `course-operator crd` prints it.
pub fn crd() -> CustomResourceDefinition {
    CourseService::crd()
}

/// The CRD as YAML, the form committed under `crds/`.
pub fn crd_yaml() -> Result<String, serde_saphyr::SerializeError> {
    serde_saphyr::to_string(&crd())
}
