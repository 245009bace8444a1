//! A real PostgreSQL for the tests: `PURSER_TEST_POSTGRES_URL`, or a
//! throwaway cluster started from the system's binaries (initdb and pg_ctl
//! on PATH or under /usr/lib/postgresql), on a free port in a temp dir, and
//! stopped when dropped. Without either, a test says loudly that it was
//! skipped; with `PURSER_REQUIRE_POSTGRES=1` (CI), that is a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

use sqlx::Connection;

/// Where the tests' PostgreSQL listens, and the cluster to stop after.
pub struct Postgres {
    /// `postgres://…/` without a database name.
    base: String,
    cluster: Option<Cluster>,
    databases: std::sync::atomic::AtomicUsize,
}

struct Cluster {
    pg_ctl: PathBuf,
    data: PathBuf,
    /// The unprivileged user the server runs as when the tests run as root.
    user: Option<String>,
    _dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = run_as(
            self.user.as_deref(),
            &self.pg_ctl,
            &[
                "stop",
                "-m",
                "immediate",
                "-D",
                &self.data.to_string_lossy(),
            ],
        );
    }
}

/// `bin` from PATH, or from the newest version under /usr/lib/postgresql.
fn binary(bin: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(bin))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin").join(bin)))
            .filter(|p| p.is_file())
            .collect();
        versions.sort();
        versions.pop()
    })
}

