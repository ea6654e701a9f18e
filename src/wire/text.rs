//! Text as the wire carries it: percent-decoding, lenient base64, and Snowplow's TSV-safe text.
//!
//! # Percent-decoding
//!
//! Every `%XX` escape the daemon reads is decoded here, by the `percent-encoding` crate (the one
//! `url` and `form_urlencoded` are built on). Two rules decide the rest:
//!
//! * `+` is a space only in `application/x-www-form-urlencoded` text: query strings and form
//!   bodies. Everywhere else (a path segment, a cookie value) `+` is itself.
//! * A `%` not followed by two hex digits is kept as written (`100%`, `%zz`): Snowplow trackers
//!   send such values and the reference enrich keeps them.
//!
//! | function | `+` | not UTF-8 | used for |
//! |---|---|---|---|
//! | [`form_decode`] | a space | refused | Snowplow query strings (values are loaded) |
//! | [`form_decode_lossy`] | a space | replaced by U+FFFD | single query parameters: `nuid`, the redirect target `u`, `writeKey` |
//! | [`percent_decode_lossy`] | kept | replaced by U+FFFD | a path segment (`/collect/{stream}`), the admin console's cookie |
//!
//! Percent-*encoding* goes through the same crate ([`percent_encoding::utf8_percent_encode`]).

use std::borrow::Cow;
use std::string::FromUtf8Error;

use base64::Engine as _;
use percent_encoding::percent_decode;

use crate::event::Text;

/// What `+` means in the text being decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plus {
    /// `application/x-www-form-urlencoded`: `+` is a space.
    Space,
    /// Anything else: `+` is itself.
    Literal,
}

/// The bytes of `s` with `%XX` escapes decoded (and `+` as `plus` says); borrowed when there
/// is nothing to decode.
fn decode_bytes(s: &str, plus: Plus) -> Cow<'_, [u8]> {
    let bytes = s.as_bytes();
    if plus == Plus::Space && bytes.contains(&b'+') {
        // `+` becomes a space before the escapes are decoded, so `%2B` stays a `+`.
        let spaced: Vec<u8> = bytes
            .iter()
            .map(|&b| if b == b'+' { b' ' } else { b })
            .collect();
        return Cow::Owned(percent_decode(&spaced).collect());
    }
    percent_decode(bytes).into()
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

/// `s` percent-decoded with `+` kept, bytes that are not UTF-8 replaced by U+FFFD.
pub fn percent_decode_lossy(s: &str) -> String {
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
    fn percent_decoding_outside_forms_keeps_plus() {
        assert_eq!(percent_decode_lossy("a+b%20c"), "a+b c");
        assert_eq!(percent_decode_lossy("%4"), "%4");
        assert_eq!(percent_decode_lossy("%e2%82%ac"), "€");
        assert_eq!(percent_decode_lossy("%2B%zz"), "+%zz");
    }

    #[test]
    fn an_escaped_plus_in_a_form_stays_a_plus() {
        assert_eq!(form_decode("a%2Bb+c").unwrap(), "a+b c");
        assert_eq!(form_decode("+%2").unwrap(), " %2");
        // Nothing decoded: the input itself, not a copy.
        assert!(matches!(form_decode("100%"), Ok(Cow::Borrowed("100%"))));
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
