//! The command line: clap definitions, and the checks that need no daemon.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use clap_complete::Shell;
use vswitch_proto::rpc::PortType;

/// Where vswitchd listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/vswitch/vswitchd.sock";

#[derive(Debug, Parser)]
#[command(
    name = "vswitchctl",
    version,
    about = "Program and inspect a running vswitchd: ports, flows, groups, traces, caches",
    after_help = "Exit status: 0 done, 1 the switch refused (or answered something unreadable), \
                  2 usage error, 3 the switch is not reachable."
)]
pub struct Cli {
    /// vswitchd's control socket.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        value_name = "PATH",
        env = "VSWITCH_SOCKET",
        default_value = DEFAULT_SOCKET
    )]
    pub socket: PathBuf,

    /// Print the daemon's result as JSON instead of text.
    #[arg(long, global = true, help_heading = "Global options")]
    pub json: bool,

    /// Give up connecting, sending or waiting for the reply after this long (0: wait forever).
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        value_name = "SECONDS",
        default_value = "30",
        value_parser = parse_timeout
    )]
    pub timeout: Timeout,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Bridge, ports, flow and group counts, datapath counters.
    Show,
    /// This client's version and the daemon's (version, protocol).
    Version,
    /// Add a port to the switch.
    AddPort(AddPortArgs),
    /// Remove a port.
    DelPort {
        #[arg(value_parser = parse_name)]
        name: String,
    },
    /// Ports and their configuration.
    ListPorts,
    /// Port counters.
    DumpPorts,
    /// Pods attached through CNI: container, Pod, interface, address, port, state.
    ListPods,
    /// Add one flow (ovs-ofctl syntax), e.g. 'table=0,priority=10,ip,actions=drop'.
    AddFlow { flow: String },
    /// Add the flows of FILE (or stdin when FILE is -), one a line, all or nothing.
    ///
    /// Blank lines and lines starting with # are skipped.
    AddFlows {
        #[arg(value_name = "FILE|-")]
        file: String,
    },
    /// Change the actions of the flows that match FLOW.
    ModFlows {
        /// Match priority and the match exactly, instead of every flow the match covers.
        #[arg(long)]
        strict: bool,
        flow: String,
    },
    /// Delete the flows that match MATCH, or every flow when none is given.
    DelFlows {
        /// Match priority and the match exactly, instead of every flow the match covers.
        #[arg(long)]
        strict: bool,
        #[arg(value_name = "MATCH")]
        criteria: Option<String>,
    },
    /// Print the flows that match MATCH (all when none is given), one a line.
    DumpFlows {
        /// Match priority and the match exactly, instead of every flow the match covers.
        #[arg(long)]
        strict: bool,
        #[arg(value_name = "MATCH")]
        criteria: Option<String>,
    },
    /// Add one group, e.g. 'group_id=1,type=select,bucket=output:1,bucket=output:2'.
    AddGroup { group: String },
    /// Replace an existing group's type and buckets, e.g. 'group_id=1,type=all,bucket=output:3'.
    ModGroup { group: String },
    /// Delete one group, or every group when none is given.
    DelGroups {
        #[arg(value_name = "GROUP_ID|group_id=N", value_parser = parse_group_id)]
        group_id: Option<u32>,
    },
    /// Print the groups, one a line.
    DumpGroups,
    /// Trace a packet, written as flow text, through the tables.
    Trace {
        /// e.g. 'in_port=1,tcp,nw_src=10.244.1.2,nw_dst=10.244.1.3,tp_dst=80'.
        flow: String,
    },
    /// Each worker's exact-match cache and megaflows.
    DumpCache,
    /// Make vswitchd reopen its log files (after rotation).
    ReopenLogs,
    /// Print a shell completion script to stdout.
    Completion { shell: Shell },
}

#[derive(Debug, Args)]
pub struct AddPortArgs {
    /// The port's name in the switch (and its TAP's name, unless --ifname says otherwise).
    #[arg(value_parser = parse_name)]
    pub name: String,
    /// tap: a TAP device (in a namespace with --netns); internal: a host TAP with an
    /// address (the gateway); memory: an in-memory port.
    #[arg(long = "type", value_name = "TYPE", value_enum)]
    pub port_type: PortTypeArg,
    /// Create the TAP in this network namespace (/var/run/netns/NAME or /proc/PID/ns/net).
    #[arg(long, value_name = "PATH")]
    pub netns: Option<String>,
    /// The TAP's name inside the namespace (default: NAME).
    #[arg(long, value_name = "IF", value_parser = parse_ifname)]
    pub ifname: Option<String>,
    /// The interface's MAC address, aa:bb:cc:dd:ee:ff (default: random, locally administered).
    #[arg(long, value_name = "MAC", value_parser = parse_mac)]
    pub mac: Option<String>,
    /// The interface's MTU, 68 to 65535 (default: the switch's).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(68..=65535))]
    pub mtu: Option<u32>,
    /// An address with its prefix length, set on the interface, e.g. 10.244.1.2/24.
    #[arg(long, value_name = "CIDR", value_parser = parse_cidr)]
    pub ip: Option<String>,
    /// A default route via this address, in the interface's namespace.
    #[arg(long, value_name = "IP", value_parser = parse_ip)]
    pub gateway: Option<String>,
}

