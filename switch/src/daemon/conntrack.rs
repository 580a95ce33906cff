//! The connection tracker seen from the control socket, as Open vSwitch's `dpctl/*`
//! commands see it: dump and flush connections, limits per zone and table-wide,
//! timeouts. Limits and timeouts are configuration: each change is one journal record
//! (the tracker's settings, whole) and they are applied again at start.

use super::{Refusal, Switch};
use crate::ct::{Tracker, TupleFilter, tuple::ip_bits};
use crate::ofproto::now_ms;
use crate::store::{ConntrackRecord, Image, Op};
use vswitch_proto::conntrack::{self as text, CtTuple, SetLimits, ZoneLimit};
use vswitch_proto::rpc;

/// The tracker's settings as they can be put back: (limit, default zone limit, zones'
/// own limits, timeouts).
type Saved = (u32, u32, Vec<(u16, Option<u32>)>, crate::ct::Timeouts);

fn save(t: &Tracker) -> Saved {
    let (default, zones) = t.zone_limits();
    (
        t.stats().limit,
        default,
        zones.into_iter().map(|(z, l, _)| (z, l)).collect(),
        t.timeouts(),
    )
}

fn restore(t: &Tracker, s: Saved) {
    let (limit, default, zones, timeouts) = s;
    let _ = t.set_limit(limit);
    t.set_zone_limit(None, Some(default));
    let (_, now) = t.zone_limits();
    for (z, l, _) in now {
        if l.is_some() {
            t.set_zone_limit(Some(z), None);
        }
    }
    for (z, l) in zones {
        t.set_zone_limit(Some(z), l);
    }
    t.set_timeouts(timeouts);
}

/// The tracker's settings as the journal keeps them (`None`: all defaults).
pub(super) fn record(t: &Tracker) -> Option<ConntrackRecord> {
    let stats = t.stats();
    let (zone_default, zones) = t.zone_limits();
    let defaults = crate::ct::Timeouts::default().list();
    let r = ConntrackRecord {
        limit: (stats.limit != stats.capacity).then_some(stats.limit),
        zone_default,
        zones: zones
            .into_iter()
            .filter_map(|(zone, l, _)| l.map(|limit| ZoneLimit { zone, limit }))
            .collect(),
        timeouts: t
            .timeouts()
            .list()
            .into_iter()
            .filter(|(n, v)| !defaults.iter().any(|(dn, dv)| dn == n && dv == v))
            .collect(),
    };
    (r != ConntrackRecord::default()).then_some(r)
}

/// Put the saved settings back at start; what no longer fits (a limit above a smaller
/// `--ct-capacity`, a timeout this release does not know) is logged and left out.
pub(super) fn apply_record(t: &Tracker, image: &Image) {
    let Some(r) = &image.conntrack else {
        return;
    };
    if let Some(l) = r.limit
        && let Err(e) = t.set_limit(l)
    {
        tracing::warn!(error = %e, "saved conntrack limit not applied; the table's capacity is the limit");
    }
    t.set_zone_limit(None, Some(r.zone_default));
    for z in &r.zones {
        t.set_zone_limit(Some(z.zone), Some(z.limit));
    }
    let mut timeouts = t.timeouts();
    for (name, secs) in &r.timeouts {
        if let Err(e) = timeouts.set(name, *secs) {
            tracing::warn!(error = %e, "saved conntrack timeout not applied");
        }
    }
    t.set_timeouts(timeouts);
}

fn filter_of(orig: Option<&str>, reply: Option<&str>) -> Result<TupleFilter, Refusal> {
    let parse = |s: Option<&str>| -> Result<CtTuple, Refusal> {
        s.map(text::parse_tuple)
            .transpose()
            .map(Option::unwrap_or_default)
            .map_err(Refusal::refused)
    };
    let (o, r) = (parse(orig)?, parse(reply)?);
    // An ICMP tuple's destination "port" is its type and code.
    let icmp = |t: &CtTuple| -> Result<Option<u16>, Refusal> {
        match (t.icmp_type, t.icmp_code, t.dport) {
            (None, None, d) => Ok(d),
            (Some(ty), Some(code), None) => Ok(Some((ty as u16) << 8 | code as u16)),
            (Some(_), Some(_), Some(_)) => Err(Refusal::refused(
                "invalid conntrack tuple: icmp_type and icmp_code do not go with ct_tp_dst",
            )),
            _ => Err(Refusal::refused(
                "invalid conntrack tuple: icmp_type and icmp_code go together",
            )),
        }
    };
    let bits = |a: Option<std::net::IpAddr>| a.map(|a| ip_bits(a).0);
    if o.proto.is_some() && r.proto.is_some() && o.proto != r.proto {
        return Err(Refusal::refused(
            "invalid conntrack tuples: the original and reply tuples name different protocols",
        ));
    }
    Ok(TupleFilter {
        src: bits(o.src),
        dst: bits(o.dst),
        proto: o.proto.or(r.proto),
        sport: o.sport,
        dport: icmp(&o)?,
        reply_src: bits(r.src),
        reply_dst: bits(r.dst),
        reply_sport: r.sport,
        reply_dport: icmp(&r)?,
    })
}

