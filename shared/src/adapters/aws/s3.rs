//! [`FileStore`] on S3.

use async_trait::async_trait;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;

use crate::ports::{FileReader, FileStore, StoreError, StoreResult};

const STORE: &str = "s3";

/// Job files as objects of one bucket.
#[derive(Debug, Clone)]
pub struct S3FileStore {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3FileStore {
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> S3FileStore {
        S3FileStore {
            client,
            bucket: bucket.into(),
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }
}

#[async_trait]
impl FileStore for S3FileStore {
    async fn put(&self, key: &str, body: Bytes) -> StoreResult<()> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| StoreError::unavailable(STORE, DisplayErrorContext(e)))?;
        Ok(())
    }

    async fn open(&self, key: &str, offset: u64) -> StoreResult<FileReader> {
        let request = self.client.get_object().bucket(&self.bucket).key(key);
        let request = if offset > 0 {
            request.range(format!("bytes={offset}-"))
        } else {
            request
        };
        match request.send().await {
            Ok(object) => Ok(Box::new(object.body.into_async_read())),
            Err(error) => match error.as_service_error() {
                Some(GetObjectError::NoSuchKey(_)) => {
                    Err(StoreError::NotFound(format!("s3://{}/{key}", self.bucket)))
                }
                // Opening at (or past) the end of the file: nothing left to read.
                Some(service) if offset > 0 && service.code() == Some("InvalidRange") => {
                    Ok(Box::new(tokio::io::empty()))
                }
                _ => Err(StoreError::unavailable(STORE, DisplayErrorContext(error))),
            },
        }
    }
}
