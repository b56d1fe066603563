//! Logging to stderr (the journal under systemd) or to syslog, as the config says.
//! Under systemd (`JOURNAL_STREAM` set) stderr lines carry `<N>` priority prefixes
//! so the journal keeps the levels; otherwise they carry a UTC timestamp.

use std::io::Write;

use log::{Level, Log, Metadata, Record};

use crate::config::LogTarget;

struct Stderr {
    journal: bool,
}

impl Log for Stderr {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let line = if self.journal {
            let prio = match r.level() {
                Level::Error => 3,
                Level::Warn => 4,
                Level::Info => 6,
                Level::Debug | Level::Trace => 7,
            };
            format!("<{prio}>{}\n", r.args())
        } else {
            format!(
                "{:.3} {:5} {}\n",
                jiff::Timestamp::now(),
                r.level(),
                r.args()
            )
        };
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// Installs the logger once per process. A second call only changes the level.
pub fn init(cfg: &crate::config::Log) {
    let (target, level) = (cfg.target, cfg.level);
    log::set_max_level(level);
    let installed = match target {
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
                Ok(logger) => {
                    log::set_boxed_logger(Box::new(syslog::BasicLogger::new(logger))).is_ok()
                }
                Err(e) => {
                    let ok = log::set_boxed_logger(Box::new(Stderr { journal: journal() })).is_ok();
                    log::warn!("syslog is not reachable ({e}); logging to stderr");
                    ok
                }
            }
        }
        LogTarget::Stderr => log::set_boxed_logger(Box::new(Stderr { journal: journal() })).is_ok(),
    };
    let _ = installed;
}

fn journal() -> bool {
    std::env::var_os("JOURNAL_STREAM").is_some()
}
