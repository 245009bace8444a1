//! Requests for money and their approvals as the store keeps them: written
//! once, stepped under a lease, shown as cards.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{MessageRef, SendError, StoreError};
use crate::domain::model::AccountId;

/// A request as asked, before the store numbers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRequest {
    pub account: AccountId,
    pub action: crate::domain::request::Action,
    pub reason: Option<String>,
    pub cost: Option<crate::domain::money::Money>,
    pub balance: Option<crate::domain::money::Money>,
    pub tier: crate::domain::request::Tier,
    pub requested_by: String,
    pub requested_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub origin: Option<crate::domain::request::Via>,
}

/// What a guarded write found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// Written; the request as it now is.
    Done(crate::domain::request::Request),
    /// The request changed since it was read (another decision, another
    /// executor): nothing was written; here it is as it now is.
    Stale(crate::domain::request::Request),
    NotFound,
    /// A move into executing while another request being carried out on the
    /// account changes the same thing (`on`): it waits its turn.
    Busy {
        by: crate::domain::request::RequestId,
        on: String,
    },
}

/// Who may carry out a request now: the lease on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lease {
    /// The asker holds it until the time it asked for.
    Held,
    /// Another runner holds it and renewed it in time.
    HeldBy {
        holder: String,
        until: DateTime<Utc>,
    },
}

/// One move of a request from a state to the next.
#[derive(Debug, Clone, Copy)]
pub struct Step<'a> {
    pub from: crate::domain::request::State,
    pub to: crate::domain::request::State,
    pub actor: &'a str,
    pub at: DateTime<Utc>,
    pub progress: Option<&'a serde_json::Value>,
    pub audit: &'a [crate::domain::audit::NewEntry],
}

impl<'a> Step<'a> {
    pub fn new(
        from: crate::domain::request::State,
        to: crate::domain::request::State,
        actor: &'a str,
        at: DateTime<Utc>,
    ) -> Step<'a> {
        Step {
            from,
            to,
            actor,
            at,
            progress: None,
            audit: &[],
        }
    }
}

/// Requests, their decisions and the audit log. Every method is one
/// transaction, and every change to a request appends its audit entries in
/// that transaction.
#[async_trait]
pub trait Requests: Send + Sync {
    /// Numbers and stores a request with its idempotency key, and audits it.
    async fn open_request(
        &self,
        new: &NewRequest,
    ) -> Result<crate::domain::request::Request, StoreError>;
    async fn request(
        &self,
        id: crate::domain::request::RequestId,
    ) -> Result<Option<crate::domain::request::Request>, StoreError>;
    /// Requests still open (or all), newest first, at most `limit`.
    async fn requests(
        &self,
        open_only: bool,
        limit: u32,
    ) -> Result<Vec<crate::domain::request::Request>, StoreError>;
    /// Requests asked for at or after `since` (for caps), oldest first.
    async fn requests_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<crate::domain::request::Request>, StoreError>;
    /// Records `decision` on the request at `version`, moving it to `then`
    /// when the decision settles it. Guarded by the version read.
    async fn record_decision(
        &self,
        id: crate::domain::request::RequestId,
        version: u64,
        decision: &crate::domain::request::Decision,
        then: Option<crate::domain::request::State>,
    ) -> Result<Written, StoreError>;
    /// Makes `step` (an arrow of the state machine), recording its progress
    /// when given, and appends its audit entries with the state change.
    /// Guarded by `step.from`: of two racing executors one moves it. A move
    /// into executing is `Busy` while another request on the account that
    /// changes the same thing is executing or unclear.
    async fn transition(
        &self,
        id: crate::domain::request::RequestId,
        step: Step<'_>,
    ) -> Result<Written, StoreError>;
    /// What execution has done so far (the cloud's order ids, the outcome
    /// of a call), kept so that a restart resumes instead of repeating.
    async fn progress(
        &self,
        id: crate::domain::request::RequestId,
    ) -> Result<Option<serde_json::Value>, StoreError>;
    /// Records progress with its audit entries, guarded by the version
    /// read: of two executors working on one request, one records.
    async fn record_progress(
        &self,
        id: crate::domain::request::RequestId,
        version: u64,
        progress: &serde_json::Value,
        audit: &[crate::domain::audit::NewEntry],
    ) -> Result<Written, StoreError>;
    /// Takes the lease on carrying out `id` for `holder` until `until`, or
    /// renews it: when nobody holds it, the last holder's ran out by `now`,
    /// or `holder` has it already. Changes nothing else (not the version),
    /// so a heartbeat never makes the holder's own writes stale.
    async fn hold(
        &self,
        id: crate::domain::request::RequestId,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Lease, StoreError>;
    /// Gives the lease up, if `holder` has it.
    async fn release(
        &self,
        id: crate::domain::request::RequestId,
        holder: &str,
    ) -> Result<(), StoreError>;
    /// Appends entries that belong to no state change (a policy refusal).
    async fn audit(&self, entries: &[crate::domain::audit::NewEntry]) -> Result<(), StoreError>;
    /// The log from `since` (all of it when `None`), in order.
    async fn audit_log(
        &self,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<crate::domain::audit::Entry>, StoreError>;
    /// The count and last hash, kept apart from the entries.
    async fn audit_head(&self) -> Result<Option<(u64, String)>, StoreError>;
}

/// Checks the code a person gives with an approval that needs a second factor.
pub trait SecondFactors: Send + Sync {
    fn check(
        &self,
        person: &str,
        code: Option<&str>,
        now: DateTime<Utc>,
    ) -> crate::domain::request::SecondFactor;
}

/// Where a request's card was posted on one output, and what it shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestCard {
    pub output: String,
    pub at: MessageRef,
    /// The request's version and state the message shows.
    pub version: u64,
    pub state: crate::domain::request::State,
}

/// Chat outputs remember the request cards they posted here.
#[async_trait]
pub trait RequestCards: Send + Sync {
    /// The cards posted for `ids`, on every output.
    async fn cards(
        &self,
        ids: &[crate::domain::request::RequestId],
    ) -> Result<Vec<(crate::domain::request::RequestId, RequestCard)>, StoreError>;
    /// Remembers (or updates) the card of `id` on `card.output`.
    async fn record_card(
        &self,
        id: crate::domain::request::RequestId,
        card: &RequestCard,
    ) -> Result<(), StoreError>;
}

/// A chat channel where requests are shown to the people who decide them:
/// a card with Approve and Deny buttons, edited as the request moves, and a
/// reply in its thread when its state changes (so that an expiry is heard).
#[async_trait]
pub trait RequestMessages: Send + Sync {
    async fn post_request(
        &self,
        request: &crate::domain::request::Request,
    ) -> Result<Option<MessageRef>, SendError>;
    async fn edit_request(
        &self,
        at: &MessageRef,
        request: &crate::domain::request::Request,
    ) -> Result<(), SendError>;
    async fn reply_request(&self, at: &MessageRef, text: &str) -> Result<(), SendError>;
}
