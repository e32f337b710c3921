//! The retry of unprocessed batch work, against a scripted fake DynamoDB endpoint (moto never
//! leaves anything unprocessed).

use serde_json::{json, Value};

use aws_sdk_dynamodb::types::AttributeValue;

use super::{key, n, to_item, DynamoStore, Write};
use crate::adapters::aws::fake::fake;
use crate::adapters::aws::{load_sdk_config, AwsSettings, Credentials};
use crate::model::{SaveOutcome, TenantId, Timestamp, User, UserChange, UserKey};
use crate::ports::UserStore;

async fn store(endpoint: &str) -> DynamoStore {
    let settings = AwsSettings {
        table: "t".to_owned(),
        bucket: "b".to_owned(),
        queue_url: "q".to_owned(),
        kms_key_arn: None,
        endpoint_url: Some(endpoint.to_owned()),
        region: "us-east-1".to_owned(),
    };
    let credentials = Credentials::new("testing", "testing", None, None, "unit-tests");
    let config = load_sdk_config(&settings, Some(credentials)).await;
    DynamoStore::new(aws_sdk_dynamodb::Client::new(&config), "t")
}

fn put_json(pk: &str) -> Value {
    json!({ "PutRequest": { "Item": { "pk": { "S": pk }, "sk": { "S": "USER" }, "v": { "N": "1" } } } })
}

