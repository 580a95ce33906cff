//! vswitchd: the switch daemon. One per node.
//!
//! Loads its persisted state, re-attaches every port, reinstalls flows, starts one worker
//! per core and serves the control socket. SIGTERM (or SIGINT, or the `shutdown` call)
//! stops it cleanly; SIGHUP (or `reopen-logs`) reopens the log file.
#![forbid(unsafe_code)]

use clap::{Parser, ValueEnum};
use nix::sys::signal::{SigSet, Signal};
use parking_lot::Mutex;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use vswitch::ctl::{self, Hooks};
use vswitch::daemon::logging::{self, LogTarget};
use vswitch::daemon::{Config, Switch, source_chain};

/// See `vswitch::sys::Allocator`.
#[global_allocator]
static GLOBAL: vswitch::sys::Allocator = vswitch::sys::Allocator {};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// The vswitch daemon: a userspace virtual switch for Kubernetes Pods.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Control socket (mode 0600; vswitchctl --socket).
    #[arg(long, default_value = "/run/vswitch/vswitchd.sock")]
    socket: PathBuf,
    /// Where the desired state (ports, flows, groups) is persisted.
    #[arg(long, default_value = "/var/lib/vswitch")]
    state_dir: PathBuf,
    /// Worker threads (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Log level or filter (`info`, `debug`, `vswitch=debug,warn`).
    #[arg(long, default_value = "info")]
    log_level: String,
    /// Log to this file instead of stderr (reopened on SIGHUP).
    #[arg(long)]
    log_file: Option<PathBuf>,
    /// Microseconds a worker keeps polling after traffic before it sleeps (lower latency
    /// for request/response traffic at a small CPU cost; 0 to always sleep).
    #[arg(long, default_value_t = vswitch::daemon::worker::DEFAULT_BUSY_POLL.as_micros() as u64)]
    busy_poll_us: u64,
    /// Connections the connection tracker's table holds (its file in the socket's
    /// directory is this many times 168 bytes, resident only where used). The table
    /// outlives vswitchd; a restart with another capacity starts with an empty one.
    #[arg(long, default_value_t = vswitch::ct::DEFAULT_CAPACITY,
          value_parser = clap::value_parser!(u32).range(1..=(1 << 30)))]
    ct_capacity: u32,
    /// The node's Pod CIDR (its spec.podCIDR), e.g. 10.244.1.0/24: Pods attached through
    /// vswitch-cni get addresses from it, and the gateway port its first address.
    #[arg(long)]
    pod_cidr: Option<String>,
    /// The cluster's Service CIDR (the API server's --service-cluster-ip-range): routed
    /// from the node to the switch, so the node's own processes reach ClusterIPs.
    #[arg(long, default_value = "10.96.0.0/12")]
    service_cidr: vswitch_proto::net::Ipv4Cidr,
    /// The cluster's Pod network (the controller manager's --cluster-cidr): traffic from
    /// this node's Pods to anywhere outside it, the Service CIDR and --masquerade-exclude
    /// leaves with the node's address (iptables MASQUERADE in the switch's namespace).
    #[arg(long, default_value = "10.244.0.0/16")]
    cluster_cidr: vswitch_proto::net::Ipv4Cidr,
    /// More destinations Pods reach with their own address (repeat for more).
    #[arg(long, value_name = "CIDR")]
    masquerade_exclude: Vec<vswitch_proto::net::Ipv4Cidr>,
    /// No egress masquerade: the switch's rules are removed (Pods keep their addresses
    /// everywhere; the network must route back to them).
    #[arg(long)]
    no_masquerade: bool,
    /// MTU of the Pods' interfaces and of the gateway (default: the underlay interface's
    /// MTU less 50, the VXLAN overhead, with --node-ip; else 1500).
    #[arg(long, value_parser = clap::value_parser!(u32).range(576..=65535))]
    pod_mtu: Option<u32>,
    /// The node's underlay address (its InternalIP): the VXLAN tunnel to the other nodes
    /// is bound to it. Without it the tunnel is as saved by the last start, if any.
    #[arg(long, conflicts_with = "no_tunnel")]
    node_ip: Option<std::net::Ipv4Addr>,
    /// Remove the saved tunnel and run without one (the remote nodes stay recorded).
    #[arg(long)]
    no_tunnel: bool,
    /// Leave receive packet steering of the switch's TAPs as the kernel made it (off). By
    /// default their rps_cpus is set to the CPUs vswitchd may run on, so that a Pod's
    /// receive work (IP, TCP, waking the application) runs beside the worker that writes
    /// its frames rather than inside its system call.
    #[arg(long)]
    no_rps: bool,
    /// This node's name, as in its Node object (default: the host name).
    #[arg(long)]
    node_name: Option<String>,
    /// This node's zone, as its `topology.kubernetes.io/zone` label says: Services whose
    /// endpoints all carry topology hints send this node's connections to the endpoints
    /// hinted for its zone (default: none, hints are not used).
    #[arg(long)]
    node_zone: Option<String>,
    /// Log every new connection a NetworkPolicy refuses to FILE (appended), one a line
    /// with the Pod, the policies that isolate it and the packet's addresses and ports,
    /// as Antrea's audit logging does; at most 100 a second per worker.
    #[arg(long, value_name = "FILE")]
    netpol_audit_log: Option<std::path::PathBuf>,
    /// The VXLAN network identifier of the Pod network (the same on every node).
    #[arg(long, default_value_t = vswitch::daemon::overlay::DEFAULT_VNI, value_parser = clap::value_parser!(u32).range(0..=0xff_ffff))]
    vni: u32,
    /// The VXLAN UDP port (4789, the IANA port; Flannel's and Antrea's default).
    #[arg(long, default_value_t = vswitch::port::vxlan::DEFAULT_PORT, value_parser = clap::value_parser!(u16).range(1..))]
    vxlan_port: u16,
    /// Control connections open at once. Past it, the connection idle longest makes room;
    /// with none idle, a new one is refused with a "busy" error (counted in `show`).
    #[arg(long, default_value_t = ctl::server::Limits::default().max_connections as u32,
          value_parser = clap::value_parser!(u32).range(1..=65536))]
    ctl_max_connections: u32,
    /// Seconds a control connection may stay open with no request running and not a byte
    /// either way.
    #[arg(long, default_value_t = ctl::server::Limits::default().idle_timeout.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=86400))]
    ctl_idle_timeout: u64,
    /// Watch the Kubernetes API server of this kubeconfig (its current context): Nodes,
    /// Namespaces, Services, EndpointSlices, Pods and NetworkPolicies drive the switch as
    /// `vswitchctl apply -f` does. In a Pod (`KUBERNETES_SERVICE_HOST` set and a service
    /// account token mounted) the in-cluster configuration is used without it.
    #[arg(long, value_name = "PATH")]
    kubeconfig: Option<PathBuf>,
    /// Do not watch the Kubernetes API, even in a cluster.
    #[arg(long, conflicts_with = "kubeconfig")]
    no_kube: bool,
    /// The API server's address (`HOST:PORT` or a URL), in place of the kubeconfig's or
    /// the in-cluster `KUBERNETES_SERVICE_HOST`: where this switch replaces kube-proxy,
    /// that is a Service address it can reach only once it has listed the Services, so
    /// a first start needs the API server's own (as Cilium's `k8sServiceHost` and
    /// Antrea's `kubeAPIServerOverride`).
    #[arg(long, value_name = "ADDRESS", conflicts_with = "no_kube")]
    kube_apiserver: Option<String>,
    /// Name of the gateway port (an internal port in this namespace).
    #[arg(long, default_value = vswitch::daemon::DEFAULT_GATEWAY)]
    gateway_name: String,
}

