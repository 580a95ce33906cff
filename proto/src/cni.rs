//! The CNI contract (spec 1.1.0), shared by the `vswitch-cni` plugin and the switch.
//!
//! The plugin reads the environment and the network configuration, checks what it can
//! without the switch (this module's [`CniCall::from_env`] and [`CniCall::validate`]), and
//! forwards the call as a [`CniCall`] over the control socket (method `cni`). The switch
//! answers with the result already in the requested version, or with an error that carries
//! the CNI error code in its `data` ([`CniError::to_rpc_data`]).
//!
//! Results are built as [`CniResult`] and printed in any supported version with
//! [`CniResult::to_version`]; results from other plugins (`prevResult`) are read leniently
//! and their unknown fields kept.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::net::IpAddr;

/// Versions of the spec this plugin speaks, oldest first.
pub const SUPPORTED_VERSIONS: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];
/// The newest version; used when the input names none that can be read.
pub const CURRENT_VERSION: &str = "1.1.0";

/// The switch socket the plugin calls when the configuration names none.
pub const DEFAULT_SOCKET: &str = "/run/vswitch/vswitchd.sock";
/// Seconds the plugin waits for the switch's answer when the configuration sets no
/// `timeout` (well under kubelet's two-minute runtime request timeout).
pub const DEFAULT_TIMEOUT_SECS: u64 = 60;

/// Interface names are at most this long (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = 15;

/// CNI error codes (SPEC.md §5 "Error"), and this plugin's own from 100.
pub mod errcode {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNSUPPORTED_FIELD: u32 = 2;
    pub const UNKNOWN_CONTAINER: u32 = 3;
    pub const INVALID_ENV: u32 = 4;
    pub const IO_FAILURE: u32 = 5;
    pub const DECODE: u32 = 6;
    pub const INVALID_CONFIG: u32 = 7;
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// STATUS: the plugin cannot serve ADD now.
    pub const NOT_AVAILABLE: u32 = 50;
    /// STATUS: not available, and existing containers may have limited connectivity.
    pub const LIMITED_CONNECTIVITY: u32 = 51;
    /// Address management failed (the built-in allocator or the delegated IPAM plugin).
    pub const IPAM_FAILURE: u32 = 101;
    /// The interface could not be created or configured in the container.
    pub const INTERFACE_FAILURE: u32 = 102;
    /// CHECK found the attachment different from what ADD made.
    pub const CHECK_FAILED: u32 = 103;
    /// The interface belongs to another container, or already exists.
    pub const CONFLICT: u32 = 104;
    /// Anything else.
    pub const INTERNAL: u32 = 999;
}

/// A CNI error: printed as `{"cniVersion","code","msg","details"}` on stdout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> CniError {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> CniError {
        self.details = details.into();
        self
    }

    /// The error object the plugin prints.
    pub fn to_json(&self, version: &str) -> Value {
        let mut v = json!({ "cniVersion": version, "code": self.code, "msg": self.msg });
        if !self.details.is_empty() {
            v["details"] = Value::String(self.details.clone());
        }
        v
    }

    /// What the switch puts in a JSON-RPC error's `data` so the plugin can print this.
    pub fn to_rpc_data(&self) -> Value {
        json!({ "cni_code": self.code, "details": self.details })
    }

    /// Read back an error the switch sent: its message and `data`.
    pub fn from_rpc(message: &str, data: Option<&Value>) -> Option<CniError> {
        let data = data?;
        let code = u32::try_from(data.get("cni_code")?.as_u64()?).ok()?;
        Some(CniError {
            code,
            msg: message.to_string(),
            details: data
                .get("details")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        })
    }
}

impl std::fmt::Display for CniError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (CNI error {})", self.msg, self.code)?;
        if !self.details.is_empty() {
            write!(f, ": {}", self.details)?;
        }
        Ok(())
    }
}

impl std::error::Error for CniError {}

/// The CNI operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
    Status,
    Gc,
}

impl Command {
    pub fn parse(s: &str) -> Option<Command> {
        Some(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "VERSION" => Command::Version,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Version => "VERSION",
            Command::Status => "STATUS",
            Command::Gc => "GC",
        }
    }

