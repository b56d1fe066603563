//! The Asterisk Manager Interface: one long-lived manager connection per
//! provider (see `shared/protocols/asterisk-ami.md` for what a real Asterisk 22
//! does).
//!
//! [`Manager`] owns the connection in a task of its own: it connects, reads the
//! banner, logs in with an event mask that keeps call and CDR events, pings to
//! keep the connection honest, and reconnects with backoff when it is lost (a
//! refused login waits longer: never hammer a PBX). Actions get a unique
//! ActionID and their reply; events go to every subscriber. When the connection
//! drops, every action waiting for a reply fails, and subscribers are told.

pub mod call;
pub mod cdr;
pub mod codec;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use codec::Decoder;
pub use codec::Message;

use crate::core::Secret;

/// The event mask c2cd logs in with: the call and CDR events it follows calls
/// by, none of the dialplan noise.
pub const EVENT_MASK: &str = "call,cdr";
/// Actions waiting for their reply at most.
const MAX_PENDING: usize = 1024;
/// Events buffered for each subscriber.
const EVENT_BUFFER: usize = 4096;

/// How to reach and log in to one Asterisk.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `host:port`.
    pub address: String,
    pub username: String,
    pub secret: Secret,
    /// The time a connect, the banner, the login or a reply may take.
    pub timeout: Duration,
    /// How often an idle connection is pinged.
    pub ping_every: Duration,
    /// The first wait before reconnecting; it doubles up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmiError {
    #[error("not connected to the manager: {0}")]
    Down(String),
    #[error("the connection was lost before the reply")]
    Lost,
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    #[error("too many actions waiting for a reply")]
    Busy,
}

/// Whether the manager connection is up, and if not why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    Up,
    Down(String),
}

enum Command {
    Action(Message, oneshot::Sender<Result<Message, AmiError>>),
}

/// A handle on one manager connection; cheap to clone.
#[derive(Clone)]
pub struct Manager {
    commands: mpsc::Sender<Command>,
    link: watch::Receiver<Link>,
    events: broadcast::Sender<Message>,
    next_id: Arc<AtomicU64>,
    /// Tells ActionIDs apart across c2cd processes sharing one Asterisk.
    prefix: String,
    timeout: Duration,
    /// Unique to this connection in this process.
    id: u64,
}

/// Numbers the managers started by this process.
static MANAGERS: AtomicU64 = AtomicU64::new(1);

impl Manager {
    /// Starts the connection task. It runs until every handle is dropped.
    pub fn start(settings: Settings) -> Manager {
        let (commands, rx) = mpsc::channel(MAX_PENDING);
        let (link_tx, link) = watch::channel(Link::Down("connecting".into()));
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let timeout = settings.timeout;
        tokio::spawn(run(settings, rx, link_tx, events.clone()));
        Manager {
            commands,
            link,
            events,
            next_id: Arc::new(AtomicU64::new(1)),
            id: MANAGERS.fetch_add(1, Ordering::Relaxed),
            prefix: format!("c2cd-{}", std::process::id()),
            timeout,
        }
    }

    /// A fresh ActionID, unique to this process.
    pub fn action_id(&self) -> String {
        format!(
            "{}-{}",
            self.prefix,
            self.next_id.fetch_add(1, Ordering::Relaxed)
        )
    }

    pub fn link(&self) -> Link {
        self.link.borrow().clone()
    }

    /// This connection's number in this process: a reload that keeps the
    /// provider keeps it.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Waits until the link is in a state `f` accepts.
    pub async fn wait_link(&self, f: impl Fn(&Link) -> bool) -> Link {
        let mut rx = self.link.clone();
        let seen = match rx.wait_for(|l| f(l)).await {
            Ok(l) => l.clone(),
            Err(_) => Link::Down("stopped".into()),
        };
        seen
    }

    /// Every event from now on, and link changes through [`Manager::link`].
    pub fn subscribe(&self) -> broadcast::Receiver<Message> {
        self.events.subscribe()
    }

    /// Sends `action` (given an ActionID when it has none) and waits for its reply.
    pub async fn send(&self, mut action: Message) -> Result<Message, AmiError> {
        if let Link::Down(why) = self.link() {
            return Err(AmiError::Down(why));
        }
        if action.get("ActionID").is_none() {
            action.push("ActionID", &self.action_id());
        }
        let (tx, rx) = oneshot::channel();
        self.commands
            .try_send(Command::Action(action, tx))
            .map_err(|_| AmiError::Busy)?;
        match tokio::time::timeout(self.timeout, rx).await {
            Err(_) => Err(AmiError::Timeout(self.timeout)),
            Ok(Err(_)) => Err(AmiError::Lost),
            Ok(Ok(r)) => r,
        }
    }
}

