//! Reconcile: catching up, from the Open API, on customers whose webhooks never arrived.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use crate::helpers::*;

const STUDIO: &str = "berlin";

/// The studio's reconcile state, from the admin API.
async fn reconcile_state(relay: &RelayProcess) -> Value {
    serde_json::from_str(
        &relay
            .admin(&format!("/api/studios/{STUDIO}/reconcile"))
            .await,
    )
    .unwrap()
}

/// Waits until no sweep runs and the last one that ended matches `finished`.
async fn sweep_ended(relay: &RelayProcess, finished: impl Fn(&Value) -> bool) -> Value {
    eventually("the reconcile sweep to end", || async {
        let state = reconcile_state(relay).await;
        assert!(state["failure"].is_null(), "sweep given up: {state}");
        (state["running"].is_null() && finished(&state["last"])).then_some(state["last"].clone())
    })
    .await
}

/// As [`sweep_ended`], for a relay in this process.
async fn app_sweep_ended(app: &TestApp, finished: impl Fn(&Value) -> bool) -> Value {
    let path = format!("/api/studios/{STUDIO}/reconcile");
    eventually("the reconcile sweep to end", || async {
        let state = app.admin_json("GET", &path).await;
        (state["running"].is_null() && finished(&state["last"])).then_some(state["last"].clone())
    })
    .await
}

fn reconciled(dir: &Path) -> Vec<Value> {
    read_ndjson(&dir.join("out").join(format!("{STUDIO}.ndjson")))
}

/// No Open API request was refused with 429.
fn assert_no_429(sim: &gymrelay::simulate::OpenApiSim) {
    let refused = sim.requests().iter().filter(|r| r.status == 429).count();
    assert_eq!(refused, 0, "requests refused with 429");
}

#[actix_web::test]
async fn a_restart_after_downtime_emits_exactly_what_changed_while_the_relay_was_down() {
    let dir = tempfile::tempdir().unwrap();
    let studio = Studio::new(STUDIO)
        .customers(3_000)
        .with("[reconcile]\nafter_downtime = \"1ms\"\n");
    let sim = start_sim(std::slice::from_ref(&studio)).await;
    write_tenants(dir.path(), &[studio], &sim);

    // With reconcile on and no baseline, the studio records one by itself, emitting nothing.
    let relay = RelayProcess::start(dir.path(), "").await;
    let baseline = sweep_ended(&relay, |last| last["baseline"] == true).await;
    assert_eq!(baseline["progress"]["customers"], 3_000, "{baseline}");
    assert_eq!(baseline["progress"]["pages"], 30, "{baseline}");
    assert_eq!(baseline["progress"]["emitted"], 0, "{baseline}");
    relay.stop().await;
    assert!(reconciled(dir.path()).is_empty());

    // While the relay is down: 37 changed, 5 added, 2 deleted.
    let changed: Vec<i64> = (1..=37).map(|i| i * 80).collect();
    for id in &changed {
        sim.update_customer(
            STUDIO,
            *id,
            json!({"email": format!("new-{id}@example.com")}),
        );
    }
    let added: Vec<i64> = (0..5)
        .map(|i| sim.add_customer(STUDIO, json!({"lastName": format!("Added{i}")})))
        .collect();
    let deleted = [17_i64, 2_999];
    for id in deleted {
        sim.delete_customer(STUDIO, id);
    }

    let relay = RelayProcess::start(dir.path(), "").await;
    let sweep = sweep_ended(&relay, |last| last["trigger"] == "downtime").await;
    let progress = &sweep["progress"];
    assert_eq!(
        (
            &progress["changed"],
            &progress["added"],
            &progress["deleted"],
            &progress["emitted"]
        ),
        (&json!(37), &json!(5), &json!(2), &json!(44)),
        "{sweep}"
    );
    let events = reconciled(dir.path());
    assert_eq!(events.len(), 44, "each change once");
    let ids: HashSet<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 44, "distinct event ids");
    let by_customer: BTreeMap<i64, &Value> = events
        .iter()
        .map(|e| (e["entityId"].as_i64().unwrap(), e))
        .collect();
    for id in &changed {
        let event = by_customer[id];
        assert_eq!(event["type"], "CUSTOMER_RECONCILED");
        assert_eq!(event["content"]["change"], "changed");
        assert_eq!(event["enrichment"]["status"], "fetched");
        assert_eq!(event["entity"]["email"], format!("new-{id}@example.com"));
    }
    for (i, id) in added.iter().enumerate() {
        assert_eq!(by_customer[id]["content"]["change"], "added");
        assert_eq!(by_customer[id]["entity"]["lastName"], format!("Added{i}"));
    }
    for id in deleted {
        assert_eq!(by_customer[&id]["content"]["change"], "deleted");
        assert_eq!(by_customer[&id]["enrichment"]["status"], "not_found");
        assert!(by_customer[&id]["entity"].is_null());
    }

    // A second sweep, from the command line, finds nothing new.
    let cli = Command::new(env!("CARGO_BIN_EXE_gymrelay"))
        .args(["reconcile", "--studio", STUDIO, "--config"])
        .arg(dir.path().join("gymrelay.toml"))
        .args(["--admin-url", &relay.admin_url])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&cli.stdout);
    assert!(
        cli.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    assert!(
        said.contains("0 added, 0 changed, 0 deleted; 0 event(s) emitted"),
        "{said}"
    );
    let last = reconcile_state(&relay).await["last"].clone();
    assert_eq!(last["trigger"], "manual");
    assert_eq!(last["progress"]["customers"], 3_003, "{last}");
    assert_eq!(
        reconciled(dir.path()).len(),
        44,
        "the second sweep emitted nothing"
    );
    assert_no_429(&sim);
    relay.stop().await;
}

