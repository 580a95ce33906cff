use super::*;
use crate::k8s::Labels;
use crate::k8s::selector::{Operator, Requirement};
use vswitch_proto::k8s::load_documents;

/// `kubectl get networkpolicy -n shop web -o yaml`: what `kubectl apply` left there
/// (the last applied configuration, managed fields, generation) is ignored.
const POLICY_YAML: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: |
      {"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"annotations":{},"name":"web","namespace":"shop"}}
  creationTimestamp: "2024-05-01T10:00:00Z"
  generation: 3
  managedFields:
  - apiVersion: networking.k8s.io/v1
    fieldsType: FieldsV1
    fieldsV1:
      f:spec:
        f:ingress: {}
        f:podSelector: {}
        f:policyTypes: {}
    manager: kubectl-client-side-apply
    operation: Update
    time: "2024-05-01T10:00:00Z"
  name: web
  namespace: shop
  resourceVersion: "51234"
  uid: 3a1f6c2e-9b8d-4e7f-a6c5-b4d3e2f1a0b9
spec:
  podSelector:
    matchLabels:
      app: web
  policyTypes:
  - Ingress
  - Egress
  ingress:
  - from:
    - namespaceSelector:
        matchLabels:
          team: frontend
      podSelector:
        matchExpressions:
        - key: role
          operator: In
          values: [client, admin]
    - podSelector:
        matchLabels:
          app: cache
    - namespaceSelector:
        matchExpressions:
        - key: kubernetes.io/metadata.name
          operator: NotIn
          values: [kube-system]
    - ipBlock:
        cidr: 172.17.0.0/16
        except:
        - 172.17.1.0/24
    ports:
    - protocol: TCP
      port: 80
    - port: http-alt
    - protocol: UDP
      port: 32000
      endPort: 32768
  - {}
  egress:
  - to:
    - namespaceSelector: {}
      podSelector:
        matchLabels:
          k8s-app: kube-dns
    ports:
    - protocol: UDP
      port: 53
    - protocol: SCTP
  - to:
    - ipBlock:
        cidr: fd00:10::/64
    - ipBlock:
        cidr: 10.0.0.0/8
        except: [10.1.0.0/16, 10.2.3.0/24]
"#;

fn manifest() -> Value {
    load_documents("np.yaml", POLICY_YAML)
        .unwrap()
        .remove(0)
        .object
}

fn read(v: &Value) -> NetworkPolicy {
    read_network_policy(v)
        .unwrap_or_else(|e| panic!("{v}: {e}"))
        .1
}

fn policy(spec: Value) -> NetworkPolicy {
    read(&json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": { "name": "p", "namespace": "x" },
        "spec": spec,
    }))
}

fn refused(spec: Value) -> String {
    let obj = json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": { "name": "p", "namespace": "x" },
        "spec": spec,
    });
    match read_network_policy(&obj) {
        Ok((_, p)) => panic!("{obj} read as {p:?}"),
        Err(e) => e.to_string(),
    }
}

fn labels(pairs: &[(&str, &str)]) -> LabelSelector {
    LabelSelector {
        match_labels: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        match_expressions: Vec::new(),
    }
}

fn v4(s: &str) -> IpNet {
    IpNet::V4(s.parse().unwrap())
}

fn stored(p: NetworkPolicy) -> Stored {
    Stored {
        spec: Spec::NetworkPolicy(p),
        source: "manifest".into(),
        id: 2,
    }
}

