//! NetworkPolicy seen from the installed flows: `policy-check` (a new connection's first
//! packet traced through the tables, and the policy rules it met named), and each
//! policy's counters for `get networkpolicies` (its rules' flows' packets).

use super::{Refusal, Switch};
use crate::dp::action::DpAction;
use crate::k8s::local::LocalPod;
use crate::k8s::netpol::{self, Direction, parse_rule_id, pod_address, prio};
use crate::k8s::pipeline::{Table, reg};
use crate::k8s::{ObjectKey, Stored, pod};
use crate::ofproto::now_ms;
use crate::ofproto::trace::{TraceStep, TracedRule};
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use vswitch_proto::action::Action;
use vswitch_proto::field::FieldId;
use vswitch_proto::net::MacAddr;
use vswitch_proto::rpc::{PolicyCheckParams, PolicyCheckResult, PolicyHalf, PolicyRuleRef};
use vswitch_proto::text;

/// One end of the connection being checked.
struct End {
    /// `namespace/name`, or the address.
    name: String,
    ip: Ipv4Addr,
    /// The local Pod it is, when it is one.
    local: Option<LocalPod>,
}

/// The counters of one policy: per rule, the new connections it allowed and the packets
/// of those connections since; per direction, what its Pods' isolation dropped.
#[derive(Debug, Default)]
pub(super) struct PolicyCounters {
    /// (direction, rule index) -> (connections, packets).
    rules: std::collections::BTreeMap<(Direction, usize), (u64, u64)>,
    denied: [u64; 2],
}

impl PolicyCounters {
    pub(super) fn connections(&self) -> u64 {
        self.rules.values().map(|(c, _)| c).sum()
    }

    pub(super) fn packets(&self) -> u64 {
        self.rules.values().map(|(_, p)| p).sum()
    }

    pub(super) fn denied(&self) -> u64 {
        self.denied.iter().sum()
    }

    /// As `get -o yaml` shows it, under `status`.
    pub(super) fn to_value(&self) -> Value {
        let rules: Vec<Value> = self
            .rules
            .iter()
            .map(|((d, i), (c, p))| {
                json!({"rule": format!("{}[{i}]", d.as_str()), "connections": c, "packets": p})
            })
            .collect();
        json!({
            "rules": rules,
            "deniedPackets": {"ingress": self.denied[0], "egress": self.denied[1]},
        })
    }
}

/// The rule id an allowing rule loads (`set_field:ID->reg2/reg3`).
fn loaded_rule_id(actions: &[Action]) -> Option<u32> {
    actions.iter().find_map(|a| match a {
        Action::SetField { field, value, .. }
            if *field == reg::EGRESS_RULE.field() || *field == reg::INGRESS_RULE.field() =>
        {
            Some(*value as u32)
        }
        _ => None,
    })
}

impl Switch {
    /// A policy's counters, from its rules' flows.
    pub(super) fn policy_counters(&self, stored: &Stored) -> PolicyCounters {
        let mut c = PolicyCounters::default();
        let Some(p) = netpol::policy_of(&stored.spec) else {
            return c;
        };
        let owner = crate::k8s::pipeline::CookieKind::NetworkPolicy.cookie(stored.id as u64);
        let pipe = self.bridge.pipeline();
        for (d, n) in [
            (Direction::Ingress, p.ingress_rules().map_or(0, <[_]>::len)),
            (Direction::Egress, p.egress_rules().map_or(0, <[_]>::len)),
        ] {
            for i in 0..n {
                c.rules.insert((d, i.min(127)), (0, 0));
            }
        }
        for r in self.bridge.owned_rules(owner) {
            let Some(rule) = pipe.rule_at(r.table, r.priority, &r.matching) else {
                continue;
            };
            let packets = rule.stats.packets();
            let table = Table::from_number(r.table);
            if let Some(rid) = loaded_rule_id(&r.actions)
                && let Some((_, d, i)) = parse_rule_id(rid)
            {
                c.rules.entry((d, i)).or_default().0 += packets;
            } else if r.priority == prio::COUNT_EGRESS || r.priority == prio::COUNT_INGRESS {
                let label = r.matching.get(FieldId::CtLabel).0;
                let rid = if table == Some(Table::IngressPolicy) {
                    (label >> 32) as u32
                } else {
                    label as u32
                };
                if let Some((_, d, i)) = parse_rule_id(rid) {
                    c.rules.entry((d, i)).or_default().1 += packets;
                }
            } else if r.priority == prio::DENY {
                match table {
                    Some(Table::IngressPolicy) => c.denied[0] += packets,
                    Some(Table::EgressPolicy) => c.denied[1] += packets,
                    _ => {}
                }
            }
        }
        c
    }

