//! The data layer on the real control plane: Redis and MongoDB StatefulSets, Services,
//! Secrets stable across reconciles and operator restarts, backups, member scaling that waits
//! for the reconfiguration Job, and data kept when the CourseService is deleted.
//! (No mongod runs here: kwok completes the init Job's pod without executing mongosh.)

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};

use crate::cluster::{self, CLUSTER, Operator, eventually};
use crate::fixtures;
use course_operator::api::CourseService;

const CONVERGE: Duration = Duration::from_secs(120);

fn course(namespace: &str, members: i32) -> serde_json::Value {
    fixtures::course(
        "academy",
        namespace,
        serde_json::json!({
            "image": "academy:5.1.0",
            "replicas": 3,
            "cache": {"enabled": true, "replicas": 3, "maxMemory": "256Mi"},
            "database": {"enabled": true, "members": members, "storage": "1Gi",
                         "backup": {"schedule": "0 3 * * *", "keep": 7}},
        }),
    )
}

async fn ready_sets(client: &Client, ns: &str) -> BTreeMap<String, (i32, i32)> {
    let api: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    api.list(&ListParams::default())
        .await
        .map(|l| {
            l.items
                .into_iter()
                .map(|s| {
                    let ready = s.status.as_ref().and_then(|st| st.ready_replicas).unwrap_or(0);
                    (s.name_any(), (s.spec.replicas.unwrap_or(0), ready))
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn versions<K>(api: &Api<K>) -> BTreeMap<String, String>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.list(&ListParams::default())
        .await
        .expect("list")
        .items
        .iter()
        .map(|o| (o.name_any(), o.resource_version().unwrap_or_default()))
        .collect()
}

#[tokio::test]
async fn cache_and_database_come_up_stay_stable_scale_safely_and_keep_their_data() {
    let _shared = CLUSTER.read().await;
    cluster::with_namespace("data", |client, ns| async move {
        let mut operator = Operator::start(&client, &ns, "first", &[]).await;
        let api: Api<CourseService> = Api::namespaced(client.clone(), &ns);
        cluster::apply(&api, course(&ns, 3)).await;

        eventually(CONVERGE, "cache and database StatefulSets Ready", || async {
            let sets = ready_sets(&client, &ns).await;
            (sets.get("academy-cache") == Some(&(3, 3)) && sets.get("academy-db") == Some(&(3, 3))).then_some(())
        })
        .await;
        eventually(CONVERGE, "status reports cache and database", || async {
            let status = api.get("academy").await.ok()?.status?;
            let (cache, db) = (status.cache?, status.database?);
            (cache.ready == 3 && db.ready == 3 && db.initialized).then_some(())
        })
        .await;

        // Wiring and the rest of the children.
        let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
        let app =
            replica_sets.list(&ListParams::default().labels("app.kubernetes.io/component=app")).await.expect("list");
        let env = app.items[0].spec.template.as_ref().and_then(|t| t.spec.as_ref()).expect("pod").containers[0]
            .env
            .clone()
            .unwrap_or_default();
        let names: Vec<&str> = env.iter().map(|e| e.name.as_str()).collect();
        for wanted in ["CACHE_SENTINELS", "CACHE_MASTER_NAME", "CACHE_TTL_SECONDS", "MONGODB_URI"] {
            assert!(names.contains(&wanted), "app env lacks {wanted}: {names:?}");
        }
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
        let credentials = secrets.get("academy-db-credentials").await.expect("credentials Secret");
        let uri = secrets.get("academy-db-app").await.expect("app Secret");
        let uri = String::from_utf8(uri.data.expect("data")["uri"].0.clone()).expect("utf-8");
        assert!(uri.contains("replicaSet=academy-db") && uri.contains("academy-db-2.academy-db-headless"), "{uri}");
        Api::<CronJob>::namespaced(client.clone(), &ns).get("academy-db-backup").await.expect("backup CronJob");
        Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns)
            .get("academy-db-backup")
            .await
            .expect("backup PVC");
        let policies = versions(&Api::<NetworkPolicy>::namespaced(client.clone(), &ns)).await;
        assert!(policies.contains_key("academy-cache") && policies.contains_key("academy-db"), "{policies:?}");

        // Stable across reconciles and an operator restart: same credentials, no rewrites.
        let sets_api: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
        let before = (versions(&sets_api).await, versions(&secrets).await);
        operator.kill();
        operator = Operator::start(&client, &ns, "second", &[]).await;
        tokio::time::sleep(Duration::from_secs(12)).await;
        let after = (versions(&sets_api).await, versions(&secrets).await);
        assert_eq!(before, after, "StatefulSets or Secrets were rewritten after a restart");
        let again = secrets.get("academy-db-credentials").await.expect("credentials");
        assert_eq!(again.data, credentials.data, "credentials regenerated");

        // 3 → 5 → 3 members: each change gets its own reconfiguration Job; shrinking waits for it.
        let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
        let first_jobs: Vec<String> = versions(&jobs).await.into_keys().collect();
        cluster::apply(&api, course(&ns, 5)).await;
        eventually(CONVERGE, "5 database members", || async {
            (ready_sets(&client, &ns).await.get("academy-db") == Some(&(5, 5))).then_some(())
        })
        .await;
        let grown: Vec<String> = versions(&jobs).await.into_keys().filter(|j| !first_jobs.contains(j)).collect();
        assert_eq!(grown.len(), 1, "one reconfiguration Job for 3 → 5: {grown:?}");
        cluster::apply(&api, course(&ns, 3)).await;
        eventually(CONVERGE, "3 database members after the reconfiguration", || async {
            let status = api.get("academy").await.ok()?.status?;
            let shrunk = ready_sets(&client, &ns).await.get("academy-db") == Some(&(3, 3));
            (shrunk && status.database?.initialized).then_some(())
        })
        .await;

        // Deleting the CourseService keeps the member volumes, backups and credentials.
        api.delete("academy", &Default::default()).await.expect("delete");
        eventually(CONVERGE, "StatefulSets garbage-collected", || async {
            ready_sets(&client, &ns).await.is_empty().then_some(())
        })
        .await;
        let claims = versions(&Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns)).await;
        for kept in ["data-academy-db-0", "data-academy-db-1", "data-academy-db-2", "academy-db-backup"] {
            assert!(claims.contains_key(kept), "{kept} was deleted: {claims:?}");
        }
        assert!(
            secrets.get_opt("academy-db-credentials").await.expect("get").is_some(),
            "credentials deleted with the CR"
        );
        drop(operator);
    })
    .await;
}

/// Upgrade from a version without the application user: a credentials Secret with only the
/// keyfile and root keeps both and gains the app keys; the app's connection string names the
/// app user with the generated password, never root; no generated value appears in the
/// operator's log, the namespace's Events or the CourseService's status.
#[tokio::test]
async fn the_app_connects_as_its_own_user_and_generated_secrets_stay_out_of_log_events_and_status() {
    let _shared = CLUSTER.read().await;
    cluster::with_namespace("data-user", |client, ns| async move {
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
        let (keyfile, root) = ("k".repeat(756), "OldRootPassword0123456789abcdefg".to_owned());
        cluster::apply(
            &secrets,
            serde_json::json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "academy-db-credentials", "namespace": ns,
                             "labels": {"app.kubernetes.io/managed-by": "course-operator",
                                        "app.kubernetes.io/instance": "academy"}},
                "stringData": {"keyfile": keyfile, "username": "admin", "password": root},
            }),
        )
        .await;
        let operator = Operator::start(&client, &ns, "first", &[]).await;
        let api: Api<CourseService> = Api::namespaced(client.clone(), &ns);
        cluster::apply(&api, course(&ns, 3)).await;

        let text = |s: &Secret, key: &str| {
            s.data.as_ref().and_then(|d| d.get(key)).and_then(|b| String::from_utf8(b.0.clone()).ok())
        };
        let app_password = eventually(CONVERGE, "app keys added to the old credentials Secret", || async {
            text(&secrets.get("academy-db-credentials").await.ok()?, "app-password")
        })
        .await;
        let credentials = secrets.get("academy-db-credentials").await.expect("credentials");
        assert_eq!(text(&credentials, "keyfile"), Some(keyfile), "keyfile changed");
        assert_eq!(text(&credentials, "password"), Some(root.clone()), "root password changed");
        assert_eq!(text(&credentials, "app-username").as_deref(), Some("course-app"));
        assert_eq!(app_password.len(), 32);

        let uri = eventually(CONVERGE, "the app Secret", || async {
            text(&secrets.get_opt("academy-db-app").await.ok()??, "uri")
        })
        .await;
        assert!(uri.starts_with(&format!("mongodb://course-app:{app_password}@")), "not the app user: {uri}");
        assert!(uri.contains("/microcourses?") && !uri.contains(&root), "{uri}");
        eventually(CONVERGE, "database initialized", || async {
            api.get("academy").await.ok()?.status?.database?.initialized.then_some(())
        })
        .await;

        let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), &ns);
        let events = serde_json::to_string(&events.list(&ListParams::default()).await.expect("events").items)
            .expect("events JSON");
        let status = serde_json::to_string(&api.get("academy").await.expect("CR").status).expect("status JSON");
        let log = operator.log();
        for (what, text) in [("Events", &events), ("status", &status), ("operator log", &log)] {
            for secret in [&app_password, &root] {
                assert!(!text.contains(secret.as_str()), "a generated or root password in the {what}");
            }
        }
        drop(operator);
    })
    .await;
}

