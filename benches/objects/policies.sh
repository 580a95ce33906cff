#!/usr/bin/env bash
# policies.sh - NetworkPolicy at cluster scale (issue 13): Namespaces, P Pods (a few of
# them local) and N NetworkPolicies applied through `vswitchctl apply -f`, then one Pod's
# labels changed among them, many times; at several sizes.
#
# Run as root from anywhere:   sudo bash benches/objects/policies.sh
#
# For each size "P/N" in SIZES: a fresh namespace, state dir and vswitchd (release build)
# with a Pod network (--pod-cidr 10.244.1.0/24 --node-name n1), and LOCAL TAP ports added
# by hand with addresses in it (`add-port npK --type tap --ip 10.244.1.(10+K)/24`: local
# Pods, which Pod objects bind to by address). Then:
#   1. `vswitchctl apply -f` of one JSON List: 100 Namespaces (labels env, team) and
#      kube-system, P Pods (the first LOCAL with the TAPs' addresses on node n1, the rest
#      remote, on nodes n2.., addresses in 10.245.0.0/16; labels app=appK for K in 0..200,
#      tier, env; named container ports http (80 or 8080), metrics, dns), two DNS Pods in
#      kube-system, and N NetworkPolicies of eight shapes in turn (see gen.py below:
#      default deny, same-namespace app to app, namespaceSelector AND podSelector with a
#      named port, ipBlock with excepts, a port range, egress to DNS, egress on a named
#      port, ingress from a team's namespaces), plus two "probe" policies around the
#      changing Pod. Measured: the command's wall time (every object read, the policies
#      compiled and installed, saved in one journal append, published), flows installed
#      (`show`), vswitchd's resident memory before and after; and from `dump-flows` the
#      conjunctions' clause flows: their sum (what is installed) and what the product of
#      each conjunction's dimensions (one flow per combination) would have been.
#   2. CHANGES times, over the socket (one connection, a request at a time, timed from its
#      write to its answer: durable and in use when answered): local Pod pod-3 (ns-3)
#      applied with label role=probe-client, then role=other: a peer of the probe
#      policy in ns-0 and selected by the probe policy of ns-3 in the first state, neither
#      in the second; every policy naming it is compiled again. Median, p90, p99, max.
#      And the same through `vswitchctl apply -f` (a process per change), fewer times.
#      Before those, CHANGES times over the socket too: pod-3 between tier=web and
#      tier=api, which changes its choice by every policy of shapes 2 (peers tier=web in
#      env=prod namespaces: some 1,100 addresses each at 10,000 Pods), 4 and 6 that can
#      see it: each compiled again whole.
#      Then CHANGES / 2 times a new remote Pod in ns-0 with tier=web (a peer of the
#      shape 2 and 5 policies that see it) as the API server shows one start: created
#      without an address, given its address, deleted; each step timed over the socket.
#   3. A check: `vswitchctl policy-check ns-3/pod-3 ns-0/pod-0 tcp 80` says allow after
#      role=probe-client, deny after role=other, for the state last applied.
#
# Results (summary.md, env.txt, vswitchd logs) go to RESULTS_DIR. Everything it creates
# (namespace vswnp-<pid>-node, the switch, its TAPs, its state dir) is removed on exit, on
# failure and on Ctrl-C.
#
# Environment knobs [defaults]:
#   SIZES ["1000/100 10000/1000"] (Pods/policies)   LOCAL [50]   CHANGES [200]
#   CTL_CHANGES [20]   WORKERS [2]   BUILD [1] (0: use the binaries)
#   RESULTS_DIR [a new /tmp/vswnp-results.XXXXXX]   BIN_DIR [target/release]
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "policies.sh: run as root (it makes network namespaces)" >&2; exit 1; }
for c in ip python3 awk sort; do
  command -v "$c" >/dev/null || { echo "policies.sh: needs $c" >&2; exit 1; }
done

SIZES=${SIZES:-"1000/100 10000/1000"}
LOCAL=${LOCAL:-50}
CHANGES=${CHANGES:-200}
CTL_CHANGES=${CTL_CHANGES:-20}
WORKERS=${WORKERS:-2}
BUILD=${BUILD:-1}
BIN_DIR=${BIN_DIR:-target/release}
RESULTS_DIR=${RESULTS_DIR:-$(mktemp -d /tmp/vswnp-results.XXXXXX)}
mkdir -p "$RESULTS_DIR"
TAG="vswnp-$$"
WORK=$(mktemp -d "/tmp/$TAG.XXXXXX")
NS="$TAG-node"
PID=""
[ "$LOCAL" -ge 4 ] && [ "$LOCAL" -le 200 ] || { echo "policies.sh: LOCAL must be 4..200" >&2; exit 1; }

