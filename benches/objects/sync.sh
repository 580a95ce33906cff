#!/usr/bin/env bash
# sync.sh - vswitchd's first sync from a Kubernetes API server at cluster scale (issue 15):
# NODES Nodes, SERVICES Services with ENDPOINTS endpoints each (one EndpointSlice per
# Service), PODS Pods, served by the fake API server of the tests (tests/src/fakeapi.py:
# paged lists of 500, as kube's watcher asks, then watches), and a fresh vswitchd pointed
# at it by a kubeconfig, with no --pod-cidr or --node-ip (its own Node gives them).
#
# Run as root from anywhere:   sudo bash benches/objects/sync.sh
#
# Measured, RUNS times: the time from vswitchd's start to `vswitchctl show` saying every
# kind is listed (synced: CNI ADD no longer waits), the objects it then holds, the
# switch's flows, and its resident memory (VmRSS, and VmHWM: the peak). Then, once: TOUCH
# Pod status updates and TOUCH Pod label changes from the API server, the time until the
# switch has taken them and its CPU time per event; a restart of the synced switch (the
# API objects read back from their cache, then listed again) and its time to synced.
#
# Everything it creates (namespace vswsync-<pid>-node, the switch, the fake server, the
# state dir) is removed on exit, on failure and on Ctrl-C.
#
# Environment knobs [defaults]:
#   NODES [5000]   SERVICES [10000]   ENDPOINTS [10]   PODS [150000]   RUNS [3]   WORKERS [2]
#   TOUCH [10000] (Pod events sent to the synced switch, status and label changes)
#   BUILD [1] (0: use the binaries)   RESULTS_DIR [a new /tmp/vswsync-results.XXXXXX]
#   BIN_DIR [target/release]
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "sync.sh: run as root (it makes network namespaces)" >&2; exit 1; }
for c in ip python3 awk; do
  command -v "$c" >/dev/null || { echo "sync.sh: needs $c" >&2; exit 1; }
done

NODES=${NODES:-5000}
SERVICES=${SERVICES:-10000}
ENDPOINTS=${ENDPOINTS:-10}
PODS=${PODS:-150000}
RUNS=${RUNS:-3}
TOUCH=${TOUCH:-10000}
WORKERS=${WORKERS:-2}
BUILD=${BUILD:-1}
BIN_DIR=${BIN_DIR:-target/release}
RESULTS_DIR=${RESULTS_DIR:-$(mktemp -d /tmp/vswsync-results.XXXXXX)}
mkdir -p "$RESULTS_DIR"
TAG="vswsync-$$"
WORK=$(mktemp -d "/tmp/$TAG.XXXXXX")
NS="$TAG-node"
PID=""
API=""
PORT=$(( 30000 + $$ % 20000 ))

# shellcheck source=benches/objects/lib.sh
. benches/objects/lib.sh
stop_api() { if [ -n "$API" ]; then kill "$API" 2>/dev/null; wait "$API" 2>/dev/null || true; fi; API=""; }
trap 'stop_api; cleanup' EXIT INT TERM

# The cluster: Node k has Pod CIDR 10.(128 + k/256).(k%256).0/24 and InternalIP
# 172.16.0.0 + k + 1; node n0 is this one. Pod i runs on node i % NODES with the
# address (i / NODES) + 2 of its CIDR, in namespace ns(i % 100), labelled app(i % 1000).
# Service j: ClusterIP 10.96.0.0 + j + 10, port 80 -> 8080, its slice the next ENDPOINTS
# Pods' addresses.
cat > "$WORK/gen.py" <<'PY'
import ipaddress, json, sys
nodes, services, endpoints, pods, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
def cidr(k): return "10.%d.%d.0/24" % (128 + k // 256, k % 256)
def pod_ip(i):
    k = i % nodes
    return "10.%d.%d.%d" % (128 + k // 256, k % 256, i // nodes + 2)
items = []
for k in range(nodes):
    ip = str(ipaddress.IPv4Address(0xAC100000 + k + 1))
    items.append({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n%d" % k},
                  "spec": {"podCIDR": cidr(k), "podCIDRs": [cidr(k)]},
                  "status": {"addresses": [{"type": "InternalIP", "address": ip}]}})
for n in range(100):
    items.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns%d" % n,
                  "labels": {"kubernetes.io/metadata.name": "ns%d" % n}}})
