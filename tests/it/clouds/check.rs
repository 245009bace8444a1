//! `purser check`, the binary, on a config with one account per cloud, each
//! pointed at its mock: balances come out exact to the fen.

use chrono::Utc;
use serde_json::{Value, json};
use tokio::process::Command;

use super::mock::ok;
use super::{alibaba, azure_china, huawei, tencent};

fn purser() -> Command {
    Command::new(env!("CARGO_BIN_EXE_purser"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reads_every_cloud_exactly() {
    let tc = tencent::tencent_mock(tencent::KEY).await;
    let ali = alibaba::alibaba_mock().await;
    let hw = huawei::huawei_mock().await;
    let az = azure_china::azure_mock().await;
    az.always(
        "GET /subscriptions/sub-0001/providers/Microsoft.Consumption/usageDetails",
        ok(json!({"value": []}).to_string()),
    );
    // The binary signs with the real clock.
    for m in [&tc, &ali, &hw, &az] {
        m.set_now(Utc::now());
    }

    let dir = tempfile::tempdir().unwrap();
    let secrets = [
        ("tc-id", tencent::ID),
        ("tc-key", tencent::KEY),
        ("ali-id", alibaba::ID),
        ("ali-secret", alibaba::SECRET),
        ("hw-ak", huawei::AK),
        ("hw-sk", huawei::SK),
        ("az-client", azure_china::CLIENT),
        ("az-secret", azure_china::SECRET),
    ];
    for (file, value) in secrets {
        std::fs::write(dir.path().join(file), format!("{value}\n")).unwrap();
    }
    let config = format!(
        r#"
[store]
path = "check.db"

[[providers]]
name = "tencent"
kind = "tencent"
[[providers]]
name = "alibaba"
kind = "alibaba"
[[providers]]
name = "huawei"
kind = "huawei"
[[providers]]
name = "azure"
kind = "azure_china"

[[accounts]]
id = "tc-prod"
provider = "tencent"
endpoint = "{tc}"
regions = ["ap-guangzhou"]
credentials = {{ key_id = "file:tc-id", secret = "file:tc-key" }}

[[accounts]]
id = "ali-prod"
provider = "alibaba"
endpoint = "{ali}"
credentials = {{ key_id = "file:ali-id", secret = "file:ali-secret" }}

[[accounts]]
id = "hw-prod"
provider = "huawei"
endpoint = "{hw}"
credentials = {{ key_id = "file:hw-ak", secret = "file:hw-sk", domain_id = "{domain}" }}

[[accounts]]
id = "azure-pia"
provider = "azure"
endpoint = "{az}"
credentials = {{ key_id = "file:az-client", secret = "file:az-secret", tenant = "tenant-0001", subscription = "sub-0001" }}

[[outputs]]
name = "console"
kind = "console"
"#,
        tc = tc.url,
        ali = ali.url,
        hw = hw.url,
        az = az.url,
        domain = huawei::DOMAIN,
    );
    let path = dir.path().join("clouds.toml");
    std::fs::write(&path, config).unwrap();

    let set = purser()
        .args(["balance", "set", "--config"])
        .arg(&path)
        .args(["azure-pia", "¥8,765.43", "--by", "ops-lead"])
        .current_dir(dir.path())
        .output()
        .await
        .unwrap();
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    assert!(String::from_utf8_lossy(&set.stdout).contains("¥8,765.43"));
    // Tencent has no API for a managed-service contract's money: entered.
    let set = purser()
        .args(["balance", "set", "--config"])
        .arg(&path)
        .args([
            "tc-prod",
            "¥300",
            "--contract",
            "COC-2024-7891",
            "--by",
            "ops-lead",
        ])
        .current_dir(dir.path())
        .output()
        .await
        .unwrap();
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    assert!(
        String::from_utf8_lossy(&set.stdout)
            .contains("tc-prod: contract COC-2024-7891 ¥300.00 as of"),
        "{}",
        String::from_utf8_lossy(&set.stdout)
    );
    // The account's own balance comes from the API: no entry for it.
    let refused = purser()
        .args(["balance", "set", "--config"])
        .arg(&path)
        .args(["tc-prod", "¥300"])
        .current_dir(dir.path())
        .output()
        .await
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--contract NUMBER or --unallocated")
    );

    // Every file and its bytes, but SQLite's side files: a reader of a WAL
    // database may create its shared-memory index, which changes no data.
    let files = |d: &std::path::Path| {
        let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                !name.ends_with("-shm") && !name.ends_with("-wal")
            })
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let before = files(dir.path());
    let out = purser()
        .args(["check", "--format", "json", "--config"])
        .arg(&path)
        .current_dir(dir.path())
        .output()
        .await
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let available = |id: &str| {
        let a = report["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == id)
            .unwrap_or_else(|| panic!("{id} missing: {report:#}"));
        assert!(a.get("error").is_none_or(Value::is_null), "{a:#}");
        a["available"].as_str().unwrap().to_owned()
    };
    assert_eq!(available("tc-prod"), "96474.42");
    assert_eq!(available("ali-prod"), "12345.67");
    assert_eq!(available("hw-prod"), "20810.92");
    assert_eq!(available("azure-pia"), "8765.43");
    // The entered contract is judged like one the cloud reported.
    assert!(
        report["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["rule"] == "low_balance"
                && a["account"] == "tc-prod"
                && a["resource"] == "COC-2024-7891"),
        "{report:#}"
    );
    for m in [&tc, &ali, &hw, &az] {
        m.assert_clean();
    }
    // check reads the hand-entered balance and writes nothing.
    assert!(files(dir.path()) == before, "check changed a file");
}
