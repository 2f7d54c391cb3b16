//! Write fencing: a replica writes only while the leader Lease is confirmed to be its own.
//!
//! The lease manager's leader flag turns false only when its next renewal fails. A leader
//! frozen past its Lease (SIGSTOP, a cgroup freeze, CPU starvation) and then thawed would
//! otherwise write with the reconciles it had queued while another replica already leads. So
//! every write request first asks the fence, which trusts the Lease only until the moment the
//! other replicas would see it expire (its renew time plus its duration, less a margin). That
//! moment is kept on the monotonic clock, which keeps counting while the process is frozen;
//! once it has passed, the fence reads the Lease again before letting a write through. (A whole
//! virtual machine paused by its host is different: its clocks may not advance during the
//! pause, and the fence then trusts a window that has passed for everyone else.)

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use http::Request;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::jiff::Timestamp;
use kube::{Api, Client};
use tokio::sync::Mutex;
use tokio::time::Instant;
use tower::BoxError;
use tower::filter::{AsyncFilterLayer, AsyncPredicate};
use tracing::{info, warn};

use super::metrics::{Metrics, verb_of};

/// Kept off the Lease's remaining time: clock skew between replicas and the time a write
/// takes to reach the apiserver.
const MARGIN: Duration = Duration::from_secs(1);

/// How long a read of the Lease may take before the write it holds back fails.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A refusal because the Lease is another's (or expired) is repeated without a new read for
/// this long: reconciles retried in the meantime would otherwise each read the Lease.
const REFUSAL_HOLD: Duration = Duration::from_secs(1);

/// Why a write was refused.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Fenced {
    #[error("write fenced: the leader Lease is held by {0:?}")]
    NotHolder(Option<String>),
    #[error("write fenced: this replica's leader Lease has expired")]
    Expired,
    #[error("write fenced: could not read the leader Lease: {0}")]
    Read(#[source] Arc<kube::Error>),
    #[error("write fenced: reading the leader Lease took over {READ_TIMEOUT:?}")]
    ReadTimedOut,
}

impl Fenced {
    /// True when another replica may be leading (rather than the Lease being unreadable).
    pub fn lost_lead(&self) -> bool {
        matches!(self, Self::NotHolder(_) | Self::Expired)
    }
}

/// What the fence last concluded.
enum Verdict {
    /// Nothing yet, or the last read failed.
    Unknown,
    /// Writes go through without a new read until this instant.
    TrustedUntil(Instant),
    /// The Lease was not ours when read at this instant.
    Refused(Instant, Fenced),
}

/// How long from `now` this replica may still write, judged from the Lease as last read:
/// until its renew time plus its duration, less [`MARGIN`].
pub fn trusted_for(spec: Option<&LeaseSpec>, identity: &str, now: Timestamp) -> Result<Duration, Fenced> {
    let spec = spec.ok_or(Fenced::NotHolder(None))?;
    if spec.holder_identity.as_deref() != Some(identity) {
        return Err(Fenced::NotHolder(spec.holder_identity.clone()));
    }
    let renewed = spec.renew_time.as_ref().ok_or(Fenced::Expired)?.0;
    let lasts = Duration::from_secs(u64::try_from(spec.lease_duration_seconds.unwrap_or(0)).unwrap_or(0));
    // A renew time ahead of this clock counts as renewed now.
    let since_renewal = Duration::try_from(now.duration_since(renewed)).unwrap_or(Duration::ZERO);
    let left = lasts.checked_sub(since_renewal);
    match left.and_then(|left| left.checked_sub(MARGIN)) {
        Some(trusted) if !trusted.is_zero() => Ok(trusted),
        _ => Err(Fenced::Expired),
    }
}

/// The fence of one replica.
pub struct LeaseFence {
    leases: Api<Lease>,
    name: String,
    identity: String,
    verdict: Mutex<Verdict>,
}

impl LeaseFence {
    /// `client` should be the lease client: these reads are leader-election traffic.
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str) -> Self {
        Self {
            leases: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity: identity.to_owned(),
            verdict: Mutex::new(Verdict::Unknown),
        }
    }

    /// Ok when this replica holds the Lease for a while yet. Reads the Lease only when the
    /// previous confirmation has run out; concurrent callers wait for that one read.
    pub async fn confirm(&self) -> Result<(), Fenced> {
        let mut verdict = self.verdict.lock().await;
        let now = Instant::now();
        match &*verdict {
            Verdict::TrustedUntil(until) if now < *until => return Ok(()),
            Verdict::Refused(at, fenced) if now < *at + REFUSAL_HOLD => return Err(fenced.clone()),
            _ => {}
        }
        let read = tokio::time::timeout(READ_TIMEOUT, self.leases.get_opt(&self.name)).await;
        let lease = match read {
            Ok(Ok(lease)) => lease,
            Ok(Err(error)) => {
                *verdict = Verdict::Unknown;
                return Err(Fenced::Read(Arc::new(error)));
            }
            Err(_) => {
                *verdict = Verdict::Unknown;
                return Err(Fenced::ReadTimedOut);
            }
        };
        match trusted_for(lease.as_ref().and_then(|l| l.spec.as_ref()), &self.identity, Timestamp::now()) {
            Ok(trusted) => {
                if !matches!(*verdict, Verdict::TrustedUntil(_)) {
                    info!(lease = %self.name, "writes confirmed by the leader Lease");
                }
                // Counted from before the read: the Lease may have been read late.
                *verdict = Verdict::TrustedUntil(now + trusted);
                Ok(())
            }
            Err(fenced) => {
                if matches!(*verdict, Verdict::TrustedUntil(_)) {
                    warn!(lease = %self.name, %fenced, "writes stopped: the leader Lease is not ours");
                }
                *verdict = Verdict::Refused(now, fenced.clone());
                Err(fenced)
            }
        }
    }
}

