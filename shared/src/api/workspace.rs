//! Handlers of the Huawei Workspace dialect: `users/batch-create` (synchronous), the user list
//! and deletions, under `/v2/{project_id}/…`; `project_id` is the caller's tenant.
//!
//! A batch is all-or-nothing for everything that can be checked before writing: every field
//! rule of every user, names and emails repeated within the batch, and names or emails that
//! already exist. Any of these answers 400 naming the user's index and field, and no user is
//! written (the refused batch is still recorded as an `invalid_scheme` job). Only a
//! concurrent request creating the same name between the check and the write can leave a
//! batch partly applied; the answer then names the users that were not created.

use std::collections::HashMap;

use http::{HeaderValue, StatusCode};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use super::query::Query;
use super::{json_response, ApiError, ApiRequest, ApiResponse, Operation, Route};
use crate::auth::SignedRequest;
use crate::model::{JobKind, RowAction, RowResult, SchemeError, User, UserFilter, UserId, UserKey};
use crate::passwords::hash_passwords;
use crate::service::{BulkService, KeyTicket, Principal};
use crate::validation::{workspace_command, PasswordForm, RowError, MAX_USER_NAME_CHARS};

/// Users one `batch-create` may carry.
pub const MAX_USERS_PER_BATCH: usize = 200;
/// User ids one `batch-delete` may carry.
pub const MAX_USERS_PER_DELETE: usize = 100;
const DEFAULT_LIST_LIMIT: u64 = 100;
const MAX_LIST_LIMIT: u64 = 1000;

pub async fn handle(
    service: &BulkService,
    who: &Principal,
    route: Route,
    request: &ApiRequest,
    ticket: Option<&KeyTicket>,
) -> Result<ApiResponse, ApiError> {
    if route.param() != who.tenant.as_str() {
        return Err(ApiError::NotFound(format!(
            "project {} not found",
            route.param()
        )));
    }
    match route.operation {
        Operation::WorkspaceBatchCreate => batch_create(service, who, request, ticket).await,
        Operation::WorkspaceListUsers => list_users(service, who, request).await,
        Operation::WorkspaceDeleteUser => {
            let id = route.params.get(1).map(String::as_str).unwrap_or_default();
            let id = id
                .parse::<UserId>()
                .map_err(|_| ApiError::NotFound(format!("user {id} not found")))?;
            delete_users(service, who, vec![id], request.deadline).await
        }
        Operation::WorkspaceBatchDelete => {
            let ids = delete_ids(&request.body)?;
            delete_users(service, who, ids, request.deadline).await
        }
        _ => Err(ApiError::NotFoundRoute),
    }
}

/// `X-Auth-Token: {secret}`, or the SDK's AK/SK signature (`SDK-HMAC-SHA256`).
pub(super) async fn authenticate(
    service: &BulkService,
    request: &ApiRequest,
) -> Result<Principal, ApiError> {
    if let Some(token) = request
        .headers
        .get("x-auth-token")
        .and_then(|value| value.to_str().ok())
    {
        return Ok(service.authenticate_secret(token.trim()).await?);
    }
    let signed = SignedRequest {
        method: request.method.as_str(),
        path: &request.path,
        query: request.query.as_deref(),
        headers: &request.headers,
        body: &request.body,
    };
    Ok(service.authenticate_signed(&signed).await?)
}

/// Every Workspace answer carries a request id, as the service's do.
pub fn add_request_id(response: &mut ApiResponse) {
    let mut id = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut id);
    if let Ok(value) = HeaderValue::from_str(&hex::encode(id)) {
        response.headers_mut().insert("x-request-id", value);
    }
}

fn empty(status: StatusCode) -> ApiResponse {
    let mut response = ApiResponse::new(bytes::Bytes::new());
    *response.status_mut() = status;
    response
}

#[derive(Deserialize)]
struct CreateBody {
    users: Option<Vec<Box<RawValue>>>,
}

