//! The SAM template (`template.yaml`) against the code: cfn-lint reports nothing, the functions
//! are exactly the Lambda binaries, the HTTP routes are exactly the route table (canonical paths
//! and aliases) on the functions that serve them, every spelling the route resolver accepts
//! (aliases, the `.json` suffix of Zendesk clients) reaches the function of its operation through
//! the HTTP API's route selection, the read-only functions write nothing but their request
//! counts, no grant is a wildcard, every queue is wired for partial batch failures, long
//! enough visibility and a dead-letter queue, no function gets a secret (its environment names
//! the stack's KMS key, no key), and only the functions that authenticate may decrypt with it. (That every grant is needed, and enough, is held
//! by running the functions under their policies: `lambda_runtime.rs`.)
//!
//! `sam build` is part of the product: `sam validate --lint` passes, and what `sam build` would
//! run for each function (`cargo lambda build --release --bin NAME` in its `CodeUri`) builds the
//! Lambda package alone, a member of the workspace with that binary and without SQLite. The
//! build itself (15 to 20 minutes here) is not run.
//!
//! The template is read through cfn-lint's own YAML decoder (`support/template.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use bulk_tests::template::{
    function_of, functions, repository_root, resource, resources_of_type, run_cfn_lint, run_sam,
    strings, template, template_path, Function,
};
use bulk_tests::{cases, HTTP_FUNCTIONS};
use bulk_users::adapters::aws::{AwsSettings, CONTEXT_KEYS, KMS_KEY_ENV};
use bulk_users::api::{resolve, route_table, Dialect, Operation, RouteGroup, PATH_ALIASES};
use http::Method;
use serde_json::Value;

/// The functions that must only read, and all they may do.
const READ_ONLY_FUNCTIONS: [&str; 3] = ["status", "jobs", "reads"];
/// The partition keys of the request counts (`RATE#{tenant}#{minute}`) and of the failed
/// authentications (`AUTHFAIL#{source}#{minute}`).
const RATE_KEYS: [&str; 2] = ["RATE#*", "AUTHFAIL#*"];
const READ_ONLY_ACTIONS: [&str; 4] = [
    "dynamodb:GetItem",
    "dynamodb:Query",
    "dynamodb:BatchGetItem",
    // Opening a credential's secret to authenticate: reads, writes nothing.
    "kms:Decrypt",
];

/// The properties every function must have.
const FUNCTION_PROPERTIES: &str = "template/function_properties.jsonl";
/// Crates that must never be in a Lambda build: the embedded store's SQLite.
const NOT_IN_A_LAMBDA: [&str; 2] = ["rusqlite", "libsqlite3-sys"];

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
        for property in cases::load(FUNCTION_PROPERTIES) {
            let name = cases::name(&property);
            assert_eq!(
                function.property(name),
                Some(&property["value"]),
                "{id}: {name}"
            );
        }
    }
}

/// The SAM CLI's own check: the transform of the template, then cfn-lint on the result. It
/// needs a region, not credentials.
#[test]
fn sam_validate_lint_passes() {
    let template = template_path();
    let template = template.to_str().expect("a UTF-8 path");
    let (program, output) = run_sam(
        &["validate", "--lint", "--template-file", template],
        &[("AWS_DEFAULT_REGION", "us-east-1")],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("is a valid SAM Template"),
        "`{program} validate --lint` exited with {}:\n{stdout}{stderr}",
        output.status
    );
}

