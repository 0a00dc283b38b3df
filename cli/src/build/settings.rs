//! `rbk build`'s flags resolved once, before any work: every value
//! parsed and checked (a bad one is an error naming its flag), the result
//! a [`BuildSettings`] that the rest of the build reads instead of the
//! command line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use rbk_runtime::sandbox::NetworkMode;
use rbk_scheduler::session::default_jobs;
use rbk_scheduler::{BuildOptions, Entitlements};
use rbk_store::compress::Compression;
use rbk_store::registry::RegistryOptions;
use rbk_store::Reference;

use super::args::{BuildArgs, PullPolicy};
use super::cache_spec::{parse_cache_spec, CacheSpec};
use super::secrets::{parse_secret, SecretSource};
use super::shard::ShardSettings;
use crate::inputs::BuildInputArgs;
use crate::outputs::{self, Output};
use crate::progress::ProgressMode;

/// `rbk build`'s flags, parsed and checked.
#[derive(Debug, Clone)]
pub struct BuildSettings {
    /// What to compile (the Dockerfile or target file, build args, tags…),
    /// as `rbk graph`, `rbk check` and `rbk plan` take it too.
    pub input: BuildInputArgs,
    /// `--check`: lint and build nothing.
    pub check: bool,
    /// The session's options from the flags (secrets, SSH agents, the
    /// targets' `no-cache` and the fleet are added as the build sets up).
    pub options: BuildOptions,
    /// `--compression`: of the layers kept in the store.
    pub compression: Compression,
    /// `--output`s, and `--push` as one more.
    pub outputs: Vec<Output>,
    /// `--secret`s, in their order.
    pub secrets: Vec<(String, SecretSource)>,
    /// The `--secret` values as given (a target's same value is not
    /// parsed again).
    pub secret_flags: Vec<String>,
    /// `--ssh` agents by id.
    pub ssh: BTreeMap<String, crate::ssh::SshSpec>,
    /// `--pull`.
    pub pull: PullPolicy,
    /// `--cache-from`s.
    pub cache_from: Vec<CacheSpec>,
    /// `--cache-to`s.
    pub cache_to: Vec<CacheSpec>,
    /// `--shard I/N` with `--plan` and `--shard-wait`.
    pub shard: Option<ShardSettings>,
    /// How to reach registries.
    pub registry: RegistryOptions,
    /// `--graph-out`.
    pub graph_out: Option<PathBuf>,
    /// `--iidfile`.
    pub iidfile: Option<PathBuf>,
    /// `--metadata-file`.
    pub metadata_file: Option<PathBuf>,
    /// `-q`: only the image ids on standard output.
    pub quiet: bool,
    /// `--progress`.
    pub progress: ProgressMode,
    /// Targets whose images are pushed by digest only, never by tag: every
    /// push of theirs (`--push`, `-o type=registry`) goes by digest, and
    /// one is added when nothing pushes them (see
    /// [`crate::outputs::push_by_digest`]). No flag sets it: a sharded
    /// build does, for the targets whose platforms several machines build.
    pub push_by_digest: Vec<String>,
    /// `--provenance`, `--sbom`, `--attest`.
    pub attest: super::attest_spec::AttestSpec,
}

impl BuildSettings {
    /// Parses and checks every flag of `args`; the first bad one is the
    /// error. Nothing is read but the environment (`--secret` values,
    /// `SOURCE_DATE_EPOCH`) and the secret files' presence.
    pub fn resolve(args: &BuildArgs) -> Result<BuildSettings> {
        let (options, compression) = options(args)?;
        let cache_to = specs("--cache-to", &args.cache_to)?;
        let cache_from = specs("--cache-from", &args.cache_from)?;
        let outputs = outputs_of(args)?;
        let secrets = args.secrets.iter().map(|s| parse_secret(s));
        let secrets = secrets.collect::<Result<Vec<_>>>()?;
        let ssh = crate::ssh::parse(&args.ssh)?;
        check_tags(&args.input.tags)?;
        let shard = ShardSettings::resolve(&args.shard)?;
        let attest = super::attest_spec::AttestSpec::parse(
            &args.attest,
            args.provenance.as_deref(),
            args.sbom.as_deref(),
        )?;
        Ok(BuildSettings {
            input: args.input.clone(),
            check: args.check,
            options,
            compression,
            outputs,
            secrets,
            secret_flags: args.secrets.clone(),
            ssh,
            pull: args.pull,
            cache_from,
            cache_to,
            shard,
            registry: args.registry.options(),
            graph_out: args.graph_out.clone(),
            iidfile: args.iidfile.clone(),
            metadata_file: args.metadata_file.clone(),
            quiet: args.quiet,
            progress: args.progress,
            push_by_digest: Vec::new(),
            attest,
        })
    }

