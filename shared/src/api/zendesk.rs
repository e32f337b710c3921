//! Handlers of the Zendesk dialect: `users/*_many` (each a job, queued) and `job_statuses`.
//!
//! Results are listed in request order (`index` 0-based); `status` is `Created`, `Updated`,
//! `Deleted` or `Failed`. A job's `status` is `queued` until a worker has committed part of
//! it, then `working`, and ends `completed`, `failed` or `killed` (cancelled).

use http::StatusCode;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use super::query::Query;
use super::{json_response, ApiError, ApiRequest, ApiResponse, Operation, Route};
use crate::auth::parse_basic;
use crate::model::{Job, JobId, JobKind, JobStatus, RowAction, RowResult};
use crate::service::{BulkService, Principal};

/// Most users one request may carry.
pub const MAX_USERS_PER_REQUEST: usize = 100;
/// Most job statuses `show_many` answers for.
const MAX_SHOW_MANY: usize = 100;
const DEFAULT_PAGE_SIZE: u64 = 100;

pub async fn handle(
    service: &BulkService,
    who: &Principal,
    base: &str,
    route: Route,
    request: &ApiRequest,
) -> Result<ApiResponse, ApiError> {
    let query = Query::parse(request.query.as_deref());
    match route.operation {
        Operation::CreateManyUsers => {
            submit(
                service,
                who,
                base,
                JobKind::CreateMany,
                users_array(&request.body)?,
            )
            .await
        }
        Operation::CreateOrUpdateManyUsers => {
            let users = users_array(&request.body)?;
            submit(service, who, base, JobKind::CreateOrUpdateMany, users).await
        }
        Operation::UpdateManyUsers => {
            let users = update_records(&query, &request.body)?;
            submit(service, who, base, JobKind::UpdateMany, users).await
        }
        Operation::DestroyManyUsers => {
            let users = destroy_records(&query)?;
            submit(service, who, base, JobKind::DestroyMany, users).await
        }
        Operation::ShowJobStatus => {
            let id = job_status_id(route.param()).ok_or_else(|| {
                ApiError::NotFound(format!("job status {} not found", route.param()))
            })?;
            let (job, results) = service.job_with_results(who, id).await?;
            Ok(json_response(
                StatusCode::OK,
                &json!({ "job_status": job_status(&job, Some(&results), base) }),
            ))
        }
        Operation::ShowManyJobStatuses => {
            let ids = query.list("ids").ok_or_else(|| {
                ApiError::bad_request("ids", "ids is required: job status ids, comma-separated")
            })?;
            if ids.len() > MAX_SHOW_MANY {
                return Err(ApiError::bad_request(
                    "ids",
                    format!("ids must name at most {MAX_SHOW_MANY} job statuses"),
                ));
            }
            let mut statuses = Vec::with_capacity(ids.len());
            for id in ids.iter().filter_map(|id| job_status_id(id)) {
                match service.job_with_results(who, id).await {
                    Ok((job, results)) => statuses.push(job_status(&job, Some(&results), base)),
                    Err(crate::service::ServiceError::NotFound(_)) => {}
                    Err(error) => return Err(error.into()),
                }
            }
            Ok(json_response(
                StatusCode::OK,
                &json!({ "job_statuses": statuses }),
            ))
        }
        Operation::JobStatuses => list(service, who, base, &query).await,
        _ => Err(ApiError::NotFoundRoute),
    }
}

/// Basic `{email}/token:{secret}` (an API token), Basic `{tenant}:{secret}`, or
/// `Bearer {secret}`.
pub(super) async fn authenticate(
    service: &BulkService,
    request: &ApiRequest,
) -> Result<Principal, ApiError> {
    let header = super::authorization(request)?;
    if let Some(token) = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
    {
        return Ok(service.authenticate_secret(token.trim()).await?);
    }
    let (user, secret) = parse_basic(header).ok_or(ApiError::Unauthorized)?;
    if user.ends_with("/token") {
        Ok(service.authenticate_secret(&secret).await?)
    } else {
        Ok(service.authenticate(&user, &secret).await?)
    }
}

