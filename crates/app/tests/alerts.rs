//! `POST /api/v1/alerts` end to end: bad input of every kind gets a problem+json naming the field
//! or the line and leaves nothing half-written; good lines of a mixed body still become cases; a
//! repeat raises `alert_count` and says so in the Activity Log. On the demo (SQLite), and the
//! NDJSON + repeat part on `serve` with PostgreSQL when `CASEBRIDGE_TEST_DATABASE_URL` is set.

mod common;

use common::{Api, Demo, Serve, data_file, last_word, pg_database, run_ok, unique};
use serde_json::{Value, json};

const NDJSON: &str = "application/x-ndjson";

async fn case_count(api: &Api, account: &str) -> usize {
    api.all(&format!("/api/v1/cases?account_id={account}"), 500)
        .await
        .len()
}

fn plain(rule: &str, title: &str, criticality: &str, source_id: &str) -> Value {
    json!({ "rule_id": rule, "title": title, "criticality": criticality, "source_id": source_id })
}

/// NDJSON whose line 2 is broken: a per-line report naming line 2, and lines 1 and 3 filed.
async fn assert_ndjson_with_a_malformed_line(api: &Api, account: &str) {
    let tag = unique("nd-");
    let l1 = plain(
        "e2e-ndjson-rule",
        &format!("first {tag}"),
        "low",
        &format!("{tag}-1"),
    );
    let l3 = plain(
        "e2e-ndjson-rule",
        &format!("third {tag}"),
        "medium",
        &format!("{tag}-3"),
    );
    let body = format!("{l1}\n{{\"rule_id\": \"x\", \"title\": oops}}\n{l3}\n");
    let before = case_count(api, account).await;
    let r = api
        .post_raw(
            &format!("/api/v1/alerts?account_id={account}"),
            NDJSON,
            body,
        )
        .await;
    let report = r.ok();
    assert_eq!(
        (report["created"].as_u64(), report["errors"].as_u64()),
        (Some(2), Some(1)),
        "report: {report}"
    );
    let lines = report["lines"].as_array().expect("per-line report");
    assert_eq!(lines.len(), 3, "one entry per line: {report}");
    let line = |n: u64| {
        lines
            .iter()
            .find(|l| l["line"] == n)
            .unwrap_or_else(|| panic!("no entry for line {n}: {report}"))
    };
    assert_eq!(line(2)["outcome"], "error");
    assert!(
        line(2)["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "line 2 error without a reason: {report}"
    );
    for n in [1, 3] {
        assert_eq!(line(n)["outcome"], "created", "line {n}: {report}");
        let case = api.case(line(n)["case_id"].as_str().unwrap()).await;
        assert_eq!(case["account_id"], account);
        assert!(case["title"].as_str().unwrap().contains(&tag));
    }
    assert_eq!(line(1)["case_id"].as_str().map(|_| ()), Some(()));
    assert_ne!(line(1)["case_id"], line(3)["case_id"]);
    assert_eq!(
        case_count(api, account).await,
        before + 2,
        "exactly lines 1 and 3 became cases"
    );
}

/// The same alert twice: one case, alert_count 2, and an Activity Log entry for the repeat.
async fn assert_repeat_raises_alert_count(api: &Api, account: &str) {
    let alert = plain("e2e-repeat-rule", "Repeated beacon", "low", &unique("rep-"));
    let first = api
        .post(&format!("/api/v1/alerts?account_id={account}"), &alert)
        .await;
    let first = first.ok();
    assert_eq!(first["created"], 1, "{first}");
    let case_id = first["lines"][0]["case_id"].as_str().unwrap().to_string();
    let before = case_count(api, account).await;
    let second = api
        .post(&format!("/api/v1/alerts?account_id={account}"), &alert)
        .await;
    let second = second.ok();
    assert_eq!(
        (second["created"].as_u64(), second["repeats"].as_u64()),
        (Some(0), Some(1)),
        "{second}"
    );
    assert_eq!(
        second["lines"][0]["case_id"],
        case_id.as_str(),
        "the repeat names the first case"
    );
    assert_eq!(second["lines"][0]["alert_count"], 2);
    assert_eq!(
        case_count(api, account).await,
        before,
        "a repeat opens no case"
    );
    let case = api.case(&case_id).await;
    assert_eq!(case["alert_count"], 2);
    assert_eq!(
        case["ticket"],
        Value::Null,
        "a low repeat sends nothing to ConnectWise"
    );
    let activity = api.activity(&case_id).await;
    assert_eq!(activity.len(), 2, "opened, then one repeat: {activity:?}");
    assert_eq!(activity[1]["direction"], "local");
    assert!(
        activity[1]["kind"].as_str().unwrap().contains("repeat")
            || activity[1]["message"].as_str().unwrap().contains("again"),
        "the second entry is not about the repeat: {activity:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn alerts_with_bad_input_of_every_kind_get_a_clear_problem_and_write_nothing_half_way() {
    let d = Demo::start().await;
    let api = &d.api;
    let acme = d.account_id("Acme Corporation");
    let path = format!("/api/v1/alerts?account_id={acme}");

    assert_ndjson_with_a_malformed_line(api, &acme).await;

    let before = case_count(api, &acme).await;
    // a partner token must say which sub-tenant
    let p = api
        .post(
            "/api/v1/alerts",
            &plain("e2e-rule", "no account", "low", &unique("na-")),
        )
        .await;
    p.problem_naming(422, "account_id");
    // an account that is not the caller's
    api.post(
        "/api/v1/alerts?account_id=acct_nope",
        &plain("e2e-rule", "t", "low", "x"),
    )
    .await
    .problem_naming(422, "account_id");
    // a missing required field is named
    let p = api
        .post(&path, &json!({"rule_id": "e2e-rule", "criticality": "low"}))
        .await;
    let b = p.problem(422);
    assert!(
        b.to_string().contains("title"),
        "the missing field is not named: {b}"
    );
    // a lone plain alert without its criticality: 422 naming the line and what it lacks, once
    let p = api
        .post(
            &path,
            &json!({"rule_id": "e2e-rule", "title": "no criticality"}),
        )
        .await;
    let b = p.problem_naming(422, "line 1");
    let detail = b["detail"].as_str().unwrap();
    assert!(
        detail.contains("criticality"),
        "the detail does not say what is missing: {b}"
    );
    assert_eq!(
        detail.matches("line 1").count(),
        1,
        "the line is named more than once: {detail}"
    );
    // unknown format: 415 listing what is accepted
    let p = api
        .post(
            &format!("{path}&format=xml"),
            &plain("e2e-rule", "t", "low", "x"),
        )
        .await;
    let b = p.problem_naming(415, "format");
    for f in ["ocsf", "wazuh", "json"] {
        assert!(b.to_string().contains(f), "415 does not list {f}: {b}");
    }
    // over the body limit (default 1 MiB)
    let big = format!(
        "{{\"rule_id\": \"e2e\", \"title\": \"big\", \"criticality\": \"low\", \"description\": \"{}\"}}",
        "a".repeat(1024 * 1024 + 10)
    );
    let p = api.post_raw(&path, "application/json", big).await;
    assert!(
        p.body.to_string().contains("1048576"),
        "413 does not say the limit: {p:?}"
    );
    p.problem(413);
    // empty body
    api.post_raw(&path, "application/json", Vec::new())
        .await
        .problem(400);
    // not JSON at all
    let p = api
        .post_raw(&path, "application/json", "this is not an alert")
        .await;
    assert!(p.status == 400 || p.status == 422, "garbage body: {p:?}");
    p.problem(p.status.as_u16());
    // no token / a viewer
    api.without_token()
        .post(&path, &plain("e2e-rule", "t", "low", "x"))
        .await
        .problem(401);
    let viewer = api.with_token(&d.create_token(&acme, "viewer"));
    viewer
        .post(&path, &plain("e2e-rule", "t", "low", "x"))
        .await
        .problem(403);
    assert_eq!(
        case_count(api, &acme).await,
        before,
        "a rejected request left a case behind"
    );

    // an OCSF vulnerability finding is skipped, with its reason, and opens no case
    let ocsf = std::fs::read(data_file(
        "alerts/ocsf/inspector-openssl.vulnerability_finding.ocsf.json",
    ))
    .unwrap();
    let r = api.post_raw(&path, "application/json", ocsf).await;
    let report = r.ok();
    assert_eq!(
        (report["created"].as_u64(), report["skipped"].as_u64()),
        (Some(0), Some(1)),
        "{report}"
    );
    assert_eq!(report["lines"][0]["outcome"], "skipped");
    let reason = report["lines"][0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("Vulnerability") || reason.contains("2002"),
        "the skip gives no reason: {report}"
    );
    assert_eq!(
        case_count(api, &acme).await,
        before,
        "a skipped finding opened a case"
    );

    // the Wazuh file with malformed lines: errors name their lines, the good lines are filed
    let wazuh = std::fs::read(data_file("alerts/wazuh/wazuh4-alerts-malformed.txt")).unwrap();
    let r = api
        .post_raw(&format!("{path}&format=wazuh"), NDJSON, wazuh)
        .await;
    let report = r.ok();
    let errors: Vec<u64> = report["lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["outcome"] == "error")
        .map(|l| l["line"].as_u64().unwrap())
        .collect();
    assert_eq!(
        errors,
        vec![2, 6],
        "the invalid JSON lines (2 and 6; 1, 3, 5, 7 are comments) are reported: {report}"
    );
    assert!(
        report["lines"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["outcome"] == "error")
            .all(|l| l["reason"].as_str().is_some_and(|r| !r.is_empty())),
        "an error without a reason: {report}"
    );
    let created = report["created"].as_u64().unwrap() as usize;
    assert_eq!(case_count(api, &acme).await, before + created);
    // a body of nothing but broken lines is a 422 naming each line
    let p = api
        .post_raw(&path, NDJSON, "{broken\n{\"also\": broken}\n")
        .await;
    let b = p.problem(422);
    let text = b["errors"].to_string();
    assert!(
        text.contains("line 1") && text.contains("line 2"),
        "the lines are not named: {b}"
    );
    assert_eq!(case_count(api, &acme).await, before + created);

    assert_repeat_raises_alert_count(api, &acme).await;
}

/// A fresh `serve` bootstrapped through the CLI alone (`account create`, `token create`), then
/// the NDJSON and repeat checks against it.
async fn bootstrap_serve_and_ingest(database_url: Option<&str>) {
    let server = Serve::start(database_url).await;
    let args = server.db_args(database_url);
    let cli = |extra: &[&str]| {
        let mut a: Vec<&str> = args.iter().map(String::as_str).collect();
        a.extend_from_slice(extra);
        last_word(&run_ok(&a))
    };
    let partner = cli(&[
        "account",
        "create",
        "--name",
        "E2E Partner",
        "--kind",
        "partner",
    ]);
    let sub = cli(&[
        "account",
        "create",
        "--name",
        "E2E Client",
        "--kind",
        "subtenant",
        "--parent",
        &partner,
    ]);
    let token = cli(&["token", "create", "--account", &partner, "--role", "admin"]);
    let api = Api::new(&server.url, Some(&token));
    assert_eq!(api.get("/readyz").await.status, 200);
    let accounts = api.get("/api/v1/accounts").await;
    let accounts = accounts.ok()["items"].as_array().unwrap().clone();
    assert_eq!(
        accounts.len(),
        2,
        "the partner and its sub-tenant: {accounts:?}"
    );
    assert!(accounts.iter().any(|a| a["id"] == sub.as_str()
        && a["kind"] == "subtenant"
        && a["parent_id"] == partner.as_str()));

    assert_ndjson_with_a_malformed_line(&api, &sub).await;
    assert_repeat_raises_alert_count(&api, &sub).await;
    api.post(
        "/api/v1/alerts",
        &plain("e2e-rule", "no account", "low", "x"),
    )
    .await
    .problem_naming(422, "account_id");
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_on_sqlite_bootstrapped_by_the_cli_files_ndjson_per_line_and_counts_repeats() {
    bootstrap_serve_and_ingest(None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_on_postgresql_bootstrapped_by_the_cli_files_ndjson_per_line_and_counts_repeats() {
    let Some(db) = pg_database() else {
        eprintln!(
            "CASEBRIDGE_TEST_DATABASE_URL is not set: nothing to run the PostgreSQL variant against"
        );
        return;
    };
    bootstrap_serve_and_ingest(Some(&db.url)).await;
}
