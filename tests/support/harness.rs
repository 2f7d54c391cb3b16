//! What the e2e suite and the benches share to drive a cluster: a client from KUBECONFIG, the
//! committed CRD installed, throw-away namespaces, server-side apply, the committed nodes given
//! back, polling with a deadline and plain HTTP to a port.
//!
//! Every function returns its failure instead of panicking: the tests panic with it
//! (tests/support/cluster.rs), the benches report it beside what they measured before it.

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, anyhow, bail};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::fixtures::repo_root;

/// A client for the cluster in KUBECONFIG. `connect_timeout` replaces kube's (30 s): the benches
/// send thousands of requests through one client and want a dead apiserver to fail a phase
/// soon rather than hang it.
pub async fn client(connect_timeout: Option<Duration>) -> anyhow::Result<Client> {
    let mut config = kube::Config::infer()
        .await
        .context("no cluster in KUBECONFIG: run `make cluster` and export the KUBECONFIG it prints")?;
    if connect_timeout.is_some() {
        config.connect_timeout = connect_timeout;
    }
    Ok(Client::try_from(config)?)
}

/// Installs crds/ (the committed CRD, so a run never tests a stale one) as `manager` and waits
/// until it is Established.
pub async fn ensure_crd(client: &Client, manager: &str) -> anyhow::Result<()> {
    let path = repo_root().join("crds/courseservices.microcourses.io.yaml");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let crd: CustomResourceDefinition =
        serde_saphyr::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    api.patch(&crd.name_any(), &PatchParams::apply(manager).force(), &Patch::Apply(&crd))
        .await
        .with_context(|| format!("applying {}", path.display()))?;
    poll(Duration::from_secs(30), "CRD Established", || async {
        let current = api.get(&crd.name_any()).await.ok()?;
        let conditions = current.status?.conditions?;
        conditions.iter().any(|c| c.type_ == "Established" && c.status == "True").then_some(())
    })
    .await
}

/// A short suffix that makes names unique: the clock, so that runs a moment apart differ (a
/// namespace of the previous run may still be terminating), and a counter, so that callers in
/// the same microsecond differ (the tests run in parallel).
pub fn unique_suffix() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let micros = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_micros());
    format!("{:x}-{}", micros % 0xff_ffff, COUNTER.fetch_add(1, Ordering::SeqCst))
}

/// Creates namespace `<prefix>-<unique suffix>` and returns its name. It is labelled
/// `<owner>: "true"`, so that whatever a run left behind can be found and deleted.
pub async fn create_namespace(client: &Client, prefix: &str, owner: &str) -> anyhow::Result<String> {
    let name = format!("{prefix}-{}", unique_suffix());
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "labels": {owner: "true"}},
    }))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .with_context(|| format!("create namespace {name}"))?;
    Ok(name)
}

/// Deletes a namespace in the background, unless the environment variable `keep` is 1 (to
/// look at what a run left there); with `wait`, until it is gone (its pods and Service IPs are
/// free again).
pub async fn delete_namespace(client: &Client, name: &str, keep: &str, wait: Option<Duration>) -> anyhow::Result<()> {
    if std::env::var(keep).is_ok_and(|v| v == "1") {
        eprintln!("keeping namespace {name}");
        return Ok(());
    }
    let api: Api<Namespace> = Api::all(client.clone());
    let _ = api.delete(name, &DeleteParams::background()).await;
    if let Some(timeout) = wait {
        poll(timeout, &format!("namespace {name} gone"), || async {
            matches!(api.get_opt(name).await, Ok(None)).then_some(())
        })
        .await?;
    }
    Ok(())
}

/// Server-side applies a JSON object as `manager`, forcing conflicts (the harness owns what it
/// writes).
pub async fn apply_json<K>(api: &Api<K>, object: &serde_json::Value, manager: &str) -> anyhow::Result<K>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let name = object["metadata"]["name"].as_str().ok_or_else(|| anyhow!("object without a name"))?.to_owned();
    api.patch(&name, &PatchParams::apply(manager).force(), &Patch::Apply(object))
        .await
        .with_context(|| format!("apply {name}"))
}

