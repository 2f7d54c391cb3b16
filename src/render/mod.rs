//! Pure renderers: one module per child kind, each building k8s-openapi objects from a
//! CourseService and the plan's decisions. No I/O here.

pub mod hpa;
pub mod mongo;
pub mod network_policy;
pub mod pdb;
pub mod pod;
pub mod redis;
pub mod security;
pub mod service;
pub mod workload;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use serde::Serialize;

use crate::api::CourseService;
use crate::database::DatabaseCredentials;
use crate::labels::{self, Component};
use crate::observe::Observed;
use crate::plan::Plan;
use crate::validate::ValidatedCourse;

/// Images of the pods the operator runs besides the application's own, when a CourseService
/// names none (`spec.cache.image`, `spec.database.image`, `spec.database.backup.image`):
/// operator flags (Helm values `images.*`) point them at a private registry or a mirror.
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
pub struct Images {
    /// Image of the cache pods: redis-server, redis-sentinel, redis-cli and a POSIX shell.
    #[arg(long = "cache-image", env = "CACHE_IMAGE", value_name = "IMAGE", default_value = redis::REDIS_IMAGE)]
    pub cache: String,
    /// Repository of the database images (mongod, mongosh): the members, the arbiter and the
    /// init Job run `<repository>:<spec.database.version>`.
    #[arg(long = "database-image-repository", env = "DATABASE_IMAGE_REPOSITORY", value_name = "REPOSITORY", default_value = mongo::MONGO_REPOSITORY)]
    pub database_repository: String,
    /// Repository of the backup images (mongodump and a POSIX shell), tagged with
    /// `spec.database.version`. Default: the database repository.
    #[arg(long = "backup-image-repository", env = "BACKUP_IMAGE_REPOSITORY", value_name = "REPOSITORY")]
    pub backup_repository: Option<String>,
}

impl Default for Images {
    fn default() -> Self {
        Self {
            cache: redis::REDIS_IMAGE.to_owned(),
            database_repository: mongo::MONGO_REPOSITORY.to_owned(),
            backup_repository: None,
        }
    }
}

impl Images {
    /// Rejects what would render unpullable images: white space anywhere, a tag or digest on a
    /// repository (the tag is `spec.database.version`).
    pub fn check(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if self.cache.is_empty() || self.cache.contains(char::is_whitespace) {
            problems.push(format!("--cache-image {:?} must be an image reference without white space", self.cache));
        }
        let repositories = [
            ("--database-image-repository", Some(&self.database_repository)),
            ("--backup-image-repository", self.backup_repository.as_ref()),
        ];
        for (flag, repository) in repositories {
            if let Some(repository) = repository
                && !is_repository(repository)
            {
                problems.push(format!(
                    "{flag} {repository:?} must be a repository without tag or digest (the tag is spec.database.version)"
                ));
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) }
    }
}

/// `registry[:port]/path` without white space, tag or digest.
fn is_repository(reference: &str) -> bool {
    let last = reference.rsplit('/').next().unwrap_or_default();
    !reference.is_empty()
        && !reference.ends_with('/')
        && !reference.contains(char::is_whitespace)
        && !reference.contains('@')
        && !last.contains(':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_flags_reject_what_would_render_unpullable_images() {
        assert_eq!(Images::default().check(), Ok(()));
        let mirror = Images {
            cache: "registry.example:5000/mirror/redis:7.2".into(),
            database_repository: "registry.example:5000/mirror/mongo".into(),
            backup_repository: Some("registry.example/tools".into()),
        };
        assert_eq!(mirror.check(), Ok(()));
        for (images, flag) in [
            (Images { cache: String::new(), ..Images::default() }, "--cache-image"),
            (Images { cache: "redis :7".into(), ..Images::default() }, "--cache-image"),
            (Images { database_repository: "mongo:7.0".into(), ..Images::default() }, "--database-image-repository"),
            (
                Images { database_repository: "mongo@sha256:ab".into(), ..Images::default() },
                "--database-image-repository",
            ),
            (
                Images { database_repository: "registry:5000/".into(), ..Images::default() },
                "--database-image-repository",
            ),
            (Images { backup_repository: Some("tools:1".into()), ..Images::default() }, "--backup-image-repository"),
        ] {
            let error = images.check().expect_err("rejected");
            assert!(error.starts_with(flag), "{error}");
        }
    }
}

