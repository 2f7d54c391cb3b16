//! Offline tier: the CRD, the samples, the invalid specs and the rendered children, with no
//! cluster. The e2e tier proves the same fixtures against the real apiserver.

#[path = "support/fixtures.rs"]
mod fixtures;

use course_operator::render::{Child, Images};
use course_operator::zones::{Zone, ZoneInventory};
use course_operator::{api, manifest, observe, plan, validate};

#[test]
fn committed_crd_matches_the_rust_types() {
    let committed = std::fs::read_to_string(fixtures::repo_root().join("crds/courseservices.microcourses.io.yaml"))
        .expect("crds/courseservices.microcourses.io.yaml exists");
    let generated = api::crd_yaml().expect("CRD serialises");
    assert!(
        committed == generated,
        "crds/courseservices.microcourses.io.yaml is stale: run `make crd` (course-operator crd > crds/...)"
    );
}

#[test]
fn crd_has_status_and_scale_subresources() {
    let crd = api::crd();
    let version = &crd.spec.versions[0];
    let sub = version.subresources.as_ref().expect("subresources");
    assert!(sub.status.is_some());
    let scale = sub.scale.as_ref().expect("scale subresource");
    assert_eq!(scale.spec_replicas_path, ".spec.replicas");
    assert_eq!(scale.status_replicas_path, ".status.replicas");
    assert_eq!(scale.label_selector_path.as_deref(), Some(".status.selector"));
    assert_eq!(crd.spec.names.short_names.as_deref(), Some(&["csvc".to_owned()][..]));
}

#[test]
fn every_spec_field_is_described_for_kubectl_explain() {
    fn walk(path: &str, schema: &serde_json::Value, missing: &mut Vec<String>) {
        if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
            for (name, child) in props {
                let child_path = format!("{path}.{name}");
                if child.get("description").and_then(|d| d.as_str()).is_none_or(str::is_empty) {
                    missing.push(child_path.clone());
                }
                walk(&child_path, child, missing);
            }
        }
        if let Some(items) = schema.get("items") {
            walk(&format!("{path}[]"), items, missing);
        }
    }
    let crd = serde_json::to_value(api::crd()).expect("CRD to JSON");
    let root = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let mut missing = Vec::new();
    walk("spec", &root["properties"]["spec"], &mut missing);
    walk("status", &root["properties"]["status"], &mut missing);
    assert!(missing.is_empty(), "fields without a description: {missing:?}");
}

#[test]
fn every_sample_is_valid_and_renders() {
    for (name, text) in fixtures::samples() {
        let cs = manifest::parse(&text).unwrap_or_else(|e| panic!("sample {name}: {e}"));
        validate::validate(&cs).unwrap_or_else(|e| panic!("sample {name}: {e}"));
    }
}

#[test]
fn invalid_specs_are_rejected_with_a_message_naming_the_field() {
    let cases = fixtures::invalid_cases();
    assert!(cases.len() >= 30, "only {} invalid cases", cases.len());
    for case in cases {
        let text = serde_json::to_string(&case.manifest()).expect("case to JSON");
        let message = match manifest::parse(&text) {
            Err(parse_error) => {
                assert!(
                    case.admission,
                    "case {:?} is marked as passing admission but does not even parse: {parse_error}",
                    case.case
                );
                parse_error.to_string()
            }
            Ok(cs) => match validate::validate(&cs) {
                Err(invalid) => {
                    assert!(
                        invalid.0.iter().any(|e| e.field == case.field),
                        "case {:?}: expected an error on {}, got {invalid}",
                        case.case,
                        case.field
                    );
                    invalid.to_string()
                }
                Ok(()) => panic!("case {:?} was accepted", case.case),
            },
        };
        assert!(
            message.contains(&case.field),
            "case {:?}: message {message:?} does not name {}",
            case.case,
            case.field
        );
    }
}

fn sample(name: &str) -> api::CourseService {
    let text =
        std::fs::read_to_string(fixtures::repo_root().join(format!("manifests/samples/{name}.yaml"))).expect("sample");
    let mut cs = manifest::parse(&text).expect("sample parses");
    cs.metadata.namespace = Some("courses".into());
    cs
}

fn render_with(cs: &api::CourseService, zones: &[&str], images: &Images) -> Vec<Child> {
    let inventory = ZoneInventory::healthy_zones(zones);
    plan::desired(cs, &inventory.for_spec(&cs.spec.zones), &observe::Observed::default(), images)
        .expect("sample plans")
        .children
}