    /// The environment variables the operation cannot do without (besides CNI_COMMAND).
    fn required_env(self) -> &'static [&'static str] {
        match self {
            Command::Add | Command::Check => &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"],
            Command::Del => &["CNI_CONTAINERID", "CNI_IFNAME"],
            Command::Version | Command::Status | Command::Gc => &[],
        }
    }

    /// The oldest configuration version in which the operation exists.
    fn since(self) -> &'static str {
        match self {
            Command::Check => "0.4.0",
            Command::Status | Command::Gc => "1.1.0",
            _ => "0.1.0",
        }
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `major.minor.patch` as numbers; `None` when `v` is not of that form.
pub fn parse_version(v: &str) -> Option<(u32, u32, u32)> {
    let mut it = v.split('.').map(|p| p.parse::<u32>().ok());
    let r = (it.next()??, it.next()??, it.next()??);
    it.next().is_none().then_some(r)
}

/// Whether version `a` is at least `b` (both well formed).
pub fn version_at_least(a: &str, b: &str) -> bool {
    matches!((parse_version(a), parse_version(b)), (Some(x), Some(y)) if x >= y)
}

pub fn is_supported(version: &str) -> bool {
    SUPPORTED_VERSIONS.contains(&version)
}

/// The `{"cniVersion", "supportedVersions"}` reply to VERSION.
pub fn version_reply(stdin_version: Option<&str>) -> Value {
    let v = stdin_version
        .filter(|v| is_supported(v))
        .unwrap_or(CURRENT_VERSION);
    json!({ "cniVersion": v, "supportedVersions": SUPPORTED_VERSIONS })
}

/// A container ID: non-empty, `[a-zA-Z0-9][a-zA-Z0-9_.-]*` (libcni's rule).
pub fn validate_container_id(id: &str) -> Result<(), CniError> {
    let mut chars = id.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(CniError::new(
            errcode::INVALID_ENV,
            format!(
                "CNI_CONTAINERID {id:?} has invalid characters: it must start with a letter or \
                 digit and hold only letters, digits, '_', '.' and '-'"
            ),
        ))
    }
}

/// An interface name the kernel accepts: 1 to 15 bytes, not `.` or `..`, no `/`, `:`
/// or whitespace.
pub fn validate_ifname(name: &str) -> Result<(), CniError> {
    let why = if name.is_empty() {
        Some("it is empty".to_string())
    } else if name.len() > IFNAME_MAX {
        Some(format!(
            "it is {} bytes long, and Linux allows at most {IFNAME_MAX}",
            name.len()
        ))
    } else if name == "." || name == ".." {
        Some("it cannot be '.' or '..'".to_string())
    } else if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c == '\0')
    {
        Some("it cannot contain '/', ':', NUL or whitespace".to_string())
    } else {
        None
    };
    match why {
        None => Ok(()),
        Some(why) => Err(CniError::new(
            errcode::INVALID_ENV,
            format!("CNI_IFNAME {name:?} is not a valid interface name: {why}"),
        )),
    }
}

/// `CNI_ARGS` (`K=V;K=V`), with the Kubernetes keys pulled out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub infra_container_id: Option<String>,
    /// `IP=`: the addresses asked for (the CNI convention for static addresses, which
    /// host-local reads too), comma-separated, each with or without a prefix length.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpAddr>,
    /// Every pair, in order, as given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pairs: Vec<(String, String)>,
}

impl CniArgs {
    /// Parse `CNI_ARGS`. Keys other than the Kubernetes ones are refused unless
    /// `IgnoreUnknown` is `1` or `true` (as the reference plugins do).
    pub fn parse(s: &str) -> Result<CniArgs, CniError> {
        let mut a = CniArgs::default();
        let mut unknown = Vec::new();
        let mut ignore_unknown = false;
        for pair in s.split(';').filter(|p| !p.is_empty()) {
            let Some((k, v)) = pair.split_once('=') else {
                return Err(CniError::new(
                    errcode::INVALID_ENV,
                    format!("CNI_ARGS: {pair:?} is not a KEY=VALUE pair"),
                ));
            };
            match k {
                "IgnoreUnknown" => {
                    ignore_unknown = matches!(v.to_ascii_lowercase().as_str(), "1" | "true")
                }
                "K8S_POD_NAMESPACE" => a.pod_namespace = Some(v.to_string()),
                "K8S_POD_NAME" => a.pod_name = Some(v.to_string()),
                "K8S_POD_UID" => a.pod_uid = Some(v.to_string()),
                "K8S_POD_INFRA_CONTAINER_ID" => a.infra_container_id = Some(v.to_string()),
                "IP" => {
                    a.ips = requested_ips(v.split(',')).map_err(|m| {
                        CniError::new(errcode::INVALID_ENV, format!("CNI_ARGS: IP={v}: {m}"))
                    })?
                }
                _ => unknown.push(k.to_string()),
            }
            a.pairs.push((k.to_string(), v.to_string()));
        }
        if !unknown.is_empty() && !ignore_unknown {
            return Err(CniError::new(
                errcode::INVALID_ENV,
                format!(
                    "CNI_ARGS: unknown key{} {}; add IgnoreUnknown=1 to pass keys this plugin \
                     does not use",
                    if unknown.len() == 1 { "" } else { "s" },
                    unknown.join(", ")
                ),
            ));
        }
        Ok(a)
    }
}

