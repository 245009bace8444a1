//! Requests, decisions and the audit log on SQLite. Every write runs under
//! `BEGIN IMMEDIATE`, so writers queue; each is guarded by the version or
//! state it read, and appends its audit entries in the same transaction.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{Row, Sqlite, Transaction};

use super::{SqliteStore, corrupt, from_ms, ms};
use crate::adapters::request_record::{self as record, Body};
use crate::domain::audit::{self, Entry, NewEntry};
use crate::domain::model::AccountId;
use crate::domain::request::{Decision, Request, RequestId, State, idempotency_key};
use crate::ports::{Lease, NewRequest, Requests, Step, StoreError, Written};

pub(super) type Tx = Transaction<'static, Sqlite>;

async fn load(tx: &mut Tx, id: RequestId) -> Result<Option<Request>, StoreError> {
    let row = sqlx::query("SELECT * FROM requests WHERE id = ?")
        .bind(id.0 as i64)
        .fetch_optional(&mut **tx)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let mut r = from_row(&row)?;
    r.decisions = decisions(tx, id).await?;
    Ok(Some(r))
}

async fn load_all(tx: &mut Tx, ids: Vec<i64>) -> Result<Vec<Request>, StoreError> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let id = RequestId(u64::try_from(id).map_err(corrupt)?);
        if let Some(r) = load(tx, id).await? {
            out.push(r);
        }
    }
    Ok(out)
}

/// Another request on `r`'s account, executing or unclear, that changes
/// something `r` changes: its id and the thing.
async fn busy_with(tx: &mut Tx, r: &Request) -> Result<Option<(RequestId, String)>, StoreError> {
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM requests WHERE account = ? AND state IN (?, ?) AND id != ? ORDER BY id",
    )
    .bind(r.account.as_str())
    .bind(State::Executing.as_str())
    .bind(State::Unclear.as_str())
    .bind(r.id.0 as i64)
    .fetch_all(&mut **tx)
    .await?;
    for other in load_all(tx, ids).await? {
        if let Some(on) = r.action.shares_with(&other.action) {
            return Ok(Some((other.id, on.to_string())));
        }
    }
    Ok(None)
}

/// The request just written, within the writing transaction.
async fn reload(tx: &mut Tx, id: RequestId) -> Result<Request, StoreError> {
    load(tx, id)
        .await?
        .ok_or_else(|| corrupt("a request vanished while being written"))
}

async fn decisions(tx: &mut Tx, id: RequestId) -> Result<Vec<Decision>, StoreError> {
    let rows = sqlx::query("SELECT body FROM decisions WHERE request = ? ORDER BY rowid")
        .bind(id.0 as i64)
        .fetch_all(&mut **tx)
        .await?;
    rows.iter()
        .map(|r| serde_json::from_str(r.get::<&str, _>("body")).map_err(corrupt))
        .collect()
}

fn from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Request, StoreError> {
    let body: Body = serde_json::from_str(row.get::<&str, _>("body")).map_err(corrupt)?;
    let state: String = row.get("state");
    let account: String = row.get("account");
    Ok(Request {
        id: RequestId(u64::try_from(row.get::<i64, _>("id")).map_err(corrupt)?),
        account: AccountId::parse(&account).map_err(corrupt)?,
        action: body.action,
        reason: body.reason,
        cost: body.cost,
        balance: body.balance,
        tier: body.tier,
        requested_by: row.get("requested_by"),
        requested_at: from_ms(row.get("requested_at"))?,
        expires_at: from_ms(row.get("expires_at"))?,
        state: State::parse(&state).ok_or_else(|| corrupt(format!("unknown state {state}")))?,
        decisions: Vec::new(),
        key: row.get("idem_key"),
        origin: body.origin,
        version: u64::try_from(row.get::<i64, _>("version")).map_err(corrupt)?,
    })
}

