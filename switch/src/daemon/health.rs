//! Health-check node ports, as kube-proxy serves them (`pkg/proxy/healthcheck`): for a
//! Service with externalTrafficPolicy Local, HTTP on every address of the node at the
//! Service's `spec.healthCheckNodePort`, so that a cloud load balancer sends traffic only
//! to nodes that have a local endpoint.
//!
//! Any request gets the same answer: 200 when the Service has a local endpoint, 503 when
//! it has none, with `X-Load-Balancing-Endpoint-Weight` set to the count and a JSON body
//! naming the Service. One thread per port accepts and answers one connection at a time;
//! a connection costs it at most [`IO_TIMEOUT`] of reading and [`IO_TIMEOUT`] of writing,
//! so a slow or silent client delays the others by no more than that.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long one connection may take to send its request, and (separately) to take the
/// answer: a load balancer's probe needs far less, and the thread serves nobody else
/// meanwhile.
const IO_TIMEOUT: Duration = Duration::from_secs(1);

/// The most of a request that is read (the rest is ignored): enough for any probe's
/// request line and headers.
const MAX_REQUEST: usize = 8 * 1024;

/// How long the wake-up connection that stops a listener may take: loopback answers at
/// once unless something is badly wrong.
const WAKE_TIMEOUT: Duration = Duration::from_secs(1);

/// The pause after a failed `accept` (say, out of file descriptors), so that a lasting
/// error does not spin the thread.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What a port answers: the Service it checks and its local endpoint count.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answer {
    namespace: String,
    name: String,
    local_endpoints: usize,
}

/// One served port: the answer its thread reads for every request, the flag that tells
/// the thread to stop, and the thread (which owns the listener).
struct Server {
    answer: Arc<Mutex<Answer>>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

/// The health-check servers, by port.
#[derive(Default)]
pub struct HealthChecks {
    servers: BTreeMap<u16, Server>,
}

impl HealthChecks {
    /// Serve `port` for Service `namespace/name` with `local_endpoints` local endpoints: starts a
    /// listener if the port has none, else only updates what it answers (no rebind).
    /// Err: the port cannot be bound (message names the port and the reason).
    pub fn set(
        &mut self,
        port: u16,
        namespace: &str,
        name: &str,
        local_endpoints: usize,
    ) -> Result<(), String> {
        let answer = Answer {
            namespace: namespace.to_string(),
            name: name.to_string(),
            local_endpoints,
        };
        if let Some(server) = self.servers.get(&port) {
            *lock(&server.answer) = answer;
            return Ok(());
        }
        let server = Server::start(port, answer)?;
        self.servers.insert(port, server);
        Ok(())
    }

    /// Stop serving `port` (closes the listener: connections are refused afterwards). No-op if not served.
    pub fn remove(&mut self, port: u16) {
        if let Some(server) = self.servers.remove(&port) {
            let woken = server.signal(port);
            server.join(port, woken);
        }
    }

    /// The ports served, ascending.
    pub fn ports(&self) -> Vec<u16> {
        self.servers.keys().copied().collect()
    }
}

impl Drop for HealthChecks {
    /// Stops every listener and joins its thread: all are told to stop first, so that
    /// they wind down together rather than one after another.
    fn drop(&mut self) {
        let servers = std::mem::take(&mut self.servers);
        let woken: Vec<(u16, Server, bool)> = servers
            .into_iter()
            .map(|(port, server)| {
                let woken = server.signal(port);
                (port, server, woken)
            })
            .collect();
        for (port, server, woken) in woken {
            server.join(port, woken);
        }
    }
}

impl fmt::Debug for HealthChecks {
    /// The ports served (the answers live behind locks the threads take).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthChecks")
            .field("ports", &self.ports())
            .finish()
    }
}