#[test]
fn a_policy_reads_as_kubectl_prints_it() {
    let (key, p) = read_network_policy(&manifest()).unwrap();
    assert_eq!(key.to_string(), "networkpolicy/shop/web");
    assert_eq!(p.pod_selector, labels(&[("app", "web")]));
    assert_eq!(
        p.policy_types,
        PolicyTypes {
            ingress: true,
            egress: true
        }
    );
    let tcp = |port| PolicyPort {
        protocol: Protocol::Tcp,
        port,
    };
    assert_eq!(
        p.ingress,
        vec![
            Rule {
                peers: Peers::Only(vec![
                    // Both selectors in one peer: the Pods of those namespaces (AND).
                    Peer::Pods {
                        namespaces: Namespaces::Matching(labels(&[("team", "frontend")])),
                        pods: LabelSelector {
                            match_labels: Labels::new(),
                            match_expressions: vec![Requirement {
                                key: "role".into(),
                                operator: Operator::In,
                                values: ["admin".to_string(), "client".to_string()].into(),
                            }],
                        },
                    },
                    // A podSelector alone: the policy's namespace.
                    Peer::Pods {
                        namespaces: Namespaces::Policy,
                        pods: labels(&[("app", "cache")]),
                    },
                    // A namespaceSelector alone: every Pod there.
                    Peer::Pods {
                        namespaces: Namespaces::Matching(LabelSelector {
                            match_labels: Labels::new(),
                            match_expressions: vec![Requirement {
                                key: "kubernetes.io/metadata.name".into(),
                                operator: Operator::NotIn,
                                values: ["kube-system".to_string()].into(),
                            }],
                        }),
                        pods: LabelSelector::everything(),
                    },
                    Peer::IpBlock(IpBlock {
                        cidr: v4("172.17.0.0/16"),
                        except: vec![v4("172.17.1.0/24")],
                    }),
                ]),
                ports: Ports::Only(vec![
                    tcp(PortMatch::Range {
                        first: 80,
                        last: 80
                    }),
                    // TCP when the protocol is not given.
                    tcp(PortMatch::Named("http-alt".into())),
                    PolicyPort {
                        protocol: Protocol::Udp,
                        port: PortMatch::Range {
                            first: 32000,
                            last: 32768
                        },
                    },
                ]),
            },
            // `{}`: from anywhere, on any port.
            Rule {
                peers: Peers::Any,
                ports: Ports::Any,
            },
        ]
    );
    assert_eq!(
        p.egress[0],
        Rule {
            peers: Peers::Only(vec![Peer::Pods {
                namespaces: Namespaces::Matching(LabelSelector::everything()),
                pods: labels(&[("k8s-app", "kube-dns")]),
            }]),
            ports: Ports::Only(vec![
                PolicyPort {
                    protocol: Protocol::Udp,
                    port: PortMatch::Range {
                        first: 53,
                        last: 53
                    },
                },
                // A protocol without a port: every SCTP port.
                PolicyPort {
                    protocol: Protocol::Sctp,
                    port: PortMatch::Any,
                },
            ]),
        }
    );
    // The IPv6 block is kept (a rule whose peers were all IPv6 must not become a rule of
    // every peer), and matches no IPv4 address.
    let Peers::Only(peers) = &p.egress[1].peers else {
        panic!()
    };
    let Peer::IpBlock(b6) = &peers[0] else {
        panic!()
    };
    assert_eq!(b6.cidr.to_string(), "fd00:10::/64");
    assert_eq!(b6.ipv4(), None);
    assert!(!b6.contains(Ipv4Addr::new(10, 0, 0, 1)));
    let Peer::IpBlock(b4) = &peers[1] else {
        panic!()
    };
    for (ip, inside) in [
        ([10, 0, 0, 1], true),
        ([10, 1, 2, 3], false),
        ([10, 2, 3, 4], false),
        ([10, 2, 4, 4], true),
        ([11, 0, 0, 1], false),
    ] {
        assert_eq!(b4.contains(Ipv4Addr::from(ip)), inside, "{ip:?}");
    }
    // Kept as the switch keeps it, read again: the same.
    let s = stored(p.clone());
    let kept = NETWORK_POLICY.to_object(&key, &s);
    assert_eq!(read_network_policy(&kept).unwrap(), (key.clone(), p));
    assert_eq!(
        NETWORK_POLICY.cells(&key, &s),
        ["app=web", "0", "0", "0", "Ingress,Egress", "2", "2"]
    );
    assert_eq!(NETWORK_POLICY.columns().len(), 7);
}

