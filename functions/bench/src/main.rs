//! `bulk-bench`: measures the figures of the performance targets and prints them, one per line.
//!
//! - `validation`: scheme validation throughput of a synthetic CCAI file, against bare
//!   `serde_json` parsing of the same bytes (target: validation at least 70% of the parse
//!   throughput).
//! - `dynamodb`: DynamoDB requests per 1000 users upserted by a CCAI upload processed on the AWS
//!   adapters against the emulator (moto), for a first run (creates) and a second run of the
//!   same file (updates) (target: at most 48).
//!
//! Every figure is measured on the spot; nothing is hard-coded.

mod moto;

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use bulk_users::adapters::aws::provision::{create_bucket, create_queue, create_table};
use bulk_users::adapters::aws::{load_sdk_config, AwsAdapters, AwsSettings, Credentials};
use bulk_users::model::{Job, JobStatus, TenantId, TenantSettings};
use bulk_users::service::{BulkService, FileUpload, Principal, ServiceConfig};
use bulk_users::validation::{validate_file, FileValidation, ValidationContext};
use bytes::Bytes;
use clap::{Parser, Subcommand};

/// Validation throughput target: validation at least this share of the `Value` parse throughput.
const VALIDATION_TARGET: f64 = 0.70;
/// DynamoDB target: at most this many requests per 1000 users upserted.
const DYNAMODB_TARGET: f64 = 48.0;
/// The tenant the benchmark uploads as.
const TENANT: &str = "bench";

#[derive(Parser)]
#[command(
    name = "bulk-bench",
    about = "Measures the performance figures of bulk-users"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Scheme validation of a synthetic CCAI file vs bare serde_json parsing of it.
    Validation {
        /// Users in the generated file.
        #[arg(long, default_value_t = 1_000_000)]
        users: usize,
    },
    /// DynamoDB requests per 1000 users upserted, on the AWS adapters against moto.
    Dynamodb {
        /// Users in the generated file.
        #[arg(long, default_value_t = 10_000)]
        users: usize,
    },
}

#[tokio::main]
async fn main() -> Result<(), String> {
    match Cli::parse().command {
        Command::Validation { users } => validation(users).await,
        Command::Dynamodb { users } => dynamodb(users).await,
    }
}

/// A deterministic CCAI upload file of `count` users, valid for the default tenant settings.
fn users_file(count: usize) -> Vec<u8> {
    const ROLES: [&str; 3] = ["Admin", "Manager", "Agent"];
    const TEAMS: [&str; 2] = ["Sales", "Support"];
    let mut out = Vec::with_capacity(count * 240 + 2);
    out.push(b'[');
    for i in 0..count {
        if i > 0 {
            out.extend_from_slice(b",\n");
        }
        let status = if i % 10 == 9 { "Inactive" } else { "Active" };
        let role = ROLES[i % ROLES.len()];
        let team = TEAMS[i % TEAMS.len()];
        let record = format!(
            r#"{{"email":"user{i}@example.com","first_name":"First{i}","last_name":"Last{i}","agent_number":"{agent}","status":"{status}","roles":[{{"name":"{role}","value":1}}],"teams":[{{"name":"{team}","value":1}}]}}"#,
            agent = 100_000 + i,
        );
        out.extend_from_slice(record.as_bytes());
    }
    out.push(b']');
    out
}

fn megabytes(bytes: usize) -> f64 {
    bytes as f64 / 1_000_000.0
}

async fn validation(users: usize) -> Result<(), String> {
    let file = Bytes::from(users_file(users));
    let size = file.len();
    let settings = TenantSettings::with_defaults(TenantId::parse(TENANT)?);
    let context = ValidationContext::new(&settings);
    let options = FileValidation {
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
    assert_eq!(raw.len(), users);
    drop(raw);

    let started = Instant::now();
    let values: Vec<serde_json::Value> =
        serde_json::from_slice(&file).map_err(|e| format!("Value parse failed: {e}"))?;
    let value_time = started.elapsed();
    assert_eq!(values.len(), users);
    drop(values);

    let mb = megabytes(size);
    let rate = |time: Duration| mb / time.as_secs_f64();
    let ratio = value_time.as_secs_f64() / validation_time.as_secs_f64();
    println!(
        "validation: {users} users, {mb:.1} MB in {:.2} s = {:.0}k users/s, {:.1} MB/s; {} rows, {} errors",
        validation_time.as_secs_f64(),
        users as f64 / validation_time.as_secs_f64() / 1000.0,
        rate(validation_time),
        report.total_rows,
        report.error_count,
    );
    println!(
        "serde_json parse Vec<&RawValue>: {:.2} s = {:.1} MB/s",
        raw_time.as_secs_f64(),
        rate(raw_time)
    );
    println!(
        "serde_json parse Vec<Value>: {:.2} s = {:.1} MB/s",
        value_time.as_secs_f64(),
        rate(value_time)
    );
    println!(
        "ratio validation/Value-parse throughput {ratio:.2} (target >= {VALIDATION_TARGET:.2}): {}",
        verdict(ratio >= VALIDATION_TARGET)
    );
    println!(
        "ratio validation/RawValue-parse throughput {:.2}",
        raw_time.as_secs_f64() / validation_time.as_secs_f64()
    );
    Ok(())
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
}

/// Counts the HTTP requests a DynamoDB client sends (retries included), by operation.
#[derive(Debug, Clone, Default)]
struct RequestCounter {
    counts: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl RequestCounter {
    fn snapshot(&self) -> BTreeMap<String, u64> {
        self.counts.lock().expect("counter lock").clone()
    }
}

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "RequestCounter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // The JSON protocol names the operation in `X-Amz-Target: DynamoDB_20120810.PutItem`.
        let operation = context
            .request()
            .headers()
            .get("x-amz-target")
            .map(|target| target.rsplit('.').next().unwrap_or(target).to_owned())
            .unwrap_or_else(|| "unknown".to_owned());
        *self
            .counts
            .lock()
            .expect("counter lock")
            .entry(operation)
            .or_insert(0) += 1;
        Ok(())
    }
}

