//! The store on PostgreSQL, for two or more replicas: connecting (TLS with
//! rustls where the URL asks for it), refusing a server too old, and the
//! migrations in `migrations/postgres/`.

use std::str::FromStr;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::ports::StoreError;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The oldest server purser runs on: 13 (`server_version_num` 130000).
pub const OLDEST: i64 = 130_000;

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
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
        Ok(PgStore { pool })
    }

    /// The server's version, as `server_version` reads (`15.18 (Debian…)`).
    pub async fn server_version(&self) -> Result<String, StoreError> {
        Ok(sqlx::query_scalar("SHOW server_version")
            .fetch_one(&self.pool)
            .await?)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
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
