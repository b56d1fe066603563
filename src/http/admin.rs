//! Operator endpoints: `/healthz`, `/metrics` (Prometheus text), and the reading
//! side of the `/v1` API: the operator with the `[admin] token` bearer token sees
//! every call, a partner with its HTTP Basic credentials only its own.

use std::fmt::Write;
use std::net::IpAddr;

use hyper::body::Incoming;
use hyper::header::AUTHORIZATION;
use hyper::{Method, Request, StatusCode};
use serde_json::json;

use super::{json, text, Resp};
use crate::app::{App, Metrics};
use crate::core::call::{CallState, Event};
use crate::core::phone::E164;
use crate::core::{ct_eq, now_ms, CallId};
use crate::dialect;
use crate::provider::recordings;
use crate::store::{callbacks, calls, partners, StoreError};
use rusqlite::OptionalExtension;

pub async fn healthz(app: &App) -> Resp {
    // Healthy means a request could be recorded now: the writer takes a (no-op)
    // write and commits it, and a reader answers.
    let check = async {
        app.store.write(|_| Ok(())).await?;
        app.store
            .read(|c| c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0)))
            .await
    };
    // A no-op write commits even on a full disk: the last real writes say.
    if let Some(why) = app.store.stats().disk_failing() {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("database unavailable: {why}\n"),
        );
    }
    match check.await {
        Ok(_) => text(StatusCode::OK, "ok\n"),
        Err(e) => {
            log::error!("health check: {e}");
            text(StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n")
        }
    }
}