/// The difference `after - before`, per operation.
fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(operation, count)| {
            (
                operation.clone(),
                count - before.get(operation).copied().unwrap_or(0),
            )
        })
        .filter(|(_, count)| *count > 0)
        .collect()
}

async fn dynamodb(users: usize) -> Result<(), String> {
    let endpoint = moto::start()?;
    let name = format!("bulk-bench-{}", std::process::id());
    let settings = AwsSettings {
        table: name.clone(),
        bucket: name.clone(),
        queue_url: String::new(),
        endpoint_url: Some(endpoint.clone()),
        region: "us-east-1".to_owned(),
    };
    let credentials = Credentials::new("testing", "testing", None, None, "bulk-bench");
    let config = load_sdk_config(&settings, Some(credentials)).await;
    let counter = RequestCounter::default();
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&config)
            .interceptor(counter.clone())
            .build(),
    );
    // The S3 and SQS clients come from the adapters' own builder (path-style S3 for moto).
    let plain = AwsAdapters::from_sdk_config(&config, settings.clone());
    let failed = |what: &str| {
        let endpoint = endpoint.clone();
        let what = what.to_owned();
        move |e: bulk_users::ports::StoreError| format!("cannot create {what} on {endpoint}: {e}")
    };
    create_table(&dynamodb, &name)
        .await
        .map_err(failed("table"))?;
    create_bucket(&plain.s3, &name)
        .await
        .map_err(failed("bucket"))?;
    let queue_url = create_queue(&plain.sqs, &name)
        .await
        .map_err(failed("queue"))?;
    let settings = AwsSettings {
        queue_url,
        ..settings
    };
    let adapters = AwsAdapters::from_clients(dynamodb, plain.s3, plain.sqs, settings);
    let service = BulkService::new(adapters.ports.clone(), ServiceConfig::default());
    let who = Principal {
        tenant: TenantId::parse(TENANT)?,
        key_id: "bench".to_owned(),
        name: "bench".to_owned(),
    };
    service
        .ensure_tenant(&who.tenant)
        .await
        .map_err(|e| format!("tenant: {e:?}"))?;

    let file = Bytes::from(users_file(users));
    println!(
        "dynamodb: {users} users, {:.1} MB file, moto at {endpoint}",
        megabytes(file.len())
    );
    for run in ["first run (creates)", "second run (updates)"] {
        let before = counter.snapshot();
        let started = Instant::now();
        let job = run_job(&service, &who, file.clone()).await?;
        let elapsed = started.elapsed();
        let counts = delta(&before, &counter.snapshot());
        let total: u64 = counts.values().sum();
        let upserted = job.affected_rows;
        if upserted == 0 {
            return Err(format!("{run}: no user was upserted: {job:?}"));
        }
        let per_1000 = |count: u64| count as f64 * 1000.0 / upserted as f64;
        let breakdown: Vec<String> = counts
            .iter()
            .map(|(operation, count)| format!("{operation} {:.1}", per_1000(*count)))
            .collect();
        println!(
            "{run}: {upserted} users upserted ({} failed) in {:.1} s; {total} DynamoDB requests = {:.1} per 1000 users (target <= {DYNAMODB_TARGET:.0}): {}; per 1000 users by operation: {}",
            job.failed_rows,
            elapsed.as_secs_f64(),
            per_1000(total),
            verdict(per_1000(total) <= DYNAMODB_TARGET),
            breakdown.join(", "),
        );
    }
    Ok(())
}

/// Upload, proceed, and process every chunk of the job in-process (in chunk order, as the
/// queue would hand them over); returns the finished job.
async fn run_job(service: &BulkService, who: &Principal, body: Bytes) -> Result<Job, String> {
    let job = service
        .upload(
            who,
            FileUpload {
                filename: "users.json".to_owned(),
                body,
            },
        )
        .await
        .map_err(|e| format!("upload: {e:?}"))?;
    if job.status != JobStatus::ValidScheme {
        return Err(format!("the upload is not valid: {job:?}"));
    }
    let job = service
        .proceed(who, job.id)
        .await
        .map_err(|e| format!("proceed: {e:?}"))?;
    for item in job
        .chunk_plan
        .work_items(&job.tenant, job.id, job.total_rows)
    {
        service
            .process(&item)
            .await
            .map_err(|e| format!("processing chunk {}: {e}", item.chunk))?;
    }
    let job = service
        .job(who, job.id)
        .await
        .map_err(|e| format!("job: {e:?}"))?;
    if job.status != JobStatus::Completed {
        return Err(format!("the job did not complete: {job:?}"));
    }
    Ok(job)
}
