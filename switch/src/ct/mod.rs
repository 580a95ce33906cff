//! Connection tracking and NAT: the tracker behind the datapath's `ct(...)` action, with
//! the semantics of Linux's nf_conntrack and Open vSwitch's userspace conntrack.
//!
//! - [`tuple`]: a connection's tuple per direction, read from a packet.
//! - [`frag`]: IP fragments without reassembly: a later fragment is tracked with the
//!   ports its datagram's first fragment had.
//! - [`table`]: the shared connection table (entries of words in memory that may be a
//!   file, so the table outlives the process; a sharded index; no global lock).
//! - [`tcp`]: the TCP state machine with window tracking (Linux's nf_conntrack_proto_tcp).
//! - [`nat`]: choosing a NAT binding whose reply tuple is unique, and another source port
//!   for a new connection whose reply tuple another connection holds.
//! - [`rewrite`]: NAT on a packet's bytes (addresses, ports, ICMP ids, the header quoted
//!   inside an ICMP error), checksums kept right on full and partial-checksum frames.
//!
//! One [`Tracker`] per switch; each worker tracks through its own [`CtWorker`] (which
//! implements the datapath's [`Conntrack`] hook) sharing the tracker's table.
//!
//! The table survives the process: it lives in a file beside the control socket
//! ([`file_for`]: `conntrack.table` for the default `vswitchd.sock`), mapped shared, so what a worker stored is in the page
//! cache the moment it is stored, and a `kill -9` loses nothing but the entry being
//! written at that instant. A new process maps the file again, checks its header (magic,
//! layout version, capacity, boot), drops entries that were being written (their lock bit
//! is set), expired or inconsistent, and rebuilds the index from the rest. A file that
//! does not fit is discarded with a message.

pub mod frag;
pub mod nat;
pub mod rewrite;
pub mod table;
pub mod tcp;
pub mod tuple;

use crate::dp::action::DpCt;
use crate::dp::conntrack::{Conntrack, CtResult, OrigTuple};
use crate::dp::packet::Packet;
use crate::flow::Layers;
use crate::sys::mapped::MappedWords;
use frag::FragTable;
use parking_lot::{Mutex, RwLock};
use rewrite::Endpoint;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use table::{
    Dir, ENTRY_WORDS, F_ASSURED, F_DNAT, F_SEEN_REPLY, F_SNAT, HEADER_WORDS, Hints, Locked,
    Refused, Table, W_EXPIRES, W_FLAGS, W_LABEL, W_ORIG, W_REPLY, W_TCP, read_tuple,
};
use tcp::{TcpConn, TcpTimeouts};
use tuple::{Kind, Tuple};
use vswitch_proto::action::NatKind;
use vswitch_proto::field::ipproto;
use vswitch_proto::flow::{Flow, ct_state, frag as nw_frag};

/// The file's first word.
const MAGIC: u64 = u64::from_be_bytes(*b"VSWCTAB\0");
/// Changes whenever the entry layout (or the TCP state's encoding) changes.
const LAYOUT: u64 = 1 << 32 | (ENTRY_WORDS as u64) << 8 | TcpConn::WORDS as u64;
/// The file's name in the run directory.
pub const FILE_NAME: &str = "conntrack.table";

/// The table's file for a switch whose control socket is `socket`: `conntrack.table` in
/// its directory for the usual `vswitchd.sock`, else `NAME.conntrack.table` after the
/// socket's name, so that two switches sharing a directory (with their own sockets) never
/// share a table.
pub fn file_for(socket: &std::path::Path) -> Option<PathBuf> {
    let dir = socket.parent()?;
    let name = socket.file_name()?.to_string_lossy();
    Some(match name.strip_suffix(".sock") {
        Some("vswitchd") => dir.join(FILE_NAME),
        Some(stem) => dir.join(format!("{stem}.{FILE_NAME}")),
        None => dir.join(format!("{name}.{FILE_NAME}")),
    })
}
/// Connections the table holds unless told otherwise (kube-proxy sets at least 131072).
pub const DEFAULT_CAPACITY: u32 = 262_144;
const ZONES: usize = 1 << 16;
/// A zone limit entry that is not set (the default limit applies).
const UNSET: u32 = u32::MAX;

/// Timeouts, in seconds, with Linux's defaults (`nf_conntrack_*_timeout*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp: TcpTimeouts,
    /// UDP before a reply was seen.
    pub udp: u32,
    /// UDP once both directions were seen.
    pub udp_stream: u32,
    pub icmp: u32,
    /// Other IP protocols.
    pub generic: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp: TcpTimeouts::default(),
            udp: 30,
            udp_stream: 120,
            icmp: 30,
            generic: 600,
        }
    }
}

impl Timeouts {
    /// Every name with its value: `tcp_<state>`, `udp`, `udp_stream`, `icmp`, `generic`.
    pub fn list(&self) -> Vec<(String, u32)> {
        let mut v: Vec<(String, u32)> = TcpTimeouts::names()
            .iter()
            .map(|n| (format!("tcp_{n}"), self.tcp.get(n).unwrap_or(0)))
            .collect();
        v.extend([
            ("udp".to_string(), self.udp),
            ("udp_stream".to_string(), self.udp_stream),
            ("icmp".to_string(), self.icmp),
            ("generic".to_string(), self.generic),
        ]);
        v
    }

