//! How schedules and escalations read in chat: one line each, times in the
//! schedule's or calendar's zone.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::domain::alert::Alert;
use crate::domain::escalation::{Chain, Escalation, Phase};
use crate::domain::oncall::{Override, Rotation, Shift};

/// `Mon 30 Nov 10:00 CST`.
pub fn local(at: DateTime<Utc>, zone: Tz) -> String {
    at.with_timezone(&zone)
        .format("%a %d %b %H:%M %Z")
        .to_string()
}

fn shift(s: &Shift, zone: Tz) -> String {
    match &s.covering {
        Some(c) => format!("{} (covering {c}) until {}", s.person, local(s.to, zone)),
        None => format!("{} until {}", s.person, local(s.to, zone)),
    }
}

/// `ops: ana until Mon 30 Nov 10:00 CST · next bo until … · secondary bo`.
pub fn schedule_line(r: &Rotation, overrides: &[Override], now: DateTime<Utc>) -> String {
    let Some(current) = r.on_call(now, overrides) else {
        return format!("{}: nobody (the rotation lists no one)", r.name);
    };
    let mut line = format!("{}: {}", r.name, shift(&current, r.zone));
    if let Some(next) = r.next(now, overrides) {
        line.push_str(&format!(" · next {}", shift(&next, r.zone)));
    }
    if let Some(second) = r.secondary(now, overrides) {
        line.push_str(&format!(" · secondary {second}"));
    }
    line
}

/// Where one alert's chain stands: what was done, what comes next, and the
/// response deadline.
pub fn escalation_line(
    e: &Escalation,
    alert: Option<&Alert>,
    chain: Option<&Chain>,
    zone: Tz,
    now: DateTime<Utc>,
) -> String {
    let id = &e.fingerprint[..e.fingerprint.len().min(8)];
    let what = match alert {
        Some(a) => format!("{} · {} · {}", a.key.account, a.key.rule, a.summary),
        None => "resolving".to_owned(),
    };
    let due = if now > e.due_at {
        format!("response was due {} (overdue)", local(e.due_at, zone))
    } else {
        format!("respond by {}", local(e.due_at, zone))
    };
    let steps = chain.map_or(0, |c| c.steps.len());
    let round = if e.round > 0 {
        format!(" (round {})", e.round + 1)
    } else {
        String::new()
    };
    let state = match e.phase {
        Phase::Walking => {
            let taken = e.position.saturating_sub(1);
            // Position n is the n-th step; 0 is a new round's announcement.
            let upcoming = e
                .position
                .checked_sub(1)
                .and_then(|i| chain?.steps.get(i as usize))
                .map(|s| {
                    s.notify
                        .iter()
                        .map(|t| t.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                });
            let mut s = format!("step {taken} of {steps} taken{round}");
            match (upcoming, e.next_at) {
                (Some(who), Some(at)) => {
                    s.push_str(&format!("; next {who} at {}", local(at, zone)));
                }
                (None, Some(at)) => {
                    s.push_str(&format!("; starts again at {}", local(at, zone)));
                }
                _ => {}
            }
            s
        }
        Phase::Exhausted if steps == 0 => "no chain for its severity".to_owned(),
        Phase::Exhausted => format!("all {steps} steps taken{round}, nobody acknowledged"),
        Phase::Acknowledged => {
            let mut s = format!(
                "acknowledged by {} at {}",
                e.acked_by.as_deref().unwrap_or("someone"),
                local(e.acked_at.unwrap_or(e.raised_at), zone)
            );
            if let Some(at) = e.next_at {
                s.push_str(&format!(
                    "; escalates again at {} if still firing",
                    local(at, zone)
                ));
            }
            s
        }
        Phase::Resolved => "resolved".to_owned(),
    };
    let due = if e.phase == Phase::Acknowledged {
        String::new()
    } else {
        format!("; {due}")
    };
    format!("[{}] {id} · {what} — {state}{due}", e.severity)
}
