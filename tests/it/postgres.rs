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
    /// How it is started (port, socket directory, settings), and its log.
    options: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn pg_ctl(&self, args: &[&str]) -> Result<(), String> {
        let data = self.data.to_string_lossy().into_owned();
        let mut all = args.to_vec();
        all.extend(["-D", &data]);
        run_as(self.user.as_deref(), &self.pg_ctl, &all)
    }
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
                options,
                log,
                _dir: dir,
            }),
            databases: Default::default(),
        })
    }

    /// Stops the server, cutting every connection as a lost database
    /// would (`false`: the server is not this test's to stop). Stopped
    /// `fast`, not `immediate`: the tests' server runs without synchronous
    /// commits, and a crash of it could lose what a real one keeps.
    pub fn stop_server(&self) -> bool {
        match &self.cluster {
            Some(c) => {
                c.pg_ctl(&["stop", "-w", "-m", "fast"])
                    .unwrap_or_else(|e| panic!("pg_ctl stop: {e}"));
                true
            }
            None => false,
        }
    }

    /// Starts the stopped server again, on the same port.
    pub fn start_server(&self) {
        let c = self.cluster.as_ref().expect("a cluster of this test's");
        let log = c.log.to_string_lossy().into_owned();
        c.pg_ctl(&["start", "-w", "-l", &log, "-o", &c.options])
            .unwrap_or_else(|e| panic!("pg_ctl start: {e}"));
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

/// A snapshot of an account's balance alone, in yuan.
fn balance_only(
    at: chrono::DateTime<chrono::Utc>,
    balance: &str,
) -> purser::domain::model::Snapshot {
    use purser::domain::model::{Balance, Snapshot};
    use purser::domain::money::{Currency, Money};
    Snapshot {
        taken_at: at,
        balance: Balance::available_only(Money::parse(balance, Currency::Cny).unwrap()),
        resources: vec![],
        orders: vec![],
        spend: None,
        recharges: vec![],
        tally: None,
    }
}

/// The store's story, told to any backend: polls and their history,
/// alerts and their notices in one write, an acknowledgement (once, of two
/// clicks), a silence, delivery and failure, views, retention, entries.
/// Times carry nanoseconds, as a real clock's do.
async fn story<S>(store: &S)
where
    S: purser::ports::Store + purser::ports::BalanceEntries + purser::ports::MessageRefs,
{
    use chrono::{Duration, SubsecRound, TimeZone, Utc};
    use purser::domain::alert::{Alert, AlertState, Changes, Notice, NoticeKind};
    use purser::domain::command::{AlertRef, Matcher};
    use purser::domain::model::{
        Account, AccountId, Balance, BalanceEntry, EnteredBucket, FailureKind, PollFailure,
        Snapshot,
    };
    use purser::domain::money::Money;
    use purser::domain::routing::Routing;
    use purser::domain::rules::{AlertKey, RuleName, Severity};
    use purser::ports::{AckOutcome, EndSilenceOutcome, NewSilence};

    let t0 =
        Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap() + Duration::nanoseconds(123_456_789);
    let acme = AccountId::parse("acme").unwrap();
    let account = Account {
        id: acme.clone(),
        provider: "sim".into(),
        site: "cn".into(),
        labels: Default::default(),
    };
    let cny = |s: &str| Money::parse(s, purser::domain::money::Currency::Cny).unwrap();
    let snapshot = |at, balance: &str| Snapshot {
        taken_at: at,
        balance: Balance::available_only(cny(balance)),
        resources: vec![],
        orders: vec![],
        spend: None,
        recharges: vec![],
        tally: None,
    };

    // Polls: two good, one failed (its message redacted as stored).
    store
        .record_poll(&acme, t0, Ok(&snapshot(t0, "1,000")))
        .await
        .unwrap();
    let t1 = t0 + Duration::minutes(1);
    store
        .record_poll(&acme, t1, Ok(&snapshot(t1, "900")))
        .await
        .unwrap();
    let t2 = t0 + Duration::minutes(2);
    let health = store
        .record_poll(
            &acme,
            t2,
            Err(&PollFailure {
                kind: FailureKind::Refused,
                message: "AuthFailure".into(),
            }),
        )
        .await
        .unwrap();
    assert_eq!(health.consecutive_failures, 1);
    let stored = store.health(&acme).await.unwrap();
    assert_eq!(
        stored.last_error.as_ref().map(|e| e.kind),
        Some(FailureKind::Refused)
    );
    // The window, and the newest before it when the window holds none.
    let all = store.history(&acme, t0).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].balance.available, cny("900"));
    let later = store.history(&acme, t0 + Duration::hours(1)).await.unwrap();
    assert_eq!(later.len(), 1, "the latest known state is kept");
    // The newest alone, as one row.
    let newest = store.latest_snapshot(&acme).await.unwrap();
    assert_eq!(newest.as_ref(), all.last());
    let nobody = AccountId::parse("nobody").unwrap();
    assert!(store.latest_snapshot(&nobody).await.unwrap().is_none());

    // An alert and its notice, written together; one row per output.
    let key = AlertKey {
        rule: RuleName::LowBalance,
        account: "acme".into(),
        resource: String::new(),
        tier: "1000.00".into(),
    };
    let alert = Alert {
        fingerprint: key.fingerprint(),
        key,
        severity: Severity::B,
        rank: 1,
        state: AlertState::Firing,
        summary: "the balance is ¥900.00".into(),
        started_at: t1,
        fired_at: Some(t1),
        last_notified_at: Some(t1),
        resolved_at: None,
        acknowledged: None,
    };
    let routing = Routing::everywhere(&["hook".to_owned(), "chat".to_owned()]);
    let before = store.alerts_written().await.unwrap();
    let changes = Changes {
        alerts: vec![alert.clone()],
        notices: vec![Notice {
            kind: NoticeKind::Firing,
            alert: alert.clone(),
            escalated_from: None,
        }],
    };
    store.apply(&account, &changes, &routing).await.unwrap();
    // Written twice (a retried write): still one alert, one row per output.
    store.apply(&account, &changes, &routing).await.unwrap();
    let open = store.open_alerts(&acme).await.unwrap();
    assert_eq!(open.len(), 1);
    // A page of the firing alerts, and how many fire in all.
    assert_eq!(store.firing_alerts(0, 25).await.unwrap(), (open.clone(), 1));
    assert_eq!(store.firing_alerts(1, 25).await.unwrap(), (vec![], 1));
    // Each write of an alert is numbered: a reader picks up from the last
    // number it saw, and reads nothing twice.
    let (changed, seen) = store.alerts_changed_since(before).await.unwrap();
    assert_eq!(
        changed,
        vec![(seen, open[0].clone())],
        "both writes of it, read as it is now, with the number of the last"
    );
    assert!(seen > before && seen <= store.alerts_written().await.unwrap());
    assert_eq!(
        store.alerts_changed_since(seen).await.unwrap(),
        (vec![], seen)
    );
    // Every firing alert as written, and its mark: which occurrence, which write.
    assert_eq!(
        store.firing_as_written().await.unwrap(),
        vec![(seen, open[0].clone())]
    );
    let mark = purser::ports::Mark {
        fingerprint: alert.fingerprint.clone(),
        started_at: open[0].started_at,
        written: seen,
    };
    assert_eq!(store.firing_marks(seen).await.unwrap(), vec![mark.clone()]);
    assert_eq!(
        open[0].started_at,
        t1.trunc_subsecs(3),
        "kept to the millisecond"
    );
    let due = store.due_notices("hook", t1, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(
        due[0].notice.started_at, open[0].started_at,
        "one precision"
    );
    assert_eq!(store.pending_outputs().await.unwrap().len(), 2);

    // Two clicks on Acknowledge: one wins, and its notice is queued.
    let reference = AlertRef::parse(&alert.fingerprint[..8]).unwrap();
    let accounts = [account.clone()];
    let first = store
        .acknowledge(&reference, "ana", t2, &accounts, &routing)
        .await
        .unwrap();
    assert!(matches!(first, AckOutcome::Acknowledged(_)));
    let second = store
        .acknowledge(&reference, "bo", t2, &accounts, &routing)
        .await
        .unwrap();
    assert!(matches!(second, AckOutcome::AlreadyAcknowledged(_)));
    let (changed, acked) = store.alerts_changed_since(seen).await.unwrap();
    assert_eq!(changed.len(), 1, "the acknowledgement is a change");
    assert_eq!(
        changed[0].1.acknowledged.as_ref().map(|a| a.by.as_str()),
        Some("ana")
    );
    assert_eq!(changed[0].0, acked);
    assert_eq!(store.alerts_changed_since(acked).await.unwrap().1, acked);
    // The mark moves with the write.
    let mark = purser::ports::Mark {
        written: acked,
        ..mark
    };
    assert_eq!(store.firing_marks(acked).await.unwrap(), vec![mark.clone()]);
    // An alert that fired and resolved after a number is marked with its
    // last write, to be read as a change; after that write it is not marked.
    let brief = Alert {
        fingerprint: "b0".repeat(16),
        ..alert.clone()
    };
    let only = |a: &Alert| Changes {
        alerts: vec![a.clone()],
        notices: vec![],
    };
    store
        .apply(&account, &only(&brief), &routing)
        .await
        .unwrap();
    let resolved = Alert {
        state: AlertState::Resolved,
        resolved_at: Some(t2),
        ..brief.clone()
    };
    store
        .apply(&account, &only(&resolved), &routing)
        .await
        .unwrap();
    let gone = store.alerts_written().await.unwrap();
    let mut marks = store.firing_marks(acked).await.unwrap();
    marks.sort_by_key(|m| m.written);
    assert_eq!(
        marks,
        vec![
            mark.clone(),
            purser::ports::Mark {
                fingerprint: brief.fingerprint.clone(),
                started_at: open[0].started_at,
                written: gone,
            }
        ]
    );
    assert_eq!(store.firing_marks(gone).await.unwrap(), vec![mark.clone()]);
    assert_eq!(store.firing_as_written().await.unwrap().len(), 1);
    let hook = store.due_notices("hook", t2, 10).await.unwrap();
    assert_eq!(hook.len(), 2);
    assert_eq!(hook[1].notice.kind, NoticeKind::Acknowledged);
    assert_eq!(hook[1].notice.acknowledged_by.as_deref(), Some("ana"));

    // The chat message that shows it, remembered and read back as posted.
    let posted = purser::ports::MessageRef {
        channel: "C0OPS".into(),
        message: "1700000000.000100".into(),
    };
    store
        .record_message("chat", &posted, &[hook[0].notice.clone()])
        .await
        .unwrap();
    assert_eq!(
        store
            .message("chat", &alert.fingerprint, alert.started_at)
            .await
            .unwrap(),
        Some(posted.clone()),
        "found by the alert's own (nanosecond) start"
    );
    assert_eq!(
        store.shown("chat", &posted).await.unwrap(),
        [hook[0].notice.clone()]
    );
    // The acknowledged notice replaces the firing one in the same place.
    store
        .record_message("chat", &posted, &[hook[1].notice.clone()])
        .await
        .unwrap();
    assert_eq!(store.shown("chat", &posted).await.unwrap().len(), 1);
    assert_eq!(
        store.alerts_in(&posted).await.unwrap(),
        std::slice::from_ref(&alert.fingerprint)
    );

    // Delivered once; failed and kept; retried.
    store.mark_delivered(hook[0].id, t2).await.unwrap();
    store
        .mark_failed(hook[1].id, "502 from the hook", None)
        .await
        .unwrap();
    assert!(store.due_notices("hook", t2, 10).await.unwrap().is_empty());
    let failed = store.failed_notices(Some("acme")).await.unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].error, "502 from the hook");
    assert_eq!(store.retry_failed(None, t2).await.unwrap(), 1);
    assert_eq!(store.due_notices("hook", t2, 10).await.unwrap().len(), 1);
    assert!(store.next_notice_due("hook").await.unwrap().is_some());

    // A silence over the firing alert tells the outputs; ended early once.
    let silence = store
        .add_silence(
            &NewSilence {
                matchers: Matcher::parse_list("account=acme").unwrap(),
                starts_at: t2,
                ends_at: t2 + Duration::hours(2),
                created_by: "ana".into(),
                reason: Some("wire sent".into()),
            },
            &accounts,
            &routing,
        )
        .await
        .unwrap();
    assert_eq!(
        store.silences(t2).await.unwrap(),
        std::slice::from_ref(&silence)
    );
    let chat = store.due_notices("chat", t2, 10).await.unwrap();
    assert!(chat.iter().any(|n| n.notice.kind == NoticeKind::Silenced));
    let t3 = t2 + Duration::minutes(5);
    assert!(matches!(
        store.end_silence(silence.id, "bo", t3).await.unwrap(),
        EndSilenceOutcome::Ended(_)
    ));
    assert!(matches!(
        store.end_silence(silence.id, "bo", t3).await.unwrap(),
        EndSilenceOutcome::AlreadyOver(_)
    ));
    assert!(store.silences(t3).await.unwrap().is_empty());

    // Views, retention.
    let view = purser::domain::forecast::AccountView::of(&all, Duration::days(7), t1).unwrap();
    let written = store.views_written().await.unwrap();
    store.record_view(&acme, &view).await.unwrap();
    assert_eq!(store.views().await.unwrap()[&acme], view);
    assert!(
        store.views_written().await.unwrap() > written,
        "a copy kept of the views is stale now"
    );
    assert_eq!(
        store.prune_snapshots(t0 + Duration::days(1)).await.unwrap(),
        1
    );
    assert_eq!(store.history(&acme, t0).await.unwrap().len(), 1);

    // Balances entered by hand, exact.
    let entry = |bucket, amount: &str, at| BalanceEntry {
        bucket,
        amount: Money::new(
            amount.parse().unwrap(),
            purser::domain::money::Currency::Cny,
        ),
        as_of: at,
        entered_by: "ana".into(),
        entered_at: at,
    };
    store
        .record_balance_entry(&acme, &entry(None, "12345.678901", t0))
        .await
        .unwrap();
    let contract = Some(EnteredBucket::Contract("COC-1".into()));
    store
        .record_balance_entry(&acme, &entry(contract.clone(), "100", t0))
        .await
        .unwrap();
    store
        .record_balance_entry(&acme, &entry(contract.clone(), "250", t1))
        .await
        .unwrap();
    let latest = store.latest_balance_entry(&acme).await.unwrap().unwrap();
    assert_eq!(latest.amount.amount_string(), "12345.678901");
    let parts = store.bucket_entries(&acme).await.unwrap();
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0].amount.amount_string(), "250.00");
    assert_eq!(parts[0].bucket, contract);
    // Many accounts at once, as one at a time; one with none is left out.
    let other = AccountId::parse("other").unwrap();
    let unallocated = Some(EnteredBucket::Unallocated);
    store
        .record_balance_entry(&other, &entry(unallocated.clone(), "7", t0))
        .await
        .unwrap();
    let none = AccountId::parse("nobody-entered").unwrap();
    let all = store
        .bucket_entries_of(&[&acme, &none, &other, &acme])
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[&acme], parts);
    assert_eq!(all[&other], store.bucket_entries(&other).await.unwrap());
    assert_eq!(all[&other][0].bucket, unallocated);
}

