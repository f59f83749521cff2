//! `gps import FILE [--images ZIP] --brand B`: a catalog import from the
//! command line, through the gateway's HTTP API exactly as any client would
//! (`POST /api/v1/brands/{brand}/imports`, then its status until it ends).
//!
//! Credentials: an API key (`--api-key` or `GPS_API_KEY`) or a signed-in
//! session (`--session` / `GPS_SESSION`, the session cookie's value, with
//! `--csrf-token` / `GPS_CSRF_TOKEN`). On a terminal the progress is a bar
//! redrawn in place; otherwise one plain line per change (logs, CI). When
//! rows failed, the error report is saved as CSV and the command exits with
//! status 2, naming the file; any other failure exits with status 1.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;

/// The arguments of `gps import`.
#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// The catalog: CSV with a header row (sku, name, category, attributes,
    /// images) or JSON Lines.
    file: PathBuf,
    /// A ZIP of the image files the catalog names.
    #[arg(long)]
    images: Option<PathBuf>,
    /// The brand to import into.
    #[arg(long)]
    brand: String,
    /// The gateway's base URL (default: http://<http_addr> from the settings).
    #[arg(long, env = "GPS_GATEWAY_URL")]
    gateway: Option<String>,
    /// An API key of the brand.
    #[arg(long, env = "GPS_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// A session cookie value (from signing in), instead of an API key.
    #[arg(long, env = "GPS_SESSION", hide_env_values = true)]
    session: Option<String>,
    /// The session's CSRF token (returned by sign-in).
    #[arg(long, env = "GPS_CSRF_TOKEN", hide_env_values = true)]
    csrf_token: Option<String>,
    /// Where to save the error report (default: FILE with `.errors.csv`).
    #[arg(long)]
    report: Option<PathBuf>,
}

/// How a finished import ended, for the exit status.
pub(crate) enum Finished {
    /// Every row imported.
    Clean,
    /// Some rows failed; the report is at this path.
    RowsFailed(u64, PathBuf),
}

struct Client {
    http: reqwest::Client,
    base: String,
    auth: Vec<(&'static str, String)>,
}

impl Client {
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        for (name, value) in &self.auth {
            request = request.header(*name, value);
        }
        request
    }
}

/// The problem document's detail (or the body) of a failed response.
async fn problem(response: reqwest::Response) -> String {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    let detail = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|problem| problem.get("detail").and_then(|d| d.as_str()).map(str::to_owned))
        .unwrap_or(body);
    format!("HTTP {status}: {detail}")
}

fn file_part(boundary: &str, name: &str, path: &Path, content_type: &str, bytes: &[u8], body: &mut Vec<u8>) {
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or(name).replace(['"', '\r', '\n'], "_");
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{file_name}\"\r\n\
             Content-Type: {content_type}\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(b"\r\n");
}

