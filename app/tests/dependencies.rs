//! The course-app binary against real dependencies on this machine: a FerretDB process (built
//! by `hack/build.sh ferretdb`, SQLite backend), a redis-server and a redis-sentinel
//! (`hack/install-redis.sh`). Proves cache-aside on real Redis (miss, hit, the TTL,
//! invalidation), reads served from the database while Redis is down and the cache used again
//! when it is back, and cached reads served while the database is down with writes answered
//! 503 at once. A missing binary fails the test with the command that provides it.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn ferretdb_bin() -> PathBuf {
    let versions = std::fs::read_to_string(repo_root().join("hack/versions.env")).expect("hack/versions.env");
    let version = versions.lines().find_map(|l| l.strip_prefix("FERRETDB_VERSION=")).expect("FERRETDB_VERSION").trim();
    let cache = std::env::var("COURSE_OPERATOR_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/course-operator"));
    let bin = cache.join(format!("ferretdb-{version}/bin/ferretdb"));
    assert!(bin.is_file(), "{} missing: run hack/build.sh ferretdb", bin.display());
    bin
}

fn require(binary: &str, provider: &str) {
    let found = Command::new(binary).arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(found, "{binary} missing: run {provider}");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A child process killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(command: &mut Command) -> Process {
    Process(command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn"))
}

fn listening(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

fn ferretdb(dir: &Path, port: u16) -> Process {
    let process = spawn(Command::new(ferretdb_bin()).args([
        "--handler=sqlite",
        &format!("--sqlite-url=file:{}/", dir.display()),
        &format!("--state-dir={}", dir.display()),
        &format!("--listen-addr=127.0.0.1:{port}"),
        "--debug-addr=127.0.0.1:0",
        "--telemetry=disable",
    ]));
    wait_for("FerretDB listening", Duration::from_secs(20), || listening(port).then_some(()));
    process
}

fn redis(port: u16) -> Process {
    let process = spawn(Command::new("redis-server").args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]));
    wait_for("redis-server listening", Duration::from_secs(10), || listening(port).then_some(()));
    process
}

fn sentinel(dir: &Path, port: u16, redis_port: u16) -> Process {
    let config = dir.join("sentinel.conf");
    std::fs::write(
        &config,
        format!(
            "port {port}\nbind 127.0.0.1\nsentinel monitor courses 127.0.0.1 {redis_port} 1\n\
             sentinel down-after-milliseconds courses 1000\n"
        ),
    )
    .expect("sentinel.conf");
    let process = spawn(Command::new("redis-sentinel").arg(&config));
    wait_for("redis-sentinel listening", Duration::from_secs(10), || listening(port).then_some(()));
    process
}

struct Answer {
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
}

/// One HTTP/1.0 request to the app.
fn request(port: u16, method: &str, path: &str, json: Option<&str>) -> Option<Answer> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(15))).ok()?;
    let body = json.unwrap_or_default();
    let text = format!(
        "{method} {path} HTTP/1.0\r\nHost: app\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(text.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let mut lines = head.lines();
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Some(Answer { status, headers, body: body.to_owned() })
}

