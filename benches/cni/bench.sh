#!/usr/bin/env bash
# bench.sh - CNI attach latency: ADD and DEL of N Pods through vswitch-cni (to vswitchd)
# and through the reference `bridge` plugin with `host-local` IPAM, in one run.
#
# Run as root from anywhere:   sudo bash benches/cni/bench.sh
#
# Each config runs in namespaces of its own, so nothing touches the root namespace:
#   vswitch     vswitchd (release build) in a "node" namespace with a private socket and
#               state dir, `--pod-cidr POD_CIDR`; the plugin `vswitch-cni` with
#               {"type":"vswitch-cni","socket":...} (the switch's built-in allocator)
#   vswitch-hl  the same, with "ipam":{"type":"host-local"} (the switch runs host-local)
#   bridge      /usr/lib/cni/bridge (isGateway, no ipMasq) with host-local over POD_CIDR,
#               run inside a throwaway "host" namespace that holds its bridge and veths
# For each: N Pod namespaces, then ADD of each Pod in turn, a check (every Pod has its
# address, two of them reach the gateway), DEL of each in turn (with the cached ADD
# result as prevResult, as libcni sends it), a check that nothing is left (interfaces,
# host-local leases, the switch's Pods); then, if PAR > 0, the same with PAR runtimes at
# once on N fresh Pods.
#
# A call is measured as the runtime sees it: the wall time of the plugin process, from
# before the fork to its exit (bash's $EPOCHREALTIME around the plugin's command line, in
# a loop that runs inside the config's namespace, as containerd runs plugins in its own;
# no wrapper process is timed). Each phase is bounded by `timeout PHASE_LIMIT`, which
# kills the loop and the plugin it runs.
#
# Prints a markdown table (median, p90, p99, min, max in ms over the successful calls, the
# phase's wall time and calls/s) and the ratios vswitch / bridge; writes per-call timings
# (calls.tsv: config phase op pod rc microseconds), phase wall times (phases.tsv), the
# failed calls' output (failures.log), the switch's log, env.txt and summary.md to
# RESULTS_DIR.
#
# Everything it creates (namespaces vswcni-<pid>-*, the switch, the state dir with the
# host-local data and the switch's state) is removed on exit, on failure and on Ctrl-C.
# Results are kept.
#
# Environment knobs [defaults]:
#   N [100] Pods per phase   PAR [4] parallel runtimes (0: no parallel phase)
#   CONFIGS ["vswitch bridge"] (also: vswitch-hl)   CNI_VERSION [1.0.0] (bridge speaks <= 1.0.0)
#   POD_CIDR [10.244.1.0/24]   WORKERS [2] (vswitchd --workers)   BUILD [1] (0: use the binaries)
#   RESULTS_DIR [a new /tmp/vswcni-results.XXXXXX]   PHASE_LIMIT [600] s   REF_CNI_DIR [/usr/lib/cni]
#   BIN_DIR [target/release] where vswitchd, vswitchctl and vswitch-cni are (with BUILD=0)

# A phase's loop, run by the main script inside a namespace (see run_calls):
#   bench.sh __calls OP PLUGIN CNI_PATH LIST OUT_DIR TSV
# LIST lines: "pod container-id netns-path stdin-file"; TSV gets "pod rc microseconds".
if [ "${1:-}" = __calls ]; then
  set -u
  export LC_ALL=C   # a '.' in $EPOCHREALTIME
  op=$2 plugin=$3 cni_path=$4 list=$5 out=$6 tsv=$7
  while read -r pod cid netns input; do
    args="IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME=pod-$pod;K8S_POD_INFRA_CONTAINER_ID=$cid;K8S_POD_UID=uid-$cid"
    t0=$EPOCHREALTIME
    if CNI_COMMAND=$op CNI_CONTAINERID=$cid CNI_NETNS=$netns CNI_IFNAME=eth0 CNI_ARGS=$args \
        CNI_PATH=$cni_path "$plugin" < "$input" > "$out/$op-$pod.out" 2> "$out/$op-$pod.err"; then
      rc=0
    else
      rc=$?
    fi
    t1=$EPOCHREALTIME
    printf '%s\t%s\t%s\n' "$pod" "$rc" "$(( ${t1/./} - ${t0/./} ))" >> "$tsv"
  done < "$list"
  exit 0
