//! The one way landfall reads a sender's JSON (a push envelope, a payload): as `serde_json`
//! does, except that an object naming a key twice is refused. serde_json would keep the last
//! value without a word, while other readers keep the first: the stored bytes would then say
//! one thing and the row another. And what is wrong is said in a data engineer's words, with
//! where it is (line, column and byte offset), not in the parser's.

use std::fmt;

use serde::de::{DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Reads one JSON value, refusing duplicate keys; the problem in plain words otherwise.
pub fn from_slice(bytes: &[u8]) -> Result<Value, String> {
    let mut reader = serde_json::Deserializer::from_slice(bytes);
    Strict
        .deserialize(&mut reader)
        .and_then(|value| reader.end().map(|()| value))
        .map_err(|e| describe(&e, bytes))
}

/// How many JSON values reading `bytes` would make (every object, array, string, number,
/// boolean and null), counted without making any: what reading them will cost is known before
/// it is paid. A text that is not JSON counts the values before the point where it breaks.
pub fn count_values(bytes: &[u8]) -> usize {
    let counted = std::cell::Cell::new(0);
    let mut reader = serde_json::Deserializer::from_slice(bytes);
    let _ = Counting(&counted).deserialize(&mut reader);
    counted.get()
}

/// What a parse error means, and where: `the key "id" appears twice in one object (line 1,
/// column 19, byte 18)`.
fn describe(error: &serde_json::Error, bytes: &[u8]) -> String {
    let full = error.to_string();
    // serde_json appends " at line L column C" to every message.
    let message = full
        .rsplit_once(" at line ")
        .map_or(full.as_str(), |(message, _)| message);
    let what = plain(message);
    if error.line() == 0 {
        return what;
    }
    format!(
        "{what} (line {}, column {}, byte {})",
        error.line(),
        error.column(),
        offset(bytes, error.line(), error.column())
    )
}

/// serde_json's message for a problem, said plainly.
fn plain(message: &str) -> String {
    let said = match message {
        "expected value" | "expected ident" => "a value is expected here and something else is",
        "trailing characters" => "more follows the end of the JSON value",
        "key must be a string" => "an object's key is not a string in double quotes",
        "expected `:`" => "a key is not followed by `:`",
        "expected `,` or `}`" => "a member of an object is not followed by `,` or `}`",
        "expected `,` or `]`" => "an element of an array is not followed by `,` or `]`",
        "invalid escape" => "a string holds a backslash escape JSON does not have",
        "invalid number" => "a number is not written the way JSON writes numbers",
        "number out of range" => "a number is too large for any number type",
        "recursion limit exceeded" => "it nests more than 128 levels deep",
        "trailing comma" => "a `,` is followed by the end of an object or array",
        "invalid unicode code point" => "a `\\u` escape names no character",
        "lone leading surrogate in hex escape" | "unexpected end of hex escape" => {
            "a `\\u` escape is incomplete"
        }
        m if m.starts_with("EOF while parsing") => "it ends before its JSON does",
        m if m.starts_with("control character") => {
            "a string holds a raw control character (a newline or a tab, say): escape it"
        }
        other => other,
    };
    said.to_string()
}

/// The byte offset of a 1-based line and column (serde_json counts columns in bytes).
fn offset(bytes: &[u8], line: usize, column: usize) -> usize {
    let line_start = bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(line.saturating_sub(2))
        .map_or(0, |(i, _)| i + 1);
    let start = if line <= 1 { 0 } else { line_start };
    (start + column).saturating_sub(1)
}

/// Counts values as it reads them, and keeps none.
#[derive(Clone, Copy)]
struct Counting<'a>(&'a std::cell::Cell<usize>);