    /// The progress display: none under `-q`.
    pub fn progress_mode(&self) -> ProgressMode {
        if self.quiet {
            ProgressMode::Quiet
        } else {
            self.progress
        }
    }

    /// Whether the build says more than its progress: not under `-q`,
    /// `--progress quiet` or `--progress rawjson`.
    pub fn chatty(&self) -> bool {
        !self.quiet && !matches!(self.progress, ProgressMode::Rawjson | ProgressMode::Quiet)
    }
}

/// The values of a cache flag, parsed.
fn specs(flag: &str, values: &[String]) -> Result<Vec<CacheSpec>> {
    values.iter().map(|s| parse_cache_spec(flag, s)).collect()
}

/// Every `-t` is a valid reference, checked before any work (a bad `-t`
/// once failed only after the whole build had run). The targets' own tags
/// are checked once the target file is read.
fn check_tags(tags: &[String]) -> Result<()> {
    for t in tags {
        Reference::parse(t).with_context(|| format!("invalid tag {t:?}"))?;
    }
    Ok(())
}

/// The `--output`s, and `--push` as one more.
fn outputs_of(args: &BuildArgs) -> Result<Vec<Output>> {
    let mut outs = args
        .outputs
        .iter()
        .map(|s| outputs::parse(s))
        .collect::<Result<Vec<_>>>()?;
    if args.push {
        outs.push(Output::Image {
            names: Vec::new(),
            push: true,
            by_digest: false,
            format: Compression::Gzip.into(),
        });
    }
    Ok(outs)
}

/// The build's options from its flags, and the layer compression; a bad
/// value is an error naming the flag.
fn options(args: &BuildArgs) -> Result<(BuildOptions, Compression)> {
    let mut allow = Entitlements::default();
    for a in &args.allow {
        match a.as_str() {
            "network.host" => allow.network_host = true,
            "security.insecure" => allow.security_insecure = true,
            other => bail!("--allow {other:?}: use network.host or security.insecure"),
        }
    }
    let network = match args.network.as_str() {
        "default" => {
            crate::network::default_network("RUN steps", "--network host --allow network.host")?
        }
        "host" if allow.network_host => NetworkMode::Host,
        "host" => bail!("--network host needs `--allow network.host`"),
        "none" => NetworkMode::None,
        other => bail!("--network {other:?}: use default, none or host"),
    };
    let compression: Compression = args
        .compression
        .parse()
        .map_err(|e| anyhow::anyhow!("--compression: {e}"))?;
    let options = BuildOptions {
        no_cache: args.no_cache,
        jobs: args.jobs.unwrap_or_else(default_jobs),
        network,
        // Filled by `secrets_and_agents`.
        secrets: BTreeMap::new(),
        ssh: BTreeMap::new(),
        no_cache_stages: args.no_cache_filter.clone(),
        no_cache_images: BTreeSet::new(),
        annotations: parse_annotations(&args.annotations)?,
        inline_cache: BTreeSet::new(),
        explain: args.explain,
        source_date_epoch: source_date_epoch(args)?,
        allow,
        fleet: None,
    };
    Ok((options, compression))
}

