#!/usr/bin/env bash
# bench.sh - end-to-end benchmark: two Pods through this repository's switch, the Linux
# kernel and Open vSwitch userspace, on one node and across two nodes.
#
# Run as root from anywhere:   sudo bash benches/e2e/bench.sh
# Only the cross-node part:    sudo CONFIGS="vswitchd-2node kernel-vxlan-2node ovs-vxlan-2node" bash benches/e2e/bench.sh
# Connection tracking:         sudo CONFIGS="vswitchd vswitchd-ct kernel-bridge kernel-bridge-ct ovs-tap-tso ovs-tap-tso-ct" ZL_CONFIGS="" bash benches/e2e/bench.sh
# Services (ClusterIP):        sudo CONFIGS="vswitchd vswitchd-svc kernel-bridge kernel-bridge-svc" ZL_CONFIGS="" IPERF_REPS=0 REPS=5 bash benches/e2e/bench.sh
# NetworkPolicy:               sudo CONFIGS="vswitchd vswitchd-k8s vswitchd-np" ZL_CONFIGS="" CONN_SECS=0 RR_SECS=0 REPS=5 bash benches/e2e/bench.sh
#
# Same node: pod A 10.244.1.2/24, pod B 10.244.1.3/24, pod MTU 1500, every Pod and the node
# a network namespace of its own, through:
#   vswitchd        this repository's switch (release build), started in the node
#                   namespace with a private socket and state dir; TAP ports added with
#                   `vswitchctl add-port --type tap --netns ...`, flow `actions=normal`
#   kernel-bridge   Linux bridge in the node namespace, veth pairs to the Pods
#   ovs-tap-tso     Open vSwitch userspace datapath (datapath_type=netdev), type=tap
#                   ports moved into the Pods, other_config:userspace-tso-enable=true
#   ovs-tap         the same without userspace TSO
# and, with connection tracking (not in the default list), the same three with the Open
# vSwitch conntrack tutorial's stateful pass-through instead of a plain `normal`:
#   vswitchd-ct     as vswitchd, flows (CT_FLOWS): priority=0 normal; priority=10 arp
#                   normal; priority=10,ip,ct_state=-trk -> ct(table=1); table 1:
#                   +trk+new -> ct(commit),normal, +trk+est -> normal, priority 0 drop.
#                   The entry count (`vswitchctl dump-conntrack`) goes to the raw results.
#   ovs-tap-tso-ct  as ovs-tap-tso with the same flows (userspace conntrack); entry count
#                   from `ovs-appctl dpctl/dump-conntrack`
#   kernel-bridge-ct  as kernel-bridge, with br_netfilter (net.bridge.bridge-nf-call-iptables=1
#                   set in the node namespace: the sysctl is per namespace since Linux 5.3;
#                   when it is not, the global value is restored on exit) and in the node
#                   namespace's FORWARD chain `-m conntrack --ctstate ESTABLISHED,RELATED -j
#                   ACCEPT`, `--ctstate NEW -j ACCEPT`, `-j DROP`; entry count from the node
#                   namespace's /proc/net/nf_conntrack
# and, with a ClusterIP Service (not in the default list): the same two Pods, pod B the
# Service's one endpoint, pod A reaching it on SVC_IP (10.96.0.10) as well as directly:
#   vswitchd-svc    vswitchd with the Kubernetes pipeline (--pod-cidr 10.244.1.0/24
#                   --node-name node-1: gateway port vsw-gw0 = 10.244.1.1, the Pods added
#                   by hand with --gateway 10.244.1.1, so they are Pods of the pipeline),
#                   then `vswitchctl apply -f` of a List: Service bench/bench-web (ports
#                   80 -> 9100 for connrate, 8080 -> 9200 for tcprr) with its EndpointSlice
#                   (pod B, ready, node-1), and SVC_DUMMIES other Services (3 endpoints
#                   each, addresses in 10.245.0.0/16 that no Pod has)
#   kernel-bridge-svc  the Linux bridge of kernel-bridge-ct (br_netfilter, per namespace)
#                   as kubenet / the bridge CNI plugin make it: br0 holds the gateway
#                   10.244.1.1/24, the Pods route through it, ip_forward=1 in the node
#                   namespace; and there the rules kube-proxy's iptables mode writes for the
#                   same objects (iptables-restore; this box's iptables is the nf_tables
#                   flavour): nat PREROUTING/OUTPUT -> KUBE-SERVICES, one rule per Service
#                   port (`-d VIP/32 -p tcp --dport P -j KUBE-SVC-...`, the real Service's
#                   two in the middle of the dummies', then the KUBE-NODEPORTS addrtype
#                   rule), KUBE-SVC-... (`! -s 10.244.0.0/16` -> KUBE-MARK-MASQ, then one
#                   `-m statistic --mode random --probability 1/k` jump per endpoint but the
#                   last), KUBE-SEP-... (`-s EP/32` -> KUBE-MARK-MASQ for hairpin, DNAT
#                   --to-destination EP:PORT), KUBE-MARK-MASQ (mark 0x4000),
#                   KUBE-POSTROUTING (MASQUERADE --random-fully what carries the mark);
#                   filter FORWARD -> KUBE-PROXY-FIREWALL, KUBE-FORWARD (INVALID drop, mark
#                   accept, RELATED,ESTABLISHED accept), KUBE-SERVICES, KUBE-EXTERNAL-SERVICES;
#                   INPUT and OUTPUT as kube-proxy hooks them. The reply from pod B to pod A
#                   is bridged, so br_netfilter is what translates it back (as with kube-proxy
#                   on a bridge).
#                   Both -svc configs check a connection through the ClusterIP at set-up.
# and, with NetworkPolicy (not in the default list): the same two Pods as Pods of the
# Kubernetes pipeline, known by Pod objects:
#   vswitchd-k8s    vswitchd with the pipeline as in vswitchd-svc (the Pods added by hand
#                   with --gateway), then `vswitchctl apply -f` of a List: Namespaces bench
#                   and ns-0..ns-9, Pod objects for pod A and pod B (namespace bench,
#                   role=bench) and NP_REMOTE remote Pods (10.245.0.0/16, node-2, app=appK)
#   vswitchd-np     the same List with NP_POLICIES NetworkPolicies: bench-isolate selects
#                   both Pods, isolating them both ways, and allows traffic between them (any
#                   port, any protocol, and TCP 5201/9100/9200 from ns-0..ns-9); one policy
#                   in ten more selects them too (ingress from app=appK of ns-K on one TCP
#                   port, egress to 10.245.0.0/16 less 10.245.255.0/24 on another), the rest
#                   are policies of ns-0..ns-9 selecting remote Pods and naming the two Pods
#                   as peers. A new connection between the Pods meets the conjunctions of
#                   both policy tables; its established packets pass ConntrackState's
#                   counting rule of the rule that allowed it. The set-up checks
#                   `policy-check` allows A to B (TCP 5201) and denies A to B from ns-0's
#                   address block (nothing else reaches them)
# Across nodes: two node namespaces joined by a veth underlay `ul0` (192.168.100.1/24 and
# .2/24, MTU 1500), pod A 10.244.1.2 on node 1, pod B 10.244.2.2 on node 2, pod MTU 1450
# (XNODE_POD_MTU), VXLAN VNI 1 on UDP 4789, through:
#   vswitchd-2node      one vswitchd per node namespace (--pod-cidr 10.244.N.0/24 --node-ip
#                       192.168.100.N --node-name node-N --pod-mtu 1450): gateway port
#                       vsw-gw0 (10.244.N.1) and VXLAN tunnel port vsw-tun0; the Pods attached
#                       with vswitch-cni (CNI ADD, built-in IPAM); the nodes made known to each
#                       other with `vswitchctl add-node`
#   kernel-vxlan-2node  the kernel overlay: per node a bridge + kernel vxlan device + pod veth,
#                       pods in 10.244.0.0/16 (as netns-bench.sh kernel-vxlan-2node)
#   ovs-vxlan-2node     one ovsdb-server + ovs-vswitchd (userspace datapath) per node: br-int
#                       with a tap pod port and a vxlan port, br-phy owning ul0 with the
#                       node's address (as netns-bench.sh ovs-netdev-vxlan-2node, no TSO)
# and measures, from pod A to pod B, each window bounded by `timeout`:
#   TCP      iperf3 -t DUR, REPS reps: Gbit/s (receiver) and retransmits
#   UDP      iperf3 -u -l 64 -b 0 -t DUR, REPS reps: sender and receiver kpps, loss %
#   ping     ping -c 200 -i 0.01: RTT avg / p50 / p99 (nearest rank)
#   conn     after those reps, REPS reps of connrate (this repo's benches/src/bin/connrate.rs;
#            server in pod B, client in pod A, CONN_THREADS threads, CONN_SECS s): new TCP
#            connections a second (connect, 1 byte, close, each one complete) and failures;
#            pod A gets net.ipv4.tcp_tw_reuse=1 and ip_local_port_range 1024-65535 (its
#            own namespace) so TIME_WAIT does not cap the rate; in the -svc configs
#            also through the ClusterIP (conn_svc), the two alternating rep by rep, with
#            source ports 1024-33279 to the Pod and 33280-65535 to the ClusterIP (see
#            pod_a_ports for why)
#   RR       REPS reps of tcprr (benches/src/bin/tcprr.rs, as netperf TCP_RR; echo server
#            in pod B, client in pod A): one connection, RR_SIZE-byte request and response
#            one at a time for RR_SECS s: transactions a second, latency p50 / p99 (µs);
#            in the -svc configs also through the ClusterIP (rr_svc), alternating. Before
#            connrate, so the connection table is small. With RR_AWAKE=1 (default) every
#            CPU runs a SCHED_IDLE busy loop during these windows (see awake_on).
#   CPU      the switch processes' CPU over each window (all threads, both nodes' summed;
#            per node and per thread in the raw files), the whole box's busy CPU, and
#            other workloads' CPU
# then, for ZL_CONFIGS, the 64-byte UDP zero-loss limit with udpflood (this repo's
# benches/src/bin/udpflood.rs: receiver in pod B, sender in pod A): one unpaced run, then
# a bisection on the paced rate for the highest rate with loss < ZL_LOSS %. The
# cross-node configs are not in its default list; add them to ZL_CONFIGS to run it.
#
# Before every window it waits (up to QUIET_WAIT s) for an idle box (< QUIET_MAX % of one
# core busy), and redoes a window (up to RETRIES times) when other processes used more
# than FOREIGN_MAX % of a core during it. The method follows the anchors in
# BASELINES.md (netns-bench.sh), so the kernel and OVS rows are comparable to them.
#
# Prints markdown tables (medians, raw runs; same node: ratios to the Linux bridge and to
# OVS with TSO; across nodes: ratios to the kernel overlay and to OVS userspace VXLAN, and
# the targets for vswitchd-2node) and writes raw results (iperf3 -J JSON, ping logs,
# results.tsv, zeroloss.tsv, per-thread CPU, port counters, daemon logs, env.txt,
# summary.md) to RESULTS_DIR.
#
# Everything it creates (namespaces vswb-<pid>-*, the vswitchd and OVS daemons in them,
# servers, the state dir) is removed on exit, on failure and on Ctrl-C. Results are kept.
#
# Environment knobs [defaults]:
#   CONFIGS ["vswitchd kernel-bridge ovs-tap-tso ovs-tap vswitchd-2node kernel-vxlan-2node ovs-vxlan-2node"]
#            which configs, in this order
#   REPS [3]  DUR [5]  WORKERS [2] (vswitchd --workers, per node)  PING_COUNT [200]  PING_INTERVAL [0.01]
#   VSWITCHD_ARGS [""] (more vswitchd flags, e.g. "--busy-poll-us 0"; split on spaces)
#   XNODE_POD_MTU [1450] (cross-node Pods; the underlay is 1500)
#   RESULTS_DIR [a new /tmp/vswb-results.XXXXXX]   BUILD [1] (0: use the existing binaries)
#   QUIET_MAX [25]  QUIET_WAIT [60]  FOREIGN_MAX [20]  RETRIES [2]
#   ZL_CONFIGS ["vswitchd kernel-bridge ovs-tap-tso"] (empty: skip)  ZL_SECS [3] (per step)
#   ZL_STEPS [8] (bisection steps)  ZL_THREADS ["1 4"] (sender threads = flows; one search each)
#   ZL_RECV_THREADS [1]  ZL_LOSS [0.1] (% loss allowed)  ZL_CONFIRM [2] (re-runs at the limit)
#   ZL_BACKOFF [3] (times the rate steps down 10 % when a confirmation run fails)
#   CONN_SECS [5] (per connrate rep; 0: skip the connection-rate test)  CONN_THREADS [4]
#   RR_SECS [5] (per tcprr rep; 0: skip request/response)  RR_SIZE [1] (bytes each way)
#   RR_AWAKE [1] (1: a SCHED_IDLE busy loop per CPU during tcprr windows, so that no
#            vCPU halts between transactions; see awake_on; the box's busy CPU in those
#            windows is then ~100 %)
#   IPERF_REPS [REPS] (iperf3 TCP, UDP and ping reps; 0: skip them, only connrate and tcprr)
#   SVC_DUMMIES [1000] (other Services in the -svc configs, at most 20000; 0: none)
#   NP_POLICIES [100] (NetworkPolicies in vswitchd-np, at least 1)  NP_REMOTE [1000] (remote
#            Pod objects in vswitchd-k8s and vswitchd-np)
set -Eeuo pipefail
trap 'log "failed (status $?) at line $LINENO: $BASH_COMMAND"' ERR

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SN_CONFIGS="vswitchd kernel-bridge ovs-tap-tso ovs-tap"
CT_CONFIGS="vswitchd-ct kernel-bridge-ct ovs-tap-tso-ct"
SVC_CONFIGS="vswitchd-svc kernel-bridge-svc"
NP_CONFIGS="vswitchd-k8s vswitchd-np"
XN_CONFIGS="vswitchd-2node kernel-vxlan-2node ovs-vxlan-2node"
CONFIGS=${CONFIGS:-"$SN_CONFIGS $XN_CONFIGS"}
REPS=${REPS:-3}
DUR=${DUR:-5}
WORKERS=${WORKERS:-2}
VSWITCHD_ARGS=${VSWITCHD_ARGS:-}
PING_COUNT=${PING_COUNT:-200}
PING_INTERVAL=${PING_INTERVAL:-0.01}
BUILD=${BUILD:-1}
QUIET_MAX=${QUIET_MAX:-25}
QUIET_WAIT=${QUIET_WAIT:-60}
FOREIGN_MAX=${FOREIGN_MAX:-20}
RETRIES=${RETRIES:-2}
ZL_CONFIGS=${ZL_CONFIGS-"vswitchd kernel-bridge ovs-tap-tso"}
ZL_SECS=${ZL_SECS:-3}
ZL_STEPS=${ZL_STEPS:-8}
ZL_THREADS=${ZL_THREADS:-"1 4"}
ZL_RECV_THREADS=${ZL_RECV_THREADS:-1}
ZL_LOSS=${ZL_LOSS:-0.1}
ZL_CONFIRM=${ZL_CONFIRM:-2}
ZL_BACKOFF=${ZL_BACKOFF:-3}
CONN_SECS=${CONN_SECS:-5}
CONN_THREADS=${CONN_THREADS:-4}
CONN_PORT=9100
RR_SECS=${RR_SECS:-5}
RR_SIZE=${RR_SIZE:-1}
RR_AWAKE=${RR_AWAKE:-1}
RR_PORT=9200
IPERF_REPS=${IPERF_REPS:-$REPS}
# The -svc configs' Service: its ClusterIP and ports (to CONN_PORT and RR_PORT on pod B)
SVC_DUMMIES=${SVC_DUMMIES:-1000}
NP_POLICIES=${NP_POLICIES:-100}
NP_REMOTE=${NP_REMOTE:-1000}
SVC_IP=10.96.0.10
SVC_CONN_PORT=80
SVC_RR_PORT=8080
SVC_POD_CIDR=10.244.1.0/24
SVC_GATEWAY=10.244.1.1
SVC_CLUSTER_CIDR=10.244.0.0/16
SVC_NODE=node-1
# The conntrack tutorial's stateful pass-through (vswitchd-ct, ovs-tap-tso-ct).
CT_FLOWS=(
  "priority=0,actions=normal"
  "priority=10,arp,actions=normal"
  "priority=10,ip,ct_state=-trk,actions=ct(table=1)"
  "table=1,priority=10,ip,ct_state=+trk+new,actions=ct(commit),normal"
  "table=1,priority=10,ip,ct_state=+trk+est,actions=normal"
  "table=1,priority=0,actions=drop"
)
UDP_SIZE=64
PORT=5201
ZL_PORT=9000
XNODE_POD_MTU=${XNODE_POD_MTU:-1450}
UNDERLAY_MTU=1500
VNI=1
VXLAN_PORT=4789
# set per config by setup_config: same node 1500, .2 and .3; across nodes XNODE_POD_MTU,
# 10.244.1.2 on node 1 and 10.244.2.2 on node 2
POD_MTU=1500
IP_A=10.244.1.2
IP_B=10.244.1.3
OVS_SCHEMA=/usr/share/openvswitch/vswitch.ovsschema
BIN=$REPO/target/release
P=vswb-$$

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (namespaces, TAPs, OVS)"
for t in ip ethtool iperf3 ping jq awk ss timeout getconf chrt taskset; do
  command -v "$t" >/dev/null 2>&1 || die "missing tool: $t"
