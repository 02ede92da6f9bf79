//! One studio's file, `tenants/<studio-id>.toml`: parsed, validated and with secrets resolved,
//! so that nothing downstream has to deal with a half-valid tenant.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::entity_selection::EntitySelection;
use crate::redacted_url::RedactedUrl;

mod entity;
mod nats;
mod reconcile;
pub use nats::{NatsCredentials, NatsSettings, DEFAULT_SUBJECT};
pub use reconcile::ReconcileSettings;

/// The vendor's default cap per endpoint and minute; a budget above it draws 429s unless the
/// studio's contract allows more, so it is a warning, not an error.
pub const VENDOR_REQUESTS_PER_MINUTE: u32 = 1000;
const MAX_REQUESTS_PER_MINUTE: u32 = 60_000;
const DEFAULT_REQUESTS_PER_MINUTE: u32 = 900;
/// Requests a studio may have outstanding at once. By Little's law, 16 keep the default budget
/// of 900 a minute (15 a second) busy at up to a second's round trip; the vendor's answers
/// take 100-300 ms.
const DEFAULT_MAX_IN_FLIGHT: u32 = 16;
const MAX_IN_FLIGHT: u32 = 256;

/// A studio id: the tenant file's stem. Restricted so it is safe in storage keys, paths and logs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StudioId(String);

impl StudioId {
    pub fn parse(s: &str) -> Result<StudioId, String> {
        let valid = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if valid {
            Ok(StudioId(s.to_string()))
        } else {
            Err(format!(
                "studio id {s:?} (the file name) must be 1-64 characters of a-z, A-Z, 0-9, '-' or '_'"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StudioId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A problem with one tenant file, naming the file and the field.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {field}: {reason}", file.display())]
pub struct TenantError {
    pub file: PathBuf,
    pub field: String,
    pub reason: String,
}

/// A studio ready to run.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: StudioId,
    pub name: String,
    pub file: PathBuf,
    pub webhook_keys: Vec<SecretString>,
    pub open_api: OpenApiSettings,
    pub events: EventFilter,
    /// Which fields of each Open API answer are kept (`[entity.<family>]`).
    pub entity: EntitySelection,
    pub sinks: Vec<SinkSettings>,
    /// When the relay sweeps the studio's customers by itself (`[reconcile]`).
    pub reconcile: ReconcileSettings,
    /// Identifies this exact version, secrets included, so a reload restarts only what changed.
    pub fingerprint: [u8; 32],
}

#[derive(Debug, Clone)]
pub struct OpenApiSettings {
    /// Without a trailing slash.
    pub base_url: String,
    pub api_key: SecretString,
    pub requests_per_minute: u32,
    /// Requests outstanding at once; 1 makes them strictly one at a time.
    pub max_in_flight: u32,
    pub timeout: Duration,
}

/// Which event types a studio wants; the rest are acknowledged and not processed.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    only: Option<Vec<glob::Pattern>>,
}

impl EventFilter {
    pub fn allows(&self, event_type: &str) -> bool {
        match &self.only {
            None => true,
            Some(patterns) => patterns.iter().any(|p| p.matches(event_type)),
        }
    }
}

#[derive(Clone)]
pub enum SinkSettings {
    File {
        path: PathBuf,
    },
    Http {
        url: RedactedUrl,
        secret: SecretString,
        timeout: Duration,
    },
    Command {
        argv: Vec<String>,
        timeout: Duration,
    },
    Nats(NatsSettings),
}

/// By hand: the secret is not shown at all, a command's arguments only counted.
impl fmt::Debug for SinkSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SinkSettings::File { path } => f.debug_struct("File").field("path", path).finish(),
            SinkSettings::Http { url, timeout, .. } => f
                .debug_struct("Http")
                .field("url", url)
                .field("secret", &"[redacted]")
                .field("timeout", timeout)
                .finish(),
            SinkSettings::Command { argv, timeout } => f
                .debug_struct("Command")
                .field("program", &argv[0])
                .field("args", &argv.len().saturating_sub(1))
                .field("timeout", timeout)
                .finish(),
            SinkSettings::Nats(nats) => f
                .debug_struct("Nats")
                .field("servers", &nats.shown_servers())
                .field("subject", &nats.subject)
                .field("stream", &nats.stream)
                .field("timeout", &nats.timeout)
                .finish_non_exhaustive(),
        }
    }
}

