//! YAML text to JSON values, read the way `kubectl` reads manifests.
//!
//! The syntax is YAML 1.2 (saphyr-parser's event stream); plain scalars are resolved as
//! kubectl resolves them (go-yaml v2 through sigs.k8s.io/yaml, YAML 1.1 style), because
//! manifests are written for kubectl: `yes`, `on`, `y` are `true`, `0644` is octal,
//! `1_000` is 1000, and timestamps stay strings. Anchors, aliases and merge keys (`<<`)
//! work. What JSON cannot hold is refused rather than changed: keys that are not strings,
//! `.nan` and `.inf`, and duplicate keys (which kubectl's strict field validation refuses
//! too).
//!
//! The tree is built with an explicit stack, never by recursion, and nesting is capped at
//! [`super::MAX_DEPTH`] so that the values can be sent to the switch as JSON; aliases may
//! add at most [`super::MAX_ALIAS_NODES`] nodes in all (no "billion laughs").

use std::collections::HashMap;

use saphyr_parser::{Event, Marker, Parser, ScalarStyle, ScanError, Tag};
use serde_json::{Map, Number, Value};

use super::{MAX_ALIAS_NODES, MAX_DEPTH};

/// Why the YAML could not be read, and where.
#[derive(Debug)]
pub(super) struct YamlError {
    /// The document it happened in, from 1.
    pub doc: usize,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    pub message: String,
}

impl YamlError {
    fn at(doc: usize, mark: Marker, message: impl Into<String>) -> YamlError {
        YamlError {
            doc: doc.max(1),
            line: mark.line(),
            column: mark.col() + 1,
            message: message.into(),
        }
    }

    fn scan(doc: usize, e: &ScanError) -> YamlError {
        YamlError::at(doc, *e.marker(), e.info())
    }
}

/// Every document of `text`, numbered from 1 in the order they appear (empty and
/// comment-only documents are `Null`).
pub(super) fn documents(text: &str) -> Result<Vec<(usize, Value)>, YamlError> {
    let mut builder = Builder::default();
    let mut docs = Vec::new();
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| YamlError::scan(builder.doc, &e))?;
        let mark = span.start;
        match event {
            Event::Nothing | Event::StreamStart => {}
            Event::StreamEnd => break,
            Event::DocumentStart(_) => builder.start_document(),
            Event::DocumentEnd => docs.push((builder.doc, builder.root.take().unwrap_or_default())),
            Event::Scalar(text, style, anchor, tag) => {
                builder.scalar(&text, style, anchor, tag.as_deref(), mark)?
            }
            Event::Alias(id) => builder.alias(id, mark)?,
            Event::SequenceStart(anchor, _) => builder.open(Open::Seq(Vec::new()), anchor, mark)?,
            Event::MappingStart(anchor, _) => builder.open(Open::Map(Map::new()), anchor, mark)?,
            Event::SequenceEnd | Event::MappingEnd => builder.close(mark)?,
        }
    }
    Ok(docs)
}

/// A finished node: its value, how many nodes it holds (itself included) and how many
/// collections deep it is (a scalar is 0).
#[derive(Clone, Debug)]
struct Node {
    value: Value,
    nodes: usize,
    height: usize,
}

#[derive(Debug)]
enum Open {
    Seq(Vec<Value>),
    Map(Map<String, Value>),
}

/// A mapping's key, waiting for its value.
#[derive(Debug)]
enum Key {
    Str(String, Marker),
    /// `<<`: the value's mappings are merged in when the mapping ends.
    Merge(Marker),
}

/// A collection being built.
#[derive(Debug)]
struct Frame {
    open: Open,
    key: Option<Key>,
    /// Mappings to merge (`<<`), in order of precedence.
    merges: Vec<Map<String, Value>>,
    anchor: usize,
    nodes: usize,
    height: usize,
}

#[derive(Debug, Default)]
struct Builder {
    doc: usize,
    stack: Vec<Frame>,
    root: Option<Value>,
    /// Anchors of this document that are complete, by the parser's id.
    anchors: HashMap<usize, Node>,
    /// Nodes added by aliases so far, in every document.
    alias_nodes: usize,
}

