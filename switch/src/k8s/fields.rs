//! Reading a manifest's fields strictly, for kinds whose meaning changes when a field is
//! lost (a NetworkPolicy whose mistyped `matchLabel` would select every Pod): a field
//! of the wrong type is an error, and so is an unknown field where the reader says
//! which fields there are. Absent and `null` are the same (the API server reads both as
//! unset). Errors name the field and read as the API server's do:
//! `spec.ingress[0].ports[1].port: Invalid value: 0: must be between 1 and 65535, inclusive`.

use super::ObjectKey;
use super::names;
use super::service::Protocol;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use vswitch_proto::k8s::FieldError;

/// Labels, by key.
pub type Labels = BTreeMap<String, String>;

pub(crate) fn err(path: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        path: path.into(),
        message: message.into(),
    }
}

/// `path.field`.
pub(crate) fn child(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

/// `path[i]`.
pub(crate) fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// A value as the API server quotes it in a message: `"x"`, `0`.
pub(crate) fn shown(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// `path: Invalid value: VALUE: detail`.
pub(crate) fn invalid(path: &str, value: &Value, detail: impl AsRef<str>) -> FieldError {
    err(
        path,
        format!("Invalid value: {}: {}", shown(value), detail.as_ref()),
    )
}

/// `path: Required value` (`: detail`).
pub(crate) fn required(path: &str, detail: &str) -> FieldError {
    if detail.is_empty() {
        err(path, "Required value")
    } else {
        err(path, format!("Required value: {detail}"))
    }
}

fn wrong_type(path: &str, want: &str, v: &Value) -> FieldError {
    err(
        path,
        format!(
            "Invalid value: must be {want}, not {}",
            vswitch_proto::k8s::json_type(v)
        ),
    )
}

fn present(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| !v.is_null())
}

/// `v` as an object, `None` when absent; with `known`, a field not among them is an
/// error.
pub(crate) fn object<'a>(
    v: Option<&'a Value>,
    path: &str,
    known: Option<&[&str]>,
) -> Result<Option<&'a Map<String, Value>>, FieldError> {
    let Some(v) = present(v) else {
        return Ok(None);
    };
    let m = v
        .as_object()
        .ok_or_else(|| wrong_type(path, "an object", v))?;
    if let Some(known) = known
        && let Some(k) = m.keys().find(|k| !known.contains(&k.as_str()))
    {
        return Err(err(
            &child(path, k),
            format!("unknown field (known here: {})", known.join(", ")),
        ));
    }
    Ok(Some(m))
}

/// `v` as a list, empty when absent.
pub(crate) fn list<'a>(v: Option<&'a Value>, path: &str) -> Result<&'a [Value], FieldError> {
    match present(v) {
        None => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(v) => Err(wrong_type(path, "a list", v)),
    }
}

pub(crate) fn string<'a>(v: Option<&'a Value>, path: &str) -> Result<Option<&'a str>, FieldError> {
    match present(v) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(wrong_type(path, "a string", v)),
    }
}

pub(crate) fn boolean(v: Option<&Value>, path: &str) -> Result<Option<bool>, FieldError> {
    match present(v) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(wrong_type(path, "a boolean", v)),
    }
}

/// A list of strings, empty when absent.
pub(crate) fn strings<'a>(v: Option<&'a Value>, path: &str) -> Result<Vec<&'a str>, FieldError> {
    list(v, path)?
        .iter()
        .enumerate()
        .map(|(i, x)| Ok(string(Some(x), &index(path, i))?.unwrap_or_default()))
        .collect()
}

/// A map of labels (`metadata.labels`, a selector's `matchLabels`): keys and values as
/// the API server takes them; errors name the map, as its do
/// (`metadata.labels: Invalid value: "-x": name part must ...`).
pub(crate) fn labels(v: Option<&Value>, path: &str) -> Result<Labels, FieldError> {
    let mut out = Labels::new();
    let Some(m) = object(v, path, None)? else {
        return Ok(out);
    };
    for (k, v) in m {
        let value = string(Some(v), &child(path, k))?.unwrap_or_default();
        names::qualified_name(k).map_err(|m| invalid(path, &Value::String(k.clone()), m))?;
        names::label_value(value).map_err(|m| invalid(path, v, m))?;
        out.insert(k.clone(), value.to_string());
    }
    Ok(out)
}

/// A port's protocol: TCP when absent.
pub(crate) fn protocol(v: Option<&Value>, path: &str) -> Result<Protocol, FieldError> {
    match string(v, path)? {
        None | Some("TCP") => Ok(Protocol::Tcp),
        Some("UDP") => Ok(Protocol::Udp),
        Some("SCTP") => Ok(Protocol::Sctp),
        Some(s) => Err(err(
            path,
            format!(
                "Unsupported value: {}: supported values: \"SCTP\", \"TCP\", \"UDP\"",
                shown(&Value::String(s.into()))
            ),
        )),
    }
}

