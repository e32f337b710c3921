//! Whole jobs survive kills of the processor: a job run while the `bulk-local` process is
//! killed (SIGKILL, no clean shutdown) several times in the middle of its chunks ends with the
//! same users, the same update error log and the same counts as the same job run without a
//! crash — no row lost, none applied twice, none counted twice — and leaves nothing queued.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use bulk_tests::local_server::LocalServer;
use bulk_tests::steps::{text, wait_for, LocalClient};
use bulk_users::model::{TenantId, User, UserFilter};
use bulk_users::ports::{PageRequest, Ports};
use reqwest::StatusCode;
use serde_json::{json, Value};

const TENANT: &str = "acme";
const SECRET: &str = "crash-test-secret";

/// Rows of the main job. The first half updates the users the setup job created, the second
/// half creates users; in the dev profile on two cores this takes several seconds to process,
/// long enough to kill the process a few times in the middle.
const ROWS: usize = 20_000;
const HALF: usize = ROWS / 2;
/// Small chunks, so the job has many (200), each of several batches, so a kill usually lands
/// inside a chunk with some of its batches saved and the chunk not yet committed.
const ROWS_PER_CHUNK: usize = 100;
const BATCH_ROWS: usize = 20;
/// Rows that fail when processed: renames of users that do not exist (the update error log
/// gets one error each). Spread over both halves, the first and the last row included.
const FAILING: [usize; 7] = [0, 1_234, 5_000, 9_999, 10_000, 15_555, ROWS - 1];

/// When the crash run kills the process: each time the job has processed at least the next
/// of these shares of its rows, plus a pseudo-random 0–5 % (and at least one more chunk than
/// at the kill before), and then a pseudo-random 5–40 ms more, a fraction of a chunk, so the
/// kill lands inside chunks rather than just after a commit. The kills spread over the whole
/// job, so they land in updates and in creations, and the last one well before the end.
const KILL_AT_PERCENT: [u64; 5] = [5, 25, 45, 62, 78];
const AFTER_TARGET_MS: std::ops::Range<u64> = 5..40;
/// Should no kill have interrupted a chunk of updates, or none a chunk of creations, the
/// crash run kills again every 2 % of the rows until one has, at most this many kills in all.
const MAX_KILLS: usize = 10;
const EXTRA_KILL_EVERY_PERCENT: u64 = 2;
const SEED: u64 = 0x00c0_ffee_d00d_2024;

fn start(dir: &Path) -> LocalServer {
    let (chunk, batch) = (ROWS_PER_CHUNK.to_string(), BATCH_ROWS.to_string());
    let env = [
        ("BULK_LOCAL_TENANT", TENANT),
        ("BULK_LOCAL_SECRET", SECRET),
        ("BULK_ROWS_PER_CHUNK", chunk.as_str()),
        ("BULK_BATCH_ROWS", batch.as_str()),
    ];
    LocalServer::start(dir, &env)
}

/// The embedded store of a server's data directory.
async fn open(dir: &Path) -> bulk_users::adapters::embedded::EmbeddedAdapters {
    let store = bulk_users::adapters::embedded::open(dir).await;
    store.expect("open the store")
}

/// The setup job: users `0..HALF`, each with an agent number, a location, a role and a team.
fn setup_file() -> String {
    let rows: Vec<String> = (0..HALF)
        .map(|i| {
            json!({
                "email": format!("user{i}@example.com"),
                "agent_number": format!("{}", 100_000 + i),
                "first_name": format!("First{i}"),
                "last_name": format!("Last{i}"),
                "location": "Remote",
                "max_chat_limit": 3,
                "max_chat_limit_enabled": 1,
                "roles": [{"name": "Agent", "value": 1}],
                "teams": [{"name": "Sales", "value": 1}],
            })
            .to_string()
        })
        .collect();
    format!("[{}]", rows.join(",\n"))
}

/// What row `p` (0-based) of the main job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RowKind {
    /// A rename of a user that does not exist: fails.
    Fails,
    /// Renames user `p` to `renamed{p}@example.com`.
    Renames,
    /// Names `former{p}@example.com`, which does not exist, renamed to user `p`'s email: as if
    /// the rename had been done before, the row is applied to user `p` with a warning.
    Warns,
    /// Changes names, status, roles, teams, location, chat limit and agent number of user `p`.
    Updates,
    /// Creates user `p`.
    Creates,
}

