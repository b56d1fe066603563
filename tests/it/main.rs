//! Integration tests: the real c2cd binary on real sockets, with real HTTP servers
//! on loopback playing the partners' click-to-call servers. One test binary.

mod abuse;
mod airtel;
mod ami;
mod block;
mod callbacks;
mod chain;
mod cloud9;
mod common;
mod config;
mod crash;
mod faults;
mod guard;
mod lifecycle;
mod lockout;
mod native;
mod openapi;
mod roundtrip;
mod routing;
mod spokn;
mod upstream;
mod xip;
