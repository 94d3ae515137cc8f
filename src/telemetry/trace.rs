//! The trace a request belongs to, from W3C `traceparent` or Google's `X-Cloud-Trace-Context`
//! (Cloud Run sets both), so its log lines join Cloud Run's request log in Cloud Logging.

use axum::http::HeaderMap;
use serde_json::{Map, Value};

/// A request's place in a trace: ids as Cloud Logging wants them (hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: String,
    pub span_id: Option<String>,
    pub sampled: bool,
}

impl TraceContext {
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        header("traceparent")
            .and_then(traceparent)
            .or_else(|| header("x-cloud-trace-context").and_then(cloud_trace_context))
    }
}

/// `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`.
fn traceparent(value: &str) -> Option<TraceContext> {
    let mut parts = value.trim().split('-');
    let (version, trace_id, span_id, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex(version, 2) || !hex(trace_id, 32) || !hex(span_id, 16) || !hex(flags, 2) {
        return None;
    }
    if trace_id.bytes().all(|b| b == b'0') {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some(TraceContext {
        trace_id: trace_id.to_ascii_lowercase(),
        span_id: Some(span_id.to_ascii_lowercase()),
        sampled: flags & 1 == 1,
    })
}

/// `TRACE_ID/SPAN_ID;o=OPTIONS`, the span id in decimal.
fn cloud_trace_context(value: &str) -> Option<TraceContext> {
    let (ids, options) = value.trim().split_once(';').unwrap_or((value.trim(), ""));
    let (trace_id, span_id) = ids.split_once('/').unwrap_or((ids, ""));
    if trace_id.len() != 32 || !trace_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(TraceContext {
        trace_id: trace_id.to_ascii_lowercase(),
        span_id: span_id.parse::<u64>().ok().map(|id| format!("{id:016x}")),
        sampled: options.trim() == "o=1",
    })
}

/// Renames the span's trace fields to the keys Cloud Logging joins on. Without a project the
/// id is kept as it is: a trace resource name needs one.
pub fn to_cloud_logging(entry: &mut Map<String, Value>, project: Option<&str>) {
    let Some(project) = project else { return };
    if let Some(Value::String(trace_id)) = entry.remove("trace_id") {
        entry.insert(
            "logging.googleapis.com/trace".into(),
            format!("projects/{project}/traces/{trace_id}").into(),
        );
    }
    if let Some(span_id) = entry.remove("span_id") {
        entry.insert("logging.googleapis.com/spanId".into(), span_id);
    }
    if let Some(sampled) = entry.remove("trace_sampled") {
        entry.insert("logging.googleapis.com/trace_sampled".into(), sampled);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_is_read_first() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "traceparent",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        headers.insert(
            "x-cloud-trace-context",
            "11111111111111111111111111111111/1;o=0".parse().unwrap(),
        );
        assert_eq!(
            TraceContext::from_headers(&headers),
            Some(TraceContext {
                trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
                span_id: Some("00f067aa0ba902b7".into()),
                sampled: true,
            })
        );
    }

    #[test]
    fn the_cloud_header_gives_a_decimal_span_id() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-cloud-trace-context",
            "105445aa7843bc8bf206b12000100000/1;o=1".parse().unwrap(),
        );
        let trace = TraceContext::from_headers(&headers).unwrap();
        assert_eq!(trace.trace_id, "105445aa7843bc8bf206b12000100000");
        assert_eq!(trace.span_id.as_deref(), Some("0000000000000001"));
        assert!(trace.sampled);
        for bad in [
            "nope",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        ] {
            let mut headers = HeaderMap::new();
            headers.insert("traceparent", bad.parse().unwrap());
            assert_eq!(TraceContext::from_headers(&headers), None, "{bad}");
        }
    }

    #[test]
    fn fields_are_renamed_for_cloud_logging_only_with_a_project() {
        let mut entry = Map::new();
        entry.insert("trace_id".into(), "abc".into());
        entry.insert("span_id".into(), "01".into());
        let mut without = entry.clone();
        to_cloud_logging(&mut without, None);
        assert_eq!(without, entry);
        to_cloud_logging(&mut entry, Some("shop-data"));
        assert_eq!(
            entry["logging.googleapis.com/trace"],
            "projects/shop-data/traces/abc"
        );
        assert_eq!(entry["logging.googleapis.com/spanId"], "01");
    }
}
