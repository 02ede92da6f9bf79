//! The status page in a real browser (Debian's chromium through chromedriver): studios and
//! events appear, a dead letter is listed and its Replay button brings the event to the sink,
//! and the Reconcile button starts a sweep whose progress and summary the page follows.

mod webdriver;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use gymrelay::simulate::Fault;
use serde_json::{json, Value};

use crate::helpers::*;
use webdriver::{find_program, Driver, Session};

/// The page polls every 2 s, so each step may take a few polls.
const PAGE_DEADLINE: Duration = Duration::from_secs(30);

/// Where screenshots go: `$CARGO_TARGET_DIR`, else the crate's `target/`.
fn artifact(name: &str) -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Runs `script` until it returns something other than null, false or "" and returns that.
async fn wait_for(page: &Session, what: &str, script: &str, args: Vec<Value>) -> Value {
    let start = Instant::now();
    loop {
        let value = page.execute(script, args.clone()).await;
        if !matches!(&value, Value::Null | Value::Bool(false)) && value != "" {
            return value;
        }
        if start.elapsed() > PAGE_DEADLINE {
            let shown = page
                .execute("return document.body.innerText.slice(0, 3000);", vec![])
                .await;
            panic!(
                "timed out waiting for {what}; the page shows:\n{}",
                shown.as_str().unwrap_or("")
            );
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn text(page: &Session, css: &str) -> String {
    let script = "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';";
    let value = page.execute(script, vec![json!(css)]).await;
    value.as_str().unwrap_or_default().to_string()
}

/// chromedriver with Debian's chromium, or None (the test is skipped) where they are missing.
async fn start_driver() -> Option<Driver> {
    let chromium = find_program(&["chromium", "chromium-browser"]);
    let chromedriver = find_program(&["chromedriver"]);
    let (Some(chromium), Some(chromedriver)) = (chromium, chromedriver) else {
        skip(
            "the browser test: no chromium and chromedriver on PATH \
             (apt-get install chromium chromium-driver; .ci/run installs them)",
        );
        return None;
    };
    Some(Driver::start(&chromedriver, chromium).await)
}

/// Types `token` into the sign-in form and presses Connect.
async fn connect(page: &Session, token: &str) {
    let field = page.find("#token").await.expect("a token field");
    page.type_into(&field, token).await;
    page.click(&page.find("#connect").await.expect("a connect button"))
        .await;
}

#[actix_rt::test]
async fn the_status_page_shows_studios_and_events_and_replays_a_dead_letter() {
    let Some(driver) = start_driver().await else {
        return;
    };
    let app = spawn_app(vec![
        Studio::new("berlin").with("name = \"Berlin Mitte\"\n"),
        Studio::new("hamburg").with("name = \"Hamburg Altona\"\n"),
    ])
    .await;
    let sent = [
        ("berlin", "CUSTOMER_UPDATED", 7101),
        ("berlin", "CONTRACT_CREATED", 7102),
        ("hamburg", "CUSTOMER_CREATED", 7201),
    ];
    for (studio, event_type, entity) in sent {
        app.notify(studio, &unique("page"), event_type, entity)
            .await;
    }
    app.delivered("berlin", 2).await;
    app.delivered("hamburg", 1).await;

    let page = driver.session(1280, 900).await;
    page.goto(&format!("{}/", app.admin_url)).await;
    connect(&page, "not-the-token").await;
    let refused = wait_for(
        &page,
        "the wrong token to be refused",
        "const e = document.getElementById('login-error'); return !e.hidden && e.innerText;",
        vec![],
    )
    .await;
    assert!(
        refused.as_str().unwrap().contains("bearer token"),
        "{refused}"
    );
    connect(&page, ADMIN_TOKEN).await;

    wait_for(
        &page,
        "both studios in the table",
        "return ['berlin', 'hamburg'].every(id =>
             document.querySelector('#studios-body tr[data-studio=\"' + id + '\"]'));",
        vec![],
    )
    .await;
    let table = text(&page, "#studios-body").await;
    for shown in ["Berlin Mitte", "Hamburg Altona", "Running"] {
        assert!(
            table.contains(shown),
            "{shown} missing from the table:\n{table}"
        );
    }
    let rows = "return [...document.querySelectorAll('#studios-body tr')]
                    .map(row => row.dataset.studio).join(',');";
    let filter = page.find("#filter").await.expect("a filter field");
    page.type_into(&filter, "Altona").await;
    assert_eq!(
        page.execute(rows, vec![]).await,
        "hamburg",
        "filtered by name"
    );
    page.clear(&filter).await;
    page.type_into(&filter, "BERL").await;
    assert_eq!(
        page.execute(rows, vec![]).await,
        "berlin",
        "by id, any case"
    );
    page.clear(&filter).await;
    let by_name = page.find("th[data-sort=\"name\"] button").await.unwrap();
    page.click(&by_name).await;
    assert_eq!(
        page.execute(rows, vec![]).await,
        "hamburg,berlin",
        "name, descending"
    );
    page.click(&by_name).await;
    assert_eq!(page.execute(rows, vec![]).await, "berlin,hamburg");
    wait_for(
        &page,
        "the events in the live strip",
        "const strip = document.getElementById('events-body').innerText;
         return arguments[0].every(entity => strip.includes(String(entity)));",
        vec![json!(sent.map(|(_, _, entity)| entity))],
    )
    .await;
    let strip = text(&page, "#events-body").await;
    assert!(
        strip.contains("CONTRACT_CREATED") && strip.contains("hamburg"),
        "{strip}"
    );
    wait_for(
        &page,
        "the per-minute chart",
        "return document.querySelectorAll('#chart-events .bar-webhooks').length === 60;",
        vec![],
    )
    .await;

    app.sim.set_fault("berlin", Fault::Status(400));
    let doomed = unique("doomed");
    app.notify("berlin", &doomed, "CUSTOMER_UPDATED", 7777)
        .await;
    let id = wait_for(
        &page,
        "the dead letter in the list",
        "const button = document.querySelector('#dead-letters button[data-replay]');
         return button && button.dataset.replay;",
        vec![],
    )
    .await;
    let id = id.as_str().unwrap().to_string();
    let item = text(&page, &format!("li[data-dead-letter=\"{id}\"]")).await;
    assert!(
        item.contains("400") && item.contains("attempt") && item.contains(&doomed),
        "{item}"
    );
    assert!(page
        .find("button[data-replay-studio=\"berlin\"]")
        .await
        .is_some());
    page.screenshot_full_page(1280, &artifact("status-page.png"))
        .await;

    app.sim.set_fault("berlin", Fault::None);
    let replay = format!("button[data-replay=\"{id}\"]");
    page.resize(1280, 900).await;
    page.click(&page.find(&replay).await.expect("a Replay button"))
        .await;
    wait_for(
        &page,
        "the dead letter to leave the list",
        "return !document.querySelector('[data-dead-letter=\"' + arguments[0] + '\"]')
             && document.getElementById('dead-empty').hidden === false;",
        vec![json!(id)],
    )
    .await;
    let delivered = app.delivered("berlin", 3).await;
    assert!(
        delivered.iter().any(|e| e["id"] == doomed.as_str()),
        "the replayed event reaches the sink"
    );

    // The token lives in sessionStorage, never in the document.
    let html = page
        .execute("return document.documentElement.outerHTML;", vec![])
        .await;
    let html = html.as_str().unwrap();
    for secret in [
        ADMIN_TOKEN.to_string(),
        webhook_key("berlin"),
        open_api_key("berlin"),
    ] {
        assert!(!html.contains(&secret), "a key is in the page");
    }
    page.screenshot_full_page(390, &artifact("status-page-phone.png"))
        .await;
    drop(page);
    drop(driver);
    app.stop().await;
}

/// A count in the selected studio's reconcile section (`data-count` names it).
async fn count(page: &Session, key: &str) -> u64 {
    let shown = text(page, &format!("#reconcile-body [data-count=\"{key}\"]")).await;
    let digits: String = shown.chars().filter(char::is_ascii_digit).collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no {key} count in the reconcile section: {shown:?}"))
}

/// Waits until the selected studio's reconcile section shows `shown` and no sweep runs.
async fn sweep_shown(page: &Session, what: &str, shown: &str) -> String {
    let script = "const body = document.getElementById('reconcile-body').innerText;
         return !document.getElementById('reconcile-start').disabled
             && body.includes(arguments[0]) && body;";
    let value = wait_for(page, what, script, vec![json!(shown)]).await;
    value.as_str().unwrap().to_string()
}

/// Waits until the reconcile section shows a problem while a sweep runs (`running`) or after it
/// ended, and returns the problem and the section's text.
async fn problem_shown(page: &Session, what: &str, running: bool) -> String {
    let script = "const problem = document.getElementById('reconcile-problem');
         return !problem.hidden && document.getElementById('reconcile-start').disabled === arguments[0]
             && problem.innerText + '\\n' + document.getElementById('reconcile-body').innerText;";
    let value = wait_for(page, what, script, vec![json!(running)]).await;
    value.as_str().unwrap().to_string()
}

#[actix_rt::test]
async fn the_reconcile_button_starts_a_sweep_and_the_page_follows_it_to_its_summary() {
    let Some(driver) = start_driver().await else {
        return;
    };
    const STUDIO: &str = "hamburg";
    let app = spawn_app(vec![
        Studio::new("berlin").with("name = \"Berlin Mitte\"\n"),
        Studio::new(STUDIO)
            .with("name = \"Hamburg Altona\"\n")
            .customers(250),
    ])
    .await;
    // Tall enough for the whole page: nothing is scrolled under the toast.
    let page = driver.session(1280, 1600).await;
    page.goto(&format!("{}/", app.admin_url)).await;
    connect(&page, ADMIN_TOKEN).await;
    let row = format!("#studios-body tr[data-studio=\"{STUDIO}\"]");
    wait_for(
        &page,
        "hamburg in the table",
        "const row = document.querySelector(arguments[0]);
         return row && (row.click(), true);",
        vec![json!(row)],
    )
    .await;
    sweep_shown(&page, "hamburg's reconcile section", "Never swept").await;
    assert!(text(&page, &row).await.contains("never swept"));
    let button = page
        .find("#reconcile-start")
        .await
        .expect("a Reconcile button");

    // The first sweep is a baseline; its first page keeps failing for now.
    app.sim.set_fault(STUDIO, Fault::Status(503));
    page.click(&button).await;
    let retrying = problem_shown(&page, "the baseline retrying its first page", true).await;
    for shown in [
        "Retrying a page",
        "503",
        "Sweeping",
        "by an operator",
        "Baseline",
    ] {
        assert!(retrying.contains(shown), "{shown} missing:\n{retrying}");
    }
    assert!(text(&page, &row).await.contains("Sweeping"));
    // A second operator, whose page had not seen the sweep yet, is told why nothing started.
    page.execute(
        "const button = document.getElementById('reconcile-start');
         button.disabled = false;
         button.click();",
        vec![],
    )
    .await;
    wait_for(
        &page,
        "the 409's message",
        "const toast = document.getElementById('toast');
         return !toast.hidden && toast.innerText.includes('already under way');",
        vec![],
    )
    .await;

    app.sim.set_fault(STUDIO, Fault::None);
    let baseline = sweep_shown(&page, "the baseline's summary", "Last sweep").await;
    assert!(baseline.contains("Baseline"), "{baseline}");
    for (key, expected) in [("pages", 3), ("customers", 250), ("emitted", 0)] {
        assert_eq!(count(&page, key).await, expected, "{key}:\n{baseline}");
    }
    assert!(
        count(&page, "requests").await >= 4,
        "the failed request counts"
    );
    assert!(text(&page, "#reconcile-problem").await.is_empty());
    assert!(text(&page, &row).await.contains("baseline"));

    // A sweep given up on: the reason stays shown next to the last summary.
    app.sim.set_fault(STUDIO, Fault::Status(400));
    page.click(&button).await;
    let given_up = problem_shown(&page, "the sweep given up", false).await;
    for shown in ["given up", "400", "Last sweep"] {
        assert!(given_up.contains(shown), "{shown} missing:\n{given_up}");
    }
    assert!(text(&page, &row).await.contains("Given up"));

    // What changed since the baseline, found one slow page at a time.
    app.sim.set_fault(STUDIO, Fault::None);
    app.sim
        .update_customer(STUDIO, 5, json!({"email": "moved@example.com"}));
    app.sim.delete_customer(STUDIO, 9);
    app.sim
        .add_customer(STUDIO, json!({"lastName": "Newcomer"}));
    app.sim
        .set_fault(STUDIO, Fault::Delay(Duration::from_secs(2)));
    page.click(&button).await;
    wait_for(
        &page,
        "a page done while the sweep runs",
        "const pages = document.querySelector('#reconcile-body [data-count=\"pages\"]');
         return document.getElementById('reconcile-start').disabled
             && document.getElementById('reconcile-body').innerText.includes('Sweeping')
             && pages && Number(pages.innerText) >= 1;",
        vec![],
    )
    .await;
    assert!(
        text(&page, "#reconcile-problem").await.is_empty(),
        "the failure is cleared"
    );
    app.sim.set_fault(STUDIO, Fault::None);
    let found = sweep_shown(&page, "the second sweep's summary", "Last sweep").await;
    assert!(!found.contains("Baseline"), "{found}");
    for (key, expected) in [
        ("added", 1),
        ("changed", 1),
        ("deleted", 1),
        ("emitted", 3),
        ("customers", 250),
    ] {
        assert_eq!(count(&page, key).await, expected, "{key}:\n{found}");
    }
    assert!(text(&page, &row).await.contains("3 changes"));
    let reconciled = app.delivered(STUDIO, 3).await;
    assert!(
        reconciled
            .iter()
            .all(|e| e["type"] == "CUSTOMER_RECONCILED"),
        "{reconciled:?}"
    );
    page.screenshot_full_page(1280, &artifact("status-page-reconcile.png"))
        .await;
    drop(page);
    drop(driver);
    app.stop().await;
}
