//! What an operator reads of a deployment: each function's log, as Lambda keeps it when the
//! template's `LoggingConfig.LogFormat` is JSON (Lambda then sets `AWS_LAMBDA_LOG_FORMAT=JSON`,
//! which the runtime's subscriber follows). The real processor binary runs under the tests' own
//! runtime API against moto, with that variable set as Lambda sets it; every line it writes is
//! read back: its log lines, and its metrics (CloudWatch Embedded Metric Format, which
//! CloudWatch extracts from the same log).

use std::time::Duration;

use bulk_tests::emulator::deployed_environment;
use bulk_tests::local_server::LocalServer;
use bulk_tests::moto::fresh_stack;
use bulk_tests::runtime_api::{queued_work, LambdaHost};
use bulk_tests::steps::LocalClient;
use bulk_tests::users_file;
use bulk_users::model::TenantId;
use bulk_users::service::{BulkService, FileUpload, ServiceConfig};
use serde_json::{json, Value};

const CHUNKS: usize = 3;
const ROWS_PER_CHUNK: u64 = 4;

/// Every line of a processor invocation is a JSON object, and every line of the invocation
/// names its request (`requestId`, the runtime's), its tenant and its job (the chunk's span):
/// a log query by tenant or job finds all of a chunk's lines, and nothing of another tenant's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_line_of_a_processor_invocation_is_json_naming_its_request_tenant_and_job() {
    let stack = fresh_stack("observability").await;
    let ports = stack.admin.ports.clone();
    let config = ServiceConfig {
        rows_per_chunk: ROWS_PER_CHUNK,
        ..Default::default()
    };
    let service = BulkService::new(ports, config);
    let acme = TenantId::parse("acme").unwrap();
    let issued = service.create_credential(&acme, "acme-sync", None).await;
    let who = service
        .authenticate("acme", &issued.expect("credential").secret)
        .await
        .expect("acme");
    let upload = FileUpload {
        filename: "users.json".to_owned(),
        body: users_file(CHUNKS * ROWS_PER_CHUNK as usize, "").into(),
        format: bulk_users::jobfile::FileFormat::Json,
    };
    let job = service.upload(&who, upload).await.expect("upload");
    service.proceed(&who, job.id).await.expect("proceed");

    let mut environment =
        deployed_environment(&stack.settings(), &stack.credentials_of("processor").await);
    environment.insert("AWS_LAMBDA_LOG_FORMAT".to_owned(), "JSON".to_owned());
    let mut processor = LambdaHost::start("processor", &environment).await;
    let records = queued_work(&stack, CHUNKS).await;
    let answer = processor
        .invoke(&json!({ "Records": records }), Duration::from_secs(60))
        .await
        .expect("the processor answers");
    assert_eq!(answer["batchItemFailures"], json!([]), "{answer}");

    let lines = lines_of(&processor, "processor-1", CHUNKS).await;
    for line in &lines {
        let fields = fields_of(line);
        assert_eq!(
            fields.get("requestId"),
            Some(&json!("processor-1")),
            "{line}"
        );
        assert_eq!(fields.get("tenant"), Some(&json!("acme")), "{line}");
        assert_eq!(fields.get("job_id"), Some(&json!(job.id)), "{line}");
    }
    metrics_of_the_invocation(&processor, CHUNKS, ROWS_PER_CHUNK).await;
}

