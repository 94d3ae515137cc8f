//! insertAll requests: rows encoded from the schema's cells, batches cut to BigQuery's
//! request limits, and per-row errors turned into per-record outcomes.

use gcp_bigquery_client::error::BQError;
use gcp_bigquery_client::model::table_data_insert_all_request::TableDataInsertAllRequest;
use gcp_bigquery_client::model::table_data_insert_all_response::TableDataInsertAllResponse;
use serde_json::{Map, Value};

use super::NAME;
use crate::schema::cell::JsonStyle;
use crate::sink::{Entry, SinkError, Written};

/// Google advises at most 500 rows per insertAll request.
const MAX_ROWS: usize = 500;
/// The request limit is 10 MB; leave room for the JSON around the rows.
const MAX_BYTES: usize = 8 * 1024 * 1024;

/// An entry's share of a request: its row carries the payload twice (columns and `raw`).
fn approximate_size(entry: &Entry) -> usize {
    entry.record.delivery.data.len() * 2 + 1024
}

/// Splits one table's entries into requests within BigQuery's limits.
pub fn chunks<'a>(records: &'a [&'a Entry]) -> Vec<&'a [&'a Entry]> {
    let mut chunks = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, record) in records.iter().enumerate() {
        let size = approximate_size(record);
        if i > start && (i - start == MAX_ROWS || bytes + size > MAX_BYTES) {
            chunks.push(&records[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < records.len() {
        chunks.push(&records[start..]);
    }
    chunks
}

/// The row as insertAll's JSON, NUMERIC as strings so no amount passes through a float.
pub fn row(entry: &Entry) -> Map<String, Value> {
    entry
        .record
        .table
        .columns()
        .zip(entry.cells())
        .map(|(column, cell)| {
            (
                column.name.to_string(),
                cell.to_json(&column.ty, JsonStyle::BigQuery),
            )
        })
        .collect()
}

pub fn insert_request(entries: &[&Entry]) -> Result<TableDataInsertAllRequest, BQError> {
    let mut request = TableDataInsertAllRequest::new();
    // Good rows land even when a neighbour is refused; the refused ones are dead-lettered.
    request.skip_invalid_rows();
    for entry in entries {
        request.add_row(Some(entry.record.message_id().to_string()), row(entry))?;
    }
    Ok(request)
}

/// What a stored row says: new, when the landing layer told whether the message landed before
/// (a redelivery's row was looked up and missing); otherwise only that it was stored.
pub fn stored(entry: &Entry) -> Written {
    match entry.landed_before() {
        Some(_) => Written::Created,
        None => Written::Accepted,
    }
}

/// A row refused because the table lacks one of its columns: the table is behind the catalog,
/// not the row wrong, so it is retried rather than dead-lettered.
pub const NO_SUCH_FIELD: &str = "no such field";

/// What one insertAll call did with its rows.
pub struct Outcomes {
    /// One per row: refused rows carry BigQuery's reason; every other row is [`stored`].
    pub rows: Vec<Result<Written, SinkError>>,
    /// Set when a row was refused because the table lacks a catalog column: the table is behind.
    pub missing_column: Option<String>,
}

pub fn outcomes(response: TableDataInsertAllResponse, entries: &[&Entry]) -> Outcomes {
    let mut outcomes: Vec<Result<Written, SinkError>> =
        entries.iter().map(|e| Ok(stored(e))).collect();
    let mut missing_column = None;
    for row_errors in response.insert_errors.unwrap_or_default() {
        let Some(index) = row_errors.index.and_then(|i| usize::try_from(i).ok()) else {
            continue;
        };
        let Some(outcome) = outcomes.get_mut(index) else {
            continue;
        };
        let errors = row_errors.errors.unwrap_or_default();
        let stopped = !errors.is_empty()
            && errors
                .iter()
                .all(|e| e.reason.as_deref() == Some("stopped"));
        let unknown_column = errors.iter().find_map(|e| {
            e.message
                .as_deref()
                .filter(|m| m.to_ascii_lowercase().starts_with(NO_SUCH_FIELD))
        });
        *outcome = if stopped {
            // Not refused itself, only not written: a redelivery will write it.
            Err(SinkError {
                sink: NAME,
                message: "row was not inserted because another row failed".into(),
            })
        } else if let Some(message) = unknown_column {
            let message = format!("the table lacks a column of the catalog ({message})");
            missing_column.get_or_insert_with(|| message.clone());
            Err(SinkError {
                sink: NAME,
                message,
            })
        } else {
            let reasons: Vec<String> = errors
                .iter()
                .map(|e| {
                    let location = e.location.as_deref().filter(|l| !l.is_empty());
                    let message = e.message.as_deref().unwrap_or("invalid row");
                    location.map_or(message.to_string(), |l| format!("{l}: {message}"))
                })
                .collect();
            Ok(Written::Rejected(reasons.join("; ")))
        };
    }
    Outcomes {
        rows: outcomes,
        missing_column,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::testing::record;
    use crate::sink::Receipt;
    use serde_json::json;

    fn landed(id: &str, data: &[u8]) -> Entry {
        Entry {
            record: record(id, data),
            landing: Some(Receipt {
                uri: format!("gs://b/{id}.json").into(),
                before: Some(false),
            }),
        }
    }

    #[test]
    fn rows_keep_nested_records_and_send_money_as_strings() {
        let order = br#"{"event_type":"order","order_id":"o","customer_id":"c","order_date":"2026-11-25T10:00:00Z","status":"pending","items":[{"product_id":"p","product_name":"n","quantity":1,"price":0.1}],"shipping_address":{"street":"s","city":"c","country":"NO"},"total_amount":0.30000000000000004}"#;
        let row = row(&landed("1", order));
        assert_eq!(row["total_amount"], json!("0.30000000000000004"));
        assert_eq!(row["items"][0]["quantity"], json!(1));
        assert_eq!(row["shipping_address"]["city"], json!("c"));
        assert_eq!(row["order_date"], json!("2026-11-25T10:00:00Z"));
        assert_eq!(row["attributes"], json!("{}"));
        assert_eq!(row["message_id"], json!("1"));
        assert_eq!(row["landing_uri"], json!("gs://b/1.json"));
    }

    #[test]
    fn chunks_respect_the_row_and_byte_limits() {
        let small: Vec<_> = (0..1001).map(|i| landed(&i.to_string(), b"{}")).collect();
        let refs: Vec<_> = small.iter().collect();
        let sizes: Vec<_> = chunks(&refs).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, vec![500, 500, 1]);
        let big: Vec<_> = (0..3)
            .map(|i| landed(&i.to_string(), &vec![b' '; 3 * 1024 * 1024]))
            .collect();
        let refs: Vec<_> = big.iter().collect();
        let sizes: Vec<_> = chunks(&refs).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, vec![1, 1, 1]);
    }

    #[test]
    fn insert_errors_become_rejections_and_stopped_or_unknown_column_rows_retry() {
        let response: TableDataInsertAllResponse = serde_json::from_value(json!({
            "insertErrors": [
                {"index": 1, "errors": [{"reason": "invalid", "location": "total_amount", "message": "Invalid NUMERIC value"}]},
                {"index": 2, "errors": [{"reason": "stopped", "message": ""}]},
                {"index": 3, "errors": [{"reason": "invalid", "location": "coupon", "message": "no such field: coupon."}]}
            ]
        }))
        .unwrap();
        let entries: Vec<Entry> = (0..4).map(|i| landed(&i.to_string(), b"{}")).collect();
        let refs: Vec<&Entry> = entries.iter().collect();
        let Outcomes {
            rows: outcomes,
            missing_column,
        } = outcomes(response, &refs);
        assert_eq!(outcomes[0], Ok(Written::Created));
        assert_eq!(
            outcomes[1],
            Ok(Written::Rejected(
                "total_amount: Invalid NUMERIC value".into()
            ))
        );
        assert!(outcomes[2].is_err());
        assert!(
            outcomes[3]
                .as_ref()
                .unwrap_err()
                .message
                .contains("lacks a column")
        );
        assert_eq!(
            missing_column.as_deref(),
            Some(outcomes[3].as_ref().unwrap_err().message.as_str())
        );
    }
}
