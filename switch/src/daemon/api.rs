//! Objects from the Kubernetes API (`vswitchd --kubeconfig`, or in a cluster): the
//! watcher's updates (`vswitch_watch::Update`) applied through the same registry entry
//! point as `apply -f` (`apply_object`, `put_object`), a batch of them one change, so one
//! object's change costs what it costs there.
//!
//! Objects from the API are kept with source [`FROM_API`] and are not written to the
//! state file: they are listed again at every start. So that a switch restarted while the
//! API server is down still enforces the policies and serves the Services it had (never
//! open where it was closed), they are also written, one at a time, to a cache beside the
//! state ([`CACHE_FILE`]): at most every [`CACHE_EVERY_MS`] while they change, and at a
//! clean stop; not synced to disk per change, as the state is. At start the cache is read
//! back one object at a time ([`read_cache`]), its objects restored after the saved ones,
//! and the first list of each kind replaces them. A list ([`Update::Relist`] ..
//! [`Update::Listed`]) replaces what was known of its kind from the API: the objects of
//! the kind with that source and not in the list are removed (deleted while the watch was
//! down, or while the switch was stopped). Objects applied from files are left alone.
//!
//! Readiness: until every kind watched has been listed once, [`Switch::api_ready`] is
//! false, and CNI ADD waits for it (bounded), so that no Pod starts before the policies
//! and Services of the cluster are in place.

use super::objects::Change;
use super::{Switch, Txn};
use crate::k8s::{self, ObjectKey, Route};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use vswitch_proto::rpc;
use vswitch_watch::Update;

/// The source of objects from the API server.
pub const FROM_API: &str = "api";

/// The cache of the objects from the API, in the state directory.
pub const CACHE_FILE: &str = "api-objects.json";

/// How often, at most, the cache is written while the objects change.
pub const CACHE_EVERY_MS: u64 = 30_000;

/// The cache's layout: `{"version": 1, "objects": [ObjectRecord, ...]}`, the objects as
/// the state file keeps them.
const CACHE_VERSION: u32 = 1;

/// The cache as it is written: the objects from the API, streamed.
#[derive(serde::Serialize)]
struct CacheOut<'a> {
    version: u32,
    objects: ApiRecords<'a>,
}

struct ApiRecords<'a>(&'a Switch);

impl serde::Serialize for ApiRecords<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(None)?;
        for (k, st) in self.0.objects.iter().filter(|(_, s)| s.source == FROM_API) {
            seq.serialize_element(&self.0.object_record(k, st))?;
        }
        seq.end()
    }
}

/// The cached objects from the API, each read as its kind reads it, where `image` has no
/// object of that key (an object saved from a file wins) or of that id. The file is
/// read one object at a time (its JSON held, not the objects as JSON values), so a
/// restart at cluster scale costs the objects as the switch keeps them, not twice that.
/// A missing or unreadable cache gives nothing (the objects come with the first list);
/// an object that no longer reads is dropped (it comes with the list too).
pub fn read_cache(
    dir: &std::path::Path,
    image: &crate::store::Image,
) -> Vec<(ObjectKey, k8s::Stored)> {
    let path = dir.join(CACHE_FILE);
    let Ok(bytes) = std::fs::read(&path) else {
        return Vec::new();
    };
    // An id a saved object holds (taken since the cache was written) is not given twice:
    // that cached object waits for the list.
    let mut ids: HashSet<(String, u32)> = image
        .objects
        .values()
        .map(|r| (r.kind.clone(), r.id))
        .collect();
    let mut keys: HashSet<ObjectKey> = HashSet::new();
    let mut out = Vec::new();
    let mut dropped = 0usize;
    let mut each = |rec: crate::store::ObjectRecord| {
        let read = k8s::kind_named(&rec.kind).and_then(|kind| kind.read(&rec.object).ok());
        // Saved under the key its object reads as (not the record's own fields, which a
        // damaged cache could make disagree).
        let saved = |key: &ObjectKey| {
            let k = (
                key.kind.to_string(),
                key.namespace.clone(),
                key.name.clone(),
            );
            image.objects.contains_key(&k)
        };
        match read {
            Some((key, _)) if saved(&key) => {}
            Some(_) if !ids.insert((rec.kind.clone(), rec.id)) => {}
            Some((key, spec)) if keys.insert(key.clone()) => out.push((
                key,
                k8s::Stored {
                    spec,
                    source: FROM_API.to_string(),
                    id: rec.id,
                },
            )),
            _ => dropped += 1,
        }
    };
    let mut de = serde_json::Deserializer::from_slice(&bytes);
    let read = serde::de::DeserializeSeed::deserialize(CacheSeed(&mut each), &mut de)
        .and_then(|()| de.end());
    if let Err(e) = read {
        tracing::warn!(path = %path.display(), error = %e, "the cache of API objects does not read: ignored (they come with the first list)");
        return Vec::new();
    }
    if dropped > 0 {
        tracing::warn!(dropped, path = %path.display(), "cached objects from the API that no longer read: dropped (they come with the first list)");
    }
    tracing::info!(objects = out.len(), path = %path.display(), "objects from the API restored from their cache until the first list");
    out
}

