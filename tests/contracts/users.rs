//! The `UserStore` contract: ids allocated in blocks, keys (email, external id, user name)
//! unique per tenant whatever their case, versions guarding every change, deleted users
//! hidden but kept, listings with their totals.

use bulk_users::model::{SaveOutcome, User, UserChange, UserFilter, UserKey, UserSelector};

use crate::fixtures::{at, create, edit, ids, listed, page, save, tenant, user, Adapters};

contracts!(Threaded:
    ids_are_allocated_in_contiguous_blocks,
    users_are_created_with_their_keys_and_found_by_any,
    keys_are_unique_and_a_taken_key_saves_nothing,
    versions_guard_changes,
    a_changed_key_is_released,
    deleted_users_release_their_keys_and_are_hidden,
    a_refused_change_among_many_leaves_the_others_saved,
    tenants_are_isolated,
    listings_filter_on_the_start_of_the_user_name,
    selections_are_live_users_in_id_order_each_once,
);

async fn ids_are_allocated_in_contiguous_blocks(adapters: Adapters) {
    let users = adapters.ports.users.as_ref();
    let mut firsts = Vec::new();
    for count in [3, 1, 10, 130, 1] {
        firsts.push(users.allocate_user_ids(count).await.unwrap());
    }
    assert_eq!(firsts, vec![1, 4, 5, 15, 145]);
}

