//! What the HTTP click-to-call servers (`xip`, `spokn`, `airtel`) share: one
//! bounded request/answer exchange, HTTP Basic credentials, and the signed
//! callback URLs by which Spokn and Airtel report back.

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::CONTENT_TYPE;
use hyper::{Request, StatusCode};
use std::sync::Arc;
use std::time::Duration;

use super::{Event, Provider, ProviderError};
use crate::core::call::CallState;
use crate::core::plan::CallPlan;
use crate::core::{now_ms, CallId};
use crate::outbound::HttpClient;
use crate::store::{calls, StoreError};

/// An upstream's answer: status, media type and (bounded) body.
pub struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Bytes,
}

/// Sends `req` and reads the answer, at most `limit` bytes of body, all within
/// `timeout`. Only a connection that was never made is `Unreachable`.
pub async fn exchange(
    client: &HttpClient,
    req: Request<Full<Bytes>>,
    limit: usize,
    timeout: Duration,
) -> Result<Answer, ProviderError> {
    let go = async {
        let resp = client
            .request(req)
            .await
            .map_err(|e| crate::outbound::provider_error(&e))?;
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = Limited::new(resp.into_body(), limit)
            .collect()
            .await
            .map_err(|e| ProviderError::BadResponse(format!("reading the body: {e}")))?
            .to_bytes();
        Ok(Answer {
            status,
            content_type,
            body,
        })
    };
    match tokio::time::timeout(timeout, go).await {
        Ok(r) => r,
        Err(_) => Err(ProviderError::Timeout(timeout)),
    }
}

/// The `Authorization` value for HTTP Basic.
pub fn basic(user: &str, password: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {b64}")
}

/// A callback for a call placed upstream, found and authenticated.
pub struct Incoming {
    pub call_id: CallId,
    pub provider: Arc<Provider>,
    /// The call's A and B numbers, as stored.
    pub a: Option<String>,
    pub b: Option<String>,
    /// What the call was to dial (`calls.plan`): the participants, strategy and
    /// retries a report is read against. `None` when the call was stored
    /// without one.
    pub plan: Option<CallPlan>,
}

/// Finds the call of a callback at `<prefix><call id>/<sig>` and checks `sig`
/// against the key `key_of` gives for the call's provider (none: not this
/// kind of provider). 404 when there is no such call, 403 on a bad signature.
pub async fn incoming(
    app: &crate::app::App,
    path: &str,
    prefix: &str,
    key_of: impl Fn(&Provider) -> Option<String>,
) -> Result<Incoming, StatusCode> {
    let rest = path.strip_prefix(prefix).unwrap_or_default();
    let (id, sig) = rest.split_once('/').ok_or(StatusCode::NOT_FOUND)?;
    let call_id = CallId::parse(id).ok_or(StatusCode::NOT_FOUND)?;
    let id_s = id.to_string();
    let row = app
        .store
        .read(move |c| {
            use rusqlite::OptionalExtension;
            c.query_row(
                "SELECT provider, a_number, b_number, plan FROM calls WHERE id = ?1",
                [id_s],
                |r| {
                    Ok((
                        r.get::<_, Option<String>>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, Option<String>>(3)?,
                    ))
                },
            )
            .optional()
        })
        .await;
    let Ok(Some((Some(name), a, b, plan))) = row else {
        return Err(StatusCode::NOT_FOUND);
    };
    let provider = app
        .runtime()
        .providers
        .get(&name)
        .ok_or(StatusCode::NOT_FOUND)?;
    let key = key_of(&provider).ok_or(StatusCode::NOT_FOUND)?;
    // SECURITY: constant-time comparison of the callback URL's signature.
    if !crate::core::ct_eq(sig.as_bytes(), super::spokn::signature(&key, id).as_bytes()) {
        log::warn!(
            "call {id}: a {} callback with a wrong signature refused",
            provider.kind()
        );
        return Err(StatusCode::FORBIDDEN);
    }
    let plan = plan.and_then(|p| match serde_json::from_str(&p) {
        Ok(plan) => Some(plan),
        Err(e) => {
            log::warn!("call {id}: its stored plan does not read ({e}); its numbers stand for it");
            None
        }
    });
    Ok(Incoming {
        call_id,
        provider,
        a,
        b,
        plan,
    })
}

/// Applies what a callback reports, `detail` (the upstream's own words for
/// it) recorded with its last event. A report that applies nothing is 409 while
/// the call may still take it (it came ahead of the call's acceptance, or out
/// of order), so that the sender tries again rather than the report being lost;
/// once the call has ended it is 200: a repeat, or news too late to change a
/// closed call, which no retry would change either.
pub async fn apply(
    app: &crate::app::App,
    id: CallId,
    events: Vec<Event>,
    detail: Option<String>,
) -> StatusCode {
    let kinds: Vec<String> = events.iter().map(Event::kind).collect();
    let r = app
        .store
        .write(move |c| {
            let last = events.len().saturating_sub(1);
            let with: Vec<(Event, Option<&str>)> = (events.iter().enumerate())
                .map(|(i, e)| (e.clone(), detail.as_deref().filter(|_| i == last)))
                .collect();
            let states = calls::apply(c, id, &with, now_ms())?;
            let now = match states.is_empty() {
                true => calls::state(c, id)?,
                false => None,
            };
            Ok((states, now))
        })
        .await;
    answer(id, &kinds, r)
}

/// The answer to a report, once applied (see [`apply`]): the states it moved
/// the call to, else the call's state.
pub(super) fn answer(
    id: CallId,
    kinds: &[String],
    applied: Result<(Vec<CallState>, Option<CallState>), StoreError>,
) -> StatusCode {
    match applied {
        Ok((states, _)) if !states.is_empty() => {
            for (kind, state) in kinds.iter().zip(states) {
                log::debug!("call {id}: {kind} -> {state}");
            }
            StatusCode::OK
        }
        Ok((_, Some(state))) if state.is_terminal() => {
            log::info!(
                "call {id}: {} not applied: the call has ended ({state})",
                kinds.join(", ")
            );
            StatusCode::OK
        }
        Ok(_) => StatusCode::CONFLICT,
        // Stopping, or the database failed: the sender tries again.
        Err(e) => {
            log::warn!("call {id}: {} not recorded: {e}", kinds.join(", "));
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

/// What an upstream's answer comes to, in words, for the providers' tests:
/// placed, refused (code, meaning, what about, whether the next provider is
/// asked), or a bad response.
#[cfg(test)]
pub(crate) fn verdict(r: Result<(), super::ProviderError>) -> String {
    match r {
        Ok(()) => "placed".into(),
        Err(super::ProviderError::Refused(r)) => format!(
            "{r} / {:?} / {}",
            r.about,
            if r.about.fails_over() {
                "next"
            } else {
                "final"
            }
        ),
        Err(e) => e.to_string(),
    }
}
