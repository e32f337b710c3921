//! End-to-end over HTTP against the `bulk-local` binary: the flow, persistence across restarts,
//! resumption of work after a crash, the first-start credential, and the README walk-through.

use std::time::{Duration, Instant};

use bulk_tests::local_server::{admin, LocalServer};
use bulk_tests::{multipart, users_file, Part, BOUNDARY, PREFIX};
use bulk_users::model::{JobKind, NewJob, TenantId, Timestamp};
use bulk_users::service::{IncomingKey, DROP_USER_NAME};
use bytes::Bytes;
use reqwest::StatusCode;
use serde_json::{json, Value};

const SECRET: &str = "test-secret-123";

fn seeded() -> [(&'static str, &'static str); 2] {
    [("BULK_LOCAL_TENANT", "acme"), ("BULK_LOCAL_SECRET", SECRET)]
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

struct Client {
    http: reqwest::Client,
    base: String,
    user: String,
    secret: String,
}

impl Client {
    fn new(server: &LocalServer, user: &str, secret: &str) -> Client {
        Client {
            http: reqwest::Client::new(),
            base: server.url(PREFIX),
            user: user.to_owned(),
            secret: secret.to_owned(),
        }
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .get(format!("{}/{path}", self.base))
            .basic_auth(&self.user, Some(&self.secret))
            .send()
            .await
            .expect("request");
        (response.status(), response.json().await.expect("json"))
    }

    async fn upload(&self, file: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .post(format!("{}/upload", self.base))
            .basic_auth(&self.user, Some(&self.secret))
            .header(
                "content-type",
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .body(multipart(&[Part::file(file.as_bytes().to_vec())]))
            .send()
            .await
            .expect("request");
        (response.status(), response.json().await.expect("json"))
    }

    async fn proceed(&self, id: u64) -> (StatusCode, Value) {
        let response = self
            .http
            .post(format!("{}/proceed", self.base))
            .basic_auth(&self.user, Some(&self.secret))
            .json(&json!({ "id": id }))
            .send()
            .await
            .expect("request");
        (response.status(), response.json().await.expect("json"))
    }

    async fn wait_for_status(&self, id: u64, status: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (_, job) = self.get(&format!("jobs/{id}")).await;
            if job["status"] == status {
                return job;
            }
            assert!(
                Instant::now() < deadline,
                "job {id} never reached {status}: {job}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn the_flow_over_http_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = LocalServer::start(dir.path(), &seeded());
    let client = Client::new(&server, "acme", SECRET);

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
    assert_eq!(
        (job["affected_rows"].as_u64(), job["failed_rows"].as_u64()),
        (Some(250), Some(0))
    );

    let (status, body) = Client::new(&server, "acme", "wrong").get("jobs").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");

    // Restart on the same data directory: jobs and users are still there.
    drop(server);
    let server = LocalServer::start(dir.path(), &seeded());
    let client = Client::new(&server, "acme", SECRET);
    let (_, job) = client.get(&format!("jobs/{id}")).await;
    assert_eq!(job["status"], "completed");
    let (_, users) = client.get("config?per_page=1000").await;
    assert_eq!(users.as_array().unwrap().len(), 250);
}

#[tokio::test]
async fn queued_work_is_resumed_after_the_process_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    // No in-process worker: the proceeded job waits in the durable queue.
    let mut env = seeded().to_vec();
    env.push(("BULK_LOCAL_WORKERS", "0"));
    env.push(("BULK_ROWS_PER_CHUNK", "40"));
    let server = LocalServer::start(dir.path(), &env);
    let client = Client::new(&server, "acme", SECRET);
    let (_, upload) = client.upload(&users_file(200, "")).await;
    let id = upload["id"].as_u64().unwrap();
    assert_eq!(client.proceed(id).await.0, StatusCode::ACCEPTED);
    let (_, job) = client.get(&format!("jobs/{id}")).await;
    assert_eq!(job["status"], "in_progress");
    server.kill();

    let server = LocalServer::start(
        dir.path(),
        &[
            ("BULK_LOCAL_TENANT", "acme"),
            ("BULK_LOCAL_SECRET", SECRET),
            ("BULK_ROWS_PER_CHUNK", "40"),
        ],
    );
    let client = Client::new(&server, "acme", SECRET);
    let job = client.wait_for_status(id, "completed").await;
    assert_eq!(
        (job["total_rows"].as_u64(), job["affected_rows"].as_u64()),
        (Some(200), Some(200))
    );
}

#[tokio::test]
async fn first_start_prints_a_credential_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = LocalServer::start(dir.path(), &[("BULK_LOCAL_TENANT", "initech")]);
    let secret = server
        .output
        .iter()
        .find_map(|line| line.trim().strip_prefix("secret: "))
        .unwrap_or_else(|| panic!("no secret printed: {:?}", server.output))
        .to_owned();
    let (status, _) = Client::new(&server, "initech", &secret).get("jobs").await;
    assert_eq!(status, StatusCode::OK);
    drop(server);

    let server = LocalServer::start(dir.path(), &[("BULK_LOCAL_TENANT", "initech")]);
    assert!(
        !server.output.iter().any(|line| line.contains("secret:")),
        "printed once"
    );
    let (status, _) = Client::new(&server, "initech", &secret).get("jobs").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn oversized_requests_are_refused_with_413() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = seeded().to_vec();
    env.push(("BULK_MAX_REQUEST_BYTES", "4096"));
    let server = LocalServer::start(dir.path(), &env);
    let client = Client::new(&server, "acme", SECRET);
    let (status, body) = client.upload(&users_file(500, "")).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["limit"], "max_request_bytes");
    let (_, jobs) = client.get("jobs").await;
    assert_eq!(jobs, json!([]));
}

/// The README's curl walk-through, run verbatim (only the port differs) against a fresh server.
#[tokio::test]
async fn the_readme_walk_through_works_verbatim() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let start = readme
        .find("<!-- walk-through:start -->")
        .expect("walk-through start marker");
    let end = readme
        .find("<!-- walk-through:end -->")
        .expect("walk-through end marker");
    let script: String = readme[start..end]
        .split("```sh")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        script.contains("curl"),
        "the walk-through has curl commands"
    );

    let dir = tempfile::tempdir().unwrap();
    let server = LocalServer::start(
        &dir.path().join("data"),
        &[
            ("BULK_LOCAL_TENANT", "acme"),
            ("BULK_LOCAL_SECRET", "change-me"),
        ],
    );
    let script = script.replace("127.0.0.1:3000", &format!("127.0.0.1:{}", server.port));
    let output = tokio::process::Command::new("bash")
        .arg("-euo")
        .arg("pipefail")
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "walk-through failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("\"status\":\"completed\""), "{stdout}");
}

