//! Text as the wire carries it: percent-decoding, lenient base64, and Snowplow's TSV-safe text.
//!
//! # Percent-decoding
//!
//! One decoder with two rules for `+`, and two ways to treat bytes that are not UTF-8 once
//! decoded. A `%` not followed by two hex digits is always kept as written.
//!
//! | function | `+` | not UTF-8 | used for |
//! |---|---|---|---|
//! | [`form_decode`] | a space | refused | Snowplow query strings (values are loaded) |
//! | [`form_decode_lossy`] | a space | replaced by U+FFFD | cookies, the redirect target, keys in a query |
//! | [`path_decode_lossy`] | kept | replaced by U+FFFD | a path segment (`/collect/{stream}`) |

use std::borrow::Cow;
use std::string::FromUtf8Error;

use base64::Engine as _;

use crate::event::Text;

/// What `+` means in the text being decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plus {
    /// `application/x-www-form-urlencoded`: `+` is a space.
    Space,
    /// A URL path: `+` is itself.
    Literal,
}

/// The bytes of `s` with `%XX` escapes decoded (and `+` as `plus` says); borrowed when there
/// is nothing to decode.
fn decode_bytes(s: &str, plus: Plus) -> Cow<'_, [u8]> {
    let bytes = s.as_bytes();
    let escapes = match plus {
        Plus::Space => bytes.iter().any(|&b| b == b'%' || b == b'+'),
        Plus::Literal => bytes.contains(&b'%'),
    };
    if !escapes {
        return Cow::Borrowed(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' if plus == Plus::Space => out.push(b' '),
            b'%' => match (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    Cow::Owned(out)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `s` form-decoded (`+` is a space); borrowed when it has nothing to decode. Refuses a
/// string whose decoded bytes are not UTF-8.
pub fn form_decode(s: &str) -> Result<Cow<'_, str>, FromUtf8Error> {
    match decode_bytes(s, Plus::Space) {
        Cow::Borrowed(_) => Ok(Cow::Borrowed(s)),
        Cow::Owned(bytes) => String::from_utf8(bytes).map(Cow::Owned),
    }
}

/// `s` form-decoded (`+` is a space), bytes that are not UTF-8 replaced by U+FFFD.
pub fn form_decode_lossy(s: &str) -> String {
    lossy(s, decode_bytes(s, Plus::Space))
}

/// A path segment decoded (`+` stays), bytes that are not UTF-8 replaced by U+FFFD.
pub fn path_decode_lossy(s: &str) -> String {
    lossy(s, decode_bytes(s, Plus::Literal))
}

fn lossy(s: &str, bytes: Cow<'_, [u8]>) -> String {
    match bytes {
        Cow::Borrowed(_) => s.to_owned(),
        Cow::Owned(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// Lenient base64: standard (`+/`) or URL-safe (`-_`) alphabet, with or without `=` padding,
/// surrounding whitespace ignored (commons-codec's `Base64(urlSafe = true)` as enrich uses it).
pub fn decode_base64(s: &str) -> Result<Vec<u8>, String> {
    let trimmed = s.trim().trim_end_matches('=');
    // Byte by byte: both replacements are ASCII, and any other byte is left for the decoder
    // to refuse.
    let normalised: Vec<u8> = trimmed
        .bytes()
        .map(|b| match b {
            b'-' => b'+',
            b'_' => b'/',
            b => b,
        })
        .collect();
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(&normalised)
        .or_else(|_| {
            // Non-canonical trailing bits (a sloppy encoder) are tolerated, as commons-codec does.
            base64::engine::GeneralPurpose::new(
                &base64::alphabet::STANDARD,
                base64::engine::GeneralPurposeConfig::new()
                    .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireNone)
                    .with_decode_allow_trailing_bits(true),
            )
            .decode(&normalised)
        })
        .map_err(|e| format!("not valid base64: {e}"))
}

/// Snowplow's `toTsvSafe`: tabs become four spaces, other control characters are removed,
/// an empty result is no value.
pub fn tsv_safe(s: &str) -> Option<Text> {
    // Clean text (the common case) is copied whole. Every control character (U+0000–U+001F,
    // U+007F–U+009F) is one of these bytes in UTF-8: < 0x20, 0x7F, or the lead byte 0xC2 of
    // U+0080–U+00BF (which also covers harmless characters: those take the slow path).
    // A fold without an early exit, so the compiler checks many bytes per instruction.
    let clean = !s.bytes().fold(false, |seen, b| {
        seen | (b < 0x20) | (b == 0x7f) | (b == 0xc2)
    });
    if clean {
        return (!s.is_empty()).then(|| Text::from(s));
    }
    let mut out = Text::with_capacity(s.len());
    for c in s.chars() {
        if c == '\t' {
            out.push_str("    ");
        } else if !c.is_control() {
            out.push(c);
        }
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding_turns_plus_into_space_and_keeps_stray_percents() {
        assert_eq!(form_decode_lossy("a%2Fb+c"), "a/b c");
        assert_eq!(form_decode_lossy("100%"), "100%");
        assert_eq!(form_decode_lossy("%zz%4"), "%zz%4");
        assert_eq!(form_decode_lossy("plain"), "plain");
        assert!(matches!(form_decode("plain"), Ok(Cow::Borrowed("plain"))));
        assert_eq!(form_decode("a+b%21").unwrap(), "a b!");
        assert!(form_decode("%ff").is_err());
        assert_eq!(form_decode_lossy("%ff"), "\u{fffd}");
    }

    #[test]
    fn path_decoding_keeps_plus() {
        assert_eq!(path_decode_lossy("a+b%20c"), "a+b c");
        assert_eq!(path_decode_lossy("%4"), "%4");
        assert_eq!(path_decode_lossy("%e2%82%ac"), "€");
    }

    #[test]
    fn base64_accepts_both_alphabets_with_or_without_padding() {
        // "{\"a\":\"??>\"}" has bytes that encode to '+' / '/' in standard base64.
        let text = "{\"a\":\"\u{fffe}?>\"}";
        let std_padded = base64::engine::general_purpose::STANDARD.encode(text);
        let url_unpadded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text);
        assert_ne!(std_padded.trim_end_matches('='), url_unpadded);
        for enc in [
            std_padded.clone(),
            url_unpadded.clone(),
            std_padded.trim_end_matches('=').to_owned(),
            base64::engine::general_purpose::URL_SAFE.encode(text),
        ] {
            assert_eq!(decode_base64(&enc).unwrap(), text.as_bytes(), "{enc}");
        }
        assert!(decode_base64("not*base64").is_err());
        assert!(decode_base64("a").is_err());
    }
}
