//! The store's indexes of Pods and namespaces against a scan of every object, through
//! any order of Pods and Namespaces coming, changing and going.

use super::namespace::{NAMESPACE_KIND, Namespace, default_labels};
use super::pod::{POD_KIND, Phase, Pod};
use super::selector::{LabelSelector, Operator, Requirement};
use super::*;
use proptest::prelude::*;

fn pod_key(ns: &str, name: &str) -> ObjectKey {
    ObjectKey {
        kind: POD_KIND,
        namespace: ns.into(),
        name: name.into(),
    }
}

fn put_pod(o: &mut Objects, key: ObjectKey, pod: Option<Pod>) {
    let id = o
        .get(&key)
        .map(|s| s.id)
        .or_else(|| o.free_id(POD_KIND))
        .unwrap();
    o.put(
        key,
        pod.map(|p| Stored {
            spec: Spec::Pod(p),
            source: "test".into(),
            id,
        }),
    );
}

fn pod(labels: &[(&str, &str)], ip: Option<[u8; 4]>) -> Pod {
    Pod {
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ip: ip.map(Ipv4Addr::from),
        host_network: false,
        node_name: None,
        phase: Phase::Running,
        containers: Vec::new(),
    }
}

fn ip(o: &Objects, a: [u8; 4]) -> Vec<String> {
    names(o.pods_with_ip(Ipv4Addr::from(a)))
}

fn names<'a>(keys: impl IntoIterator<Item = &'a ObjectKey>) -> Vec<String> {
    let mut v: Vec<String> = keys.into_iter().map(|k| k.to_string()).collect();
    v.sort();
    v
}

#[test]
fn pods_by_address_label_and_namespace() {
    let mut o = Objects::default();
    put_pod(
        &mut o,
        pod_key("a", "web-0"),
        Some(pod(&[("app", "web")], Some([10, 244, 1, 2]))),
    );
    put_pod(
        &mut o,
        pod_key("b", "web-1"),
        Some(pod(&[("app", "web"), ("tier", "x")], Some([10, 244, 1, 3]))),
    );
    put_pod(
        &mut o,
        pod_key("b", "db"),
        Some(pod(&[("app", "db")], None)),
    );
    assert_eq!(ip(&o, [10, 244, 1, 2]), ["pod/a/web-0"]);
    assert!(ip(&o, [10, 244, 1, 9]).is_empty());
    assert_eq!(
        names(o.pods_labeled("app", "web")),
        ["pod/a/web-0", "pod/b/web-1"]
    );
    assert_eq!(
        names(o.pods_in("b").map(|(k, _)| k)),
        ["pod/b/db", "pod/b/web-1"]
    );
    // A Pod that ends gives its address up; the next Pod may take it.
    let mut ended = pod(&[("app", "web")], Some([10, 244, 1, 2]));
    ended.phase = Phase::Succeeded;
    put_pod(&mut o, pod_key("a", "web-0"), Some(ended));
    assert!(ip(&o, [10, 244, 1, 2]).is_empty());
    put_pod(
        &mut o,
        pod_key("a", "job"),
        Some(pod(&[], Some([10, 244, 1, 2]))),
    );
    assert_eq!(ip(&o, [10, 244, 1, 2]), ["pod/a/job"]);
    // Host-network Pods are never known by the node's address.
    let mut host = pod(&[("app", "agent")], Some([192, 168, 1, 1]));
    host.host_network = true;
    put_pod(&mut o, pod_key("kube-system", "agent"), Some(host));
    assert!(ip(&o, [192, 168, 1, 1]).is_empty());
    // Labels change: the index follows.
    put_pod(
        &mut o,
        pod_key("b", "web-1"),
        Some(pod(&[("app", "api")], Some([10, 244, 1, 3]))),
    );
    assert_eq!(names(o.pods_labeled("app", "web")), ["pod/a/web-0"]);
    assert_eq!(names(o.pods_labeled("app", "api")), ["pod/b/web-1"]);
    put_pod(&mut o, pod_key("b", "web-1"), None);
    assert!(o.pods_labeled("app", "api").next().is_none());
    assert!(ip(&o, [10, 244, 1, 3]).is_empty());
    assert!(
        !o.pod_labels["app"].contains_key("api"),
        "emptied entries go"
    );
}

#[test]
fn namespaces_known_by_object_or_by_their_pods() {
    let mut o = Objects::default();
    put_pod(&mut o, pod_key("b", "x"), Some(pod(&[], None)));
    put_pod(&mut o, pod_key("b-c", "x"), Some(pod(&[], None)));
    put_pod(&mut o, pod_key("c", "x"), Some(pod(&[], None)));
    let mut labels = default_labels("a");
    labels.insert("team".into(), "web".into());
    o.put(
        namespace::key("a"),
        Some(Stored {
            spec: Spec::Namespace(Namespace { labels }),
            source: "test".into(),
            id: 1,
        }),
    );
    assert_eq!(
        o.namespace_names().into_iter().collect::<Vec<_>>(),
        ["a", "b", "b-c", "c"]
    );
    assert_eq!(o.namespace_labels("a")["team"], "web");
    // Not known as an object: the label every namespace has.
    assert_eq!(*o.namespace_labels("b"), default_labels("b"));
    assert_eq!(o.of_kind(NAMESPACE_KIND, None).count(), 1);
}

