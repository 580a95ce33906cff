//! Connections driven through their lives, and properties over random segments.

use super::*;
use flag::*;
use proptest::prelude::*;

/// The client's (original direction's) and the server's initial sequence numbers.
const C: u32 = 1000;
const S: u32 = 5000;

fn seg(flags: u16, seq: u32, ack: u32, win: u16, len: u32) -> Segment {
    Segment {
        seq,
        ack,
        win,
        flags,
        payload_len: len,
        ..Segment::default()
    }
}

/// A Linux client's SYN: window 64240, scale 7, SACK permitted.
fn syn(isn: u32) -> Segment {
    Segment {
        wscale: Some(7),
        sack_perm: true,
        ..seg(SYN, isn, 0, 64240, 0)
    }
}

fn syn_ack(isn: u32, ack: u32) -> Segment {
    Segment {
        wscale: Some(7),
        sack_perm: true,
        ..seg(SYN | ACK, isn, ack, 65160, 0)
    }
}

/// Windows after the handshake, scaled by 7: about 64 KiB.
const CWIN: u16 = 502;
const SWIN: u16 = 509;

fn established() -> TcpConn {
    let mut c = TcpConn::new(&syn(C), false).unwrap();
    assert_eq!(c.update(Dir::Reply, &syn_ack(S, C + 1)), Verdict::Accept);
    assert_eq!(
        c.update(Dir::Orig, &seg(ACK, C + 1, S + 1, CWIN, 0)),
        Verdict::Accept
    );
    assert_eq!(c.state(), TcpState::Established);
    c
}

/// Sends `s` and expects `v` and then `state`.
#[track_caller]
fn step(c: &mut TcpConn, dir: Dir, s: Segment, v: Verdict, state: TcpState) {
    assert_eq!(c.update(dir, &s), v, "{s:?} in {dir:?}");
    assert_eq!(c.state(), state, "after {s:?} in {dir:?}");
}

/// Sends `s`, expects Invalid and the connection exactly as it was.
#[track_caller]
fn invalid(c: &mut TcpConn, dir: Dir, s: Segment) {
    let before = *c;
    assert_eq!(c.update(dir, &s), Verdict::Invalid, "{s:?} in {dir:?}");
    assert_eq!(*c, before);
}

#[test]
fn handshake_data_and_close_from_the_client() {
    use TcpState::*;
    let t = TcpTimeouts::default();
    let mut c = TcpConn::new(&syn(C), false).unwrap();
    assert_eq!(
        (c.state(), c.replied(), c.assured()),
        (SynSent, false, false)
    );
    assert_eq!(c.timeout_ms(&t), 120_000);

    step(
        &mut c,
        Dir::Reply,
        syn_ack(S, C + 1),
        Verdict::Accept,
        SynRecv,
    );
    assert_eq!((c.replied(), c.assured()), (true, false));
    assert_eq!(c.timeout_ms(&t), 60_000);

    step(
        &mut c,
        Dir::Orig,
        seg(ACK, C + 1, S + 1, CWIN, 0),
        Verdict::Accept,
        Established,
    );
    assert!(c.assured());
    assert_eq!(c.timeout_ms(&t), 432_000_000);

    // A request and a response, each acknowledged.
    step(
        &mut c,
        Dir::Orig,
        seg(ACK | PSH, C + 1, S + 1, CWIN, 100),
        Verdict::Accept,
        Established,
    );
    assert_eq!(c.timeout_ms(&t), 300_000, "data in flight");
    step(
        &mut c,
        Dir::Reply,
        seg(ACK, S + 1, C + 101, SWIN, 0),
        Verdict::Accept,
        Established,
    );
    assert_eq!(c.timeout_ms(&t), 432_000_000);
    step(
        &mut c,
        Dir::Reply,
        seg(ACK | PSH, S + 1, C + 101, SWIN, 3000),
        Verdict::Accept,
        Established,
    );
    step(
        &mut c,
        Dir::Orig,
        seg(ACK, C + 101, S + 3001, CWIN, 0),
        Verdict::Accept,
        Established,
    );
    assert!(!c.can_early_drop());

    // The client closes.
    step(
        &mut c,
        Dir::Orig,
        seg(FIN | ACK, C + 101, S + 3001, CWIN, 0),
        Verdict::Accept,
        FinWait,
    );
    assert_eq!(c.state().ovs_name(), "FIN_WAIT_1");
    assert_eq!(c.timeout_ms(&t), 120_000);
    assert!(c.can_early_drop());
    step(
        &mut c,
        Dir::Reply,
        seg(ACK, S + 3001, C + 102, SWIN, 0),
        Verdict::Accept,
        CloseWait,
    );
    assert_eq!(c.timeout_ms(&t), 60_000);
    step(
        &mut c,
        Dir::Reply,
        seg(FIN | ACK, S + 3001, C + 102, SWIN, 0),
        Verdict::Accept,
        LastAck,
    );
    assert_eq!(c.timeout_ms(&t), 30_000);
    step(
        &mut c,
        Dir::Orig,
        seg(ACK, C + 102, S + 3002, CWIN, 0),
        Verdict::Accept,
        TimeWait,
    );
    assert_eq!(c.timeout_ms(&t), 120_000);
    // The last ACK again.
    step(
        &mut c,
        Dir::Orig,
        seg(ACK, C + 102, S + 3002, CWIN, 0),
        Verdict::Accept,
        TimeWait,
    );
}

