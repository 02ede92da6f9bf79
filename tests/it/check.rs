//! `gymrelay check` as an operator runs it: the real binary on temp trees of tenant files.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use gymrelay::simulate::Fault;

use crate::helpers::*;

/// What one run of the binary produced.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The line of the report about `file` (a path ending), failing with the whole report.
    fn line_for(&self, file: &str) -> &str {
        let found: Vec<&str> = self
            .stdout
            .lines()
            .filter(|l| l.contains(&format!("{file}: ")))
            .collect();
        assert_eq!(found.len(), 1, "one line for {file} in:\n{}", self.stdout);
        found[0]
    }
}

/// `gymrelay check --config <dir>/gymrelay.toml <extra>`, run in `dir`.
fn check(dir: &Path, extra: &[&str]) -> Run {
    let config = dir.join("gymrelay.toml").display().to_string();
    let mut args = vec!["check", "--config", &config];
    args.extend_from_slice(extra);
    gymrelay(dir, &args)
}

fn gymrelay(cwd: &Path, args: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_gymrelay"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("the gymrelay binary runs");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn write_config(dir: &Path, listen: &str) {
    let text = format!(
        "[http]\nlisten = {listen:?}\n[storage]\npath = {:?}\n[tenants]\ndir = {:?}\n",
        dir.join("data").display().to_string(),
        dir.join("tenants").display().to_string(),
    );
    std::fs::write(dir.join("gymrelay.toml"), text).unwrap();
}

/// A complete tenant file; `open_api` and `sink` are the bodies of those tables.
fn tenant_text(webhook_key: &str, open_api: &str, sink: &str) -> String {
    format!("webhook_api_keys = [{webhook_key:?}]\n[open_api]\n{open_api}\n[[sinks]]\n{sink}\n")
}

const GOOD_OPEN_API: &str = "base_url = \"https://x.open-api.perfectgym.com\"\napi_key = \"oa\"";
const GOOD_SINK: &str = "type = \"file\"\npath = \"out/x.ndjson\"";

fn write_tenant(dir: &Path, id: &str, text: &str) {
    let tenants = dir.join("tenants");
    std::fs::create_dir_all(&tenants).unwrap();
    std::fs::write(tenants.join(format!("{id}.toml")), text).unwrap();
}

