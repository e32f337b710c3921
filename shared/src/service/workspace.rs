//! The rules of a Huawei Workspace `batch-create`: the batch is taken whole or refused whole.
//! Every user's rules, keys repeated within the batch and keys other users already hold are
//! checked before anything is written; a refused batch is recorded as an `invalid_scheme` job
//! (without its passwords), an accepted one has its initial passwords hashed before it is
//! stored, then is processed like every other batch.

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{BulkService, KeyTicket, Principal, ServiceError, ServiceResult};
use crate::deadline::Deadline;
use crate::model::{JobKind, RowResult, SchemeError, UserId, UserKey};
use crate::passwords::hash_passwords;
use crate::validation::{workspace_command, PasswordForm, RepeatedKeys, RowError};

/// Users one `batch-create` may carry.
pub const MAX_USERS_PER_BATCH: usize = 200;

/// Keys of a batch are few: they never leave memory.
const BATCH_KEYS_IN_MEMORY_BYTES: usize = 1024 * 1024;

impl BulkService {
    /// Creates the users of a Workspace batch and answers the rows' results. A batch with a
    /// user that breaks a rule is refused with [`ServiceError::Invalid`], one whose keys are
    /// held already with [`ServiceError::Duplicate`]; either names the first problem and how
    /// many more there are. The retry of a request that failed midway (`ticket`) resumes its
    /// job instead. At most `max_concurrent_batch_creates` of the tenant's run at once: another
    /// is refused with [`ServiceError::TooMany`] before its users are checked.
    pub async fn create_workspace_users(
        &self,
        who: &Principal,
        users: &[Box<RawValue>],
        ticket: Option<&KeyTicket>,
        deadline: Option<Deadline>,
    ) -> ServiceResult<Vec<RowResult>> {
        if users.is_empty() || users.len() > MAX_USERS_PER_BATCH {
            return Err(ServiceError::invalid(
                "users",
                format!(
                    "users must hold 1 to {MAX_USERS_PER_BATCH} users; it holds {}",
                    users.len()
                ),
            ));
        }
        let slot = self.take_batch_create_slot(&who.tenant).await?;
        let created = self.create_users(who, users, ticket, deadline).await;
        self.free_slot(slot).await;
        created
    }

    /// [`BulkService::create_workspace_users`] with a batch of the right size, in one of the
    /// tenant's batch-create slots.
    async fn create_users(
        &self,
        who: &Principal,
        users: &[Box<RawValue>],
        ticket: Option<&KeyTicket>,
        deadline: Option<Deadline>,
    ) -> ServiceResult<Vec<RowResult>> {
        let keys = match checked_users(users) {
            Ok(keys) => keys,
            Err(errors) => return Err(self.refuse(who, users, errors, Refusal::Invalid).await),
        };
        // The retry of this very request (same key and body) after it failed midway: the
        // users it wrote exist now, so its job is resumed rather than checked again.
        if let Some(job_id) = ticket.and_then(KeyTicket::resumes) {
            return self.resume_batch(who, job_id, deadline).await;
        }
        let held = self.keys_held(who, &keys).await?;
        if !held.is_empty() {
            return Err(self.refuse(who, users, held, Refusal::Duplicate).await);
        }
        let records = with_password_hashes(users).await?;
        self.run_batch(who, JobKind::WorkspaceCreate, &records, ticket, deadline)
            .await
    }

    /// Deletes users, all or none: every id must name a live user of the tenant. The rows'
    /// results.
    pub async fn delete_workspace_users(
        &self,
        who: &Principal,
        mut ids: Vec<UserId>,
        deadline: Option<Deadline>,
    ) -> ServiceResult<Vec<RowResult>> {
        ids.sort_unstable();
        ids.dedup();
        let found = self.users_with_ids(who, &ids).await?;
        if let Some(missing) = ids
            .iter()
            .find(|id| !found.iter().any(|user| user.id == **id))
        {
            return Err(ServiceError::NotFound(format!("user {missing} not found")));
        }
        let records: Vec<Box<RawValue>> = ids
            .iter()
            .map(|id| to_raw(&serde_json::json!({ "user_id": id.to_string() })))
            .collect::<ServiceResult<_>>()?;
        self.run_batch(who, JobKind::WorkspaceDelete, &records, None, deadline)
            .await
    }

    /// The users' keys other users hold already, as errors of their rows.
    async fn keys_held(
        &self,
        who: &Principal,
        keys: &[Vec<UserKey>],
    ) -> ServiceResult<Vec<SchemeError>> {
        let wanted: Vec<UserKey> = keys.iter().flatten().cloned().collect();
        let existing = self.users_with_keys(who, &wanted).await?;
        let mut errors = Vec::new();
        for (index, held) in keys.iter().enumerate() {
            for key in held {
                if let Some(user) = existing.iter().find(|user| user.holds(key)) {
                    let message = format!(
                        "{} '{}' already exists (user {})",
                        workspace_field(key),
                        key.value(),
                        user.id
                    );
                    errors.push(key_error(index, key, message));
                }
            }
        }
        Ok(errors)
    }

    /// Records a refused batch as an `invalid_scheme` job, its users stored without passwords,
    /// and the error that answers it.
    async fn refuse(
        &self,
        who: &Principal,
        users: &[Box<RawValue>],
        errors: Vec<SchemeError>,
        refusal: Refusal,
    ) -> ServiceError {
        let answer = refusal.answer(&errors);
        let stored: ServiceResult<Vec<Box<RawValue>>> =
            users.iter().map(|user| without_password(user)).collect();
        let recorded = match stored {
            Ok(stored) => {
                self.reject_batch(who, JobKind::WorkspaceCreate, &stored, errors)
                    .await
            }
            Err(error) => Err(error),
        };
        match recorded {
            Ok(_) => answer,
            Err(error) => error,
        }
    }
}

