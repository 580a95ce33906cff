//! The desired state, persisted: ports, user flows and groups, the node's Pod network and
//! the Pods attached through CNI (with their addresses).
//!
//! Written atomically before a change is acknowledged: the new state goes to a temporary
//! file in the same directory, is fsynced, and renamed over `state.json`; the directory is
//! fsynced too. The file it replaces is kept as `state.json.bak`, the last good state. A
//! damaged state file stops startup with a message that names it and the backup; the
//! switch never starts silently empty over a file it could not read.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use vswitch_proto::rpc::PortType;

/// The layout version of `state.json`.
pub const STATE_VERSION: u32 = 1;
pub const STATE_FILE: &str = "state.json";
pub const BACKUP_FILE: &str = "state.json.bak";

/// A port as configured (what re-creating or re-attaching it needs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRecord {
    pub no: u32,
    pub name: String,
    #[serde(rename = "type")]
    pub port_type: PortType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    /// The interface's name where it lives (the port name unless set).
    pub ifname: String,
    pub mac: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// The tunnel's settings, for the VXLAN port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<TunnelRecord>,
}

/// The VXLAN port's settings (`vswitchd --node-ip`, `--vni`, `--vxlan-port`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelRecord {
    /// The node's underlay address, where the tunnel ends.
    pub local: String,
    /// The UDP port.
    pub port: u16,
    /// The VNI of the Pod network.
    pub vni: u32,
}

/// A remote node: its Pod CIDR behind its underlay address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Names its rules (their cookie); not reused while the node is known.
    pub id: u32,
    pub name: String,
    pub pod_cidr: String,
    pub node_ip: String,
    /// `vswitchctl` or `manifest`.
    pub source: String,
}

/// The node's Pod network (`vswitchd --pod-cidr`), as the switch last ran with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRecord {
    pub pod_cidr: String,
    /// The gateway port's name.
    pub gateway: String,
    /// The MTU of the gateway and of every Pod's interface.
    pub mtu: u32,
}

/// Where a Pod's address came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum IpamRecord {
    /// The switch's own allocator.
    Builtin,
    /// A delegated IPAM plugin, with what releasing the address needs.
    Plugin {
        plugin: String,
        /// The network configuration the plugin was given (and is given again on DEL).
        config: Value,
        /// The CNI version spoken with it.
        version: String,
        path: String,
        args: String,
    },
}

/// A Pod attached through CNI: one (container, interface) pair.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodRecord {
    pub container_id: String,
    pub ifname: String,
    pub netns: String,
    /// The network configuration's `name`.
    pub network: String,
    /// The switch port's name.
    pub port: String,
    /// With prefix length.
    pub ip: String,
    pub mac: String,
    pub gateway: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    pub ipam: IpamRecord,
    /// The ADD result (1.1.0 shape), returned again for a repeated ADD.
    pub result: Value,
}

/// Everything the switch must get back after a restart.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    pub ports: Vec<PortRecord>,
    /// Groups as `add-group` lines, in the order they were added.
    pub groups: Vec<String>,
    /// User flows as `add-flow` lines (with their table and cookie), in dump order.
    pub flows: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkRecord>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pods: Vec<PodRecord>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeRecord>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the state directory {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read the state file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "the state file {path} is damaged ({reason}); the switch will not start empty over it. \
         The last good state is in {backup} (copy it over {path} to start from it), or move \
         {path} away to start with no state"
    )]
    Damaged {
        path: PathBuf,
        backup: PathBuf,
        reason: String,
    },
    #[error(
        "the state file {path} has layout version {found}; this vswitchd reads version {STATE_VERSION}"
    )]
    Version { path: PathBuf, found: u32 },
    #[error("cannot write the state file {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// Use `dir` (created, mode 0700, if missing).
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| StoreError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        Ok(Store {
            dir: dir.to_path_buf(),
        })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    pub fn backup_path(&self) -> PathBuf {
        self.dir.join(BACKUP_FILE)
    }

    /// The persisted state; an empty state when there is no file yet (first start).
    pub fn load(&self) -> Result<State, StoreError> {
        let path = self.path();
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(State {
                    version: STATE_VERSION,
                    ..State::default()
                });
            }
            Err(source) => return Err(StoreError::Read { path, source }),
        };
        let state: State = serde_json::from_str(&text).map_err(|e| StoreError::Damaged {
            path: path.clone(),
            backup: self.backup_path(),
            reason: e.to_string(),
        })?;
        if state.version != STATE_VERSION {
            return Err(StoreError::Version {
                path,
                found: state.version,
            });
        }
        Ok(state)
    }

    /// Write `state` durably; the previous file becomes the backup.
    pub fn save(&self, state: &State) -> Result<(), StoreError> {
        let path = self.path();
        let werr = |source| StoreError::Write {
            path: path.clone(),
            source,
        };
        let mut body = serde_json::to_vec_pretty(state).map_err(|e| werr(io::Error::other(e)))?;
        body.push(b'\n');
        let tmp = self.dir.join(format!("{STATE_FILE}.tmp"));
        {
            let mut f = File::create(&tmp).map_err(werr)?;
            f.write_all(&body).map_err(werr)?;
            f.sync_all().map_err(werr)?;
        }
        if path.exists() {
            // The current file was written by us and read back fine at startup or at the
            // last save: it is the last good state.
            fs::copy(&path, self.backup_path()).map_err(werr)?;
        }
        fs::rename(&tmp, &path).map_err(werr)?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(werr)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vswitch-store-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn round_trip_and_backup() {
        let d = tempdir("rt");
        let s = Store::open(&d).unwrap();
        assert_eq!(s.load().unwrap().ports.len(), 0);
        let mut st = State {
            version: STATE_VERSION,
            flows: vec!["actions=drop".into()],
            ..State::default()
        };
        s.save(&st).unwrap();
        assert!(!s.backup_path().exists());
        st.flows.push("priority=5,actions=normal".into());
        s.save(&st).unwrap();
        assert_eq!(s.load().unwrap(), st);
        let backup: State =
            serde_json::from_str(&fs::read_to_string(s.backup_path()).unwrap()).unwrap();
        assert_eq!(backup.flows, vec!["actions=drop".to_string()]);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn damaged_file_names_itself_and_the_backup() {
        let d = tempdir("bad");
        let s = Store::open(&d).unwrap();
        fs::write(s.path(), "{\"version\": 1, \"ports\": [").unwrap();
        let e = s.load().unwrap_err().to_string();
        assert!(e.contains(&s.path().display().to_string()), "{e}");
        assert!(e.contains("state.json.bak"), "{e}");
        assert!(e.contains("will not start empty"), "{e}");
        fs::write(
            s.path(),
            "{\"version\": 9, \"ports\": [], \"groups\": [], \"flows\": []}",
        )
        .unwrap();
        assert!(matches!(
            s.load(),
            Err(StoreError::Version { found: 9, .. })
        ));
        fs::remove_dir_all(&d).unwrap();
    }
}