impl Switch {
    /// A change to the tracker's settings, made durable as one journal record; undone
    /// (the tracker put back as it was) if it is refused or cannot be written.
    fn ct_change(
        &mut self,
        change: impl FnOnce(&Tracker) -> Result<(), Refusal>,
    ) -> Result<(), Refusal> {
        self.transact(|sw, txn| {
            let before = save(&sw.ct);
            let t = sw.ct.clone();
            txn.on_undo(move |_| restore(&t, before));
            change(&sw.ct)?;
            txn.op(Op::Conntrack { v: record(&sw.ct) });
            Ok(())
        })
    }

    pub fn dump_conntrack(&self, p: &rpc::CtDumpParams) -> rpc::CtDumpResult {
        let mut v = self.ct.dump(p.zone, now_ms());
        v.sort_by(|a, b| {
            (a.orig.zone, a.orig.proto, a.orig.v6, a.orig.src, a.orig.dst)
                .cmp(&(b.orig.zone, b.orig.proto, b.orig.v6, b.orig.src, b.orig.dst))
                .then((a.orig.sport, a.orig.dport).cmp(&(b.orig.sport, b.orig.dport)))
        });
        rpc::CtDumpResult {
            connections: v
                .iter()
                .map(|c| {
                    if p.stats {
                        c.with_timeout().to_string()
                    } else {
                        c.to_string()
                    }
                })
                .collect(),
        }
    }

    pub fn flush_conntrack(&self, p: &rpc::CtFlushParams) -> Result<rpc::Count, Refusal> {
        let f = filter_of(p.tuple.as_deref(), p.reply_tuple.as_deref())?;
        let n = self.ct.flush(p.zone, &f);
        tracing::info!(zone = ?p.zone, removed = n, "conntrack flushed");
        Ok(rpc::Count { count: n as u64 })
    }

    pub fn ct_set_limits(&mut self, p: &SetLimits) -> Result<(), Refusal> {
        self.ct_change(|t| {
            if let Some(d) = p.default {
                t.set_zone_limit(None, Some(d));
            }
            for z in &p.zones {
                t.set_zone_limit(Some(z.zone), Some(z.limit));
            }
            Ok(())
        })
    }

    pub fn ct_del_limits(&mut self, p: &rpc::CtZones) -> Result<(), Refusal> {
        if p.zones.is_empty() {
            return Err(Refusal::refused("no zone given (zone=Z1[,Z2]...)"));
        }
        self.ct_change(|t| {
            for z in &p.zones {
                t.set_zone_limit(Some(*z), None);
            }
            Ok(())
        })
    }

    /// The given zones with their limit (their own or the default) and count; without
    /// zones, those with their own limit, as `dpctl/ct-get-limits`.
    pub fn ct_get_limits(&self, p: &rpc::CtZones) -> rpc::CtLimits {
        let (default, zones) = self.ct.zone_limits();
        let info = |z: u16| {
            let (limit, count) = zones
                .iter()
                .find(|(zz, _, _)| *zz == z)
                .map(|(_, l, c)| (l.unwrap_or(default), *c))
                .unwrap_or((default, 0));
            rpc::CtZoneInfo {
                zone: z,
                limit,
                count,
            }
        };
        let mut list: Vec<u16> = if p.zones.is_empty() {
            zones
                .iter()
                .filter(|(_, l, _)| l.is_some())
                .map(|(z, _, _)| *z)
                .collect()
        } else {
            p.zones.clone()
        };
        list.sort_unstable();
        list.dedup();
        rpc::CtLimits {
            default,
            zones: list.into_iter().map(info).collect(),
        }
    }

    pub fn ct_set_maxconns(&mut self, p: &rpc::CtMaxconns) -> Result<(), Refusal> {
        self.ct_change(|t| t.set_limit(p.maxconns).map_err(Refusal::refused))
    }

    pub fn ct_get_maxconns(&self) -> rpc::CtMaxconns {
        rpc::CtMaxconns {
            maxconns: self.ct.stats().limit,
        }
    }

    pub fn ct_get_nconns(&self) -> rpc::Count {
        rpc::Count {
            count: self.ct.stats().connections as u64,
        }
    }

