//! Cache-aside over the database: the business logic of the app, generic over its two
//! dependencies so that every rule below is unit-tested with in-memory fakes.
//!
//! - Reads look in the cache first (bounded by a timeout); a miss reads the database and
//!   fills the cache with the configured TTL. A corrupt entry counts as a miss.
//! - The cache is an optimisation, never a dependency: when it fails, times out or its
//!   breaker is open, reads go to the database ("bypass") and succeed.
//! - Writes go to the database first; after every successful write the list and the item
//!   are deleted from the cache (tried even while the breaker is open; a failed invalidation
//!   is counted and the TTL is the safety net).
//! - Database calls retry transient errors with jittered exponential back-off and sit
//!   behind their own breaker, so an unreachable database answers 503 fast, while cached
//!   reads are still served.
//!
//! Remaining stale windows (documented in docs/course-app.md): a read that missed before a
//! write and fills the cache after the write's invalidation leaves the old value for at most
//! the TTL; so does an invalidation lost to a cache failure or failover.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::breaker::{Admit, Breaker, Settings, State};
use crate::course::{Course, CourseFields};
use crate::metrics::Metrics;

/// A database failure; `transient` ones (network, no primary yet) are retried.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct DbError {
    pub transient: bool,
    pub message: String,
}

/// The course store (MongoDB or any Mongo-API database in production).
pub trait Database: Send + Sync + 'static {
    /// At most `limit` courses by id, those after `after` when given.
    fn list(&self, after: Option<&str>, limit: i64) -> impl Future<Output = Result<Vec<Course>, DbError>> + Send;
    fn get(&self, id: &str) -> impl Future<Output = Result<Option<Course>, DbError>> + Send;
    /// Stores a course under `id` (chosen by the caller, so a retried insert is idempotent).
    fn insert(&self, id: &str, fields: &CourseFields) -> impl Future<Output = Result<(), DbError>> + Send;
    /// Replaces a course; false when there is none with this id.
    fn replace(&self, id: &str, fields: &CourseFields) -> impl Future<Output = Result<bool, DbError>> + Send;
    /// Deletes a course; false when there was none.
    fn delete(&self, id: &str) -> impl Future<Output = Result<bool, DbError>> + Send;
}

/// The cache (Redis through Sentinel in production).
pub trait Cache: Send + Sync + 'static {
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<String>, String>> + Send;
    fn set(&self, key: &str, value: String, ttl: Duration) -> impl Future<Output = Result<(), String>> + Send;
    fn del(&self, keys: &[String]) -> impl Future<Output = Result<(), String>> + Send;
}

/// Where a read was served from (the `X-Cache` header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheUse {
    Hit,
    Miss,
    /// The cache was skipped (not configured, failing or its breaker open).
    Bypass,
}

impl CacheUse {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheUse::Hit => "hit",
            CacheUse::Miss => "miss",
            CacheUse::Bypass => "bypass",
        }
    }
}

/// Why a request could not be served.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Failure {
    #[error("course not found")]
    NotFound,
    #[error("database unavailable: {0}")]
    Unavailable(String),
}

#[derive(Clone, Copy, Debug)]
pub struct Tuning {
    pub ttl: Duration,
    pub cache_timeout: Duration,
    pub cache_breaker: Settings,
    pub db_breaker: Settings,
    /// Attempts per database call (1 = no retry).
    pub db_attempts: u32,
    /// Bound of one attempt (a slow database answers 503, it does not hang the request).
    pub db_timeout: Duration,
    /// First back-off between attempts (doubles, jittered).
    pub db_backoff: Duration,
}

impl Tuning {
    pub fn with_ttl(ttl: Duration) -> Self {
        Tuning {
            ttl,
            cache_timeout: Duration::from_millis(250),
            cache_breaker: Settings { threshold: 3, base: Duration::from_millis(500), max: Duration::from_secs(15) },
            db_breaker: Settings { threshold: 5, base: Duration::from_millis(500), max: Duration::from_secs(5) },
            db_attempts: 3,
            db_timeout: Duration::from_secs(2),
            db_backoff: Duration::from_millis(50),
        }
    }
}

pub const LIST_KEY: &str = "courses:list";
/// Courses per page of the list (the first page is the cached one).
pub const PAGE_SIZE: i64 = 100;

