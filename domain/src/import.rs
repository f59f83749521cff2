//! The Import aggregate: one catalog import, run as a background job.
//!
//! Why an aggregate: an import changes the catalog, and every change in GPS
//! is an event, so the job's own state is events too — the file it was started
//! with (content-addressed in object storage), its progress in batches of
//! rows with each batch's per-row errors, and how it ended. The read model of
//! imports (progress, the error report) is a projection of these events like
//! any other, the brand's live stream announces each batch, and a job that
//! was interrupted can be resumed from the last recorded row: a batch already
//! recorded is recognised and records nothing again.
//!
//! Rows are counted as the file's data records, 1 to `total_rows`; an error
//! names the row as the person sees it in their file (`row`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::{BrandId, ImportId};
use crate::values::{AssetRef, Name, Text};
use crate::{Aggregate, AggregateKind, DomainError};

/// The most per-row errors one progress batch may carry.
pub const MAX_ERRORS_PER_BATCH: usize = 1000;
/// The longest error message kept, in characters.
pub const MAX_ERROR_MESSAGE_CHARS: usize = 1000;

/// The format of a catalog file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CatalogFormat {
    /// Comma-separated values with a header row.
    Csv,
    /// One JSON object per line.
    JsonLines,
}

/// One problem with one row: what the error report lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ImportRowError {
    /// The row as the person sees it in their file (CSV: the spreadsheet row,
    /// header = 1; JSON Lines: the line).
    pub row: u32,
    /// The row's SKU, when it has a readable one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    /// The column (or JSON field) at fault, e.g. `name` or `images`.
    pub column: String,
    /// What is wrong and what to do.
    pub message: String,
}

/// Import commands.
#[derive(Debug, Clone, PartialEq)]
pub enum ImportCommand {
    /// Starts an import of a checked catalog file.
    StartImport {
        /// The import's id.
        import_id: ImportId,
        /// The brand imported into.
        brand_id: BrandId,
        /// The catalog's format.
        format: CatalogFormat,
        /// The uploaded file's name, when it had one.
        file_name: Option<Name>,
        /// The catalog file as stored.
        catalog: AssetRef,
        /// The ZIP of images as stored, when one was sent.
        images_archive: Option<AssetRef>,
        /// How many data rows the file has.
        total_rows: u32,
    },
    /// Records that rows up to `through_row` were processed.
    RecordImportProgress {
        /// The last row of this batch (data rows, 1-based).
        through_row: u32,
        /// Rows of this batch that created a product.
        created: u32,
        /// Rows of this batch that changed an existing product.
        updated: u32,
        /// Rows of this batch that matched their product already.
        unchanged: u32,
        /// Rows of this batch that failed.
        failed: u32,
        /// Why they failed (one or more errors per failed row).
        errors: Vec<ImportRowError>,
    },
    /// Ends an import whose every row was processed.
    CompleteImport,
    /// Ends an import that cannot go on.
    FailImport {
        /// Why.
        reason: Text,
    },
}

/// An import was started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ImportStarted {
    /// The import's id.
    pub import_id: ImportId,
    /// The brand imported into.
    pub brand_id: BrandId,
    /// The catalog's format.
    pub format: CatalogFormat,
    /// The uploaded file's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<Name>,
    /// The catalog file as stored.
    pub catalog: AssetRef,
    /// The ZIP of images as stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images_archive: Option<AssetRef>,
    /// How many data rows the file has.
    pub total_rows: u32,
}

/// A batch of rows was processed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ImportProgressed {
    /// The last row of the batch.
    pub through_row: u32,
    /// Rows that created a product.
    pub created: u32,
    /// Rows that changed an existing product.
    pub updated: u32,
    /// Rows that matched their product already.
    pub unchanged: u32,
    /// Rows that failed.
    pub failed: u32,
    /// Why they failed.
    pub errors: Vec<ImportRowError>,
}

