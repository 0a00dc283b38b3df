//! What the targets of a target file add to the command line's settings.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result};
use rbk_compiler::targets::ResolvedTarget;
use rbk_scheduler::BuildOptions;

use super::args::PullPolicy;
use super::secrets::{parse_secret, SecretSource};
use super::settings::BuildSettings;
use crate::outputs::{self, Output};

/// What the targets of a target file add to the command line's options:
/// their secrets and SSH agents (with the command line's), outputs of their
/// own, `no-cache` and `pull`.
pub(crate) struct TargetOptions {
    /// The command line's secrets, then the targets' (parsed once).
    pub(crate) secrets: Vec<(String, SecretSource)>,
    /// The SSH agents by id (a target's value for an id over the command
    /// line's).
    pub(crate) ssh: BTreeMap<String, crate::ssh::SshSpec>,
    /// Each target's own outputs.
    pub(crate) outputs: Vec<(String, Vec<Output>)>,
    /// `--pull`, or always when a target says `pull`.
    pub(crate) pull: PullPolicy,
}

impl TargetOptions {
    /// The command line's settings with the targets' added; a target's
    /// `no-cache` goes into `options`.
    pub(crate) fn of(
        cli: &BuildSettings,
        settings: &[ResolvedTarget],
        options: &mut BuildOptions,
    ) -> Result<Self> {
        let mut out = TargetOptions {
            secrets: cli.secrets.clone(),
            ssh: cli.ssh.clone(),
            outputs: Vec::new(),
            pull: cli.pull,
        };
        let mut seen: Vec<&String> = cli.secret_flags.iter().collect();
        for t in settings {
            let named = |what: &str| format!("target {:?}: {what}", t.name);
            for s in &t.secret {
                if !seen.contains(&s) {
                    seen.push(s);
                    out.secrets
                        .push(parse_secret(s).with_context(|| named("secret"))?);
                }
            }
            out.ssh
                .extend(crate::ssh::parse(&t.ssh).with_context(|| named("ssh"))?);
            if !t.output.is_empty() {
                let outs = t
                    .output
                    .iter()
                    .map(|o| outputs::parse(o).with_context(|| named("output")))
                    .collect::<Result<Vec<_>>>()?;
                out.outputs.push((t.name.clone(), outs));
            }
            if t.no_cache {
                options.no_cache_images.insert(t.name.clone());
            }
            if t.pull {
                out.pull = PullPolicy::Always;
            }
        }
        Ok(out)
    }
}