pub async fn metrics(app: &App) -> Resp {
    let mut out = String::new();
    let m = &app.metrics;
    let _ = writeln!(
        out,
        "# HELP c2cd_connections_open Open HTTP connections.\n# TYPE c2cd_connections_open gauge"
    );
    let _ = writeln!(
        out,
        "c2cd_connections_open {}",
        Metrics::get(&m.connections_open)
    );
    let _ = writeln!(out, "# HELP c2cd_connections_total Accepted HTTP connections.\n# TYPE c2cd_connections_total counter");
    let _ = writeln!(
        out,
        "c2cd_connections_total {}",
        Metrics::get(&m.connections_total)
    );
    let _ = writeln!(out, "# HELP c2cd_connections_refused_total Connections refused over max_connections or max_connections_per_source.\n# TYPE c2cd_connections_refused_total counter");
    let _ = writeln!(
        out,
        "c2cd_connections_refused_total {}",
        Metrics::get(&m.connections_refused)
    );
    let _ = writeln!(out, "# HELP c2cd_http_responses_total Responses by route and status.\n# TYPE c2cd_http_responses_total counter");
    for ((route, status), n) in m.responses() {
        let _ = writeln!(
            out,
            "c2cd_http_responses_total{{route=\"{route}\",status=\"{status}\"}} {n}"
        );
    }
    let _ = writeln!(out, "# HELP c2cd_guard_stops_total Requests the guard rails stopped, by rule (see the README's guard rails).\n# TYPE c2cd_guard_stops_total counter");
    for (rule, n) in m.stops() {
        let _ = writeln!(out, "c2cd_guard_stops_total{{rule=\"{rule}\"}} {n}");
    }
    let l = &app.lockout.stats;
    let (sources, partners) = app.lockout.locked_now();
    let _ = writeln!(
        out,
        "# HELP c2cd_auth_failures_total Requests whose credentials were wrong, at every door.\n# TYPE c2cd_auth_failures_total counter\nc2cd_auth_failures_total {}",
        Metrics::get(&l.failures)
    );
    let _ = writeln!(
        out,
        "# HELP c2cd_auth_lockouts_total Locks begun by [guard] auth_failures_per_source and auth_failures_per_partner.\n# TYPE c2cd_auth_lockouts_total counter\nc2cd_auth_lockouts_total{{scope=\"source\"}} {}\nc2cd_auth_lockouts_total{{scope=\"partner\"}} {}",
        Metrics::get(&l.source_locks),
        Metrics::get(&l.partner_locks)
    );
    let _ = writeln!(
        out,
        "# HELP c2cd_auth_locked Sources and partners locked out now.\n# TYPE c2cd_auth_locked gauge\nc2cd_auth_locked{{scope=\"source\"}} {sources}\nc2cd_auth_locked{{scope=\"partner\"}} {partners}"
    );
    let _ = writeln!(
        out,
        "# HELP c2cd_callbacks_attempting Callback attempts under way.\n# TYPE c2cd_callbacks_attempting gauge\nc2cd_callbacks_attempting {}",
        Metrics::get(&m.callbacks_attempting)
    );
    let _ = writeln!(
        out,
        "# HELP c2cd_callback_attempts_total Callback attempts recorded, by outcome: delivered, failed (retried later), dead (given up).\n# TYPE c2cd_callback_attempts_total counter\nc2cd_callback_attempts_total{{outcome=\"delivered\"}} {}\nc2cd_callback_attempts_total{{outcome=\"failed\"}} {}\nc2cd_callback_attempts_total{{outcome=\"dead\"}} {}",
        Metrics::get(&m.callbacks_delivered),
        Metrics::get(&m.callbacks_failed),
        Metrics::get(&m.callbacks_dead)
    );
    let s = app.store.stats();
    let _ = writeln!(
        out,
        "# HELP c2cd_db_commits_total Group commits.\n# TYPE c2cd_db_commits_total counter"
    );
    let _ = writeln!(out, "c2cd_db_commits_total {}", Metrics::get(&s.commits));
    let _ = writeln!(
        out,
        "# HELP c2cd_db_writes_total Writes committed.\n# TYPE c2cd_db_writes_total counter"
    );
    let _ = writeln!(out, "c2cd_db_writes_total {}", Metrics::get(&s.writes));
    let _ = writeln!(out, "# HELP c2cd_db_failed_commits_total Transactions that failed to commit.\n# TYPE c2cd_db_failed_commits_total counter");
    let _ = writeln!(
        out,
        "c2cd_db_failed_commits_total {}",
        Metrics::get(&s.failed_commits)
    );
    let _ = writeln!(out, "# HELP c2cd_db_reruns_total Batches of writes run again, each write in a savepoint, because one of them failed.\n# TYPE c2cd_db_reruns_total counter");
    let _ = writeln!(out, "c2cd_db_reruns_total {}", Metrics::get(&s.reruns));
    let providers = app.runtime().providers.report();
    let _ = writeln!(out, "# HELP c2cd_provider_available Whether a provider can take calls (AMI: manager logged in).\n# TYPE c2cd_provider_available gauge");
    for p in &providers {
        let _ = writeln!(
            out,
            "c2cd_provider_available{{provider=\"{}\",kind=\"{}\"}} {}",
            p["name"].as_str().unwrap_or_default(),
            p["kind"].as_str().unwrap_or_default(),
            u8::from(p["available"] == true)
        );
    }
    let _ = writeln!(out, "# HELP c2cd_provider_breaker_open Whether a provider's circuit breaker keeps calls away (1 open, 0.5 probing, 0 closed).\n# TYPE c2cd_provider_breaker_open gauge");
    for p in &providers {
        let v = match p["breaker"].as_str() {
            Some("open") => "1",
            Some("half_open") => "0.5",
            _ => "0",
        };
        let _ = writeln!(
            out,
            "c2cd_provider_breaker_open{{provider=\"{}\"}} {v}",
            p["name"].as_str().unwrap_or_default()
        );
    }
    let _ = writeln!(out, "# HELP c2cd_provider_calls_in_flight Calls a provider is placing or following now (its channels in use).\n# TYPE c2cd_provider_calls_in_flight gauge");
    for p in &providers {
        let _ = writeln!(
            out,
            "c2cd_provider_calls_in_flight{{provider=\"{}\"}} {}",
            p["name"].as_str().unwrap_or_default(),
            p["in_flight"]
        );
    }
    let _ = writeln!(out, "# HELP c2cd_provider_failures_total Calls a provider could not place.\n# TYPE c2cd_provider_failures_total counter");
    for p in &providers {
        let _ = writeln!(
            out,
            "c2cd_provider_failures_total{{provider=\"{}\"}} {}",
            p["name"].as_str().unwrap_or_default(),
            p["failures"]
        );
    }
    if let Ok(states) = app.store.read(calls::count_by_state).await {
        let _ = writeln!(
            out,
            "# HELP c2cd_calls Calls in the database by state.\n# TYPE c2cd_calls gauge"
        );
        for (state, n) in states {
            let _ = writeln!(out, "c2cd_calls{{state=\"{state}\"}} {n}");
        }
    }
    let mut r = text(StatusCode::OK, out);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// The OpenAPI 3.1 description of the native API, as served at `/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// `GET /v1/openapi.json`: the API's description, for anyone (it holds no secret).
pub fn openapi() -> Resp {
    let mut r = text(StatusCode::OK, OPENAPI);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn error(status: StatusCode, code: &str, message: &str) -> Resp {
    json(
        status,
        &json!({ "error": { "code": code, "message": message } }),
    )
}

fn store_error(e: StoreError) -> Resp {
    log::error!("admin API: {e}");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "database error; see the log",
    )
}

/// Who is asking: the operator (the admin token: every call) or a partner
/// (HTTP Basic, as for `POST /v1/calls`: its own calls only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Admin,
    Partner(String),
}

