//! WHATWG URL parsing and setters through the `url` crate's `quirks` module, which implements
//! the URL Standard's API algorithms (`href`, `protocol`, ... getters and setters).

use rquickjs::prelude::Opt;
use rquickjs::{Array, Ctx, Function, Object, Result};
use url::{form_urlencoded, quirks, Url};

/// Index of each component in the array `urlParse` and `urlSet` return; mirrored in `url.js`.
const COMPONENTS: usize = 11;

fn components(url: &Url) -> [String; COMPONENTS] {
    [
        quirks::href(url).to_owned(),
        quirks::origin(url),
        quirks::protocol(url).to_owned(),
        quirks::username(url).to_owned(),
        quirks::password(url).to_owned(),
        quirks::host(url).to_owned(),
        quirks::hostname(url).to_owned(),
        quirks::port(url).to_owned(),
        quirks::pathname(url).to_owned(),
        quirks::search(url).to_owned(),
        quirks::hash(url).to_owned(),
    ]
}

fn parse(input: &str, base: Option<&str>) -> Option<Url> {
    match base {
        None => Url::parse(input).ok(),
        Some(base) => Url::parse(base).ok()?.join(input).ok(),
    }
}

/// Which setter `urlSet` applies; the numbers are the component indexes above.
fn set(url: &mut Url, which: u32, value: &str) -> std::result::Result<(), ()> {
    match which {
        0 => quirks::set_href(url, value).map_err(drop),
        2 => quirks::set_protocol(url, value),
        3 => quirks::set_username(url, value),
        4 => quirks::set_password(url, value),
        5 => quirks::set_host(url, value),
        6 => quirks::set_hostname(url, value),
        7 => quirks::set_port(url, value),
        8 => {
            quirks::set_pathname(url, value);
            Ok(())
        }
        9 => {
            quirks::set_search(url, value);
            Ok(())
        }
        10 => {
            quirks::set_hash(url, value);
            Ok(())
        }
        _ => Err(()),
    }
}

pub fn register<'js>(ctx: &Ctx<'js>, natives: &Object<'js>) -> Result<()> {
    // urlParse(input, base?) -> [href, origin, protocol, ...] | undefined when it does not parse.
    natives.set(
        "urlParse",
        Function::new(ctx.clone(), |input: String, base: Opt<String>| {
            parse(&input, base.0.as_deref()).map(|url| components(&url).to_vec())
        })?,
    )?;
    // urlHref(input) -> the serialised URL | undefined: for Request and Response.redirect,
    // which keep only the href (no eleven strings to build).
    natives.set(
        "urlHref",
        Function::new(ctx.clone(), |input: String| {
            Url::parse(&input).ok().map(String::from)
        })?,
    )?;
    // urlSet(href, which, value) -> components after the setter. A setter the URL Standard
    // ignores leaves them as they were; only an invalid `href` gives undefined.
    natives.set(
        "urlSet",
        Function::new(ctx.clone(), |href: String, which: u32, value: String| {
            let mut url = Url::parse(&href).ok()?;
            match set(&mut url, which, &value) {
                Err(()) if which == 0 => None,
                _ => Some(components(&url).to_vec()),
            }
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
