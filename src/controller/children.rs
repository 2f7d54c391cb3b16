//! Applying desired children with server-side apply, skipping unchanged ones, and pruning
//! children that are no longer desired.

use std::collections::BTreeSet;
use std::fmt::Debug;

use futures::FutureExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::{NamespaceResourceScope, Resource as _};
use kube::api::{DeleteParams, Patch, PatchParams, PropagationPolicy};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::Error;
use crate::cached::CachedChild;
use crate::labels;
use crate::render::{Child, each_child};

/// Cache of one kind of child kept for its metadata only.
pub type MetaStore<K> = Store<crate::cached::Tagged<K>>;

/// The type a child kind's cache holds: `full` objects, metadata and scale (`scaled`), or
/// `meta`data only.
macro_rules! cache_of {
    (full, $ty:ty) => { Store<$ty> };
    (scaled, $ty:ty) => { Store<crate::cached::Scaled<$ty>> };
    (meta, $ty:ty) => { MetaStore<$ty> };
}

macro_rules! define_child_stores {
    ([] $($(#[$doc:meta])* $variant:ident($ty:ty) => $field:ident, $cache:ident, $slim:ident, $prune:ident;)*) => {
        /// The caches children are read from, one per kind of `render::child_kinds!`: full
        /// objects where their status or data matters, metadata only elsewhere (memory).
        #[derive(Clone)]
        pub struct ChildStores {
            $(pub $field: cache_of!($cache, $ty),)*
        }

        $(read_from_metadata!($cache, $ty);)*

        impl ChildStores {
            /// The applied hash of a cached child of `kind`: `None` if it is not cached,
            /// `Some(None)` if it carries none.
            fn applied_hash_of(&self, kind: &str, namespace: &str, name: &str) -> Option<Option<String>> {
                $(if kind == <$ty as k8s_openapi::Resource>::KIND {
                    let cached = self.$field.get(&ObjectRef::new(name).within(namespace))?;
                    return Some(cached.applied_hash().map(str::to_owned));
                })*
                None
            }

            /// Waits until every cache has finished its first list.
            pub async fn wait_until_ready(&self) -> Result<(), kube::runtime::reflector::store::WriterDropped> {
                futures::future::try_join_all([$(self.$field.wait_until_ready().boxed(),)*]).await.map(|_| ())
            }

            /// Deletes this owner's cached children of the `pruned` kinds that are not in
            /// `wanted` (kind, name); how many.
            async fn prune_stale(
                &self,
                client: &Client,
                owner: &Owner<'_>,
                wanted: &BTreeSet<(&str, &str)>,
            ) -> Result<usize, Error> {
                let mut deleted = 0;
                $(if prunes!($prune) {
                    for name in stale(&self.$field, owner, wanted, <$ty as k8s_openapi::Resource>::KIND) {
                        delete::<$ty>(client, owner.namespace, &name).await?;
                        deleted += 1;
                    }
                })*
                Ok(deleted)
            }
        }
    };
}

/// `CachedChild` for the kinds cached whole, read from their metadata maps (the `scaled` and
/// `meta` forms keep theirs as fields, in `crate::cached`).
macro_rules! read_from_metadata {
    (full, $ty:ty) => {
        impl CachedChild for $ty {
            fn instance(&self) -> Option<&str> {
                crate::cached::meta::instance(&self.metadata)
            }
            fn managed(&self) -> bool {
                crate::cached::meta::managed(&self.metadata)
            }
            fn applied_hash(&self) -> Option<&str> {
                crate::cached::meta::applied_hash(&self.metadata)
            }
        }
    };
    ($cache:ident, $ty:ty) => {};
}

macro_rules! prunes {
    (pruned) => {
        true
    };
    (kept) => {
        false
    };
}

crate::render::child_kinds!(define_child_stores);

/// Stamps the child with the hash of its desired form.
pub fn fingerprint(child: &mut Child) {
    let json = serde_json::to_vec(&*child).unwrap_or_default();
    let hash: String = Sha256::digest(&json).iter().take(8).map(|b| format!("{b:02x}")).collect();
    child.meta_mut().annotations.get_or_insert_default().insert(labels::APPLIED_HASH.to_owned(), hash);
}

impl ChildStores {
    /// Whether the cluster already has this child as we last applied it. A data volume counts
    /// as current as soon as it exists, a generated Secret as soon as it has every key: neither
    /// is ever rewritten.
    pub fn is_current(&self, namespace: &str, child: &Child) -> bool {
        let Some(applied) = self.applied_hash_of(child.kind(), namespace, child.name()) else { return false };
        let applied_as_desired = applied.as_deref() == crate::cached::meta::applied_hash(child.meta());
        match child {
            Child::Secret(secret) if is_generated(secret) => {
                let cached = self.secrets.get(&ObjectRef::new(child.name()).within(namespace));
                cached.is_some_and(|c| missing_keys(secret, &c).is_empty())
            }
            Child::PersistentVolumeClaim(_) => true,
            // Replicas are compared too: someone scaling the ReplicaSet by hand is drift.
            Child::ReplicaSet(desired) => {
                let observed = self.replica_sets.get(&ObjectRef::new(child.name()).within(namespace));
                applied_as_desired && observed.is_some_and(|o| Some(o.replicas) == desired.spec.replicas)
            }
            _ => applied_as_desired,
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
fn stale<K: CachedChild<DynamicType = ()> + Clone>(
    store: &Store<K>,
    owner: &Owner<'_>,
    desired: &BTreeSet<(&str, &str)>,
    kind: &str,
) -> Vec<String> {
    store
        .state()
        .iter()
        // The owner first: the cheapest test that turns away other CourseServices' children.
        .filter(|o| o.meta().owner_references.as_ref().is_some_and(|refs| refs.iter().any(|r| r.uid == owner.uid)))
        .filter(|o| o.meta().namespace.as_deref() == Some(owner.namespace))
        .filter(|o| o.instance() == Some(owner.instance) && o.managed())
        .filter_map(|o| o.meta().name.clone())
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
/// longer desired. The `kept` kinds of `render::child_kinds!` (generated credentials, data
/// volumes) are never pruned: data outlives a spec change. Per-zone Deployments of earlier builds go only once
/// `replaced` (every desired ReplicaSet's replicas Ready endpoints), so their pods serve until
/// then.
pub async fn prune(
    client: &Client,
    stores: &ChildStores,
    legacy_deployments: &MetaStore<Deployment>,
    owner: &Owner<'_>,
    desired: &[Child],
    replaced: bool,
) -> Result<usize, Error> {
    let wanted: BTreeSet<(&str, &str)> = desired.iter().map(|c| (c.kind(), c.name())).collect();
    // Old revisions' ReplicaSets leave the desired set only once the rollout decided the
    // remaining ones carry the disruption budget.
    let mut deleted = stores.prune_stale(client, owner, &wanted).await?;
    if replaced {
        for name in stale(legacy_deployments, owner, &wanted, Deployment::KIND) {
            delete::<Deployment>(client, owner.namespace, &name).await?;
            deleted += 1;
        }
    }
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