    pub fn set(&mut self, name: &str, secs: u32) -> Result<(), String> {
        if secs == 0 {
            return Err(format!("timeout {name}: must be at least 1 second"));
        }
        match name {
            "udp" => self.udp = secs,
            "udp_stream" => self.udp_stream = secs,
            "icmp" => self.icmp = secs,
            "generic" => self.generic = secs,
            _ => match name.strip_prefix("tcp_") {
                Some(n) if TcpTimeouts::names().contains(&n) => self.tcp.set(n, secs)?,
                _ => {
                    return Err(format!(
                        "no timeout named {name:?} (known: {})",
                        self.list()
                            .iter()
                            .map(|(n, _)| n.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            },
        }
        Ok(())
    }
}

/// How the tracker is made.
#[derive(Clone, Debug)]
pub struct Config {
    /// Entries the table has room for (its memory: `capacity * ENTRY_WORDS * 8` bytes,
    /// resident only where used).
    pub capacity: u32,
    /// The file the table lives in across restarts (`None`: anonymous memory, lost at
    /// exit).
    pub file: Option<PathBuf>,
    /// Mid-stream pickup of TCP connections (Linux's `nf_conntrack_tcp_loose`, on).
    pub tcp_loose: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            capacity: DEFAULT_CAPACITY,
            file: None,
            tcp_loose: true,
        }
    }
}

/// Counters, as `show` prints them.
pub use vswitch_proto::rpc::CtStats as Stats;

#[derive(Default)]
struct Counters {
    created: AtomicU64,
    expired: AtomicU64,
    flushed: AtomicU64,
    early_drops: AtomicU64,
    refused_full: AtomicU64,
    refused_zone: AtomicU64,
    nat_exhausted: AtomicU64,
    clash_resolved: AtomicU64,
    invalid: AtomicU64,
    insert_races: AtomicU64,
    reused: AtomicU64,
    reuse_dropped: AtomicU64,
}

struct Inner {
    table: Table,
    loose: bool,
    limit: AtomicU32,
    /// 0: no limit per zone unless set.
    zone_default: AtomicU32,
    zone_limit: Box<[AtomicU32]>,
    zone_count: Box<[AtomicU32]>,
    timeouts: RwLock<Timeouts>,
    timeouts_version: AtomicU64,
    /// CLOCK_MONOTONIC ms minus the datapath's clock (`ofproto::now_ms`), so expiry times in
    /// the table stay meaningful for the next process.
    clock_offset: u64,
    counters: Counters,
    sweep_at: Mutex<u32>,
}

/// The connection tracker: cheap to clone, shared by the workers and the daemon.
#[derive(Clone)]
pub struct Tracker(Arc<Inner>);

/// The background sweep; stops when dropped.
#[derive(Debug)]
pub struct Sweeper {
    stop: Arc<std::sync::atomic::AtomicBool>,
    join: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(j) = self.join.take() {
            j.thread().unpark();
            let _ = j.join();
        }
    }
}

/// Milliseconds of CLOCK_MONOTONIC (shared by every process since boot).
fn mono_ms() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1000 + t.tv_nsec() as u64 / 1_000_000)
        .unwrap_or(0)
}

/// A number that names this boot (a table file from another boot has meaningless times).
fn boot_id() -> u64 {
    let s = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    s.trim().bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

impl fmt::Debug for Tracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracker")
            .field("table", &self.0.table)
            .finish_non_exhaustive()
    }
}

