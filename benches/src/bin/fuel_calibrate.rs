//! Calibrates `FUEL_PER_CPU_MS` (core/src/limits.rs): runs guest loops of different shapes on the
//! real engine configuration with unlimited fuel and prints how much fuel each burns per
//! millisecond of CPU time.
//!
//! `cargo run --release -p tenantry-benches --bin fuel-calibrate`

use std::time::Instant;

use tenantry_benches::engine;
use tenantry_core::FUEL_PER_CPU_MS;
use wasmtime::{Instance, Module, Store};

/// Loops of different shapes, each exporting `run(n)`.
const LOOPS: &[(&str, &str)] = &[
    (
        "tight counter loop",
        r#"(module (func (export "run") (param $n i32) (result i32) (local $i i32)
            (loop $l (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
            local.get $i))"#,
    ),
    (
        "arithmetic (hash mixing)",
        r#"(module (func (export "run") (param $n i32) (result i32) (local $i i32) (local $h i32)
            (local.set $h (i32.const 2166136261))
            (loop $l
              (local.set $h (i32.mul (i32.xor (local.get $h) (local.get $i)) (i32.const 16777619)))
              (local.set $h (i32.rotl (local.get $h) (i32.const 5)))
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
            local.get $h))"#,
    ),
    (
        "memory read/write",
        r#"(module (memory 1) (func (export "run") (param $n i32) (result i32) (local $i i32) (local $a i32)
            (loop $l
              (local.set $a (i32.and (i32.mul (local.get $i) (i32.const 4)) (i32.const 65532)))
              (i32.store (local.get $a) (i32.add (i32.load (local.get $a)) (local.get $i)))
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
            (i32.load (i32.const 0))))"#,
    ),
];

fn main() {
    let engine = engine();
    println!("configured FUEL_PER_CPU_MS = {FUEL_PER_CPU_MS}");
    for (label, wat) in LOOPS {
        let module = Module::new(engine.wasmtime(), wat).expect("valid loop");
        let mut best = f64::MAX;
        let mut fuel_per_ms = 0.0;
        for _ in 0..5 {
            let mut store = Store::new(engine.wasmtime(), ());
            store.set_fuel(u64::MAX).unwrap();
            // Far in the future, without overflowing `current epoch + delta`.
            store.set_epoch_deadline(u64::MAX / 2);
            let instance = Instance::new(&mut store, &module, &[]).unwrap();
            let run = instance
                .get_typed_func::<i32, i32>(&mut store, "run")
                .unwrap();
            let start = Instant::now();
            std::hint::black_box(run.call(&mut store, 50_000_000).unwrap());
            let ms = start.elapsed().as_secs_f64() * 1e3;
            let used = u64::MAX - store.get_fuel().unwrap();
            if ms < best {
                best = ms;
                fuel_per_ms = used as f64 / ms;
            }
        }
        println!("{label:28} {fuel_per_ms:>14.0} fuel/ms  ({best:.1} ms for 50M iterations)");
    }
}
