//! On call: who answers now and next, overrides made in chat, and the
//! escalations under way.

use chrono::{DateTime, Duration, Utc};

use super::{ChatOps, Reply};
use crate::domain::calendar::Calendar;
use crate::domain::command::{Role, When};
use crate::domain::oncall::{MAX_OVERRIDE_DAYS, Override, Rotation};
use crate::domain::people::Person;
use crate::engine::{escalator, oncall_view};
use crate::ports::StoreError;

impl ChatOps {
    /// Who is on call now and next, per schedule (or the one named).
    pub(super) async fn oncall(
        &self,
        name: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Reply, StoreError> {
        let schedules = &self.oncall.schedules;
        if schedules.is_empty() {
            return Ok(Reply::done(
                "No on-call schedules are configured.",
                vec!["Add [[schedules]] to purser's config (README, On call).".to_owned()],
            ));
        }
        let chosen: Vec<&Rotation> = match name {
            None => schedules.iter().collect(),
            Some(n) => match schedules.iter().find(|r| r.name == n) {
                Some(r) => vec![r],
                None => return Ok(self.no_schedule(n)),
            },
        };
        let overrides = escalator::overrides(&self.oncall, &*self.escalations, now).await?;
        Ok(Reply::done(
            "On call",
            chosen
                .iter()
                .map(|r| oncall_view::schedule_line(r, &overrides, now))
                .collect(),
        ))
    }

    pub(super) fn no_schedule(&self, name: &str) -> Reply {
        let known: Vec<&str> = self
            .oncall
            .schedules
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        Reply::refused(format!(
            "No schedule is named {name:?}; schedules: {}.",
            known.join(", ")
        ))
    }

    /// `oncall override`: `who` answers for `schedule` from `from` until
    /// `until`, stored and audited. Taking a shift yourself asks for the
    /// requester role; putting someone else on, for approver.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn add_override(
        &self,
        person: &Person,
        schedule: &str,
        who: &str,
        from: When,
        until: When,
        reason: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<Reply, StoreError> {
        let Some(rotation) = self.oncall.schedules.iter().find(|r| r.name == schedule) else {
            return Ok(self.no_schedule(schedule));
        };
        let needs = if who == person.name {
            Role::Requester
        } else {
            Role::Approver
        };
        if person.role < needs {
            return Ok(Reply::refused(if who == person.name {
                format!(
                    "Taking a shift needs the {needs} role; you are {}.",
                    person.role
                )
            } else {
                format!(
                    "Putting someone else on call needs the {needs} role; you are {}.",
                    person.role
                )
            }));
        }
        let Some(contact) = self.oncall.people.iter().find(|p| p.name == who) else {
            let known: Vec<&str> = self.oncall.people.iter().map(|p| p.name.as_str()).collect();
            return Ok(Reply::refused(format!(
                "Nobody is named {who:?}; people: {}.",
                known.join(", ")
            )));
        };
        if contact.identities.is_empty() {
            return Ok(Reply::refused(format!(
                "{who} has no chat identity in purser's config, so purser could not page them."
            )));
        }
        let zone = rotation.zone;
        let wall = |date, minute| Calendar::weekdays(zone, 0, 0).instant(date, minute);
        let start = match from {
            When::Now => now,
            When::Wall(d, m) => wall(d, m),
            When::After(_) => return Ok(Reply::refused("Give the start as now or a date.")),
        };
        let end = match until {
            When::After(d) => start + d,
            When::Wall(d, m) => wall(d, m),
            When::Now => {
                return Ok(Reply::refused(
                    "Give the end as a date or a span such as 8h.",
                ));
            }
        };
        if end <= start {
            return Ok(Reply::refused(format!(
                "The override would end ({}) before it starts ({}).",
                oncall_view::local(end, zone),
                oncall_view::local(start, zone)
            )));
        }
        if end <= now {
            return Ok(Reply::refused(format!(
                "That is over already: it ended {}.",
                oncall_view::local(end, zone)
            )));
        }
        if end - start > Duration::days(MAX_OVERRIDE_DAYS) {
            return Ok(Reply::refused(format!(
                "An override may last at most {MAX_OVERRIDE_DAYS} days; change the rotation in the config for longer."
            )));
        }
        let covering = rotation.scheduled(start).map(|s| s.person);
        let stored = self
            .escalations
            .add_override(
                &Override {
                    id: 0,
                    schedule: schedule.to_owned(),
                    person: who.to_owned(),
                    from: start,
                    to: end,
                    by: person.name.clone(),
                },
                reason.as_deref(),
                now,
            )
            .await?;
        let mut title = format!(
            "Override #{}: {who} is on call for {schedule} from {} until {}",
            stored.id,
            oncall_view::local(start, zone),
            oncall_view::local(end, zone)
        );
        match covering {
            Some(c) if c != who => title.push_str(&format!(", covering {c}.")),
            _ => title.push('.'),
        }
        let overrides = escalator::overrides(&self.oncall, &*self.escalations, now).await?;
        Ok(Reply::done(
            title,
            vec![oncall_view::schedule_line(rotation, &overrides, now)],
        ))
    }

    /// `escalations`: the alerts waiting for an answer, and where each chain stands.
    pub(super) async fn escalations(&self, now: DateTime<Utc>) -> Result<Reply, StoreError> {
        let open = self.escalations.open_escalations().await?;
        let alerts = self.store.all_open_alerts().await?;
        let lines: Vec<String> = open
            .iter()
            .map(|e| {
                let alert = alerts
                    .iter()
                    .find(|a| a.fingerprint == e.fingerprint && a.started_at == e.started_at);
                oncall_view::escalation_line(
                    e,
                    alert,
                    self.oncall.chains.get(&e.severity),
                    self.oncall.zone(),
                    now,
                )
            })
            .collect();
        Ok(if lines.is_empty() {
            Reply::done("No alert is waiting for an answer.", Vec::new())
        } else {
            Reply::done(format!("Escalations open: {}", lines.len()), lines)
        })
    }
}
