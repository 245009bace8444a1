//! Questions about the accounts (`balance`, `runway`, `expiring`, `alerts`,
//! `whoami`, `help`) and `setbalance`, which enters an answer by hand.

use chrono::{DateTime, Duration, Utc};

use super::{ChatOps, Reply};
use crate::domain::account::AccountSpec;
use crate::domain::command::{self, AmountText, Target, Verb};
use crate::domain::forecast::{self, AccountView};
use crate::domain::forecast::{RunwayChart, runway_chart};
use crate::domain::model::{AccountId, EnteredBucket};
use crate::domain::model::{BalanceEntry, RenewalMode, Snapshot};
use crate::domain::people::Person;
use crate::domain::silence;
use crate::engine::approvals::{self};
use crate::ports::StoreError;

impl ChatOps {
    /// `balance`: each chosen account's money, burn and runway.
    pub(super) async fn balance(
        &self,
        target: Option<Target>,
        now: DateTime<Utc>,
    ) -> Result<Reply, StoreError> {
        let chosen: Vec<&AccountSpec> = match &target {
            None => self.accounts.iter().collect(),
            Some(Target::Account(id)) => self
                .accounts
                .iter()
                .filter(|a| &a.account.id == id)
                .collect(),
            Some(Target::Label { name, value }) => self
                .accounts
                .iter()
                .filter(|a| a.account.labels.get(name) == Some(value))
                .collect(),
        };
        if chosen.is_empty() {
            return Ok(self.no_such(&target));
        }
        let views = self.views(&chosen, now).await?;
        let mut lines = Vec::new();
        for (a, view) in chosen.iter().zip(views) {
            lines.push(self.balance_line(a, view, now).await?);
        }
        Ok(Reply::done(
            "Balances (available · burn/day · runway)",
            lines,
        ))
    }

    /// `runway`: days left per account; one named account's chart too.
    pub(super) async fn runway(
        &self,
        account: Option<AccountId>,
        now: DateTime<Utc>,
    ) -> Result<Reply, StoreError> {
        let chosen: Vec<&AccountSpec> = self
            .accounts
            .iter()
            .filter(|a| account.as_ref().is_none_or(|id| &a.account.id == id))
            .collect();
        if chosen.is_empty() {
            return Ok(self.no_such(&account.map(Target::Account)));
        }
        let views = self.views(&chosen, now).await?;
        let mut lines = Vec::new();
        for (a, view) in chosen.iter().zip(views) {
            lines.push(match view {
                Some(v) => runway_line(a, v),
                None => self.unread_line(a).await?,
            });
        }
        let mut reply = Reply::done("Runway", lines);
        // One account asked for by name: its chart too.
        if let (true, [a]) = (account.is_some(), chosen.as_slice()) {
            reply.chart = self.chart(a, now).await?;
        }
        Ok(reply)
    }

    /// `expiring`: resources that end within `days`, soonest first.
    pub(super) async fn expiring(
        &self,
        days: u32,
        now: DateTime<Utc>,
    ) -> Result<Reply, StoreError> {
        let until = now + Duration::days(i64::from(days));
        let mut rows = Vec::new();
        for a in self.accounts.iter() {
            let Some(latest) = self.latest(a, now).await? else {
                continue;
            };
            for r in latest.resources {
                if r.expires_at <= until && r.renewal != RenewalMode::ExpireWithoutRenewal {
                    let mut line = format!(
                        "{} {} · {} · {} renewal",
                        a.account.id,
                        r.name.as_deref().unwrap_or(r.id.as_str()),
                        in_days(r.expires_at, now),
                        r.renewal.as_str()
                    );
                    if let Some(price) = r.price_text() {
                        line.push_str(&format!(" · {price}"));
                    }
                    rows.push((r.expires_at, line));
                }
            }
        }
        rows.sort_by_key(|(at, _)| *at);
        let title = format!("Expiring within {days} days: {}", rows.len());
        Ok(Reply::done(
            title,
            rows.into_iter().map(|(_, l)| l).collect(),
        ))
    }

