//! The store on PostgreSQL, for two or more replicas: connecting (TLS with
//! rustls where the URL asks for it), refusing a server too old, and the
//! migrations in `migrations/postgres/`.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, Row};

use super::stored_snapshot::{self, Inventories};
use super::{at_ms, notice_at_ms};
use crate::domain::alert::{Acknowledgement, Alert, Changes};
use crate::domain::command::AlertRef;
use crate::domain::forecast::AccountView;
use crate::domain::model::{
    Account, AccountId, BalanceEntry, EnteredBucket, PollFailure, PollHealth, Snapshot,
};
use crate::domain::money::{Currency, Money};
use crate::domain::routing::Routing;
use crate::domain::silence::Silence;
use crate::ports::{
    AckOutcome, BalanceEntries, EndSilenceOutcome, FailedNotice, Judging, Mark, MessageRef,
    MessageRefs, NewSilence, OutboxItem, OutboxRow, Store, StoreError, StoredNotice, Window,
};
use crate::secret::redact;

mod escalations;
mod lease;
mod receipts;
mod requests;
mod rows;

use rows::{
    alert_from_row, corrupt, count, enqueue, from_json, health_in, json, mark_from_row,
    queue_notice, silence_from_row, snapshot_from_row, written_alert_from_row,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The number the alert writes of this transaction are marked with. Taken
/// before any alert row is touched: the counter's row lock then orders the
/// writers, so numbers commit in the order they are taken.
pub(crate) async fn alert_change(tx: &mut sqlx::PgConnection) -> Result<i64, StoreError> {
    Ok(
        sqlx::query_scalar("UPDATE alerts_written SET n = n + 1 RETURNING n")
            .fetch_one(&mut *tx)
            .await?,
    )
}

/// The oldest server purser runs on: 13 (`server_version_num` 130000).
pub const OLDEST: i64 = 130_000;

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    /// The token of the lease this replica holds, shared by its clones:
    /// `lead` sets it, a failed `renew` and `step_down` clear it (0), and
    /// the writes only a leader makes check it in their transaction. A
    /// store opened by a command, not a replica, is not fenced (`UNFENCED`).
    fence: Arc<AtomicI64>,
}

const UNFENCED: i64 = -1;

/// What a leader-only write found in the fence.
fn not_leader(held: Option<i64>, mine: i64) -> StoreError {
    StoreError::NotLeader(if mine == 0 {
        "this replica does not lead".to_owned()
    } else {
        format!(
            "this replica no longer leads (its token {mine}, the leader's {})",
            held.map_or("none".to_owned(), |t| t.to_string())
        )
    })
}

/// Whether a server of `version_num` (as `server_version_num` reads,
/// 150018 for 15.18) will do; the refusal names the version.
pub fn supported(version_num: i64) -> Result<(), String> {
    if version_num >= OLDEST {
        return Ok(());
    }
    // 90624 is 9.6.24; 120004 is 12.4.
    let (major, minor) = if version_num >= 100_000 {
        (format!("{}", version_num / 10_000), version_num % 10_000)
    } else {
        (
            format!("{}.{}", version_num / 10_000, (version_num / 100) % 100),
            version_num % 100,
        )
    };
    Err(format!(
        "PostgreSQL {major}.{minor} is older than purser supports; it needs {} or newer",
        OLDEST / 10_000
    ))
}

