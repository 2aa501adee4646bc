//! Data shown on the terminal cannot drive it. A Redis key, a file name or a watched log line may
//! hold a carriage return, an ANSI escape or a bidi override that, printed as is, would repaint
//! what the operator reads ("0 keys match now"). The program shows such data through [`escape`],
//! which spells every such character out (`\r`, `\x1b`, `\u{202e}`), so what is shown is what is
//! there. Step output passed through as the command printed it is not data the program shows.

use std::borrow::Cow;

/// `text` with every control character (C0, DEL, C1) and every bidi control spelt out.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x100 && needs_escape(c) => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A path, as [`escape`] shows text.
pub fn path(path: &std::path::Path) -> String {
    escape(&path.to_string_lossy()).into_owned()
}

fn needs_escape(c: char) -> bool {
    c.is_control() || is_bidi_control(c)
}

/// Characters that reorder the text around them on the screen.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_spelt_out() {
        assert_eq!(escape("page:1"), "page:1");
        assert_eq!(escape("a\rb\x1b[2Kc\n\t\x7f\u{9b}"), "a\\rb\\x1b[2Kc\\n\\t\\x7f\\x9b");
        assert_eq!(escape("x\u{202e}y"), "x\\u{202e}y");
        assert_eq!(escape("clé ✓"), "clé ✓");
    }
}
