//! Sizes and times as Docker prints them for people: `4.26MB`,
//! `5 minutes ago`, `2024-05-01 10:20:30 +0000 UTC`.

/// Sizes as Docker prints them: decimal units, three significant digits.
pub(crate) fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    let s = if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    format!("{s}{}", UNITS[u])
}

/// "5 minutes ago", like Docker's `CREATED` column.
pub(crate) fn since(rfc3339: &str) -> String {
    let Ok(t) =
        time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
    else {
        return "N/A".to_string();
    };
    ago((time::OffsetDateTime::now_utc() - t).whole_seconds().max(0))
}

/// `secs` seconds as Docker's `CREATED` column says them (go-units'
/// HumanDuration, then " ago").
fn ago(secs: i64) -> String {
    let mins = secs / 60;
    let hours = (secs + 1800) / 3600;
    let ago = match secs {
        0 => "Less than a second".to_string(),
        1 => "1 second".to_string(),
        s if s < 60 => format!("{s} seconds"),
        s if s < 120 => "About a minute".to_string(),
        s if s < 3600 => format!("{mins} minutes"),
        _ if hours == 1 => "About an hour".to_string(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", hours / 24 / 365),
    };
    format!("{ago} ago")
}

/// An RFC 3339 time as Docker's `CreatedAt` prints it
/// (`2024-05-01 10:20:30 +0000 UTC`); as it is when it does not parse.
pub(crate) fn created_at(rfc3339: &str) -> String {
    use time::format_description::well_known::Rfc3339;
    let Ok(t) = time::OffsetDateTime::parse(rfc3339, &Rfc3339) else {
        return rfc3339.to_string();
    };
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} +0000 UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_docker() {
        for (n, s) in [
            (0, "0B"),
            (999, "999B"),
            (1234, "1.23kB"),
            (4_264_000, "4.26MB"),
            (187_000_000, "187MB"),
            (4_200_000, "4.2MB"),
            (10_000, "10kB"),
        ] {
            assert_eq!(human_size(n), s, "{n}");
        }
    }

    #[test]
    fn created_since() {
        assert_eq!(since("nonsense"), "N/A");
        assert_eq!(ago(0), "Less than a second ago");
        assert_eq!(ago(1), "1 second ago");
        assert_eq!(ago(59), "59 seconds ago");
        assert_eq!(ago(90), "About a minute ago");
        assert_eq!(
            since("2000-01-01T00:00:00Z").split(' ').nth(1),
            Some("years")
        );
    }
}
