//! The Kubernetes API watcher of vswitchd: a list-watch of each kind the switch compiles
//! (Nodes, Namespaces, Services, EndpointSlices, Pods, NetworkPolicies), on a thread of its
//! own with a single-threaded async runtime, handing each change to the switch as a
//! plain [`Update`] of JSON objects (the switch itself keeps no async runtime).
//!
//! The contract is client-go's reflector's, as kube's `watcher` keeps it: an initial list
//! (paged), then a watch from its resourceVersion with bookmarks; on `410 Gone` or a broken
//! stream, a new list. Each list is announced ([`Update::Relist`]), its objects handed on
//! as they arrive ([`Update::Applied`] with `listing`), and its end marked
//! ([`Update::Listed`]): the receiver then removes what it knew of the kind from the API
//! and the list did not hold (objects deleted while the watch was down). Errors reconnect
//! after a backoff ([`Backoff`]): exponential from 0.8 s to 30 s, with jitter, reset by
//! the first object that arrives; never a busy loop while the API server is down. (kube's
//! own `default_backoff` resets on the `Init` event every new try begins with, so against
//! a server that is down it waits the first step, 0.8 s, each time.)

use futures::{Stream, StreamExt};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::watcher::{self, Event};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A kind the watcher lists and watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WatchedKind {
    /// API group (`""` for the core group).
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// The resource's name in URLs (and in a ClusterRole).
    pub plural: &'static str,
}

impl WatchedKind {
    /// `apiVersion` as objects carry it.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    fn resource(&self) -> ApiResource {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(self.group, self.version, self.kind),
            self.plural,
        )
    }
}

/// Every kind watched, in the order a first sync should apply them (Nodes and Namespaces
/// before what refers to them; policies last).
pub const KINDS: [WatchedKind; 6] = [
    WatchedKind {
        group: "",
        version: "v1",
        kind: "Node",
        plural: "nodes",
    },
    WatchedKind {
        group: "",
        version: "v1",
        kind: "Namespace",
        plural: "namespaces",
    },
    WatchedKind {
        group: "",
        version: "v1",
        kind: "Service",
        plural: "services",
    },
    WatchedKind {
        group: "discovery.k8s.io",
        version: "v1",
        kind: "EndpointSlice",
        plural: "endpointslices",
    },
    WatchedKind {
        group: "",
        version: "v1",
        kind: "Pod",
        plural: "pods",
    },
    WatchedKind {
        group: "networking.k8s.io",
        version: "v1",
        kind: "NetworkPolicy",
        plural: "networkpolicies",
    },
];

