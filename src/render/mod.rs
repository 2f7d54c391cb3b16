//! Pure renderers: one module per child kind, each building k8s-openapi objects from a
//! CourseService and the plan's decisions. No I/O here.

pub mod deployment;
pub mod hpa;
pub mod pdb;
pub mod service;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Service;
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
}

/// One desired child object.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Child {
    Deployment(Box<Deployment>),
    Service(Box<Service>),
    PodDisruptionBudget(Box<PodDisruptionBudget>),
    HorizontalPodAutoscaler(Box<HorizontalPodAutoscaler>),
}

impl Child {
    /// Kind of the object, e.g. `Deployment`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Deployment(_) => "Deployment",
            Self::Service(_) => "Service",
            Self::PodDisruptionBudget(_) => "PodDisruptionBudget",
            Self::HorizontalPodAutoscaler(_) => "HorizontalPodAutoscaler",
        }
    }

    /// Metadata of the object.
    pub fn meta(&self) -> &ObjectMeta {
        match self {
            Self::Deployment(o) => &o.metadata,
            Self::Service(o) => &o.metadata,
            Self::PodDisruptionBudget(o) => &o.metadata,
            Self::HorizontalPodAutoscaler(o) => &o.metadata,
        }
    }

    /// Mutable metadata of the object.
    pub fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Self::Deployment(o) => &mut o.metadata,
            Self::Service(o) => &mut o.metadata,
            Self::PodDisruptionBudget(o) => &mut o.metadata,
            Self::HorizontalPodAutoscaler(o) => &mut o.metadata,
        }
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
