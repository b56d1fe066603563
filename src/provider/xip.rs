//! An upstream XIP click-to-call server over HTTP or HTTPS: the nine parameters
//! as a query string (GET) or a form body (POST); its status and body go back to
//! the partner verbatim.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, USER_AGENT};
use hyper::{Method, Request, Uri};

use super::{Originate, ProviderError, Reply};
use crate::config::{HttpMethod, XipConfig};
use crate::core::call::Event;
use crate::outbound::HttpClient;

pub struct Xip {
    pub name: String,
    cfg: XipConfig,
    client: HttpClient,
}

impl Xip {
    pub fn new(name: &str, cfg: XipConfig, client: HttpClient) -> Self {
        Xip {
            name: name.to_string(),
            cfg,
            client,
        }
    }

    pub fn params(&self, o: &Originate) -> Vec<(&'static str, String)> {
        o.params(self.cfg.secret.expose(), &self.cfg.auth_fields)
    }

    pub fn url_string(&self) -> String {
        self.cfg.url.to_string()
    }

    pub fn method_str(&self) -> &'static str {
        match self.cfg.method {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
        }
    }

    fn request(
        &self,
        params: &[(&'static str, String)],
    ) -> Result<Request<Full<Bytes>>, ProviderError> {
        let encoded = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())))
            .finish();
        let base = self.cfg.url.to_string();
        let builder =
            Request::builder().header(USER_AGENT, concat!("c2cd/", env!("CARGO_PKG_VERSION")));
        let req = match self.cfg.method {
            HttpMethod::Get => {
                let sep = if self.cfg.url.query().is_some() {
                    '&'
                } else {
                    '?'
                };
                let uri: Uri = format!("{base}{sep}{encoded}").parse().map_err(|e| {
                    ProviderError::BadResponse(format!("cannot build the upstream URL: {e}"))
                })?;
                builder
                    .method(Method::GET)
                    .uri(uri)
                    .body(Full::new(Bytes::new()))
            }
            HttpMethod::Post => builder
                .method(Method::POST)
                .uri(self.cfg.url.clone())
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Full::new(Bytes::from(encoded))),
        };
        req.map_err(|e| {
            ProviderError::BadResponse(format!("cannot build the upstream request: {e}"))
        })
    }

    pub async fn originate(
        &self,
        params: Vec<(&'static str, String)>,
    ) -> Result<Reply, ProviderError> {
        let req = self.request(&params)?;
        let answer = super::upstream::exchange(
            &self.client,
            req,
            self.cfg.max_response_bytes,
            self.cfg.timeout,
        )
        .await?;
        let event = if (200..300).contains(&answer.status) {
            Event::HandedOff
        } else {
            Event::Failed
        };
        Ok(Reply {
            status: answer.status,
            content_type: answer.content_type,
            body: answer.body,
            event,
        })
    }
}
