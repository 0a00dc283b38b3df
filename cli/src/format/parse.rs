//! Parsing the Go text/template subset Docker users write: text and
//! `{{ pipeline }}` actions, `if`/`else`/`end`, `range`/`else`/`end`,
//! `with`/`else`/`end`, fields (`.A.B`, `$.A`), `$`, string, number and
//! boolean literals, function calls, `|` pipes and parentheses; `{{-` and
//! `-}}` trim the space beside them. Positions are Go's: `line:column`, the
//! column a zero-based byte offset in its line.

/// The functions a template may call: Go's built-ins and Docker's own.
/// The parser knows their names; `eval.rs` runs them.
pub const FUNCS: &[&str] = &[
    "json", "index", "len", "lower", "upper", "title", "split", "join", "pad", "truncate", "print",
    "println", "printf", "eq", "ne", "not", "and", "or",
];

/// A template error, worded as Go's (`template: :1:2: …`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError(pub String);

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TemplateError {}

/// Where a token starts, and its text (for "at <…>").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Text(String),
    Output(Pipe),
    If(Pipe, Vec<Node>, Vec<Node>),
    Range(Pipe, Vec<Node>, Vec<Node>),
    With(Pipe, Vec<Node>, Vec<Node>),
}

/// `a | b | c`: each command's value is the last argument of the next.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipe {
    pub cmds: Vec<Cmd>,
}

/// One command: an operand, or a function and its arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct Cmd {
    pub args: Vec<Arg>,
    pub pos: Pos,
    /// The command's source text, for "at <…>".
    pub text: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    /// `.` or `.A.B` (`from_root`: `$` or `$.A.B`).
    Field {
        path: Vec<String>,
        from_root: bool,
        pos: Pos,
        text: String,
    },
    Str(String),
    Int(i64),
    Bool(bool),
    Nil,
    Func(String),
    Sub(Pipe),
}

/// A lexed token of an action.
#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Pipe,
    Open,
    Close,
}

/// Parses `src` into nodes.
pub fn parse(src: &str) -> Result<Vec<Node>, TemplateError> {
    let items = split(src)?;
    let mut it = items.into_iter().peekable();
    let (nodes, end) = parse_list(&mut it, 0)?;
    match end {
        None => Ok(nodes),
        Some((kw, pos)) => Err(err_at(&pos, &format!("unexpected {{{{{kw}}}}}"))),
    }
}

fn err_at(pos: &Pos, msg: &str) -> TemplateError {
    TemplateError(format!("template: :{}:{}: {msg}", pos.line, pos.col))
}

fn err_line(pos: &Pos, msg: &str) -> TemplateError {
    TemplateError(format!("template: :{}: {msg}", pos.line))
}

/// Text or an action's inside, with the position of its first byte.
enum Item {
    Text(String),
    Action(String, Pos),
}

/// The position of byte `at` of `src`.
fn pos_of(src: &str, at: usize) -> Pos {
    let before = &src[..at];
    let line = before.matches('\n').count() + 1;
    let col = at - before.rfind('\n').map_or(0, |i| i + 1);
    Pos { line, col }
}

/// Splits `src` into text and actions, applying `{{-` and `-}}`.
fn split(src: &str) -> Result<Vec<Item>, TemplateError> {
    let mut items = Vec::new();
    let mut rest = 0;
    let mut trim_next = false;
    while let Some(open) = src[rest..].find("{{").map(|i| i + rest) {
        let mut text = &src[rest..open];
        if trim_next {
            text = text.trim_start();
        }
        let mut start = open + 2;
        let trim_before = src[start..].starts_with("- ") || src[start..].starts_with("-\t");
        if trim_before {
            text = text.trim_end();
            start += 1;
        }
        push_text(&mut items, text);
        let close = find_close(src, start)?;
        let mut end = close;
        trim_next = src[..close].ends_with(" -") || src[..close].ends_with("\t-");
        if trim_next {
            end -= 1;
        }
        let inner = &src[start..end];
        let lead = inner.len() - inner.trim_start().len();
        items.push(Item::Action(
            inner.trim().to_string(),
            pos_of(src, start + lead),
        ));
        rest = close + 2;
    }
    let mut text = &src[rest..];
    if trim_next {
        text = text.trim_start();
    }
    push_text(&mut items, text);
    Ok(items)
}

fn push_text(items: &mut Vec<Item>, text: &str) {
    if !text.is_empty() {
        items.push(Item::Text(text.to_string()));
    }
}

