//! Opening the store the config names, and how this replica comes to lead.

use std::sync::Arc;

use tokio::sync::watch;
use tracing::info;

use crate::adapters::postgres::PgStore;
use crate::adapters::sqlite::SqliteStore;
use crate::adapters::sqlite::lock::StoreLock;
use crate::config::{Backend, Config};
use crate::database::Database;
use crate::engine::leadership::{Elector, Role};
use crate::ports::Clock;

/// How this replica comes to lead.
pub(super) enum Election {
    /// The only daemon on a SQLite file, held by its lock until it ends.
    Sole { _lock: StoreLock },
    /// One of the replicas on PostgreSQL, by the lease.
    Replica { elector: Elector, store: PgStore },
}

/// Opens the store the config names, and says how this replica comes to
/// lead: on a SQLite file, by holding its lock (one daemon per file); on
/// PostgreSQL, by the lease.
pub(super) async fn open_store(
    config: &Config,
    clock: &Arc<dyn Clock>,
) -> anyhow::Result<(Arc<dyn Database>, Election, watch::Receiver<Role>)> {
    match &config.store.backend {
        Backend::Sqlite { path } => {
            // One daemon per store, before anything touches it.
            let existed = std::fs::metadata(path).is_ok_and(|m| m.len() > 0);
            let lock = StoreLock::acquire(path, &clock.now().to_rfc3339())?;
            if let (false, Some(before)) = (existed, &lock.previous) {
                tracing::warn!(
                    store = %path.display(),
                    last_run = %before,
                    "THE STORE IS MISSING OR EMPTY, but purser has run on it before: starting afresh. \
                     Open alerts, notices not yet sent, requests under way and the audit chain start \
                     again from nothing; restore the file from a backup if this was not meant"
                );
            }
            let store = SqliteStore::open(path).await?;
            // The lock says no other daemon runs here: leases on requests are a
            // dead predecessor's, and its work is taken over at once.
            let released = store.release_all_leases().await?;
            if released > 0 {
                info!(
                    requests = released,
                    "taking over requests a stopped purser was carrying out"
                );
            }
            // Nobody else will ever lead: the sender is not kept.
            let role = watch::channel(Role::Sole).1;
            Ok((Arc::new(store), Election::Sole { _lock: lock }, role))
        }
        Backend::Postgres(pg) => {
            // Other replicas may be carrying requests out: their leases on
            // them are left to run out, not released.
            let store = crate::database::postgres(pg).await?.as_replica();
            info!(
                store = %pg.at,
                version = %store.server_version().await.unwrap_or_default(),
                tls = store.encrypted().await.unwrap_or(false),
                replica = %pg.ha.name,
                lease = %crate::domain::duration::format(pg.ha.lease),
                "connected to PostgreSQL; standing by until this replica leads"
            );
            let (tx, role) = watch::channel(Role::Standby {
                leader: None,
                error: None,
            });
            let elector = Elector {
                leases: Arc::new(store.clone()),
                name: pg.ha.name.clone(),
                term: pg.ha.lease,
                clock: clock.clone(),
                role: tx,
            };
            Ok((
                Arc::new(store.clone()),
                Election::Replica { elector, store },
                role,
            ))
        }
    }
}
