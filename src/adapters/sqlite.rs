//! The embedded store: one SQLite file in WAL mode, migrated at start.

use std::collections::HashMap;
use std::path::Path;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, Sqlite, SqlitePool, TransactionManager};

use crate::domain::alert::{Acknowledgement, Alert, Changes};
use crate::domain::command::AlertRef;
use crate::domain::forecast::AccountView;
use crate::domain::model::{Account, AccountId, BalanceEntry, PollFailure, PollHealth, Snapshot};
use crate::domain::routing::Routing;
use crate::domain::silence::Silence;
use crate::ports::{
    AckOutcome, BalanceEntries, EndSilenceOutcome, FailedNotice, Judgement, Judging, Mark,
    MessageRef, MessageRefs, NewSilence, OutboxItem, OutboxRow, PollRecord, Store, StoreError,
    StoredNotice, Window,
};
use crate::secret::redact;

use super::stored_snapshot::{self, Inventories};
use super::{at_ms, notice_at_ms};

mod batch;
mod escalations;
pub mod lock;
mod receipts;
mod requests;
mod rows;

use rows::{
    alert_from_row, bucket_kind, enqueue, entry_from_row, failed_from_row, health_in,
    mark_from_row, queue_notice, silence_from_row, snapshot_from_row, written_alert_from_row,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Moves `views_written` on, in the transaction that wrote views.
const VIEWS_WRITTEN: &str = "UPDATE views_written SET n = n + 1";

/// The number the alert writes of this transaction are marked with.
async fn alert_change(tx: &mut sqlx::SqliteConnection) -> Result<i64, StoreError> {
    Ok(
        sqlx::query_scalar("UPDATE alerts_written SET n = n + 1 RETURNING n")
            .fetch_one(&mut *tx)
            .await?,
    )
}

#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(v: i64) -> Result<DateTime<Utc>, StoreError> {
    Utc.timestamp_millis_opt(v)
        .single()
        .ok_or_else(|| StoreError::Corrupt(format!("bad timestamp {v}")))
}

fn opt_from_ms(v: Option<i64>) -> Result<Option<DateTime<Utc>>, StoreError> {
    v.map(from_ms).transpose()
}

