//! Reading CourseService manifests from YAML, with errors that name the offending field.

use serde::Deserialize;

use crate::api::{CourseService, GROUP, VERSION};

/// A manifest that is not a well-formed CourseService.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("not valid YAML: {0}")]
    Yaml(String),
    #[error("{path}: {message}")]
    Field { path: String, message: String },
    #[error("{field}: expected {expected}, got {got:?}")]
    WrongType { field: &'static str, expected: String, got: String },
}

/// Parses one CourseService from YAML (or JSON). Type errors name the field path, e.g.
/// `spec.port: invalid type: string "http", expected i32`.
pub fn parse(text: &str) -> Result<CourseService, ManifestError> {
    let value: serde_json::Value = serde_saphyr::from_str(text).map_err(|e| ManifestError::Yaml(e.to_string()))?;
    let api_version = value.get("apiVersion").and_then(|v| v.as_str()).unwrap_or_default();
    let expected_version = format!("{GROUP}/{VERSION}");
    if api_version != expected_version {
        return Err(ManifestError::WrongType {
            field: "apiVersion",
            expected: expected_version,
            got: api_version.into(),
        });
    }
    let kind = value.get("kind").and_then(|v| v.as_str()).unwrap_or_default();
    if kind != "CourseService" {
        return Err(ManifestError::WrongType { field: "kind", expected: "CourseService".into(), got: kind.into() });
    }
    let mut tracker = serde_path_to_error::Track::new();
    let deserializer = serde_path_to_error::Deserializer::new(&value, &mut tracker);
    CourseService::deserialize(deserializer).map_err(|e| {
        let path = tracker.path().to_string();
        let message = e.to_string();
        // serde reports a missing field at its parent; name the field itself, as the apiserver does.
        match message.strip_prefix("missing field `").and_then(|rest| rest.strip_suffix('`')) {
            Some(field) => ManifestError::Field { path: format!("{path}.{field}"), message: "is required".into() },
            None => ManifestError::Field { path, message },
        }
    })
}