impl Tracker {
    /// A tracker; with a run directory, reusing the table a previous process left there
    /// when it fits. Returns a line for the log about what was found.
    pub fn open(config: &Config, now_ms: u64) -> std::io::Result<(Tracker, Option<String>)> {
        let cap = config.capacity.max(1);
        let words = HEADER_WORDS + cap as usize * ENTRY_WORDS;
        let clock_offset = mono_ms().saturating_sub(now_ms);
        let (mem, path, had) = match &config.file {
            Some(path) => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let (mem, had) = open_checked(path, words, cap)?;
                (mem, Some(path.clone()), had)
            }
            None => (MappedWords::anonymous(words)?, None, None),
        };
        let t = Tracker(Arc::new(Inner {
            table: Table::new(mem, cap),
            loose: config.tcp_loose,
            limit: AtomicU32::new(cap),
            zone_default: AtomicU32::new(0),
            zone_limit: (0..ZONES).map(|_| AtomicU32::new(UNSET)).collect(),
            zone_count: (0..ZONES).map(|_| AtomicU32::new(0)).collect(),
            timeouts: RwLock::new(Timeouts::default()),
            timeouts_version: AtomicU64::new(1),
            clock_offset,
            counters: Counters::default(),
            sweep_at: Mutex::new(0),
        }));
        let mut msg = had.flatten();
        if let Some(path) = path {
            let h = t.0.table.header();
            let now = now_ms + clock_offset;
            let (kept, dropped) = t.0.table.rebuild(|e| {
                e.get(W_EXPIRES) > now
                    && (read_tuple(e.w, W_ORIG).proto != ipproto::TCP
                        || TcpConn::decode(&tcp_words(e)).is_some())
            });
            for slot in 0..t.0.table.high_water() {
                if let Some(e) = t.0.table.lock(slot) {
                    let z = read_tuple(e.w, W_ORIG).zone;
                    t.0.zone_count[z as usize].fetch_add(1, Relaxed);
                }
            }
            t.0.counters.reused.store(kept as u64, Relaxed);
            t.0.counters.reuse_dropped.store(dropped as u64, Relaxed);
            h[0].store(MAGIC, Relaxed);
            h[1].store(LAYOUT, Relaxed);
            h[2].store(cap as u64, Relaxed);
            h[3].store(boot_id(), Relaxed);
            if kept + dropped > 0 {
                msg = Some(format!(
                    "conntrack: reused {kept} connections from {} ({dropped} dropped: expired, half-written or inconsistent)",
                    path.display()
                ));
            }
        }
        Ok((t, msg))
    }

    /// Start a thread that calls [`Tracker::sweep`] every `every` until the returned
    /// handle is dropped.
    pub fn spawn_sweeper(&self, every: std::time::Duration) -> Sweeper {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (t, s) = (self.clone(), stop.clone());
        let join = std::thread::Builder::new()
            .name("vswitch-ct-sweep".into())
            .spawn(move || {
                while !s.load(Relaxed) {
                    std::thread::park_timeout(every);
                    t.sweep(crate::ofproto::now_ms());
                }
            })
            .ok();
        Sweeper { stop, join }
    }

    /// A handle for one worker.
    pub fn worker(&self, seed: u64) -> CtWorker {
        CtWorker {
            t: self.clone(),
            timeouts: *self.0.timeouts.read(),
            version: self.0.timeouts_version.load(Relaxed),
            rng: seed | 1,
            frags: FragTable::new(seed.rotate_left(32) ^ 0x5bd1_e995),
            hints: Hints::new(),
        }
    }

    pub fn timeouts(&self) -> Timeouts {
        *self.0.timeouts.read()
    }

    pub fn set_timeouts(&self, t: Timeouts) {
        *self.0.timeouts.write() = t;
        self.0.timeouts_version.fetch_add(1, Relaxed);
    }

    /// The table-wide limit (at most the capacity).
    pub fn set_limit(&self, n: u32) -> Result<(), String> {
        let cap = self.0.table.capacity();
        if n > cap {
            return Err(format!(
                "conntrack limit {n} is above the table's capacity {cap} (restart vswitchd with --ct-capacity {n})"
            ));
        }
        self.0.limit.store(n, Relaxed);
        Ok(())
    }

    /// Limits per zone, as `ovs-appctl dpctl/ct-set-limits`: `zone` None sets the default
    /// (0 = no limit); `limit` None removes a zone's own limit.
    pub fn set_zone_limit(&self, zone: Option<u16>, limit: Option<u32>) {
        match zone {
            None => self.0.zone_default.store(limit.unwrap_or(0), Relaxed),
            Some(z) => self.0.zone_limit[z as usize].store(limit.unwrap_or(UNSET), Relaxed),
        }
    }

    /// (default limit, [(zone, limit, count)] for zones with their own limit or with
    /// connections).
    pub fn zone_limits(&self) -> (u32, Vec<(u16, Option<u32>, u32)>) {
        let v = (0..ZONES)
            .filter_map(|z| {
                let l = self.0.zone_limit[z].load(Relaxed);
                let c = self.0.zone_count[z].load(Relaxed);
                (l != UNSET || c > 0).then_some((z as u16, (l != UNSET).then_some(l), c))
            })
            .collect();
        (self.0.zone_default.load(Relaxed), v)
    }

    pub fn stats(&self) -> Stats {
        let c = &self.0.counters;
        Stats {
            connections: self.0.table.len(),
            limit: self.0.limit.load(Relaxed),
            capacity: self.0.table.capacity(),
            created: c.created.load(Relaxed),
            expired: c.expired.load(Relaxed),
            flushed: c.flushed.load(Relaxed),
            early_drops: c.early_drops.load(Relaxed),
            refused_full: c.refused_full.load(Relaxed),
            refused_zone: c.refused_zone.load(Relaxed),
            nat_exhausted: c.nat_exhausted.load(Relaxed),
            clash_resolved: c.clash_resolved.load(Relaxed),
            invalid: c.invalid.load(Relaxed),
            insert_races: c.insert_races.load(Relaxed),
            reused: c.reused.load(Relaxed),
            reuse_dropped: c.reuse_dropped.load(Relaxed),
        }
    }

    /// Check the table's invariants (tests and fuzzing): see [`Table::check`]; also the
    /// per-zone counts add up.
    pub fn check(&self) -> Result<(), String> {
        self.0.table.check()?;
        let zones: u64 = self
            .0
            .zone_count
            .iter()
            .map(|c| c.load(Relaxed) as u64)
            .sum();
        if zones != self.0.table.len() as u64 {
            return Err(format!(
                "zone counts add up to {zones}, the table holds {}",
                self.0.table.len()
            ));
        }
        Ok(())
    }

    /// Memory the table takes: (entry bytes in use, index bytes).
    pub fn memory(&self) -> (usize, usize) {
        (
            self.0.table.high_water() as usize * ENTRY_WORDS * 8,
            self.0.table.index_bytes(),
        )
    }

    fn abs(&self, now_ms: u64) -> u64 {
        now_ms + self.0.clock_offset
    }

    fn remove(&self, slot: u32, pred: impl FnOnce(&Locked<'_>) -> bool) -> bool {
        match self.0.table.remove_if(slot, pred) {
            Some(t) => {
                self.0.zone_count[t.zone as usize].fetch_sub(1, Relaxed);
                true
            }
            None => false,
        }
    }

    /// Remove expired connections from the next part of the table: each call looks at a
    /// twentieth of it (at least 4096 entries), so a call every 100 ms visits every entry
    /// every two seconds and no call stops the datapath for long.
    pub fn sweep(&self, now_ms: u64) -> usize {
        let now = self.abs(now_ms);
        let high = self.0.table.high_water();
        if high == 0 {
            return 0;
        }
        let n = (high / 20).max(4096).min(high);
        let mut at = self.0.sweep_at.lock();
        let mut removed = 0;
        for i in 0..n {
            let slot = (*at + i) % high;
            if self.0.table.used(slot)
                && self.0.table.entry(slot)[W_EXPIRES].load(Relaxed) <= now
                && self.remove(slot, |e| e.get(W_EXPIRES) <= now)
            {
                removed += 1;
            }
        }
        *at = (*at + n) % high;
        self.0.counters.expired.fetch_add(removed as u64, Relaxed);
        removed
    }

    /// Every live connection (in zone `zone`, if given), as `dump-conntrack` shows it.
    pub fn dump(&self, zone: Option<u16>, now_ms: u64) -> Vec<ConnInfo> {
        let mut v = Vec::new();
        self.for_each(zone, now_ms, |c| v.push(c.clone()));
        v
    }

    /// Each live connection of `zone` (every zone if None), one at a time.
    pub fn for_each(&self, zone: Option<u16>, now_ms: u64, mut f: impl FnMut(&ConnInfo)) {
        let now = self.abs(now_ms);
        for slot in 0..self.0.table.high_water() {
            let Some(e) = self.0.table.lock(slot) else {
                continue;
            };
            let info = ConnInfo::read(&e, now);
            drop(e);
            if info.timeout_ms > 0 && zone.is_none_or(|z| z == info.orig.zone) {
                f(&info);
            }
        }
    }

    /// Remove the connections of `zone` (all zones if None) whose tuples match `filter`.
    /// Returns how many went.
    pub fn flush(&self, zone: Option<u16>, filter: &TupleFilter) -> usize {
        self.flush_any(zone, std::slice::from_ref(filter))
    }

    /// Remove the connections of `zone` (all zones if None) that match any of `filters`,
    /// in one pass over the table. Returns how many went.
    pub fn flush_any(&self, zone: Option<u16>, filters: &[TupleFilter]) -> usize {
        let mut n = 0;
        if filters.is_empty() {
            return 0;
        }
        for slot in 0..self.0.table.high_water() {
            if self.0.table.used(slot)
                && self.remove(slot, |e| {
                    let (o, r) = (read_tuple(e.w, W_ORIG), read_tuple(e.w, W_REPLY));
                    zone.is_none_or(|z| z == o.zone) && filters.iter().any(|f| f.matches(&o, &r))
                })
            {
                n += 1;
            }
        }
        self.0.counters.flushed.fetch_add(n as u64, Relaxed);
        n
    }

    /// Make room for one more connection in zone `zone`: Ok if there is, after evicting
    /// an expired or unreplied connection when the table is at its limit.
    fn reserve(&self, zone: u16, now: u64, rnd: u64) -> Result<(), Refused> {
        let zl = self.0.zone_limit[zone as usize].load(Relaxed);
        let zl = if zl == UNSET {
            self.0.zone_default.load(Relaxed)
        } else {
            zl
        };
        if zl != 0 && self.0.zone_count[zone as usize].load(Relaxed) >= zl {
            self.0.counters.refused_zone.fetch_add(1, Relaxed);
            return Err(Refused::Full);
        }
        if self.0.table.len() >= self.0.limit.load(Relaxed) && !self.early_drop(now, rnd) {
            self.0.counters.refused_full.fetch_add(1, Relaxed);
            return Err(Refused::Full);
        }
        Ok(())
    }

    /// Evict one connection that is expired or never saw a reply, looking at up to 128
    /// entries from a random place (Linux's early_drop looks at a few hash chains).
    fn early_drop(&self, now: u64, rnd: u64) -> bool {
        let high = self.0.table.high_water();
        if high == 0 {
            return false;
        }
        let start = (rnd % high as u64) as u32;
        for i in 0..128.min(high) {
            let slot = (start + i) % high;
            if !self.0.table.used(slot) {
                continue;
            }
            let w = self.0.table.entry(slot);
            let expired = w[W_EXPIRES].load(Relaxed) <= now;
            if (expired || w[W_FLAGS].load(Relaxed) & F_ASSURED == 0)
                && self.remove(slot, |e| {
                    e.get(W_EXPIRES) <= now || e.get(W_FLAGS) & F_ASSURED == 0
                })
            {
                let c = if expired {
                    &self.0.counters.expired
                } else {
                    &self.0.counters.early_drops
                };
                c.fetch_add(1, Relaxed);
                return true;
            }
        }
        false
    }
}

