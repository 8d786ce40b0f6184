mod common;
use common::*;
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test]
async fn companyinfo_codebase_auth_and_client_id() {
    let (h, k) = demo().await;
    assert_eq!(h.login_company(), "cbdemo");
    let c = client();
    let r = raw(
        &c,
        Method::GET,
        &format!("{}/login/companyinfo/cbdemo", h.url()),
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json["Codebase"], "v2025_1/");
    assert_eq!(r.json["CompanyID"], "cbdemo");
    assert_eq!(r.json["IsCloud"], false);
    for key in ["CompanyName", "VersionCode", "VersionNumber"] {
        assert!(r.json[key].is_string(), "{key}");
    }
    let r = raw(
        &c,
        Method::GET,
        &format!("{}/login/companyinfo/nope", h.url()),
        &[],
        None,
    )
    .await;
    assert_eq!((r.status, r.text.as_str()), (200, "null"));

    let tech = Cw::new(&h, &k.technician);
    // versioned codebase works too, unknown codebase is plain text 404
    let r = raw(
        &c,
        Method::GET,
        &format!("{}/v2025_1/apis/3.0/system/info", h.url()),
        &tech.headers(),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = raw(
        &c,
        Method::GET,
        &format!("{}/v2019_1/apis/3.0/system/info", h.url()),
        &tech.headers(),
        None,
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.text, "Cannot route. Codebase/company is invalid");
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));

    // no auth
    let url = format!("{}/service/boards", tech.base);
    let r = raw(&c, Method::GET, &url, &[("clientId", "x".into())], None).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json["code"], "Unauthorized");
    // wrong private key
    let mut bad = k.technician.clone();
    bad.private_key.push('x');
    let r = raw(
        &c,
        Method::GET,
        &url,
        &[("Authorization", basic(&bad)), ("clientId", "x".into())],
        None,
    )
    .await;
    assert_eq!(r.status, 401);
    // wrong company
    let mut bad = k.technician.clone();
    bad.company = "other".into();
    let r = raw(
        &c,
        Method::GET,
        &url,
        &[("Authorization", basic(&bad)), ("clientId", "x".into())],
        None,
    )
    .await;
    assert_eq!(r.status, 401);
    // missing clientId is refused with a CW error body
    let r = raw(
        &c,
        Method::GET,
        &url,
        &[("Authorization", basic(&k.technician))],
        None,
    )
    .await;
    assert_eq!(r.status, 401);
    assert!(r.json["message"].as_str().unwrap().contains("clientId"));
    // header name case does not matter
    let r = raw(
        &c,
        Method::GET,
        &url,
        &[
            ("Authorization", basic(&k.technician)),
            ("CLIENTID", "abc".into()),
        ],
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    // unknown endpoint
    let r = tech.get("/service/nothing").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json["code"], "ConnectWiseApi");
    h.shutdown().await;
}