async fn batch_create(
    service: &BulkService,
    who: &Principal,
    request: &ApiRequest,
    ticket: Option<&KeyTicket>,
) -> Result<ApiResponse, ApiError> {
    let users = serde_json::from_slice::<CreateBody>(&request.body)
        .map_err(|error| {
            ApiError::bad_request(
                "users",
                format!("the body must be a JSON object with a users array: {error}"),
            )
        })?
        .users
        .ok_or_else(|| ApiError::bad_request("users", "users is required"))?;
    if users.is_empty() || users.len() > MAX_USERS_PER_BATCH {
        return Err(ApiError::bad_request(
            "users",
            format!(
                "users must hold 1 to {MAX_USERS_PER_BATCH} users; it holds {}",
                users.len()
            ),
        ));
    }

    // Every rule of every user, and repeats within the batch.
    let mut errors: Vec<SchemeError> = Vec::new();
    let mut keys: Vec<Vec<UserKey>> = Vec::with_capacity(users.len());
    let mut first_seen: HashMap<UserKey, usize> = HashMap::new();
    for (index, user) in users.iter().enumerate() {
        match workspace_command(
            JobKind::WorkspaceCreate,
            user.get().as_bytes(),
            PasswordForm::Clear,
        ) {
            Err(problems) => errors.extend(
                problems
                    .into_iter()
                    .map(|problem| scheme_error(index, problem)),
            ),
            Ok(command) => {
                let mut held = command.patch.keys();
                held.dedup();
                for key in &held {
                    if let Some(first) = first_seen.insert(key.clone(), index) {
                        errors.push(scheme_error(
                            index,
                            RowError {
                                field: Some(workspace_field(key).to_owned()),
                                column: None,
                                message: format!(
                                    "{} '{}' is also given for users[{first}]",
                                    workspace_field(key),
                                    key.value()
                                ),
                            },
                        ));
                    }
                }
                keys.push(held);
            }
        }
    }
    if let Some(first) = errors.first() {
        let answer = invalid(first, errors.len());
        reject(service, who, &users, errors).await?;
        return Err(answer);
    }

    // The retry of this very request (same key and body) after it failed midway: the users it
    // wrote exist now, so its job is resumed rather than checked and started again.
    if let Some(job_id) = ticket.and_then(KeyTicket::resumes) {
        let results = service.resume_batch(who, job_id, request.deadline).await?;
        return created(&results);
    }

    // Names and emails that already exist.
    let wanted: Vec<UserKey> = keys.iter().flatten().cloned().collect();
    let existing = service.users_with_keys(who, &wanted).await?;
    let mut duplicates = Vec::new();
    for (index, held) in keys.iter().enumerate() {
        for key in held {
            if let Some(user) = existing.iter().find(|user| user.holds(key)) {
                duplicates.push(scheme_error(
                    index,
                    RowError {
                        field: Some(workspace_field(key).to_owned()),
                        column: None,
                        message: format!(
                            "{} '{}' already exists (user {})",
                            workspace_field(key),
                            key.value(),
                            user.id
                        ),
                    },
                ));
            }
        }
    }
    if let Some(first) = duplicates.first() {
        let answer = duplicate(first, duplicates.len());
        reject(service, who, &users, duplicates).await?;
        return Err(answer);
    }

    // Hash the initial passwords; the job's file holds only their hashes.
    let records = with_password_hashes(&users).await?;
    let results = service
        .run_batch(
            who,
            JobKind::WorkspaceCreate,
            &records,
            ticket,
            request.deadline,
        )
        .await?;
    created(&results)
}

/// The answer of a processed batch: `{}`, or the first row that failed.
fn created(results: &[RowResult]) -> Result<ApiResponse, ApiError> {
    if let Some(failed) = results
        .iter()
        .find(|result| result.action == RowAction::Failed)
    {
        return Err(row_failure(failed));
    }
    Ok(json_response(StatusCode::OK, &json!({})))
}

/// Records a refused batch as an `invalid_scheme` job, its users stored without passwords.
async fn reject(
    service: &BulkService,
    who: &Principal,
    users: &[Box<RawValue>],
    errors: Vec<SchemeError>,
) -> Result<(), ApiError> {
    let stored: Vec<Box<RawValue>> = users
        .iter()
        .map(|user| without_password(user))
        .collect::<Result<_, _>>()?;
    service
        .reject_batch(who, JobKind::WorkspaceCreate, &stored, errors)
        .await?;
    Ok(())
}

fn scheme_error(index: usize, problem: RowError) -> SchemeError {
    let field = problem.field.as_deref().unwrap_or("user");
    SchemeError {
        message: format!("users[{index}].{field}: {}", problem.message),
        column: None,
        row: Some(index as u64 + 1),
        field: problem.field,
    }
}

