//! Prometheus metrics. One registry per relay, passed explicitly (no process-global default
//! registry), so tests running several relays in one process see only their own numbers.

use prometheus::{
    CounterVec, Encoder, Histogram, HistogramOpts, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    /// By studio and outcome: accepted, duplicate, filtered, invalid, unauthorized, unavailable,
    /// busy, rate_limited, too_large, timed_out.
    pub webhooks: IntCounterVec,
    /// From the request's arrival to the answer, durable write included.
    pub ack_seconds: Histogram,
    pub inbox_depth: IntGaugeVec,
    pub inbox_oldest_seconds: prometheus::GaugeVec,
    /// By studio, endpoint template and HTTP status (or "error" for transport failures).
    pub openapi_requests: IntCounterVec,
    /// Time spent waiting for the studio's per-endpoint budget.
    pub limiter_wait_seconds: CounterVec,
    /// 429 answers, each of which holds the endpoint for a minute.
    pub openapi_holds: IntCounterVec,
    /// By studio, sink and result (delivered, failed).
    pub sink_deliveries: IntCounterVec,
    pub dead_letters: IntGaugeVec,
    /// Free bytes on the storage's file system (see `storage.min_free_bytes`).
    pub storage_free_bytes: prometheus::IntGauge,
    /// Dead letters removed because they outlived `delivery.dead_letter_retention`, by studio.
    pub dead_letters_expired: IntCounterVec,
    /// Webhooks with a missing or unknown key, by source address (at most 256, then "other").
    pub unauthorized_sources: IntCounterVec,
    /// Pages of the customer list a reconcile sweep has read, by studio.
    pub reconcile_pages: IntCounterVec,
    /// Customers a sweep handed to the sinks, by studio and change (added, changed,
    /// deleted, unchanged).
    pub reconcile_events: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry =
            Registry::new_custom(Some("gymrelay".into()), None).expect("a static prefix is valid");
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("static metric");
            registry
                .register(Box::new(c.clone()))
                .expect("registered once");
            c
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("static metric");
            registry
                .register(Box::new(g.clone()))
                .expect("registered once");
            g
        };
        let webhooks = counter(
            "webhooks_total",
            "Webhooks received, by studio and outcome",
            &["studio", "outcome"],
        );
        let ack_seconds = Histogram::with_opts(
            HistogramOpts::new("ack_seconds", "Time to acknowledge a webhook").buckets(vec![
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
            ]),
        )
        .expect("static metric");
        registry
            .register(Box::new(ack_seconds.clone()))
            .expect("registered once");
        let inbox_oldest_seconds = prometheus::GaugeVec::new(
            Opts::new(
                "inbox_oldest_seconds",
                "Age of the oldest event waiting, by studio",
            ),
            &["studio"],
        )
        .expect("static metric");
        registry
            .register(Box::new(inbox_oldest_seconds.clone()))
            .expect("registered once");
        let limiter_wait_seconds = CounterVec::new(
            Opts::new(
                "limiter_wait_seconds_total",
                "Time spent waiting for the Open API budget, by studio and endpoint",
            ),
            &["studio", "endpoint"],
        )
        .expect("static metric");
        registry
            .register(Box::new(limiter_wait_seconds.clone()))
            .expect("registered once");
        Metrics {
            webhooks,
            ack_seconds,
            inbox_depth: gauge(
                "inbox_depth",
                "Events waiting for enrichment or delivery, by studio",
                &["studio"],
            ),
            inbox_oldest_seconds,
            openapi_requests: counter(
                "openapi_requests_total",
                "Open API requests, by studio, endpoint and status",
                &["studio", "endpoint", "status"],
            ),
            limiter_wait_seconds,
            openapi_holds: counter(
                "openapi_holds_total",
                "429 answers that held an endpoint for a minute",
                &["studio", "endpoint"],
            ),
            sink_deliveries: counter(
                "sink_deliveries_total",
                "Sink deliveries, by studio, sink and result",
                &["studio", "sink", "result"],
            ),
            reconcile_pages: counter(
                "reconcile_pages_total",
                "Customer list pages read by reconcile sweeps, by studio",
                &["studio"],
            ),
            reconcile_events: counter(
                "reconcile_events_total",
                "CUSTOMER_RECONCILED events handed to the sinks, by studio and change",
                &["studio", "change"],
            ),
            dead_letters: gauge(
                "dead_letters",
                "Events in the dead-letter store, by studio",
                &["studio"],
            ),
            storage_free_bytes: {
                let g = prometheus::IntGauge::new(
                    "storage_free_bytes",
                    "Free bytes on the storage's file system",
                )
                .expect("static metric");
                registry
                    .register(Box::new(g.clone()))
                    .expect("registered once");
                g
            },
            dead_letters_expired: counter(
                "dead_letters_expired_total",
                "Dead letters removed after delivery.dead_letter_retention, by studio",
                &["studio"],
            ),
            unauthorized_sources: counter(
                "unauthorized_total",
                "Webhooks with a missing or unknown key, by source address",
                &["source"],
            ),
            registry,
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