#[test]
fn close_from_the_server_with_data_on_the_fin() {
    use TcpState::*;
    let mut c = established();
    step(
        &mut c,
        Dir::Reply,
        seg(FIN | ACK | PSH, S + 1, C + 1, SWIN, 20),
        Verdict::Accept,
        FinWait,
    );
    // The client acknowledges and closes in one segment.
    step(
        &mut c,
        Dir::Orig,
        seg(FIN | ACK, C + 1, S + 22, CWIN, 0),
        Verdict::Accept,
        LastAck,
    );
    step(
        &mut c,
        Dir::Reply,
        seg(ACK, S + 22, C + 2, SWIN, 0),
        Verdict::Accept,
        TimeWait,
    );
}

#[test]
fn states_print_as_ovs_and_linux_do() {
    let ovs: Vec<_> = TcpState::ALL.iter().map(|s| s.ovs_name()).collect();
    assert_eq!(
        ovs,
        [
            "CLOSED",
            "SYN_SENT",
            "SYN_RECV",
            "ESTABLISHED",
            "FIN_WAIT_1",
            "CLOSE_WAIT",
            "LAST_ACK",
            "TIME_WAIT",
            "CLOSING",
            "SYN_SENT"
        ]
    );
    assert_eq!(TcpState::SynSent2.linux_name(), "SYN_SENT2");
    assert_eq!(TcpState::Close.linux_name(), "CLOSE");
}

#[test]
fn rst_closes_an_established_connection() {
    let t = TcpTimeouts::default();
    let mut c = established();
    step(
        &mut c,
        Dir::Reply,
        seg(RST, S + 1, 0, 0, 0),
        Verdict::Accept,
        TcpState::Close,
    );
    assert_eq!(c.timeout_ms(&t), 10_000);
    assert!(
        c.replied(),
        "an answered connection stays for the close timeout"
    );
}

#[test]
fn inexact_rst_waits_for_the_challenge_ack_and_stale_rst_is_invalid() {
    let mut c = established();
    // In the window but not where the client's ACK points: RFC 5961 says challenge it.
    step(
        &mut c,
        Dir::Reply,
        seg(RST, S + 101, 0, 0, 0),
        Verdict::Accept,
        TcpState::Established,
    );
    // Before what the client already acknowledged: not from this connection.
    invalid(&mut c, Dir::Reply, seg(RST, S - 10, 0, 0, 0));
    // A RST right after the sender's own data closes.
    step(
        &mut c,
        Dir::Reply,
        seg(ACK | PSH, S + 1, C + 1, SWIN, 50),
        Verdict::Accept,
        TcpState::Established,
    );
    step(
        &mut c,
        Dir::Reply,
        seg(RST, S + 51, 0, 0, 0),
        Verdict::Accept,
        TcpState::Close,
    );
}

