//! The TCP state machine of the connection tracker, with window tracking.
//!
//! A port of Linux's `nf_conntrack_proto_tcp.c` (its defaults: `tcp_loose` chosen by the
//! caller, `tcp_be_liberal` 0, `tcp_max_retrans` 3), as pure functions over one
//! connection's state: the connection table owns the state, hands each segment here with
//! its direction, and stores the result back in [`TcpConn::WORDS`] words of its file.
//!
//! We sit in the middle and guess each side's view from what passes. Per direction we keep
//! how far it has sent (`end`), how far the other side lets it send (`maxend`) and the
//! largest window it was offered (`maxwin`); a segment must overlap the window the
//! receiver offered and acknowledge only data that was sent (Linux's `tcp_in_window`,
//! after Guido van Rooij's "Real Stateful TCP Packet Filtering in IP Filter").
//!
//! Differences from Linux, all small: see the notes on [`TcpConn`].

mod segment;
#[cfg(test)]
mod tests;
mod timeouts;

pub use segment::{Segment, flag};
pub use timeouts::TcpTimeouts;

/// Linux's TCP conntrack states, in Linux's order (the order is also the encoding).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TcpState {
    /// Never the state of a stored connection: the first segment moves it on.
    None,
    /// A SYN was seen from the originator.
    SynSent,
    /// The SYN/ACK was seen.
    SynRecv,
    /// The handshake's ACK (or, after mid-stream pickup, any ACK) was seen.
    Established,
    /// A FIN was seen.
    FinWait,
    /// The FIN was acknowledged.
    CloseWait,
    /// FINs were seen both ways.
    LastAck,
    /// The last FIN was acknowledged.
    TimeWait,
    /// A RST was seen.
    Close,
    /// SYNs were seen both ways: a simultaneous open.
    SynSent2,
}

impl TcpState {
    const ALL: [TcpState; 10] = [
        TcpState::None,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::Established,
        TcpState::FinWait,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::SynSent2,
    ];

    /// The name `ovs-appctl dpctl/dump-conntrack` prints in `protoinfo=(state=...)`: Open
    /// vSwitch reads Linux's states through `nl_ct_tcp_state_to_dpif` (netlink-conntrack.c),
    /// which folds SYN_SENT2 into SYN_SENT and calls CLOSE "CLOSING".
    pub fn ovs_name(self) -> &'static str {
        match self {
            TcpState::None => "CLOSED",
            TcpState::SynSent | TcpState::SynSent2 => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::Established => "ESTABLISHED",
            TcpState::FinWait => "FIN_WAIT_1",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSING",
        }
    }

    /// The name `conntrack -L` prints (Linux's `tcp_conntrack_names`).
    pub fn linux_name(self) -> &'static str {
        match self {
            TcpState::None => "NONE",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::Established => "ESTABLISHED",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::SynSent2 => "SYN_SENT2",
        }
    }
}

/// Which way a segment goes: as the connection's first segment did, or back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    Orig,
    Reply,
}

impl Dir {
    fn i(self) -> usize {
        self as usize
    }
}

/// What to do with a segment of a tracked connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Part of the connection. The state may have moved: store it and renew the
    /// connection's timer with [`TcpConn::timeout_ms`].
    Accept,
    /// Part of the connection and passes, but the timer must not be renewed: a segment
    /// Linux "ignores" because the endpoints may know better than we do (a SYN on an
    /// established connection, a late SYN/ACK, data the receiver already acknowledged), or
    /// a retransmitted SYN that was never answered (renewing on those would let a client
    /// reusing its port keep the entry forever). The state may still have moved (Linux
    /// notes what it ignored, to resynchronise on the answer): store it.
    Ignore,
    /// Not part of the connection (out of window, impossible in this state, bad flags).
    /// The connection is unchanged.
    Invalid,
    /// A SYN that reopens a closed connection: one in TIME_WAIT or CLOSE whose close began
    /// with a FIN, or whose last segment was a RST from the SYN's side (RFC 1122 4.2.2.13;
    /// a client starting over after aborting). The connection is unchanged: the caller
    /// deletes it and tracks this segment as the first of a new connection, whose original
    /// direction is this segment's (a SYN in the reply direction of TIME_WAIT reopens with
    /// the roles swapped, as in Linux).
    ///
    /// Any segment of a connection whose [`TcpConn::timeout_ms`] is 0 reopens too: Linux
    /// has deleted it already, so the segment starts over (and may well not start a
    /// connection, see [`TcpConn::new`]).
    Reopen,
}

/// Linux's `tcp_bit_set`: the flags that choose a row of the state table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Index {
    Syn,
    SynAck,
    Fin,
    Ack,
    Rst,
    None,
}

impl Index {
    const ALL: [Index; 6] = [
        Index::Syn,
        Index::SynAck,
        Index::Fin,
        Index::Ack,
        Index::Rst,
        Index::None,
    ];

