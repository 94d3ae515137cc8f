//! Appends through the Storage Write API, kept to one row per message although the default
//! stream does not deduplicate: rows are sent again only once BigQuery has said they were not
//! appended, or once a lookup has found them missing after an append went unanswered.

use std::collections::HashSet;
use std::time::Duration;

use tokio::time::Instant;

use super::request::{NO_SUCH_FIELD, stored};
use super::storage::{AppendError, Appended, MAX_REQUEST_ROWS_BYTES, StorageWriter};
use super::{BigQueryWarehouse, NAME};
use crate::sink::{Entry, Probe, SinkError, Written};

/// Rounds of sending what is still unsettled, within the deadline.
const MAX_ROUNDS: u32 = 5;
/// The first pause before a round, doubled each round.
const FIRST_PAUSE: Duration = Duration::from_millis(100);

type Outcome = Option<Result<Written, SinkError>>;

impl BigQueryWarehouse {
    /// Appends one table's entries; each gets its outcome.
    pub(super) async fn append(
        &self,
        writer: &StorageWriter,
        entries: &[&Entry],
    ) -> Vec<Result<Written, SinkError>> {
        let table = entries[0].record.table.name.as_str();
        let started = Instant::now();
        let row_type = writer.row_type(table);
        let rows: Vec<Vec<u8>> = entries.iter().map(|e| row_type.encode(e.cells())).collect();
        let mut outcomes: Vec<Outcome> = rows.iter().map(|row| too_large(row)).collect();
        let mut last_error = None;
        for round in 0..MAX_ROUNDS {
            let open: Vec<usize> = (0..rows.len()).filter(|&i| outcomes[i].is_none()).collect();
            let left = self.deadline.saturating_sub(started.elapsed());
            if open.is_empty() || left.is_zero() {
                break;
            }
            if round > 0 {
                tokio::time::sleep((FIRST_PAUSE * 2u32.pow(round - 1)).min(left)).await;
            }
            for chunk in requests(&open, &rows) {
                let left = self.deadline.saturating_sub(started.elapsed());
                let request = chunk.iter().map(|&i| rows[i].clone()).collect();
                let answer = writer.append(table, request, left).await;
                if let Some(error) = self
                    .settle_answer(answer, &chunk, entries, &mut outcomes)
                    .await
                {
                    last_error = Some(error);
                }
            }
        }
        let unsettled = last_error.unwrap_or_else(|| {
            format!(
                "not appended to {}.{table} within {:?}",
                self.target.dataset, self.deadline
            )
        });
        outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| {
                    Err(SinkError {
                        sink: NAME,
                        message: unsettled.clone(),
                    })
                })
            })
            .collect()
    }

    /// Records what an answer settled for the chunk's entries; returns why the rest is not.
    async fn settle_answer(
        &self,
        answer: Result<Appended, AppendError>,
        chunk: &[usize],
        entries: &[&Entry],
        outcomes: &mut [Outcome],
    ) -> Option<String> {
        let table = entries[0].record.table.name.as_str();
        match answer {
            Ok(Appended::All) => {
                for &i in chunk {
                    outcomes[i] = Some(Ok(stored(entries[i])));
                }
                None
            }
            // Nothing was appended: the refused rows are settled, the others go again.
            Ok(Appended::RowErrors(refused)) => {
                for (k, message) in refused {
                    let Some(&i) = chunk.get(k) else { continue };
                    outcomes[i] = Some(self.refused_row(table, message));
                }
                Some("appended again without the rows BigQuery refused".into())
            }
            Err(AppendError::NotAppended {
                schema,
                retryable,
                message,
            }) => {
                let why = format!(
                    "append to {}.{table} refused: {message}",
                    self.target.dataset
                );
                if schema {
                    self.mark_behind(table, why.clone());
                }
                if !retryable {
                    for &i in chunk {
                        outcomes[i] = Some(Err(SinkError {
                            sink: NAME,
                            message: why.clone(),
                        }));
                    }
                }
                Some(why)
            }
            Err(AppendError::Unknown(why)) => {
                self.find_appended(chunk, entries, outcomes, why).await
            }
        }
    }

    /// After an append went unanswered: rows found are stored; the others go again. A lookup
    /// that fails settles the chunk as failed (503): sending blindly could write a second row.
    async fn find_appended(
        &self,
        chunk: &[usize],
        entries: &[&Entry],
        outcomes: &mut [Outcome],
        why: String,
    ) -> Option<String> {
        let probes: Vec<Probe> = chunk
            .iter()
            .map(|&i| Probe::of(&entries[i].record))
            .collect();
        match self.lookup(&probes).await {
            Ok(found) => {
                let found: HashSet<&str> = found.iter().map(|(_, id)| id.as_str()).collect();
                for &i in chunk {
                    if found.contains(entries[i].record.message_id()) {
                        outcomes[i] = Some(Ok(stored(entries[i])));
                    }
                }
                Some(why)
            }
            Err(error) => {
                for &i in chunk {
                    outcomes[i] = Some(Err(error.clone()));
                }
                Some(error.message)
            }
        }
    }

    /// A row BigQuery refused: for its content (the dead letter takes it), or because the
    /// table lacks one of its columns (the table is behind; the row is retried, not blamed).
    fn refused_row(&self, table: &str, message: String) -> Result<Written, SinkError> {
        if message.to_ascii_lowercase().starts_with(NO_SUCH_FIELD) {
            let why = format!("the table lacks a column of the catalog ({message})");
            self.mark_behind(table, why.clone());
            return Err(SinkError {
                sink: NAME,
                message: why,
            });
        }
        Ok(Written::Rejected(message))
    }
}

/// A row no request can hold is refused for its size alone.
fn too_large(row: &[u8]) -> Outcome {
    (row.len() > MAX_REQUEST_ROWS_BYTES).then(|| {
        Ok(Written::Rejected(format!(
            "the row is {} bytes, more than a Storage Write API request holds ({MAX_REQUEST_ROWS_BYTES})",
            row.len()
        )))
    })
}

/// The open rows cut into requests within the request limit, in order.
fn requests(open: &[usize], rows: &[Vec<u8>]) -> Vec<Vec<usize>> {
    let mut requests: Vec<Vec<usize>> = Vec::new();
    let mut bytes = 0;
    for &i in open {
        let size = rows[i].len();
        match requests.last_mut() {
            Some(last) if bytes + size <= MAX_REQUEST_ROWS_BYTES => {
                last.push(i);
                bytes += size;
            }
            _ => {
                requests.push(vec![i]);
                bytes = size;
            }
        }
    }
    requests
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_stay_within_the_limit_and_keep_the_order() {
        let rows = vec![
            vec![0; 4 << 20],
            vec![0; 4 << 20],
            vec![0; 2 << 20],
            vec![0; 10],
        ];
        assert_eq!(requests(&[0, 1, 2, 3], &rows), vec![vec![0, 1], vec![2, 3]]);
        assert_eq!(requests(&[1, 3], &rows), vec![vec![1, 3]]);
    }

    #[test]
    fn only_a_row_over_the_limit_is_refused_for_its_size() {
        assert!(too_large(&vec![0; MAX_REQUEST_ROWS_BYTES]).is_none());
        assert!(matches!(
            too_large(&vec![0; MAX_REQUEST_ROWS_BYTES + 1]),
            Some(Ok(Written::Rejected(_)))
        ));
    }
}
