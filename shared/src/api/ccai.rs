//! Handlers of the CCAI bulk user management dialect.

use http::{HeaderValue, StatusCode};
use serde_json::Value;

use super::multipart::parse_upload_form;
use super::query::Query;
use super::views::{self, JobView};
use super::{json_response, ApiError, ApiRequest, ApiResponse, Operation, Route};
use crate::auth::parse_basic;
use crate::csvfile::{layout_headers, write_rows};
use crate::model::JobId;
use crate::ports::PageRequest;
use crate::service::{BulkService, PresignRequest, Principal, ServiceError};
use crate::validation::READ_ONLY_FIELDS;

/// How a read answers: JSON, or CSV in the upload's layout (`?format=csv`, or `Accept:
/// text/csv`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AnswerFormat {
    Json,
    Csv,
}

impl AnswerFormat {
    fn of(request: &ApiRequest) -> Result<AnswerFormat, ApiError> {
        match Query::parse(request.query.as_deref()).single("format")? {
            Some("json") => return Ok(AnswerFormat::Json),
            Some("csv") => return Ok(AnswerFormat::Csv),
            Some(_) => {
                return Err(ApiError::bad_request(
                    "format",
                    "format must be json or csv",
                ))
            }
            None => {}
        }
        let accepts_csv = request
            .headers
            .get_all(http::header::ACCEPT)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .any(|value| value.to_ascii_lowercase().contains("text/csv"));
        Ok(if accepts_csv {
            AnswerFormat::Csv
        } else {
            AnswerFormat::Json
        })
    }
}

/// Records as a CSV file of the upload's layout, to download as `filename`.
fn csv_answer<'a>(
    headers: &[String],
    records: impl IntoIterator<Item = &'a Value>,
    filename: &str,
) -> Result<ApiResponse, ApiError> {
    let bytes = write_rows(headers, records)
        .map_err(|error| ApiError::from(ServiceError::Internal(error.to_string())))?;
    let mut response = http::Response::new(bytes::Bytes::from(bytes));
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(disposition) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\""))
    {
        headers.insert(http::header::CONTENT_DISPOSITION, disposition);
    }
    Ok(response)
}

/// The template, as JSON or as a CSV file of the tenant's layout.
async fn template(
    service: &BulkService,
    who: &Principal,
    request: &ApiRequest,
) -> Result<ApiResponse, ApiError> {
    let format = AnswerFormat::of(request)?;
    let settings = service.settings(&who.tenant).await?;
    let template = views::template(&settings);
    match format {
        AnswerFormat::Json => Ok(json_response(StatusCode::OK, &template)),
        AnswerFormat::Csv => {
            let headers = layout_headers(&settings.roles, &settings.teams, &[]);
            let rows = template.as_array().into_iter().flatten();
            csv_answer(&headers, rows, "template.csv")
        }
    }
}

/// "Get user configuration data", as JSON or as a CSV file that uploads again unchanged.
async fn user_configuration(
    service: &BulkService,
    who: &Principal,
    request: &ApiRequest,
) -> Result<ApiResponse, ApiError> {
    let query = Query::parse(request.query.as_deref()).user_query(MAX_USERS_PER_PAGE)?;
    let format = AnswerFormat::of(request)?;
    let users = service.users(who, &query).await?;
    let body: Vec<Value> = users.iter().map(views::user_configuration).collect();
    match format {
        AnswerFormat::Json => Ok(json_response(StatusCode::OK, &body)),
        AnswerFormat::Csv => {
            let settings = service.settings(&who.tenant).await?;
            let headers = layout_headers(&settings.roles, &settings.teams, &READ_ONLY_FIELDS);
            let rows: Vec<Value> = body.into_iter().map(views::with_status).collect();
            csv_answer(&headers, &rows, "users.csv")
        }
    }
}

/// The canonical prefix of the dialect's routes, for links.
const PREFIX: &str = "/apps/api/v1/bulk/users";
const JOBS_PER_PAGE: u64 = 20;
const MAX_JOBS_PER_PAGE: u64 = 100;
const MAX_USERS_PER_PAGE: usize = 1000;
/// Error log entries per page: by default as many as at most. A page of them stays below
/// Lambda's 6 MB answer whatever the entries (4.5 MB at most, checked when compiling).
const MAX_ERRORS_PER_PAGE: u64 = 1000;
/// The largest answer of a synchronously invoked Lambda function.
const LAMBDA_ANSWER_BYTES: usize = 6 * 1024 * 1024;
const _: () = assert!(
    MAX_ERRORS_PER_PAGE as usize * views::MAX_ERROR_ENTRY_BYTES + 64 * 1024 < LAMBDA_ANSWER_BYTES
);

