//! A cycle's polls written and read many accounts at a time: each statement
//! is a trip to SQLite's worker thread, and each commit a write to the log,
//! so a cycle of thousands of accounts pays for a few hundred of each, not
//! for a dozen per account.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};

use super::rows::{
    alert_from_row, entry_from_row, failed_from_row, health_from_row, snapshot_from_row,
};
use super::{apply_in, corrupt, ms};
use crate::adapters::stored_snapshot::{self, Inventories, Split};
use crate::domain::model::{AccountId, BalanceEntry, PollFailure, PollHealth};
use crate::domain::routing::Routing;
use crate::ports::{Judgement, Judging, PollRecord, StoreError, Window};
use crate::secret::redact;

/// A batch as one JSON array, bound to a statement's single `?` and read
/// back there through `json_each`. The statement's text is then the same
/// whatever the batch's size, so each connection prepares it once and
/// keeps it. Built with a placeholder per value, it was a new text for each
/// size: prepared again (at hundreds of rows, a millisecond each), and kept
/// in each connection's cache of statements beside the others, most of a
/// resting daemon's SQLite memory.
fn json_rows(rows: &impl Serialize) -> Result<String, StoreError> {
    serde_json::to_string(rows).map_err(corrupt)
}

/// A `poll_health` row as the upsert reads it: account, last success,
/// last attempt, last error and its kind, failures in a row.
type HealthRow<'a> = (
    &'a str,
    Option<i64>,
    Option<i64>,
    Option<&'a str>,
    Option<&'a str>,
    u32,
);

fn distinct<'a>(ids: impl Iterator<Item = &'a AccountId>) -> Vec<&'a str> {
    let mut ids: Vec<&str> = ids.map(AccountId::as_str).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Rows of `sql`, whose one `?` is the accounts `ids` (as `IN (SELECT value
/// FROM json_each(?))`).
async fn rows_for(
    conn: &mut sqlx::SqliteConnection,
    sql: &'static str,
    ids: &[&str],
) -> Result<Vec<SqliteRow>, StoreError> {
    Ok(sqlx::query(sql)
        .bind(json_rows(&ids)?)
        .fetch_all(&mut *conn)
        .await?)
}

