//! The control-socket client: one JSON-RPC 2.0 request a line, one reply a line.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use vswitch_proto::rpc::{Id, Request, Response, RpcError, code};

use crate::error::Failure;

/// The longest reply read. Dumps of large flow tables are big, but a reply past this is
/// not one the daemon meant to send.
pub const MAX_REPLY_BYTES: usize = 256 << 20;

/// How much of an unreadable reply an error message quotes.
const QUOTE_CHARS: usize = 200;

/// Why a call failed: the switch's refusal (which callers may look into, e.g. for the
/// index of a bad flow line), or anything else.
#[derive(Debug)]
pub enum CallError {
    Rpc(RpcError),
    Failed(Failure),
}

impl From<Failure> for CallError {
    fn from(f: Failure) -> CallError {
        CallError::Failed(f)
    }
}

/// A connection to vswitchd.
#[derive(Debug)]
pub struct Client {
    path: PathBuf,
    timeout: Option<Duration>,
    io: BufReader<Deadlined>,
    next_id: i64,
}

impl Client {
    /// Connects to the socket at `path`; `timeout` bounds the connect and, separately,
    /// each call (sending the request and reading the whole reply).
    pub fn connect(path: &Path, timeout: Option<Duration>) -> Result<Client, Failure> {
        let stream = connect(path, timeout).map_err(|e| connect_failure(path, timeout, &e))?;
        Ok(Client {
            path: path.to_path_buf(),
            timeout,
            io: BufReader::new(Deadlined {
                stream,
                deadline: None,
            }),
            next_id: 1,
        })
    }

    /// Sends one request and returns its result.
    pub fn call(&mut self, method: &str, params: impl Serialize) -> Result<Value, CallError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut line = serde_json::to_vec(&Request::new(id, method, params))
            .map_err(|e| Failure::Usage(format!("cannot encode the request: {e}")))?;
        line.push(b'\n');
        self.io.get_mut().deadline = self.timeout.map(|t| Instant::now() + t);
        if let Err(e) = self.io.get_mut().write_all(&line) {
            // A daemon with no room for us answers at once and closes, maybe before our
            // request is in: what it said explains the failed write better than the write.
            if !matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ) {
                return Err(self.io_failure(&e).into());
            }
            return match self.read_reply() {
                Ok(reply) => parse_reply(&reply, id),
                Err(_) => Err(self.io_failure(&e).into()),
            };
        }
        let reply = self.read_reply()?;
        parse_reply(&reply, id)
    }

    fn read_reply(&mut self) -> Result<Vec<u8>, Failure> {
        let mut buf = Vec::new();
        (&mut self.io)
            .take(MAX_REPLY_BYTES as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|e| self.io_failure(&e))?;
        if buf.last() == Some(&b'\n') {
            buf.pop();
            return Ok(buf);
        }
        if buf.len() > MAX_REPLY_BYTES {
            return Err(Failure::Unreadable(format!(
                "a reply longer than {} MiB",
                MAX_REPLY_BYTES >> 20
            )));
        }
        // End of stream. A whole object without its newline is still a reply; anything
        // else was cut off.
        if !buf.is_empty() && serde_json::from_slice::<Value>(&buf).is_ok() {
            return Ok(buf);
        }
        Err(Failure::Unreachable(format!(
            "vswitchd at {} closed the connection before {}. It may have crashed or \
             restarted: check that it is running (and its logs), then try again.",
            self.path.display(),
            if buf.is_empty() {
                "answering"
            } else {
                "finishing its reply"
            }
        )))
    }

    fn io_failure(&self, e: &io::Error) -> Failure {
        let path = self.path.display();
        match e.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Failure::Unreachable(format!(
                "vswitchd at {path} did not answer within {}. It may be busy or stuck: check \
                 its logs, or allow it longer with --timeout.",
                fmt_duration(self.timeout)
            )),
            _ => Failure::Unreachable(format!(
                "lost the connection to vswitchd at {path}: {e}. It may have crashed or \
                 restarted: check that it is running (and its logs), then try again."
            )),
        }
    }
}

/// The stream, with reads and writes bounded by one deadline for the whole call.
#[derive(Debug)]
struct Deadlined {
    stream: UnixStream,
    deadline: Option<Instant>,
}