impl Caller {
    /// Whether this caller may see a call of `owner`.
    fn may_see(&self, owner: Option<&str>) -> bool {
        match self {
            Caller::Admin => true,
            Caller::Partner(p) => owner == Some(p.as_str()),
        }
    }
}

fn unauthorized(message: &str) -> Resp {
    let mut r = error(StatusCode::UNAUTHORIZED, "unauthorized", message);
    r.headers_mut().insert(
        hyper::header::WWW_AUTHENTICATE,
        hyper::header::HeaderValue::from_static("Bearer, Basic realm=\"c2cd\", charset=\"UTF-8\""),
    );
    r
}

/// The caller the request's credentials name. Wrong credentials count
/// against the source (and the partner a username names): see
/// [`crate::lockout`].
fn authorized(app: &App, remote: IpAddr, req: &Request<Incoming>) -> Result<Caller, Box<Resp>> {
    let rt = app.runtime();
    let header = req.headers().get(AUTHORIZATION);
    let (scheme, value) = header
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .unwrap_or(("", ""));
    if scheme.eq_ignore_ascii_case("basic") {
        let basic_door = |p: &crate::config::Partner| {
            p.roundtrip.is_some() || p.dialects.iter().any(|d| d.basic_auth())
        };
        return match dialect::basic_partner_where(app, &rt.config, remote, header, basic_door) {
            Ok(p) => Ok(Caller::Partner(p.id.clone())),
            Err(dialect::BasicError::Forbidden) => Err(Box::new(error(
                StatusCode::FORBIDDEN,
                "forbidden",
                "the partner is disabled",
            ))),
            Err(dialect::BasicError::Locked(l)) => Err(Box::new(locked(&l))),
            Err(dialect::BasicError::Unauthorized) => Err(Box::new(unauthorized(
                "the partner's username or password is wrong",
            ))),
        };
    }
    let limits = &rt.config.guard.auth;
    if let Err(l) = app.lockout.check(limits, remote, None) {
        return Err(Box::new(locked(&l)));
    }
    let Some(token) = rt.config.admin.token.as_ref() else {
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            "admin_disabled",
            "the admin API is off: set [admin] token in the config (partners use HTTP Basic)",
        )));
    };
    let presented = if scheme.eq_ignore_ascii_case("bearer") {
        value.trim()
    } else {
        ""
    };
    // SECURITY: constant-time comparison of the admin token.
    if ct_eq(presented.as_bytes(), token.expose().as_bytes()) {
        Ok(Caller::Admin)
    } else {
        if !presented.is_empty() {
            app.lockout.failed(limits, remote, None);
        }
        Err(Box::new(unauthorized(
            "send Authorization: Bearer <[admin] token>, or Basic with a partner's credentials",
        )))
    }
}

