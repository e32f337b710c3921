//! AWS adapters: DynamoDB (jobs, users, tenants), S3 (job files), SQS (work queue) and KMS (the
//! keyring of credentials' secrets).
//!
//! One SDK configuration is loaded per process ([`connect`]) and the four clients are built
//! from it; the adapters only hold cheap clones of the clients.

mod counter;
mod dynamo;
#[cfg(test)]
mod fake;
mod keyring;
pub mod provision;
mod s3;
mod sqs;

use std::sync::Arc;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
pub use aws_config::SdkConfig;
use aws_config::{BehaviorVersion, Region};

pub use aws_sdk_dynamodb::config::Credentials;
pub use counter::RequestCounter;
pub use dynamo::DynamoStore;
pub use keyring::{KmsKeyring, CONTEXT_KEYS, DATA_KEYS_CACHED};
pub use s3::S3FileStore;
pub use sqs::SqsWorkQueue;

use crate::ports::{Ports, StoreError};

/// Where the AWS resources of the API live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsSettings {
    /// The DynamoDB table of jobs, users and tenants.
    pub table: String,
    /// The S3 bucket of job files.
    pub bucket: String,
    /// The SQS queue of work items.
    pub queue_url: String,
    /// The customer-managed KMS key the credentials' secrets are sealed under (its ARN: no
    /// secret); `None` in a process that opens and seals none.
    pub kms_key_arn: Option<String>,
    /// An endpoint override (moto, LocalStack); `None` for real AWS.
    pub endpoint_url: Option<String>,
    pub region: String,
}

/// The environment variable naming the KMS key of the credentials' secrets.
pub const KMS_KEY_ENV: &str = "BULK_KMS_KEY_ARN";

/// The region used when `AWS_REGION` is not set.
pub const DEFAULT_REGION: &str = "us-east-1";

impl AwsSettings {
    /// Reads `BULK_TABLE_NAME`, `BULK_BUCKET_NAME`, `BULK_QUEUE_URL`, `BULK_KMS_KEY_ARN`
    /// (optional), `AWS_ENDPOINT_URL` (optional) and `AWS_REGION` (default `us-east-1`).
    pub fn from_env() -> Result<AwsSettings, String> {
        AwsSettings::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`AwsSettings::from_env`], reading the variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<AwsSettings, String> {
        let optional = |name: &str| {
            lookup(name)
                .map(|value| value.trim().to_owned())
                .filter(|value| !value.is_empty())
        };
        let required = |name: &str| {
            optional(name).ok_or_else(|| format!("environment variable {name} is not set"))
        };
        Ok(AwsSettings {
            table: required("BULK_TABLE_NAME")?,
            bucket: required("BULK_BUCKET_NAME")?,
            queue_url: required("BULK_QUEUE_URL")?,
            kms_key_arn: optional(KMS_KEY_ENV),
            endpoint_url: optional("AWS_ENDPOINT_URL"),
            region: optional("AWS_REGION").unwrap_or_else(|| DEFAULT_REGION.to_owned()),
        })
    }
}

/// The ports backed by AWS, and the clients they use (for provisioning and tests).
#[derive(Clone)]
pub struct AwsAdapters {
    pub ports: Ports,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub kms: aws_sdk_kms::Client,
    pub settings: AwsSettings,
}

impl AwsAdapters {
    /// Wires the ports over already built clients.
    pub fn from_clients(
        dynamodb: aws_sdk_dynamodb::Client,
        s3: aws_sdk_s3::Client,
        sqs: aws_sdk_sqs::Client,
        kms: aws_sdk_kms::Client,
        settings: AwsSettings,
    ) -> AwsAdapters {
        let store = Arc::new(DynamoStore::new(dynamodb.clone(), settings.table.clone()));
        let ports = Ports {
            jobs: store.clone(),
            users: store.clone(),
            tenants: store.clone(),
            idempotency: store,
            files: Arc::new(S3FileStore::new(s3.clone(), settings.bucket.clone())),
            queue: Arc::new(SqsWorkQueue::new(sqs.clone(), settings.queue_url.clone())),
            // Functions that never authenticate have no KMS permission and never use it.
            keyring: Arc::new(KmsKeyring::new(
                kms.clone(),
                dynamodb.clone(),
                settings.table.clone(),
                settings.kms_key_arn.clone(),
            )),
        };
        AwsAdapters {
            ports,
            dynamodb,
            s3,
            sqs,
            kms,
            settings,
        }
    }

    /// Builds the four clients from one SDK configuration.
    pub fn from_sdk_config(config: &SdkConfig, settings: AwsSettings) -> AwsAdapters {
        let dynamodb = aws_sdk_dynamodb::Client::new(config);
        let mut s3_config = aws_sdk_s3::config::Builder::from(config);
        if settings.endpoint_url.is_some() {
            // Emulators answer on one host: `bucket.localhost` would not resolve.
            s3_config = s3_config.force_path_style(true);
        }
        let s3 = aws_sdk_s3::Client::from_conf(s3_config.build());
        let sqs = aws_sdk_sqs::Client::new(config);
        let kms = aws_sdk_kms::Client::new(config);
        AwsAdapters::from_clients(dynamodb, s3, sqs, kms, settings)
    }
}

