//! Kubernetes manifests: YAML or JSON files as `kubectl apply -f` takes them, read into
//! the [`ManifestObject`]s that `apply` and `delete` send to the switch, and the fields
//! the switch uses from each kind it handles ([`node_spec`] for Nodes).
//!
//! [`load_documents`] reads every document of a file (YAML separated by `---`, or one or
//! more JSON objects), skips empty ones, flattens `List`s into their items and checks that
//! each object has a `kind` and an `apiVersion`. It never panics and never recurses on
//! the input's nesting: YAML is read from the parser's event stream with an explicit
//! stack, and nesting is capped at [`MAX_DEPTH`] (JSON included), under serde_json's own
//! limit so that the objects can go to the switch in a JSON-RPC request.
//!
//! Errors name the file and the document, then the field or the YAML line:
//! `nodes.yaml: document 2: kind: missing`,
//! `nodes.yaml: document 1: line 4, column 9: mapping values are not allowed in this context`.

use std::fmt;

use serde_json::{Map, Value};

use crate::rpc::ManifestObject;

mod json;
mod node;
mod yaml;

pub use node::{
    FieldError, NODE_API_VERSION, NODE_KIND, check_node_name, node_spec, parse_node_ip,
    parse_pod_cidr,
};

/// The largest manifest read, in bytes. `kubectl get nodes -o yaml` of a cluster at
/// Kubernetes' limit (5,000 Nodes) is tens of megabytes, most of it fields the switch
/// does not read: objects are trimmed to those ([`essentials`]) before they are sent.
pub const MAX_MANIFEST_BYTES: usize = 256 << 20;

/// How deeply collections may nest in one document (the root object is level 1).
/// serde_json refuses more than 128, and the request wraps an object in 4 more levels.
pub const MAX_DEPTH: usize = 100;

/// How many nodes YAML aliases may add to a file, in all: enough for any manifest that
/// shares a few blocks, too few for an exponential "billion laughs".
pub const MAX_ALIAS_NODES: usize = 100_000;

