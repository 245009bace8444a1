//! The few traits the engine needs from the outside world. Adapters implement them.

mod clouds;
mod escalation;
mod requests;

pub use clouds::{
    ActionError, Actions, CallAnswer, CloudCall, LostCall, NextCall, Provider, ProviderError,
    ReadBack,
};
pub use escalation::{
    DirectMessages, EscalationWrite, Escalations, OutsidePager, PageItem, PageMessage, PagerEvent,
};
pub use requests::{
    Lease, NewRequest, RequestCard, RequestCards, RequestMessages, Requests, SecondFactors, Step,
    Written,
};

use std::time::Duration as StdDuration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::alert::{Alert, Changes, Notice};
use crate::domain::model::{
    Account, AccountId, BalanceEntry, FailureKind, PollFailure, PollHealth, Snapshot,
};
use crate::domain::routing::Routing;

/// The time, and a way to wait for a moment. Tests drive a manual clock.
#[async_trait]
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
    async fn sleep_until(&self, at: DateTime<Utc>);
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store: {0}")]
    Database(#[from] sqlx::Error),
    #[error("store: a stored row could not be read back: {0}")]
    Corrupt(String),
    /// The store cannot be used at all: not reachable, or not one purser
    /// can run on.
    #[error("store: {0}")]
    Unavailable(String),
    /// A write that acts on leadership, refused because this replica no
    /// longer leads: another took over, and does the work now.
    #[error("store: {0}")]
    NotLeader(String),
    /// One failure of a write that several callers shared (polls recorded
    /// together), given to each of them.
    #[error("{0}")]
    Shared(std::sync::Arc<StoreError>),
}

/// A replica's lead: who, the fencing token its writes carry, since when
/// and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lead {
    pub holder: String,
    pub token: i64,
    pub since: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// The lease that makes one replica of several the leader: the one that
/// polls, sends and pages. Times are the replica's clock; replicas keep
/// their clocks in step (NTP), well inside the lease's term.
#[async_trait]
pub trait Leadership: Send + Sync {
    /// Takes the lead for `holder` until `now + term`, unless another holds
    /// an unexpired lease (`None`). The holder taking it again keeps its
    /// token; a new holder gets the next.
    async fn lead(
        &self,
        holder: &str,
        now: DateTime<Utc>,
        term: chrono::Duration,
    ) -> Result<Option<Lead>, StoreError>;
    /// Extends the lease `token` names to `now + term` while it has not run
    /// out; `false`: it has, or another took over.
    async fn renew(
        &self,
        token: i64,
        now: DateTime<Utc>,
        term: chrono::Duration,
    ) -> Result<bool, StoreError>;
    /// Gives the lead up at once (a clean stop).
    async fn step_down(&self, token: i64, now: DateTime<Utc>) -> Result<(), StoreError>;
    /// Who leads, as stored (expired or not).
    async fn leader(&self) -> Result<Option<Lead>, StoreError>;
}

/// A notice not delivered, as `purser outbox list` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OutboxRow {
    pub id: i64,
    pub output: String,
    /// `waiting` (to be tried at `at`) or `failed` (given up on at `at`).
    pub state: &'static str,
    pub attempts: u32,
    pub at: DateTime<Utc>,
    /// What the output said the last time.
    pub error: Option<String>,
    pub account: String,
    pub rule: String,
    pub kind: String,
    pub summary: String,
}

impl StoreError {
    /// The store did not answer (the connection refused, lost or timed
    /// out, the server shutting down): it may answer again, unlike a row
    /// that cannot be read or a write refused.
    pub fn is_unreachable(&self) -> bool {
        match self {
            StoreError::Database(e) => match e {
                sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed => true,
                // 08: connection exceptions; 57P: the server shutting down
                // or not yet accepting connections.
                sqlx::Error::Database(d) => d
                    .code()
                    .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
                _ => false,
            },
            StoreError::Unavailable(_) => true,
            StoreError::Corrupt(_) | StoreError::NotLeader(_) => false,
            StoreError::Shared(e) => e.is_unreachable(),
        }
    }