    fn of(flags: u16) -> Index {
        let has = |b| flags & b != 0;
        if has(flag::RST) {
            Index::Rst
        } else if has(flag::SYN) {
            if has(flag::ACK) {
                Index::SynAck
            } else {
                Index::Syn
            }
        } else if has(flag::FIN) {
            Index::Fin
        } else if has(flag::ACK) {
            Index::Ack
        } else {
            Index::None
        }
    }
}

/// Flags of one direction (Linux's `IP_CT_TCP_FLAG_*`, less BE_LIBERAL, kept once).
mod pf {
    /// It sent the window scale option.
    pub const WINDOW_SCALE: u8 = 0x01;
    /// It sent SACK-permitted: the other side's SACK blocks count.
    pub const SACK_PERM: u8 = 0x02;
    /// It sent the first FIN.
    pub const CLOSE_INIT: u8 = 0x04;
    /// It sent data the other side has not acknowledged.
    pub const DATA_UNACK: u8 = 0x08;
    /// `maxack` holds an acknowledgement it sent.
    pub const MAXACK_SET: u8 = 0x10;
    pub const ALL: u8 = 0x1f;
}

/// Flags about the last ignored SYN and the handshake (Linux's `last_flags`).
mod lf {
    pub const WINDOW_SCALE: u8 = 0x01;
    pub const SACK_PERM: u8 = 0x02;
    /// The ignored SYN hit LAST_ACK: its answer may be an RFC 5961 challenge ACK.
    pub const CHALLENGE_ACK: u8 = 0x04;
    /// SYNs crossed (SYN_SENT2 was entered).
    pub const SIMULTANEOUS_OPEN: u8 = 0x08;
    pub const ALL: u8 = 0x0f;
}

/// RFC 7323's largest shift.
const MAX_WSCALE: u8 = 14;
/// Linux's `MAXACKWINCONST`: how far below the receiver's end an ACK may lag at least.
const MAX_ACK_WIN_CONST: u32 = 66000;
/// Linux's `nf_conntrack_tcp_max_retrans`: after this many identical segments in a row
/// the connection gets the shorter `max_retrans` timeout.
pub const MAX_RETRANS: u8 = 3;
/// The retransmission counter stops here (it only matters up to [`MAX_RETRANS`]).
const RETRANS_CAP: u8 = 15;

/// One direction's window tracking (Linux's `ip_ct_tcp_state`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Peer {
    /// Highest seq + len it sent.
    end: u32,
    /// Highest ack + window the other side offered it: it may send up to here.
    maxend: u32,
    /// Largest window the other side offered it (scaled), 0 until it is first seen.
    maxwin: u32,
    /// Highest ack it sent (valid with `pf::MAXACK_SET`).
    maxack: u32,
    /// Its window scale shift, 0 unless both sides sent the option.
    scale: u8,
    /// `pf::*`.
    flags: u8,
}

impl Peer {
    /// Takes the window scale and SACK-permitted options of its SYN (Linux's
    /// `tcp_options`, which also forgets the other flags).
    fn take_options(&mut self, seg: &Segment) {
        let ws = if seg.wscale.is_some() {
            pf::WINDOW_SCALE
        } else {
            0
        };
        let sack = if seg.sack_perm { pf::SACK_PERM } else { 0 };
        self.scale = seg.wscale.map_or(0, |s| s.min(MAX_WSCALE));
        self.flags = ws | sack;
    }
}

/// The TCP state of one connection: Linux's `struct ip_ct_tcp` plus the two status bits
/// of `nf_conn` it reads (SEEN_REPLY, ASSURED).
///
/// Differences from Linux, each to fit [`WORDS`](Self::WORDS) or the pure interface:
/// - Retransmission detection compares direction, end, ack, window and whether the
///   segment was empty, where Linux also compares seq: a segment with the same end and a
///   different non-zero length overlaps the last one, so it is a retransmission too.
/// - The retransmission counter stops at 15 (Linux's u8 wraps at 256).
/// - An INVALID segment changes nothing; Linux keeps a SYN/ACK's sender initialisation
///   even when the segment then fails the window check, and on an out-of-window FIN or
///   RST of an assured connection shortens its timer (`nf_tcp_handle_invalid`).
/// - BE_LIBERAL is one bit for both directions (Linux sets both together), so a
///   resynchronisation after an ignored SYN does not clear it for one side.
/// - A SYN without options replaces the sender's window scale and SACK flags with none;
///   Linux keeps the old ones when there are no option bytes at all.
/// - The cap of a picked-up connection's timeout until its first reply is decided after
///   the segment, so the first reply itself already gets the full timeout.
/// - No NAT sequence adjustment (the switch does not rewrite sequence numbers), no
///   SYN proxy, no `tcp_no_window_check` / `tcp_ignore_invalid_rst`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpConn {
    state: TcpState,
    /// Indexed by [`Dir`].
    peer: [Peer; 2],
    /// Window checks only log (never fail): set on mid-stream pickup, where the window
    /// scale is unknown.
    be_liberal: bool,
    /// The last segment that passed the window check, or was ignored.
    last_dir: Dir,
    last_index: Index,
    /// Its seq was its end (no payload, SYN or FIN).
    last_empty: bool,
    last_ack: u32,
    last_end: u32,
    last_win: u16,
    /// Window scale of the last ignored SYN (with `lf::WINDOW_SCALE`).
    last_wscale: u8,
    /// `lf::*`.
    last_flags: u8,
    /// Identical segments in a row.
    retrans: u8,
    /// A reply-direction segment was accepted (Linux's IPS_SEEN_REPLY).
    seen_reply: bool,
    /// Linux's IPS_ASSURED.
    assured: bool,
    /// A RST closed it before any reply: Linux deletes such a connection at once.
    dead: bool,
}

