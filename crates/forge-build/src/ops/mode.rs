//! `--chmod`: octal, as the Dockerfile has always taken it, and symbolic
//! (`u+x,g-w`, `a=rX`, `g=u`, …), which BuildKit accepts since
//! `dockerfile:1.14` through BSD `setmode(3)` semantics with a zero umask
//! (so `+x` means `a+x`) and Linux's `X` (execute for directories and for
//! files that already have an execute bit).

/// A parsed `--chmod` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Chmod {
    /// Octal: sets the permission bits, keeping the file's setuid, setgid
    /// and sticky bits when the value has none (BuildKit keeps the source's
    /// special bits and takes the permission bits from the value).
    Octal(u32),
    Symbolic(Vec<Clause>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Clause {
    /// Bits the clause may touch (`u` → 0o4700, …); 0o7777 for `a` or none.
    who: u32,
    actions: Vec<Action>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Action {
    op: u8,
    perms: Perms,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Perms {
    /// `rwxst` bits (as 0o7777 masks) and whether `X` was given.
    Bits { bits: u32, cond_x: bool },
    /// `u`, `g` or `o`: copy that class's current bits.
    Copy(u8),
}

/// Why a `--chmod` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChmodError {
    /// BuildKit's words for a value that looks numeric.
    #[error("invalid chmod parameter: '{0}'. it should be octal string and between 0 and 07777")]
    Octal(String),
    #[error("invalid chmod parameter: '{value}': {reason}")]
    Symbolic { value: String, reason: &'static str },
}

impl Chmod {
    pub(crate) fn parse(value: &str) -> Result<Chmod, ChmodError> {
        if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
            return match u32::from_str_radix(value, 8) {
                Ok(m) if m <= 0o7777 => Ok(Chmod::Octal(m)),
                _ => Err(ChmodError::Octal(value.to_string())),
            };
        }
        let bad = |reason| ChmodError::Symbolic {
            value: value.to_string(),
            reason,
        };
        if value.is_empty() {
            return Err(bad("empty mode"));
        }
        let mut clauses = Vec::new();
        for clause in value.split(',') {
            let b = clause.as_bytes();
            let mut i = 0;
            let mut who = 0u32;
            while i < b.len() && matches!(b[i], b'u' | b'g' | b'o' | b'a') {
                who |= match b[i] {
                    b'u' => 0o4700,
                    b'g' => 0o2070,
                    b'o' => 0o1007,
                    _ => 0o7777,
                };
                i += 1;
            }
            if who == 0 {
                who = 0o7777;
            }
            let mut actions = Vec::new();
            if i >= b.len() {
                return Err(bad("missing operator (+, - or =)"));
            }
            while i < b.len() {
                let op = b[i];
                if !matches!(op, b'+' | b'-' | b'=') {
                    return Err(bad("expected +, - or ="));
                }
                i += 1;
                if i < b.len() && matches!(b[i], b'u' | b'g' | b'o') {
                    actions.push(Action {
                        op,
                        perms: Perms::Copy(b[i]),
                    });
                    i += 1;
                    continue;
                }
                let mut bits = 0u32;
                let mut cond_x = false;
                while i < b.len() && matches!(b[i], b'r' | b'w' | b'x' | b'X' | b's' | b't') {
                    match b[i] {
                        b'r' => bits |= 0o444,
                        b'w' => bits |= 0o222,
                        b'x' => bits |= 0o111,
                        b'X' => cond_x = true,
                        b's' => bits |= 0o6000,
                        _ => bits |= 0o1000,
                    }
                    i += 1;
                }
                actions.push(Action {
                    op,
                    perms: Perms::Bits { bits, cond_x },
                });
            }
            clauses.push(Clause { who, actions });
        }
        Ok(Chmod::Symbolic(clauses))
    }

    /// The new permission bits (0o7777) for an entry with bits `mode`.
    pub(crate) fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        let mode = mode & 0o7777;
        match self {
            Chmod::Octal(m) => (mode & 0o7000) | (m & 0o777) | (m & 0o7000),
            Chmod::Symbolic(clauses) => {
                let mut cur = mode;
                for c in clauses {
                    for a in &c.actions {
                        let bits = match &a.perms {
                            Perms::Bits { bits, cond_x } => {
                                let mut bits = *bits;
                                if *cond_x && (is_dir || cur & 0o111 != 0) {
                                    bits |= 0o111;
                                }
                                bits & c.who
                            }
                            Perms::Copy(class) => {
                                let v = match class {
                                    b'u' => (cur >> 6) & 7,
                                    b'g' => (cur >> 3) & 7,
                                    _ => cur & 7,
                                };
                                (v << 6 | v << 3 | v) & c.who & 0o777
                            }
                        };
                        match a.op {
                            b'+' => cur |= bits,
                            b'-' => cur &= !bits,
                            _ => {
                                // `=` clears the class's permission bits
                                // (and its set-id bit) before setting.
                                let clear = c.who & 0o6777;
                                cur = (cur & !clear) | bits;
                            }
                        }
                    }
                }
                cur
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ap(spec: &str, mode: u32, dir: bool) -> u32 {
        Chmod::parse(spec).expect("valid").apply(mode, dir)
    }

    #[test]
    fn octal() {
        assert_eq!(ap("0755", 0o644, false), 0o755);
        assert_eq!(ap("644", 0o4755, false), 0o4644);
        assert_eq!(ap("4755", 0o644, false), 0o4755);
        assert!(matches!(Chmod::parse("08"), Err(ChmodError::Octal(_))));
        assert!(matches!(Chmod::parse("17777"), Err(ChmodError::Octal(_))));
    }

    #[test]
    fn symbolic() {
        assert_eq!(ap("u+x", 0o644, false), 0o744);
        assert_eq!(ap("+x", 0o644, false), 0o755);
        assert_eq!(ap("g-w,o-w", 0o666, false), 0o644);
        assert_eq!(ap("a=r", 0o755, false), 0o444);
        assert_eq!(ap("u=rwX,go=rX", 0o600, false), 0o644);
        assert_eq!(ap("u=rwX,go=rX", 0o700, false), 0o755);
        assert_eq!(ap("u=rwX,go=rX", 0o700, true), 0o755);
        assert_eq!(ap("u=rwX,go=rX", 0o600, true), 0o755);
        assert_eq!(ap("g=u", 0o740, false), 0o770);
        assert_eq!(ap("o=", 0o777, false), 0o770);
        assert_eq!(ap("u+s", 0o755, false), 0o4755);
        assert_eq!(ap("+t", 0o777, true), 0o1777);
        assert_eq!(ap("u+r-w", 0o200, false), 0o400);
        for bad in ["", "u", "x+r", "u+q", "u+r,"] {
            assert!(Chmod::parse(bad).is_err(), "{bad}");
        }
    }
}
