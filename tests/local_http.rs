//! End-to-end over HTTP against the `bulk-local` binary: the flow, persistence across restarts,
//! resumption of work after a crash, the first-start credential, and the README walk-through.

use std::time::Duration;

use bulk_tests::local_server::{admin, LocalServer};
use bulk_tests::steps::{dropped_job, wait_for, LocalClient as Client};
use bulk_tests::{users_file, PREFIX};
use bulk_users::model::{TenantId, Timestamp};
use bulk_users::service::IncomingKey;
use bytes::Bytes;
use reqwest::StatusCode;
use serde_json::{json, Value};

const SECRET: &str = "test-secret-123";

fn seeded() -> [(&'static str, &'static str); 2] {
    [("BULK_LOCAL_TENANT", "acme"), ("BULK_LOCAL_SECRET", SECRET)]
}

/// A server seeded with acme, and acme's client of it.
fn start(dir: &std::path::Path, more: &[(&'static str, &'static str)]) -> (LocalServer, Client) {
    let server = LocalServer::start(dir, &[&seeded()[..], more].concat());
    let client = Client::new(&server, "acme", SECRET);
    (server, client)
}

/// Drops `body` as `{data_dir}/drop/{path}`, written under a dot-name and renamed, so the
/// watcher never sees a half-written file.
fn drop_file(data_dir: &std::path::Path, path: &str, body: &str) {
    let target = data_dir.join("drop").join(path);
    let folder = target.parent().expect("a folder");
    std::fs::create_dir_all(folder).unwrap();
    let name = target.file_name().unwrap().to_string_lossy().into_owned();
    let part = folder.join(format!(".{name}.part"));
    std::fs::write(&part, body).unwrap();
    std::fs::rename(&part, &target).unwrap();
}

/// The job `pick` finds among acme's, once it does (within 30 s; else fails saying `what`).
async fn wait_for_job(
    client: &Client,
    what: &str,
    pick: impl Fn(&[Value]) -> Option<&Value>,
) -> Value {
    wait_for(
        Duration::from_secs(30),
        Duration::from_millis(100),
        async || {
            let (_, listed) = client.get("jobs").await;
            let found = listed.as_array().and_then(|jobs| pick(jobs)).cloned();
            found.ok_or(format!("{what}: {listed}"))
        },
    )
    .await
}

/// The newest job once it is completed.
fn newest_completed(jobs: &[Value]) -> Option<&Value> {
    jobs.first().filter(|job| job["status"] == "completed")
}

#[tokio::test]
async fn the_flow_over_http_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = start(dir.path(), &[]);

    let (status, template) = client.get("template").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(template[0]["email"], "jane.doe@example.com");

    let (status, upload) = client.upload(&users_file(250, "")).await;
    assert_eq!(status, StatusCode::CREATED, "{upload}");
    assert_eq!(upload["status"], "valid_scheme");
    let id = upload["id"].as_u64().unwrap();
    assert_eq!(upload["link"], server.url(&format!("{PREFIX}/jobs/{id}")));
    let (status, _) = client.proceed(id).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let job = client.wait_for_status(id, "completed").await;
    let rows = (job["affected_rows"].as_u64(), job["failed_rows"].as_u64());
    assert_eq!(rows, (Some(250), Some(0)));

    let (status, body) = Client::new(&server, "acme", "wrong").get("jobs").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");

    // Restart on the same data directory: jobs and users are still there.
    drop(server);
    let (_server, client) = start(dir.path(), &[]);
    let (_, job) = client.get(&format!("jobs/{id}")).await;
    assert_eq!(job["status"], "completed");
    let (_, users) = client.get("config?per_page=1000").await;
    assert_eq!(users.as_array().unwrap().len(), 250);
}

#[tokio::test]
async fn queued_work_is_resumed_after_the_process_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    // No in-process worker: the proceeded job waits in the durable queue.
    let chunks = ("BULK_ROWS_PER_CHUNK", "40");
    let (server, client) = start(dir.path(), &[("BULK_LOCAL_WORKERS", "0"), chunks]);
    let (_, upload) = client.upload(&users_file(200, "")).await;
    let id = upload["id"].as_u64().unwrap();
    assert_eq!(client.proceed(id).await.0, StatusCode::ACCEPTED);
    let (_, job) = client.get(&format!("jobs/{id}")).await;
    assert_eq!(job["status"], "in_progress");
    server.kill();

    let (_server, client) = start(dir.path(), &[chunks]);
    let job = client.wait_for_status(id, "completed").await;
    let rows = (job["total_rows"].as_u64(), job["affected_rows"].as_u64());
    assert_eq!(rows, (Some(200), Some(200)));
}

