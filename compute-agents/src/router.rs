//! Routing of provider work: by capability and configuration, with
//! per-provider concurrency and rate limits, retries with jittered backoff on
//! retryable errors only, a circuit breaker that stops hammering a provider
//! that is down, fallback to the next provider on a retryable failure, and the
//! price table that turns a call into a cost.
//!
//! Adapters know none of this: they classify their errors, the router decides.
//!
//! Paid calls: before every submission the router asks the caller's
//! [`CallGuard`] (the engine checks its lease on the generation, and records
//! its intent before a call that is not idempotent); a guard that says no
//! stops the work without a call. An unknown outcome
//! ([`FailureKind::OutcomeUnknown`]) is retried only on an idempotent
//! provider; otherwise it ends the submission with `outcome_unknown`, and
//! nothing falls back to another provider (the first may have done the work).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use futures::future::BoxFuture;

use crate::providers::{
    Capability, FailureKind, Output, Polled, Provider, ProviderError, RemoteJob, Submitted, Task,
};

/// What a call costs on one provider.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Price {
    /// Per call, in millionths of the currency unit.
    pub per_call_micros: u64,
    /// Per 1,000 metered units (tokens), in millionths.
    pub per_1k_units_micros: u64,
}

impl Price {
    /// The cost of a call that metered `units`.
    pub fn cost(&self, units: u64) -> u64 {
        self.per_call_micros.saturating_add(units.saturating_mul(self.per_1k_units_micros) / 1000)
    }
}

/// Limits and prices of one provider.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProviderLimits {
    /// Calls in flight at once.
    pub concurrency: usize,
    /// Calls started per second (a token bucket of one second's burst).
    pub rate_per_s: f64,
    /// What a call costs.
    pub price: Price,
}

impl Default for ProviderLimits {
    fn default() -> Self {
        ProviderLimits { concurrency: 16, rate_per_s: 1000.0, price: Price::default() }
    }
}

/// Retry and breaker policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Tries per provider before falling back (1 = no retry).
    pub tries_per_provider: u32,
    /// The first backoff; doubles per try, with full jitter.
    pub base_backoff: Duration,
    /// The longest backoff (and the longest `Retry-After` honoured).
    pub max_backoff: Duration,
    /// Consecutive failures that open a provider's breaker.
    pub breaker_threshold: u32,
    /// How long an open breaker refuses calls before one trial call.
    pub breaker_cooldown: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            tries_per_provider: 3,
            base_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Default)]
struct Breaker {
    consecutive_failures: u32,
    open_until: Option<Instant>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// One provider with its limits and state.
pub struct Slot {
    provider: Arc<dyn Provider>,
    limits: ProviderLimits,
    in_flight: Semaphore,
    bucket: Mutex<Bucket>,
    breaker: Mutex<Breaker>,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot").field("provider", &self.provider.name()).field("limits", &self.limits).finish()
    }
}

impl Slot {
    /// The adapter.
    pub fn provider(&self) -> &Arc<dyn Provider> {
        &self.provider
    }

    /// Whether the breaker lets a call through now.
    fn breaker_allows(&self) -> bool {
        let breaker = self.breaker.lock().unwrap_or_else(|e| e.into_inner());
        breaker.open_until.is_none_or(|until| Instant::now() >= until)
    }

    fn record(&self, outcome: Result<(), &ProviderError>, policy: &RetryPolicy) {
        let mut breaker = self.breaker.lock().unwrap_or_else(|e| e.into_inner());
        match outcome {
            Ok(()) => *breaker = Breaker::default(),
            // Only a provider that is failing, not a request that is wrong,
            // counts towards opening the breaker.
            Err(error) if error.is_retryable() || error.kind == FailureKind::OutcomeUnknown => {
                breaker.consecutive_failures += 1;
                if breaker.consecutive_failures >= policy.breaker_threshold {
                    breaker.open_until = Some(Instant::now() + policy.breaker_cooldown);
                    tracing::warn!(
                        provider = self.provider.name(),
                        "circuit breaker open: the provider keeps failing"
                    );
                }
            }
            Err(_) => {}
        }
    }

