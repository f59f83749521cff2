//! Catalog files of imports, read into rows: CSV with a header row, or JSON
//! Lines (one object per line). Pure functions over the file's bytes, no IO.
//!
//! Two kinds of problems, kept apart on purpose:
//! - the whole file is unusable (not text, a spreadsheet, no `sku` column, an
//!   unknown column, too many rows or images): [`CatalogProblem`], refused up
//!   front with a 4xx before anything is stored;
//! - one row is wrong (an empty name, a bad SKU, a SKU seen before): the row
//!   carries its [`ColumnError`]s and the import reports them, the other rows
//!   go on.
//!
//! Columns / fields: `sku`, `name`, `category` (required), `attributes`
//! (CSV: `key=value; key=value` or a JSON object; JSON Lines: an object), and
//! `images` (CSV: references separated by `|`; JSON Lines: an array of
//! strings or `{"source": …, "view": …}` objects). An image reference is an
//! `http(s)` URL or the path of a file in the images ZIP, optionally prefixed
//! with its view (`back=shots/dr-1-back.jpg`); the first image defaults to
//! `front`, the others to `detail`.
//!
//! Rows are numbered as the person sees them: the line a row starts on (in a
//! spreadsheet, the header is row 1 and the first product row 2).

use std::collections::{BTreeMap, HashMap};

use gps_domain::Aggregate;
use gps_domain::ids::{BrandId, ProductId};
use gps_domain::import::CatalogFormat;
use gps_domain::product::{ImageView, MAX_IMAGES, Product, ProductCommand};
use gps_domain::values::{Category, Name, Sku};

/// The columns a catalog may have.
pub const COLUMNS: &[&str] = &["sku", "name", "category", "attributes", "images"];
const REQUIRED: &[&str] = &["sku", "name", "category"];

/// Limits of one catalog file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatalogLimits {
    /// The most data rows.
    pub max_rows: u32,
    /// The most image references, all rows together.
    pub max_images: u32,
}

/// Why a whole catalog file is refused, for the person who sent it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogProblem {
    /// Not a text file (a PDF, a spreadsheet, an image, …).
    #[error("{0}")]
    NotText(String),
    /// Text, but not CSV / JSON Lines as GPS reads them.
    #[error("{0}")]
    Unreadable(String),
    /// The header lacks a required column or names an unknown one.
    #[error("{0}")]
    Columns(String),
    /// No data rows.
    #[error("the catalog has no product rows; there is nothing to import")]
    Empty,
    /// Over a limit.
    #[error("{0}")]
    TooLarge(String),
}

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// A file of the images ZIP, by its path in the archive.
    Archive(String),
    /// An `http` or `https` URL, fetched under the SSRF rules.
    Url(String),
}

/// One image reference of a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Where the bytes come from.
    pub source: ImageSource,
    /// Which view it shows.
    pub view: ImageView,
    /// The reference as written in the file (for error messages).
    pub written: String,
}

/// A row whose values all parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct RowData {
    /// SKU.
    pub sku: Sku,
    /// Name.
    pub name: Name,
    /// Category.
    pub category: Category,
    /// Attributes.
    pub attributes: BTreeMap<String, String>,
    /// Images, in order.
    pub images: Vec<ImageRef>,
}

/// One problem of one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnError {
    /// The column (or JSON field).
    pub column: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl ColumnError {
    /// A problem with `column`.
    pub fn new(column: &str, message: impl Into<String>) -> Self {
        ColumnError { column: column.to_owned(), message: message.into() }
    }
}

/// One data row of a catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogRow {
    /// The row as the person sees it (the line it starts on).
    pub row: u32,
    /// The SKU as written, when there is one (for the error report).
    pub sku: Option<String>,
    /// The values, or why the row cannot be imported.
    pub data: Result<RowData, Vec<ColumnError>>,
}

/// A catalog file read into rows.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogFile {
    /// CSV or JSON Lines.
    pub format: CatalogFormat,
    /// The data rows, in file order.
    pub rows: Vec<CatalogRow>,
}

impl CatalogFile {
    /// How many image references the rows hold.
    pub fn image_count(&self) -> usize {
        self.rows.iter().filter_map(|row| row.data.as_ref().ok()).map(|data| data.images.len()).sum()
    }
}

