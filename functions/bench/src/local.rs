//! Figure 3: end-to-end time of a 1,000,000-user job on `bulk-local` (target: at most 60 s):
//! the local server (`bulk_local::LocalServer`, what the `bulk-local` binary runs) serves on a
//! loopback port over a fresh embedded store; the clock runs from the start of the HTTP upload
//! to the job status answering `completed`, polled every 100 ms.

use std::time::{Duration, Instant};

use base64::Engine as _;
use bulk_local::LocalServer;
use bulk_users::local::LocalSettings;
use bulk_users::model::TenantId;
use bulk_users::service::ServiceConfig;
use serde_json::Value;

use crate::memory::stored_users;
use crate::report::Figure;
use crate::synthetic::{megabytes, users_file};
use crate::TENANT;

/// At most this many seconds from upload to `completed`.
const TARGET_SECONDS: f64 = 60.0;
/// The CCAI API's path prefix.
const PREFIX: &str = "/apps/api/v1/bulk/users";
/// Longest wait for the job to finish.
const GIVE_UP_AFTER: Duration = Duration::from_secs(30 * 60);
const BOUNDARY: &str = "bulk-bench-boundary-7e1c9d";

pub async fn run(users: usize, workers: usize) -> Result<Vec<Figure>, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    let tenant = TenantId::parse(TENANT)?;
    let secret = format!("bench-{:032x}", rand::random::<u128>());
    let settings = LocalSettings {
        host: "127.0.0.1".to_owned(),
        port: 0,
        data_dir: dir.path().to_path_buf(),
        tenant: tenant.clone(),
        secret: Some(secret.clone()),
        key_id: TENANT.to_owned(),
        max_request_bytes: 4 * 1024 * 1024 * 1024,
        workers,
    };
    let server = LocalServer::start(&settings, ServiceConfig::default())
        .await
        .map_err(|e| format!("the local server did not start: {e}"))?;
    let result = upload_and_wait(&server, &secret, users).await;
    let stored = stored_users(server.service.ports(), &tenant).await;
    server.stop().await;
    let run = result?;
    let stored = stored?;

    let counts = (
        run.job["total_rows"].as_u64(),
        run.job["affected_rows"].as_u64(),
        run.job["failed_rows"].as_u64(),
    );
    let expected = Some(users as u64);
    if counts != (expected, expected, Some(0)) || stored != users as u64 {
        return Err(format!(
            "the counts are not exact: {} users stored, job {}",
            stored, run.job
        ));
    }
    let total = run.total.as_secs_f64();
    Ok(vec![
        Figure::plain(
            format!(
                "local end to end, {users} users ({:.1} MB), {workers} workers: stages",
                megabytes(run.file_bytes)
            ),
            format!(
                "upload and validation {:.1} s, proceed {:.2} s, processing {:.1} s; {stored} users stored",
                run.upload.as_secs_f64(),
                run.proceed.as_secs_f64(),
                (run.total - run.upload - run.proceed).as_secs_f64(),
            ),
        ),
        Figure::against(
            format!("local end to end, {users} users, upload to `completed`"),
            format!("{total:.1} s = {:.0}k users/s", users as f64 / total / 1000.0),
            format!("<= {TARGET_SECONDS:.0} s"),
            total <= TARGET_SECONDS,
        ),
    ])
}

struct Run {
    job: Value,
    file_bytes: u64,
    upload: Duration,
    proceed: Duration,
    total: Duration,
}

async fn upload_and_wait(server: &LocalServer, secret: &str, users: usize) -> Result<Run, String> {
    let base = format!("http://{}{PREFIX}", server.address);
    let authorization = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{TENANT}:{secret}"))
    );
    let file = users_file(users);
    let file_bytes = file.len() as u64;
    let body = multipart(file);
    let client = reqwest::Client::new();
    let call = |request: reqwest::RequestBuilder| {
        let authorization = authorization.clone();
        async move {
            let response = request
                .header("authorization", authorization)
                .send()
                .await
                .map_err(|e| format!("request failed: {e}"))?;
            let status = response.status();
            let body: Value = response
                .json()
                .await
                .map_err(|e| format!("answer is no JSON: {e}"))?;
            if status.is_success() {
                Ok(body)
            } else {
                Err(format!("answered {status}: {body}"))
            }
        }
    };

    let started = Instant::now();
    let uploaded = call(
        client
            .post(format!("{base}/upload"))
            .header(
                "content-type",
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .body(body),
    )
    .await
    .map_err(|e| format!("upload: {e}"))?;
    let upload = started.elapsed();
    if uploaded["status"] != "valid_scheme" {
        return Err(format!("the upload is not valid: {uploaded}"));
    }
    let id = uploaded["id"].as_u64().ok_or("the upload answered no id")?;
    call(
        client
            .post(format!("{base}/proceed"))
            .json(&serde_json::json!({ "id": id })),
    )
    .await
    .map_err(|e| format!("proceed: {e}"))?;
    let proceed = started.elapsed() - upload;
    loop {
        let job = call(client.get(format!("{base}/jobs/{id}")))
            .await
            .map_err(|e| format!("job status: {e}"))?;
        match job["status"].as_str() {
            Some("completed") => {
                return Ok(Run {
                    job,
                    file_bytes,
                    upload,
                    proceed,
                    total: started.elapsed(),
                })
            }
            Some("failed") => return Err(format!("the job failed: {job}")),
            _ if started.elapsed() > GIVE_UP_AFTER => {
                return Err(format!(
                    "the job did not finish in {GIVE_UP_AFTER:?}: {job}"
                ))
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// A multipart form with the file as `file` (users.json).
fn multipart(file: Vec<u8>) -> Vec<u8> {
    let mut body = Vec::with_capacity(file.len() + 256);
    body.extend_from_slice(
        format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"users.json\"\r\nContent-Type: application/json\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(&file);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}
