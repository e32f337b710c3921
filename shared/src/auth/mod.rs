//! API credentials: the server's master key, issuing credentials, sealing and finding their
//! secrets, reading the Basic and Bearer headers, and checking Huawei SDK request signatures
//! (`SDK-HMAC-SHA256`, AK/SK).
//!
//! A credential has a public key id and a random secret. Signature schemes need the server to
//! recompute an HMAC keyed by the secret, so a secret cannot be stored as a one-way digest.
//! Instead every stored credential keeps:
//! - `sealed_secret`: the secret encrypted with AES-256-GCM under the master key (random 96-bit
//!   nonce, associated data = tenant and key id, so a sealed secret moved to another credential
//!   does not open), stored as base64 of nonce ‖ ciphertext;
//! - `secret_lookup`: hex HMAC-SHA256(master key, `"secret:" + secret`), a deterministic keyed
//!   digest that finds a credential by its secret alone (Bearer tokens, `X-Auth-Token`) without
//!   revealing the secret to whoever reads the store.
//!
//! The master key never leaves the process: it comes from `BULK_MASTER_KEY` (AWS) or from a file
//! in the data directory created on first start (local server). Losing it makes every stored
//! credential unusable; it cannot be recovered from the store.

mod credentials;
mod headers;
mod master_key;
mod sdk_signature;
mod sealing;

pub use credentials::*;
pub use headers::*;
pub use master_key::*;
pub use sdk_signature::*;
