#![no_main]
//! `cargo +nightly fuzz run random_module` (from the repository root).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tenantry::fuzzing::check_random_module(data);
});
