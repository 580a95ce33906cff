//! How long a TCP connection lives after its last segment, per state.

use super::TcpState;

/// The settable names, in the order of `TcpTimeouts::secs`. They are Linux's sysctls
/// without the `nf_conntrack_tcp_timeout_` prefix (plus `syn_sent2`, which Linux keeps
/// internal).
const NAMES: [&str; 11] = [
    "syn_sent",
    "syn_recv",
    "established",
    "fin_wait",
    "close_wait",
    "last_ack",
    "time_wait",
    "close",
    "syn_sent2",
    "max_retrans",
    "unacknowledged",
];

/// Linux's defaults, in seconds, in the order of [`NAMES`].
const DEFAULTS: [u32; 11] = [120, 60, 5 * 24 * 3600, 120, 60, 30, 120, 10, 120, 300, 300];

const MAX_RETRANS: usize = 9;
const UNACKNOWLEDGED: usize = 10;

/// TCP timeouts in seconds. The defaults are Linux's (`nf_conntrack_tcp_timeout_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpTimeouts {
    secs: [u32; NAMES.len()],
}

impl Default for TcpTimeouts {
    fn default() -> Self {
        TcpTimeouts { secs: DEFAULTS }
    }
}

impl TcpTimeouts {
    /// The names [`set`](Self::set) and [`get`](Self::get) take.
    pub fn names() -> &'static [&'static str] {
        &NAMES
    }

    /// Sets one timeout by name.
    pub fn set(&mut self, name: &str, secs: u32) -> Result<(), String> {
        let i = index(name)
            .ok_or_else(|| format!("unknown TCP timeout {name:?} (known: {})", NAMES.join(", ")))?;
        self.secs[i] = secs;
        Ok(())
    }

    /// One timeout by name; None for a name not in [`names`](Self::names).
    pub fn get(&self, name: &str) -> Option<u32> {
        index(name).map(|i| self.secs[i])
    }

    /// The timeout of a state. NONE is never the state of a stored connection; Linux gives
    /// it SYN_SENT's.
    pub(super) fn state(&self, s: TcpState) -> u32 {
        let i = match s {
            TcpState::None | TcpState::SynSent => 0,
            TcpState::SynRecv => 1,
            TcpState::Established => 2,
            TcpState::FinWait => 3,
            TcpState::CloseWait => 4,
            TcpState::LastAck => 5,
            TcpState::TimeWait => 6,
            TcpState::Close => 7,
            TcpState::SynSent2 => 8,
        };
        self.secs[i]
    }

    /// After `max_retrans` identical segments, or on a zero window.
    pub(super) fn retrans(&self) -> u32 {
        self.secs[MAX_RETRANS]
    }

    /// While data is in flight that the receiver has not acknowledged.
    pub(super) fn unacknowledged(&self) -> u32 {
        self.secs[UNACKNOWLEDGED]
    }
}

fn index(name: &str) -> Option<usize> {
    NAMES.iter().position(|n| *n == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_linux() {
        let t = TcpTimeouts::default();
        let want = [
            ("syn_sent", 120),
            ("syn_recv", 60),
            ("established", 432_000),
            ("fin_wait", 120),
            ("close_wait", 60),
            ("last_ack", 30),
            ("time_wait", 120),
            ("close", 10),
            ("syn_sent2", 120),
            ("max_retrans", 300),
            ("unacknowledged", 300),
        ];
        assert_eq!(TcpTimeouts::names().len(), want.len());
        for (name, secs) in want {
            assert_eq!(t.get(name), Some(secs), "{name}");
        }
        assert_eq!(t.state(TcpState::None), 120);
        assert_eq!(t.retrans(), 300);
        assert_eq!(t.unacknowledged(), 300);
    }

    #[test]
    fn set_by_name() {
        let mut t = TcpTimeouts::default();
        t.set("established", 3600).unwrap();
        t.set("unacknowledged", 7).unwrap();
        assert_eq!(t.state(TcpState::Established), 3600);
        assert_eq!(t.unacknowledged(), 7);
        let e = t.set("establised", 1).unwrap_err();
        assert!(e.contains("establised") && e.contains("established"), "{e}");
        assert_eq!(t.get("nope"), None);
    }
}