/// What the watcher hands the switch.
#[derive(Clone, Debug, PartialEq)]
pub enum Update {
    /// A list of `kind` begins (the first, or again after the watch broke): every object
    /// of it follows as [`Update::Applied`] with `listing`, then [`Update::Listed`].
    Relist { kind: &'static str },
    /// An object created or changed, as JSON with `apiVersion` and `kind` set;
    /// `listing`: one of a list's.
    Applied {
        kind: &'static str,
        object: Value,
        listing: bool,
    },
    /// An object deleted (its last state).
    Deleted { kind: &'static str, object: Value },
    /// The list of `kind` is complete: what the receiver knew of the kind from the API and
    /// the list did not hold is gone.
    Listed { kind: &'static str },
    /// The watch of `kind` failed (the API server is down, refused, answered `410 Gone`
    /// too late...): it is tried again after a backoff.
    Down { kind: &'static str, error: String },
}

impl Update {
    /// The kind it is of.
    pub fn kind(&self) -> &'static str {
        match self {
            Update::Relist { kind }
            | Update::Applied { kind, .. }
            | Update::Deleted { kind, .. }
            | Update::Listed { kind }
            | Update::Down { kind, .. } => kind,
        }
    }
}

/// Where the API server is and how to talk to it.
#[derive(Clone, Debug)]
pub enum Source {
    /// A kubeconfig file (its current context).
    Kubeconfig(PathBuf),
    /// In a Pod: the service account's token and CA, `KUBERNETES_SERVICE_HOST` and
    /// `KUBERNETES_SERVICE_PORT`.
    InCluster,
}

/// Why the watcher cannot start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubeconfig {path}: {error}")]
    Kubeconfig {
        path: PathBuf,
        error: kube::config::KubeconfigError,
    },
    #[error("in-cluster configuration: {0}")]
    InCluster(#[from] kube::config::InClusterError),
    #[error("API client: {0}")]
    Client(#[from] kube::Error),
    #[error("the watcher's runtime: {0}")]
    Runtime(#[from] std::io::Error),
    #[error("TLS to the API server: {0}")]
    Tls(String),
    #[error("API server address {server:?}: {error}")]
    Server { server: String, error: String },
}

/// The configuration for `source`.
pub async fn config(source: &Source) -> Result<kube::Config, Error> {
    Ok(match source {
        Source::Kubeconfig(path) => {
            let kc =
                kube::config::Kubeconfig::read_from(path).map_err(|error| Error::Kubeconfig {
                    path: path.clone(),
                    error,
                })?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(|error| Error::Kubeconfig {
                    path: path.clone(),
                    error,
                })?
        }
        Source::InCluster => kube::Config::incluster()?,
    })
}

/// An object as the switch reads it: `apiVersion` and `kind` set (list items lack them),
/// without what no reader needs and a big cluster has much of (`managedFields`, the
/// last-applied annotation).
pub fn to_json(kind: &WatchedKind, mut o: DynamicObject) -> Value {
    o.metadata.managed_fields = None;
    if let Some(a) = o.metadata.annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
    let mut v = serde_json::to_value(&o).unwrap_or(Value::Null);
    if let Some(m) = v.as_object_mut() {
        m.insert("apiVersion".into(), Value::String(kind.api_version()));
        m.insert("kind".into(), Value::String(kind.kind.to_string()));
    }
    v
}

/// The watcher's config: kube's default (a paged list, then a watch with bookmarks), with
/// the server's watch timeout a little under five minutes, as client-go's reflector
/// picks one between five and ten.
fn watch_config() -> watcher::Config {
    watcher::Config::default().timeout(290)
}

/// The wait before a watch is tried again after an error: 0.8 s, doubling to 30 s, each
/// with jitter (a factor drawn in [0.5, 1.5)), back to the start once an object arrives.
#[derive(Clone, Debug)]
pub struct Backoff {
    next: Duration,
    seed: u64,
}

impl Backoff {
    pub const FIRST: Duration = Duration::from_millis(800);
    pub const MAX: Duration = Duration::from_secs(30);

    pub fn new() -> Backoff {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0x6b75_6265);
        Backoff {
            next: Self::FIRST,
            seed: h.finish() | 1,
        }
    }

    /// The wait before the next try; the one after it is twice as long (to the cap).
    pub fn delay(&mut self) -> Duration {
        // xorshift64: jitter, not security.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let factor = 0.5 + (self.seed >> 11) as f64 / (1u64 << 53) as f64;
        let d = self.next.mul_f64(factor);
        self.next = (self.next * 2).min(Self::MAX);
        d
    }

    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff::new()
    }
}

/// `events` with a [`Backoff`] after each error: the error is handed on at once, and the
/// stream is polled again only after the wait.
fn with_backoff<K: Send + 'static>(
    events: impl Stream<Item = watcher::Result<Event<K>>> + Send + 'static,
) -> impl Stream<Item = watcher::Result<Event<K>>> + Send {
    let state = (events.boxed(), Backoff::new(), None::<Duration>);
    futures::stream::unfold(state, |(mut events, mut backoff, wait)| async move {
        if let Some(d) = wait {
            tokio::time::sleep(d).await;
        }
        let item = events.next().await?;
        let wait = match &item {
            Err(_) => Some(backoff.delay()),
            Ok(Event::Init) => None,
            Ok(_) => {
                backoff.reset();
                None
            }
        };
        Some((item, (events, backoff, wait)))
    })
}

/// Watch every kind of `kinds` through `client` until `stop`, handing each change to
/// `sink` in order. Returns when `stop` is set (checked at least every `tick`) or when
/// `sink` says to stop (returns `false`).
pub async fn run(
    client: kube::Client,
    kinds: &[WatchedKind],
    stop: Arc<AtomicBool>,
    tick: Duration,
    mut sink: impl FnMut(Update) -> bool,
) {
    let streams = kinds.iter().map(|k| {
        let kind = *k;
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &kind.resource());
        with_backoff(watcher::watcher(api, watch_config()))
            .map(move |e| (kind, e))
            .boxed()
    });
    let mut all = futures::stream::select_all(streams);
    loop {
        if stop.load(Ordering::Acquire) {
            return;
        }
        let next = tokio::time::timeout(tick, all.next()).await;
        let Ok(next) = next else { continue };
        let Some((kind, event)) = next else { return };
        let k = kind.kind;
        let update = match event {
            Ok(Event::Init) => Update::Relist { kind: k },
            Ok(Event::InitApply(o)) => Update::Applied {
                kind: k,
                object: to_json(&kind, o),
                listing: true,
            },
            Ok(Event::InitDone) => Update::Listed { kind: k },
            Ok(Event::Apply(o)) => Update::Applied {
                kind: k,
                object: to_json(&kind, o),
                listing: false,
            },
            Ok(Event::Delete(o)) => Update::Deleted {
                kind: k,
                object: to_json(&kind, o),
            },
            Err(e) => Update::Down {
                kind: k,
                error: e.to_string(),
            },
        };
        if !sink(update) {
            return;
        }
    }
}

/// A client of the API server, with the single-threaded runtime it runs on.
pub struct Connection {
    rt: tokio::runtime::Runtime,
    client: kube::Client,
    /// The API server's URL.
    pub server: String,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("server", &self.server)
            .finish()
    }
}

