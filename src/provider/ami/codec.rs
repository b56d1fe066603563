//! AMI framing: after a one-line banner, messages of `Key: Value` lines ending
//! in CRLF, each message ended by an empty line. Keys may repeat (`Variable:`),
//! values may be empty. Bounded: a peer cannot make c2cd buffer without limit.

use std::fmt::Write;

/// The longest message accepted, in bytes.
pub const MAX_MESSAGE: usize = 64 * 1024;
/// The longest banner line accepted.
const MAX_BANNER: usize = 256;

/// One AMI message: its fields in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    pub fields: Vec<(String, String)>,
}

impl Message {
    /// An action: `Action: name` first, then `fields`.
    pub fn action(name: &str, fields: &[(&str, &str)]) -> Message {
        let mut m = Message::default();
        m.push("Action", name);
        for (k, v) in fields {
            m.push(k, v);
        }
        m
    }

    pub fn push(&mut self, key: &str, value: &str) {
        self.fields.push((key.to_string(), value.to_string()));
    }

    /// The first value of `key` (keys compare case-insensitively).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    /// An event, whatever else it carries: `OriginateResponse` has both `Event:`
    /// and `Response:`, and is an event.
    pub fn event(&self) -> Option<&str> {
        self.get("Event")
    }

    /// A reply to an action (not an event).
    pub fn response(&self) -> Option<&str> {
        match self.event() {
            Some(_) => None,
            None => self.get("Response"),
        }
    }

    /// The wire form. Values are put on one line: CR and LF in them become
    /// spaces, so a value can never start a field or end the message.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        for (k, v) in &self.fields {
            let clean = |s: &str| s.replace(['\r', '\n'], " ");
            let _ = write!(out, "{}: {}\r\n", clean(k), clean(v));
        }
        out.push_str("\r\n");
        out
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("the peer sent a message over {MAX_MESSAGE} bytes")]
    TooLarge,
    #[error("the peer sent no AMI banner: {0:?}")]
    Banner(String),
}