pub(super) async fn record_polls(
    pool: &SqlitePool,
    polls: &[PollRecord<'_>],
) -> Result<Vec<PollHealth>, StoreError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let ids = distinct(polls.iter().map(|p| p.account));
    let mut healths: HashMap<String, PollHealth> = HashMap::with_capacity(ids.len());
    for r in rows_for(
        &mut tx,
        "SELECT * FROM poll_health WHERE account IN (SELECT value FROM json_each(?))",
        &ids,
    )
    .await?
    {
        healths.insert(r.get("account"), health_from_row(&r)?);
    }
    let mut after = Vec::with_capacity(polls.len());
    let mut snapshots: Vec<(&str, i64, Split)> = Vec::new();
    for p in polls {
        let health = healths.entry(p.account.as_str().to_owned()).or_default();
        match p.outcome {
            Ok(snapshot) => {
                let stored = stored_snapshot::split(snapshot)?;
                snapshots.push((p.account.as_str(), ms(snapshot.taken_at), stored));
                health.succeeded(p.at);
            }
            Err(error) => health.failed(
                p.at,
                PollFailure {
                    kind: error.kind,
                    message: redact(&error.message).into_owned(),
                },
            ),
        }
        after.push(health.clone());
    }
    // Most polls find the resources and orders they saw already kept: only
    // the new ones are written.
    let mut named: Vec<(&str, &str, &Split)> = snapshots
        .iter()
        .map(|(account, _, s)| (*account, s.digest.as_str(), s))
        .collect();
    named.sort_unstable_by_key(|(account, digest, _)| (*account, *digest));
    named.dedup_by_key(|(account, digest, _)| (*account, *digest));
    let asked: Vec<(&str, &str)> = named.iter().map(|(a, d, _)| (*a, *d)).collect();
    let found: Vec<(String, String)> = sqlx::query_as(
        "SELECT i.account, i.digest FROM json_each(?) j
           JOIN inventories i ON i.account = j.value ->> 0 AND i.digest = j.value ->> 1",
    )
    .bind(json_rows(&asked)?)
    .fetch_all(&mut *tx)
    .await?;
    let kept: HashSet<(&str, &str)> = found.iter().map(|(a, d)| (&**a, &**d)).collect();
    let new = named
        .iter()
        .filter(|(a, d, _)| !kept.contains(&(*a, *d)))
        .map(|(a, d, s)| Ok((*a, *d, s.inventory()?)))
        .collect::<Result<Vec<_>, StoreError>>()?;
    // `WHERE true`: an upsert's SELECT needs a WHERE, or SQLite reads its
    // ON as a join's.
    if !new.is_empty() {
        sqlx::query(
            "INSERT INTO inventories (account, digest, body)
             SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each(?) WHERE true
             ON CONFLICT DO NOTHING",
        )
        .bind(json_rows(&new)?)
        .execute(&mut *tx)
        .await?;
    }
    if !snapshots.is_empty() {
        let rows: Vec<(&str, i64, &str, &str)> = snapshots
            .iter()
            .map(|(account, taken_at, s)| {
                (*account, *taken_at, s.balance.as_str(), s.digest.as_str())
            })
            .collect();
        sqlx::query(
            "INSERT INTO snapshots (account, taken_at, body, digest)
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3 FROM json_each(?)",
        )
        .bind(json_rows(&rows)?)
        .execute(&mut *tx)
        .await?;
    }
    let last: Vec<HealthRow> = ids
        .iter()
        .filter_map(|id| healths.get(*id).map(|h| (*id, h)))
        .map(|(id, h)| {
            (
                id,
                h.last_success_at.map(ms),
                h.last_attempt_at.map(ms),
                h.last_error.as_ref().map(|e| e.message.as_str()),
                h.last_error.as_ref().map(|e| e.kind.as_str()),
                h.consecutive_failures,
            )
        })
        .collect();
    if !last.is_empty() {
        sqlx::query(
            "INSERT INTO poll_health (account, last_success_at, last_attempt_at, last_error,
               last_error_kind, consecutive_failures)
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5
             FROM json_each(?) WHERE true
             ON CONFLICT (account) DO UPDATE SET last_success_at = excluded.last_success_at,
               last_attempt_at = excluded.last_attempt_at, last_error = excluded.last_error,
               last_error_kind = excluded.last_error_kind,
               consecutive_failures = excluded.consecutive_failures",
        )
        .bind(json_rows(&last)?)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(after)
}

