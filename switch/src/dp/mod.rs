//! The fast path: what every packet goes through, in batches of up to [`BATCH`].
//!
//! ```text
//! extract key -> exact-match cache --hit--> execute
//!                   | miss
//!                megaflow cache --hit--> remember in the EMC -> execute
//!                   | miss
//!                ofproto::xlate (the tables) -> install megaflow -> execute
//! ```
//!
//! One [`FastPath`] per worker thread; nothing in it is shared but the pipeline snapshot
//! (loaded once per batch), the MAC table (consulted only on a miss) and the counters of
//! the rules behind each cached flow (credited once per batch).
//!
//! When the pipeline changes generation, the worker *revalidates* its caches at the start
//! of its next batch, as Open vSwitch's revalidators do, but by dependency rather than by
//! translating again: each megaflow knows the tables it looked at (with the priority that
//! won and which words of the flow actions had rewritten by then), the groups it used,
//! and whether it depended on the port list; each published change names the rule slots,
//! groups and ports it touched. A megaflow is dropped when a changed rule could match the
//! flow as one of its lookups saw it at a priority that could win there, or when it used
//! a changed group or port list; the others are kept, and so are their exact-match
//! entries. When the worker missed too many changes, or a change is too large to check
//! cheaply, it drops everything (counted in `flushes`).

pub mod action;
pub mod conntrack;
pub mod emc;
pub(crate) mod exec;
pub mod megaflow;
pub mod packet;
pub mod reject;

use crate::flow::{Layers, Malformed, extract, flow_hash};
use crate::ofproto::mac::MacTable;
use crate::ofproto::{Pipeline, xlate};
use action::{ControllerReason, DropReason};
use arc_swap::ArcSwap;
use conntrack::{Conntrack, StatelessConntrack};
use emc::{Emc, EmcRow};
use exec::Outcome;
use megaflow::{Megaflow, MegaflowCache};
use packet::Packet;
use reject::{RejectStats, Rejecter};
use std::sync::Arc;
use vswitch_proto::flow::Flow;
use vswitch_proto::flowmod::FlowSpec;

/// Most packets processed together (Open vSwitch's NETDEV_MAX_BURST).
pub const BATCH: usize = 32;
/// A packet may be recirculated at most this many times.
pub const MAX_RECIRC: u8 = 8;
/// Changed rules times cached megaflows above which a worker drops its caches rather
/// than check each megaflow against each change (a few milliseconds of checks).
pub const REVALIDATE_BUDGET: usize = 2_000_000;

/// Where the fast path sends packets. Implemented by the port layer (and by tests).
pub trait Sink {
    /// Send `pkt` out of `port`. The packet may be changed by later actions, so a sink
    /// that keeps it must copy it.
    fn output(&mut self, port: u32, pkt: &Packet);
    /// Hand `pkt` to the switch's slow-path handler.
    fn controller(&mut self, _pkt: &Packet, _reason: ControllerReason) {}
    /// A `learn` action asks for this flow to be added (or refreshed).
    fn learn(&mut self, _flow: &Arc<FlowSpec>) {}
}

/// What running actions outside the caches did with the packet.
#[derive(Debug)]
pub struct Executed {
    /// The packet was sent somewhere (a port, the controller, conntrack).
    pub sent: bool,
    /// Dropped on purpose, and why.
    pub dropped: Option<DropReason>,
    /// Copies conntrack sent back into the pipeline.
    pub recirculated: Vec<Packet>,
}

/// Run datapath actions on one packet whose flow is `key` (with `layers` as extraction
/// found them), outside the caches: for packets the switch injects itself, and for
/// measuring the cost of actions alone. Conntrack is the stateless placeholder.
pub fn execute_actions(
    actions: &[action::DpAction],
    pkt: &mut Packet,
    key: &Flow,
    layers: &mut Layers,
    sink: &mut dyn Sink,
    now: u64,
) -> Executed {
    let mut recirculated = Vec::new();
    let outcome = exec::execute(
        actions,
        pkt,
        key,
        layers,
        sink,
        &mut StatelessConntrack,
        now,
        &mut recirculated,
        &mut Vec::new(),
        &mut Rejecter::default(),
    );
    Executed {
        sent: matches!(outcome, Outcome::Sent),
        dropped: match outcome {
            Outcome::Dropped(r) => Some(r),
            _ => None,
        },
        recirculated,
    }
}