/// A store file SQLite cannot use, named.
fn unreadable(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!(
        "the store {} cannot be used: {e}; restore it from a backup, or move it aside to start afresh",
        path.display()
    ))
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database file.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Corrupt(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(std::time::Duration::from_secs(10))
            .foreign_keys(true)
            // Each connection's thread hands rows over through a channel;
            // at the default 50 a batch's judging read (three rows an
            // account) stalled and woke it every few rows, at a thread
            // switch each. 1,024 rows is at most a few MB in flight.
            .row_buffer_size(1024);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .after_release(|conn, _| {
                Box::pin(async move {
                    // A task cancelled just as its BEGIN was answered leaves
                    // its connection inside a transaction nobody owns, holding
                    // the write lock, and every later BEGIN on it refused:
                    // roll it back, or drop the connection.
                    type Manager = <Sqlite as sqlx::Database>::TransactionManager;
                    if Manager::get_transaction_depth(conn) == 0 {
                        return Ok(true);
                    }
                    Ok(Manager::rollback(conn).await.is_ok())
                })
            })
            .connect_with(options)
            .await
            .map_err(|e| unreadable(path, e))?;
        // A damaged file runs but does nothing useful: refuse it at once.
        let checked: Vec<String> = sqlx::query_scalar("PRAGMA quick_check")
            .fetch_all(&pool)
            .await
            .map_err(|e| unreadable(path, e))?;
        if checked != ["ok"] {
            return Err(StoreError::Corrupt(format!(
                "the store {} is damaged (SQLite's quick_check: {}); restore it from a backup, or move it aside to start afresh",
                path.display(),
                checked.join("; ")
            )));
        }
        MIGRATOR.run(&pool).await.map_err(|e| unreadable(path, e))?;
        Ok(SqliteStore { pool })
    }

    /// Gives up every lease on carrying out requests: for the one daemon
    /// that holds the store's lock, whose predecessor has died.
    pub async fn release_all_leases(&self) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "UPDATE requests SET lease_holder = NULL, lease_until = NULL WHERE lease_holder IS NOT NULL",
        )
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// Opens an existing database for reading only: no migration, no writes
    /// (`purser check` reads hand-entered balances this way).
    pub async fn open_read_only(path: &Path) -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .read_only(true)
            .busy_timeout(std::time::Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        Ok(SqliteStore { pool })
    }

    /// Marks the rows `ids` of `table` (`outbox` or `pages`) as being sent
    /// from `at`; how many were marked so already and not delivered: sends
    /// cut off before they were recorded.
    pub(crate) async fn mark_sending(
        &self,
        table: &'static str,
        ids: &[i64],
        at: DateTime<Utc>,
    ) -> Result<u32, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut cut_off = 0;
        for id in ids {
            let before: Option<Option<i64>> = sqlx::query_scalar(&format!(
                "SELECT sending_at FROM {table} WHERE id = ? AND delivered_at IS NULL"
            ))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            cut_off += u32::from(matches!(before, Some(Some(_))));
            sqlx::query(&format!("UPDATE {table} SET sending_at = ? WHERE id = ?"))
                .bind(ms(at))
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(cut_off)
    }

    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Closes every connection, so that SQLite checkpoints its write-ahead log
    /// and removes its side files before the process exits.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Open alerts and waiting notices counted, for /metrics: two
    /// aggregate queries, whatever the number of rows.
    pub async fn tallies(&self) -> Result<crate::ports::Tallies, StoreError> {
        let count =
            |r: &sqlx::sqlite::SqliteRow| u64::try_from(r.get::<i64, _>("n")).map_err(corrupt);
        let alerts = sqlx::query(super::ALERT_TALLY)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| Ok((r.get("rule"), r.get("severity"), r.get("shown"), count(r)?)))
            .collect::<Result<_, StoreError>>()?;
        let waiting = sqlx::query(super::WAITING_TALLY)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok((
                    r.get("output"),
                    count(r)?,
                    from_ms(r.get::<i64, _>("oldest"))?,
                ))
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(crate::ports::Tallies { alerts, waiting })
    }

    /// The newest migration applied to the database, and the newest this
    /// build knows; one query, so it also says whether the store answers.
    pub async fn schema(&self) -> Result<(i64, i64), StoreError> {
        let applied: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success",
        )
        .fetch_one(&self.pool)
        .await?;
        let known = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
        Ok((applied, known))
    }

    /// Every alert ever recorded, newest first (for inspection and tests).
    pub async fn all_alerts(&self) -> Result<Vec<Alert>, StoreError> {
        let rows = sqlx::query("SELECT * FROM alerts ORDER BY id DESC")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(alert_from_row).collect()
    }

    /// Outbox rows as (output, notice, delivered) in insertion order (for tests).
    pub async fn outbox(&self) -> Result<Vec<(String, StoredNotice, bool)>, StoreError> {
        let rows = sqlx::query("SELECT output, body, delivered_at FROM outbox ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let body: String = r.get("body");
                let notice: StoredNotice = serde_json::from_str(&body).map_err(corrupt)?;
                Ok((
                    r.get("output"),
                    notice,
                    r.get::<Option<i64>, _>("delivered_at").is_some(),
                ))
            })
            .collect()
    }
}

