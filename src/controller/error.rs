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
    /// The apiserver refused a rendered child as invalid (400 or 422): retrying cannot help,
    /// the spec must change. `(kind, name, the apiserver's message)`; the message is left out
    /// for Secrets, whose rejections may quote what they hold.
    pub fn rejected_child(&self) -> Option<(&str, &str, String)> {
        let Self::Apply { kind, name, source: kube::Error::Api(status), .. } = self else { return None };
        if !matches!(status.code, 400 | 422) {
            return None;
        }
        let message = if *kind == "Secret" { String::new() } else { status.message.clone() };
        Some((kind, name, message))
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    fn apply_error(kind: &'static str, code: u16) -> Error {
        let status = kube::core::Status::failure("spec.x: Invalid value", "Invalid").with_code(code);
        Error::Apply {
            kind,
            namespace: "ns".into(),
            name: "catalog-db-backup".into(),
            source: kube::Error::Api(status.boxed()),
        }
    }

    #[test]
    fn only_a_child_refused_as_invalid_is_reported_as_rejected_and_secrets_keep_their_message_to_themselves() {
        let rejected = apply_error("PersistentVolumeClaim", 422);
        assert_eq!(
            rejected.rejected_child(),
            Some(("PersistentVolumeClaim", "catalog-db-backup", "spec.x: Invalid value".to_owned()))
        );
        assert_eq!(
            apply_error("PersistentVolumeClaim", 400).rejected_child().map(|r| r.0),
            Some("PersistentVolumeClaim")
        );
        assert_eq!(apply_error("Secret", 422).rejected_child(), Some(("Secret", "catalog-db-backup", String::new())));
        for transient in [409, 429, 500, 503, 403] {
            assert_eq!(apply_error("Deployment", transient).rejected_child(), None, "HTTP {transient}");
        }
    }
}
