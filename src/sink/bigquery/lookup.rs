//! Which rows the raw layer already holds, asked in one query per batch.
//!
//! Two kinds of record need asking: a redelivery (its landing object already existed, but the
//! first delivery may have failed between the object and the row) and a dead letter that
//! names the event it would have been, where the landing layer could not look for that
//! event itself (the `batch` layout, or no landing layer). One `jobs.query` answers for all
//! of a batch's tables (`UNION ALL`), each part pruned to the partitions its rows can be in:
//! the dates of their time field, or for the dead letter (partitioned by receipt) the days
//! from the earliest publish time to today.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::sync::Mutex;

use anyhow::{Context, bail};
use gcp_bigquery_client::model::query_parameter::QueryParameter;
use gcp_bigquery_client::model::query_parameter_type::QueryParameterType;
use gcp_bigquery_client::model::query_parameter_value::QueryParameterValue;
use gcp_bigquery_client::model::query_request::QueryRequest;
use gcp_bigquery_client::model::query_response::QueryResponse;

use crate::schema::metadata::DEAD_LETTER_TABLE;
use crate::sink::{Entry, Probe};
use crate::time::format_date;

/// What one entry needs looked up.
pub enum Ask {
    /// Its own row: a redelivery.
    Own(Probe),
    /// The event it would have been: a dead letter.
    Prior(Probe),
}

impl Ask {
    pub fn of(entry: &Entry) -> Option<Ask> {
        if entry.landed_before() == Some(true) {
            return Some(Ask::Own(Probe::of(&entry.record)));
        }
        if entry.needs_prior_lookup() {
            return Probe::prior(&entry.record).map(Ask::Prior);
        }
        None
    }

    pub fn probe(&self) -> &Probe {
        match self {
            Ask::Own(p) | Ask::Prior(p) => p,
        }
    }
}

/// The lookup's SQL and its parameters: one `SELECT` per table, joined by `UNION ALL`.
pub fn request(project: &str, dataset: &str, probes: &[Probe]) -> QueryRequest {
    let mut by_table: BTreeMap<&str, Vec<&Probe>> = BTreeMap::new();
    for probe in probes {
        by_table
            .entry(probe.table.name.as_str())
            .or_default()
            .push(probe);
    }
    let mut parts = Vec::new();
    let mut parameters = Vec::new();
    let mut ids_total = 0;
    for (n, (table, probes)) in by_table.iter().enumerate() {
        let ids: BTreeSet<&str> = probes.iter().map(|p| p.message_id.as_str()).collect();
        ids_total += ids.len();
        let (filter, dates) = partition_filter(n, probes);
        parts.push(format!(
            "SELECT DISTINCT '{table}' AS t, message_id FROM `{project}.{dataset}.{table}` WHERE {filter} AND message_id IN UNNEST(@ids{n})"
        ));
        parameters.push(array(
            &format!("ids{n}"),
            "STRING",
            ids.iter().map(|id| id.to_string()),
        ));
        parameters.push(dates);
    }
    QueryRequest {
        query: parts.join(" UNION ALL "),
        use_legacy_sql: false,
        parameter_mode: Some("NAMED".into()),
        query_parameters: Some(parameters),
        // More rows than ids cannot come back; a page token would mean an incomplete answer.
        max_results: Some(i32::try_from(ids_total + 1).unwrap_or(i32::MAX)),
        ..Default::default()
    }
}

