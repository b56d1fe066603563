//! The AMI provider against a scripted Asterisk on loopback that answers as the
//! real Asterisk 22 of `shared/protocols` did: banner, login, Originate queued,
//! then OriginateResponse and the channel events, in the orders the transcript
//! shows (the verdict on A before or after its Hangup).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};

use crate::common::*;

/// One AMI message: its fields in order.
type Fields = Vec<(String, String)>;
/// The actions a scripted Asterisk was sent, and a signal for each new one.
type Seen = Arc<(Mutex<Vec<Fields>>, Condvar)>;

/// A scripted Asterisk manager.
struct Asterisk {
    addr: String,
    actions: Seen,
}

fn read_message(r: &mut BufReader<TcpStream>) -> Option<Fields> {
    let mut fields = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            if fields.is_empty() {
                continue;
            }
            return Some(fields);
        }
        let (k, v) = line.split_once(": ").unwrap_or((line, ""));
        fields.push((k.to_string(), v.to_string()));
    }
}

fn get<'a>(m: &'a [(String, String)], k: &str) -> &'a str {
    m.iter()
        .find(|(n, _)| n == k)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

fn send(w: &mut TcpStream, text: &str) {
    let _ = w.write_all(text.replace('\n', "\r\n").as_bytes());
}

impl Asterisk {
    fn start() -> Asterisk {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let actions: Seen = Arc::default();
        let seen = actions.clone();
        std::thread::spawn(move || {
            for stream in l.incoming() {
                let Ok(stream) = stream else { return };
                let seen = seen.clone();
                std::thread::spawn(move || serve(stream, seen));
            }
        });
        Asterisk { addr, actions }
    }

    /// Waits for an action named `name` whose `key` is `value`.
    fn wait_action(&self, name: &str, key: &str, value: &str) -> Fields {
        let (lock, cv) = &*self.actions;
        let guard = lock.lock().unwrap();
        let (guard, _) = cv
            .wait_timeout_while(guard, WAIT, |a| {
                !a.iter()
                    .any(|m| get(m, "Action") == name && get(m, key).contains(value))
            })
            .unwrap();
        guard
            .iter()
            .find(|m| get(m, "Action") == name && get(m, key).contains(value))
            .unwrap_or_else(|| panic!("no {name} with {key} {value}: {:?}", *guard))
            .clone()
    }
}