impl SinkSettings {
    /// Stable name of the sink within its studio: delivery progress is recorded under it.
    /// It appears in logs, metrics and dead letters, so it leaves out what may carry a secret:
    /// a URL's user info and query, a command's arguments.
    pub fn key(&self) -> String {
        match self {
            SinkSettings::File { path } => format!("file:{}", path.display()),
            SinkSettings::Http { url, .. } => format!("http:{url}"),
            SinkSettings::Command { argv, .. } => format!("command:{}", argv[0]),
            SinkSettings::Nats(nats) => format!("nats:{}/{}", nats.shown_servers(), nats.stream),
        }
    }
}

impl Tenant {
    /// Settings that are allowed but probably wrong.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        let rpm = self.open_api.requests_per_minute;
        if rpm > VENDOR_REQUESTS_PER_MINUTE {
            warnings.push(format!(
                "open_api.requests_per_minute = {rpm} is above the vendor's default cap of {VENDOR_REQUESTS_PER_MINUTE} per endpoint: expect 429s unless the studio's contract allows it"
            ));
        }
        warnings
    }

    /// One key per sink, unique within the studio (a repeated key gets `#2`, `#3`, ...).
    pub fn sink_keys(&self) -> Vec<String> {
        let mut seen: std::collections::HashMap<String, usize> = Default::default();
        self.sinks
            .iter()
            .map(|sink| {
                let key = sink.key();
                let n = seen.entry(key.clone()).or_insert(0);
                *n += 1;
                if *n == 1 {
                    key
                } else {
                    format!("{key}#{n}")
                }
            })
            .collect()
    }
}