#[tokio::test]
async fn first_start_prints_a_credential_once() {
    let dir = tempfile::tempdir().unwrap();
    let initech = [("BULK_LOCAL_TENANT", "initech")];
    let server = LocalServer::start(dir.path(), &initech);
    let mut printed = server.output.iter();
    let secret = printed.find_map(|line| line.trim().strip_prefix("secret: "));
    let secret = secret.unwrap_or_else(|| panic!("no secret printed: {:?}", server.output));
    let secret = secret.to_owned();
    let (status, _) = Client::new(&server, "initech", &secret).get("jobs").await;
    assert_eq!(status, StatusCode::OK);
    drop(server);

    let server = LocalServer::start(dir.path(), &initech);
    let printed = server.output.iter().any(|line| line.contains("secret:"));
    assert!(!printed, "printed once");
    let (status, _) = Client::new(&server, "initech", &secret).get("jobs").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn oversized_requests_are_refused_with_413() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, client) = start(dir.path(), &[("BULK_MAX_REQUEST_BYTES", "4096")]);
    let (status, body) = client.upload(&users_file(500, "")).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["limit"], "max_request_bytes");
    let (_, jobs) = client.get("jobs").await;
    assert_eq!(jobs, json!([]));
}

/// The README's curl walk-through, run verbatim (only the port differs) against a fresh server.
#[tokio::test]
async fn the_readme_walk_through_works_verbatim() {
    let readme = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
    let readme = std::fs::read_to_string(readme).unwrap();
    let marker = |name: &str| readme.find(&format!("<!-- walk-through:{name} -->"));
    let start = marker("start").expect("walk-through start marker");
    let end = marker("end").expect("walk-through end marker");
    let blocks = readme[start..end].split("```sh").skip(1);
    let blocks: Vec<&str> = blocks
        .filter_map(|block| block.split("```").next())
        .collect();
    let script = blocks.join("\n");
    assert!(
        script.contains("curl"),
        "the walk-through has curl commands"
    );

    let dir = tempfile::tempdir().unwrap();
    let seed = [
        ("BULK_LOCAL_TENANT", "acme"),
        ("BULK_LOCAL_SECRET", "change-me"),
    ];
    let server = LocalServer::start(&dir.path().join("data"), &seed);
    let script = script.replace("127.0.0.1:3000", &format!("127.0.0.1:{}", server.port));
    let mut bash = tokio::process::Command::new("bash");
    bash.args(["-euo", "pipefail", "-c", &script]);
    let output = bash.current_dir(dir.path()).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "walk-through failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("\"status\":\"completed\""), "{stdout}");
}

/// Runs `bulk-admin` with the words of `command`, then the arguments `last`.
fn run_admin(data_dir: &std::path::Path, command: &str, last: &[&str]) -> String {
    let args: Vec<&str> = command.split(' ').chain(last.iter().copied()).collect();
    admin(data_dir, &args)
}

#[tokio::test]
async fn the_admin_command_manages_credentials_roles_and_teams() {
    let dir = tempfile::tempdir().unwrap();
    let create = "credential create --tenant acme --name";
    let created = run_admin(dir.path(), create, &["ops bot"]);
    let field = |name: &str| {
        let value = created.lines().find_map(|line| line.strip_prefix(name));
        let value = value.unwrap_or_else(|| panic!("no {name} in {created}"));
        value.trim().to_owned()
    };
    let (key_id, secret) = (field("key id:"), field("secret:"));
    let set = "tenant set --tenant acme --roles Pilot,Agent --teams Ops";
    run_admin(dir.path(), set, &[]);
    let database = std::fs::read(dir.path().join("bulk.sqlite3")).unwrap();
    let mut windows = database.windows(secret.len());
    let stored = windows.any(|window| window == secret.as_bytes());
    assert!(!stored, "the secret is not stored");

    let server = LocalServer::start(dir.path(), &[("BULK_LOCAL_TENANT", "acme")]);
    let printed = server.output.iter().any(|line| line.contains("secret:"));
    assert!(!printed, "the tenant already has a credential");
    let client = Client::new(&server, "acme", &secret);
    let (status, template) = client.get("template").await;
    assert_eq!(status, StatusCode::OK);
    let roles = json!([{"name": "Pilot", "value": 0}, {"name": "Agent", "value": 0}]);
    assert_eq!(template[0]["roles"], roles);
    assert_eq!(template[0]["teams"], json!([{"name": "Ops", "value": 0}]));
    let (_, upload) = client.upload(&users_file(1, "")).await;
    let (_, job) = client.get(&format!("jobs/{}", upload["id"])).await;
    assert_eq!(job["uploaded_api_user_name"], "ops bot");

    let listed = run_admin(dir.path(), "credential list --tenant acme", &[]);
    let shown = listed.contains(&key_id) && listed.contains("active");
    assert!(shown, "{listed}");
    let revoke = "credential revoke --tenant acme --key-id";
    run_admin(dir.path(), revoke, &[&key_id]);
    let (status, _) = client.get("jobs").await;
    let stopped = "a revoked credential stops working at once";
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{stopped}");
}

