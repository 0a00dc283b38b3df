//! Raw [`Node`]s → typed [`Instruction`]s: flag checking, argument counts,
//! exec versus shell form, heredoc sources. No variable expansion happens
//! here; lowering expands where Docker does, with the stage's environment.

mod flags;
mod healthcheck;

use crate::ast::{Heredoc, Node};
use crate::error::ParseError;

pub(crate) use self::flags::locate;
use self::flags::{flag_error, Flags};
use self::healthcheck::convert_healthcheck;
pub use self::healthcheck::parse_duration;

/// A command as written: shell form (run through `SHELL`) or exec form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Command {
    /// `RUN echo hi`: one string for the shell.
    Shell(String),
    /// `RUN ["echo", "hi"]`: the argv itself.
    Exec(Vec<String>),
}

/// A `RUN --mount=…` specification, not yet expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunMount {
    /// The raw `k=v,k=v` text after `--mount=`.
    pub spec: String,
}

/// `RUN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// The command.
    pub command: Command,
    /// `--mount` flags.
    pub mounts: Vec<RunMount>,
    /// `--network`.
    pub network: Option<String>,
    /// `--security`.
    pub security: Option<String>,
    /// Heredocs attached to a shell-form command.
    pub heredocs: Vec<Heredoc>,
}

/// One inline source of `COPY <<EOF /dest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceContent {
    /// The heredoc name, used as the file name.
    pub path: String,
    /// The body (tabs already stripped for `<<-`).
    pub data: String,
    /// Whether variables in `data` are expanded.
    pub expand: bool,
}

/// `COPY` and `ADD`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Copy {
    /// True for `ADD` (archives are unpacked, URLs fetched).
    pub add: bool,
    /// Source paths or URLs, unexpanded.
    pub sources: Vec<String>,
    /// Heredoc sources.
    pub contents: Vec<SourceContent>,
    /// Destination, unexpanded.
    pub dest: String,
    /// `--from`.
    pub from: Option<String>,
    /// `--chown`.
    pub chown: Option<String>,
    /// `--chmod`.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--parents`.
    pub parents: bool,
    /// `--exclude` patterns.
    pub excludes: Vec<String>,
    /// `ADD --checksum`.
    pub checksum: Option<String>,
    /// `ADD --keep-git-dir`.
    pub keep_git_dir: bool,
}

/// `HEALTHCHECK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable any inherited check.
    None,
    /// `HEALTHCHECK [opts] CMD …`.
    Check {
        /// The test command.
        command: Command,
        /// `--interval` as written (Go duration).
        interval: Option<String>,
        /// `--timeout`.
        timeout: Option<String>,
        /// `--start-period`.
        start_period: Option<String>,
        /// `--start-interval`.
        start_interval: Option<String>,
        /// `--retries`.
        retries: Option<String>,
    },
}

/// A typed instruction. Values are as written (unexpanded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    /// `FROM image [AS name]`.
    From {
        /// Image reference or `scratch`.
        image: String,
        /// `AS name`.
        name: Option<String>,
        /// `--platform`.
        platform: Option<String>,
    },
    /// `RUN`.
    Run(Run),
    /// `CMD`.
    Cmd(Command),
    /// `ENTRYPOINT`.
    Entrypoint(Command),
    /// `SHELL [..]`.
    Shell(Vec<String>),
    /// `COPY` / `ADD`.
    Copy(Copy),
    /// `ENV k=v …`.
    Env(Vec<(String, String)>),
    /// `ARG name[=default] …`.
    Arg(Vec<(String, Option<String>)>),
    /// `LABEL k=v …`.
    Label(Vec<(String, String)>),
    /// `MAINTAINER`.
    Maintainer(String),
    /// `EXPOSE`.
    Expose(Vec<String>),
    /// `VOLUME`.
    Volume(Vec<String>),
    /// `USER`.
    User(String),
    /// `WORKDIR`.
    Workdir(String),
    /// `ONBUILD <instruction>`: the trigger text as written.
    Onbuild(String),
    /// `STOPSIGNAL`.
    StopSignal(String),
    /// `HEALTHCHECK`.
    Healthcheck(Healthcheck),
}

