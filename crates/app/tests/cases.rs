//! The cases API end to end on the demo: create, change status, notes, the Activity Log, the
//! errors that name their field; and escalation into the embedded ConnectWise simulator —
//! exactly one ticket however often a case is escalated, filed under the sub-tenant's mapped
//! company or the parent company, and no ticket (with the reason) for an unassigned rule.

mod common;

use common::{Api, Demo, EFFECT_DEADLINE, eventually};
use reqwest::Method;
use serde_json::{Value, json};

const DIRECTIONS: [&str; 3] = ["outbound", "inbound", "local"];

fn assert_activity_shape(entries: &[Value]) {
    assert!(!entries.is_empty(), "an empty Activity Log");
    for e in entries {
        for k in ["at", "actor", "kind", "message"] {
            assert!(
                e[k].as_str().is_some_and(|v| !v.is_empty()),
                "activity entry without {k}: {e}"
            );
        }
        assert!(
            DIRECTIONS.contains(&e["direction"].as_str().unwrap_or_default()),
            "direction outside {DIRECTIONS:?}: {e}"
        );
    }
    let times: Vec<&str> = entries.iter().map(|e| e["at"].as_str().unwrap()).collect();
    let parsed: Vec<i128> = times.iter().map(|t| rfc3339_millis(t)).collect();
    assert!(
        parsed.windows(2).all(|w| w[0] <= w[1]),
        "the Activity Log is not oldest first: {times:?}"
    );
}

/// Milliseconds of an RFC 3339 UTC time `YYYY-MM-DDTHH:MM:SS(.f+)?Z` (enough to compare).
fn rfc3339_millis(t: &str) -> i128 {
    let t = t
        .strip_suffix('Z')
        .unwrap_or_else(|| panic!("not UTC: {t}"));
    let (date, time) = t
        .split_once('T')
        .unwrap_or_else(|| panic!("not RFC 3339: {t}"));
    let d: Vec<i128> = date.split('-').map(|p| p.parse().unwrap()).collect();
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let h: Vec<i128> = hms.split(':').map(|p| p.parse().unwrap()).collect();
    let ms: i128 = format!("{frac:0<3}")[..3].parse().unwrap();
    ((((d[0] * 13 + d[1]) * 32 + d[2]) * 24 + h[0]) * 60 + h[1]) * 60_000 + h[2] * 1000 + ms
}

async fn escalate(api: &Api, id: &str) -> Value {
    let r = api
        .send(
            Method::POST,
            &format!("/api/v1/cases/{id}/escalate"),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, 200, "escalate {id}: {r:?}");
    r.body
}