/// The `}}` closing the action starting at `start`, skipping strings.
fn find_close(src: &str, start: usize) -> Result<usize, TemplateError> {
    let bytes = src.as_bytes();
    let mut i = start;
    let mut quote: Option<u8> = None;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) if b == b'\\' && q == b'"' => i += 1,
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'"' || b == b'`' => quote = Some(b),
            None if bytes[i..].starts_with(b"}}") => return Ok(i),
            None => {}
        }
        i += 1;
    }
    Err(err_line(&pos_of(src, start), "unclosed action"))
}

/// How deep blocks and parentheses may nest.
const MAX_DEPTH: usize = 100;

type Items = std::iter::Peekable<std::vec::IntoIter<Item>>;

/// Nodes, and the `else` or `end` (with its position) that ended them.
type List = (Vec<Node>, Option<(String, Pos)>);

/// Nodes up to an `else` or `end` (returned with its position) or the end.
fn parse_list(it: &mut Items, depth: usize) -> Result<List, TemplateError> {
    let mut nodes = Vec::new();
    while let Some(item) = it.next() {
        let (inner, pos) = match item {
            Item::Text(t) => {
                nodes.push(Node::Text(t));
                continue;
            }
            Item::Action(inner, pos) => (inner, pos),
        };
        if inner.starts_with("/*") {
            continue;
        }
        let (kw, rest) = match inner.split_once(char::is_whitespace) {
            Some((k, r)) => (k, r.trim_start()),
            None => (inner.as_str(), ""),
        };
        let rest_pos = Pos {
            line: pos.line,
            col: pos.col + (inner.len() - rest.len()),
        };
        match kw {
            "end" | "else" if rest.is_empty() => return Ok((nodes, Some((kw.into(), pos)))),
            "else" => return Err(err_at(&pos, "`else if` is not supported: nest an {{if}}")),
            "if" | "range" | "with" => {
                let pipe = parse_pipe(rest, &rest_pos, kw)?;
                nodes.push(parse_block(kw, pipe, it, depth + 1, &pos)?);
            }
            "define" | "template" | "block" => {
                return Err(err_at(&pos, &format!("{{{{{kw}}}}} is not supported")))
            }
            _ => nodes.push(Node::Output(parse_pipe(&inner, &pos, "command")?)),
        }
    }
    Ok((nodes, None))
}

/// The body (and `else` part) of an `if`, `range` or `with`.
fn parse_block(
    kw: &str,
    pipe: Pipe,
    it: &mut Items,
    depth: usize,
    pos: &Pos,
) -> Result<Node, TemplateError> {
    if depth > MAX_DEPTH {
        return Err(err_line(pos, "blocks nested too deep"));
    }
    let (body, end) = parse_list(it, depth)?;
    let els = match end {
        Some((e, _)) if e == "end" => Vec::new(),
        Some(_) => match parse_list(it, depth)? {
            (els, Some((e, _))) if e == "end" => els,
            (_, Some((e, p))) => return Err(err_at(&p, &format!("unexpected {{{{{e}}}}}"))),
            (_, None) => return Err(err_line(pos, &format!("unexpected EOF in {{{{{kw}}}}}"))),
        },
        None => return Err(err_line(pos, &format!("unexpected EOF in {{{{{kw}}}}}"))),
    };
    Ok(match kw {
        "if" => Node::If(pipe, body, els),
        "range" => Node::Range(pipe, body, els),
        _ => Node::With(pipe, body, els),
    })
}

/// Lexes an action's inside; each token with its byte offset.
fn lex(s: &str, pos: &Pos) -> Result<Vec<(Tok, usize)>, TemplateError> {
    let mut toks = Vec::new();
    let chars: Vec<(usize, char)> = s.char_indices().collect();
    let mut i = 0;
    while i < chars.len() {
        let (at, c) = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '|' | '(' | ')' => {
                let t = match c {
                    '|' => Tok::Pipe,
                    '(' => Tok::Open,
                    _ => Tok::Close,
                };
                toks.push((t, at));
                i += 1;
            }
            '"' | '`' => {
                let (text, next) = lex_string(&chars, i, pos)?;
                toks.push((Tok::Str(text), at));
                i = next;
            }
            _ => {
                let mut j = i;
                while j < chars.len()
                    && !chars[j].1.is_whitespace()
                    && !"|()\"`".contains(chars[j].1)
                {
                    j += 1;
                }
                let end = chars.get(j).map_or(s.len(), |c| c.0);
                toks.push((Tok::Word(s[at..end].to_string()), at));
                i = j;
            }
        }
    }
    Ok(toks)
}

