//! Queries for the gateway: brand-scoped get and list functions with cursor
//! pagination, and read-your-writes ([`wait_for_sequence`]).
//!
//! Every function takes the brand and filters by it, so a caller cannot read
//! another tenant's rows by id. Lists are ordered newest first by the stream
//! sequence of the row's creating event (stable: it never changes), and the
//! cursor is an opaque token for "after this position". Results are plain
//! serde structs the gateway can return as JSON.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;
use time::OffsetDateTime;

/// The most items one page holds.
pub const MAX_PAGE_SIZE: u32 = 200;
/// Items per page when the caller does not say.
pub const DEFAULT_PAGE_SIZE: u32 = 50;

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The cursor was not produced by this API (or was altered).
    #[error("the cursor is not valid; pass the next_cursor of a previous page unchanged")]
    InvalidCursor,
    /// Postgres failed.
    #[error("read model unavailable: {0}")]
    Postgres(#[from] sqlx::Error),
}

/// Which page to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    /// The `next_cursor` of the previous page; `None` for the first page.
    pub cursor: Option<String>,
    /// Items per page (1 to [`MAX_PAGE_SIZE`]; default [`DEFAULT_PAGE_SIZE`]).
    pub limit: Option<u32>,
}

impl PageRequest {
    fn limit(&self) -> i64 {
        i64::from(self.limit.unwrap_or(DEFAULT_PAGE_SIZE).clamp(1, MAX_PAGE_SIZE))
    }

    fn before(&self) -> Result<Option<i64>, QueryError> {
        self.cursor.as_deref().map(decode_cursor).transpose()
    }
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    /// The items, newest first.
    pub items: Vec<T>,
    /// Pass this to get the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

fn encode_cursor(position: i64) -> String {
    hex::encode(format!("gps1:{position}"))
}

fn decode_cursor(cursor: &str) -> Result<i64, QueryError> {
    let bytes = hex::decode(cursor).map_err(|_| QueryError::InvalidCursor)?;
    let text = String::from_utf8(bytes).map_err(|_| QueryError::InvalidCursor)?;
    text.strip_prefix("gps1:").and_then(|n| n.parse().ok()).ok_or(QueryError::InvalidCursor)
}

/// Rows are fetched one beyond the limit to learn whether a next page exists.
fn page<T>(mut rows: Vec<T>, request: &PageRequest, position: impl Fn(&T) -> i64) -> Page<T> {
    let limit = usize::try_from(request.limit()).unwrap_or(usize::MAX);
    let next_cursor = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|row| encode_cursor(position(row)))
    } else {
        None
    };
    Page { items: rows, next_cursor }
}

macro_rules! list_query {
    ($pool:expr, $request:expr, $sql:expr, $ty:ty, [$($bind:expr),*]) => {{
        let request: &PageRequest = $request;
        let rows: Vec<$ty> = sqlx::query_as($sql)
            $(.bind($bind))*
            .bind(request.before()?)
            .bind(request.limit() + 1)
            .fetch_all($pool)
            .await?;
        Ok(page(rows, request, |row| row.created_sequence))
    }};
}

// ---------------------------------------------------------------- brands

/// A brand.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct BrandView {
    /// The brand id.
    pub brand: String,
    /// Display name.
    pub name: String,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// The brand aggregate's version.
    pub version: i64,
    /// The stream sequence of the last event applied to this row.
    pub last_sequence: i64,
}

/// The brand, if it exists.
pub async fn get_brand(pool: &PgPool, brand: &str) -> Result<Option<BrandView>, QueryError> {
    Ok(sqlx::query_as(
        "SELECT brand, name, created_at, version, last_sequence FROM brands.brands WHERE brand = $1",
    )
    .bind(brand)
    .fetch_optional(pool)
    .await?)
}

/// A member of a brand.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct MemberView {
    /// The brand.
    pub brand: String,
    /// The member id.
    pub member_id: String,
    /// Display name.
    pub display_name: String,
    /// Email address; `null` when the person was forgotten.
    pub email: Option<String>,
    /// True when the person was forgotten (their key destroyed): the address
    /// is unreadable everywhere, here and in the log.
    pub email_forgotten: bool,
    /// Role: owner, producer, reviewer, viewer or auditor.
    pub role: String,
    /// When the member was added.
    #[serde(with = "time::serde::rfc3339")]
    pub added_at: OffsetDateTime,
    /// Position of the creating event (the list order).
    pub created_sequence: i64,
    /// The stream sequence of the last event applied to this row.
    pub last_sequence: i64,
    /// The sealed address as the event carried it (opened into `email`).
    #[serde(skip)]
    pub email_sealed: Option<serde_json::Value>,
    /// The person's key from the privacy vault, if it still exists.
    #[serde(skip)]
    pub vault_key: Option<Vec<u8>>,
}

impl MemberView {
    /// Opens the sealed address with the vault key, and drops both.
    fn revealed(mut self) -> Self {
        if let Some(sealed) = self.email_sealed.take() {
            let field = |name: &str| sealed.get(name).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
            self.email =
                crate::privacy::open(&field("person_id"), &field("ciphertext"), self.vault_key.as_deref());
        }
        self.vault_key = None;
        self.email_forgotten = self.email.is_none();
        self
    }
}

/// The brand's members, their sealed addresses opened with the keys of the
/// privacy vault (`vault`: the credentials database).
pub async fn list_members(
    pool: &PgPool,
    vault: &PgPool,
    brand: &str,
    request: &PageRequest,
) -> Result<Page<MemberView>, QueryError> {
    let page: Result<Page<MemberView>, QueryError> = list_query!(pool, request,
        "SELECT brand, member_id, display_name, email, false AS email_forgotten, role, added_at, created_sequence,
                last_sequence, email_sealed, NULL::bytea AS vault_key
         FROM brands.members
         WHERE brand = $1 AND ($2::bigint IS NULL OR created_sequence < $2) ORDER BY created_sequence DESC LIMIT $3",
        MemberView, [brand]);
    let mut page = page?;
    page.items = revealed(vault, std::mem::take(&mut page.items)).await?;
    Ok(page)
}

/// Opens the members' sealed addresses with their persons' keys.
async fn revealed(vault: &PgPool, members: Vec<MemberView>) -> Result<Vec<MemberView>, QueryError> {
    let persons: Vec<String> = members
        .iter()
        .filter_map(|member| member.email_sealed.as_ref()?.get("person_id")?.as_str().map(str::to_owned))
        .collect();
    let keys: Vec<(String, Option<Vec<u8>>)> =
        sqlx::query_as("SELECT person_id, key FROM privacy.person_keys WHERE person_id = ANY($1)")
            .bind(&persons)
            .fetch_all(vault)
            .await?;
    let keys: std::collections::HashMap<String, Option<Vec<u8>>> = keys.into_iter().collect();
    Ok(members
        .into_iter()
        .map(|mut member| {
            let person =
                member.email_sealed.as_ref().and_then(|s| s.get("person_id")?.as_str().map(str::to_owned));
            member.vault_key = person.and_then(|p| keys.get(&p).cloned().flatten());
            member.revealed()
        })
        .collect())
}