/// One manager session: the transcript's answers, chosen by leg A's number
/// (the dialplan of shared/protocols: 100 answers, 101 busy, 102 rings) and B's.
fn serve(stream: TcpStream, seen: Seen) {
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    send(&mut w, "Asterisk Call Manager/11.0.0\n");
    while let Some(m) = read_message(&mut r) {
        {
            let (lock, cv) = &*seen;
            lock.lock().unwrap().push(m.clone());
            cv.notify_all();
        }
        let id = get(&m, "ActionID").to_string();
        match get(&m, "Action") {
            "Login" => send(
                &mut w,
                &format!("Response: Success\nActionID: {id}\nMessage: Authentication accepted\n\n"),
            ),
            "Ping" => send(
                &mut w,
                &format!("Response: Success\nActionID: {id}\nPing: Pong\nTimestamp: 1.0\n\n"),
            ),
            "Hangup" => {
                let ch = get(&m, "Channel").to_string();
                send(
                    &mut w,
                    &format!("Response: Success\nActionID: {id}\nMessage: Channel Hungup\n\n"),
                );
                // Section 16: the ringing originate then fails with Reason 0.
                send(&mut w, &format!("Event: Hangup\nPrivilege: call,all\nUniqueid: {ch}\nLinkedid: {ch}\nCause: 16\nCause-txt: Normal Clearing\n\n"));
            }
            "Originate" => {
                let chan = get(&m, "ChannelId").to_string();
                let a = get(&m, "Channel").to_string();
                let b = get(&m, "Exten").to_string();
                if a.contains("/999@") {
                    // Section 2: refused at once, no event follows.
                    send(&mut w, &format!("Response: Error\nActionID: {id}\nMessage: Extension does not exist.\n\n"));
                    continue;
                }
                send(&mut w, &format!("Response: Success\nActionID: {id}\nMessage: Originate successfully queued\n\n"));
                if a.contains("/106@") {
                    // The manager goes away mid-call.
                    return;
                }
                let ev = |name: &str, rest: &str| {
                    format!("Event: {name}\nPrivilege: call,all\nUniqueid: {chan}\nLinkedid: {chan}\n{rest}\n")
                };
                let verdict = |response: &str, reason: &str| {
                    format!("Event: OriginateResponse\nPrivilege: call,all\nActionID: {id}\nResponse: {response}\nChannel: {a}\nContext: c2c-test\nExten: {b}\nReason: {reason}\nUniqueid: {chan}\nCallerIDNum: <unknown>\n\n")
                };
                let mut script = vec![ev(
                    "Newchannel",
                    "Channel: Local/x@c2c-test-00000001;1\nChannelState: 0\n",
                )];
                if a.contains("/101@") {
                    // Section 5: the Hangup and Cdr come before the verdict.
                    script.push(ev("Hangup", "Cause: 17\nCause-txt: User busy\n"));
                    script.push(verdict("Failure", "5"));
                } else if a.contains("/103@") {
                    // Section 7: congestion.
                    script.push(ev(
                        "Hangup",
                        "Cause: 34\nCause-txt: Circuit/channel congestion\n",
                    ));
                    script.push(verdict("Failure", "8"));
                } else if a.contains("/104@") {
                    // Section 8: rejected before answer, Reason 0.
                    script.push(verdict("Failure", "0"));
                    script.push(ev("Hangup", "Cause: 21\nCause-txt: Call Rejected\n"));
                } else if a.contains("/105@") {
                    // Section 6: no answer within Timeout.
                    script.push(ev(
                        "Hangup",
                        "Cause: 19\nCause-txt: User alerting, no answer\n",
                    ));
                    script.push(verdict("Failure", "3"));
                } else if a.contains("/100@") {
                    script.push(verdict("Success", "4"));
                    script.push(ev(
                        "DialBegin",
                        "DestChannel: Local/y@c2c-test;1\nDialString: y\n",
                    ));
                    let status = if b == "101" { "BUSY" } else { "ANSWER" };
                    script.push(ev(
                        "DialEnd",
                        &format!("DestChannel: Local/y@c2c-test;1\nDialStatus: {status}\n"),
                    ));
                    script.push(ev("Hangup", "Cause: 16\nCause-txt: Normal Clearing\n"));
                }
                // 102 rings until hung up.
                for e in script {
                    send(&mut w, &e);
                }
            }
            _ => send(
                &mut w,
                &format!("Response: Error\nActionID: {id}\nMessage: Invalid/unknown command\n\n"),
            ),
        }
    }
}

fn config(ami: &str) -> String {
    base_config(&format!(
        r#"
[[partner]]
id = "crm"
dialects = ["native"]
username = "crm"
password = "crm-password-0123456789"
provider = "pbx"

[[provider]]
name = "pbx"
kind = "ami"
address = "{ami}"
username = "c2c"
secret = "c2c-secret"
channel = "Local/{{number}}@c2c-test"
context = "c2c-test"
variables = ["C2C_SITE=test"]
"#
    ))
}

