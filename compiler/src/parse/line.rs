//! Physical lines and their joining into logical lines.
//!
//! BuildKit reads a Dockerfile with a line scanner that keeps each line's
//! `\n`, refuses lines longer than 64 KiB, and then decides line by line
//! whether the instruction continues (escape character as the last non-blank
//! character). These helpers reproduce those rules on borrowed text, without
//! allocating per character.

use super::Input;
use crate::ast::Span;

/// The longest physical line BuildKit's scanner accepts, without its `\n`
/// (`bufio.MaxScanTokenSize - 1`).
pub const MAX_LINE_LEN: usize = 64 * 1024 - 1;

/// One physical line: its text including the line ending, and its 1-based number.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PhysLine<'a> {
    /// The text, with its `\n` if it had one.
    pub raw: Input<'a>,
    /// 1-based line number.
    pub no: u32,
}

/// Iterator over physical lines that stops (as if at end of file) before the
/// first line longer than [`MAX_LINE_LEN`] and remembers where that was.
pub(crate) struct Lines<'a> {
    rest: Input<'a>,
    no: u32,
    /// Bytes already dropped from the first line (a BOM), which still count
    /// towards its length as they do for BuildKit's scanner.
    first_extra: usize,
    /// The 1-based number of the first over-long line, once reached.
    pub too_long: Option<u32>,
}

impl<'a> Lines<'a> {
    /// Lines of `src` (a BOM must already be removed).
    #[cfg(test)]
    pub fn new(src: Input<'a>) -> Self {
        Self::with_first_extra(src, 0)
    }

    /// Lines of `src`, whose first line had `extra` bytes removed already.
    pub fn with_first_extra(src: Input<'a>, extra: usize) -> Self {
        Lines {
            rest: src,
            no: 0,
            first_extra: extra,
            too_long: None,
        }
    }

    /// Number of lines handed out so far.
    pub fn consumed(&self) -> u32 {
        self.no
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = PhysLine<'a>;

    // line = { any byte but LF } [ LF ]      -- at most MAX_LINE_LEN bytes before the LF
    fn next(&mut self) -> Option<PhysLine<'a>> {
        if self.rest.is_empty() || self.too_long.is_some() {
            return None;
        }
        let (content_len, raw_len) = match self.rest.find('\n') {
            Some(i) => (i, i + 1),
            None => (self.rest.len(), self.rest.len()),
        };
        let extra = if self.no == 0 { self.first_extra } else { 0 };
        if content_len + extra > MAX_LINE_LEN {
            self.too_long = Some(self.no + 1);
            return None;
        }
        let (raw, rest) = self.rest.split_at(raw_len);
        self.rest = rest;
        self.no += 1;
        Some(PhysLine { raw, no: self.no })
    }
}

// newline = { CR | LF }        -- every trailing CR and LF, like bytes.TrimRight(s, "\r\n")
pub(crate) fn trim_newline(s: Input<'_>) -> Input<'_> {
    s.trim_end_matches(['\r', '\n'])
}

// comment = { unicode-space } "#" { any }
pub(crate) fn is_comment(raw: Input<'_>) -> bool {
    raw.trim_start().starts_with('#')
}

// empty-continuation = { unicode-space } newline
pub(crate) fn is_empty_continuation(raw: Input<'_>) -> bool {
    trim_newline(raw).trim_start().is_empty()
}

// continuation = [ not-escape ] escape { " " | "\t" } EOL
//
// Returns the line with the escape character and its trailing blanks removed,
// and whether the logical line ends here. Like BuildKit, only one character
// of look-behind decides whether the escape is itself escaped, so `a\\` ends
// the line and so does `a\\\`.
pub(crate) fn trim_continuation(line: Input<'_>, escape: char) -> (Input<'_>, bool) {
    let t = line.trim_end_matches([' ', '\t']);
    let Some(before) = t.strip_suffix(escape) else {
        return (line, true);
    };
    if before.ends_with(escape) {
        return (line, true);
    }
    (before, false)
}

/// Where a piece of a logical line came from, for mapping byte offsets in
/// the joined text back to physical line and column.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Segment<'a> {
    /// Byte offset in the logical line where this piece starts.
    pub at: usize,
    /// Physical line number.
    pub line: u32,
    /// The physical line without its line ending.
    pub text: Input<'a>,
    /// Byte offset in `text` where the piece starts.
    pub start: usize,
}

