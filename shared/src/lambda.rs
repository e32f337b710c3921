//! Lambda glue: API Gateway requests into the route table, SQS batches into the processor.
//! The functions in `functions/` only call these.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use bytes::Bytes;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use lambda_runtime::LambdaEvent;

use crate::adapters::aws::{connect, AwsSettings};
use crate::api::{Api, ApiRequest, ApiResponse, RouteGroup};
use crate::deadline::{chunk_budget_from_env, Deadline, CHUNK_BUDGET, REQUEST_CHUNK_BUDGET};
use crate::delivery::{
    dead_letter_reason, give_up, log_intake, log_retry, settle_chunk, settle_intake, Settlement,
};
use crate::model::WorkItem;
use crate::ports::StoreError;
use crate::processing::ChunkOutcome;
use crate::service::{Arrival, BulkService, ServiceConfig, STALE_JOB_AFTER};
use serde::Deserialize;
use serde_json::Value;
use tracing::Instrument;

/// Deliveries of a work item before SQS moves it to the dead-letter queue: the work queue's
/// `maxReceiveCount` in `template.yaml` (a test holds the two equal). On the last one a chunk
/// that still fails ends its job `failed`.
pub const MAX_RECEIVES: u32 = crate::delivery::MAX_DELIVERIES;

pub type Error = lambda_runtime::Error;

/// Builds the service on the AWS adapters from the environment, once per process.
pub async fn service_from_env() -> Result<BulkService, Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let settings = AwsSettings::from_env()?;
    let config = ServiceConfig::from_env()?;
    let adapters = connect(&settings).await;
    Ok(BulkService::new(adapters.ports, config))
}

/// The namespace of the functions' metrics in CloudWatch.
pub const METRICS_NAMESPACE: &str = "BulkUsers";

/// The metrics recorder of the process: the service's metrics ([`crate::observe::metric`])
/// written as CloudWatch Embedded Metric Format lines after each invocation, dimensioned by
/// the function (and carrying the invocation's request id as a property).
fn emf_metrics() -> Result<&'static metrics_cloudwatch_embedded::Collector, Error> {
    let function = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_default();
    let collector = metrics_cloudwatch_embedded::Builder::new()
        .cloudwatch_namespace(METRICS_NAMESPACE)
        .with_dimension("Function", function)
        .with_lambda_request_id("RequestId")
        .init()?;
    crate::observe::describe_metrics();
    Ok(collector)
}

/// Runs `handler` as the function, its metrics flushed after each invocation.
async fn run_function<Event, Answer, Handler, Answering>(handler: Handler) -> Result<(), Error>
where
    Event: serde::de::DeserializeOwned,
    Answer: serde::Serialize,
    Handler: FnMut(LambdaEvent<Event>) -> Answering,
    Answering: std::future::Future<Output = Result<Answer, Error>>,
{
    metrics_cloudwatch_embedded::lambda::handler::run(emf_metrics()?, handler).await
}

/// Runs an HTTP function serving one group of routes.
pub async fn run_http(group: RouteGroup) -> Result<(), Error> {
    let api = Api::new(service_from_env().await?);
    let chunk_budget = chunk_budget_from_env(REQUEST_CHUNK_BUDGET)?;
    let metrics = emf_metrics()?;
    metrics_cloudwatch_embedded::lambda::handler::run_http(metrics, move |request: Request| {
        let api = api.clone();
        let deadline = request
            .lambda_context_ref()
            .and_then(|context| Deadline::from_unix_millis(context.deadline, chunk_budget));
        async move {
            let mut request = api_request(request);
            request.deadline = deadline;
            let response = api.handle_group(group, request).await;
            Ok::<_, Error>(lambda_response(response))
        }
    })
    .await
}

/// Runs the SQS-triggered processor.
pub async fn run_processor() -> Result<(), Error> {
    let service = service_from_env().await?;
    let chunk_budget = chunk_budget_from_env(CHUNK_BUDGET)?;
    run_function(move |event: LambdaEvent<SqsEvent>| {
        let service = service.clone();
        let deadline = Deadline::from_unix_millis(event.context.deadline, chunk_budget);
        async move { Ok::<_, Error>(process_sqs_batch(&service, event.payload, deadline).await) }
    })
    .await
}

/// Runs the scheduled sweeper: each invocation (an EventBridge schedule) resumes the jobs that
/// have been stale for [`STALE_JOB_AFTER`], and answers what it did.
pub async fn run_sweeper() -> Result<(), Error> {
    let service = service_from_env().await?;
    run_function(move |_: LambdaEvent<Value>| {
        let service = service.clone();
        async move { sweep(&service).await }
    })
    .await
}