impl Server {
    /// Bind `0.0.0.0:port` (std sets SO_REUSEADDR, so a port left in TIME_WAIT by a
    /// previous listener binds again) and start its thread, named `health-<port>`.
    fn start(port: u16, answer: Answer) -> Result<Server, String> {
        if port == 0 {
            return Err("health-check port 0: not a port a load balancer can probe".into());
        }
        let listener = TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], port)))
            .map_err(|e| format!("health-check port {port}: cannot bind 0.0.0.0:{port}: {e}"))?;
        let answer = Arc::new(Mutex::new(answer));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (answer, stop) = (Arc::clone(&answer), Arc::clone(&stop));
            thread::Builder::new()
                .name(format!("health-{port}"))
                .spawn(move || serve(&listener, port, &answer, &stop))
                .map_err(|e| format!("health-check port {port}: cannot start its thread: {e}"))?
        };
        Ok(Server {
            answer,
            stop,
            thread,
        })
    }

    /// Tell the thread to stop, and wake its blocking `accept` with a connection of our
    /// own. Returns whether the thread will see the flag: it was woken, or its listener
    /// is already gone (the connection was refused).
    fn signal(&self, port: u16) -> bool {
        self.stop.store(true, Ordering::SeqCst);
        let loopback = SocketAddr::from(([127, 0, 0, 1], port));
        match TcpStream::connect_timeout(&loopback, WAKE_TIMEOUT) {
            Ok(_) => true,
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => true,
            Err(e) => {
                tracing::warn!(port, error = %e, "cannot wake the health-check listener to stop it; it is left running");
                false
            }
        }
    }

    /// Wait for the thread to end, if it was told to (`woken`); otherwise leave it, since
    /// joining a thread still blocked in `accept` would hang the caller.
    fn join(self, port: u16, woken: bool) {
        if !woken {
            return;
        }
        if self.thread.join().is_err() {
            tracing::warn!(port, "health-check thread panicked");
        }
    }
}

/// The thread of one port: accept and answer connections, one at a time, until told to
/// stop. Returning drops the listener, which closes the port.
fn serve(listener: &TcpListener, port: u16, answer: &Mutex<Answer>, stop: &AtomicBool) {
    loop {
        let accepted = listener.accept();
        if stop.load(Ordering::SeqCst) {
            return;
        }
        match accepted {
            Ok((stream, peer)) => {
                if let Err(e) = answer_connection(stream, answer) {
                    tracing::debug!(port, %peer, error = %e, "health-check connection");
                }
            }
            Err(e) => {
                tracing::debug!(port, error = %e, "health-check accept");
                thread::sleep(ACCEPT_BACKOFF);
            }
        }
    }
}

/// Read what the client sends (its content does not change the answer, but a `HEAD`
/// gets no body), write the answer, and close.
fn answer_connection(mut stream: TcpStream, answer: &Mutex<Answer>) -> io::Result<()> {
    let request = read_request(&mut stream, Instant::now() + IO_TIMEOUT);
    let response = {
        let answer = lock(answer);
        render(&answer, is_head(&request))
    };
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.write_all(&response)?;
    stream.flush()?;
    // Our FIN goes out with the answer; the client may already have closed its side.
    let _ = stream.shutdown(Shutdown::Write);
    Ok(())
}

/// The request, read until its blank line, [`MAX_REQUEST`] bytes, end of stream, an
/// error or `deadline`, whichever comes first: a client that trickles bytes cannot hold
/// the thread past the deadline.
fn read_request(stream: &mut TcpStream, deadline: Instant) -> Vec<u8> {
    let mut request = Vec::new();
    let mut chunk = [0u8; 1024];
    while request.len() < MAX_REQUEST && !has_blank_line(&request) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            break;
        }
        let room = (MAX_REQUEST - request.len()).min(chunk.len());
        match stream.read(&mut chunk[..room]) {
            Ok(0) => break,
            Ok(n) => request.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    request
}

/// Whether the request's headers are complete (HTTP ends them with an empty line).
fn has_blank_line(request: &[u8]) -> bool {
    request.windows(4).any(|w| w == b"\r\n\r\n")
}

/// Whether the request asks for the headers only.
fn is_head(request: &[u8]) -> bool {
    request.starts_with(b"HEAD ")
}

/// The HTTP response for `answer`, as kube-proxy gives it (its body compact); without the
/// body (but with its length) when `head_only`.
fn render(answer: &Answer, head_only: bool) -> Vec<u8> {
    let healthy = answer.local_endpoints > 0;
    let status = if healthy {
        "200 OK"
    } else {
        "503 Service Unavailable"
    };
    let body = format!(
        "{{\"service\":{{\"namespace\":{},\"name\":{}}},\"localEndpoints\":{},\"serviceProxyHealthy\":true}}",
        json_string(&answer.namespace),
        json_string(&answer.name),
        answer.local_endpoints,
    );
    let mut response = format!(
        "HTTP/1.1 {status}\r\n\
         Content-Type: application/json\r\n\
         X-Content-Type-Options: nosniff\r\n\
         X-Load-Balancing-Endpoint-Weight: {}\r\n\
         Content-Length: {}\r\n\
         Connection: close\r\n\
         \r\n",
        answer.local_endpoints,
        body.len(),
    );
    if !head_only {
        response.push_str(&body);
    }
    response.into_bytes()
}

