//! Requests, decisions and the audit log on PostgreSQL. A write locks the
//! request's row, takes its account's lock before checking what else runs
//! there, and takes the audit chain's lock last, so replicas writing at once
//! queue in one order and never deadlock; each write is guarded by the
//! version or state it read, and appends its audit entries in the same
//! transaction.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use super::{PgStore, corrupt, from_json, json};
use crate::adapters::at_ms;
use crate::adapters::request_record::{self as record, Body};
use crate::domain::audit::{self, Entry, NewEntry};
use crate::domain::model::AccountId;
use crate::domain::request::{Decision, Request, RequestId, State, idempotency_key};
use crate::ports::{
    Lease, NewRequest, RequestCard, RequestCards, Requests, Step, StoreError, Written,
};

fn id_of(id: RequestId) -> Result<i64, StoreError> {
    i64::try_from(id.0).map_err(corrupt)
}

/// The request `id` with its decisions; `lock` holds its row until the
/// transaction ends, so a guarded write reads what it then changes.
async fn load(
    tx: &mut PgConnection,
    id: RequestId,
    lock: bool,
) -> Result<Option<Request>, StoreError> {
    let sql = if lock {
        "SELECT * FROM requests WHERE id = $1 FOR UPDATE"
    } else {
        "SELECT * FROM requests WHERE id = $1"
    };
    let row = sqlx::query(sql)
        .bind(id_of(id)?)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let mut r = from_row(&row)?;
    r.decisions = decisions(tx, id).await?;
    Ok(Some(r))
}

async fn load_all(tx: &mut PgConnection, ids: Vec<i64>) -> Result<Vec<Request>, StoreError> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let id = RequestId(u64::try_from(id).map_err(corrupt)?);
        if let Some(r) = load(tx, id, false).await? {
            out.push(r);
        }
    }
    Ok(out)
}

/// Another request on `r`'s account, executing or unclear, that changes
/// something `r` changes: its id and the thing. Holds the account's lock
/// to the end of the transaction, so two replicas starting two requests on
/// one resource cannot both see the other idle.
async fn busy_with(
    tx: &mut PgConnection,
    r: &Request,
) -> Result<Option<(RequestId, String)>, StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('requests:' || $1))")
        .bind(r.account.as_str())
        .execute(&mut *tx)
        .await?;
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM requests WHERE account = $1 AND state IN ($2, $3) AND id <> $4 ORDER BY id",
    )
    .bind(r.account.as_str())
    .bind(State::Executing.as_str())
    .bind(State::Unclear.as_str())
    .bind(id_of(r.id)?)
    .fetch_all(&mut *tx)
    .await?;
    for other in load_all(tx, ids).await? {
        if let Some(on) = r.action.shares_with(&other.action) {
            return Ok(Some((other.id, on.to_string())));
        }
    }
    Ok(None)
}

async fn reload(tx: &mut PgConnection, id: RequestId) -> Result<Request, StoreError> {
    load(tx, id, false)
        .await?
        .ok_or_else(|| corrupt("a request vanished while being written"))
}

async fn decisions(tx: &mut PgConnection, id: RequestId) -> Result<Vec<Decision>, StoreError> {
    sqlx::query("SELECT body FROM decisions WHERE request = $1 ORDER BY seq")
        .bind(id_of(id)?)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| from_json(r, "body"))
        .collect()
}

fn from_row(row: &PgRow) -> Result<Request, StoreError> {
    let body: Body = from_json(row, "body")?;
    let state: String = row.try_get("state")?;
    let account: String = row.try_get("account")?;
    Ok(Request {
        id: RequestId(u64::try_from(row.try_get::<i64, _>("id")?).map_err(corrupt)?),
        account: AccountId::parse(&account).map_err(corrupt)?,
        action: body.action,
        reason: body.reason,
        cost: body.cost,
        balance: body.balance,
        tier: body.tier,
        requested_by: row.try_get("requested_by")?,
        requested_at: row.try_get("requested_at")?,
        expires_at: row.try_get("expires_at")?,
        state: State::parse(&state).ok_or_else(|| corrupt(format!("unknown state {state}")))?,
        decisions: Vec::new(),
        key: row.try_get("idem_key")?,
        origin: body.origin,
        version: u64::try_from(row.try_get::<i64, _>("version")?).map_err(corrupt)?,
    })
}

/// Seals and appends `entries` after the log's head, and moves the head.
/// The chain's lock is held to the end of the transaction: one writer at a
/// time extends it, whichever replica it runs on.
pub(super) async fn append(tx: &mut PgConnection, entries: &[NewEntry]) -> Result<(), StoreError> {
    if entries.is_empty() {
        return Ok(());
    }
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('purser:audit_log'))")
        .execute(&mut *tx)
        .await?;
    let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
        .fetch_optional(&mut *tx)
        .await?;
    let mut last: Option<(u64, String)> = match head {
        Some(r) => Some((
            u64::try_from(r.try_get::<i64, _>("seq")?).map_err(corrupt)?,
            r.try_get("hash")?,
        )),
        None => None,
    };
    for new in entries {
        // Cleaned before it is sealed: an echoed secret never enters the
        // append-only log, and the hash holds what is kept.
        let new = NewEntry {
            detail: crate::secret::redact(&new.detail).into_owned(),
            at: at_ms(new.at),
            ..new.clone()
        };
        let e = audit::seal(last.as_ref().map(|(s, h)| (*s, h.as_str())), new);
        insert_entry(tx, &e).await?;
        last = Some((e.seq, e.hash));
    }
    if let Some((seq, hash)) = last {
        set_head(tx, seq, &hash).await?;
    }
    Ok(())
}