#[test]
fn json_reads_as_yaml_does() {
    // `kubectl get -o json` of the same object.
    let json_text = serde_json::to_string_pretty(&manifest()).unwrap();
    let from_json = load_documents("np.json", &json_text)
        .unwrap()
        .remove(0)
        .object;
    assert_eq!(read(&from_json), read(&manifest()));
}

#[test]
fn policy_types_default_as_the_api_defaults_them() {
    let types = |spec: Value| policy(spec).policy_types;
    let t = |ingress, egress| PolicyTypes { ingress, egress };
    let egress_rule = json!([{ "to": [{ "podSelector": {} }] }]);
    // Not given: Ingress, and Egress when there are egress rules.
    assert_eq!(types(json!({ "podSelector": {} })), t(true, false));
    assert_eq!(types(json!({})), t(true, false));
    assert_eq!(
        types(json!({ "podSelector": {}, "egress": egress_rule })),
        t(true, true)
    );
    assert_eq!(
        types(json!({ "podSelector": {}, "egress": [{}] })),
        t(true, true)
    );
    // An empty egress list is no egress rule.
    assert_eq!(
        types(json!({ "podSelector": {}, "egress": [] })),
        t(true, false)
    );
    // An empty list is defaulted too.
    assert_eq!(
        types(json!({ "policyTypes": [], "egress": egress_rule })),
        t(true, true)
    );
    // A list given is respected.
    assert_eq!(types(json!({ "policyTypes": ["Egress"] })), t(false, true));
    assert_eq!(
        types(json!({ "policyTypes": ["Ingress"], "egress": egress_rule })),
        t(true, false)
    );
    assert_eq!(
        types(json!({ "policyTypes": ["Egress", "Ingress"] })),
        t(true, true)
    );
    assert_eq!(
        types(json!({ "policyTypes": ["Ingress", "Ingress"] })),
        t(true, false)
    );
}

#[test]
fn missing_and_empty_rules_mean_what_the_api_says() {
    // Isolated for ingress, no rule: nothing may come in. `ingress: []` is the same.
    for spec in [
        json!({ "podSelector": {} }),
        json!({ "podSelector": {}, "ingress": [] }),
        json!({ "podSelector": {}, "ingress": null }),
        json!({ "podSelector": {}, "policyTypes": ["Ingress"], "ingress": [] }),
    ] {
        let p = policy(spec.clone());
        assert_eq!(p.ingress_rules(), Some(&[][..]), "{spec}");
        assert_eq!(p.egress_rules(), None, "{spec}");
    }
    // Egress only: the ingress rules do nothing.
    let p = policy(json!({ "policyTypes": ["Egress"], "ingress": [{}] }));
    assert_eq!(p.ingress_rules(), None);
    assert_eq!(p.egress_rules(), Some(&[][..]));
    assert_eq!(p.ingress.len(), 1);
    // A rule without peers, with an empty list of them, or `null`: from anywhere; without
    // ports or with an empty list of them: on every port.
    let any = Rule {
        peers: Peers::Any,
        ports: Ports::Any,
    };
    for rule in [
        json!({}),
        json!({ "from": [] }),
        json!({ "from": [], "ports": [] }),
        json!({ "from": null, "ports": null }),
        json!(null),
    ] {
        let p = policy(json!({ "ingress": [rule.clone()] }));
        assert_eq!(p.ingress_rules(), Some(&[any.clone()][..]), "{rule}");
    }
    let p = policy(json!({ "egress": [{ "ports": [{ "port": 53, "protocol": "UDP" }] }] }));
    assert_eq!(p.egress[0].peers, Peers::Any);
    // A port entry with nothing set is every TCP port.
    let p = policy(json!({ "ingress": [{ "ports": [{}] }] }));
    assert_eq!(
        p.ingress[0].ports,
        Ports::Only(vec![PolicyPort {
            protocol: Protocol::Tcp,
            port: PortMatch::Any
        }])
    );
}