/// The invocation's metrics, as CloudWatch reads them from the log: one Embedded Metric Format
/// document (a JSON line with `_aws`), namespace `BulkUsers`, dimensioned by the function only
/// (no tenant: one series per function), with the rows applied and the completed jobs as
/// counts and each chunk's duration in milliseconds.
async fn metrics_of_the_invocation(host: &LambdaHost, chunks: usize, rows_per_chunk: u64) {
    let mut document = None;
    for _ in 0..50 {
        document = host
            .log_lines()
            .iter()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|line| line.get("_aws").is_some());
        if document.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let document = document.expect("an Embedded Metric Format line after the invocation");
    let directive = &document["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(directive["Namespace"], "BulkUsers", "{document}");
    assert_eq!(directive["Dimensions"], json!([["Function"]]), "{document}");
    assert_eq!(document["Function"], "processor", "{document}");
    assert_eq!(document["RequestId"], "processor-1", "{document}");
    assert!(document["_aws"]["Timestamp"].is_u64(), "{document}");
    let units: std::collections::BTreeMap<String, String> = directive["Metrics"]
        .as_array()
        .expect("the metrics of the document")
        .iter()
        .map(|metric| {
            let unit = metric["Unit"].as_str().unwrap_or("None").to_owned();
            (metric["Name"].as_str().unwrap_or_default().to_owned(), unit)
        })
        .collect();
    for (name, unit) in [
        ("RowsApplied", "Count"),
        ("JobsCompleted", "Count"),
        ("ChunkDuration", "Milliseconds"),
    ] {
        assert_eq!(
            units.get(name).map(String::as_str),
            Some(unit),
            "{name}: {document}"
        );
    }
    assert_eq!(
        document["RowsApplied"],
        json!(chunks as u64 * rows_per_chunk)
    );
    // No row failed: a count that stayed zero is not written.
    assert!(document.get("RowsFailed").is_none(), "{document}");
    assert_eq!(document["JobsCompleted"], json!(1));
    let durations = document["ChunkDuration"]
        .as_array()
        .expect("a duration per chunk");
    assert_eq!(durations.len(), chunks, "{document}");
    assert!(durations
        .iter()
        .all(|took| took.as_f64().is_some_and(|ms| ms >= 0.0)));
    assert!(document.get("tenant").is_none() && document.get("Tenant").is_none());
}

/// `bulk-local` writes the same JSON lines when asked (`BULK_LOG_FORMAT=json`): the worker's
/// line of a completed job names the job's tenant and the job, from its chunk's span.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_local_writes_json_lines_naming_the_tenant_and_job_of_a_chunk() {
    const SECRET: &str = "observability-secret";
    let dir = tempfile::tempdir().unwrap();
    let settings = [
        ("BULK_LOCAL_TENANT", "acme"),
        ("BULK_LOCAL_SECRET", SECRET),
        ("BULK_LOG", "info"),
        ("BULK_LOG_FORMAT", "json"),
    ];
    let server = LocalServer::start_capturing(&dir.path().join("data"), &settings);
    let client = LocalClient::new(&server, "acme", SECRET);
    let (status, job) = client.upload(&users_file(5, "")).await;
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_u64().expect("a job id");
    let (status, proceeded) = client.proceed(id).await;
    assert_eq!(status, 202, "{proceeded}");
    client.wait_for_status(id, "completed").await;

    let lines = server.stop_capturing();
    let logged: Vec<Value> = lines
        .iter()
        .filter(|line| line.starts_with('{'))
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let completed = logged
        .iter()
        .find(|line| line["fields"]["message"] == "job completed")
        .unwrap_or_else(|| panic!("no line of the job's completion in {lines:#?}"));
    let fields = fields_of(completed);
    assert_eq!(fields.get("tenant"), Some(&json!("acme")), "{completed}");
    assert_eq!(fields.get("job_id"), Some(&json!(id)), "{completed}");
}

