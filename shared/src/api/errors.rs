//! The one place where errors become HTTP responses.

use http::{HeaderValue, Method, StatusCode};
use serde::Serialize;

use super::{json_response, ApiResponse, RouteMiss};
use crate::ports::StoreError;
use crate::service::ServiceError;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no such route")]
    NotFoundRoute,
    #[error("method not allowed")]
    MethodNotAllowed(Vec<Method>),
    #[error("missing or invalid credentials")]
    Unauthorized,
    #[error("{message}")]
    BadRequest { field: String, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{message}")]
    TooLarge {
        limit: &'static str,
        message: String,
    },
    #[error("{0}")]
    NotImplemented(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    limit: Option<&'a str>,
}

impl ApiError {
    pub fn route(miss: RouteMiss) -> ApiError {
        match miss {
            RouteMiss::NotFound => ApiError::NotFoundRoute,
            RouteMiss::MethodNotAllowed(allowed) => ApiError::MethodNotAllowed(allowed),
        }
    }

    pub fn bad_request(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            field: field.to_owned(),
            message: message.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFoundRoute | ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn is_server_error(&self) -> bool {
        self.status().is_server_error()
    }

    pub fn response(&self) -> ApiResponse {
        let (code, field, limit) = match self {
            ApiError::NotFoundRoute => ("not_found", None, None),
            ApiError::NotFound(_) => ("not_found", None, None),
            ApiError::MethodNotAllowed(_) => ("method_not_allowed", None, None),
            ApiError::Unauthorized => ("unauthorized", None, None),
            ApiError::BadRequest { field, .. } => ("invalid_request", Some(field.as_str()), None),
            ApiError::Conflict(_) => ("conflict", None, None),
            ApiError::TooLarge { limit, .. } => ("limit_exceeded", None, Some(*limit)),
            ApiError::NotImplemented(_) => ("not_implemented", None, None),
            ApiError::Unavailable(_) => ("unavailable", None, None),
            ApiError::Internal(_) => ("internal_error", None, None),
        };
        let message = match self {
            ApiError::NotFoundRoute => "no route matches this path".to_owned(),
            ApiError::MethodNotAllowed(allowed) => format!(
                "method not allowed here; allowed: {}",
                allowed.iter().map(Method::as_str).collect::<Vec<_>>().join(", ")
            ),
            ApiError::Unauthorized => {
                "missing or invalid credentials: use HTTP Basic with the tenant as user name and an API credential secret as password".to_owned()
            }
            ApiError::Unavailable(_) => "a storage dependency is unavailable; retry later".to_owned(),
            ApiError::Internal(_) => "internal error".to_owned(),
            other => other.to_string(),
        };
        let mut response = json_response(
            self.status(),
            &ErrorBody {
                error: code,
                message,
                field,
                limit,
            },
        );
        let headers = response.headers_mut();
        match self {
            ApiError::Unauthorized => {
                headers.insert(
                    http::header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"bulk-users\""),
                );
            }
            ApiError::MethodNotAllowed(allowed) => {
                let list = allowed
                    .iter()
                    .map(Method::as_str)
                    .collect::<Vec<_>>()
                    .join(", ");
                if let Ok(value) = HeaderValue::from_str(&list) {
                    headers.insert(http::header::ALLOW, value);
                }
            }
            ApiError::Unavailable(_) => {
                headers.insert(http::header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            _ => {}
        }
        response
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> ApiError {
        match error {
            ServiceError::Unauthorized => ApiError::Unauthorized,
            ServiceError::NotFound(message) => ApiError::NotFound(message),
            ServiceError::Conflict(message) => ApiError::Conflict(message),
            ServiceError::Invalid { field, message } => ApiError::BadRequest { field, message },
            ServiceError::TooLarge { limit, message } => ApiError::TooLarge { limit, message },
            ServiceError::Unsupported(message) => ApiError::NotImplemented(message),
            ServiceError::Store(error) => error.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        match error {
            StoreError::Unavailable { .. } => ApiError::Unavailable(error.to_string()),
            StoreError::Corrupt(_) | StoreError::NotFound(_) => {
                ApiError::Internal(error.to_string())
            }
        }
    }
}
