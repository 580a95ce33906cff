//! The command line: clap definitions, and the checks that need no daemon.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use clap_complete::Shell;
use vswitch_proto::k8s;
use vswitch_proto::net::{IfAddr, MacAddr};
use vswitch_proto::rpc::PortType;

/// Where vswitchd listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/vswitch/vswitchd.sock";

#[derive(Debug, Parser)]
#[command(
    name = "vswitchctl",
    version,
    about = "Program and inspect a running vswitchd: ports, flows, groups, nodes, Kubernetes \
             manifests, traces, caches, connection tracking",
    after_help = "Exit status: 0 done, 1 the switch refused (or answered something unreadable, \
                  or refused an object of a manifest, or a manifest did not load), 2 usage \
                  error, 3 the switch is not reachable."
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
        /// Name the objects a switch-made flow is for, after its cookie: `cookie=0x3...
        /// (node/n1), ...` (such lines cannot be fed back to add-flow).
        #[arg(long)]
        names: bool,
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
    DumpGroups {
        /// Name the objects a switch-made group is for, after its id: `group_id=1
        /// (service/default/web),type=select,...`.
        #[arg(long)]
        names: bool,
    },
    /// Print each group's packet and byte counters, and each bucket's, one group a line.
    DumpGroupStats,
    /// Add one meter, e.g. 'meter=1,kbps,burst,bands=type=drop,rate=1000,burst_size=100'.
    AddMeter { meter: String },
    /// Delete one meter (and the flows that use it), or every meter when none is given.
    DelMeters {
        #[arg(value_name = "METER_ID|meter=N", value_parser = parse_meter_id)]
        meter_id: Option<u32>,
    },
    /// Print the meters as ovs-ofctl dump-meters does (bands on the lines after).
    DumpMeters {
        #[arg(value_name = "METER_ID|meter=N", value_parser = parse_meter_id)]
        meter_id: Option<u32>,
    },
    /// Print each meter's counters and what each band dropped, as ovs-ofctl meter-stats.
    MeterStats {
        #[arg(value_name = "METER_ID|meter=N", value_parser = parse_meter_id)]
        meter_id: Option<u32>,
    },
    /// Trace a packet, written as flow text, through the tables.
    ///
    /// After a `ct(...,table=N)` the trace goes on in table N, as the packet would come
    /// back from conntrack, with the next --ct-next state (default trk,new).
    Trace {
        /// e.g. 'in_port=1,tcp,nw_src=10.244.1.2,nw_dst=10.244.1.3,tp_dst=80'.
        flow: String,
        /// The ct_state of the next recirculation after conntrack, e.g. trk,est or
        /// +trk+est; once per recirculation, in order.
        #[arg(long = "ct-next", value_name = "STATE", action = clap::ArgAction::Append)]
        ct_next: Vec<String>,
    },
    /// Each worker's exact-match cache and megaflows.
    DumpCache,
    /// Whether NetworkPolicy lets a new connection from FROM to TO through, from the
    /// installed flows: `allow` or `deny` first, then the policies and rules that
    /// decided each half (egress at FROM, ingress at TO; a half on another node is
    /// decided there).
    PolicyCheck {
        /// `namespace/pod`, a Pod of `default`, or an IPv4 address.
        from: String,
        /// `namespace/pod`, a Pod of `default`, or an IPv4 address (a Service's too).
        to: String,
        /// tcp, udp or sctp.
        protocol: String,
        /// The destination port.
        port: u16,
    },
    /// Add a remote node: its Pod CIDR is reached through a VXLAN tunnel to its IP.
    AddNode(AddNodeArgs),
    /// Remove a node.
    DelNode {
        #[arg(value_parser = parse_node_name)]
        name: String,
    },
    /// The nodes the switch knows, this one first.
    ListNodes,
    /// Create or update the Kubernetes objects of manifests, like `kubectl apply -f`.
    ///
    /// Files are YAML (documents separated by ---) or JSON; a List is taken item by item.
    /// Nodes are handled; other kinds are reported as skipped. An object the switch refuses
    /// is reported on stderr and the exit status is 1; the others are still applied.
    Apply(ManifestArgs),
    /// Remove the Kubernetes objects of manifests, like `kubectl delete -f`.
    Delete(ManifestArgs),
    /// List the Kubernetes objects the switch holds, as `kubectl get` does.
    ///
    /// e.g. `get nodes`, `get node worker-2 -o yaml`, `get endpointslices -A`. RESOURCE is
    /// passed to the switch as written (plural, singular, short name, `kind.group`); the
    /// switch knows which kinds it holds.
    Get(GetArgs),
    /// Print the tracked connections, one a line, as `ovs-appctl dpctl/dump-conntrack`.
    DumpConntrack {
        /// Only the connections of this zone (also written zone=N, as dpctl does).
        #[arg(long, value_name = "N")]
        zone: Option<String>,
        /// With each connection's timeout (seconds left), as dpctl's -s.
        #[arg(short = 's', long)]
        stats: bool,
        #[arg(value_name = "zone=N")]
        zone_arg: Option<String>,
    },
    /// Remove tracked connections: all, those of a zone, or those matching a tuple.
    ///
    /// TUPLE is Open vSwitch's: ct_nw_src=IP,ct_nw_dst=IP (or ct_ipv6_src/dst),
    /// ct_nw_proto=N,ct_tp_src=N,ct_tp_dst=N (icmp_id, icmp_type, icmp_code for ICMP),
    /// any subset; a second tuple matches the reply direction. Prints how many went.
    FlushConntrack {
        /// Only connections of this zone (also written zone=N before the tuple).
        #[arg(long, value_name = "N")]
        zone: Option<String>,
        #[arg(value_name = "[zone=N] [TUPLE] [REPLY-TUPLE]")]
        args: Vec<String>,
    },
    /// Set connection limits per zone: default=N for zones without their own (0: none),
    /// zone=Z,limit=N for one zone.
    CtSetLimits {
        #[arg(value_name = "default=N|zone=Z,limit=N", required = true)]
        limits: Vec<String>,
    },
    /// Print the default zone limit and the zones' limits and connection counts (these
    /// zones, or every zone with its own limit).
    CtGetLimits {
        #[arg(value_name = "zone=Z1[,Z2]...")]
        zones: Vec<String>,
    },
    /// Remove zones' own limits (they fall back to the default).
    CtDelLimits {
        #[arg(value_name = "zone=Z1[,Z2]...", required = true)]
        zones: Vec<String>,
    },
    /// Set the limit on connections in the whole table (at most its capacity,
    /// vswitchd --ct-capacity).
    CtSetMaxconns {
        #[arg(value_name = "N")]
        maxconns: String,
    },
    /// Print the limit on connections in the whole table.
    CtGetMaxconns,
    /// Print how many connections are tracked.
    CtGetNconns,
    /// Print the connection-tracking timeouts, NAME=SECONDS, one a line.
    CtGetTimeouts,
    /// Change connection-tracking timeouts, e.g. tcp_established=3600 udp=60.
    CtSetTimeouts {
        #[arg(value_name = "NAME=SECONDS", required = true)]
        timeouts: Vec<String>,
    },
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