async fn users_are_created_with_their_keys_and_found_by_any(adapters: Adapters) {
    let users = adapters.ports.users.as_ref();
    let a = tenant("acme");

    // 130 users with 3 keys each in one call: several transactions, more than 100 reads.
    let all: Vec<User> = (1..=130)
        .map(|id| {
            let agent = (id % 10 == 0).then(|| format!("A{}", id / 10));
            let mut user = user(id, &format!("User{id}@Example.com"), agent.as_deref());
            user.external_id = Some(format!("Ext-{id}"));
            user.user_name = Some(format!("Login{id}"));
            user
        })
        .collect();
    let changes: Vec<UserChange> = all.iter().map(create).collect();
    let outcomes = save(users, &a, &changes).await;
    assert!(
        outcomes.iter().all(|o| *o == SaveOutcome::Saved),
        "{outcomes:?}"
    );

    let mut keys: Vec<UserKey> = all
        .iter()
        .map(|u| UserKey::email(u.email.as_deref().unwrap()))
        .collect();
    keys.push(UserKey::email("missing@example.com"));
    assert_eq!(users.users_by_keys(&a, &keys).await.unwrap(), all);
    let by_others = users
        .users_by_keys(
            &a,
            &[
                UserKey::external_id("EXT-7"),
                UserKey::user_name("login7"),
                UserKey::email("user7@example.COM"),
                UserKey::user_name("login9"),
                UserKey::external_id("login9"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        ids(&by_others),
        vec![7, 9],
        "each user once, whatever the key"
    );
    assert_eq!(
        users.users_by_ids(&a, &[9, 7, 9, 999]).await.unwrap(),
        vec![all[6].clone(), all[8].clone()]
    );

    // Listing in id order, one page at a time, with the total.
    let mut pages = Vec::new();
    for n in 1..=3 {
        let (found, total) = users
            .list_users(&a, &UserFilter::default(), page(n, 50).into())
            .await
            .unwrap();
        assert_eq!(found.len(), if n < 3 { 50 } else { 30 });
        assert_eq!(total, 130);
        pages.extend(found);
    }
    assert_eq!(pages, all);
    let (beyond, total) = users
        .list_users(&a, &UserFilter::default(), page(4, 50).into())
        .await
        .unwrap();
    assert!(beyond.is_empty());
    assert_eq!(total, 130);

    let many: Vec<u64> = (1..=130).rev().collect();
    let selected = users.select_users(&a, &UserSelector::Ids(many)).await;
    assert_eq!(selected.unwrap(), all);
    assert!(users.users_by_keys(&a, &[]).await.unwrap().is_empty());
    assert!(users.users_by_ids(&a, &[]).await.unwrap().is_empty());
    assert!(save(users, &a, &[]).await.is_empty());
}

async fn keys_are_unique_and_a_taken_key_saves_nothing(adapters: Adapters) {
    let users = adapters.ports.users.as_ref();
    let a = tenant("acme");
    let mut ann = user(1, "ann@example.com", Some("A1"));
    ann.user_name = Some("ann".to_owned());
    ann.external_id = Some("e1".to_owned());
    assert_eq!(
        save(users, &a, &[create(&ann)]).await,
        vec![SaveOutcome::Saved]
    );

    // A second user claiming a taken email (in other case, padded) is refused, and nothing of
    // it is written: neither the user nor its other keys.
    let mut intruder = user(2, " ANN@example.com", None);
    intruder.user_name = Some("intruder".to_owned());
    assert_eq!(
        save(users, &a, &[create(&intruder)]).await,
        vec![SaveOutcome::KeyTaken(UserKey::email("ann@example.com"))]
    );
    assert!(users.users_by_ids(&a, &[2]).await.unwrap().is_empty());
    let intruder_name = [UserKey::user_name("intruder")];
    assert!(users
        .users_by_keys(&a, &intruder_name)
        .await
        .unwrap()
        .is_empty());
    let mut padded = user(2, "other@example.com", None);
    padded.user_name = Some(" Ann ".to_owned());
    assert_eq!(
        save(users, &a, &[create(&padded)]).await,
        vec![SaveOutcome::KeyTaken(UserKey::user_name("ann"))]
    );
    let mut other = user(3, "other@example.com", None);
    other.user_name = Some("Intruder".to_owned());
    assert_eq!(
        save(users, &a, &[create(&other)]).await,
        vec![SaveOutcome::Saved]
    );

    // An existing user claiming a taken external id keeps its stored version; nor can it take
    // another's user name.
    let claim = edit(&other, |u| u.external_id = Some("E1".to_owned()));
    assert_eq!(
        save(users, &a, &[claim]).await,
        vec![SaveOutcome::KeyTaken(UserKey::external_id("e1"))]
    );
    let grab = edit(&other, |u| u.user_name = Some("ANN".to_owned()));
    assert_eq!(
        save(users, &a, &[grab]).await,
        vec![SaveOutcome::KeyTaken(UserKey::user_name("ann"))]
    );
    assert_eq!(
        users.users_by_ids(&a, &[1, 2, 3]).await.unwrap(),
        vec![ann, other]
    );
}

async fn versions_guard_changes(adapters: Adapters) {
    let users = adapters.ports.users.as_ref();
    let a = tenant("acme");
    let ann = user(1, "ann@example.com", None);
    assert_eq!(
        save(users, &a, &[create(&ann)]).await,
        vec![SaveOutcome::Saved]
    );

    // Re-saving the same new user is saved (an earlier run did it), twice in a call too;
    // another user under a taken id is stale.
    assert_eq!(
        save(users, &a, &[create(&ann), create(&ann)]).await,
        vec![SaveOutcome::Saved; 2]
    );
    let mut impostor = user(1, "impostor@example.com", None);
    impostor.first_name = "Impostor".to_owned();
    assert_eq!(
        save(users, &a, &[create(&impostor)]).await,
        vec![SaveOutcome::Stale]
    );
    let impostor_email = [UserKey::email("impostor@example.com")];
    assert!(users
        .users_by_keys(&a, &impostor_email)
        .await
        .unwrap()
        .is_empty());

    // Two changes of the same version: the first is saved, the second is stale; so is a
    // later edit of the version no longer stored, and a change of a user that does not exist.
    let renamed = edit(&ann, |u| u.first_name = "Annie".to_owned());
    let concurrent = edit(&ann, |u| u.last_name = "Other".to_owned());
    assert_eq!(
        save(users, &a, &[renamed.clone(), concurrent]).await,
        vec![SaveOutcome::Saved, SaveOutcome::Stale]
    );
    let late = edit(&ann, |u| u.first_name = "Late".to_owned());
    assert_eq!(save(users, &a, &[late]).await, vec![SaveOutcome::Stale]);
    let ghost = user(5, "ghost@example.com", None);
    assert_eq!(
        save(users, &a, &[edit(&ghost, |_| ())]).await,
        vec![SaveOutcome::Stale]
    );
    assert_eq!(
        users.users_by_ids(&a, &[1, 5]).await.unwrap(),
        vec![renamed.after]
    );
    assert_eq!(listed(users, &a).await, (vec![1], 1));
}

async fn a_changed_key_is_released(adapters: Adapters) {
    let users = adapters.ports.users.as_ref();
    let a = tenant("acme");
    let ann = user(1, "ann@example.com", Some("A1"));
    assert_eq!(
        save(users, &a, &[create(&ann)]).await,
        vec![SaveOutcome::Saved]
    );

    // A new email releases the old one, which another user takes in the same call (the
    // release comes first); the agent number index follows the user.
    let moved = edit(&ann, |u| {
        u.email = Some("ann.lee@example.com".to_owned());
        u.agent_number = Some("A77".to_owned());
    });
    let mut bob = user(4, "Ann@Example.com", None);
    bob.first_name = "Bob".to_owned();
    assert_eq!(
        save(users, &a, &[moved.clone(), create(&bob)]).await,
        vec![SaveOutcome::Saved, SaveOutcome::Saved]
    );
    let ann = moved.after;
    let both = [
        UserKey::email("ann@example.com"),
        UserKey::email("ann.lee@example.com"),
    ];
    assert_eq!(
        users.users_by_keys(&a, &both).await.unwrap(),
        vec![ann.clone(), bob]
    );
    let by_agent = |number: &str| UserSelector::AgentNumbers(vec![number.to_owned()]);
    assert_eq!(
        users.select_users(&a, &by_agent("A77")).await.unwrap(),
        vec![ann.clone()]
    );
    assert!(users
        .select_users(&a, &by_agent("A1"))
        .await
        .unwrap()
        .is_empty());

    // Dropping a key entirely releases it too.
    let dropped = edit(&ann, |u| u.email = None);
    assert_eq!(save(users, &a, &[dropped]).await, vec![SaveOutcome::Saved]);
    let lee = [UserKey::email("ann.lee@example.com")];
    assert!(users.users_by_keys(&a, &lee).await.unwrap().is_empty());
    let taker = user(5, "ann.lee@example.com", None);
    assert_eq!(
        save(users, &a, &[create(&taker)]).await,
        vec![SaveOutcome::Saved]
    );
}

async fn deleted_users_release_their_keys_and_are_hidden(adapters: Adapters) {
    let users = adapters.ports.users.as_ref();
    let a = tenant("acme");
    let mut ann = user(1, "ann@example.com", Some("A1"));
    ann.external_id = Some("ext-1".to_owned());
    ann.user_name = Some("ann".to_owned());
    let bob = user(2, "bob@example.com", Some("A1"));
    assert_eq!(
        save(users, &a, &[create(&ann), create(&bob)]).await,
        vec![SaveOutcome::Saved; 2]
    );

    let deletion = edit(&ann, |u| u.deleted_at = Some(at(3)));
    assert_eq!(
        save(users, &a, std::slice::from_ref(&deletion)).await,
        vec![SaveOutcome::Saved]
    );
    let deleted = deletion.after;

    let keys = [
        UserKey::email("ann@example.com"),
        UserKey::external_id("ext-1"),
        UserKey::user_name("ann"),
    ];
    assert!(users.users_by_keys(&a, &keys).await.unwrap().is_empty());
    assert_eq!(listed(users, &a).await, (vec![2], 1));
    for selector in [
        UserSelector::Ids(vec![1, 2]),
        UserSelector::Emails(vec![
            "ann@example.com".to_owned(),
            "bob@example.com".to_owned(),
        ]),
        UserSelector::AgentNumbers(vec!["A1".to_owned()]),
    ] {
        let selected = users.select_users(&a, &selector).await.unwrap();
        assert_eq!(ids(&selected), vec![2], "{selector:?}");
    }
    // Still there for a re-run to see.
    assert_eq!(
        users.users_by_ids(&a, &[1, 2]).await.unwrap(),
        vec![deleted, bob]
    );

    // Every key is free again.
    let mut heir = user(3, "ANN@example.com", None);
    heir.external_id = Some("EXT-1".to_owned());
    heir.user_name = Some("Ann".to_owned());
    assert_eq!(
        save(users, &a, &[create(&heir)]).await,
        vec![SaveOutcome::Saved]
    );
    assert_eq!(users.users_by_keys(&a, &keys).await.unwrap(), vec![heir]);
}

async fn a_refused_change_among_many_leaves_the_others_saved(adapters: Adapters) {
    let users = adapters.ports.users.as_ref();
    let a = tenant("acme");
    let holder = user(1_000, "taken@example.com", None);
    assert_eq!(
        save(users, &a, &[create(&holder)]).await,
        vec![SaveOutcome::Saved]
    );

    // 150 new users (300 DynamoDB items: three transactions at least); number 75 wants a
    // taken email.
    let batch: Vec<User> = (1..=150)
        .map(|id| {
            let email = if id == 75 {
                "Taken@example.com".to_owned()
            } else {
                format!("user{id}@example.com")
            };
            user(id, &email, None)
        })
        .collect();
    let changes: Vec<UserChange> = batch.iter().map(create).collect();
    let outcomes = save(users, &a, &changes).await;
    let mut expected = vec![SaveOutcome::Saved; 150];
    expected[74] = SaveOutcome::KeyTaken(UserKey::email("taken@example.com"));
    assert_eq!(outcomes, expected);
    let (listed_ids, total) = listed(users, &a).await;
    assert_eq!(total, 150);
    assert!(!listed_ids.contains(&75));
    assert!(listed_ids.contains(&1_000));
    assert!(users.users_by_ids(&a, &[75]).await.unwrap().is_empty());

    // Again: all saved before (none changed since), the refused one still refused.
    assert_eq!(save(users, &a, &changes).await, outcomes);
}

async fn tenants_are_isolated(adapters: Adapters) {
    let users = adapters.ports.users.as_ref();
    let a = tenant("acme");
    let b = tenant("globex");
    let ours = user(1, "same@example.com", Some("A1"));
    let theirs = user(2, "same@example.com", Some("A1"));
    assert_eq!(
        save(users, &a, &[create(&ours)]).await,
        vec![SaveOutcome::Saved]
    );
    assert_eq!(
        save(users, &b, &[create(&theirs)]).await,
        vec![SaveOutcome::Saved]
    );

    let key = [UserKey::email("same@example.com")];
    assert_eq!(
        users.users_by_keys(&a, &key).await.unwrap(),
        vec![ours.clone()]
    );
    assert_eq!(
        users.users_by_keys(&b, &key).await.unwrap(),
        vec![theirs.clone()]
    );
    assert!(users.users_by_ids(&a, &[2]).await.unwrap().is_empty());
    assert!(users.users_by_ids(&b, &[1]).await.unwrap().is_empty());
    let by_id = users.select_users(&a, &UserSelector::Ids(vec![2])).await;
    assert!(by_id.unwrap().is_empty());
    let by_agent = UserSelector::AgentNumbers(vec!["A1".to_owned()]);
    assert_eq!(
        ids(&users.select_users(&b, &by_agent).await.unwrap()),
        vec![2]
    );
    assert_eq!(listed(users, &a).await, (vec![1], 1));
    assert_eq!(listed(users, &b).await, (vec![2], 1));
    assert_eq!(listed(users, &tenant("nobody")).await, (vec![], 0));

    // An edit under the wrong tenant finds no such user.
    let stray = edit(&theirs, |u| u.first_name = "Stray".to_owned());
    assert_eq!(save(users, &a, &[stray]).await, vec![SaveOutcome::Stale]);
    assert_eq!(users.users_by_ids(&b, &[2]).await.unwrap(), vec![theirs]);
}

async fn listings_filter_on_the_start_of_the_user_name(adapters: Adapters) {
    let users = adapters.ports.users.as_ref();
    let a = tenant("acme");
    let names = [
        Some("ann.lee"),
        None,
        Some("Joanna"),
        Some("bob"),
        Some("ANNIKA"),
        Some("annex"),
        Some("ann_jo"),
    ];
    let all: Vec<User> = names
        .iter()
        .enumerate()
        .map(|(n, name)| {
            let id = n as u64 + 1;
            let mut user = user(id, &format!("u{id}@example.com"), None);
            user.user_name = name.map(str::to_owned);
            user
        })
        .collect();
    let changes: Vec<UserChange> = all.iter().map(create).collect();
    assert_eq!(save(users, &a, &changes).await, vec![SaveOutcome::Saved; 7]);
    // "annex" is deleted: never listed.
    let deletion = edit(&all[5], |u| u.deleted_at = Some(at(3)));
    assert_eq!(save(users, &a, &[deletion]).await, vec![SaveOutcome::Saved]);

    // Another tenant's "annie" is not theirs.
    let mut other = user(8, "u8@example.com", None);
    other.user_name = Some("annie".to_owned());
    let globex = tenant("globex");
    assert_eq!(
        save(users, &globex, &[create(&other)]).await,
        vec![SaveOutcome::Saved]
    );

    let list = |text: &'static str, n: u64, per_page: u64| {
        let a = a.clone();
        async move {
            let filter = UserFilter::user_name_starting_with(text);
            let window = page(n, per_page).into();
            let (found, total) = users.list_users(&a, &filter, window).await.unwrap();
            (ids(&found), total)
        }
    };
    // From the start of the name, case-insensitively, in user name order ("ann.lee",
    // "ann_jo", "annika"): "Joanna" contains "ann" but does not start with it.
    assert_eq!(list("ANN", 1, 10).await, (vec![1, 7, 5], 3));
    assert_eq!(list(" ann ", 2, 1).await, (vec![7], 3));
    assert_eq!(list("ann", 4, 1).await, (vec![], 3));
    assert_eq!(list("ann_", 1, 10).await, (vec![7], 1));
    // No wildcards: '%' and '_' are characters of a name.
    assert_eq!(list("%", 1, 10).await, (vec![], 0));
    assert_eq!(list("_", 1, 10).await, (vec![], 0));
    assert_eq!(list("a_n", 1, 10).await, (vec![], 0));
    assert_eq!(list("zed", 1, 10).await, (vec![], 0));
    // A blank filter is none: every live user, in id order.
    assert_eq!(list("", 2, 2).await, (vec![3, 4], 6));
    assert_eq!(list("  ", 1, 2).await, (vec![1, 2], 6));
    // A renamed user is found by the new name only.
    let renamed = edit(&all[0], |u| u.user_name = Some("zed".to_owned()));
    assert_eq!(save(users, &a, &[renamed]).await, vec![SaveOutcome::Saved]);
    assert_eq!(list("ann", 1, 10).await, (vec![7, 5], 2));
    assert_eq!(list("ZE", 1, 10).await, (vec![1], 1));
}

async fn selections_are_live_users_in_id_order_each_once(adapters: Adapters) {
    let users = adapters.ports.users.as_ref();
    let a = tenant("acme");
    let changes = [
        create(&user(3, "Carol@Example.com", Some("A3"))),
        create(&user(1, "alice@example.com", Some("A1"))),
        create(&user(2, "bob@example.com", None)),
    ];
    assert_eq!(save(users, &a, &changes).await, vec![SaveOutcome::Saved; 3]);
    let theirs = create(&user(9, "alice@example.com", Some("A1")));
    save(users, &tenant("globex"), &[theirs]).await;

    let select = |selector| {
        let a = a.clone();
        async move { ids(&users.select_users(&a, &selector).await.unwrap()) }
    };
    let strings = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let emails = strings(&[
        " CAROL@example.com",
        "alice@EXAMPLE.com",
        "carol@example.com",
    ]);
    assert_eq!(select(UserSelector::Emails(emails)).await, vec![1, 3]);
    assert_eq!(
        select(UserSelector::Ids(vec![3, 9, 2, 3])).await,
        vec![2, 3]
    );
    let numbers = strings(&["A3", "A1", "A1", "B"]);
    assert_eq!(
        select(UserSelector::AgentNumbers(numbers)).await,
        vec![1, 3]
    );
    assert!(select(UserSelector::Ids(vec![])).await.is_empty());
    assert!(select(UserSelector::Emails(vec![])).await.is_empty());
}