impl PgStore {
    /// Connects to `url` with at most `connections` at once, checks the
    /// server's version and migrates. `password`, when given, replaces any
    /// in the URL (so the URL itself can stay free of secrets).
    pub async fn open(
        url: &str,
        password: Option<&str>,
        connections: u32,
    ) -> Result<PgStore, StoreError> {
        // The URL is not repeated: it may hold a password.
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(StoreError::Unavailable(
                "the store URL is not a PostgreSQL URL: write postgres://user@host:5432/purser"
                    .into(),
            ));
        }
        let mut options = PgConnectOptions::from_str(url).map_err(|e| {
            StoreError::Unavailable(format!("the store URL is not a PostgreSQL URL: {e}"))
        })?;
        if let Some(p) = password {
            options = options.password(p);
        }
        let at = format!("{}:{}", options.get_host(), options.get_port());
        let unreachable = |e: sqlx::Error| {
            StoreError::Unavailable(format!(
                "the PostgreSQL store at {at} cannot be reached: {}",
                crate::secret::redact(&e.to_string())
            ))
        };
        // One connection first: a server that is not there is said at once,
        // not after the pool's patience.
        sqlx::postgres::PgConnection::connect_with(&options)
            .await
            .map_err(&unreachable)?
            .close()
            .await
            .map_err(&unreachable)?;
        let pool = PgPoolOptions::new()
            .max_connections(connections.max(1))
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(&unreachable)?;
        let version: String = sqlx::query_scalar("SHOW server_version_num")
            .fetch_one(&pool)
            .await?;
        let version: i64 = version.trim().parse().map_err(|_| {
            StoreError::Unavailable(format!(
                "the PostgreSQL server at {at} reports version {version:?}"
            ))
        })?;
        supported(version)
            .map_err(|why| StoreError::Unavailable(format!("the store at {at}: {why}")))?;
        MIGRATOR.run(&pool).await.map_err(|e| {
            StoreError::Unavailable(format!("migrating the PostgreSQL store at {at}: {e}"))
        })?;
        Ok(PgStore {
            pool,
            fence: Arc::new(AtomicI64::new(UNFENCED)),
        })
    }

    /// The store as one replica among others uses it: the writes only a
    /// leader makes are refused until `lead` gives it the lease.
    pub fn as_replica(self) -> PgStore {
        self.fence.store(0, Ordering::SeqCst);
        self
    }

    /// Calls `heard` with what another replica (or this one) wrote, as
    /// the database announces it: `outbox` (a notice queued), `requests` (a
    /// request asked for, decided or moved), or `all` after the connection
    /// was lost and made again (what changed meanwhile is unknown). Until
    /// `stop`.
    pub async fn listen(
        &self,
        heard: impl Fn(&str) + Send,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), StoreError> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
        listener.listen("purser_changes").await?;
        loop {
            tokio::select! {
                n = listener.try_recv() => match n? {
                    Some(n) => heard(n.payload()),
                    None => heard("all"),
                },
                _ = stop.changed() => return Ok(()),
            }
        }
    }

    /// Open alerts and waiting notices counted, for /metrics: two
    /// aggregate queries, whatever the number of rows.
    pub async fn tallies(&self) -> Result<crate::ports::Tallies, StoreError> {
        let count =
            |r: &sqlx::postgres::PgRow| u64::try_from(r.get::<i64, _>("n")).map_err(corrupt);
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
                    r.get::<DateTime<Utc>, _>("oldest"),
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

    /// Every alert recorded, newest first (for inspection).
    pub async fn all_alerts(&self) -> Result<Vec<Alert>, StoreError> {
        sqlx::query("SELECT * FROM alerts ORDER BY id DESC")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(alert_from_row)
            .collect()
    }

    /// Outbox rows as (output, notice, delivered), in the order queued.
    pub async fn outbox(&self) -> Result<Vec<(String, StoredNotice, bool)>, StoreError> {
        sqlx::query("SELECT output, body, delivered_at FROM outbox ORDER BY id")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok((
                    r.try_get("output")?,
                    from_json(r, "body")?,
                    r.try_get::<Option<DateTime<Utc>>, _>("delivered_at")?
                        .is_some(),
                ))
            })
            .collect()
    }

    /// Marks the rows `ids` of `table` (`outbox` or `pages`) as being sent
    /// from `at`, in a fenced write; how many were marked so already and not
    /// delivered: sends cut off before they were recorded.
    pub(crate) async fn mark_sending(
        &self,
        table: &'static str,
        ids: &[i64],
        at: DateTime<Utc>,
    ) -> Result<u32, StoreError> {
        let mut tx = self.pool.begin().await?;
        self.fence(&mut tx).await?;
        let before: Vec<Option<DateTime<Utc>>> = sqlx::query_scalar(&format!(
            "SELECT sending_at FROM {table} WHERE id = ANY($1) AND delivered_at IS NULL FOR UPDATE"
        ))
        .bind(ids)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query(&format!(
            "UPDATE {table} SET sending_at = $1 WHERE id = ANY($2)"
        ))
        .bind(at_ms(at))
        .bind(ids)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(u32::try_from(before.iter().filter(|b| b.is_some()).count()).unwrap_or(u32::MAX))
    }

    /// Records the token this replica holds (0: none), unless it is not a
    /// replica.
    fn set_fence(&self, token: i64) {
        let _ = self
            .fence
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |held| {
                (held != UNFENCED).then_some(token)
            });
    }

    /// Fails unless this replica holds the lease it last took, as the
    /// database says inside `tx`: the writes only a leader makes (a poll's
    /// results, a notice or page marked sent, an escalation's step) run
    /// this first, so a leader paused past its lease writes nothing when it
    /// wakes.
    async fn fence(&self, tx: &mut sqlx::PgConnection) -> Result<(), StoreError> {
        let mine = self.fence.load(Ordering::SeqCst);
        if mine == UNFENCED {
            return Ok(());
        }
        if mine == 0 {
            return Err(not_leader(None, 0));
        }
        PgStore::fenced(tx, mine).await
    }

    /// The server's version, as `server_version` reads (`15.18 (Debian…)`).
    pub async fn server_version(&self) -> Result<String, StoreError> {
        Ok(sqlx::query_scalar("SHOW server_version")
            .fetch_one(&self.pool)
            .await?)
    }

    /// Whether the connection to the server is encrypted (TLS).
    pub async fn encrypted(&self) -> Result<bool, StoreError> {
        Ok(sqlx::query_scalar::<_, Option<bool>>(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        )
        .fetch_optional(&self.pool)
        .await?
        .flatten()
        .unwrap_or(false))
    }

    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[async_trait]