fn more(count: usize) -> String {
    match count {
        0 | 1 => String::new(),
        n => format!(" ({} more problems in this batch)", n - 1),
    }
}

fn invalid(first: &SchemeError, count: usize) -> ApiError {
    ApiError::bad_request(
        first.field.as_deref().unwrap_or("users"),
        format!("{}{}", first.message, more(count)),
    )
}

fn duplicate(first: &SchemeError, count: usize) -> ApiError {
    ApiError::Duplicate {
        field: first.field.clone().unwrap_or_else(|| "users".to_owned()),
        message: format!("{}{}", first.message, more(count)),
    }
}

fn row_failure(failed: &RowResult) -> ApiError {
    let message = format!(
        "users[{}]: {}",
        failed.index,
        failed
            .details
            .as_deref()
            .unwrap_or("the user was not created")
    );
    let field = failed.field.clone().unwrap_or_else(|| "users".to_owned());
    match failed.error.as_deref() {
        Some("DuplicateValue") => ApiError::Duplicate { field, message },
        Some("RecordNotFound") => ApiError::NotFound(message),
        _ => ApiError::BadRequest { field, message },
    }
}

/// The Workspace name of the field a key comes from.
fn workspace_field(key: &UserKey) -> &'static str {
    match key {
        UserKey::Email(_) => "user_email",
        UserKey::UserName(_) => "user_name",
        UserKey::ExternalId(_) => "external_id",
    }
}

/// The record as stored for a refused batch: without its password.
fn without_password(user: &RawValue) -> Result<Box<RawValue>, ApiError> {
    match serde_json::from_str::<Value>(user.get()) {
        Ok(Value::Object(mut fields)) => {
            fields.remove("password");
            to_raw(&Value::Object(fields))
        }
        _ => Ok(user.to_owned()),
    }
}

/// The records as stored for processing: `password` replaced by `password_hash`.
async fn with_password_hashes(users: &[Box<RawValue>]) -> Result<Vec<Box<RawValue>>, ApiError> {
    let mut records: Vec<Map<String, Value>> = Vec::with_capacity(users.len());
    let mut passwords = Vec::new();
    for user in users {
        let Ok(Value::Object(mut fields)) = serde_json::from_str::<Value>(user.get()) else {
            return Err(ApiError::bad_request(
                "users",
                "each user must be a JSON object",
            ));
        };
        if let Some(Value::String(password)) = fields.remove("password") {
            passwords.push((records.len(), password));
        }
        records.push(fields);
    }
    let (positions, clear): (Vec<usize>, Vec<String>) = passwords.into_iter().unzip();
    let hashes = hash_passwords(clear).await.map_err(ApiError::Internal)?;
    for (at, hash) in positions.into_iter().zip(hashes) {
        records[at].insert("password_hash".to_owned(), Value::from(hash));
    }
    records
        .into_iter()
        .map(|fields| to_raw(&Value::Object(fields)))
        .collect()
}

fn to_raw(value: &Value) -> Result<Box<RawValue>, ApiError> {
    serde_json::value::to_raw_value(value)
        .map_err(|error| ApiError::Internal(format!("a record could not be written: {error}")))
}

#[derive(Deserialize)]
struct DeleteBody {
    user_ids: Option<Vec<Value>>,
}

fn delete_ids(body: &[u8]) -> Result<Vec<UserId>, ApiError> {
    let ids = serde_json::from_slice::<DeleteBody>(body)
        .map_err(|error| {
            ApiError::bad_request(
                "user_ids",
                format!("the body must be a JSON object with a user_ids array: {error}"),
            )
        })?
        .user_ids
        .ok_or_else(|| ApiError::bad_request("user_ids", "user_ids is required"))?;
    if ids.is_empty() || ids.len() > MAX_USERS_PER_DELETE {
        return Err(ApiError::bad_request(
            "user_ids",
            format!(
                "user_ids must hold 1 to {MAX_USERS_PER_DELETE} ids; it holds {}",
                ids.len()
            ),
        ));
    }
    ids.iter()
        .enumerate()
        .map(|(index, id)| {
            let parsed = match id {
                Value::String(text) => text.parse::<UserId>().ok(),
                Value::Number(number) => number.as_u64(),
                _ => None,
            };
            parsed.ok_or_else(|| {
                ApiError::bad_request("user_ids", format!("user_ids[{index}] must be a user id"))
            })
        })
        .collect()
}

