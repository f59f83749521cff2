//! The Prometheus metrics of every role, in one registry per process.
//!
//! Every family GPS exports is declared here, in one place, so an operator
//! (and `docs/operations.md`) finds them all; the crates that do the work
//! record into them (`metrics().http_requests…`). The gateway serves them on
//! `/metrics`, the other roles on their metrics address; in `gps up` one
//! scrape shows every role, since they share the process.
//!
//! Labels stay bounded: routes are the router's templates (never raw paths),
//! aggregates, projections, providers and steps are names from code or
//! configuration, never ids.

use std::sync::{LazyLock, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// An HTTP request's route template, method and status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// e.g. `GET`.
    pub method: String,
    /// The router's template, e.g. `/api/v1/brands/{brand}/products`.
    pub route: String,
    /// The answer's status code.
    pub status: u16,
}

/// An HTTP route template and method.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// e.g. `GET`.
    pub method: String,
    /// The router's template.
    pub route: String,
}

/// A command on a kind of aggregate and how it ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabels {
    /// The aggregate kind, e.g. `product`.
    pub aggregate: String,
    /// `applied`, `already_applied`, `unchanged`, `rejected` or `failed`.
    pub outcome: String,
}

/// A kind of aggregate.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AggregateLabels {
    /// The aggregate kind, e.g. `generation`.
    pub aggregate: String,
}

/// A projection (read model).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProjectionLabels {
    /// Its name, e.g. `catalog`.
    pub projection: String,
}

/// A workflow step run by a provider, and how it ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    /// The provider adapter, e.g. `fal`.
    pub provider: String,
    /// The step, e.g. `generate`.
    pub step: String,
    /// `completed`, `failed` or `outcome_unknown`.
    pub outcome: String,
}

/// A provider adapter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    /// The provider adapter, e.g. `fal`.
    pub provider: String,
}

