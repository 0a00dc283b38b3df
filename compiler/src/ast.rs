//! The raw syntax tree: one [`Node`] per instruction, as BuildKit's parser
//! produces it, before any instruction-specific interpretation.

/// A 1-based position in the source text. `col` counts characters, not bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Span {
    /// 1-based physical line.
    pub line: u32,
    /// 1-based column (in characters).
    pub col: u32,
}

impl Span {
    /// A span at `line`, `col`.
    pub fn new(line: u32, col: u32) -> Self {
        Span { line, col }
    }
}

impl std::fmt::Display for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// Parser directives found at the top of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directives {
    /// The escape character: `\` (default) or `` ` ``.
    pub escape: char,
    /// `# syntax=` value, if present.
    pub syntax: Option<String>,
    /// `# check=` value, if present.
    pub check: Option<String>,
}

impl Default for Directives {
    fn default() -> Self {
        Directives {
            escape: '\\',
            syntax: None,
            check: None,
        }
    }
}

/// A heredoc attached to a RUN, COPY or ADD instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter word with quotes removed (`EOF` for `<<'EOF'`).
    pub name: String,
    /// The file descriptor written before `<<` (`3<<EOF`), else 0.
    pub file_descriptor: u32,
    /// False when any part of the delimiter was quoted.
    pub expand: bool,
    /// True for `<<-`: leading tabs are to be stripped (not yet stripped here).
    pub chomp: bool,
    /// The raw body: each line with its `\n`, the terminator excluded.
    pub content: String,
}

/// One instruction as parsed, before typing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The keyword, lower-cased (`run`, `copy`, …, or an unknown word).
    pub keyword: String,
    /// Leading `--flag[=value]` words, quotes removed, `--` dropped.
    pub flags: Vec<String>,
    /// Argument nodes, shaped per instruction as BuildKit's dump shows them
    /// (ENV/LABEL are key, value, separator triples).
    pub args: Vec<String>,
    /// True when the arguments came from a JSON array (exec form).
    pub json: bool,
    /// ONBUILD: the nested instruction (its lines are the parent's; its
    /// `original` is the text after `ONBUILD` and its flags).
    pub sub: Option<Box<Node>>,
    /// Heredocs, in the order they appear on the line. As in BuildKit, the
    /// heredocs of `ONBUILD RUN <<EOF` are attached to the ONBUILD node,
    /// not to `sub`.
    pub heredocs: Vec<Heredoc>,
    /// The logical line as written (continuations joined), for messages and
    /// `created_by` history.
    pub original: String,
    /// Where the keyword starts (error messages point here).
    pub span: Span,
    /// First physical line of the instruction (1-based).
    pub start_line: u32,
    /// Last physical line it consumed (continuations, heredoc bodies).
    pub end_line: u32,
}

/// A non-fatal finding, such as an empty continuation line (the message
/// quotes the joined line and says such lines will become errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Where it was found.
    pub span: Span,
    /// What was found.
    pub message: String,
}

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Dockerfile {
    /// Parser directives.
    pub directives: Directives,
    /// Top-level instructions in source order.
    pub nodes: Vec<Node>,
    /// Warnings.
    pub warnings: Vec<Warning>,
}
