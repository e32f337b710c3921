//! Figure 4: DynamoDB requests per 1000 users upserted by a CCAI upload processed on the AWS
//! adapters against the emulator (moto), for a first run (creates) and a second run of the same
//! file (updates) (target: at most 48). Requests are counted by an interceptor on the adapter's
//! DynamoDB client, retries included.

use std::time::Instant;

use bulk_users::adapters::aws::provision::{create_bucket, create_queue, create_table};
use bulk_users::adapters::aws::{AwsAdapters, AwsSettings, RequestCounter};
use bulk_users::model::{Job, JobStatus, TenantId};
use bulk_users::service::{BulkService, FileUpload, Principal, ServiceConfig};
use bytes::Bytes;

use crate::report::Figure;
use crate::synthetic::{megabytes, users_file};
use crate::{moto, TENANT};

/// At most this many requests per 1000 users upserted.
const TARGET: f64 = 48.0;

pub async fn run(users: usize) -> Result<Vec<Figure>, String> {
    let name = format!("bulk-bench-{}", std::process::id());
    let (settings, config) = moto::start_with_config(&name).await?;
    let endpoint = settings.endpoint_url.clone().unwrap_or_default();
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
    let adapters = AwsAdapters::from_clients(dynamodb, plain.s3, plain.sqs, plain.kms, settings);
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
        "  {users} users, {:.1} MB file, moto at {endpoint}",
        megabytes(file.len() as u64)
    );
    let mut figures = Vec::new();
    for run in ["first run (creates)", "second run (updates)"] {
        let before = counter.snapshot();
        let started = Instant::now();
        let job = run_job(&service, &who, file.clone()).await?;
        let elapsed = started.elapsed();
        let counts = counter.since(&before);
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
            "  {run}: {upserted} users upserted ({} failed), {total} DynamoDB requests, in {:.1} s",
            job.failed_rows,
            elapsed.as_secs_f64(),
        );
        let figure = Figure::against(
            format!("DynamoDB requests / 1000 users, {run}, {users} users"),
            format!("{:.1} ({})", per_1000(total), breakdown.join(", ")),
            format!("<= {TARGET:.0}"),
            per_1000(total) <= TARGET,
        );
        figures.push(figure);
    }
    Ok(figures)
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
                format: bulk_users::jobfile::FileFormat::Json,
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