#[async_trait]
impl MessageRefs for SqliteStore {
    async fn record_message(
        &self,
        output: &str,
        at: &MessageRef,
        notices: &[StoredNotice],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for (position, n) in notices.iter().enumerate() {
            let body = serde_json::to_string(&notice_at_ms(n)).map_err(corrupt)?;
            sqlx::query(
                "INSERT INTO chat_messages (fingerprint, started_at, output, channel, message, notice, position)
                 VALUES (?, ?, ?, ?, ?, ?, ?)
                 ON CONFLICT (fingerprint, started_at, output) DO UPDATE
                   SET channel = excluded.channel, message = excluded.message,
                       notice = excluded.notice, position = excluded.position",
            )
            .bind(&n.fingerprint)
            .bind(ms(n.started_at))
            .bind(output)
            .bind(&at.channel)
            .bind(&at.message)
            .bind(body)
            .bind(i64::try_from(position).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn message(
        &self,
        output: &str,
        fingerprint: &str,
        started_at: DateTime<Utc>,
    ) -> Result<Option<MessageRef>, StoreError> {
        let row = sqlx::query(
            "SELECT channel, message FROM chat_messages
             WHERE fingerprint = ? AND started_at = ? AND output = ?",
        )
        .bind(fingerprint)
        .bind(ms(started_at))
        .bind(output)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| MessageRef {
            channel: r.get("channel"),
            message: r.get("message"),
        }))
    }

    async fn shown(&self, output: &str, at: &MessageRef) -> Result<Vec<StoredNotice>, StoreError> {
        let rows = sqlx::query(
            "SELECT notice FROM chat_messages
             WHERE channel = ? AND message = ? AND output = ? AND notice IS NOT NULL
             ORDER BY position",
        )
        .bind(&at.channel)
        .bind(&at.message)
        .bind(output)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| serde_json::from_str(r.get::<&str, _>("notice")).map_err(corrupt))
            .collect()
    }

    async fn alerts_in(&self, at: &MessageRef) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT fingerprint FROM chat_messages WHERE channel = ? AND message = ?",
        )
        .bind(&at.channel)
        .bind(&at.message)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| r.get("fingerprint")).collect())
    }
}