// ---- the file as written ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantFile {
    name: Option<String>,
    #[serde(default)]
    webhook_api_keys: Vec<String>,
    webhook_api_key_env: Option<String>,
    webhook_api_key_file: Option<PathBuf>,
    open_api: OpenApiFile,
    #[serde(default)]
    events: EventsFile,
    #[serde(default)]
    sinks: Vec<SinkFile>,
    #[serde(default)]
    entity: std::collections::BTreeMap<String, entity::SelectionFile>,
    #[serde(default)]
    reconcile: reconcile::ReconcileFile,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenApiFile {
    base_url: String,
    api_key: Option<String>,
    api_key_env: Option<String>,
    api_key_file: Option<PathBuf>,
    requests_per_minute: Option<u32>,
    max_in_flight: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct EventsFile {
    only: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
enum SinkFile {
    File {
        path: PathBuf,
    },
    Http {
        url: String,
        secret: Option<String>,
        secret_env: Option<String>,
        secret_file: Option<PathBuf>,
        #[serde(default, with = "humantime_serde")]
        timeout: Option<Duration>,
    },
    Command {
        argv: Vec<String>,
        #[serde(default, with = "humantime_serde")]
        timeout: Option<Duration>,
    },
    Nats(Box<nats::NatsFile>),
}

/// Reads and validates one tenant file. Relative `_file` paths are resolved against the
/// tenant file's directory, so a studio's secrets can sit beside its file.
pub fn load(path: &Path) -> Result<Tenant, TenantError> {
    let err = |field: &str, reason: String| TenantError {
        file: path.to_path_buf(),
        field: field.to_string(),
        reason,
    };
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .ok_or_else(|| err("(file name)", "not valid UTF-8".into()))?;
    let id = StudioId::parse(stem).map_err(|reason| err("(file name)", reason))?;
    let text = std::fs::read_to_string(path).map_err(|e| err("(file)", e.to_string()))?;
    let raw: TenantFile = parse(&text).map_err(|(field, reason)| err(&field, reason))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tenant = build(id, raw, path, dir, &err)?;
    tenant.fingerprint = fingerprint(&text, &tenant);
    Ok(tenant)
}

/// Changes whenever the file or any secret it points to changes (a key rotated in a `_file`
/// or `_env` counts as an edit).
fn fingerprint(text: &str, tenant: &Tenant) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    hash.update(text.as_bytes());
    let secrets = tenant
        .webhook_keys
        .iter()
        .chain(std::iter::once(&tenant.open_api.api_key))
        .chain(tenant.sinks.iter().filter_map(|s| match s {
            SinkSettings::Http { secret, .. } => Some(secret),
            SinkSettings::Nats(nats) => match &nats.credentials {
                NatsCredentials::Token(secret)
                | NatsCredentials::UserPassword {
                    password: secret, ..
                } => Some(secret),
                NatsCredentials::None | NatsCredentials::CredsFile(_) => None,
            },
            _ => None,
        }));
    for secret in secrets {
        hash.update([0]);
        hash.update(secret.expose_secret().as_bytes());
    }
    // A creds file is read by the client when it connects; a rotated one must restart the studio.
    for sink in &tenant.sinks {
        if let SinkSettings::Nats(NatsSettings {
            credentials: NatsCredentials::CredsFile(path),
            ..
        }) = sink
        {
            hash.update([0]);
            hash.update(std::fs::read(path).unwrap_or_default());
        }
    }
    hash.finalize().into()
}

fn build(
    id: StudioId,
    raw: TenantFile,
    file: &Path,
    dir: &Path,
    err: &dyn Fn(&str, String) -> TenantError,
) -> Result<Tenant, TenantError> {
    let mut webhook_keys: Vec<SecretString> = raw
        .webhook_api_keys
        .into_iter()
        .map(SecretString::from)
        .collect();
    if let Some(var) = &raw.webhook_api_key_env {
        webhook_keys.push(from_env("webhook_api_key_env", var, err)?);
    }
    if let Some(file) = &raw.webhook_api_key_file {
        webhook_keys.push(from_file("webhook_api_key_file", &dir.join(file), err)?);
    }
    if webhook_keys.is_empty() {
        return Err(err(
            "webhook_api_keys",
            "no webhook key: set webhook_api_keys, webhook_api_key_env or webhook_api_key_file"
                .into(),
        ));
    }
    if webhook_keys
        .iter()
        .any(|k| k.expose_secret().trim().is_empty())
    {
        return Err(err("webhook_api_keys", "a webhook key is empty".into()));
    }
    if !webhook_keys.iter().all(header_safe) {
        return Err(err(
            "webhook_api_keys",
            "a webhook key contains characters that cannot appear in an HTTP header".into(),
        ));
    }

    let open_api = build_open_api(raw.open_api, dir, err)?;

    let events = match raw.events.only {
        None => EventFilter::default(),
        Some(patterns) => {
            let compiled = patterns
                .iter()
                .map(|p| {
                    glob::Pattern::new(p).map_err(|e| err("events.only", format!("{p:?}: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            EventFilter {
                only: Some(compiled),
            }
        }
    };

    if raw.sinks.is_empty() {
        return Err(err(
            "sinks",
            "at least one [[sinks]] entry is required".into(),
        ));
    }
    let sinks = raw
        .sinks
        .into_iter()
        .enumerate()
        .map(|(i, sink)| build_sink(i, sink, dir, err))
        .collect::<Result<Vec<_>, _>>()?;
    let entity = entity::build(raw.entity, err)?;
    let reconcile = reconcile::build(raw.reconcile, err)?;

    Ok(Tenant {
        name: raw.name.unwrap_or_else(|| id.to_string()),
        id,
        file: file.to_path_buf(),
        fingerprint: [0; 32],
        webhook_keys,
        open_api,
        events,
        sinks,
        entity,
        reconcile,
    })
}

fn build_open_api(
    raw: OpenApiFile,
    dir: &Path,
    err: &dyn Fn(&str, String) -> TenantError,
) -> Result<OpenApiSettings, TenantError> {
    let base_url = raw.base_url.trim_end_matches('/').to_string();
    check_url("open_api.base_url", &base_url, err)?;
    let api_key = one_secret(
        "open_api.api_key",
        raw.api_key,
        raw.api_key_env,
        raw.api_key_file,
        dir,
        err,
    )?;
    if !header_safe(&api_key) {
        return Err(err(
            "open_api.api_key",
            "contains characters that cannot appear in an HTTP header".into(),
        ));
    }
    let requests_per_minute = raw
        .requests_per_minute
        .unwrap_or(DEFAULT_REQUESTS_PER_MINUTE);
    if requests_per_minute == 0 || requests_per_minute > MAX_REQUESTS_PER_MINUTE {
        return Err(err(
            "open_api.requests_per_minute",
            format!("{requests_per_minute} is outside 1..={MAX_REQUESTS_PER_MINUTE}"),
        ));
    }
    let max_in_flight = raw.max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT);
    if max_in_flight == 0 || max_in_flight > MAX_IN_FLIGHT {
        return Err(err(
            "open_api.max_in_flight",
            format!("{max_in_flight} is outside 1..={MAX_IN_FLIGHT}"),
        ));
    }
    Ok(OpenApiSettings {
        base_url,
        api_key,
        requests_per_minute,
        max_in_flight,
        timeout: raw.timeout.unwrap_or(Duration::from_secs(10)),
    })
}

fn build_sink(
    index: usize,
    raw: SinkFile,
    dir: &Path,
    err: &dyn Fn(&str, String) -> TenantError,
) -> Result<SinkSettings, TenantError> {
    let field = |name: &str| format!("sinks[{index}].{name}");
    match raw {
        SinkFile::File { path } => {
            if path.as_os_str().is_empty() {
                return Err(err(&field("path"), "is empty".into()));
            }
            Ok(SinkSettings::File { path })
        }
        SinkFile::Http {
            url,
            secret,
            secret_env,
            secret_file,
            timeout,
        } => {
            check_url(&field("url"), &url, err)?;
            let secret = one_secret(&field("secret"), secret, secret_env, secret_file, dir, err)?;
            Ok(SinkSettings::Http {
                url: RedactedUrl::new(url),
                secret,
                timeout: timeout.unwrap_or(Duration::from_secs(10)),
            })
        }
        SinkFile::Command { argv, timeout } => {
            if argv.is_empty() || argv[0].is_empty() {
                return Err(err(&field("argv"), "needs at least the program".into()));
            }
            Ok(SinkSettings::Command {
                argv,
                timeout: timeout.unwrap_or(Duration::from_secs(30)),
            })
        }
        SinkFile::Nats(raw) => nats::build(*raw, &field, dir, err).map(SinkSettings::Nats),
    }
}

fn check_url(
    field: &str,
    url: &str,
    err: &dyn Fn(&str, String) -> TenantError,
) -> Result<(), TenantError> {
    // The URL itself is never repeated: its user info or query may hold a token.
    let uri: awc::http::Uri = url
        .parse()
        .map_err(|e| err(field, format!("not a URL: {e}")))?;
    match uri.scheme_str() {
        Some("http") | Some("https") if uri.host().is_some() => Ok(()),
        _ => Err(err(
            field,
            format!(
                "{} must be an http:// or https:// URL with a host",
                crate::redacted_url::RedactedUrl::new(url)
            ),
        )),
    }
}

/// Either none or exactly one of the inline value, `<field>_env` or `<field>_file`.
pub(super) fn optional_secret(
    field: &str,
    inline: Option<String>,
    env: Option<String>,
    file: Option<PathBuf>,
    dir: &Path,
    err: &dyn Fn(&str, String) -> TenantError,
) -> Result<Option<SecretString>, TenantError> {
    let secret = match (inline, env, file) {
        (None, None, None) => return Ok(None),
        (Some(value), None, None) => SecretString::from(value),
        (None, Some(var), None) => from_env(&format!("{field}_env"), &var, err)?,
        (None, None, Some(path)) => from_file(&format!("{field}_file"), &dir.join(path), err)?,
        _ => {
            return Err(err(
                field,
                format!("set only one of {field}, {field}_env, {field}_file"),
            ))
        }
    };
    if secret.expose_secret().trim().is_empty() {
        return Err(err(field, "is empty".into()));
    }
    Ok(Some(secret))
}

/// Exactly one of the inline value, `<field>_env` or `<field>_file`.
fn one_secret(
    field: &str,
    inline: Option<String>,
    env: Option<String>,
    file: Option<PathBuf>,
    dir: &Path,
    err: &dyn Fn(&str, String) -> TenantError,
) -> Result<SecretString, TenantError> {
    optional_secret(field, inline, env, file, dir, err)?.ok_or_else(|| {
        err(
            field,
            format!("missing: set {field}, {field}_env or {field}_file"),
        )
    })
}

fn from_env(
    field: &str,
    var: &str,
    err: &dyn Fn(&str, String) -> TenantError,
) -> Result<SecretString, TenantError> {
    // Trimmed like file secrets: an env file written on Windows leaves a trailing \r.
    std::env::var(var)
        .map(|value| SecretString::from(value.trim().to_string()))
        .map_err(|_| err(field, format!("environment variable {var} is not set")))
}

/// Reads a secret from a file, refusing one that other accounts on the host can read: such a
/// key has to be treated as leaked, and refusing it at load time is the only moment anyone sees it.
fn from_file(
    field: &str,
    path: &Path,
    err: &dyn Fn(&str, String) -> TenantError,
) -> Result<SecretString, TenantError> {
    refuse_shared(field, path, err)?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| err(field, format!("cannot read {}: {e}", path.display())))?;
    Ok(SecretString::from(text.trim().to_string()))
}

/// Refuses a secret's file that other accounts on the host can read.
pub(super) fn refuse_shared(
    field: &str,
    path: &Path,
    err: &dyn Fn(&str, String) -> TenantError,
) -> Result<(), TenantError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| err(field, format!("cannot read {}: {e}", path.display())))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(err(
                field,
                format!(
                    "{} is readable by group or others; chmod 600 it",
                    path.display()
                ),
            ));
        }
    }
    Ok(())
}

