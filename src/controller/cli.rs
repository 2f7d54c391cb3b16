//! The options of `course-operator run`, and the logging they set up.

use std::net::SocketAddr;

/// Log output format.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Options of `course-operator run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Watch CourseServices in this namespace only (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// Address of the /metrics, /healthz and /readyz endpoints.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Log format.
    #[arg(long, value_enum, env = "LOG_FORMAT", default_value = "pretty")]
    pub log_format: LogFormat,
    /// Log filter, e.g. info or course_operator=debug,kube=info.
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Disable leader election (a single replica that always writes).
    #[arg(long)]
    pub no_leader_election: bool,
    /// Identity in the leader Lease (default: POD_NAME, else host name and process id).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Namespace of the leader Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// Name of the leader Lease.
    #[arg(long, default_value = "course-operator-leader")]
    pub lease_name: String,
    /// Seconds a leader's Lease lasts without renewal; a standby takes over after it expires.
    #[arg(long, default_value_t = 10)]
    pub lease_duration_seconds: u64,
    /// Re-check every settled CourseService this often even without events (it writes nothing
    /// when nothing changed).
    #[arg(long, default_value_t = 600)]
    pub resync_seconds: u64,
    /// CourseServices reconciled at once; more that fall due wait their turn, first come first
    /// served.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,
    /// A zone where a CourseService's pods stay unschedulable this long (its nodes are full,
    /// tainted or refuse them) is lost for that service: its share moves to the other zones.
    /// Leave room for a cluster autoscaler to add nodes first.
    #[arg(long, default_value_t = 300)]
    pub unschedulable_zone_seconds: u64,
    /// A zone lost to unschedulable pods gets its share back after this long, to try again.
    #[arg(long, default_value_t = 600)]
    pub unschedulable_zone_retry_seconds: u64,
    #[command(flatten)]
    pub images: crate::render::Images,
    /// Tests only: keep believing this replica leads for this long after the Lease says
    /// otherwise, so the write fence is all that stands between a stale leader and the
    /// apiserver (the e2e test proves it holds every write back).
    #[arg(long, hide = true, default_value_t = 0)]
    pub test_delay_step_down_seconds: u64,
}

pub(super) fn init_tracing(args: &RunArgs) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level)?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Pretty => builder.try_init(),
    }
    .map_err(|e| anyhow::anyhow!("initialising logging: {e}"))
}
