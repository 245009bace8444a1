//! `[store]` and `[ha]`: where purser keeps its state, and how replicas
//! share a PostgreSQL store.

use std::path::PathBuf;

use chrono::Duration;
use serde::Deserialize;
use toml::Spanned;

use super::{Issues, S, duration};
use crate::secret::Secret;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    path: Option<S>,
    url: Option<S>,
    password: Option<S>,
    pool: Option<Spanned<i64>>,
    retention: Option<S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHa {
    lease: Option<S>,
    name: Option<S>,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub backend: Backend,
    /// Snapshots older than this are pruned (each account keeps its newest).
    pub retention: Duration,
}

#[derive(Debug, Clone)]
pub enum Backend {
    /// One daemon on one SQLite file, relative to the working directory.
    Sqlite { path: PathBuf },
    /// One or more replicas on a PostgreSQL database.
    Postgres(PostgresConfig),
}

#[derive(Debug, Clone)]
pub struct PostgresConfig {
    /// The connection URL (it may hold a password, so it is kept secret).
    pub url: Secret,
    /// Given apart from the URL: replaces any in it.
    pub password: Option<Secret>,
    /// Connections this replica keeps at most.
    pub pool: u32,
    /// `host:port/database`, for people (never the password).
    pub at: String,
    pub ha: HaConfig,
}

#[derive(Debug, Clone)]
pub struct HaConfig {
    /// How long a leader's lease lasts unrenewed: a standby takes over at
    /// most this long (plus one attempt) after the leader died.
    pub lease: Duration,
    /// This replica's name in the lease, in logs and in `purser status`.
    pub name: String,
}

impl StoreConfig {
    /// The SQLite file, when that is the store.
    pub fn sqlite_path(&self) -> Option<&std::path::Path> {
        match &self.backend {
            Backend::Sqlite { path } => Some(path),
            Backend::Postgres(_) => None,
        }
    }

    /// Where the store is, for people: a file, or `host:port/database`.
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::Sqlite { path } => path.display().to_string(),
            Backend::Postgres(pg) => format!("PostgreSQL at {}", pg.at),
        }
    }
}

/// `host:port/database` of a PostgreSQL URL, or why it is not one.
fn postgres_at(url: &str) -> Result<String, String> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| format!("not a URL ({e}): write postgres://user@host:5432/purser"))?;
    if !matches!(parsed.scheme(), "postgres" | "postgresql") {
        return Err(format!(
            "the scheme is {:?}: write postgres://user@host:5432/purser",
            parsed.scheme()
        ));
    }
    let host = parsed.host_str().unwrap_or("localhost");
    let port = parsed.port().unwrap_or(5432);
    let database = parsed.path().trim_start_matches('/');
    Ok(if database.is_empty() {
        format!("{host}:{port}")
    } else {
        format!("{host}:{port}/{database}")
    })
}

