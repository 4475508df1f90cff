//! Hostile: allocates and fills 1 MiB chunks forever. When the host's memory limit refuses
//! `memory.grow`, the allocator fails, Rust's allocation-error handler aborts (a trap), and the
//! client gets `503` naming the memory limit.

use std::hint::black_box;

use tenantry_sdk::{Request, Response};

const CHUNK: usize = 1 << 20;

fn handle(_req: Request) -> Response {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    loop {
        // A non-zero fill writes every page (a zeroed allocation might not touch fresh memory).
        chunks.push(vec![0xA5; CHUNK]);
        // Keep the allocations observable so they cannot be elided.
        black_box(&mut chunks);
    }
}

tenantry_sdk::main!(handle);
