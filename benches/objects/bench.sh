#!/usr/bin/env bash
# bench.sh - Kubernetes objects at cluster scale: a NodeList of N Nodes applied through
# `vswitchctl apply -f`, then one Node changed among the N, many times; at several N.
#
# Run as root from anywhere:   sudo bash benches/objects/bench.sh
#
# For each N in SIZES: a fresh namespace ("node") with a veth holding the node's underlay
# address, a fresh state dir, and vswitchd (release build) in that namespace with a Pod
# network and a tunnel (--pod-cidr 10.250.0.0/24 --node-ip 172.31.255.254). Then:
#   1. `vswitchctl apply -f nodes.yaml`, a NodeList of N remote Nodes (node-i: Pod CIDR
#      10.(i/256).(i%256).0/24, InternalIP 172.16+.x.y), as `kubectl get nodes -o yaml`
#      writes them (trimmed of what the switch does not read). Measured: the command's
#      wall time (parse, send, every Node checked, compiled, installed, saved in one journal
#      append, published, its route set) and the resident memory of vswitchd after.
#   2. CHANGES times: node-(N/2) moves to another InternalIP and back (each `apply -f` of a
#      one-Node file reports "configured"): the wall time of `vswitchctl apply -f`, from
#      before the fork to its exit, i.e. durable (fdatasync'd) and in use (published)
#      before vswitchctl exits. Median, p90, p99, max.
#   3. The same change through the socket without a new process (one connection, a
#      request at a time), to show what the client's start costs.
#   4. A check that the switch holds what it was told: N+1 nodes listed, node-(N/2)'s
#      rule carries its last address, and a restart brings all N back (the start's time).
#
# Results (summary.md, times.tsv, env.txt, vswitchd logs) go to RESULTS_DIR. Everything
# it creates (namespaces vswobj-<pid>-*, the switch, its state dir) is removed on exit,
# on failure and on Ctrl-C.
#
# Environment knobs [defaults]:
#   SIZES ["500 5000 50000"]   CHANGES [200]   WORKERS [2]   BUILD [1] (0: use the binaries)
#   RESULTS_DIR [a new /tmp/vswobj-results.XXXXXX]   BIN_DIR [target/release]
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "bench.sh: run as root (it makes network namespaces)" >&2; exit 1; }
for c in ip python3 awk sort; do
  command -v "$c" >/dev/null || { echo "bench.sh: needs $c (apt-get install iproute2 python3 gawk coreutils)" >&2; exit 1; }
done

SIZES=${SIZES:-"500 5000 50000"}
CHANGES=${CHANGES:-200}
WORKERS=${WORKERS:-2}
BUILD=${BUILD:-1}
BIN_DIR=${BIN_DIR:-target/release}
RESULTS_DIR=${RESULTS_DIR:-$(mktemp -d /tmp/vswobj-results.XXXXXX)}
mkdir -p "$RESULTS_DIR"
TAG="vswobj-$$"
WORK=$(mktemp -d "/tmp/$TAG.XXXXXX")
NS="$TAG-node"
PID=""

# shellcheck source=benches/objects/lib.sh
. benches/objects/lib.sh

# nodes.yaml with N Nodes, as kubectl prints a NodeList.
node_cidr() { echo "10.$(( $1 / 256 )).$(( $1 % 256 )).0/24"; }
node_ip() { local i=$(( $1 + 1 )); echo "172.$(( 16 + i / 65536 )).$(( (i / 256) % 256 )).$(( i % 256 ))"; }
node_doc() { # index, address, indent
  printf '%s- apiVersion: v1\n%s  kind: Node\n%s  metadata:\n%s    name: node-%s\n%s  spec:\n%s    podCIDR: %s\n%s    podCIDRs:\n%s    - %s\n%s  status:\n%s    addresses:\n%s    - address: %s\n%s      type: InternalIP\n%s    - address: node-%s\n%s      type: Hostname\n' \
    "$3" "$3" "$3" "$3" "$1" "$3" "$3" "$(node_cidr "$1")" "$3" "$3" "$(node_cidr "$1")" "$3" "$3" "$3" "$2" "$3" "$3" "$1" "$3"
}
make_list() { # N file
  {
    echo "apiVersion: v1"
    echo "kind: NodeList"
    echo "items:"
    awk -v n="$1" 'BEGIN {
      for (i = 0; i < n; i++) {
        j = i + 1
        cidr = sprintf("10.%d.%d.0/24", int(i / 256), i % 256)
        ip = sprintf("172.%d.%d.%d", 16 + int(j / 65536), int(j / 256) % 256, j % 256)
        printf "- apiVersion: v1\n  kind: Node\n  metadata:\n    name: node-%d\n  spec:\n    podCIDR: %s\n    podCIDRs:\n    - %s\n  status:\n    addresses:\n    - address: %s\n      type: InternalIP\n    - address: node-%d\n      type: Hostname\n", i, cidr, cidr, ip, i
      }
    }'
  } > "$2"
}