/// The format named by a form field, a file name or, failing both, the content.
pub fn detect_format(
    declared: Option<&str>,
    file_name: Option<&str>,
    bytes: &[u8],
) -> Result<CatalogFormat, CatalogProblem> {
    if let Some(declared) = declared {
        return match declared.trim().to_ascii_lowercase().as_str() {
            "csv" => Ok(CatalogFormat::Csv),
            "jsonl" | "ndjson" | "json_lines" | "json-lines" => Ok(CatalogFormat::JsonLines),
            other => Err(CatalogProblem::Unreadable(format!(
                "format {other:?} is not one GPS reads; give csv or jsonl"
            ))),
        };
    }
    let extension = file_name.and_then(|name| name.rsplit_once('.')).map(|(_, ext)| ext.to_ascii_lowercase());
    match extension.as_deref() {
        Some("csv" | "tsv" | "txt") => return Ok(CatalogFormat::Csv),
        Some("jsonl" | "ndjson" | "json") => return Ok(CatalogFormat::JsonLines),
        _ => {}
    }
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace() && **b != 0xEF && **b != 0xBB && **b != 0xBF);
    Ok(if first == Some(&b'{') { CatalogFormat::JsonLines } else { CatalogFormat::Csv })
}

/// What a binary file is by its signature, when it has a known one.
fn known_binary(bytes: &[u8]) -> Option<&'static str> {
    let starts = |signature: &[u8]| bytes.starts_with(signature);
    if starts(b"%PDF") {
        Some("a PDF document")
    } else if starts(b"PK\x03\x04") {
        Some("a ZIP archive or an Excel/Numbers workbook (export the sheet as CSV)")
    } else if starts(&[0xD0, 0xCF, 0x11, 0xE0]) {
        Some("an old Excel workbook (export the sheet as CSV)")
    } else if starts(&[0xFF, 0xD8, 0xFF]) || starts(b"\x89PNG") || starts(b"GIF8") {
        Some("an image")
    } else {
        None
    }
}

/// Reads `bytes` as a catalog of `format`, within `limits`.
pub fn read(
    bytes: &[u8],
    format: CatalogFormat,
    limits: CatalogLimits,
) -> Result<CatalogFile, CatalogProblem> {
    let refuse_binary = || {
        CatalogProblem::NotText(format!(
            "the catalog is {}, not a CSV or JSON Lines text file",
            known_binary(bytes).unwrap_or("binary data")
        ))
    };
    if known_binary(bytes).is_some() || bytes.contains(&0) {
        return Err(refuse_binary());
    }
    let text = std::str::from_utf8(bytes).map_err(|error| {
        if bytes.iter().take(512).filter(|b| **b < 0x09).count() > 0 {
            refuse_binary()
        } else {
            CatalogProblem::Unreadable(format!(
                "the catalog is not UTF-8 text (invalid byte at position {}); save it as UTF-8 CSV",
                error.valid_up_to()
            ))
        }
    })?;
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let rows = match format {
        CatalogFormat::Csv => read_csv(text, limits)?,
        CatalogFormat::JsonLines => read_json_lines(text, limits)?,
    };
    if rows.is_empty() {
        return Err(CatalogProblem::Empty);
    }
    let mut file = CatalogFile { format, rows };
    mark_repeated_skus(&mut file.rows);
    let images = file.image_count();
    if images > limits.max_images as usize {
        return Err(CatalogProblem::TooLarge(format!(
            "the catalog references {images} images; the limit is {} per import; split the file",
            limits.max_images
        )));
    }
    Ok(file)
}

fn too_many_rows(limits: CatalogLimits) -> CatalogProblem {
    CatalogProblem::TooLarge(format!(
        "the catalog has more than {} product rows, the limit per import; split the file",
        limits.max_rows
    ))
}

/// A SKU appears once per file: a later row with the same SKU fails (which
/// of the two is right is for a person to decide, not for GPS to guess).
fn mark_repeated_skus(rows: &mut [CatalogRow]) {
    let mut seen: HashMap<String, u32> = HashMap::new();
    for row in rows {
        let Some(sku) = row.sku.clone() else { continue };
        let Some(first) = seen.get(&sku) else {
            seen.insert(sku, row.row);
            continue;
        };
        let repeated = ColumnError::new(
            "sku",
            format!("SKU {sku} is already in row {first}; each SKU may appear once per file"),
        );
        match &mut row.data {
            Ok(_) => row.data = Err(vec![repeated]),
            Err(errors) => errors.insert(0, repeated),
        }
    }
}

