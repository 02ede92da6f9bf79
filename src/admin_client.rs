//! The admin API as the command line reaches it (`dead-letters`, `erase`): sled allows one
//! process per data directory, so these commands ask the running relay instead of opening the
//! store themselves.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::ExposeSecret;
use serde_json::Value;

use crate::config::{Config, ConfigError};

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("the config has no [admin] token; the admin API needs one")]
    NoToken,
    #[error("admin API at {url}: {reason}")]
    Request { url: String, reason: String },
}

/// Where the running relay's admin API is: the same two options for every command that uses it.
#[derive(Debug, Clone, clap::Args)]
pub struct AdminArgs {
    /// Config file of the running relay (for the admin address and token).
    #[arg(long, short, global = true)]
    pub config: Option<PathBuf>,
    /// Admin API base URL; default: from the config's [admin] listen.
    #[arg(long, global = true)]
    pub admin_url: Option<String>,
}

pub struct AdminApi {
    client: awc::Client,
    base: String,
}

impl AdminApi {
    /// From the running relay's config (its admin address and token), or `admin_url`.
    pub fn connect(args: AdminArgs) -> Result<AdminApi, CliError> {
        let AdminArgs { config, admin_url } = args;
        let config = Config::load(crate::config::default_file(config).as_deref())?;
        let token = config.admin.token.as_ref().ok_or(CliError::NoToken)?;
        let base =
            admin_url.unwrap_or_else(|| format!("http://{}", reachable(config.admin.listen)));
        let client = awc::Client::builder()
            .timeout(Duration::from_secs(10))
            .bearer_auth(token.expose_secret())
            .finish();
        Ok(AdminApi { client, base })
    }

    /// `GET` or `POST` on `path` (`/api/...`); the answer's JSON, or why there is none.
    pub async fn call(&self, method: &str, path: &str) -> Result<Value, CliError> {
        self.call_with(method, path, &[]).await
    }

    /// [`AdminApi::call`] with query parameters, encoded by the client.
    pub async fn call_with(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<Value, CliError> {
        let url = format!("{}{path}", self.base);
        let fail = |reason: String| CliError::Request {
            url: url.clone(),
            reason,
        };
        let request = match method {
            "POST" => self.client.post(&url),
            _ => self.client.get(&url),
        };
        let request = if query.is_empty() {
            request
        } else {
            request.query(&query).map_err(|e| fail(e.to_string()))?
        };
        let mut response = request.send().await.map_err(|e| fail(e.to_string()))?;
        let body = response.body().await.map_err(|e| fail(e.to_string()))?;
        let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if !response.status().is_success() {
            let reason = json["error"].as_str().unwrap_or("no reason given");
            return Err(fail(format!("{}: {reason}", response.status())));
        }
        Ok(json)
    }
}

/// A wildcard listen address is reached through loopback.
fn reachable(listen: SocketAddr) -> SocketAddr {
    if listen.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], listen.port()))
    } else {
        listen
    }
}