impl Store for PgStore {
    async fn record_poll(
        &self,
        account: &AccountId,
        at: DateTime<Utc>,
        outcome: Result<&Snapshot, &PollFailure>,
    ) -> Result<PollHealth, StoreError> {
        let at = at_ms(at);
        let mut tx = self.pool.begin().await?;
        self.fence(&mut tx).await?;
        // One poll of an account at a time writes its health.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(account.as_str())
            .execute(&mut *tx)
            .await?;
        let mut health = health_in(&mut tx, account).await?;
        match outcome {
            Ok(snapshot) => {
                let stored = stored_snapshot::split(snapshot)?;
                sqlx::query(
                    "INSERT INTO inventories (account, digest, body) VALUES ($1, $2, $3::jsonb)
                     ON CONFLICT DO NOTHING",
                )
                .bind(account.as_str())
                .bind(&stored.digest)
                .bind(stored.inventory()?)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO snapshots (account, taken_at, body, digest)
                     VALUES ($1, $2, $3::jsonb, $4)",
                )
                .bind(account.as_str())
                .bind(at_ms(snapshot.taken_at))
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
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (account) DO UPDATE SET last_success_at = excluded.last_success_at,
               last_attempt_at = excluded.last_attempt_at, last_error = excluded.last_error,
               last_error_kind = excluded.last_error_kind,
               consecutive_failures = excluded.consecutive_failures",
        )
        .bind(account.as_str())
        .bind(health.last_success_at)
        .bind(health.last_attempt_at)
        .bind(health.last_error.as_ref().map(|e| e.message.as_str()))
        .bind(health.last_error.as_ref().map(|e| e.kind.as_str()))
        .bind(i32::try_from(health.consecutive_failures).unwrap_or(i32::MAX))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(health)
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
        // The newest snapshot before the window is kept too, as on SQLite.
        let rows = sqlx::query(
            "SELECT s.body::text AS body, s.digest, i.body::text AS inventory FROM snapshots s
               LEFT JOIN inventories i ON i.account = s.account AND i.digest = s.digest
             WHERE s.account = $1
               AND s.taken_at >= LEAST($2, (SELECT MAX(taken_at) FROM snapshots WHERE account = $1))
             ORDER BY s.taken_at, s.id",
        )
        .bind(account.as_str())
        .bind(at_ms(since))
        .fetch_all(&self.pool)
        .await?;
        let mut inventories = Inventories::default();
        rows.iter()
            .map(|r| snapshot_from_row(r, &mut inventories))
            .collect()
    }

