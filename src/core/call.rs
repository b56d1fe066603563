//! The call's state machine. A call is requested, handed to a provider, and then
//! followed through its two legs: A is called first; once A answers, B is called and
//! the two are bridged.
//!
//! ```text
//! scheduled ─▶ originating (a call deferred to its partner's next opening)
//!
//! requested ─▶ originating ─▶ accepted ─▶ dialing_a ─▶ a_answered ─▶ dialing_b ─▶ bridged ─▶ completed
//!     │             │  └─────▶ handed_off      └──────────┴──────────────┴───────────▶ failed
//!     ▼             ▼
//!  rejected       failed
//! ```
//!
//! `rejected` means c2cd refused the request itself (nothing was dialled);
//! `handed_off` means an upstream click-to-call server took the call and reports
//! nothing further. Illegal transitions are refused, never applied.

use std::fmt;

/// One side of a call: A is called first, B once A has answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    A,
    B,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::A => "a",
            Side::B => "b",
        }
    }
}

/// One leg: attempt `attempt` (1, 2, … per side) to reach a participant of
/// `side`, at `number` (canonical E.164; the side's number when `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leg {
    pub side: Side,
    pub attempt: u16,
    pub number: Option<String>,
}

impl Leg {
    /// The first attempt on `side`, at the side's number: one-number dialects.
    pub fn first(side: Side) -> Leg {
        Leg {
            side,
            attempt: 1,
            number: None,
        }
    }
}

/// How a leg ended. Each maps to a Q.850 cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegOutcome {
    /// Answered and ended normally (Q.850 16).
    Normal,
    /// User busy (Q.850 17).
    Busy,
    /// Rang out without an answer (Q.850 19).
    NoAnswer,
    /// Refused by the called party before answer (Q.850 21).
    Rejected,
    /// Network congestion, no route, or another failure (Q.850 34).
    Failed,
}

impl LegOutcome {
    pub fn q850(self) -> u16 {
        match self {
            LegOutcome::Normal => 16,
            LegOutcome::Busy => 17,
            LegOutcome::NoAnswer => 19,
            LegOutcome::Rejected => 21,
            LegOutcome::Failed => 34,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LegOutcome::Normal => "normal",
            LegOutcome::Busy => "busy",
            LegOutcome::NoAnswer => "no_answer",
            LegOutcome::Rejected => "rejected",
            LegOutcome::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallState {
    Requested,
    /// Deferred: placed when its partner's hours next open (`calls.start_at`).
    Scheduled,
    Rejected,
    Originating,
    Accepted,
    HandedOff,
    DialingA,
    AAnswered,
    DialingB,
    Bridged,
    Completed,
    Failed,
    /// No end was heard in time and the provider could not tell: closed by c2cd.
    Lost,
}

impl CallState {
    pub const ALL: [CallState; 13] = [
        CallState::Requested,
        CallState::Scheduled,
        CallState::Rejected,
        CallState::Originating,
        CallState::Accepted,
        CallState::HandedOff,
        CallState::DialingA,
        CallState::AAnswered,
        CallState::DialingB,
        CallState::Bridged,
        CallState::Completed,
        CallState::Failed,
        CallState::Lost,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CallState::Requested => "requested",
            CallState::Scheduled => "scheduled",
            CallState::Rejected => "rejected",
            CallState::Originating => "originating",
            CallState::Accepted => "accepted",
            CallState::HandedOff => "handed_off",
            CallState::DialingA => "dialing_a",
            CallState::AAnswered => "a_answered",
            CallState::DialingB => "dialing_b",
            CallState::Bridged => "bridged",
            CallState::Completed => "completed",
            CallState::Failed => "failed",
            CallState::Lost => "lost",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            CallState::Rejected
                | CallState::HandedOff
                | CallState::Completed
                | CallState::Failed
                | CallState::Lost
        )
    }
}

impl fmt::Display for CallState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Q.850 102, recovery on timer expiry: the cause of a call closed as lost.
pub const Q850_TIMER_EXPIRY: u16 = 102;

/// The ITU-T Q.850 name of a cause, for dialects that report it in words.
pub fn q850_text(cause: u16) -> &'static str {
    match cause {
        1 => "Unallocated (unassigned) number",
        16 => "Normal call clearing",
        17 => "User busy",
        18 => "No user responding",
        19 => "No answer from user (user alerted)",
        21 => "Call rejected",
        28 => "Invalid number format (address incomplete)",
        31 => "Normal, unspecified",
        34 => "No circuit/channel available",
        38 => "Network out of order",
        41 => "Temporary failure",
        42 => "Switching equipment congestion",
        102 => "Recovery on timer expiry",
        127 => "Interworking, unspecified",
        _ => "Unspecified",
    }
}

/// The SIP status that goes with a leg's end, where the provider gave none
/// (RFC 3398's mapping, read backwards): `answered` legs that hang up normally
/// ended a 200 dialog; one cancelled before answer is 487.
pub fn sip_for(cause: u16, answered: bool) -> u16 {
    match (cause, answered) {
        (16, true) => 200,
        (16, false) => 487,
        (1, _) => 404,
        (17, _) => 486,
        (18, _) => 408,
        (19, _) => 480,
        (21, _) => 603,
        (28, _) => 484,
        (34 | 38 | 41 | 42, _) => 503,
        (102, _) => 408,
        _ => 500,
    }
}

/// What happened to a call, as reported by c2cd itself or by its provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// c2cd refused the request; nothing was dialled.
    Rejected,
    /// c2cd took the request for later: outside its partner's hours.
    Deferred,
    /// The provider is being asked to originate.
    Originating,
    /// The provider asked could not place the call; the next of the route is
    /// asked.
    Failover,
    /// The provider took the call and will report its progress.
    Accepted,
    /// The provider took the call and reports nothing further.
    HandedOff,
    /// The provider refused or could not be reached.
    Failed,
    Ringing(Leg),
    Answered(Leg),
    Bridged,
    /// A leg ended. `last` when the call ends with it: the answered leg of its
    /// side hung up, or the side has no other leg ringing and no retry left.
    /// A leg that is not last (busy with a retry to come, or cancelled because
    /// another participant answered first) leaves the call where it is.
    Ended {
        leg: Leg,
        outcome: LegOutcome,
        last: bool,
    },
    /// The call's recording is available at this reference.
    Recording(String),
    /// No end was heard by the call's deadline (time limit plus grace) and the
    /// provider could not tell: c2cd closes the call.
    Lost,
    /// The operator or partner hung the call up: a bridged call completes, any
    /// other fails.
    Cancelled,
}

