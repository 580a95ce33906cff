//! Choosing a NAT binding: the address and port a new connection is translated to, such
//! that its reply tuple is no other connection's (two clients that would collide after
//! source NAT get different source ports). When the binding asked for, or no NAT at all,
//! leaves a reply tuple another connection holds, [`remap_source`] gives the new connection
//! another source port, as Linux's null binding does (`get_unique_tuple`).

use super::tuple::{Tuple, ip_bits};
use vswitch_proto::action::{Nat, NatKind};

/// Ports tried per address before the next address (Linux tries up to 128 at random).
const PORT_TRIES: u32 = 1024;
/// Addresses tried before giving up.
const ADDR_TRIES: u64 = 16;

/// The original tuple as it looks after `nat` chose `addr` and `port` for its source (or
/// destination). The reply tuple is its reverse.
fn translated(t: &Tuple, kind: NatKind, addr: u128, port: u16) -> Tuple {
    let mut n = *t;
    match kind {
        NatKind::Src => {
            n.src = addr;
            if t.has_ports() || t.is_icmp() {
                n.sport = port;
            }
        }
        NatKind::Dst => {
            n.dst = addr;
            if t.has_ports() {
                n.dport = port;
            } else if t.is_icmp() {
                n.sport = port;
            }
        }
    }
    n
}

/// The port range to search when the action gave none: the original port first, then
/// ports of its class, as Linux does for source NAT (below 512, below 1024, the rest).
fn default_range(t: &Tuple, kind: NatKind) -> (u16, u16) {
    if kind == NatKind::Dst && !t.is_icmp() {
        return (t.dport, t.dport);
    }
    if t.is_icmp() {
        return (0, u16::MAX);
    }
    match t.sport {
        0..=511 => (1, 511),
        512..=1023 => (600, 1023),
        _ => (1024, u16::MAX),
    }
}

fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

/// What a search found.
#[derive(Debug)]
pub enum Choice {
    /// The reply tuple (the reverse of the translated original).
    Reply(Tuple),
    /// Destination NAT whose every binding's reply tuple was taken: the first binding's,
    /// with another source port (see [`remap_source`]). The connection is source-NATed
    /// too.
    Remapped(Tuple),
    /// The action does not apply to this tuple (another address family, no address).
    NotApplicable,
    /// Every candidate's reply tuple is taken.
    Exhausted,
}

/// Choose the translation of `t` for `nat`; `taken` says whether a reply tuple is some
/// connection's already. `rnd` is a random number (used with `random`).
pub fn choose(t: &Tuple, nat: &Nat, rnd: u64, taken: impl Fn(&Tuple) -> bool) -> Choice {
    let Some(kind) = nat.kind else {
        return Choice::NotApplicable;
    };
    let (lo, hi) = match nat.addrs {
        Some((a, b)) => {
            let ((a, av6), (b, bv6)) = (ip_bits(a), ip_bits(b));
            if av6 != t.v6 || bv6 != t.v6 || b < a {
                return Choice::NotApplicable;
            }
            (a, b)
        }
        // Only ports given: the address stays.
        None => {
            let a = if kind == NatKind::Src { t.src } else { t.dst };
            (a, a)
        }
    };
    let n_addrs = (hi - lo).min(u64::MAX as u128 - 1) as u64 + 1;
    let given_ports = nat.ports.filter(|_| t.has_ports() || t.is_icmp());
    let (plo, phi) = given_ports.unwrap_or_else(|| default_range(t, kind));
    let n_ports = (phi as u32).saturating_sub(plo as u32) + 1;
    // Hash of the client (and, unless persistent, the server): one client keeps one
    // address; `random` spreads them.
    let addr_h = if nat.random {
        rnd
    } else {
        let mut h = mix(t.src as u64 ^ (t.src >> 64) as u64);
        if !nat.persistent {
            h = mix(h ^ t.dst as u64 ^ (t.dst >> 64) as u64 ^ (t.proto as u64) << 40);
        }
        h
    };
    let port_h = if nat.random {
        mix(rnd ^ 0x5a5a)
    } else {
        mix(addr_h ^ (t.sport as u64) << 16 ^ t.dport as u64)
    };
    let orig_port = match kind {
        NatKind::Src => t.sport,
        NatKind::Dst if t.is_icmp() => t.sport,
        NatKind::Dst => t.dport,
    };
    for a in 0..n_addrs.min(ADDR_TRIES) {
        let addr = lo + ((addr_h.wrapping_add(a)) % n_addrs) as u128;
        // The original port first when it is allowed, as Linux keeps it when it can.
        if given_ports.is_none() || (plo..=phi).contains(&orig_port) {
            let c = translated(t, kind, addr, orig_port).reverse();
            if !taken(&c) {
                return Choice::Reply(c);
            }
        }
        if !(t.has_ports() || t.is_icmp()) {
            continue;
        }
        let start = (port_h % n_ports as u64) as u32;
        for i in 0..n_ports.min(PORT_TRIES) {
            let p = plo as u32 + (start + i) % n_ports;
            let c = translated(t, kind, addr, p as u16).reverse();
            if !taken(&c) {
                return Choice::Reply(c);
            }
        }
    }
    if kind == NatKind::Dst {
        // The reply tuples differ in the client's port too: Linux's DNAT keeps the binding
        // asked for and its source NAT step then finds the client another port.
        let port = if given_ports.is_none() || (plo..=phi).contains(&orig_port) {
            orig_port
        } else {
            plo + (port_h % n_ports as u64) as u16
        };
        let n = translated(t, kind, lo + (addr_h % n_addrs) as u128, port);
        if let Some(r) = remap_source(&n, mix(rnd ^ 0xc1a5), &taken) {
            return Choice::Remapped(r);
        }
    }
    Choice::Exhausted
}