/// Check an existing table file: its header must say this layout, this capacity and this
/// boot, or it is discarded (renamed aside is not worth it: its times are meaningless or
/// its layout unknown). Returns the mapping and, when a file was discarded, why.
fn open_checked(
    path: &Path,
    words: usize,
    cap: u32,
) -> std::io::Result<(MappedWords, Option<Option<String>>)> {
    if let Ok(md) = std::fs::metadata(path) {
        let (mem, had) = MappedWords::open(path, words.max(HEADER_WORDS))?;
        let h = &mem.words()[..HEADER_WORDS];
        let r = |i: usize| h[i].load(Relaxed);
        let why = if !had || md.len() != (words * 8) as u64 {
            Some(format!("its size is {} bytes, not {}", md.len(), words * 8))
        } else if r(0) != MAGIC {
            Some("it is not a vswitch connection table".to_string())
        } else if r(1) != LAYOUT {
            Some(format!(
                "its layout version is {:#x}, this vswitchd's is {LAYOUT:#x}",
                r(1)
            ))
        } else if r(2) != cap as u64 {
            Some(format!(
                "it holds {} connections, --ct-capacity is {cap}",
                r(2)
            ))
        } else if r(3) != boot_id() {
            Some("it was written before the machine last booted".to_string())
        } else {
            None
        };
        match why {
            None => return Ok((mem, Some(None))),
            Some(why) => {
                drop(mem);
                std::fs::remove_file(path)?;
                let (mem, _) = MappedWords::open(path, words)?;
                return Ok((
                    mem,
                    Some(Some(format!(
                        "conntrack: discarded the connection table in {}: {why}",
                        path.display()
                    ))),
                ));
            }
        }
    }
    let (mem, _) = MappedWords::open(path, words)?;
    Ok((mem, None))
}

fn tcp_words(e: &Locked<'_>) -> [u64; TcpConn::WORDS] {
    std::array::from_fn(|i| e.get(W_TCP + i))
}

/// Which connections a flush removes: the fields given must equal the original tuple's
/// (or, for `reply_*`, the reply tuple's); nothing given matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TupleFilter {
    pub src: Option<u128>,
    pub dst: Option<u128>,
    pub proto: Option<u8>,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub reply_src: Option<u128>,
    pub reply_dst: Option<u128>,
    pub reply_sport: Option<u16>,
    pub reply_dport: Option<u16>,
}

impl TupleFilter {
    pub fn matches(&self, o: &Tuple, r: &Tuple) -> bool {
        fn m<T: PartialEq>(want: Option<T>, have: T) -> bool {
            want.is_none_or(|w| w == have)
        }
        m(self.src, o.src)
            && m(self.dst, o.dst)
            && m(self.proto, o.proto)
            && m(self.sport, o.sport)
            && m(self.dport, o.dport)
            && m(self.reply_src, r.src)
            && m(self.reply_dst, r.dst)
            && m(self.reply_sport, r.sport)
            && m(self.reply_dport, r.dport)
    }
}

/// One connection as `dump-conntrack` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnInfo {
    pub orig: Tuple,
    pub reply: Tuple,
    pub mark: u32,
    pub label: u128,
    /// TCP's state name as Open vSwitch prints it.
    pub tcp_state: Option<&'static str>,
    pub seen_reply: bool,
    pub assured: bool,
    pub timeout_ms: u64,
}

impl ConnInfo {
    fn read(e: &Locked<'_>, now: u64) -> ConnInfo {
        let orig = read_tuple(e.w, W_ORIG);
        let flags = e.get(W_FLAGS);
        ConnInfo {
            orig,
            reply: read_tuple(e.w, W_REPLY),
            mark: (flags >> 32) as u32,
            label: (e.get(W_LABEL) as u128) << 64 | e.get(W_LABEL + 1) as u128,
            tcp_state: (orig.proto == ipproto::TCP)
                .then(|| TcpConn::decode(&tcp_words(e)).map(|c| c.state().ovs_name()))
                .flatten(),
            seen_reply: flags & F_SEEN_REPLY != 0,
            assured: flags & F_ASSURED != 0,
            timeout_ms: e.get(W_EXPIRES).saturating_sub(now),
        }
    }
}

fn proto_name(t: &Tuple) -> String {
    match (t.proto, t.v6) {
        (ipproto::TCP, _) => "tcp".into(),
        (ipproto::UDP, _) => "udp".into(),
        (ipproto::SCTP, _) => "sctp".into(),
        (ipproto::ICMP, false) => "icmp".into(),
        (ipproto::ICMPV6, true) => "icmpv6".into(),
        (p, _) => p.to_string(),
    }
}

fn fmt_tuple(f: &mut fmt::Formatter<'_>, t: &Tuple) -> fmt::Result {
    write!(f, "src={},dst={}", t.src_ip(), t.dst_ip())?;
    if t.has_ports() {
        write!(f, ",sport={},dport={}", t.sport, t.dport)?;
    } else if t.is_icmp() {
        write!(
            f,
            ",id={},type={},code={}",
            t.sport,
            t.dport >> 8,
            t.dport & 0xff
        )?;
    }
    Ok(())
}

/// Open vSwitch's `dpctl/dump-conntrack` line (`ct_dpif_format_entry`).
impl fmt::Display for ConnInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, false)
    }
}