#[test]
fn refused_connection_dies_at_once() {
    let t = TcpTimeouts::default();
    let mut c = TcpConn::new(&syn(C), false).unwrap();
    step(
        &mut c,
        Dir::Reply,
        seg(RST | ACK, 0, C + 1, 0, 0),
        Verdict::Accept,
        TcpState::Close,
    );
    assert_eq!(c.timeout_ms(&t), 0);
    assert!(!c.replied());
    // Gone, as far as Linux is concerned: the client's next try starts afresh.
    assert_eq!(c.update(Dir::Orig, &syn(C)), Verdict::Reopen);
}

#[test]
fn simultaneous_open() {
    use TcpState::*;
    let mut c = TcpConn::new(&syn(C), false).unwrap();
    // Linux renews no timer on a SYN while SYN_SENT has no reply, whichever way it goes.
    step(&mut c, Dir::Reply, syn(S), Verdict::Ignore, SynSent2);
    assert!(c.replied());
    assert_eq!(c.state().ovs_name(), "SYN_SENT");
    step(
        &mut c,
        Dir::Orig,
        syn_ack(C, S + 1),
        Verdict::Accept,
        SynRecv,
    );
    // The server's SYN/ACK crosses the client's: Linux lets it pass untracked.
    step(
        &mut c,
        Dir::Reply,
        syn_ack(S, C + 1),
        Verdict::Ignore,
        SynRecv,
    );
    step(
        &mut c,
        Dir::Reply,
        seg(ACK, S + 1, C + 1, SWIN, 0),
        Verdict::Accept,
        Established,
    );
    assert!(c.assured());
}

#[test]
fn retransmitted_syn_is_not_renewed() {
    let mut c = TcpConn::new(&syn(C), false).unwrap();
    step(
        &mut c,
        Dir::Orig,
        syn(C),
        Verdict::Ignore,
        TcpState::SynSent,
    );
}

#[test]
fn out_of_window_data_is_invalid_and_changes_nothing() {
    let mut c = established();
    invalid(
        &mut c,
        Dir::Orig,
        seg(ACK | PSH, C + 1 + 10_000_000, S + 1, CWIN, 100),
    );
    invalid(
        &mut c,
        Dir::Reply,
        seg(ACK | PSH, S + 1 + 200_000, C + 1, SWIN, 100),
    );
    // Still tracking: the next real segment passes.
    step(
        &mut c,
        Dir::Orig,
        seg(ACK | PSH, C + 1, S + 1, CWIN, 100),
        Verdict::Accept,
        TcpState::Established,
    );
}

#[test]
fn ack_for_data_never_sent_is_invalid() {
    let mut c = established();
    invalid(&mut c, Dir::Orig, seg(ACK, C + 1, S + 1 + 100_000, CWIN, 0));
    invalid(&mut c, Dir::Reply, seg(ACK, S + 1, C + 2, SWIN, 0));
}

#[test]
fn sack_blocks_count_only_for_sent_data() {
    let mut c = established();
    step(
        &mut c,
        Dir::Reply,
        seg(ACK | PSH, S + 1, C + 1, SWIN, 3000),
        Verdict::Accept,
        TcpState::Established,
    );
    // The client lost the first 1000 bytes and has the rest.
    let sacked = Segment {
        sack: Some(S + 3001),
        ..seg(ACK, C + 1, S + 1, CWIN, 0)
    };
    assert_eq!(c.update(Dir::Orig, &sacked), Verdict::Accept);
    let beyond = Segment {
        sack: Some(S + 4001),
        ..sacked
    };
    invalid(&mut c, Dir::Orig, beyond);
}

