//! A fake vswitchd for the CLI tests: a Unix socket in a private temp dir, served by a
//! thread that records every request and answers what the test says.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use vswitch_proto::rpc::{Request, Response, RpcError, code};

/// A directory under the system temp dir, removed with everything in it on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "vswitchctl-test-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&path).expect("create temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What the fake daemon does with a request.
#[derive(Clone, Debug)]
pub enum Reply {
    Result(Value),
    Error(RpcError),
    /// These bytes, exactly (include the newline to end the line).
    Raw(String),
    /// These bytes, then close the connection: a reply cut off.
    Cut(String),
    /// Close the connection without answering.
    Close,
    /// Keep the connection open and never answer.
    Silent,
}

pub struct FakeDaemon {
    _dir: TempDir,
    socket: PathBuf,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeDaemon {
    pub fn start(answer: impl Fn(&Request) -> Reply + Send + 'static) -> FakeDaemon {
        let dir = TempDir::new();
        let socket = dir.path().join("vswitchd.sock");
        let listener = UnixListener::bind(&socket).expect("bind the fake daemon's socket");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let requests = Arc::clone(&requests);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(conn) = conn {
                        serve(conn, &answer, &requests);
                    }
                }
            })
        };
        FakeDaemon {
            _dir: dir,
            socket,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    /// Answers `result` to `method`, and "method not found" to anything else.
    pub fn answering(method: &'static str, result: Value) -> FakeDaemon {
        FakeDaemon::start(move |req| {
            if req.method == method {
                Reply::Result(result.clone())
            } else {
                Reply::Error(RpcError::new(code::METHOD_NOT_FOUND, "no such method"))
            }
        })
    }

    /// Answers every request the same way.
    pub fn always(reply: Reply) -> FakeDaemon {
        FakeDaemon::start(move |_| reply.clone())
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// The one request the daemon got, as (method, params).
    pub fn only_request(&self) -> (String, Value) {
        let reqs = self.requests();
        assert_eq!(reqs.len(), 1, "requests: {reqs:?}");
        (reqs[0].method.clone(), reqs[0].params.clone())
    }

    /// Runs vswitchctl with `--socket` pointing here, then `args`.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with_stdin(args, "")
    }

    pub fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let socket = self.socket.to_str().expect("utf-8 temp path");
        let mut all = vec!["--socket", socket];
        all.extend_from_slice(args);
        run_with_stdin(vswitchctl(), &all, stdin)
    }
}

impl Drop for FakeDaemon {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees `stop`.
        let _ = UnixStream::connect(&self.socket);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(conn: UnixStream, answer: &impl Fn(&Request) -> Reply, requests: &Mutex<Vec<Request>>) {
    let mut writer = match conn.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    for line in BufReader::new(conn).lines() {
        let Ok(line) = line else { return };
        let req: Request = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(e) => {
                let resp = Response::err(None, RpcError::new(code::PARSE_ERROR, e.to_string()));
                let _ = writeln!(writer, "{}", serde_json::to_string(&resp).unwrap());
                continue;
            }
        };
        requests.lock().unwrap().push(req.clone());
        let resp = match answer(&req) {
            Reply::Result(v) => Response::ok(req.id.clone(), v),
            Reply::Error(e) => Response::err(req.id.clone(), e),
            Reply::Raw(s) => {
                let _ = writer.write_all(s.as_bytes());
                continue;
            }
            Reply::Cut(s) => {
                let _ = writer.write_all(s.as_bytes());
                return;
            }
            Reply::Close => return,
            Reply::Silent => continue,
        };
        let _ = writeln!(writer, "{}", serde_json::to_string(&resp).unwrap());
    }
}

/// The binary under test, without a VSWITCH_SOCKET from the environment.
pub fn vswitchctl() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vswitchctl"));
    c.env_remove("VSWITCH_SOCKET");
    c
}

pub fn run(args: &[&str]) -> Output {
    run_with_stdin(vswitchctl(), args, "")
}

pub fn run_with_stdin(mut cmd: Command, args: &[&str], stdin: &str) -> Output {
    let mut child = cmd
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vswitchctl");
    let mut input = child.stdin.take().unwrap();
    let _ = input.write_all(stdin.as_bytes());
    drop(input);
    child.wait_with_output().expect("wait for vswitchctl")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts the exit status, showing both streams when it is not the one expected.
#[track_caller]
pub fn assert_exit(o: &Output, expected: i32) {
    assert_eq!(
        o.status.code(),
        Some(expected),
        "stdout:\n{}\nstderr:\n{}",
        stdout(o),
        stderr(o)
    );
}

/// A refusal as the switch sends it: a flow line with a caret under the error.
pub fn refusal(message: &str, data: Option<Value>) -> RpcError {
    RpcError {
        code: code::REFUSED,
        message: message.into(),
        data,
    }
}

pub fn port_info() -> Value {
    json!({
        "no": 1, "name": "gw0", "type": "internal", "ifname": "gw0",
        "mac": "0a:00:00:00:00:01", "mtu": 1500, "ip": "10.244.1.1/24",
        "state": "up", "offloads": "csum,tso4,tso6"
    })
}

pub fn pod_port() -> Value {
    json!({
        "no": 12, "name": "pod-a", "type": "tap", "netns": "/var/run/netns/pod-a",
        "ifname": "eth0", "mac": "0a:58:0a:f4:01:05",
        "state": "missing: namespace /var/run/netns/pod-a is gone", "offloads": ""
    })
}