// ---------------------------------------------------------------------------
// CSV

/// Splits CSV text into records (RFC 4180: quoted fields may hold the
/// delimiter, line breaks and doubled quotes), each with the line it starts
/// on. Blank lines are skipped.
fn csv_records(text: &str, delimiter: char) -> Result<Vec<(u32, Vec<String>)>, CatalogProblem> {
    let mut records = Vec::new();
    let mut fields: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut line: u32 = 1;
    let mut start_line: u32 = 1;
    let mut chars = text.chars().peekable();
    let mut finish = |fields: &mut Vec<String>, field: &mut String, start: u32| {
        fields.push(std::mem::take(field));
        let record = std::mem::take(fields);
        if !(record.len() == 1 && record[0].trim().is_empty()) {
            records.push((start, record));
        }
    };
    let mut at_field_start = true;
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                '\n' => {
                    line += 1;
                    field.push('\n');
                }
                other => field.push(other),
            }
            continue;
        }
        match c {
            '"' if at_field_start || field.trim().is_empty() => {
                field.clear();
                quoted = true;
                at_field_start = false;
            }
            c if c == delimiter => {
                fields.push(std::mem::take(&mut field));
                at_field_start = true;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' | '\r' => {
                finish(&mut fields, &mut field, start_line);
                line += 1;
                start_line = line;
                at_field_start = true;
            }
            other => {
                field.push(other);
                at_field_start = false;
            }
        }
    }
    if quoted {
        return Err(CatalogProblem::Unreadable(format!(
            "the catalog's row {start_line} opens a quoted field that is never closed; check its quotes (\")"
        )));
    }
    if !field.is_empty() || !fields.is_empty() {
        finish(&mut fields, &mut field, start_line);
    }
    Ok(records)
}

fn read_csv(text: &str, limits: CatalogLimits) -> Result<Vec<CatalogRow>, CatalogProblem> {
    let first_line = text.lines().find(|line| !line.trim().is_empty()).unwrap_or_default();
    // Spreadsheets in many locales export `;`-separated "CSV"; tabs are TSV.
    let delimiter = [',', ';', '\t']
        .into_iter()
        .max_by_key(|d| first_line.matches(*d).count())
        .filter(|d| first_line.contains(*d))
        .unwrap_or(',');
    let mut records = csv_records(text, delimiter)?.into_iter();
    let Some((_, header)) = records.next() else { return Err(CatalogProblem::Empty) };
    let header: Vec<String> = header.iter().map(|name| name.trim().to_ascii_lowercase()).collect();
    if header.iter().all(|name| !COLUMNS.contains(&name.as_str())) && header.len() <= 1 {
        return Err(CatalogProblem::Unreadable(format!(
            "the catalog's first row is not a header of columns; it should name the columns {}",
            COLUMNS.join(", ")
        )));
    }
    if let Some(unknown) = header.iter().find(|name| !COLUMNS.contains(&name.as_str())) {
        return Err(CatalogProblem::Columns(format!(
            "the catalog has a column {unknown:?} that GPS does not know; the columns are {} \
             (put other facts into attributes, e.g. `colour=black; material=linen`)",
            COLUMNS.join(", ")
        )));
    }
    if let Some(missing) = REQUIRED.iter().find(|name| !header.iter().any(|h| h == *name)) {
        return Err(CatalogProblem::Columns(format!(
            "the catalog has no `{missing}` column (its columns are {}); the first row must name the \
             columns, with at least sku, name and category",
            header.join(", ")
        )));
    }
    if let Some(repeated) = header.iter().enumerate().find(|(i, name)| header[..*i].contains(name)) {
        return Err(CatalogProblem::Columns(format!("the catalog names the column {:?} twice", repeated.1)));
    }
    let mut rows = Vec::new();
    for (line, record) in records {
        if rows.len() >= limits.max_rows as usize {
            return Err(too_many_rows(limits));
        }
        if record.len() != header.len() {
            let sku = header
                .iter()
                .position(|h| h == "sku")
                .and_then(|i| record.get(i))
                .map(|s| s.trim().to_owned());
            rows.push(CatalogRow {
                row: line,
                sku: sku.filter(|s| !s.is_empty()),
                data: Err(vec![ColumnError::new(
                    "row",
                    format!(
                        "the row has {} fields but the header has {} columns; check for a stray {} or an unquoted value",
                        record.len(),
                        header.len(),
                        if delimiter == '\t' { "tab".to_owned() } else { format!("{delimiter:?}") }
                    ),
                )]),
            });
            continue;
        }
        let value = |column: &str| -> Option<&str> {
            header.iter().position(|h| h == column).map(|i| record[i].as_str())
        };
        let sku = value("sku").map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
        let attributes = match value("attributes") {
            None => Ok(BTreeMap::new()),
            Some(raw) => attributes_from_text(raw),
        };
        let images = match value("images") {
            None => Ok(Vec::new()),
            Some(raw) => image_refs(raw.split(['|', '\n']).map(|s| (s.to_owned(), None))),
        };
        rows.push(CatalogRow {
            row: line,
            sku,
            data: row_data(value("sku"), value("name"), value("category"), attributes, images),
        });
    }
    Ok(rows)
}