impl Event {
    /// The stable name stored in `call_events.kind`.
    pub fn kind(&self) -> String {
        match self {
            Event::Rejected => "rejected".into(),
            Event::Deferred => "deferred".into(),
            Event::Originating => "originating".into(),
            Event::Accepted => "accepted".into(),
            Event::Failover => "failover".into(),
            Event::HandedOff => "handed_off".into(),
            Event::Failed => "failed".into(),
            Event::Lost => "lost".into(),
            Event::Cancelled => "cancelled".into(),
            Event::Ringing(l) => format!("{}_ringing", l.side.as_str()),
            Event::Answered(l) => format!("{}_answered", l.side.as_str()),
            Event::Bridged => "bridged".into(),
            Event::Recording(_) => "recording".into(),
            Event::Ended { leg, outcome, .. } => {
                format!("{}_ended_{}", leg.side.as_str(), outcome.as_str())
            }
        }
    }

    /// The Q.850 cause an event carries, when it ends a leg.
    /// The leg an event is about, if any.
    pub fn leg(&self) -> Option<&Leg> {
        match self {
            Event::Ringing(l) | Event::Answered(l) | Event::Ended { leg: l, .. } => Some(l),
            _ => None,
        }
    }

    pub fn cause(&self) -> Option<u16> {
        match self {
            Event::Ended { outcome, .. } => Some(outcome.q850()),
            Event::Lost => Some(Q850_TIMER_EXPIRY),
            Event::Cancelled => Some(16),
            _ => None,
        }
    }
}

/// The state of one leg: one attempt to reach one participant.
///
/// ```text
/// created ─▶ ringing ─▶ answered ─▶ hung_up
///    │          │
///    └──────────┴─▶ busy | no_answer | failed | cancelled
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegState {
    Created,
    Ringing,
    Answered,
    HungUp,
    Busy,
    NoAnswer,
    Failed,
    Cancelled,
}

impl LegState {
    pub const ALL: [LegState; 8] = [
        LegState::Created,
        LegState::Ringing,
        LegState::Answered,
        LegState::HungUp,
        LegState::Busy,
        LegState::NoAnswer,
        LegState::Failed,
        LegState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LegState::Created => "created",
            LegState::Ringing => "ringing",
            LegState::Answered => "answered",
            LegState::HungUp => "hung_up",
            LegState::Busy => "busy",
            LegState::NoAnswer => "no_answer",
            LegState::Failed => "failed",
            LegState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        !matches!(
            self,
            LegState::Created | LegState::Ringing | LegState::Answered
        )
    }