/// Counters of one fast path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DpStats {
    pub packets: u64,
    pub emc_hits: u64,
    pub megaflow_hits: u64,
    /// Packets that ran the table pipeline (cache misses).
    pub upcalls: u64,
    /// Misses that could not be cached because the megaflow cache was full.
    pub cache_full: u64,
    pub recirculations: u64,
    /// Times the caches were dropped whole because the tables changed more than could be
    /// checked (or a worker fell too far behind).
    pub flushes: u64,
    /// Times the caches were checked against a change of the tables.
    pub revalidations: u64,
    /// Megaflows a change could affect, dropped by revalidation.
    pub megaflows_invalidated: u64,
    /// Megaflows revalidation kept.
    pub megaflows_kept: u64,
    pub malformed: [u64; Malformed::COUNT],
    pub dropped: [u64; DropReason::COUNT],
    /// What the `reject` action did.
    pub rejects: RejectStats,
}

impl DpStats {
    pub fn malformed_total(&self) -> u64 {
        self.malformed.iter().sum()
    }

    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }
}

/// Tunables of one fast path.
#[derive(Clone, Copy, Debug)]
pub struct FastPathConfig {
    pub emc_entries: usize,
    pub max_megaflows: usize,
    pub megaflow_idle_ms: u64,
}

impl Default for FastPathConfig {
    fn default() -> FastPathConfig {
        FastPathConfig {
            emc_entries: emc::DEFAULT_ENTRIES,
            max_megaflows: megaflow::DEFAULT_MAX_FLOWS,
            megaflow_idle_ms: megaflow::DEFAULT_IDLE_MS,
        }
    }
}

/// What `dump-cache` shows of one fast path.
#[derive(Clone, Debug)]
pub struct CacheDump {
    pub emc: Vec<EmcRow>,
    pub megaflows: Vec<Arc<Megaflow>>,
}

/// One worker's fast path.
#[derive(Debug)]
pub struct FastPath<C: Conntrack = StatelessConntrack> {
    pipeline: Arc<ArcSwap<Pipeline>>,
    mac: Arc<MacTable>,
    config: FastPathConfig,
    seed: u64,
    generation: (u64, u64),
    emc: Emc,
    mega: MegaflowCache,
    ct: C,
    stats: DpStats,
    /// Per-batch counts to credit: (megaflow, packets, bytes).
    credits: Vec<(Arc<Megaflow>, u64, u64)>,
    recirc: Vec<Packet>,
    /// Spare vectors for the recirculation rounds (kept for their capacity).
    recirc_next: Vec<Packet>,
    recirc_done: Vec<Packet>,
    /// Metadata boxes of recirculated packets, spent, for the next recirculation.
    md_pool: exec::MdPool,
    scratch: Box<Scratch>,
    last_maintenance_ms: u64,
    rejecter: Rejecter,
}

impl FastPath<StatelessConntrack> {
    pub fn new(
        pipeline: Arc<ArcSwap<Pipeline>>,
        mac: Arc<MacTable>,
        config: FastPathConfig,
    ) -> Self {
        FastPath::with_conntrack(pipeline, mac, config, StatelessConntrack)
    }
}

/// Add a batch's packets to the credit list (one entry per distinct megaflow).
#[inline]
fn note_credit(credits: &mut Vec<(Arc<Megaflow>, u64, u64)>, mf: &Arc<Megaflow>, bytes: usize) {
    for c in credits.iter_mut() {
        if Arc::ptr_eq(&c.0, mf) {
            c.1 += 1;
            c.2 += bytes as u64;
            return;
        }
    }
    credits.push((mf.clone(), 1, bytes as u64));
}

impl<C: Conntrack> FastPath<C> {
    pub fn with_conntrack(
        pipeline: Arc<ArcSwap<Pipeline>>,
        mac: Arc<MacTable>,
        config: FastPathConfig,
        ct: C,
    ) -> Self {
        let seed = crate::cls::process_seed();
        FastPath {
            pipeline,
            mac,
            config,
            seed,
            generation: (u64::MAX, u64::MAX),
            emc: Emc::new(config.emc_entries),
            mega: MegaflowCache::new(config.max_megaflows, seed),
            ct,
            stats: DpStats::default(),
            credits: Vec::with_capacity(BATCH),
            recirc: Vec::new(),
            recirc_next: Vec::new(),
            recirc_done: Vec::new(),
            md_pool: Vec::new(),
            scratch: Box::default(),
            last_maintenance_ms: 0,
            rejecter: Rejecter::default(),
        }
    }

    pub fn stats(&self) -> &DpStats {
        &self.stats
    }

    /// Drop both caches (counted when there was something to drop).
    pub fn flush(&mut self) {
        if !self.mega.is_empty() {
            self.stats.flushes += 1;
        }
        self.emc.clear();
        self.mega.clear();
    }

