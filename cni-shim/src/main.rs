//! vswitch-cni: the CNI plugin kubelet (through containerd or CRI-O) runs to attach Pods
//! to the switch.
//!
//! A thin client: it reads the environment and the network configuration, checks what it
//! can on its own (so a bad call gets its exact error even when the switch is down),
//! answers VERSION itself, and forwards every other operation to `vswitchd` over its Unix
//! socket. The switch does the work (address, TAP, flows, persistence) and answers with the
//! CNI result in the requested version. Errors go to stdout as CNI error JSON; log lines go
//! to stderr and, if the configuration names one, to `logFile`.
#![forbid(unsafe_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;
use vswitch_proto::cni::{self, CniCall, CniError, Command, NetConf, errcode};
use vswitch_proto::rpc::{self, Request, Response, method};

/// The longest stdin read (a network configuration with a large `prevResult` is a few
/// kilobytes).
const MAX_STDIN: u64 = 4 << 20;
/// The longest reply read from the switch.
const MAX_REPLY: u64 = 16 << 20;
/// How long connecting to the socket may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

fn main() {
    let code = run();
    std::process::exit(code);
}

/// Log to stderr and, when configured, append to the log file (never fails the call).
fn log(conf: Option<&NetConf>, line: &str) {
    eprintln!("vswitch-cni: {line}");
    if let Some(path) = conf.and_then(|c| c.log_file.as_deref())
        && let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
    {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let _ = writeln!(f, "{now:.3} pid={} {line}", std::process::id());
    }
}

fn print(v: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer(&mut out, v);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

fn fail(conf: Option<&NetConf>, version: &str, e: &CniError) -> i32 {
    log(conf, &format!("error: {e}"));
    print(&e.to_json(version));
    1
}

fn run() -> i32 {
    let mut stdin = Vec::new();
    if let Err(e) = std::io::stdin().take(MAX_STDIN + 1).read_to_end(&mut stdin) {
        let e = CniError::new(
            errcode::IO_FAILURE,
            format!("cannot read the network configuration from stdin: {e}"),
        );
        return fail(None, cni::CURRENT_VERSION, &e);
    }
    if stdin.len() as u64 > MAX_STDIN {
        let e = CniError::new(
            errcode::IO_FAILURE,
            format!(
                "the network configuration on stdin is longer than {} MiB",
                MAX_STDIN >> 20
            ),
        );
        return fail(None, cni::CURRENT_VERSION, &e);
    }
    // VERSION needs no valid configuration (the spec sends only {"cniVersion"}).
    if std::env::var("CNI_COMMAND").as_deref() == Ok("VERSION") {
        let v = serde_json::from_slice::<Value>(&stdin).ok();
        let asked = v
            .as_ref()
            .and_then(|v| v.get("cniVersion"))
            .and_then(Value::as_str);
        print(&cni::version_reply(asked));
        return 0;
    }
    let vars = |k: &str| std::env::var(k).ok();
    let (call, conf) = match CniCall::from_env(vars, &stdin) {
        Ok(x) => x,
        Err((e, version)) => return fail(None, &version, &e),
    };
    let version = conf.cni_version.clone();
    if call.command == Command::Add || call.command == Command::Check {
        // The namespace is checked here too, so the answer is the same with the switch down.
        let ns = Path::new(&call.netns);
        if !ns.exists() {
            let e = CniError::new(
                errcode::INVALID_ENV,
                format!(
                    "CNI_NETNS {} does not exist: the container's network namespace must be \
                     created before {}",
                    call.netns, call.command
                ),
            );
            return fail(Some(&conf), &version, &e);
        }
    }
    log(
        Some(&conf),
        &format!(
            "{} container={} ifname={} netns={} network={}",
            call.command, call.container_id, call.ifname, call.netns, conf.name
        ),
    );
    match forward(&call, &conf) {
        Ok(Value::Null) => 0,
        Ok(result) => {
            print(&result);
            0
        }
        Err(e) => fail(Some(&conf), &version, &e),
    }
}

/// Send the call to the switch and wait for its answer.
fn forward(call: &CniCall, conf: &NetConf) -> Result<Value, CniError> {
    let unreachable_code = if call.command == Command::Status {
        errcode::NOT_AVAILABLE
    } else {
        errcode::TRY_AGAIN_LATER
    };
    let socket = &conf.socket;
    let unreachable = |what: String| {
        CniError::new(
            unreachable_code,
            format!(
                "vswitchd is not reachable at {socket}: {what}. Check that vswitchd is \
                 running on this node (and that \"socket\" in the CNI configuration names \
                 its --socket); the runtime will retry"
            ),
        )
    };
    let stream = connect(Path::new(socket)).map_err(|e| unreachable(e.to_string()))?;
    let timeout = Duration::from_secs(conf.timeout_secs);
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| unreachable(e.to_string()))?;
    let mut line = serde_json::to_vec(&Request::new(1, method::CNI, call))
        .map_err(|e| CniError::new(errcode::INTERNAL, format!("cannot encode the call: {e}")))?;
    line.push(b'\n');
    // A daemon with no room for us answers at once and closes, maybe before the call is
    // in: then its answer, if any, says more than the failed write.
    let sent = (&stream).write_all(&line);
    if let Err(e) = &sent
        && !matches!(
            e.kind(),
            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
        )
    {
        return Err(unreachable(format!("cannot send the call: {e}")));
    }
    let mut reply = Vec::new();
    let read = BufReader::new(&stream)
        .take(MAX_REPLY)
        .read_until(b'\n', &mut reply);
    if let Err(e) = sent
        && reply.is_empty()
    {
        return Err(unreachable(format!("cannot send the call: {e}")));
    }
    read.map_err(|e| match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => CniError::new(
            errcode::TRY_AGAIN_LATER,
            format!(
                "vswitchd at {socket} did not answer {} within {} s; it may be busy. \
                     Check its log; the runtime will retry",
                call.command, conf.timeout_secs
            ),
        ),
        _ => unreachable(format!("the connection failed: {e}")),
    })?;
    if reply.is_empty() {
        return Err(unreachable(
            "it closed the connection without answering (did it stop?)".into(),
        ));
    }
    let resp: Response = serde_json::from_slice(&reply).map_err(|e| {
        CniError::new(
            errcode::INTERNAL,
            format!("vswitchd at {socket} sent an answer that is not JSON-RPC: {e}"),
        )
    })?;
    resp.into_result().map_err(|e| {
        CniError::from_rpc(&e.message, e.data.as_ref()).unwrap_or_else(|| {
            let code = match e.code {
                rpc::code::PERMISSION_DENIED => errcode::INVALID_ENV,
                rpc::code::BUSY => errcode::TRY_AGAIN_LATER,
                _ => errcode::INTERNAL,
            };
            let hint = if e.code == rpc::code::METHOD_NOT_FOUND {
                " (vswitchd is older than this plugin: upgrade it)"
            } else {
                ""
            };
            CniError::new(
                code,
                format!("vswitchd refused the call: {}{hint}", e.message),
            )
        })
    })
}

/// Connect with a bounded wait (a socket whose listener is stuck does not hang kubelet).
fn connect(path: &Path) -> std::io::Result<UnixStream> {
    let (tx, rx) = std::sync::mpsc::channel();
    let p = path.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(UnixStream::connect(p));
    });
    rx.recv_timeout(CONNECT_TIMEOUT).unwrap_or_else(|_| {
        Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "connecting took longer than {} s",
                CONNECT_TIMEOUT.as_secs()
            ),
        ))
    })
}
