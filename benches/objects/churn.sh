#!/usr/bin/env bash
# churn.sh - one TCP stream between two Pods while unrelated objects change, against the
# same stream with nothing changing, in one run.
#
# Run as root from anywhere:   sudo bash benches/objects/churn.sh
#
# A namespace stands for the node; vswitchd (release build) runs there with a Pod network
# (--pod-cidr 10.244.1.0/24) and a tunnel (--node-ip 172.31.255.254 on a veth), so Node
# objects compile to rules and routes. Two Pods (namespaces with a TAP each, added with
# `add-port --ip`), iperf3 between them. RUNS rounds, each: a quiet run (the stream
# alone, SECS seconds) and a churn run (the stream while CHANGES Node objects change:
# one `apply` request each, on one control connection, paced evenly over the run), in
# alternating order. The churn's client is a few lines of python on the socket, so the
# changes cost the switch's work, not a process start each.
#
# Prints the throughput of each run, the medians and ratio (churn / quiet, range), and the
# datapath counters the churn moved: flushes (must stay 0), revalidations, megaflows
# kept and invalidated, translations (upcalls). Results go to RESULTS_DIR. Everything
# it creates is removed on exit, on failure and on Ctrl-C.
#
# Environment knobs [defaults]:
#   RUNS [5]   SECS [10]   CHANGES [1000]   WORKERS [2]   BUILD [1]
#   RESULTS_DIR [a new /tmp/vswchurn-results.XXXXXX]   BIN_DIR [target/release]
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "churn.sh: run as root (it makes network namespaces)" >&2; exit 1; }
for c in ip iperf3 python3 awk; do
  command -v "$c" >/dev/null || { echo "churn.sh: needs $c" >&2; exit 1; }
