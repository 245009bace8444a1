//! Work an adapter starts on behalf of one request — a late chat answer, a
//! button's follow-up, a webhook update handled after Telegram was told
//! "200" — tracked, so that a stop lets it finish (within the shutdown
//! timeout) instead of dropping it, and a panic in it is logged with what
//! it was doing. The composition root owns the set and drains it.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinSet;

#[derive(Clone, Default)]
pub struct Tasks {
    running: Arc<Mutex<JoinSet<()>>>,
}

impl Tasks {
    /// Starts `work` (named `what` in logs) beside the request that asked
    /// for it.
    pub fn spawn(&self, what: &'static str, work: impl Future<Output = ()> + Send + 'static) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        // Finished ones are let go here, so the set holds only live work.
        while running.try_join_next().is_some() {}
        running.spawn(async move {
            if let Err(why) = crate::engine::guard::caught(work).await {
                tracing::error!(task = what, %why, "a chat task panicked; its answer is lost");
            }
        });
    }

    /// How many are still running.
    pub fn running(&self) -> usize {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        while running.try_join_next().is_some() {}
        running.len()
    }

    /// Waits for what is running to finish, up to `within`; what is left
    /// then is cut off, and said.
    pub async fn finish(&self, within: Duration) {
        let mut running = {
            let mut guard = self.running.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::take(&mut *guard)
        };
        let drained = tokio::time::timeout(within, async {
            while running.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                left = running.len(),
                "chat answers still being worked on at the shutdown timeout are cut off"
            );
            running.shutdown().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stop_waits_for_work_and_a_panic_ends_only_its_task() {
        let tasks = Tasks::default();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = done.clone();
        tasks.spawn("waits", async move {
            let _ = rx.await;
            seen.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        tasks.spawn("panics", async { panic!("a fault in a handler") });
        tokio::task::yield_now().await;
        assert_eq!(tasks.running(), 1, "the panicked one is over");
        tx.send(()).unwrap_or(());
        tasks.finish(Duration::from_secs(30)).await;
        assert!(done.load(std::sync::atomic::Ordering::SeqCst));
        assert_eq!(tasks.running(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn work_past_the_timeout_is_cut_off() {
        let tasks = Tasks::default();
        tasks.spawn("never ends", std::future::pending());
        tasks.finish(Duration::from_secs(5)).await;
        assert_eq!(tasks.running(), 0);
    }
}
