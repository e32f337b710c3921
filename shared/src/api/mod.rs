//! The HTTP face of the service, independent of the host: the route table, request parsing,
//! the handlers, and the one mapping of errors to HTTP. The Lambda functions and the local
//! server both turn their requests into [`ApiRequest`] and call [`Api::handle`].

mod ccai;
mod errors;
mod idempotency;
mod multipart;
mod query;
mod routes;
mod views;
mod workspace;
mod zendesk;

pub use errors::ApiError;
pub use idempotency::fingerprint as idempotency_fingerprint;
pub use routes::{
    resolve, route_table, Dialect, Operation, Route, RouteGroup, RouteMiss, RouteSpec, PATH_ALIASES,
};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use tracing::Instrument;

use crate::service::{BulkService, KeyTicket, KeyedRequest, Principal, ServiceError};

/// A request as every host hands it over.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    pub method: Method,
    /// The path without the query string, percent-decoded segments not assumed.
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// When the host must have answered (a Lambda function's invocation), if it must.
    pub deadline: Option<crate::deadline::Deadline>,
    /// The client's address as the host saw it (API Gateway's `sourceIp`, the local server's
    /// peer), if it knows it: what failed authentications are counted against.
    pub source: Option<String>,
}

pub type ApiResponse = Response<Bytes>;

impl ApiRequest {
    /// The request as an AK/SK signature covers it.
    pub(crate) fn signed(&self) -> crate::auth::SignedRequest<'_> {
        crate::auth::SignedRequest {
            method: self.method.as_str(),
            path: &self.path,
            query: self.query.as_deref(),
            headers: &self.headers,
            body: &self.body,
        }
    }
}

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
            Ok(_) => return error_for_path(&request.path, &ApiError::route(RouteMiss::NotFound)),
            Err(miss) => return error_for_path(&request.path, &ApiError::route(miss)),
        };
        let base = self.base_url(&request);
        let dialect = Dialect::of(route.operation);
        let answered = async {
            match self.answer(dialect, &base, route, &request).await {
                Ok(response) => response,
                Err(error) => {
                    if error.is_fault() {
                        tracing::error!(method = %request.method, path = %request.path, %error, "request failed");
                    }
                    error.response_in(dialect)
                }
            }
        };
        let mut response = answered.instrument(crate::observe::request_span()).await;
        if dialect == Dialect::Workspace {
            workspace::add_request_id(&mut response);
        }
        response
    }

    /// Authenticates the caller in the dialect's way, then runs the operation, once per
    /// idempotency key for the operations that take one.
    async fn answer(
        &self,
        dialect: Dialect,
        base: &str,
        route: Route,
        request: &ApiRequest,
    ) -> Result<ApiResponse, ApiError> {
        let service = &self.service;
        let who = self.authenticate(dialect, request).await?;
        crate::observe::record_tenant(&who.tenant);
        counting_throttles(service.admit_request(&who).await)?;
        let key = match idempotency::key(request)? {
            Some(key) if route.operation.creates_job() => key,
            _ => return self.run(dialect, &who, base, route, request, None).await,
        };
        let fingerprint = idempotency::fingerprint(request, route.operation);
        match service
            .claim_idempotency_key(&who, key, fingerprint)
            .await?
        {
            KeyedRequest::Replay(kept) => idempotency::replay(&kept),
            KeyedRequest::Run(ticket) => {
                let answer = self
                    .run(dialect, &who, base, route, request, Some(&ticket))
                    .await;
                let kept = answer.as_ref().ok().and_then(idempotency::keep);
                service.finish_keyed_request(ticket, kept.as_deref()).await;
                answer
            }
        }
    }

    /// Who is calling, in the dialect's way, unless the caller's address has failed to
    /// authenticate too often this minute; a failure is counted and logged.
    async fn authenticate(
        &self,
        dialect: Dialect,
        request: &ApiRequest,
    ) -> Result<Principal, ApiError> {
        let service = &self.service;
        let source = request.source.as_deref();
        counting_throttles(service.admit_caller(source).await)?;
        let who = match dialect {
            Dialect::Ccai => ccai::authenticate(service, request).await,
            Dialect::Zendesk => zendesk::authenticate(service, request).await,
            Dialect::Workspace => workspace::authenticate(service, request).await,
        };
        if let Err(ApiError::Unauthorized) = &who {
            crate::observe::count(crate::observe::metric::AUTHENTICATION_FAILURES);
            let claim = Claim::of(request);
            let (tenant, key_id) = (claim.tenant.as_deref(), claim.key_id.as_deref());
            service.authentication_failed(source, tenant, key_id).await;
        }
        who
    }

    async fn run(
        &self,
        dialect: Dialect,
        who: &Principal,
        base: &str,
        route: Route,
        request: &ApiRequest,
        ticket: Option<&KeyTicket>,
    ) -> Result<ApiResponse, ApiError> {
        let service = &self.service;
        match dialect {
            Dialect::Ccai => ccai::handle(service, who, base, route, request).await,
            Dialect::Zendesk => zendesk::handle(service, who, base, route, request).await,
            Dialect::Workspace => workspace::handle(service, who, route, request, ticket).await,
        }
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

/// Counts a refusal over a rate or concurrency limit.
fn counting_throttles(admitted: Result<(), ServiceError>) -> Result<(), ServiceError> {
    if let Err(ServiceError::TooMany { .. }) = &admitted {
        crate::observe::count(crate::observe::metric::THROTTLED_REQUESTS);
    }
    admitted
}

/// Whom a request claims to act for, as far as it can be said without its secret: the tenant
/// of a Basic user name that is a tenant name, the key id of a signed request. Logged with a
/// failed authentication; anything else it sent (a secret, a token) never is.
#[derive(Debug, Default, PartialEq, Eq)]
struct Claim {
    tenant: Option<String>,
    key_id: Option<String>,
}

impl Claim {
    fn of(request: &ApiRequest) -> Claim {
        let header = authorization(request).unwrap_or_default();
        let tenant = crate::auth::parse_basic(header)
            .and_then(|(user, _)| crate::model::TenantId::parse(&user).ok())
            .map(|tenant| tenant.as_str().to_owned());
        let key_id = request
            .signed()
            .authorization()
            .ok()
            .map(|found| found.access)
            .filter(|key_id| crate::auth::is_key_id(key_id));
        Claim { tenant, key_id }
    }
}

/// An error answered before the request reached the route table (by a host: a body over its
/// size limit, a body that could not be read), in the shape of the dialect its path speaks.
pub fn error_for_path(path: &str, error: &ApiError) -> ApiResponse {
    let dialect = Dialect::of_path(path);
    let mut response = error.response_in(dialect);
    if dialect == Dialect::Workspace {
        workspace::add_request_id(&mut response);
    }
    response
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