# shellcheck source=benches/objects/lib.sh
. benches/objects/lib.sh

# The objects: gen.py PODS POLICIES LOCAL OUT (the whole List), or
# gen.py PODS POLICIES LOCAL OUT ROLE [TIER] (a List with pod-3 only, labelled role=ROLE
# and tier=TIER, web when not given).
cat > "$WORK/gen.py" <<'PY'
import json, sys
pods, policies, local, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
NS, APPS, TIERS = 100, 200, ["web", "api", "db"]
ENVS, TEAMS = ["prod", "staging", "dev"], 10

def ns_name(k): return "ns-%d" % k
def namespace(k):
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": ns_name(k), "labels": {
                "kubernetes.io/metadata.name": ns_name(k),
                "env": ENVS[k % 3], "team": "team%d" % (k % TEAMS)}}}
def pod_ip(i):
    if i < local:
        return "10.244.1.%d" % (10 + i)
    k = i + 1
    return "10.245.%d.%d" % (k >> 8, k & 255)
def containers(http):
    return [{"name": "main", "ports": [
        {"name": "http", "containerPort": http, "protocol": "TCP"},
        {"name": "metrics", "containerPort": 9090},
        {"name": "dns", "containerPort": 53, "protocol": "UDP"}]}]
def labels(i, role=None, tier=None):
    app = i % APPS
    l = {"app": "app%d" % app, "tier": tier or TIERS[i % 3], "env": ENVS[(app % NS) % 3]}
    if role:
        l["role"] = role
    return l
def pod(i, role=None, tier=None):
    # Pod i is in the namespace of its app (two apps a namespace).
    ns = ns_name((i % APPS) % NS)
    node = "n1" if i < local else "n%d" % (2 + i % 99)
    ip = pod_ip(i)
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "pod-%d" % i, "namespace": ns, "labels": labels(i, role, tier)},
            "spec": {"nodeName": node, "containers": containers(80 if i % 2 else 8080)},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}}
def dns_pod(i):
    ip = "10.245.255.%d" % (10 + i)
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "coredns-%d" % i, "namespace": "kube-system",
                         "labels": {"k8s-app": "kube-dns"}},
            "spec": {"nodeName": "n2", "containers": containers(8080)},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}}
def sel(**kv): return {"matchLabels": kv}
def tcp(p, end=None):
    d = {"protocol": "TCP", "port": p}
    if end: d["endPort"] = end
    return d
def policy(j):
    k = j % NS
    ns = ns_name(k)
    # The apps of namespace k: k and k + 100.
    app, other = "app%d" % k, "app%d" % (k + NS)
    shape = j % 8
    if shape == 0:
        spec = {"podSelector": {}, "policyTypes": ["Ingress"]}
    elif shape == 1:
        spec = {"podSelector": sel(app=app), "ingress": [
            {"from": [{"podSelector": sel(app=other)}], "ports": [tcp(8080), tcp(80)]}]}
    elif shape == 2:
        spec = {"podSelector": sel(app=app), "ingress": [
            {"from": [{"namespaceSelector": sel(env="prod"), "podSelector": sel(tier="web")}],
             "ports": [tcp("http")]}]}
    elif shape == 3:
        spec = {"podSelector": {"matchExpressions": [
                    {"key": "tier", "operator": "In", "values": ["web", "api"]}]},
                "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8",
                                                   "except": ["10.244.0.0/16", "10.245.0.0/16", "10.96.0.0/12"]}},
                                      {"ipBlock": {"cidr": "192.168.0.0/16", "except": ["192.168.100.0/24"]}}],
                             "ports": [tcp(443)]}]}
    elif shape == 4:
        spec = {"podSelector": sel(app=other), "ingress": [
            {"from": [{"podSelector": sel(tier="api")}], "ports": [tcp(30000, 32767)]}]}
    elif shape == 5:
        spec = {"podSelector": {}, "policyTypes": ["Egress"], "egress": [
            {"to": [{"namespaceSelector": sel(**{"kubernetes.io/metadata.name": "kube-system"}),
                     "podSelector": sel(**{"k8s-app": "kube-dns"})}],
             "ports": [{"protocol": "UDP", "port": 53}, tcp(53)]},
            {"to": [{"podSelector": {}}]}]}
    elif shape == 6:
        spec = {"podSelector": sel(tier="api"), "policyTypes": ["Egress"], "egress": [
            {"to": [{"podSelector": sel(tier="db")}], "ports": [tcp("http"), tcp("metrics")]}]}
    else:
        spec = {"podSelector": sel(app=app), "ingress": [
            {"from": [{"namespaceSelector": sel(team="team%d" % (k % TEAMS))}],
             "ports": [tcp(80), tcp(8080)]},
            {"from": [{"namespaceSelector": sel(env="prod"), "podSelector": sel(tier="db")}],
             "ports": [tcp("metrics")]}]}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "np-%d" % j, "namespace": ns}, "spec": spec}
