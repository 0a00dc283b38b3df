//! RUN for a foreign architecture: QEMU user emulation through binfmt_misc,
//! as BuildKit relies on. With Debian's `qemu-user-static` installed, the
//! handlers it defines (`/usr/lib/binfmt.d/qemu-*.conf`, with the
//! fix-binary `F` flag, so the interpreter is opened now and works inside
//! any container's filesystem) are registered when missing.

use std::path::Path;

use anyhow::{bail, Context as _, Result};

const BINFMT: &str = "/proc/sys/fs/binfmt_misc";

/// QEMU's name for an image architecture.
fn qemu_name(arch: &str) -> Option<&'static str> {
    Some(match arch {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        "arm" => "arm",
        "386" => "i386",
        "ppc64le" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "mips64le" => "mips64el",
        "loong64" => "loongarch64",
        _ => return None,
    })
}

/// Makes sure binaries for `platform` (`os/arch[/variant]`) can run here:
/// nothing for the host's architecture; else a fix-binary QEMU handler,
/// registered now if missing. Returns what was done, for the user.
pub fn ensure(platform: &str) -> Result<Option<String>> {
    let arch = platform.split('/').nth(1).unwrap_or("");
    if arch.is_empty() || arch == rbk_store::oci::host_architecture() {
        return Ok(None);
    }
    let Some(name) = qemu_name(arch) else {
        bail!("RUN for {platform}: no emulator is known for the {arch} architecture");
    };
    let install = format!(
        "RUN for {platform} needs QEMU user emulation: install Debian's qemu-user-static (apt-get install qemu-user-static)"
    );
    let dir = Path::new(BINFMT);
    if !dir.join("register").exists() {
        crate::sys::mount_binfmt_misc(dir).with_context(|| {
            format!("{install}; binfmt_misc is not mounted at {BINFMT} and cannot be (run as root)")
        })?;
    }
    let entry = dir.join(format!("qemu-{name}"));
    if let Ok(text) = std::fs::read_to_string(&entry) {
        let enabled = text.lines().next() == Some("enabled");
        let fixed = text
            .lines()
            .any(|l| l.strip_prefix("flags:").is_some_and(|f| f.contains('F')));
        if enabled && fixed {
            return Ok(None);
        }
        bail!(
            "RUN for {platform}: the qemu-{name} handler in {BINFMT} is {}; rbk needs it enabled with the fix-binary (F) flag, so it works inside the build's filesystem (remove it: echo -1 > {}, and rbk registers Debian's)",
            if enabled { "registered without the F flag" } else { "disabled" },
            entry.display()
        );
    }
    let conf = Path::new("/usr/lib/binfmt.d").join(format!("qemu-{name}.conf"));
    let line = std::fs::read_to_string(&conf)
        .ok()
        .and_then(|t| t.lines().find(|l| l.starts_with(':')).map(str::to_string))
        .with_context(|| install.clone())?;
    if !line
        .rsplit(':')
        .next()
        .is_some_and(|flags| flags.contains('F'))
    {
        bail!(
            "{}: the handler lacks the fix-binary (F) flag rbk needs",
            conf.display()
        );
    }
    std::fs::write(dir.join("register"), &line)
        .with_context(|| format!("cannot register qemu-{name} in {BINFMT} (run as root)"))?;
    Ok(Some(format!(
        "registered the qemu-{name} emulator for {platform} (from {})",
        conf.display()
    )))
}
