//! JSON manifests: one value or several one after the other, read with the same rules as
//! YAML ones (no duplicate keys, nesting capped at [`super::MAX_DEPTH`]).

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::MAX_DEPTH;

/// Why the JSON could not be read, and where.
#[derive(Debug)]
pub(super) struct JsonError {
    pub doc: usize,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Every value of `text`, numbered from 1.
pub(super) fn documents(text: &str) -> Result<Vec<(usize, Value)>, JsonError> {
    let mut docs = Vec::new();
    for doc in serde_json::Deserializer::from_str(text).into_iter::<Document>() {
        let Document(value) = doc.map_err(|e| JsonError {
            doc: docs.len() + 1,
            line: e.line(),
            column: e.column(),
            message: strip_position(&e),
        })?;
        docs.push((docs.len() + 1, value));
    }
    Ok(docs)
}

/// One top-level value, built by [`Checked`] (`StreamDeserializer` takes only
/// `Deserialize` types, not seeds).
struct Document(Value);

impl<'de> de::Deserialize<'de> for Document {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Document, D::Error> {
        Checked { depth: 0 }.deserialize(d).map(Document)
    }
}

/// serde_json's message without the ` at line L column C` it appends: the caller prints
/// the position its own way.
fn strip_position(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Builds a `Value` one level deeper than its parent.
struct Checked {
    depth: usize,
}

impl Checked {
    fn nested<E: de::Error>(&self) -> Result<Checked, E> {
        if self.depth >= MAX_DEPTH {
            return Err(E::custom(format_args!(
                "nested more than {MAX_DEPTH} levels deep"
            )));
        }
        Ok(Checked {
            depth: self.depth + 1,
        })
    }
}

impl<'de> DeserializeSeed<'de> for Checked {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Checked {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number JSON cannot hold"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.into()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let inner = self.nested()?;
        let mut items = Vec::new();
        while let Some(v) = seq.next_element_seed(Checked { depth: inner.depth })? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let inner = self.nested()?;
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            if map.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "duplicate key {}",
                    serde_json::to_string(&key).unwrap_or_default()
                )));
            }
            let value = access.next_value_seed(Checked { depth: inner.depth })?;
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_or_several_values() {
        let docs = documents("{\"a\": 1}\n{\"b\": [true, null, 1.5]} {}").unwrap();
        assert_eq!(
            docs,
            vec![
                (1, json!({"a": 1})),
                (2, json!({"b": [true, null, 1.5]})),
                (3, json!({}))
            ]
        );
        assert!(documents("  \n").unwrap().is_empty());
    }

    #[test]
    fn many_values_take_linear_time() {
        // Asking serde_json whether the input has ended, value after value, cost a scan from
        // the start each time (to place the error it returns): 8 MB of small objects took
        // 6 s instead of 66 ms.
        let text = "{\"kind\": \"Node\"}\n".repeat(10_000);
        let docs = documents(&text).unwrap();
        assert_eq!(docs.len(), 10_000);
        assert_eq!(docs[9_999].0, 10_000);
    }

    #[test]
    fn errors_say_where() {
        let e = documents("{\"a\": 1}\n{\"a\": 1,\n \"a\": 2}").unwrap_err();
        assert_eq!((e.doc, e.line), (2, 3), "{e:?}");
        assert_eq!(e.message, "duplicate key \"a\"");
        let e = documents("{\"a\": }").unwrap_err();
        assert_eq!((e.doc, e.line, e.column), (1, 1, 7), "{e:?}");
        assert!(!e.message.contains(" at line "), "{e:?}");
    }

    #[test]
    fn nesting_is_capped() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(documents(&ok).is_ok());
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        let e = documents(&deep).unwrap_err();
        assert!(e.message.contains("nested more than"), "{e:?}");
        // Past serde_json's own limit too: an error, not a crash.
        assert!(documents(&"[".repeat(100_000)).is_err());
    }
}
