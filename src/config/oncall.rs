//! On-call settings: the working calendar (and its holiday file), response
//! targets per severity, rotations, escalation chains and outside pagers.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use chrono::{Datelike, Duration, NaiveDate};
use chrono_tz::Tz;
use serde::Deserialize;
use toml::Spanned;

use super::{Issues, PersonConfig, S, parse_duration};
use crate::domain::calendar::{self, Calendar, ResponseClock};
use crate::domain::escalation::{Chain, Response, Step, Target};
use crate::domain::oncall::{Handoff, Override, Rotation};
use crate::domain::rules::Severity;
use crate::secret::Secret;

pub const PAGERDUTY_EVENTS: &str = "https://events.pagerduty.com/v2/enqueue";
pub const OPSGENIE_API: &str = "https://api.opsgenie.com/";

#[derive(Debug, Clone)]
pub struct OnCallConfig {
    pub calendar: Calendar,
    /// The years the holiday file says it covers; empty without one.
    pub calendar_years: Vec<i32>,
    /// The holiday file, as `[calendar] holidays` names it.
    pub calendar_file: Option<String>,
    /// `[calendars.NAME]`: other working hours, by name.
    pub calendars: BTreeMap<String, Calendar>,
    /// The calendar each severity's response clock and chain run on, where
    /// it names one (else `calendar`), with its name.
    pub severity_calendars: BTreeMap<Severity, (String, Calendar)>,
    pub responses: BTreeMap<Severity, Response>,
    pub schedules: Vec<Rotation>,
    /// Overrides written in config (chat adds more, kept in the store).
    pub overrides: Vec<Override>,
    pub chains: BTreeMap<Severity, Chain>,
    pub pagers: Vec<PagerConfig>,
}

impl OnCallConfig {
    pub fn response(&self, severity: Severity) -> Response {
        self.responses
            .get(&severity)
            .copied()
            .unwrap_or_else(|| Response::default_for(severity))
    }

    pub fn schedule(&self, name: &str) -> Option<&Rotation> {
        self.schedules.iter().find(|s| s.name == name)
    }
}

