//! The adapters under contract, and the values the contracts are written with.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use bulk_tests::moto::{fresh_aws_on, Serving};
use bulk_users::adapters::aws::AwsAdapters;
use bulk_users::adapters::embedded::SqliteWorkQueue;
use bulk_users::auth::Vault;
use bulk_users::model::{
    ChunkPlan, ChunkResult, ErrorType, Job, JobKind, JobStatus, NewJob, RowAction, RowResult,
    SaveOutcome, SchemeError, SchemeReport, StatusChange, StatusChanged, TenantId, Timestamp,
    UpdateError, User, UserChange, UserFilter, WorkItem,
};
use bulk_users::ports::{JobStore, PageRequest, Ports, UserStore};
use bulk_users::service::{BulkService, ServiceConfig};

/// One adapter set's ports, and what the contracts need of the adapter behind a port that
/// only writes (the work queue).
pub struct Adapters {
    pub ports: Ports,
    backing: Backing,
}

/// The storage behind the adapters, for what a contract checks beyond its port.
pub enum Raw<'a> {
    Sqlite(rusqlite::Connection),
    Dynamo(&'a AwsAdapters),
}

impl Raw<'_> {
    /// Every DynamoDB item of partition `pk`.
    pub async fn items(&self, pk: &str) -> Vec<HashMap<String, AttributeValue>> {
        let Raw::Dynamo(aws) = self else {
            panic!("DynamoDB items of an embedded store")
        };
        let out = aws
            .dynamodb
            .query()
            .table_name(&aws.settings.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(pk.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .unwrap();
        out.items.unwrap_or_default()
    }

    /// The number of rows of `table` matching `condition` (SQL).
    pub fn count(&self, table: &str, condition: &str) -> u64 {
        let Raw::Sqlite(conn) = self else {
            panic!("SQLite rows of the AWS store")
        };
        conn.query_row(
            &format!("SELECT count(*) FROM {table} WHERE {condition}"),
            [],
            |row| row.get(0),
        )
        .unwrap()
    }
}

enum Backing {
    Embedded {
        queue: SqliteWorkQueue,
        _data_dir: tempfile::TempDir,
    },
    Aws(Box<AwsAdapters>),
}

impl Adapters {
    /// The embedded adapters over a fresh data directory.
    pub async fn embedded() -> Adapters {
        let data_dir = tempfile::tempdir().unwrap();
        let adapters = bulk_users::adapters::embedded::open(data_dir.path())
            .await
            .unwrap();
        Adapters {
            ports: adapters.ports,
            backing: Backing::Embedded {
                queue: adapters.queue,
                _data_dir: data_dir,
            },
        }
    }

    /// The AWS adapters over a fresh table, bucket and queue on the emulator.
    pub async fn aws(serving: Serving, name: &str) -> Adapters {
        let aws = fresh_aws_on(serving, name).await;
        Adapters {
            ports: aws.ports.clone(),
            backing: Backing::Aws(Box::new(aws)),
        }
    }

    /// The domain's use of the adapters' keyring.
    pub fn vault(&self) -> Vault {
        Vault::new(self.ports.keyring.clone())
    }

    /// The service over these ports.
    pub fn service(&self) -> BulkService {
        BulkService::new(self.ports.clone(), ServiceConfig::default())
    }

    /// The same store as another process opens it: adapters of their own, nothing of this
    /// process's memory (the keyring's versions and keys read again).
    pub async fn another_process(&self) -> Ports {
        match &self.backing {
            Backing::Embedded { _data_dir, .. } => {
                bulk_users::adapters::embedded::open(_data_dir.path())
                    .await
                    .unwrap()
                    .ports
            }
            Backing::Aws(aws) => {
                AwsAdapters::from_clients(
                    aws.dynamodb.clone(),
                    aws.s3.clone(),
                    aws.sqs.clone(),
                    aws.kms.clone(),
                    aws.settings.clone(),
                )
                .ports
            }
        }
    }

    /// What the store keeps, read beside the port: the SQLite database of the embedded
    /// adapters, or the DynamoDB items of the AWS ones.
    pub fn raw(&self) -> Raw<'_> {
        match &self.backing {
            Backing::Embedded { _data_dir, .. } => Raw::Sqlite(
                rusqlite::Connection::open(_data_dir.path().join("bulk.sqlite3")).unwrap(),
            ),
            Backing::Aws(aws) => Raw::Dynamo(aws),
        }
    }

    /// The work items the queue delivers to its consumer, `expected` of them at most, in
    /// chunk order.
    pub async fn delivered_work(&self, expected: usize) -> Vec<WorkItem> {
        let mut delivered = Vec::new();
        for _ in 0..20 {
            if delivered.len() >= expected {
                break;
            }
            match &self.backing {
                Backing::Embedded { queue, .. } => {
                    for leased in queue.lease(10, Duration::from_secs(60)).await.unwrap() {
                        delivered.push(leased.item);
                    }
                }
                Backing::Aws(aws) => {
                    let received = aws
                        .sqs
                        .receive_message()
                        .queue_url(&aws.settings.queue_url)
                        .max_number_of_messages(10)
                        .wait_time_seconds(1)
                        .send()
                        .await
                        .unwrap();
                    for message in received.messages() {
                        delivered.push(serde_json::from_str(message.body().unwrap()).unwrap());
                    }
                }
            }
        }
        delivered.sort_by_key(|item: &WorkItem| item.chunk);
        delivered
    }
}

