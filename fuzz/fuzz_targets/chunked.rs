#![no_main]
//! `cargo +nightly fuzz run chunked` (from the repository root). The first byte picks the split.
libfuzzer_sys::fuzz_target!(|data: &[u8]| tenantry_ingress::fuzzing::check_chunked(data));