/// Splits the byte stream from the server into the banner and messages.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    banner: Option<String>,
    /// How much of `buf` is known to hold no message end: the next search
    /// starts there (less the end's length), so a message that arrives a few
    /// bytes at a time is searched once, not once per arrival (fuzz/: the
    /// `ami` target ran 1,391 inputs a minute before).
    scanned: usize,
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// A decoder for what a client sends (no banner): the server side, as a
    /// test's scripted Asterisk reads c2cd's actions.
    pub fn for_server() -> Decoder {
        Decoder {
            buf: Vec::new(),
            banner: Some(String::new()),
            scanned: 0,
        }
    }

    /// The banner (`Asterisk Call Manager/11.0.0`), once read.
    pub fn banner(&self) -> Option<&str> {
        self.banner.as_deref()
    }

    /// Takes bytes read from the socket.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete message, if one has arrived.
    pub fn message(&mut self) -> Result<Option<Message>, CodecError> {
        if self.banner.is_none() {
            let Some(end) = find(&self.buf, b"\n") else {
                if self.buf.len() > MAX_BANNER {
                    return Err(CodecError::Banner(lossy(&self.buf[..MAX_BANNER])));
                }
                return Ok(None);
            };
            let line = lossy(&self.buf[..end]).trim_end_matches('\r').to_string();
            self.buf.drain(..=end);
            self.scanned = 0;
            if !line.contains("Call Manager") {
                return Err(CodecError::Banner(line));
            }
            self.banner = Some(line);
        }
        // Stray blank lines between messages are skipped.
        while self.buf.starts_with(b"\r\n") || self.buf.starts_with(b"\n") {
            let n = if self.buf[0] == b'\r' { 2 } else { 1 };
            self.buf.drain(..n);
            self.scanned = 0;
        }
        // A message end across the last search's edge is found again.
        let from = self.scanned.saturating_sub(3);
        let found = |needle: &[u8]| find(&self.buf[from..], needle).map(|i| i + from);
        let end = match (found(b"\r\n\r\n"), found(b"\n\n")) {
            (Some(a), Some(b)) if b + 2 <= a + 4 => Some((b, 2)),
            (Some(a), _) => Some((a, 4)),
            (None, Some(b)) => Some((b, 2)),
            (None, None) => None,
        };
        let Some((at, sep)) = end else {
            if self.buf.len() > MAX_MESSAGE {
                return Err(CodecError::TooLarge);
            }
            self.scanned = self.buf.len();
            return Ok(None);
        };
        if at > MAX_MESSAGE {
            return Err(CodecError::TooLarge);
        }
        let text = lossy(&self.buf[..at]);
        self.buf.drain(..at + sep);
        self.scanned = 0;
        let mut m = Message::default();
        for line in text.split('\n') {
            let line = line.trim_end_matches('\r');
            if line.is_empty() {
                continue;
            }
            match line.split_once(':') {
                Some((k, v)) => m.push(k.trim(), v.strip_prefix(' ').unwrap_or(v)),
                // Free text some commands answer with: kept under an empty key.
                None => m.push("", line),
            }
        }
        Ok(Some(m))
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A long message that arrives a byte at a time, its end split across
    /// arrivals either way (`\r\n\r\n` and `\n\n`), is read whole, once.
    #[test]
    fn a_message_arriving_byte_by_byte_is_read_once() {
        for end in ["\r\n\r\n", "\n\n"] {
            let mut d = Decoder::for_server();
            let value = "x".repeat(MAX_MESSAGE / 2);
            let text = format!("Action: Ping\r\nLong: {value}{end}Action: Logoff{end}");
            let mut got = Vec::new();
            for b in text.as_bytes() {
                d.feed(std::slice::from_ref(b));
                while let Some(m) = d.message().unwrap() {
                    got.push(m);
                }
            }
            assert_eq!(got.len(), 2, "{end:?}");
            assert_eq!(got[0].get("Long"), Some(value.as_str()));
            assert_eq!(got[1].get("Action"), Some("Logoff"));
        }
    }

    /// Section 0a of the transcript: banner, then a failed login.
    #[test]
    fn banner_then_messages_split_anywhere() {
        let wire = b"Asterisk Call Manager/11.0.0\r\nResponse: Error\r\nActionID: login-1\r\nMessage: Authentication failed\r\n\r\nEvent: FullyBooted\r\nPrivilege: system,all\r\nUptime: 12\r\n\r\n";
        // Fed a byte at a time, as a slow socket might deliver it.
        let mut d = Decoder::new();
        let mut got = Vec::new();
        for b in wire {
            d.feed(&[*b]);
            while let Some(m) = d.message().unwrap() {
                got.push(m);
            }
        }
        assert_eq!(d.banner(), Some("Asterisk Call Manager/11.0.0"));
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].response(), Some("Error"));
        assert_eq!(got[0].get("actionid"), Some("login-1"));
        assert_eq!(got[0].get("Message"), Some("Authentication failed"));
        assert_eq!(got[1].event(), Some("FullyBooted"));
    }

    #[test]
    fn an_originate_response_is_an_event_and_fields_may_repeat_or_be_empty() {
        let mut d = Decoder::new();
        d.feed(b"Asterisk Call Manager/11.0.0\r\nEvent: OriginateResponse\r\nPrivilege: call,all\r\nActionID: abc\r\nResponse: Failure\r\nChannel: Local/101@c2c-test\r\nReason: 5\r\nUniqueid: c2c-abc-1\r\nAccountCode: \r\n\r\n");
        let m = d.message().unwrap().unwrap();
        assert_eq!(m.event(), Some("OriginateResponse"));
        assert_eq!(m.response(), None, "an event, though it has Response:");
        assert_eq!(m.get("Response"), Some("Failure"));
        assert_eq!(m.get("AccountCode"), Some(""));
        let a = Message::action("Originate", &[("Variable", "A=1"), ("Variable", "B=2")]);
        assert_eq!(
            a.encode(),
            "Action: Originate\r\nVariable: A=1\r\nVariable: B=2\r\n\r\n"
        );
    }

    #[test]
    fn values_cannot_inject_fields_and_peers_cannot_flood() {
        let a = Message::action("Ping", &[("ActionID", "x\r\nAction: Logoff")]);
        assert_eq!(
            a.encode(),
            "Action: Ping\r\nActionID: x  Action: Logoff\r\n\r\n"
        );
        let mut d = Decoder::new();
        d.feed(b"Asterisk Call Manager/11.0.0\r\n");
        d.feed(&vec![b'x'; MAX_MESSAGE + 10]);
        assert_eq!(d.message(), Err(CodecError::TooLarge));
        let mut d = Decoder::new();
        d.feed(b"SSH-2.0-OpenSSH_9.6\r\n");
        assert!(matches!(d.message(), Err(CodecError::Banner(_))));
    }
}
