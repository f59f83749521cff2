//! Catalog imports: `POST /api/v1/brands/{brand}/imports` takes a catalog
//! file (CSV or JSON Lines, part `catalog`) and optionally a ZIP of images
//! (part `images`), and imports it as a background job; `GET …/imports/{id}`
//! shows its progress, `GET …/imports/{id}/errors` its error report (CSV),
//! and `GET …/imports` lists the brand's imports.
//!
//! Where the job's state lives: in the Import aggregate (`gps_domain::import`).
//! Starting, every batch of rows (with its per-row errors) and the end are
//! events like any other change, so progress is a read model of the catalog
//! projection, the brand's live stream announces each batch, and an
//! interrupted job resumes from the last recorded row
//! ([`resume_unfinished`]). The files themselves are stored content-addressed
//! in object storage and named by the start event, so a resumed job reads
//! exactly what was sent.
//!
//! Up front, before anything is stored: the caller may produce in the brand,
//! the body is within its limit, the catalog is a readable CSV / JSON Lines
//! file with the required columns and within the row and image limits, the
//! ZIP's entry names stay inside it and every entry inflates within the
//! limits (zip bombs). Any of these refuses the whole import with a 4xx.
//!
//! Then row by row: the row's values are parsed, every image of the row is
//! fetched (ZIP entry, or URL through `SafeFetcher`) and judged by the image
//! intake, and the row's `ImportProduct` command is decided against the
//! product's current state — all before the first object is stored or
//! command sent. A row that fails anywhere leaves no object and no event; a
//! row that matches its product decides nothing and records nothing. The
//! command id of each row and batch derives from the import and the row, so
//! a resumed job cannot apply anything twice.

use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};

use crate::extract::{Path, Query};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use gps_commands::{CommandError, CommandHandler};
use gps_domain::Aggregate;
use gps_domain::ids::{BrandId, ImportId, ProductId};
use gps_domain::import::{
    CatalogFormat, Import, ImportCommand, ImportRowError, ImportStatus, MAX_ERROR_MESSAGE_CHARS,
    MAX_ERRORS_PER_BATCH,
};
use gps_domain::product::{ImportedImage, Product, ProductCommand};
use gps_domain::values::{AssetRef, Name, Sku, Text};
use gps_nats::CommandMeta;
use gps_projections::queries::{self as read, ImportView, Page};
use gps_storage::content_hash;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::archive::{ArchiveError, CheckedArchive};
use crate::auth::{self, Principal};
use crate::catalog_file::{
    self, CatalogFile, CatalogLimits, CatalogProblem, CatalogRow, ColumnError, ImageSource,
};
use crate::extract::OptionalBody;
use crate::queries::{Paging, found, readable};
use crate::routes::{actions, brand_id, command_meta, execute, parse};
use crate::stream_slots::{Full, Slot, Slots};
use crate::uploads::{check_known_fields, default_image_id, ingest_image, read_form, store_image};
use crate::{ApiError, AppState};

/// The import routes. Axum's default body limit is off: the form reader
/// counts bytes against the import limit itself.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/brands/{brand}/imports", post(start_import).get(list_imports))
        .route("/api/v1/brands/{brand}/imports/{import}", get(get_import))
        .route("/api/v1/brands/{brand}/imports/{import}/errors", get(import_errors))
        .route("/api/v1/brands/{brand}/imports/{import}/cancel", post(cancel_import))
        .layer(DefaultBodyLimit::disable())
}

/// The answer to a started import.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ImportAccepted {
    /// The import's id.
    import_id: String,
    /// `running` (the job goes on in the background).
    status: &'static str,
    /// Data rows in the catalog.
    total_rows: u32,
    /// `csv` or `json_lines`.
    format: String,
    /// The stream sequence of the start; read the import with `min_sequence` set to it.
    stream_sequence: u64,
    /// True when this Idempotency-Key had started this import before (no second job).
    already_applied: bool,
    /// Where to follow the import.
    status_url: String,
    /// Where its error report is.
    errors_url: String,
}

/// An import as `GET …/imports/{import}` shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ImportStatusView {
    #[serde(flatten)]
    import: ImportView,
    /// Where the error report (CSV) is.
    errors_url: String,
}

fn import_url(brand: &str, import: &str) -> String {
    format!("/api/v1/brands/{brand}/imports/{import}")
}

fn catalog_problem(problem: CatalogProblem) -> ApiError {
    match problem {
        CatalogProblem::NotText(message) => ApiError::UnsupportedMediaType(message),
        CatalogProblem::TooLarge(message) => ApiError::too_large("catalog", message),
        CatalogProblem::Unreadable(message) | CatalogProblem::Columns(message) => {
            ApiError::field("catalog", message)
        }
        CatalogProblem::Empty => ApiError::field("catalog", problem.to_string()),
    }
}