/// A manifest that cannot be read, and where.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ManifestError {
    /// The file, as the caller named it.
    pub file: String,
    /// The document, from 1, when the error is inside one.
    pub doc: Option<usize>,
    /// Line and column (both from 1), for syntax errors.
    pub position: Option<(usize, usize)>,
    /// What is wrong; a field error starts with the field's path (`kind: missing`).
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.file)?;
        if let Some(doc) = self.doc {
            write!(f, "document {doc}: ")?;
        }
        if let Some((line, column)) = self.position {
            write!(f, "line {line}, column {column}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl ManifestError {
    fn new(file: &str, doc: Option<usize>, message: impl Into<String>) -> ManifestError {
        ManifestError {
            file: file.into(),
            doc,
            position: None,
            message: message.into(),
        }
    }
}

/// Reads the objects of one manifest file. `source` names it in the objects and in errors
/// (`-` for stdin, by the protocol's convention).
///
/// Text whose first character is `{` or `[` is read as JSON (one value, or several one
/// after the other); if that fails, as YAML, of which JSON is nearly a subset; if both
/// fail, the JSON error is reported. Everything else is YAML: documents are numbered
/// from 1 in the order they appear, empty ones (and comment-only ones) included, though
/// they give no object. Items of a `List` (or of a typed list like `NodeList`) keep their
/// list's document number; items of a typed list that lack `kind` and `apiVersion` get
/// them from the list, as kubectl does.
///
/// # Errors
/// The first problem found, naming `source` and the document: syntax, nesting deeper
/// than [`MAX_DEPTH`], a document that is not a mapping, a missing or non-string `kind`
/// or `apiVersion`, input over [`MAX_MANIFEST_BYTES`].
pub fn load_documents(source: &str, text: &str) -> Result<Vec<ManifestObject>, ManifestError> {
    if text.len() > MAX_MANIFEST_BYTES {
        return Err(ManifestError::new(
            source,
            None,
            format!(
                "{} bytes is more than the {} MiB a manifest may have",
                text.len(),
                MAX_MANIFEST_BYTES >> 20
            ),
        ));
    }
    let body = text.trim_start_matches('\u{feff}');
    let docs = if body.trim_start().starts_with(['{', '[']) {
        match json::documents(body) {
            Ok(docs) => docs,
            Err(json_error) => yaml_documents(source, body).map_err(|_| ManifestError {
                file: source.into(),
                doc: Some(json_error.doc),
                position: Some((json_error.line, json_error.column)),
                message: json_error.message,
            })?,
        }
    } else {
        yaml_documents(source, body)?
    };
    let mut objects = Vec::new();
    for (doc, value) in docs {
        if value.is_null() {
            continue;
        }
        flatten(value, "", None, &mut |object| {
            objects.push(ManifestObject {
                source: source.into(),
                doc,
                object,
            })
        })
        .map_err(|message| ManifestError::new(source, Some(doc), message))?;
    }
    Ok(objects)
}

fn yaml_documents(source: &str, text: &str) -> Result<Vec<(usize, Value)>, ManifestError> {
    yaml::documents(text).map_err(|e| ManifestError {
        file: source.into(),
        doc: Some(e.doc),
        position: Some((e.line, e.column)),
        message: e.message,
    })
}

/// The kind and apiVersion a typed list gives its items (`NodeList` in `v1`: `Node`, `v1`).
type ItemDefaults = (String, String);

/// Checks one object (at `path`, empty for a document's root) and hands it to `emit`, or
/// its items if it is a list. Lists nest at most [`MAX_DEPTH`] / 2 deep, so the recursion
/// is bounded.
fn flatten(
    value: Value,
    path: &str,
    defaults: Option<&ItemDefaults>,
    emit: &mut dyn FnMut(Value),
) -> Result<(), String> {
    let field = |name: &str| {
        if path.is_empty() {
            name.to_string()
        } else {
            format!("{path}.{name}")
        }
    };
    let mut object = match value {
        Value::Object(o) => o,
        other => {
            let at = if path.is_empty() {
                String::new()
            } else {
                format!("{path}: ")
            };
            return Err(format!(
                "{at}not an object: a manifest holds mappings with `kind` and `apiVersion`, \
                 this is {}",
                json_type(&other)
            ));
        }
    };
    if let Some((kind, api_version)) = defaults {
        object
            .entry("kind")
            .or_insert_with(|| Value::String(kind.clone()));
        object
            .entry("apiVersion")
            .or_insert_with(|| Value::String(api_version.clone()));
    }
    let kind = required_string(&object, "kind").map_err(|m| format!("{}: {m}", field("kind")))?;
    let api_version = required_string(&object, "apiVersion")
        .map_err(|m| format!("{}: {m}", field("apiVersion")))?;
    let is_list = kind == "List"
        || (kind.len() > "List".len()
            && kind.ends_with("List")
            && matches!(object.get("items"), Some(Value::Array(_))));
    if !is_list {
        emit(Value::Object(object));
        return Ok(());
    }
    let item_defaults = (kind != "List").then(|| {
        (
            kind.trim_end_matches("List").to_string(),
            api_version.to_string(),
        )
    });
    let items = match object.remove("items") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(format!(
                "{}: not a list: this is {}",
                field("items"),
                json_type(&other)
            ));
        }
    };
    for (i, item) in items.into_iter().enumerate() {
        flatten(
            item,
            &format!("{}[{i}]", field("items")),
            item_defaults.as_ref(),
            emit,
        )?;
    }
    Ok(())
}

fn required_string<'a>(object: &'a Map<String, Value>, key: &str) -> Result<&'a str, String> {
    match object.get(key) {
        None | Some(Value::Null) => Err("missing".into()),
        Some(Value::String(s)) if s.trim().is_empty() => Err("empty".into()),
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(format!("not a string: this is {}", json_type(other))),
    }
}

/// `a string`, `a number`...: for messages.
pub fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The object's `kind` and `metadata.name` as written, each empty when absent or not a
/// string: for outcome lines (see [`object_ref`]).
pub fn object_kind_name(obj: &Value) -> (String, String) {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_string();
    (
        text(obj.get("kind")),
        text(obj.get("metadata").and_then(|m| m.get("name"))),
    )
}

