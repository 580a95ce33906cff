//! Tests against the kernel: TAPs, namespaces and rtnetlink in namespaces the
//! tests create (`vsw-t-<pid>-<n>`) and always remove.
//!
//! They need root, so they are `#[ignore]`d: plain `cargo test` reports them as ignored
//! (never as passed), and `scripts/test` runs them with `--include-ignored` as root.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::netlink::{NetlinkError, Rtnl};
use super::netns::{self, NetnsError};
use super::tap::{self, Tap, TapConfig, TapError, VNET_HDR_LEN};

static NEXT: AtomicUsize = AtomicUsize::new(0);

fn is_root() -> bool {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (run scripts/test as root)"
    );
    true
}

/// A unique interface name, so nothing a test did not create is ever touched.
fn unique_ifname(prefix: &str) -> String {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = format!("{prefix}{}x{n}", std::process::id() % 100_000);
    assert!(name.len() <= 15, "{name}");
    name
}

/// A network namespace made for one test, deleted on drop (even on failure).
struct TestNetns {
    name: String,
    path: PathBuf,
}

impl TestNetns {
    fn new() -> TestNetns {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("vsw-t-{}-{n}", std::process::id());
        run("ip", &["netns", "add", &name]);
        let path = PathBuf::from(format!("/var/run/netns/{name}"));
        TestNetns { name, path }
    }

    fn path(&self) -> &Path {
        &self.path
    }