    /// `alerts`: what fires now, and who acknowledged or silenced it.
    pub(super) async fn alerts(&self, now: DateTime<Utc>) -> Result<Reply, StoreError> {
        let alerts = self.store.all_open_alerts().await?;
        let silences = self.store.silences(now).await?;
        let lines = alerts
            .iter()
            .filter(|a| a.state == crate::domain::alert::AlertState::Firing)
            .map(|a| {
                let account = self
                    .accounts
                    .iter()
                    .find(|c| c.account.id.as_str() == a.key.account);
                let muted = account.and_then(|c| {
                    silence::silenced_by(&silences, &c.account, &a.key, a.severity.as_str(), now)
                });
                let mut l = format!(
                    "[{}] {} · {} · {}",
                    a.severity,
                    &a.fingerprint[..8],
                    a.key.rule,
                    a.summary
                );
                if let Some(ack) = &a.acknowledged {
                    l.push_str(&format!(" (acknowledged by {})", ack.by));
                }
                if let Some(s) = muted {
                    l.push_str(&format!(" (silenced by #{})", s.id));
                }
                l
            })
            .collect::<Vec<_>>();
        Ok(Reply::done(format!("Firing: {}", lines.len()), lines))
    }

    /// `setbalance`: a balance (or a contract's part) entered by hand.
    pub(super) async fn set_balance(
        &self,
        person: &Person,
        account: AccountId,
        amount: AmountText,
        part: Option<EnteredBucket>,
        now: DateTime<Utc>,
    ) -> Result<Reply, StoreError> {
        let Some(a) = self.accounts.iter().find(|a| a.account.id == account) else {
            return Ok(self.no_such(&Some(Target::Account(account))));
        };
        // A contract's money or the unallocated money: no cloud reads
        // them by API, so any account may have them entered.
        if part.is_none() && !self.entered.contains(&a.account.id) {
            return Ok(Reply::refused(format!(
                "{account}'s cloud reports its own balance; setbalance is for accounts with no balance API."
            )));
        }
        let money = match amount.money(a.currency) {
            Ok(m) if m.currency() == a.currency => m,
            Ok(m) => {
                return Ok(Reply::refused(format!(
                    "{account} is billed in {}, not {}.",
                    a.currency,
                    m.currency()
                )));
            }
            Err(e) => return Ok(Reply::refused(e.to_string())),
        };
        if part.is_some() && money.is_negative() {
            return Ok(Reply::refused(format!(
                "{} cannot hold a negative amount ({money}).",
                part.as_ref().map(|p| p.describe()).unwrap_or_default()
            )));
        }
        self.entries
            .record_balance_entry(
                &account,
                &BalanceEntry {
                    bucket: part.clone(),
                    amount: money,
                    as_of: now,
                    entered_by: person.name.clone(),
                    entered_at: now,
                },
            )
            .await?;
        if let Some(p) = part {
            return Ok(Reply::done(
                format!(
                    "{account} {} is now {money} as of {}, entered by {}.",
                    p.describe(),
                    now.format("%Y-%m-%d %H:%M UTC"),
                    person.name
                ),
                vec![
                    "It stands until the next entry, and goes stale as an entered balance does."
                        .into(),
                ],
            ));
        }
        Ok(Reply::done(
            format!(
                "{account}'s balance is now {money} as of {}, entered by {}.",
                now.format("%Y-%m-%d %H:%M UTC"),
                person.name
            ),
            vec!["purser subtracts the usage it reads from here on.".into()],
        ))
    }

    /// The snapshots the rules judge the account on, oldest first.
    pub(super) async fn history(
        &self,
        a: &AccountSpec,
        now: DateTime<Utc>,
    ) -> Result<Vec<Snapshot>, StoreError> {
        self.store
            .history(&a.account.id, now - a.rules.runway.window)
            .await
    }

    pub(super) async fn latest(
        &self,
        a: &AccountSpec,
        now: DateTime<Utc>,
    ) -> Result<Option<Snapshot>, StoreError> {
        approvals::last_read(self.store.as_ref(), a, now).await
    }

    /// The latest balance and forecast of each of `chosen`, in order: for
    /// one account from its history now; for several from the views the
    /// poller keeps, one read for all (an account without one yet, from its
    /// history).
    pub(super) async fn views(
        &self,
        chosen: &[&AccountSpec],
        now: DateTime<Utc>,
    ) -> Result<Vec<Option<AccountView>>, StoreError> {
        let kept = if chosen.len() > 1 {
            self.store.views().await?
        } else {
            Default::default()
        };
        let mut out = Vec::with_capacity(chosen.len());
        for a in chosen {
            out.push(match kept.get(&a.account.id) {
                Some(v) => Some(v.clone()),
                None => AccountView::of(&self.history(a, now).await?, a.rules.runway.window, now),
            });
        }
        Ok(out)
    }

