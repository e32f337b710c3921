//! Lambda function serving the `upload` routes of the bulk user API (group `RouteGroup::Upload`).

use bulk_users::api::RouteGroup;
use bulk_users::lambda::{run_http, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    run_http(RouteGroup::Upload).await
}
