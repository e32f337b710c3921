//! The tests' emulator enforces IAM as AWS does (`support/moto_launcher.py`): the rules every
//! other AWS-path test relies on, each checked here, so that an emulator that stopped
//! enforcing one (a moto upgrade, a broken patch) fails loudly instead of letting every
//! permission through.

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use bulk_tests::moto::{fresh_stack, Stack};
use bulk_users::adapters::aws::{connect_with_credentials, AwsAdapters};
use serde_json::{json, Value};

/// A principal of `stack` with `statements` as its only policy, and clients signing as it.
async fn principal(stack: &Stack, name: &str, statements: Value) -> AwsAdapters {
    let policy = json!({"Version": "2012-10-17", "Statement": statements});
    let credentials = stack.create_principal(name, &policy).await;
    connect_with_credentials(&stack.settings(), credentials).await
}

fn key(pk: &str) -> std::collections::HashMap<String, AttributeValue> {
    [
        ("pk".to_owned(), AttributeValue::S(pk.to_owned())),
        ("sk".to_owned(), AttributeValue::S("X".to_owned())),
    ]
    .into()
}

fn denied<E: aws_sdk_dynamodb::error::ProvideErrorMetadata>(result: Result<impl Sized, E>) -> bool {
    matches!(result, Err(error) if error.code().is_some_and(|code| code.starts_with("AccessDenied")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_is_authorized_per_table_index_item_and_leading_key() {
    let stack = fresh_stack("iam-dynamodb").await;
    let table = format!(
        "arn:aws:dynamodb:us-east-1:123456789012:table/{}",
        stack.names.table
    );
    let aws = principal(
        &stack,
        "dynamodb",
        json!([
            {"Effect": "Allow", "Action": ["dynamodb:GetItem"], "Resource": table},
            {"Effect": "Allow", "Action": ["dynamodb:Query"], "Resource": format!("{table}/index/*")},
            {"Effect": "Allow", "Action": ["dynamodb:UpdateItem"], "Resource": table,
             "Condition": {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["RATE#*"]}}}
        ]),
    )
    .await;
    let db = &aws.dynamodb;
    let name = &stack.names.table;
    let get = db
        .get_item()
        .table_name(name)
        .set_key(Some(key("A")))
        .send();
    assert!(get.await.is_ok(), "GetItem on the table is granted");
    let update = |pk: &str| {
        db.update_item()
            .table_name(name)
            .set_key(Some(key(pk)))
            .update_expression("SET n = :n")
            .expression_attribute_values(":n", AttributeValue::N("1".to_owned()))
            .send()
    };
    assert!(
        update("RATE#acme#1").await.is_ok(),
        "inside the leading keys"
    );
    assert!(denied(update("JOB#1").await), "outside the leading keys");
    let query = |index: Option<&str>| {
        db.query()
            .table_name(name)
            .set_index_name(index.map(str::to_owned))
            .key_condition_expression(if index.is_some() {
                "gsi1pk = :p"
            } else {
                "pk = :p"
            })
            .expression_attribute_values(":p", AttributeValue::S("A".to_owned()))
            .send()
    };
    assert!(
        query(Some("gsi1")).await.is_ok(),
        "Query on an index is granted"
    );
    assert!(denied(query(None).await), "Query on the table is not");
    // A transaction is authorized item by item: its Update passes, its Put does not.
    let put = Put::builder()
        .table_name(name)
        .set_item(Some(key("RATE#acme#2")))
        .build()
        .unwrap();
    let update = Update::builder()
        .table_name(name)
        .set_key(Some(key("RATE#acme#3")))
        .update_expression("SET n = :n")
        .expression_attribute_values(":n", AttributeValue::N("1".to_owned()))
        .build()
        .unwrap();
    let transaction = |items: Vec<TransactWriteItem>| {
        db.transact_write_items()
            .set_transact_items(Some(items))
            .send()
    };
    assert!(transaction(vec![TransactWriteItem::builder()
        .update(update.clone())
        .build()])
    .await
    .is_ok());
    assert!(denied(
        transaction(vec![
            TransactWriteItem::builder().update(update).build(),
            TransactWriteItem::builder().put(put).build(),
        ])
        .await
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_and_sqs_are_authorized_as_aws_authorizes_them() {
    let stack = fresh_stack("iam-s3-sqs").await;
    let bucket = format!("arn:aws:s3:::{}", stack.names.bucket());
    let queue = format!(
        "arn:aws:sqs:us-east-1:123456789012:{}",
        stack.names.queue_name
    );
    let reader = |listing: bool| {
        let mut statements = vec![
            json!({"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": format!("{bucket}/uploads/*")}),
            json!({"Effect": "Allow", "Action": ["s3:PutObject"], "Resource": format!("{bucket}/copies/*")}),
            json!({"Effect": "Allow", "Action": ["sqs:SendMessage"], "Resource": queue}),
        ];
        if listing {
            statements
                .push(json!({"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": bucket}));
        }
        Value::Array(statements)
    };
    let plain = principal(&stack, "reader", reader(false)).await;
    let lister = principal(&stack, "lister", reader(true)).await;
    let admin = &stack.admin;
    for key in ["uploads/a.json", "other/b.json"] {
        admin
            .s3
            .put_object()
            .bucket(&admin.settings.bucket)
            .key(key)
            .body(b"[]".to_vec().into())
            .send()
            .await
            .unwrap();
    }
    // A missing key is 404 only to who may list the bucket; to anyone else S3 answers 403.
    let size = |aws: &AwsAdapters, key: &'static str| {
        let files = aws.ports.files.clone();
        async move { files.size(key).await }
    };
    assert_eq!(size(&plain, "uploads/a.json").await.unwrap(), Some(2));
    assert!(matches!(
        size(&plain, "uploads/missing.json").await,
        Err(bulk_users::ports::StoreError::Denied { .. })
    ));
    assert_eq!(size(&lister, "uploads/missing.json").await.unwrap(), None);
    // CopyObject reads its source: PutObject on the target alone is not enough.
    let copy = |from: &str| {
        plain
            .s3
            .copy_object()
            .bucket(&admin.settings.bucket)
            .copy_source(format!("{}/{from}", admin.settings.bucket))
            .key("copies/c.json")
            .send()
    };
    assert!(copy("uploads/a.json").await.is_ok());
    assert!(denied(copy("other/b.json").await));
    // SQS batches are authorized as the action they batch.
    let sent = plain
        .sqs
        .send_message_batch()
        .queue_url(&admin.settings.queue_url)
        .entries(
            aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                .id("1")
                .message_body("x")
                .build()
                .unwrap(),
        )
        .send()
        .await;
    assert!(sent.is_ok(), "{sent:?}");
    let received = plain
        .sqs
        .receive_message()
        .queue_url(&admin.settings.queue_url)
        .send()
        .await;
    assert!(denied(received), "ReceiveMessage is not granted");
}

fn is_denied<T>(result: &Result<T, bulk_users::ports::StoreError>) -> bool {
    matches!(result, Err(bulk_users::ports::StoreError::Denied { .. }))
}

/// A version is its own permission, as on AWS: reading one (GetObject or HeadObject with a
/// VersionId, a CopyObject's source with one) needs s3:GetObjectVersion, deleting one
/// s3:DeleteObjectVersion; s3:GetObject and s3:DeleteObject cover only the current file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_are_authorized_by_their_own_actions() {
    let stack = fresh_stack("iam-versions").await;
    let bucket = format!("arn:aws:s3:::{}", stack.names.bucket());
    let grant = |actions: &[&str]| {
        json!([
            {"Effect": "Allow", "Action": actions, "Resource": format!("{bucket}/incoming/*")},
            {"Effect": "Allow", "Action": ["s3:PutObject"], "Resource": format!("{bucket}/rejected/*")},
        ])
    };
    let current = principal(
        &stack,
        "current",
        grant(&["s3:GetObject", "s3:DeleteObject"]),
    )
    .await;
    let versions = ["s3:GetObjectVersion", "s3:DeleteObjectVersion"];
    let versioned = principal(&stack, "versioned", grant(&versions)).await;
    let files = &stack.admin.ports.files;
    let key = "incoming/acme/users.json";
    let version = files.put(key, b"[]".to_vec().into()).await.unwrap();
    let version = Some(version.as_str());

    assert!(current.ports.files.head(key, None).await.unwrap().is_some());
    assert!(is_denied(&current.ports.files.head(key, version).await));
    assert!(is_denied(&versioned.ports.files.head(key, None).await));
    let head = versioned.ports.files.head(key, version).await;
    assert_eq!(head.unwrap().map(|head| head.bytes), Some(2));
    let aside = "rejected/acme/users.json";
    let moved = current.ports.files.rename(key, version, aside).await;
    assert!(is_denied(&moved), "{moved:?}");
    let moved = versioned.ports.files.rename(key, version, aside).await;
    assert!(moved.is_ok(), "{moved:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_key_is_refused_as_dynamodb_refuses_it() {
    let stack = fresh_stack("iam-unknown").await;
    let unknown = bulk_users::adapters::aws::Credentials::new(
        "AKIAUNKNOWNKEY000000",
        "secret",
        None,
        None,
        "unknown",
    );
    let aws = connect_with_credentials(&stack.settings(), unknown).await;
    let answer = aws
        .dynamodb
        .get_item()
        .table_name(&stack.names.table)
        .set_key(Some(key("A")))
        .send()
        .await;
    let code = answer.as_ref().err().and_then(|error| {
        aws_sdk_dynamodb::error::ProvideErrorMetadata::code(error).map(str::to_owned)
    });
    assert_eq!(
        code.as_deref(),
        Some("UnrecognizedClientException"),
        "{answer:?}"
    );
}

/// KMS is authorized per key (whatever the request names it by) and per encryption context:
/// `kms:EncryptionContextKeys` carries the request's context keys, so a grant confined to the
/// contexts of sealed secrets decrypts those and nothing else, and grants no other action.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_is_authorized_per_key_and_encryption_context() {
    use aws_sdk_kms::primitives::Blob;
    use aws_sdk_kms::types::DataKeySpec;

    let stack = fresh_stack("iam-kms").await;
    let key = stack.names.kms_key_arn.clone();
    let other_key = bulk_users::adapters::aws::provision::create_key(
        &stack.admin.kms,
        &format!("alias/{}-other", stack.names.table),
    )
    .await
    .expect("another key");
    let keys = ["tenant", "key_id"];
    let decrypter = principal(
        &stack,
        "kms",
        json!([{
            "Effect": "Allow", "Action": ["kms:Decrypt"], "Resource": key,
            "Condition": {
                "ForAllValues:StringEquals": {"kms:EncryptionContextKeys": keys},
                "ForAnyValue:StringEquals": {"kms:EncryptionContextKeys": keys},
            }
        }]),
    )
    .await;
    // Blobs made by the administrator, under each key and context.
    let blob = |key: String, context: Vec<(&'static str, &'static str)>| {
        let kms = stack.admin.kms.clone();
        async move {
            let mut request = kms
                .generate_data_key()
                .key_id(key)
                .key_spec(DataKeySpec::Aes256);
            for (name, value) in &context {
                request = request.encryption_context(*name, *value);
            }
            let out = request.send().await.expect("a data key");
            (out.ciphertext_blob.expect("a blob"), context)
        }
    };
    let decrypt = |key: &str, (blob, context): (Blob, Vec<(&'static str, &'static str)>)| {
        let mut request = decrypter.kms.decrypt().key_id(key).ciphertext_blob(blob);
        for (name, value) in &context {
            request = request.encryption_context(*name, *value);
        }
        request.send()
    };
    let sealed = blob(key.clone(), vec![("tenant", "acme"), ("key_id", "k1")]).await;
    assert!(decrypt(&key, sealed.clone()).await.is_ok(), "its contexts");
    // By the alias the key is the same key.
    let alias = format!(
        "arn:aws:kms:us-east-1:123456789012:alias/{}-secrets",
        stack.names.table
    );
    assert!(decrypt(&alias, sealed).await.is_ok(), "by its alias");
    let other_context = blob(key.clone(), vec![("purpose", "other")]).await;
    assert!(
        kms_denied(decrypt(&key, other_context).await),
        "another context"
    );
    let no_context = blob(key.clone(), vec![]).await;
    assert!(kms_denied(decrypt(&key, no_context).await), "no context");
    let wider = blob(key.clone(), vec![("tenant", "acme"), ("purpose", "x")]).await;
    assert!(
        kms_denied(decrypt(&key, wider).await),
        "a key beyond the grant"
    );
    let elsewhere = blob(other_key.clone(), vec![("tenant", "acme")]).await;
    assert!(
        kms_denied(decrypt(&other_key, elsewhere).await),
        "another key"
    );
    let generated = decrypter
        .kms
        .generate_data_key()
        .key_id(&key)
        .key_spec(DataKeySpec::Aes256)
        .encryption_context("tenant", "acme")
        .send()
        .await;
    assert!(kms_denied(generated), "GenerateDataKey is not granted");
}

fn kms_denied<T: std::fmt::Debug, E>(result: Result<T, aws_sdk_kms::error::SdkError<E>>) -> bool
where
    E: aws_sdk_kms::error::ProvideErrorMetadata + std::fmt::Debug,
{
    let code = match &result {
        Err(error) => aws_sdk_kms::error::ProvideErrorMetadata::code(error),
        Ok(_) => None,
    };
    let denied = code.is_some_and(|code| code.starts_with("AccessDenied"));
    if !denied {
        eprintln!("not denied: {result:?}");
    }
    denied
}