done
RUNS=${RUNS:-5}
SECS=${SECS:-10}
CHANGES=${CHANGES:-1000}
WORKERS=${WORKERS:-2}
BUILD=${BUILD:-1}
BIN_DIR=${BIN_DIR:-target/release}
RESULTS_DIR=${RESULTS_DIR:-$(mktemp -d /tmp/vswchurn-results.XXXXXX)}
mkdir -p "$RESULTS_DIR"
TAG="vswch-$$"
WORK=$(mktemp -d "/tmp/$TAG.XXXXXX")
NODE="$TAG-node"; A="$TAG-a"; B="$TAG-b"
PID=""
cleanup() {
  set +e
  [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
  for n in "$A" "$B" "$NODE"; do ip netns del "$n" 2>/dev/null; done
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

[ "$BUILD" = 1 ] && cargo build --release -q -p vswitch -p vswitchctl
VSWITCHD=$(realpath "$BIN_DIR/vswitchd")
VSWITCHCTL=$(realpath "$BIN_DIR/vswitchctl")
SOCK="$WORK/sock"
ctl() { "$VSWITCHCTL" --socket "$SOCK" "$@"; }

for n in "$NODE" "$A" "$B"; do ip netns add "$n"; ip -n "$n" link set lo up; done
ip -n "$NODE" link add uplink type veth peer name uplink-peer
ip -n "$NODE" addr add 172.31.255.254/12 dev uplink
ip -n "$NODE" link set uplink up
ip -n "$NODE" link set uplink-peer up
ip netns exec "$NODE" "$VSWITCHD" --socket "$SOCK" --state-dir "$WORK/state" --workers "$WORKERS" \
  --pod-cidr 10.244.1.0/24 --node-ip 172.31.255.254 --node-name churn-node \
  --log-file "$RESULTS_DIR/vswitchd.log" &
PID=$!
for _ in $(seq 100); do ctl version >/dev/null 2>&1 && break; sleep 0.1; done
ctl add-port pod-a --type tap --netns "/var/run/netns/$A" --ifname eth0 --ip 10.244.1.10/24 --gateway 10.244.1.1 >/dev/null
ctl add-port pod-b --type tap --netns "/var/run/netns/$B" --ifname eth0 --ip 10.244.1.11/24 --gateway 10.244.1.1 >/dev/null
ip netns exec "$A" ping -c 3 -W 1 10.244.1.11 >/dev/null
# The churn's client: N `apply` requests of one Node each on one connection, paced evenly
# over SECS seconds (0: as fast as answered). "create": Nodes churn-0..N-1; "churn": the
# first 500 of them move between two addresses.
cat > "$WORK/churn.py" <<'PY'
import json, socket, sys, time
sock_path, n, secs, mode = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
def node(i, gen):
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "churn-%d" % i},
            "spec": {"podCIDR": "10.%d.%d.0/24" % (100 + i // 256, i % 256)},
            "status": {"addresses": [{"type": "InternalIP",
                                      "address": "172.20.%d.%d" % (i // 250 + 10 * (gen % 2), 1 + i % 250)}]}}
s = socket.socket(socket.AF_UNIX)
s.connect(sock_path)
f = s.makefile("rwb")
start = time.monotonic()
for k in range(n):
    i, gen = (k % 500, 1 + k // 500) if mode == "churn" else (k, 0)
    req = {"jsonrpc": "2.0", "id": k, "method": "apply",
           "params": {"objects": [{"source": "churn", "doc": 1, "object": node(i, gen)}]}}
    f.write((json.dumps(req) + "\n").encode())
    f.flush()
    r = json.loads(f.readline())
    if r["result"]["results"][0]["outcome"] not in ("created", "configured", "unchanged"):
        sys.exit("unexpected: %r" % r)
    wait = start + (k + 1) * secs / n - time.monotonic()
    if secs > 0 and wait > 0:
        time.sleep(wait)
PY
# Objects that exist before the runs, so the churn changes them.
python3 "$WORK/churn.py" "$SOCK" 500 0 create

ip netns exec "$B" iperf3 -s -D -p 5201 >/dev/null
sleep 0.5
counters() {
  ctl --json show | python3 -c 'import json,sys; d=json.load(sys.stdin)["datapath"]; print(" ".join(str(d[k]) for k in ["flushes","revalidations","megaflows_kept","megaflows_invalidated","upcalls"]))'
}
run() { # quiet|churn round
  local mode=$1 before after gbps churner=""
  before=$(counters)
  if [ "$mode" = churn ]; then
    python3 "$WORK/churn.py" "$SOCK" "$CHANGES" "$(( SECS - 1 ))" churn &
    churner=$!
  fi
  gbps=$(ip netns exec "$A" timeout $(( SECS + 10 )) iperf3 -c 10.244.1.11 -p 5201 -t "$SECS" -J \
    | python3 -c 'import json,sys; print("%.3f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"] / 1e9))')
  [ -z "$churner" ] || wait "$churner"
  after=$(counters)
  printf '%s\t%s\t%s\t%s\n' "$2" "$mode" "$gbps" \
    "$(paste -d' ' <(tr ' ' '\n' <<< "$after") <(tr ' ' '\n' <<< "$before") | awk '{printf "%d ", $1 - $2}')" \
    >> "$RESULTS_DIR/runs.tsv"
  echo "round $2 $mode: $gbps Gbit/s" >&2
}
printf 'round\tmode\tGbit/s\tflushes revalidations kept invalidated upcalls\n' > "$RESULTS_DIR/runs.tsv"
for r in $(seq "$RUNS"); do
  if [ $(( r % 2 )) = 1 ]; then run quiet "$r"; run churn "$r"; else run churn "$r"; run quiet "$r"; fi
done
awk -F'\t' 'NR > 1 { v[$2] = v[$2] " " $3; split($4, cnt, " "); if ($2 == "churn") { f += cnt[1]; rv += cnt[2]; k += cnt[3]; inv += cnt[4]; up += cnt[5]; n++ } }
  function med(s,   a, m, i, j, t) { m = split(s, a, " "); for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }; return (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2 }
  function lo(s,   a, m, i, x) { m = split(s, a, " "); x = a[1]; for (i = 2; i <= m; i++) if (a[i] + 0 < x + 0) x = a[i]; return x }
  function hi(s,   a, m, i, x) { m = split(s, a, " "); x = a[1]; for (i = 2; i <= m; i++) if (a[i] + 0 > x + 0) x = a[i]; return x }
  END {
    q = med(v["quiet"]); ch = med(v["churn"])
    printf "| stream | Gbit/s median (range) |\n|---|---|\n| quiet | %.2f (%.2f-%.2f) |\n| %d changes in %ds | %.2f (%.2f-%.2f) |\n", q, lo(v["quiet"]), hi(v["quiet"]), '"$CHANGES"', '"$SECS"', ch, lo(v["churn"]), hi(v["churn"])
    printf "\nchurn / quiet: %.3f\n", ch / q
    printf "per churn run (mean): flushes %.1f, revalidations %.0f, megaflows kept %.0f, invalidated %.1f, translations %.1f\n", f / n, rv / n, k / n, inv / n, up / n
  }' "$RESULTS_DIR/runs.tsv" | tee "$RESULTS_DIR/summary.md"
echo "results: $RESULTS_DIR" >&2
