//! The desired state, persisted: ports, user flows and groups, the node's Pod network,
//! the Pods attached through CNI (with their addresses), Kubernetes objects, and the
//! connection tracker's settings (limits, timeouts).
//!
//! Two files in the state directory:
//! - `state.json`, a snapshot of everything, with the number of the last change it holds;
//! - `state.journal`, the changes made since, one line each: `{"seq":N,"ops":[...]}`,
//!   each op a record put or removed by its key ([`Op`]).
//!
//! A change is appended to the journal and the journal is flushed to disk (fdatasync)
//! before the change is acknowledged, so a change costs what it writes, not the size of
//! the state. When the journal has grown past the snapshot (and past a floor), the caller
//! compacts: the whole state goes to a temporary file that is fsynced and renamed over
//! `state.json` (the file it replaces is kept as `state.json.bak`), then the journal is
//! emptied. A crash between the two leaves journal lines the snapshot already holds,
//! which are skipped by their number.
//!
//! At start the snapshot is read and the journal replayed over it. A last line cut short
//! (a crash in the middle of an append, never acknowledged) is dropped; any other damage
//! stops the start with a message naming the file: the switch never starts silently
//! empty, or silently without a change it acknowledged. A snapshot of the previous layout
//! (version 1, without a journal) is read and upgraded.

mod records;

pub use records::{
    ConntrackRecord, IpamRecord, NetworkRecord, NodeRecordV1, ObjectRecord, PodRecord, PortRecord,
    TunnelRecord,
};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The layout version of `state.json`.
pub const STATE_VERSION: u32 = 2;
pub const STATE_FILE: &str = "state.json";
pub const BACKUP_FILE: &str = "state.json.bak";
pub const JOURNAL_FILE: &str = "state.journal";

/// The journal may grow to this before a compaction is due, whatever the snapshot's size.
const MIN_COMPACT_BYTES: u64 = 4 << 20;

/// One change of the durable state: a record put (`v` set) or removed (`v` null), by key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "c", rename_all = "kebab-case")]
pub enum Op {
    Network {
        v: Option<NetworkRecord>,
    },
    Port {
        no: u32,
        v: Option<PortRecord>,
    },
    Pod {
        container: String,
        ifname: String,
        v: Option<Box<PodRecord>>,
    },
    /// A user flow, keyed by its slot (see [`flow_key`]), as an `add-flow` line.
    Flow {
        k: String,
        v: Option<String>,
    },
    /// A user group, as an `add-group` line.
    Group {
        id: u32,
        v: Option<String>,
    },
    Object {
        kind: String,
        ns: String,
        name: String,
        v: Option<ObjectRecord>,
    },
    /// The connection tracker's settings, whole (`None`: all defaults).
    Conntrack {
        v: Option<ConntrackRecord>,
    },
    /// A meter, as an `add-meter` line.
    Meter {
        id: u32,
        v: Option<String>,
    },
}

/// The key of a user flow in the journal: its table, priority and match (one flow per
/// slot, as the tables hold them).
pub fn flow_key(table: u8, priority: u16, matching: &str) -> String {
    format!("{table}/{priority}/{matching}")
}

/// The whole state, by key.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Image {
    pub network: Option<NetworkRecord>,
    pub ports: BTreeMap<u32, PortRecord>,
    pub pods: BTreeMap<(String, String), PodRecord>,
    /// User flows by key ([`flow_key`]) as `add-flow` lines.
    pub flows: BTreeMap<String, String>,
    /// User groups by id as `add-group` lines.
    pub groups: BTreeMap<u32, String>,
    /// Meters by id as `add-meter` lines.
    pub meters: BTreeMap<u32, String>,
    pub objects: BTreeMap<(String, String, String), ObjectRecord>,
    pub conntrack: Option<ConntrackRecord>,
    /// Remote nodes of a version-1 state, for the caller to turn into Node objects.
    pub v1_nodes: Vec<NodeRecordV1>,
    /// The layout version the snapshot had (to say an upgrade happened).
    pub read_version: u32,
}

