use super::*;
use proptest::prelude::*;

fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |k| {
        pairs
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    }
}

const CONF: &str = r#"{"cniVersion":"1.0.0","name":"k8s-pod-network","type":"vswitch-cni"}"#;

fn add_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "abc123"),
        ("CNI_NETNS", "/var/run/netns/pod1"),
        ("CNI_IFNAME", "eth0"),
        (
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_UID=u1;FOO=bar",
        ),
        ("CNI_PATH", "/opt/cni/bin"),
    ]
}

#[test]
fn a_good_add_reads_everything() {
    let e = add_env();
    let (call, conf) = CniCall::from_env(env(&e), CONF.as_bytes()).unwrap();
    assert_eq!(call.command, Command::Add);
    assert_eq!(call.container_id, "abc123");
    assert_eq!(conf.name, "k8s-pod-network");
    assert_eq!(conf.socket, DEFAULT_SOCKET);
    assert_eq!(conf.timeout_secs, DEFAULT_TIMEOUT_SECS);
    let args = call.validate(&conf).unwrap();
    assert_eq!(args.pod_namespace.as_deref(), Some("default"));
    assert_eq!(args.pod_name.as_deref(), Some("web-0"));
    assert_eq!(args.pod_uid.as_deref(), Some("u1"));
    // The call survives the trip over the socket.
    let back: CniCall = serde_json::from_str(&serde_json::to_string(&call).unwrap()).unwrap();
    assert_eq!(back, call);
}

fn code_of(pairs: &[(&str, &str)], stdin: &str) -> (u32, String) {
    let (e, _) = CniCall::from_env(env(pairs), stdin.as_bytes()).unwrap_err();
    (e.code, e.msg)
}

fn with(
    base: &[(&'static str, &'static str)],
    k: &'static str,
    v: Option<&'static str>,
) -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<_> = base.iter().copied().filter(|(n, _)| *n != k).collect();
    if let Some(v) = v {
        out.push((k, v));
    }
    out
}

