//! API credentials: authenticating callers, issuing, listing and revoking credentials.
//!
//! Every authentication failure is [`ServiceError::Unauthorized`], whatever went wrong (unknown
//! key id or secret, another tenant's credential, a revoked one, a bad signature, clock skew).
//! Secrets are never logged nor echoed.

use super::{BulkService, Principal, ServiceError, ServiceResult};
use crate::auth::{self, IssuedCredential, SignedRequest, Vault};
use crate::model::{Credential, CredentialPut, TenantId, Timestamp};

impl BulkService {
    /// HTTP Basic with the tenant as user name: the credential the secret belongs to must be a
    /// live one of that tenant.
    pub async fn authenticate(&self, tenant: &str, secret: &str) -> ServiceResult<Principal> {
        let Ok(tenant) = TenantId::parse(tenant) else {
            return Err(ServiceError::Unauthorized);
        };
        let principal = self.authenticate_secret(secret).await?;
        if principal.tenant == tenant {
            Ok(principal)
        } else {
            Err(ServiceError::Unauthorized)
        }
    }

    /// A secret alone (`Authorization: Bearer {secret}`, Zendesk's Basic `{email}/token:{secret}`,
    /// Huawei's `X-Auth-Token: {secret}`): the caller is the live credential holding it, and the
    /// tenant is that credential's.
    pub async fn authenticate_secret(&self, secret: &str) -> ServiceResult<Principal> {
        if secret.is_empty() {
            return Err(ServiceError::Unauthorized);
        }
        // Under every active key version, the current one first: a credential a rotation has
        // not re-sealed yet is found by its old version's digest. When none finds it, the
        // versions are read again once (a rotation in another process may have re-sealed it).
        let vault = self.vault();
        let tried = vault.lookups(secret).await?;
        if let Some(principal) = self.find_by_secret(&tried, secret).await? {
            return Ok(principal);
        }
        let fresh = vault.lookups_after_reload(secret, &tried).await?;
        if let Some(principal) = self.find_by_secret(&fresh, secret).await? {
            return Ok(principal);
        }
        Err(ServiceError::Unauthorized)
    }

    /// The live credential that one of `lookups` finds and whose secret `secret` is.
    async fn find_by_secret(
        &self,
        lookups: &[String],
        secret: &str,
    ) -> ServiceResult<Option<Principal>> {
        let vault = self.vault();
        for lookup in lookups {
            let found = self
                .ports
                .tenants
                .credential_by_secret_lookup(lookup)
                .await?;
            if let Some(credential) = found {
                if vault.matches(&credential, secret).await? {
                    return Ok(Some(principal(credential)));
                }
            }
        }
        Ok(None)
    }

    /// A request signed with AK/SK (`Authorization: SDK-HMAC-SHA256 Access={key id}, …`), as the
    /// Huawei SDKs send it: the signature must be the live credential's, over this very request,
    /// signed within 15 minutes of now.
    pub async fn authenticate_signed(
        &self,
        request: &SignedRequest<'_>,
    ) -> ServiceResult<Principal> {
        self.authenticate_signed_at(request, Timestamp::now()).await
    }

    /// [`BulkService::authenticate_signed`] with the server's clock reading `now`.
    pub async fn authenticate_signed_at(
        &self,
        request: &SignedRequest<'_>,
        now: Timestamp,
    ) -> ServiceResult<Principal> {
        let authorization = request.authorization().map_err(refused)?;
        let credential = self
            .ports
            .tenants
            .credential_by_key_id(&authorization.access)
            .await?
            .filter(|credential| !credential.revoked)
            .ok_or(ServiceError::Unauthorized)?;
        let Some(secret) = self.vault().open_credential(&credential).await? else {
            tracing::warn!(
                key_id = %credential.key_id,
                "a stored credential's secret does not open: is this the keyring it was sealed under?"
            );
            return Err(ServiceError::Unauthorized);
        };
        auth::verify_signed_request(request, &authorization, &secret, now).map_err(refused)?;
        Ok(principal(credential))
    }

    /// The tenant's credentials (their secrets are sealed; callers must not show them).
    pub async fn credentials(&self, tenant: &TenantId) -> ServiceResult<Vec<Credential>> {
        Ok(self.ports.tenants.credentials(tenant).await?)
    }

