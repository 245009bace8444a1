//! Moving a store from its SQLite file to PostgreSQL, row for row: the same
//! tables in meaning, times from milliseconds to `timestamptz`, JSON text
//! to `jsonb`, amounts from text to `numeric`, ids kept (so request numbers,
//! notice ids and the audit chain stay as they were).

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::postgres::PgStore;
use super::sqlite::SqliteStore;
use crate::ports::StoreError;

/// How a column is kept on SQLite, and so how it goes over.
#[derive(Clone, Copy)]
enum Kind {
    Int,
    Text,
    /// Milliseconds since the epoch, to `timestamptz`.
    Time,
    /// JSON text, to `jsonb`.
    Json,
    /// An exact amount as text, to `numeric`.
    Numeric,
}

use Kind::{Int, Json, Numeric, Text, Time};

/// A table, its columns, and (for tables with a generated id) its sequence.
struct Table {
    name: &'static str,
    columns: &'static [(&'static str, Kind)],
    /// The SQLite query that reads it (rows in the order they are written).
    select: &'static str,
    serial: Option<&'static str>,
}

/// In an order that keeps references whole (requests before their
/// decisions and cards).
const TABLES: &[Table] = &[
    // Before the snapshots that name them.
    Table {
        name: "inventories",
        columns: &[("account", Text), ("digest", Text), ("body", Json)],
        // Those the snapshots copied below name.
        select: "SELECT account, digest, body FROM inventories i
                 WHERE EXISTS (SELECT 1 FROM snapshots s
                   WHERE s.account = i.account AND s.digest = i.digest
                     AND (s.taken_at >= ?1
                          OR s.id IN (SELECT MAX(id) FROM snapshots GROUP BY account)))
                 ORDER BY account, digest",
        serial: None,
    },
    Table {
        name: "snapshots",
        columns: &[
            ("id", Int),
            ("account", Text),
            ("taken_at", Time),
            ("body", Json),
            ("digest", Text),
        ],
        // Within the retention period, and each account's newest.
        select: "SELECT id, account, taken_at, body, digest FROM snapshots
                 WHERE taken_at >= ?1 OR id IN (SELECT MAX(id) FROM snapshots GROUP BY account)
                 ORDER BY id",
        serial: Some("id"),
    },
    Table {
        name: "poll_health",
        columns: &[
            ("account", Text),
            ("last_success_at", Time),
            ("last_attempt_at", Time),
            ("last_error", Text),
            ("last_error_kind", Text),
            ("consecutive_failures", Int),
        ],
        select: "SELECT account, last_success_at, last_attempt_at, last_error, last_error_kind,
                        consecutive_failures FROM poll_health ORDER BY account",
        serial: None,
    },
    Table {
        name: "alerts",
        columns: &[
            ("id", Int),
            ("fingerprint", Text),
            ("rule", Text),
            ("account", Text),
            ("resource", Text),
            ("tier", Text),
            ("severity", Text),
            ("rank", Int),
            ("state", Text),
            ("summary", Text),
            ("started_at", Time),
            ("fired_at", Time),
            ("last_notified_at", Time),
            ("resolved_at", Time),
            ("acked_by", Text),
            ("acked_at", Time),
        ],
        select: "SELECT id, fingerprint, rule, account, resource, tier, severity, rank, state,
                        summary, started_at, fired_at, last_notified_at, resolved_at, acked_by,
                        acked_at FROM alerts ORDER BY id",
        serial: Some("id"),
    },
    Table {
        name: "outbox",
        columns: &[
            ("id", Int),
            ("notice_id", Text),
            ("output", Text),
            ("body", Json),
            ("account", Text),
            ("created_at", Time),
            ("attempts", Int),
            ("next_attempt_at", Time),
            ("delivered_at", Time),
            ("abandoned_at", Time),
            ("last_error", Text),
            ("sending_at", Time),
        ],
        select: "SELECT id, notice_id, output, body, account, created_at, attempts,
                        next_attempt_at, delivered_at, abandoned_at, last_error, sending_at
                 FROM outbox ORDER BY id",
        serial: Some("id"),
    },
    Table {
        name: "balance_entries",
        columns: &[
            ("id", Int),
            ("account", Text),
            ("amount", Numeric),
            ("currency", Text),
            ("as_of", Time),
            ("entered_by", Text),
            ("entered_at", Time),
            ("bucket_kind", Text),
            ("bucket_name", Text),
        ],
        select: "SELECT id, account, amount, currency, as_of, entered_by, entered_at, bucket_kind,
                        bucket_name FROM balance_entries ORDER BY id",
        serial: Some("id"),
    },
    Table {
        name: "silences",
        columns: &[
            ("id", Int),
            ("matchers", Text),
            ("starts_at", Time),
            ("ends_at", Time),
            ("created_by", Text),
            ("reason", Text),
            ("ended_by", Text),
        ],
        select: "SELECT id, matchers, starts_at, ends_at, created_by, reason, ended_by
                 FROM silences ORDER BY id",
        serial: Some("id"),
    },
    Table {
        name: "chat_messages",
        columns: &[
            ("fingerprint", Text),
            ("started_at", Time),
            ("output", Text),
            ("channel", Text),
            ("message", Text),
            ("notice", Json),
            ("position", Int),
        ],
        select: "SELECT fingerprint, started_at, output, channel, message, notice, position
                 FROM chat_messages ORDER BY rowid",
        serial: None,
    },
    Table {
        name: "account_views",
        columns: &[("account", Text), ("body", Json), ("taken_at", Time)],
        select: "SELECT account, body, taken_at FROM account_views ORDER BY account",
        serial: None,
    },
    Table {
        name: "requests",
        columns: &[
            ("id", Int),
            ("account", Text),
            ("kind", Text),
            ("state", Text),
            ("version", Int),
            ("requested_by", Text),
            ("requested_at", Time),
            ("expires_at", Time),
            ("idem_key", Text),
            ("body", Json),
            ("progress", Json),
            ("updated_at", Time),
            ("lease_holder", Text),
            ("lease_until", Time),
        ],
        select: "SELECT id, account, kind, state, version, requested_by, requested_at, expires_at,
                        idem_key, body, progress, updated_at, lease_holder, lease_until
                 FROM requests ORDER BY id",
        serial: Some("id"),
    },
    Table {
        name: "decisions",
        columns: &[
            ("seq", Int),
            ("request", Int),
            ("by_name", Text),
            ("body", Json),
        ],
        select: "SELECT rowid AS seq, request, by_name, body FROM decisions ORDER BY rowid",
        serial: Some("seq"),
    },
    Table {
        name: "audit_log",
        columns: &[
            ("seq", Int),
            ("at", Time),
            ("actor", Text),
            ("event", Text),
            ("request", Int),
            ("detail", Text),
            ("prev", Text),
            ("hash", Text),
        ],
        select: "SELECT seq, at, actor, event, request, detail, prev, hash FROM audit_log
                 ORDER BY seq",
        serial: None,
    },
    Table {
        name: "audit_head",
        columns: &[("id", Int), ("seq", Int), ("hash", Text)],
        select: "SELECT id, seq, hash FROM audit_head",
        serial: None,
    },
    Table {
        name: "request_cards",
        columns: &[
            ("request_id", Int),
            ("output", Text),
            ("channel", Text),
            ("message", Text),
            ("version", Int),
            ("state", Text),
        ],
        select: "SELECT request_id, output, channel, message, version, state FROM request_cards
                 ORDER BY request_id, output",
        serial: None,
    },
    Table {
        name: "escalations",
        columns: &[
            ("fingerprint", Text),
            ("started_at", Time),
            ("severity", Text),
            ("raised_at", Time),
            ("due_at", Time),
            ("clock", Text),
            ("phase", Text),
            ("round", Int),
            ("round_start", Time),
            ("position", Int),
            ("repeats_left", Int),
            ("next_at", Time),
            ("acked_by", Text),
            ("acked_at", Time),
            ("resolved_at", Time),
            ("version", Int),
        ],
        select: "SELECT fingerprint, started_at, severity, raised_at, due_at, clock, phase, round,
                        round_start, position, repeats_left, next_at, acked_by, acked_at,
                        resolved_at, version FROM escalations ORDER BY raised_at",
        serial: None,
    },
    Table {
        name: "pages",
        columns: &[
            ("id", Int),
            ("page_id", Text),
            ("fingerprint", Text),
            ("started_at", Time),
            ("recipient", Text),
            ("event", Text),
            ("body", Json),
            ("created_at", Time),
            ("attempts", Int),
            ("next_attempt_at", Time),
            ("delivered_at", Time),
            ("last_error", Text),
            ("sending_at", Time),
        ],
        select: "SELECT id, page_id, fingerprint, started_at, recipient, event, body, created_at,
                        attempts, next_attempt_at, delivered_at, last_error, sending_at
                 FROM pages ORDER BY id",
        serial: Some("id"),
    },
    Table {
        name: "oncall_overrides",
        columns: &[
            ("id", Int),
            ("schedule", Text),
            ("person", Text),
            ("from_at", Time),
            ("to_at", Time),
            ("made_by", Text),
            ("made_at", Time),
            ("reason", Text),
        ],
        select: "SELECT id, schedule, person, from_at, to_at, made_by, made_at, reason
                 FROM oncall_overrides ORDER BY id",
        serial: Some("id"),
    },
    // Receipts are not copied: they are kept for an hour, against copies a
    // platform sends again at once, and a copy happens with purser stopped.
    Table {
        name: "cursors",
        columns: &[("source", Text), ("position", Int)],
        select: "SELECT source, position FROM cursors ORDER BY source",
        serial: None,
    },
];