/// Writes one sealed entry as it is (`store copy` moves a chain this way).
pub(super) async fn insert_entry(tx: &mut PgConnection, e: &Entry) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_log (seq, at, actor, event, request, detail, prev, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(i64::try_from(e.seq).map_err(corrupt)?)
    .bind(e.at)
    .bind(&e.actor)
    .bind(&e.event)
    .bind(e.request.map(id_of).transpose()?)
    .bind(&e.detail)
    .bind(&e.prev)
    .bind(&e.hash)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

pub(super) async fn set_head(
    tx: &mut PgConnection,
    seq: u64,
    hash: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_head (id, seq, hash) VALUES (1, $1, $2)
         ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
    )
    .bind(i64::try_from(seq).map_err(corrupt)?)
    .bind(hash)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

fn entry_from_row(r: &PgRow) -> Result<Entry, StoreError> {
    let request: Option<i64> = r.try_get("request")?;
    Ok(Entry {
        seq: u64::try_from(r.try_get::<i64, _>("seq")?).map_err(corrupt)?,
        at: r.try_get("at")?,
        actor: r.try_get("actor")?,
        event: r.try_get("event")?,
        request: request
            .map(|v| u64::try_from(v).map(RequestId))
            .transpose()
            .map_err(corrupt)?,
        detail: r.try_get("detail")?,
        prev: r.try_get("prev")?,
        hash: r.try_get("hash")?,
    })
}

#[async_trait]
impl Requests for PgStore {
    async fn open_request(&self, new: &NewRequest) -> Result<Request, StoreError> {
        let mut tx = self.pool.begin().await?;
        let body = json(&Body::of(new))?;
        // The key needs the id: the id is drawn first, so the row is
        // written whole.
        let id: i64 =
            sqlx::query_scalar("SELECT nextval(pg_get_serial_sequence('requests', 'id'))")
                .fetch_one(&mut *tx)
                .await?;
        let id = RequestId(u64::try_from(id).map_err(corrupt)?);
        let requested_at = at_ms(new.requested_at);
        let key = idempotency_key(id, &new.account, requested_at, &new.requested_by);
        sqlx::query(
            "INSERT INTO requests (id, account, kind, state, requested_by, requested_at,
                                   expires_at, idem_key, body, updated_at)
             VALUES ($1, $2, $3, 'requested', $4, $5, $6, $7, $8::jsonb, $5)",
        )
        .bind(id_of(id)?)
        .bind(new.account.as_str())
        .bind(new.action.kind().as_str())
        .bind(&new.requested_by)
        .bind(requested_at)
        .bind(at_ms(new.expires_at))
        .bind(&key)
        .bind(&body)
        .execute(&mut *tx)
        .await?;
        let request = reload(&mut tx, id).await?;
        append(&mut tx, &[record::requested(new, id, &key)]).await?;
        tx.commit().await?;
        Ok(request)
    }

    async fn request(&self, id: RequestId) -> Result<Option<Request>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        load(&mut conn, id, false).await
    }

    async fn requests(&self, open_only: bool, limit: u32) -> Result<Vec<Request>, StoreError> {
        let sql = if open_only {
            "SELECT id FROM requests
             WHERE state IN ('requested', 'approved', 'executing', 'awaiting_payment')
             ORDER BY id DESC LIMIT $1"
        } else {
            "SELECT id FROM requests ORDER BY id DESC LIMIT $1"
        };
        // One snapshot for the ids and the requests they name.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .execute(&mut *tx)
            .await?;
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
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .execute(&mut *tx)
            .await?;
        let ids: Vec<i64> =
            sqlx::query_scalar("SELECT id FROM requests WHERE requested_at >= $1 ORDER BY id")
                .bind(at_ms(since))
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
        let mut tx = self.pool.begin().await?;
        let Some(current) = load(&mut tx, id, true).await? else {
            return Ok(Written::NotFound);
        };
        if record::stale(&current, version, decision, then) {
            return Ok(Written::Stale(current));
        }
        sqlx::query("INSERT INTO decisions (request, by_name, body) VALUES ($1, $2, $3::jsonb)")
            .bind(id_of(id)?)
            .bind(&decision.by)
            .bind(json(decision)?)
            .execute(&mut *tx)
            .await?;
        let to = then.unwrap_or(current.state);
        sqlx::query(
            "UPDATE requests SET version = version + 1, state = $1, updated_at = $2 WHERE id = $3",
        )
        .bind(to.as_str())
        .bind(at_ms(decision.at))
        .bind(id_of(id)?)
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
        let mut tx = self.pool.begin().await?;
        let Some(current) = load(&mut tx, id, true).await? else {
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
            "UPDATE requests SET state = $1, version = version + 1, updated_at = $2,
                                 progress = COALESCE($3::jsonb, progress)
             WHERE id = $4 AND state = $5",
        )
        .bind(to.as_str())
        .bind(at_ms(at))
        .bind(progress)
        .bind(id_of(id)?)
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
        let p: Option<Option<serde_json::Value>> =
            sqlx::query_scalar("SELECT progress FROM requests WHERE id = $1")
                .bind(id_of(id)?)
                .fetch_optional(&self.pool)
                .await?;
        Ok(p.flatten())
    }

    async fn record_progress(
        &self,
        id: RequestId,
        version: u64,
        progress: &serde_json::Value,
        audit: &[NewEntry],
    ) -> Result<Written, StoreError> {
        let mut tx = self.pool.begin().await?;
        let Some(current) = load(&mut tx, id, true).await? else {
            return Ok(Written::NotFound);
        };
        if current.version != version {
            return Ok(Written::Stale(current));
        }
        sqlx::query(
            "UPDATE requests SET progress = $1::jsonb, version = version + 1 WHERE id = $2",
        )
        .bind(crate::secret::redact(&json(progress)?).as_ref())
        .bind(id_of(id)?)
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
        let mut tx = self.pool.begin().await?;
        let taken = sqlx::query(
            "UPDATE requests SET lease_holder = $1, lease_until = $2
             WHERE id = $3 AND (lease_holder IS NULL OR lease_holder = $1 OR lease_until <= $4)",
        )
        .bind(holder)
        .bind(at_ms(until))
        .bind(id_of(id)?)
        .bind(at_ms(now))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let lease = if taken == 1 {
            Lease::Held
        } else {
            let row = sqlx::query("SELECT lease_holder, lease_until FROM requests WHERE id = $1")
                .bind(id_of(id)?)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| corrupt(format!("{id} is not stored")))?;
            Lease::HeldBy {
                holder: row
                    .try_get::<Option<String>, _>("lease_holder")?
                    .unwrap_or_default(),
                until: row
                    .try_get::<Option<DateTime<Utc>>, _>("lease_until")?
                    .unwrap_or(DateTime::UNIX_EPOCH),
            }
        };
        tx.commit().await?;
        Ok(lease)
    }

    async fn release(&self, id: RequestId, holder: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE requests SET lease_holder = NULL, lease_until = NULL
             WHERE id = $1 AND lease_holder = $2",
        )
        .bind(id_of(id)?)
        .bind(holder)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn audit(&self, entries: &[NewEntry]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        append(&mut tx, entries).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn audit_log(&self, since: Option<DateTime<Utc>>) -> Result<Vec<Entry>, StoreError> {
        let rows = match since {
            Some(t) => {
                sqlx::query("SELECT * FROM audit_log WHERE at >= $1 ORDER BY seq")
                    .bind(at_ms(t))
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query("SELECT * FROM audit_log ORDER BY seq")
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(entry_from_row).collect()
    }

    async fn audit_head(&self) -> Result<Option<(u64, String)>, StoreError> {
        let row = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok((
                u64::try_from(r.try_get::<i64, _>("seq")?).map_err(corrupt)?,
                r.try_get("hash")?,
            ))
        })
        .transpose()
    }
}