pub(super) async fn judging(
    pool: &SqlitePool,
    windows: &[Window<'_>],
) -> Result<Vec<Judging>, StoreError> {
    let mut conn = pool.acquire().await?;
    let mut histories: Vec<Vec<crate::domain::model::Snapshot>> = vec![Vec::new(); windows.len()];
    let mut inventories = Inventories::default();
    let rows: Vec<(usize, &str, i64, Option<i64>)> = windows
        .iter()
        .enumerate()
        .map(|(i, w)| (i, w.account.as_str(), ms(w.since), w.fresh.map(ms)))
        .collect();
    // The window, as `history` reads it: from its start, or from the
    // newest snapshot when none is newer. When its first snapshot and
    // the newest carry tallies of one chain, so does every one between,
    // and the rules need only those two (`forecast::burn_rate`); the one
    // after the first too, since rows are compared here by the
    // millisecond and the rules by the nanosecond: a first in the
    // window's first millisecond may fall just before it. The rest are
    // left unread. Only the newest is read whole, and not even
    // that when the caller holds one as new: of those before it the
    // rules read the balance, and a fleet's resources decoded again at
    // every poll would be most of a cycle's work.
    let read = sqlx::query(
        "WITH w (i, account, since, fresh) AS (
           SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3 FROM json_each(?)),
         n AS MATERIALIZED (
           SELECT i, account, fresh, newest, MIN(since, newest) AS cut FROM (
             SELECT i, account, since, fresh,
               (SELECT MAX(taken_at) FROM snapshots m WHERE m.account = w.account) AS newest
             FROM w)),
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
             (SELECT json_extract(s.body, '$.tally.chain') FROM snapshots s
              WHERE s.account = g.account AND s.taken_at = g.first)
             = (SELECT json_extract(s.body, '$.tally.chain') FROM snapshots s
                WHERE s.account = g.account AND s.taken_at = g.newest) AS tallied
           FROM g)
         SELECT t.i, s.body, s.digest, NULL AS inventory
         FROM t JOIN snapshots s ON s.account = t.account AND s.taken_at = t.first
         WHERE t.first < t.newest
         UNION ALL
         SELECT t.i, s.body, s.digest, NULL AS inventory
         FROM t JOIN snapshots s ON s.account = t.account AND s.taken_at = t.second
         WHERE t.second < t.newest
         UNION ALL
         SELECT t.i, s.body, s.digest, i.body AS inventory
         FROM t JOIN snapshots s ON s.account = t.account AND s.taken_at = t.newest
           LEFT JOIN inventories i ON (t.fresh IS NULL OR t.fresh < s.taken_at)
             AND i.account = s.account AND i.digest = s.digest
         UNION ALL
         SELECT t.i, s.body, s.digest, NULL AS inventory
         FROM t JOIN snapshots s ON s.account = t.account
           AND s.taken_at > t.second AND s.taken_at < t.newest
         WHERE t.tallied IS NOT 1",
    )
    .bind(json_rows(&rows)?)
    .fetch_all(&mut *conn)
    .await?;
    for r in read {
        let snapshot = snapshot_from_row(&r, &mut inventories)?;
        let i: i64 = r.get("i");
        if let Some(h) = usize::try_from(i).ok().and_then(|i| histories.get_mut(i)) {
            h.push(snapshot);
        }
    }
    let mut by_account: HashMap<&str, Judging> = windows
        .iter()
        .map(|w| (w.account.as_str(), Judging::default()))
        .collect();
    let ids = distinct(windows.iter().map(|w| w.account));
    let open = rows_for(
        &mut conn,
        "SELECT * FROM alerts
         WHERE state <> 'resolved' AND account IN (SELECT value FROM json_each(?))
         ORDER BY id",
        &ids,
    )
    .await?;
    for r in &open {
        if let Some(j) = by_account.get_mut(r.get::<&str, _>("account")) {
            j.open.push(alert_from_row(r)?);
        }
    }
    let failed = rows_for(
        &mut conn,
        "SELECT id, account, output, attempts, last_error, abandoned_at, body FROM outbox
         WHERE abandoned_at IS NOT NULL AND delivered_at IS NULL
           AND account IN (SELECT value FROM json_each(?))
         ORDER BY id",
        &ids,
    )
    .await?;
    for r in &failed {
        if let Some(j) = by_account.get_mut(r.get::<&str, _>("account")) {
            j.failed.push(failed_from_row(r)?);
        }
    }
    Ok(stored_snapshot::judgings(windows, histories, by_account))
}