fn fail(msg: String) -> ! {
    eprintln!("vswitchd: {msg}");
    std::process::exit(1);
}

fn error_line(e: &dyn std::error::Error) -> String {
    let causes = source_chain(e);
    if causes.is_empty() {
        e.to_string()
    } else {
        format!("{e}: {causes}")
    }
}

/// The API server to watch, if any: `--kubeconfig`, else the in-cluster configuration in
/// a Pod.
fn kube_source(args: &Args) -> Option<vswitch_watch::Source> {
    if args.no_kube {
        return None;
    }
    if let Some(p) = &args.kubeconfig {
        return Some(vswitch_watch::Source::Kubeconfig(p.clone()));
    }
    let token = std::path::Path::new("/var/run/secrets/kubernetes.io/serviceaccount/token");
    (std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() && token.exists())
        .then_some(vswitch_watch::Source::InCluster)
}

/// This node's Pod CIDR and address from its Node object, for what the flags leave out.
fn from_node(
    conn: &vswitch_watch::Connection,
    name: &str,
    need_cidr: bool,
    restart: bool,
) -> (Option<String>, Option<std::net::Ipv4Addr>) {
    // The Node is read for 15 s at most on a first start, 2 s on a restart (the API
    // server may be down: the saved state's settings serve); a Node that has no Pod CIDR
    // yet (the controller manager assigns it after the kubelet registers the Node) is
    // read again for a minute, as Flannel's and Antrea's agents wait for theirs.
    let wait = Duration::from_secs(if restart { 2 } else { 15 });
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let object = match conn.node(name, wait) {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(node = %name, server = %conn.server, error = %e, "this node's Node object could not be read: its Pod CIDR and address come from the flags or the saved state");
                return (None, None);
            }
        };
        let (cidr, ip) = node_settings(&object);
        if cidr.is_some() || !need_cidr || std::time::Instant::now() >= deadline {
            if cidr.is_none() && need_cidr {
                tracing::warn!(node = %name, "this node's Node has no Pod CIDR (spec.podCIDR): started without one unless saved; Pods cannot attach until vswitchd restarts with it");
            }
            return (cidr, ip);
        }
        tracing::info!(node = %name, "waiting for this node's Node to be given a Pod CIDR (spec.podCIDR)");
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// This node's Pod CIDR and InternalIP, from its Node object.
fn node_settings(object: &serde_json::Value) -> (Option<String>, Option<std::net::Ipv4Addr>) {
    let cidr = object["spec"]["podCIDRs"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(std::iter::once(&object["spec"]["podCIDR"]))
        .filter_map(|c| c.as_str())
        .find(|c| c.parse::<vswitch_proto::net::Ipv4Cidr>().is_ok())
        .map(str::to_string);
    let ip = object["status"]["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["type"] == "InternalIP")
        .filter_map(|a| a["address"].as_str()?.parse().ok())
        .next();
    (cidr, ip)
}

fn main() {
    vswitch::sys::tune_allocator();
    let args = Args::parse();
    // Every thread started from here on inherits this mask; the main thread takes the
    // signals with sigwait.
    let mut signals = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        signals.add(s);
    }
    if let Err(e) = signals.thread_block() {
        fail(format!("cannot block signals: {e}"));
    }
    let target = LogTarget::new(args.log_file.clone()).unwrap_or_else(|e| {
        fail(format!(
            "cannot open log file {}: {e}",
            args.log_file
                .as_deref()
                .unwrap_or_else(|| "".as_ref())
                .display()
        ))
    });
    if let Err(e) = logging::init(
        target.clone(),
        matches!(args.log_format, LogFormat::Json),
        &args.log_level,
    ) {
        fail(e);
    }
    let workers = args.workers.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let node_name = args.node_name.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap_or_default()
            .trim()
            .to_lowercase()
    });
    let source = kube_source(&args);
    if source.is_none() && args.kube_apiserver.is_some() {
        fail("--kube-apiserver: no credentials for it (give --kubeconfig, or run in a Pod with a service account token mounted)".to_string());
    }
    let kube = source.map(|source| {
        vswitch_watch::Connection::new(&source, args.kube_apiserver.as_deref())
            .unwrap_or_else(|e| fail(format!("the Kubernetes API: {e}")))
    });
    let (mut pod_cidr, mut node_ip) = (args.pod_cidr.clone(), args.node_ip);
    if let Some(conn) = &kube
        && (pod_cidr.is_none() || node_ip.is_none() && !args.no_tunnel)
    {
        // A restart has the saved state's settings to fall back on: the API server being
        // down must not hold the datapath back for long then.
        let restart = args.state_dir.join(vswitch::store::STATE_FILE).exists();
        let (cidr, ip) = from_node(conn, &node_name, pod_cidr.is_none() && !restart, restart);
        pod_cidr = pod_cidr.or(cidr);
        if !args.no_tunnel {
            node_ip = node_ip.or(ip);
        }
    }
    let switch = match Switch::start(Config {
        state_dir: args.state_dir.clone(),
        workers,
        bridge: "br0".into(),
        busy_poll: Duration::from_micros(args.busy_poll_us),
        pod_cidr,
        service_cidr: Some(args.service_cidr),
        masquerade: (!args.no_masquerade).then(|| vswitch::daemon::masq::Masquerade {
            cluster_cidr: args.cluster_cidr,
            exclude: args.masquerade_exclude.clone(),
        }),
        masquerade_off: args.no_masquerade,
        pod_mtu: args.pod_mtu,
        gateway: args.gateway_name.clone(),
        node_ip,
        no_tunnel: args.no_tunnel,
        rps: !args.no_rps,
        node_name,
        node_zone: args.node_zone.clone().filter(|z| !z.is_empty()),
        vni: args.vni,
        vxlan_port: args.vxlan_port,
        ct_capacity: args.ct_capacity,
        ct_file: vswitch::ct::file_for(&args.socket),
        netpol_audit_log: args.netpol_audit_log.clone(),
        api_cache: kube.is_some(),
    }) {
        Ok(s) => Arc::new(Mutex::new(s)),
        Err(e) => fail(error_line(&e)),
    };
    let listener = ctl::bind(&args.socket).unwrap_or_else(|e| fail(error_line(&e)));
    let stop = Arc::new(AtomicBool::new(false));
    let me = nix::unistd::getpid();
    let reopen_target = target.clone();
    let hooks = Arc::new(Hooks {
        shutdown: Box::new(move || {
            let _ = nix::sys::signal::kill(me, Signal::SIGTERM);
        }),
        reopen_logs: Box::new(move || reopen_target.reopen()),
        control: Default::default(),
    });
    let limits = ctl::server::Limits {
        max_connections: args.ctl_max_connections as usize,
        idle_timeout: Duration::from_secs(args.ctl_idle_timeout),
        ..Default::default()
    };
    {
        let (sw, hooks, stop) = (switch.clone(), hooks.clone(), stop.clone());
        std::thread::Builder::new()
            .name("vswitch-ctl-accept".into())
            .spawn(move || ctl::server::serve(listener, sw, hooks, stop, limits))
            .unwrap_or_else(|e| fail(format!("cannot start the control thread: {e}")));
    }
    {
        let (sw, stop) = (switch.clone(), stop.clone());
        std::thread::Builder::new()
            .name("vswitch-upkeep".into())
            .spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_secs(1));
                    sw.lock().housekeeping();
                }
            })
            .unwrap_or_else(|e| fail(format!("cannot start the upkeep thread: {e}")));
    }
    if let Some(conn) = kube {
        watch_api(conn, &switch, &stop);
    }
    tracing::info!(socket = %args.socket.display(), state_dir = %args.state_dir.display(), workers, "vswitchd ready");
    loop {
        match signals.wait() {
            Ok(Signal::SIGHUP) => match target.reopen() {
                Ok(()) => tracing::info!("log file reopened"),
                Err(e) => tracing::error!(error = %e, "cannot reopen the log file"),
            },
            Ok(sig) => {
                tracing::info!(signal = %sig, "stopping");
                break;
            }
            Err(e) => fail(format!("sigwait failed: {e}")),
        }
    }
    stop.store(true, Ordering::Release);
    // Wake the accept loop so it sees the stop flag, then remove the socket.
    let _ = std::os::unix::net::UnixStream::connect(&args.socket);
    let _ = std::fs::remove_file(&args.socket);
    switch.lock().shutdown();
    tracing::info!("stopped; ports stay in place for the next start");
}