/// [`ConnInfo::with_timeout`].
struct WithTimeout<'a>(&'a ConnInfo);

impl fmt::Display for WithTimeout<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.write(f, true)
    }
}

impl ConnInfo {
    /// The line of `dpctl/dump-conntrack -s`: `timeout=` (whole seconds left) after the
    /// zone, where Open vSwitch puts it.
    pub fn with_timeout(&self) -> impl fmt::Display + '_ {
        WithTimeout(self)
    }

    fn write(&self, f: &mut fmt::Formatter<'_>, timeout: bool) -> fmt::Result {
        f.write_str(&proto_name(&self.orig))?;
        f.write_str(",orig=(")?;
        fmt_tuple(f, &self.orig)?;
        f.write_str("),reply=(")?;
        fmt_tuple(f, &self.reply)?;
        f.write_str(")")?;
        if self.orig.zone != 0 {
            write!(f, ",zone={}", self.orig.zone)?;
        }
        if timeout {
            write!(f, ",timeout={}", self.timeout_ms / 1000)?;
        }
        if self.mark != 0 {
            write!(f, ",mark={}", self.mark)?;
        }
        if self.label != 0 {
            write!(f, ",labels={:#x}", self.label)?;
        }
        if let Some(s) = self.tcp_state {
            write!(f, ",protoinfo=(state={s})")?;
        }
        Ok(())
    }
}

/// One worker's way into the tracker (the datapath's [`Conntrack`]).
pub struct CtWorker {
    t: Tracker,
    timeouts: Timeouts,
    version: u64,
    rng: u64,
    /// First fragments seen lately, for the rest of their datagrams (fragments of one
    /// datagram come in on one port, which one worker reads).
    frags: FragTable,
    /// Where this worker found recent packets' connections.
    hints: Hints,
}

/// What looking a packet's connection up came to.
enum Found {
    /// A known connection's packet whose answer is complete (nothing to translate).
    Done(CtResult),
    Seen(Seen),
    Invalid,
    /// Expired: removed, then the packet is new.
    Expired(u32),
    /// To be removed (a reopening SYN, `force`), then the packet is new.
    Remove(u32),
    /// A hint led to an entry that no longer holds the connection: look in the index.
    Moved,
}

/// What a packet did to its connection, decided under the entry's lock.
struct Seen {
    state: u16,
    mark: u32,
    label: u128,
    orig: Tuple,
    reply: Tuple,
    flags: u64,
    dir: Dir,
}

fn endpoint(addr: u128, port: u16, t: &Tuple) -> Endpoint {
    Endpoint {
        addr: tuple::ip(addr, t.v6),
        port: (t.has_ports() || t.is_icmp()).then_some(port),
    }
}

/// The rewrite that gives a packet in direction `dir` the addresses its connection's NAT
/// says: (new source, new destination).
fn nat_targets(
    orig: &Tuple,
    reply: &Tuple,
    flags: u64,
    dir: Dir,
) -> (Option<Endpoint>, Option<Endpoint>) {
    let (snat, dnat) = (flags & F_SNAT != 0, flags & F_DNAT != 0);
    // What the packet must look like: the reverse of the other direction's tuple.
    let (want, changes_src, changes_dst) = match dir {
        Dir::Orig => (reply.reverse(), snat, dnat),
        Dir::Reply => (orig.reverse(), dnat, snat),
    };
    // ICMP echo: the identifier travels in `sport` both ways.
    let (sp, dp) = if want.is_icmp() {
        (want.sport, want.sport)
    } else {
        (want.sport, want.dport)
    };
    (
        changes_src.then(|| endpoint(want.src, sp, &want)),
        changes_dst.then(|| endpoint(want.dst, dp, &want)),
    )
}

impl fmt::Debug for CtWorker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CtWorker").finish_non_exhaustive()
    }
}

