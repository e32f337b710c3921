//! Lambda function serving the `proceed` routes of the bulk user API (group `RouteGroup::Proceed`).

use bulk_users::api::RouteGroup;
use bulk_users::lambda::{run_http, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    run_http(RouteGroup::Proceed).await
}
