//! The end-to-end harness: Pods as network namespaces, a `vswitchd` of the test's own in a
//! temporary directory, `vswitchctl`, and traffic generators that are always bounded in
//! time.
//!
//! Every guard cleans up when dropped, on panic too: a [`Netns`] deletes its namespace (and
//! with it the TAPs inside), a [`Daemon`] kills its process, deletes the TAPs of its ports
//! and removes its directory, a [`Bg`] stops its process. Declare the namespaces first and
//! the daemon and background processes after them, so that they go first.
//!
//! These tests need root. Run them with `scripts/test`, which builds the binaries first.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a `vswitchctl` call may take before the test calls the daemon stuck.
const CTL_TIMEOUT_SECS: &str = "10";
/// How long `vswitchd` gets to answer its first `version`.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long `vswitchd` gets to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A name no other test of this run, and no parallel run, uses: `PREFIX-<pid>-<n>`.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Serialises the traffic-heavy tests (the machine may have two cores). A test that
/// panicked while holding it does not stop the others.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A workspace binary, next to the test executable (`target/<profile>/deps/..`).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable lives in target/<profile>/deps");
    let path = dir.join(name);
    if !path.is_file() {
        panic!(
            "{} is missing: run `cargo build --workspace --bins` first (scripts/test does)",
            path.display()
        );
    }
    path
}

/// Panics unless the test runs as root and every tool it drives is installed: these tests
/// report a failure rather than pass without having run.
pub fn require_root(tools: &[&str]) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1).map(str::to_string));
    if euid.as_deref() != Some("0") {
        panic!("this test needs root and network namespaces: run scripts/test as root");
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for tool in tools {
        if !std::env::split_paths(&path).any(|d| d.join(tool).is_file()) {
            panic!("this test needs `{tool}` on PATH (apt-get install iproute2 iperf3 ethtool)");
        }
    }
}

/// Polls `cond` every 50 ms until it holds (true) or `timeout` passes (false).
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs a program to completion (callers bound anything that could hang with `timeout`).
pub fn run(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Output {
    let program = program.as_ref();
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.to_string_lossy()))
}

/// Like [`run`], and panics with its stderr unless it succeeded; returns its stdout.
pub fn run_ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    check_ok(&format!("{program} {}", args.join(" ")), &out)
}