impl CtWorker {
    fn rand(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn refresh_timeouts(&mut self) {
        let v = self.t.0.timeouts_version.load(Relaxed);
        if v != self.version {
            self.timeouts = *self.t.0.timeouts.read();
            self.version = v;
        }
    }

    fn timeout_ms(&self, proto: u8, flags: u64, tcp: Option<&TcpConn>) -> u64 {
        let t = &self.timeouts;
        let s = match proto {
            ipproto::TCP => {
                return tcp.map_or(
                    t.tcp.get("established").unwrap_or(432_000) as u64 * 1000,
                    |c| c.timeout_ms(&t.tcp),
                );
            }
            ipproto::UDP if flags & F_SEEN_REPLY != 0 => t.udp_stream,
            ipproto::UDP => t.udp,
            ipproto::ICMP | ipproto::ICMPV6 => t.icmp,
            _ => t.generic,
        };
        s as u64 * 1000
    }

    fn invalid(&self, zone: u16) -> CtResult {
        self.t.0.counters.invalid.fetch_add(1, Relaxed);
        CtResult {
            state: ct_state::TRK | ct_state::INV,
            zone,
            ..CtResult::default()
        }
    }

    /// A packet of a known connection, in direction `dir`: advance its state.
    /// Err(true): the connection must be removed and the packet seen as new (a SYN that
    /// reopens it, `force` in the reply direction); Err(false): the packet is invalid.
    fn update(
        &self,
        e: &Locked<'_>,
        t: &Tuple,
        dir: Dir,
        seg: Option<&tcp::Segment>,
        ct: &DpCt,
        now: u64,
    ) -> Result<Seen, bool> {
        if ct.force && ct.commit && dir == Dir::Reply {
            return Err(true);
        }
        let mut flags = e.get(W_FLAGS);
        // Without NAT the tuples are the packet's and its reverse: no need to read them.
        let (orig, reply) = if flags & (F_SNAT | F_DNAT) != 0 {
            (read_tuple(e.w, W_ORIG), read_tuple(e.w, W_REPLY))
        } else if dir == Dir::Orig {
            (*t, t.reverse())
        } else {
            (t.reverse(), *t)
        };
        let mut conn = None;
        // A later fragment of a TCP segment (no header to check): the state stays as its
        // first fragment left it.
        let tcp_fragment = seg.is_none() && orig.proto == ipproto::TCP;
        // Linux lets some segments through without renewing the connection's timer.
        let mut renew = !tcp_fragment;
        if let Some(seg) = seg {
            let mut c = TcpConn::decode(&tcp_words(e)).ok_or(false)?;
            let d = if dir == Dir::Orig {
                tcp::Dir::Orig
            } else {
                tcp::Dir::Reply
            };
            match c.update(d, seg) {
                tcp::Verdict::Accept => {}
                tcp::Verdict::Ignore => renew = false,
                tcp::Verdict::Invalid => return Err(false),
                tcp::Verdict::Reopen => return Err(true),
            }
            for (i, w) in c.encode().iter().enumerate() {
                e.set(W_TCP + i, *w);
            }
            // Kept from early drop: assured, and not closing (Linux's can_early_drop).
            if c.assured() && !c.can_early_drop() {
                flags |= F_ASSURED;
            } else {
                flags &= !F_ASSURED;
            }
            conn = Some(c);
        }
        if dir == Dir::Reply {
            flags |= F_SEEN_REPLY;
            if seg.is_none() && !orig.is_icmp() && !tcp_fragment {
                flags |= F_ASSURED;
            }
        }
        if ct.commit {
            let m = (flags >> 32) as u32;
            if let Some((v, mask)) = ct.mark {
                flags = (flags & 0xffff_ffff) | (((m & !mask) | (v & mask)) as u64) << 32;
            }
            if let Some((v, mask)) = ct.label {
                let l = (e.get(W_LABEL) as u128) << 64 | e.get(W_LABEL + 1) as u128;
                let l = (l & !mask) | (v & mask);
                e.set(W_LABEL, (l >> 64) as u64);
                e.set(W_LABEL + 1, l as u64);
            }
        }
        e.set(W_FLAGS, flags);
        // A timeout of 0 (a refused TCP connection) leaves it expired: the next packet
        // starts anew.
        if renew {
            e.set(
                W_EXPIRES,
                now + self.timeout_ms(orig.proto, flags, conn.as_ref()),
            );
        }
        let mut state = ct_state::TRK;
        state |= if flags & F_SEEN_REPLY != 0 {
            ct_state::EST
        } else {
            ct_state::NEW
        };
        if dir == Dir::Reply {
            state |= ct_state::RPL;
        }
        Ok(Seen {
            state,
            mark: (flags >> 32) as u32,
            label: (e.get(W_LABEL) as u128) << 64 | e.get(W_LABEL + 1) as u128,
            orig,
            reply,
            flags,
            dir,
        })
    }

    /// The result for a packet of a connection, NAT applied to it when asked.
    fn finish(
        &self,
        pkt: &mut Packet,
        layers: &Layers,
        key: &Flow,
        ct: &DpCt,
        s: Seen,
    ) -> CtResult {
        let mut state = s.state;
        if ct.nat.is_some() && s.flags & (F_SNAT | F_DNAT) != 0 {
            let (src, dst) = nat_targets(&s.orig, &s.reply, s.flags, s.dir);
            // A packet too short for what NAT must write is left as it was: it must not
            // go on untranslated.
            if !rewrite::nat_packet(pkt, key, layers, src, dst) {
                return self.invalid(ct.zone);
            }
            if s.flags & F_SNAT != 0 {
                state |= ct_state::SNAT;
            }
            if s.flags & F_DNAT != 0 {
                state |= ct_state::DNAT;
            }
        }
        CtResult {
            state,
            zone: ct.zone,
            mark: s.mark,
            label: s.label,
            orig: orig_tuple(&s.orig),
            frag_ports: None,
        }
    }

    fn icmp_error(&mut self, pkt: &mut Packet, layers: &Layers, key: &Flow, ct: &DpCt) -> CtResult {
        let Some(q) = rewrite::icmp_error_quote(pkt, key, layers) else {
            return self.invalid(ct.zone);
        };
        let (src, v6) = tuple::ip_bits(q.src);
        let (dst, _) = tuple::ip_bits(q.dst);
        let quoted = Tuple {
            src,
            dst,
            sport: q.icmp_id.unwrap_or(q.sport),
            dport: match q.icmp_id {
                Some(_) => (q.icmp_type as u16) << 8,
                None => q.dport,
            },
            proto: q.proto,
            v6,
            zone: ct.zone,
        };
        let Some((e, dir)) = self.t.0.table.lookup(&quoted.reverse()) else {
            return self.invalid(ct.zone);
        };
        let (orig, reply, flags) = (
            read_tuple(e.w, W_ORIG),
            read_tuple(e.w, W_REPLY),
            e.get(W_FLAGS),
        );
        let mark = (flags >> 32) as u32;
        let label = (e.get(W_LABEL) as u128) << 64 | e.get(W_LABEL + 1) as u128;
        drop(e);
        let mut state = ct_state::TRK | ct_state::REL;
        if dir == Dir::Reply {
            state |= ct_state::RPL;
        }
        if ct.nat.is_some() && flags & (F_SNAT | F_DNAT) != 0 {
            // The quote is a packet of the other direction: it gets that direction's
            // tuple before NAT; the outer addresses change as this direction's packets'.
            let (os, od) = nat_targets(&orig, &reply, flags, dir);
            let other = match dir {
                Dir::Orig => reply,
                Dir::Reply => orig,
            };
            let (isp, idp) = if other.is_icmp() {
                (other.sport, other.sport)
            } else {
                (other.sport, other.dport)
            };
            // Refused (a wrong checksum, a redirect, a short quote): Linux drops it.
            if !rewrite::nat_icmp_error(
                pkt,
                key,
                layers,
                os.map(|e| e.addr),
                od.map(|e| e.addr),
                Some(endpoint(other.src, isp, &other)),
                Some(endpoint(other.dst, idp, &other)),
            ) {
                return self.invalid(ct.zone);
            }
            if flags & F_SNAT != 0 {
                state |= ct_state::SNAT;
            }
            if flags & F_DNAT != 0 {
                state |= ct_state::DNAT;
            }
        }
        CtResult {
            state,
            zone: ct.zone,
            mark,
            label,
            orig: orig_tuple(&orig),
            frag_ports: None,
        }
    }

    // Inlined in both callers: the path of known connections must not pay a call.
    #[inline(always)]
    fn track_conn(
        &mut self,
        pkt: &mut Packet,
        layers: &Layers,
        key: &Flow,
        ct: &DpCt,
        t: Tuple,
        now: u64,
    ) -> CtResult {
        let seg = if t.proto == ipproto::TCP && key.nw_frag() & nw_frag::LATER == 0 {
            let Some((l4, len)) = tuple::tcp_payload(pkt, layers, t.v6) else {
                return self.invalid(ct.zone);
            };
            match tcp::Segment::parse(&pkt.data()[l4..], len) {
                Some(s) => Some(s),
                None => return self.invalid(ct.zone),
            }
        } else {
            None
        };
        // Two passes at most: a connection found and removed (reopened, forced) is then
        // handled as new; a connection another worker added meanwhile is then found.
        let h = self.t.0.table.hash(&t);
        for _ in 0..3 {
            let table = &self.t.0.table;
            let mut found = None;
            if let Some((slot, dir)) = self.hints.get(h)
                && let Some(seen) = table.holds(slot, dir, &t)
            {
                found = Some(self.known(
                    table.entry(slot),
                    slot,
                    dir,
                    &t,
                    seg.as_ref(),
                    ct,
                    now,
                    Some(seen),
                ));
            }
            if found.is_none() || matches!(found, Some(Found::Moved)) {
                found = table
                    .find_hashed(&t, h, |w, slot, dir| {
                        (
                            self.known(w, slot, dir, &t, seg.as_ref(), ct, now, None),
                            slot,
                            dir,
                        )
                    })
                    .map(|(f, slot, dir)| {
                        self.hints.set(h, slot, dir);
                        f
                    });
            }
            match found {
                Some(Found::Done(r)) => return r,
                Some(Found::Seen(s)) => return self.finish(pkt, layers, key, ct, s),
                Some(Found::Invalid) => return self.invalid(ct.zone),
                Some(Found::Expired(slot)) => {
                    if self.t.remove(slot, |e| e.get(W_EXPIRES) <= now) {
                        self.t.0.counters.expired.fetch_add(1, Relaxed);
                    }
                    continue;
                }
                Some(Found::Remove(slot)) => {
                    self.t.remove(slot, |_| true);
                    continue;
                }
                Some(Found::Moved) | None => {}
            }
            if let Some(r) = self.new_conn(pkt, layers, key, ct, (&t, seg.as_ref()), now) {
                return r;
            }
        }
        self.invalid(ct.zone)
    }

    /// What a packet of a known connection (its tuple `t` is `dir` of the entry `w`, in
    /// `slot`) does to it. `hinted`: `None` when found in the index, whose shard lock the
    /// caller holds (the entry cannot go); else followed from a hint and seen to hold the
    /// connection at this generation, checked again here.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn known(
        &self,
        w: &[AtomicU64],
        slot: u32,
        dir: Dir,
        t: &Tuple,
        seg: Option<&tcp::Segment>,
        ct: &DpCt,
        now: u64,
        hinted: Option<u64>,
    ) -> Found {
        let table = &self.t.0.table;
        let flags = w[W_FLAGS].load(Relaxed);
        if w[W_EXPIRES].load(Relaxed) <= now {
            return Found::Expired(slot);
        }
        // A packet of a replied connection without TCP state or NAT, committing
        // nothing: only its expiry changes, and that needs no lock (a lost race
        // between two refreshes leaves one of two times that are both now).
        if t.proto != ipproto::TCP
            && !ct.commit
            && flags & (F_SNAT | F_DNAT) == 0
            && flags & F_SEEN_REPLY != 0
        {
            // Nothing to translate either: the answer is made here.
            w[W_EXPIRES].store(now + self.timeout_ms(t.proto, flags, None), Relaxed);
            let label =
                (w[W_LABEL].load(Relaxed) as u128) << 64 | w[W_LABEL + 1].load(Relaxed) as u128;
            // Followed from a hint, without the index's lock: the entry may have been
            // removed and reused meanwhile, and then what was read is not our
            // connection's. (The refresh may then have landed on its next connection, in a
            // race of a few nanoseconds: that one lives on as if it had had a packet now.)
            if let Some(seen) = hinted
                && !table.still(slot, seen)
            {
                return Found::Moved;
            }
            let (orig, rpl) = if dir == Dir::Orig {
                (*t, 0)
            } else {
                (t.reverse(), ct_state::RPL)
            };
            return Found::Done(CtResult {
                state: ct_state::TRK | ct_state::EST | rpl,
                zone: ct.zone,
                mark: (flags >> 32) as u32,
                label,
                orig: orig_tuple(&orig),
                frag_ports: None,
            });
        }
        let e = table.lock_found(w, slot);
        if let Some(seen) = hinted
            && !e.still(seen)
        {
            return Found::Moved;
        }
        match self.update(&e, t, dir, seg, ct, now) {
            Ok(s) => Found::Seen(s),
            Err(false) => Found::Invalid,
            Err(true) => Found::Remove(slot),
        }
    }

