//! `/metrics` after a small workload: the gateway's HTTP requests, the
//! commands they ran and the projections that applied them are there with
//! their labels, in the Prometheus text format, for a caller on this machine;
//! a forwarded caller without the token gets a 403 problem.

use crate::gateway::TestGateway;
use crate::ingest_support::{brand_with_product, raw_request};

/// The value of the first sample line starting with `series` (name and labels).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find(|line| line.starts_with(series)).and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn the_metrics_show_requests_commands_and_projections_after_a_small_workload() {
    let gateway = TestGateway::start().await;
    let owner = brand_with_product(&gateway, "acme", "ana").await;
    let listed = gateway.as_user(&owner, "GET", "/api/v1/brands/acme/products?min_sequence=1", None).await;
    assert_eq!(listed.status, 200, "{}", listed.body);

    let scraped = raw_request(gateway.port, "GET", "/metrics", &[], b"").await;
    assert_eq!(scraped.status, 200);
    let content_type = scraped
        .headers
        .iter()
        .find(|(name, _)| name == "content-type")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
    let text = String::from_utf8(scraped.body).expect("utf-8");
    for series in [
        r#"gps_http_requests_total{method="POST",route="/api/v1/brands/{brand}/products",status="201"}"#,
        r#"gps_http_requests_total{method="GET",route="/api/v1/brands/{brand}/products",status="200"}"#,
        r#"gps_http_request_duration_seconds_count{method="GET",route="/api/v1/brands/{brand}/products"}"#,
        r#"gps_commands_total{aggregate="product",outcome="applied"}"#,
        r#"gps_events_appended_total{aggregate="product"}"#,
        r#"gps_projection_events_applied_total{projection="catalog"}"#,
    ] {
        let value = sample(&text, series).unwrap_or_else(|| panic!("{series} is missing:\n{text}"));
        assert!(value > 0.0, "{series} is {value}");
    }
    assert!(sample(&text, "gps_sse_streams").is_some(), "{text}");
    assert!(text.ends_with("# EOF\n"));

    // Behind a proxy on this machine, a caller is not local.
    let forwarded =
        raw_request(gateway.port, "GET", "/metrics", &[("X-Forwarded-For", "203.0.113.9")], b"").await;
    assert_eq!(forwarded.status, 403);
    let problem: serde_json::Value = serde_json::from_slice(&forwarded.body).expect("problem json");
    assert!(problem["detail"].as_str().is_some_and(|d| d.contains("GPS_METRICS_TOKEN")), "{problem}");
}
