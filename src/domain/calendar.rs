//! Working time: business hours in a time zone, business days, public
//! holidays and the make-up working days that move weekends (China's State
//! Council moves a Saturday or Sunday to work around most holidays). Response
//! clocks for severities counted in working hours run only inside it.
//!
//! Instants are UTC; the rules are local wall time in an IANA zone, so a
//! day on which clocks change still opens and closes at its wall times.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc, Weekday};
use chrono_tz::Tz;

/// Minutes after local midnight; 1440 is the end of the day.
pub type Minute = u32;

/// How far ahead working time is looked for before giving up: a calendar
/// validated to have business days never gets near it.
const HORIZON_DAYS: u32 = 3660;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    pub zone: Tz,
    pub opens: Minute,
    pub closes: Minute,
    /// Indexed by `Weekday::num_days_from_monday`.
    pub days: [bool; 7],
    /// Days off that would be business days, with the holiday's name.
    pub holidays: BTreeMap<NaiveDate, String>,
    /// Days worked that would be days off (the make-up days), with the
    /// holiday they make up for.
    pub workdays: BTreeMap<NaiveDate, String>,
}

impl Calendar {
    /// Monday to Friday, `opens` to `closes`, no holidays.
    pub fn weekdays(zone: Tz, opens: Minute, closes: Minute) -> Calendar {
        Calendar {
            zone,
            opens,
            closes,
            days: [true, true, true, true, true, false, false],
            holidays: BTreeMap::new(),
            workdays: BTreeMap::new(),
        }
    }

    pub fn is_business_day(&self, date: NaiveDate) -> bool {
        if self.workdays.contains_key(&date) {
            return true;
        }
        if self.holidays.contains_key(&date) {
            return false;
        }
        self.days[date.weekday().num_days_from_monday() as usize]
    }

    /// Why `date` is or is not worked, when a holiday decides it.
    pub fn reason(&self, date: NaiveDate) -> Option<&str> {
        self.workdays
            .get(&date)
            .or_else(|| self.holidays.get(&date))
            .map(String::as_str)
    }

    /// The working hours of a local date, as instants; `None` on a day off.
    pub fn window(&self, date: NaiveDate) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        if !self.is_business_day(date) || self.closes <= self.opens {
            return None;
        }
        Some((
            self.instant(date, self.opens),
            self.instant(date, self.closes),
        ))
    }

    pub fn local_date(&self, at: DateTime<Utc>) -> NaiveDate {
        at.with_timezone(&self.zone).date_naive()
    }

    /// The instant `d` of working time after `from`: a clock that runs only
    /// in working hours. `from` outside them starts at the next opening.
    pub fn add(&self, from: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
        if d <= Duration::zero() {
            return from;
        }
        let mut left = d;
        let mut date = self.local_date(from);
        for _ in 0..HORIZON_DAYS {
            if let Some((open, close)) = self.window(date) {
                let start = open.max(from);
                if start < close {
                    let here = close - start;
                    if left <= here {
                        return start + left;
                    }
                    left -= here;
                }
            }
            date = date.succ_opt().unwrap_or(date);
        }
        // Unreachable for a validated calendar; never later than the wall clock would say.
        from + d
    }

    /// Working time in `[from, to)`.
    pub fn between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
        let mut total = Duration::zero();
        if to <= from {
            return total;
        }
        let mut date = self.local_date(from);
        let last = self.local_date(to);
        while date <= last {
            if let Some((open, close)) = self.window(date) {
                let (s, e) = (open.max(from), close.min(to));
                if s < e {
                    total += e - s;
                }
            }
            match date.succ_opt() {
                Some(d) => date = d,
                None => break,
            }
        }
        total
    }

    /// Local wall time `minute` on `date` as an instant. A wall time that a
    /// clock change skips is taken as the first one after the gap; one it
    /// repeats, as the earlier.
    pub fn instant(&self, date: NaiveDate, minute: Minute) -> DateTime<Utc> {
        let midnight = date.and_hms_opt(0, 0, 0).unwrap_or_default();
        let mut wall = midnight + Duration::minutes(i64::from(minute));
        for _ in 0..(24 * 60) {
            if let Some(t) = self.zone.from_local_datetime(&wall).earliest() {
                return t.with_timezone(&Utc);
            }
            wall += Duration::minutes(1);
        }
        Utc.from_utc_datetime(&wall)
    }
}

/// Whether a response clock runs around the clock or only in working hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseClock {
    Always,
    Working,
}

impl ResponseClock {
    pub fn as_str(self) -> &'static str {
        match self {
            ResponseClock::Always => "always",
            ResponseClock::Working => "working",
        }
    }

    pub fn parse(s: &str) -> Option<ResponseClock> {
        match s {
            "always" => Some(ResponseClock::Always),
            "working" => Some(ResponseClock::Working),
            _ => None,
        }
    }

    /// The instant this clock reads `d` after `from`.
    pub fn add(self, calendar: &Calendar, from: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
        match self {
            ResponseClock::Always => from + d,
            ResponseClock::Working => calendar.add(from, d),
        }
    }

    /// How much this clock ran between `from` and `to`.
    pub fn elapsed(self, calendar: &Calendar, from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
        match self {
            ResponseClock::Always => (to - from).max(Duration::zero()),
            ResponseClock::Working => calendar.between(from, to),
        }
    }
}

