//! The one place timestamps and dates are read and written, so that the validator, the
//! envelope, both warehouses and the landing paths agree on what a valid time is.

use chrono::{DateTime, Datelike, NaiveDate, SecondsFormat, SubsecRound, Utc};

/// The receipt time rows record, in microseconds: the precision BigQuery TIMESTAMP keeps, so
/// both warehouses hold the same value.
pub fn received_now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// RFC 3339, normalised to UTC, in the years 0001 to 9999 once in UTC (what BigQuery's
/// TIMESTAMP holds, and what an RFC 3339 stamp and a landing path can spell:
/// `9999-12-31T23:59:59-01:00` is in the year 10000). The catalog's and the envelope's
/// `date-time` format checks are this very function.
pub fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    // chrono also takes a space between date and time; RFC 3339's `date-time` does not.
    if !matches!(text.as_bytes().get(10), Some(b'T' | b't')) {
        return None;
    }
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
        .filter(|t| (1..=9999).contains(&t.year()))
}

/// UTC, with the sub-second precision the value was sent with (and `Z`).
pub fn format_timestamp(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// RFC 3339 `full-date` (`2026-11-25`). The catalog's `date` format check is this function.
pub fn parse_date(text: &str) -> Option<NaiveDate> {
    // chrono alone would also take `2026-1-5`; RFC 3339 wants exactly ten characters.
    if text.len() != 10 {
        return None;
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()
}

pub fn format_date(d: &NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_normalised_to_utc_keeping_their_precision() {
        let t = parse_timestamp("2026-11-25T09:15:30.250+02:00").unwrap();
        assert_eq!(format_timestamp(&t), "2026-11-25T07:15:30.250Z");
        assert!(parse_timestamp("25/11/2026").is_none());
        assert!(parse_timestamp("2026-11-25").is_none());
        assert!(
            parse_timestamp("2026-11-25 09:15:30Z").is_none(),
            "RFC 3339 wants the T"
        );
        assert!(parse_timestamp("2026-11-25t09:15:30z").is_some());
    }

    #[test]
    fn timestamps_stay_in_the_years_one_to_9999_once_in_utc() {
        for outside in [
            "9999-12-31T23:59:59-01:00",
            "0001-01-01T00:00:00+01:00",
            "0000-06-01T00:00:00Z",
        ] {
            assert_eq!(parse_timestamp(outside), None, "{outside}");
        }
        let last = parse_timestamp("9999-12-31T23:59:59.999999Z").unwrap();
        assert_eq!(format_timestamp(&last), "9999-12-31T23:59:59.999999Z");
        let first = parse_timestamp("0001-01-01T00:00:00Z").unwrap();
        assert_eq!(format_timestamp(&first), "0001-01-01T00:00:00Z");
    }

    #[test]
    fn dates_are_full_dates_only() {
        let d = parse_date("2026-02-28").unwrap();
        assert_eq!(format_date(&d), "2026-02-28");
        for bad in [
            "2026-2-28",
            "2026-02-30",
            "20260228",
            "2026-02-28T00:00:00Z",
        ] {
            assert!(parse_date(bad).is_none(), "{bad}");
        }
    }
}
