//! Egress masquerade: Pods reach addresses outside the cluster with the node's address as
//! their source, as Flannel and Antrea arrange it, through the node's own NAT (the switch
//! cannot rewrite the source to the node's address itself: the node's kernel drops a
//! packet that arrives with one of its own addresses as source).
//!
//! In the switch's namespace, table `nat`: POSTROUTING jumps to chain `VSWITCH-MASQ` for
//! packets from this node's Pod CIDR; the chain returns for the cluster's Pod CIDR, the
//! Service CIDR, multicast and every excluded CIDR, and masquerades the rest
//! (`--random-fully`, as kube-proxy and Flannel do, so that source ports are not handed
//! out in sequence). Made again at every start (so settings that changed apply), removed
//! with `--no-masquerade`. Done with `iptables`, which picks the kernel's backend
//! (nf_tables or legacy) as the rest of the node's rules use it.

use std::process::Command;
use vswitch_proto::net::Ipv4Cidr;

const CHAIN: &str = "VSWITCH-MASQ";
const COMMENT: &str = "vswitch: Pod egress masquerade";

/// What is not masqueraded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Masquerade {
    /// The cluster's Pod network (every node's Pod CIDR within it).
    pub cluster_cidr: Ipv4Cidr,
    /// More destinations reached with the Pod's own address.
    pub exclude: Vec<Ipv4Cidr>,
}

/// `iptables -w -t nat ARGS`: its output, or what it said on failure.
pub(super) fn iptables(args: &[&str]) -> Result<String, String> {
    iptables_in("nat", args)
}

/// `iptables -w -t TABLE ARGS`.
pub(super) fn iptables_in(table: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new("iptables")
        .arg("-w")
        .args(["-t", table])
        .args(args)
        .output()
        .map_err(|e| format!("cannot run iptables: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "iptables {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The POSTROUTING rules that jump to the chain, as `iptables -S` prints them.
fn jumps() -> Vec<String> {
    iptables(&["-S", "POSTROUTING"])
        .unwrap_or_default()
        .lines()
        .filter(|l| l.ends_with(&format!("-j {CHAIN}")))
        .map(str::to_string)
        .collect()
}

/// Masquerade what `pod_cidr`'s Pods send outside `m`'s and `service_cidr`'s networks.
pub fn install(
    pod_cidr: Ipv4Cidr,
    service_cidr: Option<Ipv4Cidr>,
    m: &Masquerade,
) -> Result<(), String> {
    if iptables(&["-S", CHAIN]).is_err() {
        iptables(&["-N", CHAIN])?;
    }
    iptables(&["-F", CHAIN])?;
    let keep: Vec<String> = std::iter::once(m.cluster_cidr)
        .chain(service_cidr)
        .chain(m.exclude.iter().copied())
        .map(|c| c.to_string())
        .chain(["224.0.0.0/4".to_string()])
        .collect();
    for c in &keep {
        iptables(&["-A", CHAIN, "-d", c, "-j", "RETURN"])?;
    }
    iptables(&["-A", CHAIN, "-j", "MASQUERADE", "--random-fully"])?;
    let src = pod_cidr.to_string();
    let want = [
        "-s",
        src.as_str(),
        "-m",
        "comment",
        "--comment",
        COMMENT,
        "-j",
        CHAIN,
    ];
    // A jump for another Pod CIDR (a start with other settings) goes.
    for j in jumps() {
        if !j.contains(&format!("-s {src} ")) {
            remove_jump(&j);
        }
    }
    if iptables(&[&["-C", "POSTROUTING"][..], &want[..]].concat()).is_err() {
        iptables(&[&["-I", "POSTROUTING", "1"][..], &want[..]].concat())?;
    }
    Ok(())
}

pub(super) fn remove_jump(rule: &str) {
    remove_jump_in("nat", rule)
}

/// Delete `rule`, as `iptables -t TABLE -S` printed it.
pub(super) fn remove_jump_in(table: &str, rule: &str) {
    // `-A POSTROUTING ...` as printed; deleted with the same words after `-D`. The comment
    // is quoted in the listing.
    let Some(rest) = rule.strip_prefix("-A ") else {
        return;
    };
    let mut words: Vec<String> = Vec::new();
    let mut quoted: Option<String> = None;
    for w in rest.split(' ') {
        match &mut quoted {
            Some(q) => {
                q.push(' ');
                q.push_str(w.trim_end_matches('"'));
                if w.ends_with('"') {
                    words.push(quoted.take().unwrap_or_default());
                }
            }
            None if w.starts_with('"') && !(w.len() > 1 && w.ends_with('"')) => {
                quoted = Some(w.trim_start_matches('"').to_string());
            }
            None => words.push(w.trim_matches('"').to_string()),
        }
    }
    let mut args = vec!["-D"];
    args.extend(words.iter().map(String::as_str));
    if let Err(e) = iptables_in(table, &args) {
        tracing::warn!(error = %e, "cannot remove an old rule");
    }
}

/// Remove the chain and the jumps to it (`--no-masquerade`); nothing when there is none.
pub fn remove() {
    for j in jumps() {
        remove_jump(&j);
    }
    if iptables(&["-S", CHAIN]).is_ok() {
        let _ = iptables(&["-F", CHAIN]);
        if let Err(e) = iptables(&["-X", CHAIN]) {
            tracing::warn!(error = %e, "cannot remove the masquerade chain");
        }
    }
}
