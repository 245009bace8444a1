//! The binary as a user runs it.

use std::collections::BTreeSet;
use std::process::Command;

fn purser() -> Command {
    Command::new(env!("CARGO_BIN_EXE_purser"))
}

#[test]
fn check_on_the_demo_shows_every_rule() {
    let out = purser()
        .args(["check", "--config", "config/demo.toml", "--format", "json"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rules: BTreeSet<&str> = report["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["rule"].as_str().unwrap())
        .collect();
    // Every rule but four: unallocated money is only worth an alert once
    // it has sat for an hour, and a one-shot check has no history to say
    // so; nor has it approved top-ups to run late, nor outputs that failed;
    // and the demo names no holiday file to run out.
    let all: BTreeSet<&str> = purser::domain::rules::RuleName::ALL
        .iter()
        .map(|r| r.as_str())
        .filter(|r| {
            ![
                "unallocated_funds",
                "payment_late",
                "delivery_failed",
                "calendar_expiring",
            ]
            .contains(r)
        })
        .collect();
    assert_eq!(rules, all);
    // Severity A fires in the demo: exit status 3.
    assert_eq!(out.status.code(), Some(3));
    let tencent = report["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == "tencent-prod")
        .unwrap();
    assert_eq!(tencent["available"], "2400.00");
    assert_eq!(tencent["currency"], "CNY");
    assert_eq!(tencent["runway_days"], 6.3);
    for a in report["alerts"].as_array().unwrap() {
        for key in ["fingerprint", "rule", "severity", "account", "summary"] {
            assert!(a[key].is_string(), "{key} in {a}");
        }
    }
}

#[test]
fn a_config_error_exits_2_and_says_where() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[store]\npath = \"x.db\"\n[scheduler]\nschedual = \"* * * * *\"\n",
    )
    .unwrap();
    for args in [
        &["config", "check", "--config"][..],
        &["check", "--config"][..],
        &["run", "--config"][..],
    ] {
        let out = purser().args(args).arg(&path).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("bad.toml:4: schedual: unknown field `schedual`"),
            "{err}"
        );
        assert!(out.stdout.is_empty());
    }
    assert!(
        !dir.path().join("x.db").exists(),
        "nothing may start on a bad config"
    );
}

#[test]
fn config_check_describes_a_good_config() {
    let out = purser()
        .args(["config", "check", "--config", "config/demo.toml"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ok — 5 accounts"), "{text}");
}

#[test]
fn the_example_config_is_valid_once_its_secrets_are_in_the_environment() {
    let mut cmd = purser();
    cmd.args(["config", "check", "--config", "config/example.toml"])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    for var in [
        "TENCENT_SECRET_ID",
        "TENCENT_SECRET_KEY",
        "ALIBABA_ACCESS_KEY_ID",
        "ALIBABA_ACCESS_KEY_SECRET",
        "HUAWEI_AK",
        "HUAWEI_SK",
        "AZURE_CLIENT_ID",
        "AZURE_CLIENT_SECRET",
        "PURSER_WEBHOOK_SECRET",
    ] {
        cmd.env(var, format!("{var}-value"));
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("4 accounts, 4 providers"), "{stdout}");
    assert!(!stdout.contains("-value"), "{stdout}");

    // Without them, each missing variable is named.
    let out = purser()
        .args(["config", "check", "--config", "config/example.toml"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("TENCENT_SECRET_KEY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("TENCENT_SECRET_KEY is not set"));
}

#[test]
fn balance_set_refuses_typos_and_bad_amounts() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("s"), "x-secret-value\n").unwrap();
    std::fs::write(dir.path().join("none.toml"), "").unwrap();
    std::fs::write(
        dir.path().join("p.toml"),
        r#"
[store]
path = "p.db"
[[providers]]
name = "azure"
kind = "azure_china"
[[providers]]
name = "sim"
kind = "simulated"
scenario = "none.toml"
[[accounts]]
id = "azure-cn-pia"
provider = "azure"
credentials = { key_id = "file:s", secret = "file:s", tenant = "t", subscription = "s" }
[[accounts]]
id = "sim-1"
provider = "sim"
"#,
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = purser()
            .args(["balance", "set", "--config", "p.toml"])
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    };
    let (code, text) = run(&["azure-cn-pai", "1000"]);
    assert_eq!(code, Some(2));
    assert!(text.contains("no account \"azure-cn-pai\""), "{text}");
    let (code, text) = run(&["azure-cn-pia", "5,00.0"]);
    assert_eq!(code, Some(2));
    assert!(text.contains("misplaced thousands separators"), "{text}");
    let (code, text) = run(&["azure-cn-pia", "--", "-100"]);
    assert_eq!(code, Some(2));
    assert!(text.contains("negative amounts are not allowed"), "{text}");
    let (code, text) = run(&["azure-cn-pia", "100", "--as-of", "1970-01-01T00:00:00Z"]);
    assert_eq!(code, Some(2));
    assert!(
        text.contains("--as-of 1970-01-01 is more than a year ago"),
        "{text}"
    );
    let (code, text) = run(&["azure-cn-pia", "99,999,999,999,999,999"]);
    assert_eq!(code, Some(2));
    assert!(
        text.contains("beyond what purser handles exactly"),
        "{text}"
    );
    let (code, text) = run(&["sim-1", "100"]);
    assert_eq!(code, Some(2));
    assert!(text.contains("reports its own balance"), "{text}");
    let (code, text) = run(&["azure-cn-pia", "¥12,345.67", "--by", "ops-lead"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("¥12,345.67") && text.contains("ops-lead"),
        "{text}"
    );
}

/// A store with three audit entries, and a config naming it.
fn audited() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    use purser::domain::audit::{Event, NewEntry};
    use purser::domain::request::RequestId;
    use purser::ports::Requests;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = purser::adapters::sqlite::SqliteStore::open(&db)
            .await
            .unwrap();
        let at = |h: i64| chrono::DateTime::from_timestamp(1_793_491_200 + h * 3600, 0).unwrap();
        for (h, event, detail) in [
            (0, Event::Requested, r#"{"action":"renew ins-web 1m"}"#),
            (25, Event::Approved, r#"{"comment":"ok, \"go\""}"#),
            (
                26,
                Event::Receipt,
                r#"{"summary":"ins-web now expires 2026-12-06"}"#,
            ),
        ] {
            store
                .audit(&[NewEntry {
                    at: at(h),
                    actor: "ana".into(),
                    event,
                    request: Some(RequestId(1)),
                    detail: detail.into(),
                }])
                .await
                .unwrap();
        }
    });
    let config = dir.path().join("purser.toml");
    std::fs::write(
        &config,
        "[store]\npath = \"p.db\"\n\n[[providers]]\nname = \"sim\"\nkind = \"simulated\"\nscenario = \"s.toml\"\n\n[[accounts]]\nid = \"acme\"\nprovider = \"sim\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("s.toml"),
        "[[accounts]]\nid = \"acme\"\nbalance = \"¥2,000\"\n",
    )
    .unwrap();
    (dir, config, db)
}

fn sql(db: &std::path::Path, statement: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        // Someone with the file: the triggers that keep the log
        // append-only are dropped first.
        for drop in [
            "DROP TRIGGER IF EXISTS audit_log_no_update",
            "DROP TRIGGER IF EXISTS audit_log_no_delete",
            statement,
        ] {
            sqlx::query(drop).execute(&mut c).await.unwrap();
        }
    });
}

#[test]
fn audit_verify_finds_an_edited_row_and_a_deleted_one() {
    let verify = |config: &std::path::Path| {
        let out = purser()
            .args(["audit", "verify", "--config"])
            .arg(config)
            .current_dir(config.parent().unwrap())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (_dir, config, db) = audited();
    let (code, text) = verify(&config);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.starts_with("The audit log is sound: 3 entries"),
        "{text}"
    );

    // Someone changes who approved.
    sql(&db, "UPDATE audit_log SET actor = 'bo' WHERE seq = 2");
    let (code, text) = verify(&config);
    assert_eq!(code, Some(1));
    assert_eq!(
        text.trim(),
        "The audit log is BROKEN: entry 2 was changed: its contents no longer match its seal."
    );

    let (_dir, config, db) = audited();
    sql(&db, "DELETE FROM audit_log WHERE seq = 2");
    let (code, text) = verify(&config);
    assert_eq!(code, Some(1));
    assert!(text.contains("entry 2 is missing"), "{text}");

    let (_dir, config, db) = audited();
    sql(&db, "DELETE FROM audit_log WHERE seq = 3");
    let (code, text) = verify(&config);
    assert_eq!(code, Some(1));
    assert!(text.contains("the last were deleted"), "{text}");
}

#[test]
fn audit_export_writes_csv_or_json_since_a_date() {
    let (_dir, config, db) = audited();
    let out = purser()
        .args(["audit", "export", "--since", "2026-11-02", "--config"])
        .arg(&config)
        .current_dir(config.parent().unwrap())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let csv = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<&str> = csv.split_terminator("\r\n").collect();
    assert_eq!(rows.len(), 3, "the header and the two entries since: {csv}");
    assert!(rows[0].starts_with(r#""seq","at","actor""#), "{csv}");
    assert!(
        rows[1].starts_with(r#""2","2026-11-02T01:00:00.000Z","ana","approved","R1","{""comment"":""ok, \""go\""""}""#),
        "{csv}"
    );

    let out = purser()
        .args(["audit", "export", "--format", "json", "--config"])
        .arg(&config)
        .current_dir(config.parent().unwrap())
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 3);
    assert_eq!(
        json[2]["detail"]["summary"],
        "ins-web now expires 2026-12-06"
    );

    // A broken chain is still exported, with a warning and exit 1.
    sql(&db, "UPDATE audit_log SET detail = '{}' WHERE seq = 3");
    let out = purser()
        .args(["audit", "export", "--config"])
        .arg(&config)
        .current_dir(config.parent().unwrap())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("entry 3 was changed"));

    let out = purser()
        .args(["audit", "export", "--since", "last week", "--config"])
        .arg(&config)
        .current_dir(config.parent().unwrap())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("--since \"last week\" is neither a date such as 2026-11-01"),
    );
}

#[test]
fn a_report_period_that_is_not_a_date_says_what_would_be() {
    let out = purser()
        .args(["report", "sla", "--config", "config/demo.toml"])
        .args(["--since", "last week"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--since") && err.contains("\"last week\" is not a date such as 2026-11-01"),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn a_secret_file_others_can_read_is_warned_of() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("s.toml"), "").unwrap();
    std::fs::write(dir.path().join("hook.secret"), "whsec-0123456789").unwrap();
    let secret = dir.path().join("hook.secret");
    std::fs::write(
        dir.path().join("p.toml"),
        "[store]\npath = \"p.db\"\n[[providers]]\nname = \"sim\"\nkind = \"simulated\"\nscenario = \"s.toml\"\n\
         [[accounts]]\nid = \"acme\"\nprovider = \"sim\"\n\
         [[outputs]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\nsecret = \"file:hook.secret\"\n",
    )
    .unwrap();
    let check = || {
        let out = purser()
            .args(["config", "check", "--config", "p.toml"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = check();
    assert!(
        err.contains("a secret file others on this machine can read"),
        "{err}"
    );
    assert!(err.contains("hook.secret") && err.contains("0644"), "{err}");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(check(), "");
}

/// `check` tells a watcher how far it has got, once per account, ending
/// with all of them; the report is the same with or without.
#[tokio::test]
async fn check_reports_progress_per_account() {
    use std::sync::Mutex;
    struct Seen(Mutex<Vec<(usize, usize)>>, Mutex<bool>);
    impl purser::check::Progress for Seen {
        fn polled(&self, done: usize, of: usize) {
            self.0.lock().unwrap().push((done, of));
        }
        fn finished(&self) {
            *self.1.lock().unwrap() = true;
        }
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo.toml");
    let config = purser::config::Config::load(&path).unwrap();
    let clock = std::sync::Arc::new(purser::engine::clock::SystemClock);
    let seen = Seen(Mutex::new(vec![]), Mutex::new(false));
    let report = purser::check::run(&config, clock, None, &Default::default(), Some(&seen)).await;
    let n = config.accounts.len();
    let calls = seen.0.lock().unwrap().clone();
    assert_eq!(calls.first(), Some(&(0, n)));
    assert_eq!(calls.last(), Some(&(n, n)));
    assert_eq!(calls.len(), n + 1);
    assert!(*seen.1.lock().unwrap());
    assert_eq!(report.accounts.len(), n);
}

/// The store's URL from the environment (where its password may be) is
/// used, and said without the password; a server that is not there is
/// named by host and port, and `status` exits 2.
#[test]
fn a_postgres_store_from_the_environment_is_named_without_its_password() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://purser:pg-pass-0451@127.0.0.1:{closed}/purser");
    let run = |args: &[&str]| {
        purser()
            .args(args)
            .env("PURSER_STORE_URL", &url)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap()
    };
    let out = run(&["config", "check", "--config", "config/demo.toml"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("store PostgreSQL at 127.0.0.1:{closed}/purser")),
        "{text}"
    );
    assert!(!text.contains("pg-pass-0451"), "{text}");
    let out = run(&["status", "--config", "config/demo.toml"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "the PostgreSQL store at 127.0.0.1:{closed} cannot be reached"
        )),
        "{err}"
    );
    assert!(!err.contains("pg-pass-0451"), "{err}");
    // The daemon refuses to start, non-zero, saying the same.
    let out = run(&["run", "--config", "config/demo.toml"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("cannot be reached"), "{err}");
    assert!(!err.contains("pg-pass-0451"), "{err}");
}