/// Every row was processed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ImportCompleted {
    /// Rows that succeeded (created, updated or unchanged).
    pub rows_done: u32,
    /// Rows that failed.
    pub rows_failed: u32,
}

/// The import stopped before its end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ImportFailed {
    /// Why.
    pub reason: Text,
    /// The last row processed before it stopped.
    pub through_row: u32,
}

crate::domain_events! {
    aggregate: Import,
    /// Import events.
    pub enum ImportEvent {
        /// See [`ImportStarted`].
        Started(ImportStarted) = ("import.started", 1),
        /// See [`ImportProgressed`].
        Progressed(ImportProgressed) = ("import.progressed", 1),
        /// See [`ImportCompleted`].
        Completed(ImportCompleted) = ("import.completed", 1),
        /// See [`ImportFailed`].
        Failed(ImportFailed) = ("import.failed", 1),
    }
}

/// Where an import stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImportStatus {
    /// Not started.
    #[default]
    New,
    /// Rows are being processed.
    Running,
    /// Every row was processed.
    Completed,
    /// Stopped before the end.
    Failed,
}

/// The state of an import, rebuilt from its events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Import {
    /// Present once started.
    pub started: Option<ImportStarted>,
    /// Where it stands.
    pub status: ImportStatus,
    /// The last data row processed.
    pub through_row: u32,
    /// Rows that succeeded so far.
    pub rows_done: u32,
    /// Rows that failed so far.
    pub rows_failed: u32,
}

impl Import {
    fn running(&self) -> Result<&ImportStarted, DomainError> {
        let started = self.started.as_ref().ok_or(DomainError::NotFound { kind: AggregateKind::Import })?;
        match self.status {
            ImportStatus::Running => Ok(started),
            status => Err(DomainError::invalid_state(format!(
                "import {} is {}; start a new import to import again",
                started.import_id,
                if status == ImportStatus::Completed { "completed" } else { "failed" }
            ))),
        }
    }
}

fn check_errors(errors: &[ImportRowError], from_row: u32) -> Result<(), DomainError> {
    if errors.len() > MAX_ERRORS_PER_BATCH {
        return Err(DomainError::rule(format!(
            "a progress batch carries at most {MAX_ERRORS_PER_BATCH} row errors; {} were given",
            errors.len()
        )));
    }
    if let Some(error) = errors.iter().find(|error| {
        error.message.trim().is_empty()
            || error.message.chars().count() > MAX_ERROR_MESSAGE_CHARS
            || error.column.is_empty()
            || error.column.len() > 100
            || error.sku.as_ref().is_some_and(|sku| sku.len() > 200)
            || error.row < from_row
    }) {
        return Err(DomainError::rule(format!(
            "the error of row {} is malformed: rows of this batch start at {from_row}, a column \
             is 1 to 100 characters and a message 1 to {MAX_ERROR_MESSAGE_CHARS}",
            error.row
        )));
    }
    Ok(())
}

impl Aggregate for Import {
    const KIND: AggregateKind = AggregateKind::Import;
    const STATE_VERSION: u32 = 1;
    type Command = ImportCommand;
    type Event = ImportEvent;