#[test]
fn retransmissions_are_accepted_and_shorten_the_timeout() {
    let mut t = TcpTimeouts::default();
    t.set("max_retrans", 100).unwrap();
    t.set("unacknowledged", 200).unwrap();
    let mut c = established();
    let data = seg(ACK | PSH, C + 1, S + 1, CWIN, 100);
    step(
        &mut c,
        Dir::Orig,
        data,
        Verdict::Accept,
        TcpState::Established,
    );
    assert_eq!(c.timeout_ms(&t), 200_000, "unacknowledged");
    for _ in 0..MAX_RETRANS {
        step(
            &mut c,
            Dir::Orig,
            data,
            Verdict::Accept,
            TcpState::Established,
        );
    }
    assert_eq!(c.timeout_ms(&t), 100_000, "retransmitted");
    step(
        &mut c,
        Dir::Reply,
        seg(ACK, S + 1, C + 101, SWIN, 0),
        Verdict::Accept,
        TcpState::Established,
    );
    assert_eq!(c.timeout_ms(&t), 432_000_000);
    // A late copy of the acknowledged data still passes.
    step(
        &mut c,
        Dir::Orig,
        data,
        Verdict::Accept,
        TcpState::Established,
    );

    // Far behind (more than a window back), a copy passes but tells us nothing.
    let mut next = C + 101;
    for _ in 0..4 {
        step(
            &mut c,
            Dir::Orig,
            seg(ACK, next, S + 1, CWIN, 60_000),
            Verdict::Accept,
            TcpState::Established,
        );
        next += 60_000;
        step(
            &mut c,
            Dir::Reply,
            seg(ACK, S + 1, next, SWIN, 0),
            Verdict::Accept,
            TcpState::Established,
        );
    }
    let before = c;
    assert_eq!(c.update(Dir::Orig, &data), Verdict::Ignore);
    assert_eq!(c, before);
}

#[test]
fn zero_window_shortens_the_timeout() {
    let t = TcpTimeouts::default();
    let mut c = established();
    step(
        &mut c,
        Dir::Reply,
        seg(ACK, S + 1, C + 1, 0, 0),
        Verdict::Accept,
        TcpState::Established,
    );
    assert_eq!(c.timeout_ms(&t), 300_000);
}

#[test]
fn syn_on_time_wait_reopens() {
    let mut c = established();
    for (dir, s) in [
        (Dir::Orig, seg(FIN | ACK, C + 1, S + 1, CWIN, 0)),
        (Dir::Reply, seg(FIN | ACK, S + 1, C + 2, SWIN, 0)),
        (Dir::Orig, seg(ACK, C + 2, S + 2, CWIN, 0)),
    ] {
        assert_eq!(c.update(dir, &s), Verdict::Accept);
    }
    assert_eq!(c.state(), TcpState::TimeWait);
    let before = c;
    assert_eq!(c.update(Dir::Orig, &syn(C + 100_000)), Verdict::Reopen);
    assert_eq!(c, before);
    // The server may reopen too (with the roles swapped).
    assert_eq!(c.update(Dir::Reply, &syn(S + 100_000)), Verdict::Reopen);
    assert_eq!(c, before);
}

#[test]
fn syn_after_own_rst_reopens() {
    let mut c = established();
    step(
        &mut c,
        Dir::Orig,
        seg(RST, C + 1, 0, 0, 0),
        Verdict::Accept,
        TcpState::Close,
    );
    assert_eq!(c.update(Dir::Orig, &syn(C + 7)), Verdict::Reopen);
}

#[test]
fn syn_after_the_servers_rst_resyncs_on_its_syn_ack() {
    use TcpState::*;
    let mut c = established();
    step(
        &mut c,
        Dir::Reply,
        seg(RST, S + 1, 0, 0, 0),
        Verdict::Accept,
        Close,
    );
    // The server reset; we do not know whether it will take a new SYN, so it passes...
    step(&mut c, Dir::Orig, syn(90_000), Verdict::Ignore, Close);
    // ...and its SYN/ACK for that SYN starts the new connection.
    step(
        &mut c,
        Dir::Reply,
        syn_ack(70_000, 90_001),
        Verdict::Accept,
        SynRecv,
    );
    step(
        &mut c,
        Dir::Orig,
        seg(ACK, 90_001, 70_001, CWIN, 0),
        Verdict::Accept,
        Established,
    );
    step(
        &mut c,
        Dir::Reply,
        seg(ACK | PSH, 70_001, 90_001, SWIN, 10),
        Verdict::Accept,
        Established,
    );
}

#[test]
fn impossible_segments_are_invalid() {
    let mut c = TcpConn::new(&syn(C), false).unwrap();
    // The client cannot answer its own SYN.
    invalid(&mut c, Dir::Orig, syn_ack(C, 77));
    // Nothing but a SYN/ACK (or a RST) is an answer yet.
    invalid(&mut c, Dir::Orig, seg(FIN | ACK, C + 1, 0, 1, 0));
    invalid(&mut c, Dir::Reply, seg(FIN | ACK, S, C + 1, 1, 0));
    let mut c = established();
    for flags in [SYN | FIN, SYN | RST, 0, FIN, SYN | ACK | URG, PSH] {
        invalid(&mut c, Dir::Orig, seg(flags, C + 1, S + 1, CWIN, 0));
        invalid(&mut c, Dir::Reply, seg(flags, S + 1, C + 1, SWIN, 0));
    }
}