/// An open case of `account` (below the auto-escalation threshold, so not yet escalated).
async fn an_open_case(d: &Demo, account: &str) -> Value {
    for crit in ["medium", "low", "informational"] {
        let r = d
            .api
            .get(&format!(
                "/api/v1/cases?account_id={account}&status=open&criticality={crit}&limit=1"
            ))
            .await;
        if let Some(c) = r.ok()["items"].get(0) {
            return c.clone();
        }
    }
    panic!("the demo has no open case for {account}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cases_api_creates_changes_status_takes_notes_and_names_the_bad_field() {
    let d = Demo::start().await;
    let api = &d.api;
    let globex = d.account_id("Globex");

    // create
    let r = api
        .post("/api/v1/cases", &json!({"account_id": globex, "rule_id": "e2e-manual-rule", "title": "Analyst-opened case", "criticality": "low"}))
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let case = r.body;
    let id = case["id"].as_str().expect("an id").to_string();
    assert!(id.starts_with("case_"), "ids are prefixed: {id}");
    assert_eq!(case["account_id"], globex.as_str());
    assert_eq!(case["rule_id"], "e2e-manual-rule");
    assert_eq!(
        (case["status"].as_str(), case["criticality"].as_str()),
        (Some("open"), Some("low"))
    );
    assert_eq!(case["alert_count"], 1);
    assert_eq!(case["ticket"], Value::Null);
    assert!(case["created_at"].as_str().is_some());
    assert_eq!(api.case(&id).await["title"], "Analyst-opened case");
    // create: bad input named
    api.post(
        "/api/v1/cases",
        &json!({"account_id": globex, "rule_id": "r", "title": "t", "criticality": "severe"}),
    )
    .await
    .problem_naming(422, "criticality");
    api.post(
        "/api/v1/cases",
        &json!({"account_id": "acct_nope", "rule_id": "r", "title": "t", "criticality": "low"}),
    )
    .await
    .problem_naming(422, "account_id");
    api.post(
        "/api/v1/cases",
        &json!({"account_id": globex, "rule_id": "r", "title": " ", "criticality": "low"}),
    )
    .await
    .problem_naming(422, "title");
    api.post(
        "/api/v1/cases",
        &json!({"account_id": globex, "rule_id": "r", "criticality": "low"}),
    )
    .await
    .problem_naming(422, "title");
    // oversize fields: named with their limit, nothing stored
    let before = api.get("/api/v1/cases?limit=500").await.ok()["items"]
        .as_array()
        .map(Vec::len);
    for (field, max) in [("title", 1_000), ("rule_id", 200), ("description", 20_000)] {
        let mut body = json!({"account_id": globex, "rule_id": "r", "title": "t",
                              "criticality": "low", "description": ""});
        body[field] = json!("é".repeat(max + 1));
        let r = api.post("/api/v1/cases", &body).await;
        assert!(
            r.body
                .to_string()
                .contains(&format!("at most {max} characters")),
            "{field}: {r:?}"
        );
        r.problem_naming(422, field);
        body[field] = json!("é".repeat(max));
        assert_eq!(
            api.post("/api/v1/cases", &body).await.status,
            201,
            "{field} at the limit"
        );
    }
    let after = api.get("/api/v1/cases?limit=500").await.ok()["items"]
        .as_array()
        .map(Vec::len);
    assert_eq!(
        after,
        before.map(|n| n + 3),
        "only the three at the limit were stored"
    );

    // status
    api.patch(&format!("/api/v1/cases/{id}"), &json!({"status": "solved"}))
        .await
        .problem_naming(422, "status");
    api.patch(&format!("/api/v1/cases/{id}"), &json!({"status": 5}))
        .await
        .problem_naming(422, "status");
    api.send(Method::PATCH, &format!("/api/v1/cases/{id}"), None, None)
        .await
        .problem(400);
    api.patch(
        &format!("/api/v1/cases/{id}"),
        &json!({"status": "in_progress", "close_reason": "x"}),
    )
    .await
    .problem_naming(422, "close_reason");
    for reason in [" ".to_string(), "x".repeat(101)] {
        api.patch(
            &format!("/api/v1/cases/{id}"),
            &json!({"status": "closed", "close_reason": reason}),
        )
        .await
        .problem_naming(422, "close_reason");
    }
    assert_eq!(
        api.case(&id).await["status"],
        "open",
        "a rejected change changed nothing"
    );
    let r = api
        .patch(
            &format!("/api/v1/cases/{id}"),
            &json!({"status": "in_progress"}),
        )
        .await;
    assert_eq!(r.ok()["status"], "in_progress");
    // a closing note goes only with a close, within the note size limit
    for (body, why) in [
        (
            json!({"status": "waiting_on_customer", "resolution": "Done."}),
            "only with status closed",
        ),
        (
            json!({"status": "closed", "resolution": "x".repeat(20_001)}),
            "at most 20000 characters",
        ),
    ] {
        let r = api.patch(&format!("/api/v1/cases/{id}"), &body).await;
        assert!(r.body.to_string().contains(why), "{r:?}");
        r.problem_naming(422, "resolution");
    }
    assert_eq!(api.case(&id).await["status"], "in_progress");
    let r = api
        .patch(
            &format!("/api/v1/cases/{id}"),
            &json!({"status": "closed", "close_reason": "false_positive",
                    "resolution": "Benign admin tool; allow-listed."}),
        )
        .await;
    assert_eq!(r.ok()["status"], "closed");
    assert_eq!(api.case(&id).await["status"], "closed");
    let resp = api.get(&format!("/api/v1/cases/{id}/notes")).await;
    let kept = resp.ok();
    assert_eq!(
        kept["items"].as_array().map(|ns| ns
            .iter()
            .filter(
                |n| n["text"] == "Benign admin tool; allow-listed." && n["visibility"] == "shared"
            )
            .count()),
        Some(1),
        "the closing note is kept on the case: {kept}"
    );
    // closing again changes nothing; a closing note for a closed case is refused, not dropped
    let r = api
        .patch(&format!("/api/v1/cases/{id}"), &json!({"status": "closed"}))
        .await;
    assert_eq!(r.ok()["status"], "closed");
    api.patch(
        &format!("/api/v1/cases/{id}"),
        &json!({"status": "closed", "resolution": "One more thing."}),
    )
    .await
    .problem_naming(422, "resolution");

    // notes
    let notes_path = format!("/api/v1/cases/{id}/notes");
    api.post(&notes_path, &json!({"text": ""}))
        .await
        .problem_naming(422, "text");
    api.post(&notes_path, &json!({"text": ["a"]}))
        .await
        .problem_naming(422, "text");
    api.post(&notes_path, &json!({"text": "   \n"}))
        .await
        .problem_naming(422, "text");
    api.post(&notes_path, &json!({"text": "ok", "visibility": "public"}))
        .await
        .problem_naming(422, "visibility");
    api.post(&notes_path, &json!({"text": "x".repeat(20_001)}))
        .await
        .problem_naming(422, "text");
    let r = api
        .post(
            &notes_path,
            &json!({"text": "Host isolated.", "visibility": "shared"}),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let note = r.body;
    assert_eq!(
        (
            note["text"].as_str(),
            note["visibility"].as_str(),
            note["origin"].as_str()
        ),
        (Some("Host isolated."), Some("shared"), Some("portal"))
    );
    assert!(
        note["id"].as_str().is_some()
            && note["author"].as_str().is_some()
            && note["created_at"].as_str().is_some(),
        "note shape: {note}"
    );
    let notes = api.get(&notes_path).await;
    let notes = notes.ok()["items"].as_array().unwrap().clone();
    assert_eq!(
        notes.len(),
        2,
        "only the closing note and the valid note were stored: {notes:?}"
    );

    // the Activity Log: oldest first, each direction one of the three
    let activity = api.activity(&id).await;
    assert_activity_shape(&activity);
    assert!(
        activity.len() >= 4,
        "opened, in progress, closed and the note should all be logged: {activity:?}"
    );
    let text = serde_json::to_string(&activity).unwrap();
    assert!(
        text.contains("in_progress") || text.contains("in progress"),
        "the status change is not logged: {text}"
    );

    // unknown case: 404 problem+json on every case endpoint
    let ghost = "case_00000000000000000000000000000000";
    api.get(&format!("/api/v1/cases/{ghost}"))
        .await
        .problem(404);
    api.patch(
        &format!("/api/v1/cases/{ghost}"),
        &json!({"status": "open"}),
    )
    .await
    .problem(404);
    api.get(&format!("/api/v1/cases/{ghost}/notes"))
        .await
        .problem(404);
    api.post(
        &format!("/api/v1/cases/{ghost}/notes"),
        &json!({"text": "hello"}),
    )
    .await
    .problem(404);
    api.get(&format!("/api/v1/cases/{ghost}/activity"))
        .await
        .problem(404);
    api.send(
        Method::POST,
        &format!("/api/v1/cases/{ghost}/escalate"),
        None,
        None,
    )
    .await
    .problem(404);
    // unknown routes and methods answer problem+json too
    api.get("/api/v1/no-such-thing").await.problem(404);
    api.send(Method::DELETE, "/api/v1/cases", None, None)
        .await
        .problem(405);
}

/// Escalates the open case `case` of `account` twice at once and once more after its ticket
/// exists; returns the case with its ticket. cw-sim must hold exactly one ticket for it.
async fn escalate_until_ticketed(d: &Demo, case_id: &str) -> Value {
    let (a, b) = tokio::join!(escalate(&d.api, case_id), escalate(&d.api, case_id));
    for c in [&a, &b] {
        assert_eq!(c["status"], "escalated", "{c}");
    }
    let case = eventually("the case's ConnectWise ticket", EFFECT_DEADLINE, || async {
        let c = d.api.case(case_id).await;
        (!c["ticket"].is_null()).then_some(c)
    })
    .await;
    // once more with the ticket in place: kept, not duplicated
    let again = escalate(&d.api, case_id).await;
    assert_eq!(
        again["ticket"]["id"], case["ticket"]["id"],
        "a repeat escalation changed the ticket"
    );
    assert_eq!(
        d.sim_ticket_count(case_id).await,
        1,
        "cw-sim must hold exactly one ticket for {case_id}"
    );
    // nothing is left queued that could make a second one
    let jobs = d.api.get("/api/v1/sync/jobs?state=pending&limit=500").await;
    let pending = jobs.ok()["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j.to_string().contains(case_id))
        .count();
    assert_eq!(
        pending, 0,
        "a job for {case_id} is still pending: {}",
        jobs.body
    );
    assert_eq!(d.sim_ticket_count(case_id).await, 1);
    let t = &case["ticket"];
    assert!(
        t["id"].as_i64().is_some_and(|i| i > 0),
        "ticket id is a ConnectWise integer: {t}"
    );
    assert!(
        t["board_id"].as_i64().is_some() && t["priority_id"].as_i64().is_some(),
        "ticket shape: {t}"
    );
    assert!(t["state"].as_str().is_some(), "ticket shape: {t}");
    assert_activity_shape(&d.api.activity(case_id).await);
    case
}

#[tokio::test(flavor = "multi_thread")]
async fn escalating_twice_makes_one_ticket_under_the_mapped_or_parent_company_and_an_unassigned_rule_makes_none()
 {
    let d = Demo::start().await;

    // a sub-tenant with a company ID mapping files under its own company
    let acme = d.account("Acme Corporation").clone();
    let acme_case = an_open_case(&d, acme["id"].as_str().unwrap()).await;
    let acme_id = acme_case["id"].as_str().unwrap();
    assert_eq!(
        d.sim_ticket_count(acme_id).await,
        0,
        "an open case has no ticket yet"
    );
    let c = escalate_until_ticketed(&d, acme_id).await;
    assert_eq!(
        c["ticket"]["company_identifier"], acme["company_identifier"],
        "Acme's ticket is filed under its mapping"
    );
    let log = d.api.activity(acme_id).await;
    assert!(
        log.iter().any(|e| e["direction"] == "outbound"),
        "the ticket creation is not logged outbound: {log:?}"
    );
    let text = serde_json::to_string(&log).unwrap();
    assert!(
        text.contains(&c["ticket"]["id"].to_string()),
        "the Activity Log does not name ticket #{}: {text}",
        c["ticket"]["id"]
    );

    // the sub-tenant without one files under the parent company, and says so
    let umbrella = d.account("Umbrella Health").clone();
    assert!(umbrella["company_identifier"].is_null());
    let um_case = an_open_case(&d, umbrella["id"].as_str().unwrap()).await;
    let um_id = um_case["id"].as_str().unwrap();
    let c = escalate_until_ticketed(&d, um_id).await;
    assert_eq!(
        c["ticket"]["company_identifier"], "CBMSSP",
        "Umbrella Health files under the parent company"
    );
    let text = serde_json::to_string(&d.api.activity(um_id).await).unwrap();
    assert!(
        text.contains("parent") || text.contains("CBMSSP"),
        "the Activity Log does not say it filed under the parent: {text}"
    );

    // a rule no mapping assigns: escalated, no ticket, and the reason in the Activity Log
    let initech = d.account_id("Initech");
    let r = d
        .api
        .post("/api/v1/cases", &json!({"account_id": initech, "rule_id": "e2e-unassigned-rule", "title": "Rule nobody mapped", "criticality": "low"}))
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let id = r.body["id"].as_str().unwrap().to_string();
    let c = escalate(&d.api, &id).await;
    assert_eq!(c["status"], "escalated");
    assert_eq!(c["ticket"], Value::Null);
    let log = d.api.activity(&id).await;
    assert_activity_shape(&log);
    let reason = log
        .iter()
        .find(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.contains("not ticketed"))
        })
        .unwrap_or_else(|| panic!("no \"not ticketed\" entry: {log:?}"));
    assert!(
        reason["message"]
            .as_str()
            .unwrap()
            .contains("e2e-unassigned-rule"),
        "the reason does not name the rule: {reason}"
    );
    assert_eq!(d.api.case(&id).await["routing"]["ticketed"], false);
    assert_eq!(
        d.sim_ticket_count(&id).await,
        0,
        "an unassigned rule made a ticket"
    );
}