/// `DATE(time_field) IN UNNEST(@dates)` for event tables; a receipt-date range for the
/// dead letter, whose rows cannot have been received before they were published.
fn partition_filter(n: usize, probes: &[&Probe]) -> (String, QueryParameter) {
    let table = &probes[0].table;
    if table.name == DEAD_LETTER_TABLE {
        let earliest = probes
            .iter()
            .map(|p| p.time.date_naive())
            .min()
            .unwrap_or_else(|| chrono::Utc::now().date_naive());
        let filter = format!(
            "DATE({}) BETWEEN @since{n} AND CURRENT_DATE()",
            table.partition_by
        );
        return (
            filter,
            scalar(&format!("since{n}"), "DATE", format_date(&earliest)),
        );
    }
    let dates: BTreeSet<String> = probes
        .iter()
        .map(|p| format_date(&p.time.date_naive()))
        .collect();
    let filter = format!("DATE({}) IN UNNEST(@dates{n})", table.partition_by);
    (
        filter,
        array(&format!("dates{n}"), "DATE", dates.into_iter()),
    )
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
pub fn found(response: QueryResponse) -> anyhow::Result<HashSet<(String, String)>> {
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
            let mut cells = row.columns.unwrap_or_default().into_iter();
            let mut text = || {
                cells
                    .next()
                    .and_then(|cell| cell.value)
                    .and_then(|v| v.as_str().map(str::to_string))
            };
            let table = text().context("a lookup row without a table")?;
            let id = text().context("a lookup row without a message id")?;
            Ok((table, id))
        })
        .collect()
}

/// A row: its table and message id.
type Row = (String, String);

/// A bounded memory of rows known to exist, oldest forgotten first. Only ever a shortcut: a
/// row it does not know is looked up.
pub struct Recent {
    capacity: usize,
    known: Mutex<(HashSet<Row>, VecDeque<Row>)>,
}

impl Default for Recent {
    fn default() -> Self {
        Self::with_capacity(100_000)
    }
}

