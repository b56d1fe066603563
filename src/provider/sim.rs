//! The built-in click-to-call server. It answers like an XIP click-to-call server
//! and then plays the call: A rings, answers; B rings, answers; bridged; hang-up
//! after the talk time (capped by TimeLimit). A leg whose number matches one of
//! the `busy`, `no_answer` or `fail` patterns ends that way instead, so demos and
//! tests can produce every outcome deterministically.

use std::time::Duration;

use bytes::Bytes;

use std::sync::Arc;

use super::{Events, FollowGuard, FollowUp, Following, Originate, Reply, BAD_INCOMING_AUTH};
use crate::config::SimConfig;
use crate::core::call::{Event, Leg, LegOutcome};
use crate::core::phone::matches_pattern;
use crate::core::{hex_digest_eq, md5_hex, CallId};
use crate::dialect::xip::result_body;

pub struct Sim {
    pub name: String,
    cfg: SimConfig,
    following: Arc<Following>,
}

/// What a leg to a number does, when it does not simply answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Rings, then ends this way.
    Ends(LegOutcome),
    /// Rings, then nothing more is ever reported.
    Silent,
}

const AUTH_FIELDS: [&str; 3] = ["PartnerID", "RequestorPhone", "DestinationPhone"];

impl Sim {
    pub fn new(name: &str, cfg: SimConfig, following: Arc<Following>) -> Self {
        Sim {
            name: name.to_string(),
            cfg,
            following,
        }
    }

    /// Whether the simulator is still playing call `id`.
    pub fn is_following(&self, id: CallId) -> bool {
        self.following.contains(id)
    }

    fn secret(&self) -> &str {
        self.cfg.secret.as_ref().map(|s| s.expose()).unwrap_or("")
    }

    pub fn params(&self, o: &Originate) -> Vec<(&'static str, String)> {
        let fields: Vec<String> = AUTH_FIELDS.iter().map(|s| s.to_string()).collect();
        o.params(self.secret(), &fields)
    }

    /// What a leg to `number` will do; `None` answers.
    pub fn outcome(&self, number: &str) -> Option<Plan> {
        let hit = |list: &[String]| list.iter().any(|p| matches_pattern(p, number));
        if hit(&self.cfg.busy) {
            Some(Plan::Ends(LegOutcome::Busy))
        } else if hit(&self.cfg.no_answer) {
            Some(Plan::Ends(LegOutcome::NoAnswer))
        } else if hit(&self.cfg.fail) {
            Some(Plan::Ends(LegOutcome::Failed))
        } else if hit(&self.cfg.silent) {
            Some(Plan::Silent)
        } else {
            None
        }
    }

    pub fn originate(
        &self,
        o: &Originate,
        params: &[(&'static str, String)],
        events: Events,
    ) -> (Reply, Option<FollowUp>) {
        let auth = params
            .iter()
            .find(|(k, _)| *k == "Auth")
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        // A click-to-call server checks the Auth it is sent; the simulator does too
        // when it has a secret of its own.
        let expected = md5_hex(&[
            self.secret(),
            &o.partner_id,
            &o.requestor_phone,
            &o.destination_phone,
        ]);
        if auth == BAD_INCOMING_AUTH
            || (self.cfg.secret.is_some() && !hex_digest_eq(auth, &expected))
        {
            let reply = Reply {
                status: 403,
                content_type: Some("text/plain; charset=utf-8".into()),
                body: Bytes::from(result_body(100, "BadIncomingAuth", Some(o.call_id))),
                event: Event::Failed,
            };
            return (reply, None);
        }
        let reply = Reply {
            status: 200,
            content_type: Some("text/plain; charset=utf-8".into()),
            body: Bytes::from(result_body(0, "Call accepted", Some(o.call_id))),
            event: Event::Accepted,
        };
        let play = Play {
            _following: self.following.follow(o.call_id),
            id: o.call_id,
            a: self.outcome(&o.requestor_phone),
            b: self.outcome(&o.destination_phone),
            ring: self.cfg.ring,
            talk: self
                .cfg
                .talk
                .min(Duration::from_secs(u64::from(o.time_limit))),
            events,
        };
        (reply, Some(Box::pin(play.run())))
    }
}

struct Play {
    /// The call counts as followed while it plays.
    _following: FollowGuard,
    id: CallId,
    a: Option<Plan>,
    b: Option<Plan>,
    ring: Duration,
    talk: Duration,
    events: Events,
}

impl Play {
    /// The call as a schedule: each event with the time to wait before it.
    fn schedule(&self) -> Vec<(Duration, Event)> {
        let zero = Duration::ZERO;
        let mut steps = vec![(zero, Event::Ringing(Leg::A))];
        if self.a == Some(Plan::Silent) {
            return steps;
        }
        if let Some(Plan::Ends(outcome)) = self.a {
            steps.push((
                self.ring,
                Event::Ended {
                    leg: Leg::A,
                    outcome,
                },
            ));
            return steps;
        }
        steps.push((self.ring, Event::Answered(Leg::A)));
        steps.push((zero, Event::Ringing(Leg::B)));
        if self.b == Some(Plan::Silent) {
            return steps;
        }
        if let Some(Plan::Ends(outcome)) = self.b {
            steps.push((
                self.ring,
                Event::Ended {
                    leg: Leg::B,
                    outcome,
                },
            ));
            return steps;
        }
        steps.push((self.ring, Event::Answered(Leg::B)));
        steps.push((zero, Event::Bridged));
        steps.push((
            self.talk,
            Event::Ended {
                leg: Leg::A,
                outcome: LegOutcome::Normal,
            },
        ));
        steps
    }

    /// Plays the schedule. Events due at the same moment are recorded in one
    /// write, so an instant simulator costs one write per call, not six.
    async fn run(self) {
        let mut due: Vec<Event> = Vec::new();
        for (wait, event) in self.schedule() {
            if !wait.is_zero() {
                self.events
                    .emit_all(self.id, std::mem::take(&mut due))
                    .await;
                tokio::time::sleep(wait).await;
            }
            due.push(event);
        }
        self.events.emit_all(self.id, due).await;
    }
}
