//! The route table: every (method, path pattern) of the API, the operation it runs and the
//! function group that serves it — one table for every host (Lambda functions, local server,
//! and the template's API routes, which a test checks against it).

use http::Method;

/// Every operation of the API. Its facts — method, path, dialect, serving function, whether
/// it creates a job — are its row of [`ROUTES`].
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
    /// Zendesk `GET job_statuses`.
    JobStatuses,
    /// Zendesk `GET job_statuses/show_many` (before `job_statuses/{id}`, which its path
    /// matches too: the first row that matches wins).
    ShowManyJobStatuses,
    /// Zendesk `GET job_statuses/{id}`.
    ShowJobStatus,
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
    /// The operation's row of the route table.
    pub fn spec(self) -> &'static RouteSpec {
        &ROUTES[self as usize]
    }

    /// Whether the operation records a new job: those take an `Idempotency-Key`.
    pub fn creates_job(self) -> bool {
        self.spec().creates_job
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
        operation.spec().dialect
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
        operation.spec().group
    }

    pub fn serves(self, operation: Operation) -> bool {
        self == RouteGroup::All || RouteGroup::of(operation) == self
    }
}

/// One row of the route table: an operation and all its facts. A pattern segment `{name}`
/// matches any non-empty segment.
#[derive(Debug)]
pub struct RouteSpec {
    pub operation: Operation,
    pub method: Method,
    pub pattern: &'static str,
    pub dialect: Dialect,
    /// The function that serves it.
    pub group: RouteGroup,
    /// Whether it records a new job (and so takes an `Idempotency-Key`).
    pub creates_job: bool,
    /// The query parameters it reads (each also spelled `name[]`). A CCAI route answers any
    /// other with 400; the Zendesk and Workspace routes ignore others, as their vendors do.
    pub query: &'static [&'static str],
}

/// Path prefixes accepted for another spelling: (alias, canonical). The seed documents some CCAI
/// routes without the `/apps/api` prefix.
pub const PATH_ALIASES: [(&str, &str); 1] = [("/v1/bulk/users", "/apps/api/v1/bulk/users")];

const fn row(
    operation: Operation,
    method: Method,
    pattern: &'static str,
    dialect: Dialect,
    group: RouteGroup,
    creates_job: bool,
    query: &'static [&'static str],
) -> RouteSpec {
    RouteSpec {
        operation,
        method,
        pattern,
        dialect,
        group,
        creates_job,
        query,
    }
}

use Dialect::{Ccai, Workspace, Zendesk};
use RouteGroup as G;