    /// `ip -n NS ARGS`, which must succeed.
    fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// `ip -n NS ARGS`: whether it succeeded.
    fn ip_ok(&self, args: &[&str]) -> bool {
        Command::new("ip")
            .args(["-n", &self.name])
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {cmd} {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Read frames until `want` accepts one, or panic after 5 s.
fn read_until(fd: BorrowedFd<'_>, what: &str, want: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = vec![0u8; 65536 + VNET_HDR_LEN + 14];
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        match tap::read_frame(fd, &mut buf) {
            Ok(n) => {
                if want(&buf[..n]) {
                    return buf[..n].to_vec();
                }
                seen.push(n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("read_frame: {e}"),
        }
    }
    panic!("no {what} read within 5 s (other frames seen, by length: {seen:?})");
}

fn ethertype(frame: &[u8]) -> u16 {
    u16::from_be_bytes([frame[12], frame[13]])
}

const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// An ARP reply `sender_ip is-at sender_mac` to `target`.
fn arp_reply(sender_ip: Ipv4Addr, target_mac: [u8; 6], target_ip: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&target_mac);
    f.extend_from_slice(&PEER_MAC);
    f.extend_from_slice(&0x0806u16.to_be_bytes());
    f.extend_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 2]);
    f.extend_from_slice(&PEER_MAC);
    f.extend_from_slice(&sender_ip.octets());
    f.extend_from_slice(&target_mac);
    f.extend_from_slice(&target_ip.octets());
    f
}

/// Bring the TAP up in its namespace with `addr/24`; returns its MAC.
fn configure(name: &str, addr: Ipv4Addr) -> Result<[u8; 6], NetlinkError> {
    let mut rtnl = Rtnl::open()?;
    let index = rtnl.link_index(name)?.expect("the TAP exists");
    rtnl.add_address(index, IpAddr::V4(addr), 24)?;
    rtnl.set_up(index)?;
    Ok(rtnl.link(index)?.expect("the TAP exists").mac)
}

#[test]
#[ignore = "needs root and network namespaces: scripts/test runs it as root"]
fn root_tap_in_namespace_has_the_right_flags_and_destroy_removes_it() {
    if !is_root() {
        return;
    }
    let ns = TestNetns::new();
    let name = unique_ifname("vt");
    let cfg = TapConfig {
        persist: true,
        ..TapConfig::new(&name)
    };
    let tap = netns::run_in(ns.path(), move || Tap::open(&cfg))
        .unwrap()
        .unwrap();
    assert_eq!(tap.name(), name);
    assert_eq!(tap.queues(), 1);
    assert!(tap.offloads().csum, "offloads: {:?}", tap.offloads());
    eprintln!("offloads agreed: {}", tap.offloads().names());

    let details = ns.ip(&["-d", "link", "show", &name]);
    for want in ["tun type tap", "multi_queue", "vnet_hdr", "persist"] {
        assert!(details.contains(want), "no {want:?} in: {details}");
    }
    // The TAP lives in the namespace, not here.
    assert!(nix::net::if_::if_nametoindex(name.as_str()).is_err());

    tap::destroy(tap).unwrap();
    assert!(
        !ns.ip_ok(&["link", "show", &name]),
        "{name} still exists after destroy"
    );
}

#[test]
#[ignore = "needs root and network namespaces: scripts/test runs it as root"]
fn root_tap_reads_the_kernels_arp_request_and_the_kernel_takes_our_reply() {
    if !is_root() {
        return;
    }
    let ns = TestNetns::new();
    let name = unique_ifname("vt");
    let local = Ipv4Addr::new(10, 99, 0, 1);
    let peer = Ipv4Addr::new(10, 99, 0, 2);
    let (tap, mac) = {
        let name = name.clone();
        netns::run_in(ns.path(), move || -> Result<_, String> {
            let tap = Tap::open(&TapConfig::new(&name)).map_err(|e| e.to_string())?;
            let mac = configure(&name, local).map_err(|e| e.to_string())?;
            Ok((tap, mac))
        })
        .unwrap()
        .unwrap()
    };
    let fd = tap.queue(0);

    // A datagram to the neighbour makes the kernel ask for its MAC.
    let socket = netns::run_in(ns.path(), move || UdpSocket::bind((local, 0)))
        .unwrap()
        .unwrap();
    socket.send_to(b"hello", (peer, 9)).unwrap();

    let arp = read_until(fd, "ARP request", |f| {
        f.len() >= VNET_HDR_LEN + 42 && ethertype(&f[VNET_HDR_LEN..]) == 0x0806
    });
    let (hdr, frame) = arp.split_at(VNET_HDR_LEN);
    eprintln!("vnet header of the ARP request: {hdr:02x?}");
    assert_eq!(hdr[1], 0, "gso_type of an ARP frame is GSO_NONE");
    assert_eq!(&frame[0..6], &[0xff; 6], "broadcast");
    assert_eq!(&frame[6..12], &mac, "from the TAP's MAC");
    assert_eq!(&frame[20..22], &[0, 1], "ARP request");
    assert_eq!(&frame[28..32], &local.octets(), "sender IP");
    assert_eq!(&frame[38..42], &peer.octets(), "target IP");

    let reply = arp_reply(peer, mac, local);
    let n = tap::write_frame(fd, &[0; VNET_HDR_LEN], &reply).unwrap();
    assert_eq!(n, VNET_HDR_LEN + reply.len());

    // The kernel took the reply: it sends the queued datagram to PEER_MAC.
    let udp = read_until(fd, "the queued UDP datagram", |f| {
        let f = &f[VNET_HDR_LEN.min(f.len())..];
        f.len() >= 42 && ethertype(f) == 0x0800 && f[23] == 17 && f[0..6] == PEER_MAC
    });
    assert!(udp.ends_with(b"hello"));
    // With TUN_F_CSUM agreed, the kernel leaves the UDP checksum partial:
    // NEEDS_CSUM, csum_start at the UDP header, csum_offset 6.
    eprintln!(
        "vnet header of the UDP datagram: {:02x?}",
        &udp[..VNET_HDR_LEN]
    );
    if tap.offloads().csum {
        assert_eq!(udp[0] & 1, 1, "NEEDS_CSUM");
        assert_eq!(u16::from_le_bytes([udp[6], udp[7]]), 14 + 20, "csum_start");
        assert_eq!(u16::from_le_bytes([udp[8], udp[9]]), 6, "csum_offset");
    }
    let neigh = ns.ip(&["neigh", "show", &peer.to_string()]);
    assert!(neigh.contains("02:00:00:00:00:02"), "{neigh}");
    assert!(neigh.contains("REACHABLE"), "{neigh}");

    // A frame longer than the buffer: the kernel copies what fits, drops the
    // rest and returns the copied length.
    socket.send_to(&[7u8; 1000], (peer, 9)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut small = [0u8; 100];
    loop {
        match tap::read_frame(fd, &mut small) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(n) => {
                let f = &small[VNET_HDR_LEN..n];
                if f.len() >= 38 && ethertype(f) == 0x0800 && f[23] == 17 && f[36..38] == [0, 9] {
                    assert_eq!(n, small.len(), "cut to the buffer");
                    let ip_len = u16::from_be_bytes([f[16], f[17]]);
                    assert_eq!(ip_len, 20 + 8 + 1000, "the frame was longer");
                    break;
                }
            }
            other => panic!("expected the 1000-byte datagram, got {other:?}"),
        }
    }
}

#[test]
#[ignore = "needs root and network namespaces: scripts/test runs it as root"]
fn root_tap_persists_and_reattaches_from_inside_the_namespace() {
    if !is_root() {
        return;
    }
    let ns = TestNetns::new();
    let name = unique_ifname("vt");
    let cfg = TapConfig {
        queues: 2,
        persist: true,
        ..TapConfig::new(&name)
    };
    let first = {
        let cfg = cfg.clone();
        netns::run_in(ns.path(), move || Tap::open(&cfg))
            .unwrap()
            .unwrap()
    };
    let index_before = ns.ip(&["-o", "link", "show", &name]);
    // The switch "dies": all fds close.
    drop(first.into_queues());
    let after_close = ns.ip(&["-o", "link", "show", &name]);
    assert_eq!(
        index_before.split(':').next(),
        after_close.split(':').next(),
        "same device"
    );

    // Not visible from the root namespace: attach must refuse, not create.
    match Tap::attach(&cfg) {
        Err(TapError::NotFound { name: n }) => assert_eq!(n, name),
        other => panic!("attach from outside the namespace: {other:?}"),
    }
    assert!(nix::net::if_::if_nametoindex(name.as_str()).is_err());

    // A restarted switch with a different number of workers re-attaches.
    let again = {
        let cfg = TapConfig {
            queues: 3,
            ..cfg.clone()
        };
        netns::run_in(ns.path(), move || Tap::attach(&cfg))
            .unwrap()
            .unwrap()
    };
    assert_eq!(again.name(), name);
    assert_eq!(again.queues(), 3);
    let after_attach = ns.ip(&["-o", "link", "show", &name]);
    assert_eq!(
        index_before.split(':').next(),
        after_attach.split(':').next()
    );

    tap::destroy(again).unwrap();
    assert!(!ns.ip_ok(&["link", "show", &name]));
}

#[test]
#[ignore = "needs root and network namespaces: scripts/test runs it as root"]
fn root_attach_to_a_missing_tap_fails_clearly_and_creates_nothing() {
    if !is_root() {
        return;
    }
    let ns = TestNetns::new();
    let name = unique_ifname("vt");
    let cfg = TapConfig::new(&name);
    let err = netns::run_in(ns.path(), move || Tap::attach(&cfg))
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, TapError::NotFound { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(&name) && text.contains("no interface"),
        "{text}"
    );
    assert!(!ns.ip_ok(&["link", "show", &name]));
}

#[test]
#[ignore = "needs root and network namespaces: scripts/test runs it as root"]
fn root_open_refuses_a_device_that_is_not_a_tap() {
    if !is_root() {
        return;
    }
    let ns = TestNetns::new();
    ns.ip(&["link", "add", "notatap", "type", "bridge"]);
    let err = netns::run_in(ns.path(), || Tap::attach(&TapConfig::new("notatap")))
        .unwrap()
        .unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("TUNSETIFF for queue 0"), "{text}");
    assert!(text.contains("not a TAP"), "{text}");
}

