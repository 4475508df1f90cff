//! Shared pieces of the benchmarks: guests as WAT text and a small engine.

use std::sync::OnceLock;

use tenantry_core::{Engine, EngineSettings};

/// The hello Worker in WAT: status 200, one header, a 20-byte body. Same bytes as
/// `examples/workers/hello`, without a compiler in the loop.
pub const HELLO_WAT: &str = r#"(module
  (import "tenantry:worker/v1" "response_header_set" (func $hset (param i32 i32 i32 i32 i32) (result i32)))
  (import "tenantry:worker/v1" "response_body_write" (func $write (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "content-typetext/plainhello from tenantry\n")
  (func (export "tenantry_fetch") (result i32)
    (drop (call $hset (i32.const 0) (i32.const 0) (i32.const 12) (i32.const 12) (i32.const 10)))
    (drop (call $write (i32.const 0) (i32.const 22) (i32.const 20)))
    i32.const 0))"#;

/// One engine per benchmark process, sized like a small node.
pub fn engine() -> Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let engine = Engine::new(&EngineSettings {
                max_instances: 64,
                ..Default::default()
            })
            .unwrap();
            engine.start_epoch_ticker();
            engine
        })
        .clone()
}