/// What the window check decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Window {
    Accept,
    Ignore,
    Invalid,
}

/// What a RST that would close the connection may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RstCheck {
    Invalid,
    /// Check the window; `keep` the state (an inexact RST: wait for the challenge ACK).
    Window {
        keep: bool,
    },
    /// Skip the window check: a RST answering a segment we let through.
    Trust {
        keep: bool,
    },
}

impl TcpConn {
    /// Words [`encode`](Self::encode) writes.
    pub const WORDS: usize = 6;

    const EMPTY: TcpConn = TcpConn {
        state: TcpState::None,
        peer: [Peer {
            end: 0,
            maxend: 0,
            maxwin: 0,
            maxack: 0,
            scale: 0,
            flags: 0,
        }; 2],
        be_liberal: false,
        last_dir: Dir::Orig,
        last_index: Index::None,
        last_empty: false,
        last_ack: 0,
        last_end: 0,
        last_win: 0,
        last_wscale: 0,
        last_flags: 0,
        retrans: 0,
        seen_reply: false,
        assured: false,
        dead: false,
    };

    /// The first segment of a new connection, in the original direction (Linux's
    /// `tcp_new` followed by the segment's own processing).
    ///
    /// A SYN starts SYN_SENT. An ACK (with or without data, but no SYN, FIN or RST) is a
    /// connection picked up mid-stream when `loose` (Linux's default
    /// `nf_conntrack_tcp_loose=1`): ESTABLISHED with the window from this segment, and
    /// liberal window checks from then on, since the window scale was never seen.
    ///
    /// None when this segment cannot start a connection: invalid flags, a SYN/ACK, a FIN,
    /// a RST, or an ACK without `loose`.
    pub fn new(seg: &Segment, loose: bool) -> Option<TcpConn> {
        if !seg.valid_flags() {
            return None;
        }
        let mut c = TcpConn::EMPTY;
        let end = seg.end();
        let win = u32::from(seg.win).max(1);
        match table::next(Dir::Orig, Index::of(seg.flags), TcpState::None) {
            table::Next::To(TcpState::SynSent) => {
                let p = &mut c.peer[Dir::Orig.i()];
                p.end = end;
                p.maxend = end;
                p.maxwin = win;
                p.take_options(seg);
            }
            table::Next::To(_) if loose => {
                let p = &mut c.peer[Dir::Orig.i()];
                p.end = end;
                p.maxwin = win;
                p.maxend = end.wrapping_add(win);
                c.be_liberal = true;
                // Assume SACK both ways: the options are long gone.
                c.peer[0].flags = pf::SACK_PERM;
                c.peer[1].flags = pf::SACK_PERM;
            }
            _ => return None,
        }
        match c.update(Dir::Orig, seg) {
            Verdict::Accept | Verdict::Ignore => Some(c),
            Verdict::Invalid | Verdict::Reopen => None,
        }
    }

    /// A later segment of the connection, going `dir`: moves the state by Linux's table
    /// after checking the segment against the windows. See [`Verdict`].
    pub fn update(&mut self, dir: Dir, seg: &Segment) -> Verdict {
        let mut next = *self;
        let v = next.step(dir, seg);
        match v {
            Verdict::Invalid | Verdict::Reopen => return v,
            Verdict::Accept | Verdict::Ignore => {}
        }
        if dir == Dir::Reply && !next.dead {
            next.seen_reply = true;
        }
        *self = next;
        v
    }

    /// Where the connection is in Linux's state table.
    pub fn state(&self) -> TcpState {
        self.state
    }

    /// A reply-direction segment was accepted. Connections that never got one are the
    /// first to drop when the table is full.
    pub fn replied(&self) -> bool {
        self.seen_reply
    }

    /// Linux's ASSURED: an ACK completed the handshake, or a picked-up connection saw a
    /// segment after its first reply. Assured connections are dropped last.
    pub fn assured(&self) -> bool {
        self.assured
    }

