//! Operator endpoints: `/healthz`, `/metrics` (Prometheus text), and the admin
//! API under `/v1/` behind the `[admin] token` bearer token.

use std::fmt::Write;

use hyper::body::Incoming;
use hyper::header::AUTHORIZATION;
use hyper::{Method, Request, StatusCode};
use serde_json::json;

use super::{json, text, Resp};
use crate::app::{App, Metrics};
use crate::core::call::{CallState, Event};
use crate::core::{ct_eq, now_ms, CallId};
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
    let _ = writeln!(out, "# HELP c2cd_connections_refused_total Connections refused over max_connections.\n# TYPE c2cd_connections_refused_total counter");
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

/// Whether the request carries the admin bearer token.
fn authorized(app: &App, req: &Request<Incoming>) -> Result<(), Box<Resp>> {
    let rt = app.runtime();
    let Some(token) = rt.config.admin.token.as_ref() else {
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            "admin_disabled",
            "the admin API is off: set [admin] token in the config",
        )));
    };
    let presented = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .unwrap_or("");
    // SECURITY: constant-time comparison of the admin token.
    if ct_eq(presented.as_bytes(), token.expose().as_bytes()) {
        Ok(())
    } else {
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send Authorization: Bearer <[admin] token>",
        );
        r.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            hyper::header::HeaderValue::from_static("Bearer"),
        );
        Err(Box::new(r))
    }
}

pub async fn handle(app: &App, req: Request<Incoming>) -> Resp {
    if let Err(r) = authorized(app, &req) {
        return *r;
    }
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
        return hangup(app, id).await;
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
    match path.strip_prefix("/v1/calls") {
        Some("") => {
            let limit = q("limit")
                .and_then(|l| l.parse().ok())
                .unwrap_or(50usize)
                .min(1000);
            let (partner, state) = (q("partner"), q("state"));
            match app
                .store
                .read(move |c| calls::list(c, limit, partner.as_deref(), state.as_deref()))
                .await
            {
                Ok(rows) => json(StatusCode::OK, &json!({ "calls": rows })),
                Err(e) => store_error(e),
            }
        }
        Some(rest) if rest.starts_with('/') && rest.ends_with("/callbacks") => {
            let id = rest[1..rest.len() - "/callbacks".len()].to_string();
            match app.store.read(move |c| callbacks::for_call(c, &id)).await {
                Ok(Some(list)) => json(StatusCode::OK, &json!({ "callbacks": list })),
                Ok(None) => error(StatusCode::NOT_FOUND, "not_found", "no call with that id"),
                Err(e) => store_error(e),
            }
        }
        Some(rest) if rest.starts_with('/') && !rest[1..].contains('/') => {
            let id = rest[1..].to_string();
            match app.store.read(move |c| calls::get(c, &id)).await {
                Ok(Some(v)) => json(StatusCode::OK, &v),
                Ok(None) => error(StatusCode::NOT_FOUND, "not_found", "no call with that id"),
                Err(e) => store_error(e),
            }
        }
        _ if path == "/v1/partners" => match app.store.read(partners::list).await {
            Ok(rows) => json(StatusCode::OK, &json!({ "partners": rows })),
            Err(e) => store_error(e),
        },
        _ => error(StatusCode::NOT_FOUND, "not_found", "no such resource"),
    }
}

/// `POST /v1/calls/{id}/hangup`: stops the provider's work on the call and ends
/// it (a bridged call completes, any other fails; open legs are closed).
async fn hangup(app: &App, id: &str) -> Resp {
    let Some(call_id) = CallId::parse(id) else {
        return error(StatusCode::NOT_FOUND, "not_found", "no call with that id");
    };
    let id_s = id.to_string();
    let state = app
        .store
        .read(move |c| {
            c.query_row("SELECT state FROM calls WHERE id = ?1", [id_s], |r| {
                r.get::<_, String>(0)
            })
            .optional()
        })
        .await;
    match state {
        Err(e) => return store_error(e),
        Ok(None) => return error(StatusCode::NOT_FOUND, "not_found", "no call with that id"),
        Ok(Some(s)) if CallState::parse(&s).is_none_or(CallState::is_terminal) => {
            return error(
                StatusCode::CONFLICT,
                "ended",
                &format!("the call has already ended ({s})"),
            );
        }
        Ok(Some(_)) => {}
    }
    // The provider stops first, so that no event of its follows the hang-up.
    app.following.stop(call_id);
    let detail = "hung up through the admin API";
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
                Ok(Some(v)) => json(StatusCode::OK, &v),
                Ok(None) => error(StatusCode::NOT_FOUND, "not_found", "no call with that id"),
                Err(e) => store_error(e),
            }
        }
    }
}
