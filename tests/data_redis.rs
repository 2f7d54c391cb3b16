//! Data tier: the rendered redis.conf, sentinel.conf and startup scripts of the cache, run on
//! real redis-server and redis-sentinel processes on this machine: one "pod" is one Redis and
//! one Sentinel on their own ports, every pod named `localhost`. Proves failover, client
//! rediscovery through Sentinel, the old master rejoining as a replica, the preStop handover
//! and the split-brain guard.
//!
//! Needs redis-server, redis-sentinel and redis-cli: `hack/install-redis.sh`. The test fails
//! (it does not skip) when they are missing. `DATA_REDIS_DOWN_AFTER_MS` (default 1000) sets the
//! Sentinels' down-after-milliseconds; the rendered Kubernetes default stays at 5000.

use std::collections::BTreeMap;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use course_operator::api::CacheSpec;
use course_operator::render::redis;
use course_operator::{manifest, names, quantity};

/// Where the test's own client connects.
const HOST: &str = "127.0.0.1";
/// The name the scripts know every "pod" by: a host name, not an address, so Sentinel's
/// resolve-hostnames/announce-hostnames paths run as they do with the StatefulSet's DNS names.
const POD_HOST: &str = "localhost";

fn require_redis() {
    for binary in ["redis-server", "redis-sentinel", "redis-cli"] {
        let found = Command::new(binary).arg("--version").output().is_ok_and(|o| o.status.success());
        assert!(found, "{binary} is not installed: run hack/install-redis.sh (the data tier needs real Redis)");
    }
}

fn full_stack_cache() -> (String, CacheSpec) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/samples/full-stack.yaml");
    let text = fs::read_to_string(&path).expect("read full-stack sample");
    let cs = manifest::parse(&text).expect("full-stack sample parses");
    let name = cs.metadata.name.clone().expect("sample has a name");
    let cache = cs.spec.cache.clone().expect("full-stack sample has a cache");
    (name, cache)
}

/// `redis-cli --raw` against 127.0.0.1:`port`; Err with stderr when it cannot connect.
fn cli(port: u16, args: &[&str]) -> Result<String, String> {
    let out = Command::new("redis-cli")
        .args(["--raw", "-h", HOST, "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout).trim_end().to_owned();
    if out.status.success() && !stdout.starts_with("ERR") {
        Ok(stdout)
    } else {
        Err(format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)))
    }
}

/// Field of an INFO section (`role`, `connected_slaves`, …).
fn info_field(port: u16, section: &str, field: &str) -> Option<String> {
    let info = cli(port, &["INFO", section]).ok()?;
    info.lines().find_map(|l| l.strip_prefix(&format!("{field}:")).map(|v| v.trim().to_owned()))
}

/// Polls `check` every 20 ms until it returns Some or `timeout` passes.
fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Ports nobody listens on now, reserved together so they are distinct.
fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> =
        (0..count).map(|_| TcpListener::bind((HOST, 0)).expect("bind an ephemeral port")).collect();
    listeners.iter().map(|l| l.local_addr().expect("local address").port()).collect()
}

/// A started script; SIGKILLed when dropped so no Redis outlives a failed test.
struct Process {
    child: Child,
}