    /// The connection is closing or closed, so it may go first when the table is full
    /// (Linux's `tcp_can_early_drop`).
    pub fn can_early_drop(&self) -> bool {
        matches!(
            self.state,
            TcpState::FinWait
                | TcpState::LastAck
                | TcpState::TimeWait
                | TcpState::Close
                | TcpState::CloseWait
        )
    }

    /// How long the connection lives after the last accepted segment, in milliseconds.
    /// 0 means delete it now: a RST came before any reply.
    ///
    /// The state's timeout, shortened (as in Linux's `nf_conntrack_tcp_packet`) to
    /// `max_retrans` after [`MAX_RETRANS`] retransmissions or when the last window was
    /// zero, to `close` after a RST, to `unacknowledged` while data is unacknowledged or
    /// while a picked-up connection has had no reply.
    pub fn timeout_ms(&self, t: &TcpTimeouts) -> u64 {
        if self.dead {
            return 0;
        }
        let state = t.state(self.state);
        let unacked = (self.peer[0].flags | self.peer[1].flags) & pf::DATA_UNACK != 0;
        let mut secs = if self.retrans >= MAX_RETRANS && state > t.retrans() {
            t.retrans()
        } else if self.last_index == Index::Rst {
            t.state(TcpState::Close)
        } else if unacked && state > t.unacknowledged() {
            t.unacknowledged()
        } else if self.last_win == 0 && state > t.retrans() {
            t.retrans()
        } else {
            state
        };
        if !self.seen_reply && self.state == TcpState::Established {
            secs = secs.min(t.unacknowledged());
        }
        u64::from(secs) * 1000
    }

    /// One segment, on a copy: the caller keeps it unless Invalid or Reopen.
    fn step(&mut self, dir: Dir, seg: &Segment) -> Verdict {
        if self.dead {
            return Verdict::Reopen;
        }
        if !seg.valid_flags() {
            return Verdict::Invalid;
        }
        let index = Index::of(seg.flags);
        let mut old = self.state;
        let next = match table::next(dir, index, old) {
            // RFC 1122 lets a SYN reopen a connection in TIME_WAIT; Linux also reopens one
            // the same side reset (an aborted connection the client starts over).
            table::Next::To(TcpState::SynSent)
                if matches!(old, TcpState::TimeWait | TcpState::Close) =>
            {
                if self.closed_by_fin_or(dir) {
                    return Verdict::Reopen;
                }
                table::Next::Ignore
            }
            n => n,
        };
        let mut new = match next {
            table::Next::Invalid => return Verdict::Invalid,
            table::Next::Ignore => {
                if !self.ignore(dir, index, seg, old) {
                    return Verdict::Ignore;
                }
                old = TcpState::SynSent;
                TcpState::SynRecv
            }
            table::Next::To(s) => s,
        };

        let mut check_window = true;
        match new {
            TcpState::TimeWait if self.is_challenge_ack(dir, index, old) => {
                // The server answered a SYN that hit LAST_ACK with a challenge ACK
                // (RFC 5961): it does not acknowledge the last FIN.
                self.last_flags &= !lf::CHALLENGE_ACK;
                return Verdict::Ignore;
            }
            TcpState::SynSent2 => self.last_flags |= lf::SIMULTANEOUS_OPEN,
            TcpState::SynRecv
                if dir == Dir::Reply
                    && index == Index::Ack
                    && self.last_flags & lf::SIMULTANEOUS_OPEN != 0 =>
            {
                // The table cannot tell that this ACK completes a simultaneous open.
                new = TcpState::Established;
            }
            TcpState::Close if index == Index::Rst => match self.check_rst(dir, seg, old) {
                RstCheck::Invalid => return Verdict::Invalid,
                RstCheck::Window { keep } => {
                    if keep {
                        new = old;
                    }
                }
                RstCheck::Trust { keep } => {
                    if keep {
                        new = old;
                    }
                    check_window = false;
                }
            },
            _ => {}
        }

        if check_window {
            match self.in_window(dir, index, seg) {
                Window::Accept => {}
                Window::Ignore => return Verdict::Ignore,
                Window::Invalid => return Verdict::Invalid,
            }
        }

        self.last_index = index;
        self.last_dir = dir;
        self.state = new;
        if old != new && new == TcpState::FinWait {
            self.peer[dir.i()].flags |= pf::CLOSE_INIT;
        }
        if !self.seen_reply {
            if seg.has(flag::RST) {
                // The only answer was a RST (a refused connection): not worth keeping.
                self.dead = true;
            } else if index == Index::Syn && old == TcpState::SynSent {
                return Verdict::Ignore;
            }
        } else if !self.assured
            && matches!(old, TcpState::SynRecv | TcpState::Established)
            && new == TcpState::Established
        {
            self.assured = true;
        }
        Verdict::Accept
    }