#[async_trait]
impl BalanceEntries for SqliteStore {
    async fn record_balance_entry(
        &self,
        account: &AccountId,
        entry: &BalanceEntry,
    ) -> Result<(), StoreError> {
        let (kind, name) = match &entry.bucket {
            None => (None, None),
            Some(b) => (Some(bucket_kind(b.kind())), Some(b.name().to_owned())),
        };
        sqlx::query(
            "INSERT INTO balance_entries
               (account, amount, currency, as_of, entered_by, entered_at, bucket_kind, bucket_name)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(account.as_str())
        .bind(entry.amount.amount_string())
        .bind(entry.amount.currency().code())
        .bind(ms(entry.as_of))
        .bind(&entry.entered_by)
        .bind(ms(entry.entered_at))
        .bind(kind)
        .bind(name)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn latest_balance_entry(
        &self,
        account: &AccountId,
    ) -> Result<Option<BalanceEntry>, StoreError> {
        let row = sqlx::query(
            "SELECT amount, currency, as_of, entered_by, entered_at, bucket_kind, bucket_name
               FROM balance_entries
             WHERE account = ? AND bucket_kind IS NULL ORDER BY as_of DESC, id DESC LIMIT 1",
        )
        .bind(account.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(entry_from_row).transpose()
    }

    async fn bucket_entries(&self, account: &AccountId) -> Result<Vec<BalanceEntry>, StoreError> {
        // The latest entry of each part, by the portal's reading time.
        let rows = sqlx::query(
            "SELECT amount, currency, as_of, entered_by, entered_at, bucket_kind, bucket_name
               FROM balance_entries e
             WHERE account = ?1 AND bucket_kind IS NOT NULL
               AND id = (SELECT id FROM balance_entries x
                          WHERE x.account = ?1 AND x.bucket_kind = e.bucket_kind
                            AND x.bucket_name = e.bucket_name
                          ORDER BY as_of DESC, id DESC LIMIT 1)
             ORDER BY bucket_kind, bucket_name",
        )
        .bind(account.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(entry_from_row).collect()
    }

    async fn bucket_entries_of(
        &self,
        accounts: &[&AccountId],
    ) -> Result<HashMap<AccountId, Vec<BalanceEntry>>, StoreError> {
        batch::bucket_entries_of(&self.pool, accounts).await
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn record_poll(
        &self,
        account: &AccountId,
        at: DateTime<Utc>,
        outcome: Result<&Snapshot, &PollFailure>,
    ) -> Result<PollHealth, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut health = health_in(&mut tx, account).await?;
        match outcome {
            Ok(snapshot) => {
                let stored = stored_snapshot::split(snapshot)?;
                sqlx::query(
                    "INSERT INTO inventories (account, digest, body) VALUES (?, ?, ?)
                     ON CONFLICT DO NOTHING",
                )
                .bind(account.as_str())
                .bind(&stored.digest)
                .bind(stored.inventory()?)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO snapshots (account, taken_at, body, digest) VALUES (?, ?, ?, ?)",
                )
                .bind(account.as_str())
                .bind(ms(snapshot.taken_at))
                .bind(&stored.balance)
                .bind(&stored.digest)
                .execute(&mut *tx)
                .await?;
                health.succeeded(at);
            }
            Err(error) => health.failed(
                at,
                PollFailure {
                    kind: error.kind,
                    message: redact(&error.message).into_owned(),
                },
            ),
        }
        sqlx::query(
            "INSERT INTO poll_health (account, last_success_at, last_attempt_at, last_error,
               last_error_kind, consecutive_failures)
             VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT (account) DO UPDATE SET last_success_at = excluded.last_success_at,
               last_attempt_at = excluded.last_attempt_at, last_error = excluded.last_error,
               last_error_kind = excluded.last_error_kind,
               consecutive_failures = excluded.consecutive_failures",
        )
        .bind(account.as_str())
        .bind(health.last_success_at.map(ms))
        .bind(health.last_attempt_at.map(ms))
        .bind(health.last_error.as_ref().map(|e| e.message.as_str()))
        .bind(health.last_error.as_ref().map(|e| e.kind.as_str()))
        .bind(i64::from(health.consecutive_failures))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(health)
    }

    async fn record_view(&self, account: &AccountId, view: &AccountView) -> Result<(), StoreError> {
        let body = serde_json::to_string(view).map_err(corrupt)?;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(
            "INSERT INTO account_views (account, body, taken_at) VALUES (?, ?, ?)
             ON CONFLICT (account) DO UPDATE
               SET body = excluded.body, taken_at = excluded.taken_at",
        )
        .bind(account.as_str())
        .bind(body)
        .bind(ms(view.taken_at))
        .execute(&mut *tx)
        .await?;
        sqlx::query(VIEWS_WRITTEN).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn views_written(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT n FROM views_written")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn views(&self) -> Result<HashMap<AccountId, AccountView>, StoreError> {
        let rows = sqlx::query("SELECT account, body FROM account_views")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let id = AccountId::parse(r.get::<&str, _>("account")).map_err(corrupt)?;
                let view = serde_json::from_str(r.get::<&str, _>("body")).map_err(corrupt)?;
                Ok((id, view))
            })
            .collect()
    }

    async fn health(&self, account: &AccountId) -> Result<PollHealth, StoreError> {
        let mut conn = self.pool.acquire().await?;
        health_in(&mut conn, account).await
    }

    async fn history(
        &self,
        account: &AccountId,
        since: DateTime<Utc>,
    ) -> Result<Vec<Snapshot>, StoreError> {
        // The newest snapshot before the window is kept too: the rules judge the
        // latest known state even when the account has been unreadable for a while.
        let rows = sqlx::query(
            "SELECT s.body, s.digest, i.body AS inventory FROM snapshots s
               LEFT JOIN inventories i ON i.account = s.account AND i.digest = s.digest
             WHERE s.account = ?1
               AND s.taken_at >= MIN(?2, (SELECT MAX(taken_at) FROM snapshots WHERE account = ?1))
             ORDER BY s.taken_at",
        )
        .bind(account.as_str())
        .bind(ms(since))
        .fetch_all(&self.pool)
        .await?;
        let mut inventories = Inventories::default();
        rows.iter()
            .map(|r| snapshot_from_row(r, &mut inventories))
            .collect()
    }

    async fn latest_snapshot(&self, account: &AccountId) -> Result<Option<Snapshot>, StoreError> {
        let row = sqlx::query(
            "SELECT s.body, s.digest, i.body AS inventory FROM snapshots s
               LEFT JOIN inventories i ON i.account = s.account AND i.digest = s.digest
             WHERE s.account = ? ORDER BY s.taken_at DESC, s.id DESC LIMIT 1",
        )
        .bind(account.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| snapshot_from_row(&r, &mut Inventories::default()))
            .transpose()
    }

    async fn open_alerts(&self, account: &AccountId) -> Result<Vec<Alert>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM alerts WHERE account = ? AND state <> 'resolved' ORDER BY id",
        )
        .bind(account.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(alert_from_row).collect()
    }