/// A brand a person belongs to, with their role in it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct Membership {
    /// The brand id.
    pub brand: String,
    /// The brand's display name.
    pub name: String,
    /// The person's role there.
    pub role: String,
}

/// The brands `member_id` belongs to, by name.
pub async fn memberships_of(pool: &PgPool, member_id: &str) -> Result<Vec<Membership>, QueryError> {
    Ok(sqlx::query_as(
        "SELECT m.brand, b.name, m.role FROM brands.members m JOIN brands.brands b ON b.brand = m.brand
         WHERE m.member_id = $1 ORDER BY b.name, m.brand",
    )
    .bind(member_id)
    .fetch_all(pool)
    .await?)
}

/// One member (the address opened with the vault's key, see [`list_members`]).
pub async fn get_member(
    pool: &PgPool,
    vault: &PgPool,
    brand: &str,
    member_id: &str,
) -> Result<Option<MemberView>, QueryError> {
    let member: Option<MemberView> = sqlx::query_as(
        "SELECT brand, member_id, display_name, email, false AS email_forgotten, role, added_at, created_sequence,
                last_sequence, email_sealed, NULL::bytea AS vault_key
         FROM brands.members WHERE brand = $1 AND member_id = $2",
    )
    .bind(brand)
    .bind(member_id)
    .fetch_optional(pool)
    .await?;
    Ok(revealed(vault, member.into_iter().collect()).await?.pop())
}

/// An API client (never its secret: only the public key fingerprint).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct ApiClientView {
    /// The brand.
    pub brand: String,
    /// The client id.
    pub api_client_id: String,
    /// What the client is.
    pub name: String,
    /// Its role.
    pub role: String,
    /// The key's public fingerprint.
    pub key_fingerprint: String,
    /// What the key may be used for (read, produce, review, audit, stream).
    /// Null for a client registered before scopes existed: it has every
    /// scope but stream.
    pub scopes: Option<Vec<String>>,
    /// Whether it was revoked.
    pub revoked: bool,
    /// Why, if given.
    pub revoked_reason: Option<String>,
    /// When it was registered.
    #[serde(with = "time::serde::rfc3339")]
    pub registered_at: OffsetDateTime,
    /// Position of the creating event (the list order).
    pub created_sequence: i64,
    /// The stream sequence of the last event applied to this row.
    pub last_sequence: i64,
}

/// The brand's API clients, revoked ones included.
pub async fn list_api_clients(
    pool: &PgPool,
    brand: &str,
    request: &PageRequest,
) -> Result<Page<ApiClientView>, QueryError> {
    list_query!(pool, request,
        "SELECT brand, api_client_id, name, role, key_fingerprint, scopes, revoked, revoked_reason, registered_at, created_sequence, last_sequence
         FROM brands.api_clients WHERE brand = $1 AND ($2::bigint IS NULL OR created_sequence < $2)
         ORDER BY created_sequence DESC LIMIT $3",
        ApiClientView, [brand])
}

/// A channel preset (current version).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct ChannelPresetView {
    /// The brand.
    pub brand: String,
    /// The channel.
    pub channel: String,
    /// The preset's version number.
    pub preset_version: i32,
    /// The spec (JSON).
    pub spec: Value,
    /// Position of the creating event (the list order).
    pub created_sequence: i64,
    /// The stream sequence of the last event applied to this row.
    pub last_sequence: i64,
}

/// The brand's channel presets.
pub async fn list_channel_presets(
    pool: &PgPool,
    brand: &str,
    request: &PageRequest,
) -> Result<Page<ChannelPresetView>, QueryError> {
    list_query!(pool, request,
        "SELECT brand, channel, preset_version, spec, created_sequence, last_sequence FROM brands.channel_presets
         WHERE brand = $1 AND ($2::bigint IS NULL OR created_sequence < $2) ORDER BY created_sequence DESC LIMIT $3",
        ChannelPresetView, [brand])
}

// ---------------------------------------------------------------- catalog

/// A product (list item; [`get_product`] adds the images).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct ProductView {
    /// The brand.
    pub brand: String,
    /// The product id.
    pub product_id: String,
    /// SKU.
    pub sku: String,
    /// Name.
    pub name: String,
    /// Category.
    pub category: String,
    /// Free attributes (JSON object).
    pub attributes: Value,
    /// Whether it is archived.
    pub archived: bool,
    /// How many images it has.
    pub image_count: i32,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// Position of the creating event (the list order).
    pub created_sequence: i64,
    /// The product aggregate's version.
    pub version: i64,
    /// The stream sequence of the last event applied to this row.
    pub last_sequence: i64,
    /// The content hash of its first image (the list's thumbnail), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cover_hash: Option<String>,
    /// A signed CDN URL of that image (filled by the gateway).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[sqlx(skip)]
    pub cover_url: Option<String>,
}

/// An image of a product or a base image of a subject.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct ImageView {
    /// The image id.
    pub image_id: String,
    /// The view (product) or `pose/angle` (subject).
    pub kind: String,
    /// The content hash (object key).
    pub content_hash: String,
    /// The asset reference (JSON: hash, media type, bytes, size).
    pub asset: Value,
    /// What ingest learned about the image (original, perceptual hash,
    /// dominant colours), when it was uploaded through GPS.
    pub analysis: Option<Value>,
    /// A signed URL of the image, filled in by the gateway (not stored).
    #[sqlx(skip)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// A perceptual hash of one image in a brand's catalog, for near-duplicate checks.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CatalogImageHash {
    /// `product` or `subject`.
    pub owner_kind: String,
    /// The product or subject id.
    pub owner_id: String,
    /// The image id.
    pub image_id: String,
    /// 16 hex digits.
    pub perceptual_hash: String,
}

/// Every perceptual hash recorded in the brand's catalog (products and subjects).
pub async fn catalog_image_hashes(pool: &PgPool, brand: &str) -> Result<Vec<CatalogImageHash>, QueryError> {
    Ok(sqlx::query_as(
        "SELECT 'product' AS owner_kind, product_id AS owner_id, image_id, analysis->>'perceptual_hash' AS perceptual_hash
           FROM catalog.product_images WHERE brand = $1 AND analysis ? 'perceptual_hash'
         UNION ALL
         SELECT 'subject', subject_id, image_id, analysis->>'perceptual_hash'
           FROM catalog.subject_images WHERE brand = $1 AND analysis ? 'perceptual_hash'",
    )
    .bind(brand)
    .fetch_all(pool)
    .await?)
}

