//! Programs the harnesses run beside the cluster, each as a child process logging to a file and
//! killed when dropped: the operator binary out of cluster (its /readyz and /metrics on a free
//! local port), and in the benches its peers.

use std::ffi::OsString;
use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, ensure};

use super::harness::{free_port, http_get, poll};
use super::metrics::Metrics;

/// A child process whose stderr goes to a file: what to show when it misbehaves.
pub struct LoggedProcess {
    child: Child,
    log_path: PathBuf,
}

impl LoggedProcess {
    /// Starts `command` with its stderr in a new file at `log_path` (the programs run here log
    /// to stderr; their stdout is discarded).
    pub fn spawn(mut command: Command, log_path: PathBuf) -> anyhow::Result<Self> {
        if let Some(dir) = log_path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let log = std::fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
        let child = command
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", command.get_program().to_string_lossy()))?;
        Ok(Self { child, log_path })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`STOP` freezes the process, `CONT` thaws it).
    pub fn signal(&self, name: &str) -> anyhow::Result<()> {
        let pid = self.pid().to_string();
        let status = Command::new("kill").args([&format!("-{name}"), &pid]).status().context("running kill")?;
        ensure!(status.success(), "kill -{name} {pid}: {status}");
        Ok(())
    }

    /// SIGKILL: no clean-up (the operator does not release its Lease).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then SIGKILL after 15 s: a graceful stop (the operator releases its Lease).
    pub fn terminate(&mut self) {
        let _ = self.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The last `lines` lines of the log, without terminal colour codes.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = strip_ansi(&self.log());
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for LoggedProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `text` without ANSI escape sequences.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// How a harness runs the operator: what the e2e suite (its own build, as a ServiceAccount,
/// debug logs) and the benches (OPERATOR_BIN, the admin kubeconfig, info logs) choose apart.
pub struct Launch {
    pub binary: PathBuf,
    /// Set on top of this process's environment (KUBECONFIG, LOG_LEVEL).
    pub env: Vec<(&'static str, OsString)>,
    pub log_path: PathBuf,
    /// How long connecting to /readyz or /metrics, and reading the answer, may take each.
    pub answer_within: Duration,
}

/// The operator binary run out of cluster, for one namespace, against KUBECONFIG.
pub struct OperatorProcess {
    process: LoggedProcess,
    metrics_port: u16,
    answer_within: Duration,
}

impl OperatorProcess {
    /// How long a started operator may take to report ready (every cache synced): the
    /// harnesses wait this long after spawning it.
    pub const READY_WITHIN: Duration = Duration::from_secs(60);

    /// Starts `course-operator run` watching `namespace` (its Lease lives there too) as
    /// `identity`; `extra` adds command-line options. Does not wait.
    pub fn spawn(launch: Launch, namespace: &str, identity: &str, extra: &[&str]) -> anyhow::Result<Self> {
        let metrics_port = free_port()?;
        let mut command = Command::new(&launch.binary);
        command
            .args(["run", "--namespace", namespace, "--lease-namespace", namespace, "--identity", identity])
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            .args(extra)
            .envs(launch.env);
        let process = LoggedProcess::spawn(command, launch.log_path)?;
        Ok(Self { process, metrics_port, answer_within: launch.answer_within })
    }

    /// Waits until /readyz answers 200; when the process exited instead, the error shows the
    /// end of its log.
    pub async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let result = poll(timeout, "operator /readyz", || async { self.is_ready().await.then_some(()) }).await;
        if result.is_err() && !self.is_running() {
            return Err(anyhow!("the operator exited; log {}:\n{}", self.log_path.display(), self.log_tail(30)));
        }
        result
    }

    /// GET on the metrics port: (status code, body).
    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get("127.0.0.1", self.metrics_port, path, self.answer_within).await
    }

    /// Whether /readyz answers 200 now (every cache synced, the Lease reached).
    pub async fn is_ready(&self) -> bool {
        self.get("/readyz").await.is_some_and(|(code, _)| code == 200)
    }

    /// A scrape of /metrics.
    pub async fn metrics(&self) -> anyhow::Result<Metrics> {
        let (_, body) = self.get("/metrics").await.ok_or_else(|| anyhow!("no /metrics answer"))?;
        Ok(Metrics::parse(&body))
    }

    /// Whether this replica says it holds the Lease; not while /metrics does not answer.
    #[allow(dead_code)] // the benches'; the tests' (cluster.rs) panics while /metrics does not answer
    pub async fn is_leader(&self) -> bool {
        self.metrics().await.is_ok_and(|m| m.is_leader())
    }
}

/// The process behind the operator: its pid, signals, log.
impl Deref for OperatorProcess {
    type Target = LoggedProcess;

    fn deref(&self) -> &LoggedProcess {
        &self.process
    }
}

impl DerefMut for OperatorProcess {
    fn deref_mut(&mut self) -> &mut LoggedProcess {
        &mut self.process
    }
}