/// A quoted string starting at `chars[i]`: its value and the index after it.
fn lex_string(
    chars: &[(usize, char)],
    i: usize,
    pos: &Pos,
) -> Result<(String, usize), TemplateError> {
    let quote = chars[i].1;
    let mut out = String::new();
    let mut j = i + 1;
    while j < chars.len() {
        let c = chars[j].1;
        if c == quote {
            return Ok((out, j + 1));
        }
        if c == '\\' && quote == '"' {
            j += 1;
            match chars.get(j).map(|c| c.1) {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some(c @ ('\\' | '"')) => out.push(c),
                _ => return Err(err_line(pos, "invalid escape in quoted string")),
            }
        } else {
            out.push(c);
        }
        j += 1;
    }
    Err(err_line(pos, "unterminated quoted string"))
}

/// Parses a pipeline (the inside of an action, or after `if`/`range`).
fn parse_pipe(s: &str, pos: &Pos, ctx: &str) -> Result<Pipe, TemplateError> {
    let toks = lex(s, pos)?;
    let mut p = PipeParser {
        s,
        pos,
        toks,
        i: 0,
        depth: 0,
    };
    let pipe = p.pipe(ctx)?;
    if p.i < p.toks.len() {
        return Err(err_line(pos, &format!("unexpected \")\" in {ctx}")));
    }
    Ok(pipe)
}

struct PipeParser<'a> {
    s: &'a str,
    pos: &'a Pos,
    toks: Vec<(Tok, usize)>,
    i: usize,
    /// Parentheses open.
    depth: usize,
}

impl PipeParser<'_> {
    fn at(&self, off: usize) -> Pos {
        Pos {
            line: self.pos.line,
            col: self.pos.col + off,
        }
    }

    /// Commands separated by `|`, up to `)` or the end.
    fn pipe(&mut self, ctx: &str) -> Result<Pipe, TemplateError> {
        let mut cmds = Vec::new();
        loop {
            let start = self.toks.get(self.i).map_or(self.s.len(), |t| t.1);
            let mut args = Vec::new();
            while let Some((tok, off)) = self.toks.get(self.i).cloned() {
                match tok {
                    Tok::Pipe | Tok::Close => break,
                    _ => {
                        self.i += 1;
                        args.push(self.arg(tok, off)?);
                    }
                }
            }
            let end = self.toks.get(self.i).map_or(self.s.len(), |t| t.1);
            if args.is_empty() {
                return Err(err_line(self.pos, &format!("missing value for {ctx}")));
            }
            cmds.push(Cmd {
                args,
                pos: self.at(start),
                text: self.s[start..end].trim().to_string(),
            });
            match self.toks.get(self.i) {
                Some((Tok::Pipe, _)) => self.i += 1,
                _ => return Ok(Pipe { cmds }),
            }
        }
    }

    fn arg(&mut self, tok: Tok, off: usize) -> Result<Arg, TemplateError> {
        match tok {
            Tok::Str(s) => Ok(Arg::Str(s)),
            Tok::Open => {
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return Err(err_line(self.pos, "parentheses nested too deep"));
                }
                let p = self.pipe("parenthesized pipeline")?;
                self.depth -= 1;
                match self.toks.get(self.i) {
                    Some((Tok::Close, _)) => self.i += 1,
                    _ => return Err(err_line(self.pos, "unclosed left paren")),
                }
                Ok(Arg::Sub(p))
            }
            Tok::Word(w) => self.word(&w, off),
            Tok::Pipe | Tok::Close => Err(err_line(self.pos, "unexpected token")),
        }
    }

    fn word(&self, w: &str, off: usize) -> Result<Arg, TemplateError> {
        let pos = self.at(off);
        let field = |path: &str, from_root: bool| Arg::Field {
            path: path
                .split('.')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
            from_root,
            pos: pos.clone(),
            text: w.to_string(),
        };
        if let Some(rest) = w.strip_prefix('$') {
            if rest.is_empty() || rest.starts_with('.') {
                return Ok(field(rest, true));
            }
            return Err(err_at(&pos, &format!("variables are not supported: {w}")));
        }
        if let Some(path) = w.strip_prefix('.') {
            if !path.is_empty() && path.split('.').any(|p| !is_ident(p)) {
                return Err(err_line(&pos, &format!("bad field name {w:?}")));
            }
            return Ok(field(w, false));
        }
        match w {
            "true" => return Ok(Arg::Bool(true)),
            "false" => return Ok(Arg::Bool(false)),
            "nil" => return Ok(Arg::Nil),
            _ => {}
        }
        if let Ok(n) = w.parse::<i64>() {
            return Ok(Arg::Int(n));
        }
        if FUNCS.contains(&w) {
            return Ok(Arg::Func(w.to_string()));
        }
        Err(err_line(&pos, &format!("function {w:?} not defined")))
    }
}

fn is_ident(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '_')
}
