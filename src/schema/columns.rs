//! JSON Schema → typed columns, as documented in the README's column mapping:
//! string → STRING (TIMESTAMP with `format: date-time`, DATE with `format: date`), integer →
//! INT64, number → NUMERIC (or FLOAT64 with `"x-landfall-type": "FLOAT64"`), boolean → BOOL,
//! object with `properties` → RECORD, array of X → REPEATED X. Anything with no single column
//! type becomes a JSON column, and the reason is kept as a note for `schema check`.

use std::collections::HashSet;

use serde_json::Value;

use super::{Column, ColumnType, Mode};

/// Something wrong (or worth knowing) at a JSON pointer of a catalog file.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub pointer: String,
    pub message: String,
}

/// BigQuery nests records at most this deep.
const MAX_DEPTH: usize = 15;
/// What an unresolvable reference stands for: any value, so a JSON column.
static ANYTHING: Value = Value::Bool(true);
/// `$ref` chains longer than this are taken for a cycle.
const MAX_REF_HOPS: usize = 32;
const RESERVED_PREFIXES: &[&str] = &[
    "_table_",
    "_file_",
    "_partition",
    "_row_timestamp",
    "__root__",
    "_colidentifier",
];

pub struct Derived {
    pub columns: Vec<Column>,
    pub problems: Vec<Finding>,
    pub notes: Vec<Finding>,
}

/// The columns of a payload schema (the file's root, an object schema).
pub fn derive(root: &Value) -> Derived {
    let mut walker = Walker {
        root,
        problems: Vec::new(),
        notes: Vec::new(),
    };
    let columns = walker.object_columns(root, "", 0);
    Derived {
        columns,
        problems: walker.problems,
        notes: walker.notes,
    }
}

/// A JSON pointer segment, escaped as RFC 6901 wants.
pub fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

struct Walker<'a> {
    root: &'a Value,
    problems: Vec<Finding>,
    notes: Vec<Finding>,
}

/// What one property's schema makes of its column.
struct Shape {
    ty: ColumnType,
    repeated: bool,
    nullable: bool,
}

impl Shape {
    fn of(ty: ColumnType) -> Self {
        Shape {
            ty,
            repeated: false,
            nullable: false,
        }
    }
}

impl<'a> Walker<'a> {
    fn problem(&mut self, pointer: &str, message: impl Into<String>) {
        self.problems.push(Finding {
            pointer: pointer.to_string(),
            message: message.into(),
        });
    }

    fn json_column(&mut self, pointer: &str, why: &str) -> Shape {
        self.notes.push(Finding {
            pointer: pointer.to_string(),
            message: format!("becomes a JSON column: {why}"),
        });
        Shape::of(ColumnType::Json)
    }

