//! The HorizontalPodAutoscaler, targeting the CourseService's `/scale` subresource.

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec, MetricTarget,
    ResourceMetricSource,
};
use kube::Resource;

use super::Context;
use crate::api::{Autoscaling, CourseService};
use crate::labels::Component;
use crate::names;

/// The HPA scales the CourseService itself, never a Deployment: it writes `spec.replicas`
/// through `/scale` and the operator splits that over zones and revisions.
pub fn hpa(ctx: &Context<'_>, autoscaling: &Autoscaling) -> HorizontalPodAutoscaler {
    HorizontalPodAutoscaler {
        metadata: ctx.meta(names::app(ctx.name), Component::App, Default::default()),
        spec: HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some(CourseService::api_version(&()).into_owned()),
                kind: CourseService::kind(&()).into_owned(),
                name: ctx.name.to_owned(),
            },
            min_replicas: Some(autoscaling.min_replicas),
            max_replicas: autoscaling.max_replicas,
            metrics: Some(vec![MetricSpec {
                type_: "Resource".to_owned(),
                resource: Some(ResourceMetricSource {
                    name: "cpu".to_owned(),
                    target: MetricTarget {
                        type_: "Utilization".to_owned(),
                        average_utilization: Some(autoscaling.target_cpu_utilization_percentage),
                        ..MetricTarget::default()
                    },
                }),
                ..MetricSpec::default()
            }]),
            behavior: None,
        },
        status: None,
    }
}
