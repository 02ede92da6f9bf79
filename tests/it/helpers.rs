//! Starting a relay the way a partner would, and talking to it the way PerfectGym Next does.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gymrelay::app::RelayHandle;
use gymrelay::simulate::{OpenApiSim, SimOptions, SimStudio};
use gymrelay::{Config, Relay};
use serde_json::{json, Value};

pub const DEADLINE: Duration = Duration::from_secs(20);
pub const ADMIN_TOKEN: &str = "test-admin-token";

/// A studio for a test: its id, webhook key and Open API key are derived from the id.
pub struct Studio {
    pub id: &'static str,
    /// False for a studio the simulated vendor knows but that has no tenant file yet.
    pub has_file: bool,
    /// Extra lines for the `[open_api]` table.
    pub open_api: String,
    /// Extra TOML appended to the tenant file (more sinks, filters, ...); `{out}` stands for
    /// the directory the file sinks write to.
    pub extra: String,
    /// How long its simulated Open API takes to answer, at least and at most.
    pub latency: Option<(Duration, Duration)>,
    /// How many customers its simulated Open API has, if not the simulator's default.
    pub customers: Option<u32>,
}

impl Studio {
    pub fn new(id: &'static str) -> Studio {
        Studio {
            id,
            has_file: true,
            open_api: String::new(),
            extra: String::new(),
            latency: None,
            customers: None,
        }
    }

    /// Its simulated Open API has customers `1..=n`.
    pub fn customers(mut self, n: u32) -> Studio {
        self.customers = Some(n);
        self
    }

    /// Its simulated Open API answers after a random delay between `min` and `max`.
    pub fn latency(mut self, min: Duration, max: Duration) -> Studio {
        self.latency = Some((min, max));
        self
    }

    pub fn open_api(mut self, toml: &str) -> Studio {
        self.open_api.push_str(toml);
        self.open_api.push('\n');
        self
    }

    pub fn without_file(mut self) -> Studio {
        self.has_file = false;
        self
    }

    pub fn with(mut self, toml: &str) -> Studio {
        self.extra.push_str(toml);
        self
    }
}

pub fn webhook_key(studio: &str) -> String {
    format!("wh-{studio}")
}

pub fn open_api_key(studio: &str) -> String {
    format!("oa-{studio}")
}

/// Writes `tenants/<id>.toml` for each studio with a file sink at `out/<id>.ndjson`.
pub fn write_tenants(dir: &Path, studios: &[Studio], sim: &OpenApiSim) {
    for s in studios.iter().filter(|s| s.has_file) {
        write_tenant(dir, s, &[webhook_key(s.id)], sim);
    }
}

/// Writes (or rewrites) one studio's tenant file with the given webhook keys.
pub fn write_tenant(dir: &Path, s: &Studio, keys: &[String], sim: &OpenApiSim) {
    let tenants = dir.join("tenants");
    std::fs::create_dir_all(&tenants).unwrap();
    let out = dir.join("out").join(format!("{}.ndjson", s.id));
    let text = format!(
        "webhook_api_keys = {:?}\n{}\n[open_api]\nbase_url = {:?}\napi_key = {:?}\n{}\n[[sinks]]\ntype = \"file\"\npath = {:?}\n{}",
        keys,
        s.extra_top(),
        sim.base_url(s.id),
        open_api_key(s.id),
        s.open_api,
        out.display().to_string(),
        s.extra_tables()
            .replace("{out}", &dir.join("out").display().to_string()),
    );
    // Written aside and renamed, as an editor or a deployment tool would, so a reload never
    // reads half a file.
    let tmp = tenants.join(format!(".{}.tmp", s.id));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(tmp, tenants.join(format!("{}.toml", s.id))).unwrap();
}