#[test]
fn peers_as_the_api_defines_them() {
    let peer = |v: Value| {
        let p = policy(json!({ "ingress": [{ "from": [v] }] }));
        let Peers::Only(mut peers) = p.ingress[0].peers.clone() else {
            panic!()
        };
        assert_eq!(peers.len(), 1);
        peers.remove(0)
    };
    // `podSelector: {}`: every Pod of the policy's namespace.
    assert_eq!(
        peer(json!({ "podSelector": {} })),
        Peer::Pods {
            namespaces: Namespaces::Policy,
            pods: LabelSelector::everything()
        }
    );
    // `namespaceSelector: {}`: every Pod of every namespace.
    assert_eq!(
        peer(json!({ "namespaceSelector": {} })),
        Peer::Pods {
            namespaces: Namespaces::Matching(LabelSelector::everything()),
            pods: LabelSelector::everything()
        }
    );
    // Both: AND; and they read back as written.
    let both = json!({ "namespaceSelector": { "matchLabels": { "a": "1" } },
                       "podSelector": { "matchLabels": { "b": "2" } } });
    let p = peer(both.clone());
    assert_eq!(
        p,
        Peer::Pods {
            namespaces: Namespaces::Matching(labels(&[("a", "1")])),
            pods: labels(&[("b", "2")])
        }
    );
    assert_eq!(peer_value(&p), both);
    // Separate peers: OR (two entries).
    let p = policy(json!({ "ingress": [{ "from": [
        { "namespaceSelector": { "matchLabels": { "a": "1" } } },
        { "podSelector": { "matchLabels": { "b": "2" } } }] }] }));
    let Peers::Only(peers) = &p.ingress[0].peers else {
        panic!()
    };
    assert_eq!(peers.len(), 2);
}