#[test]
#[ignore = "needs root and network namespaces: scripts/test runs it as root"]
fn root_tap_two_queues_both_carry_frames() {
    if !is_root() {
        return;
    }
    let ns = TestNetns::new();
    let name = unique_ifname("vt");
    let (tap, mac) = {
        let name = name.clone();
        netns::run_in(ns.path(), move || -> Result<_, String> {
            let cfg = TapConfig {
                queues: 2,
                ..TapConfig::new(&name)
            };
            let tap = Tap::open(&cfg).map_err(|e| e.to_string())?;
            let mac = configure(&name, Ipv4Addr::new(10, 96, 0, 1)).map_err(|e| e.to_string())?;
            Ok((tap, mac))
        })
        .unwrap()
        .unwrap()
    };
    assert_eq!(tap.queues(), 2);
    let rx_packets = || -> u64 {
        let json = ns.ip(&["-j", "-s", "link", "show", "dev", &name]);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        v[0]["stats64"]["rx"]["packets"].as_u64().unwrap()
    };
    let before = rx_packets();
    let queues = tap.into_queues();
    for (i, q) in queues.iter().enumerate() {
        let sender = Ipv4Addr::new(10, 96, 0, 10 + i as u8);
        let frame = arp_reply(sender, mac, Ipv4Addr::new(10, 96, 0, 1));
        tap::write_frame(q.as_fd(), &[0; VNET_HDR_LEN], &frame).unwrap();
    }
    assert_eq!(rx_packets() - before, 2, "one frame taken from each queue");
}