/// A product with its images.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ProductDetail {
    /// The product.
    #[serde(flatten)]
    pub product: ProductView,
    /// Its images, oldest first.
    pub images: Vec<ImageView>,
}

/// Filters of [`list_products`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProductFilter {
    /// Only this category.
    pub category: Option<String>,
    /// Only archived (`Some(true)`) or active (`Some(false)`) products.
    pub archived: Option<bool>,
    /// Only products whose SKU or name contains this (any case).
    pub search: Option<String>,
    /// Only products with (`Some(true)`) or without (`Some(false)`) images.
    pub has_images: Option<bool>,
    /// Only products used (`Some(true)`) or not used (`Some(false)`) by a look.
    pub in_shootings: Option<bool>,
}

/// `text` as a literal `ILIKE` pattern that matches it anywhere.
fn contains_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// The columns of the product in the row `p`, without its cover.
macro_rules! product_columns {
    () => {
        "p.brand, p.product_id, p.sku, p.name, p.category, p.attributes, p.archived, p.image_count, p.created_at,
         p.updated_at, p.created_sequence, p.version, p.last_sequence"
    };
}

/// The brand's products, each with its cover: the first image (the list's
/// thumbnail), joined in the same query. The page is chosen first, so the
/// lateral probe runs only for its rows (joined before the `LIMIT`, a table
/// without statistics had it probe every product of the brand), and not at
/// all for a product whose count says it has no images.
pub async fn list_products(
    pool: &PgPool,
    brand: &str,
    filter: &ProductFilter,
    request: &PageRequest,
) -> Result<Page<ProductView>, QueryError> {
    let search = filter.search.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(contains_pattern);
    list_query!(pool, request,
        concat!("SELECT p.*, cover.content_hash AS cover_hash FROM (SELECT ", product_columns!(), "
         FROM catalog.products p
         WHERE p.brand = $1 AND ($2::text IS NULL OR p.category = $2) AND ($3::bool IS NULL OR p.archived = $3)
           AND ($4::text IS NULL OR p.sku ILIKE $4 OR p.name ILIKE $4)
           AND ($5::bool IS NULL OR (p.image_count > 0) = $5)
           AND ($6::bool IS NULL OR EXISTS (SELECT 1 FROM production.looks l
                 WHERE l.brand = p.brand AND NOT l.removed AND l.products ? p.product_id) = $6)
           AND ($7::bigint IS NULL OR p.created_sequence < $7)
         ORDER BY p.created_sequence DESC LIMIT $8) p
         LEFT JOIN LATERAL (SELECT i.content_hash FROM catalog.product_images i
               WHERE p.image_count > 0 AND i.brand = p.brand AND i.product_id = p.product_id
               ORDER BY i.created_sequence, i.image_id LIMIT 1) cover ON true
         ORDER BY p.created_sequence DESC"),
        ProductView, [brand, filter.category.as_deref(), filter.archived, search, filter.has_images, filter.in_shootings])
}

/// One product with its images, in one query: each image is a row that
/// repeats the product's columns (a left join, so a product without images
/// is one row whose image columns are NULL). Its cover is its first image,
/// in the order the list's cover is chosen.
pub async fn get_product(
    pool: &PgPool,
    brand: &str,
    product_id: &str,
) -> Result<Option<ProductDetail>, QueryError> {
    use sqlx::{FromRow, Row};
    let rows = sqlx::query(concat!(
        "SELECT ",
        product_columns!(),
        ", NULL::text AS cover_hash, i.image_id, i.view AS kind, i.content_hash, i.asset, i.analysis
         FROM catalog.products p
         LEFT JOIN catalog.product_images i ON i.brand = p.brand AND i.product_id = p.product_id
         WHERE p.brand = $1 AND p.product_id = $2
         ORDER BY i.created_sequence, i.image_id"
    ))
    .bind(brand)
    .bind(product_id)
    .fetch_all(pool)
    .await?;
    let Some(first) = rows.first() else { return Ok(None) };
    let mut product = ProductView::from_row(first)?;
    let mut images = Vec::with_capacity(rows.len());
    for row in &rows {
        if row.try_get::<Option<&str>, _>("image_id")?.is_some() {
            images.push(ImageView::from_row(row)?);
        }
    }
    product.cover_hash = images.first().map(|image| image.content_hash.clone());
    Ok(Some(ProductDetail { product, images }))
}

/// A catalog import and its progress.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct ImportView {
    /// The brand.
    pub brand: String,
    /// The import id.
    pub import_id: String,
    /// `csv` or `json_lines`.
    pub format: String,
    /// The uploaded file's name.
    pub file_name: Option<String>,
    /// `running`, `completed` or `failed`.
    pub status: String,
    /// Data rows in the file.
    pub total_rows: i32,
    /// Rows processed so far (done + failed).
    pub through_row: i32,
    /// Rows that created a product.
    pub created: i32,
    /// Rows that changed an existing product.
    pub updated: i32,
    /// Rows that matched their product already (nothing recorded).
    pub unchanged: i32,
    /// Rows that failed; see the error report.
    pub failed: i32,
    /// Why the import stopped, when it failed.
    pub failure_reason: Option<String>,
    /// Who started it (the actor JSON).
    pub started_by: Value,
    /// When it started.
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// When it last progressed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// When it completed or failed.
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    /// Position of the starting event (the list order).
    pub created_sequence: i64,
    /// The import aggregate's version.
    pub version: i64,
    /// The stream sequence of the last event applied to this row.
    pub last_sequence: i64,
}

/// One line of an import's error report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct ImportErrorView {
    /// The row as the person sees it in the file.
    pub row_number: i32,
    /// The row's SKU, when readable.
    pub sku: Option<String>,
    /// The column at fault.
    pub column_name: String,
    /// What is wrong and what to do.
    pub message: String,
}

/// One import.
pub async fn get_import(
    pool: &PgPool,
    brand: &str,
    import_id: &str,
) -> Result<Option<ImportView>, QueryError> {
    Ok(sqlx::query_as(
        "SELECT brand, import_id, format, file_name, status, total_rows, through_row, created, updated,
                unchanged, failed, failure_reason, started_by, started_at, updated_at, finished_at,
                created_sequence, version, last_sequence
         FROM catalog.imports WHERE brand = $1 AND import_id = $2",
    )
    .bind(brand)
    .bind(import_id)
    .fetch_optional(pool)
    .await?)
}

