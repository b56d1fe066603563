//! Placing and following a call on Asterisk through its manager.
//!
//! Each try of leg A is one `Originate` (Async, with a unique ActionID and a
//! ChannelId of c2cd's, `c2cd-<call id>-a<attempt>`), whose channel goes on to
//! B through the dialplan or `Application: Dial`. The verdict on A is the
//! `OriginateResponse` (by ActionID); B's outcome and the end come from the
//! channel events, which carry the ChannelId as `Linkedid` (or `Uniqueid` for
//! A's own channel). Neither stream is assumed to come in any order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::broadcast;

use super::{Link, Manager, Message};
use crate::config::{AmiConfig, Bridge};
use crate::core::call::{Event, Leg, LegOutcome, Side};
use crate::core::CallId;
use crate::dialect::xip::result_body;
use crate::provider::{Events, FollowGuard, FollowUp, Following, Originate, ProviderError, Reply};

/// What an `OriginateResponse` says of leg A.
pub fn a_outcome(m: &Message) -> Result<(), LegOutcome> {
    if m.get("Response") == Some("Success") {
        return Ok(());
    }
    Err(match m.get("Reason") {
        Some("5") => LegOutcome::Busy,
        Some("3") => LegOutcome::NoAnswer,
        // 8 congestion, 0 other (rejected, no such extension, cancelled), 1 hung up.
        _ => LegOutcome::Failed,
    })
}

/// What a `DialEnd` says of leg B; `Ok` when B answered.
pub fn b_outcome(m: &Message) -> Result<(), LegOutcome> {
    match m.get("DialStatus") {
        Some("ANSWER") => Ok(()),
        Some("BUSY") => Err(LegOutcome::Busy),
        Some("NOANSWER") => Err(LegOutcome::NoAnswer),
        // The caller went away while B rang.
        Some("CANCEL") => Err(LegOutcome::Normal),
        _ => Err(LegOutcome::Failed),
    }
}

/// Fills `{number}` in a template.
fn fill(template: &str, number: &str) -> String {
    template.replace("{number}", number)
}

pub struct Ami {
    pub name: String,
    cfg: AmiConfig,
    manager: Manager,
    following: Arc<Following>,
    /// The channels of each call being followed, for a hang-up.
    channels: Arc<Mutex<HashMap<CallId, Vec<String>>>>,
}

impl Ami {
    pub fn new(name: &str, cfg: AmiConfig, following: Arc<Following>) -> Ami {
        let manager = Manager::start(super::Settings {
            address: cfg.address.clone(),
            username: cfg.username.clone(),
            secret: cfg.secret.clone(),
            timeout: cfg.timeout,
            ping_every: Duration::from_secs(20),
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
        });
        Ami {
            name: name.to_string(),
            cfg,
            manager,
            following,
            channels: Arc::default(),
        }
    }

    pub fn link(&self) -> Link {
        self.manager.link()
    }

    /// Whether `cfg` is what this provider runs with: a reload keeps it then.
    pub fn same_settings(&self, cfg: &AmiConfig) -> bool {
        let (a, b) = (&self.cfg, cfg);
        a.address == b.address
            && a.username == b.username
            && a.secret.expose() == b.secret.expose()
            && a.channel == b.channel
            && a.bridge == b.bridge
            && a.variables == b.variables
            && a.timeout == b.timeout
    }

    pub fn is_following(&self, id: CallId) -> bool {
        self.following.contains(id)
    }

    /// Why this provider cannot place `plan` yet: it plays retries of one A
    /// participant and dials one B participant.
    pub fn refuses(&self, plan: &crate::core::plan::CallPlan) -> Option<String> {
        let why = if plan.a.participants.len() != 1 {
            "one A participant (with retries)"
        } else if plan.b.participants.len() != 1 || plan.b.participants[0].retries > 0 {
            "one B participant, without retries"
        } else if plan.record {
            "no recording"
        } else {
            return None;
        };
        Some(format!(
            "provider {} (ami) places calls of {why} so far",
            self.name
        ))
    }