def probes():
    # ns-0's pod-0 admits port 80 from role=probe-client anywhere; ns-3 isolates its
    # role=probe-client Pods' egress, allowing port 80 to app0.
    return [{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
             "metadata": {"name": "probe-in", "namespace": "ns-0"},
             "spec": {"podSelector": sel(app="app0"), "policyTypes": ["Ingress"], "ingress": [
                 {"from": [{"namespaceSelector": {}, "podSelector": sel(role="probe-client")}],
                  "ports": [tcp(80)]}]}},
            {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
             "metadata": {"name": "probe-out", "namespace": "ns-3"},
             "spec": {"podSelector": sel(role="probe-client"), "policyTypes": ["Egress"], "egress": [
                 {"to": [{"namespaceSelector": {}, "podSelector": sel(app="app0")}],
                  "ports": [tcp(80)]}]}},
            # Pod 0 isolated for ingress whatever the shapes of ns-0 are.
            {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
             "metadata": {"name": "probe-deny", "namespace": "ns-0"},
             "spec": {"podSelector": sel(app="app0"), "policyTypes": ["Ingress"]}}]
if len(sys.argv) > 5 and sys.argv[5] in ("pending", "running"):
    # A new remote Pod in ns-0 (env=prod), tier=web: a peer of every policy of shapes 2
    # and 5 that can see it. Created as the API server creates it (no address), then
    # given its address.
    p = pod(pods + 1)
    p["metadata"].update(name="pod-new", namespace="ns-0")
    p["metadata"]["labels"].update(tier="web")
    if sys.argv[5] == "pending":
        p["status"] = {"phase": "Pending"}
    items = [p]
elif len(sys.argv) > 5:
    items = [pod(3, sys.argv[5], sys.argv[6] if len(sys.argv) > 6 else None)]
