//! Arbitrary bytes as a Zendesk `users/*_many` body (`{"users": […]}` or `{"user": {…}}`) and as
//! a Huawei Workspace `users/batch-create` body (`{"users": […]}`), through the record rules of
//! each dialect, the way the handlers and the processor use them.
//!
//! Besides "never panics":
//! - a refused record always says why (at least one error);
//! - an accepted Zendesk record asks for what its job kind does (create, upsert, update by a
//!   positive id or one external id, delete with no other change);
//! - an accepted Workspace record stays accepted once stored: its clear password replaced by a
//!   hash, the processor's reading (`PasswordForm::Hashed`) gives the same command;
//! - a batch written as a job file (records joined into an array, cut in chunks) reads back,
//!   chunk by chunk through a small buffer, as exactly the records sent.

use bulk_users::jobfile::ArrayReader;
use bulk_users::model::JobKind;
use bulk_users::validation::{
    record_command, workspace_command, zendesk_command, Intent, PasswordForm, Target, UserCommand,
    UserPatch,
};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::common::{context, runtime};

/// Most users one Zendesk request carries.
const MAX_ZENDESK_USERS: usize = 100;
/// Most users one Workspace batch-create carries.
const MAX_WORKSPACE_USERS: usize = 200;
/// Stands in for a password hash: hashing for real is slow by design.
const FAKE_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA";

const ZENDESK_KINDS: [JobKind; 4] = [
    JobKind::CreateMany,
    JobKind::CreateOrUpdateMany,
    JobKind::UpdateMany,
    JobKind::DestroyMany,
];

/// The Zendesk body, as its handler reads it.
#[derive(Deserialize)]
struct UsersBody {
    users: Option<Vec<Box<RawValue>>>,
    user: Option<Box<RawValue>>,
}

/// The Workspace batch-create body, as its handler reads it.
#[derive(Deserialize)]
struct CreateBody {
    users: Option<Vec<Box<RawValue>>>,
}

fn names_its_user(target: &Target) -> bool {
    match target {
        Target::Id(id) => *id > 0,
        Target::Keys(keys) => keys.len() == 1,
    }
}

fn zendesk_record(kind: JobKind, bytes: &[u8]) {
    let judged = zendesk_command(kind, bytes);
    assert_eq!(
        judged,
        record_command(kind, bytes, context()),
        "the processor judges a Zendesk record as the dialect does"
    );
    let command = match judged {
        Ok(command) => command,
        Err(errors) => {
            assert!(!errors.is_empty(), "a refused {kind:?} record says why");
            return;
        }
    };
    match kind {
        JobKind::CreateMany => {
            assert_eq!(command.intent, Intent::Create);
            assert!(
                command.patch.first_name.is_some(),
                "a created user has a name"
            );
        }
        JobKind::CreateOrUpdateMany => assert_eq!(command.intent, Intent::Upsert),
        JobKind::UpdateMany => {
            assert_eq!(command.intent, Intent::Update);
            assert!(names_its_user(&command.target), "{:?}", command.target);
        }
        JobKind::DestroyMany => {
            assert_eq!(command.intent, Intent::Delete);
            assert!(names_its_user(&command.target), "{:?}", command.target);
            assert_eq!(
                command.patch,
                UserPatch::default(),
                "a deletion changes nothing"
            );
        }
        _ => unreachable!(),
    }
}

/// `update_many?ids=…` with `{"user": {…}}`: the record of each id, as the handler builds it.
fn zendesk_update_by_ids(user: &RawValue) {
    let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(user.get()) else {
        return;
    };
    if fields.contains_key("id") {
        return;
    }
    for (field, value) in [
        ("id", Value::from(7u64)),
        ("external_id", Value::from("x-7")),
    ] {
        if fields.contains_key(field) {
            continue;
        }
        let mut record = Map::with_capacity(fields.len() + 1);
        record.insert(field.to_owned(), value);
        record.extend(fields.clone());
        let raw = serde_json::value::to_raw_value(&Value::Object(record)).expect("a record");
        zendesk_record(JobKind::UpdateMany, raw.get().as_bytes());
    }
}

/// The stored form of an accepted Workspace record: `password` replaced by `password_hash`.
fn stored_workspace_record(user: &RawValue) -> (Box<RawValue>, bool) {
    let Ok(Value::Object(mut fields)) = serde_json::from_str::<Value>(user.get()) else {
        panic!(
            "an accepted Workspace record is a JSON object: {}",
            user.get()
        );
    };
    let hashed = matches!(fields.remove("password"), Some(Value::String(_)));
    if hashed {
        fields.insert("password_hash".to_owned(), Value::from(FAKE_HASH));
    }
    let raw = serde_json::value::to_raw_value(&Value::Object(fields)).expect("a record");
    (raw, hashed)
}