    /// What is recorded of the Originate of try 1 (its ids are made when sent).
    pub fn params(&self, o: &Originate) -> Vec<(&'static str, String)> {
        const KEYS: [&str; 8] = [
            "Channel",
            "Context",
            "Exten",
            "Priority",
            "Application",
            "Data",
            "CallerID",
            "Timeout",
        ];
        originate_action(&self.cfg, o, 1, "")
            .fields
            .into_iter()
            .filter_map(|(k, v)| KEYS.iter().find(|s| **s == k).map(|s| (*s, v)))
            .collect()
    }
}

/// The Originate for try `attempt` of leg A.
fn originate_action(cfg: &AmiConfig, o: &Originate, attempt: u16, action_id: &str) -> Message {
    let a = o
        .plan
        .a
        .first()
        .map(|p| p.number.digits().to_string())
        .unwrap_or_default();
    let b = o
        .plan
        .b
        .first()
        .map(|p| p.number.digits().to_string())
        .unwrap_or_default();
    let channel_id = channel_id(o.call_id, attempt);
    let timeout = o.plan.a.ring_timeout.as_millis().to_string();
    let mut m = Message::action("Originate", &[("Channel", &fill(&cfg.channel, &a))]);
    match &cfg.bridge {
        Bridge::Dialplan { context, exten } => {
            m.push("Context", context);
            m.push("Exten", &fill(exten, &b));
            m.push("Priority", "1");
        }
        Bridge::Dial(dial) => {
            let ring = o.plan.b.ring_timeout.as_secs();
            m.push("Application", "Dial");
            m.push("Data", &format!("{},{ring}", fill(dial, &b)));
        }
    }
    if !o.requestor_cid.is_empty() {
        m.push("CallerID", &format!("<{}>", o.requestor_cid));
    }
    m.push("Timeout", &timeout);
    m.push("Async", "true");
    m.push("ActionID", action_id);
    m.push("ChannelId", &channel_id);
    m.push("Variable", &format!("C2C_CALL={}", o.call_id));
    m.push("Variable", &format!("C2C_PROMPTSET={}", o.prompt_set));
    m.push("Variable", &format!("C2C_B_CALLERID={}", o.destination_cid));
    // The time limit: Asterisk hangs the call up itself.
    m.push(
        "Variable",
        &format!("TIMEOUT(absolute)={}", o.plan.time_limit.as_secs()),
    );
    for (k, v) in &cfg.variables {
        m.push("Variable", &format!("{k}={v}"));
    }
    m
}

impl Ami {
    /// Places try 1 of leg A; the follow-up plays the rest of the call.
    pub async fn originate(
        &self,
        o: &Originate,
        events: Events,
    ) -> Result<(Reply, Option<FollowUp>), ProviderError> {
        let stream = self.manager.subscribe();
        let guard = self.following.follow(o.call_id);
        // ActionIDs carry the call's id: unique across every c2cd sharing the
        // Asterisk, which sends each OriginateResponse to every session.
        let action_id = channel_id(o.call_id, 1);
        let reply = self
            .manager
            .send(originate_action(&self.cfg, o, 1, &action_id))
            .await
            .map_err(|e| match e {
                // Not sent: another provider may be asked.
                super::AmiError::Down(_) | super::AmiError::Busy => {
                    ProviderError::Unreachable(format!("manager {}: {e}", self.cfg.address))
                }
                // Sent, and maybe acted on: the call is not passed on.
                _ => ProviderError::BadResponse(format!("manager {}: {e}", self.cfg.address)),
            })?;
        if reply.get("Response") != Some("Success") {
            let why = reply.get("Message").unwrap_or("refused").to_string();
            return Err(ProviderError::BadResponse(format!(
                "manager refused the Originate: {why}"
            )));
        }
        if let Ok(mut c) = self.channels.lock() {
            c.insert(o.call_id, vec![channel_id(o.call_id, 1)]);
        }
        let accepted = Reply {
            status: 200,
            content_type: Some("text/plain; charset=utf-8".into()),
            body: Bytes::from(result_body(0, "Call accepted", Some(o.call_id))),
            event: Event::Accepted,
        };
        let follow = Follow {
            _guard: guard,
            manager: self.manager.clone(),
            stream,
            call: o.clone(),
            action_id,
            events,
            channels: self.channels.clone(),
            cfg: self.cfg.clone(),
        };
        Ok((accepted, Some(Box::pin(follow.run()))))
    }

