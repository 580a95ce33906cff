//! Kubernetes objects: `apply`, `delete` and `get`, through the kinds of the `k8s`
//! registry. A manifest is one transaction: every object is read, checked, compiled and
//! installed in memory, the whole manifest is made durable in one journal append and
//! published to the workers once, then the routes its objects need are set. Each object
//! gets its own outcome; when the manifest cannot be made durable, none of it stays and
//! each object that would have changed is reported as not applied.

use super::overlay::FROM_MANIFEST;
use super::{Refusal, Switch, Txn};
use crate::k8s::{self, Checked, Kind, NodeCtx, ObjectKey, Route, Stored};
use crate::ofproto::now_ms;
use crate::store::{Image, ObjectRecord, Op};
use crate::sys::netlink::Rtnl;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use vswitch_proto::k8s as manifest;
use vswitch_proto::rpc::{self, ApplyOutcome, GetColumn, GetItem, GetParams, GetResult};

/// What became of one object, as `apply` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Change {
    Created,
    Configured,
    Unchanged,
    Deleted,
}

impl Change {
    fn as_str(self) -> &'static str {
        match self {
            Change::Created => "created",
            Change::Configured => "configured",
            Change::Unchanged => "unchanged",
            Change::Deleted => "deleted",
        }
    }
}

