//! Supervision of the worker roles' consume loops, and their readiness.
//!
//! A consume loop's session ends with an error when its consumer is deleted,
//! its pull fails or its message stream ends. [`supervise`] runs sessions one
//! after another until shutdown: after a failed session it waits with
//! exponential backoff (doubling from `min_backoff` to `max_backoff`, reset
//! after a session that ran a while) and binds again. [`RoleHealth`] is what
//! readiness reads: a role is ready while a session is bound, not ready while
//! it is between sessions, with the last error and the restart count for an
//! operator. Cloning a `RoleHealth` shares it, so the gateway's `/readyz` can
//! hold the same handles the roles update.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// What one role reports to readiness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleStatus {
    /// The role, e.g. `compute-agent`.
    pub role: String,
    /// Whether its consume loop is bound and running.
    pub ready: bool,
    /// Sessions restarted after an error.
    pub restarts: u64,
    /// Why the last session ended, if one failed.
    pub last_error: Option<String>,
}

/// A role's readiness, shared between the role and whoever reports it.
#[derive(Debug, Clone)]
pub struct RoleHealth {
    status: Arc<watch::Sender<RoleStatus>>,
}

impl RoleHealth {
    /// A role that is not ready yet.
    pub fn new(role: impl Into<String>) -> Self {
        // `send_modify` updates the value with or without receivers.
        let (status, _) =
            watch::channel(RoleStatus { role: role.into(), ready: false, restarts: 0, last_error: None });
        RoleHealth { status: Arc::new(status) }
    }

    /// The role's name.
    pub fn role(&self) -> String {
        self.status.borrow().role.clone()
    }

    /// Whether the role is ready now.
    pub fn is_ready(&self) -> bool {
        self.status.borrow().ready
    }

    /// The current status.
    pub fn status(&self) -> RoleStatus {
        self.status.borrow().clone()
    }

    /// Follows changes of the status.
    pub fn subscribe(&self) -> watch::Receiver<RoleStatus> {
        self.status.subscribe()
    }

    /// Marks the role ready (its consumer is bound).
    pub fn set_ready(&self) {
        self.status.send_modify(|s| s.ready = true);
    }

    fn set_failed(&self, error: String) {
        self.status.send_modify(|s| {
            s.ready = false;
            s.restarts += 1;
            s.last_error = Some(error);
        });
    }

    fn set_stopped(&self) {
        self.status.send_modify(|s| s.ready = false);
    }
}

/// The readiness of every role of a process, for one `/readyz`.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    roles: Vec<RoleHealth>,
}

impl Readiness {
    /// Readiness over `roles`.
    pub fn new(roles: Vec<RoleHealth>) -> Self {
        Readiness { roles }
    }

    /// Whether every role is ready.
    pub fn all_ready(&self) -> bool {
        self.roles.iter().all(RoleHealth::is_ready)
    }

    /// Each role's status.
    pub fn statuses(&self) -> Vec<RoleStatus> {
        self.roles.iter().map(RoleHealth::status).collect()
    }
}

/// Backoff between failed sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first wait.
    pub min_backoff: Duration,
    /// The longest wait.
    pub max_backoff: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { min_backoff: Duration::from_millis(250), max_backoff: Duration::from_secs(30) }
    }
}

/// Runs `session` again and again until `shutdown` resolves: a session that
/// returns `Ok` (it saw the shutdown) ends supervision; one that returns an
/// error is logged, reported in `health` and restarted after a backoff.
/// `session` is given the shutdown future to pass on to the consume loop.
pub async fn supervise<S, F, E>(
    health: RoleHealth,
    backoff: Backoff,
    mut session: S,
    shutdown: impl Future<Output = ()> + Send,
) where
    S: FnMut(futures::future::Shared<futures::future::BoxFuture<'static, ()>>) -> F,
    F: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    use futures::FutureExt;
    let (stop, stopped) = watch::channel(false);
    let signal = async move {
        let mut stopped = stopped;
        let _ = stopped.wait_for(|s| *s).await;
    }
    .boxed()
    .shared();
    tokio::pin!(shutdown);
    let mut wait = backoff.min_backoff;
    loop {
        let started = Instant::now();
        let outcome = {
            let run = session(signal.clone());
            tokio::pin!(run);
            tokio::select! {
                outcome = &mut run => outcome,
                () = &mut shutdown => {
                    let _ = stop.send(true);
                    let _ = run.await;
                    health.set_stopped();
                    return;
                }
            }
        };
        match outcome {
            Ok(()) => {
                health.set_stopped();
                return;
            }
            Err(error) => {
                let message = error.to_string();
                tracing::error!(role = %health.role(), error = %message, ?wait, "consume loop ended; restarting");
                health.set_failed(message);
                if started.elapsed() > backoff.max_backoff {
                    wait = backoff.min_backoff;
                }
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = &mut shutdown => {
                        let _ = stop.send(true);
                        health.set_stopped();
                        return;
                    }
                }
                wait = wait.saturating_mul(2).min(backoff.max_backoff);
            }
        }
    }
}