    /// Hangs up the call's channels (a cancel).
    pub async fn hang_up(&self, id: CallId) {
        // A call placed before a reload is not in this map: its channels' ids
        // are c2cd's own, so every try's is hung up (an unknown one is a no-op).
        let chans = self
            .channels
            .lock()
            .ok()
            .and_then(|mut c| c.remove(&id))
            .unwrap_or_else(|| {
                (1..=u16::from(crate::core::plan::MAX_RETRIES) + 1)
                    .map(|n| channel_id(id, n))
                    .collect()
            });
        for ch in chans {
            let r = self
                .manager
                .send(Message::action(
                    "Hangup",
                    &[("Channel", &ch), ("Cause", "16")],
                ))
                .await;
            log::info!(
                "call {id}: Hangup {ch}: {:?}",
                r.map(|m| m.get("Message").map(str::to_string))
            );
        }
    }
}

/// c2cd's id for the channel of try `attempt` of leg A: it becomes that
/// channel's Uniqueid and the Linkedid of every channel of the call.
pub fn channel_id(id: CallId, attempt: u16) -> String {
    format!("c2cd-{id}-a{attempt}")
}

struct Follow {
    _guard: FollowGuard,
    manager: Manager,
    stream: broadcast::Receiver<Message>,
    call: Originate,
    action_id: String,
    events: Events,
    channels: Arc<Mutex<HashMap<CallId, Vec<String>>>>,
    /// For the Originate of later tries.
    cfg: AmiConfig,
}

/// Where a followed call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the verdict on A's try.
    A,
    /// A answered; B is being dialled.
    B {
        rang: bool,
    },
    Bridged,
}

impl Follow {
    async fn emit(&self, e: Vec<Event>) {
        self.events.emit_all(self.call.call_id, e).await;
    }

    async fn run(mut self) {
        let id = self.call.call_id;
        let a = self
            .call
            .plan
            .a
            .first()
            .map(|p| p.number.as_str().to_string());
        let b = self
            .call
            .plan
            .b
            .first()
            .map(|p| p.number.as_str().to_string());
        let tries = self
            .call
            .plan
            .a
            .first()
            .map_or(1, |p| u16::from(p.retries) + 1);
        let leg = |side, attempt, number: &Option<String>| Leg {
            side,
            attempt,
            number: number.clone(),
        };
        let mut attempt = 1u16;
        let mut chan = channel_id(id, attempt);
        let mut phase = Phase::A;
        self.emit(vec![Event::Ringing(leg(Side::A, attempt, &a))])
            .await;
        let link = self.manager.clone();
        // Past the longest the call can take, with room for a late end, the
        // follow-up stops: the reconciler then closes the call as lost.
        let deadline =
            tokio::time::Instant::now() + self.call.plan.longest() + Duration::from_secs(300);
        loop {
            let m = tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    log::warn!("call {id}: no end heard from the manager in time; leaving it to the reconciler");
                    return;
                },
                m = self.stream.recv() => match m {
                    Ok(m) => m,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        log::warn!("call {id}: {n} manager events missed; the reconciler closes the call if its end is lost");
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = wait_down(&link) => {
                    // The connection dropped mid-call: its end will not be heard.
                    let current = match phase {
                        Phase::A => leg(Side::A, attempt, &a),
                        _ => leg(Side::B, 1, &b),
                    };
                    log::warn!("call {id}: the manager connection was lost; failing the call");
                    self.emit(vec![Event::Ended { leg: current, outcome: LegOutcome::Failed, last: true }]).await;
                    return;
                }
            };
            let mine = m.get("ActionID") == Some(self.action_id.as_str())
                || m.get("Linkedid") == Some(chan.as_str())
                || m.get("Uniqueid") == Some(chan.as_str());
            if !mine {
                continue;
            }
            match (m.event(), phase) {
                (Some("OriginateResponse"), Phase::A) => match a_outcome(&m) {
                    Ok(()) => {
                        phase = Phase::B { rang: false };
                        self.emit(vec![Event::Answered(leg(Side::A, attempt, &a))])
                            .await;
                    }
                    Err(outcome) if attempt < tries => {
                        self.emit(vec![Event::Ended {
                            leg: leg(Side::A, attempt, &a),
                            outcome,
                            last: false,
                        }])
                        .await;
                        tokio::time::sleep(self.call.plan.a.retry_delay).await;
                        attempt += 1;
                        chan = channel_id(id, attempt);
                        self.action_id = chan.clone();
                        let action =
                            originate_action(&self.cfg, &self.call, attempt, &self.action_id);
                        if let Ok(mut c) = self.channels.lock() {
                            c.insert(id, vec![chan.clone()]);
                        }
                        match self.manager.send(action).await {
                            Ok(r) if r.get("Response") == Some("Success") => {
                                self.emit(vec![Event::Ringing(leg(Side::A, attempt, &a))])
                                    .await;
                            }
                            other => {
                                log::warn!("call {id}: retry of A refused: {other:?}");
                                self.emit(vec![Event::Ended {
                                    leg: leg(Side::A, attempt, &a),
                                    outcome: LegOutcome::Failed,
                                    last: true,
                                }])
                                .await;
                                return;
                            }
                        }
                    }
                    Err(outcome) => {
                        self.emit(vec![Event::Ended {
                            leg: leg(Side::A, attempt, &a),
                            outcome,
                            last: true,
                        }])
                        .await;
                        return;
                    }
                },
                (Some("DialBegin"), Phase::B { rang: false }) => {
                    phase = Phase::B { rang: true };
                    self.emit(vec![Event::Ringing(leg(Side::B, 1, &b))]).await;
                }
                (Some("DialEnd"), Phase::B { rang }) => {
                    let mut out = Vec::new();
                    if !rang {
                        out.push(Event::Ringing(leg(Side::B, 1, &b)));
                    }
                    match b_outcome(&m) {
                        Ok(()) => {
                            out.push(Event::Answered(leg(Side::B, 1, &b)));
                            out.push(Event::Bridged);
                            phase = Phase::Bridged;
                            self.emit(out).await;
                        }
                        Err(outcome) => {
                            out.push(Event::Ended {
                                leg: leg(Side::B, 1, &b),
                                outcome,
                                last: true,
                            });
                            self.emit(out).await;
                            return;
                        }
                    }
                }
                // A's own channel hangs up: the end of the call.
                (Some("Hangup"), Phase::Bridged | Phase::B { .. })
                    if m.get("Uniqueid") == Some(chan.as_str()) =>
                {
                    let ended = Event::Ended {
                        leg: leg(Side::A, attempt, &a),
                        outcome: LegOutcome::Normal,
                        last: true,
                    };
                    self.emit(vec![ended]).await;
                    return;
                }
                _ => {}
            }
        }
    }
}