/// An external database: nothing runs until its connection-string Secret key exists (the
/// operator does not watch user Secrets, so it looks again on its own), then the app runs with
/// `MONGODB_URI` from that key and no database object is rendered.
#[tokio::test]
async fn an_external_database_waits_for_its_secret_key_then_renders_no_database_objects() {
    let _shared = CLUSTER.read().await;
    cluster::with_namespace("external-db", |client, ns| async move {
        let _operator = Operator::start(&client, &ns, "solo", &[]).await;
        let api: Api<CourseService> = Api::namespaced(client.clone(), &ns);
        let manifest = fixtures::course(
            "catalog",
            &ns,
            serde_json::json!({
                "image": "registry.example.com/catalog:1.0",
                "replicas": 3,
                "database": {"external": {"uriSecret": {"name": "course-db", "key": "uri"}}},
            }),
        );
        cluster::apply(&api, manifest).await;
        let invalid = |needle: &'static str| {
            let api = api.clone();
            async move {
                let cs = api.get("catalog").await.ok()?;
                let c = cs.status?.conditions.into_iter().find(|c| c.type_ == "InvalidSpec" && c.status == "True")?;
                (c.message.contains("spec.database.external.uriSecret") && c.message.contains(needle)).then_some(c.message)
            }
        };
        let missing = eventually(CONVERGE, "InvalidSpec naming the missing Secret", || invalid("not found")).await;
        let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
        let app = ListParams::default().labels("app.kubernetes.io/instance=catalog");
        assert!(replica_sets.list(&app).await.expect("list").items.is_empty(), "children rendered without the Secret: {missing}");

        // The Secret without the key: still held, now naming the key.
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
        let secret = |data: serde_json::Value| {
            serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "course-db", "namespace": ns}, "stringData": data})
        };
        cluster::apply(&secrets, secret(serde_json::json!({"other": "x"}))).await;
        eventually(CONVERGE, "InvalidSpec naming the missing key", || invalid("has no key \"uri\"")).await;
        assert!(replica_sets.list(&app).await.expect("list").items.is_empty());

        // The key: the app is rendered with MONGODB_URI from it, and no database object.
        cluster::apply(&secrets, secret(serde_json::json!({"uri": "mongodb://db.example:27017/courses"}))).await;
        let rendered = eventually(CONVERGE, "the app's ReplicaSets", || async {
            let list = replica_sets.list(&app).await.ok()?.items;
            (!list.is_empty()).then_some(list)
        })
        .await;
        for replica_set in &rendered {
            let pod = replica_set.spec.template.as_ref().and_then(|t| t.spec.as_ref()).expect("pod spec");
            let uri = pod.containers[0].env.iter().flatten().find(|e| e.name == "MONGODB_URI").expect("MONGODB_URI");
            let selector = uri.value_from.as_ref().and_then(|v| v.secret_key_ref.as_ref()).expect("from a Secret");
            assert_eq!((selector.name.as_str(), selector.key.as_str()), ("course-db", "uri"));
        }
        let external = eventually(CONVERGE, "status.database.external", || async {
            api.get("catalog").await.ok()?.status?.database?.external
        })
        .await;
        assert_eq!(external, "course-db/uri");
        let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
        assert!(sets.list(&app).await.expect("list").items.is_empty(), "a StatefulSet for an external database");
        let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
        assert!(jobs.list(&app).await.expect("list").items.is_empty(), "a Job for an external database");
    })
    .await;
}
