//! The user's flows and groups (`add-flow`, `mod-flows`, `del-flows`, `dump-flows`, and
//! the group calls), and how the switch names the owners of its own.

use super::{Refusal, Switch};
use crate::k8s::pipeline::{CookieKind, SYSTEM_GROUPS, reserved_cookie};
use crate::ofproto::{FlowModError, Origin, now_ms};
use crate::store::Op;
use std::collections::HashSet;
use vswitch_proto::flowmod::{FlowSpec, Usage};
use vswitch_proto::group::GroupSpec;
use vswitch_proto::rpc;
use vswitch_proto::text;

impl Switch {
    /// At start: the user's groups and flows as saved (port numbers, no names needed).
    pub(super) fn restore_flows(
        &mut self,
        image: &crate::store::Image,
    ) -> Result<(), super::StartError> {
        let path = self.store.path();
        let bad = |what, index, message: String| super::StartError::BadLine {
            path: path.clone(),
            what,
            index,
            message,
        };
        for (i, line) in image.meters.values().enumerate() {
            let m = text::parse_meter(line).map_err(|e| bad("meter", i + 1, e.to_string()))?;
            self.bridge
                .add_meter(&m, now_ms())
                .map_err(|e| bad("meter", i + 1, e.to_string()))?;
        }
        // A group's buckets may name another group: add them until none is left whose
        // every reference is there.
        let mut groups: Vec<(usize, GroupSpec)> = Vec::new();
        for (i, line) in image.groups.values().enumerate() {
            let g = text::parse_group(line, &text::NoPortNames)
                .map_err(|e| bad("group", i + 1, e.to_string()))?;
            groups.push((i, g));
        }
        while !groups.is_empty() {
            let before = groups.len();
            let mut last_err = None;
            groups.retain(|(i, g)| match self.bridge.add_group(g) {
                Ok(()) => false,
                Err(FlowModError::NoSuchGroup(_)) => true,
                Err(e) => {
                    last_err.get_or_insert((*i, e.to_string()));
                    false
                }
            });
            if let Some((i, e)) = last_err {
                return Err(bad("group", i + 1, e));
            }
            if groups.len() == before {
                let (i, g) = &groups[0];
                let e = self.bridge.add_group(g).err().map(|e| e.to_string());
                return Err(bad("group", i + 1, e.unwrap_or_default()));
            }
        }
        let mut specs = Vec::with_capacity(image.flows.len());
        for (i, line) in image.flows.values().enumerate() {
            specs.push(
                text::parse_flow(line, Usage::Add, &text::NoPortNames)
                    .map_err(|e| bad("flow", i + 1, e.to_string()))?,
            );
        }
        self.bridge
            .add_flows(&specs, now_ms())
            .map_err(|e| bad("flow", 0, e.to_string()))
    }