/// The connection task: connect, log in, serve, and again after a loss.
async fn run(
    s: Settings,
    mut commands: mpsc::Receiver<Command>,
    link: watch::Sender<Link>,
    events: broadcast::Sender<Message>,
) {
    let mut wait = s.backoff;
    loop {
        let outcome = session(&s, &mut commands, &link, &events).await;
        let (why, refused) = match outcome {
            Ended::Stopped => return,
            Ended::Refused(why) => (why, true),
            Ended::Lost(why, was_up) => {
                if was_up {
                    wait = s.backoff;
                }
                (why, false)
            }
        };
        // A refused login is not retried soon: the credentials will not mend.
        let pause = if refused {
            wait.max(Duration::from_secs(30))
        } else {
            wait
        };
        let jitter = pause.mul_f64(fastrand::f64() * 0.2);
        let why = format!("{why}; reconnecting in {:?}", pause + jitter);
        log::warn!("AMI {}: {why}", s.address);
        let _ = link.send(Link::Down(why));
        // Actions sent while down fail at once (Manager::send checks the link);
        // those already queued are answered here.
        let sleep = tokio::time::sleep(pause + jitter);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => break,
                c = commands.recv() => match c {
                    None => return,
                    Some(Command::Action(_, tx)) => {
                        let _ = tx.send(Err(AmiError::Down("reconnecting".into())));
                    }
                },
            }
        }
        wait = (wait * 2).min(s.max_backoff);
    }
}

enum Ended {
    /// Every handle is gone.
    Stopped,
    /// The login was refused.
    Refused(String),
    /// The connection failed or was lost; whether it had been up.
    Lost(String, bool),
}

