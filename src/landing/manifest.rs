//! The landing layer's own record of how it is laid out: `{prefix}/_landfall/layout.json`,
//! created by the first start that writes there and compared by every later one.
//!
//! An object's path follows from the layout and the partitioning, and the `event` layout
//! finds a redelivery by that path. A restart with `--partition-time publish` over a layer
//! written with `event` would land a redelivered message at a second path, as a new message;
//! a switch to the `batch` layout would stop finding redeliveries at all. So a start whose
//! settings differ from the recorded ones is refused, naming the setting: one prefix, one
//! layout. (A prefix landed before this record existed gets it on its next start.)

use serde::{Deserialize, Serialize};

use super::{LandingLayout, LayoutKind, Object, Put, Store};
use crate::event::PartitionTime;
use crate::telemetry::said::said;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Manifest {
    layout: LayoutKind,
    partition_time: PartitionTime,
}

pub fn name(layout: &LandingLayout) -> String {
    format!("{}/_landfall/layout.json", layout.prefix)
}

/// Why the layout could not be confirmed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ManifestError {
    /// The store was written with other settings: a configuration error.
    #[error("{0}")]
    Differs(String),
    /// The store could not be asked (yet).
    #[error("{0}")]
    Unreachable(String),
}

/// Compares the layout with the store's record, writing nothing: `Ok` when they agree or
/// there is no record yet.
pub async fn compare(store: &dyn Store, layout: &LandingLayout) -> Result<(), ManifestError> {
    let name = name(layout);
    let where_ = format!("{}/{name}", store.base_uri());
    match store
        .read(&name)
        .await
        .map_err(|e| ManifestError::Unreachable(said(&e)))?
    {
        Some(text) => agrees(&text, layout, &where_),
        None => Ok(()),
    }
}

/// Records the layout if the store has none yet; refuses one that differs from the record.
pub async fn check(store: &dyn Store, layout: &LandingLayout) -> Result<(), ManifestError> {
    let wanted = wanted(layout);
    let name = name(layout);
    let where_ = format!("{}/{name}", store.base_uri());
    let object = Object {
        name: name.clone(),
        body: serde_json::to_vec_pretty(&wanted)
            .expect("a manifest serialises")
            .into(),
        content_type: "application/json",
        metadata: Vec::new(),
    };
    let put = store
        .create(vec![object])
        .await
        .pop()
        .expect("one answer per object")
        .map_err(|e| {
            ManifestError::Unreachable(format!(
                "cannot record the landing layout at {where_}: {}",
                e.message
            ))
        })?;
    if put == Put::Created {
        return Ok(());
    }
    let text = store
        .read(&name)
        .await
        .map_err(|e| ManifestError::Unreachable(said(&e)))?
        .ok_or_else(|| {
            ManifestError::Unreachable(format!("{where_} vanished while it was read"))
        })?;
    agrees(&text, layout, &where_)
}

fn wanted(layout: &LandingLayout) -> Manifest {
    Manifest {
        layout: layout.kind,
        partition_time: layout.partition,
    }
}

/// Whether a record (`text`, read at `where_`) says what `layout` says.
fn agrees(text: &[u8], layout: &LandingLayout, where_: &str) -> Result<(), ManifestError> {
    let wanted = wanted(layout);
    let recorded: Manifest = serde_json::from_slice(text).map_err(|e| {
        ManifestError::Differs(format!("{where_} is not a landfall layout record: {e}"))
    })?;
    let mut problems = Vec::new();
    if recorded.layout != wanted.layout {
        problems.push(format!(
            "{} is {}, but the landing layer under {:?} was written with {}",
            layout.names.layout, wanted.layout, layout.prefix, recorded.layout
        ));
    }
    if recorded.partition_time != wanted.partition_time {
        problems.push(format!(
            "{} is {}, but the landing layer under {:?} was written with {}",
            layout.names.partition_time,
            wanted.partition_time,
            layout.prefix,
            recorded.partition_time
        ));
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(ManifestError::Differs(format!(
        "{}: keep the recorded settings, or land under another prefix ({where_} records them)",
        problems.join("; ")
    )))
}
