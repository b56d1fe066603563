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

use std::fmt::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request};
use sha2::Sha256;

use crate::app::App;
use crate::config::{Callbacks, Config};
use crate::core::{now_ms, Secret};
use crate::outbound::{error_chain, HttpClient};
use crate::store::callbacks::{self, Due, Next};
use crate::store::StoreError;

/// Callbacks attempted at once at most.
const BATCH: usize = 32;
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

/// Attempts every callback due at `now` once; returns how many were attempted.
pub async fn deliver_due(app: &App, client: &HttpClient, now: i64) -> Result<usize, StoreError> {
    let due = app
        .store
        .read(move |c| callbacks::due(c, now, BATCH))
        .await?;
    if due.is_empty() {
        return Ok(0);
    }
    let rt = app.runtime();
    let mut tasks = tokio::task::JoinSet::new();
    for d in due {
        let rt = rt.clone();
        let client = client.clone();
        tasks.spawn(async move {
            let started = Instant::now();
            let out = attempt(&client, &rt.config, &d).await;
            (d, out, started.elapsed())
        });
    }
    // Every attempt of the batch is recorded in one write: one commit for
    // the batch, not one for each callback (bench/soak.sh: the outbox fell
    // behind the calls when each attempt waited for a commit of its own).
    let mut done = Vec::with_capacity(BATCH);
    while let Some(joined) = tasks.join_next().await {
        let Ok((d, out, took)) = joined else { continue };
        let cfg = &rt.config.callbacks;
        let attempts = d.attempts + 1;
        let at = now_ms();
        let refused = out
            .error
            .as_deref()
            .is_some_and(|e| e.starts_with("host ") || e.starts_with("the partner"));
        let next = if out.error.is_none() {
            Next::Delivered
        } else if refused
            || attempts >= cfg.attempts as i64
            || at - d.created_at >= i64::try_from(cfg.max_age.as_millis()).unwrap_or(i64::MAX)
        {
            Next::Dead
        } else {
            let wait = i64::try_from(backoff(cfg, attempts).as_millis()).unwrap_or(i64::MAX / 2);
            Next::Retry(at + wait)
        };
        let latency = i64::try_from(took.as_millis()).unwrap_or(i64::MAX);
        done.push((d, out, attempts, at, latency, next));
    }
    let rows: Vec<_> = done
        .iter()
        .map(|(d, out, attempts, at, latency, next)| {
            (
                d.id,
                *attempts,
                *at,
                out.status,
                *latency,
                out.error.clone(),
                *next,
            )
        })
        .collect();
    app.store
        .write(move |c| {
            for (id, attempts, at, status, latency, error, next) in &rows {
                callbacks::record_attempt(
                    c,
                    *id,
                    *attempts,
                    *at,
                    *status,
                    *latency,
                    error.as_deref(),
                    *next,
                )?;
            }
            Ok(())
        })
        .await?;
    for (d, out, attempts, _, _, next) in &done {
        match &out.error {
            None => log::debug!("callback {} for call {}: delivered", d.id, d.call_id),
            Some(e) if *next == Next::Dead => {
                log::warn!(
                    "callback {} for call {}: given up after {attempts} attempts: {e}",
                    d.id,
                    d.call_id
                )
            }
            Some(e) => log::info!(
                "callback {} for call {}: attempt {attempts} failed: {e}",
                d.id,
                d.call_id
            ),
        }
    }
    let n = done.len();
    Ok(n)
}

/// Delivers the outbox until the process stops.
pub async fn run(app: Arc<App>) {
    loop {
        match deliver_due(&app, &app.client, now_ms()).await {
            Ok(0) => tokio::time::sleep(TICK).await,
            Ok(_) => {}
            Err(e) => {
                log::error!("callback outbox: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
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
        };
        for (n, base) in [(1, 1), (2, 2), (3, 4), (10, 512), (11, 600), (40, 600)] {
            let d = backoff(&cfg, n).as_secs_f64();
            assert!(
                d >= base as f64 && d <= base as f64 * 1.5,
                "attempt {n}: {d}"
            );
        }
    }
}