    /// Drop the cached flows that the changes published since this fast path's generation
    /// could affect (see the module's doc); with `mac_changed`, those that depend on the
    /// MAC table or the ports too.
    fn revalidate(&mut self, pipe: &Pipeline, mac_changed: bool) {
        let Some(deltas) = pipe.changes_since(self.generation.0) else {
            return self.flush();
        };
        let n_rules: usize = deltas.iter().map(|d| d.rules.len()).sum();
        if n_rules.saturating_mul(self.mega.len()) > REVALIDATE_BUDGET {
            return self.flush();
        }
        let ports = mac_changed || deltas.iter().any(|d| d.ports);
        let groups: Vec<u32> = deltas
            .iter()
            .flat_map(|d| d.groups.iter().copied())
            .collect();
        let mut by_table: Vec<Vec<&(u8, u16, vswitch_proto::Match)>> = vec![Vec::new(); 256];
        for r in deltas.iter().flat_map(|d| d.rules.iter()) {
            by_table[r.0 as usize].push(r);
        }
        let affected = |mf: &Megaflow| -> bool {
            let Some(deps) = mf.deps.as_deref() else {
                return true;
            };
            if ports && deps.ports {
                return true;
            }
            if deps.groups.iter().any(|g| groups.contains(g)) {
                return true;
            }
            deps.visits.iter().any(|v| {
                by_table[v.table as usize]
                    .iter()
                    .any(|(t, p, m)| deps.rule_may_matter(&mf.key, &mf.mask, *t, *p, m))
            })
        };
        let before = self.mega.len();
        let gone = self.mega.retain(|mf| !affected(mf));
        if gone > 0 {
            self.emc.retain(|mf| !mf.is_dead());
        }
        self.stats.revalidations += 1;
        self.stats.megaflows_invalidated += gone as u64;
        self.stats.megaflows_kept += (before - gone) as u64;
    }

    /// The cached flows, for `dump-cache`.
    pub fn dump(&self) -> CacheDump {
        CacheDump {
            emc: self.emc.rows(),
            megaflows: self.mega.iter().cloned().collect(),
        }
    }

    /// Periodic upkeep: rank megaflow subtables by use, expire idle megaflows. Runs at most
    /// once a second from [`FastPath::process`]; a worker may also call it when idle.
    pub fn maintain(&mut self, now: u64) {
        if now.saturating_sub(self.last_maintenance_ms) < 1000 {
            return;
        }
        self.last_maintenance_ms = now;
        self.mega.rank_subtables();
        let before = now.saturating_sub(self.config.megaflow_idle_ms);
        if self.mega.expire(before) > 0 {
            self.emc.retain(|m| m.used_ms() >= before);
        }
    }

    /// Run a batch of packets (at most [`BATCH`]; more works, in one go) through the
    /// switch. Packets that conntrack recirculates are run again before this returns.
    /// A packet moved into recirculation leaves its slot with the buffer of an earlier
    /// recirculated packet (so a port refills it without allocating), or empty when there
    /// is none; callers refill buffers.
    pub fn process(&mut self, batch: &mut [Packet], now: u64, sink: &mut dyn Sink) {
        let pipe = self.pipeline.load_full();
        let generation = (pipe.generation(), self.mac.generation());
        if generation != self.generation {
            if self.generation.0 != u64::MAX {
                self.revalidate(&pipe, generation.1 != self.generation.1);
            }
            self.generation = generation;
        }
        for chunk in batch.chunks_mut(BATCH) {
            self.chunk(chunk, &pipe, now, sink);
        }
        // Recirculated packets are run until none is left; then their buffers go back to
        // the slots they were taken from (a TAP reads a full-size frame into each, and a
        // fresh buffer for every tracked packet would cost an allocation and a 64 KiB
        // clear each time).
        let mut done = std::mem::take(&mut self.recirc_done);
        while !self.recirc.is_empty() {
            let mut again = std::mem::take(&mut self.recirc_next);
            std::mem::swap(&mut again, &mut self.recirc);
            self.stats.recirculations += again.len() as u64;
            for chunk in again.chunks_mut(BATCH) {
                self.chunk(chunk, &pipe, now, sink);
            }
            done.append(&mut again);
            self.recirc_next = again;
        }
        if !done.is_empty() {
            let mut bufs = done.drain(..).filter(|p| p.capacity() > 0);
            for slot in batch.iter_mut().filter(|p| p.capacity() == 0) {
                match bufs.next() {
                    Some(p) => *slot = p,
                    None => break,
                }
            }
        }
        self.recirc_done = done;
        for (mf, packets, bytes) in self.credits.drain(..) {
            mf.credit(packets, bytes, now);
        }
        self.stats.rejects = self.rejecter.stats();
        self.maintain(now);
    }

