//! The CRD on the real apiserver: installation, samples, and rejection of invalid specs at
//! admission, plus the scheduling behaviour the operator relies on.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};

use crate::cluster::{self, CLUSTER, TEST_MANAGER, eventually, with_namespace};
use crate::{fixtures, harness};
use course_operator::api::CourseService;

fn courses(client: &Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &ApiResource::erase::<CourseService>(&()))
}

async fn dry_run_apply(api: &Api<DynamicObject>, manifest: &serde_json::Value) -> Result<DynamicObject, kube::Error> {
    let name = manifest["metadata"]["name"].as_str().unwrap_or("x");
    api.patch(name, &PatchParams::apply(TEST_MANAGER).dry_run(), &Patch::Apply(manifest)).await
}

#[tokio::test]
async fn crd_installs_and_is_established_with_its_subresources() {
    let _shared = CLUSTER.read().await;
    let client = cluster::client().await;
    cluster::ensure_crd(&client).await;
    let crd = Api::<CustomResourceDefinition>::all(client).get("courseservices.microcourses.io").await.expect("CRD");
    let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
    assert!(conditions.iter().any(|c| c.type_ == "Established" && c.status == "True"));
    assert!(conditions.iter().any(|c| c.type_ == "NamesAccepted" && c.status == "True"));
}

#[tokio::test]
async fn every_sample_is_accepted_by_a_server_side_dry_run() {
    let _shared = CLUSTER.read().await;
    with_namespace("samples", |client, ns| async move {
        let api = courses(&client, &ns);
        for (name, text) in fixtures::samples() {
            let manifest: serde_json::Value = serde_saphyr::from_str(&text).expect("sample YAML");
            let accepted =
                dry_run_apply(&api, &manifest).await.unwrap_or_else(|e| panic!("sample {name} rejected: {e}"));
            // Defaults come from the schema: an omitted port is filled in by the apiserver.
            assert!(accepted.data["spec"]["port"].as_i64().is_some(), "sample {name}: no defaulted port");
        }
    })
    .await;
}

#[tokio::test]
async fn invalid_specs_are_rejected_by_the_apiserver_naming_the_field() {
    let _shared = CLUSTER.read().await;
    with_namespace("invalid", |client, ns| async move {
        let api = courses(&client, &ns);
        let mut failures = Vec::new();
        for case in fixtures::invalid_cases() {
            // A dry-run create, as `kubectl create` sends it. (Server-side apply reports some
            // structural errors, like duplicate list keys, as HTTP 500 before validation runs.)
            let object: DynamicObject = serde_json::from_value(case.manifest()).expect("case object");
            let result = api.create(&PostParams { dry_run: true, ..PostParams::default() }, &object).await;
            match (case.admission, result) {
                (true, Ok(_)) => failures.push(format!("{:?}: accepted by the apiserver", case.case)),
                (true, Err(kube::Error::Api(status))) => {
                    if status.code != 422 || !status.message.contains(&case.field) {
                        failures.push(format!(
                            "{:?}: HTTP {} {:?} does not name {}",
                            case.case, status.code, status.message, case.field
                        ));
                    }
                }
                (true, Err(other)) => failures.push(format!("{:?}: unexpected error {other}", case.case)),
                (false, Err(e)) => failures.push(format!("{:?}: meant to pass admission, rejected: {e}", case.case)),
                (false, Ok(_)) => {}
            }
        }
        assert!(failures.is_empty(), "{} case(s) wrong:\n{}", failures.len(), failures.join("\n"));
    })
    .await;
}

#[tokio::test]
async fn a_zone_spread_deployment_lands_one_pod_per_zone() {
    let _shared = CLUSTER.read().await;
    with_namespace("spread", |client, ns| async move {
        let labels = serde_json::json!({"app": "spread"});
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        cluster::apply(
            &deployments,
            serde_json::json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "spread", "namespace": ns},
                "spec": {
                    "replicas": 3,
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "containers": [{"name": "app", "image": "registry.example.com/spread:1"}],
                            "nodeSelector": {"type": "kwok"},
                            "tolerations": [{"key": fixtures::KWOK_TAINT, "operator": "Exists", "effect": "NoSchedule"}],
                            "topologySpreadConstraints": [{
                                "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                                "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": labels},
                            }],
                        },
                    },
                },
            }),
        )
        .await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let placed = eventually(Duration::from_secs(60), "3 Ready pods", || async {
            let list = pods.list(&ListParams::default().labels("app=spread")).await.ok()?;
            let ready: Vec<String> = list
                .items
                .iter()
                .filter(|p| harness::pod_ready(p))
                .filter_map(|p| p.spec.as_ref()?.node_name.clone())
                .collect();
            (ready.len() == 3).then_some(ready)
        })
        .await;
        let nodes: Api<Node> = Api::all(client.clone());
        let mut per_zone: BTreeMap<String, usize> = BTreeMap::new();
        for node_name in placed {
            let node = nodes.get(&node_name).await.expect("node");
            let zone = node
                .metadata
                .labels
                .unwrap_or_default()
                .get("topology.kubernetes.io/zone")
                .cloned()
                .unwrap_or_default();
            *per_zone.entry(zone).or_default() += 1;
        }
        assert_eq!(per_zone.len(), 3, "pods per zone: {per_zone:?}");
        assert!(per_zone.values().all(|n| *n == 1), "pods per zone: {per_zone:?}");
    })
    .await;
}
