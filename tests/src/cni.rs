//! What a container runtime does with a CNI network configuration list, emulated after
//! libcni 1.x (the library containerd and CRI-O use, through go-cni): for the end-to-end
//! tests and the CNI benchmark, so that plugins are driven the way kubelet's runtime drives
//! them.
//!
//! - [`exec_plugin`] runs one plugin binary: `CNI_*` variables in its environment, the
//!   request configuration on stdin, the result (or error) read from stdout, bounded in time
//!   (its whole process group is killed when the time is up).
//! - [`Conflist`] is a parsed `.conflist`; [`Conflist::request_config`] derives what one
//!   plugin of it receives on stdin (SPEC.md §3 "Deriving request configuration").
//! - [`Runtime`] runs a list: ADD through every plugin in order, each getting the previous
//!   one's result as `prevResult`; the final result cached per (network, container,
//!   interface) under `cache_dir/results/` and given back as `prevResult` to CHECK and DEL;
//!   DEL in reverse order; STATUS and GC as libcni 1.2 sends them.
//! - [`containerd_pod_ips`] is the check containerd's CRI makes of an ADD result before it
//!   calls the sandbox ready.
//!
//! Differences from libcni, on purpose: the runtime does not validate the container ID,
//! interface or network name itself (so tests can see what the plugin answers to bad
//! values), results are passed on as the plugin printed them (libcni parses and re-prints
//! them in their own version), and the cache file holds the list as JSON rather than
//! base64. Failures of the runtime itself (plugin not found, a result that is not JSON, a
//! time-out) are errors with code 0, as a plain Go error has no code.

use serde_json::{Map, Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use vswitch_proto::cni::{Attachment, CniError, CniResult, parse_version, version_at_least};

/// The newest spec version the emulated libcni knows: a list's `cniVersions` above it are
/// skipped.
pub const LIBCNI_VERSION: &str = "1.1.0";

/// How long a plugin may run when the runtime is not told otherwise.
pub const DEFAULT_PLUGIN_TIMEOUT: Duration = Duration::from_secs(60);

/// The `CNI_*` parameters of one call (`CNI_COMMAND` aside). Every variable is set, empty
/// when empty, as libcni sets them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CniEnv {
    pub container_id: String,
    /// `CNI_NETNS`: `/var/run/netns/NAME`, or empty (DEL of a namespace that is gone).
    pub netns: String,
    pub ifname: String,
    /// `CNI_ARGS`: `K=V;K=V`.
    pub args: String,
    /// `CNI_PATH`: `:`-separated directories. [`Runtime`] sets it from its `cni_path`.
    pub path: String,
}

impl CniEnv {
    /// The parameters of an attachment, with no `CNI_ARGS` and no `CNI_PATH`.
    pub fn new(container_id: &str, netns: &str, ifname: &str) -> CniEnv {
        CniEnv {
            container_id: container_id.to_string(),
            netns: netns.to_string(),
            ifname: ifname.to_string(),
            ..CniEnv::default()
        }
    }

    /// The same with `CNI_ARGS` set (containerd's are
    /// `IgnoreUnknown=1;K8S_POD_NAMESPACE=..;K8S_POD_NAME=..;K8S_POD_INFRA_CONTAINER_ID=..;K8S_POD_UID=..`).
    pub fn with_args(mut self, args: &str) -> CniEnv {
        self.args = args.to_string();
        self
    }
}

/// What one plugin run left.
#[derive(Clone, Debug)]
pub struct PluginOutput {
    /// The exit status; `None` when a signal ended it (a time-out among others).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// stdout parsed, when it is JSON.
    pub json: Option<Value>,
    /// From just before the start to the end of its output, as the runtime waits for it.
    pub duration: Duration,
    /// The time was up and the plugin's process group was killed.
    pub timed_out: bool,
}

impl PluginOutput {
    pub fn success(&self) -> bool {
        self.code == Some(0) && !self.timed_out
    }

    /// The error the runtime reads from a failed run (libcni `pluginErr`): the error JSON on
    /// stdout, else stderr's text, else the exit status. `None` when the run succeeded.
    pub fn error(&self) -> Option<CniError> {
        if self.success() {
            return None;
        }
        if self.timed_out {
            return Some(CniError::new(
                0,
                format!("plugin did not finish within {:?}: killed", self.duration),
            ));
        }
        let status = match self.code {
            Some(c) => format!("exit status {c}"),
            None => "signal: killed".to_string(),
        };
        if self.stdout.trim().is_empty() {
            let msg = if self.stderr.is_empty() {
                format!("netplugin failed with no error message: {status}")
            } else {
                format!("netplugin failed: {:?}", self.stderr)
            };
            return Some(CniError::new(0, msg));
        }
        Some(match &self.json {
            Some(Value::Object(e)) => {
                let text = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or_default();
                let code = e.get("code").and_then(Value::as_u64).unwrap_or(0);
                CniError::new(u32::try_from(code).unwrap_or(0), text("msg"))
                    .with_details(text("details"))
            }
            _ => CniError::new(
                0,
                format!(
                    "netplugin failed but error parsing its diagnostic message {:?}",
                    self.stdout
                ),
            ),
        })
    }
}

/// Linux's "text file busy": a plugin written a moment ago is still open in a child some
/// other thread forked and has not exec'd yet.
const ETXTBSY: i32 = 26;