/// Implicit source NAT: `n` is a new connection's original tuple after the NAT it asked
/// for (none: the packet's own), and its reverse is another connection's tuple already
/// (a client reaching an endpoint directly from the port its connection through a cluster
/// IP to that endpoint holds). Linux then gives the new connection another source port,
/// of the same class (below 512, below 1024, the rest; any ICMP query identifier), tried
/// from a random place (`rnd`). Returns the reply tuple it makes unique; `None` for a
/// protocol without ports or when none of the ports tried is free.
pub fn remap_source(n: &Tuple, rnd: u64, taken: impl Fn(&Tuple) -> bool) -> Option<Tuple> {
    if !(n.has_ports() || n.is_icmp()) {
        return None;
    }
    let (lo, hi) = default_range(n, NatKind::Src);
    let size = (hi as u32).saturating_sub(lo as u32) + 1;
    let start = (rnd % size as u64) as u32;
    (0..size.min(PORT_TRIES))
        .map(|i| (lo as u32 + (start + i) % size) as u16)
        .filter(|&p| p != n.sport)
        .map(|p| translated(n, NatKind::Src, n.src, p).reverse())
        .find(|c| !taken(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashSet;
    use std::net::IpAddr;
    use vswitch_proto::field::ipproto;

    fn nat(kind: NatKind, a: &str, b: &str, ports: Option<(u16, u16)>) -> Nat {
        Nat {
            kind: Some(kind),
            addrs: Some((a.parse::<IpAddr>().unwrap(), b.parse::<IpAddr>().unwrap())),
            ports,
            random: false,
            persistent: false,
            hash: false,
        }
    }

    fn udp(src: u32, sport: u16) -> Tuple {
        Tuple {
            src: src as u128,
            dst: 0x0a00_0002,
            sport,
            dport: 53,
            proto: ipproto::UDP,
            v6: false,
            zone: 0,
        }
    }

    #[test]
    fn colliding_clients_get_distinct_reply_tuples_until_exhausted() {
        let n = nat(NatKind::Src, "192.0.2.1", "192.0.2.1", Some((1000, 1009)));
        let used = RefCell::new(HashSet::new());
        for c in 0..10 {
            // Every client uses source port 1000: after NAT they must differ.
            let Choice::Reply(r) = choose(&udp(0x0a00_0100 + c, 1000), &n, c as u64, |t| {
                used.borrow().contains(t)
            }) else {
                panic!("client {c} got no port")
            };
            assert_eq!(r.dst, 0xc000_0201);
            assert!((1000..=1009).contains(&r.dport));
            assert!(used.borrow_mut().insert(r));
        }
        assert!(matches!(
            choose(&udp(0x0a00_0200, 1000), &n, 0, |t| used
                .borrow()
                .contains(t)),
            Choice::Exhausted
        ));
    }

    #[test]
    fn a_clash_is_resolved_with_a_source_port_of_the_same_class() {
        // The reply tuple of 10.0.0.1:40000 -> 10.0.0.2:53 is taken: another source port,
        // still above 1023.
        let t = udp(0x0a00_0001, 40000);
        let used = RefCell::new(HashSet::from([t.reverse()]));
        let r = remap_source(&t, 7, |c| used.borrow().contains(c)).unwrap();
        assert_eq!((r.src, r.sport, r.dst), (t.dst, 53, t.src));
        assert!(r.dport >= 1024 && r.dport != 40000, "{r:?}");
        for (sport, lo, hi) in [(80, 1, 511), (700, 600, 1023)] {
            let t = udp(0x0a00_0001, sport);
            let r = remap_source(&t, 7, |c| *c == t.reverse()).unwrap();
            assert!((lo..=hi).contains(&r.dport) && r.dport != sport, "{r:?}");
        }
        let d = nat(NatKind::Dst, "10.1.0.5", "10.1.0.5", Some((8080, 8080)));
        let direct = Tuple {
            dst: 0x0a01_0005,
            dport: 8080,
            ..t
        };
        used.borrow_mut().insert(direct.reverse());
        let Choice::Remapped(r) = choose(&t, &d, 3, |c| used.borrow().contains(c)) else {
            panic!("the DNAT's only binding is taken: the source port must move")
        };
        assert_eq!((r.src, r.sport, r.dst), (0x0a01_0005, 8080, t.src));
        assert!(r.dport >= 1024 && r.dport != 40000);
        // Nothing free in the class: refused.
        let t = udp(0x0a00_0001, 1);
        assert!(remap_source(&t, 0, |_| true).is_none());
    }

    proptest::proptest! {
        /// Whatever the clients and the range, a binding is never one already handed out,
        /// and each stays inside the range asked for.
        #[test]
        fn bindings_are_unique_and_in_range(
            clients in proptest::collection::vec((0u32..8, 1000u16..1004), 1..200),
            lo in 0u8..4, n_addrs in 1u8..3, plo in 2000u16..2005, n_ports in 1u16..6,
            random in proptest::bool::ANY, persistent in proptest::bool::ANY,
        ) {
            let a = std::net::Ipv4Addr::new(192, 0, 2, lo);
            let b = std::net::Ipv4Addr::new(192, 0, 2, lo + n_addrs - 1);
            let mut n = nat(NatKind::Src, &a.to_string(), &b.to_string(), Some((plo, plo + n_ports - 1)));
            n.random = random;
            n.persistent = persistent;
            let used = RefCell::new(HashSet::new());
            for (i, (c, sport)) in clients.iter().enumerate() {
                match choose(&udp(0x0a00_0100 + c, *sport), &n, i as u64 * 7919, |t| used.borrow().contains(t)) {
                    Choice::Reply(r) => {
                        proptest::prop_assert!((u32::from(a) as u128..=u32::from(b) as u128).contains(&r.dst));
                        proptest::prop_assert!((plo..plo + n_ports).contains(&r.dport));
                        proptest::prop_assert!(used.borrow_mut().insert(r), "{r:?} handed out twice");
                    }
                    Choice::Exhausted => {
                        // Only when every binding to this server is taken.
                        proptest::prop_assert_eq!(used.borrow().len(), n_addrs as usize * n_ports as usize);
                    }
                    // Only destination NAT remaps the source port.
                    Choice::NotApplicable | Choice::Remapped(_) => proptest::prop_assert!(false),
                }
            }
        }
    }

    #[test]
    fn the_original_port_is_kept_when_free_and_dnat_keeps_the_client() {
        let n = nat(NatKind::Src, "192.0.2.1", "192.0.2.9", None);
        let Choice::Reply(r) = choose(&udp(0x0a00_0100, 40000), &n, 0, |_| false) else {
            panic!()
        };
        assert_eq!(r.dport, 40000);
        let d = nat(NatKind::Dst, "10.1.0.5", "10.1.0.5", Some((8080, 8080)));
        let Choice::Reply(r) = choose(&udp(0x0a00_0100, 40000), &d, 0, |_| false) else {
            panic!()
        };
        assert_eq!(
            (r.src, r.sport, r.dst, r.dport),
            (0x0a01_0005, 8080, 0x0a00_0100, 40000)
        );
        let v6 = nat(NatKind::Dst, "::1", "::1", None);
        assert!(matches!(
            choose(&udp(1, 1), &v6, 0, |_| false),
            Choice::NotApplicable
        ));
    }
}