/// The main job of a test: every how many rows of the first half one is a [`RowKind::Warns`]
/// row (none when `None`).
#[derive(Debug, Clone, Copy)]
struct Scenario {
    warn_every: Option<usize>,
}

impl Scenario {
    fn row_kind(self, p: usize) -> RowKind {
        if FAILING.contains(&p) {
            RowKind::Fails
        } else if p >= HALF {
            RowKind::Creates
        } else if p % 400 == 13 {
            RowKind::Renames
        } else if self.warn_every.is_some_and(|every| p % every == every - 3) {
            RowKind::Warns
        } else {
            RowKind::Updates
        }
    }

    fn main_file(self) -> String {
        let rows: Vec<String> = (0..ROWS)
            .map(|p| main_row(p, self.row_kind(p)).to_string())
            .collect();
        format!("[{}]", rows.join(",\n"))
    }

    /// The emails the main job leaves, sorted.
    fn expected_emails(self) -> Vec<String> {
        let mut emails: Vec<String> = (0..ROWS)
            .filter_map(|p| match self.row_kind(p) {
                RowKind::Fails if p < HALF => Some(format!("user{p}@example.com")),
                RowKind::Fails => None,
                RowKind::Renames => Some(format!("renamed{p}@example.com")),
                RowKind::Warns | RowKind::Updates | RowKind::Creates => {
                    Some(format!("user{p}@example.com"))
                }
            })
            .collect();
        emails.sort_unstable();
        emails
    }
}

fn main_row(p: usize, kind: RowKind) -> Value {
    match kind {
        RowKind::Fails => json!({
            "email": format!("ghost{p}@example.com"),
            "new_email": format!("moved{p}@example.com"),
            "first_name": "Ghost",
            "last_name": format!("Row{p}"),
        }),
        RowKind::Renames => json!({
            "email": format!("user{p}@example.com"),
            "new_email": format!("renamed{p}@example.com"),
            "first_name": format!("Renamed{p}"),
            "last_name": format!("Last{p}"),
        }),
        RowKind::Warns => json!({
            "email": format!("former{p}@example.com"),
            "new_email": format!("user{p}@example.com"),
            "first_name": format!("Back{p}"),
            "last_name": format!("Again{p}"),
        }),
        RowKind::Updates => {
            let status = match p % 5 {
                0 => "Inactive",
                1 => "Active",
                _ => "",
            };
            let roles = if p % 3 == 0 {
                json!([{"name": "Manager", "value": 1}, {"name": "Agent", "value": 0}])
            } else {
                json!([{"name": "Admin", "value": 1}])
            };
            let teams = if p % 4 == 0 {
                json!([{"name": "Support", "value": 1}, {"name": "Sales", "value": 0}])
            } else {
                json!([])
            };
            json!({
                "email": format!("user{p}@example.com"),
                // Cleared on some users, changed on the others.
                "agent_number": if p % 6 == 0 { String::new() } else { format!("A{p}") },
                "first_name": format!("Updated{p}"),
                "last_name": format!("Changed{p}"),
                "status": status,
                "location": if p % 2 == 0 { "Headquarters" } else { "" },
                "max_chat_limit": p % 10 + 1,
                "max_chat_limit_enabled": p % 2,
                "roles": roles,
                "teams": teams,
            })
        }
        RowKind::Creates => json!({
            "email": format!("user{p}@example.com"),
            "agent_number": format!("{}", 100_000 + p),
            "first_name": format!("New{p}"),
            "last_name": format!("User{p}"),
            "status": if p % 11 == 0 { "Inactive" } else { "Active" },
            "location": if p % 3 == 0 { "Remote" } else { "Headquarters" },
            "roles": [{"name": "Agent", "value": 1}],
            "teams": [{"name": if p % 2 == 0 { "Sales" } else { "Support" }, "value": 1}],
        }),
    }
}

/// A fixed-seed pseudo-random sequence (SplitMix64): the same kill moments on every run.
struct Moments(u64);

