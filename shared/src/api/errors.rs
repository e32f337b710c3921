//! The one place where errors become HTTP responses.

use http::{HeaderValue, Method, StatusCode};
use serde::Serialize;

use super::{json_response, ApiResponse, Dialect, RouteMiss};
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
    /// A value that must be unique is already taken (a user name, an email).
    #[error("{message}")]
    Duplicate { field: String, message: String },
    /// Well-formed but contradicting an earlier request (an idempotency key reused).
    #[error("{message}")]
    Unprocessable { field: String, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{message}")]
    TooLarge {
        limit: &'static str,
        message: String,
    },
    /// Over a rate or concurrency limit; `Retry-After: retry_after`.
    #[error("{message}")]
    TooMany {
        limit: &'static str,
        message: String,
        retry_after: u64,
    },
    #[error("{0}")]
    NotImplemented(String),
    #[error("{0}")]
    Unavailable(String),
    /// Out of time before the work was done; it goes on, and the same request sent again
    /// (under its idempotency key) answers once it is.
    #[error("{0}")]
    Unfinished(String),
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
            ApiError::BadRequest { .. } | ApiError::Duplicate { .. } => StatusCode::BAD_REQUEST,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::TooMany { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::Unavailable(_) | ApiError::Unfinished(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Whether the error is the service's fault (an internal error, a dependency down), worth
    /// logging as an error: a feature this deployment lacks (501) is not.
    pub fn is_fault(&self) -> bool {
        matches!(self, ApiError::Internal(_) | ApiError::Unavailable(_))
    }

    /// The error in the CCAI shape: `{error, message, field?, limit?}`.
    pub fn response(&self) -> ApiResponse {
        self.response_in(Dialect::Ccai)
    }

    /// The error in the shape of the dialect the request spoke.
    pub fn response_in(&self, dialect: Dialect) -> ApiResponse {
        let mut response = match dialect {
            Dialect::Ccai => self.ccai_body(),
            Dialect::Zendesk => json_response(self.status(), &self.zendesk_body()),
            Dialect::Workspace => json_response(
                self.status(),
                &serde_json::json!({
                    "error_code": self.workspace_code(),
                    "error_msg": self.public_message(),
                }),
            ),
        };
        self.add_headers(&mut response, dialect);
        response
    }

    /// What the client is told: internal details stay in the logs.
    fn public_message(&self) -> String {
        match self {
            ApiError::NotFoundRoute => "no route matches this path".to_owned(),
            ApiError::MethodNotAllowed(allowed) => format!(
                "method not allowed here; allowed: {}",
                allowed
                    .iter()
                    .map(Method::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            ApiError::Unauthorized => "missing or invalid credentials".to_owned(),
            ApiError::Unavailable(_) => {
                "a storage dependency is unavailable; retry later".to_owned()
            }
            ApiError::Internal(_) => "internal error".to_owned(),
            other => other.to_string(),
        }
    }

    /// Zendesk's error body: `{error, description, details: {field: [{description, error}]}}`.
    fn zendesk_body(&self) -> serde_json::Value {
        let code = match self {
            ApiError::NotFoundRoute | ApiError::NotFound(_) => "RecordNotFound",
            ApiError::MethodNotAllowed(_) => "MethodNotAllowed",
            ApiError::Unauthorized => "Unauthorized",
            ApiError::BadRequest { .. } => "InvalidValue",
            ApiError::Duplicate { .. } => "DuplicateValue",
            ApiError::Conflict(_) => "Conflict",
            ApiError::Unprocessable { .. } => "UnprocessableEntity",
            ApiError::TooLarge { .. } => "TooLarge",
            ApiError::TooMany { .. } => "TooManyRequests",
            ApiError::NotImplemented(_) => "NotImplemented",
            ApiError::Unavailable(_) | ApiError::Unfinished(_) => "ServiceUnavailable",
            ApiError::Internal(_) => "InternalError",
        };
        let description = match self {
            ApiError::Unauthorized => "Couldn't authenticate you".to_owned(),
            other => other.public_message(),
        };
        let mut body = serde_json::json!({ "error": code, "description": description });
        if let ApiError::BadRequest { field, message }
        | ApiError::Duplicate { field, message }
        | ApiError::Unprocessable { field, message } = self
        {
            body["details"] = serde_json::json!({
                field.as_str(): [{ "description": message, "error": code }]
            });
        }
        if let ApiError::TooLarge { limit, .. } | ApiError::TooMany { limit, .. } = self {
            body["details"] = serde_json::json!({ "limit": limit });
        }
        body
    }

    /// Huawei Workspace error codes (`WKS.…`); the service publishes only some, the rest are
    /// ours and listed in the README.
    fn workspace_code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { .. } => "WKS.0001",
            ApiError::Duplicate { .. } => "WKS.00170202",
            ApiError::NotFoundRoute | ApiError::NotFound(_) => "WKS.0202",
            ApiError::Unauthorized => "WKS.00000401",
            ApiError::MethodNotAllowed(_) => "WKS.00000405",
            ApiError::Conflict(_) => "WKS.00000409",
            ApiError::Unprocessable { .. } => "WKS.00000422",
            ApiError::TooLarge { .. } => "WKS.00000413",
            ApiError::TooMany { .. } => "WKS.00000429",
            ApiError::NotImplemented(_) => "WKS.00000501",
            ApiError::Unavailable(_) | ApiError::Unfinished(_) => "WKS.00000503",
            ApiError::Internal(_) => "WKS.00000500",
        }
    }

    fn ccai_body(&self) -> ApiResponse {
        let (code, field, limit) = match self {
            ApiError::NotFoundRoute => ("not_found", None, None),
            ApiError::NotFound(_) => ("not_found", None, None),
            ApiError::MethodNotAllowed(_) => ("method_not_allowed", None, None),
            ApiError::Unauthorized => ("unauthorized", None, None),
            ApiError::BadRequest { field, .. } => ("invalid_request", Some(field.as_str()), None),
            ApiError::Duplicate { field, .. } => ("duplicate", Some(field.as_str()), None),
            ApiError::Conflict(_) => ("conflict", None, None),
            ApiError::Unprocessable { field, .. } => ("unprocessable", Some(field.as_str()), None),
            ApiError::TooLarge { limit, .. } | ApiError::TooMany { limit, .. } => {
                ("limit_exceeded", None, Some(*limit))
            }
            ApiError::NotImplemented(_) => ("not_implemented", None, None),
            ApiError::Unavailable(_) | ApiError::Unfinished(_) => ("unavailable", None, None),
            ApiError::Internal(_) => ("internal_error", None, None),
        };
        let message = match self {
            ApiError::Unauthorized => {
                "missing or invalid credentials: use HTTP Basic with the tenant as user name and an API credential secret as password".to_owned()
            }
            other => other.public_message(),
        };
        json_response(
            self.status(),
            &ErrorBody {
                error: code,
                message,
                field,
                limit,
            },
        )
    }

    fn add_headers(&self, response: &mut ApiResponse, dialect: Dialect) {
        let headers = response.headers_mut();
        match self {
            ApiError::Unauthorized if dialect != Dialect::Workspace => {
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
            ApiError::Unavailable(_) | ApiError::Unfinished(_) => {
                headers.insert(http::header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            ApiError::TooMany { retry_after, .. } => {
                headers.insert(http::header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            _ => {}
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> ApiError {
        match error {
            ServiceError::Unauthorized => ApiError::Unauthorized,
            ServiceError::NotFound(message) => ApiError::NotFound(message),
            ServiceError::Conflict(message) => ApiError::Conflict(message),
            ServiceError::Unprocessable { field, message } => {
                ApiError::Unprocessable { field, message }
            }
            ServiceError::Invalid { field, message } => ApiError::BadRequest { field, message },
            ServiceError::Duplicate { field, message } => ApiError::Duplicate { field, message },
            ServiceError::Internal(message) => ApiError::Internal(message),
            ServiceError::TooLarge { limit, message } => ApiError::TooLarge { limit, message },
            ServiceError::TooMany {
                limit,
                message,
                retry_after,
            } => ApiError::TooMany {
                limit,
                message,
                retry_after,
            },
            ServiceError::Unsupported(message) => ApiError::NotImplemented(message),
            ServiceError::Unfinished { job_id } => ApiError::Unfinished(format!(
                "not done in time: the batch goes on as job {job_id}; send the same request \
                 again with the same Idempotency-Key for its answer"
            )),
            ServiceError::Store(error) => error.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        match error {
            StoreError::Unavailable { .. } => ApiError::Unavailable(error.to_string()),
            // A denial is the deployment's fault: a 503 would send clients into retries that
            // can never succeed; the log names the denied action and resource for the operator.
            StoreError::Denied { .. } | StoreError::Corrupt(_) | StoreError::NotFound(_) => {
                ApiError::Internal(error.to_string())
            }
        }
    }
}
