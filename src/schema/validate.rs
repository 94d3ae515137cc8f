//! The validator a catalog file compiles to, and its verdicts as dead-letter reasons.

use jsonschema::error::ValidationErrorKind;
use jsonschema::paths::LocationSegment;
use jsonschema::{ValidationError, Validator};
use serde_json::Value;

use crate::time::{parse_date, parse_timestamp};

/// A payload that breaks its schema: where, the rule in plain words, and the rule's name (a
/// bounded label for metrics).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct Violation {
    /// `.items[1].quantity`; empty for the payload as a whole.
    pub path: String,
    pub message: String,
    pub rule: &'static str,
}

impl Violation {
    pub fn new(path: &str, message: impl Into<String>, rule: &'static str) -> Self {
        Self {
            path: path.to_string(),
            message: message.into(),
            rule,
        }
    }
}

/// Draft 2020-12 with `format` asserted, not merely annotated. `date-time` and `date` are
/// checked by the same functions that later read the values into columns, so a value the
/// validator accepts is always one a column can hold.
pub fn compile(schema: &Value) -> Result<Validator, ValidationError<'static>> {
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .should_ignore_unknown_formats(false)
        .with_format("date-time", |s: &str| parse_timestamp(s).is_some())
        .with_format("date", |s: &str| parse_date(s).is_some())
        .build(schema)
}

/// The first violation, or `None` when the payload is valid.
pub fn first_violation(validator: &Validator, instance: &Value) -> Option<Violation> {
    // The boolean check allocates nothing; describing a failure is the slow path. Only the
    // first error is made: `iter_errors` would make every one first (an array of five million
    // wrong items is five million errors, gigabytes).
    if validator.is_valid(instance) {
        return None;
    }
    validator.validate(instance).err().map(|e| describe(&e))
}

/// Values this long are left out of the reason, which lands in every dead-letter row.
const MAX_QUOTED_VALUE: usize = 120;

fn describe(error: &ValidationError) -> Violation {
    let mut path = json_path(error);
    let rule = rule_label(error.kind());
    let message = match error.kind() {
        ValidationErrorKind::Required { property } => {
            path.push('.');
            path.push_str(property.as_str().unwrap_or_default());
            "is required".to_string()
        }
        kind => {
            let value = error.instance().to_string();
            let value = if value.len() > MAX_QUOTED_VALUE {
                "the value".to_string()
            } else {
                value
            };
            match kind {
                ValidationErrorKind::Enum { options } => {
                    format!("{value} is not one of {}", listed(options))
                }
                ValidationErrorKind::Pattern { pattern } => {
                    format!("{value} does not match {pattern}")
                }
                _ if value == "the value" => error.masked().to_string(),
                _ => error.to_string(),
            }
        }
    };
    Violation {
        path,
        message,
        rule,
    }
}

/// An enum's values, all of them (the reader needs to know what would have been accepted).
fn listed(options: &Value) -> String {
    const MAX_LISTED: usize = 20;
    let values: Vec<String> = options
        .as_array()
        .map(|values| values.iter().map(Value::to_string).collect())
        .unwrap_or_default();
    if values.len() > MAX_LISTED {
        format!(
            "{}, … ({} values)",
            values[..MAX_LISTED].join(", "),
            values.len()
        )
    } else {
        values.join(", ")
    }
}

/// `/items/1/quantity` as `.items[1].quantity`, the way people write field paths.
fn json_path(error: &ValidationError) -> String {
    let mut path = String::new();
    for segment in error.instance_path() {
        match segment {
            LocationSegment::Property(name) => {
                path.push('.');
                path.push_str(&name);
            }
            LocationSegment::Index(i) => path.push_str(&format!("[{i}]")),
        }
    }
    path
}

/// JSON Schema's keywords, as the bounded `rule` label of the dead-letter metric.
const RULES: &[&str] = &[
    "additionalProperties",
    "anyOf",
    "const",
    "contains",
    "dependentRequired",
    "enum",
    "exclusiveMaximum",
    "exclusiveMinimum",
    "false",
    "format",
    "maxItems",
    "maxLength",
    "maxProperties",
    "maximum",
    "minItems",
    "minLength",
    "minProperties",
    "minimum",
    "multipleOf",
    "not",
    "oneOf",
    "pattern",
    "propertyNames",
    "required",
    "type",
    "unevaluatedItems",
    "unevaluatedProperties",
    "uniqueItems",
];