/// Receipts: a key is taken once per source, forgotten after its time;
/// a cursor only moves forward.
async fn receipts_story(store: &dyn purser::ports::Receipts) {
    use chrono::{Duration, TimeZone, Utc};
    let t0 = Utc.with_ymd_and_hms(2026, 3, 1, 8, 0, 0).unwrap();
    let keep = Duration::hours(1);
    let first = |key: &'static str, at| store.first_receipt("slack-envelope", key, at, keep);
    assert!(first("e1", t0).await.unwrap());
    assert!(!first("e1", t0 + Duration::minutes(5)).await.unwrap());
    assert!(
        store.first_receipt("other", "e1", t0, keep).await.unwrap(),
        "another source's key is its own"
    );
    assert!(first("e2", t0 + Duration::minutes(61)).await.unwrap());
    // e1 was forgotten by that call.
    assert!(first("e1", t0 + Duration::minutes(62)).await.unwrap());

    assert_eq!(store.cursor("telegram-updates").await.unwrap(), None);
    store.advance_cursor("telegram-updates", 42).await.unwrap();
    store.advance_cursor("telegram-updates", 7).await.unwrap();
    assert_eq!(store.cursor("telegram-updates").await.unwrap(), Some(42));
    store.advance_cursor("telegram-updates", 43).await.unwrap();
    assert_eq!(store.cursor("telegram-updates").await.unwrap(), Some(43));
}

