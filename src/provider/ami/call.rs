//! Placing and following a call on Asterisk through its manager.
//!
//! Each try of leg A is one `Originate` (Async, ActionID and ChannelId both
//! `c2cd-<call id>-a<attempt>`); a parallel round sends one per participant,
//! and the first to answer wins (the others are hung up). The verdict on a try
//! is its `OriginateResponse`, refined by its channel's `Hangup` cause. B is
//! dialled by Asterisk from A's channel: by `Application: Dial`, or by the
//! dialplan, which dials the rounds c2cd hands it in channel variables (see
//! `etc/asterisk/extensions_c2cd.conf`). B's legs follow from the `DialBegin`
//! and `DialEnd` events on A's channel. Neither stream is assumed to come in
//! any order: `Track` takes each message as it comes and says what follows.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::broadcast;
use tokio::time::Instant;

use super::{Link, Manager, Message};
use crate::config::{AmiConfig, AmiRecording, Bridge};
use crate::core::call::{Event, Leg, LegOutcome, Side};
use crate::core::plan::{CallPlan, SidePlan, Strategy};
use crate::core::CallId;
use crate::dialect::xip::result_body;
use crate::provider::{Events, FollowGuard, FollowUp, Following, Originate, ProviderError, Reply};

/// How long a failed try's verdict waits for its channel's Hangup cause (the
/// transcript shows it both before and after the `OriginateResponse`).
const CAUSE_WAIT: Duration = Duration::from_secs(2);
/// How long past A's ring timeout a try's verdict may be late before the try
/// is given up (a manager user without `read = call` never hears one).
const VERDICT_GRACE: Duration = Duration::from_secs(15);
/// How long past its time limit a bridged call may run before c2cd hangs it
/// up itself (Asterisk's `S()` should have).
const LIMIT_GRACE: Duration = Duration::from_secs(30);

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

/// A failed try's outcome, its channel's Hangup cause (Q.850) refining the
/// Reason (0 says only "other").
fn refine(outcome: LegOutcome, cause: Option<u16>) -> LegOutcome {
    match cause {
        Some(17) => LegOutcome::Busy,
        Some(18 | 19) => LegOutcome::NoAnswer,
        Some(21) => LegOutcome::Rejected,
        _ => outcome,
    }
}

/// What a `DialEnd` says of leg B; `Ok` when B answered.
pub fn b_outcome(m: &Message) -> Result<(), LegOutcome> {
    match m.get("DialStatus") {
        Some("ANSWER") => Ok(()),
        Some("BUSY") => Err(LegOutcome::Busy),
        Some("NOANSWER") => Err(LegOutcome::NoAnswer),
        // Another participant answered, or the caller went away while B rang.
        Some("CANCEL") => Err(LegOutcome::Normal),
        _ => Err(LegOutcome::Failed),
    }
}

/// Fills `{number}` in a template.
fn fill(template: &str, number: &str) -> String {
    template.replace("{number}", number)
}

/// What Asterisk reports as a dial's `DialString`: the dial string without its
/// technology (`PJSIP/100@trunk` is dialled as `100@trunk`).
fn dial_string(dial: &str) -> &str {
    dial.split_once('/').map_or(dial, |(_, rest)| rest)
}

/// B's rounds as Dial arguments: each round's dial strings joined with `&`.
fn b_rounds(cfg: &AmiConfig, b: &SidePlan) -> Vec<String> {
    b.rounds()
        .iter()
        .map(|round| {
            round
                .iter()
                .map(|t| fill(&cfg.dial, t.participant.number.digits()))
                .collect::<Vec<_>>()
                .join("&")
        })
        .collect()
}

/// The name of a recorded call's file (Asterisk puts a relative name in its
/// monitor directory).
fn record_file(id: CallId) -> String {
    format!("c2cd-{id}.wav")
}

pub struct Ami {
    pub name: String,
    cfg: AmiConfig,
    manager: Manager,
    following: Arc<Following>,
    /// The channels of each call being followed, for a hang-up.
    channels: Channels,
    /// Events from the start, until the CDR ingest takes them: a CDR heard
    /// right after the first login is not lost.
    first_events: Mutex<Option<broadcast::Receiver<Message>>>,
}

type Channels = Arc<Mutex<HashMap<CallId, Vec<String>>>>;

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
            first_events: Mutex::new(Some(manager.subscribe())),
            manager,
            following,
            channels: Arc::default(),
        }
    }

    pub fn link(&self) -> Link {
        self.manager.link()
    }

    /// The manager connection's number and every event from now on (for the
    /// CDR ingest, which must not keep the connection alive: no handle).
    pub fn events(&self) -> (u64, broadcast::Receiver<Message>) {
        let first = self.first_events.lock().ok().and_then(|mut f| f.take());
        let rx = first.unwrap_or_else(|| self.manager.subscribe());
        (self.manager.id(), rx)
    }

    /// Whether `cfg` is what this provider runs with: a reload keeps it then.
    pub fn same_settings(&self, cfg: &AmiConfig) -> bool {
        let (a, b) = (&self.cfg, cfg);
        a.address == b.address
            && a.username == b.username
            && a.secret.expose() == b.secret.expose()
            && a.channel == b.channel
            && a.bridge == b.bridge
            && a.dial == b.dial
            && a.recording == b.recording
            && a.caller_id == b.caller_id
            && a.variables == b.variables
            && a.timeout == b.timeout
    }

    pub fn is_following(&self, id: CallId) -> bool {
        self.following.contains(id)
    }

    /// Why this provider cannot place `plan`: `Application: Dial` runs one
    /// Dial, so B is one round, and nothing would keep a second answering A
    /// from dialling B; recording needs a way to record.
    pub fn refuses(&self, plan: &CallPlan) -> Option<String> {
        let dial_only = self.cfg.bridge == Bridge::Dial;
        let why = if dial_only && plan.b.rounds().len() > 1 {
            "B in more than one round (several B participants in turn, or retries of B) without context: only the dialplan dials B again"
        } else if dial_only
            && plan.a.strategy == Strategy::Parallel
            && plan.a.participants.len() > 1
        {
            "parallel A without context: only the dialplan keeps a second answer from dialling B"
        } else if plan.record && self.cfg.recording == AmiRecording::Off {
            "recorded calls with recording = \"none\""
        } else {
            return None;
        };
        Some(format!("provider {} (ami) cannot place {why}", self.name))
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
        let Some(t) = first_try(&o.plan) else {
            return Vec::new();
        };
        originate_action(&self.cfg, o, &t)
            .fields
            .into_iter()
            .filter_map(|(k, v)| KEYS.iter().find(|s| **s == k).map(|s| (*s, v)))
            .collect()
    }
}

/// One try of leg A, as an Originate places it.
#[derive(Debug, Clone)]
struct ATry {
    attempt: u16,
    /// As stored in the leg: E.164 or local digits.
    number: String,
    digits: String,
    caller_id: Option<String>,
}

impl ATry {
    fn chan(&self, id: CallId) -> String {
        channel_id(id, self.attempt)
    }
}

