//! Validation of a whole job file ("scheme" validation), streamed.

use super::repeats::{Repeat, RepeatedKeys};
use super::{check_row, RowError, ValidationContext};
use crate::jobfile::{Element, FileFormat, RecordReader, ScanError};
use crate::model::{ChunkPlan, Limits, SchemeError, SchemeReport};
use crate::ports::FileReader;

/// How a file is validated.
#[derive(Debug, Clone, Copy)]
pub struct FileValidation {
    pub limits: Limits,
    pub rows_per_chunk: u64,
    /// Errors beyond this many are counted but not recorded.
    pub max_recorded_errors: usize,
    /// A single user record longer than this is an error.
    pub max_row_bytes: usize,
    /// Memory the emails of the file may take while looking for repeats; beyond it they go to
    /// temporary files.
    pub emails_in_memory_bytes: usize,
}

impl FileValidation {
    pub const DEFAULT_MAX_RECORDED_ERRORS: usize = 10_000;
    pub const DEFAULT_MAX_ROW_BYTES: usize = 64 * 1024;
    pub const DEFAULT_EMAILS_IN_MEMORY_BYTES: usize = 8 * 1024 * 1024;
}

struct Report {
    errors: Vec<SchemeError>,
    error_count: u64,
    max_recorded: usize,
}

impl Report {
    fn new(max_recorded: usize) -> Report {
        Report {
            errors: Vec::new(),
            error_count: 0,
            max_recorded,
        }
    }

    fn add(&mut self, error: SchemeError) {
        self.error_count += 1;
        if self.errors.len() < self.max_recorded {
            self.errors.push(error);
        }
    }

    fn file_error(&mut self, message: String) {
        self.add(SchemeError {
            message,
            column: None,
            row: None,
            field: None,
        });
    }

    /// The problems of a CSV file's header row: the file is not read further.
    fn header_errors(&mut self, problems: Vec<crate::csvfile::HeaderProblem>) {
        for problem in problems {
            self.add(SchemeError {
                message: problem.message,
                column: Some(problem.column),
                row: None,
                field: Some(problem.header).filter(|header| !header.is_empty()),
            });
        }
    }

    fn row_error(&mut self, row: u64, error: RowError) {
        self.add(SchemeError {
            message: error.message,
            column: error.column,
            row: Some(row),
            field: error.field,
        });
    }

    /// Adds the repeated emails (found in column `column`): `repeats` are the recorded ones
    /// of `count`.
    fn add_repeats(&mut self, repeats: Vec<Repeat>, count: u64, column: Option<u32>) {
        self.error_count += count;
        self.errors
            .extend(repeats.into_iter().map(|repeat| SchemeError {
                message: format!(
                    "email '{}' appears more than once in the file (first in row {})",
                    repeat.key, repeat.first_row
                ),
                column,
                row: Some(repeat.row),
                field: Some("email".to_owned()),
            }));
    }

    /// The recorded errors in row order, the first `max_recorded` of them, and the count of
    /// all; a file of no users and the errors left unrecorded are told last.
    fn finish(mut self, total_rows: u64) -> (Vec<SchemeError>, u64) {
        // Errors of the file as a whole (no row) stay last.
        self.errors
            .sort_by_key(|error| error.row.unwrap_or(u64::MAX));
        self.errors.truncate(self.max_recorded);
        if total_rows == 0 && self.error_count == 0 {
            self.file_error("the file contains no users".to_owned());
        }
        if self.error_count > self.errors.len() as u64 {
            let unrecorded = self.error_count - self.errors.len() as u64;
            self.errors.push(SchemeError {
                message: format!("{unrecorded} more errors were found and not recorded"),
                column: None,
                row: None,
                field: None,
            });
        }
        (self.errors, self.error_count)
    }
}

/// What one reading of the file gathers besides its errors.
struct Scan {
    total_rows: u64,
    plan: ChunkPlan,
    /// The valid emails, by row, to find repeats in.
    emails: RepeatedKeys,
    /// The column of the emails, as the file counts columns.
    email_column: Option<u32>,
}

