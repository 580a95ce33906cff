//! A Kubernetes Node as the switch sees it: a name, an IPv4 Pod CIDR and the InternalIP
//! its tunnel ends at.

use std::fmt;
use std::net::Ipv4Addr;

use serde_json::Value;

use super::json_type;
use crate::net::Ipv4Cidr;
use crate::rpc::NodeSpec;

pub const NODE_KIND: &str = "Node";
pub const NODE_API_VERSION: &str = "v1";

/// A field of an object that is missing or wrong. Displays as
/// `spec.podCIDR: not a valid IPv4 CIDR: "x"`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct FieldError {
    /// The field's path in the object: `metadata.name`, `status.addresses[1].address`.
    pub path: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl FieldError {
    fn new(path: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Reads what the switch needs from a Node object (`kind: Node`, `apiVersion: v1`):
/// - the name, `metadata.name`, a DNS-1123 subdomain as Kubernetes requires;
/// - the Pod CIDR, `spec.podCIDR`, or when that is absent or IPv6 (an IPv6-first
///   dual-stack cluster), the first IPv4 entry of `spec.podCIDRs`; when both fields are
///   present their first entries must agree, as Kubernetes keeps them;
/// - the underlay address, the first IPv4 `InternalIP` of `status.addresses`.
///
/// # Errors
/// The first field that is missing or wrong, with its path.
pub fn node_spec(obj: &Value) -> Result<NodeSpec, FieldError> {
    let kind = string_at(obj, &["kind"])?;
    if kind != Some(NODE_KIND) {
        return Err(FieldError::new(
            "kind",
            format!("expected {NODE_KIND}, found {}", show(kind)),
        ));
    }
    let api_version = string_at(obj, &["apiVersion"])?;
    if api_version != Some(NODE_API_VERSION) {
        return Err(FieldError::new(
            "apiVersion",
            format!(
                "expected {NODE_API_VERSION} for a {NODE_KIND}, found {}",
                show(api_version)
            ),
        ));
    }
    let name = string_at(obj, &["metadata", "name"])?
        .ok_or_else(|| FieldError::new("metadata.name", "missing"))?;
    check_node_name(name).map_err(|m| FieldError::new("metadata.name", m))?;
    Ok(NodeSpec {
        name: name.into(),
        pod_cidr: pod_cidr(obj)?,
        node_ip: internal_ip(obj)?.to_string(),
    })
}

fn show(s: Option<&str>) -> String {
    match s {
        Some(s) => quoted(s),
        None => "nothing".into(),
    }
}

fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// The value at `path`, `None` when it or a parent is absent or null; an error when a
/// parent is not an object.
fn at<'a>(obj: &'a Value, path: &[&str]) -> Result<Option<&'a Value>, FieldError> {
    let mut v = obj;
    for (i, key) in path.iter().enumerate() {
        match v {
            Value::Object(m) => match m.get(*key) {
                None | Some(Value::Null) => return Ok(None),
                Some(next) => v = next,
            },
            other => {
                let parent = if i == 0 {
                    "the object".to_string()
                } else {
                    path[..i].join(".")
                };
                return Err(FieldError::new(
                    parent,
                    format!("not an object: this is {}", json_type(other)),
                ));
            }
        }
    }
    Ok(Some(v))
}

fn string_at<'a>(obj: &'a Value, path: &[&str]) -> Result<Option<&'a str>, FieldError> {
    match at(obj, path)? {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(FieldError::new(
            path.join("."),
            format!("not a string: this is {}", json_type(other)),
        )),
    }
}

/// Checks a node name as Kubernetes does (a DNS-1123 subdomain): at most 253 characters,
/// dot-separated labels of lower-case letters, digits and `-`, each starting and ending
/// with a letter or a digit.
///
/// # Errors
/// Why not, for `metadata.name: ...` or a command-line argument.
pub fn check_node_name(name: &str) -> Result<(), String> {
    let rule = "a node name is lower-case letters, digits, '-' and '.', starts and ends with a \
                letter or digit, and has at most 253 characters";
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.is_empty() {
        return Err("empty".into());
    }
    if name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(format!("not a valid node name: {}: {rule}", quoted(name)));
    }
    Ok(())
}

/// Parses a Pod CIDR: `a.b.c.d/len`, IPv4, with a prefix length of at most 30 (a Pod
/// CIDR needs room for a gateway and a Pod) and no host bits set.
///
/// # Errors
/// Which of these it breaks, quoting `s`.
pub fn parse_pod_cidr(s: &str) -> Result<Ipv4Cidr, String> {
    let c: Ipv4Cidr = s.parse().map_err(|e: crate::net::AddrError| e.0)?;
    if c.prefix() > 30 {
        return Err(format!(
            "prefix length /{} leaves no room for a gateway and a Pod (at most /30): {}",
            c.prefix(),
            quoted(s)
        ));
    }
    Ok(c)
}

