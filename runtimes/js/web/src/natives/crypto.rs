//! Hashing (MD5, SHA-1, SHA-2), HMAC and randomness for `crypto` and `crypto.subtle`, on RustCrypto and getrandom
//! (WASI `random_get` on wasm32-wasip1).

use hmac::digest::{Digest, KeyInit};
use hmac::{Hmac, Mac};
use md5::Md5;
use rquickjs::{ArrayBuffer, Ctx, Exception, Function, Object, Result, TypedArray};
use sha1::Sha1;
use sha2::{Sha256, Sha384, Sha512};

use crate::bytes::{with_bytes, with_bytes_mut};

/// A hash by its WebCrypto name, already upper-cased by the prelude.
#[derive(Clone, Copy)]
enum Hash {
    /// Not in WebCrypto, but workerd offers it, and Workers use it for ETags and the like.
    Md5,
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    fn from_name(name: &str) -> Option<Hash> {
        Some(match name {
            "MD5" => Hash::Md5,
            "SHA-1" => Hash::Sha1,
            "SHA-256" => Hash::Sha256,
            "SHA-384" => Hash::Sha384,
            "SHA-512" => Hash::Sha512,
            _ => return None,
        })
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Md5 => Md5::digest(data).to_vec(),
            Hash::Sha1 => Sha1::digest(data).to_vec(),
            Hash::Sha256 => Sha256::digest(data).to_vec(),
            Hash::Sha384 => Sha384::digest(data).to_vec(),
            Hash::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// `None` only if the MAC refused the key, which HMAC (any key length) never does.
    fn hmac(self, key: &[u8], data: &[u8]) -> Option<Vec<u8>> {
        fn run<M: Mac + KeyInit>(key: &[u8], data: &[u8]) -> Option<Vec<u8>> {
            let mut mac = <M as KeyInit>::new_from_slice(key).ok()?;
            mac.update(data);
            Some(mac.finalize().into_bytes().to_vec())
        }
        match self {
            Hash::Md5 => run::<Hmac<Md5>>(key, data),
            Hash::Sha1 => run::<Hmac<Sha1>>(key, data),
            Hash::Sha256 => run::<Hmac<Sha256>>(key, data),
            Hash::Sha384 => run::<Hmac<Sha384>>(key, data),
            Hash::Sha512 => run::<Hmac<Sha512>>(key, data),
        }
    }
}

/// Constant-time comparison, so that `verify` leaks nothing about where a guess differs.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn register<'js>(ctx: &Ctx<'js>, natives: &Object<'js>) -> Result<()> {
    // digest(hashName, bytes) -> ArrayBuffer | undefined for an unknown hash.
    natives.set(
        "digest",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>, hash: String, data: TypedArray<'js, u8>| {
                let Some(hash) = Hash::from_name(&hash) else {
                    return Ok(None);
                };
                let out = with_bytes(&data, |d| hash.digest(d));
                ArrayBuffer::new(ctx, out).map(Some)
            },
        )?,
    )?;
    // hmacSign(hashName, key, data) -> ArrayBuffer | undefined for an unknown hash or key.
    natives.set(
        "hmacSign",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>, hash: String, key: TypedArray<'js, u8>, data: TypedArray<'js, u8>| {
                let Some(hash) = Hash::from_name(&hash) else {
                    return Ok(None);
                };
                let key = with_bytes(&key, <[u8]>::to_vec);
                match with_bytes(&data, |d| hash.hmac(&key, d)) {
                    Some(out) => ArrayBuffer::new(ctx, out).map(Some),
                    None => Ok(None),
                }
            },
        )?,
    )?;
    // hmacVerify(hashName, key, data, signature) -> bool (false for an unknown hash).
    natives.set(
        "hmacVerify",
        Function::new(
            ctx.clone(),
            |hash: String,
             key: TypedArray<'js, u8>,
             data: TypedArray<'js, u8>,
             signature: TypedArray<'js, u8>| {
                let Some(hash) = Hash::from_name(&hash) else {
                    return false;
                };
                let key = with_bytes(&key, <[u8]>::to_vec);
                match with_bytes(&data, |d| hash.hmac(&key, d)) {
                    Some(expected) => with_bytes(&signature, |s| constant_time_eq(&expected, s)),
                    None => false,
                }
            },
        )?,
    )?;
    // timingSafeEqual(a, b) -> bool, in constant time for equal lengths.
    natives.set(
        "timingSafeEqual",
        Function::new(
            ctx.clone(),
            |a: TypedArray<'js, u8>, b: TypedArray<'js, u8>| {
                let a = with_bytes(&a, <[u8]>::to_vec);
                with_bytes(&b, |b| constant_time_eq(&a, b))
            },
        )?,
    )?;
    // randomFill(bytes): fills the view from the OS (WASI random_get in the guest).
    natives.set(
        "randomFill",
        Function::new(ctx.clone(), |ctx: Ctx<'js>, dest: TypedArray<'js, u8>| {
            with_bytes_mut(&dest, getrandom::fill)
                .map_err(|e| Exception::throw_internal(&ctx, &format!("random source failed: {e}")))
        })?,
    )?;
    Ok(())
}
