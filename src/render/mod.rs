//! Pure renderers: one module per child kind, each building k8s-openapi objects from a
//! CourseService and the plan's decisions. No I/O here.

pub mod deployment;
pub mod hpa;
pub mod mongo;
pub mod network_policy;
pub mod pdb;
pub mod redis;
pub mod security;
pub mod service;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, PodSpec, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use serde::Serialize;

use crate::api::CourseService;
use crate::labels::{self, Component};

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
}

impl<'a> Context<'a> {
    pub fn new(cs: &'a CourseService) -> Self {
        Self {
            cs,
            name: cs.metadata.name.as_deref().unwrap_or_default(),
            namespace: cs.metadata.namespace.as_deref(),
            owner: cs.controller_owner_ref(&()),
        }
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

/// One desired child object.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Child {
    Deployment(Box<Deployment>),
    Service(Box<Service>),
    PodDisruptionBudget(Box<PodDisruptionBudget>),
    HorizontalPodAutoscaler(Box<HorizontalPodAutoscaler>),
    StatefulSet(Box<StatefulSet>),
    ConfigMap(Box<ConfigMap>),
    /// Generated credentials: created once, never updated or pruned by the operator.
    Secret(Box<Secret>),
    Job(Box<Job>),
    CronJob(Box<CronJob>),
    NetworkPolicy(Box<NetworkPolicy>),
    /// Data volumes (backups): created once, never updated or pruned.
    PersistentVolumeClaim(Box<PersistentVolumeClaim>),
}

/// Applies `$body` to the boxed object of any variant.
macro_rules! each_child {
    ($child:expr, $object:ident => $body:expr) => {
        match $child {
            Child::Deployment($object) => $body,
            Child::Service($object) => $body,
            Child::PodDisruptionBudget($object) => $body,
            Child::HorizontalPodAutoscaler($object) => $body,
            Child::StatefulSet($object) => $body,
            Child::ConfigMap($object) => $body,
            Child::Secret($object) => $body,
            Child::Job($object) => $body,
            Child::CronJob($object) => $body,
            Child::NetworkPolicy($object) => $body,
            Child::PersistentVolumeClaim($object) => $body,
        }
    };
}
pub(crate) use each_child;

impl Child {
    /// Kind of the object, e.g. `Deployment`.
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
