//! Human output: aligned tables and the text of each read command.

use std::fmt::Write;

use serde_json::{Value, json};
use vswitch_proto::k8s::object_ref;
use vswitch_proto::rpc::{
    ApplyOutcome, ApplyResult, CacheResult, CtLimits, CtTimeouts, DumpedFlow, DumpedGroup,
    GetResult, NodeInfo, PortInfo, PortStats, ShowResult, VersionResult,
};

use crate::commands::source_label;
use crate::yaml;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    Left,
    /// Numbers: right-aligned, header too, so digits line up under it.
    Right,
}

/// A table with a header row; columns two spaces apart, as wide as their widest cell.
#[derive(Debug)]
pub struct Table {
    columns: Vec<(String, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(columns: &[(&str, Align)]) -> Table {
        Table {
            columns: columns.iter().map(|(n, a)| (n.to_string(), *a)).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.columns.len());
        self.rows.push(cells);
    }

    /// Appends the table to `out`, every line starting with `indent`.
    pub fn render(&self, indent: &str, out: &mut String) {
        let width = |s: &str| s.chars().count();
        let widths: Vec<usize> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, (name, _))| {
                self.rows
                    .iter()
                    .map(|r| width(&r[i]))
                    .chain([width(name)])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let header: Vec<String> = self.columns.iter().map(|(n, _)| n.clone()).collect();
        for cells in [&header].into_iter().chain(&self.rows) {
            let mut line = String::from(indent);
            for (i, cell) in cells.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = widths[i] - width(cell);
                match self.columns[i].1 {
                    Align::Left => {
                        line.push_str(cell);
                        line.extend(std::iter::repeat_n(' ', pad));
                    }
                    Align::Right => {
                        line.extend(std::iter::repeat_n(' ', pad));
                        line.push_str(cell);
                    }
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
}

/// A value the daemon left out prints as `-`.
fn opt(v: Option<impl ToString>) -> String {
    v.map(|v| v.to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "-".into())
}

fn ports_table(ports: &[PortInfo]) -> Table {
    use Align::*;
    let mut t = Table::new(&[
        ("NO", Right),
        ("NAME", Left),
        ("TYPE", Left),
        ("NETNS", Left),
        ("IFNAME", Left),
        ("MAC", Left),
        ("MTU", Right),
        ("IP", Left),
        ("STATE", Left),
        ("OFFLOADS", Left),
    ]);
    for p in ports {
        t.row(vec![
            p.no.to_string(),
            p.name.clone(),
            p.port_type.to_string(),
            opt(p.netns.as_ref()),
            opt(p.ifname.as_ref()),
            opt(Some(&p.mac)),
            opt(p.mtu),
            opt(p.ip.as_ref()),
            opt(Some(&p.state)),
            opt(Some(&p.offloads)),
        ]);
    }
    t
}

/// The counters people look at first lead; the rest (dozens of drop and malformation
/// reasons) follow by name when they are not zero. `--json` has them all.
const FIRST_COUNTERS: [&str; 4] = ["packets", "emc_hits", "megaflow_hits", "upcalls"];

pub fn show(s: &ShowResult, out: &mut String) {
    let _ = writeln!(
        out,
        "bridge {} (vswitchd {}, {} worker{})",
        s.bridge,
        s.version,
        s.workers,
        if s.workers == 1 { "" } else { "s" }
    );
    if s.ports.is_empty() {
        out.push_str("ports: none\n");
    } else {
        out.push_str("ports:\n");
        ports_table(&s.ports).render("  ", out);
    }
    let _ = writeln!(out, "flows: {}   groups: {}", s.n_flows, s.n_groups);
    let counters: Vec<String> = FIRST_COUNTERS
        .iter()
        .filter_map(|k| s.datapath.get(*k).map(|v| format!("{k} {v}")))
        .chain(
            s.datapath
                .iter()
                .filter(|(k, v)| **v != 0 && !FIRST_COUNTERS.contains(&k.as_str()))
                .map(|(k, v)| format!("{k} {v}")),
        )
        .collect();
    let _ = writeln!(
        out,
        "datapath: {}",
        if counters.is_empty() {
            "-".into()
        } else {
            counters.join(", ")
        }
    );
    if let Some(c) = &s.conntrack {
        let _ = writeln!(
            out,
            "conntrack: {} connections, limit {}, capacity {}; refused: full {}, zone {}, \
             nat exhausted {}; clashes resolved {}; early drops {}, invalid {}",
            c.connections,
            c.limit,
            c.capacity,
            c.refused_full,
            c.refused_zone,
            c.nat_exhausted,
            c.clash_resolved,
            c.early_drops,
            c.invalid
        );
    }
    if let Some(c) = &s.control {
        let _ = writeln!(
            out,
            "control: {} connections (max {}), {} bytes buffered (max {}); accepted {}, \
             refused {}, evicted {}, idle closed {}, too long {}, accept errors {}",
            c.connections,
            c.max_connections,
            c.buffered,
            c.buffer_limit,
            c.accepted,
            c.refused,
            c.evicted,
            c.idle_closed,
            c.too_long,
            c.accept_errors
        );
    }
    if let Some(a) = &s.api {
        let _ = writeln!(
            out,
            "kubernetes api: {} ({}, {})",
            a.server,
            if a.up { "up" } else { "down" },
            if a.ready {
                "synced"
            } else {
                "not synced yet: CNI ADD waits"
            }
        );
        for k in &a.kinds {
            let _ = writeln!(
                out,
                "  {}: {} objects, last listed {}, {} lists, {} events, {} refused{}",
                k.kind,
                k.objects,
                k.synced.as_deref().unwrap_or("never"),
                k.lists,
                k.events,
                k.refused,
                k.error
                    .as_deref()
                    .map(|e| format!("; down: {e}"))
                    .unwrap_or_default()
            );
        }
    }
}

/// Lines as they are, one a line.
pub fn lines(lines: &[String], out: &mut String) {
    for l in lines {
        out.push_str(l);
        out.push('\n');
    }
}

/// `ct-get-limits`, as `ovs-appctl dpctl/ct-get-limits` prints it.
pub fn ct_limits(l: &CtLimits, out: &mut String) {
    let _ = writeln!(out, "default limit={}", l.default);
    for z in &l.zones {
        let _ = writeln!(out, "zone={},limit={},count={}", z.zone, z.limit, z.count);
    }
}

/// `ct-get-timeouts`: NAME=SECONDS, what `ct-set-timeouts` takes.
pub fn ct_timeouts(t: &CtTimeouts, out: &mut String) {
    for x in &t.timeouts {
        let _ = writeln!(out, "{}={}", x.name, x.secs);
    }
}

pub fn version(client: &str, protocol: u32, daemon: &VersionResult, out: &mut String) {
    let _ = write!(
        out,
        "vswitchd {} (protocol {})",
        daemon.version, daemon.protocol
    );
    if daemon.protocol != protocol {
        let _ = write!(
            out,
            ": vswitchctl {client} speaks protocol {protocol}, some commands may fail"
        );
    }
    out.push('\n');
}

pub fn list_ports(ports: &[PortInfo], out: &mut String) {
    ports_table(ports).render("", out);
}

pub fn list_pods(l: &vswitch_proto::cni::PodList, out: &mut String) {
    use Align::*;
    match (&l.pod_cidr, &l.gateway) {
        (Some(c), Some(g)) => {
            let _ = writeln!(
                out,
                "Pod CIDR {c}, gateway {g}, {} Pods, {} addresses free",
                l.pods.len(),
                l.free
            );
        }
        _ => out.push_str("no Pod CIDR (vswitchd runs without --pod-cidr)\n"),
    }
    let mut t = Table::new(&[
        ("CONTAINER", Left),
        ("POD", Left),
        ("IFNAME", Left),
        ("IP", Left),
        ("MAC", Left),
        ("PORT", Left),
        ("IPAM", Left),
        ("STATE", Left),
    ]);
    for p in &l.pods {
        t.row(vec![
            p.container_id.chars().take(12).collect(),
            p.pod.clone().unwrap_or_else(|| "-".into()),
            p.ifname.clone(),
            p.ip.clone(),
            p.mac.clone(),
            format!("{} ({})", p.port, p.port_no),
            p.ipam.clone(),
            p.state.clone(),
        ]);
    }
    if !l.pods.is_empty() {
        t.render("", out);
    }
}

pub fn dump_ports(stats: &[PortStats], out: &mut String) {
    use Align::*;
    let mut t = Table::new(&[
        ("NO", Right),
        ("NAME", Left),
        ("RX_PACKETS", Right),
        ("RX_BYTES", Right),
        ("RX_DROPPED", Right),
        ("RX_ERRORS", Right),
        ("TX_PACKETS", Right),
        ("TX_BYTES", Right),
        ("TX_DROPPED", Right),
        ("TX_ERRORS", Right),
    ]);
    for s in stats {
        t.row(vec![
            s.no.to_string(),
            s.name.clone(),
            s.rx_packets.to_string(),
            s.rx_bytes.to_string(),
            s.rx_dropped.to_string(),
            s.rx_errors.to_string(),
            s.tx_packets.to_string(),
            s.tx_bytes.to_string(),
            s.tx_dropped.to_string(),
            s.tx_errors.to_string(),
        ]);
    }
    t.render("", out);
}

/// A dumped line, with the leading space `ovs-ofctl dump-flows` and `dump-groups` print.
fn dumped_line(line: &str, out: &mut String) {
    if !line.starts_with(' ') {
        out.push(' ');
    }
    out.push_str(line.trim_end_matches('\n'));
    out.push('\n');
}

/// `dump-flows`; with `names`, a switch-made flow's owners follow its cookie:
/// ` cookie=0x300000000000001 (node/n1), duration=...`.
pub fn dump_flows(flows: &[DumpedFlow], names: bool, out: &mut String) {
    for f in flows {
        if names {
            dumped_line(&with_owners(&f.line, "cookie=", &f.owners), out);
        } else {
            dumped_line(&f.line, out);
        }
    }
}

/// `dump-groups`; with `names`, a switch-made group's owners follow its id:
/// ` group_id=1 (service/default/web),type=select,...`.
pub fn dump_groups(groups: &[DumpedGroup], names: bool, out: &mut String) {
    for g in groups {
        if names {
            dumped_line(&with_owners(&g.line, "group_id=", &g.owners), out);
        } else {
            dumped_line(&g.line, out);
        }
    }
}

/// `line` with `(owner, owner)` after its first field when that field is `field` (up to
/// the first `,` or space), or at the start when it is not; unchanged without owners.
fn with_owners(line: &str, field: &str, owners: &[String]) -> String {
    if owners.is_empty() {
        return line.to_string();
    }
    let names = format!("({})", owners.join(", "));
    let body = line.trim_start();
    if !body.starts_with(field) {
        return format!("{names} {body}");
    }
    let end = body.find([',', ' ']).unwrap_or(body.len());
    format!("{} {names}{}", &body[..end], &body[end..])
}

/// `dump-group-stats`, as `ovs-ofctl dump-group-stats` prints it less `duration` and
/// `ref_count`: ` group_id=1,packet_count=5,byte_count=300,bucket0:packet_count=3,...`,
/// buckets numbered by their position.
pub fn dump_group_stats(groups: &[DumpedGroup], out: &mut String) {
    for g in groups {
        let mut line = format!(
            "group_id={},packet_count={},byte_count={}",
            g.group_id, g.packets, g.bytes
        );
        for (i, b) in g.buckets.iter().enumerate() {
            let _ = write!(
                line,
                ",bucket{i}:packet_count={},byte_count={}",
                b.packets, b.bytes
            );
        }
        dumped_line(&line, out);
    }
}

/// `dump-meters`, as `ovs-ofctl dump-meters` prints it less its header: each meter's bands
/// on the lines after it, a blank line between meters.
pub fn dump_meters(meters: &[vswitch_proto::rpc::DumpedMeter], out: &mut String) {
    for (i, m) in meters.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        text(&m.line, out);
    }
}

/// `meter-stats`, as `ovs-ofctl meter-stats` prints it less its header.
pub fn meter_stats(meters: &[vswitch_proto::rpc::DumpedMeter], out: &mut String) {
    for (i, m) in meters.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "meter:{} flow_count:{} packet_in_count:{} byte_in_count:{} duration:{}.{:03}s bands:",
            m.meter_id,
            m.flow_count,
            m.packets_in,
            m.bytes_in,
            m.duration_ms / 1000,
            m.duration_ms % 1000
        );
        for (j, b) in m.bands.iter().enumerate() {
            let _ = writeln!(
                out,
                "{j}: packet_count:{} byte_count:{}",
                b.packets, b.bytes
            );
        }
    }
}

/// Text as the daemon wrote it, ending in exactly one newline.
/// `policy-check`: the verdict alone on the first line, then one line per half.
pub fn policy_check(r: &vswitch_proto::rpc::PolicyCheckResult, out: &mut String) {
    out.push_str(&r.verdict);
    out.push('\n');
    if let Some(t) = &r.translated_to {
        let _ = writeln!(out, "service: translated to {t}");
    }
    for h in &r.halves {
        let verdict = h.verdict.as_deref().unwrap_or("-");
        let _ = writeln!(
            out,
            "{:<7} {verdict:<5} {} ({}): {}",
            h.direction, h.end, h.node, h.reason
        );
    }
    if let Some(d) = &r.dropped_in {
        let _ = writeln!(out, "dropped before policy decided, in {d}");
    }
}

pub fn text(t: &str, out: &mut String) {
    out.push_str(t.trim_end_matches('\n'));
    out.push('\n');
}

pub fn dump_cache(c: &CacheResult, out: &mut String) {
    use Align::*;
    for (i, w) in c.workers.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let _ = writeln!(out, "worker {}:", w.worker);
        let _ = writeln!(out, "  exact-match cache: {} entries", w.emc.len());
        if !w.emc.is_empty() {
            let mut t = Table::new(&[("KEY", Left), ("HITS", Right), ("MEGAFLOW", Left)]);
            for e in &w.emc {
                t.row(vec![e.key.clone(), e.hits.to_string(), e.megaflow.clone()]);
            }
            t.render("    ", out);
        }
        let _ = writeln!(out, "  megaflows: {}", w.megaflows.len());
        if !w.megaflows.is_empty() {
            let mut t = Table::new(&[
                ("MATCH", Left),
                ("ACTIONS", Left),
                ("PACKETS", Right),
                ("BYTES", Right),
                ("IDLE", Right),
            ]);
            for m in &w.megaflows {
                t.row(vec![
                    m.matching.clone(),
                    m.actions.clone(),
                    m.packets.to_string(),
                    m.bytes.to_string(),
                    format!("{}.{:03}s", m.idle_ms / 1000, m.idle_ms % 1000),
                ]);
            }
            t.render("    ", out);
        }
    }
}