#[test]
fn invalid_policies_are_refused_naming_the_field_as_the_api_server_does() {
    let ipblock = |cidr: Value, except: Value| {
        refused(json!({ "ingress": [{}, { "from": [{ "podSelector": {} },
            { "ipBlock": { "cidr": cidr, "except": except } }] }] }))
    };
    assert_eq!(
        ipblock(json!(""), json!([])),
        "spec.ingress[1].from[1].ipBlock.cidr: Required value"
    );
    for bad in [
        "10.0.0.0",
        "10.0.0.0/33",
        "10.0.0/8",
        "x/8",
        "10.0.0.0/-1",
        "10.0.0.0/+8",
        "fd00::/129",
        "10.0.0.0/8/8",
    ] {
        assert_eq!(
            ipblock(json!(bad), json!([])),
            format!(
                "spec.ingress[1].from[1].ipBlock.cidr: Invalid value: \"{bad}\": must be a \
                 valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"
            ),
        );
    }
    for bad in ["010.0.0.0/8", "10.0.0.0/08"] {
        assert!(
            ipblock(json!(bad), json!([]))
                .ends_with("must not have leading 0s in IP or prefix length"),
            "{bad}"
        );
    }
    assert!(
        ipblock(json!("::ffff:10.0.0.0/104"), json!([]))
            .ends_with("must not have an IPv4-mapped IPv6 address")
    );
    for (cidr, good, except) in [
        ("10.1.0.0/16", "10.1.2.0/24", "10.2.0.0/24"),
        ("10.1.0.0/16", "10.1.2.0/24", "10.1.0.0/16"),
        ("10.1.0.0/16", "10.1.2.0/24", "10.0.0.0/8"),
        ("10.1.0.0/16", "10.1.2.0/24", "fd00::/64"),
        ("fd00::/64", "fd00::/80", "10.1.0.0/24"),
        ("fd00::/64", "fd00::/80", "fd01::/80"),
        ("fd00::/64", "fd00::/80", "fd00::/64"),
    ] {
        assert_eq!(
            ipblock(json!(cidr), json!([good, except])),
            format!(
                "spec.ingress[1].from[1].ipBlock.except[1]: Invalid value: \"{except}\": must \
                 be a strict subset of `cidr`"
            ),
            "{cidr} except {except}"
        );
    }
    assert!(ipblock(json!("10.1.0.0/16"), json!(["10.1.0.0/33"]))
        .starts_with("spec.ingress[1].from[1].ipBlock.except[0]: Invalid value: \"10.1.0.0/33\": must be a valid CIDR"));
    // Peers.
    assert_eq!(
        refused(json!({ "ingress": [{ "from": [{ "podSelector": {} }, {}] }] })),
        "spec.ingress[0].from[1]: Required value: must specify a peer"
    );
    assert_eq!(
        refused(
            json!({ "egress": [{ "to": [{ "ipBlock": { "cidr": "10.0.0.0/8" },
                                              "namespaceSelector": {} }] }] })
        ),
        "spec.egress[0].to[0]: Forbidden: may not specify both ipBlock and another peer"
    );
    assert_eq!(
        refused(
            json!({ "egress": [{ "to": [{ "namespaceSelector": { "matchExpressions": [
            { "key": "team", "operator": "Exists", "values": ["a"] }] } }] }] })
        ),
        "spec.egress[0].to[0].namespaceSelector.matchExpressions[0].values: Forbidden: may \
         not be specified when `operator` is 'Exists' or 'DoesNotExist'"
    );
    assert_eq!(
        refused(json!({ "podSelector": { "matchExpressions": [
            { "key": "app", "operator": "Equals", "values": ["a"] }] } })),
        "spec.podSelector.matchExpressions[0].operator: Invalid value: \"Equals\": not a valid \
         selector operator"
    );
    // Ports.
    let port = |p: Value| refused(json!({ "ingress": [{ "ports": [{ "port": 80 }, p] }] }));
    assert_eq!(
        port(json!({ "protocol": "ICMP" })),
        "spec.ingress[0].ports[1].protocol: Unsupported value: \"ICMP\": supported values: \
         \"TCP\", \"UDP\", \"SCTP\""
    );
    assert_eq!(
        port(json!({ "protocol": "tcp", "port": 80 })),
        "spec.ingress[0].ports[1].protocol: Unsupported value: \"tcp\": supported values: \
         \"TCP\", \"UDP\", \"SCTP\""
    );
    for n in [0, 65536, -1] {
        assert_eq!(
            port(json!({ "port": n })),
            format!(
                "spec.ingress[0].ports[1].port: Invalid value: {n}: must be between 1 and 65535, inclusive"
            )
        );
    }
    assert_eq!(
        port(json!({ "port": "80" })),
        "spec.ingress[0].ports[1].port: Invalid value: \"80\": must contain at least one \
         letter (a-z)"
    );
    assert_eq!(
        port(json!({ "port": "HTTP" })),
        "spec.ingress[0].ports[1].port: Invalid value: \"HTTP\": must contain only \
         alpha-numeric characters (a-z, 0-9), and hyphens (-)"
    );
    assert_eq!(
        port(json!({ "port": 8080, "endPort": 8000 })),
        "spec.ingress[0].ports[1].endPort: Invalid value: 8000: must be greater than or equal \
         to `port`"
    );
    assert_eq!(
        port(json!({ "port": 8080, "endPort": 65536 })),
        "spec.ingress[0].ports[1].endPort: Invalid value: 65536: must be between 1 and 65535, \
         inclusive"
    );
    assert_eq!(
        port(json!({ "port": "http", "endPort": 8000 })),
        "spec.ingress[0].ports[1].endPort: Invalid value: 8000: may not be specified when \
         `port` is non-numeric"
    );
    assert_eq!(
        port(json!({ "endPort": 8000 })),
        "spec.ingress[0].ports[1].endPort: Invalid value: 8000: may not be specified when \
         `port` is not specified"
    );
    // Ports are checked before peers, as the API server checks them.
    assert!(
        refused(json!({ "ingress": [{ "from": [{}], "ports": [{ "port": 0 }] }] }))
            .starts_with("spec.ingress[0].ports[0].port")
    );
    // Policy types.
    assert_eq!(
        refused(json!({ "policyTypes": ["Ingress", "Egress", "Ingress"] })),
        "spec.policyTypes: Invalid value: [\"Ingress\",\"Egress\",\"Ingress\"]: may not specify \
         more than two policyTypes"
    );
    assert_eq!(
        refused(json!({ "policyTypes": ["ingress"] })),
        "spec.policyTypes[0]: Unsupported value: \"ingress\": supported values: \"Ingress\", \
         \"Egress\""
    );
    // Fields the API does not have: a typo must not turn into "allow everything" or "deny
    // everything".
    for (spec, path) in [
        (json!({ "ingres": [] }), "spec.ingres"),
        (json!({ "podselector": {} }), "spec.podselector"),
        (
            json!({ "ingress": [{ "form": [] }] }),
            "spec.ingress[0].form",
        ),
        (json!({ "ingress": [{ "to": [] }] }), "spec.ingress[0].to"),
        (json!({ "egress": [{ "from": [] }] }), "spec.egress[0].from"),
        (
            json!({ "ingress": [{ "from": [{ "podSelector": {}, "namespace": "y" }] }] }),
            "spec.ingress[0].from[0].namespace",
        ),
        (
            json!({ "ingress": [{ "from": [{ "ipBlock": { "cidr": "10.0.0.0/8", "exclude": [] } }] }] }),
            "spec.ingress[0].from[0].ipBlock.exclude",
        ),
        (
            json!({ "ingress": [{ "ports": [{ "port": 80, "endport": 90 }] }] }),
            "spec.ingress[0].ports[0].endport",
        ),
        (
            json!({ "podSelector": { "matchLabel": { "app": "web" } } }),
            "spec.podSelector.matchLabel",
        ),
    ] {
        let e = refused(spec.clone());
        assert!(
            e.starts_with(&format!("{path}: unknown field")),
            "{spec}: {e}"
        );
    }
    let mut m = manifest();
    m["specs"] = json!({});
    let e = read_network_policy(&m).unwrap_err();
    assert_eq!(e.path, "specs");
    // Types.
    assert_eq!(
        refused(json!({ "ingress": { "from": [] } })),
        "spec.ingress: Invalid value: must be a list, not an object"
    );
    assert_eq!(
        refused(json!({ "policyTypes": "Ingress" })),
        "spec.policyTypes: Invalid value: must be a list, not a string"
    );
    assert_eq!(
        refused(
            json!({ "ingress": [{ "from": [{ "ipBlock": { "cidr": "10.0.0.0/8", "except": "10.1.0.0/16" } }] }] })
        ),
        "spec.ingress[0].from[0].ipBlock.except: Invalid value: must be a list, not a string"
    );
    // The name.
    let mut m = manifest();
    m["metadata"]["name"] = json!("Web");
    assert!(
        read_network_policy(&m)
            .unwrap_err()
            .to_string()
            .starts_with("metadata.name: Invalid value: \"Web\": a lowercase RFC 1123 subdomain")
    );
}