/// Polls recorded, read and judged many accounts at a time come to what
/// one account at a time would: each account's health after its polls in
/// order, its own window of history, its own alerts and lost notices.
async fn batch_story<S: purser::ports::Store>(store: &S) {
    use chrono::{Duration, TimeZone, Utc};
    use purser::domain::alert::{Alert, AlertState, Changes, Notice, NoticeKind};
    use purser::domain::forecast::AccountView;
    use purser::domain::model::{Account, AccountId, FailureKind, PollFailure, Snapshot};
    use purser::domain::routing::Routing;
    use purser::domain::rules::{AlertKey, RuleName, Severity};
    use purser::ports::{Judgement, PollRecord, Window};

    let t0 = Utc.with_ymd_and_hms(2026, 11, 2, 0, 0, 0).unwrap();
    let t1 = t0 + Duration::hours(1);
    let id = |s: &str| AccountId::parse(s).unwrap();
    let window = |account, since| Window {
        account,
        since,
        fresh: None,
    };
    let (one, two, three) = (id("batch-one"), id("batch-two"), id("batch-three"));
    let account = |id: &AccountId| Account {
        id: id.clone(),
        provider: "sim".into(),
        site: "cn".into(),
        labels: Default::default(),
    };
    let snapshot = balance_only;
    let down = PollFailure {
        kind: FailureKind::Unreachable,
        message: "connection refused".into(),
    };
    let server: purser::domain::model::Resource = serde_json::from_value(serde_json::json!({
        "id": "ins-1", "product": "cvm", "expires_at": "2026-12-01T00:00:00Z",
        "renewal": "auto", "status": "active"
    }))
    .unwrap();
    let with_server = |at, balance: &str| Snapshot {
        resources: vec![server.clone()],
        ..snapshot(at, balance)
    };
    let (s1, s2, s3) = (
        with_server(t0, "1000"),
        snapshot(t0, "50"),
        with_server(t1, "800"),
    );
    let first = store
        .record_polls(&[
            PollRecord {
                account: &one,
                at: t0,
                outcome: Ok(&s1),
            },
            PollRecord {
                account: &two,
                at: t0,
                outcome: Ok(&s2),
            },
            PollRecord {
                account: &three,
                at: t0,
                outcome: Err(&down),
            },
        ])
        .await
        .unwrap();
    assert_eq!(first[0].last_success_at, Some(t0));
    assert_eq!(first[2].consecutive_failures, 1);
    // The same account twice in one batch: in order, as two calls would.
    let second = store
        .record_polls(&[
            PollRecord {
                account: &three,
                at: t1,
                outcome: Err(&down),
            },
            PollRecord {
                account: &one,
                at: t1,
                outcome: Ok(&s3),
            },
            PollRecord {
                account: &three,
                at: t1,
                outcome: Err(&down),
            },
        ])
        .await
        .unwrap();
    assert_eq!(second[0].consecutive_failures, 2);
    assert_eq!(second[2].consecutive_failures, 3);
    assert_eq!(store.health(&one).await.unwrap(), second[1]);
    assert_eq!(store.health(&two).await.unwrap(), first[1]);
    assert_eq!(store.health(&three).await.unwrap(), second[2]);

    // Each account's own window, the newest before it kept; one named twice.
    let readings = store
        .judging(&[
            window(&one, t1),
            window(&two, t1),
            window(&three, t0),
            window(&one, t0),
        ])
        .await
        .unwrap();
    let balances = |i: usize| -> Vec<String> {
        readings[i]
            .history
            .iter()
            .map(|s| s.balance.available.to_string())
            .collect()
    };
    assert_eq!(balances(0), ["¥800.00"]);
    assert_eq!(balances(1), ["¥50.00"], "the latest known state is kept");
    assert!(readings[2].history.is_empty());
    assert_eq!(balances(3), ["¥1,000.00", "¥800.00"]);
    // The newest whole; those before it may come without their resources.
    let whole = store.history(&one, t0).await.unwrap();
    assert_eq!(readings[3].history.last(), whole.last());
    assert_eq!(readings[3].history[0].balance, whole[0].balance);
    // Held by the caller, the newest may come thin too; nothing else changes.
    let held = store
        .judging(&[Window {
            fresh: Some(t1),
            ..window(&one, t0)
        }])
        .await
        .unwrap();
    let bare = |s: &Snapshot| Snapshot {
        resources: vec![],
        orders: vec![],
        ..s.clone()
    };
    let thin: Vec<Snapshot> = held[0].history.iter().map(bare).collect();
    assert_eq!(thin, whole.iter().map(bare).collect::<Vec<_>>());
    assert_eq!(held[0].open, readings[3].open);

    // Judgements: a view for one, an alert and its notice for two.
    let view = AccountView::of(&readings[3].history, Duration::days(7), t1).unwrap();
    let key = AlertKey {
        rule: RuleName::LowBalance,
        account: "batch-two".into(),
        resource: String::new(),
        tier: "100.00".into(),
    };
    let alert = Alert {
        fingerprint: key.fingerprint(),
        key,
        severity: Severity::B,
        rank: 1,
        state: AlertState::Firing,
        summary: "the balance is ¥50.00".into(),
        started_at: t1,
        fired_at: Some(t1),
        last_notified_at: Some(t1),
        resolved_at: None,
        acknowledged: None,
    };
    let fired = Changes {
        alerts: vec![alert.clone()],
        notices: vec![Notice {
            kind: NoticeKind::Firing,
            alert: alert.clone(),
            escalated_from: None,
        }],
    };
    let (acc_one, acc_two) = (account(&one), account(&two));
    let routing = Routing::everywhere(&["batch-hook".to_owned()]);
    let written = store.views_written().await.unwrap();
    store
        .record_judgements(
            &[
                Judgement {
                    account: &acc_one,
                    view: Some(&view),
                    changes: &Changes::default(),
                },
                Judgement {
                    account: &acc_two,
                    view: None,
                    changes: &fired,
                },
            ],
            &routing,
        )
        .await
        .unwrap();
    assert!(
        store.views_written().await.unwrap() > written,
        "judgements that wrote a view move the count"
    );
    assert_eq!(store.views().await.unwrap().get(&one), Some(&view));
    assert!(!store.views().await.unwrap().contains_key(&two));
    let due = store.due_notices("batch-hook", t1, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    store
        .mark_failed(due[0].id, "410 gone", None)
        .await
        .unwrap();

    // Read back together: two's open alert and lost notice, no one else's.
    let readings = store
        .judging(&[window(&two, t0), window(&one, t0)])
        .await
        .unwrap();
    assert_eq!(readings[0].open, store.open_alerts(&two).await.unwrap());
    assert_eq!(readings[0].open.len(), 1);
    let failed: Vec<i64> = readings[0].failed.iter().map(|f| f.id).collect();
    assert_eq!(failed, [due[0].id]);
    assert_eq!(readings[0].failed[0].error, "410 gone");
    assert!(readings[1].open.is_empty() && readings[1].failed.is_empty());
}

/// Resources and orders are kept once per content: polls that saw the same
/// ones share them, every snapshot reads back whole, and pruning drops only
/// what no snapshot names. `kept` counts the inventories the store holds
/// for the account, read beside the store.
async fn inventory_story<S, F>(store: &S, kept: impl Fn() -> F)
where
    S: purser::ports::Store,
    F: std::future::Future<Output = i64>,
{
    use chrono::{Duration, TimeZone, Utc};
    use purser::domain::model::{AccountId, Balance, Resource, Snapshot};
    use purser::domain::money::{Currency, Money};
    use purser::ports::{PollRecord, Window};

    let t0 = Utc.with_ymd_and_hms(2026, 11, 3, 0, 0, 0).unwrap();
    let at = |h| t0 + Duration::hours(h);
    let acct = AccountId::parse("inventory-one").unwrap();
    let resource = |id: &str| -> Resource {
        serde_json::from_value(serde_json::json!({
            "id": id, "product": "cvm", "expires_at": "2026-12-01T00:00:00Z",
            "renewal": "auto", "status": "active"
        }))
        .unwrap()
    };
    let snapshot = |at, balance: &str, resources: Vec<Resource>| Snapshot {
        taken_at: at,
        balance: Balance::available_only(Money::parse(balance, Currency::Cny).unwrap()),
        resources,
        orders: vec![],
        spend: None,
        recharges: vec![],
        tally: None,
    };
    let one = vec![resource("ins-1")];
    let two = vec![resource("ins-1"), resource("ins-2")];
    let (a, b, c) = (
        snapshot(at(0), "1000", one.clone()),
        snapshot(at(1), "990", one.clone()),
        snapshot(at(2), "980", two.clone()),
    );
    fn polled<'a>(account: &'a AccountId, s: &'a Snapshot) -> PollRecord<'a> {
        PollRecord {
            account,
            at: s.taken_at,
            outcome: Ok(s),
        }
    }
    let record = |s| polled(&acct, s);
    store.record_poll(&acct, a.taken_at, Ok(&a)).await.unwrap();
    store.record_polls(&[record(&b), record(&c)]).await.unwrap();
    assert_eq!(
        kept().await,
        2,
        "two polls that saw the same resources share them"
    );
    assert_eq!(
        store.history(&acct, t0).await.unwrap(),
        vec![a.clone(), b.clone(), c.clone()]
    );
    assert_eq!(store.latest_snapshot(&acct).await.unwrap(), Some(c.clone()));
    // Judging reads the newest whole and the others' balances.
    let judging = store
        .judging(&[Window {
            account: &acct,
            since: t0,
            fresh: None,
        }])
        .await
        .unwrap();
    let history = &judging[0].history;
    assert_eq!(history.last(), Some(&c));
    assert_eq!(
        history
            .iter()
            .map(|s| s.balance.available)
            .collect::<Vec<_>>(),
        [&a, &b, &c].map(|s| s.balance.available)
    );

    // Pruned to the newest, the first resources go; seen again, they are
    // kept again. (The other stories' accounts are pruned too.)
    assert!(store.prune_snapshots(at(2)).await.unwrap() >= 2);
    assert_eq!(kept().await, 1);
    assert_eq!(store.history(&acct, t0).await.unwrap(), vec![c.clone()]);
    let d = snapshot(at(3), "970", one.clone());
    store.record_polls(&[record(&d)]).await.unwrap();
    assert_eq!(kept().await, 2);
    assert_eq!(store.history(&acct, t0).await.unwrap(), vec![c, d.clone()]);
    assert_eq!(store.latest_snapshot(&acct).await.unwrap(), Some(d));
}

/// Snapshots written before resources and orders were kept apart read back
/// whole after the upgrade, and the next poll of the same resources is
/// kept beside them.
async fn upgraded_snapshot_story<S: purser::ports::Store>(store: &S) {
    use chrono::{Duration, TimeZone, Utc};
    use purser::domain::model::{AccountId, Snapshot};
    let acct = AccountId::parse("old").unwrap();
    let history = store
        .history(&acct, Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap())
        .await
        .unwrap();
    assert_eq!(history.len(), 1);
    let old = &history[0];
    assert_eq!(old.balance.available.to_string(), "¥1,000.00");
    assert_eq!(old.resources.len(), 1);
    assert_eq!(old.resources[0].id.as_str(), "ins-old");
    let next = Snapshot {
        taken_at: old.taken_at + Duration::hours(1),
        ..old.clone()
    };
    store
        .record_poll(&acct, next.taken_at, Ok(&next))
        .await
        .unwrap();
    assert_eq!(
        store.history(&acct, old.taken_at).await.unwrap(),
        vec![old.clone(), next]
    );
}

const OLD_SNAPSHOT: &str = r#"{"taken_at":"2026-10-01T00:00:00Z","balance":{"available":{"amount":"1000","currency":"CNY"}},"resources":[{"id":"ins-old","product":"cvm","expires_at":"2026-12-01T00:00:00Z","renewal":"auto","status":"active"}],"orders":[]}"#;

#[tokio::test]
async fn snapshots_kept_before_the_upgrade_read_back_whole_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let url = format!("sqlite://{}?mode=rwc", path.display());
    {
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        let mut before = sqlx::migrate!("./migrations/sqlite");
        before.migrations = before
            .migrations
            .iter()
            .filter(|m| !m.description.contains("inventories"))
            .cloned()
            .collect();
        before.run(&pool).await.unwrap();
        sqlx::query("INSERT INTO snapshots (account, taken_at, body) VALUES ('old', ?, ?)")
            .bind(1_790_812_800_000_i64)
            .bind(OLD_SNAPSHOT)
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    }
    let store = purser::adapters::sqlite::SqliteStore::open(&path)
        .await
        .unwrap();
    upgraded_snapshot_story(&store).await;
}