impl Instruction {
    /// The upper-case keyword, as Docker names it in messages.
    pub fn keyword(&self) -> &'static str {
        match self {
            Instruction::From { .. } => "FROM",
            Instruction::Run(_) => "RUN",
            Instruction::Cmd(_) => "CMD",
            Instruction::Entrypoint(_) => "ENTRYPOINT",
            Instruction::Shell(_) => "SHELL",
            Instruction::Copy(c) if c.add => "ADD",
            Instruction::Copy(_) => "COPY",
            Instruction::Env(_) => "ENV",
            Instruction::Arg(_) => "ARG",
            Instruction::Label(_) => "LABEL",
            Instruction::Maintainer(_) => "MAINTAINER",
            Instruction::Expose(_) => "EXPOSE",
            Instruction::Volume(_) => "VOLUME",
            Instruction::User(_) => "USER",
            Instruction::Workdir(_) => "WORKDIR",
            Instruction::Onbuild(_) => "ONBUILD",
            Instruction::StopSignal(_) => "STOPSIGNAL",
            Instruction::Healthcheck(_) => "HEALTHCHECK",
        }
    }
}

pub(super) fn err(node: &Node, message: impl Into<String>) -> ParseError {
    ParseError::new(node.span, message)
}

fn upper(node: &Node) -> String {
    node.keyword.to_ascii_uppercase()
}

fn exactly_one(node: &Node) -> Result<String, ParseError> {
    match node.args.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(err(
            node,
            format!("{} requires exactly one argument", upper(node)),
        )),
    }
}

fn at_least_one(node: &Node) -> Result<(), ParseError> {
    if node.args.is_empty() {
        return Err(err(
            node,
            format!("{} requires at least one argument", upper(node)),
        ));
    }
    Ok(())
}

fn command(node: &Node) -> Command {
    if node.json {
        Command::Exec(node.args.clone())
    } else {
        Command::Shell(node.args.first().cloned().unwrap_or_default())
    }
}

/// Key/value/separator triples as the parser stores ENV and LABEL.
fn pairs(node: &Node) -> Result<Vec<(String, String)>, ParseError> {
    if node.args.is_empty() {
        return Err(err(
            node,
            format!("{} requires at least one argument", upper(node)),
        ));
    }
    if !node.args.len().is_multiple_of(3) {
        return Err(err(
            node,
            format!("{} must have two arguments", upper(node)),
        ));
    }
    Ok(node
        .args
        .chunks(3)
        .map(|t| (t[0].clone(), t[1].clone()))
        .collect())
}

/// Converts one parsed node into a typed instruction.
pub fn convert(node: &Node) -> Result<Instruction, ParseError> {
    let kw = node.keyword.as_str();
    let no_flags = |k: &'static str| Flags::parse(node, k, &[]).map(|_| ());
    match kw {
        "from" => convert_from(node),
        "run" => convert_run(node),
        "cmd" => {
            no_flags("CMD")?;
            Ok(Instruction::Cmd(command(node)))
        }
        "entrypoint" => {
            no_flags("ENTRYPOINT")?;
            Ok(Instruction::Entrypoint(command(node)))
        }
        "shell" => {
            no_flags("SHELL")?;
            if !node.json {
                return Err(err(node, "SHELL requires the arguments to be in JSON form"));
            }
            if node.args.is_empty() {
                return Err(err(node, "SHELL requires at least one argument"));
            }
            Ok(Instruction::Shell(node.args.clone()))
        }
        "copy" | "add" => convert_copy(node, kw == "add"),
        "env" => {
            no_flags("ENV")?;
            Ok(Instruction::Env(pairs(node)?))
        }
        "label" => {
            no_flags("LABEL")?;
            Ok(Instruction::Label(pairs(node)?))
        }
        "arg" => convert_arg(node),
        "maintainer" | "user" | "workdir" | "stopsignal" => convert_one_word(node),
        "expose" => {
            no_flags("EXPOSE")?;
            at_least_one(node)?;
            Ok(Instruction::Expose(node.args.clone()))
        }
        "volume" => {
            no_flags("VOLUME")?;
            at_least_one(node)?;
            if node.args.iter().any(|v| v.trim().is_empty()) {
                return Err(err(node, "VOLUME specified can not be an empty string"));
            }
            Ok(Instruction::Volume(node.args.clone()))
        }
        "onbuild" => convert_onbuild(node),
        "healthcheck" => convert_healthcheck(node),
        _ => {
            let word = first_word(&node.original);
            Err(err(
                node,
                format!(
                    "unknown instruction: {word}{}",
                    crate::suggest::hint(word, KEYWORDS.iter().copied())
                ),
            ))
        }
    }
}

