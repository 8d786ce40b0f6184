//! `casebridge demo` end to end: what demo.json promises, health and OpenAPI, the accounts and
//! the cases it seeds (cursor paging, filters), and that a re-run on the same data dir
//! duplicates nothing. Also the CLI beside a running demo: `token create` and `ingest`.

mod common;

use std::collections::HashSet;

use common::{Api, Demo, TempDir, last_word, run_ok};
use reqwest::Method;
use serde_json::{Value, json};

fn ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|c| c["id"].as_str().expect("an id").to_string())
        .collect()
}

fn assert_demo_json(d: &Demo) {
    let info = &d.info;
    assert!(d.url().starts_with("http://127.0.0.1:"), "url: {info}");
    assert!(
        d.sim_url().starts_with("http://127.0.0.1:"),
        "sim_url: {info}"
    );
    assert_ne!(d.url(), d.sim_url());
    assert!(
        info["login"]["email"]
            .as_str()
            .is_some_and(|e| e.contains('@')),
        "login.email: {info}"
    );
    assert!(
        info["login"]["password"]
            .as_str()
            .is_some_and(|p| !p.is_empty()),
        "login.password: {info}"
    );
    assert!(
        info["token"].as_str().is_some_and(|t| t.len() >= 20),
        "token: {info}"
    );
    for who in ["technician", "api_member"] {
        for key in [
            "company",
            "public_key",
            "private_key",
            "client_id",
            "member",
        ] {
            assert!(
                info[who][key].as_str().is_some_and(|v| !v.is_empty()),
                "{who}.{key} missing: {info}"
            );
        }
    }
    let accounts = info["accounts"].as_array().expect("accounts");
    assert_eq!(
        accounts.len(),
        5,
        "one partner and four sub-tenants: {accounts:?}"
    );
    let partners: Vec<_> = accounts.iter().filter(|a| a["kind"] == "partner").collect();
    assert_eq!(partners.len(), 1, "exactly one partner: {accounts:?}");
    assert_eq!(
        partners[0]["company_identifier"], "CBMSSP",
        "the partner's parent company identifier"
    );
    let subs: Vec<_> = accounts
        .iter()
        .filter(|a| a["kind"] == "subtenant")
        .collect();
    assert_eq!(subs.len(), 4, "exactly four sub-tenants: {accounts:?}");
    let mapped = subs
        .iter()
        .filter(|a| {
            a["company_identifier"]
                .as_str()
                .is_some_and(|c| !c.is_empty())
        })
        .count();
    let unmapped = subs
        .iter()
        .filter(|a| a["company_identifier"].is_null())
        .count();
    assert_eq!(
        (mapped, unmapped),
        (3, 1),
        "three mapped sub-tenants, one filing under the parent: {accounts:?}"
    );
    for a in accounts {
        assert!(
            a["id"].as_str().is_some_and(|i| !i.is_empty()) && a["name"].as_str().is_some(),
            "account shape: {a}"
        );
    }
}

/// One `casebridge_callbacks_total` counter of /metrics.
async fn callbacks_counted(api: &Api, outcome: &str) -> u64 {
    let m = api.get("/metrics").await;
    assert_eq!(m.status, 200);
    let text = m.body.as_str().expect("metrics are text").to_string();
    let line = format!("casebridge_callbacks_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(line.as_str()))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {line:?} in /metrics:\n{text}"))
}

async fn assert_health_and_openapi(d: &Demo) {
    let anon = d.api.without_token();
    assert_eq!(anon.get("/healthz").await.status, 200);
    assert_eq!(anon.get("/readyz").await.status, 200);
    // callbacks are counted by outcome: a refused one shows at once
    let refused = callbacks_counted(&anon, "refused").await;
    let r = anon
        .send(
            Method::POST,
            "/hooks/connectwise/int_unknown",
            Some("application/json"),
            Some(b"{}".to_vec()),
        )
        .await;
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(callbacks_counted(&anon, "refused").await, refused + 1);
    assert_eq!(callbacks_counted(&anon, "failed").await, 0);
    let spec = anon.get("/api/openapi.json").await;
    let paths = spec.ok()["paths"].as_object().expect("OpenAPI paths");
    // every write that takes a body documents it; the bodyless actions do not pretend to
    let bodyless = [
        "/api/v1/cases/{id}/escalate",
        "/api/v1/accounts/{id}/support-system/test",
        "/api/v1/accounts/{id}/support-system/activate",
        "/api/v1/sync/jobs/{id}/retry",
        "/hooks/connectwise/{integration_id}",
    ];
    for (path, ops) in paths {
        for method in ["post", "put", "patch"] {
            let Some(op) = ops.get(method) else { continue };
            if bodyless.contains(&path.as_str()) {
                continue;
            }
            assert!(
                op["requestBody"]["content"]["application/json"]["schema"].is_object(),
                "{method} {path} documents no JSON request body: {op}"
            );
        }
    }
    let schemas = &spec.ok()["components"]["schemas"];
    let patch_case = &schemas["PatchCase"]["properties"];
    for field in ["status", "close_reason", "resolution"] {
        assert!(
            patch_case[field].is_object(),
            "PatchCase lacks {field}: {schemas}"
        );
    }
    for p in [
        "/api/v1/cases",
        "/api/v1/cases/{id}/escalate",
        "/api/v1/alerts",
        "/api/v1/accounts",
    ] {
        assert!(
            paths.contains_key(p),
            "OpenAPI lacks {p}: {:?}",
            paths.keys().collect::<Vec<_>>()
        );
    }
}