/// A port number, 1 to 65535.
pub(crate) fn port_number(v: &Value, path: &str) -> Result<u16, FieldError> {
    v.as_u64()
        .filter(|p| (1..=65535).contains(p))
        .map(|p| p as u16)
        .ok_or_else(|| invalid(path, v, "must be between 1 and 65535, inclusive"))
}

/// How an object's name must look.
#[derive(Clone, Copy, Debug)]
pub(crate) enum NameRule {
    /// A DNS-1123 label (Namespaces).
    Label,
    /// A DNS-1123 subdomain (Pods, NetworkPolicies).
    Subdomain,
}

/// The object's key: `metadata.name` (checked by `rule`) and, for a namespaced kind,
/// `metadata.namespace` (`default` when absent, as `kubectl apply` takes it).
pub(crate) fn key(
    obj: &Value,
    kind: &'static str,
    namespaced: bool,
    rule: NameRule,
) -> Result<ObjectKey, FieldError> {
    let meta = object(obj.get("metadata"), "metadata", None)?;
    let field = |f: &str| meta.and_then(|m| m.get(f));
    let name = string(field("name"), "metadata.name")?
        .filter(|n| !n.is_empty())
        .ok_or_else(|| required("metadata.name", "name or generateName is required"))?;
    let checked = match rule {
        NameRule::Label => names::dns1123_label(name),
        NameRule::Subdomain => names::dns1123_subdomain(name),
    };
    checked.map_err(|m| invalid("metadata.name", &Value::String(name.into()), m))?;
    let namespace = if namespaced {
        let ns = string(field("namespace"), "metadata.namespace")?
            .filter(|n| !n.is_empty())
            .unwrap_or("default");
        names::dns1123_label(ns)
            .map_err(|m| invalid("metadata.namespace", &Value::String(ns.into()), m))?;
        ns.to_string()
    } else {
        String::new()
    };
    Ok(ObjectKey {
        kind,
        namespace,
        name: name.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wrong_types_and_unknown_fields_are_named() {
        let v = json!({ "a": 1, "b": "x", "c": [1], "n": null });
        assert_eq!(
            object(v.get("a"), "spec.a", None).unwrap_err().to_string(),
            "spec.a: Invalid value: must be an object, not a number"
        );
        assert_eq!(object(v.get("n"), "spec.n", None), Ok(None));
        assert_eq!(list(v.get("missing"), "x").unwrap().len(), 0);
        assert_eq!(
            list(v.get("b"), "spec.b").unwrap_err().to_string(),
            "spec.b: Invalid value: must be a list, not a string"
        );
        assert_eq!(strings(v.get("c"), "spec.c").unwrap_err().path, "spec.c[0]");
        let e = object(Some(&v), "spec", Some(&["a", "b", "c"])).unwrap_err();
        assert_eq!(e.path, "spec.n");
        assert!(e.message.starts_with("unknown field"), "{e}");
    }

    #[test]
    fn labels_are_checked_as_the_api_server_does() {
        let l = labels(
            Some(&json!({ "app": "web", "x.io/tier": "" })),
            "metadata.labels",
        );
        assert_eq!(l.unwrap().len(), 2);
        let e = labels(Some(&json!({ "-app": "web" })), "metadata.labels").unwrap_err();
        assert_eq!(e.path, "metadata.labels");
        assert!(
            e.message.starts_with("Invalid value: \"-app\": name part"),
            "{e}"
        );
        let e = labels(Some(&json!({ "app": "a b" })), "metadata.labels").unwrap_err();
        assert!(
            e.message
                .starts_with("Invalid value: \"a b\": a valid label"),
            "{e}"
        );
        let e = labels(Some(&json!({ "v": 1 })), "metadata.labels").unwrap_err();
        assert_eq!(e.path, "metadata.labels.v");
    }

    #[test]
    fn keys() {
        let k = key(
            &json!({ "metadata": { "name": "web" } }),
            "Pod",
            true,
            NameRule::Subdomain,
        )
        .unwrap();
        assert_eq!(k.to_string(), "pod/default/web");
        let e = key(&json!({}), "Pod", true, NameRule::Subdomain).unwrap_err();
        assert_eq!(
            e.to_string(),
            "metadata.name: Required value: name or generateName is required"
        );
        let e = key(
            &json!({ "metadata": { "name": "a.b" } }),
            "Namespace",
            false,
            NameRule::Label,
        )
        .unwrap_err();
        assert_eq!(e.path, "metadata.name");
        let e = key(
            &json!({ "metadata": { "name": "a", "namespace": "Shop" } }),
            "Pod",
            true,
            NameRule::Subdomain,
        )
        .unwrap_err();
        assert_eq!(e.path, "metadata.namespace");
    }
}
