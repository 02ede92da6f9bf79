//! NATS JetStream sink: each event is published to a subject of the studio's stream and counts
//! as delivered only once JetStream acknowledges it. The event id goes in `Nats-Msg-Id`, so a
//! redelivery after a crash is dropped by the stream's duplicate window instead of stored twice.
//!
//! Connections are shared: studios whose sinks name the same servers with the same credentials
//! use one client, which reconnects by itself with backoff.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_nats::jetstream::context::{GetStreamErrorKind, PublishErrorKind};
use async_nats::jetstream::{self, stream};
use async_nats::{ConnectErrorKind, HeaderMap};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use super::Outgoing;
use crate::failure::Failure;
use crate::tenant::{NatsCredentials, NatsSettings};

/// How long the stream created by `create_stream` remembers message ids. A crash redelivers
/// what the relay had not yet recorded as published, at its restart; an hour covers a restart
/// that takes long, and keeps the ids the server holds in memory bounded.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(3600);

/// A connection, once made; shared by every sink with the same servers and credentials.
type SharedClient = Arc<Connection>;
type Connection = OnceCell<async_nats::Client>;

/// The NATS clients of the whole relay, one per distinct server set and credentials (keyed by
/// a digest, so the map holds no secret). The sinks hold the clients; the map only finds them,
/// so a client no sink uses any more (after a credential edit) is closed.
#[derive(Clone, Default)]
pub struct NatsConnections {
    clients: Arc<Mutex<HashMap<[u8; 32], Weak<Connection>>>>,
}

impl NatsConnections {
    /// The connection for these settings, shared with every sink that has the same ones.
    fn share(&self, settings: &NatsSettings) -> SharedClient {
        let mut clients = crate::lock::lock(&self.clients);
        clients.retain(|_, client| client.strong_count() > 0);
        let key = connection_key(settings);
        if let Some(client) = clients.get(&key).and_then(Weak::upgrade) {
            return client;
        }
        let client = SharedClient::default();
        clients.insert(key, Arc::downgrade(&client));
        client
    }
}

/// Identifies a connection without keeping its secrets in the clear.
fn connection_key(settings: &NatsSettings) -> [u8; 32] {
    let mut hash = Sha256::new();
    for server in &settings.servers {
        hash.update(server.expose().as_bytes());
        hash.update([0]);
    }
    match &settings.credentials {
        NatsCredentials::None => hash.update(b"none"),
        NatsCredentials::CredsFile(path) => {
            // Its contents, so a rotated file gets a connection of its own.
            hash.update(b"creds");
            hash.update(path.display().to_string().as_bytes());
            hash.update([0]);
            hash.update(std::fs::read(path).unwrap_or_default());
        }
        NatsCredentials::Token(token) => {
            hash.update(b"token");
            hash.update(token.expose_secret().as_bytes());
            hash.update([0]);
        }
        NatsCredentials::UserPassword { user, password } => {
            hash.update(b"user");
            hash.update(user.as_bytes());
            hash.update([0]);
            hash.update(password.expose_secret().as_bytes());
            hash.update([0]);
        }
    }
    if let Some(ca) = &settings.tls_ca {
        hash.update(ca.display().to_string().as_bytes());
    }
    hash.finalize().into()
}

