//! The parser's public error: a message with a span, rendered with a caret.

use crate::ast::Span;

/// A parse (or instruction conversion) error at a position in the source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{span}: {message}")]
pub struct ParseError {
    /// Where the problem is.
    pub span: Span,
    /// What the problem is, without position.
    pub message: String,
}

impl ParseError {
    /// An error at `span`.
    pub fn new(span: Span, message: impl Into<String>) -> Self {
        ParseError {
            span,
            message: message.into(),
        }
    }

    /// Renders `FILE:LINE:COL: message`, then the source line and a caret
    /// under the column.
    pub fn render(&self, file: &str, source: &str) -> String {
        // No position (an error about the whole file or an option).
        if self.span.line == 0 {
            return format!("{file}: {}", self.message);
        }
        let mut out = format!(
            "{}:{}:{}: {}",
            file, self.span.line, self.span.col, self.message
        );
        if let Some(text) = source.lines().nth(self.span.line as usize - 1) {
            let text = text.trim_end_matches('\r');
            let gutter = format!("{} | ", self.span.line);
            out.push('\n');
            out.push_str(&gutter);
            out.push_str(text);
            out.push('\n');
            // Keep tabs so the caret lines up under tab-indented text.
            let pad: String = text
                .chars()
                .take(self.span.col.saturating_sub(1) as usize)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            out.push_str(&" ".repeat(gutter.len()));
            out.push_str(&pad);
            out.push('^');
        }
        out
    }
}
