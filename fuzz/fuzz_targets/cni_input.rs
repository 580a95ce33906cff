//! Fuzz what the CNI plugin reads from the runtime: the network configuration on stdin
//! (`NetConf::parse`), `CNI_ARGS` (`CniArgs::parse`), the whole call as the plugin builds
//! it from its environment (`CniCall::from_env`, for every command), and results of other
//! plugins (`CniResult::from_value` on the input and on its `prevResult`, printed back in
//! every supported version). Nothing may panic, and:
//! - an accepted call carries the configuration exactly as given, survives the JSON trip
//!   to the switch, and validates again;
//! - a refused one is answered in a supported version;
//! - a result read back from what `to_version` printed prints the same again.
//!
//! Run: `cd fuzz && cargo fuzz run -s none cni_input corpus/seeds/cni_input`
//! (seed corpus: `corpus/seeds/cni_input/`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use vswitch_proto::cni::{CniArgs, CniCall, CniResult, NetConf, SUPPORTED_VERSIONS, is_supported};

const COMMANDS: [&str; 7] = ["ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION", "BOGUS"];

/// The environment the runtime gives, less `CNI_COMMAND`.
fn fixed_env(k: &str) -> Option<String> {
    Some(
        match k {
            "CNI_CONTAINERID" => "0123456789abcdef",
            "CNI_NETNS" => "/var/run/netns/cni-1234",
            "CNI_IFNAME" => "eth0",
            "CNI_ARGS" => "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0",
            "CNI_PATH" => "/opt/cni/bin",
            _ => return None,
        }
        .to_string(),
    )
}

fn check_args(text: &str) {
    if let Ok(a) = CniArgs::parse(text) {
        let segments = text.split(';').filter(|p| !p.is_empty()).count();
        assert_eq!(a.pairs.len(), segments, "{text:?}");
        let last = |key: &str| {
            a.pairs
                .iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(a.pod_name, last("K8S_POD_NAME"), "{text:?}");
        assert_eq!(a.pod_namespace, last("K8S_POD_NAMESPACE"), "{text:?}");
    }
}

fn check_call(data: &[u8], parsed: Option<&Value>) {
    for command in COMMANDS {
        let vars = |k: &str| {
            if k == "CNI_COMMAND" {
                Some(command.to_string())
            } else {
                fixed_env(k)
            }
        };
        match CniCall::from_env(vars, data) {
            Ok((call, conf)) => {
                assert_eq!(
                    Some(&call.config),
                    parsed,
                    "the configuration is passed as given"
                );
                assert_eq!(call.command.as_str(), command);
                assert!(is_supported(&conf.cni_version));
                assert_eq!(NetConf::from_value(&call.config).as_ref(), Ok(&conf));
                call.validate(&conf)
                    .expect("an accepted call validates again");
                let wire = serde_json::to_vec(&call).expect("a call serialises");
                let back: CniCall = serde_json::from_slice(&wire).expect("and reads back");
                assert_eq!(back, call);
            }
            Err((e, version)) => {
                assert!(is_supported(&version), "error version {version:?}");
                assert_ne!(e.code, 0);
                let printed = e.to_json(&version);
                assert_eq!(printed["code"], e.code);
            }
        }
    }
}

fn check_result(v: &Value) {
    let Ok(r) = CniResult::from_value(v) else {
        return;
    };
    for version in SUPPORTED_VERSIONS {
        let printed = r.to_version(version);
        assert_eq!(printed["cniVersion"], version);
        let back = CniResult::from_value(&printed)
            .unwrap_or_else(|e| panic!("{printed} (from {v}) does not read back: {e}"));
        assert_eq!(back.to_version(version), printed, "from {v}");
        if version == "1.1.0" {
            assert_eq!(back, r, "1.1.0 keeps everything: {v}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = NetConf::parse(data);
    check_args(&String::from_utf8_lossy(data));
    let parsed = serde_json::from_slice::<Value>(data).ok();
    check_call(data, parsed.as_ref());
    if let Some(v) = &parsed {
        check_result(v);
        if let Some(prev) = v.get("prevResult") {
            check_result(prev);
        }
    }
});
