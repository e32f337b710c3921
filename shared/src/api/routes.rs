//! The route table: every (method, path pattern) of the API, the operation it runs and the
//! function group that serves it — one table for every host (Lambda functions, local server,
//! and the template's API routes, which a test checks against it).

use http::Method;

/// Every operation of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    Template,
    UserConfiguration,
    Upload,
    ReplaceUpload,
    /// `POST upload/presigned`: a job waiting for a file uploaded straight to S3.
    PresignUpload,
    Proceed,
    /// `POST cancel`: stops a job at its next chunk boundary.
    Cancel,
    Job,
    Jobs,
    SchemeErrors,
    UpdateErrors,
    /// Zendesk `POST users/create_many`.
    CreateManyUsers,
    /// Zendesk `POST users/create_or_update_many`.
    CreateOrUpdateManyUsers,
    /// Zendesk `PUT users/update_many`.
    UpdateManyUsers,
    /// Zendesk `DELETE users/destroy_many`.
    DestroyManyUsers,
    /// Zendesk `GET job_statuses/{id}`.
    JobStatus,
    /// Zendesk `GET job_statuses/show_many`.
    ShowManyJobStatuses,
    /// Zendesk `GET job_statuses`.
    JobStatuses,
    /// Huawei Workspace `POST users/batch-create`.
    WorkspaceBatchCreate,
    /// Huawei Workspace `GET users`.
    WorkspaceListUsers,
    /// Huawei Workspace `DELETE users/{user_id}`.
    WorkspaceDeleteUser,
    /// Huawei Workspace `POST users/batch-delete`.
    WorkspaceBatchDelete,
}

impl Operation {
    /// Whether the operation records a new job: those take an `Idempotency-Key`.
    pub fn creates_job(self) -> bool {
        use Operation::*;
        matches!(
            self,
            Upload
                | PresignUpload
                | CreateManyUsers
                | CreateOrUpdateManyUsers
                | UpdateManyUsers
                | DestroyManyUsers
                | WorkspaceBatchCreate
                | WorkspaceDeleteUser
                | WorkspaceBatchDelete
        )
    }
}

/// The API a route belongs to: it decides authentication and the shape of error bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    Ccai,
    Zendesk,
    Workspace,
}

impl Dialect {
    /// The dialect of an operation.
    pub fn of(operation: Operation) -> Dialect {
        use Operation::*;
        match operation {
            CreateManyUsers
            | CreateOrUpdateManyUsers
            | UpdateManyUsers
            | DestroyManyUsers
            | JobStatus
            | ShowManyJobStatuses
            | JobStatuses => Dialect::Zendesk,
            WorkspaceBatchCreate | WorkspaceListUsers | WorkspaceDeleteUser
            | WorkspaceBatchDelete => Dialect::Workspace,
            _ => Dialect::Ccai,
        }
    }

    /// The dialect a path is written in, for answering requests no route matches.
    pub fn of_path(path: &str) -> Dialect {
        if path.starts_with("/api/v2/") {
            Dialect::Zendesk
        } else if path.starts_with("/v2/") {
            Dialect::Workspace
        } else {
            Dialect::Ccai
        }
    }
}

/// Which routes a host serves: one Lambda function serves one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteGroup {
    All,
    /// `POST`/`PUT upload`, `POST upload/presigned`.
    Upload,
    /// `POST proceed` and `POST cancel`.
    Proceed,
    /// `GET jobs/{id}`.
    Status,
    /// `GET jobs`.
    Jobs,
    /// The other read-only routes: template, config, scheme and update errors, and the Huawei
    /// Workspace user list.
    Reads,
    /// The Zendesk batch writes: each stores its users as a job file and queues the job.
    Batches,
    /// The Huawei Workspace writes, processed in the request.
    Directory,
}

impl RouteGroup {
    /// The group of the Lambda function that serves an operation.
    pub fn of(operation: Operation) -> RouteGroup {
        match operation {
            Operation::Upload | Operation::ReplaceUpload | Operation::PresignUpload => {
                RouteGroup::Upload
            }
            Operation::Proceed | Operation::Cancel => RouteGroup::Proceed,
            Operation::Job | Operation::JobStatus | Operation::ShowManyJobStatuses => {
                RouteGroup::Status
            }
            Operation::Jobs | Operation::JobStatuses => RouteGroup::Jobs,
            Operation::Template
            | Operation::UserConfiguration
            | Operation::SchemeErrors
            | Operation::UpdateErrors
            | Operation::WorkspaceListUsers => RouteGroup::Reads,
            Operation::CreateManyUsers
            | Operation::CreateOrUpdateManyUsers
            | Operation::UpdateManyUsers
            | Operation::DestroyManyUsers => RouteGroup::Batches,
            Operation::WorkspaceBatchCreate
            | Operation::WorkspaceDeleteUser
            | Operation::WorkspaceBatchDelete => RouteGroup::Directory,
        }
    }