/// One attachment named by GC's valid list.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// The parts of the network configuration the plugin and the switch read; the rest is
/// kept in the raw object (for the IPAM plugin and for chained plugins).
#[derive(Clone, Debug, PartialEq)]
pub struct NetConf {
    pub cni_version: String,
    pub name: String,
    pub plugin_type: String,
    /// The switch's control socket (`socket`).
    pub socket: String,
    /// Seconds to wait for the switch (`timeout`).
    pub timeout_secs: u64,
    /// Where the plugin appends its log lines (`logFile`), besides stderr.
    pub log_file: Option<String>,
    /// `ipam.type`, if there is an `ipam` section.
    pub ipam_type: Option<String>,
    /// `dns`, returned in the result as given.
    pub dns: Option<Value>,
    /// `prevResult`, when a plugin ran before this one (ADD) or the runtime cached the
    /// result (DEL, CHECK).
    pub prev_result: Option<Value>,
    /// GC: the attachments to keep (`cni.dev/valid-attachments`, or the spec 1.1.0 text's
    /// `cni.dev/attachments`).
    pub valid_attachments: Option<Vec<Attachment>>,
    /// The addresses the runtime asks for: the `ips` capability (`runtimeConfig.ips`) or
    /// `args.cni.ips`, the CNI conventions for static addresses.
    pub ips: Vec<IpAddr>,
}

/// Addresses asked for, each `ADDRESS` or `ADDRESS/PREFIX` (the prefix is the network's,
/// which the switch knows already).
fn requested_ips<'a>(items: impl Iterator<Item = &'a str>) -> Result<Vec<IpAddr>, String> {
    items
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let addr = s.split_once('/').map_or(s, |(a, _)| a);
            let ip: IpAddr = addr
                .parse()
                .map_err(|_| format!("{s:?} is not an IP address"))?;
            if let Some((_, p)) = s.split_once('/') {
                let max = if ip.is_ipv4() { 32 } else { 128 };
                p.parse::<u8>()
                    .ok()
                    .filter(|p| *p <= max)
                    .ok_or_else(|| format!("{s:?} has a bad prefix length"))?;
            }
            Ok(ip)
        })
        .collect()
}

/// The version an unparsable or version-less configuration is answered in.
pub fn version_of(raw: &Value) -> String {
    raw.get("cniVersion")
        .and_then(Value::as_str)
        .filter(|v| is_supported(v))
        .unwrap_or(CURRENT_VERSION)
        .to_string()
}

fn invalid(msg: impl Into<String>) -> CniError {
    CniError::new(errcode::INVALID_CONFIG, msg)
}

impl NetConf {
    /// Read the configuration from stdin's bytes.
    pub fn parse(bytes: &[u8]) -> Result<(NetConf, Value), CniError> {
        let raw: Value = serde_json::from_slice(bytes).map_err(|e| {
            CniError::new(
                errcode::DECODE,
                format!("the network configuration on stdin is not valid JSON: {e}"),
            )
        })?;
        let conf = NetConf::from_value(&raw)?;
        Ok((conf, raw))
    }

