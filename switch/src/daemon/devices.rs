//! The devices behind ports: creating, re-attaching, configuring and removing them.

use super::Refusal;
use crate::port::MemoryPort;
use crate::port::vxlan::{VxlanConfig, VxlanIo};
use crate::store::PortRecord;
use crate::sys::netlink::Rtnl;
use crate::sys::netns;
use crate::sys::tap::{self, Offloads, Tap, TapConfig};
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Arc;
use vswitch_proto::net::{IfAddr, MacAddr};
use vswitch_proto::rpc::{AddPortParams, PortType};

/// Linux interface names are at most this long (IFNAMSIZ - 1).
const IFNAME_MAX: usize = 15;

/// Packets a TAP holds for the switch to read before it drops (the kernel's default is
/// 1000). On a small node the worker shares its CPUs with the Pods that send; a deeper
/// queue rides out the moments it is not scheduled (measured: 1000 lost 12.7% at 200 kpps
/// where 10000 lost 2.3%). TCP does not fill it (TCP small queues); it costs memory only
/// when a Pod floods small datagrams faster than the switch forwards them. The TAP's
/// qdisc is `noqueue` (see [`Rtnl::set_noqueue`]): the queue is the TAP's own ring.
const TAP_TXQLEN: u32 = 10_000;

#[derive(Debug)]
pub(super) enum Device {
    Tap(Tap),
    Memory(Arc<MemoryPort>),
    /// The VXLAN port: its settings, and each worker's sockets until the workers take them.
    Tunnel {
        config: VxlanConfig,
        ios: Vec<VxlanIo>,
    },
    /// Configured, but its device could not be re-attached (and why).
    Missing(String),
}

impl Device {
    pub(super) fn state(&self) -> String {
        match self {
            Device::Missing(why) => format!("missing: {why}"),
            _ => "up".into(),
        }
    }

    pub(super) fn offloads(&self) -> Offloads {
        match self {
            Device::Tap(t) => t.offloads(),
            _ => Offloads::default(),
        }
    }

    /// One duplicate of each queue's fd, for the workers (the control thread keeps the
    /// originals to remove the device later).
    pub(super) fn worker_fds(&self) -> Vec<OwnedFd> {
        match self {
            Device::Tap(t) => (0..t.queues())
                .filter_map(|i| t.queue(i).try_clone_to_owned().ok())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Create the device for a new port. An interface of that name already in the
    /// namespace is an error: the switch does not take over devices it did not make.
    pub(super) fn create(rec: &PortRecord, queues: usize) -> Result<Device, CreateError> {
        match rec.port_type {
            PortType::Memory => Ok(Device::Memory(Arc::default())),
            PortType::Tap | PortType::Internal => open_tap(rec, queues, false).map(Device::Tap),
            PortType::Vxlan => Err(CreateError::Failed(
                "the VXLAN port is made from the switch's settings".into(),
            )),
        }
    }

    /// Bring back the device of a persisted port: re-attach to the persistent TAP (in its
    /// namespace), or create it again if it is gone but its namespace is there.
    pub(super) fn restore(rec: &PortRecord, queues: usize) -> Device {
        match rec.port_type {
            PortType::Memory => Device::Memory(Arc::default()),
            PortType::Tap | PortType::Internal => match open_tap(rec, queues, true) {
                Ok(t) => Device::Tap(t),
                Err(e) => Device::Missing(e.to_string()),
            },
            PortType::Vxlan => Device::Missing("made from the switch's settings".into()),
        }
    }

    /// Remove the device (a TAP disappears from its namespace).
    pub(super) fn destroy(self) {
        if let Device::Tap(t) = self {
            let name = t.name().to_string();
            match tap::destroy(t) {
                Ok(()) => {}
                // Its namespace was deleted first, and the device with it.
                Err(tap::TapError::SetPersist { source, .. })
                    if source.raw_os_error() == Some(libc::EBADFD) =>
                {
                    tracing::debug!(ifname = %name, "TAP already gone with its namespace");
                }
                Err(e) => tracing::warn!(ifname = %name, error = %e, "cannot remove TAP"),
            }
        }
    }
}

impl Device {
    /// The tunnel's sockets, one set per worker, bound to the node's underlay address.
    pub(super) fn open_tunnel(config: &VxlanConfig, workers: usize) -> Result<Device, String> {
        let fail = |e: std::io::Error| {
            format!(
                "cannot open the VXLAN sockets on {}:{}: {e}",
                config.local, config.port
            )
        };
        let first = VxlanIo::open(config, &[]).map_err(fail)?;
        let ports = first.tx_ports().map_err(fail)?;
        let mut ios = vec![first];
        for _ in 1..workers.max(1) {
            ios.push(VxlanIo::open(config, &ports).map_err(fail)?);
        }
        Ok(Device::Tunnel {
            config: config.clone(),
            ios,
        })
    }
}

/// Why a device could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum CreateError {
    /// An interface of that name is already there.
    Exists(String),
    Failed(String),
}

impl std::fmt::Display for CreateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CreateError::Exists(m) | CreateError::Failed(m) => f.write_str(m),
        }
    }
}