start_switch() { # state dir, log
  ip netns exec "$NS" "$VSWITCHD" --socket "$WORK/sock" --state-dir "$1" --workers "$WORKERS" \
    --pod-cidr 10.250.0.0/24 --node-ip 172.31.255.254 --node-name bench-node \
    --log-file "$2" &
  PID=$!
  for _ in $(seq 100); do
    "$VSWITCHCTL" --socket "$WORK/sock" version >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "vswitchd did not start; see $2" >&2
  exit 1
}

ctl() { "$VSWITCHCTL" --socket "$WORK/sock" "$@"; }

printf 'size\tphase\tmicroseconds\n' > "$RESULTS_DIR/times.tsv"
{
  echo "| Nodes | apply -f NodeList (s) | RSS before / after the NodeList / after a restart (MiB) | one Node changed, vswitchctl apply -f: median / p90 / p99 / max (ms) | same over the socket, no new process (ms) | restart with N Nodes (s) | journal / snapshot (KiB) |"
  echo "|---|---|---|---|---|---|---|"
} > "$RESULTS_DIR/summary.md"

for n in $SIZES; do
  echo "== $n Nodes" >&2
  ip netns del "$NS" 2>/dev/null || true
  ip netns add "$NS"
  ip -n "$NS" link set lo up
  ip -n "$NS" link add uplink type veth peer name uplink-peer
  ip -n "$NS" addr add 172.31.255.254/12 dev uplink
  ip -n "$NS" link set uplink up
  ip -n "$NS" link set uplink-peer up
  state="$WORK/state-$n"
  rm -rf "$state"
  start_switch "$state" "$RESULTS_DIR/vswitchd-$n.log"
  list="$WORK/nodes-$n.yaml"
  make_list "$n" "$list"
  rss0=$(rss_kib "$PID")
  t0=$EPOCHREALTIME
  ctl apply -f "$list" > "$WORK/apply.out"
  t1=$EPOCHREALTIME
  apply_us=$(( ${t1/./} - ${t0/./} ))
  printf '%s\tapply_list\t%s\n' "$n" "$apply_us" >> "$RESULTS_DIR/times.tsv"
  created=$(grep -c ' created$' "$WORK/apply.out" || true)
  [ "$created" = "$n" ] || { echo "only $created of $n Nodes created" >&2; tail "$WORK/apply.out" >&2; exit 1; }
  rss1=$(rss_kib "$PID")

  # One Node moves between two addresses, CHANGES times.
  k=$(( n / 2 ))
  a="$WORK/one-a.yaml"; b="$WORK/one-b.yaml"
  { echo "apiVersion: v1"; echo "kind: NodeList"; echo "items:"; node_doc "$k" "$(node_ip "$k")" ""; } > "$a"
  { echo "apiVersion: v1"; echo "kind: NodeList"; echo "items:"; node_doc "$k" "172.30.0.1" ""; } > "$b"
  : > "$WORK/change.us"
  for i in $(seq "$CHANGES"); do
    f=$a; [ $(( i % 2 )) = 1 ] && f=$b
    t0=$EPOCHREALTIME
    out=$(ctl apply -f "$f")
    t1=$EPOCHREALTIME
    [ "$out" = "node/node-$k configured" ] || { echo "unexpected: $out" >&2; exit 1; }
    echo $(( ${t1/./} - ${t0/./} )) >> "$WORK/change.us"
    printf '%s\tchange_ctl\t%s\n' "$n" "$(( ${t1/./} - ${t0/./} ))" >> "$RESULTS_DIR/times.tsv"
  done
  # The same over the socket, without a client process: one connection, one request
  # at a time, each timed from its write to its answer.
  python3 - "$WORK/sock" "$k" "$(node_cidr "$k")" "$(node_ip "$k")" "$CHANGES" > "$WORK/change-rpc.us" <<'PY'
