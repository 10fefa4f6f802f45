//! Text that came from the network (host ids, host names, broadcast messages, close reasons,
//! headers), made safe to write into a log line: a CR or LF would forge a log line of its own,
//! an ESC sequence would rewrite the operator's terminal, and a NUL truncates lines in some
//! log readers.

use std::fmt;

/// `text` for a log line: every control character (C0, DEL and C1) written as an escape
/// (`\n`, `\r`, `\t`, `\0`, `\x1b`, `\u{85}`…) and a backslash doubled, so the line stays one
/// line and says exactly what was sent.
pub fn escaped(text: &str) -> Escaped<'_> {
    Escaped(text)
}

/// See [`escaped`].
pub struct Escaped<'a>(&'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write;
        // Plain text, by far the most common, is written in one piece.
        if !self.0.chars().any(needs_escape) {
            return f.write_str(self.0);
        }
        for c in self.0.chars() {
            match c {
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                '\0' => f.write_str("\\0")?,
                c if c.is_control() && (c as u32) < 0x80 => write!(f, "\\x{:02x}", c as u32)?,
                c if needs_escape(c) => write!(f, "\\u{{{:x}}}", c as u32)?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

fn needs_escape(c: char) -> bool {
    // Line and paragraph separators end lines in some viewers too.
    c == '\\' || c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

/// Whether `text` has a control character (which a host id or a broadcast message may not).
pub fn has_control(text: &str) -> bool {
    text.chars().any(|c| c.is_control() || c == '\u{2028}' || c == '\u{2029}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_plain_text_is_kept() {
        assert_eq!(escaped("web-1.example").to_string(), "web-1.example");
        assert_eq!(
            escaped("a\r\nINFO forged\u{1b}[2J\0\\x\u{85}\u{2028}é").to_string(),
            "a\\r\\nINFO forged\\x1b[2J\\0\\\\x\\u{85}\\u{2028}é"
        );
        assert!(!escaped("a\nb").to_string().contains('\n'));
        assert!(has_control("a\u{7f}") && has_control("a\tb") && !has_control("naïve host"));
    }
}
