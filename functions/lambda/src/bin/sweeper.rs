//! Scheduled Lambda function: resumes jobs in progress whose work was lost.

use bulk_users::lambda::{run_sweeper, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    run_sweeper().await
}