impl Counting<'_> {
    fn one<E>(self) -> Result<(), E> {
        self.0.set(self.0.get() + 1);
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Counting<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, reader: D) -> Result<(), D::Error> {
        reader.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Counting<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        self.one()
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        self.one()
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        self.one()
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        self.one()
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        self.one()
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.one()
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.one::<A::Error>()?;
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut members: A) -> Result<(), A::Error> {
        self.one::<A::Error>()?;
        while members.next_key::<serde::de::IgnoredAny>()?.is_some() {
            // A key is a string the tree keeps too.
            self.one::<A::Error>()?;
            members.next_value_seed(self)?;
        }
        Ok(())
    }
}

/// A JSON value, as `serde_json::Value` reads it, but for duplicate keys.
struct Strict;

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, reader: D) -> Result<Value, D::Error> {
        reader.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut values = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(value) = seq.next_element_seed(Strict)? {
            values.push(value);
        }
        Ok(Value::Array(values))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut members: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = members.next_key::<String>()? {
            let value = members.next_value_seed(Strict)?;
            if object.contains_key(&key) {
                return Err(A::Error::custom(format!(
                    "the key {key:?} appears twice in one object"
                )));
            }
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_as_serde_json_reads_them() {
        for text in [
            r#"{"a":[1,-2,3.5,"x",true,null,{"b":{}}],"c":18446744073709551615}"#,
            "[]",
            "\"s\"",
            "1e400",
        ] {
            let ours = from_slice(text.as_bytes());
            let theirs: Result<Value, _> = serde_json::from_str(text);
            match theirs {
                Ok(value) => assert_eq!(ours, Ok(value), "{text}"),
                Err(_) => assert!(ours.is_err(), "{text}"),
            }
        }
    }

    #[test]
    fn values_are_counted_without_being_read_and_up_to_where_a_text_breaks() {
        assert_eq!(count_values(b"7"), 1);
        assert_eq!(
            count_values(br#"{"a":[1,2,{"b":null}],"c":"x"}"#),
            10,
            "keys count"
        );
        assert_eq!(count_values(b"[0,0,0"), 4, "three zeros and their array");
        assert_eq!(count_values(b"\xff\xfe"), 0);
    }

    #[test]
    fn a_key_named_twice_is_refused_naming_it_wherever_it_is() {
        assert_eq!(
            from_slice(br#"{"quantity_change":500,"id":"i","quantity_change":5}"#),
            Err(r#"the key "quantity_change" appears twice in one object (line 1, column 52, byte 51)"#.into())
        );
        assert!(
            from_slice(b"[{\"a\":{\"b\":1,\n\"b\":2}}]")
                .unwrap_err()
                .starts_with(r#"the key "b" appears twice in one object (line 2"#)
        );
        assert!(
            from_slice(br#"{"a":{"b":1},"b":{"a":2}}"#).is_ok(),
            "same names, other objects"
        );
    }

    #[test]
    fn problems_are_said_plainly_with_where_they_are() {
        let cases = [
            (
                "nope",
                "a value is expected here and something else is (line 1, column 2, byte 1)",
            ),
            (
                "{\"a\":1} x",
                "more follows the end of the JSON value (line 1, column 9, byte 8)",
            ),
            (
                "{\"a\":1",
                "it ends before its JSON does (line 1, column 6, byte 5)",
            ),
            (
                "{a:1}",
                "an object's key is not a string in double quotes (line 1, column 2, byte 1)",
            ),
            (
                "{\"a\" 1}",
                "a key is not followed by `:` (line 1, column 6, byte 5)",
            ),
            (
                "[1 2]",
                "an element of an array is not followed by `,` or `]` (line 1, column 4, byte 3)",
            ),
            (
                "{\"a\":1 \"b\":2}",
                "a member of an object is not followed by `,` or `}` (line 1, column 8, byte 7)",
            ),
            (
                "\n\n  [1 2]",
                "an element of an array is not followed by `,` or `]` (line 3, column 6, byte 7)",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(
                from_slice(text.as_bytes()).unwrap_err(),
                expected,
                "{text:?}"
            );
        }
        assert!(
            from_slice(b"\"a\nb\"")
                .unwrap_err()
                .starts_with("a string holds a raw control")
        );
    }
}