fn render_sample(name: &str, zones: &[&str]) -> Vec<Child> {
    render_with(&sample(name), zones, &Images::default())
}

/// `<child name>/<container name>` → image, for every container and init container rendered.
fn container_images(children: &[Child]) -> std::collections::BTreeMap<String, String> {
    fn walk(owner: &str, value: &serde_json::Value, out: &mut std::collections::BTreeMap<String, String>) {
        match value {
            serde_json::Value::Object(map) => {
                if let (Some(name), Some(image)) = (map.get("name"), map.get("image").and_then(|i| i.as_str())) {
                    out.insert(format!("{owner}/{}", name.as_str().unwrap_or_default()), image.to_owned());
                }
                map.values().for_each(|v| walk(owner, v, out));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(owner, v, out)),
            _ => {}
        }
    }
    let mut out = std::collections::BTreeMap::new();
    for child in children {
        let value = serde_json::to_value(child).expect("child serialises");
        let owner = value["metadata"]["name"].as_str().unwrap_or_default().to_owned();
        walk(&owner, &value, &mut out);
    }
    out
}

/// The cache, database (members, arbiter, init Job) and backup pods take their images from
/// the operator's defaults (flags, Helm values `images.*`) unless the CourseService names its
/// own; the application's image is always `spec.image`.
#[test]
fn cache_database_and_backup_images_come_from_the_operator_unless_the_spec_names_them() {
    let mut cs = sample("full-stack");
    let db = cs.spec.database.as_mut().expect("full-stack has a database");
    db.arbiter = true;
    db.members = 2;
    let mirror = Images {
        cache: "mirror.example/redis:7.2".into(),
        database_repository: "mirror.example:5000/mongo".into(),
        backup_repository: Some("mirror.example/mongo-tools".into()),
    };
    let by_role = |images: &std::collections::BTreeMap<String, String>| {
        let mut roles = std::collections::BTreeMap::<&str, std::collections::BTreeSet<String>>::new();
        for (container, image) in images {
            let role = match container.split('/').next().unwrap_or_default() {
                n if n.ends_with("-cache") => "cache",
                n if n.ends_with("-db") || n.ends_with("-db-arbiter") || n.contains("-db-init") => "database",
                n if n.ends_with("-backup") => "backup",
                _ => "app",
            };
            roles.entry(role).or_default().insert(image.clone());
        }
        roles
    };
    let set = |images: &[&str]| images.iter().map(|i| (*i).to_owned()).collect::<std::collections::BTreeSet<_>>();

    let defaults = container_images(&render_with(&cs, &["a", "b", "c"], &Images::default()));
    let roles = by_role(&defaults);
    assert_eq!(roles["cache"], set(&["docker.io/library/redis:7.2"]), "{defaults:#?}");
    assert_eq!(roles["database"], set(&["docker.io/library/mongo:7.0"]), "{defaults:#?}");
    assert_eq!(roles["backup"], set(&["docker.io/library/mongo:7.0"]), "{defaults:#?}");
    assert_eq!(roles["app"], set(&[cs.spec.image.as_str()]), "{defaults:#?}");

    let mirrored = container_images(&render_with(&cs, &["a", "b", "c"], &mirror));
    let roles = by_role(&mirrored);
    assert_eq!(roles["cache"], set(&["mirror.example/redis:7.2"]), "{mirrored:#?}");
    assert_eq!(roles["database"], set(&["mirror.example:5000/mongo:7.0"]), "{mirrored:#?}");
    assert_eq!(roles["backup"], set(&["mirror.example/mongo-tools:7.0"]), "{mirrored:#?}");
    assert_eq!(roles["app"], set(&[cs.spec.image.as_str()]), "{mirrored:#?}");
    // every kind of pod was found: members, arbiter, init Job, backup, cache, app
    for needle in ["-db/", "-db-arbiter/", "-db-init", "-backup/", "-cache/"] {
        assert!(mirrored.keys().any(|k| k.contains(needle)), "no {needle} container in {mirrored:#?}");
    }

    let db = cs.spec.database.as_mut().expect("database");
    db.image = Some("team.example/mongo:7.0.14".into());
    db.backup.as_mut().expect("full-stack backs up").image = Some("team.example/tools:100".into());
    cs.spec.cache.as_mut().expect("full-stack has a cache").image = Some("team.example/redis:7.2.5".into());
    let own = container_images(&render_with(&cs, &["a", "b", "c"], &mirror));
    let roles = by_role(&own);
    assert_eq!(roles["cache"], set(&["team.example/redis:7.2.5"]), "{own:#?}");
    assert_eq!(roles["database"], set(&["team.example/mongo:7.0.14"]), "{own:#?}");
    assert_eq!(roles["backup"], set(&["team.example/tools:100"]), "{own:#?}");
}

