//! WHATWG URL parsing and setters through the `url` crate (its `quirks` module implements the
//! URL Standard's API setters).
//!
//! A parsed URL crosses into JavaScript as its serialisation (one string) plus twelve offsets
//! into it, written to a scratch `Uint32Array` the prelude owns: every getter is then a
//! substring, and no component string is built unless asked for. The serialisation is ASCII
//! (the URL Standard percent-encodes everything else), so byte offsets are string indexes.

use rquickjs::{Array, Ctx, Function, Object, Result, TypedArray};
use url::{Position, Url, form_urlencoded, quirks};

use crate::bytes::with_bytes_mut;

/// Where `part`, a slice of `whole`, starts and ends in it; `(0, 0)` for a slice from elsewhere
/// (the `url` crate returns a static `""` for an absent username).
fn span(whole: &str, part: &str) -> (u32, u32) {
    let start = (part.as_ptr() as usize).wrapping_sub(whole.as_ptr() as usize);
    if start <= whole.len() && start + part.len() <= whole.len() {
        (start as u32, (start + part.len()) as u32)
    } else {
        (0, 0)
    }
}

/// Writes the twelve offsets `url.js` reads (native-endian u32s, in its order: after scheme,
/// username start/end, password start/end, host start/end, port start/end, path start/end,
/// after query) into `scratch` and returns the serialisation. Username and password come from
/// their accessors: `Position`'s password bounds are wrong for a URL with a username and no
/// password (url 2.5, caught by a debug assertion).
fn export(url: Url, scratch: &TypedArray<'_, u8>) -> String {
    let whole = url.as_str();
    let (user_start, user_end) = span(whole, url.username());
    let (pass_start, pass_end) = url.password().map_or((0, 0), |p| span(whole, p));
    let at = |position: Position| url[..position].len() as u32;
    let offsets = [
        at(Position::AfterScheme),
        user_start,
        user_end,
        pass_start,
        pass_end,
        at(Position::BeforeHost),
        at(Position::AfterHost),
        at(Position::BeforePort),
        at(Position::AfterPort),
        at(Position::BeforePath),
        at(Position::AfterPath),
        at(Position::AfterQuery),
    ];
    with_bytes_mut(scratch, |out| {
        for (slot, offset) in out.chunks_exact_mut(4).zip(offsets) {
            slot.copy_from_slice(&offset.to_ne_bytes());
        }
    });
    url.into()
}

fn parse(input: &str, base: Option<&str>) -> Option<Url> {
    match base {
        None => Url::parse(input).ok(),
        Some(base) => Url::parse(base).ok()?.join(input).ok(),
    }
}

/// The setter `urlSet` applies, by the index `url.js` gives it.
fn set(url: &mut Url, which: u32, value: &str) -> std::result::Result<(), ()> {
    match which {
        0 => quirks::set_href(url, value).map_err(drop),
        1 => quirks::set_protocol(url, value),
        2 => quirks::set_username(url, value),
        3 => quirks::set_password(url, value),
        4 => quirks::set_host(url, value),
        5 => quirks::set_hostname(url, value),
        6 => quirks::set_port(url, value),
        7 => {
            quirks::set_pathname(url, value);
            Ok(())
        }
        8 => {
            quirks::set_search(url, value);
            Ok(())
        }
        9 => {
            quirks::set_hash(url, value);
            Ok(())
        }
        _ => Err(()),
    }
}

pub fn register<'js>(ctx: &Ctx<'js>, natives: &Object<'js>) -> Result<()> {
    // urlParse(input, base | undefined, scratch) -> href (offsets in scratch) | undefined.
    natives.set(
        "urlParse",
        Function::new(
            ctx.clone(),
            |input: String, base: Option<String>, scratch: TypedArray<'js, u8>| {
                parse(&input, base.as_deref()).map(|url| export(url, &scratch))
            },
        )?,
    )?;
    // urlHref(input) -> href | undefined: for Request and Response.redirect, which keep only
    // the serialisation.
    natives.set(
        "urlHref",
        Function::new(ctx.clone(), |input: String| {
            Url::parse(&input).ok().map(String::from)
        })?,
    )?;
    // urlSet(href, which, value, scratch) -> href after the setter (offsets in scratch). A
    // setter the URL Standard ignores leaves the URL as it was; only an invalid `href` (setter
    // 0) gives undefined.
    natives.set(
        "urlSet",
        Function::new(
            ctx.clone(),
            |href: String, which: u32, value: String, scratch: TypedArray<'js, u8>| {
                let mut url = Url::parse(&href).ok()?;
                if set(&mut url, which, &value).is_err() && which == 0 {
                    return None;
                }
                Some(export(url, &scratch))
            },
        )?,
    )?;
    // urlOrigin(href) -> the origin's serialisation ("null" when opaque); asked for rarely, so
    // not part of every parse.
    natives.set(
        "urlOrigin",
        Function::new(ctx.clone(), |href: String| {
            Url::parse(&href)
                .map(|url| quirks::origin(&url))
                .unwrap_or_else(|_| "null".to_owned())
        })?,
    )?;
    // formParse(query) -> [name, value, name, value, ...] (application/x-www-form-urlencoded).
    natives.set(
        "formParse",
        Function::new(ctx.clone(), |query: String| {
            let mut flat = Vec::new();
            for (name, value) in form_urlencoded::parse(query.as_bytes()) {
                flat.push(name.into_owned());
                flat.push(value.into_owned());
            }
            flat
        })?,
    )?;
    // formSerialize([name, value, ...]) -> "a=1&b=2".
    natives.set(
        "formSerialize",
        Function::new(ctx.clone(), |flat: Array<'js>| -> Result<String> {
            let mut out = form_urlencoded::Serializer::new(String::new());
            let mut items = flat.iter::<String>();
            while let Some(name) = items.next() {
                let value = items.next().transpose()?.unwrap_or_default();
                out.append_pair(&name?, &value);
            }
            Ok(out.finish())
        })?,
    )?;
    Ok(())
}