impl From<String> for CreateError {
    fn from(m: String) -> CreateError {
        CreateError::Failed(m)
    }
}

impl From<CreateError> for Refusal {
    fn from(e: CreateError) -> Refusal {
        match e {
            CreateError::Exists(m) => Refusal::conflict(m),
            CreateError::Failed(m) => Refusal::refused(m),
        }
    }
}

/// Open (or re-attach to) the TAP of `rec` in its namespace and configure it there.
fn open_tap(rec: &PortRecord, queues: usize, reattach: bool) -> Result<Tap, CreateError> {
    let rec2 = rec.clone();
    let work = move || -> Result<Tap, CreateError> {
        let cfg = TapConfig {
            name: rec2.ifname.clone(),
            queues,
            offloads: true,
            persist: true,
        };
        let tap = if reattach {
            match Tap::attach(&cfg) {
                Ok(t) => t,
                // Gone (its namespace was recreated, or the host rebooted): make it again.
                Err(_) => Tap::open(&cfg).map_err(|e| chain(&e))?,
            }
        } else {
            let exists = Rtnl::open()
                .and_then(|mut nl| nl.link_index(&rec2.ifname))
                .map_err(|e| chain(&e))?;
            let taken = || {
                CreateError::Exists(format!(
                    "an interface named {} already exists in {}",
                    rec2.ifname,
                    rec2.netns.as_deref().unwrap_or("the host namespace")
                ))
            };
            if exists.is_some() {
                return Err(taken());
            }
            // The check above gives the message; IFF_TUN_EXCL makes it race-free.
            match Tap::create(&cfg) {
                Ok(t) => t,
                Err(tap::TapError::SetIff {
                    queue: 0, source, ..
                }) if source.raw_os_error() == Some(libc::EBUSY) => return Err(taken()),
                Err(e) => return Err(chain(&e).into()),
            }
        };
        if let Err(e) = configure(&rec2) {
            if !reattach {
                let _ = tap::destroy(tap);
            }
            return Err(e.into());
        }
        Ok(tap)
    };
    match &rec.netns {
        Some(path) => netns::run_in(Path::new(path), work).map_err(|e| chain(&e))?,
        None => work(),
    }
}

/// Remove a TAP of ours named `ifname` in the namespace `netns` that no port knows (left
/// by a switch that stopped in the middle of an ADD). Only a TAP opened the way the switch
/// opens them can be attached to, so other devices are left alone. Whether one was removed.
pub(super) fn remove_stray_tap(netns: &str, ifname: &str) -> Result<bool, String> {
    let name = ifname.to_string();
    netns::run_in(Path::new(netns), move || {
        match Tap::attach(&TapConfig {
            name,
            queues: 1,
            offloads: true,
            persist: false,
        }) {
            Ok(t) => tap::destroy(t).map(|()| true).map_err(|e| chain(&e)),
            Err(_) => Ok(false),
        }
    })
    .map_err(|e| chain(&e))?
}

