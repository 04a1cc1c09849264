//! The waypoint binary: config file reload without restart, graceful drain
//! under load on SIGTERM.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

struct Proc {
    child: tokio::process::Child,
    http: String,
    admin: String,
    ready: String,
}

fn free() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

async fn spawn(config: &std::path::Path) -> Proc {
    let (http, admin, metrics, ready) = (free(), free(), free(), free());
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_waypoint"))
        .args(["--config", config.to_str().unwrap(), "--hbone-addr", "off"])
        .args([
            "--http-addr",
            &http,
            "--admin-addr",
            &admin,
            "--metrics-addr",
            &metrics,
            "--ready-addr",
            &ready,
        ])
        .args([
            "--drain-timeout",
            "3s",
            "--access-log",
            "/dev/null",
            "--worker-threads",
            "2",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let p = Proc {
        child,
        http,
        admin,
        ready,
    };
    let t = Instant::now();
    loop {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "waypoint never became ready"
        );
        let url = format!("http://{}/healthz/ready", p.ready);
        if let Ok(Ok(r)) =
            tokio::time::timeout(Duration::from_secs(1), client().get(url.parse().unwrap())).await
            && r.status() == 200
        {
            return p;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn write_atomically(path: &std::path::Path, v: &Value) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(v).unwrap()).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn config_file_reload_without_restart() {
    let a = Upstream::start("a", "127.0.0.1").await;
    let b = Upstream::start("b", "127.0.0.2").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("waypoint.json");
    write_atomically(&path, &config(vec![a.endpoint(&[])], json!({})));
    let p = spawn(&path).await;
    let pid = p.child.id();
    let url = format!("http://{}/", p.http);
    assert_eq!(get(&url, &[]).await.2["x-upstream"], "a");

    // Replace the file (rename, as editors do): traffic moves to b.
    write_atomically(&path, &config(vec![b.endpoint(&[])], json!({})));
    let t = Instant::now();
    loop {
        if get(&url, &[]).await.2["x-upstream"] == "b" {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "reload not picked up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Edit in place: back to a.
    std::fs::write(
        &path,
        serde_json::to_vec(&config(vec![a.endpoint(&[])], json!({}))).unwrap(),
    )
    .unwrap();
    let t = Instant::now();
    while get(&url, &[]).await.2["x-upstream"] != "a" {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "in-place edit not picked up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A broken file is refused; the last good config keeps serving.
    std::fs::write(&path, b"{ not json").unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(get(&url, &[]).await.2["x-upstream"], "a");
    let dump: Value =
        serde_json::from_str(&get(&format!("http://{}/config_dump", p.admin), &[]).await.1)
            .unwrap();
    assert_eq!(dump["status"]["applied"], 3, "{dump}");
    assert_eq!(dump["config"]["services"][0]["endpoints"][0]["name"], "a");
    assert_eq!(p.child.id(), pid, "same process throughout");
    assert_eq!(
        get(&format!("http://{}/healthz/ready", p.ready), &[])
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn graceful_drain_under_load() {
    let up = Upstream::start("a", "127.0.0.1").await;
    up.seen.force_delay_ms.store(300, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("waypoint.json");
    write_atomically(&path, &config(vec![up.endpoint(&[])], json!({})));
    let mut p = spawn(&path).await;
    let url = format!("http://{}/", p.http);

    // 16 clients with keep-alive connections, requests back to back.
    let sigterm_at: Arc<parking_lot::Mutex<Option<Instant>>> = Arc::default();
    let ok_before = Arc::new(AtomicU64::new(0));
    let failed_in_flight = Arc::new(AtomicU64::new(0));
    let refused_after = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (url, at, ok, bad, refused) = (
            url.clone(),
            sigterm_at.clone(),
            ok_before.clone(),
            failed_in_flight.clone(),
            refused_after.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let c = client();
            loop {
                let started = Instant::now();
                let sent_before_term = at.lock().is_none();
                let req = http::Request::get(&url)
                    .header("host", SVC)
                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                    .unwrap();
                match tokio::time::timeout(Duration::from_secs(5), c.request(req)).await {
                    Ok(Ok(r)) if r.status() == 200 => {
                        let _ = http_body_util::BodyExt::collect(r.into_body()).await;
                        ok.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(Ok(r)) => panic!("unexpected status {}", r.status()),
                    Ok(Err(_)) | Err(_) => {
                        if sent_before_term && at.lock().is_some_and(|t| started < t) {
                            bad.fetch_add(1, Ordering::SeqCst);
                        } else {
                            refused.fetch_add(1, Ordering::SeqCst);
                        }
                        return;
                    }
                }
                if at
                    .lock()
                    .is_some_and(|t| t.elapsed() > Duration::from_millis(800))
                {
                    return;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let served_before = up.count();
    assert!(served_before >= 32, "load is flowing: {served_before}");
    *sigterm_at.lock() = Some(Instant::now());
    let pid = p.child.id().unwrap();
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    // Readiness fails while draining.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let ready = tokio::time::timeout(
        Duration::from_secs(1),
        client().get(format!("http://{}/healthz/ready", p.ready).parse().unwrap()),
    )
    .await;
    if let Ok(Ok(r)) = ready {
        assert_eq!(r.status(), 503, "not ready while draining");
    }
    let status = tokio::time::timeout(Duration::from_secs(6), p.child.wait())
        .await
        .expect("exited within the drain timeout")
        .unwrap();
    let took = sigterm_at.lock().unwrap().elapsed();
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(4), "{took:?}");
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        failed_in_flight.load(Ordering::SeqCst),
        0,
        "requests in flight at SIGTERM completed"
    );
    assert!(ok_before.load(Ordering::SeqCst) >= served_before);
    // New connections are refused once the listener closed.
    assert!(std::net::TcpStream::connect(&p.http).is_err());
}

/// Worker threads (Envoy's model): one runtime per worker, each with its
/// own socket in a `SO_REUSEPORT` group on the same port. Connections are
/// spread over the workers, every request is served, and shutdown stops
/// the threads and closes every socket of the group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_threads_share_the_port_and_serve_every_connection() {
    let up = Upstream::start("a", "127.0.0.1").await;
    let mut w = TestWaypoint::start_with(&config(vec![up.endpoint(&[])], json!({})), |o| {
        o.workers = 2;
    })
    .await;
    const CONNS: u64 = 24;
    const REQUESTS: u64 = 10;
    let mut tasks = Vec::new();
    for _ in 0..CONNS {
        let url = w.url("/");
        tasks.push(tokio::spawn(async move {
            // A client of its own: one keep-alive connection.
            let c = client();
            for _ in 0..REQUESTS {
                let req = http::Request::get(&url)
                    .header("host", SVC)
                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                    .unwrap();
                let r = c.request(req).await.unwrap();
                assert_eq!(r.status(), 200);
                let _ = http_body_util::BodyExt::collect(r.into_body()).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(up.count(), CONNS * REQUESTS);
    let m = w.metrics().await;
    let accepted = |worker: &str| {
        metric(
            &m,
            "waypoint_worker_connections_accepted_total",
            &[("worker", worker), ("listener", "http")],
        )
        .unwrap_or(0.0)
    };
    let (w1, w2) = (accepted("1"), accepted("2"));
    assert_eq!(w1 + w2, CONNS as f64, "{m}");
    // 24 connections hashed over two sockets all land on one with
    // probability 2^-23.
    assert!(w1 >= 1.0 && w2 >= 1.0, "worker 1: {w1}, worker 2: {w2}");

    let addr = w.http();
    w.shutdown().await;
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "every socket of the group closed"
    );
}