/// Connects once; the client then reconnects by itself, with backoff, for as long as it lives.
async fn connect(settings: &NatsSettings) -> Result<async_nats::Client, Failure> {
    let shown = settings.shown_servers();
    let mut options = async_nats::ConnectOptions::new()
        .connection_timeout(settings.timeout)
        .request_timeout(Some(settings.timeout))
        .max_reconnects(None);
    options = match &settings.credentials {
        NatsCredentials::None => options,
        NatsCredentials::CredsFile(path) => options
            .credentials_file(path)
            .await
            // A person must fix it (or finish writing it): the events wait, as for a refused key.
            .map_err(|e| Failure::Credentials {
                reason: format!("creds_file {}: {e}", path.display()),
            })?,
        NatsCredentials::Token(token) => options.token(token.expose_secret().to_string()),
        NatsCredentials::UserPassword { user, password } => {
            options.user_and_password(user.clone(), password.expose_secret().to_string())
        }
    };
    if let Some(ca) = &settings.tls_ca {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    let servers: Vec<async_nats::ServerAddr> = settings
        .servers
        .iter()
        .filter_map(|s| s.expose().parse().ok())
        .collect();
    options.connect(servers).await.map_err(|e| match e.kind() {
        ConnectErrorKind::AuthorizationViolation => Failure::Credentials {
            reason: format!("NATS {shown} refused the credentials (authorization violation)"),
        },
        ConnectErrorKind::TimedOut => Failure::transient(format!(
            "NATS {shown}: no connection within {:?}",
            settings.timeout
        )),
        _ => Failure::transient(format!("NATS {shown}: cannot connect: {}", e.kind())),
    })
}

/// For `gymrelay check --online`: connects with the sink's credentials and looks for its
/// stream. Says what it found, or why not.
pub async fn probe(settings: &NatsSettings) -> Result<String, Failure> {
    let client = connect(settings).await?;
    let context = jetstream::new(client);
    let stream = &settings.stream;
    match context.get_stream(stream).await {
        Ok(_) => Ok(format!("connected, stream {stream} found")),
        Err(e) if settings.create_stream && stream_not_found(e.kind()) => {
            Ok(format!("connected, stream {stream} will be created"))
        }
        Err(e) => Err(Failure::transient(format!(
            "connected, but {}",
            missing_stream(stream, &e)
        ))),
    }
}

fn missing_stream(stream: &str, error: &impl std::fmt::Display) -> String {
    format!("stream {stream} is not there ({error}); create it or set create_stream = true")
}

fn stream_not_found(kind: GetStreamErrorKind) -> bool {
    matches!(kind, GetStreamErrorKind::JetStream(e)
        if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND)
}

pub struct NatsSink {
    settings: NatsSettings,
    studio: String,
    /// The subject template with the studio filled in; `{type}` is filled per event.
    subject: String,
    connection: SharedClient,
    /// Set once the stream is known to exist (or was created); cleared when a publish finds
    /// no stream, so a stream deleted meanwhile is looked for (or created) again.
    stream_ready: std::cell::Cell<bool>,
}

impl NatsSink {
    pub fn new(settings: NatsSettings, studio: &str, connections: &NatsConnections) -> NatsSink {
        NatsSink {
            subject: settings.subject.replace("{studio}", studio),
            connection: connections.share(&settings),
            settings,
            studio: studio.to_string(),
            stream_ready: std::cell::Cell::new(false),
        }
    }

    /// The shared client, connecting if it is not yet. Studios sharing a broker that does not
    /// answer wait for one connect at a time, each at most its own timeout; a failed connect
    /// is tried again by the next delivery.
    async fn client(&self) -> Result<async_nats::Client, Failure> {
        let connecting = self.connection.get_or_try_init(|| connect(&self.settings));
        match tokio::time::timeout(self.settings.timeout, connecting).await {
            Ok(client) => client.cloned(),
            Err(_) => Err(Failure::transient(format!(
                "NATS {}: no connection within {:?}",
                self.settings.shown_servers(),
                self.settings.timeout
            ))),
        }
    }

    /// Publishes every event with several publishes in flight, then waits for the
    /// acknowledgements in order; on failure, says how many were acknowledged before it. The
    /// ones after it may be in the stream too: sent again, they are dropped as duplicates.
    pub async fn deliver_all(&self, events: &[Outgoing<'_>]) -> Result<(), (usize, Failure)> {
        let client = self.client().await.map_err(|f| (0, f))?;
        let mut context = jetstream::new(client);
        context.set_timeout(self.settings.timeout);
        if !self.stream_ready.get() {
            let shown = self.settings.shown_servers();
            let timeout = self.settings.timeout;
            match tokio::time::timeout(timeout, self.ensure_stream(&context)).await {
                Ok(Ok(())) => self.stream_ready.set(true),
                Ok(Err(failure)) => return Err((0, failure)),
                Err(_) => {
                    let reason =
                        format!("NATS {shown}: no answer about the stream within {timeout:?}");
                    return Err((0, Failure::transient(reason)));
                }
            }
        }
        let mut acks = Vec::with_capacity(events.len());
        for (i, event) in events.iter().enumerate() {
            let subject = self.subject(event.event_type);
            let published = context
                .publish_with_headers(subject, self.headers(event), event.body.clone())
                .await;
            match published {
                Ok(ack) => acks.push(ack),
                Err(e) => {
                    // What was sent before still counts if it is acknowledged.
                    let failure = self.publish_failure(e.kind(), &e.to_string());
                    let acknowledged = match self.await_acks(acks).await {
                        Ok(()) => i,
                        Err((acknowledged, _)) => acknowledged,
                    };
                    return Err((acknowledged, failure));
                }
            }
        }
        self.await_acks(acks).await
    }

    /// Waits for the acknowledgements in order; on the first failure, says how many came before.
    async fn await_acks(
        &self,
        acks: Vec<jetstream::context::PublishAckFuture>,
    ) -> Result<(), (usize, Failure)> {
        for (acknowledged, ack) in acks.into_iter().enumerate() {
            if let Err(e) = ack.await {
                return Err((acknowledged, self.publish_failure(e.kind(), &e.to_string())));
            }
        }
        Ok(())
    }

    async fn ensure_stream(&self, context: &jetstream::Context) -> Result<(), Failure> {
        let name = &self.settings.stream;
        let shown = self.settings.shown_servers();
        if self.settings.create_stream {
            let config = stream::Config {
                name: name.clone(),
                subjects: vec![self.settings.stream_subjects()],
                storage: stream::StorageType::File,
                duplicate_window: DUPLICATE_WINDOW,
                ..Default::default()
            };
            context.get_or_create_stream(config).await.map_err(|e| {
                Failure::transient(format!("NATS {shown}: cannot create stream {name}: {e}"))
            })?;
        } else {
            context.get_stream(name).await.map_err(|e| {
                Failure::transient(format!("NATS {shown}: {}", missing_stream(name, &e)))
            })?;
        }
        Ok(())
    }

    /// The event type comes from the sender: a `.` would add subject tokens the stream does
    /// not take, a space or wildcard would make the subject invalid. Each becomes `_`.
    fn subject(&self, event_type: &str) -> String {
        let token: String = event_type
            .chars()
            .map(|c| match c {
                '.' | '*' | '>' => '_',
                c if c.is_whitespace() || c.is_control() => '_',
                c => c,
            })
            .collect();
        self.subject.replace("{type}", &token)
    }

    fn headers(&self, event: &Outgoing<'_>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", event.id);
        headers.insert("Gymrelay-Studio", self.studio.as_str());
        headers.insert("Gymrelay-Type", event.event_type);
        if let Some(entity) = event.entity_id {
            headers.insert("Gymrelay-Entity-Id", entity.to_string().as_str());
        }
        headers
    }

    fn publish_failure(&self, kind: PublishErrorKind, error: &str) -> Failure {
        let shown = self.settings.shown_servers();
        let reason = match kind {
            PublishErrorKind::TimedOut => format!(
                "NATS {shown}: no acknowledgement within {:?}",
                self.settings.timeout
            ),
            PublishErrorKind::StreamNotFound => {
                self.stream_ready.set(false);
                format!(
                    "NATS {shown}: no stream takes this subject (is stream {} there?)",
                    self.settings.stream
                )
            }
            PublishErrorKind::MaxPayloadExceeded => {
                return Failure::permanent(format!(
                    "NATS {shown}: the event is larger than the server's max_payload"
                ))
            }
            _ => format!("NATS {shown}: publish failed: {error}"),
        };
        Failure::transient(reason)
    }
}
