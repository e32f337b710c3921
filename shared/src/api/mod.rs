//! The HTTP face of the service, independent of the host: the route table, request parsing,
//! the handlers, and the one mapping of errors to HTTP. The Lambda functions and the local
//! server both turn their requests into [`ApiRequest`] and call [`Api::handle`].

mod ccai;
mod errors;
mod multipart;
mod query;
mod routes;
mod views;
mod workspace;
mod zendesk;

pub use errors::ApiError;
pub use routes::{
    resolve, route_table, Dialect, Operation, Route, RouteGroup, RouteMiss, RouteSpec, PATH_ALIASES,
};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};

use crate::service::BulkService;

/// A request as every host hands it over.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    pub method: Method,
    /// The path without the query string, percent-decoded segments not assumed.
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

pub type ApiResponse = Response<Bytes>;

/// The API: the route table over the service.
#[derive(Clone)]
pub struct Api {
    service: BulkService,
    /// Base URL for links (`Link` headers, `link` fields); derived from the request when unset.
    public_url: Option<String>,
}

impl Api {
    pub fn new(service: BulkService) -> Api {
        Api {
            service,
            public_url: std::env::var("BULK_PUBLIC_URL")
                .ok()
                .map(|url| url.trim_end_matches('/').to_owned())
                .filter(|url| !url.is_empty()),
        }
    }

    pub fn service(&self) -> &BulkService {
        &self.service
    }

    /// Serves every route.
    pub async fn handle(&self, request: ApiRequest) -> ApiResponse {
        self.handle_group(RouteGroup::All, request).await
    }

    /// Serves the routes of one group (one Lambda function); other routes answer 404.
    pub async fn handle_group(&self, group: RouteGroup, request: ApiRequest) -> ApiResponse {
        let route = match resolve(&request.method, &request.path) {
            Ok(route) if group.serves(route.operation) => route,
            Ok(_) => {
                return ApiError::route(RouteMiss::NotFound)
                    .response_in(Dialect::of_path(&request.path))
            }
            Err(miss) => return ApiError::route(miss).response_in(Dialect::of_path(&request.path)),
        };
        let base = self.base_url(&request);
        let dialect = Dialect::of(route.operation);
        let answer = match dialect {
            Dialect::Ccai => ccai::handle(&self.service, &base, route, &request).await,
            Dialect::Zendesk => zendesk::handle(&self.service, &base, route, &request).await,
            Dialect::Workspace => workspace::handle(&self.service, route, &request).await,
        };
        let mut response = match answer {
            Ok(response) => response,
            Err(error) => {
                if error.is_server_error() {
                    tracing::error!(method = %request.method, path = %request.path, %error, "request failed");
                }
                error.response_in(dialect)
            }
        };
        if dialect == Dialect::Workspace {
            workspace::add_request_id(&mut response);
        }
        response
    }

    fn base_url(&self, request: &ApiRequest) -> String {
        if let Some(url) = &self.public_url {
            return url.clone();
        }
        let header = |name: &str| {
            request
                .headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(|value| {
                    value
                        .split(',')
                        .next()
                        .unwrap_or_default()
                        .trim()
                        .to_owned()
                })
                .filter(|value| !value.is_empty())
        };
        let host = header("x-forwarded-host").or_else(|| header("host"));
        let scheme = header("x-forwarded-proto").unwrap_or_else(|| "http".to_owned());
        match host {
            Some(host) if host.bytes().all(|b| b.is_ascii_graphic()) => {
                format!("{scheme}://{host}")
            }
            _ => String::new(),
        }
    }
}

/// The `Authorization` header; missing or not text is unauthorized.
pub(crate) fn authorization(request: &ApiRequest) -> Result<&str, ApiError> {
    request
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .ok_or(ApiError::Unauthorized)
}

pub(crate) fn json_response(status: StatusCode, body: &impl serde::Serialize) -> ApiResponse {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = Response::new(Bytes::from(bytes));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}