/// The brand's imports.
pub async fn list_imports(
    pool: &PgPool,
    brand: &str,
    request: &PageRequest,
) -> Result<Page<ImportView>, QueryError> {
    list_query!(
        pool,
        request,
        "SELECT brand, import_id, format, file_name, status, total_rows, through_row, created, updated,
                unchanged, failed, failure_reason, started_by, started_at, updated_at, finished_at,
                created_sequence, version, last_sequence
         FROM catalog.imports WHERE brand = $1 AND ($2::bigint IS NULL OR created_sequence < $2)
         ORDER BY created_sequence DESC LIMIT $3",
        ImportView,
        [brand]
    )
}

/// Every import still running, in any brand (`(brand, import id)`), for
/// resuming them when a gateway starts.
pub async fn running_imports(pool: &PgPool) -> Result<Vec<(String, String)>, QueryError> {
    Ok(sqlx::query_as(
        "SELECT brand, import_id FROM catalog.imports WHERE status = 'running' ORDER BY created_sequence",
    )
    .fetch_all(pool)
    .await?)
}

/// Every error an import reported, in file order.
pub async fn import_errors(
    pool: &PgPool,
    brand: &str,
    import_id: &str,
) -> Result<Vec<ImportErrorView>, QueryError> {
    Ok(sqlx::query_as(
        "SELECT row_number, sku, column_name, message FROM catalog.import_errors
         WHERE brand = $1 AND import_id = $2 ORDER BY row_number, event_sequence, ordinal",
    )
    .bind(brand)
    .bind(import_id)
    .fetch_all(pool)
    .await?)
}

/// A subject (virtual model).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct SubjectView {
    /// The brand.
    pub brand: String,
    /// The subject id.
    pub subject_id: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Whether it is retired.
    pub retired: bool,
    /// How many base images it has.
    pub image_count: i32,
    /// Position of the creating event (the list order).
    pub created_sequence: i64,
    /// The subject aggregate's version.
    pub version: i64,
    /// The stream sequence of the last event applied to this row.
    pub last_sequence: i64,
}

/// A subject with its base images.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SubjectDetail {
    /// The subject.
    #[serde(flatten)]
    pub subject: SubjectView,
    /// Its base images, oldest first (`kind` is `pose/angle`).
    pub images: Vec<ImageView>,
}

/// The brand's subjects.
pub async fn list_subjects(
    pool: &PgPool,
    brand: &str,
    request: &PageRequest,
) -> Result<Page<SubjectView>, QueryError> {
    list_query!(pool, request,
        "SELECT brand, subject_id, name, description, retired, image_count, created_sequence, version, last_sequence
         FROM catalog.subjects WHERE brand = $1 AND ($2::bigint IS NULL OR created_sequence < $2)
         ORDER BY created_sequence DESC LIMIT $3",
        SubjectView, [brand])
}

/// One subject with its base images.
pub async fn get_subject(
    pool: &PgPool,
    brand: &str,
    subject_id: &str,
) -> Result<Option<SubjectDetail>, QueryError> {
    let subject: Option<SubjectView> = sqlx::query_as(
        "SELECT brand, subject_id, name, description, retired, image_count, created_sequence, version, last_sequence
         FROM catalog.subjects WHERE brand = $1 AND subject_id = $2",
    )
    .bind(brand)
    .bind(subject_id)
    .fetch_optional(pool)
    .await?;
    let Some(subject) = subject else { return Ok(None) };
    let images = sqlx::query_as(
        "SELECT image_id, pose || '/' || angle AS kind, content_hash, asset, analysis FROM catalog.subject_images
         WHERE brand = $1 AND subject_id = $2 ORDER BY created_sequence",
    )
    .bind(brand)
    .bind(subject_id)
    .fetch_all(pool)
    .await?;
    Ok(Some(SubjectDetail { subject, images }))
}

/// A style with its current version and definition.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct StyleView {
    /// The brand.
    pub brand: String,
    /// The style id.
    pub style_id: String,
    /// Name.
    pub name: String,
    /// The current style version.
    pub current_version: i32,
    /// The current definition (JSON).
    pub definition: Value,
    /// Whether it is archived.
    pub archived: bool,
    /// Position of the creating event (the list order).
    pub created_sequence: i64,
    /// The style aggregate's version.
    pub version: i64,
    /// The stream sequence of the last event applied to this row.
    pub last_sequence: i64,
}

/// The brand's styles.
pub async fn list_styles(
    pool: &PgPool,
    brand: &str,
    request: &PageRequest,
) -> Result<Page<StyleView>, QueryError> {
    list_query!(pool, request,
        "SELECT brand, style_id, name, current_version, definition, archived, created_sequence, version, last_sequence
         FROM catalog.styles WHERE brand = $1 AND ($2::bigint IS NULL OR created_sequence < $2)
         ORDER BY created_sequence DESC LIMIT $3",
        StyleView, [brand])
}

/// One style.
pub async fn get_style(pool: &PgPool, brand: &str, style_id: &str) -> Result<Option<StyleView>, QueryError> {
    Ok(sqlx::query_as(
        "SELECT brand, style_id, name, current_version, definition, archived, created_sequence, version, last_sequence
         FROM catalog.styles WHERE brand = $1 AND style_id = $2",
    )
    .bind(brand)
    .bind(style_id)
    .fetch_optional(pool)
    .await?)
}

// ---------------------------------------------------------------- production

/// A shooting.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct ShootingView {
    /// The brand.
    pub brand: String,
    /// The shooting id.
    pub shooting_id: String,
    /// Name.
    pub name: String,
    /// draft, launched, completed or archived.
    pub status: String,
    /// Defaults (JSON).
    pub defaults: Value,
    /// Rules (JSON).
    pub rules: Value,
    /// How many times it was launched.
    pub launch_number: i32,
    /// Position of the creating event (the list order).
    pub created_sequence: i64,
    /// The shooting aggregate's version.
    pub version: i64,
    /// The stream sequence of the last event applied to this row.
    pub last_sequence: i64,
}

/// The brand's shootings, optionally of one status.
pub async fn list_shootings(
    pool: &PgPool,
    brand: &str,
    status: Option<&str>,
    request: &PageRequest,
) -> Result<Page<ShootingView>, QueryError> {
    list_query!(pool, request,
        "SELECT brand, shooting_id, name, status, defaults, rules, launch_number, created_sequence, version, last_sequence
         FROM production.shootings WHERE brand = $1 AND ($2::text IS NULL OR status = $2)
           AND ($3::bigint IS NULL OR created_sequence < $3)
         ORDER BY created_sequence DESC LIMIT $4",
        ShootingView, [brand, status])
}