pub fn item_key(id: &str) -> String {
    format!("courses:item:{id}")
}

pub struct Catalog<D, K> {
    db: D,
    cache: Option<K>,
    tuning: Tuning,
    cache_breaker: Mutex<Breaker>,
    db_breaker: Mutex<Breaker>,
    metrics: Arc<Metrics>,
}

enum Lookup {
    Hit(String),
    Miss,
    Bypass,
}

fn jitter() -> f64 {
    rand::random::<f64>()
}

impl<D: Database, K: Cache> Catalog<D, K> {
    pub fn new(db: D, cache: Option<K>, tuning: Tuning, metrics: Arc<Metrics>) -> Self {
        let catalog = Catalog {
            db,
            cache,
            tuning,
            cache_breaker: Mutex::new(Breaker::new(tuning.cache_breaker)),
            db_breaker: Mutex::new(Breaker::new(tuning.db_breaker)),
            metrics,
        };
        catalog.export_breakers();
        catalog
    }

    pub fn cache_configured(&self) -> bool {
        self.cache.is_some()
    }

    /// Breaker states as (dependency, state) for metrics and tests.
    pub fn breaker_states(&self) -> [(&'static str, State); 2] {
        let now = Instant::now();
        let state = |b: &Mutex<Breaker>| b.lock().map(|b| b.state(now)).unwrap_or(State::Open);
        [("cache", state(&self.cache_breaker)), ("database", state(&self.db_breaker))]
    }

    fn export_breakers(&self) {
        for (dependency, state) in self.breaker_states() {
            self.metrics.set_breaker(dependency, state);
        }
    }

    fn admit(&self, breaker: &Mutex<Breaker>) -> Admit {
        breaker.lock().map(|mut b| b.admit(Instant::now())).unwrap_or(Admit::Call)
    }

    fn record(&self, breaker: &Mutex<Breaker>, ok: bool) {
        if let Ok(mut b) = breaker.lock() {
            if ok {
                b.success();
            } else {
                b.failure(Instant::now(), jitter());
            }
        }
        self.export_breakers();
    }

    async fn cache_get(&self, key: &str) -> Lookup {
        let Some(cache) = &self.cache else { return Lookup::Bypass };
        if self.admit(&self.cache_breaker) == Admit::Skip {
            return Lookup::Bypass;
        }
        match tokio::time::timeout(self.tuning.cache_timeout, cache.get(key)).await {
            Ok(Ok(found)) => {
                self.record(&self.cache_breaker, true);
                found.map_or(Lookup::Miss, Lookup::Hit)
            }
            Ok(Err(error)) => self.cache_failed("get", &error),
            Err(_) => self.cache_failed("get", "timed out"),
        }
    }

    fn cache_failed(&self, op: &'static str, error: &str) -> Lookup {
        tracing::warn!(op, error, "cache call failed; serving from the database");
        self.metrics.cache_error(op);
        self.record(&self.cache_breaker, false);
        Lookup::Bypass
    }

    async fn cache_set(&self, key: &str, value: String) {
        let Some(cache) = &self.cache else { return };
        if self.admit(&self.cache_breaker) == Admit::Skip {
            return;
        }
        match tokio::time::timeout(self.tuning.cache_timeout, cache.set(key, value, self.tuning.ttl)).await {
            Ok(Ok(())) => self.record(&self.cache_breaker, true),
            Ok(Err(error)) => drop(self.cache_failed("set", &error)),
            Err(_) => drop(self.cache_failed("set", "timed out")),
        }
    }

    /// Deletes the list and the item after a write, whatever the breaker says: a stale entry
    /// costs more than one bounded call to a cache that may be back.
    async fn invalidate(&self, id: &str) {
        let Some(cache) = &self.cache else { return };
        let keys = [LIST_KEY.to_owned(), item_key(id)];
        match tokio::time::timeout(self.tuning.cache_timeout, cache.del(&keys)).await {
            Ok(Ok(())) => self.record(&self.cache_breaker, true),
            Ok(Err(error)) => drop(self.cache_failed("del", &error)),
            Err(_) => drop(self.cache_failed("del", "timed out")),
        }
    }

    /// One database call: breaker, retries of transient errors with jittered exponential
    /// back-off, latency recorded per attempt.
    async fn db<T, F, Fut>(&self, op: &'static str, call: F) -> Result<T, Failure>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, DbError>>,
    {
        if self.admit(&self.db_breaker) == Admit::Skip {
            return Err(Failure::Unavailable("circuit open after repeated failures".into()));
        }
        let mut attempt = 0;
        loop {
            let started = Instant::now();
            let result = match tokio::time::timeout(self.tuning.db_timeout, call()).await {
                Ok(result) => result,
                // every call is idempotent (creates choose their id first): retried like a lost connection
                Err(_) => {
                    Err(DbError { transient: true, message: format!("no answer within {:?}", self.tuning.db_timeout) })
                }
            };
            self.metrics.observe_db(op, started.elapsed());
            match result {
                Ok(value) => {
                    self.record(&self.db_breaker, true);
                    return Ok(value);
                }
                Err(error) if error.transient && attempt + 1 < self.tuning.db_attempts => {
                    let exponential = self.tuning.db_backoff.saturating_mul(1 << attempt.min(10));
                    tracing::info!(op, attempt, error = %error, "transient database error; retrying");
                    tokio::time::sleep(exponential.mul_f64(0.5 + 0.5 * jitter())).await;
                    attempt += 1;
                }
                Err(error) => {
                    tracing::warn!(op, error = %error, "database call failed");
                    self.record(&self.db_breaker, false);
                    return Err(Failure::Unavailable(error.message));
                }
            }
        }
    }

    pub async fn list(&self) -> Result<(Vec<Course>, CacheUse), Failure> {
        let lookup = self.cache_get(LIST_KEY).await;
        if let Lookup::Hit(json) = &lookup
            && let Ok(courses) = serde_json::from_str(json)
        {
            self.metrics.cache_read(CacheUse::Hit);
            return Ok((courses, CacheUse::Hit));
        }
        let courses = self.db("list", || self.db.list(None, PAGE_SIZE)).await?;
        let used = if matches!(lookup, Lookup::Bypass) { CacheUse::Bypass } else { CacheUse::Miss };
        if used == CacheUse::Miss
            && let Ok(json) = serde_json::to_string(&courses)
        {
            self.cache_set(LIST_KEY, json).await;
        }
        self.metrics.cache_read(used);
        Ok((courses, used))
    }

    /// A later page (the courses after `after`): from the database, not cached.
    pub async fn list_after(&self, after: &str) -> Result<Vec<Course>, Failure> {
        self.db("list", || self.db.list(Some(after), PAGE_SIZE)).await
    }

    pub async fn get(&self, id: &str) -> Result<(Course, CacheUse), Failure> {
        let key = item_key(id);
        let lookup = self.cache_get(&key).await;
        if let Lookup::Hit(json) = &lookup
            && let Ok(course) = serde_json::from_str(json)
        {
            self.metrics.cache_read(CacheUse::Hit);
            return Ok((course, CacheUse::Hit));
        }
        let found = self.db("get", || self.db.get(id)).await?;
        let used = if matches!(lookup, Lookup::Bypass) { CacheUse::Bypass } else { CacheUse::Miss };
        self.metrics.cache_read(used);
        let course = found.ok_or(Failure::NotFound)?;
        if used == CacheUse::Miss
            && let Ok(json) = serde_json::to_string(&course)
        {
            self.cache_set(&key, json).await;
        }
        Ok((course, used))
    }

    pub async fn create(&self, id: String, fields: CourseFields) -> Result<Course, Failure> {
        self.db("insert", || self.db.insert(&id, &fields)).await?;
        self.invalidate(&id).await;
        Ok(Course { id, fields })
    }

    pub async fn update(&self, id: &str, fields: CourseFields) -> Result<Course, Failure> {
        let found = self.db("replace", || self.db.replace(id, &fields)).await?;
        // invalidated even when nothing matched: a cached item may outlive a concurrent delete
        self.invalidate(id).await;
        if !found {
            return Err(Failure::NotFound);
        }
        Ok(Course { id: id.to_owned(), fields })
    }

    pub async fn delete(&self, id: &str) -> Result<(), Failure> {
        let found = self.db("delete", || self.db.delete(id)).await?;
        self.invalidate(id).await;
        if found { Ok(()) } else { Err(Failure::NotFound) }
    }
}

#[cfg(test)]
pub(crate) mod fakes {
    //! In-memory dependencies that can be told to fail, and record what they were asked.
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    #[derive(Default)]
    pub struct FakeDb {
        pub courses: Mutex<BTreeMap<String, CourseFields>>,
        pub down: AtomicBool,
        pub hang: AtomicBool,
        /// Transient failures still to return before answering.
        pub flaky: AtomicU32,
        pub calls: AtomicU32,
    }

    impl FakeDb {
        async fn answer(&self) -> Result<(), DbError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.hang.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            if self.down.load(Ordering::SeqCst) {
                return Err(DbError { transient: true, message: "no primary".into() });
            }
            if self.flaky.load(Ordering::SeqCst) > 0 {
                self.flaky.fetch_sub(1, Ordering::SeqCst);
                return Err(DbError { transient: true, message: "connection reset".into() });
            }
            Ok(())
        }
    }

    impl Database for Arc<FakeDb> {
        async fn list(&self, after: Option<&str>, limit: i64) -> Result<Vec<Course>, DbError> {
            self.answer().await?;
            let courses = self.courses.lock().unwrap();
            Ok(courses
                .iter()
                .filter(|(id, _)| after.is_none_or(|a| id.as_str() > a))
                .take(usize::try_from(limit).unwrap())
                .map(|(id, f)| Course { id: id.clone(), fields: f.clone() })
                .collect())
        }
        async fn get(&self, id: &str) -> Result<Option<Course>, DbError> {
            self.answer().await?;
            let courses = self.courses.lock().unwrap();
            Ok(courses.get(id).map(|f| Course { id: id.to_owned(), fields: f.clone() }))
        }
        async fn insert(&self, id: &str, fields: &CourseFields) -> Result<(), DbError> {
            self.answer().await?;
            self.courses.lock().unwrap().insert(id.to_owned(), fields.clone());
            Ok(())
        }
        async fn replace(&self, id: &str, fields: &CourseFields) -> Result<bool, DbError> {
            self.answer().await?;
            let mut courses = self.courses.lock().unwrap();
            Ok(courses.get_mut(id).map(|f| *f = fields.clone()).is_some())
        }
        async fn delete(&self, id: &str) -> Result<bool, DbError> {
            self.answer().await?;
            Ok(self.courses.lock().unwrap().remove(id).is_some())
        }
    }

    #[derive(Default)]
    pub struct FakeCache {
        pub entries: Mutex<BTreeMap<String, (String, Duration)>>,
        pub down: AtomicBool,
        pub hang: AtomicBool,
        pub calls: AtomicU32,
    }

    impl FakeCache {
        async fn answer(&self) -> Result<(), String> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.hang.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            if self.down.load(Ordering::SeqCst) { Err("connection refused".into()) } else { Ok(()) }
        }
    }

