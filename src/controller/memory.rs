//! What the reconciler remembers of each CourseService between reconciles. Nothing here is
//! needed for correctness (a restart loses it all): a template is fetched again, a back-off
//! starts over. It only has to be forgotten when its CourseService goes.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::PodSpec;
use kube::runtime::reflector::ObjectRef;

use crate::api::{CourseService, CourseServiceStatus};
use crate::render::workload::AppTemplate;

use super::triggers::serialized_hash;

/// Namespace, instance (CourseService name) and revision.
type TemplateKey = (String, String, String);

/// Per-CourseService memory of the reconciler, shared by every reconcile.
#[derive(Default)]
pub struct CourseMemory {
    /// Pod templates of older revisions still running (by namespace, instance and revision):
    /// the ReplicaSet cache keeps no templates, so one is fetched when a rollout first needs it.
    /// Kept as JSON, decoded when read: a fleet-wide update holds one per CourseService, and a
    /// decoded `PodSpec` is several times its JSON (heaptrack, 1,000 of them: 9 MiB).
    templates: Mutex<HashMap<TemplateKey, StoredTemplate>>,
    /// Consecutive failures per object, for exponential back-off.
    failures: Mutex<HashMap<ObjectRef<CourseService>, u32>>,
    /// Statuses written that the CourseService cache may not show yet, until it does.
    statuses: Mutex<HashMap<ObjectRef<CourseService>, WrittenStatus>>,
    /// Since when a status that only moved pod counts has waited to be written.
    progress: Mutex<HashMap<ObjectRef<CourseService>, Instant>>,
}

/// A remembered template: its pod spec as JSON and its version label.
struct StoredTemplate {
    pod: Box<[u8]>,
    version: Option<String>,
}

/// A status write: fingerprints of the status it replaced and of the one written, and the
/// resource version the write returned. Fingerprints, not statuses: one is remembered per
/// CourseService until its next reconcile, 1,000 at once during a fleet-wide update.
struct WrittenStatus {
    replaced: Option<u64>,
    written: Option<u64>,
    version: Option<String>,
}

impl CourseMemory {
    /// The remembered template of one revision of a CourseService.
    pub fn template(&self, namespace: &str, instance: &str, revision: &str) -> Option<AppTemplate> {
        let templates = lock(&self.templates);
        let stored = templates.get(&key(namespace, instance, revision))?;
        // A template that does not decode is as good as forgotten: it is fetched again.
        let pod: PodSpec = serde_json::from_slice(&stored.pod).ok()?;
        Some(AppTemplate { revision: revision.to_owned(), pod, version: stored.version.clone() })
    }

    /// Remembers `template` as the one of `revision`; one that does not encode is not kept.
    pub fn remember_template(&self, namespace: &str, instance: &str, revision: &str, template: &AppTemplate) {
        let Ok(pod) = serde_json::to_vec(&template.pod) else { return };
        let stored = StoredTemplate { pod: pod.into_boxed_slice(), version: template.version.clone() };
        lock(&self.templates).insert(key(namespace, instance, revision), stored);
    }

    /// Drops the remembered templates of one CourseService whose revision fails `keep`.
    pub fn keep_templates(&self, namespace: &str, instance: &str, keep: impl Fn(&str) -> bool) {
        lock(&self.templates).retain(|(ns, name, revision), _| ns != namespace || name != instance || keep(revision));
    }

    /// Counts one more consecutive failure of `course`; returns how many there have been.
    pub fn failed(&self, course: ObjectRef<CourseService>) -> u32 {
        let mut failures = lock(&self.failures);
        let count = failures.entry(course).or_insert(0);
        *count = count.saturating_add(1);
        *count
    }

    /// A success ends the run of failures: the next back-off starts from the shortest.
    pub fn succeeded(&self, course: &ObjectRef<CourseService>) {
        lock(&self.failures).remove(course);
    }

    /// How much longer a status that only moved pod counts may wait for the next change, at
    /// most `window` from the first time it was seen; `None` once it is due. Any status write
    /// ends the wait ([`Self::wrote_status`]).
    pub fn progress_wait(&self, course: ObjectRef<CourseService>, now: Instant, window: Duration) -> Option<Duration> {
        let since = *lock(&self.progress).entry(course).or_insert(now);
        window.checked_sub(now.saturating_duration_since(since)).filter(|left| !left.is_zero())
    }

