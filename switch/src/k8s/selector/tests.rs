use super::*;
use proptest::prelude::*;

fn sel(v: Value) -> LabelSelector {
    LabelSelector::read(Some(&v), "s")
        .unwrap_or_else(|e| panic!("{v}: {e}"))
        .expect("present")
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The objects of the "Labels and Selectors" page's examples.
fn objects() -> Vec<(&'static str, Labels)> {
    vec![
        (
            "a",
            labels(&[("environment", "production"), ("tier", "frontend")]),
        ),
        (
            "b",
            labels(&[
                ("environment", "qa"),
                ("tier", "backend"),
                ("partition", "customerA"),
            ]),
        ),
        ("c", labels(&[("environment", "dev")])),
        ("d", labels(&[])),
        ("e", labels(&[("partition", ""), ("tier", "cache")])),
    ]
}

#[test]
fn selector_semantics_of_the_kubernetes_docs() {
    let table: &[(Value, &str, &[&str])] = &[
        // `environment = production`
        (
            json!({ "matchLabels": { "environment": "production" } }),
            "environment=production",
            &["a"],
        ),
        // `environment in (production, qa)`
        (
            json!({ "matchExpressions": [
                { "key": "environment", "operator": "In", "values": ["production", "qa"] }] }),
            "environment in (production,qa)",
            &["a", "b"],
        ),
        // `tier notin (frontend, backend)`: other values, and no `tier` at all.
        (
            json!({ "matchExpressions": [
                { "key": "tier", "operator": "NotIn", "values": ["frontend", "backend"] }] }),
            "tier notin (backend,frontend)",
            &["c", "d", "e"],
        ),
        // `partition`: the key, whatever its value (empty included).
        (
            json!({ "matchExpressions": [{ "key": "partition", "operator": "Exists" }] }),
            "partition",
            &["b", "e"],
        ),
        // `!partition`
        (
            json!({ "matchExpressions": [{ "key": "partition", "operator": "DoesNotExist" }] }),
            "!partition",
            &["a", "c", "d"],
        ),
        // `partition,environment notin (qa)`: ANDed.
        (
            json!({ "matchExpressions": [
                { "key": "partition", "operator": "Exists" },
                { "key": "environment", "operator": "NotIn", "values": ["qa"] }] }),
            "environment notin (qa),partition",
            &["e"],
        ),
        // matchLabels and matchExpressions ANDed.
        (
            json!({ "matchLabels": { "environment": "qa" },
                    "matchExpressions": [{ "key": "tier", "operator": "In", "values": ["backend"] }] }),
            "environment=qa,tier in (backend)",
            &["b"],
        ),
        // An empty value is a value: `In [""]` is the key with an empty value.
        (
            json!({ "matchExpressions": [{ "key": "partition", "operator": "In", "values": [""] }] }),
            "partition in ()",
            &["e"],
        ),
        // Empty: everything; so are empty lists and maps, and nulls.
        (json!({}), "", &["a", "b", "c", "d", "e"]),
        (
            json!({ "matchLabels": {}, "matchExpressions": [] }),
            "",
            &["a", "b", "c", "d", "e"],
        ),
        (
            json!({ "matchLabels": null, "matchExpressions": null }),
            "",
            &["a", "b", "c", "d", "e"],
        ),
    ];
    for (v, text, want) in table {
        let s = sel(v.clone());
        let got: Vec<&str> = objects()
            .into_iter()
            .filter(|(_, l)| s.matches(l))
            .map(|(n, _)| n)
            .collect();
        assert_eq!(&got, want, "{v}");
        assert_eq!(s.to_string(), *text, "{v}");
        assert_eq!(
            LabelSelector::read(Some(&s.to_value()), "s").unwrap(),
            Some(s.clone()),
            "{v}"
        );
    }
}

#[test]
fn an_absent_selector_is_none_for_the_caller_to_interpret() {
    assert_eq!(LabelSelector::read(None, "s"), Ok(None));
    assert_eq!(LabelSelector::read(Some(&Value::Null), "s"), Ok(None));
    assert!(LabelSelector::everything().selects_everything());
    assert_eq!(LabelSelector::everything().to_value(), json!({}));
}

#[test]
fn invalid_selectors_are_refused_naming_the_field() {
    let bad = |v: Value| {
        LabelSelector::read(Some(&v), "spec.podSelector")
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        bad(json!({ "matchExpressions": [{ "key": "app", "operator": "Is", "values": ["x"] }] })),
        "spec.podSelector.matchExpressions[0].operator: Invalid value: \"Is\": not a valid \
         selector operator"
    );
    assert_eq!(
        bad(json!({ "matchExpressions": [{ "key": "app", "operator": "in", "values": ["x"] }] })),
        "spec.podSelector.matchExpressions[0].operator: Invalid value: \"in\": not a valid \
         selector operator"
    );
    assert_eq!(
        bad(json!({ "matchExpressions": [
            { "key": "app", "operator": "Exists" },
            { "key": "app", "operator": "In", "values": [] }] })),
        "spec.podSelector.matchExpressions[1].values: Required value: must be specified when \
         `operator` is 'In' or 'NotIn'"
    );
    assert_eq!(
        bad(json!({ "matchExpressions": [{ "key": "app", "operator": "NotIn" }] })),
        "spec.podSelector.matchExpressions[0].values: Required value: must be specified when \
         `operator` is 'In' or 'NotIn'"
    );
    assert_eq!(
        bad(
            json!({ "matchExpressions": [{ "key": "app", "operator": "Exists", "values": ["x"] }] })
        ),
        "spec.podSelector.matchExpressions[0].values: Forbidden: may not be specified when \
         `operator` is 'Exists' or 'DoesNotExist'"
    );
    assert!(
        bad(json!({ "matchExpressions": [{ "operator": "Exists" }] })).starts_with(
            "spec.podSelector.matchExpressions[0].key: Invalid value: \"\": name part must be \
             non-empty"
        )
    );
    assert!(
        bad(json!({ "matchExpressions": [{ "key": "a b", "operator": "DoesNotExist" }] }))
            .starts_with("spec.podSelector.matchExpressions[0].key: Invalid value: \"a b\": name part must consist")
    );
    assert!(
        bad(json!({ "matchExpressions": [{ "key": "a", "operator": "In", "values": ["ok", "-x"] }] }))
            .starts_with("spec.podSelector.matchExpressions[0].values[1]: Invalid value: \"-x\": a valid label")
    );
    assert!(
        bad(json!({ "matchLabels": { "app": "v".repeat(64) } })).starts_with(&format!(
            "spec.podSelector.matchLabels: Invalid value: \"{}\": must be no more than 63 \
             characters",
            "v".repeat(64)
        ))
    );
    assert!(
        bad(json!({ "matchLabels": { "Example.com/app": "x" } })).starts_with(
            "spec.podSelector.matchLabels: Invalid value: \"Example.com/app\": prefix part"
        )
    );
    // A mistyped field would select everything: refused.
    let e = bad(json!({ "matchLabel": { "app": "web" } }));
    assert!(
        e.starts_with("spec.podSelector.matchLabel: unknown field"),
        "{e}"
    );
    let e =
        bad(json!({ "matchExpressions": [{ "key": "a", "operator": "Exists", "value": ["x"] }] }));
    assert!(
        e.starts_with("spec.podSelector.matchExpressions[0].value: unknown field"),
        "{e}"
    );
    // Types as the API decodes them.
    assert_eq!(
        bad(json!({ "matchLabels": { "version": 2 } })),
        "spec.podSelector.matchLabels.version: Invalid value: must be a string, not a number"
    );
    assert_eq!(
        bad(json!({ "matchExpressions": { "key": "a" } })),
        "spec.podSelector.matchExpressions: Invalid value: must be a list, not an object"
    );
    assert_eq!(
        bad(json!(["app"])),
        "spec.podSelector: Invalid value: must be an object, not a list"
    );
    assert_eq!(
        bad(json!({ "matchExpressions": [null] })),
        "spec.podSelector.matchExpressions[0].operator: Invalid value: \"\": not a valid \
         selector operator"
    );
}

#[test]
fn required_label_names_the_narrowest_label() {
    let s = sel(json!({ "matchExpressions": [
        { "key": "a", "operator": "In", "values": ["1", "2", "3"] },
        { "key": "b", "operator": "In", "values": ["1", "2"] },
        { "key": "c", "operator": "Exists" }] }));
    assert_eq!(s.required_label(), Some(("b", vec!["1", "2"])));
    let s = sel(json!({ "matchLabels": { "app": "web" },
                        "matchExpressions": [{ "key": "b", "operator": "In", "values": ["1"] }] }));
    assert_eq!(s.required_label(), Some(("app", vec!["web"])));
    for none in [
        json!({}),
        json!({ "matchExpressions": [{ "key": "a", "operator": "NotIn", "values": ["1"] }] }),
        json!({ "matchExpressions": [{ "key": "a", "operator": "Exists" }] }),
    ] {
        assert_eq!(sel(none.clone()).required_label(), None, "{none}");
    }
}

const KEYS: &[&str] = &["app", "tier", "x.io/env", "k"];
const VALUES: &[&str] = &["", "a", "b", "web"];

fn key() -> impl Strategy<Value = String> {
    proptest::sample::select(KEYS).prop_map(str::to_string)
}

fn value() -> impl Strategy<Value = String> {
    proptest::sample::select(VALUES).prop_map(str::to_string)
}

fn label_set() -> impl Strategy<Value = Labels> {
    proptest::collection::btree_map(key(), value(), 0..4)
}

fn requirement() -> impl Strategy<Value = Requirement> {
    (
        key(),
        proptest::sample::select(
            &[
                Operator::In,
                Operator::NotIn,
                Operator::Exists,
                Operator::DoesNotExist,
            ][..],
        ),
        proptest::collection::btree_set(value(), 1..3),
    )
        .prop_map(|(key, operator, values)| Requirement {
            key,
            operator,
            values: if operator.takes_values() {
                values
            } else {
                BTreeSet::new()
            },
        })
}

fn selector() -> impl Strategy<Value = LabelSelector> {
    (
        proptest::collection::btree_map(key(), value(), 0..3),
        proptest::collection::vec(requirement(), 0..3),
    )
        .prop_map(|(match_labels, match_expressions)| LabelSelector {
            match_labels,
            match_expressions,
        })
}

fn only(r: Requirement) -> LabelSelector {
    LabelSelector {
        match_labels: Labels::new(),
        match_expressions: vec![r],
    }
}

proptest! {
    /// What `get -o yaml` and the state file hold reads back as the same selector.
    #[test]
    fn selectors_read_back_as_written(s in selector()) {
        prop_assert_eq!(LabelSelector::read(Some(&s.to_value()), "s").unwrap(), Some(s));
    }

    /// A selector is the AND of its parts; `matchLabels` k: v is `k In (v)`; `NotIn` is
    /// the negation of `In`, `DoesNotExist` of `Exists`; `In` implies `Exists`.
    #[test]
    fn selectors_are_the_conjunction_of_their_requirements(s in selector(), l in label_set()) {
        let mut parts: Vec<LabelSelector> = s.match_expressions.iter().cloned().map(only).collect();
        for (k, v) in &s.match_labels {
            let as_in = only(Requirement {
                key: k.clone(),
                operator: Operator::In,
                values: [v.clone()].into(),
            });
            let mut one = LabelSelector::everything();
            one.match_labels.insert(k.clone(), v.clone());
            prop_assert_eq!(one.matches(&l), as_in.matches(&l));
            parts.push(one);
        }
        prop_assert_eq!(s.matches(&l), parts.iter().all(|p| p.matches(&l)));
        for r in &s.match_expressions {
            let flipped = |operator| Requirement { operator, ..r.clone() };
            match r.operator {
                Operator::In => {
                    prop_assert_eq!(r.matches(&l), !flipped(Operator::NotIn).matches(&l));
                    if r.matches(&l) {
                        prop_assert!(l.contains_key(&r.key));
                    }
                }
                Operator::Exists => {
                    prop_assert_eq!(r.matches(&l), !flipped(Operator::DoesNotExist).matches(&l));
                }
                _ => {}
            }
        }
    }

    /// The label an index is searched by is one every selected object carries, with
    /// one of the values given.
    #[test]
    fn the_required_label_is_carried_by_every_match(s in selector(), l in label_set()) {
        if let (true, Some((k, values))) = (s.matches(&l), s.required_label()) {
            let v = l.get(k).map(String::as_str);
            prop_assert!(v.is_some_and(|v| values.contains(&v)), "{:?} {:?}", s, l);
        }
    }
}