    pub fn serves(self, operation: Operation) -> bool {
        self == RouteGroup::All || RouteGroup::of(operation) == self
    }
}

/// One row of the route table. A pattern segment `{name}` matches any non-empty segment.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    pub method: Method,
    pub pattern: &'static str,
    pub operation: Operation,
}

const CCAI: &str = "/apps/api/v1/bulk/users";

/// Path prefixes accepted for another spelling: (alias, canonical). The seed documents some CCAI
/// routes without the `/apps/api` prefix.
pub const PATH_ALIASES: [(&str, &str); 1] = [("/v1/bulk/users", CCAI)];

/// The route table.
pub fn route_table() -> &'static [RouteSpec] {
    use std::sync::OnceLock;
    static TABLE: OnceLock<Vec<RouteSpec>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let route = |method: Method, pattern: &'static str, operation| RouteSpec {
            method,
            pattern,
            operation,
        };
        vec![
            route(
                Method::GET,
                "/apps/api/v1/bulk/users/template",
                Operation::Template,
            ),
            route(
                Method::GET,
                "/apps/api/v1/bulk/users/config",
                Operation::UserConfiguration,
            ),
            route(
                Method::POST,
                "/apps/api/v1/bulk/users/upload",
                Operation::Upload,
            ),
            route(
                Method::PUT,
                "/apps/api/v1/bulk/users/upload",
                Operation::ReplaceUpload,
            ),
            route(
                Method::POST,
                "/apps/api/v1/bulk/users/upload/presigned",
                Operation::PresignUpload,
            ),
            route(
                Method::POST,
                "/apps/api/v1/bulk/users/proceed",
                Operation::Proceed,
            ),
            route(
                Method::POST,
                "/apps/api/v1/bulk/users/cancel",
                Operation::Cancel,
            ),
            route(Method::GET, "/apps/api/v1/bulk/users/jobs", Operation::Jobs),
            route(
                Method::GET,
                "/apps/api/v1/bulk/users/jobs/{id}",
                Operation::Job,
            ),
            route(
                Method::GET,
                "/apps/api/v1/bulk/users/errors/scheme/{id}",
                Operation::SchemeErrors,
            ),
            route(
                Method::GET,
                "/apps/api/v1/bulk/users/errors/update/{id}",
                Operation::UpdateErrors,
            ),
            route(
                Method::POST,
                "/api/v2/users/create_many",
                Operation::CreateManyUsers,
            ),
            route(
                Method::POST,
                "/api/v2/users/create_or_update_many",
                Operation::CreateOrUpdateManyUsers,
            ),
            route(
                Method::PUT,
                "/api/v2/users/update_many",
                Operation::UpdateManyUsers,
            ),
            route(
                Method::DELETE,
                "/api/v2/users/destroy_many",
                Operation::DestroyManyUsers,
            ),
            route(Method::GET, "/api/v2/job_statuses", Operation::JobStatuses),
            route(
                Method::GET,
                "/api/v2/job_statuses/show_many",
                Operation::ShowManyJobStatuses,
            ),
            route(
                Method::GET,
                "/api/v2/job_statuses/{id}",
                Operation::JobStatus,
            ),
            route(
                Method::POST,
                "/v2/{project_id}/users/batch-create",
                Operation::WorkspaceBatchCreate,
            ),
            route(
                Method::GET,
                "/v2/{project_id}/users",
                Operation::WorkspaceListUsers,
            ),
            route(
                Method::DELETE,
                "/v2/{project_id}/users/{user_id}",
                Operation::WorkspaceDeleteUser,
            ),
            route(
                Method::POST,
                "/v2/{project_id}/users/batch-delete",
                Operation::WorkspaceBatchDelete,
            ),
        ]
    })
}

/// A resolved request: the operation and the values of the pattern's `{…}` segments, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub operation: Operation,
    pub params: Vec<String>,
}

impl Route {
    /// The first path parameter (the job id of the routes that have one).
    pub fn param(&self) -> &str {
        self.params.first().map(String::as_str).unwrap_or_default()
    }
}

/// Why no route matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteMiss {
    NotFound,
    /// The path exists with other methods.
    MethodNotAllowed(Vec<Method>),
}