done
case " $CONFIGS " in *" ovs-"*)
  for t in ovsdb-tool ovsdb-server ovs-vswitchd ovs-vsctl ovs-appctl ovs-ofctl; do
    command -v "$t" >/dev/null 2>&1 || die "missing tool: $t (apt-get install openvswitch-switch)"
  done;;
esac
case " $CONFIGS " in *" kernel-bridge-svc "*|*" kernel-bridge-ct "*)
  command -v iptables-restore >/dev/null 2>&1 || die "missing tool: iptables-restore (apt-get install iptables)";;
esac
for c in $CONFIGS; do
  case " $SN_CONFIGS $CT_CONFIGS $SVC_CONFIGS $NP_CONFIGS $XN_CONFIGS " in *" $c "*) ;; *) die "unknown config '$c' (one of: $SN_CONFIGS $CT_CONFIGS $SVC_CONFIGS $NP_CONFIGS $XN_CONFIGS)";; esac
done
case "$SVC_DUMMIES" in ''|*[!0-9]*) die "SVC_DUMMIES must be a number";; esac
[ "$SVC_DUMMIES" -le 20000 ] || die "SVC_DUMMIES: at most 20000"
case "$NP_POLICIES$NP_REMOTE" in *[!0-9]*) die "NP_POLICIES and NP_REMOTE must be numbers";; esac
[ "$NP_POLICIES" -ge 1 ] && [ "$NP_REMOTE" -le 60000 ] || die "NP_POLICIES: at least 1; NP_REMOTE: at most 60000"
case " $CONFIGS " in *" vswitchd-k8s "*|*" vswitchd-np "*)
  command -v python3 >/dev/null 2>&1 || die "missing tool: python3 (the -np configs' objects)";;
esac

STATE=$(mktemp -d "/tmp/$P-state.XXXXXX")
if [ -z "${RESULTS_DIR:-}" ]; then RESULTS_DIR=$(mktemp -d /tmp/vswb-results.XXXXXX); fi
mkdir -p "$RESULTS_DIR"
RESULTS_DIR=$(cd "$RESULTS_DIR" && pwd)
TSV=$RESULTS_DIR/results.tsv
ZTSV=$RESULTS_DIR/zeroloss.tsv
: > "$TSV"
printf 'config\tflows\tkind\tstep\treq_pps\ttx_pps\trx_pps\tloss_pct\tsrc_if_tx_dropped\trcvbuf_errors\tsoftnet_dropped\tswitch_cpu_pct\tsys_cpu_pct\tforeign_cpu_pct\n' > "$ZTSV"

# ---------------------------------------------------------------- what we created
CREATED_NS=()      # namespaces, deleted at teardown
OVS_DIR=""         # the single-node config's private OVS instance, if any
OVS_DIRS=""        # every running private OVS instance (one per node namespace)
PIDS_FILE=$STATE/pids   # "<comm> <pid>" of background processes we started
SWITCH_PIDS=""     # vswitchd or ovs-vswitchd (one per node), for CPU accounting
CONFIG=""
RUN=""
BRNF_RESTORE=""    # global net.bridge.bridge-nf-call-iptables to put back (kernels where it is not per netns)
BRNF_MODULE_LOADED=0   # 1: this script loaded br_netfilter (unloaded on exit)

pid_record() { echo "$1 $2" >> "$PIDS_FILE"; }

kill_pid_checked() { # <pid> <expected comm prefix>
  local pid=$1 exe=$2 comm i
  [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 0
  comm=$(cat "/proc/$pid/comm" 2>/dev/null || true)
  case "$comm" in "${exe:0:15}"*) ;; *) return 0;; esac
  kill "$pid" 2>/dev/null || true
  for i in $(seq 1 50); do [ -d "/proc/$pid" ] || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}

kill_recorded() {
  [ -f "$PIDS_FILE" ] || return 0
  local name pid
  tac "$PIDS_FILE" | while read -r name pid; do kill_pid_checked "$pid" "$name"; done
  rm -f "$PIDS_FILE"
}

ns_exists() { [ -e "/var/run/netns/$1" ]; }
ns_add() {
  ns_exists "$1" && die "namespace $1 already exists"
  ip netns add "$1"
  CREATED_NS+=("$1")
  ip -n "$1" link set lo up
}
# Stop whatever still runs in one of OUR namespaces (their pids, one by one), then delete it.
ns_del() {
  local ns=$1 pids i
  ns_exists "$ns" || return 0
  pids=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')
  if [ -n "${pids// /}" ]; then
    # shellcheck disable=SC2086
    kill $pids 2>/dev/null || true
    for i in $(seq 1 30); do
      pids=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')
      [ -z "${pids// /}" ] && break
      sleep 0.1
    done
    # shellcheck disable=SC2086
    [ -n "${pids// /}" ] && kill -9 $pids 2>/dev/null
  fi
  ip netns del "$ns" 2>/dev/null || true
}

ovs_stop() { # <dir>: graceful exit (--cleanup removes the datapath and the taps' persistence)
  local d=$1
  [ -n "$d" ] && [ -d "$d" ] || return 0
  if [ -S "$d/ovs-vswitchd.ctl" ]; then timeout 10 ovs-appctl -t "$d/ovs-vswitchd.ctl" exit --cleanup >/dev/null 2>&1 || true; fi
  if [ -S "$d/ovsdb-server.ctl" ]; then timeout 10 ovs-appctl -t "$d/ovsdb-server.ctl" exit >/dev/null 2>&1 || true; fi
}

# The daemons run inside our node namespaces, so ns_del also stops any we did not record
# (a Ctrl-C between a start and its pid_record).
teardown_config() {
  local ns d
  for d in $OVS_DIRS; do ovs_stop "$d"; done
  kill_recorded
  for ns in "${CREATED_NS[@]}"; do ns_del "$ns"; done
  CREATED_NS=()
  OVS_DIR="" OVS_DIRS=""
  SWITCH_PIDS=""
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM HUP
  set +e
  [ ${#CREATED_NS[@]} -gt 0 ] || [ -s "$PIDS_FILE" ] && log "cleaning up"
  teardown_config
  if [ -n "$BRNF_RESTORE" ]; then
    echo "$BRNF_RESTORE" > /proc/sys/net/bridge/bridge-nf-call-iptables && log "restored the global bridge-nf-call-iptables=$BRNF_RESTORE"
  fi
  if [ "$BRNF_MODULE_LOADED" = 1 ]; then modprobe -r br_netfilter 2>/dev/null && log "unloaded br_netfilter"; fi
  rm -rf "${STATE:?}"
  log "raw results: $RESULTS_DIR"
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# ---------------------------------------------------------------- build
if [ "$BUILD" = 1 ]; then
  log "building (cargo build --release --workspace --bins)"
  (cd "$REPO" && cargo build --release --workspace --bins) >&2 || die "build failed"
fi
for b in vswitchd vswitchctl vswitch-cni udpflood connrate tcprr; do
  [ -x "$BIN/$b" ] || die "$BIN/$b is missing (run with BUILD=1)"
done

# ---------------------------------------------------------------- configs
NS_A="" NS_B="" NS_N="" NS_N1="" NS_N2="" SRC_IF="" DST_IF=""

is_xnode() { case "$1" in *-2node) return 0;; *) return 1;; esac; }

pod_ip_cfg() { # <ns> <ifname> <cidr>
  ip -n "$1" link set "$2" mtu "$POD_MTU"
  ip -n "$1" addr add "$3" dev "$2"
  ip -n "$1" link set "$2" up
}

wait_link() { # <ns> <ifname>
  local i
  for i in $(seq 1 100); do ip -n "$1" link show "$2" >/dev/null 2>&1 && return 0; sleep 0.1; done
  die "interface $2 did not appear in $1"
}

# The daemon's directory: the single-node config's (one per config: the state dir keeps
# ports and flows, which the next config must not inherit), or node N's in vswitchd-2node.
vsw_dir() { if [ -n "${1:-}" ]; then echo "$STATE/vswitchd-node$1"; else echo "$STATE/$CONFIG"; fi; }
ctl() { timeout 30 "$BIN/vswitchctl" --socket "$(vsw_dir)/vswitchd.sock" "$@"; }
ctl_n() { local n=$1; shift; timeout 30 "$BIN/vswitchctl" --socket "$(vsw_dir "$n")/vswitchd.sock" "$@"; }

start_vswitchd() { # <ns> <dir> <extra vswitchd args...>: start it, wait for its socket
  local ns=$1 d=$2 pid i; shift 2
  mkdir -p "$d"
  ip netns exec "$ns" "$BIN/vswitchd" --socket "$d/vswitchd.sock" --state-dir "$d/state" \
      --workers "$WORKERS" --log-file "$d/vswitchd.log" $VSWITCHD_ARGS "$@" > "$d/vswitchd.stderr" 2>&1 &
  pid=$!
  pid_record vswitchd "$pid"
  SWITCH_PIDS="${SWITCH_PIDS:+$SWITCH_PIDS }$pid"
  for i in $(seq 1 100); do
    timeout 30 "$BIN/vswitchctl" --socket "$d/vswitchd.sock" show >/dev/null 2>&1 && return 0
    [ -d "/proc/$pid" ] || die "vswitchd ($d) exited: $(cat "$d/vswitchd.stderr" "$d/vswitchd.log" 2>/dev/null)"
    sleep 0.1
  done
  die "vswitchd ($d) does not answer on its socket: $(cat "$d/vswitchd.stderr" "$d/vswitchd.log" 2>/dev/null)"
}

setup_vswitchd() { # [ct: the stateful pass-through CT_FLOWS instead of `actions=normal`]
  local f
  start_vswitchd "$NS_N" "$(vsw_dir)"
  ctl add-port pod-a --type tap --netns "/var/run/netns/$NS_A" --ifname eth0 --ip "$IP_A/24" --mtu "$POD_MTU" >&2
  ctl add-port pod-b --type tap --netns "/var/run/netns/$NS_B" --ifname eth0 --ip "$IP_B/24" --mtu "$POD_MTU" >&2
  if [ "${1:-}" = ct ]; then
    for f in "${CT_FLOWS[@]}"; do ctl add-flow "$f" >&2; done
  else
    ctl add-flow 'actions=normal' >&2
  fi
  ip -n "$NS_A" link set eth0 up; ip -n "$NS_B" link set eth0 up
}

setup_kernel_bridge() {
  ip -n "$NS_N" link add br0 type bridge   # STP off: ports forward at once
  ip -n "$NS_N" link set br0 up
  ip -n "$NS_N" link add veth-a type veth peer name eth0 netns "$NS_A"
  ip -n "$NS_N" link add veth-b type veth peer name eth0 netns "$NS_B"
  ip -n "$NS_N" link set veth-a master br0 up
  ip -n "$NS_N" link set veth-b master br0 up
  pod_ip_cfg "$NS_A" eth0 "$IP_A/24"
  pod_ip_cfg "$NS_B" eth0 "$IP_B/24"
}

# Bridged IPv4 through iptables (br_netfilter) in the node namespace.
brnf_on() {
  local g0 g1 v
  if [ ! -e /proc/sys/net/bridge/bridge-nf-call-iptables ]; then
    modprobe br_netfilter || die "$CONFIG: br_netfilter is not available (modprobe br_netfilter failed)"
    BRNF_MODULE_LOADED=1
  fi
  g0=$(cat /proc/sys/net/bridge/bridge-nf-call-iptables)
  ip netns exec "$NS_N" sysctl -qw net.bridge.bridge-nf-call-iptables=1
  g1=$(cat /proc/sys/net/bridge/bridge-nf-call-iptables)
  if [ "$g1" != "$g0" ]; then
    # the sysctl is global on this kernel: put the old value back on exit
    [ -n "$BRNF_RESTORE" ] || BRNF_RESTORE=$g0
    log "  bridge-nf-call-iptables is not per namespace here: global value $g0 -> $g1, restored on exit"
  fi
  v=$(ip netns exec "$NS_N" cat /proc/sys/net/bridge/bridge-nf-call-iptables)
  [ "$v" = 1 ] || die "$CONFIG: bridge-nf-call-iptables is $v in $NS_N"
}

# kernel-bridge-ct: a stateful FORWARD chain in the node namespace.
setup_bridge_ct() {
  brnf_on
  ip netns exec "$NS_N" iptables -w 5 -A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
  ip netns exec "$NS_N" iptables -w 5 -A FORWARD -m conntrack --ctstate NEW -j ACCEPT
  ip netns exec "$NS_N" iptables -w 5 -A FORWARD -j DROP
}

# ---- a ClusterIP Service (the -svc configs)
# The same objects two ways, from one awk program: <json> a Kubernetes List for `vswitchctl
# apply -f` (Service bench/bench-web with pod B as its one endpoint, and SVC_DUMMIES other
# Services of 3 endpoints each), <rules> what kube-proxy's iptables mode writes for them,
# for iptables-restore (rule and chain layout of kube-proxy's proxier.go: KUBE-SERVICES ->
# KUBE-SVC-* -> KUBE-SEP-*; chain names numbered here instead of hashed).
svc_objects() { # <json> <rules>
  awk -v n="$SVC_DUMMIES" -v vip="$SVC_IP" -v ep="$IP_B" -v node="$SVC_NODE" \
      -v cport="$SVC_CONN_PORT" -v ctarget="$CONN_PORT" -v rport="$SVC_RR_PORT" -v rtarget="$RR_PORT" \
      -v cluster="$SVC_CLUSTER_CIDR" -v jf="$1" -v rf="$2" '
    function ip4(a, j) { return sprintf("%s.%d.%d.%d", a, 96 + int(j / 65536), int(j / 256) % 256, j % 256) }
    function dummy_ep(k) { return sprintf("10.%d.%d.%d", 245 + int(k / 65536), int(k / 256) % 256, k % 256) }
    # One Service port: its KUBE-SERVICES rule (into ksvc[]), its KUBE-SVC chain and its
    # endpoints KUBE-SEP chains (into chains[] and rules[]).
    function svc_port(id, name, vip, port, eps, target,   ne, e, i, svc, sep, cmt) {
      ne = split(eps, e, " "); svc = "KUBE-SVC-" id; cmt = name " cluster IP"
      ksvc[++nk] = sprintf("-A KUBE-SERVICES -d %s/32 -p tcp -m comment --comment \"%s\" -m tcp --dport %d -j %s", vip, cmt, port, svc)
      chains[++nc] = svc
      rules[++nr] = sprintf("-A %s ! -s %s -d %s/32 -p tcp -m comment --comment \"%s\" -m tcp --dport %d -j KUBE-MARK-MASQ", svc, cluster, vip, cmt, port)
      for (i = 1; i <= ne; i++) {
        sep = sprintf("KUBE-SEP-%s%02d", id, i); chains[++nc] = sep
        if (i < ne) rules[++nr] = sprintf("-A %s -m comment --comment \"%s -> %s:%d\" -m statistic --mode random --probability %.11f -j %s", svc, name, e[i], target, 1 / (ne - i + 1), sep)
        else rules[++nr] = sprintf("-A %s -m comment --comment \"%s -> %s:%d\" -j %s", svc, name, e[i], target, sep)
        rules[++nr] = sprintf("-A %s -s %s/32 -m comment --comment \"%s\" -j KUBE-MARK-MASQ", sep, e[i], name)
        rules[++nr] = sprintf("-A %s -p tcp -m comment --comment \"%s\" -m tcp -j DNAT --to-destination %s:%d", sep, name, e[i], target)
      }
    }
    function real_service() {
      svc_port("BENCHWEBCONN0", "bench/bench-web:conn", vip, cport, ep, ctarget)
      svc_port("BENCHWEBRR000", "bench/bench-web:rr", vip, rport, ep, rtarget)
      items[++ni] = sprintf("{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"bench-web\",\"namespace\":\"bench\"},\"spec\":{\"type\":\"ClusterIP\",\"clusterIP\":\"%s\",\"clusterIPs\":[\"%s\"],\"selector\":{\"app\":\"bench-web\"},\"ports\":[{\"name\":\"conn\",\"port\":%d,\"protocol\":\"TCP\",\"targetPort\":%d},{\"name\":\"rr\",\"port\":%d,\"protocol\":\"TCP\",\"targetPort\":%d}]}}", vip, vip, cport, ctarget, rport, rtarget)
      items[++ni] = sprintf("{\"apiVersion\":\"discovery.k8s.io/v1\",\"kind\":\"EndpointSlice\",\"metadata\":{\"name\":\"bench-web-abcde\",\"namespace\":\"bench\",\"labels\":{\"kubernetes.io/service-name\":\"bench-web\"}},\"addressType\":\"IPv4\",\"ports\":[{\"name\":\"conn\",\"port\":%d,\"protocol\":\"TCP\"},{\"name\":\"rr\",\"port\":%d,\"protocol\":\"TCP\"}],\"endpoints\":[{\"addresses\":[\"%s\"],\"conditions\":{\"ready\":true},\"nodeName\":\"%s\"}]}", ctarget, rtarget, ep, node)
    }
    BEGIN {
      for (i = 0; i < n; i++) {
        # the real Service in the middle of KUBE-SERVICES: a new connection to it passes
        # half the other Services rules first
        if (i == int(n / 2)) real_service()
        d = sprintf("dummy-%05d", i); v = ip4("10", i + 4096)
        eps = ""; for (j = 0; j < 3; j++) eps = eps (j ? " " : "") dummy_ep(3 * i + j + 1)
        svc_port(sprintf("D%05dHTTP000", i), "bench/" d ":http", v, 80, eps, 8080)
        items[++ni] = sprintf("{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"%s\",\"namespace\":\"bench\"},\"spec\":{\"type\":\"ClusterIP\",\"clusterIP\":\"%s\",\"clusterIPs\":[\"%s\"],\"ports\":[{\"name\":\"http\",\"port\":80,\"protocol\":\"TCP\",\"targetPort\":8080}]}}", d, v, v)
        split(eps, e, " ")
        items[++ni] = sprintf("{\"apiVersion\":\"discovery.k8s.io/v1\",\"kind\":\"EndpointSlice\",\"metadata\":{\"name\":\"%s-abcde\",\"namespace\":\"bench\",\"labels\":{\"kubernetes.io/service-name\":\"%s\"}},\"addressType\":\"IPv4\",\"ports\":[{\"name\":\"http\",\"port\":8080,\"protocol\":\"TCP\"}],\"endpoints\":[{\"addresses\":[\"%s\"],\"conditions\":{\"ready\":true}},{\"addresses\":[\"%s\"],\"conditions\":{\"ready\":true}},{\"addresses\":[\"%s\"],\"conditions\":{\"ready\":true}}]}", d, d, e[1], e[2], e[3])
      }
      if (n == 0) real_service()
      printf "{\"apiVersion\":\"v1\",\"kind\":\"List\",\"items\":[" > jf
      for (i = 1; i <= ni; i++) printf "%s%s\n", (i > 1 ? "," : ""), items[i] > jf
      print "]}" > jf
      print "*filter" > rf
      print ":INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]" > rf
      print ":KUBE-EXTERNAL-SERVICES - [0:0]\n:KUBE-FIREWALL - [0:0]\n:KUBE-FORWARD - [0:0]\n:KUBE-NODEPORTS - [0:0]\n:KUBE-PROXY-FIREWALL - [0:0]\n:KUBE-SERVICES - [0:0]" > rf
      print "-A INPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL" > rf
      print "-A INPUT -m comment --comment \"kubernetes health check service ports\" -j KUBE-NODEPORTS" > rf
      print "-A INPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes externally visible service portals\" -j KUBE-EXTERNAL-SERVICES" > rf
      print "-A INPUT -j KUBE-FIREWALL" > rf
      print "-A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL" > rf
      print "-A FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD" > rf
      print "-A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES" > rf
      print "-A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes externally visible service portals\" -j KUBE-EXTERNAL-SERVICES" > rf
      print "-A OUTPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL" > rf
      print "-A OUTPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES" > rf
      print "-A OUTPUT -j KUBE-FIREWALL" > rf
      print "-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment \"block incoming localnet connections\" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP" > rf
      print "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP" > rf
      print "-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -m mark --mark 0x4000/0x4000 -j ACCEPT" > rf
      print "-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT" > rf
      print "COMMIT" > rf
      print "*nat" > rf
      print ":PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]" > rf
      print ":KUBE-MARK-MASQ - [0:0]\n:KUBE-NODEPORTS - [0:0]\n:KUBE-POSTROUTING - [0:0]\n:KUBE-SERVICES - [0:0]" > rf
      for (i = 1; i <= nc; i++) printf ":%s - [0:0]\n", chains[i] > rf
      print "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES" > rf
      print "-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES" > rf
      print "-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING" > rf
      print "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000" > rf
      print "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN" > rf
      print "-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0" > rf
      print "-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully" > rf
      for (i = 1; i <= nk; i++) print ksvc[i] > rf
      print "-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS" > rf
      for (i = 1; i <= nr; i++) print rules[i] > rf
      print "COMMIT" > rf
    }'
}

# In the -svc configs pod A's connections to the Pod and to the ClusterIP come from
# disjoint source port ranges (1024-33279 and 33280-65535), changed in pod A's namespace
# before each window. This was a workaround, no longer needed for correctness: a
# connection from A:p straight to B:9100 can meet the connection table's entry of an
# earlier one from A:p to the ClusterIP, translated to B:9100 (still in TIME_WAIT:
# connrate makes thousands a second with tcp_tw_reuse), or the other way round; vswitchd
# used to refuse the new connection, and now gives it another source port as Linux
# conntrack does (an implicit SNAT, counted as "clashes resolved"). The ranges are kept
# so that the figures stay comparable with the earlier runs in BENCHMARKS.md (issue 12).
pod_a_ports() { # direct|svc
  local range="1024 33279"
  case "$CONFIG" in *-svc) ;; *) return 0;; esac
  if [ "$1" = svc ]; then range="33280 65535"; fi
  ip netns exec "$NS_A" sysctl -qw "net.ipv4.ip_local_port_range=$range"
}

