//! `rbk images -f`: Docker's `dangling=true|false`, `label=KEY[=VALUE]`
//! and `reference=PATTERN`. Different keys must all match; several
//! `label=` must all match; several `reference=` are alternatives (as
//! with Docker). Any other key is an error.

use std::collections::BTreeMap;

use anyhow::bail;

/// The `-f` filters of one `rbk images`.
#[derive(Debug, Default, PartialEq)]
pub(super) struct ImageFilter {
    dangling: Option<bool>,
    labels: Vec<(String, Option<String>)>,
    references: Vec<String>,
}

impl ImageFilter {
    /// Parses each `-f KEY=VALUE`.
    pub(super) fn parse(filters: &[String]) -> anyhow::Result<ImageFilter> {
        let mut f = ImageFilter::default();
        for text in filters {
            let Some((key, value)) = text.split_once('=') else {
                bail!("bad format of filter {text:?} (expected name=value)");
            };
            match key.trim() {
                "dangling" => {
                    f.dangling = Some(match value.to_ascii_lowercase().as_str() {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => bail!("invalid filter {text:?}: dangling is true or false"),
                    })
                }
                "label" => f.labels.push(match value.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (value.to_string(), None),
                }),
                "reference" => f.references.push(value.to_string()),
                other => bail!(
                    "invalid filter {other:?}: rbk images filters on dangling, label and reference"
                ),
            }
        }
        Ok(f)
    }

    /// Whether an image with `tagged` names and `labels` passes the
    /// `dangling` and `label` filters.
    pub(super) fn keeps_image(
        &self,
        tagged: bool,
        labels: Option<&BTreeMap<String, String>>,
    ) -> bool {
        if self.dangling.is_some_and(|d| d == tagged) {
            return false;
        }
        self.labels.iter().all(|(k, v)| {
            labels
                .and_then(|l| l.get(k))
                .is_some_and(|have| v.as_ref().is_none_or(|want| want == have))
        })
    }

    /// Whether the row `repository:tag` passes the `reference` filters
    /// (an untagged image's row never does when there are some).
    pub(super) fn keeps_name(&self, repository: &str, tag: &str) -> bool {
        if self.references.is_empty() {
            return true;
        }
        if repository == "<none>" {
            return false;
        }
        let full = format!("{repository}:{tag}");
        self.references
            .iter()
            .any(|p| glob(p, repository) || glob(p, &full))
    }
}

/// Go's `path.Match` for `*` (any run of characters but `/`) and `?` (one
/// character but `/`); other characters match themselves.
fn glob(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    glob_at(&p, &n)
}

fn glob_at(p: &[char], n: &[char]) -> bool {
    match p.split_first() {
        None => n.is_empty(),
        Some(('*', rest)) => {
            let mut i = 0;
            loop {
                if glob_at(rest, &n[i..]) {
                    return true;
                }
                if i == n.len() || n[i] == '/' {
                    return false;
                }
                i += 1;
            }
        }
        Some(('?', rest)) => n.first().is_some_and(|c| *c != '/') && glob_at(rest, &n[1..]),
        Some((c, rest)) => n.first() == Some(c) && glob_at(rest, &n[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(args: &[&str]) -> ImageFilter {
        ImageFilter::parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn globs_like_path_match() {
        assert!(glob("busy*", "busybox"));
        assert!(glob("*:1.?", "busybox:1.2"));
        assert!(!glob("*", "localhost/busybox"));
        assert!(glob("*/*", "localhost/busybox"));
        assert!(!glob("busy", "busybox"));
    }

    #[test]
    fn references_are_alternatives() {
        let r = f(&["reference=busybox", "reference=alpine:3*"]);
        assert!(r.keeps_name("busybox", "latest"));
        assert!(r.keeps_name("alpine", "3.20"));
        assert!(!r.keeps_name("alpine", "edge"));
        assert!(!r.keeps_name("<none>", "<none>"));
    }

    #[test]
    fn labels_and_dangling_all_must_match() {
        let l: BTreeMap<String, String> =
            [("a".to_string(), "1".to_string())].into_iter().collect();
        assert!(f(&["label=a"]).keeps_image(true, Some(&l)));
        assert!(f(&["label=a=1"]).keeps_image(true, Some(&l)));
        assert!(!f(&["label=a=2"]).keeps_image(true, Some(&l)));
        assert!(!f(&["label=a", "label=b"]).keeps_image(true, Some(&l)));
        assert!(!f(&["label=a"]).keeps_image(true, None));
        assert!(f(&["dangling=true"]).keeps_image(false, None));
        assert!(!f(&["dangling=true"]).keeps_image(true, None));
        assert!(!f(&["dangling=false", "label=a"]).keeps_image(false, Some(&l)));
    }

    #[test]
    fn bad_filters_are_errors() {
        for (arg, want) in [
            ("since=x", "invalid filter \"since\""),
            ("dangling", "expected name=value"),
            ("dangling=maybe", "true or false"),
        ] {
            let e = ImageFilter::parse(&[arg.to_string()]).unwrap_err();
            assert!(e.to_string().contains(want), "{arg}: {e}");
        }
    }
}
