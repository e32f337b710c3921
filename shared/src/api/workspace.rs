//! Handlers of the Huawei Workspace dialect: `users/batch-create` (synchronous), the user list
//! and deletions, under `/v2/{project_id}/…`; `project_id` is the caller's tenant.
//!
//! The handlers only translate: a batch's rules (all or nothing, checked before anything is
//! written) are the service's, in `service/workspace.rs`.

use http::{HeaderValue, StatusCode};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use super::query::Query;
use super::{json_response, ApiError, ApiRequest, ApiResponse, Operation, Route};
use crate::model::{RowAction, RowResult, User, UserFilter, UserId};
use crate::service::{BulkService, KeyTicket, Principal};
use crate::validation::MAX_USER_NAME_CHARS;

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
    Ok(service.authenticate_signed(&request.signed()).await?)
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
    let results = service
        .create_workspace_users(who, &users, ticket, request.deadline)
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
    ids: Vec<UserId>,
    deadline: Option<crate::deadline::Deadline>,
) -> Result<ApiResponse, ApiError> {
    let results = service.delete_workspace_users(who, ids, deadline).await?;
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