    /// The state a leg that ends with `outcome` takes from this one.
    pub fn ended(self, outcome: LegOutcome) -> LegState {
        match (self, outcome) {
            (LegState::Answered, _) => LegState::HungUp,
            (_, LegOutcome::Normal) => LegState::Cancelled,
            (_, LegOutcome::Busy) => LegState::Busy,
            (_, LegOutcome::NoAnswer) => LegState::NoAnswer,
            // The leg's cause (21) says it was refused.
            (_, LegOutcome::Rejected | LegOutcome::Failed) => LegState::Failed,
        }
    }
}

impl fmt::Display for LegState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state `to` a leg in `from` may move to, or `None` when illegal.
pub fn next_leg(from: LegState, to: LegState) -> Option<LegState> {
    use LegState as L;
    let ok = match from {
        L::Created => to != L::Created && to != L::HungUp,
        L::Ringing => !matches!(to, L::Created | L::Ringing | L::HungUp),
        L::Answered => to == L::HungUp,
        _ => false,
    };
    ok.then_some(to)
}

/// The state `event` moves a call in `state` to, or `None` when the transition
/// is illegal (and must be logged, not applied).
pub fn next(state: CallState, event: &Event) -> Option<CallState> {
    use CallState as S;
    use Event as E;
    Some(match (state, event) {
        (S::Requested, E::Rejected) => S::Rejected,
        (S::Requested, E::Deferred) => S::Scheduled,
        (S::Scheduled, E::Originating) => S::Originating,
        (S::Scheduled, E::Failed | E::Cancelled) => S::Failed,
        (S::Requested, E::Originating) => S::Originating,
        (S::Originating, E::Accepted) => S::Accepted,
        (S::Originating, E::Failover) => S::Originating,
        (S::Originating, E::HandedOff) => S::HandedOff,
        (S::Originating, E::Failed) => S::Failed,
        (S::Accepted | S::DialingA, E::Ringing(l)) if l.side == Side::A => S::DialingA,
        (S::Accepted | S::DialingA, E::Answered(l)) if l.side == Side::A => S::AAnswered,
        (S::AAnswered | S::DialingB, E::Ringing(l)) if l.side == Side::B => S::DialingB,
        (S::AAnswered | S::DialingB, E::Answered(l)) if l.side == Side::B => S::DialingB,
        (S::AAnswered | S::DialingB, E::Bridged) => S::Bridged,
        (S::Bridged, E::Recording(_)) => S::Bridged,
        // A leg that is not the call's last: a retry or another participant follows,
        // or it lost the race to answer. B's legs exist only once A has answered.
        (
            S::Accepted | S::DialingA | S::AAnswered | S::DialingB | S::Bridged,
            E::Ended {
                leg, last: false, ..
            },
        ) if leg.side == Side::A => state,
        (
            S::AAnswered | S::DialingB | S::Bridged,
            E::Ended {
                leg, last: false, ..
            },
        ) if leg.side == Side::B => state,
        (S::Bridged, E::Ended { last: true, .. }) => S::Completed,
        (S::Accepted | S::DialingA | S::AAnswered | S::DialingB, E::Ended { last: true, .. }) => {
            S::Failed
        }
        (S::Accepted | S::DialingA | S::AAnswered | S::DialingB | S::Bridged, E::Failed) => {
            S::Failed
        }
        (
            S::Originating | S::Accepted | S::DialingA | S::AAnswered | S::DialingB | S::Bridged,
            E::Lost,
        ) => S::Lost,
        (S::Bridged, E::Cancelled) => S::Completed,
        (S::Accepted | S::DialingA | S::AAnswered | S::DialingB, E::Cancelled) => S::Failed,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(events: &[Event]) -> Option<CallState> {
        events.iter().try_fold(CallState::Requested, next)
    }

    #[test]
    fn a_full_call_completes() {
        let got = run(&[
            Event::Originating,
            Event::Accepted,
            Event::Ringing(Leg::first(Side::A)),
            Event::Answered(Leg::first(Side::A)),
            Event::Ringing(Leg::first(Side::B)),
            Event::Answered(Leg::first(Side::B)),
            Event::Bridged,
            Event::Ended {
                leg: Leg::first(Side::A),
                outcome: LegOutcome::Normal,
                last: true,
            },
        ]);
        assert_eq!(got, Some(CallState::Completed));
    }

    #[test]
    fn a_busy_b_fails_the_call() {
        let got = run(&[
            Event::Originating,
            Event::Accepted,
            Event::Ringing(Leg::first(Side::A)),
            Event::Answered(Leg::first(Side::A)),
            Event::Ringing(Leg::first(Side::B)),
            Event::Ended {
                leg: Leg::first(Side::B),
                outcome: LegOutcome::Busy,
                last: true,
            },
        ]);
        assert_eq!(got, Some(CallState::Failed));
    }

    #[test]
    fn terminal_states_accept_nothing() {
        for s in CallState::ALL.into_iter().filter(|s| s.is_terminal()) {
            assert_eq!(next(s, &Event::Bridged), None, "{s}");
            assert_eq!(next(s, &Event::Originating), None, "{s}");
        }
    }

    #[test]
    fn b_cannot_ring_before_a_answers() {
        assert_eq!(
            next(CallState::DialingA, &Event::Ringing(Leg::first(Side::B))),
            None
        );
        assert_eq!(next(CallState::Requested, &Event::Bridged), None);
    }

    #[test]
    fn a_leg_that_is_not_last_leaves_the_call_dialing() {
        let busy = |side, attempt, last| Event::Ended {
            leg: Leg {
                side,
                attempt,
                number: None,
            },
            outcome: LegOutcome::Busy,
            last,
        };
        let got = run(&[
            Event::Originating,
            Event::Accepted,
            Event::Ringing(Leg::first(Side::A)),
            busy(Side::A, 1, false),
            Event::Ringing(Leg {
                side: Side::A,
                attempt: 2,
                number: None,
            }),
        ]);
        assert_eq!(got, Some(CallState::DialingA));
        assert_eq!(
            next(CallState::DialingA, &busy(Side::A, 2, true)),
            Some(CallState::Failed)
        );
        // B has no legs before A answers.
        assert_eq!(next(CallState::DialingA, &busy(Side::B, 1, false)), None);
        // A loser of a parallel race is cancelled after the call is bridged.
        assert_eq!(
            next(CallState::Bridged, &busy(Side::A, 3, false)),
            Some(CallState::Bridged)
        );
    }

    #[test]
    fn legs_move_forward_only() {
        use LegState as L;
        assert_eq!(next_leg(L::Created, L::Ringing), Some(L::Ringing));
        assert_eq!(next_leg(L::Ringing, L::Answered), Some(L::Answered));
        assert_eq!(next_leg(L::Answered, L::HungUp), Some(L::HungUp));
        assert_eq!(next_leg(L::Ringing, L::Busy), Some(L::Busy));
        assert_eq!(next_leg(L::Answered, L::Busy), None);
        assert_eq!(next_leg(L::HungUp, L::Ringing), None);
        assert_eq!(
            next_leg(L::Ringing, L::HungUp),
            None,
            "hung up needs an answer first"
        );
        for s in L::ALL.into_iter().filter(|s| s.is_terminal()) {
            assert!(L::ALL.into_iter().all(|t| next_leg(s, t).is_none()), "{s}");
        }
        assert_eq!(L::Answered.ended(LegOutcome::Normal), L::HungUp);
        assert_eq!(L::Ringing.ended(LegOutcome::Normal), L::Cancelled);
        assert_eq!(L::Ringing.ended(LegOutcome::NoAnswer), L::NoAnswer);
        for s in L::ALL {
            assert_eq!(L::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn a_hang_up_completes_a_bridged_call_and_fails_any_other() {
        assert_eq!(
            next(CallState::Bridged, &Event::Cancelled),
            Some(CallState::Completed)
        );
        assert_eq!(
            next(CallState::DialingA, &Event::Cancelled),
            Some(CallState::Failed)
        );
        assert_eq!(next(CallState::Completed, &Event::Cancelled), None);
        assert_eq!(Event::Cancelled.cause(), Some(16));
    }

    #[test]
    fn names_round_trip() {
        for s in CallState::ALL {
            assert_eq!(CallState::parse(s.as_str()), Some(s));
        }
        let e = Event::Ended {
            leg: Leg::first(Side::B),
            outcome: LegOutcome::NoAnswer,
            last: true,
        };
        assert_eq!(e.kind(), "b_ended_no_answer");
        assert_eq!(e.cause(), Some(19));
    }
}