const NAMESPACES: &[&str] = &["a", "b", "b-c"];
const KEYS: &[&str] = &["app", "tier"];
const VALUES: &[&str] = &["web", "db", ""];

#[derive(Clone, Debug)]
enum Op {
    Put {
        ns: usize,
        name: u8,
        labels: Vec<(usize, usize)>,
        ip: Option<u8>,
        host_network: bool,
        ended: bool,
    },
    Remove {
        ns: usize,
        name: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (
            0..NAMESPACES.len(),
            0u8..4,
            proptest::collection::vec((0..KEYS.len(), 0..VALUES.len()), 0..3),
            proptest::option::of(0u8..4),
            proptest::bool::weighted(0.1),
            proptest::bool::weighted(0.2),
        )
            .prop_map(|(ns, name, labels, ip, host_network, ended)| Op::Put {
                ns,
                name,
                labels,
                ip,
                host_network,
                ended
            }),
        1 => (0..NAMESPACES.len(), 0u8..4).prop_map(|(ns, name)| Op::Remove { ns, name }),
    ]
}

fn selector() -> impl Strategy<Value = LabelSelector> {
    let req = (
        0..KEYS.len(),
        0usize..4,
        proptest::collection::btree_set(0..VALUES.len(), 1..3),
    )
        .prop_map(|(k, op, values)| {
            let operator = [
                Operator::In,
                Operator::NotIn,
                Operator::Exists,
                Operator::DoesNotExist,
            ][op];
            Requirement {
                key: KEYS[k].into(),
                operator,
                values: if operator.takes_values() {
                    values.into_iter().map(|v| VALUES[v].to_string()).collect()
                } else {
                    Default::default()
                },
            }
        });
    (
        proptest::collection::btree_map(0..KEYS.len(), 0..VALUES.len(), 0..2),
        proptest::collection::vec(req, 0..3),
    )
        .prop_map(|(labels, match_expressions)| LabelSelector {
            match_labels: labels
                .into_iter()
                .map(|(k, v)| (KEYS[k].to_string(), VALUES[v].to_string()))
                .collect(),
            match_expressions,
        })
}

proptest! {
    /// Whatever Pods come, change and go, each index answers what a scan of every Pod
    /// answers.
    #[test]
    fn indexes_agree_with_a_scan(ops in proptest::collection::vec(op(), 1..40), sel in selector()) {
        let mut o = Objects::default();
        for op in ops {
            match op {
                Op::Put { ns, name, labels, ip, host_network, ended } => {
                    let mut p = pod(&[], ip.map(|i| [10, 0, 0, i]));
                    p.labels = labels.iter().map(|&(k, v)| (KEYS[k].to_string(), VALUES[v].to_string())).collect();
                    p.host_network = host_network;
                    if ended {
                        p.phase = Phase::Failed;
                    }
                    put_pod(&mut o, pod_key(NAMESPACES[ns], &format!("p{name}")), Some(p));
                }
                Op::Remove { ns, name } => put_pod(&mut o, pod_key(NAMESPACES[ns], &format!("p{name}")), None),
            }
            let pods: Vec<(&ObjectKey, &Pod)> = o
                .iter()
                .filter_map(|(k, s)| Some((k, pod::pod_of(&s.spec)?)))
                .collect();
            for i in 0..4u8 {
                let ip = Ipv4Addr::new(10, 0, 0, i);
                let want = names(pods.iter().filter(|(_, p)| p.policy_ip() == Some(ip)).map(|(k, _)| *k));
                prop_assert_eq!(names(o.pods_with_ip(ip)), want);
            }
            for k in KEYS {
                for v in VALUES {
                    let want = names(pods.iter().filter(|(_, p)| p.labels.get(*k).map(String::as_str) == Some(*v)).map(|(k, _)| *k));
                    prop_assert_eq!(names(o.pods_labeled(k, v)), want);
                }
            }
            let everywhere: Vec<&ObjectKey> = pods.iter().filter(|(_, p)| sel.matches(&p.labels)).map(|(k, _)| *k).collect();
            let got: Vec<&ObjectKey> = o.select_pods(None, &sel).into_iter().map(|(k, _)| k).collect();
            prop_assert_eq!(got, everywhere.clone(), "{}", sel);
            for ns in NAMESPACES {
                let want: Vec<&ObjectKey> = everywhere.iter().copied().filter(|k| k.namespace == *ns).collect();
                let got: Vec<&ObjectKey> = o.select_pods(Some(ns), &sel).into_iter().map(|(k, _)| k).collect();
                prop_assert_eq!(got, want);
            }
            let mut with_pods: Vec<&str> = pods.iter().map(|(k, _)| k.namespace.as_str()).collect();
            with_pods.dedup();
            prop_assert_eq!(o.namespace_names().into_iter().collect::<Vec<_>>(), with_pods);
        }
    }
}