/// The tries of leg A in rounds.
fn a_rounds(plan: &CallPlan) -> Vec<Vec<ATry>> {
    plan.a
        .rounds()
        .iter()
        .map(|round| {
            round
                .iter()
                .map(|t| ATry {
                    attempt: t.attempt,
                    number: t.participant.number.as_str().to_string(),
                    digits: t.participant.number.digits().to_string(),
                    caller_id: plan
                        .a
                        .caller_id_for(t.participant)
                        .map(|c| c.trim_start_matches('+').to_string()),
                })
                .collect()
        })
        .collect()
}

fn first_try(plan: &CallPlan) -> Option<ATry> {
    a_rounds(plan).into_iter().next()?.into_iter().next()
}

/// The Originate of one try of leg A.
fn originate_action(cfg: &AmiConfig, o: &Originate, t: &ATry) -> Message {
    let plan = &o.plan;
    let chan = t.chan(o.call_id);
    let rounds = b_rounds(cfg, &plan.b);
    let b_ring = plan.b.ring_timeout.as_secs().to_string();
    let limit = plan.time_limit.as_secs();
    let mut m = Message::action("Originate", &[("Channel", &fill(&cfg.channel, &t.digits))]);
    match &cfg.bridge {
        Bridge::Dialplan { context, exten } => {
            let b = plan.b.first().map_or("", |p| p.number.digits());
            m.push("Context", context);
            m.push("Exten", &fill(exten, b));
            m.push("Priority", "1");
        }
        Bridge::Dial => {
            let round = rounds.first().map_or("", String::as_str);
            m.push("Application", "Dial");
            // S(): the time limit, counted from B's answer.
            m.push("Data", &format!("{round},{b_ring},S({limit})"));
        }
    }
    if let Some(cid) = t.caller_id.as_deref().filter(|c| !c.is_empty()) {
        m.push("CallerID", &fill(&cfg.caller_id, cid));
    }
    m.push("Timeout", &plan.a.ring_timeout.as_millis().to_string());
    m.push("Async", "true");
    m.push("ActionID", &chan);
    m.push("ChannelId", &chan);
    let mut var = |k: &str, v: &str| m.push("Variable", &format!("{k}={v}"));
    var("C2C_CALL", &o.call_id.to_string());
    var("C2C_PROMPTSET", &o.prompt_set);
    var("C2C_B_CALLERID", &o.destination_cid);
    // B's rounds, for the dialplan to dial in turn.
    var("C2C_B_ROUNDS", &rounds.len().to_string());
    for (i, round) in rounds.iter().enumerate() {
        var(&format!("C2C_B_DIAL_{}", i + 1), round);
    }
    var("C2C_B_RING", &b_ring);
    var("C2C_B_DELAY", &plan.b.retry_delay.as_secs().to_string());
    var("C2C_TIME_LIMIT", &limit.to_string());
    if plan.record && cfg.recording == AmiRecording::Dialplan {
        var("C2C_RECORD", &record_file(o.call_id));
    }
    // The time limit is counted from B's answer by Dial's S(); as a backstop
    // A's channel lives no longer than its ring, B's rounds and the limit.
    // (A minute more covers the hold prompt and each round's setup.)
    let most =
        plan.a.ring_timeout + plan.b.longest_setup() + plan.time_limit + Duration::from_secs(60);
    var("TIMEOUT(absolute)", &most.as_secs().to_string());
    for (k, v) in &cfg.variables {
        var(k, v);
    }
    m
}

impl Ami {
    /// Places the first try of leg A; the follow-up plays the rest of the call.
    pub async fn originate(
        &self,
        o: &Originate,
        events: Events,
    ) -> Result<(Reply, Option<FollowUp>), ProviderError> {
        let Some(first) = first_try(&o.plan) else {
            return Err(ProviderError::BadResponse(
                "the call has no A participant".into(),
            ));
        };
        let stream = self.manager.subscribe();
        let guard = self.following.follow(o.call_id);
        // ActionIDs carry the call's id: unique across every c2cd sharing the
        // Asterisk, which sends each OriginateResponse to every session.
        let reply = self
            .manager
            .send(originate_action(&self.cfg, o, &first))
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
            c.insert(o.call_id, vec![first.chan(o.call_id)]);
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
            track: Track::new(o.call_id, &o.plan, self.record_ref(o)).with_dial(&self.cfg),
            call: o.clone(),
            events,
            channels: self.channels.clone(),
            cfg: self.cfg.clone(),
        };
        Ok((accepted, Some(Box::pin(follow.run()))))
    }

    /// What a recorded call's recording is reported as.
    fn record_ref(&self, o: &Originate) -> Option<String> {
        (o.plan.record && self.cfg.recording != AmiRecording::Off)
            .then(|| format!("ami://{}/{}", self.name, record_file(o.call_id)))
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
                let most = crate::core::plan::MAX_PARTICIPANTS
                    * (usize::from(crate::core::plan::MAX_RETRIES) + 1);
                (1..=u16::try_from(most).unwrap_or(u16::MAX))
                    .map(|n| channel_id(id, n))
                    .collect()
            });
        // The follow-up stops before the hang-up: Asterisk answers it with the
        // try's failure (section 16), which is not the call's end.
        self.following.stop(id);
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

/// Where one try of leg A is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AState {
    /// Not sent yet (a later round).
    Idle,
    /// Its round has started; its Originate is on its way.
    Sending,
    /// Sent; its verdict is due by the instant.
    Ringing(Instant),
    /// Failed; its Hangup cause is awaited until the instant.
    Failing(LegOutcome, Instant),
    /// Answered: the call's A.
    Won,
    /// Answered as well, a moment after the winner: the dialplan's TRYLOCK
    /// lets one of the two through to B, whichever it is.
    Spare,
    Ended,
}

/// One try of A as the manager has told of it.
#[derive(Debug, Clone, Copy)]
struct ATrack {
    state: AState,
    /// Its channel's Hangup cause.
    cause: Option<u16>,
    /// Its channel hung up.
    gone: bool,
}

/// Where one try of leg B is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum BState {
    Idle,
    /// Dialled; the dialled channel's Uniqueid.
    Ringing(String),
    Answered,
    Ended,
}

struct BTry {
    attempt: u16,
    number: String,
    /// As the DialBegin's `DialString` shows it.
    dial: String,
    round: usize,
    state: BState,
}

/// What the follow-up is to do next.
#[derive(Debug, PartialEq)]
enum Step {
    Emit(Vec<Event>),
    /// Send the Originate of this try of A.
    Originate(u16),
    /// Hang up this channel.
    Hangup(String),
    /// Start recording on this channel (`recording = "mixmonitor"`).
    MixMonitor(String),
    /// Wait the retry delay, then start the next round of A.
    NextRound,
}

/// A call's legs as the manager's messages tell them, in whatever order they
/// come. Pure: [`Follow`] sends what it says and feeds it what arrives.
struct Track {
    id: CallId,
    rounds: Vec<Vec<ATry>>,
    a_ring: Duration,
    time_limit: Duration,
    /// When B answered; c2cd hangs up a call running past its limit.
    bridged_at: Option<Instant>,
    /// The hang-up at the limit was sent.
    cut: bool,
    /// The round of A ringing.
    round: usize,
    a: HashMap<u16, ATrack>,
    /// B is dialled by the dialplan (which lets one answering A through).
    dialplan: bool,
    b: Vec<BTry>,
    /// The recording's reference, for a recorded call.
    record: Option<String>,
    mixmonitor: bool,
    bridged: bool,
    done: bool,
}

