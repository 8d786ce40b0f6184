mod common;
use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test]
async fn latency_and_error_rate() {
    let (h, k) = demo().await;
    let api = Cw::new(&h, &k.api_member);
    // 5000 ms × 0.01 = 50 ms
    put_faults(&h, json!({"latency_ms": 5000})).await;
    let t0 = Instant::now();
    assert_eq!(api.get("/system/info").await.status, 200);
    assert!(t0.elapsed() >= Duration::from_millis(50));
    assert!(t0.elapsed() < Duration::from_secs(2));
    put_faults(&h, json!({"error_rate": 1.0})).await;
    let r = api.get("/system/info").await;
    assert_eq!(r.status, 500);
    assert!(r.json["code"].is_string());
    // the write is not applied
    let r = api
        .post(
            "/service/tickets",
            json!({"summary": "s", "board": {"id": 1}, "company": {"id": 251}}),
        )
        .await;
    assert_eq!(r.status, 500);
    put_faults(&h, json!({"error_rate": 0.5, "seed": 7})).await;
    let mut fails = 0;
    for _ in 0..40 {
        if api.get("/system/info").await.status == 500 {
            fails += 1;
        }
    }
    assert!((5..35).contains(&fails), "{fails}");
    put_faults(&h, json!({})).await;
    assert_eq!(api.get("/service/tickets/count").await.json["count"], 0);
    // admin and companyinfo are never faulted
    put_faults(&h, json!({"error_rate": 1.0})).await;
    let r = raw(
        &client(),
        reqwest::Method::GET,
        &format!("{}/login/companyinfo/cbdemo", h.url()),
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    h.shutdown().await;
}

#[tokio::test]
async fn rate_limit_429_every_n_and_retry_after() {
    let (h, k) = demo().await;
    let api = Cw::new(&h, &k.api_member);
    put_faults(
        &h,
        json!({"rate_limit_429": {"every_n": 3, "retry_after_secs": 7}}),
    )
    .await;
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..6 {
        let r = api.get("/system/info").await;
        if r.status == 429 {
            retry_after = r.header("retry-after");
            assert!(
                r.json["message"]
                    .as_str()
                    .unwrap()
                    .contains("Too many requests")
            );
        }
        statuses.push(r.status);
    }
    assert_eq!(statuses, vec![200, 200, 429, 200, 200, 429]);
    assert_eq!(retry_after.as_deref(), Some("7"));
    put_faults(
        &h,
        json!({"rate_limit_429": {"every_n": 1, "retry_after_secs": null}}),
    )
    .await;
    let r = api.get("/system/info").await;
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").is_none());
    h.shutdown().await;
}

#[tokio::test]
async fn quota_per_minute_scaled_window() {
    let (h, k) = demo().await;
    let api = Cw::new(&h, &k.api_member);
    // window 60 s × 0.01 = 0.6 s
    put_faults(&h, json!({"quota_per_minute": 3})).await;
    let mut s = Vec::new();
    for _ in 0..5 {
        s.push(api.get("/system/info").await.status);
    }
    assert_eq!(s, vec![200, 200, 200, 429, 429]);
    let r = api.get("/system/info").await;
    assert!(r.header("retry-after").is_some());
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(api.get("/system/info").await.status, 200);
    h.shutdown().await;
}

#[tokio::test]
async fn apply_then_fail_500_and_delay() {
    let (h, k) = demo().await;
    let api = Cw::new(&h, &k.api_member);
    let f = put_faults(&h, json!({"apply_then_fail": {"mode": "500", "count": 1, "method": "POST", "path_prefix": "/service/tickets"}})).await;
    assert_eq!(f["apply_then_fail_remaining"], 1);
    // GETs and other paths are not affected
    assert_eq!(api.get("/service/tickets").await.status, 200);
    let r = api
        .post(
            "/service/tickets",
            json!({"summary": "ghost", "board": {"id": 1}, "company": {"id": 251}}),
        )
        .await;
    assert_eq!(r.status, 500);
    // … but the ticket exists
    let c = api
        .get(&format!(
            "/service/tickets/count?conditions={}",
            q("summary = \"ghost\"")
        ))
        .await;
    assert_eq!(c.json["count"], 1);
    // count exhausted
    let r = api
        .post(
            "/service/tickets",
            json!({"summary": "fine", "board": {"id": 1}, "company": {"id": 251}}),
        )
        .await;
    assert_eq!(r.status, 201);
    // delay mode: 20 s × 0.01 = 200 ms, past a 100 ms client timeout
    put_faults(&h, json!({"apply_then_fail": {"mode": "delay", "delay_ms": 20000, "count": 1, "method": "PATCH"}})).await;
    let id = r.json["id"].as_u64().unwrap();
    let short = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let res = short
        .patch(format!("{}/service/tickets/{id}", api.base))
        .header("Authorization", basic(&k.api_member))
        .header("clientId", "x")
        .header("content-type", "application/json")
        .body(json!([{"op": "replace", "path": "summary", "value": "late"}]).to_string())
        .send()
        .await;
    assert!(res.is_err(), "client should time out");
    assert_eq!(
        api.get(&format!("/service/tickets/{id}")).await.json["summary"],
        "late"
    );
    h.shutdown().await;
}