#[tokio::test]
async fn snapshots_kept_before_the_upgrade_read_back_whole_on_postgres() {
    let Some(pg) = Postgres::start("snapshots_kept_before_the_upgrade").await else {
        return;
    };
    let url = pg.database().await;
    {
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        let mut before = sqlx::migrate!("./migrations/postgres");
        before.migrations = before
            .migrations
            .iter()
            .filter(|m| !m.description.contains("inventories"))
            .cloned()
            .collect();
        before.run(&pool).await.unwrap();
        sqlx::query(
            "INSERT INTO snapshots (account, taken_at, body)
             VALUES ('old', '2026-10-01T00:00:00Z', $1::jsonb)",
        )
        .bind(OLD_SNAPSHOT)
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    }
    let store = purser::adapters::postgres::PgStore::open(&url, None, 4)
        .await
        .unwrap();
    upgraded_snapshot_story(&store).await;
}

/// How many inventories the store holds for the inventory story's account.
async fn kept<'a, DB: sqlx::Database>(pool: &'a sqlx::Pool<DB>) -> i64
where
    for<'c> &'c sqlx::Pool<DB>: sqlx::Executor<'c, Database = DB>,
    i64: sqlx::Type<DB> + for<'r> sqlx::Decode<'r, DB>,
    (i64,): for<'r> sqlx::FromRow<'r, DB::Row>,
    <DB as sqlx::Database>::Arguments<'a>: sqlx::IntoArguments<'a, DB>,
{
    let (n,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM inventories WHERE account = 'inventory-one'")
            .fetch_one(pool)
            .await
            .unwrap();
    n
}

/// Tallies: judging reads what the rules need of a window and the forecast
/// is the one every snapshot walked gives. From a tallied first snapshot
/// the store skips to the newest; from one kept before tallies were, it
/// reads them all.
async fn tally_story<S: purser::ports::Store>(store: &S) {
    use chrono::{Duration, TimeZone, Utc};
    use purser::domain::forecast::{burn_rate, carry};
    use purser::domain::model::{AccountId, Snapshot};
    use purser::ports::{PollRecord, Window};

    let t = |h: i64| Utc.with_ymd_and_hms(2026, 11, 3, 0, 0, 0).unwrap() + Duration::hours(h);
    let id = AccountId::parse("tallied").unwrap();
    let mut kept: Vec<Snapshot> = Vec::new();
    for (h, balance) in [
        (0, "1000"),
        (1, "990"),
        (2, "970"),
        (3, "975"),
        (4, "940"),
        (5, "900"),
    ] {
        let mut s = balance_only(t(h), balance);
        // The first two were kept before tallies were.
        if h >= 2 {
            s.tally = carry(kept.last(), &s);
        }
        store
            .record_polls(&[PollRecord {
                account: &id,
                at: s.taken_at,
                outcome: Ok(&s),
            }])
            .await
            .unwrap();
        kept.push(s);
    }
    let id = &id;
    let read = |since| async move {
        let w = Window {
            account: id,
            since,
            fresh: Some(t(5)),
        };
        store.judging(&[w]).await.unwrap().remove(0).history
    };
    // The rate every snapshot from `from` on gives, walked one by one.
    let walked = |from: usize, window| {
        let plain: Vec<Snapshot> = kept[from..]
            .iter()
            .map(|s| Snapshot {
                tally: None,
                ..s.clone()
            })
            .collect();
        burn_rate(&plain, window, t(5)).unwrap()
    };
    // Untallied first: every snapshot, and the same rate.
    let week = Duration::days(7);
    let all = read(t(0)).await;
    assert_eq!(all, kept);
    assert_eq!(burn_rate(&all, week, t(5)).unwrap(), walked(0, week));
    // Tallied first: its tally and the newest's sum what lies between.
    let from_two = read(t(2)).await;
    assert_eq!(from_two.first(), kept.get(2));
    assert_eq!(from_two.last(), kept.last());
    assert_eq!(from_two.len(), 3, "the first, the one after it, the newest");
    let three = Duration::hours(3);
    let rate = burn_rate(&from_two, three, t(5)).unwrap();
    assert_eq!(rate, walked(2, three));
    // ¥35 and ¥40 fell over 3 hours (the rise is no spend): ¥600 a day.
    assert_eq!(rate.per_day.to_string(), "¥600.00");
    // A window that starts inside the millisecond of its first snapshot,
    // just after it: the store keeps times to the millisecond, the rules
    // do not, and the next snapshot is the window's first.
    let late = Duration::hours(3) - Duration::microseconds(500);
    let from_inside = read(t(5) - late).await;
    assert_eq!(
        burn_rate(&from_inside, late, t(5)).unwrap(),
        walked(0, late)
    );
    // A snapshot without a tally after them (as a replica of an older
    // build would write) starts a new chain: the window is read whole.
    for (h, balance, tallied) in [(6, "880", false), (7, "850", true)] {
        let mut s = balance_only(t(h), balance);
        if tallied {
            s.tally = carry(kept.last(), &s);
        }
        store
            .record_polls(&[PollRecord {
                account: id,
                at: s.taken_at,
                outcome: Ok(&s),
            }])
            .await
            .unwrap();
        kept.push(s);
    }
    let broken = store
        .judging(&[Window {
            account: id,
            since: t(2),
            fresh: Some(t(7)),
        }])
        .await
        .unwrap()
        .remove(0)
        .history;
    assert_eq!(broken, kept[2..]);
    let plain: Vec<Snapshot> = kept[2..]
        .iter()
        .map(|s| Snapshot {
            tally: None,
            ..s.clone()
        })
        .collect();
    let window = Duration::hours(5);
    assert_eq!(
        burn_rate(&broken, window, t(7)),
        burn_rate(&plain, window, t(7))
    );
}

#[tokio::test]
async fn the_store_story_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let store = purser::adapters::sqlite::SqliteStore::open(&path)
        .await
        .unwrap();
    story(&store).await;
    receipts_story(&store).await;
    batch_story(&store).await;
    tally_story(&store).await;
    let beside = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    inventory_story(&store, || kept(&beside)).await;
}

