//! SQS-triggered Lambda function: processes queued chunks of bulk jobs.

use bulk_users::lambda::{run_processor, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    run_processor().await
}