#[tokio::test]
async fn the_admin_command_manages_credentials_roles_and_teams() {
    let dir = tempfile::tempdir().unwrap();
    let created = admin(
        dir.path(),
        &[
            "credential",
            "create",
            "--tenant",
            "acme",
            "--name",
            "ops bot",
        ],
    );
    let field = |name: &str| {
        created
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {created}"))
            .trim()
            .to_owned()
    };
    let (key_id, secret) = (field("key id:"), field("secret:"));
    admin(
        dir.path(),
        &[
            "tenant",
            "set",
            "--tenant",
            "acme",
            "--roles",
            "Pilot,Agent",
            "--teams",
            "Ops",
        ],
    );
    let database = std::fs::read(dir.path().join("bulk.sqlite3")).unwrap();
    assert!(
        !database
            .windows(secret.len())
            .any(|window| window == secret.as_bytes()),
        "the secret is not stored"
    );

    let server = LocalServer::start(dir.path(), &[("BULK_LOCAL_TENANT", "acme")]);
    assert!(
        !server.output.iter().any(|line| line.contains("secret:")),
        "the tenant already has a credential"
    );
    let client = Client::new(&server, "acme", &secret);
    let (status, template) = client.get("template").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        template[0]["roles"],
        json!([{"name": "Pilot", "value": 0}, {"name": "Agent", "value": 0}])
    );
    assert_eq!(template[0]["teams"], json!([{"name": "Ops", "value": 0}]));
    let (_, upload) = client.upload(&users_file(1, "")).await;
    let (_, job) = client.get(&format!("jobs/{}", upload["id"])).await;
    assert_eq!(job["uploaded_api_user_name"], "ops bot");

    let listed = admin(dir.path(), &["credential", "list", "--tenant", "acme"]);
    assert!(
        listed.contains(&key_id) && listed.contains("active"),
        "{listed}"
    );
    admin(
        dir.path(),
        &[
            "credential",
            "revoke",
            "--tenant",
            "acme",
            "--key-id",
            &key_id,
        ],
    );
    let (status, _) = client.get("jobs").await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a revoked credential stops working at once"
    );
}