/// `list-nodes`: every column the switch keeps.
pub fn list_nodes(nodes: &[NodeInfo], out: &mut String) {
    use Align::*;
    let mut t = Table::new(&[
        ("NAME", Left),
        ("POD-CIDR", Left),
        ("NODE-IP", Left),
        ("GATEWAY", Left),
        ("LOCAL", Left),
        ("SOURCE", Left),
    ]);
    for n in nodes {
        t.row(vec![
            n.name.clone(),
            opt(Some(&n.pod_cidr)),
            opt(Some(&n.node_ip)),
            opt(Some(&n.gateway)),
            if n.local { "yes" } else { "no" }.into(),
            opt(Some(&n.source)),
        ]);
    }
    t.render("", out);
}

/// How kubectl names an object: `node/n1`, `endpointslice.discovery.k8s.io/web-abc`
/// (the kind in lower case, then its API group unless it is the core group).
pub fn kubectl_ref(kind: &str, group: &str, name: &str) -> String {
    let plain = object_ref(kind, name);
    match plain.split_once('/') {
        Some((kind, name)) if !group.is_empty() => format!("{kind}.{group}/{name}"),
        _ => plain,
    }
}

/// The API group of an `apiVersion`: `discovery.k8s.io/v1` -> `discovery.k8s.io`, `v1`
/// (the core group) -> empty.
pub fn api_group(api_version: &str) -> &str {
    api_version
        .rsplit_once('/')
        .map_or("", |(group, _version)| group)
}

