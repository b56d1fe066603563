//! The native dialect: c2cd's own JSON API under `/v1`, described by
//! `openapi.yaml`, and the native JSON callback format every other dialect
//! falls back to.

use serde_json::json;

use super::{CallbackFormat, Notice, Payload};
use crate::core::format_ms;

/// Callbacks as JSON: the event's id and sequence number, the call, its state,
/// the leg and the cause.
pub struct NativeFormat;

impl CallbackFormat for NativeFormat {
    fn name(&self) -> &'static str {
        "native"
    }

    fn format(&self, n: &Notice) -> Option<Payload> {
        let leg = n.event.leg().map(|l| {
            json!({
                "side": l.side.as_str(),
                "attempt": l.attempt,
                "number": l.number.as_deref().or(n.number),
            })
        });
        let recording = match n.event {
            crate::core::call::Event::Recording(r) => Some(r.as_str()),
            _ => None,
        };
        let mut v = json!({
            "event_id": n.event_id,
            "seq": n.seq,
            "call_id": n.call_id.to_string(),
            "partner_id": n.partner_id,
            "at": format_ms(n.at),
            "event": n.event.kind(),
            "state": n.state.as_str(),
            "leg": leg,
            "cause": n.event.cause(),
        });
        if let Some(m) = n.memo {
            v["reference"] = m.into();
        }
        if let Some(r) = recording {
            v["recording"] = r.into();
        }
        Some(Payload {
            content_type: "application/json",
            body: v.to_string().into_bytes(),
        })
    }
}
