//! API credentials: authenticating callers, issuing, listing and revoking credentials.

use super::{BulkService, Principal, ServiceError, ServiceResult};
use crate::auth::{self, IssuedCredential};
use crate::model::TenantId;

impl BulkService {
    /// Checks a tenant name and secret against the tenant's live credentials.
    pub async fn authenticate(&self, tenant: &str, secret: &str) -> ServiceResult<Principal> {
        let Ok(tenant) = TenantId::parse(tenant) else {
            return Err(ServiceError::Unauthorized);
        };
        let credentials = self.ports.tenants.credentials(&tenant).await?;
        let credential =
            auth::matching_credential(&credentials, secret).ok_or(ServiceError::Unauthorized)?;
        Ok(Principal {
            tenant,
            key_id: credential.key_id.clone(),
            name: credential.name.clone(),
        })
    }

    /// The tenant's credentials (their secrets are not stored, so none are shown).
    pub async fn credentials(
        &self,
        tenant: &TenantId,
    ) -> ServiceResult<Vec<crate::model::Credential>> {
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
    pub async fn create_credential(
        &self,
        tenant: &TenantId,
        name: &str,
        key_id: Option<&str>,
    ) -> ServiceResult<IssuedCredential> {
        self.ensure_tenant(tenant).await?;
        let issued = auth::issue_credential(tenant, name, key_id);
        self.ports
            .tenants
            .put_credential(&issued.credential)
            .await?;
        Ok(issued)
    }

    /// Stores a credential for an operator-chosen secret (replacing one with the same key id).
    pub async fn install_credential(
        &self,
        tenant: &TenantId,
        name: &str,
        key_id: &str,
        secret: &str,
    ) -> ServiceResult<()> {
        self.ensure_tenant(tenant).await?;
        let issued = auth::credential_with_secret(tenant, name, Some(key_id), secret.to_owned());
        self.ports
            .tenants
            .put_credential(&issued.credential)
            .await?;
        Ok(())
    }
}