/// Maps byte offsets of a logical line to source positions.
#[derive(Debug, Default)]
pub(crate) struct LineMap<'a> {
    segments: Vec<Segment<'a>>,
}

impl<'a> LineMap<'a> {
    /// Forgets all segments, keeping the allocation.
    pub fn clear(&mut self) {
        self.segments.clear();
    }

    /// Records that `text[start..]` was appended at offset `at`.
    pub fn push(&mut self, at: usize, line: u32, text: Input<'a>, start: usize) {
        self.segments.push(Segment {
            at,
            line,
            text,
            start,
        });
    }

    /// The 1-based line and character column of byte `offset` of the logical line.
    pub fn span(&self, offset: usize) -> Span {
        let idx = self
            .segments
            .partition_point(|s| s.at <= offset)
            .saturating_sub(1);
        let Some(seg) = self.segments.get(idx) else {
            return Span::new(1, 1);
        };
        let mut byte = seg.start + offset.saturating_sub(seg.at);
        byte = byte.min(seg.text.len());
        while byte > 0 && !seg.text.is_char_boundary(byte) {
            byte -= 1;
        }
        let col = seg.text.get(..byte).map_or(0, |p| p.chars().count());
        Span::new(seg.line, col as u32 + 1)
    }
}

/// Byte offset of `part` inside `whole`; `part` must be a sub-slice of it
/// (otherwise 0 is returned rather than a wrong, huge offset).
pub(crate) fn offset_in(whole: Input<'_>, part: Input<'_>) -> usize {
    let w = whole.as_ptr() as usize;
    let p = part.as_ptr() as usize;
    if p >= w && p <= w + whole.len() {
        p - w
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_table() {
        let cases: &[(&str, char, &str, bool)] = &[
            ("RUN a \\", '\\', "RUN a ", false),
            ("RUN a\\  \t", '\\', "RUN a", false),
            ("\\", '\\', "", false),
            ("\\ ", '\\', "", false),
            ("RUN a\\\\", '\\', "RUN a\\\\", true),
            ("RUN a\\\\\\", '\\', "RUN a\\\\\\", true),
            ("RUN a `", '`', "RUN a ", false),
            ("RUN a \\", '`', "RUN a \\", true),
            ("RUN a", '\\', "RUN a", true),
            ("", '\\', "", true),
        ];
        for (line, esc, want, eol) in cases {
            assert_eq!(trim_continuation(line, *esc), (*want, *eol), "{line:?}");
        }
    }

    #[test]
    fn lines_split_and_limit() {
        let src = "a\r\nb\n\nc";
        let got: Vec<_> = Lines::new(src).map(|l| (l.raw, l.no)).collect();
        assert_eq!(got, vec![("a\r\n", 1), ("b\n", 2), ("\n", 3), ("c", 4)]);

        let long = format!("x\n{}\ny\n", "a".repeat(MAX_LINE_LEN + 1));
        let mut it = Lines::new(&long);
        assert_eq!(it.next().map(|l| l.no), Some(1));
        assert!(it.next().is_none());
        assert_eq!(it.too_long, Some(2));

        let ok = format!("{}\n", "a".repeat(MAX_LINE_LEN));
        assert_eq!(Lines::new(&ok).count(), 1);
    }

    #[test]
    fn line_map_columns() {
        let mut m = LineMap::default();
        m.push(0, 3, "  RUN a", 2);
        m.push(6, 4, "\tb\u{e9}c", 0);
        assert_eq!(m.span(0), Span::new(3, 3));
        assert_eq!(m.span(4), Span::new(3, 7));
        assert_eq!(m.span(7), Span::new(4, 2));
        assert_eq!(m.span(10), Span::new(4, 4));
    }
}
