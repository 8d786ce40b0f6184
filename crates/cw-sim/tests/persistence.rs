mod common;
use common::*;
use cw_sim::{Seed, SimOptions};
use serde_json::json;

#[tokio::test]
async fn state_survives_restart() {
    let dir = std::env::temp_dir().join(format!("cw-sim-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let opts = || SimOptions {
        seed: Seed::Demo,
        state_dir: Some(dir.clone()),
        time_scale: 0.01,
        ..Default::default()
    };
    let h = cw_sim::start(opts()).await.unwrap();
    let keys = h.demo_keys().cloned().expect("fresh seed returns keys");
    let api = Cw::new(&h, &keys.api_member);
    let t = api.ticket("persist me").await;
    let id = t["id"].as_u64().unwrap();
    api.post(
        &format!("/service/tickets/{id}/notes"),
        json!({"text": "kept", "internalAnalysisFlag": true}),
    )
    .await;
    register(&api, "https://example.com/cb?id=", json!({})).await;
    h.shutdown().await;

    let file = std::fs::read_to_string(dir.join("cw-sim-state.json")).unwrap();
    assert!(file.contains("persist me"));
    assert!(
        !file.contains(&keys.api_member.private_key),
        "plain private key persisted"
    );
    assert!(
        !file.contains(&keys.technician.public_key),
        "plain public key persisted"
    );

    let h2 = cw_sim::start(opts()).await.unwrap();
    assert!(h2.demo_keys().is_none());
    assert_eq!(h2.login_company(), "cbdemo");
    let api2 = Cw::new(&h2, &keys.api_member);
    let r = api2.get(&format!("/service/tickets/{id}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["summary"], "persist me");
    assert_eq!(
        api2.get(&format!("/service/tickets/{id}/notes")).await.json[0]["text"],
        "kept"
    );
    assert_eq!(
        api2.get("/system/callbacks")
            .await
            .json
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // id counter continues
    let t2 = api2.ticket("next").await;
    assert_eq!(t2["id"].as_u64(), Some(id + 1));
    // technician keys still work
    assert_eq!(
        Cw::new(&h2, &keys.technician)
            .get("/service/boards")
            .await
            .status,
        200
    );
    // debounced flush while running: a new ticket lands in the file without shutdown
    let mut found = false;
    for _ in 0..100 {
        if std::fs::read_to_string(dir.join("cw-sim-state.json"))
            .unwrap()
            .contains("\"next\"")
        {
            found = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(found, "state not flushed while running");
    h2.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