/// Seals and appends `entries` after the log's head, and moves the head.
pub(super) async fn append(tx: &mut Tx, entries: &[NewEntry]) -> Result<(), StoreError> {
    if entries.is_empty() {
        return Ok(());
    }
    let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
        .fetch_optional(&mut **tx)
        .await?;
    let mut last: Option<(u64, String)> = match head {
        Some(r) => Some((
            u64::try_from(r.get::<i64, _>("seq")).map_err(corrupt)?,
            r.get("hash"),
        )),
        None => None,
    };
    for new in entries {
        // Cleaned before it is sealed: an echoed secret never enters the
        // append-only log, and the hash holds what is kept.
        let new = NewEntry {
            detail: crate::secret::redact(&new.detail).into_owned(),
            ..new.clone()
        };
        let e = audit::seal(last.as_ref().map(|(s, h)| (*s, h.as_str())), new);
        sqlx::query(
            "INSERT INTO audit_log (seq, at, actor, event, request, detail, prev, hash)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(e.seq as i64)
        .bind(ms(e.at))
        .bind(&e.actor)
        .bind(&e.event)
        .bind(e.request.map(|r| r.0 as i64))
        .bind(&e.detail)
        .bind(&e.prev)
        .bind(&e.hash)
        .execute(&mut **tx)
        .await?;
        last = Some((e.seq, e.hash));
    }
    if let Some((seq, hash)) = last {
        sqlx::query(
            "INSERT INTO audit_head (id, seq, hash) VALUES (1, ?, ?)
             ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
        )
        .bind(seq as i64)
        .bind(hash)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

impl SqliteStore {
    async fn write(&self) -> Result<Tx, StoreError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }
}

#[async_trait]
impl Requests for SqliteStore {
    async fn open_request(&self, new: &NewRequest) -> Result<Request, StoreError> {
        let mut tx = self.write().await?;
        let body = Body::of(new);
        let body = serde_json::to_string(&body).map_err(corrupt)?;
        // The key needs the id; a placeholder unique to this row holds the
        // column until it is known, inside the same transaction.
        let placeholder = format!("pending-{}", ms(new.requested_at));
        let id = sqlx::query(
            "INSERT INTO requests (account, kind, state, requested_by, requested_at, expires_at,
                                   idem_key, body, updated_at)
             VALUES (?, ?, 'requested', ?, ?, ?, ?, ?, ?)",
        )
        .bind(new.account.as_str())
        .bind(new.action.kind().as_str())
        .bind(&new.requested_by)
        .bind(ms(new.requested_at))
        .bind(ms(new.expires_at))
        .bind(&placeholder)
        .bind(&body)
        .bind(ms(new.requested_at))
        .execute(&mut *tx)
        .await?
        .last_insert_rowid();
        let id = RequestId(u64::try_from(id).map_err(corrupt)?);
        let key = idempotency_key(id, &new.account, new.requested_at, &new.requested_by);
        sqlx::query("UPDATE requests SET idem_key = ? WHERE id = ?")
            .bind(&key)
            .bind(id.0 as i64)
            .execute(&mut *tx)
            .await?;
        let request = reload(&mut tx, id).await?;
        append(&mut tx, &[record::requested(new, id, &key)]).await?;
        tx.commit().await?;
        Ok(request)
    }

    async fn request(&self, id: RequestId) -> Result<Option<Request>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let r = load(&mut tx, id).await?;
        tx.commit().await?;
        Ok(r)
    }

    async fn requests(&self, open_only: bool, limit: u32) -> Result<Vec<Request>, StoreError> {
        let sql = if open_only {
            "SELECT id FROM requests
             WHERE state IN ('requested', 'approved', 'executing', 'awaiting_payment')
             ORDER BY id DESC LIMIT ?"
        } else {
            "SELECT id FROM requests ORDER BY id DESC LIMIT ?"
        };
        let mut tx = self.pool.begin().await?;
        let ids: Vec<i64> = sqlx::query_scalar(sql)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
        let out = load_all(&mut tx, ids).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn requests_since(&self, since: DateTime<Utc>) -> Result<Vec<Request>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let ids: Vec<i64> =
            sqlx::query_scalar("SELECT id FROM requests WHERE requested_at >= ? ORDER BY id")
                .bind(ms(since))
                .fetch_all(&mut *tx)
                .await?;
        let out = load_all(&mut tx, ids).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn record_decision(
        &self,
        id: RequestId,
        version: u64,
        decision: &Decision,
        then: Option<State>,
    ) -> Result<Written, StoreError> {
        let mut tx = self.write().await?;
        let Some(current) = load(&mut tx, id).await? else {
            return Ok(Written::NotFound);
        };
        if record::stale(&current, version, decision, then) {
            return Ok(Written::Stale(current));
        }
        sqlx::query("INSERT INTO decisions (request, by_name, body) VALUES (?, ?, ?)")
            .bind(id.0 as i64)
            .bind(&decision.by)
            .bind(serde_json::to_string(decision).map_err(corrupt)?)
            .execute(&mut *tx)
            .await?;
        let to = then.unwrap_or(current.state);
        sqlx::query(
            "UPDATE requests SET version = version + 1, state = ?, updated_at = ? WHERE id = ?",
        )
        .bind(to.as_str())
        .bind(ms(decision.at))
        .bind(id.0 as i64)
        .execute(&mut *tx)
        .await?;
        let entries = record::decision_entries(&current, decision, then)?;
        append(&mut tx, &entries).await?;
        let after = reload(&mut tx, id).await?;
        tx.commit().await?;
        Ok(Written::Done(after))
    }

    async fn transition(&self, id: RequestId, step: Step<'_>) -> Result<Written, StoreError> {
        let Step {
            from,
            to,
            actor,
            at,
            progress,
            audit,
        } = step;
        if !from.may_become(to) {
            return Err(corrupt(format!("a request cannot go from {from} to {to}")));
        }
        let mut tx = self.write().await?;
        let Some(current) = load(&mut tx, id).await? else {
            return Ok(Written::NotFound);
        };
        if current.state != from {
            return Ok(Written::Stale(current));
        }
        if to == State::Executing
            && let Some((by, on)) = busy_with(&mut tx, &current).await?
        {
            return Ok(Written::Busy { by, on });
        }
        let progress = progress
            .map(serde_json::to_string)
            .transpose()
            .map_err(corrupt)?
            .map(|p| crate::secret::redact(&p).into_owned());
        sqlx::query(
            "UPDATE requests SET state = ?, version = version + 1, updated_at = ?,
                                 progress = COALESCE(?, progress)
             WHERE id = ? AND state = ?",
        )
        .bind(to.as_str())
        .bind(ms(at))
        .bind(progress)
        .bind(id.0 as i64)
        .bind(from.as_str())
        .execute(&mut *tx)
        .await?;
        let mut entries = vec![record::state_entry(id, actor, at, from, to)];
        entries.extend_from_slice(audit);
        append(&mut tx, &entries).await?;
        let after = reload(&mut tx, id).await?;
        tx.commit().await?;
        Ok(Written::Done(after))
    }

    async fn progress(&self, id: RequestId) -> Result<Option<serde_json::Value>, StoreError> {
        let p: Option<Option<String>> =
            sqlx::query_scalar("SELECT progress FROM requests WHERE id = ?")
                .bind(id.0 as i64)
                .fetch_optional(&self.pool)
                .await?;
        p.flatten()
            .map(|t| serde_json::from_str(&t).map_err(corrupt))
            .transpose()
    }

    async fn record_progress(
        &self,
        id: RequestId,
        version: u64,
        progress: &serde_json::Value,
        audit: &[NewEntry],
    ) -> Result<Written, StoreError> {
        let mut tx = self.write().await?;
        let Some(current) = load(&mut tx, id).await? else {
            return Ok(Written::NotFound);
        };
        if current.version != version {
            return Ok(Written::Stale(current));
        }
        sqlx::query("UPDATE requests SET progress = ?, version = version + 1 WHERE id = ?")
            .bind(
                crate::secret::redact(&serde_json::to_string(progress).map_err(corrupt)?).as_ref(),
            )
            .bind(id.0 as i64)
            .execute(&mut *tx)
            .await?;
        append(&mut tx, audit).await?;
        let after = reload(&mut tx, id).await?;
        tx.commit().await?;
        Ok(Written::Done(after))
    }

    async fn hold(
        &self,
        id: RequestId,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Lease, StoreError> {
        let mut tx = self.write().await?;
        let taken = sqlx::query(
            "UPDATE requests SET lease_holder = ?, lease_until = ?
             WHERE id = ? AND (lease_holder IS NULL OR lease_holder = ? OR lease_until <= ?)",
        )
        .bind(holder)
        .bind(ms(until))
        .bind(id.0 as i64)
        .bind(holder)
        .bind(ms(now))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let lease = if taken == 1 {
            Lease::Held
        } else {
            let row = sqlx::query("SELECT lease_holder, lease_until FROM requests WHERE id = ?")
                .bind(id.0 as i64)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| corrupt(format!("{id} is not stored")))?;
            Lease::HeldBy {
                holder: row
                    .get::<Option<String>, _>("lease_holder")
                    .unwrap_or_default(),
                until: from_ms(row.get::<Option<i64>, _>("lease_until").unwrap_or(0))?,
            }
        };
        tx.commit().await?;
        Ok(lease)
    }

    async fn release(&self, id: RequestId, holder: &str) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        sqlx::query(
            "UPDATE requests SET lease_holder = NULL, lease_until = NULL
             WHERE id = ? AND lease_holder = ?",
        )
        .bind(id.0 as i64)
        .bind(holder)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn audit(&self, entries: &[NewEntry]) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        append(&mut tx, entries).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn audit_log(&self, since: Option<DateTime<Utc>>) -> Result<Vec<Entry>, StoreError> {
        let rows = match since {
            Some(t) => {
                sqlx::query("SELECT * FROM audit_log WHERE at >= ? ORDER BY seq")
                    .bind(ms(t))
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query("SELECT * FROM audit_log ORDER BY seq")
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter()
            .map(|r| {
                let request: Option<i64> = r.get("request");
                Ok(Entry {
                    seq: u64::try_from(r.get::<i64, _>("seq")).map_err(corrupt)?,
                    at: from_ms(r.get("at"))?,
                    actor: r.get("actor"),
                    event: r.get("event"),
                    request: request
                        .map(|v| u64::try_from(v).map(RequestId))
                        .transpose()
                        .map_err(corrupt)?,
                    detail: r.get("detail"),
                    prev: r.get("prev"),
                    hash: r.get("hash"),
                })
            })
            .collect()
    }

    async fn audit_head(&self) -> Result<Option<(u64, String)>, StoreError> {
        let row = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok((
                u64::try_from(r.get::<i64, _>("seq")).map_err(corrupt)?,
                r.get("hash"),
            ))
        })
        .transpose()
    }
}

#[async_trait]
impl crate::ports::RequestCards for SqliteStore {
    async fn cards(
        &self,
        ids: &[RequestId],
    ) -> Result<Vec<(RequestId, crate::ports::RequestCard)>, StoreError> {
        let Some(lowest) = ids.iter().min() else {
            return Ok(Vec::new());
        };
        let rows = sqlx::query(
            "SELECT request_id, output, channel, message, version, state FROM request_cards
             WHERE request_id >= ? ORDER BY request_id, output",
        )
        .bind(lowest.0 as i64)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for row in rows {
            let id = RequestId(row.get::<i64, _>("request_id") as u64);
            if !ids.contains(&id) {
                continue;
            }
            let state: String = row.get("state");
            let state = State::parse(&state)
                .ok_or_else(|| corrupt(format!("request card of {id}: state {state:?}")))?;
            out.push((
                id,
                crate::ports::RequestCard {
                    output: row.get("output"),
                    at: crate::ports::MessageRef {
                        channel: row.get("channel"),
                        message: row.get("message"),
                    },
                    version: row.get::<i64, _>("version") as u64,
                    state,
                },
            ));
        }
        Ok(out)
    }

    async fn record_card(
        &self,
        id: RequestId,
        card: &crate::ports::RequestCard,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO request_cards (request_id, output, channel, message, version, state)
             VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT (request_id, output) DO UPDATE SET
               channel = excluded.channel, message = excluded.message,
               version = excluded.version, state = excluded.state",
        )
        .bind(id.0 as i64)
        .bind(&card.output)
        .bind(&card.at.channel)
        .bind(&card.at.message)
        .bind(card.version as i64)
        .bind(card.state.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::command::Role;
    use crate::domain::money::Currency;
    use crate::domain::money::Money;
    use crate::domain::request::{Action, Verdict, Via};
    use crate::domain::request::{PaymentMethod, Tiers};
    use rust_decimal::Decimal;

    fn t(h: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000 + h * 3600, 0).unwrap()
    }

    async fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("p.db")).await.unwrap();
        (dir, s)
    }

    fn new_request(by: &str) -> NewRequest {
        let amount = Money::new(Decimal::from(6_000), Currency::Cny);
        NewRequest {
            account: AccountId::parse("shop").unwrap(),
            action: Action::Topup {
                amount,
                method: PaymentMethod::Wire,
            },
            reason: Some("month end".into()),
            cost: Some(amount),
            balance: Some(Money::new(Decimal::from(200), Currency::Cny)),
            tier: Tiers::defaults().for_amount(Some(&amount)).clone(),
            requested_by: by.into(),
            requested_at: t(0),
            expires_at: t(24),
            origin: Some(Via {
                platform: "chat-a".into(),
                message: None,
            }),
        }
    }

    fn approval(by: &str, role: Role) -> Decision {
        Decision {
            by: by.into(),
            role: role.as_str().into(),
            verdict: Verdict::Approve,
            at: t(1),
            via: Via {
                platform: "chat-b".into(),
                message: Some("m1".into()),
            },
            second_factor: false,
            comment: None,
        }
    }

    #[tokio::test]
    async fn a_request_round_trips_with_its_key_and_audit() {
        let (_d, s) = store().await;
        let r = s.open_request(&new_request("ria")).await.unwrap();
        assert_eq!(r.id, RequestId(1));
        assert!(r.key.starts_with("purser-r1-"), "{}", r.key);
        assert_eq!(s.request(r.id).await.unwrap(), Some(r.clone()));
        let log = s.audit_log(None).await.unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].event, "requested");
        assert!(log[0].detail.contains(&r.key));
        assert_eq!(
            s.audit_head().await.unwrap(),
            Some((1, log[0].hash.clone()))
        );
    }

    /// An approved renewal of `resources` on `shop`.
    async fn approved_renewal(s: &SqliteStore, resources: &[&str]) -> Request {
        let r = s
            .open_request(&NewRequest {
                action: Action::Renew {
                    resources: resources
                        .iter()
                        .map(|r| crate::domain::model::ExternalId::parse(r).unwrap())
                        .collect(),
                    months: 1,
                },
                ..new_request("ria")
            })
            .await
            .unwrap();
        let Written::Done(r) = s
            .record_decision(
                r.id,
                r.version,
                &approval("ana", Role::Approver),
                Some(State::Approved),
            )
            .await
            .unwrap()
        else {
            panic!()
        };
        r
    }

    #[tokio::test]
    async fn a_request_waits_while_another_changes_the_same_resource() {
        let (_d, s) = store().await;
        let a = approved_renewal(&s, &["ins-a", "ins-b"]).await;
        let b = approved_renewal(&s, &["ins-b"]).await;
        let c = approved_renewal(&s, &["ins-c"]).await;
        let start = |id| {
            s.transition(
                id,
                Step::new(State::Approved, State::Executing, "purser", t(2)),
            )
        };
        assert!(matches!(start(a.id).await.unwrap(), Written::Done(_)));
        assert_eq!(
            start(b.id).await.unwrap(),
            Written::Busy {
                by: a.id,
                on: "ins-b".into()
            }
        );
        assert!(matches!(start(c.id).await.unwrap(), Written::Done(_)));
        s.transition(
            a.id,
            Step::new(State::Executing, State::Succeeded, "purser", t(3)),
        )
        .await
        .unwrap();
        assert!(matches!(start(b.id).await.unwrap(), Written::Done(_)));
    }

    #[tokio::test]
    async fn a_lease_is_held_until_it_lapses_or_is_given_up() {
        let (_d, s) = store().await;
        let r = approved_renewal(&s, &["ins-a"]).await;
        let until = t(1);
        assert_eq!(s.hold(r.id, "one", t(0), until).await.unwrap(), Lease::Held);
        assert_eq!(
            s.hold(r.id, "two", t(0), until).await.unwrap(),
            Lease::HeldBy {
                holder: "one".into(),
                until
            }
        );
        // Renewing changes nothing a guarded write reads.
        assert_eq!(s.hold(r.id, "one", t(0), t(2)).await.unwrap(), Lease::Held);
        assert_eq!(s.request(r.id).await.unwrap().unwrap().version, r.version);
        // Lapsed, anyone takes it; given up, too.
        assert_eq!(s.hold(r.id, "two", t(2), t(3)).await.unwrap(), Lease::Held);
        s.release(r.id, "one").await.unwrap();
        assert!(matches!(
            s.hold(r.id, "one", t(2), t(3)).await.unwrap(),
            Lease::HeldBy { .. }
        ));
        s.release(r.id, "two").await.unwrap();
        assert_eq!(s.hold(r.id, "one", t(2), t(3)).await.unwrap(), Lease::Held);
    }

    #[tokio::test]
    async fn decisions_are_guarded_by_the_version_read() {
        let (_d, s) = store().await;
        let r = s.open_request(&new_request("ria")).await.unwrap();
        let first = s
            .record_decision(r.id, r.version, &approval("ana", Role::Approver), None)
            .await
            .unwrap();
        let Written::Done(after) = first else {
            panic!("{first:?}")
        };
        assert_eq!(after.decisions.len(), 1);
        // A second writer that read the old version is told to re-read.
        let racing = s
            .record_decision(r.id, r.version, &approval("bo", Role::Approver), None)
            .await
            .unwrap();
        assert!(matches!(racing, Written::Stale(ref now) if now.decisions.len() == 1));
        // The same person twice is never two rows.
        let again = s
            .record_decision(
                r.id,
                after.version,
                &approval("ana", Role::Approver),
                Some(State::Approved),
            )
            .await
            .unwrap();
        assert!(matches!(again, Written::Stale(_)));
        let done = s
            .record_decision(
                r.id,
                after.version,
                &approval("bo", Role::Approver),
                Some(State::Approved),
            )
            .await
            .unwrap();
        let Written::Done(done) = done else { panic!() };
        assert_eq!(done.state, State::Approved);
        let events: Vec<String> = s
            .audit_log(None)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.event)
            .collect();
        assert_eq!(events, ["requested", "approved", "approved", "state"]);
    }

    #[tokio::test]
    async fn of_two_racing_transitions_one_moves_the_request() {
        let (_d, s) = store().await;
        let r = s.open_request(&new_request("ria")).await.unwrap();
        let Written::Done(r) = s
            .record_decision(
                r.id,
                r.version,
                &approval("ana", Role::Approver),
                Some(State::Approved),
            )
            .await
            .unwrap()
        else {
            panic!()
        };
        let (a, b) = tokio::join!(
            s.transition(
                r.id,
                Step::new(State::Approved, State::Executing, "purser", t(2))
            ),
            s.transition(
                r.id,
                Step::new(State::Approved, State::Executing, "purser", t(2))
            ),
        );
        let wins = [a.unwrap(), b.unwrap()]
            .iter()
            .filter(|w| matches!(w, Written::Done(_)))
            .count();
        assert_eq!(wins, 1);
        let r = s.request(r.id).await.unwrap().unwrap();
        let p = serde_json::json!({"orders": ["CS1"]});
        assert!(matches!(
            s.record_progress(r.id, r.version, &p, &[]).await.unwrap(),
            Written::Done(_)
        ));
        assert_eq!(s.progress(r.id).await.unwrap(), Some(p));
        // A second executor that read the same version records nothing.
        let other = serde_json::json!({"orders": ["CS2"]});
        assert!(matches!(
            s.record_progress(r.id, r.version, &other, &[])
                .await
                .unwrap(),
            Written::Stale(_)
        ));
        assert_eq!(
            s.progress(r.id).await.unwrap(),
            Some(serde_json::json!({"orders": ["CS1"]}))
        );
        assert!(
            s.transition(
                r.id,
                Step::new(State::Executing, State::Executing, "purser", t(3))
            )
            .await
            .is_err(),
            "not an arrow"
        );
    }

    #[tokio::test]
    async fn the_log_refuses_edits_and_verify_finds_them_done_behind_its_back() {
        let (_d, s) = store().await;
        for by in ["ria", "rob", "rae"] {
            s.open_request(&new_request(by)).await.unwrap();
        }
        let log = s.audit_log(None).await.unwrap();
        let head = s.audit_head().await.unwrap();
        let h = head.as_ref().map(|(n, h)| (*n, h.as_str()));
        assert_eq!(audit::verify(&log, h).unwrap().entries, 3);
        let refused = sqlx::query("UPDATE audit_log SET actor = 'x' WHERE seq = 2")
            .execute(&s.pool)
            .await;
        assert!(refused.unwrap_err().to_string().contains("append-only"));
        assert!(
            sqlx::query("DELETE FROM audit_log WHERE seq = 3")
                .execute(&s.pool)
                .await
                .is_err()
        );
        // Someone with the file drops the guard and edits a row…
        sqlx::query("DROP TRIGGER audit_log_no_update")
            .execute(&s.pool)
            .await
            .unwrap();
        sqlx::query(
            "UPDATE audit_log SET detail = replace(detail, 'month end', 'x') WHERE seq = 2",
        )
        .execute(&s.pool)
        .await
        .unwrap();
        let log = s.audit_log(None).await.unwrap();
        assert_eq!(
            audit::verify(&log, h),
            Err(audit::Broken::Edited { seq: 2 })
        );
    }

    #[tokio::test]
    async fn deleting_the_last_entry_shows_against_the_head() {
        let (_d, s) = store().await;
        for by in ["ria", "rob"] {
            s.open_request(&new_request(by)).await.unwrap();
        }
        sqlx::query("DROP TRIGGER audit_log_no_delete")
            .execute(&s.pool)
            .await
            .unwrap();
        sqlx::query("DELETE FROM audit_log WHERE seq = 2")
            .execute(&s.pool)
            .await
            .unwrap();
        let log = s.audit_log(None).await.unwrap();
        let head = s.audit_head().await.unwrap();
        assert_eq!(
            audit::verify(&log, head.as_ref().map(|(n, h)| (*n, h.as_str()))),
            Err(audit::Broken::Truncated {
                expected: 2,
                found: 1
            })
        );
    }
}
