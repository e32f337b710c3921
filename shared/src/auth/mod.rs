//! API credentials: the keyring their secrets are sealed under, issuing credentials, sealing
//! and finding their secrets, reading the Basic and Bearer headers, and checking Huawei SDK
//! request signatures (`SDK-HMAC-SHA256`, AK/SK).
//!
//! A credential has a public key id and a random secret. Signature schemes need the server to
//! recompute an HMAC keyed by the secret, so a secret cannot be stored as a one-way digest.
//! Instead every stored credential keeps:
//! - `sealed_secret`: the secret encrypted with AES-256-GCM (random 96-bit nonce, associated
//!   data = tenant and key id, so a sealed secret moved to another credential does not open),
//!   tagged with the key version that sealed it ([`Sealed`]);
//! - `secret_lookup`: hex HMAC-SHA256(look-up key of that version, `"secret:" + secret`), a
//!   deterministic keyed digest that finds a credential by its secret alone (Bearer tokens,
//!   `X-Auth-Token`) without revealing the secret to whoever reads the store.
//!
//! The keys come from a keyring of numbered versions ([`crate::ports::Keyring`]), each with a
//! 32-byte root. From a root two keys are derived with HKDF-SHA256, one per purpose: the
//! look-up key, and (where the store derives it) the sealing key; so no key both seals and
//! finds. On AWS the roots are KMS data keys kept wrapped in the table, and each secret is
//! sealed with a KMS data key of its own whose encryption context is the tenant and key id
//! (envelope encryption under the stack's customer-managed key); the embedded store keeps its
//! roots in `master.key` beside its database. One version is current and seals; a rotation
//! (`bulk-admin keys rotate`) adds a version, re-seals every credential under it while the
//! older versions still open and find, and retires them when none needs them. Losing the
//! keyring makes every stored credential unusable; it cannot be recovered from the store.

mod credentials;
mod headers;
mod keys;
mod sdk_signature;
pub(crate) mod sealing;
mod vault;

pub use credentials::*;
pub use headers::*;
pub use keys::*;
pub use sdk_signature::*;
pub use sealing::{sealed_version, Sealed};
pub use vault::*;