#[actix_web::test]
async fn a_sweep_stopped_midway_resumes_where_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let studio = Studio::new(STUDIO)
        .customers(5_000)
        .latency(
            std::time::Duration::from_millis(100),
            std::time::Duration::from_millis(150),
        )
        .with("[reconcile]\nevery = \"24h\"\n");
    let sim = start_sim(std::slice::from_ref(&studio)).await;
    write_tenants(dir.path(), &[studio], &sim);
    let list_requests = || {
        sim.requests()
            .iter()
            .filter(|r| r.endpoint == "/v1/customers")
            .count()
    };

    let relay = RelayProcess::start(dir.path(), "").await;
    eventually("a few pages of the baseline", || async {
        let state = reconcile_state(&relay).await;
        (state["running"]["progress"]["pages"].as_u64() >= Some(3)).then_some(())
    })
    .await;
    relay.stop().await;
    let before = list_requests();

    let relay = RelayProcess::start(dir.path(), "").await;
    let sweep = sweep_ended(&relay, |last| last["baseline"] == true).await;
    let after_restart = list_requests() - before;
    // The page under way when the relay stopped may be asked again; no other.
    assert!(
        before + after_restart <= 51,
        "resumed where it was: {before} pages asked before the stop and {after_restart} after \
         the restart, for 50 pages"
    );
    assert_eq!(sweep["progress"]["customers"], 5_000, "{sweep}");
    assert_eq!(sweep["progress"]["pages"], 50, "{sweep}");
    assert_no_429(&sim);
    relay.stop().await;
}

#[actix_web::test]
async fn live_webhooks_go_on_during_a_sweep_and_the_sweep_still_ends() {
    let studio = Studio::new(STUDIO).customers(3_000).latency(
        std::time::Duration::from_millis(5),
        std::time::Duration::from_millis(25),
    );
    let app = spawn_app_with(vec![studio], unlimited_intake).await;
    let path = format!("/api/studios/{STUDIO}/reconcile?emit_all=true");
    let (status, body) = app.admin("POST", &path).await;
    assert_eq!(status, 202, "{body}");
    let (status, body) = app.admin("POST", &path).await;
    assert_eq!(status, 409, "one sweep at a time: {body}");

    // Webhooks keep coming while the sweep runs, up to what the customer endpoint's budget
    // (900 a minute) takes without making the last of them wait for the next minute.
    let mut sent = Vec::new();
    let mut customer = 0;
    let state_path = format!("/api/studios/{STUDIO}/reconcile");
    while sent.len() < 500 {
        for _ in 0..10 {
            customer = customer % 3_000 + 97;
            let uuid = unique("live");
            let (status, _) = app
                .notify(STUDIO, &uuid, "CUSTOMER_UPDATED", customer)
                .await;
            assert_eq!(status, 200);
            sent.push(uuid);
        }
        if app.admin_json("GET", &state_path).await["running"].is_null() {
            break;
        }
    }
    eventually("the sweep to end", || async {
        let state = app.admin_json("GET", &state_path).await;
        assert!(state["failure"].is_null(), "{state}");
        state["running"].is_null().then_some(())
    })
    .await;
    app.inbox_emptied().await;
    let events = read_ndjson(&app.output(STUDIO));
    let is_live = |e: &Value| e["type"] == "CUSTOMER_UPDATED";
    let live: HashSet<&str> = events
        .iter()
        .filter(|e| is_live(e))
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(live.len(), sent.len(), "every live event delivered");
    // Every customer reached the sink, from the sweep or, if a live event came first, from it.
    let covered: HashSet<i64> = events
        .iter()
        .map(|e| e["entityId"].as_i64().unwrap())
        .collect();
    assert!((1..=3_000).all(|id| covered.contains(&id)));
    // Live events were delivered between the sweep's first and last events, not after it.
    let reconciled_at: Vec<usize> = (0..events.len())
        .filter(|&i| !is_live(&events[i]))
        .collect();
    let (first, last) = (reconciled_at[0], *reconciled_at.last().unwrap());
    let live_during = (first..last).filter(|&i| is_live(&events[i])).count();
    assert!(live_during > 0, "no live event went out during the sweep");
    let refused = app
        .sim
        .requests()
        .iter()
        .filter(|r| r.status == 429)
        .count();
    assert_eq!(refused, 0);
    app.stop().await;
}