pub(super) fn build(
    issues: &mut Issues<'_>,
    raw: &RawStore,
    ha: Option<&Spanned<RawHa>>,
    base: &std::path::Path,
) -> StoreConfig {
    let retention = duration(
        issues,
        "store.retention",
        raw.retention.as_ref(),
        Duration::days(35),
    );
    let env_path = std::env::var_os("PURSER_STORE_PATH").filter(|p| !p.is_empty());
    let env_url = std::env::var("PURSER_STORE_URL")
        .ok()
        .filter(|u| !u.is_empty());
    if env_path.is_some() && env_url.is_some() {
        issues.nowhere(
            "store",
            "both PURSER_STORE_PATH and PURSER_STORE_URL are set: unset the one not meant",
        );
    }
    // A URL from the environment may hold the password: it is a secret.
    let url = match (&env_url, &raw.url) {
        (Some(u), _) => Some(Secret::from_value(u.clone())),
        (None, Some(u)) if u.get_ref().starts_with("env:") || u.get_ref().starts_with("file:") => {
            Secret::resolve(u.get_ref(), base)
                .map_err(|e| issues.at(u, "store.url", e))
                .ok()
        }
        (None, Some(u)) => {
            // Written in the file: it must hold no password.
            match reqwest::Url::parse(u.get_ref()) {
                Ok(parsed) if parsed.password().is_some() => {
                    issues.at(
                        u,
                        "store.url",
                        "the URL holds a password, and secrets never go in the config: give it as \
                         password = \"env:NAME\" (or the whole URL in PURSER_STORE_URL)",
                    );
                    None
                }
                _ => Some(Secret::from_value(u.get_ref().clone())),
            }
        }
        (None, None) => None,
    };
    let backend = match (env_path, url, &raw.path) {
        (Some(path), _, _) => Backend::Sqlite {
            path: PathBuf::from(path),
        },
        (None, Some(url), path) => {
            if let (Some(p), None) = (path, &env_url) {
                issues.at(
                    p,
                    "store.path",
                    "give either path (a SQLite file) or url (PostgreSQL), not both",
                );
            }
            let at = match postgres_at(url.expose()) {
                Ok(at) => at,
                Err(e) => {
                    match &raw.url {
                        Some(u) if env_url.is_none() => issues.at(u, "store.url", e),
                        _ => issues.nowhere("PURSER_STORE_URL", e),
                    }
                    String::new()
                }
            };
            let password = raw.password.as_ref().and_then(|p| {
                Secret::resolve(p.get_ref(), base)
                    .map_err(|e| issues.at(p, "store.password", e))
                    .ok()
            });
            let pool = match &raw.pool {
                None => 10,
                Some(n) => match u32::try_from(*n.get_ref()) {
                    Ok(n @ 1..=1000) => n,
                    _ => {
                        issues.at(
                            n,
                            "store.pool",
                            "must be a number of connections, 1 to 1000",
                        );
                        10
                    }
                },
            };
            Backend::Postgres(PostgresConfig {
                url,
                password,
                pool,
                at,
                ha: ha_config(issues, ha),
            })
        }
        (None, None, Some(p)) => {
            if p.get_ref().trim().is_empty() {
                issues.at(p, "store.path", "must name a file");
            }
            for (key, set) in [
                ("store.password", raw.password.is_some()),
                ("store.pool", raw.pool.is_some()),
            ] {
                if set {
                    issues.at(
                        p,
                        key,
                        "applies to a PostgreSQL store (store.url); path names a SQLite file",
                    );
                }
            }
            Backend::Sqlite {
                path: PathBuf::from(p.get_ref()),
            }
        }
        (None, None, None) => {
            // A url given but refused has been said already.
            if raw.url.is_none() && env_url.is_none() {
                issues.nowhere(
                    "store",
                    "needs path = \"purser.db\" (a SQLite file) or url = \"postgres://user@host:5432/purser\"",
                );
            }
            Backend::Sqlite {
                path: PathBuf::from("purser.db"),
            }
        }
    };
    if let (Backend::Sqlite { .. }, Some(h)) = (&backend, ha) {
        issues.at(
            h,
            "ha",
            "replicas share a PostgreSQL store: [ha] needs [store] url; one daemon runs on a SQLite file",
        );
    }
    StoreConfig { backend, retention }
}

fn ha_config(issues: &mut Issues<'_>, raw: Option<&Spanned<RawHa>>) -> HaConfig {
    let raw = raw.map(Spanned::get_ref);
    let lease = duration(
        issues,
        "ha.lease",
        raw.and_then(|h| h.lease.as_ref()),
        Duration::seconds(15),
    );
    if let Some(l) = raw.and_then(|h| h.lease.as_ref())
        && !(Duration::seconds(3)..=Duration::minutes(10)).contains(&lease)
    {
        issues.at(
            l,
            "ha.lease",
            "must be between 3s and 10m: renewed every third of it, and a standby waits it out",
        );
    }
    let name = match raw.and_then(|h| h.name.as_ref()) {
        Some(n) if n.get_ref().trim().is_empty() || n.get_ref().len() > 100 => {
            issues.at(n, "ha.name", "must be 1 to 100 characters");
            String::new()
        }
        Some(n) => n.get_ref().clone(),
        None => format!("{}:{}", crate::host::name(), std::process::id()),
    };
    HaConfig { lease, name }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_place_of_a_postgres_url_is_said_without_its_password() {
        assert_eq!(
            postgres_at("postgres://purser:s3cret@db.internal:6432/purser?sslmode=require"),
            Ok("db.internal:6432/purser".into())
        );
        assert_eq!(postgres_at("postgresql://purser@db"), Ok("db:5432".into()));
        assert!(
            postgres_at("mysql://x@y/z")
                .unwrap_err()
                .contains("the scheme is \"mysql\"")
        );
        assert!(postgres_at("db:5432").is_err());
    }
}