/// 429: the source or partner is locked out after failed authentications.
fn locked(l: &crate::lockout::Locked) -> Resp {
    let mut r = error(StatusCode::TOO_MANY_REQUESTS, "auth_lockout", &l.detail());
    if let Ok(v) = hyper::header::HeaderValue::from_str(&l.retry_after.to_string()) {
        r.headers_mut().insert(hyper::header::RETRY_AFTER, v);
    }
    r
}

fn not_found() -> Resp {
    error(StatusCode::NOT_FOUND, "not_found", "no call with that id")
}

fn bad_query(message: String) -> Resp {
    error(StatusCode::BAD_REQUEST, "bad_query", &message)
}

/// The filter of `GET /v1/calls`, from its query; a partner's is its own calls.
fn filter(caller: &Caller, q: &dyn Fn(&str) -> Option<String>) -> Result<calls::Filter, Box<Resp>> {
    let time = |k: &str| -> Result<Option<i64>, Box<Resp>> {
        match q(k) {
            None => Ok(None),
            Some(v) => v
                .parse::<jiff::Timestamp>()
                .map(|t| Some(t.as_millisecond()))
                .map_err(|_| {
                    Box::new(bad_query(format!(
                        "{k}: {v:?} is not an RFC 3339 time (2026-01-31T12:00:00Z)"
                    )))
                }),
        }
    };
    let number = match q("number") {
        None => None,
        Some(n) => {
            let digits = n.trim().trim_start_matches('+');
            match E164::from_digits(digits) {
                Ok(e) => Some(e.as_str().to_string()),
                Err(e) => return Err(Box::new(bad_query(format!("number: {e}")))),
            }
        }
    };
    let state = q("state");
    if let Some(s) = state.as_deref() {
        if CallState::parse(s).is_none() {
            return Err(Box::new(bad_query(format!(
                "state: {s:?} is not a call state"
            ))));
        }
    }
    let partner = match (caller, q("partner")) {
        (Caller::Admin, p) => p,
        (Caller::Partner(me), Some(p)) if &p != me => {
            return Err(Box::new(error(
                StatusCode::FORBIDDEN,
                "forbidden",
                "a partner sees only its own calls",
            )))
        }
        (Caller::Partner(me), _) => Some(me.clone()),
    };
    Ok(calls::Filter {
        partner,
        state,
        since: time("since")?,
        until: time("until")?,
        number,
        before: q("before"),
    })
}

