//! What the relay writes to its log: JSON when asked, one line per webhook at debug, and never
//! a key or a secret, whatever the level.

use gymrelay::simulate::Fault;
use serde_json::Value;

use crate::helpers::*;

#[actix_rt::test]
async fn debug_json_logs_carry_one_line_per_webhook_and_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let sink_secret = "whsec_c2VjcmV0LXNpbmstc2VjcmV0LWZvci10ZXN0";
    let studios = [
        Studio::new("berlin").with(&format!(
            "[[sinks]]\ntype = \"http\"\nurl = \"http://127.0.0.1:9/unreachable\"\nsecret = \"{sink_secret}\"\n"
        )),
        Studio::new("hamburg"),
    ];
    let sim = start_sim(&studios).await;
    write_tenants(dir.path(), &studios, &sim);
    // Hamburg's Open API rejects its key, so the rejection path logs too.
    sim.set_fault("hamburg", Fault::Status(401));

    let mut relay = RelayProcess::start(dir.path(), "").await;
    let client = awc::Client::default();
    let uuid = unique("logged");
    for studio in ["berlin", "hamburg"] {
        assert_eq!(notify_at(&client, &relay.url, studio, &uuid, 3).await, 200);
    }
    post_with(&client, &relay.url, Some("wrong-key-guess"), b"{}".to_vec()).await;
    eventually("the rejection and the sink failure to be logged", || {
        let log = relay.read_log();
        let logged = |needle: &str| log.iter().any(|l| l.contains(needle));
        let both = logged("rejected the studio's key") && logged("sink delivery failed");
        async move { both.then_some(()) }
    })
    .await;
    let log = relay.kill();

    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    assert!(lines.len() > 10, "{log}");
    // One line per webhook: berlin's, hamburg's and the one with a wrong key.
    let webhooks: Vec<&Value> = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "webhook")
        .collect();
    let seen: Vec<(&str, &str)> = webhooks
        .iter()
        .map(|l| {
            (
                l["fields"]["studio"].as_str().unwrap_or_default(),
                l["fields"]["outcome"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("berlin", "accepted"),
            ("hamburg", "accepted"),
            ("unknown", "unauthorized")
        ],
        "{log}"
    );
    let webhook = webhooks[0];
    assert_eq!(webhook["fields"]["uuid"], uuid.as_str());
    assert_eq!(webhook["fields"]["type"], "CUSTOMER_UPDATED");
    assert_eq!(webhook["fields"]["outcome"], "accepted");
    assert!(webhook["fields"]["latency_ms"].as_f64().is_some());
    for secret in [
        webhook_key("berlin"),
        webhook_key("hamburg"),
        open_api_key("berlin"),
        open_api_key("hamburg"),
        sink_secret.to_string(),
        "c2VjcmV0LXNpbmstc2VjcmV0LWZvci10ZXN0".to_string(),
        ADMIN_TOKEN.to_string(),
        "wrong-key-guess".to_string(),
    ] {
        assert!(!log.contains(&secret), "a secret reached the log");
    }
    sim.stop().await;
}