/// `key=value; key=value`, or a JSON object.
fn attributes_from_text(raw: &str) -> Result<BTreeMap<String, String>, ColumnError> {
    let raw = raw.trim();
    if raw.starts_with('{') {
        let value: serde_json::Value = serde_json::from_str(raw).map_err(|error| {
            ColumnError::new("attributes", format!("the attributes look like JSON but do not parse: {error}"))
        })?;
        return attributes_from_json(&value);
    }
    let mut attributes = BTreeMap::new();
    for pair in raw.split(';').map(str::trim).filter(|pair| !pair.is_empty()) {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(ColumnError::new(
                "attributes",
                format!("{pair:?} is not `key=value`; write attributes as `colour=black; material=linen`"),
            ));
        };
        attributes.insert(key.trim().to_owned(), value.trim().to_owned());
    }
    Ok(attributes)
}

fn attributes_from_json(value: &serde_json::Value) -> Result<BTreeMap<String, String>, ColumnError> {
    let serde_json::Value::Object(map) = value else {
        return Err(ColumnError::new("attributes", "give the attributes as an object of names to values"));
    };
    map.iter()
        .map(|(key, value)| match value {
            serde_json::Value::String(text) => Ok((key.clone(), text.clone())),
            serde_json::Value::Number(_) | serde_json::Value::Bool(_) => Ok((key.clone(), value.to_string())),
            _ => Err(ColumnError::new(
                "attributes",
                format!("attribute {key:?} must be text, a number or true/false, not a list or object"),
            )),
        })
        .collect()
}

/// Image references: `[view=]url-or-path`, blanks skipped.
fn image_refs(entries: impl Iterator<Item = (String, Option<String>)>) -> Result<Vec<ImageRef>, ColumnError> {
    let mut images = Vec::new();
    for (entry, declared_view) in entries {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        let (view, reference) = match declared_view {
            Some(view) => (Some(parse_view(&view)?), entry),
            None => match entry.split_once('=') {
                Some((view, rest)) if is_view(view.trim()) => (Some(parse_view(view)?), rest.trim()),
                _ => (None, entry),
            },
        };
        let view = view.unwrap_or(if images.is_empty() { ImageView::Front } else { ImageView::Detail });
        let lower = reference.to_ascii_lowercase();
        let source = if lower.starts_with("http://") || lower.starts_with("https://") {
            ImageSource::Url(reference.to_owned())
        } else if lower.contains("://") {
            return Err(ColumnError::new(
                "images",
                format!(
                    "{reference:?}: only http and https URLs are fetched; or put the file into the images ZIP"
                ),
            ));
        } else {
            ImageSource::Archive(reference.trim_start_matches("./").to_owned())
        };
        images.push(ImageRef { source, view, written: reference.to_owned() });
    }
    if images.len() > MAX_IMAGES {
        return Err(ColumnError::new(
            "images",
            format!("the row has {} images; a product has at most {MAX_IMAGES}", images.len()),
        ));
    }
    Ok(images)
}

const VIEWS: &str = "front, back, detail, flat_lay, ghost_mannequin";

fn is_view(raw: &str) -> bool {
    parse_view(raw).is_ok()
}

fn parse_view(raw: &str) -> Result<ImageView, ColumnError> {
    serde_json::from_value(serde_json::Value::String(raw.trim().to_ascii_lowercase()))
        .map_err(|_| ColumnError::new("images", format!("view {raw:?} is not one of {VIEWS}")))
}

