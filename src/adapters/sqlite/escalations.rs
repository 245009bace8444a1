//! Escalations and pages on SQLite. A step's state, its pages and the
//! notices that show it are written in one transaction guarded by the
//! version read, so a step is taken once even if two passes race.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{SqliteStore, corrupt, from_ms, ms, opt_from_ms};
use crate::domain::audit::{Event, NewEntry};
use crate::domain::calendar::ResponseClock;
use crate::domain::escalation::{Escalation, Phase};
use crate::domain::oncall::Override;
use crate::domain::rules::Severity;
use crate::ports::{EscalationWrite, Escalations, Mark, PageItem, PageMessage, StoreError};

fn escalation_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<Escalation, StoreError> {
    let text = |c: &str| -> Result<String, StoreError> { Ok(r.try_get::<String, _>(c)?) };
    let severity = text("severity")?;
    let clock = text("clock")?;
    let phase = text("phase")?;
    let count = |c: &str| -> Result<u32, StoreError> {
        u32::try_from(r.try_get::<i64, _>(c)?).map_err(corrupt)
    };
    Ok(Escalation {
        fingerprint: text("fingerprint")?,
        started_at: from_ms(r.try_get("started_at")?)?,
        severity: Severity::parse(&severity)
            .ok_or_else(|| corrupt(format!("severity {severity:?}")))?,
        raised_at: from_ms(r.try_get("raised_at")?)?,
        due_at: from_ms(r.try_get("due_at")?)?,
        clock: ResponseClock::parse(&clock).ok_or_else(|| corrupt(format!("clock {clock:?}")))?,
        phase: Phase::parse(&phase).ok_or_else(|| corrupt(format!("phase {phase:?}")))?,
        round: count("round")?,
        round_start: from_ms(r.try_get("round_start")?)?,
        position: count("position")?,
        repeats_left: count("repeats_left")?,
        next_at: opt_from_ms(r.try_get("next_at")?)?,
        acked_by: r.try_get("acked_by")?,
        acked_at: opt_from_ms(r.try_get("acked_at")?)?,
        resolved_at: opt_from_ms(r.try_get("resolved_at")?)?,
        version: r.try_get("version")?,
    })
}

fn override_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<Override, StoreError> {
    Ok(Override {
        id: r.try_get("id")?,
        schedule: r.try_get("schedule")?,
        person: r.try_get("person")?,
        from: from_ms(r.try_get("from_at")?)?,
        to: from_ms(r.try_get("to_at")?)?,
        by: r.try_get("made_by")?,
    })
}