    /// Revokes a credential; it stops working at once.
    pub async fn revoke_credential(&self, tenant: &TenantId, key_id: &str) -> ServiceResult<()> {
        if self.ports.tenants.revoke_credential(tenant, key_id).await? {
            Ok(())
        } else {
            Err(ServiceError::NotFound(format!(
                "tenant {tenant} has no credential {key_id}"
            )))
        }
    }

    /// Issues a new credential (random secret) for the tenant, creating the tenant if needed.
    /// A key id another tenant holds is a conflict.
    pub async fn create_credential(
        &self,
        tenant: &TenantId,
        name: &str,
        key_id: Option<&str>,
    ) -> ServiceResult<IssuedCredential> {
        check_key_id(key_id)?;
        self.ensure_tenant(tenant).await?;
        let issued = auth::issue_credential(&self.vault(), tenant, name, key_id).await?;
        self.store_credential(&issued).await?;
        Ok(issued)
    }

    /// Stores a credential for an operator-chosen secret, replacing the tenant's credential with
    /// the same key id (and un-revoking it). A key id another tenant holds, or a secret another
    /// credential has, is a conflict.
    pub async fn install_credential(
        &self,
        tenant: &TenantId,
        name: &str,
        key_id: &str,
        secret: &str,
    ) -> ServiceResult<()> {
        check_key_id(Some(key_id))?;
        if secret.is_empty() {
            return Err(ServiceError::invalid(
                "secret",
                "a secret must not be empty",
            ));
        }
        self.ensure_tenant(tenant).await?;
        let issued = auth::credential_with_secret(
            &self.vault(),
            tenant,
            name,
            Some(key_id),
            secret.to_owned(),
        )
        .await?;
        self.store_credential(&issued).await
    }

    /// The domain's use of the keyring.
    pub(super) fn vault(&self) -> Vault {
        Vault::new(self.ports.keyring.clone())
    }

    async fn store_credential(&self, issued: &IssuedCredential) -> ServiceResult<()> {
        let credential = &issued.credential;
        // A secret is unique across credentials: under the versions a rotation has not retired
        // yet too, where its digest is another.
        for lookup in self.vault().lookups(&issued.secret).await? {
            if lookup == credential.secret_lookup {
                continue;
            }
            let holder = self
                .ports
                .tenants
                .credential_by_secret_lookup(&lookup)
                .await?;
            if holder.is_some_and(|holder| holder.key_id != credential.key_id) {
                return Err(secret_taken());
            }
        }
        match self.ports.tenants.put_credential(credential).await? {
            CredentialPut::Stored => Ok(()),
            CredentialPut::KeyIdTaken => Err(ServiceError::Conflict(format!(
                "key id {} belongs to another tenant: key ids are unique across tenants",
                credential.key_id
            ))),
            CredentialPut::SecretTaken => Err(secret_taken()),
        }
    }
}

fn secret_taken() -> ServiceError {
    ServiceError::Conflict(
        "this secret is already another credential's: choose another secret".to_owned(),
    )
}

fn principal(credential: Credential) -> Principal {
    Principal {
        tenant: credential.tenant,
        key_id: credential.key_id,
        name: credential.name,
    }
}

fn refused(error: auth::SignatureError) -> ServiceError {
    tracing::debug!(%error, "signed request refused");
    ServiceError::Unauthorized
}

/// Key ids travel in `Authorization` headers (`Access=…`) and are listed by tab-separated
/// output: 1–128 characters of ASCII letters, digits and `-_.~`.
fn check_key_id(key_id: Option<&str>) -> ServiceResult<()> {
    match key_id {
        Some(key_id) if !auth::is_key_id(key_id) => Err(ServiceError::invalid(
            "key_id",
            "a key id is 1-128 ASCII letters, digits or '-', '_', '.', '~'",
        )),
        _ => Ok(()),
    }
}

#[cfg(all(test, feature = "embedded"))]
mod tests {
    use std::sync::Arc;

    use http::{HeaderMap, HeaderValue};

    use super::*;
    use crate::adapters::embedded;
    use crate::adapters::embedded::FileKeyring;
    use crate::service::ServiceConfig;

    async fn service(dir: &tempfile::TempDir) -> BulkService {
        let adapters = embedded::open(dir.path()).await.unwrap();
        BulkService::new(adapters.ports, ServiceConfig::default())
    }

    fn tenant(name: &str) -> TenantId {
        TenantId::parse(name).unwrap()
    }

