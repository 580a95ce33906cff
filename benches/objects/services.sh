#!/usr/bin/env bash
# services.sh - Services at cluster scale: N Services with E endpoints each (one
# EndpointSlice per Service) applied through `vswitchctl apply -f`, then one endpoint of
# one Service changed among them, many times; at several N.
#
# Run as root from anywhere:   sudo bash benches/objects/services.sh
#
# For each N in SIZES: a fresh namespace, state dir and vswitchd (release build) with a Pod
# network (--pod-cidr 10.250.0.0/24). Then:
#   1. `vswitchctl apply -f` of one JSON List holding the N Services (ClusterIPs from
#      10.96.0.0/12, port 80 -> targetPort http, TCP) and their N slices (E ready endpoints
#      each, port 8080, spread over 10.0.0.0/8). Measured: the command's wall time (every
#      object read, compiled into its ServiceLB rule and select group, installed, saved in
#      one journal append, published) and vswitchd's resident memory before and after.
#   2. CHANGES times, over the socket (one connection, a request at a time, timed from its
#      write to its answer: durable and in use when answered): the slice of Service N/2
#      applied with its first endpoint replaced, then back. Median, p90, p99, max. And the
#      same through `vswitchctl apply -f` (a process per change), fewer times.
#   3. A check: the changed Service's group holds the endpoint last applied; a restart
#      brings every Service back (the start's time).
#
# Results (summary.md, env.txt, vswitchd logs) go to RESULTS_DIR. Everything it creates
# (namespace vswsvc-<pid>-node, the switch, its state dir) is removed on exit, on failure
# and on Ctrl-C.
#
# Environment knobs [defaults]:
#   SIZES ["1000 10000"]   ENDPOINTS [10]   CHANGES [200]   CTL_CHANGES [20]   WORKERS [2]
#   BUILD [1] (0: use the binaries)   RESULTS_DIR [a new /tmp/vswsvc-results.XXXXXX]
#   BIN_DIR [target/release]
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "services.sh: run as root (it makes network namespaces)" >&2; exit 1; }
for c in ip python3 awk sort; do
  command -v "$c" >/dev/null || { echo "services.sh: needs $c" >&2; exit 1; }
done

SIZES=${SIZES:-"1000 10000"}
ENDPOINTS=${ENDPOINTS:-10}
CHANGES=${CHANGES:-200}
CTL_CHANGES=${CTL_CHANGES:-20}
WORKERS=${WORKERS:-2}
BUILD=${BUILD:-1}
BIN_DIR=${BIN_DIR:-target/release}
RESULTS_DIR=${RESULTS_DIR:-$(mktemp -d /tmp/vswsvc-results.XXXXXX)}
mkdir -p "$RESULTS_DIR"
TAG="vswsvc-$$"
WORK=$(mktemp -d "/tmp/$TAG.XXXXXX")
NS="$TAG-node"
PID=""

# shellcheck source=benches/objects/lib.sh
. benches/objects/lib.sh

# The objects, as Python writes them: gen.py N E OUT (the whole List), or
# gen.py N E OUT K VARIANT (a List with slice K only, its first endpoint per VARIANT).
cat > "$WORK/gen.py" <<'PY'
import json, sys
n, e, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def vip(i):
    i += 10
    return "10.%d.%d.%d" % (96 + (i >> 16), (i >> 8) & 255, i & 255)
def ep(i, j):
    k = i * 64 + j + 1
    return "10.%d.%d.%d" % (1 + (k >> 16), (k >> 8) & 255, k & 255)
def service(i):
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "svc-%d" % i, "namespace": "bench"},
            "spec": {"type": "ClusterIP", "clusterIP": vip(i), "clusterIPs": [vip(i)],
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"}]}}
def slice_(i, first=None):
    eps = [ep(i, j) for j in range(e)]
    if first:
        eps[0] = first
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "svc-%d-abcde" % i, "namespace": "bench",
                         "labels": {"kubernetes.io/service-name": "svc-%d" % i}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [a], "conditions": {"ready": True}} for a in eps]}
if len(sys.argv) > 4:
    k, variant = int(sys.argv[4]), sys.argv[5]
    items = [slice_(k, "10.200.0.%s" % variant if variant != "orig" else None)]
else:
    items = [service(i) for i in range(n)] + [slice_(i) for i in range(n)]
json.dump({"apiVersion": "v1", "kind": "List", "items": items}, open(out, "w"))
PY


start_switch() { # state dir, log
  ip netns exec "$NS" "$VSWITCHD" --socket "$WORK/sock" --state-dir "$1" --workers "$WORKERS" \
    --pod-cidr 10.250.0.0/24 --node-name bench-node --log-file "$2" &
  PID=$!
  for _ in $(seq 300); do
    "$VSWITCHCTL" --socket "$WORK/sock" version >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "vswitchd did not start; see $2" >&2
  exit 1
}
ctl() { "$VSWITCHCTL" --socket "$WORK/sock" --timeout 600 "$@"; }