/// `get`'s table: the columns that are not `wide` unless `wide`, and a NAMESPACE column
/// first for a namespaced kind listed across namespaces, as kubectl prints it. A row with
/// fewer cells than columns shows `<none>` in the missing ones.
pub fn get_table(r: &GetResult, wide: bool, all_namespaces: bool, out: &mut String) {
    let shown: Vec<usize> = (0..r.columns.len())
        .filter(|&i| wide || !r.columns[i].wide)
        .collect();
    let namespace_column = all_namespaces && r.namespaced;
    let mut columns: Vec<(&str, Align)> = Vec::new();
    if namespace_column {
        columns.push(("NAMESPACE", Align::Left));
    }
    columns.extend(
        shown
            .iter()
            .map(|&i| (r.columns[i].name.as_str(), Align::Left)),
    );
    let mut t = Table::new(&columns);
    for item in &r.items {
        let mut row = Vec::with_capacity(columns.len());
        if namespace_column {
            row.push(item.namespace.clone().unwrap_or_default());
        }
        row.extend(shown.iter().map(|&i| {
            item.cells
                .get(i)
                .cloned()
                .unwrap_or_else(|| "<none>".into())
        }));
        t.row(row);
    }
    t.render("", out);
}

/// What kubectl says on stderr when a table would be empty.
pub fn no_resources(r: &GetResult, namespace: Option<&str>, all_namespaces: bool) -> String {
    if r.namespaced && !all_namespaces {
        format!(
            "No resources found in {} namespace.",
            namespace.unwrap_or("default")
        )
    } else {
        "No resources found".into()
    }
}