impl Default for OnCallConfig {
    fn default() -> Self {
        OnCallConfig {
            calendar: Calendar::weekdays(chrono_tz::Asia::Shanghai, 9 * 60, 18 * 60),
            calendar_years: Vec::new(),
            calendar_file: None,
            calendars: BTreeMap::new(),
            severity_calendars: BTreeMap::new(),
            responses: BTreeMap::new(),
            schedules: Vec::new(),
            overrides: Vec::new(),
            chains: BTreeMap::new(),
            pagers: Vec::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct PagerConfig {
    pub name: String,
    pub kind: PagerKind,
    pub url: reqwest::Url,
}

#[derive(Debug, Clone)]
pub enum PagerKind {
    /// Events API v2: the integration's routing key.
    PagerDuty { routing_key: Secret },
    /// Alert API: an API integration's key.
    Opsgenie { api_key: Secret },
}

// ---------------------------------------------------------------- raw

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCalendar {
    zone: Option<S>,
    hours: Option<S>,
    days: Option<Spanned<Vec<S>>>,
    /// A holiday file, relative to the config file.
    holidays: Option<S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawResponse {
    within: S,
    clock: Option<S>,
    /// A `[calendars.NAME]` the working clock runs on.
    calendar: Option<S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSchedule {
    name: S,
    rotation: S,
    handoff: S,
    start: S,
    people: Spanned<Vec<S>>,
    zone: Option<S>,
    #[serde(default)]
    overrides: Vec<RawOverride>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOverride {
    person: S,
    from: S,
    to: S,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawChain {
    /// A `[calendars.NAME]` its steps count on (the severity's response
    /// clock runs on the same one).
    calendar: Option<S>,
    steps: Spanned<Vec<RawStep>>,
    repeat: Option<Spanned<i64>>,
    repeat_every: Option<S>,
    after_ack: Option<S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStep {
    after: S,
    notify: Spanned<Vec<S>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPager {
    name: S,
    kind: S,
    routing_key: Option<S>,
    api_key: Option<S>,
    url: Option<S>,
}

/// The holiday file: each holiday with the make-up working days the
/// government moves around it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHolidayFile {
    years: Spanned<Vec<i32>>,
    #[serde(default)]
    holiday: Vec<RawHoliday>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHoliday {
    name: S,
    /// A date or a range `2026-10-01..2026-10-07`.
    off: S,
    #[serde(default)]
    work: Vec<S>,
}

/// What `[calendar]`, `[response]`, `[[schedules]]`, `[escalation]` and
/// `[[pagers]]` say, as read.
pub(super) struct RawOnCall<'a> {
    pub calendar: Option<&'a RawCalendar>,
    pub calendars: &'a BTreeMap<String, Spanned<RawCalendar>>,
    pub response: &'a BTreeMap<String, Spanned<RawResponse>>,
    pub schedules: &'a [RawSchedule],
    pub escalation: &'a BTreeMap<String, Spanned<RawChain>>,
    pub pagers: &'a [RawPager],
}

// ---------------------------------------------------------------- build

/// Validates the on-call settings against the people (who must exist) and
/// the platforms purser can send a direct message on.
pub(super) fn build(
    issues: &mut Issues<'_>,
    base: &Path,
    raw: RawOnCall<'_>,
    people: &[PersonConfig],
    dm_platforms: &[&str],
) -> OnCallConfig {
    let mut out = OnCallConfig::default();
    if let Some(c) = raw.calendar {
        let (mut calendar, mut years) = (out.calendar.clone(), Vec::new());
        build_calendar(issues, base, "calendar", c, &mut calendar, &mut years);
        out.calendar = calendar;
        out.calendar_years = years;
        out.calendar_file = c.holidays.as_ref().map(|h| h.get_ref().clone());
    }
    for (name, c) in raw.calendars {
        // A named calendar starts in the main one's zone, on weekdays 09:00
        // to 18:00, with no holidays unless it names a file.
        let mut calendar = Calendar::weekdays(out.calendar.zone, 9 * 60, 18 * 60);
        let mut years = Vec::new();
        let key = format!("calendars.{name}");
        build_calendar(issues, base, &key, c.get_ref(), &mut calendar, &mut years);
        out.calendars.insert(name.clone(), calendar);
    }
    for (key, r) in raw.response {
        let at = format!("response.{key}");
        let Some(severity) = Severity::parse(key) else {
            issues.at(r, at, format!("{key:?} is not a severity; use A, B or C"));
            continue;
        };
        let mut response = Response::default_for(severity);
        match parse_duration(r.get_ref().within.get_ref()) {
            Ok(d) if d > Duration::zero() => response.within = d,
            Ok(_) => issues.at(
                &r.get_ref().within,
                format!("{at}.within"),
                "must be more than zero",
            ),
            Err(e) => issues.at(&r.get_ref().within, format!("{at}.within"), e),
        }
        if let Some(c) = &r.get_ref().clock {
            match ResponseClock::parse(c.get_ref().trim()) {
                Some(clock) => response.clock = clock,
                None => issues.at(
                    c,
                    format!("{at}.clock"),
                    format!("{:?} is not a clock; use always or working", c.get_ref()),
                ),
            }
        }
        if let Some(name) = &r.get_ref().calendar {
            name_calendar(issues, &mut out, severity, name, &format!("{at}.calendar"));
        }
        out.responses.insert(severity, response);
    }
    out.pagers = build_pagers(issues, base, raw.pagers);
    let known: HashSet<&str> = people.iter().map(|p| p.name.as_str()).collect();
    for (i, s) in raw.schedules.iter().enumerate() {
        if let Some((rotation, overrides)) = build_schedule(issues, i, s, &known, out.calendar.zone)
        {
            if out.schedules.iter().any(|r| r.name == rotation.name) {
                issues.at(
                    &s.name,
                    format!("schedules[{i}].name"),
                    format!("{:?} is listed twice", rotation.name),
                );
            }
            out.schedules.push(rotation);
            out.overrides.extend(overrides);
        }
    }
    for (key, c) in raw.escalation {
        let at = format!("escalation.{key}");
        let Some(severity) = Severity::parse(key) else {
            issues.at(c, at, format!("{key:?} is not a severity; use A, B or C"));
            continue;
        };
        if let Some(name) = &c.get_ref().calendar {
            name_calendar(issues, &mut out, severity, name, &format!("{at}.calendar"));
        }
        if let Some(chain) = build_chain(issues, &at, c, &out, &known) {
            out.chains.insert(severity, chain);
        }
    }
    reachable(issues, &out, people, dm_platforms);
    out
}

/// `severity`'s clock and chain run on the calendar `name`; both may name
/// it, but not two different ones.
fn name_calendar(
    issues: &mut Issues<'_>,
    out: &mut OnCallConfig,
    severity: Severity,
    name: &S,
    key: &str,
) {
    let n = name.get_ref().trim();
    let Some(calendar) = out.calendars.get(n) else {
        let known: Vec<&str> = out.calendars.keys().map(String::as_str).collect();
        issues.at(
            name,
            key,
            format!(
                "no [calendars.{n}]{}",
                if known.is_empty() {
                    "; define it, or leave this out for [calendar]".to_owned()
                } else {
                    format!("; defined: {}", known.join(", "))
                }
            ),
        );
        return;
    };
    if let Some((other, _)) = out.severity_calendars.get(&severity)
        && other != n
    {
        issues.at(
            name,
            key,
            format!(
                "{severity}'s response clock runs on {other:?}: its chain counts on the same calendar"
            ),
        );
        return;
    }
    out.severity_calendars
        .insert(severity, (n.to_owned(), calendar.clone()));
}

/// `c` read into `calendar` (and the years its holiday file covers into
/// `years`); mistakes are named under `key` (`calendar`, `calendars.platform`).
fn build_calendar(
    issues: &mut Issues<'_>,
    base: &Path,
    key: &str,
    c: &RawCalendar,
    calendar: &mut Calendar,
    years: &mut Vec<i32>,
) {
    if let Some(z) = &c.zone {
        match z.get_ref().trim().parse::<Tz>() {
            Ok(zone) => calendar.zone = zone,
            Err(_) => issues.at(
                z,
                format!("{key}.zone"),
                format!(
                    "{:?} is not an IANA time zone; write e.g. Asia/Shanghai",
                    z.get_ref()
                ),
            ),
        }
    }
    if let Some(h) = &c.hours {
        let parsed = h
            .get_ref()
            .split_once('-')
            .ok_or_else(|| "write the hours as 09:00-18:00".to_owned())
            .and_then(|(a, b)| Ok((calendar::parse_minute(a)?, calendar::parse_minute(b)?)));
        match parsed {
            Ok((opens, closes)) if opens < closes => {
                calendar.opens = opens;
                calendar.closes = closes;
            }
            Ok(_) => issues.at(
                h,
                format!("{key}.hours"),
                "the day must close after it opens",
            ),
            Err(e) => issues.at(h, format!("{key}.hours"), e),
        }
    }
    if let Some(days) = &c.days {
        let mut set = [false; 7];
        for d in days.get_ref() {
            match calendar::parse_weekday(d.get_ref()) {
                Some(w) => set[w.num_days_from_monday() as usize] = true,
                None => issues.at(
                    d,
                    format!("{key}.days"),
                    format!(
                        "{:?} is not a day of the week; write mon, tue, …",
                        d.get_ref()
                    ),
                ),
            }
        }
        if !set.contains(&true) {
            issues.at(
                days,
                format!("{key}.days"),
                "name at least one business day",
            );
        }
        calendar.days = set;
    }
    if let Some(f) = &c.holidays {
        let path = base.join(f.get_ref());
        match std::fs::read_to_string(&path) {
            Ok(text) => match holidays(&text) {
                Ok((covered, off, work)) => {
                    *years = covered;
                    calendar.holidays = off;
                    calendar.workdays = work;
                }
                Err(e) => issues.at(
                    f,
                    format!("{key}.holidays"),
                    format!("{}: {e}", path.display()),
                ),
            },
            Err(e) => issues.at(
                f,
                format!("{key}.holidays"),
                format!("cannot read {}: {e}", path.display()),
            ),
        }
    }
}

type Days = BTreeMap<NaiveDate, String>;

/// Reads a holiday file; its mistakes name the file's own line.
pub fn holidays(text: &str) -> Result<(Vec<i32>, Days, Days), String> {
    let line = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let raw: RawHolidayFile = toml::from_str(text).map_err(|e| {
        let at = e
            .span()
            .map(|s| format!("line {}: ", line(s.start)))
            .unwrap_or_default();
        format!("{at}{}", e.message())
    })?;
    let years = raw.years.get_ref().clone();
    if years.is_empty() {
        return Err(format!(
            "line {}: years must name the years the file covers",
            line(raw.years.span().start)
        ));
    }
    let date = |s: &S| -> Result<NaiveDate, String> {
        let d: NaiveDate = s.get_ref().trim().parse().map_err(|_| {
            format!(
                "line {}: {:?} is not a date (YYYY-MM-DD)",
                line(s.span().start),
                s.get_ref()
            )
        })?;
        if !years.contains(&d.year()) {
            return Err(format!(
                "line {}: {d} is outside the years the file covers ({years:?})",
                line(s.span().start)
            ));
        }
        Ok(d)
    };
    let (mut off, mut work) = (Days::new(), Days::new());
    for h in &raw.holiday {
        let name = h.name.get_ref().trim().to_owned();
        let (first, last) = match h.off.get_ref().split_once("..") {
            Some((a, b)) => {
                let span = |t: &str| Spanned::new(h.off.span(), t.to_owned());
                (date(&span(a))?, date(&span(b))?)
            }
            None => (date(&h.off)?, date(&h.off)?),
        };
        if last < first || (last - first).num_days() > 31 {
            return Err(format!(
                "line {}: {:?} is not a range of at most a month",
                line(h.off.span().start),
                h.off.get_ref()
            ));
        }
        let mut d = first;
        while d <= last {
            off.insert(d, name.clone());
            d = d.succ_opt().unwrap_or(last + Duration::days(1));
        }
        for w in &h.work {
            work.insert(date(w)?, name.clone());
        }
    }
    if let Some(d) = off.keys().find(|d| work.contains_key(d)) {
        return Err(format!("{d} is both a day off and a working day"));
    }
    Ok((years, off, work))
}

fn build_schedule(
    issues: &mut Issues<'_>,
    i: usize,
    s: &RawSchedule,
    people: &HashSet<&str>,
    default_zone: Tz,
) -> Option<(Rotation, Vec<Override>)> {
    let key = |k: &str| format!("schedules[{i}].{k}");
    let name = s.name.get_ref().trim().to_owned();
    if name.is_empty() || name.contains(char::is_whitespace) {
        issues.at(&s.name, key("name"), "a schedule's name is one word");
        return None;
    }
    let zone = match &s.zone {
        Some(z) => match z.get_ref().trim().parse::<Tz>() {
            Ok(zone) => zone,
            Err(_) => {
                issues.at(
                    z,
                    key("zone"),
                    format!("{:?} is not an IANA time zone", z.get_ref()),
                );
                return None;
            }
        },
        None => default_zone,
    };
    let mut ok = true;
    let mut list = Vec::new();
    for p in s.people.get_ref() {
        let who = p.get_ref().trim();
        if !people.contains(who) {
            issues.at(p, key("people"), format!("{who:?} is not in [[people]]"));
            ok = false;
        }
        list.push(who.to_owned());
    }
    if list.is_empty() {
        issues.at(&s.people, key("people"), "name at least one person");
        ok = false;
    }
    let handoff_text = s.handoff.get_ref().trim();
    let (handoff, at) = match s.rotation.get_ref().trim() {
        "daily" => match calendar::parse_minute(handoff_text) {
            Ok(m) if m < 24 * 60 => (Handoff::Daily, m),
            _ => {
                issues.at(
                    &s.handoff,
                    key("handoff"),
                    "a daily hand-off is a time, e.g. \"09:00\"",
                );
                return None;
            }
        },
        "weekly" => {
            let parsed = handoff_text.split_once(' ').and_then(|(d, t)| {
                Some((calendar::parse_weekday(d)?, calendar::parse_minute(t).ok()?))
            });
            match parsed {
                Some((day, m)) if m < 24 * 60 => (Handoff::Weekly(day), m),
                _ => {
                    issues.at(
                        &s.handoff,
                        key("handoff"),
                        "a weekly hand-off is a day and a time, e.g. \"mon 10:00\"",
                    );
                    return None;
                }
            }
        }
        other => {
            issues.at(
                &s.rotation,
                key("rotation"),
                format!("{other:?} is not a rotation; use daily or weekly"),
            );
            return None;
        }
    };
    let Ok(anchor) = s.start.get_ref().trim().parse::<NaiveDate>() else {
        issues.at(
            &s.start,
            key("start"),
            "the first hand-off's date, e.g. \"2026-11-02\"",
        );
        return None;
    };
    if let Handoff::Weekly(day) = handoff
        && anchor.weekday() != day
    {
        issues.at(
            &s.start,
            key("start"),
            format!(
                "{anchor} is a {:?}, but the hand-off is on {day:?}",
                anchor.weekday()
            ),
        );
        return None;
    }
    let mut overrides = Vec::new();
    for (j, o) in s.overrides.iter().enumerate() {
        let k = |f: &str| format!("schedules[{i}].overrides[{j}].{f}");
        let who = o.person.get_ref().trim();
        if !people.contains(who) {
            issues.at(
                &o.person,
                k("person"),
                format!("{who:?} is not in [[people]]"),
            );
            ok = false;
        }
        let from = calendar::parse_local(o.from.get_ref(), zone)
            .map_err(|e| issues.at(&o.from, k("from"), e));
        let to =
            calendar::parse_local(o.to.get_ref(), zone).map_err(|e| issues.at(&o.to, k("to"), e));
        let (Ok(from), Ok(to)) = (from, to) else {
            ok = false;
            continue;
        };
        if to <= from {
            issues.at(&o.to, k("to"), "an override must end after it starts");
            ok = false;
        }
        overrides.push(Override {
            id: 0,
            schedule: name.clone(),
            person: who.to_owned(),
            from,
            to,
            by: "config".into(),
        });
    }
    ok.then_some((
        Rotation {
            name,
            people: list,
            handoff,
            at,
            zone,
            anchor,
        },
        overrides,
    ))
}

fn build_chain(
    issues: &mut Issues<'_>,
    at: &str,
    c: &Spanned<RawChain>,
    so_far: &OnCallConfig,
    people: &HashSet<&str>,
) -> Option<Chain> {
    let raw = c.get_ref();
    let mut ok = true;
    let mut steps: Vec<Step> = Vec::new();
    for (i, s) in raw.steps.get_ref().iter().enumerate() {
        let key = format!("{at}.steps[{i}]");
        let after = match parse_duration(s.after.get_ref()) {
            Ok(d) if d > Duration::zero() => d,
            Ok(_) => {
                issues.at(
                    &s.after,
                    format!("{key}.after"),
                    "must be after the alert is raised (more than zero)",
                );
                ok = false;
                continue;
            }
            Err(e) => {
                issues.at(&s.after, format!("{key}.after"), e);
                ok = false;
                continue;
            }
        };
        if let Some(prev) = steps.last()
            && after <= prev.after
        {
            issues.at(
                &s.after,
                format!("{key}.after"),
                "steps count from the alert's raise: each must come after the one before",
            );
            ok = false;
        }
        let mut notify = Vec::new();
        for t in s.notify.get_ref() {
            let target = match Target::parse(t.get_ref()) {
                Ok(target) => target,
                Err(e) => {
                    issues.at(t, format!("{key}.notify"), e);
                    ok = false;
                    continue;
                }
            };
            let missing = match &target {
                Target::OnCall(s) | Target::Secondary(s) => so_far
                    .schedule(s)
                    .is_none()
                    .then(|| format!("no schedule is named {s:?}")),
                Target::Person(p) => {
                    (!people.contains(p.as_str())).then(|| format!("{p:?} is not in [[people]]"))
                }
                Target::Pager(p) => (!so_far.pagers.iter().any(|x| x.name == *p))
                    .then(|| format!("no pager is named {p:?}")),
            };
            if let Some(m) = missing {
                issues.at(t, format!("{key}.notify"), m);
                ok = false;
            }
            notify.push(target);
        }
        if notify.is_empty() {
            issues.at(
                &s.notify,
                format!("{key}.notify"),
                "name at least one target",
            );
            ok = false;
        }
        steps.push(Step { after, notify });
    }
    let Some(last) = steps.last().map(|s| s.after) else {
        issues.at(
            &raw.steps,
            format!("{at}.steps"),
            "a chain needs at least one step",
        );
        return None;
    };
    let repeat = match &raw.repeat {
        Some(r) => match u32::try_from(*r.get_ref()) {
            Ok(n) if n <= 9 => n,
            _ => {
                issues.at(
                    r,
                    format!("{at}.repeat"),
                    "repeat a chain 0 to 9 more times",
                );
                ok = false;
                0
            }
        },
        None => 0,
    };
    let repeat_every = match &raw.repeat_every {
        Some(v) => match parse_duration(v.get_ref()) {
            Ok(d) if d > last => d,
            Ok(_) => {
                issues.at(
                    v,
                    format!("{at}.repeat_every"),
                    "a round must be longer than its last step's after",
                );
                ok = false;
                last
            }
            Err(e) => {
                issues.at(v, format!("{at}.repeat_every"), e);
                ok = false;
                last
            }
        },
        // The first step's wait again after the last.
        None => last + steps[0].after,
    };
    let after_ack = match &raw.after_ack {
        Some(v) => match parse_duration(v.get_ref()) {
            Ok(d) if d > Duration::zero() => Some(d),
            Ok(_) => {
                issues.at(v, format!("{at}.after_ack"), "must be more than zero");
                ok = false;
                None
            }
            Err(e) => {
                issues.at(v, format!("{at}.after_ack"), e);
                ok = false;
                None
            }
        },
        None => None,
    };
    ok.then_some(Chain {
        steps,
        repeat,
        repeat_every,
        after_ack,
    })
}

fn build_pagers(issues: &mut Issues<'_>, base: &Path, raw: &[RawPager]) -> Vec<PagerConfig> {
    let mut out: Vec<PagerConfig> = Vec::new();
    for (i, p) in raw.iter().enumerate() {
        let key = |k: &str| format!("pagers[{i}].{k}");
        let name = p.name.get_ref().trim().to_owned();
        if name.is_empty() || out.iter().any(|o| o.name == name) {
            issues.at(&p.name, key("name"), "a pager needs a name of its own");
            continue;
        }
        let secret = |issues: &mut Issues<'_>, v: &Option<S>, field: &str, example: &str| match v {
            Some(s) => Secret::resolve(s.get_ref(), base)
                .map_err(|e| issues.at(s, key(field), e))
                .ok(),
            None => {
                issues.at(
                    &p.kind,
                    key(field),
                    format!("this pager needs {field} (e.g. {example:?})"),
                );
                None
            }
        };
        let (kind, default_url) = match p.kind.get_ref().trim() {
            "pagerduty" => {
                let Some(routing_key) = secret(
                    issues,
                    &p.routing_key,
                    "routing_key",
                    "env:PAGERDUTY_ROUTING_KEY",
                ) else {
                    continue;
                };
                (PagerKind::PagerDuty { routing_key }, PAGERDUTY_EVENTS)
            }
            "opsgenie" => {
                let Some(api_key) = secret(issues, &p.api_key, "api_key", "env:OPSGENIE_API_KEY")
                else {
                    continue;
                };
                (PagerKind::Opsgenie { api_key }, OPSGENIE_API)
            }
            other => {
                issues.at(
                    &p.kind,
                    key("kind"),
                    format!("{other:?} is not a pager kind; use pagerduty or opsgenie"),
                );
                continue;
            }
        };
        let url = match &p.url {
            Some(u) => match reqwest::Url::parse(u.get_ref()) {
                Ok(url) => url,
                Err(e) => {
                    issues.at(u, key("url"), format!("not a URL: {e}"));
                    continue;
                }
            },
            None => match reqwest::Url::parse(default_url) {
                Ok(url) => url,
                Err(_) => continue,
            },
        };
        out.push(PagerConfig { name, kind, url });
    }
    out
}

/// Everyone a chain may page directly must have a chat identity on a
/// platform purser can send a direct message on.
fn reachable(
    issues: &mut Issues<'_>,
    out: &OnCallConfig,
    people: &[PersonConfig],
    dm_platforms: &[&str],
) {
    let mut named: Vec<&str> = Vec::new();
    for chain in out.chains.values() {
        for t in chain.steps.iter().flat_map(|s| &s.notify) {
            match t {
                Target::OnCall(s) | Target::Secondary(s) => {
                    if let Some(r) = out.schedule(s) {
                        named.extend(r.people.iter().map(String::as_str));
                    }
                }
                Target::Person(p) => named.push(p),
                Target::Pager(_) => {}
            }
        }
    }
    for o in &out.overrides {
        named.push(&o.person);
    }
    named.sort_unstable();
    named.dedup();
    for name in named {
        let Some(p) = people.iter().find(|p| p.name == name) else {
            continue;
        };
        if !p
            .identities
            .iter()
            .any(|(platform, _)| dm_platforms.contains(&platform.as_str()))
        {
            issues.nowhere(
                format!("people.{name}"),
                format!(
                    "an escalation may page {name}, but none of their chat identities is on a platform with a chat output to send a direct message from ({})",
                    if dm_platforms.is_empty() {
                        "there is none".to_owned()
                    } else {
                        dm_platforms.join(", ")
                    }
                ),
            );
        }
    }
}