pub fn tenant(name: &str) -> TenantId {
    TenantId::parse(name).unwrap()
}

pub fn at(seconds: i64) -> Timestamp {
    Timestamp::from_unix_millis(1_700_000_000_000 + seconds * 1_000).unwrap()
}

pub fn page(page: u64, per_page: u64) -> PageRequest {
    PageRequest { page, per_page }
}

pub fn new_job(tenant: &TenantId, file_key: &str) -> NewJob {
    NewJob {
        tenant: tenant.clone(),
        kind: JobKind::Upload,
        filename: "users.json".to_owned(),
        file_key: file_key.to_owned(),
        file_bytes: 123,
        uploaded_api_user_name: "uploader".to_owned(),
        created_at: at(0),
        keep_until: kept(),
    }
}

/// A `keep_until` a year from now: the contracts' jobs are created at fixed times long past,
/// and are kept all the same.
pub fn kept() -> Timestamp {
    Timestamp::now().plus_seconds(365 * 24 * 3600)
}

pub fn scheme_error(row: Option<u64>, message: &str) -> SchemeError {
    SchemeError {
        message: message.to_owned(),
        column: Some(2),
        row,
        field: Some("email".to_owned()),
    }
}

pub fn plan(chunks: u64, rows_per_chunk: u64) -> ChunkPlan {
    ChunkPlan {
        rows_per_chunk,
        offsets: (0..chunks).map(|i| 1 + i * 100).collect(),
    }
}

pub fn valid_report(chunks: u64) -> SchemeReport {
    SchemeReport {
        total_rows: chunks * 10,
        errors: Vec::new(),
        error_count: 0,
        chunk_plan: plan(chunks, 10),
        file_version: None,
    }
}

pub fn update_error(row: u64, message: &str, error_type: ErrorType) -> UpdateError {
    UpdateError {
        message: message.to_owned(),
        column: None,
        row,
        field: None,
        error_type,
    }
}

/// Chunk `chunk` of acme's job `job_id`: 10 rows, one failed row per error, committed at
/// `at(100 + chunk)`.
pub fn chunk(job_id: u64, chunk: u32, errors: Vec<UpdateError>) -> ChunkResult {
    ChunkResult {
        tenant: tenant("acme"),
        job_id,
        keep_until: kept(),
        chunk,
        affected_rows: 10 - errors.len() as u64,
        failed_rows: errors.len() as u64,
        errors,
        results: Vec::new(),
        at: at(100 + i64::from(chunk)),
    }
}