/// Parses the values of one row, collecting every problem (not only the first).
fn row_data(
    sku: Option<&str>,
    name: Option<&str>,
    category: Option<&str>,
    attributes: Result<BTreeMap<String, String>, ColumnError>,
    images: Result<Vec<ImageRef>, ColumnError>,
) -> Result<RowData, Vec<ColumnError>> {
    let mut errors = Vec::new();
    let mut field = |column: &str, raw: Option<&str>| -> Option<String> {
        match raw.map(str::trim).filter(|raw| !raw.is_empty()) {
            Some(raw) => Some(raw.to_owned()),
            None => {
                errors.push(ColumnError::new(column, format!("the {column} is empty; every row needs one")));
                None
            }
        }
    };
    let (sku, name, category) = (field("sku", sku), field("name", name), field("category", category));
    let sku = sku.and_then(|raw| {
        Sku::parse(&raw).map_err(|e| errors.push(ColumnError::new("sku", e.to_string()))).ok()
    });
    let name = name.and_then(|raw| {
        Name::parse(&raw).map_err(|e| errors.push(ColumnError::new("name", e.to_string()))).ok()
    });
    let category = category.and_then(|raw| {
        Category::parse(raw.to_ascii_lowercase())
            .map_err(|e| errors.push(ColumnError::new("category", e.to_string())))
            .ok()
    });
    let attributes = attributes.map_err(|e| errors.push(e)).ok();
    let images = images.map_err(|e| errors.push(e)).ok();
    match (sku, name, category, attributes, images) {
        (Some(sku), Some(name), Some(category), Some(attributes), Some(images)) if errors.is_empty() => {
            // The product's own rules (attribute count and sizes) judge the row
            // now, so a row the domain would refuse fails before any image is fetched.
            let probe = ProductCommand::ImportProduct {
                product_id: ProductId::parse("probe").expect("a valid id"),
                brand_id: BrandId::parse("probe").expect("a valid id"),
                sku: sku.clone(),
                name: name.clone(),
                category: category.clone(),
                attributes: attributes.clone(),
                images: Vec::new(),
            };
            Product::default()
                .decide(&probe)
                .map_err(|error| vec![ColumnError::new("attributes", error.to_string())])?;
            Ok(RowData { sku, name, category, attributes, images })
        }
        _ => Err(errors),
    }
}

// ---------------------------------------------------------------------------
// JSON Lines

fn read_json_lines(text: &str, limits: CatalogLimits) -> Result<Vec<CatalogRow>, CatalogProblem> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        return Err(CatalogProblem::Unreadable(
            "the catalog is a JSON array; send JSON Lines: one product object per line".into(),
        ));
    }
    let mut rows = Vec::new();
    let mut first = true;
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let row = u32::try_from(index + 1).unwrap_or(u32::MAX);
        let parsed: Result<serde_json::Value, _> = serde_json::from_str(line);
        if first {
            first = false;
            if !matches!(parsed, Ok(serde_json::Value::Object(_))) {
                return Err(CatalogProblem::Unreadable(
                    "the catalog's first line is not a JSON object; send JSON Lines (one product object \
                     per line) or a CSV file with a header row"
                        .into(),
                ));
            }
        }
        if rows.len() >= limits.max_rows as usize {
            return Err(too_many_rows(limits));
        }
        rows.push(json_row(row, parsed));
    }
    Ok(rows)
}

