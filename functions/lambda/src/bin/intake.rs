//! Lambda function fed by the uploads bucket's `ObjectCreated` notifications for `incoming/`
//! (through an SQS queue, or directly): dropped files and presigned uploads become jobs.

use bulk_users::lambda::{run_intake, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    run_intake().await
}