/// Runs the import; `default_gateway` is the settings' HTTP address.
pub(crate) async fn run(args: ImportArgs, default_gateway: String) -> anyhow::Result<Finished> {
    let base = args.gateway.clone().unwrap_or(default_gateway).trim_end_matches('/').to_owned();
    let auth = match (&args.api_key, &args.session) {
        (Some(key), _) => vec![("authorization", format!("Bearer {key}"))],
        (None, Some(session)) => {
            let csrf = args.csrf_token.clone().context(
                "a session needs its CSRF token: give --csrf-token or GPS_CSRF_TOKEN (sign-in returns it)",
            )?;
            vec![("cookie", format!("gps_session={session}")), ("x-csrf-token", csrf)]
        }
        (None, None) => bail!(
            "no credentials: give an API key (--api-key or GPS_API_KEY) or a session (--session and \
             --csrf-token, or GPS_SESSION and GPS_CSRF_TOKEN)"
        ),
    };
    let client = Client { http: reqwest::Client::new(), base, auth };

    let catalog = std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let boundary = format!("gps-import-{}", uuid::Uuid::new_v4().simple());
    let mut body = Vec::with_capacity(catalog.len() + 1024);
    file_part(&boundary, "catalog", &args.file, "application/octet-stream", &catalog, &mut body);
    if let Some(images) = &args.images {
        let zip = std::fs::read(images).with_context(|| format!("reading {}", images.display()))?;
        file_part(&boundary, "images", images, "application/zip", &zip, &mut body);
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());

    let response = client
        .request(reqwest::Method::POST, &format!("/api/v1/brands/{}/imports", args.brand))
        .header("content-type", format!("multipart/form-data; boundary={boundary}"))
        .body(body)
        .send()
        .await
        .with_context(|| format!("sending the import to {}", client.base))?;
    if response.status() != reqwest::StatusCode::ACCEPTED {
        bail!("the import was refused: {}", problem(response).await);
    }
    let accepted: serde_json::Value = response.json().await.context("reading the import's answer")?;
    let status_url = accepted["status_url"].as_str().context("the answer has no status_url")?.to_owned();
    let errors_url = accepted["errors_url"].as_str().context("the answer has no errors_url")?.to_owned();
    let import_id = accepted["import_id"].as_str().unwrap_or_default().to_owned();
    let sequence = accepted["stream_sequence"].as_u64().unwrap_or(0);

    let mut progress = Progress::new(std::io::stderr().is_terminal(), import_id.clone());
    let last = loop {
        let response = client
            .request(reqwest::Method::GET, &format!("{status_url}?min_sequence={sequence}&wait_ms=10000"))
            .send()
            .await
            .context("reading the import's progress")?;
        if response.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE {
            // The read model has not caught up with the start yet.
            tokio::time::sleep(Duration::from_millis(300)).await;
            continue;
        }
        if !response.status().is_success() {
            bail!("reading the import's progress: {}", problem(response).await);
        }
        let view: serde_json::Value = response.json().await.context("reading the import's progress")?;
        progress.show(&view);
        if view["status"].as_str() != Some("running") {
            break view;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    progress.finish();
    let failed = last["failed"].as_u64().unwrap_or(0);
    println!(
        "import {import_id}: {} — {} created, {} updated, {} unchanged, {failed} failed of {} rows",
        last["status"].as_str().unwrap_or("?"),
        last["created"],
        last["updated"],
        last["unchanged"],
        last["total_rows"]
    );
    if last["status"].as_str() == Some("failed") {
        bail!("the import stopped: {}", last["failure_reason"].as_str().unwrap_or("no reason given"));
    }
    if failed == 0 {
        return Ok(Finished::Clean);
    }
    let response = client
        .request(reqwest::Method::GET, &errors_url)
        .send()
        .await
        .context("downloading the error report")?;
    if !response.status().is_success() {
        bail!("downloading the error report: {}", problem(response).await);
    }
    let report = response.bytes().await.context("downloading the error report")?;
    let path = args.report.clone().unwrap_or_else(|| {
        let mut name = args.file.clone().into_os_string();
        name.push(".errors.csv");
        PathBuf::from(name)
    });
    std::fs::write(&path, &report)
        .with_context(|| format!("saving the error report to {}", path.display()))?;
    Ok(Finished::RowsFailed(failed, path))
}

/// Progress on stderr: a bar redrawn in place on a terminal, plain lines otherwise.
struct Progress {
    terminal: bool,
    import_id: String,
    shown: Option<(i64, i64)>,
}

impl Progress {
    fn new(terminal: bool, import_id: String) -> Self {
        Progress { terminal, import_id, shown: None }
    }

    fn show(&mut self, view: &serde_json::Value) {
        let total = view["total_rows"].as_i64().unwrap_or(0).max(1);
        let through = view["through_row"].as_i64().unwrap_or(0);
        let failed = view["failed"].as_i64().unwrap_or(0);
        if self.shown == Some((through, failed)) {
            return;
        }
        self.shown = Some((through, failed));
        let mut err = std::io::stderr();
        if self.terminal {
            const WIDTH: i64 = 30;
            let filled = (through * WIDTH / total) as usize;
            let bar = format!("{}{}", "#".repeat(filled), "-".repeat(WIDTH as usize - filled));
            let _ = write!(err, "\r[{bar}] {through}/{total} rows, {failed} failed ");
            let _ = err.flush();
        } else {
            let _ = writeln!(err, "import {}: {through}/{total} rows, {failed} failed", self.import_id);
        }
    }

    fn finish(&self) {
        if self.terminal {
            let _ = writeln!(std::io::stderr());
        }
    }
}
