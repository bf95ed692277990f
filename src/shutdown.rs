//! How the daemon stops: on SIGTERM the listeners stop accepting and calls that are speaking
//! finish what they were asked to say; when the drain deadline passes, every call still up is
//! ended cleanly (AudioSocket hangup message, AGI result variables). Every connection task is
//! tracked, so the daemon waits for them all before it exits.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The daemon's shutdown state, shared by every listener and session; cheap to clone.
#[derive(Clone, Default)]
pub struct Shutdown {
    /// Set on SIGTERM: accept nothing new, let speaking calls finish.
    draining: CancellationToken,
    /// Set when the drain deadline passes: end every call now.
    ended: CancellationToken,
    /// Every connection task, awaited before the process exits.
    tasks: TaskTracker,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts the drain; calls get `deadline` to finish, then they are ended.
    pub fn begin(&self, deadline: Duration) {
        if self.draining.is_cancelled() {
            return;
        }
        self.draining.cancel();
        self.tasks.close();
        let ended = self.ended.clone();
        tokio::spawn(async move {
            tokio::time::sleep(deadline).await;
            ended.cancel();
        });
    }

    /// Ends every call now, whatever the deadline.
    pub fn end_now(&self) {
        self.draining.cancel();
        self.tasks.close();
        self.ended.cancel();
    }

    pub fn is_draining(&self) -> bool {
        self.draining.is_cancelled()
    }

    pub fn is_ended(&self) -> bool {
        self.ended.is_cancelled()
    }

    /// Resolves once the drain has begun (at once if it has).
    pub async fn draining(&self) {
        self.draining.cancelled().await
    }

    /// Resolves once calls must end (at once if they must).
    pub async fn ended(&self) {
        self.ended.cancelled().await
    }

    /// Runs a connection's task, tracked so that [`Self::wait`] waits for it.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(task);
    }

    /// Waits until the drain has begun and every tracked task has ended.
    pub async fn wait(&self) {
        self.tasks.wait().await
    }

    /// Tasks still running.
    pub fn running(&self) -> usize {
        self.tasks.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drain_then_deadline_then_wait() {
        let shutdown = Shutdown::new();
        let s = shutdown.clone();
        shutdown.spawn(async move {
            s.ended().await;
        });
        assert!(!shutdown.is_draining());
        shutdown.begin(Duration::from_millis(50));
        assert!(shutdown.is_draining() && !shutdown.is_ended());
        tokio::time::timeout(Duration::from_secs(2), shutdown.wait())
            .await
            .expect("the task ends at the deadline");
        assert!(shutdown.is_ended());
        assert_eq!(shutdown.running(), 0);
    }
}
