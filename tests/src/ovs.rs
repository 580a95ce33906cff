//! Open vSwitch as a peer in end-to-end tests: a private `ovsdb-server` and `ovs-vswitchd`
//! (userspace datapath) running inside a namespace of the test's own, with their
//! database, sockets and logs in a directory of their own, stopped and removed on drop.
//! The same flow lines run on it and on `vswitchd` give the oracle's answer.

use crate::e2e::{Netns, run, unique};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

/// Whether Open vSwitch's daemons are installed.
pub fn available() -> bool {
    [
        "ovsdb-server",
        "ovs-vswitchd",
        "ovs-vsctl",
        "ovs-ofctl",
        "ovs-appctl",
        "ovsdb-tool",
    ]
    .iter()
    .all(|t| {
        run("sh", &["-c", &format!("command -v {t}")])
            .status
            .success()
    })
}

#[derive(Debug)]
pub struct Ovs {
    dir: PathBuf,
    pub node: Netns,
}

impl Ovs {
    /// Start the daemons in a new namespace with bridge `br0` (netdev datapath).
    pub fn start() -> Ovs {
        let node = Netns::new();
        let dir = std::env::temp_dir().join(unique("vsw-ovs"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let o = Ovs { dir, node };
        let d = o.dir.display().to_string();
        o.env_cmd(&[
            "ovsdb-tool",
            "create",
            &format!("{d}/conf.db"),
            "/usr/share/openvswitch/vswitch.ovsschema",
        ]);
        o.in_ns(&[
            "ovsdb-server",
            &format!("{d}/conf.db"),
            &format!("--remote=punix:{d}/db.sock"),
            &format!("--pidfile={d}/ovsdb-server.pid"),
            &format!("--unixctl={d}/ovsdb-server.ctl"),
            &format!("--log-file={d}/ovsdb-server.log"),
            "-vconsole:off",
            "--detach",
            "--no-chdir",
        ]);
        o.vsctl(&["--no-wait", "init"]);
        o.in_ns(&[
            "ovs-vswitchd",
            &format!("unix:{d}/db.sock"),
            &format!("--pidfile={d}/ovs-vswitchd.pid"),
            &format!("--unixctl={d}/ovs-vswitchd.ctl"),
            &format!("--log-file={d}/ovs-vswitchd.log"),
            "-vconsole:off",
            "--detach",
            "--no-chdir",
        ]);
        crate::e2e::wait_until(Duration::from_secs(10), || {
            o.dir.join("ovs-vswitchd.ctl").exists()
        });
        o.vsctl(&[
            "add-br",
            "br0",
            "--",
            "set",
            "bridge",
            "br0",
            "datapath_type=netdev",
        ]);
        o
    }

    fn command(&self, args: &[&str]) -> Command {
        let d = self.dir.display().to_string();
        let mut c = Command::new("env");
        c.args([
            format!("OVS_RUNDIR={d}"),
            format!("OVS_LOGDIR={d}"),
            format!("OVS_DBDIR={d}"),
            format!("OVS_SYSCONFDIR={d}"),
            "OVS_PKGDATADIR=/usr/share/openvswitch".into(),
        ]);
        c.args(args);
        c
    }

    fn check(what: &[&str], out: Output) -> String {
        assert!(
            out.status.success(),
            "{what:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn env_cmd(&self, args: &[&str]) -> String {
        Self::check(args, self.command(args).output().unwrap())
    }

    fn in_ns(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "netns", "exec", self.node.name()];
        full.extend(args);
        Self::check(args, self.command(&full).output().unwrap())
    }

    pub fn vsctl(&self, args: &[&str]) -> String {
        let db = format!("--db=unix:{}/db.sock", self.dir.display());
        let mut full = vec!["timeout", "30", "ovs-vsctl", &db, "--timeout=20"];
        full.extend(args);
        self.env_cmd(&full)
    }

    pub fn ofctl(&self, args: &[&str]) -> String {
        let mgmt = format!("unix:{}/br0.mgmt", self.dir.display());
        let mut full = vec!["timeout", "30", "ovs-ofctl", args[0], &mgmt];
        full.extend(&args[1..]);
        self.env_cmd(&full)
    }

    pub fn appctl(&self, args: &[&str]) -> String {
        let ctl = format!("{}/ovs-vswitchd.ctl", self.dir.display());
        let mut full = vec!["timeout", "30", "ovs-appctl", "-t", &ctl];
        full.extend(args);
        self.env_cmd(&full)
    }

    /// A TAP port `name` on br0, moved into `pod` with address `cidr` (OVS keeps its fd).
    pub fn add_tap(&self, name: &str, pod: &Netns, cidr: &str) {
        self.vsctl(&[
            "add-port",
            "br0",
            name,
            "--",
            "set",
            "Interface",
            name,
            "type=tap",
        ]);
        crate::e2e::wait_until(Duration::from_secs(5), || self.node.link(name).is_some());
        self.node
            .exec_ok(&["ip", "link", "set", name, "netns", pod.name()]);
        pod.exec_ok(&["ip", "addr", "add", cidr, "dev", name]);
        pod.exec_ok(&["ip", "link", "set", name, "up"]);
    }
}

impl Drop for Ovs {
    fn drop(&mut self) {
        let d = self.dir.display().to_string();
        for (ctl, extra) in [("ovs-vswitchd.ctl", "--cleanup"), ("ovsdb-server.ctl", "")] {
            let ctl = format!("{d}/{ctl}");
            let mut args = vec!["timeout", "10", "ovs-appctl", "-t", &ctl, "exit"];
            if !extra.is_empty() {
                args.push(extra);
            }
            let _ = self.command(&args).output();
        }
        for pid in ["ovs-vswitchd.pid", "ovsdb-server.pid"] {
            if let Ok(p) = std::fs::read_to_string(self.dir.join(pid)) {
                // Only if that pid is still one of Open vSwitch's daemons.
                let comm = std::fs::read_to_string(format!("/proc/{}/comm", p.trim()));
                if comm.is_ok_and(|c| c.starts_with("ovs")) {
                    let _ = run("kill", &["-9", p.trim()]);
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
