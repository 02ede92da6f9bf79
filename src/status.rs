//! What each studio is doing, as its actor reports it, for the admin API and the status page.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Serialize;

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum StudioState {
    #[default]
    Running,
    /// The Open API answered 401/403: events are kept until the key is fixed.
    CredentialsRejected,
    /// The Open API or a sink is failing and the head event is being retried.
    Retrying,
    /// Stopped by an operator; webhooks are still accepted and queued.
    Paused,
    /// The tenant file could not be loaded; the studio runs (or waits) on its last good version.
    ConfigError,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct EndpointUse {
    /// Requests in the current 60 s window.
    pub used: u32,
    pub limit: u32,
    /// Seconds until a 429 hold ends, if one is active.
    pub held_for_seconds: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct StatusSnapshot {
    pub state: StudioState,
    /// Milliseconds since the epoch of the last webhook accepted for this studio.
    pub last_event_ms: Option<i64>,
    pub last_error: Option<String>,
    /// The sink whose refusal the studio is retrying, if that is what it retries.
    pub failing_sink: Option<String>,
    /// Set while the tenant file is broken and the last good version keeps running.
    pub config_error: Option<String>,
    pub budget: BTreeMap<String, EndpointUse>,
}

impl StatusSnapshot {
    /// The state to show: a broken tenant file outranks what the worker reports.
    pub fn shown_state(&self) -> StudioState {
        if self.config_error.is_some() {
            StudioState::ConfigError
        } else {
            self.state
        }
    }
}

/// Shared between a studio's actor (writer) and the admin listener (reader).
#[derive(Debug, Default)]
pub struct StudioStatus {
    inner: Mutex<StatusSnapshot>,
}

impl StudioStatus {
    pub fn snapshot(&self) -> StatusSnapshot {
        self.lock().clone()
    }

    pub fn set_state(&self, state: StudioState, error: Option<String>) {
        let mut s = self.lock();
        s.state = state;
        s.failing_sink = None;
        if error.is_some() || state == StudioState::Running {
            s.last_error = error;
        }
    }

    /// The studio retries because `sink` refused the head event.
    pub fn sink_failing(&self, sink: &str, error: &str) {
        let mut s = self.lock();
        s.state = StudioState::Retrying;
        s.last_error = Some(format!("{sink}: {error}"));
        s.failing_sink = Some(sink.to_string());
    }

    pub fn set_config_error(&self, error: Option<String>) {
        self.lock().config_error = error;
    }

    pub fn event_received(&self, at_ms: i64) {
        self.lock().last_event_ms = Some(at_ms);
    }

    pub fn budget(&self, endpoint: &str, usage: EndpointUse) {
        self.lock().budget.insert(endpoint.to_string(), usage);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StatusSnapshot> {
        crate::lock::lock(&self.inner)
    }
}
