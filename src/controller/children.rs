//! Applying desired children with server-side apply, skipping unchanged ones, and pruning
//! children that are no longer desired.

use std::collections::BTreeSet;
use std::fmt::Debug;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::{NamespaceResourceScope, Resource as _};
use kube::api::{DeleteParams, Patch, PatchParams, PropagationPolicy};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::Error;
use crate::labels;
use crate::render::{Child, each_child};

/// Cache of the metadata of one kind of child.
pub type MetaStore<K> = Store<PartialObjectMeta<K>>;

/// The caches children are read from: full objects where their status matters, metadata only
/// elsewhere (memory).
#[derive(Clone)]
pub struct ChildStores {
    /// The per-zone application workloads (full objects: their replica counts are read).
    pub replica_sets: Store<ReplicaSet>,
    /// Per-zone Deployments of earlier builds of the operator, pruned once replaced.
    pub legacy_deployments: MetaStore<Deployment>,
    pub statefulsets: Store<StatefulSet>,
    pub jobs: Store<Job>,
    pub services: MetaStore<Service>,
    pub pdbs: MetaStore<PodDisruptionBudget>,
    pub hpas: MetaStore<HorizontalPodAutoscaler>,
    pub configmaps: MetaStore<ConfigMap>,
    /// Full objects: the database credentials are read back from their Secret.
    pub secrets: Store<Secret>,
    pub cronjobs: MetaStore<CronJob>,
    pub network_policies: MetaStore<NetworkPolicy>,
    pub pvcs: MetaStore<PersistentVolumeClaim>,
}

/// Stamps the child with the hash of its desired form.
pub fn fingerprint(child: &mut Child) {
    let json = serde_json::to_vec(&*child).unwrap_or_default();
    let hash: String = Sha256::digest(&json).iter().take(8).map(|b| format!("{b:02x}")).collect();
    child.meta_mut().annotations.get_or_insert_default().insert(labels::APPLIED_HASH.to_owned(), hash);
}

fn applied_hash(meta: &ObjectMeta) -> Option<&str> {
    meta.annotations.as_ref()?.get(labels::APPLIED_HASH).map(String::as_str)
}

fn cached<K: Resource<DynamicType = ()> + Clone>(store: &Store<K>, namespace: &str, name: &str) -> Option<ObjectMeta> {
    store.get(&ObjectRef::new(name).within(namespace)).map(|o| o.meta().clone())
}

impl ChildStores {
    /// Metadata of a cached child of `kind`.
    fn meta_of(&self, kind: &str, namespace: &str, name: &str) -> Option<ObjectMeta> {
        match kind {
            ReplicaSet::KIND => cached(&self.replica_sets, namespace, name),
            StatefulSet::KIND => cached(&self.statefulsets, namespace, name),
            Job::KIND => cached(&self.jobs, namespace, name),
            Service::KIND => cached(&self.services, namespace, name),
            PodDisruptionBudget::KIND => cached(&self.pdbs, namespace, name),
            HorizontalPodAutoscaler::KIND => cached(&self.hpas, namespace, name),
            ConfigMap::KIND => cached(&self.configmaps, namespace, name),
            Secret::KIND => cached(&self.secrets, namespace, name),
            CronJob::KIND => cached(&self.cronjobs, namespace, name),
            NetworkPolicy::KIND => cached(&self.network_policies, namespace, name),
            PersistentVolumeClaim::KIND => cached(&self.pvcs, namespace, name),
            _ => None,
        }
    }