    /// The first packet of a connection (`t` is in no connection; `seg` its TCP segment):
    /// committed when `ct` commits. `None`: another worker added it meanwhile, look again.
    /// Out of line, so the path of known connections stays small.
    #[inline(never)]
    fn new_conn(
        &mut self,
        pkt: &mut Packet,
        layers: &Layers,
        key: &Flow,
        ct: &DpCt,
        (t, seg): (&Tuple, Option<&tcp::Segment>),
        now: u64,
    ) -> Option<CtResult> {
        let t = *t;
        if key.nw_frag() & nw_frag::LATER != 0 {
            return Some(self.later_without_conn(pkt, layers, key, ct, t));
        }
        // A new connection.
        let tcp_new = match seg {
            Some(s) => match TcpConn::new(s, self.t.0.loose) {
                Some(c) => Some(c),
                None => return Some(self.invalid(ct.zone)),
            },
            None => None,
        };
        if t.is_icmp() && !t.icmp_opens() {
            return Some(self.invalid(ct.zone));
        }
        let mut reply = t.reverse();
        let mut flags = 0;
        // NAT chose `reply` as free: a clash when it is inserted is another worker's doing.
        let mut chosen = false;
        // The source port was changed to make `reply` unique.
        let mut remapped = false;
        if let Some(nat) = ct.nat.as_ref().filter(|n| n.kind.is_some()) {
            let rnd = self.rand();
            let table = &self.t.0.table;
            match nat::choose(&t, nat, rnd, |c| table.contains(c)) {
                nat::Choice::Reply(r) => {
                    reply = r;
                    chosen = true;
                    flags |= if nat.kind == Some(NatKind::Src) {
                        F_SNAT
                    } else {
                        F_DNAT
                    };
                }
                nat::Choice::Remapped(r) => {
                    reply = r;
                    (chosen, remapped) = (true, true);
                    flags |= F_DNAT | F_SNAT;
                }
                nat::Choice::NotApplicable => {}
                // Every binding taken, one by this very connection: another worker added
                // it since the lookup.
                nat::Choice::Exhausted if table.contains(&t) => {
                    self.t.0.counters.insert_races.fetch_add(1, Relaxed);
                    return None;
                }
                nat::Choice::Exhausted => {
                    self.t.0.counters.nat_exhausted.fetch_add(1, Relaxed);
                    return Some(self.invalid(ct.zone));
                }
            }
        }
        let mut mark = 0;
        let mut label = 0;
        if ct.commit {
            let rnd = self.rand();
            if self.t.reserve(t.zone, now, rnd).is_err() {
                return Some(self.invalid(ct.zone));
            }
            mark = ct.mark.map_or(0, |(v, m)| v & m);
            label = ct.label.map_or(0, |(v, m)| v & m);
            let expires = now + self.timeout_ms(t.proto, flags, tcp_new.as_ref());
            let insert = |reply: &Tuple, flags: u64| {
                self.t.0.table.insert(&t, reply, |e| {
                    e.set(W_FLAGS, flags | (mark as u64) << 32);
                    e.set(W_EXPIRES, expires);
                    e.set(W_LABEL, (label >> 64) as u64);
                    e.set(W_LABEL + 1, label as u64);
                    if let Some(c) = &tcp_new {
                        for (i, w) in c.encode().iter().enumerate() {
                            e.set(W_TCP + i, *w);
                        }
                    }
                })
            };
            let mut res = insert(&reply, flags);
            if res == Err(Refused::ReplyTaken) && !chosen && reply != t {
                // Not a race: another connection holds this one's reply tuple.
                match self.resolve_clash(ct, &t, rnd) {
                    Some(r) => {
                        reply = r;
                        flags |= F_SNAT;
                        remapped = true;
                        res = insert(&reply, flags);
                    }
                    None => {
                        self.t.0.counters.nat_exhausted.fetch_add(1, Relaxed);
                        return Some(self.invalid(ct.zone));
                    }
                }
            }
            match res {
                Ok(_) => {
                    self.t.0.counters.created.fetch_add(1, Relaxed);
                    self.t.0.zone_count[t.zone as usize].fetch_add(1, Relaxed);
                    if remapped {
                        self.t.0.counters.clash_resolved.fetch_add(1, Relaxed);
                    }
                }
                // Another worker added it (or took the reply tuple NAT chose) first:
                // find it again.
                Err(Refused::Exists) | Err(Refused::ReplyTaken) => {
                    self.t.0.counters.insert_races.fetch_add(1, Relaxed);
                    return None;
                }
                Err(Refused::Full) => {
                    self.t.0.counters.refused_full.fetch_add(1, Relaxed);
                    return Some(self.invalid(ct.zone));
                }
            }
        }
        let s = Seen {
            state: ct_state::TRK | ct_state::NEW,
            mark,
            label,
            orig: t,
            reply,
            flags,
            dir: Dir::Orig,
        };
        // Uncommitted NAT still translates this packet (Open vSwitch does too).
        Some(self.finish(pkt, layers, key, ct, s))
    }

