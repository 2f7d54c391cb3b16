//! The restricted security context (Pod Security Standard "restricted") every container and
//! pod the operator renders runs with, declared once.

use k8s_openapi::api::core::v1::{Capabilities, PodSecurityContext, SeccompProfile, SecurityContext};

fn runtime_default() -> Option<SeccompProfile> {
    Some(SeccompProfile { type_: "RuntimeDefault".to_owned(), localhost_profile: None })
}

/// Container: non-root, read-only root filesystem, no privilege escalation, no capabilities.
pub fn container() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        privileged: Some(false),
        capabilities: Some(Capabilities { drop: Some(vec!["ALL".to_owned()]), add: None }),
        seccomp_profile: runtime_default(),
        ..SecurityContext::default()
    }
}

/// Pod: runs as `uid` (user, group and volume group), RuntimeDefault seccomp.
pub fn pod(uid: i64) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(uid),
        run_as_group: Some(uid),
        fs_group: Some(uid),
        seccomp_profile: runtime_default(),
        ..PodSecurityContext::default()
    }
}