pub async fn handle(app: &App, remote: IpAddr, req: Request<Incoming>) -> Resp {
    let caller = match authorized(app, remote, &req) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let path = req.uri().path().trim_end_matches('/').to_string();
    if let Some(id) = path
        .strip_prefix("/v1/calls/")
        .and_then(|r| r.strip_suffix("/hangup"))
    {
        if req.method() != Method::POST {
            return error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "POST to hang a call up",
            );
        }
        return hangup(app, &caller, id).await;
    }
    if path == "/v1/cdrs" {
        if req.method() != Method::POST {
            return error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "POST CDRs here",
            );
        }
        if !matches!(caller, Caller::Admin) {
            return error(
                StatusCode::FORBIDDEN,
                "forbidden",
                "CDRs are posted with the admin token",
            );
        }
        return post_cdrs(app, req).await;
    }
    if req.method() != Method::GET {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "only GET is served here",
        );
    }
    let query: Vec<(String, String)> =
        form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let q = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    if path == "/v1/sales" {
        let limit = match q("limit").map(|l| l.parse::<usize>()) {
            None => 50,
            Some(Ok(l)) if (1..=1000).contains(&l) => l,
            Some(_) => return bad_query("limit: must be 1 to 1000".into()),
        };
        // A partner sees only its own submissions.
        let partner = match &caller {
            Caller::Admin => q("partner"),
            Caller::Partner(p) => Some(p.clone()),
        };
        let call = q("call_id");
        let r = app
            .store
            .read(move |c| crate::store::sales::list(c, call.as_deref(), partner.as_deref(), limit))
            .await;
        return match r {
            Ok(rows) => json(StatusCode::OK, &json!({ "sales": rows })),
            Err(e) => store_error(e),
        };
    }
    match path.strip_prefix("/v1/calls") {
        Some("") => {
            let limit = match q("limit").map(|l| l.parse::<usize>()) {
                None => 50,
                Some(Ok(l)) if (1..=1000).contains(&l) => l,
                Some(_) => return bad_query("limit: must be 1 to 1000".into()),
            };
            let f = match filter(&caller, &q) {
                Ok(f) => f,
                Err(r) => return *r,
            };
            match app.store.read(move |c| calls::list(c, limit, &f)).await {
                Ok(rows) => {
                    // A full page may have more behind it.
                    let next = (rows.len() == limit)
                        .then(|| rows.last().map(|r| r.id.clone()))
                        .flatten();
                    json(
                        StatusCode::OK,
                        &json!({ "calls": rows, "next_before": next }),
                    )
                }
                Err(e) => store_error(e),
            }
        }
        Some(rest) if sub(rest, "/recording").is_some() => {
            let id = sub(rest, "/recording").unwrap_or_default().to_string();
            recording(app, &caller, id).await
        }
        Some(rest) if sub(rest, "/callbacks").is_some() => {
            let id = sub(rest, "/callbacks").unwrap_or_default().to_string();
            let r = app
                .store
                .read(move |c| match calls::owner(c, &id)? {
                    None => Ok(None),
                    Some(owner) => Ok(Some((owner, callbacks::for_call(c, &id)?))),
                })
                .await;
            match r {
                Ok(Some((owner, Some(list)))) if caller.may_see(owner.as_deref()) => {
                    json(StatusCode::OK, &json!({ "callbacks": list }))
                }
                Ok(_) => not_found(),
                Err(e) => store_error(e),
            }
        }
        Some(rest) if rest.starts_with('/') && !rest[1..].contains('/') => {
            let id = rest[1..].to_string();
            match app.store.read(move |c| calls::get(c, &id)).await {
                Ok(Some(v)) if caller.may_see(v["partner_id"].as_str()) => {
                    json(StatusCode::OK, &view(&caller, v))
                }
                Ok(_) => not_found(),
                Err(e) => store_error(e),
            }
        }
        _ if path == "/v1/providers" => match caller {
            Caller::Admin => json(
                StatusCode::OK,
                &json!({ "providers": app.runtime().providers.report() }),
            ),
            Caller::Partner(_) => error(
                StatusCode::FORBIDDEN,
                "forbidden",
                "providers are the operator's to see",
            ),
        },
        _ if path == "/v1/partners" => match app.store.read(partners::list).await {
            Ok(rows) => {
                let rows: Vec<_> = rows
                    .into_iter()
                    .filter(|p| caller.may_see(Some(&p.id)))
                    .collect();
                json(StatusCode::OK, &json!({ "partners": rows }))
            }
            Err(e) => store_error(e),
        },
        _ => error(StatusCode::NOT_FOUND, "not_found", "no such resource"),
    }
}

/// The call id of `/{id}<suffix>`, when there is one (never an empty id).
fn sub<'a>(rest: &'a str, suffix: &str) -> Option<&'a str> {
    rest.strip_prefix('/')
        .and_then(|r| r.strip_suffix(suffix))
        .filter(|id| !id.is_empty() && !id.contains('/'))
}

