# A small fake Kubernetes API server for the watcher's tests and its benchmark: list
# (paged: limit, continue) and watch (chunked, one JSON event a line, bookmarks, 410 Gone
# for a version older than it keeps) of the kinds vswitchd watches, from a fixture file,
# plus control calls to change objects while the switch watches, drop every watch
# stream, and forget old versions.
#
#   python3 fakeapi.py PORT FIXTURES.json [FIRST_RV [CERT.pem KEY.pem]]
#
# With CERT and KEY it serves HTTPS (the tests' self-signed certificate), else HTTP.
#
# FIXTURES: a JSON list of objects (apiVersion, kind, metadata...). Control calls (POST):
#   /fake/put      body: an object      (created or changed: ADDED / MODIFIED)
#   /fake/delete   body: an object      (DELETED)
#   /fake/drop     every watch stream closed (the watcher watches again)
#   /fake/expire   versions so far forgotten: a watch from one gets 410 Gone
#   /fake/touch    body: {"kind": K, "n": N, "labels": bool}: the first N objects of kind
#                  K sent again as MODIFIED, with a new status heartbeat (labels: false,
#                  as a kubelet's status update) or a new label (labels: true)
import json, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse, parse_qs

PLURALS = {"Node": "nodes", "Namespace": "namespaces", "Service": "services",
           "EndpointSlice": "endpointslices", "Pod": "pods", "NetworkPolicy": "networkpolicies"}
NAMESPACED = {"services", "endpointslices", "pods", "networkpolicies"}

lock = threading.Condition()
objects = {p: {} for p in PLURALS.values()}   # plural -> key -> object
log = []                                      # (rv, plural, type, object)
rv = int(sys.argv[3]) if len(sys.argv) > 3 else 1
oldest = rv                                   # watches from before this get 410
generation = 0                                # bumped to drop every stream
requests = []

order = {}                                    # plural -> its keys sorted, until a change

def sorted_keys(plural):
    if plural not in order:
        order[plural] = sorted(objects[plural])
    return order[plural]

def key(o):
    m = o["metadata"]
    return (m.get("namespace", ""), m["name"])

def put(o, quiet=False):
    global rv
    p = PLURALS[o["kind"]]
    if p in NAMESPACED:
        o["metadata"].setdefault("namespace", "default")
    rv += 1
    o["metadata"]["resourceVersion"] = str(rv)
    t = "MODIFIED" if key(o) in objects[p] else "ADDED"
    if t == "ADDED":
        order.pop(p, None)
    objects[p][key(o)] = o
    if not quiet:
        log.append((rv, p, t, o))

def delete(o):
    global rv
    p = PLURALS[o["kind"]]
    old = objects[p].pop(key(o), None)
    order.pop(p, None)
    if old is not None:
        rv += 1
        old = dict(old, metadata=dict(old["metadata"], resourceVersion=str(rv)))
        log.append((rv, p, "DELETED", old))

beat = 0

def touch(kind, n, labels):
    global beat
    beat += 1
    p = PLURALS[kind]
    for k in sorted_keys(p)[:n]:
        o = json.loads(json.dumps(objects[p][k]))
        if labels:
            o["metadata"].setdefault("labels", {})["touched"] = str(beat)
        else:
            o.setdefault("status", {})["conditions"] = [{"type": "Ready", "status": "True",
                "lastProbeTime": "2026-12-07T00:00:%02dZ" % (beat % 60)}]
        put(o)

for o in json.load(open(sys.argv[2])):
    put(o, quiet=True)
oldest = rv

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def send_json(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def status(self, code, reason, message):
        self.send_json(code, {"apiVersion": "v1", "kind": "Status", "status": "Failure",
                              "reason": reason, "message": message, "code": code})

    def do_POST(self):
        global oldest, generation
        n = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(n) or b"null")
        path = urlparse(self.path).path
        with lock:
            if path == "/fake/put":
                put(body)
            elif path == "/fake/delete":
                delete(body)
            elif path == "/fake/drop":
                generation += 1
            elif path == "/fake/expire":
                oldest = rv
                generation += 1
            elif path == "/fake/touch":
                touch(body["kind"], int(body["n"]), bool(body.get("labels")))
            else:
                return self.status(404, "NotFound", path)
            lock.notify_all()
        self.send_json(200, {"rv": rv})

    def do_GET(self):
        u = urlparse(self.path)
        q = {k: v[0] for k, v in parse_qs(u.query).items()}
        parts = [p for p in u.path.split("/") if p]
        with lock:
            requests.append(self.path)
        if parts == ["fake", "requests"]:
            with lock:
                return self.send_json(200, requests)
        # /api/v1/PLURAL[/NAME], /apis/GROUP/VERSION/PLURAL[/NAME]
        rest = parts[2:] if parts[:1] == ["api"] else parts[3:]
        if not rest or rest[0] not in objects:
            return self.status(404, "NotFound", u.path)
        plural = rest[0]
        if len(rest) == 2:
            with lock:
                o = next((o for k, o in objects[plural].items() if k[1] == rest[1]), None)
            if o is None:
                return self.status(404, "NotFound", "%s %s not found" % (plural, rest[1]))
            return self.send_json(200, o)
        if q.get("watch") in ("true", "1"):
            return self.watch(plural, q)
        # Paged as the API server pages (limit, continue), in key order.
        limit = int(q.get("limit") or 0)
        start, v = 0, None
        if q.get("continue"):
            v, start = (int(x) for x in q["continue"].split(":"))
        with lock:
            keys = sorted_keys(plural)
            if v is None:
                v = rv
            end = len(keys) if limit <= 0 else min(len(keys), start + limit)
            items = [objects[plural][k] for k in keys[start:end]]
        meta = {"resourceVersion": str(v)}
        if end < len(keys):
            meta["continue"] = "%d:%d" % (v, end)
        kind = next(k for k, p in PLURALS.items() if p == plural)
        self.send_json(200, {"apiVersion": "v1", "kind": kind + "List",
                             "metadata": meta, "items": items})

    def chunk(self, ev):
        data = json.dumps(ev).encode() + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def watch(self, plural, q):
        since = int(q.get("resourceVersion") or 0)
        until = time.time() + min(int(q.get("timeoutSeconds") or 60), 60)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        with lock:
            gen = generation
            if since < oldest:
                self.chunk({"type": "ERROR", "object": {"apiVersion": "v1", "kind": "Status",
                    "status": "Failure", "reason": "Expired", "code": 410,
                    "message": "too old resource version: %d (%d)" % (since, oldest)}})
                self.wfile.write(b"0\r\n\r\n")
                return
        last_bookmark = 0
        try:
            while time.time() < until:
                with lock:
                    if generation != gen:
                        break
                    evs = [(r, t, o) for (r, p, t, o) in log if p == plural and r > since]
                    now = rv
                    if not evs:
                        lock.wait(0.2)
                for r, t, o in evs:
                    self.chunk({"type": t, "object": o})
                    since = r
                if q.get("allowWatchBookmarks") == "true" and time.time() - last_bookmark > 1:
                    kind = next(k for k, p in PLURALS.items() if p == plural)
                    self.chunk({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": "v1",
                        "metadata": {"resourceVersion": str(max(since, now))}}})
                    since = max(since, now)
                    last_bookmark = time.time()
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass

ThreadingHTTPServer.daemon_threads = True
server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
if len(sys.argv) > 5:
    import ssl
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(sys.argv[4], sys.argv[5])
    server.socket = tls.wrap_socket(server.socket, server_side=True)
server.serve_forever()