# A connection through the ClusterIP, or the config is not what it claims to be.
svc_check() {
  local out=$RUN/svc-check.txt n
  ip netns exec "$NS_A" sysctl -qw net.ipv4.tcp_tw_reuse=1
  pod_a_ports svc
  server_start /dev/null "$CONN_PORT" 20 "$BIN/connrate" server "$IP_B:$CONN_PORT" --secs 20 --threads 1
  timeout 15 ip netns exec "$NS_A" "$BIN/connrate" client "$SVC_IP:$SVC_CONN_PORT" --secs 0.5 --threads 1 > "$out" 2>&1 || true
  server_stop
  n=$(sed -n 's/.* connections=\([0-9]*\).*/\1/p' "$out")
  [ "${n:-0}" -gt 0 ] || die "$CONFIG: no connection through the ClusterIP $SVC_IP:$SVC_CONN_PORT: $(cat "$out")"
  log "  $CONFIG: $n connections through the ClusterIP $SVC_IP:$SVC_CONN_PORT in 0.5 s (set-up check)"
}

setup_vswitchd_svc() {
  local n
  start_vswitchd "$NS_N" "$(vsw_dir)" --pod-cidr "$SVC_POD_CIDR" --node-name "$SVC_NODE"
  # Addresses in the Pod CIDR: Pods of the pipeline (ARP answered, switched and routed)
  ctl add-port pod-a --type tap --netns "/var/run/netns/$NS_A" --ifname eth0 --ip "$IP_A/24" --mtu "$POD_MTU" --gateway "$SVC_GATEWAY" >&2
  ctl add-port pod-b --type tap --netns "/var/run/netns/$NS_B" --ifname eth0 --ip "$IP_B/24" --mtu "$POD_MTU" --gateway "$SVC_GATEWAY" >&2
  ip -n "$NS_A" link set eth0 up; ip -n "$NS_B" link set eth0 up
  svc_objects "$RUN/services.json" "$RUN/kube-proxy-rules.txt"
  rm -f "$RUN/kube-proxy-rules.txt"
  n=$(ctl apply -f "$RUN/services.json" | tee "$RUN/apply.txt" | grep -c ' created$' || true)
  [ "$n" = $((2 * SVC_DUMMIES + 2)) ] || die "$CONFIG: $n of $((2 * SVC_DUMMIES + 2)) objects created (see $RUN/apply.txt)"
  gzip -f "$RUN/services.json" "$RUN/apply.txt"
}

# ---- NetworkPolicy (vswitchd-k8s, vswitchd-np)
np_objects() { # <json> <1: with the policies>
  python3 - "$1" "$2" "$NP_POLICIES" "$NP_REMOTE" "$IP_A" "$IP_B" "$SVC_NODE" <<'PY'
import json, sys
out, with_policies, n, remote, ip_a, ip_b, node = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6], sys.argv[7]
def ns(name, **labels):
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": dict(labels, **{"kubernetes.io/metadata.name": name})}}
def pod(name, namespace, ip, node, labels):
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"nodeName": node, "containers": [{"name": "main", "ports": [
                {"name": "iperf", "containerPort": 5201}, {"name": "http", "containerPort": 80}]}]},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}}
def sel(**kv): return {"matchLabels": kv}
def tcp(p): return {"protocol": "TCP", "port": p}
def policy(name, namespace, spec):
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}
items = [ns("bench", env="bench")] + [ns("ns-%d" % k, env="prod" if k % 2 else "dev") for k in range(10)]
items += [pod("pod-a", "bench", ip_a, node, {"role": "bench", "app": "iperf-client"}),
          pod("pod-b", "bench", ip_b, node, {"role": "bench", "app": "iperf-server"})]
for i in range(remote):
    k = i + 1
    items.append(pod("remote-%d" % i, "ns-%d" % (i % 10), "10.245.%d.%d" % (k >> 8, k & 255),
                     "node-2", {"app": "app%d" % (i % 50)}))
