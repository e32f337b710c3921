//! The SAM template (`template.yaml`) against the code: cfn-lint reports nothing, the functions
//! are exactly the Lambda binaries, the HTTP routes are exactly the route table (canonical paths
//! and aliases) on the functions that serve them, every spelling the route resolver accepts
//! (aliases, the `.json` suffix of Zendesk clients) reaches the function of its operation through
//! the HTTP API's route selection, the read-only functions can only read, and every queue is
//! wired for partial batch failures, long enough visibility and a dead-letter queue.
//!
//! The template is read through cfn-lint's own YAML decoder (Python), which understands the
//! short-form intrinsics (`!Ref`, `!Sub`, `!GetAtt`) and prints the template as JSON.
//! cfn-lint comes from `$CFN_LINT`, else `.venv/bin/cfn-lint` (tests/requirements.txt), else
//! `cfn-lint` on `PATH`; the test fails when none runs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use bulk_users::adapters::aws::AwsSettings;
use bulk_users::api::{resolve, route_table, Dialect, Operation, RouteGroup, PATH_ALIASES};
use http::Method;
use serde_json::Value;

/// The binaries that serve HTTP routes, and their route group.
const HTTP_FUNCTIONS: [(&str, RouteGroup); 7] = [
    ("upload", RouteGroup::Upload),
    ("proceed", RouteGroup::Proceed),
    ("status", RouteGroup::Status),
    ("jobs", RouteGroup::Jobs),
    ("reads", RouteGroup::Reads),
    ("batches", RouteGroup::Batches),
    ("directory", RouteGroup::Directory),
];

/// The functions that must only read, and all they may do.
const READ_ONLY_FUNCTIONS: [&str; 3] = ["status", "jobs", "reads"];
const READ_ONLY_ACTIONS: [&str; 3] = [
    "dynamodb:GetItem",
    "dynamodb:Query",
    "dynamodb:BatchGetItem",
];

/// Lambda's default timeout, when neither the function nor the globals set one.
const DEFAULT_TIMEOUT_SECONDS: u64 = 3;
/// SQS's default visibility timeout.
const DEFAULT_VISIBILITY_SECONDS: u64 = 30;

// ------------------------------------------------------------------------------------------------
// The tests
// ------------------------------------------------------------------------------------------------

