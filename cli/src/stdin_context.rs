//! `rbk build -`: the build's input from standard input, as `docker build -`
//! takes it, told apart by content:
//!
//! - a tar archive (a ustar header or a valid old-style header), or a
//!   gzip-compressed one: the build context, unpacked into a temporary
//!   directory (removed with the build) — no entry may leave it: absolute
//!   names, `..` and hard links out are refused, and nothing is written
//!   through a symbolic link; devices and FIFOs are skipped; `-f` names a
//!   Dockerfile inside it;
//! - anything else: a Dockerfile, with no context (COPY finds nothing).

use std::io::{Cursor, Read};
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context as _, Result};

use crate::inputs::BuildInputArgs;

/// The size of a tar header block.
const BLOCK: usize = 512;

/// What standard input held.
#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Tar,
    GzipTar,
    Dockerfile,
}

fn kind(head: &[u8]) -> Kind {
    if head.starts_with(&[0x1f, 0x8b]) {
        return Kind::GzipTar;
    }
    if is_tar_header(head) {
        return Kind::Tar;
    }
    Kind::Dockerfile
}

/// A ustar header, or an old (v7) one whose checksum is right.
fn is_tar_header(b: &[u8]) -> bool {
    let Some(b) = b.get(..BLOCK) else {
        return false;
    };
    if &b[257..262] == b"ustar" {
        return true;
    }
    let field = String::from_utf8_lossy(&b[148..156]);
    let Ok(want) = u32::from_str_radix(field.trim_matches(|c: char| c == '\0' || c == ' '), 8)
    else {
        return false;
    };
    let sum: u32 = b
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(c)
            }
        })
        .sum();
    sum == want && b[0] != 0
}

/// The input arguments with `-` resolved, and the temporary directory the
/// context lives in (removed when dropped); `None` when PATH is not `-`.
pub fn resolve(args: &BuildInputArgs) -> Result<Option<(BuildInputArgs, tempfile::TempDir)>> {
    if args.path != Path::new("-") {
        return Ok(None);
    }
    if args.file.as_deref() == Some(Path::new("-")) {
        bail!("the build context and the Dockerfile (-f -) cannot both be standard input");
    }
    use std::io::IsTerminal as _;
    let mut stdin = std::io::stdin().lock();
    if stdin.is_terminal() {
        bail!("PATH -: no Dockerfile or tar archive on standard input (pipe one in)");
    }
    let mut head = Vec::with_capacity(BLOCK);
    (&mut stdin)
        .take(BLOCK as u64)
        .read_to_end(&mut head)
        .context("cannot read standard input")?;
    let tmp = tempfile::Builder::new()
        .prefix("rbk-stdin-context-")
        .tempdir()
        .context("cannot create a temporary directory for the build context")?;
    let context = tmp.path().join("context");
    std::fs::create_dir(&context)
        .with_context(|| format!("cannot create {}", context.display()))?;
    let mut out = args.clone();
    out.path = context.clone();
    let rest = Cursor::new(head.clone()).chain(stdin);
    match kind(&head) {
        Kind::Tar => unpack(rest, &context)?,
        Kind::GzipTar => unpack(flate2::read::GzDecoder::new(rest), &context)?,
        Kind::Dockerfile => {
            let mut text = Vec::new();
            { rest }
                .read_to_end(&mut text)
                .context("cannot read the Dockerfile from standard input")?;
            out.stdin_dockerfile = Some(String::from_utf8_lossy(&text).into_owned());
            out.file = Some(PathBuf::from("-"));
            return Ok(Some((out, tmp)));
        }
    }
    // In a tar context, -f names a file of the archive.
    out.file = args
        .file
        .as_ref()
        .map(|f| context.join(f.strip_prefix("/").unwrap_or(f)));
    Ok(Some((out, tmp)))
}

