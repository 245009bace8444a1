//! One poll of one account, then its evaluation: snapshot → rules → alert
//! changes and outbox rows, committed together.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::Semaphore;
use tracing::{error, info, warn};

use super::guard;
use crate::domain::account::AccountSpec;
use crate::domain::alert::{self, Alert, Changes};
use crate::domain::model::{Account, AccountId, FailureKind, PollFailure, Snapshot};
use crate::domain::policy::Policy;
use crate::domain::request;
use crate::domain::rules::{self, AccountState, RuleName, RuleSet, Undelivered};
use crate::domain::silence;
use crate::ports::{
    Actions, BalanceEntries, Clock, Meter, Polled, Provider, ProviderError, Requests, Store,
    StoreError,
};

/// Open requests read per evaluation at most; more open at once than this
/// is not a team's working set.
const OPEN_LIMIT: u32 = 500;

/// The handles one poll needs.
#[derive(Clone)]
pub struct Poller {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    /// Which outputs hear of each alert.
    pub routing: Arc<crate::domain::routing::Routing>,
    pub timeout: chrono::Duration,
    /// Where approved top-ups are read, to say when one runs late.
    pub requests: Option<Arc<dyn Requests>>,
    pub policies: Arc<HashMap<AccountId, Policy>>,
    /// Contract and unallocated balances people entered, laid over each
    /// snapshot.
    pub entries: Option<Arc<dyn BalanceEntries>>,
    /// What each poll is counted into, for the operators' metrics.
    pub meter: Arc<dyn Meter>,
}

/// What one poll came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollOutcome {
    /// Notices were written to the outbox.
    pub wrote: bool,
    /// The account was read (it is not blind).
    pub read: bool,
}

/// A provider with the number of calls it may have open at once.
#[derive(Clone)]
pub struct LimitedProvider {
    pub provider: Arc<dyn Provider>,
    pub permits: Arc<Semaphore>,
    /// Where renewals are priced, when the cloud can price them.
    pub actions: Option<Arc<dyn Actions>>,
}

impl Poller {
    /// Polls, records and evaluates one account.
    pub async fn run(
        &self,
        account: &AccountSpec,
        provider: &LimitedProvider,
    ) -> Result<PollOutcome, StoreError> {
        let id = &account.account.id;
        let started = self.clock.now();
        let outcome = match self.poll(account, provider).await {
            Ok(mut snapshot) => {
                if let Some(entries) = &self.entries {
                    let entered = entries.bucket_entries(id).await?;
                    snapshot.balance.with_entries(&entered);
                }
                self.price(account, provider, &mut snapshot).await?;
                Ok(snapshot)
            }
            Err(e) => Err(e),
        };
        let now = self.clock.now();
        let recorded = match &outcome {
            Ok(snapshot) => self.store.record_poll(id, now, Ok(snapshot)).await?,
            Err(e) => {
                warn!(account = %id, error = %e, "poll failed; keeping the last good snapshot");
                self.store.record_poll(id, now, Err(&e.failure())).await?
            }
        };
        let (changes, view) = match guard::caught(self.evaluate(account, &recorded, now, false))
            .await
        {
            Ok(changes) => changes?,
            Err(why) => {
                // A fault in purser: the account is judged as one it cannot
                // read, so that poll_failed says so at once and the other
                // accounts are watched on.
                error!(account = %id, panic = %why, "judging the account failed; reporting it as unreadable");
                let mut blind = recorded.clone();
                blind.failed(
                    now,
                    PollFailure {
                        kind: FailureKind::Internal,
                        message: format!("judging what the cloud answered failed: {why}"),
                    },
                );
                self.evaluate(account, &blind, now, true).await?
            }
        };
        let took = (self.clock.now() - started).to_std().unwrap_or_default();
        self.meter.polled(&Polled {
            account: &account.account,
            failure: outcome.as_ref().err().map(|e| e.failure().kind),
            took,
            snapshot: outcome.as_ref().ok(),
            view: view.as_ref(),
            last_success_at: recorded.last_success_at,
        });
        let wrote = !changes.notices.is_empty();
        for n in &changes.notices {
            info!(
                account = %id,
                fingerprint = %n.alert.fingerprint,
                rule = %n.alert.key.rule,
                kind = n.kind.as_str(),
                "alert notice decided"
            );
        }
        self.store
            .apply(&account.account, &changes, &self.routing)
            .await?;
        Ok(PollOutcome {
            wrote,
            read: outcome.is_ok(),
        })
    }

