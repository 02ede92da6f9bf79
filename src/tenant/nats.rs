//! A `type = "nats"` sink as written in a tenant file, and as the sink runs with it: servers,
//! subject template, stream, credentials, TLS, timeout, each checked with the field named.

use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use super::{optional_secret, refuse_shared, TenantError};
use crate::redacted_url::RedactedUrl;

/// The subject template when none is given.
pub const DEFAULT_SUBJECT: &str = "gymrelay.{studio}.{type}";

#[derive(Clone)]
pub struct NatsSettings {
    /// Without user info (refused when loading); shown redacted all the same.
    pub servers: Vec<RedactedUrl>,
    /// With `{studio}` and `{type}` replaced per event.
    pub subject: String,
    pub stream: String,
    pub create_stream: bool,
    pub credentials: NatsCredentials,
    pub tls_ca: Option<PathBuf>,
    pub timeout: Duration,
}

#[derive(Clone)]
pub enum NatsCredentials {
    None,
    CredsFile(PathBuf),
    Token(SecretString),
    UserPassword {
        user: String,
        password: SecretString,
    },
}

impl NatsSettings {
    /// The servers as logs, errors and the sink key show them.
    pub fn shown_servers(&self) -> String {
        self.servers
            .iter()
            .map(|server| server.to_string().trim_end_matches('/').to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The subjects the stream created by `create_stream` takes: the template with each
    /// placeholder a wildcard token.
    pub fn stream_subjects(&self) -> String {
        self.subject.replace("{studio}", "*").replace("{type}", "*")
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum Servers {
    One(String),
    Several(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NatsFile {
    url: Servers,
    subject: Option<String>,
    stream: String,
    #[serde(default)]
    create_stream: bool,
    creds_file: Option<PathBuf>,
    token: Option<String>,
    token_env: Option<String>,
    token_file: Option<PathBuf>,
    user: Option<String>,
    password: Option<String>,
    password_env: Option<String>,
    password_file: Option<PathBuf>,
    tls_ca: Option<PathBuf>,
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
}

pub(super) fn build(
    raw: NatsFile,
    field: &dyn Fn(&str) -> String,
    dir: &Path,
    err: &dyn Fn(&str, String) -> TenantError,
) -> Result<NatsSettings, TenantError> {
    let urls = match raw.url {
        Servers::One(url) => vec![url],
        Servers::Several(urls) => urls,
    };
    if urls.is_empty() {
        return Err(err(&field("url"), "names no server".into()));
    }
    let mut servers = Vec::with_capacity(urls.len());
    for url in urls {
        let shown = RedactedUrl::new(url.clone());
        let addr = url.parse::<async_nats::ServerAddr>().map_err(|_| {
            err(
                &field("url"),
                format!("{shown} is not a NATS server address (nats://host:4222)"),
            )
        })?;
        // The client would ignore them, and its debug log would show them.
        if addr.username().is_some() || addr.password().is_some() {
            return Err(err(
                &field("url"),
                format!("{shown}: put credentials in user and password_env (or token_env, creds_file), not in the URL"),
            ));
        }
        servers.push(shown);
    }
    let subject = raw.subject.unwrap_or_else(|| DEFAULT_SUBJECT.to_string());
    check_subject(&subject).map_err(|reason| err(&field("subject"), reason))?;
    check_stream_name(&raw.stream).map_err(|reason| err(&field("stream"), reason))?;
    let token = optional_secret(
        &field("token"),
        raw.token,
        raw.token_env,
        raw.token_file,
        dir,
        err,
    )?;
    let password = optional_secret(
        &field("password"),
        raw.password,
        raw.password_env,
        raw.password_file,
        dir,
        err,
    )?;
    let credentials =
        match (raw.creds_file, token, raw.user, password) {
            (None, None, None, None) => NatsCredentials::None,
            (Some(path), None, None, None) => {
                let path = dir.join(path);
                if !path.is_file() {
                    return Err(err(
                        &field("creds_file"),
                        format!("{} is not a readable file", path.display()),
                    ));
                }
                // It holds the account's private key (an nkey seed).
                refuse_shared(&field("creds_file"), &path, err)?;
                NatsCredentials::CredsFile(path)
            }
            (None, Some(token), None, None) => NatsCredentials::Token(token),
            (None, None, Some(user), Some(password)) => {
                NatsCredentials::UserPassword { user, password }
            }
            (None, None, Some(_), None) => {
                return Err(err(
                    &field("password"),
                    "user needs password, password_env or password_file".into(),
                ))
            }
            (None, None, None, Some(_)) => {
                return Err(err(&field("user"), "a password needs its user".into()))
            }
            _ => return Err(err(
                &field("creds_file"),
                "set only one of creds_file, token (or token_env / token_file), user and password"
                    .into(),
            )),
        };
    let tls_ca = match raw.tls_ca {
        Some(path) => {
            let path = dir.join(path);
            if !path.is_file() {
                return Err(err(
                    &field("tls_ca"),
                    format!("{} is not a readable file", path.display()),
                ));
            }
            Some(path)
        }
        None => None,
    };
    Ok(NatsSettings {
        servers,
        subject,
        stream: raw.stream,
        create_stream: raw.create_stream,
        credentials,
        tls_ca,
        timeout: raw.timeout.unwrap_or(Duration::from_secs(10)),
    })
}

/// Dot-separated tokens, no wildcards or whitespace; `{studio}` and `{type}` are the only
/// placeholders, each a whole token.
fn check_subject(subject: &str) -> Result<(), String> {
    for token in subject.split('.') {
        let placeholder = token == "{studio}" || token == "{type}";
        let plain = !token.is_empty()
            && !token
                .chars()
                .any(|c| c.is_whitespace() || matches!(c, '*' | '>' | '{' | '}'));
        if !placeholder && !plain {
            return Err(format!(
                "{subject:?}: tokens are separated by '.', without wildcards or spaces; {{studio}} and {{type}} are the placeholders, each a whole token"
            ));
        }
    }
    Ok(())
}

fn check_stream_name(stream: &str) -> Result<(), String> {
    let bad = stream.is_empty()
        || stream
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '.' | '*' | '>' | '/' | '\\'));
    if bad {
        Err(format!(
            "{stream:?} is not a stream name (no spaces, '.', '*', '>', '/' or '\\\\')"
        ))
    } else {
        Ok(())
    }
}