/// Runs `plugin` for `command` (`ADD`, `DEL`, `CHECK`, `STATUS`, `GC`, `VERSION`, or
/// anything else, for tests), `stdin` as its configuration, in the caller's network
/// namespace. Its environment is the caller's, less any `CNI_*` variable, plus the six
/// `CNI_*` parameters. After `timeout` its process group (the plugin and what it started,
/// a delegated IPAM plugin for one) is killed.
pub fn exec_plugin(
    plugin: &Path,
    command: &str,
    env: &CniEnv,
    stdin: &Value,
    timeout: Duration,
) -> PluginOutput {
    let bytes = serde_json::to_vec(stdin).expect("a JSON value serialises");
    exec_plugin_raw(plugin, command, env, &bytes, timeout)
}

/// [`exec_plugin`] with stdin as bytes, which need not be JSON.
pub fn exec_plugin_raw(
    plugin: &Path,
    command: &str,
    env: &CniEnv,
    stdin: &[u8],
    timeout: Duration,
) -> PluginOutput {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(plugin);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("CNI_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", &env.container_id)
        .env("CNI_NETNS", &env.netns)
        .env("CNI_ARGS", &env.args)
        .env("CNI_IFNAME", &env.ifname)
        .env("CNI_PATH", &env.path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let start = Instant::now();
    let mut child = {
        let mut tries = 0;
        loop {
            match cmd.spawn() {
                Err(e) if e.raw_os_error() == Some(ETXTBSY) && tries < 50 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(10));
                }
                other => {
                    break other.unwrap_or_else(|e| panic!("cannot run {}: {e}", plugin.display()));
                }
            }
        }
    };
    let pgid = child.id();
    let mut input = child.stdin.take().expect("a piped stdin");
    let stdin = stdin.to_vec();
    // A plugin that reads no stdin gets EPIPE here, not a hang.
    std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let (waited, timed_out) = match rx.recv_timeout(timeout) {
        Ok(out) => (Some(out), false),
        Err(_) => {
            // The child is not reaped yet (the waiter owns it), so the group id is still ours.
            let _ = crate::e2e::run("kill", &["-s", "KILL", "--", &format!("-{pgid}")]);
            (rx.recv_timeout(Duration::from_secs(5)).ok(), true)
        }
    };
    let duration = start.elapsed();
    let out = waited.map(|r| r.unwrap_or_else(|e| panic!("waiting for {}: {e}", plugin.display())));
    let (code, stdout, stderr) = match out {
        Some(o) => (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        ),
        None => (None, String::new(), String::new()),
    };
    let json = serde_json::from_str(stdout.trim()).ok();
    PluginOutput {
        code,
        stdout,
        stderr,
        json,
        duration,
        timed_out,
    }
}

// ---- the network configuration list ---------------------------------------------------

/// A network configuration list (`.conflist`).
#[derive(Clone, Debug, PartialEq)]
pub struct Conflist {
    pub name: String,
    /// The version selected for the list: the highest of `cniVersions` the runtime knows,
    /// else `cniVersion` (empty when it has neither, as libcni leaves it).
    pub cni_version: String,
    pub disable_check: bool,
    pub disable_gc: bool,
    /// Each plugin's configuration as written.
    pub plugins: Vec<Map<String, Value>>,
    /// The whole list as written.
    pub raw: Value,
}

fn runtime_err(msg: impl Into<String>) -> CniError {
    CniError::new(0, msg)
}

/// The version libcni selects: the highest of `versions` not above [`LIBCNI_VERSION`], or
/// `fallback` when there is none.
pub fn select_version(fallback: &str, versions: &[&str]) -> String {
    let newest = parse_version(LIBCNI_VERSION);
    versions
        .iter()
        .filter_map(|v| parse_version(v).map(|n| (n, *v)))
        .filter(|(n, _)| Some(*n) <= newest)
        .max()
        .map_or_else(|| fallback.to_string(), |(_, v)| v.to_string())
}

impl Conflist {
    /// Parses a list as libcni's `ConfListFromBytes` does.
    pub fn parse(text: &str) -> Result<Conflist, String> {
        let raw: Value = serde_json::from_str(text)
            .map_err(|e| format!("error parsing configuration list: {e}"))?;
        Conflist::from_value(raw)
    }