#[tokio::test]
async fn catalogue_boards_statuses_priorities_companies() {
    let (h, k) = demo().await;
    let api = Cw::new(&h, &k.api_member);
    let boards = api.get("/service/boards").await.json;
    let boards = boards.as_array().unwrap();
    assert!(boards.iter().filter(|b| b["inactiveFlag"] == false).count() >= 2);
    assert!(boards.iter().any(|b| b["inactiveFlag"] == true));
    assert_eq!(
        api.get("/service/boards/1").await.json["name"],
        "SOC - Endpoint"
    );
    assert_eq!(api.get("/service/boards/99").await.status, 404);
    let s1 = api.get("/service/boards/1/statuses").await.json;
    let s2 = api.get("/service/boards/2/statuses").await.json;
    let ids1: Vec<u64> = s1
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_u64().unwrap())
        .collect();
    assert!(
        s2.as_array()
            .unwrap()
            .iter()
            .all(|s| !ids1.contains(&s["id"].as_u64().unwrap()))
    );
    let s1 = s1.as_array().unwrap();
    assert!(
        s1.iter()
            .any(|s| s["closedStatus"] == true && s["name"] != "Closed")
    );
    assert!(
        s1.iter()
            .any(|s| s["name"] == "Closure Pending" && s["closedStatus"] == false)
    );
    assert_eq!(s1.iter().filter(|s| s["defaultFlag"] == true).count(), 1);
    assert!(s1.iter().any(|s| s["inactive"] == true));
    assert_eq!(s1[0]["board"]["id"], 1);
    assert!(s1[0]["_info"].is_object());
    let one = api.get("/service/boards/1/statuses/105").await;
    assert_eq!(one.json["name"], "Resolved");
    assert_eq!(api.get("/service/boards/1/statuses/205").await.status, 404);
    for sub in ["types", "subtypes", "items"] {
        let r = api.get(&format!("/service/boards/2/{sub}")).await;
        assert_eq!(r.status, 200);
        assert!(!r.json.as_array().unwrap().is_empty());
    }
    let p = api.get("/service/priorities").await.json;
    assert_eq!(p.as_array().unwrap().len(), 5);
    assert_eq!(p[0]["name"], "Priority 1 - Critical");
    let cs = api
        .get(&format!(
            "/company/companies?conditions={}",
            q("identifier=\"SMITH & SONS\"")
        ))
        .await
        .json;
    assert_eq!(cs.as_array().unwrap().len(), 1);
    let cs = api
        .get(&format!(
            "/company/companies?conditions={}",
            q("deletedFlag = true")
        ))
        .await
        .json;
    assert_eq!(cs[0]["identifier"], "OLDCO");
    assert_eq!(api.get("/company/companies/count").await.json["count"], 6);
    let info = api.get("/system/info").await;
    assert!(info.json["version"].is_string());
    h.shutdown().await;
}

