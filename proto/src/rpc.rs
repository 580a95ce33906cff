//! The control protocol: JSON-RPC 2.0, one JSON object per line over the switch's Unix
//! socket. This module holds the envelope, the error codes and the typed parameters and
//! results of each method; the daemon and `vswitchctl` both use it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Version of the method set; sent by clients as `"v"` in params-independent metadata and
/// reported by `version`.
pub const PROTOCOL_VERSION: u32 = 1;

/// The largest request line the switch reads; a longer one is refused with
/// [`code::INVALID_REQUEST`] and the connection stays usable.
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// JSON-RPC 2.0 error codes, plus this switch's own (in the -32000..-32099 server range).
pub mod code {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL_ERROR: i64 = -32603;
    /// The switch understood the request and refused it (bad flow text, unknown port...).
    pub const REFUSED: i64 = -32000;
    /// The named object (port, group, node, container) does not exist.
    pub const NOT_FOUND: i64 = -32001;
    /// The object already exists (a port name taken, an interface owned by another container).
    pub const CONFLICT: i64 = -32002;
    /// The peer is not allowed to use the socket.
    pub const PERMISSION_DENIED: i64 = -32003;
}

/// A request id: JSON-RPC allows a number or a string (or null, which we do not send).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Id {
    Num(i64),
    Str(String),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub jsonrpc: String,
    /// Absent for a notification (no response is sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Id>,
    pub method: String,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub params: Value,
}

impl Request {
    pub fn new(id: i64, method: &str, params: impl Serialize) -> Request {
        Request {
            jsonrpc: "2.0".into(),
            id: Some(Id::Num(id)),
            method: method.into(),
            params: serde_json::to_value(params).unwrap_or(Value::Null),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> RpcError {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }
}

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RpcError {}

/// A response: exactly one of `result` and `error` is present.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub jsonrpc: String,
    /// `null` when the request's id could not be read.
    pub id: Option<Id>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RpcError>,
}

impl Response {
    pub fn ok(id: Option<Id>, result: Value) -> Response {
        Response {
            jsonrpc: "2.0".into(),
            id,
            result: Some(result),
            error: None,
        }
    }

    pub fn err(id: Option<Id>, error: RpcError) -> Response {
        Response {
            jsonrpc: "2.0".into(),
            id,
            result: None,
            error: Some(error),
        }
    }

    /// The result, or the error the switch returned.
    pub fn into_result(self) -> Result<Value, RpcError> {
        match (self.result, self.error) {
            (_, Some(e)) => Err(e),
            (Some(v), None) => Ok(v),
            (None, None) => Err(RpcError::new(
                code::INVALID_REQUEST,
                "response has neither result nor error",
            )),
        }
    }
}

/// Method names.
pub mod method {
    pub const VERSION: &str = "version";
    pub const SHOW: &str = "show";
    pub const ADD_PORT: &str = "add-port";
    pub const DEL_PORT: &str = "del-port";
    pub const LIST_PORTS: &str = "list-ports";
    pub const DUMP_PORTS: &str = "dump-ports";
    pub const ADD_FLOWS: &str = "add-flows";
    pub const MOD_FLOWS: &str = "mod-flows";
    pub const DEL_FLOWS: &str = "del-flows";
    pub const DUMP_FLOWS: &str = "dump-flows";
    pub const ADD_GROUPS: &str = "add-groups";
    pub const DEL_GROUPS: &str = "del-groups";
    pub const DUMP_GROUPS: &str = "dump-groups";
    pub const TRACE: &str = "trace";
    pub const DUMP_CACHE: &str = "dump-cache";
    pub const REOPEN_LOGS: &str = "reopen-logs";
}

/// `add-flows` and `mod-flows`: flow lines in `ovs-ofctl` syntax, applied all or nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowsParams {
    pub flows: Vec<String>,
    /// For `mod-flows`: priority is part of the match (`--strict`).
    #[serde(default)]
    pub strict: bool,
}

/// `del-flows` and `dump-flows`: a criteria line (match, `table=`, `cookie=V/M`,
/// `out_port=`), or none for every flow.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelectFlowsParams {
    #[serde(default)]
    pub criteria: Option<String>,
    #[serde(default)]
    pub strict: bool,
}

/// One flow in a `dump-flows` result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpedFlow {
    pub table: u8,
    pub priority: u16,
    pub cookie: String,
    pub duration_ms: u64,
    pub n_packets: u64,
    pub n_bytes: u64,
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    /// The match, as flow text.
    #[serde(rename = "match")]
    pub matching: String,
    /// The actions, as flow text.
    pub actions: String,
    /// The whole line as `dump-flows` prints it; it can be fed back to `add-flow`.
    pub line: String,
}

/// `add-groups`: group lines (`group_id=1,type=select,bucket=...`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupsParams {
    pub groups: Vec<String>,
}

/// `del-groups`: one group, or all of them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelGroupsParams {
    #[serde(default)]
    pub group_id: Option<u32>,
}

/// `trace`: a packet written as flow text (`in_port=1,tcp,nw_dst=10.0.0.2,tp_dst=80`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceParams {
    pub flow: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trip() {
        let r = Request::new(
            7,
            method::ADD_FLOWS,
            FlowsParams {
                flows: vec!["actions=drop".into()],
                strict: false,
            },
        );
        let s = serde_json::to_string(&r).unwrap();
        assert!(!s.contains('\n'));
        let back: Request = serde_json::from_str(&s).unwrap();
        assert_eq!(back, r);
        let p: FlowsParams = serde_json::from_value(back.params).unwrap();
        assert_eq!(p.flows, vec!["actions=drop".to_string()]);
    }

    #[test]
    fn response_shapes() {
        let ok = Response::ok(Some(Id::Num(1)), Value::Bool(true));
        assert_eq!(
            serde_json::to_string(&ok).unwrap(),
            r#"{"jsonrpc":"2.0","id":1,"result":true}"#
        );
        let err = Response::err(None, RpcError::new(code::PARSE_ERROR, "bad json"));
        assert_eq!(
            serde_json::to_string(&err).unwrap(),
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"bad json"}}"#
        );
        assert!(err.into_result().is_err());
    }
}
