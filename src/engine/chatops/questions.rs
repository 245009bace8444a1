//! Questions about the accounts (`balance`, `runway`, `expiring`, `alerts`,
//! `whoami`, `help`) and `setbalance`, which enters an answer by hand.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use super::{ChatOps, Reply};
use crate::domain::account::AccountSpec;
use crate::domain::command::{self, AmountText, Page, Target, Verb};
use crate::domain::forecast::{self, AccountView};
use crate::domain::forecast::{RunwayChart, runway_chart};
use crate::domain::model::{AccountId, EnteredBucket};
use crate::domain::model::{BalanceEntry, RenewalMode, Snapshot};
use crate::domain::people::Person;
use crate::domain::silence;
use crate::engine::approvals::{self};
use crate::ports::{Store, StoreError};

impl ChatOps {
    /// `balance`: each chosen account's money, burn and runway.
    pub(super) async fn balance(
        &self,
        target: Option<Target>,
        page: Page,
        now: DateTime<Utc>,
    ) -> Result<Reply, StoreError> {
        let chosen: Vec<&AccountSpec> = match &target {
            None => self.accounts.iter().map(|a| &**a).collect(),
            Some(Target::Account(id)) => self
                .accounts
                .iter()
                .map(|a| &**a)
                .filter(|a| &a.account.id == id)
                .collect(),
            Some(Target::Label { name, value }) => self
                .accounts
                .iter()
                .map(|a| &**a)
                .filter(|a| a.account.labels.get(name) == Some(value))
                .collect(),
        };
        if chosen.is_empty() {
            return Ok(self.no_such(&target));
        }
        let title = "Balances (available · burn/day · runway)";
        let total = chosen.len();
        let Some(shown) = self.urgent_first(&chosen, page, now).await? else {
            return Ok(past_the_end(title, total, page));
        };
        let mut lines = Vec::with_capacity(shown.len());
        for (a, view) in shown {
            lines.push(self.balance_line(a, view, now).await?);
        }
        Ok(one_page(title, total, page, lines))
    }

