//! The control server: JSON-RPC 2.0 over a Unix socket, one JSON object per line.
//!
//! The socket is mode 0600 and every connection's peer credentials are checked (root, or
//! the user the daemon runs as). A malformed message gets a JSON-RPC error and the
//! connection stays usable; a message over [`MAX_MESSAGE_BYTES`] is refused and skipped
//! up to its newline.

use crate::daemon::{Refusal, Switch};
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use vswitch_proto::rpc::{self, Id, MAX_MESSAGE_BYTES, Response, RpcError, code, method};

/// What the server can ask of the process around it.
pub struct Hooks {
    /// Stop the daemon (the `shutdown` call).
    pub shutdown: Box<dyn Fn() + Send + Sync>,
    /// Reopen log files (the `reopen-logs` call).
    pub reopen_logs: Box<dyn Fn() -> io::Result<()> + Send + Sync>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hooks")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("cannot create the socket directory {path}")]
    Dir {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("another vswitchd is already listening on {0}")]
    InUse(String),
    #[error("cannot listen on {path}")]
    Bind {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// Create the listening socket at `path`, mode 0600 (its directory is created if needed).
/// A stale socket file left by a daemon that died is replaced; a live one is an error.
pub fn bind(path: &Path) -> Result<UnixListener, BindError> {
    let show = path.display().to_string();
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|source| BindError::Dir {
            path: dir.display().to_string(),
            source,
        })?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(BindError::InUse(show));
        }
        let _ = std::fs::remove_file(path);
    }
    let l = UnixListener::bind(path).map_err(|source| BindError::Bind {
        path: show.clone(),
        source,
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|source| BindError::Bind { path: show, source })?;
    Ok(l)
}

