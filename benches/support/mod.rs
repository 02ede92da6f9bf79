//! Shared by the benches: a keep-alive HTTP/1.1 load generator on plain TCP (so the client
//! costs little next to the server on the same two cores), process memory, tenant files, and
//! relays on threads of their own.

#![allow(dead_code)] // each bench uses a different part

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use hdrhistogram::Histogram;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// What one run measured.
pub struct LoadReport {
    pub ok: u64,
    pub failed: u64,
    pub elapsed: Duration,
    /// Acknowledgement latencies, microseconds. A histogram of fixed size rather than a list:
    /// the load generator runs in the measured process, and a list of every latency grew by
    /// up to 13 MiB in a 60 s flood, counted as the relay's memory.
    pub latencies_us: Histogram<u64>,
    pub peak_rss_mib: f64,
    /// Resident memory every 100 ms during the run, KiB.
    pub rss_samples_kib: Vec<u64>,
    /// At the same moments, jemalloc's count of allocated bytes, KiB. It includes what its
    /// thread caches keep for reuse; RSS that grows while this does not is pages the allocator
    /// holds beyond that.
    pub allocated_samples_kib: Vec<u64>,
    /// The most threads the process had at one of those moments: each holds a stack and an
    /// allocator cache, so a pool that grows with load shows up here before it does in RSS.
    pub peak_threads: u64,
}

impl LoadReport {
    pub fn per_second(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    /// Within 0.1 % (three significant digits).
    pub fn percentile_ms(&self, p: f64) -> f64 {
        self.latencies_us.value_at_quantile(p) as f64 / 1000.0
    }
}

/// `body(connection, n)` gives the JSON body and the webhook key of request n on a connection.
/// The connections are driven by one thread (async, like wrk), so the client leaves the second
/// core to the server.
pub fn run_load<F>(addr: SocketAddr, connections: usize, duration: Duration, body: F) -> LoadReport
where
    F: Fn(usize, u64) -> (String, String) + Send + Sync + 'static,
{
    run_paced_load(addr, connections, duration, 0.0, body)
}

/// Like [`run_load`], but the connections together send at most `rate` requests per second
/// (0 = as fast as the server answers).
pub fn run_paced_load<F>(
    addr: SocketAddr,
    connections: usize,
    duration: Duration,
    rate: f64,
    body: F,
) -> LoadReport
where
    F: Fn(usize, u64) -> (String, String) + Send + Sync + 'static,
{
    let body = Arc::new(body);
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_every(Duration::from_millis(100), || {
        (rss_kib(), allocated_kib(), threads())
    });
    let interval = (rate > 0.0).then(|| Duration::from_secs_f64(connections as f64 / rate));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("load runtime");
    let started = Instant::now();
    let results = runtime.block_on(async {
        let tasks: Vec<_> = (0..connections)
            .map(|c| {
                let (body, stop) = (body.clone(), stop.clone());
                tokio::task::spawn(async move {
                    let mut latencies = latency_histogram();
                    let mut failed = 0u64;
                    let mut conn = Connection::open(addr).await;
                    let mut n = 0u64;
                    let mut pace = interval.map(|every| {
                        let mut tick = tokio::time::interval(every);
                        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                        tick
                    });
                    while !stop.load(Ordering::Relaxed) {
                        if let Some(tick) = pace.as_mut() {
                            tick.tick().await;
                        }
                        let (json, key) = body(c, n);
                        n += 1;
                        let sent = Instant::now();
                        match conn.post(&json, &key).await {
                            Ok(200) => {
                                latencies.saturating_record(sent.elapsed().as_micros() as u64)
                            }
                            Ok(_) => failed += 1,
                            Err(_) => {
                                failed += 1;
                                conn = Connection::open(addr).await;
                            }
                        }
                    }
                    (latencies, failed)
                })
            })
            .collect();
        tokio::time::sleep(duration).await;
        stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for t in tasks {
            all.push(t.await.expect("load task"));
        }
        all
    });
    let elapsed = started.elapsed();
    let mut latencies_us = latency_histogram();
    let mut failed = 0;
    for (l, f) in results {
        latencies_us.add(l).expect("same bounds");
        failed += f;
    }
    let samples = sampler.stop();
    LoadReport {
        ok: latencies_us.len(),
        failed,
        elapsed,
        latencies_us,
        peak_rss_mib: samples.iter().map(|s| s.0).max().unwrap_or(0) as f64 / 1024.0,
        rss_samples_kib: samples.iter().map(|s| s.0).collect(),
        allocated_samples_kib: samples.iter().map(|s| s.1).collect(),
        peak_threads: samples.iter().map(|s| s.2).max().unwrap_or(0),
    }
}

/// Readings taken on a thread of their own until [`Sampling::stop`].
pub struct Sampling<T> {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<Vec<T>>,
}

/// Takes `read()` now and then every `period` until stopped.
pub fn sample_every<T: Send + 'static>(
    period: Duration,
    mut read: impl FnMut() -> T + Send + 'static,
) -> Sampling<T> {
    let stop = Arc::new(AtomicBool::new(false));
    let thread = thread::spawn({
        let stop = stop.clone();
        move || {
            let mut samples = Vec::new();
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                if Instant::now() >= next {
                    samples.push(read());
                    next += period;
                }
                // Short naps, so that a long period does not hold up the stop.
                thread::sleep(period.min(Duration::from_millis(50)));
            }
            samples
        }
    });
    Sampling { stop, thread }
}

