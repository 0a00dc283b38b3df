//! Small pieces of lowering: heredoc scripts, EXPOSE ports, paths, image
//! names, history text.

use crate::ast::Node;
use crate::config::HealthConfig;
use crate::error::ParseError;
use crate::instructions::{self, Command, Healthcheck};
use crate::parse::expand::{Env, ShellLex};

/// The script a shell-form RUN with heredocs hands to the shell. A lone
/// heredoc (`RUN <<EOF`) is the script itself (with a `#!` line, run through
/// that interpreter); otherwise the shell reads the heredocs it names.
pub(super) fn heredoc_script(cmd: &str, heredocs: &[crate::ast::Heredoc]) -> String {
    if heredocs.is_empty() {
        return cmd.to_string();
    }
    if let [h] = heredocs {
        let word = cmd.trim();
        let bare = word.trim_start_matches(|c: char| c.is_ascii_digit());
        if bare.starts_with("<<") && !bare.contains(char::is_whitespace) && h.file_descriptor == 0 {
            let body = if h.chomp {
                crate::parse::chomp(&h.content)
            } else {
                h.content.clone()
            };
            if let Some(first) = body.lines().next() {
                if let Some(interp) = first.strip_prefix("#!") {
                    return format!(
                        "{} /dev/stdin <<'RBK_HEREDOC_EOF'\n{body}RBK_HEREDOC_EOF",
                        interp.trim()
                    );
                }
            }
            return body;
        }
    }
    let mut script = cmd.to_string();
    for h in heredocs {
        script.push('\n');
        script.push_str(&h.content);
        script.push_str(&h.name);
    }
    script
}

/// Expands a COPY heredoc body as BuildKit does: one word with `\\` as the
/// escape whatever the file's directive, and quotes kept as written.
pub(super) fn expand_heredoc(data: &str, env: &dyn Env) -> Result<String, String> {
    ShellLex::new('\\')
        .with_skip_process_quotes(true)
        .process_word(data, env)
        .map_err(|e| e.message)
}

pub(super) fn health_config(node: &Node, h: &Healthcheck) -> Result<HealthConfig, ParseError> {
    Ok(match h {
        Healthcheck::None => HealthConfig {
            test: vec!["NONE".to_string()],
            ..Default::default()
        },
        Healthcheck::Check {
            command,
            interval,
            timeout,
            start_period,
            start_interval,
            retries,
        } => {
            let dur = |v: &Option<String>| {
                v.as_deref()
                    .and_then(instructions::parse_duration)
                    .unwrap_or(0)
            };
            HealthConfig {
                test: match command {
                    Command::Exec(v) => {
                        let mut t = vec!["CMD".to_string()];
                        t.extend(v.iter().cloned());
                        t
                    }
                    Command::Shell(s) => vec!["CMD-SHELL".to_string(), s.clone()],
                },
                interval: dur(interval),
                timeout: dur(timeout),
                start_period: dur(start_period),
                start_interval: dur(start_interval),
                retries: match retries {
                    Some(r) => r.parse().map_err(|_| {
                        ParseError::new(node.span, format!("invalid --retries {r:?}"))
                    })?,
                    None => 0,
                },
            }
        }
    })
}

pub(super) fn node_rest(node: &Node) -> String {
    let t = node.original.trim();
    t.split_once(char::is_whitespace)
        .map(|(_, r)| r.trim().to_string())
        .unwrap_or_default()
}

pub(super) fn json_list(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| format!("{v:?}"))
}

pub(super) fn quote_if_needed(v: &str) -> String {
    if v.is_empty() || v.contains(|c: char| c.is_whitespace() || c == '"' || c == '\\') {
        serde_json::to_string(v).unwrap_or_else(|_| v.to_string())
    } else {
        v.to_string()
    }
}

/// Adds `:latest` to a reference with neither tag nor digest.
pub fn normalize_image(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') || last.contains(':') {
        image.to_string()
    } else {
        format!("{image}:latest")
    }
}

/// `image` in one spelling per image: `:latest` added, Docker Hub's
/// `docker.io/` and `library/` prefixes dropped, so `FROM
/// docker.io/library/base` and a tag `base:latest` are the same image.
pub fn canonical_ref(image: &str) -> String {
    let full = normalize_image(image);
    let rest = full.strip_prefix("docker.io/").unwrap_or(&full);
    let rest = rest.strip_prefix("library/").unwrap_or(rest);
    rest.to_string()
}

/// `EXPOSE` word → `port/proto` entries (ranges expanded).
pub(super) fn expand_port(word: &str) -> Result<Vec<String>, String> {
    let (ports, proto) = match word.split_once('/') {
        Some((p, proto)) => (p, proto.to_ascii_lowercase()),
        None => (word, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto {proto:?} in EXPOSE {word}"));
    }
    // `EXPOSE 0.0.0.0:80:80` style host parts are not allowed by Docker.
    let parse = |s: &str| {
        s.parse::<u16>()
            .map_err(|_| format!("invalid port {s:?} in EXPOSE {word}"))
    };
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => {
            let p = parse(ports)?;
            (p, p)
        }
    };
    if hi < lo {
        return Err(format!("invalid range in EXPOSE {word}"));
    }
    Ok((lo..=hi).map(|p| format!("{p}/{proto}")).collect())
}

/// Joins a WORKDIR-relative path and cleans `.`/`..`/double slashes.
pub fn join_path(base: &str, path: &str) -> String {
    let joined = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{}/{path}", if base.is_empty() { "/" } else { base })
    };
    let mut parts: Vec<&str> = Vec::new();
    for p in joined.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        for (b, p, want) in [
            ("", "app", "/app"),
            ("/app", "src", "/app/src"),
            ("/app", "/x/../y/./z/", "/y/z"),
            ("/a/b", "..", "/a"),
            ("/", "../..", "/"),
        ] {
            assert_eq!(join_path(b, p), want, "{b} + {p}");
        }
    }

    #[test]
    fn ports() {
        assert_eq!(expand_port("80").ok(), Some(vec!["80/tcp".to_string()]));
        assert_eq!(expand_port("53/UDP").ok(), Some(vec!["53/udp".to_string()]));
        assert_eq!(expand_port("8000-8002").map(|v| v.len()).ok(), Some(3));
        assert!(expand_port("http").is_err());
        assert!(expand_port("80/foo").is_err());
        assert!(expand_port("9-1").is_err());
    }

    #[test]
    fn images_get_latest() {
        assert_eq!(normalize_image("centos"), "centos:latest");
        assert_eq!(normalize_image("centos:7"), "centos:7");
        assert_eq!(
            normalize_image("localhost:5000/x"),
            "localhost:5000/x:latest"
        );
        assert_eq!(normalize_image("x@sha256:00"), "x@sha256:00");
    }

    #[test]
    fn lone_heredoc_is_the_script() {
        let h = crate::ast::Heredoc {
            name: "EOF".into(),
            file_descriptor: 0,
            expand: true,
            chomp: false,
            content: "echo a\necho b\n".into(),
        };
        assert_eq!(
            heredoc_script("<<EOF", std::slice::from_ref(&h)),
            "echo a\necho b\n"
        );
        assert_eq!(
            heredoc_script("cat <<EOF > /x", std::slice::from_ref(&h)),
            "cat <<EOF > /x\necho a\necho b\nEOF"
        );
    }
}
