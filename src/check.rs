//! `gymrelay check`: loads the config and every tenant file exactly as `serve` would and says
//! what is wrong with each, so a partner finds a broken studio file before a restart skips that
//! studio. `--online` also asks each studio's Open API whether its key is accepted, since a
//! wrong key otherwise only shows up as events piling up in the inbox.

use std::collections::HashSet;
use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Duration;

use awc::http::header::HeaderValue;
use awc::http::StatusCode;
use futures_util::future::join_all;
use secrecy::ExposeSecret;

use crate::config::{Config, HttpConfig};
use crate::registry;
use crate::tenant::Tenant;

/// Per probe. The vendor answers a HEAD at once; a slow answer is as bad as none for the relay.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Extra time a probe gets beyond awc's own timeout before it is abandoned anyway, so the whole
/// check is bounded by `PROBE_TIMEOUT + PROBE_GRACE` however the network misbehaves.
const PROBE_GRACE: Duration = Duration::from_secs(1);

/// The endpoint probed: cheap, and every studio's key may read it.
const PROBE_PATH: &str = "/v1/studios/information";

#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// Config file; without it ./gymrelay.toml is used if present, else built-in defaults.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Also probe each studio's Open API key with a HEAD request (all studios at once, 5 s
    /// each), and connect to each of its NATS sinks with their credentials (one after another).
    #[arg(long)]
    pub online: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{count} {} found", plural(*count, "problem", "problems"))]
    Problems { count: usize },
    #[error("cannot write the report: {0}")]
    Output(#[from] io::Error),
}

/// Runs the check and prints the report on stdout. An error means at least one problem.
/// Must be called inside an actix system (the probes use awc).
pub async fn run(args: CheckArgs) -> Result<(), CheckError> {
    let count = check(&args, &mut io::stdout()).await?;
    if count == 0 {
        Ok(())
    } else {
        Err(CheckError::Problems { count })
    }
}

/// Writes one line per problem or warning, then a summary line; returns the number of problems.
pub async fn check(args: &CheckArgs, out: &mut impl Write) -> io::Result<usize> {
    let file = crate::config::default_file(args.config.clone());
    let config = match Config::load(file.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            writeln!(out, "{e}")?;
            writeln!(out, "the config has problems; tenant files not checked")?;
            return Ok(1);
        }
    };
    for warning in listener_warnings(&config.http) {
        writeln!(out, "warning: {warning}")?;
    }
    // What `serve` would refuse to start with: TLS settings, certificate files that do not load.
    let refused = crate::tls::verify(&config.http).err();
    if let Some(e) = &refused {
        let source = file
            .as_deref()
            .map_or("config".into(), |f| f.display().to_string());
        writeln!(out, "{source}: {e}")?;
    }

    let dir = &config.tenants.dir;
    let loaded = match registry::load_dir(dir) {
        Ok(loaded) => loaded,
        Err(e) => {
            writeln!(out, "{e}")?;
            return Ok(1);
        }
    };
    for error in &loaded.errors {
        writeln!(out, "{}", one_line(&error.to_string()))?;
    }
    for tenant in &loaded.tenants {
        for warning in tenant.warnings() {
            writeln!(out, "warning: {}: {warning}", tenant.file.display())?;
        }
    }
    let broken_files: HashSet<&PathBuf> = loaded.errors.iter().map(|e| &e.file).collect();
    let mut problems = loaded.errors.len() + usize::from(refused.is_some());
    // Loaded studios with a problem; a file that did not load is one of `broken_files`.
    let mut troubled = 0;
    let samples = crate::simulate::DataSet::new("sample", 1);
    for tenant in &loaded.tenants {
        check_selection(tenant, &samples, out)?;
    }

    if args.online {
        let answers = probe_all(&loaded.tenants).await;
        let brokers = join_all(loaded.tenants.iter().map(probe_brokers)).await;
        for ((tenant, answer), brokers) in loaded.tenants.iter().zip(&answers).zip(brokers) {
            writeln!(out, "{}: {answer}", tenant.id)?;
            let mut ok = answer.is_ok();
            problems += usize::from(!ok);
            for (sink, outcome) in brokers {
                match outcome {
                    Ok(found) => writeln!(out, "{}: sink {sink}: {found}", tenant.id)?,
                    Err(failure) => {
                        writeln!(out, "{}: sink {sink}: {failure}", tenant.id)?;
                        problems += 1;
                        ok = false;
                    }
                }
            }
            troubled += usize::from(!ok);
        }
    }

    let studios = loaded.tenants.len() + broken_files.len();
    let studios_with_problems = broken_files.len() + troubled;
    if studios == 0 {
        writeln!(
            out,
            "warning: no studio file in {}: every webhook would get 401",
            dir.display()
        )?;
    }
    writeln!(
        out,
        "checked {studios} {} in {}: {} ok, {studios_with_problems} with problems",
        plural(studios, "studio", "studios"),
        dir.display(),
        studios - studios_with_problems,
    )?;
    Ok(problems)
}