    pub fn ct_get_timeouts(&self) -> rpc::CtTimeouts {
        rpc::CtTimeouts {
            timeouts: self
                .ct
                .timeouts()
                .list()
                .into_iter()
                .map(|(name, secs)| rpc::CtTimeout { name, secs })
                .collect(),
        }
    }

    /// All or nothing: an unknown name or a zero refuses the whole call.
    pub fn ct_set_timeouts(&mut self, p: &rpc::CtTimeouts) -> Result<(), Refusal> {
        if p.timeouts.is_empty() {
            return Err(Refusal::refused("no timeout given (NAME=SECONDS)"));
        }
        let mut t = self.ct.timeouts();
        for x in &p.timeouts {
            t.set(&x.name, x.secs).map_err(Refusal::refused)?;
        }
        self.ct_change(|ct| {
            ct.set_timeouts(t);
            Ok(())
        })
    }

    /// The tracker's counters for `show`.
    pub(super) fn ct_stats(&self) -> rpc::CtStats {
        self.ct.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tuples_become_filters() {
        let f = filter_of(
            Some("ct_nw_src=10.0.0.1,ct_nw_proto=17,ct_tp_dst=53"),
            Some("ct_nw_src=10.0.0.2"),
        )
        .unwrap();
        assert_eq!(f.src, Some(0x0a00_0001));
        assert_eq!((f.proto, f.dport), (Some(17), Some(53)));
        assert_eq!(f.reply_src, Some(0x0a00_0002));
        let f = filter_of(
            Some("ct_nw_proto=1,icmp_id=9,icmp_type=8,icmp_code=0"),
            None,
        )
        .unwrap();
        assert_eq!((f.sport, f.dport), (Some(9), Some(8 << 8)));
        assert!(filter_of(Some("icmp_type=8"), None).is_err());
        assert!(filter_of(Some("ct_nw_proto=6"), Some("ct_nw_proto=17")).is_err());
        assert_eq!(filter_of(None, None).unwrap(), TupleFilter::default());
    }

    #[test]
    fn stats_lines_put_the_timeout_where_dpctl_does() {
        use crate::ct::{ConnInfo, tuple::Tuple};
        let orig = Tuple {
            src: 0x0a00_0001,
            dst: 0x0a00_0002,
            sport: 1234,
            dport: 80,
            proto: 6,
            v6: false,
            zone: 5,
        };
        let c = ConnInfo {
            orig,
            reply: Tuple {
                src: orig.dst,
                dst: orig.src,
                sport: 80,
                dport: 1234,
                ..orig
            },
            mark: 1,
            label: 0,
            tcp_state: Some("ESTABLISHED"),
            seen_reply: true,
            assured: true,
            timeout_ms: 29_900,
        };
        let plain = "tcp,orig=(src=10.0.0.1,dst=10.0.0.2,sport=1234,dport=80),reply=(src=10.0.0.2,dst=10.0.0.1,sport=80,dport=1234),zone=5,mark=1,protoinfo=(state=ESTABLISHED)";
        assert_eq!(c.to_string(), plain);
        assert_eq!(
            c.with_timeout().to_string(),
            plain.replace(",zone=5,", ",zone=5,timeout=29,")
        );
    }

    #[test]
    fn settings_round_trip_through_the_record() {
        let (t, _) = Tracker::open(
            &crate::ct::Config {
                capacity: 100,
                ..crate::ct::Config::default()
            },
            0,
        )
        .unwrap();
        assert_eq!(record(&t), None);
        t.set_limit(50).unwrap();
        t.set_zone_limit(None, Some(7));
        t.set_zone_limit(Some(5), Some(3));
        let mut to = t.timeouts();
        to.set("udp", 99).unwrap();
        t.set_timeouts(to);
        let r = record(&t).unwrap();
        assert_eq!(r.limit, Some(50));
        assert_eq!(r.zone_default, 7);
        assert_eq!(r.zones, [ZoneLimit { zone: 5, limit: 3 }]);
        assert_eq!(
            r.timeouts.into_iter().collect::<Vec<_>>(),
            [("udp".into(), 99)]
        );

        let (fresh, _) = Tracker::open(
            &crate::ct::Config {
                capacity: 100,
                ..crate::ct::Config::default()
            },
            0,
        )
        .unwrap();
        let image = Image {
            conntrack: record(&t),
            ..Image::default()
        };
        apply_record(&fresh, &image);
        assert_eq!(record(&fresh), record(&t));

        // Undo puts every setting back, a zone's own limit set since removed.
        let before = save(&fresh);
        fresh.set_zone_limit(Some(9), Some(1));
        fresh.set_limit(10).unwrap();
        restore(&fresh, before);
        assert_eq!(record(&fresh), record(&t));
    }
}