/// Accept connections until `stop` is set (the caller wakes the accept by connecting).
pub fn serve(
    listener: UnixListener,
    switch: Arc<Mutex<Switch>>,
    hooks: Arc<Hooks>,
    stop: Arc<AtomicBool>,
) {
    for conn in listener.incoming() {
        if stop.load(Ordering::Acquire) {
            return;
        }
        let stream = match conn {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        let (sw, hooks) = (switch.clone(), hooks.clone());
        let spawned = std::thread::Builder::new()
            .name("vswitch-ctl".into())
            .spawn(move || {
                if let Err(e) = connection(stream, &sw, &hooks) {
                    tracing::debug!(error = %e, "control connection ended");
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start a control connection thread");
        }
    }
}

/// Whether the peer may use the socket: root, or the user the daemon runs as.
fn peer_allowed(stream: &UnixStream) -> Result<bool, io::Error> {
    let cred = nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerCredentials)
        .map_err(io::Error::from)?;
    let me = nix::unistd::geteuid().as_raw();
    Ok(cred.uid() == 0 || cred.uid() == me)
}

enum Line {
    Complete,
    TooLong,
    Eof,
}

/// Read one line into `buf` (without the newline), at most `cap` bytes; a longer line is
/// consumed up to its newline and reported as too long.
fn read_line(r: &mut impl BufRead, buf: &mut Vec<u8>, cap: usize) -> io::Result<Line> {
    buf.clear();
    let mut too_long = false;
    loop {
        let avail = r.fill_buf()?;
        if avail.is_empty() {
            return Ok(if buf.is_empty() && !too_long {
                Line::Eof
            } else if too_long {
                Line::TooLong
            } else {
                Line::Complete
            });
        }
        let (chunk, done) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (&avail[..i], Some(i + 1)),
            None => (avail, None),
        };
        if !too_long {
            if buf.len() + chunk.len() > cap {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(chunk);
            }
        }
        let used = done.unwrap_or(avail.len());
        r.consume(used);
        if done.is_some() {
            return Ok(if too_long {
                Line::TooLong
            } else {
                Line::Complete
            });
        }
    }
}

fn send(w: &mut impl Write, resp: &Response) -> io::Result<()> {
    let mut out = serde_json::to_vec(resp).map_err(io::Error::other)?;
    out.push(b'\n');
    w.write_all(&out)?;
    w.flush()
}

/// A request this long (a large manifest) is followed by returning freed memory.
const LARGE_REQUEST: usize = 1 << 20;

fn connection(stream: UnixStream, sw: &Mutex<Switch>, hooks: &Hooks) -> io::Result<()> {
    let mut writer = stream.try_clone()?;
    let allowed = peer_allowed(&stream)?;
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    if !allowed {
        // Read the request first, so the client is not cut off while still writing it,
        // then answer it with the refusal and close.
        let _ = read_line(&mut reader, &mut line, MAX_MESSAGE_BYTES);
        let id = serde_json::from_slice::<Value>(&line)
            .ok()
            .and_then(|v| v.get("id").cloned())
            .and_then(|i| serde_json::from_value::<Id>(i).ok());
        send(
            &mut writer,
            &Response::err(
                id,
                RpcError::new(
                    code::PERMISSION_DENIED,
                    "permission denied: only root (or the user vswitchd runs as) may use this socket",
                ),
            ),
        )?;
        return Ok(());
    }
    loop {
        match read_line(&mut reader, &mut line, MAX_MESSAGE_BYTES)? {
            Line::Eof => return Ok(()),
            Line::TooLong => send(
                &mut writer,
                &Response::err(
                    None,
                    RpcError::new(
                        code::INVALID_REQUEST,
                        format!("request larger than {MAX_MESSAGE_BYTES} bytes; it was skipped"),
                    ),
                ),
            )?,
            Line::Complete => {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                if let Some(resp) = handle(sw, hooks, &line) {
                    send(&mut writer, &resp)?;
                }
                if line.len() > LARGE_REQUEST {
                    // A cluster's manifest: its buffers and what it parsed into are free
                    // now; give them back rather than keep the peak for good.
                    line = Vec::new();
                    crate::sys::trim_heap();
                }
            }
        }
    }
}

fn params<T: DeserializeOwned>(m: &str, p: &Value) -> Result<T, RpcError> {
    let p = if p.is_null() {
        Value::Object(Default::default())
    } else {
        p.clone()
    };
    serde_json::from_value(p)
        .map_err(|e| RpcError::new(code::INVALID_PARAMS, format!("bad params for {m}: {e}")))
}

fn refusal(r: Refusal) -> RpcError {
    RpcError {
        code: r.code,
        message: r.message,
        data: r.data,
    }
}

fn ok<T: Serialize>(v: Result<T, Refusal>) -> Result<Value, RpcError> {
    v.map_err(refusal).and_then(|v| {
        serde_json::to_value(v).map_err(|e| RpcError::new(code::INTERNAL_ERROR, e.to_string()))
    })
}

/// Answer one request line; `None` for a notification (a request without an id).
pub fn handle(sw: &Mutex<Switch>, hooks: &Hooks, line: &[u8]) -> Option<Response> {
    let v: Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(e) => {
            return Some(Response::err(
                None,
                RpcError::new(code::PARSE_ERROR, format!("not valid JSON: {e}")),
            ));
        }
    };
    let Some(obj) = v.as_object() else {
        return Some(Response::err(
            None,
            RpcError::new(
                code::INVALID_REQUEST,
                "a request is a JSON object with jsonrpc, id, method and params (batches are not supported)",
            ),
        ));
    };
    let id: Option<Id> = obj
        .get("id")
        .and_then(|i| serde_json::from_value(i.clone()).ok());
    let has_id = obj.get("id").is_some_and(|i| !i.is_null());
    let invalid = |msg: &str| {
        Some(Response::err(
            id.clone(),
            RpcError::new(code::INVALID_REQUEST, msg),
        ))
    };
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return invalid("missing \"jsonrpc\": \"2.0\"");
    }
    if has_id && id.is_none() {
        return invalid("the id must be a number or a string");
    }
    let Some(m) = obj.get("method").and_then(Value::as_str) else {
        return invalid("missing \"method\" (a string)");
    };
    let p = obj.get("params").cloned().unwrap_or(Value::Null);
    let result = call(sw, hooks, m, &p);
    if !has_id {
        return None;
    }
    Some(match result {
        Ok(v) => Response::ok(id, v),
        Err(e) => Response::err(id, e),
    })
}