fn archive_problem(problem: ArchiveError) -> ApiError {
    let message = format!("images: {problem}; nothing was imported");
    match problem {
        ArchiveError::NotAZip(_) => ApiError::UnsupportedMediaType(message),
        _ => ApiError::Unprocessable(message),
    }
}

/// The import id of a start command: derived from the brand and the command
/// id, so retrying with the same Idempotency-Key addresses the same import.
pub fn import_id_of(brand: &BrandId, command_id: &str) -> ImportId {
    let digest = Sha256::digest(format!("{brand}\n{command_id}").as_bytes());
    ImportId::parse(format!("imp-{}", &hex::encode(digest)[..24])).expect("a valid import id")
}

#[utoipa::path(post, path = "/api/v1/brands/{brand}/imports", tag = "imports",
    params(("brand" = String, Path, description = "The brand id")),
    request_body(content_type = "multipart/form-data", description = "Parts: `catalog` (CSV with a header row, or JSON Lines; columns sku, name, category, attributes, images), optional `images` (a ZIP of the image files the catalog names), optional `format` (csv or jsonl; default from the file name or content). Image references are `http(s)` URLs or paths in the ZIP, optionally `view=` prefixed (`back=dr-1/back.jpg`); several in one CSV cell are separated by `|`. Re-importing updates products by SKU."),
    responses(
        (status = 202, description = "The import runs in the background; `Location` is its status", body = ImportAccepted),
        (status = 400, description = "The catalog is unreadable or lacks a required column; `field` names the part", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Role does not allow it", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body, the catalog, its rows or its images are over a limit", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 415, description = "The catalog is not a text file, or `images` is not a ZIP", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "The images ZIP is refused: an entry leaves the archive (`../`), too many entries, or an entry inflates past the limit (ZIP bomb)", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("session" = []), ("api_key" = [])))]