    /// `policy-check FROM TO PROTO PORT`.
    pub fn policy_check(&self, p: &PolicyCheckParams) -> Result<PolicyCheckResult, Refusal> {
        let Some(net) = self.podnet.net.as_ref() else {
            return Err(Refusal::refused(
                "this switch has no Pod network (--pod-cidr): there is no policy to check",
            ));
        };
        let proto = match p.protocol.to_ascii_lowercase().as_str() {
            "tcp" => "tcp",
            "udp" => "udp",
            "sctp" => "sctp",
            other => {
                return Err(Refusal::refused(format!(
                    "protocol {other:?}: NetworkPolicy ports are tcp, udp or sctp"
                )));
            }
        };
        if p.port == 0 {
            return Err(Refusal::refused(
                "port 0: give the destination port, 1-65535",
            ));
        }
        let from = self.policy_end(&p.from, "FROM")?;
        let to = self.policy_end(&p.to, "TO")?;
        let tunnel = self.overlay.tunnel;
        let remote_node = |ip: Ipv4Addr| {
            self.objects
                .node_cidrs
                .values()
                .find(|(c, _)| c.contains(ip))
                .and_then(|(_, k)| {
                    let s = self.objects.get(k)?;
                    match &s.spec {
                        crate::k8s::Spec::Node(n) => Some((k.name.clone(), n.node_ip)),
                        _ => None,
                    }
                })
        };
        let gw_mac = net.gateway_mac();
        let gw_ip = net.gateway_ip();
        // Where the first packet comes in, as what.
        let ingress_port = match (&from.local, remote_node(from.ip)) {
            (Some(l), _) => format!("in_port={},dl_src={}", l.port, l.mac),
            (None, Some((_, node_ip))) => {
                let Some(t) = tunnel else {
                    return Err(Refusal::refused(format!(
                        "{} is on another node and this switch has no tunnel",
                        from.name
                    )));
                };
                format!(
                    "in_port={},tun_id={},tun_src={node_ip},dl_src={}",
                    t.port,
                    t.vni,
                    MacAddr::for_ipv4(from.ip)
                )
            }
            // The node itself, or what the node routes in from outside.
            (None, None) => format!("in_port={},dl_src={gw_mac}", net.gateway_port),
        };
        let dl_dst = match (&from.local, &to.local) {
            (Some(_), Some(t)) => t.mac,
            (Some(_), None) => gw_mac,
            (None, Some(t)) => t.mac,
            (None, None) => gw_mac,
        };
        let packet = format!(
            "{ingress_port},{proto},dl_dst={dl_dst},nw_src={},nw_dst={},nw_ttl=64,tp_src=40000,tp_dst={}",
            from.ip, to.ip, p.port
        );
        let names = self.names();
        let m = text::parse_match(&packet, &names)
            .map_err(|e| Refusal::refused(format!("cannot build the packet: {e:?}")))?;
        let (first, resumed) = self.bridge.trace_ct(&m.flow, now_ms(), &[]);
        let passes: Vec<&crate::ofproto::trace::Trace> = std::iter::once(&first)
            .chain(resumed.iter().map(|r| &r.trace))
            .collect();
        let last = passes.last().copied().unwrap_or(&first);
        // Let through: sent somewhere (not dropped, nor refused with a reset).
        let allowed = last
            .actions
            .iter()
            .any(|a| matches!(a, DpAction::Output(_)));
        let steps: Vec<(u8, Option<&TracedRule>)> = passes
            .iter()
            .flat_map(|t| &t.steps)
            .filter_map(|s| match s {
                TraceStep::Table { table, rule, .. } => Some((*table, rule.as_deref())),
                _ => None,
            })
            .collect();
        // A Service's address: the ingress half is the endpoint's it was translated to.
        let after = Ipv4Addr::from(last.flow.nw_dst());
        let translated_to = (after != to.ip).then(|| format!("{after}:{}", last.flow.tp_dst()));
        let to = if after != to.ip {
            self.policy_end(&after.to_string(), "TO")?
        } else {
            to
        };
        let is_node = |ip: Ipv4Addr| ip == gw_ip || Some(ip) == self.tunnel_local();
        if from.local.is_none() && to.local.is_none() {
            let nodes: Vec<String> = [&from, &to]
                .iter()
                .filter_map(|e| remote_node(e.ip).map(|(n, _)| n))
                .collect();
            return Err(Refusal::refused(format!(
                "neither {} nor {} is a Pod of this node: NetworkPolicy decides nothing here{}",
                from.name,
                to.name,
                if nodes.is_empty() {
                    String::new()
                } else {
                    format!("; ask the switch of {}", nodes.join(" and "))
                }
            )));
        }
        let elsewhere = |e: &End| match remote_node(e.ip) {
            Some((n, _)) => format!("node {n}"),
            None if is_node(e.ip) => "this node".into(),
            None => "outside the cluster".into(),
        };
        let mut halves = Vec::new();
        for (dir, end) in [(Direction::Egress, &from), (Direction::Ingress, &to)] {
            if end.local.is_none() {
                halves.push(PolicyHalf {
                    direction: dir.as_str().into(),
                    end: end.name.clone(),
                    node: elsewhere(end),
                    verdict: None,
                    reason: if is_node(end.ip) {
                        "the node: NetworkPolicy does not apply to it".into()
                    } else if remote_node(end.ip).is_some() {
                        format!("decided on {}", elsewhere(end))
                    } else {
                        "not a Pod: NetworkPolicy does not apply to it".into()
                    },
                    policies: Vec::new(),
                });
                continue;
            }
            halves.push(self.decided_half(dir, end, &steps));
        }
        let stopped_by_policy = halves.iter().any(|h| h.verdict.as_deref() == Some("deny"));
        let dropped_in = (!allowed && !stopped_by_policy).then(|| {
            let t = steps.last().map_or(0, |(t, _)| *t);
            format!(
                "table {t} ({})",
                Table::from_number(t).map_or("user table", Table::name)
            )
        });
        Ok(PolicyCheckResult {
            verdict: if allowed { "allow" } else { "deny" }.into(),
            halves,
            translated_to,
            dropped_in,
        })
    }

