//! On-call rotations: who answers now, who is next, and overrides that swap
//! a shift or cover someone's leave. Hand-offs are local wall time in the
//! schedule's zone; instants are UTC.

use chrono::{DateTime, Duration, NaiveDate, Utc, Weekday};
use chrono_tz::Tz;

use super::calendar::{Calendar, Minute};

/// The longest override chat may make; longer belongs in the rotation.
pub const MAX_OVERRIDE_DAYS: i64 = 90;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handoff {
    Daily,
    Weekly(Weekday),
}

impl Handoff {
    fn days(self) -> i64 {
        match self {
            Handoff::Daily => 1,
            Handoff::Weekly(_) => 7,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    pub name: String,
    /// In turn; the first takes the shift that starts on `anchor`.
    pub people: Vec<String>,
    pub handoff: Handoff,
    /// The hand-off's local wall time.
    pub at: Minute,
    pub zone: Tz,
    /// A hand-off day (for a weekly rotation, on its weekday). The rotation
    /// runs back before it too, so nobody is ever on call by default.
    pub anchor: NaiveDate,
}

/// Someone other than the rotation's person answers from `from` to `to`:
/// a swap, or cover for leave. The newest of overlapping overrides wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    /// Ordered as made; 0 for those written in config.
    pub id: i64,
    pub schedule: String,
    pub person: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub by: String,
}

/// A stretch of time one person answers for a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shift {
    pub person: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// For an override: the rotation's person it stands in for.
    pub covering: Option<String>,
}

impl Rotation {
    fn clock(&self) -> Calendar {
        Calendar::weekdays(self.zone, 0, 0)
    }

    fn start_of(&self, k: i64) -> DateTime<Utc> {
        let date = self.anchor + Duration::days(k * self.handoff.days());
        self.clock().instant(date, self.at)
    }

    /// Which shift of the rotation `at` falls in.
    fn index(&self, at: DateTime<Utc>) -> i64 {
        let date = self.clock().local_date(at);
        let mut k = (date - self.anchor)
            .num_days()
            .div_euclid(self.handoff.days());
        if at < self.start_of(k) {
            k -= 1;
        }
        k
    }

    fn person(&self, k: i64) -> Option<&String> {
        let n = i64::try_from(self.people.len()).ok().filter(|n| *n > 0)?;
        self.people.get(usize::try_from(k.rem_euclid(n)).ok()?)
    }

    /// The rotation's own shift at `at`, overrides aside.
    pub fn scheduled(&self, at: DateTime<Utc>) -> Option<Shift> {
        let k = self.index(at);
        Some(Shift {
            person: self.person(k)?.clone(),
            from: self.start_of(k),
            to: self.start_of(k + 1),
            covering: None,
        })
    }

