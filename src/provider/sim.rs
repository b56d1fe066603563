//! The built-in click-to-call server. It answers like an XIP click-to-call server
//! and then plays the call's plan: A's participants ring, by strategy and with
//! retries, until one answers; then B's; bridged; hang-up after the talk time
//! (capped by the time limit). Phones answer after `ring` unless the side's ring
//! timeout is shorter. A leg whose number matches one of the `busy`, `no_answer`
//! or `fail` patterns ends that way instead (`silent`: rings, then nothing more is
//! heard), so demos and tests can produce every outcome deterministically.

use std::time::Duration;

use bytes::Bytes;

use std::sync::Arc;

use super::{Events, FollowGuard, FollowUp, Following, Originate, Reply, BAD_INCOMING_AUTH};
use crate::config::SimConfig;
use crate::core::call::{Event, Leg, LegOutcome, Side};
use crate::core::phone::matches_pattern;
use crate::core::phone::Address;
use crate::core::plan::{CallPlan, SidePlan};
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
        let behaviour = [&o.plan.a, &o.plan.b]
            .iter()
            .flat_map(|s| s.participants.iter())
            .map(|p| {
                let n = p.number.as_str().to_string();
                (n, self.outcome(p.number.digits()))
            })
            .collect();
        let play = Play {
            _following: self.following.follow(o.call_id),
            script: Script {
                id: o.call_id,
                plan: o.plan.clone(),
                behaviour,
                ring: self.cfg.ring,
                talk: self.cfg.talk.min(o.plan.time_limit),
            },
            events,
        };
        (reply, Some(Box::pin(play.run())))
    }
}

struct Play {
    /// The call counts as followed while it plays.
    _following: FollowGuard,
    script: Script,
    events: Events,
}

/// What the simulator will make of one call.
struct Script {
    id: CallId,
    plan: Arc<CallPlan>,
    /// How each participant's phone behaves, by number.
    behaviour: Vec<(String, Option<Plan>)>,
    ring: Duration,
    talk: Duration,
}

impl Script {
    fn behaviour(&self, number: &Address) -> Option<Plan> {
        self.behaviour
            .iter()
            .find(|(n, _)| n == number.as_str())
            .and_then(|(_, p)| *p)
    }

    /// Rings `side`'s rounds onto `steps`; returns the leg that answered, or
    /// `None` when the side failed (its last leg ended the call) or went silent.
    fn side(&self, side: Side, plan: &SidePlan, steps: &mut Vec<(Duration, Event)>) -> Option<Leg> {
        let zero = Duration::ZERO;
        // Phones answer after `ring`, unless the ring timeout comes first.
        let answers = self.ring <= plan.ring_timeout;
        let ring = self.ring.min(plan.ring_timeout);
        let rounds = plan.rounds();
        let count = rounds.len();
        for (k, round) in rounds.into_iter().enumerate() {
            let legs: Vec<(Leg, Option<Plan>)> = round
                .iter()
                .map(|t| {
                    let leg = Leg {
                        side,
                        attempt: t.attempt,
                        number: Some(t.participant.number.as_str().to_string()),
                    };
                    (leg, self.behaviour(&t.participant.number))
                })
                .collect();
            let mut wait = if k == 0 { zero } else { plan.retry_delay };
            for (leg, _) in &legs {
                steps.push((std::mem::take(&mut wait), Event::Ringing(leg.clone())));
            }
            if legs.iter().any(|(_, b)| *b == Some(Plan::Silent)) {
                return None;
            }
            let winner = legs.iter().position(|(_, b)| b.is_none() && answers);
            let last_round = k + 1 == count;
            // What happens after ringing, at the same moment: the legs that end
            // on their own, then the answer, then the other legs cancelled.
            let mut after: Vec<Event> = Vec::new();
            let mut cancelled: Vec<Event> = Vec::new();
            for (i, (leg, b)) in legs.iter().enumerate() {
                if Some(i) == winner {
                    continue;
                }
                let (outcome, list) = match b {
                    Some(Plan::Ends(o)) => (*o, &mut after),
                    _ if winner.is_some() => (LegOutcome::Normal, &mut cancelled),
                    _ => (LegOutcome::NoAnswer, &mut after),
                };
                list.push(Event::Ended {
                    leg: leg.clone(),
                    outcome,
                    last: false,
                });
            }
            if let Some(w) = winner {
                after.push(Event::Answered(legs[w].0.clone()));
            } else if last_round {
                if let Some(Event::Ended { last, .. }) = after.last_mut() {
                    *last = true;
                }
            }
            after.append(&mut cancelled);
            let mut wait = ring;
            for e in after {
                steps.push((std::mem::take(&mut wait), e));
            }
            if let Some(w) = winner {
                return Some(legs[w].0.clone());
            }
        }
        None
    }

    /// The call as a schedule: each event with the time to wait before it.
    fn schedule(&self) -> Vec<(Duration, Event)> {
        let zero = Duration::ZERO;
        let mut steps = Vec::new();
        let Some(a) = self.side(Side::A, &self.plan.a, &mut steps) else {
            return steps;
        };
        if self.side(Side::B, &self.plan.b, &mut steps).is_none() {
            return steps;
        }
        steps.push((zero, Event::Bridged));
        let mut wait = self.talk;
        if self.plan.record {
            let reference = format!("sim://recordings/{}.wav", self.id);
            steps.push((std::mem::take(&mut wait), Event::Recording(reference)));
        }
        steps.push((
            wait,
            Event::Ended {
                leg: a,
                outcome: LegOutcome::Normal,
                last: true,
            },
        ));
        steps
    }
}