    fn object_columns(&mut self, schema: &'a Value, pointer: &str, depth: usize) -> Vec<Column> {
        let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
            return Vec::new();
        };
        let required: HashSet<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|names| names.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut seen = HashSet::new();
        let mut columns = Vec::new();
        for (name, property) in properties {
            let pointer = format!("{pointer}/properties/{}", escape(name));
            if let Err(why) = check_name(name) {
                self.problem(&pointer, why);
                continue;
            }
            if !seen.insert(name.to_ascii_lowercase()) {
                self.problem(
                    &pointer,
                    format!("property {name:?} differs from another only in case; column names are case-insensitive"),
                );
                continue;
            }
            let (resolved, resolved_pointer) = self.resolve(property, &pointer);
            let description = description(property, resolved);
            let shape = self.resolved_shape(resolved, &resolved_pointer, depth);
            let mode = if shape.repeated {
                Mode::Repeated
            } else if required.contains(name.as_str()) && !shape.nullable {
                Mode::Required
            } else {
                Mode::Nullable
            };
            columns.push(Column {
                name: name.clone().into(),
                ty: shape.ty,
                mode,
                description: description.into(),
            });
        }
        columns
    }

    /// Follows local `$ref`s to the schema that says what the value is.
    fn resolve(&mut self, schema: &'a Value, pointer: &str) -> (&'a Value, String) {
        let (mut schema, mut pointer) = (schema, pointer.to_string());
        for _ in 0..MAX_REF_HOPS {
            let Some(reference) = schema.get("$ref").and_then(Value::as_str) else {
                return (schema, pointer);
            };
            let Some(target) = reference
                .strip_prefix('#')
                .and_then(|p| self.root.pointer(p))
            else {
                self.problem(
                    &format!("{pointer}/$ref"),
                    format!("{reference:?} does not point inside this file; landfall resolves only local references (#/$defs/…)"),
                );
                return (&ANYTHING, pointer);
            };
            pointer = reference.trim_start_matches('#').to_string();
            schema = target;
        }
        self.problem(&pointer, "$ref chain does not end (a cycle?)");
        (&ANYTHING, pointer)
    }

    fn shape(&mut self, schema: &'a Value, pointer: &str, depth: usize) -> Shape {
        let (schema, pointer) = self.resolve(schema, pointer);
        self.resolved_shape(schema, &pointer, depth)
    }

    fn resolved_shape(&mut self, schema: &'a Value, pointer: &str, depth: usize) -> Shape {
        let pointer = pointer.to_string();
        if let Some(forced) = schema.get("x-landfall-type") {
            return self.forced(schema, forced, &pointer);
        }
        let types = types(schema);
        let nullable = types.contains(&"null");
        let concrete: Vec<&str> = types.into_iter().filter(|t| *t != "null").collect();
        let mut shape = match concrete.as_slice() {
            [] if only_strings(schema) => Shape::of(ColumnType::String),
            [] if schema.get("properties").is_some() => self.object(schema, &pointer, depth),
            [] => self.json_column(&pointer, "no single `type`"),
            ["string"] => Shape::of(match schema.get("format").and_then(Value::as_str) {
                Some("date-time") => ColumnType::Timestamp,
                Some("date") => ColumnType::Date,
                _ => ColumnType::String,
            }),
            ["integer"] => Shape::of(ColumnType::Int64),
            ["number"] => Shape::of(ColumnType::Numeric),
            ["boolean"] => Shape::of(ColumnType::Bool),
            ["object"] => self.object(schema, &pointer, depth),
            ["array"] => self.array(schema, &pointer, depth),
            [_] => self.json_column(&pointer, "only `null`"),
            several => {
                let why = format!("it takes several types ({})", several.join(", "));
                self.json_column(&pointer, &why)
            }
        };
        shape.nullable |= nullable;
        shape
    }

    fn forced(&mut self, schema: &Value, forced: &Value, pointer: &str) -> Shape {
        let number = matches!(types(schema).as_slice(), ["number"] | ["integer"]);
        match forced.as_str() {
            Some("FLOAT64") if number => Shape::of(ColumnType::Float64),
            Some("JSON") => Shape::of(ColumnType::Json),
            _ => {
                self.problem(
                    &format!("{pointer}/x-landfall-type"),
                    "x-landfall-type must be \"FLOAT64\" (on a number or integer) or \"JSON\"",
                );
                Shape::of(ColumnType::Json)
            }
        }
    }

    fn object(&mut self, schema: &'a Value, pointer: &str, depth: usize) -> Shape {
        let has_properties = schema
            .get("properties")
            .and_then(Value::as_object)
            .is_some_and(|p| !p.is_empty());
        if !has_properties {
            return self.json_column(pointer, "an object without `properties` (a map)");
        }
        if depth + 1 > MAX_DEPTH {
            self.problem(
                pointer,
                format!("records nest deeper than BigQuery's {MAX_DEPTH} levels"),
            );
            return Shape::of(ColumnType::Json);
        }
        Shape::of(ColumnType::Record(self.object_columns(
            schema,
            pointer,
            depth + 1,
        )))
    }

    fn array(&mut self, schema: &'a Value, pointer: &str, depth: usize) -> Shape {
        if schema.get("prefixItems").is_some() {
            return self.json_column(pointer, "a tuple (`prefixItems`)");
        }
        let Some(items) = schema.get("items").filter(|i| i.is_object()) else {
            return self.json_column(pointer, "an array without an `items` schema");
        };
        let element = self.shape(items, &format!("{pointer}/items"), depth);
        if element.repeated {
            return self.json_column(pointer, "an array of arrays");
        }
        if element.nullable {
            return self.json_column(pointer, "an array that may hold null");
        }
        Shape {
            ty: element.ty,
            repeated: true,
            nullable: false,
        }
    }
}