impl Scan {
    /// Reads the file to its end, or to the first error of the file as a whole (its syntax,
    /// too many users).
    async fn read(
        reader: FileReader,
        format: FileFormat,
        context: &ValidationContext,
        options: &FileValidation,
        report: &mut Report,
    ) -> Result<Scan, std::io::Error> {
        let mut records = RecordReader::from_start(format, reader, options.max_row_bytes);
        let mut scan = Scan {
            total_rows: 0,
            plan: ChunkPlan {
                rows_per_chunk: options.rows_per_chunk.max(1),
                offsets: Vec::new(),
            },
            emails: RepeatedKeys::new(options.emails_in_memory_bytes),
            email_column: None,
        };
        loop {
            let element = match records.next_element().await {
                Ok(Some(element)) => element,
                Ok(None) => break,
                Err(ScanError::Io(error)) => return Err(error),
                Err(ScanError::Header(problems)) => {
                    report.header_errors(problems);
                    break;
                }
                Err(error) => {
                    report.file_error(error.to_string());
                    break;
                }
            };
            scan.total_rows += 1;
            if scan.total_rows > options.limits.max_rows {
                report.file_error(format!(
                    "the file has more than {} users; the limit max_rows is {}",
                    options.limits.max_rows, options.limits.max_rows
                ));
                break;
            }
            if element.index % scan.plan.rows_per_chunk == 0 {
                scan.plan.offsets.push(element.offset);
            }
            scan.check(element, &records, context, options.max_row_bytes, report)?;
        }
        scan.email_column = records
            .locate(RowError::field("email", String::new()))
            .column;
        Ok(scan)
    }

    /// Judges one user record; its email, when valid, is kept to find repeats.
    fn check<R>(
        &mut self,
        element: Element,
        records: &RecordReader<R>,
        context: &ValidationContext,
        max_row_bytes: usize,
        report: &mut Report,
    ) -> Result<(), std::io::Error> {
        let row = element.index + 1;
        let Some(bytes) = element.bytes else {
            let message = element.problem.unwrap_or_else(|| {
                format!(
                    "the user is {} bytes long; the limit is {} bytes",
                    element.len, max_row_bytes
                )
            });
            report.add(SchemeError {
                message,
                column: None,
                row: Some(row),
                field: None,
            });
            return Ok(());
        };
        let (email_key, checked) = check_row(&bytes, context);
        for error in checked.err().unwrap_or_default() {
            report.row_error(row, records.locate(error));
        }
        if let Some(key) = email_key {
            self.emails.add(row, &key)?;
        }
        Ok(())
    }
}

/// Reads the whole JSON file once, element by element, and reports every scheme error with
/// its row and column, plus the chunk plan for processing.
pub async fn validate_file(
    reader: FileReader,
    context: &ValidationContext,
    options: FileValidation,
) -> Result<SchemeReport, std::io::Error> {
    validate_job_file(reader, FileFormat::Json, context, options).await
}