/// The objects of `get -o json|yaml`: the one object asked for by name, or else kubectl's
/// `List` of them all.
pub fn get_objects(r: &GetResult, by_name: bool) -> Value {
    match r.items.as_slice() {
        [one] if by_name => one.object.clone(),
        items => json!({
            "apiVersion": "v1",
            "items": items.iter().map(|i| i.object.clone()).collect::<Vec<_>>(),
            "kind": "List",
            "metadata": {"resourceVersion": ""},
        }),
    }
}

/// `-o json`: indented by 4 spaces, as kubectl prints it.
pub fn get_json(objects: &Value, out: &mut String) {
    use serde::Serialize;
    let mut bytes = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(
        &mut bytes,
        serde_json::ser::PrettyFormatter::with_indent(b"    "),
    );
    // Serializing a `Value` into memory cannot fail: its keys are strings.
    let _ = objects.serialize(&mut ser);
    out.push_str(&String::from_utf8_lossy(&bytes));
    out.push('\n');
}

/// `-o yaml`.
pub fn get_yaml(objects: &Value, out: &mut String) {
    out.push_str(&yaml::to_yaml(objects));
}

/// `-o name`: `node/n1`, `endpointslice.discovery.k8s.io/web-abc`, one a line.
pub fn get_names(r: &GetResult, out: &mut String) {
    let group = api_group(&r.api_version);
    for item in &r.items {
        let _ = writeln!(out, "{}", kubectl_ref(&r.kind, group, &item.name));
    }
}

