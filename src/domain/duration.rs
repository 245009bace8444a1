//! Durations as people write them in config and chat: `90s`, `15m`, `4h`,
//! `7d`, `2w`, and sums like `1h30m`.

use chrono::Duration;

/// The longest duration purser takes anywhere: a century, so that any
/// moment plus a duration stays a moment.
pub const LONGEST_DAYS: i64 = 36_500;

/// Parses `90s`, `15m`, `4h`, `7d`, `2w` and sums like `1h30m`, up to
/// [`LONGEST_DAYS`]; never overflows, whatever the digits.
pub fn parse(text: &str) -> Result<Duration, String> {
    parse_within(text, LONGEST_DAYS * 86_400).map_err(|e| match e {
        TooLong => format!("{text:?} is longer than purser takes (at most {LONGEST_DAYS}d)"),
        Bad(e) => e,
    })
}

/// As [`parse`], for a span that may last at most `max`: anything longer,
/// however long, is refused as "{what} may last at most …", and `why`
/// follows when given.
pub fn parse_at_most(text: &str, max: Duration, what: &str) -> Result<Duration, String> {
    let limit = max.num_seconds().min(LONGEST_DAYS * 86_400);
    parse_within(text, limit).map_err(|e| match e {
        TooLong => format!("{what} may last at most {}", format(max)),
        Bad(e) => e,
    })
}

enum Refused {
    TooLong,
    Bad(String),
}
use Refused::{Bad, TooLong};

fn parse_within(text: &str, limit_secs: i64) -> Result<Duration, Refused> {
    let t = text.trim();
    if t.is_empty() {
        return Err(Bad("empty duration; write e.g. 30s, 15m, 4h or 7d".into()));
    }
    let mut total: i64 = 0;
    let mut digits = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        if digits.is_empty() {
            return Err(Bad(format!(
                "{text:?} is not a duration; write e.g. 30s, 15m, 4h or 7d"
            )));
        }
        let size: i64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            'w' => 604_800,
            _ => {
                return Err(Bad(format!(
                    "{text:?} has unknown unit {c:?}; use s, m, h, d or w"
                )));
            }
        };
        // Digits beyond i64 are too long too, not malformed.
        let n: i64 = digits.parse().map_err(|_| TooLong)?;
        digits.clear();
        total = n
            .checked_mul(size)
            .and_then(|secs| total.checked_add(secs))
            .ok_or(TooLong)?;
        if total > limit_secs {
            return Err(TooLong);
        }
    }
    if !digits.is_empty() {
        return Err(Bad(format!(
            "{text:?} lacks a unit; write e.g. {digits}s, {digits}m or {digits}d"
        )));
    }
    Ok(Duration::seconds(total))
}

/// The shortest way to write `d` back: `1h30m`, `2d`, `45s`.
pub fn format(d: Duration) -> String {
    let mut secs = d.num_seconds();
    if secs == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    if secs < 0 {
        out.push('-');
        secs = -secs;
    }
    for (unit, size) in [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print_back() {
        assert_eq!(parse("1h30m").unwrap(), Duration::minutes(90));
        assert_eq!(parse("2w").unwrap(), Duration::days(14));
        assert!(parse("").unwrap_err().contains("empty"));
        assert!(parse("5").unwrap_err().contains("lacks a unit"));
        assert!(parse("5y").unwrap_err().contains("unknown unit"));
        assert!(parse("h").unwrap_err().contains("not a duration"));
        assert_eq!(format(Duration::minutes(90)), "1h30m");
        assert_eq!(format(Duration::days(2)), "2d");
        assert_eq!(format(Duration::zero()), "0s");
    }

    #[test]
    fn durations_beyond_a_century_are_refused_never_overflowed() {
        for huge in [
            "99999999999999d",
            "99999999999999999999999s",
            "36501d",
            "5300w",
        ] {
            let e = parse(huge).unwrap_err();
            assert!(e.contains("at most 36500d"), "{huge}: {e}");
        }
        assert_eq!(parse("36500d").unwrap(), Duration::days(36_500));
        let e = parse_at_most("99999999999999d", Duration::days(30), "a silence").unwrap_err();
        assert_eq!(e, "a silence may last at most 30d");
        assert_eq!(
            parse_at_most("29d", Duration::days(30), "a silence").unwrap(),
            Duration::days(29)
        );
        assert!(
            parse_at_most("5x", Duration::days(30), "a silence")
                .unwrap_err()
                .contains("unknown unit")
        );
    }
}