    /// Up to [`BATCH`] packets, stage by stage: every key, then every hash, then lookups
    /// and actions. Doing one stage for all packets before the next lets the CPU overlap
    /// the work of different packets.
    fn chunk(&mut self, pkts: &mut [Packet], pipe: &Pipeline, now: u64, sink: &mut dyn Sink) {
        let FastPath {
            emc,
            mega,
            ct,
            stats,
            credits,
            recirc,
            mac,
            scratch,
            seed,
            rejecter,
            md_pool,
            ..
        } = self;
        for (i, pkt) in pkts.iter_mut().enumerate() {
            stats.packets += 1;
            let key = &mut scratch.keys[i];
            *key = Flow::ZERO;
            match pkt.recirc.take() {
                Some(md) => {
                    recirculated_key(key, &md);
                    if md_pool.len() < MD_POOL {
                        md_pool.push(md);
                    }
                }
                None => {
                    key.set_in_port(pkt.in_port);
                    key.set_tun_id(pkt.tun.id);
                    key.set_tun_src(pkt.tun.src);
                    key.set_tun_dst(pkt.tun.dst);
                }
            }
            scratch.ok[i] = match extract(pkt.data(), key, &mut scratch.layers[i]) {
                Ok(()) => true,
                Err(m) => {
                    stats.malformed[m as usize] += 1;
                    false
                }
            };
        }
        for i in 0..pkts.len() {
            scratch.hashes[i] = flow_hash(&scratch.keys[i], *seed);
        }

        // The actions of a packet's flow, on it: the batch's sink, tracker and queues.
        let mut run =
            |actions: &[action::DpAction], pkt: &mut Packet, key: &Flow, layers: &mut Layers| {
                exec::execute(
                    actions, pkt, key, layers, sink, ct, now, recirc, md_pool, rejecter,
                )
            };
        for (i, pkt) in pkts.iter_mut().enumerate() {
            if !scratch.ok[i] {
                continue;
            }
            let (key, hash, layers) = (&scratch.keys[i], scratch.hashes[i], &mut scratch.layers[i]);
            let len = pkt.len();
            let outcome = if let Some(mf) = emc.lookup(key, hash) {
                stats.emc_hits += 1;
                note_credit(credits, mf, len);
                run(&mf.actions, pkt, key, layers)
            } else if let Some(mf) = mega.lookup(key) {
                stats.megaflow_hits += 1;
                let mf = mf.clone();
                emc.insert(key, hash, mf.clone());
                note_credit(credits, &mf, len);
                run(&mf.actions, pkt, key, layers)
            } else {
                stats.upcalls += 1;
                let out = xlate::xlate(pipe, mac, key, now);
                let mf = Megaflow::new(key, out.mask, out.actions, out.stats, out.macs, now)
                    .with_deps(out.deps);
                match mega.insert(mf) {
                    Ok(mf) => {
                        emc.insert(key, hash, mf.clone());
                        note_credit(credits, &mf, len);
                        run(&mf.actions, pkt, key, layers)
                    }
                    Err(mf) => {
                        // Cache full: serve this packet from the translation alone.
                        stats.cache_full += 1;
                        mf.credit(1, len as u64, now);
                        run(&mf.actions, pkt, key, layers)
                    }
                }
            };
            match outcome {
                Outcome::Sent => {}
                Outcome::NoOutput => stats.dropped[DropReason::NoOutput as usize] += 1,
                Outcome::Dropped(r) => stats.dropped[r as usize] += 1,
            }
        }
    }
}

/// Spent metadata boxes kept for reuse: a batch's worth of recirculations, twice.
const MD_POOL: usize = 2 * BATCH;

/// The flow of a recirculated packet before extraction: its metadata, and the ports that
/// conntrack gave a later fragment, which has none of its own (zero for other packets;
/// extraction leaves them for a later fragment and overwrites them otherwise), so that
/// flows see the fragment's datagram. Out of line: the first pass's code stays as it was.
#[inline(never)]
fn recirculated_key(key: &mut Flow, md: &Flow) {
    key.w[action::METADATA_WORDS].copy_from_slice(&md.w[action::METADATA_WORDS]);
    key.set_tp_src(md.tp_src());
    key.set_tp_dst(md.tp_dst());
}

/// Per-chunk working space, kept between batches so nothing is allocated per packet.
#[derive(Debug)]
struct Scratch {
    keys: [Flow; BATCH],
    layers: [Layers; BATCH],
    hashes: [u64; BATCH],
    ok: [bool; BATCH],
}

impl Default for Scratch {
    fn default() -> Scratch {
        Scratch {
            keys: [Flow::ZERO; BATCH],
            layers: [Layers::default(); BATCH],
            hashes: [0; BATCH],
            ok: [false; BATCH],
        }
    }
}

#[cfg(test)]
mod tests;
