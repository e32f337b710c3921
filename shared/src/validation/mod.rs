//! The one validation path. Upload ("scheme") validation, the processor and every other door a
//! user record comes in by judge a record with these functions.

mod command;
mod fields;
mod file;
mod repeats;
pub use repeats::RepeatedKeys;
mod row;
mod workspace;
mod zendesk;

pub use command::{Intent, Target, UserCommand, UserPatch};
pub use file::{validate_file, validate_job_file, FileValidation};
pub use row::{check_row, validate_row, Patch, RowError, UserRow, UserStatus, ValidationContext};
pub use workspace::{workspace_command, PasswordForm, MAX_USER_NAME_CHARS};
pub use zendesk::zendesk_command;

use crate::model::JobKind;

/// Judges one record of a job of `kind`, as stored in the job's file: the one entry point the
/// processor uses for every dialect.
pub fn record_command(
    kind: JobKind,
    bytes: &[u8],
    context: &ValidationContext,
) -> Result<UserCommand, Vec<RowError>> {
    match kind {
        JobKind::Upload => validate_row(bytes, context).map(UserRow::into_command),
        JobKind::CreateMany
        | JobKind::CreateOrUpdateMany
        | JobKind::UpdateMany
        | JobKind::DestroyMany => zendesk_command(kind, bytes),
        JobKind::WorkspaceCreate | JobKind::WorkspaceDelete => {
            workspace_command(kind, bytes, PasswordForm::Hashed)
        }
    }
}

/// The fields of a CCAI user record in the template's layout; a field's column is its 1-based
/// position in this list.
pub const FIELDS: [&str; 11] = [
    "email",
    "new_email",
    "agent_number",
    "first_name",
    "last_name",
    "status",
    "location",
    "max_chat_limit",
    "max_chat_limit_enabled",
    "roles",
    "teams",
];

/// Fields that "get user configuration data" returns but an upload cannot set; a file exported
/// from it may carry them and they are ignored.
pub const READ_ONLY_FIELDS: [&str; 4] = ["id", "deactivated_at", "created_at", "updated_at"];

/// The template column of a field.
pub fn column_of(field: &str) -> Option<u32> {
    FIELDS
        .iter()
        .position(|f| *f == field)
        .map(|index| index as u32 + 1)
}

/// Longest accepted value of the free-text fields, in characters.
pub const MAX_EMAIL_CHARS: usize = 254;
pub const MAX_NAME_CHARS: usize = 100;
pub const MAX_AGENT_NUMBER_CHARS: usize = 50;