impl Track {
    fn new(id: CallId, plan: &CallPlan, record: Option<String>) -> Track {
        let rounds = a_rounds(plan);
        let a = rounds
            .iter()
            .flatten()
            .map(|t| {
                let idle = ATrack {
                    state: AState::Idle,
                    cause: None,
                    gone: false,
                };
                (t.attempt, idle)
            })
            .collect();
        let b = plan
            .b
            .rounds()
            .iter()
            .enumerate()
            .flat_map(|(round, tries)| tries.iter().map(move |t| (round, t.attempt, t.participant)))
            .map(|(round, attempt, p)| BTry {
                attempt,
                number: p.number.as_str().to_string(),
                dial: p.number.digits().to_string(),
                round,
                state: BState::Idle,
            })
            .collect();
        Track {
            id,
            rounds,
            a_ring: plan.a.ring_timeout,
            time_limit: plan.time_limit,
            bridged_at: None,
            cut: false,
            round: 0,
            a,
            dialplan: false,
            b,
            record,
            mixmonitor: false,
            bridged: false,
            done: false,
        }
    }

    /// Matches each B try to what `DialString`s of `dial` look like.
    fn with_dial(mut self, cfg: &AmiConfig) -> Track {
        for t in &mut self.b {
            t.dial = dial_string(&fill(&cfg.dial, &t.dial)).to_string();
        }
        self.mixmonitor = cfg.recording == AmiRecording::MixMonitor;
        self.dialplan = matches!(cfg.bridge, Bridge::Dialplan { .. });
        self
    }

    fn try_of(&self, attempt: u16) -> Option<&ATry> {
        self.rounds.iter().flatten().find(|t| t.attempt == attempt)
    }

    fn a_leg(&self, attempt: u16) -> Leg {
        Leg {
            side: Side::A,
            attempt,
            number: self.try_of(attempt).map(|t| t.number.clone()),
        }
    }

    fn b_leg(&self, i: usize) -> Leg {
        Leg {
            side: Side::B,
            attempt: self.b[i].attempt,
            number: Some(self.b[i].number.clone()),
        }
    }

    fn state(&self, attempt: u16) -> AState {
        self.a.get(&attempt).map_or(AState::Ended, |s| s.state)
    }

    fn set(&mut self, attempt: u16, state: AState) {
        if let Some(s) = self.a.get_mut(&attempt) {
            s.state = state;
        }
    }

    /// The try in `state`, if one is.
    fn find(&self, state: AState) -> Option<u16> {
        self.a
            .iter()
            .find(|(_, t)| t.state == state)
            .map(|(n, _)| *n)
    }

    fn winner(&self) -> Option<u16> {
        self.find(AState::Won)
    }

    /// The tries in one of `states`.
    fn tries_in(&self, states: impl Fn(AState) -> bool) -> Vec<u16> {
        let mut v: Vec<u16> = self
            .a
            .iter()
            .filter(|(_, t)| states(t.state))
            .map(|(n, _)| *n)
            .collect();
        v.sort_unstable();
        v
    }

    /// The try whose channel id is `chan`.
    fn attempt_of(&self, chan: &str) -> Option<u16> {
        let n = chan.strip_prefix(&format!("c2cd-{}-a", self.id))?;
        let n: u16 = n.parse().ok()?;
        self.a.contains_key(&n).then_some(n)
    }

    /// The tries of the current round, to be sent: each is on its way from
    /// now, so that one refused does not end the round before the others go.
    fn start_round(&mut self) -> Vec<Step> {
        let tries: Vec<u16> = self
            .rounds
            .get(self.round)
            .map(|r| r.iter().map(|t| t.attempt).collect())
            .unwrap_or_default();
        for n in &tries {
            self.set(*n, AState::Sending);
        }
        tries.into_iter().map(Step::Originate).collect()
    }

    /// Whether try `n` is still to be sent (the call has not ended, nor
    /// another try answered, meanwhile).
    fn to_send(&self, n: u16) -> bool {
        !self.done && self.state(n) == AState::Sending
    }

    /// Try `attempt` was sent (`Ok`) or refused at once.
    fn sent(&mut self, attempt: u16, ok: bool, now: Instant) -> Vec<Step> {
        if self.state(attempt) != AState::Sending {
            return Vec::new();
        }
        if ok {
            self.set(attempt, AState::Ringing(now + self.a_ring + VERDICT_GRACE));
            vec![Step::Emit(vec![Event::Ringing(self.a_leg(attempt))])]
        } else {
            self.a_failed(attempt, LegOutcome::Failed)
        }
    }

    /// Takes one message from the manager.
    fn on(&mut self, m: &Message, now: Instant) -> Vec<Step> {
        let steps = self.take(m, now);
        if self.bridged && self.bridged_at.is_none() {
            self.bridged_at = Some(now);
        }
        steps
    }

    fn take(&mut self, m: &Message, now: Instant) -> Vec<Step> {
        if self.done {
            return Vec::new();
        }
        match m.event() {
            Some("OriginateResponse") => match m.get("ActionID").and_then(|c| self.attempt_of(c)) {
                Some(n) => self.verdict(n, a_outcome(m), now),
                None => Vec::new(),
            },
            Some("Hangup") => match m.get("Uniqueid").and_then(|c| self.attempt_of(c)) {
                Some(n) => self.hung_up(n, m.get("Cause").and_then(|c| c.parse().ok())),
                None => Vec::new(),
            },
            Some(e @ ("DialBegin" | "DialEnd")) => {
                // B is dialled from A's channel (A's own dial has no Uniqueid).
                let Some(n) = m.get("Uniqueid").and_then(|c| self.attempt_of(c)) else {
                    return Vec::new();
                };
                let mut steps = Vec::new();
                if self.state(n) == AState::Spare {
                    // The dialplan let the spare through: the winner was the
                    // one TRYLOCK hung up.
                    steps = self.switch_to(n);
                } else if self.state(n) != AState::Won {
                    // Dialling B means A answered, whatever the verdict's order.
                    steps = self.verdict(n, Ok(()), now);
                    if self.state(n) != AState::Won {
                        return steps;
                    }
                }
                let dest = m.get("DestUniqueid").unwrap_or_default();
                steps.extend(if e == "DialBegin" {
                    self.b_began(m.get("DialString").unwrap_or_default(), dest)
                } else {
                    self.b_ended(dest, b_outcome(m))
                });
                steps
            }
            _ => Vec::new(),
        }
    }