/// One shooting.
pub async fn get_shooting(
    pool: &PgPool,
    brand: &str,
    shooting_id: &str,
) -> Result<Option<ShootingView>, QueryError> {
    Ok(sqlx::query_as(
        "SELECT brand, shooting_id, name, status, defaults, rules, launch_number, created_sequence, version, last_sequence
         FROM production.shootings WHERE brand = $1 AND shooting_id = $2",
    )
    .bind(brand)
    .bind(shooting_id)
    .fetch_optional(pool)
    .await?)
}

/// A look of a shooting.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct LookView {
    /// The brand.
    pub brand: String,
    /// The look id.
    pub look_id: String,
    /// Its shooting.
    pub shooting_id: String,
    /// Name.
    pub name: String,
    /// Product ids (JSON array).
    pub products: Value,
    /// The subject, if set.
    pub subject_id: Option<String>,
    /// The style, if set.
    pub style_id: Option<String>,
    /// Guidelines (JSON).
    pub guidelines: Value,
    /// Its own shot types (JSON array), or null for the shooting's.
    pub shot_types: Option<Value>,
    /// Whether it was removed.
    pub removed: bool,
    /// Position of the creating event (the list order).
    pub created_sequence: i64,
    /// The look aggregate's version.
    pub version: i64,
    /// The stream sequence of the last event applied to this row.
    pub last_sequence: i64,
}

/// The brand's looks, optionally of one shooting; removed looks are left out.
pub async fn list_looks(
    pool: &PgPool,
    brand: &str,
    shooting_id: Option<&str>,
    request: &PageRequest,
) -> Result<Page<LookView>, QueryError> {
    list_query!(pool, request,
        "SELECT brand, look_id, shooting_id, name, products, subject_id, style_id, guidelines, shot_types, removed,
                created_sequence, version, last_sequence
         FROM production.looks WHERE brand = $1 AND NOT removed AND ($2::text IS NULL OR shooting_id = $2)
           AND ($3::bigint IS NULL OR created_sequence < $3)
         ORDER BY created_sequence DESC LIMIT $4",
        LookView, [brand, shooting_id])
}

/// One look (also a removed one).
pub async fn get_look(pool: &PgPool, brand: &str, look_id: &str) -> Result<Option<LookView>, QueryError> {
    Ok(sqlx::query_as(
        "SELECT brand, look_id, shooting_id, name, products, subject_id, style_id, guidelines, shot_types, removed,
                created_sequence, version, last_sequence
         FROM production.looks WHERE brand = $1 AND look_id = $2",
    )
    .bind(brand)
    .bind(look_id)
    .fetch_optional(pool)
    .await?)
}

/// A generation with its status, progress and cost.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct GenerationView {
    /// The brand.
    pub brand: String,
    /// The generation id.
    pub generation_id: String,
    /// Its shooting.
    pub shooting_id: String,
    /// Its look.
    pub look_id: String,
    /// The shot type.
    pub shot_type: String,
    /// Variants requested.
    pub variants: i32,
    /// requested, running, completed, failed or cancelled.
    pub status: String,
    /// The attempt number.
    pub attempt: i32,
    /// The compute agent running it, once started.
    pub agent: Option<String>,
    /// Workflow steps completed (progress).
    pub steps_completed: i32,
    /// The completed steps (JSON array: step, provider, model, duration, cost).
    pub steps: Value,
    /// Cost so far, in micro-units of the billing currency.
    pub cost_micros: i64,
    /// The predictions it produced (JSON array), once completed.
    pub prediction_ids: Value,
    /// Why it failed or was cancelled.
    pub failure_reason: Option<String>,
    /// Whether a failure may be retried.
    pub retryable: Option<bool>,
    /// The full request (JSON): inputs, workflow, output, seed.
    pub request: Value,
    /// When it was requested.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// Position of the creating event (the list order).
    pub created_sequence: i64,
    /// The generation aggregate's version.
    pub version: i64,
    /// The stream sequence of the last event applied to this row.
    pub last_sequence: i64,
}

/// Filters of [`list_generations`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GenerationFilter {
    /// Only of this shooting.
    pub shooting_id: Option<String>,
    /// Only of this look.
    pub look_id: Option<String>,
    /// Only in this status.
    pub status: Option<String>,
}

/// The brand's generations.
pub async fn list_generations(
    pool: &PgPool,
    brand: &str,
    filter: &GenerationFilter,
    request: &PageRequest,
) -> Result<Page<GenerationView>, QueryError> {
    list_query!(pool, request,
        "SELECT brand, generation_id, shooting_id, look_id, shot_type, variants, status, attempt, agent, steps_completed, steps,
                cost_micros, prediction_ids, failure_reason, retryable, request, created_at, updated_at, created_sequence, version, last_sequence
         FROM production.generations WHERE brand = $1 AND ($2::text IS NULL OR shooting_id = $2)
           AND ($3::text IS NULL OR look_id = $3) AND ($4::text IS NULL OR status = $4)
           AND ($5::bigint IS NULL OR created_sequence < $5)
         ORDER BY created_sequence DESC LIMIT $6",
        GenerationView, [brand, filter.shooting_id.as_deref(), filter.look_id.as_deref(), filter.status.as_deref()])
}

/// One generation.
pub async fn get_generation(
    pool: &PgPool,
    brand: &str,
    generation_id: &str,
) -> Result<Option<GenerationView>, QueryError> {
    Ok(sqlx::query_as(
        "SELECT brand, generation_id, shooting_id, look_id, shot_type, variants, status, attempt, agent, steps_completed, steps,
                cost_micros, prediction_ids, failure_reason, retryable, request, created_at, updated_at, created_sequence, version, last_sequence
         FROM production.generations WHERE brand = $1 AND generation_id = $2",
    )
    .bind(brand)
    .bind(generation_id)
    .fetch_optional(pool)
    .await?)
}

// ---------------------------------------------------------------- review

/// A prediction with its review state.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct PredictionView {
    /// The brand.
    pub brand: String,
    /// The prediction id.
    pub prediction_id: String,
    /// Its generation.
    pub generation_id: String,
    /// Its look.
    pub look_id: String,
    /// The shot type.
    pub shot_type: String,
    /// Which variant of the generation.
    pub variant_index: i32,
    /// The content hash (object key).
    pub content_hash: String,
    /// The asset reference (JSON).
    pub asset: Value,
    /// Provenance (JSON: provider, model, prompt, seed…).
    pub provenance: Value,
    /// pending, approved, rejected or revision_requested.
    pub review_state: String,
    /// The rejection reason or revision comment.
    pub review_reason: Option<String>,
    /// Who reviewed (JSON actor).
    pub reviewed_by: Option<Value>,
    /// What the automatic quality gate measured (JSON: `passed` and each check
    /// with its figure and threshold); absent when the workflow had no gate.
    pub quality: Option<Value>,
    /// Whether every quality check passed; absent when there was no gate.
    pub quality_passed: Option<bool>,
    /// A signed URL of the image (or clip), filled in by the gateway (not stored).
    #[sqlx(skip)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// How many comments it has.
    pub comment_count: i32,
    /// Position of the creating event (the list order).
    pub created_sequence: i64,
    /// The prediction aggregate's version.
    pub version: i64,
    /// The stream sequence of the last event applied to this row.
    pub last_sequence: i64,
}

