//! Which time folders a range covers, found by walking the folder tree (year, month, day,
//! hour) with delimiter listings: a range never lists objects outside its own hours.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};

use crate::landing::Reader;

/// The hour folders (`{prefix}/{kind}/YYYY/MM/DD/HH/`) of these kinds that overlap
/// `[since, until)`, in order.
pub async fn hours(
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
pub fn minute_in_range(
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