    pub fn from_value(raw: Value) -> Result<Conflist, String> {
        let obj = raw
            .as_object()
            .ok_or("error parsing configuration list: not a JSON object")?;
        let name = obj
            .get("name")
            .and_then(Value::as_str)
            .ok_or("error parsing configuration list: no name")?
            .to_string();
        let fallback = match obj.get("cniVersion") {
            None => "",
            Some(v) => v.as_str().ok_or(format!(
                "error parsing configuration list: invalid cniVersion {v}"
            ))?,
        };
        let versions: Vec<&str> = match obj.get("cniVersions") {
            None => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| v.as_str().ok_or(format!("invalid cniVersions entry {v}")))
                .collect::<Result<_, _>>()?,
            Some(v) => return Err(format!("error parsing configuration list: cniVersions {v}")),
        };
        let flag = |k: &str| match obj.get(k) {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
            _ => false,
        };
        let plugins = obj
            .get("plugins")
            .ok_or("error parsing configuration list: no 'plugins' key")?
            .as_array()
            .ok_or("error parsing configuration list: 'plugins' is not a list")?;
        if plugins.is_empty() {
            return Err("error parsing configuration list: no plugins in list".into());
        }
        let plugins = plugins
            .iter()
            .map(|p| match p {
                Value::Object(m)
                    if m.get("type")
                        .and_then(Value::as_str)
                        .is_some_and(|t| !t.is_empty()) =>
                {
                    Ok(m.clone())
                }
                _ => Err(format!(
                    "error parsing configuration: missing 'type' in {p}"
                )),
            })
            .collect::<Result<_, _>>()?;
        Ok(Conflist {
            cni_version: select_version(fallback, &versions),
            disable_check: flag("disableCheck"),
            disable_gc: flag("disableGC"),
            name,
            plugins,
            raw,
        })
    }

    /// The `type` of plugin `index`.
    pub fn plugin_type(&self, index: usize) -> &str {
        self.plugins[index]["type"].as_str().unwrap_or_default()
    }

    /// What plugin `index` receives on stdin for ADD, CHECK and DEL: its configuration with
    /// the list's `cniVersion` and `name`, `runtimeConfig` = the capabilities it declares
    /// (`"capabilities": {"portMappings": true}`) that `capability_args` holds (absent when
    /// none), `capabilities` removed, and `prevResult` when given.
    pub fn request_config(
        &self,
        index: usize,
        prev_result: Option<&Value>,
        capability_args: Option<&Value>,
    ) -> Value {
        let mut conf = self.plugins[index].clone();
        let runtime: Map<String, Value> = match (conf.remove("capabilities"), capability_args) {
            (Some(Value::Object(caps)), Some(Value::Object(args))) => caps
                .iter()
                .filter(|(_, on)| **on == Value::Bool(true))
                .filter_map(|(k, _)| args.get(k).map(|v| (k.clone(), v.clone())))
                .collect(),
            _ => Map::new(),
        };
        conf.insert("cniVersion".into(), self.cni_version.clone().into());
        conf.insert("name".into(), self.name.clone().into());
        if !runtime.is_empty() {
            conf.insert("runtimeConfig".into(), Value::Object(runtime));
        }
        if let Some(prev) = prev_result {
            conf.insert("prevResult".into(), prev.clone());
        }
        Value::Object(conf)
    }

    /// What plugin `index` receives for STATUS and GC (libcni 1.2): its configuration with
    /// `cniVersion`, `name` and `extra` put in, and nothing taken out.
    pub fn plain_config(&self, index: usize, extra: &[(&str, Value)]) -> Value {
        let mut conf = self.plugins[index].clone();
        conf.insert("cniVersion".into(), self.cni_version.clone().into());
        conf.insert("name".into(), self.name.clone().into());
        for (k, v) in extra {
            conf.insert((*k).to_string(), v.clone());
        }
        Value::Object(conf)
    }
}

/// The pod addresses containerd takes from an ADD result (go-cni `createResult`, CRI
/// `setupPodNetwork`): each `ips[]` entry belongs to `interfaces[ips.interface]`, or to the
/// default interface `ifname` when it names none; the sandbox fails ("failed to find network
/// info for sandbox") unless `ifname` ends up with at least one address.
pub fn containerd_pod_ips(result: &Value, ifname: &str) -> Result<Vec<String>, String> {
    let names: Vec<&str> = result["interfaces"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|i| i["name"].as_str().unwrap_or_default())
                .collect()
        })
        .unwrap_or_default();
    let mut ips = Vec::new();
    for ip in result["ips"].as_array().into_iter().flatten() {
        let owner = match ip.get("interface").and_then(Value::as_u64) {
            None => ifname,
            Some(i) => *names.get(i as usize).ok_or_else(|| {
                format!(
                    "invalid interface config: ips entry {ip} names interface {i}, and the \
                     result has {}",
                    names.len()
                )
            })?,
        };
        if owner == ifname {
            let addr = ip["address"].as_str().unwrap_or_default();
            ips.push(addr.split('/').next().unwrap_or_default().to_string());
        }
    }
    if ips.is_empty() {
        return Err(format!(
            "failed to find network info for sandbox: no address on {ifname} in {result}"
        ));
    }
    Ok(ips)
}

// ---- the runtime ----------------------------------------------------------------------

/// One plugin run, as [`Runtime::calls`] reports it.
#[derive(Clone, Debug)]
pub struct Invocation {
    pub plugin: String,
    pub command: String,
    pub env: CniEnv,
    /// What the plugin got on stdin.
    pub config: Value,
    pub output: PluginOutput,
}

/// A container runtime's CNI side: where plugins are found, where results are cached.
#[derive(Debug)]
pub struct Runtime {
    /// Directories searched for plugins, in order; also the plugins' `CNI_PATH`.
    pub cni_path: Vec<PathBuf>,
    /// Results are cached in `cache_dir/results/` (libcni: `/var/lib/cni`).
    pub cache_dir: PathBuf,
    /// How long one plugin may run.
    pub timeout: Duration,
    calls: Mutex<Vec<Invocation>>,
}

/// One attachment in the result cache.
#[derive(Clone, Debug, PartialEq)]
pub struct CachedAttachment {
    pub network: String,
    pub env: CniEnv,
    pub capability_args: Option<Value>,
    pub result: Option<Value>,
}