pub(super) async fn record_judgements(
    pool: &SqlitePool,
    judged: &[Judgement<'_>],
    routing: &Routing,
) -> Result<(), StoreError> {
    // One row per account (the last view given), as an upsert of several
    // rows cannot change one row twice.
    let mut latest: HashMap<&str, &crate::domain::forecast::AccountView> = HashMap::new();
    for j in judged {
        if let Some(v) = j.view {
            latest.insert(j.account.id.as_str(), v);
        }
    }
    let views: Vec<(&str, String, i64)> = latest
        .into_iter()
        .map(|(id, v)| {
            Ok((
                id,
                serde_json::to_string(v).map_err(corrupt)?,
                ms(v.taken_at),
            ))
        })
        .collect::<Result<_, StoreError>>()?;
    if views.is_empty() && judged.iter().all(|j| j.changes.is_empty()) {
        return Ok(());
    }
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    if !views.is_empty() {
        sqlx::query(
            "INSERT INTO account_views (account, body, taken_at)
             SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each(?) WHERE true
             ON CONFLICT (account) DO UPDATE SET body = excluded.body, taken_at = excluded.taken_at",
        )
        .bind(json_rows(&views)?)
        .execute(&mut *tx)
        .await?;
    }
    if !views.is_empty() {
        sqlx::query(super::VIEWS_WRITTEN).execute(&mut *tx).await?;
    }
    for j in judged.iter().filter(|j| !j.changes.is_empty()) {
        apply_in(&mut tx, j.account, j.changes, routing).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The entries in force for each part of each of `accounts` (as
/// `bucket_entries` reads one account's), a chunk of accounts at a time.
pub(super) async fn bucket_entries_of(
    pool: &SqlitePool,
    accounts: &[&AccountId],
) -> Result<HashMap<AccountId, Vec<BalanceEntry>>, StoreError> {
    let mut conn = pool.acquire().await?;
    let ids = distinct(accounts.iter().copied());
    let rows = rows_for(
        &mut conn,
        "SELECT account, amount, currency, as_of, entered_by, entered_at, bucket_kind, bucket_name
           FROM balance_entries e
         WHERE bucket_kind IS NOT NULL
           AND id = (SELECT id FROM balance_entries x
                      WHERE x.account = e.account AND x.bucket_kind = e.bucket_kind
                        AND x.bucket_name = e.bucket_name
                      ORDER BY as_of DESC, id DESC LIMIT 1)
           AND account IN (SELECT value FROM json_each(?))
         ORDER BY account, bucket_kind, bucket_name",
        &ids,
    )
    .await?;
    let mut out: HashMap<AccountId, Vec<BalanceEntry>> = HashMap::new();
    for r in &rows {
        let account = AccountId::parse(r.get::<&str, _>("account")).map_err(corrupt)?;
        out.entry(account).or_default().push(entry_from_row(r)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::rules::tests::snapshot;
    use sqlx::Connection;
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

    /// A migrated store in a temporary directory, on one connection.
    async fn one_connection() -> (tempfile::TempDir, SqlitePool) {
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("p.db"))
            .create_if_missing(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .unwrap();
        super::super::MIGRATOR.run(&pool).await.unwrap();
        (dir, pool)
    }

    /// Records and judges batches of `n` accounts, each account once.
    async fn batch_of(pool: &SqlitePool, n: usize, round: i64) {
        let ids: Vec<AccountId> = (0..n)
            .map(|i| AccountId::parse(&format!("a{i}")).unwrap())
            .collect();
        let at = snapshot("100").taken_at + chrono::Duration::minutes(round);
        let mut s = snapshot("100");
        s.taken_at = at;
        let polls: Vec<PollRecord> = ids
            .iter()
            .map(|account| PollRecord {
                account,
                at,
                outcome: Ok(&s),
            })
            .collect();
        assert_eq!(record_polls(pool, &polls).await.unwrap().len(), n);
        let windows: Vec<Window> = ids
            .iter()
            .map(|account| Window {
                account,
                since: at - chrono::Duration::days(7),
                fresh: None,
            })
            .collect();
        let read = judging(pool, &windows).await.unwrap();
        assert!(
            read.iter()
                .all(|j| j.history.last().map(|s| s.taken_at) == Some(at))
        );
        bucket_entries_of(pool, &ids.iter().collect::<Vec<_>>())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_batch_of_any_size_uses_the_statements_already_prepared() {
        // One connection, so that every statement is cached on it.
        let (_dir, pool) = one_connection().await;
        batch_of(&pool, 1, 0).await;
        let prepared = pool.acquire().await.unwrap().cached_statements_size();
        for (round, n) in (1..).zip(2..=9) {
            batch_of(&pool, n, round).await;
        }
        let conn = pool.acquire().await.unwrap();
        assert_eq!(conn.cached_statements_size(), prepared);
    }

    #[tokio::test]
    async fn text_the_batch_carries_as_json_is_stored_as_given() {
        let (_dir, pool) = one_connection().await;
        let account = AccountId::parse("shop").unwrap();
        let message = "said \"no\" \\ twice\n\t余额不足 \u{1F4B8} \u{0} end";
        let failure = PollFailure {
            kind: crate::domain::model::FailureKind::Rejected,
            message: message.into(),
        };
        let polls = [PollRecord {
            account: &account,
            at: snapshot("1").taken_at,
            outcome: Err(&failure),
        }];
        record_polls(&pool, &polls).await.unwrap();
        let stored: (String, String, i64) = sqlx::query_as(
            "SELECT last_error, last_error_kind, last_attempt_at FROM poll_health WHERE account = 'shop'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(stored.0, message);
        assert_eq!(stored.1, "rejected");
        assert_eq!(stored.2, ms(snapshot("1").taken_at));
    }
}
