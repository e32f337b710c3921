//! The database schema, versioned with `PRAGMA user_version`.

use rusqlite::{Connection, TransactionBehavior};

use crate::ports::{StoreError, StoreResult};

/// Migration `i` brings the schema from version `i` to version `i + 1`.
pub(super) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE jobs (
    id                     INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant                 TEXT NOT NULL,
    status                 TEXT NOT NULL,
    filename               TEXT NOT NULL,
    file_key               TEXT NOT NULL,
    file_bytes             INTEGER NOT NULL,
    created_at             INTEGER NOT NULL,
    updated_at             INTEGER NOT NULL,
    process_requested_at   INTEGER,
    completed_at           INTEGER,
    total_rows             INTEGER NOT NULL DEFAULT 0,
    affected_rows          INTEGER NOT NULL DEFAULT 0,
    failed_rows            INTEGER NOT NULL DEFAULT 0,
    scheme_error_count     INTEGER NOT NULL DEFAULT 0,
    update_error_count     INTEGER NOT NULL DEFAULT 0,
    uploaded_api_user_name TEXT NOT NULL,
    proceed_api_user_name  TEXT,
    chunk_plan             TEXT NOT NULL,
    chunks_done            INTEGER NOT NULL DEFAULT 0,
    failure_reason         TEXT
);
CREATE INDEX jobs_by_tenant ON jobs (tenant, id);