#[test]
fn cfn_lint_reports_nothing() {
    let (program, output) = run_cfn_lint(&[template_path().as_os_str().to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.trim().is_empty() && stderr.trim().is_empty(),
        "`{program} template.yaml` exited with {}:\n{stdout}{stderr}",
        output.status
    );
}

#[test]
fn the_functions_are_exactly_the_lambda_binaries() {
    let functions = functions();
    let in_template: BTreeSet<&str> = functions.iter().map(|f| f.binary.as_str()).collect();
    assert_eq!(
        in_template.len(),
        functions.len(),
        "two functions build the same binary"
    );
    let in_cargo = cargo_binaries();
    assert_eq!(
        in_template,
        in_cargo.iter().map(String::as_str).collect(),
        "template.yaml functions (left) vs functions/lambda/Cargo.toml [[bin]] (right)"
    );
    for function in &functions {
        let id = &function.logical_id;
        assert_eq!(function.metadata["BuildMethod"], "rust-cargolambda", "{id}");
        assert_eq!(
            function.property("CodeUri"),
            Some(&Value::from(".")),
            "{id}"
        );
        assert_eq!(
            function.property("Handler"),
            Some(&Value::from("bootstrap")),
            "{id}"
        );
        assert_eq!(
            function.property("Runtime"),
            Some(&Value::from("provided.al2023")),
            "{id}"
        );
        assert_eq!(
            function.property("Architectures"),
            Some(&serde_json::json!(["arm64"])),
            "{id}"
        );
    }
}

#[test]
fn every_function_gets_the_settings_of_the_aws_adapters() {
    for function in functions() {
        let variables = function.environment();
        let settings = AwsSettings::from_lookup(|name| {
            variables
                .get(name)
                .map(|_| "set-by-the-template".to_owned())
        });
        assert!(
            settings.is_ok(),
            "{}: {}",
            function.logical_id,
            settings.unwrap_err()
        );
        assert!(
            variables.contains_key("BULK_ROWS_PER_CHUNK"),
            "{}: BULK_ROWS_PER_CHUNK is not set",
            function.logical_id
        );
    }
}

#[test]
fn every_http_event_reaches_the_function_of_its_operation() {
    let mut seen = BTreeSet::new();
    for function in functions() {
        let events = function.http_events();
        let group = http_group(&function.binary);
        match group {
            None => assert!(
                events.is_empty(),
                "{} is no HTTP function but has HttpApi events {events:?}",
                function.logical_id
            ),
            Some(_) => assert!(
                !events.is_empty(),
                "HTTP function {} has no HttpApi event",
                function.logical_id
            ),
        }
        for (method, path) in events {
            assert!(
                seen.insert((method.clone(), path.clone())),
                "{method} {path} is declared twice"
            );
            let sample = sample_path(&path);
            let http_method = Method::from_bytes(method.as_bytes()).expect("an HTTP method");
            let route = resolve(&http_method, &sample).unwrap_or_else(|miss| {
                panic!(
                    "{}: {method} {path} is not in the route table ({miss:?})",
                    function.logical_id
                )
            });
            assert_eq!(
                Some(RouteGroup::of(route.operation)),
                group,
                "{method} {path} ({:?}) is on function {} (binary {})",
                route.operation,
                function.logical_id,
                function.binary
            );
        }
    }
}

#[test]
fn every_route_is_declared_for_the_canonical_path_and_every_alias() {
    let declared: BTreeSet<(String, String)> =
        functions().iter().flat_map(Function::http_events).collect();
    let missing: Vec<String> = spellings()
        .into_iter()
        .filter(|spelling| spelling.declared)
        .filter(|spelling| {
            !declared.contains(&(spelling.method.as_str().to_owned(), spelling.path.clone()))
        })
        .map(|spelling| {
            format!(
                "{} {} ({:?})",
                spelling.method, spelling.path, spelling.operation
            )
        })
        .collect();
    assert!(
        missing.is_empty(),
        "routes of the route table without an HttpApi event:\n{}",
        missing.join("\n")
    );
}

#[test]
fn every_spelling_of_every_route_reaches_the_function_of_its_operation() {
    let routes = http_api_routes();
    let mut wrong = Vec::new();
    for spelling in spellings() {
        let method = spelling.method.as_str();
        let request = format!("{method} {} ({:?})", spelling.sample, spelling.operation);
        // What the function does with it: the route resolver must agree on the operation.
        match resolve(&spelling.method, &spelling.sample) {
            Ok(route) if route.operation == spelling.operation => {}
            other => wrong.push(format!("{request}: the route resolver gives {other:?}")),
        }
        let wanted = RouteGroup::of(spelling.operation);
        match select_route(&routes, method, &spelling.sample) {
            None => wrong.push(format!("{request}: no HttpApi route matches (404)")),
            Some(route) if http_group(&route.binary) != Some(wanted) => wrong.push(format!(
                "{request}: the HTTP API sends it to {} {} on {} (binary {}), not to the \
                 function of {wanted:?}",
                route.method, route.path, route.function, route.binary
            )),
            Some(_) => {}
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn read_only_functions_can_only_read() {
    for binary in READ_ONLY_FUNCTIONS {
        let function = function_of(binary);
        let actions = function.iam_actions();
        assert!(!actions.is_empty(), "{binary}: no IAM actions at all");
        let extra: Vec<&String> = actions
            .iter()
            .filter(|action| !READ_ONLY_ACTIONS.contains(&action.as_str()))
            .collect();
        assert!(
            extra.is_empty(),
            "read-only function {binary} may also {extra:?}"
        );
    }
}

#[test]
fn no_function_is_granted_wildcards() {
    for function in functions() {
        for statement in function.policy_statements() {
            let id = &function.logical_id;
            for action in strings(&statement["Action"]) {
                assert!(!action.contains('*'), "{id}: wildcard action {action}");
            }
            assert!(
                !strings(&statement["Resource"]).contains(&"*".to_owned()),
                "{id}: statement on every resource: {statement}"
            );
            assert!(
                statement.get("NotAction").is_none() && statement.get("NotResource").is_none(),
                "{id}: NotAction / NotResource: {statement}"
            );
        }
    }
}

#[test]
fn queue_consumers_report_partial_failures_within_the_visibility_timeout() {
    let mut consumers = 0;
    for function in functions() {
        let timeout = function
            .property("Timeout")
            .map(|value| number(value).expect("a numeric Timeout"))
            .unwrap_or(DEFAULT_TIMEOUT_SECONDS);
        for (name, event) in function.events_of_type("SQS") {
            consumers += 1;
            let id = format!("{}.{name}", function.logical_id);
            let properties = &event["Properties"];
            assert!(
                strings(&properties["FunctionResponseTypes"])
                    .contains(&"ReportBatchItemFailures".to_owned()),
                "{id}: no FunctionResponseTypes [ReportBatchItemFailures]: the processor's \
                 partial batch responses would be ignored"
            );
            let queue_id = get_att_target(&properties["Queue"], "Arn")
                .unwrap_or_else(|| panic!("{id}: Queue is not !GetAtt <queue>.Arn"));
            let queue = resource(&queue_id, "AWS::SQS::Queue");
            let visibility = queue["Properties"]
                .get("VisibilityTimeout")
                .map(|value| number(value).expect("a numeric VisibilityTimeout"))
                .unwrap_or(DEFAULT_VISIBILITY_SECONDS);
            assert!(
                visibility >= 6 * timeout,
                "{queue_id}: VisibilityTimeout {visibility} s < 6 x {timeout} s (the timeout of \
                 {})",
                function.logical_id
            );
        }
        if http_group(&function.binary).is_none() {
            assert!(
                !function.events_of_type("SQS").is_empty()
                    || !function.events_of_type("Schedule").is_empty(),
                "{} serves no HTTP route, consumes no queue and runs on no schedule",
                function.logical_id
            );
        }
    }
    assert!(consumers > 0, "no SQS event source at all");
}

#[test]
fn every_queue_has_a_dead_letter_queue() {
    let queues = resources_of_type("AWS::SQS::Queue");
    let dead_letter_queues: BTreeSet<String> = queues
        .values()
        .filter_map(|queue| queue["Properties"].get("RedrivePolicy"))
        .map(|redrive| {
            get_att_target(&redrive["deadLetterTargetArn"], "Arn")
                .expect("deadLetterTargetArn is !GetAtt <queue>.Arn")
        })
        .collect();
    for (id, queue) in &queues {
        if dead_letter_queues.contains(id) {
            continue;
        }
        let redrive = queue["Properties"]
            .get("RedrivePolicy")
            .unwrap_or_else(|| panic!("queue {id} has no RedrivePolicy"));
        let target = get_att_target(&redrive["deadLetterTargetArn"], "Arn").unwrap();
        assert!(
            queues.contains_key(&target),
            "{id}: dead-letter queue {target} is not a queue of the template"
        );
        let max_receives = number(&redrive["maxReceiveCount"]).expect("a maxReceiveCount");
        assert!(
            (1..=10).contains(&max_receives),
            "{id}: maxReceiveCount {max_receives}"
        );
    }
    assert!(
        !dead_letter_queues.is_empty(),
        "no dead-letter queue at all"
    );
    // The processor ends a job `failed` on the delivery after which SQS gives its message up.
    let work_queue = &queues["WorkQueue"]["Properties"]["RedrivePolicy"];
    assert_eq!(
        number(&work_queue["maxReceiveCount"]),
        Some(u64::from(bulk_users::lambda::MAX_RECEIVES)),
        "WorkQueue's maxReceiveCount is the processor's MAX_RECEIVES"
    );
}

#[test]
fn new_files_under_incoming_notify_a_consumed_queue() {
    let buckets = resources_of_type("AWS::S3::Bucket");
    let consumed: BTreeSet<String> = functions()
        .iter()
        .flat_map(|function| function.events_of_type("SQS"))
        .filter_map(|(_, event)| get_att_target(&event["Properties"]["Queue"], "Arn"))
        .collect();
    let notifications: Vec<(&String, &Value)> = buckets
        .iter()
        .flat_map(|(id, bucket)| {
            bucket["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |configuration| (id, configuration))
        })
        .collect();
    let incoming = notifications.iter().find(|(_, configuration)| {
        configuration["Event"] == "s3:ObjectCreated:*"
            && configuration["Filter"]["S3Key"]["Rules"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|rule| rule["Name"] == "prefix" && rule["Value"] == "incoming/")
    });
    let (bucket_id, configuration) =
        incoming.expect("no bucket notifies s3:ObjectCreated:* under incoming/ to a queue");
    let queue = get_att_target(&configuration["Queue"], "Arn").expect("Queue: !GetAtt <q>.Arn");
    assert!(
        consumed.contains(&queue),
        "{queue} receives the notifications but no function consumes it"
    );
    // S3 checks that it may send to the queue when the notification is configured.
    let policy_ids: Vec<String> = resources_of_type("AWS::SQS::QueuePolicy")
        .into_iter()
        .filter(|(_, policy)| {
            policy["Properties"]["Queues"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|target| target["Ref"] == queue.as_str())
        })
        .map(|(id, _)| id)
        .collect();
    assert!(
        !policy_ids.is_empty(),
        "no AWS::SQS::QueuePolicy for {queue}"
    );
    let depends_on = strings(&template()["Resources"][bucket_id.as_str()]["DependsOn"]);
    assert!(
        policy_ids.iter().any(|id| depends_on.contains(id)),
        "{bucket_id} must DependsOn {policy_ids:?}"
    );
}

// ------------------------------------------------------------------------------------------------
// The template
// ------------------------------------------------------------------------------------------------

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn template_path() -> PathBuf {
    repository_root().join("template.yaml")
}

/// The template as JSON, decoded once.
fn template() -> &'static Value {
    static TEMPLATE: OnceLock<Value> = OnceLock::new();
    TEMPLATE.get_or_init(decode_template)
}

/// Decodes template.yaml with cfn-lint's decoder, in the first Python that has it.
fn decode_template() -> Value {
    const DECODE: &str = "\
import json, sys
from cfnlint.decode import decode
template, problems = decode(sys.argv[1])
if template is None or problems:
    sys.exit('cannot decode %s: %s' % (sys.argv[1], '; '.join(str(p) for p in problems)))
json.dump(template, sys.stdout)
";
    let path = template_path();
    let mut failures = Vec::new();
    for python in python_candidates() {
        let output = Command::new(&python)
            .args(["-c", DECODE])
            .arg(&path)
            .output();
        match output {
            Ok(output) if output.status.success() => {
                return serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
                    panic!("{python}: decoded template is no JSON: {error}")
                })
            }
            Ok(output) => failures.push(format!(
                "{python}: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            )),
            Err(error) => failures.push(format!("{python}: {error}")),
        }
    }
    panic!(
        "no Python with cfn-lint could decode template.yaml (run tests/run.sh, or \
         `.venv/bin/python -m pip install -r tests/requirements.txt`):\n{}",
        failures.join("\n")
    )
}

/// Pythons that may have cfnlint: the test venv's, the interpreter of the cfn-lint script in
/// use, then `python3`.
fn python_candidates() -> Vec<String> {
    let mut candidates = Vec::new();
    let venv_python = repository_root().join(".venv/bin/python");
    if venv_python.exists() {
        candidates.push(venv_python.display().to_string());
    }
    if let Some(interpreter) = script_interpreter(&cfn_lint_program()) {
        candidates.push(interpreter);
    }
    candidates.push("python3".to_owned());
    candidates.dedup();
    candidates
}

/// The `#!` interpreter of a script given by path or found on `PATH`.
fn script_interpreter(program: &str) -> Option<String> {
    let path = if program.contains('/') {
        PathBuf::from(program)
    } else {
        std::env::split_paths(&std::env::var_os("PATH")?)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())?
    };
    let text = std::fs::read(path).ok()?;
    let first_line = text.split(|byte| *byte == b'\n').next()?;
    let interpreter = std::str::from_utf8(first_line.strip_prefix(b"#!")?).ok()?;
    let interpreter = interpreter.split_whitespace().next()?;
    interpreter
        .contains("python")
        .then(|| interpreter.to_owned())
}

/// The cfn-lint to run: `$CFN_LINT`, else the test venv's, else `cfn-lint` on `PATH`.
fn cfn_lint_program() -> String {
    if let Some(program) = std::env::var_os("CFN_LINT").filter(|value| !value.is_empty()) {
        return program.to_string_lossy().into_owned();
    }
    let venv = repository_root().join(".venv/bin/cfn-lint");
    if venv.exists() {
        return venv.display().to_string();
    }
    "cfn-lint".to_owned()
}

fn run_cfn_lint(args: &[&str]) -> (String, Output) {
    let program = cfn_lint_program();
    let output = Command::new(&program)
        .args(args)
        .current_dir(repository_root())
        .output()
        .unwrap_or_else(|error| {
            panic!(
                "cannot run cfn-lint ({program}): {error}. Install it with tests/run.sh or \
                 `.venv/bin/python -m pip install -r tests/requirements.txt`, or set CFN_LINT"
            )
        });
    (program, output)
}

/// The `[[bin]]` names of functions/lambda/Cargo.toml.
fn cargo_binaries() -> BTreeSet<String> {
    let path = repository_root().join("functions/lambda/Cargo.toml");
    let manifest = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    let mut binaries = BTreeSet::new();
    let mut in_bin = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if let Some(value) = in_bin
            .then(|| line.strip_prefix("name"))
            .flatten()
            .and_then(|rest| rest.trim_start().strip_prefix('='))
        {
            binaries.insert(value.trim().trim_matches('"').to_owned());
        }
    }
    assert!(!binaries.is_empty(), "no [[bin]] in {}", path.display());
    binaries
}

/// The resources of one type, by logical id.
fn resources_of_type(kind: &str) -> BTreeMap<String, &'static Value> {
    template()["Resources"]
        .as_object()
        .expect("Resources")
        .iter()
        .filter(|(_, resource)| resource["Type"] == kind)
        .map(|(id, resource)| (id.clone(), resource))
        .collect()
}

/// A resource that must exist with this type.
fn resource(id: &str, kind: &str) -> &'static Value {
    let found = &template()["Resources"][id];
    assert_eq!(found["Type"], kind, "resource {id}");
    found
}