    /// Read the configuration from its JSON object.
    pub fn from_value(raw: &Value) -> Result<NetConf, CniError> {
        let obj = raw.as_object().ok_or_else(|| {
            CniError::new(
                errcode::DECODE,
                "the network configuration on stdin must be a JSON object",
            )
        })?;
        let string = |key: &str| -> Result<Option<String>, CniError> {
            match obj.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(invalid(format!(
                    "network configuration: {key:?} must be a string, not {other}"
                ))),
            }
        };
        let cni_version = match string("cniVersion")? {
            Some(v) => v,
            None => {
                return Err(CniError::new(
                    errcode::INCOMPATIBLE_VERSION,
                    format!(
                        "the network configuration has no \"cniVersion\" (read as 0.1.0, which \
                         this plugin does not support); set it to one of {}",
                        SUPPORTED_VERSIONS.join(", ")
                    ),
                ));
            }
        };
        if !is_supported(&cni_version) {
            return Err(CniError::new(
                errcode::INCOMPATIBLE_VERSION,
                format!(
                    "cniVersion {cni_version:?} is not supported by vswitch-cni; use one of {}",
                    SUPPORTED_VERSIONS.join(", ")
                ),
            )
            .with_details(format!(
                "config is {cni_version:?}, plugin supports {:?}",
                SUPPORTED_VERSIONS
            )));
        }
        let name = string("name")?
            .filter(|n| !n.is_empty())
            .ok_or_else(|| invalid("the network configuration has no \"name\""))?;
        let mut chars = name.chars();
        if !(chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
            && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
        {
            return Err(invalid(format!(
                "network name {name:?} is invalid: use letters, digits, '_', '.' and '-', \
                 starting with a letter or digit"
            )));
        }
        let plugin_type = string("type")?
            .filter(|t| !t.is_empty())
            .ok_or_else(|| invalid("the network configuration has no \"type\""))?;
        let socket = string("socket")?.unwrap_or_else(|| DEFAULT_SOCKET.to_string());
        if !socket.starts_with('/') {
            return Err(invalid(format!(
                "\"socket\" must be an absolute path, not {socket:?}"
            )));
        }
        let timeout_secs = match obj.get("timeout") {
            None | Some(Value::Null) => DEFAULT_TIMEOUT_SECS,
            Some(v) => v
                .as_u64()
                .filter(|&t| (1..=600).contains(&t))
                .ok_or_else(|| {
                    invalid(format!(
                        "\"timeout\" must be a number of seconds from 1 to 600, not {v}"
                    ))
                })?,
        };
        let log_file = string("logFile")?;
        let ipam_type = match obj.get("ipam") {
            None | Some(Value::Null) => None,
            Some(Value::Object(ipam)) => match ipam.get("type") {
                Some(Value::String(t)) if !t.is_empty() => Some(t.clone()),
                None => None,
                Some(other) => {
                    return Err(invalid(format!(
                        "\"ipam.type\" must be a plugin name, not {other}"
                    )));
                }
            },
            Some(other) => {
                return Err(invalid(format!("\"ipam\" must be an object, not {other}")));
            }
        };
        if let Some(t) = &ipam_type
            && (t.contains('/') || t == "." || t == "..")
        {
            return Err(invalid(format!(
                "\"ipam.type\" {t:?} must be a plugin name, not a path"
            )));
        }
        let dns = obj.get("dns").filter(|v| !v.is_null()).cloned();
        if let Some(d) = &dns
            && !d.is_object()
        {
            return Err(invalid(format!("\"dns\" must be an object, not {d}")));
        }
        let prev_result = obj.get("prevResult").filter(|v| !v.is_null()).cloned();
        let valid_attachments = ["cni.dev/valid-attachments", "cni.dev/attachments"]
            .iter()
            .find_map(|k| obj.get(*k).filter(|v| !v.is_null()))
            .map(|v| {
                serde_json::from_value::<Vec<Attachment>>(v.clone()).map_err(|e| {
                    invalid(format!(
                        "\"cni.dev/valid-attachments\" must be a list of \
                         {{\"containerID\", \"ifname\"}}: {e}"
                    ))
                })
            })
            .transpose()?;
        let mut ips = Vec::new();
        for (path, v) in [
            (
                "runtimeConfig.ips",
                obj.get("runtimeConfig").and_then(|r| r.get("ips")),
            ),
            (
                "args.cni.ips",
                obj.get("args")
                    .and_then(|a| a.get("cni"))
                    .and_then(|c| c.get("ips")),
            ),
        ] {
            let Some(v) = v.filter(|v| !v.is_null()) else {
                continue;
            };
            let items: Vec<&str> = v
                .as_array()
                .and_then(|a| a.iter().map(Value::as_str).collect())
                .ok_or_else(|| {
                    invalid(format!("\"{path}\" must be a list of addresses, not {v}"))
                })?;
            let got = requested_ips(items.into_iter())
                .map_err(|m| invalid(format!("\"{path}\": {m}")))?;
            if ips.is_empty() {
                ips = got;
            }
        }
        Ok(NetConf {
            cni_version,
            name,
            plugin_type,
            socket,
            timeout_secs,
            log_file,
            ipam_type,
            dns,
            prev_result,
            valid_attachments,
            ips,
        })
    }
}

