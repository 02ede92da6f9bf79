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
    /// The sweep under way and the last one that ended, once the studio has swept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reconcile: Option<crate::reconcile::SweepRecord>,
    /// The Open API's trouble and a sink's, kept apart: fetching and delivering run at the same
    /// time, and one side's success must not hide the other's failure. `state`, `last_error`
    /// and `failing_sink` are derived from them.
    #[serde(skip)]
    open_api_trouble: Option<(StudioState, String)>,
    #[serde(skip)]
    sink_trouble: Option<(String, String)>,
    #[serde(skip)]
    paused: bool,
}

impl StatusSnapshot {
    /// What the API shows, from what each side reported.
    fn derive(&mut self) {
        self.failing_sink = self.sink_trouble.as_ref().map(|(sink, _)| sink.clone());
        if self.paused {
            self.state = StudioState::Paused;
        } else if let Some((state, error)) = &self.open_api_trouble {
            self.state = *state;
            self.last_error = Some(error.clone());
        } else if let Some((sink, error)) = &self.sink_trouble {
            self.state = StudioState::Retrying;
            self.last_error = Some(format!("{sink}: {error}"));
        } else {
            self.state = StudioState::Running;
            self.last_error = None;
        }
    }

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

    /// A worker starts (`Running`: nothing known to be wrong) or the studio is paused.
    pub fn set_state(&self, state: StudioState) {
        let mut s = self.lock();
        s.paused = state == StudioState::Paused;
        if state == StudioState::Running {
            s.open_api_trouble = None;
            s.sink_trouble = None;
        }
        s.derive();
    }

    /// The Open API's side: rejected credentials or failing requests, or None once it answers.
    pub fn open_api_trouble(&self, trouble: Option<(StudioState, String)>) {
        let mut s = self.lock();
        s.open_api_trouble = trouble;
        s.derive();
    }

    /// The studio retries because `sink` refused an event.
    pub fn sink_failing(&self, sink: &str, error: &str) {
        let mut s = self.lock();
        s.sink_trouble = Some((sink.to_string(), error.to_string()));
        s.derive();
    }

    /// `sink` took events: if it was the one failing, it is no longer.
    pub fn sink_took(&self, sink: &str) {
        let mut s = self.lock();
        if s.sink_trouble
            .as_ref()
            .is_some_and(|(failing, _)| failing == sink)
        {
            s.sink_trouble = None;
            s.derive();
        }
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

    pub fn reconcile(&self, record: &crate::reconcile::SweepRecord) {
        let shown = (record.running.is_some() || record.last.is_some() || record.failure.is_some())
            .then(|| record.clone());
        self.lock().reconcile = shown;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StatusSnapshot> {
        crate::lock::lock(&self.inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_sides_recovery_does_not_hide_the_others_trouble() {
        let status = StudioStatus::default();
        status.sink_failing("http:https://crm/in", "500");
        status.open_api_trouble(None);
        let shown = status.snapshot();
        assert_eq!(shown.state, StudioState::Retrying, "the sink still fails");
        assert_eq!(shown.failing_sink.as_deref(), Some("http:https://crm/in"));

        let rejected = (StudioState::CredentialsRejected, "401".to_string());
        status.open_api_trouble(Some(rejected));
        status.sink_took("file:out/other.ndjson");
        assert_eq!(
            status.snapshot().failing_sink.as_deref(),
            Some("http:https://crm/in"),
            "another sink taking events says nothing of this one"
        );
        status.sink_took("http:https://crm/in");
        let shown = status.snapshot();
        assert_eq!(
            shown.state,
            StudioState::CredentialsRejected,
            "the key is still refused"
        );
        assert_eq!(shown.failing_sink, None);

        status.open_api_trouble(None);
        let shown = status.snapshot();
        assert_eq!(
            (shown.state, shown.last_error),
            (StudioState::Running, None)
        );
    }
}
