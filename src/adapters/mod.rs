//! One module per outside system. Adapters translate; they decide nothing.

use chrono::TimeZone;

pub mod alibaba;
pub mod azure_china;
pub mod block_kit;
pub mod chart;
pub mod cloud;
pub mod console;
pub mod copy;
pub mod discord;
pub mod discord_channel;
pub mod discord_gateway;
pub mod heartbeat;
pub mod http;
pub mod huawei;
pub mod metrics;
pub mod pace;
pub mod pagers;
pub mod postgres;
mod request_record;
mod resource_expiry;
pub mod robots;
pub mod signing;
pub mod simulated;
pub mod slack;
pub mod slack_channel;
pub mod slack_socket;
pub mod sqlite;
mod stored_snapshot;
pub mod tasks;
pub mod telegram;
pub mod telegram_channel;
pub mod tencent;
pub mod totp;
pub mod webhook;
pub mod ws;

/// Open alerts counted by rule, severity and state as /metrics shows it
/// (a firing alert someone acknowledged: `acknowledged`); the same SQL on
/// SQLite and PostgreSQL.
pub(crate) const ALERT_TALLY: &str = "SELECT rule, severity,
        CASE WHEN state = 'firing' AND acked_by IS NOT NULL THEN 'acknowledged' ELSE state END AS shown,
        COUNT(*) AS n
   FROM alerts WHERE state <> 'resolved'
  GROUP BY rule, severity, shown";

/// Notices waiting per output, and when the oldest was queued.
pub(crate) const WAITING_TALLY: &str = "SELECT output, COUNT(*) AS n, MIN(created_at) AS oldest
   FROM outbox WHERE delivered_at IS NULL AND abandoned_at IS NULL
  GROUP BY output";

/// `t` at the stores' precision (milliseconds), so that a time kept inside
/// a JSON body equals the same time kept in a column, on either store.
pub(crate) fn at_ms(t: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    chrono::Utc
        .timestamp_millis_opt(t.timestamp_millis())
        .single()
        .unwrap_or(t)
}

/// Each row of a store's read decoded as it arrives: a read of thousands
/// (every open alert) never holds all the raw rows beside what they decode
/// to. The rows ready now are taken together, up to 256, then decoded:
/// decoding between single rows kept the store's thread and this one
/// waking each other.
pub(crate) async fn decoded<R, T>(
    rows: futures_util::stream::BoxStream<'_, Result<R, sqlx::Error>>,
    decode: fn(&R) -> Result<T, crate::ports::StoreError>,
) -> Result<Vec<T>, crate::ports::StoreError> {
    use futures_util::TryStreamExt;
    let mut out = Vec::new();
    let mut ready = rows.try_ready_chunks(256);
    while let Some(chunk) = ready.try_next().await.map_err(|e| e.1)? {
        for row in &chunk {
            out.push(decode(row)?);
        }
    }
    Ok(out)
}

/// A notice with every time at the store's precision: an alert read back
/// from its row then matches the notice that announced it.
pub(crate) fn notice_at_ms(n: &crate::ports::StoredNotice) -> crate::ports::StoredNotice {
    crate::ports::StoredNotice {
        started_at: at_ms(n.started_at),
        fired_at: n.fired_at.map(at_ms),
        resolved_at: n.resolved_at.map(at_ms),
        silenced_until: n.silenced_until.map(at_ms),
        decided_at: at_ms(n.decided_at),
        ..n.clone()
    }
}

/// `text` cut to at most `max` characters, the cut marked with "…".
pub(crate) fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// `text` with `&`, `<` and `>` as entities (as Slack's mrkdwn and HTML both
/// want them), cut with "…" to at most `max` characters, never inside an
/// entity.
pub(crate) fn escape_within(text: &str, max: usize) -> String {
    let mut out = String::new();
    let mut count = 0;
    for c in text.chars() {
        let e = match c {
            '&' => "&amp;",
            '<' => "&lt;",
            '>' => "&gt;",
            _ => "",
        };
        let width = if e.is_empty() { 1 } else { e.len() };
        if count + width > max.saturating_sub(1) {
            out.push('…');
            return out;
        }
        if e.is_empty() {
            out.push(c);
        } else {
            out.push_str(e);
        }
        count += width;
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn escaping_within_a_limit_never_splits_an_entity() {
        assert_eq!(super::escape_within("a<b & c>", 100), "a&lt;b &amp; c&gt;");
        assert_eq!(super::escape_within("ab<cd", 5), "ab…");
        assert_eq!(super::escape_within("ab<cd", 7), "ab&lt;…");
        assert_eq!(
            super::escape_within(&"&".repeat(1000), 50).chars().count(),
            46
        );
    }
}