/// A comment on a prediction.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct CommentView {
    /// The comment id.
    pub comment_id: String,
    /// The text.
    pub text: String,
    /// Who wrote it (JSON actor).
    pub actor: Value,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// A revision request on a prediction.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct RevisionRequestView {
    /// The reviewer's feedback.
    pub comment: String,
    /// Annotated regions (JSON array).
    pub regions: Value,
    /// Who asked (JSON actor).
    pub actor: Value,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub requested_at: OffsetDateTime,
}

/// A prediction with its comments and revision requests.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PredictionDetail {
    /// The prediction.
    #[serde(flatten)]
    pub prediction: PredictionView,
    /// Comments, oldest first.
    pub comments: Vec<CommentView>,
    /// Revision requests, oldest first.
    pub revision_requests: Vec<RevisionRequestView>,
}

/// Filters of [`list_predictions`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PredictionFilter {
    /// Only in this review state.
    pub review_state: Option<String>,
    /// Only of this generation.
    pub generation_id: Option<String>,
    /// Only of this look.
    pub look_id: Option<String>,
    /// Only those whose quality gate passed (`Some(true)`) or flagged them (`Some(false)`).
    pub quality_passed: Option<bool>,
}

/// The brand's predictions.
pub async fn list_predictions(
    pool: &PgPool,
    brand: &str,
    filter: &PredictionFilter,
    request: &PageRequest,
) -> Result<Page<PredictionView>, QueryError> {
    list_query!(pool, request,
        "SELECT brand, prediction_id, generation_id, look_id, shot_type, variant_index, content_hash, asset, provenance,
                review_state, review_reason, reviewed_by, quality, quality_passed, comment_count, created_sequence, version, last_sequence
         FROM review.predictions WHERE brand = $1 AND ($2::text IS NULL OR review_state = $2)
           AND ($3::text IS NULL OR generation_id = $3) AND ($4::text IS NULL OR look_id = $4)
           AND ($5::boolean IS NULL OR quality_passed = $5)
           AND ($6::bigint IS NULL OR created_sequence < $6)
         ORDER BY created_sequence DESC LIMIT $7",
        PredictionView, [brand, filter.review_state.as_deref(), filter.generation_id.as_deref(), filter.look_id.as_deref(), filter.quality_passed])
}

/// One prediction with its comments and revision requests.
pub async fn get_prediction(
    pool: &PgPool,
    brand: &str,
    prediction_id: &str,
) -> Result<Option<PredictionDetail>, QueryError> {
    let prediction: Option<PredictionView> = sqlx::query_as(
        "SELECT brand, prediction_id, generation_id, look_id, shot_type, variant_index, content_hash, asset, provenance,
                review_state, review_reason, reviewed_by, quality, quality_passed, comment_count, created_sequence, version, last_sequence
         FROM review.predictions WHERE brand = $1 AND prediction_id = $2",
    )
    .bind(brand)
    .bind(prediction_id)
    .fetch_optional(pool)
    .await?;
    let Some(prediction) = prediction else { return Ok(None) };
    let comments = sqlx::query_as(
        "SELECT comment_id, text, actor, created_at FROM review.prediction_comments
         WHERE brand = $1 AND prediction_id = $2 ORDER BY created_sequence",
    )
    .bind(brand)
    .bind(prediction_id)
    .fetch_all(pool)
    .await?;
    let revision_requests = sqlx::query_as(
        "SELECT comment, regions, actor, requested_at FROM review.revision_requests
         WHERE brand = $1 AND prediction_id = $2 ORDER BY created_sequence",
    )
    .bind(brand)
    .bind(prediction_id)
    .fetch_all(pool)
    .await?;
    Ok(Some(PredictionDetail { prediction, comments, revision_requests }))
}

// ---------------------------------------------------------------- delivery

/// An export.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct ExportView {
    /// The brand.
    pub brand: String,
    /// The export id.
    pub export_id: String,
    /// The channel.
    pub channel: String,
    /// The predictions exported (JSON array).
    pub prediction_ids: Value,
    /// The preset spec used (JSON).
    pub preset: Value,
    /// Where it goes (JSON; names of secrets only).
    pub destination: Value,
    /// in_progress, completed or failed.
    pub status: String,
    /// The attempt number.
    pub attempt: i32,
    /// Why it failed.
    pub failure_reason: Option<String>,
    /// Renditions delivered, once completed.
    pub delivered: i32,
    /// Position of the creating event (the list order).
    pub created_sequence: i64,
    /// The export aggregate's version.
    pub version: i64,
    /// The stream sequence of the last event applied to this row.
    pub last_sequence: i64,
}

/// A rendition of an export and its delivery.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct RenditionView {
    /// The rendition id.
    pub rendition_id: String,
    /// The prediction it renders.
    pub prediction_id: String,
    /// The file name.
    pub file_name: String,
    /// The checksum.
    pub checksum: String,
    /// The asset reference (JSON).
    pub asset: Value,
    /// Whether it was delivered.
    pub delivered: bool,
    /// Where (JSON), once delivered.
    pub location: Option<Value>,
    /// When, once delivered.
    #[serde(with = "time::serde::rfc3339::option")]
    pub delivered_at: Option<OffsetDateTime>,
    /// The products it shows (JSON array of product ids).
    pub products: Value,
}

/// One attempt to reach an export's destination.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct DeliveryAttemptView {
    /// The attempt's number, from 1.
    pub number: i32,
    /// Whether the destination accepted it.
    pub succeeded: bool,
    /// What happened.
    pub detail: String,
    /// When the next attempt was due, after a failure.
    pub retry_in_seconds: Option<i64>,
    /// When it was made.
    #[serde(with = "time::serde::rfc3339")]
    pub attempted_at: OffsetDateTime,
}

/// An export with its renditions.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ExportDetail {
    /// The export.
    #[serde(flatten)]
    pub export: ExportView,
    /// Renditions, oldest first.
    pub renditions: Vec<RenditionView>,
    /// Attempts to reach the destination, first first.
    pub delivery_attempts: Vec<DeliveryAttemptView>,
}

