//! The `FileStore` contract: job files stored whole, opened at a byte offset, measured and
//! moved; every write a new version, each version read by its id whatever is written after;
//! presigned uploads where the store has them.

use std::time::Duration;

use bulk_users::ports::{FileReader, FileStore, StoreError};
use bytes::Bytes;
use tokio::io::AsyncReadExt;

use crate::fixtures::Adapters;

contracts!(Threaded:
    files_are_stored_and_opened_at_an_offset,
    files_are_measured_and_moved,
    a_version_is_read_as_written_whatever_is_written_after,
    moving_a_version_moves_exactly_it,
    presigned_uploads_are_offered_only_by_stores_that_presign,
);

async fn read_all(reader: StoreResultReader) -> String {
    let mut text = String::new();
    reader.unwrap().read_to_string(&mut text).await.unwrap();
    text
}

type StoreResultReader = Result<FileReader, StoreError>;

async fn put(files: &dyn FileStore, key: &str, body: &'static str) -> String {
    files
        .put(key, Bytes::from_static(body.as_bytes()))
        .await
        .unwrap()
}

async fn files_are_stored_and_opened_at_an_offset(adapters: Adapters) {
    let files = &adapters.ports.files;
    let key = "uploads/acme/jobs/1/file.json";
    let body = r#"[{"email":"a@example.com"},{"email":"b@example.com"}]"#;
    put(files.as_ref(), key, body).await;
    assert_eq!(read_all(files.open(key, None, 0).await).await, body);
    assert_eq!(read_all(files.open(key, None, 27).await).await, &body[27..]);
    let end = body.len() as u64;
    assert_eq!(read_all(files.open(key, None, end).await).await, "");
    assert_eq!(read_all(files.open(key, None, 999).await).await, "");

    // Stored again: the new bytes, whole.
    put(files.as_ref(), key, "[]").await;
    assert_eq!(read_all(files.open(key, None, 0).await).await, "[]");

    let missing = files.open("uploads/acme/jobs/2/file.json", None, 0).await;
    assert!(matches!(missing, Err(StoreError::NotFound(_))));
}

async fn files_are_measured_and_moved(adapters: Adapters) {
    let files = &adapters.ports.files;
    let (from, to) = ("incoming/acme/drop.json", "uploads/acme/jobs/1/file.json");
    put(files.as_ref(), from, "[1, 2, 3]").await;
    assert_eq!(files.size(from).await.unwrap(), Some(9));
    assert_eq!(files.size(to).await.unwrap(), None);

    put(files.as_ref(), to, "old").await;
    let moved = files.rename(from, None, to).await.unwrap();
    assert_eq!(files.size(from).await.unwrap(), None);
    let head = files.head(to, None).await.unwrap().expect("moved");
    assert_eq!(
        (head.bytes, head.version),
        (9, moved),
        "the version answered"
    );
    let read = read_all(files.open(to, None, 0).await).await;
    assert_eq!(read, "[1, 2, 3]", "replaced");
    let gone = files.open(from, None, 0).await;
    assert!(matches!(gone, Err(StoreError::NotFound(_))));
}

/// A job reads only the bytes it validated: the version it recorded is read as written, at any
/// offset, whatever is written to the key after (and a version that never was is not found).
async fn a_version_is_read_as_written_whatever_is_written_after(adapters: Adapters) {
    let files = &adapters.ports.files;
    let key = "incoming/acme/jobs/7/users.json";
    let validated = put(files.as_ref(), key, "[1, 2, 3]").await;
    let head = files.head(key, None).await.unwrap().expect("written");
    assert_eq!((head.bytes, head.version.as_str()), (9, validated.as_str()));

    let later = put(files.as_ref(), key, "[4, 5, 6, 7]").await;
    assert_ne!(later, validated, "every write is a new version");
    let pinned = Some(validated.as_str());
    assert_eq!(
        read_all(files.open(key, pinned, 0).await).await,
        "[1, 2, 3]"
    );
    assert_eq!(read_all(files.open(key, pinned, 4).await).await, "2, 3]");
    let head = files.head(key, pinned).await.unwrap().expect("kept");
    assert_eq!((head.bytes, head.version), (9, validated.clone()));
    let current = read_all(files.open(key, None, 0).await).await;
    assert_eq!(
        current, "[4, 5, 6, 7]",
        "the current file is the last written"
    );

    let never = files.open(key, Some("0-0-0"), 0).await;
    let never = never.err().map(|error| error.to_string());
    assert!(
        never.as_deref().is_some_and(|e| e.starts_with("not found")),
        "{never:?}"
    );
    assert_eq!(files.head(key, Some("0-0-0")).await.unwrap(), None);
}

/// Moving a version (a later write moved aside, a drop moved into its slot) moves exactly it:
/// the version before it is the key's current file again, and a second move of the same
/// version finds nothing.
async fn moving_a_version_moves_exactly_it(adapters: Adapters) {
    let files = &adapters.ports.files;
    let key = "incoming/acme/jobs/8/users.json";
    let validated = put(files.as_ref(), key, "[1, 2, 3]").await;
    let later = put(files.as_ref(), key, "[9]").await;
    let aside = "rejected/acme/jobs/8/users.json";
    files.rename(key, Some(&later), aside).await.unwrap();
    let read = read_all(files.open(aside, None, 0).await).await;
    assert_eq!(read, "[9]", "moved aside");
    let head = files
        .head(key, None)
        .await
        .unwrap()
        .expect("the validated file");
    assert_eq!(head.version, validated, "current again");
    let read = read_all(files.open(key, Some(&validated), 0).await).await;
    assert_eq!(read, "[1, 2, 3]");

    let again = files.rename(key, Some(&later), aside).await;
    assert!(matches!(again, Err(StoreError::NotFound(_))), "{again:?}");
    assert_eq!(files.head(key, Some(&later)).await.unwrap(), None);
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
        let header = |wanted: &str| {
            let found = upload.headers.iter();
            let mut found = found.filter(|(name, _)| name.eq_ignore_ascii_case(wanted));
            found.next().map(|(_, value)| value.as_str())
        };
        assert_eq!(header("content-length"), Some("42"));
        assert_eq!(header("if-none-match"), Some("*"), "one upload per URL");
    }
}