/// `GET /v1/calls/{id}/recording`: the call's recording, to the operator or the
/// partner that owns the call.
async fn recording(app: &App, caller: &Caller, id: String) -> Resp {
    let row = app
        .store
        .read(move |c| {
            c.query_row(
                "SELECT partner_id, recording, (SELECT billable_s FROM cdrs WHERE call_id = calls.id), state
                 FROM calls WHERE id = ?1",
                [id],
                |r| {
                    Ok((
                        r.get::<_, Option<String>>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, Option<i64>>(2)?,
                        r.get::<_, String>(3)?,
                    ))
                },
            )
            .optional()
        })
        .await;
    let (reference, billable, ended) = match row {
        Err(e) => return store_error(e),
        Ok(Some((owner, reference, billable, state))) if caller.may_see(owner.as_deref()) => {
            let ended = CallState::parse(&state).is_some_and(CallState::is_terminal);
            (reference, billable, ended)
        }
        Ok(_) => return not_found(),
    };
    let Some(reference) = reference else {
        return error(
            StatusCode::NOT_FOUND,
            "no_recording",
            "the call has no recording",
        );
    };
    let config = &app.runtime().config;
    let wav = match recordings::locate(&reference, billable.unwrap_or(0), config) {
        Some(recordings::Audio::Made(wav)) => wav,
        // Asterisk writes the file while the call is up.
        Some(recordings::Audio::File(_)) if !ended => {
            return error(
                StatusCode::NOT_FOUND,
                "no_recording",
                "the recording is served once the call has ended",
            )
        }
        Some(recordings::Audio::File(path)) => match read_recording(&path).await {
            Ok(wav) => wav,
            Err(r) => return r,
        },
        None => {
            return error(
                StatusCode::NOT_FOUND,
                "no_recording",
                &format!("recording {reference:?} is not held by c2cd"),
            )
        }
    };
    let mut r = super::text(StatusCode::OK, wav);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("audio/wav"),
    );
    r
}

/// A recording file Asterisk wrote, or the answer that says why it cannot be
/// served.
async fn read_recording(path: &std::path::Path) -> Result<Vec<u8>, Resp> {
    use std::io::ErrorKind;
    let fail = |e: std::io::Error| match e.kind() {
        ErrorKind::NotFound => error(
            StatusCode::NOT_FOUND,
            "no_recording",
            "the recording is not on the box (yet): Asterisk writes it when the call ends",
        ),
        _ => {
            log::warn!(
                "recording {}: {e} (c2cd's user needs read access: the asterisk group)",
                path.display()
            );
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "recording_unreadable",
                "c2cd cannot read the recording; the operator's log says why",
            )
        }
    };
    // A few at a time: each is held in memory while it is sent.
    static READING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);
    let _turn = READING.acquire().await;
    // Files are read on the blocking pool, never on the request's thread.
    let p = path.to_path_buf();
    let read = tokio::task::spawn_blocking(move || {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        // Never through a link, never blocking on a FIFO: Asterisk's user can
        // write in that directory.
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&p)?;
        let meta = f.metadata()?;
        if !meta.is_file() {
            return Err(std::io::Error::other("not a regular file"));
        }
        if meta.len() > recordings::MAX_FILE_BYTES {
            return Ok(Err(meta.len()));
        }
        let mut wav = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
        f.read_to_end(&mut wav)?;
        Ok(Ok(wav))
    })
    .await
    .unwrap_or_else(|e| Err(std::io::Error::other(e)));
    read.map_err(fail)?.map_err(|size| {
        log::warn!(
            "recording {}: {size} bytes, more than the {} served",
            path.display(),
            recordings::MAX_FILE_BYTES
        );
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "recording_too_large",
            "the recording is larger than c2cd serves; the operator has it on the box",
        )
    })
}

/// The most CDRs one `POST /v1/cdrs` may carry.
pub const MAX_CDRS: usize = 1000;

