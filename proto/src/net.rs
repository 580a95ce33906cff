//! Addresses as values, each with one parser: a MAC address, an IPv4 network (a CIDR),
//! and an interface address (an address with its prefix length). The switch, `vswitchctl`
//! and the manifest reader all read them here, so a value means the same everywhere; they
//! are written and read as text (`0a:58:0a:f4:01:02`, `10.244.1.0/24`, `10.244.1.2/24`),
//! in the state file and the control protocol too.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

/// Why a text is not the address it should be (a message a person can act on).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AddrError(pub String);

/// An Ethernet address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// The MAC the switch gives an IPv4 address: `0a:58:` and the address's four bytes
    /// (the convention OVN-Kubernetes and Flannel use), so a Pod keeps its MAC with its IP.
    pub fn for_ipv4(ip: Ipv4Addr) -> MacAddr {
        let o = ip.octets();
        MacAddr([0x0a, 0x58, o[0], o[1], o[2], o[3]])
    }

    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 != 0
    }

    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }

    /// As the 48-bit number a flow field holds.
    pub fn to_u128(self) -> u128 {
        self.0.iter().fold(0u128, |acc, b| (acc << 8) | *b as u128)
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl FromStr for MacAddr {
    type Err = AddrError;

    /// Six hexadecimal bytes separated by `:` (or `-`), one or two digits each.
    fn from_str(s: &str) -> Result<MacAddr, AddrError> {
        let bad = || {
            AddrError(format!(
                "{s:?} is not a MAC address (write e.g. 02:00:00:00:00:01)"
            ))
        };
        let sep = if s.contains('-') { '-' } else { ':' };
        let mut out = [0u8; 6];
        let mut parts = s.split(sep);
        for o in out.iter_mut() {
            let p = parts.next().ok_or_else(bad)?;
            if p.is_empty() || p.len() > 2 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad());
            }
            *o = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(MacAddr(out))
    }
}

/// An IPv4 network: an address with its host bits zero, and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Cidr {
    net: Ipv4Addr,
    prefix: u8,
}

impl Ipv4Cidr {
    /// `net/prefix`; `None` when the prefix is over 32 or `net` has host bits set.
    pub fn new(net: Ipv4Addr, prefix: u8) -> Option<Ipv4Cidr> {
        let c = Ipv4Cidr { net, prefix };
        (prefix <= 32 && u32::from(net) & !c.netmask() == 0).then_some(c)
    }

    /// The network of one address: `ip/32`.
    pub fn host(ip: Ipv4Addr) -> Ipv4Cidr {
        Ipv4Cidr {
            net: ip,
            prefix: 32,
        }
    }

    pub fn network(&self) -> Ipv4Addr {
        self.net
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The mask as a number (`/24`: 0xffffff00).
    pub fn netmask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix)
        }
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.netmask() == u32::from(self.net)
    }

    /// Whether the two share an address.
    pub fn overlaps(&self, other: &Ipv4Cidr) -> bool {
        self.contains(other.net) || other.contains(self.net)
    }

    /// The first and last address.
    pub fn first(&self) -> Ipv4Addr {
        self.net
    }

    pub fn last(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.net) | !self.netmask())
    }

    /// The first host address: a node's gateway in its Pod CIDR.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.net).wrapping_add(1))
    }

    pub fn broadcast(&self) -> Ipv4Addr {
        self.last()
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = AddrError;

    /// `10.244.1.0/24`: IPv4, with a prefix length (one or two digits, no sign or
    /// leading zero), host bits zero.
    fn from_str(s: &str) -> Result<Ipv4Cidr, AddrError> {
        let quoted = serde_json::to_string(s).unwrap_or_default();
        let invalid = || AddrError(format!("not a valid IPv4 CIDR: {quoted}"));
        let (a, p) = s.split_once('/').ok_or_else(invalid)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| invalid())?;
        if p.is_empty()
            || p.len() > 2
            || (p.len() > 1 && p.starts_with('0'))
            || !p.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(invalid());
        }
        let prefix: u8 = p.parse().map_err(|_| invalid())?;
        if prefix > 32 {
            return Err(invalid());
        }
        Ipv4Cidr::new(addr, prefix).ok_or_else(|| {
            let net = Ipv4Addr::from(u32::from(addr) & Ipv4Cidr { net: addr, prefix }.netmask());
            AddrError(format!(
                "host bits are set: {quoted} (the network is {net}/{prefix})"
            ))
        })
    }
}

/// An interface's address: an IP address and the prefix length of its network
/// (`10.244.1.2/24`, `fd00::2/64`); host bits are the point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IfAddr {
    pub ip: IpAddr,
    pub prefix: u8,
}

impl IfAddr {
    /// `None` when the prefix is longer than the address.
    pub fn new(ip: IpAddr, prefix: u8) -> Option<IfAddr> {
        let max = if ip.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(IfAddr { ip, prefix })
    }

    /// The IPv4 address, for an IPv4 interface address.
    pub fn ipv4(&self) -> Option<Ipv4Addr> {
        match self.ip {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        }
    }

    /// The IPv4 network this address is in.
    pub fn ipv4_network(&self) -> Option<Ipv4Cidr> {
        let a = self.ipv4()?;
        let mask = Ipv4Cidr {
            net: a,
            prefix: self.prefix,
        }
        .netmask();
        Ipv4Cidr::new(Ipv4Addr::from(u32::from(a) & mask), self.prefix)
    }
}