fi

set -Eeuo pipefail
trap 'log "failed (status $?) at line $LINENO: $BASH_COMMAND"' ERR
export LC_ALL=C

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SELF=$REPO/benches/cni/bench.sh
N=${N:-100}
PAR=${PAR:-4}
CONFIGS=${CONFIGS:-"vswitch bridge"}
CNI_VERSION=${CNI_VERSION:-1.0.0}
POD_CIDR=${POD_CIDR:-10.244.1.0/24}
WORKERS=${WORKERS:-2}
BUILD=${BUILD:-1}
PHASE_LIMIT=${PHASE_LIMIT:-600}
REF_CNI_DIR=${REF_CNI_DIR:-/usr/lib/cni}
BIN=${BIN_DIR:-$REPO/target/release}
NET=benchnet
P=vswcni-$$

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (namespaces)"
for t in ip jq awk sort timeout ping sha256sum; do
  command -v "$t" >/dev/null 2>&1 || die "missing tool: $t"
done
for c in $CONFIGS; do
  case "$c" in
    vswitch|vswitch-hl) ;;
    bridge)
      for b in bridge host-local; do
        [ -x "$REF_CNI_DIR/$b" ] || die "no $REF_CNI_DIR/$b (apt-get install containernetworking-plugins)"
      done ;;
    *) die "unknown config '$c'" ;;
  esac
