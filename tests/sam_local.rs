//! `sam local invoke` as the README runs it, without Docker (which the suite cannot run):
//! `events/env.json`, the `--env-vars` file of the README's command, through the runtime
//! emulator.
//!
//! What a function gets from that file is what the SAM CLI makes of it, so the tests ask the SAM
//! CLI's own code (`LocalLambdaRunner`, which builds the environment of the function's
//! container) for each function's environment, with the dummy credentials and the region of the
//! README's command. The SAM CLI sets only the variables the template declares for a function (a
//! variable of the file that is not declared is dropped without a word; the template declares
//! `AWS_ENDPOINT_URL` for that reason), and takes the region and credentials from the caller
//! (`--region`, the shell's `AWS_ACCESS_KEY_ID`…), never from the file.
//!
//! The first test checks that environment for every function: every variable of the file
//! arrives, every function is pointed at the file's moto, table, bucket, queue and KMS key (by
//! its alias: `bulk-admin provision` makes it, with another id every time), and no function
//! gets a secret. The second runs the upload and the status function under
//! `cargo lambda watch` with the environment SAM gives them (less the `AWS_LAMBDA_*` variables
//! of the runtime, which the emulator sets itself), changed in two ways only: the file's
//! endpoint host and port (`host.docker.internal:5000`, the host as SAM's container sees it)
//! become the test's moto's, and the dummy credentials become those of a principal whose only
//! policy is the function's template policy (the tests' moto enforces IAM). The table, bucket
//! and queue (and the KMS key, under the file's alias) are made with the file's names by
//! `bulk-admin provision`, and the events' credential stored by `bulk-admin credential
//! install`, as the README does (here as moto's administrator). The file names the bucket as the template names it for stage `local` on
//! moto's account, so the template policies resolved for stage `local` and the file's table and
//! queue (`StackNames`) grant exactly the resources the file names: the names need no
//! translation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use bulk_tests::emulator::{
    build_features, is_test_crate_variable, sample_event, workspace_root, Emulator, HttpResponse,
};
use bulk_tests::iam::{create_principal, StackNames, ACCOUNT, REGION};
use bulk_tests::local_server::binary;
use bulk_tests::moto::{moto, Moto, Serving};
use bulk_tests::template::{functions, repository_root, sam_python, template_path};
use bulk_tests::{cases, expect};
use serde_json::Value;

/// The `--env-vars` file of the README's `sam local invoke`.
const ENV_FILE: &str = "events/env.json";
/// The functions invoked, and their answers.
const INVOCATIONS: &str = "sam_local/invocations.jsonl";
/// Where the file's moto is: the host as seen from SAM's container.
const FILE_MOTO: &str = "http://host.docker.internal:5000";
/// The README's `sam local invoke` runs with these dummy credentials in the shell and
/// `--region us-east-1`: the SAM CLI passes them on to the function.
const DUMMY_ACCESS_KEY_ID: &str = "test";
const DUMMY_SECRET_ACCESS_KEY: &str = "test";
/// The stage for which the template would name the file's bucket.
const STAGE: &str = "local";
/// The alias of the KMS key the file names (`BULK_KMS_KEY_ARN`, an alias ARN), as the template
/// names the key's alias for stage `local`.
const KEY_ALIAS: &str = "alias/bulk-users-local-secrets";
/// The credential of the sample events, as the README has `bulk-admin` install it.
const EVENTS_TENANT: &str = "acme";
const EVENTS_KEY_ID: &str = "acme-events";
const EVENTS_SECRET: &str = "change-me";

/// Prints, as JSON, the environment `sam local invoke --env-vars FILE --region REGION` gives
/// each function of the template (by logical id), the caller's credentials being those of the
/// environment: `LocalLambdaRunner._make_env_vars`, the SAM CLI's own code.
const SAM_ENVIRONMENTS: &str = "\
import json, os, sys
from samcli.lib.providers.sam_stack_provider import SamLocalStackProvider
from samcli.lib.providers.sam_function_provider import SamFunctionProvider
from samcli.commands.local.lib.local_lambda import LocalLambdaRunner
template, env_file, region = sys.argv[1:4]
stacks, _ = SamLocalStackProvider.get_stacks(template)
provider = SamFunctionProvider(stacks)
with open(env_file) as f:
    values = json.load(f)