/// The `type` keyword as a list (empty when absent).
fn types(schema: &Value) -> Vec<&str> {
    match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// An `enum` or `const` whose values are all strings is a string column.
fn only_strings(schema: &Value) -> bool {
    match (schema.get("enum"), schema.get("const")) {
        (Some(Value::Array(values)), _) => {
            !values.is_empty() && values.iter().all(Value::is_string)
        }
        (None, Some(value)) => value.is_string(),
        _ => false,
    }
}

fn description(property: &Value, resolved: &Value) -> String {
    property
        .get("description")
        .or_else(|| resolved.get("description"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// BigQuery's column-name rules, which SQLite accepts as they are.
fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') || name.len() > 300 {
        return Err(format!(
            "property name {name:?} cannot be a column name: letters, digits and `_`, not starting with a digit, at most 300 characters"
        ));
    }
    let lower = name.to_ascii_lowercase();
    if let Some(prefix) = RESERVED_PREFIXES.iter().find(|p| lower.starts_with(**p)) {
        return Err(format!(
            "property name {name:?} starts with {prefix:?}, which BigQuery reserves"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn column<'a>(derived: &'a Derived, name: &str) -> &'a Column {
        derived
            .columns
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no column {name}"))
    }

    #[test]
    fn every_json_type_maps_to_its_column_type() {
        let derived = derive(&json!({
            "type": "object",
            "required": ["id", "at", "maybe"],
            "properties": {
                "id": {"type": "string"},
                "at": {"type": "string", "format": "date-time"},
                "day": {"type": "string", "format": "date"},
                "n": {"type": "integer"},
                "amount": {"type": "number"},
                "celsius": {"type": "number", "x-landfall-type": "FLOAT64"},
                "flag": {"type": "boolean"},
                "kind": {"enum": ["a", "b"]},
                "maybe": {"type": ["string", "null"]},
                "card": {"$ref": "#/$defs/card"},
                "tags": {"type": "array", "items": {"type": "string"}},
                "lines": {"type": "array", "items": {"type": "object", "properties": {"q": {"type": "integer"}}}}
            },
            "$defs": {"card": {"type": "object", "description": "The card.", "properties": {"last4": {"type": "string"}}}}
        }));
        assert!(derived.problems.is_empty(), "{:?}", derived.problems);
        assert!(derived.notes.is_empty(), "{:?}", derived.notes);
        let expect = [
            ("id", ColumnType::String, Mode::Required),
            ("at", ColumnType::Timestamp, Mode::Required),
            ("day", ColumnType::Date, Mode::Nullable),
            ("n", ColumnType::Int64, Mode::Nullable),
            ("amount", ColumnType::Numeric, Mode::Nullable),
            ("celsius", ColumnType::Float64, Mode::Nullable),
            ("flag", ColumnType::Bool, Mode::Nullable),
            ("kind", ColumnType::String, Mode::Nullable),
            ("maybe", ColumnType::String, Mode::Nullable),
            ("tags", ColumnType::String, Mode::Repeated),
        ];
        for (name, ty, mode) in expect {
            let c = column(&derived, name);
            assert_eq!((&c.ty, c.mode), (&ty, mode), "{name}");
        }
        let card = column(&derived, "card");
        assert_eq!(card.description, "The card.");
        let ColumnType::Record(fields) = &card.ty else {
            panic!("card is a record")
        };
        assert_eq!(fields[0].name, "last4");
        assert_eq!(column(&derived, "lines").mode, Mode::Repeated);
        let order: Vec<_> = derived.columns.iter().map(|c| c.name.to_string()).collect();
        assert_eq!(
            order[..3],
            ["id", "at", "day"],
            "file order is column order"
        );
    }

    #[test]
    fn shapes_without_one_column_type_become_json_with_a_note() {
        let derived = derive(&json!({
            "type": "object",
            "properties": {
                "either": {"type": ["string", "integer"]},
                "union": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
                "map": {"type": "object", "additionalProperties": {"type": "string"}},
                "grid": {"type": "array", "items": {"type": "array", "items": {"type": "integer"}}}
            }
        }));
        assert!(derived.problems.is_empty());
        for c in &derived.columns {
            assert_eq!(c.ty, ColumnType::Json, "{}", c.name);
        }
        let pointers: Vec<_> = derived.notes.iter().map(|n| n.pointer.as_str()).collect();
        assert_eq!(
            pointers,
            [
                "/properties/either",
                "/properties/union",
                "/properties/map",
                "/properties/grid"
            ]
        );
    }

    #[test]
    fn names_that_cannot_be_columns_are_problems_at_their_pointer() {
        let derived = derive(&json!({
            "type": "object",
            "properties": {
                "ok": {"type": "string"},
                "not-ok": {"type": "string"},
                "OK": {"type": "string"},
                "_PARTITIONTIME": {"type": "string"},
                "elsewhere": {"$ref": "https://example.com/x.json"}
            }
        }));
        let pointers: Vec<_> = derived
            .problems
            .iter()
            .map(|p| p.pointer.as_str())
            .collect();
        assert_eq!(
            pointers,
            [
                "/properties/not-ok",
                "/properties/OK",
                "/properties/_PARTITIONTIME",
                "/properties/elsewhere/$ref"
            ]
        );
    }
}
