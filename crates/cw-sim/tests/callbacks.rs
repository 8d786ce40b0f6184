mod common;
use base64::Engine;
use common::*;
use hmac::{KeyInit, Mac};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Independent implementation of the documented algorithm (not the sim's `sign`).
fn expected_signature(signing_key: &str, body: &[u8]) -> String {
    let key: Vec<u8> = Sha256::digest(signing_key.as_bytes()).to_vec();
    assert_eq!(key.len(), 32);
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[tokio::test]
async fn registration_rules() {
    let (h, k) = demo().await;
    let api = Cw::new(&h, &k.api_member);
    let url = "https://soc.example.com/cw/callback?tenant=t1&recordId=";
    let cb = register(&api, url, json!({"objectId": 0})).await;
    assert_eq!(cb["objectId"], 1, "owner level stores objectId 1");
    assert_eq!(cb["inactiveFlag"], false);
    assert_eq!(cb["memberId"], 150);
    assert_eq!(cb["type"], "ticket");
    let id = cb["id"].as_u64().unwrap();
    // identical url+type+level+objectId → ObjectExists
    let r = api
        .post(
            "/system/callbacks",
            json!({"url": url, "objectId": 1, "type": "ticket", "level": "owner"}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json["errors"][0]["code"], "ObjectExists");
    // another URL may register the same type/level
    register(&api, "https://other.example.com/hook?recordId=", json!({})).await;
    // board level needs an existing board
    register(&api, url, json!({"level": "board", "objectId": 2})).await;
    let r = api
        .post(
            "/system/callbacks",
            json!({"url": url, "objectId": 99, "type": "ticket", "level": "board"}),
        )
        .await;
    assert_eq!(
        (r.status, r.json["errors"][0]["field"].as_str()),
        (400, Some("objectId"))
    );
    // bad url
    let r = api
        .post(
            "/system/callbacks",
            json!({"url": "soc.example.com/cb", "objectId": 1, "type": "ticket", "level": "owner"}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json["errors"][0]["code"], "InvalidField");
    assert_eq!(r.json["errors"][0]["field"], "url");
    // unknown level
    let r = api
        .post(
            "/system/callbacks",
            json!({"url": url, "objectId": 1, "type": "ticket", "level": "galaxy"}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json["code"], "InvalidObject");
    assert_eq!(r.json["errors"][0]["field"], "level");
    // list/get/update/delete
    assert_eq!(
        api.get("/system/callbacks")
            .await
            .json
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(api.get("/system/callbacks/count").await.json["count"], 3);
    let r = api
        .patch(
            &format!("/system/callbacks/{id}"),
            json!([{"op": "replace", "path": "inactiveFlag", "value": true}]),
        )
        .await;
    assert_eq!(
        (r.status, r.json["inactiveFlag"].as_bool()),
        (200, Some(true))
    );
    let mut put = api.get(&format!("/system/callbacks/{id}")).await.json;
    put["description"] = json!("renamed");
    put["inactiveFlag"] = json!(false);
    let r = api
        .req(Method::PUT, &format!("/system/callbacks/{id}"), Some(put))
        .await;
    assert_eq!(
        (r.status, r.json["description"].as_str()),
        (200, Some("renamed"))
    );
    assert_eq!(
        api.delete(&format!("/system/callbacks/{id}")).await.status,
        204
    );
    assert_eq!(
        api.get(&format!("/system/callbacks/{id}")).await.status,
        404
    );
    h.shutdown().await;
}

#[tokio::test]
async fn delivery_envelope_and_signature() {
    let (h, k) = demo().await;
    let api = Cw::new(&h, &k.api_member);
    let tech = Cw::new(&h, &k.technician);
    let hk = hook().await;
    let cb = register(&api, &format!("{}/cb?recordId=", hk.url), json!({})).await;
    let t = tech.ticket("signed").await;
    let id = t["id"].as_u64().unwrap();
    assert!(hk.wait(1, 10.0).await, "no callback");
    let (path, headers, body) = hk.got.lock().unwrap()[0].clone();
    assert_eq!(path, format!("/cb?recordId={id}"));
    let env: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(env["Action"], "added");
    assert_eq!(env["Type"], "ticket");
    assert_eq!(env["ID"].as_u64(), Some(id));
    assert_eq!(env["MemberId"], "jtech");
    assert_eq!(env["CompanyId"], "cbdemo");
    assert_eq!(env["CallbackObjectRecId"], cb["id"]);
    assert!(env["MessageId"].as_str().unwrap().len() >= 32);
    for k in ["FromUrl", "ProductInstanceId", "PartnerId"] {
        assert!(env[k].is_string(), "{k}");
    }
    let entity: Value =
        serde_json::from_str(env["Entity"].as_str().expect("Entity is a string")).unwrap();
    assert_eq!(entity["id"].as_u64(), Some(id));
    assert_eq!(entity["summary"], "signed");
    // key_url without auth, then verify independently
    let key_url = env["Metadata"]["key_url"].as_str().unwrap();
    assert!(key_url.starts_with(h.url()));
    let kr = raw(&client(), Method::GET, key_url, &[], None).await;
    assert_eq!(kr.status, 200);
    let signing_key = kr.json["signing_key"].as_str().unwrap();
    let sig = headers
        .get("x-content-signature")
        .unwrap()
        .to_str()
        .unwrap();
    assert_eq!(sig, expected_signature(signing_key, &body));
    assert_ne!(sig, expected_signature("wrong", &body));
    // a wrong id in key_url reveals nothing
    let bad = key_url.replace("id=", "id=0");
    assert_eq!(
        raw(&client(), Method::GET, &bad, &[], None).await.status,
        404
    );

    // note → updated; delete → deleted with Entity null; changes by the api member are delivered too
    tech.post(
        &format!("/service/tickets/{id}/notes"),
        json!({"text": "n", "detailDescriptionFlag": true}),
    )
    .await;
    assert!(hk.wait(2, 10.0).await);
    api.patch(
        &format!("/service/tickets/{id}"),
        json!([{"op": "replace", "path": "summary", "value": "by api"}]),
    )
    .await;
    assert!(hk.wait(3, 10.0).await);
    api.delete(&format!("/service/tickets/{id}")).await;
    assert!(hk.wait(4, 10.0).await);
    let bodies = hk.bodies();
    let by_action = |a: &str| {
        bodies
            .iter()
            .filter(|b| b["Action"] == a)
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(by_action("updated").len(), 2);
    assert!(
        by_action("updated")
            .iter()
            .any(|b| b["MemberId"] == "casebridge-api")
    );
    let del = &by_action("deleted")[0];
    assert!(del["Entity"].is_null());
    assert_eq!(del["ID"].as_u64(), Some(id));
    // every delivery verifies
    for (_, hd, b) in hk.got.lock().unwrap().iter() {
        assert_eq!(
            hd.get("x-content-signature").unwrap().to_str().unwrap(),
            expected_signature(signing_key, b)
        );
    }
    h.shutdown().await;
}

#[tokio::test]
async fn levels_inactive_and_self_suppression() {
    let (h, k) = demo().await;
    let api = Cw::new(&h, &k.api_member);
    let tech = Cw::new(&h, &k.technician);
    let (all, board2, inactive, selfsup) = (hook().await, hook().await, hook().await, hook().await);
    register(&api, &format!("{}/?id=", all.url), json!({})).await;
    register(
        &api,
        &format!("{}/?id=", board2.url),
        json!({"level": "board", "objectId": 2}),
    )
    .await;
    register(
        &api,
        &format!("{}/?id=", inactive.url),
        json!({"inactiveFlag": true}),
    )
    .await;
    register(
        &api,
        &format!("{}/?id=", selfsup.url),
        json!({"isSelfSuppressedFlag": true}),
    )
    .await;
    api.ticket("by api").await; // suppressed for selfsup (created by api member)
    tech.ticket("by tech").await;
    tech.post(
        "/service/tickets",
        json!({"summary": "b2", "board": {"id": 2}, "company": {"id": 251}}),
    )
    .await;
    assert!(all.wait(3, 10.0).await);
    assert!(selfsup.wait(2, 10.0).await);
    assert!(board2.wait(1, 10.0).await);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(all.count(), 3);
    assert_eq!(selfsup.count(), 2);
    assert!(selfsup.bodies().iter().all(|b| b["MemberId"] == "jtech"));
    assert_eq!(board2.count(), 1);
    assert_eq!(inactive.count(), 0);
    h.shutdown().await;
}

#[tokio::test]
async fn retries_scaled_and_inactivation() {
    let (h, k) = demo().await; // time_scale 0.01: retries after 20 ms then 40 ms
    let api = Cw::new(&h, &k.api_member);
    let hk = hook().await;
    *hk.script.lock().unwrap() = vec![429, 409];
    register(&api, &format!("{}/cb/", hk.url), json!({})).await;
    let started = std::time::Instant::now();
    api.ticket("retry").await;
    assert!(hk.wait(3, 10.0).await);
    let took = started.elapsed();
    assert!(took >= std::time::Duration::from_millis(60), "{took:?}");
    assert!(took < std::time::Duration::from_secs(3), "{took:?}");
    let st = sim_state(&h).await;
    let d = st["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["outcome"] == "delivered")
        .cloned()
        .unwrap_or_default();
    assert_eq!(d["attempts"].as_array().map(|a| a.len()), Some(3));
    // a 500 is not retried
    let hk2 = hook().await;
    *hk2.always.lock().unwrap() = Some(500);
    put_faults(&h, json!({"callbacks": {"inactivate_after_failures": 3}})).await;
    let cb = register(&api, &format!("{}/fail/", hk2.url), json!({})).await;
    for i in 0..3 {
        api.ticket(&format!("f{i}")).await;
        assert!(hk2.wait(i + 1, 10.0).await);
    }
    // let accounting settle
    let mut inactive = false;
    for _ in 0..200 {
        if api
            .get(&format!("/system/callbacks/{}", cb["id"]))
            .await
            .json["inactiveFlag"]
            == true
        {
            inactive = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(
        inactive,
        "registration not inactivated after 3 failed deliveries"
    );
    assert_eq!(hk2.count(), 3, "500s are not retried");
    api.ticket("after").await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(hk2.count(), 3, "inactive registration still receives");
    // 404 three times: retried twice, then failed
    let hk3 = hook().await;
    *hk3.always.lock().unwrap() = Some(404);
    register(&api, &format!("{}/gone/", hk3.url), json!({})).await;
    api.ticket("gone").await;
    assert!(hk3.wait(3, 10.0).await);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(hk3.count(), 3);
    h.shutdown().await;
}

#[tokio::test]
async fn callback_faults_drop_duplicate_delay_reorder() {
    let (h, k) = demo().await;
    let api = Cw::new(&h, &k.api_member);
    let hk = hook().await;
    register(&api, &format!("{}/cb/", hk.url), json!({})).await;
    // drop everything
    put_faults(&h, json!({"callbacks": {"drop_rate": 1.0}, "seed": 1})).await;
    api.ticket("dropped").await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(hk.count(), 0);
    assert!(
        sim_state(&h).await["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["outcome"] == "dropped")
    );
    // duplicate everything: same MessageId twice
    put_faults(&h, json!({"callbacks": {"duplicate_rate": 1.0}, "seed": 1})).await;
    api.ticket("dup").await;
    assert!(hk.wait(2, 10.0).await);
    let b = hk.bodies();
    assert_eq!(b[0]["MessageId"], b[1]["MessageId"]);
    hk.got.lock().unwrap().clear();
    // delay: 5000 ms × 0.01 = 50 ms
    put_faults(&h, json!({"callbacks": {"delay_ms": 5000}})).await;
    let t0 = std::time::Instant::now();
    api.ticket("delayed").await;
    assert!(hk.wait(1, 10.0).await);
    assert!(t0.elapsed() >= std::time::Duration::from_millis(50));
    hk.got.lock().unwrap().clear();
    // reorder: the second change arrives first
    put_faults(&h, json!({"callbacks": {"reorder": true}})).await;
    let a = api.ticket("first").await["id"].as_u64().unwrap();
    let b = api.ticket("second").await["id"].as_u64().unwrap();
    assert!(hk.wait(2, 10.0).await);
    let ids: Vec<u64> = hk
        .bodies()
        .iter()
        .map(|x| x["ID"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![b, a]);
    // a lone held delivery is flushed after a while
    hk.got.lock().unwrap().clear();
    api.ticket("lonely").await;
    assert!(hk.wait(1, 10.0).await);
    h.shutdown().await;
}
