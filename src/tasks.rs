//! Tasks owned by the composition root (`node`): every background loop and
//! every connection is spawned through a `Tasks`, so shutdown can ask them to
//! finish, wait for them, and then cancel what is left. Nothing runs on after
//! its owner stops, and a simulation can later drive the same seams.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Clone, Default)]
pub struct Tasks {
    tracker: TaskTracker,
    /// Asks tasks to wind down on their own (stop reading requests, answer
    /// long polls now).
    draining: CancellationToken,
    /// Drops whatever is still running, at its next await.
    cancelled: CancellationToken,
}

impl Tasks {
    pub fn new() -> Self {
        Self::default()
    }

    /// Spawns `task`; it is dropped at its next await once cancelled.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) -> JoinHandle<()> {
        let cancelled = self.cancelled.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                _ = cancelled.cancelled() => {}
                _ = task => {}
            }
        })
    }

    /// Cancelled when shutdown begins: tasks that can finish early watch it.
    pub fn draining(&self) -> CancellationToken {
        self.draining.clone()
    }

    /// Asks every task to finish, waits up to `grace` for them, then cancels
    /// the rest and waits for them to go.
    pub async fn shutdown(&self, grace: Duration) -> ShutdownReport {
        self.draining.cancel();
        self.tracker.close();
        let running = self.tracker.len();
        let drained = tokio::time::timeout(grace, self.tracker.wait()).await.is_ok();
        let cancelled = if drained { 0 } else { self.tracker.len() };
        self.cancelled.cancel();
        self.tracker.wait().await;
        ShutdownReport { running, cancelled }
    }
}

/// What a shutdown found: tasks running when it began, and how many of them
/// had to be cancelled after the grace period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    pub running: usize,
    pub cancelled: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn tasks_that_drain_finish_and_the_rest_are_cancelled() {
        let tasks = Tasks::new();
        let finished = Arc::new(AtomicBool::new(false));
        let draining = tasks.draining();
        let flag = finished.clone();
        tasks.spawn(async move {
            draining.cancelled().await;
            flag.store(true, Ordering::SeqCst);
        });
        let stuck_dropped = Arc::new(AtomicBool::new(false));
        let guard = DropFlag(stuck_dropped.clone());
        tasks.spawn(async move {
            let _guard = guard;
            std::future::pending::<()>().await;
        });
        let report = tasks.shutdown(Duration::from_secs(5)).await;
        assert_eq!(report, ShutdownReport { running: 2, cancelled: 1 });
        assert!(finished.load(Ordering::SeqCst), "the cooperative task finished on its own");
        assert!(stuck_dropped.load(Ordering::SeqCst), "the stuck task was dropped");
    }

    struct DropFlag(Arc<AtomicBool>);

    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}
