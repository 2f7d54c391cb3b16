//! Reconciles take turns, first come first served, at most `--concurrency` at once.
//!
//! kube-runtime's Controller can bound its reconciles itself, but while every slot is busy it
//! parks the objects that fall due in a hash set, and each freed slot goes to the first object
//! of that set in hash order. The same objects win every time. Under a burst this starved the
//! rest: after an image change to 1,000 CourseServices (`make bench-peers`, N=1000) the first
//! object finished its whole canary in 36 s while the median one waited 162 s for its first
//! step, because objects whose children kept changing were picked again and again. So the
//! Controller runs unbounded and each reconcile waits here for a permit of a semaphore, which
//! tokio hands out in the order they were asked for, as client-go's work queue does.

use std::future::Future;

use kube::runtime::controller::Config;
use tokio::sync::Semaphore;

/// The Controller's own configuration: no bound of its own (0), `Turns` bounds the reconciles.
pub fn controller_config() -> Config {
    Config::default().concurrency(0)
}

/// The reconcile turns: a fair semaphore of `concurrency` permits.
pub struct Turns {
    permits: Semaphore,
}

impl Turns {
    /// `concurrency` reconciles at once (at least one).
    pub fn new(concurrency: u16) -> Self {
        Self { permits: Semaphore::new(usize::from(concurrency.max(1))) }
    }

    /// Runs `work` once every earlier caller has had its turn and a permit is free; `None`,
    /// without running it, once the turns are closed. A waiting caller holds only `work` (the
    /// reconcile's future is boxed once its turn comes): 1,000 CourseServices queued at once
    /// cost under 2 MiB (BENCHMARKS.md, "Memory during an update at N=1000").
    pub async fn take<F: Future>(&self, work: impl FnOnce() -> F) -> Option<F::Output> {
        let _turn = self.permits.acquire().await.ok()?;
        Some(Box::pin(work()).await)
    }

