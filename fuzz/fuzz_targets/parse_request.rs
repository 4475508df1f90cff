#![no_main]
//! `cargo +nightly fuzz run parse_request` (from the repository root).
libfuzzer_sys::fuzz_target!(|data: &[u8]| tenantry_ingress::fuzzing::check_parse_head(data));
