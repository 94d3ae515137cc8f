//! Prometheus metrics, served at `GET /metrics` in the Prometheus text format.
//!
//! Built on `prometheus-client`, the Prometheus project's own Rust client: every
//! [`Metrics`] owns its registry (no process-wide recorder), so each application, and each
//! test's application, counts only its own requests, and label sets are typed structs.
//! Label values are bounded: outcomes and rules are fixed words, event types come from the
//! catalog, never from a request.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// The label value for "no event type" (a payload that named none, or an unknown one).
pub const NO_EVENT_TYPE: &str = "";

/// [`NO_EVENT_TYPE`] as the label type, made once (every bad request would allocate it).
pub fn no_event_type() -> Arc<str> {
    static EMPTY: std::sync::OnceLock<Arc<str>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| Arc::from(NO_EVENT_TYPE)).clone()
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PushLabels {
    outcome: &'static str,
    event_type: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventTypeLabel {
    event_type: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabel {
    sink: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkErrorLabels {
    sink: &'static str,
    /// `batch_failed` (nothing of the batch is durable; its pushes get 503) or `row_rejected`
    /// (a warehouse refused one row for its content; it goes to the dead letter).
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeadLetterLabels {
    event_type: Arc<str>,
    rule: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// Makes each labelled histogram of a family with the family's buckets.
#[derive(Clone)]
struct Buckets(Arc<[f64]>);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

type Histograms<L> = Family<L, Histogram, Buckets>;

fn histograms<L: Clone + std::hash::Hash + Eq>(buckets: Vec<f64>) -> Histograms<L> {
    Family::new_with_constructor(Buckets(buckets.into()))
}

pub struct Metrics {
    /// Off (`--metrics false`): nothing is recorded per push and `/metrics` is not served.
    enabled: bool,
    registry: Registry,
    pushes: Family<PushLabels, Counter>,
    push_duration: Histograms<OutcomeLabel>,
    delivery_lag: Histograms<EventTypeLabel>,
    batch_size: Histograms<SinkLabel>,
    write_duration: Histograms<SinkLabel>,
    sink_errors: Family<SinkErrorLabels, Counter>,
    landing_objects: Family<SinkLabel, Counter>,
    events_per_object: Histograms<SinkLabel>,
    dead_letters: Family<DeadLetterLabels, Counter>,
    in_flight: Gauge,
    withheld_headers: Counter,
    budget_bytes: Gauge,
    budget_reserved: Gauge,
    /// Present only with OIDC authentication.
    keys_age: Option<Gauge<f64, AtomicU64>>,
}

impl Metrics {
    /// `deadline` is `--request-timeout-secs`: the push-duration buckets resolve the tail
    /// around it.
    pub fn new(deadline: Duration, oidc: bool) -> Self {
        let mut registry = Registry::with_prefix("landfall");
        let metrics = Metrics {
            enabled: true,
            pushes: Family::default(),
            push_duration: histograms(push_buckets(deadline)),
            delivery_lag: histograms(vec![
                0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
                7200.0, 21600.0, 86400.0, 604800.0,
            ]),
            batch_size: histograms(vec![
                1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0,
            ]),
            write_duration: histograms(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0,
            ]),
            sink_errors: Family::default(),
            landing_objects: Family::default(),
            events_per_object: histograms(vec![
                1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0,
            ]),
            dead_letters: Family::default(),
            in_flight: Gauge::default(),
            withheld_headers: Counter::default(),
            budget_bytes: Gauge::default(),
            budget_reserved: Gauge::default(),
            keys_age: oidc.then(|| {
                let age = Gauge::default();
                age.set(f64::NAN);
                age
            }),
            registry: Registry::default(),
        };
        registry.register(
            "pushes",
            "Push requests answered, by outcome and routed event type",
            metrics.pushes.clone(),
        );
        registry.register(
            "push_duration_seconds",
            "Time to answer a push request, by outcome; compare with the subscription's ack deadline",
            metrics.push_duration.clone(),
        );
        registry.register(
            "delivery_lag_seconds",
            "Receipt time minus publish time of each message: how stale the landing layer is",
            metrics.delivery_lag.clone(),
        );
        registry.register(
            "sink_batch_size",
            "Events per batch written to a sink",
            metrics.batch_size.clone(),
        );
        registry.register(
            "sink_write_duration_seconds",
            "Time to write one batch to a sink, retries included",
            metrics.write_duration.clone(),
        );
        registry.register(
            "sink_errors",
            "Failed batch writes (kind=batch_failed) and rows a warehouse refused (kind=row_rejected)",
            metrics.sink_errors.clone(),
        );
        registry.register(
            "landing_objects",
            "Objects created in the landing layer, by sink",
            metrics.landing_objects.clone(),
        );
        registry.register(
            "landing_events_per_object",
            "Messages held by each object created in the landing layer (1 in the event layout)",
            metrics.events_per_object.clone(),
        );
        registry.register(
            "dead_letters",
            "Messages stored in the dead letter, by event type and broken rule",
            metrics.dead_letters.clone(),
        );
        registry.register(
            "in_flight_pushes",
            "Push requests being handled now",
            metrics.in_flight.clone(),
        );
        registry.register(
            "withheld_headers",
            "Headers of unwrapped pushes not kept as attributes because their names look like credentials (see --keep-header)",
            metrics.withheld_headers.clone(),
        );
        registry.register(
            "push_memory_budget_bytes",
            "The memory pushes in flight may hold (--memory-budget-mb)",
            metrics.budget_bytes.clone(),
        );
        registry.register(
            "push_memory_reserved_bytes",
            "The memory pushes in flight hold now, as they reserved it",
            metrics.budget_reserved.clone(),
        );
        if let Some(age) = &metrics.keys_age {
            registry.register(
                "oidc_keys_age_seconds",
                "Age of the cached token-signing keys (NaN before the first fetch)",
                age.clone(),
            );
        }
        registry.register(
            "build",
            "The running build",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            }),
        );
        Metrics {
            registry,
            ..metrics
        }
    }

    /// Metrics that record nothing per push (the sinks' per-batch handles still count).
    pub fn disabled(deadline: Duration) -> Self {
        Metrics {
            enabled: false,
            ..Metrics::new(deadline, false)
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn push(&self, outcome: &'static str, event_type: &Arc<str>, elapsed: Duration) {
        if !self.enabled {
            return;
        }
        self.pushes
            .get_or_create(&PushLabels {
                outcome,
                event_type: event_type.clone(),
            })
            .inc();
        self.push_duration
            .get_or_create(&OutcomeLabel { outcome })
            .observe(elapsed.as_secs_f64());
    }

    pub fn delivery_lag(&self, event_type: &Arc<str>, lag: Duration) {
        if !self.enabled {
            return;
        }
        self.delivery_lag
            .get_or_create(&EventTypeLabel {
                event_type: event_type.clone(),
            })
            .observe(lag.as_secs_f64());
    }

    pub fn dead_letter(&self, event_type: &Arc<str>, rule: &'static str) {
        if !self.enabled {
            return;
        }
        self.dead_letters
            .get_or_create(&DeadLetterLabels {
                event_type: event_type.clone(),
                rule,
            })
            .inc();
    }

    /// One sink's handles, resolved once so the batch writer's hot path takes no label lookup.
    pub fn sink(&self, sink: &'static str) -> SinkMetrics {
        let errors = |kind| {
            self.sink_errors
                .get_or_create_owned(&SinkErrorLabels { sink, kind })
        };
        SinkMetrics {
            batch_size: self.batch_size.get_or_create_owned(&SinkLabel { sink }),
            write_duration: self.write_duration.get_or_create_owned(&SinkLabel { sink }),
            batch_failed: errors("batch_failed"),
            row_rejected: errors("row_rejected"),
        }
    }

    /// One landing sink's handles.
    pub fn landing(&self, sink: &'static str) -> LandingMetrics {
        LandingMetrics {
            objects: self
                .landing_objects
                .get_or_create_owned(&SinkLabel { sink }),
            events_per_object: self
                .events_per_object
                .get_or_create_owned(&SinkLabel { sink }),
        }
    }

    pub fn in_flight(&self) -> Option<InFlight> {
        self.enabled.then(|| {
            self.in_flight.inc();
            InFlight(self.in_flight.clone())
        })
    }

    pub fn withheld_headers(&self, count: usize) {
        if self.enabled {
            self.withheld_headers.inc_by(count as u64);
        }
    }

    /// The memory budget and what is reserved of it, as of a scrape.
    pub fn set_budget(&self, total: usize, reserved: usize) {
        self.budget_bytes.set(total as i64);
        self.budget_reserved.set(reserved as i64);
    }

    pub fn set_keys_age(&self, age: Option<Duration>) {
        if let Some(gauge) = &self.keys_age {
            gauge.set(age.map_or(f64::NAN, |a| a.as_secs_f64()));
        }
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Counts a push as in flight until dropped, however the request ends.
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[derive(Clone)]
pub struct SinkMetrics {
    pub batch_size: Histogram,
    pub write_duration: Histogram,
    pub batch_failed: Counter,
    pub row_rejected: Counter,
}

impl SinkMetrics {
    /// Handles that count nowhere, for sinks driven outside an application.
    pub fn detached() -> Self {
        Metrics::new(Duration::from_secs(10), false).sink("detached")
    }
}

/// What a landing sink counts: the objects it creates and how many messages each holds.
#[derive(Clone)]
pub struct LandingMetrics {
    objects: Counter,
    events_per_object: Histogram,
}

impl LandingMetrics {
    /// One object created, holding this many messages.
    pub fn object(&self, events: usize) {
        self.objects.inc();
        self.events_per_object.observe(events as f64);
    }
}

/// Sub-second resolution for normal pushes, then fractions and multiples of the deadline, so
/// that pushes creeping towards the ack deadline show before they cross it.
fn push_buckets(deadline: Duration) -> Vec<f64> {
    let deadline = deadline.as_secs_f64().max(0.001);
    let mut buckets = vec![
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    ];
    buckets.extend([0.5, 0.75, 0.9, 1.0, 1.5, 2.0].map(|f| f * deadline));
    buckets.sort_by(f64::total_cmp);
    buckets.dedup_by(|a, b| (*a - *b).abs() < 1e-9);
    buckets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_buckets_reach_past_the_deadline() {
        let buckets = push_buckets(Duration::from_secs(10));
        assert_eq!(
            buckets[buckets.len() - 6..],
            [5.0, 7.5, 9.0, 10.0, 15.0, 20.0]
        );
        assert!(buckets.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn the_exposition_names_every_family_with_the_landfall_prefix() {
        let metrics = Metrics::new(Duration::from_secs(10), true);
        metrics.push("landed", &Arc::from("order"), Duration::from_millis(3));
        metrics.dead_letter(&no_event_type(), "not_json");
        metrics.sink("landing").batch_size.observe(3.0);
        let text = metrics.encode();
        for needle in [
            "landfall_pushes_total{outcome=\"landed\",event_type=\"order\"} 1",
            "landfall_push_duration_seconds_count{outcome=\"landed\"} 1",
            "landfall_dead_letters_total{event_type=\"\",rule=\"not_json\"} 1",
            "landfall_sink_batch_size_sum{sink=\"landing\"} 3.0",
            "landfall_in_flight_pushes 0",
            "landfall_build_info{version=\"",
            "landfall_oidc_keys_age_seconds NaN",
        ] {
            assert!(text.contains(needle), "{needle} missing from\n{text}");
        }
    }
}
