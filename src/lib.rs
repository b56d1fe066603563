//! c2cd: a click-to-call gateway daemon for telephony boxes.
//!
//! Partners ask over HTTP, in a dialect they already speak, to connect two phone
//! parties; c2cd authenticates them, records each request durably, has a
//! click-to-call server place the call, and follows it to its end.
//!
//! # Layout, in data-flow order
//! - [`config`]: the TOML schema, the embedded demo default, validation with
//!   `file:line: key:` errors.
//! - [`daemon`]: wiring and lifecycle (open, serve, reload on HUP, drain on TERM).
//! - [`http`]: hyper plumbing: connection and body limits, routing, operator
//!   endpoints (`/healthz`, `/metrics`, the `/v1` admin API).
//! - [`dialect`]: one module per wire dialect ([`dialect::xip`], [`dialect::native`],
//!   [`dialect::spokn`], [`dialect::airtel`]), each with its callback format, and
//!   [`dialect::roundtrip`], the call centers' sales data, and [`dialect::cloud9`],
//!   the carrier's call-back authorisation.
//! - [`guard`]: the guard rails run before a call is placed: dedupe and
//!   idempotency, rate and concurrency limits.
//! - [`lockout`]: failed authentications, throttled per source and per partner.
//! - [`core`]: the domain: call ids, phone numbers and their validity, secrets,
//!   the call's plan (sides, participants, strategies), the call state machine,
//!   quiet hours.
//! - [`store`]: SQLite, owned by one writer thread that group-commits.
//! - [`provider`]: the click-to-call servers (simulator, Asterisk over AMI, upstream
//!   XIP, Spokn and Airtel APIs), their health and circuit breakers.
//! - [`outbound`]: the one outgoing HTTP(S) client, for upstreams and callbacks,
//!   trusting the system trust store.
//! - [`reconcile`]: a final state for every call, even when no end is heard.
//! - [`schedule`]: deferred calls, placed at their partner's next opening.
//! - [`notify`]: the callback outbox's delivery worker.
//! - [`export`]: the nightly export of calls and their sales data.
//! - [`app`]: the shared state of a running daemon.
//! - [`logging`], [`signal`], [`privileges`]: the process's plumbing.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
#![deny(clippy::await_holding_lock)]

pub mod app;
pub mod config;
pub mod core;
pub mod daemon;
pub mod dialect;
pub mod export;
#[doc(hidden)]
pub mod fuzz;
pub mod guard;
pub mod http;
pub mod lockout;
pub mod logging;
pub mod notify;
pub mod outbound;
pub mod privileges;
pub mod provider;
pub mod reconcile;
pub mod schedule;
pub mod signal;
pub mod store;
