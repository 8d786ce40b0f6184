#![allow(dead_code)]
use base64::Engine;
use cw_sim::{MemberKeys, Seed, SimHandle, SimOptions};
use reqwest::Method;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub async fn demo() -> (SimHandle, cw_sim::DemoKeys) {
    let h = cw_sim::start(SimOptions {
        seed: Seed::Demo,
        time_scale: 0.01,
        ..Default::default()
    })
    .await
    .expect("start");
    let k = h.demo_keys().cloned().expect("keys");
    (h, k)
}

pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

pub struct Resp {
    pub status: u16,
    pub json: Value,
    pub text: String,
    pub headers: reqwest::header::HeaderMap,
}

impl Resp {
    pub fn header(&self, k: &str) -> Option<String> {
        self.headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    }
}

pub async fn raw(
    c: &reqwest::Client,
    method: Method,
    url: &str,
    headers: &[(&str, String)],
    body: Option<Value>,
) -> Resp {
    let mut rb = c.request(method, url);
    for (k, v) in headers {
        rb = rb.header(*k, v);
    }
    if let Some(b) = body {
        rb = rb
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let r = rb.send().await.expect("send");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Resp {
        status,
        json,
        text,
        headers,
    }
}

#[derive(Clone)]
pub struct Cw {
    pub base: String,
    pub keys: MemberKeys,
    pub c: reqwest::Client,
}

pub fn basic(k: &MemberKeys) -> String {
    let cred = format!("{}+{}:{}", k.company, k.public_key, k.private_key);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(cred)
    )
}

impl Cw {
    pub fn new(h: &SimHandle, keys: &MemberKeys) -> Self {
        Cw {
            base: format!("{}/v4_6_release/apis/3.0", h.url()),
            keys: keys.clone(),
            c: client(),
        }
    }
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        vec![
            ("Authorization", basic(&self.keys)),
            ("clientId", self.keys.client_id.clone()),
        ]
    }
    pub async fn req(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        raw(
            &self.c,
            method,
            &format!("{}{}", self.base, path),
            &self.headers(),
            body,
        )
        .await
    }
    pub async fn req_h(
        &self,
        method: Method,
        path: &str,
        extra: &[(&'static str, String)],
        body: Option<Value>,
    ) -> Resp {
        let mut h = self.headers();
        h.extend(extra.iter().cloned());
        raw(&self.c, method, &format!("{}{}", self.base, path), &h, body).await
    }
    pub async fn get(&self, path: &str) -> Resp {
        self.req(Method::GET, path, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.req(Method::POST, path, Some(body)).await
    }
    pub async fn patch(&self, path: &str, body: Value) -> Resp {
        self.req(Method::PATCH, path, Some(body)).await
    }
    pub async fn delete(&self, path: &str) -> Resp {
        self.req(Method::DELETE, path, None).await
    }
    pub async fn ticket(&self, summary: &str) -> Value {
        let r = self.post("/service/tickets", json!({"summary": summary, "board": {"id": 1}, "company": {"identifier": "ACMECORP"}})).await;
        assert_eq!(r.status, 201, "{}", r.text);
        r.json
    }
}

pub fn q(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// One received callback: (path and query, headers, body).
pub type Received = (String, reqwest::header::HeaderMap, Vec<u8>);

/// A callback receiver: records (path, headers, body) and answers statuses from a script (then 200).
#[derive(Clone, Default)]
pub struct Hook {
    pub got: Arc<Mutex<Vec<Received>>>,
    pub script: Arc<Mutex<Vec<u16>>>,
    pub always: Arc<Mutex<Option<u16>>>,
    pub url: String,
}

pub async fn hook() -> Hook {
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode, Uri};
    let mut h = Hook::default();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    h.url = format!("http://{}", l.local_addr().unwrap());
    let st = h.clone();
    async fn handle(
        State(h): State<Hook>,
        uri: Uri,
        headers: HeaderMap,
        body: axum::body::Bytes,
    ) -> StatusCode {
        let mut hm = reqwest::header::HeaderMap::new();
        for (k, v) in headers.iter() {
            hm.insert(
                reqwest::header::HeaderName::from_bytes(k.as_str().as_bytes()).unwrap(),
                reqwest::header::HeaderValue::from_bytes(v.as_bytes()).unwrap(),
            );
        }
        h.got
            .lock()
            .unwrap()
            .push((uri.to_string(), hm, body.to_vec()));
        let code = {
            let mut s = h.script.lock().unwrap();
            if s.is_empty() {
                h.always.lock().unwrap().unwrap_or(200)
            } else {
                s.remove(0)
            }
        };
        StatusCode::from_u16(code).unwrap()
    }
    let app = axum::Router::new().fallback(handle).with_state(st);
    tokio::spawn(async move {
        axum::serve(l, app).await.unwrap();
    });
    h
}

impl Hook {
    pub fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }
    pub fn bodies(&self) -> Vec<Value> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|(_, _, b)| serde_json::from_slice(b).unwrap())
            .collect()
    }
    pub async fn wait(&self, n: usize, secs: f64) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs_f64(secs);
        while std::time::Instant::now() < deadline {
            if self.count() >= n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.count() >= n
    }
}

pub async fn put_faults(h: &SimHandle, v: Value) -> Value {
    let r = raw(
        &client(),
        Method::PUT,
        &format!("{}/__sim/faults", h.url()),
        &[],
        Some(v),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json
}

pub async fn sim_state(h: &SimHandle) -> Value {
    raw(
        &client(),
        Method::GET,
        &format!("{}/__sim/state", h.url()),
        &[],
        None,
    )
    .await
    .json
}

pub async fn register(api: &Cw, url: &str, extra: Value) -> Value {
    let mut b = json!({"url": url, "objectId": 1, "type": "ticket", "level": "owner", "description": "test"});
    if let (Some(o), Some(e)) = (b.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            o.insert(k.clone(), v.clone());
        }
    }
    let r = api.post("/system/callbacks", b).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.json
}
