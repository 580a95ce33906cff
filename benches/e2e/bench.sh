#!/usr/bin/env bash
# bench.sh - end-to-end benchmark: two Pods on one node, through four datapaths.
#
# Run as root from anywhere:   sudo bash benches/e2e/bench.sh
#
# Builds the two-Pod topology (pod A 10.244.1.2/24, pod B 10.244.1.3/24, pod MTU 1500,
# every Pod and the node a network namespace of its own) in turn through:
#   vswitchd        this repository's switch (release build), started in the node
#                   namespace with a private socket and state dir; TAP ports added with
#                   `vswitchctl add-port --type tap --netns ...`, flow `actions=normal`
#   kernel-bridge   Linux bridge in the node namespace, veth pairs to the Pods
#   ovs-tap-tso     Open vSwitch userspace datapath (datapath_type=netdev), type=tap
#                   ports moved into the Pods, other_config:userspace-tso-enable=true
#   ovs-tap         the same without userspace TSO
# and measures, from pod A to pod B, each window bounded by `timeout`:
#   TCP      iperf3 -t DUR, REPS reps: Gbit/s (receiver) and retransmits
#   UDP      iperf3 -u -l 64 -b 0 -t DUR, REPS reps: sender and receiver kpps, loss %
#   ping     ping -c 200 -i 0.01: RTT avg / p50 / p99 (nearest rank)
#   CPU      the switch process's CPU over each window (all threads; per-thread in the
#            raw files), the whole box's busy CPU, and other workloads' CPU
# then, for ZL_CONFIGS, the 64-byte UDP zero-loss limit with udpflood (this repo's
# benches/src/bin/udpflood.rs: receiver in pod B, sender in pod A): one unpaced run, then
# a bisection on the paced rate for the highest rate with loss < ZL_LOSS %.
#
# Before every window it waits (up to QUIET_WAIT s) for an idle box (< QUIET_MAX % of one
# core busy), and redoes a window (up to RETRIES times) when other processes used more
# than FOREIGN_MAX % of a core during it. The method follows the anchors in
# BASELINES.md (netns-bench.sh), so the kernel-bridge and OVS rows are comparable to them.
#
# Prints a markdown table (medians, raw runs, ratios to the Linux bridge and to OVS with
# TSO) and writes raw results (iperf3 -J JSON, ping logs, results.tsv, zeroloss.tsv,
# per-thread CPU, port counters, env.txt, summary.md) to RESULTS_DIR.
#
# Everything it creates (namespaces vswb-<pid>-*, daemons, servers, the state dir) is
# removed on exit, on failure and on Ctrl-C. Results are kept.
#
# Environment knobs [defaults]:
#   CONFIGS ["vswitchd kernel-bridge ovs-tap-tso ovs-tap"]   which configs, in this order
#   REPS [3]  DUR [5]  WORKERS [2] (vswitchd --workers)  PING_COUNT [200]  PING_INTERVAL [0.01]
#   RESULTS_DIR [a new /tmp/vswb-results.XXXXXX]   BUILD [1] (0: use the existing binaries)
#   QUIET_MAX [25]  QUIET_WAIT [60]  FOREIGN_MAX [20]  RETRIES [2]
#   ZL_CONFIGS ["vswitchd kernel-bridge ovs-tap-tso"] (empty: skip)  ZL_SECS [3] (per step)
#   ZL_STEPS [8] (bisection steps)  ZL_THREADS ["1 4"] (sender threads = flows; one search each)
#   ZL_RECV_THREADS [1]  ZL_LOSS [0.1] (% loss allowed)  ZL_CONFIRM [2] (re-runs at the limit)
set -Eeuo pipefail
trap 'log "failed (status $?) at line $LINENO: $BASH_COMMAND"' ERR

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CONFIGS=${CONFIGS:-"vswitchd kernel-bridge ovs-tap-tso ovs-tap"}
REPS=${REPS:-3}
DUR=${DUR:-5}
WORKERS=${WORKERS:-2}
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
UDP_SIZE=64
PORT=5201
ZL_PORT=9000
POD_MTU=1500
IP_A=10.244.1.2
IP_B=10.244.1.3
OVS_SCHEMA=/usr/share/openvswitch/vswitch.ovsschema
BIN=$REPO/target/release
P=vswb-$$

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (namespaces, TAPs, OVS)"
for t in ip ethtool iperf3 ping jq awk ss timeout getconf; do
  command -v "$t" >/dev/null 2>&1 || die "missing tool: $t"
