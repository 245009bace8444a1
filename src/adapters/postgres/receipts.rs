//! Receipts and cursors on PostgreSQL. Not fenced: every replica takes
//! chat, and the primary key settles which of two takes a copy first.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::PgStore;
use crate::adapters::at_ms;
use crate::ports::{Receipts, StoreError};

#[async_trait]
impl Receipts for PgStore {
    async fn first_receipt(
        &self,
        source: &str,
        key: &str,
        at: DateTime<Utc>,
        keep: chrono::Duration,
    ) -> Result<bool, StoreError> {
        let forget_before = at.checked_sub_signed(keep).unwrap_or(at);
        sqlx::query("DELETE FROM receipts WHERE at < $1")
            .bind(at_ms(forget_before))
            .execute(&self.pool)
            .await?;
        let taken = sqlx::query(
            "INSERT INTO receipts (source, key, at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(source)
        .bind(key)
        .bind(at_ms(at))
        .execute(&self.pool)
        .await?;
        Ok(taken.rows_affected() == 1)
    }

    async fn cursor(&self, source: &str) -> Result<Option<i64>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT position FROM cursors WHERE source = $1")
                .bind(source)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn advance_cursor(&self, source: &str, to: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO cursors (source, position) VALUES ($1, $2)
             ON CONFLICT (source) DO UPDATE SET position = GREATEST(cursors.position, excluded.position)",
        )
        .bind(source)
        .bind(to)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
