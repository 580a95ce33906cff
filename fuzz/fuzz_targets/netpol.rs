//! Fuzz the label-selector and NetworkPolicy readers (`vswitch::k8s::selector`,
//! `vswitch::k8s::netpol`) on arbitrary JSON, read both as a selector and as a policy's
//! `spec`. Nothing may panic, and:
//! - a selector read is written back (`to_value`) and read again the same;
//! - `matches` agrees with the API's definition, computed here from the input itself
//!   (not from what the reader made of it), on label sets made of the selector's own
//!   keys and values; a selected set carries the selector's `required_label`;
//! - a policy read is written back as the switch keeps it and read again the same; its
//!   lists of peers and ports are never empty (empty is `Any`); each `except` is
//!   strictly inside its `cidr` and of its family; a range's end is not below its start;
//!   it isolates ingress unless it lists policy types without `Ingress`.
//!
//! Run: `cd fuzz && cargo fuzz run -s none netpol corpus/seeds/netpol`
//! (seed corpus: `corpus/seeds/netpol/`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use vswitch::k8s::netpol::{IpNet, NETWORK_POLICY, Peer, Peers, PortMatch, Ports};
use vswitch::k8s::selector::LabelSelector;
use vswitch::k8s::{Kind, Spec, Stored};

type Labels = BTreeMap<String, String>;

/// The API's meaning of a selector, from its JSON: `matchLabels` and every expression
/// hold.
fn reference(sel: &Value, labels: &Labels) -> bool {
    let empty = serde_json::Map::new();
    let ml = sel
        .get("matchLabels")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let labels_hold = ml
        .iter()
        .all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str());
    let exprs = sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    labels_hold
        && exprs.iter().all(|e| {
            let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
            let values: Vec<&str> = e
                .get("values")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let has = labels.get(key);
            let within = has.is_some_and(|v| values.contains(&v.as_str()));
            match e.get("operator").and_then(Value::as_str) {
                Some("In") => within,
                Some("NotIn") => !within,
                Some("Exists") => has.is_some(),
                Some("DoesNotExist") => has.is_none(),
                other => panic!("accepted operator {other:?}"),
            }
        })
}

/// Label sets over the selector's keys (at most 4): each key absent, with one of the
/// values the selector names, or with another value.
fn label_sets(s: &LabelSelector) -> Vec<Labels> {
    let mut keys: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (k, v) in &s.match_labels {
        keys.entry(k).or_default().push(v);
    }
    for r in &s.match_expressions {
        keys.entry(&r.key)
            .or_default()
            .extend(r.values.iter().map(String::as_str));
    }
    let mut sets = vec![Labels::new()];
    for (k, values) in keys.into_iter().take(4) {
        let mut choices: Vec<Option<&str>> = vec![None, Some("zz-other")];
        choices.extend(values.into_iter().take(2).map(Some));
        sets = sets
            .into_iter()
            .flat_map(|l| {
                choices.iter().map(move |c| {
                    let mut l = l.clone();
                    if let Some(v) = c {
                        l.insert(k.to_string(), v.to_string());
                    }
                    l
                })
            })
            .collect();
    }
    sets
}

fn check_selector(v: &Value) {
    let Ok(Some(s)) = LabelSelector::read(Some(v), "s") else {
        return;
    };
    let again = LabelSelector::read(Some(&s.to_value()), "s").expect("written back reads");
    assert_eq!(again.as_ref(), Some(&s), "{v}");
    let _ = s.to_string();
    for l in label_sets(&s) {
        let m = s.matches(&l);
        assert_eq!(m, reference(v, &l), "{v} on {l:?}");
        if let (true, Some((k, values))) = (m, s.required_label()) {
            assert!(
                l.get(k).is_some_and(|x| values.contains(&x.as_str())),
                "{v}"
            );
        }
    }
}

fn check_policy(spec: &Value) {
    let obj = json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": { "name": "p", "namespace": "x" },
        "spec": spec,
    });
    let Ok((key, read)) = NETWORK_POLICY.read(&obj) else {
        return;
    };
    let Spec::NetworkPolicy(p) = &read else {
        panic!("a NetworkPolicy reads as one");
    };
    let stored = Stored {
        spec: read.clone(),
        source: "fuzz".into(),
        id: 1,
    };
    let kept = NETWORK_POLICY.to_object(&key, &stored);
    let (key2, again) = NETWORK_POLICY
        .read(&kept)
        .unwrap_or_else(|e| panic!("{kept} as kept does not read again: {e}"));
    assert_eq!((key2, &again), (key.clone(), &read), "{kept}");
    let _ = NETWORK_POLICY.cells(&key, &stored);
    let listed = spec
        .get("policyTypes")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if !listed {
        assert!(p.policy_types.ingress, "{spec}");
    }
    for rule in p.ingress.iter().chain(&p.egress) {
        if let Peers::Only(peers) = &rule.peers {
            assert!(!peers.is_empty());
            for peer in peers {
                if let Peer::IpBlock(b) = peer {
                    for e in &b.except {
                        let inside = match (b.cidr, *e) {
                            (IpNet::V4(c), IpNet::V4(x)) => {
                                c.contains(x.network()) && x.prefix() > c.prefix()
                            }
                            (IpNet::V6 { .. }, IpNet::V6 { .. }) => true,
                            _ => false,
                        };
                        assert!(inside, "{spec}");
                    }
                }
            }
        }
        if let Ports::Only(ports) = &rule.ports {
            assert!(!ports.is_empty());
            for port in ports {
                if let PortMatch::Range { first, last } = port.port {
                    assert!(first >= 1 && last >= first, "{spec}");
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    check_selector(&v);
    check_policy(&v);
    // A selector inside the input, where a policy has one.
    if let Some(s) = v.get("podSelector") {
        check_selector(s);
    }
});