#[test]
fn bad_input_gets_the_right_code_and_names_the_problem() {
    let e = add_env();
    let (c, m) = code_of(&e, "{not json");
    assert_eq!(c, errcode::DECODE, "{m}");
    let (c, m) = code_of(&e, "[1,2]");
    assert_eq!(c, errcode::DECODE, "{m}");
    let (c, m) = code_of(&e, r#"{"cniVersion":"9.9.9","name":"n","type":"t"}"#);
    assert_eq!(c, errcode::INCOMPATIBLE_VERSION, "{m}");
    assert!(m.contains("9.9.9") && m.contains("1.1.0"), "{m}");
    let (c, m) = code_of(&e, r#"{"name":"n","type":"t"}"#);
    assert_eq!(c, errcode::INCOMPATIBLE_VERSION, "{m}");
    let (c, m) = code_of(&e, r#"{"cniVersion":"1.0.0","type":"t"}"#);
    assert_eq!(c, errcode::INVALID_CONFIG, "{m}");
    assert!(m.contains("name"), "{m}");
    let (c, m) = code_of(&e, r#"{"cniVersion":"1.0.0","name":"n"}"#);
    assert_eq!(c, errcode::INVALID_CONFIG, "{m}");
    assert!(m.contains("type"), "{m}");
    let (c, m) = code_of(&e, r#"{"cniVersion":"1.0.0","name":"-bad","type":"t"}"#);
    assert_eq!(c, errcode::INVALID_CONFIG, "{m}");
    let (c, m) = code_of(
        &e,
        r#"{"cniVersion":"1.0.0","name":"n","type":"t","socket":"rel"}"#,
    );
    assert_eq!(c, errcode::INVALID_CONFIG, "{m}");
    let (c, m) = code_of(
        &e,
        r#"{"cniVersion":"1.0.0","name":"n","type":"t","ipam":{"type":"../x"}}"#,
    );
    assert_eq!(c, errcode::INVALID_CONFIG, "{m}");
    let (c, m) = code_of(&with(&e, "CNI_CONTAINERID", None), CONF);
    assert_eq!(c, errcode::INVALID_ENV, "{m}");
    assert!(m.contains("CNI_CONTAINERID"), "{m}");
    let (c, m) = code_of(&with(&e, "CNI_CONTAINERID", Some("-bad")), CONF);
    assert_eq!(c, errcode::INVALID_ENV, "{m}");
    let (c, m) = code_of(&with(&e, "CNI_IFNAME", Some("averyveryverylongname")), CONF);
    assert_eq!(c, errcode::INVALID_ENV, "{m}");
    assert!(m.contains("21 bytes"), "{m}");
    let (c, m) = code_of(&with(&e, "CNI_NETNS", Some("pod1")), CONF);
    assert_eq!(c, errcode::INVALID_ENV, "{m}");
    assert!(m.contains("CNI_NETNS"), "{m}");
    let (c, m) = code_of(&with(&e, "CNI_COMMAND", Some("FOO")), CONF);
    assert_eq!(c, errcode::INVALID_ENV, "{m}");
    let (c, m) = code_of(&with(&e, "CNI_ARGS", Some("FOO=bar")), CONF);
    assert_eq!(c, errcode::INVALID_ENV, "{m}");
    assert!(m.contains("IgnoreUnknown"), "{m}");
    let (c, m) = code_of(&with(&e, "CNI_ARGS", Some("novalue")), CONF);
    assert_eq!(c, errcode::INVALID_ENV, "{m}");
}

#[test]
fn operations_need_their_version_and_variables() {
    let old = r#"{"cniVersion":"0.3.1","name":"n","type":"t"}"#;
    let check = with(&add_env(), "CNI_COMMAND", Some("CHECK"));
    assert_eq!(code_of(&check, old).0, errcode::INCOMPATIBLE_VERSION);
    let status = [("CNI_COMMAND", "STATUS")];
    assert_eq!(code_of(&status, CONF).0, errcode::INCOMPATIBLE_VERSION);
    let ok = r#"{"cniVersion":"1.1.0","name":"n","type":"t"}"#;
    assert!(CniCall::from_env(env(&status), ok.as_bytes()).is_ok());
    // DEL needs no namespace.
    let del = with(
        &with(&add_env(), "CNI_COMMAND", Some("DEL")),
        "CNI_NETNS",
        None,
    );
    assert!(CniCall::from_env(env(&del), CONF.as_bytes()).is_ok());
    // GC reads both spellings of the valid list.
    for key in ["cni.dev/valid-attachments", "cni.dev/attachments"] {
        let gc = format!(
            r#"{{"cniVersion":"1.1.0","name":"n","type":"t","{key}":[{{"containerID":"c1","ifname":"eth0"}}]}}"#
        );
        let (_, conf) = CniCall::from_env(env(&[("CNI_COMMAND", "GC")]), gc.as_bytes()).unwrap();
        assert_eq!(
            conf.valid_attachments.unwrap(),
            vec![Attachment {
                container_id: "c1".into(),
                ifname: "eth0".into()
            }]
        );
    }
}

#[test]
fn errors_print_in_the_configs_version() {
    let e = CniError::new(11, "try later").with_details("why");
    assert_eq!(
        e.to_json("1.0.0"),
        json!({"cniVersion":"1.0.0","code":11,"msg":"try later","details":"why"})
    );
    let back = CniError::from_rpc("try later", Some(&e.to_rpc_data())).unwrap();
    assert_eq!(back, e);
    assert!(CniError::from_rpc("x", Some(&json!({"index": 1}))).is_none());
    assert_eq!(
        version_reply(Some("1.0.0")),
        json!({"cniVersion":"1.0.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]})
    );
    assert_eq!(version_reply(Some("7.0.0"))["cniVersion"], "1.1.0");
}

fn sample() -> CniResult {
    CniResult {
        interfaces: vec![Interface {
            name: "eth0".into(),
            mac: "0a:58:0a:f4:01:05".into(),
            mtu: Some(1500),
            sandbox: Some("/var/run/netns/pod1".into()),
            ..Interface::default()
        }],
        ips: vec![IpConfig {
            address: "10.244.1.5/24".into(),
            gateway: Some("10.244.1.1".into()),
            interface: Some(0),
            ..IpConfig::default()
        }],
        routes: vec![Route {
            dst: "0.0.0.0/0".into(),
            gw: Some("10.244.1.1".into()),
            ..Route::default()
        }],
        dns: Map::new(),
    }
}

#[test]
fn results_per_version() {
    let r = sample();
    let v11 = r.to_version("1.1.0");
    assert_eq!(v11["cniVersion"], "1.1.0");
    assert_eq!(v11["interfaces"][0]["mtu"], 1500);
    assert_eq!(v11["ips"][0]["interface"], 0);
    assert!(v11["ips"][0].get("version").is_none());
    let v10 = r.to_version("1.0.0");
    assert!(v10["interfaces"][0].get("mtu").is_none());
    let v031 = r.to_version("0.3.1");
    assert_eq!(v031["ips"][0]["version"], "4");
    assert_eq!(v031["interfaces"][0]["sandbox"], "/var/run/netns/pod1");
    // Every version reads back to the same result (less the fields it cannot carry).
    for v in SUPPORTED_VERSIONS {
        let back = CniResult::from_value(&r.to_version(v)).unwrap();
        assert_eq!(back.ips, r.ips, "{v}");
        assert_eq!(back.routes, r.routes, "{v}");
        assert_eq!(back.interfaces[0].name, "eth0", "{v}");
    }
}

#[test]
fn chained_results_keep_what_came_before() {
    let prev = json!({
        "cniVersion": "0.4.0",
        "interfaces": [{"name": "cni0", "mac": "aa:aa:aa:aa:aa:aa", "x-vendor": 7}],
        "ips": [{"version": "4", "address": "10.9.0.2/24", "interface": 0}],
        "dns": null
    });
    let mut r = CniResult::from_value(&prev).unwrap();
    assert_eq!(r.interfaces[0].extra["x-vendor"], 7);
    r.append(sample());
    assert_eq!(r.interfaces.len(), 2);
    assert_eq!(r.ips[1].interface, Some(1));
    let out = r.to_version("1.0.0");
    assert_eq!(out["interfaces"][0]["x-vendor"], 7);
    assert!(CniResult::from_value(&json!([1])).is_err());
}

proptest! {
    #[test]
    fn netconf_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = NetConf::parse(&bytes);
    }

    #[test]
    fn netconf_fields_of_any_type(v in proptest::option::of(any::<i64>()), s in ".{0,20}") {
        let conf = json!({
            "cniVersion": "1.0.0", "name": "n", "type": "t",
            "timeout": v, "socket": s, "ipam": {"type": s}, "dns": {"nameservers": [s]}
        });
        let _ = NetConf::from_value(&conf);
    }

    #[test]
    fn cni_args_round_trip(pairs in proptest::collection::vec(("[A-Za-z_][A-Za-z0-9_]{0,10}", "[^;=]{0,12}"), 0..6)) {
        // IP= is read as addresses (and refused when it is not): it has tests of its own.
        let pairs: Vec<_> = pairs.into_iter().filter(|(k, _)| k != "IP").collect();
        let s: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let text = format!("IgnoreUnknown=1;{}", s.join(";"));
        let a = CniArgs::parse(&text).unwrap();
        prop_assert_eq!(a.pairs.len(), pairs.len() + 1);
        for ((k, v), (pk, pv)) in pairs.iter().zip(a.pairs.iter().skip(1)) {
            prop_assert_eq!(k, pk);
            prop_assert_eq!(v, pv);
        }
    }

    #[test]
    fn cni_args_never_panic(s in ".{0,64}") {
        let _ = CniArgs::parse(&s);
    }

    #[test]
    fn ifname_rule_matches_the_kernel(name in ".{0,20}") {
        let ok = validate_ifname(&name).is_ok();
        let expected = !name.is_empty() && name.len() <= 15 && name != "." && name != ".."
            && !name.chars().any(|c| c == '/' || c == ':' || c.is_whitespace() || c == '\0');
        prop_assert_eq!(ok, expected);
    }

    #[test]
    fn results_survive_every_version(n in 1usize..4, v in 0usize..5) {
        let mut r = CniResult::default();
        for i in 0..n {
            let mut s = sample();
            s.ips[0].address = format!("10.244.{i}.5/24");
            r.append(s);
        }
        let version = SUPPORTED_VERSIONS[v];
        let back = CniResult::from_value(&r.to_version(version)).unwrap();
        prop_assert_eq!(back.ips, r.ips);
    }
}

#[test]
fn a_configuration_passes_through_the_switch_unchanged_to_the_last_bit() {
    // The switch hands prevResult and the rest back as it got them: a number must survive
    // a read and a write exactly (serde_json's `float_roundtrip`).
    // An integer too large for u64 is read as a float (the fuzzer's find).
    let text = format!(r#"{{"x": 1{}, "y": 0.1, "z": 5e-324}}"#, "6".repeat(66));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let again: serde_json::Value =
        serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
    assert_eq!(v, again);
}

#[test]
fn static_addresses_asked_for() {
    let a = CniArgs::parse("IgnoreUnknown=1;IP=10.244.1.50;K8S_POD_NAME=web").unwrap();
    assert_eq!(
        a.ips,
        vec!["10.244.1.50".parse::<std::net::IpAddr>().unwrap()]
    );
    let a = CniArgs::parse("IP=10.244.1.50/24,fd00::5").unwrap();
    assert_eq!(a.ips.len(), 2);
    let e = CniArgs::parse("IP=10.244.1.500").unwrap_err();
    assert_eq!(e.code, errcode::INVALID_ENV);
    assert!(e.msg.contains("IP=10.244.1.500"), "{}", e.msg);
    let conf = |extra: &str| {
        NetConf::from_value(
            &serde_json::from_str(&format!(
                r#"{{"cniVersion":"1.0.0","name":"n","type":"vswitch-cni"{extra}}}"#
            ))
            .unwrap(),
        )
    };
    assert!(conf("").unwrap().ips.is_empty());
    let c = conf(r#","runtimeConfig":{"ips":["10.244.1.7/24"]}"#).unwrap();
    assert_eq!(
        c.ips,
        vec!["10.244.1.7".parse::<std::net::IpAddr>().unwrap()]
    );
    let c = conf(r#","args":{"cni":{"ips":["10.244.1.8"]}}"#).unwrap();
    assert_eq!(
        c.ips,
        vec!["10.244.1.8".parse::<std::net::IpAddr>().unwrap()]
    );
    let e = conf(r#","runtimeConfig":{"ips":"10.244.1.7"}"#).unwrap_err();
    assert_eq!(e.code, errcode::INVALID_CONFIG);
    assert!(e.msg.contains("runtimeConfig.ips"), "{}", e.msg);
    let e = conf(r#","runtimeConfig":{"ips":["x"]}"#).unwrap_err();
    assert!(e.msg.contains("not an IP address"), "{}", e.msg);
}