#[tokio::test]
async fn the_store_story_on_postgres() {
    let Some(pg) = Postgres::start("the_store_story_on_postgres").await else {
        return;
    };
    let url = pg.database().await;
    let store = purser::adapters::postgres::PgStore::open(&url, None, 4)
        .await
        .unwrap();
    story(&store).await;
    receipts_story(&store).await;
    batch_story(&store).await;
    tally_story(&store).await;
    let beside = sqlx::PgPool::connect(&url).await.unwrap();
    inventory_story(&store, || kept(&beside)).await;
}

/// Two replicas on one database: one leads; the other takes over only once
/// the lease has run out (or was given up), with the next fencing token; the
/// old leader, paused past its lease, can neither renew nor write.
#[tokio::test]
async fn one_replica_leads_and_a_paused_one_cannot_write_after_a_takeover() {
    use chrono::{Duration, TimeZone, Utc};
    use purser::adapters::postgres::PgStore;
    let Some(pg) = Postgres::start("one_replica_leads").await else {
        return;
    };
    let url = pg.database().await;
    let (a, b) = (
        PgStore::open(&url, None, 2).await.unwrap(),
        PgStore::open(&url, None, 2).await.unwrap(),
    );
    let term = Duration::seconds(15);
    let t0 = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap() + Duration::nanoseconds(7);

    let lead = a
        .lead("replica-a", t0, term)
        .await
        .unwrap()
        .expect("a leads");
    assert_eq!(lead.token, 1);
    assert!(
        b.lead("replica-b", t0 + Duration::seconds(5), term)
            .await
            .unwrap()
            .is_none()
    );
    // Renewed well inside the term: still a's, same token.
    assert!(
        a.renew(lead.token, t0 + Duration::seconds(5), term)
            .await
            .unwrap()
    );
    assert!(
        b.lead("replica-b", t0 + Duration::seconds(19), term)
            .await
            .unwrap()
            .is_none()
    );
    // Taking it again keeps the token.
    let again = a
        .lead("replica-a", t0 + Duration::seconds(6), term)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((again.token, again.since), (1, lead.since));

    // a is paused (no renewals); its lease runs out at 21 s; b takes over.
    let t1 = t0 + Duration::seconds(22);
    let taken = b
        .lead("replica-b", t1, term)
        .await
        .unwrap()
        .expect("b takes over");
    assert_eq!(taken.token, 2, "the next fencing token");
    assert_eq!(b.leader().await.unwrap().unwrap().holder, "replica-b");
    // a wakes: it cannot renew, and its fenced writes are refused.
    assert!(!a.renew(lead.token, t1, term).await.unwrap());
    let stale = a
        .with_lead(lead.token, |tx| {
            Box::pin(async move {
                sqlx::query("INSERT INTO silences (matchers, starts_at, ends_at, created_by) VALUES ('account=x', now(), now(), 'a')")
                    .execute(&mut *tx)
                    .await?;
                Ok(())
            })
        })
        .await
        .expect_err("fenced")
        .to_string();
    assert!(
        stale.contains("no longer leads (its token 1, the leader's 2)"),
        "{stale}"
    );
    // b's own write goes through.
    b.with_lead(taken.token, |tx| {
        Box::pin(async move {
            sqlx::query("INSERT INTO silences (matchers, starts_at, ends_at, created_by) VALUES ('account=x', now(), now(), 'b')")
                .execute(&mut *tx)
                .await?;
            Ok(())
        })
    })
    .await
    .unwrap();
    let writers: Vec<String> = sqlx::query_scalar("SELECT created_by FROM silences")
        .fetch_all(&sqlx::PgPool::connect(&url).await.unwrap())
        .await
        .unwrap();
    assert_eq!(writers, ["b"], "nothing of a's after the takeover");

    // A clean stop gives the lead up at once.
    b.step_down(taken.token, t1 + Duration::seconds(1))
        .await
        .unwrap();
    let back = a
        .lead("replica-a", t1 + Duration::seconds(1), term)
        .await
        .unwrap()
        .expect("a leads again");
    assert_eq!(back.token, 3);
}