/// Reads the whole file once, record by record (JSON elements, or CSV rows after the header),
/// and reports every scheme error with its row and column as the file counts them, plus the
/// chunk plan for processing. Only I/O failures of the file store are errors; everything
/// wrong with the file's content is in the report.
pub async fn validate_job_file(
    reader: FileReader,
    format: FileFormat,
    context: &ValidationContext,
    options: FileValidation,
) -> Result<SchemeReport, std::io::Error> {
    let mut report = Report::new(options.max_recorded_errors);
    let scan = Scan::read(reader, format, context, &options, &mut report).await?;
    // Repeated emails are known once every row is read: merged in row order (after the other
    // errors of their row), the errors of the lowest rows recorded.
    let (emails, max_recorded) = (scan.emails, report.max_recorded);
    let (repeats, repeat_count) = tokio::task::spawn_blocking(move || emails.finish(max_recorded))
        .await
        .map_err(std::io::Error::other)??;
    report.add_repeats(repeats, repeat_count, scan.email_column);
    let (errors, error_count) = report.finish(scan.total_rows);
    Ok(SchemeReport {
        total_rows: scan.total_rows,
        errors,
        error_count,
        chunk_plan: scan.plan,
        file_version: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{JobStatus, TenantId, TenantSettings};

    async fn validate(text: &'static str, rows_per_chunk: u64) -> SchemeReport {
        validate_with(text.as_bytes().to_vec(), rows_per_chunk, 1 << 20).await
    }

    async fn validate_with(
        text: Vec<u8>,
        rows_per_chunk: u64,
        emails_in_memory_bytes: usize,
    ) -> SchemeReport {
        let context = ValidationContext::new(&TenantSettings::with_defaults(
            TenantId::parse("acme").unwrap(),
        ));
        let options = FileValidation {
            limits: Limits::default(),
            rows_per_chunk,
            max_recorded_errors: 100,
            max_row_bytes: 1024,
            emails_in_memory_bytes,
        };
        validate_file(Box::new(std::io::Cursor::new(text)), &context, options)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn repeats_beyond_the_memory_budget_are_found_on_disk_and_merged_in_row_order() {
        // 3000 users, every email used three times, and a missing first name on row 2000.
        let users: Vec<String> = (0..3000)
            .map(|i| {
                let first = if i == 1999 { "" } else { "A" };
                format!(
                    r#"{{"email":"u{}@x.io","first_name":"{first}","last_name":"B"}}"#,
                    i % 1000
                )
            })
            .collect();
        let file = format!("[{}]", users.join(",")).into_bytes();
        for budget in [1 << 30, 4096] {
            let report = validate_with(file.clone(), 100, budget).await;
            assert_eq!(report.error_count, 2001, "{budget}");
            // The 100 recorded errors are those of the lowest rows.
            let rows: Vec<Option<u64>> = report.errors.iter().take(3).map(|e| e.row).collect();
            assert_eq!(rows, vec![Some(1001), Some(1002), Some(1003)]);
            assert!(report.errors[0].message.contains("'u0@x.io'"));
            assert!(report.errors[0].message.contains("first in row 1"));
            assert_eq!(
                report.errors.len(),
                101,
                "100 recorded and the count of the rest"
            );
            assert_eq!(report.errors[100].row, None);
        }
    }

    #[tokio::test]
    async fn a_valid_file_gets_a_chunk_plan() {
        let report = validate(
            r#"[{"email":"a@x.io","first_name":"A","last_name":"B"},
                {"email":"b@x.io","first_name":"A","last_name":"B"},
                {"email":"c@x.io","first_name":"A","last_name":"B"}]"#,
            2,
        )
        .await;
        assert_eq!(report.status(), JobStatus::ValidScheme);
        assert_eq!(report.total_rows, 3);
        assert_eq!(report.chunk_plan.offsets.len(), 2);
    }

    #[tokio::test]
    async fn every_error_is_reported_with_row_and_column() {
        let report = validate(
            r#"[{"email":"a@x.io","first_name":"A","last_name":"B"},
                {"email":"A@X.io","first_name":"","last_name":"B"},
                7]"#,
            10,
        )
        .await;
        let found: Vec<(Option<u64>, Option<u32>)> =
            report.errors.iter().map(|e| (e.row, e.column)).collect();
        // Row 2 repeats row 1's email even though its other fields are invalid.
        assert_eq!(
            found,
            vec![(Some(2), Some(4)), (Some(2), Some(1)), (Some(3), None)]
        );
        assert_eq!(report.status(), JobStatus::InvalidScheme);
    }

    #[tokio::test]
    async fn duplicate_emails_name_the_first_row() {
        let report = validate(
            r#"[{"email":"a@x.io","first_name":"A","last_name":"B"},
                {"email":"A@x.io","first_name":"A","last_name":"B"}]"#,
            10,
        )
        .await;
        assert_eq!(report.errors.len(), 1);
        assert!(report.errors[0].message.contains("first in row 1"));
        assert_eq!(
            (report.errors[0].row, report.errors[0].column),
            (Some(2), Some(1))
        );
    }

    #[tokio::test]
    async fn file_level_problems_have_no_row() {
        for text in ["", "{}", "[", "[]", "not json"] {
            let report = validate(text, 10).await;
            assert_eq!(report.status(), JobStatus::InvalidScheme, "{text}");
            assert_eq!(report.errors[0].row, None, "{text}");
        }
    }
}
