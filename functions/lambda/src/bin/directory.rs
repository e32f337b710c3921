//! Lambda function serving the Huawei Workspace writes (`users/batch-create`, deletions) of the
//! bulk user API (group `RouteGroup::Directory`), processed within the request.

use bulk_users::api::RouteGroup;
use bulk_users::lambda::{run_http, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    run_http(RouteGroup::Directory).await
}
