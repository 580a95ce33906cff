//! Shared helpers of the benchmarks: frames and rule sets to measure against.
#![forbid(unsafe_code)]

/// An Ethernet + IPv4 + UDP or TCP frame of exactly `len` bytes (at least 54 for TCP,
/// 42 for UDP), with valid lengths; checksums are left zero (extraction does not check
/// them; incremental updates work on any value).
pub fn frame(tcp: bool, len: usize, src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let l4_hdr = if tcp { 20 } else { 8 };
    let min = 14 + 20 + l4_hdr;
    let len = len.max(min);
    let mut f = vec![0u8; len];
    f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut f[14..];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((len - 14) as u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = if tcp { 6 } else { 17 };
    ip[12..16].copy_from_slice(&src);
    ip[16..20].copy_from_slice(&dst);
    let l4 = &mut ip[20..];
    l4[0..2].copy_from_slice(&sport.to_be_bytes());
    l4[2..4].copy_from_slice(&dport.to_be_bytes());
    if tcp {
        l4[12] = 0x50;
        l4[13] = 0x18;
    } else {
        l4[4..6].copy_from_slice(&((len - 34) as u16).to_be_bytes());
    }
    f
}

/// `inner` inside outer Ethernet + IPv4 + UDP (port 4789) + VXLAN with VNI `vni`.
pub fn vxlan(inner: &[u8], vni: u32) -> Vec<u8> {
    let mut f = frame(
        false,
        14 + 20 + 8 + 8 + inner.len(),
        [192, 168, 100, 1],
        [192, 168, 100, 2],
        49152,
        4789,
    );
    let vx = 14 + 20 + 8;
    f[vx] = 0x08;
    f[vx + 4..vx + 8].copy_from_slice(&(vni << 8).to_be_bytes());
    f[vx + 8..].copy_from_slice(inner);
    f
}

/// A fast path over `bridge`'s pipeline with a real connection tracker of its own (a
/// table of 65,536 connections), as one worker of the switch runs it. The tracker is
/// returned too: it must outlive the fast path's use and can be flushed between rounds.
pub fn tracked_fast_path(
    bridge: &vswitch::ofproto::Bridge,
) -> (
    vswitch::ct::Tracker,
    vswitch::dp::FastPath<vswitch::ct::CtWorker>,
) {
    let config = vswitch::ct::Config {
        capacity: 1 << 16,
        ..vswitch::ct::Config::default()
    };
    let (tracker, _) = vswitch::ct::Tracker::open(&config, 0).expect("a connection table");
    let fp = vswitch::dp::FastPath::with_conntrack(
        bridge.pipeline_handle(),
        bridge.mac_table(),
        vswitch::dp::FastPathConfig::default(),
        tracker.worker(1),
    );
    (tracker, fp)
}