/// Reads the cache (`{"version": 1, "objects": [...]}`), giving each object to `.0` as
/// it is read; an error when the version is not [`CACHE_VERSION`].
struct CacheSeed<'f, F>(&'f mut F);

impl<'de, F: FnMut(crate::store::ObjectRecord)> serde::de::DeserializeSeed<'de>
    for CacheSeed<'_, F>
{
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, F: FnMut(crate::store::ObjectRecord)> serde::de::Visitor<'de> for CacheSeed<'_, F> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("the cache of objects from the API")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        use serde::de::Error;
        let mut version = None;
        let mut objects = false;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "version" => version = Some(map.next_value::<u32>()?),
                "objects" => {
                    map.next_value_seed(RecordsSeed(&mut *self.0))?;
                    objects = true;
                }
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        // Checked at the end, whatever the order of the two: the caller keeps nothing
        // of a cache that fails here.
        match version {
            _ if !objects => Err(A::Error::missing_field("objects")),
            Some(CACHE_VERSION) => Ok(()),
            v => Err(A::Error::custom(format!(
                "version {}, this vswitchd reads {CACHE_VERSION}",
                v.map_or("missing".to_string(), |v| v.to_string())
            ))),
        }
    }
}

struct RecordsSeed<'f, F>(&'f mut F);

impl<'de, F: FnMut(crate::store::ObjectRecord)> serde::de::DeserializeSeed<'de>
    for RecordsSeed<'_, F>
{
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, F: FnMut(crate::store::ObjectRecord)> serde::de::Visitor<'de> for RecordsSeed<'_, F> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a list of objects")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(rec) = seq.next_element::<crate::store::ObjectRecord>()? {
            (self.0)(rec);
        }
        Ok(())
    }
}

/// What the switch knows of its watch of the API, per kind.
#[derive(Debug, Default)]
pub struct ApiState {
    /// Watching at all (`--kubeconfig` or in a cluster), and the server's address.
    pub server: Option<String>,
    kinds: BTreeMap<&'static str, KindState>,
    /// The objects from the API changed since the cache was written; when it was.
    dirty: bool,
    cached_at: u64,
    /// The API's objects held back by an object of the same name applied from a file
    /// (which wins), as the switch would keep them: put in place when the file's is
    /// deleted.
    shadowed: HashMap<ObjectKey, k8s::Stored>,
}

#[derive(Debug, Default)]
struct KindState {
    /// The keys of a list under way.
    listing: Option<HashSet<ObjectKey>>,
    /// When the last complete list ended (ms since the epoch).
    synced: Option<u64>,
    /// The watch's last error, while it is down.
    error: Option<String>,
    lists: u64,
    events: u64,
    /// Objects a list or a watch event could not apply (refused by its kind's checks).
    refused: u64,
}