impl Image {
    pub fn apply(&mut self, op: &Op) {
        fn put<K: Ord, V: Clone>(m: &mut BTreeMap<K, V>, k: K, v: &Option<V>) {
            match v {
                Some(v) => {
                    m.insert(k, v.clone());
                }
                None => {
                    m.remove(&k);
                }
            }
        }
        match op {
            Op::Network { v } => self.network = v.clone(),
            Op::Port { no, v } => put(&mut self.ports, *no, v),
            Op::Pod {
                container,
                ifname,
                v,
            } => put(
                &mut self.pods,
                (container.clone(), ifname.clone()),
                &v.as_deref().cloned(),
            ),
            Op::Flow { k, v } => put(&mut self.flows, k.clone(), v),
            Op::Group { id, v } => put(&mut self.groups, *id, v),
            Op::Meter { id, v } => put(&mut self.meters, *id, v),
            Op::Object { kind, ns, name, v } => put(
                &mut self.objects,
                (kind.clone(), ns.clone(), name.clone()),
                v,
            ),
            Op::Conntrack { v } => self.conntrack = v.clone(),
        }
    }
}

/// `state.json`: the snapshot, as lists.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Snapshot {
    version: u32,
    /// The last journal change this snapshot holds.
    #[serde(default)]
    seq: u64,
    ports: Vec<PortRecord>,
    /// Groups as `add-group` lines.
    groups: Vec<String>,
    /// Meters by id, as `add-meter` lines.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    meters: BTreeMap<u32, String>,
    /// User flows as `add-flow` lines (with their table and cookie).
    flows: Vec<String>,
    /// Keys of `flows`, in the same order (absent in version 1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    flow_keys: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    network: Option<NetworkRecord>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pods: Vec<PodRecord>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    objects: Vec<ObjectRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    conntrack: Option<ConntrackRecord>,
    /// Version 1 only.
    #[serde(default, skip_serializing)]
    nodes: Vec<NodeRecordV1>,
}