impl Process {
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One "pod": its Redis and Sentinel processes.
struct Pod {
    redis: Option<Process>,
    sentinel: Option<Process>,
}

/// The rendered files in a temporary directory and the pods running them.
struct Cluster {
    dir: PathBuf,
    master_name: String,
    quorum: i32,
    redis_ports: Vec<u16>,
    sentinel_ports: Vec<u16>,
    pods: Vec<Pod>,
    down_after_ms: u64,
    starts: usize,
}

impl Cluster {
    fn new(test: &str, name: &str, cache: &CacheSpec, replicas: usize) -> Self {
        let unique = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
        let dir = std::env::temp_dir().join(format!("course-operator-{test}-{}-{unique}", std::process::id()));
        fs::create_dir_all(&dir).expect("create temp dir");
        for (file, text) in redis::config_files(cache) {
            fs::write(dir.join(file), text).expect("write rendered file");
        }
        let ports = free_ports(2 * replicas);
        let down_after_ms = std::env::var("DATA_REDIS_DOWN_AFTER_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
        Self {
            dir,
            master_name: names::cache_master(name),
            quorum: redis::sentinel_quorum(i32::try_from(replicas).expect("few replicas")),
            redis_ports: ports[..replicas].to_vec(),
            sentinel_ports: ports[replicas..].to_vec(),
            pods: (0..replicas).map(|_| Pod { redis: None, sentinel: None }).collect(),
            down_after_ms,
            starts: 0,
        }
    }

    fn addresses(ports: &[u16]) -> String {
        ports.iter().map(|p| format!("{POD_HOST}:{p}")).collect::<Vec<_>>().join(" ")
    }

    /// The environment the StatefulSet gives pod `ordinal`, with `localhost` and this test's ports.
    fn env(&self, ordinal: usize) -> BTreeMap<&'static str, String> {
        let pod_dir = self.dir.join(format!("pod-{ordinal}"));
        BTreeMap::from([
            ("MASTER_NAME", self.master_name.clone()),
            ("ORDINAL", ordinal.to_string()),
            ("MY_HOST", POD_HOST.to_owned()),
            ("REDIS_NODES", Self::addresses(&self.redis_ports)),
            ("SENTINELS", Self::addresses(&self.sentinel_ports)),
            ("REDIS_PORT", self.redis_ports[ordinal].to_string()),
            ("SENTINEL_PORT", self.sentinel_ports[ordinal].to_string()),
            ("CONFIG_DIR", self.dir.display().to_string()),
            ("RUN_DIR", pod_dir.join("run").display().to_string()),
            ("DATA_DIR", pod_dir.join("data").display().to_string()),
            // localhost may also resolve to ::1; "-" skips it where the machine has no IPv6.
            ("BIND_ADDRESSES", "127.0.0.1 -::1".to_owned()),
            ("QUORUM", self.quorum.to_string()),
            ("DOWN_AFTER_MILLISECONDS", self.down_after_ms.to_string()),
            ("DISCOVERY_TIMEOUT_SECONDS", "30".to_owned()),
        ])
    }

