//! Between rows and the domain: rows read back into its types, JSON
//! columns both ways, notices queued for each output.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::PgRow;

use crate::adapters::notice_at_ms;
use crate::adapters::stored_snapshot::{self, Inventories};
use crate::domain::alert::{Acknowledgement, Alert, AlertState, Notice};
use crate::domain::command::Matcher;
use crate::domain::model::{Account, AccountId, FailureKind, PollFailure, PollHealth, Snapshot};
use crate::domain::routing::Routing;
use crate::domain::rules::{AlertKey, RuleName, Severity};
use crate::domain::silence::Silence;
use crate::ports::{Mark, StoreError, StoredNotice};
use crate::secret::redact;

pub(super) fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

pub(super) fn json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(corrupt)
}

pub(super) fn from_json<T: serde::de::DeserializeOwned>(
    r: &PgRow,
    column: &str,
) -> Result<T, StoreError> {
    let v: serde_json::Value = r.try_get(column)?;
    serde_json::from_value(v).map_err(corrupt)
}

/// A snapshot from its row's `body` and `digest`, with the resources and
/// orders of its `inventory` when that was read (both read as text).
pub(super) fn snapshot_from_row(
    r: &PgRow,
    inventories: &mut Inventories,
) -> Result<Snapshot, StoreError> {
    let inventory = inventories.get(r.try_get("digest")?, r.try_get("inventory")?)?;
    stored_snapshot::join(r.try_get("body")?, inventory)
}

pub(super) fn count(r: &PgRow, column: &str) -> Result<u32, StoreError> {
    u32::try_from(r.try_get::<i32, _>(column)?).map_err(corrupt)
}

/// An alert with the number of its last write.
pub(super) fn written_alert_from_row(r: &PgRow) -> Result<(i64, Alert), StoreError> {
    Ok((r.try_get("changed")?, alert_from_row(r)?))
}

/// A row's mark: `fingerprint`, `started_at` and the write number as `written`.
pub(super) fn mark_from_row(r: &PgRow) -> Result<Mark, StoreError> {
    Ok(Mark {
        fingerprint: r.try_get("fingerprint")?,
        started_at: r.try_get("started_at")?,
        written: r.try_get("written")?,
    })
}

pub(super) fn alert_from_row(r: &PgRow) -> Result<Alert, StoreError> {
    let rule: String = r.try_get("rule")?;
    let severity: String = r.try_get("severity")?;
    let state: String = r.try_get("state")?;
    Ok(Alert {
        fingerprint: r.try_get("fingerprint")?,
        key: AlertKey {
            rule: RuleName::parse(&rule).ok_or_else(|| corrupt(format!("unknown rule {rule}")))?,
            account: r.try_get("account")?,
            resource: r.try_get("resource")?,
            tier: r.try_get("tier")?,
        },
        severity: Severity::parse(&severity)
            .ok_or_else(|| corrupt(format!("bad severity {severity}")))?,
        rank: count(r, "rank")?,
        state: AlertState::parse(&state).ok_or_else(|| corrupt(format!("bad state {state}")))?,
        summary: r.try_get("summary")?,
        started_at: r.try_get("started_at")?,
        fired_at: r.try_get("fired_at")?,
        last_notified_at: r.try_get("last_notified_at")?,
        resolved_at: r.try_get("resolved_at")?,
        acknowledged: match (
            r.try_get::<Option<String>, _>("acked_by")?,
            r.try_get::<Option<DateTime<Utc>>, _>("acked_at")?,
        ) {
            (Some(by), Some(at)) => Some(Acknowledgement { by, at }),
            _ => None,
        },
    })
}

pub(super) fn silence_from_row(r: &PgRow) -> Result<Silence, StoreError> {
    let matchers: String = r.try_get("matchers")?;
    Ok(Silence {
        id: u64::try_from(r.try_get::<i64, _>("id")?).map_err(corrupt)?,
        matchers: Matcher::parse_list(&matchers).map_err(corrupt)?,
        starts_at: r.try_get("starts_at")?,
        ends_at: r.try_get("ends_at")?,
        created_by: r.try_get("created_by")?,
        reason: r.try_get("reason")?,
        ended_by: r.try_get("ended_by")?,
    })
}

/// One outbox row per output `routing` picks for a notice.
pub(super) async fn enqueue(
    tx: &mut sqlx::PgConnection,
    n: &Notice,
    account: &Account,
    decided_at: DateTime<Utc>,
    routing: &Routing,
    silence: Option<&Silence>,
) -> Result<(), StoreError> {
    let outputs = routing.outputs_for(account, &n.alert.key, n.alert.severity.as_str());
    let notice_id = format!(
        "{}-{}-{}-{}",
        n.alert.fingerprint,
        n.alert.started_at.timestamp_millis(),
        n.kind.as_str(),
        decided_at.timestamp_millis()
    );
    let mut stored = StoredNotice::from_notice(n, account, notice_id, decided_at);
    if let Some(s) = silence {
        stored.silenced_by = Some(s.created_by.clone());
        stored.silenced_until = Some(s.ends_at);
    }
    for output in &outputs {
        // A row already queued for the pair is left as it is.
        queue_notice(tx, output, &stored).await?;
    }
    Ok(())
}

/// Queues a notice already decided (an escalation step's) for `output`.
pub(super) async fn queue_notice(
    tx: &mut sqlx::PgConnection,
    output: &str,
    notice: &StoredNotice,
) -> Result<(), StoreError> {
    let stored = notice_at_ms(notice);
    sqlx::query(
        "INSERT INTO outbox (notice_id, output, body, created_at, next_attempt_at, account)
         VALUES ($1, $2, $3::jsonb, $4, $4, $5) ON CONFLICT (notice_id, output) DO NOTHING",
    )
    .bind(&stored.id)
    .bind(output)
    .bind(redact(&json(&stored)?).as_ref())
    .bind(stored.decided_at)
    .bind(&stored.account)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

pub(super) async fn health_in(
    conn: &mut sqlx::PgConnection,
    account: &AccountId,
) -> Result<PollHealth, StoreError> {
    let row = sqlx::query("SELECT * FROM poll_health WHERE account = $1")
        .bind(account.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    let Some(r) = row else {
        return Ok(PollHealth::new());
    };
    Ok(PollHealth {
        last_success_at: r.try_get("last_success_at")?,
        last_attempt_at: r.try_get("last_attempt_at")?,
        last_error: match r.try_get::<Option<String>, _>("last_error")? {
            None => None,
            Some(message) => {
                let kind: Option<String> = r.try_get("last_error_kind")?;
                Some(PollFailure {
                    kind: kind
                        .as_deref()
                        .map(|k| {
                            FailureKind::parse(k)
                                .ok_or_else(|| corrupt(format!("failure kind {k:?}")))
                        })
                        .transpose()?
                        .unwrap_or(FailureKind::Unreachable),
                    message,
                })
            }
        },
        consecutive_failures: count(&r, "consecutive_failures")?,
    })
}