/// The nodes of the local cluster, as committed in hack/manifests/nodes.yaml.
pub fn node_manifests() -> anyhow::Result<Vec<serde_json::Value>> {
    let path = repo_root().join("hack/manifests/nodes.yaml");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_saphyr::from_multiple(&text).with_context(|| format!("parsing {}", path.display()))
}

/// The simulated (kwok) nodes of `zone`, by name.
pub async fn kwok_nodes_in(client: &Client, zone: &str) -> anyhow::Result<Vec<String>> {
    let selector = format!("topology.kubernetes.io/zone={zone},type=kwok");
    let list = Api::<Node>::all(client.clone())
        .list(&ListParams::default().labels(&selector))
        .await
        .with_context(|| format!("list nodes {selector}"))?;
    Ok(list.items.iter().map(|n| n.name_any()).collect())
}

/// Takes nodes away as a lost zone would: all cordoned first (nothing new lands on them while
/// the others go), then deleted. [`restore_nodes`] gives them back.
pub async fn remove_nodes(client: &Client, names: &[String]) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let cordon = serde_json::json!({"spec": {"unschedulable": true}});
    for name in names {
        nodes
            .patch(name, &PatchParams::default(), &Patch::Merge(&cordon))
            .await
            .with_context(|| format!("cordon {name}"))?;
    }
    for name in names {
        nodes.delete(name, &DeleteParams::default()).await.with_context(|| format!("delete node {name}"))?;
    }
    Ok(())
}

/// Gives back the committed nodes after a zone was taken away: applies them again as `manager`
/// and lifts the cordon of a removal that stopped halfway (a spec field another manager set,
/// which the apply leaves alone).
pub async fn restore_nodes(client: &Client, manager: &str) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    for node in node_manifests()? {
        apply_json(&nodes, &node, manager).await?;
        let name = node["metadata"]["name"].as_str().unwrap_or_default();
        let uncordon = serde_json::json!({"spec": {"unschedulable": null}});
        nodes
            .patch(name, &PatchParams::default(), &Patch::Merge(&uncordon))
            .await
            .with_context(|| format!("uncordon node {name}"))?;
    }
    Ok(())
}

/// Whether a node reports Ready.
pub fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Whether a pod reports Ready (its own condition, ahead of the status of its ReplicaSet).
pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Polls `probe` every 100 ms until it returns `Some`, for at most `timeout` (for what no watch
/// covers, like a process's HTTP endpoint).
pub async fn poll<T, F, Fut>(timeout: Duration, what: &str, probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    poll_every(Duration::from_millis(100), timeout, what, probe).await
}

/// Polls `probe` every `interval` until it returns `Some`, for at most `timeout`; the error
/// names `what` was awaited.
pub async fn poll_every<T, F, Fut>(interval: Duration, timeout: Duration, what: &str, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(interval).await;
    }
}

/// A free TCP port on 127.0.0.1 (for a process to listen on).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("looking for a free port")?;
    Ok(listener.local_addr()?.port())
}

/// `GET path` on `host:port` over HTTP/1.0: (status code, body); `None` when nothing answers,
/// or when connecting or reading the answer takes longer than `step`.
pub async fn http_get(host: &str, port: u16, path: &str, step: Duration) -> Option<(u16, String)> {
    http_request(host, port, "GET", path, None, step).await
}

/// One HTTP/1.0 request with an optional JSON body: (status code, body); `None` when nothing
/// answers, or when connecting or reading the answer takes longer than `step`.
pub async fn http_request(
    host: &str,
    port: u16,
    method: &str,
    path: &str,
    json: Option<&str>,
    step: Duration,
) -> Option<(u16, String)> {
    let connect = tokio::net::TcpStream::connect((host, port));
    let mut stream = tokio::time::timeout(step, connect).await.ok()?.ok()?;
    let body = json.unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    tokio::time::timeout(step, stream.read_to_string(&mut response)).await.ok()?.ok()?;
    let code = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Some((code, body))
}
