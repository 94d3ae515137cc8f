//! The fate of one record, from what every sink answered.

use std::sync::Arc;

use crate::sink::{Answers, Receipt, Written};

/// What the sinks' answers add up to.
#[derive(Debug, Clone, PartialEq)]
pub enum Fate {
    /// At least one sink stored something new.
    Stored,
    /// A sink already had it and none stored anything new.
    Duplicate,
    /// A dead letter whose message landed as an event before: nothing was dead-lettered.
    EarlierEvent,
    /// A sink refused the content (the first refusal's reason).
    Rejected(String),
}

/// The fate, and the landing object that holds the record (for an earlier event: that
/// event's, when known).
#[derive(Debug, Clone, PartialEq)]
pub struct Settled {
    pub fate: Fate,
    pub landing_uri: Option<Arc<str>>,
}

pub fn settle(answers: Answers) -> Settled {
    let (mut created, mut present, mut rejected, mut earlier) = (false, false, None, None);
    for written in answers.written {
        match written {
            Written::Created
            | Written::Landed(Receipt {
                before: Some(false),
                ..
            }) => created = true,
            Written::AlreadyPresent
            | Written::Landed(Receipt {
                before: Some(true), ..
            }) => present = true,
            Written::Accepted | Written::Landed(Receipt { before: None, .. }) => {}
            Written::LandedAsEvent(uri) => earlier = earlier.or(Some(uri)),
            Written::Rejected(reason) => rejected = rejected.or(Some(reason)),
        }
    }
    let fate = match (rejected, &earlier) {
        (Some(reason), _) => Fate::Rejected(reason),
        (None, Some(_)) => Fate::EarlierEvent,
        (None, None) if present && !created => Fate::Duplicate,
        (None, None) => Fate::Stored,
    };
    let landing_uri = match earlier {
        Some(event_uri) => event_uri,
        None => answers.landing_uri,
    };
    Settled { fate, landing_uri }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt(before: Option<bool>) -> Written {
        Written::Landed(Receipt {
            uri: "gs://b/o".into(),
            before,
        })
    }

    fn settled(written: Vec<Written>, landing_uri: Option<&str>) -> Settled {
        settle(Answers {
            written,
            landing_uri: landing_uri.map(Arc::from),
        })
    }

    #[test]
    fn a_duplicate_is_only_what_a_sink_knows_it_already_had() {
        use Written::*;
        let fate = |written| settled(written, None).fate;
        assert_eq!(
            fate(vec![receipt(Some(true)), AlreadyPresent]),
            Fate::Duplicate
        );
        assert_eq!(fate(vec![receipt(Some(true)), Created]), Fate::Stored);
        assert_eq!(fate(vec![receipt(Some(false)), Accepted]), Fate::Stored);
        // The batch layout cannot tell; SQLite can.
        assert_eq!(fate(vec![receipt(None), AlreadyPresent]), Fate::Duplicate);
        assert_eq!(fate(vec![receipt(None), Accepted]), Fate::Stored);
        assert_eq!(
            fate(vec![receipt(None), LandedAsEvent(None)]),
            Fate::EarlierEvent
        );
        assert_eq!(
            fate(vec![receipt(Some(false)), Rejected("no".into())]),
            Fate::Rejected("no".into())
        );
    }

    #[test]
    fn an_earlier_event_names_its_own_object() {
        let landed = settled(
            vec![
                receipt(None),
                Written::LandedAsEvent(Some("gs://b/event".into())),
            ],
            Some("gs://b/batch"),
        );
        assert_eq!(landed.landing_uri.as_deref(), Some("gs://b/event"));
        let landed = settled(vec![receipt(None), Written::Accepted], Some("gs://b/batch"));
        assert_eq!(landed.landing_uri.as_deref(), Some("gs://b/batch"));
    }
}