/// The rest of the store's story, on any backend: requests numbered with
/// their keys, guarded decisions and transitions (two racing writers, one
/// wins), a renewal held back while another changes the same instance, the
/// execution lease, progress, the audit chain and its head, request cards,
/// an escalation step with its page and notice in one write, pages
/// delivered and failed, and an override with its audit entry.
async fn requests_story<S>(store: &S)
where
    S: purser::ports::Store
        + purser::ports::Requests
        + purser::ports::RequestCards
        + purser::ports::Escalations,
{
    use chrono::{Duration, SubsecRound, TimeZone, Utc};
    use purser::domain::audit;
    use purser::domain::calendar::ResponseClock;
    use purser::domain::command::Role;
    use purser::domain::escalation::{Escalation, Phase};
    use purser::domain::model::{AccountId, ExternalId};
    use purser::domain::money::{Currency, Money};
    use purser::domain::request::{
        Action, Decision, PaymentMethod, RequestId, State, Tiers, Verdict, Via,
    };
    use purser::domain::rules::{RuleName, Severity};
    use purser::ports::{
        EscalationWrite, Lease, MessageRef, NewRequest, PageMessage, PagerEvent, RequestCard, Step,
        Written,
    };

    let t0 =
        Utc.with_ymd_and_hms(2026, 11, 2, 0, 0, 0).unwrap() + Duration::nanoseconds(987_654_321);
    let at = |m: i64| t0 + Duration::minutes(m);
    let shop = AccountId::parse("shop").unwrap();
    let amount = Money::new(6_000.into(), Currency::Cny);
    let ask = |action: Action, by: &str| NewRequest {
        account: shop.clone(),
        action,
        reason: Some("month end".into()),
        cost: Some(amount),
        balance: Some(Money::new(200.into(), Currency::Cny)),
        tier: Tiers::defaults().for_amount(Some(&amount)).clone(),
        requested_by: by.into(),
        requested_at: t0,
        expires_at: t0 + Duration::hours(24),
        origin: Some(Via {
            platform: "chat".into(),
            message: None,
        }),
    };
    let renew = |ids: &[&str]| Action::Renew {
        resources: ids.iter().map(|r| ExternalId::parse(r).unwrap()).collect(),
        months: 1,
    };
    let approve = |by: &str, m| Decision {
        by: by.into(),
        role: Role::Approver.as_str().into(),
        verdict: Verdict::Approve,
        at: at(m),
        via: Via {
            platform: "chat".into(),
            message: Some("m1".into()),
        },
        second_factor: false,
        comment: None,
    };

    // Numbered, keyed, audited.
    let topup = store
        .open_request(&ask(
            Action::Topup {
                amount,
                method: PaymentMethod::Wire,
            },
            "ria",
        ))
        .await
        .unwrap();
    assert_eq!(topup.id, RequestId(1));
    assert!(topup.key.starts_with("purser-r1-"), "{}", topup.key);
    assert_eq!(topup.requested_at, t0.trunc_subsecs(3));
    assert_eq!(
        store.request(topup.id).await.unwrap().as_ref(),
        Some(&topup)
    );

    // Two approvers press at once having read one version: one decision
    // lands, the other is told to read again; the same person never twice.
    let (by_ana, by_bo) = (approve("ana", 1), approve("bo", 1));
    let (a, b) = tokio::join!(
        store.record_decision(topup.id, topup.version, &by_ana, None),
        store.record_decision(topup.id, topup.version, &by_bo, None),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let done = [&a, &b]
        .iter()
        .filter(|w| matches!(w, Written::Done(_)))
        .count();
    assert_eq!(done, 1, "{a:?} {b:?}");
    let now = store.request(topup.id).await.unwrap().unwrap();
    assert_eq!(now.decisions.len(), 1);
    let first = now.decisions[0].by.clone();
    assert!(matches!(
        store
            .record_decision(topup.id, now.version, &approve(&first, 2), None)
            .await
            .unwrap(),
        Written::Stale(_)
    ));
    let second = if first == "ana" { "bo" } else { "ana" };
    let Written::Done(approved) = store
        .record_decision(
            topup.id,
            now.version,
            &approve(second, 2),
            Some(State::Approved),
        )
        .await
        .unwrap()
    else {
        panic!("the second approval lands")
    };
    assert_eq!(approved.state, State::Approved);
    assert_eq!(
        approved
            .decisions
            .iter()
            .map(|d| d.by.as_str())
            .collect::<Vec<_>>(),
        [first.as_str(), second],
        "in the order given"
    );

    // Of two executors racing to start it, one moves it.
    let start = || {
        store.transition(
            topup.id,
            Step::new(State::Approved, State::Executing, "purser", at(3)),
        )
    };
    let (x, y) = tokio::join!(start(), start());
    let moved = [x.unwrap(), y.unwrap()]
        .iter()
        .filter(|w| matches!(w, Written::Done(_)))
        .count();
    assert_eq!(moved, 1);

    // The execution lease: held, refused to another, lapsed, given up.
    let until = at(4);
    assert_eq!(
        store.hold(topup.id, "one", at(3), until).await.unwrap(),
        Lease::Held
    );
    assert_eq!(
        store.hold(topup.id, "two", at(3), until).await.unwrap(),
        Lease::HeldBy {
            holder: "one".into(),
            until: until.trunc_subsecs(3)
        }
    );
    assert_eq!(
        store.hold(topup.id, "two", at(5), at(6)).await.unwrap(),
        Lease::Held
    );
    store.release(topup.id, "two").await.unwrap();

    // Progress, guarded by the version read; a secret in it never kept.
    let r = store.request(topup.id).await.unwrap().unwrap();
    // A key purser has read, echoed back by a cloud into what it keeps.
    let key = purser::secret::Secret::from_value("sk-story-0123456789abcdef");
    let p = serde_json::json!({"orders": ["CS1"], "note": format!("signed with {}", key.expose())});
    assert!(matches!(
        store
            .record_progress(r.id, r.version, &p, &[])
            .await
            .unwrap(),
        Written::Done(_)
    ));
    assert!(matches!(
        store
            .record_progress(r.id, r.version, &serde_json::json!({}), &[])
            .await
            .unwrap(),
        Written::Stale(_)
    ));
    let kept = store.progress(r.id).await.unwrap().unwrap();
    assert_eq!(kept["orders"], serde_json::json!(["CS1"]));
    assert!(!kept.to_string().contains(key.expose()), "{kept}");

    // Two renewals of one instance: the second waits while the first runs.
    let approved_renewal = async |ids: &[&str]| {
        let r = store.open_request(&ask(renew(ids), "ria")).await.unwrap();
        let Written::Done(r) = store
            .record_decision(r.id, r.version, &approve("ana", 1), Some(State::Approved))
            .await
            .unwrap()
        else {
            panic!()
        };
        r
    };
    let first = approved_renewal(&["ins-a", "ins-b"]).await;
    let other = approved_renewal(&["ins-b"]).await;
    let go = |id| {
        store.transition(
            id,
            Step::new(State::Approved, State::Executing, "purser", at(7)),
        )
    };
    assert!(matches!(go(first.id).await.unwrap(), Written::Done(_)));
    assert_eq!(
        go(other.id).await.unwrap(),
        Written::Busy {
            by: first.id,
            on: "ins-b".into()
        }
    );
    assert_eq!(store.requests(true, 10).await.unwrap().len(), 3);
    assert_eq!(store.requests_since(t0).await.unwrap().len(), 3);

    // The audit chain verifies against its head, and refuses edits.
    let log = store.audit_log(None).await.unwrap();
    let head = store.audit_head().await.unwrap().unwrap();
    assert_eq!(head.0, log.len() as u64);
    let verified = audit::verify(&log, Some((head.0, head.1.as_str()))).unwrap();
    assert_eq!(verified.entries, log.len() as u64);

    // A card, remembered per output and updated in place.
    let card = |version, state| RequestCard {
        output: "chat".into(),
        at: MessageRef {
            channel: "C0".into(),
            message: "1.2".into(),
        },
        version,
        state,
    };
    store
        .record_card(topup.id, &card(1, State::Requested))
        .await
        .unwrap();
    store
        .record_card(topup.id, &card(4, State::Executing))
        .await
        .unwrap();
    assert_eq!(
        store.cards(&[topup.id, other.id]).await.unwrap(),
        [(topup.id, card(4, State::Executing))]
    );

    // An escalation step: state, page and notice in one write, once.
    let e = Escalation {
        fingerprint: "fp-1".into(),
        started_at: at(10),
        severity: Severity::A,
        raised_at: at(10),
        due_at: at(40),
        clock: ResponseClock::Always,
        phase: Phase::Walking,
        round: 1,
        round_start: at(10),
        position: 1,
        repeats_left: 2,
        next_at: Some(at(15)),
        acked_by: None,
        acked_at: None,
        resolved_at: None,
        version: 0,
    };
    let page = PageMessage {
        id: "fp-1-r1-s1-ana-trigger".into(),
        fingerprint: "fp-1".into(),
        started_at: at(10),
        account: "shop".into(),
        rule: RuleName::LowBalance,
        severity: Severity::A,
        summary: "the balance is ¥200.00".into(),
        raised_at: at(10),
        due_at: at(40),
        due_text: "00:40".into(),
        person: Some("ana".into()),
        why: "on call for ops".into(),
        round: 1,
        event: PagerEvent::Trigger,
        acked_by: None,
    };
    let write = |read_version| EscalationWrite {
        escalation: &e,
        read_version,
        at: at(10),
        pages: vec![
            ("dm:chat:U1".into(), page.clone()),
            ("pager:pd".into(), page.clone()),
        ],
        notices: vec![],
        reopen: false,
    };
    assert!(store.write_escalation(&write(None)).await.unwrap());
    assert!(
        !store.write_escalation(&write(None)).await.unwrap(),
        "written once"
    );
    let open = store.open_escalations().await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].version, 1);
    assert_eq!(open[0].started_at, at(10).trunc_subsecs(3));
    // Two passes that read version 1: one step.
    let step = EscalationWrite {
        pages: vec![],
        ..write(Some(1))
    };
    let (p, q) = tokio::join!(store.write_escalation(&step), store.write_escalation(&step));
    assert_eq!([p.unwrap(), q.unwrap()].iter().filter(|w| **w).count(), 1);
    assert_eq!(store.escalations_since(t0).await.unwrap().len(), 1);
    // Its mark: which chain, which version.
    assert_eq!(
        store.open_marks().await.unwrap(),
        vec![purser::ports::Mark {
            fingerprint: "fp-1".into(),
            started_at: at(10).trunc_subsecs(3),
            written: 2,
        }]
    );
    let due = store.due_pages(at(10), 10).await.unwrap();
    assert_eq!(due.len(), 1, "one row per page id");
    assert_eq!(due[0].page, page, "kept whole, as decided");
    store
        .page_failed(due[0].id, "429 slow down", Some(at(11)))
        .await
        .unwrap();
    assert!(store.due_pages(at(10), 10).await.unwrap().is_empty());
    assert_eq!(
        store.next_page_due().await.unwrap(),
        Some(at(11).trunc_subsecs(3))
    );
    store.page_delivered(due[0].id, at(11)).await.unwrap();
    assert_eq!(store.next_page_due().await.unwrap(), None);
    assert_eq!(
        store.resolved_at("fp-1", at(10)).await.unwrap(),
        None,
        "no such alert"
    );

    // An override made in chat, audited in the same chain.
    let made = store
        .add_override(
            &purser::domain::oncall::Override {
                id: 0,
                schedule: "ops".into(),
                person: "bo".into(),
                from: at(60),
                to: at(120),
                by: "ana".into(),
            },
            Some("swap"),
            at(20),
        )
        .await
        .unwrap();
    assert!(made.id > 0);
    assert_eq!(store.overrides(at(90)).await.unwrap(), [made]);
    assert!(store.overrides(at(120)).await.unwrap().is_empty());
    let log = store.audit_log(Some(at(20))).await.unwrap();
    assert!(log.last().unwrap().detail.contains("oncall_override"));
    let all = store.audit_log(None).await.unwrap();
    let head = store.audit_head().await.unwrap().unwrap();
    assert!(audit::verify(&all, Some((head.0, head.1.as_str()))).is_ok());
}