    async fn judging(&self, windows: &[Window<'_>]) -> Result<Vec<Judging>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let numbers: Vec<i64> = (0i64..).take(windows.len()).collect();
        let accounts: Vec<&str> = windows.iter().map(|w| w.account.as_str()).collect();
        let sinces: Vec<DateTime<Utc>> = windows.iter().map(|w| at_ms(w.since)).collect();
        let fresh: Vec<Option<DateTime<Utc>>> =
            windows.iter().map(|w| w.fresh.map(at_ms)).collect();
        // As on SQLite: from the window's start, or from the newest when
        // none is newer; only the first, the one after it and the newest
        // when the first and the newest carry tallies of one chain; the
        // newest whole unless the caller holds one as new.
        let rows = sqlx::query(
            "WITH w AS (SELECT * FROM unnest($1::bigint[], $2::text[], $3::timestamptz[], $4::timestamptz[])
                          AS w (i, account, since, fresh)),
             n AS MATERIALIZED (
               SELECT w.i, w.account, w.fresh, m.newest, LEAST(w.since, m.newest) AS cut
               FROM w CROSS JOIN LATERAL
                 (SELECT MAX(taken_at) AS newest FROM snapshots s WHERE s.account = w.account) m),
             f AS MATERIALIZED (
               SELECT n.*, (SELECT MIN(taken_at) FROM snapshots s
                            WHERE s.account = n.account AND s.taken_at >= n.cut) AS first
               FROM n),
             g AS MATERIALIZED (
               SELECT f.*, (SELECT MIN(taken_at) FROM snapshots s
                            WHERE s.account = f.account AND s.taken_at > f.first) AS second
               FROM f),
             t AS MATERIALIZED (
               SELECT g.*,
                 (SELECT max(s.body -> 'tally' ->> 'chain') FROM snapshots s
                  WHERE s.account = g.account AND s.taken_at = g.first)
                 = (SELECT max(s.body -> 'tally' ->> 'chain') FROM snapshots s
                    WHERE s.account = g.account AND s.taken_at = g.newest) AS tallied
               FROM g)
             SELECT t.i, s.body::text AS body, s.digest, NULL::text AS inventory
             FROM t JOIN snapshots s ON s.account = t.account AND s.taken_at = t.first
             WHERE t.first < t.newest
             UNION ALL
             SELECT t.i, s.body::text, s.digest, NULL::text
             FROM t JOIN snapshots s ON s.account = t.account AND s.taken_at = t.second
             WHERE t.second < t.newest
             UNION ALL
             SELECT t.i, s.body::text, s.digest, i.body::text
             FROM t JOIN snapshots s ON s.account = t.account AND s.taken_at = t.newest
               LEFT JOIN inventories i ON (t.fresh IS NULL OR t.fresh < s.taken_at)
                 AND i.account = s.account AND i.digest = s.digest
             UNION ALL
             SELECT t.i, s.body::text, s.digest, NULL::text
             FROM t JOIN snapshots s ON s.account = t.account
               AND s.taken_at > t.second AND s.taken_at < t.newest
             WHERE t.tallied IS NOT TRUE",
        )
        .bind(&numbers)
        .bind(&accounts)
        .bind(&sinces)
        .bind(&fresh)
        .fetch_all(&mut *conn)
        .await?;
        let mut histories: Vec<Vec<Snapshot>> = vec![Vec::new(); windows.len()];
        let mut inventories = Inventories::default();
        for r in &rows {
            let snapshot = snapshot_from_row(r, &mut inventories)?;
            let i: i64 = r.try_get("i")?;
            if let Some(h) = usize::try_from(i).ok().and_then(|i| histories.get_mut(i)) {
                h.push(snapshot);
            }
        }
        let mut by_account: HashMap<&str, Judging> =
            accounts.iter().map(|a| (*a, Judging::default())).collect();
        let open = sqlx::query(
            "SELECT * FROM alerts WHERE account = ANY($1) AND state <> 'resolved' ORDER BY id",
        )
        .bind(&accounts)
        .fetch_all(&mut *conn)
        .await?;
        for r in &open {
            if let Some(j) = by_account.get_mut(r.try_get::<&str, _>("account")?) {
                j.open.push(alert_from_row(r)?);
            }
        }
        let failed = sqlx::query(
            "SELECT id, account, output, attempts, last_error, abandoned_at, body FROM outbox
             WHERE abandoned_at IS NOT NULL AND delivered_at IS NULL AND account = ANY($1)
             ORDER BY id",
        )
        .bind(&accounts)
        .fetch_all(&mut *conn)
        .await?;
        for r in &failed {
            if let Some(j) = by_account.get_mut(r.try_get::<&str, _>("account")?) {
                j.failed.push(failed_from_row(r)?);
            }
        }
        Ok(stored_snapshot::judgings(windows, histories, by_account))
    }

