//! Ready endpoints behind a Service, watched: shared by the e2e suite and the chaos bench.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::{Api, Client};

/// Ready endpoints in these EndpointSlices.
pub fn ready_endpoints(slices: &[EndpointSlice]) -> usize {
    slices
        .iter()
        .flat_map(|s| s.endpoints.iter().flatten())
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false))
        .count()
}

/// The Ready pods in these EndpointSlices, by name, sorted (for reports).
fn ready_pods(slices: &[EndpointSlice]) -> Vec<String> {
    let mut pods: Vec<String> = slices
        .iter()
        .flat_map(|s| s.endpoints.iter().flatten())
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false))
        .map(|e| e.target_ref.as_ref().and_then(|r| r.name.clone()).unwrap_or_else(|| e.addresses.join(",")))
        .collect();
    pods.sort();
    pods
}

/// Ready endpoints behind a Service, from a watch (not a poll): the fewest Ready endpoints is
/// updated on every EndpointSlice change, and a 100 ms tick counts a sample as taken only while
/// the watch is live (listed, no error since). A sampler that went blind fails the test.
pub struct EndpointWatch {
    stop: Arc<AtomicBool>,
    min_ready: Arc<AtomicUsize>,
    samples: Arc<AtomicUsize>,
    missed: Arc<AtomicUsize>,
    lowest: Arc<std::sync::Mutex<Lowest>>,
    task: tokio::task::JoinHandle<()>,
}

/// When the fewest Ready endpoints were first seen, and which pods they were.
#[derive(Clone, Debug, Default)]
pub struct Lowest {
    pub after: Duration,
    pub pods: Vec<String>,
}

/// What an [`EndpointWatch`] saw.
#[derive(Debug)]
pub struct Sampled {
    pub min_ready: usize,
    pub samples: usize,
    pub missed: usize,
    /// The moment of the fewest Ready endpoints (first time seen) and those pods.
    pub lowest: Lowest,
}

impl Sampled {
    /// Ready endpoints never fell below `floor`, and at most 1 % of the 100 ms samples were
    /// missed (the watch down or not yet listed).
    pub fn assert_floor(&self, floor: usize, what: &str) {
        if let Some(violation) = self.violation(floor) {
            panic!("[{what}] {violation}");
        }
    }

    /// What broke the floor or the sampling, if anything.
    pub fn violation(&self, floor: usize) -> Option<String> {
        if self.samples == 0 {
            return Some("the endpoint watch took no sample".into());
        }
        if self.missed * 100 > self.samples + self.missed {
            let total = self.samples + self.missed;
            return Some(format!("the endpoint watch missed {} of {total} samples (more than 1 %)", self.missed));
        }
        (self.min_ready < floor).then(|| {
            format!(
                "Ready endpoints fell to {}, below the floor {floor} (replicas - maxUnavailable), {:.1} s after the watch started: {}",
                self.min_ready,
                self.lowest.after.as_secs_f64(),
                self.lowest.pods.join(" ")
            )
        })
    }
}

impl EndpointWatch {
    /// Starts watching and returns once the first list is in: from then on every 100 ms tick
    /// is a sample taken or a sample missed.
    pub async fn start(client: &Client, namespace: &str, service: &str) -> Self {
        use futures::StreamExt;
        use kube::runtime::{WatchStreamExt, reflector, watcher};
        let api: Api<EndpointSlice> = Api::namespaced(client.clone(), namespace);
        let config = watcher::Config::default().labels(&format!("kubernetes.io/service-name={service}"));
        let (stop, min_ready) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(usize::MAX)));
        let (samples, missed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let lowest = Arc::new(std::sync::Mutex::new(Lowest::default()));
        let started = tokio::time::Instant::now();
        let (listed_tx, listed_rx) = tokio::sync::oneshot::channel();
        let task = {
            let (stop, min_ready, samples, missed) = (stop.clone(), min_ready.clone(), samples.clone(), missed.clone());
            let lowest = lowest.clone();
            tokio::spawn(async move {
                let mut listed = Some(listed_tx);
                let (reader, writer) = reflector::store();
                let mut events = std::pin::pin!(reflector(writer, watcher(api, config).default_backoff()));
                let mut tick = tokio::time::interval(Duration::from_millis(100));
                let mut live = false;
                let ready_now = || {
                    let slices: Vec<EndpointSlice> = reader.state().iter().map(|s| (**s).clone()).collect();
                    let ready = ready_endpoints(&slices);
                    if ready < min_ready.load(Ordering::SeqCst)
                        && let Ok(mut lowest) = lowest.lock()
                    {
                        *lowest = Lowest { after: started.elapsed(), pods: ready_pods(&slices) };
                    }
                    ready
                };
                while !stop.load(Ordering::SeqCst) {
                    tokio::select! {
                        event = events.next() => match event {
                            Some(Ok(watcher::Event::Init)) => live = false,
                            Some(Ok(watcher::Event::InitDone)) => {
                                live = true;
                                min_ready.fetch_min(ready_now(), Ordering::SeqCst);
                                if let Some(listed) = listed.take() {
                                    let _ = listed.send(());
                                    tick.reset();
                                }
                            }
                            Some(Ok(_)) if live => {
                                min_ready.fetch_min(ready_now(), Ordering::SeqCst);
                            }
                            Some(Ok(_)) => {}
                            Some(Err(_)) => live = false,
                            None => break,
                        },
                        _ = tick.tick(), if listed.is_none() => {
                            if live {
                                min_ready.fetch_min(ready_now(), Ordering::SeqCst);
                                samples.fetch_add(1, Ordering::SeqCst);
                            } else {
                                missed.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    }
                }
            })
        };
        tokio::time::timeout(Duration::from_secs(30), listed_rx)
            .await
            .unwrap_or_else(|_| panic!("the endpoint watch of {service} listed nothing within 30 s"))
            .unwrap_or_else(|_| panic!("the endpoint watch of {service} ended before its first list"));
        Self { stop, min_ready, samples, missed, lowest, task }
    }

    /// Stops watching; returns what was seen.
    pub async fn finish(self) -> Sampled {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.task.await;
        Sampled {
            min_ready: self.min_ready.load(Ordering::SeqCst),
            samples: self.samples.load(Ordering::SeqCst),
            missed: self.missed.load(Ordering::SeqCst),
            lowest: self.lowest.lock().map(|l| l.clone()).unwrap_or_default(),
        }
    }
}
