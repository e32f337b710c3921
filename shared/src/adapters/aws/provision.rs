//! Creating the AWS resources of the API: the table, the bucket and the queue. Every function
//! is idempotent: a resource that already exists is fine. Used by tests and the admin command.

use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, IndexStatus, KeySchemaElement, KeyType,
    Projection, ProjectionType, ScalarAttributeType, TableStatus,
};
use aws_sdk_s3::types::{
    BucketLocationConstraint, BucketVersioningStatus, CreateBucketConfiguration,
    VersioningConfiguration,
};

use super::build_error;
use crate::ports::{StoreError, StoreResult};

/// How long [`create_table`] waits for the table to become active.
const TABLE_READY_TIMEOUT: Duration = Duration::from_secs(180);

fn key_element(name: &str, key_type: KeyType) -> StoreResult<KeySchemaElement> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(key_type)
        .build()
        .map_err(|e| build_error("dynamodb", e))
}

fn string_attribute(name: &str) -> StoreResult<AttributeDefinition> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .map_err(|e| build_error("dynamodb", e))
}

fn index(name: &str, pk: &str, sk: &str) -> StoreResult<GlobalSecondaryIndex> {
    GlobalSecondaryIndex::builder()
        .index_name(name)
        .key_schema(key_element(pk, KeyType::Hash)?)
        .key_schema(key_element(sk, KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::All)
                .build(),
        )
        .build()
        .map_err(|e| build_error("dynamodb", e))
}

/// Creates the table (on-demand billing; keys `pk`/`sk`; indexes `gsi1` and `gsi2`) unless it
/// exists, and waits until it and its indexes are active.
pub async fn create_table(client: &aws_sdk_dynamodb::Client, name: &str) -> StoreResult<()> {
    use aws_sdk_dynamodb::operation::create_table::CreateTableError;

    let mut request = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key_element("pk", KeyType::Hash)?)
        .key_schema(key_element("sk", KeyType::Range)?)
        .global_secondary_indexes(index("gsi1", "gsi1pk", "gsi1sk")?)
        .global_secondary_indexes(index("gsi2", "gsi2pk", "gsi2sk")?);
    for attribute in ["pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk"] {
        request = request.attribute_definitions(string_attribute(attribute)?);
    }
    match request.send().await {
        Ok(_) => {}
        Err(error)
            if matches!(
                error.as_service_error(),
                Some(CreateTableError::ResourceInUseException(_))
            ) => {}
        Err(error) => {
            return Err(StoreError::unavailable(
                "dynamodb",
                aws_sdk_dynamodb::error::DisplayErrorContext(error),
            ))
        }
    }
    wait_for_table(client, name).await
}