async fn submit(
    service: &BulkService,
    who: &Principal,
    base: &str,
    kind: JobKind,
    users: Vec<Box<RawValue>>,
) -> Result<ApiResponse, ApiError> {
    let job = service.submit_batch(who, kind, &users).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "job_status": job_status(&job, None, base) }),
    ))
}

#[derive(Deserialize)]
struct UsersBody {
    users: Option<Vec<Box<RawValue>>>,
    user: Option<Box<RawValue>>,
}

fn body(bytes: &[u8]) -> Result<UsersBody, ApiError> {
    serde_json::from_slice::<UsersBody>(bytes).map_err(|error| {
        ApiError::bad_request(
            "users",
            format!("the body must be a JSON object with a users array: {error}"),
        )
    })
}

/// `{"users": [...]}` with 1 to 100 users.
fn users_array(bytes: &[u8]) -> Result<Vec<Box<RawValue>>, ApiError> {
    let users = body(bytes)?
        .users
        .ok_or_else(|| ApiError::bad_request("users", "users is required: an array of users"))?;
    check_count(users.len())?;
    Ok(users)
}

fn check_count(count: usize) -> Result<(), ApiError> {
    if count == 0 {
        return Err(ApiError::bad_request(
            "users",
            "users must hold at least one user",
        ));
    }
    if count > MAX_USERS_PER_REQUEST {
        return Err(ApiError::bad_request(
            "users",
            format!(
                "users holds {count} users; at most {MAX_USERS_PER_REQUEST} are accepted per request"
            ),
        ));
    }
    Ok(())
}

/// `update_many`: `?ids=` (or `?external_ids=`) with one `{"user": {...}}` applied to each, or
/// `{"users": [{"id" | "external_id", ...}, ...]}`.
fn update_records(query: &Query, bytes: &[u8]) -> Result<Vec<Box<RawValue>>, ApiError> {
    let targets = targets(query)?;
    let parsed = body(bytes)?;
    match (targets, parsed.user, parsed.users) {
        (Some((field, values)), Some(user), None) => {
            let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(user.get()) else {
                return Err(ApiError::bad_request("user", "user must be a JSON object"));
            };
            if fields.contains_key("id") || fields.contains_key(field) {
                return Err(ApiError::bad_request(
                    "user",
                    format!("user must not carry {field}: the users are named by {field}s="),
                ));
            }
            values
                .into_iter()
                .map(|value| {
                    let mut record = Map::with_capacity(fields.len() + 1);
                    record.insert(field.to_owned(), target_value(field, &value));
                    record.extend(fields.clone());
                    raw(&Value::Object(record))
                })
                .collect()
        }
        (None, None, Some(users)) => {
            check_count(users.len())?;
            Ok(users)
        }
        (Some(_), _, _) => Err(ApiError::bad_request(
            "user",
            "with ids= or external_ids= the body must be {\"user\": {...}}",
        )),
        (None, _, _) => Err(ApiError::bad_request(
            "users",
            "the body must be {\"users\": [...]} naming each user by id or external_id, or ids= must be given with {\"user\": {...}}",
        )),
    }
}

/// `destroy_many`: `?ids=` or `?external_ids=`.
fn destroy_records(query: &Query) -> Result<Vec<Box<RawValue>>, ApiError> {
    let (field, values) = targets(query)?
        .ok_or_else(|| ApiError::bad_request("ids", "ids= or external_ids= is required"))?;
    values
        .into_iter()
        .map(|value| raw(&json!({ field: target_value(field, &value) })))
        .collect()
}

