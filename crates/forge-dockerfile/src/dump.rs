//! BuildKit's parse-tree dump (`parser.Node.Dump`): one s-expression per
//! instruction, e.g. `(copy ["--from=a"] "src" "/dst/")`, strings quoted as
//! Go's `strconv.Quote` does. This is the format of BuildKit's parser test
//! vectors and of `forge parse`.

use crate::ast::{Ast, Node};
use crate::instructions::KNOWN_INSTRUCTIONS;
use std::fmt::Write as _;

/// The dump of a whole file, one line per instruction, newline-terminated.
pub fn dump(ast: &Ast) -> String {
    let mut out = String::new();
    for node in &ast.nodes {
        out.push('(');
        out.push_str(&dump_node(node));
        out.push_str(")\n");
    }
    out
}

/// The dump of one instruction, without the enclosing parentheses.
pub fn dump_node(node: &Node) -> String {
    let mut s = node.keyword.value.to_lowercase();
    if !node.flags.is_empty() {
        let flags: Vec<String> = node.flags.iter().map(|f| go_quote(&f.value)).collect();
        let _ = write!(s, " [{}]", flags.join(" "));
    }
    let name = node.name();
    if let Some(inner) = &node.onbuild {
        let _ = write!(s, " ({})", dump_node(inner));
    } else if !KNOWN_INSTRUCTIONS.contains(&name.as_str()) {
        // BuildKit's parser keeps an empty argument node for instructions it
        // does not know.
        s.push_str(" \"\"");
    } else {
        for arg in &node.args {
            s.push(' ');
            s.push_str(&go_quote(&arg.value));
        }
    }
    s.trim_matches(char::is_whitespace).to_string()
}

/// Go's `strconv.Quote`: `"` and `\` escaped, printable characters kept,
/// `\a \b \f \n \r \t \v`, other control characters as `\xHH`, other
/// non-printable characters as `\uHHHH` / `\UHHHHHHHH`.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if is_go_printable(c) => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

/// Go's `unicode.IsPrint`: letters, marks, numbers, punctuation, symbols and
/// the ASCII space. Without Unicode category tables at hand, this rejects the
/// categories Go rejects that occur in practice: controls, separators other
/// than U+0020, format characters, private use and noncharacters.
fn is_go_printable(c: char) -> bool {
    let u = c as u32;
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    let format_or_private = matches!(u,
        0x00AD | 0x0600..=0x0605 | 0x061C | 0x06DD | 0x070F | 0x0890..=0x0891 | 0x08E2
        | 0x180E | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F
        | 0xFEFF | 0xFFF9..=0xFFFB | 0x110BD | 0x110CD | 0x13430..=0x1343F
        | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F
        | 0xE000..=0xF8FF | 0xF0000..=0x10FFFF | 0xFDD0..=0xFDEF);
    let noncharacter = (u & 0xFFFE) == 0xFFFE;
    !format_or_private && !noncharacter
}

#[cfg(test)]
mod tests {
    use super::go_quote;

    #[test]
    fn quotes_like_go() {
        assert_eq!(go_quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(go_quote("tab\there\n"), r#""tab\there\n""#);
        assert_eq!(go_quote("\u{1}\u{7f}"), r#""\x01\x7f""#);
        assert_eq!(go_quote("héllo 한국어 😀"), "\"héllo 한국어 😀\"");
        assert_eq!(
            go_quote("\u{feff}\u{a0}\u{2028}"),
            r#""\ufeff\u00a0\u2028""#
        );
        assert_eq!(go_quote("\u{f0000}"), r#""\U000f0000""#);
    }
}
