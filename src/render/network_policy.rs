//! NetworkPolicies that let only the course pods (and the operator's Jobs) reach the data stores.
//!
//! Redis and MongoDB run without TLS and Redis without a password, so the network is their
//! fence: each policy selects one component's pods and admits, on its ports only, the same
//! CourseService's application pods, the component's own pods (replication, Sentinel gossip,
//! elections) and, for the database, the init Job and the backup pods. Egress stays open.
//! Pods of other CourseServices in the namespace are refused: every peer is matched by the
//! instance label as well.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::Context;
use super::mongo;
use super::redis::{REDIS_PORT, SENTINEL_PORT};
use crate::database::MONGO_PORT;
use crate::labels::{self, Component};
use crate::names;

/// NetworkPolicy `<name>-cache`: Redis and Sentinel ports, from the application and the cache.
pub fn cache(ctx: &Context<'_>) -> NetworkPolicy {
    policy(
        ctx,
        names::cache(ctx.name),
        Component::Cache,
        vec![labels::selector(ctx.name, Component::App), labels::selector(ctx.name, Component::Cache)],
        &[REDIS_PORT, SENTINEL_PORT],
    )
}

/// NetworkPolicy `<name>-db`: the MongoDB port, from the application, the members (and
/// arbiter), the init Job and the backup pods.
pub fn database(ctx: &Context<'_>) -> NetworkPolicy {
    policy(
        ctx,
        names::database(ctx.name),
        Component::Database,
        vec![
            labels::selector(ctx.name, Component::App),
            labels::selector(ctx.name, Component::Database),
            mongo::init_pod_labels(ctx.name),
            labels::selector(ctx.name, Component::Backup),
        ],
        &[MONGO_PORT],
    )
}

fn policy(
    ctx: &Context<'_>,
    name: String,
    component: Component,
    peers: Vec<BTreeMap<String, String>>,
    ports: &[i32],
) -> NetworkPolicy {
    let select =
        |labels: BTreeMap<String, String>| LabelSelector { match_labels: Some(labels), match_expressions: None };
    NetworkPolicy {
        metadata: ctx.meta(name, component, BTreeMap::new()),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(select(labels::selector(ctx.name, component))),
            // Ingress only: what the data pods reach (DNS, each other) is not restricted here.
            policy_types: Some(vec!["Ingress".to_owned()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                // A pod selector without a namespace selector means "in this namespace".
                from: Some(
                    peers
                        .into_iter()
                        .map(|labels| NetworkPolicyPeer {
                            pod_selector: Some(select(labels)),
                            ..NetworkPolicyPeer::default()
                        })
                        .collect(),
                ),
                ports: Some(
                    ports
                        .iter()
                        .map(|&port| NetworkPolicyPort {
                            port: Some(IntOrString::Int(port)),
                            protocol: Some("TCP".to_owned()),
                            end_port: None,
                        })
                        .collect(),
                ),
            }]),
            egress: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::manifest;

    fn peers(policy: &NetworkPolicy) -> Vec<BTreeMap<String, String>> {
        let spec = policy.spec.clone().unwrap_or_default();
        let rule = spec.ingress.unwrap_or_default().into_iter().next().unwrap_or_default();
        rule.from.unwrap_or_default().into_iter().filter_map(|p| p.pod_selector.and_then(|s| s.match_labels)).collect()
    }

    fn ports(policy: &NetworkPolicy) -> Vec<i32> {
        let spec = policy.spec.clone().unwrap_or_default();
        let rule = spec.ingress.unwrap_or_default().into_iter().next().unwrap_or_default();
        rule.ports
            .unwrap_or_default()
            .into_iter()
            .filter_map(|p| match p.port {
                Some(IntOrString::Int(port)) => Some(port),
                _ => None,
            })
            .collect()
    }

    fn with_context(check: impl FnOnce(&Context<'_>)) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/samples/full-stack.yaml");
        let cs = manifest::parse(&std::fs::read_to_string(path).expect("read sample")).expect("sample parses");
        check(&Context::new(&cs));
    }

    fn admits(policy: &NetworkPolicy, pod_labels: &BTreeMap<String, String>) -> bool {
        peers(policy).iter().any(|selector| selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)))
    }

    #[test]
    fn cache_admits_course_and_cache_pods_on_redis_and_sentinel_ports() {
        with_context(|ctx| {
            let policy = cache(ctx);
            assert_eq!(ports(&policy), [6379, 26379]);
            assert!(admits(&policy, &labels::common(ctx.name, Component::App)));
            assert!(admits(&policy, &labels::common(ctx.name, Component::Cache)));
            assert!(!admits(&policy, &labels::common(ctx.name, Component::Database)));
            assert!(!admits(&policy, &labels::common("another-course", Component::App)));
            let spec = policy.spec.unwrap_or_default();
            assert_eq!(spec.policy_types.as_deref(), Some(&["Ingress".to_owned()][..]));
            assert_eq!(
                spec.pod_selector.and_then(|s| s.match_labels),
                Some(labels::selector(ctx.name, Component::Cache))
            );
        });
    }

    #[test]
    fn database_admits_course_pods_members_init_job_and_backups_only() {
        with_context(|ctx| {
            let policy = database(ctx);
            assert_eq!(ports(&policy), [27017]);
            for component in [Component::App, Component::Database, Component::Backup] {
                assert!(admits(&policy, &labels::common(ctx.name, component)), "{component:?}");
            }
            let db = ctx.cs.spec.database.clone().expect("full-stack has a database");
            let job = mongo::init_job(ctx, &db);
            let job_pod_labels = job.spec.and_then(|s| s.template.metadata).and_then(|m| m.labels).unwrap_or_default();
            assert!(admits(&policy, &job_pod_labels), "the init Job's pods");
            assert!(!admits(&policy, &labels::common(ctx.name, Component::Cache)));
            assert!(!admits(&policy, &labels::common("another-course", Component::App)));
        });
    }
}