    /// Remembers a status write, until the cache shows it.
    pub fn wrote_status(
        &self,
        course: ObjectRef<CourseService>,
        replaced: CourseServiceStatus,
        written: CourseServiceStatus,
        version: Option<String>,
    ) {
        lock(&self.progress).remove(&course);
        let (replaced, written) = (serialized_hash(&replaced), serialized_hash(&written));
        lock(&self.statuses).insert(course, WrittenStatus { replaced, written, version });
    }

    /// Whether `status` is what was last written for `cached`, a cached CourseService that does
    /// not show that write yet. A reconcile triggered by a child before the CourseService's own
    /// watch event arrives compares against the status the write replaced; without this it
    /// writes the same status again (a no-op the apiserver still has to process; under steady
    /// scaling a third of the status writes) and repeats its Events.
    pub fn status_written(&self, cached: &CourseService, status: &CourseServiceStatus) -> bool {
        let course = ObjectRef::from_obj(cached);
        let mut statuses = lock(&self.statuses);
        let Some(last) = statuses.get(&course) else { return false };
        let shown = match &cached.status {
            Some(shown) => serialized_hash(shown),
            None => serialized_hash(&CourseServiceStatus::default()),
        };
        // The cache shows the write, or someone else's status since: nothing left to remember.
        if cached.metadata.resource_version == last.version || (shown != last.replaced && shown != last.written) {
            statuses.remove(&course);
            return false;
        }
        last.written.is_some() && last.written == serialized_hash(status)
    }

    /// Forgets everything remembered about `course`: it no longer exists (or is going), and a
    /// CourseService created later under its name starts afresh.
    pub fn forget(&self, course: &ObjectRef<CourseService>) {
        lock(&self.failures).remove(course);
        lock(&self.statuses).remove(course);
        lock(&self.progress).remove(course);
        let namespace = course.namespace.as_deref();
        lock(&self.templates).retain(|(ns, name, _), _| Some(ns.as_str()) != namespace || *name != course.name);
    }
}

fn key(namespace: &str, instance: &str, revision: &str) -> TemplateKey {
    (namespace.to_owned(), instance.to_owned(), revision.to_owned())
}

