//! Text that came from someone else, made safe to print.
//!
//! A peer, a client or a file can put anything in a string: a newline
//! followed by a whole fake audit entry, an ANSI escape that recolours or
//! erases the operator's terminal, a bidirectional override that makes
//! `ngo:…` read as something else. Ids are checked against their syntax
//! where they arrive; every text output (the CLI's tables, log lines)
//! still passes what it prints through [`escape`], because free text
//! (notes, reasons) legitimately holds characters that must not reach a
//! terminal raw. The JSON outputs and the console escape by their format.
//!
//! So no value starts a line of its own or drives a terminal: the CLI's
//! audit query and its request, release and alert views print through
//! [`escape`], log fields through [`Escaped`], and a value echoed in a
//! message of ours (a refusal, an invalid id) through [`quote`], which
//! also cuts it short.
//!
//! Bytes people compare by eye (hashes, key ids, signatures) are written
//! as hex: [`hex`], [`unhex`].

use std::borrow::Cow;
use std::fmt;

/// Whether `c` must not reach a terminal or a line-based log raw: control
/// characters (C0, DEL, C1) and the Unicode bidirectional controls.
fn unsafe_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// `s` with every control character written as an escape (`\n`, `\t`,
/// `\u{1b}`), and backslashes doubled so an escape cannot be faked; `s`
/// itself when there is nothing to escape (the usual case costs nothing).
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| unsafe_char(c) || c == '\\') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if unsafe_char(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// [`escape`] as a `Display` value, for log fields: `reason = %Escaped(&r)`.
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&escape(self.0))
    }
}

/// Someone else's value quoted in a message of ours: escaped and cut to
/// `max` characters, so a refusal cannot carry a payload back out.
pub fn quote(s: &str, max: usize) -> String {
    let escaped = escape(s);
    let mut out: String = escaped.chars().take(max).collect();
    if escaped.chars().nth(max).is_some() {
        out.push('…');
    }
    format!("`{out}`")
}

/// Bytes as lower-case hex: hashes, key ids and signatures in files and
/// messages people compare by eye.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The bytes [`hex`] wrote (either case), or `None`.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_forged_line_stays_on_one_line() {
        let forged = "labour:x\n 9999 2026-01-01 node store.restore OK FORGED\u{1b}[31m";
        let out = escape(forged);
        assert!(!out.contains('\n') && !out.contains('\u{1b}'), "{out}");
        assert_eq!(
            out,
            "labour:x\\n 9999 2026-01-01 node store.restore OK FORGED\\u{1b}[31m"
        );
        assert!(matches!(escape("ngo:7f0c"), Cow::Borrowed(_)));
        assert_eq!(
            escape("a\\nb"),
            "a\\\\nb",
            "a literal backslash-n is not a newline"
        );
        assert_eq!(escape("\u{202e}evil"), "\\u{202e}evil");
        assert_eq!(quote("abcdef", 3), "`abc…`");
    }

    proptest! {
        /// Whatever the input, the output holds no control character, and
        /// different inputs never print the same.
        #[test]
        fn escaped_text_is_printable_and_unambiguous(a in any::<String>(), b in any::<String>()) {
            let (ea, eb) = (escape(&a), escape(&b));
            prop_assert!(!ea.chars().any(unsafe_char));
            if a != b {
                prop_assert_ne!(ea, eb);
            }
        }
    }
}
