//! CSV job files, on both stores, through the route table: a spreadsheet's export (quoted
//! cells with commas, quotes and line breaks, CRLF, a byte order mark, `;` as Excel writes it in
//! many locales) is validated and processed like the JSON file it stands for; its errors count
//! rows as the file does and columns as its header does, `field` the header's name.

use bulk_tests::{on_both_stores, Answer, Body, Part, TestApp, PREFIX};
use http::{Method, StatusCode};
use serde_json::{json, Value};

on_both_stores!(
    a_spreadsheet_export_is_applied_like_the_json_it_stands_for,
    csv_errors_name_the_row_and_the_header,
    a_header_the_template_does_not_have_is_a_scheme_error,
    the_csv_template_and_export_upload_again,
    a_csv_file_dropped_into_the_bucket_is_taken_in_as_csv,
);

async fn upload_csv(app: &TestApp, text: &str) -> Answer {
    let form = Body::Multipart(vec![Part::csv(text)]);
    app.call(Method::POST, &format!("{PREFIX}/upload"), form)
        .await
}

async fn user(app: &TestApp, email: &str) -> Value {
    let found = app.get(&format!("config?emails={email}")).await;
    assert_eq!(found.status, StatusCode::OK, "{}", found.body);
    found.body[0].clone()
}

fn errors(app_answer: &Answer) -> Vec<(Value, Value, Value)> {
    app_answer
        .body
        .as_array()
        .unwrap_or_else(|| panic!("an error list: {}", app_answer.body))
        .iter()
        .map(|error| {
            (
                error["row"].clone(),
                error["column"].clone(),
                error["field"].clone(),
            )
        })
        .collect()
}

async fn a_spreadsheet_export_is_applied_like_the_json_it_stands_for(app: TestApp) {
    // Excel's "CSV UTF-8": a byte order mark and CRLF; a name with a comma and quotes, and a
    // line break inside a quoted cell.
    let created = "\u{feff}email,first_name,last_name,location,max_chat_limit,role:Admin,role:Agent,team:Sales\r\n\
        ann@acme.test,\"Ann, \"\"the first\"\"\",Lee,Remote,3,1,,1\r\n\
        bo@acme.test,Bo,\"Two\nLines\",Headquarters,,,1,\r\n";
    let answer = upload_csv(&app, created).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    assert_eq!(answer.body["status"], "valid_scheme", "{}", answer.body);
    let id = answer.id();
    assert_eq!(app.proceed(id).await.status, StatusCode::ACCEPTED);
    app.drain().await;
    let job = app.job(id).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(
        (job["total_rows"].clone(), job["affected_rows"].clone()),
        (json!(2), json!(2))
    );

    let ann = user(&app, "ann@acme.test").await;
    assert_eq!(ann["first_name"], "Ann, \"the first\"");
    assert_eq!(ann["location"], "Remote");
    assert_eq!(ann["max_chat_limit"], 3);
    assert_eq!(ann["roles"], json!([{"name": "Admin", "value": 1}]));
    assert_eq!(ann["teams"], json!([{"name": "Sales", "value": 1}]));
    let bo = user(&app, "bo@acme.test").await;
    assert_eq!(bo["last_name"], "Two\nLines");
    assert_eq!(bo["roles"], json!([{"name": "Agent", "value": 1}]));

    // An update in Excel's `;` layout: an empty cell leaves its field (first and last names
    // are required in every row, as in JSON), the marker clears one, 0 revokes.
    let updated = "email;first_name;last_name;location;max_chat_limit;role:Admin\n\
        ann@acme.test;Ann;Lee;(clear);;0\n";
    let answer = upload_csv(&app, updated).await;
    assert_eq!(answer.body["status"], "valid_scheme", "{}", answer.body);
    assert_eq!(app.proceed(answer.id()).await.status, StatusCode::ACCEPTED);
    app.drain().await;
    let ann = user(&app, "ann@acme.test").await;
    assert_eq!(ann["first_name"], "Ann");
    assert_eq!(ann["max_chat_limit"], 3, "an empty cell leaves it");
    assert_eq!(ann["location"], Value::Null, "the marker cleared it");
    assert_eq!(ann["roles"], json!([]), "0 revoked it");
    assert_eq!(ann["teams"], json!([{"name": "Sales", "value": 1}]));
}

