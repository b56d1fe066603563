//! The one outgoing HTTP client, shared by the upstream XIP servers and the
//! callback deliveries: plain http (loopback relays use it), or https verified
//! against the system trust store.
//!
//! The trusted roots are read once, at startup, the way OpenSSL-based tools find
//! them: `SSL_CERT_FILE` and `SSL_CERT_DIR` when set, else the distribution's
//! bundle (`/etc/ssl/certs` on Debian). A reload does not read them again.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::{ClientConfig, RootCertStore};

pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Reads the system trust store. Finding no root is not fatal: http keeps
/// working and every https exchange fails on the certificate, so it is said
/// once, here, rather than hidden behind each failed attempt.
pub fn trust_roots() -> RootCertStore {
    // rustls-native-certs reads only these two when either is set.
    let set: Vec<String> = ["SSL_CERT_FILE", "SSL_CERT_DIR"]
        .iter()
        .filter_map(|k| std::env::var_os(k).map(|v| format!("{k}={}", v.to_string_lossy())))
        .collect();
    let from = if set.is_empty() {
        "the system trust store".to_string()
    } else {
        set.join(" and ")
    };
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, unusable) = roots.add_parsable_certificates(found.certs);
    let problems: Vec<String> = found.errors.iter().map(|e| e.to_string()).collect();
    if added == 0 {
        log::warn!(
            "https: no trusted root certificate found in {from}{}; https callbacks and upstreams will fail, http works (install ca-certificates or set SSL_CERT_FILE)",
            if problems.is_empty() {
                String::new()
            } else {
                format!(" ({})", problems.join("; "))
            }
        );
    } else {
        log::info!("https: {added} trusted root certificates from {from}");
        for p in &problems {
            log::debug!("https: skipped while reading the trust store: {p}");
        }
    }
    if unusable > 0 {
        log::debug!("https: {unusable} certificates in {from} are not usable as roots");
    }
    roots
}

/// One client (and connection pool) for every upstream server and callback
/// receiver, trusting `roots` for https. HTTP/1.1 only: that is what XIP servers
/// and webhook receivers speak.
pub fn client(roots: RootCertStore) -> Result<HttpClient, rustls::Error> {
    let tls =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(Duration::from_secs(5)));
    http.set_nodelay(true);
    // The https layer hands https URLs to the TCP connector too.
    http.enforce_http(false);
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(64)
        .build(connector))
}

/// An error with its causes, `outer: inner: …`: a client error alone says
/// "client error (Connect)", its causes say why (refused, the certificate…).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg = format!("{msg}: {s}");
        src = s.source();
    }
    msg
}

/// What a failed request to a click-to-call server means: `Unreachable` only
/// when the connection was never made (the request provably did not leave, so
/// another provider may be asked); otherwise the server may have acted on it.
pub fn provider_error(e: &hyper_util::client::legacy::Error) -> crate::provider::ProviderError {
    if e.is_connect() {
        crate::provider::ProviderError::Unreachable(error_chain(e))
    } else {
        crate::provider::ProviderError::BadResponse(format!(
            "the request failed: {}",
            error_chain(e)
        ))
    }
}