    /// No more turns: at shutdown the Controller lets every started reconcile finish, and those
    /// still waiting in line end at once instead of each taking its turn first (a leader
    /// stopping in the middle of a burst would otherwise hold its Lease until the line is
    /// empty). Reconciles already running finish.
    pub fn close(&self) {
        self.permits.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::sync::{Mutex, oneshot};

    #[tokio::test]
    async fn callers_get_their_turns_in_the_order_they_asked() {
        let turns = Arc::new(Turns::new(1));
        let order = Arc::new(Mutex::new(Vec::new()));
        // One caller holds the only turn until released.
        let (release, held) = oneshot::channel::<()>();
        let holder = tokio::spawn({
            let turns = turns.clone();
            async move { turns.take(|| async { held.await.ok() }).await }
        });
        tokio::task::yield_now().await;
        assert_eq!(turns.permits.available_permits(), 0, "the holder has the turn");
        // Twelve more ask while it is held, each queued before the next asks (a yield of this
        // single-threaded test runtime lets the one just spawned run up to its wait).
        let mut waiting = Vec::new();
        for caller in 0..12 {
            let (turns, order) = (turns.clone(), order.clone());
            waiting
                .push(tokio::spawn(async move { turns.take(|| async move { order.lock().await.push(caller) }).await }));
            tokio::task::yield_now().await;
        }
        assert!(order.lock().await.is_empty(), "nobody ran before the holder let go");
        assert!(release.send(()).is_ok(), "the holder is still waiting for its release");
        assert!(holder.await.is_ok());
        for caller in waiting {
            assert!(caller.await.is_ok());
        }
        assert_eq!(*order.lock().await, (0..12).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn no_more_than_concurrency_run_at_once_and_all_of_them_are_used() {
        let turns = Arc::new(Turns::new(3));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let callers: Vec<_> = (0..20)
            .map(|_| {
                let (turns, running, most) = (turns.clone(), running.clone(), most.clone());
                tokio::spawn(async move {
                    turns
                        .take(|| async move {
                            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(now, Ordering::SeqCst);
                            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                            running.fetch_sub(1, Ordering::SeqCst);
                        })
                        .await
                })
            })
            .collect();
        for caller in callers {
            assert!(caller.await.is_ok());
        }
        assert_eq!(most.load(Ordering::SeqCst), 3);
    }

    /// Through kube-runtime's own runner, configured as `run` configures it: an object whose
    /// reconcile keeps queueing itself again (its children keep changing) gets its next turn only
    /// after every object that was already waiting. With the runner bounding itself instead,
    /// the freed slot went to whichever waiting object came first in hash order.
    #[tokio::test]
    async fn an_object_queued_again_waits_behind_every_object_already_waiting() {
        use futures::StreamExt;
        use k8s_openapi::api::core::v1::ConfigMap;
        use kube::runtime::controller::{Action, applier};
        use kube::runtime::reflector::{self, ObjectRef};
        use kube::runtime::watcher;

        const COLD: usize = 30;
        let (store, mut writer) = reflector::store::<ConfigMap>();
        let named = |name: String| ConfigMap {
            metadata: kube::api::ObjectMeta { name: Some(name), namespace: Some("ns".into()), ..Default::default() },
            ..Default::default()
        };
        let names: Vec<String> =
            std::iter::once("hot".to_owned()).chain((0..COLD).map(|i| format!("cold-{i}"))).collect();
        writer.apply_watcher_event(&watcher::Event::Init);
        for name in &names {
            writer.apply_watcher_event(&watcher::Event::InitApply(named(name.clone())));
        }
        writer.apply_watcher_event(&watcher::Event::InitDone);
        let (queue, requests) =
            futures::channel::mpsc::unbounded::<Result<ObjectRef<ConfigMap>, std::convert::Infallible>>();
        struct Shared {
            turns: Turns,
            order: std::sync::Mutex<Vec<String>>,
            queue: futures::channel::mpsc::UnboundedSender<Result<ObjectRef<ConfigMap>, std::convert::Infallible>>,
        }
        let shared =
            Arc::new(Shared { turns: Turns::new(1), order: std::sync::Mutex::default(), queue: queue.clone() });
        // The hot object comes first, then every cold one, all at once.
        for name in &names {
            assert!(queue.unbounded_send(Ok(ObjectRef::new(name).within("ns"))).is_ok());
        }
        let reconcile = |object: Arc<ConfigMap>, shared: Arc<Shared>| {
            Box::pin(async move {
                let turns = shared.clone();
                turns
                    .turns
                    .take(move || async move {
                        let name = object.metadata.name.clone().unwrap_or_default();
                        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                        let hot_runs = {
                            let mut order = shared.order.lock().map_err(|_| std::fmt::Error)?;
                            order.push(name.clone());
                            order.iter().filter(|n| *n == "hot").count()
                        };
                        // Its children changed again: queue it again, a few times over.
                        if name == "hot" && hot_runs < 4 {
                            let _ = shared.queue.unbounded_send(Ok(ObjectRef::new("hot").within("ns")));
                        }
                        Ok::<_, std::fmt::Error>(Action::await_change())
                    })
                    .await
                    .unwrap_or(Ok(Action::await_change()))
            })
        };
        let runs =
            applier(reconcile, |_, _, _| Action::await_change(), shared.clone(), store, requests, controller_config());
        let total = names.len() + 3;
        let finished =
            tokio::time::timeout(std::time::Duration::from_secs(10), runs.take(total).collect::<Vec<_>>()).await;
        let order = shared.order.lock().map(|o| o.clone()).unwrap_or_default();
        assert!(
            finished.is_ok_and(|runs| runs.iter().all(Result::is_ok)),
            "{total} reconciles ran within 10 s: {order:?}"
        );
        assert_eq!(order.len(), total, "{order:?}");
        let hot_second = order.iter().enumerate().filter(|(_, n)| *n == "hot").nth(1).map(|(i, _)| i);
        assert_eq!(
            hot_second,
            Some(COLD + 1),
            "the hot object's second turn comes after all {COLD} cold ones: {order:?}"
        );
    }

    #[tokio::test]
    async fn once_closed_the_callers_in_line_end_without_running_and_the_running_one_finishes() {
        let turns = Arc::new(Turns::new(1));
        let ran = Arc::new(AtomicUsize::new(0));
        let (release, held) = oneshot::channel::<()>();
        let running = tokio::spawn({
            let (turns, ran) = (turns.clone(), ran.clone());
            async move {
                turns
                    .take(|| async move {
                        let _ = held.await;
                        ran.fetch_add(1, Ordering::SeqCst);
                    })
                    .await
            }
        });
        tokio::task::yield_now().await;
        let in_line: Vec<_> = (0..5)
            .map(|_| {
                let (turns, ran) = (turns.clone(), ran.clone());
                tokio::spawn(async move { turns.take(|| async move { ran.fetch_add(1, Ordering::SeqCst) }).await })
            })
            .collect();
        tokio::task::yield_now().await;
        turns.close();
        for caller in in_line {
            assert!(matches!(caller.await, Ok(None)), "a caller in line ran after the close");
        }
        assert!(release.send(()).is_ok());
        assert!(matches!(running.await, Ok(Some(()))), "the running one finishes");
        assert_eq!(ran.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn zero_concurrency_still_gives_one_turn() {
        assert_eq!(Turns::new(0).permits.available_permits(), 1);
    }
}