    /// A FIN started closing the connection, or the last segment that passed was a RST
    /// from `dir`: a SYN from `dir` now starts a new connection.
    fn closed_by_fin_or(&self, dir: Dir) -> bool {
        (self.peer[0].flags | self.peer[1].flags) & pf::CLOSE_INIT != 0
            || (self.last_dir == dir && self.last_index == Index::Rst)
    }

    /// A segment Linux ignores: we may be out of step with the endpoints, so let it pass
    /// and note it. A SYN from the originator is noted with its options; when the answer
    /// is a SYN/ACK acknowledging it, the endpoints agree on a new connection and we take
    /// it from there: true, and the caller goes on as SYN_SENT -> SYN_RECV.
    fn ignore(&mut self, dir: Dir, index: Index, seg: &Segment, old: TcpState) -> bool {
        if index == Index::SynAck
            && self.last_index == Index::Syn
            && self.last_dir != dir
            && seg.ack == self.last_end
        {
            let mut flags = 0;
            if self.last_flags & lf::WINDOW_SCALE != 0 {
                flags |= pf::WINDOW_SCALE;
            }
            if self.last_flags & lf::SACK_PERM != 0 {
                flags |= pf::SACK_PERM;
            }
            self.last_flags &= !lf::CHALLENGE_ACK;
            self.peer[self.last_dir.i()] = Peer {
                end: self.last_end,
                maxend: self.last_end,
                maxwin: u32::from(self.last_win).max(1),
                maxack: 0,
                scale: self.last_wscale,
                flags,
            };
            self.peer[dir.i()] = Peer::default();
            return true;
        }
        self.last_index = index;
        self.last_dir = dir;
        self.last_empty = seg.seq == seg.end();
        self.last_end = seg.end();
        self.last_win = seg.win;
        if index == Index::Syn && dir == Dir::Orig {
            self.last_flags = 0;
            self.last_wscale = 0;
            if let Some(s) = seg.wscale {
                self.last_flags |= lf::WINDOW_SCALE;
                self.last_wscale = s.min(MAX_WSCALE);
            }
            if seg.sack_perm {
                self.last_flags |= lf::SACK_PERM;
            }
            if old == TcpState::LastAck {
                self.last_flags |= lf::CHALLENGE_ACK;
            }
        }
        if old == TcpState::SynSent && index == Index::Ack && dir == Dir::Reply {
            // Perhaps a challenge ACK to the SYN; a RST may follow with this seq.
            self.last_ack = seg.ack;
        }
        false
    }

    fn is_challenge_ack(&self, dir: Dir, index: Index, old: TcpState) -> bool {
        old == TcpState::LastAck
            && index == Index::Ack
            && self.last_dir != dir
            && self.last_index == Index::Syn
            && self.last_flags & lf::CHALLENGE_ACK != 0
    }

    /// A RST that would move the connection to CLOSE (Linux's `case TCP_CONNTRACK_CLOSE`):
    /// on an established connection only a RST at exactly the acknowledged point closes;
    /// one further in the window leaves the state for the challenge ACK (RFC 5961), one
    /// before it is invalid.
    fn check_rst(&self, dir: Dir, seg: &Segment, old: TcpState) -> RstCheck {
        if matches!(
            old,
            TcpState::FinWait
                | TcpState::LastAck
                | TcpState::TimeWait
                | TcpState::Close
                | TcpState::CloseWait
        ) {
            // Closing anyway; the tuple may already be reused.
            return RstCheck::Trust { keep: false };
        }
        let mut keep = false;
        let other = &self.peer[1 - dir.i()];
        if other.flags & pf::MAXACK_SET != 0 && self.last_index != Index::Syn {
            let established = old == TcpState::Established && self.assured;
            let seq = seg.seq;
            if seq == 0 && !established {
                return RstCheck::Window { keep: false };
            }
            if before(seq, other.maxack) {
                return RstCheck::Invalid;
            }
            if !established || seq == other.maxack {
                return RstCheck::Window { keep: false };
            }
            // Part of a train: data, then a RST right after it from the same side.
            if self.last_index == Index::Ack && self.last_dir == dir && seq == self.last_end {
                return RstCheck::Window { keep: false };
            }
            keep = true;
        }
        // A RST answering a SYN or a half-open ACK we let through (ignored above): its
        // ack may cover data we never tracked.
        if ((self.seen_reply && self.last_index == Index::Syn)
            || (!self.assured && self.last_index == Index::Ack))
            && seg.ack == self.last_end
        {
            return RstCheck::Trust { keep };
        }
        // A RST answering a challenge ACK we let through in SYN_SENT.
        if old == TcpState::SynSent
            && self.last_index == Index::Ack
            && self.last_dir == Dir::Reply
            && seg.seq == self.last_ack
        {
            return RstCheck::Trust { keep };
        }
        RstCheck::Window { keep }
    }

