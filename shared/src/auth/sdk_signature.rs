//! SDK-HMAC-SHA256: the AK/SK signature of the Huawei Cloud SDKs (huaweicloudsdkcore), checked
//! on requests and made for the tests' and tools' own clients.

use hmac::Mac;
use percent_encoding::{percent_decode_str, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::sealing::HmacSha256;
use crate::model::Timestamp;

/// The signing algorithm (the scheme of the `Authorization` header).
pub const SDK_SIGNING_ALGORITHM: &str = "SDK-HMAC-SHA256";
/// The header carrying the signing time, `%Y%m%dT%H%M%SZ` in UTC.
pub const SDK_DATE_HEADER: &str = "x-sdk-date";
/// The header that may carry the body's hex SHA-256 instead of the body being hashed.
pub const SDK_CONTENT_SHA256_HEADER: &str = "x-sdk-content-sha256";
/// How far the signing time may be from the server's clock, either way.
pub const MAX_CLOCK_SKEW_SECONDS: i64 = 15 * 60;
/// Hex SHA-256 of no bytes.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// The payload hash a client sends when it does not sign the body (refused here).
const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// What the SDK's `quote(s, safe='~')` leaves alone: ASCII letters, digits and `-_.~`.
const SDK_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A request as received, for checking its `SDK-HMAC-SHA256` signature. `path` and `query` are
/// as they came on the wire (percent-encoded); `query` has no leading `?`.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a http::HeaderMap,
    pub body: &'a [u8],
}

/// The parts of `Authorization: SDK-HMAC-SHA256 Access=…, SignedHeaders=…, Signature=…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdkAuthorization {
    /// The access key (AK): the credential's key id.
    pub access: String,
    /// The signed header names, as listed (lower-case, sorted, `;`-separated by the SDK).
    pub signed_headers: Vec<String>,
    /// The signature, decoded from hex.
    pub signature: Vec<u8>,
}

/// Why a signed request was refused (for logs; clients only ever see "unauthorized"). Never
/// carries secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no SDK-HMAC-SHA256 Authorization header")]
    NotSigned,
    #[error("malformed SDK-HMAC-SHA256 Authorization header")]
    Malformed,
    #[error("the X-Sdk-Date header is missing, unsigned or malformed")]
    BadDate,
    #[error(
        "the signing time is more than {MAX_CLOCK_SKEW_SECONDS} seconds from the server's clock"
    )]
    ClockSkew,
    #[error("signed header {0} is missing or repeated")]
    MissingHeader(String),
    #[error("the payload is not signed, or X-Sdk-Content-Sha256 does not match the body")]
    PayloadHash,
    #[error("the signature does not match")]
    Mismatch,
}

/// Reads an `SDK-HMAC-SHA256` `Authorization` header value; `None` when it is another scheme or
/// malformed.
pub fn parse_sdk_authorization(header: &str) -> Option<SdkAuthorization> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    if scheme != SDK_SIGNING_ALGORITHM {
        return None;
    }
    let (mut access, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (name, value) = part.trim().split_once('=')?;
        let slot = match name.trim() {
            "Access" => &mut access,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            _ => return None,
        };
        if slot.replace(value.trim()).is_some() {
            return None;
        }
    }
    let access = access.filter(|access| !access.is_empty())?;
    let signed_headers: Vec<String> = signed_headers?
        .split(';')
        .map(str::to_owned)
        .collect::<Vec<_>>();
    if signed_headers.iter().any(|name| name.is_empty()) {
        return None;
    }
    let signature = hex::decode(signature?).ok()?;
    if signature.len() != 32 {
        return None;
    }
    Some(SdkAuthorization {
        access: access.to_owned(),
        signed_headers,
        signature,
    })
}

