//! One contract per port, written once against the trait and run on both adapters: the
//! embedded ones (SQLite, local files, the SQLite work queue) and the AWS ones on the emulator
//! (DynamoDB, S3, SQS, KMS). `jobs::a_job_starts_processing_once::aws` is the contract
//! `a_job_starts_processing_once` of the `JobStore` on the AWS adapters.
//!
//! Contracts that race writes run on the serialized emulator: moto's threaded server does not
//! apply a conditional write atomically, DynamoDB does. What only one adapter has (SQLite's
//! schema migrations, file paths on disk, the local queue's leases, DynamoDB's item layout)
//! is tested beside that adapter.

/// Runs each named contract (an `async fn(Adapters)` of the module) on both adapters, the AWS
/// ones on the emulator serving `$serving`.
macro_rules! contracts {
    ($serving:ident: $($contract:ident),* $(,)?) => {
        $(
            mod $contract {
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn embedded() {
                    super::$contract($crate::fixtures::Adapters::embedded().await).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn aws() {
                    let adapters = $crate::fixtures::Adapters::aws(
                        bulk_tests::moto::Serving::$serving,
                        stringify!($contract),
                    )
                    .await;
                    super::$contract(adapters).await;
                }
            }
        )*
    };
}

mod admission;
mod files;
mod fixtures;
mod idempotency;
mod jobs;
mod keyring;
mod lifecycle;
mod queue;
mod tenants;
mod users;
