//! Escalation chains: an alert nobody acknowledges walks from its channel to
//! the person on call, the secondary, a manager, an outside pager, round
//! again if configured, until someone acknowledges it or it resolves. Time
//! runs on the severity's response clock, so a B alert raised on a Friday
//! evening does not wake anyone before Monday's opening; A's clock never stops.
//!
//! Every round begins in the alert's channel (at the raise, the alert's own
//! message); its steps follow at their offsets from the round's start.

use std::fmt;

use chrono::{DateTime, Duration, Utc};

use super::calendar::{Calendar, ResponseClock};
use super::rules::Severity;

/// Who a step tells.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// Whoever is on call for the schedule at the time.
    OnCall(String),
    /// The next in the schedule's turn who is not on call.
    Secondary(String),
    Person(String),
    /// An outside pager (`[[pagers]]`).
    Pager(String),
}

impl Target {
    /// `oncall:<schedule>`, `secondary:<schedule>`, `person:<name>`, `pager:<name>`.
    pub fn parse(text: &str) -> Result<Target, String> {
        let (kind, name) = text.split_once(':').ok_or_else(|| {
            format!(
                "{text:?} names no target; write oncall:<schedule>, secondary:<schedule>, person:<name> or pager:<name>"
            )
        })?;
        let name = name.trim();
        if name.is_empty() {
            return Err(format!("{text:?} lacks a name after {kind:?}"));
        }
        let name = name.to_owned();
        match kind.trim() {
            "oncall" => Ok(Target::OnCall(name)),
            "secondary" => Ok(Target::Secondary(name)),
            "person" => Ok(Target::Person(name)),
            "pager" => Ok(Target::Pager(name)),
            other => Err(format!(
                "{other:?} is not a kind of target; use oncall, secondary, person or pager"
            )),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::OnCall(s) => write!(f, "oncall:{s}"),
            Target::Secondary(s) => write!(f, "secondary:{s}"),
            Target::Person(s) => write!(f, "person:{s}"),
            Target::Pager(s) => write!(f, "pager:{s}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// From the round's start, on the response clock.
    pub after: Duration,
    pub notify: Vec<Target>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// In order of `after`, at least one.
    pub steps: Vec<Step>,
    /// Rounds after the first.
    pub repeat: u32,
    /// From one round's start to the next; longer than the last step's `after`.
    pub repeat_every: Duration,
    /// An alert acknowledged but still firing this long after escalates
    /// again, so that an acknowledged risk is not forgotten.
    pub after_ack: Option<Duration>,
}

/// How soon a severity must be answered, and on which clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    pub within: Duration,
    pub clock: ResponseClock,
}

impl Response {
    /// The seed's support model: A in 2 hours around the clock, B in 4 and
    /// C in 8 working hours.
    pub fn default_for(severity: Severity) -> Response {
        match severity {
            Severity::A => Response {
                within: Duration::hours(2),
                clock: ResponseClock::Always,
            },
            Severity::B => Response {
                within: Duration::hours(4),
                clock: ResponseClock::Working,
            },
            Severity::C => Response {
                within: Duration::hours(8),
                clock: ResponseClock::Working,
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Nobody has acknowledged: steps are taken as they fall due.
    Walking,
    /// Every step and round was taken and nobody answered.
    Exhausted,
    Acknowledged,
    Resolved,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Walking => "walking",
            Phase::Exhausted => "exhausted",
            Phase::Acknowledged => "acknowledged",
            Phase::Resolved => "resolved",
        }
    }

    pub fn parse(s: &str) -> Option<Phase> {
        [
            Phase::Walking,
            Phase::Exhausted,
            Phase::Acknowledged,
            Phase::Resolved,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
    }
}

/// One alert occurrence's chain, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Escalation {
    pub fingerprint: String,
    /// The alert occurrence's start: with the fingerprint, which occurrence.
    pub started_at: DateTime<Utc>,
    pub severity: Severity,
    pub raised_at: DateTime<Utc>,
    /// The response target: acknowledged by then is within it.
    pub due_at: DateTime<Utc>,
    pub clock: ResponseClock,
    pub phase: Phase,
    pub round: u32,
    pub round_start: DateTime<Utc>,
    /// Where the round stands: 0 is its channel announcement, n its n-th
    /// step; the next to take.
    pub position: u32,
    /// Rounds still to walk after this one if nobody answers.
    pub repeats_left: u32,
    /// When something is next due: a step, or the re-escalation of an
    /// acknowledged alert; `None` when nothing is.
    pub next_at: Option<DateTime<Utc>>,
    /// The first acknowledgement: what the response target is judged on.
    pub acked_by: Option<String>,
    pub acked_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    /// How many times it was stored: a write names the version it read.
    pub version: i64,
}

/// Something to tell now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Page {
    /// A round after the first begins: the channel hears it (an acknowledged
    /// alert still firing, or nobody having answered the round before).
    Round { round: u32 },
    /// A step of the chain (its index in `Chain::steps`): tell these.
    Step {
        round: u32,
        step: u32,
        notify: Vec<Target>,
    },
}

impl Escalation {
    /// When position `p` of the current round falls due.
    fn due(&self, chain: &Chain, calendar: &Calendar, p: u32) -> Option<DateTime<Utc>> {
        if p == 0 {
            return Some(self.round_start);
        }
        let step = chain.steps.get(p as usize - 1)?;
        Some(self.clock.add(calendar, self.round_start, step.after))
    }

    /// Still to be answered: open, and nobody has acknowledged.
    pub fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Walking | Phase::Exhausted)
    }
}

