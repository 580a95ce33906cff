//! Label selectors (`metav1.LabelSelector`), as NetworkPolicies use them for Pods and
//! Namespaces.
//!
//! - `matchLabels` and `matchExpressions` are ANDed; so are the expressions.
//! - `In`: the label is there with one of the values; `NotIn`: the label is absent or
//!   has none of them; `Exists`, `DoesNotExist`: the key is there or not.
//! - A selector with neither selects everything. An absent selector (a peer without a
//!   `podSelector`) is not a selector: what it means is the caller's to say (read it with
//!   [`LabelSelector::read`], which gives `None`).
//!
//! Read as the API server validates them (`ValidateLabelSelector`, values checked as
//! label values): keys are qualified names, `In`/`NotIn` need values, `Exists` and
//! `DoesNotExist` take none, another operator is refused; a field other than those is
//! refused too, since a mistyped `matchLabel` would otherwise select everything.

use super::fields::{self, Labels, child, err, index, invalid, required};
use super::names;
use serde_json::{Map, Value, json};
use std::collections::BTreeSet;
use std::fmt;
use vswitch_proto::k8s::FieldError;

/// How a requirement relates its key to its values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl Operator {
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::In => "In",
            Operator::NotIn => "NotIn",
            Operator::Exists => "Exists",
            Operator::DoesNotExist => "DoesNotExist",
        }
    }

    /// Whether the operator takes values (`In`, `NotIn`).
    pub fn takes_values(self) -> bool {
        matches!(self, Operator::In | Operator::NotIn)
    }
}

/// One of `matchExpressions`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    /// Non-empty for `In` and `NotIn`, empty otherwise.
    pub values: BTreeSet<String>,
}

impl Requirement {
    pub fn matches(&self, labels: &Labels) -> bool {
        let v = labels.get(&self.key);
        match self.operator {
            Operator::In => v.is_some_and(|v| self.values.contains(v)),
            Operator::NotIn => v.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => v.is_some(),
            Operator::DoesNotExist => v.is_none(),
        }
    }
}

/// A label selector; the default selects everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    pub match_labels: Labels,
    pub match_expressions: Vec<Requirement>,
}

const SELECTOR_FIELDS: &[&str] = &["matchLabels", "matchExpressions"];
const REQUIREMENT_FIELDS: &[&str] = &["key", "operator", "values"];

impl LabelSelector {
    /// The selector of everything (`{}`).
    pub fn everything() -> LabelSelector {
        LabelSelector::default()
    }

    /// Whether it selects everything: no labels and no expressions.
    pub fn selects_everything(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }

    /// Whether an object with these labels is selected.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| r.matches(labels))
    }

    /// A label every selected object carries, with the values it may have (the
    /// narrowest the selector names: a `matchLabels` pair, else the `In` with the fewest
    /// values), or `None` when the selector names none: how an index of labels finds
    /// the candidates.
    pub fn required_label(&self) -> Option<(&str, Vec<&str>)> {
        if let Some((k, v)) = self.match_labels.iter().next() {
            return Some((k, vec![v]));
        }
        self.match_expressions
            .iter()
            .filter(|r| r.operator == Operator::In)
            .min_by_key(|r| r.values.len())
            .map(|r| {
                (
                    r.key.as_str(),
                    r.values.iter().map(String::as_str).collect(),
                )
            })
    }

    /// The selector at `path`, `None` when it is absent (or `null`).
    ///
    /// # Errors
    /// The first field the API server would refuse, named as it names it:
    /// `spec.podSelector.matchExpressions[0].operator: Invalid value: "Is": not a valid
    /// selector operator`.
    pub fn read(v: Option<&Value>, path: &str) -> Result<Option<LabelSelector>, FieldError> {
        let Some(m) = fields::object(v, path, Some(SELECTOR_FIELDS))? else {
            return Ok(None);
        };
        let match_labels = fields::labels(m.get("matchLabels"), &child(path, "matchLabels"))?;
        let exprs_path = child(path, "matchExpressions");
        let mut match_expressions = Vec::new();
        for (i, e) in fields::list(m.get("matchExpressions"), &exprs_path)?
            .iter()
            .enumerate()
        {
            match_expressions.push(read_requirement(e, &index(&exprs_path, i))?);
        }
        Ok(Some(LabelSelector {
            match_labels,
            match_expressions,
        }))
    }

    /// The selector as the API writes it (`{}` for everything); [`LabelSelector::read`]
    /// reads it back the same.
    pub fn to_value(&self) -> Value {
        let mut o = Map::new();
        if !self.match_labels.is_empty() {
            o.insert("matchLabels".into(), json!(self.match_labels));
        }
        if !self.match_expressions.is_empty() {
            let exprs: Vec<Value> = self
                .match_expressions
                .iter()
                .map(|r| {
                    let mut e = json!({ "key": r.key, "operator": r.operator.as_str() });
                    if r.operator.takes_values() {
                        e["values"] = json!(r.values);
                    }
                    e
                })
                .collect();
            o.insert("matchExpressions".into(), Value::Array(exprs));
        }
        Value::Object(o)
    }
}

