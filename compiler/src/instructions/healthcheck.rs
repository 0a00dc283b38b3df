//! `HEALTHCHECK`: `NONE` or `CMD` with its timing flags, and the Go
//! durations those flags take.

use crate::ast::Node;
use crate::error::ParseError;

use super::flags::{flag_error, Flags};
use super::{err, Command, Healthcheck, Instruction};

pub(super) fn convert_healthcheck(node: &Node) -> Result<Instruction, ParseError> {
    let flags = Flags::parse(
        node,
        "HEALTHCHECK",
        &[
            "interval",
            "timeout",
            "start-period",
            "start-interval",
            "retries",
        ],
    )?;
    let Some(kind) = node.args.first() else {
        return Err(err(node, "HEALTHCHECK requires at least one argument"));
    };
    match kind.to_ascii_uppercase().as_str() {
        "NONE" => {
            if node.args.len() > 1 || !node.flags.is_empty() {
                return Err(err(node, "HEALTHCHECK NONE takes no arguments"));
            }
            Ok(Instruction::Healthcheck(Healthcheck::None))
        }
        "CMD" => {
            let rest = &node.args[1..];
            let command = if node.json {
                Command::Exec(rest.to_vec())
            } else {
                Command::Shell(rest.first().cloned().unwrap_or_default())
            };
            if matches!(&command, Command::Shell(s) if s.trim().is_empty())
                || matches!(&command, Command::Exec(v) if v.is_empty())
            {
                return Err(err(node, "Missing command after HEALTHCHECK CMD"));
            }
            for (flag, value) in [
                ("interval", flags.string("interval")?),
                ("timeout", flags.string("timeout")?),
                ("start-period", flags.string("start-period")?),
                ("start-interval", flags.string("start-interval")?),
            ] {
                if let Some(v) = value {
                    if parse_duration(&v).is_none() {
                        return Err(flag_error(
                            node,
                            &format!("--{flag}"),
                            format!("invalid duration {v:?} for --{flag}"),
                        ));
                    }
                }
            }
            let retries = flags.string("retries")?;
            if let Some(r) = &retries {
                if r.parse::<u32>().is_err() {
                    return Err(flag_error(
                        node,
                        "--retries",
                        format!("invalid --retries {r:?}: must be a non-negative number"),
                    ));
                }
            }
            Ok(Instruction::Healthcheck(Healthcheck::Check {
                command,
                interval: flags.string("interval")?,
                timeout: flags.string("timeout")?,
                start_period: flags.string("start-period")?,
                start_interval: flags.string("start-interval")?,
                retries,
            }))
        }
        other => Err(err(
            node,
            format!("Unknown type {other:?} in HEALTHCHECK (try CMD)"),
        )),
    }
}

/// Parses a Go duration (`30s`, `1m30s`, `1.5h`, `500ms`) into nanoseconds.
pub fn parse_duration(s: &str) -> Option<u64> {
    if s == "0" {
        return Some(0);
    }
    let mut total: f64 = 0.0;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let value: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += value * scale;
    }
    if total.is_finite() && total < u64::MAX as f64 {
        Some(total as u64)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        for (s, want) in [
            ("30s", Some(30_000_000_000)),
            ("1m30s", Some(90_000_000_000)),
            ("500ms", Some(500_000_000)),
            ("1.5h", Some(5_400_000_000_000)),
            ("0", Some(0)),
            ("", None),
            ("10", None),
            ("5x", None),
        ] {
            assert_eq!(parse_duration(s), want, "{s}");
        }
    }
}
