//! A CCAI job file, as uploaded: arbitrary bytes through the streaming "scheme" validation the
//! upload and the intake use (`validate_file` over an async reader), under two configurations:
//! small limits and a small read buffer derived from the input, and roomy ones.
//!
//! Besides "never panics", every report is checked
//! - on its own: errors sorted by row (file-level errors last), at most the recording cap plus
//!   the "more errors" line, a valid file has 1 to `max_rows` rows and a chunk per
//!   `rows_per_chunk` rows, columns are template columns;
//! - against a plain re-computation: the file read again in one buffer, each row judged by
//!   `check_row`, repeated emails found with a map: same row count, same error count, same
//!   recorded errors, same chunk plan, and counted rows = valid rows + rows with errors;
//! - by the processor's reading: every chunk of a valid file re-read from its byte offset gives
//!   the same rows, and every row passes `record_command` again;
//! - and the element scanner against serde_json: a file serde_json reads as an array is split
//!   into exactly serde_json's elements.

use std::collections::{BTreeSet, HashMap};

use bulk_users::jobfile::{ArrayReader, Element, ScanError};
use bulk_users::model::{JobKind, JobStatus, Limits, SchemeReport, TenantId};
use bulk_users::validation::{check_row, record_command, validate_file, FileValidation, FIELDS};
use serde_json::value::RawValue;

use crate::common::{context, runtime};

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One way of validating a file.
#[derive(Debug, Clone, Copy)]
struct Config {
    /// Capacity of the read buffer the validator reads through.
    buffer: usize,
    options: FileValidation,
}

