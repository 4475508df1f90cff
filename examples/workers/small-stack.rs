//! Build script shared by the example Workers: link with a 64 KiB stack instead of Rust's 1 MiB
//! default for wasm32. The stack lives in linear memory, so this shrinks each instance from 17 to
//! 2 pages (1.1 MiB to 128 KiB): less memory to reset per request and fewer pages per pooled
//! slot. A Worker with deep recursion or big stack arrays needs more (see sdk/rust/README.md).
fn main() {
    println!("cargo:rustc-link-arg=-zstack-size=65536");
}
