//! Text that came from the network (host ids, host names, broadcast messages, close reasons,
//! headers), made safe to write into a log line: a CR or LF would forge a log line of its own,
//! an ESC sequence would rewrite the operator's terminal, and a NUL truncates lines in some
//! log readers. The same text in a CSV export is made safe for spreadsheets ([`csv_cell`]).

use std::borrow::Cow;
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

/// `text` as one CSV cell that a spreadsheet shows as text and never runs as a formula
/// (OWASP's "CSV injection": `=cmd|' /C calc'!A0` in a host name would run a program when an
/// operator opens the export). A cell starting with `=`, `+`, `-`, `@`, a tab or a CR gets a
/// `'` in front, unless it is a plain number (a negative temperature stays a number); a cell
/// holding a comma, a quote or a line break is quoted, its quotes doubled (RFC 4180). Every
/// cell of a CSV export that holds text from the network (host ids and names, messages) must
/// go through it; numbers pass unchanged.
pub fn csv_cell(text: &str) -> Cow<'_, str> {
    let formula = text.starts_with(['=', '+', '-', '@', '\t', '\r']) && !is_plain_number(text);
    let quoted = text.contains([',', '"', '\n', '\r']);
    if !formula && !quoted {
        return Cow::Borrowed(text);
    }
    let mut cell = String::with_capacity(text.len() + 4);
    if quoted {
        cell.push('"');
    }
    if formula {
        cell.push('\'');
    }
    for c in text.chars() {
        if c == '"' {
            cell.push('"');
        }
        cell.push(c);
    }
    if quoted {
        cell.push('"');
    }
    Cow::Owned(cell)
}

/// Whether `text` is a finite number written with digits, sign, point and exponent only.
fn is_plain_number(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'))
        && text.parse::<f64>().is_ok_and(f64::is_finite)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_never_start_a_formula_and_numbers_stay_numbers() {
        assert_eq!(csv_cell("web-1"), "web-1");
        assert_eq!(csv_cell("=cmd|' /C calc'!A0"), "'=cmd|' /C calc'!A0");
        assert_eq!(csv_cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_cell("+1+2"), "'+1+2");
        assert_eq!(csv_cell("-2+3+cmd|' /C calc'!A0"), "'-2+3+cmd|' /C calc'!A0");
        assert_eq!(csv_cell("\t=1"), "'\t=1");
        assert_eq!(csv_cell("=1,\"x\""), "\"'=1,\"\"x\"\"\"");
        assert_eq!(csv_cell("a\nb"), "\"a\nb\"");
        for number in ["-12.5", "-3", "+4", "1e-3", "0", "12.5 13.0"] {
            assert_eq!(csv_cell(number), number, "{number}");
        }
        assert_eq!(csv_cell("-inf"), "'-inf", "not a finite number: text");
        assert!(matches!(csv_cell("plain"), Cow::Borrowed(_)));
    }

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