#[derive(Debug, Args)]
pub struct AddNodeArgs {
    /// The node's name, as Kubernetes names it (e.g. worker-2).
    #[arg(value_parser = parse_node_name)]
    pub name: String,
    /// The node's Pod CIDR, IPv4, e.g. 10.244.2.0/24.
    #[arg(long, value_name = "CIDR", value_parser = parse_pod_cidr)]
    pub pod_cidr: String,
    /// The node's underlay (InternalIP) address, where its tunnel ends.
    #[arg(long, value_name = "IP", value_parser = parse_node_ip)]
    pub node_ip: String,
}

#[derive(Debug, Args)]
pub struct ManifestArgs {
    /// A manifest, YAML or JSON, or a directory of them (its .yaml, .yml and .json
    /// files); - reads stdin. May be given several times.
    #[arg(
        short = 'f',
        long = "filename",
        value_name = "FILE|-",
        required = true,
        action = clap::ArgAction::Append
    )]
    pub files: Vec<String>,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// The kind of object: nodes, node, no, endpointslices.discovery.k8s.io...
    #[arg(value_parser = parse_resource)]
    pub resource: String,
    /// Only the object of this name.
    pub name: Option<String>,
    /// wide: every column; json, yaml: the objects; name: kind/name, one a line.
    #[arg(short = 'o', long, value_name = "FORMAT", value_enum)]
    pub output: Option<GetFormat>,
    /// For a namespaced kind: the objects of this namespace (default: default).
    #[arg(
        short = 'n',
        long,
        value_name = "NAMESPACE",
        conflicts_with = "all_namespaces"
    )]
    pub namespace: Option<String>,
    /// For a namespaced kind: the objects of every namespace.
    #[arg(short = 'A', long, conflicts_with = "name")]
    pub all_namespaces: bool,
}

/// `get -o`: what kubectl's `--output` takes, less its templates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GetFormat {
    Wide,
    Json,
    Yaml,
    Name,
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

fn parse_resource(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        return Err("a resource type cannot be empty".into());
    }
    Ok(s.to_string())
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

/// The switch's own parsers (`vswitch_proto::net`), so the client refuses what the
/// switch would, with the same words.
fn parse_mac(s: &str) -> Result<String, String> {
    s.parse::<MacAddr>()
        .map(|m| m.to_string())
        .map_err(|e| e.to_string())
}

fn parse_ip(s: &str) -> Result<String, String> {
    s.parse::<IpAddr>()
        .map(|_| s.to_string())
        .map_err(|_| format!("`{s}` is not an IP address"))
}

fn parse_cidr(s: &str) -> Result<String, String> {
    s.parse::<IfAddr>()
        .map(|a| a.to_string())
        .map_err(|e| e.to_string())
}