/// Every child object `plan` asks for, fully rendered: the application ReplicaSets of each
/// revision and zone the rollout keeps (lost zones keep theirs at zero replicas, ready to take
/// their share back), the Services, the PDB, the HPA, and the cache and database with their
/// NetworkPolicies.
pub fn children(course: &ValidatedCourse<'_>, plan: &Plan, observed: &Observed) -> Vec<Child> {
    let ctx = &course.ctx;
    let spec = &ctx.cs.spec;
    let mut children = Vec::new();
    for (revision, sizes) in &plan.rollout.targets {
        // An older revision whose ReplicaSets are all gone cannot be re-rendered; it is simply
        // no longer desired.
        let Some(template) = course.template_for(revision, observed) else { continue };
        for (zone, replicas) in sizes {
            children.push(Child::ReplicaSet(Box::new(workload::replica_set(ctx, template, zone, *replicas))));
        }
    }
    children.push(Child::Service(Box::new(service::main(ctx, plan.rollout.service_revision.as_deref()))));
    if let Some(preview) = &plan.rollout.preview_revision {
        children.push(Child::Service(Box::new(service::preview(ctx, preview))));
    }
    children.push(Child::PodDisruptionBudget(Box::new(pdb::app(ctx))));
    if let Some(autoscaling) = &spec.autoscaling {
        children.push(Child::HorizontalPodAutoscaler(Box::new(hpa::hpa(ctx, autoscaling))));
    }
    if let Some(cache) = spec.cache.as_ref().filter(|c| c.enabled) {
        children.extend(redis::children(ctx, cache));
        children.push(Child::NetworkPolicy(Box::new(network_policy::cache(ctx))));
    }
    let database = spec.database.as_ref().filter(|d| d.enabled && d.external.is_none());
    if let (Some(db), Some(decided)) = (database, &plan.database) {
        let credentials = observed.database_credentials.clone().unwrap_or_else(|| DatabaseCredentials {
            keyfile: "<generated by the operator>".into(),
            admin_password: "<generated by the operator>".into(),
            app_password: "<generated by the operator>".into(),
        });
        children.extend(mongo::children(ctx, db, &credentials, decided));
        children.push(Child::NetworkPolicy(Box::new(network_policy::database(ctx))));
    }
    children
}

/// The images a CourseService gets when the operator runs with its default flags.
static DEFAULT_IMAGES: std::sync::LazyLock<Images> = std::sync::LazyLock::new(Images::default);

/// What every renderer needs to know about the CourseService it renders for.
#[derive(Clone, Debug)]
pub struct Context<'a> {
    pub cs: &'a CourseService,
    /// `metadata.name` of the CourseService.
    pub name: &'a str,
    /// Namespace of the CourseService; `None` when rendering a file that names none.
    pub namespace: Option<&'a str>,
    /// Controller owner reference; `None` before the apiserver assigned a uid (render CLI).
    owner: Option<OwnerReference>,
    /// The operator's default images (a CourseService's own image fields win).
    pub images: &'a Images,
}

impl<'a> Context<'a> {
    pub fn new(cs: &'a CourseService) -> Self {
        Self {
            cs,
            name: cs.metadata.name.as_deref().unwrap_or_default(),
            namespace: cs.metadata.namespace.as_deref(),
            owner: cs.controller_owner_ref(&()),
            images: &DEFAULT_IMAGES,
        }
    }

    /// The same context with the operator's configured default images.
    pub fn with_images(self, images: &'a Images) -> Self {
        Self { images, ..self }
    }

    /// Metadata of a child: name, namespace, the standard labels plus `extra`, owner reference.
    pub fn meta(&self, name: String, component: Component, extra: BTreeMap<String, String>) -> ObjectMeta {
        let mut all = labels::common(self.name, component);
        all.extend(extra);
        ObjectMeta {
            name: Some(name),
            namespace: self.namespace.map(str::to_owned),
            labels: Some(all),
            owner_references: self.owner.clone().map(|o| vec![o]),
            ..ObjectMeta::default()
        }
    }

    /// A pod spec placed where `spec.nodeSelector` and `spec.tolerations` allow: every pod the
    /// operator renders (app, cache, database, Jobs) goes through here, so none lands on nodes
    /// the platform team kept it off. Empty settings add nothing (the revision stays the same).
    pub fn placed(&self, pod: PodSpec) -> PodSpec {
        let spec = &self.cs.spec;
        PodSpec {
            node_selector: (!spec.node_selector.is_empty()).then(|| spec.node_selector.clone()),
            tolerations: (!spec.tolerations.is_empty()).then(|| spec.tolerations.clone()),
            ..pod
        }
    }
}