pub(crate) async fn start_import(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path(brand): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let brand = brand_id(&brand)?;
    auth::authorize(&state, &principal, &brand, actions::START_IMPORT).await?;
    let settings = state.media.settings().imports.clone();
    // Bounded before the body is read: this gateway's own runners, then the
    // brand's running imports anywhere (the read model may lag a start by
    // moments; this gateway's count covers its own).
    let slot = state.imports.take(&brand)?;
    let running_anywhere =
        read::running_imports(&state.db).await?.iter().filter(|(of, _)| of == brand.as_str()).count();
    if running_anywhere >= settings.max_running_per_brand {
        return Err(too_many_imports(format!(
            "brand {brand} already runs {running_anywhere} imports, the most at once; wait for one to finish or cancel one"
        )));
    }
    let form = read_form(&headers, request, settings.max_body_bytes, &["catalog", "images"]).await?;
    check_known_fields(&form, &["catalog", "images"], &["format"])?;
    let catalog_part = form.file("catalog").ok_or_else(|| {
        ApiError::field("catalog", "send the catalog (CSV or JSON Lines) as a multipart part named `catalog`")
    })?;
    if catalog_part.bytes.len() as u64 > settings.max_catalog_bytes {
        return Err(ApiError::too_large(
            "catalog",
            format!(
                "the catalog file is larger than {} bytes, the limit; split it into several imports",
                settings.max_catalog_bytes
            ),
        ));
    }
    let format = catalog_file::detect_format(
        form.field("format"),
        catalog_part.file_name.as_deref(),
        &catalog_part.bytes,
    )
    .map_err(catalog_problem)?;
    let limits = CatalogLimits { max_rows: settings.max_rows, max_images: settings.max_images };
    let catalog_bytes = catalog_part.bytes.clone();
    let parsed = catalog_bytes.clone();
    let catalog = tokio::task::spawn_blocking(move || catalog_file::read(&parsed, format, limits))
        .await
        .map_err(|error| ApiError::Internal(format!("catalog reading task: {error}")))?
        .map_err(catalog_problem)?;
    let archive = match form.file("images") {
        None => None,
        Some(part) => {
            let bytes = part.bytes.clone();
            let archive_limits = settings.archive;
            Some(
                tokio::task::spawn_blocking(move || CheckedArchive::check(bytes, archive_limits))
                    .await
                    .map_err(|error| ApiError::Internal(format!("archive check task: {error}")))?
                    .map_err(archive_problem)?,
            )
        }
    };

    // Everything whole-file has passed: store the files, then start.
    let meta = command_meta(&principal, &headers)?;
    let import_id = import_id_of(&brand, &meta.command_id);
    let catalog_asset = store_file(&state, &brand, &catalog_bytes, media_type(format)).await?;
    let archive_asset = match &archive {
        Some(archive) => Some(store_file(&state, &brand, archive.bytes(), "application/zip").await?),
        None => None,
    };
    let file_name = catalog_part.file_name.as_deref().and_then(|name| Name::parse(name).ok());
    let total_rows = u32::try_from(catalog.rows.len()).unwrap_or(u32::MAX);
    let command = ImportCommand::StartImport {
        import_id: import_id.clone(),
        brand_id: brand.clone(),
        format,
        file_name,
        catalog: catalog_asset,
        images_archive: archive_asset,
        total_rows,
    };
    let address = CommandHandler::address::<Import>(&brand, import_id.as_str())?;
    let outcome = state.commands.execute::<Import>(&address, &meta, &command).await?;
    if !outcome.already_applied {
        let job = ImportJob {
            state: state.clone(),
            brand: brand.clone(),
            import_id: import_id.clone(),
            meta: meta.clone(),
            catalog,
            archive,
            _slot: slot,
        };
        tokio::spawn(job.run());
    } else if outcome.state.status == ImportStatus::Running {
        // The resumer takes a slot of its own.
        drop(slot);
        // A retry of a start whose answer was lost: the first attempt may have
        // appended the start and died before its job ran. Resuming is harmless
        // when the job does run (its runner lock admits one), and without it
        // the import would stay "running" with no runner for good.
        let (state, brand, import_id) = (state.clone(), brand.clone(), import_id.clone());
        tokio::spawn(async move {
            if let Err(error) = resume_one(&state, &brand, &import_id).await {
                tracing::warn!(%brand, %import_id, %error, "a retried import could not be resumed");
            }
        });
    }
    let status_url = import_url(brand.as_str(), import_id.as_str());
    let body = ImportAccepted {
        import_id: import_id.to_string(),
        status: "running",
        total_rows,
        format: tag(format),
        stream_sequence: outcome.stream_sequence,
        already_applied: outcome.already_applied,
        errors_url: format!("{status_url}/errors"),
        status_url: status_url.clone(),
    };
    let mut response = (StatusCode::ACCEPTED, axum::Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(crate::STREAM_SEQUENCE_HEADER, outcome.stream_sequence.into());
    if let Ok(location) = HeaderValue::from_str(&status_url) {
        headers.insert(header::LOCATION, location);
    }
    Ok(response)
}

fn tag(format: CatalogFormat) -> String {
    match format {
        CatalogFormat::Csv => "csv".into(),
        CatalogFormat::JsonLines => "json_lines".into(),
    }
}

fn media_type(format: CatalogFormat) -> &'static str {
    match format {
        CatalogFormat::Csv => "text/csv",
        CatalogFormat::JsonLines => "application/x-ndjson",
    }
}

/// Stores a file of the import under the brand (content-addressed).
async fn store_file(
    state: &AppState,
    brand: &BrandId,
    bytes: &Bytes,
    media_type: &str,
) -> Result<AssetRef, ApiError> {
    let stored = state
        .media
        .store()
        .put(brand, bytes.clone(), media_type)
        .await
        .map_err(|error| ApiError::Unavailable(format!("object storage: {error}")))?;
    Ok(AssetRef {
        hash: stored.hash,
        media_type: media_type.to_owned(),
        bytes: stored.bytes,
        width: None,
        height: None,
    })
}

