//! The fixture: start the real daemon on 127.0.0.1:0 with a config of the test's,
//! talk HTTP to it, and play an upstream click-to-call server (over http, or https
//! with a certificate for `localhost` from the test CA in `tls/`).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_c2cd");
pub const WAIT: Duration = Duration::from_secs(15);

/// The demo partner's numbers and Auth, computed independently of c2cd.
pub const PARTNER: &str = "102821";
pub const SECRET: &str = "B4n0ff13P13!_";
pub const REQUESTOR: &str = "16045551234";
pub const FULFILLMENT: &str = "16045550000";

pub fn md5_hex(s: &str) -> String {
    use md5::{Digest, Md5};
    Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn auth(secret: &str, partner: &str, a: &str, b: &str) -> String {
    md5_hex(&format!("{secret}{partner}{a}{b}"))
}

pub fn xip_query(partner: &str, a: &str, b: &str, auth: &str) -> String {
    format!("PartnerID={partner}&Requestor={a}&Fulfillment={b}&Auth={auth}")
}

/// The demo partner's request from REQUESTOR to FULFILLMENT with a valid Auth.
pub fn demo_query() -> String {
    xip_query(
        PARTNER,
        REQUESTOR,
        FULFILLMENT,
        &auth(SECRET, PARTNER, REQUESTOR, FULFILLMENT),
    )
}

/// Runs the c2cd command line with `args`, asserts it succeeded, and returns
/// what it printed on stdout.
pub fn c2cd_ok<I, S>(args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let args: Vec<std::ffi::OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let out = Command::new(BIN).args(&args).output().unwrap();
    assert!(
        out.status.success(),
        "c2cd {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub struct Daemon {
    pub child: Child,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    lines: Receiver<String>,
    pub log: Arc<Mutex<Vec<String>>>,
    /// Every secret any of its configs held: none may be in its log.
    secrets: Vec<String>,
}

/// A config whose `{DB}` is replaced by a database in the test's directory.
pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("c2cd.toml");
    let text = text.replace("{DB}", &dir.join("c2cd.db").display().to_string());
    std::fs::write(&path, text).unwrap();
    // Private, as the package installs it: c2cd warns of a config of secrets
    // that every user can read (tests/it/config.rs).
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    path
}

impl Daemon {
    pub fn start(config: &str) -> Daemon {
        Self::start_env(config, &[])
    }

    /// Starts with these environment variables (see [`Daemon::start_in_env`]).
    pub fn start_env(config: &str, env: &[(&str, &Path)]) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let path = write_config(dir.path(), config);
        Self::start_in_env(dir, path, env)
    }

    pub fn start_in(dir: tempfile::TempDir, config: PathBuf) -> Daemon {
        Self::start_in_env(dir, config, &[])
    }

    /// Starts with these environment variables set on top of the test's own,
    /// less the test's SSL_CERT_FILE and SSL_CERT_DIR: what https trusts is the
    /// system store unless the test says otherwise.
    pub fn start_in_env(dir: tempfile::TempDir, config: PathBuf, env: &[(&str, &Path)]) -> Daemon {
        let mut child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&config)
            .env_remove("SSL_CERT_FILE")
            .env_remove("SSL_CERT_DIR")
            .envs(env.iter().copied())
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                log2.lock().unwrap().push(line.clone());
                if tx.send(line).is_err() {
                    // Nobody listens any more; keep collecting the log.
                }
            }
        });
        let secrets = std::fs::read_to_string(&config)
            .map(|t| secrets_of(&t))
            .unwrap_or_default();
        let mut d = Daemon {
            child,
            addr: "127.0.0.1:1".parse().unwrap(),
            dir,
            config,
            lines,
            log,
            secrets,
        };
        let line = d.wait_log("listening on http://");
        let addr = line.rsplit("http://").next().unwrap().trim();
        d.addr = addr.parse().unwrap();
        d
    }

    /// Waits for a log line containing `needle` (a signal the daemon gives, not a sleep).
    pub fn wait_log(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.contains(needle) => return l,
                Ok(_) => {}
                Err(_) => panic!(
                    "no log line with {needle:?} within {WAIT:?}; log:\n{}",
                    self.log_text()
                ),
            }
        }
    }

    /// Waits for a log line containing `needle` that may have come before
    /// the daemon was listening (a manager login races the listener's line).
    pub fn wait_logged(&mut self, needle: &str) -> String {
        let early = self
            .log
            .lock()
            .unwrap()
            .iter()
            .find(|l| l.contains(needle))
            .cloned();
        early.unwrap_or_else(|| self.wait_log(needle))
    }

    /// Replaces the config with `text` (`{DB}` as in [`write_config`]) and
    /// reloads it (SIGHUP), returning once it is in use.
    pub fn reload(&mut self, text: &str) {
        let path = write_config(self.dir.path(), text);
        self.secrets
            .extend(secrets_of(&std::fs::read_to_string(path).unwrap()));
        self.signal("-HUP");
        self.wait_log("config reloaded");
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("c2cd.db")
    }

    pub fn signal(&self, sig: &str) {
        // The shell's builtin kill: nothing beyond sh is needed on the machine.
        let ok = Command::new("sh")
            .arg("-c")
            .arg(format!("kill {sig} {}", self.child.id()))
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// SIGTERM and wait for the exit.
    pub fn stop(mut self) -> (ExitStatus, tempfile::TempDir, String) {
        self.signal("-TERM");
        let status = wait_exit(&mut self.child);
        let log = self.log_text();
        (status, take_dir(&mut self.dir), log)
    }

    /// Waits for an exit already asked for.
    pub fn stop_wait(mut self) -> (ExitStatus, tempfile::TempDir, String) {
        let status = wait_exit(&mut self.child);
        let log = self.log_text();
        (status, take_dir(&mut self.dir), log)
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(mut self) -> tempfile::TempDir {
        self.child.kill().unwrap();
        let _ = self.child.wait();
        take_dir(&mut self.dir)
    }

    pub fn get(&self, path_and_query: &str) -> Response {
        request(
            self.addr,
            &format!("GET {path_and_query} HTTP/1.1\r\nHost: c2cd\r\nConnection: close\r\n\r\n"),
        )
    }

    pub fn post_form(&self, path: &str, body: &str) -> Response {
        request(
            self.addr,
            &format!(
                "POST {path} HTTP/1.1\r\nHost: c2cd\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ),
        )
    }

    pub fn admin_get(&self, path: &str, token: &str) -> Response {
        request(
            self.addr,
            &format!("GET {path} HTTP/1.1\r\nHost: c2cd\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"),
        )
    }

    /// Polls `GET path` (admin) until `ready` accepts its JSON, which it returns.
    pub fn wait_for_json(
        &self,
        path: &str,
        ready: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let v: serde_json::Value =
                serde_json::from_slice(&self.admin_get(path, TOKEN).body).unwrap_or_default();
            if ready(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{path} not ready within {WAIT:?}: {v}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The call as `GET /v1/calls/{id}` shows it.
    pub fn call(&self, id: &str) -> serde_json::Value {
        let r = self.admin_get(&format!("/v1/calls/{id}"), TOKEN);
        assert_eq!(r.status, 200, "{}", r.text());
        serde_json::from_slice(&r.body).unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Every test's log is scanned for its configs' secrets.
        if !std::thread::panicking() {
            let log = self.log.lock().unwrap();
            for secret in &self.secrets {
                if let Some(line) = log.iter().find(|l| l.contains(secret.as_str())) {
                    panic!(
                        "a configured secret ({} characters) is in the log: {line}",
                        secret.len()
                    );
                }
            }
        }
    }
}

/// The secrets a config holds: the quoted values of every key that names one
/// (`secret`, `password`, `token`, `carrier_ids`, `callback_secrets`, …),
/// line by line, so that a config c2cd refuses is read too. Ones too short to
/// be told from other text are left out.
pub fn secrets_of(config: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in config.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        let named = ["secret", "password", "token", "carrier_id"]
            .iter()
            .any(|k| key.contains(k));
        if !named {
            continue;
        }
        // Every "…" in the value: one string, or an array of them.
        let quoted = value.split('"').skip(1).step_by(2);
        out.extend(quoted.filter(|s| s.len() >= 6).map(str::to_string));
    }
    out
}

/// Moves the directory out of a daemon that is being dropped.
fn take_dir(dir: &mut tempfile::TempDir) -> tempfile::TempDir {
    std::mem::replace(dir, tempfile::tempdir().unwrap())
}

/// The kinds of a call's events, in order, as `GET /v1/calls/{id}` lists them.
pub fn event_kinds(call: &serde_json::Value) -> Vec<&str> {
    call["events"]
        .as_array()
        .map(|es| es.iter().filter_map(|e| e["kind"].as_str()).collect())
        .unwrap_or_default()
}

pub fn wait_exit(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon did not exit within {WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub const TOKEN: &str = "test-admin-token-0123456789";

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn call_id(&self) -> String {
        self.header("c2c-call-id")
            .unwrap_or_else(|| panic!("no C2C-Call-Id in {self:?}"))
            .to_string()
    }

    /// The `Result=…&Message=…&CallID=…` body as a map.
    pub fn form(&self) -> HashMap<String, String> {
        form_urlencoded::parse(&self.body).into_owned().collect()
    }
}

/// Sends raw bytes and reads the whole answer (the request asks to close).
pub fn request(addr: SocketAddr, raw: &str) -> Response {
    request_bytes(addr, raw.as_bytes())
}

pub fn request_bytes(addr: SocketAddr, raw: &[u8]) -> Response {
    try_request(addr, raw).unwrap_or_else(|| panic!("no answer from {addr}"))
}

/// Like [`request_bytes`], but `None` when the connection fails or no complete
/// answer arrives (the daemon was killed, say).
pub fn try_request(addr: SocketAddr, raw: &[u8]) -> Option<Response> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(WAIT)).ok()?;
    s.write_all(raw).ok()?;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    buf.windows(4)
        .any(|w| w == b"\r\n\r\n")
        .then(|| parse_response(&buf))
}

/// Like [`request`], from the loopback address `from` (any of 127.0.0.0/8):
/// to the daemon, another client host.
pub fn request_from(from: &str, addr: SocketAddr, raw: &str) -> Response {
    let from: SocketAddr = format!("{from}:0").parse().unwrap();
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&from.into()).unwrap();
    s.connect(&addr.into()).unwrap();
    let mut s: TcpStream = s.into();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    parse_response(&buf)
}

pub fn parse_response(buf: &[u8]) -> Response {
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| {
            panic!(
                "no complete HTTP response: {:?}",
                String::from_utf8_lossy(buf)
            )
        });
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let body = buf[split + 4..].to_vec();
    Response {
        status,
        headers,
        body,
    }
}