impl Play {
    /// Plays the schedule. Events due at the same moment are recorded in one
    /// write, so an instant simulator costs one write per call, not six.
    async fn run(self) {
        let mut due: Vec<Event> = Vec::new();
        let id = self.script.id;
        for (wait, event) in self.script.schedule() {
            if !wait.is_zero() {
                self.events.emit_all(id, std::mem::take(&mut due)).await;
                tokio::time::sleep(wait).await;
            }
            due.push(event);
        }
        self.events.emit_all(id, due).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::call::{self, CallState};
    use crate::core::phone::E164;
    use crate::core::plan::{Participant, Strategy};

    const RING: Duration = Duration::from_secs(2);

    fn n(s: &str) -> E164 {
        E164::from_digits(s).unwrap()
    }

    fn script(plan: CallPlan, behaviour: &[(&str, Option<Plan>)]) -> Script {
        Script {
            id: CallId::new(),
            plan: Arc::new(plan),
            behaviour: behaviour
                .iter()
                .map(|(num, b)| (format!("+{num}"), *b))
                .collect(),
            ring: RING,
            talk: Duration::from_secs(60),
        }
    }

    fn kinds(steps: &[(Duration, Event)]) -> Vec<String> {
        steps
            .iter()
            .map(|(_, e)| match e.leg() {
                Some(l) => format!("{}{}:{}", l.side.as_str(), l.attempt, e.kind()),
                None => e.kind(),
            })
            .collect()
    }

    /// The call state the schedule leads to.
    fn end(steps: &[(Duration, Event)]) -> Option<CallState> {
        [Event::Originating, Event::Accepted]
            .iter()
            .chain(steps.iter().map(|(_, e)| e))
            .try_fold(CallState::Requested, call::next)
    }

    fn plan_a(strategy: Strategy, ps: Vec<Participant>) -> CallPlan {
        let mut plan = CallPlan::simple(
            n("16045550001"),
            None,
            n("16045559999"),
            None,
            Duration::from_secs(600),
        );
        plan.a.participants = ps;
        plan.a.strategy = strategy;
        plan.a.retry_delay = Duration::from_secs(5);
        plan
    }

    fn p(num: &str, retries: u8) -> Participant {
        Participant {
            number: n(num).into(),
            caller_id: None,
            retries,
        }
    }

    #[test]
    fn a_busy_participant_is_retried_then_the_next_answers() {
        let plan = plan_a(
            Strategy::Sequential,
            vec![p("16045550001", 1), p("16045550002", 0)],
        );
        let s = script(plan, &[("16045550001", Some(Plan::Ends(LegOutcome::Busy)))]);
        let steps = s.schedule();
        assert_eq!(
            kinds(&steps),
            [
                "a1:a_ringing",
                "a1:a_ended_busy",
                "a2:a_ringing",
                "a2:a_ended_busy",
                "a3:a_ringing",
                "a3:a_answered",
                "b1:b_ringing",
                "b1:b_answered",
                "bridged",
                "a3:a_ended_normal"
            ]
        );
        // The retry waits retry_delay; answers come after the ring.
        assert_eq!(steps[2].0, Duration::from_secs(5));
        assert_eq!(steps[5].0, RING);
        assert_eq!(end(&steps), Some(CallState::Completed));
    }

    #[test]
    fn parallel_first_answer_wins_and_the_rest_are_cancelled() {
        let plan = plan_a(
            Strategy::Parallel,
            vec![
                p("16045550001", 0),
                p("16045550002", 0),
                p("16045550003", 0),
            ],
        );
        let s = script(
            plan,
            &[("16045550001", Some(Plan::Ends(LegOutcome::NoAnswer)))],
        );
        let steps = s.schedule();
        assert_eq!(
            &kinds(&steps)[..6],
            [
                "a1:a_ringing",
                "a2:a_ringing",
                "a3:a_ringing",
                "a1:a_ended_no_answer",
                "a2:a_answered",
                "a3:a_ended_normal"
            ]
        );
        assert_eq!(end(&steps), Some(CallState::Completed));
    }

    #[test]
    fn a_side_out_of_tries_fails_the_call_on_its_last_leg() {
        let plan = plan_a(Strategy::Sequential, vec![p("16045550001", 2)]);
        let s = script(
            plan,
            &[("16045550001", Some(Plan::Ends(LegOutcome::NoAnswer)))],
        );
        let steps = s.schedule();
        assert_eq!(steps.len(), 6, "{:?}", kinds(&steps));
        let lasts: Vec<bool> = steps
            .iter()
            .filter_map(|(_, e)| match e {
                Event::Ended { last, .. } => Some(*last),
                _ => None,
            })
            .collect();
        assert_eq!(lasts, [false, false, true]);
        assert_eq!(end(&steps), Some(CallState::Failed));
    }

    #[test]
    fn a_ring_timeout_shorter_than_the_ring_is_no_answer() {
        let mut plan = plan_a(Strategy::Sequential, vec![p("16045550001", 0)]);
        plan.a.ring_timeout = Duration::from_secs(1);
        let steps = script(plan, &[]).schedule();
        assert_eq!(kinds(&steps), ["a1:a_ringing", "a1:a_ended_no_answer"]);
        assert_eq!(steps[1].0, Duration::from_secs(1));
    }

    #[test]
    fn a_recorded_call_reports_its_recording_before_the_hang_up() {
        let mut plan = plan_a(Strategy::Sequential, vec![p("16045550001", 0)]);
        plan.record = true;
        let steps = script(plan, &[]).schedule();
        let k = kinds(&steps);
        assert_eq!(&k[k.len() - 2..], ["recording", "a1:a_ended_normal"]);
        assert_eq!(end(&steps), Some(CallState::Completed));
    }
}