if with_policies:
    items.append(policy("bench-isolate", "bench", {
        "podSelector": sel(role="bench"), "policyTypes": ["Ingress", "Egress"],
        "ingress": [{"from": [{"podSelector": sel(role="bench")}]},
                    {"from": [{"namespaceSelector": sel(env="prod")}], "ports": [tcp(5201), tcp(9100), tcp(9200)]}],
        "egress": [{"to": [{"podSelector": sel(role="bench")}]}]}))
    for j in range(n - 1):
        k = j % 10
        if j % 10 == 0:
            items.append(policy("bench-%d" % j, "bench", {
                "podSelector": sel(role="bench"), "policyTypes": ["Ingress", "Egress"],
                "ingress": [{"from": [{"namespaceSelector": sel(**{"kubernetes.io/metadata.name": "ns-%d" % (j // 10 % 10)}),
                                       "podSelector": sel(app="app%d" % (j % 50))}],
                             "ports": [tcp(8000 + j)]}],
                "egress": [{"to": [{"ipBlock": {"cidr": "10.245.0.0/16", "except": ["10.245.255.0/24"]}}],
                            "ports": [tcp(9000 + j)]}]}))
        else:
            items.append(policy("np-%d" % j, "ns-%d" % k, {
                "podSelector": sel(app="app%d" % (j % 50)),
                "ingress": [{"from": [{"namespaceSelector": sel(env="bench"), "podSelector": sel(role="bench")},
                                      {"podSelector": sel(app="app%d" % ((j + 1) % 50))}],
                             "ports": [tcp(80), {"protocol": "TCP", "port": "http"}]}]}))
json.dump({"apiVersion": "v1", "kind": "List", "items": items}, open(out, "w"))
PY
}

setup_vswitchd_np() { # <1: with the policies>
  local n want v
  start_vswitchd "$NS_N" "$(vsw_dir)" --pod-cidr "$SVC_POD_CIDR" --node-name "$SVC_NODE"
  ctl add-port pod-a --type tap --netns "/var/run/netns/$NS_A" --ifname eth0 --ip "$IP_A/24" --mtu "$POD_MTU" --gateway "$SVC_GATEWAY" >&2
  ctl add-port pod-b --type tap --netns "/var/run/netns/$NS_B" --ifname eth0 --ip "$IP_B/24" --mtu "$POD_MTU" --gateway "$SVC_GATEWAY" >&2
  ip -n "$NS_A" link set eth0 up; ip -n "$NS_B" link set eth0 up
  np_objects "$RUN/objects.json" "$1"
  want=$((11 + 2 + NP_REMOTE)); [ "$1" = 1 ] && want=$((want + NP_POLICIES))
  n=$(ctl apply -f "$RUN/objects.json" | tee "$RUN/apply.txt" | grep -c ' created$' || true)
  [ "$n" = "$want" ] || die "$CONFIG: $n of $want objects created (see $RUN/apply.txt)"
  gzip -f "$RUN/objects.json" "$RUN/apply.txt"
  if [ "$1" = 1 ]; then
    v=$(ctl policy-check bench/pod-a bench/pod-b tcp 5201 | head -1)
    [ "$v" = allow ] || die "$CONFIG: policy-check pod A -> pod B tcp 5201: $v"
    v=$(ctl policy-check 10.245.0.1 bench/pod-b tcp 5201 | head -1)
    [ "$v" = deny ] || die "$CONFIG: policy-check 10.245.0.1 -> pod B tcp 5201: $v (isolated?)"
    log "  $CONFIG: $(ctl show | awk '/^flows:/ {print $2}') flows; A -> B allowed, a remote Pod to B denied"
  fi
}

setup_kernel_bridge_svc() {
  local t0 t1
  setup_kernel_bridge
  ip -n "$NS_N" addr add "$SVC_GATEWAY/${SVC_POD_CIDR#*/}" dev br0
  ip -n "$NS_A" route add default via "$SVC_GATEWAY"
  ip -n "$NS_B" route add default via "$SVC_GATEWAY"
  ip netns exec "$NS_N" sysctl -qw net.ipv4.ip_forward=1
  brnf_on
  svc_objects "$RUN/services.json" "$RUN/kube-proxy-rules.txt"
  t0=$(date +%s.%N)
  ip netns exec "$NS_N" iptables-restore -w 5 < "$RUN/kube-proxy-rules.txt" || die "$CONFIG: iptables-restore of the kube-proxy rules failed"
  t1=$(date +%s.%N)
  log "  $CONFIG: $(grep -c '^-A' "$RUN/kube-proxy-rules.txt") kube-proxy rules restored in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}') s"
  gzip -f "$RUN/services.json" "$RUN/kube-proxy-rules.txt"
}

vsctl_d() { local d=$1; shift; timeout 30 ovs-vsctl --db="unix:$d/db.sock" --timeout=20 "$@"; }
ofctl_d() { local d=$1 br=$2; shift 2; timeout 30 ovs-ofctl "$1" "unix:$d/$br.mgmt" "${@:2}"; }
appctl_d() { local d=$1; shift; timeout 30 ovs-appctl -t "$d/ovs-vswitchd.ctl" "$@"; }
vsctl() { vsctl_d "$OVS_DIR" "$@"; }
ofctl() { ofctl_d "$OVS_DIR" br0 "$@"; }

ovs_start() { # <ns> <dir> <1: userspace TSO>: a private ovsdb-server + ovs-vswitchd in <ns>
  local ns=$1 d=$2 tso=$3 pid i
  local env=(env "OVS_RUNDIR=$d" "OVS_LOGDIR=$d" "OVS_DBDIR=$d" "OVS_SYSCONFDIR=$d" "OVS_PKGDATADIR=/usr/share/openvswitch")
  mkdir -p "$d"
  OVS_DIRS="${OVS_DIRS:+$OVS_DIRS }$d"
  "${env[@]}" ovsdb-tool create "$d/conf.db" "$OVS_SCHEMA"
  "${env[@]}" ip netns exec "$ns" ovsdb-server "$d/conf.db" --remote="punix:$d/db.sock" \
      --pidfile="$d/ovsdb-server.pid" --unixctl="$d/ovsdb-server.ctl" \
      --log-file="$d/ovsdb-server.log" -vconsole:off --detach --no-chdir 2>> "$d/stderr.log"
  pid_record ovsdb-server "$(cat "$d/ovsdb-server.pid")"
  vsctl_d "$d" --no-wait init
  if [ "$tso" = 1 ]; then vsctl_d "$d" --no-wait set Open_vSwitch . other_config:userspace-tso-enable=true; fi
  "${env[@]}" ip netns exec "$ns" ovs-vswitchd "unix:$d/db.sock" --pidfile="$d/ovs-vswitchd.pid" \
      --unixctl="$d/ovs-vswitchd.ctl" --log-file="$d/ovs-vswitchd.log" -vconsole:off --detach --no-chdir 2>> "$d/stderr.log"
  pid=$(cat "$d/ovs-vswitchd.pid")
  pid_record ovs-vswitchd "$pid"
  SWITCH_PIDS="${SWITCH_PIDS:+$SWITCH_PIDS }$pid"
  for i in $(seq 1 50); do [ -S "$d/ovs-vswitchd.ctl" ] && break; sleep 0.1; done
}

setup_ovs() { # <1: userspace TSO> [ct: the stateful pass-through CT_FLOWS instead of NORMAL]
  local f
  OVS_DIR=$STATE/ovs-$CONFIG
  ovs_start "$NS_N" "$OVS_DIR" "$1"
  vsctl add-br br0 -- set bridge br0 datapath_type=netdev
  vsctl add-port br0 tap-a -- set Interface tap-a type=tap
  vsctl add-port br0 tap-b -- set Interface tap-b type=tap
  ofctl del-flows
  if [ "${2:-}" = ct ]; then
    for f in "${CT_FLOWS[@]}"; do ofctl add-flow "$f"; done
  else
    ofctl add-flow "priority=0,actions=NORMAL"
  fi
  wait_link "$NS_N" tap-a; wait_link "$NS_N" tap-b
  # vswitchd holds the taps' fds; the netdevs move into the Pods (OVS then cannot see
  # them by name and keeps sending anyway; address, MTU and up are set in the Pods)
  ip -n "$NS_N" link set tap-a netns "$NS_A"
  ip -n "$NS_N" link set tap-b netns "$NS_B"
  pod_ip_cfg "$NS_A" tap-a "$IP_A/24"
  pod_ip_cfg "$NS_B" tap-b "$IP_B/24"
}

# ---- across nodes
node_ns() { if [ "$1" = 1 ]; then echo "$NS_N1"; else echo "$NS_N2"; fi; }
node_ip() { echo "192.168.100.$1"; }
node_cidr() { echo "10.244.$1.0/24"; }

underlay() { # the veth ul0 between node 1 and node 2; <1: put the node addresses on it>
  local n
  ip -n "$NS_N1" link add ul0 type veth peer name ul0 netns "$NS_N2"
  for n in 1 2; do
    ip -n "$(node_ns $n)" link set ul0 mtu "$UNDERLAY_MTU"
    if [ "$1" = 1 ]; then ip -n "$(node_ns $n)" addr add "$(node_ip $n)/24" dev ul0; fi
    ip -n "$(node_ns $n)" link set ul0 up
  done
}

cni_add() { # <node n> <pod ns> <pod name>: CNI ADD as a runtime calls it; prints the Pod's address
  local n=$1 ns=$2 name=$3 out=$RUN/cni-add-$3.json conf
  conf="{\"cniVersion\":\"1.1.0\",\"name\":\"bench\",\"type\":\"vswitch-cni\",\"socket\":\"$(vsw_dir "$n")/vswitchd.sock\"}"
  echo "$conf" | CNI_COMMAND=ADD CNI_CONTAINERID="$P-$name" CNI_NETNS="/var/run/netns/$ns" CNI_IFNAME=eth0 \
      CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME=$name" CNI_PATH="$BIN" \
      timeout 60 "$BIN/vswitch-cni" > "$out" 2> "$out.stderr" \
    || die "CNI ADD of $name on node $n failed: $(cat "$out" "$out.stderr" 2>/dev/null)"
  ip -n "$ns" -4 -o addr show dev eth0 | awk '{split($4, a, "/"); print a[1]; exit}'
}

setup_vswitchd_2node() {
  local n ip
  underlay 1
  for n in 1 2; do
    start_vswitchd "$(node_ns $n)" "$(vsw_dir $n)" --pod-cidr "$(node_cidr $n)" --node-ip "$(node_ip $n)" \
        --node-name "node-$n" --pod-mtu "$POD_MTU"
  done
  # each node learns the other's Pod CIDR and underlay address
  ctl_n 1 add-node node-2 --pod-cidr "$(node_cidr 2)" --node-ip "$(node_ip 2)" >&2
  ctl_n 2 add-node node-1 --pod-cidr "$(node_cidr 1)" --node-ip "$(node_ip 1)" >&2
  ip=$(cni_add 1 "$NS_A" pod-a)
  if [ "$ip" != "$IP_A" ]; then log "  pod A got ${ip:-no address}, not $IP_A: using it"; IP_A=$ip; fi
  ip=$(cni_add 2 "$NS_B" pod-b)
  if [ "$ip" != "$IP_B" ]; then log "  pod B got ${ip:-no address}, not $IP_B: using it"; IP_B=$ip; fi
  [ -n "$IP_A" ] && [ -n "$IP_B" ] || die "CNI ADD left a Pod without an address"
}

setup_kernel_vxlan_2node() { # as netns-bench.sh kernel-vxlan-2node
  local n ns pod peer podip
  underlay 1
  for n in 1 2; do
    ns=$(node_ns $n)
    if [ "$n" = 1 ]; then pod=$NS_A peer=2 podip=$IP_A/16; else pod=$NS_B peer=1 podip=$IP_B/16; fi
    ip -n "$ns" link add br0 type bridge
    ip -n "$ns" link set br0 up
    ip -n "$ns" link add vxlan1 type vxlan id "$VNI" dstport "$VXLAN_PORT" local "$(node_ip $n)" remote "$(node_ip $peer)" dev ul0
    ip -n "$ns" link set vxlan1 master br0 up
    ip -n "$ns" link add veth-pod type veth peer name eth0 netns "$pod"
    ip -n "$ns" link set veth-pod master br0 up
    pod_ip_cfg "$pod" eth0 "$podip"
  done
}

setup_ovs_vxlan_2node() { # as netns-bench.sh ovs-netdev-vxlan-2node
  local n ns pod peer podip tap d
  underlay 0
  for n in 1 2; do
    ns=$(node_ns $n) d=$STATE/ovs-$CONFIG-node$n
    if [ "$n" = 1 ]; then pod=$NS_A peer=2 podip=$IP_A/16 tap=tap-a; else pod=$NS_B peer=1 podip=$IP_B/16 tap=tap-b; fi
    ovs_start "$ns" "$d" 0
    # br-phy owns the underlay NIC; the node's address lives on br-phy's internal port so
    # that OVS userspace tunnelling can route and ARP for the remote VTEP.
    vsctl_d "$d" add-br br-phy -- set bridge br-phy datapath_type=netdev \
        -- set bridge br-phy other_config:hwaddr="$(ip -n "$ns" -br link show ul0 | awk '{print $3}')"
    vsctl_d "$d" add-port br-phy ul0
    wait_link "$ns" br-phy
    ip -n "$ns" addr add "$(node_ip $n)/24" dev br-phy
    ip -n "$ns" link set br-phy up
    vsctl_d "$d" add-br br-int -- set bridge br-int datapath_type=netdev
    vsctl_d "$d" add-port br-int vxlan1 -- set Interface vxlan1 type=vxlan \
        options:remote_ip="$(node_ip $peer)" options:local_ip="$(node_ip $n)" options:key="$VNI" options:dst_port="$VXLAN_PORT"
    vsctl_d "$d" add-port br-int "$tap" -- set Interface "$tap" type=tap
    ofctl_d "$d" br-int del-flows
    ofctl_d "$d" br-int add-flow "priority=0,actions=NORMAL"
    wait_link "$ns" "$tap"
    ip -n "$ns" link set "$tap" netns "$pod"
    pod_ip_cfg "$pod" "$tap" "$podip"
  done
  # resolve the remote VTEP's MAC (OVS snoops the ARP reply on br-phy into tnl/neigh)
  ip netns exec "$NS_N1" ping -c 2 -i 0.2 -W 1 "$(node_ip 2)" >/dev/null || log "  underlay ping node 1 -> node 2 failed"
  ip netns exec "$NS_N2" ping -c 2 -i 0.2 -W 1 "$(node_ip 1)" >/dev/null || log "  underlay ping node 2 -> node 1 failed"
}

setup_config() {
  local k=$1 t0 t1 i ok=0
  NS_A=$P-$k-pod-a NS_B=$P-$k-pod-b NS_N="" NS_N1="" NS_N2=""
  SRC_IF=eth0 DST_IF=eth0
  if is_xnode "$CONFIG"; then
    NS_N1=$P-$k-node1 NS_N2=$P-$k-node2
    POD_MTU=$XNODE_POD_MTU IP_A=10.244.1.2 IP_B=10.244.2.2
  else
    NS_N=$P-$k-node
    POD_MTU=1500 IP_A=10.244.1.2 IP_B=10.244.1.3
  fi
  t0=$(date +%s.%N)
  if is_xnode "$CONFIG"; then ns_add "$NS_N1"; ns_add "$NS_N2"; else ns_add "$NS_N"; fi
  ns_add "$NS_A"; ns_add "$NS_B"
  case "$CONFIG" in
    vswitchd)           setup_vswitchd ;;
    vswitchd-ct)        setup_vswitchd ct ;;
    kernel-bridge)      setup_kernel_bridge ;;
    kernel-bridge-ct)   setup_kernel_bridge; setup_bridge_ct ;;
    vswitchd-svc)       setup_vswitchd_svc ;;
    vswitchd-k8s)       setup_vswitchd_np 0 ;;
    vswitchd-np)        setup_vswitchd_np 1 ;;
    kernel-bridge-svc)  setup_kernel_bridge_svc ;;
    ovs-tap-tso)        SRC_IF=tap-a DST_IF=tap-b; setup_ovs 1 ;;
    ovs-tap-tso-ct)     SRC_IF=tap-a DST_IF=tap-b; setup_ovs 1 ct ;;
    ovs-tap)            SRC_IF=tap-a DST_IF=tap-b; setup_ovs 0 ;;
    vswitchd-2node)     setup_vswitchd_2node ;;
    kernel-vxlan-2node) setup_kernel_vxlan_2node ;;
    ovs-vxlan-2node)    SRC_IF=tap-a DST_IF=tap-b; setup_ovs_vxlan_2node ;;
  esac
  for i in $(seq 1 50); do
    if ip netns exec "$NS_A" ping -c 1 -W 1 "$IP_B" >/dev/null 2>&1; then ok=1; break; fi
    sleep 0.2
  done
  t1=$(date +%s.%N)
  [ $ok = 1 ] || die "$CONFIG: pod A cannot ping pod B ($IP_B) after setup"
  case "$CONFIG" in *-svc) svc_check ;; esac
  emit 0 setup_seconds "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}')"
}

# ---------------------------------------------------------------- measurement helpers
HZ=$(getconf CLK_TCK)
emit() { printf '%s\t%s\t%s\t%s\n' "$CONFIG" "$1" "$2" "$3" >> "${EMIT_FILE:-$TSV}"; }
EMIT_FILE=""

