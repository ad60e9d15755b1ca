//! What the chat relays of a member's text: valid UTF-8 without control characters.
//!
//! Pure: bytes in, bytes out. A member's text reaches other members' terminals (and,
//! one day, WebSocket text messages, which must be UTF-8), so it is cleaned on the way
//! through:
//! - an invalid UTF-8 sequence becomes U+FFFD (one per maximal invalid sequence, as
//!   [`String::from_utf8_lossy`] does);
//! - a control character becomes U+FFFD too: the C0 controls but tab (U+0000 to
//!   U+001F), DEL (U+007F) and the C1 controls (U+0080 to U+009F). So no member can
//!   colour another's terminal (`ESC [31m`), move its cursor, or start a line over
//!   with a bare `\r` to forge a `* ` server notice.
//!
//! Everything else, tab and all printable Unicode, passes unchanged.

/// What replaces an invalid sequence or a control character: U+FFFD, in UTF-8.
const REPLACEMENT: &[u8] = "\u{FFFD}".as_bytes();

/// Appends `text` to `out`, cleaned as the module docs say.
pub fn push_clean(out: &mut Vec<u8>, text: &[u8]) {
    // Chat is mostly printable ASCII: copy that in one go.
    if text.iter().all(|&b| is_plain_ascii(b)) {
        out.extend_from_slice(text);
        return;
    }
    for chunk in text.utf8_chunks() {
        for c in chunk.valid().chars() {
            if is_relayed(c) {
                let mut utf8 = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
            } else {
                out.extend_from_slice(REPLACEMENT);
            }
        }
        if !chunk.invalid().is_empty() {
            out.extend_from_slice(REPLACEMENT);
        }
    }
}

/// Printable ASCII or tab: relayed as it is.
fn is_plain_ascii(b: u8) -> bool {
    (b' '..=b'~').contains(&b) || b == b'\t'
}

/// True for a character relayed as it is: anything but a control character (Unicode
/// category Cc: C0, DEL, C1), tab excepted.
fn is_relayed(c: char) -> bool {
    c == '\t' || !c.is_control()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &[u8], expected: &str) {
        // Appended, after what is there.
        let mut out = b"<bob> ".to_vec();
        push_clean(&mut out, text);
        let out = String::from_utf8(out).expect("clean text is UTF-8");
        assert_eq!(
            out.strip_prefix("<bob> ").expect("the prefix is kept"),
            expected,
            "cleaning {text:?}"
        );
    }

    #[test]
    fn printable_text_and_tabs_pass_unchanged() {
        check(b"", "");
        check(b"hello, world", "hello, world");
        check(b"a\tb ~!", "a\tb ~!");
        check(
            "caf\u{e9} \u{1f600} \u{a0}\u{ad}".as_bytes(),
            "caf\u{e9} \u{1f600} \u{a0}\u{ad}",
        );
    }

    #[test]
    fn control_characters_become_replacement_characters() {
        check(b"\x1b[31mred\x1b[0m", "\u{FFFD}[31mred\u{FFFD}[0m");
        check(b"fake\r* bob is now root", "fake\u{FFFD}* bob is now root");
        check(b"\x00\x07\x08\n\x0b\x0c\x1f\x7f", &"\u{FFFD}".repeat(8));
        // C1 controls, CSI (U+009B) among them, as UTF-8.
        check(
            "\u{80}\u{9b}31m\u{9f}".as_bytes(),
            "\u{FFFD}\u{FFFD}31m\u{FFFD}",
        );
        // The first characters past each range pass.
        check(b" ", " ");
        check("\u{a0}".as_bytes(), "\u{a0}");
    }

    #[test]
    fn invalid_utf8_becomes_one_replacement_character_per_bad_sequence() {
        check(b"caf\xe9!", "caf\u{FFFD}!");
        check(b"\xff\xfe", "\u{FFFD}\u{FFFD}");
        // A truncated sequence is one bad sequence, however long.
        check(b"\xf0\x9f\x98x", "\u{FFFD}x");
        check(b"end\xe2\x82", "end\u{FFFD}");
        // Overlong encodings and surrogates are invalid.
        check(b"\xc0\xaf", "\u{FFFD}\u{FFFD}");
        check(b"\xed\xa0\x80", "\u{FFFD}\u{FFFD}\u{FFFD}");
        // A lone C1 byte is invalid UTF-8, not a C1 control: one replacement either way.
        check(b"\x9b31m", "\u{FFFD}31m");
    }

    /// The rule written another way: `from_utf8_lossy`, then controls replaced.
    fn reference(text: &[u8]) -> String {
        String::from_utf8_lossy(text)
            .chars()
            .map(|c| match c == '\t' || !c.is_control() {
                true => c,
                false => '\u{FFFD}',
            })
            .collect()
    }

    #[test]
    fn every_byte_between_others_is_cleaned_as_the_rule_says() {
        for b in 0..=255u8 {
            let text = [b'a', b, b'z'];
            check(&text, &reference(&text));
        }
        for text in [&b"\xe2\x82\xac\xe2\x82"[..], b"\x1b\xc2\x9b\xc2"] {
            check(text, &reference(text));
        }
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_come_out_as_the_rule_says(
            text in proptest::collection::vec(proptest::num::u8::ANY, 0..48),
        ) {
            check(&text, &reference(&text));
        }

        #[test]
        fn any_text_without_controls_passes_unchanged(text in "[^\\p{Cc}]{0,24}") {
            check(text.as_bytes(), &text);
        }
    }
}
