//! The sim's Ticket, ServiceNote, board Status and Priority JSON against ConnectWise's 2015 Service API
//! swagger (tests/data/service-api-2015.swagger.json, see SOURCE.md there): every field the sim emits that
//! the definition names must have the definition's JSON type (ids may exceed int32).
mod common;
use common::*;
use serde_json::{Value, json};

fn swagger() -> Value {
    serde_json::from_str(include_str!("data/service-api-2015.swagger.json")).unwrap()
}

fn check(spec: &Value, def: &str, v: &Value, path: &str, errors: &mut Vec<String>) -> usize {
    let d = &spec["definitions"][def];
    assert!(d.is_object(), "definition {def} missing");
    let props = d["properties"].as_object().unwrap();
    let mut checked = 0;
    for (k, val) in v.as_object().unwrap() {
        let Some(p) = props.get(k) else { continue };
        if val.is_null() {
            continue;
        }
        checked += 1;
        let here = format!("{path}.{k}");
        if let Some(r) = p.get("$ref").and_then(|r| r.as_str()) {
            let name = r.trim_start_matches("#/definitions/");
            if !val.is_object() {
                errors.push(format!("{here}: expected object ({name}), got {val}"));
            } else if spec["definitions"][name]["properties"]
                .as_object()
                .is_some_and(|p| !p.is_empty())
            {
                checked += check(spec, name, val, &here, errors);
            }
            continue;
        }
        let ok = match p["type"].as_str().unwrap_or("") {
            "integer" => val.is_i64() || val.is_u64(),
            "number" => val.is_number(),
            "string" => {
                let s = val.as_str();
                let enum_ok = p
                    .get("enum")
                    .and_then(|e| e.as_array())
                    .is_none_or(|e| s.is_some_and(|s| e.iter().any(|x| x == s)));
                let len_ok = p
                    .get("maxLength")
                    .and_then(|m| m.as_u64())
                    .is_none_or(|m| s.is_some_and(|s| s.encode_utf16().count() as u64 <= m));
                s.is_some() && enum_ok && len_ok
            }
            "boolean" => val.is_boolean(),
            "array" => val.is_array(),
            "object" | "" => val.is_object(),
            _ => true,
        };
        if !ok {
            errors.push(format!("{here}: {val} does not match {p}"));
        }
    }
    checked
}

#[tokio::test]
async fn sim_json_matches_swagger_definitions() {
    let spec = swagger();
    let (h, k) = demo().await;
    let api = Cw::new(&h, &k.api_member);
    let t = api
        .post(
            "/service/tickets",
            json!({"summary": "fidelity", "board": {"id": 1}, "company": {"identifier": "ACMECORP"}, "priority": {"id": 1},
                   "type": {"id": 11}, "subType": {"id": 111}, "item": {"id": 1101}, "externalXRef": "case_1",
                   "severity": "High", "impact": "Low", "status": {"id": 105}, "initialDescription": "d"}),
        )
        .await
        .json;
    let id = t["id"].as_u64().unwrap();
    assert!(id > i32::MAX as u64);
    let note = api
        .post(
            &format!("/service/tickets/{id}/notes"),
            json!({"text": "n", "internalAnalysisFlag": true}),
        )
        .await
        .json;
    let status = api.get("/service/boards/1/statuses/101").await.json;
    let prio = api.get("/service/priorities/1").await.json;
    let mut errors = Vec::new();
    let n1 = check(&spec, "Ticket", &t, "Ticket", &mut errors);
    let n2 = check(&spec, "ServiceNote", &note, "ServiceNote", &mut errors);
    let n3 = check(&spec, "Status", &status, "Status", &mut errors);
    let n4 = check(&spec, "Priority", &prio, "Priority", &mut errors);
    assert!(errors.is_empty(), "{errors:#?}");
    // a meaningful number of fields were compared
    assert!(n1 >= 20, "{n1}");
    assert!(n2 >= 10, "{n2}");
    assert!(n3 >= 7, "{n3}");
    assert!(n4 >= 5, "{n4}");
    // required fields of the definitions are present
    for (def, v) in [("Ticket", &t), ("Status", &status), ("Priority", &prio)] {
        for r in spec["definitions"][def]["required"]
            .as_array()
            .into_iter()
            .flatten()
        {
            assert!(
                v.get(r.as_str().unwrap()).is_some(),
                "{def} lacks required {r}"
            );
        }
    }
    // initial* are write-only
    assert!(t.get("initialDescription").is_none());
    // the checker catches a wrong type
    let mut bad = t.clone();
    bad["closedFlag"] = json!("yes");
    let mut e2 = Vec::new();
    check(&spec, "Ticket", &bad, "Ticket", &mut e2);
    assert_eq!(e2.len(), 1);
    h.shutdown().await;
}