impl Runtime {
    pub fn new(cni_path: Vec<PathBuf>, cache_dir: impl Into<PathBuf>) -> Runtime {
        Runtime {
            cni_path,
            cache_dir: cache_dir.into(),
            timeout: DEFAULT_PLUGIN_TIMEOUT,
            calls: Mutex::new(Vec::new()),
        }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Runtime {
        self.timeout = timeout;
        self
    }

    /// Every plugin run so far, oldest first.
    pub fn calls(&self) -> Vec<Invocation> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The first `cni_path` directory holding a file named `plugin_type`.
    pub fn find_plugin(&self, plugin_type: &str) -> Result<PathBuf, CniError> {
        self.cni_path
            .iter()
            .map(|d| d.join(plugin_type))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                runtime_err(format!(
                    "failed to find plugin {plugin_type:?} in path {:?}",
                    self.cni_path
                ))
            })
    }

    fn path_var(&self) -> String {
        let dirs: Vec<String> = self
            .cni_path
            .iter()
            .map(|d| d.to_string_lossy().into_owned())
            .collect();
        dirs.join(":")
    }

    /// Runs plugin `index` of `list`; its output when it succeeded, its error otherwise.
    fn invoke(
        &self,
        list: &Conflist,
        index: usize,
        command: &str,
        env: &CniEnv,
        config: Value,
    ) -> Result<PluginOutput, CniError> {
        let plugin = list.plugin_type(index);
        let path = self.find_plugin(plugin)?;
        let env = CniEnv {
            path: self.path_var(),
            ..env.clone()
        };
        let output = exec_plugin(&path, command, &env, &config, self.timeout);
        let err = output.error();
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Invocation {
                plugin: plugin.to_string(),
                command: command.to_string(),
                env,
                config,
                output: output.clone(),
            });
        match err {
            None => Ok(output),
            Some(e) => Err(e),
        }
    }

    /// ADD through every plugin in order, each given the previous one's result; the final
    /// result is cached and returned. The first failure is returned as it is (the runtime
    /// then still owes a DEL, as containerd does when the sandbox fails).
    pub fn add(
        &self,
        list: &Conflist,
        env: &CniEnv,
        capability_args: Option<&Value>,
    ) -> Result<Value, CniError> {
        let mut prev: Option<Value> = None;
        for i in 0..list.plugins.len() {
            let conf = list.request_config(i, prev.as_ref(), capability_args);
            let out = self.invoke(list, i, "ADD", env, conf)?;
            match out.json {
                Some(v @ Value::Object(_)) => prev = Some(v),
                _ => {
                    return Err(runtime_err(format!(
                        "plugin {} failed (add): its result is not a JSON object: {:?}",
                        list.plugin_type(i),
                        out.stdout
                    )));
                }
            }
        }
        let result = prev.expect("a list has at least one plugin");
        self.cache_write(list, env, capability_args, &result)?;
        Ok(result)
    }

    /// CHECK (configuration 0.4.0 or later, unless `disableCheck`): every plugin in order,
    /// each given the cached ADD result as `prevResult`.
    pub fn check(
        &self,
        list: &Conflist,
        env: &CniEnv,
        capability_args: Option<&Value>,
    ) -> Result<(), CniError> {
        if !version_at_least(&list.cni_version, "0.4.0") {
            return Err(runtime_err(format!(
                "configuration version {:?} does not support the CHECK command",
                list.cni_version
            )));
        }
        if list.disable_check {
            return Ok(());
        }
        let cached = self.cached_result(list, env)?;
        for i in 0..list.plugins.len() {
            let conf = list.request_config(i, cached.as_ref(), capability_args);
            self.invoke(list, i, "CHECK", env, conf)?;
        }
        Ok(())
    }

    /// DEL through every plugin in reverse order, each given the cached ADD result (from
    /// configuration 0.4.0 on); the cache entry is removed once all succeeded.
    pub fn del(
        &self,
        list: &Conflist,
        env: &CniEnv,
        capability_args: Option<&Value>,
    ) -> Result<(), CniError> {
        let cached = if version_at_least(&list.cni_version, "0.4.0") {
            self.cached_result(list, env)?
        } else {
            None
        };
        for i in (0..list.plugins.len()).rev() {
            let conf = list.request_config(i, cached.as_ref(), capability_args);
            self.invoke(list, i, "DEL", env, conf)?;
        }
        let _ = std::fs::remove_file(self.cache_file(&list.name, env));
        Ok(())
    }

    /// STATUS to every plugin in order (configuration 1.1.0 or later; earlier ones are
    /// taken as ready); the first error.
    pub fn status(&self, list: &Conflist) -> Result<(), CniError> {
        if !version_at_least(&list.cni_version, "1.1.0") {
            return Ok(());
        }
        for i in 0..list.plugins.len() {
            self.invoke(
                list,
                i,
                "STATUS",
                &CniEnv::default(),
                list.plain_config(i, &[]),
            )?;
        }
        Ok(())
    }

    /// GC as libcni 1.2 does it: DEL of every cached attachment of this network that is not
    /// in `valid`, then (configuration 1.1.0 or later) GC to every plugin with the valid
    /// list under `cni.dev/valid-attachments` and the spec 1.1.0 text's
    /// `cni.dev/attachments`. Goes on after errors and returns them all.
    pub fn gc(&self, list: &Conflist, valid: &[Attachment]) -> Result<(), Vec<CniError>> {
        if list.disable_gc {
            return Ok(());
        }
        let mut errors = Vec::new();
        for stale in self.cached_attachments() {
            let keep = valid
                .iter()
                .any(|a| a.container_id == stale.env.container_id && a.ifname == stale.env.ifname);
            if stale.network != list.name || keep {
                continue;
            }
            if let Err(e) = self.del(list, &stale.env, stale.capability_args.as_ref()) {
                errors.push(e);
            }
        }
        if version_at_least(&list.cni_version, "1.1.0") {
            let valid = serde_json::to_value(valid).expect("attachments serialise");
            let extra = [
                ("cni.dev/valid-attachments", valid.clone()),
                ("cni.dev/attachments", valid),
            ];
            for i in 0..list.plugins.len() {
                let conf = list.plain_config(i, &extra);
                if let Err(e) = self.invoke(list, i, "GC", &CniEnv::default(), conf) {
                    errors.push(e);
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// `cache_dir/results/NETWORK-CONTAINERID-IFNAME`, libcni's cache file.
    pub fn cache_file(&self, network: &str, env: &CniEnv) -> PathBuf {
        self.cache_dir
            .join("results")
            .join(format!("{network}-{}-{}", env.container_id, env.ifname))
    }

    fn cache_write(
        &self,
        list: &Conflist,
        env: &CniEnv,
        capability_args: Option<&Value>,
        result: &Value,
    ) -> Result<(), CniError> {
        let args: Vec<Value> = env
            .args
            .split(';')
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| json!([k, v]))
            .collect();
        let entry = json!({
            "kind": "cniCacheV1",
            "containerId": env.container_id,
            "ifName": env.ifname,
            "networkName": list.name,
            "netns": env.netns,
            "cniArgs": args,
            "capabilityArgs": capability_args,
            "config": list.raw,
            "result": result,
        });
        let file = self.cache_file(&list.name, env);
        let dir = file.parent().expect("the cache file is in results/");
        std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&file, entry.to_string()))
            .map_err(|e| {
                runtime_err(format!(
                    "failed to cache the result in {}: {e}",
                    file.display()
                ))
            })
    }

    fn read_cache_entry(file: &Path) -> Option<CachedAttachment> {
        let v: Value = serde_json::from_slice(&std::fs::read(file).ok()?).ok()?;
        let text = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        let args: Vec<String> = v["cniArgs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| Some(format!("{}={}", p[0].as_str()?, p[1].as_str()?)))
            .collect();
        Some(CachedAttachment {
            network: text("networkName"),
            env: CniEnv {
                container_id: text("containerId"),
                netns: text("netns"),
                ifname: text("ifName"),
                args: args.join(";"),
                path: String::new(),
            },
            capability_args: v.get("capabilityArgs").filter(|c| !c.is_null()).cloned(),
            result: v.get("result").filter(|r| !r.is_null()).cloned(),
        })
    }

    /// Every attachment in the cache, of any network.
    pub fn cached_attachments(&self) -> Vec<CachedAttachment> {
        let Ok(dir) = std::fs::read_dir(self.cache_dir.join("results")) else {
            return Vec::new();
        };
        let mut all: Vec<CachedAttachment> = dir
            .filter_map(|e| Runtime::read_cache_entry(&e.ok()?.path()))
            .collect();
        all.sort_by(|a, b| {
            (&a.env.container_id, &a.env.ifname).cmp(&(&b.env.container_id, &b.env.ifname))
        });
        all
    }

    /// The cached ADD result of an attachment in the list's version (converted when it was
    /// cached in another), or `None` when there is none.
    pub fn cached_result(&self, list: &Conflist, env: &CniEnv) -> Result<Option<Value>, CniError> {
        let file = self.cache_file(&list.name, env);
        let Some(result) = Runtime::read_cache_entry(&file).and_then(|c| c.result) else {
            return Ok(None);
        };
        if result["cniVersion"] == list.cni_version.as_str() {
            return Ok(Some(result));
        }
        CniResult::from_value(&result)
            .map(|r| Some(r.to_version(&list.cni_version)))
            .map_err(|e| {
                runtime_err(format!(
                    "failed to get network {:?} cached result: {e}",
                    list.name
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::e2e::unique;
    use std::os::unix::fs::PermissionsExt;

    fn list(text: &str) -> Conflist {
        Conflist::parse(text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    const CHAIN: &str = r#"{
        "cniVersion": "1.0.0", "name": "net1",
        "plugins": [
            {"type": "vswitch-cni", "socket": "/run/s.sock", "ipam": {"type": "host-local"},
             "capabilities": {"ips": true, "mac": false}},
            {"type": "bandwidth", "capabilities": {"bandwidth": true}},
            {"type": "tuning", "name": "mine", "cniVersion": "0.3.1", "sysctl": {"a": "1"}}
        ]}"#;

    #[test]
    fn request_config_inserts_name_version_and_prev_result() {
        let l = list(CHAIN);
        let prev = json!({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24"}]});
        let c = l.request_config(2, Some(&prev), None);
        assert_eq!(c["name"], "net1", "the list's name wins over the plugin's");
        assert_eq!(c["cniVersion"], "1.0.0");
        assert_eq!(c["type"], "tuning");
        assert_eq!(c["sysctl"], json!({"a": "1"}), "plugin keys pass through");
        assert_eq!(c["prevResult"], prev);
        assert!(c.get("runtimeConfig").is_none());
        let first = l.request_config(0, None, None);
        assert!(
            first.get("prevResult").is_none(),
            "the first plugin of an ADD has none"
        );
        assert_eq!(first["ipam"], json!({"type": "host-local"}));
        assert_eq!(first["socket"], "/run/s.sock");
    }

    #[test]
    fn runtime_config_is_the_declared_and_given_capabilities() {
        let l = list(CHAIN);
        let caps = json!({
            "ips": ["10.0.0.9/24"],
            "mac": "02:00:00:00:00:01",
            "bandwidth": {"ingressRate": 1000},
            "portMappings": []
        });
        let c = l.request_config(0, None, Some(&caps));
        // `mac` is declared false, `bandwidth` and `portMappings` not declared at all.
        assert_eq!(c["runtimeConfig"], json!({"ips": ["10.0.0.9/24"]}));
        assert!(c.get("capabilities").is_none(), "capabilities are removed");
        let c = l.request_config(1, None, Some(&caps));
        assert_eq!(
            c["runtimeConfig"],
            json!({"bandwidth": {"ingressRate": 1000}})
        );
        // Declared, but the runtime has nothing for it: no runtimeConfig at all.
        let c = l.request_config(1, None, Some(&json!({"ips": []})));
        assert!(c.get("runtimeConfig").is_none());
        assert!(c.get("capabilities").is_none());
    }

    #[test]
    fn status_and_gc_configs_keep_the_plugin_as_written() {
        let l = list(CHAIN);
        let v = json!([{"containerID": "c1", "ifname": "eth0"}]);
        let c = l.plain_config(0, &[("cni.dev/valid-attachments", v.clone())]);
        assert_eq!(c["cni.dev/valid-attachments"], v);
        assert_eq!(c["capabilities"], json!({"ips": true, "mac": false}));
        assert_eq!(c["name"], "net1");
    }

    #[test]
    fn version_selection_takes_the_highest_known() {
        assert_eq!(select_version("0.4.0", &[]), "0.4.0");
        assert_eq!(
            select_version("0.4.0", &["1.0.0", "0.3.1", "1.1.0"]),
            "1.1.0"
        );
        assert_eq!(select_version("0.4.0", &["1.0.0", "2.0.0"]), "1.0.0");
        assert_eq!(select_version("0.4.0", &["9.9.9", "bogus"]), "0.4.0");
        let l = list(
            r#"{"cniVersion":"0.4.0","cniVersions":["1.0.0","1.1.0","1.2.0"],
                         "name":"n","plugins":[{"type":"x"}]}"#,
        );
        assert_eq!(l.cni_version, "1.1.0");
        assert_eq!(l.request_config(0, None, None)["cniVersion"], "1.1.0");
    }

    #[test]
    fn bad_lists_are_refused() {
        for (text, want) in [
            ("[]", "not a JSON object"),
            (
                r#"{"cniVersion":"1.0.0","plugins":[{"type":"x"}]}"#,
                "no name",
            ),
            (r#"{"name":"n","cniVersion":"1.0.0"}"#, "no 'plugins' key"),
            (r#"{"name":"n","plugins":[]}"#, "no plugins in list"),
            (r#"{"name":"n","plugins":[{"ipam":{}}]}"#, "missing 'type'"),
            (
                r#"{"name":"n","cniVersion":1,"plugins":[{"type":"x"}]}"#,
                "invalid cniVersion",
            ),
            ("{", "error parsing"),
        ] {
            let e = Conflist::parse(text).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
        let l =
            list(r#"{"name":"n","disableCheck":true,"disableGC":"true","plugins":[{"type":"x"}]}"#);
        assert!(l.disable_check && l.disable_gc);
        assert_eq!(
            l.cni_version, "",
            "no version: libcni passes an empty one on"
        );
    }

    #[test]
    fn containerd_needs_an_address_on_the_default_interface() {
        let ok = json!({"interfaces": [{"name": "veth1"}, {"name": "eth0", "sandbox": "/x"}],
                        "ips": [{"address": "10.0.0.2/24", "interface": 1},
                                {"address": "10.0.0.3/24", "interface": 0}]});
        assert_eq!(containerd_pod_ips(&ok, "eth0").unwrap(), ["10.0.0.2"]);
        // No index: the default interface's (an IPAM-style result).
        let bare = json!({"ips": [{"address": "fd00::2/64"}]});
        assert_eq!(containerd_pod_ips(&bare, "eth0").unwrap(), ["fd00::2"]);
        let host_only = json!({"interfaces": [{"name": "veth1"}],
                               "ips": [{"address": "10.0.0.2/24", "interface": 0}]});
        assert!(
            containerd_pod_ips(&host_only, "eth0")
                .unwrap_err()
                .contains("failed to find")
        );
        let out_of_range =
            json!({"interfaces": [], "ips": [{"address": "10.0.0.2/24", "interface": 0}]});
        assert!(containerd_pod_ips(&out_of_range, "eth0").is_err());
    }

    #[test]
    fn plugin_errors_read_as_libcni_reads_them() {
        let out = |code, stdout: &str, stderr: &str| PluginOutput {
            code,
            stdout: stdout.into(),
            stderr: stderr.into(),
            json: serde_json::from_str(stdout).ok(),
            duration: Duration::ZERO,
            timed_out: false,
        };
        assert!(out(Some(0), "", "").error().is_none());
        let e = out(Some(1), r#"{"code":11,"msg":"later","details":"d"}"#, "")
            .error()
            .unwrap();
        assert_eq!(
            (e.code, e.msg.as_str(), e.details.as_str()),
            (11, "later", "d")
        );
        let e = out(Some(2), "", "boom\n").error().unwrap();
        assert_eq!(
            (e.code, e.msg.as_str()),
            (0, r#"netplugin failed: "boom\n""#)
        );
        let e = out(None, "", "").error().unwrap();
        assert!(e.msg.contains("no error message: signal"), "{e}");
        let e = out(Some(1), "not json", "").error().unwrap();
        assert!(
            e.msg.contains("error parsing its diagnostic message"),
            "{e}"
        );
    }

    // ---- the runtime against shell-script plugins (no root needed) --------------------

    /// A directory of plugins written as shell scripts, removed on drop.
    struct Plugins {
        dir: PathBuf,
    }

    /// A plugin that logs `NAME COMMAND CONTAINERID IFNAME NETNS` to `log`, keeps its stdin
    /// as `NAME-COMMAND.json`, and on ADD prints a result with its own interface appended
    /// (the prevResult's interfaces, if any, are not kept: only a marker is needed).
    const SPY: &str = r#"#!/bin/sh
name=$(basename "$0")
dir=$(dirname "$0")
cat > "$dir/$name-$CNI_COMMAND.json"
echo "$name $CNI_COMMAND $CNI_CONTAINERID $CNI_IFNAME $CNI_NETNS path=$CNI_PATH" >> "$dir/log"
if [ "$CNI_COMMAND" = ADD ]; then
  printf '{"cniVersion":"1.0.0","interfaces":[{"name":"%s","sandbox":"%s"}],"ips":[{"address":"10.9.0.2/24","interface":0}],"by":"%s"}\n' "$CNI_IFNAME" "$CNI_NETNS" "$name"
fi
"#;

    impl Plugins {
        fn new() -> Plugins {
            let dir = std::env::temp_dir().join(unique("vsw-cni-unit"));
            std::fs::create_dir_all(&dir).unwrap();
            Plugins { dir }
        }

        fn add(&self, name: &str, script: &str) {
            let p = self.dir.join(name);
            std::fs::write(&p, script).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }

        fn runtime(&self) -> Runtime {
            Runtime::new(
                vec![self.dir.join("nothing-here"), self.dir.clone()],
                self.dir.join("cache"),
            )
            .with_timeout(Duration::from_secs(20))
        }

        fn log(&self) -> Vec<String> {
            std::fs::read_to_string(self.dir.join("log"))
                .unwrap_or_default()
                .lines()
                .map(|l| l.split(' ').take(2).collect::<Vec<_>>().join(" "))
                .collect()
        }

        fn stdin_of(&self, name: &str, command: &str) -> Value {
            let text =
                std::fs::read_to_string(self.dir.join(format!("{name}-{command}.json"))).unwrap();
            serde_json::from_str(&text).unwrap()
        }
    }

    impl Drop for Plugins {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    #[test]
    fn a_chain_runs_add_check_del_with_the_cached_result() {
        let p = Plugins::new();
        p.add("first", SPY);
        p.add("second", SPY);
        let rt = p.runtime();
        let l = list(
            r#"{"cniVersion":"1.0.0","name":"chain","plugins":[
                {"type":"first","capabilities":{"mac":true}},{"type":"second"}]}"#,
        );
        let env = CniEnv::new("ctr1", "/var/run/netns/p1", "eth0")
            .with_args("IgnoreUnknown=1;K8S_POD_NAME=a");
        let caps = json!({"mac": "02:00:00:00:00:09"});
        let result = rt.add(&l, &env, Some(&caps)).unwrap();
        assert_eq!(
            result["by"], "second",
            "the last plugin's result is the list's"
        );
        assert_eq!(containerd_pod_ips(&result, "eth0").unwrap(), ["10.9.0.2"]);
        let first = p.stdin_of("first", "ADD");
        assert!(first.get("prevResult").is_none());
        assert_eq!(first["runtimeConfig"], json!({"mac": "02:00:00:00:00:09"}));
        assert_eq!(p.stdin_of("second", "ADD")["prevResult"]["by"], "first");
        assert!(rt.cache_file("chain", &env).is_file());
        let cached = rt.cached_attachments();
        assert_eq!(cached.len(), 1);
        assert_eq!(cached[0].env.args, "IgnoreUnknown=1;K8S_POD_NAME=a");
        assert_eq!(cached[0].capability_args, Some(caps.clone()));

        rt.check(&l, &env, None).unwrap();
        assert_eq!(p.stdin_of("first", "CHECK")["prevResult"]["by"], "second");

        rt.del(&l, &env, Some(&caps)).unwrap();
        assert_eq!(p.stdin_of("first", "DEL")["prevResult"]["by"], "second");
        assert_eq!(
            p.log(),
            [
                "first ADD",
                "second ADD",
                "first CHECK",
                "second CHECK",
                "second DEL",
                "first DEL"
            ]
        );
        assert!(
            !rt.cache_file("chain", &env).exists(),
            "DEL removes the cache entry"
        );
        // Every call saw the runtime's CNI_PATH.
        let calls = rt.calls();
        assert_eq!(calls.len(), 6);
        assert!(
            calls
                .iter()
                .all(|c| c.env.path.ends_with(&*p.dir.to_string_lossy()))
        );
        // A second DEL has no cached result to give.
        rt.del(&l, &env, None).unwrap();
        assert!(p.stdin_of("first", "DEL").get("prevResult").is_none());
    }

    #[test]
    fn the_first_failure_stops_the_list_and_nothing_is_cached() {
        let p = Plugins::new();
        p.add("first", SPY);
        p.add(
            "broken",
            "#!/bin/sh\ncat >/dev/null\necho '{\"cniVersion\":\"1.0.0\",\"code\":7,\"msg\":\"bad config\"}'\nexit 1\n",
        );
        p.add("never", SPY);
        let rt = p.runtime();
        let l = list(
            r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"first"},{"type":"broken"},{"type":"never"}]}"#,
        );
        let env = CniEnv::new("c", "/x", "eth0");
        let e = rt.add(&l, &env, None).unwrap_err();
        assert_eq!((e.code, e.msg.as_str()), (7, "bad config"));
        assert_eq!(p.log(), ["first ADD"]);
        assert!(!rt.cache_file("n", &env).exists());
        let e = rt.del(&l, &env, None).unwrap_err();
        assert_eq!(e.code, 7);
        assert_eq!(
            p.log(),
            ["first ADD", "never DEL"],
            "DEL runs in reverse order and stops at the failing plugin"
        );
        let missing = list(r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"no-such"}]}"#);
        assert!(
            rt.add(&missing, &env, None)
                .unwrap_err()
                .msg
                .contains("failed to find plugin")
        );
    }

    #[test]
    fn check_needs_0_4_and_the_cache_is_converted_to_the_list_version() {
        let p = Plugins::new();
        p.add("spy", SPY);
        let rt = p.runtime();
        let old = list(r#"{"cniVersion":"0.3.1","name":"n","plugins":[{"type":"spy"}]}"#);
        let env = CniEnv::new("c", "/x", "eth0");
        rt.add(&old, &env, None).unwrap();
        assert!(
            rt.check(&old, &env, None)
                .unwrap_err()
                .msg
                .contains("does not support the CHECK")
        );
        // 0.3.1: DEL gets no prevResult.
        rt.del(&old, &env, None).unwrap();
        assert!(p.stdin_of("spy", "DEL").get("prevResult").is_none());
        // The spy answers 1.0.0; a 0.4.0 list reads the cached result back as 0.4.0.
        let l = list(r#"{"cniVersion":"0.4.0","name":"n","plugins":[{"type":"spy"}]}"#);
        rt.add(&l, &env, None).unwrap();
        rt.check(&l, &env, None).unwrap();
        let prev = &p.stdin_of("spy", "CHECK")["prevResult"];
        assert_eq!(prev["cniVersion"], "0.4.0");
        assert_eq!(prev["ips"][0]["version"], "4");
        let no_check = list(
            r#"{"cniVersion":"1.0.0","name":"n","disableCheck":true,"plugins":[{"type":"spy"}]}"#,
        );
        let before = rt.calls().len();
        rt.check(&no_check, &env, None).unwrap();
        assert_eq!(rt.calls().len(), before, "disableCheck: no plugin runs");
    }

    #[test]
    fn gc_deletes_stale_attachments_then_sends_the_valid_list() {
        let p = Plugins::new();
        p.add("spy", SPY);
        let rt = p.runtime();
        let l = list(r#"{"cniVersion":"1.1.0","name":"n","plugins":[{"type":"spy"}]}"#);
        let other = list(r#"{"cniVersion":"1.1.0","name":"other","plugins":[{"type":"spy"}]}"#);
        for c in ["keep", "stale"] {
            rt.add(&l, &CniEnv::new(c, "/x", "eth0"), None).unwrap();
        }
        rt.add(&other, &CniEnv::new("else", "/x", "eth0"), None)
            .unwrap();
        let valid = [Attachment {
            container_id: "keep".into(),
            ifname: "eth0".into(),
        }];
        rt.gc(&l, &valid).unwrap();
        let deleted: Vec<_> = rt
            .calls()
            .into_iter()
            .filter(|c| c.command == "DEL")
            .map(|c| c.env.container_id)
            .collect();
        assert_eq!(deleted, ["stale"]);
        let gc = p.stdin_of("spy", "GC");
        assert_eq!(
            gc["cni.dev/valid-attachments"],
            json!([{"containerID": "keep", "ifname": "eth0"}])
        );
        assert_eq!(gc["cni.dev/attachments"], gc["cni.dev/valid-attachments"]);
        let left: Vec<_> = rt
            .cached_attachments()
            .into_iter()
            .map(|c| c.env.container_id)
            .collect();
        assert_eq!(left, ["else", "keep"]);
        rt.status(&l).unwrap();
        assert_eq!(p.stdin_of("spy", "STATUS")["name"], "n");
    }

    #[test]
    fn a_plugin_that_hangs_is_killed_with_its_children() {
        let p = Plugins::new();
        // The sleep is a child of the plugin and holds stdout too: both must go.
        p.add("hang", "#!/bin/sh\nsleep 30\n");
        let t0 = Instant::now();
        let out = exec_plugin(
            &p.dir.join("hang"),
            "ADD",
            &CniEnv::new("c", "/x", "eth0"),
            &json!({}),
            Duration::from_millis(300),
        );
        assert!(out.timed_out && out.code.is_none(), "{out:?}");
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "took {:?}",
            t0.elapsed()
        );
        assert!(out.error().unwrap().msg.contains("did not finish"));
    }

    #[test]
    fn the_environment_is_the_cni_parameters_and_only_those() {
        let p = Plugins::new();
        p.add(
            "env",
            "#!/bin/sh\ncat >/dev/null\nenv | grep '^CNI_' | sort\n",
        );
        let env = CniEnv {
            path: "/opt/cni/bin".into(),
            ..CniEnv::new("c1", "", "eth1").with_args("A=1")
        };
        let out = exec_plugin_raw(
            &p.dir.join("env"),
            "DEL",
            &env,
            b"garbage",
            Duration::from_secs(20),
        );
        assert!(out.success(), "{out:?}");
        assert_eq!(
            out.stdout,
            "CNI_ARGS=A=1\nCNI_COMMAND=DEL\nCNI_CONTAINERID=c1\nCNI_IFNAME=eth1\nCNI_NETNS=\nCNI_PATH=/opt/cni/bin\n"
        );
        assert!(out.json.is_none());
    }
}