    /// Linux's `tcp_in_window`: the segment must overlap the window the receiver offered
    /// (I, II) and acknowledge only data that was sent, not too far back (III, IV); then
    /// the windows grow by what it tells us.
    fn in_window(&mut self, dir: Dir, index: Index, seg: &Segment) -> Window {
        let state = self.state;
        let liberal = self.be_liberal;
        let fail = |w| if liberal { Window::Accept } else { w };
        let syn = seg.has(flag::SYN);
        let has_ack = seg.has(flag::ACK);
        let rst = seg.has(flag::RST);
        let [orig, reply] = &mut self.peer;
        let (snd, rcv) = match dir {
            Dir::Orig => (orig, reply),
            Dir::Reply => (reply, orig),
        };
        let mut seq = seg.seq;
        let mut end = seg.end();
        let mut ack = seg.ack;
        let mut sack = ack;
        if let Some(edge) = seg
            .sack
            .filter(|&e| rcv.flags & pf::SACK_PERM != 0 && after(e, ack))
        {
            sack = edge;
        }
        let mut win = u32::from(seg.win);

        if snd.maxwin == 0 {
            if syn {
                // The SYN/ACK, or the reply's SYN in a simultaneous open.
                init_sender(snd, rcv, seg, dir);
                if !has_ack {
                    return Window::Accept;
                }
            } else {
                // Picked up mid-stream: guess from this segment.
                snd.end = end;
                snd.maxwin = (win << snd.scale).max(1);
                snd.maxend = end.wrapping_add(snd.maxwin);
                if rcv.maxwin == 0 {
                    // Nothing seen the other way yet: let III and IV pass until then.
                    rcv.end = sack;
                    rcv.maxend = sack;
                } else if sack == rcv.end.wrapping_add(1) {
                    // Likely the answer to a keepalive.
                    rcv.end = sack;
                }
            }
        } else if syn
            && after(end, snd.end)
            && matches!(state, TcpState::SynSent | TcpState::SynRecv)
        {
            // RFC 793: a TCP that restarts may use any higher sequence number.
            init_sender(snd, rcv, seg, dir);
            if dir == Dir::Reply && !has_ack {
                return Window::Accept;
            }
        }

        if !has_ack || (rst && ack == 0) {
            // No ACK (or a broken stack's RST|ACK with ack 0): pretend it acked all.
            ack = rcv.end;
            sack = rcv.end;
        }
        if rst && seq == 0 && state == TcpState::SynSent {
            // The RST answering a SYN.
            seq = snd.end;
            end = snd.end;
        }

        let max_ack_win = snd.maxwin.max(MAX_ACK_WIN_CONST);
        let ack_floor = rcv.end.wrapping_sub(max_ack_win).wrapping_sub(1);
        let seq_floor = snd.end.wrapping_sub(rcv.maxwin).wrapping_sub(1);
        if !before(seq, snd.maxend.wrapping_add(1)) {
            // I fails: past the receiver's window.
            let overshot = end.wrapping_sub(snd.maxend).wrapping_add(1);
            if rcv.maxwin != 0
                && after(end, seq_floor)
                && after(sack, ack_floor)
                && overshot <= rcv.maxwin
                && before(sack, rcv.end.wrapping_add(1))
            {
                // A stack that sends a little more than the window allows: let the ACK
                // for it through later.
                snd.end = end;
                snd.flags |= pf::DATA_UNACK;
                return fail(Window::Ignore);
            }
            return fail(Window::Invalid);
        }
        if !before(sack, rcv.end.wrapping_add(1)) {
            // III fails: acknowledges data never sent.
            return fail(Window::Invalid);
        }
        if rcv.maxwin != 0 && !after(end, seq_floor) {
            // II fails: data the receiver acknowledged long ago.
            return fail(Window::Ignore);
        }
        if !after(sack, ack_floor) {
            // IV fails: a very late ACK.
            return fail(Window::Ignore);
        }

        if !syn {
            win <<= snd.scale;
        }
        let swin = win.wrapping_add(sack.wrapping_sub(ack));
        snd.maxwin = snd.maxwin.max(swin);
        if after(end, snd.end) {
            snd.end = end;
            snd.flags |= pf::DATA_UNACK;
        }
        if has_ack {
            if snd.flags & pf::MAXACK_SET == 0 {
                snd.maxack = ack;
                snd.flags |= pf::MAXACK_SET;
            } else if after(ack, snd.maxack) {
                snd.maxack = ack;
            }
        }
        if rcv.maxwin != 0 && after(end, snd.maxend) {
            rcv.maxwin = rcv.maxwin.wrapping_add(end.wrapping_sub(snd.maxend));
        }
        if after(sack.wrapping_add(win), rcv.maxend.wrapping_sub(1)) {
            rcv.maxend = sack.wrapping_add(win);
            if win == 0 {
                rcv.maxend = rcv.maxend.wrapping_add(1);
            }
        }
        if ack == rcv.end {
            rcv.flags &= !pf::DATA_UNACK;
        }

        if index == Index::Ack {
            let empty = seq == end;
            if self.last_dir == dir
                && self.last_empty == empty
                && self.last_ack == ack
                && self.last_end == end
                && self.last_win == seg.win
            {
                self.retrans = (self.retrans + 1).min(RETRANS_CAP);
            } else {
                self.last_dir = dir;
                self.last_empty = empty;
                self.last_ack = ack;
                self.last_end = end;
                self.last_win = seg.win;
                self.retrans = 0;
            }
        }
        Window::Accept
    }