/// An alert fired: its chain starts, the first round's channel announcement
/// being the alert's own message.
pub fn raise(
    fingerprint: &str,
    started_at: DateTime<Utc>,
    severity: Severity,
    at: DateTime<Utc>,
    response: Response,
    chain: Option<&Chain>,
    calendar: &Calendar,
) -> Escalation {
    let mut e = Escalation {
        fingerprint: fingerprint.to_owned(),
        started_at,
        severity,
        raised_at: at,
        due_at: response.clock.add(calendar, at, response.within),
        clock: response.clock,
        phase: Phase::Exhausted,
        round: 0,
        round_start: at,
        position: 1,
        repeats_left: chain.map_or(0, |c| c.repeat),
        next_at: None,
        acked_by: None,
        acked_at: None,
        resolved_at: None,
        version: 0,
    };
    if let Some(chain) = chain {
        e.next_at = e.due(chain, calendar, 1);
        if e.next_at.is_some() {
            e.phase = Phase::Walking;
        }
    }
    e
}

/// Takes whatever fell due by `now`, in order: round announcements, steps,
/// and the re-escalation of an acknowledged alert still firing. Steps missed
/// while purser was down are all taken, once each.
pub fn walk(
    e: &Escalation,
    chain: &Chain,
    calendar: &Calendar,
    now: DateTime<Utc>,
) -> (Escalation, Vec<Page>) {
    let mut e = e.clone();
    let mut pages = Vec::new();
    // Each pass takes one position; bounded so a bad chain cannot spin.
    let bound = (chain.steps.len() + 2) * (chain.repeat as usize + 2) + 2;
    for _ in 0..bound {
        let Some(at) = e.next_at.filter(|at| *at <= now) else {
            break;
        };
        match e.phase {
            Phase::Walking => {
                if e.position == 0 {
                    pages.push(Page::Round { round: e.round });
                } else if let Some(step) = chain.steps.get(e.position as usize - 1) {
                    pages.push(Page::Step {
                        round: e.round,
                        step: e.position - 1,
                        notify: step.notify.clone(),
                    });
                }
                e.position += 1;
                if let Some(next) = e.due(chain, calendar, e.position) {
                    e.next_at = Some(next);
                } else if e.repeats_left > 0 {
                    e.repeats_left -= 1;
                    e.round += 1;
                    e.round_start = e.clock.add(calendar, e.round_start, chain.repeat_every);
                    e.position = 0;
                    e.next_at = Some(e.round_start);
                } else {
                    e.phase = Phase::Exhausted;
                    e.next_at = None;
                }
            }
            Phase::Acknowledged => {
                e.phase = Phase::Walking;
                e.round += 1;
                e.round_start = at;
                e.position = 0;
                e.repeats_left = chain.repeat;
                e.next_at = Some(at);
            }
            Phase::Exhausted | Phase::Resolved => {
                e.next_at = None;
                break;
            }
        }
    }
    (e, pages)
}

