//! Address management for Pods: the built-in allocator over the node's Pod CIDR, and
//! delegation to a CNI IPAM plugin (`ipam.type`, e.g. `host-local`) run from `CNI_PATH`
//! the way CNI plugins run each other (SPEC.md §4).

use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};
use vswitch_proto::cni::{self, CniError, CniResult, errcode};
use vswitch_proto::net::Ipv4Cidr;

/// The type that names the built-in allocator in `ipam.type` (as does no `ipam` at all).
pub const BUILTIN: &str = "vswitch";

/// How long a delegated IPAM plugin may run.
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Parse a Pod CIDR: an IPv4 network with room for a gateway and a Pod (at most /30).
pub fn pod_cidr(s: &str) -> Result<Ipv4Cidr, String> {
    vswitch_proto::k8s::parse_pod_cidr(s)
}

/// Addresses a Pod can have in `cidr`: every host address but the gateway.
pub fn pod_addresses(cidr: &Ipv4Cidr) -> u64 {
    (1u64 << (32 - cidr.prefix())) - 3
}

/// Why an address asked for cannot be a Pod's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    #[error("{ip} is outside the Pod CIDR {cidr}")]
    Outside { ip: Ipv4Addr, cidr: Ipv4Cidr },
    #[error("{ip} is the Pod CIDR's {what}, which no Pod can have")]
    Reserved { ip: Ipv4Addr, what: &'static str },
    #[error("{0} is already in use on this node")]
    Taken(Ipv4Addr),
}

/// The built-in allocator: addresses in use (and reserved by ADDs in flight), and where
/// the next search starts, so a released address is not handed out again at once.
#[derive(Debug)]
pub struct Allocator {
    cidr: Ipv4Cidr,
    used: BTreeSet<Ipv4Addr>,
    next: u32,
}

impl Allocator {
    pub fn new(cidr: Ipv4Cidr) -> Allocator {
        Allocator {
            cidr,
            used: BTreeSet::new(),
            next: u32::from(cidr.gateway()) + 1,
        }
    }

    /// Record an address as used (restored from the state); false if it already was.
    pub fn mark(&mut self, ip: Ipv4Addr) -> bool {
        self.used.insert(ip)
    }

    /// Take `ip` exactly (an address asked for), or say why not.
    pub fn reserve(&mut self, ip: Ipv4Addr) -> Result<(), Unavailable> {
        let c = self.cidr;
        if !c.contains(ip) {
            return Err(Unavailable::Outside { ip, cidr: c });
        }
        let what = if ip == c.network() {
            Some("network address")
        } else if ip == c.gateway() {
            Some("gateway")
        } else if ip == c.broadcast() {
            Some("broadcast address")
        } else {
            None
        };
        if let Some(what) = what {
            return Err(Unavailable::Reserved { ip, what });
        }
        if !self.used.insert(ip) {
            return Err(Unavailable::Taken(ip));
        }
        Ok(())
    }

    /// Whether `ip` is in use.
    pub fn is_used(&self, ip: Ipv4Addr) -> bool {
        self.used.contains(&ip)
    }

    /// The next free address, now marked used; `None` when the CIDR is full.
    pub fn allocate(&mut self) -> Option<Ipv4Addr> {
        let first = u32::from(self.cidr.gateway()) + 1;
        let last = u32::from(self.cidr.broadcast()) - 1;
        if first > last {
            return None;
        }
        let span = last - first + 1;
        let start = if (first..=last).contains(&self.next) {
            self.next
        } else {
            first
        };
        for i in 0..span {
            let ip = Ipv4Addr::from(first + (start - first + i) % span);
            if !self.used.contains(&ip) {
                self.used.insert(ip);
                self.next = u32::from(ip).wrapping_add(1);
                return Some(ip);
            }
        }
        None
    }

    pub fn release(&mut self, ip: Ipv4Addr) {
        self.used.remove(&ip);
    }

    pub fn free(&self) -> u64 {
        pod_addresses(&self.cidr).saturating_sub(
            self.used
                .iter()
                .filter(|ip| self.cidr.contains(**ip))
                .count() as u64,
        )
    }
}

/// What a delegated plugin is run with (besides the command and its stdin).
#[derive(Clone, Debug, Default)]
pub struct PluginEnv {
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    pub args: String,
    pub path: String,
}

