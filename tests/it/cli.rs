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
    let all: BTreeSet<&str> = purser::domain::rules::RuleName::ALL
        .iter()
        .map(|r| r.as_str())
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
