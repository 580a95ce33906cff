//! Pipeline tests in the language users write flows in.
//!
//! A script is a list of lines:
//!
//! ```text
//! # a comment
//! port 1 gw0                      # a port number and name (for names in flows)
//! group group_id=1,type=all,bucket=actions=output:2
//! flow table=0,in_port=gw0,actions=output:2
//! trace in_port=1,tcp,nw_dst=10.0.0.1,tp_dst=80
//! trace ct=+trk+est in_port=1,tcp   # after a ct(...,table=N), go on in table N as
//!                                   # conntrack said (one ct=STATE per pass)
//! expect tables 0 7 10             # tables where a rule matched, in order (every pass)
//! expect actions set(ipv4(ttl=63)),2  # the last pass's
//! expect megaflow recirc_id=0,...  # optional: the megaflow, as match text
//! reset                            # drop every flow and group
//! ```
//!
//! Flows and groups are added in order; each `trace` runs against the tables as they are
//! at that point, and its `expect` lines follow it.

use std::collections::BTreeMap;
use vswitch::ofproto::trace::Trace;
use vswitch::ofproto::{Bridge, PortDesc};
use vswitch_proto::flowmod::Usage;
use vswitch_proto::text::{self, PortNames};

#[derive(Default)]
struct Ports(BTreeMap<u32, String>);

impl PortNames for Ports {
    fn port_no(&self, name: &str) -> Option<u32> {
        self.0
            .iter()
            .find(|(_, n)| n.as_str() == name)
            .map(|(p, _)| *p)
    }
    fn port_name(&self, no: u32) -> Option<String> {
        self.0.get(&no).cloned()
    }
}

/// Run a script; returns how many traces it checked, or a message naming the failing line.
pub fn run(script: &str) -> Result<usize, String> {
    run_with(script, &mut |_| {})
}

/// Like [`run`], handing each trace (rendered with port names) to `show`.
pub fn run_with(script: &str, show: &mut dyn FnMut(String)) -> Result<usize, String> {
    let mut bridge = Bridge::new("br0");
    let mut ports = Ports::default();
    let mut last: Option<Trace> = None;
    let mut checked = 0;
    for (n, raw) in script.lines().enumerate() {
        let line = raw.split(" #").next().unwrap_or("").trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fail = |msg: String| format!("line {}: {raw}\n  {msg}", n + 1);
        let (cmd, rest) = line.split_once(' ').unwrap_or((line, ""));
        let rest = rest.trim();
        match cmd {
            "port" => {
                let (no, name) = rest
                    .split_once(' ')
                    .ok_or_else(|| fail("usage: port NO NAME".into()))?;
                let no: u32 = no.parse().map_err(|_| fail("bad port number".into()))?;
                ports.0.insert(no, name.trim().to_string());
                bridge.set_ports(
                    ports
                        .0
                        .iter()
                        .map(|(no, name)| PortDesc {
                            no: *no,
                            name: name.clone(),
                            no_flood: false,
                        })
                        .collect(),
                );
            }
            "flow" => {
                let spec =
                    text::parse_flow(rest, Usage::Add, &ports).map_err(|e| fail(e.render(rest)))?;
                bridge
                    .add_flows(&[spec], 0)
                    .map_err(|e| fail(e.to_string()))?;
            }
            "group" => {
                let g = text::parse_group(rest, &ports).map_err(|e| fail(e.render(rest)))?;
                bridge.add_group(&g).map_err(|e| fail(e.to_string()))?;
            }
            "reset" => bridge.clear(),
            "trace" => {
                let mut states = Vec::new();
                let mut rest = rest;
                while let Some(r) = rest.strip_prefix("ct=") {
                    let (s, r) = r.split_once(' ').unwrap_or((r, ""));
                    let m = text::parse_match(&format!("ct_state={s}"), &ports)
                        .map_err(|e| fail(e.render(s)))?;
                    states.push(m.flow.ct_state());
                    rest = r.trim_start();
                }
                let m = text::parse_match(rest, &ports).map_err(|e| fail(e.render(rest)))?;
                let mut t = bridge.trace(&m.flow, 0);
                show(format!("$ trace {rest}\n{}\n", t.display(&ports)));
                for s in states {
                    let key = t.recirculated(s).ok_or_else(|| {
                        fail("ct= given, but the pass does not recirculate".into())
                    })?;
                    let next = bridge.trace(&key, 0);
                    show(format!("resume conntrack\n{}\n", next.display(&ports)));
                    let mut steps = std::mem::take(&mut t.steps);
                    steps.extend(next.steps.iter().cloned());
                    t = Trace { steps, ..next };
                }
                last = Some(t);
                checked += 1;
            }
            "expect" => {
                let t = last
                    .as_ref()
                    .ok_or_else(|| fail("expect before any trace".into()))?;
                let shown = || format!("\n--- trace ---\n{}", t.display(&ports));
                let (what, want) = rest.split_once(' ').unwrap_or((rest, ""));
                let want = want.trim();
                match what {
                    "tables" => {
                        let got: Vec<String> = t.matched().map(|(t, _)| t.to_string()).collect();
                        let got = got.join(" ");
                        if got != want {
                            return Err(fail(format!(
                                "tables: got `{got}`, want `{want}`{}",
                                shown()
                            )));
                        }
                    }
                    "actions" => {
                        let got = t.datapath_actions();
                        if got != want {
                            return Err(fail(format!(
                                "actions: got `{got}`, want `{want}`{}",
                                shown()
                            )));
                        }
                    }
                    "megaflow" => {
                        let got = text::display_match(&t.megaflow, None, &ports).to_string();
                        if got != want {
                            return Err(fail(format!(
                                "megaflow: got `{got}`, want `{want}`{}",
                                shown()
                            )));
                        }
                    }
                    _ => return Err(fail("expect tables|actions|megaflow".into())),
                }
            }
            _ => return Err(fail(format!("unknown command `{cmd}`"))),
        }
    }
    Ok(checked)
}
