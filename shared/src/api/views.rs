//! JSON shapes of the CCAI dialect.

use serde::Serialize;
use serde_json::{json, Value};

use crate::model::{Job, SchemeError, TenantSettings, Timestamp, UpdateError, User};
use crate::ports::PresignedUpload;

/// Path of a job record, appended to the base URL.
pub fn job_path(id: u64) -> String {
    format!("/apps/api/v1/bulk/users/jobs/{id}")
}

#[derive(Serialize)]
pub struct JobView<'a> {
    id: u64,
    created_at: Timestamp,
    process_requested_at: Option<Timestamp>,
    filename: &'a str,
    total_rows: u64,
    affected_rows: u64,
    failed_rows: u64,
    status: &'static str,
    /// Portal users never act through this API: always null.
    uploaded_user_name: Option<&'a str>,
    proceed_user_name: Option<&'a str>,
    uploaded_api_user_name: &'a str,
    proceed_api_user_name: Option<&'a str>,
    /// Number of scheme errors (the list: `errors/scheme/{id}`).
    scheme_errors: u64,
    /// Number of update errors and warnings (the list: `errors/update/{id}`).
    update_errors: u64,
    file_bytes: u64,
    updated_at: Timestamp,
    completed_at: Option<Timestamp>,
    failure_reason: Option<&'a str>,
    link: String,
}

impl<'a> JobView<'a> {
    pub fn new(job: &'a Job, base_url: &str) -> JobView<'a> {
        JobView {
            id: job.id,
            created_at: job.created_at,
            process_requested_at: job.process_requested_at,
            filename: &job.filename,
            total_rows: job.total_rows,
            affected_rows: job.affected_rows,
            failed_rows: job.failed_rows,
            status: job.status.as_str(),
            uploaded_user_name: None,
            proceed_user_name: None,
            uploaded_api_user_name: &job.uploaded_api_user_name,
            proceed_api_user_name: job.proceed_api_user_name.as_deref(),
            scheme_errors: job.scheme_error_count,
            update_errors: job.update_error_count,
            file_bytes: job.file_bytes,
            updated_at: job.updated_at,
            completed_at: job.completed_at,
            failure_reason: job.failure_reason.as_deref(),
            link: format!("{base_url}{}", job_path(job.id)),
        }
    }
}

/// The short answer of upload and proceed: `{id, status, link}`.
pub fn job_summary(job: &Job, base_url: &str) -> Value {
    json!({
        "id": job.id,
        "status": job.status.as_str(),
        "link": format!("{base_url}{}", job_path(job.id)),
    })
}

/// Where and how to upload the file of a presigned job.
pub fn presigned_upload(upload: &PresignedUpload, expires_at: Timestamp) -> Value {
    let headers: serde_json::Map<String, Value> = upload
        .headers
        .iter()
        .map(|(name, value)| (name.clone(), Value::String(value.clone())))
        .collect();
    json!({
        "method": upload.method,
        "url": upload.url,
        "headers": headers,
        "expires_at": expires_at,
    })
}

/// The longest message and field name an error log entry shows, in characters. Messages are
/// ours and shorter (client values in them are clipped to 64 characters); the bound makes
/// the size of a page of the log a function of its entries alone.
const MAX_MESSAGE_CHARS: usize = 500;
const MAX_FIELD_CHARS: usize = 100;
/// The most bytes one error log entry takes in a Lambda function's answer, where the body is
/// itself a JSON string: every character of the message and field escaped twice (`\\uXXXX`,
/// 7 bytes), and the other members' names, numbers and punctuation, escaped too.
pub const MAX_ERROR_ENTRY_BYTES: usize = 7 * (MAX_MESSAGE_CHARS + MAX_FIELD_CHARS) + 2 * 160;

fn clipped(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

pub fn scheme_error(error: &SchemeError) -> Value {
    json!({
        "message": clipped(&error.message, MAX_MESSAGE_CHARS),
        "column": error.column,
        "row": error.row,
        "field": error.field.as_deref().map(|field| clipped(field, MAX_FIELD_CHARS)),
    })
}

pub fn update_error(error: &UpdateError) -> Value {
    json!({
        "message": clipped(&error.message, MAX_MESSAGE_CHARS),
        "column": error.column,
        "row": error.row,
        "field": error.field.as_deref().map(|field| clipped(field, MAX_FIELD_CHARS)),
        "error_type": error.error_type.as_str(),
    })
}

fn memberships(names: &[String]) -> Vec<Value> {
    names
        .iter()
        .map(|name| json!({"name": name, "value": 1}))
        .collect()
}

/// A user in "get user configuration data": every field, `deactivated_at` instead of `status`.
pub fn user_configuration(user: &User) -> Value {
    json!({
        "id": user.id,
        "email": user.email,
        "agent_number": user.agent_number,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "location": user.location,
        "max_chat_limit": user.max_chat_limit,
        "max_chat_limit_enabled": u8::from(user.max_chat_limit_enabled),
        "roles": memberships(&user.roles),
        "teams": memberships(&user.teams),
        "deactivated_at": user.deactivated_at,
        "created_at": user.created_at,
        "updated_at": user.updated_at,
    })
}

/// A user of "get user configuration data" with the `status` an upload takes (`Inactive`
/// once deactivated), as the CSV export writes it.
pub fn with_status(mut user: Value) -> Value {
    let status = if user["deactivated_at"].is_null() {
        "Active"
    } else {
        "Inactive"
    };
    user["status"] = Value::from(status);
    user
}

/// The template: one example user with every field, and the tenant's current roles and teams.
/// It is itself a valid upload file.
pub fn template(settings: &TenantSettings) -> Value {
    let zeroes = |names: &[String]| -> Vec<Value> {
        names
            .iter()
            .map(|name| json!({"name": name, "value": 0}))
            .collect()
    };
    json!([{
        "email": "jane.doe@example.com",
        "new_email": "",
        "agent_number": "1001",
        "first_name": "Jane",
        "last_name": "Doe",
        "status": "Active",
        "location": settings.locations.first().cloned().unwrap_or_default(),
        "max_chat_limit": settings.max_chat_limit.clamp(1, 3),
        "max_chat_limit_enabled": 1,
        "roles": zeroes(&settings.roles),
        "teams": zeroes(&settings.teams),
    }])
}