    /// Whether the cluster already has this child as we last applied it. A data volume counts
    /// as current as soon as it exists, a generated Secret as soon as it has every key: neither
    /// is ever rewritten.
    pub fn is_current(&self, namespace: &str, child: &Child) -> bool {
        let Some(meta) = self.meta_of(child.kind(), namespace, child.name()) else { return false };
        match child {
            Child::Secret(secret) if is_generated(secret) => {
                let cached = self.secrets.get(&ObjectRef::new(child.name()).within(namespace));
                cached.is_some_and(|c| missing_keys(secret, &c).is_empty())
            }
            Child::PersistentVolumeClaim(_) => true,
            // Replicas are compared too: someone scaling the ReplicaSet by hand is drift.
            Child::ReplicaSet(desired) => {
                let observed = self.replica_sets.get(&ObjectRef::new(child.name()).within(namespace));
                applied_hash(&meta) == applied_hash(child.meta())
                    && observed.is_some_and(|o| o.spec.replicas == desired.spec.replicas)
            }
            _ => applied_hash(&meta) == applied_hash(child.meta()),
        }
    }
}

fn is_generated(secret: &Secret) -> bool {
    secret.metadata.annotations.as_ref().and_then(|a| a.get(labels::GENERATED)).is_some_and(|v| v == "true")
}

/// Keys of `desired` that `existing` does not have.
fn missing_keys(desired: &Secret, existing: &Secret) -> Vec<String> {
    let have = existing.data.as_ref();
    desired
        .data
        .iter()
        .flatten()
        .map(|(k, _)| k)
        .filter(|k| !have.is_some_and(|d| d.contains_key(*k)))
        .cloned()
        .collect()
}

/// Server-side applies one child under the operator's field manager. Generated Secrets and data
/// volumes are only ever created: if one already exists (the cache may lag), it is kept as is,
/// so credentials are never overwritten by a second generation; a generated Secret only gets
/// the keys it lacks.
pub async fn apply(client: &Client, namespace: &str, child: &Child) -> Result<(), Error> {
    let result = match child {
        Child::Secret(secret) if is_generated(secret) => create_or_add_keys(client, namespace, secret.as_ref()).await,
        Child::PersistentVolumeClaim(claim) => create_once(client, namespace, claim.as_ref()).await,
        _ => server_side_apply(client, namespace, child, &PatchParams::apply(labels::MANAGER).force()).await,
    };
    result.map_err(|source| Error::Apply {
        kind: child.kind(),
        namespace: namespace.to_owned(),
        name: child.name().to_owned(),
        source,
    })
}

async fn create_once<K>(client: &Client, namespace: &str, object: &K) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope> + Clone + Debug + Serialize + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let params = kube::api::PostParams { field_manager: Some(labels::MANAGER.to_owned()), ..Default::default() };
    match api.create(&params, object).await {
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        other => other.map(|_| ()),
    }
}

/// Creates the generated Secret, or adds the keys an existing one lacks (written by an older
/// version of the operator). Existing keys are never sent. The patch carries the
/// resourceVersion the missing keys were computed from, so a Secret changed meanwhile fails
/// it with a conflict (the reconcile retries on fresh data) instead of being overwritten.
async fn create_or_add_keys(client: &Client, namespace: &str, desired: &Secret) -> Result<(), kube::Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let params = kube::api::PostParams { field_manager: Some(labels::MANAGER.to_owned()), ..Default::default() };
    match api.create(&params, desired).await {
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        other => return other.map(|_| ()),
    }
    let existing = api.get(&desired.name_any()).await?;
    let missing = missing_keys(desired, &existing);
    if missing.is_empty() {
        return Ok(());
    }
    let data: serde_json::Map<String, serde_json::Value> = desired
        .data
        .iter()
        .flatten()
        .filter(|(k, _)| missing.contains(k))
        .map(|(k, v)| (k.clone(), serde_json::to_value(v).unwrap_or_default()))
        .collect();
    let patch = serde_json::json!({
        "metadata": { "resourceVersion": existing.metadata.resource_version },
        "data": data,
    });
    let params = PatchParams { field_manager: Some(labels::MANAGER.to_owned()), ..PatchParams::default() };
    api.patch(&desired.name_any(), &params, &Patch::Merge(&patch)).await.map(|_| ())
}

