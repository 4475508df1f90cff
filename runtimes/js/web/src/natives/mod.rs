//! Rust functions the JavaScript prelude calls for what Rust does better: WHATWG URL parsing
//! (the `url` crate), UTF-8 and base64, hashing, HMAC and randomness.
//!
//! They are gathered on one plain object that the prelude captures in its closures; it is never
//! reachable from Worker code. The natives are deliberately blunt: they take strings the prelude
//! has already made well-formed and `Uint8Array`s it has already normalised, and signal bad input
//! by returning `undefined`, so every error a Worker sees is built in JavaScript with the right
//! class and name.

mod crypto;
mod encoding;
mod url;

use rquickjs::{Ctx, Object, Result};

/// Builds the object holding every native function.
pub fn object<'js>(ctx: &Ctx<'js>) -> Result<Object<'js>> {
    let natives = Object::new(ctx.clone())?;
    url::register(ctx, &natives)?;
    encoding::register(ctx, &natives)?;
    crypto::register(ctx, &natives)?;
    Ok(natives)
}