/// `bulk-admin tenant set --bucket-drops off` switches a tenant's drops off: a file then put
/// into the drop folder for it is moved aside unprocessed, no job made; switched on again (while
/// the server runs), a drop becomes a job.
#[tokio::test]
async fn the_admin_command_switches_a_tenants_drops_off_and_on() {
    let dir = tempfile::tempdir().unwrap();
    let switch = "tenant set --tenant acme --bucket-drops";
    let shown = run_admin(dir.path(), switch, &["off"]);
    assert!(shown.contains("\"bucket_drops\": false"), "{shown}");
    let (_server, client) = start(dir.path(), &[]);
    drop_file(dir.path(), "acme/proceed/users.json", &users_file(2, ""));
    let rejected = dir.path().join("files/rejected/acme/proceed/users.json");
    wait_for(
        Duration::from_secs(10),
        Duration::from_millis(100),
        async || {
            let aside = "the switched-off tenant's drop was not moved aside";
            rejected.exists().then_some(()).ok_or(aside.to_owned())
        },
    )
    .await;
    let (_, jobs) = client.get("jobs").await;
    assert_eq!(jobs, json!([]), "no job");

    let shown = run_admin(dir.path(), switch, &["on"]);
    assert!(shown.contains("\"bucket_drops\": true"), "{shown}");
    drop_file(dir.path(), "acme/proceed/users.json", &users_file(2, ""));
    let job = wait_for_job(&client, "the drop never completed", newest_completed).await;
    assert_eq!(job["affected_rows"], 2, "{job}");
}

#[tokio::test]
async fn files_dropped_into_the_drop_folder_become_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, client) = start(dir.path(), &[]);
    drop_file(dir.path(), "acme/proceed/users.json", &users_file(30, ""));
    let drop = dir.path().join("drop/acme/proceed");
    std::fs::create_dir_all(dir.path().join("drop/nobody")).unwrap();
    std::fs::write(dir.path().join("drop/nobody/users.json"), users_file(1, "")).unwrap();

    let job = wait_for_job(
        &client,
        "the dropped file never completed",
        newest_completed,
    )
    .await;
    let (affected, filename) = (job["affected_rows"].as_u64(), job["filename"].as_str());
    assert_eq!((affected, filename), (Some(30), Some("users.json")));
    let taken = !drop.join("users.json").exists();
    assert!(taken, "taken out of the drop folder");
    let rejected = dir.path().join("files/rejected/nobody/users.json");
    wait_for(
        Duration::from_secs(10),
        Duration::from_millis(100),
        async || {
            let aside = "the unknown tenant's file was not moved aside";
            rejected.exists().then_some(()).ok_or(aside.to_owned())
        },
    )
    .await;
}