/// One sweep: the resumed jobs and the chunks queued again, and the jobs given up, as JSON.
pub async fn sweep(service: &BulkService) -> Result<Value, Error> {
    let sweep = service.resume_stale_jobs(STALE_JOB_AFTER).await?;
    Ok(serde_json::json!({
        "resumed": sweep
            .resumed
            .iter()
            .map(|job| serde_json::json!({"job_id": job.job_id, "requeued_chunks": job.requeued_chunks}))
            .collect::<Vec<_>>(),
        "given_up": sweep
            .given_up
            .iter()
            .map(|job| serde_json::json!({"job_id": job.job_id, "reason": job.reason}))
            .collect::<Vec<_>>(),
    }))
}

/// Converts an API Gateway request (as `lambda_http` decoded it) into the API's request. A
/// named stage (`/Prod/…`) that `lambda_http` keeps in the path is removed, so the route table
/// sees the same paths behind any stage.
pub fn api_request(request: Request) -> ApiRequest {
    let (stage, source) = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(context)) => {
            (context.stage.clone(), context.identity.source_ip.clone())
        }
        Some(RequestContext::ApiGatewayV2(context)) => {
            (context.stage.clone(), context.http.source_ip.clone())
        }
        _ => (None, None),
    };
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    let path = match stage.as_deref() {
        Some(stage) if stage != "$default" => path
            .strip_prefix('/')
            .and_then(|rest| rest.strip_prefix(stage))
            .filter(|rest| rest.starts_with('/'))
            .unwrap_or(path),
        _ => path,
    };
    let body = match body {
        Body::Empty => Bytes::new(),
        Body::Text(text) => Bytes::from(text),
        Body::Binary(bytes) => Bytes::from(bytes),
        _ => Bytes::new(),
    };
    ApiRequest {
        method: parts.method,
        path: path.to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
        body,
        deadline: None,
        source,
    }
}

/// Converts the API's response for API Gateway: JSON as text, anything else as binary.
pub fn lambda_response(response: ApiResponse) -> Response<Body> {
    let (parts, bytes) = response.into_parts();
    let body = match String::from_utf8(bytes.to_vec()) {
        Ok(text) if !text.is_empty() => Body::Text(text),
        Ok(_) => Body::Empty,
        Err(error) => Body::Binary(error.into_bytes()),
    };
    Response::from_parts(parts, body)
}

/// Processes one delivered chunk and settles it; true when its message is to fail (delivered
/// again, or moved to the dead-letter queue).
async fn work_on(service: &BulkService, item: &WorkItem, receives: u32) -> bool {
    let processed = service.process(item).await;
    match settle_chunk(item, receives, &processed) {
        Settlement::Done => {
            if let Ok(outcome) = &processed {
                log_outcome(item, outcome);
            }
            false
        }
        Settlement::Retry => {
            log_retry(item, receives, &processed);
            true
        }
        Settlement::GiveUp { reason, .. } => {
            // The message still fails: SQS moves it to the dead-letter queue.
            give_up(service, item, &reason).await;
            true
        }
    }
}

/// Processes an SQS batch; failed messages are reported by id so only they are retried
/// (the event source must enable `ReportBatchItemFailures`). A chunk that fails on its
/// [`MAX_RECEIVES`]th delivery ends its job `failed` with the reason, and its message goes on
/// to the dead-letter queue. Once too little of the invocation is left for a chunk
/// (`deadline`), the messages not started are handed back the same way, before Lambda's
/// timeout would cut a chunk short and count a delivery against every message of the batch.
pub async fn process_sqs_batch(
    service: &BulkService,
    event: SqsEvent,
    deadline: Option<Deadline>,
) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    let mut handed_back = 0;
    for message in event.records {
        let id = message.message_id.clone().unwrap_or_default();
        if deadline.is_some_and(|deadline| !deadline.allows_a_chunk()) {
            handed_back += 1;
            if !id.is_empty() {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id;
                response.batch_item_failures.push(failure);
            }
            continue;
        }
        let receives = message
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|count| count.parse::<u32>().ok())
            .unwrap_or(1);
        let failed = match message
            .body
            .as_deref()
            .map(serde_json::from_str::<WorkItem>)
        {
            Some(Ok(item)) => {
                let span = crate::observe::chunk_span(&item);
                work_on(service, &item, receives).instrument(span).await
            }
            Some(Err(error)) => {
                tracing::error!(message_id = %id, %error, "message is not a work item");
                true
            }
            None => {
                tracing::error!(message_id = %id, "message has no body");
                true
            }
        };
        if failed && !id.is_empty() {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            response.batch_item_failures.push(failure);
        }
    }
    if handed_back > 0 {
        tracing::info!(
            handed_back,
            "the invocation's deadline is near: messages not started are handed back"
        );
    }
    response
}

