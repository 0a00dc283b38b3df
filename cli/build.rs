//! Build facts for `rbk version`: the git commit and its date, and when
//! this binary was built (SOURCE_DATE_EPOCH when set, for reproducible
//! builds). Outside a git checkout they read "unknown".

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

fn main() {
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some();
    let date = git(&["log", "-1", "--format=%cs"]).unwrap_or_else(|| "unknown".into());
    let built = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        });
    let suffix = if dirty { "+changes" } else { "" };
    println!("cargo:rustc-env=RBK_COMMIT={commit}{suffix}");
    println!("cargo:rustc-env=RBK_COMMIT_DATE={date}");
    println!("cargo:rustc-env=RBK_BUILT_EPOCH={built}");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    // Rebuilt when the checked-out commit moves (only paths that exist:
    // a missing one would rerun this script on every build).
    for p in ["../.git/HEAD", "../.git/index"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(p);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}
