//! The failures of one reconcile, each naming what failed on which object.

use super::fence;

/// Failures of one reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("apply {kind} {namespace}/{name}: {source}")]
    Apply { kind: &'static str, namespace: String, name: String, source: kube::Error },
    #[error("delete {kind} {namespace}/{name}: {source}")]
    Delete { kind: String, namespace: String, name: String, source: kube::Error },
    #[error("update status of CourseService {namespace}/{name}: {source}")]
    Status { namespace: String, name: String, source: kube::Error },
    #[error("get {kind} {namespace}/{name}: {source}")]
    Get { kind: &'static str, namespace: String, name: String, source: kube::Error },
    #[error("CourseService {0} has no namespace or uid")]
    MissingNamespace(String),
}

impl Error {
    /// The write fence's refusal behind this failure, if that is what it was.
    pub fn fenced(&self) -> Option<&fence::Fenced> {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(error) = cause {
            if let Some(fenced) = error.downcast_ref::<fence::Fenced>() {
                return Some(fenced);
            }
            cause = error.source();
        }
        None
    }
}
