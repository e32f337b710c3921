//! Lambda function serving the Zendesk batch writes (`users/*_many`) of the bulk user API
//! (group `RouteGroup::Batches`): each stores its users as a job file and queues the job.

use bulk_users::api::RouteGroup;
use bulk_users::lambda::{run_http, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    run_http(RouteGroup::Batches).await
}
