//! Process-wide settings: built-in defaults < `gymrelay.toml` < `GYMRELAY_SECTION__KEY` variables.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// Everything `serve` needs besides the tenant files.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub tenants: TenantsConfig,
    #[serde(default)]
    pub delivery: DeliveryConfig,
    #[serde(default)]
    pub log: LogConfig,
}

/// When to give up on an event and move it to the dead letters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// How long the Open API or a sink may keep failing one event before it becomes a dead
    /// letter. Rejected Open API credentials never dead-letter: the events wait for the fix.
    #[serde(with = "humantime_serde")]
    pub dead_letter_after: Duration,
    /// How long a dead letter is kept for a replay. It holds a member's data (as the studio's
    /// `[entity]` selection left it), so it is not kept for ever.
    #[serde(with = "humantime_serde")]
    pub dead_letter_retention: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            dead_letter_after: Duration::from_secs(24 * 3600),
            dead_letter_retention: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
}

/// The largest webhook body `http.max_body_bytes` may allow: a stored event is its body, at
/// most one Open API response and a little bookkeeping, and must fit the store's synced log.
pub const MAX_BODY_BYTES: usize =
    crate::store::MAX_VALUE_BYTES - crate::openapi::MAX_RESPONSE_BYTES - 16 * 1024;

/// The public webhook listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Bodies above this are refused with 413 while being read. At most
    /// [`MAX_BODY_BYTES`], which loading the config enforces.
    pub max_body_bytes: usize,
    /// HTTP worker threads; 0 means one per core.
    pub workers: usize,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Certificates from an ACME CA (Let's Encrypt by default) instead of `tls_cert`/`tls_key`.
    pub acme: Option<AcmeConfig>,
    /// Time a client gets to send the request headers (408 after).
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// Time a client gets to send the body once the headers are in (408 after).
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// Webhook requests being handled at once, across workers; more get 503 at once.
    pub max_in_flight: usize,
    /// Open connections, across workers; beyond it new connections wait to be accepted.
    pub max_connections: usize,
    /// Sustained webhooks per second one studio (one key) may send; more get 429. The vendor
    /// sends a studio's events as they happen, far below this; a leaked key cannot fill the disk.
    pub studio_requests_per_second: u32,
    /// Burst allowance on top of the sustained rate, for catch-up after an outage.
    pub studio_burst: u32,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            max_body_bytes: 64 * 1024,
            workers: 0,
            tls_cert: None,
            tls_key: None,
            acme: None,
            header_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(5),
            max_in_flight: 4096,
            max_connections: 10_000,
            studio_requests_per_second: 200,
            studio_burst: 2000,
        }
    }
}

/// `[http.acme]`: certificates issued and renewed through TLS-ALPN-01 on the HTTPS listener,
/// which therefore has to be reachable from the CA on port 443.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeConfig {
    /// Names the certificate is for; each must resolve to this relay.
    pub domains: Vec<String>,
    /// Email address for the CA account (expiry and policy notices); optional.
    pub contact: Option<String>,
    /// Account key, certificate and its private key are kept here across restarts, so a
    /// restart does not ask the CA again (it rate-limits issuance).
    #[serde(default = "AcmeConfig::default_cache_dir")]
    pub cache_dir: PathBuf,
    #[serde(default = "AcmeConfig::default_directory_url")]
    pub directory_url: String,
    /// PEM file of extra roots to trust for `directory_url`, for a private or test CA whose
    /// directory is not served with a publicly trusted certificate.
    pub directory_ca: Option<PathBuf>,
}

impl AcmeConfig {
    pub const LETS_ENCRYPT: &'static str = "https://acme-v02.api.letsencrypt.org/directory";

    fn default_cache_dir() -> PathBuf {
        PathBuf::from("acme")
    }

    fn default_directory_url() -> String {
        Self::LETS_ENCRYPT.to_string()
    }
}

/// The operator listener (health, metrics, admin API). Not for the internet.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    #[serde(skip_serializing)]
    pub token: Option<SecretString>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            token: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub path: PathBuf,
    /// How long a uuid is remembered for deduplication. The vendor resends for about 40 minutes;
    /// a week also covers a partner replaying old notifications by hand.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// How often expired uuids are pruned.
    #[serde(with = "humantime_serde")]
    pub prune_interval: Duration,
    /// sled's page cache. sled's memory levels off at about three times this. Dedupe lookups
    /// do not use it (they go to the in-memory digest set), so a small cache costs no intake.
    pub cache_capacity_bytes: u64,
    /// Below this much free space on the storage's file system, webhooks get 503 (the vendor
    /// resends) while delivery goes on. Default: 256 MiB, or 2 % of a smaller file system.
    pub min_free_bytes: Option<u64>,
}