#[actix_web::test]
async fn a_certificate_expired_longer_than_after_downtime_brings_a_sweep_once_it_is_renewed() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    let valid = crate::tls::TestCert::new();
    valid.write(&cert, &key);
    let after_downtime = std::time::Duration::from_secs(2);
    let studio = Studio::new(STUDIO)
        .customers(300)
        .with("[reconcile]\nafter_downtime = \"2s\"\n");
    let (tls_cert, tls_key) = (cert.clone(), key.clone());
    let app = spawn_app_with(vec![studio], move |config| {
        config.http.tls_cert = Some(tls_cert);
        config.http.tls_key = Some(tls_key);
    })
    .await;
    app_sweep_ended(&app, |last| last["baseline"] == true).await;

    // The certificate on disk is replaced by an expired one: the vendor's client would refuse
    // every handshake from now on.
    crate::tls::TestCert::expired().write(&cert, &key);
    eventually("readyz to name the expired certificate", || async {
        let (status, body) = app.admin("GET", "/readyz").await;
        (status == 503 && body.contains("TLS certificate served expired")).then_some(())
    })
    .await;
    let studios = app.admin_json("GET", "/api/studios").await;
    assert!(
        studios["certificate"]["problem"]
            .as_str()
            .is_some_and(|p| p.contains("expired at 2024-04-01")),
        "{studios}"
    );
    let changed = [10_i64, 150, 290];
    for id in changed {
        app.sim.update_customer(
            STUDIO,
            id,
            json!({"email": format!("late-{id}@example.com")}),
        );
    }
    // What is tested is how long the outage lasted: nothing to poll for but time passing.
    actix_web::rt::time::sleep(after_downtime).await;

    let renewed = crate::tls::TestCert::new();
    renewed.write(&cert, &key);
    let sweep = app_sweep_ended(&app, |last| last["trigger"] == "downtime").await;
    assert_eq!(sweep["progress"]["changed"], 3, "{sweep}");
    assert_eq!(sweep["progress"]["emitted"], 3, "{sweep}");
    let events = app.delivered(STUDIO, 3).await;
    let mut customers: Vec<i64> = events
        .iter()
        .map(|e| {
            assert_eq!(e["type"], "CUSTOMER_RECONCILED");
            e["entityId"].as_i64().unwrap()
        })
        .collect();
    customers.sort();
    assert_eq!(customers, changed);
    let (status, body) = app.admin("GET", "/readyz").await;
    assert_eq!(status, 200, "{body}");
    app.stop().await;
}

#[actix_web::test]
async fn a_customer_whose_event_a_sink_refused_is_reported_again_by_the_next_sweep() {
    // A second sink that refuses customer 150's event for good (exit 65) while a flag exists.
    let refuse = "[ -e {out}/refuse ] && grep -q '\"entityId\":150,' && exit 65; cat >/dev/null";
    let studio = Studio::new(STUDIO).customers(300).with(&format!(
        "[reconcile]\nevery = \"24h\"\n[[sinks]]\ntype = \"command\"\nargv = [\"sh\", \"-c\", {refuse:?}]\n"
    ));
    let app = spawn_app(vec![studio]).await;
    let state_path = format!("/api/studios/{STUDIO}/reconcile");
    app_sweep_ended(&app, |last| last["baseline"] == true).await;

    let out = app.dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("refuse"), "").unwrap();
    for id in [10_i64, 150] {
        app.sim.update_customer(
            STUDIO,
            id,
            json!({"email": format!("new-{id}@example.com")}),
        );
    }
    let (status, body) = app.admin("POST", &state_path).await;
    assert_eq!(status, 202, "{body}");
    let first = app_sweep_ended(&app, |last| last["trigger"] == "manual").await;
    assert_eq!(first["progress"]["changed"], 2, "{first}");

    std::fs::remove_file(out.join("refuse")).unwrap();
    let (status, body) = app.admin("POST", &state_path).await;
    assert_eq!(status, 202, "{body}");
    let second = app_sweep_ended(&app, |last| {
        last["trigger"] == "manual" && last["progress"]["changed"].as_u64() == Some(1)
    })
    .await;
    assert_eq!(second["progress"]["emitted"], 1, "{second}");
    let events = app.delivered(STUDIO, 3).await;
    let customers: Vec<i64> = events
        .iter()
        .map(|e| e["entityId"].as_i64().unwrap())
        .collect();
    assert_eq!(
        customers,
        [10, 150, 150],
        "150 again, since a sink did not take it"
    );
    assert_ne!(events[1]["id"], events[2]["id"], "a new sweep, a new id");
    app.stop().await;
}