#[tokio::test]
async fn the_requests_story_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = purser::adapters::sqlite::SqliteStore::open(&dir.path().join("s.db"))
        .await
        .unwrap();
    requests_story(&store).await;
}

#[tokio::test]
async fn the_requests_story_on_postgres() {
    let Some(pg) = Postgres::start("the_requests_story_on_postgres").await else {
        return;
    };
    let store = purser::adapters::postgres::PgStore::open(&pg.database().await, None, 4)
        .await
        .unwrap();
    requests_story(&store).await;
}

/// On a replica, the writes only a leader makes (a poll's results, a notice
/// marked sent, a page, an escalation's step, a request card) go through
/// only while it holds the lease; what chat writes (a request, a decision)
/// goes through on any replica.
#[tokio::test]
async fn a_replica_writes_as_leader_only_while_it_holds_the_lease() {
    use chrono::{Duration, TimeZone, Utc};
    use purser::adapters::postgres::PgStore;
    use purser::domain::model::{AccountId, Balance, Snapshot};
    use purser::domain::money::{Currency, Money};
    use purser::ports::{Requests, Store, StoreError};
    let Some(pg) = Postgres::start("a_replica_writes_as_leader_only").await else {
        return;
    };
    let url = pg.database().await;
    let a = PgStore::open(&url, None, 2).await.unwrap().as_replica();
    let b = PgStore::open(&url, None, 2).await.unwrap().as_replica();
    let t0 = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
    let term = Duration::seconds(15);
    let acme = AccountId::parse("acme").unwrap();
    let snapshot = Snapshot {
        taken_at: t0,
        balance: Balance::available_only(Money::new(5.into(), Currency::Cny)),
        resources: vec![],
        orders: vec![],
        spend: None,
        recharges: vec![],
        tally: None,
    };
    let poll = |s: &PgStore, at| {
        let (s, acme, snapshot) = (s.clone(), acme.clone(), snapshot.clone());
        async move { s.record_poll(&acme, at, Ok(&snapshot)).await }
    };
    let refused = |r: Result<_, StoreError>| match r {
        Err(StoreError::NotLeader(why)) => why,
        other => panic!("not refused as a standby: {:?}", other.map(|_| ())),
    };

    assert_eq!(refused(poll(&a, t0).await), "this replica does not lead");
    let lead = a.lead("a", t0, term).await.unwrap().unwrap();
    poll(&a, t0).await.expect("the leader writes");
    // a is paused; b takes over once the term has run out.
    let t1 = t0 + Duration::seconds(20);
    let took = b.lead("b", t1, term).await.unwrap().unwrap();
    assert_eq!((lead.token, took.token), (1, 2));
    assert_eq!(
        refused(poll(&a, t1).await),
        "this replica no longer leads (its token 1, the leader's 2)"
    );
    assert!(matches!(
        a.mark_delivered(1, t1).await,
        Err(StoreError::NotLeader(_))
    ));
    poll(&b, t1).await.expect("the new leader writes");
    // What people do in chat is answered by whichever replica they reach.
    let amount = Money::new(100.into(), Currency::Cny);
    a.open_request(&purser::ports::NewRequest {
        account: acme.clone(),
        action: purser::domain::request::Action::Topup {
            amount,
            method: purser::domain::request::PaymentMethod::Wire,
        },
        reason: None,
        cost: Some(amount),
        balance: None,
        tier: purser::domain::request::Tiers::defaults()
            .for_amount(Some(&amount))
            .clone(),
        requested_by: "ria".into(),
        requested_at: t1,
        expires_at: t1 + Duration::hours(1),
        origin: None,
    })
    .await
    .expect("a standby takes requests");
    assert_eq!(b.health(&acme).await.unwrap().last_success_at, Some(t1));
}

