//! `rbk bake [-f FILE] [TARGET…]`: `docker buildx bake` in rbk's words —
//! `rbk build FILE TARGET…` with the bake file found in the current
//! directory when `-f` names none.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clap::Parser;

use crate::build::args::BuildArgs;
use crate::inputs::DEFAULT_FILES;

/// `rbk bake`: its arguments are `rbk build`'s, with `-f` naming the bake
/// file (rather than a Dockerfile) and the positional ones the targets.
#[derive(Debug, clap::Args)]
#[command(
    disable_help_flag = true,
    after_help = "Examples:
  rbk bake                      # docker-bake.hcl (or .json, compose.yaml, rbk.toml) here
  rbk bake app db --push
  rbk bake -f ci.hcl --set '*.platform=linux/arm64' release
  rbk bake --print"
)]
pub struct BakeArgs {
    /// [-f FILE] [TARGET…] and `rbk build`'s flags (rbk bake --help)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    args: Vec<String>,
}

/// How `rbk bake --help` shows its flags: those of `rbk build`.
#[derive(Debug, Parser)]
#[command(
    name = "rbk bake",
    override_usage = "rbk bake [-f BAKE_FILE] [OPTIONS] [TARGET]...\n\n\
        Here -f names the bake file, not a Dockerfile; the other options are rbk build's.",
    about = "Build the targets of a bake file (docker-bake.hcl, docker-bake.json, \
             compose.yaml or rbk.toml; -f FILE names one)"
)]
struct BakeCli {
    #[command(flatten)]
    build: BuildArgs,
}

/// The bake file `-f` named, and the other arguments.
fn split_file(args: &[String]) -> Result<(Option<PathBuf>, Vec<String>)> {
    let mut file = None;
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let value = match a.as_str() {
            "-f" | "--file" => match it.next() {
                Some(v) => v.clone(),
                None => bail!("{a} needs a bake file"),
            },
            "--" => {
                rest.push(a.clone());
                rest.extend(it.by_ref().cloned());
                break;
            }
            _ => match a.strip_prefix("--file=") {
                Some(v) => v.to_string(),
                None => {
                    rest.push(a.clone());
                    continue;
                }
            },
        };
        if file.replace(PathBuf::from(value)).is_some() {
            bail!("rbk bake reads one bake file: -f is given more than once");
        }
    }
    Ok((file, rest))
}

/// The bake file of `dir`: the first of [`DEFAULT_FILES`] there.
fn default_file(dir: &Path) -> Result<PathBuf> {
    let found: Vec<&str> = DEFAULT_FILES
        .iter()
        .copied()
        .filter(|f| dir.join(f).is_file())
        .collect();
    match found.as_slice() {
        [] => bail!(
            "no bake file in {}: looked for {} (name one with -f)",
            dir.display(),
            DEFAULT_FILES.join(", ")
        ),
        [one] => Ok(PathBuf::from(one)),
        [first, others @ ..] => {
            eprintln!(
                "rbk bake: using {first} (not merging {}: name another with -f)",
                others.join(", ")
            );
            Ok(PathBuf::from(first))
        }
    }
}

/// The `rbk build` arguments of an `rbk bake` command line.
fn build_args(args: &[String], dir: &Path) -> Result<BuildArgs> {
    let (file, rest) = split_file(args)?;
    let wants_help = rest
        .iter()
        .take_while(|a| *a != "--")
        .any(|a| a == "-h" || a == "--help");
    let file = match (file, wants_help) {
        (Some(f), _) => f,
        (None, true) => PathBuf::from("."),
        (None, false) => default_file(dir)?,
    };
    let mut argv = vec!["rbk bake".to_string(), file.display().to_string()];
    argv.extend(rest);
    // Help and bad flags: clap's message and exit code, as everywhere.
    Ok(BakeCli::parse_from(argv).build)
}

/// `rbk bake`
pub fn bake(root: &Path, a: &BakeArgs) -> Result<i32> {
    let build = build_args(&a.args, Path::new("."))?;
    crate::cmd_build::build(root, &build)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn f_names_the_bake_file_and_the_rest_are_build_flags() {
        let d = tempfile::tempdir().unwrap();
        let b = build_args(
            &strings(&["app", "-f", "x.hcl", "--no-cache", "db"]),
            d.path(),
        );
        let b = b.unwrap();
        assert_eq!(b.input.path, PathBuf::from("x.hcl"));
        assert_eq!(b.input.names, ["app", "db"]);
        assert!(b.no_cache);
        let b = build_args(&strings(&["--file=y.json"]), d.path()).unwrap();
        assert_eq!(b.input.path, PathBuf::from("y.json"));
        let e = build_args(&strings(&["-f", "a", "-f", "b"]), d.path()).unwrap_err();
        assert!(e.to_string().contains("more than once"), "{e}");
    }

    #[test]
    fn the_bake_file_is_found_in_bakes_order() {
        let d = tempfile::tempdir().unwrap();
        let e = default_file(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("no bake file") && e.contains("docker-bake.hcl"),
            "{e}"
        );
        for f in DEFAULT_FILES.iter().rev() {
            std::fs::write(d.path().join(f), "").unwrap();
            assert_eq!(default_file(d.path()).unwrap(), PathBuf::from(f));
        }
    }
}