impl SignedRequest<'_> {
    /// The request's parsed `Authorization` header, when it is an `SDK-HMAC-SHA256` one.
    pub fn authorization(&self) -> Result<SdkAuthorization, SignatureError> {
        let mut values = self.headers.get_all(http::header::AUTHORIZATION).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return Err(SignatureError::NotSigned);
        };
        let value = value.to_str().map_err(|_| SignatureError::Malformed)?;
        if !value.trim_start().starts_with(SDK_SIGNING_ALGORITHM) {
            return Err(SignatureError::NotSigned);
        }
        parse_sdk_authorization(value).ok_or(SignatureError::Malformed)
    }

    /// The one value of a header; `None` when it is missing or repeated.
    fn single_header(&self, name: &str) -> Option<&[u8]> {
        let mut values = self.headers.get_all(name).iter();
        match (values.next(), values.next()) {
            (Some(value), None) => Some(value.as_bytes()),
            _ => None,
        }
    }

    /// The canonical request of the SDK's signer for these signed headers.
    fn canonical_request(&self, signed_headers: &[String]) -> Result<Vec<u8>, SignatureError> {
        let mut canonical = Vec::with_capacity(256 + self.path.len());
        canonical.extend_from_slice(self.method.to_ascii_uppercase().as_bytes());
        canonical.push(b'\n');
        canonical.extend_from_slice(canonical_uri(self.path).as_bytes());
        canonical.push(b'\n');
        canonical.extend_from_slice(canonical_query(self.query.unwrap_or("")).as_bytes());
        canonical.push(b'\n');
        for name in signed_headers {
            let value = self
                .single_header(name)
                .ok_or_else(|| SignatureError::MissingHeader(name.clone()))?;
            canonical.extend_from_slice(name.as_bytes());
            canonical.push(b':');
            canonical.extend_from_slice(value.trim_ascii());
            canonical.push(b'\n');
        }
        canonical.push(b'\n');
        canonical.extend_from_slice(signed_headers.join(";").as_bytes());
        canonical.push(b'\n');
        canonical.extend_from_slice(self.payload_hash()?.as_bytes());
        Ok(canonical)
    }

    /// Hex SHA-256 of the body (of nothing when it is empty). A client may send the hash in
    /// `X-Sdk-Content-Sha256` instead; it must then be the body's. `UNSIGNED-PAYLOAD`, which the
    /// SDK sends for bodies that are not JSON, is refused: the body would not be covered by the
    /// signature, and every signed route of this API takes JSON.
    fn payload_hash(&self) -> Result<String, SignatureError> {
        if self.body.is_empty() {
            return Ok(EMPTY_SHA256.to_owned());
        }
        let actual = hex::encode(Sha256::digest(self.body));
        if self.headers.contains_key(SDK_CONTENT_SHA256_HEADER) {
            let declared = self
                .single_header(SDK_CONTENT_SHA256_HEADER)
                .and_then(|value| std::str::from_utf8(value).ok())
                .ok_or(SignatureError::PayloadHash)?;
            if declared == UNSIGNED_PAYLOAD || !declared.eq_ignore_ascii_case(&actual) {
                return Err(SignatureError::PayloadHash);
            }
            return Ok(declared.to_owned());
        }
        Ok(actual)
    }
}

/// The SDK's canonical URI: the path percent-decoded, each `/`-separated segment percent-encoded
/// again (all but ASCII letters, digits and `-_.~`), and a `/` added at the end when missing.
pub fn canonical_uri(path: &str) -> String {
    let decoded: Vec<u8> = percent_decode_str(path).collect();
    let mut uri = String::with_capacity(path.len() + 1);
    for (index, segment) in decoded.split(|b| *b == b'/').enumerate() {
        if index > 0 {
            uri.push('/');
        }
        uri.extend(percent_encoding::percent_encode(segment, SDK_ENCODE));
    }
    if !uri.ends_with('/') {
        uri.push('/');
    }
    uri
}