/// What an upstream server received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The parameters, in the order sent, from the query (GET) or the form body (POST).
    pub fn params(&self) -> Vec<(String, String)> {
        let src = if self.method == "POST" {
            &self.body
        } else {
            &self.query
        };
        form_urlencoded::parse(src.as_bytes())
            .into_owned()
            .collect()
    }
}

#[derive(Clone)]
pub enum Behaviour {
    /// Answer with this status, content type and body.
    Reply(u16, &'static str, &'static str),
    /// Never answer (until the test ends).
    Hang,
    /// Answer 200 text/plain with this body after this many milliseconds.
    Slow(u64, &'static str),
    /// Answer 200 with this body and no Content-Type at all.
    NoContentType(&'static str),
    /// Answer 503 to the first N requests, then 200.
    FailFirst(usize),
    /// Never answer the first N requests, then 200.
    HangFirst(usize),
}

/// The test CA (`tls/README.md`): what a daemon is given as `SSL_CERT_FILE` to
/// trust [`Upstream::start_tls`].
pub fn test_ca() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/tls/ca.pem")
}

/// A TLS acceptor presenting the test CA's certificate for `localhost`.
fn localhost_tls() -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/tls");
    let chain: Vec<CertificateDer> = CertificateDer::pem_file_iter(dir.join("localhost.pem"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("localhost.key")).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// A real HTTP server on 127.0.0.1:0 playing the XIP click-to-call server (or a
/// partner's callback receiver).
pub struct Upstream {
    pub addr: SocketAddr,
    /// Serves https (as `localhost`) rather than http.
    tls: bool,
    pub received: Arc<Mutex<Vec<Received>>>,
    arrived: Arc<std::sync::Condvar>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Upstream {
    pub fn start(behaviour: Behaviour) -> Upstream {
        Self::serve(behaviour, None)
    }

    /// Serves https with a certificate for `localhost` signed by [`test_ca`].
    pub fn start_tls(behaviour: Behaviour) -> Upstream {
        Self::serve(behaviour, Some(localhost_tls()))
    }

    fn serve(behaviour: Behaviour, tls: Option<tokio_rustls::TlsAcceptor>) -> Upstream {
        use http_body_util::{BodyExt, Full};
        use hyper::service::service_fn;

        let is_tls = tls.is_some();

        let received = Arc::new(Mutex::new(Vec::new()));
        let rec = received.clone();
        let arrived = Arc::new(std::sync::Condvar::new());
        let arrived2 = arrived.clone();
        let (addr_tx, addr_rx) = mpsc::channel();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let serve = async move {
                    loop {
                        let (stream, _) = listener.accept().await.unwrap();
                        let rec = rec.clone();
                        let arrived = arrived2.clone();
                        let behaviour = behaviour.clone();
                        let tls = tls.clone();
                        tokio::spawn(async move {
                            let svc =
                                service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                                    let rec = rec.clone();
                                    let arrived = arrived.clone();
                                    let behaviour = behaviour.clone();
                                    async move {
                                        let method = req.method().to_string();
                                        let path = req.uri().path().to_string();
                                        let query = req.uri().query().unwrap_or("").to_string();
                                        let content_type = req
                                            .headers()
                                            .get("content-type")
                                            .map(|v| v.to_str().unwrap().to_string());
                                        let headers: Vec<(String, String)> = req
                                            .headers()
                                            .iter()
                                            .map(|(k, v)| {
                                                (
                                                    k.to_string(),
                                                    v.to_str().unwrap_or("").to_string(),
                                                )
                                            })
                                            .collect();
                                        let body =
                                            req.into_body().collect().await.unwrap().to_bytes();
                                        let seen = rec.lock().unwrap().len();
                                        rec.lock().unwrap().push(Received {
                                            method,
                                            path,
                                            query,
                                            content_type,
                                            headers,
                                            body: String::from_utf8_lossy(&body).into_owned(),
                                        });
                                        arrived.notify_all();
                                        match behaviour {
                                            Behaviour::Reply(status, ct, body) => {
                                                let r = hyper::Response::builder()
                                                    .status(status)
                                                    .header("content-type", ct)
                                                    .body(Full::new(bytes::Bytes::from_static(
                                                        body.as_bytes(),
                                                    )))
                                                    .unwrap();
                                                Ok::<_, std::convert::Infallible>(r)
                                            }
                                            Behaviour::Hang => {
                                                std::future::pending::<()>().await;
                                                unreachable!()
                                            }
                                            Behaviour::Slow(ms, body) => {
                                                let wait = std::time::Duration::from_millis(ms);
                                                tokio::time::sleep(wait).await;
                                                let body =
                                                    bytes::Bytes::from_static(body.as_bytes());
                                                let r = hyper::Response::builder()
                                                    .header("content-type", "text/plain")
                                                    .body(Full::new(body))
                                                    .unwrap();
                                                Ok(r)
                                            }
                                            Behaviour::HangFirst(n) => {
                                                if seen < n {
                                                    std::future::pending::<()>().await;
                                                }
                                                Ok(hyper::Response::new(Full::new(
                                                    bytes::Bytes::new(),
                                                )))
                                            }
                                            Behaviour::FailFirst(n) => {
                                                let status = if seen < n { 503 } else { 200 };
                                                let r = hyper::Response::builder()
                                                    .status(status)
                                                    .body(Full::new(bytes::Bytes::new()))
                                                    .unwrap();
                                                Ok(r)
                                            }
                                            Behaviour::NoContentType(body) => {
                                                let body =
                                                    bytes::Bytes::from_static(body.as_bytes());
                                                Ok(hyper::Response::new(Full::new(body)))
                                            }
                                        }
                                    }
                                });
                            let http = hyper::server::conn::http1::Builder::new();
                            let _ = match tls {
                                None => {
                                    http.serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                                        .await
                                }
                                Some(tls) => match tls.accept(stream).await {
                                    Ok(s) => {
                                        http.serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                                            .await
                                    }
                                    // The client refused the certificate.
                                    Err(_) => Ok(()),
                                },
                            };
                        });
                    }
                };
                tokio::select! {
                    _ = serve => {}
                    _ = stop_rx => {}
                }
            });
        });
        let addr = addr_rx.recv_timeout(WAIT).unwrap();
        Upstream {
            addr,
            tls: is_tls,
            received,
            arrived,
            _stop: stop,
        }
    }

    /// http://127.0.0.1:PORT/c2c/call, or https://localhost:PORT/c2c/call (the
    /// name its certificate is for).
    pub fn url(&self) -> String {
        if self.tls {
            format!("https://localhost:{}/c2c/call", self.addr.port())
        } else {
            format!("http://{}/c2c/call", self.addr)
        }
    }

    /// Waits until `n` requests have arrived.
    pub fn wait_requests(&self, n: usize) {
        let guard = self.received.lock().unwrap();
        let (guard, timeout) = self
            .arrived
            .wait_timeout_while(guard, WAIT, |r| r.len() < n)
            .unwrap();
        assert!(
            !timeout.timed_out(),
            "only {} of {n} upstream requests arrived",
            guard.len()
        );
    }

    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

