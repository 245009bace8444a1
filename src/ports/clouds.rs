//! What purser asks of a cloud: reading an account, and the calls that
//! change it, each one recorded before it is made and read back when its
//! answer is lost.

use std::time::Duration as StdDuration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::model::{Account, FailureKind, PollFailure, Snapshot};

/// Why a provider could not be read. Adapters classify; the engine decides what
/// to do (nothing here says which cloud it was).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    #[error("the credentials were refused: {0}")]
    Unauthorized(String),
    #[error("throttled by the provider{}", retry_after.map(|d| format!(", retry after {}s", d.as_secs())).unwrap_or_default())]
    RateLimited { retry_after: Option<StdDuration> },
    #[error("the provider refused the request: {code}: {message}")]
    Rejected { code: String, message: String },
    #[error("the provider's answer could not be understood: {0}")]
    Malformed(String),
    #[error("could not reach the provider: {0}")]
    Transport(String),
    #[error("no answer within {0:?}")]
    Timeout(StdDuration),
}

impl ProviderError {
    /// The failure as the rules see it.
    pub fn failure(&self) -> PollFailure {
        let kind = match self {
            ProviderError::Unauthorized(_) => FailureKind::Refused,
            ProviderError::Rejected { .. } => FailureKind::Rejected,
            ProviderError::Malformed(_) => FailureKind::Malformed,
            ProviderError::RateLimited { .. }
            | ProviderError::Transport(_)
            | ProviderError::Timeout(_) => FailureKind::Unreachable,
        };
        PollFailure {
            kind,
            message: self.to_string(),
        }
    }
}

/// Reads one cloud account. Read-only here; actions are a separate port.
#[async_trait]
pub trait Provider: Send + Sync {
    async fn poll(&self, account: &Account) -> Result<Snapshot, ProviderError>;
}

/// One call to a cloud that carrying out a request is made of. The executor
/// stores it before making it, so that after a crash it knows what may have
/// happened.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CloudCall {
    /// The cloud's name for the call, for the audit log.
    pub name: String,
    /// What the adapter needs to make the call and to read back its effect,
    /// including what it read before (an expiry to compare with).
    pub params: serde_json::Value,
    /// Making it twice is harmless: it carries an idempotency token, or the
    /// cloud refuses a repeat. When not, an unknown outcome is read back and
    /// never repeated blind.
    pub repeatable: bool,
}

/// What a cloud answered to a call.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CallAnswer {
    /// The cloud's id for the call, for its support desk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// `OK`, or the cloud's code when a repeat was refused as already done.
    pub code: String,
    /// What later calls need (order ids) and what the receipt keeps.
    pub result: serde_json::Value,
    /// What the call made at the cloud that is this request's alone (the
    /// order ids it created or paid): another request's read-back never
    /// takes them for its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub effects: Vec<String>,
}

/// A call whose answer was lost, to be read back from the cloud.
#[derive(Debug, Clone, Copy)]
pub struct LostCall<'a> {
    pub call: &'a CloudCall,
    /// The request's idempotency key.
    pub key: &'a str,
    /// When the call was recorded, just before it was sent.
    pub since: DateTime<Utc>,
    /// What other requests on the account hold as their calls' effects:
    /// never this call's.
    pub claimed: &'a [String],
}

/// What an action needs next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextCall {
    Call(CloudCall),
    /// Nothing more: the receipt, as a line for people and as the cloud's
    /// details (order ids, new expiry dates) for the audit log.
    Done {
        summary: String,
        details: serde_json::Value,
    },
    /// No API does this: what a person does in the console instead.
    ByHand(String),
}

/// What reading back a call whose answer was lost found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadBack {
    Happened(CallAnswer),
    /// The cloud shows no effect of it: calling it is safe.
    NotHappened,
    /// Not yet visible either way (the cloud is still working on it).
    Unknown(String),
    /// The cloud shows something that may be the call's effect but cannot
    /// be tied to it (an order for more than was asked, two that could be
    /// it, an expiry moved by another amount): a person must look.
    Unclear(String),
}

/// Why a call to a cloud did not give an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    /// The cloud said no (insufficient balance, an order no longer payable):
    /// nothing happened.
    #[error("{code}: {message}")]
    Refused { code: String, message: String },
    /// No answer: it may have happened or not.
    #[error("no answer, the outcome is unknown: {0}")]
    Unknown(String),
    /// Nothing was sent, or the call was refused before it counted (a key
    /// refused, throttling that outlasted the retries).
    #[error(transparent)]
    NotSent(ProviderError),
}

/// Changes on one cloud account: renewals, order payments, auto-renew flags.
/// The adapter only translates; the executor decides what is retried.
#[async_trait]
pub trait Actions: Send + Sync {
    /// What `action` would cost, from the cloud's price inquiry where it
    /// has one (`None`: it cannot tell).
    async fn quote(
        &self,
        _account: &Account,
        _action: &crate::domain::request::Action,
    ) -> Result<Option<crate::domain::money::Money>, ProviderError> {
        Ok(None)
    }
    /// The coupons and discounts the cloud offers on `order` (`None`: it
    /// does not list them, and checks what a payment names itself).
    async fn offers(
        &self,
        _account: &Account,
        _order: &crate::domain::model::ExternalId,
    ) -> Result<Option<Vec<crate::domain::policy::Offer>>, ProviderError> {
        Ok(None)
    }
    /// What the cloud's ledger last charged for renewing `resource` (`None`:
    /// no such charge found, or no ledger to read it from).
    async fn last_renewal(
        &self,
        _account: &Account,
        _resource: &crate::domain::model::Resource,
    ) -> Result<Option<crate::domain::model::Charge>, ProviderError> {
        Ok(None)
    }
    /// The next call `action` needs, given the calls made so far with their
    /// answers (reads the cloud when it must: a product code, an expiry).
    async fn next(
        &self,
        account: &Account,
        action: &crate::domain::request::Action,
        done: &[(CloudCall, CallAnswer)],
    ) -> Result<NextCall, ProviderError>;
    /// Makes `call`; `key` is the request's idempotency key.
    async fn call(
        &self,
        account: &Account,
        call: &CloudCall,
        key: &str,
    ) -> Result<CallAnswer, ActionError>;
    /// Whether `lost.call` took effect: only what the cloud shows tied to
    /// this call (its token, the resources it names) counts as its effect,
    /// and never what `lost.claimed` holds.
    async fn read_back(
        &self,
        account: &Account,
        lost: LostCall<'_>,
    ) -> Result<ReadBack, ProviderError>;
}