impl Recent {
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            capacity,
            known: Mutex::new((HashSet::new(), VecDeque::new())),
        }
    }

    pub fn contains(&self, table: &str, id: &str) -> bool {
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        known.0.contains(&(table.to_string(), id.to_string()))
    }

    pub fn insert(&self, table: &str, id: &str) {
        let key = (table.to_string(), id.to_string());
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        let (set, order) = &mut *known;
        if set.insert(key.clone()) {
            order.push_back(key);
            if order.len() > self.capacity
                && let Some(oldest) = order.pop_front()
            {
                set.remove(&oldest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Record;
    use crate::event::testing;
    use serde_json::json;
    use std::sync::Arc;

    fn record(id: &str, data: serde_json::Value) -> Arc<Record> {
        testing::record(id, data.to_string().as_bytes())
    }

    fn inventory(day: u32) -> serde_json::Value {
        json!({"event_type": "inventory", "inventory_id": "i", "product_id": "p", "warehouse_id": "w",
               "quantity_change": 1, "reason": "sale", "timestamp": format!("2026-11-{day:02}T23:30:00+00:00")})
    }

    #[test]
    fn one_query_asks_every_table_each_pruned_to_its_partitions() {
        let probes: Vec<Probe> = [
            record("2", inventory(24)),
            record("1", inventory(25)),
            record("3", inventory(24)),
            record("9", json!("not an object")),
        ]
        .iter()
        .map(|r| Probe::of(r))
        .collect();
        let request = request("p", "raw", &probes);
        assert_eq!(
            request.query,
            "SELECT DISTINCT 'dead_letter' AS t, message_id FROM `p.raw.dead_letter` WHERE DATE(received_at) BETWEEN @since0 AND CURRENT_DATE() AND message_id IN UNNEST(@ids0) \
             UNION ALL SELECT DISTINCT 'inventory' AS t, message_id FROM `p.raw.inventory` WHERE DATE(timestamp) IN UNNEST(@dates1) AND message_id IN UNNEST(@ids1)"
        );
        let parameters = serde_json::to_value(&request.query_parameters).unwrap();
        assert_eq!(
            parameters[0]["parameterValue"]["arrayValues"],
            json!([{"value": "9"}])
        );
        assert_eq!(parameters[1]["parameterValue"]["value"], "2026-11-25");
        assert_eq!(
            parameters[2]["parameterValue"]["arrayValues"],
            json!([{"value": "1"}, {"value": "2"}, {"value": "3"}])
        );
        assert_eq!(
            parameters[3]["parameterValue"]["arrayValues"],
            json!([{"value": "2026-11-24"}, {"value": "2026-11-25"}])
        );
        // Standard SQL with named parameters; room for every id and one more, so that a
        // page token can only mean an incomplete answer.
        let types: Vec<_> = (0..4)
            .map(|i| {
                let p = &parameters[i];
                (p["name"].clone(), p["parameterType"].clone())
            })
            .collect();
        let array_of = |ty: &str| json!({"type": "ARRAY", "arrayType": {"type": ty}});
        assert_eq!(
            types,
            [
                (json!("ids0"), array_of("STRING")),
                (json!("since0"), json!({"type": "DATE"})),
                (json!("ids1"), array_of("STRING")),
                (json!("dates1"), array_of("DATE")),
            ]
        );
        let sent = serde_json::to_value(&request).unwrap();
        assert_eq!(sent["useLegacySql"], false);
        assert_eq!(sent["parameterMode"], "NAMED");
        assert_eq!(request.max_results, Some(5));
    }

    #[test]
    fn a_redelivery_asks_for_its_row_and_a_dead_letter_for_its_event_only_if_unseen() {
        let entry = |data: serde_json::Value, before: Option<Option<bool>>| Entry {
            record: record("5", data),
            landing: before.map(|before| crate::sink::Receipt {
                uri: "gs://b/o".into(),
                before,
            }),
        };
        let mut refused = inventory(24);
        refused["quantity_change"] = json!(1000);
        let ask = |e: &Entry| {
            Ask::of(e).map(|a| (matches!(a, Ask::Own(_)), a.probe().table.name.clone()))
        };
        assert_eq!(
            ask(&entry(inventory(24), Some(Some(true)))),
            Some((true, "inventory".into()))
        );
        assert_eq!(
            ask(&entry(inventory(24), Some(Some(false)))),
            None,
            "a first delivery"
        );
        assert_eq!(ask(&entry(inventory(24), None)), None);
        // A dead letter's own object says nothing of its event's: the batch layout, or none.
        assert_eq!(
            ask(&entry(refused.clone(), Some(None))),
            Some((false, "inventory".into()))
        );
        assert_eq!(
            ask(&entry(refused.clone(), None)),
            Some((false, "inventory".into()))
        );
        assert_eq!(ask(&entry(refused, Some(Some(false)))), None);
        assert_eq!(ask(&entry(json!("not an object"), Some(None))), None);
    }

    #[test]
    fn only_a_complete_answer_counts() {
        let answer = |v: serde_json::Value| found(serde_json::from_value(v).unwrap());
        let ids =
            answer(json!({"jobComplete": true, "rows": [{"f": [{"v": "order"}, {"v": "1"}]}]}))
                .unwrap();
        assert_eq!(ids, HashSet::from([("order".to_string(), "1".to_string())]));
        assert!(answer(json!({"jobComplete": true})).unwrap().is_empty());
        assert!(answer(json!({"jobComplete": false})).is_err());
        assert!(answer(json!({"jobComplete": true, "pageToken": "x"})).is_err());
        let failed =
            json!({"jobComplete": true, "errors": [{"reason": "invalidQuery", "message": "no"}]});
        assert!(answer(failed).is_err());
        assert!(
            answer(json!({"jobComplete": true, "errors": []}))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn recent_rows_are_forgotten_oldest_first() {
        let recent = Recent::with_capacity(2);
        recent.insert("t", "1");
        recent.insert("t", "2");
        recent.insert("t", "1");
        recent.insert("t", "3");
        assert!(!recent.contains("t", "1"));
        assert!(recent.contains("t", "2") && recent.contains("t", "3"));
        assert!(!recent.contains("u", "3"));
    }
}
