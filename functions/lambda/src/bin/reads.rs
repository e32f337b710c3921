//! Lambda function serving the `reads` routes of the bulk user API (group `RouteGroup::Reads`).

use bulk_users::api::RouteGroup;
use bulk_users::lambda::{run_http, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    run_http(RouteGroup::Reads).await
}
