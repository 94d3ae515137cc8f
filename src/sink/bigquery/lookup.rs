//! Which redelivered messages the raw layer already holds.
//!
//! A record whose landing object already existed may or may not have its row (the first
//! delivery may have failed between the object and the row). One query per table per batch
//! answers that for all of the batch's redeliveries, pruned to the partitions their rows can
//! be in: the dates of their time field, or for the dead letter (partitioned by receipt) the
//! days from the earliest publish time to today.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use anyhow::{Context, bail};
use gcp_bigquery_client::model::query_parameter::QueryParameter;
use gcp_bigquery_client::model::query_parameter_type::QueryParameterType;
use gcp_bigquery_client::model::query_parameter_value::QueryParameterValue;
use gcp_bigquery_client::model::query_request::QueryRequest;
use gcp_bigquery_client::model::query_response::QueryResponse;

use crate::event::Record;
use crate::schema::metadata::DEAD_LETTER_TABLE;
use crate::schema::{Cell, Table};
use crate::time::format_date;

/// The lookup's SQL and its parameters.
pub fn request(
    project: &str,
    dataset: &str,
    table: &Table,
    records: &[&Arc<Record>],
) -> QueryRequest {
    let ids: BTreeSet<&str> = records.iter().map(|r| r.message_id.as_str()).collect();
    let (filter, dates) = partition_filter(table, records);
    let query = format!(
        "SELECT DISTINCT message_id FROM `{project}.{dataset}.{}` WHERE {filter} AND message_id IN UNNEST(@ids)",
        table.name
    );
    let mut parameters = vec![array("ids", "STRING", ids.iter().map(|id| id.to_string()))];
    parameters.push(dates);
    QueryRequest {
        query,
        use_legacy_sql: false,
        parameter_mode: Some("NAMED".into()),
        query_parameters: Some(parameters),
        // More rows than ids cannot come back; a page token would mean an incomplete answer.
        max_results: Some(i32::try_from(ids.len() + 1).unwrap_or(i32::MAX)),
        ..Default::default()
    }
}

/// `DATE(time_field) IN UNNEST(@dates)` for event tables; a receipt-date range for the
/// dead letter, whose rows cannot have been received before they were published.
fn partition_filter(table: &Table, records: &[&Arc<Record>]) -> (String, QueryParameter) {
    if table.name == DEAD_LETTER_TABLE {
        let earliest = records
            .iter()
            .map(|r| r.publish_time.date_naive())
            .min()
            .unwrap_or_else(|| chrono::Utc::now().date_naive());
        let filter = format!(
            "DATE({}) BETWEEN @since AND CURRENT_DATE()",
            table.partition_by
        );
        return (filter, scalar("since", "DATE", format_date(&earliest)));
    }
    let dates: BTreeSet<String> = records
        .iter()
        .filter_map(|r| match r.cell(&table.partition_by) {
            Some(Cell::Timestamp(t)) => Some(format_date(&t.date_naive())),
            _ => None,
        })
        .collect();
    let filter = format!("DATE({}) IN UNNEST(@dates)", table.partition_by);
    (filter, array("dates", "DATE", dates.into_iter()))
}

fn scalar(name: &str, ty: &str, value: String) -> QueryParameter {
    QueryParameter {
        name: Some(name.into()),
        parameter_type: Some(QueryParameterType {
            r#type: ty.into(),
            ..Default::default()
        }),
        parameter_value: Some(QueryParameterValue {
            value: Some(value),
            ..Default::default()
        }),
    }
}

fn array(name: &str, ty: &str, values: impl Iterator<Item = String>) -> QueryParameter {
    QueryParameter {
        name: Some(name.into()),
        parameter_type: Some(QueryParameterType {
            r#type: "ARRAY".into(),
            array_type: Some(Box::new(QueryParameterType {
                r#type: ty.into(),
                ..Default::default()
            })),
            ..Default::default()
        }),
        parameter_value: Some(QueryParameterValue {
            array_values: Some(
                values
                    .map(|v| QueryParameterValue {
                        value: Some(v),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
    }
}

/// The message ids the answer holds. Anything short of a complete answer is an error: a guess
/// would either lose a row or write a second one.
pub fn found(response: QueryResponse) -> anyhow::Result<HashSet<String>> {
    if let Some(errors) = response.errors.filter(|e| !e.is_empty()) {
        bail!("the lookup query failed: {errors:?}");
    }
    if response.job_complete != Some(true) {
        bail!("the lookup query did not finish in time");
    }
    if response.page_token.is_some() {
        bail!("the lookup query's answer did not fit one page");
    }
    response
        .rows
        .unwrap_or_default()
        .into_iter()
        .map(|row| {
            row.columns
                .and_then(|cells| cells.into_iter().next())
                .and_then(|cell| cell.value)
                .and_then(|v| v.as_str().map(str::to_string))
                .context("a lookup row without a message id")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::testing;
    use serde_json::json;

    fn record(id: &str, data: serde_json::Value) -> Arc<Record> {
        testing::record(id, data.to_string().as_bytes())
    }

    fn inventory(day: u32) -> serde_json::Value {
        json!({"event_type": "inventory", "inventory_id": "i", "product_id": "p", "warehouse_id": "w",
               "quantity_change": 1, "reason": "sale", "timestamp": format!("2026-11-{day:02}T23:30:00+00:00")})
    }

    #[test]
    fn event_lookups_are_pruned_to_the_dates_of_their_time_field() {
        let records = [
            record("2", inventory(24)),
            record("1", inventory(25)),
            record("3", inventory(24)),
        ];
        let refs: Vec<_> = records.iter().collect();
        let request = request("p", "raw", &records[0].table, &refs);
        assert_eq!(
            request.query,
            "SELECT DISTINCT message_id FROM `p.raw.inventory` WHERE DATE(timestamp) IN UNNEST(@dates) AND message_id IN UNNEST(@ids)"
        );
        let parameters = serde_json::to_value(&request.query_parameters).unwrap();
        assert_eq!(
            parameters[0]["parameterValue"]["arrayValues"],
            json!([{"value": "1"}, {"value": "2"}, {"value": "3"}])
        );
        assert_eq!(
            parameters[1]["parameterValue"]["arrayValues"],
            json!([{"value": "2026-11-24"}, {"value": "2026-11-25"}])
        );
    }

    #[test]
    fn dead_letter_lookups_range_from_the_earliest_publish_date() {
        let records = [record("9", json!("not an object"))];
        let refs: Vec<_> = records.iter().collect();
        let request = request("p", "raw", &records[0].table, &refs);
        assert!(
            request
                .query
                .contains("DATE(received_at) BETWEEN @since AND CURRENT_DATE()")
        );
        let parameters = serde_json::to_value(&request.query_parameters).unwrap();
        assert_eq!(parameters[1]["parameterValue"]["value"], "2026-11-25");
    }

    #[test]
    fn only_a_complete_answer_counts() {
        let answer = |v: serde_json::Value| found(serde_json::from_value(v).unwrap());
        let ids = answer(json!({"jobComplete": true, "rows": [{"f": [{"v": "1"}]}]})).unwrap();
        assert_eq!(ids, HashSet::from(["1".to_string()]));
        assert!(answer(json!({"jobComplete": true})).unwrap().is_empty());
        assert!(answer(json!({"jobComplete": false})).is_err());
        assert!(answer(json!({"jobComplete": true, "pageToken": "x"})).is_err());
    }
}