#[tokio::test]
async fn files_dropped_into_the_drop_folder_become_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let server = LocalServer::start(dir.path(), &seeded());
    let client = Client::new(&server, "acme", SECRET);
    drop_file(dir.path(), "acme/proceed/users.json", &users_file(30, ""));
    let drop = dir.path().join("drop/acme/proceed");
    std::fs::create_dir_all(dir.path().join("drop/nobody")).unwrap();
    std::fs::write(dir.path().join("drop/nobody/users.json"), users_file(1, "")).unwrap();

    let deadline = Instant::now() + Duration::from_secs(30);
    let job = loop {
        let (_, jobs) = client.get("jobs").await;
        if let Some(job) = jobs
            .as_array()
            .and_then(|jobs| jobs.first())
            .filter(|job| job["status"] == "completed")
        {
            break job.clone();
        }
        assert!(
            Instant::now() < deadline,
            "the dropped file never completed: {jobs}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        (job["affected_rows"].as_u64(), job["filename"].as_str()),
        (Some(30), Some("users.json"))
    );
    assert!(
        !drop.join("users.json").exists(),
        "taken out of the drop folder"
    );
    let rejected = dir.path().join("files/rejected/nobody/users.json");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !rejected.exists() {
        assert!(
            Instant::now() < deadline,
            "the unknown tenant's file was not moved aside"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A process killed while it took in dropped files leaves them part way: moved out of the drop
/// folder but no job yet, a job created but its file not moved, a job whose file was moved into
/// its slot but not recorded, a job pointed at its file but not validated. Locally no notification is delivered again: the next
/// start takes each of them in, once, and leaves the jobs it had finished with alone.
#[tokio::test]
async fn files_a_killed_process_was_taking_in_are_taken_in_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let server = LocalServer::start(dir.path(), &seeded());
    let client = Client::new(&server, "acme", SECRET);
    // A file dropped and processed before: its job is finished with.
    drop_file(dir.path(), "acme/proceed/first.json", &users_file(2, ""));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut done = loop {
        let (_, listed) = client.get("jobs").await;
        if let Some(job) = listed.get(0).filter(|job| job["status"] == "completed") {
            break job.clone();
        }
        assert!(
            Instant::now() < deadline,
            "the first drop never completed: {listed}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    server.kill();

    // What the killed process left, made with the store's own ports while nothing runs.
    let store = bulk_users::adapters::embedded::open(dir.path())
        .await
        .expect("open the store");
    let (jobs, files) = (&store.ports.jobs, &store.ports.files);
    let tenant = TenantId::parse("acme").unwrap();
    // Each file's users are its own: `{name}{i}@example.com`.
    let file_of = |name: &str, rows: usize| -> Bytes {
        let users: Vec<Value> = (0..rows)
            .map(|i| json!({"email": format!("{name}{i}@example.com"), "first_name": "F", "last_name": "L"}))
            .collect();
        Bytes::from(Value::Array(users).to_string())
    };
    let put = |key: &'static str, name: &'static str, rows: usize| {
        let body = file_of(name, rows);
        async move { files.put(key, body).await.expect("put") }
    };
    let new_job = |key: &str, filename: &str| NewJob {
        kind: JobKind::Upload,
        tenant: tenant.clone(),
        filename: filename.to_owned(),
        file_key: key.to_owned(),
        file_bytes: 1,
        uploaded_api_user_name: DROP_USER_NAME.to_owned(),
        created_at: Timestamp::now(),
    };
    // Moved out of the drop folder, no job yet.
    put("incoming/acme/proceed/imported.json", "imported", 3).await;
    // Job created, file not moved yet.
    put("incoming/acme/proceed/unmoved.json", "unmoved", 6).await;
    let unmoved = jobs
        .create_job(new_job(
            "incoming/acme/proceed/unmoved.json",
            "unmoved.json",
        ))
        .await
        .unwrap();
    // Job created, file moved into its slot, the job not pointed at it.
    put("incoming/acme/proceed/moved.json", "moved", 4).await;
    let moved = jobs
        .create_job(new_job("incoming/acme/proceed/moved.json", "moved.json"))
        .await
        .unwrap();
    let moved_slot = IncomingKey::slot(&tenant, moved.id, true, "moved.json");
    files
        .rename("incoming/acme/proceed/moved.json", &moved_slot)
        .await
        .unwrap();
    // Job pointed at its file in its slot, not validated (not in proceed/: validated only).
    let pointed = jobs
        .create_job(new_job(
            "incoming/acme/unvalidated.json",
            "unvalidated.json",
        ))
        .await
        .unwrap();
    let pointed_slot = IncomingKey::slot(&tenant, pointed.id, false, "unvalidated.json");
    let unvalidated = file_of("unvalidated", 5);
    files.put(&pointed_slot, unvalidated.clone()).await.unwrap();
    jobs.replace_file(
        &tenant,
        pointed.id,
        bulk_users::model::NewFile {
            filename: "unvalidated.json".to_owned(),
            file_key: pointed_slot.clone(),
            file_bytes: unvalidated.len() as u64,
            at: Timestamp::now(),
        },
    )
    .await
    .unwrap()
    .expect("a job")
    .expect("not proceeded");
    drop(store);

    let server = LocalServer::start(dir.path(), &seeded());
    let client = Client::new(&server, "acme", SECRET);
    let moved = client.wait_for_status(moved.id, "completed").await;
    assert_eq!(moved["affected_rows"], 4, "{moved}");
    let unmoved = client.wait_for_status(unmoved.id, "completed").await;
    assert_eq!(unmoved["affected_rows"], 6, "{unmoved}");
    let pointed = client.wait_for_status(pointed.id, "valid_scheme").await;
    assert_eq!(pointed["total_rows"], 5, "{pointed}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let imported = loop {
        let (_, listed) = client.get("jobs").await;
        let found = listed.as_array().and_then(|jobs| {
            jobs.iter()
                .find(|job| job["filename"] == "imported.json" && job["status"] == "completed")
                .cloned()
        });
        if let Some(job) = found {
            break job;
        }
        assert!(
            Instant::now() < deadline,
            "the imported file never completed: {listed}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(imported["affected_rows"], 3, "{imported}");
    let (_, listed) = client.get("jobs").await;
    assert_eq!(
        listed.as_array().map(Vec::len),
        Some(5),
        "one job per file: {listed}"
    );
    let (_, mut done_now) = client.get(&format!("jobs/{}", done["id"])).await;
    // The link names the server's port, which changed.
    for job in [&mut done, &mut done_now] {
        job.as_object_mut().unwrap().remove("link");
    }
    assert_eq!(done_now, done, "a finished job is left alone");
    let (_, users) = client.get("config?per_page=100").await;
    assert_eq!(
        users.as_array().map(Vec::len),
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
    let server = LocalServer::start(dir.path(), &seeded());
    let client = Client::new(&server, "acme", SECRET);
    // A first drop, processed: the start-up pass over files left from before is over.
    drop_file(dir.path(), "acme/proceed/first.json", &users_file(1, ""));
    client.wait_for_status(1, "completed").await;
    // The next job, 2, cannot get its slot.
    let blocker = dir.path().join("files/incoming/acme/jobs/2");
    std::fs::write(&blocker, "not a folder").unwrap();
    drop_file(dir.path(), "acme/proceed/users.json", &users_file(7, ""));

    let deadline = Instant::now() + Duration::from_secs(30);
    let stopped = loop {
        let (_, job) = client.get("jobs/2").await;
        if job["id"] == 2 {
            break job;
        }
        assert!(Instant::now() < deadline, "no job was created: {job}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
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
    assert_eq!(
        listed.as_array().map(Vec::len),
        Some(2),
        "no other job: {listed}"
    );
}