    impl Cache for Arc<FakeCache> {
        async fn get(&self, key: &str) -> Result<Option<String>, String> {
            self.answer().await?;
            Ok(self.entries.lock().unwrap().get(key).map(|(v, _)| v.clone()))
        }
        async fn set(&self, key: &str, value: String, ttl: Duration) -> Result<(), String> {
            self.answer().await?;
            self.entries.lock().unwrap().insert(key.to_owned(), (value, ttl));
            Ok(())
        }
        async fn del(&self, keys: &[String]) -> Result<(), String> {
            self.answer().await?;
            let mut entries = self.entries.lock().unwrap();
            keys.iter().for_each(|k| drop(entries.remove(k)));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fakes::{FakeCache, FakeDb};
    use super::*;
    use std::sync::atomic::Ordering::SeqCst;

    type Fixture = (Catalog<Arc<FakeDb>, Arc<FakeCache>>, Arc<FakeDb>, Arc<FakeCache>);

    fn fixture() -> Fixture {
        let db = Arc::new(FakeDb::default());
        let cache = Arc::new(FakeCache::default());
        let mut tuning = Tuning::with_ttl(Duration::from_secs(300));
        tuning.db_backoff = Duration::from_millis(1);
        tuning.db_timeout = Duration::from_millis(50);
        tuning.cache_timeout = Duration::from_millis(50);
        let catalog = Catalog::new(db.clone(), Some(cache.clone()), tuning, Arc::new(Metrics::new("test", "pod")));
        (catalog, db, cache)
    }

    fn fields(title: &str) -> CourseFields {
        CourseFields { title: title.into(), description: "d".into(), duration_minutes: 30 }
    }

    const ID: &str = "65a1b2c3d4e5f60718293a4b";

    #[tokio::test]
    async fn a_read_misses_then_hits_and_the_entry_carries_the_configured_ttl() {
        let (catalog, db, cache) = fixture();
        catalog.create(ID.into(), fields("Rust")).await.unwrap();
        let (first, used) = catalog.get(ID).await.unwrap();
        assert_eq!(used, CacheUse::Miss);
        let (second, used) = catalog.get(ID).await.unwrap();
        assert_eq!(used, CacheUse::Hit);
        assert_eq!(first, second);
        assert_eq!(cache.entries.lock().unwrap()[&item_key(ID)].1, Duration::from_secs(300));
        let db_calls = db.calls.load(SeqCst);
        assert_eq!(catalog.list().await.unwrap().1, CacheUse::Miss);
        assert_eq!(catalog.list().await.unwrap().1, CacheUse::Hit);
        assert_eq!(db.calls.load(SeqCst), db_calls + 1, "the hit did not reach the database");
    }

    #[tokio::test]
    async fn every_write_invalidates_the_list_and_the_item() {
        let (catalog, _db, cache) = fixture();
        catalog.create(ID.into(), fields("v1")).await.unwrap();
        catalog.get(ID).await.unwrap();
        catalog.list().await.unwrap();
        assert_eq!(cache.entries.lock().unwrap().len(), 2);

        catalog.update(ID, fields("v2")).await.unwrap();
        assert!(cache.entries.lock().unwrap().is_empty(), "update left a cached entry");
        let (course, used) = catalog.get(ID).await.unwrap();
        assert_eq!((course.fields.title.as_str(), used), ("v2", CacheUse::Miss));
        assert_eq!(catalog.list().await.unwrap().0[0].fields.title, "v2");

        catalog.delete(ID).await.unwrap();
        assert!(cache.entries.lock().unwrap().is_empty(), "delete left a cached entry");
        assert_eq!(catalog.get(ID).await, Err(Failure::NotFound));
        assert!(catalog.list().await.unwrap().0.is_empty());

        catalog.create("65a1b2c3d4e5f60718293a4c".into(), fields("new")).await.unwrap();
        assert_eq!(catalog.list().await.unwrap().0.len(), 1, "create invalidated the cached empty list");
    }

    #[tokio::test]
    async fn with_the_cache_down_reads_bypass_it_and_the_breaker_stops_calling_it() {
        let (catalog, _db, cache) = fixture();
        catalog.create(ID.into(), fields("Rust")).await.unwrap();
        cache.down.store(true, SeqCst);
        for _ in 0..3 {
            assert_eq!(catalog.get(ID).await.unwrap().1, CacheUse::Bypass);
        }
        assert_eq!(catalog.breaker_states()[0], ("cache", State::Open));
        let calls = cache.calls.load(SeqCst);
        for _ in 0..10 {
            assert_eq!(catalog.list().await.unwrap().1, CacheUse::Bypass);
        }
        assert_eq!(cache.calls.load(SeqCst), calls, "an open breaker still called the cache");
    }

    #[tokio::test]
    async fn a_hanging_cache_costs_one_timeout_not_the_request() {
        let (catalog, _db, cache) = fixture();
        catalog.create(ID.into(), fields("Rust")).await.unwrap();
        cache.hang.store(true, SeqCst);
        let started = Instant::now();
        assert_eq!(catalog.get(ID).await.unwrap().1, CacheUse::Bypass);
        assert!(started.elapsed() < Duration::from_millis(500), "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn after_the_open_period_one_probe_closes_the_cache_breaker() {
        let (mut catalog, _db, cache) = fixture();
        catalog.tuning.cache_breaker.base = Duration::from_millis(20);
        catalog.cache_breaker = Mutex::new(Breaker::new(catalog.tuning.cache_breaker));
        catalog.create(ID.into(), fields("Rust")).await.unwrap();
        cache.down.store(true, SeqCst);
        for _ in 0..3 {
            catalog.get(ID).await.unwrap();
        }
        cache.down.store(false, SeqCst);
        assert_eq!(catalog.get(ID).await.unwrap().1, CacheUse::Bypass, "still open");
        tokio::time::sleep(Duration::from_millis(25)).await;
        assert_eq!(catalog.get(ID).await.unwrap().1, CacheUse::Miss, "the probe reached the cache");
        assert_eq!(catalog.breaker_states()[0], ("cache", State::Closed));
        assert_eq!(catalog.get(ID).await.unwrap().1, CacheUse::Hit);
    }

    #[tokio::test]
    async fn writes_invalidate_even_while_the_cache_breaker_is_open() {
        let (catalog, _db, cache) = fixture();
        catalog.create(ID.into(), fields("v1")).await.unwrap();
        catalog.get(ID).await.unwrap();
        // the breaker opens on failures of another key's calls while the entry stays cached
        cache.down.store(true, SeqCst);
        for _ in 0..3 {
            catalog.list().await.unwrap();
        }
        assert_eq!(catalog.breaker_states()[0].1, State::Open);
        cache.down.store(false, SeqCst);
        catalog.update(ID, fields("v2")).await.unwrap();
        assert!(!cache.entries.lock().unwrap().contains_key(&item_key(ID)));
    }

    #[tokio::test]
    async fn transient_database_errors_are_retried_and_a_dead_database_fails_fast() {
        let (catalog, db, _cache) = fixture();
        db.flaky.store(2, SeqCst);
        catalog.create(ID.into(), fields("Rust")).await.unwrap();
        assert_eq!(db.calls.load(SeqCst), 3, "two retries");

        db.down.store(true, SeqCst);
        for _ in 0..5 {
            assert!(matches!(catalog.update(ID, fields("x")).await, Err(Failure::Unavailable(_))));
        }
        assert_eq!(catalog.breaker_states()[1], ("database", State::Open));
        let calls = db.calls.load(SeqCst);
        assert!(matches!(
            catalog.create("65a1b2c3d4e5f60718293a4c".into(), fields("y")).await,
            Err(Failure::Unavailable(_))
        ));
        assert_eq!(db.calls.load(SeqCst), calls, "an open breaker still called the database");
    }

    #[tokio::test]
    async fn a_hanging_database_answers_unavailable_within_its_attempts_bound() {
        let (catalog, db, _cache) = fixture();
        db.hang.store(true, SeqCst);
        let started = Instant::now();
        assert!(matches!(catalog.list().await, Err(Failure::Unavailable(_))));
        // three attempts of 50 ms and two short back-offs
        assert!(started.elapsed() < Duration::from_millis(400), "{:?}", started.elapsed());
        assert_eq!(db.calls.load(SeqCst), 3);
    }

    #[tokio::test]
    async fn with_the_database_down_cached_reads_are_still_served() {
        let (catalog, db, _cache) = fixture();
        catalog.create(ID.into(), fields("Rust")).await.unwrap();
        catalog.get(ID).await.unwrap();
        db.down.store(true, SeqCst);
        assert_eq!(catalog.get(ID).await.unwrap().1, CacheUse::Hit);
        assert!(matches!(catalog.list().await, Err(Failure::Unavailable(_))), "the list was never cached");
    }

    #[tokio::test]
    async fn the_list_comes_in_pages_and_only_the_first_is_cached() {
        let (catalog, _db, cache) = fixture();
        for i in 0..PAGE_SIZE + 5 {
            catalog.create(format!("65a1b2c3d4e5f607182{i:05}"), fields("c")).await.unwrap();
        }
        let (first, used) = catalog.list().await.unwrap();
        assert_eq!((first.len(), used), (100, CacheUse::Miss));
        let rest = catalog.list_after(&first[99].id).await.unwrap();
        assert_eq!(rest.len(), 5);
        assert!(rest.iter().all(|c| c.id > first[99].id));
        assert_eq!(cache.entries.lock().unwrap().len(), 1, "only the first page is cached");
    }

    #[tokio::test]
    async fn a_corrupt_entry_is_a_miss_and_gets_replaced() {
        let (catalog, _db, cache) = fixture();
        catalog.create(ID.into(), fields("Rust")).await.unwrap();
        cache.entries.lock().unwrap().insert(item_key(ID), ("{not json".into(), Duration::ZERO));
        let (course, used) = catalog.get(ID).await.unwrap();
        assert_eq!((course.fields.title.as_str(), used), ("Rust", CacheUse::Miss));
        assert_eq!(catalog.get(ID).await.unwrap().1, CacheUse::Hit);
    }
}
