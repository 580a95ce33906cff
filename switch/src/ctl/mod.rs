//! The control protocol's server side: JSON-RPC 2.0 over a Unix socket, one JSON object
//! per line; [`server`] runs the socket, this module answers the requests.
//!
//! The socket is mode 0600 and every connection's peer credentials are checked (root, or
//! the user the daemon runs as). A malformed message gets a JSON-RPC error and the
//! connection stays usable; a message over [`vswitch_proto::rpc::MAX_MESSAGE_BYTES`] is
//! refused and skipped up to its newline.

pub mod framer;
pub mod server;

use crate::daemon::{Refusal, Switch};
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use vswitch_proto::rpc::{self, Id, Response, RpcError, code, method};

/// What the server can ask of the process around it, and what it tells it.
pub struct Hooks {
    /// Stop the daemon (the `shutdown` call).
    pub shutdown: Box<dyn Fn() + Send + Sync>,
    /// Reopen log files (the `reopen-logs` call).
    pub reopen_logs: Box<dyn Fn() -> io::Result<()> + Send + Sync>,
    /// The control server's counters (`show`).
    pub control: Arc<server::Stats>,
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
    answer(sw, hooks, None, line)
}

/// [`handle`], with the control server's counters for `show`.
fn answer(
    sw: &Mutex<Switch>,
    hooks: &Hooks,
    control: Option<&server::Stats>,
    line: &[u8],
) -> Option<Response> {
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
    let result = call(sw, hooks, control, m, &p);
    if !has_id {
        return None;
    }
    Some(match result {
        Ok(v) => Response::ok(id, v),
        Err(e) => Response::err(id, e),
    })
}

fn call(
    sw: &Mutex<Switch>,
    hooks: &Hooks,
    control: Option<&server::Stats>,
    m: &str,
    p: &Value,
) -> Result<Value, RpcError> {
    match m {
        method::VERSION => ok(Ok(rpc::VersionResult {
            version: env!("CARGO_PKG_VERSION").into(),
            protocol: rpc::PROTOCOL_VERSION,
        })),
        method::SHOW => {
            let mut show = sw.lock().show();
            show.control = control.map(server::Stats::snapshot);
            ok(Ok(show))
        }
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