/// Watch the API server on a thread of its own, and apply what it sends on another, a
/// batch of the updates waiting at a time as one change.
fn watch_api(conn: vswitch_watch::Connection, switch: &Arc<Mutex<Switch>>, stop: &Arc<AtomicBool>) {
    let kinds = vswitch_watch::KINDS.to_vec();
    let names: Vec<&'static str> = kinds.iter().map(|k| k.kind).collect();
    switch.lock().api_watching(conn.server.clone(), &names);
    tracing::info!(server = %conn.server, "watching the Kubernetes API");
    // Bounded: a list of many objects waits for the switch rather than piling up.
    let (tx, rx) = crossbeam_channel::bounded::<vswitch_watch::Update>(4096);
    conn.watch(kinds, stop.clone(), move |u| tx.send(u).is_ok())
        .unwrap_or_else(|e| fail(format!("cannot start the API watcher: {e}")));
    let (sw, stop) = (switch.clone(), stop.clone());
    std::thread::Builder::new()
        .name("vswitch-k8s-apply".into())
        .spawn(move || {
            while !stop.load(Ordering::Acquire) {
                let first = match rx.recv_timeout(Duration::from_millis(200)) {
                    Ok(u) => u,
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => continue,
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
                };
                let mut batch = vec![first];
                batch.extend(rx.try_iter().take(2047));
                // A batch that panics (a bug) is undone by the transaction; the thread
                // goes on with the next rather than leaving the watcher blocked on a full
                // queue while `show` says all is well.
                let mut kinds: Vec<&'static str> =
                    batch.iter().map(vswitch_watch::Update::kind).collect();
                kinds.dedup();
                let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    sw.lock().api_updates(batch)
                }));
                if run.is_err() {
                    tracing::error!(kinds = ?kinds, "a batch of updates from the API failed (a bug: see the panic above); undone");
                    sw.lock().api_batch_lost(&kinds, "a panic");
                }
            }
        })
        .unwrap_or_else(|e| fail(format!("cannot start the API thread: {e}")));
}