/// One `AWS::Serverless::Function`.
struct Function {
    logical_id: String,
    binary: String,
    metadata: &'static Value,
    properties: &'static Value,
}

fn functions() -> Vec<Function> {
    resources_of_type("AWS::Serverless::Function")
        .into_iter()
        .map(|(logical_id, resource)| {
            let binary = resource["Metadata"]["BuildProperties"]["Binary"]
                .as_str()
                .unwrap_or_else(|| panic!("{logical_id}: no Metadata.BuildProperties.Binary"))
                .to_owned();
            Function {
                logical_id,
                binary,
                metadata: &resource["Metadata"],
                properties: &resource["Properties"],
            }
        })
        .collect()
}

fn function_of(binary: &str) -> Function {
    functions()
        .into_iter()
        .find(|function| function.binary == binary)
        .unwrap_or_else(|| panic!("no function builds binary {binary}"))
}

fn http_group(binary: &str) -> Option<RouteGroup> {
    HTTP_FUNCTIONS
        .iter()
        .find(|(name, _)| *name == binary)
        .map(|(_, group)| *group)
}

impl Function {
    /// A property as deployed: the function's own, else the one of `Globals.Function`.
    fn property(&self, name: &str) -> Option<&'static Value> {
        self.properties
            .get(name)
            .or_else(|| template()["Globals"]["Function"].get(name))
    }

    /// The environment variables: the globals' merged with the function's own.
    fn environment(&self) -> BTreeMap<String, &'static Value> {
        let mut variables = BTreeMap::new();
        for scope in [&template()["Globals"]["Function"], self.properties] {
            if let Some(own) = scope["Environment"]["Variables"].as_object() {
                variables.extend(own.iter().map(|(name, value)| (name.clone(), value)));
            }
        }
        variables
    }

    fn events_of_type(&self, kind: &str) -> Vec<(String, &'static Value)> {
        self.properties["Events"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, event)| event["Type"] == kind)
            .map(|(name, event)| (name.clone(), event))
            .collect()
    }

    /// The (METHOD, path) of every HttpApi event.
    fn http_events(&self) -> Vec<(String, String)> {
        self.events_of_type("HttpApi")
            .into_iter()
            .map(|(name, event)| {
                let properties = &event["Properties"];
                let field = |key: &str| {
                    properties[key].as_str().unwrap_or_else(|| {
                        panic!("{}.{name}: HttpApi event without {key}", self.logical_id)
                    })
                };
                (field("Method").to_uppercase(), field("Path").to_owned())
            })
            .collect()
    }

    /// The inline policy statements. Anything else that grants permissions (a `Role`, a
    /// managed policy, a SAM policy template) fails: its actions cannot be checked here.
    fn policy_statements(&self) -> Vec<&'static Value> {
        let id = &self.logical_id;
        assert!(
            self.properties.get("Role").is_none(),
            "{id}: a Role of its own; the test checks Policies"
        );
        let mut statements = Vec::new();
        for policy in self.properties["Policies"].as_array().into_iter().flatten() {
            let statement = policy
                .get("Statement")
                .unwrap_or_else(|| panic!("{id}: a policy that is no inline document: {policy}"));
            match statement {
                Value::Array(list) => statements.extend(list),
                single => statements.push(single),
            }
        }
        statements
    }

    /// Every action an Allow statement grants.
    fn iam_actions(&self) -> BTreeSet<String> {
        self.policy_statements()
            .into_iter()
            .filter(|statement| statement["Effect"] == "Allow")
            .flat_map(|statement| strings(&statement["Action"]))
            .collect()
    }
}