for i in range(pods):
    ip = pod_ip(i)
    items.append({"apiVersion": "v1", "kind": "Pod",
                  "metadata": {"name": "pod-%d" % i, "namespace": "ns%d" % (i % 100),
                               "labels": {"app": "app%d" % (i % 1000)}},
                  "spec": {"nodeName": "n%d" % (i % nodes), "containers": [{"name": "c",
                           "ports": [{"name": "http", "containerPort": 8080}]}]},
                  "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}})
for j in range(services):
    ns = "ns%d" % (j % 100)
    vip = str(ipaddress.IPv4Address(0x0A600000 + j + 10))
    items.append({"apiVersion": "v1", "kind": "Service",
                  "metadata": {"name": "svc-%d" % j, "namespace": ns},
                  "spec": {"type": "ClusterIP", "clusterIP": vip, "clusterIPs": [vip],
                           "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}})
    eps = [{"addresses": [pod_ip((j * endpoints + e) % pods)], "conditions": {"ready": True}}
           for e in range(endpoints)]
    items.append({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                  "metadata": {"name": "svc-%d-1" % j, "namespace": ns,
                               "labels": {"kubernetes.io/service-name": "svc-%d" % j}},
                  "addressType": "IPv4", "endpoints": eps,
                  "ports": [{"port": 8080, "protocol": "TCP"}]})
json.dump(items, open(out, "w"))
PY

cat > "$WORK/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: http://127.0.0.1:$PORT
users:
- name: u
  user:
    token: fake
contexts:
- name: c
  context:
    cluster: fake
    user: u
current-context: c
KC

echo "== generating $NODES Nodes, $SERVICES Services x $ENDPOINTS endpoints, $PODS Pods" >&2
python3 "$WORK/gen.py" "$NODES" "$SERVICES" "$ENDPOINTS" "$PODS" "$WORK/fixtures.json"
ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" link add uplink type veth peer name uplink1
ip -n "$NS" addr add 172.16.0.1/16 dev uplink
ip -n "$NS" link set uplink up
ip -n "$NS" link set uplink1 up
ip netns exec "$NS" python3 tests/src/fakeapi.py "$PORT" "$WORK/fixtures.json" &
API=$!
for _ in $(seq 600); do
  ip netns exec "$NS" python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/fake/requests')" 2>/dev/null && break
  sleep 0.2
done

ctl() { "$VSWITCHCTL" --socket "$WORK/sock" --timeout 600 "$@"; }
start_switch() { # state dir, log
  ip netns exec "$NS" "$VSWITCHD" --socket "$WORK/sock" --state-dir "$1" --workers "$WORKERS" \
    --kubeconfig "$WORK/kubeconfig" --node-name n0 --cluster-cidr 10.128.0.0/9 --log-file "$2" &
  PID=$!
}
# Seconds from $1 (EPOCHREALTIME) until every kind is listed.
wait_synced() {
  local t0=$1
  for _ in $(seq 6000); do
    if ctl --json show 2>/dev/null | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin).get("api",{}).get("ready") else 1)' 2>/dev/null; then
      local t1=$EPOCHREALTIME
      awk -v a="${t0/./}" -v b="${t1/./}" 'BEGIN {printf "%.2f", (b - a) / 1e6}'
      return 0
    fi
    sleep 0.1
  done
  echo "not synced in 600 s" >&2; exit 1
}
mem() { awk '/VmRSS|VmHWM/ {printf "%s=%.0f ", $1, $2 / 1024}' "/proc/$PID/status"; }
# Watch events of kind $1 the switch has taken.
events() {
  ctl --json show | python3 -c 'import json,sys; a=json.load(sys.stdin)["api"]; print(next(k["events"] for k in a["kinds"] if k["kind"]==sys.argv[1]))' "$1"
}
# The first $2 objects of kind $1 sent again by the API server ($3: True, a new label;
# False, a status heartbeat): "SECS CPU_US" until the switch has taken them all, and
# vswitchd's CPU time (user + system) per event, in microseconds.
touch_events() {
  local e0 c0 t0 e t1 c1
  e0=$(events "$1"); c0=$(awk '{print $14 + $15}' "/proc/$PID/stat"); t0=$EPOCHREALTIME
  ip netns exec "$NS" python3 -c "import json, urllib.request; urllib.request.urlopen(urllib.request.Request('http://127.0.0.1:$PORT/fake/touch', data=json.dumps({'kind': '$1', 'n': $2, 'labels': $3}).encode(), method='POST'))"
  for _ in $(seq 12000); do
    e=$(events "$1"); [ "$e" -ge $((e0 + $2)) ] && break; sleep 0.05
  done
  t1=$EPOCHREALTIME; c1=$(awk '{print $14 + $15}' "/proc/$PID/stat")
  awk -v a="${t0/./}" -v b="${t1/./}" -v c="$((c1 - c0))" -v hz="$(getconf CLK_TCK)" -v n="$2" \
    'BEGIN {printf "%.2f %.1f", (b - a) / 1e6, c * 1e6 / hz / n}'
}

{
  echo "| run | start to synced (s) | objects held from the API | flows | RSS / peak (MiB) |"
  echo "|---|---|---|---|---|"
} > "$RESULTS_DIR/summary.md"
for r in $(seq "$RUNS"); do
  state="$WORK/state-$r"
  rm -rf "$state"
  t0=$EPOCHREALTIME
  start_switch "$state" "$RESULTS_DIR/vswitchd-$r.log"
  secs=$(wait_synced "$t0")
  held=$(ctl --json show | python3 -c 'import json,sys; a=json.load(sys.stdin)["api"]; print(", ".join("%s %d" % (k["kind"], k["objects"]) for k in a["kinds"]))')
  flows=$(ctl show | awk '/^flows:/ {print $2}')
  m=$(mem)
  rss=$(echo "$m" | sed 's/.*VmRSS:=\([0-9]*\).*/\1/'); hwm=$(echo "$m" | sed 's/.*VmHWM:=\([0-9]*\).*/\1/')
  echo "| $r | $secs | $held | $flows | $rss / $hwm |" >> "$RESULTS_DIR/summary.md"
  echo "run $r: synced in $secs s; $held; flows $flows; $m" >&2
  if [ "$r" = "$RUNS" ]; then
    # The synced switch under watch events: Pods' status heartbeats (nothing it keeps
    # changes) and label changes (each patched into the policies naming the Pod: none
    # here), TOUCH of each.
    read -r secs us <<< "$(touch_events Pod "$TOUCH" False)"
    echo "$TOUCH Pod status updates: taken in $secs s, vswitchd CPU $us µs each" | tee -a "$RESULTS_DIR/summary.md" >&2
    read -r secs us <<< "$(touch_events Pod "$TOUCH" True)"
    echo "$TOUCH Pod label changes: taken in $secs s, vswitchd CPU $us µs each" | tee -a "$RESULTS_DIR/summary.md" >&2
    stop_switch
    t0=$EPOCHREALTIME
    start_switch "$state" "$RESULTS_DIR/vswitchd-restart.log"
    secs=$(wait_synced "$t0")
    m=$(mem)
    echo "restart of the synced switch (its cache read back, then listed again): synced in $secs s; $m" | tee -a "$RESULTS_DIR/summary.md" >&2
  fi
  stop_switch
done
cat "$RESULTS_DIR/summary.md"
echo "results: $RESULTS_DIR" >&2