/// Resolves a request to a route. A trailing slash and the path aliases are accepted, and so
/// is the `.json` suffix Zendesk clients append.
pub fn resolve(method: &Method, path: &str) -> Result<Route, RouteMiss> {
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    let trimmed = match trimmed.strip_suffix(".json") {
        Some(bare) if Dialect::of_path(trimmed) == Dialect::Zendesk => bare,
        _ => trimmed,
    };
    let canonical = PATH_ALIASES
        .iter()
        .find_map(|(alias, canonical)| {
            trimmed
                .strip_prefix(alias)
                .filter(|rest| rest.is_empty() || rest.starts_with('/'))
                .map(|rest| format!("{canonical}{rest}"))
        })
        .unwrap_or_else(|| trimmed.to_owned());
    let mut allowed = Vec::new();
    for spec in route_table() {
        if let Some(params) = match_pattern(spec.pattern, &canonical) {
            if spec.method == *method {
                return Ok(Route {
                    operation: spec.operation,
                    params,
                });
            }
            allowed.push(spec.method.clone());
        }
    }
    if allowed.is_empty() {
        Err(RouteMiss::NotFound)
    } else {
        Err(RouteMiss::MethodNotAllowed(allowed))
    }
}

fn match_pattern(pattern: &str, path: &str) -> Option<Vec<String>> {
    let mut params = Vec::new();
    let mut wanted = pattern.split('/');
    let mut given = path.split('/');
    loop {
        match (wanted.next(), given.next()) {
            (None, None) => return Some(params),
            (Some(w), Some(g)) if w.starts_with('{') && w.ends_with('}') && !g.is_empty() => {
                params.push(g.to_owned())
            }
            (Some(w), Some(g)) if w == g => {}
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(method: Method, path: &str) -> Result<(Operation, Vec<String>), RouteMiss> {
        resolve(&method, path).map(|route| (route.operation, route.params))
    }

    #[test]
    fn resolves_both_spellings_and_reports_wrong_methods() {
        assert_eq!(
            op(Method::GET, "/apps/api/v1/bulk/users/jobs/12"),
            Ok((Operation::Job, vec!["12".into()]))
        );
        assert_eq!(
            op(Method::GET, "/v1/bulk/users/errors/scheme/3/"),
            Ok((Operation::SchemeErrors, vec!["3".into()]))
        );
        assert_eq!(
            op(Method::PUT, "/v1/bulk/users/upload"),
            Ok((Operation::ReplaceUpload, vec![]))
        );
        assert_eq!(
            op(Method::DELETE, "/apps/api/v1/bulk/users/jobs"),
            Err(RouteMiss::MethodNotAllowed(vec![Method::GET]))
        );
        assert_eq!(
            op(Method::GET, "/apps/api/v1/bulk/users/upload"),
            Err(RouteMiss::MethodNotAllowed(vec![Method::POST, Method::PUT]))
        );
        assert_eq!(
            op(Method::GET, "/apps/api/v1/bulk/usersx/jobs"),
            Err(RouteMiss::NotFound)
        );
        assert_eq!(
            op(Method::GET, "/apps/api/v1/bulk/users/nope"),
            Err(RouteMiss::NotFound)
        );
        assert_eq!(
            op(Method::GET, "/apps/api/v1/bulk/users/jobs//"),
            Err(RouteMiss::NotFound)
        );
        assert!(RouteGroup::Reads.serves(Operation::Template));
        assert!(!RouteGroup::Reads.serves(Operation::Upload));
        assert!(RouteGroup::All.serves(Operation::Upload));
    }

    #[test]
    fn resolves_the_other_dialects() {
        assert_eq!(
            op(Method::POST, "/api/v2/users/create_many.json"),
            Ok((Operation::CreateManyUsers, vec![]))
        );
        assert_eq!(
            op(Method::GET, "/api/v2/job_statuses/show_many.json"),
            Ok((Operation::ShowManyJobStatuses, vec![]))
        );
        assert_eq!(
            op(Method::GET, "/api/v2/job_statuses/0a1b.json"),
            Ok((Operation::JobStatus, vec!["0a1b".into()]))
        );
        assert_eq!(
            op(Method::POST, "/v2/acme/users/batch-create/"),
            Ok((Operation::WorkspaceBatchCreate, vec!["acme".into()]))
        );
        assert_eq!(
            op(Method::DELETE, "/v2/acme/users/17"),
            Ok((
                Operation::WorkspaceDeleteUser,
                vec!["acme".into(), "17".into()]
            ))
        );
        assert_eq!(
            op(Method::GET, "/v2/acme/users/batch-create"),
            Err(RouteMiss::MethodNotAllowed(vec![
                Method::POST,
                Method::DELETE
            ]))
        );
        assert_eq!(Dialect::of_path("/v2/x/users"), Dialect::Workspace);
        assert_eq!(Dialect::of(Operation::JobStatus), Dialect::Zendesk);
    }
}
