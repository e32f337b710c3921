//! The `TenantStore` contract: settings per tenant, credentials whose key ids and secrets are
//! unique across tenants, and the request counter of rate limiting.

use bulk_users::model::{Credential, CredentialPut, TenantId, TenantSettings};

use crate::fixtures::{at, tenant, Adapters};

contracts!(Threaded:
    settings_are_kept_per_tenant,
    credentials_are_stored_revoked_and_found_by_key_id_or_secret,
    key_ids_and_secrets_are_unique_across_tenants,
    requests_are_counted_per_tenant_and_window,
);

/// A credential of `tenant` for `secret`, sealed and looked up as authentication does.
async fn credential(
    adapters: &Adapters,
    tenant: &TenantId,
    key_id: &str,
    secret: &str,
) -> Credential {
    let stored = adapters
        .vault()
        .seal(tenant, key_id, secret)
        .await
        .expect("sealed");
    Credential {
        tenant: tenant.clone(),
        key_id: key_id.to_owned(),
        name: format!("name of {key_id}"),
        sealed_secret: stored.sealed,
        secret_lookup: stored.lookup,
        revoked: false,
        created_at: at(9),
    }
}

/// The credential authentication finds for `secret` (under the current key version).
async fn found_by_secret(adapters: &Adapters, secret: &str) -> Option<Credential> {
    let lookups = adapters.vault().lookups(secret).await.unwrap();
    let tenants = &adapters.ports.tenants;
    tenants
        .credential_by_secret_lookup(&lookups[0])
        .await
        .unwrap()
}

async fn settings_are_kept_per_tenant(adapters: Adapters) {
    let tenants = &adapters.ports.tenants;
    let a = tenant("acme");
    assert_eq!(tenants.settings(&a).await.unwrap(), None);
    let mut settings = TenantSettings::with_defaults(a.clone());
    tenants.put_settings(&settings).await.unwrap();
    assert_eq!(tenants.settings(&a).await.unwrap(), Some(settings.clone()));
    settings.teams.push("Night".to_owned());
    settings.max_chat_limit = 3;
    tenants.put_settings(&settings).await.unwrap();
    assert_eq!(tenants.settings(&a).await.unwrap(), Some(settings));
    assert_eq!(tenants.settings(&tenant("globex")).await.unwrap(), None);
}

async fn credentials_are_stored_revoked_and_found_by_key_id_or_secret(adapters: Adapters) {
    let tenants = &adapters.ports.tenants;
    let a = tenant("acme");
    let globex = tenant("globex");
    let k1 = credential(&adapters, &a, "k1", "secret-1").await;
    let k2 = credential(&adapters, &a, "k2", "secret-2").await;
    let g1 = credential(&adapters, &globex, "g1", "secret-g").await;
    // Stored out of key order: listed in it.
    for stored in [&k2, &k1, &g1] {
        assert_eq!(
            tenants.put_credential(stored).await.unwrap(),
            CredentialPut::Stored
        );
    }
    assert!(tenants.revoke_credential(&a, "k2").await.unwrap());
    assert!(!tenants.revoke_credential(&a, "k3").await.unwrap());
    assert!(
        !tenants.revoke_credential(&a, "g1").await.unwrap(),
        "another tenant's"
    );
    assert!(!tenants.revoke_credential(&globex, "k1").await.unwrap());
    let revoked = Credential {
        revoked: true,
        ..k2.clone()
    };
    assert_eq!(
        tenants.credentials(&a).await.unwrap(),
        vec![k1.clone(), revoked.clone()]
    );
    assert_eq!(
        tenants.credentials(&globex).await.unwrap(),
        vec![g1.clone()]
    );
    assert!(tenants
        .credentials(&tenant("nobody"))
        .await
        .unwrap()
        .is_empty());
    let stored = &tenants.credentials(&a).await.unwrap()[0];
    let opened = adapters.vault().open_credential(stored).await.unwrap();
    assert_eq!(opened.as_deref(), Some("secret-1"));

    // Found by key id and by secret, whatever the tenant; revoked ones too.
    assert_eq!(
        tenants.credential_by_key_id("k1").await.unwrap(),
        Some(k1.clone())
    );
    assert_eq!(
        tenants.credential_by_key_id("k2").await.unwrap(),
        Some(revoked)
    );
    assert_eq!(tenants.credential_by_key_id("g1").await.unwrap(), Some(g1));
    assert_eq!(tenants.credential_by_key_id("k3").await.unwrap(), None);
    assert_eq!(found_by_secret(&adapters, "secret-1").await, Some(k1));
    assert_eq!(found_by_secret(&adapters, "nope").await, None);
}

async fn key_ids_and_secrets_are_unique_across_tenants(adapters: Adapters) {
    let tenants = &adapters.ports.tenants;
    let a = tenant("acme");
    let globex = tenant("globex");
    let k1 = credential(&adapters, &a, "k1", "secret-1").await;
    assert_eq!(
        tenants.put_credential(&k1).await.unwrap(),
        CredentialPut::Stored
    );

    // Another tenant cannot take the key id, nor another credential the secret.
    let stolen_id = credential(&adapters, &globex, "k1", "secret-g").await;
    assert_eq!(
        tenants.put_credential(&stolen_id).await.unwrap(),
        CredentialPut::KeyIdTaken
    );
    let same_secret = credential(&adapters, &globex, "g1", "secret-1").await;
    assert_eq!(
        tenants.put_credential(&same_secret).await.unwrap(),
        CredentialPut::SecretTaken
    );
    assert!(tenants.credentials(&globex).await.unwrap().is_empty());
    assert_eq!(tenants.credential_by_key_id("g1").await.unwrap(), None);
    assert_eq!(tenants.credentials(&a).await.unwrap(), vec![k1]);

    // The same tenant and key id replace the credential, secret and revocation included; its
    // old secret finds nothing.
    assert!(tenants.revoke_credential(&a, "k1").await.unwrap());
    let replaced = credential(&adapters, &a, "k1", "secret-1b").await;
    assert_eq!(
        tenants.put_credential(&replaced).await.unwrap(),
        CredentialPut::Stored
    );
    assert_eq!(
        tenants.credentials(&a).await.unwrap(),
        vec![replaced.clone()]
    );
    assert_eq!(found_by_secret(&adapters, "secret-1").await, None);
    assert_eq!(
        found_by_secret(&adapters, "secret-1b").await,
        Some(replaced)
    );
    // The freed secret can be another credential's now.
    assert_eq!(
        tenants.put_credential(&same_secret).await.unwrap(),
        CredentialPut::Stored
    );
}

async fn requests_are_counted_per_tenant_and_window(adapters: Adapters) {
    let tenants = &adapters.ports.tenants;
    let a = tenant("acme");
    let mut counts = Vec::new();
    // Windows only move on: a store may forget a tenant's earlier windows.
    for (tenant, window) in [
        (&a, 100),
        (&a, 100),
        (&tenant("globex"), 100),
        (&a, 101),
        (&a, 101),
    ] {
        counts.push(tenants.count_request(tenant, window).await.unwrap());
    }
    assert_eq!(counts, vec![1, 2, 1, 1, 2]);
}
