//! Services reached from outside the node: the node's own network stack hands the switch
//! what arrives for a NodePort, an external IP or a load-balancer IP, as Antrea's
//! proxyAll does it (with the node's iptables and routes to its gateway).
//!
//! In the switch's namespace, table `filter`: chain `VSWITCH-FIREWALL`, entered from
//! FORWARD for packets leaving by the gateway, holds the `loadBalancerSourceRanges` of
//! every load-balancer IP: a RETURN per range (first), then a DROP; it sees the client's
//! address before any masquerade. Table `nat`:
//!
//! - chain `VSWITCH-NODEPORTS`, entered from PREROUTING and OUTPUT for packets to one of
//!   the node's own addresses (`-m addrtype --dst-type LOCAL`; not loopback, which the
//!   kernel will not route out of the node): per NodePort, its protocol and port are
//!   translated to [`NODEPORT_IP`] (externalTrafficPolicy Cluster) or
//!   [`NODEPORT_LOCAL_IP`] (Local), the port kept; the node routes both to the switch
//!   (`via 169.254.0.254 dev <gateway> onlink`), whose ServiceLB table picks the endpoint;
//!   before those, per external or load-balancer address that is the node's own
//!   (`--node-ip`) and Service port, the same to [`EXTERNAL_IP`] or
//!   [`EXTERNAL_LOCAL_IP`], the port kept;
//! - chain `VSWITCH-SVC-MASQ`, entered from POSTROUTING for packets leaving by the
//!   gateway: what goes to `NODEPORT_IP` or `EXTERNAL_IP`, and to each external or load-balancer address
//!   and port of a Service with externalTrafficPolicy Cluster, is masqueraded to the
//!   gateway's address, so that the endpoint's reply comes back through this node (the
//!   endpoint may be on another one) and the node translates it back. With Local nothing
//!   is masqueraded: the endpoint sees the client's address.
//!
//! External and load-balancer addresses are routed to the switch by the Service's own
//! routes (`k8s::Compiled::routes`). Rules change one batch per change
//! (`iptables-restore --noflush`), so a Service costs its own rules, not the table's.

use super::health::HealthChecks;
use super::masq::{iptables, iptables_in, remove_jump_in};
use crate::k8s::HostRule;
use crate::k8s::pipeline::{EXTERNAL_IP, EXTERNAL_LOCAL_IP, NODEPORT_IP, NODEPORT_LOCAL_IP};
use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

/// What the node's stack does for each owner (a Service): wanted (the store's view,
/// changed with the objects) and installed (once the Pod network is up).
#[derive(Default)]
pub struct HostState {
    wanted: BTreeMap<u64, Vec<HostRule>>,
    installed: BTreeMap<u64, Vec<HostRule>>,
    /// The chains are made: changes are installed as they come.
    ready: bool,
    health: HealthChecks,
}

impl HostState {
    /// What `owner` now wants (sorted, once each); returns what it wanted before.
    pub fn want(&mut self, owner: u64, mut rules: Vec<HostRule>) -> Vec<HostRule> {
        rules.sort();
        rules.dedup();
        if rules.is_empty() {
            self.wanted.remove(&owner)
        } else {
            self.wanted.insert(owner, rules)
        }
        .unwrap_or_default()
    }

    /// Once the Pod network is up (its gateway is `gateway`): make the chains and install
    /// what every owner wants. Without them (no iptables) Services are reached from the
    /// node's Pods and the node only, which the log says.
    pub fn start(&mut self, gateway: &str) {
        self.installed.clear();
        match install(gateway) {
            Ok(()) => self.ready = true,
            Err(e) => {
                tracing::warn!(error = %e, "cannot hand NodePorts and external addresses to the switch: Services are reached from this node and its Pods only");
            }
        }
        let owners: Vec<u64> = self.wanted.keys().copied().collect();
        self.sync_many(&owners);
    }

    /// Bring `owner`'s installed rules to what it wants.
    pub fn sync(&mut self, owner: u64) {
        self.sync_many(&[owner]);
    }

    fn sync_many(&mut self, owners: &[u64]) {
        let mut gone: Vec<HostRule> = Vec::new();
        let mut new: Vec<HostRule> = Vec::new();
        for &owner in owners {
            let want = self.wanted.get(&owner).cloned().unwrap_or_default();
            let have = self.installed.remove(&owner).unwrap_or_default();
            gone.extend(have.iter().filter(|r| !want.contains(r)).cloned());
            new.extend(want.iter().filter(|r| !have.contains(r)).cloned());
            if !want.is_empty() {
                self.installed.insert(owner, want);
            }
        }
        self.health_checks(&gone, &new);
        if self.ready
            && let Err(e) = change(&gone, &new)
        {
            tracing::warn!(error = %e, "Services' rules in the node's tables");
        }
    }