cpu_busy() { awk '/^cpu /{t=0; for(i=2;i<=NF;i++) t+=$i; print t-$5-$6}' /proc/stat; }
proc_jiffies() { # <pid>: "utime stime" (all threads)
  if [ -n "$1" ] && [ -r "/proc/$1/stat" ]; then
    awk '{sub(/^.*\) /,""); print $12, $13}' "/proc/$1/stat"
  else echo "0 0"; fi
}
pids_jiffies() { # <pid...>: "utime stime" summed over the processes
  local p u s tu=0 ts=0
  for p in "$@"; do read -r u s < <(proc_jiffies "$p"); tu=$((tu + u)) ts=$((ts + s)); done
  echo "$tu $ts"
}
thread_snap() { # <pid...>: "tid utime stime comm" per thread (comm prefixed "nN/" with several processes)
  local t p n=0 pre=""
  for p in "$@"; do
    n=$((n + 1))
    if [ $# -gt 1 ]; then pre="n$n/"; fi
    [ -d "/proc/$p/task" ] || continue
    for t in /proc/"$p"/task/*; do
      awk -v pre="$pre" '{i=index($0,"("); j=match($0,/\) [A-Za-z] /); comm=substr($0,i+1,j-i-1); gsub(/ /,"_",comm)
            split(substr($0,j+2),a," "); print $1, a[12], a[13], pre comm}' "$t/stat" 2>/dev/null || true
    done
  done
}
# CPU used by processes that are not part of this benchmark (other work on a shared box).
# Kernel threads are left out: they may be doing our softirq work.
foreign_snap() {
  # (a process may end between the glob and the read: cat then fails, which is fine)
  { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk '{
    i=index($0,"("); j=match($0, /\) [A-Za-z] /); if (!i || !j) next
    pid=$1; comm=substr($0,i+1,j-i-1); n=split(substr($0,j+2),a," ")
    if (pid==2 || a[2]==2) next
    if (comm ~ /^(iperf3|vswitchd|vswitchctl|ovs-vswitchd|ovsdb-server|ovs-vsctl|ovs-appctl|ovs-ofctl|udpflood|connrate|tcprr|iptables|iptables-restor|gzip|ping|timeout|bench.sh|bash|awk|cat|sleep|ip|jq|tr|tac|ss|seq|date|grep|sed|sort|ethtool)$/) next
    print pid, a[12]+a[13] }'
}
foreign_delta() { awk 'NR==FNR{b[$1]=$2; next} {d=$2-(($1 in b)?b[$1]:0); if (d>0) s+=d} END{print s+0}' "$1" "$2"; }

busy_pct_over() { # <seconds>: busy CPU over that interval, % of one core
  local c0 c1
  c0=$(cpu_busy); sleep "$1"; c1=$(cpu_busy)
  awk -v a="$c0" -v b="$c1" -v hz="$HZ" -v s="$1" 'BEGIN{printf "%.0f", (b-a)/hz/s*100}'
}
wait_quiet() { # emits <tag>_pre_busy_pct
  local rep=$1 tag=$2 t0 busy
  t0=$(date +%s)
  while :; do
    busy=$(busy_pct_over 1)
    [ "$busy" -le "$QUIET_MAX" ] && break
    if [ $(( $(date +%s) - t0 )) -ge "$QUIET_WAIT" ]; then
      log "  box busy (${busy}% of a core) for ${QUIET_WAIT}s; measuring anyway"; break
    fi
  done
  emit "$rep" "${tag}_pre_busy_pct" "$busy"
}

ns_stat() { # <ns> <ifname> <counter>: /sys/class/net/<if>/statistics/<counter> in the namespace
  ip netns exec "$1" cat "/sys/class/net/$2/statistics/$3" 2>/dev/null || echo 0
}
udp_rcvbuf_errors() { # <ns>
  # shellcheck disable=SC2016
  ip netns exec "$1" awk '/^Udp:/{n++; if(n==1){for(i=1;i<=NF;i++) h[i]=$i} else {for(i=1;i<=NF;i++) if(h[i]=="RcvbufErrors") print $i}}' /proc/net/snmp
}
softnet_dropped() { # all CPUs' backlog drops (the 2nd column, hex)
  local _p d s=0
  while read -r _p d _; do s=$((s + 16#$d)); done < /proc/net/softnet_stat
  echo "$s"
}

switch_ports() { # the switch's port counters (vswitchd configs only)
  local n
  case "$CONFIG" in
    vswitchd|vswitchd-ct|vswitchd-svc|vswitchd-k8s|vswitchd-np) ctl dump-ports ;;
    vswitchd-2node) for n in 1 2; do echo "--- node $n"; ctl_n "$n" dump-ports; done ;;
  esac
}

# A measurement window: wait for an idle box, run the command, record the box's busy CPU,
# the switch's CPU (total, user/system, per node, per thread), other workloads' CPU and
# the loss counters outside the switch (pod A's interface queue, iperf3's socket in pod B,
# and across nodes the UDP sockets of node 2's namespace: vswitchd's tunnel socket).
WIN_SWITCH_CPU="" WIN_SYS_CPU="" WIN_FOREIGN="" WIN_TXDROP="" WIN_RCVBUF="" WIN_SOFTNET="" WIN_NODE_RCVBUF=0
measure_window() { # <rep> <tag> <raw file base> <cmd...>
  local rep=$1 tag=$2 base=$3; shift 3
  local c0 c1 u0 s0 u1 s1 t0 t1 fg0 fg1 th0 th1 el d0 d1 r0 r1 n0 n1 q0=0 q1=0 p i
  local -a pj0=() pj1=()
  # shellcheck disable=SC2206
  local -a spids=($SWITCH_PIDS)
  wait_quiet "$rep" "$tag"
  fg0=$STATE/fg0 fg1=$STATE/fg1 th0=$STATE/th0 th1=$STATE/th1
  foreign_snap > "$fg0"; thread_snap "${spids[@]}" > "$th0"
  d0=$(ns_stat "$NS_A" "$SRC_IF" tx_dropped); r0=$(udp_rcvbuf_errors "$NS_B"); n0=$(softnet_dropped)
  if [ -n "$NS_N2" ]; then q0=$(udp_rcvbuf_errors "$NS_N2"); fi
  switch_ports > "$base.ports.txt" 2>&1 || true
  [ -s "$base.ports.txt" ] || rm -f "$base.ports.txt"
  for p in "${spids[@]}"; do pj0+=("$(pids_jiffies "$p" | awk '{print $1 + $2}')"); done
  c0=$(cpu_busy); read -r u0 s0 < <(pids_jiffies "${spids[@]}"); t0=$(date +%s.%N)
  "$@"
  c1=$(cpu_busy); read -r u1 s1 < <(pids_jiffies "${spids[@]}"); t1=$(date +%s.%N)
  for p in "${spids[@]}"; do pj1+=("$(pids_jiffies "$p" | awk '{print $1 + $2}')"); done
  foreign_snap > "$fg1"; thread_snap "${spids[@]}" > "$th1"
  d1=$(ns_stat "$NS_A" "$SRC_IF" tx_dropped); r1=$(udp_rcvbuf_errors "$NS_B"); n1=$(softnet_dropped)
  if [ -n "$NS_N2" ]; then q1=$(udp_rcvbuf_errors "$NS_N2"); fi
  if [ -e "$base.ports.txt" ]; then { echo "--- after"; switch_ports; } >> "$base.ports.txt" 2>&1 || true; fi
  el=$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')
  WIN_FOREIGN=$(awk -v a="$(foreign_delta "$fg0" "$fg1")" -v s="$el" -v hz="$HZ" 'BEGIN{printf "%.0f", a/hz/s*100}')
  WIN_SYS_CPU=$(awk -v a="$c0" -v b="$c1" -v s="$el" -v hz="$HZ" 'BEGIN{printf "%.0f", (b-a)/hz/s*100}')
  WIN_TXDROP=$((d1 - d0)) WIN_RCVBUF=$((r1 - r0)) WIN_SOFTNET=$((n1 - n0)) WIN_NODE_RCVBUF=$((q1 - q0))
  emit "$rep" "${tag}_foreign_cpu_pct" "$WIN_FOREIGN"
  emit "$rep" "${tag}_sys_cpu_pct" "$WIN_SYS_CPU"
  WIN_SWITCH_CPU=""
  if [ ${#spids[@]} -gt 1 ]; then
    for i in "${!spids[@]}"; do
      emit "$rep" "${tag}_switch_n$((i + 1))_cpu_pct" "$(awk -v a=$((pj1[i] - pj0[i])) -v s="$el" -v hz="$HZ" 'BEGIN{printf "%.0f", a/hz/s*100}')"
    done
  fi
  if [ ${#spids[@]} -gt 0 ]; then
    WIN_SWITCH_CPU=$(awk -v a=$((u1 + s1 - u0 - s0)) -v s="$el" -v hz="$HZ" 'BEGIN{printf "%.0f", a/hz/s*100}')
    emit "$rep" "${tag}_switch_cpu_pct" "$WIN_SWITCH_CPU"
    emit "$rep" "${tag}_switch_usr_pct" "$(awk -v a=$((u1 - u0)) -v s="$el" -v hz="$HZ" 'BEGIN{printf "%.0f", a/hz/s*100}')"
    emit "$rep" "${tag}_switch_sys_pct" "$(awk -v a=$((s1 - s0)) -v s="$el" -v hz="$HZ" 'BEGIN{printf "%.0f", a/hz/s*100}')"
    awk -v s="$el" -v hz="$HZ" 'NR==FNR{u[$1]=$2; k[$1]=$3; next}
      {du=$2-u[$1]; dk=$3-k[$1]; printf "%-8s %-22s usr %5.1f%%  sys %5.1f%%  total %5.1f%%\n", $1, $4, du/hz/s*100, dk/hz/s*100, (du+dk)/hz/s*100}' \
      "$th0" "$th1" > "$base.threads.txt"
  fi
  if [ "$tag" != ping ]; then
    emit "$rep" "${tag}_src_if_tx_dropped" "$WIN_TXDROP"
    emit "$rep" "${tag}_rcvbuf_errors" "$WIN_RCVBUF"
    emit "$rep" "${tag}_softnet_dropped" "$WIN_SOFTNET"
    if [ -n "$NS_N2" ]; then emit "$rep" "${tag}_node2_rcvbuf_errors" "$WIN_NODE_RCVBUF"; fi
  fi
  rm -f "$fg0" "$fg1" "$th0" "$th1"
}

# Run a (bounded) command in the background and wait for it: unlike a foreground command,
# `wait` returns at once on Ctrl-C, so the traps run and clean up without delay.
# The output file is an argument: a redirection around the call would also catch what the
# traps print.
bounded() { # <output file> <command...>
  local out=$1; shift
  "$@" > "$out" 2>&1 &
  wait "$!"
}
iperf_client() { # <out json> <extra args...>
  local out=$1; shift
  bounded "$out" timeout $((DUR + 20)) ip netns exec "$NS_A" iperf3 -c "$IP_B" -p "$PORT" -t "$DUR" \
      --connect-timeout 3000 -J "$@" || log "  iperf3 client exited non-zero, see $out"
}
ping_once() {
  bounded "$1" timeout $((PING_COUNT / 20 + 30)) ip netns exec "$NS_A" ping -c "$PING_COUNT" -i "$PING_INTERVAL" -W 1 "$IP_B" || true
}

jqn() { jq -r "$1" "$2" 2>/dev/null || echo NA; }

test_tcp() { # <rep> <base>
  local r=$1 f=$2.json
  measure_window "$r" tcp "$2" iperf_client "$f"
  emit "$r" tcp_gbps "$(jqn '(.end.sum_received.bits_per_second // 0) / 1e9 | . * 1000 | round / 1000' "$f")"
  emit "$r" tcp_retrans "$(jqn '.end.sum_sent.retransmits // "NA"' "$f")"
}
test_udp() {
  local r=$1 f=$2.json
  measure_window "$r" udp "$2" iperf_client "$f" -u -l "$UDP_SIZE" -b 0
  emit "$r" udp_tx_kpps "$(jqn '.end.sum_sent | (.packets / .seconds / 1000) | .*10 | round / 10' "$f")"
  emit "$r" udp_rx_kpps "$(jqn '.end.sum_received | ((.packets - .lost_packets) / .seconds / 1000) | .*10 | round / 10' "$f")"
  emit "$r" udp_loss_pct "$(jqn '.end.sum_received.lost_percent | .*100 | round / 100' "$f")"
  # Where the loss happened: at pod A's interface queue (the datapath did not take the
  # packets in time: tx_dropped of the TAP or veth) or at iperf3's socket in pod B
  # (RcvbufErrors). What the datapath forwarded = sent - dropped at pod A.
  emit "$r" udp_fwd_kpps "$(jqn ".end.sum_sent | ((.packets - $WIN_TXDROP) / .seconds / 1000) | .*10 | round / 10" "$f")"
  emit "$r" udp_drop_src_pct "$(jqn ".end.sum_sent | if .packets > 0 then ($WIN_TXDROP / .packets * 100) else 0 end | .*100 | round / 100" "$f")"
  emit "$r" udp_drop_rcvsock_pct "$(jqn ".end.sum_sent | if .packets > 0 then ($WIN_RCVBUF / .packets * 100) else 0 end | .*100 | round / 100" "$f")"
  # Across nodes, also at node 2's UDP sockets (vswitchd's VXLAN socket; the kernel vxlan
  # device and OVS's AF_PACKET underlay do not queue there).
  if [ -n "$NS_N2" ]; then
    emit "$r" udp_drop_tunnel_pct "$(jqn ".end.sum_sent | if .packets > 0 then ($WIN_NODE_RCVBUF / .packets * 100) else 0 end | .*100 | round / 100" "$f")"
  fi
}
test_ping() {
  local r=$1 f=$2.txt
  measure_window "$r" ping "$2" ping_once "$f"
  awk -v rep="$r" -v cfg="$CONFIG" '
    /time=/ { for (i=1;i<=NF;i++) if ($i ~ /^time=/) { sub("time=","",$i); v[n++]=$i+0 } }
    /packets transmitted/ { for (i=1;i<=NF;i++) if ($i ~ /%$/) loss=$i }
    END {
      if (n==0) { print cfg"\t"rep"\tping_received\t0"; exit }
      for (i=1;i<n;i++){x=v[i];j=i-1;while(j>=0&&v[j]>x){v[j+1]=v[j];j--}v[j+1]=x}
      s=0; for (i=0;i<n;i++) s+=v[i]
      sub("%","",loss)
      printf "%s\t%s\tping_avg_ms\t%.3f\n", cfg, rep, s/n
      printf "%s\t%s\tping_p50_ms\t%.3f\n", cfg, rep, v[int(0.50*(n-1)+0.5)]
      printf "%s\t%s\tping_p99_ms\t%.3f\n", cfg, rep, v[int(0.99*(n-1)+0.5)]
      printf "%s\t%s\tping_max_ms\t%.3f\n", cfg, rep, v[n-1]
      printf "%s\t%s\tping_loss_pct\t%s\n", cfg, rep, loss
    }' "$f" >> "${EMIT_FILE:-$TSV}"
}

# Run a test; redo it (up to RETRIES times) when other processes used more than
# FOREIGN_MAX % of a core during its window. Redone attempts' raw files are kept as
# *.contended-N; only the last attempt's figures go to results.tsv.
attempt() { # <rep> <tag> <fn>
  local r=$1 tag=$2 fn=$3 n=0 fg base f
  while :; do
    n=$((n + 1))
    if [ "$n" = 1 ]; then log "$CONFIG rep $r/$REPS: $tag"; else log "$CONFIG rep $r/$REPS: $tag (attempt $n)"; fi
    base=$RUN/$tag-$r
    EMIT_FILE=$STATE/pending; : > "$EMIT_FILE"
    "$fn" "$r" "$base"
    fg=$(awk -F'\t' -v m="${tag}_foreign_cpu_pct" '$3==m{print $4}' "$EMIT_FILE")
    if [ "${fg:-0}" -le "$FOREIGN_MAX" ] || [ "$n" -gt "$RETRIES" ]; then break; fi
    log "  other processes used ${fg}% of a core during the window: redoing"
    for f in "$base".*; do case "$f" in *.contended-*) ;; *) if [ -e "$f" ]; then mv "$f" "$f.contended-$n"; fi;; esac; done
  done
  EMIT_FILE=""
  cat "$STATE/pending" >> "$TSV"; rm -f "$STATE/pending"
  emit "$r" "${tag}_attempts" "$n"
}

# ---------------------------------------------------------------- connection tracking, connection rate
# The tracked connections of the config's datapath (the -ct configs): their dump goes to
# <file>, their count to stdout.
ct_dump() { # <file>
  case "$CONFIG" in
    vswitchd-ct|vswitchd-svc|vswitchd-k8s|vswitchd-np)  ctl dump-conntrack -s ;;
    ovs-tap-tso-ct)   appctl_d "$OVS_DIR" dpctl/dump-conntrack -s ;;
    kernel-bridge-ct|kernel-bridge-svc) ip netns exec "$NS_N" cat /proc/net/nf_conntrack ;;
  esac > "$1" 2>&1 || true
  grep -c . "$1" || true
}
ct_record() { # <when>: emit ct_entries_<when>, keep the dump
  local n
  case "$CONFIG" in *-ct|*-svc|*-k8s|*-np) ;; *) return 0;; esac
  n=$(ct_dump "$RUN/conntrack-$1.txt")
  gzip -f "$RUN/conntrack-$1.txt"
  emit 0 "ct_entries_$1" "${n:-0}"
  log "  $CONFIG: ${n:-0} tracked connections ($1)"
}

# A server in pod B for one window only, bounded by its own --secs and by timeout; sets
# SRV_PID for server_stop.
SRV_PID=""
server_start() { # <out file> <port> <secs> <command...>
  local out=$1 port=$2 secs=$3 i; shift 3
  timeout $((secs + 15)) ip netns exec "$NS_B" "$@" > "$out" 2>&1 &
  SRV_PID=$!
  pid_record timeout "$SRV_PID"
  for i in $(seq 1 50); do
    ip netns exec "$NS_B" ss -Hltn "sport = :$port" 2>/dev/null | grep -q . && return 0
    sleep 0.1
  done
  log "  nothing listens on port $port in pod B"
}
server_stop() {
  kill_pid_checked "$SRV_PID" timeout
  wait "$SRV_PID" 2>/dev/null || true
  sed -i "/^timeout $SRV_PID\$/d" "$PIDS_FILE"
  SRV_PID=""
}

conn_client() { # <out file> <ADDR:PORT>
  bounded "$1" timeout $((CONN_SECS + 15)) ip netns exec "$NS_A" "$BIN/connrate" client "$2" \
      --secs "$CONN_SECS" --threads "$CONN_THREADS" || log "  connrate client exited non-zero, see $1"
}
# connrate to <dst> (pod B directly, or the ClusterIP): <tag>_per_sec, <tag>_failures
conn_test() { # <rep> <base> <ADDR:PORT> <tag>
  local r=$1 base=$2 dst=$3 tag=$4 v
  server_start "$base.server.txt" "$CONN_PORT" $((CONN_SECS + 45)) \
      "$BIN/connrate" server "$IP_B:$CONN_PORT" --secs $((CONN_SECS + 45)) --threads "$CONN_THREADS"
  case "$tag" in *_svc) pod_a_ports svc;; *) pod_a_ports direct;; esac
  measure_window "$r" "$tag" "$base" conn_client "$base.txt" "$dst"
  server_stop
  v=$(sed -n 's/.*connections_per_sec=\([0-9]*\).*/\1/p' "$base.txt")
  emit "$r" "${tag}_per_sec" "${v:-NA}"
  v=$(sed -n 's/.* failures=\([0-9]*\).*/\1/p' "$base.txt")
  emit "$r" "${tag}_failures" "${v:-NA}"
}
test_conn() { conn_test "$1" "$2" "$IP_B:$CONN_PORT" conn; }
test_conn_svc() { conn_test "$1" "$2" "$SVC_IP:$SVC_CONN_PORT" conn_svc; }

# RR_AWAKE=1: during a tcprr window, a SCHED_IDLE busy loop on every CPU. This VM's
# kernel runs with haltpoll.guest_halt_poll_ns=0: an idle vCPU halts, and every wake-up
# of the client, the server or a switch worker on it costs an exit to the host. One
# transaction at a time has two or more such wake-ups, and they, not the datapath, then
# set the round trip (p50 about 70 µs through the bridge when the box was otherwise
# idle, 20 µs when other work kept the CPUs busy, in the same run). A SCHED_IDLE task
# gives way at once to any other, so it takes no time from the benchmark's processes.
AWAKE_PIDS=""
awake_on() {
  local c
  [ "$RR_AWAKE" = 1 ] || return 0
  for c in $(seq 0 $(($(getconf _NPROCESSORS_ONLN) - 1))); do
    timeout $((RR_SECS + 20)) chrt --idle 0 taskset -c "$c" bash -c 'while :; do :; done' &
    AWAKE_PIDS="$AWAKE_PIDS $!"
    pid_record timeout "$!"
  done
}
awake_off() {
  local p
  for p in $AWAKE_PIDS; do
    kill_pid_checked "$p" timeout
    wait "$p" 2>/dev/null || true
    sed -i "/^timeout $p\$/d" "$PIDS_FILE"
  done
  AWAKE_PIDS=""
}
rr_client() { # <out file> <ADDR:PORT>
  awake_on
  bounded "$1" timeout $((RR_SECS + 15)) ip netns exec "$NS_A" "$BIN/tcprr" client "$2" \
      --secs "$RR_SECS" --size "$RR_SIZE" || log "  tcprr client exited non-zero, see $1"
  awake_off
}
# tcprr to <dst>: <tag>_tps (transactions a second), <tag>_{mean,p50,p99,p999}_us, <tag>_failures
rr_test() { # <rep> <base> <ADDR:PORT> <tag>
  local r=$1 base=$2 dst=$3 tag=$4 v m
  server_start "$base.server.txt" "$RR_PORT" $((RR_SECS + 45)) \
      "$BIN/tcprr" server "$IP_B:$RR_PORT" --secs $((RR_SECS + 45))
  case "$tag" in *_svc) pod_a_ports svc;; *) pod_a_ports direct;; esac
  measure_window "$r" "$tag" "$base" rr_client "$base.txt" "$dst"
  server_stop
  v=$(sed -n 's/.*transactions_per_sec=\([0-9]*\).*/\1/p' "$base.txt")
  emit "$r" "${tag}_tps" "${v:-NA}"
  for m in mean p50 p99 p999; do
    v=$(sed -n "s/.* ${m}_us=\\([0-9.]*\\).*/\\1/p" "$base.txt")
    emit "$r" "${tag}_${m}_us" "${v:-NA}"
  done
  v=$(sed -n 's/.* failures=\([0-9]*\).*/\1/p' "$base.txt")
  emit "$r" "${tag}_failures" "${v:-NA}"
}
test_rr() { rr_test "$1" "$2" "$IP_B:$RR_PORT" rr; }
test_rr_svc() { rr_test "$1" "$2" "$SVC_IP:$SVC_RR_PORT" rr_svc; }

