//! Entry points for the fuzz targets in `fuzz/`: each feeds raw bytes to the
//! parsers that one wire format reaches, as the daemon would, without a
//! database or a socket. Not an API: the targets and the regression tests of
//! what they found use it, nothing else.
//!
//! Each entry must return, whatever the bytes: a panic, an overflow or a hang
//! is a finding (README of `fuzz/`).

use std::sync::OnceLock;

use crate::config::{self, Config, Source};

/// The embedded demo config: a partner for each dialect.
fn demo() -> &'static Config {
    static DEMO: OnceLock<Config> = OnceLock::new();
    DEMO.get_or_init(|| match config::parse(config::EMBEDDED, Source::Embedded) {
        Ok(c) => c,
        Err(e) => panic!("the embedded config is invalid: {e}"),
    })
}

fn partner(id: &str) -> &'static config::Partner {
    match demo().partner(id) {
        Some(p) => p,
        None => panic!("the demo config has no partner {id:?}"),
    }
}

/// Splits `data` at its first NUL: a query string and a body.
fn halves(data: &[u8]) -> (String, &[u8]) {
    match data.iter().position(|b| *b == 0) {
        Some(i) => (
            String::from_utf8_lossy(&data[..i]).into_owned(),
            &data[i + 1..],
        ),
        None => (String::from_utf8_lossy(data).into_owned(), &[][..]),
    }
}

/// XIP: the query string and the form body (split at a NUL), then the
/// numbers as `handle` checks them.
pub fn xip(data: &[u8]) {
    let (query, form) = halves(data);
    if let Ok(p) = crate::dialect::xip::parse_params(&query, form) {
        let _ = crate::dialect::xip::number("Requestor", &p.requestor);
        let _ = crate::dialect::xip::number("Fulfillment", &p.fulfillment);
    }
}

/// Spokn: `POST /c2c/1.0/call`'s form, read and checked as for a partner.
pub fn spokn(data: &[u8]) {
    crate::dialect::spokn::fuzz_body(data, partner("acme"), demo());
}

/// Airtel: `POST /v2/execute/workflow`'s JSON, validated as for a partner.
pub fn airtel(data: &[u8]) {
    crate::dialect::airtel::fuzz_body(data, partner("airtel"), demo());
}

/// The native API: `POST /v1/calls`'s JSON, validated as for a partner.
pub fn native(data: &[u8]) {
    crate::dialect::native::fuzz_body(data, partner("crm"), demo());
}

/// RoundTrip: a submission's XML.
pub fn roundtrip(data: &[u8]) {
    let _ = crate::dialect::roundtrip::parse(data);
}

/// Cloud9: the variables (a query string or a form body).
pub fn cloud9(data: &[u8]) {
    let vars: Vec<(String, String)> = form_urlencoded::parse(data).into_owned().collect();
    let _ = crate::dialect::cloud9::parse(&vars);
}

/// AMI: the byte stream from Asterisk, fed in the pieces the first byte
/// says, every message read as the provider reads them.
pub fn ami(data: &[u8]) {
    use crate::provider::ami::codec::Decoder;
    let Some((&step, rest)) = data.split_first() else {
        return;
    };
    let step = usize::from(step).max(1);
    let mut d = Decoder::new();
    for chunk in rest.chunks(step) {
        d.feed(chunk);
        loop {
            match d.message() {
                Ok(Some(m)) => {
                    let _ = m.get("Event");
                    let _ = m.get("Response");
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
}

/// Bodies upstream servers send c2cd: a Spokn answer (XML) and leg report
/// (form), an Airtel answer, event or CDR (JSON). The first byte says which.
pub fn upstream(data: &[u8]) {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => {
            let answer = crate::provider::spokn::answer(body);
            let _ = crate::provider::spokn::outcome(200, answer);
        }
        1 => {
            let form: std::collections::HashMap<String, String> =
                form_urlencoded::parse(body).into_owned().collect();
            let leg = form.get("leg").map(String::as_str).unwrap_or("");
            let status = form.get("status").map(String::as_str).unwrap_or("");
            let _ = crate::provider::spokn::report_events(
                leg,
                status,
                Some("+16045551234".into()),
                Some("+16045550000".into()),
            );
        }
        _ => {
            let _ = crate::provider::airtel::outcome(200, body);
            crate::provider::airtel::fuzz_callback(body);
        }
    }
}

/// The config file.
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = config::parse_all(text, Source::Embedded);
    }
}

#[cfg(test)]
mod tests {
    /// Every seed of `fuzz/corpus/` and every input kept in `fuzz/regressions/`
    /// (what a fuzzing run found, once fixed) goes through its target in every
    /// test run.
    #[test]
    fn every_kept_input_goes_through_its_target() {
        type Target = fn(&[u8]);
        let targets: [(&str, Target); 9] = [
            ("xip", super::xip),
            ("spokn", super::spokn),
            ("airtel", super::airtel),
            ("native", super::native),
            ("roundtrip", super::roundtrip),
            ("cloud9", super::cloud9),
            ("ami", super::ami),
            ("upstream", super::upstream),
            ("config", super::config),
        ];
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        let mut ran = 0;
        for (name, target) in targets {
            let mut seeds = 0;
            for dir in ["corpus", "regressions"] {
                let Ok(entries) = std::fs::read_dir(root.join(dir).join(name)) else {
                    continue;
                };
                for e in entries {
                    let path = e.unwrap().path();
                    let data = std::fs::read(&path).unwrap();
                    target(&data);
                    seeds += 1;
                }
            }
            assert!(seeds > 0, "no seed for the {name} target");
            ran += seeds;
        }
        assert!(ran >= 9);
    }
}