#[async_trait]
impl RequestCards for PgStore {
    async fn cards(&self, ids: &[RequestId]) -> Result<Vec<(RequestId, RequestCard)>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let wanted: Vec<i64> = ids.iter().map(|id| id_of(*id)).collect::<Result<_, _>>()?;
        let rows = sqlx::query(
            "SELECT request_id, output, channel, message, version, state FROM request_cards
             WHERE request_id = ANY($1) ORDER BY request_id, output",
        )
        .bind(&wanted)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let id = RequestId(
                    u64::try_from(row.try_get::<i64, _>("request_id")?).map_err(corrupt)?,
                );
                let state: String = row.try_get("state")?;
                let state = State::parse(&state)
                    .ok_or_else(|| corrupt(format!("request card of {id}: state {state:?}")))?;
                Ok((
                    id,
                    RequestCard {
                        output: row.try_get("output")?,
                        at: crate::ports::MessageRef {
                            channel: row.try_get("channel")?,
                            message: row.try_get("message")?,
                        },
                        version: u64::try_from(row.try_get::<i64, _>("version")?)
                            .map_err(corrupt)?,
                        state,
                    },
                ))
            })
            .collect()
    }

    async fn record_card(&self, id: RequestId, card: &RequestCard) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        self.fence(&mut tx).await?;
        sqlx::query(
            "INSERT INTO request_cards (request_id, output, channel, message, version, state)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (request_id, output) DO UPDATE SET
               channel = excluded.channel, message = excluded.message,
               version = excluded.version, state = excluded.state",
        )
        .bind(id_of(id)?)
        .bind(&card.output)
        .bind(&card.at.channel)
        .bind(&card.at.message)
        .bind(i64::try_from(card.version).map_err(corrupt)?)
        .bind(card.state.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