# REPS reps of <tag> (<fn>), and in the -svc configs of <tag>_svc (<fn>_svc) as well, the
# two taking turns to go first from rep to rep (neither always runs on the box as the
# other left it).
reps_direct_and_svc() { # <tag> <fn>
  local tag=$1 fn=$2 r
  for r in $(seq 1 "$REPS"); do
    case "$CONFIG" in
      *-svc)
        if [ $((r % 2)) = 1 ]; then
          sleep 1; attempt "$r" "$tag" "$fn"; sleep 1; attempt "$r" "${tag}_svc" "${fn}_svc"
        else
          sleep 1; attempt "$r" "${tag}_svc" "${fn}_svc"; sleep 1; attempt "$r" "$tag" "$fn"
        fi ;;
      *) sleep 1; attempt "$r" "$tag" "$fn" ;;
    esac
  done
}

record_env() {
  local ns ifn n d
  {
    echo "config: $CONFIG   date: $(date -Is)"
    echo "setup: $(awk -F'\t' -v c="$CONFIG" '$1==c && $3=="setup_seconds"{print $4" s"}' "$TSV")"
    for ns in "$NS_A:$SRC_IF" "$NS_B:$DST_IF"; do
      ifn=${ns#*:}; ns=${ns%%:*}
      echo "--- $ns $ifn"
      ip -n "$ns" -d link show "$ifn"
      ip -n "$ns" -br addr show "$ifn"
      ip netns exec "$ns" ethtool -k "$ifn" 2>/dev/null | grep -E '^(tx-checksumming|rx-checksumming|scatter-gather|tcp-segmentation-offload|generic-segmentation-offload|generic-receive-offload|tx-udp-segmentation):' || true
    done
    for ns in "$NS_N1" "$NS_N2"; do
      [ -n "$ns" ] || continue
      echo "--- node $ns"
      ip -n "$ns" -d link show ul0
      ip -n "$ns" -br addr
      ip -n "$ns" route
      ip netns exec "$ns" ethtool -k ul0 2>/dev/null | grep -E '^(tx-checksumming|tcp-segmentation-offload|generic-segmentation-offload|generic-receive-offload):' || true
    done
    if [ -n "$NS_N1" ]; then echo "--- pod A routes"; ip -n "$NS_A" route; fi
    case "$CONFIG" in
      vswitchd|vswitchd-ct) echo "--- vswitchctl show"; ctl show; echo "--- flows"; ctl dump-flows;;
      vswitchd-k8s|vswitchd-np)
        echo "--- vswitchctl show"; ctl show; echo "--- policy tables"; ctl dump-flows --names 'table=6' 2>/dev/null | head -100
        ctl dump-flows --names 'table=8' 2>/dev/null | head -100;;
      vswitchd-svc)
        echo "--- vswitchctl show"; ctl show; echo "--- pods"; ctl list-pods || true
        echo "--- flows and groups (without the other Services)"
        ctl dump-flows --names 2>/dev/null | grep -v 'bench/dummy-' || ctl dump-flows | head -200
        ctl dump-groups --names 2>/dev/null | grep -v 'bench/dummy-' || true
        echo "--- node routes"; ip -n "$NS_N" route;;
      kernel-bridge-ct|kernel-bridge-svc)
        echo "--- node: bridge-nf-call-iptables=$(ip netns exec "$NS_N" cat /proc/sys/net/bridge/bridge-nf-call-iptables) (global $(cat /proc/sys/net/bridge/bridge-nf-call-iptables))"
        echo "--- node: ip_forward=$(ip netns exec "$NS_N" cat /proc/sys/net/ipv4/ip_forward)"
        ip netns exec "$NS_N" iptables -w 5 -S FORWARD
        if [ "$CONFIG" = kernel-bridge-svc ]; then
          echo "--- nat: $(ip netns exec "$NS_N" iptables -w 5 -t nat -S | grep -c '^-A') rules, $(ip netns exec "$NS_N" iptables -w 5 -t nat -S KUBE-SERVICES | grep -c '^-A') in KUBE-SERVICES; the Service's:"
          ip netns exec "$NS_N" iptables -w 5 -t nat -S | grep 'bench-web'
          echo "--- pod A routes"; ip -n "$NS_A" route
        fi;;
      vswitchd-2node)
        for n in 1 2; do
          echo "--- node $n: vswitchctl show / list-ports / list-pods"
          ctl_n "$n" show; ctl_n "$n" list-ports || true; ctl_n "$n" list-pods || true
          ctl_n "$n" list-nodes || true
          ip -n "$(node_ns "$n")" -d link show vsw-gw0 || true
        done;;
      kernel-vxlan-2node)
        for n in 1 2; do echo "--- node $n: vxlan1"; ip -n "$(node_ns "$n")" -d link show vxlan1; done;;
      ovs-vxlan-2node)
        for d in $OVS_DIRS; do
          echo "--- ovs $d"; vsctl_d "$d" show; ofctl_d "$d" br-int dump-flows
          appctl_d "$d" ovs/route/show || true; appctl_d "$d" tnl/neigh/show || true
        done;;
      ovs-*) echo "--- ovs"; vsctl show; vsctl get Open_vSwitch . other_config; ofctl dump-flows;;
    esac
    echo "--- loadavg before: $(cat /proc/loadavg)"
    echo "--- top CPU consumers before:"; ps -eo pid,pcpu,comm --sort=-pcpu | head -6
  } > "$RUN/env.txt" 2>&1
}

# ---------------------------------------------------------------- zero-loss search (udpflood)
# The receiver starts first (bounded by its --secs and by timeout); the measurement window
# (CPU, drop counters) covers the sender only.
ZL_LAST_TX=0 ZL_LAST_RX=0 ZL_LAST_LOSS=100 ZL_FLOWS=1
zl_send() { # <rate> <out file>
  bounded "$2" timeout $((ZL_SECS + 10)) ip netns exec "$NS_A" "$BIN/udpflood" send --dst "$IP_B:$ZL_PORT" \
      --rate "$1" --secs "$ZL_SECS" --size "$UDP_SIZE" --threads "$ZL_FLOWS" || true
}
zl_once() { # <rate> <raw file base>
  local rate=$1 base=$2 rpid i
  timeout $((ZL_SECS + 15)) ip netns exec "$NS_B" "$BIN/udpflood" recv --bind "$IP_B:$ZL_PORT" \
      --secs $((ZL_SECS + 8)) --idle 1 --threads "$ZL_RECV_THREADS" > "$base.recv.txt" 2>&1 &
  rpid=$!
  pid_record timeout "$rpid"
  for i in $(seq 1 50); do
    ip netns exec "$NS_B" ss -Hlun "sport = :$ZL_PORT" 2>/dev/null | grep -q . && break
    sleep 0.1
  done
  measure_window 0 zl "$base" zl_send "$rate" "$base.send.txt"
  wait "$rpid" || true
  sed -i "/^timeout $rpid\$/d" "$PIDS_FILE"
}
zl_step() { # <kind> <step> <rate>: one run (redone once if contended); sets ZL_LAST_*
  local kind=$1 step=$2 rate=$3 base n=0 tx rx loss f
  while :; do
    n=$((n + 1))
    base=$RUN/zl-f$ZL_FLOWS-$kind-$step
    EMIT_FILE=$STATE/pending; : > "$EMIT_FILE"
    zl_once "$rate" "$base"
    EMIT_FILE=""; rm -f "$STATE/pending"
    if [ "${WIN_FOREIGN:-0}" -le "$FOREIGN_MAX" ] || [ "$n" -gt 1 ]; then break; fi
    log "  other processes used ${WIN_FOREIGN}% of a core: redoing this step"
    for f in "$base".*; do case "$f" in *.contended-*) ;; *) if [ -e "$f" ]; then mv "$f" "$f.contended-$n"; fi;; esac; done
  done
  tx=$(sed -n 's/.*sent packets=\([0-9]*\).*/\1/p' "$base.send.txt")
  rx=$(sed -n 's/.*received packets=\([0-9]*\).*/\1/p' "$base.recv.txt")
  tx=${tx:-0} rx=${rx:-0}
  loss=$(awk -v t="$tx" -v r="$rx" 'BEGIN{ if (t>0) printf "%.3f", (t-r)/t*100; else print 100 }')
  ZL_LAST_TX=$(awk -v t="$tx" -v s="$ZL_SECS" 'BEGIN{printf "%.0f", t/s}')
  ZL_LAST_RX=$(awk -v t="$rx" -v s="$ZL_SECS" 'BEGIN{printf "%.0f", t/s}')
  ZL_LAST_LOSS=$loss
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$CONFIG" "$ZL_FLOWS" "$kind" "$step" "$rate" \
    "$ZL_LAST_TX" "$ZL_LAST_RX" "$loss" "$WIN_TXDROP" "$WIN_RCVBUF" "$WIN_SOFTNET" \
    "${WIN_SWITCH_CPU:--}" "$WIN_SYS_CPU" "$WIN_FOREIGN" >> "$ZTSV"
  log "  $ZL_FLOWS flow(s) $kind $step: requested $rate pps -> sent $ZL_LAST_TX, received $ZL_LAST_RX pps, loss $loss % (switch cpu ${WIN_SWITCH_CPU:--}%, box $WIN_SYS_CPU%, pod A tx_dropped $WIN_TXDROP, pod B rcvbuf errors $WIN_RCVBUF, softnet drops $WIN_SOFTNET)"
}
zl_pass() { awk -v l="$ZL_LAST_LOSS" -v m="$ZL_LOSS" 'BEGIN{exit !(l < m)}'; }

zero_loss_search() { # for each flow count in ZL_THREADS
  local lo hi best_rx best_req i mid c m req b ok rxs losses min_rx v
  for ZL_FLOWS in $ZL_THREADS; do
    m=zl_f$ZL_FLOWS
    lo=0 best_rx=0 best_req=0
    log "$CONFIG: zero-loss search, $ZL_FLOWS flow(s) (udpflood, $UDP_SIZE-byte payload, ${ZL_SECS}s per step)"
    zl_step unpaced 0 0
    emit 0 "${m}_unpaced_tx_kpps" "$(awk -v v="$ZL_LAST_TX" 'BEGIN{printf "%.1f", v/1000}')"
    emit 0 "${m}_unpaced_rx_kpps" "$(awk -v v="$ZL_LAST_RX" 'BEGIN{printf "%.1f", v/1000}')"
    emit 0 "${m}_unpaced_loss_pct" "$ZL_LAST_LOSS"
    hi=$ZL_LAST_TX
    if zl_pass; then
      # The sender, not the datapath, is the limit.
      best_rx=$ZL_LAST_RX
      emit 0 "${m}_sender_bound" 1
    else
      for i in $(seq 1 "$ZL_STEPS"); do
        mid=$(( (lo + hi) / 2 ))
        zl_step bisect "$i" "$mid"
        if zl_pass; then
          lo=$mid
          if [ "$ZL_LAST_RX" -gt "$best_rx" ]; then best_rx=$ZL_LAST_RX best_req=$mid; fi
        else
          hi=$mid
        fi
      done
    fi
    emit 0 "${m}_limit_kpps" "$(awk -v v="$best_rx" 'BEGIN{printf "%.1f", v/1000}')"
    emit 0 "${m}_limit_req_pps" "$best_req"
    # Confirm: ZL_CONFIRM more runs at the limit must all pass; when one does not, step the
    # rate down by 10 % and confirm again (up to ZL_BACKOFF times). Only a rate that passed
    # every confirmation run is reported as confirmed.
    if [ "$best_req" -gt 0 ] && [ "$ZL_CONFIRM" -gt 0 ]; then
      req=$best_req
      for b in $(seq 0 "$ZL_BACKOFF"); do
        ok=1 rxs="" losses="" min_rx=""
        for c in $(seq 1 "$ZL_CONFIRM"); do
          zl_step confirm "$b-$c" "$req"
          rxs="$rxs $ZL_LAST_RX" losses="$losses $ZL_LAST_LOSS"
          if [ -z "$min_rx" ] || [ "$ZL_LAST_RX" -lt "$min_rx" ]; then min_rx=$ZL_LAST_RX; fi
          zl_pass || ok=0
        done
        [ "$ok" = 1 ] && break
        [ "$b" -lt "$ZL_BACKOFF" ] && log "  a confirmation run lost ≥ $ZL_LOSS %: stepping the rate down 10 %"
        req=$(( req * 9 / 10 ))
      done
      c=0
      for v in $rxs; do c=$((c + 1)); emit "$c" "${m}_confirm_rx_kpps" "$(awk -v v="$v" 'BEGIN{printf "%.1f", v/1000}')"; done
      c=0
      for v in $losses; do c=$((c + 1)); emit "$c" "${m}_confirm_loss_pct" "$v"; done
      if [ "$ok" = 1 ]; then
        emit 0 "${m}_confirmed_kpps" "$(awk -v v="$min_rx" 'BEGIN{printf "%.1f", v/1000}')"
        emit 0 "${m}_confirmed_req_pps" "$req"
        emit 0 "${m}_confirmed_steps_down" "$b"
      else
        emit 0 "${m}_confirmed_kpps" "none"
      fi
    fi
  done
}