    /// The half a local end's table decided, from the rule the trace met there.
    fn decided_half(
        &self,
        dir: Direction,
        end: &End,
        steps: &[(u8, Option<&TracedRule>)],
    ) -> PolicyHalf {
        let mut half = PolicyHalf {
            direction: dir.as_str().into(),
            end: end.name.clone(),
            node: "this node".into(),
            verdict: None,
            reason: String::new(),
            policies: Vec::new(),
        };
        let met = steps
            .iter()
            .rev()
            .find(|(t, _)| *t == dir.table().number())
            .map(|(_, r)| *r);
        let Some(rule) = met else {
            half.reason = "the packet did not reach this table".into();
            return half;
        };
        let Some(rule) = rule else {
            half.verdict = Some("allow".into());
            half.reason = "no rule matched".into();
            return half;
        };
        let policy_name = |id: u32| {
            self.objects
                .by_id(netpol::NETWORK_POLICY_KIND, id)
                .map_or_else(
                    || format!("#{id}"),
                    |k| format!("{}/{}", k.namespace, k.name),
                )
        };
        match rule.priority {
            prio::ALWAYS => {
                half.verdict = Some("allow".into());
                half.reason =
                    "always allowed: to or from the Pod's own node, or the Pod itself".into();
            }
            prio::DENY => {
                half.verdict = Some("deny".into());
                let owners =
                    self.bridge
                        .slot_owners(dir.table().number(), rule.priority, &rule.matching);
                half.policies = owners
                    .into_iter()
                    .filter_map(crate::k8s::pipeline::CookieKind::of)
                    .map(|(_, id)| PolicyRuleRef {
                        policy: policy_name(id as u32),
                        rule: None,
                    })
                    .collect();
                let list: Vec<&str> = half.policies.iter().map(|p| p.policy.as_str()).collect();
                half.reason = format!(
                    "isolated for {} by {}; no rule of theirs allows it",
                    dir.as_str(),
                    list.join(", ")
                );
            }
            0 => {
                half.verdict = Some("allow".into());
                half.reason = format!("not isolated: no policy selects it for {}", dir.as_str());
            }
            _ => match loaded_rule_id(&rule.actions).and_then(parse_rule_id) {
                Some((id, d, i)) => {
                    half.verdict = Some("allow".into());
                    let r = format!("{}[{i}]", d.as_str());
                    half.reason = format!("allowed by {} rule {r}", policy_name(id));
                    half.policies.push(PolicyRuleRef {
                        policy: policy_name(id),
                        rule: Some(r),
                    });
                }
                None => {
                    half.reason = format!("met a rule of priority {}", rule.priority);
                }
            },
        }
        half
    }