/// Rows copied, per table, in the order copied.
pub type Copied = Vec<(&'static str, u64)>;

fn corrupt(table: &str, column: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{table}.{column}: {e}"))
}

/// Copies every table of `from` into `to`, which must hold nothing yet (no
/// alert, notice, request, audit entry or lease), in one transaction: a
/// copy that fails leaves the target as empty as it was. Snapshots older
/// than `history_since` are left behind (each account's newest goes).
pub async fn sqlite_to_postgres(
    from: &SqliteStore,
    to: &PgStore,
    history_since: DateTime<Utc>,
) -> Result<Copied, StoreError> {
    let mut tx = to.pool().begin().await?;
    for table in TABLES
        .iter()
        .map(|t| t.name)
        .chain(std::iter::once("leadership"))
    {
        let (n,): (i64,) = sqlx::query_as(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&mut *tx)
            .await?;
        if n > 0 {
            return Err(StoreError::Unavailable(format!(
                "the target is not empty ({table} holds {n} rows): copy into a new database"
            )));
        }
    }
    let mut copied = Vec::new();
    for table in TABLES {
        let mut query = sqlx::query(table.select);
        if matches!(table.name, "snapshots" | "inventories") {
            query = query.bind(history_since.timestamp_millis());
        }
        let rows = query.fetch_all(from.pool()).await?;
        let names: Vec<&str> = table.columns.iter().map(|(c, _)| *c).collect();
        let values: Vec<String> = table
            .columns
            .iter()
            .enumerate()
            .map(|(i, (_, kind))| match kind {
                Json => format!("${}::jsonb", i + 1),
                Numeric => format!("${}::numeric", i + 1),
                _ => format!("${}", i + 1),
            })
            .collect();
        let insert = format!(
            "INSERT INTO {} ({}) VALUES ({})",
            table.name,
            names.join(", "),
            values.join(", ")
        );
        for row in &rows {
            let mut q = sqlx::query(&insert);
            for (i, (column, kind)) in table.columns.iter().enumerate() {
                let bad = |e: sqlx::Error| corrupt(table.name, column, e);
                q = match kind {
                    Int => q.bind(row.try_get::<Option<i64>, _>(i).map_err(bad)?),
                    Text | Json | Numeric => {
                        q.bind(row.try_get::<Option<String>, _>(i).map_err(bad)?)
                    }
                    Time => {
                        let ms: Option<i64> = row.try_get(i).map_err(bad)?;
                        q.bind(
                            ms.map(|ms| {
                                DateTime::from_timestamp_millis(ms)
                                    .ok_or_else(|| corrupt(table.name, column, "out of range"))
                            })
                            .transpose()?,
                        )
                    }
                };
            }
            q.execute(&mut *tx).await?;
        }
        if let Some(column) = table.serial {
            // The next row written gets the next number, not one copied.
            sqlx::query(&format!(
                "SELECT setval(pg_get_serial_sequence('{0}', '{column}'),
                               COALESCE((SELECT MAX({column}) FROM {0}), 0) + 1, false)",
                table.name
            ))
            .execute(&mut *tx)
            .await?;
        }
        copied.push((table.name, rows.len() as u64));
    }
    tx.commit().await?;
    Ok(copied)
}
