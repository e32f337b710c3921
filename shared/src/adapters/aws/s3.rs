//! [`FileStore`] on S3.

use async_trait::async_trait;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::operation::head_object::HeadObjectError;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::ports::{FileHead, FileReader, FileStore, PresignedUpload, StoreError, StoreResult};

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

/// What the S3 adapter calls a version: the object's `VersionId` in a versioned bucket, else
/// its ETag (`etag:` and the ETag): reads of an ETag are conditional on it (`If-Match`), so a
/// changed object is refused rather than read.
const ETAG_PREFIX: &str = "etag:";

fn version_of(version_id: Option<&str>, etag: Option<&str>) -> String {
    match version_id.filter(|id| !id.is_empty() && *id != "null") {
        Some(id) => id.to_owned(),
        None => format!("{ETAG_PREFIX}{}", etag.unwrap_or_default()),
    }
}

/// A version as S3 asks for it: `(VersionId, If-Match)`.
fn pinned(version: Option<&str>) -> (Option<String>, Option<String>) {
    match version {
        None => (None, None),
        Some(version) => match version.strip_prefix(ETAG_PREFIX) {
            Some(etag) => (None, Some(etag.to_owned())),
            None => (Some(version.to_owned()), None),
        },
    }
}

/// Whether S3's refusal of a read or copy of a version means the version is not there: no such
/// key or version, a version id S3 does not take, or an ETag the object no longer has.
fn version_missing<E: ProvideErrorMetadata>(
    error: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> bool {
    let code = error.as_service_error().and_then(|e| e.code());
    let status = error.raw_response().map(|raw| raw.status().as_u16());
    matches!(
        code,
        Some("NoSuchKey" | "NoSuchVersion" | "InvalidArgument" | "PreconditionFailed")
    ) || matches!(status, Some(404 | 412))
}

impl S3FileStore {
    fn missing(&self, key: &str, version: Option<&str>) -> StoreError {
        let version = version.map(|v| format!(" version {v}")).unwrap_or_default();
        StoreError::NotFound(format!("s3://{}/{key}{version}", self.bucket))
    }

    /// Removes exactly `version` of `key` (its current file when `None`: a delete marker in a
    /// versioned bucket).
    async fn delete(&self, key: &str, version: Option<&str>) -> StoreResult<()> {
        let (version_id, _) = pinned(version);
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .set_version_id(version_id)
            .send()
            .await
            .map_err(|e| super::sdk_failure(STORE, e))?;
        Ok(())
    }
}

#[async_trait]
impl FileStore for S3FileStore {
    async fn put(&self, key: &str, body: Bytes) -> StoreResult<String> {
        let put = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| super::sdk_failure(STORE, e))?;
        Ok(version_of(put.version_id(), put.e_tag()))
    }

    async fn open(&self, key: &str, version: Option<&str>, offset: u64) -> StoreResult<FileReader> {
        let (version_id, if_match) = pinned(version);
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .set_version_id(version_id)
            .set_if_match(if_match);
        let request = if offset > 0 {
            request.range(format!("bytes={offset}-"))
        } else {
            request
        };
        match request.send().await {
            Ok(object) => Ok(Box::new(object.body.into_async_read())),
            Err(error) => match error.as_service_error() {
                // Opening at (or past) the end of the file: nothing left to read.
                Some(service) if offset > 0 && service.code() == Some("InvalidRange") => {
                    Ok(Box::new(tokio::io::empty()))
                }
                Some(GetObjectError::NoSuchKey(_)) => Err(self.missing(key, version)),
                _ if version.is_some() && version_missing(&error) => {
                    Err(self.missing(key, version))
                }
                _ => Err(super::sdk_failure(STORE, error)),
            },
        }
    }

    async fn head(&self, key: &str, version: Option<&str>) -> StoreResult<Option<FileHead>> {
        let (version_id, if_match) = pinned(version);
        let head = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .set_version_id(version_id)
            .set_if_match(if_match)
            .send()
            .await;
        match head {
            Ok(head) => Ok(Some(FileHead {
                bytes: head.content_length().unwrap_or_default().max(0) as u64,
                version: version_of(head.version_id(), head.e_tag()),
            })),
            Err(error) => match error.as_service_error() {
                Some(HeadObjectError::NotFound(_)) => Ok(None),
                _ if version.is_some() && version_missing(&error) => Ok(None),
                // A delete marker is current: no file.
                _ if error
                    .raw_response()
                    .is_some_and(|raw| raw.status().as_u16() == 405) =>
                {
                    Ok(None)
                }
                _ => Err(super::sdk_failure(STORE, error)),
            },
        }
    }

    /// S3 has no rename: a server-side copy of the version, then the delete of that version.
    async fn rename(&self, from: &str, version: Option<&str>, to: &str) -> StoreResult<String> {
        let (version_id, if_match) = pinned(version);
        let mut source = format!("{}/{}", self.bucket, utf8_percent_encode(from, KEY_SET));
        if let Some(id) = &version_id {
            source.push_str(&format!("?versionId={}", utf8_percent_encode(id, KEY_SET)));
        }
        let copied = self
            .client
            .copy_object()
            .bucket(&self.bucket)
            .key(to)
            .copy_source(source)
            .set_copy_source_if_match(if_match)
            .send()
            .await;
        let copied = match copied {
            Ok(copied) => copied,
            Err(error) if version_missing(&error) => return Err(self.missing(from, version)),
            Err(error) => return Err(super::sdk_failure(STORE, error)),
        };
        let etag = copied
            .copy_object_result()
            .and_then(|result| result.e_tag());
        let moved = version_of(copied.version_id(), etag);
        self.delete(from, version).await?;
        Ok(moved)
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
            // Signed into the URL: a second PUT through it finds the first file and is
            // refused (412), so the file a job validated is the only one it is given.
            .if_none_match("*")
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A version id when the bucket versions its objects; else the ETag, which reads then
    /// require (If-Match) instead of naming a version.
    #[test]
    fn a_version_is_the_version_id_else_the_etag() {
        let versioned = version_of(Some("3HL4kqtJlcpXroDTDmJ"), Some("\"abc\""));
        assert_eq!(versioned, "3HL4kqtJlcpXroDTDmJ");
        assert_eq!(pinned(Some(&versioned)), (Some(versioned.clone()), None));
        for unversioned in [None, Some("null"), Some("")] {
            let etag = version_of(unversioned, Some("\"abc\""));
            assert_eq!(etag, "etag:\"abc\"");
            assert_eq!(pinned(Some(&etag)), (None, Some("\"abc\"".to_owned())));
        }
        assert_eq!(pinned(None), (None, None));
    }
}