    /// A reply tuple for the new connection `t` (not NATed) whose plain reply tuple
    /// another connection holds: `t` with another source port, as Linux's implicit source
    /// NAT gives it. Only with `nat` in the action, which is what lets this packet and the
    /// connection's later ones be translated (Open vSwitch's kernel datapath refuses the
    /// connection otherwise). `None`: refused.
    fn resolve_clash(&self, ct: &DpCt, t: &Tuple, rnd: u64) -> Option<Tuple> {
        ct.nat.as_ref()?;
        let table = &self.t.0.table;
        nat::remap_source(t, rnd.rotate_left(29), |c| table.contains(c))
    }
}

/// The connection a packet already belongs to, when it is committed again after its
/// connection translated it: tracked earlier in this zone (its metadata says so and
/// names the original tuple) and no longer carrying that tuple (a Service's DNAT). Open
/// vSwitch keeps the connection with the packet for this; the original tuple in the
/// metadata finds the same one. TCP, UDP and SCTP only (what Services translate).
pub(super) fn associated(key: &Flow, ct: &DpCt, t: &Tuple) -> Option<Tuple> {
    let orig = tracked_orig(key, ct)?;
    (!t.v6 && orig.proto == t.proto && orig != *t && orig.src == t.src).then_some(orig)
}

/// As [`associated`], for a later fragment (no ports of its own): its addresses
/// translated since its connection's original tuple.
pub(super) fn associated_later(key: &Flow, ct: &DpCt) -> Option<Tuple> {
    let orig = tracked_orig(key, ct)?;
    let (src, dst) = (key.nw_src() as u128, key.nw_dst() as u128);
    (key.dl_type() == vswitch_proto::field::ethertype::IPV4
        && key.nw_proto() == orig.proto
        && orig.src == src
        && orig.dst != dst)
        .then_some(orig)
}

/// The original tuple of the connection a committing packet was tracked in before, in
/// this zone (its metadata), for the protocols Services translate.
fn tracked_orig(key: &Flow, ct: &DpCt) -> Option<Tuple> {
    let state = key.ct_state();
    let proto = key.ct_nw_proto();
    if !ct.commit
        || state & ct_state::TRK == 0
        || state & ct_state::INV != 0
        || key.ct_zone() != ct.zone
        || !matches!(proto, ipproto::TCP | ipproto::UDP | ipproto::SCTP)
    {
        return None;
    }
    Some(Tuple {
        src: key.ct_nw_src() as u128,
        dst: key.ct_nw_dst() as u128,
        sport: key.ct_tp_src(),
        dport: key.ct_tp_dst(),
        proto,
        v6: false,
        zone: ct.zone,
    })
}

fn orig_tuple(t: &Tuple) -> Option<OrigTuple> {
    (!t.v6).then(|| OrigTuple {
        src: t.src as u32,
        dst: t.dst as u32,
        proto: t.proto,
        sport: if t.is_icmp() { t.dport >> 8 } else { t.sport },
        dport: if t.is_icmp() { t.dport & 0xff } else { t.dport },
    })
}

impl Conntrack for CtWorker {
    fn track(
        &mut self,
        pkt: &mut Packet,
        layers: &Layers,
        key: &Flow,
        ct: &DpCt,
        now_ms: u64,
    ) -> CtResult {
        self.refresh_timeouts();
        let now = self.t.abs(now_ms);
        if key.nw_frag() != 0 {
            return self.track_fragment(pkt, layers, key, ct, now);
        }
        match tuple::classify(pkt, layers, key, ct.zone) {
            Kind::Conn(t) => {
                let t = associated(key, ct, &t).unwrap_or(t);
                self.track_conn(pkt, layers, key, ct, t, now)
            }
            Kind::IcmpError => self.icmp_error(pkt, layers, key, ct),
            Kind::Invalid => self.invalid(ct.zone),
        }
    }
}

#[cfg(test)]
mod tests;
