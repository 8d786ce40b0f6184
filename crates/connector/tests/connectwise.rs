//! The ConnectWise client against cw-sim (and, for answers cw-sim never gives, a canned TCP
//! server). No real-time sleeps: cw-sim runs with time_scale 0.01 and client timeouts are short.

use std::time::Duration;

use casebridge_connector::{
    ConnectWiseClient, ConnectWiseConfig, NewNote, NewTicket, Psa, PsaError, SigningKeyFetcher,
    TEST_CHECKS, verify_callback_signature,
};
use cw_sim::{DemoKeys, MemberKeys, Seed, SimHandle, SimOptions};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

async fn sim() -> (SimHandle, DemoKeys) {
    let h = cw_sim::start(SimOptions {
        bind: "127.0.0.1:0".parse().unwrap(),
        seed: Seed::Demo,
        state_dir: None,
        time_scale: 0.01,
    })
    .await
    .expect("cw-sim starts");
    let keys = h.demo_keys().expect("demo keys").clone();
    (h, keys)
}

fn config(url: &str, k: &MemberKeys) -> ConnectWiseConfig {
    let mut c = ConnectWiseConfig::new(
        url,
        k.company.as_str(),
        k.public_key.as_str(),
        k.private_key.as_str(),
        k.client_id.as_str(),
    );
    c.allow_private_hosts = true;
    c.timeout = Duration::from_secs(10);
    c
}

fn client(h: &SimHandle, k: &MemberKeys) -> ConnectWiseClient {
    ConnectWiseClient::new(config(h.url(), k)).expect("client")
}

async fn put_faults(h: &SimHandle, faults: Value) {
    let r = reqwest::Client::new()
        .put(format!("{}/__sim/faults", h.url()))
        .json(&faults)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "faults: {}", r.status());
}