fn cache_use(answer: &Answer) -> &str {
    answer.headers.get("x-cache").map_or("-", String::as_str)
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    let output =
        Command::new("redis-cli").args(["--raw", "-p", &port.to_string()]).args(args).output().expect("redis-cli");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[test]
fn the_app_uses_real_redis_and_ferretdb_and_degrades_when_either_is_down() {
    require("redis-server", "hack/install-redis.sh");
    require("redis-sentinel", "hack/install-redis.sh");
    require("redis-cli", "hack/install-redis.sh");
    let dir = std::env::temp_dir().join(format!("course-app-deps-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (db_port, redis_port, sentinel_port, app_port) = (free_port(), free_port(), free_port(), free_port());
    let mut database = ferretdb(&dir, db_port);
    let mut cache = redis(redis_port);
    let _sentinel = sentinel(&dir, sentinel_port, redis_port);
    let _app = spawn(
        Command::new(env!("CARGO_BIN_EXE_course-app"))
            .env("PORT", app_port.to_string())
            .env("MONGODB_URI", format!("mongodb://127.0.0.1:{db_port}/courses"))
            .env("CACHE_SENTINELS", format!("127.0.0.1:{sentinel_port}"))
            .env("CACHE_MASTER_NAME", "courses")
            .env("CACHE_TTL_SECONDS", "60")
            .env("HOSTNAME", "it"),
    );
    wait_for("the app ready", Duration::from_secs(20), || {
        request(app_port, "GET", "/readyz", None).filter(|a| a.status == 200)
    });

    // Cache-aside on real Redis: a miss, a hit, the TTL from the environment.
    let created =
        request(app_port, "POST", "/courses", Some(r#"{"title":"Rust","description":"d","durationMinutes":30}"#))
            .expect("create answers");
    assert_eq!(created.status, 201, "{}", created.body);
    let id =
        serde_json::from_str::<serde_json::Value>(&created.body).expect("json")["id"].as_str().expect("id").to_owned();
    let path = format!("/courses/{id}");
    assert_eq!(cache_use(&request(app_port, "GET", &path, None).expect("read")), "miss");
    let hit = request(app_port, "GET", &path, None).expect("read");
    assert_eq!((hit.status, cache_use(&hit)), (200, "hit"));
    let ttl: i64 = redis_cli(redis_port, &["TTL", &format!("courses:item:{id}")]).parse().expect("a TTL");
    assert!((1..=60).contains(&ttl), "TTL {ttl} s, configured 60 s");

    // An update invalidates: the next read misses and sees the new title.
    let updated = request(app_port, "PUT", &path, Some(r#"{"title":"Rust 2","description":"d","durationMinutes":30}"#))
        .expect("put");
    assert_eq!(updated.status, 200, "{}", updated.body);
    let read = request(app_port, "GET", &path, None).expect("read");
    assert_eq!(cache_use(&read), "miss");
    assert!(read.body.contains("Rust 2"), "{}", read.body);
    assert_eq!(cache_use(&request(app_port, "GET", "/courses", None).expect("list")), "miss");
    assert_eq!(cache_use(&request(app_port, "GET", "/courses", None).expect("list")), "hit");

    // Redis down: reads still succeed, from the database.
    drop(cache);
    for _ in 0..5 {
        let read = request(app_port, "GET", &path, None).expect("read with Redis down");
        assert_eq!((read.status, cache_use(&read)), (200, "bypass"), "{}", read.body);
    }
    // Redis back (same address, as Sentinel knows it): the breaker's probe finds it again.
    cache = redis(redis_port);
    let back = Instant::now();
    wait_for("reads hitting the cache again", Duration::from_secs(30), || {
        let _ = request(app_port, "GET", &path, None)?;
        let read = request(app_port, "GET", &path, None)?;
        (cache_use(&read) == "hit").then_some(())
    });
    eprintln!("cache used again {:?} after Redis came back", back.elapsed());

    // The database down: the cached course is still served; a write answers 503 at once
    // (within the bounded retries) and keeps answering fast while the breaker is open.
    drop(database);
    let read = request(app_port, "GET", &path, None).expect("read with the database down");
    assert_eq!((read.status, cache_use(&read)), (200, "hit"));
    let started = Instant::now();
    let refused = request(app_port, "POST", "/courses", Some(r#"{"title":"x","description":"","durationMinutes":1}"#))
        .expect("create answers");
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.headers.get("retry-after").map(String::as_str), Some("1"));
    assert!(started.elapsed() < Duration::from_secs(8), "the refusal took {:?}", started.elapsed());
    // The database back (same files): writes succeed again.
    database = ferretdb(&dir, db_port);
    wait_for("a write accepted again", Duration::from_secs(30), || {
        request(app_port, "POST", "/courses", Some(r#"{"title":"again","description":"","durationMinutes":1}"#))
            .filter(|a| a.status == 201)
    });
    let read = request(app_port, "GET", &path, None).expect("read");
    assert!(read.body.contains("Rust 2"), "the data survived the restart: {}", read.body);
    drop((database, cache));
    let _ = std::fs::remove_dir_all(&dir);
}