/// How many answers of each family the selection is checked against: optional fields (an image,
/// access media) appear in some records only.
const SAMPLES: i64 = 40;

/// Warns of each `[entity]` path that matches no field of the simulator's records (which follow
/// the vendor's documented shapes), and shows what a sink would receive for a sample record.
fn check_selection(
    tenant: &Tenant,
    data: &crate::simulate::DataSet,
    out: &mut impl Write,
) -> io::Result<()> {
    let mut families: Vec<_> = tenant.entity.families().collect();
    families.sort_by_key(|(family, _)| family.family());
    for (family, selection) in families {
        let name = family.family();
        let samples = serde_json::Value::Array(data.samples(*family, SAMPLES));
        let list = selection.kind();
        for (i, path) in selection.paths().iter().enumerate() {
            // A warning, not an error: the simulator's records do not have every optional
            // field the vendor documents, and refusing a real field would push a partner to
            // delete an `omit` that works.
            if !crate::entity_selection::matches(&samples, path.names()) {
                writeln!(
                    out,
                    "warning: {}: entity.{name}.{list}[{i}]: {path} matches no field of the simulated {name} answers; check its spelling against the vendor's schema (list indices are not supported)",
                    tenant.file.display()
                )?;
            }
        }
        if let Some(sample) = samples.as_array().and_then(|s| s.first()) {
            let shown = selection.apply(sample.clone());
            writeln!(
                out,
                "{}: entity.{name}: a sink receives, for a sample record: {shown}",
                tenant.id
            )?;
        }
    }
    Ok(())
}

/// PerfectGym Next only delivers to HTTPS with a valid certificate, so a public plain-HTTP
/// listener only works behind a TLS-terminating proxy. That is a legitimate setup, hence a
/// warning and not a problem.
/// Half a TLS configuration is a problem reported by `tls::verify`, not a plain listener.
fn listener_warnings(http: &HttpConfig) -> Vec<String> {
    let mut warnings = Vec::new();
    // Settings that do not make sense are reported on their own; they are not plain HTTP.
    let tls = crate::tls::Mode::of(http).map_or(true, |mode| mode.is_tls());
    if !tls && !http.listen.ip().is_loopback() {
        warnings.push(format!(
            "the public listener is plain HTTP on {}; PerfectGym Next only delivers to HTTPS",
            http.listen
        ));
    }
    warnings
}

/// What a studio's Open API said to its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyAnswer {
    Accepted(u16),
    Rejected(u16),
    /// Any other status: the key is neither confirmed nor refused.
    Other(u16),
    Unreachable(String),
    /// The key cannot even be sent as a header value.
    Unsendable,
}

impl KeyAnswer {
    pub fn is_ok(&self) -> bool {
        matches!(self, KeyAnswer::Accepted(_))
    }
}

impl std::fmt::Display for KeyAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyAnswer::Accepted(s) => write!(f, "Open API key accepted ({s})"),
            KeyAnswer::Rejected(s) => write!(f, "Open API key rejected ({s})"),
            KeyAnswer::Other(s) if (300..400).contains(s) => write!(
                f,
                "Open API answered {s}, a redirect (not followed): check open_api.base_url"
            ),
            KeyAnswer::Other(s) => write!(f, "Open API answered {s}; key not verified"),
            KeyAnswer::Unreachable(e) => write!(f, "Open API unreachable: {e}"),
            KeyAnswer::Unsendable => write!(
                f,
                "Open API key contains characters not allowed in an HTTP header"
            ),
        }
    }
}