root = os.path.dirname(os.path.abspath(template))
runner = LocalLambdaRunner(local_runtime=None, function_provider=provider, cwd=root,
                           real_path=root, aws_region=region, env_vars_values=values)
json.dump({f.name: runner._make_env_vars(f).resolve() for f in provider.get_all()}, sys.stdout)
";

type Environment = BTreeMap<String, String>;

/// Each function's environment under `sam local invoke` with [`ENV_FILE`], by logical id.
fn sam_environments() -> BTreeMap<String, Environment> {
    let python = sam_python();
    let mut command = Command::new(&python);
    command
        .args(["-c", SAM_ENVIRONMENTS])
        .arg(template_path())
        .arg(repository_root().join(ENV_FILE))
        .arg(REGION);
    // The caller's AWS configuration is the README's, not the machine's.
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(|name| name.starts_with("AWS_")) {
            command.env_remove(&name);
        }
    }
    let output = command
        .env("AWS_ACCESS_KEY_ID", DUMMY_ACCESS_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", DUMMY_SECRET_ACCESS_KEY)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("SAM_CLI_TELEMETRY", "0")
        .output()
        .unwrap_or_else(|error| {
            panic!(
                "cannot run {python} (the SAM CLI's Python): {error}. Install the SAM CLI with \
                 tests/run.sh or `.venv/bin/python -m pip install -r tests/requirements.txt`, \
                 or set SAM_CLI"
            )
        });
    assert!(
        output.status.success(),
        "the SAM CLI's code ({python}) could not resolve the functions' environment:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "the SAM CLI's environments are no JSON object of strings ({error}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// The file's variables for a function: `Parameters`, overridden by the function's own entry.
fn file_variables(file: &Value, logical_id: &str) -> Environment {
    let mut variables = Environment::new();
    for scope in ["Parameters", logical_id] {
        for (name, value) in file[scope].as_object().into_iter().flatten() {
            let value = value
                .as_str()
                .unwrap_or_else(|| panic!("{ENV_FILE}: {scope}.{name} is not a string"));
            variables.insert(name.clone(), value.to_owned());
        }
    }
    variables
}

fn env_file() -> Value {
    let path = repository_root().join(ENV_FILE);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn variable<'a>(environment: &'a Environment, logical_id: &str, name: &str) -> &'a str {
    environment
        .get(name)
        .map(String::as_str)
        .unwrap_or_else(|| panic!("{logical_id} gets no {name} from `sam local invoke`"))
}

/// The names the file gives the table, bucket and queue, as a stack of the template.
fn file_names(environment: &Environment, logical_id: &str) -> StackNames {
    let queue_url = variable(environment, logical_id, "BULK_QUEUE_URL");
    let names = StackNames {
        stack_name: format!("bulk-users-{STAGE}"),
        stage: STAGE.to_owned(),
        table: variable(environment, logical_id, "BULK_TABLE_NAME").to_owned(),
        queue_name: queue_url.rsplit('/').next().unwrap_or_default().to_owned(),
        queue_url: queue_url.to_owned(),
        // Known once `bulk-admin provision` made the key.
        kms_key_arn: String::new(),
    };
    assert_eq!(
        variable(environment, logical_id, "BULK_BUCKET_NAME"),
        names.bucket(),
        "{ENV_FILE} must name the bucket as the template names it for stage {STAGE}, so that \
         the template policies grant it"
    );
    assert_eq!(
        queue_url,
        format!("{FILE_MOTO}/{ACCOUNT}/{}", names.queue_name),
        "{ENV_FILE}: the queue's URL on the file's moto"
    );
    names
}

#[test]
fn the_env_file_points_every_function_at_moto() {
    let file = env_file();
    let template_functions = functions();
    for key in file.as_object().expect("env.json is a JSON object").keys() {
        assert!(
            key == "Parameters" || template_functions.iter().any(|f| &f.logical_id == key),
            "{ENV_FILE}: {key} is neither Parameters nor a function of template.yaml"
        );
    }
    let environments = sam_environments();
    let mut shared: Option<Environment> = None;
    for function in &template_functions {
        let id = &function.logical_id;
        let environment = environments
            .get(id)
            .unwrap_or_else(|| panic!("the SAM CLI finds no function {id}"));
        // A variable the template does not declare never reaches the function.
        for (name, value) in file_variables(&file, id) {
            assert_eq!(
                environment.get(&name),
                Some(&value),
                "{id}: {ENV_FILE} sets {name}, which `sam local invoke` does not pass on (the \
                 SAM CLI sets only the variables the template declares for a function)"
            );
        }
        assert_eq!(
            variable(environment, id, "AWS_ENDPOINT_URL"),
            FILE_MOTO,
            "{id}"
        );
        assert_eq!(variable(environment, id, "AWS_REGION"), REGION, "{id}");
        assert_eq!(
            variable(environment, id, "AWS_ACCESS_KEY_ID"),
            DUMMY_ACCESS_KEY_ID,
            "{id}"
        );
        file_names(environment, id);
        let resources: Environment = ["BULK_TABLE_NAME", "BULK_BUCKET_NAME", "BULK_QUEUE_URL"]
            .into_iter()
            .map(|name| (name.to_owned(), variable(environment, id, name).to_owned()))
            .collect();
        match &shared {
            None => shared = Some(resources),
            Some(first) => assert_eq!(&resources, first, "{id}: another table, bucket or queue"),
        }
        assert_eq!(
            variable(environment, id, "BULK_KMS_KEY_ARN"),
            format!("arn:aws:kms:{REGION}:{ACCOUNT}:{KEY_ALIAS}"),
            "{id}: the file's KMS key, by its alias"
        );
        for name in environment.keys() {
            assert!(
                name.starts_with("AWS_")
                    || !(name.contains("MASTER_KEY") || name.contains("SECRET")),
                "{id} gets {name}: no function gets a secret"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_and_status_answer_with_the_environment_sam_local_invoke_gives_them() {
    let environments = sam_environments();
    let moto = moto(Serving::Threaded).await;
    let upload = &environments["UploadFunction"];
    let names = file_names(upload, "UploadFunction");
    let moto_address = moto.endpoint.trim_start_matches("http://");
    let file_address = FILE_MOTO.trim_start_matches("http://");
    let on_moto = |value: &str| value.replace(file_address, moto_address);

    // The README's steps: the resources with the file's names (the KMS key under the file's
    // alias), then the events' credential, sealed under that key.
    let admin = bulk_admin();
    let provisioned = run_admin(
        &admin,
        &moto,
        &[],
        &[
            "provision",
            "--table",
            &names.table,
            "--bucket",
            &names.bucket(),
            "--queue",
            &names.queue_name,
            "--key-alias",
            KEY_ALIAS,
        ],
    );
    let key_arn = provisioned
        .split_whitespace()
        .find_map(|word| word.strip_prefix("BULK_KMS_KEY_ARN="))
        .unwrap_or_else(|| panic!("bulk-admin provision printed no key: {provisioned}"))
        .to_owned();
    let names = StackNames {
        kms_key_arn: key_arn,
        ..names
    };
    assert!(
        provisioned.contains(&format!("BULK_QUEUE_URL={}", on_moto(&names.queue_url))),
        "bulk-admin provision made another queue than the file's: {provisioned}"
    );
    let store: Vec<(&str, String)> = [
        "BULK_TABLE_NAME",
        "BULK_BUCKET_NAME",
        "BULK_QUEUE_URL",
        "BULK_KMS_KEY_ARN",
    ]
    .into_iter()
    .map(|name| (name, on_moto(variable(upload, "UploadFunction", name))))
    .chain([("BULK_CREDENTIAL_SECRET", EVENTS_SECRET.to_owned())])
    .collect();
    run_admin(
        &admin,
        &moto,
        &store,
        &[
            "--store",
            "aws",
            "credential",
            "install",
            "--tenant",
            EVENTS_TENANT,
            "--name",
            "events",
            "--key-id",
            EVENTS_KEY_ID,
        ],
    );

    for case in cases::load(INVOCATIONS) {
        let (id, binary) = (cases::name(&case), case["binary"].as_str().unwrap());
        let event = case["event"].as_str().unwrap();
        let answer = invoke(&moto, &names, &environments[id], binary, event, &on_moto).await;
        let expect = &case["expect"];
        let status = Some(u64::from(answer.status));
        assert_eq!(status, expect["status"].as_u64(), "{id}: {:?}", answer.raw);
        expect::check_body(&answer.body, expect, &format!("{id}: {}", answer.body));
    }

    let decisions = moto.decisions().await;
    let ours: Vec<&Value> = decisions
        .iter()
        .filter(|decision| {
            decision["principal"]
                .as_str()
                .is_some_and(|principal| principal.starts_with("sam-local-"))
        })
        .collect();
    for binary in ["upload", "status"] {
        assert!(
            ours.iter()
                .any(|decision| decision["principal"] == format!("sam-local-{binary}")),
            "{binary} made no request as its principal"
        );
    }
    let denied: Vec<&&Value> = ours
        .iter()
        .filter(|decision| decision["allowed"] == false)
        .collect();
    assert!(denied.is_empty(), "IAM denied: {denied:?}");
}

/// Runs function `binary` under the runtime emulator with `sam_environment` (its environment
/// under `sam local invoke`), its endpoint moved to the test's moto (`on_moto`) and its dummy
/// credentials replaced by those of a principal of its template policy, and invokes it with
/// `events/{event}`.
async fn invoke(
    moto: &Moto,
    names: &StackNames,
    sam_environment: &Environment,
    binary: &str,
    event: &str,
    on_moto: &dyn Fn(&str) -> String,
) -> HttpResponse {
    let credentials = create_principal(
        &moto.endpoint,
        &moto.admin,
        &format!("sam-local-{binary}"),
        &names.policy_of(binary),
    )
    .await;
    let mut environment = Environment::new();
    for (name, value) in sam_environment {
        // The runtime's own variables: the emulator sets them for the function's process.
        if name.starts_with("AWS_LAMBDA_") {
            continue;
        }
        let value = match name.as_str() {
            "AWS_ACCESS_KEY_ID" => {
                assert_eq!(value, DUMMY_ACCESS_KEY_ID, "{binary}: {name}");
                credentials.access_key_id().to_owned()
            }
            "AWS_SECRET_ACCESS_KEY" => {
                assert_eq!(value, DUMMY_SECRET_ACCESS_KEY, "{binary}: {name}");
                credentials.secret_access_key().to_owned()
            }
            _ => on_moto(value),
        };
        environment.insert(name.clone(), value);
    }
    eprintln!("{binary}: cargo lambda watch with {:?}", environment.keys());
    let emulator = Emulator::start_with_environment(environment).await;
    HttpResponse::parse(&emulator.invoke(binary, &sample_event(event)).await)
}

/// `bulk-admin` of these sources, built as the emulator builds the functions (`cargo build` in
/// the workspace root with [`build_features`]): the units of the workspace build, so nothing is
/// compiled twice.
fn bulk_admin() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(&cargo);
    command
        .args(["build", "--bin", "bulk-admin"])
        .current_dir(workspace_root());
    if let Some(features) = build_features() {
        command.args(["--features", &features]);
    }
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(is_test_crate_variable) {
            command.env_remove(&name);
        }
    }
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("cannot run {cargo}: {error}"));
    assert!(
        output.status.success(),
        "`{cargo} build --bin bulk-admin` failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    binary("bulk-admin")
}

/// Runs `bulk-admin ARGS` against the test's moto as its administrator, with `environment`
/// added; answers what it printed. Panics unless it succeeds.
fn run_admin(admin: &Path, moto: &Moto, environment: &[(&str, String)], args: &[&str]) -> String {
    let mut command = Command::new(admin);
    for (name, _) in std::env::vars_os() {
        if name
            .to_str()
            .is_some_and(|name| name.starts_with("AWS_") || name.starts_with("BULK_"))
        {
            command.env_remove(&name);
        }
    }
    let output = command
        .args(args)
        .env("AWS_ENDPOINT_URL", &moto.endpoint)
        .env("AWS_REGION", REGION)
        .env("AWS_ACCESS_KEY_ID", moto.admin.access_key_id())
        .env("AWS_SECRET_ACCESS_KEY", moto.admin.secret_access_key())
        .envs(environment.iter().map(|(name, value)| (name, value)))
        .output()
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", admin.display()));
    assert!(
        output.status.success(),
        "bulk-admin {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