impl Moments {
    fn next_in(&mut self, range: std::ops::Range<u64>) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        range.start + z % (range.end - range.start)
    }
}

/// acme's client, whose requests must succeed.
struct Client(LocalClient);

impl Client {
    fn new(server: &LocalServer) -> Client {
        Client(LocalClient::new(server, TENANT, SECRET))
    }

    async fn get(&self, path: &str) -> Value {
        let (status, body) = self.0.get(path).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        body
    }

    /// Every entry of a paged listing, following its `Link: <…>; rel="next"` headers.
    async fn all_pages(&self, path: &str) -> Value {
        let mut url = format!("{}/{path}", self.0.base);
        let mut entries = Vec::new();
        loop {
            let (status, body, next) = self.0.get_url(&url).await;
            assert_eq!(status, StatusCode::OK, "GET {url}: {body}");
            entries.extend(body.as_array().expect("a page of entries").iter().cloned());
            match next {
                Some(next) => url = next,
                None => return Value::Array(entries),
            }
        }
    }

    async fn upload(&self, file: &str) -> u64 {
        let (status, body) = self.0.upload(file).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["status"], "valid_scheme", "{body}");
        body["id"].as_u64().expect("job id")
    }

    async fn proceed(&self, id: u64) {
        let (status, body) = self.0.proceed(id).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert_eq!(body["status"], "in_progress", "{body}");
    }

    async fn job(&self, id: u64) -> Value {
        self.get(&format!("jobs/{id}")).await
    }

    async fn wait_completed(&self, id: u64, timeout: Duration) -> Value {
        wait_for(timeout, Duration::from_millis(100), async || {
            let job = self.job(id).await;
            match job["status"].as_str() {
                Some("completed") => Ok(job),
                Some("in_progress") => Err(format!(
                    "job {id} did not complete within {timeout:?}; it is now: {job}"
                )),
                _ => panic!("job {id} ended without completing: {job}"),
            }
        })
        .await
    }

    /// Every user, page by page, keyed by email.
    async fn users(&self) -> BTreeMap<String, Value> {
        let mut users = BTreeMap::new();
        for page in 1.. {
            let listed = self.get(&format!("config?page={page}&per_page=1000")).await;
            let listed = listed.as_array().expect("a page of users").clone();
            if listed.is_empty() {
                break;
            }
            for user in listed {
                let email = user["email"].as_str().expect("email").to_owned();
                let user = comparable_user(user);
                let twice = users.insert(email.clone(), user).is_some();
                assert!(!twice, "{email} is listed twice");
            }
        }
        users
    }
}

/// A user of `config` without what legitimately differs between two runs of the same jobs:
/// - `id`: ids are reserved per chunk from a counter, and a chunk re-run after a crash reserves
///   a new block, so the crash run's ids have gaps (and the order of creation differs);
/// - `created_at`, `updated_at`: when the row was applied;
/// - `deactivated_at`: when the row deactivating the user was applied; only whether it is set
///   is kept.
fn comparable_user(mut user: Value) -> Value {
    let object = user.as_object_mut().expect("a user object");
    for field in ["id", "created_at", "updated_at"] {
        assert!(object.remove(field).is_some(), "config lists {field}");
    }
    let deactivated = object.remove("deactivated_at");
    let deactivated = !deactivated.expect("config lists deactivated_at").is_null();
    object.insert("deactivated".to_owned(), Value::Bool(deactivated));
    user
}

/// A job record without what legitimately differs between two runs: its timestamps and its
/// `link` (which names the server's port).
fn comparable_job(mut job: Value) -> Value {
    let object = job.as_object_mut().expect("a job object");
    let stamps = [
        "created_at",
        "updated_at",
        "process_requested_at",
        "completed_at",
    ];
    for field in stamps.into_iter().chain(["link"]) {
        object.remove(field);
    }
    job
}