/// A SQLite store with a story behind it, copied by `purser store copy`
/// into an empty PostgreSQL database, reads back the same through every
/// port; its audit chain verifies there; the next request gets the next
/// number; a second copy into the same database is refused.
#[tokio::test]
async fn store_copy_moves_everything_and_refuses_a_target_not_empty() {
    use chrono::{TimeZone, Utc};
    use purser::ports::{BalanceEntries, Escalations, MessageRefs, RequestCards, Requests, Store};
    let Some(pg) = Postgres::start("store_copy_moves_everything").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("purser.db");
    let source = purser::adapters::sqlite::SqliteStore::open(&file)
        .await
        .unwrap();
    story(&source).await;
    requests_story(&source).await;
    receipts_story(&source).await;
    source.close().await;

    let url = pg.database().await;
    let run = |extra: &[&str]| {
        let mut args = vec![
            "store".to_owned(),
            "copy".to_owned(),
            "--from".to_owned(),
            file.display().to_string(),
            "--to".to_owned(),
            "env:PURSER_COPY_TO".to_owned(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        std::process::Command::new(env!("CARGO_BIN_EXE_purser"))
            .args(&args)
            .env("PURSER_COPY_TO", &url)
            .output()
            .unwrap()
    };
    // The story's snapshots are from 2026: keep them all.
    let out = run(&["--history", "3650d"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("The audit chain verifies there"), "{text}");
    assert!(text.contains("requests"), "{text}");

    let a = purser::adapters::sqlite::SqliteStore::open(&file)
        .await
        .unwrap();
    let b = purser::adapters::postgres::PgStore::open(&url, None, 2)
        .await
        .unwrap();
    let acme = purser::domain::model::AccountId::parse("acme").unwrap();
    let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    assert_eq!(
        purser::ports::Receipts::cursor(&b, "telegram-updates")
            .await
            .unwrap(),
        Some(43)
    );
    assert_eq!(a.all_alerts().await.unwrap(), b.all_alerts().await.unwrap());
    assert_eq!(a.outbox().await.unwrap(), b.outbox().await.unwrap());
    assert_eq!(
        a.undelivered(false).await.unwrap().len(),
        b.undelivered(false).await.unwrap().len()
    );
    assert_eq!(
        a.history(&acme, t0).await.unwrap(),
        b.history(&acme, t0).await.unwrap()
    );
    assert_eq!(
        a.health(&acme).await.unwrap(),
        b.health(&acme).await.unwrap()
    );
    assert_eq!(a.silences(t0).await.unwrap(), b.silences(t0).await.unwrap());
    assert_eq!(a.views().await.unwrap(), b.views().await.unwrap());
    assert_eq!(
        a.bucket_entries(&acme).await.unwrap(),
        b.bucket_entries(&acme).await.unwrap()
    );
    assert_eq!(
        a.latest_balance_entry(&acme).await.unwrap(),
        b.latest_balance_entry(&acme).await.unwrap()
    );
    let posted = purser::ports::MessageRef {
        channel: "C0OPS".into(),
        message: "1700000000.000100".into(),
    };
    assert_eq!(
        a.shown("chat", &posted).await.unwrap(),
        b.shown("chat", &posted).await.unwrap()
    );
    assert_eq!(
        a.requests(false, 100).await.unwrap(),
        b.requests(false, 100).await.unwrap()
    );
    let ids: Vec<_> = a
        .requests(false, 100)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(a.cards(&ids).await.unwrap(), b.cards(&ids).await.unwrap());
    for id in &ids {
        assert_eq!(
            a.progress(*id).await.unwrap(),
            b.progress(*id).await.unwrap()
        );
    }
    assert_eq!(
        a.audit_log(None).await.unwrap(),
        b.audit_log(None).await.unwrap()
    );
    assert_eq!(a.audit_head().await.unwrap(), b.audit_head().await.unwrap());
    assert_eq!(
        a.escalations_since(t0).await.unwrap(),
        b.escalations_since(t0).await.unwrap()
    );
    assert_eq!(
        a.overrides(t0).await.unwrap(),
        b.overrides(t0).await.unwrap()
    );
    // Numbering goes on where it stopped.
    let next = b
        .open_request(&purser::ports::NewRequest {
            requested_at: Utc::now(),
            expires_at: Utc::now() + chrono::Duration::hours(1),
            ..new_request_like(&a.requests(false, 1).await.unwrap()[0])
        })
        .await
        .unwrap();
    assert_eq!(next.id.0, ids.len() as u64 + 1);
    a.close().await;
    b.close().await;

    // Not into a store in use.
    let again = run(&[]);
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success());
    assert!(err.contains("the target is not empty"), "{err}");
}

/// A request asked like `r`.
fn new_request_like(r: &purser::domain::request::Request) -> purser::ports::NewRequest {
    purser::ports::NewRequest {
        account: r.account.clone(),
        action: r.action.clone(),
        reason: r.reason.clone(),
        cost: r.cost,
        balance: r.balance,
        tier: r.tier.clone(),
        requested_by: r.requested_by.clone(),
        requested_at: r.requested_at,
        expires_at: r.expires_at,
        origin: r.origin.clone(),
    }
}

impl Postgres {
    /// The directory the test's own cluster lives in (`None`: a server of
    /// someone else's).
    pub fn server_dir(&self) -> Option<&Path> {
        self.cluster.as_ref().map(|c| c._dir.path())
    }

    /// Runs one SQL statement as the server's superuser.
    pub async fn admin(&self, sql: &str) {
        let mut admin = sqlx::PgConnection::connect(&format!("{}/postgres", self.base))
            .await
            .expect("connecting to the test server");
        sqlx::raw_sql(sql).execute(&mut admin).await.expect(sql);
        let _ = admin.close().await;
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (the tests make their certificates with it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for 127.0.0.1 signed by it, in `dir`.
fn certificates(dir: &Path, name: &str) {
    let ca = format!("{name}-ca");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={ca}"),
            "-keyout",
            &format!("{ca}.key"),
            "-out",
            &format!("{ca}.pem"),
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ],
    );
    std::fs::write(
        dir.join(format!("{name}.ext")),
        "subjectAltName = IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

/// TLS to the database: with `sslmode=verify-full` and the server's CA the
/// connection is encrypted and the server checked; a server whose
/// certificate another CA signed is refused, by name.
#[tokio::test]
async fn the_store_connects_over_tls_and_refuses_a_server_it_cannot_verify() {
    let Some(pg) = Postgres::start("the_store_connects_over_tls").await else {
        return;
    };
    let Some(dir) = pg.server_dir() else {
        eprintln!(
            "SKIPPED the_store_connects_over_tls: the server is not this test's to configure"
        );
        return;
    };
    certificates(dir, "server");
    certificates(dir, "stranger");
    if is_root() {
        for f in ["server.key", "server.pem"] {
            let _ = Command::new("chown")
                .args(["postgres", &dir.join(f).to_string_lossy()])
                .status();
        }
    }
    let _ = Command::new("chmod")
        .args(["600", &dir.join("server.key").to_string_lossy()])
        .status();
    for sql in [
        format!(
            "ALTER SYSTEM SET ssl_cert_file = '{}/server.pem'",
            dir.display()
        ),
        format!(
            "ALTER SYSTEM SET ssl_key_file = '{}/server.key'",
            dir.display()
        ),
        "ALTER SYSTEM SET ssl = on".to_owned(),
    ] {
        pg.admin(&sql).await;
    }
    // Started again (and waited for), it serves TLS from its first
    // connection.
    assert!(pg.stop_server());
    pg.start_server();
    let url = pg.database().await;
    let trusted = format!(
        "{url}?sslmode=verify-full&sslrootcert={}",
        dir.join("server-ca.pem").display()
    );
    let store = purser::adapters::postgres::PgStore::open(&trusted, None, 1)
        .await
        .expect("a verified TLS connection");
    assert!(
        store.encrypted().await.unwrap(),
        "the connection is not encrypted"
    );
    store.close().await;
    let stranger = format!(
        "{url}?sslmode=verify-full&sslrootcert={}",
        dir.join("stranger-ca.pem").display()
    );
    let err = purser::adapters::postgres::PgStore::open(&stranger, None, 1)
        .await
        .err()
        .expect("a server it cannot verify")
        .to_string();
    assert!(err.contains("cannot be reached"), "{err}");
    assert!(err.contains("127.0.0.1"), "{err}");
}

/// The read of every open alert (chat's lists, the command line) takes the
/// rows in batches of those ready at once: every one arrives, in the
/// store's order, and a row that cannot be read fails the read with its
/// reason, not skipped.
#[tokio::test]
async fn every_open_alert_is_read_across_batches_and_a_bad_row_is_named() {
    use purser::ports::Store;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let store = purser::adapters::sqlite::SqliteStore::open(&path)
        .await
        .unwrap();
    let mut raw = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let insert = |fingerprint: String, rule: &'static str, account: String| {
        sqlx::query(
            "INSERT INTO alerts (fingerprint, rule, account, resource, tier, severity, rank,
               state, summary, started_at, changed)
             VALUES (?, ?, ?, '', '', 'B', 1, 'firing', 'low', 1800000000000, 1)",
        )
        .bind(fingerprint)
        .bind(rule)
        .bind(account)
    };
    for i in 0..600 {
        insert(format!("fp-{i:04}"), "low_balance", format!("acct-{i:04}"))
            .execute(&mut raw)
            .await
            .unwrap();
    }
    let open = store.all_open_alerts().await.unwrap();
    let accounts: Vec<String> = open.iter().map(|a| a.key.account.clone()).collect();
    let expected: Vec<String> = (0..600).map(|i| format!("acct-{i:04}")).collect();
    assert_eq!(accounts, expected);

    insert("fp-bad".into(), "no_such_rule", "acct-9999".into())
        .execute(&mut raw)
        .await
        .unwrap();
    let err = store.all_open_alerts().await.unwrap_err().to_string();
    assert!(err.contains("unknown rule no_such_rule"), "{err}");
}
