//! Leader election that never ends the process: every failed Lease request, at start-up or on
//! renewal, is counted and retried with back-off while the replica keeps its caches warm.
//!
//! A refused Lease request is usually brief (RBAC not yet effective right after install, the
//! apiserver restarting, a network blip). Exiting on it turned that blip into a crash loop with
//! growing back-off; staying up costs nothing, because writes go through the write fence
//! (`fence.rs`), which lets none through while the Lease is not confirmed this replica's.

use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::metrics::{ElectionPhase, Metrics};
use crate::labels;

/// First wait after a failed Lease request.
const FIRST_RETRY: Duration = Duration::from_millis(500);

/// Longest wait between retries: short enough that a replica whose RBAC just became effective
/// joins the election within seconds.
const MAX_RETRY: Duration = Duration::from_secs(8);

/// Where and as whom this replica takes part in the election.
#[derive(Clone, Debug)]
pub struct Election {
    pub lease_namespace: String,
    pub lease_name: String,
    pub identity: String,
    pub duration_seconds: u64,
    /// Tests only (zero otherwise): how long a lost lead goes unnoticed.
    pub step_down_delay: Duration,
}

/// What the controller sees of the election.
pub struct Leadership {
    /// True while this replica holds the Lease.
    pub leader: watch::Receiver<bool>,
    /// Turns true once the Lease has been read or created: until then the replica is not ready.
    pub joined: watch::Receiver<bool>,
    /// Ends (releasing the Lease) once every `leader` receiver is gone.
    pub task: JoinHandle<()>,
}

/// Delay before retry number `attempt` (0-based): doubling from [`FIRST_RETRY`] up to
/// [`MAX_RETRY`], then scaled by `jitter` (0.5..=1.0) so that replicas refused together do not
/// retry together.
pub fn retry_delay(attempt: u32, jitter: f64) -> Duration {
    let doubled = FIRST_RETRY.saturating_mul(1u32 << attempt.min(16));
    doubled.min(MAX_RETRY).mul_f64(jitter.clamp(0.5, 1.0))
}

fn jittered(attempt: u32) -> Duration {
    retry_delay(attempt, rand::random_range(0.5..=1.0))
}

/// Starts the election in the background; the returned receivers start false.
pub fn start(client: Client, election: Election, metrics: Arc<Metrics>) -> Leadership {
    let (leader_tx, leader) = watch::channel(false);
    let (joined_tx, joined) = watch::channel(false);
    let task = tokio::spawn(async move {
        let Some(manager) = join(client, &election, &metrics, &leader_tx).await else {
            return;
        };
        joined_tx.send_replace(true);
        info!(identity = %election.identity, lease = %election.lease_name, "joined the leader election");
        campaign(manager, &metrics, &leader_tx, election.step_down_delay).await;
    });
    Leadership { leader, joined, task }
}

/// Reads (or creates) the Lease, retrying until it succeeds; `None` once nobody listens.
async fn join(
    client: Client,
    election: &Election,
    metrics: &Metrics,
    leader: &watch::Sender<bool>,
) -> Option<LeaseManager> {
    let mut attempt = 0;
    loop {
        let built = LeaseManagerBuilder::new(client.clone(), &election.lease_name)
            .with_namespace(&election.lease_namespace)
            .with_identity(&election.identity)
            .with_duration(election.duration_seconds)
            .with_grace(2)
            .with_field_manager(format!("{}-lease", labels::MANAGER))
            .build()
            .await;
        match built {
            Ok(manager) => return Some(manager),
            Err(error) => {
                metrics.leader_election_error(ElectionPhase::Join);
                let wait = jittered(attempt);
                warn!(%error, lease = %election.lease_name, retry_in = ?wait, "cannot reach the leader Lease; retrying");
                attempt = attempt.saturating_add(1);
                tokio::select! {
                    () = leader.closed() => return None,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// Acquires and renews the Lease, publishing every change, until nobody listens; then
/// releases it so a standby takes over at once.
async fn campaign(manager: LeaseManager, metrics: &Metrics, leader: &watch::Sender<bool>, step_down_delay: Duration) {
    let mut attempt = 0;
    loop {
        tokio::select! {
            biased;
            () = leader.closed() => break,
            changed = manager.changed() => match changed {
                Ok(leading) => {
                    attempt = 0;
                    if !leading && *leader.borrow() && !step_down_delay.is_zero() {
                        warn!(delay = ?step_down_delay, "lost the Lease; still acting as leader (--test-delay-step-down-seconds)");
                        tokio::select! {
                            () = leader.closed() => break,
                            () = tokio::time::sleep(step_down_delay) => {}
                        }
                    }
                    leader.send_replace(leading);
                }
                Err(error) => {
                    // The published flag stays as it was: if the Lease has in fact run out, the
                    // write fence already refuses every write, and the next successful read
                    // publishes the truth.
                    metrics.leader_election_error(ElectionPhase::Renew);
                    let wait = jittered(attempt);
                    warn!(%error, retry_in = ?wait, "leader Lease request failed; retrying");
                    attempt = attempt.saturating_add(1);
                    tokio::select! {
                        () = leader.closed() => break,
                        () = tokio::time::sleep(wait) => {}
                    }
                }
            },
        }
    }
    match manager.release().await {
        Ok(()) => info!("leader lease released"),
        Err(error) => warn!(%error, "leader lease not released"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_double_from_half_a_second_up_to_the_cap() {
        let delays: Vec<Duration> = (0..7).map(|attempt| retry_delay(attempt, 1.0)).collect();
        let ms: Vec<u128> = delays.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [500, 1000, 2000, 4000, 8000, 8000, 8000]);
        assert_eq!(retry_delay(u32::MAX, 1.0), MAX_RETRY, "a long outage does not overflow");
    }

    #[test]
    fn jitter_shortens_a_retry_by_at_most_half() {
        assert_eq!(retry_delay(2, 0.5), Duration::from_millis(1000));
        assert_eq!(retry_delay(2, 0.1), Duration::from_millis(1000), "jitter below 0.5 is clamped");
        assert_eq!(retry_delay(2, 7.0), Duration::from_millis(2000), "jitter above 1 is clamped");
    }
}