    /// The verdict on try `n` of A.
    fn verdict(&mut self, n: u16, v: Result<(), LegOutcome>, now: Instant) -> Vec<Step> {
        let state = self.state(n);
        let waiting = matches!(state, AState::Ringing(_) | AState::Idle | AState::Sending);
        match v {
            Ok(()) if waiting && self.winner().is_some() => {
                if self.dialplan && !self.gone(n) {
                    // Two answered at once: the dialplan's TRYLOCK drops the
                    // one that is second there, which c2cd cannot tell yet.
                    self.set(n, AState::Spare);
                    return Vec::new();
                }
                // Let the later one go.
                self.set(n, AState::Ended);
                let ended = Event::Ended {
                    leg: self.a_leg(n),
                    outcome: LegOutcome::Normal,
                    last: false,
                };
                vec![
                    Step::Hangup(channel_id(self.id, n)),
                    Step::Emit(vec![ended]),
                ]
            }
            Ok(()) if waiting => {
                self.set(n, AState::Won);
                let mut steps = vec![Step::Emit(vec![Event::Answered(self.a_leg(n))])];
                if self.mixmonitor && self.record.is_some() {
                    steps.push(Step::MixMonitor(channel_id(self.id, n)));
                }
                // The others of the round lose the race; those not sent yet
                // are not.
                for l in self.tries_in(|s| s == AState::Sending) {
                    self.set(l, AState::Ended);
                }
                let mut ended = Vec::new();
                for l in self.tries_in(|s| matches!(s, AState::Ringing(_) | AState::Failing(..))) {
                    let outcome = match self.state(l) {
                        AState::Failing(o, _) => refine(o, self.a[&l].cause),
                        _ => {
                            steps.push(Step::Hangup(channel_id(self.id, l)));
                            LegOutcome::Normal
                        }
                    };
                    self.set(l, AState::Ended);
                    ended.push(Event::Ended {
                        leg: self.a_leg(l),
                        outcome,
                        last: false,
                    });
                }
                if !ended.is_empty() {
                    steps.push(Step::Emit(ended));
                }
                if self.gone(n) {
                    // Its Hangup came before its verdict: answered, and gone.
                    steps.extend(self.won_gone(n));
                }
                steps
            }
            Err(outcome) if matches!(state, AState::Ringing(_) | AState::Sending) => {
                let cause = self.a.get(&n).and_then(|s| s.cause);
                if cause.is_none() && outcome == LegOutcome::Failed {
                    // Reason 0 says little; the Hangup cause may follow.
                    self.set(n, AState::Failing(outcome, now + CAUSE_WAIT));
                    return Vec::new();
                }
                self.a_failed(n, refine(outcome, cause))
            }
            _ => Vec::new(),
        }
    }

    fn gone(&self, n: u16) -> bool {
        self.a.get(&n).is_some_and(|t| t.gone)
    }

    /// The channel of try `n` hung up with `cause`.
    fn hung_up(&mut self, n: u16, cause: Option<u16>) -> Vec<Step> {
        if let Some(t) = self.a.get_mut(&n) {
            t.cause = t.cause.or(cause);
            t.gone = true;
        }
        match self.state(n) {
            AState::Failing(outcome, _) => self.a_failed(n, refine(outcome, cause)),
            AState::Won => self.won_gone(n),
            AState::Spare => {
                // TRYLOCK let it go.
                self.set(n, AState::Ended);
                vec![Step::Emit(vec![Event::Ended {
                    leg: self.a_leg(n),
                    outcome: LegOutcome::Normal,
                    last: false,
                }])]
            }
            _ => Vec::new(),
        }
    }

    /// The winner `n`'s channel is gone. Before B was dialled, with a spare
    /// still up, the dialplan let the spare through instead; otherwise the
    /// call is over, and anything of B still ringing went with it.
    fn won_gone(&mut self, n: u16) -> Vec<Step> {
        let b_begun = self.b.iter().any(|t| t.state != BState::Idle);
        if let Some(spare) = self.find(AState::Spare).filter(|_| !b_begun) {
            self.set(n, AState::Ended);
            self.set(spare, AState::Won);
            return vec![Step::Emit(vec![Event::Ended {
                leg: self.a_leg(n),
                outcome: LegOutcome::Normal,
                last: false,
            }])];
        }
        let mut ended: Vec<Event> = (0..self.b.len())
            .filter(|i| matches!(self.b[*i].state, BState::Ringing(_)))
            .map(|i| Event::Ended {
                leg: self.b_leg(i),
                outcome: LegOutcome::Normal,
                last: false,
            })
            .collect();
        ended.push(Event::Ended {
            leg: self.a_leg(n),
            outcome: LegOutcome::Normal,
            last: true,
        });
        self.set(n, AState::Ended);
        self.done = true;
        vec![Step::Emit(ended)]
    }

    /// The spare `n` dials B: it is the call's A now, and the winner is let go.
    fn switch_to(&mut self, n: u16) -> Vec<Step> {
        let mut steps = Vec::new();
        if let Some(old) = self.winner() {
            self.set(old, AState::Ended);
            steps.push(Step::Hangup(channel_id(self.id, old)));
            steps.push(Step::Emit(vec![Event::Ended {
                leg: self.a_leg(old),
                outcome: LegOutcome::Normal,
                last: false,
            }]));
        }
        self.set(n, AState::Won);
        steps
    }

    /// When a bridged call past its time limit is hung up by c2cd.
    fn cut_at(&self) -> Option<Instant> {
        let at = self.bridged_at? + self.time_limit + LIMIT_GRACE;
        (!self.cut && !self.done).then_some(at)
    }

    /// Failing tries whose wait for a cause is over end as they are; tries
    /// whose verdict never came fail; a call past its time limit is hung up.
    fn settle(&mut self, now: Instant) -> Vec<Step> {
        if self.cut_at().is_some_and(|at| at <= now) {
            self.cut = true;
            if let Some(n) = self.winner() {
                log::warn!(
                    "call {}: still up {}s past its time limit; hanging it up",
                    self.id,
                    LIMIT_GRACE.as_secs()
                );
                return vec![Step::Hangup(channel_id(self.id, n))];
            }
        }
        let mut steps = Vec::new();
        let due: Vec<(u16, LegOutcome)> = self
            .a
            .iter()
            .filter_map(|(n, t)| match &t.state {
                AState::Failing(o, at) if *at <= now => Some((*n, *o)),
                AState::Ringing(at) if *at <= now => {
                    // Whatever the channel does, c2cd no longer follows it.
                    steps.push(Step::Hangup(channel_id(self.id, *n)));
                    log::warn!(
                        "call {}: no OriginateResponse for A try {n} by its ring timeout and {}s more; does the manager user have read = call?",
                        self.id,
                        VERDICT_GRACE.as_secs()
                    );
                    Some((*n, LegOutcome::Failed))
                }
                _ => None,
            })
            .collect();
        for (n, o) in due {
            steps.extend(self.a_failed(n, o));
        }
        steps
    }

    /// When the next failing try stops waiting for its cause, or the next
    /// try's verdict is overdue.
    fn next_settle(&self) -> Option<Instant> {
        self.a
            .values()
            .filter_map(|t| match t.state {
                AState::Failing(_, at) | AState::Ringing(at) => Some(at),
                _ => None,
            })
            .chain(self.cut_at())
            .min()
    }