impl<T> Sampling<T> {
    pub fn stop(self) -> Vec<T> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

/// Starts the simulated Open API for `n` studios on a thread of its own, for the relay's
/// lifetime; returns its address.
pub fn start_sim_thread(n: usize) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let sim = start_sim(n).await;
            tx.send(sim.addr()).expect("report");
            std::future::pending::<()>().await;
        })
    });
    rx.recv().expect("simulated Open API started")
}

/// 1 µs to 60 s, three significant digits.
fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

struct Connection {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

impl Connection {
    async fn open(addr: SocketAddr) -> Connection {
        let stream = TcpStream::connect(addr)
            .await
            .expect("connect to the server under test");
        stream.set_nodelay(true).ok();
        let (read, write) = stream.into_split();
        Connection {
            reader: BufReader::new(read),
            writer: write,
        }
    }

    /// One request on the kept-alive connection; returns the status.
    async fn post(&mut self, json: &str, key: &str) -> std::io::Result<u16> {
        let request = format!(
            "POST /webhook HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nx-api-key: {key}\r\nContent-Length: {}\r\n\r\n{json}",
            json.len()
        );
        self.writer.write_all(request.as_bytes()).await?;
        let mut line = String::new();
        self.reader.read_line(&mut line).await?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut length = 0usize;
        loop {
            line.clear();
            if self.reader.read_line(&mut line).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).await?;
        Ok(status)
    }
}

/// Resident memory of this process, KiB.
pub fn rss_kib() -> u64 {
    process_status("VmRSS:")
}

/// Threads of this process.
pub fn threads() -> u64 {
    process_status("Threads:")
}

/// A number from the kernel's status file of this process, 0 if it has none.
fn process_status(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Bytes jemalloc has handed out and not had back, KiB.
pub fn allocated_kib() -> u64 {
    let _ = tikv_jemalloc_ctl::epoch::advance();
    tikv_jemalloc_ctl::stats::allocated::read().unwrap_or(0) as u64 / 1024
}

/// Bytes under `dir`.
pub fn disk_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => disk_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Writes `tenants/<id>.toml` for studios `studio-0..n`: webhook key `key-<i>`, Open API at
/// `base_url(id)`, a file sink under `out/`, and `open_api.max_in_flight` if
/// [`max_in_flight`] is set.
pub fn write_tenants(dir: &Path, n: usize, rpm: u32, base_url: impl Fn(&str) -> String) {
    let tenants = dir.join("tenants");
    std::fs::create_dir_all(&tenants).expect("tenants dir");
    let in_flight = max_in_flight()
        .map(|m| format!("max_in_flight = {m}\n"))
        .unwrap_or_default();
    for i in 0..n {
        let id = format!("studio-{i}");
        let text = format!(
            "webhook_api_keys = [\"key-{i}\"]\n[open_api]\nbase_url = {:?}\napi_key = \"openapi-{i}\"\nrequests_per_minute = {rpm}\n{in_flight}[[sinks]]\ntype = \"file\"\npath = {:?}\n",
            base_url(&id),
            dir.join("out").join(format!("{id}.ndjson")).display().to_string()
        );
        std::fs::write(tenants.join(format!("{id}.toml")), text).expect("tenant file");
    }
}

/// Writes `tenants/<id>.toml`: webhook key `key-<id>`, Open API key `openapi-<id>` at
/// `base_url` with `rpm` and the further `[open_api]` lines `open_api_extra`, and an http sink to
/// `http://<receiver>/<id>` (see [`start_receiver`]).
pub fn write_http_tenant(
    dir: &Path,
    id: &str,
    base_url: &str,
    rpm: u32,
    open_api_extra: &str,
    receiver: SocketAddr,
) {
    let tenants = dir.join("tenants");
    std::fs::create_dir_all(&tenants).expect("tenants dir");
    let text = format!(
        "webhook_api_keys = [\"key-{id}\"]\n[open_api]\nbase_url = {base_url:?}\n\
         api_key = \"openapi-{id}\"\nrequests_per_minute = {rpm}\n{open_api_extra}\
         [[sinks]]\ntype = \"http\"\nurl = \"http://{receiver}/{id}\"\nsecret = \"bench\"\n"
    );
    std::fs::write(tenants.join(format!("{id}.toml")), text).expect("tenant file");
}

/// `GYMRELAY_BENCH_MAX_IN_FLIGHT`: Open API requests a studio may keep in flight. Unset, the
/// tenant files leave the key out and the relay's default applies; relays that do not know the
/// key refuse a tenant file that has it.
pub fn max_in_flight() -> Option<u32> {
    let value = std::env::var("GYMRELAY_BENCH_MAX_IN_FLIGHT").ok()?;
    Some(
        value
            .trim()
            .parse()
            .expect("GYMRELAY_BENCH_MAX_IN_FLIGHT must be a whole number"),
    )
}

/// `name` parsed, else `default`; a value that does not parse stops the bench rather than
/// measure something else than asked.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(value) => value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}: {value:?} is not a valid number")),
        Err(_) => default,
    }
}

