//! Credentials as a client presents them, in every form the three dialects take.

use bulk_users::auth::{sign_request, SignedRequest};
use http::{HeaderMap, HeaderValue};
use serde_json::Value;

use crate::cases::{self, Vars};

/// How a request presents its credential.
#[derive(Clone, Debug)]
pub enum Auth {
    None,
    /// `Authorization: Basic` with this user and secret.
    Basic(String, String),
    /// `Authorization: Bearer`.
    Bearer(String),
    /// `X-Auth-Token`.
    Token(String),
    /// The Huawei SDK's AK/SK signature (`SDK-HMAC-SHA256`) with this key id and secret.
    Signed(String, String),
}

impl Auth {
    /// The credential a case gives: `basic` (`[user, secret]`), `bearer`, `token` or `signed`
    /// (`[key id, secret]`), or none; its texts filled from `vars`.
    pub fn of_case(case: &Value, vars: &Vars) -> Auth {
        let text = |value: &Value| vars.fill(value.as_str().expect("a credential is text"));
        let pair = |key: &str| (text(&case[key][0]), text(&case[key][1]));
        match ["basic", "bearer", "token", "signed"].map(|key| case.get(key).is_some()) {
            [true, false, false, false] => Auth::Basic(pair("basic").0, pair("basic").1),
            [false, true, false, false] => Auth::Bearer(text(&case["bearer"])),
            [false, false, true, false] => Auth::Token(text(&case["token"])),
            [false, false, false, true] => Auth::Signed(pair("signed").0, pair("signed").1),
            [false, false, false, false] => Auth::None,
            _ => panic!("{}: one credential at most", cases::name(case)),
        }
    }

    /// Adds the credential to the `headers` of a request of `method` to `target` (the path and
    /// the query string) with `body`. A signature, with its `X-Sdk-Date`, covers the headers
    /// already there: `Host` and the content type go in first.
    pub fn add_to(&self, headers: &mut HeaderMap, method: &str, target: &str, body: &[u8]) {
        let authorization = match self {
            Auth::None => return,
            Auth::Basic(user, secret) => crate::basic(user, secret),
            Auth::Bearer(secret) => format!("Bearer {secret}"),
            Auth::Token(secret) => {
                headers.insert("x-auth-token", HeaderValue::from_str(secret).unwrap());
                return;
            }
            Auth::Signed(key_id, secret) => {
                let date = HeaderValue::from_str(&crate::sdk_date()).unwrap();
                headers.insert("x-sdk-date", date);
                let (path, query) = match target.split_once('?') {
                    Some((path, query)) => (path, Some(query)),
                    None => (target, None),
                };
                let request = SignedRequest {
                    method,
                    path,
                    query,
                    headers: &*headers,
                    body,
                };
                sign_request(&request, key_id, secret).expect("sign the request")
            }
        };
        let authorization = HeaderValue::from_str(&authorization).unwrap();
        headers.insert(http::header::AUTHORIZATION, authorization);
    }
}