    /// The state as words for the table's file. Layout: per direction (orig, reply) two
    /// words `end | maxend << 32`, `maxwin | maxack << 32`; then `last_ack | last_end <<
    /// 32`; then the small fields (see `bits`), with a tag in the top bits so that a zeroed
    /// or foreign slot does not decode.
    pub fn encode(&self) -> [u64; Self::WORDS] {
        let pair = |lo: u32, hi: u32| u64::from(lo) | u64::from(hi) << 32;
        let [o, r] = &self.peer;
        let mut small = 0u64;
        let mut put = |(at, width): (u32, u32), v: u64| {
            debug_assert!(v < 1 << width);
            small |= v << at;
        };
        put(bits::LAST_WIN, u64::from(self.last_win));
        put(bits::STATE, self.state as u64);
        put(bits::LAST_INDEX, self.last_index as u64);
        put(bits::LAST_DIR, self.last_dir as u64);
        put(bits::RETRANS, u64::from(self.retrans));
        put(bits::LAST_WSCALE, u64::from(self.last_wscale));
        put(bits::LAST_FLAGS, u64::from(self.last_flags));
        put(bits::SCALE[0], u64::from(o.scale));
        put(bits::SCALE[1], u64::from(r.scale));
        put(bits::FLAGS[0], u64::from(o.flags));
        put(bits::FLAGS[1], u64::from(r.flags));
        put(bits::BE_LIBERAL, u64::from(self.be_liberal));
        put(bits::SEEN_REPLY, u64::from(self.seen_reply));
        put(bits::ASSURED, u64::from(self.assured));
        put(bits::DEAD, u64::from(self.dead));
        put(bits::LAST_EMPTY, u64::from(self.last_empty));
        put(bits::TAG, bits::TAG_VALUE);
        [
            pair(o.end, o.maxend),
            pair(o.maxwin, o.maxack),
            pair(r.end, r.maxend),
            pair(r.maxwin, r.maxack),
            pair(self.last_ack, self.last_end),
            small,
        ]
    }

    /// The state [`encode`](Self::encode) wrote; None if the words cannot be one (wrong
    /// tag, unused bits set, a value out of range), as from a damaged file.
    pub fn decode(w: &[u64; Self::WORDS]) -> Option<TcpConn> {
        let small = w[5];
        let get = |(at, width): (u32, u32)| (small >> at) & ((1 << width) - 1);
        if get(bits::TAG) != bits::TAG_VALUE || small & bits::UNUSED != 0 {
            return None;
        }
        let lo = |x: u64| x as u32;
        let hi = |x: u64| (x >> 32) as u32;
        let flag = |b| get(b) != 0;
        let scale = |b| u8::try_from(get(b)).ok().filter(|&s| s <= MAX_WSCALE);
        let peer = |i: usize| {
            Some(Peer {
                end: lo(w[2 * i]),
                maxend: hi(w[2 * i]),
                maxwin: lo(w[2 * i + 1]),
                maxack: hi(w[2 * i + 1]),
                scale: scale(bits::SCALE[i])?,
                flags: get(bits::FLAGS[i]) as u8,
            })
        };
        Some(TcpConn {
            state: *TcpState::ALL.get(get(bits::STATE) as usize)?,
            peer: [peer(0)?, peer(1)?],
            be_liberal: flag(bits::BE_LIBERAL),
            last_dir: if flag(bits::LAST_DIR) {
                Dir::Reply
            } else {
                Dir::Orig
            },
            last_index: *Index::ALL.get(get(bits::LAST_INDEX) as usize)?,
            last_empty: flag(bits::LAST_EMPTY),
            last_ack: lo(w[4]),
            last_end: hi(w[4]),
            last_win: get(bits::LAST_WIN) as u16,
            last_wscale: scale(bits::LAST_WSCALE)?,
            last_flags: get(bits::LAST_FLAGS) as u8,
            retrans: get(bits::RETRANS) as u8,
            seen_reply: flag(bits::SEEN_REPLY),
            assured: flag(bits::ASSURED),
            dead: flag(bits::DEAD),
        })
    }
}