    /// Why a write as leader was refused, when that is what this is.
    pub fn not_leader(&self) -> Option<&str> {
        match self {
            StoreError::NotLeader(why) => Some(why),
            StoreError::Shared(e) => e.not_leader(),
            _ => None,
        }
    }
}

/// A notice waiting in the outbox for one output.
#[derive(Debug, Clone)]
pub struct OutboxItem {
    pub id: i64,
    pub output: String,
    pub attempts: u32,
    pub notice: StoredNotice,
}

/// A notice an output never took, kept after its last attempt.
#[derive(Debug, Clone)]
pub struct FailedNotice {
    pub id: i64,
    pub output: String,
    pub attempts: u32,
    /// What the output said the last time.
    pub error: String,
    pub failed_at: DateTime<Utc>,
    pub notice: StoredNotice,
}

/// A notice as it was decided, kept in the outbox until delivered.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredNotice {
    /// Unique per notice and output: receivers use it to drop duplicates.
    pub id: String,
    pub kind: crate::domain::alert::NoticeKind,
    pub fingerprint: String,
    pub rule: crate::domain::rules::RuleName,
    pub severity: crate::domain::rules::Severity,
    pub status: crate::domain::alert::AlertState,
    pub account: String,
    pub resource: String,
    pub tier: String,
    pub summary: String,
    pub labels: crate::domain::model::Labels,
    pub started_at: DateTime<Utc>,
    pub fired_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub escalated_from: Option<String>,
    /// Who acknowledged it, once someone has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_by: Option<String>,
    /// On a `silenced` notice: who set the silence, and until when it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silenced_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silenced_until: Option<DateTime<Utc>>,
    /// On a `paged` notice: the step taken, as the channel reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paged: Option<String>,
    pub decided_at: DateTime<Utc>,
}

/// A silence as a person asks for it; the store gives it its number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSilence {
    pub matchers: Vec<crate::domain::command::Matcher>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub created_by: String,
    pub reason: Option<String>,
}

/// What an acknowledgement found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckOutcome {
    Acknowledged(Alert),
    /// Someone had already: a second click changes nothing.
    AlreadyAcknowledged(Alert),
    NotFound,
    /// The prefix names more than one open alert: these.
    Ambiguous(Vec<String>),
}

/// What ending a silence found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndSilenceOutcome {
    Ended(crate::domain::silence::Silence),
    /// It had already ended, by itself or by someone.
    AlreadyOver(crate::domain::silence::Silence),
    NotFound,
}

/// One account's poll, as `Store::record_polls` keeps it.
#[derive(Debug, Clone, Copy)]
pub struct PollRecord<'a> {
    pub account: &'a AccountId,
    pub at: DateTime<Utc>,
    pub outcome: Result<&'a Snapshot, &'a PollFailure>,
}

/// Which of an account's history judging reads: its good snapshots since
/// `since`. `fresh`: when the snapshot the caller holds whole was taken (the
/// one its poll just fetched): a store may read those no newer than it thin.
#[derive(Debug, Clone, Copy)]
pub struct Window<'a> {
    pub account: &'a AccountId,
    pub since: DateTime<Utc>,
    pub fresh: Option<DateTime<Utc>>,
}

/// What judging one account reads: its good snapshots since a time (as
/// `Store::history` gives them, except that a store may leave the resources
/// and orders out of all but the newest: the rules read only the balances
/// of those before it; and when the first and the newest carry tallies of
/// one chain, it may leave out all but the first two and the newest: the
/// tallies sum what lies
/// between, and the second stands in for a first the store's coarser time
/// put in the window), its open alerts, and the notices about it that an
/// output gave up on.
#[derive(Debug, Clone, Default)]
pub struct Judging {
    pub history: Vec<Snapshot>,
    pub open: Vec<Alert>,
    pub failed: Vec<FailedNotice>,
}

/// One account's judgement, to keep: its latest view and its alert changes.
#[derive(Debug, Clone, Copy)]
pub struct Judgement<'a> {
    pub account: &'a Account,
    pub view: Option<&'a crate::domain::forecast::AccountView>,
    pub changes: &'a Changes,
}