/// Runs the consumer of the work queue's dead-letter queue.
pub async fn run_dead_letters() -> Result<(), Error> {
    let service = service_from_env().await?;
    run_function(move |event: LambdaEvent<SqsEvent>| {
        let service = service.clone();
        async move { Ok::<_, Error>(process_dead_letters(&service, event.payload).await) }
    })
    .await
}

/// Ends `failed` the job of each work item that reached the dead-letter queue. A chunk that
/// failed on its last delivery failed its job already (the processor saw it fail); one whose
/// every delivery timed out or crashed the processor arrives here with its job still in
/// progress. A job that ended otherwise is left as it is; a message that is no work item is
/// logged and dropped. Only an unavailable store hands a message back.
pub async fn process_dead_letters(service: &BulkService, event: SqsEvent) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for message in event.records {
        let id = message.message_id.clone().unwrap_or_default();
        let item = match message
            .body
            .as_deref()
            .map(serde_json::from_str::<WorkItem>)
        {
            Some(Ok(item)) => item,
            _ => {
                tracing::error!(message_id = %id, body = ?message.body, "a dead letter that is no work item: dropped");
                continue;
            }
        };
        let reason = dead_letter_reason(&item);
        match service.fail_job(&item.tenant, item.job_id, &reason).await {
            Ok(()) | Err(StoreError::NotFound(_)) => {
                tracing::error!(job_id = item.job_id, chunk = item.chunk, %reason, "a chunk went to the dead-letter queue");
            }
            Err(error) => {
                tracing::warn!(job_id = item.job_id, %error, "a dead letter could not be handled; it will be retried");
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id;
                response.batch_item_failures.push(failure);
            }
        }
    }
    response
}

/// Runs the intake: files dropped into the bucket's `incoming/` prefix become jobs.
pub async fn run_intake() -> Result<(), Error> {
    let service = service_from_env().await?;
    run_function(move |event: LambdaEvent<Value>| {
        let service = service.clone();
        async move { handle_intake_event(&service, event.payload).await }
    })
    .await
}

/// Handles what the intake is invoked with: an SQS batch whose messages are the bucket's S3
/// notifications (the deployed wiring: S3 → SQS → Lambda, for retries and a dead-letter queue),
/// or an S3 event itself (`sam local invoke`, a direct S3 trigger). Keys are URL-decoded, as
/// S3 sends them encoded.
pub async fn handle_intake_event(service: &BulkService, event: Value) -> Result<Value, Error> {
    let from_sqs = event
        .get("Records")
        .and_then(Value::as_array)
        .is_some_and(|records| {
            records
                .iter()
                .any(|record| record.get("eventSource").and_then(Value::as_str) == Some("aws:sqs"))
        });
    if !from_sqs {
        let notification: S3Notification = serde_json::from_value(event)
            .map_err(|error| format!("the intake expects an SQS or S3 event: {error}"))?;
        for arrival in created_arrivals(&notification) {
            take_in(service, &arrival).await?;
        }
        return Ok(serde_json::json!({}));
    }
    let batch: SqsEvent = serde_json::from_value(event)
        .map_err(|error| format!("the intake expects an SQS or S3 event: {error}"))?;
    let mut response = SqsBatchResponse::default();
    for message in batch.records {
        let id = message.message_id.unwrap_or_default();
        let failed = match notification_of(message.body.as_deref()) {
            Ok(notification) => {
                let mut failed = false;
                for arrival in created_arrivals(&notification) {
                    failed |= take_in(service, &arrival).await.is_err();
                }
                failed
            }
            Err(error) => {
                tracing::error!(message_id = id, %error, "message is not an S3 notification");
                true
            }
        };
        if failed && !id.is_empty() {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            response.batch_item_failures.push(failure);
        }
    }
    Ok(serde_json::to_value(response)?)
}

/// The S3 notification a queue message carries (S3's test event, sent when a bucket's
/// notifications are set up, has no records).
fn notification_of(body: Option<&str>) -> Result<S3Notification, String> {
    let body = body.ok_or("the message has no body")?;
    serde_json::from_str(body).map_err(|error| error.to_string())
}