#[test]
fn ipv6_blocks_read_and_round_trip() {
    let p = policy(json!({ "egress": [{ "to": [{ "ipBlock": {
        "cidr": "FD00:0:0::/48", "except": ["fd00:0:0:1::/64"] } }] }] }));
    let Peers::Only(peers) = &p.egress[0].peers else {
        panic!()
    };
    let Peer::IpBlock(b) = &peers[0] else {
        panic!()
    };
    assert_eq!(b.cidr.to_string(), "fd00::/48");
    assert_eq!(b.except[0].to_string(), "fd00:0:0:1::/64");
    let key = ObjectKey {
        kind: NETWORK_POLICY_KIND,
        namespace: "x".into(),
        name: "p".into(),
    };
    let kept = NETWORK_POLICY.to_object(&key, &stored(p.clone()));
    assert_eq!(read(&kept), p);
    // `0.0.0.0/0` and `::/0`: everything of a family.
    let all = policy(
        json!({ "egress": [{ "to": [{ "ipBlock": { "cidr": "0.0.0.0/0",
        "except": ["10.0.0.0/8"] } }, { "ipBlock": { "cidr": "::/0" } }] }] }),
    );
    let Peers::Only(peers) = &all.egress[0].peers else {
        panic!()
    };
    let Peer::IpBlock(b) = &peers[0] else {
        panic!()
    };
    assert!(b.contains(Ipv4Addr::new(8, 8, 8, 8)) && !b.contains(Ipv4Addr::new(10, 9, 9, 9)));
}

