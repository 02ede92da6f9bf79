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
    // A second sink that prints the first name and the email it got on stderr and fails: the
    // event also ends as a dead letter, and what the sink got reaches the (debug) log, where an
    // email that was not omitted would show.
    let failing = r#"[[sinks]]
type = "command"
argv = ["sh", "-c", "grep -o '\"\\(firstName\\|email\\)\":\"[^\"]*\"' >&2; exit 1"]
"#;
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
    assert_eq!(
        notify_at(&client, &relay.url, "berlin", &uuid, 12).await,
        200
    );
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
    let log = relay.kill();
    let first_name = customer["firstName"].as_str().unwrap();
    assert!(
        log.contains(first_name),
        "the record the sink got is in the log: {log}"
    );
    seen.push(log);
    for text in &seen {
        for secret in secrets {
            assert!(!text.contains(secret), "{secret} was shown");
        }
    }
    sim.stop().await;
}

#[actix_rt::test]
async fn check_warns_of_paths_the_vendor_never_sends_and_shows_what_a_sink_receives() {
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
    assert!(
        output.status.success(),
        "a warning, not a problem: {report}"
    );
    assert!(
        report.contains("warning:")
            && report.contains("entity.customer.omit[1]: emial matches no field"),
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

/// Every file under `dir`, read as bytes, searched for `needle`.
fn files_containing(dir: &std::path::Path, needle: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    found.push(path);
                }
            }
        }
    }
    found
}

#[actix_rt::test]
async fn erase_removes_a_members_traces_from_the_store_and_the_studio_keeps_working() {
    let failing = "[[sinks]]\ntype = \"command\"\nargv = [\"false\"]\n";
    let studios = [Studio::new("berlin").with(failing)];
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim(&studios).await;
    write_tenants(dir.path(), &studios, &sim);
    let relay = RelayProcess::start(dir.path(), "[delivery]\ndead_letter_after = \"1s\"\n").await;
    let member = customer_from_the_vendor(&sim.base_url("berlin"), "berlin", 12).await;
    let client = awc::Client::default();
    let url = relay.url.clone();
    let (erased, other) = (unique("erased"), unique("other"));
    assert_eq!(notify_at(&client, &url, "berlin", &erased, 12).await, 200);
    assert_eq!(notify_at(&client, &url, "berlin", &other, 13).await, 200);
    eventually("both to be dead letters", || async {
        let letters = relay.admin("/api/dead-letters").await;
        (letters.contains(&erased) && letters.contains(&other)).then_some(())
    })
    .await;

    let activity = relay.admin("/api/activity").await;
    assert!(
        activity.contains("\"entity_id\":12,"),
        "the member is in the recent activity before the erasure: {activity}"
    );

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_gymrelay"))
        .args([
            "erase",
            "--studio",
            "berlin",
            "--customer",
            "12",
            "--config",
        ])
        .arg(dir.path().join("gymrelay.toml"))
        .args(["--admin-url", &relay.admin_url])
        .output()
        .expect("erase runs");
    let said = String::from_utf8_lossy(&output.stdout);
    let complaint = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{said}{complaint}");
    assert!(said.contains("removed 1 dead letter"), "{said}");

    let letters = relay.admin("/api/dead-letters").await;
    assert!(
        !letters.contains(&erased),
        "the member's dead letter is gone"
    );
    assert!(letters.contains(&other), "another member's stays");
    let activity = relay.admin("/api/activity").await;
    assert!(!activity.contains("\"entity_id\":12,"), "{activity}");
    assert!(
        activity.contains("\"entity_id\":13,"),
        "another member's activity stays: {activity}"
    );
    // The store never holds an Open API answer, so this holds before the erasure too; it is
    // the issue's own check that nothing of the member is left on disk.
    for value in ["firstName", "lastName", "email"] {
        let value = member[value].as_str().expect("a member field");
        let found = files_containing(&dir.path().join("data"), value);
        assert!(found.is_empty(), "{value} is still in {found:?}");
    }

    // The studio goes on: a new event for the same member is fetched and delivered.
    let again = unique("again");
    assert_eq!(notify_at(&client, &url, "berlin", &again, 12).await, 200);
    let delivered = eventually("the new event in the file sink", || {
        let path = dir.path().join("out/berlin.ndjson");
        let again = again.clone();
        async move {
            read_ndjson(&path)
                .into_iter()
                .find(|e| e["id"] == again.as_str())
        }
    })
    .await;
    assert_eq!(delivered["entity"]["id"], 12);
    let log = relay.kill();
    assert!(log.contains("a member's data was erased"));
    sim.stop().await;
}

