//! Where enriched events go: the partner's application. Every sink receives the same JSON
//! document; the event id is the idempotency key, since delivery is at least once.

mod command;
mod file;
mod http;

use crate::failure::Failure;
use crate::outbound::Outbound;
use crate::redacted_url::RedactedUrl;
use crate::tenant::SinkSettings;

pub use command::CommandSink;
pub use file::{FileSink, FileWriters, FileWrites, FILE_WRITES_AT_ONCE};
pub use http::{sign, signing_key, HttpSink};

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
}

impl Sink {
    /// Builds a sink; the http sink's client is made here, so call it on the thread that uses it.
    pub fn new(
        settings: &SinkSettings,
        outbound: &Outbound,
        file_writes: &FileWrites,
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
        })
    }

    /// Hands over consecutive events in order; Ok only once the receiver has all of them. A file
    /// takes them in one write and one sync; the others take them one by one. On failure, says
    /// how many were handed over before it.
    pub async fn deliver_all(&self, events: &[(&str, &[u8])]) -> Result<(), (usize, Failure)> {
        if let Sink::File(s) = self {
            let bodies: Vec<&[u8]> = events.iter().map(|(_, body)| *body).collect();
            return s.deliver_lines(&bodies).await.map_err(|e| (0, e));
        }
        for (i, (id, body)) in events.iter().enumerate() {
            self.deliver(id, body).await.map_err(|e| (i, e))?;
        }
        Ok(())
    }

    /// Hands over one event; Ok only once the receiver has it (flushed, 2xx, exit 0).
    pub async fn deliver(&self, event_id: &str, body: &[u8]) -> Result<(), Failure> {
        match self {
            Sink::File(s) => s.deliver(body).await,
            Sink::Http(s) => s.deliver(event_id, body).await,
            Sink::Command(s) => s.deliver(event_id, body).await,
        }
    }
}