pub async fn handle(
    service: &BulkService,
    who: &Principal,
    base: &str,
    route: Route,
    request: &ApiRequest,
) -> Result<ApiResponse, ApiError> {
    Query::parse(request.query.as_deref()).only(route.operation.spec().query)?;
    match route.operation {
        Operation::Template => template(service, who, request).await,
        Operation::UserConfiguration => user_configuration(service, who, request).await,
        Operation::Upload => job_change(service, who, base, JobChange::Upload, request).await,
        Operation::ReplaceUpload => {
            job_change(service, who, base, JobChange::ReplaceUpload, request).await
        }
        Operation::Proceed => job_change(service, who, base, JobChange::Proceed, request).await,
        Operation::Cancel => job_change(service, who, base, JobChange::Cancel, request).await,
        Operation::PresignUpload => {
            let request = presign_request(&request.body)?;
            let presigned = service.presign_upload(who, request).await?;
            let mut summary = views::job_summary(&presigned.job, base);
            summary["upload"] = views::presigned_upload(&presigned.upload, presigned.expires_at);
            Ok(job_answer(StatusCode::CREATED, summary))
        }
        Operation::Job => {
            let job = service.job(who, job_id(route.param())?).await?;
            Ok(json_response(StatusCode::OK, &JobView::new(&job, base)))
        }
        Operation::Jobs => {
            let page =
                Query::parse(request.query.as_deref()).page(JOBS_PER_PAGE, MAX_JOBS_PER_PAGE)?;
            let (jobs, total) = service.jobs(who, page).await?;
            let body: Vec<JobView> = jobs.iter().map(|job| JobView::new(job, base)).collect();
            Ok(paged(&body, total, page, &format!("{base}{PREFIX}/jobs")))
        }
        Operation::SchemeErrors => {
            let (id, page) = (job_id(route.param())?, error_page(request)?);
            let (errors, total) = service.scheme_errors(who, id, page).await?;
            let body: Vec<Value> = errors.iter().map(views::scheme_error).collect();
            let url = error_log_url(base, "scheme", id);
            Ok(paged(&body, total, page, &url))
        }
        Operation::UpdateErrors => {
            let (id, page) = (job_id(route.param())?, error_page(request)?);
            let (errors, total) = service.update_errors(who, id, page).await?;
            let body: Vec<Value> = errors.iter().map(views::update_error).collect();
            let url = error_log_url(base, "update", id);
            Ok(paged(&body, total, page, &url))
        }
        // The other dialects' operations are not routed here.
        _ => Err(ApiError::NotFoundRoute),
    }
}

/// The operations that create or change a job and answer with its summary.
#[derive(Debug, Clone, Copy)]
enum JobChange {
    Upload,
    ReplaceUpload,
    Proceed,
    Cancel,
}

/// Makes `change` and answers the job's summary.
async fn job_change(
    service: &BulkService,
    who: &Principal,
    base: &str,
    change: JobChange,
    request: &ApiRequest,
) -> Result<ApiResponse, ApiError> {
    let (status, job) = match change {
        JobChange::Upload => {
            let form = parse_upload_form(&request.headers, request.body.clone()).await?;
            let file = form.file.ok_or_else(missing_file)?;
            (StatusCode::CREATED, service.upload(who, file).await?)
        }
        JobChange::ReplaceUpload => {
            let form = parse_upload_form(&request.headers, request.body.clone()).await?;
            let Some(id) = form.id.as_deref() else {
                return Err(ApiError::bad_request(
                    "id",
                    "id is required to replace a job's file",
                ));
            };
            let file = form.file.ok_or_else(missing_file)?;
            (
                StatusCode::OK,
                service.replace_file(who, job_id(id)?, file).await?,
            )
        }
        JobChange::Proceed => {
            let id = job_id_body(&request.body)?;
            (StatusCode::ACCEPTED, service.proceed(who, id).await?)
        }
        JobChange::Cancel => {
            let id = job_id_body(&request.body)?;
            (StatusCode::OK, service.cancel(who, id).await?)
        }
    };
    Ok(job_answer(status, views::job_summary(&job, base)))
}

/// The URL of a job's error log of one kind (`scheme`, `update`), for links to its pages.
fn error_log_url(base: &str, log: &str, id: JobId) -> String {
    format!("{base}{PREFIX}/errors/{log}/{id}")
}

pub(super) async fn authenticate(
    service: &BulkService,
    request: &ApiRequest,
) -> Result<Principal, ApiError> {
    let header = super::authorization(request)?;
    let (tenant, secret) = parse_basic(header).ok_or(ApiError::Unauthorized)?;
    Ok(service.authenticate(&tenant, &secret).await?)
}

