//! `COPY --chmod` / `ADD --chmod` modes: octal (`755`, `0640`) or
//! symbolic as chmod(1) writes them (`u=rwx,g=rx,o=`, `a+x`, `go-w`,
//! `+X`), which BuildKit accepts since Dockerfile 1.14. A symbolic mode is
//! applied to each copied file's own mode; there is no umask.

/// A parsed `--chmod` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chmod {
    /// Permission bits, replacing the file's.
    Octal(u32),
    /// Clauses applied in order to the file's mode.
    Symbolic(Vec<Clause>),
}

/// One `who op perms` action of a symbolic mode (`g+rx`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    /// Which classes: bit 0 user, 1 group, 2 others (all when none given).
    who: u8,
    op: char,
    perms: String,
}

const USER: u8 = 1;
const GROUP: u8 = 2;
const OTHER: u8 = 4;

impl Chmod {
    /// Parses a `--chmod` value; the error says what is wrong with it.
    pub fn parse(s: &str) -> Result<Chmod, String> {
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return match u32::from_str_radix(s, 8) {
                Ok(m) if m <= 0o7777 => Ok(Chmod::Octal(m)),
                _ => Err("an octal mode is at most 7777, in digits 0-7".into()),
            };
        }
        let mut clauses = Vec::new();
        for part in s.split(',') {
            parse_clause(part, &mut clauses)?;
        }
        Ok(Chmod::Symbolic(clauses))
    }

    /// The mode a file whose mode is `mode` gets (`is_dir` for `X`).
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        match self {
            Chmod::Octal(m) => *m,
            Chmod::Symbolic(clauses) => clauses
                .iter()
                .fold(mode & 0o7777, |m, c| c.apply(m, is_dir)),
        }
    }
}

/// Parses `[ugoa]*([-+=][rwxXst]*)+` into one clause per operator.
fn parse_clause(part: &str, out: &mut Vec<Clause>) -> Result<(), String> {
    let bad = || format!("{part:?} is not a mode: expected e.g. 755 or u=rwx,g=rx,o=");
    let ops_at = part.find(['+', '-', '=']).ok_or_else(bad)?;
    let mut who = 0;
    for c in part[..ops_at].chars() {
        who |= match c {
            'u' => USER,
            'g' => GROUP,
            'o' => OTHER,
            'a' => USER | GROUP | OTHER,
            _ => return Err(bad()),
        };
    }
    if who == 0 {
        who = USER | GROUP | OTHER;
    }
    let mut rest = &part[ops_at..];
    while let Some(op) = rest.chars().next() {
        let tail = &rest[1..];
        let end = tail.find(['+', '-', '=']).unwrap_or(tail.len());
        let perms = &tail[..end];
        if !perms.chars().all(|c| "rwxXst".contains(c)) {
            return Err(bad());
        }
        out.push(Clause {
            who,
            op,
            perms: perms.to_string(),
        });
        rest = &tail[end..];
    }
    Ok(())
}

impl Clause {
    fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        // The bits of each class this clause names: rwx, plus the set-id bit
        // of user and group and the sticky bit for others.
        let mut class = 0;
        if self.who & USER != 0 {
            class |= 0o4700;
        }
        if self.who & GROUP != 0 {
            class |= 0o2070;
        }
        if self.who & OTHER != 0 {
            class |= 0o1007;
        }
        let mut bits = 0;
        for p in self.perms.chars() {
            bits |= match p {
                'r' => 0o444,
                'w' => 0o222,
                'x' => 0o111,
                'X' if is_dir || mode & 0o111 != 0 => 0o111,
                's' => 0o6000,
                't' => 0o1000,
                _ => 0,
            };
        }
        let bits = bits & class;
        match self.op {
            '+' => mode | bits,
            '-' => mode & !bits,
            _ => (mode & !class) | bits,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(s: &str, mode: u32, dir: bool) -> u32 {
        match Chmod::parse(s) {
            Ok(c) => c.apply(mode, dir),
            Err(e) => panic!("{s}: {e}"),
        }
    }

    #[test]
    fn octal() {
        assert_eq!(Chmod::parse("755"), Ok(Chmod::Octal(0o755)));
        assert_eq!(Chmod::parse("04755"), Ok(Chmod::Octal(0o4755)));
        assert!(Chmod::parse("788").is_err());
        assert!(Chmod::parse("17777").is_err());
    }

    #[test]
    fn symbolic_like_chmod() {
        assert_eq!(sym("u=rwx,g=rx,o=", 0o644, false), 0o750);
        assert_eq!(sym("a+x", 0o644, false), 0o755);
        assert_eq!(sym("+x", 0o600, false), 0o711);
        assert_eq!(sym("go-w", 0o666, false), 0o644);
        assert_eq!(sym("u+s", 0o755, false), 0o4755);
        assert_eq!(sym("g+s,o+t", 0o755, true), 0o3755);
        assert_eq!(sym("u=rw-x+x", 0o644, false), 0o744);
        // X: execute only for directories and files someone may execute.
        assert_eq!(sym("a+X", 0o644, false), 0o644);
        assert_eq!(sym("a+X", 0o644, true), 0o755);
        assert_eq!(sym("a+X", 0o744, false), 0o755);
        // = clears the class's set-id bit too.
        assert_eq!(sym("u=rwx", 0o4644, false), 0o744);
    }

    #[test]
    fn bad_symbolic() {
        for bad in ["", "u", "z+x", "u+q", "u=rwx,", "rwx", "u+x,,g+x"] {
            assert!(Chmod::parse(bad).is_err(), "{bad:?}");
        }
    }
}