#[tokio::test]
async fn ticket_create_rules() {
    let (h, k) = demo().await;
    let tech = Cw::new(&h, &k.technician);
    let base = json!({"board": {"id": 1}, "company": {"identifier": "GLOBEX"}});
    let with = |extra: Value| {
        let mut b = base.clone();
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    // created with default status, ids > 2^31, _info filled, initial* become notes
    let r = tech
        .post("/service/tickets", with(json!({"summary": "First", "initialDescription": "desc", "initialInternalAnalysis": "internal", "unknownField": 1})))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let t = r.json;
    assert!(t["id"].as_u64().unwrap() > 1u64 << 31);
    assert_eq!(t["status"]["id"], 101);
    assert_eq!(t["status"]["name"], "New");
    assert_eq!(t["closedFlag"], false);
    assert_eq!(t["recordType"], "ServiceTicket");
    assert_eq!(t["customerUpdatedFlag"], false);
    assert_eq!(t["company"]["identifier"], "GLOBEX");
    assert_eq!(t["priority"]["id"], 3, "default priority");
    assert_eq!(t["_info"]["enteredBy"], "jtech");
    assert_eq!(t["_info"]["updatedBy"], "jtech");
    assert!(t["_info"]["lastUpdated"].as_str().unwrap().ends_with('Z'));
    assert!(t.get("initialDescription").is_none());
    let id = t["id"].as_u64().unwrap();
    let notes = tech.get(&format!("/service/tickets/{id}/notes")).await.json;
    assert_eq!(notes.as_array().unwrap().len(), 2);
    assert_eq!(notes[0]["text"], "desc");
    assert_eq!(notes[0]["detailDescriptionFlag"], true);
    assert_eq!(notes[1]["internalAnalysisFlag"], true);
    let t2 = tech.ticket("second").await;
    assert_eq!(t2["id"].as_u64().unwrap(), id + 1);

    // summary: 100 UTF-16 units ok, 101 refused; an astral char counts 2
    assert_eq!(
        tech.post(
            "/service/tickets",
            with(json!({"summary": "x".repeat(100)}))
        )
        .await
        .status,
        201
    );
    let r = tech
        .post(
            "/service/tickets",
            with(json!({"summary": "x".repeat(101)})),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json["code"], "InvalidObject");
    assert_eq!(r.json["message"], "ticket object is invalid");
    assert_eq!(r.json["errors"][0]["field"], "summary");
    assert_eq!(r.json["errors"][0]["code"], "InvalidField");
    assert_eq!(r.json["errors"][0]["resource"], "ticket");
    let astral = format!("{}😀", "x".repeat(99)); // 99 + 2 = 101 units, 100 chars
    assert_eq!(
        tech.post("/service/tickets", with(json!({"summary": astral})))
            .await
            .status,
        400
    );
    let r = tech
        .post(
            "/service/tickets",
            with(json!({"summary": format!("{}é", "x".repeat(99))})),
        )
        .await;
    assert_eq!(r.status, 201);
    // summary missing
    let r = tech.post("/service/tickets", base.clone()).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json["errors"][0]["code"], "MissingRequiredField");
    assert_eq!(
        r.json["errors"][0]["message"],
        "The summary field is required."
    );
    // externalXRef and other max lengths
    assert_eq!(
        tech.post(
            "/service/tickets",
            with(json!({"summary": "s", "externalXRef": "r".repeat(100)}))
        )
        .await
        .status,
        201
    );
    let r = tech
        .post(
            "/service/tickets",
            with(json!({"summary": "s", "externalXRef": "r".repeat(101)})),
        )
        .await;
    assert_eq!(
        (r.status, r.json["errors"][0]["field"].as_str()),
        (400, Some("externalXRef"))
    );
    let r = tech
        .post(
            "/service/tickets",
            with(json!({"summary": "s", "zip": "1".repeat(13)})),
        )
        .await;
    assert_eq!(
        (r.status, r.json["errors"][0]["field"].as_str()),
        (400, Some("zip"))
    );
    let r = tech
        .post(
            "/service/tickets",
            with(json!({"summary": "s", "severity": "Extreme"})),
        )
        .await;
    assert_eq!(
        (r.status, r.json["errors"][0]["field"].as_str()),
        (400, Some("severity"))
    );
    // company: required, must exist, not deleted
    let r = tech
        .post(
            "/service/tickets",
            json!({"summary": "s", "board": {"id": 1}}),
        )
        .await;
    assert_eq!(
        (r.status, r.json["errors"][0]["field"].as_str()),
        (400, Some("company"))
    );
    let r = tech
        .post(
            "/service/tickets",
            json!({"summary": "s", "board": {"id": 1}, "company": {"identifier": "NOPE"}}),
        )
        .await;
    assert_eq!(
        (r.status, r.json["errors"][0]["field"].as_str()),
        (400, Some("company"))
    );
    let r = tech
        .post(
            "/service/tickets",
            json!({"summary": "s", "board": {"id": 1}, "company": {"identifier": "OLDCO"}}),
        )
        .await;
    assert_eq!(
        (r.status, r.json["errors"][0]["field"].as_str()),
        (400, Some("company"))
    );
    let r = tech
        .post(
            "/service/tickets",
            json!({"summary": "s", "board": {"id": 1}, "company": {"id": 254}}),
        )
        .await;
    assert_eq!(r.json["company"]["identifier"], "SMITH & SONS");
    // board required, inactive board refused
    let r = tech
        .post(
            "/service/tickets",
            json!({"summary": "s", "company": {"id": 251}}),
        )
        .await;
    assert_eq!(
        (r.status, r.json["errors"][0]["field"].as_str()),
        (400, Some("board"))
    );
    let r = tech
        .post(
            "/service/tickets",
            json!({"summary": "s", "company": {"id": 251}, "board": {"id": 3}}),
        )
        .await;
    assert_eq!(
        (r.status, r.json["errors"][0]["field"].as_str()),
        (400, Some("board"))
    );
    // status of another board
    let r = tech
        .post(
            "/service/tickets",
            with(json!({"summary": "s", "status": {"id": 201}})),
        )
        .await;
    assert_eq!(
        (r.status, r.json["errors"][0]["field"].as_str()),
        (400, Some("status"))
    );
    // closed status at creation → closedFlag
    let r = tech
        .post(
            "/service/tickets",
            with(json!({"summary": "s", "status": {"id": 105}})),
        )
        .await;
    assert_eq!(r.json["closedFlag"], true);
    assert_eq!(r.json["closedBy"], "jtech");
    // priority must exist
    let r = tech
        .post(
            "/service/tickets",
            with(json!({"summary": "s", "priority": {"id": 42}})),
        )
        .await;
    assert_eq!(
        (r.status, r.json["errors"][0]["field"].as_str()),
        (400, Some("priority"))
    );
    // type of the wrong board
    let r = tech
        .post(
            "/service/tickets",
            with(json!({"summary": "s", "type": {"id": 21}})),
        )
        .await;
    assert_eq!(
        (r.status, r.json["errors"][0]["field"].as_str()),
        (400, Some("type"))
    );
    let r = tech.post("/service/tickets", with(json!({"summary": "s", "type": {"id": 11}, "subType": {"id": 111}, "item": {"id": 1101}}))).await;
    assert_eq!(r.json["item"]["name"], "Workstation");
    // non-JSON body
    let r = tech.req(Method::POST, "/service/tickets", None).await;
    assert_eq!(r.status, 400);
    h.shutdown().await;
}