/// Resolves when the manager link goes down.
async fn wait_down(m: &Manager) {
    m.wait_link(|l| matches!(l, Link::Down(_))).await;
}

impl Drop for Follow {
    fn drop(&mut self) {
        if let Ok(mut c) = self.channels.lock() {
            c.remove(&self.call.call_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(fields: &[(&str, &str)]) -> Message {
        let mut m = Message::default();
        for (k, v) in fields {
            m.push(k, v);
        }
        m
    }

    /// The Reasons the transcript shows for leg A (sections 1, 5–8, 16).
    #[test]
    fn originate_responses_map_to_leg_a_outcomes() {
        let r = |response, reason| {
            a_outcome(&msg(&[
                ("Event", "OriginateResponse"),
                ("Response", response),
                ("Reason", reason),
            ]))
        };
        assert_eq!(r("Success", "4"), Ok(()));
        assert_eq!(r("Failure", "5"), Err(LegOutcome::Busy));
        assert_eq!(r("Failure", "3"), Err(LegOutcome::NoAnswer));
        assert_eq!(r("Failure", "8"), Err(LegOutcome::Failed));
        assert_eq!(r("Failure", "0"), Err(LegOutcome::Failed));
    }

    #[test]
    fn dial_ends_map_to_leg_b_outcomes() {
        let d = |status| b_outcome(&msg(&[("Event", "DialEnd"), ("DialStatus", status)]));
        assert_eq!(d("ANSWER"), Ok(()));
        assert_eq!(d("BUSY"), Err(LegOutcome::Busy));
        assert_eq!(d("NOANSWER"), Err(LegOutcome::NoAnswer));
        assert_eq!(d("CONGESTION"), Err(LegOutcome::Failed));
        assert_eq!(d("CHANUNAVAIL"), Err(LegOutcome::Failed));
        assert_eq!(d("CANCEL"), Err(LegOutcome::Normal));
    }
}