#[derive(Serialize, Deserialize)]
struct Entry<'a> {
    seq: u64,
    #[serde(borrow)]
    ops: std::borrow::Cow<'a, [Op]>,
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
         The state at the last compaction before it is in {backup} (copy it over {path} and \
         move {journal} away to start from it), or move {path} and {journal} away to start \
         with no state"
    )]
    Damaged {
        path: PathBuf,
        backup: PathBuf,
        journal: PathBuf,
        reason: String,
    },
    #[error(
        "the state journal {path} is damaged at line {line} ({reason}); the switch will not \
         start without the changes it acknowledged. Move {path} away to start from {snapshot} \
         alone (the changes after it are lost)"
    )]
    DamagedJournal {
        path: PathBuf,
        snapshot: PathBuf,
        line: usize,
        reason: String,
    },
    #[error(
        "the state file {path} has layout version {found}; this vswitchd reads versions 1 and {STATE_VERSION}"
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
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    /// The number of the last change written.
    seq: u64,
    /// The journal's length after the last good append.
    journal_len: u64,
    snapshot_len: u64,
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
            seq: 0,
            journal_len: 0,
            snapshot_len: 0,
        })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    pub fn backup_path(&self) -> PathBuf {
        self.dir.join(BACKUP_FILE)
    }

    pub fn journal_path(&self) -> PathBuf {
        self.dir.join(JOURNAL_FILE)
    }

    /// The number of the last change made durable.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The persisted state: the snapshot with the journal replayed over it; an empty
    /// state when there is nothing yet (first start).
    pub fn load(&mut self) -> Result<Image, StoreError> {
        let path = self.path();
        let mut image = Image {
            read_version: STATE_VERSION,
            ..Image::default()
        };
        let (backup, journal) = (self.backup_path(), self.journal_path());
        let damaged = |reason: String| StoreError::Damaged {
            path: path.clone(),
            backup: backup.clone(),
            journal: journal.clone(),
            reason,
        };
        match fs::read(&path) {
            Ok(bytes) => {
                self.snapshot_len = bytes.len() as u64;
                let snap: Snapshot =
                    serde_json::from_slice(&bytes).map_err(|e| damaged(e.to_string()))?;
                if snap.version != 1 && snap.version != STATE_VERSION {
                    return Err(StoreError::Version {
                        path,
                        found: snap.version,
                    });
                }
                if snap.version == STATE_VERSION && snap.flow_keys.len() != snap.flows.len() {
                    return Err(damaged(format!(
                        "{} flows but {} flow keys",
                        snap.flows.len(),
                        snap.flow_keys.len()
                    )));
                }
                image.read_version = snap.version;
                self.seq = snap.seq;
                image.network = snap.network;
                image.ports = snap.ports.into_iter().map(|p| (p.no, p)).collect();
                image.pods = snap
                    .pods
                    .into_iter()
                    .map(|p| ((p.container_id.clone(), p.ifname.clone()), p))
                    .collect();
                image.meters = snap.meters;
                image.groups = snap
                    .groups
                    .into_iter()
                    .enumerate()
                    .map(|(i, g)| (group_id_of(&g).unwrap_or(u32::MAX - i as u32), g))
                    .collect();
                // Version 1 has no flow keys: the lines' order stands in until the caller
                // writes the state again with the keys of the rules they make.
                image.flows = if snap.flow_keys.is_empty() {
                    snap.flows
                        .into_iter()
                        .enumerate()
                        .map(|(i, f)| (format!("v1/{i:08}"), f))
                        .collect()
                } else {
                    snap.flow_keys.into_iter().zip(snap.flows).collect()
                };
                image.objects = snap
                    .objects
                    .into_iter()
                    .map(|o| ((o.kind.clone(), o.namespace.clone(), o.name.clone()), o))
                    .collect();
                image.conntrack = snap.conntrack;
                image.v1_nodes = snap.nodes;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(StoreError::Read { path, source }),
        }
        self.replay(&mut image)?;
        Ok(image)
    }

    /// Apply the journal's changes that the snapshot does not hold.
    fn replay(&mut self, image: &mut Image) -> Result<(), StoreError> {
        let path = self.journal_path();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.journal_len = 0;
                return Ok(());
            }
            Err(source) => return Err(StoreError::Read { path, source }),
        };
        let mut good = 0usize;
        let mut at = 0usize;
        let mut line_no = 0usize;
        while at < bytes.len() {
            line_no += 1;
            let end = bytes[at..].iter().position(|b| *b == b'\n').map(|i| at + i);
            let (line, next) = match end {
                Some(e) => (&bytes[at..e], e + 1),
                None => (&bytes[at..], bytes.len()),
            };
            let last = next >= bytes.len();
            match serde_json::from_slice::<Entry>(line) {
                Ok(entry) if end.is_some() => {
                    if entry.seq > self.seq {
                        if entry.seq != self.seq + 1 {
                            return Err(StoreError::DamagedJournal {
                                path,
                                snapshot: self.path(),
                                line: line_no,
                                reason: format!(
                                    "change {} follows change {}: some are missing",
                                    entry.seq, self.seq
                                ),
                            });
                        }
                        for op in entry.ops.iter() {
                            image.apply(op);
                        }
                        self.seq = entry.seq;
                    }
                    good = next;
                }
                // The last line, cut short by a crash before it was acknowledged.
                Ok(_) | Err(_) if last => {
                    tracing::warn!(journal = %path.display(), line = line_no, "the journal's last change was not written whole (a crash while writing it); it was never acknowledged and is dropped");
                    break;
                }
                Ok(_) => unreachable!("a line with a newline after it"),
                Err(e) => {
                    return Err(StoreError::DamagedJournal {
                        path,
                        snapshot: self.path(),
                        line: line_no,
                        reason: e.to_string(),
                    });
                }
            }
            at = next;
        }
        if good < bytes.len() {
            let f = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|source| StoreError::Write {
                    path: path.clone(),
                    source,
                })?;
            f.set_len(good as u64)
                .and_then(|()| f.sync_data())
                .map_err(|source| StoreError::Write {
                    path: path.clone(),
                    source,
                })?;
        }
        self.journal_len = good as u64;
        Ok(())
    }

    /// Make `ops` durable, as one change: appended to the journal and flushed to disk.
    /// On failure nothing of it is in the journal.
    pub fn commit(&mut self, ops: &[Op]) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        let path = self.journal_path();
        let werr = |source| StoreError::Write {
            path: path.clone(),
            source,
        };
        let mut line = serde_json::to_vec(&Entry {
            seq: self.seq + 1,
            ops: std::borrow::Cow::Borrowed(ops),
        })
        .map_err(|e| werr(io::Error::other(e)))?;
        line.push(b'\n');
        let created = !path.exists();
        // Opened for each change: a journal replaced or removed under the switch is
        // noticed at once, not written into a file nobody will read.
        let mut f = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
            .map_err(werr)?;
        let written = f.write_all(&line).and_then(|()| f.sync_data());
        if let Err(e) = written {
            // Nothing of a change that failed may stay, or the next append would follow
            // a torn line.
            if let Err(t) = f.set_len(self.journal_len).and_then(|()| f.sync_data()) {
                tracing::error!(error = %t, journal = %path.display(), "cannot cut a failed change off the journal");
            }
            return Err(werr(e));
        }
        if created {
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(werr)?;
        }
        self.journal_len += line.len() as u64;
        self.seq += 1;
        Ok(())
    }

    /// Whether the journal has grown enough that [`Store::compact`] is due.
    pub fn should_compact(&self) -> bool {
        self.journal_len > MIN_COMPACT_BYTES.max(self.snapshot_len)
    }

    /// Write the whole state as the new snapshot and empty the journal.
    pub fn compact(&mut self, image: &Image) -> Result<(), StoreError> {
        let path = self.path();
        let werr = |source| StoreError::Write {
            path: path.clone(),
            source,
        };
        let (flow_keys, flows) = image
            .flows
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .unzip();
        let snap = Snapshot {
            version: STATE_VERSION,
            seq: self.seq,
            ports: image.ports.values().cloned().collect(),
            groups: image.groups.values().cloned().collect(),
            meters: image.meters.clone(),
            flows,
            flow_keys,
            network: image.network.clone(),
            pods: image.pods.values().cloned().collect(),
            objects: image.objects.values().cloned().collect(),
            conntrack: image.conntrack.clone(),
            nodes: Vec::new(),
        };
        let mut body = serde_json::to_vec_pretty(&snap).map_err(|e| werr(io::Error::other(e)))?;
        body.push(b'\n');
        let tmp = self.dir.join(format!("{STATE_FILE}.tmp"));
        {
            let mut f = File::create(&tmp).map_err(werr)?;
            f.write_all(&body).map_err(werr)?;
            f.sync_all().map_err(werr)?;
        }
        if path.exists() {
            // The current file was read back fine at start or written by the last
            // compaction: the last good snapshot.
            fs::copy(&path, self.backup_path()).map_err(werr)?;
        }
        fs::rename(&tmp, &path).map_err(werr)?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(werr)?;
        self.snapshot_len = body.len() as u64;
        let journal = self.journal_path();
        match OpenOptions::new().write(true).open(&journal) {
            Ok(f) => {
                // What the journal holds is in the snapshot now (and would be skipped by
                // its numbers if this did not happen).
                f.set_len(0)
                    .and_then(|()| f.sync_data())
                    .map_err(|source| StoreError::Write {
                        path: journal,
                        source,
                    })?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(StoreError::Write {
                    path: journal,
                    source,
                });
            }
        }
        self.journal_len = 0;
        Ok(())
    }
}

/// The `group_id=N` of a group line.
fn group_id_of(line: &str) -> Option<u32> {
    let rest = line.split("group_id=").nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests;
