//! IAM as deployed: each function's policy is generated from its `Policies` in template.yaml,
//! with the template's intrinsics resolved to the emulator's resources, and given to an IAM
//! user of its own on moto, which the tests' launcher (`moto_launcher.py`) makes enforce IAM as
//! AWS does. IAM users stand in for the functions' execution roles: the policy is the same
//! document, and moto does not issue the session credentials a role would get.

use std::collections::BTreeMap;
use std::time::SystemTime;

use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use bulk_users::adapters::aws::Credentials;
use serde_json::{json, Value};

use crate::template::{function_of, template};

/// The account moto serves.
pub const ACCOUNT: &str = "123456789012";
/// The region the tests deploy to.
pub const REGION: &str = "us-east-1";
const PARTITION: &str = "aws";

/// What a deployment of the template is called on the emulator: the parameter that names
/// things (`Stage`) and the physical names of the resources the functions' policies and
/// environment refer to. The bucket is named as the template names it.
#[derive(Debug, Clone)]
pub struct StackNames {
    pub stack_name: String,
    pub stage: String,
    pub table: String,
    pub queue_name: String,
    pub queue_url: String,
    /// The ARN of the stack's KMS key (`SecretsKey`).
    pub kms_key_arn: String,
}

impl StackNames {
    /// The uploads bucket's name: the template's `BucketName`, resolved.
    pub fn bucket(&self) -> String {
        let name = &template()["Resources"]["UploadsBucket"]["Properties"]["BucketName"];
        self.resolve(name)
            .as_str()
            .unwrap_or_else(|| panic!("UploadsBucket's BucketName is no text: {name}"))
            .to_owned()
    }

    /// The policy document of a function: its `Policies` statements, resolved.
    pub fn policy_of(&self, binary: &str) -> Value {
        let statements: Vec<Value> = function_of(binary)
            .policy_statements()
            .into_iter()
            .map(|statement| self.resolve(statement))
            .collect();
        json!({"Version": "2012-10-17", "Statement": statements})
    }

    /// A template value with every `Ref`, `Fn::GetAtt` and `Fn::Sub` replaced by what it means
    /// on the emulator. A reference to something the test stack does not create panics.
    pub fn resolve(&self, value: &Value) -> Value {
        match value {
            Value::Object(map) if map.len() == 1 => {
                let (name, argument) = map.iter().next().expect("one entry");
                match name.as_str() {
                    "Ref" => Value::String(self.reference(text(argument, "Ref"))),
                    "Fn::GetAtt" => Value::String(self.get_att(argument)),
                    "Fn::Sub" => Value::String(self.substitute(argument)),
                    _ => Value::Object(
                        map.iter()
                            .map(|(k, v)| (k.clone(), self.resolve(v)))
                            .collect(),
                    ),
                }
            }
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), self.resolve(v)))
                    .collect(),
            ),
            Value::Array(items) => Value::Array(items.iter().map(|v| self.resolve(v)).collect()),
            other => other.clone(),
        }
    }

    fn reference(&self, name: &str) -> String {
        match name {
            "AWS::Region" => REGION.to_owned(),
            "AWS::AccountId" => ACCOUNT.to_owned(),
            "AWS::Partition" => PARTITION.to_owned(),
            "AWS::URLSuffix" => "amazonaws.com".to_owned(),
            "AWS::StackName" => self.stack_name.clone(),
            "Stage" => self.stage.clone(),
            "Table" => self.table.clone(),
            "WorkQueue" => self.queue_url.clone(),
            "UploadsBucket" => self.bucket(),
            "SecretsKey" => self
                .kms_key_arn
                .rsplit_once('/')
                .map(|(_, id)| id.to_owned())
                .unwrap_or_default(),
            parameter => match template()["Parameters"][parameter].get("Default") {
                Some(default) => default
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| default.to_string()),
                None => panic!(
                    "template.yaml refers to {parameter}, which the test stack does not create"
                ),
            },
        }
    }

    fn attribute(&self, resource: &str, attribute: &str) -> String {
        match (resource, attribute) {
            ("Table", "Arn") => format!(
                "arn:{PARTITION}:dynamodb:{REGION}:{ACCOUNT}:table/{}",
                self.table
            ),
            ("WorkQueue", "Arn") => {
                format!("arn:{PARTITION}:sqs:{REGION}:{ACCOUNT}:{}", self.queue_name)
            }
            ("UploadsBucket", "Arn") => format!("arn:{PARTITION}:s3:::{}", self.bucket()),
            ("SecretsKey", "Arn") => self.kms_key_arn.clone(),
            _ => panic!(
                "template.yaml refers to {resource}.{attribute}, which the test stack does not \
                 create"
            ),
        }
    }

    fn get_att(&self, argument: &Value) -> String {
        match argument {
            Value::Array(parts) if parts.len() == 2 => {
                self.attribute(text(&parts[0], "GetAtt"), text(&parts[1], "GetAtt"))
            }
            Value::String(dotted) => {
                let (resource, attribute) = dotted
                    .split_once('.')
                    .unwrap_or_else(|| panic!("Fn::GetAtt {dotted}: no attribute"));
                self.attribute(resource, attribute)
            }
            other => panic!("Fn::GetAtt {other}: not understood"),
        }
    }

    fn substitute(&self, argument: &Value) -> String {
        let (pattern, variables) = match argument {
            Value::String(pattern) => (pattern.as_str(), BTreeMap::new()),
            Value::Array(parts) if parts.len() == 2 => (
                text(&parts[0], "Sub"),
                parts[1]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(name, value)| (name.clone(), self.resolve(value)))
                    .collect(),
            ),
            other => panic!("Fn::Sub {other}: not understood"),
        };
        let mut out = String::new();
        let mut rest = pattern;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .unwrap_or_else(|| panic!("Fn::Sub {pattern}: an unclosed ${{"));
            let name = &after[..end];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str(&format!("${{{literal}}}"));
            } else if let Some(value) = variables.get(name) {
                out.push_str(value.as_str().unwrap_or_default());
            } else if let Some((resource, attribute)) = name.split_once('.') {
                out.push_str(&self.attribute(resource, attribute));
            } else {
                out.push_str(&self.reference(name));
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out
    }
}