async fn sim_state(h: &SimHandle) -> Value {
    reqwest::get(format!("{}/__sim/state", h.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn new_ticket(xref: &str) -> NewTicket {
    NewTicket {
        summary: format!("SOC case {xref}: suspicious PowerShell"),
        board_id: 1,
        status_id: None,
        company_identifier: "ACMECORP".into(),
        priority_id: Some(2),
        type_id: Some(11),
        subtype_id: Some(111),
        item_id: Some(1101),
        external_xref: xref.into(),
        initial_description: "Customer-visible description".into(),
        initial_internal_analysis: "Observables: 10.0.0.5".into(),
        severity: Some("High".into()),
        impact: Some("Medium".into()),
        process_notifications: false,
    }
}

#[tokio::test]
async fn discovery_boards_statuses_priorities() {
    let (h, keys) = sim().await;
    let c = client(&h, &keys.api_member);
    let base = c.api_base().await.unwrap();
    assert_eq!(base, format!("{}/v2025_1/apis/3.0", h.url()));

    let boards = c.boards().await.unwrap();
    assert_eq!(boards.len(), 3);
    let names: Vec<&str> = boards.iter().map(|b| b.name.as_str()).collect();
    assert!(names.contains(&"SOC - Endpoint") && names.contains(&"SOC - Cloud & Identity"));
    assert_eq!(boards.iter().filter(|b| b.inactive).count(), 1);

    let statuses = c.board_statuses(1).await.unwrap();
    assert_eq!(statuses.len(), 7);
    let default: Vec<i64> = statuses
        .iter()
        .filter(|s| s.default_flag)
        .map(|s| s.id)
        .collect();
    assert_eq!(default, vec![101]);
    let closed: Vec<i64> = statuses
        .iter()
        .filter(|s| s.closed_status)
        .map(|s| s.id)
        .collect();
    assert_eq!(closed, vec![105, 106]);
    let inactive: Vec<i64> = statuses
        .iter()
        .filter(|s| s.inactive)
        .map(|s| s.id)
        .collect();
    assert_eq!(inactive, vec![107]);
    let f = statuses[4].facts();
    assert_eq!((f.id, f.sort_order, f.closed_status), (105, 5, true));
    assert!(
        c.board_statuses(2)
            .await
            .unwrap()
            .iter()
            .all(|s| s.id / 100 == 2)
    );
    match c.board_statuses(999).await {
        Err(PsaError::NotFound { .. }) => {}
        r => panic!("{r:?}"),
    }

    let prios = c.priorities().await.unwrap();
    assert_eq!(prios.len(), 5);
    assert_eq!(prios[0].name, "Priority 1 - Critical");
    h.shutdown().await;
}

#[tokio::test]
async fn company_lookup_escapes_identifiers() {
    let (h, keys) = sim().await;
    let c = client(&h, &keys.api_member);
    let s = c
        .company_by_identifier("SMITH & SONS")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (s.id, s.identifier.as_str(), s.deleted),
        (254, "SMITH & SONS", false)
    );
    let s = c
        .company_by_identifier("smith & sons")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.id, 254);
    let old = c.company_by_identifier("OLDCO").await.unwrap().unwrap();
    assert!(old.deleted);
    assert_eq!(
        c.company_by_identifier("ACMECORP")
            .await
            .unwrap()
            .unwrap()
            .id,
        251
    );
    // Not there, with characters that must survive encoding and escaping.
    for odd in [
        "NOPE",
        "A+B",
        "SMITH",
        "SMITH & SONS [x]",
        "say \"hi\"",
        "50% *",
        "#frag?x=1",
    ] {
        assert_eq!(c.company_by_identifier(odd).await.unwrap(), None, "{odd}");
    }
    assert!(matches!(
        c.company_by_identifier("  ").await,
        Err(PsaError::Validation { .. })
    ));
    h.shutdown().await;
}

#[tokio::test]
async fn ticket_lifecycle() {
    let (h, keys) = sim().await;
    let c = client(&h, &keys.api_member);
    let t = c.create_ticket(&new_ticket("case_01")).await.unwrap();
    assert!(t.id > 3_000_000_000, "ids beyond 2^31: {}", t.id);
    assert_eq!(t.board_id, Some(1));
    assert_eq!(t.status_id, Some(101), "board default status");
    assert_eq!(t.priority_id, Some(2));
    assert_eq!(t.company_identifier.as_deref(), Some("ACMECORP"));
    assert_eq!(t.external_xref.as_deref(), Some("case_01"));
    assert_eq!(t.record_type.as_deref(), Some("ServiceTicket"));
    assert!(!t.closed_flag);
    assert!(t.last_updated.is_some());
    assert_eq!(t.updated_by.as_deref(), Some("casebridge-api"));

    let got = c.get_ticket(t.id).await.unwrap().unwrap();
    assert_eq!(got.summary, t.summary);
    assert_eq!(
        c.find_ticket_by_external_ref("case_01")
            .await
            .unwrap()
            .map(|x| x.id),
        Some(t.id)
    );
    assert_eq!(c.find_ticket_by_external_ref("case_0").await.unwrap(), None);
    assert_eq!(c.get_ticket(t.id + 1000).await.unwrap(), None);

    // Explicit initial status.
    let mut nt = new_ticket("case_02");
    nt.status_id = Some(102);
    nt.board_id = 1;
    assert_eq!(c.create_ticket(&nt).await.unwrap().status_id, Some(102));

    let closed = c.set_ticket_status(t.id, 105).await.unwrap();
    assert_eq!(closed.status_id, Some(105));
    assert!(closed.closed_flag);
    let reopened = c.set_ticket_status(t.id, 102).await.unwrap();
    assert!(!reopened.closed_flag);
    // A status of another board is refused by ConnectWise.
    match c.set_ticket_status(t.id, 201).await {
        Err(e @ PsaError::Validation { .. }) => assert!(!e.is_retryable()),
        r => panic!("{r:?}"),
    }

    let n1 = c
        .add_note(
            t.id,
            &NewNote {
                text: "[SOC] host isolated\nsecond line".into(),
                discussion: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(n1.detail_description && !n1.internal_analysis);
    assert_eq!(n1.member.as_deref(), Some("casebridge-api"));
    let n2 = c
        .add_note(
            t.id,
            &NewNote {
                text: "internal only".into(),
                internal: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(n2.internal_analysis && !n2.detail_description);
    let notes = c.notes(t.id).await.unwrap();
    assert!(
        notes
            .iter()
            .any(|n| n.id == n1.id && n.text.starts_with("[SOC] host isolated"))
    );
    assert!(notes.iter().any(|n| n.id == n2.id));
    assert!(notes.iter().all(|n| n.date_created.is_some()));
    // A note with no section is refused before sending (pitfall 1).
    assert!(matches!(
        c.add_note(
            t.id,
            &NewNote {
                text: "x".into(),
                ..Default::default()
            }
        )
        .await,
        Err(PsaError::Validation { .. })
    ));
    // Notes of a missing ticket.
    assert!(matches!(
        c.notes(t.id + 1000).await,
        Err(PsaError::NotFound { .. })
    ));

    c.delete_ticket(t.id).await.unwrap();
    assert_eq!(c.get_ticket(t.id).await.unwrap(), None);
    c.delete_ticket(t.id).await.unwrap();
    h.shutdown().await;
}

#[tokio::test]
async fn notes_follow_all_pages() {
    let (h, keys) = sim().await;
    let c = client(&h, &keys.api_member);
    let t = c.create_ticket(&new_ticket("case_pages")).await.unwrap();
    let before = c.notes(t.id).await.unwrap().len();
    for i in 0..1001 {
        c.add_note(
            t.id,
            &NewNote {
                text: format!("note {i}"),
                internal: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    }
    let notes = c.notes(t.id).await.unwrap();
    assert_eq!(notes.len(), before + 1001);
    let mut ids: Vec<i64> = notes.iter().map(|n| n.id).collect();
    ids.dedup();
    assert_eq!(ids.len(), notes.len(), "no note twice");
    h.shutdown().await;
}

#[tokio::test]
async fn tickets_updated_since_chunks_long_id_lists() {
    let (h, keys) = sim().await;
    let c = client(&h, &keys.api_member);
    let mut real = Vec::new();
    for i in 0..3 {
        real.push(
            c.create_ticket(&new_ticket(&format!("case_u{i}")))
                .await
                .unwrap(),
        );
    }
    let mut ids: Vec<i64> = (0..700).map(|i| 3_500_000_000 + i).collect();
    ids.extend(real.iter().map(|t| t.id));
    let all = c.tickets_updated_since(&ids, None).await.unwrap();
    let mut got: Vec<i64> = all.iter().map(|t| t.id).collect();
    got.sort();
    assert_eq!(got, real.iter().map(|t| t.id).collect::<Vec<_>>());
    assert!(
        c.longest_url_sent() < 1900,
        "URL {} long",
        c.longest_url_sent()
    );
    assert!(c.longest_url_sent() > 1000, "chunks should be nearly full");

    let now = time::OffsetDateTime::now_utc();
    let past = c
        .tickets_updated_since(&ids, Some(now - time::Duration::hours(1)))
        .await
        .unwrap();
    assert_eq!(past.len(), 3);
    let future = c
        .tickets_updated_since(&ids, Some(now + time::Duration::hours(1)))
        .await
        .unwrap();
    assert!(future.is_empty());
    assert!(c.tickets_updated_since(&[], None).await.unwrap().is_empty());
    h.shutdown().await;
}

#[tokio::test]
async fn ensure_callback_reuses_and_reactivates() {
    let (h, keys) = sim().await;
    let c = client(&h, &keys.api_member);
    let url = "https://soc.example.com/hooks/connectwise/int_1?recordId=";
    let a = c.ensure_callback(url).await.unwrap();
    let b = c.ensure_callback(url).await.unwrap();
    assert_eq!(a.id, b.id);
    assert_eq!(
        (a.kind.as_str(), a.level.as_str(), a.object_id),
        ("ticket", "owner", 1)
    );
    assert!(!a.inactive);
    let same_url: Vec<_> = c
        .callbacks()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url == url)
        .collect();
    assert_eq!(same_url.len(), 1);

    // Another integration's URL gets its own registration.
    let other = c
        .ensure_callback("https://soc.example.com/hooks/connectwise/int_2?recordId=")
        .await
        .unwrap();
    assert_ne!(other.id, a.id);

    // ConnectWise disabled it: ensure re-activates the same registration.
    let k = &keys.api_member;
    let r = reqwest::Client::new()
        .patch(format!(
            "{}/system/callbacks/{}",
            c.api_base().await.unwrap(),
            a.id
        ))
        .basic_auth(
            format!("{}+{}", k.company, k.public_key),
            Some(&k.private_key),
        )
        .header("clientId", &k.client_id)
        .json(&json!([{"op": "replace", "path": "inactiveFlag", "value": true}]))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert!(
        c.callbacks()
            .await
            .unwrap()
            .iter()
            .any(|r| r.id == a.id && r.inactive)
    );
    let again = c.ensure_callback(url).await.unwrap();
    assert_eq!(again.id, a.id);
    assert!(!again.inactive);
    assert_eq!(c.callbacks().await.unwrap().len(), 2);

    assert!(matches!(
        c.ensure_callback("soc.example.com/hook").await,
        Err(PsaError::Validation { .. })
    ));
    h.shutdown().await;
}

#[tokio::test]
async fn test_connection_reports_each_check() {
    let (h, keys) = sim().await;
    let ok = client(&h, &keys.api_member).test_connection().await;
    let names: Vec<&str> = ok.checks.iter().map(|c| c.name).collect();
    assert_eq!(names, TEST_CHECKS.to_vec());
    assert!(ok.passed(), "{ok:#?}");

    let mut bad = keys.api_member.clone();
    bad.private_key = "wrong-private-key".into();
    let r = client(&h, &bad).test_connection().await;
    assert!(!r.passed());
    let status: Vec<(&str, bool)> = r.checks.iter().map(|c| (c.name, c.ok)).collect();
    assert_eq!(
        status,
        vec![
            ("reachable", true),
            ("codebase", true),
            ("auth", false),
            ("read_boards", false),
            ("read_priorities", false),
            ("read_companies", false),
            ("callbacks", false),
        ]
    );
    let auth = r.check("auth").unwrap();
    assert!(auth.message.contains("401"), "{}", auth.message);
    assert!(!auth.message.contains("wrong-private-key"));

    let r = client(&h, &keys.restricted).test_connection().await;
    let status: Vec<(&str, bool)> = r.checks.iter().map(|c| (c.name, c.ok)).collect();
    assert_eq!(
        status,
        vec![
            ("reachable", true),
            ("codebase", true),
            ("auth", true),
            ("read_boards", true),
            ("read_priorities", true),
            ("read_companies", false),
            ("callbacks", false),
        ]
    );
    assert!(r.check("read_companies").unwrap().message.contains("403"));

    let mut cfg = config(h.url(), &keys.api_member);
    cfg.company_id = "nosuchcompany".into();
    let r = ConnectWiseClient::new(cfg).unwrap().test_connection().await;
    assert!(r.check("reachable").unwrap().ok);
    let cb = r.check("codebase").unwrap();
    assert!(
        !cb.ok && cb.message.contains("nosuchcompany"),
        "{}",
        cb.message
    );
    assert_eq!(r.checks.len(), 7);

    // Nothing was created or changed.
    let st = sim_state(&h).await;
    assert_eq!(st["tickets"].as_array().unwrap().len(), 0);
    assert_eq!(st["callbacks"].as_array().unwrap().len(), 0);
    h.shutdown().await;
}

#[tokio::test]
async fn auth_and_permission_errors() {
    let (h, keys) = sim().await;
    let mut bad = keys.api_member.clone();
    bad.public_key = "nope".into();
    let e = client(&h, &bad).boards().await.unwrap_err();
    assert_eq!(e, PsaError::BadCredentials);
    assert!(!e.is_retryable());
    assert!(!e.to_string().contains(&bad.private_key));

    let r = client(&h, &keys.restricted);
    match r.create_ticket(&new_ticket("case_r")).await {
        Err(PsaError::PermissionDenied { message }) => assert!(!message.is_empty()),
        x => panic!("{x:?}"),
    }
    assert!(matches!(
        r.company_by_identifier("ACMECORP").await,
        Err(PsaError::PermissionDenied { .. })
    ));
    // Reading is allowed.
    assert_eq!(r.boards().await.unwrap().len(), 3);
    h.shutdown().await;
}

#[tokio::test]
async fn validation_errors() {
    let (h, keys) = sim().await;
    let c = client(&h, &keys.api_member);
    // Summary of 101: refused before sending, never silently cut.
    let mut t = new_ticket("case_v");
    t.summary = "x".repeat(101);
    match c.create_ticket(&t).await {
        Err(PsaError::Validation { field, .. }) => assert_eq!(field.as_deref(), Some("summary")),
        r => panic!("{r:?}"),
    }
    t.summary = "😀".repeat(50); // exactly 100 UTF-16 units
    let ok = c.create_ticket(&t).await.unwrap();
    assert_eq!(ok.summary, t.summary);
    // ConnectWise's own refusals carry the field.
    let mut t = new_ticket("case_v2");
    t.company_identifier = "OLDCO".into();
    match c.create_ticket(&t).await {
        Err(PsaError::Validation { field, message }) => {
            assert_eq!(field.as_deref(), Some("company"), "{message}");
        }
        r => panic!("{r:?}"),
    }
    t.company_identifier = "NOSUCH".into();
    assert!(matches!(
        c.create_ticket(&t).await,
        Err(PsaError::Validation { .. })
    ));
    let st = sim_state(&h).await;
    assert_eq!(st["tickets"].as_array().unwrap().len(), 1);
    h.shutdown().await;
}

#[tokio::test]
async fn rate_limits_with_and_without_retry_after() {
    let (h, keys) = sim().await;
    let c = client(&h, &keys.api_member);
    c.api_base().await.unwrap();
    put_faults(
        &h,
        json!({"rate_limit_429": {"every_n": 1, "retry_after_secs": 7}}),
    )
    .await;
    let e = c.boards().await.unwrap_err();
    assert_eq!(
        e,
        PsaError::RateLimited {
            retry_after: Some(Duration::from_secs(7))
        }
    );
    assert!(e.is_retryable());
    assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
    put_faults(
        &h,
        json!({"rate_limit_429": {"every_n": 1, "retry_after_secs": null}}),
    )
    .await;
    assert_eq!(
        c.boards().await.unwrap_err(),
        PsaError::RateLimited { retry_after: None }
    );
    put_faults(&h, json!({})).await;
    assert_eq!(c.boards().await.unwrap().len(), 3);
    h.shutdown().await;
}

#[tokio::test]
async fn server_errors_are_transient() {
    let (h, keys) = sim().await;
    let c = client(&h, &keys.api_member);
    put_faults(&h, json!({"error_rate": 1.0})).await;
    let e = c.priorities().await.unwrap_err();
    assert!(
        matches!(
            e,
            PsaError::Transient {
                status: Some(500),
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.is_retryable());
    assert_eq!(e.status_code(), Some(500));

    // Applied, then answered with a 500: the outcome is unknown and a lookup finds it.
    put_faults(
        &h,
        json!({"apply_then_fail": {"mode": "500", "count": 1, "method": "POST", "path_prefix": "/service/tickets"}}),
    )
    .await;
    let e = c.create_ticket(&new_ticket("case_500")).await.unwrap_err();
    assert!(e.outcome_unknown(), "{e:?}");
    assert!(
        c.find_ticket_by_external_ref("case_500")
            .await
            .unwrap()
            .is_some()
    );
    h.shutdown().await;
}

#[tokio::test]
async fn slow_write_times_out_with_unknown_outcome() {
    let (h, keys) = sim().await;
    let mut cfg = config(h.url(), &keys.api_member);
    cfg.timeout = Duration::from_millis(150);
    let c = ConnectWiseClient::new(cfg).unwrap();
    c.api_base().await.unwrap();
    // 60 s × time_scale 0.01 = 600 ms, past the 150 ms timeout.
    put_faults(
        &h,
        json!({"apply_then_fail": {"mode": "delay", "delay_ms": 60000, "count": 1, "method": "POST", "path_prefix": "/service/tickets"}}),
    )
    .await;
    let e = c.create_ticket(&new_ticket("case_slow")).await.unwrap_err();
    assert_eq!(e, PsaError::Timeout);
    assert!(e.outcome_unknown() && e.is_retryable());
    let found = c.find_ticket_by_external_ref("case_slow").await.unwrap();
    assert!(found.is_some(), "the write was applied");
    h.shutdown().await;
}

#[tokio::test]
async fn stale_codebase_is_refreshed_once() {
    let (h, keys) = sim().await;
    let c = client(&h, &keys.api_member);
    c.override_codebase("v2019_3/").await;
    assert_eq!(c.boards().await.unwrap().len(), 3);
    assert_eq!(
        c.api_base().await.unwrap(),
        format!("{}/v2025_1/apis/3.0", h.url())
    );

    let mut cfg = config(h.url(), &keys.api_member);
    cfg.company_id = "nosuchcompany".into();
    let e = ConnectWiseClient::new(cfg)
        .unwrap()
        .boards()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "config");
    assert!(e.to_string().contains("nosuchcompany"), "{e}");
    h.shutdown().await;
}

/// A canned HTTP server: answers every request by `respond(method, path)`; returns its URL.
async fn canned<F>(respond: F) -> String
where
    F: Fn(&str, &str) -> String + Send + Sync + 'static,
{
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let respond = std::sync::Arc::new(respond);
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let respond = respond.clone();
            tokio::spawn(async move {
                let req = read_request(&mut s).await;
                let (method, path) = request_line(&req.0);
                let resp = respond(&method, &path);
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    url
}

fn http(status: &str, content_type: &str, extra: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
        body.len()
    )
}

/// Reads one HTTP/1.1 request: (head, body).
async fn read_request(s: &mut tokio::net::TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..pos]).to_string();
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            let mut body = buf[pos + 4..].to_vec();
            while body.len() < len {
                let n = s.read(&mut tmp).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&tmp[..n]);
            }
            return (head, body);
        }
        let n = s.read(&mut tmp).await.unwrap_or(0);
        if n == 0 {
            return (String::from_utf8_lossy(&buf).to_string(), Vec::new());
        }
        buf.extend_from_slice(&tmp[..n]);
    }
}

fn request_line(head: &str) -> (String, String) {
    let mut it = head.lines().next().unwrap_or("").split_whitespace();
    (
        it.next().unwrap_or("").to_owned(),
        it.next().unwrap_or("").to_owned(),
    )
}

fn canned_config(url: &str) -> ConnectWiseConfig {
    let mut c = ConnectWiseConfig::new(url, "cbdemo", "pub", "priv", "client");
    c.allow_private_hosts = true;
    c.timeout = Duration::from_secs(5);
    c
}

#[tokio::test]
async fn plain_text_and_odd_answers_are_clear_errors() {
    let url = canned(|_m, path| {
        if path.starts_with("/login/companyinfo/") {
            http(
                "200 OK",
                "application/json",
                "",
                r#"{"Codebase":"v2025_1/","CompanyName":"X"}"#,
            )
        } else if path.contains("/service/boards") {
            http(
                "404 Not Found",
                "text/plain",
                "",
                "Cannot route. Codebase/company is invalid",
            )
        } else if path.contains("/service/priorities") {
            http("200 OK", "text/html", "", "<html>maintenance</html>")
        } else if path.contains("/company/companies") {
            http(
                "302 Found",
                "text/plain",
                "Location: https://u:p@elsewhere.example/login?x=1\r\n",
                "",
            )
        } else if path.contains("/system/callbacks") {
            http(
                "500 Internal Server Error",
                "text/plain",
                "",
                "Object reference not set",
            )
        } else {
            http("200 OK", "application/json", "", "null")
        }
    })
    .await;
    let c = ConnectWiseClient::new(canned_config(&url)).unwrap();
    let e = c.boards().await.unwrap_err();
    assert_eq!(e.kind(), "config", "{e:?}");
    assert!(e.to_string().contains("company id or the codebase"), "{e}");
    let e = c.priorities().await.unwrap_err();
    assert!(
        matches!(e, PsaError::UnexpectedResponse { status: 200, ref excerpt } if excerpt.contains("maintenance")),
        "{e:?}"
    );
    let e = c.company_by_identifier("X").await.unwrap_err();
    assert_eq!(e.kind(), "config");
    assert!(
        e.to_string().contains("https://elsewhere.example/login"),
        "{e}"
    );
    assert!(!e.to_string().contains("u:p"), "{e}");
    let e = c.callbacks().await.unwrap_err();
    assert!(
        matches!(
            e,
            PsaError::Transient {
                status: Some(500),
                ..
            }
        ),
        "{e:?}"
    );
    // `null` where a ticket was expected.
    assert_eq!(
        c.get_ticket(1).await.unwrap_err().kind(),
        "unexpected_response"
    );

    // companyinfo itself in plain text / null.
    let url = canned(|_m, _p| {
        http(
            "200 OK",
            "text/plain",
            "",
            "Cannot route. Codebase/company is invalid",
        )
    });
    let e = ConnectWiseClient::new(canned_config(&url.await))
        .unwrap()
        .boards()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "config");
    let url = canned(|_m, _p| http("200 OK", "application/json", "", "null")).await;
    let r = ConnectWiseClient::new(canned_config(&url))
        .unwrap()
        .test_connection()
        .await;
    assert!(r.check("reachable").unwrap().ok);
    assert!(!r.check("codebase").unwrap().ok);
    assert!(
        r.check("codebase")
            .unwrap()
            .message
            .contains("does not know the login company id")
    );
}

#[tokio::test]
async fn every_request_carries_auth_client_id_and_version() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let seen2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let (head, _) = read_request(&mut s).await;
            seen2.lock().unwrap().push(head.clone());
            let (_, path) = request_line(&head);
            let resp = if path.starts_with("/login/") {
                http(
                    "200 OK",
                    "application/json",
                    "",
                    r#"{"Codebase":"v4_6_release/"}"#,
                )
            } else {
                http("200 OK", "application/json", "", "[]")
            };
            let _ = s.write_all(resp.as_bytes()).await;
            let _ = s.shutdown().await;
        }
    });
    let c = ConnectWiseClient::new(canned_config(&url)).unwrap();
    assert!(
        c.company_by_identifier("SMITH & SONS+[1]")
            .await
            .unwrap()
            .is_none()
    );
    let heads = seen.lock().unwrap().clone();
    assert_eq!(heads.len(), 2);
    let api = heads[1].to_ascii_lowercase();
    assert!(heads[1].starts_with(
        "GET /v4_6_release/apis/3.0/company/companies?conditions=identifier%20%3D%20%22SMITH%20%26%20SONS%2B%5B%5B%5D1%5D%22&orderBy=id%20asc&pageSize=1000 "
    ), "{}", heads[1]);
    // base64("cbdemo+pub:priv")
    assert!(
        api.contains("authorization: basic y2jkzw1vk3b1yjpwcml2"),
        "{api}"
    );
    assert!(api.contains("clientid: client"));
    assert!(api.contains("accept: application/vnd.connectwise.com+json; version=2025.1"));
    // companyinfo goes without credentials.
    assert!(!heads[0].to_ascii_lowercase().contains("authorization"));
}

