//! `template.yaml` as the tests read it: decoded by cfn-lint's own YAML decoder (Python), which
//! understands the short-form intrinsics (`!Ref`, `!Sub`, `!GetAtt`) and prints the template as
//! JSON; its functions, their properties as deployed, and their IAM policies.
//!
//! cfn-lint comes from `$CFN_LINT`, else `.venv/bin/cfn-lint` (tests/requirements.txt), else
//! `cfn-lint` on `PATH`; a test that reads the template fails when none runs. The SAM CLI
//! likewise: `$SAM_CLI`, else `.venv/bin/sam`, else `sam` on `PATH`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;

pub fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

pub fn template_path() -> PathBuf {
    repository_root().join("template.yaml")
}

/// The template as JSON, decoded once per test process.
pub fn template() -> &'static Value {
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
pub fn cfn_lint_program() -> String {
    if let Some(program) = std::env::var_os("CFN_LINT").filter(|value| !value.is_empty()) {
        return program.to_string_lossy().into_owned();
    }
    let venv = repository_root().join(".venv/bin/cfn-lint");
    if venv.exists() {
        return venv.display().to_string();
    }
    "cfn-lint".to_owned()
}

pub fn run_cfn_lint(args: &[&str]) -> (String, Output) {
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

/// The SAM CLI to run: `$SAM_CLI`, else the test venv's, else `sam` on `PATH`.
pub fn sam_program() -> String {
    if let Some(program) = std::env::var_os("SAM_CLI").filter(|value| !value.is_empty()) {
        return program.to_string_lossy().into_owned();
    }
    let venv = repository_root().join(".venv/bin/sam");
    if venv.exists() {
        return venv.display().to_string();
    }
    "sam".to_owned()
}

/// The Python that has the SAM CLI's modules: the `#!` interpreter of the SAM CLI in use, else
/// the test venv's, else `python3`.
pub fn sam_python() -> String {
    if let Some(interpreter) = script_interpreter(&sam_program()) {
        return interpreter;
    }
    let venv_python = repository_root().join(".venv/bin/python");
    if venv_python.exists() {
        return venv_python.display().to_string();
    }
    "python3".to_owned()
}

/// Runs the SAM CLI in the repository root with `args` and `environment` added to the test's
/// own; panics when it cannot be run. Telemetry is off: the tests run without a network.
pub fn run_sam(args: &[&str], environment: &[(&str, &str)]) -> (String, Output) {
    let program = sam_program();
    let output = Command::new(&program)
        .args(args)
        .env("SAM_CLI_TELEMETRY", "0")
        .envs(environment.iter().copied())
        .current_dir(repository_root())
        .output()
        .unwrap_or_else(|error| {
            panic!(
                "cannot run the SAM CLI ({program}): {error}. Install it with tests/run.sh or \
                 `.venv/bin/python -m pip install -r tests/requirements.txt`, or set SAM_CLI"
            )
        });
    (program, output)
}

/// The resources of one type, by logical id.
pub fn resources_of_type(kind: &str) -> BTreeMap<String, &'static Value> {
    template()["Resources"]
        .as_object()
        .expect("Resources")
        .iter()
        .filter(|(_, resource)| resource["Type"] == kind)
        .map(|(id, resource)| (id.clone(), resource))
        .collect()
}

/// A resource that must exist with this type.
pub fn resource(id: &str, kind: &str) -> &'static Value {
    let found = &template()["Resources"][id];
    assert_eq!(found["Type"], kind, "resource {id}");
    found
}

/// One `AWS::Serverless::Function`.
pub struct Function {
    pub logical_id: String,
    /// The binary of functions/lambda it runs (`Metadata.BuildProperties.Binary`).
    pub binary: String,
    pub metadata: &'static Value,
    pub properties: &'static Value,
}

pub fn functions() -> Vec<Function> {
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

/// The function that runs `binary`.
pub fn function_of(binary: &str) -> Function {
    functions()
        .into_iter()
        .find(|function| function.binary == binary)
        .unwrap_or_else(|| panic!("no function of template.yaml runs binary {binary}"))
}

impl Function {
    /// A property as deployed: the function's own, else the one of `Globals.Function`.
    pub fn property(&self, name: &str) -> Option<&'static Value> {
        self.properties
            .get(name)
            .or_else(|| template()["Globals"]["Function"].get(name))
    }

    /// The environment variables: the globals' merged with the function's own.
    pub fn environment(&self) -> BTreeMap<String, &'static Value> {
        let mut variables = BTreeMap::new();
        for scope in [&template()["Globals"]["Function"], self.properties] {
            if let Some(own) = scope["Environment"]["Variables"].as_object() {
                variables.extend(own.iter().map(|(name, value)| (name.clone(), value)));
            }
        }
        variables
    }

    pub fn events_of_type(&self, kind: &str) -> Vec<(String, &'static Value)> {
        self.properties["Events"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, event)| event["Type"] == kind)
            .map(|(name, event)| (name.clone(), event))
            .collect()
    }

    /// The (METHOD, path) of every HttpApi event.
    pub fn http_events(&self) -> Vec<(String, String)> {
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

    /// The inline policy statements, as written (intrinsics unresolved). Anything else that
    /// grants permissions (a `Role`, a managed policy, a SAM policy template) fails: what it
    /// grants cannot be read here.
    pub fn policy_statements(&self) -> Vec<&'static Value> {
        let id = &self.logical_id;
        assert!(
            self.properties.get("Role").is_none(),
            "{id}: a Role of its own; the tests read Policies"
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
    pub fn iam_actions(&self) -> BTreeSet<String> {
        self.policy_statements()
            .into_iter()
            .filter(|statement| statement["Effect"] == "Allow")
            .flat_map(|statement| strings(&statement["Action"]))
            .collect()
    }
}

/// A string or a list of strings (IAM `Action`, `Resource`, `DependsOn`) as a list.
pub fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(text) => vec![text.clone()],
        Value::Array(list) => list
            .iter()
            .filter_map(|item| item.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}