/// Attempts of one SDK operation (the first and its retries) before it fails.
pub const MAX_ATTEMPTS: u32 = 8;

/// Loads the SDK configuration: the region and endpoint of `settings`, explicit timeouts and
/// the standard retry mode. Credentials come from the default chain unless given.
pub async fn load_sdk_config(
    settings: &AwsSettings,
    credentials: Option<Credentials>,
) -> SdkConfig {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .operation_attempt_timeout(Duration::from_secs(30))
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(settings.region.clone()))
        .timeout_config(timeouts)
        // Standard retries (exponential backoff with full jitter, a retry quota per process),
        // with more attempts from a shorter first backoff than the SDK's 3 attempts from 1 s:
        // DynamoDB throttling and dropped connections pass quickly, and the AWS SDKs of other
        // languages retry DynamoDB 8 to 10 times from 25 to 50 ms. Eight attempts from 50 ms
        // wait at most 6.35 s in all before an operation gives up; at a 20% fault rate an
        // operation then fails once in 390,000 (once in 625 with the 4 attempts from 1 s this
        // had). What still fails is retried one level up: the queue delivers the chunk again,
        // the client retries the 503.
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(MAX_ATTEMPTS)
                .with_initial_backoff(Duration::from_millis(50)),
        );
    if let Some(endpoint) = &settings.endpoint_url {
        loader = loader.endpoint_url(endpoint.clone());
    }
    if let Some(credentials) = credentials {
        loader = loader.credentials_provider(credentials);
    }
    loader.load().await
}

/// Connects to AWS with the default credential chain.
pub async fn connect(settings: &AwsSettings) -> AwsAdapters {
    let config = load_sdk_config(settings, None).await;
    AwsAdapters::from_sdk_config(&config, settings.clone())
}

/// Connects to AWS (or an emulator) with fixed credentials.
pub async fn connect_with_credentials(
    settings: &AwsSettings,
    credentials: Credentials,
) -> AwsAdapters {
    let config = load_sdk_config(settings, Some(credentials)).await;
    AwsAdapters::from_sdk_config(&config, settings.clone())
}

/// The error codes with which AWS refuses a request it will never accept from this
/// deployment: a permission its role lacks, or credentials it does not know.
const DENIALS: [&str; 8] = [
    "AccessDenied",
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "ExpiredTokenException",
];

/// A failed call to an AWS service as a store error: a denial (one of [`DENIALS`], or a bare
/// 403 such as S3 answers a HEAD with) is [`StoreError::Denied`], anything else unavailability.
pub(crate) fn sdk_failure<E>(
    store: &'static str,
    error: aws_sdk_dynamodb::error::SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
) -> StoreError
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
    let SdkError::ServiceError(service) = &error else {
        return StoreError::unavailable(store, DisplayErrorContext(&error));
    };
    let denial = match service.err().code() {
        Some(code) if DENIALS.contains(&code) => Some(format!(
            "{code}: {}",
            service.err().message().unwrap_or_default()
        )),
        // S3 answers a HEAD it refuses with a bare 403.
        None if service.raw().status().as_u16() == 403 => Some("403 Forbidden".to_owned()),
        _ => None,
    };
    match denial {
        Some(message) => StoreError::Denied { store, message },
        None => StoreError::unavailable(store, DisplayErrorContext(&error)),
    }
}

/// A request that could not even be built: a bug of this adapter, reported as unavailability.
fn build_error(store: &'static str, error: impl std::fmt::Display) -> StoreError {
    StoreError::unavailable(store, format!("invalid request: {error}"))
}

/// Exponential backoff with jitter before retry `attempt` (1-based) of unprocessed work.
async fn backoff(attempt: u32) {
    let base_ms = 25u64.saturating_mul(1u64 << attempt.min(7)).min(2_000);
    let jitter = rand::random::<u64>() % (base_ms / 2 + 1);
    tokio::time::sleep(Duration::from_millis(base_ms / 2 + jitter)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_name_the_missing_variable_and_default_the_region() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| (*value).to_owned())
            }
        };
        let error = AwsSettings::from_lookup(vars(&[("BULK_TABLE_NAME", "t")])).unwrap_err();
        assert!(error.contains("BULK_BUCKET_NAME"), "{error}");

        let settings = AwsSettings::from_lookup(vars(&[
            ("BULK_TABLE_NAME", "t"),
            ("BULK_BUCKET_NAME", "b"),
            ("BULK_QUEUE_URL", "http://q"),
        ]))
        .unwrap();
        assert_eq!(settings.region, "us-east-1");
        assert_eq!(settings.endpoint_url, None);
    }
}