#[tokio::test]
async fn unreachable_site() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    let c = ConnectWiseClient::new(canned_config(&url)).unwrap();
    let e = c.boards().await.unwrap_err();
    assert_eq!(e.kind(), "unreachable", "{e:?}");
    assert!(!e.outcome_unknown());
    let r = c.test_connection().await;
    assert!(!r.check("reachable").unwrap().ok);
    assert_eq!(r.checks.len(), 7);
    assert!(r.checks[1..].iter().all(|c| !c.ok));
}

#[tokio::test]
async fn callback_signature_verifies_against_cw_sim() {
    let (h, keys) = sim().await;
    let c = client(&h, &keys.api_member);
    // A receiver that records the first delivery.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hooks/cw?recordId=", l.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<(String, Vec<u8>)>();
    tokio::spawn(async move {
        let mut tx = Some(tx);
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let req = read_request(&mut s).await;
            let _ = s
                .write_all(http("204 No Content", "text/plain", "", "").as_bytes())
                .await;
            let _ = s.shutdown().await;
            if let Some(tx) = tx.take() {
                let _ = tx.send(req);
            }
        }
    });
    c.ensure_callback(&hook).await.unwrap();
    c.create_ticket(&new_ticket("case_cb")).await.unwrap();
    let (head, body) = tokio::time::timeout(Duration::from_secs(20), rx)
        .await
        .expect("a callback arrives")
        .unwrap();
    let sig = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("x-content-signature")
                .then(|| v.trim().to_owned())
        })
        .expect("signature header");
    let payload: Value = serde_json::from_slice(&body).unwrap();
    let key_url = payload["Metadata"]["key_url"].as_str().unwrap().to_owned();

    let fetcher =
        SigningKeyFetcher::new(&keys.api_member.client_id, Duration::from_secs(5), true).unwrap();
    // Not allowed without allow_private_hosts, nor for another site.
    assert!(fetcher.signing_key(&key_url, h.url(), false).await.is_err());
    assert!(
        fetcher
            .signing_key(&key_url, "http://127.0.0.1:1", true)
            .await
            .is_err()
    );
    let key = fetcher.signing_key(&key_url, h.url(), true).await.unwrap();
    assert!(verify_callback_signature(&key, &body, &sig));
    assert!(!verify_callback_signature(&key, b"{}", &sig));
    assert_eq!(fetcher.cached(&key_url).as_deref(), Some(key.as_str()));
    // An unknown key id is a fetch error, not a panic.
    let bad = key_url.replace("id=", "id=x");
    assert!(fetcher.signing_key(&bad, h.url(), true).await.is_err());
    h.shutdown().await;
}