// ------------------------------------------------------------------------------------------------
// Small helpers
// ------------------------------------------------------------------------------------------------

/// A string or a list of strings (IAM `Action`, `Resource`, `DependsOn`) as a list.
fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(text) => vec![text.clone()],
        Value::Array(list) => list
            .iter()
            .filter_map(|item| item.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// A number written as a number or a string.
fn number(value: &Value) -> Option<u64> {
    value
        .as_u64()
        .or_else(|| value.as_str().and_then(|text| text.parse().ok()))
}

/// The logical id of `!GetAtt <id>.<attribute>` (either spelling of Fn::GetAtt).
fn get_att_target(value: &Value, attribute: &str) -> Option<String> {
    match value.get("Fn::GetAtt")? {
        Value::Array(parts) if parts.len() == 2 && parts[1] == attribute => {
            parts[0].as_str().map(str::to_owned)
        }
        Value::String(dotted) => dotted
            .strip_suffix(&format!(".{attribute}"))
            .map(str::to_owned),
        _ => None,
    }
}

/// One spelling of a route of the route table that the route resolver accepts.
#[derive(Debug)]
struct Spelling {
    method: Method,
    operation: Operation,
    /// As an HttpApi `Path`.
    path: String,
    /// A request path of this spelling.
    sample: String,
    /// Whether the template must declare `path` itself. The `.json` spelling of a pattern
    /// ending in `{parameter}` is not: that parameter captures `1.json` already.
    declared: bool,
}

/// Every spelling of every route, derived from the route table: the canonical pattern, the
/// pattern under each of `PATH_ALIASES`, and for each of these in the Zendesk dialect the
/// `.json` suffix Zendesk clients append (the resolver's rule: `Dialect::of_path`).
fn spellings() -> Vec<Spelling> {
    let mut all = Vec::new();
    for spec in route_table() {
        let mut patterns = vec![spec.pattern.to_owned()];
        for (alias, canonical) in PATH_ALIASES {
            if let Some(rest) = spec.pattern.strip_prefix(canonical) {
                patterns.push(format!("{alias}{rest}"));
            }
        }
        for pattern in patterns {
            let spelling = |path: String, sample: String, declared| Spelling {
                method: spec.method.clone(),
                operation: spec.operation,
                path,
                sample,
                declared,
            };
            if Dialect::of_path(&pattern) == Dialect::Zendesk {
                let last = pattern.rsplit('/').next().unwrap_or_default();
                all.push(spelling(
                    format!("{pattern}.json"),
                    format!("{}.json", sample_path(&pattern)),
                    !is_parameter(last),
                ));
            }
            all.push(spelling(pattern.clone(), sample_path(&pattern), true));
        }
    }
    all
}

/// An HttpApi event of a function.
struct HttpRoute {
    method: String,
    path: String,
    function: String,
    binary: String,
}

/// Every HttpApi event of the template.
fn http_api_routes() -> Vec<HttpRoute> {
    let mut routes = Vec::new();
    for function in functions() {
        for (method, path) in function.http_events() {
            // The route selection below knows neither; the template uses neither.
            assert!(
                method != "ANY" && !path.contains("+}"),
                "{}: {method} {path}: ANY or a greedy path variable",
                function.logical_id
            );
            routes.push(HttpRoute {
                method,
                path,
                function: function.logical_id.clone(),
                binary: function.binary.clone(),
            });
        }
    }
    routes
}

/// The route API Gateway's HTTP API selects for a request: of the routes of its method that
/// match every segment (a `{parameter}` matches any non-empty segment), the most specific one,
/// where a literal segment beats a parameter (`GET /api/v2/job_statuses/show_many` over
/// `GET /api/v2/job_statuses/{id}`). `None`: the HTTP API answers 404 itself.
fn select_route<'a>(routes: &'a [HttpRoute], method: &str, path: &str) -> Option<&'a HttpRoute> {
    let given: Vec<&str> = path.split('/').collect();
    let mut matching: Vec<(Vec<bool>, &HttpRoute)> = routes
        .iter()
        .filter(|route| route.method == method)
        .filter_map(|route| {
            let wanted: Vec<&str> = route.path.split('/').collect();
            if wanted.len() != given.len() {
                return None;
            }
            let mut literals = Vec::with_capacity(wanted.len());
            for (w, g) in wanted.iter().zip(&given) {
                if is_parameter(w) && !g.is_empty() {
                    literals.push(false);
                } else if w == g {
                    literals.push(true);
                } else {
                    return None;
                }
            }
            Some((literals, route))
        })
        .collect();
    matching.sort_by(|a, b| b.0.cmp(&a.0));
    if let [(first, one), (second, other), ..] = matching.as_slice() {
        assert!(
            first != second,
            "{method} {path} matches {} and {} alike",
            one.path,
            other.path
        );
    }
    matching.first().map(|(_, route)| *route)
}

fn is_parameter(segment: &str) -> bool {
    segment.starts_with('{') && segment.ends_with('}')
}

/// A request path for a route path: every `{parameter}` segment becomes `1`.
fn sample_path(path: &str) -> String {
    path.split('/')
        .map(|segment| if is_parameter(segment) { "1" } else { segment })
        .collect::<Vec<_>>()
        .join("/")
}