/// One rendition of a product delivered somewhere: what, where, when.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct ProductDeliveryView {
    /// The export that delivered it.
    pub export_id: String,
    /// The channel preset it was formatted for.
    pub channel: String,
    /// The destination (JSON; names of secrets only).
    pub destination: Value,
    /// The rendition.
    pub rendition_id: String,
    /// The prediction it renders.
    pub prediction_id: String,
    /// Its file name.
    pub file_name: String,
    /// The sha256 of what was delivered.
    pub checksum: String,
    /// Where it is (JSON string).
    pub location: Value,
    /// When it was delivered.
    #[serde(with = "time::serde::rfc3339")]
    pub delivered_at: OffsetDateTime,
    /// Position of the delivering export (the list order).
    pub created_sequence: i64,
}

/// What has been delivered where for one product, newest export first.
pub async fn list_product_deliveries(
    pool: &PgPool,
    brand: &str,
    product_id: &str,
    request: &PageRequest,
) -> Result<Page<ProductDeliveryView>, QueryError> {
    let product = sqlx::types::Json(Value::Array(vec![Value::String(product_id.to_owned())]));
    list_query!(pool, request,
        "SELECT r.export_id, e.channel, e.destination, r.rendition_id, r.prediction_id, r.file_name, r.checksum,
                r.location, r.delivered_at, r.created_sequence
         FROM delivery.export_renditions r
         JOIN delivery.exports e ON e.brand = r.brand AND e.export_id = r.export_id
         WHERE r.brand = $1 AND r.products @> $2 AND r.delivered
           AND ($3::bigint IS NULL OR r.created_sequence < $3)
         ORDER BY r.created_sequence DESC LIMIT $4",
        ProductDeliveryView, [brand, product])
}

/// Of `predictions`, those already delivered by an export of the brand with
/// exactly this preset to exactly this destination — re-exporting them would
/// deliver the same bytes again (formatting is deterministic), so an export
/// request skips them unless forced.
pub async fn delivered_unchanged(
    pool: &PgPool,
    brand: &str,
    predictions: &[String],
    preset: &Value,
    destination: &Value,
) -> Result<Vec<String>, QueryError> {
    Ok(sqlx::query_scalar(
        "SELECT DISTINCT r.prediction_id
         FROM delivery.export_renditions r
         JOIN delivery.exports e ON e.brand = r.brand AND e.export_id = r.export_id
         WHERE r.brand = $1 AND r.prediction_id = ANY($2) AND r.delivered
           AND e.preset = $3 AND e.destination = $4",
    )
    .bind(brand)
    .bind(predictions)
    .bind(sqlx::types::Json(preset))
    .bind(sqlx::types::Json(destination))
    .fetch_all(pool)
    .await?)
}

/// The brand's exports, optionally of one status.
pub async fn list_exports(
    pool: &PgPool,
    brand: &str,
    status: Option<&str>,
    request: &PageRequest,
) -> Result<Page<ExportView>, QueryError> {
    list_query!(pool, request,
        "SELECT brand, export_id, channel, prediction_ids, preset, destination, status, attempt, failure_reason, delivered,
                created_sequence, version, last_sequence
         FROM delivery.exports WHERE brand = $1 AND ($2::text IS NULL OR status = $2)
           AND ($3::bigint IS NULL OR created_sequence < $3)
         ORDER BY created_sequence DESC LIMIT $4",
        ExportView, [brand, status])
}

/// One export with its renditions.
pub async fn get_export(
    pool: &PgPool,
    brand: &str,
    export_id: &str,
) -> Result<Option<ExportDetail>, QueryError> {
    let export: Option<ExportView> = sqlx::query_as(
        "SELECT brand, export_id, channel, prediction_ids, preset, destination, status, attempt, failure_reason, delivered,
                created_sequence, version, last_sequence
         FROM delivery.exports WHERE brand = $1 AND export_id = $2",
    )
    .bind(brand)
    .bind(export_id)
    .fetch_optional(pool)
    .await?;
    let Some(export) = export else { return Ok(None) };
    let renditions = sqlx::query_as(
        "SELECT rendition_id, prediction_id, file_name, checksum, asset, delivered, location, delivered_at, products
         FROM delivery.export_renditions WHERE brand = $1 AND export_id = $2 ORDER BY created_sequence",
    )
    .bind(brand)
    .bind(export_id)
    .fetch_all(pool)
    .await?;
    let delivery_attempts = sqlx::query_as(
        "SELECT number, succeeded, detail, retry_in_seconds, attempted_at FROM delivery.export_delivery_attempts
         WHERE brand = $1 AND export_id = $2 ORDER BY number",
    )
    .bind(brand)
    .bind(export_id)
    .fetch_all(pool)
    .await?;
    Ok(Some(ExportDetail { export, renditions, delivery_attempts }))
}

// ---------------------------------------------------------------- usage

/// What one provider's steps cost in one month.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ProviderUsage {
    /// The provider, e.g. `local`, `fal`.
    pub provider: String,
    /// Steps completed.
    pub steps: i64,
    /// Their cost, in millionths of the billing currency.
    pub cost_micros: i64,
    /// Their time, in milliseconds.
    pub duration_ms: i64,
}

/// One calendar month (UTC) of generation work.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct MonthUsage {
    /// The month, `YYYY-MM`.
    pub month: String,
    /// Steps completed.
    pub steps: i64,
    /// Their cost, in millionths of the billing currency.
    pub cost_micros: i64,
    /// By provider, most expensive first.
    pub providers: Vec<ProviderUsage>,
}

/// What one shooting's generation work cost within the period.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ShootingUsage {
    /// The shooting.
    pub shooting_id: String,
    /// Its name, when the shooting is in the read model.
    pub name: Option<String>,
    /// Steps completed.
    pub steps: i64,
    /// Their cost, in millionths of the billing currency.
    pub cost_micros: i64,
}

/// A brand's generation costs over a range of months.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct UsageReport {
    /// The first month included, `YYYY-MM`.
    pub from: String,
    /// The last month included, `YYYY-MM`.
    pub to: String,
    /// Steps completed in the period.
    pub steps: i64,
    /// Their cost, in millionths of the billing currency.
    pub cost_micros: i64,
    /// Month by month, oldest first; months without work are left out.
    pub months: Vec<MonthUsage>,
    /// Shooting by shooting, most expensive first.
    pub shootings: Vec<ShootingUsage>,
}

/// One row of `production.usage_monthly`, with the shooting's name.
#[derive(sqlx::FromRow)]
struct UsageRow {
    month: time::Date,
    shooting_id: String,
    name: Option<String>,
    provider: String,
    steps: i64,
    cost_micros: i64,
    duration_ms: i64,
}

fn month_label(month: time::Date) -> String {
    format!("{:04}-{:02}", month.year(), u8::from(month.month()))
}