impl Builder {
    fn start_document(&mut self) {
        self.doc += 1;
        self.stack.clear();
        self.root = None;
        // An anchor belongs to its document.
        self.anchors.clear();
    }

    fn err(&self, mark: Marker, message: impl Into<String>) -> YamlError {
        YamlError::at(self.doc, mark, message)
    }

    /// Whether the next node is a mapping's key.
    fn wants_key(&self) -> bool {
        matches!(
            self.stack.last(),
            Some(Frame {
                open: Open::Map(_),
                key: None,
                ..
            })
        )
    }

    fn scalar(
        &mut self,
        text: &str,
        style: ScalarStyle,
        anchor: usize,
        tag: Option<&Tag>,
        mark: Marker,
    ) -> Result<(), YamlError> {
        let value = resolve(text, style, tag).map_err(|m| self.err(mark, m))?;
        if self.wants_key() {
            let key = match value {
                Value::String(s) if s == "<<" && style == ScalarStyle::Plain && tag.is_none() => {
                    Key::Merge(mark)
                }
                Value::String(s) => Key::Str(s, mark),
                other => return Err(self.err(mark, not_a_string_key(text, &other))),
            };
            if anchor != 0 {
                let value = match &key {
                    Key::Str(s, _) => Value::String(s.clone()),
                    Key::Merge(_) => Value::String("<<".into()),
                };
                self.remember(anchor, &leaf(value));
            }
            self.set_key(key);
            return Ok(());
        }
        self.finish(leaf(value), anchor, mark)
    }

    fn alias(&mut self, id: usize, mark: Marker) -> Result<(), YamlError> {
        let Some(node) = self.anchors.get(&id).cloned() else {
            return Err(self.err(
                mark,
                "this alias names a node that contains it, or one of another document",
            ));
        };
        self.alias_nodes = self.alias_nodes.saturating_add(node.nodes);
        if self.alias_nodes > MAX_ALIAS_NODES {
            return Err(self.err(
                mark,
                format!("aliases expand to more than {MAX_ALIAS_NODES} nodes"),
            ));
        }
        if self.wants_key() {
            return match node.value {
                Value::String(s) => {
                    self.set_key(Key::Str(s, mark));
                    Ok(())
                }
                other => Err(self.err(mark, not_a_string_key("*alias", &other))),
            };
        }
        if self.stack.len() + node.height > MAX_DEPTH {
            return Err(self.err(mark, too_deep()));
        }
        self.finish(node, 0, mark)
    }

    fn open(&mut self, open: Open, anchor: usize, mark: Marker) -> Result<(), YamlError> {
        if self.wants_key() {
            let what = match open {
                Open::Seq(_) => "a sequence",
                Open::Map(_) => "a mapping",
            };
            return Err(self.err(
                mark,
                format!("a key must be a string, not {what} (JSON has no other keys)"),
            ));
        }
        if self.stack.len() >= MAX_DEPTH {
            return Err(self.err(mark, too_deep()));
        }
        self.stack.push(Frame {
            open,
            key: None,
            merges: Vec::new(),
            anchor,
            nodes: 1,
            height: 1,
        });
        Ok(())
    }

    fn close(&mut self, mark: Marker) -> Result<(), YamlError> {
        let Some(frame) = self.stack.pop() else {
            return Err(self.err(mark, "the end of a collection that was not begun"));
        };
        let value = match frame.open {
            Open::Seq(items) => Value::Array(items),
            Open::Map(mut map) => {
                for merged in frame.merges {
                    for (k, v) in merged {
                        map.entry(k).or_insert(v);
                    }
                }
                Value::Object(map)
            }
        };
        let node = Node {
            value,
            nodes: frame.nodes,
            height: frame.height,
        };
        self.finish(node, frame.anchor, mark)
    }

    fn set_key(&mut self, key: Key) {
        if let Some(frame) = self.stack.last_mut() {
            frame.key = Some(key);
        }
    }

    fn remember(&mut self, anchor: usize, node: &Node) {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
    }

