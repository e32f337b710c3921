//! SQS-triggered Lambda function: ends failed the jobs whose chunks reached the work queue's
//! dead-letter queue.

use bulk_users::lambda::{run_dead_letters, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    run_dead_letters().await
}
