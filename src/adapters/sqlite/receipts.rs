//! Receipts and cursors on SQLite: what a chat platform delivered, so a
//! copy of it runs once, and where a feed was read up to.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{SqliteStore, ms};
use crate::ports::{Receipts, StoreError};

#[async_trait]
impl Receipts for SqliteStore {
    async fn first_receipt(
        &self,
        source: &str,
        key: &str,
        at: DateTime<Utc>,
        keep: chrono::Duration,
    ) -> Result<bool, StoreError> {
        let forget_before = at.checked_sub_signed(keep).unwrap_or(at);
        sqlx::query("DELETE FROM receipts WHERE at < ?")
            .bind(ms(forget_before))
            .execute(&self.pool)
            .await?;
        let taken =
            sqlx::query("INSERT OR IGNORE INTO receipts (source, key, at) VALUES (?, ?, ?)")
                .bind(source)
                .bind(key)
                .bind(ms(at))
                .execute(&self.pool)
                .await?;
        Ok(taken.rows_affected() == 1)
    }

    async fn cursor(&self, source: &str) -> Result<Option<i64>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT position FROM cursors WHERE source = ?")
                .bind(source)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn advance_cursor(&self, source: &str, to: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO cursors (source, position) VALUES (?, ?)
             ON CONFLICT (source) DO UPDATE SET position = max(position, excluded.position)",
        )
        .bind(source)
        .bind(to)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
