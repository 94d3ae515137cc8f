//! Logs and metrics. Logs are readable text locally and one JSON object per line in
//! production, with the fields Cloud Logging reads (`severity`, `message`, `time`) and the
//! request's trace (`logging.googleapis.com/trace`), so a push, its retries and Cloud Run's
//! own request log line up in the console. [`metrics`] serves Prometheus.

pub mod metrics;
pub mod said;
pub mod trace;

use std::fmt;
use std::io::IsTerminal;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where log lines go: stdout for the server (Cloud Run reads it), stderr for commands whose
/// stdout is their result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTo {
    Stdout,
    Stderr,
}

/// Installs the global subscriber. `RUST_LOG` overrides the default `info` filter. `project`
/// turns trace ids into the resource names Cloud Logging joins on. Text is coloured only
/// on a terminal: a file or a pipe gets plain text.
pub fn init(format: LogFormat, project: Option<String>, to: LogTo) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let writer = match to {
        LogTo::Stdout => BoxMakeWriter::new(std::io::stdout),
        LogTo::Stderr => BoxMakeWriter::new(std::io::stderr),
    };
    let terminal = match to {
        LogTo::Stdout => std::io::stdout().is_terminal(),
        LogTo::Stderr => std::io::stderr().is_terminal(),
    };
    let result = match format {
        LogFormat::Text => tracing_subscriber::registry()
            .with(filter)
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(terminal)
                    .with_target(false)
                    .with_writer(writer),
            )
            .try_init(),
        LogFormat::Json => tracing_subscriber::registry()
            .with(filter)
            .with(SpanFieldsLayer)
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(writer)
                    .event_format(CloudLogging { project }),
            )
            .try_init(),
    };
    // A second init (several apps in one test process) keeps the first subscriber.
    let _ = result;
}

/// Formats an event as a Cloud Logging structured entry.
struct CloudLogging {
    project: Option<String>,
}

fn severity(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        Level::DEBUG | Level::TRACE => "DEBUG",
    }
}

impl<S, N> FormatEvent<S, N> for CloudLogging
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        context: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut entry = Map::new();
        // The request span's fields (trace, message id) first; the event's own win.
        if let Some(scope) = context.event_scope() {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<SpanFields>() {
                    entry.extend(fields.0.clone());
                }
            }
        }
        let mut fields = JsonFields(entry);
        event.record(&mut fields);
        let mut entry = fields.0;
        trace::to_cloud_logging(&mut entry, self.project.as_deref());
        let message = entry
            .remove("message")
            .unwrap_or(Value::String(String::new()));
        entry.insert("severity".into(), severity(event.metadata().level()).into());
        entry.insert("message".into(), message);
        entry.insert("time".into(), chrono::Utc::now().to_rfc3339().into());
        entry.insert("target".into(), event.metadata().target().into());
        writeln!(writer, "{}", Value::Object(entry))
    }
}

/// A span's fields as JSON, kept in the span's extensions for the formatter.
struct SpanFields(Map<String, Value>);

struct SpanFieldsLayer;

impl<S> Layer<S> for SpanFieldsLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attributes: &Attributes<'_>, id: &Id, context: Context<'_, S>) {
        let mut fields = JsonFields(Map::new());
        attributes.record(&mut fields);
        if let Some(span) = context.span(id) {
            span.extensions_mut().insert(SpanFields(fields.0));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, context: Context<'_, S>) {
        let Some(span) = context.span(id) else { return };
        let mut extensions = span.extensions_mut();
        if let Some(SpanFields(map)) = extensions.get_mut::<SpanFields>() {
            let mut fields = JsonFields(std::mem::take(map));
            values.record(&mut fields);
            *map = fields.0;
        }
    }
}

struct JsonFields(Map<String, Value>);

impl Visit for JsonFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}