impl Deadlined {
    /// The time left, or `TimedOut` when there is none; `None` is no limit.
    fn remaining(&self) -> io::Result<Option<Duration>> {
        let Some(deadline) = self.deadline else {
            return Ok(None);
        };
        match deadline.checked_duration_since(Instant::now()) {
            Some(left) if !left.is_zero() => Ok(Some(left)),
            _ => Err(io::ErrorKind::TimedOut.into()),
        }
    }
}

impl Read for Deadlined {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.remaining()?;
        self.stream.set_read_timeout(left)?;
        self.stream.read(buf)
    }
}

impl Write for Deadlined {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let left = self.remaining()?;
        self.stream.set_write_timeout(left)?;
        self.stream.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

/// `UnixStream::connect` has no timeout, and a daemon that stopped accepting leaves a
/// connect blocked once its backlog is full: wait for it on a thread.
fn connect(path: &Path, timeout: Option<Duration>) -> io::Result<UnixStream> {
    let Some(timeout) = timeout else {
        return UnixStream::connect(path);
    };
    let (tx, rx) = mpsc::channel();
    let target = path.to_path_buf();
    let spawned = thread::Builder::new()
        .name("connect".into())
        .spawn(move || {
            let _ = tx.send(UnixStream::connect(target));
        });
    if spawned.is_err() {
        return UnixStream::connect(path);
    }
    match rx.recv_timeout(timeout) {
        Ok(result) => result,
        Err(mpsc::RecvTimeoutError::Timeout) => Err(io::ErrorKind::TimedOut.into()),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            Err(io::Error::other("the connecting thread died"))
        }
    }
}

/// The message for a socket that could not be connected to: what happened, and what to do.
pub fn connect_failure(path: &Path, timeout: Option<Duration>, e: &io::Error) -> Failure {
    let path = path.display();
    Failure::Unreachable(match e.kind() {
        io::ErrorKind::PermissionDenied => format!(
            "cannot reach vswitchd at {path}: {e}. The socket is mode 0600 and owned by \
             root: run vswitchctl as root (e.g. with sudo)."
        ),
        io::ErrorKind::TimedOut => format!(
            "cannot reach vswitchd at {path}: no connection within {}. vswitchd may be \
             stuck: check its logs, or allow it longer with --timeout.",
            fmt_duration(timeout)
        ),
        _ => format!(
            "cannot reach vswitchd at {path}: {e}. Is vswitchd running? Start it, or point \
             --socket (or VSWITCH_SOCKET) at its socket."
        ),
    })
}

/// Checks that `line` is a JSON-RPC 2.0 reply to request `id`, and opens it.
fn parse_reply(line: &[u8], id: i64) -> Result<Value, CallError> {
    let unreadable = |why: String| {
        CallError::Failed(Failure::Unreadable(format!(
            "{why}; it sent: {}",
            quote(line)
        )))
    };
    let value: Value =
        serde_json::from_slice(line).map_err(|e| unreadable(format!("not JSON ({e})")))?;
    if !value.is_object() {
        return Err(unreadable("not a JSON object".into()));
    }
    // `"result": null` is a result; `Response` reads it as absent, so look at the keys.
    let has_result = value.get("result").is_some();
    let response: Response = serde_json::from_value(value)
        .map_err(|e| unreadable(format!("not a JSON-RPC response ({e})")))?;
    if response.jsonrpc != "2.0" {
        return Err(unreadable(format!(
            "not JSON-RPC 2.0 (jsonrpc is {:?})",
            response.jsonrpc
        )));
    }
    match (&response.id, &response.error) {
        (Some(Id::Num(n)), _) if *n == id => {}
        // The daemon could not read our request, so it could not echo its id.
        (None, Some(_)) => {}
        (other, _) => {
            let other = serde_json::to_string(other).unwrap_or_default();
            return Err(unreadable(format!(
                "a reply to request {other}, not to request {id}"
            )));
        }
    }
    match (has_result, response.error) {
        (false, Some(e)) => Err(map_rpc_error(e)),
        (true, None) => Ok(response.result.unwrap_or(Value::Null)),
        _ => Err(unreadable(
            "a response must hold exactly one of `result` and `error`".into(),
        )),
    }
}

/// The daemon's refusals pass through; refusing this user, or having no room for this
/// connection, are refusals too (exit status 1), each said with its remedy.
fn map_rpc_error(e: RpcError) -> CallError {
    match e.code {
        code::PERMISSION_DENIED => CallError::Failed(Failure::Refused(format!(
            "vswitchd refused this user: {}. Its socket is for root: run vswitchctl as root \
             (e.g. with sudo).",
            e.message
        ))),
        code::BUSY => CallError::Failed(Failure::Refused(e.message)),
        _ => CallError::Rpc(e),
    }
}

