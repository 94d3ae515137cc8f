//! Arbitrary payloads and attributes through the shipped catalog (routing, validation, the
//! typed row): never a panic; an event's row has a cell per column and no empty required one.

#![no_main]

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

use landfall::envelope::Delivery;
use landfall::event::route::Routing;
use landfall::event::{Classifier, PartitionTime};
use landfall::schema::{Catalog, CatalogSource, Cell, Mode};

#[derive(Arbitrary, Debug)]
struct Message<'a> {
    data: &'a [u8],
    attributes: BTreeMap<String, String>,
    by_attribute: bool,
}

fn classifiers() -> &'static [Classifier; 2] {
    static CLASSIFIERS: OnceLock<[Classifier; 2]> = OnceLock::new();
    CLASSIFIERS.get_or_init(|| {
        let catalog = Arc::new(Catalog::load(&CatalogSource::Shipped).unwrap());
        let classifier = |routing| Classifier {
            catalog: catalog.clone(),
            routing,
            partition: PartitionTime::Event,
        };
        [
            classifier(Routing::default()),
            classifier(Routing::Attribute("event_type".into())),
        ]
    })
}

fuzz_target!(|message: Message| {
    let delivery = Delivery {
        message_id: "1".into(),
        publish_time: chrono::DateTime::from_timestamp(1_764_000_000, 0).unwrap(),
        subscription: None,
        attributes: message.attributes,
        ordering_key: None,
        delivery_attempt: None,
        data: bytes::Bytes::copy_from_slice(message.data),
    };
    let classifier = &classifiers()[usize::from(message.by_attribute)];
    let record = classifier.classify(delivery, chrono::Utc::now());
    assert_eq!(record.row.len(), record.table.columns().count());
    if !record.is_dead_letter() {
        for (column, cell) in record.table.columns().zip(&record.row) {
            let fillable_later = column.name == "landing_uri";
            if column.mode == Mode::Required && !fillable_later {
                assert_ne!(cell, &Cell::Null, "required column {} is empty", column.name);
            }
        }
        assert_eq!(&record.delivery.data[..], message.data, "an event keeps its bytes");
    }
});