/// A local date or date and time in `zone`, as written in config and chat:
/// `2026-11-25` (its midnight), `2026-11-25T09:00` or `2026-11-25 09:00`.
pub fn parse_local(text: &str, zone: Tz) -> Result<DateTime<Utc>, String> {
    let (date, minute) = parse_wall(text)?;
    Ok(Calendar::weekdays(zone, 0, 0).instant(date, minute))
}

/// A wall date and time, in no zone yet: `2026-11-25` (its midnight),
/// `2026-11-25T09:00` or `2026-11-25 09:00`.
pub fn parse_wall(text: &str) -> Result<(NaiveDate, Minute), String> {
    let t = text.trim();
    let bad = || format!("{t:?} is not a date or time; write e.g. 2026-11-25 or 2026-11-25T09:00");
    let (date, minute) = match t.split_once(['T', ' ']) {
        Some((d, time)) => (d, parse_minute(time).map_err(|_| bad())?),
        None => (t, 0),
    };
    if minute >= 24 * 60 {
        return Err(bad());
    }
    let date: NaiveDate = date.parse().map_err(|_| bad())?;
    Ok((date, minute))
}

/// `"09:00"` → minutes after midnight; `"24:00"` is the end of the day.
pub fn parse_minute(text: &str) -> Result<Minute, String> {
    let bad = || format!("{text:?} is not a time of day; write e.g. 09:00 or 18:30");
    let (h, m) = text.trim().split_once(':').ok_or_else(bad)?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: u32 = h.parse().map_err(|_| bad())?;
    let m: u32 = m.parse().map_err(|_| bad())?;
    if m > 59 || h > 24 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// `"mon"`, `"Monday"` → the weekday.
pub fn parse_weekday(text: &str) -> Option<Weekday> {
    let t = text.trim().to_ascii_lowercase();
    let all = [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
        Weekday::Sun,
    ];
    all.into_iter().find(|d| {
        let full = match d {
            Weekday::Mon => "monday",
            Weekday::Tue => "tuesday",
            Weekday::Wed => "wednesday",
            Weekday::Thu => "thursday",
            Weekday::Fri => "friday",
            Weekday::Sat => "saturday",
            Weekday::Sun => "sunday",
        };
        t == full || t == full[..3]
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn beijing() -> Calendar {
        // Part of China's 2026 calendar: Qingming, National Day and its
        // make-up days, and the Spring Festival's make-up Saturday.
        let mut c = Calendar::weekdays(chrono_tz::Asia::Shanghai, 9 * 60, 18 * 60);
        for d in ["2026-04-04", "2026-04-05", "2026-04-06"] {
            c.holidays.insert(date(d), "Qingming".into());
        }
        for day in 1..=7 {
            c.holidays
                .insert(date(&format!("2026-10-0{day}")), "National Day".into());
        }
        c.workdays.insert(date("2026-09-20"), "National Day".into());
        c.workdays.insert(date("2026-10-10"), "National Day".into());
        c.workdays
            .insert(date("2026-02-14"), "Spring Festival".into());
        c
    }

    fn date(s: &str) -> NaiveDate {
        s.parse().expect("a date")
    }

    /// Beijing wall time → UTC.
    pub(crate) fn bj(s: &str) -> DateTime<Utc> {
        let naive = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").expect("a time");
        chrono_tz::Asia::Shanghai
            .from_local_datetime(&naive)
            .single()
            .expect("one instant")
            .with_timezone(&Utc)
    }

    #[test]
    fn a_friday_evening_before_a_holiday_is_due_on_the_next_working_day() {
        // Friday 3 April 2026, 17:30; Qingming takes Saturday to Monday.
        let c = beijing();
        let due = c.add(bj("2026-04-03 17:30"), Duration::hours(4));
        assert_eq!(
            due,
            bj("2026-04-07 12:30"),
            "30 min on Friday, 3h30 on Tuesday"
        );
        assert_ne!(due, bj("2026-04-03 21:30"));
        assert_eq!(
            c.between(bj("2026-04-03 17:30"), due),
            Duration::hours(4),
            "the clock ran four working hours"
        );
        // Around the clock it would be due that night.
        assert_eq!(
            ResponseClock::Always.add(&c, bj("2026-04-03 17:30"), Duration::hours(2)),
            bj("2026-04-03 19:30")
        );
    }

    #[test]
    fn make_up_days_are_worked_and_holidays_are_not() {
        let c = beijing();
        // Friday 9 October 14:00 + 8h: 4h on Friday, then make-up Saturday the 10th.
        assert_eq!(
            c.add(bj("2026-10-09 14:00"), Duration::hours(8)),
            bj("2026-10-10 13:00")
        );
        assert!(c.is_business_day(date("2026-09-20")), "a Sunday worked");
        assert!(c.is_business_day(date("2026-02-14")), "a Saturday worked");
        assert!(!c.is_business_day(date("2026-10-05")), "a Monday off");
        assert!(!c.is_business_day(date("2026-10-11")), "an ordinary Sunday");
        assert_eq!(c.reason(date("2026-10-10")), Some("National Day"));
        assert_eq!(c.reason(date("2026-10-12")), None);
        // Raised on the last working day before National Day, after hours:
        // nothing runs until Thursday 8 October opens.
        assert_eq!(
            c.add(bj("2026-09-30 18:05"), Duration::hours(1)),
            bj("2026-10-08 10:00")
        );
    }

    #[test]
    fn working_time_between_counts_only_open_hours() {
        let c = beijing();
        assert_eq!(
            c.between(bj("2026-11-20 17:00"), bj("2026-11-23 10:00")),
            Duration::hours(2),
            "Friday's last hour and Monday's first"
        );
        assert_eq!(
            c.between(bj("2026-11-21 10:00"), bj("2026-11-21 12:00")),
            Duration::zero()
        );
        assert_eq!(
            c.between(bj("2026-11-23 12:00"), bj("2026-11-23 11:00")),
            Duration::zero()
        );
    }

    #[test]
    fn an_exact_fit_is_due_at_closing_not_the_next_morning() {
        let c = beijing();
        assert_eq!(
            c.add(bj("2026-11-23 14:00"), Duration::hours(4)),
            bj("2026-11-23 18:00")
        );
        assert_eq!(
            c.add(bj("2026-11-23 14:00"), Duration::zero()),
            bj("2026-11-23 14:00")
        );
    }

    #[test]
    fn wall_times_hold_across_a_clock_change() {
        // Berlin springs forward on Sunday 29 March 2026: Monday opens at
        // 09:00 local, which is 07:00 UTC, not 08:00.
        let c = Calendar::weekdays(chrono_tz::Europe::Berlin, 9 * 60, 18 * 60);
        let friday_17 = Utc
            .with_ymd_and_hms(2026, 3, 27, 16, 0, 0)
            .single()
            .expect("t");
        assert_eq!(
            c.add(friday_17, Duration::hours(2)),
            Utc.with_ymd_and_hms(2026, 3, 30, 8, 0, 0)
                .single()
                .expect("t")
        );
        // A wall time skipped by the change is the first one after the gap.
        let sunday = date("2026-03-29");
        assert_eq!(
            c.instant(sunday, 2 * 60 + 30),
            Utc.with_ymd_and_hms(2026, 3, 29, 1, 0, 0)
                .single()
                .expect("t")
        );
    }

    #[test]
    fn a_day_may_close_at_midnight() {
        let mut c = beijing();
        c.closes = 24 * 60;
        assert_eq!(
            c.add(bj("2026-11-23 22:00"), Duration::hours(3)),
            bj("2026-11-24 10:00")
        );
    }

    #[test]
    fn times_and_weekdays_parse_strictly() {
        assert_eq!(parse_minute("09:00"), Ok(540));
        assert_eq!(parse_minute("9:30"), Ok(570));
        assert_eq!(parse_minute("24:00"), Ok(1440));
        for bad in [
            "24:01", "9", "09:0", "09:60", "-1:00", "ab:cd", "", "100:00",
        ] {
            assert!(parse_minute(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(parse_weekday("Mon"), Some(Weekday::Mon));
        assert_eq!(parse_weekday("sunday"), Some(Weekday::Sun));
        assert_eq!(parse_weekday("mo"), None);
        let zone = chrono_tz::Asia::Shanghai;
        assert_eq!(parse_local("2026-11-25", zone), Ok(bj("2026-11-25 00:00")));
        assert_eq!(
            parse_local("2026-11-25T09:30", zone),
            Ok(bj("2026-11-25 09:30"))
        );
        assert_eq!(
            parse_local("2026-11-25 09:30", zone),
            Ok(bj("2026-11-25 09:30"))
        );
        for bad in [
            "2026-11-31",
            "2026-11-25T24:00",
            "tomorrow",
            "2026-11-25T9",
            "",
        ] {
            assert!(parse_local(bad, zone).is_err(), "{bad:?} accepted");
        }
    }

    proptest! {
        #[test]
        fn working_time_added_is_working_time_between(
            start in 0i64..(400 * 24 * 60),
            minutes in 0i64..(30 * 24 * 60),
        ) {
            let c = beijing();
            let from = bj("2026-01-01 00:00") + Duration::minutes(start);
            let d = Duration::minutes(minutes);
            let due = c.add(from, d);
            prop_assert!(due >= from);
            prop_assert_eq!(c.between(from, due), d);
        }
    }
}
