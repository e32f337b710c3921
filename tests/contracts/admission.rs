//! The admission contract of `TenantStore`: failed authentications counted per client address
//! and window, and a tenant's slots of capped work, each held by one holder at a time until it
//! is freed or its lease ends.

use bulk_users::model::SlotLease;

use crate::fixtures::{at, tenant, Adapters};

contracts!(Threaded:
    failed_authentications_are_counted_per_address_and_window,
    a_slot_is_held_until_freed_or_its_lease_ends,
);
contracts!(Serialized: concurrent_takers_never_share_a_slot);

fn lease(holder: &str, slots: u64, until: i64) -> SlotLease {
    SlotLease {
        name: "batch-create",
        slots,
        holder: holder.to_owned(),
        until: at(until),
    }
}

async fn failed_authentications_are_counted_per_address_and_window(adapters: Adapters) {
    let tenants = &adapters.ports.tenants;
    assert_eq!(
        tenants
            .failed_authentications("192.0.2.1", 100)
            .await
            .unwrap(),
        0
    );
    let mut counts = Vec::new();
    // Windows only move on: a store may forget an address's earlier windows.
    for (source, window) in [
        ("192.0.2.1", 100),
        ("192.0.2.1", 100),
        ("2001:db8::1", 100),
        ("192.0.2.1", 101),
    ] {
        let counted = tenants.count_failed_authentication(source, window).await;
        counts.push(counted.unwrap());
    }
    assert_eq!(counts, vec![1, 2, 1, 1]);
    let read = |source: &'static str, window| tenants.failed_authentications(source, window);
    assert_eq!(read("192.0.2.1", 101).await.unwrap(), 1);
    assert_eq!(read("2001:db8::1", 100).await.unwrap(), 1);
    assert_eq!(read("2001:db8::1", 101).await.unwrap(), 0, "a new window");
    assert_eq!(read("198.51.100.7", 101).await.unwrap(), 0);
}

async fn a_slot_is_held_until_freed_or_its_lease_ends(adapters: Adapters) {
    let tenants = &adapters.ports.tenants;
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let take = |holder: &'static str, until: i64, now: i64| {
        let lease = lease(holder, 2, until);
        let acme = acme.clone();
        async move { tenants.take_slot(&acme, &lease, at(now)).await.unwrap() }
    };
    assert_eq!(take("a", 60, 0).await, Some(0));
    assert_eq!(take("b", 60, 0).await, Some(1));
    assert_eq!(take("c", 60, 1).await, None, "both slots held");
    // Other tenants have slots of their own.
    let globex_lease = lease("g", 2, 60);
    let taken = tenants.take_slot(&globex, &globex_lease, at(1)).await;
    assert_eq!(taken.unwrap(), Some(0));

    // Freed by its holder only.
    tenants
        .free_slot(&acme, "batch-create", 1, "a")
        .await
        .unwrap();
    assert_eq!(take("c", 60, 2).await, None, "not a's to free");
    tenants
        .free_slot(&acme, "batch-create", 1, "b")
        .await
        .unwrap();
    assert_eq!(take("c", 120, 2).await, Some(1));

    // A lease that ended frees its slot (its holder died), and its late free frees nothing.
    assert_eq!(take("d", 120, 59).await, None);
    assert_eq!(take("d", 120, 60).await, Some(0), "a's lease ended at 60");
    tenants
        .free_slot(&acme, "batch-create", 0, "a")
        .await
        .unwrap();
    assert_eq!(take("e", 120, 61).await, None, "d holds slot 0, c slot 1");
}

async fn concurrent_takers_never_share_a_slot(adapters: Adapters) {
    let tenants = adapters.ports.tenants.clone();
    let acme = tenant("acme");
    let takers: Vec<_> = (0..8)
        .map(|n| {
            let (tenants, acme) = (tenants.clone(), acme.clone());
            tokio::spawn(async move {
                let lease = lease(&format!("holder-{n}"), 3, 60);
                tenants.take_slot(&acme, &lease, at(0)).await.unwrap()
            })
        })
        .collect();
    let mut taken = Vec::new();
    for taker in takers {
        taken.extend(taker.await.unwrap());
    }
    taken.sort_unstable();
    assert_eq!(taken, vec![0, 1, 2], "three slots, each taken once");
}