fn call(sw: &Mutex<Switch>, hooks: &Hooks, m: &str, p: &Value) -> Result<Value, RpcError> {
    match m {
        method::VERSION => ok(Ok(rpc::VersionResult {
            version: env!("CARGO_PKG_VERSION").into(),
            protocol: rpc::PROTOCOL_VERSION,
        })),
        method::SHOW => ok(Ok(sw.lock().show())),
        method::ADD_PORT => {
            let p = params(m, p)?;
            ok(sw.lock().add_port(p))
        }
        method::DEL_PORT => {
            let p: rpc::PortName = params(m, p)?;
            ok(sw.lock().del_port(&p.name))
        }
        method::LIST_PORTS => ok(Ok(sw.lock().list_ports())),
        method::DUMP_PORTS => ok(Ok(sw.lock().dump_ports())),
        method::ADD_FLOWS => {
            let p = params(m, p)?;
            ok(sw.lock().add_flows(p))
        }
        method::MOD_FLOWS => {
            let p = params(m, p)?;
            ok(sw.lock().mod_flows(p))
        }
        method::DEL_FLOWS => {
            let p = params(m, p)?;
            ok(sw.lock().del_flows(p))
        }
        method::DUMP_FLOWS => {
            let p = params(m, p)?;
            ok(sw.lock().dump_flows(p))
        }
        method::ADD_GROUPS => {
            let p = params(m, p)?;
            ok(sw.lock().add_groups(p))
        }
        method::MOD_GROUPS => {
            let p = params(m, p)?;
            ok(sw.lock().mod_groups(p))
        }
        method::DEL_GROUPS => {
            let p = params(m, p)?;
            ok(sw.lock().del_groups(p))
        }
        method::DUMP_GROUPS => ok(Ok(sw.lock().dump_groups())),
        method::ADD_METERS => {
            let p = params(m, p)?;
            ok(sw.lock().add_meters(p))
        }
        method::DEL_METERS => {
            let p = params(m, p)?;
            ok(sw.lock().del_meters(p))
        }
        method::DUMP_METERS => {
            let p = params(m, p)?;
            ok(Ok(sw.lock().dump_meters(p)))
        }
        method::TRACE => {
            let p = params(m, p)?;
            ok(sw.lock().trace(p))
        }
        method::DUMP_CACHE => ok(Ok(sw.lock().dump_cache())),
        method::POLICY_CHECK => {
            let p: rpc::PolicyCheckParams = params(m, p)?;
            ok(sw.lock().policy_check(&p))
        }
        method::CNI => {
            let p: vswitch_proto::cni::CniCall = params(m, p)?;
            // Not under the switch's lock: the call takes it only for its short parts.
            crate::daemon::cni::handle(sw, p).map_err(|e| RpcError {
                code: code::REFUSED,
                message: e.msg.clone(),
                data: Some(e.to_rpc_data()),
            })
        }
        method::LIST_PODS => ok(Ok(sw.lock().list_pods())),
        method::ADD_NODE => {
            let p: rpc::NodeSpec = params(m, p)?;
            ok(sw.lock().add_node(&p))
        }
        method::DEL_NODE => {
            let p: rpc::NodeName = params(m, p)?;
            ok(sw.lock().del_node(&p.name))
        }
        method::LIST_NODES => ok(Ok(sw.lock().list_nodes())),
        method::APPLY => {
            let p: rpc::ApplyParams = params(m, p)?;
            ok(Ok(sw.lock().apply(&p.objects)))
        }
        method::DELETE => {
            let p: rpc::ApplyParams = params(m, p)?;
            ok(Ok(sw.lock().delete(&p.objects)))
        }
        method::GET => {
            let p: rpc::GetParams = params(m, p)?;
            ok(sw.lock().get(&p))
        }
        method::DUMP_CONNTRACK => {
            let p: rpc::CtDumpParams = params(m, p)?;
            ok(Ok(sw.lock().dump_conntrack(&p)))
        }
        method::FLUSH_CONNTRACK => {
            let p: rpc::CtFlushParams = params(m, p)?;
            ok(sw.lock().flush_conntrack(&p))
        }
        method::CT_SET_LIMITS => {
            let p: vswitch_proto::conntrack::SetLimits = params(m, p)?;
            ok(sw.lock().ct_set_limits(&p))
        }
        method::CT_GET_LIMITS => {
            let p: rpc::CtZones = params(m, p)?;
            ok(Ok(sw.lock().ct_get_limits(&p)))
        }
        method::CT_DEL_LIMITS => {
            let p: rpc::CtZones = params(m, p)?;
            ok(sw.lock().ct_del_limits(&p))
        }
        method::CT_SET_MAXCONNS => {
            let p: rpc::CtMaxconns = params(m, p)?;
            ok(sw.lock().ct_set_maxconns(&p))
        }
        method::CT_GET_MAXCONNS => ok(Ok(sw.lock().ct_get_maxconns())),
        method::CT_GET_NCONNS => ok(Ok(sw.lock().ct_get_nconns())),
        method::CT_GET_TIMEOUTS => ok(Ok(sw.lock().ct_get_timeouts())),
        method::CT_SET_TIMEOUTS => {
            let p: rpc::CtTimeouts = params(m, p)?;
            ok(sw.lock().ct_set_timeouts(&p))
        }
        method::REOPEN_LOGS => {
            ok((hooks.reopen_logs)()
                .map_err(|e| Refusal::refused(format!("cannot reopen logs: {e}"))))
        }
        method::SHUTDOWN => {
            (hooks.shutdown)();
            ok(Ok(()))
        }
        other => Err(RpcError::new(
            code::METHOD_NOT_FOUND,
            format!(
                "unknown method {other:?}; methods are: {}",
                method::ALL.join(", ")
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_capped_and_skipped() {
        let input = b"short\nthis-one-is-too-long\nok\n";
        let mut r = BufReader::with_capacity(4, &input[..]);
        let mut buf = Vec::new();
        assert!(matches!(
            read_line(&mut r, &mut buf, 10).unwrap(),
            Line::Complete
        ));
        assert_eq!(buf, b"short");
        assert!(matches!(
            read_line(&mut r, &mut buf, 10).unwrap(),
            Line::TooLong
        ));
        assert!(matches!(
            read_line(&mut r, &mut buf, 10).unwrap(),
            Line::Complete
        ));
        assert_eq!(buf, b"ok");
        assert!(matches!(
            read_line(&mut r, &mut buf, 10).unwrap(),
            Line::Eof
        ));
    }
}
