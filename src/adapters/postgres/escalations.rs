//! Escalations and pages on PostgreSQL. A step's state, its pages and the
//! notices that show it are written in one transaction guarded by the
//! version read, so a step is taken once even if two replicas' passes race.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::{PgStore, corrupt, count, from_json, json, queue_notice};
use crate::adapters::at_ms;
use crate::domain::audit::{Event, NewEntry};
use crate::domain::calendar::ResponseClock;
use crate::domain::escalation::{Escalation, Phase};
use crate::domain::oncall::Override;
use crate::domain::rules::Severity;
use crate::ports::{EscalationWrite, Escalations, Mark, PageItem, PageMessage, StoreError};

fn escalation_from_row(r: &PgRow) -> Result<Escalation, StoreError> {
    let severity: String = r.try_get("severity")?;
    let clock: String = r.try_get("clock")?;
    let phase: String = r.try_get("phase")?;
    Ok(Escalation {
        fingerprint: r.try_get("fingerprint")?,
        started_at: r.try_get("started_at")?,
        severity: Severity::parse(&severity)
            .ok_or_else(|| corrupt(format!("severity {severity:?}")))?,
        raised_at: r.try_get("raised_at")?,
        due_at: r.try_get("due_at")?,
        clock: ResponseClock::parse(&clock).ok_or_else(|| corrupt(format!("clock {clock:?}")))?,
        phase: Phase::parse(&phase).ok_or_else(|| corrupt(format!("phase {phase:?}")))?,
        round: count(r, "round")?,
        round_start: r.try_get("round_start")?,
        position: count(r, "position")?,
        repeats_left: count(r, "repeats_left")?,
        next_at: r.try_get("next_at")?,
        acked_by: r.try_get("acked_by")?,
        acked_at: r.try_get("acked_at")?,
        resolved_at: r.try_get("resolved_at")?,
        version: r.try_get("version")?,
    })
}

fn override_from_row(r: &PgRow) -> Result<Override, StoreError> {
    Ok(Override {
        id: r.try_get("id")?,
        schedule: r.try_get("schedule")?,
        person: r.try_get("person")?,
        from: r.try_get("from_at")?,
        to: r.try_get("to_at")?,
        by: r.try_get("made_by")?,
    })
}

fn small(n: u32) -> Result<i32, StoreError> {
    i32::try_from(n).map_err(corrupt)
}

#[async_trait]
impl Escalations for PgStore {
    async fn open_escalations(&self) -> Result<Vec<Escalation>, StoreError> {
        let rows =
            sqlx::query("SELECT * FROM escalations WHERE phase <> 'resolved' ORDER BY raised_at")
                .fetch(&self.pool);
        crate::adapters::decoded(rows, escalation_from_row).await
    }

    async fn open_marks(&self) -> Result<Vec<Mark>, StoreError> {
        let rows = sqlx::query(
            "SELECT fingerprint, started_at, version AS written FROM escalations
             WHERE phase <> 'resolved'",
        )
        .fetch(&self.pool);
        crate::adapters::decoded(rows, super::rows::mark_from_row).await
    }

    async fn escalations_since(&self, since: DateTime<Utc>) -> Result<Vec<Escalation>, StoreError> {
        sqlx::query("SELECT * FROM escalations WHERE raised_at >= $1 ORDER BY raised_at")
            .bind(at_ms(since))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(escalation_from_row)
            .collect()
    }