/// What the intake reads of an S3 event notification. `aws_lambda_events`' `S3Event` also
/// requires `userIdentity`, `requestParameters` and `eventTime`, which S3 sends but emulators
/// leave out; the intake logs who wrote the object when they are there and refuses no
/// notification for their absence.
#[derive(Debug, Deserialize)]
pub struct S3Notification {
    #[serde(rename = "Records", default)]
    records: Vec<S3Record>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct S3Record {
    event_name: String,
    #[serde(default)]
    user_identity: Option<S3UserIdentity>,
    #[serde(default)]
    request_parameters: Option<S3RequestParameters>,
    s3: S3Entity,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct S3UserIdentity {
    #[serde(default)]
    principal_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct S3RequestParameters {
    #[serde(rename = "sourceIPAddress", default)]
    source_ip_address: Option<String>,
}

#[derive(Debug, Deserialize)]
struct S3Entity {
    object: S3Object,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct S3Object {
    key: String,
    /// Absent from buckets without versions.
    #[serde(default)]
    version_id: Option<String>,
}

async fn take_in(service: &BulkService, arrival: &Arrival) -> Result<(), Error> {
    let key = arrival.key.as_str();
    let taken_in = service
        .take_in(arrival)
        .instrument(crate::observe::intake_span(key))
        .await;
    log_intake(key, &taken_in);
    match (settle_intake(&taken_in), taken_in) {
        (Settlement::Retry, Err(error)) => Err(error.into()),
        _ => Ok(()),
    }
}

/// The object keys of the `ObjectCreated` records of an S3 notification, decoded (other event
/// types have none).
pub fn created_keys(notification: &S3Notification) -> Vec<String> {
    created_arrivals(notification)
        .into_iter()
        .map(|arrival| arrival.key)
        .collect()
}

/// The objects the `ObjectCreated` records of an S3 notification name: each key (decoded),
/// the version created, who created it and from where.
pub fn created_arrivals(notification: &S3Notification) -> Vec<Arrival> {
    notification
        .records
        .iter()
        .filter(|record| record.event_name.starts_with("ObjectCreated"))
        .map(|record| {
            let object = &record.s3.object;
            Arrival {
                key: percent_encoding::percent_decode_str(&object.key.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned(),
                version: object
                    .version_id
                    .clone()
                    .filter(|v| !v.is_empty() && v != "null"),
                principal: record
                    .user_identity
                    .as_ref()
                    .and_then(|who| who.principal_id.clone()),
                source_ip: record
                    .request_parameters
                    .as_ref()
                    .and_then(|from| from.source_ip_address.clone()),
            }
        })
        .collect()
}

fn log_outcome(item: &WorkItem, outcome: &ChunkOutcome) {
    tracing::info!(
        job_id = item.job_id,
        chunk = item.chunk,
        ?outcome,
        "chunk processed"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An S3 notification names who wrote the object, from where, and which version: the
    /// intake logs the first two and takes in exactly the third.
    #[test]
    fn a_notification_names_the_key_version_principal_and_source_of_each_created_object() {
        let notification: S3Notification = serde_json::from_value(serde_json::json!({
            "Records": [
                {
                    "eventName": "ObjectCreated:Put",
                    "userIdentity": {"principalId": "AWS:AROAEXAMPLE:acme-uploader"},
                    "requestParameters": {"sourceIPAddress": "203.0.113.10"},
                    "s3": {"object": {"key": "incoming/acme/weekly+import.json", "versionId": "3HL4kqtJlcpXroDTDmJ"}}
                },
                {"eventName": "ObjectCreated:Copy", "s3": {"object": {"key": "incoming/acme/x.json", "versionId": "null"}}},
                {"eventName": "ObjectRemoved:Delete", "s3": {"object": {"key": "incoming/acme/y.json"}}}
            ]
        }))
        .unwrap();
        let arrivals = created_arrivals(&notification);
        assert_eq!(
            arrivals,
            vec![
                Arrival {
                    key: "incoming/acme/weekly import.json".to_owned(),
                    version: Some("3HL4kqtJlcpXroDTDmJ".to_owned()),
                    principal: Some("AWS:AROAEXAMPLE:acme-uploader".to_owned()),
                    source_ip: Some("203.0.113.10".to_owned()),
                },
                Arrival::of("incoming/acme/x.json"),
            ]
        );
    }
}
