//! How far each projection has applied the log, as the projectors announce
//! it: every applied event is a live notice on `gps.live.<brand>` (core NATS,
//! sent after the batch is committed). A read that waits for `min_sequence`
//! sleeps until the notice of its projection at or past that sequence
//! arrives, and then reads the checkpoint once, instead of polling the read
//! database every few milliseconds for the whole wait. Notices are fire and
//! forget, and platform events have none, so a waiting read also looks at
//! the checkpoint every [`FALLBACK_CHECK`].

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use gps_nats::EventLog;
use tokio::sync::watch;

/// How often a waiting read checks the read model without a notice.
pub const FALLBACK_CHECK: Duration = Duration::from_millis(250);

/// The highest sequence each projection has announced, by projection name.
#[derive(Debug, Clone)]
pub struct ProjectionProgress {
    announced: watch::Sender<BTreeMap<String, u64>>,
    fallback: Duration,
}

impl Default for ProjectionProgress {
    fn default() -> Self {
        ProjectionProgress { announced: watch::channel(BTreeMap::new()).0, fallback: FALLBACK_CHECK }
    }
}

impl ProjectionProgress {
    /// Follows the projectors' notices in a background task for as long as
    /// the client lives.
    pub async fn follow(log: &EventLog) -> Result<Self, async_nats::SubscribeError> {
        let progress = ProjectionProgress::default();
        let subject = format!("{}.>", gps_nats::subjects::LIVE_SUBJECT_PREFIX);
        let mut notices = log.client().subscribe(subject).await?;
        let announced = progress.announced.clone();
        tokio::spawn(async move {
            while let Some(message) = notices.next().await {
                let Ok(notice) = serde_json::from_slice::<gps_projections::LiveNotice>(&message.payload)
                else {
                    continue;
                };
                announced.send_if_modified(|by_projection| {
                    let reached = by_projection.entry(notice.projection).or_default();
                    let moved = notice.sequence > *reached;
                    *reached = (*reached).max(notice.sequence);
                    moved
                });
            }
        });
        Ok(progress)
    }

    /// Waits until `check` says the read model is there (`true`), or
    /// `timeout` passes (`false`). `check` runs once at once, then after each
    /// notice of `projection` at or past `sequence`, and at least every
    /// [`FALLBACK_CHECK`].
    pub async fn wait_until<F, Fut>(
        &self,
        projection: &str,
        sequence: u64,
        timeout: Duration,
        mut check: F,
    ) -> bool
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut announced = self.announced.subscribe();
        // Once a notice said "there" and the read model disagreed (a notice
        // can run ahead of another gateway's read replica), only the fallback
        // paces the checks, so they never spin.
        let mut trust_notices = true;
        loop {
            if check().await {
                return true;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return false;
            }
            let pause = self.fallback.min(deadline - now);
            let noticed = async {
                if !trust_notices {
                    return std::future::pending().await;
                }
                let reached = |by_projection: &BTreeMap<String, u64>| {
                    by_projection.get(projection).is_some_and(|reached| *reached >= sequence)
                };
                if announced.wait_for(reached).await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                () = noticed => trust_notices = false,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Records a notice (for tests of the waiting).
    #[cfg(test)]
    fn announce(&self, projection: &str, sequence: u64) {
        self.announced.send_modify(|by_projection| {
            let reached = by_projection.entry(projection.to_owned()).or_default();
            *reached = (*reached).max(sequence);
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use super::*;

    /// Progress whose fallback check is far away, so only notices and the
    /// deadline can end a wait in these tests.
    fn with_rare_fallback() -> ProjectionProgress {
        ProjectionProgress { fallback: Duration::from_secs(120), ..ProjectionProgress::default() }
    }

    type Check = std::pin::Pin<Box<dyn Future<Output = bool> + Send>>;

    fn counting(checks: &Arc<AtomicUsize>, ready: &Arc<AtomicBool>) -> impl FnMut() -> Check + use<> {
        let (checks, ready) = (checks.clone(), ready.clone());
        move || {
            checks.fetch_add(1, Ordering::SeqCst);
            let ready = ready.load(Ordering::SeqCst);
            Box::pin(async move { ready })
        }
    }

    #[tokio::test]
    async fn without_notices_a_wait_checks_at_the_start_and_at_its_deadline_only() {
        let progress = with_rare_fallback();
        let checks = Arc::new(AtomicUsize::new(0));
        let never = Arc::new(AtomicBool::new(false));
        let reached =
            progress.wait_until("catalog", 10, Duration::from_millis(300), counting(&checks, &never)).await;
        assert!(!reached);
        assert_eq!(checks.load(Ordering::SeqCst), 2, "no polling between");
    }

    #[tokio::test]
    async fn the_notice_of_the_projection_at_the_sequence_wakes_the_wait_and_others_do_not() {
        let progress = with_rare_fallback();
        let checks = Arc::new(AtomicUsize::new(0));
        let ready = Arc::new(AtomicBool::new(false));
        let waiting = {
            let (progress, check) = (progress.clone(), counting(&checks, &ready));
            tokio::spawn(
                async move { progress.wait_until("catalog", 10, Duration::from_secs(60), check).await },
            )
        };
        while checks.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        progress.announce("review", 50);
        progress.announce("catalog", 9);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            checks.load(Ordering::SeqCst),
            1,
            "notices of other projections or earlier sequences wake nothing"
        );
        ready.store(true, Ordering::SeqCst);
        progress.announce("catalog", 10);
        let reached = tokio::time::timeout(Duration::from_secs(30), waiting)
            .await
            .expect("woken by the notice, long before the fallback")
            .expect("task");
        assert!(reached);
        assert_eq!(checks.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_notice_the_read_model_contradicts_does_not_make_the_wait_spin() {
        let progress = with_rare_fallback();
        progress.announce("catalog", 10);
        let checks = Arc::new(AtomicUsize::new(0));
        let never = Arc::new(AtomicBool::new(false));
        let reached =
            progress.wait_until("catalog", 10, Duration::from_millis(300), counting(&checks, &never)).await;
        assert!(!reached);
        assert_eq!(checks.load(Ordering::SeqCst), 3, "the start, the notice, the deadline");
    }
}