/// `POST /v1/cdrs`: the PBX's calls c2cd did not place, for RoundTrip to match
/// sales to. `{"source": "…", "cdrs": [{"id", "ani", "target", "dnis", "start",
/// "answer", "end", "disposition", "billable_seconds"}, …]}`. All or none: a
/// bad CDR refuses the batch, naming it. Idempotent on each CDR's `id`.
async fn post_cdrs(app: &App, req: Request<Incoming>) -> Resp {
    let rt = app.runtime();
    let limits = (
        rt.config.server.max_body_bytes,
        rt.config.server.body_read_timeout,
    );
    drop(rt);
    if !dialect::content_type_is(&req, "application/json") {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send Content-Type: application/json",
        );
    }
    let body = match crate::http::read_body(req, limits.0, limits.1).await {
        Ok(b) => b,
        Err(crate::http::BodyError::TooLarge) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "the body is larger than server.max_body_bytes: send fewer CDRs at a time",
            )
        }
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "unreadable",
                &format!("the body: {e:?}"),
            )
        }
    };
    let cdrs = match parse_cdrs(&body) {
        Ok(c) => c,
        Err(why) => return error(StatusCode::BAD_REQUEST, "invalid", &why),
    };
    let now = crate::core::now_ms();
    let done = app
        .store
        .write(move |c| {
            cdrs.iter()
                .map(|cdr| crate::store::pbx::ingest(c, cdr, now))
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .await;
    match done {
        Ok(list) => {
            let new = list.iter().filter(|i| i.new).count();
            log::info!("cdrs: {new} ingested, {} already known", list.len() - new);
            json(
                StatusCode::OK,
                &json!({ "ingested": new, "known": list.len() - new, "calls": list }),
            )
        }
        Err(e) => store_error(e),
    }
}

/// The CDRs of a `POST /v1/cdrs` body, or what is wrong with it.
fn parse_cdrs(body: &[u8]) -> Result<Vec<crate::store::pbx::Cdr>, String> {
    use crate::dialect::roundtrip::{call_start, nanpa};
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let source = match v.get("source") {
        None => "api".to_string(),
        Some(serde_json::Value::String(s))
            if !s.is_empty()
                && s.len() <= 64
                && !s.starts_with("ami:")
                && s.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            s.clone()
        }
        Some(_) => {
            return Err("source: 1 to 64 printable characters, not starting with \"ami:\"".into())
        }
    };
    let list = v
        .get("cdrs")
        .and_then(|c| c.as_array())
        .ok_or("the body must be {\"cdrs\": [ … ]}")?;
    if list.len() > MAX_CDRS {
        return Err(format!("at most {MAX_CDRS} CDRs at a time"));
    }
    let number = |s: &str| match s.strip_prefix('+') {
        Some(_) => crate::core::phone::E164::from_canonical(s)
            .map(|n| n.as_str().to_string())
            .map_err(|e| e.to_string()),
        None => nanpa(s),
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, c) in list.iter().enumerate() {
        let at = |k: &str, why: String| format!("cdrs[{i}].{k}: {why}");
        let text = |k: &str| c.get(k).and_then(|x| x.as_str()).map(str::trim);
        let need = |k: &str| {
            text(k)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| at(k, "required".into()))
        };
        let id = need("id")?;
        if id.len() > 128 {
            return Err(at("id", "at most 128 characters".into()));
        }
        let time = |k: &str| {
            text(k)
                .filter(|s| !s.is_empty())
                .map(|s| call_start(s).map_err(|e| at(k, e)))
                .transpose()
        };
        out.push(crate::store::pbx::Cdr {
            source: source.clone(),
            unique_id: id.to_string(),
            ani: number(need("ani")?).map_err(|e| at("ani", e))?,
            target: number(need("target")?).map_err(|e| at("target", e))?,
            dnis: text("dnis")
                .filter(|s| !s.is_empty())
                .map(number)
                .transpose()
                .map_err(|e| at("dnis", e))?,
            started_at: call_start(need("start")?).map_err(|e| at("start", e))?,
            answered_at: time("answer")?,
            ended_at: time("end")?,
            disposition: text("disposition").map(str::to_string),
            billable_s: c.get("billable_seconds").and_then(|b| b.as_i64()),
            received: c.to_string(),
        });
    }
    Ok(out)
}

/// A call as `caller` may see it: a partner is not shown what c2cd sent its
/// click-to-call server (it carries the upstream's Auth) nor which server.
fn view(caller: &Caller, mut call: serde_json::Value) -> serde_json::Value {
    if let (Caller::Partner(_), Some(o)) = (caller, call.as_object_mut()) {
        o.remove("upstream_request");
        o.remove("provider");
    }
    call
}