#[test]
fn new_takes_only_a_syn_or_a_loose_ack() {
    for flags in [
        SYN | FIN,
        SYN | RST,
        0,
        FIN,
        FIN | ACK,
        RST,
        RST | ACK,
        SYN | ACK,
        PSH,
    ] {
        for loose in [false, true] {
            assert_eq!(
                TcpConn::new(&seg(flags, 1, 2, 3, 0), loose),
                None,
                "{flags:#x}"
            );
        }
    }
    assert!(TcpConn::new(&seg(SYN | ECE | CWR, 1, 0, 3, 0), false).is_some());
}

#[test]
fn mid_stream_pickup() {
    let t = TcpTimeouts::default();
    let a = seg(ACK | PSH, 777, 888, 1000, 50);
    assert_eq!(TcpConn::new(&a, false), None);
    let mut c = TcpConn::new(&a, true).unwrap();
    assert_eq!(c.state(), TcpState::Established);
    assert!(!c.replied() && !c.assured());
    assert_eq!(c.timeout_ms(&t), 300_000, "no reply yet");
    step(
        &mut c,
        Dir::Reply,
        seg(ACK, 888, 827, 2000, 0),
        Verdict::Accept,
        TcpState::Established,
    );
    assert!(c.replied() && !c.assured());
    step(
        &mut c,
        Dir::Orig,
        seg(ACK, 827, 888, 1000, 0),
        Verdict::Accept,
        TcpState::Established,
    );
    assert!(c.assured());
    assert_eq!(c.timeout_ms(&t), 432_000_000);
    // The window scale is unknown, so the windows may be far larger than they look.
    step(
        &mut c,
        Dir::Orig,
        seg(ACK, 827 + 500_000, 888, 1000, 10),
        Verdict::Accept,
        TcpState::Established,
    );
}

/// The client offers window scaling or not; the server always does, and offers a window
/// of 1000 (128000 bytes when scaled by 7).
fn scaled_handshake(client_scales: bool) -> TcpConn {
    let mut first = syn(C);
    if !client_scales {
        first.wscale = None;
    }
    let mut c = TcpConn::new(&first, false).unwrap();
    let answer = Segment {
        win: 1000,
        ..syn_ack(S, C + 1)
    };
    assert_eq!(c.update(Dir::Reply, &answer), Verdict::Accept);
    assert_eq!(
        c.update(Dir::Orig, &seg(ACK, C + 1, S + 1, CWIN, 0)),
        Verdict::Accept
    );
    assert_eq!(
        c.update(Dir::Reply, &seg(ACK, S + 1, C + 1, 1000, 0)),
        Verdict::Accept
    );
    c
}

#[test]
fn window_scaling_is_honoured() {
    let far = seg(ACK | PSH, C + 1 + 50_000, S + 1, CWIN, 1000);
    let mut c = scaled_handshake(true);
    assert_eq!(c.update(Dir::Orig, &far), Verdict::Accept);
    let mut c = scaled_handshake(false);
    invalid(&mut c, Dir::Orig, far);
}

#[test]
fn challenge_ack_in_last_ack_is_not_the_last_ack() {
    let mut c = established();
    for (dir, s) in [
        (Dir::Reply, seg(FIN | ACK, S + 1, C + 1, SWIN, 0)),
        (Dir::Orig, seg(FIN | ACK, C + 1, S + 2, CWIN, 0)),
    ] {
        assert_eq!(c.update(dir, &s), Verdict::Accept);
    }
    assert_eq!(c.state(), TcpState::LastAck);
    // A new SYN from the client before the server's last ACK: the server's answer is a
    // challenge ACK (RFC 5961), not the ACK of the client's FIN.
    step(
        &mut c,
        Dir::Orig,
        syn(C + 50_000),
        Verdict::Ignore,
        TcpState::LastAck,
    );
    step(
        &mut c,
        Dir::Reply,
        seg(ACK, S + 2, C + 2, SWIN, 0),
        Verdict::Ignore,
        TcpState::LastAck,
    );
    step(
        &mut c,
        Dir::Reply,
        seg(ACK, S + 2, C + 2, SWIN, 0),
        Verdict::Accept,
        TcpState::TimeWait,
    );
}

