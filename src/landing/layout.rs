//! Where records go in the landing layer and what the objects hold: the two layouts and
//! their object names.
//!
//! - `event` (the default): one object per message,
//!   `{prefix}/{event_type}/{YYYY}/{MM}/{DD}/{HH}/{mm}/{event_type}_{YYYYMMDDHHmmss}_{message_id}.json`,
//!   holding the message data byte for byte. The message id takes the place of the original
//!   layout's per-process counter, which is not unique across stateless replicas; it also
//!   makes the name deterministic, which is how a redelivery finds its object.
//! - `batch`: one object per type and minute folder for the messages that arrive together,
//!   `{prefix}/{event_type}/{…minute…}/{event_type}_{YYYYMMDDHHmmss}_{batch}.jsonl`, one line
//!   per message ([`super::lines`]); `{batch}` is a UUIDv7, unique without coordination.
//!
//! Dead letters sit under `{prefix}/_dead_letter/` in both, partitioned by publish time: the
//! one time a redelivery repeats.

use std::fmt;

use chrono::{DateTime, Utc};

use crate::event::PartitionTime;

/// `--landing-layout`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum LayoutKind {
    /// One object per message, named by its message id: exact, and how redeliveries are found.
    Event,
    /// One newline-delimited JSON object per type, minute and batch: cheap at volume.
    Batch,
}

impl fmt::Display for LayoutKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LayoutKind::Event => "event",
            LayoutKind::Batch => "batch",
        })
    }
}

/// How landing object names are laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LandingLayout {
    pub prefix: String,
    pub partition: PartitionTime,
    pub kind: LayoutKind,
    /// How the operator names the layout's settings, for messages.
    pub names: SettingNames,
}

/// The names of the layout's settings as the operator gives them (the command line's own,
/// `--landing-layout (LANDFALL_LANDING_LAYOUT)`, filled in by the settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingNames {
    pub layout: String,
    pub partition_time: String,
}

impl Default for SettingNames {
    fn default() -> Self {
        Self {
            layout: "the landing layout".into(),
            partition_time: "the partition time".into(),
        }
    }
}

/// The folder segment of dead letters, beside the event types'.
pub const DEAD_LETTER_FOLDER: &str = "_dead_letter";

/// A minute folder of one kind of record: what a batch object gathers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MinuteFolder {
    /// The event type, or [`DEAD_LETTER_FOLDER`].
    pub kind: String,
    /// `YYYY/MM/DD/HH/mm`.
    pub minute: String,
}

impl LandingLayout {
    pub fn event_object(&self, event_type: &str, time: &DateTime<Utc>, message_id: &str) -> String {
        format!(
            "{}/{event_type}/{}/{event_type}_{}_{message_id}.json",
            self.prefix,
            minute(time),
            stamp(time),
        )
    }

    pub fn dead_letter_object(&self, publish_time: &DateTime<Utc>, message_id: &str) -> String {
        format!(
            "{}/{DEAD_LETTER_FOLDER}/{}/{message_id}.json",
            self.prefix,
            minute(publish_time)
        )
    }

    /// A batch object: `earliest` is the earliest landing time of its records.
    pub fn batch_object(
        &self,
        folder: &MinuteFolder,
        earliest: &DateTime<Utc>,
        batch: &str,
    ) -> String {
        let stem = if folder.kind == DEAD_LETTER_FOLDER {
            "dead_letter"
        } else {
            folder.kind.as_str()
        };
        format!(
            "{}/{}/{}/{stem}_{}_{batch}.jsonl",
            self.prefix,
            folder.kind,
            folder.minute,
            stamp(earliest)
        )
    }

    /// The folder a record of this kind (event type or dead letter) at this time lands in.
    pub fn minute_folder(&self, kind: &str, time: &DateTime<Utc>) -> MinuteFolder {
        MinuteFolder {
            kind: kind.to_string(),
            minute: minute(time),
        }
    }

    /// Where the objects of one kind (an event type or [`DEAD_LETTER_FOLDER`]) live.
    pub fn kind_prefix(&self, kind: &str) -> String {
        format!("{}/{kind}/", self.prefix)
    }
}

/// A fresh batch name: time-ordered, and unique across replicas and restarts.
pub fn batch_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

fn minute(time: &DateTime<Utc>) -> String {
    time.format("%Y/%m/%d/%H/%M").to_string()
}

fn stamp(time: &DateTime<Utc>) -> String {
    time.format("%Y%m%d%H%M%S").to_string()
}

