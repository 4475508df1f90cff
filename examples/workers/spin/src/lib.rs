//! Hostile: loops forever. Only the host's CPU limit (fuel) or wall-clock deadline (epochs) ends
//! it; the client gets `503`.

use std::hint::black_box;

use tenantry_sdk::{Request, Response};

fn handle(_req: Request) -> Response {
    let mut n: u64 = 0;
    loop {
        // `black_box` makes each step observable, so the loop cannot be folded or removed.
        n = black_box(n.wrapping_add(1));
    }
}

tenantry_sdk::main!(handle);
