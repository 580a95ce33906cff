//! The one way the switch changes: "durable, then applied, or rolled back".
//!
//! A change is made in memory first (the object store, the Pod records, the bridge's
//! master tables, none of it visible to the workers yet), with what it writes to the
//! journal and how to undo each step. Then it is made durable in one journal append
//! ([`crate::store::Store::commit`]), with the user's flows and groups the bridge says
//! changed. Only then do the workers see it ([`crate::ofproto::Bridge::publish`]), and
//! only then do the steps that must not be undone run (a device handed to the workers or
//! removed, a route). If the change is refused, cannot be made durable, or panics, every
//! step is undone and nothing of it is left, in memory, on disk or in the datapath.

use super::{Refusal, Switch};
use crate::ofproto::{Origin, UserChange};
use crate::store::{Image, Op, flow_key};
use vswitch_proto::text::{self, NoPortNames};

type Step = Box<dyn FnOnce(&mut Switch)>;

/// A change being made (see [`Switch::transact`]).
#[derive(Default)]
pub struct Txn {
    ops: Vec<Op>,
    undo: Vec<Step>,
    after: Vec<Step>,
}

impl std::fmt::Debug for Txn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Txn")
            .field("ops", &self.ops.len())
            .field("undo", &self.undo.len())
            .field("after", &self.after.len())
            .finish()
    }
}

impl Txn {
    /// Write this record to the journal.
    pub fn op(&mut self, op: Op) {
        self.ops.push(op);
    }

    /// If the change fails, do this (undo steps run newest first).
    pub fn on_undo(&mut self, f: impl FnOnce(&mut Switch) + 'static) {
        self.undo.push(Box::new(f));
    }

    /// Once the change is durable and published, do this (in order).
    pub fn then(&mut self, f: impl FnOnce(&mut Switch) + 'static) {
        self.after.push(Box::new(f));
    }
}

impl Switch {
    /// Run `change`, then make it durable and publish it; if `change` refuses, the
    /// journal cannot be written, or `change` panics, undo everything it did.
    pub fn transact<T>(
        &mut self,
        change: impl FnOnce(&mut Switch, &mut Txn) -> Result<T, Refusal>,
    ) -> Result<T, Refusal> {
        debug_assert!(!self.bridge.has_pending(), "a change was left unpublished");
        let mut txn = Txn::default();
        // The switch's own rules are merged once per slot, when the change is done.
        self.bridge.defer_owned();
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let v = change(self, &mut txn)?;
            self.bridge.flush_owned(crate::ofproto::now_ms());
            Ok(v)
        }));
        let value = match run {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                self.undo(txn);
                return Err(e);
            }
            Err(panic) => {
                self.undo(txn);
                std::panic::resume_unwind(panic);
            }
        };
        let mut ops = std::mem::take(&mut txn.ops);
        ops.extend(self.user_ops());
        if let Err(e) = self.store.commit(&ops) {
            self.undo(txn);
            return Err(e.into());
        }
        self.bridge.publish();
        for step in std::mem::take(&mut txn.after) {
            step(self);
        }
        self.bridge.publish();
        self.compact_if_due();
        Ok(value)
    }

    fn undo(&mut self, txn: Txn) {
        self.bridge.rollback();
        // Nothing of the change is owed any more.
        self.stale.clear();
        self.patches.clear();
        for step in txn.undo.into_iter().rev() {
            step(self);
        }
    }

    /// The journal records of the user's flows and groups changed in the bridge.
    fn user_ops(&self) -> Vec<Op> {
        self.bridge
            .pending_user_changes()
            .into_iter()
            .map(|c| match c {
                UserChange::Flow(r) => Op::Flow {
                    k: flow_key(
                        r.table,
                        r.priority,
                        &text::display_match(&r.matching, None, &NoPortNames).to_string(),
                    ),
                    v: Some(text::display_flow(&r.to_spec(), &NoPortNames, None).to_string()),
                },
                UserChange::FlowGone(gone) => Op::Flow {
                    k: flow_key(
                        gone.0,
                        gone.1,
                        &text::display_match(&gone.2, None, &NoPortNames).to_string(),
                    ),
                    v: None,
                },
                UserChange::Group(g) => Op::Group {
                    id: g.spec.group_id,
                    v: Some(text::display_group(&g.spec, &NoPortNames).to_string()),
                },
                UserChange::GroupGone(id) => Op::Group { id, v: None },
            })
            .collect()
    }

    /// Everything durable, as it is now: what a compaction writes.
    pub(super) fn image(&self) -> Image {
        let pipe = self.bridge.pipeline();
        let mut image = Image {
            network: self.network_record(),
            ports: self.ports.records().map(|r| (r.no, r.clone())).collect(),
            pods: self
                .podnet
                .pods
                .iter()
                .map(|(k, p)| (k.clone(), p.clone()))
                .collect(),
            conntrack: super::conntrack::record(&self.ct),
            ..Image::default()
        };
        for r in pipe.iter_rules().filter(|r| r.origin == Origin::User) {
            let m = text::display_match(&r.matching, None, &NoPortNames).to_string();
            image.flows.insert(
                flow_key(r.table, r.priority, &m),
                text::display_flow(&r.to_spec(), &NoPortNames, None).to_string(),
            );
        }
        for g in pipe.groups().filter(|g| g.origin == Origin::User) {
            image.groups.insert(
                g.spec.group_id,
                text::display_group(&g.spec, &NoPortNames).to_string(),
            );
        }
        for (m, _, _) in self.bridge.dump_meters(None, 0) {
            image
                .meters
                .insert(m.meter_id, text::display_meter(&m).replace('\n', " "));
        }
        // Objects from the API are listed again at start, not saved here.
        for (key, stored) in self
            .objects
            .iter()
            .filter(|(_, s)| s.source != super::api::FROM_API)
        {
            let rec = self.object_record(key, stored);
            image.objects.insert(
                (rec.kind.clone(), rec.namespace.clone(), rec.name.clone()),
                rec,
            );
        }
        image
    }

    /// Write the whole state as a new snapshot when the journal has grown past it.
    fn compact_if_due(&mut self) {
        if !self.store.should_compact() {
            return;
        }
        let image = self.image();
        if let Err(e) = self.store.compact(&image) {
            // The journal still holds every change: nothing is lost, it only grows.
            tracing::warn!(error = %e, "cannot compact the state journal");
        }
    }
}