/// A key is sent (or compared) as a header value; one that cannot be one would fail later,
/// silently, on every request.
fn header_safe(secret: &SecretString) -> bool {
    awc::http::header::HeaderValue::from_str(secret.expose_secret()).is_ok()
}

/// Deserializes while tracking the path, so an error names the field (`open_api.base_url`)
/// and the line; toml's own excerpt of the source is dropped since it could show a secret.
fn parse(text: &str) -> Result<TenantFile, (String, String)> {
    let deserializer = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let line = inner
            .span()
            .map(|span| text[..span.start.min(text.len())].lines().count().max(1));
        let field = if path.is_empty() || path == "." {
            "(toml)".to_string()
        } else {
            path
        };
        // One problem, one line: some parser messages span several.
        let message = crate::redact::without_values(inner.message());
        let message = message
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        let reason = match line {
            Some(line) => format!("{message} (line {line})"),
            None => message,
        };
        (field, reason)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    const GOOD: &str = r#"
        name = "Berlin"
        webhook_api_keys = ["k1", "k2"]
        [open_api]
        base_url = "https://berlin.open-api.perfectgym.com/"
        api_key = "secret-openapi"
        [events]
        only = ["CUSTOMER_*"]
        [[sinks]]
        type = "file"
        path = "out/berlin.ndjson"
    "#;

    #[test]
    fn a_rotated_nats_secret_changes_the_fingerprint_so_a_reload_restarts_the_studio() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "{GOOD}\n[[sinks]]\ntype = \"nats\"\nurl = \"nats://a:4222\"\nstream = \"S\"\ntoken_file = \"nats.token\"\n"
        );
        let file = write(dir.path(), "s.toml", &text);
        let fingerprint = |token: &str| {
            write(dir.path(), "nats.token", token);
            std::fs::set_permissions(
                dir.path().join("nats.token"),
                std::os::unix::fs::PermissionsExt::from_mode(0o600),
            )
            .unwrap();
            load(&file).unwrap().fingerprint
        };
        assert_ne!(fingerprint("first"), fingerprint("second"));
    }

    #[test]
    fn a_nats_creds_file_others_can_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "{GOOD}\n[[sinks]]\ntype = \"nats\"\nurl = \"nats://a:4222\"\nstream = \"S\"\ncreds_file = \"berlin.creds\"\n"
        );
        let file = write(dir.path(), "s.toml", &text);
        let creds = write(dir.path(), "berlin.creds", "-----BEGIN NATS USER JWT-----");
        let mode = |mode| {
            std::fs::set_permissions(&creds, std::os::unix::fs::PermissionsExt::from_mode(mode))
                .unwrap()
        };
        mode(0o644);
        let e = load(&file).unwrap_err().to_string();
        assert!(e.contains("creds_file") && e.contains("chmod 600"), "{e}");
        mode(0o600);
        assert!(load(&file).is_ok());
    }

    #[test]
    fn nats_sinks_are_checked_field_by_field() {
        let dir = tempfile::tempdir().unwrap();
        let nats = |lines: &str| {
            let text =
                format!("{GOOD}\n[[sinks]]\ntype = \"nats\"\nstream = \"EVENTS\"\n{lines}\n");
            load(&write(dir.path(), "s.toml", &text))
        };
        let e = nats("url = \"nats://user:pa55word@127.0.0.1:4222\"").unwrap_err();
        assert_eq!(e.field, "sinks[1].url");
        assert!(!e.to_string().contains("pa55word"), "{e}");
        let t = nats("url = \"nats://127.0.0.1:4222\"").unwrap();
        let SinkSettings::Nats(settings) = &t.sinks[1] else {
            panic!("a nats sink");
        };
        assert_eq!(settings.subject, DEFAULT_SUBJECT);
        assert_eq!(settings.stream_subjects(), "gymrelay.*.*");
        assert_eq!(t.sink_keys()[1], "nats:nats://127.0.0.1:4222/EVENTS");
        let t =
            nats("url = [\"nats://a:4222\", \"nats://b:4222\"]\nuser = \"u\"\npassword = \"p\"");
        assert!(t.is_ok(), "{t:?}");
        for (lines, field) in [
            ("url = []", "sinks[1].url"),
            (
                "url = \"nats://a:4222\"\nsubject = \"gym.*.{type}\"",
                "sinks[1].subject",
            ),
            (
                "url = \"nats://a:4222\"\nsubject = \"gym.x{studio}\"",
                "sinks[1].subject",
            ),
            ("url = \"nats://a:4222\"\nuser = \"u\"", "sinks[1].password"),
            (
                "url = \"nats://a:4222\"\ntoken = \"t\"\nuser = \"u\"\npassword = \"p\"",
                "sinks[1].creds_file",
            ),
            (
                "url = \"nats://a:4222\"\ncreds_file = \"missing.creds\"",
                "sinks[1].creds_file",
            ),
        ] {
            let e = nats(lines).unwrap_err();
            assert_eq!(e.field, field, "{lines}: {e}");
        }
        let e = load(&write(
            dir.path(),
            "s.toml",
            &format!(
                "{GOOD}\n[[sinks]]\ntype = \"nats\"\nurl = \"nats://a:4222\"\nstream = \"a.b\"\n"
            ),
        ))
        .unwrap_err();
        assert_eq!(e.field, "sinks[1].stream");
    }

    #[test]
    fn a_bad_sink_url_is_refused_without_repeating_its_token() {
        let dir = tempfile::tempdir().unwrap();
        for url in [
            "ftp://user:pa55word@crm.example/in?token=s3cret-token",
            "http://user:pa55word@crm example/in?token=s3cret-token",
        ] {
            let text =
                format!("{GOOD}\n[[sinks]]\ntype = \"http\"\nurl = {url:?}\nsecret = \"x\"\n");
            let e = load(&write(dir.path(), "s.toml", &text)).unwrap_err();
            assert_eq!(e.field, "sinks[1].url", "{e}");
            let shown = e.to_string();
            assert!(
                !shown.contains("pa55word") && !shown.contains("s3cret-token"),
                "{shown}"
            );
        }
    }

    #[test]
    fn loads_a_good_file() {
        let dir = tempfile::tempdir().unwrap();
        let t = load(&write(dir.path(), "berlin-mitte.toml", GOOD)).unwrap();
        assert_eq!(t.id.as_str(), "berlin-mitte");
        assert_eq!(t.webhook_keys.len(), 2);
        assert_eq!(
            t.open_api.base_url,
            "https://berlin.open-api.perfectgym.com"
        );
        assert_eq!(t.open_api.requests_per_minute, 900);
        assert_eq!(t.open_api.max_in_flight, 16);
        assert!(t.events.allows("CUSTOMER_UPDATED"));
        assert!(!t.events.allows("CONTRACT_CREATED"));
        assert!(!format!("{t:?}").contains("secret-openapi"));
    }

    #[test]
    fn names_file_and_field() {
        let dir = tempfile::tempdir().unwrap();
        for setting in ["requests_per_minute", "max_in_flight"] {
            let bad = GOOD.replace(
                "api_key = \"secret-openapi\"",
                &format!("{setting} = 0\napi_key = \"x\""),
            );
            let e = load(&write(dir.path(), "s.toml", &bad)).unwrap_err();
            assert_eq!(e.field, format!("open_api.{setting}"));
        }
        let bad = GOOD.replace(
            "api_key = \"secret-openapi\"",
            "max_in_flight = 0\napi_key = \"x\"",
        );
        let e = load(&write(dir.path(), "s.toml", &bad)).unwrap_err();
        assert!(e
            .to_string()
            .starts_with(&dir.path().join("s.toml").display().to_string()));

        let missing = GOOD.replace("api_key = \"secret-openapi\"", "");
        let e = load(&write(dir.path(), "s.toml", &missing)).unwrap_err();
        assert_eq!(e.field, "open_api.api_key");

        let unknown = GOOD.replace("type = \"file\"", "type = \"ftp\"");
        let e = load(&write(dir.path(), "s.toml", &unknown)).unwrap_err();
        assert!(e.reason.contains("ftp"), "{e}");
        assert!(e.field.starts_with("sinks"), "{e}");

        let typo = GOOD
            .replace("requests_per", "request_per")
            .replace("api_key = ", "requests_per_minut = 1\napi_key = ");
        let e = load(&write(dir.path(), "s.toml", &typo)).unwrap_err();
        assert!(e.reason.contains("requests_per_minut"), "{e}");

        let wrong_type = GOOD.replace("api_key = ", "requests_per_minute = \"many\"\napi_key = ");
        let e = load(&write(dir.path(), "s.toml", &wrong_type)).unwrap_err();
        assert_eq!(e.field, "open_api.requests_per_minute", "{e}");
        assert!(e.reason.contains("line 6"), "{e}");

        let not_toml = "name = ";
        let e = load(&write(dir.path(), "s.toml", not_toml)).unwrap_err();
        assert_eq!(e.field, "(toml)", "{e}");

        let e = load(&write(dir.path(), "bad name.toml", GOOD)).unwrap_err();
        assert_eq!(e.field, "(file name)");
    }

    #[cfg(unix)]
    #[test]
    fn refuses_a_secret_file_others_can_read() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let key = write(dir.path(), "openapi.key", "secret-from-file\n");
        let text = GOOD.replace(
            "api_key = \"secret-openapi\"",
            "api_key_file = \"openapi.key\"",
        );
        let tenant = write(dir.path(), "s.toml", &text);

        for loose in [0o644, 0o640, 0o604, 0o660] {
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(loose)).unwrap();
            let e = load(&tenant).unwrap_err();
            assert_eq!(e.field, "open_api.api_key_file", "{loose:o}: {e}");
            assert_eq!(
                e.reason,
                format!(
                    "{} is readable by group or others; chmod 600 it",
                    key.display()
                ),
                "{loose:o}"
            );
            assert!(!e.to_string().contains("secret-from-file"), "{e}");
        }

        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let t = load(&tenant).unwrap();
        assert_eq!(t.open_api.api_key.expose_secret(), "secret-from-file");

        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(load(&tenant).is_ok(), "read-only for the owner is fine");
    }

    #[test]
    fn errors_never_repeat_a_secret_typed_into_the_wrong_place() {
        let dir = tempfile::tempdir().unwrap();
        for (from, to, secret) in [
            (
                "webhook_api_keys = [\"k1\", \"k2\"]",
                "webhook_api_keys = \"wh-SUPERSECRET-1\"",
                "SUPERSECRET",
            ),
            (
                "api_key = \"secret-openapi\"",
                "api_key = 987654321987",
                "987654321987",
            ),
        ] {
            let text = GOOD.replace(from, to);
            let e = load(&write(dir.path(), "s.toml", &text)).unwrap_err();
            assert!(!e.to_string().contains(secret), "{e}");
            assert!(e.reason.contains("invalid type"), "{e}");
        }
    }

    #[test]
    fn formatting_a_loaded_tenant_never_shows_a_secret() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "{GOOD}\n[[sinks]]\ntype = \"http\"\nurl = \"https://user:pw-SINKURL@crm.example/x?token=QUERYSECRET\"\nsecret = \"whsec_SINKSECRET\"\n"
        );
        let tenant = load(&write(dir.path(), "s.toml", &text)).unwrap();
        let shown = format!("{tenant:?} {tenant:#?} {:?}", tenant.sink_keys());
        for secret in ["k1", "k2", "secret-openapi", "SINKSECRET"] {
            assert!(
                !shown.contains(&format!("\"{secret}\"")),
                "{secret} in {shown}"
            );
            assert!(!shown.contains("SINKSECRET"), "sink secret shown");
        }
        assert!(
            !shown.contains("pw-SINKURL") && !shown.contains("QUERYSECRET"),
            "{shown}"
        );
        // Delivery progress is stored under the key: its format must never change.
        assert_eq!(tenant.sink_keys()[1], "http:https://crm.example/x");
        assert!(shown.contains(r#"url: "https://crm.example/x""#), "{shown}");
    }

    #[test]
    fn secret_from_env_missing_names_the_variable() {
        let dir = tempfile::tempdir().unwrap();
        let text = GOOD.replace(
            "api_key = \"secret-openapi\"",
            "api_key_env = \"GYMRELAY_TEST_SURELY_UNSET\"",
        );
        let e = load(&write(dir.path(), "s.toml", &text)).unwrap_err();
        assert_eq!(e.field, "open_api.api_key_env");
        assert!(e.reason.contains("GYMRELAY_TEST_SURELY_UNSET"));
    }
}