    fn command(&self, ordinal: usize, script: &str, log: &str) -> Command {
        let pod_dir = self.dir.join(format!("pod-{ordinal}"));
        fs::create_dir_all(pod_dir.join("data")).expect("create data dir");
        let log = fs::File::create(self.dir.join(log)).expect("create log");
        let mut command = Command::new("sh");
        command
            .arg(self.dir.join(script))
            .envs(self.env(ordinal))
            .current_dir(pod_dir.join("data"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log);
        command
    }

    /// Starts pod `ordinal` as the StatefulSet would and waits until both containers answer
    /// PING (readiness), like OrderedReady before the next pod.
    fn start(&mut self, ordinal: usize) {
        self.starts += 1;
        let n = self.starts;
        let spawn = |cluster: &Self, script: &str, log: String| Process {
            child: cluster.command(ordinal, script, &log).spawn().expect("spawn start script"),
        };
        let sentinel = spawn(self, "sentinel-start.sh", format!("sentinel-{ordinal}.{n}.log"));
        let redis = spawn(self, "redis-start.sh", format!("redis-{ordinal}.{n}.log"));
        self.pods[ordinal] = Pod { redis: Some(redis), sentinel: Some(sentinel) };
        let (redis_port, sentinel_port) = (self.redis_ports[ordinal], self.sentinel_ports[ordinal]);
        wait_for(&format!("pod {ordinal} to answer PING"), Duration::from_secs(40), || {
            (cli(redis_port, &["PING"]).ok()? == "PONG" && cli(sentinel_port, &["PING"]).ok()? == "PONG").then_some(())
        });
    }

    /// SIGKILL of pod `ordinal`'s redis-server only, then its start script again at once, as
    /// the kubelet restarts a crashed container while the pod (and its Sentinel) stays.
    fn crash_and_restart_redis(&mut self, ordinal: usize) {
        if let Some(process) = self.pods[ordinal].redis.as_mut() {
            process.kill();
        }
        self.starts += 1;
        let log = format!("redis-{ordinal}.{}.log", self.starts);
        let child = self.command(ordinal, "redis-start.sh", &log).spawn().expect("spawn start script");
        self.pods[ordinal].redis = Some(Process { child });
    }

    /// SIGKILL of both processes of pod `ordinal`: a node dying under it.
    fn kill(&mut self, ordinal: usize) {
        let pod = &mut self.pods[ordinal];
        for process in [pod.redis.as_mut(), pod.sentinel.as_mut()].into_iter().flatten() {
            process.kill();
        }
        *pod = Pod { redis: None, sentinel: None };
    }

    /// host:port the Sentinel on `sentinel_port` names as master.
    fn master_named_by(&self, sentinel_port: u16) -> Option<String> {
        let out = cli(sentinel_port, &["SENTINEL", "get-master-addr-by-name", &self.master_name]).ok()?;
        let mut lines = out.lines();
        Some(format!("{}:{}", lines.next()?, lines.next()?))
    }

    /// The master every Sentinel of the running `pods` names, once they all agree.
    fn agreed_master(&self, pods: &[usize]) -> Option<String> {
        let named: Vec<Option<String>> = pods.iter().map(|&i| self.master_named_by(self.sentinel_ports[i])).collect();
        let first = named.first()?.clone()?;
        named.iter().all(|n| n.as_deref() == Some(first.as_str())).then_some(first)
    }

    /// Sentinels of `pods` know every other Sentinel and every replica: a failover can start.
    fn sentinels_settled(&self, pods: &[usize]) -> bool {
        let others = pods.len() - 1;
        pods.iter().all(|&i| {
            let count = |what: &str| {
                cli(self.sentinel_ports[i], &["SENTINEL", what, &self.master_name])
                    .map(|out| out.lines().filter(|l| *l == "name").count())
                    .unwrap_or(0)
            };
            count("sentinels") == others && count("replicas") == others
        })
    }

    fn port_of(address: &str) -> u16 {
        address.rsplit(':').next().and_then(|p| p.parse().ok()).expect("host:port")
    }

    fn ordinal_of_redis(&self, address: &str) -> usize {
        let port = Self::port_of(address);
        self.redis_ports.iter().position(|p| *p == port).expect("a pod's Redis")
    }

    fn dump_logs(&self) {
        let mut entries: Vec<_> = fs::read_dir(&self.dir).into_iter().flatten().flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            if entry.file_name().to_string_lossy().ends_with(".log") {
                let text = fs::read_to_string(entry.path()).unwrap_or_default();
                eprintln!("===== {} =====\n{text}", entry.file_name().to_string_lossy());
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for ordinal in 0..self.pods.len() {
            self.kill(ordinal);
        }
        if thread::panicking() {
            self.dump_logs();
            eprintln!("rendered files and logs kept in {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// A master's redis-server crashes and the kubelet restarts it at once, faster than the
/// Sentinels' down-after period: it comes back empty (nothing is persisted). Taking the master
/// role back would make every replica resynchronise from it and drop the whole cache; it must
/// wait for the Sentinels to promote a replica (which keeps the data) and follow it.
#[test]
fn a_master_redis_process_restarted_at_once_waits_for_the_failover_instead_of_wiping_the_replicas() {
    require_redis();
    let (name, cache) = full_stack_cache();
    let replicas = usize::try_from(cache.replicas).expect("positive replicas");
    let mut cluster = Cluster::new("restart", &name, &cache, replicas);
    let all: Vec<usize> = (0..replicas).collect();
    for ordinal in 0..replicas {
        cluster.start(ordinal);
    }
    let master =
        wait_for("the Sentinels to agree on a master", Duration::from_secs(20), || cluster.agreed_master(&all));
    wait_for("Sentinels to discover each other and the replicas", Duration::from_secs(30), || {
        cluster.sentinels_settled(&all).then_some(())
    });
    let master_port = Cluster::port_of(&master);
    assert_eq!(cli(master_port, &["SET", "course:7", "lesson-7"]).expect("SET"), "OK");
    let acked = cli(master_port, &["WAIT", &(replicas - 1).to_string(), "5000"]).expect("WAIT");
    assert_eq!(acked, (replicas - 1).to_string(), "replicas acknowledged the write");

    let old = cluster.ordinal_of_redis(&master);
    let crashed = Instant::now();
    cluster.crash_and_restart_redis(old);
    let new_master = wait_for("the Sentinels to promote a replica", Duration::from_secs(60), || {
        cluster.agreed_master(&all).filter(|m| *m != master)
    });
    let failover = crashed.elapsed();
    let promoted = Cluster::port_of(&new_master);
    assert_eq!(cli(promoted, &["GET", "course:7"]).expect("GET"), "lesson-7", "the promoted replica kept the data");
    wait_for("the restarted Redis to replicate the new master", Duration::from_secs(30), || {
        let role = info_field(master_port, "replication", "role")?;
        let following = info_field(master_port, "replication", "master_port")?;
        let link = info_field(master_port, "replication", "master_link_status")?;
        (role == "slave" && following == promoted.to_string() && link == "up").then_some(())
    });
    assert_eq!(cli(master_port, &["GET", "course:7"]).expect("GET on the restarted replica"), "lesson-7");
    for &ordinal in &all {
        assert_eq!(
            cli(cluster.redis_ports[ordinal], &["GET", "course:7"]).expect("GET").as_str(),
            "lesson-7",
            "pod {ordinal} lost the data"
        );
    }
    eprintln!(
        "restart: master {master} redis-server SIGKILLed and restarted at once, Sentinels name {new_master} after {:.2} s",
        failover.as_secs_f64()
    );
}

#[test]
fn sentinels_fail_over_a_killed_master_and_it_rejoins_as_a_replica() {
    require_redis();
    let (name, cache) = full_stack_cache();
    let replicas = usize::try_from(cache.replicas).expect("positive replicas");
    assert_eq!(replicas, 3, "the full-stack sample runs 3 cache pods");
    let mut cluster = Cluster::new("failover", &name, &cache, replicas);
    let all: Vec<usize> = (0..replicas).collect();

    // Ordered start, as OrderedReady does: pod 0 finds no Sentinel and becomes master.
    for ordinal in 0..replicas {
        cluster.start(ordinal);
    }
    let first_master = format!("{POD_HOST}:{}", cluster.redis_ports[0]);
    let master = wait_for("the Sentinels to agree on pod 0", Duration::from_secs(20), || {
        cluster.agreed_master(&all).filter(|m| *m == first_master)
    });
    assert_eq!(info_field(cluster.redis_ports[0], "replication", "role").as_deref(), Some("master"));
    for ordinal in 1..replicas {
        assert_eq!(info_field(cluster.redis_ports[ordinal], "replication", "role").as_deref(), Some("slave"));
    }

    // The spec's memory bound and eviction policy are what Redis runs with.
    let expected_bytes = quantity::to_bytes(&cache.max_memory.0).expect("maxMemory is a size").to_string();
    for &port in &cluster.redis_ports {
        assert_eq!(
            cli(port, &["CONFIG", "GET", "maxmemory"]).expect("CONFIG GET"),
            format!("maxmemory\n{expected_bytes}")
        );
        assert_eq!(
            cli(port, &["CONFIG", "GET", "maxmemory-policy"]).expect("CONFIG GET"),
            "maxmemory-policy\nallkeys-lru"
        );
    }

    wait_for("Sentinels to discover each other and the replicas", Duration::from_secs(30), || {
        cluster.sentinels_settled(&all).then_some(())
    });

    // Keys written to the master and acknowledged by every replica survive its death.
    let master_port = Cluster::port_of(&master);
    let mut mset = vec!["MSET".to_owned()];
    for i in 0..100 {
        mset.push(format!("course:{i}"));
        mset.push(format!("lesson-{i}"));
    }
    let mset: Vec<&str> = mset.iter().map(String::as_str).collect();
    assert_eq!(cli(master_port, &mset).expect("MSET"), "OK");
    let acked = cli(master_port, &["WAIT", &(replicas - 1).to_string(), "5000"]).expect("WAIT");
    assert_eq!(acked, (replicas - 1).to_string(), "replicas acknowledged the writes");

    // SIGKILL the master's pod (Redis and its Sentinel) and time the failover.
    let old = cluster.ordinal_of_redis(&master);
    let survivors: Vec<usize> = all.iter().copied().filter(|&i| i != old).collect();
    let killed_at = Instant::now();
    cluster.kill(old);
    let new_master = wait_for("the surviving Sentinels to promote a replica", Duration::from_secs(60), || {
        cluster.agreed_master(&survivors).filter(|m| *m != master)
    });
    let failover = killed_at.elapsed();
    eprintln!(
        "failover: master {master} SIGKILLed, Sentinels name {new_master} after {:.2} s (down-after-milliseconds {})",
        failover.as_secs_f64(),
        cluster.down_after_ms
    );

    // A client that asks a Sentinel for the master reaches the promoted replica.
    let asked = cluster.master_named_by(cluster.sentinel_ports[survivors[0]]).expect("a Sentinel answers");
    let client_port = Cluster::port_of(&asked);
    let promoted = wait_for("the promoted replica to accept writes", Duration::from_secs(20), || {
        (info_field(client_port, "replication", "role")? == "master").then_some(client_port)
    });
    assert_eq!(cli(promoted, &["GET", "course:42"]).expect("GET"), "lesson-42", "data written before the kill");
    assert_eq!(cli(promoted, &["SET", "after-failover", "yes"]).expect("SET"), "OK");
    assert_eq!(cli(promoted, &["GET", "after-failover"]).expect("GET"), "yes");

    // The old master's pod restarts with the same scripts and rejoins as a replica of the new one.
    cluster.start(old);
    let old_port = cluster.redis_ports[old];
    wait_for("the old master to replicate the new master", Duration::from_secs(30), || {
        let role = info_field(old_port, "replication", "role")?;
        let following = info_field(old_port, "replication", "master_port")?;
        let link = info_field(old_port, "replication", "master_link_status")?;
        (role == "slave" && following == promoted.to_string() && link == "up").then_some(())
    });
    assert_eq!(cli(old_port, &["GET", "after-failover"]).expect("GET on the rejoined replica"), "yes");
    wait_for("every Sentinel, the restarted one too, to name the new master", Duration::from_secs(30), || {
        cluster.agreed_master(&all).filter(|m| *m == new_master)
    });

    // Graceful handover: the preStop hook of the current master moves mastership before exit.
    wait_for("Sentinels to settle after the rejoin", Duration::from_secs(30), || {
        cluster.sentinels_settled(&all).then_some(())
    });
    let current = cluster.ordinal_of_redis(&new_master);
    let started = Instant::now();
    let status = cluster.command(current, "redis-prestop.sh", "prestop.log").status().expect("run preStop hook");
    assert!(status.success(), "preStop hook exits 0");
    let handed_to = cluster.agreed_master(&all).filter(|m| *m != new_master);
    let handed_to = handed_to.unwrap_or_else(|| {
        wait_for("the Sentinels to agree on the handover", Duration::from_secs(10), || {
            cluster.agreed_master(&all).filter(|m| *m != new_master)
        })
    });
    eprintln!("preStop handover: {new_master} -> {handed_to} in {:.2} s", started.elapsed().as_secs_f64());
    assert_eq!(info_field(Cluster::port_of(&handed_to), "replication", "role").as_deref(), Some("master"));
}

#[test]
fn pod_zero_does_not_become_master_while_a_peer_sentinel_is_silent() {
    require_redis();
    let (name, cache) = full_stack_cache();
    let mut cluster = Cluster::new("silent-peer", &name, &cache, 3);
    // Pod 1's Sentinel exists (its port accepts connections) but never answers: a partition.
    let silent = TcpListener::bind((HOST, 0)).expect("bind the silent peer");
    cluster.sentinel_ports[1] = silent.local_addr().expect("address").port();

    let mut command = cluster.command(0, "redis-start.sh", "redis-0.silent.log");
    command.env("CLI_TIMEOUT_SECONDS", "1").env("DISCOVERY_TIMEOUT_SECONDS", "3");
    let started = Instant::now();
    let mut child = command.spawn().expect("spawn redis-start.sh");
    let status = wait_for("redis-start.sh to give up", Duration::from_secs(30), || child.try_wait().ok().flatten());
    drop(silent);

    assert!(!status.success(), "pod 0 must not start while a Sentinel that may know a master is silent");
    assert!(started.elapsed() >= Duration::from_secs(3), "it waited for the silent Sentinel first");
    assert!(cli(cluster.redis_ports[0], &["PING"]).is_err(), "no Redis was started");
    let log = fs::read_to_string(cluster.dir.join("redis-0.silent.log")).unwrap_or_default();
    assert!(log.contains("not guessing a master"), "{log}");
}
