//! `GET /metrics`: every role of the process in the Prometheus text format
//! (`gps_nats::metrics`), served by the gateway on its port and, for roles
//! without one (projector, agent), on their own metrics address ([`router`]).
//!
//! Counts are for the operator, not the public (`/healthz` shows none): a
//! caller on this machine that came through no proxy may read them; anyone
//! else only with `Authorization: Bearer <GPS_METRICS_TOKEN>`.

use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Router, extract::State};
use sha2::Digest;

use crate::ApiError;

/// Whether a caller from `peer` with `headers` may read the metrics.
pub fn allowed(peer: Option<std::net::IpAddr>, headers: &HeaderMap, token: Option<&str>) -> bool {
    // A proxy on this machine makes every caller look local: a forwarded
    // request is never taken as local.
    let local = peer.is_some_and(|ip| ip.to_canonical().is_loopback())
        && !headers.contains_key("x-forwarded-for")
        && !headers.contains_key(header::FORWARDED);
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    let token_matches = match (token, bearer) {
        // Compared as digests, so the time taken says nothing about the token.
        (Some(expected), Some(given)) => {
            sha2::Sha256::digest(expected.as_bytes()) == sha2::Sha256::digest(given.as_bytes())
        }
        _ => false,
    };
    local || token_matches
}

/// The metrics, or a 403 problem saying how to be let in.
pub fn answer(peer: Option<std::net::IpAddr>, headers: &HeaderMap, token: Option<&str>) -> Response {
    if !allowed(peer, headers, token) {
        return ApiError::Forbidden(
            "metrics are for operators: call from this machine, or send Authorization: Bearer <GPS_METRICS_TOKEN>"
                .into(),
        )
        .into_response();
    }
    ([(header::CONTENT_TYPE, gps_nats::metrics::CONTENT_TYPE)], gps_nats::metrics::metrics().render())
        .into_response()
}

/// A router serving only `/metrics`, for a role's own metrics address.
pub fn router(token: Option<String>) -> Router {
    async fn serve(
        State(token): State<Option<String>>,
        peer: crate::auth::Peer,
        headers: HeaderMap,
    ) -> Response {
        answer(peer.0, &headers, token.as_deref())
    }
    Router::new().route("/metrics", get(serve)).with_state(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_callers_without_a_proxy_and_holders_of_the_token_may_read_the_metrics() {
        let loopback = Some(std::net::IpAddr::from([127, 0, 0, 1]));
        let remote = Some(std::net::IpAddr::from([203, 0, 113, 7]));
        let none = HeaderMap::new();
        let mut forwarded = HeaderMap::new();
        forwarded.insert("x-forwarded-for", "198.51.100.1".parse().expect("value"));
        let mut bearer = HeaderMap::new();
        bearer.insert(header::AUTHORIZATION, "Bearer s3cret".parse().expect("value"));
        assert!(allowed(loopback, &none, None));
        assert!(!allowed(loopback, &forwarded, None), "a local proxy forwards the public");
        assert!(!allowed(remote, &none, None));
        assert!(!allowed(remote, &bearer, None), "no token configured: no token admits");
        assert!(allowed(remote, &bearer, Some("s3cret")));
        assert!(!allowed(remote, &bearer, Some("other")));
    }
}