    /// `runway`: days left per account; one named account's chart too.
    pub(super) async fn runway(
        &self,
        account: Option<AccountId>,
        page: Page,
        now: DateTime<Utc>,
    ) -> Result<Reply, StoreError> {
        let chosen: Vec<&AccountSpec> = self
            .accounts
            .iter()
            .map(|a| &**a)
            .filter(|a| account.as_ref().is_none_or(|id| &a.account.id == id))
            .collect();
        if chosen.is_empty() {
            return Ok(self.no_such(&account.map(Target::Account)));
        }
        let total = chosen.len();
        let Some(shown) = self.urgent_first(&chosen, page, now).await? else {
            return Ok(past_the_end("Runway", total, page));
        };
        let mut lines = Vec::with_capacity(shown.len());
        for (a, view) in shown {
            lines.push(match view {
                Some(v) => runway_line(a, v),
                None => self.unread_line(a).await?,
            });
        }
        let mut reply = one_page("Runway", total, page, lines);
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
        page: Page,
        now: DateTime<Utc>,
    ) -> Result<Reply, StoreError> {
        let until = now + Duration::days(i64::from(days));
        let mut rows = Vec::new();
        for a in self.accounts.iter() {
            let Some(latest) = self.latest(a).await? else {
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
        let total = rows.len();
        let Some(shown) = page.of(rows) else {
            return Ok(past_the_end(&title, total, page));
        };
        let lines = shown.into_iter().map(|(_, l)| l).collect();
        Ok(one_page(&title, total, page, lines))
    }

    /// `alerts`: what fires now, and who acknowledged or silenced it.
    /// Only the page asked for is read from the store: a storm of a
    /// thousand alerts costs a question 25 rows.
    pub(super) async fn alerts(&self, page: Page, now: DateTime<Utc>) -> Result<Reply, StoreError> {
        let (alerts, total) = self.store.firing_alerts(page.offset(), Page::LINES).await?;
        let title = format!("Firing: {total}");
        if page.start(total).is_none() {
            return Ok(past_the_end(&title, total, page));
        }
        let silences = self.store.silences(now).await?;
        let lines = alerts
            .iter()
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
        Ok(one_page(&title, total, page, lines))
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

    pub(super) async fn latest(&self, a: &AccountSpec) -> Result<Option<Snapshot>, StoreError> {
        approvals::last_read(self.store.as_ref(), a).await
    }

    /// The page asked for of `chosen`, with each one's view: those that
    /// cannot be read first, then those in arrears, then by days of runway
    /// left, fewest first (in configuration order where alike), so that the
    /// first page of a large fleet is the one to act on. `None` past the
    /// last page.
    async fn urgent_first<'a>(
        &self,
        chosen: &[&'a AccountSpec],
        page: Page,
        now: DateTime<Utc>,
    ) -> Result<Option<Vec<(&'a AccountSpec, Option<AccountView>)>>, StoreError> {
        if page.start(chosen.len()).is_none() {
            return Ok(None);
        }
        let views = self.views(chosen, now).await?;
        let mut all: Vec<(&AccountSpec, Option<AccountView>)> =
            chosen.iter().copied().zip(views).collect();
        all.sort_by_key(|(_, v)| urgency(v.as_ref()));
        Ok(page.of(all))
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
            self.views.get(self.store.as_ref()).await?
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

/// How soon an account needs someone, least first: unread, in arrears,
/// runway in days, nothing known.
fn urgency(view: Option<&AccountView>) -> (u8, Option<rust_decimal::Decimal>) {
    match view {
        None => (0, None),
        Some(v) if v.available.is_negative() => (1, None),
        Some(v) => match v.forecast.as_ref().and_then(|f| f.runway_days) {
            Some(days) => (2, Some(days)),
            None => (3, None),
        },
    }
}

/// One page of an answer `total` lines long: the title says which page
/// when there are several, and the last line how to ask for the next.
fn one_page(title: &str, total: usize, page: Page, mut lines: Vec<String>) -> Reply {
    let pages = Page::count(total);
    if pages == 1 {
        return Reply::done(title, lines);
    }
    let n = page.number();
    lines.push(if (n as usize) < pages {
        format!("Page {n} of {pages}: add page={} for the next.", n + 1)
    } else {
        format!("Page {n} of {pages}, the last.")
    });
    Reply::done(format!("{title} (page {n} of {pages})"), lines)
}

/// A page asked for beyond the last.
fn past_the_end(title: &str, total: usize, page: Page) -> Reply {
    let pages = Page::count(total);
    Reply::refused(format!(
        "{title}: there is no page {}, the answer has {pages} ({} lines a page).",
        page.number(),
        Page::LINES
    ))
}

/// Every account's view as last read, with the `views_written` count it was
/// read at: shared by every question about the fleet until the count moves,
/// so two hundred people asking at once cost the store one number each.
#[derive(Default)]
pub struct ViewCache {
    kept: std::sync::Mutex<Option<(i64, Views)>>,
    /// One question reads the views again; the others wait for its copy.
    reading: tokio::sync::Mutex<()>,
}

type Views = Arc<HashMap<AccountId, AccountView>>;

impl ViewCache {
    async fn get(&self, store: &dyn Store) -> Result<Views, StoreError> {
        // The count before the views: a write between the two leaves a copy
        // newer than its count (read again next time), never older.
        let written = store.views_written().await?;
        if let Some(v) = self.as_new_as(written) {
            return Ok(v);
        }
        let _reading = self.reading.lock().await;
        if let Some(v) = self.as_new_as(written) {
            return Ok(v);
        }
        let views: Views = Arc::new(store.views().await?);
        *self.kept.lock().unwrap_or_else(|p| p.into_inner()) = Some((written, views.clone()));
        Ok(views)
    }

    /// The copy, if it was read after at least `written` writes.
    fn as_new_as(&self, written: i64) -> Option<Views> {
        match &*self.kept.lock().unwrap_or_else(|p| p.into_inner()) {
            Some((n, views)) if *n >= written => Some(views.clone()),
            _ => None,
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::chatops::ReplyKind;

    fn lines(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("line {i}")).collect()
    }

    #[test]
    fn a_short_answer_is_one_page_without_a_footer() {
        let r = one_page("Runway", 3, Page::FIRST, lines(3));
        assert_eq!(r.title, "Runway");
        assert_eq!(r.lines, lines(3));
    }

    #[test]
    fn a_long_answer_says_which_page_and_how_to_ask_for_the_next() {
        let p2 = Page::new(2).unwrap();
        let r = one_page("Runway", 60, p2, lines(Page::LINES));
        assert_eq!(r.title, "Runway (page 2 of 3)");
        assert_eq!(r.lines.len(), Page::LINES + 1);
        assert_eq!(
            r.lines[Page::LINES],
            "Page 2 of 3: add page=3 for the next."
        );
        let last = one_page("Runway", 60, Page::new(3).unwrap(), lines(10));
        assert_eq!(last.lines[10], "Page 3 of 3, the last.");
        let past = past_the_end("Runway", 60, Page::new(4).unwrap());
        assert_eq!(past.kind, ReplyKind::Refused);
        assert!(
            past.title.contains("no page 4, the answer has 3"),
            "{}",
            past.title
        );
    }
}