/// Set MAC, MTU, up, address and default route, from inside the device's namespace.
fn configure(rec: &PortRecord) -> Result<(), String> {
    let mut nl = Rtnl::open().map_err(|e| chain(&e))?;
    let idx = nl
        .link_index(&rec.ifname)
        .map_err(|e| chain(&e))?
        .ok_or_else(|| {
            format!(
                "interface {} vanished right after it was created",
                rec.ifname
            )
        })?;
    if let Some(mac) = rec.mac {
        nl.set_mac(idx, mac.0).map_err(|e| chain(&e))?;
    }
    nl.set_txqlen(idx, TAP_TXQLEN).map_err(|e| chain(&e))?;
    nl.set_noqueue(idx).map_err(|e| chain(&e))?;
    if let Some(mtu) = rec.mtu {
        nl.set_mtu(idx, mtu).map_err(|e| chain(&e))?;
    }
    nl.set_up(idx).map_err(|e| chain(&e))?;
    if let Some(ip) = rec.ip {
        nl.add_address(idx, ip.ip, ip.prefix)
            .map_err(|e| chain(&e))?;
    }
    if let Some(gw) = rec.gateway {
        nl.add_default_route(gw, idx).map_err(|e| chain(&e))?;
    }
    Ok(())
}

/// An error with its causes, on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let causes = super::source_chain(e);
    if causes.is_empty() {
        e.to_string()
    } else {
        format!("{e}: {causes}")
    }
}

/// A MAC address from a request (the one parser, with a message for a person).
pub(super) fn parse_mac(s: &str) -> Result<MacAddr, Refusal> {
    s.parse().map_err(|_| {
        Refusal::refused(format!(
            "bad MAC address {s:?}: write six hex octets separated by colons, e.g. 02:00:00:00:00:01"
        ))
    })
}

/// An interface address from a request.
pub(super) fn parse_if_addr(s: &str) -> Result<IfAddr, Refusal> {
    s.parse().map_err(|e: vswitch_proto::net::AddrError| {
        Refusal::refused(format!(
            "bad address: {e}; write an address with its prefix length, e.g. 10.244.1.2/24"
        ))
    })
}

/// A random locally administered unicast address.
fn random_mac() -> MacAddr {
    use std::hash::BuildHasher;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let r = std::collections::hash_map::RandomState::new().hash_one(seed);
    let b = r.to_be_bytes();
    MacAddr([0x02, b[1], b[2], b[3], b[4], b[5]])
}

