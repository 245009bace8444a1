//! Servers that echo everything they receive into their errors — every
//! output and every cloud — leave no secret in purser's log, store or
//! answers, in any of its forms (raw, URL-encoded, base64).

use std::collections::BTreeSet;
use std::io::{BufRead, Read};
use std::process::{Command, Stdio};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use base64::Engine;

/// Echoes the request (method, path and query, headers, body) in every
/// field a platform or a cloud puts its error message in.
async fn echo(method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> (StatusCode, String) {
    let heads: Vec<String> = headers
        .iter()
        .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap_or("")))
        .collect();
    let e = format!(
        "you sent {method} {uri} with {} and {}",
        heads.join("; "),
        String::from_utf8_lossy(&body)
    );
    let reply = serde_json::json!({
        "Response": {"Error": {"Code": "InvalidParameter", "Message": e}, "RequestId": "r"},
        "Code": "InvalidParameter", "Message": e, "RequestId": "r", "Success": false,
        "error_code": "CBC.0100", "error_msg": e,
        "error": "invalid_request", "error_description": e,
        "ok": false, "description": e, "errcode": 40001, "errmsg": e,
        "code": 9499, "msg": e, "message": e,
    });
    (StatusCode::BAD_REQUEST, reply.to_string())
}

const SECRETS: [(&str, &str); 12] = [
    ("webhook.secret", "whsec-echo-0123456789abcdef"),
    ("slack.token", "xoxb-echo-1111-2222-abcdefABCDEF"),
    (
        "discord.token",
        "MTEchoDiscordBotToken.Gx1y2z.abcdefghijklmnop",
    ),
    (
        "telegram.token",
        "123456789:AAEchoTelegramToken_abcdefghijk",
    ),
    ("ding.secret", "SECechoDingTalkSigningSecret0123456789"),
    ("feishu.secret", "echoFeishuSigningSecret0123"),
    ("tc.key", "echoTencentSecretKey0123456789ab"),
    ("ali.secret", "echoAlibabaAccessKeySecret012345"),
    ("hw.sk", "echoHuaweiSecretAccessKey0123456789abcd"),
    ("az.secret", "az.Echo/Secret+With=Signs&more~1"),
    ("tc.id", "AKIDechoTencentSecretId0123456789"),
    ("ali.id", "LTAIechoAlibabaKeyId01"),
];

