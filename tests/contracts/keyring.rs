//! The `Keyring` contract, through the domain's `Vault` and key rotation: a sealed secret opens
//! for its own credential only and names its version; versions seal, open and find until they
//! are retired; a rotation re-seals every credential while the old version still opens and
//! finds, is finished by running it again when stopped, and locks no one out, also in a process
//! that cached the keyring before the rotation.

use base64::Engine;
use bulk_users::auth::{sealed_version, KeyVersions, Sealed, Vault};
use bulk_users::service::ServiceError;

use crate::fixtures::{tenant, Adapters};

contracts!(Threaded:
    a_sealed_secret_opens_for_its_own_credential_only,
    versions_seal_open_and_find_until_retired,
    a_rotation_stopped_part_way_is_finished_by_running_it_again,
    a_rotation_in_another_process_locks_no_one_out,
);

/// `sealed` with one byte of its ciphertext, or of its wrapped data key, flipped.
fn tampered(sealed: &str, in_wrapped_key: bool) -> String {
    let mut parsed = Sealed::parse(sealed).expect("a sealed secret");
    let bytes = match (&mut parsed.wrapped_key, in_wrapped_key) {
        (Some(wrapped), true) => wrapped,
        _ => &mut parsed.boxed,
    };
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    parsed.to_text()
}