    async fn write_escalation(&self, w: &EscalationWrite<'_>) -> Result<bool, StoreError> {
        let e = w.escalation;
        let mut tx = self.pool.begin().await?;
        self.fence(&mut tx).await?;
        // An UPDATE waiting on another's row lock re-reads the version
        // before it writes: of two racing passes, one matches.
        let written = match w.read_version {
            None => sqlx::query(
                "INSERT INTO escalations (fingerprint, started_at, severity, raised_at, due_at,
                    clock, phase, round, round_start, position, repeats_left, next_at,
                    acked_by, acked_at, resolved_at, version)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, 1)
                 ON CONFLICT (fingerprint, started_at) DO NOTHING",
            )
            .bind(&e.fingerprint)
            .bind(at_ms(e.started_at))
            .bind(e.severity.as_str())
            .bind(at_ms(e.raised_at))
            .bind(at_ms(e.due_at))
            .bind(e.clock.as_str())
            .bind(e.phase.as_str())
            .bind(small(e.round)?)
            .bind(at_ms(e.round_start))
            .bind(small(e.position)?)
            .bind(small(e.repeats_left)?)
            .bind(e.next_at.map(at_ms))
            .bind(&e.acked_by)
            .bind(e.acked_at.map(at_ms))
            .bind(e.resolved_at.map(at_ms))
            .execute(&mut *tx)
            .await?
            .rows_affected(),
            Some(version) => sqlx::query(
                "UPDATE escalations SET phase = $1, round = $2, round_start = $3, position = $4,
                    repeats_left = $5, next_at = $6, acked_by = $7, acked_at = $8,
                    resolved_at = $9, version = version + 1
                 WHERE fingerprint = $10 AND started_at = $11 AND version = $12",
            )
            .bind(e.phase.as_str())
            .bind(small(e.round)?)
            .bind(at_ms(e.round_start))
            .bind(small(e.position)?)
            .bind(small(e.repeats_left)?)
            .bind(e.next_at.map(at_ms))
            .bind(&e.acked_by)
            .bind(e.acked_at.map(at_ms))
            .bind(e.resolved_at.map(at_ms))
            .bind(&e.fingerprint)
            .bind(at_ms(e.started_at))
            .bind(version)
            .execute(&mut *tx)
            .await?
            .rows_affected(),
        };
        if written == 0 {
            return Ok(false);
        }
        if w.reopen {
            let change = super::alert_change(&mut tx).await?;
            sqlx::query(
                "UPDATE alerts SET acked_by = NULL, acked_at = NULL, changed = $1
                 WHERE fingerprint = $2 AND started_at = $3 AND state <> 'resolved'",
            )
            .bind(change)
            .bind(&e.fingerprint)
            .bind(at_ms(e.started_at))
            .execute(&mut *tx)
            .await?;
        }
        for (to, page) in &w.pages {
            sqlx::query(
                "INSERT INTO pages (page_id, fingerprint, started_at, recipient, event, body,
                    created_at, next_attempt_at)
                 VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $7) ON CONFLICT (page_id) DO NOTHING",
            )
            .bind(&page.id)
            .bind(&page.fingerprint)
            .bind(at_ms(page.started_at))
            .bind(to)
            .bind(page.event.as_str())
            .bind(json(page)?)
            .bind(at_ms(w.at))
            .execute(&mut *tx)
            .await?;
        }
        for (output, notice) in &w.notices {
            queue_notice(&mut tx, output, notice).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn resolved_at(
        &self,
        fingerprint: &str,
        started_at: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let v: Option<Option<DateTime<Utc>>> = sqlx::query_scalar(
            "SELECT resolved_at FROM alerts WHERE fingerprint = $1 AND started_at = $2
             ORDER BY id DESC LIMIT 1",
        )
        .bind(fingerprint)
        .bind(at_ms(started_at))
        .fetch_optional(&self.pool)
        .await?;
        Ok(v.flatten())
    }

    async fn triggered_pagers(
        &self,
        fingerprint: &str,
        started_at: DateTime<Utc>,
    ) -> Result<Vec<(String, PageMessage)>, StoreError> {
        sqlx::query(
            "SELECT recipient, body FROM pages WHERE id IN (
                SELECT MIN(id) FROM pages WHERE fingerprint = $1 AND started_at = $2
                  AND event = 'trigger' AND recipient LIKE 'pager:%' GROUP BY recipient)
             ORDER BY recipient",
        )
        .bind(fingerprint)
        .bind(at_ms(started_at))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| Ok((r.try_get::<String, _>("recipient")?, from_json(r, "body")?)))
        .collect()
    }

    async fn due_pages(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<PageItem>, StoreError> {
        sqlx::query(
            "SELECT id, recipient, attempts, body FROM pages
             WHERE delivered_at IS NULL AND next_attempt_at IS NOT NULL AND next_attempt_at <= $1
             ORDER BY next_attempt_at, id LIMIT $2",
        )
        .bind(at_ms(now))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(PageItem {
                id: r.try_get("id")?,
                to: r.try_get("recipient")?,
                attempts: count(r, "attempts")?,
                page: from_json(r, "body")?,
            })
        })
        .collect()
    }

    async fn next_page_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT MIN(next_attempt_at) FROM pages WHERE delivered_at IS NULL")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn paging(&self, id: i64, at: DateTime<Utc>) -> Result<bool, StoreError> {
        Ok(self.mark_sending("pages", &[id], at).await? > 0)
    }

    async fn page_delivered(&self, id: i64, at: DateTime<Utc>) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        self.fence(&mut tx).await?;
        sqlx::query(
            "UPDATE pages SET delivered_at = $1, attempts = attempts + 1, sending_at = NULL
             WHERE id = $2",
        )
        .bind(at_ms(at))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn page_failed(
        &self,
        id: i64,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        self.fence(&mut tx).await?;
        sqlx::query(
            "UPDATE pages SET attempts = attempts + 1, last_error = $1, next_attempt_at = $2,
                              sending_at = NULL
             WHERE id = $3",
        )
        .bind(crate::secret::redact(error).as_ref())
        .bind(retry_at.map(at_ms))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn page_postponed(
        &self,
        id: i64,
        why: &str,
        until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        self.fence(&mut tx).await?;
        sqlx::query(
            "UPDATE pages SET last_error = $1, next_attempt_at = $2, sending_at = NULL WHERE id = $3",
        )
        .bind(crate::secret::redact(why).as_ref())
        .bind(at_ms(until))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn add_override(
        &self,
        o: &Override,
        reason: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<Override, StoreError> {
        let mut tx = self.pool.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO oncall_overrides (schedule, person, from_at, to_at, made_by, made_at, reason)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(&o.schedule)
        .bind(&o.person)
        .bind(at_ms(o.from))
        .bind(at_ms(o.to))
        .bind(&o.by)
        .bind(at_ms(at))
        .bind(reason)
        .fetch_one(&mut *tx)
        .await?;
        let entry = NewEntry::new(
            at,
            o.by.clone(),
            Event::Note,
            None,
            serde_json::json!({
                "oncall_override": id,
                "schedule": o.schedule,
                "person": o.person,
                "from": o.from.to_rfc3339(),
                "until": o.to.to_rfc3339(),
                "reason": reason,
            }),
        );
        super::requests::append(&mut tx, &[entry]).await?;
        tx.commit().await?;
        // As it reads back: to the millisecond.
        Ok(Override {
            id,
            from: at_ms(o.from),
            to: at_ms(o.to),
            ..o.clone()
        })
    }

    async fn overrides(&self, after: DateTime<Utc>) -> Result<Vec<Override>, StoreError> {
        sqlx::query("SELECT * FROM oncall_overrides WHERE to_at > $1 ORDER BY id")
            .bind(at_ms(after))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(override_from_row)
            .collect()
    }
}
