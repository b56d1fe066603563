//! Delivers the callback outbox: at least once, in order per call, with
//! exponential backoff and jitter for hours, surviving restarts (the outbox is in
//! the database), every attempt recorded.
//!
//! Each callback is POSTed as JSON with `C2C-Event-Id` and `C2C-Signature:
//! t=<unix seconds>,v1=<hex>[,v1=<hex>…]`: HMAC-SHA256 of `"<t>.<body>"` under
//! each of the partner's `callback_secrets`, so receivers can verify with any
//! active secret while a secret is rotated. Callbacks go over http or https (the
//! system trust store, see [`crate::outbound`]) only to the partner's
//! `callback_hosts`; redirects are not followed (a 3xx is a failed attempt).

use std::collections::{HashMap, HashSet};
use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request};
use sha2::Sha256;
use tokio::sync::{mpsc, watch, Notify};

use crate::app::App;
use crate::config::{Callbacks, Config, MAX_CALLBACK_CONCURRENCY};
use crate::core::{now_ms, Secret};
use crate::outbound::{error_chain, HttpClient};
use crate::store::callbacks::{self, Due, Next};
use crate::store::StoreError;

/// How often the outbox is looked at when idle.
const TICK: Duration = Duration::from_millis(200);

/// The `C2C-Signature` header value for `body` at unix time `t`.
pub fn signature(secrets: &[Secret], t: i64, body: &[u8]) -> String {
    let mut out = format!("t={t}");
    for s in secrets {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(s.expose().as_bytes()) else {
            continue;
        };
        mac.update(t.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        let _ = write!(out, ",v1=");
        for b in mac.finalize().into_bytes() {
            let _ = write!(out, "{b:02x}");
        }
    }
    out
}

/// Headers a partner may not set on its callbacks: c2cd's own, and those that
/// frame the request.
pub fn reserved_header(name: &str) -> bool {
    const RESERVED: [&str; 9] = [
        "host",
        "content-type",
        "content-length",
        "transfer-encoding",
        "connection",
        "user-agent",
        "c2c-event-id",
        "c2c-signature",
        "te",
    ];
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name))
}

/// The delay before attempt `n + 1` after `n` failed ones: `backoff * 2^(n-1)`,
/// capped, plus up to 50% jitter so that receivers coming back are not stampeded.
pub fn backoff(cfg: &Callbacks, n: i64) -> Duration {
    let exp = u32::try_from(n.saturating_sub(1))
        .unwrap_or(u32::MAX)
        .min(30);
    let base = cfg.backoff.saturating_mul(1u32 << exp).min(cfg.max_backoff);
    base + base.mul_f64(fastrand::f64() * 0.5)
}

/// What one attempt found.
struct Outcome {
    status: Option<u16>,
    error: Option<String>,
}

async fn attempt(client: &HttpClient, config: &Config, d: &Due) -> Outcome {
    let fail = |e: String| Outcome {
        status: None,
        error: Some(e),
    };
    let Some(partner) = d.partner_id.as_deref().and_then(|p| config.partner(p)) else {
        return fail("the partner is no longer configured".into());
    };
    let Ok(uri) = d.url.parse::<hyper::Uri>() else {
        return fail(format!("not a URL: {}", d.url));
    };
    let host = uri.host().unwrap_or_default();
    // SECURITY: the host is checked against the partner's list at every attempt,
    // so removing a host from the config stops deliveries to it.
    if !matches!(uri.scheme_str(), Some("http" | "https"))
        || !partner
            .callback_hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(host))
    {
        return fail(format!(
            "host {host:?} is not in the partner's callback_hosts"
        ));
    }
    let t = now_ms() / 1000;
    let method = match d.method.as_str() {
        "PUT" => Method::PUT,
        _ => Method::POST,
    };
    let mut req = Request::builder().method(method).uri(uri);
    // SECURITY: the partner's own headers never replace those c2cd sets.
    for (name, value) in d.headers.iter().filter(|(n, _)| !reserved_header(n)) {
        req = req.header(name.as_str(), value.as_str());
    }
    let req = req
        .header(hyper::header::CONTENT_TYPE, d.content_type.as_str())
        .header(
            hyper::header::USER_AGENT,
            concat!("c2cd/", env!("CARGO_PKG_VERSION")),
        )
        .header("c2c-event-id", d.event_id.as_str())
        .header(
            "c2c-signature",
            signature(&partner.callback_secrets, t, &d.body),
        )
        .body(Full::new(Bytes::from(d.body.clone())));
    let req = match req {
        Ok(r) => r,
        Err(e) => return fail(format!("cannot build the request: {e}")),
    };
    let limit = config.callbacks.max_response_bytes;
    let exchange = async {
        let resp = client
            .request(req)
            .await
            .map_err(|e| format!("unreachable: {}", error_chain(&e)))?;
        let status = resp.status().as_u16();
        // Read (a bounded part of) the answer so the connection can be reused.
        let _ = Limited::new(resp.into_body(), limit).collect().await;
        Ok::<u16, String>(status)
    };
    match tokio::time::timeout(config.callbacks.timeout, exchange).await {
        Err(_) => fail(format!("no answer within {:?}", config.callbacks.timeout)),
        Ok(Err(e)) => fail(e),
        Ok(Ok(s)) if (200..300).contains(&s) => Outcome {
            status: Some(s),
            error: None,
        },
        Ok(Ok(s)) => Outcome {
            status: Some(s),
            error: Some(format!("HTTP {s}")),
        },
    }
}