/// What to keep of a value: all of it, or the named fields, each with what to keep of
/// it. A list keeps that of each item; a value of another type than expected is kept
/// whole, so that the switch reports it as it would have.
#[derive(Debug)]
enum Keep {
    All,
    Fields(&'static [(&'static str, Keep)]),
}

use Keep::{All, Fields};

/// What the switch reads of a Pod (`switch/src/k8s/pod.rs`).
const POD_FIELDS: Keep = Fields(&[
    ("apiVersion", All),
    ("kind", All),
    (
        "metadata",
        Fields(&[("name", All), ("namespace", All), ("labels", All)]),
    ),
    (
        "spec",
        Fields(&[
            ("nodeName", All),
            ("hostNetwork", All),
            ("containers", Fields(&[("name", All), ("ports", All)])),
            (
                "initContainers",
                Fields(&[("name", All), ("restartPolicy", All), ("ports", All)]),
            ),
        ]),
    ),
    (
        "status",
        Fields(&[("phase", All), ("podIP", All), ("podIPs", All)]),
    ),
]);

/// What the switch reads of a Namespace (`switch/src/k8s/namespace.rs`).
const NAMESPACE_FIELDS: Keep = Fields(&[
    ("apiVersion", All),
    ("kind", All),
    ("metadata", Fields(&[("name", All), ("labels", All)])),
]);

fn trim(v: &Value, keep: &Keep) -> Value {
    match (keep, v) {
        (Fields(fields), Value::Object(m)) => Value::Object(
            fields
                .iter()
                .filter_map(|(name, k)| Some((name.to_string(), trim(m.get(*name)?, k))))
                .collect(),
        ),
        (Fields(_), Value::Array(items)) => {
            Value::Array(items.iter().map(|i| trim(i, keep)).collect())
        }
        _ => v.clone(),
    }
}

/// The object with only what the switch reads of its kind (for a `Node`: `apiVersion`,
/// `kind`, `metadata.name`, `spec.podCIDR(s)`, `status.addresses`; for a `Pod`: its
/// name, namespace and labels, node, host network, containers' names and ports, restart
/// policy of init containers, phase and addresses; for a `Namespace`: its name and
/// labels); other kinds as they are. A cluster's `kubectl get nodes -o yaml` carries
/// kilobytes per node the switch never looks at (`managedFields`, images, conditions),
/// and `kubectl get pods -A -o yaml` more per Pod: they are not sent.
pub fn essentials(obj: &Value) -> Value {
    let core = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .is_some_and(|v| !v.contains('/'));
    match obj.get("kind").and_then(Value::as_str) {
        Some("Pod") if core => return trim(obj, &POD_FIELDS),
        Some("Namespace") if core => return trim(obj, &NAMESPACE_FIELDS),
        Some(NODE_KIND) => {}
        _ => return obj.clone(),
    }
    let pick =
        |path: &[&str]| -> Option<Value> { path.iter().try_fold(obj, |v, k| v.get(*k)).cloned() };
    let mut out = Map::new();
    for key in ["apiVersion", "kind"] {
        if let Some(v) = obj.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    let mut section = |name: &str, fields: &[(&str, &[&str])]| {
        let mut m = Map::new();
        for (key, path) in fields {
            if let Some(v) = pick(path) {
                m.insert((*key).into(), v);
            }
        }
        if !m.is_empty() || obj.get(name).is_some() {
            out.insert(name.into(), Value::Object(m));
        }
    };
    section("metadata", &[("name", &["metadata", "name"])]);
    section(
        "spec",
        &[
            ("podCIDR", &["spec", "podCIDR"]),
            ("podCIDRs", &["spec", "podCIDRs"]),
        ],
    );
    section("status", &[("addresses", &["status", "addresses"])]);
    Value::Object(out)
}

/// How kubectl names an object in its output: `node/worker-1`, the kind in lower case.
pub fn object_ref(kind: &str, name: &str) -> String {
    let kind = if kind.is_empty() {
        "object".to_string()
    } else {
        kind.to_lowercase()
    };
    if name.is_empty() {
        format!("{kind}/<no name>")
    } else {
        format!("{kind}/{name}")
    }
}

#[cfg(test)]
mod tests;
