//! Logging to stderr (the journal under systemd) or to syslog, as the config says.
//!
//! Callers never block on the log: a line is queued (bounded) to a thread that
//! writes it, so a stalled journal or syslog cannot stall the request path. When
//! the queue is full, lines are dropped and counted, and the count is logged once
//! the sink catches up. Under systemd (`JOURNAL_STREAM` set) stderr lines carry
//! `<N>` priority prefixes so the journal keeps the levels; otherwise a UTC
//! timestamp.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::OnceLock;
use std::time::Duration;

use log::{Level, Log, Metadata, Record};

use crate::config::LogTarget;

/// Lines waiting for the sink at most.
const QUEUE: usize = 8192;

enum Msg {
    Line {
        level: Level,
        at: jiff::Timestamp,
        text: String,
    },
    Flush(SyncSender<()>),
}

struct Queued {
    tx: SyncSender<Msg>,
    dropped: &'static AtomicU64,
}

static DROPPED: AtomicU64 = AtomicU64::new(0);
static QUEUE_TX: OnceLock<SyncSender<Msg>> = OnceLock::new();

impl Log for Queued {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let msg = Msg::Line {
            level: r.level(),
            at: jiff::Timestamp::now(),
            text: r.args().to_string(),
        };
        if let Err(TrySendError::Full(_)) = self.tx.try_send(msg) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn flush(&self) {}
}

enum Sink {
    Stderr { journal: bool },
    Syslog(syslog::Logger<syslog::LoggerBackend, syslog::Formatter3164>),
}

impl Sink {
    fn write(&mut self, level: Level, at: jiff::Timestamp, text: &str) {
        match self {
            Sink::Stderr { journal } => {
                let line = if *journal {
                    format!("<{}>{text}\n", priority(level))
                } else {
                    format!("{at:.3} {level:5} {text}\n")
                };
                let _ = std::io::stderr().lock().write_all(line.as_bytes());
            }
            Sink::Syslog(l) => {
                let _ = match level {
                    Level::Error => l.err(text),
                    Level::Warn => l.warning(text),
                    Level::Info => l.info(text),
                    Level::Debug | Level::Trace => l.debug(text),
                };
            }
        }
    }
}

fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

fn run(mut sink: Sink, rx: Receiver<Msg>) {
    for msg in rx {
        let dropped = DROPPED.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let text = format!("{dropped} log lines dropped: the log sink was too slow");
            sink.write(Level::Warn, jiff::Timestamp::now(), &text);
        }
        match msg {
            Msg::Line { level, at, text } => sink.write(level, at, &text),
            Msg::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}

/// Installs the logger once per process.
pub fn init(cfg: &crate::config::Log) {
    log::set_max_level(cfg.level);
    let mut fallback = None;
    let sink = match cfg.target {
        LogTarget::Stderr => Sink::Stderr { journal: journal() },
        LogTarget::Syslog => {
            let fmt = syslog::Formatter3164 {
                facility: syslog::Facility::LOG_DAEMON,
                hostname: None,
                process: "c2cd".into(),
                pid: std::process::id(),
            };
            let logger = match &cfg.syslog_socket {
                Some(path) => syslog::unix_custom(fmt, path),
                None => syslog::unix(fmt),
            };
            match logger {
                Ok(l) => Sink::Syslog(l),
                Err(e) => {
                    fallback = Some(e.to_string());
                    Sink::Stderr { journal: journal() }
                }
            }
        }
    };
    let (tx, rx) = mpsc::sync_channel(QUEUE);
    let spawned = std::thread::Builder::new()
        .name("c2cd-log".into())
        .spawn(move || run(sink, rx));
    if spawned.is_err() {
        return;
    }
    let _ = QUEUE_TX.set(tx.clone());
    if log::set_boxed_logger(Box::new(Queued {
        tx,
        dropped: &DROPPED,
    }))
    .is_ok()
    {
        if let Some(e) = fallback {
            log::warn!("syslog is not reachable ({e}); logging to stderr");
        }
    }
}

/// Waits (briefly) until every line logged so far is written: call before exit.
pub fn flush() {
    let Some(tx) = QUEUE_TX.get() else { return };
    let (done, wait) = mpsc::sync_channel(1);
    if tx.send(Msg::Flush(done)).is_ok() {
        let _ = wait.recv_timeout(Duration::from_secs(2));
    }
}

fn journal() -> bool {
    std::env::var_os("JOURNAL_STREAM").is_some()
}
