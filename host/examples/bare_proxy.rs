//! The floor of the waypoint benchmark (`scripts/bench-waypoint.sh`, target
//! (d)): the least an HTTP/1.1 reverse proxy built on the waypoint's stack
//! (tokio, hyper, hyper-util's pooled client) does per request, and
//! nothing else. No filter chain, no routing, no telemetry, no header
//! hygiene: every request goes to one upstream over a pooled keep-alive
//! connection. The same thread model as the waypoint (one current-thread
//! runtime per worker, `SO_REUSEPORT` listeners), so the comparison isolates
//! what the waypoint adds on top of its crates.
//!
//! ```sh
//! cargo run --release -p waypoint --example bare_proxy -- 127.0.0.1:8080 127.0.0.1:9090 2
//! ```

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

type Body = BoxBody<Bytes, hyper::Error>;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: bare_proxy LISTEN_ADDR UPSTREAM_ADDR [WORKERS]";
    let listen: SocketAddr = args.next().ok_or_else(|| anyhow::anyhow!(usage))?.parse()?;
    let upstream: SocketAddr = args.next().ok_or_else(|| anyhow::anyhow!(usage))?.parse()?;
    let workers: usize = args.next().map_or(Ok(2), |w| w.parse())?;
    let listeners = waypoint::workers::bind_group(listen, workers)?;
    let threads: Vec<_> = listeners
        .into_iter()
        .map(|l| std::thread::spawn(move || worker(l, upstream)))
        .collect();
    for t in threads {
        t.join().map_err(|_| anyhow::anyhow!("worker panicked"))??;
    }
    Ok(())
}

fn worker(listener: std::net::TcpListener, upstream: SocketAddr) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client: Client<HttpConnector, Incoming> =
            Client::builder(TokioExecutor::new()).build(connector);
        let base = format!("http://{upstream}");
        loop {
            let (tcp, _) = listener.accept().await?;
            let _ = tcp.set_nodelay(true);
            let (client, base) = (client.clone(), base.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req| forward(client.clone(), base.clone(), req));
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    })
}

async fn forward(
    client: Client<HttpConnector, Incoming>,
    base: String,
    req: Request<Incoming>,
) -> Result<Response<Body>, hyper::Error> {
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = match format!("{base}{path}").parse::<Uri>() {
        Ok(u) => u,
        Err(_) => return Ok(status(400)),
    };
    match client.request(Request::from_parts(parts, body)).await {
        Ok(resp) => Ok(resp.map(BodyExt::boxed)),
        Err(_) => Ok(status(502)),
    }
}

fn status(code: u16) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::new())
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::BAD_GATEWAY);
    r
}