    fn decide(&self, command: &ImportCommand) -> Result<Vec<ImportEvent>, DomainError> {
        match command {
            ImportCommand::StartImport {
                import_id,
                brand_id,
                format,
                file_name,
                catalog,
                images_archive,
                total_rows,
            } => {
                if self.started.is_some() {
                    return Err(DomainError::AlreadyExists {
                        kind: AggregateKind::Import,
                        id: import_id.to_string(),
                    });
                }
                if *total_rows == 0 {
                    return Err(DomainError::rule("the catalog has no rows; there is nothing to import"));
                }
                Ok(vec![
                    ImportStarted {
                        import_id: import_id.clone(),
                        brand_id: brand_id.clone(),
                        format: *format,
                        file_name: file_name.clone(),
                        catalog: catalog.clone(),
                        images_archive: images_archive.clone(),
                        total_rows: *total_rows,
                    }
                    .into(),
                ])
            }
            ImportCommand::RecordImportProgress {
                through_row,
                created,
                updated,
                unchanged,
                failed,
                errors,
            } => {
                if self.started.is_some()
                    && self.status != ImportStatus::Running
                    && *through_row <= self.through_row
                {
                    // A resumed job re-sending a batch of a finished import.
                    return Ok(vec![]);
                }
                let started = self.running()?;
                if *through_row <= self.through_row {
                    // Already recorded (a resumed job re-sends its last batch).
                    return Ok(vec![]);
                }
                if *through_row > started.total_rows {
                    return Err(DomainError::rule(format!(
                        "row {through_row} is past the end of the catalog ({} rows)",
                        started.total_rows
                    )));
                }
                let batch = through_row - self.through_row;
                let counted = created + updated + unchanged + failed;
                if counted != batch {
                    return Err(DomainError::rule(format!(
                        "rows {} to {through_row} are {batch} rows, but {counted} outcomes were reported",
                        self.through_row + 1
                    )));
                }
                if *failed == 0 && !errors.is_empty() {
                    return Err(DomainError::rule("errors were reported for a batch without failed rows"));
                }
                check_errors(errors, self.through_row + 1)?;
                Ok(vec![
                    ImportProgressed {
                        through_row: *through_row,
                        created: *created,
                        updated: *updated,
                        unchanged: *unchanged,
                        failed: *failed,
                        errors: errors.clone(),
                    }
                    .into(),
                ])
            }
            ImportCommand::CompleteImport => {
                if self.status == ImportStatus::Completed {
                    return Ok(vec![]);
                }
                let started = self.running()?;
                if self.through_row < started.total_rows {
                    return Err(DomainError::invalid_state(format!(
                        "import {} has processed {} of {} rows; it completes after the last",
                        started.import_id, self.through_row, started.total_rows
                    )));
                }
                Ok(vec![ImportCompleted { rows_done: self.rows_done, rows_failed: self.rows_failed }.into()])
            }
            ImportCommand::FailImport { reason } => {
                if self.status == ImportStatus::Failed {
                    return Ok(vec![]);
                }
                self.running()?;
                Ok(vec![ImportFailed { reason: reason.clone(), through_row: self.through_row }.into()])
            }
        }
    }

