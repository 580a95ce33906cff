//! The watch loop against a mocked API server (`tower-test`, as kube's own tests do): each
//! test plays the server, checking each request the watcher makes and answering it.

use super::*;
use http::{Request, Response};
use kube::client::Body;
use serde_json::json;
use tower_test::mock::{self, Handle};

type ApiHandle = Handle<Request<Body>, Response<Body>>;

const POD: WatchedKind = KINDS[4];

fn pod(name: &str, rv: &str) -> Value {
    json!({"metadata": {"name": name, "namespace": "x", "resourceVersion": rv,
                        "managedFields": [{"manager": "kubectl"}]},
           "spec": {"nodeName": "n1"}, "status": {"podIP": "10.244.1.2"}})
}

fn list(rv: &str, items: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "PodList",
        "metadata": {"resourceVersion": rv}, "items": items}))
    .unwrap()
}

/// Watch events, one JSON a line, as the API server streams them.
fn events(evs: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in evs {
        out.extend(serde_json::to_vec(e).unwrap());
        out.push(b'\n');
    }
    out
}

fn event(t: &str, object: Value) -> Value {
    let mut object = object;
    object["apiVersion"] = json!("v1");
    object["kind"] = json!("Pod");
    json!({"type": t, "object": object})
}

fn bookmark(rv: &str) -> Value {
    json!({"type": "BOOKMARK", "object": {"apiVersion": "v1", "kind": "Pod",
        "metadata": {"resourceVersion": rv}}})
}

fn gone() -> Value {
    json!({"type": "ERROR", "object": {"apiVersion": "v1", "kind": "Status",
        "status": "Failure", "message": "too old resource version: 1 (7)",
        "reason": "Expired", "code": 410}})
}

/// The next request: its path and query, answered with `body`.
async fn answer(h: &mut ApiHandle, body: Vec<u8>) -> (String, String) {
    let (req, send) = h.next_request().await.expect("a request");
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    send.send_response(Response::builder().body(Body::from(body)).unwrap());
    (path, query)
}

fn is_list(q: &str) -> bool {
    !q.contains("watch=true")
}

/// Run the watcher on Pods until it has handed on `n` updates, with `server` answering.
async fn watch_pods<F>(n: usize, server: impl FnOnce(ApiHandle) -> F) -> Vec<Update>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let (svc, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(svc, "default");
    let server = tokio::spawn(server(handle));
    let mut got = Vec::new();
    run(
        client,
        &[POD],
        Arc::new(AtomicBool::new(false)),
        Duration::from_millis(50),
        |u| {
            got.push(u);
            got.len() < n
        },
    )
    .await;
    server.abort();
    got
}