#[test]
fn ports_read_back_as_written() {
    let p = policy(json!({ "ingress": [{ "ports": [
        { "port": 80, "endPort": 80 }, { "port": 1, "endPort": 65535, "protocol": "SCTP" },
        { "port": "metrics", "protocol": "UDP" }, { "protocol": "UDP" }] }] }));
    let Ports::Only(ports) = &p.ingress[0].ports else {
        panic!()
    };
    assert_eq!(
        ports[0].port,
        PortMatch::Range {
            first: 80,
            last: 80
        }
    );
    assert_eq!(
        ports[1].port,
        PortMatch::Range {
            first: 1,
            last: 65535
        }
    );
    assert_eq!(ports[2].port, PortMatch::Named("metrics".into()));
    assert_eq!(ports[3].port, PortMatch::Any);
    let key = ObjectKey {
        kind: NETWORK_POLICY_KIND,
        namespace: "x".into(),
        name: "p".into(),
    };
    let kept = NETWORK_POLICY.to_object(&key, &stored(p.clone()));
    assert_eq!(read(&kept), p);
}

#[test]
fn get_shows_the_pod_selector_as_kubectl_does() {
    let key = ObjectKey {
        kind: NETWORK_POLICY_KIND,
        namespace: "x".into(),
        name: "p".into(),
    };
    let cells = |spec: Value| NETWORK_POLICY.cells(&key, &stored(policy(spec)));
    assert_eq!(
        cells(json!({ "podSelector": {} })),
        ["<none>", "0", "0", "0", "Ingress", "0", "0"]
    );
    assert_eq!(
        cells(json!({ "podSelector": { "matchExpressions": [
            { "key": "tier", "operator": "NotIn", "values": ["db", "cache"] },
            { "key": "app", "operator": "Exists" }] },
            "egress": [{}] })),
        [
            "app,tier notin (cache,db)",
            "0",
            "0",
            "0",
            "Ingress,Egress",
            "0",
            "1"
        ]
    );
    // What `get -o yaml` shows: the defaulted policy types are written out.
    let kept = NETWORK_POLICY.to_object(&key, &stored(policy(json!({ "egress": [{}] }))));
    assert_eq!(
        kept,
        json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": { "name": "p", "namespace": "x" },
            "spec": { "podSelector": {}, "policyTypes": ["Ingress", "Egress"], "egress": [{}] },
        })
    );
}