/// `s` as a JSON string literal: Kubernetes names need no escaping, but the body stays
/// valid JSON whatever it is given.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The answer, even if a thread panicked while holding the lock: it is plain data, whole
/// after every assignment.
fn lock(answer: &Mutex<Answer>) -> MutexGuard<'_, Answer> {
    answer.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::thread::ThreadId;

    /// The longest any single client operation in these tests may take.
    const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

    /// A port free on every address right now (bound to `0.0.0.0:0`, then released).
    fn free_port() -> u16 {
        let l = TcpListener::bind("0.0.0.0:0").expect("bind an ephemeral port");
        l.local_addr().expect("its address").port()
    }

    /// A connection to `port` on loopback, with timeouts so that no test hangs.
    fn connect(port: u16) -> io::Result<TcpStream> {
        let s =
            TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), CLIENT_TIMEOUT)?;
        s.set_read_timeout(Some(CLIENT_TIMEOUT))?;
        s.set_write_timeout(Some(CLIENT_TIMEOUT))?;
        Ok(s)
    }

    /// Send `request` to `port` and read the whole response (the server closes).
    fn exchange(port: u16, request: &[u8]) -> String {
        let mut s = connect(port).expect("connect to the health-check port");
        s.write_all(request).expect("send the request");
        let mut response = String::new();
        s.read_to_string(&mut response).expect("read the response");
        response
    }

    /// A plain probe, as a load balancer sends it.
    fn get(port: u16) -> String {
        exchange(port, b"GET /healthz HTTP/1.1\r\nHost: node\r\n\r\n")
    }

    /// The status line of `response`.
    fn status(response: &str) -> &str {
        response.lines().next().unwrap_or("")
    }

    /// The body of `response` (after the blank line).
    fn body(response: &str) -> &str {
        response.split_once("\r\n\r\n").map_or("", |(_, b)| b)
    }

    /// Whether a connection to `port` is refused (nothing listens).
    fn refused(port: u16) -> bool {
        matches!(connect(port), Err(e) if e.kind() == io::ErrorKind::ConnectionRefused)
    }

    /// The id of the thread serving `port`.
    fn thread_of(hc: &HealthChecks, port: u16) -> ThreadId {
        hc.servers[&port].thread.thread().id()
    }

    /// Run `f` on another thread and fail if it takes longer than `limit` (a stop that
    /// hangs would otherwise hang the test run).
    fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(limit).expect("finished in time")
    }

    #[test]
    fn local_endpoints_answer_200_with_weight_and_body() {
        let port = free_port();
        let mut hc = HealthChecks::default();
        hc.set(port, "default", "web", 2).expect("serve");
        let r = get(port);
        assert_eq!(status(&r), "HTTP/1.1 200 OK");
        assert!(r.contains("\r\nContent-Type: application/json\r\n"), "{r}");
        assert!(r.contains("\r\nX-Content-Type-Options: nosniff\r\n"), "{r}");
        assert!(
            r.contains("\r\nX-Load-Balancing-Endpoint-Weight: 2\r\n"),
            "{r}"
        );
        assert!(r.contains("\r\nConnection: close\r\n"), "{r}");
        let b = body(&r);
        assert_eq!(
            b,
            r#"{"service":{"namespace":"default","name":"web"},"localEndpoints":2,"serviceProxyHealthy":true}"#
        );
        assert!(
            r.contains(&format!("\r\nContent-Length: {}\r\n", b.len())),
            "{r}"
        );
    }

    #[test]
    fn no_local_endpoint_answers_503_from_the_same_listener() {
        let port = free_port();
        let mut hc = HealthChecks::default();
        hc.set(port, "default", "web", 1).expect("serve");
        assert_eq!(status(&get(port)), "HTTP/1.1 200 OK");
        let before = thread_of(&hc, port);
        hc.set(port, "default", "web", 0).expect("update");
        assert_eq!(
            thread_of(&hc, port),
            before,
            "the listener was not restarted"
        );
        let r = get(port);
        assert_eq!(status(&r), "HTTP/1.1 503 Service Unavailable");
        assert!(
            r.contains("\r\nX-Load-Balancing-Endpoint-Weight: 0\r\n"),
            "{r}"
        );
        assert!(body(&r).contains(r#""localEndpoints":0"#), "{r}");
        assert_eq!(hc.ports(), vec![port]);
    }

    #[test]
    fn removed_port_refuses_connections() {
        let port = free_port();
        let mut hc = HealthChecks::default();
        hc.set(port, "default", "web", 1).expect("serve");
        assert_eq!(status(&get(port)), "HTTP/1.1 200 OK");
        let hc = within(Duration::from_secs(5), move || {
            hc.remove(port);
            hc.remove(port); // not served any more: no-op
            hc
        });
        assert!(refused(port), "port {port} still accepts");
        assert!(hc.ports().is_empty());
    }

    #[test]
    fn two_ports_answer_for_their_own_service() {
        let (a, b) = (free_port(), free_port());
        let mut hc = HealthChecks::default();
        hc.set(b, "shop", "cart", 0).expect("serve b");
        hc.set(a, "default", "web", 3).expect("serve a");
        let (ra, rb) = (get(a), get(b));
        assert_eq!(status(&ra), "HTTP/1.1 200 OK");
        assert!(
            body(&ra).contains(r#""name":"web"},"localEndpoints":3"#),
            "{ra}"
        );
        assert_eq!(status(&rb), "HTTP/1.1 503 Service Unavailable");
        assert!(
            body(&rb).contains(r#"{"namespace":"shop","name":"cart"}"#),
            "{rb}"
        );
        let mut want = vec![a, b];
        want.sort_unstable();
        assert_eq!(hc.ports(), want);
    }

    #[test]
    fn garbage_still_gets_the_answer() {
        let port = free_port();
        let mut hc = HealthChecks::default();
        hc.set(port, "default", "web", 1).expect("serve");
        // Ended by a blank line: answered at once.
        let r = exchange(port, b"\x00\xff\xfe not http \r\n\r\n");
        assert_eq!(status(&r), "HTTP/1.1 200 OK");
        // Never ended: answered when the read times out.
        let start = Instant::now();
        let r = exchange(port, b"\x16\x03\x01\x02\x00 no blank line");
        assert_eq!(status(&r), "HTTP/1.1 200 OK");
        assert!(
            start.elapsed() < IO_TIMEOUT * 4,
            "took {:?}",
            start.elapsed()
        );
        // Nothing at all, then the client's end of stream.
        let mut s = connect(port).expect("connect");
        s.shutdown(Shutdown::Write).expect("half-close");
        let mut r = String::new();
        s.read_to_string(&mut r).expect("read");
        assert_eq!(status(&r), "HTTP/1.1 200 OK");
    }

    #[test]
    fn silent_client_delays_others_by_the_timeout_at_most() {
        let port = free_port();
        let mut hc = HealthChecks::default();
        hc.set(port, "default", "web", 1).expect("serve");
        let _silent = connect(port).expect("connect");
        let start = Instant::now();
        assert_eq!(status(&get(port)), "HTTP/1.1 200 OK");
        assert!(
            start.elapsed() < IO_TIMEOUT * 4,
            "took {:?}",
            start.elapsed()
        );
    }

    #[test]
    fn head_gets_headers_only() {
        let port = free_port();
        let mut hc = HealthChecks::default();
        hc.set(port, "default", "web", 1).expect("serve");
        let r = exchange(port, b"HEAD / HTTP/1.1\r\n\r\n");
        assert_eq!(status(&r), "HTTP/1.1 200 OK");
        assert!(r.ends_with("\r\n\r\n"), "{r}");
        assert!(r.contains("\r\nContent-Length: "), "{r}");
    }

    #[test]
    fn drop_stops_every_listener() {
        let (a, b) = (free_port(), free_port());
        let mut hc = HealthChecks::default();
        hc.set(a, "default", "web", 1).expect("serve a");
        hc.set(b, "default", "api", 0).expect("serve b");
        assert_eq!(status(&get(a)), "HTTP/1.1 200 OK");
        assert_eq!(status(&get(b)), "HTTP/1.1 503 Service Unavailable");
        within(Duration::from_secs(5), move || drop(hc));
        assert!(refused(a), "port {a} still accepts");
        assert!(refused(b), "port {b} still accepts");
    }

    #[test]
    fn busy_port_is_an_error_naming_it() {
        let taken = TcpListener::bind("0.0.0.0:0").expect("bind");
        let port = taken.local_addr().expect("address").port();
        let mut hc = HealthChecks::default();
        let e = hc.set(port, "default", "web", 1).expect_err("port in use");
        assert!(e.contains(&port.to_string()), "{e}");
        assert!(hc.set(0, "default", "web", 1).is_err());
        assert!(hc.ports().is_empty());
    }

    #[test]
    fn served_again_after_remove() {
        let port = free_port();
        let mut hc = HealthChecks::default();
        hc.set(port, "default", "web", 1).expect("serve");
        assert_eq!(status(&get(port)), "HTTP/1.1 200 OK");
        hc.remove(port);
        hc.set(port, "default", "web", 0)
            .expect("serve again on the same port");
        assert_eq!(status(&get(port)), "HTTP/1.1 503 Service Unavailable");
    }

    #[test]
    fn names_are_escaped_as_json() {
        assert_eq!(json_string("web"), r#""web""#);
        assert_eq!(json_string("a\"b\\c\n"), r#""a\"b\\c\u000a""#);
    }
}