/// Attempts' results recorded in one write at most.
const RECORD_BATCH: usize = 512;
/// The longest wait between two tries of a write of results.
const MAX_RECORD_WAIT: Duration = Duration::from_secs(30);
/// Receivers looked at at most (those with pending callbacks; a partner has one
/// or a few).
const RECEIVERS: usize = 4096;

/// What the outbox has under way for one receiver.
#[derive(Default)]
struct Lane {
    /// Callbacks being attempted or whose result is not recorded yet: not
    /// taken again, and their call's next callbacks wait behind them.
    claimed: HashSet<i64>,
    /// Attempts under way.
    attempting: usize,
}

/// What the outbox has under way.
#[derive(Default)]
struct Claims {
    /// By receiver (see [`callbacks::receiver`]): those with pending
    /// callbacks when last looked, and those with claims.
    lanes: HashMap<String, Lane>,
    /// Attempts under way in all.
    attempting: usize,
    /// Results not recorded yet, in all.
    claimed: usize,
    /// Which receiver is asked first next time.
    turn: usize,
}

/// The result of one attempt, on its way to be recorded.
struct Done {
    due: Due,
    out: Outcome,
    took: Duration,
}

/// Delivers the outbox: one task takes due callbacks receiver by receiver and
/// starts an attempt for each, up to `[callbacks] concurrency` at once and
/// `per_receiver` to one receiver; each attempt hands its result to one
/// recorder, which records the results there are in one write. No attempt
/// waits for another: a slow receiver holds its own slots only.
pub struct Outbox {
    app: Arc<App>,
    client: HttpClient,
    /// Unix ms now: the wall clock, or a test's.
    clock: Box<dyn Fn() -> i64 + Send + Sync>,
    claims: Mutex<Claims>,
    /// Rung when a slot frees up or a result is recorded.
    wake: Notify,
    /// Results recorded so far (watched by tests).
    recorded: watch::Sender<u64>,
    results: mpsc::Sender<Done>,
}

impl Outbox {
    /// The outbox and its recorder's inbox.
    pub fn new(
        app: Arc<App>,
        client: HttpClient,
        clock: impl Fn() -> i64 + Send + Sync + 'static,
    ) -> (Arc<Self>, Recorder) {
        // Every result holds a claim, and claims are bounded (see `start`).
        let (tx, rx) = mpsc::channel(2 * MAX_CALLBACK_CONCURRENCY);
        let outbox = Arc::new(Outbox {
            app,
            client,
            clock: Box::new(clock),
            claims: Mutex::default(),
            wake: Notify::new(),
            recorded: watch::Sender::new(0),
            results: tx,
        });
        (outbox, Recorder(rx))
    }

    fn claims(&self) -> MutexGuard<'_, Claims> {
        self.claims.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Attempts under way, and results not recorded yet.
    pub fn under_way(&self) -> (usize, usize) {
        let c = self.claims();
        (c.attempting, c.claimed)
    }

    /// Looks for the receivers with pending callbacks (one index seek each).
    pub async fn look(&self) -> Result<(), StoreError> {
        let found: HashSet<String> = self
            .app
            .store
            .read(|c| callbacks::receivers(c, RECEIVERS))
            .await?
            .into_iter()
            .collect();
        let mut c = self.claims();
        // Lanes with nothing under way and nothing pending go.
        c.lanes
            .retain(|r, lane| !lane.claimed.is_empty() || found.contains(r));
        for r in found {
            c.lanes.entry(r).or_default();
        }
        Ok(())
    }