/// One call of the plugin, as forwarded to the switch (method `cni`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniCall {
    pub command: Command,
    #[serde(default)]
    pub container_id: String,
    #[serde(default)]
    pub netns: String,
    #[serde(default)]
    pub ifname: String,
    /// `CNI_ARGS`, as given.
    #[serde(default)]
    pub args: String,
    /// `CNI_PATH`, as given (the switch runs a delegated IPAM plugin from there).
    #[serde(default)]
    pub path: String,
    /// The network configuration, as given on stdin.
    pub config: Value,
}

impl CniCall {
    /// The call from the plugin's environment (`vars` looks up a variable) and stdin.
    /// Fails with the error the plugin prints; the error's version is the second value.
    pub fn from_env(
        vars: impl Fn(&str) -> Option<String>,
        stdin: &[u8],
    ) -> Result<(CniCall, NetConf), (CniError, String)> {
        let command = match vars("CNI_COMMAND") {
            None => {
                return Err((
                    CniError::new(
                        errcode::INVALID_ENV,
                        "CNI_COMMAND is not set: this is a CNI plugin, run by the container runtime (ADD, DEL, CHECK, STATUS, GC or VERSION)",
                    ),
                    CURRENT_VERSION.into(),
                ));
            }
            Some(c) => Command::parse(&c).ok_or_else(|| {
                (
                    CniError::new(
                        errcode::INVALID_ENV,
                        format!(
                            "unknown CNI_COMMAND {c:?}: use ADD, DEL, CHECK, STATUS, GC or VERSION"
                        ),
                    ),
                    CURRENT_VERSION.to_string(),
                )
            })?,
        };
        let (conf, raw) = NetConf::parse(stdin).map_err(|e| {
            let v = serde_json::from_slice::<Value>(stdin)
                .map(|raw| version_of(&raw))
                .unwrap_or_else(|_| CURRENT_VERSION.into());
            (e, v)
        })?;
        let get = |k: &str| vars(k).unwrap_or_default();
        let call = CniCall {
            command,
            container_id: get("CNI_CONTAINERID"),
            netns: get("CNI_NETNS"),
            ifname: get("CNI_IFNAME"),
            args: get("CNI_ARGS"),
            path: get("CNI_PATH"),
            config: raw,
        };
        call.validate(&conf)
            .map_err(|e| (e, conf.cni_version.clone()))?;
        Ok((call, conf))
    }

    /// Check everything that needs neither the switch nor the container: the variables
    /// the operation requires, their form, and whether the configuration's version has
    /// the operation. Returns the parsed `CNI_ARGS`.
    pub fn validate(&self, conf: &NetConf) -> Result<CniArgs, CniError> {
        let value = |k: &str| match k {
            "CNI_CONTAINERID" => &self.container_id,
            "CNI_NETNS" => &self.netns,
            "CNI_IFNAME" => &self.ifname,
            _ => &self.path,
        };
        let missing: Vec<&str> = self
            .command
            .required_env()
            .iter()
            .copied()
            .filter(|k| value(k).is_empty())
            .collect();
        if !missing.is_empty() {
            return Err(CniError::new(
                errcode::INVALID_ENV,
                format!(
                    "required environment variable{} {} missing for {}",
                    if missing.len() == 1 { "" } else { "s" },
                    missing.join(", "),
                    self.command
                ),
            ));
        }
        if !version_at_least(&conf.cni_version, self.command.since()) {
            return Err(CniError::new(
                errcode::INCOMPATIBLE_VERSION,
                format!(
                    "{} needs cniVersion {} or later; the configuration says {}",
                    self.command,
                    self.command.since(),
                    conf.cni_version
                ),
            ));
        }
        if !self.container_id.is_empty() {
            validate_container_id(&self.container_id)?;
        }
        if !self.ifname.is_empty() {
            validate_ifname(&self.ifname)?;
        }
        if !self.netns.is_empty() && !self.netns.starts_with('/') {
            return Err(CniError::new(
                errcode::INVALID_ENV,
                format!(
                    "CNI_NETNS {:?} must be an absolute path to a network namespace \
                     (e.g. /var/run/netns/NAME)",
                    self.netns
                ),
            ));
        }
        CniArgs::parse(&self.args)
    }
}