/// A Pod whose labels alone change recompiles the policies whose choice of it changes,
/// and only those: applied to, a peer of one rule, in its namespace or through a
/// namespace selector; not those that select it (or not) either way, nor those whose
/// peers are addresses or every Pod.
#[test]
fn a_label_change_names_the_policies_whose_choice_of_the_pod_changes() {
    let mut objects = Objects::default();
    let put = |objects: &mut Objects, ns: &str, name: &str, id: u32, spec: Value| {
        let key = ObjectKey {
            kind: NETWORK_POLICY_KIND,
            namespace: ns.into(),
            name: name.into(),
        };
        let mut s = stored(policy(spec));
        s.id = id;
        objects.put(key, Some(s));
    };
    let peer = |sel: Value| json!({"podSelector": {}, "ingress": [{"from": [sel]}]});
    put(
        &mut objects,
        "x",
        "applies-web",
        1,
        json!({"podSelector": {"matchLabels": {"tier": "web"}}}),
    );
    put(
        &mut objects,
        "x",
        "applies-all",
        2,
        json!({"podSelector": {}}),
    );
    put(
        &mut objects,
        "x",
        "peer-web",
        3,
        peer(json!({"podSelector": {"matchLabels": {"tier": "web"}}})),
    );
    put(
        &mut objects,
        "y",
        "peer-web-elsewhere",
        4,
        peer(json!({"podSelector": {"matchLabels": {"tier": "web"}}})),
    );
    put(
        &mut objects,
        "y",
        "peer-ns-web",
        5,
        peer(json!({"namespaceSelector": {}, "podSelector": {"matchLabels": {"tier": "web"}}})),
    );
    put(
        &mut objects,
        "y",
        "peer-app",
        6,
        peer(json!({"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "a"}}})),
    );
    put(
        &mut objects,
        "x",
        "peer-block",
        7,
        peer(json!({"ipBlock": {"cidr": "10.0.0.0/8"}})),
    );
    put(
        &mut objects,
        "x",
        "applies-db",
        8,
        json!({"podSelector": {"matchLabels": {"tier": "db"}}}),
    );
    let l = |pairs: &[(&str, &str)]| -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let (web, api) = (
        l(&[("app", "a"), ("tier", "web")]),
        l(&[("app", "a"), ("tier", "api")]),
    );
    let names = |old: &Labels, new: &Labels| -> Vec<String> {
        policies_of_pod_labels(&objects, "x", old, new)
            .into_iter()
            .map(|k| k.name)
            .collect()
    };
    assert_eq!(
        names(&web, &api),
        ["applies-web", "peer-web", "peer-ns-web"]
    );
    assert_eq!(
        names(&api, &web),
        ["applies-web", "peer-web", "peer-ns-web"]
    );
    assert!(names(&web, &web).is_empty());
    // Every policy either way names the Pod: all of them are among those.
    let either: Vec<String> = policies_of_pod(&objects, "x", &web)
        .into_iter()
        .chain(policies_of_pod(&objects, "x", &api))
        .map(|k| k.name)
        .collect();
    assert!(names(&web, &api).iter().all(|n| either.contains(n)));
}

/// A CIDR with bits set beyond its prefix (the upstream e2e suite's `PodIP/4`, which the
/// API server takes without the `StrictIPCIDRValidation` gate) reads as its network, as
/// Go's `net.ParseCIDR` reads it for Antrea and Calico, instead of leaving the policy
/// unenforced.
#[test]
fn a_cidr_with_host_bits_reads_as_its_network() {
    let p = policy(json!({ "podSelector": {}, "egress": [{ "to": [
        { "ipBlock": { "cidr": "10.244.1.5/4", "except": ["10.244.1.6/32", "10.244.2.9/16"] } },
        { "ipBlock": { "cidr": "fd00::1/64" } },
        { "ipBlock": { "cidr": "10.1.2.3/0" } },
    ] }] }));
    let Peers::Only(peers) = &p.egress[0].peers else {
        panic!()
    };
    let shown: Vec<String> = peers
        .iter()
        .map(|peer| {
            let Peer::IpBlock(b) = peer else { panic!() };
            let except: Vec<String> = b.except.iter().map(ToString::to_string).collect();
            format!("{} {except:?}", b.cidr)
        })
        .collect();
    assert_eq!(
        shown,
        [
            "0.0.0.0/4 [\"10.244.1.6/32\", \"10.244.0.0/16\"]",
            "fd00::/64 []",
            "0.0.0.0/0 []"
        ]
    );
}
