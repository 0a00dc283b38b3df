//! `os/arch[/variant]` platforms, for `--platform` and the predefined
//! `TARGETPLATFORM`/`BUILDPLATFORM` build args.

use std::fmt;

/// A target or build platform.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// `amd64`, `arm64`, …
    pub arch: String,
    /// `v7`, `v8`, …
    pub variant: Option<String>,
}

impl Platform {
    /// The machine rbk runs on, in Go/OCI architecture names.
    pub fn host() -> Self {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "arm" => "arm",
            "powerpc64" => "ppc64le",
            "s390x" => "s390x",
            "riscv64" => "riscv64",
            other => other,
        };
        Platform {
            os: "linux".to_string(),
            arch: arch.to_string(),
            variant: None,
        }
    }

    /// Parses `os/arch[/variant]` (also a bare arch, meaning linux).
    pub fn parse(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split('/').collect();
        let bad = || format!("invalid platform {s:?}: expected os/arch[/variant]");
        let valid =
            |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        let (os, arch, variant) = match parts.as_slice() {
            [arch] => ("linux", *arch, None),
            [os, arch] => (*os, *arch, None),
            [os, arch, v] => (*os, *arch, Some(*v)),
            _ => return Err(bad()),
        };
        if !valid(os) || !valid(arch) || variant.is_some_and(|v| !valid(v)) {
            return Err(bad());
        }
        let arch = match arch {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            a => a,
        };
        Ok(Platform {
            os: os.to_ascii_lowercase(),
            arch: arch.to_ascii_lowercase(),
            variant: variant.map(str::to_string),
        })
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_show() {
        for (s, want) in [
            ("linux/amd64", Some("linux/amd64")),
            ("linux/arm/v7", Some("linux/arm/v7")),
            ("arm64", Some("linux/arm64")),
            ("linux/x86_64", Some("linux/amd64")),
            ("", None),
            ("linux/", None),
            ("a/b/c/d", None),
        ] {
            assert_eq!(
                Platform::parse(s).ok().map(|p| p.to_string()).as_deref(),
                want,
                "{s}"
            );
        }
    }
}
