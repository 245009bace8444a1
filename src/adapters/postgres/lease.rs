//! The lease one replica leads by: taken, renewed, given up, read; and the
//! fence every leader's write passes, so a replica that lost the lead
//! without knowing writes nothing.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::{PgStore, not_leader};
use crate::adapters::at_ms;
use crate::ports::{Lead, Leadership, StoreError};

impl PgStore {
    /// Takes the lead for `holder` until `now + term`, if nobody else holds
    /// an unexpired lease; a holder taking it again keeps its token, a new
    /// one gets the next. `None`: another replica leads.
    pub async fn lead(
        &self,
        holder: &str,
        now: DateTime<Utc>,
        term: chrono::Duration,
    ) -> Result<Option<Lead>, StoreError> {
        let (now, until) = (at_ms(now), at_ms(now + term));
        // Another's unexpired lease: nothing to take, and no lock taken
        // that would hold the leader's writes up.
        if let Some(l) = self.leader().await?
            && l.holder != holder
            && l.expires_at > now
        {
            self.set_fence(0);
            return Ok(None);
        }
        // A change of holder waits for the writes fenced by the old token
        // to end, and those after it see the new one.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('purser:leadership'))")
            .execute(&mut *tx)
            .await?;
        let row = sqlx::query(
            "INSERT INTO leadership (id, holder, token, since, expires_at) VALUES (1, $1, 1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET
               token = CASE WHEN leadership.holder = excluded.holder AND leadership.expires_at > $2
                            THEN leadership.token ELSE leadership.token + 1 END,
               since = CASE WHEN leadership.holder = excluded.holder AND leadership.expires_at > $2
                            THEN leadership.since ELSE excluded.since END,
               holder = excluded.holder,
               expires_at = excluded.expires_at
             WHERE leadership.expires_at <= $2 OR leadership.holder = excluded.holder
             RETURNING holder, token, since, expires_at",
        )
        .bind(holder)
        .bind(now)
        .bind(until)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        let lease = row.as_ref().map(lease_from_row).transpose()?;
        self.set_fence(lease.as_ref().map_or(0, |l| l.token));
        Ok(lease)
    }

    /// Extends the lease `token` names to `now + term`, while it has not
    /// run out; `false`: it has, or another replica took over. A leader
    /// that cannot renew stops leading.
    pub async fn renew(
        &self,
        token: i64,
        now: DateTime<Utc>,
        term: chrono::Duration,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE leadership SET expires_at = $3 WHERE token = $1 AND expires_at > $2",
        )
        .bind(token)
        .bind(at_ms(now))
        .bind(at_ms(now + term))
        .execute(&self.pool)
        .await;
        match done {
            Ok(done) if done.rows_affected() == 1 => Ok(true),
            Ok(_) => {
                self.set_fence(0);
                Ok(false)
            }
            Err(e) => {
                // Not renewed: the term may run out before the database
                // answers again, so nothing more is written as leader.
                self.set_fence(0);
                Err(e.into())
            }
        }
    }

    /// Gives the lead up at once (a clean stop), so a standby need not wait
    /// for the term.
    pub async fn step_down(&self, token: i64, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.set_fence(0);
        sqlx::query("UPDATE leadership SET expires_at = $2 WHERE token = $1")
            .bind(token)
            .bind(at_ms(now))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Who leads, as the row says (expired or not).
    pub async fn leader(&self) -> Result<Option<Lead>, StoreError> {
        let row =
            sqlx::query("SELECT holder, token, since, expires_at FROM leadership WHERE id = 1")
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(lease_from_row).transpose()
    }

    /// Fails unless `token` is still the leader's: every write that acts on
    /// leadership checks it in its own transaction, so a leader that was
    /// paused past its lease and replaced cannot write when it wakes.
    pub async fn fenced(tx: &mut sqlx::PgConnection, token: i64) -> Result<(), StoreError> {
        // Shared with every other fenced write, exclusive to a change of
        // holder (`lead`): held to the end of `tx`, so no take-over commits
        // between this check and the write. A lock in memory, not on the
        // row, so many writers at once cost the database nothing to track.
        sqlx::query("SELECT pg_advisory_xact_lock_shared(hashtext('purser:leadership'))")
            .execute(&mut *tx)
            .await?;
        // A statement of its own: its snapshot is taken after the lock.
        let held: Option<i64> = sqlx::query_scalar("SELECT token FROM leadership WHERE id = 1")
            .fetch_optional(&mut *tx)
            .await?;
        if held == Some(token) {
            Ok(())
        } else {
            Err(not_leader(held, token))
        }
    }

    /// Runs `write` in one transaction fenced by `token`.
    pub async fn with_lead<T>(
        &self,
        token: i64,
        write: impl for<'c> FnOnce(
            &'c mut sqlx::PgConnection,
        )
            -> futures_util::future::BoxFuture<'c, Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let mut tx = self.pool.begin().await?;
        PgStore::fenced(&mut tx, token).await?;
        let out = write(&mut tx).await?;
        tx.commit().await?;
        Ok(out)
    }
}

fn lease_from_row(r: &PgRow) -> Result<Lead, StoreError> {
    Ok(Lead {
        holder: r.try_get("holder")?,
        token: r.try_get("token")?,
        since: r.try_get("since")?,
        expires_at: r.try_get("expires_at")?,
    })
}

#[async_trait]
impl Leadership for PgStore {
    async fn lead(
        &self,
        holder: &str,
        now: DateTime<Utc>,
        term: chrono::Duration,
    ) -> Result<Option<Lead>, StoreError> {
        PgStore::lead(self, holder, now, term).await
    }
    async fn renew(
        &self,
        token: i64,
        now: DateTime<Utc>,
        term: chrono::Duration,
    ) -> Result<bool, StoreError> {
        PgStore::renew(self, token, now, term).await
    }
    async fn step_down(&self, token: i64, now: DateTime<Utc>) -> Result<(), StoreError> {
        PgStore::step_down(self, token, now).await
    }
    async fn leader(&self) -> Result<Option<Lead>, StoreError> {
        PgStore::leader(self).await
    }
}