impl ApiState {
    /// Watch `kinds` of the API server at `server`.
    pub fn watching(server: String, kinds: &[&'static str]) -> ApiState {
        ApiState {
            server: Some(server),
            kinds: kinds.iter().map(|k| (*k, KindState::default())).collect(),
            ..ApiState::default()
        }
    }

    /// Hold back the API's object `key` behind an object applied from a file; whether it
    /// was not held back before.
    pub(super) fn shadow(&mut self, key: ObjectKey, stored: k8s::Stored) -> bool {
        self.shadowed.insert(key, stored).is_none()
    }

    /// The API's object `key`, held back until now.
    pub(super) fn unshadow(&mut self, key: &ObjectKey) -> Option<k8s::Stored> {
        self.shadowed.remove(key)
    }

    /// Every kind watched has been listed once (or nothing is watched).
    pub fn ready(&self) -> bool {
        self.kinds.values().all(|k| k.synced.is_some())
    }

    /// The kinds not listed yet.
    pub fn waiting_for(&self) -> Vec<&'static str> {
        self.kinds
            .iter()
            .filter(|(_, k)| k.synced.is_none())
            .map(|(n, _)| *n)
            .collect()
    }
}

/// The key of an object the API sent (`None`: it has no name).
fn key_of(kind: &'static str, namespaced: bool, object: &Value) -> Option<ObjectKey> {
    let meta = object.get("metadata")?;
    let name = meta.get("name")?.as_str()?.to_string();
    let namespace = if namespaced {
        meta.get("namespace")
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_string()
    } else {
        String::new()
    };
    Some(ObjectKey {
        kind,
        namespace,
        name,
    })
}

impl Switch {
    /// Write the cache of the objects from the API if they changed (`now`: whatever the
    /// time since the last write, as at a clean stop).
    pub(super) fn save_api_cache(&mut self, now: bool) {
        let t = crate::ofproto::now_ms();
        // Not while the first lists are under way (each batch would pay for it), save at a
        // stop.
        if self.api.server.is_none()
            || !self.api.dirty
            || !now && (!self.api.ready() || t.saturating_sub(self.api.cached_at) < CACHE_EVERY_MS)
        {
            return;
        }
        let path = self.config.state_dir.join(CACHE_FILE);
        let tmp = path.with_extension("json.tmp");
        // Streamed, one object at a time: 150,000 Pods are not held twice over.
        let written = std::fs::File::create(&tmp)
            .and_then(|f| {
                let mut w = std::io::BufWriter::new(f);
                serde_json::to_writer(
                    &mut w,
                    &CacheOut {
                        version: CACHE_VERSION,
                        objects: ApiRecords(self),
                    },
                )
                .map_err(std::io::Error::other)?;
                // On disk before it replaces the old one: a crash leaves one or the other
                // whole, never an empty cache (which a restart with the API down would
                // read as no policies at all).
                w.into_inner().map_err(|e| e.into_error())?.sync_all()
            })
            .and_then(|()| std::fs::rename(&tmp, &path))
            .and_then(|()| std::fs::File::open(&self.config.state_dir)?.sync_all());
        match written {
            Ok(()) => {
                self.api.dirty = false;
                self.api.cached_at = t;
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot write the cache of API objects (tried again later)")
            }
        }
    }