fn rule_label(kind: &ValidationErrorKind) -> &'static str {
    let keyword = kind.keyword();
    RULES
        .iter()
        .find(|rule| **rule == keyword)
        .copied()
        .unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn validator() -> Validator {
        compile(&json!({
            "type": "object",
            "required": ["id", "when"],
            "properties": {
                "id": {"type": "string", "pattern": "^[0-9]{4}$"},
                "when": {"type": "string", "format": "date-time"},
                "day": {"type": "string", "format": "date"},
                "email": {"type": "string", "format": "email"},
                "items": {"type": "array", "items": {"type": "object", "properties": {
                    "n": {"type": "integer", "minimum": 0}}}}
            }
        }))
        .unwrap()
    }

    fn violation(instance: Value) -> Option<String> {
        first_violation(&validator(), &instance).map(|v| v.to_string())
    }

    #[test]
    fn violations_name_the_field_path_and_the_rule() {
        let ok = json!({"id": "1234", "when": "2026-11-25T10:00:00Z"});
        assert_eq!(violation(ok.clone()), None);
        let mut bad = ok.clone();
        bad["items"] = json!([{"n": 1}, {"n": -1}]);
        assert_eq!(
            violation(bad).unwrap(),
            ".items[1].n: -1 is less than the minimum of 0"
        );
        assert_eq!(
            violation(json!({"id": "12a4", "when": "2026-11-25T10:00:00Z"})).unwrap(),
            r#".id: "12a4" does not match ^[0-9]{4}$"#
        );
        assert_eq!(
            violation(json!({"id": "1234"})).unwrap(),
            ".when: is required"
        );
    }

    #[test]
    fn formats_are_asserted_with_landfalls_own_time_parsers() {
        let with = |field: &str, value: &str| {
            let mut v = json!({"id": "1234", "when": "2026-11-25T10:00:00Z"});
            v[field] = json!(value);
            first_violation(&validator(), &v).map(|v| v.rule)
        };
        assert_eq!(with("when", "2026-11-25 10:00"), Some("format"));
        assert_eq!(with("when", "2026-11-25T10:00:00+01:00"), None);
        assert_eq!(with("day", "2026-02-30"), Some("format"));
        assert_eq!(with("day", "2026-02-28"), None);
        assert_eq!(with("email", "not an address"), Some("format"));
    }

    #[test]
    fn long_values_are_not_quoted_in_the_reason() {
        let long = "x".repeat(500);
        let reason = violation(json!({"id": long, "when": "2026-11-25T10:00:00Z"})).unwrap();
        assert!(!reason.contains("xxxxxxxx"), "{reason}");
        assert!(reason.starts_with(".id: "), "{reason}");
        // Up to the limit a value is quoted whole (its JSON text: the quotes count).
        let at_limit = "x".repeat(MAX_QUOTED_VALUE - 2);
        let reason = violation(json!({"id": at_limit, "when": "2026-11-25T10:00:00Z"})).unwrap();
        assert!(
            reason.contains(&format!("\"{at_limit}\" does not match")),
            "{reason}"
        );
    }

    #[test]
    fn an_enum_names_every_value_it_would_have_accepted() {
        let validator = compile(&json!({"properties": {"s": {"enum": ["a", "b", 3]}}})).unwrap();
        let reason = first_violation(&validator, &json!({"s": "c"})).unwrap();
        assert_eq!(reason.to_string(), r#".s: "c" is not one of "a", "b", 3"#);
        assert_eq!(reason.rule, "enum");
        let values = |n: usize| (0..n).map(|i| json!(i)).collect::<Vec<_>>();
        assert_eq!(
            listed(&json!(values(20))),
            (0..20)
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let first_20 = (0..20)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        assert_eq!(
            listed(&json!(values(21))),
            format!("{first_20}, … (21 values)")
        );
    }

    #[test]
    fn a_long_value_is_masked_whatever_the_rule() {
        let validator = compile(&json!({"properties": {"n": {"type": "integer"}}})).unwrap();
        let long = "y".repeat(500);
        let reason = first_violation(&validator, &json!({"n": long}))
            .unwrap()
            .to_string();
        assert!(!reason.contains("yyyyyyyy"), "{reason}");
        assert!(reason.starts_with(".n: "), "{reason}");
    }
}