#[test]
#[ignore = "needs root and network namespaces: scripts/test runs it as root"]
fn root_run_in_enters_the_namespace_and_leaves_the_caller_alone() {
    if !is_root() {
        return;
    }
    let ns = TestNetns::new();
    let here = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
    let there = netns::run_in(ns.path(), || {
        std::fs::read_link("/proc/thread-self/ns/net").unwrap()
    })
    .unwrap();
    assert_ne!(here, there);
    assert_eq!(
        std::fs::read_link("/proc/thread-self/ns/net").unwrap(),
        here
    );
    assert!(netns::is_netns(ns.path()));

    // Only `lo` in a fresh namespace.
    let links = netns::run_in(ns.path(), || -> Result<_, NetlinkError> {
        let mut rtnl = Rtnl::open()?;
        Ok((rtnl.link_index("lo")?, rtnl.link_index("eth0")?))
    })
    .unwrap()
    .unwrap();
    assert_eq!(links, (Some(1), None));
}

#[test]
#[ignore = "needs root and network namespaces: scripts/test runs it as root"]
fn root_run_in_a_deleted_namespace_names_the_path() {
    if !is_root() {
        return;
    }
    let ns = TestNetns::new();
    let path = ns.path().to_path_buf();
    drop(ns);
    let err = netns::run_in(&path, || ()).unwrap_err();
    assert!(matches!(err, NetnsError::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains(path.to_str().unwrap()), "{err}");
}

#[test]
#[ignore = "needs root and network namespaces: scripts/test runs it as root"]
fn root_netlink_configures_a_link_and_reads_it_back() {
    if !is_root() {
        return;
    }
    let ns = TestNetns::new();
    // A veth pair with the far end up, so the link gets a carrier (this
    // kernel has no dummy driver).
    ns.ip(&[
        "link", "add", "veth0", "type", "veth", "peer", "name", "veth1",
    ]);
    ns.ip(&["link", "set", "veth1", "up"]);
    let index = netns::run_in(ns.path(), check_netlink)
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));
    // What iproute2 sees agrees.
    let addrs = ns.ip(&["addr", "show", "dev", "pod0"]);
    assert!(
        addrs.contains("inet 10.98.0.5/24 brd 10.98.0.255"),
        "{addrs}"
    );
    assert!(addrs.contains("mtu 1400"), "{addrs}");
    let routes = ns.ip(&["route", "show"]);
    assert!(
        routes.contains("default via 10.98.0.1 dev pod0"),
        "{routes}"
    );
    // del_link happens last, inside the namespace.
    netns::run_in(ns.path(), move || -> Result<_, NetlinkError> {
        let mut rtnl = Rtnl::open()?;
        rtnl.del_link(index)?;
        rtnl.link(index)
    })
    .unwrap()
    .map(|link| assert_eq!(link, None))
    .unwrap();
    assert!(!ns.ip_ok(&["link", "show", "pod0"]));
}