/// Why a batch is refused as a whole.
enum Refusal {
    Invalid,
    Duplicate,
}

impl Refusal {
    /// The answer naming the first of `errors` and how many more there are.
    fn answer(&self, errors: &[SchemeError]) -> ServiceError {
        let more = match errors.len() {
            0 | 1 => String::new(),
            n => format!(" ({} more problems in this batch)", n - 1),
        };
        let first = errors.first();
        let field = first
            .and_then(|error| error.field.clone())
            .unwrap_or_else(|| "users".to_owned());
        let message = format!(
            "{}{more}",
            first.map_or("the batch was refused", |error| error.message.as_str())
        );
        match self {
            Refusal::Invalid => ServiceError::Invalid { field, message },
            Refusal::Duplicate => ServiceError::Duplicate { field, message },
        }
    }
}

/// Every user's keys, in order, when every user keeps every rule and no key is given twice;
/// else the problems, in row order (a user breaking a rule holds no key).
fn checked_users(users: &[Box<RawValue>]) -> Result<Vec<Vec<UserKey>>, Vec<SchemeError>> {
    let mut errors: Vec<SchemeError> = Vec::new();
    let mut keys: Vec<Vec<UserKey>> = Vec::with_capacity(users.len());
    for (index, user) in users.iter().enumerate() {
        let command = workspace_command(
            JobKind::WorkspaceCreate,
            user.get().as_bytes(),
            PasswordForm::Clear,
        );
        match command {
            Err(problems) => {
                errors.extend(
                    problems
                        .into_iter()
                        .map(|problem| scheme_error(index, problem)),
                );
                keys.push(Vec::new());
            }
            Ok(command) => {
                let mut held = command.patch.keys();
                held.dedup();
                keys.push(held);
            }
        }
    }
    errors.extend(repeated_keys(&keys));
    if errors.is_empty() {
        Ok(keys)
    } else {
        errors.sort_by_key(|error| error.row);
        Err(errors)
    }
}

/// Keys given again by a later user of the batch, found as repeats in a file are.
fn repeated_keys(keys: &[Vec<UserKey>]) -> Vec<SchemeError> {
    let mut seen = RepeatedKeys::new(BATCH_KEYS_IN_MEMORY_BYTES);
    let mut named = std::collections::HashMap::new();
    for (index, held) in keys.iter().enumerate() {
        for key in held {
            let text = key.to_string();
            // Within the memory budget nothing is written: adding cannot fail.
            if seen.add(index as u64, &text).is_ok() {
                named.insert(text, key.clone());
            }
        }
    }
    let Ok((repeats, _)) = seen.finish(usize::MAX) else {
        return Vec::new();
    };
    repeats
        .into_iter()
        .filter_map(|repeat| {
            let key = named.get(&repeat.key)?;
            let message = format!(
                "{} '{}' is also given for users[{}]",
                workspace_field(key),
                key.value(),
                repeat.first_row
            );
            Some(key_error(repeat.row as usize, key, message))
        })
        .collect()
}

fn scheme_error(index: usize, problem: RowError) -> SchemeError {
    let field = problem.field.as_deref().unwrap_or("user");
    SchemeError {
        message: format!("users[{index}].{field}: {}", problem.message),
        column: None,
        row: Some(index as u64 + 1),
        field: problem.field,
    }
}

fn key_error(index: usize, key: &UserKey, message: String) -> SchemeError {
    scheme_error(
        index,
        RowError {
            field: Some(workspace_field(key).to_owned()),
            column: None,
            message,
        },
    )
}

/// The Workspace name of the field a key comes from.
fn workspace_field(key: &UserKey) -> &'static str {
    match key {
        UserKey::Email(_) => "user_email",
        UserKey::UserName(_) => "user_name",
        UserKey::ExternalId(_) => "external_id",
    }
}

/// The record as stored for a refused batch: without its password.
fn without_password(user: &RawValue) -> ServiceResult<Box<RawValue>> {
    match serde_json::from_str::<Value>(user.get()) {
        Ok(Value::Object(mut fields)) => {
            fields.remove("password");
            to_raw(&Value::Object(fields))
        }
        _ => Ok(user.to_owned()),
    }
}

/// The records as stored for processing: `password` replaced by `password_hash`.
async fn with_password_hashes(users: &[Box<RawValue>]) -> ServiceResult<Vec<Box<RawValue>>> {
    let mut records: Vec<Map<String, Value>> = Vec::with_capacity(users.len());
    let mut passwords = Vec::new();
    for user in users {
        let Ok(Value::Object(mut fields)) = serde_json::from_str::<Value>(user.get()) else {
            return Err(ServiceError::invalid(
                "users",
                "each user must be a JSON object",
            ));
        };
        if let Some(Value::String(password)) = fields.remove("password") {
            passwords.push((records.len(), password));
        }
        records.push(fields);
    }
    let (positions, clear): (Vec<usize>, Vec<String>) = passwords.into_iter().unzip();
    let hashes = hash_passwords(clear)
        .await
        .map_err(ServiceError::Internal)?;
    for (at, hash) in positions.into_iter().zip(hashes) {
        records[at].insert("password_hash".to_owned(), Value::from(hash));
    }
    records
        .into_iter()
        .map(|fields| to_raw(&Value::Object(fields)))
        .collect()
}

fn to_raw(value: &Value) -> ServiceResult<Box<RawValue>> {
    serde_json::value::to_raw_value(value)
        .map_err(|error| ServiceError::Internal(format!("a record could not be written: {error}")))
}