/// The parts every test config shares: loopback on a free port, the database in
/// the test's directory, debug logs, the admin token.
pub fn base_config(rest: &str) -> String {
    // The simulator's scripted outcomes ring 555 numbers, which no real number
    // has: number checks are on only where a test says (tests/it/guard.rs).
    guarded_config("check_numbers = false", rest)
}

/// [`base_config`] with `guard` as the `[guard]` table's keys.
pub fn guarded_config(guard: &str, rest: &str) -> String {
    format!(
        r#"
[server]
listen = ["127.0.0.1:0"]

[database]
path = "{{DB}}"

[log]
level = "debug"

[admin]
token = "{TOKEN}"

[guard]
{guard}
{rest}"#
    )
}

/// A config with one XIP partner routed to an upstream XIP server at `url`.
pub fn xip_config(url: &str, extra: &str) -> String {
    base_config(&format!(
        r#"
[[partner]]
id = "{PARTNER}"
name = "Vendor"
secret = "{SECRET}"
provider = "c2c"

[[provider]]
name = "c2c"
kind = "xip"
url = "{url}"
secret = "upstream-secret"
timeout = "500ms"
{extra}
"#
    ))
}

/// A config with the demo partner on the simulator in instant mode.
pub fn sim_config(extra: &str) -> String {
    guarded_sim_config("check_numbers = false", extra)
}