/// Parses a node's underlay address: IPv4, and one a tunnel can end at (not 0.0.0.0,
/// broadcast or multicast).
///
/// # Errors
/// Why not, quoting `s`.
pub fn parse_node_ip(s: &str) -> Result<Ipv4Addr, String> {
    let ip: Ipv4Addr = s
        .parse()
        .map_err(|_| format!("not a valid IPv4 address: {}", quoted(s)))?;
    if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() {
        return Err(format!(
            "{ip} cannot be a node's address (unspecified, broadcast or multicast)"
        ));
    }
    Ok(ip)
}

/// An entry that reads as an IPv6 CIDR: skipped by an IPv4 switch, not an error.
fn is_ipv6_cidr(s: &str) -> bool {
    s.split_once('/').is_some_and(|(a, l)| {
        a.parse::<std::net::Ipv6Addr>().is_ok() && l.parse::<u8>().is_ok_and(|l| l <= 128)
    })
}

fn pod_cidr(obj: &Value) -> Result<String, FieldError> {
    let single = string_at(obj, &["spec", "podCIDR"])?;
    let list: Vec<(usize, &str)> = match at(obj, &["spec", "podCIDRs"])? {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok((i, s.as_str())),
                other => Err(FieldError::new(
                    format!("spec.podCIDRs[{i}]"),
                    format!("not a string: this is {}", json_type(other)),
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(FieldError::new(
                "spec.podCIDRs",
                format!("not a list: this is {}", json_type(other)),
            ));
        }
    };
    if let (Some(single), Some((_, first))) = (single, list.first())
        && single != *first
    {
        return Err(FieldError::new(
            "spec.podCIDRs",
            format!(
                "the first entry {} differs from spec.podCIDR {}",
                quoted(first),
                quoted(single)
            ),
        ));
    }
    if let Some(single) = single.filter(|s| !is_ipv6_cidr(s)) {
        return checked_cidr("spec.podCIDR", single);
    }
    let ipv4 = list.iter().find(|(_, s)| !is_ipv6_cidr(s));
    match (ipv4, single, list.is_empty()) {
        (Some((i, s)), _, _) => checked_cidr(&format!("spec.podCIDRs[{i}]"), s),
        (None, None, true) => Err(FieldError::new("spec.podCIDR", "missing")),
        (None, Some(_), true) => Err(FieldError::new(
            "spec.podCIDR",
            "an IPv6 CIDR, and spec.podCIDRs has no IPv4 one: this switch is IPv4 only",
        )),
        (None, _, false) => Err(FieldError::new(
            "spec.podCIDRs",
            "no IPv4 CIDR: this switch is IPv4 only",
        )),
    }
}

fn checked_cidr(path: &str, s: &str) -> Result<String, FieldError> {
    parse_pod_cidr(s)
        .map(|_| s.to_string())
        .map_err(|m| FieldError::new(path, m))
}

fn internal_ip(obj: &Value) -> Result<Ipv4Addr, FieldError> {
    let none = || FieldError::new("status.addresses", "no InternalIP address");
    let addresses = match at(obj, &["status", "addresses"])? {
        None => return Err(none()),
        Some(Value::Array(a)) => a,
        Some(other) => {
            return Err(FieldError::new(
                "status.addresses",
                format!("not a list: this is {}", json_type(other)),
            ));
        }
    };
    let mut ipv6_only = false;
    for (i, entry) in addresses.iter().enumerate() {
        let path = format!("status.addresses[{i}]");
        let field = |name: &str| -> Result<Option<&str>, FieldError> {
            match entry {
                Value::Object(m) => match m.get(name) {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::String(s)) => Ok(Some(s)),
                    Some(other) => Err(FieldError::new(
                        format!("{path}.{name}"),
                        format!("not a string: this is {}", json_type(other)),
                    )),
                },
                other => Err(FieldError::new(
                    path.clone(),
                    format!("not an object: this is {}", json_type(other)),
                )),
            }
        };
        if field("type")? != Some("InternalIP") {
            continue;
        }
        let address = field("address")?
            .ok_or_else(|| FieldError::new(format!("{path}.address"), "missing"))?;
        if address.parse::<std::net::Ipv6Addr>().is_ok() {
            ipv6_only = true;
            continue;
        }
        return parse_node_ip(address).map_err(|m| FieldError::new(format!("{path}.address"), m));
    }
    if ipv6_only {
        return Err(FieldError::new(
            "status.addresses",
            "no IPv4 InternalIP address: this switch is IPv4 only",
        ));
    }
    Err(none())
}
