//! vswitch-cni: the CNI plugin kubelet runs to attach Pods to the switch.
#![forbid(unsafe_code)]

/// CNI error code 4: "invalid necessary environment variables"; used until the plugin
/// forwards calls to the switch.
const ERR_NOT_SUPPORTED: u32 = 4;

fn main() {
    let command = std::env::var("CNI_COMMAND").unwrap_or_default();
    if command == "VERSION" {
        println!(
            "{}",
            serde_json::json!({
                "cniVersion": "1.1.0",
                "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
            })
        );
        return;
    }
    println!(
        "{}",
        serde_json::json!({
            "cniVersion": "1.1.0",
            "code": ERR_NOT_SUPPORTED,
            "msg": format!("CNI_COMMAND {command:?} is not supported by this build of vswitch-cni"),
        })
    );
    std::process::exit(1);
}