/// Deletes users, all or none: every id must name a user of the tenant.
async fn delete_users(
    service: &BulkService,
    who: &Principal,
    mut ids: Vec<UserId>,
    deadline: Option<crate::deadline::Deadline>,
) -> Result<ApiResponse, ApiError> {
    ids.sort_unstable();
    ids.dedup();
    let found = service.users_with_ids(who, &ids).await?;
    if let Some(missing) = ids
        .iter()
        .find(|id| !found.iter().any(|user| user.id == **id))
    {
        return Err(ApiError::NotFound(format!("user {missing} not found")));
    }
    let records: Vec<Box<RawValue>> = ids
        .iter()
        .map(|id| to_raw(&json!({ "user_id": id.to_string() })))
        .collect::<Result<_, _>>()?;
    let results = service
        .run_batch(who, JobKind::WorkspaceDelete, &records, None, deadline)
        .await?;
    if let Some(failed) = results
        .iter()
        .find(|result| result.action == RowAction::Failed)
    {
        return Err(row_failure(failed));
    }
    Ok(empty(StatusCode::NO_CONTENT))
}

async fn list_users(
    service: &BulkService,
    who: &Principal,
    request: &ApiRequest,
) -> Result<ApiResponse, ApiError> {
    let query = Query::parse(request.query.as_deref());
    let number = |name: &'static str, default: u64, max: u64| -> Result<u64, ApiError> {
        match query.single(name)? {
            None => Ok(default),
            Some(text) => match text.parse::<u64>() {
                Ok(value) if value <= max => Ok(value),
                _ => Err(ApiError::bad_request(
                    name,
                    format!("{name} must be a whole number from 0 to {max}"),
                )),
            },
        }
    };
    let limit = number("limit", DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT)?;
    let offset = number("offset", 0, 1_000_000)?;
    let filter = match query.single("user_name")? {
        // No user name is longer: such a filter could match no one.
        Some(text) if text.trim().chars().count() > MAX_USER_NAME_CHARS => {
            return Err(ApiError::bad_request(
                "user_name",
                format!("user_name must be at most {MAX_USER_NAME_CHARS} characters"),
            ))
        }
        Some(text) => UserFilter::user_name_starting_with(text),
        None => UserFilter::default(),
    };
    let (users, total) = service.directory(who, &filter, offset, limit).await?;
    let users: Vec<Value> = users.iter().map(user_view).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({ "total_count": total, "users": users }),
    ))
}

/// A user as `ListUsers` shows it; fields the user does not have are left out (a user created
/// by another dialect may have no user name).
fn user_view(user: &User) -> Value {
    let account = &user.workspace;
    let mut view = Map::new();
    view.insert("id".to_owned(), Value::from(user.id.to_string()));
    for (name, value) in [
        ("user_name", &user.user_name),
        ("user_email", &user.email),
        ("user_phone", &user.phone),
        ("description", &account.description),
        ("alias_name", &user.alias),
    ] {
        if let Some(value) = value {
            view.insert(name.to_owned(), Value::from(value.as_str()));
        }
    }
    let active_type = account.active_type.map_or("USER_ACTIVATE", |t| t.as_str());
    view.insert("active_type".to_owned(), Value::from(active_type));
    let expires = account.account_expires.as_deref().unwrap_or("0");
    view.insert("account_expires".to_owned(), Value::from(expires));
    view.insert(
        "enable_change_password".to_owned(),
        Value::from(account.enable_change_password.unwrap_or(true)),
    );
    view.insert(
        "next_login_change_password".to_owned(),
        Value::from(account.next_login_change_password.unwrap_or(true)),
    );
    view.insert("group_ids".to_owned(), json!(account.group_ids));
    view.insert("is_pre_user".to_owned(), Value::from(false));
    view.insert("locked".to_owned(), Value::from(false));
    view.insert("disabled".to_owned(), Value::from(!user.is_active()));
    view.insert("create_time".to_owned(), json!(user.created_at));
    Value::Object(view)
}
