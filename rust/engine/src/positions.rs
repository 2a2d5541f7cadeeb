//! Positions in a source text as V8 counts them, and the error of a source that cannot be run
//! at one of them. Shared by the source pipeline (`source.rs`) and the code generation of
//! TypeScript (`transform.rs`).

/// A problem that prevents a source text from being run, with its position in the original text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceError {
    /// What went wrong, naming the offending construct.
    pub message: String,
    /// 1-based line in the original source. `\n`, `\r\n`, `\r`, U+2028 and U+2029 each end a
    /// line, as in ECMAScript.
    pub line: u32,
    /// 1-based column in UTF-16 code units (the unit V8 uses for columns).
    pub column: u32,
}

impl std::fmt::Display for SourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}:{})", self.message, self.line, self.column)
    }
}

impl std::error::Error for SourceError {}

impl SourceError {
    /// An error at byte `offset` of `src`.
    pub(crate) fn at(src: &str, offset: u32, message: impl Into<String>) -> Self {
        let (line, column) = line_column(src, offset);
        SourceError {
            message: message.into(),
            line,
            column,
        }
    }
}

/// An ECMAScript line terminator.
pub(crate) fn is_line_terminator(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\u{2028}' | '\u{2029}')
}

pub(crate) fn has_line_terminator(text: &str) -> bool {
    text.chars().any(is_line_terminator)
}

/// 1-based (line, UTF-16 column) of byte `offset` in `src`.
pub(crate) fn line_column(src: &str, offset: u32) -> (u32, u32) {
    let mut offset = (offset as usize).min(src.len());
    while !src.is_char_boundary(offset) {
        offset -= 1;
    }
    let (mut line, mut column) = (1u32, 1u32);
    let mut chars = src[..offset].chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\r' && chars.peek() == Some(&'\n') {
            continue; // `\r\n` is one line break, counted at the `\n`
        }
        if is_line_terminator(c) {
            line += 1;
            column = 1;
        } else {
            column += c.len_utf16() as u32;
        }
    }
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_column_counts_utf16_and_all_line_terminators() {
        let src = "a\r\nb\rc\u{2028}d\né😀x";
        assert_eq!(line_column(src, 0), (1, 1));
        assert_eq!(line_column(src, 3), (2, 1));
        assert_eq!(line_column(src, 5), (3, 1));
        let x = src.find('x').unwrap() as u32;
        assert_eq!(line_column(src, x), (5, 4)); // é = 1 unit, 😀 = 2 units
    }
}