    /// Puts a finished node where it belongs: in the collection being built, or as the
    /// document's root.
    fn finish(&mut self, node: Node, anchor: usize, mark: Marker) -> Result<(), YamlError> {
        self.remember(anchor, &node);
        let doc = self.doc;
        let Some(frame) = self.stack.last_mut() else {
            self.root = Some(node.value);
            return Ok(());
        };
        frame.nodes = frame.nodes.saturating_add(node.nodes);
        frame.height = frame.height.max(node.height + 1);
        match (&mut frame.open, frame.key.take()) {
            (Open::Seq(items), _) => items.push(node.value),
            (Open::Map(map), Some(Key::Str(k, at))) => {
                if map.contains_key(&k) {
                    return Err(YamlError::at(
                        doc,
                        at,
                        format!("duplicate key {}", quoted(&k)),
                    ));
                }
                map.insert(k, node.value);
            }
            (Open::Map(_), Some(Key::Merge(at))) => {
                let sources = match node.value {
                    Value::Object(m) => vec![m],
                    Value::Array(items) => items
                        .into_iter()
                        .map(|v| match v {
                            Value::Object(m) => Ok(m),
                            _ => Err(()),
                        })
                        .collect::<Result<Vec<_>, ()>>()
                        .map_err(|()| YamlError::at(doc, at, merge_error()))?,
                    _ => return Err(YamlError::at(doc, at, merge_error())),
                };
                frame.merges.extend(sources);
            }
            // A key is always set before its value: `scalar`, `alias` and `open` see to it.
            (Open::Map(_), None) => return Err(YamlError::at(doc, mark, "a value without a key")),
        }
        Ok(())
    }
}

fn leaf(value: Value) -> Node {
    Node {
        value,
        nodes: 1,
        height: 0,
    }
}

fn too_deep() -> String {
    format!("nested more than {MAX_DEPTH} levels deep")
}

fn merge_error() -> &'static str {
    "a merge key (<<) takes a mapping or a sequence of mappings"
}

fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

fn not_a_string_key(text: &str, value: &Value) -> String {
    let what = match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::Array(_) => "a sequence",
        Value::Object(_) => "a mapping",
        Value::String(_) => "a string",
    };
    format!("the key `{text}` reads as {what}, and JSON keys are strings: quote it")
}

/// The YAML 1.1 core tags kubectl knows; others (`!foo`) are ignored, as kubectl does.
const CORE: &str = "tag:yaml.org,2002:";

/// A scalar's value: quoted ones are strings, plain ones resolved as kubectl does, and
/// an explicit core tag (`!!str`, `!!int`...) wins over both.
fn resolve(text: &str, style: ScalarStyle, tag: Option<&Tag>) -> Result<Value, String> {
    let core = tag.filter(|t| t.handle == CORE).map(|t| t.suffix.as_str());
    let value = match core {
        Some("str" | "binary" | "timestamp") => return Ok(Value::String(text.into())),
        Some("null") => match plain(text) {
            Plain::Null => return Ok(Value::Null),
            _ => None,
        },
        Some("bool") => match plain(text) {
            Plain::Bool(b) => return Ok(Value::Bool(b)),
            _ => None,
        },
        Some("int") => match plain(text) {
            Plain::Int(n) => return Ok(Value::Number(n)),
            _ => None,
        },
        Some("float") => match plain(text) {
            Plain::Int(n) => return Ok(Value::Number(n)),
            Plain::Float(f) => return float(text, f),
            _ => None,
        },
        Some(_) | None if style != ScalarStyle::Plain => return Ok(Value::String(text.into())),
        _ => match plain(text) {
            Plain::Null => Some(Value::Null),
            Plain::Bool(b) => Some(Value::Bool(b)),
            Plain::Int(n) => Some(Value::Number(n)),
            Plain::Float(f) => return float(text, f),
            Plain::Str => Some(Value::String(text.into())),
        },
    };
    value.ok_or_else(|| {
        format!(
            "{} is not a valid !!{}",
            quoted(text),
            core.unwrap_or_default()
        )
    })
}

