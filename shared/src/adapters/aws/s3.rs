//! [`FileStore`] on S3.

use async_trait::async_trait;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::operation::head_object::HeadObjectError;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::ports::{FileReader, FileStore, PresignedUpload, StoreError, StoreResult};

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
            .map_err(|e| super::sdk_failure(STORE, e))?;
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
                _ => Err(super::sdk_failure(STORE, error)),
            },
        }
    }

    async fn size(&self, key: &str) -> StoreResult<Option<u64>> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(head) => Ok(Some(head.content_length().unwrap_or_default().max(0) as u64)),
            Err(error) => match error.as_service_error() {
                Some(HeadObjectError::NotFound(_)) => Ok(None),
                _ => Err(super::sdk_failure(STORE, error)),
            },
        }
    }

    /// S3 has no rename: a server-side copy, then the delete of the original.
    async fn rename(&self, from: &str, to: &str) -> StoreResult<()> {
        let source = format!("{}/{}", self.bucket, utf8_percent_encode(from, KEY_SET));
        match self
            .client
            .copy_object()
            .bucket(&self.bucket)
            .key(to)
            .copy_source(source)
            .send()
            .await
        {
            Ok(_) => {}
            Err(error) => {
                return Err(match error.as_service_error() {
                    Some(service) if service.code() == Some("NoSuchKey") => {
                        StoreError::NotFound(format!("s3://{}/{from}", self.bucket))
                    }
                    _ => super::sdk_failure(STORE, error),
                })
            }
        }
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(from)
            .send()
            .await
            .map_err(|e| super::sdk_failure(STORE, e))?;
        Ok(())
    }

    fn presigns(&self) -> bool {
        true
    }

    async fn presign_put(
        &self,
        key: &str,
        bytes: u64,
        expires_in: std::time::Duration,
    ) -> StoreResult<Option<PresignedUpload>> {
        let config = PresigningConfig::expires_in(expires_in)
            .map_err(|e| StoreError::unavailable(STORE, e))?;
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_length(i64::try_from(bytes).unwrap_or(i64::MAX))
            .content_type("application/json")
            .presigned(config)
            .await
            .map_err(|e| super::sdk_failure(STORE, e))?;
        Ok(Some(PresignedUpload {
            method: request.method().to_owned(),
            url: request.uri().to_owned(),
            headers: request
                .headers()
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect(),
        }))
    }
}

/// Characters escaped in a `CopySource` key (everything but unreserved characters and `/`).
const KEY_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