fn write_secret(dir: &Path, name: &str, value: &str, mode: u32) {
    let path = dir.join("tenants").join(name);
    std::fs::write(&path, value).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_good_tree_passes() {
    let dir = tempfile::tempdir().unwrap();
    let tenants = dir.path().join("tenants");
    for id in ["berlin", "hamburg"] {
        write_tenant(
            dir.path(),
            id,
            &tenant_text(&webhook_key(id), GOOD_OPEN_API, GOOD_SINK),
        );
    }
    let from_file =
        "base_url = \"https://m.open-api.perfectgym.com\"\napi_key_file = \"munich.key\"";
    write_tenant(
        dir.path(),
        "munich",
        &tenant_text(&webhook_key("munich"), from_file, GOOD_SINK),
    );
    write_secret(dir.path(), "munich.key", "oa-munich\n", 0o600);
    write_config(dir.path(), "127.0.0.1:8080");

    let run = check(dir.path(), &[]);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert_eq!(
        run.stdout,
        format!(
            "checked 3 studios in {}: 3 ok, 0 with problems\n",
            tenants.display()
        )
    );

    // Without --config, ./gymrelay.toml is used as by `serve`.
    let run = gymrelay(dir.path(), &["check"]);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("3 ok"), "{}", run.stdout);

    // Public and plain HTTP: a warning, still a pass.
    write_config(dir.path(), "0.0.0.0:8080");
    let run = check(dir.path(), &[]);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.starts_with(
            "warning: the public listener is plain HTTP on 0.0.0.0:8080; PerfectGym Next only delivers to HTTPS\n"
        ),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("3 ok, 0 with problems"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_broken_tree_names_each_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tenants = d.join("tenants");
    write_tenant(d, "good", &tenant_text("wh-good", GOOD_OPEN_API, GOOD_SINK));
    write_tenant(d, "bad-toml", "webhook_api_keys = [\"wh-bad\"\n[open_api\n");
    write_tenant(
        d,
        "no-key",
        &tenant_text(
            "wh-no-key",
            "base_url = \"https://x.open-api.perfectgym.com\"",
            GOOD_SINK,
        ),
    );
    // The first file in sorted order keeps the key; the second is refused.
    write_tenant(
        d,
        "dup-a",
        &tenant_text("wh-shared", GOOD_OPEN_API, GOOD_SINK),
    );
    write_tenant(
        d,
        "dup-b",
        &tenant_text("wh-shared", GOOD_OPEN_API, GOOD_SINK),
    );
    write_tenant(
        d,
        "ftp",
        &tenant_text("wh-ftp", GOOD_OPEN_API, "type = \"ftp\"\npath = \"x\""),
    );
    write_tenant(
        d,
        "loose",
        &tenant_text(
            "wh-loose",
            "base_url = \"https://x.open-api.perfectgym.com\"\napi_key_file = \"loose.key\"",
            GOOD_SINK,
        ),
    );
    write_secret(d, "loose.key", "oa-loose-secret", 0o644);
    write_tenant(
        d,
        "bad-url",
        &tenant_text(
            "wh-bad-url",
            "base_url = \"ftp://nowhere\"\napi_key = \"oa\"",
            GOOD_SINK,
        ),
    );
    write_config(d, "127.0.0.1:8080");

    let run = check(d, &[]);
    assert_ne!(run.code, Some(0), "{}", run.stdout);
    assert_eq!(run.code, Some(1));
    let file = |id: &str| tenants.join(format!("{id}.toml")).display().to_string();
    let expect = [
        ("bad-toml", "(toml)", ""),
        ("no-key", "open_api.api_key", "missing"),
        ("dup-b", "webhook_api_keys", "already used by studio dup-a"),
        ("ftp", "sinks", "ftp"),
        ("loose", "open_api.api_key_file", "chmod 600"),
        ("bad-url", "open_api.base_url", "http:// or https://"),
    ];
    for (id, field, reason) in expect {
        let line = run.line_for(&format!("{id}.toml"));
        assert!(
            line.starts_with(&format!("{}: {field}", file(id))),
            "{id}: {line}"
        );
        assert!(line.contains(reason), "{id}: {line}");
    }
    let prefix = tenants.display().to_string();
    assert!(
        run.stdout
            .lines()
            .all(|l| l.starts_with(&prefix) || l.starts_with("checked ")),
        "one line per problem:\n{}",
        run.stdout
    );
    assert!(!run.stdout.contains("good.toml"), "{}", run.stdout);
    assert!(!run.stdout.contains("dup-a.toml"), "{}", run.stdout);
    assert!(
        run.stdout.ends_with(&format!(
            "checked 8 studios in {}: 2 ok, 6 with problems\n",
            tenants.display()
        )),
        "{}",
        run.stdout
    );
    assert!(run.stderr.contains("6 problems found"), "{}", run.stderr);
    assert!(!run.stdout.contains("oa-loose-secret"), "{}", run.stdout);
}

#[test]
fn config_and_directory_errors_fail() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("gymrelay.toml"),
        "[http]\nmax_body_bytes = \"big\"\n",
    )
    .unwrap();
    let run = check(dir.path(), &[]);
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    assert!(run.stdout.contains("http.max_body_bytes"), "{}", run.stdout);

    // A config naming a tenants directory that does not exist.
    write_config(dir.path(), "127.0.0.1:8080");
    let run = check(dir.path(), &[]);
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    assert!(
        run.stdout.contains("cannot read the tenants directory"),
        "{}",
        run.stdout
    );

    let run = gymrelay(dir.path(), &["check", "--config", "absent.toml"]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stdout.contains("config file not found"),
        "{}",
        run.stdout
    );
}

