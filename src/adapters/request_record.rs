//! What both stores keep of a request and write to the audit log for it,
//! decided once: the stored body, the entries each write appends, and when
//! a decision read at one version is stale. The stores differ only in SQL.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::audit::{Event, NewEntry};
use crate::domain::money::Money;
use crate::domain::request::{Action, Decision, Request, RequestId, State, Tier, Verdict, Via};
use crate::ports::{NewRequest, StoreError};

/// The parts of a request that never change once asked, as one document
/// (JSON on SQLite, jsonb on PostgreSQL: `store copy` moves it as it is).
#[derive(Serialize, Deserialize)]
pub(crate) struct Body {
    pub action: Action,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance: Option<Money>,
    pub tier: Tier,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Via>,
}

impl Body {
    pub fn of(new: &NewRequest) -> Body {
        Body {
            action: new.action.clone(),
            reason: new.reason.clone(),
            cost: new.cost,
            balance: new.balance,
            tier: new.tier.clone(),
            origin: new.origin.clone(),
        }
    }
}

/// The entry that opens a request's trail.
pub(crate) fn requested(new: &NewRequest, id: RequestId, key: &str) -> NewEntry {
    let detail = serde_json::json!({
        "account": new.account.as_str(),
        "action": &new.action,
        "describe": new.action.describe(),
        "reason": &new.reason,
        "cost": new.cost.map(|c| c.to_string()),
        "balance": new.balance.map(|b| b.to_string()),
        "tier": &new.tier,
        "expires_at": new.expires_at.to_rfc3339(),
        "key": key,
        "origin": &new.origin,
    });
    NewEntry::new(
        new.requested_at,
        &new.requested_by,
        Event::Requested,
        Some(id),
        detail,
    )
}

pub(crate) fn state_entry(
    id: RequestId,
    actor: &str,
    at: DateTime<Utc>,
    from: State,
    to: State,
) -> NewEntry {
    NewEntry::new(
        at,
        actor,
        Event::State,
        Some(id),
        serde_json::json!({"from": from.as_str(), "to": to.as_str()}),
    )
}

/// Whether `decision`, made on the request read at `version`, must be read
/// again instead of written: the request moved since, this person decided
/// already, or it cannot go where the decision takes it.
pub(crate) fn stale(
    current: &Request,
    version: u64,
    decision: &Decision,
    then: Option<State>,
) -> bool {
    current.version != version
        || current.decisions.iter().any(|d| d.by == decision.by)
        || then.is_some_and(|to| !current.state.may_become(to))
}

/// The entries a decision appends: the verdict, and the move it makes.
pub(crate) fn decision_entries(
    current: &Request,
    decision: &Decision,
    then: Option<State>,
) -> Result<Vec<NewEntry>, StoreError> {
    let event = match decision.verdict {
        Verdict::Approve => Event::Approved,
        Verdict::Deny => Event::Denied,
    };
    let mut entries = vec![NewEntry::new(
        decision.at,
        &decision.by,
        event,
        Some(current.id),
        serde_json::to_value(decision).map_err(|e| StoreError::Corrupt(e.to_string()))?,
    )];
    if let Some(to) = then {
        entries.push(state_entry(
            current.id,
            &decision.by,
            decision.at,
            current.state,
            to,
        ));
    }
    Ok(entries)
}