/// Persistence. Every method is one transaction.
#[async_trait]
pub trait Store: Send + Sync {
    /// Records a poll: the snapshot when it succeeded, and the account's poll health.
    async fn record_poll(
        &self,
        account: &AccountId,
        at: DateTime<Utc>,
        outcome: Result<&Snapshot, &PollFailure>,
    ) -> Result<PollHealth, StoreError>;
    async fn health(&self, account: &AccountId) -> Result<PollHealth, StoreError>;
    /// Good snapshots taken at or after `since`, oldest first.
    async fn history(
        &self,
        account: &AccountId,
        since: DateTime<Utc>,
    ) -> Result<Vec<Snapshot>, StoreError>;
    /// The newest good snapshot, however old: the last `history` holds,
    /// read as one row.
    async fn latest_snapshot(&self, account: &AccountId) -> Result<Option<Snapshot>, StoreError>;
    async fn open_alerts(&self, account: &AccountId) -> Result<Vec<Alert>, StoreError>;
    /// Every account's open alerts, most severe first.
    async fn all_open_alerts(&self) -> Result<Vec<Alert>, StoreError>;
    /// The number of the newest alert write: read before `firing_as_written`,
    /// it is where `alerts_changed_since` picks up from.
    async fn alerts_written(&self) -> Result<i64, StoreError>;
    /// The alerts (in any state) written after write number `after`, oldest
    /// write first, each with the number of its last write, and the number
    /// to pass next time. A write still under way when this reads is seen
    /// the next time, never skipped.
    async fn alerts_changed_since(
        &self,
        after: i64,
    ) -> Result<(Vec<(i64, Alert)>, i64), StoreError>;
    /// Every firing alert with the number of its last write: what the
    /// escalator holds between passes.
    async fn firing_as_written(&self) -> Result<Vec<(i64, Alert)>, StoreError>;
    /// The mark of every firing alert, and of every alert written after
    /// `after` whatever its state: a few columns a row, for checking what
    /// is held against the store without reading every alert whole.
    async fn firing_marks(&self, after: i64) -> Result<Vec<Mark>, StoreError>;
    /// Up to `limit` of the firing alerts in `all_open_alerts`' order,
    /// skipping `offset`, and how many fire in all: a page of a long list
    /// for a question in chat, without reading the rest.
    async fn firing_alerts(
        &self,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<Alert>, usize), StoreError>;
    /// Marks the one open alert whose fingerprint starts with `alert`, and in
    /// the same transaction queues an `acknowledged` notice for the outputs
    /// `routing` picks (`accounts` give the alert's account labels).
    async fn acknowledge(
        &self,
        alert: &crate::domain::command::AlertRef,
        by: &str,
        at: DateTime<Utc>,
        accounts: &[Account],
        routing: &Routing,
    ) -> Result<AckOutcome, StoreError>;
    /// Stores a silence, and queues a `silenced` notice for each firing alert
    /// it covers that people were told of, so that chat messages show it.
    async fn add_silence(
        &self,
        silence: &NewSilence,
        accounts: &[Account],
        routing: &Routing,
    ) -> Result<crate::domain::silence::Silence, StoreError>;
    async fn end_silence(
        &self,
        id: u64,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<EndSilenceOutcome, StoreError>;
    /// Silences not yet over at `now`, soonest end first.
    async fn silences(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<crate::domain::silence::Silence>, StoreError>;
    /// Writes alert changes and one outbox row per (notice, output that
    /// `routing` picks for it) together.
    async fn apply(
        &self,
        account: &Account,
        changes: &Changes,
        routing: &Routing,
    ) -> Result<(), StoreError>;
    /// `output`'s notices due at `now`, oldest first.
    async fn due_notices(
        &self,
        output: &str,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<OutboxItem>, StoreError>;
    /// The earliest time one of `output`'s undelivered notices becomes due.
    async fn next_notice_due(&self, output: &str) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// The outputs that have notices still to send.
    async fn pending_outputs(&self) -> Result<Vec<String>, StoreError>;
    /// Notices given up on after their attempts, kept for a person: every
    /// one, or one account's; oldest first.
    async fn failed_notices(&self, account: Option<&str>) -> Result<Vec<FailedNotice>, StoreError>;
    /// Queues notices given up on again, due at `now` with their attempts
    /// afresh: those with `ids`, or all; how many.
    async fn retry_failed(
        &self,
        ids: Option<&[i64]>,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError>;
    /// Marks `ids` as being sent from `at`, just before they are; how many
    /// were marked so already and never marked delivered or failed: a send
    /// cut off by a crash (or a replica's death), which the receiver may
    /// have got. They go again with the same notice id, so the receiver
    /// drops them by it; this is the one repeat there can be.
    async fn sending(&self, ids: &[i64], at: DateTime<Utc>) -> Result<u32, StoreError>;
    async fn mark_delivered(&self, id: i64, at: DateTime<Utc>) -> Result<(), StoreError>;
    /// A failed attempt: retry at `retry_at`, or give up when `None`.
    async fn mark_failed(
        &self,
        id: i64,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError>;
    /// An attempt the output asked to hold off (rate limited): tried again
    /// at `until`, without counting as an attempt.
    async fn postpone(&self, id: i64, why: &str, until: DateTime<Utc>) -> Result<(), StoreError>;
    /// Keeps `view` as the account's latest (replacing the one before).
    async fn record_view(
        &self,
        account: &AccountId,
        view: &crate::domain::forecast::AccountView,
    ) -> Result<(), StoreError>;
    /// A count that moves with every write of a view (in the same
    /// transaction): a copy of `views` read after it stays true while it
    /// stays the same.
    async fn views_written(&self) -> Result<i64, StoreError>;
    /// Every account's latest view.
    async fn views(
        &self,
    ) -> Result<
        std::collections::HashMap<AccountId, crate::domain::forecast::AccountView>,
        StoreError,
    >;
    /// Drops snapshots older than `before`, keeping each account's newest.
    async fn prune_snapshots(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
    /// Notices not delivered: waiting, and (or only, `failed_only`) given
    /// up on; oldest first. For `purser outbox list`.
    async fn undelivered(&self, failed_only: bool) -> Result<Vec<OutboxRow>, StoreError>;

    /// Records several polls, as `record_poll` does each, in order; their
    /// accounts' poll health after. A store that can writes them in one
    /// transaction, so that a cycle of many accounts is not one commit each.
    async fn record_polls(&self, polls: &[PollRecord<'_>]) -> Result<Vec<PollHealth>, StoreError> {
        let mut healths = Vec::with_capacity(polls.len());
        for p in polls {
            healths.push(self.record_poll(p.account, p.at, p.outcome).await?);
        }
        Ok(healths)
    }

    /// What judging each account reads, its history from the time paired
    /// with it; in order. A store that can reads them all in a few queries.
    async fn judging(&self, windows: &[Window<'_>]) -> Result<Vec<Judging>, StoreError> {
        let mut out = Vec::with_capacity(windows.len());
        for w in windows {
            out.push(Judging {
                history: self.history(w.account, w.since).await?,
                open: self.open_alerts(w.account).await?,
                failed: self.failed_notices(Some(w.account.as_str())).await?,
            });
        }
        Ok(out)
    }

    /// Keeps each judgement's view (`record_view`) and writes its alert
    /// changes with their outbox rows (`apply`). A store that can writes
    /// them all in one transaction.
    async fn record_judgements(
        &self,
        judged: &[Judgement<'_>],
        routing: &Routing,
    ) -> Result<(), StoreError> {
        for j in judged {
            if let Some(view) = j.view {
                self.record_view(&j.account.id, view).await?;
            }
            self.apply(j.account, j.changes, routing).await?;
        }
        Ok(())
    }
}

/// Balances entered by hand, for clouds that cannot be asked.
#[async_trait]
pub trait BalanceEntries: Send + Sync {
    async fn record_balance_entry(
        &self,
        account: &AccountId,
        entry: &BalanceEntry,
    ) -> Result<(), StoreError>;
    /// The entry in force: the one with the latest `as_of`.
    async fn latest_balance_entry(
        &self,
        account: &AccountId,
    ) -> Result<Option<BalanceEntry>, StoreError>;
    /// The entry in force for each contract and for the unallocated money.
    async fn bucket_entries(&self, account: &AccountId) -> Result<Vec<BalanceEntry>, StoreError>;
    /// `bucket_entries` of each of `accounts`; an account with none is left
    /// out. A store that can reads them all in a few queries.
    async fn bucket_entries_of(
        &self,
        accounts: &[&AccountId],
    ) -> Result<std::collections::HashMap<AccountId, Vec<BalanceEntry>>, StoreError> {
        let mut out = std::collections::HashMap::new();
        for a in accounts {
            let entries = self.bucket_entries(a).await?;
            if !entries.is_empty() {
                out.insert((*a).clone(), entries);
            }
        }
        Ok(out)
    }
}

/// Why an output did not take a message, in the terms its sender acts on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The platform asked for a pause before anything more goes to it:
    /// nothing is wrong with the message, so the attempt does not count,
    /// and the output is not sent to again for `retry_after`.
    #[error("{what} (rate limited; retry after {} s)", retry_after.as_secs_f64())]
    RateLimited {
        what: String,
        retry_after: std::time::Duration,
    },
    /// The platform refused the message for a reason that time does not
    /// mend (a missing scope, an unknown channel); `code` is its own name
    /// for the reason, where it gives one.
    #[error("{what} (not retried)")]
    Refused { code: Option<String>, what: String },
    /// Anything that may pass: the network, a timeout, a server error.
    #[error("{what} (will retry)")]
    Transient { what: String },
}

impl SendError {
    /// The longest pause a platform's answer is believed for: a larger
    /// `retry_after` is a garbled answer, not a plan.
    pub const LONGEST_PAUSE: std::time::Duration = std::time::Duration::from_secs(3600);

    pub fn transient(what: impl Into<String>) -> Self {
        SendError::Transient { what: what.into() }
    }

    /// Refused without a platform code (purser's own reason, or a platform
    /// that names none).
    pub fn refused(what: impl Into<String>) -> Self {
        SendError::Refused {
            code: None,
            what: what.into(),
        }
    }

    pub fn refused_as(code: impl Into<String>, what: impl Into<String>) -> Self {
        SendError::Refused {
            code: Some(code.into()),
            what: what.into(),
        }
    }

    /// A pause asked for, bounded by [`Self::LONGEST_PAUSE`].
    pub fn rate_limited(what: impl Into<String>, retry_after: std::time::Duration) -> Self {
        SendError::RateLimited {
            what: what.into(),
            retry_after: retry_after.min(Self::LONGEST_PAUSE),
        }
    }

    /// What the output said, without what purser does about it.
    pub fn message(&self) -> &str {
        match self {
            SendError::RateLimited { what, .. }
            | SendError::Refused { what, .. }
            | SendError::Transient { what } => what,
        }
    }

    /// Whether sending the same thing again later may succeed.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, SendError::Refused { .. })
    }

    /// Until when a rate-limited output is left alone, from `now`.
    pub fn held_until(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let SendError::RateLimited { retry_after, .. } = self else {
            return None;
        };
        let pause = chrono::Duration::from_std(*retry_after).unwrap_or(chrono::Duration::hours(1));
        Some(now.checked_add_signed(pause).unwrap_or(now))
    }

    /// Whether the platform refused it with exactly this code.
    pub fn refused_with(&self, wanted: &str) -> bool {
        matches!(self, SendError::Refused { code: Some(c), .. } if c == wanted)
    }
}

/// Where an alert occurrence was posted in a chat, so that it can be edited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRef {
    pub channel: String,
    pub message: String,
}

/// Chat outputs remember their messages here.
#[async_trait]
pub trait MessageRefs: Send + Sync {
    /// Remembers that the message `at` shows `notices`, in this order, each
    /// as given (a later call for the same alerts overwrites).
    async fn record_message(
        &self,
        output: &str,
        at: &MessageRef,
        notices: &[StoredNotice],
    ) -> Result<(), StoreError>;
    /// The message the alert occurrence was posted in on `output`.
    async fn message(
        &self,
        output: &str,
        fingerprint: &str,
        started_at: DateTime<Utc>,
    ) -> Result<Option<MessageRef>, StoreError>;
    /// What the message `at` on `output` shows: each alert's last notice, in
    /// the order they were posted.
    async fn shown(&self, output: &str, at: &MessageRef) -> Result<Vec<StoredNotice>, StoreError>;
    /// The fingerprints of the alerts the message `at` shows.
    async fn alerts_in(&self, at: &MessageRef) -> Result<Vec<String>, StoreError>;
}

/// A chat channel that shows alerts as messages edited as they change: one
/// alert, or several of one account that one poll decided together
/// (`engine::alert_view::deliver` decides which call a notice needs).
#[async_trait]
pub trait AlertMessages: Send + Sync {
    /// Posts one message showing `notices`; where it landed, if the
    /// platform said.
    async fn post(&self, notices: &[StoredNotice]) -> Result<Option<MessageRef>, SendError>;
    /// Redraws the message posted before so that it shows `notices`.
    async fn edit(&self, at: &MessageRef, notices: &[StoredNotice]) -> Result<(), SendError>;
    /// "Still firing", as a reply to the message.
    async fn reply(&self, at: &MessageRef, notices: &[StoredNotice]) -> Result<(), SendError>;
    /// Shows `chart` with the message, where the platform takes images.
    async fn chart(
        &self,
        _at: &MessageRef,
        _chart: &crate::domain::forecast::RunwayChart,
    ) -> Result<(), SendError> {
        Ok(())
    }
}

/// Somewhere notices go: the console, a webhook, a chat channel, a robot.
#[async_trait]
pub trait Notifier: Send + Sync {
    async fn send(&self, notice: &StoredNotice) -> Result<(), SendError>;

    /// How many notices decided together for one account one message may
    /// carry. Outputs that edit a message per alert keep 1; rate-limited
    /// robots group, so that ten resources expiring at once make one message.
    fn group_limit(&self) -> usize {
        1
    }

    /// Sends `notices` (at most `group_limit`, one account, one decision) as
    /// one message; delivered or failed together.
    async fn send_group(&self, notices: &[StoredNotice]) -> Result<(), SendError> {
        for n in notices {
            self.send(n).await?;
        }
        Ok(())
    }
}

impl StoredNotice {
    pub fn from_notice(
        n: &Notice,
        account: &Account,
        id: String,
        decided_at: DateTime<Utc>,
    ) -> StoredNotice {
        let a = &n.alert;
        StoredNotice {
            id,
            kind: n.kind,
            fingerprint: a.fingerprint.clone(),
            rule: a.key.rule,
            severity: a.severity,
            status: a.state,
            account: a.key.account.clone(),
            resource: a.key.resource.clone(),
            tier: a.key.tier.clone(),
            summary: a.summary.clone(),
            labels: account.labels.clone(),
            started_at: a.started_at,
            fired_at: a.fired_at,
            resolved_at: a.resolved_at,
            escalated_from: n.escalated_from.clone(),
            acknowledged_by: a.acknowledged.as_ref().map(|k| k.by.clone()),
            silenced_by: None,
            silenced_until: None,
            paged: None,
            decided_at,
        }
    }
}

/// The store's state counted for the operators' metrics, one query each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tallies {
    /// Open alerts: (rule, severity, state, how many); the state is
    /// `pending`, `firing`, or `acknowledged` for a firing one someone
    /// acknowledged.
    pub alerts: Vec<(String, String, String, u64)>,
    /// Notices waiting per output: (output, how many, when the oldest was queued).
    pub waiting: Vec<(String, u64, DateTime<Utc>)>,
}

/// One poll as the operators' metrics see it.
pub struct Polled<'a> {
    pub account: &'a Account,
    /// `None` when the account was read; else why not.
    pub failure: Option<FailureKind>,
    /// How long the poll took, from asking to recording.
    pub took: StdDuration,
    /// What was read, when it was.
    pub snapshot: Option<&'a Snapshot>,
    /// The account's forecast after this poll.
    pub view: Option<&'a crate::domain::forecast::AccountView>,
    pub last_success_at: Option<DateTime<Utc>>,
}

/// How one send (a notice, a page, a heartbeat) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    Delivered,
    /// Failed, to be tried again.
    Retrying,
    /// Held off by the platform's rate limit; not counted as an attempt.
    RateLimited,
    /// Failed for good.
    Failed,
}

impl Sent {
    pub fn as_str(self) -> &'static str {
        match self {
            Sent::Delivered => "delivered",
            Sent::Retrying => "retrying",
            Sent::RateLimited => "rate_limited",
            Sent::Failed => "failed",
        }
    }
}

/// What has come in from a chat platform already, so that a copy it sends
/// again (after a reconnection, or to another replica) is not acted on
/// twice, and where a feed of updates was read up to.
#[async_trait]
pub trait Receipts: Send + Sync {
    /// Records `key` from `source` as taken at `at`: `false` when it was
    /// taken before. Keys older than `keep` are forgotten on the way.
    async fn first_receipt(
        &self,
        source: &str,
        key: &str,
        at: DateTime<Utc>,
        keep: chrono::Duration,
    ) -> Result<bool, StoreError>;
    /// Where `source`'s feed was read up to, if anywhere.
    async fn cursor(&self, source: &str) -> Result<Option<i64>, StoreError>;
    /// Moves `source`'s cursor forward to `to` (never back).
    async fn advance_cursor(&self, source: &str, to: i64) -> Result<(), StoreError>;
}

/// A dead man's switch outside purser, told after each completed cycle
/// of polls; it raises the alarm when it stops hearing.
#[async_trait]
pub trait Heartbeat: Send + Sync {
    /// `blind`: the accounts that could not be read in this cycle.
    async fn beat(&self, blind: &[String]) -> Result<(), SendError>;
}

/// What purser counts of its own work, for the people who run it. The
/// labels it is given are bounded by the config (accounts, outputs,
/// providers), never by notices or requests.
pub trait Meter: Send + Sync {
    fn polled(&self, poll: &Polled<'_>);
    fn notices(&self, output: &str, result: Sent, count: usize);
    fn paged(&self, target: &str, result: Sent);
    fn cloud_call(&self, provider: &str, action: &str, ok: bool);
    fn heartbeat(&self, result: Sent);
    /// One escalator pass: what it read, and how long it took.
    fn escalator_pass(&self, read: PassRead, took: StdDuration);
}

/// What an escalator pass read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassRead {
    /// Every firing alert and open chain, whole.
    All,
    /// Only the alerts written since the last pass.
    Changes,
    /// The alerts written since, and every one's mark, which agreed with
    /// what was held.
    Checked,
}

impl PassRead {
    pub fn as_str(self) -> &'static str {
        match self {
            PassRead::All => "all",
            PassRead::Changes => "changes",
            PassRead::Checked => "checked",
        }
    }
}

/// Which alert occurrence or chain a row is (fingerprint and start), and
/// the number of its last write: an alert's change number, a chain's
/// version. Two equal marks are the same write of the same row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub fingerprint: String,
    pub started_at: DateTime<Utc>,
    pub written: i64,
}

/// Counts nothing: for pieces built without metrics (tools, tests).
pub struct NoMeter;

impl Meter for NoMeter {
    fn polled(&self, _: &Polled<'_>) {}
    fn notices(&self, _: &str, _: Sent, _: usize) {}
    fn paged(&self, _: &str, _: Sent) {}
    fn cloud_call(&self, _: &str, _: &str, _: bool) {}
    fn heartbeat(&self, _: Sent) {}
    fn escalator_pass(&self, _: PassRead, _: StdDuration) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_failure_keeps_its_kind() {
        let shared = |e: StoreError| StoreError::Shared(std::sync::Arc::new(e));
        let refused = shared(StoreError::NotLeader("replica b took over".into()));
        assert_eq!(refused.not_leader(), Some("replica b took over"));
        assert!(!refused.is_unreachable());
        let down = shared(StoreError::Unavailable("connection refused".into()));
        assert!(down.is_unreachable());
        assert_eq!(down.not_leader(), None);
        assert_eq!(down.to_string(), "store: connection refused");
        assert!(!shared(StoreError::Corrupt("bad row".into())).is_unreachable());
    }
}
