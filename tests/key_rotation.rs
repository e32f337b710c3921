//! `bulk-admin keys rotate`, as an operator runs it, in front of a running API: on the local
//! server (embedded store, `master.key`) and on AWS (the stack's KMS key, the functions under
//! their template policies on the emulator). Credentials made before the rotation keep
//! authenticating in every form (HTTP Basic, `X-Auth-Token`, the AK/SK signature) after each
//! step: a rotation stopped after some credentials (`--limit`), its second run that finishes
//! it and retires the old version, and on the local server a restart. The API processes were
//! started before the rotation and never told of it. A stack of before the keyring, whose
//! credentials were sealed under its `MasterKey` parameter, keeps them once `bulk-admin keys
//! import-master-key` has made that key version 1, and a rotation re-seals them.

use std::process::Command;

use bulk_tests::credential::Auth;
use bulk_tests::local_server::{admin, binary, LocalServer};
use bulk_tests::moto::{fresh_stack, Stack};
use bulk_tests::{api_request, Backend, Deployment, TestApp, PREFIX};
use bulk_users::adapters::aws::KMS_KEY_ENV;
use bulk_users::api::{ApiRequest, ApiResponse};
use bulk_users::model::{Credential, TenantId, Timestamp};
use bulk_users::service::ServiceConfig;
use http::{HeaderMap, Method, StatusCode};

/// A credential as `bulk-admin credential create` printed it.
#[derive(Debug, Clone)]
struct Issued {
    tenant: String,
    key_id: String,
    secret: String,
}

impl Issued {
    /// `tenant: …`, `key id: …`, `secret: …` lines.
    fn parse(printed: &str) -> Issued {
        let field = |name: &str| {
            printed
                .lines()
                .find_map(|line| line.strip_prefix(&format!("{name}: ")))
                .unwrap_or_else(|| panic!("no {name} in {printed}"))
                .to_owned()
        };
        Issued {
            tenant: field("tenant"),
            key_id: field("key id"),
            secret: field("secret"),
        }
    }

    /// The requests that authenticate this credential, one per form: (method, target, auth).
    fn requests(&self) -> Vec<(&'static str, String, Auth)> {
        let users = format!("/v2/{}/users?limit=1", self.tenant);
        vec![
            (
                "basic",
                format!("{PREFIX}/jobs"),
                Auth::Basic(self.tenant.clone(), self.secret.clone()),
            ),
            ("token", users.clone(), Auth::Token(self.secret.clone())),
            (
                "signed",
                users,
                Auth::Signed(self.key_id.clone(), self.secret.clone()),
            ),
        ]
    }
}

/// The headers of a GET of `target` with `auth`.
fn headers(auth: &Auth, host: &str, target: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(http::header::HOST, host.parse().unwrap());
    auth.add_to(&mut headers, "GET", target, b"");
    headers
}

/// The (form, key id) of every request of `issued` the local server refused.
async fn refused_by_local(server: &LocalServer, issued: &[Issued]) -> Vec<String> {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let host = format!("127.0.0.1:{}", server.port);
    let mut refused = Vec::new();
    for credential in issued {
        for (form, target, auth) in credential.requests() {
            let response = client
                .get(server.url(&target))
                .headers(headers(&auth, &host, &target))
                .send()
                .await
                .expect("an answer");
            if response.status() != StatusCode::OK {
                refused.push(format!(
                    "{form} {}: {}",
                    credential.key_id,
                    response.status()
                ));
            }
        }
    }
    refused
}

