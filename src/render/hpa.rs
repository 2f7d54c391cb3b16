//! The HorizontalPodAutoscaler, targeting the CourseService's `/scale` subresource.

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HPAScalingRules, HorizontalPodAutoscaler, HorizontalPodAutoscalerBehavior,
    HorizontalPodAutoscalerSpec, MetricSpec, MetricTarget, ResourceMetricSource,
};
use kube::Resource;

use super::Context;
use crate::api::{Autoscaling, CourseService};
use crate::labels::Component;
use crate::names;

/// The HPA scales the CourseService itself, never a ReplicaSet: it writes `spec.replicas`
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
            behavior: autoscaling.scale_down_stabilization_seconds.map(|seconds| HorizontalPodAutoscalerBehavior {
                scale_down: Some(HPAScalingRules {
                    stabilization_window_seconds: Some(seconds),
                    ..HPAScalingRules::default()
                }),
                scale_up: None,
            }),
        },
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest;

    fn hpa_of(autoscaling: &str) -> HorizontalPodAutoscaler {
        let cs = manifest::parse(&format!(
            "apiVersion: microcourses.io/v1alpha1\nkind: CourseService\nmetadata: {{name: catalog, namespace: courses}}\n\
             spec: {{image: app:1, autoscaling: {autoscaling}}}"
        ))
        .expect("parses");
        let autoscaling = cs.spec.autoscaling.clone().expect("autoscaling");
        hpa(&Context::new(&cs), &autoscaling)
    }

    #[test]
    fn scale_down_stabilization_is_the_hpa_behaviour_only_when_set() {
        assert_eq!(hpa_of("{maxReplicas: 6}").spec.behavior, None);
        let behavior = hpa_of("{maxReplicas: 6, scaleDownStabilizationSeconds: 30}").spec.behavior;
        let scale_down = behavior.expect("behavior").scale_down.expect("scaleDown");
        assert_eq!(scale_down.stabilization_window_seconds, Some(30));
        assert_eq!(scale_down.policies, None, "the cluster's default scale-down policies stay");
    }
}