    /// Waits for a rate-limit token.
    async fn take_token(&self) {
        loop {
            let wait = {
                let mut bucket = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                let rate = self.limits.rate_per_s.max(0.001);
                bucket.tokens =
                    (bucket.tokens + now.duration_since(bucket.last).as_secs_f64() * rate).min(rate.max(1.0));
                bucket.last = now;
                if bucket.tokens >= 1.0 {
                    bucket.tokens -= 1.0;
                    return;
                }
                Duration::from_secs_f64((1.0 - bucket.tokens) / rate)
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Runs one provider call within the concurrency and rate limits.
    async fn call<T>(
        &self,
        policy: &RetryPolicy,
        call: impl Future<Output = Result<T, ProviderError>>,
    ) -> Result<T, ProviderError> {
        let _permit = self.in_flight.acquire().await.map_err(|_| {
            ProviderError::retryable(self.provider.name(), "the agent is shutting down", None)
        })?;
        self.take_token().await;
        let result = call.await;
        self.record(result.as_ref().map(|_| ()), policy);
        result
    }
}

/// Asked before every provider submission.
pub trait CallGuard: Send + Sync {
    /// May `provider` be called now? `idempotent` says whether the call may be
    /// repeated harmlessly. An error stops the work without calling.
    fn before_call<'a>(&'a self, provider: &'a str, idempotent: bool) -> BoxFuture<'a, Result<(), String>>;
}

/// A guard that allows every call (tests, benchmarks, callers without leases).
#[derive(Debug, Clone, Copy, Default)]
pub struct Unguarded;

impl CallGuard for Unguarded {
    fn before_call<'a>(&'a self, _provider: &'a str, _idempotent: bool) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}

/// Why routed work failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct RouteError {
    /// What happened, in words a person understands.
    pub message: String,
    /// Whether trying the whole step later may help.
    pub retryable: bool,
    /// A call that is not idempotent may have been done: not to be repeated
    /// without a person's decision.
    pub outcome_unknown: bool,
    /// The guard stopped the work before a call (e.g. the lease was lost).
    pub stopped: bool,
}

impl RouteError {
    fn new(message: impl Into<String>, retryable: bool) -> Self {
        RouteError { message: message.into(), retryable, outcome_unknown: false, stopped: false }
    }
}

/// A submission's result with what the engine records about it.
#[derive(Debug, Clone)]
pub struct Routed<T> {
    /// The provider that did it.
    pub provider: String,
    /// Its model.
    pub model: String,
    /// Which try succeeded (1 = the first, counted across fallbacks).
    pub tries: u32,
    /// The result.
    pub value: T,
}

/// The providers of an agent and how work is routed between them.
#[derive(Debug)]
pub struct Router {
    slots: BTreeMap<String, Arc<Slot>>,
    routes: BTreeMap<Capability, Vec<String>>,
    policy: RetryPolicy,
}

fn jittered(policy: &RetryPolicy, try_number: u32, retry_after: Option<Duration>) -> Duration {
    let ceiling =
        policy.base_backoff.saturating_mul(2u32.saturating_pow(try_number.min(16))).min(policy.max_backoff);
    let jitter = Duration::from_secs_f64(
        ceiling.as_secs_f64() * f64::from(uuid::Uuid::new_v4().as_bytes()[0]) / 255.0,
    );
    match retry_after {
        Some(wait) => wait.min(policy.max_backoff).max(jitter),
        None => jitter,
    }
}

impl Router {
    /// A router over `providers` (each with its limits). `routes` lists, per
    /// capability, the providers to try in order; a capability without a route
    /// uses every provider offering it, in the order given.
    pub fn new(
        providers: Vec<(Arc<dyn Provider>, ProviderLimits)>,
        routes: BTreeMap<Capability, Vec<String>>,
        policy: RetryPolicy,
    ) -> Self {
        let mut order = Vec::new();
        let slots = providers
            .into_iter()
            .map(|(provider, limits)| {
                let name = provider.name().to_owned();
                order.push(name.clone());
                let slot = Slot {
                    in_flight: Semaphore::new(limits.concurrency.max(1)),
                    bucket: Mutex::new(Bucket { tokens: limits.rate_per_s.max(1.0), last: Instant::now() }),
                    breaker: Mutex::new(Breaker::default()),
                    provider,
                    limits,
                };
                (name, Arc::new(slot))
            })
            .collect::<BTreeMap<_, _>>();
        let mut all_routes = BTreeMap::new();
        for capability in [
            Capability::Generate,
            Capability::Edit,
            Capability::Enhance,
            Capability::Analyse,
            Capability::Video,
        ] {
            let route = routes.get(&capability).cloned().unwrap_or_else(|| {
                order
                    .iter()
                    .filter(|name| slots[*name].provider.capabilities().contains(&capability))
                    .cloned()
                    .collect()
            });
            all_routes.insert(capability, route);
        }
        Router { slots, routes: all_routes, policy }
    }

    /// The provider named `name`.
    pub fn slot(&self, name: &str) -> Option<&Arc<Slot>> {
        self.slots.get(name)
    }

    /// The price of one call on `provider` that metered `units`.
    pub fn cost(&self, provider: &str, units: u64) -> u64 {
        self.slots.get(provider).map(|s| s.limits.price.cost(units)).unwrap_or(0)
    }

    /// Submits `task` to the first provider of its capability's route that
    /// accepts it: retries a retryable failure with backoff, falls back to the
    /// next provider after the last try (or at once when its breaker is open),
    /// and stops at a refusal or an invalid request.
    pub async fn submit(&self, task: &Task, guard: &dyn CallGuard) -> Result<Routed<Submitted>, RouteError> {
        let route = self.routes.get(&task.capability).cloned().unwrap_or_default();
        let mut failures: Vec<String> = Vec::new();
        let mut tries = 0;
        for name in &route {
            let Some(slot) = self.slots.get(name) else {
                failures.push(format!("{name}: not configured"));
                continue;
            };
            if !slot.provider.capabilities().contains(&task.capability) {
                continue;
            }
            for try_number in 0..self.policy.tries_per_provider.max(1) {
                if !slot.breaker_allows() {
                    failures.push(format!("{name}: circuit breaker open after repeated failures"));
                    break;
                }
                let idempotent = slot.provider.idempotent(task.capability);
                if let Err(reason) = guard.before_call(name, idempotent).await {
                    return Err(RouteError { stopped: true, ..RouteError::new(reason, true) });
                }
                tries += 1;
                match slot.call(&self.policy, slot.provider.submit(task)).await {
                    Ok(value) => {
                        return Ok(Routed {
                            provider: name.clone(),
                            model: slot.provider.model(task.capability),
                            tries,
                            value,
                        });
                    }
                    Err(error) => match error.kind {
                        FailureKind::OutcomeUnknown if !idempotent => {
                            return Err(RouteError {
                                outcome_unknown: true,
                                ..RouteError::new(
                                    format!(
                                        "outcome unknown: {name} may have received the request and done the work ({}); \
                                         it is not sent again automatically — retry the generation to run it again",
                                        error.message
                                    ),
                                    false,
                                )
                            });
                        }
                        FailureKind::Retryable { retry_after } => {
                            tracing::info!(provider = %name, %error, try_number = try_number + 1, "retryable provider failure");
                            failures.push(error.to_string());
                            if try_number + 1 < self.policy.tries_per_provider {
                                tokio::time::sleep(jittered(&self.policy, try_number, retry_after)).await;
                            }
                        }
                        FailureKind::OutcomeUnknown => {
                            tracing::info!(provider = %name, %error, try_number = try_number + 1, "unknown outcome of an idempotent call; retrying");
                            failures.push(error.to_string());
                            if try_number + 1 < self.policy.tries_per_provider {
                                tokio::time::sleep(jittered(&self.policy, try_number, None)).await;
                            }
                        }
                        FailureKind::Refused => {
                            return Err(RouteError::new(error.message, false));
                        }
                        FailureKind::Invalid => {
                            return Err(RouteError::new(error.to_string(), false));
                        }
                    },
                }
            }
        }
        if route.is_empty() {
            return Err(RouteError::new(
                format!("no configured provider can {}; add one to the routes", task.capability),
                false,
            ));
        }
        Err(RouteError::new(
            format!(
                "every provider for {} failed ({}); it will be tried again",
                task.capability,
                failures.join("; ")
            ),
            true,
        ))
    }

    /// Polls a job on `provider`, retrying temporary failures with backoff.
    pub async fn poll(&self, provider: &str, job: &RemoteJob) -> Result<Polled, RouteError> {
        let slot = self.slots.get(provider).ok_or_else(|| {
            RouteError::new(
                format!("provider {provider} of a submitted job is no longer configured; configure it to finish the job"),
                true,
            )
        })?;
        let mut try_number = 0;
        loop {
            match slot.call(&self.policy, slot.provider.poll(job)).await {
                Ok(polled) => return Ok(polled),
                // A poll only reads: an unknown outcome is asked again.
                Err(error) => match error.kind {
                    FailureKind::Retryable { retry_after }
                        if try_number + 1 < self.policy.tries_per_provider.max(3) =>
                    {
                        tokio::time::sleep(jittered(&self.policy, try_number, retry_after)).await;
                        try_number += 1;
                    }
                    FailureKind::OutcomeUnknown if try_number + 1 < self.policy.tries_per_provider.max(3) => {
                        tokio::time::sleep(jittered(&self.policy, try_number, None)).await;
                        try_number += 1;
                    }
                    FailureKind::Retryable { .. } | FailureKind::OutcomeUnknown => {
                        return Err(RouteError::new(error.to_string(), true));
                    }
                    FailureKind::Refused => {
                        return Err(RouteError::new(error.message, false));
                    }
                    FailureKind::Invalid => {
                        return Err(RouteError::new(error.to_string(), false));
                    }
                },
            }
        }
    }

    /// Cancels a job on `provider`, where the provider allows it.
    pub async fn cancel(&self, provider: &str, job: &RemoteJob) -> Result<(), ProviderError> {
        match self.slots.get(provider) {
            Some(slot) => slot.provider.cancel(job).await,
            None => Ok(()),
        }
    }

    /// Submits and, for asynchronous providers, polls until done: for callers
    /// that do not persist the job (tests, benchmarks).
    pub async fn run(&self, task: &Task, poll_every: Duration) -> Result<Routed<Output>, RouteError> {
        let routed = self.submit(task, &Unguarded).await?;
        let output = match routed.value {
            Submitted::Done(output) => output,
            Submitted::Pending(job) => loop {
                match self.poll(&routed.provider, &job).await? {
                    Polled::Done(output) => break output,
                    Polled::Pending => tokio::time::sleep(poll_every).await,
                }
            },
        };
        Ok(Routed {
            provider: routed.provider,
            model: output.model.clone(),
            tries: routed.tries,
            value: output,
        })
    }
}