#[test]
fn rendered_samples_match_snapshots() {
    for (name, _) in fixtures::samples() {
        let children = render_sample(&name, &["zone-a", "zone-b", "zone-c"]);
        let yaml = course_operator::render::to_yaml(&children).expect("YAML");
        insta::assert_snapshot!(format!("render-{name}"), yaml);
    }
}

#[test]
fn minimal_sample_makes_one_replica_set_per_zone_plus_service_and_budget() {
    let children = render_sample("minimal", &["zone-a", "zone-b", "zone-c"]);
    let kinds: Vec<(&str, &str)> = children.iter().map(|c| (c.kind(), c.name())).collect();
    let rev = match &children[0] {
        Child::ReplicaSet(d) => d.metadata.labels.as_ref().expect("labels")["microcourses.io/revision"].clone(),
        other => panic!("first child is {}", other.kind()),
    };
    assert_eq!(
        kinds,
        vec![
            ("ReplicaSet", format!("catalog-{rev}-zone-a").as_str()),
            ("ReplicaSet", format!("catalog-{rev}-zone-b").as_str()),
            ("ReplicaSet", format!("catalog-{rev}-zone-c").as_str()),
            ("Service", "catalog"),
            ("PodDisruptionBudget", "catalog"),
        ]
    );
    let replicas: i32 = children
        .iter()
        .filter_map(|c| match c {
            Child::ReplicaSet(d) => d.spec.replicas,
            _ => None,
        })
        .sum();
    assert_eq!(replicas, 3);
}

#[test]
fn every_child_carries_the_standard_labels() {
    let children = render_sample("full-stack", &["zone-a", "zone-b", "zone-c"]);
    for child in &children {
        let labels = child.meta().labels.as_ref().expect("labels");
        for key in [
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/component",
            "app.kubernetes.io/managed-by",
            "app.kubernetes.io/part-of",
        ] {
            assert!(labels.contains_key(key), "{} {} lacks {key}", child.kind(), child.name());
        }
        assert_eq!(child.meta().namespace.as_deref(), Some("courses"));
    }
}

#[test]
fn children_are_owned_by_the_course_service_once_it_has_a_uid() {
    let mut cs = manifest::parse(&fixtures::samples()[0].1).expect("sample");
    cs.metadata.uid = Some("0b6f6f6e-0000-4000-8000-000000000001".into());
    let plan = plan::desired(
        &cs,
        &ZoneInventory::healthy_zones(&["a"]).for_spec(&[]),
        &observe::Observed::default(),
        &Images::default(),
    )
    .expect("plan");
    for child in &plan.children {
        let owners = child.meta().owner_references.as_ref().expect("owner references");
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].kind, "CourseService");
        assert_eq!(owners[0].controller, Some(true));
    }
}

#[test]
fn revision_changes_with_the_image_and_only_with_the_pod_template() {
    let base = manifest::parse(&fixtures::samples()[0].1).expect("sample");
    let zones = ZoneInventory::healthy_zones(&["a"]).for_spec(&[]);
    let revision = |cs: &api::CourseService| {
        plan::desired(cs, &zones, &observe::Observed::default(), &Images::default()).expect("plan").plan.revision
    };
    let mut new_image = base.clone();
    new_image.spec.image = "registry.example.com/microcourses/catalog:1.4.3".into();
    let mut scaled = base.clone();
    scaled.spec.replicas = 9;
    assert_ne!(revision(&base), revision(&new_image));
    assert_eq!(revision(&base), revision(&scaled), "scaling must not start a rollout");
}