/// `--type`: [`PortType`] with what clap needs to list and complete it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PortTypeArg {
    Tap,
    Internal,
    Memory,
}

impl From<PortTypeArg> for PortType {
    fn from(t: PortTypeArg) -> PortType {
        match t {
            PortTypeArg::Tap => PortType::Tap,
            PortTypeArg::Internal => PortType::Internal,
            PortTypeArg::Memory => PortType::Memory,
        }
    }
}

/// `--timeout`: `None` waits forever (`--timeout 0`, as in ovs-vsctl).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timeout(pub Option<Duration>);

fn parse_timeout(s: &str) -> Result<Timeout, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("`{s}` is not a number of seconds"));
    }
    if secs == 0.0 {
        return Ok(Timeout(None));
    }
    Duration::try_from_secs_f64(secs)
        .map(|d| Timeout(Some(d)))
        .map_err(|e| e.to_string())
}

fn parse_name(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        return Err("a port name cannot be empty".into());
    }
    Ok(s.to_string())
}

/// Linux interface names: 1..=15 bytes (IFNAMSIZ less the NUL), no '/' or white space.
fn parse_ifname(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 15 {
        return Err(format!(
            "`{s}` is not an interface name: it must be 1 to 15 bytes long"
        ));
    }
    if s == "." || s == ".." || s.contains(|c: char| c == '/' || c == ':' || c.is_whitespace()) {
        return Err(format!(
            "`{s}` is not an interface name: no '/', ':' or white space"
        ));
    }
    Ok(s.to_string())
}

fn parse_mac(s: &str) -> Result<String, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let ok = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()));
    if !ok {
        return Err(format!("`{s}` is not a MAC address like 0a:00:00:00:00:01"));
    }
    Ok(s.to_ascii_lowercase())
}

fn parse_ip(s: &str) -> Result<String, String> {
    s.parse::<IpAddr>()
        .map(|_| s.to_string())
        .map_err(|_| format!("`{s}` is not an IP address"))
}

fn parse_cidr(s: &str) -> Result<String, String> {
    let bad = || format!("`{s}` is not an address with a prefix length like 10.244.1.2/24");
    let (addr, len) = s.split_once('/').ok_or_else(bad)?;
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    let len: u8 = len.parse().map_err(|_| bad())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if len > max {
        return Err(bad());
    }
    Ok(s.to_string())
}

/// `5` or `group_id=5`, as ovs-ofctl del-groups takes it.
fn parse_group_id(s: &str) -> Result<u32, String> {
    let n = s.strip_prefix("group_id=").unwrap_or(s);
    let parsed = match n.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => n.parse(),
    };
    parsed.map_err(|_| format!("`{s}` is not a group id (N or group_id=N)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn local_checks() {
        assert_eq!(parse_group_id("group_id=7"), Ok(7));
        assert_eq!(parse_group_id("0x10"), Ok(16));
        assert!(parse_group_id("group_id=x").is_err());
        assert_eq!(parse_mac("0A:00:00:00:00:01").unwrap(), "0a:00:00:00:00:01");
        assert!(parse_mac("0a:00:00:00:00").is_err());
        assert!(parse_cidr("10.0.0.1/24").is_ok());
        assert!(parse_cidr("fd00::1/64").is_ok());
        assert!(parse_cidr("10.0.0.1/33").is_err());
        assert!(parse_cidr("10.0.0.1").is_err());
        assert!(parse_ifname("eth0").is_ok());
        assert!(parse_ifname("a-very-long-interface").is_err());
        assert_eq!(parse_timeout("0"), Ok(Timeout(None)));
        assert_eq!(
            parse_timeout("1.5"),
            Ok(Timeout(Some(Duration::from_millis(1500))))
        );
        assert!(parse_timeout("-1").is_err());
        assert!(parse_timeout("soon").is_err());
    }
}