/// Every instruction, as written in Dockerfiles.
pub const KEYWORDS: &[&str] = &[
    "FROM",
    "RUN",
    "CMD",
    "LABEL",
    "MAINTAINER",
    "EXPOSE",
    "ENV",
    "ADD",
    "COPY",
    "ENTRYPOINT",
    "VOLUME",
    "USER",
    "WORKDIR",
    "ARG",
    "ONBUILD",
    "STOPSIGNAL",
    "HEALTHCHECK",
    "SHELL",
];

/// `FROM image [AS name]` with `--platform`.
fn convert_from(node: &Node) -> Result<Instruction, ParseError> {
    let flags = Flags::parse(node, "FROM", &["platform"])?;
    let (image, name) = match node.args.as_slice() {
        [image] => (image.clone(), None),
        [image, as_, name] if as_.eq_ignore_ascii_case("as") => (image.clone(), Some(name.clone())),
        _ => {
            return Err(err(
                node,
                "FROM requires either one or three arguments (FROM image [AS name])",
            ))
        }
    };
    if let Some(n) = &name {
        if !valid_stage_name(n) {
            return Err(flag_error(
                node,
                n,
                format!("invalid name for build stage: {n:?}, name can't start with a number or contain symbols"),
            ));
        }
    }
    Ok(Instruction::From {
        image,
        name: name.map(|n| n.to_ascii_lowercase()),
        platform: flags.string("platform")?,
    })
}

/// `RUN` with `--mount`, `--network` and `--security`. (`--device` is
/// parsed, so BuildKit's parser suite passes, but not acted on.)
fn convert_run(node: &Node) -> Result<Instruction, ParseError> {
    let flags = Flags::parse(node, "RUN", &["mount", "network", "security", "device"])?;
    if node.args.is_empty() && node.heredocs.is_empty() {
        return Err(err(node, "RUN requires at least one argument"));
    }
    Ok(Instruction::Run(Run {
        command: command(node),
        mounts: flags
            .strings("mount")?
            .into_iter()
            .map(|spec| RunMount { spec })
            .collect(),
        network: flags.string("network")?,
        security: flags.string("security")?,
        heredocs: if node.json {
            Vec::new()
        } else {
            node.heredocs.clone()
        },
    }))
}

/// `ARG name[=default] ...`.
fn convert_arg(node: &Node) -> Result<Instruction, ParseError> {
    Flags::parse(node, "ARG", &[])?;
    if node.args.is_empty() {
        return Err(err(node, "ARG requires at least one argument"));
    }
    let mut out = Vec::with_capacity(node.args.len());
    for a in &node.args {
        let (name, default) = match a.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(unquote_arg_default(v))),
            None => (a.clone(), None),
        };
        if name.is_empty() {
            return Err(flag_error(
                node,
                a,
                format!("ARG names can not be blank: {a:?}"),
            ));
        }
        out.push((name, default));
    }
    Ok(Instruction::Arg(out))
}

/// MAINTAINER, USER, WORKDIR and STOPSIGNAL: exactly one word, no flags.
fn convert_one_word(node: &Node) -> Result<Instruction, ParseError> {
    let (name, make): (&'static str, fn(String) -> Instruction) = match node.keyword.as_str() {
        "maintainer" => ("MAINTAINER", Instruction::Maintainer),
        "user" => ("USER", Instruction::User),
        "workdir" => ("WORKDIR", Instruction::Workdir),
        _ => ("STOPSIGNAL", Instruction::StopSignal),
    };
    Flags::parse(node, name, &[])?;
    Ok(make(exactly_one(node)?))
}

/// `ONBUILD <instruction>`: the trigger must itself be valid, and neither
/// FROM, MAINTAINER nor another ONBUILD.
fn convert_onbuild(node: &Node) -> Result<Instruction, ParseError> {
    Flags::parse(node, "ONBUILD", &[])?;
    let Some(sub) = &node.sub else {
        return Err(err(node, "ONBUILD requires at least one argument"));
    };
    match sub.keyword.as_str() {
        "onbuild" => {
            return Err(err(
                node,
                "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
            ))
        }
        "from" | "maintainer" => {
            return Err(err(
                node,
                format!("{} isn't allowed as an ONBUILD trigger", upper(sub)),
            ))
        }
        _ => {}
    }
    convert(sub)?;
    Ok(Instruction::Onbuild(trigger_text(node)))
}