    async fn latest_snapshot(&self, account: &AccountId) -> Result<Option<Snapshot>, StoreError> {
        let row = sqlx::query(
            "SELECT s.body::text AS body, s.digest, i.body::text AS inventory FROM snapshots s
               LEFT JOIN inventories i ON i.account = s.account AND i.digest = s.digest
             WHERE s.account = $1 ORDER BY s.taken_at DESC, s.id DESC LIMIT 1",
        )
        .bind(account.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| snapshot_from_row(&r, &mut Inventories::default()))
            .transpose()
    }

    async fn open_alerts(&self, account: &AccountId) -> Result<Vec<Alert>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM alerts WHERE account = $1 AND state <> 'resolved' ORDER BY id",
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
            "SELECT * FROM alerts WHERE state = 'firing' ORDER BY severity, account, id LIMIT $1 OFFSET $2",
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
        let rows = sqlx::query("SELECT * FROM alerts WHERE changed > $1 ORDER BY changed, id")
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
             WHERE changed > $1 AND state <> 'firing'",
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
        let at = at_ms(at);
        let mut tx = self.pool.begin().await?;
        // Hex digits only (AlertRef guarantees it), so LIKE needs no escaping.
        let rows = sqlx::query(
            "SELECT * FROM alerts WHERE state <> 'resolved' AND fingerprint LIKE $1 ORDER BY id",
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
                    // Guarded by acked_by IS NULL: of two racing clicks, on
                    // any replicas, one wins.
                    let done = sqlx::query(
                        "UPDATE alerts SET acked_by = $1, acked_at = $2, changed = $3
                         WHERE fingerprint = $4 AND state <> 'resolved' AND acked_by IS NULL",
                    )
                    .bind(by)
                    .bind(at)
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
        let mut tx = self.pool.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO silences (matchers, starts_at, ends_at, created_by, reason)
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(&matchers)
        .bind(at_ms(s.starts_at))
        .bind(at_ms(s.ends_at))
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
        let at = at_ms(at);
        let mut tx = self.pool.begin().await?;
        let Some(row) = sqlx::query("SELECT * FROM silences WHERE id = $1 FOR UPDATE")
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
        sqlx::query("UPDATE silences SET ends_at = $1, ended_by = $2 WHERE id = $3")
            .bind(at)
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
        let rows = sqlx::query("SELECT * FROM silences WHERE ends_at > $1 ORDER BY ends_at, id")
            .bind(at_ms(now))
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
        let mut tx = self.pool.begin().await?;
        self.fence(&mut tx).await?;
        let change = match changes.alerts.is_empty() {
            true => 0,
            false => alert_change(&mut tx).await?,
        };
        for a in &changes.alerts {
            let updated = sqlx::query(
                "UPDATE alerts SET severity = $1, rank = $2, state = $3, summary = $4, fired_at = $5,
                   last_notified_at = $6, resolved_at = $7, changed = $8
                 WHERE fingerprint = $9 AND state <> 'resolved'",
            )
            .bind(a.severity.as_str())
            .bind(i32::try_from(a.rank).unwrap_or(i32::MAX))
            .bind(a.state.as_str())
            .bind(&a.summary)
            .bind(a.fired_at.map(at_ms))
            .bind(a.last_notified_at.map(at_ms))
            .bind(a.resolved_at.map(at_ms))
            .bind(change)
            .bind(&a.fingerprint)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated == 0 {
                sqlx::query(
                    "INSERT INTO alerts (fingerprint, rule, account, resource, tier, severity, rank, state, summary,
                       started_at, fired_at, last_notified_at, resolved_at, changed)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
                )
                .bind(&a.fingerprint)
                .bind(a.key.rule.as_str())
                .bind(&a.key.account)
                .bind(&a.key.resource)
                .bind(&a.key.tier)
                .bind(a.severity.as_str())
                .bind(i32::try_from(a.rank).unwrap_or(i32::MAX))
                .bind(a.state.as_str())
                .bind(&a.summary)
                .bind(at_ms(a.started_at))
                .bind(a.fired_at.map(at_ms))
                .bind(a.last_notified_at.map(at_ms))
                .bind(a.resolved_at.map(at_ms))
                .bind(change)
                .execute(&mut *tx)
                .await?;
            }
        }
        for n in &changes.notices {
            let decided_at = n.alert.last_notified_at.unwrap_or(n.alert.started_at);
            enqueue(&mut tx, n, account, decided_at, routing, None).await?;
        }
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
             WHERE output = $1 AND delivered_at IS NULL AND abandoned_at IS NULL
               AND next_attempt_at <= $2
             ORDER BY id LIMIT $3",
        )
        .bind(output)
        .bind(at_ms(now))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(OutboxItem {
                    id: r.try_get("id")?,
                    output: r.try_get("output")?,
                    attempts: count(r, "attempts")?,
                    notice: from_json(r, "body")?,
                })
            })
            .collect()
    }

    async fn next_notice_due(&self, output: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(next_attempt_at) FROM outbox
             WHERE output = $1 AND delivered_at IS NULL AND abandoned_at IS NULL",
        )
        .bind(output)
        .fetch_one(&self.pool)
        .await?)
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
               AND ($1::text IS NULL OR account = $1)
             ORDER BY id",
        )
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
        // Due at once, whoever's clock asks: no later than when it was decided.
        let done = sqlx::query(
            "UPDATE outbox SET abandoned_at = NULL, attempts = 0,
                    next_attempt_at = LEAST($1, created_at)
             WHERE abandoned_at IS NOT NULL AND delivered_at IS NULL
               AND ($2::bigint[] IS NULL OR id = ANY($2))",
        )
        .bind(at_ms(now))
        .bind(ids.map(<[i64]>::to_vec))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn sending(&self, ids: &[i64], at: DateTime<Utc>) -> Result<u32, StoreError> {
        self.mark_sending("outbox", ids, at).await
    }

    async fn mark_delivered(&self, id: i64, at: DateTime<Utc>) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        self.fence(&mut tx).await?;
        sqlx::query(
            "UPDATE outbox SET delivered_at = $1, attempts = attempts + 1, last_error = NULL, sending_at = NULL WHERE id = $2",
        )
        .bind(at_ms(at))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn mark_failed(
        &self,
        id: i64,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let error = redact(error);
        let mut tx = self.pool.begin().await?;
        self.fence(&mut tx).await?;
        match retry_at {
            Some(at) => sqlx::query(
                "UPDATE outbox SET attempts = attempts + 1, last_error = $1, next_attempt_at = $2, sending_at = NULL WHERE id = $3",
            )
            .bind(error.as_ref())
            .bind(at_ms(at))
            .bind(id),
            None => sqlx::query(
                "UPDATE outbox SET attempts = attempts + 1, last_error = $1, abandoned_at = next_attempt_at, sending_at = NULL WHERE id = $2",
            )
            .bind(error.as_ref())
            .bind(id),
        }
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn record_view(&self, account: &AccountId, view: &AccountView) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        self.fence(&mut tx).await?;
        sqlx::query(
            "INSERT INTO account_views (account, body, taken_at) VALUES ($1, $2::jsonb, $3)
             ON CONFLICT (account) DO UPDATE SET body = excluded.body, taken_at = excluded.taken_at",
        )
        .bind(account.as_str())
        .bind(json(view)?)
        .bind(at_ms(view.taken_at))
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE views_written SET n = n + 1")
            .execute(&mut *tx)
            .await?;
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
                let id = AccountId::parse(r.try_get::<&str, _>("account")?).map_err(corrupt)?;
                Ok((id, from_json(r, "body")?))
            })
            .collect()
    }

    async fn postpone(&self, id: i64, why: &str, until: DateTime<Utc>) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        self.fence(&mut tx).await?;
        sqlx::query(
            "UPDATE outbox SET last_error = $1, next_attempt_at = $2, sending_at = NULL WHERE id = $3",
        )
        .bind(redact(why).as_ref())
        .bind(at_ms(until))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn undelivered(&self, failed_only: bool) -> Result<Vec<OutboxRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, output, attempts, next_attempt_at, abandoned_at, last_error, body
             FROM outbox WHERE delivered_at IS NULL AND (abandoned_at IS NOT NULL OR NOT $1)
             ORDER BY id",
        )
        .bind(failed_only)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let notice: StoredNotice = from_json(r, "body")?;
                let failed: Option<DateTime<Utc>> = r.try_get("abandoned_at")?;
                Ok(OutboxRow {
                    id: r.try_get("id")?,
                    output: r.try_get("output")?,
                    state: if failed.is_some() {
                        "failed"
                    } else {
                        "waiting"
                    },
                    attempts: count(r, "attempts")?,
                    at: match failed {
                        Some(at) => at,
                        None => r.try_get("next_attempt_at")?,
                    },
                    error: r.try_get("last_error")?,
                    account: notice.account,
                    rule: notice.rule.as_str().to_owned(),
                    kind: notice.kind.as_str().to_owned(),
                    summary: notice.summary,
                })
            })
            .collect()
    }

    async fn prune_snapshots(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        self.fence(&mut tx).await?;
        let done = sqlx::query(
            "DELETE FROM snapshots WHERE taken_at < $1
               AND id NOT IN (SELECT MAX(id) FROM snapshots GROUP BY account)",
        )
        .bind(at_ms(before))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        // Inventories no snapshot names any more. A poll that takes one up
        // again meanwhile holds it through the foreign key, and this fails
        // rather than take it from under that snapshot: the next prune
        // tries again.
        let orphans = sqlx::query(
            "DELETE FROM inventories i WHERE NOT EXISTS
               (SELECT 1 FROM snapshots s WHERE s.account = i.account AND s.digest = i.digest)",
        )
        .execute(&self.pool)
        .await;
        match orphans {
            Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => {
                tracing::info!(
                    "an inventory being pruned was taken up again; left for the next prune"
                );
            }
            other => {
                other?;
            }
        }
        Ok(done.rows_affected())
    }
}