    async fn firing_alerts(
        &self,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<Alert>, usize), StoreError> {
        let mut conn = self.pool.acquire().await?;
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM alerts WHERE state = 'firing'")
            .fetch_one(&mut *conn)
            .await?;
        let rows = sqlx::query(
            "SELECT * FROM alerts WHERE state = 'firing' ORDER BY severity, account, id LIMIT ? OFFSET ?",
        )
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(i64::try_from(offset).unwrap_or(i64::MAX))
        .fetch_all(&mut *conn)
        .await?;
        let alerts = rows.iter().map(alert_from_row).collect::<Result<_, _>>()?;
        Ok((alerts, usize::try_from(total).unwrap_or(0)))
    }

    async fn all_open_alerts(&self) -> Result<Vec<Alert>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM alerts WHERE state <> 'resolved' ORDER BY severity, account, id",
        )
        .fetch(&self.pool);
        crate::adapters::decoded(rows, alert_from_row).await
    }

    async fn alerts_written(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT n FROM alerts_written")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn alerts_changed_since(
        &self,
        after: i64,
    ) -> Result<(Vec<(i64, Alert)>, i64), StoreError> {
        let rows = sqlx::query("SELECT * FROM alerts WHERE changed > ? ORDER BY changed, id")
            .bind(after)
            .fetch(&self.pool);
        let alerts = crate::adapters::decoded(rows, written_alert_from_row).await?;
        let upto = alerts.iter().map(|(n, _)| *n).fold(after, i64::max);
        Ok((alerts, upto))
    }

    async fn firing_as_written(&self) -> Result<Vec<(i64, Alert)>, StoreError> {
        let rows = sqlx::query("SELECT * FROM alerts WHERE state = 'firing' ORDER BY id")
            .fetch(&self.pool);
        crate::adapters::decoded(rows, written_alert_from_row).await
    }

    async fn firing_marks(&self, after: i64) -> Result<Vec<Mark>, StoreError> {
        // Two halves, so that each is read by its own index.
        let rows = sqlx::query(
            "SELECT fingerprint, started_at, changed AS written FROM alerts WHERE state = 'firing'
             UNION ALL
             SELECT fingerprint, started_at, changed FROM alerts
             WHERE changed > ? AND state <> 'firing'",
        )
        .bind(after)
        .fetch(&self.pool);
        crate::adapters::decoded(rows, mark_from_row).await
    }

    async fn acknowledge(
        &self,
        alert: &AlertRef,
        by: &str,
        at: DateTime<Utc>,
        accounts: &[Account],
        routing: &Routing,
    ) -> Result<AckOutcome, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        // Hex digits only (AlertRef guarantees it), so LIKE needs no escaping.
        let rows = sqlx::query(
            "SELECT * FROM alerts WHERE state <> 'resolved' AND fingerprint LIKE ? ORDER BY id",
        )
        .bind(format!("{}%", alert.as_str()))
        .fetch_all(&mut *tx)
        .await?;
        let mut found: Vec<Alert> = rows.iter().map(alert_from_row).collect::<Result<_, _>>()?;
        let outcome = match found.len() {
            0 => AckOutcome::NotFound,
            1 => {
                let mut a = found.remove(0);
                if a.acknowledged.is_some() {
                    AckOutcome::AlreadyAcknowledged(a)
                } else {
                    let change = alert_change(&mut tx).await?;
                    // Guarded by acked_by IS NULL: of two racing clicks, one wins.
                    let done = sqlx::query(
                        "UPDATE alerts SET acked_by = ?, acked_at = ?, changed = ?
                         WHERE fingerprint = ? AND state <> 'resolved' AND acked_by IS NULL",
                    )
                    .bind(by)
                    .bind(ms(at))
                    .bind(change)
                    .bind(&a.fingerprint)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if done == 1 {
                        a.acknowledged = Some(Acknowledgement {
                            by: by.to_owned(),
                            at,
                        });
                        if let Some((notice, account)) =
                            crate::domain::silence::acknowledged_notice(&a, accounts)
                        {
                            enqueue(&mut tx, &notice, account, at, routing, None).await?;
                        }
                        AckOutcome::Acknowledged(a)
                    } else {
                        AckOutcome::AlreadyAcknowledged(a)
                    }
                }
            }
            _ => AckOutcome::Ambiguous(found.into_iter().map(|a| a.fingerprint).collect()),
        };
        tx.commit().await?;
        Ok(outcome)
    }

    async fn add_silence(
        &self,
        s: &NewSilence,
        accounts: &[Account],
        routing: &Routing,
    ) -> Result<Silence, StoreError> {
        let matchers = s
            .matchers
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO silences (matchers, starts_at, ends_at, created_by, reason)
             VALUES (?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(&matchers)
        .bind(ms(s.starts_at))
        .bind(ms(s.ends_at))
        .bind(&s.created_by)
        .bind(&s.reason)
        .fetch_one(&mut *tx)
        .await?;
        let silence = Silence {
            id: u64::try_from(id).map_err(corrupt)?,
            matchers: s.matchers.clone(),
            starts_at: at_ms(s.starts_at),
            ends_at: at_ms(s.ends_at),
            created_by: s.created_by.clone(),
            reason: s.reason.clone(),
            ended_by: None,
        };
        // Messages people saw now say the alert is silenced; what they never
        // saw stays unsaid.
        let rows = sqlx::query(
            "SELECT * FROM alerts WHERE state = 'firing' AND last_notified_at IS NOT NULL ORDER BY id",
        )
        .fetch_all(&mut *tx)
        .await?;
        let told = rows
            .iter()
            .map(alert_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        for (notice, account) in crate::domain::silence::newly_silenced(&silence, told, accounts) {
            enqueue(
                &mut tx,
                &notice,
                account,
                s.starts_at,
                routing,
                Some(&silence),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(silence)
    }

    async fn end_silence(
        &self,
        id: u64,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<EndSilenceOutcome, StoreError> {
        let Ok(id) = i64::try_from(id) else {
            return Ok(EndSilenceOutcome::NotFound);
        };
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let Some(row) = sqlx::query("SELECT * FROM silences WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(EndSilenceOutcome::NotFound);
        };
        let mut s = silence_from_row(&row)?;
        if s.ends_at <= at {
            return Ok(EndSilenceOutcome::AlreadyOver(s));
        }
        sqlx::query("UPDATE silences SET ends_at = ?, ended_by = ? WHERE id = ?")
            .bind(ms(at))
            .bind(by)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        s.ends_at = at;
        s.ended_by = Some(by.to_owned());
        Ok(EndSilenceOutcome::Ended(s))
    }

    async fn silences(&self, now: DateTime<Utc>) -> Result<Vec<Silence>, StoreError> {
        let rows = sqlx::query("SELECT * FROM silences WHERE ends_at > ? ORDER BY ends_at, id")
            .bind(ms(now))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(silence_from_row).collect()
    }

    async fn apply(
        &self,
        account: &Account,
        changes: &Changes,
        routing: &Routing,
    ) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        apply_in(&mut tx, account, changes, routing).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn due_notices(
        &self,
        output: &str,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, output, attempts, body FROM outbox
             WHERE output = ? AND delivered_at IS NULL AND abandoned_at IS NULL
               AND next_attempt_at <= ?
             ORDER BY id LIMIT ?",
        )
        .bind(output)
        .bind(ms(now))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(OutboxItem {
                    id: r.get("id"),
                    output: r.get("output"),
                    attempts: u32::try_from(r.get::<i64, _>("attempts")).map_err(corrupt)?,
                    notice: serde_json::from_str(r.get::<&str, _>("body")).map_err(corrupt)?,
                })
            })
            .collect()
    }

    async fn next_notice_due(&self, output: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let next: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(next_attempt_at) FROM outbox
             WHERE output = ? AND delivered_at IS NULL AND abandoned_at IS NULL",
        )
        .bind(output)
        .fetch_one(&self.pool)
        .await?;
        opt_from_ms(next)
    }

    async fn pending_outputs(&self) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT output FROM outbox WHERE delivered_at IS NULL AND abandoned_at IS NULL",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    async fn failed_notices(&self, account: Option<&str>) -> Result<Vec<FailedNotice>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, output, attempts, last_error, abandoned_at, body FROM outbox
             WHERE abandoned_at IS NOT NULL AND delivered_at IS NULL
               AND (? IS NULL OR account = ?)
             ORDER BY id",
        )
        .bind(account)
        .bind(account)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(failed_from_row).collect()
    }

    async fn retry_failed(
        &self,
        ids: Option<&[i64]>,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut n = 0;
        // Due at once, whoever's clock asks: no later than when it was decided.
        let sql = "UPDATE outbox SET abandoned_at = NULL, attempts = 0,
                          next_attempt_at = MIN(?, created_at)
                   WHERE abandoned_at IS NOT NULL AND delivered_at IS NULL";
        match ids {
            None => {
                n += sqlx::query(sql)
                    .bind(ms(now))
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
            }
            Some(ids) => {
                for id in ids {
                    n += sqlx::query(&format!("{sql} AND id = ?"))
                        .bind(ms(now))
                        .bind(id)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                }
            }
        }
        tx.commit().await?;
        Ok(n)
    }

    async fn sending(&self, ids: &[i64], at: DateTime<Utc>) -> Result<u32, StoreError> {
        self.mark_sending("outbox", ids, at).await
    }

    async fn mark_delivered(&self, id: i64, at: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query("UPDATE outbox SET delivered_at = ?, attempts = attempts + 1, last_error = NULL, sending_at = NULL WHERE id = ?")
            .bind(ms(at))
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn mark_failed(
        &self,
        id: i64,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let error = redact(error);
        let query = match retry_at {
            Some(at) => sqlx::query("UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?, sending_at = NULL WHERE id = ?")
                .bind(error.as_ref())
                .bind(ms(at)),
            None => sqlx::query("UPDATE outbox SET attempts = attempts + 1, last_error = ?, abandoned_at = next_attempt_at, sending_at = NULL WHERE id = ?")
                .bind(error.as_ref()),
        };
        query.bind(id).execute(&self.pool).await?;
        Ok(())
    }

    async fn postpone(&self, id: i64, why: &str, until: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE outbox SET last_error = ?, next_attempt_at = ?, sending_at = NULL WHERE id = ?",
        )
        .bind(redact(why).as_ref())
        .bind(ms(until))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Notices not delivered: waiting, and (or only, `failed_only`) given
    /// up on; oldest first. For `purser outbox list`.
    async fn undelivered(&self, failed_only: bool) -> Result<Vec<OutboxRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, output, attempts, next_attempt_at, abandoned_at, last_error, body
             FROM outbox WHERE delivered_at IS NULL AND (abandoned_at IS NOT NULL OR NOT ?)
             ORDER BY id",
        )
        .bind(failed_only)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let notice: StoredNotice =
                    serde_json::from_str(r.get::<&str, _>("body")).map_err(corrupt)?;
                let failed: Option<i64> = r.get("abandoned_at");
                Ok(OutboxRow {
                    id: r.get("id"),
                    output: r.get("output"),
                    state: if failed.is_some() {
                        "failed"
                    } else {
                        "waiting"
                    },
                    attempts: u32::try_from(r.get::<i64, _>("attempts")).map_err(corrupt)?,
                    at: from_ms(failed.unwrap_or(r.get("next_attempt_at")))?,
                    error: r.get("last_error"),
                    account: notice.account,
                    rule: notice.rule.as_str().to_owned(),
                    kind: notice.kind.as_str().to_owned(),
                    summary: notice.summary,
                })
            })
            .collect()
    }

    async fn record_polls(&self, polls: &[PollRecord<'_>]) -> Result<Vec<PollHealth>, StoreError> {
        batch::record_polls(&self.pool, polls).await
    }

    async fn judging(&self, windows: &[Window<'_>]) -> Result<Vec<Judging>, StoreError> {
        batch::judging(&self.pool, windows).await
    }

    async fn record_judgements(
        &self,
        judged: &[Judgement<'_>],
        routing: &Routing,
    ) -> Result<(), StoreError> {
        batch::record_judgements(&self.pool, judged, routing).await
    }

    async fn prune_snapshots(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let done = sqlx::query(
            "DELETE FROM snapshots WHERE taken_at < ?
               AND id NOT IN (SELECT MAX(id) FROM snapshots GROUP BY account)",
        )
        .bind(ms(before))
        .execute(&mut *tx)
        .await?;
        // Inventories no snapshot names any more.
        sqlx::query(
            "DELETE FROM inventories WHERE NOT EXISTS
               (SELECT 1 FROM snapshots s WHERE s.account = inventories.account
                  AND s.digest = inventories.digest)",
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }
}

/// Writes alert changes and their outbox rows inside `tx`.
async fn apply_in(
    tx: &mut sqlx::SqliteConnection,
    account: &Account,
    changes: &Changes,
    routing: &Routing,
) -> Result<(), StoreError> {
    let change = match changes.alerts.is_empty() {
        true => 0,
        false => alert_change(&mut *tx).await?,
    };
    for a in &changes.alerts {
        let updated = sqlx::query(
            "UPDATE alerts SET severity = ?, rank = ?, state = ?, summary = ?, fired_at = ?,
               last_notified_at = ?, resolved_at = ?, changed = ?
             WHERE fingerprint = ? AND state <> 'resolved'",
        )
        .bind(a.severity.as_str())
        .bind(i64::from(a.rank))
        .bind(a.state.as_str())
        .bind(&a.summary)
        .bind(a.fired_at.map(ms))
        .bind(a.last_notified_at.map(ms))
        .bind(a.resolved_at.map(ms))
        .bind(change)
        .bind(&a.fingerprint)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            sqlx::query(
                "INSERT INTO alerts (fingerprint, rule, account, resource, tier, severity, rank, state, summary,
                   started_at, fired_at, last_notified_at, resolved_at, changed)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&a.fingerprint)
            .bind(a.key.rule.as_str())
            .bind(&a.key.account)
            .bind(&a.key.resource)
            .bind(&a.key.tier)
            .bind(a.severity.as_str())
            .bind(i64::from(a.rank))
            .bind(a.state.as_str())
            .bind(&a.summary)
            .bind(ms(a.started_at))
            .bind(a.fired_at.map(ms))
            .bind(a.last_notified_at.map(ms))
            .bind(a.resolved_at.map(ms))
            .bind(change)
            .execute(&mut *tx)
            .await?;
        }
    }
    for n in &changes.notices {
        let decided_at = n.alert.last_notified_at.unwrap_or(n.alert.started_at);
        enqueue(&mut *tx, n, account, decided_at, routing, None).await?;
    }
    Ok(())
}