/// Someone took it on: the chain stops; with `after_ack`, it walks again if
/// the alert is still firing that long after. The first acknowledgement is
/// the one the response target is judged on.
pub fn acknowledge(
    e: &Escalation,
    by: &str,
    at: DateTime<Utc>,
    chain: Option<&Chain>,
    calendar: &Calendar,
) -> Escalation {
    let mut e = e.clone();
    if !e.is_open() {
        return e;
    }
    if e.acked_at.is_none() {
        e.acked_at = Some(at);
        e.acked_by = Some(by.to_owned());
    }
    e.phase = Phase::Acknowledged;
    e.next_at = chain
        .and_then(|c| c.after_ack)
        .map(|d| e.clock.add(calendar, at, d));
    e
}

/// The alert resolved: nothing more is due.
pub fn resolve(e: &Escalation, at: DateTime<Utc>) -> Escalation {
    let mut e = e.clone();
    if e.phase != Phase::Resolved {
        e.phase = Phase::Resolved;
        e.resolved_at = Some(at);
        e.next_at = None;
    }
    e
}

/// One severity's line of the SLA report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaRow {
    pub severity: Severity,
    pub raised: usize,
    /// Acknowledged by the response target.
    pub within: usize,
    /// Acknowledged, but after it.
    pub late: usize,
    /// Never acknowledged and past the target, or resolved unacknowledged.
    pub missed: usize,
    /// Not acknowledged yet, and the target not yet passed.
    pub open: usize,
    /// Time to acknowledge, on the severity's response clock.
    pub median: Option<Duration>,
    pub worst: Option<Duration>,
}