/// Connects to each NATS sink of a studio with its credentials: a wrong token or a missing
/// stream shows here rather than as deliveries failing later.
async fn probe_brokers(tenant: &Tenant) -> Vec<(String, Result<String, crate::failure::Failure>)> {
    let mut outcomes = Vec::new();
    for (settings, key) in tenant.sinks.iter().zip(tenant.sink_keys()) {
        if let crate::tenant::SinkSettings::Nats(nats) = settings {
            // As long as the sink itself would wait for the broker.
            let limit = nats.timeout + PROBE_GRACE;
            let outcome = actix_rt::time::timeout(limit, crate::sink::probe_nats(nats))
                .await
                .unwrap_or_else(|_| {
                    Err(crate::failure::Failure::transient(format!(
                        "no answer within {limit:?}"
                    )))
                });
            outcomes.push((key, outcome));
        }
    }
    outcomes
}

/// Probes every studio at once, answers in the order of `tenants`.
async fn probe_all(tenants: &[Tenant]) -> Vec<KeyAnswer> {
    // No connection limit: with the default of 100, probes beyond the hundredth would queue
    // behind the others and could time out without ever having been sent.
    let client = awc::Client::builder()
        .connector(awc::Connector::new().limit(0).timeout(PROBE_TIMEOUT))
        .disable_redirects()
        .timeout(PROBE_TIMEOUT)
        .finish();
    join_all(tenants.iter().map(|t| probe_bounded(&client, t))).await
}

async fn probe_bounded(client: &awc::Client, tenant: &Tenant) -> KeyAnswer {
    let limit = PROBE_TIMEOUT + PROBE_GRACE;
    actix_rt::time::timeout(limit, probe(client, tenant))
        .await
        .unwrap_or_else(|_| KeyAnswer::Unreachable(format!("no answer within {limit:?}")))
}

async fn probe(client: &awc::Client, tenant: &Tenant) -> KeyAnswer {
    let Ok(mut key) = HeaderValue::from_str(tenant.open_api.api_key.expose_secret()) else {
        return KeyAnswer::Unsendable;
    };
    key.set_sensitive(true);
    let url = format!("{}{PROBE_PATH}", tenant.open_api.base_url);
    match client
        .head(&url)
        .insert_header(("x-api-key", key))
        .send()
        .await
    {
        Ok(response) => match response.status() {
            StatusCode::OK => KeyAnswer::Accepted(200),
            s @ (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => {
                KeyAnswer::Rejected(s.as_u16())
            }
            s => KeyAnswer::Other(s.as_u16()),
        },
        Err(e) => KeyAnswer::Unreachable(e.to_string()),
    }
}

/// Some parser messages span lines; one problem stays one line so the report can be grepped.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

fn plural(n: usize, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 {
        one
    } else {
        many
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(listen: &str, cert: bool, key: bool) -> HttpConfig {
        HttpConfig {
            listen: listen.parse().unwrap(),
            tls_cert: cert.then(|| "cert.pem".into()),
            tls_key: key.then(|| "key.pem".into()),
            ..HttpConfig::default()
        }
    }

    #[test]
    fn warns_about_a_public_plain_http_listener_only() {
        let public = listener_warnings(&http("0.0.0.0:8080", false, false));
        assert_eq!(
            public,
            ["the public listener is plain HTTP on 0.0.0.0:8080; PerfectGym Next only delivers to HTTPS"]
        );
        assert!(listener_warnings(&http("127.0.0.1:8080", false, false)).is_empty());
        assert!(listener_warnings(&http("[::1]:8080", false, false)).is_empty());
        assert!(listener_warnings(&http("0.0.0.0:8443", true, true)).is_empty());
        assert!(listener_warnings(&http("0.0.0.0:8443", true, false)).is_empty());
    }

    #[test]
    fn a_problem_is_one_line() {
        assert_eq!(
            one_line("t/a.toml: (toml): invalid array\nexpected `]` (line 1)"),
            "t/a.toml: (toml): invalid array; expected `]` (line 1)"
        );
        assert_eq!(one_line("plain"), "plain");
    }

    #[test]
    fn answers_read_as_the_operator_expects() {
        assert_eq!(
            KeyAnswer::Accepted(200).to_string(),
            "Open API key accepted (200)"
        );
        assert_eq!(
            KeyAnswer::Rejected(401).to_string(),
            "Open API key rejected (401)"
        );
        assert!(KeyAnswer::Other(301).to_string().contains("base_url"));
        assert!(KeyAnswer::Accepted(200).is_ok());
        assert!(!KeyAnswer::Other(429).is_ok());
        assert_eq!(
            CheckError::Problems { count: 1 }.to_string(),
            "1 problem found"
        );
    }
}