    async fn poll(
        &self,
        account: &AccountSpec,
        provider: &LimitedProvider,
    ) -> Result<Snapshot, ProviderError> {
        let timeout = self.timeout;
        // The permit bounds calls per provider; the timeout bounds how long a slow
        // account can hold one, so it never stalls the others for long.
        let _permit = provider
            .permits
            .acquire()
            .await
            .map_err(|_| ProviderError::Transport("shutting down".into()))?;
        let deadline = self.clock.now() + timeout;
        let snapshot = tokio::select! {
            r = guard::caught(provider.provider.poll(&account.account)) => r.map_err(|why| {
                ProviderError::Malformed(format!("purser failed while reading the answer ({why})"))
            })??,
            _ = self.clock.sleep_until(deadline) => {
                return Err(ProviderError::Timeout(timeout.to_std().unwrap_or_default()));
            }
        };
        let reported = snapshot.balance.available.currency();
        if reported != account.currency {
            return Err(ProviderError::Malformed(format!(
                "the account reports its balance in {reported}, but is configured as {}",
                account.currency
            )));
        }
        Ok(snapshot)
    }

    /// Prices what auto-renews within the rule's window (a price the last
    /// snapshot holds is kept while it still applies).
    async fn price(
        &self,
        account: &AccountSpec,
        provider: &LimitedProvider,
        snapshot: &mut Snapshot,
    ) -> Result<(), StoreError> {
        let Some(actions) = &provider.actions else {
            return Ok(());
        };
        let rule = &account.rules.autorenew_at_risk;
        let now = snapshot.taken_at;
        if !rule.enabled
            || !snapshot
                .resources
                .iter()
                .any(|r| rules::renews_within(r, rule.within, now))
        {
            return Ok(());
        }
        let previous = self.store.history(&account.account.id, now).await?;
        let Ok(_permit) = provider.permits.acquire().await else {
            return Ok(());
        };
        let deadline = self.clock.now() + self.timeout;
        let priced = guard::caught(super::pricing::price(
            actions.as_ref(),
            self.clock.as_ref(),
            &account.account,
            snapshot,
            previous.last(),
            rule.within,
            deadline,
        ))
        .await;
        if let Err(why) = priced {
            error!(account = %account.account.id, panic = %why, "pricing renewals failed");
        }
        Ok(())
    }

    /// The account's alert changes at `now`; `blind`: judged on its health
    /// alone, with no history (what judging it fully could not do).
    async fn evaluate(
        &self,
        account: &AccountSpec,
        health: &crate::domain::model::PollHealth,
        now: DateTime<Utc>,
        blind: bool,
    ) -> Result<(Changes, Option<crate::domain::forecast::AccountView>), StoreError> {
        let id = &account.account.id;
        let history = if blind {
            Vec::new()
        } else {
            self.store
                .history(id, now - account.rules.runway.window)
                .await?
        };
        let view =
            crate::domain::forecast::AccountView::of(&history, account.rules.runway.window, now);
        if let Some(view) = &view {
            self.store.record_view(id, view).await?;
        }
        let payments = match (&self.requests, self.policies.get(id)) {
            (Some(requests), Some(policy)) => requests
                .requests(true, OPEN_LIMIT)
                .await?
                .iter()
                .filter(|r| &r.account == id)
                .filter_map(|r| request::pending_payment(r, policy))
                .collect(),
            _ => Vec::new(),
        };
        let undelivered = self.undelivered(id).await?;
        let state = AccountState {
            account: &account.account,
            history: &history,
            health,
            payments: &payments,
            undelivered: &undelivered,
        };
        let evaluation = rules::evaluate(&account.rules, &state, now);
        let open = self.store.open_alerts(id).await?;
        let changes = self
            .reconcile(account, &open, &evaluation.findings, now)
            .await?;
        Ok((changes, view))
    }