#[utoipa::path(get, path = "/api/v1/brands/{brand}/imports", tag = "imports",
    params(("brand" = String, Path, description = "The brand id"), Paging),
    responses(
        (status = 200, description = "The brand's imports, newest first", body = Page<ImportView>),
        (status = 400, description = "Invalid request; `field` names what is wrong", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Not yet consistent with min_sequence", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("session" = []), ("api_key" = [])))]
pub(crate) async fn list_imports(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path(brand): Path<String>,
    Query(paging): Query<Paging>,
) -> Result<axum::Json<Page<ImportView>>, ApiError> {
    let brand = readable(&state, &principal, &brand, actions::READ, &headers, &paging, "catalog").await?;
    Ok(axum::Json(read::list_imports(&state.db, brand.as_str(), &paging.page()).await?))
}

#[utoipa::path(get, path = "/api/v1/brands/{brand}/imports/{import}", tag = "imports",
    params(("brand" = String, Path, description = "The brand id"), ("import" = String, Path, description = "The import id"), crate::queries::Consistency),
    responses(
        (status = 200, description = "The import's progress: rows done (created, updated, unchanged), failed and total", body = ImportStatusView),
        (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Not yet consistent with min_sequence", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("session" = []), ("api_key" = [])))]
pub(crate) async fn get_import(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path((brand, import)): Path<(String, String)>,
    Query(paging): Query<Paging>,
) -> Result<axum::Json<ImportStatusView>, ApiError> {
    let brand = readable(&state, &principal, &brand, actions::READ, &headers, &paging, "catalog").await?;
    let view = read::get_import(&state.db, brand.as_str(), &import).await?;
    let axum::Json(import) = found(view, "import", &import)?;
    let errors_url = format!("{}/errors", import_url(brand.as_str(), &import.import_id));
    Ok(axum::Json(ImportStatusView { import, errors_url }))
}

#[utoipa::path(get, path = "/api/v1/brands/{brand}/imports/{import}/errors", tag = "imports",
    params(("brand" = String, Path, description = "The brand id"), ("import" = String, Path, description = "The import id"), Paging),
    responses(
        (status = 200, description = "The error report so far: CSV with the columns row, sku, column, message (one line per problem, in file order)", content_type = "text/csv", body = String),
        (status = 401, description = "Not signed in", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not found (or not visible to you)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Not yet consistent with min_sequence", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("session" = []), ("api_key" = [])))]
pub(crate) async fn import_errors(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path((brand, import)): Path<(String, String)>,
    Query(paging): Query<Paging>,
) -> Result<Response, ApiError> {
    let brand = readable(&state, &principal, &brand, actions::READ, &headers, &paging, "catalog").await?;
    if read::get_import(&state.db, brand.as_str(), &import).await?.is_none() {
        return Err(ApiError::NotFound(format!("import {import} not found")));
    }
    let errors = read::import_errors(&state.db, brand.as_str(), &import).await?;
    let mut report = String::from("row,sku,column,message\r\n");
    for error in errors {
        report.push_str(&format!(
            "{},{},{},{}\r\n",
            error.row_number,
            catalog_file::csv_field(error.sku.as_deref().unwrap_or_default()),
            catalog_file::csv_field(&error.column_name),
            catalog_file::csv_field(&error.message)
        ));
    }
    let disposition = format!("attachment; filename=\"{import}-errors.csv\"");
    let mut response = report.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

// ---------------------------------------------------------------------------
// The job.

/// What happened to one row.
#[derive(Debug)]
enum RowOutcome {
    Created,
    Updated,
    Unchanged,
    Failed(Vec<ColumnError>),
}

/// Rows processed since the last progress event.
#[derive(Debug, Default)]
struct Batch {
    created: u32,
    updated: u32,
    unchanged: u32,
    failed: u32,
    errors: Vec<ImportRowError>,
}

/// The most errors one row reports (a row with 50 broken images says so
/// once per image up to this, then how many more).
const MAX_ERRORS_PER_ROW: usize = 20;

impl Batch {
    fn add(&mut self, row: &CatalogRow, outcome: RowOutcome) {
        match outcome {
            RowOutcome::Created => self.created += 1,
            RowOutcome::Updated => self.updated += 1,
            RowOutcome::Unchanged => self.unchanged += 1,
            RowOutcome::Failed(errors) => {
                self.failed += 1;
                let more = errors.len().saturating_sub(MAX_ERRORS_PER_ROW);
                let sku: Option<String> = row.sku.as_ref().map(|sku| sku.chars().take(200).collect());
                for error in errors.into_iter().take(MAX_ERRORS_PER_ROW) {
                    self.errors.push(ImportRowError {
                        row: row.row,
                        sku: sku.clone(),
                        column: error.column.chars().take(100).collect(),
                        message: error.message.chars().take(MAX_ERROR_MESSAGE_CHARS).collect(),
                    });
                }
                if more > 0 {
                    self.errors.push(ImportRowError {
                        row: row.row,
                        sku,
                        column: "row".into(),
                        message: format!("and {more} more problems in this row"),
                    });
                }
            }
        }
    }

    fn rows(&self) -> u32 {
        self.created + self.updated + self.unchanged + self.failed
    }
}

/// One import running in the background.
struct ImportJob {
    state: AppState,
    brand: BrandId,
    import_id: ImportId,
    /// The start command's metadata: its actor acts for every row, and its id
    /// correlates them.
    meta: CommandMeta,
    catalog: CatalogFile,
    archive: Option<CheckedArchive>,
    /// Held while the job runs.
    _slot: ImportSlot,
}

/// How often the job tries a command whose event log is unavailable.
const ATTEMPTS: u32 = 5;

impl ImportJob {
    async fn run(self) {
        match RunnerLock::take(&self.state, &self.brand, &self.import_id).await {
            Ok(Some(lock)) => self.run_locked(lock).await,
            Ok(None) => {
                tracing::info!(brand = %self.brand, import_id = %self.import_id, "import already running elsewhere")
            }
            Err(error) => tracing::error!(
                brand = %self.brand, import_id = %self.import_id, %error,
                "import not run: the database is unavailable"
            ),
        }
    }

    /// Runs the import while `lock` keeps every other runner out.
    async fn run_locked(self, lock: RunnerLock) {
        let (brand, import_id) = (self.brand.clone(), self.import_id.clone());
        tracing::info!(%brand, %import_id, rows = self.catalog.rows.len(), "import running");
        match self.process().await {
            Ok(()) => tracing::info!(%brand, %import_id, "import finished"),
            Err(error) if !self.still_running().await => {
                // Cancelled (or ended by another runner): nothing to record.
                tracing::info!(%brand, %import_id, %error, "import no longer running; its runner stops");
            }
            Err(error) => {
                tracing::error!(%brand, %import_id, %error, "import stopped");
                let reason = Text::parse(format!(
                    "the import stopped: {error}; rows up to the last reported progress are imported, \
                     start the import again to finish it (rows already imported are not imported twice)"
                ))
                .unwrap_or_else(|_| Text::parse("the import stopped").expect("valid text"));
                let command = ImportCommand::FailImport { reason };
                if let Err(error) = self.execute::<Import>(self.import_id.as_str(), "failed", &command).await
                {
                    tracing::error!(%brand, %import_id, %error, "the import's failure could not be recorded");
                }
            }
        }
        lock.release().await;
    }

    /// Whether the import is still running as the log says (not cancelled).
    async fn still_running(&self) -> bool {
        let Ok(address) = CommandHandler::address::<Import>(&self.brand, self.import_id.as_str()) else {
            return true;
        };
        match self.state.commands.load::<Import>(&address).await {
            Ok(loaded) => loaded.state.status == ImportStatus::Running,
            Err(_) => true,
        }
    }

    /// The metadata of one of the job's commands: a deterministic id (the
    /// brand, the import and the step), the starter as actor.
    fn meta(&self, step: &str) -> CommandMeta {
        let mut meta = CommandMeta::new(
            format!("import:{}:{}:{step}", self.brand, self.import_id),
            self.meta.actor.clone(),
        );
        meta.correlation_id = self.meta.command_id.clone();
        meta.causation_id = self.meta.command_id.clone();
        meta
    }

    async fn execute<A: Aggregate>(
        &self,
        id: &str,
        step: &str,
        command: &A::Command,
    ) -> Result<gps_commands::Outcome<A>, CommandError> {
        let address = CommandHandler::address::<A>(&self.brand, id)?;
        let meta = self.meta(step);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.state.commands.execute::<A>(&address, &meta, command).await {
                Err(CommandError::Unavailable(message)) if attempt < ATTEMPTS => {
                    tracing::warn!(%address, %message, attempt, "event log unavailable; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                }
                other => return other,
            }
        }
    }

    async fn process(&self) -> Result<(), ApiError> {
        let address = CommandHandler::address::<Import>(&self.brand, self.import_id.as_str())?;
        let loaded = self.state.commands.load::<Import>(&address).await?;
        if loaded.state.status != ImportStatus::Running {
            return Ok(());
        }
        let every = self.state.media.settings().imports.progress_every_rows.max(1);
        let total = self.catalog.rows.len();
        let resume_from = loaded.state.through_row as usize;
        let mut batch = Batch::default();
        for (index, row) in self.catalog.rows.iter().enumerate().skip(resume_from) {
            let outcome = self.import_row(row).await?;
            batch.add(row, outcome);
            let last = index + 1 == total;
            if last
                || batch.rows() >= every
                || batch.errors.len() + MAX_ERRORS_PER_ROW + 1 > MAX_ERRORS_PER_BATCH
            {
                let through_row = u32::try_from(index + 1).unwrap_or(u32::MAX);
                let done = std::mem::take(&mut batch);
                let command = ImportCommand::RecordImportProgress {
                    through_row,
                    created: done.created,
                    updated: done.updated,
                    unchanged: done.unchanged,
                    failed: done.failed,
                    errors: done.errors,
                };
                self.execute::<Import>(self.import_id.as_str(), &format!("through:{through_row}"), &command)
                    .await?;
            }
        }
        self.execute::<Import>(self.import_id.as_str(), "completed", &ImportCommand::CompleteImport).await?;
        Ok(())
    }

    /// The product id of a SKU: the product that holds its claim, or one
    /// derived from the SKU (so two imports of a new SKU address the same
    /// product). Decided on the write side, never from a read model that may lag.
    async fn product_id(&self, sku: &Sku) -> Result<ProductId, ApiError> {
        if let Some(holder) =
            self.state.sku_claims.holder(&self.brand, sku).await.map_err(CommandError::from)?
        {
            return Ok(holder);
        }
        let digest = Sha256::digest(sku.as_str().as_bytes());
        Ok(ProductId::parse(format!("sku-{}", &hex::encode(digest)[..24])).expect("a valid product id"))
    }

    /// Executes a row's product command, claiming the SKU when it creates the
    /// product, and trying again while the event log is unavailable.
    async fn execute_row(
        &self,
        step: &str,
        command: &ProductCommand,
    ) -> Result<gps_commands::Outcome<Product>, CommandError> {
        let meta = self.meta(step);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.state.sku_claims.execute_product(&self.brand, &meta, command).await {
                Err(CommandError::Unavailable(message)) if attempt < ATTEMPTS => {
                    tracing::warn!(import = %self.import_id, %message, attempt, "event log unavailable; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                }
                other => return other,
            }
        }
    }

    /// Imports one row. `Err` only for infrastructure failures (the job
    /// stops); everything the row's content causes is a `Failed` outcome.
    async fn import_row(&self, row: &CatalogRow) -> Result<RowOutcome, ApiError> {
        let data = match &row.data {
            Ok(data) => data,
            Err(errors) => return Ok(RowOutcome::Failed(errors.clone())),
        };
        let media = &self.state.media;
        let mut images = Vec::new();
        let mut errors = Vec::new();
        for reference in &data.images {
            let bytes = match self.image_bytes(&reference.source).await {
                Ok(bytes) => bytes,
                Err(message) => {
                    errors.push(ColumnError::new("images", message));
                    continue;
                }
            };
            match ingest_image(media, bytes).await {
                Ok(image) => images.push((reference, image)),
                Err(error @ (ApiError::Internal(_) | ApiError::Unavailable(_))) => return Err(error),
                Err(error) => {
                    errors.push(ColumnError::new("images", format!("{}: {error}", reference.written)))
                }
            }
        }
        if !errors.is_empty() {
            return Ok(RowOutcome::Failed(errors));
        }
        let product_id = self.product_id(&data.sku).await?;
        let command = ProductCommand::ImportProduct {
            product_id: product_id.clone(),
            brand_id: self.brand.clone(),
            sku: data.sku.clone(),
            name: data.name.clone(),
            category: data.category.clone(),
            attributes: data.attributes.clone(),
            images: images
                .iter()
                .map(|(reference, image)| ImportedImage {
                    image_id: default_image_id(image),
                    asset: image.asset.clone(),
                    view: reference.view,
                    analysis: Some(image.analysis.clone()),
                })
                .collect(),
        };
        // Decided before anything is stored: a refused row leaves no object,
        // and a row that matches the product stores and records nothing.
        let address = CommandHandler::address::<Product>(&self.brand, product_id.as_str())?;
        let loaded = self.state.commands.load::<Product>(&address).await?;
        match loaded.state.decide(&command) {
            Err(error) => return Ok(RowOutcome::Failed(vec![ColumnError::new("row", error.to_string())])),
            Ok(events) if events.is_empty() => return Ok(RowOutcome::Unchanged),
            Ok(_) => {}
        }
        for (_, image) in &images {
            store_image(media, &self.brand, image).await?;
        }
        let step = format!("row:{}", row.row);
        match self.execute_row(&step, &command).await {
            Ok(outcome) if outcome.events.is_empty() => Ok(RowOutcome::Unchanged),
            Ok(outcome) => {
                let created = outcome.events.iter().any(|event| event.event_type == "product.created");
                Ok(if created { RowOutcome::Created } else { RowOutcome::Updated })
            }
            Err(CommandError::Rejected { error, .. }) => {
                Ok(RowOutcome::Failed(vec![ColumnError::new("row", error.to_string())]))
            }
            Err(error) => Err(error.into()),
        }
    }

    /// The bytes of one image, or why they cannot be had (for the report).
    async fn image_bytes(&self, source: &ImageSource) -> Result<Bytes, String> {
        match source {
            ImageSource::Url(url) => self
                .state
                .media
                .fetcher()
                .get(url)
                .await
                .map(|fetched| fetched.body)
                .map_err(|e| e.to_string()),
            ImageSource::Archive(name) => {
                let Some(archive) = &self.archive else {
                    return Err(format!(
                        "{name:?} is not a URL and no images ZIP was sent; send the images as a ZIP in the \
                         `images` part, or give http(s) URLs"
                    ));
                };
                let (archive, wanted) = (archive.clone(), name.clone());
                let read = tokio::task::spawn_blocking(move || archive.read(&wanted))
                    .await
                    .map_err(|error| format!("{name:?} could not be read: {error}"))?;
                match read {
                    Ok(Some(bytes)) => Ok(bytes),
                    Ok(None) => {
                        let archive = self.archive.as_ref().expect("checked above");
                        let near = archive
                            .names()
                            .find(|candidate| {
                                candidate.eq_ignore_ascii_case(name)
                                    || candidate
                                        .rsplit('/')
                                        .next()
                                        .is_some_and(|base| base.eq_ignore_ascii_case(name))
                            })
                            .map(|candidate| format!(" (did you mean {candidate:?}?)"))
                            .unwrap_or_default();
                        Err(format!("the images ZIP has no file {name:?}{near}"))
                    }
                    Err(error) => Err(error.to_string()),
                }
            }
        }
    }
}

/// The imports this gateway runs, in all and per brand: a start past either
/// bound is refused (429), and a runner left without a gateway is resumed by
/// the periodic resumer once a slot is free.
#[derive(Debug, Clone)]
pub struct ImportSlots(Slots<BrandId>);

/// One running import's slot, given back when its job ends.
pub type ImportSlot = Slot<BrandId>;

impl ImportSlots {
    /// Slots for `total` imports, `per_brand` of one brand (each at least 1).
    pub fn new(total: usize, per_brand: usize) -> Self {
        ImportSlots(Slots::new(per_brand, total))
    }

    /// A slot for an import of `brand`, or a 429 saying which bound was reached.
    fn take(&self, brand: &BrandId) -> Result<ImportSlot, ApiError> {
        self.0.take(brand).map_err(|full| match full {
            Full::Key(running) => too_many_imports(format!(
                "brand {brand} already runs {running} imports, the most at once; wait for one to finish or cancel one"
            )),
            Full::Total => {
                too_many_imports("this gateway runs as many imports as it may at once; try again in a minute".into())
            }
        })
    }
}

fn too_many_imports(message: String) -> ApiError {
    ApiError::TooManyRequests { message, retry_after_secs: 30 }
}

#[utoipa::path(post, path = "/api/v1/brands/{brand}/imports/{import}/cancel", tag = "imports",
    params(("brand" = String, Path, description = "The brand id"), ("import" = String, Path, description = "The import id")),
    request_body(content = Option<crate::configure::Reason>, description = "Why, optionally"),
    responses(
        (status = 200, description = "Cancelled: the import ends as failed, saying who cancelled it; its runner stops before its next batch of rows", body = crate::Accepted),
    ),
    security(("session" = []), ("api_key" = [])))]
pub(crate) async fn cancel_import(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Path((brand, import)): Path<(String, String)>,
    OptionalBody(body): OptionalBody<crate::configure::Reason>,
) -> Result<Response, ApiError> {
    let brand = brand_id(&brand)?;
    auth::authorize(&state, &principal, &brand, actions::CANCEL_IMPORT).await?;
    let import_id = parse("import", ImportId::parse(&import))?;
    let who = match &principal {
        Principal::User { user_id } => format!("member {user_id}"),
        Principal::ApiClient { api_client_id, .. } => format!("API client {api_client_id}"),
    };
    let why = crate::configure::optional_reason(body.reason)?
        .map(|reason| format!(": {reason}"))
        .unwrap_or_default();
    let reason = parse("reason", Text::parse(format!("cancelled by {who}{why}")))?;
    let command = ImportCommand::FailImport { reason };
    let accepted =
        execute::<Import>(&state, &principal, &headers, &brand, import_id.as_str(), command).await?;
    Ok(accepted.respond(false))
}

/// One runner per import, across gateways: a Postgres advisory lock held
/// for as long as its connection, which the runner keeps until it ends (or
/// dies, when the server releases it).
struct RunnerLock(sqlx::PgConnection);

impl RunnerLock {
    /// The import's runner lock, or `None` when another runner holds it.
    async fn take(state: &AppState, brand: &BrandId, import_id: &ImportId) -> Result<Option<Self>, ApiError> {
        let mut connection = state.db.acquire().await?.detach();
        let key = format!("gps-import:{brand}:{import_id}");
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
            .bind(&key)
            .fetch_one(&mut connection)
            .await?;
        if locked {
            Ok(Some(RunnerLock(connection)))
        } else {
            let _ = sqlx::Connection::close(connection).await;
            Ok(None)
        }
    }

    async fn release(self) {
        let _ = sqlx::Connection::close(self.0).await;
    }
}

/// Resumes the imports that were left running: each reads its files back from
/// object storage and continues after the last recorded batch. Imports another
/// runner holds (here or on another gateway) are left to it, so this is safe
/// to call at any time; [`keep_resuming_unfinished`] calls it periodically.
/// Returns how many imports it resumed.
pub async fn resume_unfinished(state: &AppState) -> Result<usize, ApiError> {
    let running = read::running_imports(&state.db).await?;
    let mut resumed = 0;
    for (brand, import) in running {
        let (Ok(brand), Ok(import_id)) = (BrandId::parse(&brand), ImportId::parse(&import)) else { continue };
        if resume_one(state, &brand, &import_id).await? {
            resumed += 1;
        }
    }
    Ok(resumed)
}

/// Looks for imports without a runner every `every` and resumes them, until
/// the task is dropped: an import whose gateway died, or whose start was
/// acknowledged to nobody, is finished by whichever gateway looks first.
pub async fn keep_resuming_unfinished(state: AppState, every: Duration) {
    loop {
        match resume_unfinished(&state).await {
            Ok(0) => {}
            Ok(resumed) => tracing::info!(resumed, "resumed unfinished catalog imports"),
            Err(error) => {
                tracing::warn!(%error, "unfinished catalog imports not resumed; trying again later")
            }
        }
        tokio::time::sleep(every).await;
    }
}

/// Resumes one import if it is still running and no runner holds it: takes
/// the runner lock first (so an import running elsewhere costs one query),
/// then reads its files back. Returns whether a runner was started.
async fn resume_one(state: &AppState, brand: &BrandId, import_id: &ImportId) -> Result<bool, ApiError> {
    // Without a free slot it waits for the next look.
    let Ok(slot) = state.imports.take(brand) else { return Ok(false) };
    let Some(lock) = RunnerLock::take(state, brand, import_id).await? else { return Ok(false) };
    match prepare_resume(state, brand, import_id, slot).await {
        Ok(Some(job)) => {
            tokio::spawn(job.run_locked(lock));
            Ok(true)
        }
        Ok(None) => {
            lock.release().await;
            Ok(false)
        }
        Err(error) => {
            lock.release().await;
            Err(error)
        }
    }
}

/// The job that continues a running import from its stored files, or `None`
/// when it is not running (any more) or its files no longer read.
async fn prepare_resume(
    state: &AppState,
    brand: &BrandId,
    import_id: &ImportId,
    slot: ImportSlot,
) -> Result<Option<ImportJob>, ApiError> {
    let address = CommandHandler::address::<Import>(brand, import_id.as_str())?;
    let loaded = state.commands.load::<Import>(&address).await?;
    let Some(started) = loaded.state.started.clone() else { return Ok(None) };
    if loaded.state.status != ImportStatus::Running {
        return Ok(None);
    }
    let Some(start) = loaded.envelopes.first() else { return Ok(None) };
    // Every event of the job carries the start command's id as its
    // correlation (also when a snapshot hides the start event itself).
    let meta = CommandMeta::new(start.correlation_id.clone(), start.actor.clone());
    let catalog_bytes = fetch_object(state, brand, &started.catalog).await?;
    let limits = CatalogLimits { max_rows: u32::MAX, max_images: u32::MAX };
    let catalog = match catalog_file::read(&catalog_bytes, started.format, limits) {
        Ok(catalog) => catalog,
        Err(problem) => {
            tracing::error!(%brand, %import_id, %problem, "a stored catalog no longer reads; not resumed");
            return Ok(None);
        }
    };
    let archive = match &started.images_archive {
        None => None,
        Some(asset) => {
            let bytes = fetch_object(state, brand, asset).await?;
            CheckedArchive::check(bytes, state.media.settings().imports.archive).ok()
        }
    };
    Ok(Some(ImportJob {
        state: state.clone(),
        brand: brand.clone(),
        import_id: import_id.clone(),
        meta,
        catalog,
        archive,
        _slot: slot,
    }))
}

async fn fetch_object(state: &AppState, brand: &BrandId, asset: &AssetRef) -> Result<Bytes, ApiError> {
    let key = gps_storage::ObjectKey::content(brand, &asset.hash);
    let object = state
        .media
        .store()
        .get(&key)
        .await
        .map_err(|error| ApiError::Unavailable(format!("object storage: {error}")))?;
    if content_hash(&object.body) != asset.hash {
        return Err(ApiError::Internal(format!("object {key} does not match its hash")));
    }
    Ok(object.body)
}