    fn parse_flows(&self, lines: &[String], usage: Usage) -> Result<Vec<FlowSpec>, Refusal> {
        lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let spec = text::parse_flow(l, usage, &self.names()).map_err(|e| {
                    Refusal::refused(format!("flow {}, {}", i + 1, e.render(l))).with_index(i)
                })?;
                if spec.cookie_mask == 0 && reserved_cookie(spec.cookie) {
                    return Err(Refusal::refused(format!(
                        "flow {}: cookie {:#x} is in the ranges the switch keeps for its own \
                         flows (top byte 0x01 to 0x{:02x}); use another cookie",
                        i + 1,
                        spec.cookie,
                        CookieKind::ALL.iter().map(|k| *k as u8).max().unwrap_or(1)
                    ))
                    .with_index(i));
                }
                Ok(spec)
            })
            .collect()
    }

    pub fn add_flows(&mut self, p: rpc::FlowsParams) -> Result<rpc::Count, Refusal> {
        let specs = self.parse_flows(&p.flows, Usage::Add)?;
        let now = now_ms();
        self.transact(|sw, _| {
            sw.bridge
                .add_flows(&specs, now)
                .map_err(|e| Refusal::refused(e.to_string()))
        })?;
        Ok(rpc::Count {
            count: specs.len() as u64,
        })
    }

    pub fn mod_flows(&mut self, p: rpc::FlowsParams) -> Result<rpc::Count, Refusal> {
        let specs = self.parse_flows(&p.flows, Usage::Modify)?;
        let now = now_ms();
        let n = self.transact(|sw, _| {
            let mut n = 0;
            for s in &specs {
                n += sw
                    .bridge
                    .modify_flows(s, p.strict, now)
                    .map_err(|e| Refusal::refused(e.to_string()))?;
            }
            Ok(n)
        })?;
        Ok(rpc::Count { count: n as u64 })
    }

    fn criteria(&self, c: &Option<String>) -> Result<FlowSpec, Refusal> {
        match c.as_deref().map(str::trim) {
            None | Some("") => Ok(FlowSpec::default()),
            Some(line) => text::parse_flow(line, Usage::Select, &self.names())
                .map_err(|e| Refusal::refused(e.render(line))),
        }
    }

    pub fn del_flows(&mut self, p: rpc::SelectFlowsParams) -> Result<rpc::Count, Refusal> {
        let crit = self.criteria(&p.criteria)?;
        let n = self.transact(|sw, _| Ok(sw.bridge.delete_flows(&crit, p.strict).len()))?;
        Ok(rpc::Count { count: n as u64 })
    }

    pub fn dump_flows(&self, p: rpc::SelectFlowsParams) -> Result<Vec<rpc::DumpedFlow>, Refusal> {
        let crit = self.criteria(&p.criteria)?;
        let names = self.names();
        let now = now_ms();
        Ok(self
            .bridge
            .dump_flows(Some(&crit), now)
            .into_iter()
            .filter(|(r, _)| {
                !p.strict || (r.priority == crit.priority && r.matching == crit.matching)
            })
            .map(|(r, st)| {
                let spec = r.to_spec();
                let owners = if r.origin == Origin::System {
                    self.bridge
                        .slot_owners(r.table, r.priority, &r.matching)
                        .into_iter()
                        .map(|o| self.owner_name(o))
                        .collect()
                } else {
                    Vec::new()
                };
                rpc::DumpedFlow {
                    table: r.table,
                    priority: r.priority,
                    cookie: format!("{:#x}", r.cookie),
                    duration_ms: st.duration_ms,
                    n_packets: st.n_packets,
                    n_bytes: st.n_bytes,
                    idle_timeout: r.idle_timeout,
                    hard_timeout: r.hard_timeout,
                    matching: text::display_match(&r.matching, None, &names).to_string(),
                    actions: text::display_actions(&r.actions, &names).to_string(),
                    line: format!(" {}", text::display_flow(&spec, &names, Some(&st))),
                    owners,
                }
            })
            .collect())
    }

    /// What `dump-flows --names` calls the owner of the switch's rules with this
    /// cookie: `node/NAME` (this node's own pipeline, or a remote node), `pod/NS/NAME`,
    /// `port/NAME` (a Pod added by hand), `service/NS/NAME`, `networkpolicy/NS/NAME`.
    pub(super) fn owner_name(&self, cookie: u64) -> String {
        match CookieKind::of(cookie) {
            Some((CookieKind::Node, _)) => format!("node/{}", self.config.node_name),
            Some((CookieKind::Pod, port)) => self.local_pod_name(port as u32),
            Some((CookieKind::RemoteNode, id)) => self
                .objects
                .by_id(vswitch_proto::k8s::NODE_KIND, id as u32)
                .map_or_else(|| format!("node/#{id}"), |k| k.to_string()),
            Some((CookieKind::Service, id)) => self
                .objects
                .by_id("Service", id as u32)
                .map_or_else(|| format!("service/#{id}"), |k| k.to_string()),
            // Pods and Namespaces own no rules; their numbers are above the policies'.
            Some((CookieKind::NetworkPolicy, id)) => self
                .objects
                .by_id("NetworkPolicy", id as u32)
                .filter(|_| id >> 32 == 0)
                .map_or_else(|| format!("networkpolicy/#{id}"), |k| k.to_string()),
            None => format!("{cookie:#x}"),
        }
    }

    pub fn add_groups(&mut self, p: rpc::GroupsParams) -> Result<rpc::Count, Refusal> {
        self.set_groups(p, false)
    }

    /// `mod-group`: replace existing groups' type and buckets (the flows using them stay).
    pub fn mod_groups(&mut self, p: rpc::GroupsParams) -> Result<rpc::Count, Refusal> {
        self.set_groups(p, true)
    }

    fn set_groups(&mut self, p: rpc::GroupsParams, modify: bool) -> Result<rpc::Count, Refusal> {
        let groups: Vec<GroupSpec> = p
            .groups
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let g = text::parse_group(l, &self.names()).map_err(|e| {
                    Refusal::refused(format!("group {}, {}", i + 1, e.render(l))).with_index(i)
                })?;
                if SYSTEM_GROUPS.contains(&g.group_id) {
                    return Err(Refusal::refused(format!(
                        "group {}: ids from {:#x} up are the switch's own; use a smaller id",
                        i + 1,
                        SYSTEM_GROUPS.start()
                    ))
                    .with_index(i));
                }
                Ok(g)
            })
            .collect::<Result<_, _>>()?;
        let mut ids = HashSet::new();
        for g in &groups {
            if !ids.insert(g.group_id) {
                return Err(Refusal::conflict(format!(
                    "group {} appears twice in this request",
                    g.group_id
                )));
            }
        }
        self.transact(|sw, _| {
            for g in &groups {
                if modify {
                    sw.bridge.modify_group(g).map_err(|e| match e {
                        FlowModError::NoSuchGroup(_) => Refusal::not_found(e.to_string()),
                        e => Refusal::refused(e.to_string()),
                    })?;
                } else {
                    sw.bridge
                        .add_group(g)
                        .map_err(|e| Refusal::conflict(e.to_string()))?;
                }
            }
            Ok(())
        })?;
        Ok(rpc::Count {
            count: groups.len() as u64,
        })
    }

    pub fn del_groups(&mut self, p: rpc::DelGroupsParams) -> Result<rpc::Count, Refusal> {
        if let Some(id) = p.group_id {
            match self.bridge.pipeline().group(id) {
                None => return Err(Refusal::not_found(format!("group {id} does not exist"))),
                Some(g) if g.origin != Origin::User => {
                    return Err(Refusal::refused(format!(
                        "group {id} belongs to the switch ({}): it goes with what it was made for",
                        self.group_owner_names(id).join(", ")
                    )));
                }
                Some(_) => {}
            }
        }
        let gone = self.transact(|sw, _| Ok(sw.bridge.delete_groups(p.group_id)))?;
        Ok(rpc::Count {
            count: gone.len() as u64,
        })
    }

    /// `add-meter`: new meters (all or none), kept in the state.
    pub fn add_meters(&mut self, p: rpc::MetersParams) -> Result<rpc::Count, Refusal> {
        let meters: Vec<vswitch_proto::meter::MeterSpec> = p
            .meters
            .iter()
            .enumerate()
            .map(|(i, l)| {
                text::parse_meter(l).map_err(|e| {
                    Refusal::refused(format!("meter {}, {}", i + 1, e.render(l))).with_index(i)
                })
            })
            .collect::<Result<_, _>>()?;
        let mut ids = HashSet::new();
        for m in &meters {
            if !ids.insert(m.meter_id) {
                return Err(Refusal::conflict(format!(
                    "meter {} appears twice in this request",
                    m.meter_id
                )));
            }
        }
        let n = meters.len() as u64;
        self.transact(|sw, txn| {
            let now = now_ms();
            for m in &meters {
                sw.bridge
                    .add_meter(m, now)
                    .map_err(|e| Refusal::conflict(e.to_string()))?;
                let id = m.meter_id;
                // Meters change in place, outside the bridge's undo log.
                txn.on_undo(move |sw| {
                    sw.bridge.delete_meters(Some(id));
                });
                txn.op(Op::Meter {
                    id,
                    v: Some(text::display_meter(m).replace('\n', " ")),
                });
            }
            Ok(())
        })?;
        Ok(rpc::Count { count: n })
    }

    /// `del-meters [meter=N]`: remove meters and the flows that use them.
    pub fn del_meters(&mut self, p: rpc::MeterIdParams) -> Result<rpc::Count, Refusal> {
        if let Some(id) = p.meter_id
            && self.bridge.pipeline().meter(id).is_none()
        {
            return Err(Refusal::not_found(format!("meter {id} does not exist")));
        }
        let gone = self.transact(|sw, txn| {
            let kept: Vec<vswitch_proto::meter::MeterSpec> = sw
                .bridge
                .dump_meters(p.meter_id, 0)
                .into_iter()
                .map(|(m, _, _)| m)
                .collect();
            let gone = sw.bridge.delete_meters(p.meter_id);
            txn.on_undo(move |sw| {
                for m in &kept {
                    let _ = sw.bridge.add_meter(m, now_ms());
                }
            });
            for id in &gone {
                txn.op(Op::Meter { id: *id, v: None });
            }
            Ok(gone)
        })?;
        Ok(rpc::Count {
            count: gone.len() as u64,
        })
    }

    pub fn dump_meters(&self, p: rpc::MeterIdParams) -> Vec<rpc::DumpedMeter> {
        self.bridge
            .dump_meters(p.meter_id, now_ms())
            .into_iter()
            .map(|(m, s, n)| rpc::DumpedMeter {
                meter_id: m.meter_id,
                line: text::display_meter(&m),
                flow_count: n as u64,
                packets_in: s.packets_in,
                bytes_in: s.bytes_in,
                duration_ms: s.duration_ms,
                bands: s
                    .bands
                    .iter()
                    .map(|&(packets, bytes)| rpc::BandStats { packets, bytes })
                    .collect(),
            })
            .collect()
    }

    fn group_owner_names(&self, id: u32) -> Vec<String> {
        self.bridge
            .group_owners(id)
            .into_iter()
            .map(|o| self.owner_name(o))
            .collect()
    }

    pub fn dump_groups(&self) -> Vec<rpc::DumpedGroup> {
        let names = self.names();
        self.bridge
            .pipeline()
            .groups()
            .map(|g| rpc::DumpedGroup {
                group_id: g.spec.group_id,
                packets: g.stats.packets(),
                bytes: g.stats.bytes(),
                line: format!(" {}", text::display_group(&g.spec, &names)),
                buckets: g
                    .spec
                    .buckets
                    .iter()
                    .zip(g.bucket_stats.iter())
                    .map(|(b, s)| rpc::BucketStats {
                        bucket_id: b.bucket_id,
                        packets: s.packets(),
                        bytes: s.bytes(),
                    })
                    .collect(),
                owners: if g.origin == Origin::System {
                    self.group_owner_names(g.spec.group_id)
                } else {
                    Vec::new()
                },
            })
            .collect()
    }

    /// The rules an owner has and should have that differ, as flow lines (for CNI CHECK).
    pub(super) fn drifted_rules(&self, owner: u64) -> Vec<String> {
        let pipe = self.bridge.pipeline();
        let names = self.names();
        self.bridge
            .owned_rules(owner)
            .into_iter()
            .filter(|r| {
                !pipe
                    .rule_at(r.table, r.priority, &r.matching)
                    .is_some_and(|x| x.actions == r.actions)
            })
            .map(|r| text::display_flow(&r.to_spec(owner), &names, None).to_string())
            .collect()
    }
}