/// A process killed while it took in dropped files leaves them part way: moved out of the drop
/// folder but no job yet, a job created but its file not moved, a job whose file was moved into
/// its slot but not recorded, a job pointed at its file but not validated. Locally no notification is delivered again: the next
/// start takes each of them in, once, and leaves the jobs it had finished with alone.
#[tokio::test]
async fn files_a_killed_process_was_taking_in_are_taken_in_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = start(dir.path(), &[]);
    // A file dropped and processed before: its job is finished with.
    drop_file(dir.path(), "acme/proceed/first.json", &users_file(2, ""));
    let mut done = wait_for_job(&client, "the first drop never completed", newest_completed).await;
    server.kill();

    // What the killed process left, made with the store's own ports while nothing runs.
    let store = bulk_users::adapters::embedded::open(dir.path()).await;
    let store = store.expect("open the store");
    let (jobs, files) = (&store.ports.jobs, &store.ports.files);
    let tenant = TenantId::parse("acme").unwrap();
    // Each file's users are its own: `{name}{i}@example.com`.
    let file_of = |name: &str, rows: usize| -> Bytes {
        let user = |i| json!({"email": format!("{name}{i}@example.com"), "first_name": "F", "last_name": "L"});
        Bytes::from(Value::Array((0..rows).map(user).collect()).to_string())
    };
    let put = |key: &'static str, name: &'static str, rows: usize| {
        let body = file_of(name, rows);
        async move { files.put(key, body).await.expect("put") }
    };
    let create = async |key: &str, filename: &str| {
        let job = dropped_job(&tenant, key, filename, 1);
        jobs.create_job(job).await.unwrap()
    };
    // Moved out of the drop folder, no job yet.
    put("incoming/acme/proceed/imported.json", "imported", 3).await;
    // Job created, file not moved yet.
    put("incoming/acme/proceed/unmoved.json", "unmoved", 6).await;
    let unmoved = create("incoming/acme/proceed/unmoved.json", "unmoved.json").await;
    // Job created, file moved into its slot, the job not pointed at it.
    put("incoming/acme/proceed/moved.json", "moved", 4).await;
    let moved = create("incoming/acme/proceed/moved.json", "moved.json").await;
    let moved_slot = IncomingKey::slot(&tenant, moved.id, true, "moved.json");
    let dropped = "incoming/acme/proceed/moved.json";
    files.rename(dropped, None, &moved_slot).await.unwrap();
    // Job pointed at its file in its slot, not validated (not in proceed/: validated only).
    let pointed = create("incoming/acme/unvalidated.json", "unvalidated.json").await;
    let pointed_slot = IncomingKey::slot(&tenant, pointed.id, false, "unvalidated.json");
    let unvalidated = file_of("unvalidated", 5);
    files.put(&pointed_slot, unvalidated.clone()).await.unwrap();
    let file = bulk_users::model::NewFile {
        filename: "unvalidated.json".to_owned(),
        file_key: pointed_slot.clone(),
        file_bytes: unvalidated.len() as u64,
        at: Timestamp::now(),
    };
    let replaced = jobs.replace_file(&tenant, pointed.id, file).await.unwrap();
    replaced.expect("a job").expect("not proceeded");
    drop(store);

    let (_server, client) = start(dir.path(), &[]);
    let moved = client.wait_for_status(moved.id, "completed").await;
    assert_eq!(moved["affected_rows"], 4, "{moved}");
    let unmoved = client.wait_for_status(unmoved.id, "completed").await;
    assert_eq!(unmoved["affected_rows"], 6, "{unmoved}");
    let pointed = client.wait_for_status(pointed.id, "valid_scheme").await;
    assert_eq!(pointed["total_rows"], 5, "{pointed}");
    let imported = wait_for_job(&client, "the imported file never completed", |jobs| {
        let completed = |job: &&Value| job["status"] == "completed";
        let imported = |job: &&Value| job["filename"] == "imported.json";
        jobs.iter().filter(imported).find(completed)
    })
    .await;
    assert_eq!(imported["affected_rows"], 3, "{imported}");
    let (_, listed) = client.get("jobs").await;
    let count = listed.as_array().map(Vec::len);
    assert_eq!(count, Some(5), "one job per file: {listed}");
    let (_, mut done_now) = client.get(&format!("jobs/{}", done["id"])).await;
    // The link names the server's port, which changed.
    for job in [&mut done, &mut done_now] {
        job.as_object_mut().unwrap().remove("link");
    }
    assert_eq!(done_now, done, "a finished job is left alone");
    let (_, users) = client.get("config?per_page=100").await;
    let count = users.as_array().map(Vec::len);
    assert_eq!(
        count,
        Some(2 + 3 + 6 + 4),
        "the proceeded files' users: {users}"
    );
}

/// An intake that fails (here: the job's slot cannot be made, a file stands where its folder
/// goes) leaves the dropped file's job `created`; it is tried again a little later, goes on
/// with that job and processes the file once the cause is gone.
#[tokio::test]
async fn a_failed_intake_of_a_dropped_file_is_tried_again() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, client) = start(dir.path(), &[]);
    // A first drop, processed: the start-up pass over files left from before is over.
    drop_file(dir.path(), "acme/proceed/first.json", &users_file(1, ""));
    client.wait_for_status(1, "completed").await;
    // The next job, 2, cannot get its slot.
    let blocker = dir.path().join("files/incoming/acme/jobs/2");
    std::fs::write(&blocker, "not a folder").unwrap();
    drop_file(dir.path(), "acme/proceed/users.json", &users_file(7, ""));

    let stopped = wait_for(
        Duration::from_secs(30),
        Duration::from_millis(100),
        async || {
            let (_, job) = client.get("jobs/2").await;
            let created = job["id"] == 2;
            created
                .then(|| job.clone())
                .ok_or(format!("no job was created: {job}"))
        },
    )
    .await;
    assert_eq!(stopped["status"], "created", "{stopped}");
    // Failing, it is tried again: still two jobs, the second still created.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (_, listed) = client.get("jobs").await;
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
    assert_eq!(listed[0]["status"], "created", "{listed}");

    std::fs::remove_file(&blocker).unwrap();
    let job = client.wait_for_status(2, "completed").await;
    assert_eq!(job["affected_rows"], 7, "{job}");
    let (_, listed) = client.get("jobs").await;
    let count = listed.as_array().map(Vec::len);
    assert_eq!(count, Some(2), "no other job: {listed}");
}