/// Find `plugin` in the `:`-separated `CNI_PATH`.
pub fn find(plugin: &str, cni_path: &str) -> Result<PathBuf, CniError> {
    if cni_path.is_empty() {
        return Err(CniError::new(
            errcode::INVALID_ENV,
            format!("CNI_PATH is empty, so the IPAM plugin {plugin:?} cannot be found"),
        ));
    }
    cni_path
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(plugin))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            CniError::new(
                errcode::INVALID_CONFIG,
                format!(
                    "the IPAM plugin {plugin:?} (ipam.type) is not in CNI_PATH {cni_path}; \
                     install it there or fix ipam.type"
                ),
            )
        })
}

/// Run `bin` with `command`; its parsed stdout on success (`None` when it printed
/// nothing), its CNI error otherwise.
pub fn exec(
    bin: &Path,
    command: cni::Command,
    env: &PluginEnv,
    stdin: &Value,
) -> Result<Option<Value>, CniError> {
    let name = bin
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let fail = |msg: String| {
        CniError::new(
            errcode::IPAM_FAILURE,
            format!("IPAM plugin {name} ({command}): {msg}"),
        )
    };
    let mut child = Command::new(bin)
        .env_clear()
        .env("CNI_COMMAND", command.as_str())
        .env("CNI_CONTAINERID", &env.container_id)
        .env("CNI_NETNS", &env.netns)
        .env("CNI_IFNAME", &env.ifname)
        .env("CNI_ARGS", &env.args)
        .env("CNI_PATH", &env.path)
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a time-out stops what it started too.
        .process_group(0)
        .spawn()
        .map_err(|e| fail(format!("cannot run {}: {e}", bin.display())))?;
    let input = serde_json::to_vec(stdin).unwrap_or_default();
    if let Some(mut w) = child.stdin.take() {
        // From a thread: a plugin that does not read does not hold us past the time-out.
        // One that exits without reading its stdin is not an error of ours.
        std::thread::spawn(move || {
            let _ = w.write_all(&input);
        });
    }
    let (out, err) = (child.stdout.take(), child.stderr.take());
    let stderr_reader = std::thread::spawn(move || {
        let mut e = Vec::new();
        if let Some(r) = err {
            let _ = r.take(64 << 10).read_to_end(&mut e);
        }
        e
    });
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut o = Vec::new();
        if let Some(mut r) = out {
            let _ = r.read_to_end(&mut o);
        }
        let _ = tx.send(o);
    });
    let Ok(stdout) = rx.recv_timeout(PLUGIN_TIMEOUT) else {
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = child.wait();
        return Err(fail(format!(
            "did not finish within {} s; it was stopped",
            PLUGIN_TIMEOUT.as_secs()
        )));
    };
    let status = child.wait().map_err(|e| fail(e.to_string()))?;
    let stderr = stderr_reader.join().unwrap_or_default();
    let parsed: Option<Value> = serde_json::from_slice(&stdout).ok();
    if status.success() {
        return Ok(parsed);
    }
    // A plugin's error is JSON on stdout (libcni reads it there); else its stderr.
    let (code, msg, details) = match &parsed {
        Some(v) if v.get("code").is_some() => (
            v["code"].as_u64().unwrap_or(u64::from(errcode::INTERNAL)) as u32,
            v["msg"].as_str().unwrap_or_default().to_string(),
            v["details"].as_str().unwrap_or_default().to_string(),
        ),
        _ => (
            errcode::IPAM_FAILURE,
            format!(
                "exited with {status}: {}",
                String::from_utf8_lossy(&stderr).trim()
            ),
            String::new(),
        ),
    };
    Err(CniError::new(code, format!("IPAM plugin {name} ({command}): {msg}")).with_details(details))
}