#[test]
fn timeouts_per_state() {
    use TcpState::*;
    let mut t = TcpTimeouts::default();
    for (i, name) in TcpTimeouts::names().iter().enumerate() {
        t.set(name, 1000 + i as u32).unwrap();
    }
    let secs = |s| {
        let mut c = TcpConn::EMPTY;
        c.state = s;
        c.seen_reply = true;
        c.last_win = 1;
        c.timeout_ms(&t) / 1000
    };
    let want = [
        (None, 1000),
        (SynSent, 1000),
        (SynRecv, 1001),
        (Established, 1002),
        (FinWait, 1003),
        (CloseWait, 1004),
        (LastAck, 1005),
        (TimeWait, 1006),
        (Close, 1007),
        (SynSent2, 1008),
    ];
    for (s, want) in want {
        assert_eq!(secs(s), want, "{s:?}");
    }
}

#[test]
fn decode_rejects_damage() {
    let w = established().encode();
    assert_eq!(TcpConn::decode(&w), Some(established()));
    assert_eq!(TcpConn::decode(&[0; TcpConn::WORDS]), None, "an empty slot");
    let mut bad = w;
    bad[5] |= 1 << 59;
    assert_eq!(TcpConn::decode(&bad), None, "unused bit");
    let mut bad = w;
    bad[5] |= 0xf << bits::STATE.0;
    assert_eq!(TcpConn::decode(&bad), None, "state 15");
    let mut bad = w;
    bad[5] |= 0x7 << bits::LAST_INDEX.0;
    assert_eq!(TcpConn::decode(&bad), None, "index 7");
    let mut bad = w;
    bad[5] |= 0xf << bits::SCALE[1].0;
    assert_eq!(TcpConn::decode(&bad), None, "scale 15");
}

// ---- Properties ----

fn any_state() -> impl Strategy<Value = TcpState> {
    (0..TcpState::ALL.len()).prop_map(|i| TcpState::ALL[i])
}

fn any_peer() -> impl Strategy<Value = Peer> {
    (any::<[u32; 4]>(), 0..=MAX_WSCALE, 0..=pf::ALL).prop_map(|(n, scale, flags)| Peer {
        end: n[0],
        maxend: n[1],
        maxwin: n[2],
        maxack: n[3],
        scale,
        flags,
    })
}

/// Any connection the encoding can hold, reachable or not.
fn any_conn() -> impl Strategy<Value = TcpConn> {
    (
        any_state(),
        [any_peer(), any_peer()],
        (any::<[bool; 5]>(), prop::bool::weighted(0.1)),
        0..Index::ALL.len(),
        any::<(u32, u32, u16)>(),
        (0..=MAX_WSCALE, 0..=lf::ALL, 0..=RETRANS_CAP),
    )
        .prop_map(
            |(state, peer, (b, dead), index, (ack, end, win), (ws, lf, retrans))| TcpConn {
                state,
                peer,
                be_liberal: b[0],
                last_dir: if b[1] { Dir::Reply } else { Dir::Orig },
                last_index: Index::ALL[index],
                last_empty: b[2],
                last_ack: ack,
                last_end: end,
                last_win: win,
                last_wscale: ws,
                last_flags: lf,
                retrans,
                seen_reply: b[3],
                assured: b[4],
                dead,
            },
        )
}

fn any_segment() -> impl Strategy<Value = Segment> {
    (
        any::<(u32, u32, u16, u16)>(),
        prop_oneof![Just(0u32), 0..2000u32, any::<u32>()],
        proptest::option::of(any::<u8>()),
        any::<bool>(),
        proptest::option::of(any::<u32>()),
    )
        .prop_map(
            |((seq, ack, win, flags), payload_len, wscale, sack_perm, sack)| Segment {
                seq,
                ack,
                win,
                flags: flags & 0xfff,
                payload_len,
                wscale,
                sack_perm,
                sack,
            },
        )
}