impl Connection {
    /// A client for `source`. Fails only when it cannot be made (no kubeconfig, not in a
    /// cluster); the API server is not contacted.
    /// `server`: the API server's address, in place of the source's (in a cluster whose
    /// Services this switch serves, `KUBERNETES_SERVICE_HOST` is a Service address that
    /// only works once the switch has listed the Services: Cilium's `k8sServiceHost` and
    /// Antrea's `kubeAPIServerOverride` answer the same).
    pub fn new(source: &Source, server: Option<&str>) -> Result<Connection, Error> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (client, server) = rt.block_on(async {
            let mut c = config(source).await?;
            // A connection that went dead without a reset (a partition, a host gone) is
            // noticed: no read waits longer than the watch's own timeout (290 s, and a
            // real server sends bookmarks within it), as kube's default once was.
            c.read_timeout.get_or_insert(Duration::from_secs(295));
            if let Some(s) = server {
                let url = if s.contains("://") {
                    s.to_string()
                } else {
                    format!("https://{s}")
                };
                c.cluster_url = url.parse().map_err(|e| Error::Server {
                    server: s.to_string(),
                    error: format!("{e}"),
                })?;
            }
            let server = c.cluster_url.to_string();
            Ok::<_, Error>((tls::client(c)?, server))
        })?;
        Ok(Connection { rt, client, server })
    }

    /// Node `name` as JSON, asked until it answers or `wait` has passed (with the
    /// backoff between tries): what the switch takes its Pod CIDR and address from.
    pub fn node(&self, name: &str, wait: Duration) -> Result<Value, String> {
        let kind = KINDS[0];
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &kind.resource());
        self.rt.block_on(async {
            let deadline = tokio::time::Instant::now() + wait;
            let mut backoff = Backoff::new();
            loop {
                // Each try bounded too: a server that takes the connection and never
                // answers does not hold the start past `wait`.
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                let err = match tokio::time::timeout(left, api.get(name)).await {
                    Ok(Ok(o)) => return Ok(to_json(&kind, o)),
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => format!("no answer within {wait:?}"),
                };
                let d = backoff.delay();
                if tokio::time::Instant::now() + d > deadline {
                    return Err(err);
                }
                tokio::time::sleep(d).await;
            }
        })
    }

    /// Start watching `kinds` on a thread of its own ([`run`]), handing each update to
    /// `sink`; an API server that is down is waited for, with backoff.
    pub fn watch(
        self,
        kinds: Vec<WatchedKind>,
        stop: Arc<AtomicBool>,
        sink: impl FnMut(Update) -> bool + Send + 'static,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let Connection { rt, client, .. } = self;
        std::thread::Builder::new()
            .name("vswitch-k8s-watch".into())
            .spawn(move || {
                rt.block_on(run(client, &kinds, stop, Duration::from_millis(200), sink));
            })
    }
}

pub mod tls;

#[cfg(test)]
mod tests;
