//! The route table: (method, path) → route, for every host.

use http::Method;

/// The CCAI prefix, and the seed's shorter spelling accepted as an alias.
const PREFIXES: [&str; 2] = ["/apps/api/v1/bulk/users", "/v1/bulk/users"];

/// Every operation of the API, with its path parameters (unparsed: handlers validate them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Template,
    UserConfiguration,
    Upload,
    ReplaceUpload,
    Proceed,
    Job(String),
    Jobs,
    SchemeErrors(String),
    UpdateErrors(String),
}

/// Why no route matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteMiss {
    NotFound,
    /// The path exists with other methods.
    MethodNotAllowed(Vec<Method>),
}

/// Which routes a host serves: one Lambda function serves one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteGroup {
    All,
    /// `POST`/`PUT upload`.
    Upload,
    /// `POST proceed`.
    Proceed,
    /// `GET jobs/{id}`.
    Status,
    /// `GET jobs`.
    Jobs,
    /// The other read-only routes: template, config, scheme and update errors.
    Reads,
}

impl RouteGroup {
    pub fn contains(self, route: &Route) -> bool {
        match self {
            RouteGroup::All => true,
            RouteGroup::Upload => matches!(route, Route::Upload | Route::ReplaceUpload),
            RouteGroup::Proceed => matches!(route, Route::Proceed),
            RouteGroup::Status => matches!(route, Route::Job(_)),
            RouteGroup::Jobs => matches!(route, Route::Jobs),
            RouteGroup::Reads => matches!(
                route,
                Route::Template
                    | Route::UserConfiguration
                    | Route::SchemeErrors(_)
                    | Route::UpdateErrors(_)
            ),
        }
    }
}

/// Resolves a request to a route. A trailing slash is ignored.
pub fn resolve(method: &Method, path: &str) -> Result<Route, RouteMiss> {
    let path = path.strip_suffix('/').unwrap_or(path);
    let Some(rest) = PREFIXES.iter().find_map(|prefix| {
        path.strip_prefix(prefix)
            .filter(|rest| rest.is_empty() || rest.starts_with('/'))
    }) else {
        return Err(RouteMiss::NotFound);
    };
    let segments: Vec<&str> = rest.split('/').skip(1).collect();
    let get = [Method::GET];
    let (allowed, route): (&[Method], Option<Route>) = match segments.as_slice() {
        ["template"] => (&get, (*method == Method::GET).then_some(Route::Template)),
        ["config"] => (
            &get,
            (*method == Method::GET).then_some(Route::UserConfiguration),
        ),
        ["upload"] => (
            &[Method::POST, Method::PUT],
            match *method {
                Method::POST => Some(Route::Upload),
                Method::PUT => Some(Route::ReplaceUpload),
                _ => None,
            },
        ),
        ["proceed"] => (
            &[Method::POST],
            (*method == Method::POST).then_some(Route::Proceed),
        ),
        ["jobs"] => (&get, (*method == Method::GET).then_some(Route::Jobs)),
        ["jobs", id] if !id.is_empty() => (
            &get,
            (*method == Method::GET).then(|| Route::Job((*id).to_owned())),
        ),
        ["errors", "scheme", id] if !id.is_empty() => (
            &get,
            (*method == Method::GET).then(|| Route::SchemeErrors((*id).to_owned())),
        ),
        ["errors", "update", id] if !id.is_empty() => (
            &get,
            (*method == Method::GET).then(|| Route::UpdateErrors((*id).to_owned())),
        ),
        _ => return Err(RouteMiss::NotFound),
    };
    route.ok_or_else(|| RouteMiss::MethodNotAllowed(allowed.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_both_spellings_and_reports_wrong_methods() {
        assert_eq!(
            resolve(&Method::GET, "/apps/api/v1/bulk/users/jobs/12"),
            Ok(Route::Job("12".into()))
        );
        assert_eq!(
            resolve(&Method::GET, "/v1/bulk/users/errors/scheme/3/"),
            Ok(Route::SchemeErrors("3".into()))
        );
        assert_eq!(
            resolve(&Method::PUT, "/v1/bulk/users/upload"),
            Ok(Route::ReplaceUpload)
        );
        assert_eq!(
            resolve(&Method::DELETE, "/apps/api/v1/bulk/users/jobs"),
            Err(RouteMiss::MethodNotAllowed(vec![Method::GET]))
        );
        assert_eq!(
            resolve(&Method::GET, "/apps/api/v1/bulk/usersx/jobs"),
            Err(RouteMiss::NotFound)
        );
        assert_eq!(
            resolve(&Method::GET, "/apps/api/v1/bulk/users/nope"),
            Err(RouteMiss::NotFound)
        );
        assert!(RouteGroup::Reads.contains(&Route::Template));
        assert!(!RouteGroup::Reads.contains(&Route::Upload));
    }
}