/// Server-side applies `child` as it is with `params`, without the create-once rules of
/// [`apply`]: the operator's own update path, and what the benches' raw writer sends.
pub async fn server_side_apply(
    client: &Client,
    namespace: &str,
    child: &Child,
    params: &PatchParams,
) -> Result<(), kube::Error> {
    each_child!(child, object => patch(client, namespace, object.as_ref(), params).await)
}

async fn patch<K>(client: &Client, namespace: &str, object: &K, params: &PatchParams) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope> + Clone + Debug + Serialize + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    api.patch(&object.name_any(), params, &Patch::Apply(object)).await.map(|_| ())
}

/// Names of cached children of one kind that belong to this CourseService (its labels and its
/// owner reference) but are not desired.
fn stale<K: Resource<DynamicType = ()> + Clone>(
    store: &Store<K>,
    owner: &Owner<'_>,
    desired: &BTreeSet<(&str, &str)>,
    kind: &str,
) -> Vec<String> {
    store
        .state()
        .iter()
        .map(|o| o.meta())
        .filter(|m| m.namespace.as_deref() == Some(owner.namespace))
        .filter(|m| {
            let labels = m.labels.as_ref();
            labels.and_then(|l| l.get(labels::INSTANCE)).is_some_and(|v| v == owner.instance)
                && labels.and_then(|l| l.get(labels::MANAGED_BY)).is_some_and(|v| v == labels::MANAGER)
        })
        .filter(|m| m.owner_references.as_ref().is_some_and(|refs| refs.iter().any(|r| r.uid == owner.uid)))
        .filter_map(|m| m.name.clone())
        .filter(|name| !desired.contains(&(kind, name.as_str())))
        .collect()
}

/// The CourseService whose children are pruned.
pub struct Owner<'a> {
    pub namespace: &'a str,
    pub instance: &'a str,
    pub uid: &'a str,
}

/// Deletes children carrying this CourseService's labels and owner reference that are no
/// longer desired. Secrets (generated credentials) and PersistentVolumeClaims are never
/// pruned: data outlives a spec change. Per-zone Deployments of earlier builds go only once
/// `replaced` (every desired ReplicaSet's replicas Ready endpoints), so their pods serve until
/// then.
pub async fn prune(
    client: &Client,
    stores: &ChildStores,
    owner: &Owner<'_>,
    desired: &[Child],
    replaced: bool,
) -> Result<usize, Error> {
    let wanted: BTreeSet<(&str, &str)> = desired.iter().map(|c| (c.kind(), c.name())).collect();
    let mut deleted = 0;
    macro_rules! prune_kind {
        ($store:expr, $kind:ty) => {
            for name in stale(&$store, owner, &wanted, <$kind>::KIND) {
                delete::<$kind>(client, owner.namespace, &name).await?;
                deleted += 1;
            }
        };
    }
    // Old revisions' ReplicaSets leave the desired set only once the rollout decided the
    // remaining ones carry the disruption budget.
    prune_kind!(stores.replica_sets, ReplicaSet);
    if replaced {
        prune_kind!(stores.legacy_deployments, Deployment);
    }
    prune_kind!(stores.statefulsets, StatefulSet);
    prune_kind!(stores.jobs, Job);
    prune_kind!(stores.services, Service);
    prune_kind!(stores.pdbs, PodDisruptionBudget);
    prune_kind!(stores.hpas, HorizontalPodAutoscaler);
    prune_kind!(stores.configmaps, ConfigMap);
    prune_kind!(stores.cronjobs, CronJob);
    prune_kind!(stores.network_policies, NetworkPolicy);
    Ok(deleted)
}

async fn delete<K>(client: &Client, namespace: &str, name: &str) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope> + Clone + Debug + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let params = DeleteParams { propagation_policy: Some(PropagationPolicy::Background), ..DeleteParams::default() };
    match api.delete(name, &params).await {
        Ok(_) => Ok(()),
        // Already gone: the goal is reached.
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(Error::Delete {
            kind: K::kind(&()).into_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            source,
        }),
    }
}