fn parse_node_name(s: &str) -> Result<String, String> {
    k8s::check_node_name(s).map(|()| s.to_string())
}

fn parse_pod_cidr(s: &str) -> Result<String, String> {
    k8s::parse_pod_cidr(s).map(|_| s.to_string())
}

fn parse_node_ip(s: &str) -> Result<String, String> {
    k8s::parse_node_ip(s).map(|ip| ip.to_string())
}

/// `5` or `meter=5`, as ovs-ofctl del-meters takes it.
fn parse_meter_id(s: &str) -> Result<u32, String> {
    let n = s.strip_prefix("meter=").unwrap_or(s);
    let parsed = match n.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => n.parse(),
    };
    parsed.map_err(|_| format!("`{s}` is not a meter id (N or meter=N)"))
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

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        Cli::try_parse_from(std::iter::once("vswitchctl").chain(args.iter().copied()))
            .map(|c| c.command)
    }

    #[test]
    fn node_commands_parse() {
        match parse(&[
            "add-node",
            "worker-2",
            "--pod-cidr",
            "10.244.2.0/24",
            "--node-ip",
            "192.168.56.12",
        ]) {
            Ok(Command::AddNode(a)) => {
                assert_eq!(
                    (a.name.as_str(), a.pod_cidr.as_str(), a.node_ip.as_str()),
                    ("worker-2", "10.244.2.0/24", "192.168.56.12")
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&["del-node", "worker-2"]),
            Ok(Command::DelNode { name }) if name == "worker-2"
        ));
        assert!(matches!(parse(&["list-nodes"]), Ok(Command::ListNodes)));
        for resource in ["nodes", "node", "no", "endpointslices.discovery.k8s.io"] {
            assert!(matches!(
                parse(&["get", resource]),
                Ok(Command::Get(GetArgs { resource: r, name: None, output: None,
                                          namespace: None, all_namespaces: false }))
                    if r == resource
            ));
        }
        for bad in [
            &["add-node", "worker-2", "--pod-cidr", "10.244.2.0/24"][..],
            &[
                "add-node",
                "Worker_2",
                "--pod-cidr",
                "10.244.2.0/24",
                "--node-ip",
                "10.0.0.2",
            ],
            &[
                "add-node",
                "w",
                "--pod-cidr",
                "10.244.2.1/24",
                "--node-ip",
                "10.0.0.2",
            ],
            &[
                "add-node",
                "w",
                "--pod-cidr",
                "10.244.2.0/31",
                "--node-ip",
                "10.0.0.2",
            ],
            &[
                "add-node",
                "w",
                "--pod-cidr",
                "fd00::/64",
                "--node-ip",
                "10.0.0.2",
            ],
            &[
                "add-node",
                "w",
                "--pod-cidr",
                "10.244.2.0/24",
                "--node-ip",
                "fd00::2",
            ],
            &[
                "add-node",
                "w",
                "--pod-cidr",
                "10.244.2.0/24",
                "--node-ip",
                "0.0.0.0",
            ],
            &["del-node"],
            &["get"],
            &["get", ""],
            &["get", "pods", "-o", "wider"],
            &["get", "pods", "-A", "web"],
            &["get", "pods", "-A", "-n", "kube-system"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn get_takes_kubectl_options() {
        match parse(&["get", "pod", "web", "-o", "yaml", "-n", "kube-system"]) {
            Ok(Command::Get(a)) => {
                assert_eq!(
                    (a.resource.as_str(), a.name.as_deref(), a.output),
                    ("pod", Some("web"), Some(GetFormat::Yaml))
                );
                assert_eq!(
                    (a.namespace.as_deref(), a.all_namespaces),
                    (Some("kube-system"), false)
                );
            }
            other => panic!("{other:?}"),
        }
        match parse(&["get", "pods", "-A", "-owide"]) {
            Ok(Command::Get(a)) => {
                assert_eq!((a.output, a.all_namespaces), (Some(GetFormat::Wide), true));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&["get", "pods", "--all-namespaces", "--output=name"]),
            Ok(Command::Get(GetArgs {
                all_namespaces: true,
                output: Some(GetFormat::Name),
                ..
            }))
        ));
    }

    #[test]
    fn manifest_commands_parse() {
        match parse(&["apply", "-f", "a.yaml", "--filename", "-", "-f", "dir/"]) {
            Ok(Command::Apply(a)) => assert_eq!(a.files, ["a.yaml", "-", "dir/"]),
            other => panic!("{other:?}"),
        }
        match parse(&["--json", "delete", "-f=nodes.json"]) {
            Ok(Command::Delete(a)) => assert_eq!(a.files, ["nodes.json"]),
            other => panic!("{other:?}"),
        }
        assert!(parse(&["apply"]).is_err());
        assert!(parse(&["delete", "nodes.yaml"]).is_err());
    }
}