/// Robot URLs hold their keys: the URL is the secret.
fn robot_urls(addr: &str) -> [(&'static str, String); 3] {
    [
        (
            "ding.url",
            format!("http://{addr}/robot/send?access_token=echoDingTalkAccessToken0123456789"),
        ),
        (
            "wecom.url",
            format!("http://{addr}/cgi-bin/webhook/send?key=echo-wecom-key-0123456789"),
        ),
        (
            "feishu.url",
            format!("http://{addr}/open-apis/bot/v2/hook/echo-feishu-hook-0123456789"),
        ),
    ]
}

fn forms(secret: &str) -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(secret);
    vec![
        secret.to_owned(),
        percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC)
            .to_string(),
        form_urlencoded::byte_serialize(secret.as_bytes()).collect(),
        b64.trim_end_matches('=').to_owned(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_that_echo_requests_leave_no_secret_in_logs_store_or_answers() {
    let app = axum::Router::new().fallback(echo);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    for (file, value) in SECRETS {
        std::fs::write(dir.path().join(file), value).unwrap();
    }
    let urls = robot_urls(&addr);
    for (file, url) in &urls {
        std::fs::write(dir.path().join(file), url).unwrap();
    }
    std::fs::write(dir.path().join("hw.ak"), "ECHOHUAWEIAKEY0001").unwrap();
    std::fs::write(dir.path().join("az.client"), "client-echo-0001").unwrap();
    std::fs::write(
        dir.path().join("scenario.toml"),
        "[[accounts]]\nid = \"acme\"\nbalance = \"¥2,000\"\n",
    )
    .unwrap();
    let url = format!("http://{addr}/");
    let config = format!(
        r#"
[store]
path = "purser.db"

[scheduler]
schedule = "0 0 * * * *"

[[providers]]
name = "sim"
kind = "simulated"
scenario = "scenario.toml"

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
id = "acme"
provider = "sim"

[[accounts]]
id = "tc"
provider = "tencent"
endpoint = "{url}"
credentials = {{ key_id = "file:tc.id", secret = "file:tc.key" }}

[[accounts]]
id = "ali"
provider = "alibaba"
endpoint = "{url}"
credentials = {{ key_id = "file:ali.id", secret = "file:ali.secret" }}

[[accounts]]
id = "hw"
provider = "huawei"
endpoint = "{url}"
credentials = {{ key_id = "file:hw.ak", secret = "file:hw.sk" }}

[[accounts]]
id = "az"
provider = "azure"
endpoint = "{url}"
credentials = {{ key_id = "file:az.client", secret = "file:az.secret", tenant = "tenant-echo", subscription = "sub-echo", billing_account = "ba-echo" }}

[[outputs]]
name = "hook"
kind = "webhook"
url = "{url}hook"
secret = "file:webhook.secret"

[[outputs]]
name = "slack"
kind = "slack"
channel = "C0ECHO"
token = "file:slack.token"
api = "{url}api"

[[outputs]]
name = "discord"
kind = "discord"
channel = "5550001"
token = "file:discord.token"
api = "{url}api/v10"

[[outputs]]
name = "telegram"
kind = "telegram"
channel = "-100123"
token = "file:telegram.token"
api = "{url}"

[[outputs]]
name = "ding"
kind = "dingtalk"
url = "file:ding.url"
secret = "file:ding.secret"

[[outputs]]
name = "wecom"
kind = "wecom"
url = "file:wecom.url"

[[outputs]]
name = "lark"
kind = "feishu"
url = "file:feishu.url"
secret = "file:feishu.secret"
"#
    );
    std::fs::write(dir.path().join("purser.toml"), config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_purser"))
        .args(["run", "--config", "purser.toml"])
        .current_dir(dir.path())
        .env("RUST_LOG", "purser=debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Every output refuses its first notice, and every cloud its first poll.
    let mut log = String::new();
    let mut reader = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut waiting: BTreeSet<String> = [
        "hook", "slack", "discord", "telegram", "ding", "wecom", "lark",
    ]
    .iter()
    .map(|o| format!("output={o}"))
    .chain(
        ["tc", "ali", "hw", "az"]
            .iter()
            .map(|a| format!("account={a}")),
    )
    .collect();
    while !waiting.is_empty() {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "the log ended; still waiting for {waiting:?}:\n{log}"
        );
        if line.contains("delivery failed") || line.contains("poll failed") {
            waiting.retain(|w| !line.contains(w.as_str()));
        }
        log.push_str(&line);
    }
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    reader.read_to_string(&mut log).unwrap();
    child.wait().unwrap();
    assert!(
        log.contains("you sent"),
        "the echoes reached the log: {log}"
    );

    // What a person reads: the outbox's errors, and check's table.
    let list = Command::new(env!("CARGO_BIN_EXE_purser"))
        .args(["outbox", "list", "--config", "purser.toml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout).into_owned();
    assert!(list.contains("you sent"), "{list}");
    let mut stored = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("purser.db")
        {
            stored.extend(std::fs::read(&path).unwrap());
        }
    }
    let stored = String::from_utf8_lossy(&stored).into_owned();
    let secrets = SECRETS.iter().map(|(_, s)| s.to_string()).chain(
        urls.iter()
            .map(|(_, u)| u.rsplit(['=', '/']).next().unwrap().to_owned()),
    );
    for secret in secrets {
        for form in forms(&secret) {
            for (what, text) in [("log", &log), ("store", &stored), ("outbox list", &list)] {
                assert!(
                    !text.contains(&form),
                    "{form:?} (of {secret:?}) in the {what}"
                );
            }
        }
    }
}