/// `--annotation`s: `KEY=VALUE` or `manifest:KEY=VALUE` (rbk's images are
/// single manifests: there is no index or descriptor to annotate).
fn parse_annotations(values: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for v in values {
        let (kv, level) = match v.split_once(':') {
            Some((level, rest))
                if !level.contains('=')
                    && level.chars().all(|c| {
                        c.is_ascii_alphanumeric() || c == '-' || c == '[' || c == ']' || c == '/'
                    }) =>
            {
                (rest, Some(level))
            }
            _ => (v.as_str(), None),
        };
        match level {
            None | Some("manifest") => {}
            Some(other) => bail!(
                "--annotation {v:?}: {other}: annotations are not supported (an rbk image is one manifest; use KEY=VALUE or manifest:KEY=VALUE)"
            ),
        }
        match kv.split_once('=') {
            Some((k, val)) if !k.is_empty() => {
                out.insert(k.to_string(), val.to_string());
            }
            _ => bail!("invalid --annotation {v:?}: expected [manifest:]KEY=VALUE"),
        }
    }
    Ok(out)
}

/// `SOURCE_DATE_EPOCH`: the build arg if given (as BuildKit takes it),
/// else the environment variable.
fn source_date_epoch(args: &BuildArgs) -> Result<Option<i64>> {
    let from_arg = args
        .input
        .build_args
        .iter()
        .find_map(|a| a.strip_prefix("SOURCE_DATE_EPOCH="));
    match from_arg {
        Some(v) => v.trim().parse::<i64>().map(Some).map_err(|_| {
            anyhow::anyhow!("--build-arg SOURCE_DATE_EPOCH={v}: expected Unix seconds")
        }),
        None => Ok(crate::env::source_date_epoch()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use clap::Parser;

    use super::*;

    /// `rbk build`'s flags alone, as clap parses them.
    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        build: BuildArgs,
    }

    fn resolve(argv: &[&str]) -> Result<BuildSettings> {
        let mut all = vec!["rbk", "--network", "none"];
        all.extend_from_slice(argv);
        BuildSettings::resolve(&Cli::try_parse_from(all).unwrap().build)
    }

    #[test]
    fn every_flag_is_checked_before_any_work() {
        for (argv, want) in [
            (&["-t", "Bad/Name:1", "."][..], "invalid tag \"Bad/Name:1\""),
            (&["--allow", "net.host", "."], "--allow \"net.host\""),
            (&["--compression", "lz4", "."], "--compression"),
            (&["--cache-to", "type=gha", "."], "not supported"),
            (&["--cache-from", "type=inline", "."], "read from its image"),
            (&["-o", "type=nope", "."], "type=nope"),
            (
                &["--annotation", "index:a=b", "."],
                "annotations are not supported",
            ),
            (&["--secret", "src=/x", "."], "id= is required"),
            (&["--shard", "3/2", "x.toml"], "invalid --shard"),
            (
                &["--shard", "1/2", "--shard-wait", "soon", "x.toml"],
                "--shard-wait",
            ),
            (
                &["--build-arg", "SOURCE_DATE_EPOCH=yesterday", "."],
                "expected Unix seconds",
            ),
        ] {
            let e = format!("{:#}", resolve(argv).unwrap_err());
            assert!(e.contains(want), "{argv:?}: {e}");
        }
    }

    #[test]
    fn settings_hold_the_parsed_values() {
        let s = resolve(&[
            "-t",
            "r.io/a:1",
            "--push",
            "--cache-to",
            "type=local,dest=/c,mode=max",
            "--cache-from",
            "r.io/a:cache",
            "--shard",
            "2/3",
            "--shard-wait",
            "90s",
            "-q",
            "x.toml",
        ])
        .unwrap();
        assert_eq!(s.outputs.len(), 1);
        assert!(s.outputs[0].pushes());
        assert_eq!(s.cache_to.len(), 1);
        assert_eq!(s.cache_from.len(), 1);
        let shard = s.shard.as_ref().unwrap();
        assert_eq!((shard.me, shard.n), (2, 3));
        assert_eq!(shard.wait, Some(std::time::Duration::from_secs(90)));
        assert_eq!(s.progress_mode(), ProgressMode::Quiet);
        assert!(!s.chatty());
        assert_eq!(s.options.network, NetworkMode::None);
    }
}
