#![no_main]
//! `cargo +nightly fuzz run admin_json` (from the repository root).
libfuzzer_sys::fuzz_target!(|data: &[u8]| tenantry::fuzzing::check_json_bodies(data));