#[tokio::test]
async fn object_exists_is_resolved_by_lookup() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let lists = std::sync::Arc::new(AtomicUsize::new(0));
    let lists2 = lists.clone();
    let hook = "https://soc.example.com/hook?recordId=";
    let url = canned(move |method, path| {
        if path.starts_with("/login/") {
            http("200 OK", "application/json", "", r#"{"Codebase":"v2025_1/"}"#)
        } else if method == "GET" && path.contains("/system/callbacks") {
            // First listing misses it (created concurrently); the second shows it, inactive.
            if lists2.fetch_add(1, Ordering::SeqCst) == 0 {
                http("200 OK", "application/json", "", "[]")
            } else {
                http(
                    "200 OK",
                    "application/json",
                    "",
                    &json!([{"id": 77, "url": hook, "type": "ticket", "level": "owner", "objectId": 1, "inactiveFlag": true}]).to_string(),
                )
            }
        } else if method == "POST" && path.contains("/system/callbacks") {
            http(
                "400 Bad Request",
                "application/json",
                "",
                r#"{"code":"InvalidObject","message":"callbackEntry object is invalid","errors":[{"code":"ObjectExists","message":"A matching callback entry already exists","resource":"callbackEntry","field":"objectId"}]}"#,
            )
        } else if method == "PATCH" && path.contains("/system/callbacks/77") {
            http(
                "200 OK",
                "application/json",
                "",
                &json!({"id": 77, "url": hook, "type": "ticket", "level": "owner", "objectId": 1, "inactiveFlag": false}).to_string(),
            )
        } else {
            http("404 Not Found", "text/plain", "", "Cannot route. Codebase/company is invalid")
        }
    })
    .await;
    let c = ConnectWiseClient::new(canned_config(&url)).unwrap();
    let r = c.ensure_callback(hook).await.unwrap();
    assert_eq!((r.id, r.inactive), (77, false));
    assert_eq!(lists.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn paging_never_follows_links_to_another_host() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let foreign_hits = std::sync::Arc::new(AtomicUsize::new(0));
    let fh = foreign_hits.clone();
    let foreign = canned(move |_m, _p| {
        fh.fetch_add(1, Ordering::SeqCst);
        http("200 OK", "application/json", "", "[]")
    })
    .await;
    let full_page: Vec<Value> = (1..=1000)
        .map(|i| json!({"id": i, "name": format!("b{i}")}))
        .collect();
    let full_page = Value::Array(full_page).to_string();
    let url = canned(move |_m, path| {
        if path.starts_with("/login/") {
            http(
                "200 OK",
                "application/json",
                "",
                r#"{"Codebase":"v2025_1/"}"#,
            )
        } else if path.contains("page=2") {
            http(
                "200 OK",
                "application/json",
                "",
                r#"[{"id": 1001, "name": "last", "inactiveFlag": true}]"#,
            )
        } else {
            let link = format!(
                "Link: <{foreign}/v2025_1/apis/3.0/service/boards?page=2>; rel=\"next\"\r\n"
            );
            http("200 OK", "application/json", &link, &full_page)
        }
    })
    .await;
    let c = ConnectWiseClient::new(canned_config(&url)).unwrap();
    let boards = c.boards().await.unwrap();
    assert_eq!(boards.len(), 1001);
    assert!(boards[1000].inactive);
    assert_eq!(
        foreign_hits.load(Ordering::SeqCst),
        0,
        "credentials never go to another host"
    );
}