fn read_requirement(v: &Value, path: &str) -> Result<Requirement, FieldError> {
    // A `null` item is a requirement with nothing set, as the API decodes it.
    let empty = Map::new();
    let m = fields::object(Some(v), path, Some(REQUIREMENT_FIELDS))?.unwrap_or(&empty);
    let key = fields::string(m.get("key"), &child(path, "key"))?.unwrap_or_default();
    let op_path = child(path, "operator");
    let op = fields::string(m.get("operator"), &op_path)?.unwrap_or_default();
    let values_path = child(path, "values");
    let values = fields::strings(m.get("values"), &values_path)?;
    // In the API server's order: the operator and its values, the key, each value.
    let operator = match op {
        "In" => Operator::In,
        "NotIn" => Operator::NotIn,
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        _ => {
            return Err(invalid(
                &op_path,
                &Value::String(op.into()),
                "not a valid selector operator",
            ));
        }
    };
    if operator.takes_values() && values.is_empty() {
        return Err(required(
            &values_path,
            "must be specified when `operator` is 'In' or 'NotIn'",
        ));
    }
    if !operator.takes_values() && !values.is_empty() {
        return Err(err(
            &values_path,
            "Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
        ));
    }
    names::qualified_name(key)
        .map_err(|e| invalid(&child(path, "key"), &Value::String(key.into()), e))?;
    for (i, v) in values.iter().enumerate() {
        names::label_value(v)
            .map_err(|e| invalid(&index(&values_path, i), &Value::String((*v).into()), e))?;
    }
    Ok(Requirement {
        key: key.to_string(),
        operator,
        values: values.into_iter().map(str::to_string).collect(),
    })
}

impl fmt::Display for LabelSelector {
    /// As kubectl prints a selector (`POD-SELECTOR`): `app=web,env in (prod,qa),!canary`,
    /// by key; empty for everything.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<(&str, String)> = self
            .match_labels
            .iter()
            .map(|(k, v)| (k.as_str(), format!("{k}={v}")))
            .collect();
        for r in &self.match_expressions {
            let values = || r.values.iter().cloned().collect::<Vec<_>>().join(",");
            let text = match r.operator {
                Operator::In => format!("{} in ({})", r.key, values()),
                Operator::NotIn => format!("{} notin ({})", r.key, values()),
                Operator::Exists => r.key.clone(),
                Operator::DoesNotExist => format!("!{}", r.key),
            };
            parts.push((&r.key, text));
        }
        parts.sort_by(|a, b| a.0.cmp(b.0));
        let texts: Vec<String> = parts.into_iter().map(|(_, t)| t).collect();
        f.write_str(&texts.join(","))
    }
}

#[cfg(test)]
mod tests;