/// The kinds of child object, one row each. The [`Child`] enum, [`each_child!`] and what the
/// controller wires per kind (its cache, the watch that triggers the owner, readiness, pruning;
/// `controller::children`) are all expanded from this table: a new kind is one row here plus
/// its renderer.
///
/// A row is `Variant(type) => cache_field, full | scaled | meta, slim_function, pruned | kept;`:
/// - the controller's cache of the kind keeps `full` objects (their status or data is read),
///   metadata with the replicas asked for and Ready (`scaled`: `crate::cached::Scaled`), or
///   `meta`data only (`crate::cached::Tagged`), each object trimmed by `slim_function` (in
///   `controller::caches`);
/// - `pruned` children are deleted once no longer desired; `kept` ones never are (data and
///   credentials outlive a spec change).
///
/// `$callback` is invoked with `[$args]` and the rows.
macro_rules! child_kinds {
    ($($callback:ident)::+ $(, $args:tt)*) => {
        $($callback)::+! {
            [$($args),*]
            ReplicaSet(k8s_openapi::api::apps::v1::ReplicaSet) => replica_sets, scaled, slim_meta, pruned;
            Service(k8s_openapi::api::core::v1::Service) => services, meta, slim_meta, pruned;
            PodDisruptionBudget(k8s_openapi::api::policy::v1::PodDisruptionBudget) => pdbs, meta, slim_meta, pruned;
            HorizontalPodAutoscaler(k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler) => hpas, meta, slim_meta, pruned;
            StatefulSet(k8s_openapi::api::apps::v1::StatefulSet) => statefulsets, scaled, slim_meta, pruned;
            ConfigMap(k8s_openapi::api::core::v1::ConfigMap) => configmaps, meta, slim_meta, pruned;
            /// Generated credentials: created once, never updated or pruned by the operator.
            Secret(k8s_openapi::api::core::v1::Secret) => secrets, full, slim_meta, kept;
            Job(k8s_openapi::api::batch::v1::Job) => jobs, full, slim_meta, pruned;
            CronJob(k8s_openapi::api::batch::v1::CronJob) => cronjobs, meta, slim_meta, pruned;
            NetworkPolicy(k8s_openapi::api::networking::v1::NetworkPolicy) => network_policies, meta, slim_meta, pruned;
            /// Data volumes (backups): created once, never updated or pruned.
            PersistentVolumeClaim(k8s_openapi::api::core::v1::PersistentVolumeClaim) => pvcs, meta, slim_meta, kept;
        }
    };
}
pub(crate) use child_kinds;

macro_rules! define_child {
    ([] $($(#[$doc:meta])* $variant:ident($ty:ty) => $field:ident, $cache:ident, $slim:ident, $prune:ident;)*) => {
        /// One desired child object.
        #[derive(Clone, Debug, PartialEq, Serialize)]
        #[serde(untagged)]
        pub enum Child {
            $($(#[$doc])* $variant(Box<$ty>),)*
        }
    };
}
child_kinds!(define_child);

/// Applies `$body` to the boxed object of any variant.
macro_rules! each_child {
    ($child:expr, $object:ident => $body:expr) => {
        $crate::render::child_kinds!($crate::render::match_child, $child, $object, $body)
    };
}
pub(crate) use each_child;

/// The `match` of [`each_child!`].
macro_rules! match_child {
    ([$child:expr, $object:ident, $body:expr] $($(#[$doc:meta])* $variant:ident($ty:ty) => $field:ident, $cache:ident, $slim:ident, $prune:ident;)*) => {
        match $child {
            $($crate::render::Child::$variant($object) => $body,)*
        }
    };
}
pub(crate) use match_child;

impl Child {
    /// Kind of the object, e.g. `ReplicaSet`.
    pub fn kind(&self) -> &'static str {
        fn kind_of<K: k8s_openapi::Resource>(_: &K) -> &'static str {
            K::KIND
        }
        each_child!(self, o => kind_of(o.as_ref()))
    }

    /// Metadata of the object.
    pub fn meta(&self) -> &ObjectMeta {
        each_child!(self, o => &o.metadata)
    }

    /// Mutable metadata of the object.
    pub fn meta_mut(&mut self) -> &mut ObjectMeta {
        each_child!(self, o => &mut o.metadata)
    }

    /// `metadata.name` of the object.
    pub fn name(&self) -> &str {
        self.meta().name.as_deref().unwrap_or_default()
    }
}

/// Children as multi-document YAML, the output of `course-operator render`.
pub fn to_yaml(children: &[Child]) -> Result<String, serde_saphyr::SerializeError> {
    serde_saphyr::to_string_multiple(children)
}
