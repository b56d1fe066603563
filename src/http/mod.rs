//! hyper plumbing: accepting connections within limits, routing requests to a
//! dialect or to the operator endpoints, reading bodies within limits, and
//! draining on shutdown.

pub mod admin;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::app::App;
use crate::dialect;

pub type Resp = Response<Full<Bytes>>;

/// Serves `listeners` until `shutdown` resolves, then stops accepting and gives
/// open requests up to the configured drain timeout to finish.
pub async fn serve(listeners: Vec<TcpListener>, app: Arc<App>, shutdown: impl Future<Output = ()>) {
    let rt = app.runtime();
    let limits = rt.config.server.clone();
    drop(rt);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let sources = Arc::new(PerSource::default());
    let graceful = Arc::new(std::sync::Mutex::new(Some(GracefulShutdown::new())));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192) + limits.max_body_bytes.min(1 << 20))
        .max_header_size(limits.max_header_bytes)
        .keep_alive(true);
    let builder = Arc::new(builder);

    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut accept_tasks = Vec::new();
    for listener in listeners {
        let app = app.clone();
        let slots = slots.clone();
        let sources = sources.clone();
        let graceful = graceful.clone();
        let builder = builder.clone();
        let mut stop = stop_tx.subscribe();
        accept_tasks.push(tokio::spawn(async move {
            loop {
                let (stream, remote) = tokio::select! {
                    _ = stop.recv() => break,
                    r = listener.accept() => match r {
                        Ok(x) => x,
                        Err(e) => {
                            // EMFILE and friends: back off instead of spinning.
                            log::warn!("accept failed: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                };
                app.metrics
                    .connections_total
                    .fetch_add(1, Ordering::Relaxed);
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    app.metrics
                        .connections_refused
                        .fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(refuse(stream));
                    continue;
                };
                let per_source = app.runtime().config.server.max_connections_per_source;
                let Some(held) = sources.take(remote.ip(), per_source) else {
                    drop(permit);
                    app.metrics
                        .connections_refused
                        .fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(refuse(stream));
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let app2 = app.clone();
                // The request's future is boxed: inline, its room would be
                // part of every connection, idle ones too.
                let svc = service_fn(move |req| {
                    let app = app2.clone();
                    async move { Ok::<_, Infallible>(Box::pin(route(app, remote, req)).await) }
                });
                let conn = builder.serve_connection(TokioIo::new(stream), svc);
                let watched = match graceful
                    .lock()
                    .ok()
                    .and_then(|g| g.as_ref().map(|g| g.watch(conn)))
                {
                    Some(w) => w,
                    None => break,
                };
                let app3 = app.clone();
                tokio::spawn(async move {
                    app3.metrics
                        .connections_open
                        .fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = watched.await {
                        log::debug!("connection from {remote}: {e}");
                    }
                    app3.metrics
                        .connections_open
                        .fetch_sub(1, Ordering::Relaxed);
                    drop(held);
                    drop(permit);
                });
            }
        }));
    }

    shutdown.await;
    let _ = stop_tx.send(());
    for t in accept_tasks {
        let _ = t.await;
    }
    let graceful = graceful.lock().ok().and_then(|mut g| g.take());
    if let Some(g) = graceful {
        // The drain is read now: a reload may have changed it.
        let drain = app.runtime().config.server.drain_timeout;
        if tokio::time::timeout(drain, g.shutdown()).await.is_err() {
            log::warn!("connections still open after {drain:?}; closing them");
        }
    }
}

/// Open connections by source ([`crate::lockout::Source`]: an IPv4 address
/// or an IPv6 /64), so that one client cannot hold every slot. Holds an entry
/// only per source with a connection open: bounded by `max_connections`.
#[derive(Default)]
struct PerSource {
    open: std::sync::Mutex<std::collections::HashMap<crate::lockout::Source, usize>>,
}

/// One connection's share of its source's count, given back on drop.
struct SourceSlot {
    of: Arc<PerSource>,
    source: crate::lockout::Source,
}

impl PerSource {
    /// A slot for a connection from `ip`, unless its source has `max` open.
    fn take(self: &Arc<Self>, ip: std::net::IpAddr, max: usize) -> Option<SourceSlot> {
        let source = crate::lockout::Source::of(ip);
        let mut open = self.open.lock().ok()?;
        let n = open.entry(source).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(SourceSlot {
            of: self.clone(),
            source,
        })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        if let Ok(mut open) = self.of.open.lock() {
            if let Some(n) = open.get_mut(&self.source) {
                *n -= 1;
                if *n == 0 {
                    open.remove(&self.source);
                }
            }
        }
    }
}

/// Over the connection limit: a short 503 and close, never a hang.
async fn refuse(mut stream: tokio::net::TcpStream) {
    let msg = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 21\r\nRetry-After: 1\r\nConnection: close\r\n\r\ntoo many connections\n";
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(msg)).await;
    let _ = stream.shutdown().await;
}

async fn route(app: Arc<App>, remote: SocketAddr, req: Request<Incoming>) -> Resp {
    let path = req.uri().path().to_string();
    let (name, resp) = match path.as_str() {
        "/request/call.php" => (
            "xip",
            detached(&app, dialect::xip::handle(app.clone(), remote, req)).await,
        ),
        "/v1/calls" | "/v1/calls/" if req.method() == hyper::Method::POST => (
            "native",
            detached(&app, dialect::native::handle(app.clone(), remote, req)).await,
        ),
        dialect::spokn::PATH => (
            "spokn",
            detached(&app, dialect::spokn::handle(app.clone(), remote, req)).await,
        ),
        p if p.starts_with("/c2c/") => ("spokn", dialect::spokn::not_found()),
        dialect::airtel::PATH => (
            "airtel",
            detached(&app, dialect::airtel::handle(app.clone(), remote, req)).await,
        ),
        p if p.starts_with("/v2/") => ("airtel", dialect::airtel::not_found(false)),
        p if app.runtime().config.cloud9.serves(p) => (
            "cloud9",
            detached(&app, dialect::cloud9::handle(app.clone(), remote, req)).await,
        ),
        dialect::roundtrip::PATH => (
            "roundtrip",
            detached(&app, dialect::roundtrip::handle(app.clone(), remote, req)).await,
        ),
        p if p.starts_with(crate::provider::spokn::CALLBACK_PATH) => {
            ("spokn_callback", upstream_callback(&app, req).await)
        }
        p if p.starts_with(crate::provider::airtel::CALLBACK_PATH) => {
            ("airtel_callback", upstream_callback(&app, req).await)
        }
        "/v1/openapi.json" => ("openapi", admin::openapi()),
        "/healthz" => ("healthz", admin::healthz(&app).await),
        "/metrics" => ("metrics", admin::metrics(&app).await),
        p if p == "/v1" || p.starts_with("/v1/") => {
            let a = app.clone();
            (
                "v1",
                detached(
                    &app,
                    async move { admin::handle(&a, remote.ip(), req).await },
                )
                .await,
            )
        }
        _ => ("other", text(StatusCode::NOT_FOUND, "not found\n")),
    };
    app.metrics.response(name, resp.status().as_u16());
    resp
}

/// An upstream API's callback: read (bounded), then handed to its provider.
async fn upstream_callback(app: &Arc<App>, req: Request<Incoming>) -> Resp {
    if req.method() != hyper::Method::POST {
        return text(StatusCode::METHOD_NOT_ALLOWED, "POST\n");
    }
    let path = req.uri().path().to_string();
    let rt = app.runtime();
    let limits = (
        rt.config.server.max_body_bytes,
        rt.config.server.body_read_timeout,
    );
    drop(rt);
    match read_body(req, limits.0, limits.1).await {
        Ok(body) => {
            let status = if path.starts_with(crate::provider::airtel::CALLBACK_PATH) {
                crate::provider::airtel::callback(app, &path, body).await
            } else {
                crate::provider::spokn::callback(app, &path, body).await
            };
            text(
                status,
                format!("{}\n", status.canonical_reason().unwrap_or("")),
            )
        }
        Err(_) => text(StatusCode::BAD_REQUEST, "unreadable body\n"),
    }
}

/// Runs a dialect request as a task of its own. Once a request is recorded it
/// goes to its end (provider asked, answer recorded) even if the partner hangs
/// up or the connection is cut; a stop waits for it. A panic in it becomes a
/// 500 for that request only.
async fn detached(app: &Arc<App>, work: impl Future<Output = Resp> + Send + 'static) -> Resp {
    let guard = app.inflight.enter();
    let task = tokio::spawn(async move {
        let _guard = guard;
        work.await
    });
    match task.await {
        Ok(r) => r,
        Err(e) => {
            log::error!("request task failed: {e}");
            text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n")
        }
    }
}

pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

pub fn json(status: StatusCode, v: &serde_json::Value) -> Resp {
    let mut body = serde_json::to_vec_pretty(v).unwrap_or_default();
    body.push(b'\n');
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    TooLarge,
    Timeout,
    Io(String),
}

/// Reads a request body of at most `limit` bytes within `timeout`.
pub async fn read_body(
    req: Request<Incoming>,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, BodyError> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge);
    }
    let collect = Limited::new(req.into_body(), limit).collect();
    match tokio::time::timeout(timeout, collect).await {
        Err(_) => Err(BodyError::Timeout),
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(BodyError::TooLarge)
        }
        Ok(Err(e)) => Err(BodyError::Io(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_gets_its_share_of_connections_and_gives_them_back() {
        let per = Arc::new(PerSource::default());
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let held: Vec<_> = (0..3)
            .map(|_| per.take(ip("192.0.2.1"), 3).unwrap())
            .collect();
        assert!(per.take(ip("192.0.2.1"), 3).is_none());
        // Another address, and another /64, have their own share.
        assert!(per.take(ip("192.0.2.2"), 3).is_some());
        let v6 = per.take(ip("2001:db8::1"), 1).unwrap();
        assert!(per.take(ip("2001:db8::2"), 1).is_none(), "same /64");
        assert!(per.take(ip("2001:db8:0:1::1"), 1).is_some());
        drop(v6);
        drop(held);
        assert!(per.take(ip("192.0.2.1"), 3).is_some());
        // Nothing is kept for sources with no connection open.
        assert!(per.open.lock().unwrap().is_empty());
    }
}