/// `GYMRELAY_BENCH_LATENCIES_MS`, e.g. `0,150,400`, else `default`: the simulated Open API's
/// answer times, one studio (or group of studios) per entry.
pub fn latencies_ms(default: &str) -> Vec<u64> {
    let text = std::env::var("GYMRELAY_BENCH_LATENCIES_MS").unwrap_or_else(|_| default.to_owned());
    let latencies: Vec<u64> = text
        .split(',')
        .map(|ms| {
            ms.trim().parse().unwrap_or_else(|_| {
                panic!("GYMRELAY_BENCH_LATENCIES_MS: {ms:?} is not a number of milliseconds")
            })
        })
        .collect();
    assert!(!latencies.is_empty());
    latencies
}

/// Seconds a bench phase runs: `GYMRELAY_BENCH_SECS`, else `default`.
pub fn seconds(default: u64) -> Duration {
    Duration::from_secs(
        std::env::var("GYMRELAY_BENCH_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default),
    )
}

pub fn notification(uuid: &str, event_type: &str, entity: u64) -> String {
    format!(
        r#"{{"entityId":{entity},"uuid":"{uuid}","payload":[{{"timestamp":1642779144176,"type":"{event_type}"}}]}}"#
    )
}

/// The simulated Open API for studios `studio-0..n` (Open API key `openapi-<i>`).
pub async fn start_sim(n: usize) -> gymrelay::simulate::OpenApiSim {
    let studios = (0..n)
        .map(|i| gymrelay::simulate::SimStudio::new(format!("studio-{i}"), format!("openapi-{i}")))
        .collect();
    // Nothing reads its log here; kept, it would count in the memory the benches report.
    let options = gymrelay::simulate::SimOptions {
        record_requests: false,
        ..Default::default()
    };
    gymrelay::simulate::OpenApiSim::start_with("127.0.0.1:0".parse().unwrap(), studios, options)
        .await
        .expect("simulated Open API")
}

/// Default config on ephemeral loopback ports, storage and tenants under `dir`.
pub fn config_in(dir: &Path) -> gymrelay::Config {
    let mut config = gymrelay::Config::default();
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    config.admin.listen = "127.0.0.1:0".parse().unwrap();
    config.storage.path = dir.join("data");
    config.tenants.dir = dir.join("tenants");
    // The benches measure throughput; the per-key abuse limit would be what they measured.
    config.http.studio_requests_per_second = 1_000_000;
    config.http.studio_burst = 1_000_000;
    // GYMRELAY_BENCH_CACHE_MIB compares sled cache sizes without a config file.
    if let Some(mib) = std::env::var("GYMRELAY_BENCH_CACHE_MIB")
        .ok()
        .and_then(|m| m.parse::<u64>().ok())
    {
        config.storage.cache_capacity_bytes = mib << 20;
    }
    config
}

/// A relay on a thread of its own.
pub struct BenchRelay {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    handle: gymrelay::app::RelayHandle,
    thread: thread::JoinHandle<()>,
}

impl BenchRelay {
    /// Returns once both listeners are bound.
    pub fn start(config: gymrelay::Config) -> BenchRelay {
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let relay = gymrelay::Relay::start(&config).await.expect("relay starts");
                tx.send((relay.addr(), relay.admin_addr(), relay.handle()))
                    .expect("report");
                let _ = relay.run().await;
            })
        });
        let (addr, admin, handle) = rx.recv().expect("relay started");
        BenchRelay {
            addr,
            admin,
            handle,
            thread,
        }
    }

    /// Stops the relay and waits for its thread. A relay left running (its backlog still
    /// draining) writes into its data directory while the bench's temp dir is removed, and
    /// that removal then fails quietly, leaving up to a gigabyte behind per run.
    pub fn stop(self) {
        actix_web::rt::System::new().block_on(self.handle.stop());
        let _ = self.thread.join();
    }
}