/// `POST /v1/calls/{id}/hangup`: stops the provider's work on the call and ends
/// it (a bridged call completes, any other fails; open legs are closed).
async fn hangup(app: &App, caller: &Caller, id: &str) -> Resp {
    let Some(call_id) = CallId::parse(id) else {
        return not_found();
    };
    let id_s = id.to_string();
    let state = app
        .store
        .read(move |c| {
            c.query_row(
                "SELECT state, partner_id, provider FROM calls WHERE id = ?1",
                [id_s],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, Option<String>>(2)?,
                    ))
                },
            )
            .optional()
        })
        .await;
    let mut provider = None;
    let state = match state {
        Ok(Some((s, owner, p))) if caller.may_see(owner.as_deref()) => {
            provider = p;
            Ok(Some(s))
        }
        Ok(_) => Ok(None),
        Err(e) => Err(e),
    };
    match state {
        Err(e) => return store_error(e),
        Ok(None) => return not_found(),
        Ok(Some(s)) if CallState::parse(&s).is_none_or(CallState::is_terminal) => {
            return error(
                StatusCode::CONFLICT,
                "ended",
                &format!("the call has already ended ({s})"),
            );
        }
        Ok(Some(s))
            if s == CallState::Requested.as_str() || s == CallState::Originating.as_str() =>
        {
            return error(
                StatusCode::CONFLICT,
                "not_placed",
                "the call is still being placed; try again in a moment",
            );
        }
        Ok(Some(_)) => {}
    }
    let provider = provider.and_then(|p| app.runtime().providers.get(&p));
    if provider.as_ref().is_some_and(|p| !p.can_cancel()) {
        return error(
            StatusCode::CONFLICT,
            "cannot_cancel",
            "the call's provider (an upstream API) offers no way to cancel it",
        );
    }
    // The provider stops first, so that no event of its follows the hang-up:
    // its channels are hung up (AMI), then its task is stopped.
    if let Some(p) = provider {
        p.hang_up(call_id).await;
    }
    app.following.stop(call_id);
    let detail = match caller {
        Caller::Admin => "hung up by the operator",
        Caller::Partner(_) => "hung up by the partner",
    };
    let applied = app
        .store
        .write(move |c| calls::apply(c, call_id, &[(Event::Cancelled, Some(detail))], now_ms()))
        .await;
    match applied {
        Err(e) => store_error(e),
        Ok(states) if states.is_empty() => error(
            StatusCode::CONFLICT,
            "ended",
            "the call ended while it was being hung up",
        ),
        Ok(_) => {
            log::info!("call {call_id}: {detail}");
            let id = call_id.to_string();
            match app.store.read(move |c| calls::get(c, &id)).await {
                Ok(Some(v)) => json(StatusCode::OK, &view(caller, v)),
                Ok(None) => not_found(),
                Err(e) => store_error(e),
            }
        }
    }
}

/// GETs `path` of the admin API from the daemon `cfg` describes (its first
/// listener, loopback when it listens on every address), with its admin token:
/// how the command line asks a running daemon for what only it knows.
pub fn ask_daemon(cfg: &crate::config::Config, path: &str) -> anyhow::Result<serde_json::Value> {
    use anyhow::Context;
    use http_body_util::BodyExt;
    let token = cfg
        .admin
        .token
        .as_ref()
        .context("the daemon's admin API is off: set [admin] token in the config")?;
    let mut addr = *cfg
        .server
        .listen
        .first()
        .context("the config has no server.listen")?;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let uri: hyper::Uri = format!("http://{addr}{path}").parse()?;
    let req = Request::get(uri)
        .header(AUTHORIZATION, format!("Bearer {}", token.expose()))
        .body(http_body_util::Empty::<bytes::Bytes>::new())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        let resp = tokio::time::timeout(std::time::Duration::from_secs(10), client.request(req))
            .await
            .context("the daemon did not answer within 10s")?
            .with_context(|| format!("cannot reach the daemon at {addr}; is c2cd running?"))?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        anyhow::ensure!(
            status.is_success(),
            "the daemon answered HTTP {status}: {}",
            String::from_utf8_lossy(&body)
        );
        Ok(serde_json::from_slice(&body)?)
    })
}