    /// An account with no good snapshot: why not.
    pub(super) async fn unread_line(&self, a: &AccountSpec) -> Result<String, StoreError> {
        let health = self.store.health(&a.account.id).await?;
        Ok(match health.last_error {
            Some(e) => format!(
                "{} · cannot be read ({}): {e}",
                a.account.id,
                e.kind.as_str()
            ),
            None => format!("{} · not read yet", a.account.id),
        })
    }

    pub(super) async fn balance_line(
        &self,
        a: &AccountSpec,
        view: Option<AccountView>,
        now: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        let Some(v) = view else {
            return self.unread_line(a).await;
        };
        let f = &v.forecast;
        let burn = f
            .as_ref()
            .map_or("-".to_owned(), |f| f.burn.per_day.to_string());
        let runway = if v.available.is_negative() {
            "in arrears".to_owned()
        } else {
            f.as_ref()
                .and_then(|f| f.runway_days)
                .map_or("-".to_owned(), |d| format!("{} d", d.round_dp(1)))
        };
        let mut line = format!("{} · {} · {burn} · {runway}", a.account.id, v.available);
        if v.taken_at < now - Duration::hours(1) {
            line.push_str(&format!(
                " (as of {})",
                v.taken_at.format("%Y-%m-%d %H:%M UTC")
            ));
        }
        Ok(line)
    }

    pub(super) async fn chart(
        &self,
        a: &AccountSpec,
        now: DateTime<Utc>,
    ) -> Result<Option<RunwayChart>, StoreError> {
        let history = self.history(a, now).await?;
        Ok(runway_chart(
            a.account.id.as_str(),
            a.rules.runway.window,
            &history,
            now,
        ))
    }
}

fn runway_line(a: &AccountSpec, v: AccountView) -> String {
    if v.available.is_negative() {
        // No runway is left to count: the account owes the cloud.
        let owed = crate::domain::money::Money::zero(v.available.currency())
            .checked_sub(&v.available)
            .unwrap_or(v.available);
        let mut line = format!(
            "{} · in arrears by {owed}: the cloud may already be suspending services",
            a.account.id
        );
        if let Some(f) = v.forecast.filter(|f| f.burn.per_day.is_positive()) {
            line.push_str(&format!(" · spending {}/day", f.burn.per_day));
        }
        return line;
    }
    match v.forecast {
        None => format!("{} · not enough history for a burn rate yet", a.account.id),
        Some(f) => match f.runway_days {
            Some(d) => format!(
                "{} · {} days at {}/day ({}) · {} left",
                a.account.id,
                d.round_dp(1),
                f.burn.per_day,
                match f.burn.source {
                    forecast::BurnSource::Reported => "the cloud's spend records",
                    forecast::BurnSource::BalanceDeltas => "balance changes",
                },
                v.available
            ),
            None => format!(
                "{} · nothing is being spent · {} left",
                a.account.id, v.available
            ),
        },
    }
}

fn in_days(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let days = (at - now).num_days();
    match days {
        d if at <= now => format!("expired {} d ago", (now - at).num_days().max(d.abs())),
        0 => "today".into(),
        1 => "in 1 day".into(),
        d => format!("in {d} days"),
    }
}

/// `whoami`: the name and role purser knows the asker by.
pub(super) fn whoami(person: &Person) -> Reply {
    Reply::done(
        format!("You are {}, {}.", person.name, person.role),
        Vec::new(),
    )
}

/// `help`: the commands the asker's role allows, or one verb's usage.
pub(super) fn help(person: &Person, topic: Option<Verb>) -> Reply {
    match topic {
        None => Reply::done(
            "purser commands",
            command::help(person.role)
                .lines()
                .map(str::to_owned)
                .collect(),
        ),
        Some(v) => Reply::done(
            format!("usage: {}", v.usage()),
            vec![
                v.summary().to_owned(),
                format!("needs the {} role", v.role()),
            ],
        ),
    }
}
