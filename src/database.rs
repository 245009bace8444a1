//! Opens the store the config names (a SQLite file, or PostgreSQL) behind
//! every store port, for the daemon and for the commands that read it.

use std::sync::Arc;

use async_trait::async_trait;

use crate::adapters::postgres::PgStore;
use crate::adapters::sqlite::SqliteStore;
use crate::config::{Backend, StoreConfig};
use crate::domain::alert::Alert;
use crate::ports::{
    BalanceEntries, Escalations, MessageRefs, Receipts, RequestCards, Requests, Store, StoreError,
    StoredNotice,
};

/// Every port the store serves, on one backend.
#[async_trait]
pub trait Database:
    Store + BalanceEntries + MessageRefs + Requests + RequestCards + Escalations + Receipts
{
    /// Waits for writes under way and closes the connections.
    async fn close(&self);
    /// Every alert recorded, newest first (for inspection).
    async fn all_alerts(&self) -> Result<Vec<Alert>, StoreError>;
    /// Outbox rows as (output, notice, delivered), in the order queued
    /// (for inspection).
    async fn outbox(&self) -> Result<Vec<(String, StoredNotice, bool)>, StoreError>;
    /// The newest migration applied, and the newest this build knows.
    async fn schema(&self) -> Result<(i64, i64), StoreError>;
    /// Open alerts and waiting notices counted (for /metrics).
    async fn tallies(&self) -> Result<crate::ports::Tallies, StoreError>;
}

#[async_trait]
impl Database for SqliteStore {
    async fn close(&self) {
        SqliteStore::close(self).await
    }
    async fn all_alerts(&self) -> Result<Vec<Alert>, StoreError> {
        SqliteStore::all_alerts(self).await
    }
    async fn outbox(&self) -> Result<Vec<(String, StoredNotice, bool)>, StoreError> {
        SqliteStore::outbox(self).await
    }
    async fn schema(&self) -> Result<(i64, i64), StoreError> {
        SqliteStore::schema(self).await
    }
    async fn tallies(&self) -> Result<crate::ports::Tallies, StoreError> {
        SqliteStore::tallies(self).await
    }
}

#[async_trait]
impl Database for PgStore {
    async fn close(&self) {
        PgStore::close(self).await
    }
    async fn all_alerts(&self) -> Result<Vec<Alert>, StoreError> {
        PgStore::all_alerts(self).await
    }
    async fn outbox(&self) -> Result<Vec<(String, StoredNotice, bool)>, StoreError> {
        PgStore::outbox(self).await
    }
    async fn schema(&self) -> Result<(i64, i64), StoreError> {
        PgStore::schema(self).await
    }
    async fn tallies(&self) -> Result<crate::ports::Tallies, StoreError> {
        PgStore::tallies(self).await
    }
}

/// Connects to PostgreSQL as `config` says.
pub async fn postgres(config: &crate::config::PostgresConfig) -> anyhow::Result<PgStore> {
    Ok(PgStore::open(
        config.url.expose(),
        config.password.as_ref().map(|p| p.expose()),
        config.pool,
    )
    .await?)
}

/// The store for a command that needs one purser has already run on: a
/// SQLite file must exist (a command never creates an empty one).
pub async fn existing(config: &StoreConfig) -> anyhow::Result<Arc<dyn Database>> {
    match &config.backend {
        Backend::Sqlite { path } => {
            if !path.exists() {
                anyhow::bail!(
                    "no store at {}: purser has not run with this config",
                    path.display()
                );
            }
            Ok(Arc::new(SqliteStore::open(path).await?))
        }
        Backend::Postgres(pg) => Ok(Arc::new(postgres(pg).await?)),
    }
}

/// The store for reading only, if there is one: a SQLite file is opened
/// read-only (nothing created, migrated or written); PostgreSQL as usual.
pub async fn for_reading(config: &StoreConfig) -> anyhow::Result<Option<Arc<dyn Database>>> {
    match &config.backend {
        Backend::Sqlite { path } if !path.exists() => Ok(None),
        Backend::Sqlite { path } => Ok(Some(Arc::new(SqliteStore::open_read_only(path).await?))),
        Backend::Postgres(pg) => Ok(Some(Arc::new(postgres(pg).await?))),
    }
}

/// The store for a command that writes, created (and migrated) if purser
/// has not run yet: `balance set` may come before the first start.
pub async fn existing_or_new(config: &StoreConfig) -> anyhow::Result<Arc<dyn Database>> {
    match &config.backend {
        Backend::Sqlite { path } => Ok(Arc::new(SqliteStore::open(path).await?)),
        Backend::Postgres(pg) => Ok(Arc::new(postgres(pg).await?)),
    }
}