fn text<'a>(value: &'a Value, intrinsic: &str) -> &'a str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{intrinsic} of {value}: not a name"))
}

/// Creates IAM user `user` on the emulator at `endpoint` with `policy` as its only (inline)
/// policy, through the IAM API signed by `admin`, and returns its access key.
pub async fn create_principal(
    endpoint: &str,
    admin: &Credentials,
    user: &str,
    policy: &Value,
) -> Credentials {
    iam_call(
        endpoint,
        admin,
        &[("Action", "CreateUser"), ("UserName", user)],
    )
    .await;
    let document = policy.to_string();
    iam_call(
        endpoint,
        admin,
        &[
            ("Action", "PutUserPolicy"),
            ("UserName", user),
            ("PolicyName", "template"),
            ("PolicyDocument", &document),
        ],
    )
    .await;
    let answer = iam_call(
        endpoint,
        admin,
        &[("Action", "CreateAccessKey"), ("UserName", user)],
    )
    .await;
    let element = |name: &str| -> String {
        let open = format!("<{name}>");
        let close = format!("</{name}>");
        answer
            .split_once(&open)
            .and_then(|(_, rest)| rest.split_once(&close))
            .map(|(value, _)| value.to_owned())
            .unwrap_or_else(|| panic!("no {name} in CreateAccessKey's answer: {answer}"))
    };
    Credentials::new(
        element("AccessKeyId"),
        element("SecretAccessKey"),
        None,
        None,
        "template-policy",
    )
}

/// One IAM query-protocol call, signed with SigV4; panics unless it succeeds.
async fn iam_call(endpoint: &str, admin: &Credentials, parameters: &[(&str, &str)]) -> String {
    // Encoded as Python's urlencode does (`*` escaped, `~` not): moto checks the signature
    // against the form it parsed and encoded again that way.
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(parameters)
        .append_pair("Version", "2010-05-08")
        .finish()
        .replace('*', "%2A")
        .replace("%7E", "~");
    let url = format!("{}/", endpoint.trim_end_matches('/'));
    let host = url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default()
        .to_owned();
    let content_type = "application/x-www-form-urlencoded; charset=utf-8";
    let headers = [("host", host.as_str()), ("content-type", content_type)];
    let identity = admin.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(REGION)
        .name("iam")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .expect("signing parameters")
        .into();
    let signable = SignableRequest::new(
        "POST",
        &url,
        headers.iter().copied(),
        SignableBody::Bytes(body.as_bytes()),
    )
    .expect("a signable request");
    let (instructions, _) = sign(signable, &params).expect("a signature").into_parts();
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("an HTTP client");
    let mut request = client
        .post(&url)
        .header("content-type", content_type)
        .body(body.clone());
    for (name, value) in instructions.headers() {
        request = request.header(name, value);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("IAM {parameters:?} on {endpoint}: {e}"));
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    assert!(
        status.is_success(),
        "IAM {:?} on {endpoint} answered {status}: {text}",
        parameters.first()
    );
    text
}
