//! Questions on the terminal.

/// Asks `warning` and "Are you sure you want to continue? [y/N]" on the
/// terminal, as Docker's prune commands do: whether the answer is yes.
pub fn confirm(warning: &str) -> bool {
    use std::io::Write as _;
    eprint!("{warning}\nAre you sure you want to continue? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line).is_err() {
        return false;
    }
    matches!(line.trim(), "y" | "Y" | "yes" | "Yes")
}