pub fn row_result(index: u64, action: RowAction, details: &str) -> RowResult {
    RowResult {
        index,
        action,
        user_id: (action != RowAction::Failed).then_some(index + 1000),
        email: Some(format!("user{index}@example.com")),
        external_id: None,
        error: (action == RowAction::Failed).then(|| "InvalidValue".to_owned()),
        details: (!details.is_empty()).then(|| details.to_owned()),
        field: None,
    }
}

/// A job of `tenant` validated with `chunks` chunks and started at `at(3)`.
pub async fn started_job(jobs: &Arc<dyn JobStore>, tenant: &TenantId, chunks: u64) -> Job {
    let job = jobs
        .create_job(new_job(tenant, "files/started"))
        .await
        .unwrap();
    let job = jobs
        .record_scheme_report(
            tenant,
            job.id,
            "files/started",
            &valid_report(chunks),
            at(2),
        )
        .await
        .unwrap();
    assert_eq!(job.status, JobStatus::ValidScheme);
    match jobs
        .change_status(tenant, job.id, &proceed("proceeder"), at(3))
        .await
        .unwrap()
    {
        StatusChanged::Changed(job) => job,
        other => panic!("not started: {other:?}"),
    }
}

/// A proceed asked by `by`.
pub fn proceed(by: &str) -> StatusChange {
    StatusChange::Proceed { by: by.to_owned() }
}

/// The whole scheme error log of the tenant's job `id` (none for another tenant's job).
pub async fn scheme_errors_of(
    jobs: &Arc<dyn JobStore>,
    tenant: &TenantId,
    id: u64,
) -> Vec<SchemeError> {
    match jobs.get_job(tenant, id).await.unwrap() {
        Some(job) => jobs.scheme_errors(&job, page(1, u64::MAX)).await.unwrap(),
        None => Vec::new(),
    }
}

/// The update error log of the tenant's job `id`, read `per_page` entries at a time.
pub async fn update_errors_of(
    jobs: &Arc<dyn JobStore>,
    tenant: &TenantId,
    id: u64,
    per_page: u64,
) -> Vec<UpdateError> {
    let Some(job) = jobs.get_job(tenant, id).await.unwrap() else {
        return Vec::new();
    };
    let mut all = Vec::new();
    for number in 1.. {
        let got = jobs
            .update_errors(&job, page(number, per_page))
            .await
            .unwrap();
        assert!(got.len() as u64 <= per_page);
        if got.is_empty() {
            break;
        }
        all.extend(got);
    }
    all
}

/// A new user (version 1) with an email and maybe an agent number.
pub fn user(id: u64, email: &str, agent_number: Option<&str>) -> User {
    let mut user = User::new(id, at(1));
    user.version = 1;
    user.email = Some(email.to_owned());
    user.agent_number = agent_number.map(str::to_owned);
    user.first_name = format!("First{id}");
    user.last_name = "Last".to_owned();
    user.max_chat_limit = Some(3);
    user.max_chat_limit_enabled = true;
    user.roles = vec!["Agent".to_owned()];
    user
}

/// The creation of a user.
pub fn create(user: &User) -> UserChange {
    UserChange {
        before: None,
        after: user.clone(),
    }
}

/// An edit of a stored user, one version up.
pub fn edit(before: &User, change: impl FnOnce(&mut User)) -> UserChange {
    let mut after = before.clone();
    change(&mut after);
    after.version = before.version + 1;
    after.updated_at = at(2);
    UserChange {
        before: Some(before.clone()),
        after,
    }
}

pub fn ids(users: &[User]) -> Vec<u64> {
    users.iter().map(|user| user.id).collect()
}

pub async fn save(
    users: &dyn UserStore,
    tenant: &TenantId,
    changes: &[UserChange],
) -> Vec<SaveOutcome> {
    users.save_users(tenant, changes).await.unwrap()
}

/// The tenant's live users, all of them, and their total.
pub async fn listed(users: &dyn UserStore, tenant: &TenantId) -> (Vec<u64>, u64) {
    let (found, total) = users
        .list_users(tenant, &UserFilter::default(), page(1, 1000).into())
        .await
        .unwrap();
    (ids(&found), total)
}
