//! Landing-layer object names.
//!
//! The layout is `{prefix}/{event_type}/{YYYY}/{MM}/{DD}/{HH}/{mm}/{event_type}_{YYYYMMDDHHmmss}_{message_id}.json`.
//! The original layout ended in a per-process counter; a counter is not unique across
//! stateless replicas, and the message id is, so it takes the counter's place. That also
//! makes the name deterministic, which is what makes a redelivery land on the same object.

use chrono::{DateTime, Utc};

pub fn event_object(
    prefix: &str,
    event_type: &str,
    time: &DateTime<Utc>,
    message_id: &str,
) -> String {
    format!(
        "{prefix}/{event_type}/{}/{event_type}_{}_{message_id}.json",
        time.format("%Y/%m/%d/%H/%M"),
        time.format("%Y%m%d%H%M%S"),
    )
}

/// Dead letters are partitioned by publish time: it is the one time a redelivery repeats.
pub fn dead_letter_object(prefix: &str, publish_time: &DateTime<Utc>, message_id: &str) -> String {
    format!(
        "{prefix}/_dead_letter/{}/{message_id}.json",
        publish_time.format("%Y/%m/%d/%H/%M")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::parse_timestamp;

    #[test]
    fn event_objects_follow_the_landing_layout_in_utc() {
        let t = parse_timestamp("2026-01-02T05:06:07.890+02:00").unwrap();
        assert_eq!(
            event_object("output", "order", &t, "123"),
            "output/order/2026/01/02/03/06/order_20260102030607_123.json"
        );
    }

    #[test]
    fn dead_letters_sit_under_their_own_prefix() {
        let t = parse_timestamp("2026-11-25T07:54:20.468Z").unwrap();
        assert_eq!(
            dead_letter_object("output", &t, "9"),
            "output/_dead_letter/2026/11/25/07/54/9.json"
        );
    }
}