import json, socket, sys, time
path, k, cidr, ip, n = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
s = socket.socket(socket.AF_UNIX); s.connect(path); f = s.makefile("rwb")
for i in range(n):
    addr = ip if i % 2 else "172.30.0.1"
    obj = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-" + k},
           "spec": {"podCIDR": cidr}, "status": {"addresses": [{"type": "InternalIP", "address": addr}]}}
    req = json.dumps({"jsonrpc": "2.0", "id": i, "method": "apply",
                      "params": {"objects": [{"source": "bench", "doc": 1, "object": obj}]}}) + "\n"
    t0 = time.perf_counter(); f.write(req.encode()); f.flush(); r = json.loads(f.readline())
    t1 = time.perf_counter()
    if r["result"]["results"][0]["outcome"] != "configured":
        sys.exit("unexpected: %r" % r)
    print(int((t1 - t0) * 1e6))
PY
  while read -r us; do printf '%s\tchange_rpc\t%s\n' "$n" "$us" >> "$RESULTS_DIR/times.tsv"; done < "$WORK/change-rpc.us"
  # What the switch holds: every Node, the moved one's rule with its last address.
  listed=$(ctl get nodes | tail -n +2 | wc -l)
  [ "$listed" = "$(( n + 1 ))" ] || { echo "get nodes lists $listed, not $(( n + 1 ))" >&2; exit 1; }
  ctl dump-flows "table=7,ip,nw_dst=$(node_cidr "$k")" | grep -q "172.30.0.1\|$(node_ip "$k")" \
    || { echo "node-$k's rule is missing" >&2; exit 1; }
  journal_kib=$(( $(stat -c %s "$state/state.journal" 2>/dev/null || echo 0) / 1024 ))
  snapshot_kib=$(( $(stat -c %s "$state/state.json") / 1024 ))
  stop_switch
  t0=$EPOCHREALTIME
  start_switch "$state" "$RESULTS_DIR/vswitchd-$n-restart.log"
  t1=$EPOCHREALTIME
  restart_us=$(( ${t1/./} - ${t0/./} ))
  listed=$(ctl get nodes | tail -n +2 | wc -l)
  [ "$listed" = "$(( n + 1 ))" ] || { echo "after a restart: $listed nodes" >&2; exit 1; }
  rss2=$(rss_kib "$PID")
  stop_switch
  read -r med p90 p99 max <<< "$(stats "$WORK/change.us")"
  read -r rmed rp90 rp99 rmax <<< "$(stats "$WORK/change-rpc.us")"
  printf '| %s | %.2f | %.1f / %.1f / %.1f | %s / %s / %s / %s | %s / %s / %s / %s | %.2f | %s / %s |\n' \
    "$n" "$(awk -v u="$apply_us" 'BEGIN {print u / 1e6}')" \
    "$(awk -v k="$rss0" 'BEGIN {print k / 1024}')" "$(awk -v k="$rss1" 'BEGIN {print k / 1024}')" \
    "$(awk -v k="$rss2" 'BEGIN {print k / 1024}')" \
    "$med" "$p90" "$p99" "$max" "$rmed" "$rp90" "$rp99" "$rmax" \
    "$(awk -v u="$restart_us" 'BEGIN {print u / 1e6}')" "$journal_kib" "$snapshot_kib" \
    >> "$RESULTS_DIR/summary.md"
  ip netns del "$NS"
done

cat "$RESULTS_DIR/summary.md"
echo "results: $RESULTS_DIR" >&2
