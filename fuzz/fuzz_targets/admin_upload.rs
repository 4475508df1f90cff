#![no_main]
//! `cargo +nightly fuzz run admin_upload` (from the repository root).
libfuzzer_sys::fuzz_target!(|data: &[u8]| tenantry::fuzzing::check_upload(data));