/// The stored users keyed by email, with the same run-dependent fields as [`comparable_user`]
/// removed. They have every field, those `config` does not show too, and these are the same
/// in both runs: `version` counts the saves of the user (a row applied twice would have saved
/// it once more), `last_change` is the job row that last changed it and how.
async fn stored_users(dir: &Path) -> BTreeMap<String, Value> {
    let store = open(dir).await;
    let mut users = BTreeMap::new();
    for user in all_stored_users(&store.ports).await {
        let email = user.email.clone().expect("every user has an email");
        let value = comparable_user(serde_json::to_value(&user).unwrap());
        let twice = users.insert(email.clone(), value).is_some();
        assert!(!twice, "{email} stored twice");
    }
    users
}

/// Every user of the tenant, straight from the store of a stopped server.
async fn all_stored_users(ports: &Ports) -> Vec<User> {
    let tenant = TenantId::parse(TENANT).unwrap();
    let mut users = Vec::new();
    for page in 1.. {
        let request = PageRequest {
            page,
            per_page: 1000,
        }
        .into();
        let all = UserFilter::default();
        let listed = ports.users.list_users(&tenant, &all, request).await;
        let (listed, _) = listed.expect("list users");
        if listed.is_empty() {
            break;
        }
        users.extend(listed);
    }
    users
}

/// The chunks of `job` a kill interrupted part-way, as the store of the killed server shows
/// them: some of their rows are saved, but the chunk is not committed.
async fn interrupted_chunks(dir: &Path, job: u64) -> BTreeSet<u64> {
    let store = open(dir).await;
    let tenant = TenantId::parse(TENANT).unwrap();
    let committed = store.ports.jobs.committed_chunks(&tenant, job).await;
    let committed = committed.expect("committed chunks").into_iter();
    let committed: BTreeSet<u64> = committed.map(u64::from).collect();
    let users = all_stored_users(&store.ports).await;
    let stamps = users.iter().filter_map(|user| user.last_change.as_ref());
    let saved = stamps.filter(|stamp| stamp.job == job);
    let chunks = saved.map(|stamp| (stamp.row - 1) / ROWS_PER_CHUNK as u64);
    chunks.filter(|chunk| !committed.contains(chunk)).collect()
}

/// Messages left in the durable work queue.
async fn queued(dir: &Path) -> u64 {
    let store = open(dir).await;
    store.queue.pending().await.expect("queue length")
}

/// The job's progress as its record shows it: status and rows processed (affected + failed,
/// counted once per committed chunk).
fn progress(job: &Value) -> (String, u64) {
    (
        job["status"].as_str().unwrap_or_default().to_owned(),
        job["affected_rows"].as_u64().unwrap_or(0) + job["failed_rows"].as_u64().unwrap_or(0),
    )
}

/// What a run ends with.
#[derive(Debug)]
struct Outcome {
    setup_job: Value,
    main_job: Value,
    update_errors: Value,
    users: BTreeMap<String, Value>,
    stored: BTreeMap<String, Value>,
    kills: Vec<Kill>,
}

/// One kill of the crash run.
#[derive(Debug)]
struct Kill {
    /// The main job's status and rows processed just before the kill.
    status: String,
    processed: u64,
    /// The chunks it interrupted part-way (see [`interrupted_chunks`]).
    interrupted: BTreeSet<u64>,
}

impl Kill {
    fn mid_job(&self) -> bool {
        self.status == "in_progress" && self.processed > 0 && self.processed < ROWS as u64
    }

    /// Whether it interrupted a chunk of the first half (updates), or of the second
    /// (creations).
    fn interrupted_updates(&self) -> bool {
        let mut chunks = self.interrupted.iter();
        chunks.any(|chunk| chunk * (ROWS_PER_CHUNK as u64) < HALF as u64)
    }

    fn interrupted_creations(&self) -> bool {
        let mut chunks = self.interrupted.iter();
        chunks.any(|chunk| chunk * (ROWS_PER_CHUNK as u64) >= HALF as u64)
    }
}

/// Whether the kills so far interrupted a chunk of updates and a chunk of creations.
fn interrupted_both_halves(kills: &[Kill]) -> bool {
    kills.iter().any(Kill::interrupted_updates) && kills.iter().any(Kill::interrupted_creations)
}