/// Every case, paged 37 at a time: no duplicates, each page newest first after the last.
async fn all_cases(api: &Api, query: &str) -> Vec<Value> {
    let items = api.all(&format!("/api/v1/cases{query}"), 37).await;
    let ids = ids(&items);
    let unique: HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "paging returned a case twice");
    items
}

async fn assert_filters(d: &Demo, all: &[Value]) {
    let api = &d.api;
    // status
    let escalated = all_cases(api, "?status=escalated").await;
    assert!(
        !escalated.is_empty(),
        "auto-escalation at high left no escalated case"
    );
    assert!(escalated.iter().all(|c| c["status"] == "escalated"));
    assert_eq!(
        escalated.len(),
        all.iter().filter(|c| c["status"] == "escalated").count()
    );
    // criticality
    for crit in ["critical", "high", "medium", "low", "informational"] {
        let got = all_cases(api, &format!("?criticality={crit}")).await;
        assert!(
            got.iter().all(|c| c["criticality"] == crit),
            "criticality={crit} let others through"
        );
        assert_eq!(
            got.len(),
            all.iter().filter(|c| c["criticality"] == crit).count(),
            "criticality={crit}"
        );
    }
    // account
    let acme = d.account_id("Acme Corporation");
    let of_acme = all_cases(api, &format!("?account_id={acme}")).await;
    assert!(!of_acme.is_empty());
    assert!(of_acme.iter().all(|c| c["account_id"] == acme.as_str()));
    assert_eq!(
        of_acme.len(),
        all.iter()
            .filter(|c| c["account_id"] == acme.as_str())
            .count()
    );
    // text: a word of some case's title finds that case, and only cases that contain it
    let sample = all
        .iter()
        .find(|c| {
            c["title"]
                .as_str()
                .is_some_and(|t| t.split_whitespace().any(|w| w.len() >= 6))
        })
        .unwrap();
    let word: String = sample["title"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .find(|w| w.len() >= 6)
        .unwrap()
        .to_string();
    let word: String = word.chars().filter(|c| c.is_alphanumeric()).collect();
    let found = all_cases(api, &format!("?q={word}")).await;
    assert!(
        found.iter().any(|c| c["id"] == sample["id"]),
        "q={word} does not find {}",
        sample["title"]
    );
    assert!(found.len() < all.len(), "q={word} filtered nothing");
    // combined
    let both = all_cases(api, &format!("?account_id={acme}&status=escalated")).await;
    assert!(
        both.iter()
            .all(|c| c["account_id"] == acme.as_str() && c["status"] == "escalated")
    );
    // bad filter values are named
    api.get("/api/v1/cases?status=bogus")
        .await
        .problem_naming(422, "status");
    api.get("/api/v1/cases?criticality=bogus")
        .await
        .problem_naming(422, "criticality");
    api.get("/api/v1/cases?limit=0")
        .await
        .problem_naming(422, "limit");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_seeds_what_demo_json_promises_pages_and_filters_its_cases_and_a_rerun_duplicates_nothing()
 {
    let dir = TempDir::new("demo-rerun");
    let mut d = Demo::start_in(dir.path()).await;
    assert_demo_json(&d);
    assert_health_and_openapi(&d).await;

    let accounts = d.api.get("/api/v1/accounts").await;
    let accounts = accounts.ok()["items"].as_array().unwrap().clone();
    assert_eq!(
        accounts.len(),
        5,
        "the partner sees itself and its four sub-tenants: {accounts:?}"
    );
    let listed: HashSet<_> = ids(&accounts).into_iter().collect();
    let promised: HashSet<_> = d.info["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, promised, "the API's accounts are demo.json's");

    let all = all_cases(&d.api, "").await;
    assert!(
        all.len() >= 200,
        "the shipped alerts made {} cases",
        all.len()
    );
    let subs: HashSet<_> = d.subtenant_ids().into_iter().collect();
    assert!(
        all.iter()
            .all(|c| subs.contains(c["account_id"].as_str().unwrap())),
        "a case outside the sub-tenants"
    );
    let per_sub: HashSet<_> = all
        .iter()
        .map(|c| c["account_id"].as_str().unwrap())
        .collect();
    assert_eq!(per_sub.len(), 4, "round-robin reaches every sub-tenant");
    assert_filters(&d, &all).await;

    // stop, start again on the same data dir
    let (token, case_ids, account_ids) = (d.token().to_string(), ids(&all), listed);
    d.stop();
    let d2 = Demo::start_in(dir.path()).await;
    assert_demo_json(&d2);
    assert_eq!(d2.token(), token, "the re-run keeps the token");
    assert_eq!(
        d2.info["login"], d.info["login"],
        "the re-run keeps the login"
    );
    let old_token_api = Api::new(d2.url(), Some(&token));
    let accounts2 = old_token_api.get("/api/v1/accounts").await;
    let accounts2: HashSet<_> = ids(accounts2.ok()["items"].as_array().unwrap())
        .into_iter()
        .collect();
    assert_eq!(accounts2, account_ids, "the re-run made no new account");
    let all2 = all_cases(&old_token_api, "").await;
    let ids2: HashSet<_> = ids(&all2).into_iter().collect();
    assert_eq!(
        ids2,
        case_ids.into_iter().collect::<HashSet<_>>(),
        "the re-run made no new case"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_created_by_the_cli_while_the_demo_runs_sees_only_its_subtenant_and_respects_its_role()
 {
    let d = Demo::start().await;
    let acme = d.account_id("Acme Corporation");
    let globex = d.account_id("Globex");

    let out = run_ok(&[
        "--data-dir",
        &d.data_dir(),
        "token",
        "create",
        "--account",
        &acme,
        "--role",
        "analyst",
    ]);
    let analyst = d.api.with_token(&last_word(&out));
    let accounts = analyst.get("/api/v1/accounts").await;
    let items = accounts.ok()["items"].as_array().unwrap();
    assert_eq!(
        items.len(),
        1,
        "a sub-tenant token sees one account: {items:?}"
    );
    assert_eq!(items[0]["id"], acme.as_str());

    let mine = analyst.all("/api/v1/cases", 500).await;
    assert!(!mine.is_empty(), "the sub-tenant has demo cases");
    assert!(
        mine.iter().all(|c| c["account_id"] == acme.as_str()),
        "the analyst sees another account's case"
    );
    let theirs = d
        .api
        .get(&format!("/api/v1/cases?account_id={globex}&limit=1"))
        .await;
    let other_case = theirs.ok()["items"][0]["id"]
        .as_str()
        .expect("a Globex case")
        .to_string();
    analyst
        .get(&format!("/api/v1/cases/{other_case}"))
        .await
        .problem(404);
    analyst
        .get(&format!("/api/v1/cases/{other_case}/activity"))
        .await
        .problem(404);
    analyst
        .send(
            reqwest::Method::POST,
            &format!("/api/v1/cases/{other_case}/escalate"),
            None,
            None,
        )
        .await
        .problem(404);
    analyst
        .get(&format!("/api/v1/cases?account_id={globex}"))
        .await
        .problem_naming(422, "account_id");

    // a viewer reads but may not escalate
    let viewer = d.api.with_token(&d.create_token(&acme, "viewer"));
    let own_case = mine[0]["id"].as_str().unwrap();
    assert_eq!(
        viewer
            .get(&format!("/api/v1/cases/{own_case}"))
            .await
            .status,
        200
    );
    let p = viewer
        .send(
            reqwest::Method::POST,
            &format!("/api/v1/cases/{own_case}/escalate"),
            None,
            None,
        )
        .await;
    p.problem(403);

    // no token, a garbage token, a malformed header
    d.api
        .without_token()
        .get("/api/v1/cases")
        .await
        .problem(401);
    d.api
        .with_token("cb_0000000000000000000000000000000000000000")
        .get("/api/v1/cases")
        .await
        .problem(401);
    let res = d
        .api
        .http
        .get(format!("{}/api/v1/cases", d.url()))
        .header("Authorization", "Basic Zm9vOmJhcg==")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/problem+json")
    );

    // token create for an account that does not exist fails and says so
    let out = common::run(&[
        "--data-dir",
        &d.data_dir(),
        "token",
        "create",
        "--account",
        "acct_nope",
        "--role",
        "admin",
    ]);
    assert!(
        !out.status.success(),
        "a token for a missing account was created"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("acct_nope"),
        "the error does not name the account"
    );
    let out = common::run(&[
        "--data-dir",
        &d.data_dir(),
        "token",
        "create",
        "--account",
        &acme,
        "--role",
        "root",
    ]);
    assert!(
        !out.status.success(),
        "a token with an unknown role was created"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_ingest_command_files_a_plain_json_alert_into_the_running_demo_and_prints_a_report() {
    let d = Demo::start().await;
    let initech = d.account_id("Initech");
    let dir = TempDir::new("ingest");
    let file = dir.path().join("alert.json");
    let source_id = common::unique("cli-");
    let alert = json!({
        "rule_id": "cli-e2e-rule", "title": "CLI-ingested suspicious login", "criticality": "low",
        "description": "filed by casebridge ingest", "source_id": source_id,
    });
    std::fs::write(&file, alert.to_string()).unwrap();

    let out = run_ok(&[
        "--data-dir",
        &d.data_dir(),
        "ingest",
        &file.display().to_string(),
        "--account",
        &initech,
    ]);
    assert!(
        out.contains("created 1"),
        "the report does not say one case was created:\n{out}"
    );
    let report: Value = {
        let json_part = &out[..out.rfind("created ").unwrap()];
        serde_json::from_str(json_part.trim())
            .unwrap_or_else(|e| panic!("the report is not JSON ({e}):\n{out}"))
    };
    assert_eq!(report["created"], 1);
    let case_id = report["lines"][0]["case_id"]
        .as_str()
        .expect("the report names the case")
        .to_string();

    // the running API sees it at once
    let case = d.api.case(&case_id).await;
    assert_eq!(case["account_id"], initech.as_str());
    assert_eq!(case["title"], "CLI-ingested suspicious login");
    assert_eq!(case["criticality"], "low");
    assert_eq!(
        case["status"], "open",
        "low is below the auto-escalation threshold"
    );
    assert_eq!(case["alert_count"], 1);

    // the same file again is a repeat
    let again = run_ok(&[
        "--data-dir",
        &d.data_dir(),
        "ingest",
        &file.display().to_string(),
        "--account",
        &initech,
    ]);
    assert!(
        again.contains("created 0") && again.contains("repeats 1"),
        "a second ingest is not a repeat:\n{again}"
    );
    assert_eq!(d.api.case(&case_id).await["alert_count"], 2);

    // an account that does not exist fails without filing anything
    let out = common::run(&[
        "--data-dir",
        &d.data_dir(),
        "ingest",
        &file.display().to_string(),
        "--account",
        "acct_nope",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("acct_nope"));

    // without --account, the partner-wide data dir cannot place the alert: it says how, and fails
    let out = common::run(&[
        "--data-dir",
        &d.data_dir(),
        "ingest",
        &file.display().to_string(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success(),
        "an ingest that filed nothing exited 0:\n{stdout}"
    );
    assert!(
        stdout.contains("--account"),
        "the report does not point at --account:\n{stdout}"
    );
    assert_eq!(
        d.api.case(&case_id).await["alert_count"],
        2,
        "the failed ingest changed the case"
    );

    // a file with broken lines: the good lines are filed, the errors name their lines
    let wazuh = common::data_file("alerts/wazuh/wazuh4-alerts-malformed.txt");
    let out = run_ok(&[
        "--data-dir",
        &d.data_dir(),
        "ingest",
        &wazuh.display().to_string(),
        "--account",
        &initech,
    ]);
    let report: Value = serde_json::from_str(out[..out.rfind("created ").unwrap()].trim()).unwrap();
    assert_eq!(report["errors"], 2, "wazuh malformed file:\n{out}");
    assert_eq!(
        report["created"].as_u64().unwrap() + report["repeats"].as_u64().unwrap(),
        2,
        "the two good lines are filed (new, or repeats of the demo's own Wazuh alerts):\n{out}"
    );
    assert!(
        out.contains("\"line\": 2") && out.contains("\"line\": 6"),
        "the errors do not name lines 2 and 6:\n{out}"
    );
}