/// An interface in a result.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    #[serde(
        default,
        rename = "socketPath",
        skip_serializing_if = "Option::is_none"
    )]
    pub socket_path: Option<String>,
    #[serde(default, rename = "pciID", skip_serializing_if = "Option::is_none")]
    pub pci_id: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An address in a result.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct IpConfig {
    /// With prefix length: `10.244.1.5/24`.
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A route in a result.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Route {
    pub dst: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A Success result (SPEC.md §5), in its 1.1.0 shape.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CniResult {
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    #[serde(default)]
    pub ips: Vec<IpConfig>,
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub dns: Map<String, Value>,
}

impl CniResult {
    /// Read a result of any supported version (a `prevResult`, a delegated IPAM plugin's
    /// answer). The 0.x `ips[].version` is dropped; unknown fields are kept.
    pub fn from_value(v: &Value) -> Result<CniResult, String> {
        let mut v = v.clone();
        if let Some(obj) = v.as_object_mut() {
            obj.remove("cniVersion");
            for ip in obj
                .get_mut("ips")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                if let Some(ip) = ip.as_object_mut() {
                    ip.remove("version");
                }
            }
            if obj.get("dns").is_some_and(Value::is_null) {
                obj.remove("dns");
            }
        }
        serde_json::from_value(v).map_err(|e| format!("not a CNI result: {e}"))
    }

    /// The result as `version` prints it: before 1.0.0 each address carries `version`
    /// (`"4"` or `"6"`); the interface fields `mtu`, `socketPath` and `pciID` exist from
    /// 1.1.0.
    pub fn to_version(&self, version: &str) -> Value {
        let mut r = self.clone();
        let v1_1 = version_at_least(version, "1.1.0");
        if !v1_1 {
            for i in &mut r.interfaces {
                i.mtu = None;
                i.socket_path = None;
                i.pci_id = None;
            }
        }
        let mut v = serde_json::to_value(&r).unwrap_or(Value::Null);
        if !version_at_least(version, "1.0.0") {
            for (ip, cfg) in v["ips"].as_array_mut().into_iter().flatten().zip(&self.ips) {
                let six = cfg.address.contains(':');
                ip["version"] = Value::String(if six { "6" } else { "4" }.into());
            }
        }
        let mut out = Map::new();
        out.insert("cniVersion".into(), Value::String(version.to_string()));
        if let Value::Object(m) = v {
            out.extend(m);
        }
        Value::Object(out)
    }

    /// Append `other` (this plugin's part) after what earlier plugins returned; its
    /// interface indexes are shifted to stay right.
    pub fn append(&mut self, other: CniResult) {
        let base = self.interfaces.len();
        self.interfaces.extend(other.interfaces);
        self.ips.extend(other.ips.into_iter().map(|mut ip| {
            ip.interface = ip.interface.map(|i| i + base);
            ip
        }));
        self.routes.extend(other.routes);
        if self.dns.is_empty() {
            self.dns = other.dns;
        }
    }
}

/// One attachment as `list-pods` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodInfo {
    pub container_id: String,
    pub ifname: String,
    pub netns: String,
    /// `namespace/name` from CNI_ARGS, when the runtime gave them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// The network (the configuration's `name`).
    pub network: String,
    /// The switch port.
    pub port: String,
    pub port_no: u32,
    /// With prefix length.
    pub ip: String,
    pub mac: String,
    pub gateway: String,
    /// `vswitch` (built in) or the delegated plugin's type.
    pub ipam: String,
    /// `up`, or why not.
    pub state: String,
}

/// `list-pods`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodList {
    /// The node's Pod CIDR, when the switch has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_cidr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    pub pods: Vec<PodInfo>,
    /// Free addresses left in the built-in allocator.
    #[serde(default)]
    pub free: u64,
}

#[cfg(test)]
mod tests;