#[async_trait]
impl MessageRefs for PgStore {
    async fn record_message(
        &self,
        output: &str,
        at: &MessageRef,
        notices: &[StoredNotice],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for (position, n) in notices.iter().enumerate() {
            let n = notice_at_ms(n);
            sqlx::query(
                "INSERT INTO chat_messages (fingerprint, started_at, output, channel, message, notice, position)
                 VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7)
                 ON CONFLICT (fingerprint, started_at, output) DO UPDATE
                   SET channel = excluded.channel, message = excluded.message,
                       notice = excluded.notice, position = excluded.position",
            )
            .bind(&n.fingerprint)
            .bind(n.started_at)
            .bind(output)
            .bind(&at.channel)
            .bind(&at.message)
            .bind(json(&n)?)
            .bind(i32::try_from(position).unwrap_or(i32::MAX))
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
             WHERE fingerprint = $1 AND started_at = $2 AND output = $3",
        )
        .bind(fingerprint)
        .bind(at_ms(started_at))
        .bind(output)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(MessageRef {
                channel: r.try_get("channel")?,
                message: r.try_get("message")?,
            })
        })
        .transpose()
    }

    async fn shown(&self, output: &str, at: &MessageRef) -> Result<Vec<StoredNotice>, StoreError> {
        let rows = sqlx::query(
            "SELECT notice FROM chat_messages
             WHERE channel = $1 AND message = $2 AND output = $3 AND notice IS NOT NULL
             ORDER BY position",
        )
        .bind(&at.channel)
        .bind(&at.message)
        .bind(output)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| from_json(r, "notice")).collect()
    }

    async fn alerts_in(&self, at: &MessageRef) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT fingerprint FROM chat_messages WHERE channel = $1 AND message = $2",
        )
        .bind(&at.channel)
        .bind(&at.message)
        .fetch_all(&self.pool)
        .await?)
    }
}

