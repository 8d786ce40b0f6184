//! Error shapes that every endpoint shares: problem+json for an over-limit body, unknown routes
//! and missing tokens.

use std::sync::Arc;
use std::time::Duration;

use casebridge_domain::{AccountKind, Role};
use casebridge_sync::{ConnectWiseFactory, SecretBox, SyncConfig, SyncContext};
use casebridge_web::{AppState, WebConfig};

async fn serve(max_body_bytes: usize) -> anyhow::Result<(String, String)> {
    casebridge_connector::install_crypto_provider();
    let path = std::env::temp_dir().join(format!("cb-web-errors-{}.db", uuid_like()));
    let store = casebridge_store::open(&format!("sqlite://{}", path.display()), true).await?;
    let account = store
        .create_account("Solo", AccountKind::Standalone, None)
        .await?;
    let token = casebridge_web::auth::new_token();
    store
        .create_token(
            &account.id,
            Role::Admin,
            &casebridge_web::auth::hash_token(&token),
            "t",
        )
        .await?;
    let secrets = SecretBox::new("k", [3; 32]);
    let factory = Arc::new(ConnectWiseFactory::new(
        secrets.clone(),
        Duration::from_secs(2),
    ));
    let sync = SyncContext::new(store.clone(), factory, SyncConfig::default());
    let state = Arc::new(AppState {
        store,
        sync,
        secrets,
        config: WebConfig {
            max_body_bytes,
            ..Default::default()
        },
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, casebridge_web::router(state)).await });
    Ok((url, token))
}

fn uuid_like() -> String {
    format!(
        "{:x}{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

#[tokio::test]
async fn an_over_limit_body_answers_413_problem_json_on_every_endpoint() -> anyhow::Result<()> {
    let (url, token) = serve(1024).await?;
    let client = reqwest::Client::new();
    let big = format!(
        "{{\"account_id\": \"x\", \"rule_id\": \"r\", \"title\": \"{}\", \"criticality\": \"high\"}}",
        "x".repeat(4096)
    );
    let res = client
        .post(format!("{url}/api/v1/cases"))
        .bearer_auth(&token)
        .body(big)
        .send()
        .await?;
    assert_eq!(res.status(), 413);
    let ct = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or_default().to_string())
        .unwrap_or_default();
    assert!(
        ct.starts_with("application/problem+json"),
        "content-type {ct}"
    );
    let body: serde_json::Value = res.json().await?;
    assert_eq!(body["status"], 413);
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("1024 bytes"),
        "{body}"
    );
    Ok(())
}

#[tokio::test]
async fn a_missing_token_and_an_unknown_route_answer_problem_json() -> anyhow::Result<()> {
    let (url, token) = serve(1024 * 1024).await?;
    let client = reqwest::Client::new();
    let res = client.get(format!("{url}/api/v1/cases")).send().await?;
    assert_eq!(res.status(), 401);
    let body: serde_json::Value = res.json().await?;
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("Bearer"),
        "{body}"
    );
    let res = client
        .get(format!("{url}/api/v1/nothing-here"))
        .bearer_auth(&token)
        .send()
        .await?;
    assert_eq!(res.status(), 404);
    let body: serde_json::Value = res.json().await?;
    assert_eq!(body["status"], 404);
    Ok(())
}