CREATE TABLE scheme_errors (
    job_id    INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq       INTEGER NOT NULL,
    message   TEXT NOT NULL,
    column_no INTEGER,
    row_no    INTEGER,
    field     TEXT,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;

CREATE TABLE job_chunks (
    job_id       INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    chunk        INTEGER NOT NULL,
    committed_at INTEGER NOT NULL,
    PRIMARY KEY (job_id, chunk)
) WITHOUT ROWID;

CREATE TABLE update_errors (
    job_id     INTEGER NOT NULL,
    chunk      INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    message    TEXT NOT NULL,
    column_no  INTEGER,
    row_no     INTEGER NOT NULL,
    field      TEXT,
    error_type TEXT NOT NULL,
    PRIMARY KEY (job_id, chunk, seq),
    FOREIGN KEY (job_id, chunk) REFERENCES job_chunks (job_id, chunk) ON DELETE CASCADE
) WITHOUT ROWID;
CREATE INDEX update_errors_by_row ON update_errors (job_id, row_no, chunk, seq);

CREATE TABLE users (
    tenant       TEXT NOT NULL,
    email_key    TEXT NOT NULL,
    id           INTEGER NOT NULL,
    agent_number TEXT,
    body         TEXT NOT NULL,
    PRIMARY KEY (tenant, email_key)
) WITHOUT ROWID;
CREATE UNIQUE INDEX users_by_id ON users (tenant, id);
CREATE INDEX users_by_agent_number ON users (tenant, agent_number);

CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    next INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE tenant_settings (
    tenant TEXT PRIMARY KEY,
    body   TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE credentials (
    tenant        TEXT NOT NULL,
    key_id        TEXT NOT NULL,
    name          TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL,
    revoked       INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (tenant, key_id)
) WITHOUT ROWID;

CREATE TABLE work_queue (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    body          TEXT NOT NULL,
    enqueued_at   INTEGER NOT NULL,
    visible_at    INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX work_queue_by_visibility ON work_queue (visible_at, id);
"#,
    // 1: users keyed by id with unique email / external id / user name; job kinds and results.
    // A key column is NULL when the user lacks the key or is deleted (NULLs never collide).
    // Old bodies (email a string, no version) read as version-0 users with `Some(email)`.
    r#"
ALTER TABLE users RENAME TO users_v1;

CREATE TABLE users (
    tenant       TEXT NOT NULL,
    id           INTEGER NOT NULL,
    email_key    TEXT,
    external_key TEXT,
    name_key     TEXT,
    agent_number TEXT,
    version      INTEGER NOT NULL,
    deleted      INTEGER NOT NULL DEFAULT 0,
    body         TEXT NOT NULL,
    PRIMARY KEY (tenant, id)
) WITHOUT ROWID;
INSERT INTO users (tenant, id, email_key, agent_number, version, deleted, body)
    SELECT tenant, id, email_key, agent_number, 0, 0, body FROM users_v1;
DROP TABLE users_v1;
CREATE UNIQUE INDEX users_by_email ON users (tenant, email_key);
CREATE UNIQUE INDEX users_by_external_id ON users (tenant, external_key);
CREATE UNIQUE INDEX users_by_user_name ON users (tenant, name_key);
CREATE INDEX users_by_agent_number ON users (tenant, agent_number);
CREATE INDEX users_live ON users (tenant, deleted, id);

ALTER TABLE jobs ADD COLUMN kind TEXT NOT NULL DEFAULT 'upload';
ALTER TABLE job_chunks ADD COLUMN results TEXT;
"#,
    // 2: credentials with sealed secrets and a global look-up by key id and by secret.
    //
    // Key ids become unique across tenants (a key id is the access key of signed requests) and
    // secrets are kept sealed under the master key instead of as SHA-256 digests. The old rows
    // cannot be converted, since their secrets are unknown: they are dropped, and their holders
    // need new credentials (the local server re-seeds its own on start).
    r#"
DROP TABLE credentials;
CREATE TABLE credentials (
    key_id        TEXT PRIMARY KEY,
    tenant        TEXT NOT NULL,
    name          TEXT NOT NULL,
    sealed_secret TEXT NOT NULL,
    secret_lookup TEXT NOT NULL,
    revoked       INTEGER NOT NULL,
    created_at    INTEGER NOT NULL
) WITHOUT ROWID;
CREATE UNIQUE INDEX credentials_by_secret_lookup ON credentials (secret_lookup);
CREATE INDEX credentials_by_tenant ON credentials (tenant, created_at, key_id);
"#,
    // 3: requests remembered under clients' idempotency keys; each tenant's request count in
    // the current rate window; the jobs in progress, counted against a tenant's concurrency.
    r#"
CREATE TABLE idempotency_keys (
    tenant      TEXT NOT NULL,
    key         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    claim_id    TEXT NOT NULL,
    claimed_at  INTEGER NOT NULL,
    answer      TEXT,
    job_id      INTEGER,
    PRIMARY KEY (tenant, key)
) WITHOUT ROWID;

CREATE TABLE request_counts (
    tenant TEXT PRIMARY KEY,
    window INTEGER NOT NULL,
    count  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX jobs_in_progress ON jobs (tenant) WHERE status = 'in_progress';
"#,
    // 4: how often the sweeper resumed a job, so that it gives up on one after a few times.
    r#"
ALTER TABLE jobs ADD COLUMN resumptions INTEGER NOT NULL DEFAULT 0;
"#,
    // 5: each job's place among its tenant's jobs, so that a page of the job list is a range
    // of ordinals (and the count the largest one) rather than an offset scanned to.
    r#"
ALTER TABLE jobs ADD COLUMN ordinal INTEGER NOT NULL DEFAULT 0;
UPDATE jobs SET ordinal = (SELECT COUNT(*) FROM jobs AS earlier
    WHERE earlier.tenant = jobs.tenant AND earlier.id <= jobs.id);
CREATE UNIQUE INDEX jobs_by_ordinal ON jobs (tenant, ordinal);
"#,
    // 6: admission control: failed authentications per client address in the current rate
    // window, and leases on each tenant's slots of capped work (Huawei batch-creates).
    r#"
CREATE TABLE failed_authentications (
    source TEXT PRIMARY KEY,
    window INTEGER NOT NULL,
    count  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE slot_leases (
    tenant TEXT NOT NULL,
    name   TEXT NOT NULL,
    slot   INTEGER NOT NULL,
    holder TEXT NOT NULL,
    until  INTEGER NOT NULL,
    PRIMARY KEY (tenant, name, slot)
) WITHOUT ROWID;
"#,
    // 7: job ids numbered per tenant, and how long each job is kept.
    //
    // A job is keyed by (tenant, id), and so are its scheme errors, chunks and update errors.
    // Existing jobs keep their ids (unique across tenants, so unique within theirs): links,
    // queued work and the users' change stamps naming them stay valid. Each tenant's next id
    // comes from its counter `jobs:{tenant}`, which starts after its largest id and never goes
    // back, so an id is never given twice even once its job has expired. Existing jobs are
    // kept the default retention (30 days) from their last change; an index on `keep_until`
    // finds the expired ones to purge, and one on `claimed_at` the expired idempotency records.
    r#"
CREATE TABLE jobs_v7 (
    tenant                 TEXT NOT NULL,
    id                     INTEGER NOT NULL,
    kind                   TEXT NOT NULL DEFAULT 'upload',
    status                 TEXT NOT NULL,
    filename               TEXT NOT NULL,
    file_key               TEXT NOT NULL,
    file_bytes             INTEGER NOT NULL,
    created_at             INTEGER NOT NULL,
    updated_at             INTEGER NOT NULL,
    process_requested_at   INTEGER,
    completed_at           INTEGER,
    total_rows             INTEGER NOT NULL DEFAULT 0,
    affected_rows          INTEGER NOT NULL DEFAULT 0,
    failed_rows            INTEGER NOT NULL DEFAULT 0,
    scheme_error_count     INTEGER NOT NULL DEFAULT 0,
    update_error_count     INTEGER NOT NULL DEFAULT 0,
    uploaded_api_user_name TEXT NOT NULL,
    proceed_api_user_name  TEXT,
    chunk_plan             TEXT NOT NULL,
    chunks_done            INTEGER NOT NULL DEFAULT 0,
    failure_reason         TEXT,
    resumptions            INTEGER NOT NULL DEFAULT 0,
    ordinal                INTEGER NOT NULL,
    keep_until             INTEGER NOT NULL,
    PRIMARY KEY (tenant, id)
) WITHOUT ROWID;
INSERT INTO jobs_v7 (tenant, id, kind, status, filename, file_key, file_bytes, created_at,
    updated_at, process_requested_at, completed_at, total_rows, affected_rows, failed_rows,
    scheme_error_count, update_error_count, uploaded_api_user_name, proceed_api_user_name,
    chunk_plan, chunks_done, failure_reason, resumptions, ordinal, keep_until)
    SELECT tenant, id, kind, status, filename, file_key, file_bytes, created_at,
    updated_at, process_requested_at, completed_at, total_rows, affected_rows, failed_rows,
    scheme_error_count, update_error_count, uploaded_api_user_name, proceed_api_user_name,
    chunk_plan, chunks_done, failure_reason, resumptions, ordinal, updated_at + 2592000000
    FROM jobs;

CREATE TABLE scheme_errors_v7 (
    tenant    TEXT NOT NULL,
    job_id    INTEGER NOT NULL,
    seq       INTEGER NOT NULL,
    message   TEXT NOT NULL,
    column_no INTEGER,
    row_no    INTEGER,
    field     TEXT,
    PRIMARY KEY (tenant, job_id, seq),
    FOREIGN KEY (tenant, job_id) REFERENCES jobs_v7 (tenant, id) ON DELETE CASCADE
) WITHOUT ROWID;
INSERT INTO scheme_errors_v7
    SELECT j.tenant, e.job_id, e.seq, e.message, e.column_no, e.row_no, e.field
    FROM scheme_errors e JOIN jobs j ON j.id = e.job_id;

CREATE TABLE job_chunks_v7 (
    tenant       TEXT NOT NULL,
    job_id       INTEGER NOT NULL,
    chunk        INTEGER NOT NULL,
    committed_at INTEGER NOT NULL,
    results      TEXT,
    PRIMARY KEY (tenant, job_id, chunk),
    FOREIGN KEY (tenant, job_id) REFERENCES jobs_v7 (tenant, id) ON DELETE CASCADE
) WITHOUT ROWID;
INSERT INTO job_chunks_v7
    SELECT j.tenant, c.job_id, c.chunk, c.committed_at, c.results
    FROM job_chunks c JOIN jobs j ON j.id = c.job_id;

CREATE TABLE update_errors_v7 (
    tenant     TEXT NOT NULL,
    job_id     INTEGER NOT NULL,
    chunk      INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    message    TEXT NOT NULL,
    column_no  INTEGER,
    row_no     INTEGER NOT NULL,
    field      TEXT,
    error_type TEXT NOT NULL,
    PRIMARY KEY (tenant, job_id, chunk, seq),
    FOREIGN KEY (tenant, job_id, chunk) REFERENCES job_chunks_v7 (tenant, job_id, chunk)
        ON DELETE CASCADE
) WITHOUT ROWID;
INSERT INTO update_errors_v7
    SELECT j.tenant, u.job_id, u.chunk, u.seq, u.message, u.column_no, u.row_no, u.field,
    u.error_type
    FROM update_errors u JOIN jobs j ON j.id = u.job_id;

INSERT INTO counters (name, next)
    SELECT 'jobs:' || tenant, MAX(id) + 1 FROM jobs GROUP BY tenant;

DROP TABLE update_errors;
DROP TABLE job_chunks;
DROP TABLE scheme_errors;
DROP TABLE jobs;
ALTER TABLE jobs_v7 RENAME TO jobs;
ALTER TABLE scheme_errors_v7 RENAME TO scheme_errors;
ALTER TABLE job_chunks_v7 RENAME TO job_chunks;
ALTER TABLE update_errors_v7 RENAME TO update_errors;

CREATE UNIQUE INDEX jobs_by_ordinal ON jobs (tenant, ordinal);
CREATE INDEX jobs_in_progress ON jobs (tenant) WHERE status = 'in_progress';
CREATE INDEX jobs_by_expiry ON jobs (keep_until);
CREATE INDEX update_errors_by_row ON update_errors (tenant, job_id, row_no, chunk, seq);
CREATE INDEX idempotency_keys_by_claim ON idempotency_keys (claimed_at);
"#,
    // 8: deleted users keep no personal data. A tombstone keeps what uniqueness and audit need
    // (User::delete): its id, version, created_at, updated_at, deleted_at and the job row that
    // deleted it (last_change); every other field of the body is cleared, and so are its key
    // and agent number columns.
    r#"
UPDATE users SET
    email_key = NULL, external_key = NULL, name_key = NULL, agent_number = NULL,
    body = json_object(
        'id', id, 'version', version, 'email', NULL, 'first_name', '', 'last_name', '',
        'agent_number', NULL, 'location', NULL, 'max_chat_limit', NULL,
        'max_chat_limit_enabled', json('false'), 'roles', json('[]'), 'teams', json('[]'),
        'deactivated_at', NULL,
        'created_at', json_extract(body, '$.created_at'),
        'updated_at', json_extract(body, '$.updated_at'),
        'deleted_at', json_extract(body, '$.deleted_at'),
        'last_change', json(json_extract(body, '$.last_change')))
    WHERE deleted = 1;
"#,
    // 9: the version of its file a job validated, which every read of the file asks for.
    // Jobs validated before have none and read their file as it is.
    r#"
ALTER TABLE jobs ADD COLUMN file_version TEXT;
"#,
];

/// Applies the migrations the database has not seen yet, each in its own transaction (taken
/// before reading the version, so two processes opening a new database do not both migrate it).
pub(super) fn migrate(conn: &mut Connection) -> StoreResult<()> {
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version: usize = tx.query_row("PRAGMA user_version", [], |row| row.get(0))?;
        let Some(migration) = MIGRATIONS.get(version) else {
            if version > MIGRATIONS.len() {
                return Err(StoreError::Corrupt(format!(
                    "the database schema version {version} is newer than this program's ({})",
                    MIGRATIONS.len()
                )));
            }
            return Ok(());
        };
        tx.execute_batch(migration)?;
        tx.pragma_update(None, "user_version", version + 1)?;
        tx.commit()?;
    }
}

/// A database migrated up to `version` only, as an older program left it.
#[cfg(test)]
pub(super) fn database_at_version(path: &std::path::Path, version: usize) -> Connection {
    let conn = Connection::open(path).unwrap();
    for migration in &MIGRATIONS[..version] {
        conn.execute_batch(migration).unwrap();
    }
    conn.pragma_update(None, "user_version", version).unwrap();
    conn
}