    /// Serve the health checks of `new`; stop those of `gone` whose port no longer has
    /// one (a changed count answers on the same listener).
    fn health_checks(&mut self, gone: &[HostRule], new: &[HostRule]) {
        for r in new {
            if let HostRule::HealthCheck {
                port,
                namespace,
                name,
                local_endpoints,
            } = r
                && let Err(e) = self.health.set(*port, namespace, name, *local_endpoints)
            {
                tracing::warn!(error = %e, service = %format!("{namespace}/{name}"), "health-check node port not served");
            }
        }
        for r in gone {
            if let HostRule::HealthCheck { port, .. } = r
                && !new
                    .iter()
                    .any(|n| matches!(n, HostRule::HealthCheck { port: p, .. } if p == port))
            {
                self.health.remove(*port);
            }
        }
    }
}

const NODEPORTS: &str = "VSWITCH-NODEPORTS";
const SVC_MASQ: &str = "VSWITCH-SVC-MASQ";
const FIREWALL: &str = "VSWITCH-FIREWALL";
const COMMENT: &str = "vswitch: Services from outside the node";

/// `tcp`, `udp` or `sctp`, as iptables names them.
fn proto_name(proto: u8) -> &'static str {
    match proto {
        6 => "tcp",
        17 => "udp",
        _ => "sctp",
    }
}

/// One rule in one of the node's tables: where it goes and its words after the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IptRule {
    pub table: &'static str,
    pub chain: &'static str,
    pub words: String,
    /// Put first in its chain (a source range's pass, ahead of the drop after them all).
    pub first: bool,
}

fn ipt(table: &'static str, chain: &'static str, words: String, first: bool) -> IptRule {
    IptRule {
        table,
        chain,
        words,
        first,
    }
}

/// The iptables rule `r` needs; `None` for what is not one (a health check).
pub fn rule_of(r: &HostRule) -> Option<IptRule> {
    match *r {
        HostRule::NodePort { proto, port, local } => {
            let to = if local {
                NODEPORT_LOCAL_IP
            } else {
                NODEPORT_IP
            };
            let p = proto_name(proto);
            Some(ipt(
                "nat",
                NODEPORTS,
                format!("-p {p} -m {p} --dport {port} -j DNAT --to-destination {to}"),
                false,
            ))
        }
        HostRule::NodeAddress {
            ip,
            proto,
            port,
            local,
        } => {
            let to = if local {
                EXTERNAL_LOCAL_IP
            } else {
                EXTERNAL_IP
            };
            let p = proto_name(proto);
            // First: before the NodePorts, whose rules name no address (as kube-proxy's
            // KUBE-SERVICES rules come before its KUBE-NODEPORTS jump).
            Some(ipt(
                "nat",
                NODEPORTS,
                format!("-d {ip}/32 -p {p} -m {p} --dport {port} -j DNAT --to-destination {to}"),
                true,
            ))
        }
        HostRule::Masquerade { ip, proto, port } => {
            let p = proto_name(proto);
            Some(ipt(
                "nat",
                SVC_MASQ,
                format!("-d {ip}/32 -p {p} -m {p} --dport {port} -j MASQUERADE"),
                false,
            ))
        }
        HostRule::SourceRange {
            ip,
            proto,
            port,
            range,
        } => {
            let p = proto_name(proto);
            let to = format!("-d {ip}/32 -p {p} -m {p} --dport {port}");
            Some(match range {
                Some(r) => ipt("filter", FIREWALL, format!("-s {r} {to} -j RETURN"), true),
                None => ipt("filter", FIREWALL, format!("{to} -j DROP"), false),
            })
        }
        HostRule::HealthCheck { .. } => None,
    }
}

/// Make the chains, empty but for the masquerade of what goes to `NODEPORT_IP`, with
/// their jumps (those made for another gateway name go). At every start: the rules of
/// the Services come next, from the store.
pub fn install(gateway: &str) -> Result<(), String> {
    for (table, chain) in [("nat", NODEPORTS), ("nat", SVC_MASQ), ("filter", FIREWALL)] {
        if iptables_in(table, &["-S", chain]).is_err() {
            iptables_in(table, &["-N", chain])?;
        }
        iptables_in(table, &["-F", chain])?;
    }
    for ip in [NODEPORT_IP, EXTERNAL_IP] {
        iptables(&[
            "-A",
            SVC_MASQ,
            "-d",
            &format!("{ip}/32"),
            "-j",
            "MASQUERADE",
        ])?;
    }
    let local = ["-m", "addrtype", "--dst-type", "LOCAL"];
    let tail = ["-m", "comment", "--comment", COMMENT];
    let jumps: [(&str, &str, Vec<&str>, &str); 4] = [
        ("nat", "PREROUTING", local.to_vec(), NODEPORTS),
        (
            "nat",
            "OUTPUT",
            [&["!", "-d", "127.0.0.0/8"][..], &local[..]].concat(),
            NODEPORTS,
        ),
        ("nat", "POSTROUTING", vec!["-o", gateway], SVC_MASQ),
        ("filter", "FORWARD", vec!["-o", gateway], FIREWALL),
    ];
    for (table, parent, matches, chain) in jumps {
        let want: Vec<&str> = [&matches[..], &tail[..], &["-j", chain][..]].concat();
        for old in jumps_to(table, parent, chain) {
            if !old.contains(&matches.join(" ")) {
                remove_jump_in(table, &old);
            }
        }
        if iptables_in(table, &[&["-C", parent][..], &want[..]].concat()).is_err() {
            iptables_in(table, &[&["-I", parent, "1"][..], &want[..]].concat())?;
        }
    }
    Ok(())
}

