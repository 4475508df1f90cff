#![no_main]
//! `cargo +nightly fuzz run config` (from the repository root).
libfuzzer_sys::fuzz_target!(|data: &[u8]| tenantry::fuzzing::check_config(data));