fn first_word(s: &str) -> &str {
    s.split(|c: char| c.is_whitespace()).next().unwrap_or(s)
}

/// The text after `ONBUILD`, as Docker records it in `Config.OnBuild`.
fn trigger_text(node: &Node) -> String {
    let rest = node.original.trim_start();
    let rest = rest.get(first_word(rest).len()..).unwrap_or("");
    rest.trim().to_string()
}

/// `ARG x="a b"` keeps its quotes in the word list; the default drops one
/// level of matching quotes.
fn unquote_arg_default(v: &str) -> String {
    let b = v.as_bytes();
    if b.len() >= 2 && (b[0] == b'"' || b[0] == b'\'') && b[b.len() - 1] == b[0] {
        v[1..v.len() - 1].to_string()
    } else {
        v.to_string()
    }
}

/// Stage names: `[a-zA-Z][a-zA-Z0-9_.-]*`, as BuildKit accepts them.
fn valid_stage_name(n: &str) -> bool {
    let mut chars = n.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn convert_copy(node: &Node, add: bool) -> Result<Instruction, ParseError> {
    let keyword = if add { "ADD" } else { "COPY" };
    let allowed: &[&str] = if add {
        &[
            "chown",
            "chmod",
            "link",
            "keep-git-dir",
            "checksum",
            "exclude",
            "unpack",
        ]
    } else {
        &["from", "chown", "chmod", "link", "parents", "exclude"]
    };
    let flags = Flags::parse(node, keyword, allowed)?;
    let (sources, contents, dest) = copy_operands(node, keyword)?;
    Ok(Instruction::Copy(Copy {
        add,
        sources,
        contents,
        dest,
        from: if add { None } else { flags.string("from")? },
        chown: flags.string("chown")?,
        chmod: flags.string("chmod")?,
        link: flags.bool("link")?,
        parents: if add { false } else { flags.bool("parents")? },
        excludes: flags.strings("exclude")?,
        checksum: if add { flags.string("checksum")? } else { None },
        keep_git_dir: if add {
            flags.bool("keep-git-dir")?
        } else {
            false
        },
    }))
}

/// A COPY/ADD's operands: the source paths, the heredoc files among them,
/// and the destination (which may not be a heredoc).
fn copy_operands(
    node: &Node,
    keyword: &str,
) -> Result<(Vec<String>, Vec<SourceContent>, String), ParseError> {
    // Heredoc sources are the args that name a heredoc on this line.
    let heredoc_names: Vec<&Heredoc> = if node.json {
        Vec::new()
    } else {
        node.heredocs.iter().collect()
    };
    // The parser's own heredoc-word rule, so quoting matches it exactly.
    let is_heredoc_arg = |a: &str| match crate::parse::parse_heredoc(a) {
        Ok(Some(h)) => heredoc_names.iter().any(|n| n.name == h.name),
        _ => false,
    };
    let total = node.args.len();
    if total < 2 {
        if total == 1 && !is_heredoc_arg(&node.args[0]) {
            return Err(err(node, format!("{keyword} requires at least two arguments, but only one was provided. Destination could not be determined")));
        }
        return Err(err(
            node,
            format!("{keyword} requires at least two arguments"),
        ));
    }
    let dest = node.args[total - 1].clone();
    if is_heredoc_arg(&dest) {
        return Err(err(
            node,
            format!("{keyword} cannot accept a heredoc as a destination"),
        ));
    }
    let mut sources = Vec::new();
    let mut contents = Vec::new();
    let mut heredocs = heredoc_names.iter();
    for a in &node.args[..total - 1] {
        if !is_heredoc_arg(a) {
            sources.push(a.clone());
            continue;
        }
        if let Some(h) = heredocs.next() {
            contents.push(SourceContent {
                path: h.name.clone(),
                data: if h.chomp {
                    crate::parse::chomp(&h.content)
                } else {
                    h.content.clone()
                },
                expand: h.expand,
            });
        }
    }
    Ok((sources, contents, dest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_names() {
        for (n, ok) in [
            ("build", true),
            ("a.b-c_d", true),
            ("1x", false),
            ("x!", false),
        ] {
            assert_eq!(valid_stage_name(n), ok, "{n}");
        }
    }
}