/// Outcomes of `apply` and `delete` other than errors, one a line as kubectl prints them:
/// `node/worker-2 created`, `endpointslice.discovery.k8s.io/web-abc configured`,
/// `service/web skipped: kind Service is not handled yet`.
pub fn outcomes(r: &ApplyResult, out: &mut String) {
    for o in r.results.iter().filter(|o| o.outcome != "error") {
        let _ = write!(
            out,
            "{} {}",
            kubectl_ref(&o.kind, &o.group, &o.name),
            o.outcome
        );
        if let Some(m) = o.message.as_deref().filter(|m| !m.is_empty()) {
            let _ = write!(out, ": {m}");
        }
        out.push('\n');
    }
}

/// The `error` outcomes, one a line, naming the file, the document and the object:
/// `error: nodes.yaml: document 2: node/worker-2: spec.podCIDR: ...`.
pub fn outcome_errors(r: &ApplyResult) -> String {
    let mut lines = String::new();
    for o in r.results.iter().filter(|o| o.outcome == "error") {
        let _ = writeln!(lines, "error: {}", located(o));
    }
    lines
}

fn located(o: &ApplyOutcome) -> String {
    format!(
        "{}: document {}: {}: {}",
        source_label(&o.source),
        o.doc,
        kubectl_ref(&o.kind, &o.group, &o.name),
        o.message.as_deref().unwrap_or("refused")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use vswitch_proto::rpc::PortType;

    fn port(no: u32, name: &str) -> PortInfo {
        PortInfo {
            no,
            name: name.into(),
            port_type: PortType::Internal,
            netns: None,
            ifname: Some(name.into()),
            mac: "0a:00:00:00:00:01".into(),
            mtu: Some(1500),
            ip: Some("10.244.1.1/24".into()),
            gateway: None,
            state: "up".into(),
            offloads: "csum,tso4,tso6".into(),
        }
    }

    #[test]
    fn show_as_documented() {
        let s = ShowResult {
            bridge: "br0".into(),
            version: "0.1.0".into(),
            workers: 2,
            ports: vec![port(1, "gw0")],
            n_flows: 12,
            n_groups: 1,
            datapath: [
                ("emc_hits", 1200),
                ("packets", 1234),
                ("dropped.ttl", 3),
                ("malformed.arp_too_short", 0),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
            conntrack: None,
            control: None,
            api: None,
        };
        let mut out = String::new();
        show(&s, &mut out);
        assert_eq!(
            out,
            "bridge br0 (vswitchd 0.1.0, 2 workers)\n\
             ports:\n  \
             NO  NAME  TYPE      NETNS  IFNAME  MAC                 MTU  IP             STATE  OFFLOADS\n   \
              1  gw0   internal  -      gw0     0a:00:00:00:00:01  1500  10.244.1.1/24  up     csum,tso4,tso6\n\
             flows: 12   groups: 1\n\
             datapath: packets 1234, emc_hits 1200, dropped.ttl 3\n"
        );
    }

    #[test]
    fn columns_align_and_numbers_go_right() {
        let mut t = Table::new(&[("N", Align::Right), ("NAME", Align::Left)]);
        t.row(vec!["1".into(), "a".into()]);
        t.row(vec!["100".into(), "longer-name".into()]);
        let mut out = String::new();
        t.render("", &mut out);
        assert_eq!(out, "  N  NAME\n  1  a\n100  longer-name\n");
    }

    fn node(name: &str, local: bool, source: &str) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            pod_cidr: "10.244.1.0/24".into(),
            node_ip: "192.168.56.11".into(),
            gateway: "10.244.1.1".into(),
            local,
            source: source.into(),
        }
    }

    #[test]
    fn node_tables() {
        let nodes = [
            node("worker-1", true, "flags"),
            node("worker-22", false, "manifest"),
        ];
        let mut out = String::new();
        list_nodes(&nodes, &mut out);
        assert_eq!(
            out,
            "\
NAME       POD-CIDR       NODE-IP        GATEWAY     LOCAL  SOURCE
worker-1   10.244.1.0/24  192.168.56.11  10.244.1.1  yes    flags
worker-22  10.244.1.0/24  192.168.56.11  10.244.1.1  no     manifest
"
        );
    }

    #[test]
    fn outcome_lines_like_kubectl() {
        let o = |source: &str, kind: &str, name: &str, outcome: &str, message: Option<&str>| {
            let (kind, group) = kind.split_once('.').unwrap_or((kind, ""));
            ApplyOutcome {
                source: source.into(),
                doc: 2,
                kind: kind.into(),
                group: group.into(),
                namespace: None,
                name: name.into(),
                outcome: outcome.into(),
                message: message.map(Into::into),
            }
        };
        let r = ApplyResult {
            results: vec![
                o("n.yaml", "Node", "w1", "created", None),
                o(
                    "n.yaml",
                    "Node",
                    "w2",
                    "error",
                    Some("spec.podCIDR: missing"),
                ),
                o("n.yaml", "Node", "w3", "unchanged", None),
                o(
                    "s.yaml",
                    "EndpointSlice.discovery.k8s.io",
                    "web-abc",
                    "configured",
                    None,
                ),
                o(
                    "s.yaml",
                    "EndpointSlice.discovery.k8s.io",
                    "web-x",
                    "error",
                    Some("endpoints[0]: missing"),
                ),
                o(
                    "-",
                    "Service",
                    "web",
                    "skipped",
                    Some("kind Service is not handled yet"),
                ),
                o("-", "Node", "", "error", None),
            ],
        };
        let mut out = String::new();
        outcomes(&r, &mut out);
        assert_eq!(
            out,
            "node/w1 created\nnode/w3 unchanged\n\
             endpointslice.discovery.k8s.io/web-abc configured\n\
             service/web skipped: kind Service is not handled yet\n"
        );
        assert_eq!(
            outcome_errors(&r),
            "error: n.yaml: document 2: node/w2: spec.podCIDR: missing\n\
             error: s.yaml: document 2: endpointslice.discovery.k8s.io/web-x: \
             endpoints[0]: missing\n\
             error: <stdin>: document 2: node/<no name>: refused\n"
        );
    }

    #[test]
    fn kubectl_names_objects_by_kind_and_group() {
        assert_eq!(kubectl_ref("Node", "", "n1"), "node/n1");
        assert_eq!(
            kubectl_ref("EndpointSlice", "discovery.k8s.io", "x"),
            "endpointslice.discovery.k8s.io/x"
        );
        assert_eq!(kubectl_ref("", "apps", ""), "object.apps/<no name>");
        assert_eq!(api_group("v1"), "");
        assert_eq!(api_group("discovery.k8s.io/v1"), "discovery.k8s.io");
    }

    #[test]
    fn owners_follow_the_first_field() {
        let owners = ["node/n1".to_string(), "pod/default/web".to_string()];
        for (line, field, want) in [
            (
                "cookie=0x3, duration=1s, table=0, priority=1 actions=drop",
                "cookie=",
                "cookie=0x3 (node/n1, pod/default/web), duration=1s, table=0, priority=1 actions=drop",
            ),
            (
                " cookie=0x3/0xff, table=0",
                "cookie=",
                "cookie=0x3/0xff (node/n1, pod/default/web), table=0",
            ),
            (
                "priority=1 actions=drop",
                "cookie=",
                "(node/n1, pod/default/web) priority=1 actions=drop",
            ),
            (
                "group_id=7,type=all,bucket=bucket_id:0,actions=output:1",
                "group_id=",
                "group_id=7 (node/n1, pod/default/web),type=all,bucket=bucket_id:0,actions=output:1",
            ),
            (
                "group_id=7",
                "group_id=",
                "group_id=7 (node/n1, pod/default/web)",
            ),
        ] {
            assert_eq!(with_owners(line, field, &owners), want, "{line:?}");
        }
        assert_eq!(
            with_owners(" cookie=0x0, x", "cookie=", &[]),
            " cookie=0x0, x"
        );
    }

    #[test]
    fn dumped_lines_start_with_one_space() {
        let mut out = String::new();
        dumped_line("priority=1 actions=drop", &mut out);
        dumped_line(" priority=2 actions=drop\n", &mut out);
        assert_eq!(out, " priority=1 actions=drop\n priority=2 actions=drop\n");
    }

    /// The layout of Open vSwitch 3.1's `dump-meters` and `meter-stats`, less the header.
    #[test]
    fn meters_print_as_ovs_ofctl() {
        use vswitch_proto::rpc::{BandStats, DumpedMeter};
        let m = |id: u32, line: &str| DumpedMeter {
            meter_id: id,
            line: line.into(),
            flow_count: 1,
            packets_in: 7,
            bytes_in: 420,
            duration_ms: 37,
            bands: vec![BandStats {
                packets: 2,
                bytes: 120,
            }],
        };
        let ms = [
            m(
                1,
                "meter=1 kbps burst bands=\ntype=drop rate=1000 burst_size=100",
            ),
            m(2, "meter=2 pktps bands=\ntype=drop rate=10"),
        ];
        let mut out = String::new();
        dump_meters(&ms, &mut out);
        assert_eq!(
            out,
            "meter=1 kbps burst bands=\ntype=drop rate=1000 burst_size=100\n\n\
             meter=2 pktps bands=\ntype=drop rate=10\n"
        );
        let mut out = String::new();
        meter_stats(&ms[..1], &mut out);
        assert_eq!(
            out,
            "meter:1 flow_count:1 packet_in_count:7 byte_in_count:420 duration:0.037s bands:\n\
             0: packet_count:2 byte_count:120\n"
        );
    }
}