impl Switch {
    /// What the node knows of itself, for the kinds' checks and compilers.
    pub(super) fn node_ctx(&self) -> NodeCtx<'_> {
        NodeCtx {
            name: &self.config.node_name,
            local: self.podnet.net.as_ref(),
            node_ip: self.tunnel_local(),
            zone: self.config.node_zone.as_deref(),
            pods: &self.podnet.bound,
            audit: self.config.netpol_audit_log.is_some(),
        }
    }

    /// An object as the state file keeps it.
    pub(super) fn object_record(&self, key: &ObjectKey, stored: &Stored) -> ObjectRecord {
        let kind = k8s::kind_named(key.kind).expect("a stored object's kind is registered");
        ObjectRecord {
            kind: key.kind.to_string(),
            namespace: key.namespace.clone(),
            name: key.name.clone(),
            source: stored.source.clone(),
            id: stored.id,
            object: kind.to_object(key, stored),
        }
    }

    /// `apply`: each object in order, one outcome each, in one transaction.
    pub fn apply(&mut self, objects: &[rpc::ManifestObject]) -> rpc::ApplyResult {
        self.manifest(objects, false)
    }

    /// `delete`: each object removed, or reported as not found.
    pub fn delete(&mut self, objects: &[rpc::ManifestObject]) -> rpc::ApplyResult {
        self.manifest(objects, true)
    }

    fn manifest(&mut self, objects: &[rpc::ManifestObject], delete: bool) -> rpc::ApplyResult {
        let mut results: Vec<ApplyOutcome> = Vec::with_capacity(objects.len());
        let done = self.transact(|sw, txn| {
            let mut routes = Vec::new();
            for o in objects {
                results.push(sw.apply_one(txn, o, delete, &mut routes));
            }
            sw.recompile_stale(txn, &mut routes);
            if !routes.is_empty() {
                txn.then(move |sw| sw.sync_routes(routes));
            }
            Ok(())
        });
        if let Err(e) = done {
            // Nothing of the manifest stays: every object it changed, and every later
            // outcome about one of those objects, is not applied.
            let key = |r: &ApplyOutcome| (r.kind.clone(), r.namespace.clone(), r.name.clone());
            let changed: std::collections::HashSet<_> = results
                .iter()
                .filter(|r| matches!(r.outcome.as_str(), "created" | "configured" | "deleted"))
                .map(key)
                .collect();
            for r in &mut results {
                if r.outcome != "skipped" && r.outcome != "error" && changed.contains(&key(r)) {
                    r.outcome = "error".into();
                    r.message = Some(format!(
                        "not applied: the state could not be saved: {}",
                        e.message
                    ));
                }
            }
        }
        rpc::ApplyResult { results }
    }

    /// One object of a manifest, inside the manifest's change.
    fn apply_one(
        &mut self,
        txn: &mut Txn,
        o: &rpc::ManifestObject,
        delete: bool,
        routes: &mut Vec<(u64, Vec<Route>)>,
    ) -> ApplyOutcome {
        let (kind_name, name) = manifest::object_kind_name(&o.object);
        let api_version = o
            .object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let namespace = o
            .object
            .get("metadata")
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let mut out = ApplyOutcome {
            source: o.source.clone(),
            doc: o.doc,
            kind: kind_name.clone(),
            group: api_version
                .rsplit_once('/')
                .map_or("", |(g, _)| g)
                .to_string(),
            namespace: None,
            name: name.clone(),
            outcome: String::new(),
            message: None,
        };
        let Some(kind) = k8s::kind_of(&kind_name, api_version) else {
            out.outcome = "skipped".into();
            out.message = Some(format!(
                "kind {kind_name} ({api_version}) is not handled by this switch yet"
            ));
            return out;
        };
        if kind.info().namespaced {
            out.namespace = Some(namespace.unwrap_or_else(|| "default".into()));
        }
        let result = if delete {
            self.delete_object(txn, kind, &out, routes)
        } else {
            self.apply_object(txn, kind, &o.object, FROM_MANIFEST, routes)
        };
        match result {
            Ok(c) => out.outcome = c.as_str().into(),
            Err(m) if m == "not found" => out.outcome = m,
            Err(m) => {
                out.outcome = "error".into();
                out.message = Some(m);
            }
        }
        out
    }

    fn delete_object(
        &mut self,
        txn: &mut Txn,
        kind: &'static dyn Kind,
        out: &ApplyOutcome,
        routes: &mut Vec<(u64, Vec<Route>)>,
    ) -> Result<Change, String> {
        if out.name.is_empty() {
            return Err("metadata.name: missing".into());
        }
        if kind.info().kind == manifest::NODE_KIND && out.name == self.config.node_name {
            return Err(format!(
                "metadata.name: {} is this node; its Pod network goes with vswitchd --pod-cidr",
                out.name
            ));
        }
        let key = ObjectKey {
            kind: kind.info().kind,
            namespace: out.namespace.clone().unwrap_or_default(),
            name: out.name.clone(),
        };
        if self.objects.get(&key).is_none() {
            return Err("not found".into());
        }
        let shadowed = self
            .objects
            .get(&key)
            .filter(|s| s.source != super::api::FROM_API)
            .and_then(|_| self.api.unshadow(&key));
        self.put_object(txn, kind, key.clone(), None, routes)
            .map_err(|r| r.message)?;
        // The API's object of that name, which the file's held back, takes its place.
        if let Some(api) = shadowed {
            self.put_object(txn, kind, key, Some(api), routes)
                .map_err(|r| r.message)?;
        }
        Ok(Change::Deleted)
    }

    /// Read, check, compile and install one object (`apply`, `add-node`).
    pub(super) fn apply_object(
        &mut self,
        txn: &mut Txn,
        kind: &'static dyn Kind,
        object: &Value,
        source: &str,
        routes: &mut Vec<(u64, Vec<Route>)>,
    ) -> Result<Change, String> {
        let (key, spec) = kind.read(object).map_err(|e| e.to_string())?;
        match kind
            .check(&self.node_ctx(), &self.objects, &key, &spec)
            .map_err(|e| e.to_string())?
        {
            Checked::Ok => {}
            Checked::ThisNode(Ok(())) => return Ok(Change::Unchanged),
            Checked::ThisNode(Err(e)) => return Err(e.to_string()),
        }
        let old = self.objects.get(&key).cloned();
        let from_api = |s: &str| s == super::api::FROM_API;
        if let Some(o) = &old
            && from_api(source)
            && !from_api(&o.source)
        {
            // An object applied from a file wins over the API's of the same name, which
            // waits until the file's is deleted (the user's configuration is not taken
            // over, nor later removed with the API's).
            let first = self.api.shadow(
                key.clone(),
                Stored {
                    spec,
                    source: source.to_string(),
                    id: o.id,
                },
            );
            if first {
                tracing::info!(object = %key, source = %o.source, "the API has an object applied from a file here: the file's stays, the API's waits until it is deleted (vswitchctl delete -f)");
            }
            return Ok(Change::Unchanged);
        }
        // The API's taken over by a file (the same or not): the user's, saved, from here
        // on; the API's waits behind it.
        let taken_over = old
            .as_ref()
            .filter(|o| !from_api(source) && from_api(&o.source))
            .cloned();
        if let Some(o) = &old
            && o.spec == spec
            && taken_over.is_none()
        {
            // The same again: a route that could not be set before is tried again.
            let owner = kind.owner(o);
            let want = kind
                .compile(&self.node_ctx(), &self.objects, &key, o)
                .routes;
            if self.routes.get(&owner).is_none_or(|r| *r != want) && !want.is_empty() {
                routes.push((owner, want));
            }
            return Ok(Change::Unchanged);
        }
        let id = match &old {
            Some(o) => o.id,
            None => self
                .objects
                .free_id(key.kind)
                .ok_or_else(|| format!("too many objects of kind {}", key.kind))?,
        };
        let stored = Stored {
            spec,
            source: source.to_string(),
            id,
        };
        self.put_object(txn, kind, key.clone(), Some(stored), routes)
            .map_err(|r| r.message)?;
        if let Some(o) = taken_over {
            self.api.shadow(key, o);
        }
        Ok(if old.is_some() {
            Change::Configured
        } else {
            Change::Created
        })
    }

    /// Put (or remove) an object: its rules compiled and installed under its owner (all
    /// or nothing), the store and the journal updated, its routes queued for after the
    /// change; undone with the change.
    pub(super) fn put_object(
        &mut self,
        txn: &mut Txn,
        kind: &'static dyn Kind,
        key: ObjectKey,
        stored: Option<Stored>,
        routes: &mut Vec<(u64, Vec<Route>)>,
    ) -> Result<(), Refusal> {
        let old = self.objects.get(&key).cloned();
        let owner = stored
            .as_ref()
            .or(old.as_ref())
            .map(|s| kind.owner(s))
            .expect("an object to put or remove");
        // The objects compiled from this one too (a slice's Service, before and after).
        let mut related: Vec<ObjectKey> = match (&old, &stored) {
            (Some(o), Some(s)) => kind.related_change(&self.objects, &key, &o.spec, &s.spec),
            _ => old
                .iter()
                .chain(&stored)
                .flat_map(|s| kind.related(&self.objects, &key, &s.spec))
                .collect(),
        };
        related.sort();
        related.dedup();
        // Stored first, so that the compilers see it; put back if its rules are refused.
        let before = self.objects.put(key.clone(), stored.clone());
        let compiled = stored
            .as_ref()
            .map(|s| kind.compile(&self.node_ctx(), &self.objects, &key, s))
            .unwrap_or_default();
        if let Err(e) = self
            .bridge
            .set_owned(owner, compiled.rules, compiled.groups, now_ms())
        {
            self.objects.put(key, before);
            return Err(Refusal::refused(format!("its flows were refused: {e}")));
        }
        // Compiled now: it need not be again for this change.
        self.stale.remove(&key);
        self.patches.remove(&key);
        self.set_plan(txn, owner, compiled.plan);
        let pod_change = k8s::netpol::pod_change(
            &key,
            old.as_ref().map(|o| &o.spec),
            stored.as_ref().map(|s| &s.spec),
        )
        .map(Arc::new);
        // Objects from the API are not saved (listed again at start): the journal changes
        // only when a saved object comes, goes or changes (one from a file the API now
        // has is no longer saved).
        let saved = |s: &Option<Stored>| {
            s.as_ref()
                .filter(|s| s.source != super::api::FROM_API)
                .is_some()
        };
        if saved(&old) || saved(&stored) {
            let record = stored
                .as_ref()
                .filter(|s| s.source != super::api::FROM_API)
                .map(|s| self.object_record(&key, s));
            txn.op(Op::Object {
                kind: key.kind.to_string(),
                ns: key.namespace.clone(),
                name: key.name.clone(),
                v: record,
            });
        }
        txn.on_undo(move |sw| {
            sw.objects.put(key, before);
        });
        routes.push((owner, compiled.routes));
        self.set_dnats(txn, owner, compiled.backends);
        self.set_host(txn, owner, compiled.host);
        // A Pod's change: the policies it affects may be patched rather than compiled
        // again, unless they owe a full compile already (or come to owe one).
        for k in &related {
            match &pod_change {
                Some(c) if !self.stale.contains(k) || self.patches.contains_key(k) => {
                    self.patches.entry(k.clone()).or_default().push(c.clone())
                }
                _ => {
                    self.patches.remove(k);
                }
            }
        }
        self.stale.extend(related);
        Ok(())
    }

    /// Compile again the objects the change made stale (`put_object`), each once: a
    /// manifest of many Pods and policies costs each policy one compile.
    pub(super) fn recompile_stale(&mut self, txn: &mut Txn, routes: &mut Vec<(u64, Vec<Route>)>) {
        let mut patches = std::mem::take(&mut self.patches);
        for key in std::mem::take(&mut self.stale) {
            let patched = patches
                .remove(&key)
                .is_some_and(|changes| self.patch(txn, &key, &changes));
            if !patched {
                self.recompile(txn, &key, routes);
            }
        }
    }

    /// Patch policy `key` by Pods' changes (one peer clause each, where a compile again
    /// would select every peer of every rule); `false` when that cannot
    /// express them (then it is compiled again, which also sets whatever part of the
    /// patch went in).
    fn patch(
        &mut self,
        txn: &mut Txn,
        key: &ObjectKey,
        changes: &[Arc<k8s::netpol::PodChange>],
    ) -> bool {
        let Some(stored) = self.objects.get(key) else {
            return true;
        };
        let kind = k8s::kind_named(key.kind).expect("a stored object's kind is registered");
        let owner = kind.owner(stored);
        let Some(mut plan) = self.plans.get(&owner).cloned() else {
            return false;
        };
        let mut steps = Vec::with_capacity(changes.len());
        {
            let node = self.node_ctx();
            for c in changes {
                let Some((add, remove, next)) =
                    k8s::netpol::patch_policy(&node, &self.objects, key, stored, &plan, c)
                else {
                    return false;
                };
                steps.push((add, remove));
                plan = Arc::new(next);
            }
        }
        for (add, remove) in steps {
            if self
                .bridge
                .patch_owned(owner, add, remove, now_ms())
                .is_err()
            {
                return false;
            }
        }
        self.set_plan(txn, owner, Some(plan));
        true
    }

    /// Record what a policy's compile (or patch) made, undone with the change.
    fn set_plan(&mut self, txn: &mut Txn, owner: u64, plan: Option<Arc<k8s::netpol::Plan>>) {
        let before = match plan {
            Some(p) => self.plans.insert(owner, p),
            None => self.plans.remove(&owner),
        };
        txn.on_undo(move |sw| match before {
            Some(p) => {
                sw.plans.insert(owner, p);
            }
            None => {
                sw.plans.remove(&owner);
            }
        });
    }

    /// Record what an owner's new connections may be translated to; once the change is
    /// in, the connections of translations that went are removed from the connection
    /// table (their endpoint left: a UDP flow must not stay pinned to it, a TCP one fails
    /// fast instead of hanging), as kube-proxy clears them. Connections to endpoints that
    /// stay are kept.
    fn set_dnats(&mut self, txn: &mut Txn, owner: u64, mut now: Vec<k8s::Dnat>) {
        now.sort_unstable();
        now.dedup();
        let old = if now.is_empty() {
            self.dnats.remove(&owner)
        } else {
            self.dnats.insert(owner, now.clone())
        }
        .unwrap_or_default();
        let gone: Vec<k8s::Dnat> = old
            .iter()
            .filter(|d| now.binary_search(d).is_err())
            .copied()
            .collect();
        txn.on_undo(move |sw| {
            if old.is_empty() {
                sw.dnats.remove(&owner);
            } else {
                sw.dnats.insert(owner, old);
            }
        });
        if !gone.is_empty() {
            txn.then(move |sw| sw.flush_dnats(&gone));
        }
    }

    /// Record what the node's stack must do for an owner (its NodePorts, external
    /// addresses and health check), installed once the change is in.
    fn set_host(&mut self, txn: &mut Txn, owner: u64, now: Vec<k8s::HostRule>) {
        let old = self.host.want(owner, now);
        txn.on_undo(move |sw| {
            sw.host.want(owner, old);
        });
        txn.then(move |sw| sw.host.sync(owner));
    }

    /// Remove the Pod network's connections translated by any of `gone`.
    fn flush_dnats(&self, gone: &[k8s::Dnat]) {
        let bits = |a: std::net::Ipv4Addr| Some(u32::from(a) as u128);
        let filters: Vec<crate::ct::TupleFilter> = gone
            .iter()
            .map(|d| crate::ct::TupleFilter {
                proto: Some(d.proto),
                dst: bits(d.vip),
                dport: Some(d.vport),
                reply_src: bits(d.ep),
                reply_sport: Some(d.eport),
                ..Default::default()
            })
            .collect();
        let n = self
            .conntrack()
            .flush_any(Some(k8s::pipeline::CT_ZONE), &filters);
        if n > 0 {
            tracing::info!(
                connections = n,
                endpoints = gone.len(),
                "connections to endpoints that left their Service removed"
            );
        }
    }

    /// Compile a stored object again (another object it is joined to changed) and
    /// install what it now needs; nothing when it is not stored.
    fn recompile(&mut self, txn: &mut Txn, key: &ObjectKey, routes: &mut Vec<(u64, Vec<Route>)>) {
        let Some(stored) = self.objects.get(key) else {
            return;
        };
        let kind = k8s::kind_named(key.kind).expect("a stored object's kind is registered");
        let owner = kind.owner(stored);
        let c = kind.compile(&self.node_ctx(), &self.objects, key, stored);
        match self.bridge.set_owned(owner, c.rules, c.groups, now_ms()) {
            Ok(_) => {
                self.set_plan(txn, owner, c.plan);
                routes.push((owner, c.routes));
                self.set_dnats(txn, owner, c.backends);
                self.set_host(txn, owner, c.host);
            }
            Err(e) => {
                tracing::error!(object = %key, error = %e, "flows refused when compiled again")
            }
        }
    }

    /// One object from a call other than `apply` (`add-node`), as its own change.
    pub(super) fn put_one(&mut self, object: &Value, source: &str) -> Result<(), Refusal> {
        let (kind_name, _) = manifest::object_kind_name(object);
        let kind = k8s::kind_named(&kind_name)
            .ok_or_else(|| Refusal::refused(format!("kind {kind_name} is not handled")))?;
        self.transact(|sw, txn| {
            let mut routes = Vec::new();
            sw.apply_object(txn, kind, object, source, &mut routes)
                .map_err(|m| {
                    Refusal::refused(m.split_once(": ").map_or(m.clone(), |(_, r)| r.to_string()))
                })?;
            sw.recompile_stale(txn, &mut routes);
            txn.then(move |sw| sw.sync_routes(routes));
            Ok(())
        })
        .and_then(|()| self.route_error())
    }

    /// Remove one object (`del-node`), as its own change.
    pub(super) fn remove_one(&mut self, key: ObjectKey) -> Result<(), Refusal> {
        let kind = k8s::kind_named(key.kind).expect("a stored object's kind is registered");
        self.transact(|sw, txn| {
            let mut routes = Vec::new();
            sw.put_object(txn, kind, key, None, &mut routes)?;
            sw.recompile_stale(txn, &mut routes);
            txn.then(move |sw| sw.sync_routes(routes));
            Ok(())
        })
    }

    /// After `add-node`: whether the route it needs could be set (the node stays
    /// recorded either way, and its route is tried again at the next apply or start).
    fn route_error(&mut self) -> Result<(), Refusal> {
        match self.last_route_error.take() {
            None => Ok(()),
            Some(e) => Err(Refusal::refused(format!(
                "the node is recorded but its route could not be installed: {e}"
            ))),
        }
    }

    /// At start: the objects as saved (and the remote nodes of a version-1 state, as
    /// Node objects), each checked again against this start's settings and installed;
    /// one that no longer fits (a node that now overlaps this one) stays saved but
    /// gets no rules, and says why. Then `cached`, the objects from the API read back
    /// from their cache (`api::read_cache`), after the saved ones, which win where the
    /// two conflict.
    pub(super) fn restore_objects(&mut self, image: &Image, cached: Vec<(ObjectKey, Stored)>) {
        let mut restored: Vec<(ObjectKey, Stored)> = Vec::new();
        for rec in image.objects.values() {
            let Some(kind) = k8s::kind_named(&rec.kind) else {
                tracing::error!(kind = %rec.kind, name = %rec.name, "saved object of a kind this vswitchd does not know: dropped");
                continue;
            };
            match kind.read(&rec.object) {
                Ok((key, spec)) => restored.push((
                    key,
                    Stored {
                        spec,
                        source: rec.source.clone(),
                        id: rec.id,
                    },
                )),
                Err(e) => {
                    tracing::error!(kind = %rec.kind, name = %rec.name, error = %e, "saved object no longer reads: dropped")
                }
            }
        }
        for n in &image.v1_nodes {
            let object = serde_json::json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": { "name": n.name },
                "spec": { "podCIDR": n.pod_cidr },
                "status": { "addresses": [{ "type": "InternalIP", "address": n.node_ip }] },
            });
            match k8s::node::NODE.read(&object) {
                Ok((key, spec)) => restored.push((
                    key,
                    Stored {
                        spec,
                        source: n.source.clone(),
                        id: n.id,
                    },
                )),
                Err(e) => {
                    tracing::error!(node = %n.name, error = %e, "saved node no longer reads: dropped")
                }
            }
        }
        restored.extend(cached);
        let n = restored.len();
        // Checked and stored first, then compiled: an object's rules may need others (a
        // Service its slices).
        let mut install = Vec::with_capacity(n);
        for (key, stored) in restored {
            let kind = k8s::kind_named(key.kind).expect("registered");
            let ok = match kind.check(&self.node_ctx(), &self.objects, &key, &stored.spec) {
                Ok(Checked::Ok) => true,
                Ok(Checked::ThisNode(_)) => false,
                Err(e) => {
                    tracing::error!(object = %key, error = %e, "saved object does not fit this start's settings: kept, not installed");
                    false
                }
            };
            if ok {
                install.push(key.clone());
            }
            self.objects.put(key, Some(stored));
        }
        for key in install {
            let kind = k8s::kind_named(key.kind).expect("registered");
            let stored = self.objects.get(&key).expect("just stored");
            let c = kind.compile(&self.node_ctx(), &self.objects, &key, stored);
            let owner = kind.owner(stored);
            match self.bridge.set_owned(owner, c.rules, c.groups, now_ms()) {
                Ok(()) => {
                    if let Some(p) = c.plan {
                        self.plans.insert(owner, p);
                    }
                }
                Err(e) => {
                    tracing::error!(object = %key, error = %e, "saved object's flows refused")
                }
            }
            self.pending_routes.push((owner, c.routes));
            self.host.want(owner, c.host);
            if !c.backends.is_empty() {
                let mut b = c.backends;
                b.sort_unstable();
                b.dedup();
                self.dnats.insert(owner, b);
            }
        }
        if n > 0 {
            tracing::info!(objects = n, "Kubernetes objects restored");
        }
    }

    /// At start, once the groups are back: Services' session affinity, from the
    /// connection table (which outlived the process): each client of a Service port with
    /// affinity is remembered on the endpoint its live connections were translated to, as
    /// of now, so a restart of `vswitchd` does not move it (kube-proxy's `recent` lists
    /// live in the kernel and outlive it too). What the table does not hold (a client
    /// whose connections all ended) is forgotten.
    pub(super) fn restore_affinity(&self) {
        use std::collections::HashMap;
        let pipe = self.bridge.pipeline();
        let any = pipe.groups().any(|g| g.affinity.is_some());
        if !any {
            return;
        }
        // (proto, vip, vport, ep, eport) -> the Service translating it.
        let mut by_dnat: HashMap<(u8, u32, u16, u32, u16), u32> = HashMap::new();
        for (&owner, dnats) in &self.dnats {
            let Some((k8s::pipeline::CookieKind::Service, id)) =
                k8s::pipeline::CookieKind::of(owner)
            else {
                continue;
            };
            for d in dnats {
                let key = (d.proto, d.vip.into(), d.vport, d.ep.into(), d.eport);
                by_dnat.insert(key, id as u32);
            }
        }
        let now = now_ms();
        let mut kept = 0usize;
        let mark = k8s::pipeline::ct_mark::SERVICE;
        self.ct.for_each(Some(k8s::pipeline::CT_ZONE), now, |c| {
            // Connections policy never let through are no client's choice.
            if c.mark & mark == 0 || c.mark & k8s::pipeline::ct_mark::PENDING != 0 || c.orig.v6 {
                return;
            }
            let (vip, ep) = (c.orig.dst as u32, c.reply.src as u32);
            let key = (c.orig.proto, vip, c.orig.dport, ep, c.reply.sport);
            let Some(&id) = by_dnat.get(&key) else {
                return;
            };
            let to = format!("{}:{}", std::net::Ipv4Addr::from(ep), c.reply.sport);
            for gid in k8s::service::groups_of(id) {
                let Some(g) = pipe.group(gid) else {
                    continue;
                };
                let (Some(aff), Some(secs)) = (&g.affinity, g.spec.affinity) else {
                    continue;
                };
                let bucket = g
                    .spec
                    .buckets
                    .iter()
                    .position(|b| k8s::service::bucket_endpoint(b).as_deref() == Some(&to));
                if let Some(b) = bucket {
                    aff.set(c.orig.src, g.bucket_keys[b], now, secs as u64 * 1000);
                    kept += 1;
                }
            }
        });
        if kept > 0 {
            tracing::info!(
                clients = kept,
                "Services' session affinity restored from the connection table"
            );
        }
    }

    /// At start, once published: the routes the restored objects need.
    pub(super) fn sync_all_routes(&mut self) {
        let routes = std::mem::take(&mut self.pending_routes);
        self.sync_routes(routes);
        self.last_route_error = None;
    }

    /// Make the switch's namespace hold the routes each owner now needs (`CIDR via GW
    /// dev <gateway port> onlink`), on one netlink socket: what an owner no longer needs
    /// goes, what it needs is set (replaced). A route that cannot be set is logged, not
    /// recorded, and tried again when its object is applied again or at the next start.
    pub(super) fn sync_routes(&mut self, wanted: Vec<(u64, Vec<Route>)>) {
        let Some(gw) = self
            .podnet
            .net
            .as_ref()
            .and_then(|n| self.ports.get(n.gateway_port))
            .map(|p| p.record.ifname.clone())
        else {
            return;
        };
        let mut sock: Option<Rtnl> = None;
        for (owner, want) in wanted {
            let have = self.routes.remove(&owner).unwrap_or_default();
            if want.is_empty() && have.is_empty() {
                continue;
            }
            if sock.is_none() {
                match Rtnl::open() {
                    Ok(s) => sock = Some(s),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot set routes to remote nodes");
                        self.last_route_error = Some(e.to_string());
                        return;
                    }
                }
            }
            let Some(nl) = sock.as_mut() else { return };
            // The gateway's index, looked up once and kept until a route fails.
            let index = match self.gateway_ifindex {
                Some(i) => i,
                None => match nl.link_index(&gw) {
                    Ok(Some(i)) => {
                        self.gateway_ifindex = Some(i);
                        i
                    }
                    Ok(None) | Err(_) => {
                        let msg = format!("the gateway {gw} is not in the switch's namespace");
                        tracing::error!(error = %msg, "routes to remote nodes not set");
                        self.last_route_error = Some(msg);
                        return;
                    }
                },
            };
            for r in have.iter().filter(|r| !want.contains(r)) {
                let del = nl.del_route(
                    IpAddr::V4(r.dst.network()),
                    r.dst.prefix(),
                    IpAddr::V4(r.via),
                    index,
                );
                if let Err(e) = del {
                    tracing::warn!(route = %r.dst, error = %e, "cannot remove a route to a node");
                }
            }
            let mut set = Vec::with_capacity(want.len());
            for r in want {
                if have.contains(&r) {
                    // Set already (the kernel's route replace walks its routes: a change
                    // that keeps the route does not pay for it).
                    set.push(r);
                    continue;
                }
                let done = nl.replace_route_onlink(
                    IpAddr::V4(r.dst.network()),
                    r.dst.prefix(),
                    IpAddr::V4(r.via),
                    index,
                );
                match done {
                    Ok(()) => set.push(r),
                    Err(e) => {
                        let msg = format!("route to {} via {gw}: {e}", r.dst);
                        tracing::error!(error = %msg, "route not installed");
                        self.last_route_error = Some(msg);
                        self.gateway_ifindex = None;
                    }
                }
            }
            if !set.is_empty() {
                self.routes.insert(owner, set);
            }
        }
    }

    /// `get`: the objects of one kind, or one, with the columns their kind shows.
    pub fn get(&self, p: &GetParams) -> Result<GetResult, Refusal> {
        let kind = k8s::resource(&p.resource).ok_or_else(|| Refusal {
            data: Some(serde_json::json!({ "reason": "UnknownResource" })),
            ..Refusal::not_found(format!(
                "the server doesn't have a resource type {:?}",
                p.resource
            ))
        })?;
        let info = kind.info();
        let namespace = match (info.namespaced, p.all_namespaces) {
            (false, _) | (true, true) => None,
            (true, false) => Some(p.namespace.clone().unwrap_or_else(|| "default".into())),
        };
        let mut columns = vec![GetColumn {
            name: "NAME".into(),
            wide: false,
        }];
        columns.extend(kind.columns());
        // Where each object came from: `manifest` (apply -f), `api` (the API server),
        // `flags` (this node), `add-node`.
        columns.push(GetColumn {
            name: "SOURCE".into(),
            wide: true,
        });
        let item = |key: &ObjectKey, stored: &Stored| {
            let mut cells = vec![key.name.clone()];
            cells.extend(kind.cells(key, stored));
            if let (k8s::Spec::Service(svc), Some(last)) = (&stored.spec, cells.last_mut()) {
                let pipe = self.bridge.pipeline();
                *last = k8s::service::endpoints_cell(stored.id, svc, |gid| {
                    let g = pipe.group(gid)?;
                    Some(
                        g.buckets()
                            .iter()
                            .zip(g.bucket_stats.iter())
                            .filter_map(|(b, st)| {
                                Some((k8s::service::bucket_endpoint(b)?, st.packets()))
                            })
                            .collect(),
                    )
                });
            }
            cells.push(stored.source.clone());
            let mut object = kind.to_object(key, stored);
            if let k8s::Spec::NetworkPolicy(_) = &stored.spec {
                // Per rule: connections allowed, their packets; what isolation denied.
                let c = self.policy_counters(stored);
                cells[2] = c.connections().to_string();
                cells[3] = c.packets().to_string();
                cells[4] = c.denied().to_string();
                object["status"] = c.to_value();
            }
            GetItem {
                namespace: info.namespaced.then(|| key.namespace.clone()),
                name: key.name.clone(),
                cells,
                object,
            }
        };
        let mut items: Vec<GetItem> = Vec::new();
        if info.kind == manifest::NODE_KIND
            && let Some((k, s)) = self.local_node_object()
        {
            let mut this = item(&k, &s);
            if self.tunnel_local().is_none() {
                // No tunnel: the node has no address the switch knows.
                this.cells[2] = "<none>".into();
            }
            items.push(this);
        }
        items.extend(
            self.objects
                .of_kind(info.kind, namespace.as_deref())
                .map(|(k, s)| item(k, s)),
        );
        if let Some(name) = &p.name {
            items.retain(|i| &i.name == name);
            if items.is_empty() {
                return Err(Refusal {
                    data: Some(serde_json::json!({ "reason": "NotFound" })),
                    ..Refusal::not_found(format!("{} {name:?} not found", info.plural))
                });
            }
        }
        Ok(GetResult {
            kind: info.kind.into(),
            api_version: info.api_version(),
            resource: info.plural.into(),
            namespaced: info.namespaced,
            columns,
            items,
        })
    }

    /// This node as a Node object (from its flags), for `get nodes`.
    fn local_node_object(&self) -> Option<(ObjectKey, Stored)> {
        let net = self.podnet.net.as_ref()?;
        Some((
            k8s::node::key(&self.config.node_name),
            Stored {
                spec: k8s::Spec::Node(k8s::node::RemoteNode {
                    cidr: net.cidr,
                    node_ip: self
                        .tunnel_local()
                        .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
                }),
                source: "flags".into(),
                id: 0,
            },
        ))
    }
}

/// Routes by owner (what [`Switch::sync_routes`] keeps).
pub(super) type Routes = BTreeMap<u64, Vec<Route>>;