#[test]
fn lost_zone_keeps_its_replica_set_at_zero_and_gets_no_new_one() {
    let text = std::fs::read_to_string(fixtures::repo_root().join("manifests/samples/minimal.yaml")).expect("sample");
    let cs = manifest::parse(&text).expect("parse");
    let mut inventory = ZoneInventory::healthy_zones(&["zone-a", "zone-b", "zone-c"]);
    inventory.mark_lost("zone-a");
    let zones = inventory.for_spec(&[]);
    let desired =
        |observed: &observe::Observed| plan::desired(&cs, &zones, observed, &Images::default()).expect("plan");
    let replica_sets = |planned: &plan::Desired| planned.children.iter().filter(|c| c.kind() == "ReplicaSet").count();

    // Running in all three zones when zone-a was lost: its ReplicaSet stays, scaled to 0, so
    // the share comes back to it when the zone does.
    let revision = desired(&observe::Observed::default()).plan.revision;
    let running = observe::Observed {
        workloads: ["zone-a", "zone-b", "zone-c"]
            .into_iter()
            .map(|zone| {
                let name = course_operator::names::app_workload("catalog", &revision, &Zone::Named(zone.into()));
                let workload = observe::ObservedWorkload {
                    revision: revision.clone(),
                    zone: zone.into(),
                    replicas: 1,
                    ready: 1,
                    template: None,
                };
                (name, workload)
            })
            .collect(),
        ..observe::Observed::default()
    };
    let planned = desired(&running);
    let counts: Vec<i32> = planned.plan.rollout.targets[&revision].iter().map(|(_, n)| *n).collect();
    assert_eq!(counts.iter().sum::<i32>(), 3);
    assert_eq!(counts[0], 0, "zone-a first: {counts:?}");
    assert_eq!(replica_sets(&planned), 3);

    // Created while zone-a is lost: nothing to run there, so no ReplicaSet there.
    let planned = desired(&observe::Observed::default());
    assert_eq!(planned.plan.rollout.targets[&revision].iter().map(|(_, n)| *n).sum::<i32>(), 3);
    assert_eq!(replica_sets(&planned), 2);
}

#[test]
fn autoscaled_sample_targets_the_course_service_scale_subresource() {
    let children = render_sample("rolling-autoscaled", &["zone-a", "zone-b", "zone-c"]);
    let hpa = children
        .iter()
        .find_map(|c| match c {
            Child::HorizontalPodAutoscaler(h) => Some(h),
            _ => None,
        })
        .expect("an HPA");
    assert_eq!(hpa.spec.scale_target_ref.kind, "CourseService");
    assert_eq!(hpa.spec.scale_target_ref.api_version.as_deref(), Some("microcourses.io/v1alpha1"));
    assert_eq!(hpa.spec.max_replicas, 30);
}

#[test]
fn an_external_database_renders_no_database_objects_and_waits_for_its_secret() {
    let text = std::fs::read_to_string(fixtures::repo_root().join("manifests/samples/external-database.yaml"))
        .expect("sample");
    let cs = manifest::parse(&text).expect("parse");
    let zones = ZoneInventory::healthy_zones(&["zone-a", "zone-b"]).for_spec(&[]);
    let found = observe::Observed { external_database: Some(Ok(())), ..observe::Observed::default() };
    let plan = plan::desired(&cs, &zones, &found, &Images::default()).expect("plan");
    let database_kinds = ["StatefulSet", "Job", "CronJob", "Secret", "PersistentVolumeClaim", "ConfigMap"];
    let stray: Vec<String> = plan
        .children
        .iter()
        .filter(|c| database_kinds.contains(&c.kind()) && !c.name().contains("cache"))
        .map(|c| format!("{} {}", c.kind(), c.name()))
        .collect();
    assert!(stray.is_empty(), "database objects rendered for an external database: {stray:?}");
    let replica_sets: Vec<&Child> = plan.children.iter().filter(|c| c.kind() == "ReplicaSet").collect();
    assert_eq!(replica_sets.len(), 2);
    for child in replica_sets {
        let Child::ReplicaSet(replica_set) = child else { unreachable!() };
        let pod = replica_set.spec.template.as_ref().and_then(|t| t.spec.as_ref()).expect("pod spec");
        let env = pod.containers[0].env.as_ref().expect("env");
        let uri = env.iter().find(|e| e.name == "MONGODB_URI").expect("MONGODB_URI");
        let selector = uri.value_from.as_ref().and_then(|v| v.secret_key_ref.as_ref()).expect("from a Secret");
        assert_eq!((selector.name.as_str(), selector.key.as_str()), ("course-db", "uri"));
    }

    let missing = observe::Observed {
        external_database: Some(Err("Secret \"course-db\" not found in namespace courses".into())),
        ..observe::Observed::default()
    };
    let invalid =
        plan::desired(&cs, &zones, &missing, &Images::default()).expect_err("a missing Secret holds the plan");
    assert_eq!(invalid.0[0].field, "spec.database.external.uriSecret");
    assert!(invalid.to_string().contains("not found"), "{invalid}");
}