    /// Apply a batch of the watcher's updates as one change.
    pub fn api_updates(&mut self, updates: Vec<Update>) {
        // When a kind was last listed, as `show` prints it: wall-clock time, not the
        // switch's monotonic clock.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let done = self.transact(|sw, txn| {
            let mut routes = Vec::new();
            for u in &updates {
                sw.api_update(txn, u, now, &mut routes);
            }
            sw.recompile_stale(txn, &mut routes);
            if !routes.is_empty() {
                txn.then(move |sw| sw.sync_routes(routes));
            }
            Ok(())
        });
        if let Err(e) = done {
            tracing::error!(error = %e.message, updates = updates.len(), "updates from the API not applied");
            let kinds: Vec<&'static str> = updates.iter().map(Update::kind).collect();
            self.api_batch_lost(&kinds, &e.message);
        }
    }

    /// A batch of updates could not be applied (undone whole): its kinds say so in
    /// `show` until their next list or event, since what the switch holds of them may be
    /// behind the API until then.
    pub fn api_batch_lost(&mut self, kinds: &[&'static str], why: &str) {
        for kind in kinds {
            self.api.kinds.entry(kind).or_default().error = Some(format!(
                "updates not applied ({why}): behind the API until the next list"
            ));
        }
    }

    fn api_update(
        &mut self,
        txn: &mut Txn,
        u: &Update,
        now: u64,
        routes: &mut Vec<(u64, Vec<Route>)>,
    ) {
        match u {
            Update::Relist { kind } => {
                let st = self.api.kinds.entry(kind).or_default();
                st.listing = Some(HashSet::new());
                st.error = None;
            }
            Update::Applied {
                kind,
                object,
                listing,
            } => {
                let Some(k) = k8s::kind_named(kind) else {
                    return;
                };
                let key = key_of(k.info().kind, k.info().namespaced, object);
                let st = self.api.kinds.entry(kind).or_default();
                st.events += 1;
                st.error = None;
                if *listing && let (Some(seen), Some(key)) = (st.listing.as_mut(), key.as_ref()) {
                    seen.insert(key.clone());
                }
                match self.apply_object(txn, k, object, FROM_API, routes) {
                    // The cache is written again only for what changed here (a Pod's
                    // status heartbeat changes nothing the switch keeps).
                    Ok(Change::Created | Change::Configured) => self.api.dirty = true,
                    Ok(_) => {}
                    Err(e) => {
                        self.api.kinds.entry(kind).or_default().refused += 1;
                        tracing::warn!(kind = %kind, object = ?key.map(|k| k.to_string()), error = %e, "object from the API not applied");
                    }
                }
            }
            Update::Deleted { kind, object } => {
                let Some(k) = k8s::kind_named(kind) else {
                    return;
                };
                self.api.kinds.entry(kind).or_default().events += 1;
                let Some(key) = key_of(k.info().kind, k.info().namespaced, object) else {
                    return;
                };
                self.api_remove(txn, k, key, routes);
            }
            Update::Listed { kind } => {
                let Some(k) = k8s::kind_named(kind) else {
                    return;
                };
                let st = self.api.kinds.entry(kind).or_default();
                let seen = st.listing.take().unwrap_or_default();
                st.synced = Some(now);
                st.error = None;
                st.lists += 1;
                let gone: Vec<ObjectKey> = self
                    .objects
                    .of_kind(k.info().kind, None)
                    .filter(|(key, s)| s.source == FROM_API && !seen.contains(*key))
                    .map(|(key, _)| key.clone())
                    .collect();
                if !gone.is_empty() {
                    tracing::info!(kind = %kind, removed = gone.len(), "objects the new list no longer holds removed");
                }
                let kind_name = k.info().kind;
                self.api
                    .shadowed
                    .retain(|key, _| key.kind != kind_name || seen.contains(key));
                for key in gone {
                    self.api_remove(txn, k, key, routes);
                }
            }
            Update::Down { kind, error } => {
                let st = self.api.kinds.entry(kind).or_default();
                if st.error.is_none() {
                    tracing::warn!(kind = %kind, error = %error, "watch of the API down; retrying with backoff");
                }
                st.error = Some(error.clone());
            }
        }
    }

    /// Remove an object the API no longer has, if it came from the API (an object
    /// applied from a file with the same name stays).
    fn api_remove(
        &mut self,
        txn: &mut Txn,
        kind: &'static dyn k8s::Kind,
        key: ObjectKey,
        routes: &mut Vec<(u64, Vec<Route>)>,
    ) {
        self.api.shadowed.remove(&key);
        if self.objects.get(&key).is_none_or(|s| s.source != FROM_API) {
            return;
        }
        match self.put_object(txn, kind, key.clone(), None, routes) {
            Ok(()) => self.api.dirty = true,
            Err(e) => {
                tracing::error!(object = %key, error = %e.message, "object deleted from the API not removed")
            }
        }
    }

    /// Every kind watched has been listed once (or nothing is watched).
    pub fn api_ready(&self) -> bool {
        self.api.ready()
    }

    /// The kinds not listed yet.
    pub fn api_waiting_for(&self) -> Vec<&'static str> {
        self.api.waiting_for()
    }

    /// Start watching: the server and the kinds, for `show` and readiness.
    pub fn api_watching(&mut self, server: String, kinds: &[&'static str]) {
        self.api = ApiState::watching(server, kinds);
    }

    /// The watch, as `show` prints it (`None`: not watching).
    pub(super) fn api_status(&self) -> Option<rpc::ApiStatus> {
        let server = self.api.server.clone()?;
        let kinds = self
            .api
            .kinds
            .iter()
            .map(|(kind, st)| rpc::ApiKindStatus {
                kind: kind.to_string(),
                synced: st.synced.map(super::policy::utc),
                up: st.error.is_none(),
                error: st.error.clone(),
                objects: self
                    .objects
                    .of_kind(k8s::kind_named(kind).map_or(*kind, |k| k.info().kind), None)
                    .filter(|(_, s)| s.source == FROM_API)
                    .count() as u64,
                lists: st.lists,
                events: st.events,
                refused: st.refused,
            })
            .collect::<Vec<_>>();
        Some(rpc::ApiStatus {
            server,
            up: kinds.iter().all(|k| k.up),
            ready: self.api.ready(),
            kinds,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_once_every_kind_is_listed() {
        let mut a = ApiState::watching("https://x".into(), &["Pod", "Node"]);
        assert!(!a.ready());
        assert_eq!(a.waiting_for(), ["Node", "Pod"]);
        a.kinds.get_mut("Pod").unwrap().synced = Some(1);
        assert_eq!(a.waiting_for(), ["Node"]);
        a.kinds.get_mut("Node").unwrap().synced = Some(1);
        assert!(a.ready());
        assert!(ApiState::default().ready(), "nothing watched: ready");
    }

    /// Objects as a real API server returns them (every field `kubectl get -o json`
    /// shows: owner references, probes, status, conditions, hints, dual-stack addresses,
    /// newer fields such as `trafficDistribution`) are read, not refused.
    #[test]
    fn objects_as_an_api_server_sends_them_are_read() {
        let objects: Vec<Value> =
            serde_json::from_str(include_str!("../k8s/testdata/from-api-server.json")).unwrap();
        let mut kinds = Vec::new();
        for o in &objects {
            let kind = o["kind"].as_str().unwrap();
            let k = k8s::kind_named(kind).unwrap();
            if let Err(e) = k.read(o) {
                panic!("{kind} {}: {e}", o["metadata"]["name"]);
            }
            kinds.push(kind);
        }
        kinds.sort();
        kinds.dedup();
        assert_eq!(kinds.len(), 6, "every kind watched: {kinds:?}");
    }

    #[test]
    fn keys_of_api_objects() {
        let o = serde_json::json!({"metadata": {"name": "a", "namespace": "x"}});
        assert_eq!(key_of("Pod", true, &o).unwrap().to_string(), "pod/x/a");
        let o = serde_json::json!({"metadata": {"name": "n2"}});
        assert_eq!(key_of("Node", false, &o).unwrap().namespace, "");
        assert!(key_of("Pod", true, &serde_json::json!({})).is_none());
    }
}
