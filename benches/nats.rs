//! `cargo bench --bench nats`: delivery into NATS JetStream beside delivery into files, side by
//! side in one run. Each relay gets the same flood of webhooks that need no Open API request
//! (10 studios, 32 keep-alive connections, GYMRELAY_BENCH_SECS long, default 10); the figure is
//! events delivered per second, from the first webhook until the sink holds every accepted one.
//! The NATS server (Debian's `nats-server -js`, file storage) runs on this machine; the bench
//! skips that row where it is not installed.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

const STUDIOS: usize = 10;
const CONNECTIONS: usize = 32;
const STREAM: &str = "GYMRELAY";

/// Tenant files like the other benches', with `sink` in place of the file sink.
fn write_tenants_with(dir: &Path, sink: impl Fn(&str) -> String) {
    let tenants = dir.join("tenants");
    std::fs::create_dir_all(&tenants).expect("tenants dir");
    for i in 0..STUDIOS {
        let id = format!("studio-{i}");
        let text = format!(
            "webhook_api_keys = [\"key-{i}\"]\n[open_api]\nbase_url = \"http://127.0.0.1:9/{id}\"\napi_key = \"openapi-{i}\"\n{}",
            sink(&id)
        );
        std::fs::write(tenants.join(format!("{id}.toml")), text).expect("tenant file");
    }
}

/// Floods a relay with deletions and waits until `delivered()` reaches what it accepted.
fn measure(dir: &Path, delivered: impl Fn() -> u64) -> (u64, f64) {
    let relay = BenchRelay::start(config_in(dir));
    let started = Instant::now();
    let report = run_load(relay.addr, CONNECTIONS, seconds(10), |connection, n| {
        let studio = connection % STUDIOS;
        (
            notification(&format!("d-{connection}-{n}"), "CUSTOMER_DELETED", n + 1),
            format!("key-{studio}"),
        )
    });
    let deadline = Instant::now() + Duration::from_secs(600);
    while delivered() < report.ok && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let count = delivered();
    relay.stop();
    (count, count as f64 / elapsed)
}

fn count_lines(dir: &Path) -> u64 {
    let Ok(files) = std::fs::read_dir(dir) else {
        return 0;
    };
    files
        .filter_map(Result::ok)
        .filter_map(|f| std::fs::read(f.path()).ok())
        .map(|bytes| bytes.iter().filter(|b| **b == b'\n').count() as u64)
        .sum()
}

fn start_nats(store: &Path) -> Option<(Child, u16)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let child = Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(store)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Some((child, port))
}

fn stream_count(url: &str) -> u64 {
    actix_web::rt::System::new().block_on(async {
        let Ok(client) = async_nats::connect(url).await else {
            return 0;
        };
        let context = async_nats::jetstream::new(client);
        match context.get_stream(STREAM).await {
            Ok(mut stream) => stream.info().await.map_or(0, |i| i.state.messages),
            Err(_) => 0,
        }
    })
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let files = dir.path().join("files");
    let out = files.join("out");
    write_tenants_with(&files, |id| {
        format!(
            "[[sinks]]\ntype = \"file\"\npath = {:?}\n",
            out.join(format!("{id}.ndjson")).display().to_string()
        )
    });
    let (file_count, file_rate) = measure(&files, || count_lines(&out));

    println!(
        "nats: {STUDIOS} studios, {CONNECTIONS} connections, deletions (no Open API request), loopback, 2 cores"
    );
    println!("{:>22} {:>10} {:>14}", "", "delivered", "delivered/s");
    println!("{:>22} {file_count:>10} {file_rate:>14.0}", "file sink");
    let Some((mut server, port)) = start_nats(&dir.path().join("nats-store")) else {
        println!(
            "{:>22} skipped: nats-server is not installed",
            "NATS JetStream sink"
        );
        return;
    };
    let url = format!("nats://127.0.0.1:{port}");
    let nats = dir.path().join("nats");
    write_tenants_with(&nats, |_| {
        format!("[[sinks]]\ntype = \"nats\"\nurl = {url:?}\nstream = \"{STREAM}\"\ncreate_stream = true\n")
    });
    let (nats_count, nats_rate) = measure(&nats, || stream_count(&url));
    println!(
        "{:>22} {nats_count:>10} {nats_rate:>14.0}",
        "NATS JetStream sink"
    );
    let _ = server.kill();
    let _ = server.wait();
}
