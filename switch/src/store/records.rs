//! What the switch persists, record by record. Addresses are values (`MacAddr`, `IfAddr`,
//! `Ipv4Cidr` from `vswitch_proto::net`), written as the same text the previous layout
//! used, so a state file of the previous release reads as it is.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr};
use vswitch_proto::net::{IfAddr, Ipv4Cidr, MacAddr};
use vswitch_proto::rpc::PortType;

/// A port as configured (what re-creating or re-attaching it needs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRecord {
    pub no: u32,
    pub name: String,
    #[serde(rename = "type")]
    pub port_type: PortType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    /// The interface's name where it lives (the port name unless set).
    pub ifname: String,
    /// None for the tunnel (written `""`).
    #[serde(with = "optional_mac")]
    pub mac: Option<MacAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The interface's address (for the tunnel, its local address, written bare).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "optional_if_addr"
    )]
    pub ip: Option<IfAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// The tunnel's settings, for the VXLAN port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<TunnelRecord>,
}

/// The VXLAN port's settings (`vswitchd --node-ip`, `--vni`, `--vxlan-port`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelRecord {
    /// The node's underlay address, where the tunnel ends.
    pub local: Ipv4Addr,
    /// The UDP port.
    pub port: u16,
    /// The VNI of the Pod network.
    pub vni: u32,
}

/// The node's Pod network (`vswitchd --pod-cidr`), as the switch last ran with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRecord {
    pub pod_cidr: Ipv4Cidr,
    /// The gateway port's name.
    pub gateway: String,
    /// The MTU of the gateway and of every Pod's interface.
    pub mtu: u32,
}

/// Where a Pod's address came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum IpamRecord {
    /// The switch's own allocator.
    Builtin,
    /// A delegated IPAM plugin, with what releasing the address needs.
    Plugin {
        plugin: String,
        /// The network configuration the plugin was given (and is given again on DEL).
        config: Value,
        /// The CNI version spoken with it.
        version: String,
        path: String,
        args: String,
    },
}

/// A Pod attached through CNI: one (container, interface) pair.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodRecord {
    pub container_id: String,
    pub ifname: String,
    pub netns: String,
    /// The network configuration's `name`.
    pub network: String,
    /// The switch port's name.
    pub port: String,
    pub ip: IfAddr,
    pub mac: MacAddr,
    pub gateway: IpAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    pub ipam: IpamRecord,
    /// The ADD result (1.1.0 shape), returned again for a repeated ADD.
    pub result: Value,
}

impl PodRecord {
    /// The Pod's IPv4 address.
    pub fn ipv4(&self) -> Option<Ipv4Addr> {
        self.ip.ipv4()
    }
}

/// A Kubernetes object the switch holds: its kind, namespace and name, where it came
/// from, the number its rules' cookies carry, and the object as the switch keeps it (the
/// fields its kind reads).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ObjectRecord {
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    pub name: String,
    /// `vswitchctl` (add-node), `manifest` (apply), later `api`.
    pub source: String,
    /// Names its rules (their cookie); kept while the object is known.
    pub id: u32,
    pub object: Value,
}

/// Connection-tracking settings changed at run time (`ct-set-maxconns`, `ct-set-limits`,
/// `ct-set-timeouts`); what is absent keeps its default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConntrackRecord {
    /// The table-wide limit, when below the capacity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// The limit of zones without their own (0: none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub zone_default: u32,
    /// Zones' own limits, by zone (a list: the journal's records cannot have number keys).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<vswitch_proto::conntrack::ZoneLimit>,
    /// Timeouts that differ from the defaults, in seconds, by name.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub timeouts: std::collections::BTreeMap<String, u32>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A remote node as the previous layout (version 1) kept it; read only to upgrade.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct NodeRecordV1 {
    pub id: u32,
    pub name: String,
    pub pod_cidr: String,
    pub node_ip: String,
    pub source: String,
}

mod optional_mac {
    use super::*;

    pub fn serialize<S: Serializer>(m: &Option<MacAddr>, s: S) -> Result<S::Ok, S::Error> {
        match m {
            Some(m) => s.collect_str(m),
            None => s.serialize_str(""),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<MacAddr>, D::Error> {
        let s = String::deserialize(d)?;
        if s.is_empty() {
            return Ok(None);
        }
        s.parse().map(Some).map_err(serde::de::Error::custom)
    }
}

mod optional_if_addr {
    use super::*;

    pub fn serialize<S: Serializer>(a: &Option<IfAddr>, s: S) -> Result<S::Ok, S::Error> {
        match a {
            Some(a) => s.collect_str(a),
            None => s.serialize_none(),
        }
    }

    /// `ADDRESS/PREFIX`, or a bare address (the tunnel's, as the previous layout wrote
    /// it): a host address.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<IfAddr>, D::Error> {
        let Some(s) = Option::<String>::deserialize(d)? else {
            return Ok(None);
        };
        if !s.contains('/')
            && let Ok(ip) = s.parse::<IpAddr>()
        {
            let prefix = if ip.is_ipv4() { 32 } else { 128 };
            return Ok(IfAddr::new(ip, prefix));
        }
        s.parse().map(Some).map_err(serde::de::Error::custom)
    }
}