fn names(updates: &[Update]) -> Vec<String> {
    updates
        .iter()
        .map(|u| match u {
            Update::Relist { .. } => "relist".to_string(),
            Update::Listed { .. } => "listed".to_string(),
            Update::Applied {
                object, listing, ..
            } => format!(
                "{}{}",
                if *listing { "list " } else { "apply " },
                object["metadata"]["name"].as_str().unwrap_or("?")
            ),
            Update::Deleted { object, .. } => format!(
                "delete {}",
                object["metadata"]["name"].as_str().unwrap_or("?")
            ),
            Update::Down { .. } => "down".to_string(),
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn lists_then_watches_from_the_lists_version_and_follows_bookmarks() {
    let got = watch_pods(7, |mut h| async move {
        let (path, q) = answer(&mut h, list("10", vec![pod("a", "9"), pod("b", "10")])).await;
        assert_eq!(path, "/api/v1/pods");
        assert!(is_list(&q), "a list first: {q}");
        let (_, q) = answer(
            &mut h,
            events(&[
                event("ADDED", pod("c", "11")),
                event("MODIFIED", pod("a", "12")),
                bookmark("15"),
            ]),
        )
        .await;
        assert!(q.contains("watch=true"), "{q}");
        assert!(
            q.contains("resourceVersion=10"),
            "from the list's version: {q}"
        );
        assert!(q.contains("allowWatchBookmarks=true"), "{q}");
        // The stream ended: watched again from the bookmark's version, not listed.
        let (_, q) = answer(&mut h, events(&[event("DELETED", pod("b", "16"))])).await;
        assert!(q.contains("watch=true"), "{q}");
        assert!(q.contains("resourceVersion=15"), "from the bookmark: {q}");
        std::future::pending::<()>().await;
    })
    .await;
    assert_eq!(
        names(&got),
        [
            "relist", "list a", "list b", "listed", "apply c", "apply a", "delete b"
        ]
    );
    // Objects as the switch reads them: apiVersion and kind set, managedFields gone.
    let Update::Applied { object, .. } = &got[1] else {
        panic!("{got:?}")
    };
    assert_eq!(object["apiVersion"], "v1");
    assert_eq!(object["kind"], "Pod");
    assert!(
        object["metadata"].get("managedFields").is_none(),
        "{object}"
    );
    assert_eq!(object["status"]["podIP"], "10.244.1.2");
}

#[tokio::test(start_paused = true)]
async fn gone_relists_and_the_new_list_replaces_the_old() {
    let got = watch_pods(9, |mut h| async move {
        answer(&mut h, list("10", vec![pod("a", "9"), pod("b", "10")])).await;
        let (_, q) = answer(&mut h, events(&[gone()])).await;
        assert!(q.contains("watch=true"), "{q}");
        // 410 Gone: a new list (b was deleted meanwhile), then a watch from it.
        let (_, q) = answer(&mut h, list("20", vec![pod("a", "9")])).await;
        assert!(is_list(&q), "a relist after 410: {q}");
        let (_, q) = answer(&mut h, events(&[event("ADDED", pod("d", "21"))])).await;
        assert!(q.contains("resourceVersion=20"), "{q}");
        std::future::pending::<()>().await;
    })
    .await;
    assert_eq!(
        names(&got),
        [
            "relist", "list a", "list b", "listed", "down", "relist", "list a", "listed", "apply d"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_stream_broken_mid_event_is_watched_again_and_nothing_half_read_passes() {
    let got = watch_pods(5, |mut h| async move {
        answer(&mut h, list("10", vec![pod("a", "9")])).await;
        let mut body = events(&[event("ADDED", pod("b", "11"))]);
        let half = events(&[event("ADDED", pod("c", "12"))]);
        // Half of c's event, cut inside its JSON.
        body.extend_from_slice(&half[..half.len() / 2]);
        answer(&mut h, body).await;
        // After the broken event: watched again from the last whole one.
        let (_, q) = answer(&mut h, events(&[event("ADDED", pod("c", "12"))])).await;
        assert!(
            q.contains("watch=true") && q.contains("resourceVersion=11"),
            "{q}"
        );
        std::future::pending::<()>().await;
    })
    .await;
    // The half event is dropped with the stream (kube ends it there, no error), and c
    // comes whole from the next watch.
    assert_eq!(
        names(&got),
        ["relist", "list a", "listed", "apply b", "apply c"]
    );
}

#[tokio::test(start_paused = true)]
async fn an_api_server_that_refuses_is_retried_with_growing_waits() {
    let started = tokio::time::Instant::now();
    let (svc, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(svc, "default");
    let times = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = times.clone();
    let server = tokio::spawn(async move {
        loop {
            let Some((_, send)) = handle.next_request().await else {
                return;
            };
            seen.lock().unwrap().push(started.elapsed());
            send.send_response(
                Response::builder()
                    .status(503)
                    .body(Body::from(b"unavailable".to_vec()))
                    .unwrap(),
            );
        }
    });
    let mut downs = 0;
    run(
        client,
        &[POD],
        Arc::new(AtomicBool::new(false)),
        Duration::from_millis(50),
        |u| {
            // Each try announces its list, which fails.
            assert!(
                matches!(u, Update::Down { .. } | Update::Relist { .. }),
                "{u:?}"
            );
            downs += usize::from(matches!(u, Update::Down { .. }));
            downs < 6
        },
    )
    .await;
    server.abort();
    let times = times.lock().unwrap().clone();
    assert!(times.len() >= 6, "{times:?}");
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    // 0.8 s doubling (with jitter) up to 30 s; never a busy loop.
    assert!(
        gaps.iter().all(|g| *g >= Duration::from_millis(400)),
        "{gaps:?}"
    );
    assert!(gaps[4] > gaps[0], "the waits grow: {gaps:?}");
}

#[test]
fn every_kind_has_its_api_version() {
    let v: Vec<String> = KINDS.iter().map(WatchedKind::api_version).collect();
    assert_eq!(
        v,
        [
            "v1",
            "v1",
            "v1",
            "discovery.k8s.io/v1",
            "v1",
            "networking.k8s.io/v1"
        ]
    );
}

#[test]
fn the_backoff_doubles_with_jitter_to_its_cap_and_resets() {
    let mut b = Backoff::new();
    let waits: Vec<Duration> = (0..10).map(|_| b.delay()).collect();
    for (i, w) in waits.iter().enumerate() {
        let base = (Backoff::FIRST * 2u32.pow(i as u32)).min(Backoff::MAX);
        assert!(
            *w >= base / 2 && *w < base * 3 / 2,
            "{i}: {w:?} around {base:?}"
        );
    }
    assert!(waits[9] >= Backoff::MAX / 2, "capped at 30 s: {waits:?}");
    b.reset();
    assert!(b.delay() < Backoff::FIRST * 3 / 2);
}