/// A panic while a map was held leaves it usable: every update is a single insert or remove.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(revision: &str) -> AppTemplate {
        AppTemplate { revision: revision.into(), pod: Default::default(), version: None }
    }

    fn course(namespace: &str, name: &str) -> ObjectRef<CourseService> {
        ObjectRef::new(name).within(namespace)
    }

    /// Two CourseServices, each with two remembered revisions and a failure.
    fn two_courses() -> CourseMemory {
        let memory = CourseMemory::default();
        for (namespace, name) in [("shop", "catalog"), ("shop", "cart")] {
            for revision in ["r1", "r2"] {
                memory.remember_template(namespace, name, revision, &template(revision));
            }
            memory.failed(course(namespace, name));
        }
        memory
    }

    #[test]
    fn forgetting_a_course_service_drops_its_templates_and_failures_and_nothing_else() {
        let memory = two_courses();
        memory.failed(course("shop", "cart"));

        memory.forget(&course("shop", "catalog"));

        for revision in ["r1", "r2"] {
            assert_eq!(memory.template("shop", "catalog", revision), None, "{revision} of the forgotten one");
            assert_eq!(memory.template("shop", "cart", revision), Some(template(revision)), "{revision} of the other");
        }
        assert_eq!(memory.failed(course("shop", "catalog")), 1, "the forgotten one's back-off starts over");
        assert_eq!(memory.failed(course("shop", "cart")), 3, "the other's failures still count");
    }

    #[test]
    fn a_course_service_of_the_same_name_elsewhere_is_not_forgotten() {
        let memory = two_courses();
        memory.remember_template("school", "catalog", "r1", &template("r1"));
        memory.failed(course("school", "catalog"));

        memory.forget(&course("shop", "catalog"));

        assert_eq!(memory.template("school", "catalog", "r1"), Some(template("r1")));
        assert_eq!(memory.failed(course("school", "catalog")), 2);
    }

    #[test]
    fn only_revisions_still_running_keep_their_templates() {
        let memory = two_courses();
        memory.keep_templates("shop", "catalog", |revision| revision == "r2");
        assert_eq!(memory.template("shop", "catalog", "r1"), None);
        assert_eq!(memory.template("shop", "catalog", "r2"), Some(template("r2")));
        assert_eq!(memory.template("shop", "cart", "r1"), Some(template("r1")), "another CourseService's");
    }

    #[test]
    fn a_remembered_template_reads_back_as_rendered() {
        let manifest = "apiVersion: microcourses.io/v1alpha1\nkind: CourseService\n\
                        metadata: {name: catalog, namespace: shop}\n\
                        spec: {image: 'catalog:2', env: [{name: MODE, value: strict}],\n\
                        cache: {enabled: true}, database: {enabled: true}}";
        let cs: CourseService = crate::manifest::parse(manifest).expect("manifest");
        let images = crate::render::Images::default();
        let rendered = crate::validate::ValidatedCourse::new(&cs, &images).expect("valid").template;
        assert!(rendered.pod.containers.iter().any(|c| c.env.is_some()), "a template with something in it");
        let memory = CourseMemory::default();
        memory.remember_template("shop", "catalog", &rendered.revision, &rendered);
        assert_eq!(memory.template("shop", "catalog", &rendered.revision), Some(rendered.clone()));
        assert_eq!(memory.template("shop", "catalog", "other"), None, "another revision's");
    }

    #[test]
    fn a_success_ends_the_run_of_failures() {
        let memory = two_courses();
        memory.succeeded(&course("shop", "catalog"));
        assert_eq!(memory.failed(course("shop", "catalog")), 1);
    }

    fn cached(version: &str, ready: i32) -> CourseService {
        let manifest = "apiVersion: microcourses.io/v1alpha1\nkind: CourseService\n\
                        metadata: {name: catalog, namespace: shop}\nspec: {image: 'catalog:2'}";
        let mut cs: CourseService = crate::manifest::parse(manifest).expect("manifest");
        cs.metadata.resource_version = Some(version.into());
        cs.status = Some(status(ready));
        cs
    }

    fn status(ready: i32) -> CourseServiceStatus {
        CourseServiceStatus { ready_replicas: ready, ..Default::default() }
    }

    #[test]
    fn a_status_written_is_not_written_again_while_the_cache_lags_behind() {
        let memory = CourseMemory::default();
        let lagging = cached("1", 3);
        assert!(!memory.status_written(&lagging, &status(4)), "nothing written yet");
        memory.wrote_status(ObjectRef::from_obj(&lagging), status(3), status(4), Some("2".into()));
        assert!(memory.status_written(&lagging, &status(4)), "the same status, cache behind");
        assert!(!memory.status_written(&lagging, &status(5)), "a newer status");
        assert!(memory.status_written(&cached("3", 4), &status(4)), "a later version showing the write");
        // once the cache shows the write, the cache alone decides
        assert!(!memory.status_written(&cached("2", 4), &status(4)));
        assert!(!memory.status_written(&lagging, &status(4)), "forgotten once shown");
    }

    #[test]
    fn someone_elses_status_since_is_never_taken_for_ours() {
        let memory = CourseMemory::default();
        memory.wrote_status(ObjectRef::from_obj(&cached("1", 3)), status(3), status(4), Some("2".into()));
        assert!(!memory.status_written(&cached("5", 7), &status(4)), "a status neither replaced nor written");
        memory.wrote_status(ObjectRef::from_obj(&cached("1", 3)), status(3), status(4), Some("2".into()));
        memory.forget(&ObjectRef::new("catalog").within("shop"));
        assert!(!memory.status_written(&cached("1", 3), &status(4)), "forgotten with the CourseService");
    }

    #[test]
    fn a_progress_only_status_waits_from_when_first_seen_until_written() {
        let memory = CourseMemory::default();
        let window = Duration::from_secs(2);
        let start = Instant::now();
        let wait = |at: u64| memory.progress_wait(course("shop", "catalog"), start + Duration::from_millis(at), window);
        assert_eq!(wait(0), Some(window), "first seen: the whole window");
        assert_eq!(wait(500), Some(Duration::from_millis(1500)), "counted from the first time, not restarted");
        assert_eq!(wait(2000), None, "due");
        assert_eq!(wait(9000), None, "still due until written");
        assert_eq!(
            memory.progress_wait(course("shop", "cart"), start + Duration::from_millis(9000), window),
            Some(window),
            "another CourseService waits on its own"
        );
        memory.wrote_status(course("shop", "catalog"), status(3), status(4), None);
        assert_eq!(wait(9500), Some(window), "a write ends the wait; the next change starts a new one");
        memory.forget(&course("shop", "catalog"));
        assert_eq!(wait(10000), Some(window), "forgotten with the CourseService");
    }
}