/// FNV-1a: a cheap, stable mix of the input to choose a configuration from.
fn mix(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn small_config(data: &[u8]) -> Config {
    let hash = mix(data);
    let pick = |shift: u32, choices: usize| ((hash >> shift) % choices as u64) as usize;
    Config {
        buffer: [1, 2, 3, 5, 8, 17, 64, 4096][pick(0, 8)],
        options: FileValidation {
            limits: Limits {
                max_rows: [1, 2, 3, 5, 16, 64][pick(8, 6)],
                ..Limits::default()
            },
            rows_per_chunk: [0, 1, 2, 3, 7][pick(16, 5)],
            max_recorded_errors: pick(24, 9),
            max_row_bytes: [0, 8, 40, 128, 1024, 64 * 1024][pick(32, 6)],
            // One in eight spills the emails to temporary files from the first row.
            emails_in_memory_bytes: [0, 120, 1 << 20, 1 << 20, 1 << 20, 1 << 20, 1 << 20, 1 << 20]
                [pick(40, 8)],
        },
    }
}

fn roomy_config() -> Config {
    Config {
        buffer: 8 * 1024,
        options: FileValidation {
            limits: Limits {
                max_rows: 100_000,
                ..Limits::default()
            },
            rows_per_chunk: 4,
            max_recorded_errors: 100_000,
            max_row_bytes: FileValidation::DEFAULT_MAX_ROW_BYTES,
            emails_in_memory_bytes: FileValidation::DEFAULT_EMAILS_IN_MEMORY_BYTES,
        },
    }
}

fn reader(bytes: &[u8], capacity: usize) -> bulk_users::ports::FileReader {
    Box::new(tokio::io::BufReader::with_capacity(
        capacity,
        std::io::Cursor::new(bytes.to_vec()),
    ))
}

/// An error the report should hold: `message` is compared when it is known exactly.
#[derive(Debug, Clone)]
struct Expected {
    row: Option<u64>,
    column: Option<u32>,
    field: Option<String>,
    message: Option<String>,
    /// For a repeated email: the key and the row that had it first.
    repeat_of: Option<(String, u64)>,
}

/// The report, computed the plain way.
#[derive(Debug)]
struct Plain {
    elements: Vec<Element>,
    total_rows: u64,
    errors: Vec<Expected>,
    error_count: u64,
    offsets: Vec<u64>,
    /// Rows judged (at most `max_rows`), and those with no error at all.
    judged_rows: u64,
    valid_rows: u64,
    /// Every error is recorded (none only counted).
    all_recorded: bool,
}

async fn plain_report(data: &[u8], options: &FileValidation) -> Plain {
    let context = context();
    // The whole file as one buffer: element boundaries never fall on a buffer boundary.
    let mut array = ArrayReader::from_start(data, options.max_row_bytes);
    let rows_per_chunk = options.rows_per_chunk.max(1);
    let mut elements = Vec::new();
    let mut row_errors: Vec<Expected> = Vec::new();
    let mut repeats: Vec<Expected> = Vec::new();
    let mut file_error: Option<Expected> = None;
    let mut first_rows: HashMap<String, u64> = HashMap::new();
    let mut offsets = Vec::new();
    let mut total_rows = 0u64;
    let mut valid_rows = 0u64;
    loop {
        let element = match array.next_element().await {
            Ok(Some(element)) => element,
            Ok(None) => break,
            Err(ScanError::Io(error)) => panic!("reading from memory failed: {error}"),
            Err(error) => {
                file_error = Some(Expected {
                    row: None,
                    column: None,
                    field: None,
                    message: Some(error.to_string()),
                    repeat_of: None,
                });
                break;
            }
        };
        assert_eq!(element.index, total_rows, "elements are numbered in order");
        total_rows += 1;
        if total_rows > options.limits.max_rows {
            file_error = Some(Expected {
                row: None,
                column: None,
                field: None,
                message: None,
                repeat_of: None,
            });
            break;
        }
        let offset = element.offset as usize;
        let len = element.len as usize;
        assert!(
            offset + len <= data.len(),
            "an element lies inside the file"
        );
        assert_eq!(
            element.bytes.is_none(),
            len > options.max_row_bytes,
            "an element's bytes are dropped exactly when it is over the limit"
        );
        if let Some(bytes) = &element.bytes {
            assert_eq!(bytes.len(), len);
            assert_eq!(
                &data[offset..offset + len],
                &bytes[..],
                "an element is its bytes"
            );
        }
        if element.index % rows_per_chunk == 0 {
            offsets.push(element.offset);
        }
        let row = element.index + 1;
        match &element.bytes {
            None => row_errors.push(Expected {
                row: Some(row),
                column: None,
                field: None,
                message: None,
                repeat_of: None,
            }),
            Some(bytes) => {
                let (key, checked) = check_row(bytes, context);
                let mut valid = true;
                if let Err(errors) = checked {
                    assert!(!errors.is_empty(), "an invalid row has an error");
                    valid = false;
                    row_errors.extend(errors.into_iter().map(|error| Expected {
                        row: Some(row),
                        column: error.column,
                        field: error.field,
                        message: Some(error.message),
                        repeat_of: None,
                    }));
                }
                if let Some(key) = key {
                    match first_rows.get(&key) {
                        Some(&first) => {
                            valid = false;
                            repeats.push(Expected {
                                row: Some(row),
                                column: Some(1),
                                field: Some("email".to_owned()),
                                message: None,
                                repeat_of: Some((key, first)),
                            });
                        }
                        None => {
                            first_rows.insert(key, row);
                        }
                    }
                }
                if valid {
                    valid_rows += 1;
                }
            }
        }
        elements.push(element);
    }
    let judged_rows = elements.len() as u64;

    let mut errors: Vec<Expected> = row_errors;
    errors.extend(file_error);
    errors.extend(repeats);
    errors.sort_by_key(|error| error.row.unwrap_or(u64::MAX));
    let mut error_count = errors.len() as u64;
    let all_recorded = errors.len() <= options.max_recorded_errors;
    errors.truncate(options.max_recorded_errors);
    let unknown = Expected {
        row: None,
        column: None,
        field: None,
        message: None,
        repeat_of: None,
    };
    if total_rows == 0 && error_count == 0 {
        error_count = 1;
        if options.max_recorded_errors > 0 {
            errors.push(unknown.clone());
        }
    }
    if error_count > errors.len() as u64 {
        errors.push(unknown);
    }
    Plain {
        elements,
        total_rows,
        errors,
        error_count,
        offsets,
        judged_rows,
        valid_rows,
        all_recorded,
    }
}

/// What holds of any report, whatever the file.
fn check_report_alone(report: &SchemeReport, options: &FileValidation) {
    let rows: Vec<u64> = report
        .errors
        .iter()
        .map(|error| error.row.unwrap_or(u64::MAX))
        .collect();
    assert!(
        rows.windows(2).all(|pair| pair[0] <= pair[1]),
        "errors are sorted by row: {rows:?}"
    );
    assert!(
        report.errors.len() <= options.max_recorded_errors + 1,
        "{} errors recorded over a cap of {}",
        report.errors.len(),
        options.max_recorded_errors
    );
    // Either every error is recorded, or the recorded ones are followed by a line (no row)
    // counting the rest: never more lines than errors.
    assert!(
        report.error_count >= report.errors.len() as u64,
        "{} errors counted, {} lines recorded",
        report.error_count,
        report.errors.len()
    );
    if report.error_count > report.errors.len() as u64 {
        let last = report
            .errors
            .last()
            .expect("a line counting unrecorded errors");
        assert_eq!(last.row, None, "the unrecorded errors are counted last");
    }
    assert_eq!(report.error_count == 0, report.errors.is_empty());
    assert_eq!(
        report.status() == JobStatus::ValidScheme,
        report.errors.is_empty()
    );
    for error in &report.errors {
        assert!(!error.message.is_empty(), "an error has a message");
        if let Some(row) = error.row {
            assert!(
                row >= 1 && row <= report.total_rows,
                "row {row} of {}",
                report.total_rows
            );
        }
        if let Some(column) = error.column {
            assert!(
                (1..=FIELDS.len() as u32).contains(&column),
                "column {column}"
            );
            assert_eq!(
                error.field.as_deref(),
                Some(FIELDS[column as usize - 1]),
                "a column names its field"
            );
        }
    }
    let rows_per_chunk = options.rows_per_chunk.max(1);
    assert_eq!(report.chunk_plan.rows_per_chunk, rows_per_chunk);
    assert!(
        report
            .chunk_plan
            .offsets
            .windows(2)
            .all(|pair| pair[0] < pair[1]),
        "chunk offsets increase"
    );
    if report.status() == JobStatus::ValidScheme {
        assert!(report.total_rows >= 1, "a valid file has users");
        assert!(
            report.total_rows <= options.limits.max_rows,
            "a valid file has {} rows over max_rows {}",
            report.total_rows,
            options.limits.max_rows
        );
        assert_eq!(
            report.chunk_plan.offsets.len() as u64,
            report.total_rows.div_ceil(rows_per_chunk),
            "a valid file has a chunk per rows_per_chunk rows"
        );
    }
}

fn check_against_plain(report: &SchemeReport, plain: &Plain) {
    assert_eq!(report.total_rows, plain.total_rows, "row count");
    assert_eq!(report.error_count, plain.error_count, "error count");
    assert_eq!(report.chunk_plan.offsets, plain.offsets, "chunk plan");
    assert_eq!(
        report.errors.len(),
        plain.errors.len(),
        "recorded errors: {:?} against {:?}",
        report.errors,
        plain.errors
    );
    for (found, expected) in report.errors.iter().zip(&plain.errors) {
        let same = found.row == expected.row
            && found.column == expected.column
            && found.field == expected.field
            && expected
                .message
                .as_ref()
                .is_none_or(|message| *message == found.message)
            && expected.repeat_of.as_ref().is_none_or(|(key, first)| {
                found.message.contains(key.as_str())
                    && found.message.contains(&format!("row {first}"))
            });
        assert!(same, "error {found:?}, expected {expected:?}");
    }
    // Counted rows = valid rows + rows with an error, whenever every error is recorded.
    if plain.all_recorded {
        let error_rows: BTreeSet<u64> = report.errors.iter().filter_map(|e| e.row).collect();
        assert_eq!(
            error_rows.len() as u64 + plain.valid_rows,
            plain.judged_rows,
            "judged rows = valid rows + rows with errors"
        );
    }
}

/// The processor's reading: each chunk from its byte offset, its rows judged again.
async fn check_chunks(data: &[u8], report: &SchemeReport, plain: &Plain, config: &Config) {
    let tenant = TenantId::parse("fuzz").expect("a tenant id");
    let items = report.chunk_plan.work_items(&tenant, 1, report.total_rows);
    let mut rows_read = 0u64;
    for item in items {
        let offset = item.byte_offset as usize;
        assert!(offset <= data.len());
        let mut array = ArrayReader::at_element(
            reader(&data[offset..], config.buffer),
            item.byte_offset,
            item.first_row,
            config.options.max_row_bytes,
        );
        for at in 0..item.rows {
            let element = match array.next_element().await {
                Ok(Some(element)) => element,
                other => panic!("chunk {} ended at row {at}: {other:?}", item.chunk),
            };
            let expected = &plain.elements[(item.first_row + at) as usize];
            assert_eq!(&element, expected, "the processor reads the row validated");
            let bytes = element
                .bytes
                .as_deref()
                .expect("a valid row is within the limit");
            if let Err(errors) = record_command(JobKind::Upload, bytes, context()) {
                panic!("a validated row fails processing: {errors:?}");
            }
            rows_read += 1;
        }
    }
    assert_eq!(rows_read, report.total_rows, "the chunks cover the file");
}

/// serde_json and the element scanner agree on where a JSON array's elements are.
async fn check_scanner_against_serde(data: &[u8]) {
    let body = data.strip_prefix(BOM).unwrap_or(data);
    let parsed = serde_json::from_slice::<Vec<&RawValue>>(body);
    let mut array = ArrayReader::from_start(data, usize::MAX);
    let mut scanned: Vec<Element> = Vec::new();
    let ended = loop {
        match array.next_element().await {
            Ok(Some(element)) => scanned.push(element),
            Ok(None) => break Ok(()),
            Err(error) => break Err(error),
        }
    };
    match parsed {
        Ok(values) => {
            assert!(
                ended.is_ok(),
                "serde_json reads an array the scanner refuses: {ended:?}"
            );
            assert_eq!(values.len(), scanned.len(), "element count");
            for (value, element) in values.iter().zip(&scanned) {
                assert_eq!(
                    Some(value.get().as_bytes()),
                    element.bytes.as_deref(),
                    "element {}",
                    element.index
                );
            }
        }
        Err(error) => {
            let every_element_is_json = scanned.iter().all(|element| {
                element
                    .bytes
                    .as_deref()
                    .is_some_and(|bytes| serde_json::from_slice::<&RawValue>(bytes).is_ok())
            });
            if ended.is_ok() && every_element_is_json {
                assert!(
                    error.to_string().contains("recursion limit"),
                    "the scanner reads an array of JSON values serde_json refuses: {error}"
                );
            }
        }
    }
}

async fn run(data: &[u8]) {
    check_scanner_against_serde(data).await;
    for config in [small_config(data), roomy_config()] {
        let report = validate_file(reader(data, config.buffer), context(), config.options)
            .await
            .expect("no I/O error from memory");
        check_report_alone(&report, &config.options);
        let plain = plain_report(data, &config.options).await;
        check_against_plain(&report, &plain);
        if report.status() == JobStatus::ValidScheme {
            check_chunks(data, &report, &plain, &config).await;
        }
    }
}

/// Runs the checks on one input; panics on a violated invariant.
pub fn check(data: &[u8]) {
    runtime().block_on(run(data));
}