/// A float for JSON: a whole number becomes an integer (as kubectl's YAML-to-JSON step
/// prints it), and infinities and NaN, which JSON cannot hold, are refused.
fn float(text: &str, f: f64) -> Result<Value, String> {
    if !f.is_finite() {
        return Err(format!(
            "{text} is not a number JSON can hold: quote it to make it a string"
        ));
    }
    // 2^63 is exact in f64; every whole f64 below it in magnitude fits in i64.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if f.fract() == 0.0 && f.abs() < LIMIT {
        return Ok(Value::Number(Number::from(f as i64)));
    }
    Number::from_f64(f)
        .map(Value::Number)
        .ok_or_else(|| format!("{text} is not a number JSON can hold"))
}

/// What a plain scalar means to go-yaml v2.
#[derive(Debug, PartialEq)]
enum Plain {
    Null,
    Bool(bool),
    Int(Number),
    Float(f64),
    Str,
}

fn plain(s: &str) -> Plain {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Plain::Null,
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Plain::Bool(true);
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Plain::Bool(false);
        }
        ".nan" | ".NaN" | ".NAN" => return Plain::Float(f64::NAN),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Plain::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Plain::Float(f64::NEG_INFINITY),
        _ => {}
    }
    // go-yaml only tries numbers for what starts like one, and drops underscores first.
    if !s.starts_with(|c: char| c.is_ascii_digit() || matches!(c, '+' | '-' | '.')) {
        return Plain::Str;
    }
    let digits: String = s.chars().filter(|&c| c != '_').collect();
    if let Some(n) = int(&digits) {
        return Plain::Int(n);
    }
    if is_float(&digits) {
        // go-yaml's ParseFloat fails on overflow, and the text stays a string.
        if let Ok(f) = digits.parse::<f64>()
            && f.is_finite()
        {
            return Plain::Float(f);
        }
    }
    Plain::Str
}