/// [`sim_config`] with `guard` as the `[guard]` table's keys.
pub fn guarded_sim_config(guard: &str, extra: &str) -> String {
    guarded_config(
        guard,
        &format!(
            r#"
[[partner]]
id = "{PARTNER}"
secret = "{SECRET}"
provider = "sim"

[[provider]]
name = "sim"
kind = "sim"
ring = "0s"
talk = "0s"
busy = ["1555000*"]
no_answer = ["1555001*"]
fail = ["1555002*"]
{extra}
"#
        ),
    )
}

/// Open TCP sockets of process `pid` (its listener and connections): the
/// descriptors a flood could leak. Files and the runtime's own Unix sockets
/// are left out: the read pool and the runtime open those as they please.
pub fn tcp_sockets(pid: u32) -> usize {
    let mut tcp = std::collections::HashSet::new();
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        // The inode is the tenth column.
        tcp.extend(
            text.lines()
                .skip(1)
                .filter_map(|l| l.split_whitespace().nth(9).map(str::to_string)),
        );
    }
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|t| {
            let t = t.to_string_lossy().into_owned();
            Some(
                t.strip_prefix("socket:[")?
                    .trim_end_matches(']')
                    .to_string(),
            )
        })
        .filter(|inode| tcp.contains(inode))
        .count()
}

/// VmRSS of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}
