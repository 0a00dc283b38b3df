//! The rules on one instruction inside a stage: ARG/ENV/LABEL forms,
//! secrets, exec form, MAINTAINER, WORKDIR, EXPOSE and `.dockerignore`d
//! sources.

use std::collections::BTreeMap;

use crate::ast::{Node, Span};

use super::{Linter, Scope};

/// Whether an ARG/ENV name looks like it carries a secret (BuildKit's
/// word list), `PUBLIC` ones excepted.
pub(super) fn secret_name(name: &str) -> bool {
    const WORDS: &[&str] = &[
        "apikey",
        "auth",
        "credential",
        "credentials",
        "key",
        "password",
        "passwd",
        "pword",
        "secret",
        "token",
    ];
    let lower = name.to_ascii_lowercase();
    let words: Vec<&str> = lower.split(['_', '-']).collect();
    !words.contains(&"public") && words.iter().any(|w| WORDS.contains(w))
}

impl Linter<'_, '_> {
    /// The rules on one instruction inside a stage.
    pub(super) fn instruction(
        &mut self,
        node: &Node,
        scope: &mut Scope,
        globals: &BTreeMap<String, Option<String>>,
        escape: char,
        counts: &mut Vec<(&'static str, Span)>,
        absolute_workdir: &mut bool,
    ) {
        let kw = node.keyword.as_str();
        // Words are expanded before the instruction defines anything.
        if matches!(
            kw,
            "add"
                | "copy"
                | "env"
                | "expose"
                | "label"
                | "stopsignal"
                | "user"
                | "volume"
                | "workdir"
                | "arg"
        ) {
            self.undefined(node, scope, globals, escape);
        }
        match kw {
            "arg" => {
                for pair in &node.args {
                    let k = pair.split_once('=').map_or(pair.as_str(), |(k, _)| k);
                    self.secret("ARG", k, node);
                    scope.defined.set(k, "");
                }
            }
            "env" | "label" => self.key_values(node, kw, scope),
            "cmd" | "entrypoint" => self.exec_form(node, kw, counts),
            "healthcheck" => counts.push(("HEALTHCHECK", node.span)),
            "maintainer" => self.add(
                "MaintainerDeprecated",
                node.span,
                "Maintainer instruction is deprecated in favor of using label".to_string(),
            ),
            "workdir" => {
                let dir = node.args.first().map(String::as_str).unwrap_or("");
                let absolute = dir.starts_with('/') || dir.starts_with('$');
                if !absolute && !*absolute_workdir {
                    self.add(
                        "WorkdirRelativePath",
                        node.span,
                        format!("Relative workdir {dir:?} can have unexpected results if the base image changes"),
                    );
                }
                *absolute_workdir |= absolute;
            }
            "expose" => self.expose(node),
            "copy" | "add" => self.copy_ignored(node, kw),
            _ => {}
        }
    }

    /// SecretsUsedInArgOrEnv (ENV) and LegacyKeyValueFormat.
    fn key_values(&mut self, node: &Node, kw: &str, scope: &mut Scope) {
        for triple in node.args.chunks(3) {
            if let [k, _, sep] = triple {
                if kw == "env" {
                    self.secret("ENV", k, node);
                    scope.defined.set(k, "");
                }
                if sep.is_empty() {
                    let up = kw.to_ascii_uppercase();
                    self.add(
                        "LegacyKeyValueFormat",
                        node.span,
                        format!(
                            "\"{up} key=value\" should be used instead of legacy \"{up} key value\" format"
                        ),
                    );
                }
            }
        }
    }

    /// JSONArgsRecommended, and the count for MultipleInstructionsDisallowed.
    fn exec_form(&mut self, node: &Node, kw: &str, counts: &mut Vec<(&'static str, Span)>) {
        let up = kw.to_ascii_uppercase();
        counts.push((if kw == "cmd" { "CMD" } else { "ENTRYPOINT" }, node.span));
        if !node.json {
            let text = node.args.join(" ");
            let message = if text.trim_start().starts_with('[') {
                format!(
                    "{up} {text} looks like a JSON array but is not valid JSON, so it runs through a shell as one command; quote each element: [\"a\", \"b\"]"
                )
            } else {
                "JSON arguments recommended for ENTRYPOINT/CMD to prevent unintended behavior related to OS signals".to_string()
            };
            self.add("JSONArgsRecommended", node.span, message);
        }
    }

    /// ExposeInvalidFormat and ExposeProtoCasing.
    fn expose(&mut self, node: &Node) {
        for word in &node.args {
            if word.contains(':') {
                self.add(
                    "ExposeInvalidFormat",
                    node.span,
                    format!("EXPOSE instruction should not define an IP address or host-port mapping, found '{word}'"),
                );
            }
            if let Some((_, proto)) = word.split_once('/') {
                if proto != proto.to_ascii_lowercase() {
                    self.add(
                        "ExposeProtoCasing",
                        node.span,
                        format!(
                            "Defined protocol '{proto}' in EXPOSE instruction should be lowercase"
                        ),
                    );
                }
            }
        }
    }

    /// SecretsUsedInArgOrEnv.
    pub(super) fn secret(&mut self, what: &str, name: &str, node: &Node) {
        if secret_name(name) {
            self.add(
                "SecretsUsedInArgOrEnv",
                node.span,
                format!("Do not use ARG or ENV instructions for sensitive data ({what} {name:?})"),
            );
        }
    }

    /// CopyIgnoredFile: sources from the context that `.dockerignore`
    /// excludes (COPY --from and ADD of URLs read elsewhere).
    fn copy_ignored(&mut self, node: &Node, kw: &str) {
        if node.flags.iter().any(|f| f.starts_with("--from=")) {
            return;
        }
        let n = node.args.len();
        if n < 2 {
            return;
        }
        let heredocs: Vec<String> = node
            .heredocs
            .iter()
            .map(|h| format!("<<{}", h.name))
            .collect();
        for src in &node.args[..n - 1] {
            let is_url = src.contains("://");
            let glob = src.contains(['*', '?', '[']);
            if is_url
                || glob
                || src.starts_with("<<")
                || heredocs.contains(src)
                || src.contains('$')
            {
                continue;
            }
            let rel = src
                .trim_start_matches("./")
                .trim_start_matches('/')
                .trim_end_matches('/');
            if !rel.is_empty() && rel != "." && (self.env.ignored)(rel) {
                let up = if kw == "add" { "Add" } else { "Copy" };
                self.add(
                    "CopyIgnoredFile",
                    node.span,
                    format!("Attempting to {up} file {src:?} that is excluded by .dockerignore"),
                );
            }
        }
    }
}