async fn wait_for_table(client: &aws_sdk_dynamodb::Client, name: &str) -> StoreResult<()> {
    let deadline = tokio::time::Instant::now() + TABLE_READY_TIMEOUT;
    loop {
        let out = client
            .describe_table()
            .table_name(name)
            .send()
            .await
            .map_err(|e| {
                StoreError::unavailable("dynamodb", aws_sdk_dynamodb::error::DisplayErrorContext(e))
            })?;
        let ready = out.table().is_some_and(|table| {
            table.table_status() == Some(&TableStatus::Active)
                && table.global_secondary_indexes().iter().all(|index| {
                    index
                        .index_status()
                        .is_none_or(|s| s == &IndexStatus::Active)
                })
        });
        if ready {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(StoreError::unavailable(
                "dynamodb",
                format!("table {name} is not active after {TABLE_READY_TIMEOUT:?}"),
            ));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Creates the bucket unless this account already owns it, versioned as the template's is.
pub async fn create_bucket(client: &aws_sdk_s3::Client, name: &str) -> StoreResult<()> {
    create_unversioned_bucket(client, name).await?;
    let versioned = VersioningConfiguration::builder()
        .status(BucketVersioningStatus::Enabled)
        .build();
    client
        .put_bucket_versioning()
        .bucket(name)
        .versioning_configuration(versioned)
        .send()
        .await
        .map(|_| ())
        .map_err(|error| {
            StoreError::unavailable("s3", aws_sdk_s3::error::DisplayErrorContext(error))
        })
}

async fn create_unversioned_bucket(client: &aws_sdk_s3::Client, name: &str) -> StoreResult<()> {
    use aws_sdk_s3::operation::create_bucket::CreateBucketError;

    let mut request = client.create_bucket().bucket(name);
    let region = client.config().region().map(|r| r.as_ref().to_owned());
    if let Some(region) = region.filter(|region| region != "us-east-1") {
        // Outside us-east-1 the region must be named.
        request = request.create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(region.as_str()))
                .build(),
        );
    }
    match request.send().await {
        Ok(_) => Ok(()),
        Err(error)
            if matches!(
                error.as_service_error(),
                Some(CreateBucketError::BucketAlreadyOwnedByYou(_))
            ) =>
        {
            Ok(())
        }
        Err(error) => Err(StoreError::unavailable(
            "s3",
            aws_sdk_s3::error::DisplayErrorContext(error),
        )),
    }
}

/// Creates the queue unless it exists, and answers its URL.
pub async fn create_queue(client: &aws_sdk_sqs::Client, name: &str) -> StoreResult<String> {
    use aws_sdk_sqs::operation::create_queue::CreateQueueError;

    let unavailable =
        |error| StoreError::unavailable("sqs", aws_sdk_sqs::error::DisplayErrorContext(error));
    match client.create_queue().queue_name(name).send().await {
        Ok(out) => {
            if let Some(url) = out.queue_url {
                return Ok(url);
            }
        }
        // Exists with other attributes: keep it as it is.
        Err(error)
            if matches!(
                error.as_service_error(),
                Some(CreateQueueError::QueueNameExists(_))
            ) => {}
        Err(error) => return Err(unavailable(error)),
    }
    client
        .get_queue_url()
        .queue_name(name)
        .send()
        .await
        .map_err(|error| {
            StoreError::unavailable("sqs", aws_sdk_sqs::error::DisplayErrorContext(error))
        })?
        .queue_url
        .ok_or_else(|| StoreError::unavailable("sqs", format!("queue {name} has no URL")))
}

/// The customer-managed KMS key named by `alias` (`alias/…`), created with yearly rotation of
/// its key material when there is none, and its ARN: the key the credentials' secrets are
/// sealed under, as the template declares it.
pub async fn create_key(client: &aws_sdk_kms::Client, alias: &str) -> StoreResult<String> {
    let unavailable =
        |error| StoreError::unavailable("kms", aws_sdk_kms::error::DisplayErrorContext(error));
    match client.describe_key().key_id(alias).send().await {
        Ok(out) => {
            if let Some(arn) = out.key_metadata().and_then(|key| key.arn()) {
                return Ok(arn.to_owned());
            }
        }
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_not_found_exception()) => {}
        Err(error) => return Err(unavailable(error)),
    }
    let created = client
        .create_key()
        .description("bulk-users: seals the API credentials' secrets (envelope encryption)")
        .send()
        .await
        .map_err(|error| {
            StoreError::unavailable("kms", aws_sdk_kms::error::DisplayErrorContext(error))
        })?;
    let metadata = created
        .key_metadata()
        .ok_or_else(|| StoreError::unavailable("kms", "CreateKey answered no key"))?;
    let (key_id, arn) = (
        metadata.key_id().to_owned(),
        metadata.arn().unwrap_or_default(),
    );
    client
        .enable_key_rotation()
        .key_id(&key_id)
        .send()
        .await
        .map_err(|error| {
            StoreError::unavailable("kms", aws_sdk_kms::error::DisplayErrorContext(error))
        })?;
    client
        .create_alias()
        .alias_name(alias)
        .target_key_id(&key_id)
        .send()
        .await
        .map_err(|error| {
            StoreError::unavailable("kms", aws_sdk_kms::error::DisplayErrorContext(error))
        })?;
    Ok(arn.to_owned())
}
