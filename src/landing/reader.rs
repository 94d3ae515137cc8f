//! The landing layer read back, beside the writer that decides what each object holds: which
//! hour folders a time range covers (walking the folder tree, year, month, day, hour, with
//! delimiter listings, so a range never lists objects outside its own hours), which objects of
//! a folder fall in the range, and the messages an object holds in each layout.

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use futures::StreamExt;

use super::format::{self, LandedMessage};
use super::layout::{DEAD_LETTER_FOLDER, Named};
use super::{LandingLayout, LayoutKind, Listed, Store};

/// The landing layer read back: a layout over a store.
pub struct Reader {
    pub layout: LandingLayout,
    pub store: Arc<dyn Store>,
}

/// A time range of the landing layout's partitioning: `[since, until)`, open where `None`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Range {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// A message read back, with the object that holds it.
#[derive(Debug, Clone)]
pub struct Found {
    pub message: LandedMessage,
    pub uri: Arc<str>,
}

impl Reader {
    pub fn uri(&self, name: &str) -> String {
        format!("{}/{name}", self.store.base_uri())
    }

    /// The hour folders (`{prefix}/{kind}/YYYY/MM/DD/HH/`) of these kinds that overlap the
    /// range, in order.
    pub async fn hours(&self, kinds: &[String], range: Range) -> anyhow::Result<Vec<String>> {
        hours(self, kinds, range.since, range.until).await
    }

    /// The objects of an hour folder whose minute is in the range and that `takes` picks,
    /// with what their names say; a listing that fails is an error in the list.
    pub async fn objects(
        &self,
        hour: &str,
        range: Range,
        takes: impl Fn(&str) -> bool,
    ) -> Vec<anyhow::Result<(Listed, Named)>> {
        let listed: Vec<anyhow::Result<Listed>> = self.store.list(hour.to_string()).collect().await;
        listed
            .into_iter()
            .filter_map(|item| match item {
                Ok(listed) => {
                    let named = self
                        .layout
                        .parse(&listed.name)
                        .filter(|named| minute_in_range(named.minute, range.since, range.until))?;
                    takes(&listed.name).then_some(Ok((listed, named)))
                }
                Err(e) => Some(Err(e.context(format!("listing {hour} failed")))),
            })
            .collect()
    }

    /// The messages one object holds: its bytes and metadata in the `event` layout, a
    /// dead-letter document, or every line of a `batch` object.
    pub async fn messages(&self, listed: &Listed, named: &Named) -> anyhow::Result<Vec<Found>> {
        let body = self
            .store
            .read(&listed.name)
            .await?
            .context("the object vanished while it was read")?;
        let messages = match (self.layout.kind, &named.message_id) {
            (LayoutKind::Batch, _) => format::read_lines(&body)?,
            (LayoutKind::Event, _) if named.kind == DEAD_LETTER_FOLDER => {
                vec![format::read_dead_letter(&body)?]
            }
            (LayoutKind::Event, Some(id)) => vec![format::read_event_object(
                id,
                &named.kind,
                body,
                &listed.metadata,
                listed.created,
            )],
            (LayoutKind::Event, None) => anyhow::bail!("not an object of the event layout"),
        };
        let uri: Arc<str> = self.uri(&listed.name).into();
        Ok(messages
            .into_iter()
            .map(|message| Found {
                message,
                uri: uri.clone(),
            })
            .collect())
    }
}

/// In the batch layout a redelivery is a second line, and always in the same folder as the
/// first (the same time partitions both). Keeps the earliest received copy of each message,
/// so that a run writes a message once and a dry run counts what a run would write; returns
/// how many later copies it dropped.
pub fn first_copies(found: &mut Vec<Found>) -> u64 {
    found.sort_by_key(|f| f.message.received_at);
    let mut seen = HashSet::new();
    let before = found.len();
    found.retain(|f| seen.insert(f.message.delivery.message_id.clone()));
    (before - found.len()) as u64
}

