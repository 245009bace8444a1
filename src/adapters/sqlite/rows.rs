//! Between rows and the domain: rows read back into its types, notices
//! queued for each output, balances entered by hand.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{corrupt, from_ms, ms, opt_from_ms};
use crate::adapters::notice_at_ms;
use crate::adapters::stored_snapshot::{self, Inventories};
use crate::domain::alert::{Acknowledgement, Alert, AlertState, Notice};
use crate::domain::command::Matcher;
use crate::domain::model::{
    Account, AccountId, BalanceEntry, FailureKind, PollFailure, PollHealth, Snapshot,
};
use crate::domain::money::{Currency, Money};
use crate::domain::routing::Routing;
use crate::domain::rules::{AlertKey, RuleName, Severity};
use crate::domain::silence::Silence;
use crate::ports::{FailedNotice, Mark, StoreError, StoredNotice};
use crate::secret::redact;

/// A snapshot from its row's `body` and `digest`, with the resources and
/// orders of its `inventory` when that was read.
pub(super) fn snapshot_from_row(
    r: &sqlx::sqlite::SqliteRow,
    inventories: &mut Inventories,
) -> Result<Snapshot, StoreError> {
    let inventory = inventories.get(r.get("digest"), r.get("inventory"))?;
    stored_snapshot::join(r.get("body"), inventory)
}

/// An alert with the number of its last write.
pub(super) fn written_alert_from_row(
    r: &sqlx::sqlite::SqliteRow,
) -> Result<(i64, Alert), StoreError> {
    Ok((r.try_get("changed")?, alert_from_row(r)?))
}

/// A row's mark: `fingerprint`, `started_at` and the write number as `written`.
pub(super) fn mark_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<Mark, StoreError> {
    Ok(Mark {
        fingerprint: r.try_get("fingerprint")?,
        started_at: from_ms(r.try_get("started_at")?)?,
        written: r.try_get("written")?,
    })
}

pub(super) fn alert_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<Alert, StoreError> {
    let rule: String = r.get("rule");
    let severity: String = r.get("severity");
    let state: String = r.get("state");
    Ok(Alert {
        fingerprint: r.get("fingerprint"),
        key: AlertKey {
            rule: RuleName::parse(&rule).ok_or_else(|| corrupt(format!("unknown rule {rule}")))?,
            account: r.get("account"),
            resource: r.get("resource"),
            tier: r.get("tier"),
        },
        severity: Severity::parse(&severity)
            .ok_or_else(|| corrupt(format!("bad severity {severity}")))?,
        rank: u32::try_from(r.get::<i64, _>("rank")).map_err(corrupt)?,
        state: AlertState::parse(&state).ok_or_else(|| corrupt(format!("bad state {state}")))?,
        summary: r.get("summary"),
        started_at: from_ms(r.get("started_at"))?,
        fired_at: opt_from_ms(r.get("fired_at"))?,
        last_notified_at: opt_from_ms(r.get("last_notified_at"))?,
        resolved_at: opt_from_ms(r.get("resolved_at"))?,
        acknowledged: match (
            r.get::<Option<String>, _>("acked_by"),
            opt_from_ms(r.get("acked_at"))?,
        ) {
            (Some(by), Some(at)) => Some(Acknowledgement { by, at }),
            _ => None,
        },
    })
}

/// One outbox row per output for a notice, unique per (notice, output).
pub(super) async fn enqueue(
    tx: &mut sqlx::SqliteConnection,
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
        ms(n.alert.started_at),
        n.kind.as_str(),
        ms(decided_at)
    );
    let mut stored = StoredNotice::from_notice(n, account, notice_id, decided_at);
    if let Some(s) = silence {
        stored.silenced_by = Some(s.created_by.clone());
        stored.silenced_until = Some(s.ends_at);
    }
    for output in &outputs {
        queue_notice(tx, output, &stored).await?;
    }
    Ok(())
}

