//! What a partner asked to be dialled: each side's participants, the strategy
//! that rings them, retries, caller IDs, the time limit and recording. Every
//! dialect builds a [`CallPlan`]; a provider plays it.
//!
//! A side's participants are tried in *rounds*. Each round rings one participant
//! (sequential, round robin) or all of them at once (parallel); the first to
//! answer wins and the others still ringing are cancelled. A participant with
//! `retries` is rung again, after `retry_delay`, when it does not answer. Every
//! ring is a leg, numbered per side 1, 2, … in the order they start.
//!
//! The plan is stored with its call as JSON (`calls.plan`) and reads back from
//! it: an upstream provider's reports are read against the plan of their call.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::phone::Address;

/// Retries per participant at most (Airtel's and Spokn's limit).
pub const MAX_RETRIES: u8 = 3;
/// Participants per side at most.
pub const MAX_PARTICIPANTS: usize = 10;
/// The ring timeout when the request names none.
pub const DEFAULT_RING_TIMEOUT: Duration = Duration::from_secs(30);
/// The shortest and longest ring timeout a request may ask for.
pub const RING_TIMEOUT_RANGE: (Duration, Duration) =
    (Duration::from_secs(5), Duration::from_secs(120));
/// The longest wait between two tries of a participant.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// One participant after another, in the order given.
    Sequential,
    /// All participants at once; the first to answer wins.
    Parallel,
    /// One after another, starting at a participant that moves on with every
    /// call, so a pool of agents shares the load.
    RoundRobin,
}