    /// An end of `policy-check`: `namespace/pod`, a Pod of `default`, or an address.
    fn policy_end(&self, s: &str, what: &str) -> Result<End, Refusal> {
        let node = self.node_ctx();
        if let Ok(ip) = s.parse::<Ipv4Addr>() {
            let local = self.podnet.bound.with_ip(ip).copied();
            let name = self
                .objects
                .pods_with_ip(ip)
                .next()
                .map_or_else(|| ip.to_string(), |k| format!("{}/{}", k.namespace, k.name));
            return Ok(End { name, ip, local });
        }
        let (namespace, name) = s.split_once('/').unwrap_or(("default", s));
        let key = ObjectKey {
            kind: pod::POD_KIND,
            namespace: namespace.to_string(),
            name: name.to_string(),
        };
        let full = format!("{namespace}/{name}");
        let Some(stored) = self.objects.get(&key) else {
            // A Pod attached here whose object is not known: by its CNI name.
            if let Some(l) = self.podnet.bound.bound(namespace, name, None) {
                return Ok(End {
                    name: full,
                    ip: l.ip,
                    local: Some(*l),
                });
            }
            return Err(Refusal::not_found(format!(
                "{what}: pod {full} is not known here: apply its Pod object, or give its address"
            )));
        };
        let Some(p) = pod::pod_of(&stored.spec) else {
            return Err(Refusal::not_found(format!("{what}: {full} is not a Pod")));
        };
        let Some(ip) = pod_address(&node, &key, p) else {
            return Err(Refusal::refused(format!(
                "{what}: pod {full} has no address policies know it by (no status.podIP, \
                 host network, or ended)"
            )));
        };
        let local = self.podnet.bound.bound(namespace, name, p.ip).copied();
        Ok(End {
            name: full,
            ip,
            local,
        })
    }
}

/// `2026-12-06T22:45:01.123Z` for milliseconds since the epoch (UTC; days to a date
/// as in Howard Hinnant's `civil_from_days`).
pub(super) fn utc(ms: u64) -> String {
    let (secs, ms) = (ms / 1000, ms % 1000);
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

impl Switch {
    /// NetworkPolicy's audit log: each refused new connection as one line, appended
    /// (the file opened for each batch, so it may be rotated away underneath):
    /// `TIME ingress|egress deny pod=NS/NAME policies=NS/P,... PROTO SRC:PORT -> DST:PORT
    /// peer=NS/NAME`.
    pub(super) fn audit(&self, denied: &[super::worker::Denied]) {
        use std::io::Write as _;
        let Some(path) = &self.config.netpol_audit_log else {
            return;
        };
        let mut text = String::new();
        for d in denied {
            let dir = if d.ingress {
                Direction::Ingress
            } else {
                Direction::Egress
            };
            let deny = netpol::deny_rule(dir, d.port, true);
            let policies: Vec<String> = self
                .bridge
                .slot_owners(deny.table, deny.priority, &deny.matching)
                .into_iter()
                .map(|o| {
                    self.owner_name(o)
                        .trim_start_matches("networkpolicy/")
                        .to_string()
                })
                .collect();
            // The Pod object bound to the port, else the port's own name.
            let pod = self
                .podnet
                .bound
                .by_port(d.port)
                .and_then(|l| self.objects.pods_with_ip(l.ip).next())
                .map_or_else(
                    || self.local_pod_name(d.port),
                    |k| format!("{}/{}", k.namespace, k.name),
                );
            let pod = pod.trim_start_matches("pod/");
            let peer_ip = if d.ingress { d.src } else { d.dst };
            let peer = match peer_ip {
                std::net::IpAddr::V4(ip) => self
                    .objects
                    .pods_with_ip(ip)
                    .next()
                    .map(|k| format!(" peer={}/{}", k.namespace, k.name)),
                std::net::IpAddr::V6(_) => None,
            }
            .unwrap_or_default();
            let proto = match d.proto {
                6 => "tcp".to_string(),
                17 => "udp".to_string(),
                132 => "sctp".to_string(),
                1 => "icmp".to_string(),
                n => format!("proto={n}"),
            };
            let _ = writeln!(
                text,
                "{} {} deny pod={pod} policies={} {proto} {}:{} -> {}:{}{peer}",
                utc(d.at_ms),
                dir.as_str(),
                policies.join(","),
                d.src,
                d.sport,
                d.dst,
                d.dport
            );
        }
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(text.as_bytes()));
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the NetworkPolicy audit log");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_times_read_as_dates() {
        assert_eq!(super::utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::utc(951_782_400_007), "2000-02-29T00:00:00.007Z");
        assert_eq!(super::utc(1_796_596_501_123), "2026-12-06T22:35:01.123Z");
    }
}