impl fmt::Display for IfAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.ip, self.prefix)
    }
}

impl FromStr for IfAddr {
    type Err = AddrError;

    /// `ADDRESS/PREFIX`, IPv4 or IPv6.
    fn from_str(s: &str) -> Result<IfAddr, AddrError> {
        let (a, p) = s.split_once('/').ok_or_else(|| {
            AddrError(format!(
                "{s:?} has no prefix length (write e.g. 10.0.0.2/24)"
            ))
        })?;
        let ip: IpAddr = a
            .parse()
            .map_err(|_| AddrError(format!("{s:?}: {a:?} is not an IP address")))?;
        let prefix: u8 = p
            .parse()
            .map_err(|_| AddrError(format!("{s:?}: bad prefix length {p:?}")))?;
        IfAddr::new(ip, prefix).ok_or_else(|| {
            AddrError(format!(
                "{s:?}: prefix length {prefix} is too long for the address"
            ))
        })
    }
}

macro_rules! text_serde {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<$t, D::Error> {
                let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

text_serde!(MacAddr);
text_serde!(Ipv4Cidr);
text_serde!(IfAddr);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn mac_text() {
        let m: MacAddr = "0a:58:0A:f4:1:02".parse().unwrap();
        assert_eq!(m.to_string(), "0a:58:0a:f4:01:02");
        assert_eq!(m, MacAddr::for_ipv4(Ipv4Addr::new(10, 244, 1, 2)));
        assert_eq!("02-00-00-00-00-01".parse::<MacAddr>().unwrap().0[5], 1);
        for bad in [
            "",
            "0a:58",
            "0a:58:0a:f4:01:02:03",
            "0a:58:0a:f4:01:0g",
            "0a:58:0a:f4:01:123",
            "0a::0a:f4:01:02",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
        assert_eq!(m.to_u128(), 0x0a580af40102);
    }

    #[test]
    fn cidr_text_and_arithmetic() {
        let c: Ipv4Cidr = "10.244.1.0/24".parse().unwrap();
        assert_eq!(c.to_string(), "10.244.1.0/24");
        assert_eq!(c.gateway(), Ipv4Addr::new(10, 244, 1, 1));
        assert_eq!(c.broadcast(), Ipv4Addr::new(10, 244, 1, 255));
        assert!(c.contains(Ipv4Addr::new(10, 244, 1, 77)));
        assert!(!c.contains(Ipv4Addr::new(10, 244, 2, 1)));
        assert!(c.overlaps(&"10.244.0.0/16".parse().unwrap()));
        assert!(!c.overlaps(&"10.244.2.0/24".parse().unwrap()));
        let e = "10.244.1.5/24".parse::<Ipv4Cidr>().unwrap_err();
        assert_eq!(
            e.0,
            "host bits are set: \"10.244.1.5/24\" (the network is 10.244.1.0/24)"
        );
        for bad in [
            "10.244.1.0/+8",
            "10.244.1.0/08",
            "10.244.1.0/",
            "/8",
            "10.244.1.0/024",
        ] {
            assert!(bad.parse::<Ipv4Cidr>().is_err(), "{bad}");
        }
        assert!("10.244.1.0".parse::<Ipv4Cidr>().is_err());
        assert!("10.244.1.0/33".parse::<Ipv4Cidr>().is_err());
        assert!("fd00::/64".parse::<Ipv4Cidr>().is_err());
        assert_eq!("0.0.0.0/0".parse::<Ipv4Cidr>().unwrap().netmask(), 0);
    }

    #[test]
    fn interface_address_text() {
        let a: IfAddr = "10.244.1.2/24".parse().unwrap();
        assert_eq!(a.ipv4(), Some(Ipv4Addr::new(10, 244, 1, 2)));
        assert_eq!(a.ipv4_network().unwrap().to_string(), "10.244.1.0/24");
        assert_eq!(
            "fd00::2/64".parse::<IfAddr>().unwrap().to_string(),
            "fd00::2/64"
        );
        assert!("10.0.0.1/33".parse::<IfAddr>().is_err());
        assert!("10.0.0.1".parse::<IfAddr>().is_err());
        let j = serde_json::to_string(&a).unwrap();
        assert_eq!(j, "\"10.244.1.2/24\"");
        assert_eq!(serde_json::from_str::<IfAddr>(&j).unwrap(), a);
        assert!(serde_json::from_str::<IfAddr>("\"x\"").is_err());
    }

    proptest! {
        #[test]
        fn text_round_trips(b in any::<[u8; 6]>(), ip in any::<u32>(), prefix in 0u8..=32) {
            let m = MacAddr(b);
            prop_assert_eq!(m.to_string().parse::<MacAddr>().unwrap(), m);
            let a = IfAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), prefix).unwrap();
            prop_assert_eq!(a.to_string().parse::<IfAddr>().unwrap(), a);
            let c = a.ipv4_network().unwrap();
            prop_assert_eq!(c.to_string().parse::<Ipv4Cidr>().unwrap(), c);
            prop_assert!(c.contains(Ipv4Addr::from(ip)));
        }

        #[test]
        fn parsers_never_panic(s in ".{0,40}") {
            let _ = s.parse::<MacAddr>();
            let _ = s.parse::<Ipv4Cidr>();
            let _ = s.parse::<IfAddr>();
        }
    }
}