async fn hours(
    reader: &Reader,
    kinds: &[String],
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
) -> anyhow::Result<Vec<String>> {
    let mut hours = Vec::new();
    for kind in kinds {
        let mut level = vec![reader.layout.kind_prefix(kind)];
        // Year, month, day, hour: each level keeps the folders whose span meets the range.
        for depth in 1..=4 {
            let mut next = Vec::new();
            for folder in level {
                for child in reader.store.folders(&folder).await? {
                    if span(&child, depth)
                        .is_some_and(|(start, end)| overlaps(start, end, since, until))
                    {
                        next.push(child);
                    }
                }
            }
            level = next;
        }
        level.sort();
        hours.extend(level);
    }
    Ok(hours)
}

/// Whether a minute folder starting at `minute` overlaps the range.
fn minute_in_range(
    minute: DateTime<Utc>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
) -> bool {
    overlaps(minute, minute + Duration::minutes(1), since, until)
}

fn overlaps(
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
) -> bool {
    since.is_none_or(|since| end > since) && until.is_none_or(|until| start < until)
}

/// The time a folder `…/YYYY[/MM[/DD[/HH]]]/` spans, `depth` segments below its kind.
fn span(folder: &str, depth: usize) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let segments: Vec<&str> = folder
        .trim_end_matches('/')
        .rsplit('/')
        .take(depth)
        .collect();
    let mut parts: Vec<u32> = segments
        .iter()
        .rev()
        .map(|s| s.parse().ok())
        .collect::<Option<_>>()?;
    if parts.len() != depth {
        return None;
    }
    parts.resize(4, 0);
    let [year, month, day, hour] = [parts[0], parts[1].max(1), parts[2].max(1), parts[3]];
    let start = Utc.from_utc_datetime(
        &NaiveDate::from_ymd_opt(year as i32, month, day)?.and_hms_opt(hour, 0, 0)?,
    );
    let end = match depth {
        1 => Utc
            .with_ymd_and_hms(year as i32 + 1, 1, 1, 0, 0, 0)
            .single()?,
        2 if month == 12 => Utc
            .with_ymd_and_hms(year as i32 + 1, 1, 1, 0, 0, 0)
            .single()?,
        2 => Utc
            .with_ymd_and_hms(year as i32, month + 1, 1, 0, 0, 0)
            .single()?,
        3 => start + Duration::days(1),
        _ => start + Duration::hours(1),
    };
    Some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::parse_timestamp;

    fn t(text: &str) -> DateTime<Utc> {
        parse_timestamp(text).unwrap()
    }

    #[test]
    fn folders_span_their_year_month_day_or_hour() {
        assert_eq!(
            span("output/order/2026/", 1),
            Some((t("2026-01-01T00:00:00Z"), t("2027-01-01T00:00:00Z")))
        );
        assert_eq!(
            span("output/order/2026/12/", 2),
            Some((t("2026-12-01T00:00:00Z"), t("2027-01-01T00:00:00Z")))
        );
        assert_eq!(
            span("output/order/2026/02/28/", 3),
            Some((t("2026-02-28T00:00:00Z"), t("2026-03-01T00:00:00Z")))
        );
        assert_eq!(
            span("output/order/2026/11/25/09/", 4),
            Some((t("2026-11-25T09:00:00Z"), t("2026-11-25T10:00:00Z")))
        );
        assert_eq!(span("output/order/notes/", 1), None);
    }

    #[test]
    fn a_minute_is_in_range_when_it_overlaps_it() {
        let (since, until) = (
            Some(t("2026-11-25T09:30:30Z")),
            Some(t("2026-11-25T10:00:00Z")),
        );
        assert!(minute_in_range(t("2026-11-25T09:30:00Z"), since, until));
        assert!(!minute_in_range(t("2026-11-25T09:29:00Z"), since, until));
        assert!(minute_in_range(t("2026-11-25T09:59:00Z"), since, until));
        assert!(!minute_in_range(t("2026-11-25T10:00:00Z"), since, until));
        assert!(minute_in_range(t("1999-01-01T00:00:00Z"), None, None));
    }
}