fn run_as(user: Option<&str>, program: &Path, args: &[&str]) -> Result<(), String> {
    let mut cmd = match user {
        Some(u) => {
            let mut c = Command::new("runuser");
            c.args(["-u", u, "--"]).arg(program);
            c
        }
        None => Command::new(program),
    };
    let out = cmd
        .args(args)
        .output()
        .map_err(|e| format!("{}: {e}", program.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} {}: {}{}",
            program.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Postgres {
    /// A server for one test, or `None` when there is none to be had (said
    /// on standard error, and a panic when PostgreSQL is required).
    pub async fn start(test: &str) -> Option<Postgres> {
        if let Ok(url) = std::env::var("PURSER_TEST_POSTGRES_URL") {
            return Some(Postgres {
                base: url.trim_end_matches('/').to_owned(),
                cluster: None,
                databases: Default::default(),
            });
        }
        let (Some(initdb), Some(pg_ctl)) = (binary("initdb"), binary("pg_ctl")) else {
            let why = "no PostgreSQL: neither PURSER_TEST_POSTGRES_URL nor initdb and pg_ctl (on PATH or under /usr/lib/postgresql)";
            if std::env::var("PURSER_REQUIRE_POSTGRES").as_deref() == Ok("1") {
                panic!("{test}: {why}, and PURSER_REQUIRE_POSTGRES=1");
            }
            eprintln!("SKIPPED {test}: {why}");
            return None;
        };
        // initdb refuses to run as root: the cluster belongs to `postgres`.
        let user = is_root().then(|| "postgres".to_owned());
        let dir = tempfile::tempdir().expect("a temp dir");
        let data = dir.path().join("data");
        if let Some(u) = &user {
            let chown = Command::new("chown")
                .args([u.as_str(), &dir.path().to_string_lossy()])
                .status()
                .expect("chown");
            assert!(chown.success(), "chown {u} {}", dir.path().display());
        }
        let data_text = data.to_string_lossy().into_owned();
        run_as(
            user.as_deref(),
            &initdb,
            &[
                "-D",
                &data_text,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )
        .unwrap_or_else(|e| panic!("{test}: initdb: {e}"));
        let port = free_port();
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off",
            dir.path().display()
        );
        let log = dir.path().join("server.log");
        run_as(
            user.as_deref(),
            &pg_ctl,
            &[
                "start",
                "-w",
                "-D",
                &data_text,
                "-l",
                &log.to_string_lossy(),
                "-o",
                &options,
            ],
        )
        .unwrap_or_else(|e| {
            panic!(
                "{test}: pg_ctl start: {e}\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
        Some(Postgres {
            base: format!("postgres://postgres@127.0.0.1:{port}"),
            cluster: Some(Cluster {
                pg_ctl,
                data,
                user,
                _dir: dir,
            }),
            databases: Default::default(),
        })
    }

    /// A new, empty database on the server: its URL.
    pub async fn database(&self) -> String {
        let n = self
            .databases
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let name = format!("purser_test_{}_{n}", std::process::id());
        let mut admin = sqlx::PgConnection::connect(&format!("{}/postgres", self.base))
            .await
            .expect("connecting to the test server");
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
            .execute(&mut admin)
            .await
            .expect("drop");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create");
        let _ = admin.close().await;
        let _ = &self.cluster;
        format!("{}/{name}", self.base)
    }
}

/// The schema migrates onto an empty database, keeps money as numeric and
/// times with their zone, and the audit log refuses to be changed.
#[tokio::test]
async fn the_postgres_schema_migrates_and_keeps_the_audit_log_append_only() {
    let Some(pg) = Postgres::start("the_postgres_schema_migrates").await else {
        return;
    };
    let url = pg.database().await;
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::migrate!("migrations/postgres")
        .run(&pool)
        .await
        .unwrap();
    // Run again: nothing to do.
    sqlx::migrate!("migrations/postgres")
        .run(&pool)
        .await
        .unwrap();
    let version: i32 = sqlx::query_scalar("SELECT current_setting('server_version_num')::int")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(version >= 130000, "{version}");

    sqlx::query(
        "INSERT INTO balance_entries (account, amount, currency, as_of, entered_by, entered_at)
         VALUES ('acme', 12345.678901, 'CNY', now(), 'ana', now())",
    )
    .execute(&pool)
    .await
    .unwrap();
    let amount: rust_decimal::Decimal =
        sqlx::query_scalar("SELECT amount FROM balance_entries WHERE account = 'acme'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(amount.to_string(), "12345.678901", "exact, not a float");

    sqlx::query(
        "INSERT INTO audit_log (seq, at, actor, event, request, detail, prev, hash)
         VALUES (1, now(), 'ana', 'asked', 1, '{}', '', 'h1')",
    )
    .execute(&pool)
    .await
    .unwrap();
    for statement in [
        "UPDATE audit_log SET actor = 'mallory'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ] {
        let err = sqlx::query(statement)
            .execute(&pool)
            .await
            .expect_err(statement)
            .to_string();
        assert!(
            err.contains("the audit log is append-only"),
            "{statement}: {err}"
        );
    }
    pool.close().await;
}

/// The store opens on the server (migrating it), and a server that is not
/// there is named by host and port.
#[tokio::test]
async fn the_store_opens_on_postgres_and_names_a_server_it_cannot_reach() {
    use purser::adapters::postgres::PgStore;
    let Some(pg) = Postgres::start("the_store_opens_on_postgres").await else {
        return;
    };
    let url = pg.database().await;
    let store = PgStore::open(&url, None, 4).await.unwrap();
    assert!(
        store
            .server_version()
            .await
            .unwrap()
            .starts_with(char::is_numeric)
    );
    store.close().await;
    // Opened again: the migrations are already there.
    PgStore::open(&url, None, 2).await.unwrap().close().await;

    let closed = free_port();
    let err = PgStore::open(
        &format!("postgres://purser@127.0.0.1:{closed}/purser"),
        Some("s3cret-pg-password"),
        1,
    )
    .await
    .err()
    .expect("refused")
    .to_string();
    assert!(
        err.contains(&format!(
            "the PostgreSQL store at 127.0.0.1:{closed} cannot be reached"
        )),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "{err}");
    let err = PgStore::open("mysql://x@y/z", None, 1)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("not a PostgreSQL URL"), "{err}");
}