    fn overrides_at<'a>(
        &self,
        at: DateTime<Utc>,
        overrides: &'a [Override],
    ) -> impl Iterator<Item = &'a Override> {
        let name = self.name.clone();
        overrides
            .iter()
            .filter(move |o| o.schedule == name && o.from <= at && at < o.to)
    }

    /// Who answers at `at`: the newest override in force, else the rotation.
    /// A rotation shift ends early where an override begins.
    pub fn on_call(&self, at: DateTime<Utc>, overrides: &[Override]) -> Option<Shift> {
        let scheduled = self.scheduled(at)?;
        if let Some(o) = self.overrides_at(at, overrides).max_by_key(|o| o.id) {
            return Some(Shift {
                person: o.person.clone(),
                from: o.from,
                to: o.to,
                covering: Some(scheduled.person).filter(|p| *p != o.person),
            });
        }
        let interrupted = overrides
            .iter()
            .filter(|o| o.schedule == self.name && o.from > at && o.from < scheduled.to)
            .map(|o| o.from)
            .min();
        Some(Shift {
            to: interrupted.unwrap_or(scheduled.to),
            ..scheduled
        })
    }

    /// Who answers once the shift at `at` ends.
    pub fn next(&self, at: DateTime<Utc>, overrides: &[Override]) -> Option<Shift> {
        let now = self.on_call(at, overrides)?;
        self.on_call(now.to, overrides)
    }

    /// The second person to call: whoever the rotation has next that is not
    /// the one on call now.
    pub fn secondary(&self, at: DateTime<Utc>, overrides: &[Override]) -> Option<String> {
        let primary = self.on_call(at, overrides)?.person;
        let k = self.index(at);
        (1..=self.people.len() as i64)
            .filter_map(|i| self.person(k + i))
            .find(|p| **p != primary)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::calendar::tests::bj;

    fn weekly() -> Rotation {
        Rotation {
            name: "ops".into(),
            people: vec!["ana".into(), "bo".into(), "cy".into()],
            handoff: Handoff::Weekly(Weekday::Mon),
            at: 10 * 60,
            zone: chrono_tz::Asia::Shanghai,
            anchor: "2026-11-02".parse().expect("a date"),
        }
    }

    fn over(id: i64, person: &str, from: &str, to: &str) -> Override {
        Override {
            id,
            schedule: "ops".into(),
            person: person.into(),
            from: bj(from),
            to: bj(to),
            by: "lead".into(),
        }
    }

    fn who(r: &Rotation, at: &str, overrides: &[Override]) -> String {
        r.on_call(bj(at), overrides).expect("someone").person
    }

    #[test]
    fn a_weekly_rotation_hands_off_at_its_wall_time() {
        let r = weekly();
        assert_eq!(who(&r, "2026-11-02 10:00", &[]), "ana");
        assert_eq!(who(&r, "2026-11-09 09:59", &[]), "ana");
        assert_eq!(who(&r, "2026-11-09 10:00", &[]), "bo");
        assert_eq!(who(&r, "2026-11-23 09:59", &[]), "cy");
        assert_eq!(who(&r, "2026-11-23 10:00", &[]), "ana", "round again");
        assert_eq!(
            who(&r, "2026-10-30 12:00", &[]),
            "cy",
            "before the anchor the rotation runs backwards"
        );
        let shift = r.on_call(bj("2026-11-25 03:00"), &[]).expect("a shift");
        assert_eq!(
            (shift.from, shift.to),
            (bj("2026-11-23 10:00"), bj("2026-11-30 10:00"))
        );
        let next = r.next(bj("2026-11-25 03:00"), &[]).expect("next");
        assert_eq!(
            (next.person.as_str(), next.from),
            ("bo", bj("2026-11-30 10:00"))
        );
    }

    #[test]
    fn a_daily_rotation_turns_every_day() {
        let r = Rotation {
            handoff: Handoff::Daily,
            at: 9 * 60,
            anchor: "2026-11-23".parse().expect("a date"),
            ..weekly()
        };
        assert_eq!(who(&r, "2026-11-23 09:00", &[]), "ana");
        assert_eq!(who(&r, "2026-11-24 08:59", &[]), "ana");
        assert_eq!(who(&r, "2026-11-24 09:00", &[]), "bo");
        assert_eq!(who(&r, "2026-11-25 23:00", &[]), "cy");
        assert_eq!(who(&r, "2026-11-26 09:00", &[]), "ana");
    }

    #[test]
    fn a_swap_routes_to_the_person_covering_and_back() {
        let r = weekly();
        // ana's week, but bo takes Wednesday.
        let swap = [over(1, "bo", "2026-11-25 00:00", "2026-11-26 00:00")];
        assert_eq!(who(&r, "2026-11-24 23:59", &swap), "ana");
        let shift = r.on_call(bj("2026-11-25 03:00"), &swap).expect("a shift");
        assert_eq!(shift.person, "bo");
        assert_eq!(shift.covering.as_deref(), Some("ana"));
        assert_eq!(who(&r, "2026-11-26 00:00", &swap), "ana");
        // ana's shift on Tuesday ends where the swap begins.
        let tuesday = r.on_call(bj("2026-11-24 12:00"), &swap).expect("a shift");
        assert_eq!(tuesday.to, bj("2026-11-25 00:00"));
        assert_eq!(
            r.next(bj("2026-11-24 12:00"), &swap).expect("next").person,
            "bo"
        );
        // Someone else's schedule is not touched.
        let other = Rotation {
            name: "dba".into(),
            ..weekly()
        };
        assert_eq!(who(&other, "2026-11-25 03:00", &swap), "ana");
    }

    #[test]
    fn the_newest_of_overlapping_overrides_wins() {
        let r = weekly();
        let leave = [
            over(1, "bo", "2026-11-23 10:00", "2026-11-30 10:00"),
            over(2, "cy", "2026-11-25 00:00", "2026-11-26 00:00"),
        ];
        assert_eq!(who(&r, "2026-11-24 12:00", &leave), "bo");
        assert_eq!(who(&r, "2026-11-25 12:00", &leave), "cy");
        assert_eq!(who(&r, "2026-11-26 12:00", &leave), "bo");
    }

    #[test]
    fn the_secondary_is_the_next_in_turn_who_is_not_on_call() {
        let r = weekly();
        let at = bj("2026-11-25 12:00");
        assert_eq!(r.secondary(at, &[]).as_deref(), Some("bo"));
        // bo stands in for ana: the secondary is then cy, not bo twice.
        let swap = [over(1, "bo", "2026-11-25 00:00", "2026-11-26 00:00")];
        assert_eq!(r.secondary(at, &swap).as_deref(), Some("cy"));
        let alone = Rotation {
            people: vec!["ana".into()],
            ..weekly()
        };
        assert_eq!(alone.secondary(at, &[]), None);
    }
}