fn place(d: &Daemon, a: &str, b: &str) -> Response {
    use base64::Engine;
    let body = serde_json::json!({
        "a": {"participants": [{"number": a, "retries": 0}]},
        "b": {"participants": [{"number": b}]},
        "time_limit": 600,
    })
    .to_string();
    let auth = base64::engine::general_purpose::STANDARD.encode("crm:crm-password-0123456789");
    request(
        d.addr,
        &format!(
            "POST /v1/calls HTTP/1.1\r\nHost: c2cd\r\nAuthorization: Basic {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

#[test]
fn calls_on_asterisk_end_as_the_manager_reports() {
    let pbx = Asterisk::start();
    let mut d = Daemon::start(&config(&pbx.addr));
    d.wait_log("logged in as");
    let login = pbx.wait_action("Login", "Username", "c2c");
    assert_eq!(get(&login, "Events"), "call,cdr");

    // Both answer; A hangs up: completed.
    let r = place(&d, "100", "200");
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.call_id();
    d.wait_log(&format!("call {id}: a_ended_normal -> completed"));
    let o = pbx.wait_action("Originate", "ChannelId", &id);
    assert_eq!(get(&o, "Channel"), "Local/100@c2c-test");
    assert_eq!(
        (get(&o, "Context"), get(&o, "Exten"), get(&o, "Async")),
        ("c2c-test", "200", "true")
    );
    assert_eq!(get(&o, "ChannelId"), format!("c2cd-{id}-a1"));
    assert_eq!(get(&o, "Timeout"), "30000");
    let vars: Vec<&str> = o
        .iter()
        .filter(|(k, _)| k == "Variable")
        .map(|(_, v)| v.as_str())
        .collect();
    assert!(
        vars.contains(&"TIMEOUT(absolute)=600") && vars.contains(&"C2C_SITE=test"),
        "{vars:?}"
    );
    let call = d.call(&id);
    let legs: Vec<&str> = call["legs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["state"].as_str().unwrap())
        .collect();
    assert_eq!(legs, ["hung_up", "hung_up"]);

    // A busy, its Hangup before the verdict: failed, cause 17.
    let id = place(&d, "101", "200").call_id();
    d.wait_log(&format!("call {id}: a_ended_busy -> failed"));
    assert_eq!(d.call(&id)["cdr"]["cause"], 17);

    // A answers, B busy: failed, B's leg busy.
    let id = place(&d, "100", "101").call_id();
    d.wait_log(&format!("call {id}: b_ended_busy -> failed"));
    let legs = d.call(&id)["legs"].clone();
    assert_eq!(
        (legs[0]["state"].as_str(), legs[1]["state"].as_str()),
        (Some("hung_up"), Some("busy"))
    );

    // A rings; the partner hangs up: c2cd sends Hangup on its channel.
    let id = place(&d, "102", "200").call_id();
    d.wait_log(&format!("call {id}: a_ringing -> dialing_a"));
    let admin = format!(
        "POST /v1/calls/{id}/hangup HTTP/1.1\r\nHost: c2cd\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(request(d.addr, &admin).status, 200);
    let h = pbx.wait_action("Hangup", "Channel", &id);
    assert_eq!(get(&h, "Channel"), format!("c2cd-{id}-a1"));
    assert_eq!(d.call(&id)["state"], "failed");

    // Congestion, rejection and no answer each end leg A their way.
    for (a, end, cause) in [
        ("103", "a_ended_failed", 34),
        ("104", "a_ended_rejected", 21),
        ("105", "a_ended_no_answer", 19),
    ] {
        let id = place(&d, a, "200").call_id();
        d.wait_log(&format!("call {id}: {end} -> failed"));
        assert_eq!(d.call(&id)["cdr"]["cause"], cause, "A {a}");
    }

    // An Originate the manager refuses at once: 502, and the row says why.
    let r = place(&d, "999", "200");
    assert_eq!(r.status, 502, "{}", r.text());
    let call = d.call(&r.call_id());
    assert_eq!(call["state"], "failed");
    assert!(
        call["error"]
            .as_str()
            .unwrap()
            .contains("Extension does not exist"),
        "{call}"
    );

    // A reload keeps the manager connection: no second login.
    let logins = |pbx: &Asterisk| {
        let (lock, _) = &*pbx.actions;
        lock.lock()
            .unwrap()
            .iter()
            .filter(|m| get(m, "Action") == "Login")
            .count()
    };
    assert_eq!(logins(&pbx), 1);
    d.signal("-HUP");
    d.wait_log("config reloaded");
    let id = place(&d, "100", "200").call_id();
    d.wait_log(&format!("call {id}: a_ended_normal -> completed"));
    assert_eq!(logins(&pbx), 1, "the reload reused the manager");

    // The manager connection drops mid-call: the call fails, c2cd logs in again.
    let id = place(&d, "106", "200").call_id();
    d.wait_log(&format!("call {id}: a_ended_failed -> failed"));
    d.wait_log("logged in as");
}