async fn csv_errors_name_the_row_and_the_header(app: TestApp) {
    // Columns in an order of the file's own: email is column 3 here, not the template's 1.
    let file = "first_name,last_name,email,role:Admin\n\
        Ann,Lee,ann@acme.test,1\n\
        Bo,Lee,not-an-email,0\n\
        Cy,Lee\n\
        Di,Lee,di@acme.test,yes\n\
        Ed,Lee,ANN@acme.test,\n";
    let answer = upload_csv(&app, file).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    assert_eq!(answer.body["status"], "invalid_scheme", "{}", answer.body);
    let id = answer.id();
    let found = app.get(&format!("errors/scheme/{id}")).await;
    assert_eq!(
        errors(&found),
        vec![
            (json!(2), json!(3), json!("email")),
            (json!(3), Value::Null, Value::Null),
            (json!(4), json!(4), json!("role:Admin")),
            (json!(5), json!(3), json!("email")),
        ],
        "{}",
        found.body
    );
    let messages: Vec<&str> = found
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert!(
        messages[1].contains("the row has 2 cells; the header has 4"),
        "{messages:?}"
    );
    assert!(
        messages[2].starts_with("role:Admin must be 0, 1 or empty"),
        "{messages:?}"
    );
    assert!(messages[3].contains("first in row 1"), "{messages:?}");
}

async fn a_header_the_template_does_not_have_is_a_scheme_error(app: TestApp) {
    for (header, column, field) in [
        ("email,first_name,last_name,colour", 4, "colour"),
        ("email,first_name,email,last_name", 3, "email"),
        ("email,first_name,last_name,roles", 4, "roles"),
    ] {
        let file = format!("{header}\nann@acme.test,Ann,Lee,x\n");
        let answer = upload_csv(&app, &file).await;
        assert_eq!(
            answer.status,
            StatusCode::CREATED,
            "{header}: {}",
            answer.body
        );
        assert_eq!(answer.body["status"], "invalid_scheme", "{header}");
        let found = app.get(&format!("errors/scheme/{}", answer.id())).await;
        let first = &found.body[0];
        assert_eq!(
            (first["row"].clone(), first["column"].clone()),
            (Value::Null, json!(column)),
            "{header}: {first}"
        );
        assert_eq!(first["field"], field, "{header}: {first}");
        assert!(
            first["message"].as_str().unwrap().contains(field),
            "{first}"
        );
    }
    // Not UTF-8 (a spreadsheet saved as "CSV" in a legacy code page): a scheme error.
    let latin1 = b"email,first_name,last_name\nann@acme.test,Ren\xe9,Lee\n".to_vec();
    let form = Body::Multipart(vec![Part {
        name: "file".to_owned(),
        filename: Some("users.csv".to_owned()),
        bytes: latin1,
    }]);
    let answer = app
        .call(Method::POST, &format!("{PREFIX}/upload"), form)
        .await;
    assert_eq!(answer.body["status"], "invalid_scheme", "{}", answer.body);
    let found = app.get(&format!("errors/scheme/{}", answer.id())).await;
    assert!(
        found.body[0]["message"].as_str().unwrap().contains("UTF-8"),
        "{}",
        found.body
    );
}

/// The CSV the API answers, and its text.
async fn csv_of(app: &TestApp, target: &str, accept: Option<&str>) -> String {
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::AUTHORIZATION,
        app.acme.basic().parse().unwrap(),
    );
    if let Some(accept) = accept {
        headers.insert(http::header::ACCEPT, accept.parse().unwrap());
    }
    let request = bulk_tests::api_request(
        Method::GET,
        &format!("{PREFIX}/{target}"),
        headers,
        Default::default(),
    );
    let response = app.handle(request).await;
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()[http::header::CONTENT_TYPE]
        .to_str()
        .unwrap();
    assert_eq!(content_type, "text/csv; charset=utf-8");
    String::from_utf8(response.body().to_vec()).unwrap()
}

