//! Why a command failed, and the exit status each reason maps to.

use std::fmt;

/// A failed command. `Display` gives the message after `vswitchctl: `.
#[derive(Debug)]
pub enum Failure {
    /// The switch refused the request (or this user, or had no room for the connection);
    /// the daemon's own message, possibly several lines (a flow line with a caret under
    /// the error).
    Refused(String),
    /// The daemon answered something that is not a JSON-RPC reply to our request.
    Unreadable(String),
    /// Nothing answered: the socket is missing, refused, forbidden, timed out or closed.
    Unreachable(String),
    /// The command line is wrong in a way clap cannot see (an unreadable flow file).
    Usage(String),
    /// An input file is not what the command takes (a manifest that does not load);
    /// nothing was sent.
    Invalid(String),
    /// The switch refused some of the objects of a manifest, or `get` found nothing by that
    /// name: these lines (each ending in a newline, in kubectl's `error: ...` or `Error
    /// from server (NotFound): ...` form) say which and why, and are printed as they are,
    /// after what succeeded.
    Reported(String),
}

impl Failure {
    pub fn exit_code(&self) -> i32 {
        match self {
            Failure::Refused(_)
            | Failure::Unreadable(_)
            | Failure::Invalid(_)
            | Failure::Reported(_) => 1,
            Failure::Usage(_) => 2,
            Failure::Unreachable(_) => 3,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Refused(m)
            | Failure::Unreachable(m)
            | Failure::Usage(m)
            | Failure::Invalid(m)
            | Failure::Reported(m) => f.write_str(m),
            Failure::Unreadable(m) => write!(f, "vswitchd answered something unreadable: {m}"),
        }
    }
}