#[tokio::test]
async fn patch_rules_status_per_board_and_delete() {
    let (h, k) = demo().await;
    let tech = Cw::new(&h, &k.technician);
    let t = tech.ticket("patch me").await;
    let id = t["id"].as_u64().unwrap();
    let p = format!("/service/tickets/{id}");
    // non-array
    let r = tech
        .patch(
            &p,
            json!({"op": "replace", "path": "summary", "value": "x"}),
        )
        .await;
    assert_eq!(r.status, 400);
    // bad paths
    for path in [
        "Status",
        "company/identifier",
        "status/id",
        "closedFlag",
        "id",
    ] {
        let r = tech
            .patch(
                &p,
                json!([{"op": "replace", "path": path, "value": {"id": 105}}]),
            )
            .await;
        assert_eq!(r.status, 400, "path {path} accepted");
    }
    // reference must be an object
    let r = tech
        .patch(
            &p,
            json!([{"op": "replace", "path": "status", "value": 105}]),
        )
        .await;
    assert_eq!(
        (r.status, r.json["errors"][0]["field"].as_str()),
        (400, Some("status"))
    );
    // status of another board
    let r = tech
        .patch(
            &p,
            json!([{"op": "replace", "path": "status", "value": {"id": 205}}]),
        )
        .await;
    assert_eq!(
        (r.status, r.json["errors"][0]["field"].as_str()),
        (400, Some("status"))
    );
    // close with "Resolved" then reopen with "Closure Pending" (open although it sounds closed)
    let r = tech.patch(&p, json!([{"op": "replace", "path": "status", "value": {"id": 105}}, {"op": "replace", "path": "summary", "value": "patched"}])).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["closedFlag"], true);
    assert_eq!(r.json["summary"], "patched");
    assert!(r.json["closedDate"].is_string());
    let r = tech
        .patch(
            &p,
            json!([{"op": "replace", "path": "status", "value": {"id": 104}}]),
        )
        .await;
    assert_eq!(r.json["closedFlag"], false);
    assert!(r.json.get("closedDate").is_none());
    // move board together with a status of the new board
    let r = tech.patch(&p, json!([{"op": "replace", "path": "board", "value": {"id": 2}}, {"op": "replace", "path": "status", "value": {"id": 202}}])).await;
    assert_eq!((r.status, r.json["board"]["id"].as_u64()), (200, Some(2)));
    // company by identifier; deleted company refused
    let r = tech
        .patch(
            &p,
            json!([{"op": "replace", "path": "company", "value": {"identifier": "INITECH"}}]),
        )
        .await;
    assert_eq!(r.json["company"]["id"], 253);
    let r = tech
        .patch(
            &p,
            json!([{"op": "replace", "path": "company", "value": {"identifier": "OLDCO"}}]),
        )
        .await;
    assert_eq!(r.status, 400);
    // summary limits apply on PATCH too; leading slash accepted
    let r = tech
        .patch(
            &p,
            json!([{"op": "replace", "path": "/summary", "value": "y".repeat(101)}]),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = tech
        .patch(
            &p,
            json!([{"op": "replace", "path": "customerUpdatedFlag", "value": true}]),
        )
        .await;
    assert_eq!(r.json["customerUpdatedFlag"], true);
    let r = tech
        .patch(&p, json!([{"op": "remove", "path": "priority"}]))
        .await;
    assert!(r.json.get("priority").is_none());
    // PUT
    let r = tech
        .req(
            Method::PUT,
            &p,
            Some(json!({"summary": "put", "board": {"id": 1}, "company": {"id": 251}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["status"]["id"], 101);
    // DELETE
    let r = tech.delete(&p).await;
    assert_eq!(r.status, 204);
    let r = tech.get(&p).await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.json,
        json!({"code": "NotFound", "message": format!("Ticket {id} not found"), "errors": null})
    );
    assert_eq!(tech.patch(&p, json!([])).await.status, 404);
    h.shutdown().await;
}

#[tokio::test]
async fn notes_flags_and_last_updated() {
    let (h, k) = demo().await;
    let tech = Cw::new(&h, &k.technician);
    let t = tech.ticket("notes").await;
    let id = t["id"].as_u64().unwrap();
    let np = format!("/service/tickets/{id}/notes");
    let r = tech.post(&np, json!({"text": "no flags", "detailDescriptionFlag": false, "internalAnalysisFlag": false, "resolutionFlag": false})).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json["message"], "serviceNote object is invalid");
    assert!(
        r.json["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("Please choose where to display the notes")
    );
    assert_eq!(
        tech.post(&np, json!({"text": "only text"})).await.status,
        400
    );
    assert_eq!(
        tech.post(&np, json!({"internalAnalysisFlag": true}))
            .await
            .status,
        400
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let r = tech
        .post(
            &np,
            json!({"text": "line1\nline2", "internalAnalysisFlag": true}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let n = r.json;
    assert_eq!(n["ticketId"].as_u64(), Some(id));
    assert_eq!(n["member"]["identifier"], "jtech");
    assert_eq!(n["createdBy"], "jtech");
    assert_eq!(n["text"], "line1\nline2");
    assert!(n["dateCreated"].is_string());
    let nid = n["id"].as_u64().unwrap();
    assert_eq!(
        tech.get(&format!("{np}/{nid}")).await.json["id"].as_u64(),
        Some(nid)
    );
    assert_eq!(tech.get(&format!("{np}/1")).await.status, 404);
    assert_eq!(tech.get(&format!("{np}/count")).await.json["count"], 1);
    let all = tech
        .get(&format!("/service/tickets/{id}/allNotes"))
        .await
        .json;
    assert_eq!(all[0]["internalAnalysisFlag"], true);
    assert_eq!(all[0]["ticket"]["id"].as_u64(), Some(id));
    // default: a note does not move the ticket's lastUpdated
    let t2 = tech.get(&format!("/service/tickets/{id}")).await.json;
    assert_eq!(t2["_info"]["lastUpdated"], t["_info"]["lastUpdated"]);
    put_faults(&h, json!({"note_moves_last_updated": true})).await;
    tech.post(&np, json!({"text": "moves", "resolutionFlag": true}))
        .await;
    let t3 = tech.get(&format!("/service/tickets/{id}")).await.json;
    assert_ne!(t3["_info"]["lastUpdated"], t["_info"]["lastUpdated"]);
    assert_eq!(
        tech.post(
            "/service/tickets/3999999999/notes",
            json!({"text": "x", "detailDescriptionFlag": true})
        )
        .await
        .status,
        404
    );
    h.shutdown().await;
}

#[tokio::test]
async fn conditions_paging_count_search() {
    let (h, k) = demo().await;
    let tech = Cw::new(&h, &k.technician);
    for i in 0..30 {
        tech.ticket(&format!("page-tag {i:02}")).await;
    }
    tech.post(
        "/service/tickets",
        json!({"summary": "other", "board": {"id": 2}, "company": {"identifier": "SMITH & SONS"}}),
    )
    .await;
    let cond = q("summary like \"page-tag*\"");
    let r = tech
        .get(&format!(
            "/service/tickets?conditions={cond}&pageSize=10&page=1"
        ))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json.as_array().unwrap().len(), 10);
    let link = r.header("link").unwrap();
    assert!(
        link.contains("rel=\"next\"") && link.contains("rel=\"last\""),
        "{link}"
    );
    assert!(!link.contains("rel=\"prev\""));
    assert!(link.contains(&format!(
        "{}/v4_6_release/apis/3.0/service/tickets?",
        h.url()
    )));
    assert!(link.contains("page=2"));
    let r3 = tech
        .get(&format!(
            "/service/tickets?conditions={cond}&pageSize=10&page=3"
        ))
        .await;
    let link3 = r3.header("link").unwrap();
    assert!(
        link3.contains("rel=\"prev\"")
            && link3.contains("rel=\"first\"")
            && !link3.contains("rel=\"next\"")
    );
    // follow next links to collect everything exactly once
    let mut seen = Vec::new();
    let mut url = format!("{}/service/tickets?conditions={cond}&pageSize=7", tech.base);
    loop {
        let r = raw(&tech.c, Method::GET, &url, &tech.headers(), None).await;
        seen.extend(
            r.json
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["id"].as_u64().unwrap()),
        );
        let Some(l) = r.header("link") else { break };
        let Some(next) = l.split(',').find(|p| p.contains("rel=\"next\"")) else {
            break;
        };
        url = next
            .trim()
            .trim_start_matches('<')
            .split('>')
            .next()
            .unwrap()
            .to_string();
    }
    assert_eq!(seen.len(), 30);
    // count
    assert_eq!(
        tech.get(&format!("/service/tickets/count?conditions={cond}"))
            .await
            .json,
        json!({"count": 30})
    );
    // pageSize limits
    assert_eq!(tech.get("/service/tickets?pageSize=1000").await.status, 200);
    assert_eq!(tech.get("/service/tickets?pageSize=1001").await.status, 400);
    assert_eq!(
        tech.get("/service/tickets")
            .await
            .json
            .as_array()
            .unwrap()
            .len(),
        25
    );
    // orderBy + fields
    let r = tech.get(&format!("/service/tickets?conditions={cond}&orderBy={}&fields=id,summary,status/name&pageSize=3", q("summary desc"))).await;
    assert_eq!(r.json[0]["summary"], "page-tag 29");
    assert_eq!(r.json[0].as_object().unwrap().len(), 3);
    assert_eq!(r.json[0]["status"], json!({"name": "New"}));
    // conditions on references, & in values, lastUpdated alias, and/or
    let c2 = q("company/identifier = \"SMITH & SONS\" and board/id = 2");
    assert_eq!(
        tech.get(&format!("/service/tickets/count?conditions={c2}"))
            .await
            .json["count"],
        1
    );
    let c3 = q(
        "lastUpdated > [2020-01-01T00:00:00Z] AND closedFlag = False AND (status/name = \"New\" or status/id in (102,103))",
    );
    assert_eq!(
        tech.get(&format!("/service/tickets/count?conditions={c3}"))
            .await
            .json["count"],
        31
    );
    let c4 = q("_info/lastUpdated < [2020-01-01T00:00:00Z]");
    assert_eq!(
        tech.get(&format!("/service/tickets/count?conditions={c4}"))
            .await
            .json["count"],
        0
    );
    // bad conditions → 400 with position
    let r = tech
        .get(&format!("/service/tickets?conditions={}", q("summary = ")))
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.json["message"].as_str().unwrap().contains("position 11"),
        "{}",
        r.text
    );
    let r = tech
        .get(&format!(
            "/service/tickets?conditions={}",
            q("nosuchfield = 1")
        ))
        .await;
    assert_eq!(r.status, 400);
    // search
    let r = tech
        .post(
            "/service/tickets/search",
            json!({"conditions": "summary like \"page-tag 1*\"", "orderBy": "id desc"}),
        )
        .await;
    assert_eq!(r.status, 200);
    let arr = r.json.as_array().unwrap();
    assert_eq!(arr.len(), 10);
    assert!(arr[0]["id"].as_u64() > arr[1]["id"].as_u64());
    // forward-only
    let fo = [("pagination-type", "forward-only".to_string())];
    let r = tech
        .req_h(
            Method::GET,
            &format!("/service/tickets?conditions={cond}&pageSize=20"),
            &fo,
            None,
        )
        .await;
    assert_eq!(r.json.as_array().unwrap().len(), 20);
    let l = r.header("link").unwrap();
    let last = r.json[19]["id"].as_u64().unwrap();
    assert!(l.contains(&format!("pageId={last}")), "{l}");
    let r = tech
        .req_h(
            Method::GET,
            &format!("/service/tickets?conditions={cond}&pageSize=20&pageId={last}&page=7"),
            &fo,
            None,
        )
        .await;
    assert_eq!(r.json.as_array().unwrap().len(), 10);
    assert!(r.json[0]["id"].as_u64().unwrap() > last);
    assert!(
        !r.header("link")
            .unwrap_or_default()
            .contains("rel=\"next\"")
    );
    let r = tech
        .req_h(Method::GET, "/service/tickets?orderBy=id%20desc", &fo, None)
        .await;
    assert_eq!(r.status, 400);
    h.shutdown().await;
}

#[tokio::test]
async fn restricted_member_gets_403() {
    let (h, k) = demo().await;
    let ro = Cw::new(&h, &k.restricted);
    let r = ro
        .post(
            "/service/tickets",
            json!({"summary": "s", "board": {"id": 1}, "company": {"id": 251}}),
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json["code"], "Security");
    assert!(r.json["message"].is_string());
    assert_eq!(ro.get("/company/companies").await.status, 403);
    assert_eq!(ro.get("/system/callbacks").await.status, 403);
    assert_eq!(ro.get("/service/boards").await.status, 200);
    assert_eq!(ro.get("/service/tickets").await.status, 200);
    let tech = Cw::new(&h, &k.technician);
    assert_eq!(tech.get("/system/callbacks").await.status, 403);
    let t = tech.ticket("x").await;
    let r = ro
        .patch(
            &format!("/service/tickets/{}", t["id"]),
            json!([{"op": "replace", "path": "summary", "value": "y"}]),
        )
        .await;
    assert_eq!(r.status, 403);
    h.shutdown().await;
}

#[tokio::test]
async fn merge_marks_child() {
    let (h, k) = demo().await;
    let tech = Cw::new(&h, &k.technician);
    let parent = tech.ticket("parent").await["id"].as_u64().unwrap();
    let child = tech.ticket("child").await["id"].as_u64().unwrap();
    tech.post(
        &format!("/service/tickets/{child}/notes"),
        json!({"text": "child note", "detailDescriptionFlag": true}),
    )
    .await;
    let r = tech
        .post(
            &format!("/service/tickets/{parent}/merge"),
            json!({"mergeTicketIds": [child]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let c = tech.get(&format!("/service/tickets/{child}")).await.json;
    assert_eq!(c["closedFlag"], true);
    assert_eq!(c["mergedParentTicket"]["id"].as_u64(), Some(parent));
    let all = tech
        .get(&format!("/service/tickets/{parent}/allNotes"))
        .await
        .json;
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .any(|n| n["text"] == "child note" && n["mergedFlag"] == true)
    );
    let r = tech
        .post(
            &format!("/service/tickets/{parent}/merge"),
            json!({"mergeTicketIds": [child]}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        tech.post(&format!("/service/tickets/{parent}/merge"), json!({}))
            .await
            .status,
        400
    );
    assert_eq!(
        tech.post(
            &format!("/service/tickets/{parent}/merge"),
            json!({"mergeTicketIds": [parent]})
        )
        .await
        .status,
        400
    );
    h.shutdown().await;
}

#[tokio::test]
async fn admin_members_reset_and_ui() {
    let (h, _k) = demo().await;
    let c = client();
    let r = raw(&c, Method::POST, &format!("{}/__sim/members", h.url()), &[], Some(json!({"identifier": "bob", "public_key": "pubbob", "private_key": "privbob", "role": "technician"}))).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let bob = cw_sim::MemberKeys {
        company: "cbdemo".into(),
        public_key: "pubbob".into(),
        private_key: "privbob".into(),
        client_id: "c".into(),
        member: "bob".into(),
    };
    let cw = Cw::new(&h, &bob);
    let t = cw.ticket("by bob").await;
    assert_eq!(t["_info"]["enteredBy"], "bob");
    // the state never holds plain keys
    let st = sim_state(&h).await;
    assert!(!st.to_string().contains("privbob"));
    // UI
    let id = t["id"].as_u64().unwrap();
    let html = raw(&c, Method::GET, &format!("{}/ui", h.url()), &[], None).await;
    assert!(html.text.contains("by bob"));
    let page = raw(
        &c,
        Method::GET,
        &format!("{}/ui/tickets/{id}", h.url()),
        &[],
        None,
    )
    .await;
    assert!(page.text.contains("Add note"));
    let r = c
        .post(format!("{}/ui/tickets/{id}/notes", h.url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("text={}&section=internal", q("from the ui <b>")))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success() || r.status().is_redirection());
    let r = c
        .post(format!("{}/ui/tickets/{id}/status", h.url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("status_id=105")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success() || r.status().is_redirection());
    let t = cw.get(&format!("/service/tickets/{id}")).await.json;
    assert_eq!(t["closedFlag"], true);
    assert_eq!(t["_info"]["updatedBy"], "jtech");
    let notes = cw.get(&format!("/service/tickets/{id}/notes")).await.json;
    assert_eq!(notes[0]["member"]["identifier"], "jtech");
    assert_eq!(notes[0]["internalAnalysisFlag"], true);
    let page = raw(
        &c,
        Method::GET,
        &format!("{}/ui/tickets/{id}", h.url()),
        &[],
        None,
    )
    .await;
    assert!(page.text.contains("from the ui &lt;b&gt;"));
    // reset, then seed again
    let r = raw(
        &c,
        Method::POST,
        &format!("{}/__sim/reset", h.url()),
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 204);
    assert_eq!(cw.get("/service/boards").await.status, 401);
    let r = raw(
        &c,
        Method::POST,
        &format!("{}/__sim/seed", h.url()),
        &[],
        Some(json!({"seed": "demo"})),
    )
    .await;
    let keys: cw_sim::DemoKeys = serde_json::from_value(r.json).unwrap();
    let api = Cw::new(&h, &keys.api_member);
    assert_eq!(api.get("/service/tickets/count").await.json["count"], 0);
    h.shutdown().await;
}