/// Who dropped what is logged on every arrival, taken in or refused: the key, the version,
/// the principal and source (locally: the file owner's uid and the drop folder), and the job it
/// became or why it was moved aside.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn who_dropped_what_is_logged_for_every_drop_taken_in_or_refused() {
    const SECRET: &str = "observability-secret";
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let settings = [
        ("BULK_LOCAL_TENANT", "acme"),
        ("BULK_LOCAL_SECRET", SECRET),
        ("BULK_LOG", "info"),
        ("BULK_LOG_FORMAT", "json"),
    ];
    let server = LocalServer::start_capturing(&data, &settings);
    let client = LocalClient::new(&server, "acme", SECRET);
    for (path, users) in [("acme/proceed/users.json", 2), ("nobody/users.json", 1)] {
        let target = data.join("drop").join(path);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        let part = target.with_file_name(".users.json.part");
        std::fs::write(&part, users_file(users, "")).unwrap();
        std::fs::rename(&part, &target).unwrap();
    }
    let rejected = data.join("files/rejected/nobody/users.json");
    for _ in 0..300 {
        let (_, jobs) = client.get("jobs").await;
        if jobs[0]["status"] == "completed" && rejected.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let lines = server.stop_capturing();
    let logged: Vec<Value> = lines
        .iter()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let line_of = |message: &str, key: &str| {
        let found = logged
            .iter()
            .find(|line| line["fields"]["message"] == message && line["fields"]["key"] == key);
        found.unwrap_or_else(|| panic!("no {message:?} of {key} in {lines:#?}"))["fields"].clone()
    };
    let taken = line_of("took in a file", "incoming/acme/proceed/users.json");
    let refused = line_of(
        "refused a file: moved aside unprocessed",
        "incoming/nobody/users.json",
    );
    for fields in [&taken, &refused] {
        let principal = fields["principal"].as_str().unwrap_or_default();
        assert!(principal.starts_with("uid "), "{fields}");
        assert_eq!(fields["source_ip"], "local drop folder", "{fields}");
        assert!(fields["version"].is_string(), "{fields}");
    }
    assert!(
        taken["job_id"].is_u64() && taken["pinned"].is_string(),
        "{taken}"
    );
    let reason = refused["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("does not exist"), "{refused}");
    assert_eq!(
        refused["moved_to"], "rejected/nobody/users.json",
        "{refused}"
    );
}

/// A failed authentication is logged with the client's address and the tenant it named (never
/// the secret it sent), and counted against the address: past
/// `BULK_FAILED_AUTHENTICATIONS_PER_MINUTE` failures in a minute, the address is refused (429,
/// `failed_authentications_per_minute`) before any credential is read — the right one too —
/// until the minute ends. Checked on `bulk-local` over real HTTP, where the address is the
/// connection's peer (on Lambda it is API Gateway's `sourceIp`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_authentications_are_logged_per_tenant_and_address_and_throttle_the_address() {
    const SECRET: &str = "the-right-secret";
    const GUESS: &str = "a-wrong-guess-1234";
    let dir = tempfile::tempdir().unwrap();
    let settings = [
        ("BULK_LOCAL_TENANT", "acme"),
        ("BULK_LOCAL_SECRET", SECRET),
        ("BULK_LOG", "info"),
        ("BULK_LOG_FORMAT", "json"),
        ("BULK_FAILED_AUTHENTICATIONS_PER_MINUTE", "3"),
    ];
    let server = LocalServer::start_capturing(&dir.path().join("data"), &settings);
    let right = LocalClient::new(&server, "acme", SECRET);
    let wrong = LocalClient::new(&server, "acme", GUESS);
    bulk_tests::early_in_a_minute().await;
    for _ in 0..3 {
        assert_eq!(wrong.get("jobs").await.0, 401);
    }
    let (status, refused) = right.get("jobs").await;
    assert_eq!(status, 429, "{refused}");
    assert_eq!(
        refused["limit"], "failed_authentications_per_minute",
        "{refused}"
    );
    assert!(
        refused["message"].as_str().unwrap().contains("127.0.0.1"),
        "{refused}"
    );

    let lines = server.stop_capturing();
    assert!(!lines.iter().any(|line| line.contains(GUESS)), "{lines:#?}");
    let failures: Vec<Value> = lines
        .iter()
        .filter(|line| line.contains("authentication failed"))
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    assert_eq!(failures.len(), 3, "one line per failure: {lines:#?}");
    for line in &failures {
        assert_eq!(line["level"], "WARN", "{line}");
        assert_eq!(line["fields"]["source"], "127.0.0.1", "{line}");
        assert_eq!(line["fields"]["claimed_tenant"], "acme", "{line}");
    }
}

/// The function's lines, every one a JSON object, of invocation `request_id`: at least one
/// per chunk (each chunk's outcome is logged).
async fn lines_of(host: &LambdaHost, request_id: &str, chunks: usize) -> Vec<Value> {
    for _ in 0..50 {
        let parsed: Vec<Value> = host
            .log_lines()
            .iter()
            .map(|line| {
                let value: Value = serde_json::from_str(line).unwrap_or_else(|error| {
                    panic!("a log line that is not JSON ({error}): {line}")
                });
                assert!(value.is_object(), "a log line that is no object: {line}");
                value
            })
            .collect();
        let ours: Vec<Value> = parsed
            .into_iter()
            .filter(|line| line["spans"].to_string().contains(request_id))
            .collect();
        if ours.len() >= chunks {
            return ours;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "fewer than {chunks} lines of {request_id}: {:#?}",
        host.log_lines()
    );
}

/// The fields of the spans a line was written in (not the event's own: a line that names no
/// job itself still carries its chunk's).
fn fields_of(line: &Value) -> serde_json::Map<String, Value> {
    let mut fields = serde_json::Map::new();
    for span in line["spans"].as_array().into_iter().flatten() {
        fields.extend(span.as_object().cloned().unwrap_or_default());
    }
    fields
}
