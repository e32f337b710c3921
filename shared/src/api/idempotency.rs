//! The HTTP side of `Idempotency-Key`: which requests take one, what makes two requests the
//! same, and how an answer is kept and given again.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{ApiError, ApiRequest, ApiResponse, Operation};

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Set on an answer given again for a repeated request.
pub const REPLAYED: &str = "idempotent-replayed";

/// The client's key, when the request has one.
pub fn key(request: &ApiRequest) -> Result<Option<&str>, ApiError> {
    match request.headers.get(IDEMPOTENCY_KEY) {
        None => Ok(None),
        Some(value) => value.to_str().map(|key| Some(key.trim())).map_err(|_| {
            ApiError::bad_request(
                "Idempotency-Key",
                "Idempotency-Key must be printable ASCII (a UUID, for example)",
            )
        }),
    }
}

/// What makes two requests the same: the operation, path, query and content. The boundary of
/// a multipart body is left out, since clients draw a new one for every send.
pub fn fingerprint(request: &ApiRequest, operation: Operation) -> String {
    let mut digest = Sha256::new();
    for part in [
        format!("{operation:?}").as_bytes(),
        request.method.as_str().as_bytes(),
        request.path.as_bytes(),
        request.query.as_deref().unwrap_or_default().as_bytes(),
    ] {
        digest.update((part.len() as u64).to_be_bytes());
        digest.update(part);
    }
    let boundary = request
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|content_type| multer::parse_boundary(content_type).ok())
        .filter(|boundary| !boundary.is_empty());
    match boundary {
        Some(boundary) => {
            for piece in memchr::memmem::find_iter(&request.body, boundary.as_bytes())
                .chain(std::iter::once(request.body.len()))
                .scan(0, |start, end| {
                    let piece = request.body.get(*start..end).unwrap_or_default();
                    *start = end + boundary.len();
                    Some(piece)
                })
            {
                digest.update((piece.len() as u64).to_be_bytes());
                digest.update(piece);
            }
        }
        None => digest.update(&request.body),
    }
    hex::encode(digest.finalize())
}

/// An answer as kept under its key.
#[derive(Serialize, Deserialize)]
struct KeptAnswer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

/// The answer to keep: successful answers only (a refused or failed request runs again when
/// retried).
pub fn keep(response: &ApiResponse) -> Option<String> {
    if !response.status().is_success() {
        return None;
    }
    let kept = KeptAnswer {
        status: response.status().as_u16(),
        headers: response
            .headers()
            .iter()
            .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_owned())))
            .collect(),
        body: String::from_utf8(response.body().to_vec()).ok()?,
    };
    serde_json::to_string(&kept).ok()
}

/// A kept answer, given again, marked `Idempotent-Replayed: true`.
pub fn replay(kept: &str) -> Result<ApiResponse, ApiError> {
    let corrupt = || ApiError::Internal("a kept answer does not decode".to_owned());
    let kept: KeptAnswer = serde_json::from_str(kept).map_err(|_| corrupt())?;
    let mut response = ApiResponse::new(Bytes::from(kept.body));
    *response.status_mut() = StatusCode::from_u16(kept.status).map_err(|_| corrupt())?;
    let headers = response.headers_mut();
    for (name, value) in kept.headers {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            headers.append(name, value);
        }
    }
    headers.insert(REPLAYED, HeaderValue::from_static("true"));
    Ok(response)
}