async fn session(
    s: &Settings,
    commands: &mut mpsc::Receiver<Command>,
    link: &watch::Sender<Link>,
    events: &broadcast::Sender<Message>,
) -> Ended {
    let connect = tokio::time::timeout(s.timeout, TcpStream::connect(&s.address)).await;
    let mut stream = match connect {
        Ok(Ok(st)) => st,
        Ok(Err(e)) => return Ended::Lost(format!("cannot connect: {e}"), false),
        Err(_) => return Ended::Lost(format!("no connection within {:?}", s.timeout), false),
    };
    let _ = stream.set_nodelay(true);
    let mut dec = Decoder::new();
    let mut buf = vec![0u8; 16 * 1024];
    let login_id = "c2cd-login".to_string();
    let login = Message::action(
        "Login",
        &[
            ("Username", &s.username),
            ("Secret", s.secret.expose()),
            ("Events", EVENT_MASK),
            ("ActionID", &login_id),
        ],
    );
    // Banner, then the login's reply.
    let deadline = tokio::time::Instant::now() + s.timeout;
    let mut sent_login = false;
    loop {
        match dec.message() {
            Err(e) => return Ended::Lost(e.to_string(), false),
            Ok(Some(m)) if m.get("ActionID") == Some(login_id.as_str()) => match m.response() {
                Some("Success") => break,
                _ => {
                    let why = m.get("Message").unwrap_or("refused").to_string();
                    return Ended::Refused(format!("login as {:?} refused: {why}", s.username));
                }
            },
            Ok(Some(_)) => continue,
            Ok(None) => {}
        }
        // The banner has been read: log in, once.
        if dec.banner().is_some() && !sent_login {
            if let Err(e) = stream.write_all(login.encode().as_bytes()).await {
                return Ended::Lost(format!("cannot log in: {e}"), false);
            }
            sent_login = true;
        }
        let read = tokio::time::timeout_at(deadline, stream.read(&mut buf)).await;
        match read {
            Err(_) => {
                return Ended::Lost(
                    format!("no banner or login reply within {:?}", s.timeout),
                    false,
                )
            }
            Ok(Ok(0)) => return Ended::Lost("closed by the manager during login".into(), false),
            Ok(Ok(n)) => dec.feed(&buf[..n]),
            Ok(Err(e)) => return Ended::Lost(format!("read failed: {e}"), false),
        }
    }
    // Up first, then said: the log line is a signal that calls can be placed.
    let _ = link.send(Link::Up);
    log::info!("AMI {}: logged in as {:?}", s.address, s.username);

    let mut pending: HashMap<String, oneshot::Sender<Result<Message, AmiError>>> = HashMap::new();
    let mut ping = tokio::time::interval(s.ping_every);
    ping.tick().await;
    let mut ping_out: Option<(String, tokio::time::Instant)> = None;
    let mut ping_n = 0u64;
    let why = 'session: loop {
        // Hand out whatever has arrived: events to subscribers, replies to
        // whoever waits for them.
        loop {
            match dec.message() {
                Err(e) => break 'session e.to_string(),
                Ok(None) => break,
                Ok(Some(m)) if m.event().is_some() => {
                    let _ = events.send(m);
                }
                Ok(Some(m)) => {
                    let Some(id) = m.get("ActionID").map(str::to_string) else {
                        continue;
                    };
                    if ping_out.as_ref().is_some_and(|(p, _)| *p == id) {
                        ping_out = None;
                    } else if let Some(tx) = pending.remove(&id) {
                        let _ = tx.send(Ok(m));
                    }
                }
            }
        }
        if let Some((_, sent)) = &ping_out {
            if sent.elapsed() > s.timeout {
                break format!("no Pong within {:?}", s.timeout);
            }
        }
        tokio::select! {
            r = stream.read(&mut buf) => match r {
                Ok(0) => break "closed by the manager".to_string(),
                Ok(n) => dec.feed(&buf[..n]),
                Err(e) => break format!("read failed: {e}"),
            },
            c = commands.recv() => match c {
                None => {
                    let _ = stream.write_all(Message::action("Logoff", &[]).encode().as_bytes()).await;
                    return Ended::Stopped;
                }
                Some(Command::Action(m, tx)) => {
                    if pending.len() >= MAX_PENDING {
                        let _ = tx.send(Err(AmiError::Busy));
                        continue;
                    }
                    if let Err(e) = stream.write_all(m.encode().as_bytes()).await {
                        let _ = tx.send(Err(AmiError::Lost));
                        break format!("write failed: {e}");
                    }
                    if let Some(id) = m.get("ActionID") {
                        pending.insert(id.to_string(), tx);
                    }
                }
            },
            _ = ping.tick() => {
                // Actions whose sender gave up waiting are forgotten.
                pending.retain(|_, tx| !tx.is_closed());
                if ping_out.is_none() {
                    ping_n += 1;
                    let id = format!("c2cd-ping-{ping_n}");
                    let p = Message::action("Ping", &[("ActionID", &id)]);
                    if let Err(e) = stream.write_all(p.encode().as_bytes()).await {
                        break format!("write failed: {e}");
                    }
                    ping_out = Some((id, tokio::time::Instant::now()));
                }
            }
        }
    };
    // Nothing waits for a reply that cannot come.
    for (_, tx) in pending.drain() {
        let _ = tx.send(Err(AmiError::Lost));
    }
    Ended::Lost(why, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use tokio::net::TcpListener;

    fn settings(address: String) -> Settings {
        Settings {
            address,
            username: "c2c".into(),
            secret: Secret::new("c2c-secret"),
            timeout: Duration::from_millis(500),
            ping_every: Duration::from_millis(100),
            backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
        }
    }

    /// One side of a scripted Asterisk connection.
    struct Peer {
        stream: TcpStream,
        dec: Decoder,
    }

    impl Peer {
        async fn read(&mut self) -> Option<Message> {
            let mut buf = [0u8; 4096];
            loop {
                if let Some(m) = self.dec.message().unwrap() {
                    return Some(m);
                }
                match self.stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => self.dec.feed(&buf[..n]),
                }
            }
        }

        async fn send(&mut self, text: &str) {
            let _ = self
                .stream
                .write_all(text.replace('\n', "\r\n").as_bytes())
                .await;
        }

        /// The banner, then the login's reply, as Asterisk 22 sends them.
        async fn login(&mut self, accept: bool) -> Message {
            self.send("Asterisk Call Manager/11.0.0\n").await;
            let login = self.read().await.expect("a login");
            let id = login.get("ActionID").unwrap_or_default().to_string();
            match accept {
                true => {
                    self.send(&format!(
                        "Response: Success\nActionID: {id}\nMessage: Authentication accepted\n\n"
                    ))
                    .await
                }
                false => {
                    self.send(&format!(
                        "Response: Error\nActionID: {id}\nMessage: Authentication failed\n\n"
                    ))
                    .await
                }
            }
            login
        }
    }

    /// A scripted Asterisk: each connection runs `script` with its number.
    async fn asterisk<F, Fut>(script: F) -> (String, Arc<AtomicUsize>)
    where
        F: Fn(Peer, usize) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let count = Arc::new(AtomicUsize::new(0));
        let c = count.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = l.accept().await {
                let n = c.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(script(
                    Peer {
                        stream,
                        dec: Decoder::for_server(),
                    },
                    n,
                ));
            }
        });
        (addr, count)
    }

    #[tokio::test]
    async fn logs_in_with_the_event_mask_and_routes_replies_and_events() {
        let (pings_tx, mut pings) = watch::channel(0u32);
        let pings_tx = Arc::new(pings_tx);
        let (addr, _) = asterisk(move |mut p, _| {
            let pings_tx = pings_tx.clone();
            async move {
            let login = p.login(true).await;
            assert_eq!(login.get("Events"), Some(EVENT_MASK));
            assert_eq!(login.get("Secret"), Some("c2c-secret"));
            while let Some(m) = p.read().await {
                let id = m.get("ActionID").unwrap_or_default().to_string();
                match m.get("Action") {
                    Some("Originate") => {
                        // An event carrying Response: first, then the reply.
                        p.send(&format!("Event: OriginateResponse\nPrivilege: call,all\nActionID: {id}\nResponse: Failure\nReason: 5\nUniqueid: c2c-1\n\n")).await;
                        p.send(&format!("Response: Success\nActionID: {id}\nMessage: Originate successfully queued\n\n")).await;
                    }
                    Some("Ping") => {
                        p.send(&format!("Response: Success\nActionID: {id}\nPing: Pong\nTimestamp: 1.0\n\n")).await;
                        pings_tx.send_modify(|n| *n += 1);
                    }
                    _ => {}
                }
            }
            }
        })
        .await;
        let m = Manager::start(settings(addr));
        assert_eq!(m.wait_link(|l| *l == Link::Up).await, Link::Up);
        let mut events = m.subscribe();
        let reply = m
            .send(Message::action(
                "Originate",
                &[("Channel", "Local/101@c2c-test")],
            ))
            .await
            .unwrap();
        assert_eq!(reply.get("Message"), Some("Originate successfully queued"));
        let e = events.recv().await.unwrap();
        assert_eq!(
            (e.event(), e.get("Reason")),
            (Some("OriginateResponse"), Some("5"))
        );
        // Pings keep the link up well past the reply timeout (500 ms: six
        // pings 100 ms apart).
        pings.wait_for(|n| *n >= 6).await.unwrap();
        assert_eq!(m.link(), Link::Up);
    }

    #[tokio::test]
    async fn a_refused_login_is_not_retried_at_once() {
        let (addr, count) = asterisk(|mut p, _| async move {
            p.login(false).await;
        })
        .await;
        let m = Manager::start(settings(addr));
        let l = m
            .wait_link(|l| matches!(l, Link::Down(w) if w.contains("refused")))
            .await;
        assert!(
            matches!(&l, Link::Down(w) if w.contains("Authentication failed")),
            "{l:?}"
        );
        // The next attempt is half a minute away at least.
        let Link::Down(why) = &l else { panic!("{l:?}") };
        let secs: f64 = why
            .rsplit_once("reconnecting in ")
            .map(|(_, d)| d)
            .and_then(|d| d.strip_suffix('s'))
            .and_then(|d| d.parse().ok())
            .unwrap_or_else(|| panic!("{l:?}"));
        assert!((30.0..=36.0).contains(&secs), "{l:?}");
        assert_eq!(count.load(Ordering::SeqCst), 1);
        assert!(matches!(
            m.send(Message::action("Ping", &[])).await,
            Err(AmiError::Down(_))
        ));
    }

    #[tokio::test]
    async fn a_lost_connection_fails_what_waits_and_comes_back() {
        let (addr, count) = asterisk(|mut p, n| async move {
            p.login(true).await;
            while let Some(m) = p.read().await {
                let id = m.get("ActionID").unwrap_or_default().to_string();
                match (n, m.get("Action")) {
                    // The first connection dies with an originate unanswered.
                    (0, Some("Originate")) => return,
                    (_, Some("Ping")) => {
                        p.send(&format!(
                            "Response: Success\nActionID: {id}\nPing: Pong\n\n"
                        ))
                        .await
                    }
                    _ => {}
                }
            }
        })
        .await;
        let m = Manager::start(settings(addr));
        m.wait_link(|l| *l == Link::Up).await;
        let r = m
            .send(Message::action(
                "Originate",
                &[("Channel", "Local/100@c2c-test")],
            ))
            .await;
        assert_eq!(r, Err(AmiError::Lost));
        m.wait_link(|l| *l == Link::Up).await;
        assert_eq!(count.load(Ordering::SeqCst), 2);
        assert!(m.send(Message::action("Ping", &[])).await.is_ok());
    }

    #[tokio::test]
    async fn a_manager_that_stops_answering_pings_is_dropped() {
        let (addr, count) = asterisk(|mut p, _| async move {
            p.login(true).await;
            // Reads and never answers.
            while p.read().await.is_some() {}
        })
        .await;
        let m = Manager::start(settings(addr));
        m.wait_link(|l| *l == Link::Up).await;
        let l = m
            .wait_link(|l| matches!(l, Link::Down(w) if w.contains("Pong")))
            .await;
        assert!(matches!(l, Link::Down(_)));
        m.wait_link(|l| *l == Link::Up).await;
        assert!(count.load(Ordering::SeqCst) >= 2);
    }
}