/// The brand's generation costs from the month of `from` to the month of `to`
/// (both included; the days are ignored).
pub async fn usage_report(
    pool: &PgPool,
    brand: &str,
    from: time::Date,
    to: time::Date,
) -> Result<UsageReport, QueryError> {
    let rows: Vec<UsageRow> = sqlx::query_as(
        "SELECT u.month, u.shooting_id, s.name, u.provider, u.steps, u.cost_micros, u.duration_ms
         FROM production.usage_monthly u
         LEFT JOIN production.shootings s ON s.brand = u.brand AND s.shooting_id = u.shooting_id
         WHERE u.brand = $1 AND u.month >= date_trunc('month', $2::date) AND u.month <= $3::date
         ORDER BY u.month, u.provider",
    )
    .bind(brand)
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?;
    let mut months: Vec<MonthUsage> = Vec::new();
    let mut shootings: std::collections::BTreeMap<String, ShootingUsage> = std::collections::BTreeMap::new();
    for UsageRow { month, shooting_id, name, provider, steps, cost_micros, duration_ms } in rows {
        let label = month_label(month);
        if months.last().is_none_or(|m| m.month != label) {
            months.push(MonthUsage { month: label, steps: 0, cost_micros: 0, providers: Vec::new() });
        }
        let current = months.last_mut().unwrap_or_else(|| unreachable!("pushed above"));
        current.steps += steps;
        current.cost_micros += cost_micros;
        match current.providers.iter_mut().find(|p| p.provider == provider) {
            Some(entry) => {
                entry.steps += steps;
                entry.cost_micros += cost_micros;
                entry.duration_ms += duration_ms;
            }
            None => current.providers.push(ProviderUsage { provider, steps, cost_micros, duration_ms }),
        }
        let shooting = shootings.entry(shooting_id.clone()).or_insert(ShootingUsage {
            shooting_id,
            name,
            steps: 0,
            cost_micros: 0,
        });
        shooting.steps += steps;
        shooting.cost_micros += cost_micros;
    }
    for month in &mut months {
        month.providers.sort_by(|a, b| b.cost_micros.cmp(&a.cost_micros).then(a.provider.cmp(&b.provider)));
    }
    let mut shootings: Vec<ShootingUsage> = shootings.into_values().collect();
    shootings.sort_by(|a, b| b.cost_micros.cmp(&a.cost_micros).then(a.shooting_id.cmp(&b.shooting_id)));
    Ok(UsageReport {
        from: month_label(from),
        to: month_label(to),
        steps: months.iter().map(|m| m.steps).sum(),
        cost_micros: months.iter().map(|m| m.cost_micros).sum(),
        months,
        shootings,
    })
}

// ---------------------------------------------------------------- activity

/// One entry of a brand's activity feed.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct ActivityView {
    /// The stream sequence of the event (the list order).
    #[sqlx(rename = "sequence")]
    pub created_sequence: i64,
    /// The brand.
    pub brand: String,
    /// When it happened.
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    /// Who (JSON actor).
    pub actor: Value,
    /// The event type, e.g. `product.created`.
    pub event_type: String,
    /// The aggregate kind.
    pub aggregate_type: String,
    /// The aggregate id.
    pub aggregate_id: String,
    /// The aggregate's version after the event.
    pub aggregate_version: i64,
    /// A short human summary.
    pub summary: String,
}

/// The brand's activity feed, newest first, optionally of one aggregate.
pub async fn list_activity(
    pool: &PgPool,
    brand: &str,
    aggregate: Option<(&str, &str)>,
    request: &PageRequest,
) -> Result<Page<ActivityView>, QueryError> {
    let (kind, id) = aggregate.unzip();
    list_query!(pool, request,
        "SELECT sequence, brand, occurred_at, actor, event_type, aggregate_type, aggregate_id, aggregate_version, summary
         FROM activity.activity WHERE brand = $1 AND ($2::text IS NULL OR aggregate_type = $2)
           AND ($3::text IS NULL OR aggregate_id = $3) AND ($4::bigint IS NULL OR sequence < $4)
         ORDER BY sequence DESC LIMIT $5",
        ActivityView, [brand, kind, id])
}

// ---------------------------------------------------------------- consistency

/// A projection's checkpoint: the last stream sequence it has applied (or
/// moved past because nothing up to it concerned it). 0 before it started.
pub async fn checkpoint(pool: &PgPool, projection: &str) -> Result<u64, QueryError> {
    let Some(projection) = crate::by_name(projection) else { return Ok(0) };
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(format!("\"{}\".checkpoint", projection.schema))
        .fetch_one(pool)
        .await?;
    if !exists {
        return Ok(0);
    }
    // The schema is a projection's static name.
    let sql = format!("SELECT coalesce(max(last_sequence), 0) FROM \"{}\".checkpoint", projection.schema);
    let value: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(pool).await?;
    Ok(u64::try_from(value).unwrap_or(0))
}

/// The read model has not reached the requested sequence within the timeout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the read model has reached sequence {reached:?} of {wanted} (projection {projection}); try again shortly"
)]
pub struct NotYetConsistent {
    /// The projection waited for (`all` for every projection).
    pub projection: String,
    /// The sequence asked for.
    pub wanted: u64,
    /// The sequence reached, when known.
    pub reached: Option<u64>,
}

/// Waits until `projection` (or every projection, for `None`) has applied
/// the stream up to `sequence`, polling its checkpoint, at most `timeout`.
pub async fn wait_for_sequence(
    pool: &PgPool,
    projection: Option<&str>,
    sequence: u64,
    timeout: Duration,
) -> Result<(), NotYetConsistent> {
    let schemas: Vec<&'static str> = match projection {
        None => crate::ALL.iter().map(|p| p.schema).collect(),
        Some(name) => match crate::by_name(name) {
            Some(p) => vec![p.schema],
            None => vec![],
        },
    };
    let label = projection.unwrap_or("all").to_owned();
    let not_yet = |reached| NotYetConsistent { projection: label.clone(), wanted: sequence, reached };
    if schemas.is_empty() {
        return Err(not_yet(None));
    }
    // Built from static schema names only.
    let sql = schemas
        .iter()
        .map(|schema| format!("(SELECT coalesce(max(last_sequence), 0) FROM \"{schema}\".checkpoint)"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = if schemas.len() == 1 { format!("SELECT {sql}") } else { format!("SELECT LEAST({sql})") };
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    let mut reached = None;
    loop {
        if let Ok(value) =
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.clone())).fetch_one(pool).await
        {
            let value = u64::try_from(value).unwrap_or(0);
            reached = Some(value);
            if value >= sequence {
                return Ok(());
            }
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Err(not_yet(reached));
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}