/// `bulk-admin keys status` as (version, role, count) lines, e.g. `v2 current 4`.
fn status_lines(printed: &str) -> Vec<String> {
    printed
        .lines()
        .map(|line| line.replace('\t', " ").replace(" credentials", ""))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_by_bulk_admin_locks_out_no_credential_of_the_local_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let mut issued: Vec<Issued> = ["acme", "acme", "globex"]
        .iter()
        .map(|tenant| Issued::parse(&admin(data, &["credential", "create", "--tenant", tenant])))
        .collect();
    let env = [
        ("BULK_LOCAL_TENANT", "acme"),
        ("BULK_LOCAL_SECRET", "the-seeded-secret-of-acme"),
        ("BULK_LOCAL_WORKERS", "0"),
    ];
    let server = LocalServer::start(data, &env);
    issued.push(Issued {
        tenant: "acme".to_owned(),
        key_id: "acme".to_owned(),
        secret: "the-seeded-secret-of-acme".to_owned(),
    });
    assert_eq!(
        refused_by_local(&server, &issued).await,
        Vec::<String>::new()
    );
    assert_eq!(
        status_lines(&admin(data, &["keys", "status"])),
        ["v1 current 4"]
    );

    // Stopped after two credentials: both versions open and find.
    let first = admin(data, &["keys", "rotate", "--limit", "2"]);
    assert!(first.contains("added key version v2"), "{first}");
    assert!(first.contains("re-sealed 2 credentials"), "{first}");
    assert!(
        first.contains("2 credentials are still under older versions"),
        "{first}"
    );
    assert_eq!(
        status_lines(&admin(data, &["keys", "status"])),
        ["v2 current 2", "v1 retiring 2"]
    );
    assert_eq!(
        refused_by_local(&server, &issued).await,
        Vec::<String>::new()
    );

    // Run again: it finishes, and retires version 1.
    let second = admin(data, &["keys", "rotate"]);
    assert!(
        second.contains("going on with the rotation to key version v2"),
        "{second}"
    );
    assert!(second.contains("re-sealed 2 credentials"), "{second}");
    assert!(second.contains("retired key version v1"), "{second}");
    assert_eq!(
        status_lines(&admin(data, &["keys", "status"])),
        ["v2 current 4"]
    );
    assert_eq!(
        refused_by_local(&server, &issued).await,
        Vec::<String>::new()
    );
    let key_file = std::fs::read_to_string(data.join("master.key")).unwrap();
    let versions: Vec<&str> = key_file
        .lines()
        .filter(|line| line.starts_with('v'))
        .map(|line| line.split(' ').next().unwrap())
        .collect();
    assert_eq!(versions, ["v2"], "version 1 is gone from the key file");

    // A restart reads the rotated keyring (and re-seeds its credential under version 2).
    drop(server);
    let server = LocalServer::start(data, &env);
    assert_eq!(
        refused_by_local(&server, &issued).await,
        Vec::<String>::new()
    );
    let wrong = Issued {
        secret: "not-the-secret".to_owned(),
        ..issued[0].clone()
    };
    assert_eq!(refused_by_local(&server, &[wrong]).await.len(), 3);
}

/// Runs `bulk-admin --store aws ARGS` on `stack` as the operator (the emulator's administrator,
/// with the stack's settings and key); answers what it printed.
fn aws_admin(stack: &Stack, args: &[&str]) -> String {
    aws_admin_with(stack, &[], args)
}