# ---------------------------------------------------------------- one config
# Count the switch logs' warnings and errors (they go into the summary, the lines into
# RUN/log-problems.txt).
log_problems() {
  local f w e
  for f in "$RUN"/vswitchd*.log; do
    [ -e "$f" ] || continue
    w=$(grep -c -E '^[^ ]+ +WARN ' "$f" || true)
    e=$(grep -c -E '^[^ ]+ +ERROR ' "$f" || true)
    emit 0 "log_warn_$(basename "$f" .log)" "${w:-0}"
    emit 0 "log_error_$(basename "$f" .log)" "${e:-0}"
    if [ "${w:-0}" -gt 0 ] || [ "${e:-0}" -gt 0 ]; then
      log "  $(basename "$f"): ${e:-0} error and ${w:-0} warning lines"
      { echo "--- $(basename "$f")"; grep -E '^[^ ]+ +(WARN|ERROR) ' "$f" | head -50; } >> "$RUN/log-problems.txt"
    fi
  done
}

run_config() { # <index>
  local k=$1 spid r i n d
  RUN=$RESULTS_DIR/$CONFIG
  mkdir -p "$RUN"
  log "=== $CONFIG: setup"
  setup_config "$k"
  record_env
  emit 0 pod_mtu "$(ip -n "$NS_A" -o link show "$SRC_IF" | sed -n 's/.* mtu \([0-9]*\).*/\1/p')"
  emit 0 pod_tso "$(ip netns exec "$NS_A" ethtool -k "$SRC_IF" | awk -F': ' '/^tcp-segmentation-offload/{split($2,a," "); print a[1]}')"
  emit 0 pod_txcsum "$(ip netns exec "$NS_A" ethtool -k "$SRC_IF" | awk -F': ' '/^tx-checksumming/{split($2,a," "); print a[1]}')"

  ip netns exec "$NS_B" iperf3 -s -p "$PORT" --idle-timeout 120 > "$RUN/iperf3-server.log" 2>&1 &
  spid=$!
  pid_record iperf3 "$spid"
  for i in $(seq 1 50); do
    ip netns exec "$NS_B" ss -Hltn "sport = :$PORT" 2>/dev/null | grep -q . && break
    sleep 0.1
  done
  ip netns exec "$NS_A" ping -c 3 -i 0.2 -W 1 "$IP_B" > /dev/null || log "warm-up ping failed"

  for r in $(seq 1 "$IPERF_REPS"); do
    attempt "$r" tcp test_tcp
    sleep 1
    attempt "$r" udp test_udp
    sleep 1
    attempt "$r" ping test_ping
  done
  kill_pid_checked "$spid" iperf3
  ct_record after_reps

  # Request/response on one connection, directly and (-svc) through the ClusterIP.
  if [ "$RR_SECS" != 0 ]; then
    reps_direct_and_svc rr test_rr
  fi

  # New TCP connections a second, after the throughput reps (its TIME_WAIT entries would
  # otherwise fill the conntrack tables under them). Pod A's own namespace gets port
  # reuse and a wide port range so TIME_WAIT does not cap the rate.
  if [ "$CONN_SECS" != 0 ]; then
    ip netns exec "$NS_A" sysctl -qw net.ipv4.tcp_tw_reuse=1
    case "$CONFIG" in
      *-svc) echo "--- pod A: tcp_tw_reuse=$(ip netns exec "$NS_A" cat /proc/sys/net/ipv4/tcp_tw_reuse) ip_local_port_range 1024-33279 to the Pod, 33280-65535 to the ClusterIP" >> "$RUN/env.txt" ;;
      *) ip netns exec "$NS_A" sysctl -qw "net.ipv4.ip_local_port_range=1024 65535"
         echo "--- pod A: tcp_tw_reuse=$(ip netns exec "$NS_A" cat /proc/sys/net/ipv4/tcp_tw_reuse) ip_local_port_range=$(ip netns exec "$NS_A" cat /proc/sys/net/ipv4/ip_local_port_range | tr '\t' ' ')" >> "$RUN/env.txt" ;;
    esac
    reps_direct_and_svc conn test_conn
    ct_record after_conn
  fi

  case " $ZL_CONFIGS " in *" $CONFIG "*) zero_loss_search ;; esac

  case "$CONFIG" in
    vswitchd|vswitchd-ct) { ctl show; ctl dump-ports; ctl dump-flows; } > "$RUN/vswitchd-final.txt" 2>&1 || true
              cp "$(vsw_dir)/vswitchd.log" "$RUN/" 2>/dev/null || true ;;
    vswitchd-2node)
              for n in 1 2; do
                { ctl_n "$n" show; ctl_n "$n" dump-ports; ctl_n "$n" dump-flows; ctl_n "$n" list-pods; } > "$RUN/vswitchd-node$n-final.txt" 2>&1 || true
                cp "$(vsw_dir "$n")/vswitchd.log" "$RUN/vswitchd-node$n.log" 2>/dev/null || true
                cp "$(vsw_dir "$n")/vswitchd.stderr" "$RUN/vswitchd-node$n.stderr" 2>/dev/null || true
                ip -n "$(node_ns "$n")" -s link show ul0 > "$RUN/ul0-node$n.txt" 2>&1 || true
              done ;;
    ovs-vxlan-2node)
              n=0
              for d in $OVS_DIRS; do
                n=$((n + 1))
                { ofctl_d "$d" br-int dump-ports; ofctl_d "$d" br-int dump-flows; ofctl_d "$d" br-phy dump-ports; appctl_d "$d" dpctl/show -s; } > "$RUN/ovs-node$n-final.txt" 2>&1 || true
                cp "$d/ovs-vswitchd.log" "$RUN/ovs-vswitchd-node$n.log" 2>/dev/null || true
              done ;;
    vswitchd-k8s|vswitchd-np)
              { ctl show; ctl dump-ports; ctl get netpol -A -o wide; ctl dump-flows --names; } > "$RUN/vswitchd-final.txt" 2>&1 || true
              cp "$(vsw_dir)/vswitchd.log" "$RUN/" 2>/dev/null || true ;;
    vswitchd-svc)
              { ctl show; ctl dump-ports; ctl dump-flows --names | grep -v 'bench/dummy-'; ctl dump-groups --names | grep -v 'bench/dummy-'; } > "$RUN/vswitchd-final.txt" 2>&1 || true
              cp "$(vsw_dir)/vswitchd.log" "$RUN/" 2>/dev/null || true ;;
    kernel-bridge-ct)
              { ip netns exec "$NS_N" iptables -w 5 -L FORWARD -v -n -x; } > "$RUN/iptables-final.txt" 2>&1 || true ;;
    kernel-bridge-svc)
              { ip netns exec "$NS_N" iptables -w 5 -L FORWARD -v -n -x; ip netns exec "$NS_N" iptables -w 5 -L KUBE-FORWARD -v -n -x
                ip netns exec "$NS_N" iptables -w 5 -t nat -L -v -n -x | grep -B2 -A8 'bench-web' | head -80
                ip netns exec "$NS_N" iptables -w 5 -t nat -L KUBE-POSTROUTING -v -n -x; } > "$RUN/iptables-final.txt" 2>&1 || true ;;
    ovs-*)    { ofctl dump-ports; ofctl dump-flows; appctl_d "$OVS_DIR" dpctl/show -s; appctl_d "$OVS_DIR" dpctl/ct-stats-show; } > "$RUN/ovs-final.txt" 2>&1 || true
              cp "$OVS_DIR/ovs-vswitchd.log" "$RUN/" 2>/dev/null || true ;;
  esac
  log_problems
  echo "--- loadavg after: $(cat /proc/loadavg)" >> "$RUN/env.txt"
  log "=== $CONFIG: teardown"
  teardown_config
}