/// The versions a plugin binary supports, from its VERSION answer (cached per binary
/// and modification time: a plugin is asked once, not on every call).
fn supported_versions(bin: &Path) -> Result<Vec<String>, CniError> {
    type Cache = parking_lot::Mutex<HashMap<(PathBuf, Option<SystemTime>), Vec<String>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let mtime = std::fs::metadata(bin).and_then(|m| m.modified()).ok();
    let key = (bin.to_path_buf(), mtime);
    let cache = CACHE.get_or_init(Default::default);
    if let Some(v) = cache.lock().get(&key) {
        return Ok(v.clone());
    }
    let reply = exec(
        bin,
        cni::Command::Version,
        &PluginEnv::default(),
        &serde_json::json!({ "cniVersion": cni::CURRENT_VERSION }),
    )?
    .unwrap_or(Value::Null);
    let versions: Vec<String> = reply["supportedVersions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    cache.lock().insert(key, versions.clone());
    Ok(versions)
}

/// The version to speak with `bin`: `wanted` if it supports it, else the newest one it
/// supports that is older (a plugin built for spec 1.0.0 still allocates for a 1.1.0
/// network); `None` when it supports nothing usable.
pub fn negotiate(bin: &Path, wanted: &str) -> Result<Option<String>, CniError> {
    let versions = supported_versions(bin)?;
    if versions.iter().any(|v| v == wanted) {
        return Ok(Some(wanted.to_string()));
    }
    Ok(versions
        .into_iter()
        .filter(|v| cni::version_at_least(wanted, v) && cni::version_at_least(v, "0.3.0"))
        .max_by_key(|v| cni::parse_version(v)))
}

/// The IPv4 address (with prefix length) a delegated plugin's ADD result assigns.
pub fn result_address(v: &Value) -> Result<(Ipv4Addr, u8, Option<Value>), String> {
    let r = CniResult::from_value(v)?;
    for ip in &r.ips {
        if let Some(a) = ip
            .address
            .parse::<vswitch_proto::net::IfAddr>()
            .ok()
            .and_then(|a| Some((a.ipv4()?, a.prefix)))
        {
            let dns = (!r.dns.is_empty()).then(|| Value::Object(r.dns.clone()));
            return Ok((a.0, a.1, dns));
        }
    }
    Err(format!("its result holds no IPv4 address: {v}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_rules() {
        let c = pod_cidr("10.244.1.0/24").unwrap();
        assert_eq!(pod_addresses(&c), 253);
        assert!(pod_cidr("10.244.1.5/24").unwrap_err().contains("host bits"));
        assert!(pod_cidr("fd00::/64").is_err());
        assert!(pod_cidr("10.0.0.0/31").is_err());
        assert!(pod_cidr("10.0.0.0").is_err());
    }

    #[test]
    fn an_address_asked_for_is_given_or_refused_with_the_reason() {
        let mut a = Allocator::new(pod_cidr("10.0.0.0/29").unwrap());
        assert_eq!(a.reserve(Ipv4Addr::new(10, 0, 0, 5)), Ok(()));
        assert_eq!(
            a.reserve(Ipv4Addr::new(10, 0, 0, 5)),
            Err(Unavailable::Taken(Ipv4Addr::new(10, 0, 0, 5)))
        );
        for (ip, what) in [
            (1, "gateway"),
            (0, "network address"),
            (7, "broadcast address"),
        ] {
            let e = a.reserve(Ipv4Addr::new(10, 0, 0, ip)).unwrap_err();
            assert!(e.to_string().contains(what), "{e}");
        }
        let e = a.reserve(Ipv4Addr::new(10, 0, 1, 2)).unwrap_err();
        assert!(
            e.to_string().contains("outside the Pod CIDR 10.0.0.0/29"),
            "{e}"
        );
        // The allocator goes around an address taken on request.
        let got: Vec<_> = std::iter::from_fn(|| a.allocate()).collect();
        assert_eq!(got.len(), 4);
        assert!(!got.contains(&Ipv4Addr::new(10, 0, 0, 5)));
    }

    #[test]
    fn allocator_skips_the_gateway_and_does_not_reuse_at_once() {
        let c = pod_cidr("10.0.0.0/29").unwrap(); // hosts .1-.6; .1 is the gateway
        let mut a = Allocator::new(c);
        let got: Vec<_> = std::iter::from_fn(|| a.allocate()).collect();
        assert_eq!(got.len(), 5);
        assert_eq!(got[0], Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(got[4], Ipv4Addr::new(10, 0, 0, 6));
        assert_eq!(a.free(), 0);
        a.release(Ipv4Addr::new(10, 0, 0, 3));
        assert_eq!(a.allocate(), Some(Ipv4Addr::new(10, 0, 0, 3)));
        a.release(Ipv4Addr::new(10, 0, 0, 4));
        a.release(Ipv4Addr::new(10, 0, 0, 2));
        // The search goes on after the last address handed out.
        assert_eq!(a.allocate(), Some(Ipv4Addr::new(10, 0, 0, 4)));
        assert_eq!(a.allocate(), Some(Ipv4Addr::new(10, 0, 0, 2)));
        assert_eq!(a.allocate(), None);
    }

    #[test]
    fn delegated_result_addresses() {
        let v = serde_json::json!({"cniVersion":"1.0.0","ips":[{"address":"10.244.1.9/24","gateway":"10.244.1.1"}],"dns":{}});
        assert_eq!(
            result_address(&v).unwrap(),
            (Ipv4Addr::new(10, 244, 1, 9), 24, None)
        );
        let v6 = serde_json::json!({"ips":[{"address":"fd00::5/64"}]});
        assert!(result_address(&v6).is_err());
    }
}