/// One outbox row: `notice` for `output`, due when it was decided; a row
/// already queued for the pair is left as it is.
pub(super) async fn queue_notice(
    tx: &mut sqlx::SqliteConnection,
    output: &str,
    notice: &StoredNotice,
) -> Result<(), StoreError> {
    let body = serde_json::to_string(&notice_at_ms(notice)).map_err(corrupt)?;
    let body = redact(&body);
    sqlx::query(
        "INSERT INTO outbox (notice_id, output, body, created_at, next_attempt_at, account)
         VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (notice_id, output) DO NOTHING",
    )
    .bind(&notice.id)
    .bind(output)
    .bind(body.as_ref())
    .bind(ms(notice.decided_at))
    .bind(ms(notice.decided_at))
    .bind(&notice.account)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

pub(super) fn silence_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<Silence, StoreError> {
    let matchers: String = r.get("matchers");
    Ok(Silence {
        id: u64::try_from(r.get::<i64, _>("id")).map_err(corrupt)?,
        matchers: Matcher::parse_list(&matchers).map_err(corrupt)?,
        starts_at: from_ms(r.get("starts_at"))?,
        ends_at: from_ms(r.get("ends_at"))?,
        created_by: r.get("created_by"),
        reason: r.get("reason"),
        ended_by: r.get("ended_by"),
    })
}

pub(super) fn bucket_kind(kind: crate::domain::model::BucketKind) -> &'static str {
    use crate::domain::model::BucketKind;
    match kind {
        BucketKind::Contract => "contract",
        BucketKind::Unallocated => "unallocated",
        BucketKind::Coupon => "coupon",
        BucketKind::Other => "other",
    }
}

pub(super) fn entry_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<BalanceEntry, StoreError> {
    use crate::domain::model::EnteredBucket;
    let corrupt = |e: String| StoreError::Corrupt(format!("balance entry: {e}"));
    let code: String = r.get("currency");
    let currency = Currency::from_code(&code).ok_or_else(|| corrupt(code.clone()))?;
    let amount: String = r.get("amount");
    let amount = amount
        .parse::<rust_decimal::Decimal>()
        .map_err(|e| corrupt(e.to_string()))?;
    let bucket = match (
        r.get::<Option<String>, _>("bucket_kind").as_deref(),
        r.get::<Option<String>, _>("bucket_name"),
    ) {
        (None, _) => None,
        (Some("contract"), Some(name)) => Some(EnteredBucket::Contract(name)),
        (Some("unallocated"), _) => Some(EnteredBucket::Unallocated),
        (Some(other), _) => return Err(corrupt(format!("unknown part {other:?}"))),
    };
    Ok(BalanceEntry {
        bucket,
        amount: Money::new(amount, currency),
        as_of: from_ms(r.get("as_of"))?,
        entered_by: r.get("entered_by"),
        entered_at: from_ms(r.get("entered_at"))?,
    })
}

pub(super) async fn health_in(
    conn: &mut sqlx::SqliteConnection,
    account: &AccountId,
) -> Result<PollHealth, StoreError> {
    let row = sqlx::query("SELECT * FROM poll_health WHERE account = ?")
        .bind(account.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    row.map_or_else(|| Ok(PollHealth::new()), |r| health_from_row(&r))
}

pub(super) fn health_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<PollHealth, StoreError> {
    Ok(PollHealth {
        last_success_at: opt_from_ms(r.get("last_success_at"))?,
        last_attempt_at: opt_from_ms(r.get("last_attempt_at"))?,
        last_error: match r.get::<Option<String>, _>("last_error") {
            None => None,
            Some(message) => {
                let kind: Option<String> = r.get("last_error_kind");
                Some(PollFailure {
                    // Rows from before kinds were kept: nothing says refused.
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
        consecutive_failures: u32::try_from(r.get::<i64, _>("consecutive_failures"))
            .map_err(corrupt)?,
    })
}

pub(super) fn failed_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<FailedNotice, StoreError> {
    Ok(FailedNotice {
        id: r.get("id"),
        output: r.get("output"),
        attempts: u32::try_from(r.get::<i64, _>("attempts")).map_err(corrupt)?,
        error: r.get::<Option<String>, _>("last_error").unwrap_or_default(),
        failed_at: from_ms(r.get("abandoned_at"))?,
        notice: serde_json::from_str(r.get::<&str, _>("body")).map_err(corrupt)?,
    })
}
