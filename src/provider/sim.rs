//! The built-in click-to-call server. It answers like an XIP click-to-call server
//! and then plays the call: A rings, answers; B rings, answers; bridged; hang-up
//! after the talk time (capped by TimeLimit). A leg whose number matches one of
//! the `busy`, `no_answer` or `fail` patterns ends that way instead, so demos and
//! tests can produce every outcome deterministically.

use std::time::Duration;

use bytes::Bytes;

use super::{Events, FollowUp, Originate, Reply, BAD_INCOMING_AUTH};
use crate::config::SimConfig;
use crate::core::call::{Event, Leg, LegOutcome};
use crate::core::phone::matches_pattern;
use crate::core::{hex_digest_eq, md5_hex};
use crate::dialect::xip::result_body;

pub struct Sim {
    pub name: String,
    cfg: SimConfig,
}

const AUTH_FIELDS: [&str; 3] = ["PartnerID", "RequestorPhone", "DestinationPhone"];

impl Sim {
    pub fn new(name: &str, cfg: SimConfig) -> Self {
        Sim {
            name: name.to_string(),
            cfg,
        }
    }

    fn secret(&self) -> &str {
        self.cfg.secret.as_ref().map(|s| s.expose()).unwrap_or("")
    }

    pub fn params(&self, o: &Originate) -> Vec<(&'static str, String)> {
        let fields: Vec<String> = AUTH_FIELDS.iter().map(|s| s.to_string()).collect();
        o.params(self.secret(), &fields)
    }

    /// What a leg to `number` will do.
    pub fn outcome(&self, number: &str) -> Option<LegOutcome> {
        let hit = |list: &[String]| list.iter().any(|p| matches_pattern(p, number));
        if hit(&self.cfg.busy) {
            Some(LegOutcome::Busy)
        } else if hit(&self.cfg.no_answer) {
            Some(LegOutcome::NoAnswer)
        } else if hit(&self.cfg.fail) {
            Some(LegOutcome::Failed)
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
    id: crate::core::CallId,
    a: Option<LegOutcome>,
    b: Option<LegOutcome>,
    ring: Duration,
    talk: Duration,
    events: Events,
}

impl Play {
    /// The call as a schedule: each event with the time to wait before it.
    fn schedule(&self) -> Vec<(Duration, Event)> {
        let zero = Duration::ZERO;
        let mut steps = vec![(zero, Event::Ringing(Leg::A))];
        if let Some(outcome) = self.a {
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
        if let Some(outcome) = self.b {
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
