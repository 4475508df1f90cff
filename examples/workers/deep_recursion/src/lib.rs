//! Hostile: recursion with no practical bottom (2^64 levels) until the host's bounded wasm stack
//! overflows; the client gets `500` naming the stack overflow.

use std::hint::black_box;

use tenantry_sdk::{Request, Response};

/// Not a tail call: the result of the recursive call is rotated and mixed afterwards, which the
/// optimiser cannot turn into a loop (tail-recursion elimination needs an associative
/// accumulator). No locals live in linear memory, so it is the wasm call stack that overflows,
/// not the shadow stack.
#[inline(never)]
fn descend(n: u64) -> u64 {
    if n == 0 {
        return 1;
    }
    descend(n - 1).rotate_left(7) ^ n
}

fn handle(_req: Request) -> Response {
    let depth = descend(black_box(u64::MAX));
    Response::ok().body(format!("reached the bottom: {depth}\n"))
}

tenantry_sdk::main!(handle);
