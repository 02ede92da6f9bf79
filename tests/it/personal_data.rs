//! Members' personal data: fields a studio omits never reach a sink, a dead letter, a log line
//! or an API answer, and `check` shows what a sink would receive.

use std::process::Command;

use serde_json::Value;

use crate::helpers::*;

/// The simulated Open API's own answer for a customer, read as the relay would read it.
async fn customer_from_the_vendor(sim_base: &str, studio: &str, id: i64) -> Value {
    let mut answer = awc::Client::default()
        .get(format!("{sim_base}/v1/customers/{id}"))
        .insert_header(("x-api-key", open_api_key(studio)))
        .send()
        .await
        .expect("the simulated Open API answers");
    answer.json().await.expect("a customer")
}

#[actix_rt::test]
async fn omitted_fields_reach_no_sink_dead_letter_log_line_or_api_answer() {
    let omit = "[entity.customer]\nomit = [\"dateOfBirth\", \"/email\"]\n";
    // A second sink that always fails, so the event also ends as a dead letter.
    let failing = "[[sinks]]\ntype = \"command\"\nargv = [\"false\"]\n";
    let studios = [Studio::new("berlin").with(&format!("{omit}{failing}"))];
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim(&studios).await;
    write_tenants(dir.path(), &studios, &sim);
    let relay = RelayProcess::start(dir.path(), "[delivery]\ndead_letter_after = \"1s\"\n").await;
    let customer = customer_from_the_vendor(&sim.base_url("berlin"), "berlin", 12).await;
    let secrets = [
        customer["email"].as_str().expect("customers have an email"),
        customer["dateOfBirth"]
            .as_str()
            .expect("and a date of birth"),
    ];

    let client = awc::Client::default();
    let uuid = unique("pd");
    let body = notification(&uuid, "CUSTOMER_UPDATED", 12, None).to_string();
    let (status, _) = post_with(
        &client,
        &relay.url,
        Some(&webhook_key("berlin")),
        body.into_bytes(),
    )
    .await;
    assert_eq!(status, 200);
    let letters = eventually("the event to be a dead letter", || async {
        let letters = relay.admin("/api/dead-letters").await;
        letters.contains(&uuid).then_some(letters)
    })
    .await;
    let delivered = read_ndjson(&dir.path().join("out/berlin.ndjson"));
    assert_eq!(delivered[0]["id"], uuid.as_str());
    let entity = &delivered[0]["entity"];
    assert_eq!(entity["id"], 12, "the rest of the record is there");
    assert_eq!(entity["firstName"], customer["firstName"]);
    assert!(entity.get("email").is_none() && entity.get("dateOfBirth").is_none());

    let mut seen = vec![
        std::fs::read_to_string(dir.path().join("out/berlin.ndjson")).unwrap(),
        letters,
    ];
    for path in ["/api/studios", "/api/activity"] {
        seen.push(relay.admin(path).await);
    }
    seen.push(relay.kill());
    for text in &seen {
        for secret in secrets {
            assert!(!text.contains(secret), "{secret} was shown");
        }
    }
    sim.stop().await;
}

#[actix_rt::test]
async fn check_refuses_paths_the_vendor_never_sends_and_shows_what_a_sink_receives() {
    let dir = tempfile::tempdir().unwrap();
    let studios = [Studio::new("berlin")
        .with("[entity.customer]\nomit = [\"dateOfBirth\", \"emial\"]\n[entity.contracts]\nkeep = [\"id\", \"rateName\"]\n")];
    let sim = start_sim(&studios).await;
    write_tenants(dir.path(), &studios, &sim);
    let config = dir.path().join("gymrelay.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\npath = {:?}\n[tenants]\ndir = {:?}\n",
            dir.path().join("data").display().to_string(),
            dir.path().join("tenants").display().to_string()
        ),
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_gymrelay"))
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .expect("check runs");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{report}");
    assert!(
        report.contains("entity.customer.omit[1]: emial matches no field"),
        "{report}"
    );
    assert!(
        !report.contains("omit[0]"),
        "dateOfBirth is a vendor field: {report}"
    );
    let shown = report
        .lines()
        .find(|l| l.starts_with("berlin: entity.customer: a sink receives"))
        .expect("the customer sample is shown");
    assert!(
        shown.contains("\"firstName\"") && !shown.contains("\"dateOfBirth\""),
        "{shown}"
    );
    let contracts = report
        .lines()
        .find(|l| l.starts_with("berlin: entity.contracts: a sink receives"))
        .expect("the contracts sample is shown");
    assert!(
        contracts.contains("\"rateName\"") && !contracts.contains("\"startDate\""),
        "{contracts}"
    );
    sim.stop().await;
}

#[actix_rt::test]
async fn a_dead_letter_older_than_its_retention_is_gone_after_the_next_prune() {
    let app = spawn_app_with(vec![Studio::new("berlin")], |config| {
        config.delivery.dead_letter_retention = std::time::Duration::from_secs(1);
        config.storage.prune_interval = std::time::Duration::from_millis(200);
    })
    .await;
    app.sim
        .set_fault("berlin", gymrelay::simulate::Fault::Status(400));
    let uuid = unique("old");
    app.notify("berlin", &uuid, "CUSTOMER_UPDATED", 12).await;
    eventually("the dead letter", || async {
        let (_, letters) = app.admin("GET", "/api/dead-letters").await;
        letters.contains(&uuid).then_some(())
    })
    .await;
    eventually("the dead letter to expire", || async {
        let (_, letters) = app.admin("GET", "/api/dead-letters").await;
        (!letters.contains(&uuid)).then_some(())
    })
    .await;
    let (_, metrics) = app.admin("GET", "/metrics").await;
    assert!(
        metrics.contains("gymrelay_dead_letters_expired_total{studio=\"berlin\"} 1"),
        "{metrics}"
    );
    let studios = app.admin_json("GET", "/api/studios").await;
    assert_eq!(studios["studios"][0]["dead_letters"], 0);
    app.stop().await;
}