fn json_row(row: u32, parsed: Result<serde_json::Value, serde_json::Error>) -> CatalogRow {
    let object = match parsed {
        Ok(serde_json::Value::Object(object)) => object,
        Ok(_) => {
            return CatalogRow {
                row,
                sku: None,
                data: Err(vec![ColumnError::new(
                    "row",
                    "the line is JSON but not an object; give one product object per line",
                )]),
            };
        }
        Err(error) => {
            return CatalogRow {
                row,
                sku: None,
                data: Err(vec![ColumnError::new("row", format!("the line is not valid JSON: {error}"))]),
            };
        }
    };
    let text = |key: &str| -> Result<Option<String>, ColumnError> {
        match object.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(text)) => Ok(Some(text.clone())),
            Some(serde_json::Value::Number(number)) if key == "sku" => Ok(Some(number.to_string())),
            Some(_) => Err(ColumnError::new(key, format!("`{key}` must be a string"))),
        }
    };
    let sku_written = text("sku").ok().flatten().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    let mut errors = Vec::new();
    if let Some(unknown) = object.keys().find(|key| !COLUMNS.contains(&key.as_str())) {
        errors.push(ColumnError::new(
            unknown,
            format!("unknown field `{unknown}`; the fields are {}", COLUMNS.join(", ")),
        ));
    }
    let mut value = |key: &str| text(key).map_err(|e| errors.push(e)).ok().flatten();
    let (sku, name, category) = (value("sku"), value("name"), value("category"));
    let attributes = match object.get("attributes") {
        None | Some(serde_json::Value::Null) => Ok(BTreeMap::new()),
        Some(value) => attributes_from_json(value),
    };
    let images = match object.get("images") {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                serde_json::Value::String(reference) => Ok((reference.clone(), None)),
                serde_json::Value::Object(spec) => {
                    let source = spec.get("source").or_else(|| spec.get("url")).or_else(|| spec.get("file"));
                    match source.and_then(|s| s.as_str()) {
                        Some(source) => Ok((
                            source.to_owned(),
                            spec.get("view").and_then(|v| v.as_str()).map(str::to_owned),
                        )),
                        None => Err(ColumnError::new(
                            "images",
                            "an image object needs a `source` (a URL or a file in the ZIP) and may give a `view`",
                        )),
                    }
                }
                _ => Err(ColumnError::new("images", "each image is a string or a {\"source\", \"view\"} object")),
            })
            .collect::<Result<Vec<_>, _>>()
            .and_then(|entries| image_refs(entries.into_iter())),
        Some(_) => Err(ColumnError::new("images", "`images` must be a list")),
    };
    let data = row_data(sku.as_deref(), name.as_deref(), category.as_deref(), attributes, images);
    let data = match (data, errors.is_empty()) {
        (data, true) => data,
        (Ok(_), false) => Err(errors),
        (Err(mut more), false) => {
            errors.append(&mut more);
            Err(errors)
        }
    };
    CatalogRow { row, sku: sku_written, data }
}

