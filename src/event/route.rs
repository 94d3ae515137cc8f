//! Which event type a message is: named by a payload field (`event_type` unless
//! `--event-type-field` says otherwise) or by a Pub/Sub attribute (`--event-type-attribute`),
//! which producers use so that subscription filters, which see only attributes, can split
//! traffic. A missing or unknown type makes the message a dead letter.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::Poison;
use crate::schema::{Catalog, EventType};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routing {
    Field(String),
    Attribute(String),
}

impl Default for Routing {
    fn default() -> Self {
        Routing::Field("event_type".into())
    }
}

impl Routing {
    pub fn route<'c>(
        &self,
        catalog: &'c Catalog,
        payload: &Value,
        attributes: &BTreeMap<String, String>,
    ) -> Result<&'c Arc<EventType>, Poison> {
        let (place, value) = match self {
            Routing::Field(name) => (name.clone(), payload.get(name)),
            Routing::Attribute(name) => (format!("attribute {name}"), None),
        };
        let name = match (self, value) {
            (Routing::Attribute(name), _) => attributes.get(name).map(String::as_str),
            (Routing::Field(_), Some(Value::String(name))) => Some(name.as_str()),
            (Routing::Field(_), None | Some(Value::Null)) => None,
            (Routing::Field(_), Some(_)) => {
                return Err(Poison::untyped(
                    format!("{place}: must be a string"),
                    "unknown_type",
                ));
            }
        };
        let Some(name) = name else {
            return Err(Poison::untyped(
                format!("{place}: is required"),
                "unknown_type",
            ));
        };
        catalog.event_type(name).ok_or_else(|| {
            Poison::untyped(
                format!(
                    "{place}: unknown value {name:?}, expected one of {}",
                    catalog.names().join(", ")
                ),
                "unknown_type",
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::CatalogSource;
    use serde_json::json;

    fn route(
        routing: &Routing,
        payload: Value,
        attributes: &[(&str, &str)],
    ) -> Result<String, String> {
        let catalog = Catalog::load(&CatalogSource::Shipped).unwrap();
        let attributes = attributes
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        routing
            .route(&catalog, &payload, &attributes)
            .map(|t| t.name.to_string())
            .map_err(|p| p.reason)
    }

    #[test]
    fn the_payload_field_routes_by_default() {
        let routing = Routing::default();
        assert_eq!(
            route(&routing, json!({"event_type": "order"}), &[]),
            Ok("order".into())
        );
        assert_eq!(
            route(&routing, json!({}), &[]),
            Err("event_type: is required".into())
        );
        assert_eq!(
            route(&routing, json!({"event_type": 3}), &[]),
            Err("event_type: must be a string".into())
        );
        assert_eq!(
            route(&routing, json!({"event_type": "refund"}), &[]),
            Err("event_type: unknown value \"refund\", expected one of inventory, order, user_activity".into())
        );
    }

    #[test]
    fn another_field_or_an_attribute_can_route_instead() {
        let field = Routing::Field("kind".into());
        assert_eq!(
            route(&field, json!({"kind": "inventory"}), &[]),
            Ok("inventory".into())
        );
        let attribute = Routing::Attribute("type".into());
        assert_eq!(
            route(
                &attribute,
                json!({"event_type": "order"}),
                &[("type", "user_activity")]
            ),
            Ok("user_activity".into())
        );
        assert_eq!(
            route(&attribute, json!({"event_type": "order"}), &[]),
            Err("attribute type: is required".into())
        );
    }
}
