//! The metrics address of roles without a gateway (`gps projector`, `gps
//! agent`): `/metrics` on `metrics_addr` (`GPS_METRICS_ADDR`), with the
//! gateway's access rule (`gps_gateway::metrics`). `gps up` and `gps gateway`
//! serve the same metrics on the gateway's port.

use anyhow::Context;

use crate::config::Settings;

/// Starts serving `/metrics` on the configured address, if there is one.
pub(crate) async fn serve(settings: &Settings) -> anyhow::Result<()> {
    let Some(addr) = settings.metrics_addr else { return Ok(()) };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the metrics address {addr}"))?;
    let token = settings.metrics_token.as_ref().map(|token| token.expose().to_owned());
    let app =
        gps_gateway::metrics::router(token).into_make_service_with_connect_info::<std::net::SocketAddr>();
    tracing::info!(%addr, "metrics served on /metrics");
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "the metrics server stopped");
        }
    });
    Ok(())
}