# ---------------------------------------------------------------- summary
# The summary tables' awk prelude: read a medians file into v (median) and r (raw runs);
# cell() is one table cell, the median (bold if asked) with its raw runs; ratio() is the
# ratio of two configs' medians of a metric.
AWK_CELL='
        { v[$1,$2]=$3; r[$1,$2]=$4 }
        function cell(c, m, bold,   s) {
          if (!((c,m) in v)) return "–"
          s=v[c,m]; if (bold) s="**" s "**"
          if (r[c,m] ~ /\//) s=s " (" r[c,m] ")"
          return s
        }
        function ratio(a, b, m) { if (!((a,m) in v) || !((b,m) in v) || v[b,m]+0 == 0) return "–"; return sprintf("%.2f", v[a,m]/v[b,m]) }
        function rng(c, m,   n, a, i, lo, hi) {
          if (!((c,m) in v)) return "–"
          n=split(r[c,m], a, "/"); lo=a[1]; hi=a[1]
          for (i=2;i<=n;i++) { if (a[i]+0 < lo+0) lo=a[i]; if (a[i]+0 > hi+0) hi=a[i] }
          return "**" v[c,m] "** [" lo "–" hi "]"
        }
'
# "config metric median raw1/raw2/..." over reps >= 1 (rep 0 holds per-config values)
medians() {
  awk -F'\t' '
    { key=$1 SUBSEP $3; if (!(key in seen)) { order[++n]=key; seen[key]=1 }
      vals[key]=vals[key] (vals[key]==""?"":"/") $4; if ($2==0) zero[key]=1 }
    END {
      for (k=1;k<=n;k++) {
        key=order[k]; m=split(vals[key], a, "/"); split(key, kk, SUBSEP)
        num=1; for(i=1;i<=m;i++) if (a[i] !~ /^-?[0-9.]+$/) num=0
        for(i=1;i<=m;i++) b[i]=a[i]
        if (num) {
          for(i=2;i<=m;i++){x=b[i];j=i-1;while(j>=1&&b[j]+0>x+0){b[j+1]=b[j];j--}b[j+1]=x}
          med=(m%2)?b[(m+1)/2]:(b[m/2]+b[m/2+1])/2
        } else med=a[1]
        printf "%s\t%s\t%s\t%s\n", kk[1], kk[2], med, vals[key]
      }
    }' "$TSV"
}
measured_count() { # <configs> <medians file>: how many of them got a TCP figure
  awk -F'\t' -v cfgs="$1" 'BEGIN{n=split(cfgs, C, " "); for (i=1;i<=n;i++) want[C[i]]=1}
    $2=="tcp_gbps" && ($1 in want) {f++} END{print f+0}' "$2"
}
measured() { [ "$(measured_count "$@")" -gt 0 ]; }
summary() {
  local M=$STATE/medians sn="" xn="" c
  medians > "$M"
  for c in $CONFIGS; do if is_xnode "$c"; then xn="$xn $c"; else sn="$sn $c"; fi; done
  {
    echo "Command: \`sudo bash benches/e2e/bench.sh\` (CONFIGS=\"$CONFIGS\" REPS=$REPS IPERF_REPS=$IPERF_REPS DUR=$DUR WORKERS=$WORKERS CONN_SECS=$CONN_SECS RR_SECS=$RR_SECS RR_AWAKE=$RR_AWAKE SVC_DUMMIES=$SVC_DUMMIES NP_POLICIES=$NP_POLICIES NP_REMOTE=$NP_REMOTE)"
    echo "Raw results: $RESULTS_DIR"
    echo
    echo "Medians of $REPS, raw runs in parentheses. CPU in % of one core (the box has $(nproc)); \"switch cpu\" = the switch process, all threads (across nodes: both nodes' switches together)."
    if measured "$sn" "$M"; then
      echo
      echo "#### Same node (pod MTU 1500)"
      echo
      echo "| config | TCP Gbit/s | TCP retrans | switch cpu (TCP) | UDP 64 B tx kpps | UDP 64 B **rx kpps** | UDP loss % | lost at pod A's queue % | lost at iperf3's socket % | UDP forwarded kpps | switch cpu (UDP) | ping avg ms | ping p50 ms | ping p99 ms |"
      echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
      awk -F'\t' -v cfgs="$sn" "$AWK_CELL"'
        END {
          n=split(cfgs, C, " ")
          for (i=1;i<=n;i++) { c=C[i]; if (!((c,"tcp_gbps") in v)) continue
            printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", c,
              cell(c,"tcp_gbps",1), cell(c,"tcp_retrans"), cell(c,"tcp_switch_cpu_pct"),
              cell(c,"udp_tx_kpps"), cell(c,"udp_rx_kpps",1), cell(c,"udp_loss_pct"),
              cell(c,"udp_drop_src_pct"), cell(c,"udp_drop_rcvsock_pct"), cell(c,"udp_fwd_kpps"), cell(c,"udp_switch_cpu_pct"),
              cell(c,"ping_avg_ms",1), cell(c,"ping_p50_ms"), cell(c,"ping_p99_ms",1) }
        }' "$M"
      echo
      echo "Ratios of medians (higher is better for TCP and UDP, lower for RTT):"
      echo
      echo "| config | TCP | UDP rx kpps | UDP forwarded kpps | ping avg | ping p99 |"
      echo "|---|---|---|---|---|---|"
      awk -F'\t' -v cfgs="$sn" "$AWK_CELL"'
        function row(a, b, label) {
          printf "| %s | %s | %s | %s | %s | %s |\n", label, ratio(a,b,"tcp_gbps"), ratio(a,b,"udp_rx_kpps"), ratio(a,b,"udp_fwd_kpps"), ratio(a,b,"ping_avg_ms"), ratio(a,b,"ping_p99_ms") }
        END {
          n=split(cfgs, C, " ")
          for (i=1;i<=n;i++) if (C[i] != "kernel-bridge" && ((C[i],"tcp_gbps") in v) && (("kernel-bridge","tcp_gbps") in v)) row(C[i], "kernel-bridge", C[i] " / kernel-bridge")
          if (("vswitchd","tcp_gbps") in v && ("ovs-tap-tso","tcp_gbps") in v) row("vswitchd", "ovs-tap-tso", "vswitchd / ovs-tap-tso")
        }' "$M"
    fi
    if measured "$xn" "$M"; then
      echo
      echo "#### Across nodes (pod A on node 1, pod B on node 2; VXLAN over a veth underlay, MTU $UNDERLAY_MTU; pod MTU $XNODE_POD_MTU)"
      echo
      echo "| config | TCP Gbit/s | TCP retrans | switch cpu (TCP) | node 1 / node 2 (TCP) | UDP 64 B tx kpps | UDP 64 B **rx kpps** | UDP loss % | lost at pod A's queue % | lost at node 2's tunnel socket % | lost at iperf3's socket % | switch cpu (UDP) | node 1 / node 2 (UDP) | ping avg ms | ping p50 ms | ping p99 ms |"
      echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
      awk -F'\t' -v cfgs="$xn" "$AWK_CELL"'
        function pernode(c, t) {
          if (!((c,t "_switch_n1_cpu_pct") in v)) return "–"
          return v[c,t "_switch_n1_cpu_pct"] " / " v[c,t "_switch_n2_cpu_pct"]
        }
        END {
          n=split(cfgs, C, " ")
          for (i=1;i<=n;i++) { c=C[i]; if (!((c,"tcp_gbps") in v)) continue
            printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", c,
              cell(c,"tcp_gbps",1), cell(c,"tcp_retrans"), cell(c,"tcp_switch_cpu_pct"), pernode(c,"tcp"),
              cell(c,"udp_tx_kpps"), cell(c,"udp_rx_kpps",1), cell(c,"udp_loss_pct"),
              cell(c,"udp_drop_src_pct"), cell(c,"udp_drop_tunnel_pct"), cell(c,"udp_drop_rcvsock_pct"),
              cell(c,"udp_switch_cpu_pct"), pernode(c,"udp"),
              cell(c,"ping_avg_ms",1), cell(c,"ping_p50_ms"), cell(c,"ping_p99_ms",1) }
        }' "$M"
      if measured "kernel-vxlan-2node ovs-vxlan-2node" "$M" && [ "$(measured_count "$xn" "$M")" -gt 1 ]; then
      echo
      echo "Ratios of medians to the kernel overlay (kernel-vxlan-2node) and to OVS userspace VXLAN (ovs-vxlan-2node); higher is better for TCP and UDP, lower for RTT:"
      echo
      echo "| config | TCP | UDP rx kpps | UDP forwarded kpps | ping avg | ping p99 |"
      echo "|---|---|---|---|---|---|"
      awk -F'\t' -v cfgs="$xn" "$AWK_CELL"'
        function row(a, b) {
          if (!((a,"tcp_gbps") in v) || !((b,"tcp_gbps") in v)) return
          printf "| %s / %s | %s | %s | %s | %s | %s |\n", a, b, ratio(a,b,"tcp_gbps"), ratio(a,b,"udp_rx_kpps"), ratio(a,b,"udp_fwd_kpps"), ratio(a,b,"ping_avg_ms"), ratio(a,b,"ping_p99_ms") }
        END {
          n=split(cfgs, C, " ")
          for (i=1;i<=n;i++) if (C[i] != "kernel-vxlan-2node") row(C[i], "kernel-vxlan-2node")
          for (i=1;i<=n;i++) if (C[i] != "ovs-vxlan-2node" && C[i] != "kernel-vxlan-2node") row(C[i], "ovs-vxlan-2node")
        }' "$M"
      fi
      if awk -F'\t' '$1=="vswitchd-2node" && $2=="tcp_gbps"{a=1} $1=="kernel-vxlan-2node" && $2=="tcp_gbps"{b=1} END{exit !(a && b)}' "$M"; then
        echo
        echo "vswitchd-2node against its targets (medians; the kernel overlay measured in this run):"
        echo
        echo "| target | vswitchd-2node | kernel-vxlan-2node | | met |"
        echo "|---|---|---|---|---|"
        awk -F'\t' '
          { v[$1,$2]=$3 }
          function g(c, m) { return ((c,m) in v) ? v[c,m] : "" }
          function yn(b) { return b ? "**yes**" : "no" }
          END {
            a="vswitchd-2node"; k="kernel-vxlan-2node"
            t=g(a,"tcp_gbps"); tk=g(k,"tcp_gbps"); q=(tk+0 > 0) ? t/tk : 0
            printf "| TCP ≥ 0.7× the kernel overlay | %s Gbit/s | %s Gbit/s | %.2f× | %s |\n", t, tk, q, yn(q >= 0.7)
            u=g(a,"udp_rx_kpps"); uk=g(k,"udp_rx_kpps"); l=g(a,"udp_loss_pct"); q=(uk+0 > 0) ? u/uk : 0
            printf "| 64 B UDP rx ≥ the kernel overlay'"'"'s, loss < 1 %% | %s kpps, %s %% loss | %s kpps, %s %% loss | %.2f× | %s |\n", u, l, uk, g(k,"udp_loss_pct"), q, yn(q >= 1 && l != "" && l+0 < 1)
            p=g(a,"ping_avg_ms")
            printf "| RTT avg ≤ 0.25 ms | %s ms (p99 %s) | %s ms (p99 %s) | | %s |\n", p, g(a,"ping_p99_ms"), g(k,"ping_avg_ms"), g(k,"ping_p99_ms"), yn(p != "" && p+0 <= 0.25)
          }' "$M"
      fi
    fi
    if awk -F'\t' '$1=="vswitchd-np" && $2=="tcp_gbps" {f=1} END{exit !f}' "$M"; then
      echo
      echo "#### NetworkPolicy: the same two Pods isolated by policy, their traffic allowed"
      echo
      echo "Ratios of medians (issue 13 target: vswitchd-np within 5 % of vswitchd-k8s, the same pipeline and objects without the $NP_POLICIES policies):"
      echo
      echo "| ratio | TCP Gbit/s | UDP rx kpps | ping avg |"
      echo "|---|---|---|---|"
      awk -F'\t' "$AWK_CELL"'
        function row(a, b) { if (((a,"tcp_gbps") in v) && ((b,"tcp_gbps") in v)) printf "| %s / %s | %s | %s | %s |\n", a, b, ratio(a,b,"tcp_gbps"), ratio(a,b,"udp_rx_kpps"), ratio(a,b,"ping_avg_ms") }
        END { row("vswitchd-np", "vswitchd-k8s"); row("vswitchd-np", "vswitchd"); row("vswitchd-k8s", "vswitchd") }' "$M"
    fi
    if awk -F'\t' '$2=="conn_per_sec" || $2 ~ /^ct_entries_/ {f=1} END{exit !f}' "$M"; then
      echo
      echo "#### Connection tracking and new TCP connections a second"
      echo
      echo "Medians of $REPS with [min–max] of the raw runs. connrate: $CONN_THREADS client threads, ${CONN_SECS} s per rep, each connection connect + 1 byte + close, complete; failures = connect/read errors and timeouts (1 s) per rep. Tracked connections: the datapath's conntrack entries after the TCP/UDP/ping reps (and tcprr) and after the connrate reps (-ct and -svc configs only)."
      echo
      echo "| config | TCP Gbit/s | new TCP connections/s | connrate failures | tracked after reps | tracked after connrate |"
      echo "|---|---|---|---|---|---|"
      awk -F'\t' -v cfgs="$CONFIGS" "$AWK_CELL"'
        function one(c, m) { return ((c,m) in v) ? v[c,m] : "–" }
        END {
          n=split(cfgs, C, " ")
          for (i=1;i<=n;i++) { c=C[i]; if (!((c,"tcp_gbps") in v) && !((c,"conn_per_sec") in v)) continue
            printf "| %s | %s | %s | %s | %s | %s |\n", c, rng(c,"tcp_gbps"), rng(c,"conn_per_sec"),
              ((c,"conn_failures") in v) ? r[c,"conn_failures"] : "–", one(c,"ct_entries_after_reps"), one(c,"ct_entries_after_conn") }
        }' "$M"
      if awk -F'\t' '$1 ~ /-ct$/ && $2=="tcp_gbps"{f=1} END{exit !f}' "$M"; then
        echo
        echo "Ratios of medians, tracked against untracked and between datapaths (issue 11 targets: vswitchd-ct within 10 % of vswitchd, i.e. ≥ 0.90; vswitchd-ct ≥ 1.0× kernel-bridge-ct):"
        echo
        echo "| ratio | TCP | new connections/s |"
        echo "|---|---|---|"
        awk -F'\t' "$AWK_CELL"'
          function row(a, b) { if (((a,"tcp_gbps") in v) && ((b,"tcp_gbps") in v)) printf "| %s / %s | %s | %s |\n", a, b, ratio(a,b,"tcp_gbps"), ratio(a,b,"conn_per_sec") }
          END {
            row("vswitchd-ct", "vswitchd"); row("kernel-bridge-ct", "kernel-bridge"); row("ovs-tap-tso-ct", "ovs-tap-tso")
            row("vswitchd-ct", "kernel-bridge-ct"); row("vswitchd-ct", "ovs-tap-tso-ct")
          }' "$M"
      fi
    fi
    if awk -F'\t' '$2=="rr_tps" || $2=="rr_svc_tps" || $2=="conn_svc_per_sec" {f=1} END{exit !f}' "$M"; then
      echo
      echo "#### New connections and request/response: to the Pod, and through a ClusterIP (-svc configs)"
      echo
      echo "Medians of $REPS with [min–max] of the raw runs; in the -svc configs the two paths take turns rep by rep. connrate: $CONN_THREADS client threads, ${CONN_SECS} s per rep, each connection connect + 1 byte + close. tcprr: one connection, ${RR_SIZE}-byte request and response, one transaction at a time, ${RR_SECS} s per rep; latency per transaction, nearest rank; RR_AWAKE=$RR_AWAKE (1: SCHED_IDLE busy loops keep the vCPUs from halting). \"to\": the Pod's address ($IP_B) or the ClusterIP ($SVC_IP, pod B its one endpoint; $SVC_DUMMIES other Services installed). switch cpu: % of one core."
      echo
      echo "| config | to | new TCP connections/s | conn failures | switch cpu (conn) | RR transactions/s | RR p50 µs | RR p99 µs | RR failures | switch cpu (RR) |"
      echo "|---|---|---|---|---|---|---|---|---|---|"
      awk -F'\t' -v cfgs="$CONFIGS" "$AWK_CELL"'
        function raw(c, m) { return ((c,m) in r) ? r[c,m] : "–" }
        function one(c, m) { return ((c,m) in v) ? v[c,m] : "–" }
        END {
          n=split(cfgs, C, " ")
          for (i=1;i<=n;i++) for (p=1;p<=2;p++) { c=C[i]
            cn=(p==1) ? "conn" : "conn_svc"; rr=(p==1) ? "rr" : "rr_svc"
            if (!((c,cn "_per_sec") in v) && !((c,rr "_tps") in v)) continue
            printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", c, (p==1) ? "Pod IP" : "ClusterIP",
              rng(c,cn "_per_sec"), raw(c,cn "_failures"), one(c,cn "_switch_cpu_pct"),
              rng(c,rr "_tps"), rng(c,rr "_p50_us"), rng(c,rr "_p99_us"), raw(c,rr "_failures"), one(c,rr "_switch_cpu_pct") }
        }' "$M"
      echo
      echo "Ratios of medians (new connections/s and transactions/s: higher is better; latency: lower is better):"
      echo
      echo "| ratio | new connections/s | RR transactions/s | RR p50 | RR p99 |"
      echo "|---|---|---|---|---|"
      awk -F'\t' "$AWK_CELL"'
        # a path is "config:pod" or "config:svc"; its metric is <tag>[_svc]<suffix>
        function key(path, tag, sfx,   a) { split(path, a, ":"); return a[1] SUBSEP tag ((a[2]=="svc") ? "_svc" : "") sfx }
        function rt(x, y, tag, sfx,   kx, ky) { kx=key(x, tag, sfx); ky=key(y, tag, sfx)
          if (!(kx in v) || !(ky in v) || v[ky]+0 == 0) return "–"; return sprintf("%.2f", v[kx]/v[ky]) }
        function row(x, y, label,   c1, c2) {
          c1=rt(x,y,"conn","_per_sec"); c2=rt(x,y,"rr","_tps")
          if (c1=="–" && c2=="–") return
          printf "| %s | %s | %s | %s | %s |\n", label, c1, c2, rt(x,y,"rr","_p50_us"), rt(x,y,"rr","_p99_us") }
        END {
          row("vswitchd-svc:svc", "vswitchd:pod", "vswitchd-svc ClusterIP / vswitchd Pod IP")
          row("vswitchd-svc:svc", "kernel-bridge-svc:svc", "vswitchd-svc ClusterIP / kernel-bridge-svc ClusterIP")
          row("vswitchd-svc:svc", "vswitchd-svc:pod", "vswitchd-svc ClusterIP / vswitchd-svc Pod IP")
          row("kernel-bridge-svc:svc", "kernel-bridge-svc:pod", "kernel-bridge-svc ClusterIP / kernel-bridge-svc Pod IP")
          row("kernel-bridge-svc:svc", "kernel-bridge:pod", "kernel-bridge-svc ClusterIP / kernel-bridge Pod IP")
          row("vswitchd-svc:pod", "kernel-bridge-svc:pod", "vswitchd-svc Pod IP / kernel-bridge-svc Pod IP")
          row("vswitchd:pod", "kernel-bridge:pod", "vswitchd Pod IP / kernel-bridge Pod IP")
        }' "$M"
    fi
    if awk -F'\t' '$2 ~ /^log_(warn|error)_/{f=1} END{exit !f}' "$M"; then
      echo
      echo "Switch logs (lines at WARN or ERROR; see log-problems.txt in each config's raw directory):"
      awk -F'\t' '$2 ~ /^log_(warn|error)_/ { split($2, a, "_"); f=substr($2, length(a[1] "_" a[2] "_") + 1); k=$1 " " f; if (!(k in seen)) { seen[k]=1; o[++n]=k }
          if (a[2]=="warn") w[k]=$3; else e[k]=$3 }
        END { for (i=1;i<=n;i++) { split(o[i], b, " "); printf "- %s, %s.log: %d errors, %d warnings\n", b[1], b[2], e[o[i]], w[o[i]] } }' "$M"
    fi
    if [ -n "$ZL_CONFIGS" ] && [ "$(wc -l < "$ZTSV")" -gt 1 ]; then
      echo
      echo "64-byte UDP with udpflood (N sender threads = N flows, ${ZL_SECS} s per step): the sender unpaced, and the highest paced rate with loss < $ZL_LOSS % (bisection, $ZL_STEPS steps), then $ZL_CONFIRM confirmation runs at that rate, stepping down 10 % (up to $ZL_BACKOFF times) until all of them pass; the confirmed limit is the lowest rx rate of those runs:"
      echo
      echo "| config | flows | unpaced tx kpps | unpaced rx kpps | unpaced loss % | zero-loss limit, rx kpps | confirmation runs: rx kpps, loss % | confirmed limit, rx kpps |"
      echo "|---|---|---|---|---|---|---|---|"
      awk -F'\t' -v cfgs="$ZL_CONFIGS" -v flows="$ZL_THREADS" '
        { v[$1,$2]=$3; r[$1,$2]=$4 }
        END { n=split(cfgs, C, " "); nf=split(flows, F, " ")
          for (i=1;i<=n;i++) for (f=1;f<=nf;f++) { c=C[i]; m="zl_f" F[f]; if (!((c,m "_unpaced_tx_kpps") in v)) continue
            lim=v[c,m "_limit_kpps"]; if ((c,m "_sender_bound") in v) lim="≥ " lim " (sender-bound)"
            conf=((c,m "_confirm_rx_kpps") in r) ? r[c,m "_confirm_rx_kpps"] " kpps, " r[c,m "_confirm_loss_pct"] " %" : "–"
            cf=((c,m "_confirmed_kpps") in v) ? v[c,m "_confirmed_kpps"] : "–"
            sfx=(v[c,m "_confirmed_steps_down"] > 0) ? " (at " v[c,m "_confirmed_req_pps"] " pps requested, " v[c,m "_confirmed_steps_down"] " step(s) down)" : ""
            printf "| %s | %s | %s | %s | %s | %s | %s | **%s**%s |\n", c, F[f], v[c,m "_unpaced_tx_kpps"], v[c,m "_unpaced_rx_kpps"], v[c,m "_unpaced_loss_pct"], lim, conf, cf, sfx } }' "$M"
    fi
  } > "$RESULTS_DIR/summary.md"
  cat "$RESULTS_DIR/summary.md"
}

# ---------------------------------------------------------------- main
{
  echo "date: $(date -Is)"
  echo "host: $(uname -n)  kernel: $(uname -r)  cpus: $(nproc)  $(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)"
  echo "mem: $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
  echo "iperf3: $(iperf3 --version | head -1)"
  command -v ovs-vswitchd >/dev/null && echo "ovs: $(ovs-vswitchd --version | head -1)"
  echo "rustc: $(rustc --version 2>/dev/null || echo '?')"
  echo "repo: $REPO  commit: $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo "knobs: CONFIGS=\"$CONFIGS\" REPS=$REPS IPERF_REPS=$IPERF_REPS CONN_SECS=$CONN_SECS CONN_THREADS=$CONN_THREADS RR_SECS=$RR_SECS RR_SIZE=$RR_SIZE RR_AWAKE=$RR_AWAKE SVC_DUMMIES=$SVC_DUMMIES DUR=$DUR WORKERS=$WORKERS VSWITCHD_ARGS=\"$VSWITCHD_ARGS\" XNODE_POD_MTU=$XNODE_POD_MTU PING=$PING_COUNT@$PING_INTERVAL ZL_CONFIGS=\"$ZL_CONFIGS\" ZL_SECS=$ZL_SECS ZL_STEPS=$ZL_STEPS ZL_THREADS=$ZL_THREADS ZL_LOSS=$ZL_LOSS ZL_CONFIRM=$ZL_CONFIRM ZL_BACKOFF=$ZL_BACKOFF"
  echo "sysctl: netdev_max_backlog=$(cat /proc/sys/net/core/netdev_max_backlog) rmem_default=$(cat /proc/sys/net/core/rmem_default) rmem_max=$(cat /proc/sys/net/core/rmem_max)"
  echo "loadavg: $(cat /proc/loadavg)"
} > "$RESULTS_DIR/env.txt"
log "raw results go to $RESULTS_DIR"

k=0
for CONFIG in $CONFIGS; do
  k=$((k + 1))
  run_config "$k"
done
CONFIG=""
echo "finished: $(date -Is)" >> "$RESULTS_DIR/env.txt"
summary