fn quote(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    let mut quoted: String = text.chars().take(QUOTE_CHARS).collect();
    if text.chars().count() > QUOTE_CHARS {
        quoted.push_str("...");
    }
    format!("`{}`", quoted.escape_debug())
}

fn fmt_duration(d: Option<Duration>) -> String {
    match d {
        Some(d) => format!("{}s", d.as_secs_f64()),
        None => "forever".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Value, CallError> {
        parse_reply(s.as_bytes(), 7)
    }

    #[test]
    fn result_and_null_result() {
        assert_eq!(
            parse(r#"{"jsonrpc":"2.0","id":7,"result":{"count":2}}"#).unwrap(),
            serde_json::json!({"count": 2})
        );
        assert_eq!(
            parse(r#"{"jsonrpc":"2.0","id":7,"result":null}"#).unwrap(),
            Value::Null
        );
    }

    #[test]
    fn errors_with_and_without_id() {
        for s in [
            r#"{"jsonrpc":"2.0","id":7,"error":{"code":-32000,"message":"no"}}"#,
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"no"}}"#,
        ] {
            match parse(s) {
                Err(CallError::Rpc(e)) => assert_eq!(e.message, "no"),
                other => panic!("{s}: {other:?}"),
            }
        }
    }

    #[test]
    fn unreadable_replies() {
        for s in [
            "hello",
            "[1,2]",
            r#"{"jsonrpc":"1.0","id":7,"result":1}"#,
            r#"{"jsonrpc":"2.0","id":8,"result":1}"#,
            r#"{"jsonrpc":"2.0","id":null,"result":1}"#,
            r#"{"jsonrpc":"2.0","id":7}"#,
            r#"{"jsonrpc":"2.0","id":7,"result":1,"error":{"code":1,"message":"x"}}"#,
            r#"{"jsonrpc":"2.0","id":7,"error":"bad"}"#,
        ] {
            match parse(s) {
                Err(CallError::Failed(f @ Failure::Unreadable(_))) => {
                    assert_eq!(f.exit_code(), 1);
                    assert!(f.to_string().contains("unreadable"), "{f}");
                }
                other => panic!("{s}: {other:?}"),
            }
        }
    }

    #[test]
    fn peer_not_allowed_is_a_refusal() {
        let s = r#"{"jsonrpc":"2.0","id":7,"error":{"code":-32003,"message":"uid 1000 is not allowed"}}"#;
        match parse(s) {
            Err(CallError::Failed(f)) => {
                assert_eq!(f.exit_code(), 1);
                assert!(f.to_string().contains("as root"), "{f}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn busy_is_a_refusal_with_the_daemons_words() {
        let s =
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32004,"message":"vswitchd is busy"}}"#;
        match parse(s) {
            Err(CallError::Failed(f)) => {
                assert_eq!(f.exit_code(), 1);
                assert_eq!(f.to_string(), "vswitchd is busy");
            }
            other => panic!("{other:?}"),
        }
    }

    /// A daemon with no room answers at once and closes, before the request is written:
    /// the write fails, and what it said is the answer.
    #[test]
    fn a_refusal_sent_before_the_request_is_read_is_the_answer() {
        let dir = std::env::temp_dir().join(format!("vswitchctl-busy-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let listener = std::os::unix::net::UnixListener::bind(&dir).unwrap();
        let server = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(
                b"{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32004,\"message\":\"vswitchd is busy\"}}\n",
            )
            .unwrap();
        });
        let mut c = Client::connect(&dir, Some(Duration::from_secs(5))).unwrap();
        server.join().unwrap();
        // The server's end is closed now: the request's write fails (or lands unread).
        let got = c.call("show", serde_json::json!({}));
        let _ = std::fs::remove_file(&dir);
        match got {
            Err(CallError::Failed(f)) => {
                assert_eq!(f.exit_code(), 1, "{f}");
                assert_eq!(f.to_string(), "vswitchd is busy");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn permission_denied_says_run_as_root() {
        let e = io::Error::from_raw_os_error(13);
        let f = connect_failure(Path::new("/run/vswitch/vswitchd.sock"), None, &e);
        let msg = f.to_string();
        assert_eq!(f.exit_code(), 3);
        assert!(msg.contains("/run/vswitch/vswitchd.sock"), "{msg}");
        assert!(msg.contains("0600") && msg.contains("root"), "{msg}");
    }
}
