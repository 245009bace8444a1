//! A cycle's polls written and read many accounts at a time: each statement
//! is a trip to SQLite's worker thread, and each commit a write to the log,
//! so a cycle of thousands of accounts pays for a few hundred of each, not
//! for a dozen per account.

use std::collections::{HashMap, HashSet};

use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};

use super::rows::{
    alert_from_row, entry_from_row, failed_from_row, health_from_row, snapshot_from_row,
};
use super::{apply_in, corrupt, ms};
use crate::adapters::stored_snapshot::{self, Inventories, Split};
use crate::domain::model::{AccountId, BalanceEntry, PollFailure, PollHealth};
use crate::domain::routing::Routing;
use crate::ports::{Judgement, Judging, PollRecord, StoreError, Window};
use crate::secret::redact;

/// Accounts per statement: well under SQLite's limit of bound values
/// (32,766) at six values a row.
const CHUNK: usize = 500;

/// A list of `?` placeholders bound to `ids`, for `IN (…)`.
fn bind_ids<'a>(q: &mut QueryBuilder<'a, Sqlite>, ids: &[&'a str]) {
    q.push("(");
    let mut list = q.separated(", ");
    for id in ids {
        list.push_bind(*id);
    }
    list.push_unseparated(")");
}

fn distinct<'a>(ids: impl Iterator<Item = &'a AccountId>) -> Vec<&'a str> {
    let mut ids: Vec<&str> = ids.map(AccountId::as_str).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Rows of `sql … IN (ids)`, a chunk of ids at a time.
async fn rows_for(
    conn: &mut sqlx::SqliteConnection,
    head: &str,
    ids: &[&str],
    tail: &str,
) -> Result<Vec<SqliteRow>, StoreError> {
    let mut rows = Vec::new();
    for chunk in ids.chunks(CHUNK) {
        let mut q = QueryBuilder::new(head);
        bind_ids(&mut q, chunk);
        q.push(tail);
        rows.extend(q.build().fetch_all(&mut *conn).await?);
    }
    Ok(rows)
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
        "SELECT * FROM poll_health WHERE account IN ",
        &ids,
        "",
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
    let mut found: Vec<(String, String)> = Vec::new();
    for chunk in named.chunks(CHUNK) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "SELECT account, digest FROM inventories WHERE (account, digest) IN (",
        );
        q.push_values(chunk, |mut row, (account, digest, _)| {
            row.push_bind(*account).push_bind(*digest);
        });
        q.push(")");
        for r in q.build().fetch_all(&mut *tx).await? {
            found.push((r.get("account"), r.get("digest")));
        }
    }
    let kept: HashSet<(&str, &str)> = found.iter().map(|(a, d)| (&**a, &**d)).collect();
    let new = named
        .iter()
        .filter(|(a, d, _)| !kept.contains(&(*a, *d)))
        .map(|(a, d, s)| Ok((*a, *d, s.inventory()?)))
        .collect::<Result<Vec<_>, StoreError>>()?;
    for chunk in new.chunks(CHUNK) {
        let mut q = QueryBuilder::<Sqlite>::new("INSERT INTO inventories (account, digest, body) ");
        q.push_values(chunk, |mut row, (account, digest, body)| {
            row.push_bind(*account)
                .push_bind(*digest)
                .push_bind(body.as_str());
        });
        q.push(" ON CONFLICT DO NOTHING");
        q.build().execute(&mut *tx).await?;
    }
    for chunk in snapshots.chunks(CHUNK) {
        let mut q =
            QueryBuilder::<Sqlite>::new("INSERT INTO snapshots (account, taken_at, body, digest) ");
        q.push_values(chunk, |mut row, (account, taken_at, stored)| {
            row.push_bind(*account)
                .push_bind(*taken_at)
                .push_bind(stored.balance.as_str())
                .push_bind(stored.digest.as_str());
        });
        q.build().execute(&mut *tx).await?;
    }
    let last: Vec<(&str, &PollHealth)> = ids
        .iter()
        .filter_map(|id| healths.get(*id).map(|h| (*id, h)))
        .collect();
    for chunk in last.chunks(CHUNK) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO poll_health (account, last_success_at, last_attempt_at, last_error,
               last_error_kind, consecutive_failures) ",
        );
        q.push_values(chunk, |mut row, (account, h)| {
            row.push_bind(*account)
                .push_bind(h.last_success_at.map(ms))
                .push_bind(h.last_attempt_at.map(ms))
                .push_bind(h.last_error.as_ref().map(|e| e.message.clone()))
                .push_bind(h.last_error.as_ref().map(|e| e.kind.as_str()))
                .push_bind(i64::from(h.consecutive_failures));
        });
        q.push(
            " ON CONFLICT (account) DO UPDATE SET last_success_at = excluded.last_success_at,
               last_attempt_at = excluded.last_attempt_at, last_error = excluded.last_error,
               last_error_kind = excluded.last_error_kind,
               consecutive_failures = excluded.consecutive_failures",
        );
        q.build().execute(&mut *tx).await?;
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
    let numbered: Vec<(i64, &Window)> = (0i64..).zip(windows).collect();
    for chunk in numbered.chunks(CHUNK) {
        let mut q = QueryBuilder::<Sqlite>::new("WITH w (i, account, since, fresh) AS (");
        q.push_values(chunk, |mut row, (i, w)| {
            row.push_bind(*i)
                .push_bind(w.account.as_str())
                .push_bind(ms(w.since))
                .push_bind(w.fresh.map(ms));
        });
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
        q.push(
            "), n AS MATERIALIZED (
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
        );
        for r in q.build().fetch_all(&mut *conn).await? {
            let snapshot = snapshot_from_row(&r, &mut inventories)?;
            let i: i64 = r.get("i");
            if let Some(h) = usize::try_from(i).ok().and_then(|i| histories.get_mut(i)) {
                h.push(snapshot);
            }
        }
    }
    let mut by_account: HashMap<&str, Judging> = windows
        .iter()
        .map(|w| (w.account.as_str(), Judging::default()))
        .collect();
    let ids = distinct(windows.iter().map(|w| w.account));
    let open = rows_for(
        &mut conn,
        "SELECT * FROM alerts WHERE state <> 'resolved' AND account IN ",
        &ids,
        " ORDER BY id",
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
         WHERE abandoned_at IS NOT NULL AND delivered_at IS NULL AND account IN ",
        &ids,
        " ORDER BY id",
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
    for chunk in views.chunks(CHUNK) {
        let mut q =
            QueryBuilder::<Sqlite>::new("INSERT INTO account_views (account, body, taken_at) ");
        q.push_values(chunk, |mut row, (account, body, taken_at)| {
            row.push_bind(*account)
                .push_bind(body.as_str())
                .push_bind(*taken_at);
        });
        q.push(" ON CONFLICT (account) DO UPDATE SET body = excluded.body, taken_at = excluded.taken_at");
        q.build().execute(&mut *tx).await?;
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
           AND account IN ",
        &ids,
        " ORDER BY account, bucket_kind, bucket_name",
    )
    .await?;
    let mut out: HashMap<AccountId, Vec<BalanceEntry>> = HashMap::new();
    for r in &rows {
        let account = AccountId::parse(r.get::<&str, _>("account")).map_err(corrupt)?;
        out.entry(account).or_default().push(entry_from_row(r)?);
    }
    Ok(out)
}