    #[tokio::test]
    async fn secrets_authenticate_their_tenant_only_until_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let service = service(&dir).await;
        let issued = service
            .create_credential(&tenant("acme"), "ops", None)
            .await
            .unwrap();
        service
            .create_credential(&tenant("globex"), "ops", None)
            .await
            .unwrap();
        let who = service.authenticate("acme", &issued.secret).await.unwrap();
        assert_eq!(who.tenant, tenant("acme"));
        assert_eq!(who.key_id, issued.credential.key_id);
        assert_eq!(who.name, "ops");
        assert_eq!(
            service.authenticate_secret(&issued.secret).await.unwrap(),
            who
        );
        for (user, secret) in [
            ("globex", issued.secret.as_str()),
            ("Acme!", issued.secret.as_str()),
            ("acme", "wrong"),
            ("acme", ""),
        ] {
            assert!(matches!(
                service.authenticate(user, secret).await,
                Err(ServiceError::Unauthorized)
            ));
        }
        assert!(matches!(
            service.authenticate_secret("wrong").await,
            Err(ServiceError::Unauthorized)
        ));
        service
            .revoke_credential(&tenant("acme"), &issued.credential.key_id)
            .await
            .unwrap();
        assert!(matches!(
            service.authenticate_secret(&issued.secret).await,
            Err(ServiceError::Unauthorized)
        ));
    }

    #[tokio::test]
    async fn key_ids_are_global_and_reinstalling_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let service = service(&dir).await;
        service
            .install_credential(&tenant("acme"), "local", "acme", "first-secret")
            .await
            .unwrap();
        assert!(matches!(
            service
                .install_credential(&tenant("globex"), "local", "acme", "other-secret")
                .await,
            Err(ServiceError::Conflict(_))
        ));
        assert!(matches!(
            service
                .create_credential(&tenant("globex"), "api", Some("acme"))
                .await,
            Err(ServiceError::Conflict(_))
        ));
        assert!(matches!(
            service
                .install_credential(&tenant("globex"), "local", "globex", "first-secret")
                .await,
            Err(ServiceError::Conflict(_))
        ));
        assert!(matches!(
            service
                .create_credential(&tenant("globex"), "api", Some("bad key"))
                .await,
            Err(ServiceError::Invalid { .. })
        ));
        // Re-seeding on every start: the same tenant and key id, the same or a new secret.
        service
            .install_credential(&tenant("acme"), "local", "acme", "first-secret")
            .await
            .unwrap();
        service
            .install_credential(&tenant("acme"), "local", "acme", "second-secret")
            .await
            .unwrap();
        assert!(service.authenticate("acme", "first-secret").await.is_err());
        assert_eq!(
            service
                .authenticate("acme", "second-secret")
                .await
                .unwrap()
                .key_id,
            "acme"
        );
        assert_eq!(service.credentials(&tenant("acme")).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn credentials_survive_a_restart_with_the_same_keyring_only() {
        let dir = tempfile::tempdir().unwrap();
        let issued = service(&dir)
            .await
            .create_credential(&tenant("acme"), "ops", None)
            .await
            .unwrap();
        let reopened = service(&dir).await;
        assert!(reopened.authenticate("acme", &issued.secret).await.is_ok());

        let adapters = embedded::open(dir.path()).await.unwrap();
        let mut ports = adapters.ports;
        let other = tempfile::tempdir().unwrap();
        ports.keyring =
            Arc::new(FileKeyring::load_or_create(&other.path().join("master.key")).unwrap());
        let other_key = BulkService::new(ports, ServiceConfig::default());
        assert!(matches!(
            other_key.authenticate("acme", &issued.secret).await,
            Err(ServiceError::Unauthorized)
        ));
    }

    /// Signs a request like the Huawei SDK, at `at` (`X-Sdk-Date`).
    fn signed_headers(
        key_id: &str,
        secret: &str,
        path: &str,
        query: Option<&str>,
        body: &[u8],
        at: &str,
    ) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("127.0.0.1:3000"));
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.insert("x-sdk-date", HeaderValue::from_str(at).unwrap());
        headers.insert("x-project-id", HeaderValue::from_static("acme"));
        let authorization = auth::sign_request(
            &SignedRequest {
                method: "POST",
                path,
                query,
                headers: &headers,
                body,
            },
            key_id,
            secret,
        )
        .unwrap();
        headers.insert(
            "authorization",
            HeaderValue::from_str(&authorization).unwrap(),
        );
        headers
    }

    const SIGNED_PATH: &str = "/v2/acme/users/batch-create";
    const SIGNED_QUERY: Option<&str> = Some("a=1");
    const SIGNED_BODY: &[u8] = br#"{"users":[{"user_name":"ann"}]}"#;
    /// When the requests of these tests are signed (`X-Sdk-Date`); [`signed_now`] as a time.
    const SIGNED_AT: &str = "20250102T030405Z";

    fn signed_now() -> Timestamp {
        Timestamp::parse("2025-01-02T03:04:05.000Z").unwrap()
    }

    /// A service holding acme's SDK credential `AKACME`.
    async fn sdk_service(dir: &tempfile::TempDir) -> BulkService {
        let service = service(dir).await;
        service
            .install_credential(&tenant("acme"), "sdk", "AKACME", "sk-of-acme")
            .await
            .unwrap();
        service
    }

    /// The request of these tests, with `headers`.
    fn signed_request(headers: &HeaderMap) -> SignedRequest<'_> {
        SignedRequest {
            method: "POST",
            path: SIGNED_PATH,
            query: SIGNED_QUERY,
            headers,
            body: SIGNED_BODY,
        }
    }

    /// Headers signing the request of these tests with `key_id` and `secret`.
    fn signed_by(key_id: &str, secret: &str) -> HeaderMap {
        signed_headers(
            key_id,
            secret,
            SIGNED_PATH,
            SIGNED_QUERY,
            SIGNED_BODY,
            SIGNED_AT,
        )
    }

    async fn assert_unauthorized(
        service: &BulkService,
        request: &SignedRequest<'_>,
        at: Timestamp,
    ) {
        assert!(matches!(
            service.authenticate_signed_at(request, at).await,
            Err(ServiceError::Unauthorized)
        ));
    }

    #[tokio::test]
    async fn signed_requests_authenticate_by_key_id() {
        let dir = tempfile::tempdir().unwrap();
        let service = sdk_service(&dir).await;
        let headers = signed_by("AKACME", "sk-of-acme");
        let who = service
            .authenticate_signed_at(&signed_request(&headers), signed_now())
            .await
            .unwrap();
        assert_eq!(who.tenant, tenant("acme"));
        assert_eq!(who.key_id, "AKACME");
        assert_eq!(who.name, "sdk");
    }

    #[tokio::test]
    async fn a_signed_request_beyond_the_clock_skew_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let service = sdk_service(&dir).await;
        let headers = signed_by("AKACME", "sk-of-acme");
        let request = signed_request(&headers);
        // Clock skew beyond 15 minutes.
        assert_unauthorized(&service, &request, signed_now().plus_seconds(901)).await;
        // The real clock is far from 2025-01-02.
        assert!(matches!(
            service.authenticate_signed(&request).await,
            Err(ServiceError::Unauthorized)
        ));
    }

    #[tokio::test]
    async fn a_tampered_wrongly_signed_or_unsigned_request_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let service = sdk_service(&dir).await;
        let headers = signed_by("AKACME", "sk-of-acme");
        let request = signed_request(&headers);
        // A tampered body, a wrong secret, an unknown key id.
        let tampered = SignedRequest {
            body: br#"{"users":[{"user_name":"eve"}]}"#,
            ..request
        };
        assert!(service
            .authenticate_signed_at(&tampered, signed_now())
            .await
            .is_err());
        for (key_id, secret) in [("AKACME", "wrong"), ("AKNOPE", "sk-of-acme")] {
            let headers = signed_by(key_id, secret);
            assert_unauthorized(&service, &signed_request(&headers), signed_now()).await;
        }
        // Not signed at all.
        let unsigned = HeaderMap::new();
        assert_unauthorized(&service, &signed_request(&unsigned), signed_now()).await;
    }

    #[tokio::test]
    async fn a_revoked_key_id_signs_no_more() {
        let dir = tempfile::tempdir().unwrap();
        let service = sdk_service(&dir).await;
        let headers = signed_by("AKACME", "sk-of-acme");
        let request = signed_request(&headers);
        assert!(service
            .authenticate_signed_at(&request, signed_now())
            .await
            .is_ok());
        service
            .revoke_credential(&tenant("acme"), "AKACME")
            .await
            .unwrap();
        assert_unauthorized(&service, &request, signed_now()).await;
    }
}