/// Check an `add-port` request and turn it into the record to persist.
pub(super) fn record(no: u32, p: &AddPortParams) -> Result<PortRecord, Refusal> {
    let name = p.name.trim();
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(Refusal::refused(format!(
            "bad port name {:?}: use 1 to 64 letters, digits, '_', '-' or '.'",
            p.name
        )));
    }
    if p.port_type == PortType::Vxlan {
        return Err(Refusal::refused(
            "the switch makes its one VXLAN port itself: start vswitchd with --node-ip \
             (and --vni, --vxlan-port); remote nodes come with add-node",
        ));
    }
    let device = p.port_type != PortType::Memory;
    if !device && (p.netns.is_some() || p.ifname.is_some() || p.ip.is_some() || p.gateway.is_some())
    {
        return Err(Refusal::refused(
            "a memory port has no device: --netns, --ifname, --ip and --gateway do not apply",
        ));
    }
    if p.port_type == PortType::Internal && p.netns.is_some() {
        return Err(Refusal::refused(
            "an internal port lives in the host namespace: use --type tap with --netns",
        ));
    }
    let ifname = p.ifname.clone().unwrap_or_else(|| name.to_string());
    if device {
        if ifname.is_empty()
            || ifname.len() > IFNAME_MAX
            || ifname.contains(['/', ' ', '\0'])
            || ifname == "."
            || ifname == ".."
        {
            return Err(Refusal::refused(format!(
                "bad interface name {ifname:?} ({} bytes): Linux interface names are 1 to {IFNAME_MAX} \
                 bytes with no '/', space or NUL{}",
                ifname.len(),
                if p.ifname.is_none() {
                    "; give a shorter port name or a separate --ifname"
                } else {
                    ""
                }
            )));
        }
        if let Some(ns) = &p.netns {
            let path = Path::new(ns);
            if !path.exists() {
                return Err(Refusal::refused(format!(
                    "network namespace {ns} does not exist (create it with `ip netns add NAME`, \
                     or give /proc/PID/ns/net of a running process)"
                )));
            }
            if !netns::is_netns(path) {
                return Err(Refusal::refused(format!(
                    "{ns} is not a network namespace file"
                )));
            }
        }
    }
    let mac = match &p.mac {
        Some(m) => {
            let mac = parse_mac(m)?;
            if mac.is_multicast() {
                return Err(Refusal::refused(format!(
                    "MAC address {m} is a multicast address; a port needs a unicast one"
                )));
            }
            mac
        }
        None => random_mac(),
    };
    if let Some(mtu) = p.mtu
        && !(68..=65_535).contains(&mtu)
    {
        return Err(Refusal::refused(format!(
            "MTU {mtu} is out of range (68 to 65535)"
        )));
    }
    let ip = p.ip.as_deref().map(parse_if_addr).transpose()?;
    let gateway = p
        .gateway
        .as_deref()
        .map(|gw| {
            gw.parse::<IpAddr>().map_err(|_| {
                Refusal::refused(format!(
                    "bad gateway {gw:?}: write an IP address, e.g. 10.244.1.1"
                ))
            })
        })
        .transpose()?;
    Ok(PortRecord {
        no,
        name: name.to_string(),
        port_type: p.port_type,
        netns: p.netns.clone(),
        ifname,
        mac: Some(mac),
        mtu: p.mtu,
        ip,
        gateway,
        tunnel: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(name: &str) -> AddPortParams {
        AddPortParams {
            name: name.into(),
            port_type: PortType::Tap,
            netns: None,
            ifname: None,
            mac: None,
            mtu: None,
            ip: None,
            gateway: None,
        }
    }

    #[test]
    fn validation_messages() {
        let e = record(1, &params("averyveryverylongname")).unwrap_err();
        assert!(e.message.contains("21 bytes"), "{}", e.message);
        assert!(
            e.message.contains("at most") || e.message.contains("1 to 15"),
            "{}",
            e.message
        );
        let mut p = params("p1");
        p.netns = Some("/var/run/netns/does-not-exist-xyz".into());
        let e = record(1, &p).unwrap_err();
        assert!(e.message.contains("does not exist"), "{}", e.message);
        let mut p = params("p1");
        p.mac = Some("01:00:00:00:00:01".into());
        assert!(record(1, &p).unwrap_err().message.contains("multicast"));
        let mut p = params("p1");
        p.mac = Some("zz".into());
        assert!(record(1, &p).unwrap_err().message.contains("bad MAC"));
        let mut p = params("p1");
        p.ip = Some("10.0.0.1".into());
        assert!(record(1, &p).unwrap_err().message.contains("prefix"));
        let mut p = params("p1");
        p.mtu = Some(10);
        assert!(record(1, &p).unwrap_err().message.contains("MTU"));
        let mut p = params("p1");
        p.port_type = PortType::Memory;
        p.ip = Some("10.0.0.1/24".into());
        assert!(record(1, &p).is_err());
        assert!(record(1, &params("bad name")).is_err());
    }

    #[test]
    fn defaults() {
        let r = record(3, &params("pod1")).unwrap();
        assert_eq!(r.ifname, "pod1");
        assert_eq!(r.no, 3);
        assert_eq!(r.mac.unwrap().0[0], 0x02, "locally administered unicast");
    }
}
