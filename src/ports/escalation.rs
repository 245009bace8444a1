//! Pages and escalations: what is kept of each, and the outside pagers and
//! direct messages they go out through.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{SendError, StoreError, StoredNotice};

/// What a page says, as decided; kept until delivered. One per recipient
/// (a person's direct message, or an outside pager's event).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PageMessage {
    /// Unique per occurrence, round, step, recipient and event: receivers
    /// (and the store) drop duplicates by it.
    pub id: String,
    pub fingerprint: String,
    pub started_at: DateTime<Utc>,
    pub account: String,
    pub rule: crate::domain::rules::RuleName,
    pub severity: crate::domain::rules::Severity,
    pub summary: String,
    pub raised_at: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
    /// The response target's deadline as people read it, in the calendar's zone.
    pub due_text: String,
    /// Who is paged, when a person is.
    pub person: Option<String>,
    /// Why them: "on call for ops", "secondary for ops", "named in the B chain".
    pub why: String,
    pub round: u32,
    pub event: PagerEvent,
    /// On an acknowledge event: who took it on.
    pub acked_by: Option<String>,
}

/// What an outside pager is told; a direct message is always a trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PagerEvent {
    Trigger,
    Acknowledge,
    Resolve,
}

impl PagerEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            PagerEvent::Trigger => "trigger",
            PagerEvent::Acknowledge => "acknowledge",
            PagerEvent::Resolve => "resolve",
        }
    }
}

/// A page waiting to go to one recipient: `dm:<platform>:<user id>` or
/// `pager:<name>`.
#[derive(Debug, Clone)]
pub struct PageItem {
    pub id: i64,
    pub to: String,
    pub attempts: u32,
    pub page: PageMessage,
}

/// One escalation's change, written in one transaction guarded by the
/// version read: the new state, the pages it sends and the notices that
/// show each step in the alert's channels.
#[derive(Debug, Clone)]
pub struct EscalationWrite<'a> {
    pub escalation: &'a crate::domain::escalation::Escalation,
    /// `None` for a new escalation.
    pub read_version: Option<i64>,
    /// When it was decided: its pages are due from then.
    pub at: DateTime<Utc>,
    pub pages: Vec<(String, PageMessage)>,
    /// (output, notice).
    pub notices: Vec<(String, StoredNotice)>,
    /// An acknowledged alert still firing escalates again: its
    /// acknowledgement is cleared, so that the next one can be given.
    pub reopen: bool,
}

/// Escalations and their pages.
#[async_trait]
pub trait Escalations: Send + Sync {
    /// Those not resolved.
    async fn open_escalations(
        &self,
    ) -> Result<Vec<crate::domain::escalation::Escalation>, StoreError>;
    /// The mark of each one not resolved: its version is the write number.
    async fn open_marks(&self) -> Result<Vec<super::Mark>, StoreError>;
    /// Those raised at or after `since`, for the SLA report.
    async fn escalations_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<crate::domain::escalation::Escalation>, StoreError>;
    /// `false` when someone else wrote it first (or it already exists).
    async fn write_escalation(&self, w: &EscalationWrite<'_>) -> Result<bool, StoreError>;
    /// When the alert occurrence resolved, if it did.
    async fn resolved_at(
        &self,
        fingerprint: &str,
        started_at: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// The pagers an occurrence triggered, each with its first trigger.
    async fn triggered_pagers(
        &self,
        fingerprint: &str,
        started_at: DateTime<Utc>,
    ) -> Result<Vec<(String, PageMessage)>, StoreError>;
    async fn due_pages(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<PageItem>, StoreError>;
    async fn next_page_due(&self) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// As `Store::sending`, for one page: `true` when it was cut off mid-send before.
    async fn paging(&self, id: i64, at: DateTime<Utc>) -> Result<bool, StoreError>;
    async fn page_delivered(&self, id: i64, at: DateTime<Utc>) -> Result<(), StoreError>;
    async fn page_failed(
        &self,
        id: i64,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError>;
    /// As `Store::postpone`, for one page.
    async fn page_postponed(
        &self,
        id: i64,
        why: &str,
        until: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Stores an on-call override made in chat, with its audit entry, in one
    /// transaction; the override as stored (its id set).
    async fn add_override(
        &self,
        o: &crate::domain::oncall::Override,
        reason: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<crate::domain::oncall::Override, StoreError>;
    /// Overrides made in chat that end after `after`, oldest first.
    async fn overrides(
        &self,
        after: DateTime<Utc>,
    ) -> Result<Vec<crate::domain::oncall::Override>, StoreError>;
}

/// A chat platform's direct messages: a page with an Acknowledge button.
#[async_trait]
pub trait DirectMessages: Send + Sync {
    async fn page(&self, user: &str, page: &PageMessage) -> Result<(), SendError>;
}

/// An outside pager (an incident service's events API).
#[async_trait]
pub trait OutsidePager: Send + Sync {
    async fn send(&self, page: &PageMessage) -> Result<(), SendError>;
}
