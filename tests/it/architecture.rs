//! The invariants ARCHITECTURE.md states, kept by the test suite.

use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn source(sub: &str) -> Vec<(String, String)> {
    let mut files = vec![];
    rust_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join(sub), &mut files);
    files
        .into_iter()
        .map(|p| {
            (
                p.display().to_string(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect()
}

#[test]
fn the_domain_does_no_io_and_reads_no_clock() {
    for (path, text) in source("src/domain") {
        for forbidden in [
            "sqlx",
            "reqwest",
            "tokio",
            "Utc::now",
            "SystemTime",
            "std::fs",
            "std::net",
            "crate::adapters",
            "crate::engine",
        ] {
            assert!(!text.contains(forbidden), "{path} uses {forbidden}");
        }
    }
}

#[test]
fn money_never_passes_through_floats() {
    for (path, text) in source("src/domain")
        .into_iter()
        .chain(source("src/adapters"))
    {
        // The runway chart turns amounts into pixel positions; the figures
        // it writes come from the decimals. Nothing else may.
        if path.ends_with("adapters/chart.rs") {
            continue;
        }
        // Prometheus takes floats: the exposition converts the decimals as
        // it writes them (the demo's metrics are held equal to `purser
        // check`'s to the fen).
        if path.ends_with("adapters/metrics.rs") {
            continue;
        }
        for line in text.lines() {
            let l = line.to_lowercase();
            let floaty = l.contains("f64") || l.contains("f32");
            let money = ["money", "amount", "balance", "price", "fen", "yuan"]
                .iter()
                .any(|w| l.contains(w));
            assert!(!(floaty && money), "{path}: {line}");
        }
    }
}

#[test]
fn only_adapters_and_config_name_a_cloud_or_a_platform() {
    let clouds = [
        "tencent", "alibaba", "aliyun", "huawei", "azure", "21vianet", "slack", "discord",
        "telegram", "dingtalk", "wecom", "feishu", "lark",
    ];
    for dir in ["src/domain", "src/engine", "src/ports.rs"] {
        let files = if dir.ends_with(".rs") {
            vec![(
                dir.to_owned(),
                std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)).unwrap(),
            )]
        } else {
            source(dir)
        };
        for (path, text) in files {
            let lower = text.to_lowercase();
            for c in clouds {
                assert!(!lower.contains(c), "{path} names {c}");
            }
        }
    }
}

/// Adapters start no task of their own that nobody waits for: work for one
/// request goes through `Tasks` (drained at the stop, panics logged), and
/// long-lived tasks are started and watched by the composition root. The one
/// `tokio::spawn` left is `http::answer_with`'s, whose handle is awaited or
/// handed to a tracked task.
#[test]
fn adapters_spawn_only_tracked_work() {
    for (path, text) in source("src/adapters") {
        if path.ends_with("adapters/tasks.rs") {
            continue;
        }
        let spawns = text.matches("tokio::spawn(").count();
        let allowed = usize::from(path.ends_with("adapters/http.rs"));
        assert!(
            spawns <= allowed,
            "{path} spawns {spawns} untracked task(s): use adapters::tasks::Tasks"
        );
    }
}

/// The engine works on the domain's types through the ports: what the config
/// file says reaches it as domain values (`AccountSpec`, rules, policies), and
/// credentials reach only the adapters. Config reads the file; it decides
/// nothing the engine does.
#[test]
fn the_engine_knows_neither_config_nor_adapters_and_config_not_the_engine() {
    for (path, text) in source("src/engine") {
        for forbidden in ["crate::config", "crate::adapters", "crate::startup"] {
            assert!(!text.contains(forbidden), "{path} uses {forbidden}");
        }
    }
    let config = source("src/config").into_iter().chain([(
        "src/config.rs".to_owned(),
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/config.rs"))
            .unwrap(),
    )]);
    for (path, text) in config {
        for forbidden in ["crate::engine", "crate::startup"] {
            assert!(!text.contains(forbidden), "{path} uses {forbidden}");
        }
    }
}

/// Credentials (`CloudAccess`, secrets) never travel with an account into
/// the engine.
#[test]
fn the_engine_never_holds_credentials() {
    for (path, text) in source("src/engine").into_iter().chain(source("src/domain")) {
        for forbidden in ["CloudAccess", "Secret"] {
            assert!(!text.contains(forbidden), "{path} names {forbidden}");
        }
    }
}

#[test]
fn unsafe_code_is_only_the_allocator_tunables() {
    // The lint denies unsafe code; one module in the binary is allowed it.
    let mut allowed = vec![];
    for dir in ["src", "tests", "examples", "benches"] {
        if !Path::new(env!("CARGO_MANIFEST_DIR")).join(dir).exists() {
            continue;
        }
        for (path, text) in source(dir) {
            for (n, line) in text.lines().enumerate() {
                if line.trim_start().starts_with("#[allow(unsafe_code)]") {
                    allowed.push(format!("{path}:{}", n + 1));
                }
            }
        }
    }
    assert_eq!(allowed.len(), 1, "{allowed:?}");
    assert!(allowed[0].contains("src/bin/purser/main.rs"), "{allowed:?}");
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    assert!(manifest.contains("unsafe_code = \"deny\""));
}
