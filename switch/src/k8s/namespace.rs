//! The Namespace kind: a namespace's labels, which NetworkPolicies' `namespaceSelector`s
//! select by.
//!
//! Read: `metadata.name` and `metadata.labels`. The API server gives every namespace the
//! label `kubernetes.io/metadata.name` with its name (and overwrites whatever a user
//! puts there); so does this reader, so that a hand-written manifest without it selects
//! as the cluster's object does. A namespace whose object is not known (its Pods arrived
//! first) has only that label ([`default_labels`]). Compiled: nothing of its own; the
//! policies that select by its labels are compiled from it.

use super::fields::{self, Labels, NameRule};
use super::pipeline::CookieKind;
use super::{Kind, KindInfo, ObjectKey, Objects, Spec, Stored};
use serde_json::{Value, json};
use vswitch_proto::k8s::FieldError;
use vswitch_proto::rpc::GetColumn;

pub const NAMESPACE_KIND: &str = "Namespace";

/// The label the API server gives every namespace: its name.
pub const NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// A Namespace, as the switch keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespace {
    /// Its labels, [`NAME_LABEL`] included.
    pub labels: Labels,
}

/// The labels of namespace `name` when its object is not known: the one every namespace
/// has.
pub fn default_labels(name: &str) -> Labels {
    Labels::from([(NAME_LABEL.to_string(), name.to_string())])
}

/// The key of namespace `name`.
pub fn key(name: &str) -> ObjectKey {
    ObjectKey {
        kind: NAMESPACE_KIND,
        namespace: String::new(),
        name: name.to_string(),
    }
}

pub fn read_namespace(obj: &Value) -> Result<(ObjectKey, Namespace), FieldError> {
    let key = fields::key(obj, NAMESPACE_KIND, false, NameRule::Label)?;
    let mut labels = fields::labels(obj.pointer("/metadata/labels"), "metadata.labels")?;
    labels.insert(NAME_LABEL.into(), key.name.clone());
    Ok((key, Namespace { labels }))
}

/// Labels as `--show-labels` prints them: `a=1,b=2`, `<none>` without any.
pub fn labels_text(labels: &Labels) -> String {
    if labels.is_empty() {
        return "<none>".into();
    }
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Bits of the owner number that keep objects owning no rules of their own apart from
/// NetworkPolicies (whose cookie kind they share).
pub(crate) const NAMESPACE_OWNER: u64 = 2 << 40;

/// The Namespace kind.
#[derive(Debug)]
pub struct NamespaceKind;

pub static NAMESPACE: NamespaceKind = NamespaceKind;

static INFO: KindInfo = KindInfo {
    kind: NAMESPACE_KIND,
    group: "",
    version: "v1",
    plural: "namespaces",
    singular: "namespace",
    short: &["ns"],
    namespaced: false,
};

fn namespace_of(spec: &Spec) -> Option<&Namespace> {
    match spec {
        Spec::Namespace(n) => Some(n),
        _ => None,
    }
}

impl Kind for NamespaceKind {
    fn info(&self) -> &'static KindInfo {
        &INFO
    }

    /// The policies whose peers' namespace selectors select it (with the labels every
    /// namespace has too: they are its labels once its object goes).
    fn related(&self, objects: &Objects, key: &ObjectKey, spec: &Spec) -> Vec<ObjectKey> {
        let Spec::Namespace(n) = spec else {
            return Vec::new();
        };
        let mut out = super::netpol::policies_of_namespace(objects, &n.labels);
        out.extend(super::netpol::policies_of_namespace(
            objects,
            &default_labels(&key.name),
        ));
        out
    }

    fn read(&self, obj: &Value) -> Result<(ObjectKey, Spec), FieldError> {
        let (k, n) = read_namespace(obj)?;
        Ok((k, Spec::Namespace(n)))
    }

    fn to_object(&self, key: &ObjectKey, stored: &Stored) -> Value {
        let Some(n) = namespace_of(&stored.spec) else {
            return Value::Null;
        };
        json!({
            "apiVersion": INFO.version,
            "kind": INFO.kind,
            "metadata": { "name": key.name, "labels": n.labels },
        })
    }

    fn columns(&self) -> Vec<GetColumn> {
        vec![GetColumn {
            name: "LABELS".into(),
            wide: false,
        }]
    }

    fn cells(&self, _key: &ObjectKey, stored: &Stored) -> Vec<String> {
        namespace_of(&stored.spec)
            .map(|n| vec![labels_text(&n.labels)])
            .unwrap_or_default()
    }

    fn owner(&self, stored: &Stored) -> u64 {
        CookieKind::NetworkPolicy.cookie(NAMESPACE_OWNER | stored.id as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(spec: Spec) -> Stored {
        Stored {
            spec,
            source: "manifest".into(),
            id: 3,
        }
    }

    #[test]
    fn a_namespace_reads_as_kubectl_prints_it() {
        // `kubectl get ns shop -o yaml`: status, managedFields and the rest are ignored.
        let obj = json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {
                "creationTimestamp": "2024-05-01T10:00:00Z",
                "labels": { "kubernetes.io/metadata.name": "shop", "team": "web" },
                "managedFields": [{ "apiVersion": "v1", "fieldsType": "FieldsV1",
                    "fieldsV1": { "f:metadata": { "f:labels": { ".": {} } } },
                    "manager": "kubectl-create", "operation": "Update" }],
                "name": "shop", "resourceVersion": "123", "uid": "0d6c..."
            },
            "spec": { "finalizers": ["kubernetes"] },
            "status": { "phase": "Active" }
        });
        let (k, spec) = NAMESPACE.read(&obj).unwrap();
        assert_eq!(k, key("shop"));
        assert_eq!(k.to_string(), "namespace/shop");
        let Spec::Namespace(n) = &spec else { panic!() };
        assert_eq!(
            labels_text(&n.labels),
            "kubernetes.io/metadata.name=shop,team=web"
        );
        let s = stored(spec.clone());
        assert_eq!(
            NAMESPACE.read(&NAMESPACE.to_object(&k, &s)).unwrap(),
            (k.clone(), spec)
        );
        assert_eq!(
            NAMESPACE.cells(&k, &s),
            ["kubernetes.io/metadata.name=shop,team=web"]
        );
    }

    #[test]
    fn the_name_label_is_set_as_the_api_server_sets_it() {
        let (_, n) = read_namespace(&json!({ "metadata": { "name": "x" } })).unwrap();
        assert_eq!(n.labels, default_labels("x"));
        // Overwritten, as the API server overwrites it.
        let (_, n) = read_namespace(&json!({ "metadata": { "name": "x",
            "labels": { "kubernetes.io/metadata.name": "y" } } }))
        .unwrap();
        assert_eq!(n.labels, default_labels("x"));
    }

    #[test]
    fn bad_namespaces_are_refused_naming_the_field() {
        let bad = |v: Value| read_namespace(&v).unwrap_err().to_string();
        assert!(
            bad(json!({ "metadata": { "name": "Shop" } }))
                .starts_with("metadata.name: Invalid value: \"Shop\": a lowercase RFC 1123 label")
        );
        assert!(
            bad(json!({ "metadata": { "name": "a.b" } }))
                .starts_with("metadata.name: Invalid value")
        );
        assert!(
            bad(json!({ "metadata": { "name": "x", "labels": { "a": "b c" } } }))
                .starts_with("metadata.labels: Invalid value: \"b c\"")
        );
        assert_eq!(
            bad(json!({ "metadata": { "labels": {} } })),
            "metadata.name: Required value: name or generateName is required"
        );
    }
}