async fn run(scenario: Scenario, crash: bool) -> Outcome {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path());
    let mut client = Client::new(&server);

    let setup = client.upload(&setup_file()).await;
    client.proceed(setup).await;
    let setup_job = client.wait_completed(setup, Duration::from_secs(60)).await;

    let main = client.upload(&scenario.main_file()).await;
    assert_eq!(client.job(main).await["total_rows"], ROWS as u64);
    client.proceed(main).await;

    let mut moments = Moments(SEED);
    let mut kills: Vec<Kill> = Vec::new();
    while crash && kills.len() < MAX_KILLS {
        let done = kills.last().map_or(0, |kill| kill.processed);
        let percent = match KILL_AT_PERCENT.get(kills.len()) {
            Some(percent) => percent + moments.next_in(0..5),
            None if interrupted_both_halves(&kills) => break,
            None => done * 100 / ROWS as u64 + EXTRA_KILL_EVERY_PERCENT,
        };
        let target = (ROWS as u64 * percent / 100).max(done + ROWS_PER_CHUNK as u64);
        let every = Duration::from_millis(10);
        let (status, processed) = wait_for(Duration::from_secs(60), every, async || {
            let at = progress(&client.job(main).await);
            let short = format!("job {main} did not reach {target} rows processed: {at:?}");
            (at.0 != "in_progress" || at.1 >= target)
                .then_some(at)
                .ok_or(short)
        })
        .await;
        if status != "in_progress" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(moments.next_in(AFTER_TARGET_MS))).await;
        server.kill();
        let interrupted = interrupted_chunks(dir.path(), main).await;
        kills.push(Kill {
            status,
            processed,
            interrupted,
        });
        server = start(dir.path());
        client = Client::new(&server);
    }

    let main_job = client.wait_completed(main, Duration::from_secs(180)).await;
    let processed_in = started.elapsed();

    // Nothing is stuck: the queue drains (a chunk committed but not acknowledged at a kill is
    // delivered again and dropped as already committed), every job is completed, and a
    // further wait changes nothing.
    wait_for(
        Duration::from_secs(10),
        Duration::from_millis(100),
        async || {
            let left = queued(dir.path()).await;
            let stuck = format!("{left} messages stay queued after job {main} completed");
            (left == 0).then_some(()).ok_or(stuck)
        },
    )
    .await;
    let jobs = client.get("jobs").await;
    let statuses = jobs.as_array().unwrap().iter();
    let statuses = statuses.map(|job| (job["id"].as_u64().unwrap(), text(&job["status"])));
    let expected = vec![(main, "completed"), (setup, "completed")];
    assert_eq!(statuses.collect::<Vec<_>>(), expected);
    let log = format!("errors/update/{main}");
    let update_errors = client.all_pages(&log).await;
    let users = client.users().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let changed = "the job list changed after completion";
    assert_eq!(client.get("jobs").await, jobs, "{changed}");
    assert_eq!(queued(dir.path()).await, 0, "work queued after completion");
    let changed = "the update error log changed after completion";
    assert_eq!(client.all_pages(&log).await, update_errors, "{changed}");

    drop(server);
    let stored = stored_users(dir.path()).await;
    let run = if crash { "crash" } else { "clean" };
    let (main_at, all) = (processed_in.as_secs_f64(), started.elapsed().as_secs_f64());
    println!("  {run} run: main job completed at {main_at:.1} s, whole run {all:.1} s");
    Outcome {
        setup_job: comparable_job(setup_job),
        main_job: comparable_job(main_job),
        update_errors,
        users,
        stored,
        kills,
    }
}

/// Every 10th row of the main job is applied with a warning (a rename found by its
/// `new_email`): a chunk processed again after a kill reports those rows' warnings again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_jobs_survive_processor_kills_exactly() {
    let warn_every = Some(10);
    crash_run_equals_clean_run(Scenario { warn_every }).await;
}

