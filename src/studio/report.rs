//! What a studio tells the rest of the relay: metrics, its status for the admin API and the
//! status page, the recent-activity list, and one tracing span that names the studio in every
//! log line its worker writes.

use std::sync::Arc;
use std::time::Duration;

use crate::activity::{Activity, RecentEvent};
use crate::event::{now_millis, EnrichmentStatus, QueuedEvent};
use crate::failure::Failure;
use crate::metrics::Metrics;
use crate::status::{EndpointUse, StudioState, StudioStatus};
use crate::tenant::StudioId;

pub struct Report {
    studio: StudioId,
    metrics: Arc<Metrics>,
    status: Arc<StudioStatus>,
    activity: Arc<Activity>,
}

impl Report {
    pub fn new(
        studio: StudioId,
        metrics: Arc<Metrics>,
        status: Arc<StudioStatus>,
        activity: Arc<Activity>,
    ) -> Report {
        Report {
            studio,
            metrics,
            status,
            activity,
        }
    }

    pub fn studio(&self) -> &StudioId {
        &self.studio
    }

    /// The span every log line of the studio's worker is written in.
    pub fn span(&self) -> tracing::Span {
        tracing::info_span!("studio", studio = %self.studio)
    }

    /// A new worker: nothing known to be wrong.
    pub fn running(&self) {
        self.status.set_state(StudioState::Running);
    }

    /// The Open API's trouble (rejected key, failing requests), or None once it answers.
    pub fn open_api_trouble(&self, trouble: Option<(StudioState, String)>) {
        self.status.open_api_trouble(trouble);
    }

    pub fn budget(&self, endpoint: &str, usage: EndpointUse) {
        self.status.budget(endpoint, usage);
    }

    pub fn waited(&self, endpoint: &str, waited: Duration) {
        self.metrics
            .limiter_wait_seconds
            .with_label_values(&[self.studio.as_str(), endpoint])
            .inc_by(waited.as_secs_f64());
    }

    pub fn open_api_request(&self, endpoint: &str, status: &str) {
        self.metrics
            .openapi_requests
            .with_label_values(&[self.studio.as_str(), endpoint, status])
            .inc();
    }

    pub fn held(&self, endpoint: &str) {
        self.metrics
            .openapi_holds
            .with_label_values(&[self.studio.as_str(), endpoint])
            .inc();
    }

    pub fn sink_delivered(&self, sink: &str, events: usize) {
        if events > 0 {
            self.metrics
                .sink_deliveries
                .with_label_values(&[self.studio.as_str(), sink, "delivered"])
                .inc_by(events as u64);
            self.status.sink_took(sink);
        }
    }

    pub fn sink_failed(&self, sink: &str, failure: &Failure) {
        self.metrics
            .sink_deliveries
            .with_label_values(&[self.studio.as_str(), sink, "failed"])
            .inc();
        self.status.sink_failing(sink, &failure.to_string());
    }

    pub fn reconcile(&self, record: &crate::reconcile::SweepRecord) {
        self.status.reconcile(record);
    }

    /// A sweep's page is recorded.
    pub fn reconciled_page(&self) {
        self.metrics
            .reconcile_pages
            .with_label_values(&[self.studio.as_str()])
            .inc();
    }

    /// Reconciled events handed to the sinks, by the change each carries.
    pub fn reconciled(&self, emitted: &[crate::reconcile::ChangeKind]) {
        let mut counts = std::collections::BTreeMap::<&str, u64>::new();
        for kind in emitted {
            *counts.entry(kind.as_str()).or_default() += 1;
        }
        for (change, n) in counts {
            self.metrics
                .reconcile_events
                .with_label_values(&[self.studio.as_str(), change])
                .inc_by(n);
        }
    }

    /// For the activity list: delivered with its enrichment status, or dead-lettered (None).
    pub fn delivered(&self, event: &QueuedEvent, outcome: Option<EnrichmentStatus>) {
        let now = now_millis();
        self.activity.record(RecentEvent {
            at_ms: now,
            studio: self.studio.to_string(),
            kind: "delivered",
            event_type: event.event_type.clone(),
            entity_id: event.entity_id,
            outcome: outcome
                .map_or("dead_letter", EnrichmentStatus::as_str)
                .into(),
            latency_ms: (now - event.received_at_ms) as f64,
        });
    }
}