/// A segment shaped like real traffic: valid flags, sequence numbers near what the
/// sender has sent and acks near what the receiver has sent, so the walk reaches deep
/// states instead of failing the window check.
#[derive(Clone, Debug)]
struct Near {
    reply: bool,
    flags: u16,
    dseq: i32,
    dack: i32,
    win: u16,
    len: u32,
    wscale: Option<u8>,
}

fn near() -> impl Strategy<Value = Near> {
    let flags = prop_oneof![
        2 => Just(SYN),
        2 => Just(SYN | ACK),
        6 => Just(ACK),
        6 => Just(ACK | PSH),
        3 => Just(FIN | ACK),
        1 => Just(RST),
        1 => Just(RST | ACK),
        1 => Just(ACK | URG),
        1 => Just(SYN | FIN),
    ];
    let delta = prop_oneof![3 => Just(0i32), 2 => -3..3i32, 1 => -70_000..70_000i32];
    (
        any::<bool>(),
        flags,
        delta.clone(),
        delta,
        prop_oneof![Just(0u16), any::<u16>()],
        prop_oneof![Just(0u32), 1..3000u32],
        proptest::option::of(0..16u8),
    )
        .prop_map(|(reply, flags, dseq, dack, win, len, wscale)| Near {
            reply,
            flags,
            dseq,
            dack,
            win,
            len,
            wscale,
        })
}

fn realise(c: &TcpConn, n: &Near) -> (Dir, Segment) {
    let dir = if n.reply { Dir::Reply } else { Dir::Orig };
    let (s, r) = (c.peer[dir.i()], c.peer[1 - dir.i()]);
    let seg = Segment {
        seq: s.end.wrapping_add(n.dseq as u32),
        ack: r.end.wrapping_add(n.dack as u32),
        win: n.win,
        flags: n.flags,
        payload_len: n.len,
        wscale: n.wscale,
        sack_perm: n.wscale.is_some(),
        sack: None,
    };
    (dir, seg)
}

/// What must hold after every segment: Invalid and Reopen change nothing, and the state
/// survives the file.
fn check_step(c: &mut TcpConn, dir: Dir, s: &Segment) -> Result<(), TestCaseError> {
    let before = *c;
    let v = c.update(dir, s);
    if matches!(v, Verdict::Invalid | Verdict::Reopen) {
        prop_assert_eq!(*c, before);
    }
    prop_assert_eq!(TcpConn::decode(&c.encode()), Some(*c));
    let _ = c.timeout_ms(&TcpTimeouts::default());
    Ok(())
}

proptest! {
    #[test]
    fn update_never_panics_on_anything(mut c in any_conn(), segs in prop::collection::vec((any::<bool>(), any_segment()), 1..12)) {
        for (reply, s) in &segs {
            let dir = if *reply { Dir::Reply } else { Dir::Orig };
            check_step(&mut c, dir, s)?;
        }
    }

    #[test]
    fn realistic_walks_round_trip(first in near(), loose in any::<bool>(), walk in prop::collection::vec(near(), 1..40)) {
        let start = TcpConn::new(&syn(C), false).unwrap();
        let (_, s) = realise(&start, &first);
        let mut c = TcpConn::new(&s, loose).unwrap_or(start);
        for n in &walk {
            let (dir, s) = realise(&c, n);
            check_step(&mut c, dir, &s)?;
        }
    }

    #[test]
    fn walks_from_established_round_trip(walk in prop::collection::vec(near(), 1..40)) {
        let mut c = established();
        for n in &walk {
            let (dir, s) = realise(&c, n);
            check_step(&mut c, dir, &s)?;
        }
    }

    #[test]
    fn decode_of_garbage_never_panics(mut w in any::<[u64; 6]>(), tagged in any::<bool>()) {
        if tagged {
            w[5] = (w[5] & !(bits::UNUSED | 0b111 << bits::TAG.0)) | bits::TAG_VALUE << bits::TAG.0;
        }
        if let Some(c) = TcpConn::decode(&w) {
            // Every bit pattern that decodes is the one encoding of its state.
            prop_assert_eq!(c.encode(), w);
        }
    }

    #[test]
    fn any_conn_round_trips(c in any_conn()) {
        prop_assert_eq!(TcpConn::decode(&c.encode()), Some(c));
    }
}