async fn crash_run_equals_clean_run(scenario: Scenario) {
    let clean = run(scenario, false).await;

    // The clean run is what the jobs say: every row counted once, the failing rows as errors
    // and the rows applied with a warning as warnings in the update error log, in row order.
    let failed = FAILING.len() as u64;
    let warns = |p: &usize| scenario.row_kind(*p) == RowKind::Warns;
    let warned: Vec<usize> = (0..ROWS).filter(warns).collect();
    let job = &clean.main_job;
    assert_eq!(job["status"], "completed", "{job}");
    let counted = [
        "total_rows",
        "affected_rows",
        "failed_rows",
        "update_errors",
    ];
    let counted = counted.map(|field| job[field].as_u64());
    let (rows, logged) = (ROWS as u64, failed + warned.len() as u64);
    let expected = [rows, rows - failed, failed, logged].map(Some);
    assert_eq!(counted, expected, "{job}");
    assert_eq!(clean.setup_job["affected_rows"], HALF as u64);
    fn entry(e: &Value) -> (u64, &str, &str) {
        (
            e["row"].as_u64().unwrap(),
            text(&e["error_type"]),
            text(&e["field"]),
        )
    }
    let logged = clean.update_errors.as_array().unwrap().iter();
    let logged: Vec<(u64, &str, &str)> = logged.map(entry).collect();
    let errors = FAILING.iter().map(|p| (*p as u64 + 1, "error", "email"));
    let warnings = warned
        .iter()
        .map(|p| (*p as u64 + 1, "warning", "new_email"));
    let mut expected: Vec<(u64, &str, &str)> = errors.chain(warnings).collect();
    expected.sort_unstable();
    assert_eq!(logged, expected, "{}", clean.update_errors);
    let emails: Vec<String> = clean.users.keys().cloned().collect();
    let expected = scenario.expected_emails();
    assert_eq!(emails, expected, "each email exactly once");
    let versions = |outcome: &Outcome| -> BTreeMap<u64, usize> {
        let mut versions = BTreeMap::new();
        for user in outcome.stored.values() {
            *versions
                .entry(user["version"].as_u64().unwrap())
                .or_default() += 1;
        }
        versions
    };
    // Every user saved once per row that changed it: once by the setup job, once more by the
    // main job unless its row there failed; the main job's creations once.
    let setup_only = FAILING.iter().filter(|p| **p < HALF).count();
    let created = ROWS - HALF - FAILING.iter().filter(|p| **p >= HALF).count();
    let expected = BTreeMap::from([(1, setup_only + created), (2, HALF - setup_only)]);
    assert_eq!(versions(&clean), expected);

    let crashed = run(scenario, true).await;
    println!("  the kills (status and rows processed of {ROWS} just before, chunks interrupted):");
    for Kill {
        status,
        processed,
        interrupted,
    } in &crashed.kills
    {
        println!("    {status} {processed} {interrupted:?}");
    }
    let mid_job = crashed.kills.iter().filter(|kill| kill.mid_job()).count();
    assert!(
        mid_job >= 3,
        "only {mid_job} kills landed while the job was part done: {:?}",
        crashed.kills
    );
    // A kill between a chunk's first saved batch and its commit: the chunk runs again, over
    // rows it has already applied (and, creating users, with a new block of ids).
    assert!(
        interrupted_both_halves(&crashed.kills),
        "no kill interrupted a chunk of updates and one of creations part-way: {:?}",
        crashed.kills
    );

    let entries = |log: &Value| log.as_array().expect("an update error log").clone();
    let (clean_log, crash_log) = (
        entries(&clean.update_errors),
        entries(&crashed.update_errors),
    );
    let missing: Vec<&Value> = clean_log
        .iter()
        .filter(|e| !crash_log.contains(e))
        .collect();
    let extra: Vec<&Value> = crash_log
        .iter()
        .filter(|e| !clean_log.contains(e))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "the crash run's update error log misses {} entries of the clean run's and has {} more; \
         missing: {missing:?}; more: {extra:?}",
        missing.len(),
        extra.len()
    );
    assert_eq!(
        crashed.update_errors, clean.update_errors,
        "the update error log"
    );
    assert_eq!(crashed.main_job, clean.main_job, "the job record");
    assert_eq!(crashed.setup_job, clean.setup_job, "the setup job record");
    assert_eq!(crashed.users.len(), clean.users.len(), "how many users");
    for (email, user) in &clean.users {
        assert_eq!(crashed.users.get(email), Some(user), "user {email}");
    }
    assert_eq!(crashed.users, clean.users);
    for (email, user) in &clean.stored {
        assert_eq!(crashed.stored.get(email), Some(user), "stored user {email}");
    }
    assert_eq!(crashed.stored, clean.stored);
}