/// A client layer that holds back every write request until the fence confirms the Lease.
/// It needs a cloneable service below it (a buffer), as the check runs before the call.
pub fn layer(fence: Arc<LeaseFence>, metrics: Arc<Metrics>) -> AsyncFilterLayer<WritesFenced> {
    AsyncFilterLayer::new(WritesFenced(fence, metrics))
}

/// The request check of [`layer`]: reads pass, writes wait for [`LeaseFence::confirm`].
#[derive(Clone)]
pub struct WritesFenced(Arc<LeaseFence>, Arc<Metrics>);

impl<B: Send + 'static> AsyncPredicate<Request<B>> for WritesFenced {
    type Future = BoxFuture<'static, Result<Request<B>, BoxError>>;
    type Request = Request<B>;

    fn check(&mut self, request: Request<B>) -> Self::Future {
        let (fence, metrics) = (self.0.clone(), self.1.clone());
        Box::pin(async move {
            if verb_of(&request).is_write()
                && let Err(fenced) = fence.confirm().await
            {
                metrics.write_fenced();
                return Err(fenced.into());
            }
            Ok(request)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    fn lease(holder: &str, renewed: Timestamp, seconds: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.to_owned()),
            renew_time: Some(MicroTime(renewed)),
            lease_duration_seconds: Some(seconds),
            ..LeaseSpec::default()
        }
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn own_fresh_lease_is_trusted_until_expiry_less_the_margin() {
        let spec = lease("a", at(0), 10);
        assert_eq!(trusted_for(Some(&spec), "a", at(0)).ok(), Some(Duration::from_secs(9)));
        assert_eq!(trusted_for(Some(&spec), "a", at(6)).ok(), Some(Duration::from_secs(3)));
    }

    #[test]
    fn own_lease_at_or_past_its_margin_is_expired() {
        let spec = lease("a", at(0), 10);
        assert!(matches!(trusted_for(Some(&spec), "a", at(9)), Err(Fenced::Expired)));
        assert!(matches!(trusted_for(Some(&spec), "a", at(30)), Err(Fenced::Expired)));
    }

    #[test]
    fn another_holder_or_no_lease_fences() {
        let spec = lease("b", at(0), 10);
        match trusted_for(Some(&spec), "a", at(0)) {
            Err(Fenced::NotHolder(holder)) => assert_eq!(holder.as_deref(), Some("b")),
            other => panic!("expected NotHolder, got {other:?}"),
        }
        assert!(matches!(trusted_for(None, "a", at(0)), Err(Fenced::NotHolder(None))));
        let unrenewed = LeaseSpec { renew_time: None, ..lease("a", at(0), 10) };
        assert!(matches!(trusted_for(Some(&unrenewed), "a", at(0)), Err(Fenced::Expired)));
    }

    #[test]
    fn a_refusal_is_found_behind_a_failed_apply() {
        // The fence's error reaches the reconcile as kube's service error inside an apply error.
        let error = crate::controller::Error::Apply {
            kind: "ReplicaSet",
            namespace: "a".into(),
            name: "b".into(),
            source: kube::Error::Service(Box::new(Fenced::NotHolder(Some("c".into())))),
        };
        assert!(error.fenced().is_some_and(Fenced::lost_lead));
        let unreadable = kube::Error::Service(Box::new(Fenced::ReadTimedOut));
        let error = crate::controller::Error::Status { namespace: "a".into(), name: "b".into(), source: unreadable };
        assert!(error.fenced().is_some_and(|f| !f.lost_lead()));
        let other = kube::Error::Service("connection refused".into());
        let error = crate::controller::Error::Status { namespace: "a".into(), name: "b".into(), source: other };
        assert!(error.fenced().is_none());
    }

    #[test]
    fn renew_time_ahead_of_the_local_clock_counts_from_now() {
        // A Lease renewed "in the future" (the holder's clock runs ahead) is trusted no longer
        // than its duration from now.
        let spec = lease("a", at(5), 10);
        assert_eq!(trusted_for(Some(&spec), "a", at(0)).ok(), Some(Duration::from_secs(9)));
    }
}