/// Whether an entry's name stays inside the directory: relative, no `..`.
fn inside(name: &Path) -> bool {
    name.components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// Unpacks the tar `r` into `dir`, refusing any entry that would leave it.
fn unpack(r: impl Read, dir: &Path) -> Result<()> {
    let mut archive = tar::Archive::new(r);
    archive.set_preserve_permissions(true);
    archive.set_overwrite(true);
    let bad = |what: &str| {
        format!("the build context on standard input is not a valid tar archive ({what})")
    };
    for entry in archive.entries().with_context(|| bad("no entries"))? {
        let mut entry = entry.with_context(|| bad("a bad entry"))?;
        let name = entry
            .path()
            .with_context(|| bad("a bad name"))?
            .into_owned();
        if !inside(&name) {
            bail!(
                "the build context on standard input has an entry outside it: {}",
                name.display()
            );
        }
        let t = entry.header().entry_type();
        if !(t.is_file() || t.is_dir() || t.is_symlink() || t.is_hard_link()) {
            // Devices and FIFOs are no part of a build context.
            continue;
        }
        if t.is_hard_link() {
            let target = entry.link_name().ok().flatten().map(|l| l.into_owned());
            if !target.as_deref().is_some_and(inside) {
                bail!(
                    "the build context on standard input links {} to a file outside it",
                    name.display()
                );
            }
        }
        // `unpack_in` also refuses to write through a symbolic link.
        let unpacked = entry
            .unpack_in(dir)
            .with_context(|| format!("cannot unpack {} of the build context", name.display()))?;
        if !unpacked {
            bail!(
                "the build context on standard input has an entry outside it: {}",
                name.display()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn stdin_is_told_apart_by_content() {
        let t = tar_of(&[("Dockerfile", b"FROM scratch\n")]);
        assert_eq!(kind(&t[..BLOCK]), Kind::Tar);
        assert_eq!(kind(&[0x1f, 0x8b, 8, 0]), Kind::GzipTar);
        assert_eq!(kind(b"FROM scratch\nCOPY . /\n"), Kind::Dockerfile);
        let mut long = b"FROM scratch\n".repeat(60);
        long.truncate(BLOCK);
        assert_eq!(kind(&long), Kind::Dockerfile);
        // An old tar: no magic, the checksum tells.
        let mut v7 = t[..BLOCK].to_vec();
        v7[257..265].fill(0);
        let mut h = tar::Header::from_byte_slice(&v7).clone();
        h.set_cksum();
        assert_eq!(kind(h.as_bytes()), Kind::Tar);
    }

    #[test]
    fn a_tar_context_unpacks_inside_only() {
        let d = tempfile::tempdir().unwrap();
        let t = tar_of(&[("a/b.txt", b"hi"), ("./c", b"c")]);
        unpack(&t[..], d.path()).unwrap();
        assert_eq!(std::fs::read(d.path().join("a/b.txt")).unwrap(), b"hi");
        assert!(d.path().join("c").is_file());
        // Names out of it (the builder refuses to write them: craft them).
        for name in ["../escape", "/etc/escape"] {
            let mut h = tar::Header::new_old();
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_size(1);
            h.set_mode(0o644);
            h.set_cksum();
            let mut raw = h.as_bytes().to_vec();
            raw.extend([b'x'; BLOCK]);
            raw.extend([0; 2 * BLOCK]);
            let e = unpack(&raw[..], d.path()).unwrap_err().to_string();
            assert!(e.contains("outside"), "{name}: {e}");
        }
        // A link out, then a file through it.
        let out = tempfile::tempdir().unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "link", out.path()).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        b.append_data(&mut h, "link/evil", &b"x"[..]).unwrap();
        let raw = b.into_inner().unwrap();
        assert!(unpack(&raw[..], d.path()).is_err());
        assert!(!out.path().join("evil").exists());
        // A hard link to a host file.
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Link);
        h.set_size(0);
        b.append_link(&mut h, "passwd", "/etc/passwd").unwrap();
        let raw = b.into_inner().unwrap();
        let e = unpack(&raw[..], d.path()).unwrap_err().to_string();
        assert!(e.contains("outside"), "{e}");
    }
}
