//! Lambda function serving the `status` routes of the bulk user API (group `RouteGroup::Status`).

use bulk_users::api::RouteGroup;
use bulk_users::lambda::{run_http, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    run_http(RouteGroup::Status).await
}