impl StorageConfig {
    /// What the store needs of it.
    pub fn store_settings(&self) -> crate::store::StoreSettings {
        crate::store::StoreSettings {
            path: self.path.clone(),
            cache_capacity_bytes: self.cache_capacity_bytes,
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            path: PathBuf::from("data"),
            retention: Duration::from_secs(7 * 24 * 3600),
            prune_interval: Duration::from_secs(3600),
            cache_capacity_bytes: 16 * 1024 * 1024,
            min_free_bytes: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantsConfig {
    pub dir: PathBuf,
}

impl Default for TenantsConfig {
    fn default() -> Self {
        TenantsConfig {
            dir: PathBuf::from("tenants"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: config file not found")]
    Missing { path: PathBuf },
    #[error("{0}")]
    Invalid(String),
}

/// The config file `serve` uses: the given one, else `./gymrelay.toml` if it exists, else none
/// (built-in defaults and the environment).
pub fn default_file(explicit: Option<PathBuf>) -> Option<PathBuf> {
    explicit.or_else(|| {
        let default = PathBuf::from("gymrelay.toml");
        default.exists().then_some(default)
    })
}

impl Config {
    /// Loads defaults, then `file` if given (it must exist then), then `GYMRELAY_*` variables.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::Missing {
                    path: path.to_path_buf(),
                });
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(Env::prefixed("GYMRELAY_").split("__"));
        let config: Config = figment
            .extract()
            .map_err(|e| ConfigError::Invalid(describe(e, file)))?;
        let limit = MAX_BODY_BYTES;
        if config.http.max_body_bytes > limit {
            let source = file.map_or("config".to_string(), |f| f.display().to_string());
            return Err(ConfigError::Invalid(format!(
                "{source}: http.max_body_bytes: at most {limit}; larger events would be stored where a power loss can lose them"
            )));
        }
        Ok(config)
    }
}

/// figment's errors name the key path and the source; prefix the file so the message stands alone.
fn describe(error: figment::Error, file: Option<&Path>) -> String {
    let messages: Vec<String> = error
        .into_iter()
        .map(|e| {
            let field = e.path.join(".");
            let source = match &e.metadata {
                Some(m) => m
                    .source
                    .as_ref()
                    .map_or_else(|| m.name.to_string(), |s| s.to_string()),
                None => file.map_or("config".to_string(), |f| f.display().to_string()),
            };
            let reason = crate::redact::without_values(&e.kind.to_string());
            if field.is_empty() {
                format!("{source}: {reason}")
            } else {
                format!("{source}: {field}: {reason}")
            }
        })
        .collect();
    messages.join("\n")
}

#[cfg(test)]
// figment's Jail closures return its large error type by design.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn defaults_then_file_then_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "gymrelay.toml",
                "[http]\nlisten = \"127.0.0.1:7000\"\nmax_body_bytes = 1000\n[storage]\nretention = \"2d\"\n",
            )?;
            jail.set_env("GYMRELAY_HTTP__LISTEN", "127.0.0.1:7001");
            let config = Config::load(Some(Path::new("gymrelay.toml"))).expect("loads");
            assert_eq!(
                config.http.listen.port(),
                7001,
                "environment wins over the file"
            );
            assert_eq!(config.http.max_body_bytes, 1000, "file wins over defaults");
            assert_eq!(config.storage.retention, Duration::from_secs(2 * 24 * 3600));
            assert_eq!(config.tenants.dir, PathBuf::from("tenants"), "default");
            Ok(())
        });
    }

    #[test]
    fn errors_name_the_source_and_the_field() {
        figment::Jail::expect_with(|jail| {
            let error_for = |toml: &str| -> figment::error::Result<String> {
                jail.create_file("gymrelay.toml", toml)?;
                let e = Config::load(Some(Path::new("gymrelay.toml"))).unwrap_err();
                Ok(e.to_string())
            };
            let message = error_for("[http]\nmax_body_bytes = \"big\"\n")?;
            assert!(message.contains("gymrelay.toml"), "{message}");
            assert!(message.contains("http.max_body_bytes"), "{message}");

            let message = error_for("[http]\nmax_body_bytes = 262144\n")?;
            assert!(
                message.starts_with("gymrelay.toml: http.max_body_bytes: at most 114688"),
                "{message}"
            );

            let message = error_for("[htp]\nlisten = \"x\"\n")?;
            assert!(
                message.contains("htp"),
                "unknown sections are refused: {message}"
            );

            jail.set_env("GYMRELAY_ADMIN__TOKEN", "admin-token-value");
            let config = Config::load(None).expect("loads");
            let shown = format!("{config:?} {config:#?}");
            assert!(
                !shown.contains("admin-token-value"),
                "the token in Debug output"
            );

            let message = Config::load(Some(Path::new("absent.toml")))
                .unwrap_err()
                .to_string();
            assert!(
                message.contains("absent.toml: config file not found"),
                "{message}"
            );
            Ok(())
        });
    }
}
