//! The front doors, one module per wire dialect. Each parses and authenticates
//! its wire format, records the request, hands it to the core and a provider, and
//! answers in its own format with its own error codes.
//!
//! | core   | xip (seed 000)                  | native (`/v1/calls`)           |
//! | ------ | ------------------------------- | ------------------------------ |
//! | A side | Requestor → RequestorPhone      | `a.participants[]`             |
//! | B side | Fulfillment → DestinationPhone  | `b.participants[]`             |
//! | A sees | RequestorCID (last 10 of B)     | `a.caller_id` (B's first)      |
//! | B sees | DestinationCID (last 10 of A)   | `b.caller_id` (A's first)      |
//! | limit  | TimeLimit (s)                   | `time_limit` (s)               |
//! | memo   | —                               | `reference`                    |

pub mod native;
pub mod xip;

use std::time::Duration;

use crate::core::call::{CallState, Event};
use crate::core::plan::CallPlan;
use crate::core::CallId;

/// The header every dialect answer carries: the call's id.
pub const CALL_ID_HEADER: &str = "c2c-call-id";

/// When a call with no end heard is reconciled (unix ms): the longest it can
/// take (every round ringing out on both sides, then its time limit) plus grace.
pub fn deadline(at: i64, plan: &CallPlan, grace: Duration) -> i64 {
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4);
    at.saturating_add(ms(plan.longest()))
        .saturating_add(ms(grace))
}

/// One event of one call, as a callback formatter sees it: what happened, to
/// which leg, and what the call has become.
#[derive(Debug, Clone, Copy)]
pub struct Notice<'a> {
    pub call_id: CallId,
    pub partner_id: Option<&'a str>,
    /// The event's sequence number in its call: 1, 2, …
    pub seq: i64,
    pub event_id: &'a str,
    pub event: &'a Event,
    /// The call's state after the event.
    pub state: CallState,
    /// When the event happened (unix ms).
    pub at: i64,
    /// The number of the event's leg (canonical E.164), when it has one.
    pub number: Option<&'a str>,
    /// The partner's memo for the call (its reference, token or name).
    pub memo: Option<&'a str>,
}

/// A callback ready to send: what goes in the body, and as what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

/// How a dialect tells its partners what happened to their calls. The outbox,
/// signing, retries and host checks are shared; a dialect supplies only this.
pub trait CallbackFormat: Sync {
    /// The name stored with each callback (`callbacks.format`).
    fn name(&self) -> &'static str;

    /// The callback for `n`, or `None` when the dialect does not report this
    /// kind of event.
    fn format(&self, n: &Notice) -> Option<Payload>;
}

/// The callback formats, each named after its dialect.
static FORMATS: &[&dyn CallbackFormat] = &[&native::NativeFormat];

/// The callback format of calls that came in through `dialect`. Dialects with no
/// callback format of their own (XIP) report in the native JSON format.
pub fn callback_format(dialect: &str) -> &'static dyn CallbackFormat {
    FORMATS
        .iter()
        .copied()
        .find(|f| f.name() == dialect)
        .unwrap_or(&native::NativeFormat)
}