#[async_trait]
impl Escalations for SqliteStore {
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
        sqlx::query("SELECT * FROM escalations WHERE raised_at >= ? ORDER BY raised_at")
            .bind(ms(since))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(escalation_from_row)
            .collect()
    }

    async fn write_escalation(&self, w: &EscalationWrite<'_>) -> Result<bool, StoreError> {
        let e = w.escalation;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let written = match w.read_version {
            None => sqlx::query(
                "INSERT INTO escalations (fingerprint, started_at, severity, raised_at, due_at,
                    clock, phase, round, round_start, position, repeats_left, next_at,
                    acked_by, acked_at, resolved_at, version)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)
                 ON CONFLICT (fingerprint, started_at) DO NOTHING",
            )
            .bind(&e.fingerprint)
            .bind(ms(e.started_at))
            .bind(e.severity.as_str())
            .bind(ms(e.raised_at))
            .bind(ms(e.due_at))
            .bind(e.clock.as_str())
            .bind(e.phase.as_str())
            .bind(i64::from(e.round))
            .bind(ms(e.round_start))
            .bind(i64::from(e.position))
            .bind(i64::from(e.repeats_left))
            .bind(e.next_at.map(ms))
            .bind(&e.acked_by)
            .bind(e.acked_at.map(ms))
            .bind(e.resolved_at.map(ms))
            .execute(&mut *tx)
            .await?
            .rows_affected(),
            Some(version) => sqlx::query(
                "UPDATE escalations SET phase = ?, round = ?, round_start = ?, position = ?,
                    repeats_left = ?, next_at = ?, acked_by = ?, acked_at = ?, resolved_at = ?,
                    version = version + 1
                 WHERE fingerprint = ? AND started_at = ? AND version = ?",
            )
            .bind(e.phase.as_str())
            .bind(i64::from(e.round))
            .bind(ms(e.round_start))
            .bind(i64::from(e.position))
            .bind(i64::from(e.repeats_left))
            .bind(e.next_at.map(ms))
            .bind(&e.acked_by)
            .bind(e.acked_at.map(ms))
            .bind(e.resolved_at.map(ms))
            .bind(&e.fingerprint)
            .bind(ms(e.started_at))
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
                "UPDATE alerts SET acked_by = NULL, acked_at = NULL, changed = ?
                 WHERE fingerprint = ? AND started_at = ? AND state <> 'resolved'",
            )
            .bind(change)
            .bind(&e.fingerprint)
            .bind(ms(e.started_at))
            .execute(&mut *tx)
            .await?;
        }
        for (to, page) in &w.pages {
            let body = serde_json::to_string(page).map_err(corrupt)?;
            sqlx::query(
                "INSERT INTO pages (page_id, fingerprint, started_at, recipient, event, body,
                    created_at, next_attempt_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (page_id) DO NOTHING",
            )
            .bind(&page.id)
            .bind(&page.fingerprint)
            .bind(ms(page.started_at))
            .bind(to)
            .bind(page.event.as_str())
            .bind(&body)
            .bind(ms(w.at))
            .bind(ms(w.at))
            .execute(&mut *tx)
            .await?;
        }
        for (output, notice) in &w.notices {
            super::queue_notice(&mut tx, output, notice).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn resolved_at(
        &self,
        fingerprint: &str,
        started_at: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let row = sqlx::query(
            "SELECT resolved_at FROM alerts WHERE fingerprint = ? AND started_at = ?
             ORDER BY id DESC LIMIT 1",
        )
        .bind(fingerprint)
        .bind(ms(started_at))
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(r) => opt_from_ms(r.try_get("resolved_at")?),
            None => Ok(None),
        }
    }

    async fn triggered_pagers(
        &self,
        fingerprint: &str,
        started_at: DateTime<Utc>,
    ) -> Result<Vec<(String, PageMessage)>, StoreError> {
        let rows = sqlx::query(
            "SELECT recipient, body FROM pages WHERE id IN (
                SELECT MIN(id) FROM pages WHERE fingerprint = ? AND started_at = ?
                  AND event = 'trigger' AND recipient LIKE 'pager:%' GROUP BY recipient)
             ORDER BY recipient",
        )
        .bind(fingerprint)
        .bind(ms(started_at))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let body: String = r.try_get("body")?;
                Ok((
                    r.try_get::<String, _>("recipient")?,
                    serde_json::from_str(&body).map_err(corrupt)?,
                ))
            })
            .collect()
    }

    async fn due_pages(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<PageItem>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, recipient, attempts, body FROM pages
             WHERE delivered_at IS NULL AND next_attempt_at IS NOT NULL AND next_attempt_at <= ?
             ORDER BY next_attempt_at, id LIMIT ?",
        )
        .bind(ms(now))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let body: String = r.try_get("body")?;
                let page: PageMessage = serde_json::from_str(&body).map_err(corrupt)?;
                Ok(PageItem {
                    id: r.try_get("id")?,
                    to: r.try_get("recipient")?,
                    attempts: u32::try_from(r.try_get::<i64, _>("attempts")?).map_err(corrupt)?,
                    page,
                })
            })
            .collect()
    }

    async fn next_page_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let v: Option<i64> =
            sqlx::query_scalar("SELECT MIN(next_attempt_at) FROM pages WHERE delivered_at IS NULL")
                .fetch_one(&self.pool)
                .await?;
        opt_from_ms(v)
    }

    async fn paging(&self, id: i64, at: DateTime<Utc>) -> Result<bool, StoreError> {
        Ok(self.mark_sending("pages", &[id], at).await? > 0)
    }

    async fn page_delivered(&self, id: i64, at: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE pages SET delivered_at = ?, attempts = attempts + 1, sending_at = NULL WHERE id = ?",
        )
            .bind(ms(at))
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn page_failed(
        &self,
        id: i64,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE pages SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?, sending_at = NULL
             WHERE id = ?",
        )
        .bind(crate::secret::redact(error).as_ref())
        .bind(retry_at.map(ms))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn page_postponed(
        &self,
        id: i64,
        why: &str,
        until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE pages SET last_error = ?, next_attempt_at = ?, sending_at = NULL WHERE id = ?",
        )
        .bind(crate::secret::redact(why).as_ref())
        .bind(ms(until))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn add_override(
        &self,
        o: &Override,
        reason: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<Override, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO oncall_overrides (schedule, person, from_at, to_at, made_by, made_at, reason)
             VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(&o.schedule)
        .bind(&o.person)
        .bind(ms(o.from))
        .bind(ms(o.to))
        .bind(&o.by)
        .bind(ms(at))
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
            from: crate::adapters::at_ms(o.from),
            to: crate::adapters::at_ms(o.to),
            ..o.clone()
        })
    }

    async fn overrides(&self, after: DateTime<Utc>) -> Result<Vec<Override>, StoreError> {
        sqlx::query("SELECT * FROM oncall_overrides WHERE to_at > ? ORDER BY id")
            .bind(ms(after))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(override_from_row)
            .collect()
    }
}