{
  echo "| Services (x $ENDPOINTS endpoints) | apply -f (s) | RSS before / after / after a restart (MiB) | one endpoint changed, over the socket: median / p90 / p99 / max (ms) | same, vswitchctl apply -f (ms) | restart (s) |"
  echo "|---|---|---|---|---|---|"
} > "$RESULTS_DIR/summary.md"

for n in $SIZES; do
  echo "== $n Services" >&2
  ip netns del "$NS" 2>/dev/null || true
  ip netns add "$NS"
  ip -n "$NS" link set lo up
  state="$WORK/state-$n"
  rm -rf "$state"
  start_switch "$state" "$RESULTS_DIR/vswitchd-$n.log"
  python3 "$WORK/gen.py" "$n" "$ENDPOINTS" "$WORK/all.json"
  rss0=$(rss_kib "$PID")
  t0=$EPOCHREALTIME
  ctl apply -f "$WORK/all.json" > "$WORK/apply.out"
  t1=$EPOCHREALTIME
  apply_us=$(( ${t1/./} - ${t0/./} ))
  created=$(grep -c ' created$' "$WORK/apply.out" || true)
  [ "$created" = "$(( 2 * n ))" ] || { echo "only $created of $(( 2 * n )) objects created" >&2; tail "$WORK/apply.out" >&2; exit 1; }
  rss1=$(rss_kib "$PID")

  k=$(( n / 2 ))
  python3 "$WORK/gen.py" "$n" "$ENDPOINTS" "$WORK/a.json" "$k" 1
  python3 "$WORK/gen.py" "$n" "$ENDPOINTS" "$WORK/b.json" "$k" orig
  python3 - "$WORK/sock" "$WORK/a.json" "$WORK/b.json" "$CHANGES" > "$WORK/change.us" <<'PY'
import json, socket, sys, time
path, a, b, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
objs = [json.load(open(f))["items"][0] for f in (a, b)]
s = socket.socket(socket.AF_UNIX); s.connect(path); f = s.makefile("rwb")
for i in range(n):
    req = json.dumps({"jsonrpc": "2.0", "id": i, "method": "apply",
                      "params": {"objects": [{"source": "bench", "doc": 1, "object": objs[i % 2]}]}}) + "\n"
    t0 = time.perf_counter(); f.write(req.encode()); f.flush(); r = json.loads(f.readline())
    t1 = time.perf_counter()
    if r["result"]["results"][0]["outcome"] != "configured":
        sys.exit("unexpected: %r" % r)
    print(int((t1 - t0) * 1e6))
PY
  : > "$WORK/change-ctl.us"
  for i in $(seq "$CTL_CHANGES"); do
    f="$WORK/a.json"; [ $(( i % 2 )) = 0 ] && f="$WORK/b.json"
    t0=$EPOCHREALTIME
    out=$(ctl apply -f "$f")
    t1=$EPOCHREALTIME
    case "$out" in *configured) ;; *) echo "unexpected: $out" >&2; exit 1;; esac
    echo $(( ${t1/./} - ${t0/./} )) >> "$WORK/change-ctl.us"
  done
  # The last applied was b.json when CTL_CHANGES is even (the original endpoints).
  want="10.200.0.1"; [ $(( CTL_CHANGES % 2 )) = 0 ] && want=$(python3 -c "
import json; print(json.load(open('$WORK/b.json'))['items'][0]['endpoints'][0]['addresses'][0])")
  ctl dump-groups --names | grep "service/bench/svc-$k)" | grep -q "nat(dst=$want:8080)" \
    || { echo "svc-$k's group does not hold $want" >&2; ctl dump-groups --names | grep "svc-$k)" >&2; exit 1; }
  stop_switch
  t0=$EPOCHREALTIME
  start_switch "$state" "$RESULTS_DIR/vswitchd-$n-restart.log"
  t1=$EPOCHREALTIME
  restart_us=$(( ${t1/./} - ${t0/./} ))
  listed=$(ctl get svc -A | tail -n +2 | wc -l)
  [ "$listed" = "$n" ] || { echo "after a restart: $listed Services" >&2; exit 1; }
  rss2=$(rss_kib "$PID")
  stop_switch
  read -r med p90 p99 max <<< "$(stats "$WORK/change.us")"
  read -r cmed cp90 cp99 cmax <<< "$(stats "$WORK/change-ctl.us")"
  printf '| %s | %.2f | %.1f / %.1f / %.1f | %s / %s / %s / %s | %s / %s / %s / %s | %.2f |\n' \
    "$n" "$(awk -v u="$apply_us" 'BEGIN {print u / 1e6}')" \
    "$(awk -v k="$rss0" 'BEGIN {print k / 1024}')" "$(awk -v k="$rss1" 'BEGIN {print k / 1024}')" \
    "$(awk -v k="$rss2" 'BEGIN {print k / 1024}')" \
    "$med" "$p90" "$p99" "$max" "$cmed" "$cp90" "$cp99" "$cmax" \
    "$(awk -v u="$restart_us" 'BEGIN {print u / 1e6}')" >> "$RESULTS_DIR/summary.md"
  ip netns del "$NS"
done

cat "$RESULTS_DIR/summary.md"
echo "results: $RESULTS_DIR" >&2