/// The users named in the query: (`"id"`, ids) or (`"external_id"`, external ids), 1 to 100.
fn targets(query: &Query) -> Result<Option<(&'static str, Vec<String>)>, ApiError> {
    let (field, values) = match (query.list("ids"), query.list("external_ids")) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "ids",
                "give ids or external_ids, not both",
            ))
        }
        (Some(ids), None) => {
            if let Some(bad) = ids
                .iter()
                .find(|id| !id.bytes().all(|b| b.is_ascii_digit()))
            {
                return Err(ApiError::bad_request(
                    "ids",
                    format!("ids must be user ids (whole numbers), got '{bad}'"),
                ));
            }
            ("id", ids)
        }
        (None, Some(external_ids)) => ("external_id", external_ids),
        (None, None) => return Ok(None),
    };
    if values.is_empty() {
        return Err(ApiError::bad_request(
            field,
            format!("{field}s must not be empty"),
        ));
    }
    if values.len() > MAX_USERS_PER_REQUEST {
        return Err(ApiError::bad_request(
            field,
            format!(
                "{field}s names {} users; at most {MAX_USERS_PER_REQUEST} are accepted per request",
                values.len()
            ),
        ));
    }
    Ok(Some((field, values)))
}

fn target_value(field: &str, value: &str) -> Value {
    match (field, value.parse::<u64>()) {
        ("id", Ok(id)) => Value::from(id),
        _ => Value::from(value),
    }
}

fn raw(value: &Value) -> Result<Box<RawValue>, ApiError> {
    serde_json::value::to_raw_value(value)
        .map_err(|error| ApiError::Internal(format!("a record could not be written: {error}")))
}

/// `GET job_statuses`: newest first, cursor paging (`page[size]`, `page[after]`).
async fn list(
    service: &BulkService,
    who: &Principal,
    base: &str,
    query: &Query,
) -> Result<ApiResponse, ApiError> {
    let size = match query.single("page[size]")? {
        None => DEFAULT_PAGE_SIZE,
        Some(text) => match text.parse::<u64>() {
            Ok(size) if (1..=100).contains(&size) => size,
            _ => {
                return Err(ApiError::bad_request(
                    "page[size]",
                    "page[size] must be a whole number from 1 to 100",
                ))
            }
        },
    };
    let after = match query.single("page[after]")? {
        None => None,
        Some(cursor) => Some(cursor_ordinal(cursor).ok_or_else(|| {
            ApiError::bad_request("page[after]", "page[after] must be a cursor this API gave")
        })?),
    };
    let mut jobs = service.jobs_before(who, after, size + 1).await?;
    let has_more = jobs.len() as u64 > size;
    jobs.truncate(size as usize);
    let after_cursor = jobs.last().map(|job| cursor(job.ordinal));
    let before_cursor = jobs.first().map(|job| cursor(job.ordinal));
    let next = match (&after_cursor, has_more) {
        (Some(cursor), true) => Value::from(format!(
            "{base}/api/v2/job_statuses.json?page[size]={size}&page[after]={cursor}"
        )),
        _ => Value::Null,
    };
    let statuses: Vec<Value> = jobs.iter().map(|job| job_status(job, None, base)).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "job_statuses": statuses,
            "meta": {
                "has_more": has_more,
                "after_cursor": after_cursor,
                "before_cursor": before_cursor,
            },
            "links": { "next": next, "prev": Value::Null },
        }),
    ))
}

/// A cursor of the job list: a position in the caller's own list (a job's ordinal among its
/// tenant's jobs), so a cursor of another tenant's list pages the caller's jobs only.
fn cursor(ordinal: u64) -> String {
    format!("o{ordinal}")
}

fn cursor_ordinal(cursor: &str) -> Option<u64> {
    cursor
        .trim()
        .strip_prefix('o')?
        .parse()
        .ok()
        .filter(|ordinal| *ordinal > 0)
}

/// A job's id as Zendesk shows it: 32 hex digits.
pub fn job_status_key(id: JobId) -> String {
    format!("{id:032x}")
}