/// The rules of `parent` that jump to `chain`, as `iptables -S` prints them.
fn jumps_to(table: &str, parent: &str, chain: &str) -> Vec<String> {
    iptables_in(table, &["-S", parent])
        .unwrap_or_default()
        .lines()
        .filter(|l| l.ends_with(&format!("-j {chain}")))
        .map(str::to_string)
        .collect()
}

/// Delete the rules of `gone`, then add those of `new`, in one `iptables-restore
/// --noflush` batch; when the batch is refused (a rule to delete was removed by hand),
/// rule by rule, each failure logged.
pub fn change(gone: &[HostRule], new: &[HostRule]) -> Result<(), String> {
    let lines: Vec<(&str, IptRule)> = gone
        .iter()
        .filter_map(|r| Some(("-D", rule_of(r)?)))
        .chain(new.iter().filter_map(|r| {
            let r = rule_of(r)?;
            Some((if r.first { "-I" } else { "-A" }, r))
        }))
        .collect();
    if lines.is_empty() {
        return Ok(());
    }
    let mut batch = String::new();
    for table in ["nat", "filter"] {
        let mine: Vec<&(&str, IptRule)> = lines.iter().filter(|(_, r)| r.table == table).collect();
        if mine.is_empty() {
            continue;
        }
        batch.push_str(&format!("*{table}\n"));
        for (op, r) in mine {
            batch.push_str(&format!("{op} {} {}\n", r.chain, r.words));
        }
        batch.push_str("COMMIT\n");
    }
    if restore(&batch).is_ok() {
        return Ok(());
    }
    let mut first_error = None;
    for (op, r) in &lines {
        let args: Vec<&str> = [*op, r.chain]
            .into_iter()
            .chain(r.words.split(' '))
            .collect();
        if let Err(e) = iptables_in(r.table, &args) {
            tracing::warn!(error = %e, "a Service's rule in the node's tables");
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Feed `batch` to `iptables-restore --noflush`.
fn restore(batch: &str) -> Result<(), String> {
    let mut child = Command::new("iptables-restore")
        .args(["-w", "--noflush"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run iptables-restore: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(batch.as_bytes())
            .map_err(|e| format!("iptables-restore: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("iptables-restore: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "iptables-restore: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ports_are_translated_by_policy_and_cluster_external_addresses_masqueraded() {
        let np = |local| HostRule::NodePort {
            proto: 6,
            port: 30080,
            local,
        };
        let r = rule_of(&np(false)).unwrap();
        assert_eq!((r.table, r.chain, r.first), ("nat", NODEPORTS, false));
        assert_eq!(
            r.words,
            "-p tcp -m tcp --dport 30080 -j DNAT --to-destination 169.254.0.252"
        );
        assert!(rule_of(&np(true)).unwrap().words.ends_with("169.254.0.251"));
        let ip = "192.0.2.7".parse().unwrap();
        // The node's own address as an external IP: before the NodePorts, by address.
        let own = |local| HostRule::NodeAddress {
            ip,
            proto: 6,
            port: 80,
            local,
        };
        let r = rule_of(&own(false)).unwrap();
        assert_eq!((r.table, r.chain, r.first), ("nat", NODEPORTS, true));
        assert_eq!(
            r.words,
            "-d 192.0.2.7/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 169.254.0.250"
        );
        assert!(
            rule_of(&own(true))
                .unwrap()
                .words
                .ends_with("169.254.0.249")
        );
        let m = HostRule::Masquerade {
            ip,
            proto: 132,
            port: 80,
        };
        assert_eq!(
            rule_of(&m).unwrap().words,
            "-d 192.0.2.7/32 -p sctp -m sctp --dport 80 -j MASQUERADE"
        );
        // Source ranges: each range's pass first in the firewall chain, the drop after.
        let range = |r: Option<&str>| HostRule::SourceRange {
            ip,
            proto: 17,
            port: 53,
            range: r.map(|r| r.parse().unwrap()),
        };
        let pass = rule_of(&range(Some("198.51.100.0/24"))).unwrap();
        assert_eq!(
            (pass.table, pass.chain, pass.first),
            ("filter", FIREWALL, true)
        );
        assert_eq!(
            pass.words,
            "-s 198.51.100.0/24 -d 192.0.2.7/32 -p udp -m udp --dport 53 -j RETURN"
        );
        let drop = rule_of(&range(None)).unwrap();
        assert!(!drop.first);
        assert_eq!(
            drop.words,
            "-d 192.0.2.7/32 -p udp -m udp --dport 53 -j DROP"
        );
        let hc = HostRule::HealthCheck {
            port: 32000,
            namespace: "default".into(),
            name: "web".into(),
            local_endpoints: 1,
        };
        assert_eq!(rule_of(&hc), None);
    }
}