fn bucket_kind(b: &EnteredBucket) -> &'static str {
    match b {
        EnteredBucket::Contract(_) => "contract",
        EnteredBucket::Unallocated => "unallocated",
    }
}

fn entry_from_row(r: &PgRow) -> Result<BalanceEntry, StoreError> {
    let code: String = r.try_get("currency")?;
    let currency = Currency::from_code(&code)
        .ok_or_else(|| corrupt(format!("balance entry: currency {code}")))?;
    let bucket = match (
        r.try_get::<Option<String>, _>("bucket_kind")?.as_deref(),
        r.try_get::<Option<String>, _>("bucket_name")?,
    ) {
        (None, _) => None,
        (Some("contract"), Some(name)) => Some(EnteredBucket::Contract(name)),
        (Some("unallocated"), _) => Some(EnteredBucket::Unallocated),
        (Some(other), _) => return Err(corrupt(format!("balance entry: part {other:?}"))),
    };
    Ok(BalanceEntry {
        bucket,
        amount: Money::new(r.try_get("amount")?, currency),
        as_of: r.try_get("as_of")?,
        entered_by: r.try_get("entered_by")?,
        entered_at: r.try_get("entered_at")?,
    })
}

#[async_trait]
impl BalanceEntries for PgStore {
    async fn record_balance_entry(
        &self,
        account: &AccountId,
        entry: &BalanceEntry,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO balance_entries
               (account, amount, currency, as_of, entered_by, entered_at, bucket_kind, bucket_name)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(account.as_str())
        .bind(entry.amount.amount())
        .bind(entry.amount.currency().code())
        .bind(at_ms(entry.as_of))
        .bind(&entry.entered_by)
        .bind(at_ms(entry.entered_at))
        .bind(entry.bucket.as_ref().map(bucket_kind))
        .bind(entry.bucket.as_ref().map(|b| b.name().to_owned()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn latest_balance_entry(
        &self,
        account: &AccountId,
    ) -> Result<Option<BalanceEntry>, StoreError> {
        let row = sqlx::query(
            "SELECT * FROM balance_entries WHERE account = $1 AND bucket_kind IS NULL
             ORDER BY as_of DESC, id DESC LIMIT 1",
        )
        .bind(account.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(entry_from_row).transpose()
    }

    async fn bucket_entries(&self, account: &AccountId) -> Result<Vec<BalanceEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT ON (bucket_kind, bucket_name) * FROM balance_entries
             WHERE account = $1 AND bucket_kind IS NOT NULL
             ORDER BY bucket_kind, bucket_name, as_of DESC, id DESC",
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
        let ids: Vec<&str> = accounts.iter().map(|a| a.as_str()).collect();
        let rows = sqlx::query(
            "SELECT DISTINCT ON (account, bucket_kind, bucket_name) * FROM balance_entries
             WHERE account = ANY($1) AND bucket_kind IS NOT NULL
             ORDER BY account, bucket_kind, bucket_name, as_of DESC, id DESC",
        )
        .bind(&ids)
        .fetch_all(&self.pool)
        .await?;
        let mut out: HashMap<AccountId, Vec<BalanceEntry>> = HashMap::new();
        for r in &rows {
            let account = AccountId::parse(r.try_get::<&str, _>("account")?).map_err(corrupt)?;
            out.entry(account).or_default().push(entry_from_row(r)?);
        }
        Ok(out)
    }
}

fn failed_from_row(r: &PgRow) -> Result<FailedNotice, StoreError> {
    Ok(FailedNotice {
        id: r.try_get("id")?,
        output: r.try_get("output")?,
        attempts: count(r, "attempts")?,
        error: r
            .try_get::<Option<String>, _>("last_error")?
            .unwrap_or_default(),
        failed_at: r.try_get("abandoned_at")?,
        notice: from_json(r, "body")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_older_than_13_are_refused_by_name() {
        assert!(supported(150_018).is_ok());
        assert!(supported(130_000).is_ok());
        assert_eq!(
            supported(120_004).unwrap_err(),
            "PostgreSQL 12.4 is older than purser supports; it needs 13 or newer"
        );
        assert_eq!(
            supported(90_624).unwrap_err(),
            "PostgreSQL 9.6.24 is older than purser supports; it needs 13 or newer"
        );
    }
}