/// An admin's round trip: the CSV template (the tenant's live roles and teams as columns) is
/// itself a valid upload; an export of the users, uploaded again unchanged, changes nothing;
/// one cell edited in it changes that field of that user alone.
async fn the_csv_template_and_export_upload_again(app: TestApp) {
    let template = csv_of(&app, "template?format=csv", None).await;
    assert_eq!(template, csv_of(&app, "template", Some("text/csv")).await);
    let header = template.lines().next().unwrap();
    assert!(
        header.starts_with("email,new_email,agent_number,first_name,last_name,status"),
        "{header}"
    );
    assert!(
        header.ends_with("role:Admin,role:Manager,role:Agent,team:Sales,team:Support"),
        "{header}"
    );
    let answer = upload_csv(&app, &template).await;
    assert_eq!(answer.body["status"], "valid_scheme", "{}", answer.body);
    assert_eq!(app.proceed(answer.id()).await.status, StatusCode::ACCEPTED);
    let people = "email,first_name,last_name,agent_number,location,role:Agent,team:Support\n\
        ann@acme.test,Ann,\"Lee, Jr.\",7,Remote,1,1\n\
        bo@acme.test,Bo,Lee,,,,\n";
    let answer = upload_csv(&app, people).await;
    assert_eq!(app.proceed(answer.id()).await.status, StatusCode::ACCEPTED);
    app.drain().await;

    let exported = csv_of(&app, "config?format=csv", None).await;
    assert_eq!(
        exported.lines().count(),
        4,
        "a header and three users: {exported}"
    );
    let before = app.get("config").await.body;
    let answer = upload_csv(&app, &exported).await;
    assert_eq!(answer.body["status"], "valid_scheme", "{}", answer.body);
    assert_eq!(app.proceed(answer.id()).await.status, StatusCode::ACCEPTED);
    app.drain().await;
    let same = app.get("config").await.body;
    let fields = |users: &Value| -> Vec<Value> {
        users
            .as_array()
            .unwrap()
            .iter()
            .map(|user| {
                let mut user = user.clone();
                user.as_object_mut().unwrap().remove("updated_at");
                user
            })
            .collect()
    };
    assert_eq!(
        fields(&same),
        fields(&before),
        "uploaded again unchanged, nothing changed"
    );

    let edited = exported.replacen("Ann,", "Anne,", 1);
    let answer = upload_csv(&app, &edited).await;
    assert_eq!(app.proceed(answer.id()).await.status, StatusCode::ACCEPTED);
    app.drain().await;
    let after = fields(&app.get("config").await.body);
    let mut expected = fields(&before);
    for user in &mut expected {
        if user["email"] == "ann@acme.test" {
            user["first_name"] = json!("Anne");
        }
    }
    assert_eq!(after, expected, "the edited cell alone changed");
    assert!(csv_of(&app, "config?emails=bo@acme.test&format=csv", None)
        .await
        .contains("bo@acme.test"));
    let refused = app.get("template?format=xml").await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(refused.body["field"], "format");
}

/// A file dropped under `incoming/` whose name ends in `.csv` is a CSV job file: taken in,
/// validated and processed as one (its header's problems are the job's scheme errors, not a
/// reason to move it aside).
async fn a_csv_file_dropped_into_the_bucket_is_taken_in_as_csv(app: TestApp) {
    use bulk_users::service::IntakeOutcome;
    let intake = |key: &'static str, body: &'static str| {
        let app = &app;
        async move {
            let files = &app.service.ports().files;
            files
                .put(key, body.as_bytes().to_vec().into())
                .await
                .expect("put");
            match app.function("intake").await.intake(key).await.unwrap() {
                IntakeOutcome::Job(job) => *job,
                other => panic!("{key}: not a job: {other:?}"),
            }
        }
    };
    let csv = "email;first_name;last_name;role:Agent\r\nann@acme.test;Ann;Lee;1\r\nbo@acme.test;Bo;Lee;\r\n";
    let job = intake("incoming/acme/proceed/nightly.csv", csv).await;
    assert!(job.file_key.ends_with("/nightly.csv"), "{}", job.file_key);
    app.drain().await;
    let record = app.job(job.id).await;
    assert_eq!(record["status"], "completed", "{record}");
    assert_eq!(record["affected_rows"], 2, "{record}");
    assert_eq!(
        user(&app, "ann@acme.test").await["roles"],
        json!([{"name": "Agent", "value": 1}])
    );

    let bad = intake("incoming/acme/bad.csv", "email,colour\nann@acme.test,red\n").await;
    let record = app.job(bad.id).await;
    assert_eq!(record["status"], "invalid_scheme", "{record}");
    let found = app.get(&format!("errors/scheme/{}", bad.id)).await;
    assert_eq!(found.body[0]["field"], "colour", "{}", found.body);
}
