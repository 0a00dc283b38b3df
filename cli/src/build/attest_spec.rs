//! `--provenance`, `--sbom` and `--attest`, as buildx reads them: each
//! attestation type asked for, turned off, or left to the default
//! (provenance `mode=min` on every image a build pushes or exports as an
//! OCI archive; no SBOM unless asked).

use anyhow::{bail, Result};
use rbk_attest::provenance::Mode;

/// Whether an attestation type was asked for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Wanted<T> {
    /// No flag said: the default applies.
    #[default]
    Default,
    /// Asked for, with its options.
    On(T),
    /// Turned off (`--provenance=false`, `disabled=true`).
    Off,
}

/// Provenance's options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvenanceSpec {
    /// `mode=min|max`.
    pub mode: Mode,
    /// `builder-id=`.
    pub builder_id: String,
}

impl Default for ProvenanceSpec {
    fn default() -> Self {
        ProvenanceSpec {
            mode: Mode::Min,
            builder_id: String::new(),
        }
    }
}

/// The attestations a build was asked for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AttestSpec {
    /// SLSA provenance.
    pub provenance: Wanted<ProvenanceSpec>,
    /// An SPDX SBOM.
    pub sbom: Wanted<()>,
}

impl AttestSpec {
    /// Parses the flags, in buildx's order: `--attest`s, then `--provenance`
    /// and `--sbom` (which override them).
    pub fn parse(
        attest: &[String],
        provenance: Option<&str>,
        sbom: Option<&str>,
    ) -> Result<AttestSpec> {
        let mut spec = AttestSpec::default();
        for a in attest {
            spec.apply(a, "--attest")?;
        }
        if let Some(p) = provenance {
            let text = match p {
                "true" | "1" => "type=provenance".to_string(),
                "false" | "0" => "type=provenance,disabled=true".to_string(),
                "min" | "max" => format!("type=provenance,mode={p}"),
                other => format!("type=provenance,{other}"),
            };
            spec.apply(&text, "--provenance")?;
        }
        if let Some(s) = sbom {
            let text = match s {
                "true" | "1" => "type=sbom".to_string(),
                "false" | "0" => "type=sbom,disabled=true".to_string(),
                other => format!("type=sbom,{other}"),
            };
            spec.apply(&text, "--sbom")?;
        }
        Ok(spec)
    }

    /// Applies one `type=…,key=value,…` attestation.
    fn apply(&mut self, text: &str, flag: &str) -> Result<()> {
        let mut kind = None;
        let mut disabled = false;
        let mut provenance = ProvenanceSpec::default();
        for field in text.split(',').map(str::trim).filter(|f| !f.is_empty()) {
            let Some((k, v)) = field.split_once('=') else {
                bail!("{flag} {text:?}: {field:?} is not KEY=VALUE");
            };
            match k {
                "type" => kind = Some(v.to_string()),
                "disabled" => disabled = parse_bool(v, flag, text)?,
                "mode" => {
                    provenance.mode = v.parse().map_err(|e| anyhow::anyhow!("{flag}: {e}"))?
                }
                "builder-id" => provenance.builder_id = v.to_string(),
                // buildx's SBOM generator image and the scanner's options:
                // rbk has its own scanner, so they are taken and unused.
                "generator" | "scan-context" | "scan-stage" | "version" => {}
                other => bail!(
                    "{flag} {text:?}: unknown key {other:?} (expected type, mode, builder-id, \
                     disabled, generator)"
                ),
            }
        }
        match kind.as_deref() {
            Some("provenance") => {
                self.provenance = match disabled {
                    true => Wanted::Off,
                    false => Wanted::On(provenance),
                }
            }
            Some("sbom") => {
                self.sbom = match disabled {
                    true => Wanted::Off,
                    false => Wanted::On(()),
                }
            }
            Some(other) => {
                bail!("{flag} {text:?}: unknown attestation type {other:?} (provenance or sbom)")
            }
            None => bail!("{flag} {text:?}: no type= (type=provenance or type=sbom)"),
        }
        Ok(())
    }
}

fn parse_bool(v: &str, flag: &str, text: &str) -> Result<bool> {
    match v {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => bail!("{flag} {text:?}: {v:?} is not true or false"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buildx_forms_parse() {
        let s = AttestSpec::parse(&[], Some("mode=max,builder-id=https://ci/1"), None).unwrap();
        assert_eq!(
            s.provenance,
            Wanted::On(ProvenanceSpec {
                mode: Mode::Max,
                builder_id: "https://ci/1".into()
            })
        );
        assert_eq!(s.sbom, Wanted::Default);
        let s = AttestSpec::parse(&[], Some("false"), Some("true")).unwrap();
        assert_eq!(s.provenance, Wanted::Off);
        assert_eq!(s.sbom, Wanted::On(()));
        let s = AttestSpec::parse(
            &["type=sbom".into(), "type=provenance,mode=max".into()],
            None,
            None,
        )
        .unwrap();
        assert!(matches!(
            s.provenance,
            Wanted::On(ProvenanceSpec {
                mode: Mode::Max,
                ..
            })
        ));
        assert_eq!(s.sbom, Wanted::On(()));
        // The flag overrides --attest, as in buildx.
        let s = AttestSpec::parse(&["type=sbom".into()], None, Some("false")).unwrap();
        assert_eq!(s.sbom, Wanted::Off);
        let s = AttestSpec::parse(&[], Some("max"), None).unwrap();
        assert!(matches!(
            s.provenance,
            Wanted::On(ProvenanceSpec {
                mode: Mode::Max,
                ..
            })
        ));
    }

    #[test]
    fn bad_forms_name_the_flag() {
        for (attest, prov) in [
            (vec!["type=slsa".to_string()], None),
            (vec!["mode=max".to_string()], None),
            (vec![], Some("mode=medium")),
            (vec!["type=sbom,colour=blue".to_string()], None),
        ] {
            let e = AttestSpec::parse(&attest, prov, None)
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("--attest") || e.starts_with("--provenance"),
                "{e}"
            );
        }
    }
}