fn job_status_id(key: &str) -> Option<JobId> {
    let key = key.trim();
    if key.is_empty() || key.len() > 32 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    JobId::from_str_radix(key, 16).ok().filter(|id| *id > 0)
}

fn job_type(kind: JobKind) -> &'static str {
    match kind {
        JobKind::Upload => "bulk_upload_users",
        JobKind::CreateMany => "bulk_create_users",
        JobKind::CreateOrUpdateMany => "bulk_create_or_update_users",
        JobKind::UpdateMany => "bulk_update_users",
        JobKind::DestroyMany => "bulk_delete_users",
        JobKind::WorkspaceCreate => "workspace_create_users",
        JobKind::WorkspaceDelete => "workspace_delete_users",
    }
}

/// The status word of a job.
fn status_word(job: &Job) -> &'static str {
    match job.status {
        JobStatus::Created | JobStatus::ValidScheme => "queued",
        JobStatus::InProgress if job.chunks_done == 0 => "queued",
        JobStatus::InProgress => "working",
        JobStatus::Completed => "completed",
        JobStatus::Failed | JobStatus::InvalidScheme => "failed",
        JobStatus::Cancelled => "killed",
    }
}

/// A `job_status` object; `results` as recorded so far (null when not asked for).
fn job_status(job: &Job, results: Option<&[RowResult]>, base: &str) -> Value {
    let key = job_status_key(job.id);
    let message = match job.status {
        JobStatus::Completed => job.completed_at.map(|at| {
            let text = at.to_string();
            // 2022-01-07T06:40:34.000Z → "Completed at 2022-01-07 06:40:34 +0000"
            format!(
                "Completed at {} {} +0000",
                &text[..10],
                text.get(11..19).unwrap_or_default()
            )
        }),
        JobStatus::Failed | JobStatus::InvalidScheme => job
            .failure_reason
            .clone()
            .or_else(|| Some("the job failed".to_owned())),
        _ => None,
    };
    let results = results.map(|results| {
        results
            .iter()
            .map(|result| result_entry(job.kind, result))
            .collect::<Vec<_>>()
    });
    json!({
        "id": key,
        "job_type": job_type(job.kind),
        "url": format!("{base}/api/v2/job_statuses/{key}.json"),
        "status": status_word(job),
        "total": job.total_rows,
        "progress": job.affected_rows + job.failed_rows,
        "message": message,
        "results": results,
    })
}

fn result_entry(kind: JobKind, result: &RowResult) -> Value {
    let (status, action) = match result.action {
        RowAction::Created => ("Created", "create"),
        RowAction::Updated => ("Updated", "update"),
        RowAction::Deleted => ("Deleted", "delete"),
        RowAction::Failed => ("Failed", ""),
    };
    let mut entry = json!({
        "index": result.index,
        "status": status,
        "success": result.action != RowAction::Failed,
    });
    if !action.is_empty() {
        entry["action"] = Value::from(action);
    }
    if let Some(id) = result.user_id {
        entry["id"] = Value::from(id);
    }
    if let Some(email) = &result.email {
        entry["email"] = Value::from(email.as_str());
    }
    if let Some(external_id) = &result.external_id {
        entry["external_id"] = Value::from(external_id.as_str());
    }
    if let Some(error) = &result.error {
        entry["error"] = Value::from(error.as_str());
    }
    if let Some(details) = &result.details {
        entry["details"] = Value::from(details.as_str());
    }
    if kind == JobKind::Upload {
        entry["row"] = Value::from(result.index + 1);
    }
    entry
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_status_ids_are_32_hex_digits() {
        assert_eq!(job_status_key(255), "000000000000000000000000000000ff");
        assert_eq!(job_status_id("000000000000000000000000000000ff"), Some(255));
        assert_eq!(job_status_id("ff"), Some(255));
        assert_eq!(job_status_id("zz"), None);
        assert_eq!(job_status_id(&"f".repeat(33)), None);
        assert_eq!(job_status_id("0"), None);
    }
}
