//! `GET /readyz`: whether this process should receive traffic and work.
//!
//! `/healthz` answers whether the gateway itself can reach the log. Readiness
//! adds what the other roles of the process report: a projection that refuses
//! to run against another log, a consume loop that stopped and is being
//! restarted, a store bound to another installation. Each role registers a
//! check; a check answers its problems (none when ready). The gateway owns
//! none of those roles, so it knows them only as named checks.

use std::sync::{Arc, RwLock};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use futures::future::BoxFuture;
use serde::Serialize;

use crate::AppState;

/// A role's readiness: its problems, each a sentence an operator can act on;
/// empty when ready.
pub type ReadinessCheck = Arc<dyn Fn() -> BoxFuture<'static, Vec<String>> + Send + Sync>;

/// The checks of the roles in this process.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Arc<RwLock<Vec<(String, ReadinessCheck)>>>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self.read().iter().map(|(name, _)| name.clone()).collect();
        f.debug_struct("Readiness").field("checks", &names).finish()
    }
}

impl Readiness {
    /// Adds the check of role `name` (e.g. `projections`, `compute-agent`).
    pub fn register(&self, name: impl Into<String>, check: ReadinessCheck) {
        self.checks.write().unwrap_or_else(std::sync::PoisonError::into_inner).push((name.into(), check));
    }

    fn read(&self) -> Vec<(String, ReadinessCheck)> {
        self.checks.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Every role's problems, by role.
    pub async fn problems(&self) -> Vec<RoleProblem> {
        let mut problems = Vec::new();
        for (role, check) in self.read() {
            for problem in check().await {
                problems.push(RoleProblem { role: role.clone(), problem });
            }
        }
        problems
    }
}

/// One problem of one role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoleProblem {
    /// The role, e.g. `projections`.
    pub role: String,
    /// What is wrong and what to do.
    pub problem: String,
}

/// The body of `GET /readyz`.
#[derive(Debug, Serialize)]
pub struct ReadinessReport {
    /// `ready` or `not_ready`.
    pub status: &'static str,
    /// The roles checked.
    pub roles: Vec<String>,
    /// What keeps this process from being ready.
    pub problems: Vec<RoleProblem>,
}

pub(crate) async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let mut problems = Vec::new();
    if !matches!(state.log.client().connection_state(), async_nats::connection::State::Connected) {
        problems.push(RoleProblem { role: "gateway".into(), problem: "not connected to NATS".into() });
    }
    problems.extend(state.readiness.problems().await);
    let roles = std::iter::once("gateway".to_owned())
        .chain(state.readiness.read().into_iter().map(|(name, _)| name))
        .collect();
    let ready = problems.is_empty();
    let report = ReadinessReport { status: if ready { "ready" } else { "not_ready" }, roles, problems };
    (if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, Json(report))
}
