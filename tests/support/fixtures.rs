//! Fixtures shared by the offline and e2e tiers: samples and invalid specs.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Root of the repository.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every sample under manifests/samples/, as (file name, YAML text).
pub fn samples() -> Vec<(String, String)> {
    let dir = repo_root().join("manifests/samples");
    let mut samples: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| (file_name(&p), std::fs::read_to_string(&p).expect("sample readable")))
        .collect();
    samples.sort();
    assert!(!samples.is_empty(), "no samples in {}", dir.display());
    samples
}

fn file_name(p: &Path) -> String {
    p.file_stem().expect("file name").to_string_lossy().into_owned()
}

/// One invalid CourseService and the field its error must name.
#[derive(Debug, Deserialize)]
pub struct InvalidCase {
    pub case: String,
    pub field: String,
    /// The apiserver rejects it at admission (else only the operator's semantic checks do).
    pub admission: bool,
    #[serde(default)]
    pub name: Option<String>,
    pub spec: serde_json::Value,
}

impl InvalidCase {
    /// The full manifest as JSON.
    pub fn manifest(&self) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "microcourses.io/v1alpha1",
            "kind": "CourseService",
            "metadata": {"name": self.name.as_deref().unwrap_or("invalid")},
            "spec": self.spec,
        })
    }
}

/// The cases of tests/fixtures/invalid-specs.yaml.
pub fn invalid_cases() -> Vec<InvalidCase> {
    let path = repo_root().join("tests/fixtures/invalid-specs.yaml");
    let text = std::fs::read_to_string(&path).expect("invalid-specs.yaml readable");
    serde_saphyr::from_str(&text).expect("invalid-specs.yaml parses")
}

/// The simulated nodes' taint (hack/manifests/nodes.yaml): workloads opt in to kwok.
pub const KWOK_TAINT: &str = "kwok.x-k8s.io/node";

/// A CourseService manifest placed on the simulated (kwok) nodes, through the placement fields
/// a platform team would use for a node pool: `spec.nodeSelector` and `spec.tolerations`.
/// Without them a CourseService lands on the real nodes.
#[allow(dead_code)] // not every test binary including this module places CourseServices
pub fn on_kwok(mut manifest: serde_json::Value) -> serde_json::Value {
    if let Some(spec) = manifest.get_mut("spec").and_then(serde_json::Value::as_object_mut) {
        spec.insert("nodeSelector".into(), serde_json::json!({"type": "kwok"}));
        spec.insert(
            "tolerations".into(),
            serde_json::json!([{"key": KWOK_TAINT, "operator": "Exists", "effect": "NoSchedule"}]),
        );
    }
    manifest
}

/// A CourseService manifest named `name` in `namespace` with `spec`, without placement: it
/// lands on the real nodes (the simulated ones are tainted).
#[allow(dead_code)] // not every test binary including this module places CourseServices
pub fn course_manifest(name: &str, namespace: &str, spec: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "microcourses.io/v1alpha1", "kind": "CourseService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    })
}

/// A CourseService manifest named `name` in `namespace` with `spec`, placed on the simulated
/// (kwok) nodes ([`on_kwok`]): the starting point of the e2e tests and benches.
#[allow(dead_code)] // not every test binary including this module places CourseServices
pub fn course(name: &str, namespace: &str, spec: serde_json::Value) -> serde_json::Value {
    on_kwok(course_manifest(name, namespace, spec))
}
