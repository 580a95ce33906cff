//! The TCP state machine (placeholder until the real one lands: flags only, no windows).

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TcpState {
    #[default]
    None,
    SynSent,
    SynRecv,
    Established,
    FinWait,
    CloseWait,
    LastAck,
    TimeWait,
    Close,
    SynSent2,
}

impl TcpState {
    pub fn ovs_name(self) -> &'static str {
        match self {
            TcpState::None | TcpState::Close => "CLOSED",
            TcpState::SynSent | TcpState::SynSent2 => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::Established => "ESTABLISHED",
            TcpState::FinWait => "FIN_WAIT_1",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::TimeWait => "TIME_WAIT",
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Segment {
    pub seq: u32,
    pub ack: u32,
    pub win: u16,
    pub flags: u16,
    pub payload_len: u32,
    pub wscale: Option<u8>,
    pub sack_perm: bool,
}

impl Segment {
    pub fn parse(tcp: &[u8], payload_len: u32) -> Option<Segment> {
        if tcp.len() < 20 || ((tcp[12] >> 4) as usize) < 5 {
            return None;
        }
        Some(Segment {
            seq: u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
            ack: u32::from_be_bytes([tcp[8], tcp[9], tcp[10], tcp[11]]),
            win: u16::from_be_bytes([tcp[14], tcp[15]]),
            flags: u16::from_be_bytes([tcp[12], tcp[13]]) & 0xfff,
            payload_len,
            wscale: None,
            sack_perm: false,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    Orig,
    Reply,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Invalid,
    Reopen,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpConn {
    state: TcpState,
    replied: bool,
}

const SYN: u16 = 2;
const RST: u16 = 4;
const FIN: u16 = 1;
const ACK: u16 = 0x10;

impl TcpConn {
    pub const WORDS: usize = 1;
    pub fn new(seg: &Segment, loose: bool) -> Option<TcpConn> {
        let f = seg.flags;
        if f & RST != 0 || f & (SYN | FIN) == SYN | FIN {
            return None;
        }
        if f & SYN != 0 && f & ACK == 0 {
            return Some(TcpConn {
                state: TcpState::SynSent,
                replied: false,
            });
        }
        (loose && f & ACK != 0).then_some(TcpConn {
            state: TcpState::Established,
            replied: false,
        })
    }
    pub fn update(&mut self, dir: Dir, seg: &Segment) -> Verdict {
        let f = seg.flags;
        if dir == Dir::Orig
            && f & SYN != 0
            && matches!(self.state, TcpState::TimeWait | TcpState::Close)
        {
            return Verdict::Reopen;
        }
        if dir == Dir::Reply {
            self.replied = true;
        }
        self.state = if f & RST != 0 {
            TcpState::Close
        } else if f & FIN != 0 {
            match self.state {
                TcpState::FinWait | TcpState::CloseWait | TcpState::LastAck => TcpState::LastAck,
                _ => TcpState::FinWait,
            }
        } else if self.state == TcpState::LastAck && f & ACK != 0 {
            TcpState::TimeWait
        } else if self.state == TcpState::SynSent && dir == Dir::Reply {
            TcpState::SynRecv
        } else if self.state == TcpState::SynRecv && dir == Dir::Orig {
            TcpState::Established
        } else {
            self.state
        };
        Verdict::Accept
    }
    pub fn state(&self) -> TcpState {
        self.state
    }
    pub fn replied(&self) -> bool {
        self.replied
    }
    pub fn assured(&self) -> bool {
        self.replied && self.state == TcpState::Established
    }
    pub fn timeout_ms(&self, t: &TcpTimeouts) -> u64 {
        let s = match self.state {
            TcpState::Established => t.established,
            TcpState::TimeWait => t.time_wait,
            TcpState::Close => t.close,
            _ => t.syn_sent,
        };
        s as u64 * 1000
    }
    pub fn encode(&self) -> [u64; Self::WORDS] {
        [self.state as u64 | (self.replied as u64) << 8]
    }
    pub fn decode(w: &[u64; Self::WORDS]) -> Option<TcpConn> {
        use TcpState::*;
        let state = [
            None,
            SynSent,
            SynRecv,
            Established,
            FinWait,
            CloseWait,
            LastAck,
            TimeWait,
            Close,
            SynSent2,
        ]
        .get((w[0] & 0xff) as usize)
        .copied()?;
        Some(TcpConn {
            state,
            replied: w[0] & 0x100 != 0,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpTimeouts {
    pub syn_sent: u32,
    pub established: u32,
    pub time_wait: u32,
    pub close: u32,
}

impl Default for TcpTimeouts {
    fn default() -> Self {
        TcpTimeouts {
            syn_sent: 120,
            established: 432000,
            time_wait: 120,
            close: 10,
        }
    }
}

impl TcpTimeouts {
    pub fn names() -> &'static [&'static str] {
        &["syn_sent", "established", "time_wait", "close"]
    }
    pub fn get(&self, name: &str) -> Option<u32> {
        Some(match name {
            "syn_sent" => self.syn_sent,
            "established" => self.established,
            "time_wait" => self.time_wait,
            "close" => self.close,
            _ => return None,
        })
    }
    pub fn set(&mut self, name: &str, secs: u32) -> Result<(), String> {
        *match name {
            "syn_sent" => &mut self.syn_sent,
            "established" => &mut self.established,
            "time_wait" => &mut self.time_wait,
            "close" => &mut self.close,
            _ => return Err(format!("no TCP timeout named {name}")),
        } = secs;
        Ok(())
    }
}
