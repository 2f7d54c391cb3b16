//! Applying desired children with server-side apply, skipping unchanged ones, and pruning
//! children that are no longer desired.

use std::collections::BTreeSet;
use std::fmt::Debug;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, Patch, PatchParams, PropagationPolicy};
use kube::runtime::reflector::Store;
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::Error;
use crate::labels;
use crate::render::Child;

/// The caches children are read from.
#[derive(Clone)]
pub struct ChildStores {
    pub deployments: Store<Deployment>,
    pub services: Store<kube::core::PartialObjectMeta<Service>>,
    pub pdbs: Store<kube::core::PartialObjectMeta<PodDisruptionBudget>>,
    pub hpas: Store<kube::core::PartialObjectMeta<HorizontalPodAutoscaler>>,
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

fn cached_meta<K: Resource<DynamicType = ()> + Clone>(
    store: &Store<K>,
    namespace: &str,
    name: &str,
) -> Option<ObjectMeta> {
    let key = kube::runtime::reflector::ObjectRef::new(name).within(namespace);
    store.get(&key).map(|o| o.meta().clone())
}

impl ChildStores {
    /// Whether the cluster already has exactly this child as we last applied it.
    pub fn is_current(&self, namespace: &str, child: &Child) -> bool {
        let desired = applied_hash(child.meta());
        let name = child.name();
        match child {
            Child::Deployment(d) => {
                let key = kube::runtime::reflector::ObjectRef::new(name).within(namespace);
                // Replicas are compared too: someone scaling the Deployment by hand is drift.
                self.deployments
                    .get(&key)
                    .is_some_and(|o| applied_hash(&o.metadata) == desired && o.spec.replicas == d.spec.replicas)
            }
            Child::Service(_) => {
                cached_meta(&self.services, namespace, name).is_some_and(|m| applied_hash(&m) == desired)
            }
            Child::PodDisruptionBudget(_) => {
                cached_meta(&self.pdbs, namespace, name).is_some_and(|m| applied_hash(&m) == desired)
            }
            Child::HorizontalPodAutoscaler(_) => {
                cached_meta(&self.hpas, namespace, name).is_some_and(|m| applied_hash(&m) == desired)
            }
        }
    }
}

/// Server-side applies one child under the operator's field manager.
pub async fn apply(client: &Client, namespace: &str, child: &Child) -> Result<(), Error> {
    let result = match child {
        Child::Deployment(o) => patch(client, namespace, o.as_ref()).await,
        Child::Service(o) => patch(client, namespace, o.as_ref()).await,
        Child::PodDisruptionBudget(o) => patch(client, namespace, o.as_ref()).await,
        Child::HorizontalPodAutoscaler(o) => patch(client, namespace, o.as_ref()).await,
    };
    result.map_err(|source| Error::Apply {
        kind: child.kind(),
        namespace: namespace.to_owned(),
        name: child.name().to_owned(),
        source,
    })
}

async fn patch<K>(client: &Client, namespace: &str, object: &K) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let params = PatchParams::apply(labels::MANAGER).force();
    api.patch(&object.name_any(), &params, &Patch::Apply(object)).await.map(|_| ())
}

/// Owned children of one kind that exist but are no longer desired.
fn stale<K: Resource<DynamicType = ()> + Clone>(
    store: &Store<K>,
    namespace: &str,
    instance: &str,
    owner_uid: &str,
    desired: &BTreeSet<(&str, &str)>,
    kind: &'static str,
) -> Vec<String> {
    store
        .state()
        .iter()
        .filter(|o| o.meta().namespace.as_deref() == Some(namespace))
        .filter(|o| {
            let labels = o.meta().labels.as_ref();
            labels.and_then(|l| l.get(labels::INSTANCE)).is_some_and(|v| v == instance)
                && labels.and_then(|l| l.get(labels::MANAGED_BY)).is_some_and(|v| v == labels::MANAGER)
        })
        .filter(|o| o.meta().owner_references.as_ref().is_some_and(|refs| refs.iter().any(|r| r.uid == owner_uid)))
        .filter_map(|o| o.meta().name.clone())
        .filter(|name| !desired.contains(&(kind, name.as_str())))
        .collect()
}

/// Which kinds may be pruned now.
pub struct PrunePolicy {
    /// Deployments go only once the current revision can carry the load.
    pub deployments: bool,
}

/// Deletes children carrying this CourseService's labels and owner reference that are no
/// longer desired. Only the kinds the operator renders are considered: PVCs and Secrets are
/// never pruned.
pub async fn prune(
    client: &Client,
    stores: &ChildStores,
    namespace: &str,
    instance: &str,
    owner_uid: &str,
    desired: &[Child],
    policy: &PrunePolicy,
) -> Result<usize, Error> {
    let wanted: BTreeSet<(&str, &str)> = desired.iter().map(|c| (c.kind(), c.name())).collect();
    let mut deleted = 0;
    if policy.deployments {
        for name in stale(&stores.deployments, namespace, instance, owner_uid, &wanted, "Deployment") {
            delete::<Deployment>(client, namespace, &name).await?;
            deleted += 1;
        }
    }
    for name in stale(&stores.services, namespace, instance, owner_uid, &wanted, "Service") {
        delete::<Service>(client, namespace, &name).await?;
        deleted += 1;
    }
    for name in stale(&stores.pdbs, namespace, instance, owner_uid, &wanted, "PodDisruptionBudget") {
        delete::<PodDisruptionBudget>(client, namespace, &name).await?;
        deleted += 1;
    }
    for name in stale(&stores.hpas, namespace, instance, owner_uid, &wanted, "HorizontalPodAutoscaler") {
        delete::<HorizontalPodAutoscaler>(client, namespace, &name).await?;
        deleted += 1;
    }
    Ok(deleted)
}

async fn delete<K>(client: &Client, namespace: &str, name: &str) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope> + Clone + Debug + DeserializeOwned,
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