    fn evolve(mut self, event: &ImportEvent) -> Self {
        match event {
            ImportEvent::Started(started) => {
                self.started = Some(started.clone());
                self.status = ImportStatus::Running;
            }
            ImportEvent::Progressed(progress) => {
                self.through_row = progress.through_row;
                self.rows_done += progress.created + progress.updated + progress.unchanged;
                self.rows_failed += progress.failed;
            }
            ImportEvent::Completed(_) => self.status = ImportStatus::Completed,
            ImportEvent::Failed(_) => self.status = ImportStatus::Failed,
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_snapshot_round_trip, asset, given};

    fn started(total_rows: u32) -> ImportEvent {
        ImportStarted {
            import_id: ImportId::parse("imp1").expect("id"),
            brand_id: BrandId::parse("acme").expect("id"),
            format: CatalogFormat::Csv,
            file_name: Some(Name::parse("spring.csv").expect("name")),
            catalog: asset(1),
            images_archive: None,
            total_rows,
        }
        .into()
    }

    fn start(total_rows: u32) -> ImportCommand {
        let ImportEvent::Started(s) = started(total_rows) else { unreachable!() };
        ImportCommand::StartImport {
            import_id: s.import_id,
            brand_id: s.brand_id,
            format: s.format,
            file_name: s.file_name,
            catalog: s.catalog,
            images_archive: s.images_archive,
            total_rows,
        }
    }

    fn row_error(row: u32) -> ImportRowError {
        ImportRowError {
            row,
            sku: Some("DR-1".into()),
            column: "name".into(),
            message: "the name is empty".into(),
        }
    }

    fn progress(through_row: u32, created: u32, failed: u32, errors: Vec<ImportRowError>) -> ImportCommand {
        ImportCommand::RecordImportProgress { through_row, created, updated: 0, unchanged: 0, failed, errors }
    }

    fn progressed(through_row: u32, created: u32, failed: u32, errors: Vec<ImportRowError>) -> ImportEvent {
        ImportProgressed { through_row, created, updated: 0, unchanged: 0, failed, errors }.into()
    }

    #[test]
    fn starting_an_import_records_its_file_and_row_count() {
        given::<Import>(&[]).when(&start(10)).then(&[started(10)]);
    }

    #[test]
    fn an_empty_catalog_cannot_be_started() {
        given::<Import>(&[]).when(&start(0)).then_rejected(|e| e.to_string().contains("no rows"));
    }

    #[test]
    fn a_batch_records_its_outcomes_and_errors() {
        given::<Import>(&[started(10)]).when(&progress(5, 4, 1, vec![row_error(3)])).then(&[progressed(
            5,
            4,
            1,
            vec![row_error(3)],
        )]);
    }

    #[test]
    fn a_batch_already_recorded_records_nothing_again() {
        given::<Import>(&[started(10), progressed(5, 5, 0, vec![])])
            .when(&progress(5, 5, 0, vec![]))
            .then(&[]);
    }

    #[test]
    fn a_batch_whose_outcomes_do_not_add_up_is_rejected() {
        given::<Import>(&[started(10)])
            .when(&progress(5, 3, 0, vec![]))
            .then_rejected(|e| e.to_string().contains("5 rows, but 3 outcomes"));
    }

    #[test]
    fn a_batch_past_the_end_is_rejected() {
        given::<Import>(&[started(10)])
            .when(&progress(11, 11, 0, vec![]))
            .then_rejected(|e| e.to_string().contains("past the end"));
    }

    #[test]
    fn an_import_completes_only_after_its_last_row() {
        given::<Import>(&[started(10), progressed(5, 5, 0, vec![])])
            .when(&ImportCommand::CompleteImport)
            .then_rejected(|e| matches!(e, DomainError::InvalidState(_)));
        given::<Import>(&[
            started(10),
            progressed(5, 5, 0, vec![]),
            progressed(10, 4, 1, vec![row_error(8)]),
        ])
        .when(&ImportCommand::CompleteImport)
        .then(&[ImportCompleted { rows_done: 9, rows_failed: 1 }.into()]);
    }

    #[test]
    fn a_finished_import_takes_no_new_rows_but_ignores_repeated_ones() {
        let finished = [
            started(5),
            progressed(5, 5, 0, vec![]),
            ImportCompleted { rows_done: 5, rows_failed: 0 }.into(),
        ];
        given::<Import>(&finished).when(&progress(5, 5, 0, vec![])).then(&[]);
        given::<Import>(&finished).when(&ImportCommand::CompleteImport).then(&[]);
        given::<Import>(&finished)
            .when(&ImportCommand::FailImport { reason: Text::parse("stop").expect("text") })
            .then_rejected(|e| matches!(e, DomainError::InvalidState(_)));
    }

    #[test]
    fn failing_a_running_import_records_where_it_stopped() {
        given::<Import>(&[started(10), progressed(4, 4, 0, vec![])])
            .when(&ImportCommand::FailImport {
                reason: Text::parse("the image archive is gone").expect("text"),
            })
            .then(&[ImportFailed {
                reason: Text::parse("the image archive is gone").expect("text"),
                through_row: 4,
            }
            .into()]);
    }

    #[test]
    fn the_state_survives_a_snapshot() {
        let state = given::<Import>(&[started(10), progressed(4, 3, 1, vec![row_error(2)])]).state();
        assert_snapshot_round_trip(&state);
    }
}