/// How a unit of work ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// e.g. `completed`, `failed`, `cancelled`.
    pub outcome: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn seconds() -> Histogram {
    // 1 ms to about 65 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// Every metric family of GPS.
pub struct Metrics {
    /// `gps_http_requests_total`: HTTP requests by method, route and status.
    pub http_requests: Family<HttpLabels, Counter>,
    /// `gps_http_request_duration_seconds`: time to the answer's head.
    pub http_duration: Histograms<RouteLabels>,
    /// `gps_sse_streams`: event streams (SSE) open now.
    pub sse_streams: Gauge,
    /// `gps_commands_total`: commands by aggregate kind and outcome.
    pub commands: Family<CommandLabels, Counter>,
    /// `gps_events_appended_total`: events written to the log.
    pub events_appended: Family<AggregateLabels, Counter>,
    /// `gps_append_conflicts_total`: appends refused because another writer came first.
    pub append_conflicts: Family<AggregateLabels, Counter>,
    /// `gps_projection_events_applied_total`: events applied per projection.
    pub projection_applied: Family<ProjectionLabels, Counter>,
    /// `gps_projection_checkpoint`: the stream sequence each projection has applied up to.
    pub projection_checkpoint: Family<ProjectionLabels, Gauge>,
    /// `gps_projection_lag_events`: how many stream sequences each projection is behind the log's end.
    pub projection_lag: Family<ProjectionLabels, Gauge>,
    /// `gps_projection_dead_letters_total`: events a projection set aside.
    pub projection_dead_letters: Family<ProjectionLabels, Counter>,
    /// `gps_steps_total`: workflow steps by provider, step and outcome.
    pub steps: Family<StepLabels, Counter>,
    /// `gps_step_duration_seconds`: how long completed steps took, by provider.
    pub step_duration: Histograms<ProviderLabels>,
    /// `gps_step_cost_micros_total`: what completed steps cost, by provider.
    pub step_cost_micros: Family<ProviderLabels, Counter>,
    /// `gps_generations_finished_total`: generations by how they ended.
    pub generations_finished: Family<OutcomeLabels, Counter>,
    /// `gps_delivery_attempts_total`: export delivery attempts by outcome.
    pub delivery_attempts: Family<OutcomeLabels, Counter>,
    registry: Mutex<Registry>,
}

impl Metrics {
    fn new() -> Self {
        let metrics = Metrics {
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(seconds),
            sse_streams: Gauge::default(),
            commands: Family::default(),
            events_appended: Family::default(),
            append_conflicts: Family::default(),
            projection_applied: Family::default(),
            projection_checkpoint: Family::default(),
            projection_lag: Family::default(),
            projection_dead_letters: Family::default(),
            steps: Family::default(),
            step_duration: Family::new_with_constructor(seconds),
            step_cost_micros: Family::default(),
            generations_finished: Family::default(),
            delivery_attempts: Family::default(),
            registry: Mutex::new(Registry::with_prefix("gps")),
        };
        {
            let mut registry = metrics.registry.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let r = &mut *registry;
            r.register(
                "http_requests",
                "HTTP requests by method, route and status",
                metrics.http_requests.clone(),
            );
            r.register(
                "http_request_duration_seconds",
                "Time from an HTTP request to its answer's head",
                metrics.http_duration.clone(),
            );
            r.register("sse_streams", "Event streams (SSE) open now", metrics.sse_streams.clone());
            r.register("commands", "Commands by aggregate kind and outcome", metrics.commands.clone());
            r.register("events_appended", "Events written to the log", metrics.events_appended.clone());
            r.register(
                "append_conflicts",
                "Appends refused because another writer of the aggregate came first",
                metrics.append_conflicts.clone(),
            );
            r.register(
                "projection_events_applied",
                "Events applied per projection",
                metrics.projection_applied.clone(),
            );
            r.register(
                "projection_checkpoint",
                "Stream sequence each projection has applied up to",
                metrics.projection_checkpoint.clone(),
            );
            r.register(
                "projection_lag_events",
                "Stream sequences each projection is behind the log's end",
                metrics.projection_lag.clone(),
            );
            r.register(
                "projection_dead_letters",
                "Events a projection set aside as dead letters",
                metrics.projection_dead_letters.clone(),
            );
            r.register("steps", "Workflow steps by provider, step and outcome", metrics.steps.clone());
            r.register(
                "step_duration_seconds",
                "How long completed workflow steps took, by provider",
                metrics.step_duration.clone(),
            );
            r.register(
                "step_cost_micros",
                "What completed workflow steps cost (millionths of the currency), by provider",
                metrics.step_cost_micros.clone(),
            );
            r.register(
                "generations_finished",
                "Generations by how they ended",
                metrics.generations_finished.clone(),
            );
            r.register(
                "delivery_attempts",
                "Export delivery attempts by outcome",
                metrics.delivery_attempts.clone(),
            );
        }
        metrics
    }

    /// Every family in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let registry = self.registry.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }

    /// Counts one command's outcome.
    pub fn command(&self, aggregate: &str, outcome: &str) {
        self.commands
            .get_or_create(&CommandLabels { aggregate: aggregate.to_owned(), outcome: outcome.to_owned() })
            .inc();
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// This process's metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

/// The media type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_values_are_rendered_with_their_labels() {
        let metrics = Metrics::new();
        metrics.command("product", "applied");
        metrics.command("product", "applied");
        metrics
            .http_duration
            .get_or_create(&RouteLabels { method: "GET".into(), route: "/healthz".into() })
            .observe(0.003);
        let text = metrics.render();
        assert!(text.contains(r#"gps_commands_total{aggregate="product",outcome="applied"} 2"#), "{text}");
        assert!(
            text.contains(r#"gps_http_request_duration_seconds_count{method="GET",route="/healthz"} 1"#),
            "{text}"
        );
        assert!(text.contains("# TYPE gps_sse_streams gauge\ngps_sse_streams 0"), "{text}");
        assert!(!text.contains("gps_steps_total"), "a labelled family shows once it has a value: {text}");
        assert!(text.ends_with("# EOF\n"));
    }
}
