//! Where enriched events go: the partner's application. Every sink receives the same JSON
//! document; the event id is the idempotency key, since delivery is at least once.

mod command;
mod file;
mod http;
mod nats;

use crate::failure::Failure;
use crate::outbound::Outbound;
use crate::redacted_url::RedactedUrl;
use crate::tenant::SinkSettings;
use actix_web::web::Bytes;

pub use command::CommandSink;
pub use file::{FileSink, FileWriters, FileWrites, FILE_WRITES_AT_ONCE};
pub use http::{sign, signing_key, HttpSink};
pub use nats::{probe as probe_nats, NatsConnections, NatsSink};

/// One enriched event on its way to a sink: the encoded document, and what a sink may need to
/// route or label it without decoding it again. The document is shared, not copied, by the
/// sinks that need it owned (HTTP, NATS). Not Debug: the body is a member's data.
#[derive(Clone, Copy)]
pub struct Outgoing<'a> {
    pub id: &'a str,
    pub event_type: &'a str,
    pub entity_id: Option<i64>,
    pub body: &'a Bytes,
}

/// A sink that cannot be built from its settings. Delivery failures are [`Failure`]s.
#[derive(Debug, thiserror::Error)]
pub enum SinkSetupError {
    #[error("http sink {url}: cannot send to this URL: {reason}")]
    Url { url: RedactedUrl, reason: String },
}

pub enum Sink {
    File(FileSink),
    Http(HttpSink),
    Command(CommandSink),
    Nats(NatsSink),
}

impl Sink {
    /// Builds a sink; the http sink's client is made here, so call it on the thread that uses it.
    pub fn new(
        settings: &SinkSettings,
        studio: &str,
        outbound: &Outbound,
        file_writes: &FileWrites,
        nats: &NatsConnections,
    ) -> Result<Sink, SinkSetupError> {
        Ok(match settings {
            SinkSettings::File { path } => {
                Sink::File(FileSink::new(path.clone(), file_writes.clone()))
            }
            SinkSettings::Http {
                url,
                secret,
                timeout,
            } => Sink::Http(HttpSink::new(url.clone(), secret, *timeout, outbound)?),
            SinkSettings::Command { argv, timeout } => {
                Sink::Command(CommandSink::new(argv.clone(), *timeout))
            }
            SinkSettings::Nats(settings) => {
                Sink::Nats(NatsSink::new(settings.clone(), studio, nats))
            }
        })
    }

    /// Hands over consecutive events in order; Ok only once the receiver has all of them
    /// (flushed, acked, 2xx, exit 0). A file takes them in one write and one sync, NATS with
    /// several publishes in flight; the others take them one by one. On failure, says how many
    /// were handed over before it.
    pub async fn deliver_all(&self, events: &[Outgoing<'_>]) -> Result<(), (usize, Failure)> {
        match self {
            Sink::File(s) => {
                let bodies: Vec<&[u8]> = events.iter().map(|e| &e.body[..]).collect();
                s.deliver_lines(&bodies).await.map_err(|e| (0, e))
            }
            Sink::Nats(s) => s.deliver_all(events).await,
            Sink::Http(s) => {
                for (i, event) in events.iter().enumerate() {
                    s.deliver(event.id, event.body).await.map_err(|e| (i, e))?;
                }
                Ok(())
            }
            Sink::Command(s) => {
                for (i, event) in events.iter().enumerate() {
                    s.deliver(event.id, event.body).await.map_err(|e| (i, e))?;
                }
                Ok(())
            }
        }
    }
}
