//! CPU-heavy work (password hashing, image decoding and rendering) runs off
//! the async workers, and at most one job per core of each kind at once: a
//! burst of sign-ins or of derivative requests queues instead of taking every
//! core and the memory each job needs, and a job that waits too long for its
//! turn is answered 429 with `Retry-After` instead of hanging.

use std::sync::OnceLock;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::ApiError;

/// A kind of CPU work with its own bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Work {
    /// argon2id: tens of milliseconds and 19 MiB per hash, on purpose.
    Password,
    /// Decoding, checking and rendering images (uploads, derivatives).
    Image,
}

impl Work {
    fn permits(self) -> &'static Semaphore {
        static PASSWORD: OnceLock<Semaphore> = OnceLock::new();
        static IMAGE: OnceLock<Semaphore> = OnceLock::new();
        let cell = match self {
            Work::Password => &PASSWORD,
            Work::Image => &IMAGE,
        };
        cell.get_or_init(|| Semaphore::new(permits_per_kind()))
    }

    /// How long a job waits for its turn before the request is refused.
    fn patience(self) -> Duration {
        match self {
            Work::Password => Duration::from_secs(5),
            Work::Image => Duration::from_secs(15),
        }
    }

    fn busy(self) -> &'static str {
        match self {
            Work::Password => "too many sign-ins and password changes at once; try again in a few seconds",
            Work::Image => {
                "too many images are being decoded or rendered at once; try again in a few seconds"
            }
        }
    }
}

/// Jobs of one kind at once: one per core, at least two.
pub(crate) fn permits_per_kind() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get).max(2)
}

/// Runs `job` on the blocking pool once a turn of `work` is free.
pub(crate) async fn run<T: Send + 'static>(
    work: Work,
    job: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    let permit = tokio::time::timeout(work.patience(), work.permits().acquire())
        .await
        .map_err(|_| ApiError::TooManyRequests { message: work.busy().into(), retry_after_secs: 2 })?
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let result =
        tokio::task::spawn_blocking(job).await.map_err(|e| ApiError::Internal(format!("{work:?} task: {e}")));
    drop(permit);
    result
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn each_kind_of_work_runs_at_most_its_permits_at_once() {
        for work in [Work::Password, Work::Image] {
            let running = Arc::new(AtomicUsize::new(0));
            let most = Arc::new(AtomicUsize::new(0));
            let jobs: Vec<_> = (0..24)
                .map(|_| {
                    let (running, most) = (running.clone(), most.clone());
                    tokio::spawn(run(work, move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(20));
                        running.fetch_sub(1, Ordering::SeqCst);
                    }))
                })
                .collect();
            for job in jobs {
                job.await.expect("task").expect("a turn within the patience");
            }
            let most = most.load(Ordering::SeqCst);
            assert!(
                most <= permits_per_kind(),
                "{work:?}: {most} jobs ran at once, more than {}",
                permits_per_kind()
            );
        }
    }
}
