//! `purser report sla`: how alerts were answered against their response
//! targets over a period, per severity. Reads the store; writes nothing.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::domain::calendar::{self, ResponseClock};
use crate::domain::duration;
use crate::domain::escalation::{self, Escalation, SlaRow};
use crate::engine::escalator::Settings;

#[derive(Debug, Serialize)]
pub struct SlaReport {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// The calendar's zone, in which the period and deadlines are read.
    pub zone: String,
    pub severities: Vec<SlaLine>,
}

#[derive(Debug, Serialize)]
pub struct SlaLine {
    pub severity: String,
    /// The target: `2h` and whether it counts every hour or working hours.
    pub target: String,
    pub clock: &'static str,
    pub raised: usize,
    pub within: usize,
    pub late: usize,
    pub missed: usize,
    pub open: usize,
    /// Acknowledged within target, of those whose outcome is known; absent
    /// when none is.
    pub within_percent: Option<u32>,
    /// Time to acknowledge on the severity's clock, e.g. `1h50m`.
    pub median: Option<String>,
    pub worst: Option<String>,
}

/// Where a period starts or ends: a local date or time in `zone`
/// (`2026-11-01`, `2026-11-01 09:00`), an RFC 3339 time, or a span back from
/// `now` (`30d`, `12h`).
pub fn parse_when(text: &str, zone: Tz, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let t = text.trim();
    let bad = || {
        format!("{t:?} is not a date such as 2026-11-01, an RFC 3339 time or a span such as 30d")
    };
    if let Ok(at) = DateTime::parse_from_rfc3339(t) {
        return Ok(at.with_timezone(&Utc));
    }
    if t.starts_with(|c: char| c.is_ascii_digit()) && !t.contains('-') {
        return duration::parse(t).map(|d| now - d).map_err(|_| bad());
    }
    calendar::parse_local(t, zone).map_err(|_| bad())
}

/// The report for the escalations raised in `since..until`, as answered by `now`.
pub fn sla(
    escalations: &[Escalation],
    settings: &Settings,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> SlaReport {
    let chosen: Vec<Escalation> = escalations
        .iter()
        .filter(|e| e.raised_at >= since && e.raised_at < until)
        .cloned()
        .collect();
    let severities = escalation::sla(&chosen, |s| settings.calendar_of(s), now)
        .into_iter()
        .map(|row| line(&row, settings))
        .collect();
    SlaReport {
        since,
        until,
        zone: settings.zone().name().to_owned(),
        severities,
    }
}

fn line(row: &SlaRow, settings: &Settings) -> SlaLine {
    let response = settings.response(row.severity);
    let decided = row.within + row.late + row.missed;
    SlaLine {
        severity: row.severity.as_str().to_owned(),
        target: duration::format(response.within),
        clock: match response.clock {
            ResponseClock::Always => "around the clock",
            ResponseClock::Working => "working hours",
        },
        raised: row.raised,
        within: row.within,
        late: row.late,
        missed: row.missed,
        open: row.open,
        within_percent: (decided > 0).then(|| {
            // Rounded down: 99.6% within is not 100%.
            u32::try_from(row.within * 100 / decided).unwrap_or(100)
        }),
        median: row.median.map(duration::format),
        worst: row.worst.map(duration::format),
    }
}

/// The report as a table for a terminal or an e-mail.
pub fn render(report: &SlaReport, zone: Tz) -> String {
    let local = |t: DateTime<Utc>| t.with_timezone(&zone).format("%Y-%m-%d %H:%M");
    let mut out = format!(
        "Alerts raised {} to {} ({}), answered against their response targets\n\n",
        local(report.since),
        local(report.until),
        report.zone
    );
    let header = [
        "severity", "target", "raised", "within", "late", "missed", "open", "on time", "median",
        "worst",
    ];
    let mut rows: Vec<[String; 10]> = vec![header.map(str::to_owned)];
    for l in &report.severities {
        let dash = || "-".to_owned();
        rows.push([
            l.severity.clone(),
            format!("{} {}", l.target, l.clock),
            l.raised.to_string(),
            l.within.to_string(),
            l.late.to_string(),
            l.missed.to_string(),
            l.open.to_string(),
            l.within_percent.map_or_else(dash, |p| format!("{p}%")),
            l.median.clone().unwrap_or_else(dash),
            l.worst.clone().unwrap_or_else(dash),
        ]);
    }
    let widths: Vec<usize> = (0..10)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    for r in &rows {
        let cells: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| {
                // Words left, numbers right.
                if i < 2 {
                    format!("{c:<w$}", w = widths[i])
                } else {
                    format!("{c:>w$}", w = widths[i])
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out.push_str(
        "\nwithin: acknowledged by the target; late: after it; missed: never \
         acknowledged, past the target or resolved first; open: still inside it.\n\
         Times to acknowledge count on each severity's clock.\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::calendar::Calendar;
    use chrono::TimeZone;

    #[test]
    fn a_period_is_a_local_date_a_time_or_a_span_back() {
        let zone = chrono_tz::Asia::Shanghai;
        let now = Utc.with_ymd_and_hms(2026, 11, 23, 2, 0, 0).unwrap();
        assert_eq!(
            parse_when("2026-11-01", zone, now).unwrap(),
            Utc.with_ymd_and_hms(2026, 10, 31, 16, 0, 0).unwrap()
        );
        assert_eq!(
            parse_when("2026-11-01T00:00:00Z", zone, now).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap()
        );
        assert_eq!(
            parse_when("30d", zone, now).unwrap(),
            now - chrono::Duration::days(30)
        );
        for bad in ["last week", "2026-13-01", "5,00d", ""] {
            let e = parse_when(bad, zone, now).unwrap_err();
            assert!(e.contains("2026-11-01"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_table_lines_up_and_leaves_out_what_is_unknown() {
        let settings = Settings {
            calendar: Calendar::weekdays(chrono_tz::Asia::Shanghai, 9 * 60, 18 * 60),
            calendars: Default::default(),
            responses: Default::default(),
            chains: Default::default(),
            schedules: Vec::new(),
            overrides: Vec::new(),
            people: Vec::new(),
        };
        let at = Utc.with_ymd_and_hms(2026, 11, 2, 1, 0, 0).unwrap();
        let e = escalation::raise(
            "f1",
            at,
            crate::domain::rules::Severity::A,
            at,
            settings.response(crate::domain::rules::Severity::A),
            None,
            &settings.calendar,
        );
        let acked = escalation::acknowledge(
            &e,
            "ana",
            at + chrono::Duration::minutes(40),
            None,
            &settings.calendar,
        );
        let report = sla(
            &[acked],
            &settings,
            at - chrono::Duration::days(1),
            at + chrono::Duration::days(1),
            at + chrono::Duration::days(1),
        );
        let text = render(&report, settings.zone());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "Alerts raised 2026-11-01 09:00 to 2026-11-03 09:00 (Asia/Shanghai), answered against their response targets"
        );
        assert_eq!(
            &lines[2..6],
            [
                "severity  target               raised  within  late  missed  open  on time  median  worst",
                "A         2h around the clock       1       1     0       0     0     100%     40m    40m",
                "B         4h working hours          0       0     0       0     0        -       -      -",
                "C         8h working hours          0       0     0       0     0        -       -      -",
            ]
        );
    }
}