#[test]
fn tls_settings_and_certificate_files_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    write_tenant(
        dir.path(),
        "berlin",
        &tenant_text(&webhook_key("berlin"), GOOD_OPEN_API, GOOD_SINK),
    );
    // The config with these lines in its [http] table.
    let with_http = |lines: &str| {
        let text = format!(
            "[http]\nlisten = \"0.0.0.0:8443\"\n{lines}\n[storage]\npath = {:?}\n[tenants]\ndir = {:?}\n",
            dir.path().join("data").display().to_string(),
            dir.path().join("tenants").display().to_string(),
        );
        std::fs::write(dir.path().join("gymrelay.toml"), text).unwrap();
        check(dir.path(), &[])
    };

    // Serve would refuse each of these; check names the field or the file and the reason.
    let run = with_http("tls_cert = \"cert.pem\"");
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("http.tls_cert is set without http.tls_key"),
        "{}",
        run.stdout
    );

    let run = with_http("tls_cert = \"cert.pem\"\ntls_key = \"key.pem\"");
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    assert!(
        run.stdout.contains("cert.pem: cannot read it"),
        "{}",
        run.stdout
    );

    let good = crate::tls::TestCert::new();
    good.write(&dir.path().join("cert.pem"), &dir.path().join("key.pem"));
    let run = with_http("tls_cert = \"cert.pem\"\ntls_key = \"key.pem\"");
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    assert!(
        !run.stdout.contains("warning"),
        "HTTPS on a public address is the point: {}",
        run.stdout
    );

    let other = crate::tls::TestCert::new();
    std::fs::write(dir.path().join("key.pem"), &other.key_pem).unwrap();
    let run = with_http("tls_cert = \"cert.pem\"\ntls_key = \"key.pem\"");
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("key.pem: the private key does not belong to the certificate in cert.pem"),
        "{}",
        run.stdout
    );
    assert!(
        !run.stdout.contains(other.key_pem.lines().nth(1).unwrap()),
        "{}",
        run.stdout
    );

    let acme = "[http.acme]\ndomains = [\"relay.example.com\"]\ncache_dir = \"acme\"";
    let run = with_http(&format!(
        "tls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n{acme}"
    ));
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    assert!(run.stdout.contains("mutually exclusive"), "{}", run.stdout);

    let run = with_http("[http.acme]\ndomains = []");
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    assert!(
        run.stdout.contains("http.acme.domains is empty"),
        "{}",
        run.stdout
    );

    let run = with_http(acme);
    assert_eq!(run.code, Some(0), "{}", run.stdout);
}

#[actix_rt::test]
async fn online_probes_each_studio_key() {
    let dir = tempfile::tempdir().unwrap();
    let studios = [
        Studio::new("right"),
        Studio::new("wrong"),
        Studio::new("hangs"),
    ];
    let sim = start_sim(&studios).await;
    write_tenants(dir.path(), &studios, &sim);
    let wrong = dir.path().join("tenants").join("wrong.toml");
    let text = std::fs::read_to_string(&wrong).unwrap();
    std::fs::write(&wrong, text.replace(&open_api_key("wrong"), "not-the-key")).unwrap();
    // A studio whose Open API accepts the connection and never answers.
    sim.set_fault("hangs", Fault::Hang);
    // One whose Open API refuses connections: a port that was just free.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    write_tenant(
        dir.path(),
        "refused",
        &tenant_text(
            "wh-refused",
            &format!("base_url = \"http://{closed}/x\"\napi_key = \"oa-refused\""),
            GOOD_SINK,
        ),
    );
    write_config(dir.path(), "127.0.0.1:8080");

    let started = Instant::now();
    let path = dir.path().to_path_buf();
    let run = actix_web::rt::task::spawn_blocking(move || check(&path, &["--online"]))
        .await
        .unwrap();
    let took = started.elapsed();

    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(
        lines.contains(&"right: Open API key accepted (200)"),
        "{}",
        run.stdout
    );
    assert!(
        lines.contains(&"wrong: Open API key rejected (401)"),
        "{}",
        run.stdout
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("hangs: Open API unreachable: ")),
        "{}",
        run.stdout
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("refused: Open API unreachable: ")),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.ends_with(&format!(
            "checked 4 studios in {}: 1 ok, 3 with problems\n",
            dir.path().join("tenants").display()
        )),
        "{}",
        run.stdout
    );
    for key in ["oa-right", "not-the-key", "oa-hangs", "oa-refused"] {
        assert!(!run.stdout.contains(key), "{}", run.stdout);
        assert!(!run.stderr.contains(key), "{}", run.stderr);
    }
    // Probes run at once: the hanging studio bounds the whole check, not the sum of the probes.
    assert!(
        took < Duration::from_secs(9),
        "check --online took {took:?}"
    );

    let probes: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|r| r.studio == "right" || r.studio == "wrong")
        .collect();
    assert_eq!(probes.len(), 2, "{probes:?}");
    for probe in &probes {
        assert_eq!(probe.method, "HEAD");
        assert_eq!(probe.path, "/v1/studios/information");
        assert_eq!(probe.key_ok, probe.studio == "right");
    }
    sim.stop().await;
}