/// Writes one CSV field, quoted when it needs to be (for the error report).
pub fn csv_field(value: &str) -> String {
    // A leading =, +, - or @ would be a formula in a spreadsheet: quote and
    // prefix it so the report cannot run anything when opened.
    let formula = value.starts_with(['=', '+', '-', '@']);
    if formula || value.contains([',', '"', '\n', '\r']) {
        let escaped = value.replace('"', "\"\"");
        if formula { format!("\"'{escaped}\"") } else { format!("\"{escaped}\"") }
    } else {
        value.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: CatalogLimits = CatalogLimits { max_rows: 100, max_images: 100 };

    fn csv(text: &str) -> Result<CatalogFile, CatalogProblem> {
        read(text.as_bytes(), CatalogFormat::Csv, LIMITS)
    }

    #[test]
    fn a_csv_catalog_reads_rows_with_attributes_images_and_quoted_fields() {
        let file = csv(
            "SKU,Name,Category,Attributes,Images\r\n\
             DR-1,\"Linen dress, black\",dresses,colour=black; material=linen,a.jpg|back=https://img.example.com/b.jpg\r\n\
             \r\n\
             DR-2,\"Two\nlines\",Dresses,,\r\n",
        )
        .expect("read");
        assert_eq!(file.rows.len(), 2);
        let first = file.rows[0].data.as_ref().expect("valid");
        assert_eq!(first.name.as_str(), "Linen dress, black");
        assert_eq!(first.attributes.get("material").map(String::as_str), Some("linen"));
        assert_eq!(
            first.images[0],
            ImageRef {
                source: ImageSource::Archive("a.jpg".into()),
                view: ImageView::Front,
                written: "a.jpg".into()
            }
        );
        assert_eq!(first.images[1].view, ImageView::Back);
        assert_eq!(first.images[1].source, ImageSource::Url("https://img.example.com/b.jpg".into()));
        assert_eq!(file.rows[0].row, 2);
        assert_eq!(file.rows[1].row, 4, "rows are numbered by the line they start on");
        assert_eq!(file.rows[1].data.as_ref().expect("valid").category.as_str(), "dresses");
    }

    #[test]
    fn semicolon_separated_csv_from_spreadsheets_is_read() {
        let file = csv("sku;name;category\nDR-1;Dress;dresses\n").expect("read");
        assert!(file.rows[0].data.is_ok());
    }

    #[test]
    fn a_bad_row_names_every_problem_and_the_others_stay_valid() {
        let file = csv("sku,name,category\nDR-1,,Dresses & co\nDR-2,Fine,dresses\nDR-1,Again,dresses\n")
            .expect("read");
        let errors = file.rows[0].data.as_ref().expect_err("bad row");
        let columns: Vec<&str> = errors.iter().map(|e| e.column.as_str()).collect();
        assert_eq!(columns, ["name", "category"]);
        assert!(file.rows[1].data.is_ok());
        let repeated = file.rows[2].data.as_ref().expect_err("repeated SKU");
        assert!(repeated[0].message.contains("already in row 2"), "{repeated:?}");
    }

    #[test]
    fn whole_file_problems_are_refused_up_front() {
        assert!(
            matches!(csv("name,category\nx,y\n"), Err(CatalogProblem::Columns(m)) if m.contains("no `sku` column"))
        );
        assert!(
            matches!(csv("sku,name,category,price\n"), Err(CatalogProblem::Columns(m)) if m.contains("\"price\""))
        );
        assert!(matches!(csv("sku,name,category\n"), Err(CatalogProblem::Empty)));
        assert!(matches!(csv("sku,name,category\n\"DR-1,x,y\n"), Err(CatalogProblem::Unreadable(_))));
        let pdf = read(b"%PDF-1.4\n%\xE2\xE3\xCF\xD3\n1 0 obj\0", CatalogFormat::Csv, LIMITS);
        assert!(matches!(pdf, Err(CatalogProblem::NotText(m)) if m.contains("PDF")));
        let xlsx = read(b"PK\x03\x04\x14\0\0\0\x08\0", CatalogFormat::Csv, LIMITS);
        assert!(matches!(xlsx, Err(CatalogProblem::NotText(m)) if m.contains("Excel")));
        let many: String = std::iter::once("sku,name,category\n".to_owned())
            .chain((0..101).map(|i| format!("S-{i},Name,tops\n")))
            .collect();
        assert!(matches!(csv(&many), Err(CatalogProblem::TooLarge(_))));
    }

    #[test]
    fn json_lines_rows_read_objects_and_report_broken_lines_per_row() {
        let text = "{\"sku\":\"DR-1\",\"name\":\"Dress\",\"category\":\"dresses\",\"attributes\":{\"size\":38},\"images\":[{\"source\":\"http://x.example/a.png\",\"view\":\"flat_lay\"}]}\n\
                    {not json\n\
                    {\"sku\":\"DR-2\",\"name\":\"Dress\",\"category\":\"dresses\",\"price\":3}\n";
        let file = read(text.as_bytes(), CatalogFormat::JsonLines, LIMITS).expect("read");
        let first = file.rows[0].data.as_ref().expect("valid");
        assert_eq!(first.attributes.get("size").map(String::as_str), Some("38"));
        assert_eq!(first.images[0].view, ImageView::FlatLay);
        assert_eq!(file.rows[1].row, 2);
        assert!(file.rows[1].data.is_err());
        let unknown = file.rows[2].data.as_ref().expect_err("unknown field");
        assert_eq!(unknown[0].column, "price");
        assert_eq!(file.rows[2].sku.as_deref(), Some("DR-2"));
        assert!(matches!(
            read(b"[{\"sku\":\"a\"}]", CatalogFormat::JsonLines, LIMITS),
            Err(CatalogProblem::Unreadable(m)) if m.contains("JSON array")
        ));
    }

    #[test]
    fn the_format_comes_from_the_field_the_name_or_the_content() {
        assert_eq!(detect_format(Some("jsonl"), Some("a.csv"), b""), Ok(CatalogFormat::JsonLines));
        assert_eq!(detect_format(None, Some("spring.CSV"), b"{"), Ok(CatalogFormat::Csv));
        assert_eq!(detect_format(None, None, b"  {\"sku\":1}"), Ok(CatalogFormat::JsonLines));
        assert_eq!(detect_format(None, None, b"sku,name"), Ok(CatalogFormat::Csv));
        assert!(detect_format(Some("xlsx"), None, b"").is_err());
    }

    #[test]
    fn report_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(1)"), "\"'=HYPERLINK(1)\"");
    }
}