#[actix_rt::test]
async fn the_status_page_and_its_apis_show_no_entity_field_values() {
    let app = spawn_app(vec![Studio::new("berlin")]).await;
    let member = customer_from_the_vendor(&app.sim.base_url("berlin"), "berlin", 12).await;
    app.notify("berlin", &unique("s"), "CUSTOMER_UPDATED", 12)
        .await;
    let delivered = app.delivered("berlin", 1).await;
    assert_eq!(
        delivered[0]["entity"]["email"], member["email"],
        "the sink has it"
    );
    for path in ["/", "/status/app.js", "/api/studios", "/api/activity"] {
        let (status, text) = app.admin("GET", path).await;
        assert_eq!(status, 200, "{path}");
        for field in ["firstName", "lastName", "email", "dateOfBirth"] {
            let value = member[field].as_str().expect("a member field");
            assert!(!text.contains(value), "{path} shows the member's {field}");
        }
    }
    app.stop().await;
}

#[actix_rt::test]
async fn a_sink_that_repeats_the_event_in_its_error_leaves_no_member_data_stored_or_shown() {
    // The command prints the event (the member's record) on stderr and fails.
    let echoing = "[[sinks]]\ntype = \"command\"\nargv = [\"sh\", \"-c\", \"cat >&2; exit 1\"]\n";
    let app = spawn_app_with(vec![Studio::new("berlin").with(echoing)], |config| {
        config.delivery.dead_letter_after = std::time::Duration::from_secs(1);
    })
    .await;
    let member = customer_from_the_vendor(&app.sim.base_url("berlin"), "berlin", 12).await;
    let uuid = unique("echo");
    app.notify("berlin", &uuid, "CUSTOMER_UPDATED", 12).await;
    let letters = eventually("the dead letter", || async {
        let (_, letters) = app.admin("GET", "/api/dead-letters").await;
        letters.contains(&uuid).then_some(letters)
    })
    .await;
    // Another webhook's acknowledgement waits for the disk: what was written before is there.
    let sync = unique("sync");
    assert_eq!(
        app.notify("berlin", &sync, "CUSTOMER_DELETED", 1).await.0,
        200
    );
    let (_, studios) = app.admin("GET", "/api/studios").await;
    let email = member["email"].as_str().unwrap();
    assert!(!letters.contains(email) && !studios.contains(email));
    assert!(files_containing(&app.dir.path().join("data"), email).is_empty());
    app.stop().await;
}

#[actix_rt::test]
async fn erase_during_a_delivery_drops_what_was_fetched_before_it() {
    let failing = "[[sinks]]\ntype = \"command\"\nargv = [\"false\"]\n";
    // With reconcile on, the studio records a baseline by itself: a fingerprint of every
    // customer, the member's among them.
    let studio = Studio::new("berlin")
        .customers(300)
        .with(&format!("[reconcile]\nevery = \"24h\"\n{failing}"));
    let app = spawn_app(vec![studio]).await;
    eventually("the reconcile baseline", || async {
        let state = app.admin_json("GET", "/api/studios/berlin/reconcile").await;
        (state["running"].is_null() && state["last"]["baseline"] == true).then_some(())
    })
    .await;
    app.notify("berlin", &unique("e"), "CUSTOMER_UPDATED", 12)
        .await;
    let fetches = || {
        app.sim
            .requests()
            .iter()
            .filter(|r| r.path == "/v1/customers/12")
            .count()
    };
    eventually("the first fetch", || async {
        (fetches() == 1).then_some(())
    })
    .await;
    let answer = app
        .admin_json("POST", "/api/studios/berlin/erase?customer=12")
        .await;
    assert_eq!(answer["pending_events"], 1, "{answer}");
    assert_eq!(
        answer["removed"]["reconcile_fingerprint"], true,
        "the member's reconcile fingerprint is forgotten: {answer}"
    );
    // The delivery that was retrying held the member's record; the studio starts afresh and
    // fetches it again rather than deliver what it had.
    eventually("a fetch after the erasure", || async {
        (fetches() == 2).then_some(())
    })
    .await;
    // Nothing was delivered since, so no fingerprint came back: a second erasure finds none.
    let again = app
        .admin_json("POST", "/api/studios/berlin/erase?customer=12")
        .await;
    assert_eq!(
        again["removed"]["reconcile_fingerprint"], false,
        "the fingerprint was removed, not only reported: {again}"
    );
    let (status, body) = app
        .admin("POST", "/api/studios/berlin/erase?customer=x")
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(serde_json::from_str::<Value>(&body).unwrap()["error"].is_string());
    let (status, _) = app
        .admin("POST", "/api/studios/nosuch/erase?customer=12")
        .await;
    assert_eq!(status, 404);
    app.stop().await;
}