impl Studio {
    /// Lines of `extra` before its first table go at the top of the file.
    fn extra_top(&self) -> String {
        self.extra
            .lines()
            .take_while(|l| !l.trim_start().starts_with('['))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn extra_tables(&self) -> String {
        self.extra
            .lines()
            .skip_while(|l| !l.trim_start().starts_with('['))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

pub async fn start_sim(studios: &[Studio]) -> OpenApiSim {
    start_sim_with(studios, SimOptions::default()).await
}

pub async fn start_sim_with(studios: &[Studio], options: SimOptions) -> OpenApiSim {
    let sims = studios
        .iter()
        .map(|s| {
            let mut sim = SimStudio::new(s.id, open_api_key(s.id));
            if let Some(n) = s.customers {
                sim = sim.with_customers(n);
            }
            match s.latency {
                Some((min, max)) => sim.with_latency(min, max),
                None => sim,
            }
        })
        .collect();
    OpenApiSim::start_with("127.0.0.1:0".parse().unwrap(), sims, options)
        .await
        .unwrap()
}

pub fn config_for(dir: &Path) -> Config {
    let mut config = Config::default();
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    config.http.workers = 2;
    config.admin.listen = "127.0.0.1:0".parse().unwrap();
    config.admin.token = Some(ADMIN_TOKEN.to_string().into());
    config.storage.path = dir.join("data");
    config.tenants.dir = dir.join("tenants");
    config
}

/// A relay running in this process.
pub struct TestApp {
    pub dir: tempfile::TempDir,
    pub sim: OpenApiSim,
    pub url: String,
    pub admin_url: String,
    pub handle: RelayHandle,
    /// The relay's `run`, which after the servers stop also stops the studios and waits for
    /// their file writes; awaited by `stop`, so the temp dir outlives every write into it.
    running: actix_web::rt::task::JoinHandle<std::io::Result<()>>,
    client: awc::Client,
}

/// The per-key abuse limit would refuse a test that sends webhooks as fast as it can.
pub fn unlimited_intake(config: &mut gymrelay::Config) {
    config.http.studio_requests_per_second = 1_000_000;
    config.http.studio_burst = 1_000_000;
}

pub async fn spawn_app(studios: Vec<Studio>) -> TestApp {
    spawn_app_with(studios, |_| {}).await
}

/// Like [`spawn_app`], with the test's own changes to the config.
pub async fn spawn_app_with(studios: Vec<Studio>, adjust: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_with_sim(studios, SimOptions::default(), adjust).await
}

/// Like [`spawn_app_with`], with the simulated Open API's options too.
pub async fn spawn_app_with_sim(
    studios: Vec<Studio>,
    options: SimOptions,
    adjust: impl FnOnce(&mut Config),
) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim_with(&studios, options).await;
    write_tenants(dir.path(), &studios, &sim);
    let mut config = config_for(dir.path());
    adjust(&mut config);
    let relay = Relay::start(&config).await.unwrap();
    let tls = config.http.tls_cert.is_some() || config.http.acme.is_some();
    let url = format!("{}://{}", if tls { "https" } else { "http" }, relay.addr());
    let admin_url = format!("http://{}", relay.admin_addr());
    let handle = relay.handle();
    let running = actix_web::rt::spawn(relay.run());
    TestApp {
        dir,
        sim,
        url,
        admin_url,
        handle,
        running,
        client: awc::Client::default(),
    }
}

impl TestApp {
    pub async fn post(&self, key: Option<&str>, body: impl Into<Vec<u8>>) -> (u16, Value) {
        post_with(
            &self.client,
            &format!("{}/webhook", self.url),
            key,
            body.into(),
        )
        .await
    }

    /// Sends a notification as the vendor would.
    pub async fn notify(
        &self,
        studio: &str,
        uuid: &str,
        event_type: &str,
        entity: i64,
    ) -> (u16, Value) {
        self.post(
            Some(&webhook_key(studio)),
            notification(uuid, event_type, entity, None).to_string(),
        )
        .await
    }

    /// GET or POST on the admin listener with the test token; returns status and body text.
    pub async fn admin(&self, method: &str, path: &str) -> (u16, String) {
        let url = format!("{}{path}", self.admin_url);
        let request = match method {
            "POST" => self.client.post(url),
            _ => self.client.get(url),
        };
        let mut res = request
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("admin answers");
        let body = res.body().await.unwrap_or_default();
        (
            res.status().as_u16(),
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    pub async fn admin_json(&self, method: &str, path: &str) -> Value {
        let (status, body) = self.admin(method, path).await;
        assert_eq!(status, 200, "{method} {path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    pub fn output(&self, studio: &str) -> PathBuf {
        self.dir.path().join("out").join(format!("{studio}.ndjson"))
    }

    /// Waits until the studio's file sink holds at least `n` events and returns them all.
    pub async fn delivered(&self, studio: &str, n: usize) -> Vec<Value> {
        let path = self.output(studio);
        eventually(&format!("{n} events in {}", path.display()), || {
            let events = read_ndjson(&path);
            async move { (events.len() >= n).then_some(events) }
        })
        .await
    }

    /// Waits until the first studio's inbox is empty: every event delivered (or buried).
    pub async fn inbox_emptied(&self) {
        eventually("the inbox to empty", || async {
            let studios = self.admin_json("GET", "/api/studios").await;
            (studios["studios"][0]["inbox_depth"] == 0).then_some(())
        })
        .await;
    }

    pub async fn stop(self) {
        self.handle.stop().await;
        self.running
            .await
            .expect("the relay's run did not panic")
            .expect("the relay stopped cleanly");
        self.sim.stop().await;
    }
}

pub async fn post_with(
    client: &awc::Client,
    url: &str,
    key: Option<&str>,
    body: Vec<u8>,
) -> (u16, Value) {
    let mut req = client
        .post(url)
        .insert_header(("content-type", "application/json; charset=utf-8"));
    if let Some(key) = key {
        req = req.insert_header(("x-api-key", key));
    }
    let mut res = req.send_body(body).await.expect("relay answers");
    let status = res.status().as_u16();
    let body = res.body().await.unwrap_or_default();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// Sends a `CUSTOMER_UPDATED` for `customer` to the relay at `url` with the studio's key, as
/// the vendor would; returns the status.
pub async fn notify_at(
    client: &awc::Client,
    url: &str,
    studio: &str,
    uuid: &str,
    customer: i64,
) -> u16 {
    let body = notification(uuid, "CUSTOMER_UPDATED", customer, None).to_string();
    post_with(client, url, Some(&webhook_key(studio)), body.into_bytes())
        .await
        .0
}

pub fn notification(uuid: &str, event_type: &str, entity: i64, content: Option<Value>) -> Value {
    let mut element = json!({"timestamp": 1642779144176i64, "type": event_type});
    if let Some(content) = content {
        element["content"] = content;
    }
    json!({"entityId": entity, "uuid": uuid, "payload": [element]})
}

pub fn read_ndjson(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Polls `check` until it yields a value or the deadline passes.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        actix_web::rt::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Sends `n` deletions (no Open API request needed) for `studio`, one after another, so the
/// inbox's order is the order of `ids`.
pub async fn send_deletions(app: &TestApp, studio: &str, prefix: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let uuid = format!("{prefix}-{i}");
        let (status, _) = app
            .notify(studio, &uuid, "CUSTOMER_DELETED", i as i64 + 1)
            .await;
        assert_eq!(status, 200);
        ids.push(uuid);
    }
    ids
}

/// Says a test is skipped because this machine lacks what it needs, or fails it where it must
/// run (`.ci/run` sets `TESTS_REQUIRE_ALL_SERVERS`, so CI never passes by skipping).
pub fn skip(reason: &str) {
    assert!(
        std::env::var_os("TESTS_REQUIRE_ALL_SERVERS").is_none(),
        "cannot run here, and TESTS_REQUIRE_ALL_SERVERS is set: {reason}"
    );
    eprintln!("SKIPPED: {reason}");
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4())
}

/// The relay's binary run as a partner runs it, with JSON logs at debug level, so a test can
/// read everything it logs.
pub struct RelayProcess {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    /// Everything logged so far, one JSON object a line.
    pub log: Vec<String>,
    /// `POST` webhooks here.
    pub url: String,
    pub admin_url: String,
}

impl RelayProcess {
    /// Writes `gymrelay.toml` into `dir` for the tenants already there, with `extra` appended
    /// (whole tables), and waits until both listeners are up.
    pub async fn start(dir: &Path, extra: &str) -> RelayProcess {
        let mut relay = RelayProcess::spawn(dir, extra);
        if let Err(log) = relay.listening().await {
            panic!("the relay ended before it listened:\n{log}");
        }
        relay
    }

    /// As [`RelayProcess::start`], without waiting for anything.
    pub fn spawn(dir: &Path, extra: &str) -> RelayProcess {
        use std::io::{BufRead, BufReader};
        use std::process::{Command, Stdio};

        let config = dir.join("gymrelay.toml");
        std::fs::write(
            &config,
            format!(
                "[http]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{ADMIN_TOKEN}\"\n[storage]\npath = {:?}\n[tenants]\ndir = {:?}\n{extra}",
                dir.join("data").display().to_string(),
                dir.join("tenants").display().to_string()
            ),
        )
        .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_gymrelay"))
            .args(["serve", "--log-format", "json", "--config"])
            .arg(&config)
            .env("RUST_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        RelayProcess {
            child,
            lines,
            log: Vec::new(),
            url: String::new(),
            admin_url: String::new(),
        }
    }

    /// Waits until both listeners are up and fills in their URLs, or returns the whole log if
    /// the relay ends first (its storage did not open, say).
    pub async fn listening(&mut self) -> Result<(), String> {
        let relay = &mut *self;
        let addresses = eventually("the relay to log its addresses", || {
            let webhook = relay.logged_addr("listening for webhooks on POST /webhook");
            let admin = relay.logged_addr("admin listener: /healthz /readyz /metrics /api");
            let both = webhook.zip(admin).map(|(webhook, admin)| {
                Ok((
                    format!("http://{webhook}/webhook"),
                    format!("http://{admin}"),
                ))
            });
            let ended = relay.child.try_wait().unwrap().is_some();
            let outcome = both.or_else(|| ended.then_some(Err(())));
            async move { outcome }
        })
        .await;
        match addresses {
            Ok((url, admin_url)) => {
                self.url = url;
                self.admin_url = admin_url;
                Ok(())
            }
            Err(()) => {
                // The reader thread ends with the child's stderr.
                while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
                    self.log.push(line);
                }
                Err(self.log.join("\n"))
            }
        }
    }

    /// Brings `log` up to date.
    pub fn read_log(&mut self) -> &[String] {
        self.log.extend(self.lines.try_iter());
        &self.log
    }

    /// The `addr` field of the first line with this message.
    fn logged_addr(&mut self, message: &str) -> Option<String> {
        self.read_log()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|l| l["fields"]["message"] == message)
            .and_then(|l| l["fields"]["addr"].as_str().map(str::to_string))
    }

    /// GET on the admin listener with the test token; returns the body text.
    pub async fn admin(&self, path: &str) -> String {
        let mut res = awc::Client::default()
            .get(format!("{}{path}", self.admin_url))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("admin answers");
        assert_eq!(res.status(), 200, "GET {path}");
        let body = res.body().await.unwrap_or_default();
        String::from_utf8_lossy(&body).into_owned()
    }

    /// Waits for the relay to end by itself; its exit code.
    pub async fn exit_code(&mut self) -> Option<i32> {
        let child = &mut self.child;
        eventually("the relay to exit", || {
            let exited = child.try_wait().unwrap();
            async move { exited }
        })
        .await
        .code()
    }

    /// Stops the relay as a service manager does (SIGTERM) and waits for it to exit cleanly.
    pub async fn stop(mut self) {
        let pid = self.child.id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(sent.success());
        assert_eq!(self.exit_code().await, Some(0), "a clean stop");
    }

    /// Kills the relay and returns its whole log.
    pub fn kill(mut self) -> String {
        let _ = self.child.kill();
        self.child.wait().unwrap();
        // The reader thread ends with the child's stderr.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.log.push(line);
        }
        self.log.join("\n")
    }
}

/// A test that fails before `kill` must not leave its relay running (and writing into a temp
/// dir already removed) for the rest of the suite and beyond.
impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Four senders posting unique uuids (`<prefix>-<sender>-<uuid v4>`) to `url`, spread over
/// `studios`, as fast as the relay answers, until `stop` (or 3000 each). One event in
/// `fetch_every` needs an Open API request (`CUSTOMER_UPDATED`), the others none
/// (`CUSTOMER_DELETED`), so the studio's budget does not hold up the drain. `count` counts the
/// 200s as they come; each sender returns the `(studio, uuid)` it got a 200 for.
pub fn send_until_stopped(
    url: &str,
    studios: &[&'static str],
    prefix: &'static str,
    fetch_every: i64,
    stop: &Arc<AtomicBool>,
    count: &Arc<AtomicUsize>,
) -> Vec<std::thread::JoinHandle<Vec<(String, String)>>> {
    (0..4)
        .map(|t| {
            let (url, stop, count) = (url.to_string(), stop.clone(), count.clone());
            let studio = studios[t % studios.len()];
            std::thread::spawn(move || {
                let agent = ureq::AgentBuilder::new()
                    .timeout(Duration::from_secs(5))
                    .build();
                let mut acked = Vec::new();
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) || i >= 3000 {
                        break;
                    }
                    let uuid = format!("{prefix}-{t}-{}", uuid::Uuid::new_v4());
                    let event_type = if i % fetch_every == 0 {
                        "CUSTOMER_UPDATED"
                    } else {
                        "CUSTOMER_DELETED"
                    };
                    let body = notification(&uuid, event_type, i + 1, None).to_string();
                    let answer = agent
                        .post(&url)
                        .set("x-api-key", &webhook_key(studio))
                        .send_string(&body);
                    match answer {
                        Ok(res) if res.status() == 200 => {
                            acked.push((studio.to_string(), uuid));
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(_) => {}
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
                acked
            })
        })
        .collect()
}

/// Stops the senders of [`send_until_stopped`]; what they got a 200 for.
pub async fn stop_senders(
    stop: &AtomicBool,
    senders: Vec<std::thread::JoinHandle<Vec<(String, String)>>>,
) -> Vec<(String, String)> {
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for s in senders {
        let got = actix_web::rt::task::spawn_blocking(move || s.join().unwrap())
            .await
            .unwrap();
        acked.extend(got);
    }
    acked
}

/// Posts each `(studio, uuid)` again and returns each answer's `status` (or what went wrong).
pub fn resend_all(url: &str, sent: &[(String, String)]) -> Vec<String> {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(5))
        .build();
    sent.iter()
        .map(|(studio, uuid)| {
            let body = notification(uuid, "CUSTOMER_DELETED", 1, None).to_string();
            match agent
                .post(url)
                .set("x-api-key", &webhook_key(studio))
                .send_string(&body)
            {
                Ok(res) => res
                    .into_json::<serde_json::Value>()
                    .map(|v| v["status"].as_str().unwrap_or_default().to_string())
                    .unwrap_or_else(|e| e.to_string()),
                Err(e) => e.to_string(),
            }
        })
        .collect()
}