/// Where the small fields sit in the last word: (first bit, width).
mod bits {
    pub const LAST_WIN: (u32, u32) = (0, 16);
    pub const STATE: (u32, u32) = (16, 4);
    pub const LAST_INDEX: (u32, u32) = (20, 3);
    pub const LAST_DIR: (u32, u32) = (23, 1);
    pub const RETRANS: (u32, u32) = (24, 4);
    pub const LAST_WSCALE: (u32, u32) = (28, 4);
    pub const LAST_FLAGS: (u32, u32) = (32, 4);
    /// Per direction.
    pub const SCALE: [(u32, u32); 2] = [(36, 4), (40, 4)];
    /// Per direction.
    pub const FLAGS: [(u32, u32); 2] = [(44, 5), (49, 5)];
    pub const BE_LIBERAL: (u32, u32) = (54, 1);
    pub const SEEN_REPLY: (u32, u32) = (55, 1);
    pub const ASSURED: (u32, u32) = (56, 1);
    pub const DEAD: (u32, u32) = (57, 1);
    pub const LAST_EMPTY: (u32, u32) = (58, 1);
    /// Bits 59 and 60: always zero.
    pub const UNUSED: u64 = 0b11 << 59;
    pub const TAG: (u32, u32) = (61, 3);
    pub const TAG_VALUE: u64 = 0b101;

    const _: () = assert!(super::RETRANS_CAP < 1 << RETRANS.1);
    const _: () = assert!(super::pf::ALL < 1 << FLAGS[0].1);
    const _: () = assert!(super::lf::ALL < 1 << LAST_FLAGS.1);
}

/// The first segment seen from a direction that carries SYN (Linux's `tcp_init_sender`).
/// RFC 7323: scaling applies only if both SYNs offered it, which is known at the reply's.
fn init_sender(snd: &mut Peer, rcv: &mut Peer, seg: &Segment, dir: Dir) {
    snd.end = seg.end();
    snd.maxend = snd.end;
    snd.maxwin = u32::from(seg.win).max(1);
    snd.take_options(seg);
    if dir == Dir::Reply
        && !(snd.flags & pf::WINDOW_SCALE != 0 && rcv.flags & pf::WINDOW_SCALE != 0)
    {
        snd.scale = 0;
        rcv.scale = 0;
    }
}

/// `a` comes before `b` in sequence space (RFC 1982 arithmetic, as Linux's `before`).
fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

fn after(a: u32, b: u32) -> bool {
    before(b, a)
}

/// Linux's `tcp_conntracks` table: the next state by direction, flags and state.
mod table {
    use super::{Dir, Index, TcpState};

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Next {
        To(TcpState),
        /// Linux's sIG: may be valid, the endpoints will tell.
        Ignore,
        /// Linux's sIV.
        Invalid,
    }

    const SS: Next = Next::To(TcpState::SynSent);
    const SR: Next = Next::To(TcpState::SynRecv);
    const ES: Next = Next::To(TcpState::Established);
    const FW: Next = Next::To(TcpState::FinWait);
    const CW: Next = Next::To(TcpState::CloseWait);
    const LA: Next = Next::To(TcpState::LastAck);
    const TW: Next = Next::To(TcpState::TimeWait);
    const CL: Next = Next::To(TcpState::Close);
    const S2: Next = Next::To(TcpState::SynSent2);
    const IV: Next = Next::Invalid;
    const IG: Next = Next::Ignore;

    /// Rows by [`Index`], columns by [`TcpState`]: NO SS SR ES FW CW LA TW CL S2.
    const TABLE: [[[Next; 10]; 6]; 2] = [
        [
            // Original direction.
            [SS, SS, IG, IG, IG, IG, IG, SS, SS, S2], // SYN
            [IV, IV, SR, IV, IV, IV, IV, IV, IV, SR], // SYN/ACK
            [IV, IV, FW, FW, LA, LA, LA, TW, CL, IV], // FIN
            [ES, IV, ES, ES, CW, CW, TW, TW, CL, IV], // ACK
            [IV, CL, CL, CL, CL, CL, CL, CL, CL, CL], // RST
            [IV; 10],                                 // none
        ],
        [
            // Reply direction.
            [IV, S2, IV, IV, IV, IV, IV, SS, IV, S2], // SYN
            [IV, SR, IG, IG, IG, IG, IG, IG, IG, SR], // SYN/ACK
            [IV, IV, FW, FW, LA, LA, LA, TW, CL, IV], // FIN
            [IV, IG, SR, ES, CW, CW, TW, TW, CL, IG], // ACK
            [IV, CL, CL, CL, CL, CL, CL, CL, CL, CL], // RST
            [IV; 10],                                 // none
        ],
    ];

    pub fn next(dir: Dir, index: Index, state: TcpState) -> Next {
        TABLE[dir as usize][index as usize][state as usize]
    }
}