fn written_pks(body: &Value) -> Vec<String> {
    body["RequestItems"]["t"]
        .as_array()
        .map(|requests| {
            requests
                .iter()
                .map(|r| {
                    r["PutRequest"]["Item"]["pk"]["S"]
                        .as_str()
                        .unwrap_or("?")
                        .to_owned()
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn unprocessed_writes_are_sent_again() {
    let fake = fake(vec![
        json!({ "UnprocessedItems": { "t": [put_json("u3"), put_json("u7")] } }),
        json!({ "UnprocessedItems": { "t": [put_json("u7")] } }),
        json!({ "UnprocessedItems": {} }),
    ])
    .await;
    let store = store(&fake.endpoint).await;
    let writes: Vec<Write> = (0..10)
        .map(|i| {
            let mut item = key(format!("u{i}"), "USER");
            item.insert("v".to_owned(), n(1));
            Write::Put(item)
        })
        .collect();
    store.batch_write(writes).await.unwrap();

    let requests = fake.requests.lock().unwrap().clone();
    assert!(requests
        .iter()
        .all(|(target, _)| target == "DynamoDB_20120810.BatchWriteItem"));
    let sent: Vec<Vec<String>> = requests.iter().map(|(_, body)| written_pks(body)).collect();
    assert_eq!(sent.len(), 3, "{sent:?}");
    assert_eq!(sent[0].len(), 10);
    assert_eq!(sent[1], vec!["u3", "u7"]);
    assert_eq!(sent[2], vec!["u7"]);
}

#[tokio::test]
async fn unprocessed_keys_are_read_again() {
    let item = |pk: &str| json!({ "pk": { "S": pk }, "sk": { "S": "USER" } });
    let fake = fake(vec![
        json!({
            "Responses": { "t": [item("a")] },
            "UnprocessedKeys": { "t": { "Keys": [item("b")], "ConsistentRead": true } }
        }),
        json!({ "Responses": { "t": [item("b")] }, "UnprocessedKeys": {} }),
    ])
    .await;
    let store = store(&fake.endpoint).await;
    let mut found = store
        .batch_get(vec![key("a", "USER"), key("b", "USER"), key("a", "USER")])
        .await
        .unwrap();
    found.sort_by_key(|item| item.get("pk").and_then(|v| v.as_s().ok()).cloned());
    assert_eq!(found, vec![key("a", "USER"), key("b", "USER")]);

    let requests = fake.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 2);
    let keys = |body: &Value| {
        body["RequestItems"]["t"]["Keys"]
            .as_array()
            .map_or(0, Vec::len)
    };
    assert_eq!(keys(&requests[0].1), 2, "duplicate keys are read once");
    assert_eq!(keys(&requests[1].1), 1);
    assert_eq!(
        requests[1].1["RequestItems"]["t"]["ConsistentRead"],
        json!(true)
    );
}

fn cancelled(codes: &[&str]) -> Value {
    let reasons: Vec<Value> = codes.iter().map(|code| json!({ "Code": code })).collect();
    json!({
        "__status": 400,
        "__body": {
            "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
            "message": "Transaction cancelled",
            "CancellationReasons": reasons
        }
    })
}

fn chunk_result() -> crate::model::ChunkResult {
    crate::model::ChunkResult {
        tenant: crate::model::TenantId::parse("acme").unwrap(),
        job_id: 7,
        keep_until: crate::model::Timestamp::from_unix_millis(86_400_000).unwrap(),
        chunk: 2,
        affected_rows: 3,
        failed_rows: 1,
        errors: Vec::new(),
        results: Vec::new(),
        at: crate::model::Timestamp::from_unix_millis(0).unwrap(),
    }
}

#[tokio::test]
async fn conflicting_transactions_are_retried() {
    let fake = fake(vec![cancelled(&["None", "TransactionConflict"]), json!({})]).await;
    let store = store(&fake.endpoint).await;
    assert!(store.commit_counts(&chunk_result(), &[]).await.unwrap());
    let requests = fake.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 2);
    let items = &requests[1].1["TransactItems"];
    assert_eq!(items[0]["Put"]["Item"]["sk"]["S"], json!("CHUNK#000002"));
    assert_eq!(items[1]["Update"]["Key"]["pk"]["S"], json!("JOB#acme#7"));
}

#[tokio::test]
async fn a_committed_chunk_or_a_missing_job_is_told_apart() {
    let committed = fake(vec![cancelled(&["ConditionalCheckFailed", "None"])]).await;
    let on_committed = store(&committed.endpoint).await;
    assert!(!on_committed
        .commit_counts(&chunk_result(), &[])
        .await
        .unwrap());

    let fake = fake(vec![cancelled(&["None", "ConditionalCheckFailed"])]).await;
    let store = store(&fake.endpoint).await;
    let outcome = store.commit_counts(&chunk_result(), &[]).await;
    assert!(
        matches!(outcome, Err(crate::ports::StoreError::NotFound(_))),
        "{outcome:?}"
    );
}

fn created(id: u64, email: &str) -> UserChange {
    let mut after = User::new(id, Timestamp::from_unix_millis(0).unwrap());
    after.version = 1;
    after.email = Some(email.to_owned());
    UserChange {
        before: None,
        after,
    }
}

fn transact_pks(body: &Value) -> Vec<String> {
    body["TransactItems"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|item| {
                    let key = if item.get("Put").is_some() {
                        &item["Put"]["Item"]["pk"]
                    } else if item.get("Update").is_some() {
                        &item["Update"]["Key"]["pk"]
                    } else {
                        &item["Delete"]["Key"]["pk"]
                    };
                    key["S"].as_str().unwrap_or("?").to_owned()
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn refused_changes_are_left_out_and_conflicts_retried() {
    let fake = fake(vec![
        // Change 2 (items 2, 3): its email is taken. The last item is the count of live users
        // in the ids' bucket.
        cancelled(&[
            "None",
            "None",
            "None",
            "ConditionalCheckFailed",
            "None",
            "None",
            "None",
        ]),
        // The two others conflict with another transaction: sent again as they were.
        cancelled(&["None", "TransactionConflict", "None", "None", "None"]),
        json!({}),
    ])
    .await;
    let store = store(&fake.endpoint).await;
    let tenant = TenantId::parse("acme").unwrap();
    let changes = vec![
        created(1, "a@x.io"),
        created(2, "b@x.io"),
        created(3, "c@x.io"),
    ];
    let outcomes = store.save_users(&tenant, &changes).await.unwrap();
    assert_eq!(
        outcomes,
        vec![
            SaveOutcome::Saved,
            SaveOutcome::KeyTaken(UserKey::email("b@x.io")),
            SaveOutcome::Saved
        ]
    );
    let requests = fake.requests.lock().unwrap().clone();
    assert!(requests
        .iter()
        .all(|(target, _)| target == "DynamoDB_20120810.TransactWriteItems"));
    let sent: Vec<Vec<String>> = requests
        .iter()
        .map(|(_, body)| transact_pks(body))
        .collect();
    assert_eq!(sent.len(), 3, "{sent:?}");
    assert_eq!(sent[0].len(), 7);
    let without_second = vec![
        "USER#acme#00000000000000000001",
        "UKEY#acme#email#a@x.io",
        "USER#acme#00000000000000000003",
        "UKEY#acme#email#c@x.io",
        "TENANT#acme",
    ];
    assert_eq!(sent[1], without_second);
    assert_eq!(sent[2], without_second);
}

#[tokio::test]
async fn a_new_user_saved_before_is_saved_and_another_is_stale() {
    // Both ids exist: user 1 is the very user change 1 creates (an earlier run saved it),
    // user 2 is someone else.
    let mine = created(1, "a@x.io");
    let theirs = created(2, "b@x.io");
    let mut stored_other = theirs.after.clone();
    stored_other.first_name = "Someone else".to_owned();
    let stored = |user: &User| Value::Object(user_item_json(user).into_iter().collect());
    let fake = fake(vec![json!({
        "__status": 400,
        "__body": {
            "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
            "message": "Transaction cancelled",
            "CancellationReasons": [
                { "Code": "ConditionalCheckFailed", "Item": stored(&mine.after) },
                { "Code": "None" },
                { "Code": "ConditionalCheckFailed", "Item": stored(&stored_other) },
                { "Code": "None" },
                { "Code": "None" }
            ]
        }
    })])
    .await;
    let store = store(&fake.endpoint).await;
    let tenant = TenantId::parse("acme").unwrap();
    let outcomes = store.save_users(&tenant, &[mine, theirs]).await.unwrap();
    assert_eq!(outcomes, vec![SaveOutcome::Saved, SaveOutcome::Stale]);
    let requests = fake.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1, "nothing left to send");
    assert_eq!(
        requests[0].1["TransactItems"][0]["Put"]["ReturnValuesOnConditionCheckFailure"],
        json!("ALL_OLD")
    );
}

/// A user as DynamoDB JSON (`{"S": …}`, `{"N": …}`, …), the way the emulator returns items.
fn user_item_json(user: &User) -> Vec<(String, Value)> {
    fn value(attribute: &AttributeValue) -> Value {
        match attribute {
            AttributeValue::S(text) => json!({ "S": text }),
            AttributeValue::N(number) => json!({ "N": number }),
            AttributeValue::Bool(flag) => json!({ "BOOL": flag }),
            AttributeValue::Null(_) => json!({ "NULL": true }),
            AttributeValue::L(list) => json!({ "L": list.iter().map(value).collect::<Vec<_>>() }),
            AttributeValue::M(map) => {
                let map: serde_json::Map<String, Value> =
                    map.iter().map(|(k, v)| (k.clone(), value(v))).collect();
                json!({ "M": map })
            }
            AttributeValue::Ss(texts) => json!({ "SS": texts }),
            other => panic!("unexpected attribute {other:?}"),
        }
    }
    to_item(user)
        .unwrap()
        .iter()
        .map(|(name, attribute)| (name.clone(), value(attribute)))
        .collect()
}