/// What an object name says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    /// The event type, or [`DEAD_LETTER_FOLDER`].
    pub kind: String,
    /// The minute folder's start, in UTC.
    pub minute: DateTime<Utc>,
    /// The message id of an event-layout object; `None` for a batch object.
    pub message_id: Option<String>,
}

impl LandingLayout {
    /// Reads an object name of this layout back; `None` for names it never writes.
    pub fn parse(&self, name: &str) -> Option<Named> {
        let rest = name.strip_prefix(&self.prefix)?.strip_prefix('/')?;
        let parts: Vec<&str> = rest.split('/').collect();
        let [kind, year, month, day, hour, min, file] = parts.as_slice() else {
            return None;
        };
        let minute = chrono::NaiveDate::from_ymd_opt(
            year.parse().ok()?,
            month.parse().ok()?,
            day.parse().ok()?,
        )?
        .and_hms_opt(hour.parse().ok()?, min.parse().ok()?, 0)?
        .and_utc();
        let message_id = match (self.kind, *kind == DEAD_LETTER_FOLDER) {
            (LayoutKind::Event, true) => Some(file.strip_suffix(".json")?.to_string()),
            (LayoutKind::Event, false) => {
                let stem = file.strip_prefix(kind)?.strip_prefix('_')?;
                let (_, id) = stem.strip_suffix(".json")?.split_once('_')?;
                Some(id.to_string())
            }
            (LayoutKind::Batch, _) => {
                file.strip_suffix(".jsonl")?;
                None
            }
        };
        Some(Named {
            kind: kind.to_string(),
            minute,
            message_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::parse_timestamp;

    fn layout(kind: LayoutKind) -> LandingLayout {
        LandingLayout {
            names: SettingNames::default(),
            prefix: "output".into(),
            partition: PartitionTime::Event,
            kind,
        }
    }

    #[test]
    fn event_objects_follow_the_landing_layout_in_utc() {
        let t = parse_timestamp("2026-01-02T05:06:07.890+02:00").unwrap();
        let name = layout(LayoutKind::Event).event_object("order", &t, "123");
        assert_eq!(
            name,
            "output/order/2026/01/02/03/06/order_20260102030607_123.json"
        );
        let named = layout(LayoutKind::Event).parse(&name).unwrap();
        assert_eq!(named.kind, "order");
        assert_eq!(named.message_id.as_deref(), Some("123"));
        assert_eq!(
            named.minute,
            parse_timestamp("2026-01-02T03:06:00Z").unwrap()
        );
    }

    #[test]
    fn dead_letters_sit_under_their_own_prefix() {
        let t = parse_timestamp("2026-11-25T07:54:20.468Z").unwrap();
        let layout = layout(LayoutKind::Event);
        let name = layout.dead_letter_object(&t, "9");
        assert_eq!(name, "output/_dead_letter/2026/11/25/07/54/9.json");
        assert_eq!(
            layout.parse(&name).unwrap().message_id.as_deref(),
            Some("9")
        );
    }

    #[test]
    fn batch_objects_are_named_by_their_folder_earliest_time_and_batch() {
        let t = parse_timestamp("2026-11-25T07:54:20.468Z").unwrap();
        let layout = layout(LayoutKind::Batch);
        let folder = layout.minute_folder("inventory", &t);
        assert_eq!(
            layout.batch_object(&folder, &t, "0192"),
            "output/inventory/2026/11/25/07/54/inventory_20261125075420_0192.jsonl"
        );
        let dead = layout.minute_folder(DEAD_LETTER_FOLDER, &t);
        let name = layout.batch_object(&dead, &t, "0193");
        assert_eq!(
            name,
            "output/_dead_letter/2026/11/25/07/54/dead_letter_20261125075420_0193.jsonl"
        );
        let named = layout.parse(&name).unwrap();
        assert_eq!(
            (named.kind.as_str(), named.message_id),
            ("_dead_letter", None)
        );
    }

    #[test]
    fn batch_ids_are_unique_and_time_ordered() {
        let (a, b) = (batch_id(), batch_id());
        assert_ne!(a, b);
        assert!(a < b, "{a} {b}");
        assert_eq!(a.len(), 32);
    }

    #[test]
    fn names_of_another_layout_or_prefix_are_not_read() {
        let event = layout(LayoutKind::Event);
        assert_eq!(event.parse("other/order/2026/01/02/03/06/x.json"), None);
        assert_eq!(event.parse("output/_landfall/layout.json"), None);
        assert_eq!(
            event.parse("output/order/2026/01/02/03/06/order_1_2.jsonl"),
            None
        );
    }
}