fn workspace_record(user: &RawValue) {
    let bytes = user.get().as_bytes();
    let deletion = workspace_command(JobKind::WorkspaceDelete, bytes, PasswordForm::Hashed);
    match &deletion {
        Ok(command) => {
            assert_eq!(command.intent, Intent::Delete);
            assert!(matches!(command.target, Target::Id(_)));
        }
        Err(errors) => assert!(!errors.is_empty(), "a refused deletion says why"),
    }
    let stored_form = workspace_command(JobKind::WorkspaceCreate, bytes, PasswordForm::Hashed);
    if let Err(errors) = &stored_form {
        assert!(!errors.is_empty(), "a refused stored record says why");
    }
    let command: UserCommand =
        match workspace_command(JobKind::WorkspaceCreate, bytes, PasswordForm::Clear) {
            Ok(command) => command,
            Err(errors) => {
                assert!(!errors.is_empty(), "a refused Workspace record says why");
                return;
            }
        };
    assert_eq!(command.intent, Intent::Create);
    assert!(
        command.patch.password_hash.is_none(),
        "a clear record carries no hash"
    );
    let (stored, hashed) = stored_workspace_record(user);
    let processed = workspace_command(
        JobKind::WorkspaceCreate,
        stored.get().as_bytes(),
        PasswordForm::Hashed,
    );
    let mut expected = command;
    if hashed {
        expected.patch.password_hash = Some(FAKE_HASH.to_owned());
    }
    match processed {
        Ok(processed) => assert_eq!(
            processed,
            expected,
            "the stored record {} is read as the record accepted",
            stored.get()
        ),
        Err(errors) => panic!(
            "a Workspace record accepted by the API is refused once stored ({}): {errors:?}",
            stored.get()
        ),
    }
}

/// The job file of a batch, as the service writes it: the records joined into an array, with a
/// chunk offset every `rows_per_chunk` records.
fn batch_file(records: &[Box<RawValue>], rows_per_chunk: usize) -> (Vec<u8>, Vec<u64>) {
    let mut body = vec![b'['];
    let mut offsets = Vec::new();
    for (index, record) in records.iter().enumerate() {
        if index > 0 {
            body.push(b',');
        }
        if index % rows_per_chunk == 0 {
            offsets.push(body.len() as u64);
        }
        body.extend_from_slice(record.get().as_bytes());
    }
    body.push(b']');
    (body, offsets)
}

/// Every chunk of the batch's file, read from its offset, gives back the records sent.
async fn check_batch_file(records: &[Box<RawValue>], buffer: usize) {
    let rows_per_chunk = 3;
    let (file, offsets) = batch_file(records, rows_per_chunk);
    for (chunk, offset) in offsets.iter().enumerate() {
        let first_row = chunk * rows_per_chunk;
        let reader = tokio::io::BufReader::with_capacity(buffer, &file[*offset as usize..]);
        let mut array = ArrayReader::at_element(reader, *offset, first_row as u64, 64 * 1024);
        let chunk_records = records
            .iter()
            .enumerate()
            .skip(first_row)
            .take(rows_per_chunk);
        for (at, record) in chunk_records {
            let element = match array.next_element().await {
                Ok(Some(element)) => element,
                other => panic!("chunk {chunk} ended before record {at}: {other:?}"),
            };
            assert_eq!(element.index, at as u64);
            assert_eq!(element.len as usize, record.get().len());
            if let Some(bytes) = &element.bytes {
                assert_eq!(&bytes[..], record.get().as_bytes(), "record {at}");
            }
        }
        if first_row + rows_per_chunk >= records.len() {
            assert!(
                matches!(array.next_element().await, Ok(None)),
                "the file ends after its last record"
            );
        }
    }
}

/// Runs the checks on one input; panics on a violated invariant.
pub fn check(data: &[u8]) {
    let buffer = 1 + data.len() % 7;
    if let Ok(body) = serde_json::from_slice::<UsersBody>(data) {
        if let Some(users) = &body.users {
            let users = &users[..users.len().min(MAX_ZENDESK_USERS)];
            for user in users {
                for kind in ZENDESK_KINDS {
                    zendesk_record(kind, user.get().as_bytes());
                }
            }
            if !users.is_empty() {
                runtime().block_on(check_batch_file(users, buffer));
            }
        }
        if let Some(user) = &body.user {
            zendesk_update_by_ids(user);
        }
    }
    if let Ok(CreateBody { users: Some(users) }) = serde_json::from_slice::<CreateBody>(data) {
        for user in &users[..users.len().min(MAX_WORKSPACE_USERS)] {
            workspace_record(user);
        }
    }
}