/// Go's `strconv.ParseInt(s, 0, 64)`, then `ParseUint`: a sign, then `0x`, `0o`, `0b`,
/// a leading `0` (octal) or decimal digits.
fn int(s: &str) -> Option<Number> {
    let (negative, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let prefixed = |p: [&str; 2]| body.strip_prefix(p[0]).or_else(|| body.strip_prefix(p[1]));
    let (radix, digits) = if let Some(d) = prefixed(["0x", "0X"]) {
        (16, d)
    } else if let Some(d) = prefixed(["0o", "0O"]) {
        (8, d)
    } else if let Some(d) = prefixed(["0b", "0B"]) {
        (2, d)
    } else if body.len() > 1 && body.starts_with('0') {
        (8, &body[1..])
    } else {
        (10, body)
    };
    // `from_str_radix` takes a sign of its own, which must not follow the prefix.
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = u64::from_str_radix(digits, radix).ok()?;
    if !negative {
        return Some(Number::from(magnitude));
    }
    if magnitude <= i64::MAX as u64 {
        Some(Number::from(-(magnitude as i64)))
    } else if magnitude == i64::MAX as u64 + 1 {
        Some(Number::from(i64::MIN))
    } else {
        None
    }
}

/// go-yaml's float syntax: `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`.
fn is_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            digits(&mut i);
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(text: &str) -> Value {
        let docs = documents(text).unwrap_or_else(|e| panic!("{text:?}: {e:?}"));
        assert_eq!(docs.len(), 1, "{text:?}");
        docs.into_iter().next().unwrap().1
    }

    fn fails(text: &str) -> YamlError {
        documents(text).expect_err(text)
    }

    #[test]
    fn scalars_resolve_as_kubectl_does() {
        let v = one(
            "a: yes\nb: off\nc: y\nd: 0644\ne: 0x1F\nf: 1_000\ng: 1.5\nh: 2.0\ni: ~\n\
             j: 2024-01-02\nk: '0644'\nl: \"yes\"\nm: 0o17\nn1: -12\no: +7\np: 08\nq: 1e3\n\
             r: !!str 12\ns: !!int \"12\"\nt: 18446744073709551615\nu: inf\nv: .5\nw:\n",
        );
        assert_eq!(
            v,
            json!({"a": true, "b": false, "c": true, "d": 420, "e": 31, "f": 1000, "g": 1.5,
                   "h": 2, "i": null, "j": "2024-01-02", "k": "0644", "l": "yes", "m": 15,
                   "n1": -12, "o": 7, "p": 8, "q": 1000, "r": "12", "s": 12,
                   "t": 18446744073709551615u64, "u": "inf", "v": 0.5, "w": null})
        );
    }

    #[test]
    fn plain_resolution_edges() {
        assert_eq!(plain("-0x10"), Plain::Int(Number::from(-16)));
        assert_eq!(plain("0x-1"), Plain::Str);
        assert_eq!(
            plain("-9223372036854775808"),
            Plain::Int(Number::from(i64::MIN))
        );
        assert_eq!(plain("1e999"), Plain::Str);
        assert_eq!(plain("1."), Plain::Float(1.0));
        assert_eq!(plain("."), Plain::Str);
        assert_eq!(plain("1.2.3"), Plain::Str);
        assert_eq!(plain("10.244.1.0/24"), Plain::Str);
        assert_eq!(plain("-"), Plain::Str);
        assert!(!is_float("1e"));
        assert!(is_float("-.5E+3"));
    }

    #[test]
    fn anchors_aliases_and_merge_keys() {
        let v = one(
            "base: &b {x: 1, w: 2}\nother: &o {z: 3}\nm:\n  <<: [*b, *o]\n  w: 20\nlist: [*b]\n\
             k: &k name\n*k : 5\n",
        );
        assert_eq!(
            v,
            json!({"base": {"x": 1, "w": 2}, "other": {"z": 3},
                   "m": {"x": 1, "w": 20, "z": 3}, "list": [{"x": 1, "w": 2}],
                   "k": "name", "name": 5})
        );
        // A quoted `<<` is an ordinary key.
        assert_eq!(one("'<<': 1"), json!({"<<": 1}));
        assert!(fails("a: &a 1\n<<: *a\n").message.contains("merge key"));
    }

    #[test]
    fn what_json_cannot_hold_is_refused() {
        for (text, needle, line) in [
            ("a: 1\n1: b\n", "the key `1` reads as a number", 2),
            ("a: 1\nyes: b\n", "reads as a boolean", 2),
            ("a: 1\ny: b\n", "the key `y` reads as a boolean", 2),
            ("? [a]\n: b\n", "not a sequence", 1),
            ("a: 1\nb: .inf\n", ".inf is not a number JSON can hold", 2),
            ("a: 1\na: 2\n", "duplicate key \"a\"", 2),
            ("a: !!int x\n", "\"x\" is not a valid !!int", 1),
            ("a: &a [*a]\n", "contains it", 1),
        ] {
            let e = fails(text);
            assert!(e.message.contains(needle), "{text:?}: {e:?}");
            assert_eq!(e.line, line, "{text:?}: {e:?}");
        }
    }

    #[test]
    fn documents_are_numbered_from_one() {
        let docs = documents("---\n# only a comment\n---\na: 1\n---\n---\nb: 2\n").unwrap();
        let numbered: Vec<(usize, Value)> = docs;
        assert_eq!(
            numbered,
            vec![
                (1, Value::Null),
                (2, json!({"a": 1})),
                (3, Value::Null),
                (4, json!({"b": 2}))
            ]
        );
        assert!(documents("").unwrap().is_empty());
        assert!(documents("# nothing\n").unwrap().is_empty());
        let e = fails("a: 1\n---\nb: [\n");
        assert_eq!(e.doc, 2, "{e:?}");
    }

    #[test]
    fn nesting_is_capped_without_recursion() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(documents(&ok).is_ok());
        let deep: String = (0..MAX_DEPTH + 1)
            .map(|i| format!("{}k:\n", "  ".repeat(i)))
            .collect();
        assert!(fails(&deep).message.contains("nested more than"));
        let seqs: String = (0..100_000)
            .map(|i| format!("{}-\n", " ".repeat(i % 7)))
            .collect();
        let _ = documents(&seqs);
        // An alias cannot carry a deep anchor past the limit.
        let half = MAX_DEPTH / 2 + 1;
        let text = format!(
            "a: &a {}{}\nb: {}*a{}\n",
            "[".repeat(half),
            "]".repeat(half),
            "[".repeat(half),
            "]".repeat(half)
        );
        assert!(fails(&text).message.contains("nested more than"));
    }

    #[test]
    fn billion_laughs_is_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let e = fails(&text);
        assert!(e.message.contains("aliases expand"), "{e:?}");
    }
}
