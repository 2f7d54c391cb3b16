//! The Services: the one in front of the application pods, its preview twin, and the headless
//! Services of the cache and database pods.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::Context;
use super::workload::HTTP_PORT_NAME;
use crate::api::ServiceType;
use crate::labels::{self, Component};
use crate::names;

/// The main Service: type, port and annotations from `spec.service`, selecting the pods of
/// `revision` when given (blue-green switches it) or of every revision otherwise.
pub fn main(ctx: &Context<'_>, revision: Option<&str>) -> Service {
    let spec = &ctx.cs.spec.service;
    let mut meta = ctx.meta(names::app(ctx.name), Component::App, Default::default());
    if !spec.annotations.is_empty() {
        meta.annotations = Some(spec.annotations.clone());
    }
    let mut selector = labels::selector(ctx.name, Component::App);
    if let Some(revision) = revision {
        selector.insert(labels::REVISION.to_owned(), revision.to_owned());
    }
    Service {
        metadata: meta,
        spec: Some(ServiceSpec {
            type_: Some(service_type(spec.type_).to_owned()),
            selector: Some(selector),
            ports: Some(vec![http_port(spec.port)]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// `<name>-preview`: a ClusterIP Service selecting only `revision`, to test a blue-green
/// revision before traffic switches to it.
pub fn preview(ctx: &Context<'_>, revision: &str) -> Service {
    let mut selector = labels::selector(ctx.name, Component::App);
    selector.insert(labels::REVISION.to_owned(), revision.to_owned());
    Service {
        metadata: ctx.meta(names::preview_service(ctx.name), Component::App, Default::default()),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(selector),
            ports: Some(vec![http_port(ctx.cs.spec.service.port)]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// The one port: `port` on the Service, the pods' named `http` port behind it.
fn http_port(port: i32) -> ServicePort {
    named_port(HTTP_PORT_NAME, port)
}

/// TCP `port` on the Service, the pods' port called `name` behind it.
pub fn named_port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.to_owned()),
        port,
        target_port: Some(IntOrString::String(name.to_owned())),
        protocol: Some("TCP".to_owned()),
        ..ServicePort::default()
    }
}

/// Headless Service `name` over the pods of `component`: every pod gets a stable DNS name.
/// Not-ready pods are published too: a starting cache or database pod must reach its peers
/// before it can become ready.
pub fn headless(ctx: &Context<'_>, name: String, component: Component, ports: Vec<ServicePort>) -> Service {
    Service {
        metadata: ctx.meta(name, component, Default::default()),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            publish_not_ready_addresses: Some(true),
            selector: Some(labels::selector(ctx.name, component)),
            ports: Some(ports),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

fn service_type(t: ServiceType) -> &'static str {
    match t {
        ServiceType::ClusterIP => "ClusterIP",
        ServiceType::NodePort => "NodePort",
        ServiceType::LoadBalancer => "LoadBalancer",
    }
}