/// Per severity (A, B, C, each listed), how the alerts raised in
/// `escalations` were answered by `now`.
pub fn sla<'a>(
    escalations: &[Escalation],
    calendar_of: impl Fn(Severity) -> &'a Calendar,
    now: DateTime<Utc>,
) -> Vec<SlaRow> {
    [Severity::A, Severity::B, Severity::C]
        .into_iter()
        .map(|severity| {
            let mut row = SlaRow {
                severity,
                raised: 0,
                within: 0,
                late: 0,
                missed: 0,
                open: 0,
                median: None,
                worst: None,
            };
            let mut times = Vec::new();
            for e in escalations.iter().filter(|e| e.severity == severity) {
                row.raised += 1;
                match e.acked_at {
                    Some(at) => {
                        times.push(e.clock.elapsed(calendar_of(e.severity), e.raised_at, at));
                        if at <= e.due_at {
                            row.within += 1;
                        } else {
                            row.late += 1;
                        }
                    }
                    None if e.resolved_at.is_some() || now > e.due_at => row.missed += 1,
                    None => row.open += 1,
                }
            }
            times.sort();
            row.worst = times.last().copied();
            row.median = match times.len() {
                0 => None,
                n if n % 2 == 1 => Some(times[n / 2]),
                n => Some((times[n / 2 - 1] + times[n / 2]) / 2),
            };
            row
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::calendar::tests::bj;

    fn calendar() -> Calendar {
        let mut c = Calendar::weekdays(chrono_tz::Asia::Shanghai, 9 * 60, 18 * 60);
        for d in ["2026-04-04", "2026-04-05", "2026-04-06"] {
            c.holidays
                .insert(d.parse().expect("a date"), "Qingming".into());
        }
        c
    }

    fn chain() -> Chain {
        let step = |m: i64, t: &str| Step {
            after: Duration::minutes(m),
            notify: vec![Target::parse(t).expect("a target")],
        };
        Chain {
            steps: vec![
                step(30, "oncall:ops"),
                step(60, "secondary:ops"),
                step(90, "person:lead"),
                step(120, "pager:pd"),
            ],
            repeat: 1,
            repeat_every: Duration::hours(3),
            after_ack: Some(Duration::hours(4)),
        }
    }

    fn raised(severity: Severity, at: &str) -> Escalation {
        raise(
            "f1",
            bj(at),
            severity,
            bj(at),
            Response::default_for(severity),
            Some(&chain()),
            &calendar(),
        )
    }

    fn steps(pages: &[Page]) -> Vec<String> {
        pages
            .iter()
            .map(|p| match p {
                Page::Round { round } => format!("round {round}"),
                Page::Step { round, notify, .. } => format!("{round}:{}", notify[0]),
            })
            .collect()
    }

    #[test]
    fn an_a_alert_walks_its_chain_at_night() {
        let e = raised(Severity::A, "2026-11-21 02:00");
        assert_eq!(
            e.due_at,
            bj("2026-11-21 04:00"),
            "two hours, Saturday night"
        );
        assert_eq!(e.next_at, Some(bj("2026-11-21 02:30")));
        let (e, pages) = walk(&e, &chain(), &calendar(), bj("2026-11-21 02:29"));
        assert!(pages.is_empty());
        let (e, pages) = walk(&e, &chain(), &calendar(), bj("2026-11-21 02:30"));
        assert_eq!(steps(&pages), ["0:oncall:ops"]);
        let (e, pages) = walk(&e, &chain(), &calendar(), bj("2026-11-21 03:05"));
        assert_eq!(
            steps(&pages),
            ["0:secondary:ops"],
            "an earlier step is not taken twice"
        );
        assert_eq!(e.next_at, Some(bj("2026-11-21 03:30")));
    }

    #[test]
    fn a_b_alert_on_a_friday_evening_waits_for_the_next_working_day() {
        let e = raised(Severity::B, "2026-04-03 17:30");
        assert_eq!(
            e.due_at,
            bj("2026-04-07 12:30"),
            "not 21:30: Qingming is Saturday to Monday"
        );
        let (e, pages) = walk(&e, &chain(), &calendar(), bj("2026-04-03 21:30"));
        assert_eq!(
            steps(&pages),
            ["0:oncall:ops"],
            "30 working minutes: at 18:00"
        );
        assert_eq!(e.next_at, Some(bj("2026-04-07 09:30")));
        let (_, pages) = walk(&e, &chain(), &calendar(), bj("2026-04-06 23:00"));
        assert!(pages.is_empty(), "nobody is woken over the holiday");
    }

    #[test]
    fn steps_missed_while_down_are_each_taken_once_and_rounds_are_finite() {
        let e = raised(Severity::A, "2026-11-21 02:00");
        let (e, pages) = walk(&e, &chain(), &calendar(), bj("2026-11-21 06:00"));
        assert_eq!(
            steps(&pages),
            [
                "0:oncall:ops",
                "0:secondary:ops",
                "0:person:lead",
                "0:pager:pd",
                "round 1",
                "1:oncall:ops",
                "1:secondary:ops",
            ]
        );
        assert_eq!(e.round_start, bj("2026-11-21 05:00"));
        assert_eq!(e.next_at, Some(bj("2026-11-21 06:30")));
        let (e, pages) = walk(&e, &chain(), &calendar(), bj("2026-11-22 06:00"));
        assert_eq!(steps(&pages), ["1:person:lead", "1:pager:pd"]);
        assert_eq!((e.phase, e.next_at), (Phase::Exhausted, None));
        assert!(e.is_open(), "exhausted is still unanswered");
    }

    #[test]
    fn acknowledging_stops_the_chain_until_the_alert_has_fired_on_too_long() {
        let c = chain();
        let e = raised(Severity::A, "2026-11-21 02:00");
        let (e, _) = walk(&e, &c, &calendar(), bj("2026-11-21 02:30"));
        let e = acknowledge(&e, "bo", bj("2026-11-21 02:40"), Some(&c), &calendar());
        assert_eq!(e.phase, Phase::Acknowledged);
        assert_eq!(e.next_at, Some(bj("2026-11-21 06:40")));
        let (e, pages) = walk(&e, &c, &calendar(), bj("2026-11-21 06:39"));
        assert!(pages.is_empty(), "nobody is paged while it is taken on");
        let (e, pages) = walk(&e, &c, &calendar(), bj("2026-11-21 07:10"));
        assert_eq!(steps(&pages), ["round 1", "1:oncall:ops"]);
        // A second acknowledgement stops it again; the first is what counts.
        let e = acknowledge(&e, "ana", bj("2026-11-21 07:15"), Some(&c), &calendar());
        assert_eq!(e.acked_at, Some(bj("2026-11-21 02:40")));
        assert_eq!(e.acked_by.as_deref(), Some("bo"));
        let again = acknowledge(&e, "cy", bj("2026-11-21 07:16"), Some(&c), &calendar());
        assert_eq!(again, e, "a repeated press changes nothing");
        // Without after_ack it stays stopped.
        let quiet = Chain {
            after_ack: None,
            ..chain()
        };
        let e = acknowledge(
            &raised(Severity::A, "2026-11-21 02:00"),
            "bo",
            bj("2026-11-21 02:10"),
            Some(&quiet),
            &calendar(),
        );
        assert_eq!(e.next_at, None);
    }

    #[test]
    fn resolving_stops_the_chain() {
        let e = raised(Severity::A, "2026-11-21 02:00");
        let e = resolve(&e, bj("2026-11-21 02:20"));
        let (e, pages) = walk(&e, &chain(), &calendar(), bj("2026-11-22 00:00"));
        assert!(pages.is_empty());
        assert_eq!(e.phase, Phase::Resolved);
        let later = acknowledge(
            &e,
            "bo",
            bj("2026-11-21 03:00"),
            Some(&chain()),
            &calendar(),
        );
        assert_eq!(later.acked_at, None, "nothing to take on once resolved");
    }

    #[test]
    fn without_a_chain_only_the_target_is_kept() {
        let e = raise(
            "f",
            bj("2026-11-23 11:00"),
            Severity::C,
            bj("2026-11-23 11:00"),
            Response::default_for(Severity::C),
            None,
            &calendar(),
        );
        assert_eq!((e.phase, e.next_at), (Phase::Exhausted, None));
        assert_eq!(
            e.due_at,
            bj("2026-11-24 10:00"),
            "7 working hours Monday, 1 Tuesday"
        );
    }

    #[test]
    fn targets_parse_strictly() {
        assert_eq!(
            Target::parse("oncall:ops"),
            Ok(Target::OnCall("ops".into()))
        );
        assert_eq!(Target::parse("pager: pd"), Ok(Target::Pager("pd".into())));
        assert_eq!(
            Target::parse("person:lead").map(|t| t.to_string()),
            Ok("person:lead".into())
        );
        for bad in ["ops", "oncall:", "phone:123", ""] {
            assert!(Target::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_sla_report_matches_a_hand_computed_fixture() {
        let cal = calendar();
        let c = chain();
        let ack = |e: Escalation, at: &str| acknowledge(&e, "x", bj(at), Some(&c), &cal);
        let all = [
            // A: 40 min, within.
            ack(raised(Severity::A, "2026-11-21 02:00"), "2026-11-21 02:40"),
            // A: 3 h, late.
            ack(raised(Severity::A, "2026-11-23 10:00"), "2026-11-23 13:00"),
            // A: resolved unacknowledged.
            resolve(
                &raised(Severity::A, "2026-11-23 11:00"),
                bj("2026-11-23 11:30"),
            ),
            // B: Friday 17:30 to Tuesday 10:00 over Qingming is 1h30 of working time.
            ack(raised(Severity::B, "2026-04-03 17:30"), "2026-04-07 10:00"),
            // B: 5 h, late (due 13:00).
            ack(raised(Severity::B, "2026-11-23 09:00"), "2026-11-23 14:00"),
            // B: 1 h.
            ack(raised(Severity::B, "2026-11-23 10:00"), "2026-11-23 11:00"),
            // B: not yet answered, due 16:00.
            raised(Severity::B, "2026-11-23 12:00"),
        ];
        let rows = sla(&all, |_| &cal, bj("2026-11-23 15:00"));
        let a = &rows[0];
        assert_eq!(
            (a.raised, a.within, a.late, a.missed, a.open),
            (3, 1, 1, 1, 0)
        );
        assert_eq!(a.median, Some(Duration::minutes(110)), "(40m + 3h) / 2");
        assert_eq!(a.worst, Some(Duration::hours(3)));
        let b = &rows[1];
        assert_eq!(
            (b.raised, b.within, b.late, b.missed, b.open),
            (4, 2, 1, 0, 1)
        );
        assert_eq!(b.median, Some(Duration::minutes(90)));
        assert_eq!(b.worst, Some(Duration::hours(5)));
        let c_row = &rows[2];
        assert_eq!((c_row.raised, c_row.median), (0, None));
        // Once the open one's target passes, it is missed.
        let later = sla(&all, |_| &cal, bj("2026-11-23 16:01"));
        assert_eq!((later[1].missed, later[1].open), (1, 0));
    }
}