/// The SDK's canonical query string: `key=value` pairs percent-decoded, sorted (by key, then
/// value), percent-encoded again (`~` left alone) and joined by `&`.
pub fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (
                percent_decode_str(key).collect(),
                percent_decode_str(value).collect(),
            )
        })
        .collect();
    pairs.sort();
    let encode = |bytes: &[u8]| percent_encoding::percent_encode(bytes, SDK_ENCODE).to_string();
    pairs
        .iter()
        .map(|(key, value)| format!("{}={}", encode(key), encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The string to sign: algorithm, signing time and hex SHA-256 of the canonical request.
fn string_to_sign(date: &str, canonical_request: &[u8]) -> String {
    format!(
        "{SDK_SIGNING_ALGORITHM}\n{date}\n{}",
        hex::encode(Sha256::digest(canonical_request))
    )
}

pub(super) fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// Seconds since the Unix epoch of an `X-Sdk-Date` value (`%Y%m%dT%H%M%SZ`).
fn parse_sdk_date(text: &str) -> Option<i64> {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
        time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let at = time::PrimitiveDateTime::parse(text, FORMAT).ok()?;
    Some(at.assume_utc().unix_timestamp())
}

/// Checks a request's `SDK-HMAC-SHA256` signature against the secret key `secret` (the SK), as
/// huaweicloudsdkcore computes it, and its `X-Sdk-Date` against `now` (at most
/// [`MAX_CLOCK_SKEW_SECONDS`] apart). `X-Sdk-Date` must be one of the signed headers. The
/// signatures are compared in constant time.
pub fn verify_signed_request(
    request: &SignedRequest<'_>,
    authorization: &SdkAuthorization,
    secret: &str,
    now: Timestamp,
) -> Result<(), SignatureError> {
    if !authorization
        .signed_headers
        .iter()
        .any(|name| name == SDK_DATE_HEADER)
    {
        return Err(SignatureError::BadDate);
    }
    let date = request
        .single_header(SDK_DATE_HEADER)
        .and_then(|value| std::str::from_utf8(value).ok())
        .map(str::trim)
        .ok_or(SignatureError::BadDate)?;
    let signed_at = parse_sdk_date(date).ok_or(SignatureError::BadDate)?;
    if (signed_at - now.unix_millis().div_euclid(1000)).abs() > MAX_CLOCK_SKEW_SECONDS {
        return Err(SignatureError::ClockSkew);
    }
    let canonical = request.canonical_request(&authorization.signed_headers)?;
    let expected = hmac_sha256(
        secret.as_bytes(),
        string_to_sign(date, &canonical).as_bytes(),
    );
    if bool::from(expected.ct_eq(&authorization.signature)) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Signs a request like huaweicloudsdkcore does: every header whose name has no `_` is signed
/// (the request must already carry `X-Sdk-Date`). Returns the `Authorization` header value. For
/// clients and tests of this crate.
pub fn sign_request(
    request: &SignedRequest<'_>,
    key_id: &str,
    secret: &str,
) -> Result<String, SignatureError> {
    let date = request
        .single_header(SDK_DATE_HEADER)
        .and_then(|value| std::str::from_utf8(value).ok())
        .map(str::trim)
        .ok_or(SignatureError::BadDate)?;
    let mut signed_headers: Vec<String> = request
        .headers
        .keys()
        .map(|name| name.as_str().to_owned())
        .filter(|name| !name.contains('_') && name != "authorization")
        .collect();
    signed_headers.sort();
    signed_headers.dedup();
    let canonical = request.canonical_request(&signed_headers)?;
    let signature = hmac_sha256(
        secret.as_bytes(),
        string_to_sign(date, &canonical).as_bytes(),
    );
    Ok(format!(
        "{SDK_SIGNING_ALGORITHM} Access={key_id}, SignedHeaders={}, Signature={}",
        signed_headers.join(";"),
        hex::encode(signature)
    ))
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderName, HeaderValue};

    use super::*;

    const AK: &str = "acme-events";
    const SK: &str = "change-me-0123456789";

    /// A request as the Huawei SDK signed it (`sdk_signature_vectors.json`).
    #[derive(serde::Deserialize)]
    struct Vector {
        method: String,
        path: String,
        query: Option<String>,
        headers: Vec<(String, String)>,
        body: String,
    }

    impl Vector {
        fn header(&self, name: &str) -> &str {
            let found = self.headers.iter().find(|(key, _)| key == name);
            found.map(|(_, value)| value.as_str()).unwrap_or_default()
        }
    }

    /// The vector `name`, its base headers first.
    fn sdk_vector(name: &str) -> Vector {
        #[derive(serde::Deserialize)]
        struct Vectors {
            base_headers: Vec<(String, String)>,
            vectors: std::collections::HashMap<String, Vector>,
        }
        let mut all: Vectors =
            serde_json::from_str(include_str!("sdk_signature_vectors.json")).unwrap();
        let mut vector = all.vectors.remove(name).unwrap();
        vector.headers.splice(0..0, all.base_headers);
        vector
    }

    fn header_map<N: AsRef<str>, V: AsRef<str>>(headers: &[(N, V)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                HeaderName::from_bytes(name.as_ref().as_bytes()).unwrap(),
                HeaderValue::from_str(value.as_ref()).unwrap(),
            );
        }
        map
    }

    fn request<'a>(vector: &'a Vector, headers: &'a HeaderMap) -> SignedRequest<'a> {
        SignedRequest {
            method: &vector.method,
            path: &vector.path,
            query: vector.query.as_deref(),
            headers,
            body: vector.body.as_bytes(),
        }
    }

    fn signing_time() -> Timestamp {
        Timestamp::parse("2025-01-02T03:04:05.000Z").unwrap()
    }

    fn verify(
        request: &SignedRequest<'_>,
        secret: &str,
        now: Timestamp,
    ) -> Result<(), SignatureError> {
        let authorization = request.authorization()?;
        assert_eq!(authorization.access, AK);
        verify_signed_request(request, &authorization, secret, now)
    }

    #[test]
    fn verifies_signatures_made_by_the_huawei_sdk() {
        for name in [
            "list_with_query",
            "batch_create",
            "delete_with_encoded_path",
        ] {
            let vector = &sdk_vector(name);
            let headers = header_map(&vector.headers);
            let request = request(vector, &headers);
            assert_eq!(
                verify(&request, SK, signing_time()),
                Ok(()),
                "{}",
                vector.path
            );
            assert_eq!(
                verify(&request, "another secret", signing_time()),
                Err(SignatureError::Mismatch)
            );
        }
    }

    #[test]
    fn signs_like_the_huawei_sdk() {
        for name in ["list_with_query", "batch_create"] {
            let vector = &sdk_vector(name);
            let headers = header_map(&vector.headers);
            let expected = headers["authorization"].to_str().unwrap().to_owned();
            let mut unsigned = headers.clone();
            unsigned.remove("authorization");
            let signed = sign_request(&request(vector, &unsigned), AK, SK).unwrap();
            assert_eq!(signed, expected);
        }
    }

    #[test]
    fn builds_the_sdk_canonical_uri_and_query() {
        assert_eq!(canonical_uri("/v2/acme/users"), "/v2/acme/users/");
        assert_eq!(canonical_uri("/"), "/");
        assert_eq!(
            canonical_uri("/v2/acme/users/ann%20lee%2F%C3%A9~x%2A%281%29"),
            "/v2/acme/users/ann%20lee/%C3%A9~x%2A%281%29/"
        );
        assert_eq!(canonical_uri("/a b/c+d"), "/a%20b/c%2Bd/");
        assert_eq!(canonical_query(""), "");
        assert_eq!(
            canonical_query("user_name=ann%20lee&limit=10&flag&b=~%7e"),
            "b=~~&flag=&limit=10&user_name=ann%20lee"
        );
    }

    #[test]
    fn rejects_requests_altered_after_signing() {
        let vector = &sdk_vector("delete_with_encoded_path");
        let headers = header_map(&vector.headers);
        let altered_path = SignedRequest {
            path: "/v2/acme/users/bob",
            ..request(vector, &headers)
        };
        assert_eq!(
            verify(&altered_path, SK, signing_time()),
            Err(SignatureError::Mismatch)
        );
        let altered_query = SignedRequest {
            query: Some("e=&k=a&k=y&q=a%20b%2Bc~d%2A%C3%A9%26%3D"),
            ..request(vector, &headers)
        };
        assert_eq!(
            verify(&altered_query, SK, signing_time()),
            Err(SignatureError::Mismatch)
        );
        let altered_method = SignedRequest {
            method: "GET",
            ..request(vector, &headers)
        };
        assert_eq!(
            verify(&altered_method, SK, signing_time()),
            Err(SignatureError::Mismatch)
        );

        let vector = &sdk_vector("batch_create");
        let headers = header_map(&vector.headers);
        let altered_body = SignedRequest {
            body: br#"{"users": [{"user_name": "eve"}]}"#,
            ..request(vector, &headers)
        };
        assert_eq!(
            verify(&altered_body, SK, signing_time()),
            Err(SignatureError::Mismatch)
        );
        let mut altered_headers = headers.clone();
        altered_headers.insert("x-project-id", HeaderValue::from_static("globex"));
        assert_eq!(
            verify(&request(vector, &altered_headers), SK, signing_time()),
            Err(SignatureError::Mismatch)
        );
        let mut missing_header = headers.clone();
        missing_header.remove("user-agent");
        assert_eq!(
            verify(&request(vector, &missing_header), SK, signing_time()),
            Err(SignatureError::MissingHeader("user-agent".to_owned()))
        );
        let mut repeated_header = headers.clone();
        repeated_header.append("host", HeaderValue::from_static("evil.test"));
        assert_eq!(
            verify(&request(vector, &repeated_header), SK, signing_time()),
            Err(SignatureError::MissingHeader("host".to_owned()))
        );
        // A declared payload hash must be the body's.
        let mut declared = headers.clone();
        declared.insert(
            SDK_CONTENT_SHA256_HEADER,
            HeaderValue::from_static(EMPTY_SHA256),
        );
        assert_eq!(
            verify(&request(vector, &declared), SK, signing_time()),
            Err(SignatureError::PayloadHash)
        );
    }

    #[test]
    fn refuses_unsigned_payloads() {
        let vector = &sdk_vector("unsigned_payload_body");
        let headers = header_map(&vector.headers);
        assert_eq!(
            verify(&request(vector, &headers), SK, signing_time()),
            Err(SignatureError::PayloadHash)
        );
    }

    #[test]
    fn rejects_clock_skew_beyond_fifteen_minutes() {
        let vector = &sdk_vector("list_with_query");
        let headers = header_map(&vector.headers);
        let request = request(vector, &headers);
        for seconds in [-900, -1, 0, 1, 900] {
            assert_eq!(
                verify(&request, SK, signing_time().plus_seconds(seconds)),
                Ok(()),
                "{seconds}"
            );
        }
        for seconds in [-901, 901, 86_400] {
            assert_eq!(
                verify(&request, SK, signing_time().plus_seconds(seconds)),
                Err(SignatureError::ClockSkew),
                "{seconds}"
            );
        }
    }

    #[test]
    fn requires_a_signed_well_formed_date() {
        let vector = &sdk_vector("list_with_query");
        let headers = header_map(&vector.headers);
        let mut bad_date = headers.clone();
        bad_date.insert(
            "x-sdk-date",
            HeaderValue::from_static("2025-01-02T03:04:05Z"),
        );
        assert_eq!(
            verify(&request(vector, &bad_date), SK, signing_time()),
            Err(SignatureError::BadDate)
        );
        let unsigned_date = SdkAuthorization {
            signed_headers: vec!["host".to_owned()],
            ..request(vector, &headers).authorization().unwrap()
        };
        assert_eq!(
            verify_signed_request(
                &request(vector, &headers),
                &unsigned_date,
                SK,
                signing_time()
            ),
            Err(SignatureError::BadDate)
        );
    }

    #[test]
    fn parses_only_well_formed_sdk_authorization_headers() {
        let signature = "ab".repeat(32);
        let parsed = parse_sdk_authorization(&format!(
            "SDK-HMAC-SHA256 Access=AK1, SignedHeaders=host;x-sdk-date, Signature={signature}"
        ))
        .unwrap();
        assert_eq!(parsed.access, "AK1");
        assert_eq!(parsed.signed_headers, ["host", "x-sdk-date"]);
        assert_eq!(parsed.signature, vec![0xab; 32]);
        for bad in [
            format!("SDK-HMAC-SM3 Access=AK1, SignedHeaders=host, Signature={signature}"),
            format!("SDK-HMAC-SHA256 Access=, SignedHeaders=host, Signature={signature}"),
            format!("SDK-HMAC-SHA256 Access=AK1, SignedHeaders=, Signature={signature}"),
            "SDK-HMAC-SHA256 Access=AK1, SignedHeaders=host, Signature=abc".to_owned(),
            format!(
                "SDK-HMAC-SHA256 Access=AK1, Access=AK2, SignedHeaders=host, Signature={signature}"
            ),
            format!("SDK-HMAC-SHA256 Access=AK1, SignedHeaders=host, Signature={signature}, X=1"),
            "SDK-HMAC-SHA256 Access=AK1".to_owned(),
            "Basic YWNtZTpz".to_owned(),
        ] {
            assert_eq!(parse_sdk_authorization(&bad), None, "{bad}");
        }
        let none = HeaderMap::new();
        let basic = header_map(&[("Authorization", "Basic YWNtZTpz")]);
        let signed = sdk_vector("list_with_query");
        let authorization = signed.header("Authorization");
        let twice = header_map(&[("Authorization", authorization); 2]);
        for headers in [&none, &basic, &twice] {
            let request = SignedRequest {
                method: "GET",
                path: "/",
                query: None,
                headers,
                body: b"",
            };
            assert_eq!(request.authorization(), Err(SignatureError::NotSigned));
        }
    }
}
