//! Figure 1: scheme validation throughput of a synthetic CCAI file, next to bare `serde_json`
//! parsing of the same bytes (target: validation at least 70% of the `Value` parse throughput),
//! and of the same users as a CSV file.

use std::io::Cursor;
use std::time::{Duration, Instant};

use bulk_users::csvfile::{layout_headers, write_rows};
use bulk_users::jobfile::FileFormat;
use bulk_users::model::{TenantId, TenantSettings};
use bulk_users::validation::{validate_file, validate_job_file, FileValidation, ValidationContext};
use bytes::Bytes;

use crate::report::Figure;
use crate::synthetic::{megabytes, users_file};
use crate::TENANT;

/// Validation throughput target: at least this share of the `Value` parse throughput.
const TARGET_RATIO: f64 = 0.70;

pub async fn run(users: usize) -> Result<Vec<Figure>, String> {
    let file = Bytes::from(users_file(users));
    let size = file.len();
    let settings = TenantSettings::with_defaults(TenantId::parse(TENANT)?);
    let context = ValidationContext::new(&settings);
    let options = FileValidation {
        emails_in_memory_bytes: FileValidation::DEFAULT_EMAILS_IN_MEMORY_BYTES,
        limits: settings.limits,
        rows_per_chunk: 1000,
        max_recorded_errors: FileValidation::DEFAULT_MAX_RECORDED_ERRORS,
        max_row_bytes: FileValidation::DEFAULT_MAX_ROW_BYTES,
    };

    let started = Instant::now();
    let report = validate_file(Box::new(Cursor::new(file.clone())), &context, options)
        .await
        .map_err(|e| format!("validation failed: {e}"))?;
    let validation_time = started.elapsed();
    if report.error_count != 0 || report.total_rows != users as u64 {
        return Err(format!(
            "the generated file did not validate: {} rows, {} errors, first: {:?}",
            report.total_rows,
            report.error_count,
            report.errors.first()
        ));
    }

    let started = Instant::now();
    let raw: Vec<&serde_json::value::RawValue> =
        serde_json::from_slice(&file).map_err(|e| format!("RawValue parse failed: {e}"))?;
    let raw_time = started.elapsed();
    let raw_count = raw.len();
    drop(raw);

    let started = Instant::now();
    let values: Vec<serde_json::Value> =
        serde_json::from_slice(&file).map_err(|e| format!("Value parse failed: {e}"))?;
    let value_time = started.elapsed();
    let value_count = values.len();
    let headers = layout_headers(&settings.roles, &settings.teams, &[]);
    let csv = Bytes::from(write_rows(&headers, &values).map_err(|e| e.to_string())?);
    drop(values);

    let started = Instant::now();
    let csv_report = validate_job_file(
        Box::new(Cursor::new(csv.clone())),
        FileFormat::Csv,
        &context,
        options,
    )
    .await
    .map_err(|e| format!("CSV validation failed: {e}"))?;
    let csv_time = started.elapsed();
    if csv_report.error_count != 0 || csv_report.total_rows != users as u64 {
        return Err(format!(
            "the same users as CSV did not validate: {} rows, {} errors, first: {:?}",
            csv_report.total_rows,
            csv_report.error_count,
            csv_report.errors.first()
        ));
    }
    if raw_count != users || value_count != users {
        return Err(format!(
            "serde_json parsed {raw_count} and {value_count} elements, not {users}"
        ));
    }

    let mb = megabytes(size as u64);
    let rate = |time: Duration| mb / time.as_secs_f64();
    let ratio = value_time.as_secs_f64() / validation_time.as_secs_f64();
    Ok(vec![
        Figure::plain(
            format!("validation, {users} users ({mb:.1} MB)"),
            format!(
                "{:.2} s = {:.0}k users/s, {:.1} MB/s",
                validation_time.as_secs_f64(),
                users as f64 / validation_time.as_secs_f64() / 1000.0,
                rate(validation_time),
            ),
        ),
        Figure::plain(
            format!(
                "CSV validation, the same users ({:.1} MB)",
                megabytes(csv.len() as u64)
            ),
            format!(
                "{:.2} s = {:.0}k users/s, {:.2}× the JSON validation's time",
                csv_time.as_secs_f64(),
                users as f64 / csv_time.as_secs_f64() / 1000.0,
                csv_time.as_secs_f64() / validation_time.as_secs_f64(),
            ),
        ),
        Figure::plain(
            "serde_json parse, `Vec<&RawValue>`",
            format!(
                "{:.2} s = {:.1} MB/s",
                raw_time.as_secs_f64(),
                rate(raw_time)
            ),
        ),
        Figure::plain(
            "serde_json parse, `Vec<Value>`",
            format!(
                "{:.2} s = {:.1} MB/s",
                value_time.as_secs_f64(),
                rate(value_time)
            ),
        ),
        Figure::against(
            "validation / `Vec<Value>` parse throughput",
            format!("{ratio:.2}"),
            format!(">= {TARGET_RATIO:.2}"),
            ratio >= TARGET_RATIO,
        ),
    ])
}