done
case " $CONFIGS " in *" ovs-"*)
  for t in ovsdb-tool ovsdb-server ovs-vswitchd ovs-vsctl ovs-appctl ovs-ofctl; do
    command -v "$t" >/dev/null 2>&1 || die "missing tool: $t (apt-get install openvswitch-switch)"
  done;;
esac
for c in $CONFIGS; do
  case "$c" in vswitchd|kernel-bridge|ovs-tap-tso|ovs-tap) ;; *) die "unknown config '$c'";; esac
done

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
OVS_DIR=""         # the running private OVS instance, if any
PIDS_FILE=$STATE/pids   # "<comm> <pid>" of background processes we started
SWITCH_PID=""      # vswitchd or ovs-vswitchd, for CPU accounting
CONFIG=""
RUN=""

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

teardown_config() {
  ovs_stop "$OVS_DIR"
  kill_recorded
  local ns
  for ns in "${CREATED_NS[@]}"; do ns_del "$ns"; done
  CREATED_NS=()
  OVS_DIR=""
  SWITCH_PID=""
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM HUP
  set +e
  [ ${#CREATED_NS[@]} -gt 0 ] || [ -s "$PIDS_FILE" ] && log "cleaning up"
  teardown_config
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
for b in vswitchd vswitchctl udpflood; do
  [ -x "$BIN/$b" ] || die "$BIN/$b is missing (run with BUILD=1)"
done

# ---------------------------------------------------------------- configs
NS_A="" NS_B="" NS_N="" SRC_IF="" DST_IF=""

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

ctl() { timeout 30 "$BIN/vswitchctl" --socket "$STATE/vswitchd/vswitchd.sock" "$@"; }

setup_vswitchd() {
  local d=$STATE/vswitchd i
  mkdir -p "$d"
  ip netns exec "$NS_N" "$BIN/vswitchd" --socket "$d/vswitchd.sock" --state-dir "$d/state" \
      --workers "$WORKERS" --log-file "$d/vswitchd.log" > "$d/vswitchd.stderr" 2>&1 &
  SWITCH_PID=$!
  pid_record vswitchd "$SWITCH_PID"
  for i in $(seq 1 100); do
    ctl show >/dev/null 2>&1 && break
    [ -d "/proc/$SWITCH_PID" ] || die "vswitchd exited: $(cat "$d/vswitchd.stderr" "$d/vswitchd.log" 2>/dev/null)"
    sleep 0.1
  done
  ctl add-port pod-a --type tap --netns "/var/run/netns/$NS_A" --ifname eth0 --ip "$IP_A/24" --mtu "$POD_MTU" >&2
  ctl add-port pod-b --type tap --netns "/var/run/netns/$NS_B" --ifname eth0 --ip "$IP_B/24" --mtu "$POD_MTU" >&2
  ctl add-flow 'actions=normal' >&2
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

vsctl() { timeout 30 ovs-vsctl --db="unix:$OVS_DIR/db.sock" --timeout=20 "$@"; }
ofctl() { timeout 30 ovs-ofctl "$1" "unix:$OVS_DIR/br0.mgmt" "${@:2}"; }

setup_ovs() { # <1: userspace TSO>
  local tso=$1 d=$STATE/ovs-$CONFIG i
  local env=(env "OVS_RUNDIR=$d" "OVS_LOGDIR=$d" "OVS_DBDIR=$d" "OVS_SYSCONFDIR=$d" "OVS_PKGDATADIR=/usr/share/openvswitch")
  mkdir -p "$d"
  OVS_DIR=$d
  "${env[@]}" ovsdb-tool create "$d/conf.db" "$OVS_SCHEMA"
  "${env[@]}" ip netns exec "$NS_N" ovsdb-server "$d/conf.db" --remote="punix:$d/db.sock" \
      --pidfile="$d/ovsdb-server.pid" --unixctl="$d/ovsdb-server.ctl" \
      --log-file="$d/ovsdb-server.log" -vconsole:off --detach --no-chdir 2>> "$d/stderr.log"
  pid_record ovsdb-server "$(cat "$d/ovsdb-server.pid")"
  vsctl --no-wait init
  if [ "$tso" = 1 ]; then vsctl --no-wait set Open_vSwitch . other_config:userspace-tso-enable=true; fi
  "${env[@]}" ip netns exec "$NS_N" ovs-vswitchd "unix:$d/db.sock" --pidfile="$d/ovs-vswitchd.pid" \
      --unixctl="$d/ovs-vswitchd.ctl" --log-file="$d/ovs-vswitchd.log" -vconsole:off --detach --no-chdir 2>> "$d/stderr.log"
  SWITCH_PID=$(cat "$d/ovs-vswitchd.pid")
  pid_record ovs-vswitchd "$SWITCH_PID"
  for i in $(seq 1 50); do [ -S "$d/ovs-vswitchd.ctl" ] && break; sleep 0.1; done
  vsctl add-br br0 -- set bridge br0 datapath_type=netdev
  vsctl add-port br0 tap-a -- set Interface tap-a type=tap
  vsctl add-port br0 tap-b -- set Interface tap-b type=tap
  ofctl del-flows
  ofctl add-flow "priority=0,actions=NORMAL"
  wait_link "$NS_N" tap-a; wait_link "$NS_N" tap-b
  # vswitchd holds the taps' fds; the netdevs move into the Pods (OVS then cannot see
  # them by name and keeps sending anyway; address, MTU and up are set in the Pods)
  ip -n "$NS_N" link set tap-a netns "$NS_A"
  ip -n "$NS_N" link set tap-b netns "$NS_B"
  pod_ip_cfg "$NS_A" tap-a "$IP_A/24"
  pod_ip_cfg "$NS_B" tap-b "$IP_B/24"
}

setup_config() {
  local k=$1 t0 t1 i ok=0
  NS_A=$P-$k-pod-a NS_B=$P-$k-pod-b NS_N=$P-$k-node
  SRC_IF=eth0 DST_IF=eth0
  t0=$(date +%s.%N)
  ns_add "$NS_N"; ns_add "$NS_A"; ns_add "$NS_B"
  case "$CONFIG" in
    vswitchd)      setup_vswitchd ;;
    kernel-bridge) setup_kernel_bridge ;;
    ovs-tap-tso)   SRC_IF=tap-a DST_IF=tap-b; setup_ovs 1 ;;
    ovs-tap)       SRC_IF=tap-a DST_IF=tap-b; setup_ovs 0 ;;
  esac
  for i in $(seq 1 50); do
    if ip netns exec "$NS_A" ping -c 1 -W 1 "$IP_B" >/dev/null 2>&1; then ok=1; break; fi
    sleep 0.2
  done
  t1=$(date +%s.%N)
  [ $ok = 1 ] || die "$CONFIG: pod A cannot ping pod B after setup"
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
thread_snap() { # <pid>: "tid utime stime comm" per thread
  local t
  [ -n "$1" ] && [ -d "/proc/$1/task" ] || return 0
  for t in /proc/"$1"/task/*; do
    awk '{i=index($0,"("); j=match($0,/\) [A-Za-z] /); comm=substr($0,i+1,j-i-1); gsub(/ /,"_",comm)
          split(substr($0,j+2),a," "); print $1, a[12], a[13], comm}' "$t/stat" 2>/dev/null || true
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
    if (comm ~ /^(iperf3|vswitchd|vswitchctl|ovs-vswitchd|ovsdb-server|ovs-vsctl|ovs-appctl|ovs-ofctl|udpflood|ping|timeout|bench.sh|bash|awk|cat|sleep|ip|jq|tr|tac|ss|seq|date|grep|sed|sort|ethtool)$/) next
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

# A measurement window: wait for an idle box, run the command, record the box's busy CPU,
# the switch's CPU (total, user/system, per thread), other workloads' CPU and the loss
# counters outside the switch.
WIN_SWITCH_CPU="" WIN_SYS_CPU="" WIN_FOREIGN="" WIN_TXDROP="" WIN_RCVBUF="" WIN_SOFTNET=""
measure_window() { # <rep> <tag> <raw file base> <cmd...>
  local rep=$1 tag=$2 base=$3; shift 3
  local c0 c1 u0 s0 u1 s1 t0 t1 fg0 fg1 th0 th1 el d0 d1 r0 r1 n0 n1
  wait_quiet "$rep" "$tag"
  fg0=$STATE/fg0 fg1=$STATE/fg1 th0=$STATE/th0 th1=$STATE/th1
  foreign_snap > "$fg0"; thread_snap "$SWITCH_PID" > "$th0"
  d0=$(ns_stat "$NS_A" "$SRC_IF" tx_dropped); r0=$(udp_rcvbuf_errors "$NS_B"); n0=$(softnet_dropped)
  if [ "$CONFIG" = vswitchd ]; then ctl dump-ports > "$base.ports.txt" 2>&1 || true; fi
  c0=$(cpu_busy); read -r u0 s0 < <(proc_jiffies "$SWITCH_PID"); t0=$(date +%s.%N)
  "$@"
  c1=$(cpu_busy); read -r u1 s1 < <(proc_jiffies "$SWITCH_PID"); t1=$(date +%s.%N)
  foreign_snap > "$fg1"; thread_snap "$SWITCH_PID" > "$th1"
  d1=$(ns_stat "$NS_A" "$SRC_IF" tx_dropped); r1=$(udp_rcvbuf_errors "$NS_B"); n1=$(softnet_dropped)
  if [ "$CONFIG" = vswitchd ]; then { echo "--- after"; ctl dump-ports; ctl show; } >> "$base.ports.txt" 2>&1 || true; fi
  el=$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')
  WIN_FOREIGN=$(awk -v a="$(foreign_delta "$fg0" "$fg1")" -v s="$el" -v hz="$HZ" 'BEGIN{printf "%.0f", a/hz/s*100}')
  WIN_SYS_CPU=$(awk -v a="$c0" -v b="$c1" -v s="$el" -v hz="$HZ" 'BEGIN{printf "%.0f", (b-a)/hz/s*100}')
  WIN_TXDROP=$((d1 - d0)) WIN_RCVBUF=$((r1 - r0)) WIN_SOFTNET=$((n1 - n0))
  emit "$rep" "${tag}_foreign_cpu_pct" "$WIN_FOREIGN"
  emit "$rep" "${tag}_sys_cpu_pct" "$WIN_SYS_CPU"
  WIN_SWITCH_CPU=""
  if [ -n "$SWITCH_PID" ]; then
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
    for f in "$base".*; do if [ -e "$f" ]; then mv "$f" "$f.contended-$n"; fi; done
  done
  EMIT_FILE=""
  cat "$STATE/pending" >> "$TSV"; rm -f "$STATE/pending"
  emit "$r" "${tag}_attempts" "$n"
}

record_env() {
  local ns ifn
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
    case "$CONFIG" in
      vswitchd) echo "--- vswitchctl show"; ctl show;;
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
    for f in "$base".*; do if [ -e "$f" ]; then mv "$f" "$f.contended-$n"; fi; done
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
  local lo hi best_rx best_req i mid c m
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
    if [ "$best_req" -gt 0 ]; then
      for c in $(seq 1 "$ZL_CONFIRM"); do
        zl_step confirm "$c" "$best_req"
        emit "$c" "${m}_confirm_rx_kpps" "$(awk -v v="$ZL_LAST_RX" 'BEGIN{printf "%.1f", v/1000}')"
        emit "$c" "${m}_confirm_loss_pct" "$ZL_LAST_LOSS"
      done
    fi
  done
}

# ---------------------------------------------------------------- one config
run_config() { # <index>
  local k=$1 spid r i
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

  for r in $(seq 1 "$REPS"); do
    attempt "$r" tcp test_tcp
    sleep 1
    attempt "$r" udp test_udp
    sleep 1
    attempt "$r" ping test_ping
  done
  kill_pid_checked "$spid" iperf3

  case " $ZL_CONFIGS " in *" $CONFIG "*) zero_loss_search ;; esac

  case "$CONFIG" in
    vswitchd) { ctl show; ctl dump-ports; ctl dump-flows; } > "$RUN/vswitchd-final.txt" 2>&1 || true
              cp "$STATE/vswitchd/vswitchd.log" "$RUN/" 2>/dev/null || true ;;
    ovs-*)    { ofctl dump-ports; ofctl dump-flows; ovs-appctl -t "$OVS_DIR/ovs-vswitchd.ctl" dpctl/show -s; } > "$RUN/ovs-final.txt" 2>&1 || true
              cp "$OVS_DIR/ovs-vswitchd.log" "$RUN/" 2>/dev/null || true ;;
  esac
  echo "--- loadavg after: $(cat /proc/loadavg)" >> "$RUN/env.txt"
  log "=== $CONFIG: teardown"
  teardown_config
}

# ---------------------------------------------------------------- summary
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
summary() {
  local M=$STATE/medians
  medians > "$M"
  {
    echo "Command: \`sudo bash benches/e2e/bench.sh\` (CONFIGS=\"$CONFIGS\" REPS=$REPS DUR=$DUR WORKERS=$WORKERS)"
    echo "Raw results: $RESULTS_DIR"
    echo
    echo "Medians of $REPS, raw runs in parentheses. CPU in % of one core (the box has $(nproc)); \"switch cpu\" = the switch process, all threads."
    echo
    echo "| config | TCP Gbit/s | TCP retrans | switch cpu (TCP) | UDP 64 B tx kpps | UDP 64 B **rx kpps** | UDP loss % | lost at pod A's queue % | lost at iperf3's socket % | UDP forwarded kpps | switch cpu (UDP) | ping avg ms | ping p50 ms | ping p99 ms |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    awk -F'\t' -v cfgs="$CONFIGS" '
      { v[$1,$2]=$3; r[$1,$2]=$4 }
      function cell(c, m, bold,   s) {
        if (!((c,m) in v)) return "–"
        s=v[c,m]; if (bold) s="**" s "**"
        if (r[c,m] ~ /\//) s=s " (" r[c,m] ")"
        return s
      }
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
    awk -F'\t' -v cfgs="$CONFIGS" '
      { v[$1,$2]=$3 }
      function ratio(a, b, m) { if (!((a,m) in v) || !((b,m) in v) || v[b,m]+0 == 0) return "–"; return sprintf("%.2f", v[a,m]/v[b,m]) }
      function row(a, b, label) {
        printf "| %s | %s | %s | %s | %s | %s |\n", label, ratio(a,b,"tcp_gbps"), ratio(a,b,"udp_rx_kpps"), ratio(a,b,"udp_fwd_kpps"), ratio(a,b,"ping_avg_ms"), ratio(a,b,"ping_p99_ms") }
      END {
        n=split(cfgs, C, " ")
        for (i=1;i<=n;i++) if (C[i] != "kernel-bridge" && ((C[i],"tcp_gbps") in v) && (("kernel-bridge","tcp_gbps") in v)) row(C[i], "kernel-bridge", C[i] " / kernel-bridge")
        if (("vswitchd","tcp_gbps") in v && ("ovs-tap-tso","tcp_gbps") in v) row("vswitchd", "ovs-tap-tso", "vswitchd / ovs-tap-tso")
      }' "$M"
    if [ -n "$ZL_CONFIGS" ] && [ "$(wc -l < "$ZTSV")" -gt 1 ]; then
      echo
      echo "64-byte UDP with udpflood (N sender threads = N flows, ${ZL_SECS} s per step): the sender unpaced, and the highest paced rate with loss < $ZL_LOSS % (bisection, $ZL_STEPS steps), then $ZL_CONFIRM confirmation runs at that rate:"
      echo
      echo "| config | flows | unpaced tx kpps | unpaced rx kpps | unpaced loss % | zero-loss limit, rx kpps | confirmation runs: rx kpps, loss % |"
      echo "|---|---|---|---|---|---|---|"
      awk -F'\t' -v cfgs="$ZL_CONFIGS" -v flows="$ZL_THREADS" '
        { v[$1,$2]=$3; r[$1,$2]=$4 }
        END { n=split(cfgs, C, " "); nf=split(flows, F, " ")
          for (i=1;i<=n;i++) for (f=1;f<=nf;f++) { c=C[i]; m="zl_f" F[f]; if (!((c,m "_unpaced_tx_kpps") in v)) continue
            lim=v[c,m "_limit_kpps"]; if ((c,m "_sender_bound") in v) lim="≥ " lim " (sender-bound)"
            conf=((c,m "_confirm_rx_kpps") in r) ? r[c,m "_confirm_rx_kpps"] " kpps, " r[c,m "_confirm_loss_pct"] " %" : "–"
            printf "| %s | %s | %s | %s | %s | **%s** | %s |\n", c, F[f], v[c,m "_unpaced_tx_kpps"], v[c,m "_unpaced_rx_kpps"], v[c,m "_unpaced_loss_pct"], lim, conf } }' "$M"
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
  echo "knobs: CONFIGS=\"$CONFIGS\" REPS=$REPS DUR=$DUR WORKERS=$WORKERS PING=$PING_COUNT@$PING_INTERVAL ZL_CONFIGS=\"$ZL_CONFIGS\" ZL_SECS=$ZL_SECS ZL_STEPS=$ZL_STEPS ZL_THREADS=$ZL_THREADS ZL_LOSS=$ZL_LOSS"
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
