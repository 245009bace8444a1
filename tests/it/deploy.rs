//! deploy/ as a user takes it: the container, the systemd unit, the
//! Kubernetes manifests, the compose file, the alert rules and dashboard,
//! and the clouds' key policies, each read and held to what purser does.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(deploy(path)).unwrap_or_else(|e| panic!("deploy/{path}: {e}"))
}

/// Every document of a YAML file, as JSON values.
fn yaml(path: &str) -> Vec<Value> {
    use serde::Deserialize;
    serde_yaml_ng::Deserializer::from_str(&read(path))
        .map(|doc| {
            let mut v = serde_yaml_ng::Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("deploy/{path}: {e}"));
            // `<<: *anchor`, as compose reads it.
            v.apply_merge()
                .unwrap_or_else(|e| panic!("deploy/{path}: {e}"));
            serde_json::to_value(v).unwrap()
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// `purser config check` on `config`, with `env`: its exit and output.
fn config_check(config: &Path, env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_purser"));
    cmd.args(["config", "check", "--config"]).arg(config);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn the_container_builds_in_two_stages_and_runs_as_nobody_with_a_health_check() {
    let text = read("Dockerfile");
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    let froms: Vec<&&str> = lines.iter().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(froms.len(), 2, "a build stage and a runtime stage");
    assert!(froms[0].contains(" AS build"));
    assert!(text.contains("cargo build --release --locked"));
    let runtime = &lines[lines.iter().position(|l| l == froms[1]).unwrap()..];
    let user = runtime
        .iter()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("the runtime stage names its user");
    assert!(
        !["root", "0", "0:0"].contains(&user),
        "runs as a non-root user, not {user}"
    );
    assert!(runtime.contains(&"STOPSIGNAL SIGTERM"));
    assert!(runtime.contains(&r#"VOLUME ["/etc/purser", "/var/lib/purser"]"#));
    let health = text
        .split("HEALTHCHECK")
        .nth(1)
        .expect("a HEALTHCHECK")
        .lines()
        .take(2)
        .collect::<String>();
    assert!(
        health.contains(r#""purser", "probe", "http://127.0.0.1:9477/healthz""#)
            || health
                .contains(r#"/usr/local/bin/purser", "probe", "http://127.0.0.1:9477/healthz""#),
        "{health}"
    );
    // The image's defaults are a config the README documents.
    assert!(text.contains("ENV PURSER_METRICS__LISTEN=0.0.0.0:9477"));
    assert!(text.contains(r#"CMD ["run", "--config", "/etc/purser/purser.toml"]"#));
}

/// `purser probe`, the container's health check: 0 on a 2xx, 1 otherwise.
#[tokio::test]
async fn the_probe_says_whether_purser_answers() {
    let app = axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok\n" }))
        .route(
            "/readyz",
            axum::routing::get(|| async {
                (
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "not ready: the store does not answer\n",
                )
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let probe = |path: String| async move {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_purser"))
            .args(["probe", &path])
            .output()
            .await
            .unwrap()
    };
    assert!(
        probe(format!("http://{addr}/healthz"))
            .await
            .status
            .success()
    );
    let out = probe(format!("http://{addr}/readyz")).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("503"));
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    assert_eq!(
        probe(format!("http://{closed}/healthz"))
            .await
            .status
            .code(),
        Some(1)
    );
}

#[test]
fn the_systemd_unit_notifies_is_watched_and_is_locked_down() {
    let text = read("systemd/purser.service");
    let keys: BTreeSet<String> = text
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains('='))
        .map(|l| l.trim().to_owned())
        .collect();
    for wanted in [
        "Type=notify",
        "Restart=on-failure",
        "StateDirectory=purser",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter=@system-service",
        "User=purser",
    ] {
        assert!(keys.contains(wanted), "{wanted} missing");
    }
    assert!(keys.iter().any(|k| k.starts_with("WatchdogSec=")));
    // systemd's own check, where systemd is installed: the unit as shipped,
    // run on this build's binary.
    let Ok(found) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("SKIPPED systemd-analyze verify: systemd is not installed");
        return;
    };
    assert!(found.status.success());
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("purser.service");
    std::fs::write(
        &unit,
        text.replace("/usr/local/bin/purser", env!("CARGO_BIN_EXE_purser")),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
}

#[test]
fn the_kubernetes_manifests_run_two_probed_non_root_replicas_without_secrets() {
    let kustomization = &yaml("kubernetes/kustomization.yaml")[0];
    let resources: Vec<&str> = kustomization["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(
        !resources.contains(&"secret.example.yaml"),
        "the example Secret is never applied"
    );
    let docs: Vec<Value> = resources
        .iter()
        .flat_map(|r| yaml(&format!("kubernetes/{r}")))
        .collect();
    let kinds: BTreeSet<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    for kind in [
        "ConfigMap",
        "Deployment",
        "PodDisruptionBudget",
        "Service",
        "ServiceMonitor",
    ] {
        assert!(kinds.contains(kind), "no {kind}");
    }
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_ne!(pod["securityContext"]["runAsUser"], 0);
    let container = &pod["containers"][0];
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    // Secrets only by reference: from a Secret, never a literal value.
    for var in container["env"].as_array().unwrap() {
        let name = var["name"].as_str().unwrap();
        assert!(
            var.get("valueFrom").is_some() || name == "PURSER_LOG_FORMAT",
            "{name} is set to a literal"
        );
    }
    assert_eq!(
        container["envFrom"][0]["secretRef"]["name"],
        "purser-secrets"
    );
    let pdb = docs
        .iter()
        .find(|d| d["kind"] == "PodDisruptionBudget")
        .unwrap();
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    let monitor = docs.iter().find(|d| d["kind"] == "ServiceMonitor").unwrap();
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");

    // The example Secret holds placeholders only.
    let secret = &yaml("kubernetes/secret.example.yaml")[0];
    for (key, value) in secret["stringData"].as_object().unwrap() {
        let v = value.as_str().unwrap();
        // A placeholder, or a database URL without a password in it.
        let bare_url = v
            .strip_prefix("postgres://")
            .and_then(|rest| rest.split_once('@'))
            .is_some_and(|(user, _)| !user.contains(':'));
        assert!(
            v.starts_with('<') || bare_url,
            "{key} holds what looks like a secret: {v}"
        );
    }

    // The ConfigMap's config is valid once the Secret's keys are in the
    // environment, and names each secret by reference.
    let config = docs.iter().find(|d| d["kind"] == "ConfigMap").unwrap()["data"]["purser.toml"]
        .as_str()
        .unwrap()
        .to_owned();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("purser.toml");
    std::fs::write(&path, &config).unwrap();
    let env = [
        ("PURSER_STORE_URL", "postgres://purser@db:5432/purser"),
        ("PURSER_DB_PASSWORD", "x"),
        ("PURSER_HEARTBEAT_URL", "https://hc.example/ping/x"),
        ("TENCENT_SECRET_ID", "x"),
        ("TENCENT_SECRET_KEY", "x"),
        ("PURSER_HA__NAME", "purser-0"),
    ];
    let (ok, said) = config_check(&path, &env);
    assert!(ok, "{said}");
    let (ok, said) = config_check(&path, &env[1..]);
    assert!(!ok, "without the store's URL it is not complete: {said}");
}

#[test]
fn the_compose_file_runs_two_replicas_on_postgres_with_prometheus() {
    let compose = &yaml("compose.yaml")[0];
    let services = compose["services"].as_object().unwrap();
    for s in ["postgres", "purser-a", "purser-b", "prometheus"] {
        assert!(services.contains_key(s), "no service {s}");
    }
    let a = &services["purser-a"];
    assert_eq!(a["environment"]["PURSER_HA__NAME"], "purser-a");
    assert_eq!(
        services["purser-b"]["environment"]["PURSER_HA__NAME"],
        "purser-b"
    );
    // What compose mounts exists, and the config it runs is valid.
    for service in ["purser-a", "prometheus"] {
        for volume in services[service]["volumes"].as_array().unwrap() {
            let host = volume.as_str().unwrap().split(':').next().unwrap();
            assert!(
                deploy(host).exists(),
                "{service} mounts {host}, which is missing"
            );
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("purser.toml");
    std::fs::copy(deploy("compose/purser.toml"), &config).unwrap();
    std::fs::create_dir(dir.path().join("scenarios")).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config/scenarios/demo.toml"),
        dir.path().join("scenarios/demo.toml"),
    )
    .unwrap();
    let env = |k: &str| a["environment"][k].as_str().unwrap().to_owned();
    let (ok, said) = config_check(
        &config,
        &[
            ("PURSER_STORE_URL", &env("PURSER_STORE_URL")),
            ("PURSER_DB_PASSWORD", &env("PURSER_DB_PASSWORD")),
            ("PURSER_HA__NAME", "purser-a"),
        ],
    );
    assert!(ok, "{said}");
}

/// The string literals in a source file of purser's that `keep` accepts.
fn literals(path: &str, keep: impl Fn(&str) -> bool) -> BTreeSet<String> {
    let source = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap();
    source
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| keep(s))
        .map(str::to_owned)
        .collect()
}

/// The family names purser registers: the names written in
/// src/adapters/metrics.rs.
fn families() -> BTreeSet<String> {
    literals("src/adapters/metrics.rs", |s| {
        (s.starts_with("purser_") || s.starts_with("process_"))
            && s.chars().all(|c| c.is_ascii_lowercase() || c == '_')
    })
}

/// Each metric a query names: purser_… and process_… words.
fn metrics_in(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if word.starts_with("purser_") || word.starts_with("process_") {
            found.insert(word.to_owned());
        }
    }
    found
}

fn registered(name: &str, families: &BTreeSet<String>) -> bool {
    let base = ["_total", "_bucket", "_sum", "_count"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name);
    families.contains(name) || families.contains(base)
}

#[test]
fn the_alert_rules_and_dashboard_query_only_what_purser_exposes() {
    let families = families();
    assert!(families.len() >= 20, "{families:?}");
    let rules = &yaml("prometheus/purser-rules.yaml")[0];
    let mut alerts = BTreeSet::new();
    for rule in rules["groups"][0]["rules"].as_array().unwrap() {
        let expr = rule["expr"].as_str().unwrap();
        for m in metrics_in(expr) {
            assert!(
                registered(&m, &families),
                "{}: {m} is not exposed",
                rule["alert"]
            );
        }
        alerts.insert(rule["alert"].as_str().unwrap().to_owned());
    }
    for a in [
        "PurserDown",
        "PurserPollsStale",
        "PurserPollsFailing",
        "PurserOutboxStuck",
        "PurserRunwayShort",
    ] {
        assert!(alerts.contains(a), "no {a}");
    }
    assert!(read("prometheus/purser-rules.yaml").contains("absent(purser_build_info)"));

    let dashboard: Value = serde_json::from_str(&read("grafana/purser.json")).unwrap();
    let mut queried = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            queried.extend(metrics_in(target["expr"].as_str().unwrap()));
        }
    }
    for m in &queried {
        assert!(
            registered(m, &families),
            "the dashboard queries {m}, which is not exposed"
        );
    }
    for m in [
        "purser_balance",
        "purser_runway_days",
        "purser_alerts",
        "purser_polls_total",
        "purser_outbox_oldest_pending_age_seconds",
        "purser_requests",
    ] {
        assert!(queried.contains(m), "the dashboard does not show {m}");
    }
}

/// The actions a policy file allows.
fn allowed(file: &str) -> BTreeSet<String> {
    let v: Value = serde_json::from_str(&read(&format!("policies/{file}"))).unwrap();
    let statements = v
        .get("statement")
        .or_else(|| v.get("Statement"))
        .unwrap()
        .as_array()
        .unwrap();
    statements
        .iter()
        .flat_map(|s| {
            s.get("action")
                .or_else(|| s.get("Action"))
                .unwrap()
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_owned())
        })
        .collect()
}

fn set(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// An adapter's source files: `src/adapters/<adapter>.rs` and those of its
/// submodules.
fn adapter_files(adapter: &str) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![format!("src/adapters/{adapter}.rs")];
    if let Ok(dir) = std::fs::read_dir(root.join(format!("src/adapters/{adapter}"))) {
        for entry in dir {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            if name.ends_with(".rs") {
                files.push(format!("src/adapters/{adapter}/{name}"));
            }
        }
    }
    files
}

/// Each quoted `word:word…` permission an adapter's source names.
fn named_in(adapter: &str, prefixes: &[&str]) -> BTreeSet<String> {
    adapter_files(adapter)
        .iter()
        .flat_map(|file| {
            literals(file, |s| {
                prefixes.iter().any(|p| s.starts_with(p))
                    && s.chars().all(|c| c.is_ascii_alphanumeric() || c == ':')
            })
        })
        .collect()
}

#[test]
fn each_clouds_policies_allow_exactly_what_purser_calls() {
    use purser::adapters::{alibaba, huawei, tencent};
    for (cloud, read, act) in [
        (
            "tencent",
            tencent::READ_PERMISSIONS,
            tencent::ACTION_PERMISSIONS,
        ),
        (
            "alibaba",
            alibaba::READ_PERMISSIONS,
            alibaba::ACTION_PERMISSIONS,
        ),
        (
            "huawei",
            huawei::READ_PERMISSIONS,
            huawei::ACTION_PERMISSIONS,
        ),
    ] {
        let monitor = allowed(&format!("{cloud}-monitor.json"));
        assert_eq!(monitor, set(read), "{cloud}-monitor.json");
        let actions = allowed(&format!("{cloud}-actions.json"));
        let all: BTreeSet<String> = set(read).union(&set(act)).cloned().collect();
        assert_eq!(actions, all, "{cloud}-actions.json");
    }
    // Every permission an adapter's calls name is in its policies.
    let huawei = set(huawei::READ_PERMISSIONS)
        .union(&set(huawei::ACTION_PERMISSIONS))
        .cloned()
        .collect::<BTreeSet<_>>();
    assert_eq!(named_in("huawei", &["billing:"]), huawei);
    let alibaba: BTreeSet<String> = set(alibaba::READ_PERMISSIONS)
        .union(&set(alibaba::ACTION_PERMISSIONS))
        .cloned()
        .collect();
    for p in named_in("alibaba", &["bss:", "bssapi:", "ecs:"]) {
        assert!(alibaba.contains(&p), "alibaba calls with {p}, in no policy");
    }
    // Tencent's calls name (service, action): each is allowed.
    let source: String = adapter_files("tencent")
        .iter()
        .map(|file| {
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap()
        })
        .collect::<Vec<_>>()
        .join("\n");
    let tencent: BTreeSet<String> = set(tencent::READ_PERMISSIONS)
        .union(&set(tencent::ACTION_PERMISSIONS))
        .cloned()
        .collect();
    let flat: String = source.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut calls = 0;
    for service in ["billing", "cvm"] {
        for piece in flat.split(&format!("\"{service}\", \"")).skip(1) {
            let action = piece.split('"').next().unwrap();
            if action
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_uppercase())
            {
                let p = format!("{service}:{action}");
                assert!(tencent.contains(&p), "tencent calls {p}, in no policy");
                calls += 1;
            }
        }
    }
    assert!(calls >= 10, "the calls were found ({calls})");
}
