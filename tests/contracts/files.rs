//! The `FileStore` contract: job files stored whole, opened at a byte offset, measured and
//! moved; presigned uploads where the store has them.

use std::time::Duration;

use bulk_users::ports::{FileReader, StoreError};
use bytes::Bytes;
use tokio::io::AsyncReadExt;

use crate::fixtures::Adapters;

contracts!(Threaded:
    files_are_stored_and_opened_at_an_offset,
    files_are_measured_and_moved,
    presigned_uploads_are_offered_only_by_stores_that_presign,
);

async fn read_all(reader: StoreResultReader) -> String {
    let mut text = String::new();
    reader.unwrap().read_to_string(&mut text).await.unwrap();
    text
}

type StoreResultReader = Result<FileReader, StoreError>;

async fn files_are_stored_and_opened_at_an_offset(adapters: Adapters) {
    let files = &adapters.ports.files;
    let key = "uploads/acme/jobs/1/file.json";
    let body = r#"[{"email":"a@example.com"},{"email":"b@example.com"}]"#;
    files
        .put(key, Bytes::from_static(body.as_bytes()))
        .await
        .unwrap();
    assert_eq!(read_all(files.open(key, 0).await).await, body);
    assert_eq!(read_all(files.open(key, 27).await).await, &body[27..]);
    assert_eq!(read_all(files.open(key, body.len() as u64).await).await, "");
    assert_eq!(read_all(files.open(key, 999).await).await, "");

    // Stored again: the new bytes, whole.
    files.put(key, Bytes::from_static(b"[]")).await.unwrap();
    assert_eq!(read_all(files.open(key, 0).await).await, "[]");

    let missing = files.open("uploads/acme/jobs/2/file.json", 0).await;
    assert!(matches!(missing, Err(StoreError::NotFound(_))));
}

async fn files_are_measured_and_moved(adapters: Adapters) {
    let files = &adapters.ports.files;
    let (from, to) = ("incoming/acme/drop.json", "uploads/acme/jobs/1/file.json");
    files
        .put(from, Bytes::from_static(b"[1, 2, 3]"))
        .await
        .unwrap();
    assert_eq!(files.size(from).await.unwrap(), Some(9));
    assert_eq!(files.size(to).await.unwrap(), None);

    files.put(to, Bytes::from_static(b"old")).await.unwrap();
    files.rename(from, to).await.unwrap();
    assert_eq!(files.size(from).await.unwrap(), None);
    assert_eq!(
        read_all(files.open(to, 0).await).await,
        "[1, 2, 3]",
        "replaced"
    );
    assert!(matches!(
        files.open(from, 0).await,
        Err(StoreError::NotFound(_))
    ));
}

async fn presigned_uploads_are_offered_only_by_stores_that_presign(adapters: Adapters) {
    let files = &adapters.ports.files;
    let key = "uploads/acme/jobs/1/file.json";
    let presigned = files
        .presign_put(key, 42, Duration::from_secs(900))
        .await
        .unwrap();
    assert_eq!(presigned.is_some(), files.presigns());
    if let Some(upload) = presigned {
        assert_eq!(upload.method, "PUT");
        assert!(upload.url.contains("file.json"), "{}", upload.url);
        let length = upload
            .headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("content-length"));
        assert_eq!(length.map(|(_, value)| value.as_str()), Some("42"));
    }
}