fn check_ok(what: &str, out: &Output) -> String {
    if !out.status.success() {
        panic!(
            "`{what}` failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// stdout and stderr of a finished command, for assertion messages.
pub fn show(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).trim_end(),
        String::from_utf8_lossy(&out.stderr).trim_end()
    )
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn send_signal(pid: u32, sig: &str) {
    let _ = run("kill", &["-s", sig, &pid.to_string()]);
}

// ---- background processes ---------------------------------------------------------------

/// A process running in the background, its output collected. Dropping it stops it
/// (SIGTERM, then SIGKILL), so a `timeout` wrapper passes the signal on to its command.
#[derive(Debug)]
pub struct Bg {
    what: String,
    child: Option<Child>,
    out: Option<JoinHandle<Vec<u8>>>,
    err: Option<JoinHandle<Vec<u8>>>,
}

fn drain(r: Option<impl Read + Send + 'static>) -> Option<JoinHandle<Vec<u8>>> {
    r.map(|mut r| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    })
}

impl Bg {
    pub fn spawn(mut cmd: Command, what: &str) -> Bg {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{what}`: {e}"));
        let (out, err) = (drain(child.stdout.take()), drain(child.stderr.take()));
        Bg {
            what: what.to_string(),
            child: Some(child),
            out,
            err,
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Waits for the process to end by itself; panics if it is still running after
    /// `limit` (it is stopped first).
    pub fn finish(mut self, limit: Duration) -> Output {
        let mut child = self.child.take().expect("a running process");
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Ok(Some(status)) = child.try_wait() {
                break status;
            }
            if Instant::now() >= deadline {
                stop_child(&mut child);
                panic!("`{}` still ran after {limit:?}", self.what);
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let join =
            |h: Option<JoinHandle<Vec<u8>>>| h.and_then(|h| h.join().ok()).unwrap_or_default();
        Output {
            status,
            stdout: join(self.out.take()),
            stderr: join(self.err.take()),
        }
    }
}

fn stop_child(child: &mut Child) {
    if matches!(child.try_wait(), Ok(None)) {
        send_signal(child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(3);
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
    }
    let _ = child.wait();
}

impl Drop for Bg {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_child(&mut c);
        }
    }
}

// ---- namespaces ----------------------------------------------------------------------

/// A network namespace standing for a Pod, deleted on drop. Its loopback is up and IPv6
/// is off, so that the only packets on its interfaces are the ones a test sends.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

/// An interface as `ip link` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub name: String,
    pub ifindex: u64,
    pub mac: String,
    pub up: bool,
}

impl Netns {
    pub fn new() -> Netns {
        let name = unique("vsw-e2e");
        let out = run("ip", &["netns", "add", &name]);
        if !out.status.success() {
            // A namespace left by an earlier run that had this pid.
            let _ = run("ip", &["netns", "del", &name]);
            run_ok("ip", &["netns", "add", &name]);
        }
        let ns = Netns { name };
        ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
        ns.exec_ok(&[
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ]);
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// What `add-port --netns` takes.
    pub fn path(&self) -> String {
        format!("/var/run/netns/{}", self.name)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).args(args);
        c
    }

    /// Runs a command inside the namespace to completion.
    pub fn exec(&self, args: &[&str]) -> Output {
        self.command(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {args:?} in {}: {e}", self.name))
    }

    /// Like [`Netns::exec`], and panics with its stderr unless it succeeded.
    pub fn exec_ok(&self, args: &[&str]) -> String {
        let out = self.exec(args);
        check_ok(&format!("{} in {}", args.join(" "), self.name), &out)
    }

    /// Starts a command inside the namespace in the background.
    pub fn spawn(&self, args: &[&str]) -> Bg {
        Bg::spawn(
            self.command(args),
            &format!("{} in {}", args.join(" "), self.name),
        )
    }

    /// Every interface in the namespace.
    pub fn links(&self) -> Vec<Link> {
        let text = self.exec_ok(&["ip", "-j", "link", "show"]);
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("`ip -j link show` printed no JSON ({e}): {text}"));
        v.as_array()
            .map(|a| a.iter().map(link).collect())
            .unwrap_or_default()
    }

    /// The interface called `name`, if there is one.
    pub fn link(&self, name: &str) -> Option<Link> {
        self.links().into_iter().find(|l| l.name == name)
    }

    /// The `ethtool -k` features of an interface that are on.
    pub fn offloads_on(&self, ifname: &str) -> Vec<String> {
        self.exec_ok(&["ethtool", "-k", ifname])
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                v.trim().starts_with("on").then(|| k.trim().to_string())
            })
            .collect()
    }
}

impl Default for Netns {
    fn default() -> Netns {
        Netns::new()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "del", &self.name]);
    }
}

fn link(v: &Value) -> Link {
    Link {
        name: v["ifname"].as_str().unwrap_or_default().to_string(),
        ifindex: v["ifindex"].as_u64().unwrap_or_default(),
        mac: v["address"].as_str().unwrap_or_default().to_string(),
        up: v["flags"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == "UP")),
    }
}

/// A careless control client: it connects to `socket`, writes `bytes` without a newline,
/// then holds the connection until `go` is set (or the server closes it).
pub fn hog(socket: PathBuf, bytes: usize, go: Arc<AtomicBool>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let Ok(mut s) = UnixStream::connect(&socket) else {
            return;
        };
        let _ = s.set_write_timeout(Some(Duration::from_millis(200)));
        let chunk = vec![b'a'; 1 << 20];
        let mut left = bytes;
        while left > 0 && !go.load(Ordering::Acquire) {
            match s.write(&chunk[..left.min(chunk.len())]) {
                Ok(n) => left -= n,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return,
            }
        }
        while !go.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(50));
        }
    })
}

// ---- the daemon ------------------------------------------------------------------------

/// A `vswitchd` with its own socket, state directory and log file in a temporary
/// directory (removed on drop). `start` waits until it answers.
#[derive(Debug)]
pub struct Daemon {
    dir: PathBuf,
    child: Option<Child>,
    /// The network namespace it runs in (its gateway port lives there), if not the host's.
    netns: Option<String>,
    /// More flags (`--pod-cidr ...`).
    extra: Vec<String>,
}

impl Daemon {
    /// A new directory and a daemon running in it.
    pub fn start() -> Daemon {
        let mut d = Daemon::new();
        d.launch();
        d
    }

    /// The directory only; nothing runs yet ([`Daemon::restart`] starts it).
    pub fn new() -> Daemon {
        let dir = std::env::temp_dir().join(unique("vsw-e2e"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        // Other users must reach the socket's directory for the permission tests.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", dir.display()));
        Daemon {
            dir,
            child: None,
            netns: None,
            extra: Vec::new(),
        }
    }

    /// A daemon running inside `node` (a namespace standing for the node) with `extra`
    /// flags, e.g. `["--pod-cidr", "10.244.1.0/24"]`.
    pub fn start_in(node: &Netns, extra: &[&str]) -> Daemon {
        let mut d = Daemon::new_in(node, extra);
        d.launch();
        d
    }

    /// Like [`Daemon::start_in`], without starting it yet (to prepare its state first;
    /// [`Daemon::restart`] starts it).
    pub fn new_in(node: &Netns, extra: &[&str]) -> Daemon {
        let mut d = Daemon::new();
        d.netns = Some(node.path());
        d.extra = extra.iter().map(|s| s.to_string()).collect();
        d
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("vswitchd.sock")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    pub fn state_file(&self) -> PathBuf {
        self.state_dir().join("state.json")
    }

    /// The journal of changes made since `state.json` was last written.
    pub fn journal_file(&self) -> PathBuf {
        self.state_dir().join("state.journal")
    }

    /// Make every change fail to be saved until the guard goes (a directory stands where
    /// the journal is; the journal is put back after).
    pub fn block_saves(&self) -> SaveBlock {
        let journal = self.journal_file();
        let aside = self.state_dir().join("state.journal.aside");
        if journal.exists() {
            std::fs::rename(&journal, &aside).expect("move the journal aside");
        }
        std::fs::create_dir(&journal).expect("block the journal");
        SaveBlock { journal, aside }
    }

    /// The ports as saved: those of `state.json`, with the journal's changes replayed.
    pub fn saved_ports(&self) -> Vec<Value> {
        let mut ports = std::collections::BTreeMap::new();
        if let Some(state) = std::fs::read_to_string(self.state_file())
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        {
            for p in state["ports"].as_array().into_iter().flatten() {
                ports.insert(p["no"].as_u64().unwrap_or(0), p.clone());
            }
        }
        let journal = std::fs::read_to_string(self.journal_file()).unwrap_or_default();
        for line in journal.lines() {
            let Ok(entry) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            for op in entry["ops"].as_array().into_iter().flatten() {
                if op["c"] != "port" {
                    continue;
                }
                let no = op["no"].as_u64().unwrap_or(0);
                match &op["v"] {
                    Value::Null => ports.remove(&no),
                    v => ports.insert(no, v.clone()),
                };
            }
        }
        ports.into_values().collect()
    }

    pub fn log_file(&self) -> PathBuf {
        self.dir.join("vswitchd.log")
    }

    fn stderr_file(&self) -> PathBuf {
        self.dir.join("vswitchd.stderr")
    }

    /// `vswitchd` with this daemon's flags, after `prefix` (e.g. a `timeout` wrapper).
    fn command(&self, prefix: &[&str]) -> Command {
        let vswitchd = bin("vswitchd");
        let nsenter = self.netns.as_ref().map(|p| format!("--net={p}"));
        let mut prefix = prefix.to_vec();
        if let Some(n) = &nsenter {
            prefix.extend(["nsenter", n.as_str()]);
        }
        let mut c = match prefix.split_first() {
            Some((p, rest)) => {
                let mut c = Command::new(p);
                c.args(rest).arg(vswitchd);
                c
            }
            None => Command::new(vswitchd),
        };
        c.arg("--socket")
            .arg(self.socket())
            .arg("--state-dir")
            .arg(self.state_dir())
            .args(["--workers", "2", "--log-level", "info", "--log-file"])
            .arg(self.log_file())
            .args(&self.extra)
            .stdin(Stdio::null());
        c
    }

    fn launch(&mut self) {
        assert!(self.child.is_none(), "vswitchd is already running");
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.stderr_file())
            .expect("the daemon's stderr file");
        let child = self
            .command(&[])
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start vswitchd: {e}"));
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                panic!(
                    "vswitchd exited ({status}) before answering on {}\n{}",
                    self.socket().display(),
                    self.diagnostics()
                );
            }
            if self.ctl_timeout("1", &["version"]).status.success() {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "vswitchd did not answer `vswitchctl version` within {START_TIMEOUT:?}\n{}",
                    self.diagnostics()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The daemon's stderr and the tail of its log, for failure messages.
    pub fn diagnostics(&self) -> String {
        let stderr = std::fs::read_to_string(self.stderr_file()).unwrap_or_default();
        format!(
            "vswitchd stderr:\n{}\nlast lines of {}:\n{}",
            stderr.trim_end(),
            self.log_file().display(),
            self.log_tail(20)
        )
    }

    pub fn log_tail(&self, n: usize) -> String {
        let log = std::fs::read_to_string(self.log_file()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("vswitchd is running").id()
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Sends a signal (`HUP`, `TERM`...) to the daemon.
    pub fn signal(&self, sig: &str) {
        send_signal(self.pid(), sig);
    }

    /// SIGKILL, and reap it.
    pub fn kill9(&mut self) {
        let mut c = self.child.take().expect("vswitchd is running");
        c.kill().expect("SIGKILL vswitchd");
        let _ = c.wait();
    }

    /// Starts the daemon again with the same socket, state directory and log file.
    pub fn restart(&mut self) {
        self.launch();
    }

    /// SIGTERM, and its exit status (panics if it does not exit in time).
    pub fn stop(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("vswitchd is running");
        send_signal(c.id(), "TERM");
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!(
                    "vswitchd did not exit within {STOP_TIMEOUT:?} of SIGTERM\n{}",
                    self.diagnostics()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs a second `vswitchd` with this daemon's flags in the foreground, for starts
    /// that are expected to fail; `timeout` stops it (exit 124) if it serves instead.
    pub fn run_foreground(&self) -> Output {
        self.command(&["timeout", "-s", "KILL", "10"])
            .output()
            .expect("run vswitchd")
    }

    fn ctl_timeout(&self, timeout: &str, args: &[&str]) -> Output {
        Command::new(bin("vswitchctl"))
            .arg("--socket")
            .arg(self.socket())
            .args(["--timeout", timeout])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run vswitchctl")
    }

    /// `vswitchctl --socket SOCKET ARGS...`.
    pub fn ctl(&self, args: &[&str]) -> Output {
        self.ctl_timeout(CTL_TIMEOUT_SECS, args)
    }

    /// Like [`Daemon::ctl`], panicking with the message unless it succeeded; its stdout.
    pub fn ctl_ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        if !out.status.success() {
            panic!(
                "`vswitchctl {}` failed: {}\n{}",
                args.join(" "),
                show(&out),
                self.log_tail(10)
            );
        }
        stdout(&out)
    }

    /// `vswitchctl --json ARGS...`, parsed.
    pub fn ctl_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let text = self.ctl_ok(&all);
        serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!(
                "`vswitchctl {}` printed no JSON ({e}): {text}",
                all.join(" ")
            )
        })
    }

    /// `vswitchctl` run as the user `nobody`, from a copy of the binary in this daemon's
    /// directory (the build directory may be closed to other users).
    pub fn ctl_as_nobody(&self, args: &[&str]) -> Output {
        let copy = self.dir.join("vswitchctl");
        if !copy.exists() {
            std::fs::copy(bin("vswitchctl"), &copy).expect("copy vswitchctl");
            std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755))
                .expect("chmod vswitchctl");
        }
        let socket = self.socket();
        let mut all = vec![
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            copy.to_str().expect("a UTF-8 path"),
            "--socket",
            socket.to_str().expect("a UTF-8 path"),
            "--timeout",
            CTL_TIMEOUT_SECS,
        ];
        all.extend_from_slice(args);
        // A copy just written may be "busy" for a moment: another test's fork can hold its
        // descriptor until that child execs.
        let mut tries = 0;
        loop {
            let out = run("setpriv", &all);
            let busy = out.status.code() == Some(126)
                && String::from_utf8_lossy(&out.stderr).contains("Text file busy");
            if !busy || tries == 50 {
                return out;
            }
            tries += 1;
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A raw connection to the control socket.
    pub fn connect(&self) -> Rpc {
        Rpc::connect(&self.socket())
    }

    /// The ports as `list-ports --json` reports them.
    pub fn ports(&self) -> Vec<Value> {
        list_of(self.ctl_json(&["list-ports"]), "ports")
    }

    /// The counters of port `name` (`dump-ports --json`).
    pub fn port_stats(&self, name: &str) -> Value {
        list_of(self.ctl_json(&["dump-ports"]), "ports")
            .into_iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("dump-ports has no port {name}"))
    }

    /// The flows `dump-flows --json [MATCH]` reports.
    pub fn flows(&self, criteria: Option<&str>) -> Vec<Value> {
        let mut args = vec!["dump-flows"];
        args.extend(criteria);
        list_of(self.ctl_json(&args), "flows")
    }

    /// Ports, flows and groups as `list-ports`, `dump-flows` and `dump-groups` print them
    /// (less each flow's age), and the bytes of `state.json` and the journal: what a
    /// refused change must leave as it was.
    pub fn snapshot(&self) -> Snapshot {
        let flows = self
            .ctl_ok(&["dump-flows"])
            .lines()
            .map(|l| {
                l.split(", ")
                    .filter(|f| {
                        !f.trim_start().starts_with("duration=") && !f.starts_with("idle_age=")
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .collect();
        Snapshot {
            ports: self.ctl_ok(&["list-ports"]),
            flows,
            groups: self.ctl_ok(&["dump-groups"]),
            state: [
                std::fs::read(self.state_file()).unwrap_or_default(),
                std::fs::read(self.journal_file()).unwrap_or_default(),
            ]
            .concat(),
        }
    }

    /// Deletes the TAPs this daemon's ports made (they are persistent): in their namespace
    /// when it is still there, in the host namespace only when the name is a TAP.
    fn delete_taps(&self) {
        for p in &self.saved_ports() {
            let Some(ifname) = p["ifname"].as_str() else {
                continue;
            };
            if p["type"] == "memory" {
                continue;
            }
            // Ports "in the host namespace" live where the daemon ran.
            match p["netns"].as_str().or(self.netns.as_deref()) {
                Some(ns) if Path::new(ns).exists() => {
                    let _ = run(
                        "nsenter",
                        &[&format!("--net={ns}"), "ip", "link", "del", ifname],
                    );
                }
                Some(_) => {}
                None => {
                    let out = run("ip", &["-d", "-j", "link", "show", "dev", ifname]);
                    let kind: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
                    if kind[0]["linkinfo"]["info_kind"] == "tun" {
                        let _ = run("ip", &["link", "del", ifname]);
                    }
                }
            }
        }
    }
}

impl Default for Daemon {
    fn default() -> Daemon {
        Daemon::new()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.delete_taps();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Saves fail while this lives (see [`Daemon::block_saves`]).
#[derive(Debug)]
pub struct SaveBlock {
    journal: PathBuf,
    aside: PathBuf,
}

impl Drop for SaveBlock {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.journal);
        if self.aside.exists() {
            let _ = std::fs::rename(&self.aside, &self.journal);
        }
    }
}

/// What [`Daemon::snapshot`] records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub ports: String,
    pub flows: Vec<String>,
    pub groups: String,
    pub state: Vec<u8>,
}

/// A list result: a bare array, or an object holding it under `key`.
pub fn list_of(v: Value, key: &str) -> Vec<Value> {
    match v {
        Value::Array(a) => a,
        Value::Object(mut o) => match o.remove(key) {
            Some(Value::Array(a)) => a,
            other => panic!("no list `{key}` in {other:?}"),
        },
        other => panic!("not a list: {other}"),
    }
}

/// A counter of a JSON result (`n_packets`, `rx_bytes`...).
pub fn counter(v: &Value, name: &str) -> u64 {
    v[name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {name} in {v}"))
}

/// A raw JSON-RPC connection: bytes out, one reply line in.
#[derive(Debug)]
pub struct Rpc {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Rpc {
    pub fn connect(socket: &Path) -> Rpc {
        let s = UnixStream::connect(socket)
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", socket.display()));
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
        Rpc {
            reader: BufReader::new(s.try_clone().expect("clone the stream")),
            writer: s,
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("send to vswitchd");
    }

    /// The next reply, parsed.
    pub fn recv(&mut self) -> Value {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .expect("a reply from vswitchd");
        assert!(n > 0, "vswitchd closed the connection instead of answering");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("reply is not JSON ({e}): {line}"))
    }

    /// Sends one line and returns its reply.
    pub fn call(&mut self, line: &str) -> Value {
        self.send(format!("{line}\n").as_bytes());
        self.recv()
    }
}

// ---- traffic ---------------------------------------------------------------------------

/// What `ping` reported.
#[derive(Debug, Clone)]
pub struct Ping {
    pub transmitted: u32,
    pub received: u32,
    pub output: String,
}

/// `ping -c COUNT -W 1 -i 0.2 DST` inside `ns`, bounded by `timeout`.
pub fn ping(ns: &Netns, dst: &str, count: u32) -> Ping {
    let limit = (count * 2 / 10 + 3).to_string();
    let out = ns.exec(&[
        "timeout",
        &limit,
        "ping",
        "-n",
        "-c",
        &count.to_string(),
        "-W",
        "1",
        "-i",
        "0.2",
        dst,
    ]);
    let output = format!("{}{}", stdout(&out), stderr(&out));
    let number_before = |word: &str| -> u32 {
        output
            .lines()
            .find(|l| l.contains("packets transmitted"))
            .and_then(|l| {
                l.split(", ")
                    .find(|f| f.ends_with(word))
                    .and_then(|f| f.split_whitespace().next())
                    .and_then(|n| n.parse().ok())
            })
            .unwrap_or(0)
    };
    Ping {
        transmitted: number_before("transmitted"),
        received: number_before("received"),
        output,
    }
}

/// Which of `sources` (a namespace and its own address) do not reach which of `targets`
/// (`"FROM -> TO"` each), one ping each from a thread per source, with one retry: the
/// very first packet of a fresh Pod may race its interface coming up.
pub fn unreachable_pairs(sources: &[(&Netns, String)], targets: &[String]) -> Vec<String> {
    std::thread::scope(|s| {
        let handles: Vec<_> = sources
            .iter()
            .map(|(ns, from)| {
                s.spawn(move || {
                    targets
                        .iter()
                        .filter(|t| *t != from)
                        .filter(|t| ping(ns, t, 1).received != 1 && ping(ns, t, 2).received == 0)
                        .map(|t| format!("{from} -> {t}"))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("ping thread"))
            .collect()
    })
}

/// Pings once a second until a reply comes back (true) or `timeout` passes.
pub fn ping_until(ns: &Netns, dst: &str, timeout: Duration) -> bool {
    wait_until(timeout, || ping(ns, dst, 1).received == 1)
}

/// An `iperf3 -s -1` (one test, then exit) inside `ns`, stopped after `limit` seconds at
/// the latest; returns once it listens.
pub fn iperf_server(ns: &Netns, port: u16, limit_secs: u32) -> Bg {
    let port = port.to_string();
    let bg = ns.spawn(&[
        "timeout",
        &limit_secs.to_string(),
        "iperf3",
        "-s",
        "-1",
        "-p",
        &port,
    ]);
    let listening = wait_until(Duration::from_secs(5), || {
        !ns.exec_ok(&["ss", "-Hltn", &format!("sport = :{port}")])
            .trim()
            .is_empty()
    });
    assert!(
        listening,
        "iperf3 -s did not listen on port {port} in {}",
        ns.name()
    );
    bg
}

/// The arguments of an iperf3 client run to `dst:port`, bounded by `timeout limit_secs`,
/// with JSON output; `extra` chooses `-n BYTES` or `-t SECS`.
pub fn iperf_client_args(dst: &str, port: u16, limit_secs: u32, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "timeout",
        &limit_secs.to_string(),
        "iperf3",
        "-c",
        dst,
        "-p",
        &port.to_string(),
        "-J",
        "--connect-timeout",
        "3000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// What an iperf3 client reported.
#[derive(Debug, Clone)]
pub struct Iperf {
    pub ok: bool,
    pub sent_bytes: u64,
    pub received_bytes: u64,
    pub output: String,
}

/// Reads an iperf3 client's `-J` report.
pub fn iperf_report(out: &Output) -> Iperf {
    let text = stdout(out);
    let v: Value = serde_json::from_str(&text).unwrap_or_default();
    let end = &v["end"];
    Iperf {
        ok: out.status.success() && v.get("error").is_none(),
        sent_bytes: end["sum_sent"]["bytes"].as_u64().unwrap_or(0),
        received_bytes: end["sum_received"]["bytes"].as_u64().unwrap_or(0),
        output: format!(
            "exit {:?}; error: {}; stderr: {}",
            out.status.code(),
            v.get("error").map(Value::to_string).unwrap_or_default(),
            stderr(out).trim_end()
        ),
    }
}

/// A bounded TCP transfer of `bytes` (iperf3 `-n`, binary units allowed: `110M`) from
/// `client` to `dst` in `server`.
pub fn tcp_transfer(client: &Netns, server: &Netns, dst: &str, bytes: &str) -> Iperf {
    let srv = iperf_server(server, 5201, 60);
    let args = iperf_client_args(dst, 5201, 45, &["-n", bytes]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = client.exec(&args);
    let report = iperf_report(&out);
    drop(srv);
    report
}

/// Pod A (port `pa`) and Pod B (port `pb`): a TAP made by `add-port --netns`, `eth0` in
/// the Pod, with its address (`a_ip`, `b_ip` in a /24).
pub fn attach_two_pods(d: &Daemon, a: &Netns, b: &Netns, a_ip: &str, b_ip: &str) {
    for (name, ns, ip) in [("pa", a, a_ip), ("pb", b, b_ip)] {
        let cidr = format!("{ip}/24");
        d.ctl_ok(&[
            "add-port",
            name,
            "--type",
            "tap",
            "--netns",
            &ns.path(),
            "--ifname",
            "eth0",
            "--ip",
            &cidr,
        ]);
        let eth0 = ns
            .link("eth0")
            .unwrap_or_else(|| panic!("no eth0 in {} after add-port {name}", ns.name()));
        assert!(eth0.up, "eth0 of {name} is not up: {eth0:?}");
    }
}

/// A permanent neighbour entry in `ns`: `ip` is at `mac` on `dev` (so that no ARP runs).
pub fn permanent_neighbour(ns: &Netns, dev: &str, ip: &str, mac: &str) {
    ns.exec_ok(&[
        "ip",
        "neigh",
        "replace",
        ip,
        "lladdr",
        mac,
        "dev",
        dev,
        "nud",
        "permanent",
    ]);
}
