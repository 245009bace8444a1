//! Durations as people write them in config and chat: `90s`, `15m`, `4h`,
//! `7d`, `2w`, and sums like `1h30m`.

use chrono::Duration;

/// Parses `90s`, `15m`, `4h`, `7d`, `2w` and sums like `1h30m`.
pub fn parse(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty duration; write e.g. 30s, 15m, 4h or 7d".into());
    }
    let mut total = Duration::zero();
    let mut digits = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: i64 = digits
            .parse()
            .map_err(|_| format!("{text:?} is not a duration; write e.g. 30s, 15m, 4h or 7d"))?;
        digits.clear();
        let unit = match c {
            's' => Duration::seconds(n),
            'm' => Duration::minutes(n),
            'h' => Duration::hours(n),
            'd' => Duration::days(n),
            'w' => Duration::weeks(n),
            _ => {
                return Err(format!(
                    "{text:?} has unknown unit {c:?}; use s, m, h, d or w"
                ));
            }
        };
        total += unit;
    }
    if !digits.is_empty() {
        return Err(format!(
            "{text:?} lacks a unit; write e.g. {digits}s, {digits}m or {digits}d"
        ));
    }
    Ok(total)
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
}