done
case "$CONFIGS" in *vswitch-hl*) [ -x "$REF_CNI_DIR/host-local" ] || die "vswitch-hl needs $REF_CNI_DIR/host-local";; esac
[[ "$N" =~ ^[1-9][0-9]*$ && "$PAR" =~ ^[0-9]+$ ]] || die "N must be a positive number and PAR a number"
PREFIX_LEN=${POD_CIDR#*/}
[ $(( (1 << (32 - PREFIX_LEN)) - 3 )) -ge "$N" ] \
  || die "POD_CIDR $POD_CIDR has room for fewer than N=$N Pods (try POD_CIDR=10.244.0.0/16)"
GATEWAY=$(awk -F'[./]' '{print $1"."$2"."$3"."$4+1}' <<< "$POD_CIDR")

STATE=$(mktemp -d "/tmp/$P-state.XXXXXX")
if [ -z "${RESULTS_DIR:-}" ]; then RESULTS_DIR=$(mktemp -d /tmp/vswcni-results.XXXXXX); fi
mkdir -p "$RESULTS_DIR"
RESULTS_DIR=$(cd "$RESULTS_DIR" && pwd)
CALLS=$RESULTS_DIR/calls.tsv PHASES=$RESULTS_DIR/phases.tsv FAILURES=$RESULTS_DIR/failures.log
printf 'config\tphase\top\tpod\trc\tus\n' > "$CALLS"
printf 'config\tphase\top\tcalls\twall_us\n' > "$PHASES"
: > "$FAILURES"

# ---------------------------------------------------------------- what we created
CREATED_NS=()        # namespaces, deleted at teardown
DAEMON_PID=""        # the `timeout` wrapping vswitchd
WORKER_PIDS=()       # parallel phase loops (each a `timeout`)

# Stop a process we started, if it is still the one we started (comm checked).
stop_pid() { # <pid> <comm>
  local pid=$1 comm i
  [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 0
  comm=$(cat "/proc/$pid/comm" 2>/dev/null || true)
  [ "$comm" = "$2" ] || return 0
  kill "$pid" 2>/dev/null || true
  for i in $(seq 1 50); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

ns_add() {
  [ -e "/var/run/netns/$1" ] && die "namespace $1 already exists"
  ip netns add "$1"
  CREATED_NS+=("$1")
}

teardown_config() {
  local p ns
  for p in "${WORKER_PIDS[@]}"; do stop_pid "$p" timeout; done
  WORKER_PIDS=()
  stop_pid "$DAEMON_PID" timeout
  DAEMON_PID=""
  # Nothing we started runs in them any more: a Pod's interfaces go with its namespace.
  for ns in "${CREATED_NS[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  CREATED_NS=()
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM HUP
  set +e
  [ ${#CREATED_NS[@]} -gt 0 ] && log "cleaning up"
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
case " $CONFIGS " in *" vswitch"*)
  if [ "$BUILD" = 1 ]; then
    log "building (cargo build --release -p vswitch -p vswitch-cni -p vswitchctl)"
    (cd "$REPO" && cargo build --release -p vswitch -p vswitch-cni -p vswitchctl) >&2 || die "build failed"
  fi
  for b in vswitchd vswitchctl vswitch-cni; do
    [ -x "$BIN/$b" ] || die "$BIN/$b is missing (run with BUILD=1, or set BIN_DIR)"
  done;;
esac

# ---------------------------------------------------------------- one config
CONFIG="" RUN_NS="" PLUGIN="" PLUGIN_PATH="" CONF="" SOCK=""

ctl() { timeout 30 "$BIN/vswitchctl" --socket "$SOCK" "$@"; }

# Starts vswitchd in a node namespace; fails (returns 1) when it cannot serve CNI calls.
start_vswitchd() {
  local d=$STATE/$CONFIG i
  mkdir -p "$d"
  SOCK=$d/vswitchd.sock
  ip netns exec "$RUN_NS" timeout $((PHASE_LIMIT * 6)) "$BIN/vswitchd" --socket "$SOCK" \
      --state-dir "$d/state" --workers "$WORKERS" --pod-cidr "$POD_CIDR" \
      --log-file "$d/vswitchd.log" > "$d/vswitchd.stderr" 2>&1 &
  DAEMON_PID=$!
  for i in $(seq 1 100); do
    ctl list-pods >/dev/null 2>&1 && return 0
    [ -d "/proc/$DAEMON_PID" ] || break
    sleep 0.1
  done
  log "$CONFIG: vswitchd does not serve list-pods: $(tail -n 5 "$d/vswitchd.stderr" "$d/vswitchd.log" 2>/dev/null | tr '\n' ' ')"
  log "$CONFIG: $(ctl list-pods 2>&1 | head -n 3 | tr '\n' ' ')"
  return 1
}

setup_config() {
  local ipam
  RUN_NS=$P-$CONFIG
  ns_add "$RUN_NS"
  ip -n "$RUN_NS" link set lo up
  ipam=$(jq -nc --arg d "$STATE/host-local-$CONFIG" --arg s "$POD_CIDR" \
    '{type: "host-local", dataDir: $d, ranges: [[{subnet: $s}]], routes: [{dst: "0.0.0.0/0"}]}')
  case "$CONFIG" in
    bridge)
      PLUGIN=$REF_CNI_DIR/bridge PLUGIN_PATH=$REF_CNI_DIR
      jq -n --arg v "$CNI_VERSION" --arg n "$NET" --argjson ipam "$ipam" \
        '{cniVersion: $v, name: $n, type: "bridge", bridge: "cnibench0", isGateway: true,
          ipMasq: false, ipam: $ipam}' > "$STATE/conf-$CONFIG.json" ;;
    vswitch|vswitch-hl)
      start_vswitchd || return 1
      PLUGIN=$BIN/vswitch-cni PLUGIN_PATH=$BIN:$REF_CNI_DIR
      jq -n --arg v "$CNI_VERSION" --arg n "$NET" --arg s "$SOCK" \
        '{cniVersion: $v, name: $n, type: "vswitch-cni", socket: $s, timeout: 30}' > "$STATE/conf-$CONFIG.json"
      if [ "$CONFIG" = vswitch-hl ]; then
        jq --argjson ipam "$ipam" '. + {ipam: $ipam}' "$STATE/conf-$CONFIG.json" > "$STATE/conf.tmp"
        mv "$STATE/conf.tmp" "$STATE/conf-$CONFIG.json"
      fi ;;
  esac
  CONF=$STATE/conf-$CONFIG.json
  cp "$CONF" "$RESULTS_DIR/conf-$CONFIG.json"
}

# The Pods of a phase: namespaces, and the list of "pod container-id netns stdin" lines.
make_pods() { # <phase>
  local phase=$1 i ns cid d=$STATE/$CONFIG-$1
  mkdir -p "$d/out"
  : > "$d/add.list"
  for i in $(seq 1 "$N"); do
    ns=$P-$CONFIG-${phase:0:1}$i
    ns_add "$ns"
    # containerd's sandbox IDs are 64 hex digits; a shared prefix would hide collisions
    cid=$(printf '%s' "$ns" | sha256sum | cut -c1-64)
    echo "$i $cid /var/run/netns/$ns $CONF" >> "$d/add.list"
  done
}

# DEL gets the cached ADD result as prevResult (none when the ADD failed).
make_del_inputs() { # <phase>
  local d=$STATE/$CONFIG-$1 i cid netns _ in
  : > "$d/del.list"
  while read -r i cid netns _; do
    in=$d/del-$i.json
    if jq -e 'type == "object" and has("interfaces")' "$d/out/ADD-$i.out" >/dev/null 2>&1; then
      jq -c --slurpfile r "$d/out/ADD-$i.out" '. + {prevResult: $r[0]}' "$CONF" > "$in"
    else
      cp "$CONF" "$in"
    fi
    echo "$i $cid $netns $in" >> "$d/del.list"
  done < "$d/add.list"
}

# Runs the calls of one operation: one loop, or PAR loops at once, inside RUN_NS.
run_calls() { # <phase> <op> <workers>
  local phase=$1 op=$2 workers=$3 d=$STATE/$CONFIG-$1 w t0 t1 list rc=0 p
  list=$d/$(tr '[:upper:]' '[:lower:]' <<< "$op").list
  rm -f "$d/$op".w*.list "$d/$op".w*.tsv
  for w in $(seq 1 "$workers"); do
    awk -v w="$w" -v n="$workers" '(NR - 1) % n == w - 1' "$list" > "$d/$op.w$w.list"
  done
  t0=$EPOCHREALTIME
  for w in $(seq 1 "$workers"); do
    ip netns exec "$RUN_NS" timeout "$PHASE_LIMIT" bash "$SELF" __calls "$op" "$PLUGIN" "$PLUGIN_PATH" \
      "$d/$op.w$w.list" "$d/out" "$d/$op.w$w.tsv" &
    WORKER_PIDS+=("$!")
  done
  for p in "${WORKER_PIDS[@]}"; do wait "$p" || rc=$?; done
  t1=$EPOCHREALTIME
  WORKER_PIDS=()
  [ "$rc" = 0 ] || log "  $op loop ended with status $rc (124: PHASE_LIMIT=${PHASE_LIMIT}s reached)"
  printf '%s\t%s\t%s\t%s\t%s\n' "$CONFIG" "$phase" "$op" "$N" "$(( ${t1/./} - ${t0/./} ))" >> "$PHASES"
  # One line per Pod of the list; "killed": the time limit cut the call short, or came first.
  { cat "$d/$op".w*.tsv 2>/dev/null || true; } > "$d/$op.tsv"
  awk -v c="$CONFIG" -v ph="$phase" -v op="$op" 'BEGIN { OFS = "\t" }
    FILENAME == ARGV[1] { split($0, f, "\t"); rc[f[1]] = f[2]; us[f[1]] = f[3]; next }
    { print c, ph, op, $1, (($1 in rc) ? rc[$1] : "killed"), (($1 in us) ? us[$1] : "-") }' \
    "$d/$op.tsv" "$list" > "$d/$op.calls"
  cat "$d/$op.calls" >> "$CALLS"
  local i r ok
  while IFS=$'\t' read -r _ _ _ i r _; do
    [ "$r" = 0 ] && continue
    { echo "== $CONFIG $phase $op pod $i: exit $r"; cat "$d/out/$op-$i.out" "$d/out/$op-$i.err" 2>/dev/null || true; } >> "$FAILURES"
  done < "$d/$op.calls"
  ok=$(awk -F'\t' '$5 == "0"' "$d/$op.calls" | wc -l)
  log "  $op: $ok of $N succeeded in $(awk -v a=$(( ${t1/./} - ${t0/./} )) 'BEGIN{printf "%.2f", a/1e6}') s"
}

# After ADD: each Pod has its address on eth0; the first and the last reach the gateway.
check_added() { # <phase>
  local d=$STATE/$CONFIG-$1 i cid netns _ ns missing=0 pinged=0
  while read -r i cid netns _; do
    ns=${netns##*/}
    ip -n "$ns" -4 -o addr show dev eth0 2>/dev/null | grep -q ' inet ' || missing=$((missing + 1))
  done < "$d/add.list"
  for i in 1 "$N"; do
    read -r _ _ netns _ < <(sed -n "${i}p" "$d/add.list")
    ns=${netns##*/}
    if timeout 10 ip netns exec "$ns" ping -n -c 1 -W 3 "$GATEWAY" >/dev/null 2>&1; then pinged=$((pinged + 1)); fi
  done
  log "  check: $((N - missing)) of $N Pods have an IPv4 address on eth0; $pinged of 2 reach the gateway $GATEWAY"
  if [ "$CONFIG" != bridge ]; then
    log "  check: the switch lists $(ctl --json list-pods | jq '.pods | length') Pods"
  fi
}

# After DEL: no interface but lo in the Pods, no host-local lease, no Pod in the switch.
check_deleted() { # <phase>
  local d=$STATE/$CONFIG-$1 i cid netns _ left=0 leases
  while read -r i cid netns _; do
    [ "$(ip -n "${netns##*/}" -o link show 2>/dev/null | awk '$2 != "lo:"' | wc -l)" = 0 ] || left=$((left + 1))
  done < "$d/add.list"
  leases=$({ find "$STATE/host-local-$CONFIG" -type f ! -name lock ! -name 'last_reserved_ip*' 2>/dev/null || true; } | wc -l)
  log "  check: $left Pods still have interfaces; $leases host-local leases left"
  if [ "$CONFIG" != bridge ]; then
    log "  check: the switch lists $(ctl --json list-pods | jq '.pods | length') Pods"
  fi
}

run_phase() { # <phase> <workers>
  local phase=$1 workers=$2
  log "=== $CONFIG, $phase ($workers at once): $N Pods"
  make_pods "$phase"
  run_calls "$phase" ADD "$workers"
  check_added "$phase"
  make_del_inputs "$phase"
  run_calls "$phase" DEL "$workers"
  check_deleted "$phase"
}

run_config() {
  log "=== $CONFIG: setup"
  if ! setup_config; then
    log "=== $CONFIG: skipped (the switch is not ready for CNI calls)"
    teardown_config
    return 0
  fi
  run_phase sequential 1
  [ "$PAR" -gt 0 ] && run_phase parallel "$PAR"
  if [ "$CONFIG" != bridge ]; then
    cp "$STATE/$CONFIG/vswitchd.log" "$RESULTS_DIR/vswitchd-$CONFIG.log" 2>/dev/null || true
  fi
  log "=== $CONFIG: teardown"
  teardown_config
}

# ---------------------------------------------------------------- summary
# "config phase op calls ok median p90 p99 min max" (ms) over the successful calls;
# percentiles by nearest rank.
stats() {
  awk -F'\t' 'NR > 1 { k = $1 "\t" $2 "\t" $3; if (!(k in n)) order[++m] = k; n[k]++
                       if ($5 == 0) { ok[k]++; v[k, ok[k]] = $6 } }
    function rank(k, p,   r) { r = int(p * ok[k] / 100); if (r < p * ok[k] / 100) r++; return v[k, r < 1 ? 1 : r] }
    END {
      for (j = 1; j <= m; j++) { k = order[j]; c = ok[k] + 0
        if (!c) { printf "%s\t%d\t0\t-\t-\t-\t-\t-\n", k, n[k]; continue }
        for (a = 2; a <= c; a++) { x = v[k, a]; b = a - 1; while (b >= 1 && v[k, b] > x) { v[k, b + 1] = v[k, b]; b-- } v[k, b + 1] = x }
        med = (c % 2) ? v[k, (c + 1) / 2] : (v[k, c / 2] + v[k, c / 2 + 1]) / 2
        printf "%s\t%d\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\n", k, n[k], c, med / 1000, rank(k, 90) / 1000, rank(k, 99) / 1000, v[k, 1] / 1000, v[k, c] / 1000 }
    }' "$CALLS"
}

summary() {
  local S=$STATE/stats
  stats > "$S"
  {
    echo "Command: \`sudo bash benches/cni/bench.sh\` (N=$N PAR=$PAR CONFIGS=\"$CONFIGS\" CNI_VERSION=$CNI_VERSION POD_CIDR=$POD_CIDR)"
    echo "Raw results: $RESULTS_DIR"
    echo
    echo "Wall time of each plugin process, in ms, over the successful calls (nearest-rank percentiles); \"ok/s\" = successful calls / the phase's wall time."
    echo
    echo "| config | phase | op | calls | ok | median | p90 | p99 | min | max | phase s | ok/s |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
    awk -F'\t' 'NR == FNR { if (FNR > 1) w[$1, $2, $3] = $5; next }
      { wall = w[$1, $2, $3] / 1e6; rate = (wall > 0) ? $5 / wall : 0
        printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %.2f | %.1f |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, wall, rate }' \
      "$PHASES" "$S"
    if grep -q '^vswitch' "$S" && grep -q '^bridge' "$S"; then
      echo
      echo "Ratios to the bridge plugin (latency below 1 / ok/s above 1: vswitch is faster):"
      echo
      echo "| configs | phase | op | median | p90 | p99 | ok/s |"
      echo "|---|---|---|---|---|---|---|"
      awk -F'\t' 'NR == FNR { if (FNR > 1) w[$1, $2, $3] = $5; next }
        { k = $2 SUBSEP $3; if (!(k in seen)) { seen[k] = 1; order[++m] = k }
          if (!($1 in cseen)) { cseen[$1] = 1; cfg[++nc] = $1 }
          for (i = 6; i <= 8; i++) s[$1, k, i] = $i
          rate[$1, k] = (w[$1, $2, $3] > 0) ? $5 * 1e6 / w[$1, $2, $3] : 0 }
        function r(a, b) { return (a != "-" && b != "-" && a + 0 > 0 && b + 0 > 0) ? sprintf("%.2f", a / b) : "–" }
        END { for (c = 1; c <= nc; c++) { x = cfg[c]; if (x == "bridge") continue
          for (j = 1; j <= m; j++) { k = order[j]; split(k, pk, SUBSEP)
            if (!((x, k, 6) in s) || !(("bridge", k, 6) in s)) continue
            printf "| %s / bridge | %s | %s | %s | %s | %s | %s |\n", x, pk[1], pk[2], r(s[x, k, 6], s["bridge", k, 6]),
              r(s[x, k, 7], s["bridge", k, 7]), r(s[x, k, 8], s["bridge", k, 8]), r(rate[x, k], rate["bridge", k]) } } }' \
        "$PHASES" "$S"
    fi
  } > "$RESULTS_DIR/summary.md"
  cat "$RESULTS_DIR/summary.md"
}

# ---------------------------------------------------------------- main
{
  echo "date: $(date -Is)"
  echo "host: $(uname -n)  kernel: $(uname -r)  cpus: $(nproc)  $(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)"
  echo "bridge plugin: $(CNI_COMMAND=VERSION timeout 5 "$REF_CNI_DIR/bridge" < /dev/null 2>/dev/null || echo '?')"
  echo "containernetworking-plugins: $(dpkg-query -W -f '${Version}' containernetworking-plugins 2>/dev/null || echo '?')"
  echo "rustc: $(rustc --version 2>/dev/null || echo '?')"
  echo "repo: $REPO  commit: $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo "knobs: N=$N PAR=$PAR CONFIGS=\"$CONFIGS\" CNI_VERSION=$CNI_VERSION POD_CIDR=$POD_CIDR WORKERS=$WORKERS"
  echo "loadavg: $(cat /proc/loadavg)"
} > "$RESULTS_DIR/env.txt"
log "raw results go to $RESULTS_DIR"

for CONFIG in $CONFIGS; do
  run_config
done
CONFIG=""
echo "finished: $(date -Is)" >> "$RESULTS_DIR/env.txt"
summary