fn missing_file() -> ApiError {
    ApiError::bad_request(
        "file",
        "the form must carry the JSON file in a field named file",
    )
}

fn job_id(text: &str) -> Result<JobId, ApiError> {
    match text.trim().parse::<JobId>() {
        Ok(id) if id > 0 => Ok(id),
        _ => Err(ApiError::bad_request(
            "id",
            "id must be a positive integer (a job id)",
        )),
    }
}

/// The body of `proceed` and `cancel`: `{"id": N}` (a string of digits is accepted too).
fn job_id_body(body: &[u8]) -> Result<JobId, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| ApiError::bad_request("body", "the body must be JSON like {\"id\": 123}"))?;
    match value.get("id") {
        Some(Value::Number(number)) => number
            .as_u64()
            .filter(|id| *id > 0)
            .ok_or_else(|| ApiError::bad_request("id", "id must be a positive integer (a job id)")),
        Some(Value::String(text)) => job_id(text),
        Some(_) => Err(ApiError::bad_request(
            "id",
            "id must be a positive integer (a job id)",
        )),
        None if value.is_object() => Err(ApiError::bad_request("id", "id is required")),
        None => Err(ApiError::bad_request(
            "body",
            "the body must be a JSON object like {\"id\": 123}",
        )),
    }
}

/// The body of `upload/presigned`: `{"bytes": N, "filename"?: "…", "proceed"?: bool}`.
fn presign_request(body: &[u8]) -> Result<PresignRequest, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|_| {
        ApiError::bad_request(
            "body",
            "the body must be JSON like {\"bytes\": 12345, \"filename\": \"users.json\"}",
        )
    })?;
    let Value::Object(fields) = value else {
        return Err(ApiError::bad_request(
            "body",
            "the body must be a JSON object",
        ));
    };
    if let Some(unknown) = fields
        .keys()
        .find(|key| !["bytes", "filename", "proceed"].contains(&key.as_str()))
    {
        return Err(ApiError::bad_request(
            unknown,
            format!("unknown field '{unknown}'; the fields are bytes, filename and proceed"),
        ));
    }
    let bytes = match fields.get("bytes") {
        None => {
            return Err(ApiError::bad_request(
                "bytes",
                "bytes (the exact size of the file) is required",
            ))
        }
        Some(value) => value.as_u64().filter(|bytes| *bytes > 0).ok_or_else(|| {
            ApiError::bad_request(
                "bytes",
                "bytes must be a positive integer (the file's exact size)",
            )
        })?,
    };
    let filename = match fields.get("filename") {
        None | Some(Value::Null) => "upload.json".to_owned(),
        Some(Value::String(name)) if !name.trim().is_empty() => name.clone(),
        Some(_) => {
            return Err(ApiError::bad_request(
                "filename",
                "filename must be a non-empty string",
            ))
        }
    };
    let proceed = match fields.get("proceed") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(proceed)) => *proceed,
        Some(_) => {
            return Err(ApiError::bad_request(
                "proceed",
                "proceed must be true or false",
            ))
        }
    };
    Ok(PresignRequest {
        filename,
        bytes,
        proceed,
    })
}

fn error_page(request: &ApiRequest) -> Result<PageRequest, ApiError> {
    Query::parse(request.query.as_deref()).page(MAX_ERRORS_PER_PAGE, MAX_ERRORS_PER_PAGE)
}

/// One page of a listing at `url`, with the headers `Total` (entries in the listing),
/// `Per-Page`, and `Link: <url?page=N+1&per_page=…>; rel="next"` when more follow.
fn paged(body: &[impl serde::Serialize], total: u64, page: PageRequest, url: &str) -> ApiResponse {
    let mut response = json_response(StatusCode::OK, &body);
    let headers = response.headers_mut();
    headers.insert("total", HeaderValue::from(total));
    headers.insert("per-page", HeaderValue::from(page.per_page));
    if page.offset() + (body.len() as u64) < total {
        let next = format!(
            "<{url}?page={}&per_page={}>; rel=\"next\"",
            page.page + 1,
            page.per_page
        );
        if let Ok(value) = HeaderValue::from_str(&next) {
            headers.insert(http::header::LINK, value);
        }
    }
    response
}

/// A job's summary (`{id, status, link, …}`) with the job's URL in the `Link` header.
fn job_answer(status: StatusCode, summary: Value) -> ApiResponse {
    let mut response = json_response(status, &summary);
    if let Some(link) = summary.get("link").and_then(Value::as_str) {
        if let Ok(value) = HeaderValue::from_str(&format!("<{link}>")) {
            response.headers_mut().insert(http::header::LINK, value);
        }
    }
    response
}
