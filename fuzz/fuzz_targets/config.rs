#![no_main]
//! `c2cd::fuzz::config`: see fuzz/README.md.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| c2cd::fuzz::config(data));