/// For each function, `sam build` (`BuildMethod: rust-cargolambda`) runs `cargo lambda build
/// --release --bin BINARY` in the function's `CodeUri`. There, cargo must find a package of
/// this workspace (its target dir shared) that has that binary, and build its dependencies
/// without the embedded store: at the workspace root it would select the default members and
/// compile SQLite into every Lambda build.
#[test]
fn sam_build_builds_each_binary_from_the_lambda_package_alone() {
    let root = repository_root();
    let mut packages: BTreeMap<PathBuf, (Value, String)> = BTreeMap::new();
    for function in functions() {
        let id = &function.logical_id;
        assert_eq!(
            function.metadata["BuildMethod"], "rust-cargolambda",
            "{id}: not built by cargo-lambda"
        );
        let code_uri = function
            .property("CodeUri")
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{id}: CodeUri is not a folder of the repository"));
        let dir = root.join(code_uri);
        assert!(
            dir.join("Cargo.toml").is_file(),
            "{id}: CodeUri {code_uri} has no Cargo.toml"
        );
        let target = lambda_target(&function);
        let (metadata, package_target) = packages.entry(dir.clone()).or_insert_with(|| {
            // With the dependencies: `resolve.root` is the package cargo picks in `dir`.
            let metadata = cargo_json(&dir, &["metadata", "--format-version", "1"]);
            (metadata, target.clone())
        });
        assert_eq!(
            &target, package_target,
            "{id}: functions of {code_uri} built for different architectures"
        );
        // The package cargo picks when run in that folder: the folder's own.
        let package_id = metadata["resolve"]["root"].as_str().unwrap_or_else(|| {
            panic!("{id}: cargo finds no package of its own in {code_uri} (a virtual manifest)")
        });
        assert!(
            strings(&metadata["workspace_members"]).contains(&package_id.to_owned()),
            "{id}: {package_id} is no member of the workspace"
        );
        assert_eq!(
            canonical(metadata["workspace_root"].as_str().unwrap_or_default()),
            canonical(&root),
            "{id}: {code_uri} builds in another workspace"
        );
        assert_eq!(
            canonical(metadata["target_directory"].as_str().unwrap_or_default()),
            canonical(root.join("target")),
            "{id}: {code_uri} does not share the workspace's target dir"
        );
        let package = metadata["packages"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|package| package["id"] == package_id)
            .unwrap_or_else(|| panic!("{id}: {package_id} is not among the packages"));
        let binaries: Vec<&str> = package["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|target| strings(&target["kind"]).contains(&"bin".to_owned()))
            .filter_map(|target| target["name"].as_str())
            .collect();
        assert!(
            binaries.contains(&function.binary.as_str()),
            "{id}: {} has no [[bin]] {} (it has {binaries:?})",
            package["name"],
            function.binary
        );
    }
    // Not the `resolve` of `cargo metadata`: it unifies features over every member of the
    // workspace. `cargo tree` run in the folder resolves them as the build there does.
    for (dir, (_, target)) in &packages {
        let tree = cargo_output(
            dir,
            &[
                "tree", "-e", "normal", "--target", target, "--prefix", "none", "-f", "{p}",
            ],
        );
        let unwanted: BTreeSet<&str> = tree
            .lines()
            .filter(|line| {
                let name = line.split_whitespace().next().unwrap_or_default();
                NOT_IN_A_LAMBDA.contains(&name)
            })
            .collect();
        assert!(
            unwanted.is_empty(),
            "the Lambda build in {} compiles {unwanted:?}",
            dir.display()
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

/// `AWS_ENDPOINT_URL` is declared for `sam local invoke --env-vars` (which sets only declared
/// variables), and deployed only when the `EndpointUrl` parameter is set: by default the
/// functions talk to AWS itself.
#[test]
fn the_endpoint_override_is_deployed_only_when_asked_for() {
    let template = template();
    assert_eq!(
        template["Parameters"]["EndpointUrl"]["Default"], "",
        "EndpointUrl must default to empty"
    );
    assert_eq!(
        template["Globals"]["Function"]["Environment"]["Variables"]["AWS_ENDPOINT_URL"],
        serde_json::json!({"Fn::If": [
            "HasEndpointUrl", {"Ref": "EndpointUrl"}, {"Ref": "AWS::NoValue"}
        ]})
    );
    assert_eq!(
        template["Conditions"]["HasEndpointUrl"],
        serde_json::json!({"Fn::Not": [{"Fn::Equals": [{"Ref": "EndpointUrl"}, ""]}]})
    );
    for function in functions() {
        assert!(
            function.properties["Environment"]["Variables"]
                .get("AWS_ENDPOINT_URL")
                .is_none(),
            "{} sets AWS_ENDPOINT_URL itself",
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

/// The read-only functions read, and write one thing only: every authenticated request counts
/// itself in its tenant's request window (`count_request`, an UpdateItem of `RATE#{tenant}#…`),
/// and a failed authentication in its address's (`AUTHFAIL#{source}#…`). That write is granted
/// under a `dynamodb:LeadingKeys` condition that confines it to those items; any other write,
/// or that one unconfined, fails.
#[test]
fn read_only_functions_can_only_read_and_count_requests_and_failures() {
    for binary in READ_ONLY_FUNCTIONS {
        let function = function_of(binary);
        let mut wrong = Vec::new();
        for statement in function.policy_statements() {
            let actions = strings(&statement["Action"]);
            let writes: Vec<&String> = actions
                .iter()
                .filter(|action| !READ_ONLY_ACTIONS.contains(&action.as_str()))
                .collect();
            if writes.is_empty() {
                continue;
            }
            let confined = writes == [&"dynamodb:UpdateItem".to_owned()]
                && statement["Condition"]
                    == serde_json::json!({
                        "ForAllValues:StringLike": {"dynamodb:LeadingKeys": RATE_KEYS}
                    });
            if !confined {
                wrong.push(statement.to_string());
            }
        }
        assert!(
            wrong.is_empty(),
            "read-only function {binary} may write more than its request counts:\n{}",
            wrong.join("\n")
        );
        assert!(
            function.iam_actions().contains("dynamodb:UpdateItem"),
            "{binary} cannot count its requests"
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

/// Words that name a secret in a parameter or a variable.
const SECRET_WORDS: [&str; 5] = ["SECRET", "MASTER", "PASSWORD", "TOKEN", "PRIVATE"];

/// No parameter holds a secret (none is `NoEcho`, none is named like one: the master key of
/// before is gone), and no function's environment holds one: the only key it names is the
/// stack's KMS key, by its ARN.
#[test]
fn no_secret_is_a_parameter_or_in_any_function_environment() {
    let text = std::fs::read_to_string(template_path()).expect("template.yaml");
    assert!(
        !text.contains("BULK_MASTER_KEY"),
        "a master key in the template"
    );
    for (name, parameter) in template()["Parameters"].as_object().expect("Parameters") {
        let upper = name.to_uppercase();
        assert!(
            parameter.get("NoEcho").is_none() && !SECRET_WORDS.iter().any(|w| upper.contains(w)),
            "parameter {name} holds a secret"
        );
        assert_ne!(upper, "MASTERKEY");
    }
    for function in functions() {
        let id = &function.logical_id;
        for (name, value) in function.environment() {
            assert!(
                !SECRET_WORDS.iter().any(|word| name.contains(word)),
                "{id}: {name} names a secret"
            );
            let parameter = value.get("Ref").and_then(Value::as_str);
            if let Some(parameter) = parameter {
                assert!(
                    template()["Parameters"][parameter].get("NoEcho").is_none(),
                    "{id}: {name} is the NoEcho parameter {parameter}"
                );
            }
        }
        let key = function.environment()[KMS_KEY_ENV];
        assert_eq!(
            get_att_target(key, "Arn").as_deref(),
            Some("SecretsKey"),
            "{id}: {KMS_KEY_ENV} is not the stack's key: {key}"
        );
    }
}

/// The functions that authenticate (the HTTP functions) may `kms:Decrypt` with the stack's key,
/// and only with the encryption contexts of sealed secrets and wrapped roots; every other
/// function has no KMS permission at all, and none may generate data keys (the operator's).
#[test]
fn only_the_functions_that_authenticate_may_decrypt_with_the_stack_key() {
    let contexts = serde_json::json!({
        "ForAllValues:StringEquals": {"kms:EncryptionContextKeys": CONTEXT_KEYS},
        "ForAnyValue:StringEquals": {"kms:EncryptionContextKeys": CONTEXT_KEYS},
    });
    let mut decrypting = BTreeSet::new();
    for function in functions() {
        let id = &function.logical_id;
        let kms: Vec<&Value> = function
            .policy_statements()
            .into_iter()
            .filter(|statement| {
                strings(&statement["Action"])
                    .iter()
                    .any(|action| action.to_lowercase().starts_with("kms:"))
            })
            .collect();
        if kms.is_empty() {
            continue;
        }
        assert_eq!(kms.len(), 1, "{id}: KMS in more than one statement");
        let statement = kms[0];
        assert_eq!(strings(&statement["Action"]), ["kms:Decrypt"], "{id}");
        assert_eq!(statement["Effect"], "Allow", "{id}");
        assert_eq!(
            get_att_target(&statement["Resource"], "Arn").as_deref(),
            Some("SecretsKey"),
            "{id}: kms:Decrypt on another resource than the stack's key"
        );
        assert_eq!(statement["Condition"], contexts, "{id}: the condition");
        decrypting.insert(function.binary.clone());
    }
    let authenticating: BTreeSet<String> = HTTP_FUNCTIONS
        .iter()
        .map(|(binary, _)| (*binary).to_owned())
        .collect();
    assert_eq!(decrypting, authenticating);
}

/// The key is customer-managed, its material rotated yearly, administered by the account
/// (whose IAM policies say who uses it), retained with the table, and has an alias.
#[test]
fn the_secrets_key_is_customer_managed_rotated_and_retained() {
    let key = resource("SecretsKey", "AWS::KMS::Key");
    assert_eq!(key["DeletionPolicy"], "Retain");
    assert_eq!(key["UpdateReplacePolicy"], "Retain");
    let properties = &key["Properties"];
    assert_eq!(properties["EnableKeyRotation"], true);
    let statements = properties["KeyPolicy"]["Statement"]
        .as_array()
        .expect("a key policy");
    assert_eq!(
        statements.len(),
        1,
        "the account administers: {statements:?}"
    );
    let root = serde_json::json!({"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"});
    assert_eq!(statements[0]["Principal"]["AWS"], root);
    let alias = resource("SecretsKeyAlias", "AWS::KMS::Alias");
    assert_eq!(
        alias["Properties"]["TargetKeyId"],
        serde_json::json!({"Ref": "SecretsKey"})
    );
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

/// Lambda writes each function's lines as JSON (the runtime's subscriber formats them so when
/// `LogFormat` is JSON: tests/observability.rs reads them) into a log group of the stack's,
/// whose retention the stack bounds.
#[test]
fn every_function_logs_json_lines_to_a_group_of_its_own() {
    let groups = resources_of_type("AWS::Logs::LogGroup");
    let mut used = BTreeSet::new();
    for function in functions() {
        let logging = function.property("LoggingConfig");
        let logging =
            logging.unwrap_or_else(|| panic!("{}: no LoggingConfig", function.logical_id));
        assert_eq!(logging["LogFormat"], "JSON", "{}", function.logical_id);
        let group = logging["LogGroup"]["Ref"].as_str().unwrap_or_default();
        assert!(
            groups.contains_key(group),
            "{}: log group {group:?}",
            function.logical_id
        );
        assert!(
            used.insert(group),
            "{}: {group} is another function's",
            function.logical_id
        );
    }
}

/// What an operator must hear of is alarmed, to the stack's topic: messages in either
/// dead-letter queue, the processor's errors and throttles, 5xx answers above 1 % of the API's,
/// throttled reads or writes of the table, and jobs in progress past the stale window (the
/// sweeper's `StaleJobs` metric).
#[test]
fn alarms_watch_dead_letters_the_processor_the_api_and_the_table() {
    let alarms = resources_of_type("AWS::CloudWatch::Alarm");
    let watched: BTreeSet<String> = alarms
        .values()
        .flat_map(|alarm| {
            let alarm = &alarm["Properties"];
            assert_eq!(
                alarm["AlarmActions"],
                serde_json::json!([{"Ref": "AlarmTopic"}])
            );
            let metrics: Vec<&Value> = match alarm["Metrics"].as_array() {
                Some(metrics) => metrics.iter().map(|m| &m["MetricStat"]["Metric"]).collect(),
                None => vec![alarm],
            };
            metrics
                .into_iter()
                .filter(|metric| metric.is_object())
                .map(|metric| {
                    let target = &metric["Dimensions"][0]["Value"];
                    let target = target["Ref"]
                        .as_str()
                        .or_else(|| target["Fn::GetAtt"][0].as_str())
                        .unwrap_or_default();
                    format!(
                        "{} {} {target}",
                        metric["Namespace"].as_str().unwrap_or_default(),
                        metric["MetricName"].as_str().unwrap_or_default()
                    )
                })
        })
        .collect();
    resource("AlarmTopic", "AWS::SNS::Topic");
    for expected in [
        "AWS/SQS ApproximateNumberOfMessagesVisible WorkDeadLetterQueue",
        "AWS/SQS ApproximateNumberOfMessagesVisible IntakeDeadLetterQueue",
        "AWS/Lambda Errors ProcessorFunction",
        "AWS/Lambda Throttles ProcessorFunction",
        "AWS/ApiGateway 5xx HttpApi",
        "AWS/ApiGateway Count HttpApi",
        "AWS/DynamoDB ReadThrottleEvents Table",
        "AWS/DynamoDB WriteThrottleEvents Table",
        "BulkUsers StaleJobs SweeperFunction",
    ] {
        assert!(
            watched.contains(expected),
            "no alarm on {expected}: {watched:#?}"
        );
    }
}

/// The table cannot be deleted by accident (deletion protection, and it outlives the stack),
/// and the uploads bucket keeps the versions of its files, the ones no longer current expiring
/// after a day with their delete markers.
#[test]
fn the_table_is_protected_and_old_file_versions_expire() {
    let table = &resource("Table", "AWS::DynamoDB::Table");
    assert_eq!(table["Properties"]["DeletionProtectionEnabled"], true);
    assert_eq!(table["DeletionPolicy"], "Retain");
    let bucket = &resource("UploadsBucket", "AWS::S3::Bucket")["Properties"];
    assert_eq!(bucket["VersioningConfiguration"]["Status"], "Enabled");
    let rules = bucket["LifecycleConfiguration"]["Rules"]
        .as_array()
        .expect("lifecycle rules");
    let enabled = |field: &str| {
        rules
            .iter()
            .filter(|rule| rule["Status"] == "Enabled")
            .find_map(|rule| rule.get(field).cloned())
    };
    assert_eq!(
        enabled("NoncurrentVersionExpiration"),
        Some(serde_json::json!({"NoncurrentDays": 1}))
    );
    assert_eq!(
        enabled("ExpiredObjectDeleteMarker"),
        Some(Value::Bool(true))
    );
}

/// The blast radius is bounded by parameters: the HTTP API throttles every route by default
/// (rate and burst), and the work queue invokes at most `ProcessorMaxConcurrency` processors at
/// once (SQS's `ScalingConfig.MaximumConcurrency`, at least 2 as AWS requires).
#[test]
fn the_api_throttles_and_the_processors_are_capped() {
    let parameters = &template()["Parameters"];
    let api = &resource("HttpApi", "AWS::Serverless::HttpApi")["Properties"];
    let settings = &api["DefaultRouteSettings"];
    for (setting, parameter) in [
        ("ThrottlingRateLimit", "ApiThrottlingRateLimit"),
        ("ThrottlingBurstLimit", "ApiThrottlingBurstLimit"),
    ] {
        assert_eq!(settings[setting], serde_json::json!({"Ref": parameter}));
        assert_eq!(parameters[parameter]["Type"], "Number");
        assert!(number(&parameters[parameter]["Default"]).unwrap_or(0) >= 1);
    }
    let processor = function_of("processor");
    let events = processor.events_of_type("SQS");
    let [(_, event)] = events.as_slice() else {
        panic!("the processor has one queue: {events:?}");
    };
    assert_eq!(
        event["Properties"]["ScalingConfig"]["MaximumConcurrency"],
        serde_json::json!({"Ref": "ProcessorMaxConcurrency"})
    );
    let cap = &parameters["ProcessorMaxConcurrency"];
    assert_eq!(number(&cap["MinValue"]), Some(2), "SQS's floor");
    assert!(number(&cap["MaxValue"]).unwrap_or(u64::MAX) <= 1000);
}

/// Only the principals the template names may write under `incoming/`: the bucket policy
/// denies `s3:PutObject` there to every other principal of the account, whatever its identity
/// policy grants, and names exactly the functions whose policies write there, plus the
/// operators' uploaders of `UploaderPrincipalArns`.
///
/// Evaluated here, not on the emulator: moto evaluates a bucket policy without the request's
/// principal (a condition on `aws:PrincipalArn` cannot hold or fail there as it does on AWS),
/// and the tests' IAM enforcement (`support/moto_launcher.py`) models identity policies only.
/// So this test resolves the deployed policy (intrinsics and the `UploaderPrincipalArns`
/// condition, for a deployment with and without uploaders) and evaluates its Deny statements
/// for each principal as S3 does: an explicit Deny of the bucket policy refuses the request.
/// That an uploader's own identity policy confines it to one tenant is tested on the emulator
/// (`intake::an_uploaders_policy_confines_it_to_its_tenant`).
#[test]
fn only_the_named_principals_may_write_under_incoming() {
    let writers: BTreeSet<String> = functions()
        .into_iter()
        .filter(writes_under_incoming)
        .map(|function| format!("{}Role", function.logical_id))
        .collect();
    let expected: BTreeSet<String> = ["UploadFunctionRole", "IntakeFunctionRole"]
        .map(str::to_owned)
        .into();
    assert_eq!(
        writers, expected,
        "the functions that put files under incoming/"
    );
    let uploader = "arn:aws:iam::123456789012:role/acme-uploader";
    let role = |name: &str| format!("arn:aws:iam::123456789012:role/{name}");
    for uploaders in [vec![], vec![uploader.to_owned()]] {
        let policy = bucket_policy(&uploaders);
        for name in ["UploadFunctionRole", "IntakeFunctionRole"] {
            let allowed = !policy_denies(&policy, &role(name), "incoming/acme/users.json");
            assert!(allowed, "{name} may write under incoming/ ({uploaders:?})");
        }
        let operator = !policy_denies(&policy, uploader, "incoming/acme/users.json");
        assert_eq!(operator, !uploaders.is_empty(), "the uploader, when named");
        for other in [
            role("ProcessorFunctionRole"),
            role("Admin"),
            "arn:aws:iam::123456789012:user/someone".to_owned(),
            "arn:aws:iam::123456789012:root".to_owned(),
        ] {
            let denied = policy_denies(&policy, &other, "incoming/acme/users.json");
            assert!(denied, "{other} is refused under incoming/ ({uploaders:?})");
            let elsewhere = policy_denies(&policy, &other, "uploads/acme/file.json");
            assert!(
                !elsewhere,
                "{other}: the bucket policy leaves uploads/ to IAM"
            );
        }
    }
}

/// Whether a function's policy grants `s3:PutObject` under `incoming/`.
fn writes_under_incoming(function: &Function) -> bool {
    function.policy_statements().into_iter().any(|statement| {
        let resources = strings(&statement["Resource"]);
        let subs = statement["Resource"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let subs = subs.iter().chain(std::iter::once(&statement["Resource"]));
        let under_incoming = subs
            .filter_map(|resource| resource["Fn::Sub"].as_str())
            .chain(resources.iter().map(String::as_str))
            .any(|resource| resource.ends_with("/incoming/*"));
        statement["Effect"] == "Allow"
            && strings(&statement["Action"])
                .iter()
                .any(|a| a == "s3:PutObject")
            && under_incoming
    })
}

/// The uploads bucket's policy as deployed with `UploaderPrincipalArns` = `uploaders`.
fn bucket_policy(uploaders: &[String]) -> Value {
    let policy = resource("UploadsBucketPolicy", "AWS::S3::BucketPolicy");
    resolve_intrinsics(&policy["Properties"]["PolicyDocument"], uploaders)
}

/// A value of the bucket policy with its intrinsics resolved (roles named by logical id).
fn resolve_intrinsics(value: &Value, uploaders: &[String]) -> Value {
    let resolve = |value: &Value| resolve_intrinsics(value, uploaders);
    let list = |value: &Value| -> Vec<String> { strings(&resolve(value)) };
    let Value::Object(map) = value else {
        return match value {
            Value::Array(items) => Value::Array(items.iter().map(resolve).collect()),
            other => other.clone(),
        };
    };
    let intrinsic = |name: &String| name == "Ref" || name.starts_with("Fn::");
    let single = map
        .iter()
        .next()
        .filter(|(name, _)| map.len() == 1 && intrinsic(name));
    let Some((name, argument)) = single else {
        return Value::Object(map.iter().map(|(k, v)| (k.clone(), resolve(v))).collect());
    };
    match name.as_str() {
        "Fn::If" => {
            let chosen = if uploaders.is_empty() { 2 } else { 1 };
            assert_eq!(argument[0], "HasUploaderPrincipals", "{argument}");
            resolve(&argument[chosen])
        }
        "Fn::Join" => Value::String(list(&argument[1]).join(argument[0].as_str().unwrap_or(""))),
        "Fn::Split" => {
            let text = resolve(&argument[1]);
            let parts = text
                .as_str()
                .unwrap_or_default()
                .split(argument[0].as_str().unwrap_or(","));
            Value::from(parts.map(str::to_owned).collect::<Vec<_>>())
        }
        "Ref" if argument == "UploaderPrincipalArns" => Value::from(uploaders.to_vec()),
        "Fn::GetAtt" => Value::String(match get_att_target(value, "Arn").as_deref() {
            Some("UploadsBucket") => "arn:aws:s3:::uploads".to_owned(),
            Some(role) => format!("arn:aws:iam::123456789012:role/{role}"),
            None => panic!("not understood: {value}"),
        }),
        "Fn::Sub" => Value::String(
            argument
                .as_str()
                .unwrap_or_default()
                .replace("${UploadsBucket.Arn}", "arn:aws:s3:::uploads"),
        ),
        _ => panic!("the bucket policy's {name} is not understood here: {value}"),
    }
}

/// Whether a Deny statement of the bucket policy refuses `principal` an `s3:PutObject` of
/// `key` over TLS.
fn policy_denies(policy: &Value, principal: &str, key: &str) -> bool {
    let object = format!("arn:aws:s3:::uploads/{key}");
    let statements = policy["Statement"].as_array().expect("statements");
    statements
        .iter()
        .filter(|s| s["Effect"] == "Deny")
        .any(|statement| {
            let action = strings(&statement["Action"])
                .iter()
                .any(|a| iam_glob(a, "s3:PutObject"));
            let resource = strings(&statement["Resource"])
                .iter()
                .any(|r| iam_glob(r, &object));
            action && resource && conditions_hold(&statement["Condition"], principal)
        })
}

/// Whether a statement's conditions hold for a request of `principal` over TLS (the operators
/// the bucket policy uses: `Bool` on `aws:SecureTransport`, `ArnNotLike` on
/// `aws:PrincipalArn`).
fn conditions_hold(conditions: &Value, principal: &str) -> bool {
    let Some(conditions) = conditions.as_object() else {
        return true;
    };
    conditions.iter().all(|(operator, keys)| {
        let keys = keys.as_object().expect("condition keys");
        keys.iter()
            .all(|(key, wanted)| match (operator.as_str(), key.as_str()) {
                ("Bool", "aws:SecureTransport") => {
                    strings(wanted) == ["true"] || wanted == &Value::Bool(true)
                }
                ("ArnNotLike", "aws:PrincipalArn") => {
                    !strings(wanted).iter().any(|arn| iam_glob(arn, principal))
                }
                _ => panic!("the bucket policy's {operator} on {key} is not evaluated here"),
            })
    })
}

/// IAM's wildcard match: `*` is any run of characters, `?` any one.
fn iam_glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => {
            pattern.len() == text.len()
                && pattern
                    .chars()
                    .zip(text.chars())
                    .all(|(p, t)| p == '?' || p == t)
        }
        Some((head, rest)) => {
            text.len() >= head.len()
                && iam_glob(head, &text[..head.len()])
                && (0..=text.len() - head.len()).any(|at| iam_glob(rest, &text[head.len() + at..]))
        }
    }
}

/// Every item that expires carries `expires_at` (epoch seconds; read by that name in the
/// contracts' `lifecycle::every_record_of_a_job_carries_its_expiry`): the table's time to
/// live deletes by it.
#[test]
fn the_table_deletes_expired_items_by_their_time_to_live() {
    let table = &resource("Table", "AWS::DynamoDB::Table");
    assert_eq!(
        table["Properties"]["TimeToLiveSpecification"],
        serde_json::json!({"AttributeName": "expires_at", "Enabled": true})
    );
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
// Small helpers
// ------------------------------------------------------------------------------------------------

/// The Rust target of a function's architecture (`Architectures`, one of them).
fn lambda_target(function: &Function) -> String {
    let architectures = strings(function.property("Architectures").unwrap_or(&Value::Null));
    match architectures.as_slice() {
        [one] if one == "arm64" => "aarch64-unknown-linux-gnu".to_owned(),
        [one] if one == "x86_64" => "x86_64-unknown-linux-gnu".to_owned(),
        other => panic!(
            "{}: Architectures {other:?} is not one of [arm64] or [x86_64]",
            function.logical_id
        ),
    }
}

/// A path, canonical when it exists.
fn canonical(path: impl AsRef<Path>) -> PathBuf {
    let path = path.as_ref();
    path.canonicalize().unwrap_or_else(|_| path.to_path_buf())
}

/// What `cargo ARGS` prints in `dir`; panics when it fails.
fn cargo_output(dir: &Path, args: &[&str]) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(&cargo)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|error| panic!("cannot run {cargo}: {error}"));
    assert!(
        output.status.success(),
        "`{cargo} {}` in {} failed:\n{}",
        args.join(" "),
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("cargo prints UTF-8")
}

fn cargo_json(dir: &Path, args: &[&str]) -> Value {
    serde_json::from_str(&cargo_output(dir, args))
        .unwrap_or_else(|error| panic!("cargo {}: no JSON: {error}", args.join(" ")))
}

/// The `[[bin]]` names of functions/lambda/Cargo.toml.
fn cargo_binaries() -> BTreeSet<String> {
    let path = bulk_tests::template::repository_root().join("functions/lambda/Cargo.toml");
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

fn http_group(binary: &str) -> Option<RouteGroup> {
    HTTP_FUNCTIONS
        .iter()
        .find(|(name, _)| *name == binary)
        .map(|(_, group)| *group)
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