    /// Try `n` of A failed: the call goes on with the rest of the round, the
    /// next round, or ends.
    fn a_failed(&mut self, n: u16, outcome: LegOutcome) -> Vec<Step> {
        self.set(n, AState::Ended);
        let open = self.a.values().any(|t| {
            matches!(
                t.state,
                AState::Sending
                    | AState::Ringing(_)
                    | AState::Failing(..)
                    | AState::Won
                    | AState::Spare
            )
        });
        let more = self.round + 1 < self.rounds.len();
        let last = !open && !more;
        let mut steps = vec![Step::Emit(vec![Event::Ended {
            leg: self.a_leg(n),
            outcome,
            last,
        }])];
        if last {
            self.done = true;
        } else if !open {
            self.round += 1;
            steps.push(Step::NextRound);
        }
        steps
    }

    /// A dialled `dial_string`, whose channel is `dest`: the next try of B that
    /// dials it (or, for a dialplan of the operator's own, the next try).
    fn b_began(&mut self, dial_string: &str, dest: &str) -> Vec<Step> {
        let round = self.b_round();
        let pick = |by_dial: bool| {
            self.b.iter().position(|t| {
                t.state == BState::Idle && t.round >= round && (!by_dial || t.dial == dial_string)
            })
        };
        let Some(i) = pick(true).or_else(|| pick(false)) else {
            return Vec::new();
        };
        // Tries of earlier rounds never dialled are passed over.
        let r = self.b[i].round;
        for t in self
            .b
            .iter_mut()
            .filter(|t| t.round < r && t.state == BState::Idle)
        {
            t.state = BState::Ended;
        }
        self.b[i].state = BState::Ringing(dest.to_string());
        vec![Step::Emit(vec![Event::Ringing(self.b_leg(i))])]
    }

    /// The round of B dialling now: the first with a try not ended.
    fn b_round(&self) -> usize {
        self.b
            .iter()
            .find(|t| t.state != BState::Ended)
            .map_or(usize::MAX, |t| t.round)
    }

    /// The dial of channel `dest` ended.
    fn b_ended(&mut self, dest: &str, v: Result<(), LegOutcome>) -> Vec<Step> {
        let found = self
            .b
            .iter()
            .position(|t| t.state == BState::Ringing(dest.to_string()))
            .or_else(|| {
                self.b
                    .iter()
                    .position(|t| matches!(t.state, BState::Ringing(_)))
            });
        let mut events = Vec::new();
        let i = match found {
            Some(i) => i,
            // A DialEnd without its DialBegin.
            None => {
                let steps = self.b_began("", dest);
                if steps.is_empty() {
                    return Vec::new();
                }
                for s in steps {
                    if let Step::Emit(e) = s {
                        events.extend(e);
                    }
                }
                match self
                    .b
                    .iter()
                    .position(|t| t.state == BState::Ringing(dest.to_string()))
                {
                    Some(i) => i,
                    None => return vec![Step::Emit(events)],
                }
            }
        };
        match v {
            Ok(()) => {
                self.b[i].state = BState::Answered;
                events.push(Event::Answered(self.b_leg(i)));
                if !self.bridged {
                    self.bridged = true;
                    events.push(Event::Bridged);
                    if let Some(r) = &self.record {
                        events.push(Event::Recording(r.clone()));
                    }
                }
            }
            Err(outcome) => {
                self.b[i].state = BState::Ended;
                let round = self.b[i].round;
                let open = self.b.iter().any(|t| {
                    matches!(t.state, BState::Ringing(_) | BState::Answered)
                        || (t.state == BState::Idle && t.round > round)
                });
                // A cancelled dial never ends the call: A's Hangup does.
                let last = !open && !self.bridged && outcome != LegOutcome::Normal;
                events.push(Event::Ended {
                    leg: self.b_leg(i),
                    outcome,
                    last,
                });
                if last {
                    self.done = true;
                }
            }
        }
        vec![Step::Emit(events)]
    }

    /// The manager connection was lost. A bridged call goes on in Asterisk,
    /// whose events reach the next login: it is still followed (and closed as
    /// lost if its end is missed). Any other fails on the leg it was at: what
    /// it was waiting for will not be heard.
    fn lost(&mut self) -> Vec<Step> {
        if self.done || self.bridged {
            return Vec::new();
        }
        self.done = true;
        let ringing_b = (0..self.b.len()).find(|i| matches!(self.b[*i].state, BState::Ringing(_)));
        let leg = match (ringing_b, self.winner()) {
            (Some(i), _) => self.b_leg(i),
            (None, Some(n)) => self.a_leg(n),
            (None, None) => {
                let n = self
                    .tries_in(|s| matches!(s, AState::Ringing(_) | AState::Failing(..)))
                    .last()
                    .copied()
                    .unwrap_or(1);
                self.a_leg(n)
            }
        };
        vec![Step::Emit(vec![Event::Ended {
            leg,
            outcome: LegOutcome::Failed,
            last: true,
        }])]
    }
}

struct Follow {
    _guard: FollowGuard,
    manager: Manager,
    stream: broadcast::Receiver<Message>,
    track: Track,
    call: Originate,
    events: Events,
    channels: Channels,
    /// For the Originate of later tries.
    cfg: AmiConfig,
}

