//! Names: one set of rules for the config file, the admin API and the CLI, so that a name one
//! accepts the others accept too.
//!
//! | what | rule |
//! |---|---|
//! | namespace, script | 1 to 63 of `a-z 0-9 - _`, starting with a letter or digit: safe as a directory name; a leading `_` is reserved for the platform (`_platform`) |
//! | binding (and so secret) | 1 to 255 of `A-Z a-z 0-9 _ $`, not starting with a digit: a JavaScript identifier, as Cloudflare requires (`env.NAME`) |
//! | tag | 1 to 256 printable characters without `,` or `&` (they separate tag filters) |
//! | KV namespace title | 1 to 512 characters without control characters |
//!
//! Each check says what is wrong in a sentence a caller can put after the name.

/// Most tags per script (Cloudflare's limit).
pub const MAX_TAGS: usize = 8;

/// Namespace and script names.
pub fn valid_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 63 {
        return Err("names are 1 to 63 characters long");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return Err("names may contain only lower-case letters, digits, `-` and `_`");
    }
    if !name.as_bytes()[0].is_ascii_alphanumeric() {
        return Err(
            "names start with a letter or a digit; a leading `_` is reserved for the platform",
        );
    }
    Ok(())
}

/// Binding names, secrets' included.
pub fn valid_binding_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 255 {
        return Err("binding names are 1 to 255 characters long");
    }
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'$';
    if !name.bytes().all(word) || name.as_bytes()[0].is_ascii_digit() {
        return Err(
            "binding names are JavaScript identifiers: letters, digits, `_` and `$`, not starting with a digit",
        );
    }
    Ok(())
}

/// One tag.
pub fn valid_tag(tag: &str) -> Result<(), &'static str> {
    if tag.is_empty() || tag.len() > 256 {
        return Err("tags are 1 to 256 characters long");
    }
    if tag.contains([',', '&']) {
        return Err("tags may not contain `,` or `&`");
    }
    if tag.chars().any(char::is_control) {
        return Err("tags may not contain control characters");
    }
    Ok(())
}

/// A script's tags: each valid, at most [`MAX_TAGS`].
pub fn valid_tags(tags: &[String]) -> Result<(), String> {
    if tags.len() > MAX_TAGS {
        return Err(format!(
            "{} tags given; a script may have at most {MAX_TAGS}",
            tags.len()
        ));
    }
    for tag in tags {
        valid_tag(tag).map_err(|why| format!("tag `{tag}`: {why}"))?;
    }
    Ok(())
}

/// A KV namespace title.
pub fn valid_kv_title(title: &str) -> Result<(), &'static str> {
    if title.is_empty() || title.len() > 512 {
        return Err("a KV namespace title is 1 to 512 characters");
    }
    if title.chars().any(char::is_control) {
        return Err("a KV namespace title may not contain control characters");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_and_script_names() {
        for ok in [
            "a",
            "production",
            "customer-1",
            "x_y",
            "0abc",
            &"a".repeat(63),
        ] {
            assert_eq!(valid_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "_platform",
            "-",
            "-a",
            "A",
            "a/b",
            "../x",
            "a b",
            &"a".repeat(64),
        ] {
            assert!(valid_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn binding_names() {
        for ok in ["API_KEY", "_x", "$", "env2", &"A".repeat(255)] {
            assert_eq!(valid_binding_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", "../etc", "a\nb", "2fa", "a-b", "a b", &"A".repeat(256)] {
            assert!(valid_binding_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tags_and_titles() {
        assert_eq!(valid_tag("plan pro"), Ok(()));
        for bad in ["", "a,b", "a&b", "a\nb", &"t".repeat(257)] {
            assert!(valid_tag(bad).is_err(), "{bad:?}");
        }
        assert!(valid_tags(&vec!["t".to_string(); MAX_TAGS + 1]).is_err());
        assert_eq!(valid_kv_title("My cache"), Ok(()));
        assert!(valid_kv_title("a\u{7}b").is_err());
        assert!(valid_kv_title("").is_err());
    }
}