    /// Notices about the account that an output never took.
    async fn undelivered(&self, id: &AccountId) -> Result<Vec<Undelivered>, StoreError> {
        Ok(self
            .store
            .failed_notices(Some(id.as_str()))
            .await?
            .into_iter()
            .map(|f| Undelivered {
                output: f.output,
                rule: f.notice.rule,
                severity: f.notice.severity,
                error: f.error,
                failed_at: f.failed_at,
            })
            .collect())
    }

    /// Judges at once whether an output has lost notices about `account`
    /// (its other rules wait for their poll), and writes what changes.
    pub async fn judge_deliveries(&self, account: &AccountSpec) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let id = &account.account.id;
        let undelivered = self.undelivered(id).await?;
        let health = crate::domain::model::PollHealth::new();
        let state = AccountState {
            account: &account.account,
            history: &[],
            health: &health,
            payments: &[],
            undelivered: &undelivered,
        };
        let findings: Vec<_> = rules::evaluate(&account.rules, &state, now)
            .findings
            .into_iter()
            .filter(|f| f.key.rule == RuleName::DeliveryFailed)
            .collect();
        let open: Vec<Alert> = self
            .store
            .open_alerts(id)
            .await?
            .into_iter()
            .filter(|a| a.key.rule == RuleName::DeliveryFailed)
            .collect();
        let changes = self.reconcile(account, &open, &findings, now).await?;
        let wrote = !changes.notices.is_empty();
        self.store
            .apply(&account.account, &changes, &self.routing)
            .await?;
        Ok(wrote)
    }

    async fn reconcile(
        &self,
        account: &AccountSpec,
        open: &[Alert],
        findings: &[rules::Finding],
        now: DateTime<Utc>,
    ) -> Result<Changes, StoreError> {
        self.reconcile_for(&account.account, &account.rules, open, findings, now)
            .await
    }

    async fn reconcile_for(
        &self,
        account: &Account,
        rules: &RuleSet,
        open: &[Alert],
        findings: &[rules::Finding],
        now: DateTime<Utc>,
    ) -> Result<Changes, StoreError> {
        let silences = self.store.silences(now).await?;
        let muted = |a: &Alert| {
            silence::silenced_by(&silences, account, &a.key, a.severity.as_str(), now).is_some()
        };
        Ok(alert::reconcile(open, findings, rules, &muted, now))
    }

    /// Judges purser's own watch (the holiday calendar running out) and
    /// writes what changes; its alerts are kept under the account `purser`.
    pub async fn judge_own(&self, own: &OwnWatch) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let account = Account {
            id: AccountId::parse(rules::SELF).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            provider: rules::SELF.into(),
            site: String::new(),
            labels: Default::default(),
        };
        let findings: Vec<rules::Finding> = rules::calendar_expiring(
            &own.rules.calendar_expiring,
            &own.covers,
            &own.file,
            own.zone,
            now,
        )
        .into_iter()
        .collect();
        let open: Vec<Alert> = self
            .store
            .open_alerts(&account.id)
            .await?
            .into_iter()
            .filter(|a| a.key.rule == RuleName::CalendarExpiring)
            .collect();
        let changes = self
            .reconcile_for(&account, &own.rules, &open, &findings, now)
            .await?;
        let wrote = !changes.notices.is_empty();
        self.store.apply(&account, &changes, &self.routing).await?;
        Ok(wrote)
    }
}

/// What purser watches of itself: the holiday calendar's years.
#[derive(Debug, Clone)]
pub struct OwnWatch {
    pub rules: RuleSet,
    /// The years the holiday file covers; empty: none is configured.
    pub covers: Vec<i32>,
    /// The holiday file, as the config names it.
    pub file: String,
    pub zone: chrono_tz::Tz,
}