else:
    items = ([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system", "labels": {"kubernetes.io/metadata.name": "kube-system"}}}]
             + [namespace(k) for k in range(NS)]
             + [dns_pod(0), dns_pod(1)]
             + [pod(i, "other" if i == 3 else None) for i in range(pods)]
             + [policy(j) for j in range(policies)] + probes())
json.dump({"apiVersion": "v1", "kind": "List", "items": items}, open(out, "w"))
PY

# The conjunctions in a dump-flows: clause flows installed (the sum of each conjunction's
# dimensions) against the product of its dimensions; flows of each policy table.
cat > "$WORK/conj.py" <<'PY'
import re, sys
from collections import defaultdict
dims = defaultdict(lambda: defaultdict(int))
tables = defaultdict(int)
clause_flows = 0
for line in open(sys.argv[1]):
    m = re.search(r"table=(\d+)", line)
    if m:
        tables[int(m.group(1))] += 1
    cs = re.findall(r"conjunction\((\d+),(\d+)/(\d+)\)", line)
    if cs:
        clause_flows += 1
    for cid, k, n in cs:
        dims[(cid, n)][int(k)] += 1
s = sum(sum(d.values()) for d in dims.values())
p = 0
for (cid, n), d in dims.items():
    prod = 1
    for k in range(1, int(n) + 1):
        prod *= d.get(k, 0)
    p += prod
print(len(dims), clause_flows, s, p, tables.get(6, 0), tables.get(8, 0))
PY

# starts.py SOCK PENDING RUNNING N: N times a Pod created (pending, no address), given its
# address, and deleted, each over one connection, one request at a time; the
# microseconds of each step ("create", "address", "delete" and the time).
cat > "$WORK/starts.py" <<'PY'
import json, socket, sys, time
path, a, b, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
pending, running = [json.load(open(f))["items"][0] for f in (a, b)]
s = socket.socket(socket.AF_UNIX); s.connect(path); f = s.makefile("rwb")
steps = [("create", "apply", pending, "created"), ("address", "apply", running, "configured"),
         ("delete", "delete", running, "deleted")]
for i in range(n):
    for name, method, obj, want in steps:
        req = json.dumps({"jsonrpc": "2.0", "id": i, "method": method,
                          "params": {"objects": [{"source": "bench", "doc": 1, "object": obj}]}}) + "\n"
        t0 = time.perf_counter(); f.write(req.encode()); f.flush(); r = json.loads(f.readline())
        t1 = time.perf_counter()
        if r["result"]["results"][0]["outcome"] != want:
            sys.exit("unexpected: %r" % r)
        print(name, int((t1 - t0) * 1e6))
PY

# changes.py SOCK A B N: N applies over one connection, A and B in turn, one request at
# a time; the microseconds of each, from the request's write to its answer.
cat > "$WORK/changes.py" <<'PY'
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

start_switch() { # state dir, log
  ip netns exec "$NS" "$VSWITCHD" --socket "$WORK/sock" --state-dir "$1" --workers "$WORKERS" \
    --pod-cidr 10.244.1.0/24 --node-name n1 --log-file "$2" &
  PID=$!
  for _ in $(seq 300); do
    "$VSWITCHCTL" --socket "$WORK/sock" version >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "vswitchd did not start; see $2" >&2
  exit 1
}
ctl() { "$VSWITCHCTL" --socket "$WORK/sock" --timeout 600 "$@"; }
verdict() { ctl policy-check ns-3/pod-3 ns-0/pod-0 tcp 80 | head -1; }

{
  echo "| Pods / policies | apply -f (s) | flows: all / EgressPolicy / IngressPolicy | conjunctions: clause flows (sum) / product | RSS before / after (MiB) | pod-3's role (3 policies' choice of it), over the socket: median / p90 / p99 / max (ms) | same, vswitchctl apply -f: median / p90 / p99 / max (ms) | pod-3's tier (web/api), over the socket: median / p90 / p99 / max (ms) | a peer Pod starting, over the socket: created / given its address / deleted, median / p99 (ms) |"
  echo "|---|---|---|---|---|---|---|---|---|"
} > "$RESULTS_DIR/summary.md"

for size in $SIZES; do
  pods=${size%/*}
  pols=${size#*/}
  echo "== $pods Pods, $pols policies" >&2
  ip netns del "$NS" 2>/dev/null || true
  ip netns add "$NS"
  ip -n "$NS" link set lo up
  state="$WORK/state-$pods"
  rm -rf "$state"
  start_switch "$state" "$RESULTS_DIR/vswitchd-$pods.log"
  for k in $(seq 0 $(( LOCAL - 1 ))); do
    ctl add-port "np$k" --type tap --ip "10.244.1.$(( 10 + k ))/24" > /dev/null
  done
  python3 "$WORK/gen.py" "$pods" "$pols" "$LOCAL" "$WORK/all.json"
  flows0=$(ctl show | awk '/^flows:/ {print $2}')
  rss0=$(rss_kib "$PID")
  t0=$EPOCHREALTIME
  ctl apply -f "$WORK/all.json" > "$WORK/apply.out"
  t1=$EPOCHREALTIME
  apply_us=$(( ${t1/./} - ${t0/./} ))
  want=$(( 101 + 2 + pods + pols + 3 ))
  created=$(grep -c ' created$' "$WORK/apply.out" || true)
  [ "$created" = "$want" ] || { echo "only $created of $want objects created" >&2; grep -v ' created$' "$WORK/apply.out" | head >&2; exit 1; }
  rss1=$(rss_kib "$PID")
  flows1=$(ctl show | awk '/^flows:/ {print $2}')
  ctl dump-flows > "$WORK/flows.txt"
  read -r nconj clause_flows csum cprod t6 t8 <<< "$(python3 "$WORK/conj.py" "$WORK/flows.txt")"
  echo "flows before the objects: $flows0; after: $flows1; conjunctions $nconj, clause flows $clause_flows, sum $csum, product $cprod; table 6: $t6, table 8: $t8" \
    > "$RESULTS_DIR/flows-$pods.txt"
  [ "$(verdict)" = deny ] || { echo "before any change: pod-3 (role=other) reaches pod-0" >&2; exit 1; }

  python3 "$WORK/gen.py" "$pods" "$pols" "$LOCAL" "$WORK/a.json" probe-client
  python3 "$WORK/gen.py" "$pods" "$pols" "$LOCAL" "$WORK/b.json" other
  python3 "$WORK/changes.py" "$WORK/sock" "$WORK/a.json" "$WORK/b.json" "$CHANGES" > "$WORK/change.us"
  # The other change: pod-3 between tier=web and tier=api (role=other both times).
  python3 "$WORK/gen.py" "$pods" "$pols" "$LOCAL" "$WORK/c.json" other api
  python3 "$WORK/changes.py" "$WORK/sock" "$WORK/c.json" "$WORK/b.json" "$CHANGES" > "$WORK/change-tier.us"
  [ "$(verdict)" = deny ] || { echo "after the tier changes: pod-3 (role=other) reaches pod-0" >&2; exit 1; }
  # A peer Pod starting and ending, CHANGES / 2 times.
  python3 "$WORK/gen.py" "$pods" "$pols" "$LOCAL" "$WORK/pending.json" pending
  python3 "$WORK/gen.py" "$pods" "$pols" "$LOCAL" "$WORK/running.json" running
  python3 "$WORK/starts.py" "$WORK/sock" "$WORK/pending.json" "$WORK/running.json" $(( (CHANGES + 1) / 2 )) > "$WORK/starts.us"
  for step in create address delete; do
    awk -v s="$step" '$1 == s {print $2}' "$WORK/starts.us" > "$WORK/start-$step.us"
  done
  python3 "$WORK/changes.py" "$WORK/sock" "$WORK/a.json" "$WORK/b.json" "$CHANGES" > "$WORK/change.us"
  # The last over the socket: a.json when CHANGES is odd.
  sock_want=deny; [ $(( CHANGES % 2 )) = 1 ] && sock_want=allow
  got=$(verdict)
  [ "$got" = "$sock_want" ] || { echo "after $CHANGES changes over the socket: $got, not $sock_want" >&2; exit 1; }
  : > "$WORK/change-ctl.us"
  for i in $(seq "$CTL_CHANGES"); do
    f="$WORK/a.json"; [ $(( i % 2 )) = 0 ] && f="$WORK/b.json"
    t0=$EPOCHREALTIME
    out=$(ctl apply -f "$f")
    t1=$EPOCHREALTIME
    case "$out" in *configured) ;; *) echo "unexpected: $out" >&2; exit 1;; esac
    echo $(( ${t1/./} - ${t0/./} )) >> "$WORK/change-ctl.us"
  done
  ctl_want=allow; [ $(( CTL_CHANGES % 2 )) = 0 ] && ctl_want=deny
  got=$(verdict)
  [ "$got" = "$ctl_want" ] || { echo "after $CTL_CHANGES changes with apply -f: $got, not $ctl_want" >&2; exit 1; }
  # And the other state, once more, so both verdicts are seen at this size.
  if [ "$ctl_want" = deny ]; then ctl apply -f "$WORK/a.json" > /dev/null; other=allow
  else ctl apply -f "$WORK/b.json" > /dev/null; other=deny; fi
  got=$(verdict)
  [ "$got" = "$other" ] || { echo "policy-check: $got, not $other" >&2; exit 1; }
  echo "policy-check ns-3/pod-3 ns-0/pod-0 tcp 80: $sock_want after the socket's changes, $ctl_want after apply -f's, $other after one more: as expected" \
    >> "$RESULTS_DIR/flows-$pods.txt"
  stop_switch
  read -r med p90 p99 max <<< "$(stats "$WORK/change.us")"
  read -r cmed cp90 cp99 cmax <<< "$(stats "$WORK/change-ctl.us")"
  read -r tmed tp90 tp99 tmax <<< "$(stats "$WORK/change-tier.us")"
  read -r smed _ sp99 _ <<< "$(stats "$WORK/start-create.us")"
  read -r amed _ ap99 _ <<< "$(stats "$WORK/start-address.us")"
  read -r dmed _ dp99 _ <<< "$(stats "$WORK/start-delete.us")"
  printf '| %s / %s | %.2f | %s / %s / %s | %s / %s | %.1f / %.1f | %s / %s / %s / %s | %s / %s / %s / %s | %s / %s / %s / %s | %s / %s · %s / %s · %s / %s |\n' \
    "$pods" "$pols" "$(awk -v u="$apply_us" 'BEGIN {print u / 1e6}')" \
    "$flows1" "$t6" "$t8" "$csum" "$cprod" \
    "$(awk -v k="$rss0" 'BEGIN {print k / 1024}')" "$(awk -v k="$rss1" 'BEGIN {print k / 1024}')" \
    "$med" "$p90" "$p99" "$max" "$cmed" "$cp90" "$cp99" "$cmax" "$tmed" "$tp90" "$tp99" "$tmax" \
    "$smed" "$sp99" "$amed" "$ap99" "$dmed" "$dp99" >> "$RESULTS_DIR/summary.md"
  cat "$RESULTS_DIR/flows-$pods.txt" >&2
  ip netns del "$NS"
done

cat "$RESULTS_DIR/summary.md"
echo "results: $RESULTS_DIR" >&2