fn check_netlink() -> Result<u32, NetlinkError> {
    let mut rtnl = Rtnl::open()?;
    let index = rtnl.link_index("veth0")?.expect("veth0 exists");
    let mac = [0x02, 0x42, 0xac, 0x11, 0x00, 0x05];
    rtnl.set_mac(index, mac)?;
    rtnl.set_mtu(index, 1400)?;
    rtnl.rename(index, "pod0")?;
    rtnl.set_up(index)?;
    assert_eq!(rtnl.link_index("veth0")?, None);
    assert_eq!(rtnl.link_index("pod0")?, Some(index));
    let link = rtnl.link(index)?.expect("the link exists");
    assert_eq!(link.index, index);
    assert_eq!(link.name, "pod0");
    assert_eq!(link.mac, mac);
    assert_eq!(link.mtu, 1400);
    assert!(link.up);
    assert_eq!(rtnl.link(index + 1000)?, None);

    // The kernel's refusal names the request and gives its reason.
    let err = rtnl.set_mtu(index, 10).unwrap_err();
    assert_eq!(err.kernel_errno(), Some(libc::EINVAL), "{err}");
    assert!(
        err.to_string()
            .starts_with(&format!("RTM_SETLINK mtu 10 on ifindex {index}: ")),
        "{err}"
    );
    eprintln!("a kernel refusal reads: {err}");

    let v4 = IpAddr::V4(Ipv4Addr::new(10, 98, 0, 5));
    let v6 = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 5));
    rtnl.add_address(index, v4, 24)?;
    rtnl.add_address(index, v4, 24)?; // idempotent
    rtnl.add_address(index, v6, 64)?;
    let addrs = rtnl.addresses(index)?;
    assert!(addrs.contains(&(v4, 24)), "{addrs:?}");
    assert!(addrs.contains(&(v6, 64)), "{addrs:?}");
    assert_eq!(addrs.iter().filter(|a| **a == (v4, 24)).count(), 1);

    let gw = IpAddr::V4(Ipv4Addr::new(10, 98, 0, 1));
    rtnl.add_default_route(gw, index)?;
    rtnl.add_default_route(gw, index)?; // idempotent
    let net = IpAddr::V4(Ipv4Addr::new(10, 97, 0, 0));
    rtnl.add_route(net, 16, Some(gw), index)?;
    let err = rtnl.add_route(net, 16, Some(gw), index).unwrap_err();
    assert_eq!(err.kernel_errno(), Some(libc::EEXIST));
    assert!(
        err.to_string().starts_with(&format!(
            "RTM_NEWROUTE 10.97.0.0/16 via 10.98.0.1 dev ifindex {index}: File exists"
        )),
        "{err}"
    );
    let routes = rtnl.routes(false)?;
    let has = |dst: Option<(IpAddr, u8)>, gateway: Option<IpAddr>| {
        routes
            .iter()
            .any(|r| r.dst == dst && r.gateway == gateway && r.oif == Some(index))
    };
    assert!(has(None, Some(gw)), "default route: {routes:?}");
    assert!(has(Some((net, 16)), Some(gw)), "10.97/16: {routes:?}");
    let connected = IpAddr::V4(Ipv4Addr::new(10, 98, 0, 0));
    assert!(has(Some((connected, 24)), None), "connected: {routes:?}");

    let v6net = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0));
    let v6routes = rtnl.routes(true)?;
    assert!(
        v6routes
            .iter()
            .any(|r| r.dst == Some((v6net, 64)) && r.oif == Some(index)),
        "{v6routes:?}"
    );

    rtnl.del_address(index, v6, 64)?;
    assert!(!rtnl.addresses(index)?.contains(&(v6, 64)));
    let err = rtnl.del_address(index, v6, 64).unwrap_err();
    assert!(err.kernel_errno().is_some(), "{err}");
    Ok(index)
}

/// `rps_cpus` as a number (the kernel writes comma-separated 32-bit groups).
fn rps_value(text: &str) -> u128 {
    u128::from_str_radix(&text.trim().replace(',', ""), 16).expect("a hex bitmap")
}

/// Receive steering is written through a sysfs made in the interface's own namespace:
/// one given by path, or the calling thread's.
#[test]
#[ignore = "needs root and network namespaces: scripts/test runs it as root"]
fn root_rps_reaches_an_interface_in_another_namespace_and_in_our_own() {
    if !is_root() {
        return;
    }
    let ns = TestNetns::new();
    let (name, peer) = (unique_ifname("vswr"), unique_ifname("vswp"));
    ns.ip(&["link", "add", &name, "type", "veth", "peer", "name", &peer]);
    let read_in_ns = |ifname: &str| {
        let file = format!("/sys/class/net/{ifname}/queues/rx-0/rps_cpus");
        rps_value(&run("ip", &["netns", "exec", &ns.name, "cat", &file]))
    };
    assert_eq!(read_in_ns(&name), 0, "a new device steers nothing");
    super::rps::steer(Some(ns.path()), &name, 1, "1").expect("steer by namespace path");
    assert_eq!(read_in_ns(&name), 1, "rps_cpus after steering to CPU 0");

    // From a thread inside the namespace, with no path: that thread's namespace.
    let p = peer.clone();
    netns::run_in(ns.path(), move || super::rps::steer(None, &p, 1, "1"))
        .expect("enter the namespace")
        .expect("steer in the thread's own namespace");
    assert_eq!(read_in_ns(&peer), 1, "the peer's rps_cpus");

    // A device that is not there is an error that names the file.
    let e = super::rps::steer(Some(ns.path()), "vsw-no-such", 1, "1").unwrap_err();
    assert!(
        e.to_string()
            .contains("class/net/vsw-no-such/queues/rx-0/rps_cpus"),
        "{e}"
    );
}