async fn a_sealed_secret_opens_for_its_own_credential_only(adapters: Adapters) {
    let vault = adapters.vault();
    let acme = tenant("acme");
    let stored = vault.seal(&acme, "k1", "s3cret").await.unwrap();
    assert_eq!(
        stored.version, 1,
        "the first secret makes the first version"
    );
    assert!(stored.sealed.starts_with("v1:"), "{}", stored.sealed);
    assert!(!stored.sealed.contains("s3cret"));
    assert_eq!(sealed_version(&stored.sealed), Some(1));
    let open = |tenant_name: &'static str, key_id: &'static str, sealed: String| {
        let vault = vault.clone();
        async move {
            vault
                .open(&tenant(tenant_name), key_id, &sealed)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        open("acme", "k1", stored.sealed.clone()).await.as_deref(),
        Some("s3cret")
    );
    // A fresh nonce (and data key) every time.
    let again = vault.seal(&acme, "k1", "s3cret").await.unwrap();
    assert_ne!(again.sealed, stored.sealed);
    assert_eq!(again.lookup, stored.lookup, "the digest is deterministic");
    // Another credential, tampered bytes, garbage: nothing opens.
    for (tenant_name, key_id) in [("globex", "k1"), ("acme", "k2"), ("acm", "ek1")] {
        assert_eq!(open(tenant_name, key_id, stored.sealed.clone()).await, None);
    }
    for in_wrapped_key in [false, true] {
        let sealed = tampered(&stored.sealed, in_wrapped_key);
        assert_eq!(open("acme", "k1", sealed).await, None, "{in_wrapped_key}");
    }
    let garbage = base64::engine::general_purpose::STANDARD.encode([0u8; 40]);
    for sealed in ["", "v1:AAAA", "v9:AAAA", &garbage, "not base64!"] {
        assert_eq!(
            open("acme", "k1", sealed.to_owned()).await,
            None,
            "{sealed}"
        );
    }
    // Found by its digest under the current version only.
    assert_eq!(
        vault.lookups("s3cret").await.unwrap(),
        vec![stored.lookup.clone()]
    );
    assert_ne!(vault.lookups("s3cret!").await.unwrap(), vec![stored.lookup]);
}

async fn versions_seal_open_and_find_until_retired(adapters: Adapters) {
    let vault = adapters.vault();
    let keyring = &adapters.ports.keyring;
    let acme = tenant("acme");
    let old = vault.seal(&acme, "k1", "s3cret").await.unwrap();
    assert_eq!(keyring.add_version().await.unwrap(), 2);
    assert_eq!(
        vault.versions().await.unwrap(),
        KeyVersions {
            current: Some(2),
            retiring: vec![1],
            legacy: false
        }
    );
    let new = vault.seal(&acme, "k1", "s3cret").await.unwrap();
    assert_eq!((new.version, sealed_version(&new.sealed)), (2, Some(2)));
    assert!(new.sealed.starts_with("v2:"), "{}", new.sealed);
    // Each version keys its digests with a key of its own.
    assert_ne!(new.lookup, old.lookup);
    assert_eq!(
        vault.lookups("s3cret").await.unwrap(),
        vec![new.lookup.clone(), old.lookup.clone()],
        "the current version first"
    );
    for stored in [&old, &new] {
        let opened = vault.open(&acme, "k1", &stored.sealed).await.unwrap();
        assert_eq!(opened.as_deref(), Some("s3cret"), "v{}", stored.version);
    }
    assert!(
        keyring.retire(2).await.is_err(),
        "the current version stays"
    );
    keyring.retire(1).await.unwrap();
    assert_eq!(vault.versions().await.unwrap().active(), vec![2]);
    assert_eq!(vault.open(&acme, "k1", &old.sealed).await.unwrap(), None);
    assert_eq!(
        vault
            .open(&acme, "k1", &new.sealed)
            .await
            .unwrap()
            .as_deref(),
        Some("s3cret")
    );
    assert_eq!(vault.lookups("s3cret").await.unwrap(), vec![new.lookup]);
}

/// Whether each of `secrets` authenticates its tenant.
async fn all_authenticate(adapters: &Adapters, secrets: &[(String, String)]) {
    let service = adapters.service();
    for (tenant_name, secret) in secrets {
        let who = service.authenticate_secret(secret).await;
        assert_eq!(
            who.map(|who| who.tenant.as_str().to_owned()).ok().as_ref(),
            Some(tenant_name)
        );
        assert!(service.authenticate(tenant_name, secret).await.is_ok());
    }
}

/// The credentials under each version, as `(version, count)` pairs.
async fn counts(adapters: &Adapters) -> Vec<(u32, usize)> {
    let status = adapters.service().key_status().await.unwrap();
    status.credentials.into_iter().collect()
}

async fn a_rotation_stopped_part_way_is_finished_by_running_it_again(adapters: Adapters) {
    let service = adapters.service();
    let mut secrets = Vec::new();
    for (tenant_name, count) in [("acme", 3), ("globex", 2)] {
        for n in 0..count {
            let issued = service
                .create_credential(&tenant(tenant_name), &format!("c{n}"), None)
                .await
                .unwrap();
            secrets.push((tenant_name.to_owned(), issued.secret));
        }
    }
    let revoked = service
        .create_credential(&tenant("acme"), "revoked", None)
        .await
        .unwrap();
    service
        .revoke_credential(&tenant("acme"), &revoked.credential.key_id)
        .await
        .unwrap();
    assert_eq!(counts(&adapters).await, vec![(1, 6)]);

    // Stopped after two: both versions open and find, everyone authenticates.
    let first = service.rotate_keys(Some(2)).await.unwrap();
    assert_eq!(
        (first.version, first.added, first.resealed, first.remaining),
        (2, true, 2, 4)
    );
    assert!(first.retired.is_empty() && first.failed.is_empty());
    assert_eq!(counts(&adapters).await, vec![(1, 4), (2, 2)]);
    assert_eq!(
        adapters.vault().versions().await.unwrap().active(),
        vec![2, 1]
    );
    all_authenticate(&adapters, &secrets).await;

    // Run again: it goes on (no third version), re-seals the rest and retires version 1.
    let second = service.rotate_keys(None).await.unwrap();
    assert_eq!(
        (
            second.version,
            second.added,
            second.resealed,
            second.remaining
        ),
        (2, false, 4, 0)
    );
    assert_eq!(second.retired, vec![1]);
    assert_eq!(counts(&adapters).await, vec![(2, 6)]);
    assert_eq!(adapters.vault().versions().await.unwrap().active(), vec![2]);
    all_authenticate(&adapters, &secrets).await;
    // The revoked credential was re-sealed, and stays revoked.
    assert!(matches!(
        service.authenticate("acme", &revoked.secret).await,
        Err(ServiceError::Unauthorized)
    ));
    let stored = adapters
        .ports
        .tenants
        .credential_by_key_id(&revoked.credential.key_id)
        .await
        .unwrap()
        .unwrap();
    assert!(stored.revoked);
    assert_eq!(sealed_version(&stored.sealed_secret), Some(2));

    // With nothing left to finish, a rotation starts anew.
    let third = service.rotate_keys(None).await.unwrap();
    assert_eq!((third.version, third.added, third.resealed), (3, true, 6));
    assert_eq!(third.retired, vec![2]);
    all_authenticate(&adapters, &secrets).await;
}

async fn a_rotation_in_another_process_locks_no_one_out(adapters: Adapters) {
    let service = adapters.service();
    let acme = tenant("acme");
    let issued = service.create_credential(&acme, "ops", None).await.unwrap();
    // This process has read the keyring (version 1) and authenticated once.
    assert!(service.authenticate("acme", &issued.secret).await.is_ok());

    // The operator rotates from another process: version 2, re-sealed, version 1 retired.
    let operator = bulk_users::service::BulkService::new(
        adapters.another_process().await,
        bulk_users::service::ServiceConfig::default(),
    );
    let rotation = operator.rotate_keys(None).await.unwrap();
    assert_eq!((rotation.version, rotation.retired.clone()), (2, vec![1]));

    // This process still knows only version 1: the secret is found by a digest of version 2
    // all the same, and the AK/SK path opens the secret sealed under it.
    let who = service.authenticate_secret(&issued.secret).await.unwrap();
    assert_eq!(who.key_id, issued.credential.key_id);
    let stored = service.credentials(&acme).await.unwrap();
    let opened = Vault::new(adapters.ports.keyring.clone())
        .open_credential(&stored[0])
        .await
        .unwrap();
    assert_eq!(opened.as_deref(), Some(issued.secret.as_str()));
    assert!(matches!(
        service.authenticate("acme", "not the secret").await,
        Err(ServiceError::Unauthorized)
    ));
}
