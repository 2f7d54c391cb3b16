//! The local apiserver's audit log (`hack/cluster.sh` with `hack/kwok/audit-policy.yaml`): one
//! line per write request to the kinds the operator and its peers write, with the client's user
//! agent. Read by the e2e tests (which replica wrote what) and the benches (writes per object).

use std::path::{Path, PathBuf};

use k8s_openapi::jiff::Timestamp;

/// One write request as the apiserver recorded it.
#[derive(Clone, Debug)]
#[allow(dead_code)] // not every reader looks at every field
pub struct AuditedWrite {
    pub at: Timestamp,
    pub verb: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
    pub user_agent: String,
    pub code: i64,
}

/// Where the local cluster writes its audit log: `E2E_AUDIT_LOG` if set, else under the
/// repository's `.cluster/`.
pub fn log_path(repo_root: &Path) -> PathBuf {
    std::env::var_os("E2E_AUDIT_LOG")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root.join(".cluster/kwok/clusters/course-operator/logs/audit.log"))
}

/// Write requests in `namespace` received at or after `since`, from the log at `path` and the
/// backup the apiserver rotated out beside it (`audit-<time>.log`), oldest first.
pub fn writes(path: &Path, namespace: &str, since: Timestamp) -> std::io::Result<Vec<AuditedWrite>> {
    let mut files: Vec<PathBuf> = Vec::new();
    if let (Some(dir), Some(stem)) = (path.parent(), path.file_stem().and_then(|s| s.to_str())) {
        for entry in std::fs::read_dir(dir)? {
            let file = entry?.path();
            let name = file.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if file != path && name.starts_with(&format!("{stem}-")) && name.ends_with(".log") {
                files.push(file);
            }
        }
    }
    files.sort();
    files.push(path.to_owned());
    let mut writes = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        for line in text.lines() {
            let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else { continue };
            if event["objectRef"]["namespace"] != namespace {
                continue;
            }
            let Some(at) = event["requestReceivedTimestamp"].as_str().and_then(|t| t.parse::<Timestamp>().ok()) else {
                continue;
            };
            if at < since {
                continue;
            }
            let text = |value: &serde_json::Value| value.as_str().unwrap_or_default().to_owned();
            writes.push(AuditedWrite {
                at,
                verb: text(&event["verb"]),
                resource: text(&event["objectRef"]["resource"]),
                subresource: text(&event["objectRef"]["subresource"]),
                name: text(&event["objectRef"]["name"]),
                user_agent: text(&event["userAgent"]),
                code: event["responseStatus"]["code"].as_i64().unwrap_or_default(),
            });
        }
    }
    Ok(writes)
}