/// Events not yet delivered, summed over the studios, from the relay's /metrics.
pub fn backlog(admin: SocketAddr) -> f64 {
    let metrics = ureq::get(&format!("http://{admin}/metrics"))
        .call()
        .ok()
        .and_then(|r| r.into_string().ok())
        .unwrap_or_default();
    metrics
        .lines()
        .filter(|l| l.starts_with("gymrelay_inbox_depth{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// When each `webhook-id` first arrived at an http receiver in the bench's process.
pub type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

/// An http receiver for the relay's http sinks, answering 200 to everything, each answer
/// `answer_after` the request arrived (as a receiver across a network would take); must be
/// started inside an actix system. Returns its address, its handle (to stop it) and what it
/// receives.
pub fn start_receiver(
    answer_after: Duration,
) -> (SocketAddr, actix_web::dev::ServerHandle, Arrivals) {
    let arrivals: Arrivals = Arc::default();
    let data = web::Data::new((arrivals.clone(), answer_after));
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .default_service(web::to(receive))
    })
    .workers(1)
    .disable_signals()
    .bind("127.0.0.1:0")
    .expect("receiver");
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    (addr, handle, arrivals)
}

async fn receive(req: HttpRequest, data: web::Data<(Arrivals, Duration)>) -> HttpResponse {
    let now = Instant::now();
    let (arrivals, answer_after) = data.get_ref();
    if let Some(id) = req
        .headers()
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
    {
        arrivals
            .lock()
            .unwrap()
            .entry(id.to_string())
            .or_insert(now);
    }
    if !answer_after.is_zero() {
        actix_web::rt::time::sleep(*answer_after).await;
    }
    HttpResponse::Ok().finish()
}

/// Webhook -> sink latencies, microseconds, of the events `sent` (id and when its webhook was
/// sent), and how many of them never arrived.
pub fn sink_latencies<'a>(
    sent: impl IntoIterator<Item = (&'a str, Instant)>,
    arrived: &HashMap<String, Instant>,
) -> (Histogram<u64>, usize) {
    let mut histogram = latency_histogram();
    let mut missing = 0;
    for (id, at) in sent {
        match arrived.get(id) {
            Some(when) => {
                histogram.saturating_record(when.saturating_duration_since(at).as_micros() as u64)
            }
            None => missing += 1,
        }
    }
    (histogram, missing)
}

/// Three significant digits, in milliseconds.
pub fn quantile_ms(histogram: &Histogram<u64>, q: f64) -> f64 {
    histogram.value_at_quantile(q) as f64 / 1000.0
}