impl Strategy {
    pub fn parse(s: &str) -> Option<Strategy> {
        match s {
            "sequential" => Some(Strategy::Sequential),
            "parallel" => Some(Strategy::Parallel),
            "round_robin" => Some(Strategy::RoundRobin),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    pub number: Address,
    /// What this participant is shown; the side's caller ID when `None`.
    pub caller_id: Option<String>,
    /// Rung again this many times when it does not answer (at most 3).
    pub retries: u8,
}

impl Participant {
    pub fn new(number: impl Into<Address>) -> Participant {
        Participant {
            number: number.into(),
            caller_id: None,
            retries: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SidePlan {
    pub participants: Vec<Participant>,
    pub strategy: Strategy,
    /// What the side's participants are shown, unless one has its own.
    pub caller_id: Option<String>,
    #[serde(with = "secs")]
    pub ring_timeout: Duration,
    #[serde(with = "secs")]
    pub retry_delay: Duration,
    /// Round robin's first participant (an index, taken modulo the count).
    pub start: usize,
}

/// One ring of one participant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Try<'a> {
    /// The leg's attempt number on its side: 1, 2, …
    pub attempt: u16,
    pub participant: &'a Participant,
}

impl SidePlan {
    /// One participant, rung once, shown `caller_id`.
    pub fn single(number: impl Into<Address>, caller_id: Option<String>) -> SidePlan {
        SidePlan {
            participants: vec![Participant::new(number)],
            strategy: Strategy::Sequential,
            caller_id,
            ring_timeout: DEFAULT_RING_TIMEOUT,
            retry_delay: Duration::ZERO,
            start: 0,
        }
    }

    /// The participant tried first: the side's number in one-number dialects.
    pub fn first(&self) -> Option<&Participant> {
        let n = self.participants.len();
        match self.strategy {
            Strategy::RoundRobin if n > 0 => self.participants.get(self.start % n),
            _ => self.participants.first(),
        }
    }

    /// What `p` is shown.
    pub fn caller_id_for<'a>(&'a self, p: &'a Participant) -> Option<&'a str> {
        p.caller_id.as_deref().or(self.caller_id.as_deref())
    }

    /// The rounds, in order: the participants each rings, with attempt numbers.
    pub fn rounds(&self) -> Vec<Vec<Try<'_>>> {
        let n = self.participants.len();
        let order: Vec<&Participant> = match self.strategy {
            Strategy::RoundRobin if n > 0 => (0..n)
                .map(|i| &self.participants[(self.start + i) % n])
                .collect(),
            _ => self.participants.iter().collect(),
        };
        let mut rounds: Vec<Vec<&Participant>> = Vec::new();
        match self.strategy {
            Strategy::Parallel => {
                let most = order.iter().map(|p| p.retries).max().unwrap_or(0);
                for k in 0..=most {
                    rounds.push(order.iter().copied().filter(|p| p.retries >= k).collect());
                }
            }
            Strategy::Sequential | Strategy::RoundRobin => {
                for p in order {
                    for _ in 0..=p.retries {
                        rounds.push(vec![p]);
                    }
                }
            }
        }
        let mut attempt = 0u16;
        rounds
            .into_iter()
            .map(|r| {
                r.into_iter()
                    .map(|participant| {
                        attempt += 1;
                        Try {
                            attempt,
                            participant,
                        }
                    })
                    .collect()
            })
            .collect()
    }

    /// The longest this side can take to answer: every round rings out, with the
    /// retry delay between rounds.
    pub fn longest_setup(&self) -> Duration {
        let rounds = u32::try_from(self.rounds().len()).unwrap_or(u32::MAX);
        self.ring_timeout.saturating_mul(rounds)
            + self.retry_delay.saturating_mul(rounds.saturating_sub(1))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallPlan {
    pub a: SidePlan,
    pub b: SidePlan,
    /// The longest the bridged call may last.
    #[serde(with = "secs")]
    pub time_limit: Duration,
    pub record: bool,
}

impl CallPlan {
    /// The plan of a one-number dialect: A then B, each rung once.
    pub fn simple(
        a: impl Into<Address>,
        a_cid: Option<String>,
        b: impl Into<Address>,
        b_cid: Option<String>,
        time_limit: Duration,
    ) -> CallPlan {
        CallPlan {
            a: SidePlan::single(a, a_cid),
            b: SidePlan::single(b, b_cid),
            time_limit,
            record: false,
        }
    }

    /// The longest the whole call can take: both sides ring out every round,
    /// then the bridged call runs its time limit. Past this (plus grace) a call
    /// with no end heard is reconciled.
    pub fn longest(&self) -> Duration {
        self.a.longest_setup() + self.b.longest_setup() + self.time_limit
    }

    /// Whether any participant is a local address (an extension).
    pub fn has_local(&self) -> bool {
        [&self.a, &self.b]
            .iter()
            .any(|s| s.participants.iter().any(|p| p.number.is_local()))
    }

    /// Whether the plan is one number per side, rung once: all a one-number
    /// click-to-call server (XIP upstream) can place.
    pub fn is_simple(&self) -> bool {
        [&self.a, &self.b]
            .iter()
            .all(|s| s.participants.len() == 1 && s.participants[0].retries == 0)
    }
}

/// Durations as whole seconds, as the plan is stored with its call.
mod secs {
    use serde::Deserialize;
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::phone::E164;

    fn p(n: &str, retries: u8) -> Participant {
        Participant {
            number: E164::from_digits(n).unwrap().into(),
            caller_id: None,
            retries,
        }
    }

    fn side(strategy: Strategy, ps: Vec<Participant>) -> SidePlan {
        SidePlan {
            participants: ps,
            strategy,
            caller_id: None,
            ring_timeout: Duration::from_secs(20),
            retry_delay: Duration::from_secs(5),
            start: 0,
        }
    }

    fn shape(s: &SidePlan) -> Vec<Vec<(u16, String)>> {
        s.rounds()
            .iter()
            .map(|r| {
                r.iter()
                    .map(|t| (t.attempt, t.participant.number.digits().to_string()))
                    .collect()
            })
            .collect()
    }

    fn t(a: u16, n: &str) -> (u16, String) {
        (a, n.to_string())
    }

    #[test]
    fn sequential_retries_each_participant_before_the_next() {
        let s = side(
            Strategy::Sequential,
            vec![p("16045550001", 1), p("16045550002", 0)],
        );
        assert_eq!(
            shape(&s),
            vec![
                vec![t(1, "16045550001")],
                vec![t(2, "16045550001")],
                vec![t(3, "16045550002")]
            ]
        );
        // Three rounds of 20 s ringing, two 5 s waits between them.
        assert_eq!(s.longest_setup(), Duration::from_secs(70));
    }

    #[test]
    fn parallel_rings_everyone_and_retries_who_has_retries_left() {
        let s = side(
            Strategy::Parallel,
            vec![p("16045550001", 0), p("16045550002", 1)],
        );
        assert_eq!(
            shape(&s),
            vec![
                vec![t(1, "16045550001"), t(2, "16045550002")],
                vec![t(3, "16045550002")]
            ]
        );
    }

    #[test]
    fn round_robin_starts_where_the_pool_left_off() {
        let mut s = side(
            Strategy::RoundRobin,
            vec![
                p("16045550001", 0),
                p("16045550002", 0),
                p("16045550003", 0),
            ],
        );
        s.start = 4;
        assert_eq!(s.first().unwrap().number.digits(), "16045550002");
        assert_eq!(
            shape(&s),
            vec![
                vec![t(1, "16045550002")],
                vec![t(2, "16045550003")],
                vec![t(3, "16045550001")]
            ]
        );
    }

    #[test]
    fn a_plan_reads_back_as_it_is_stored() {
        let a = E164::from_digits("16045550001").unwrap();
        let b = E164::from_digits("16045550002").unwrap();
        let mut plan = CallPlan::simple(a, Some("x".into()), b, None, Duration::from_secs(600));
        plan.a.participants.push(Participant {
            number: Address::parse("1234").unwrap(),
            caller_id: Some("+16045550009".into()),
            retries: 2,
        });
        plan.a.retry_delay = Duration::from_secs(5);
        plan.b.strategy = Strategy::Parallel;
        plan.record = true;
        let stored = serde_json::to_value(&plan).unwrap();
        assert_eq!(stored["a"]["participants"][1]["number"], "1234");
        assert_eq!(serde_json::from_value::<CallPlan>(stored).unwrap(), plan);
        let bad = serde_json::json!({"number": "+12", "caller_id": null, "retries": 0});
        assert!(serde_json::from_value::<Participant>(bad).is_err());
    }

    #[test]
    fn the_longest_call_covers_ringing_on_both_sides_and_the_time_limit() {
        let a = E164::from_digits("16045550001").unwrap();
        let b = E164::from_digits("16045550002").unwrap();
        let plan = CallPlan::simple(a, None, b, None, Duration::from_secs(600));
        assert!(plan.is_simple());
        assert_eq!(plan.longest(), Duration::from_secs(660));
    }
}