/// [`aws_admin`] with more environment variables.
fn aws_admin_with(stack: &Stack, more: &[(&str, &str)], args: &[&str]) -> String {
    let settings = stack.settings();
    let mut command = Command::new(binary("bulk-admin"));
    for (name, _) in std::env::vars_os() {
        if name
            .to_str()
            .is_some_and(|name| name.starts_with("AWS_") || name.starts_with("BULK_"))
        {
            command.env_remove(&name);
        }
    }
    let output = command
        .args(["--store", "aws"])
        .args(args)
        .env("BULK_TABLE_NAME", &settings.table)
        .env("BULK_BUCKET_NAME", &settings.bucket)
        .env("BULK_QUEUE_URL", &settings.queue_url)
        .env(KMS_KEY_ENV, settings.kms_key_arn.as_deref().unwrap())
        .env(
            "AWS_ENDPOINT_URL",
            settings.endpoint_url.as_deref().unwrap(),
        )
        .env("AWS_REGION", &settings.region)
        .env("AWS_ACCESS_KEY_ID", stack.moto.admin.access_key_id())
        .env(
            "AWS_SECRET_ACCESS_KEY",
            stack.moto.admin.secret_access_key(),
        )
        .envs(more.iter().copied())
        .output()
        .expect("run bulk-admin");
    assert!(
        output.status.success(),
        "bulk-admin {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The (form, key id) of every request of `issued` that `handle` (the stack's functions)
/// refused.
async fn refused_by<F, Fut>(handle: F, issued: &[Issued]) -> Vec<String>
where
    F: Fn(ApiRequest) -> Fut,
    Fut: std::future::Future<Output = ApiResponse>,
{
    let mut refused = Vec::new();
    for credential in issued {
        for (form, target, auth) in credential.requests() {
            let headers = headers(&auth, "bulk.test", &target);
            let request = api_request(Method::GET, &target, headers, Default::default());
            let response = handle(request).await;
            if response.status() != StatusCode::OK {
                refused.push(format!(
                    "{form} {}: {}",
                    credential.key_id,
                    response.status()
                ));
            }
        }
    }
    refused
}

async fn refused_by_functions(app: &TestApp, issued: &[Issued]) -> Vec<String> {
    refused_by(|request| app.handle(request), issued).await
}

async fn refused_by_deployment(deployment: &Deployment, issued: &[Issued]) -> Vec<String> {
    refused_by(|request| deployment.handle(request), issued).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_by_bulk_admin_on_aws_locks_out_no_credential_of_the_functions() {
    let app = TestApp::new(Backend::Aws).await;
    let stack = app.stack().expect("a stack");
    let issued: Vec<Issued> = ["acme", "acme", "globex"]
        .iter()
        .map(|tenant| {
            Issued::parse(&aws_admin(
                stack,
                &["credential", "create", "--tenant", tenant],
            ))
        })
        .collect();
    // The functions (jobs, reads) have authenticated before the rotation: warm instances.
    assert_eq!(
        refused_by_functions(&app, &issued).await,
        Vec::<String>::new()
    );
    // Two more credentials of the app's own (acme's and globex's): five in all.
    assert_eq!(
        status_lines(&aws_admin(stack, &["keys", "status"])),
        ["v1 current 5"]
    );

    let first = aws_admin(stack, &["keys", "rotate", "--limit", "3"]);
    assert!(first.contains("added key version v2"), "{first}");
    assert_eq!(
        status_lines(&aws_admin(stack, &["keys", "status"])),
        ["v2 current 3", "v1 retiring 2"]
    );
    assert_eq!(
        refused_by_functions(&app, &issued).await,
        Vec::<String>::new()
    );

    let second = aws_admin(stack, &["keys", "rotate"]);
    assert!(second.contains("re-sealed 2 credentials"), "{second}");
    assert!(second.contains("retired key version v1"), "{second}");
    assert_eq!(
        status_lines(&aws_admin(stack, &["keys", "status"])),
        ["v2 current 5"]
    );
    assert_eq!(
        refused_by_functions(&app, &issued).await,
        Vec::<String>::new()
    );
    // Every request ran as its function, which may only decrypt: nothing was denied.
    assert_eq!(stack.denials().await, Vec::<String>::new());
    let decrypted = stack
        .decisions()
        .await
        .into_iter()
        .filter(|decision| decision["action"] == "kms:Decrypt" && decision["allowed"] == true)
        .count();
    assert!(
        decrypted > 0,
        "the functions opened secrets with the stack's key"
    );
}

/// A credential stored as a stack of before the keyring stored it: its secret sealed with the
/// master key itself (AES-256-GCM, nonce ‖ ciphertext in base64, no version), found by
/// HMAC-SHA256(master key, `"secret:" + secret`).
fn sealed_before_versions(
    master_key: &[u8; 32],
    tenant: &str,
    key_id: &str,
    secret: &str,
) -> Credential {
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    use base64::Engine;
    use hmac::Mac;
    let nonce = [7u8; 12];
    let aad = [tenant.as_bytes(), b"\0", key_id.as_bytes()].concat();
    let cipher = aes_gcm::Aes256Gcm::new(master_key.into());
    let payload = Payload {
        msg: secret.as_bytes(),
        aad: &aad,
    };
    let ciphertext = cipher
        .encrypt(aes_gcm::Nonce::from_slice(&nonce), payload)
        .unwrap();
    let sealed =
        base64::engine::general_purpose::STANDARD.encode([&nonce[..], &ciphertext].concat());
    let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(master_key).unwrap();
    mac.update(format!("secret:{secret}").as_bytes());
    Credential {
        tenant: TenantId::parse(tenant).unwrap(),
        key_id: key_id.to_owned(),
        name: "of before".to_owned(),
        sealed_secret: sealed,
        secret_lookup: hex::encode(mac.finalize().into_bytes()),
        revoked: false,
        created_at: Timestamp::now(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_of_a_stack_of_before_the_keyring_work_once_its_master_key_is_imported() {
    let deployment = Deployment {
        stack: fresh_stack("legacy-master-key").await,
        config: ServiceConfig::default(),
    };
    let stack = &deployment.stack;
    let master_key = [0x4d_u8; 32];
    let issued: Vec<Issued> = [("acme", "OLDACME"), ("globex", "OLDGLOBEX")]
        .iter()
        .map(|(tenant, key_id)| Issued {
            tenant: (*tenant).to_owned(),
            key_id: (*key_id).to_owned(),
            secret: format!("the-secret-of-{key_id}"),
        })
        .collect();
    for credential in &issued {
        let stored = sealed_before_versions(
            &master_key,
            &credential.tenant,
            &credential.key_id,
            &credential.secret,
        );
        stack
            .admin
            .ports
            .tenants
            .put_credential(&stored)
            .await
            .unwrap();
    }
    let refused = refused_by_deployment(&deployment, &issued).await;
    assert_eq!(refused.len(), 6, "no keyring yet: {refused:?}");

    let hex_key: String = master_key.iter().map(|b| format!("{b:02x}")).collect();
    let imported = aws_admin_with(
        stack,
        &[("BULK_MASTER_KEY", &hex_key)],
        &["keys", "import-master-key"],
    );
    assert!(
        imported.contains("imported the master key as key version v1"),
        "{imported}"
    );
    assert_eq!(
        status_lines(&aws_admin(stack, &["keys", "status"])),
        ["v1 current 2"]
    );
    assert_eq!(
        refused_by_deployment(&deployment, &issued).await,
        Vec::<String>::new()
    );

    let rotated = aws_admin(stack, &["keys", "rotate"]);
    assert!(rotated.contains("retired key version v1"), "{rotated}");
    assert_eq!(
        status_lines(&aws_admin(stack, &["keys", "status"])),
        ["v2 current 2"]
    );
    assert_eq!(
        refused_by_deployment(&deployment, &issued).await,
        Vec::<String>::new()
    );
    assert_eq!(stack.denials().await, Vec::<String>::new());
}