impl Follow {
    async fn run(mut self) {
        let id = self.call.call_id;
        // Try 1 was sent by `originate`; the rest of round 1 now.
        let round = self.track.start_round();
        let mut steps = self.track.sent(1, true, Instant::now());
        steps.extend(round.into_iter().skip(1));
        let link = self.manager.clone();
        let mut link_up = true;
        // Past the longest the call can take, with room for a late end, the
        // follow-up stops: the reconciler then closes the call as lost.
        let deadline = Instant::now() + self.call.plan.longest() + Duration::from_secs(300);
        loop {
            for step in std::mem::take(&mut steps) {
                steps.extend(self.run_step(step).await);
            }
            if !steps.is_empty() {
                continue;
            }
            if self.track.done {
                return;
            }
            let settle = self.track.next_settle();
            let m = tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    log::warn!("call {id}: no end heard from the manager in time; leaving it to the reconciler");
                    return;
                },
                _ = tokio::time::sleep_until(settle.unwrap_or(deadline)), if settle.is_some() => {
                    steps = self.track.settle(Instant::now());
                    continue;
                },
                m = self.stream.recv() => match m {
                    Ok(m) => m,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        log::warn!("call {id}: {n} manager events missed; the reconciler closes the call if its end is lost");
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = wait_down(&link), if link_up => {
                    link_up = false;
                    steps = self.track.lost();
                    if self.track.done {
                        log::warn!("call {id}: the manager connection was lost; failing the call");
                    } else {
                        log::warn!("call {id}: the manager connection was lost; the call is bridged, so it is followed again once the manager is back");
                    }
                    continue;
                }
                _ = link.wait_link(|l| *l == Link::Up), if !link_up => {
                    link_up = true;
                    continue;
                }
            };
            steps = self.track.on(&m, Instant::now());
        }
    }

    /// Does one step; returns what follows from it.
    async fn run_step(&mut self, step: Step) -> Vec<Step> {
        let id = self.call.call_id;
        match step {
            Step::Emit(events) => {
                self.events.emit_all(id, events).await;
                Vec::new()
            }
            Step::NextRound => {
                tokio::time::sleep(self.call.plan.a.retry_delay).await;
                self.track.start_round()
            }
            Step::Originate(n) => {
                let Some(t) = self.track.try_of(n).cloned() else {
                    return Vec::new();
                };
                if !self.track.to_send(n) {
                    return Vec::new();
                }
                // A hang-up takes the call's channels: no new try then.
                let live = self
                    .channels
                    .lock()
                    .ok()
                    .and_then(|mut c| c.get_mut(&id).map(|v| v.push(t.chan(id))))
                    .is_some();
                if !live {
                    return Vec::new();
                }
                let r = self
                    .manager
                    .send(originate_action(&self.cfg, &self.call, &t))
                    .await;
                // Not sent (down, busy) or refused: the try failed. Sent with
                // no reply (a timeout, the link lost): it may ring, so it is
                // followed, its verdict awaited within its grace.
                let ok = match &r {
                    Ok(m) => m.get("Response") == Some("Success"),
                    Err(super::AmiError::Down(_) | super::AmiError::Busy) => false,
                    Err(_) => true,
                };
                if !ok {
                    log::warn!("call {id}: the Originate of A try {n} was refused: {r:?}");
                }
                self.track.sent(n, ok, Instant::now())
            }
            Step::Hangup(chan) => {
                let r = self
                    .manager
                    .send(Message::action(
                        "Hangup",
                        &[("Channel", &chan), ("Cause", "16")],
                    ))
                    .await;
                log::debug!("call {id}: Hangup {chan}: {r:?}");
                Vec::new()
            }
            Step::MixMonitor(chan) => {
                let file = record_file(id);
                let r = self
                    .manager
                    .send(Message::action(
                        "MixMonitor",
                        &[("Channel", &chan), ("File", &file), ("Options", "b")],
                    ))
                    .await;
                if !matches!(&r, Ok(m) if m.get("Response") == Some("Success")) {
                    log::warn!("call {id}: MixMonitor on {chan} failed (the manager user needs write = system): {r:?}");
                }
                Vec::new()
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
    use crate::core::phone::Address;
    use crate::core::plan::Participant;

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

    fn side(strategy: Strategy, numbers: &[(&str, u8)]) -> SidePlan {
        let mut s = SidePlan::single(Address::Local("0".into()), None);
        s.strategy = strategy;
        s.participants = numbers
            .iter()
            .map(|(n, retries)| Participant {
                number: Address::Local(n.to_string()),
                caller_id: None,
                retries: *retries,
            })
            .collect();
        s
    }

    fn track(a: SidePlan, b: SidePlan, record: bool) -> Track {
        let plan = CallPlan {
            a,
            b,
            time_limit: Duration::from_secs(600),
            record,
        };
        let cfg = AmiConfig {
            address: "127.0.0.1:5038".into(),
            username: "c2cd".into(),
            secret: crate::core::Secret::new(String::from("s")),
            channel: "PJSIP/{number}@trunk".into(),
            bridge: Bridge::Dialplan {
                context: "c2cd".into(),
                exten: "{number}".into(),
            },
            dial: "PJSIP/{number}@trunk".into(),
            recording: AmiRecording::Dialplan,
            caller_id: "<{number}>".into(),
            recordings_dir: "/var/spool/asterisk/monitor".into(),
            variables: Vec::new(),
            timeout: Duration::from_secs(5),
        };
        let id = CallId::new();
        let record = record.then(|| "ami://pbx/rec.wav".to_string());
        let mut t = Track::new(id, &plan, record).with_dial(&cfg);
        t.start_round();
        t
    }

    /// A manager message of call `t` on the channel of A's try `attempt`.
    fn ev(t: &Track, name: &str, attempt: u16, fields: &[(&str, &str)]) -> Message {
        let chan = channel_id(t.id, attempt);
        let mut m = msg(&[("Event", name)]);
        if name == "OriginateResponse" {
            m.push("ActionID", &chan);
        }
        m.push("Uniqueid", &chan);
        for (k, v) in fields {
            m.push(k, v);
        }
        m
    }

    /// What the steps do, in short: `a2:a_answered`, `hangup a1`, `originate a3`.
    fn said(steps: Vec<Step>) -> Vec<String> {
        let a = |chan: &str| chan.rsplit('-').next().unwrap_or_default().to_string();
        steps
            .into_iter()
            .flat_map(|s| match s {
                Step::Emit(events) => events
                    .iter()
                    .map(|e| match (e.leg(), e) {
                        (Some(l), Event::Ended { last: true, .. }) => {
                            format!("{}{}:{} (last)", l.side.as_str(), l.attempt, e.kind())
                        }
                        (Some(l), _) => format!("{}{}:{}", l.side.as_str(), l.attempt, e.kind()),
                        (None, _) => e.kind(),
                    })
                    .collect(),
                Step::Originate(n) => vec![format!("originate a{n}")],
                Step::Hangup(c) => vec![format!("hangup {}", a(&c))],
                Step::MixMonitor(c) => vec![format!("mixmonitor {}", a(&c))],
                Step::NextRound => vec!["next round".into()],
            })
            .collect()
    }

    fn verdict(response: &str, reason: &str) -> [(&'static str, String); 2] {
        [("Response", response.into()), ("Reason", reason.into())]
    }

    fn on(t: &mut Track, name: &str, attempt: u16, fields: &[(&str, &str)]) -> Vec<String> {
        let m = ev(t, name, attempt, fields);
        let steps = t.on(&m, Instant::now());
        said(steps)
    }

    /// A dials `dial` (its `DialString`) on channel `dest`.
    fn begin(t: &mut Track, a: u16, dial: &str, dest: &str) -> Vec<String> {
        on(
            t,
            "DialBegin",
            a,
            &[("DialString", dial), ("DestUniqueid", dest)],
        )
    }

    fn end(t: &mut Track, a: u16, status: &str, dest: &str) -> Vec<String> {
        on(
            t,
            "DialEnd",
            a,
            &[("DialStatus", status), ("DestUniqueid", dest)],
        )
    }

    fn respond(t: &mut Track, attempt: u16, response: &str, reason: &str) -> Vec<String> {
        let v = verdict(response, reason);
        let f: Vec<(&str, &str)> = v.iter().map(|(k, v)| (*k, v.as_str())).collect();
        on(t, "OriginateResponse", attempt, &f)
    }

    #[test]
    fn parallel_a_the_first_answer_wins_and_the_others_are_hung_up() {
        let mut t = track(
            side(Strategy::Parallel, &[("100", 0), ("101", 0), ("102", 0)]),
            side(Strategy::Sequential, &[("200", 0)]),
            false,
        );
        let start = t.start_round();
        assert_eq!(
            said(start),
            ["originate a1", "originate a2", "originate a3"]
        );
        for n in 1..=3 {
            t.sent(n, true, Instant::now());
        }
        // a2 busy first: not the call's last, the others still ring.
        assert_eq!(
            [
                on(&mut t, "Hangup", 2, &[("Cause", "17")]),
                respond(&mut t, 2, "Failure", "5")
            ]
            .concat(),
            ["a2:a_ended_busy"]
        );
        assert_eq!(
            respond(&mut t, 3, "Success", "4"),
            ["a3:a_answered", "hangup a1", "a1:a_ended_normal"]
        );
        // The loser's own verdict and a second answer change nothing.
        assert!(respond(&mut t, 1, "Failure", "0").is_empty());
        assert!(respond(&mut t, 3, "Success", "4").is_empty());
        assert_eq!(begin(&mut t, 3, "200@trunk", "b-1"), ["b1:b_ringing"]);
        assert_eq!(
            end(&mut t, 3, "ANSWER", "b-1"),
            ["b1:b_answered", "bridged"]
        );
        assert_eq!(
            on(&mut t, "Hangup", 3, &[("Cause", "16")]),
            ["a3:a_ended_normal (last)"]
        );
        assert!(t.done);
    }

    #[test]
    fn two_answers_at_once_let_the_later_go() {
        let mut t = track(
            side(Strategy::Parallel, &[("100", 0), ("101", 0)]),
            side(Strategy::Sequential, &[("200", 0)]),
            false,
        );
        t.sent(1, true, Instant::now());
        t.sent(2, true, Instant::now());
        // Both answered; the hang-up of a2 was sent before its verdict came.
        assert_eq!(
            respond(&mut t, 1, "Success", "4"),
            ["a1:a_answered", "hangup a2", "a2:a_ended_normal"]
        );
        assert!(respond(&mut t, 2, "Success", "4").is_empty());
        // B dialled from the loser's channel is not the call's.
        assert!(on(&mut t, "DialBegin", 2, &[("DialString", "200@trunk")]).is_empty());
    }

    #[test]
    fn sequential_a_goes_round_by_round_with_retries() {
        let mut t = track(
            side(Strategy::Sequential, &[("100", 1), ("101", 0)]),
            side(Strategy::Sequential, &[("200", 0)]),
            false,
        );
        let start = t.start_round();
        assert_eq!(said(start), ["originate a1"]);
        t.sent(1, true, Instant::now());
        assert_eq!(
            respond(&mut t, 1, "Failure", "3"),
            ["a1:a_ended_no_answer", "next round"]
        );
        let next = t.start_round();
        assert_eq!(said(next), ["originate a2"]);
        // Refused at once: the next participant.
        let refused = t.sent(2, false, Instant::now());
        assert_eq!(said(refused), ["a2:a_ended_failed", "next round"]);
        let next = t.start_round();
        assert_eq!(said(next), ["originate a3"]);
        t.sent(3, true, Instant::now());
        assert_eq!(
            respond(&mut t, 3, "Failure", "5"),
            ["a3:a_ended_busy (last)"]
        );
        assert!(t.done);
    }

    /// Reason 0 says "other"; the Hangup cause (21 in section 8) says what,
    /// before or after the verdict, or never (no channel: section 10).
    #[test]
    fn a_rejected_a_keeps_its_cause_whatever_the_order() {
        let b = || side(Strategy::Sequential, &[("200", 0)]);
        let mut t = track(side(Strategy::Sequential, &[("104", 0)]), b(), false);
        t.sent(1, true, Instant::now());
        assert!(respond(&mut t, 1, "Failure", "0").is_empty());
        assert_eq!(
            on(&mut t, "Hangup", 1, &[("Cause", "21")]),
            ["a1:a_ended_rejected (last)"]
        );

        let mut t = track(side(Strategy::Sequential, &[("104", 0)]), b(), false);
        t.sent(1, true, Instant::now());
        assert!(on(&mut t, "Hangup", 1, &[("Cause", "21")]).is_empty());
        assert_eq!(
            respond(&mut t, 1, "Failure", "0"),
            ["a1:a_ended_rejected (last)"]
        );

        let mut t = track(side(Strategy::Sequential, &[("104", 0)]), b(), false);
        t.sent(1, true, Instant::now());
        let now = Instant::now();
        assert!(t.verdict(1, Err(LegOutcome::Failed), now).is_empty());
        assert!(t.settle(now).is_empty());
        let due = t.next_settle().unwrap();
        let settled = t.settle(due);
        assert_eq!(said(settled), ["a1:a_ended_failed (last)"]);
    }

    /// A manager user without `read = call` hears no verdict (section 13's
    /// `Events: off`): the try is given up past its ring timeout.
    #[test]
    fn a_verdict_that_never_comes_fails_the_try() {
        let mut t = track(
            side(Strategy::Sequential, &[("100", 1)]),
            side(Strategy::Sequential, &[("200", 0)]),
            false,
        );
        let now = Instant::now();
        t.sent(1, true, now);
        let due = t.next_settle().unwrap();
        assert_eq!(due - now, Duration::from_secs(30) + VERDICT_GRACE);
        assert!(t.settle(due - Duration::from_millis(1)).is_empty());
        let given_up = t.settle(due);
        assert_eq!(
            said(given_up),
            ["hangup a1", "a1:a_ended_failed", "next round"]
        );
    }

    #[test]
    fn a_call_past_its_time_limit_is_hung_up_by_c2cd() {
        let mut t = track(
            side(Strategy::Sequential, &[("100", 0)]),
            side(Strategy::Sequential, &[("200", 0)]),
            false,
        );
        let now = Instant::now();
        t.sent(1, true, now);
        respond(&mut t, 1, "Success", "4");
        let m = ev(&t, "DialEnd", 1, &[("DialStatus", "ANSWER")]);
        t.on(&m, now);
        let cut = now + Duration::from_secs(600) + LIMIT_GRACE;
        assert_eq!(t.next_settle(), Some(cut));
        assert!(t.settle(cut - Duration::from_secs(1)).is_empty());
        assert_eq!(said(t.settle(cut)), ["hangup a1"]);
        assert_eq!(t.next_settle(), None, "once");
    }

    #[test]
    fn b_rounds_follow_the_dial_events_of_as_channel() {
        let mut t = track(
            side(Strategy::Sequential, &[("100", 0)]),
            side(Strategy::Sequential, &[("200", 1), ("201", 0)]),
            true,
        );
        t.sent(1, true, Instant::now());
        // The dial of B comes before A's verdict: A answered all the same.
        assert_eq!(
            begin(&mut t, 1, "200@trunk", "b-1"),
            ["a1:a_answered", "b1:b_ringing"]
        );
        assert!(respond(&mut t, 1, "Success", "4").is_empty());
        assert_eq!(end(&mut t, 1, "BUSY", "b-1"), ["b1:b_ended_busy"]);
        // A's own dial (no Uniqueid of A's channel) is not B.
        let own = msg(&[
            ("Event", "DialBegin"),
            ("DestUniqueid", &channel_id(t.id, 1)),
        ]);
        assert!(t.on(&own, Instant::now()).is_empty());
        assert_eq!(begin(&mut t, 1, "200@trunk", "b-2"), ["b2:b_ringing"]);
        assert_eq!(end(&mut t, 1, "NOANSWER", "b-2"), ["b2:b_ended_no_answer"]);
        assert_eq!(begin(&mut t, 1, "201@trunk", "b-3"), ["b3:b_ringing"]);
        assert_eq!(
            end(&mut t, 1, "ANSWER", "b-3"),
            ["b3:b_answered", "bridged", "recording"]
        );
        assert_eq!(
            on(&mut t, "Hangup", 1, &[("Cause", "16")]),
            ["a1:a_ended_normal (last)"]
        );
    }

    #[test]
    fn parallel_b_one_answers_the_others_are_cancelled_and_the_last_failure_ends_it() {
        let mut t = track(
            side(Strategy::Sequential, &[("100", 0)]),
            side(Strategy::Parallel, &[("200", 0), ("201", 0)]),
            false,
        );
        t.sent(1, true, Instant::now());
        respond(&mut t, 1, "Success", "4");
        begin(&mut t, 1, "201@trunk", "b-x");
        begin(&mut t, 1, "200@trunk", "b-y");
        assert_eq!(
            end(&mut t, 1, "ANSWER", "b-x"),
            ["b2:b_answered", "bridged"]
        );
        assert_eq!(end(&mut t, 1, "CANCEL", "b-y"), ["b1:b_ended_normal"]);

        // Both fail: the second failure is the call's last.
        let mut t = track(
            side(Strategy::Sequential, &[("100", 0)]),
            side(Strategy::Parallel, &[("200", 0), ("201", 0)]),
            false,
        );
        t.sent(1, true, Instant::now());
        respond(&mut t, 1, "Success", "4");
        begin(&mut t, 1, "200@trunk", "b-x");
        begin(&mut t, 1, "201@trunk", "b-y");
        assert_eq!(end(&mut t, 1, "BUSY", "b-x"), ["b1:b_ended_busy"]);
        assert_eq!(
            end(&mut t, 1, "CONGESTION", "b-y"),
            ["b2:b_ended_failed (last)"]
        );
        assert!(t.done);
    }

    /// Review finding: a refused try of a parallel round must not end the
    /// round while the others are still to be sent.
    #[test]
    fn a_refused_try_leaves_the_rest_of_its_round_ringing() {
        let mut t = track(
            side(Strategy::Parallel, &[("100", 0), ("101", 0)]),
            side(Strategy::Sequential, &[("200", 0)]),
            false,
        );
        assert_eq!(
            said(t.sent(1, false, Instant::now())),
            ["a1:a_ended_failed"]
        );
        assert!(!t.done);
        assert!(t.to_send(2));
        assert_eq!(said(t.sent(2, true, Instant::now())), ["a2:a_ringing"]);
        assert_eq!(
            respond(&mut t, 2, "Failure", "5"),
            ["a2:a_ended_busy (last)"]
        );
        // Once the call is over nothing more is sent.
        assert!(!t.to_send(2));
    }

    /// The verdict after the Hangup and the Cdr (section 1's order reversed),
    /// for an A that answered and hung up before B was dialled.
    #[test]
    fn an_answered_a_that_is_gone_before_its_verdict_ends_the_call() {
        let mut t = track(
            side(Strategy::Sequential, &[("100", 0)]),
            side(Strategy::Sequential, &[("200", 0)]),
            false,
        );
        t.sent(1, true, Instant::now());
        assert!(on(&mut t, "Hangup", 1, &[("Cause", "16")]).is_empty());
        assert_eq!(
            respond(&mut t, 1, "Success", "4"),
            ["a1:a_answered", "a1:a_ended_normal (last)"]
        );
        assert!(t.done);
    }

    /// Two A answer at once in dialplan mode: TRYLOCK, not c2cd, picks the
    /// one that dials B, so the second is kept until the dialplan tells.
    #[test]
    fn the_dialplan_picks_between_two_answers() {
        let parallel = || side(Strategy::Parallel, &[("100", 0), ("101", 0)]);
        let b = || side(Strategy::Sequential, &[("200", 0)]);
        // The second through TRYLOCK dials B: it becomes the call's A.
        let mut t = track(parallel(), b(), false);
        t.sent(1, true, Instant::now());
        t.sent(2, true, Instant::now());
        let mut m = ev(&t, "OriginateResponse", 2, &[("Response", "Success")]);
        let mut first = t.on(&m, Instant::now());
        m = ev(&t, "OriginateResponse", 1, &[("Response", "Success")]);
        first.extend(t.on(&m, Instant::now()));
        assert_eq!(
            said(first),
            ["a2:a_answered", "hangup a1", "a1:a_ended_normal"]
        );

        let mut t = track(parallel(), b(), false);
        t.sent(1, true, Instant::now());
        t.sent(2, true, Instant::now());
        respond(&mut t, 1, "Success", "4");
        // a2 was not hung up: it answered before c2cd could.
        t.set(2, AState::Ringing(Instant::now()));
        assert!(respond(&mut t, 2, "Success", "4").is_empty());
        assert_eq!(t.state(2), AState::Spare);
        assert_eq!(
            begin(&mut t, 2, "200@trunk", "b-1"),
            ["hangup a1", "a1:a_ended_normal", "b1:b_ringing"]
        );
        assert_eq!(t.winner(), Some(2));

        // Or TRYLOCK drops the spare: the winner goes on.
        let mut t = track(parallel(), b(), false);
        t.sent(1, true, Instant::now());
        t.sent(2, true, Instant::now());
        respond(&mut t, 1, "Success", "4");
        t.set(2, AState::Ringing(Instant::now()));
        respond(&mut t, 2, "Success", "4");
        assert_eq!(
            on(&mut t, "Hangup", 2, &[("Cause", "16")]),
            ["a2:a_ended_normal"]
        );
        assert_eq!(begin(&mut t, 1, "200@trunk", "b-1"), ["b1:b_ringing"]);

        // The winner is dropped before B is dialled: the spare is the A.
        let mut t = track(parallel(), b(), false);
        t.sent(1, true, Instant::now());
        t.sent(2, true, Instant::now());
        respond(&mut t, 1, "Success", "4");
        t.set(2, AState::Ringing(Instant::now()));
        respond(&mut t, 2, "Success", "4");
        assert_eq!(
            on(&mut t, "Hangup", 1, &[("Cause", "16")]),
            ["a1:a_ended_normal"]
        );
        assert_eq!(t.winner(), Some(2));
        assert!(!t.done);
    }

    #[test]
    fn a_lost_connection_ends_the_leg_the_call_was_at() {
        let mut t = track(
            side(Strategy::Sequential, &[("100", 0)]),
            side(Strategy::Sequential, &[("200", 0)]),
            false,
        );
        t.sent(1, true, Instant::now());
        respond(&mut t, 1, "Success", "4");
        on(&mut t, "DialBegin", 1, &[("DialString", "200@trunk")]);
        let lost = t.lost();
        assert_eq!(said(lost), ["b1:b_ended_failed (last)"]);
        assert!(t.lost().is_empty());

        // A bridged call goes on in Asterisk: it is still followed.
        let mut t = track(
            side(Strategy::Sequential, &[("100", 0)]),
            side(Strategy::Sequential, &[("200", 0)]),
            false,
        );
        t.sent(1, true, Instant::now());
        begin(&mut t, 1, "200@trunk", "b-1");
        end(&mut t, 1, "ANSWER", "b-1");
        assert!(t.lost().is_empty());
        assert!(!t.done);
        assert_eq!(
            on(&mut t, "Hangup", 1, &[("Cause", "16")]),
            ["a1:a_ended_normal (last)"]
        );
    }
}