/// The route table, one row per operation in the order of [`Operation`]; a request is routed
/// to the first row that matches it.
#[rustfmt::skip]
pub static ROUTES: [RouteSpec; 22] = {
    use Operation::*;
    const JOB: bool = true;
    const NO_JOB: bool = false;
    const NONE: &[&str] = &[];
    const PAGED: &[&str] = &["page", "per_page"];
    const USERS: &[&str] = &["page", "per_page", "emails", "ids", "agent_numbers", "format"];
    const SELECTED: &[&str] = &["ids", "external_ids"];
    [
        row(Template, Method::GET, "/apps/api/v1/bulk/users/template", Ccai, G::Reads, NO_JOB, &["format"]),
        row(UserConfiguration, Method::GET, "/apps/api/v1/bulk/users/config", Ccai, G::Reads, NO_JOB, USERS),
        row(Upload, Method::POST, "/apps/api/v1/bulk/users/upload", Ccai, G::Upload, JOB, NONE),
        row(ReplaceUpload, Method::PUT, "/apps/api/v1/bulk/users/upload", Ccai, G::Upload, NO_JOB, NONE),
        row(PresignUpload, Method::POST, "/apps/api/v1/bulk/users/upload/presigned", Ccai, G::Upload, JOB, NONE),
        row(Proceed, Method::POST, "/apps/api/v1/bulk/users/proceed", Ccai, G::Proceed, NO_JOB, NONE),
        row(Cancel, Method::POST, "/apps/api/v1/bulk/users/cancel", Ccai, G::Proceed, NO_JOB, NONE),
        row(Job, Method::GET, "/apps/api/v1/bulk/users/jobs/{id}", Ccai, G::Status, NO_JOB, NONE),
        row(Jobs, Method::GET, "/apps/api/v1/bulk/users/jobs", Ccai, G::Jobs, NO_JOB, PAGED),
        row(SchemeErrors, Method::GET, "/apps/api/v1/bulk/users/errors/scheme/{id}", Ccai, G::Reads, NO_JOB, PAGED),
        row(UpdateErrors, Method::GET, "/apps/api/v1/bulk/users/errors/update/{id}", Ccai, G::Reads, NO_JOB, PAGED),
        row(CreateManyUsers, Method::POST, "/api/v2/users/create_many", Zendesk, G::Batches, JOB, NONE),
        row(CreateOrUpdateManyUsers, Method::POST, "/api/v2/users/create_or_update_many", Zendesk, G::Batches, JOB, NONE),
        row(UpdateManyUsers, Method::PUT, "/api/v2/users/update_many", Zendesk, G::Batches, JOB, SELECTED),
        row(DestroyManyUsers, Method::DELETE, "/api/v2/users/destroy_many", Zendesk, G::Batches, JOB, SELECTED),
        row(JobStatuses, Method::GET, "/api/v2/job_statuses", Zendesk, G::Jobs, NO_JOB, &["page[size]", "page[after]"]),
        row(ShowManyJobStatuses, Method::GET, "/api/v2/job_statuses/show_many", Zendesk, G::Status, NO_JOB, &["ids"]),
        row(ShowJobStatus, Method::GET, "/api/v2/job_statuses/{id}", Zendesk, G::Status, NO_JOB, NONE),
        row(WorkspaceBatchCreate, Method::POST, "/v2/{project_id}/users/batch-create", Workspace, G::Directory, JOB, NONE),
        row(WorkspaceListUsers, Method::GET, "/v2/{project_id}/users", Workspace, G::Reads, NO_JOB, &["limit", "offset", "user_name"]),
        row(WorkspaceDeleteUser, Method::DELETE, "/v2/{project_id}/users/{user_id}", Workspace, G::Directory, JOB, NONE),
        row(WorkspaceBatchDelete, Method::POST, "/v2/{project_id}/users/batch-delete", Workspace, G::Directory, JOB, NONE),
    ]
};

// A row for every operation: an operation added last without its row stops the build (one
// added elsewhere fails `each_operation_has_its_own_row`).
const _: () = assert!(ROUTES.len() == Operation::WorkspaceBatchDelete as usize + 1);

/// The route table.
pub fn route_table() -> &'static [RouteSpec] {
    &ROUTES
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
    let matching: Vec<(&RouteSpec, Vec<String>)> = route_table()
        .iter()
        .filter_map(|spec| match_pattern(spec.pattern, &canonical).map(|params| (spec, params)))
        .collect();
    // A literal segment beats a parameter (OpenAPI's rule): `…/users/batch-delete` is that
    // path's, never the user `batch-delete` of `…/users/{user_id}`.
    let fewest_params = matching.iter().map(|(_, params)| params.len()).min();
    let mut allowed: Vec<Method> = Vec::new();
    for (spec, params) in matching {
        if Some(params.len()) != fewest_params {
            continue;
        }
        if spec.method == *method {
            return Ok(Route {
                operation: spec.operation,
                params,
            });
        }
        if !allowed.contains(&spec.method) {
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
    fn each_operation_has_its_own_row() {
        for (index, spec) in ROUTES.iter().enumerate() {
            assert_eq!(spec.operation as usize, index, "{:?}", spec.operation);
            assert!(std::ptr::eq(spec.operation.spec(), spec));
        }
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
            Ok((Operation::ShowJobStatus, vec!["0a1b".into()]))
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
        // A literal segment beats a parameter: no user is named `batch-create`.
        assert_eq!(
            op(Method::GET, "/v2/acme/users/batch-create"),
            Err(RouteMiss::MethodNotAllowed(vec![Method::POST]))
        );
        assert_eq!(
            op(Method::DELETE, "/v2/acme/users/batch-delete"),
            Err(RouteMiss::MethodNotAllowed(vec![Method::POST]))
        );
        assert_eq!(
            op(Method::POST, "/api/v2/job_statuses/show_many"),
            Err(RouteMiss::MethodNotAllowed(vec![Method::GET]))
        );
        assert_eq!(Dialect::of_path("/v2/x/users"), Dialect::Workspace);
        assert_eq!(Dialect::of(Operation::ShowJobStatus), Dialect::Zendesk);
    }
}