    /// Starts an attempt for each callback due now, receiver by receiver, as
    /// far as the limits allow; returns how many it started.
    pub async fn start(self: &Arc<Self>) -> Result<usize, StoreError> {
        let rt = self.app.runtime();
        let cfg = &rt.config.callbacks;
        // What each receiver has room for, and what it has under way; the
        // free slots go to those with something due, a different receiver
        // first each time.
        let (asks, free) = {
            let mut c = self.claims();
            // Results waiting for their write count too, so that a slow disk
            // bounds what is in memory.
            let free = cfg
                .concurrency
                .saturating_sub(c.attempting)
                .min((2 * cfg.concurrency).saturating_sub(c.claimed));
            if free == 0 {
                return Ok(0);
            }
            let mut asks: Vec<(String, usize, HashSet<i64>)> = Vec::new();
            for (r, lane) in &c.lanes {
                let room = cfg.per_receiver.saturating_sub(lane.attempting);
                // A busy receiver is looked at again once a quarter of its
                // room is free, not at each attempt's end.
                let enough = if lane.attempting == 0 {
                    1
                } else {
                    (cfg.per_receiver / 4).max(1)
                };
                if room >= enough {
                    asks.push((r.clone(), room, lane.claimed.clone()));
                }
            }
            if asks.is_empty() {
                return Ok(0);
            }
            let first = c.turn % asks.len();
            c.turn = c.turn.wrapping_add(1);
            asks.rotate_left(first);
            (asks, free)
        };
        let now = (self.clock)();
        let due = self
            .app
            .store
            .read(move |c| {
                let mut free = free;
                let mut all = Vec::new();
                for (r, room, skip) in &asks {
                    if free == 0 {
                        break;
                    }
                    let got = callbacks::due(c, r, now, (*room).min(free), skip)?;
                    free -= got.len();
                    all.extend(got);
                }
                Ok(all)
            })
            .await?;
        let n = due.len();
        {
            let mut c = self.claims();
            for d in &due {
                let lane = c.lanes.entry(d.receiver.clone()).or_default();
                lane.claimed.insert(d.id);
                lane.attempting += 1;
            }
            c.attempting += n;
            c.claimed += n;
            self.app
                .metrics
                .callbacks_attempting
                .store(c.attempting as u64, Ordering::Relaxed);
        }
        for d in due {
            let this = self.clone();
            let rt = rt.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let out = attempt(&this.client, &rt.config, &d).await;
                let took = started.elapsed();
                {
                    let mut c = this.claims();
                    c.attempting = c.attempting.saturating_sub(1);
                    if let Some(lane) = c.lanes.get_mut(&d.receiver) {
                        lane.attempting = lane.attempting.saturating_sub(1);
                    }
                    this.app
                        .metrics
                        .callbacks_attempting
                        .store(c.attempting as u64, Ordering::Relaxed);
                }
                this.wake.notify_one();
                // The channel holds every claim, so this does not wait long;
                // it fails only when the recorder is gone (the process stops),
                // and then the callback is still pending in the database.
                let _ = this.results.send(Done { due: d, out, took }).await;
            });
        }
        Ok(n)
    }

    /// Records each result the recorder has (up to a batch) in one write,
    /// then lets their callbacks (and their calls' next ones) be taken again.
    /// Returns how many it recorded; `None` when no attempt can send any more.
    pub async fn record(&self, inbox: &mut Recorder) -> Option<usize> {
        let mut done = Vec::with_capacity(RECORD_BATCH);
        if inbox.0.recv_many(&mut done, RECORD_BATCH).await == 0 {
            return None;
        }
        let rt = self.app.runtime();
        let cfg = &rt.config.callbacks;
        let max_age = i64::try_from(cfg.max_age.as_millis()).unwrap_or(i64::MAX);
        let rows: Vec<_> = done
            .iter()
            .map(|Done { due: d, out, took }| {
                let attempts = d.attempts + 1;
                let at = (self.clock)();
                // A host not allowed or a partner gone will not change by retrying.
                let refused = out
                    .error
                    .as_deref()
                    .is_some_and(|e| e.starts_with("host ") || e.starts_with("the partner"));
                let next = if out.error.is_none() {
                    Next::Delivered
                } else if refused || attempts >= cfg.attempts as i64 || at - d.created_at >= max_age
                {
                    Next::Dead
                } else {
                    let wait =
                        i64::try_from(backoff(cfg, attempts).as_millis()).unwrap_or(i64::MAX / 2);
                    Next::Retry(at + wait)
                };
                callbacks::Attempt {
                    call: d.call_id.clone(),
                    id: d.id,
                    n: attempts,
                    at,
                    status: out.status,
                    latency_ms: i64::try_from(took.as_millis()).unwrap_or(i64::MAX),
                    error: out.error.clone(),
                    next,
                }
            })
            .collect();
        let outcomes: Vec<Next> = rows.iter().map(|r| r.next).collect();
        // Tried until it is recorded, the claims held meanwhile: released
        // unrecorded, delivered callbacks would be sent again, and a busy
        // database would get more work, not less.
        let rows = Arc::new(rows);
        let mut wait = Duration::from_secs(1);
        loop {
            let batch = rows.clone();
            let written = self
                .app
                .store
                .write(move |c| {
                    for a in batch.iter() {
                        callbacks::record_attempt(c, a)?;
                    }
                    Ok(())
                })
                .await;
            match written {
                Ok(()) => break,
                // Stopping: what was not recorded is attempted again after
                // the restart (at least once).
                Err(StoreError::Closed) => return None,
                Err(e) => {
                    log::error!(
                        "callback outbox: cannot record {} attempts, trying again in {wait:?}: {e}",
                        done.len()
                    );
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(MAX_RECORD_WAIT);
                }
            }
        }
        let m = &self.app.metrics;
        for (Done { due: d, out, .. }, next) in done.iter().zip(&outcomes) {
            let attempts = d.attempts + 1;
            match (&out.error, next) {
                (None, _) => {
                    m.callbacks_delivered.fetch_add(1, Ordering::Relaxed);
                    log::debug!("callback {} for call {}: delivered", d.id, d.call_id)
                }
                (Some(e), Next::Dead) => {
                    m.callbacks_dead.fetch_add(1, Ordering::Relaxed);
                    log::warn!(
                        "callback {} for call {}: given up after {attempts} attempts: {e}",
                        d.id,
                        d.call_id
                    )
                }
                (Some(e), _) => {
                    m.callbacks_failed.fetch_add(1, Ordering::Relaxed);
                    log::info!(
                        "callback {} for call {}: attempt {attempts} failed: {e}",
                        d.id,
                        d.call_id
                    )
                }
            }
        }
        {
            let mut c = self.claims();
            c.claimed = c.claimed.saturating_sub(done.len());
            for d in &done {
                if let Some(lane) = c.lanes.get_mut(&d.due.receiver) {
                    lane.claimed.remove(&d.due.id);
                }
            }
        }
        self.wake.notify_one();
        self.recorded.send_modify(|n| *n += done.len() as u64);
        Some(done.len())
    }

    /// Starts attempts whenever there is room and something is due, and
    /// looks for receivers with pending callbacks every `TICK`.
    async fn dispatch(self: Arc<Self>) {
        let mut looked: Option<Instant> = None;
        loop {
            let step = async {
                if looked.is_none_or(|t| t.elapsed() >= TICK) {
                    looked = Some(Instant::now());
                    self.look().await?;
                }
                self.start().await
            };
            match step.await {
                Ok(0) => {
                    // Nothing due, or no room: wait for a slot or for time.
                    let _ = tokio::time::timeout(TICK, self.wake.notified()).await;
                }
                Ok(_) => {}
                Err(e) => {
                    log::error!("callback outbox: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

/// The recorder's inbox of attempts' results.
pub struct Recorder(mpsc::Receiver<Done>);

/// Delivers the outbox until the process stops.
pub async fn run(app: Arc<App>) {
    let client = app.client.clone();
    let (outbox, mut inbox) = Outbox::new(app, client, now_ms);
    tokio::spawn(outbox.clone().dispatch());
    while outbox.record(&mut inbox).await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_active_secret_signs() {
        let secrets = [
            Secret::new("old-secret-0123456789"),
            Secret::new("new-secret-0123456789"),
        ];
        let sig = signature(&secrets, 1_700_000_000, b"{}");
        let parts: Vec<&str> = sig.split(',').collect();
        assert_eq!(parts[0], "t=1700000000");
        assert_eq!(parts.len(), 3);
        let mut mac = Hmac::<Sha256>::new_from_slice(b"new-secret-0123456789").unwrap();
        mac.update(b"1700000000.{}");
        let want: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(parts[2], format!("v1={want}"));
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let cfg = Callbacks {
            attempts: 30,
            max_age: Duration::from_secs(86400),
            timeout: Duration::from_secs(10),
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(600),
            max_response_bytes: 16384,
            concurrency: 256,
            per_receiver: 16,
        };
        for (n, base) in [(1, 1), (2, 2), (3, 4), (10, 512), (11, 600), (40, 600)] {
            let d = backoff(&cfg, n).as_secs_f64();
            assert!(
                d >= base as f64 && d <= base as f64 * 1.5,
                "attempt {n}: {d}"
            );
        }
    }

    #[test]
    fn a_receiver_is_the_scheme_host_and_port() {
        for (url, want) in [
            ("http://127.0.0.1:8080/cb?x=1", "http://127.0.0.1:8080"),
            ("https://hooks.example.com/a/b", "https://hooks.example.com"),
            ("https://hooks.example.com?x", "https://hooks.example.com"),
            ("http://h", "http://h"),
            (
                "HTTP://Hooks.Example.COM:8080/x",
                "http://hooks.example.com:8080",
            ),
            ("not a url", "not a url"),
        ] {
            assert_eq!(callbacks::receiver(url), want, "{url}");
        }
    }

    use crate::app::Metrics;
    use crate::store::calls::{self, NewCall};
    use crate::store::Store;
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicI64, AtomicUsize};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// A callback receiver on loopback speaking HTTP/1.1 with keep-alive: it
    /// answers 200 and notes each event id, or, when `answer` is false, reads
    /// each request and never answers.
    struct Receiver {
        addr: SocketAddr,
        /// Event ids answered, in order.
        seen: Arc<Mutex<Vec<String>>>,
        /// Requests held without an answer now, and at most.
        holding: Arc<AtomicUsize>,
        most_held: Arc<AtomicUsize>,
        /// Rung at each request.
        arrived: Arc<Notify>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Receiver {
        async fn start(addr: &str, answer: bool) -> Receiver {
            let listener = TcpListener::bind(addr).await.unwrap();
            let addr = listener.local_addr().unwrap();
            let seen = Arc::new(Mutex::new(Vec::new()));
            let holding = Arc::new(AtomicUsize::new(0));
            let most_held = Arc::new(AtomicUsize::new(0));
            let arrived = Arc::new(Notify::new());
            let (s, h, m, a) = (
                seen.clone(),
                holding.clone(),
                most_held.clone(),
                arrived.clone(),
            );
            let task = tokio::spawn(async move {
                loop {
                    let Ok((sock, _)) = listener.accept().await else {
                        return;
                    };
                    let (s, h, m, a) = (s.clone(), h.clone(), m.clone(), a.clone());
                    tokio::spawn(Self::serve(sock, answer, s, h, m, a));
                }
            });
            Receiver {
                addr,
                seen,
                holding,
                most_held,
                arrived,
                task,
            }
        }

        async fn serve(
            mut sock: TcpStream,
            answer: bool,
            seen: Arc<Mutex<Vec<String>>>,
            holding: Arc<AtomicUsize>,
            most_held: Arc<AtomicUsize>,
            arrived: Arc<Notify>,
        ) {
            let mut buf = Vec::new();
            loop {
                // One request: its head, then Content-Length bytes of body.
                let head_end = loop {
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                    let mut chunk = [0u8; 4096];
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                let header = |name: &str| {
                    head.lines()
                        .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
                        .unwrap_or_default()
                };
                let length: usize = header("content-length:").parse().unwrap_or(0);
                let event = header("c2c-event-id:");
                while buf.len() < head_end + length {
                    let mut chunk = [0u8; 4096];
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                buf.drain(..head_end + length);
                if !answer {
                    let now = holding.fetch_add(1, Ordering::SeqCst) + 1;
                    most_held.fetch_max(now, Ordering::SeqCst);
                    arrived.notify_one();
                    // Held until the caller gives up and closes.
                    let mut rest = [0u8; 64];
                    while !matches!(sock.read(&mut rest).await, Ok(0) | Err(_)) {}
                    holding.fetch_sub(1, Ordering::SeqCst);
                    return;
                }
                seen.lock().unwrap().push(event);
                arrived.notify_one();
                if sock
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }

        fn seen(&self) -> Vec<String> {
            self.seen.lock().unwrap().clone()
        }
    }

    impl Drop for Receiver {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    /// An outbox on a fresh database whose partner `p` may call back
    /// 127.0.0.1, on a clock the test sets.
    fn outbox(
        dir: &std::path::Path,
        extra: &str,
    ) -> (Arc<Outbox>, Recorder, Arc<AtomicI64>, Store) {
        let text = format!(
            "[database]\npath = \"{}\"\n{extra}\n[[partner]]\nid = \"p\"\nsecret = \"s\"\nprovider = \"sim\"\ncallback_hosts = [\"127.0.0.1\"]\n[[provider]]\nname = \"sim\"\nkind = \"sim\"\n",
            dir.join("t.db").display()
        );
        let app = Arc::new(App::for_test(&text));
        let (store, client) = (app.store.clone(), app.client.clone());
        let clock = Arc::new(AtomicI64::new(T0));
        let c = clock.clone();
        let (outbox, inbox) = Outbox::new(app, client, move || c.load(Ordering::SeqCst));
        (outbox, inbox, clock, store)
    }

    /// The simulated clock's start: 2026-12-08 00:00 UTC.
    const T0: i64 = 1_796_688_000_000;

    /// Queues `per_call` callbacks for each of `calls` new calls, to `url`;
    /// returns each call's event ids in order.
    async fn queue(store: &Store, url: String, calls: usize, per_call: usize) -> Vec<Vec<String>> {
        store
            .write(move |c| {
                let mut all = Vec::new();
                for _ in 0..calls {
                    let call = NewCall::for_test(T0, T0 + 60_000);
                    calls::insert(c, &call, &[], None)?;
                    let mut ids = Vec::new();
                    for seq in 1..=per_call {
                        let event = format!("{}-{seq}", call.id);
                        c.execute(
                            "INSERT INTO callbacks (call_id, seq, event_id, partner_id, url, format, content_type,
                                body, created_at, next_at, state, head, receiver)
                             VALUES (?1, ?2, ?3, 'p', ?4, 'native', 'application/json', ?5, ?6, ?6, 'pending', ?2 = 1, ?7)",
                            rusqlite::params![
                                call.id.to_string(),
                                seq as i64,
                                event,
                                url,
                                b"{}".to_vec(),
                                T0,
                                callbacks::receiver(&url)
                            ],
                        )?;
                        ids.push(event.to_ascii_lowercase());
                    }
                    all.push(ids);
                }
                Ok(all)
            })
            .await
            .unwrap()
    }

    /// Starts what is due and records every result of it.
    async fn round(outbox: &Arc<Outbox>, inbox: &mut Recorder) -> usize {
        outbox.look().await.unwrap();
        let started = outbox.start().await.unwrap();
        let mut recorded = 0;
        while recorded < started {
            recorded += outbox.record(inbox).await.unwrap();
        }
        assert_eq!(outbox.under_way(), (0, 0), "nothing is left claimed");
        started
    }

    /// When the next callback is due.
    async fn next_due(store: &Store) -> Option<i64> {
        store
            .read(|c| {
                // Each call's first pending callback: the others wait for it.
                c.query_row(
                    "SELECT min(next_at) FROM callbacks WHERE state = 'pending' AND head = 1",
                    [],
                    |r| r.get(0),
                )
            })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_receiver_down_for_an_hour_is_retried_with_backoff_and_then_gets_every_callback_once_in_order(
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (outbox, mut inbox, clock, store) = outbox(dir.path(), "");
        // Down: its port refuses connections.
        let addr = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let calls = queue(&store, format!("http://{addr}/cb"), 3, 4).await;

        // One simulated hour: start what is due, record it, go to the next due time.
        let hour = T0 + 3_600_000;
        while let Some(next) = next_due(&store).await.filter(|t| *t <= hour) {
            clock.store(next.max(clock.load(Ordering::SeqCst)), Ordering::SeqCst);
            round(&outbox, &mut inbox).await;
        }
        let attempts: Vec<(i64, i64, i64, Option<String>)> = store
            .read(|c| {
                c.prepare("SELECT a.callback_id, a.n, a.at, a.error FROM callback_attempts a ORDER BY a.callback_id, a.n")?
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                    .collect()
            })
            .await
            .unwrap();
        let firsts: HashSet<i64> = attempts.iter().map(|a| a.0).collect();
        assert_eq!(
            firsts.len(),
            3,
            "only each call's first callback is tried: {firsts:?}"
        );
        let cfg = outbox.app.runtime().config.callbacks.clone();
        for id in &firsts {
            let mine: Vec<_> = attempts.iter().filter(|a| a.0 == *id).collect();
            // 1 s doubling to the 10 minute cap, up to 50% more: 10 attempts in
            // the first 1,023 s at least, then one every 600 to 900 s.
            assert!(
                (13..=15).contains(&mine.len()),
                "{} attempts in an hour",
                mine.len()
            );
            for w in mine.windows(2) {
                let base = cfg
                    .backoff
                    .saturating_mul(1 << (w[0].1 - 1).min(30))
                    .min(cfg.max_backoff);
                let gap = w[1].2 - w[0].2;
                let base = base.as_millis() as i64;
                assert!(
                    gap >= base && gap <= base * 3 / 2,
                    "attempt {}: {gap} ms after the one before (base {base})",
                    w[1].1
                );
            }
            for a in &mine {
                let e = a.3.as_deref().unwrap_or_default();
                assert!(e.starts_with("unreachable:"), "{e}");
            }
        }
        let dead: i64 = store
            .read(|c| {
                c.query_row(
                    "SELECT count(*) FROM callbacks WHERE state <> 'pending'",
                    [],
                    |r| r.get(0),
                )
            })
            .await
            .unwrap();
        assert_eq!(dead, 0, "nothing is given up within an hour");

        // Back up on the same port: everything is delivered, once, in order.
        let rx = Receiver::start(&addr.to_string(), true).await;
        while let Some(next) = next_due(&store).await {
            clock.store(next.max(clock.load(Ordering::SeqCst)), Ordering::SeqCst);
            round(&outbox, &mut inbox).await;
        }
        let seen = rx.seen();
        assert_eq!(seen.len(), 12, "{seen:?}");
        for ids in &calls {
            let order: Vec<&String> = seen.iter().filter(|e| ids.contains(e)).collect();
            assert_eq!(
                order,
                ids.iter().collect::<Vec<_>>(),
                "one call's callbacks in order, once each"
            );
        }
        let m = &outbox.app.metrics;
        assert_eq!(Metrics::get(&m.callbacks_delivered), 12);
        assert_eq!(Metrics::get(&m.callbacks_failed), attempts.len() as u64);
        assert_eq!(Metrics::get(&m.callbacks_attempting), 0);
    }

    #[tokio::test]
    async fn a_receiver_that_never_answers_holds_its_own_slots_only_and_gives_them_back() {
        let dir = tempfile::tempdir().unwrap();
        let (outbox, mut inbox, _clock, store) = outbox(
            dir.path(),
            "[callbacks]\ntimeout = \"300ms\"\nper_receiver = 3\n",
        );
        let slow = Receiver::start("127.0.0.1:0", false).await;
        let fine = Receiver::start("127.0.0.1:0", true).await;
        // The slow receiver's callbacks come first in the outbox.
        queue(&store, format!("http://{}/cb", slow.addr), 10, 1).await;
        let ids = queue(&store, format!("http://{}/cb", fine.addr), 10, 2).await;

        tokio::spawn(outbox.clone().dispatch());
        let recorder = {
            let outbox = outbox.clone();
            tokio::spawn(async move { while outbox.record(&mut inbox).await.is_some() {} })
        };
        // Every callback of the receiver that answers is delivered while the
        // other holds its attempts.
        tokio::time::timeout(Duration::from_secs(10), async {
            while fine.seen().len() < 20 {
                fine.arrived.notified().await;
            }
        })
        .await
        .expect("the receiver that answers gets its callbacks");
        assert_eq!(fine.seen().len(), 20);
        assert!(
            slow.most_held.load(Ordering::SeqCst) <= 3,
            "per_receiver bounds the slow one"
        );
        let seen = fine.seen();
        for call in &ids {
            let order: Vec<&String> = seen.iter().filter(|e| call.contains(e)).collect();
            assert_eq!(order, call.iter().collect::<Vec<_>>());
        }

        // Its attempts time out and are recorded as failed; every slot comes back.
        let mut recorded = outbox.recorded.subscribe();
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let failed: i64 = store
                    .read(|c| c.query_row("SELECT count(*) FROM callback_attempts WHERE error LIKE 'no answer within%'", [], |r| r.get(0)))
                    .await
                    .unwrap();
                if failed >= 3 && outbox.under_way() == (0, 0) {
                    break;
                }
                recorded.changed().await.unwrap();
            }
        })
        .await
        .expect("the slow receiver's attempts end");
        assert_eq!(
            slow.holding.load(Ordering::SeqCst),
            0,
            "c2cd closed the connections it gave up on"
        );
        recorder.abort();
    }

    #[tokio::test]
    async fn receivers_that_are_down_do_not_take_the_slots_of_one_that_answers() {
        let dir = tempfile::tempdir().unwrap();
        let (outbox, mut inbox, _clock, store) = outbox(
            dir.path(),
            "[callbacks]\nconcurrency = 4\nper_receiver = 2\n",
        );
        // Six receivers down, each with calls waiting on their retries: with
        // the slots given out before anything was found due, the first two
        // asked took all four, every time.
        for _ in 0..6 {
            let addr = TcpListener::bind("127.0.0.1:0")
                .await
                .unwrap()
                .local_addr()
                .unwrap();
            queue(&store, format!("http://{addr}/cb"), 2, 1).await;
        }
        let fine = Receiver::start("127.0.0.1:0", true).await;
        let ids = queue(&store, format!("http://{}/cb", fine.addr), 1, 6).await;
        // The clock stands still: the down ones are not due again, the one
        // that answers has its next callback due each time.
        for _ in 0..20 {
            round(&outbox, &mut inbox).await;
            if fine.seen().len() == 6 {
                break;
            }
        }
        assert_eq!(
            fine.seen(),
            ids[0],
            "every callback of the receiver that answers, in order"
        );
    }

    #[tokio::test]
    async fn a_replay_waits_behind_the_callback_its_call_has_under_way() {
        let dir = tempfile::tempdir().unwrap();
        let (_outbox, _inbox, _clock, store) = outbox(dir.path(), "");
        queue(&store, "http://127.0.0.1:9/cb".into(), 1, 2).await;
        let heads = |store: Store| async move {
            store
                .read(|c| {
                    c.prepare("SELECT id, state, head FROM callbacks ORDER BY id")?
                        .query_map([], |r| {
                            Ok((
                                r.get::<_, i64>(0)?,
                                r.get::<_, String>(1)?,
                                r.get::<_, i64>(2)?,
                            ))
                        })?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .await
                .unwrap()
        };
        let rows = heads(store.clone()).await;
        let (first, second) = (rows[0].0, rows[1].0);
        let call: String = store
            .read(move |c| {
                c.query_row(
                    "SELECT call_id FROM callbacks WHERE id = ?1",
                    [first],
                    |r| r.get(0),
                )
            })
            .await
            .unwrap();
        let done = |id: i64, n: i64, call: &str| callbacks::Attempt {
            call: call.to_string(),
            id,
            n,
            at: T0,
            status: Some(200),
            latency_ms: 1,
            error: None,
            next: Next::Delivered,
        };
        // The first is delivered: the second is the head (and may be under way).
        let a = done(first, 1, &call);
        store
            .write(move |c| callbacks::record_attempt(c, &a))
            .await
            .unwrap();
        assert_eq!(heads(store.clone()).await[1], (second, "pending".into(), 1));
        // The first is replayed meanwhile: it waits, the head stays.
        assert!(store
            .write(move |c| callbacks::replay(c, first, T0 + 1))
            .await
            .unwrap());
        assert_eq!(
            heads(store.clone()).await,
            [(first, "pending".into(), 0), (second, "pending".into(), 1)]
        );
        // The second is done: the replayed one goes next.
        let b = done(second, 1, &call);
        store
            .write(move |c| callbacks::record_attempt(c, &b))
            .await
            .unwrap();
        assert_eq!(
            heads(store.clone()).await,
            [
                (first, "pending".into(), 1),
                (second, "delivered".into(), 0)
            ]
        );
        // A replay of the call's only callback makes it the head at once.
        let b = done(first, 2, &call);
        store
            .write(move |c| callbacks::record_attempt(c, &b))
            .await
            .unwrap();
        assert!(store
            .write(move |c| callbacks::replay(c, second, T0 + 2))
            .await
            .unwrap());
        assert_eq!(heads(store.clone()).await[1], (second, "pending".into(), 1));
    }
}
