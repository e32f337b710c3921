//! [`TenantStore`] on DynamoDB.

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;

use super::{from_item, key, to_item, unavailable, DynamoStore, Item};
use crate::model::{Credential, TenantId, TenantSettings};
use crate::ports::{StoreResult, TenantStore};

const CREDENTIAL_PREFIX: &str = "CRED#";

fn tenant_pk(tenant: &TenantId) -> String {
    format!("TENANT#{tenant}")
}

fn settings_key(tenant: &TenantId) -> Item {
    key(tenant_pk(tenant), "SETTINGS")
}

fn credential_key(tenant: &TenantId, key_id: &str) -> Item {
    key(tenant_pk(tenant), format!("{CREDENTIAL_PREFIX}{key_id}"))
}

impl DynamoStore {
    async fn put_plain(&self, item: Item) -> StoreResult<()> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

#[async_trait]
impl TenantStore for DynamoStore {
    async fn settings(&self, tenant: &TenantId) -> StoreResult<Option<TenantSettings>> {
        self.get_item(settings_key(tenant))
            .await?
            .map(from_item::<TenantSettings>)
            .transpose()
    }

    async fn put_settings(&self, settings: &TenantSettings) -> StoreResult<()> {
        let mut item = to_item(settings)?;
        item.extend(settings_key(&settings.tenant));
        self.put_plain(item).await
    }

    async fn credentials(&self, tenant: &TenantId) -> StoreResult<Vec<Credential>> {
        let pk = tenant_pk(tenant);
        let items = self.query_prefix(pk, CREDENTIAL_PREFIX).await?;
        items.into_iter().map(from_item::<Credential>).collect()
    }

    async fn put_credential(&self, credential: &Credential) -> StoreResult<()> {
        let mut item = to_item(credential)?;
        item.extend(credential_key(&credential.tenant, &credential.key_id));
        self.put_plain(item).await
    }

    async fn revoke_credential(&self, tenant: &TenantId, key_id: &str) -> StoreResult<bool> {
        let outcome = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(credential_key(tenant, key_id)))
            .update_expression("SET #revoked = :true")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#revoked", "revoked")
            .expression_attribute_values(
                ":true",
                aws_sdk_dynamodb::types::AttributeValue::Bool(true),
            )
            .send()
            .await;
        match outcome {
            Ok(_) => Ok(true),
            Err(error)
                if matches!(
                    error.as_service_error(),
                    Some(UpdateItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Ok(false)
            }
            Err(error) => Err(unavailable(error)),
        }
    }
}
