use std::path::Path;

use purser::config::Config;

const BASE: &str = r#"
[store]
path = "x.db"

[[providers]]
name = "sim"
kind = "simulated"
scenario = "s.toml"

[[accounts]]
id = "acme"
provider = "sim"
"#;

fn error_of(text: &str) -> String {
    Config::parse(text, Path::new("conf/purser.toml"))
        .expect_err("should be refused")
        .to_string()
}

#[test]
fn the_base_config_is_valid() {
    let c = Config::parse(BASE, Path::new("conf/purser.toml")).unwrap();
    assert_eq!(c.accounts.len(), 1);
}

#[test]
fn an_unknown_key_names_file_line_and_key() {
    let text = format!("{BASE}\n[rules.low_balance]\ntresholds = []\n");
    let err = error_of(&text);
    assert!(
        err.starts_with("conf/purser.toml:15: tresholds: unknown field `tresholds`"),
        "{err}"
    );
}

#[test]
fn a_bad_cron_expression_is_located() {
    let text = BASE.replace(
        "provider = \"sim\"",
        "provider = \"sim\"\nschedule = \"*/5 * * *\"",
    );
    let err = error_of(&text);
    assert!(
        err.starts_with("conf/purser.toml:13: accounts[0].schedule: \"*/5 * * *\" has 4 fields"),
        "{err}"
    );
}

#[test]
fn a_negative_threshold_is_refused() {
    let text =
        format!("{BASE}\n[rules.low_balance]\ntiers = [{{ below = \"¥-5\", severity = \"A\" }}]\n");
    let err = error_of(&text);
    assert!(err.contains("conf/purser.toml:15: rules.low_balance.tiers[0].below: negative amounts are not allowed"), "{err}");
}

#[test]
fn malformed_amounts_and_severities_are_each_reported() {
    let text = format!(
        "{BASE}\n[rules.low_balance]\ntiers = [\n  {{ below = \"5,00.0\", severity = \"A\" }},\n  {{ below = \"100\", severity = \"D\" }},\n]\nmargin = \"1e3\"\n"
    );
    let err = error_of(&text);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 3, "{err}");
    assert!(
        lines[0].contains(":16: rules.low_balance.tiers[0].below")
            && lines[0].contains("thousands separators"),
        "{err}"
    );
    assert!(
        lines[1].contains(":17: rules.low_balance.tiers[1].severity")
            && lines[1].contains("A, B or C"),
        "{err}"
    );
    assert!(
        lines[2].contains(":19: rules.low_balance.margin") && lines[2].contains("exponent"),
        "{err}"
    );
}

#[test]
fn references_to_missing_things_are_refused() {
    let text = BASE.replace("provider = \"sim\"", "provider = \"nope\"");
    assert!(error_of(&text).contains("accounts[0].provider: no provider named \"nope\""));
    let text = format!("{BASE}\n[[accounts]]\nid = \"acme\"\nprovider = \"sim\"\n");
    assert!(error_of(&text).contains("account acme is defined twice"));
    let text = format!(
        "{BASE}\n[[overrides]]\naccounts = [\"ghost\"]\n[overrides.rules.runway]\nenabled = false\n"
    );
    assert!(error_of(&text).contains("overrides[0].accounts: no account \"ghost\" is defined"));
}

#[test]
fn a_threshold_in_another_currency_is_refused() {
    let text = format!(
        "{BASE}\n[rules.low_balance]\ntiers = [{{ below = \"$500\", severity = \"A\" }}]\n"
    );
    assert!(error_of(&text).contains("is in USD, but the account is in CNY"));
}

#[test]
fn an_inline_secret_is_refused_without_echoing_it() {
    let text = format!(
        "{BASE}\n[[outputs]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"https://example.test/h\"\nsecret = \"hunter2-very-secret\"\n"
    );
    let err = error_of(&text);
    assert!(
        err.contains("outputs[0].secret") && err.contains("env:NAME"),
        "{err}"
    );
    assert!(!err.contains("hunter2-very-secret"), "{err}");
}

#[test]
fn secrets_never_appear_when_config_is_formatted() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hook.secret"), "s3cr3t-value-xyz").unwrap();
    let text = format!(
        "{BASE}\n[[outputs]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"https://example.test/h\"\nsecret = \"file:hook.secret\"\n"
    );
    let c = Config::parse(&text, &dir.path().join("purser.toml")).unwrap();
    let shown = format!("{c:?} {c:#?}");
    assert!(!shown.contains("s3cr3t-value-xyz"));
    assert!(shown.contains("redacted"));
}

#[test]
fn overrides_apply_by_label_and_later_wins() {
    let text = format!(
        "{BASE}labels = {{ env = \"dev\" }}\n\n[[overrides]]\nlabels = {{ env = \"dev\" }}\n[overrides.rules.low_balance]\ntiers = [{{ below = \"100\", severity = \"C\" }}]\n\n[[overrides]]\naccounts = [\"acme\"]\n[overrides.rules.low_balance]\nmargin = \"7\"\n"
    );
    let c = Config::parse(&text, Path::new("p.toml")).unwrap();
    let lb = &c.accounts[0].rules.low_balance;
    assert_eq!(lb.tiers.len(), 1);
    assert_eq!(lb.tiers[0].below.amount_string(), "100.00");
    assert_eq!(lb.margin.amount_string(), "7.00");
}

#[test]
fn a_cron_expression_with_a_bad_field_is_explained() {
    let text = BASE.replace(
        "provider = \"sim\"",
        "provider = \"sim\"\nschedule = \"0 */5 * * * mon-xyz\"",
    );
    let err = error_of(&text);
    assert!(err.starts_with("conf/purser.toml:13: accounts[0].schedule: \"0 */5 * * * mon-xyz\" is not a cron expression"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

const CLOUD: &str = r#"
[store]
path = "x.db"

[[providers]]
name = "tc"
kind = "tencent"

[[accounts]]
id = "tc-prod"
provider = "tc"
credentials = { key_id = "file:id", secret = "file:key" }
"#;

fn cloud_config(text: &str) -> Result<Config, String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("id"), "AKIDconfigtest0001\n").unwrap();
    std::fs::write(dir.path().join("key"), "config-test-secret-key-000\n").unwrap();
    Config::parse(text, &dir.path().join("purser.toml")).map_err(|e| e.to_string())
}

#[test]
fn a_cloud_account_reads_credentials_and_never_shows_them() {
    let c = cloud_config(CLOUD).unwrap();
    let a = &c.accounts[0];
    assert_eq!(a.account.site, "cn");
    assert_eq!(a.currency.code(), "CNY");
    let shown = format!("{c:?}");
    assert!(!shown.contains("AKIDconfigtest0001"), "{shown}");
    assert!(!shown.contains("config-test-secret-key-000"), "{shown}");
    assert!(shown.contains("[redacted]"));
    // The international site bills in dollars unless told otherwise.
    let intl =
        cloud_config(&CLOUD.replace("provider = \"tc\"", "provider = \"tc\"\nsite = \"intl\""))
            .unwrap();
    assert_eq!(intl.accounts[0].currency.code(), "USD");
}

#[test]
fn cloud_account_mistakes_are_located() {
    let inline = CLOUD.replace(
        "secret = \"file:key\"",
        "secret = \"Gu5t9xGARNpq86cd98joQYCN3\"",
    );
    let err = cloud_config(&inline).unwrap_err();
    assert!(
        err.contains("accounts[0].credentials.secret: a secret must be a reference"),
        "{err}"
    );
    assert!(!err.contains("Gu5t9xGARNpq86cd98joQYCN3"), "{err}");

    let missing = CLOUD.replace(
        "credentials = { key_id = \"file:id\", secret = \"file:key\" }\n",
        "",
    );
    let err = cloud_config(&missing).unwrap_err();
    assert!(
        err.contains(":10: accounts[0].credentials: a cloud account needs credentials"),
        "{err}"
    );

    let site = CLOUD.replace("provider = \"tc\"", "provider = \"tc\"\nsite = \"mars\"");
    let err = cloud_config(&site).unwrap_err();
    assert!(
        err.contains("site \"mars\" is not one of this cloud's: cn, intl"),
        "{err}"
    );

    let kind = CLOUD.replace("kind = \"tencent\"", "kind = \"tencnet\"");
    let err = cloud_config(&kind).unwrap_err();
    assert!(
        err.contains("unknown provider kind \"tencnet\"; known: simulated, tencent"),
        "{err}"
    );

    let azure = CLOUD.replace("kind = \"tencent\"", "kind = \"azure_china\"");
    let err = cloud_config(&azure).unwrap_err();
    assert!(
        err.contains("credentials.tenant: an azure_china account needs it"),
        "{err}"
    );

    let endpoint = CLOUD.replace(
        "provider = \"tc\"",
        "provider = \"tc\"\nendpoint = \"ftp://x\"",
    );
    let err = cloud_config(&endpoint).unwrap_err();
    assert!(
        err.contains("accounts[0].endpoint: must be an http or https URL"),
        "{err}"
    );
}

#[test]
fn the_new_rules_take_settings_overrides_and_located_errors() {
    let text = format!(
        "{BASE}labels = {{ env = \"dev\" }}\n\n[rules.unallocated_funds]\nafter = \"2h\"\nseverity = \"B\"\n\n[[overrides]]\nlabels = {{ env = \"dev\" }}\n[overrides.rules.stale_balance]\nenabled = false\n"
    );
    let c = Config::parse(&text, Path::new("p.toml")).unwrap();
    let rules = &c.accounts[0].rules;
    assert_eq!(rules.unallocated_funds.after, chrono::Duration::hours(2));
    assert_eq!(rules.unallocated_funds.severity.as_str(), "B");
    assert!(!rules.stale_balance.enabled);
    assert_eq!(rules.stale_balance.after, chrono::Duration::days(7));

    let err = error_of(&format!(
        "{BASE}\n[rules.stale_balance]\nafter = \"a week\"\n"
    ));
    assert!(
        err.contains(
            "conf/purser.toml:15: rules.stale_balance.after: \"a week\" is not a duration"
        ),
        "{err}"
    );
}

#[test]
fn accounts_with_equal_rules_and_policy_share_them_and_an_override_does_not() {
    let text = format!(
        "{BASE}\n[[accounts]]\nid = \"beta\"\nprovider = \"sim\"\n\n[[accounts]]\nid = \"gamma\"\nprovider = \"sim\"\n\n[[overrides]]\naccounts = [\"gamma\"]\n[overrides.rules.low_balance]\nrepeat = \"2h\"\n[overrides.policy]\nrequire_funds = false\n"
    );
    let c = Config::parse(&text, Path::new("p.toml")).unwrap();
    let [acme, beta, gamma] = &c.accounts[..] else {
        panic!("three accounts");
    };
    assert!(std::sync::Arc::ptr_eq(&acme.rules, &beta.rules));
    assert!(std::sync::Arc::ptr_eq(&acme.policy, &beta.policy));
    assert!(!std::sync::Arc::ptr_eq(&acme.rules, &gamma.rules));
    let two_hours = Some(chrono::Duration::hours(2));
    assert_eq!(gamma.rules.low_balance.timing.repeat_every, two_hours);
    assert_ne!(acme.rules.low_balance.timing.repeat_every, two_hours);
    assert!(!gamma.policy.require_funds && acme.policy.require_funds);
}

#[test]
fn chat_config_mistakes_are_located() {
    let text = format!(
        "{BASE}\n[slack]\nmode = \"http\"\nsigning_secret = \"env:PURSER_TEST_UNSET_SLACK\"\n[[people]]\nname = \"ana\"\nrole = \"boss\"\nslack = \"U1\"\n\n[[people]]\nname = \"bo\"\nrole = \"viewer\"\nslack = \"U1\"\n\n[[people]]\nname = \"cy\"\nrole = \"admin\"\n"
    );
    let err = error_of(&text);
    for want in [
        ":15: slack.mode: over HTTP, Slack's commands and buttons arrive at this daemon: set [http] listen",
        ":16: slack.signing_secret:",
        ":19: people[0].role: unknown role \"boss\"; use viewer, requester, approver or admin",
        ":25: people[1].slack: \"U1\" already belongs to \"ana\"",
    ] {
        assert!(err.contains(want), "{want:?} not in:\n{err}");
    }
    // A person with no chat identity acts from the terminal only.
    assert!(!err.contains("people[2]"), "{err}");
    let err = error_of(&format!("{BASE}\n[http]\nlisten = \"localhost\"\n"));
    assert!(
        err.contains(":15: http.listen: \"localhost\" is not an address"),
        "{err}"
    );
}

#[test]
fn discord_config_mistakes_are_located() {
    let err = error_of(&format!(
        "{BASE}\n[discord]\nmode = \"http\"\npublic_key = \"abc\"\napplication_id = \"my-app\"\n"
    ));
    for want in [
        ":15: discord.mode: over HTTP, Discord's interactions arrive at this daemon: set [http] listen",
        ":16: discord.public_key: a public key is 64 hex digits",
        ":17: discord.application_id: the application ID is a number",
    ] {
        assert!(err.contains(want), "{want:?} not in:\n{err}");
    }
    // The gateway is the default: it needs the bot token, and a public key
    // would mean the portal sends interactions over HTTP instead.
    let err = error_of(&format!(
        "{BASE}\n[discord]\npublic_key = \"abc\"\napplication_id = \"1234\"\n"
    ));
    for want in [
        ":15: discord.public_key: the public key verifies interactions over HTTP: with the gateway (the default) leave it out",
        ":16: discord.token: the gateway (the default) needs token = \"env:DISCORD_BOT_TOKEN\"",
    ] {
        assert!(err.contains(want), "{want:?} not in:\n{err}");
    }
    let err = error_of(&format!(
        "{BASE}\n[discord]\nmode = \"websocket\"\napplication_id = \"1234\"\n"
    ));
    assert!(
        err.contains(":15: discord.mode: unknown mode \"websocket\"; known: gateway, http"),
        "{err}"
    );
}

#[test]
fn chat_output_mistakes_are_located() {
    let err = error_of(&format!(
        "{BASE}\n[[outputs]]\nname = \"d\"\nkind = \"discord\"\nchannel = \"#ops\"\ntoken = \"env:PURSER_TEST_UNSET_DISCORD\"\n\n[[outputs]]\nname = \"d2\"\nkind = \"discord\"\n"
    ));
    for want in [
        ":18: outputs[0].token: environment variable PURSER_TEST_UNSET_DISCORD is not set",
        ":22: outputs[1].channel: a discord output needs the channel's id (a number",
        ":22: outputs[1].token: a discord output needs the bot token (\"env:DISCORD_BOT_TOKEN\")",
    ] {
        assert!(err.contains(want), "{want:?} not in:\n{err}");
    }
    let err = error_of(&format!(
        "{BASE}\n[[outputs]]\nname = \"d\"\nkind = \"discord\"\nchannel = \"#ops\"\ntoken = \"file:{}/Cargo.toml\"\n",
        env!("CARGO_MANIFEST_DIR")
    ));
    assert!(
        err.contains(":17: outputs[0].channel: a Discord channel id is a number"),
        "{err}"
    );
}

#[test]
fn telegram_mistakes_are_located_and_never_echo_the_token() {
    let err = error_of(&format!(
        "{BASE}\n[telegram]\ntoken = \"file:{}/Cargo.toml\"\nmode = \"webhook\"\nwebhook_url = \"http://purser.example.com/telegram/webhook\"\n",
        env!("CARGO_MANIFEST_DIR")
    ));
    for want in [
        ":15: telegram.token: the value does not look like a bot token",
        ":16: telegram.mode: a webhook arrives over HTTP: set [http] listen",
        ":17: telegram.webhook_url: Telegram posts only to an https URL",
        ":16: telegram.webhook_secret: mode = \"webhook\" needs webhook_secret",
    ] {
        assert!(err.contains(want), "{want:?} not in:\n{err}");
    }
    assert!(
        !err.contains("[package]"),
        "the file's content is not echoed: {err}"
    );
    let err = error_of(&format!(
        "{BASE}\n[telegram]\ntoken = \"env:PURSER_TEST_UNSET_TG\"\nmode = \"hook\"\n"
    ));
    assert!(
        err.contains(":16: telegram.mode: unknown mode \"hook\"; known: polling, webhook"),
        "{err}"
    );
    let err = error_of(&format!(
        "{BASE}\n[[outputs]]\nname = \"t\"\nkind = \"telegram\"\nchannel = \"ops group\"\ntoken = \"env:PURSER_TEST_UNSET_TG\"\n"
    ));
    assert!(
        err.contains(":18: outputs[0].token: environment variable PURSER_TEST_UNSET_TG is not set"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("tg.token");
    std::fs::write(&token, "123456789:AAvalid-token").unwrap();
    let err = error_of(&format!(
        "{BASE}\n[[outputs]]\nname = \"t\"\nkind = \"telegram\"\nchannel = \"ops group\"\ntoken = \"file:{}\"\n",
        token.display()
    ));
    assert!(
        err.contains(":17: outputs[0].channel: a Telegram chat id is a number"),
        "{err}"
    );
    assert!(!err.contains("AAvalid"), "{err}");
}

#[test]
fn route_mistakes_are_located() {
    let err = error_of(&format!(
        "{BASE}\n[[outputs]]\nname = \"console\"\nkind = \"console\"\n\n[[routes]]\nmatchers = \"env\"\noutputs = [\"console\"]\n\n[[routes]]\noutputs = [\"slack\"]\n\n[[routes]]\noutputs = []\n"
    ));
    for want in [
        ":19: routes[0].matchers: \"env\" is not a matcher",
        ":23: routes[1].outputs: no output is named \"slack\"; known: console",
        ":26: routes[2].outputs: name at least one output",
    ] {
        assert!(err.contains(want), "{want:?} not in:\n{err}");
    }
    let err = error_of(&format!(
        "{BASE}\n[[outputs]]\nname = \"console\"\nkind = \"console\"\n\n[[routes]]\noutputs = [\"console\"]\ncontinu = true\n"
    ));
    assert!(
        err.contains(":20: continu: unknown field `continu`"),
        "{err}"
    );
}

#[test]
fn robot_mistakes_are_located_and_never_echo_the_url() {
    let err = error_of(&format!(
        "{BASE}\n[[outputs]]\nname = \"d\"\nkind = \"dingtalk\"\nurl = \"https://oapi.dingtalk.com/robot/send?access_token=t0ps3cret\"\n\n[[outputs]]\nname = \"w\"\nkind = \"wecom\"\nurl = \"env:PURSER_TEST_UNSET_WECOM\"\nsecret = \"env:X\"\n\n[[outputs]]\nname = \"f\"\nkind = \"feishu\"\n"
    ));
    for want in [
        ":17: outputs[0].url: a secret must be a reference",
        "the robot's URL holds its key, so it is given like a secret (\"env:DINGTALK_ROBOT_URL\")",
        ":22: outputs[1].url: environment variable PURSER_TEST_UNSET_WECOM is not set",
        ":23: outputs[1].secret: WeCom robots do not sign",
        ":27: outputs[2].url: a Feishu robot needs its webhook URL (\"env:FEISHU_ROBOT_URL\")",
    ] {
        assert!(err.contains(want), "{want:?} not in:\n{err}");
    }
    assert!(!err.contains("t0ps3cret"), "{err}");
}

#[test]
fn slack_mode_mistakes_are_located_and_never_echo_the_token() {
    // Socket Mode is the default: it needs an app-level token, not a
    // signing secret.
    let err = error_of(&format!(
        "{BASE}\n[slack]\nsigning_secret = \"env:PURSER_TEST_UNSET_SLACK\"\n"
    ));
    for want in [
        ":15: slack.signing_secret: the signing secret verifies requests over HTTP: with Socket Mode (the default) leave it out",
        "slack.app_token: Socket Mode (the default) needs app_token",
    ] {
        assert!(err.contains(want), "{want:?} not in:\n{err}");
    }
    // A file that is not an xapp- token (a bot token would be refused alike).
    let err = error_of(&format!(
        "{BASE}\n[slack]\napp_token = \"file:{}/Cargo.toml\"\n",
        env!("CARGO_MANIFEST_DIR")
    ));
    assert!(
        err.contains(":15: slack.app_token: an app-level token starts with xapp-"),
        "{err}"
    );
    assert!(!err.contains("[package]"), "not echoed: {err}");
    let err = error_of(&format!("{BASE}\n[slack]\nmode = \"sockets\"\n"));
    assert!(
        err.contains(":15: slack.mode: unknown mode \"sockets\"; known: socket, http"),
        "{err}"
    );
    let err = error_of(&format!(
        "{BASE}\n[http]\nlisten = \"127.0.0.1:0\"\n[slack]\nmode = \"http\"\napp_token = \"env:PURSER_TEST_UNSET_SLACK\"\n"
    ));
    for want in [
        ":18: slack.app_token: the app-level token opens Socket Mode: with mode = \"http\" leave it out",
        ":17: slack.signing_secret: mode = \"http\" needs signing_secret",
    ] {
        assert!(err.contains(want), "{want:?} not in:\n{err}");
    }
}

#[test]
fn a_totp_secret_must_be_a_reference_to_enough_base32() {
    let person = |totp: &str| {
        format!(
            "{BASE}\n[[people]]\nname = \"ada\"\nrole = \"admin\"\nslack = \"U1\"\ntotp = \"{totp}\"\n"
        )
    };
    // Inline, it would sit in the config for all to read; not echoed back.
    let err = error_of(&person("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"));
    assert!(
        err.contains(":18: people[0].totp: a secret must be a reference"),
        "{err}"
    );
    assert!(!err.contains("JBSWY3DP"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("short.totp"), "JBSWY3DP").unwrap();
    std::fs::write(
        dir.path().join("good.totp"),
        "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
    )
    .unwrap();
    let at = dir.path().join("purser.toml");
    let err = Config::parse(&person("file:short.totp"), &at)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(":18: people[0].totp: a 40-bit secret is too short"),
        "{err}"
    );
    let c = Config::parse(&person("file:good.totp"), &at).unwrap();
    assert!(c.people[0].totp.is_some());
}

#[test]
fn a_payee_names_a_known_payment_method() {
    let err = error_of(&format!(
        "{BASE}payee = {{ paypal = \"someone@example.com\", wire = \" \" }}\n"
    ));
    assert!(
        err.contains("accounts[0].payee.paypal: unknown payment method \"paypal\"; use alipay,"),
        "{err}"
    );
    assert!(
        err.contains("accounts[0].payee.wire: must not be empty"),
        "{err}"
    );
    let c = Config::parse(
        &format!("{BASE}payee = {{ bank_transfer = \"ACME Cloud Ltd, 6222 0000\" }}\n"),
        Path::new("conf/purser.toml"),
    )
    .unwrap();
    assert_eq!(
        c.accounts[0].payee.values().collect::<Vec<_>>(),
        ["ACME Cloud Ltd, 6222 0000"]
    );
}

#[test]
fn approval_tiers_and_expiry_are_checked_and_located() {
    let err = error_of(&format!(
        "{BASE}\n[approvals]\nexpire_after = \"0s\"\ntiers = [\n  {{ above = \"1,000\", approvers = 1 }},\n  {{ above = \"$5,000\", approvers = 2 }},\n]\n"
    ));
    for want in [
        ":15: approvals.expire_after: must be longer than zero",
        ":18: approvals.tiers[1].above: \"$5,000\" names a currency; write the amount alone",
        ":16: approvals.tiers: the first approval tier must start at 0",
    ] {
        assert!(err.contains(want), "{want:?} not in:\n{err}");
    }
    let err = error_of(&format!(
        "{BASE}\n[approvals]\ntiers = [{{ above = \"0\", approvers = 2 }}, {{ above = \"9000\", approvers = 1 }}]\n"
    ));
    assert!(
        err.contains("approvals.tiers: the tier above 9000.00 asks less than the tier above 0.00"),
        "{err}"
    );
    let c = Config::parse(
        &format!("{BASE}\n[approvals]\nexpire_after = \"2h\"\ntiers = [{{ above = \"0\", approvers = 2 }}]\n"),
        Path::new("conf/purser.toml"),
    )
    .unwrap();
    assert_eq!(c.approvals.expire_after, chrono::Duration::hours(2));
    assert_eq!(c.approvals.tiers.list().count(), 1);
}

#[test]
fn policy_narrows_the_clouds_rules_per_account_and_label() {
    let text = format!(
        r#"{BASE}
[[accounts]]
id = "acme-prod"
provider = "sim"
labels = {{ env = "prod" }}

[policy]
require_funds = true
caps = {{ per_request = "20,000", per_requester_day = "30k" }}
roles = {{ pay = "approver", allocate = "admin" }}

[policy.topup]
methods = ["wire", "alipay"]
minimum = {{ wire = "10,000", wechat = "1" }}
settles_within = {{ wire = "3d" }}

[policy.renew]
periods = [12, 1, 3]

[[overrides]]
labels = {{ env = "prod" }}
[overrides.policy]
caps = {{ per_request = "none", per_account_day = "100,000" }}
roles = {{ pay = "requester" }}
"#
    );
    let c = Config::parse(&text, Path::new("conf/purser.toml")).unwrap_or_else(|e| panic!("{e}"));
    let policies = c.policies();
    let id = |s: &str| purser::domain::model::AccountId::parse(s).unwrap();
    let (acme, prod) = (&policies[&id("acme")], &policies[&id("acme-prod")]);
    let d = |n: i64| rust_decimal::Decimal::from(n);
    use purser::domain::command::Role;
    use purser::domain::request::{ActionKind, PaymentMethod};

    assert_eq!(acme.caps.per_request, Some(d(20_000)));
    assert_eq!(acme.caps.per_requester_day, Some(d(30_000)));
    assert_eq!(acme.caps.per_account_day, None);
    assert_eq!(acme.role_for(ActionKind::Pay), Role::Approver);
    assert_eq!(acme.role_for(ActionKind::Topup), Role::Requester);
    // The listed order is kept: the first method is the one used when a
    // top-up names none. A minimum for a method the account does not take
    // (WeChat Pay here) is for other accounts and changes nothing.
    let methods: Vec<_> = acme.topup.iter().map(|m| m.method).collect();
    assert_eq!(methods, [PaymentMethod::Wire, PaymentMethod::Alipay]);
    assert_eq!(acme.topup[0].minimum, d(10_000));
    assert_eq!(acme.topup[0].settles_within, chrono::Duration::days(3));
    assert_eq!(acme.topup[1].minimum, d(1_000), "the documented minimum");
    assert_eq!(acme.renew_months, [1, 3, 12]);

    // The override lifts one cap, sets another, and keeps the rest.
    assert_eq!(prod.caps.per_request, None);
    assert_eq!(prod.caps.per_account_day, Some(d(100_000)));
    assert_eq!(prod.caps.per_requester_day, Some(d(30_000)));
    assert_eq!(prod.role_for(ActionKind::Pay), Role::Requester);
    assert_eq!(prod.role_for(ActionKind::Allocate), Role::Admin);
}

#[test]
fn policy_mistakes_and_settings_a_cloud_would_refuse_are_located() {
    let text = format!(
        r#"{BASE}
[policy]
caps = {{ per_request = "0", per_account_day = "$5,000", per_requester_day = "5,00.0" }}
roles = {{ pay = "viewer", refund = "admin" }}

[policy.topup]
methods = ["alipay", "paypal", "credit_card", "alipay"]
minimum = {{ alipay = "500", wire = "4,000" }}
multiple = {{ alipay = "0" }}
settles_within = {{ alipay = "soon" }}

[policy.renew]
periods = [1, 13]

[policy.pay]
combined = true
coupons = 2
"#
    );
    let err = error_of(&text);
    for want in [
        ":15: policy.caps.per_request: a cap must be above zero (\"none\" lifts it)",
        ":15: policy.caps.per_account_day: \"$5,000\" names a currency; write the amount alone",
        ":15: policy.caps.per_requester_day: \"5,00.0\" has misplaced thousands separators",
        ":16: policy.roles.pay: \"viewer\" must be requester, approver or admin",
        ":16: policy.roles.refund: \"refund\" is not a kind of request; the kinds: topup, renew, pay, autorenew, allocate",
        ":19: policy.topup.methods: unknown payment method \"paypal\"",
        ":19: policy.topup.methods: the simulated provider (which keeps 21Vianet's rules) does not take top-ups by credit card; it takes alipay, unionpay, wire",
        ":19: policy.topup.methods: alipay is listed twice",
        ":20: policy.topup.minimum.alipay: the simulated provider (which keeps 21Vianet's rules) takes Alipay from ¥1,000.00; a lower minimum would be refused there",
        ":20: policy.topup.minimum.wire: the simulated provider (which keeps 21Vianet's rules) takes wire transfer from ¥5,000.00",
        ":21: policy.topup.multiple.alipay: a multiple must be above zero",
        ":22: policy.topup.settles_within.alipay:",
        ":25: policy.renew.periods: the simulated provider (which keeps 21Vianet's rules) renews for 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 months; 13 is not one of them",
        ":28: policy.pay.combined: the simulated provider (which keeps 21Vianet's rules) pays orders one at a time; it cannot be true here",
        ":29: policy.pay.coupons: the simulated provider (which keeps 21Vianet's rules) takes at most 0 coupon(s) per order; 2 is not allowed",
    ] {
        assert!(err.contains(want), "{want:?} not in:\n{err}");
    }
    // An unknown key inside the section is refused like any other.
    let err = error_of(&format!("{BASE}\n[policy.caps]\nper_day = \"1000\"\n"));
    assert!(
        err.contains(":15: per_day: unknown field `per_day`"),
        "{err}"
    );
}

#[test]
fn policy_follows_each_accounts_cloud() {
    // Tencent takes allocations in steps of ¥1,000: a team may ask for
    // steps of ¥5,000 but not of ¥1,500; Tencent pays orders together.
    let ok = format!(
        "{CLOUD}\n[policy.allocate]\nminimum = \"5,000\"\nmultiple = \"5,000\"\n[policy.pay]\ncombined = false\n"
    );
    let c = cloud_config(&ok).unwrap();
    let p = &c.policies()[&c.accounts[0].account.id];
    let allocate = p.allocate.as_ref().unwrap();
    assert_eq!(allocate.multiple, Some(rust_decimal::Decimal::from(5_000)));
    assert!(!p.combined_payment);
    let err = cloud_config(&format!(
        "{CLOUD}\n[policy.allocate]\nmultiple = \"1,500\"\n[policy.topup]\nmethods = [\"unionpay\"]\n"
    ))
    .unwrap_err();
    for want in [
        "policy.allocate.multiple: Tencent Cloud takes multiples of ¥1,000.00; ¥1,500.00 is not one",
        "policy.topup.methods: Tencent Cloud does not take top-ups by UnionPay online payment; it takes online_banking, wechat, alipay, wire",
    ] {
        assert!(err.contains(want), "{want:?} not in:\n{err}");
    }
}

#[test]
fn approval_channels_name_outputs_that_can_show_a_card() {
    let outputs = "\n[[outputs]]\nname = \"log\"\nkind = \"console\"\n\n[[outputs]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"https://example.com/h\"\nsecret = \"env:HOME\"\n";
    let c = Config::parse(&format!("{BASE}{outputs}"), Path::new("conf/purser.toml")).unwrap();
    assert_eq!(c.approvals.channels, ["log"], "by default, each that can");
    let err = error_of(&format!(
        "{BASE}{outputs}\n[approvals]\nchannels = [\"hook\", \"ops\"]\n"
    ));
    for want in [
        ":25: approvals.channels: output \"hook\" cannot show a request with Approve and Deny buttons; name a slack, discord, telegram or console output",
        ":25: approvals.channels: no output named \"ops\" in [[outputs]]",
    ] {
        assert!(err.contains(want), "{want:?} not in:\n{err}");
    }
    let c = Config::parse(
        &format!("{BASE}{outputs}\n[approvals]\nchannels = []\n"),
        Path::new("conf/purser.toml"),
    )
    .unwrap();
    assert!(
        c.approvals.channels.is_empty(),
        "none: requests are only in chat replies"
    );
}

#[test]
fn spans_and_amounts_beyond_what_purser_handles_are_refused_not_overflowed() {
    let text = format!("{BASE}\n[rules.low_balance]\nrepeat = \"99999999999999d\"\n");
    let err = error_of(&text);
    assert!(
        err.contains("rules.low_balance.repeat: \"99999999999999d\" is longer than purser takes (at most 36500d)"),
        "{err}"
    );
    let text = BASE.replace(
        "[[providers]]",
        "[scheduler]\ntimeout = \"9999999999999999999999s\"\n\n[[providers]]",
    );
    let err = error_of(&text);
    assert!(err.contains("scheduler.timeout"), "{err}");
    assert!(err.contains("at most 36500d"), "{err}");
    let text = format!(
        "{BASE}\n[rules.low_balance]\ntiers = [{{ below = \"99,999,999,999,999,999\", severity = \"A\" }}]\n"
    );
    let err = error_of(&text);
    assert!(err.contains("beyond what purser handles exactly"), "{err}");
}

#[test]
fn configs_that_would_leave_purser_blind_are_refused() {
    for schedule in ["0 0 0 30 2 *", "0 0 0 1 1 * 2020"] {
        let text = BASE.replace(
            "provider = \"sim\"",
            &format!("provider = \"sim\"\nschedule = \"{schedule}\""),
        );
        let err = error_of(&text);
        assert!(
            err.contains(&format!(
                "conf/purser.toml:13: accounts[0].schedule: \"{schedule}\" does not recur"
            )),
            "{err}"
        );
    }
    // A scenario file that is not there (Config::load looks).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("purser.toml");
    std::fs::write(&path, BASE).unwrap();
    let err = Config::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("purser.toml:8: providers[0].scenario: there is no scenario file"),
        "{err}"
    );
}

#[test]
fn a_wrong_typed_value_names_its_key_and_line_and_what_was_wanted() {
    let text = format!("{BASE}\n[rules.low_balance]\nrepeat = 3000\n");
    let err = error_of(&text);
    assert!(
        err.starts_with("conf/purser.toml:15: rules.low_balance.repeat: expected a duration in quotes such as \"4h\", got 3000"),
        "{err}"
    );
    let text = format!("{BASE}\n[[overrides]]\naccounts = [\"nope\"]\n");
    let err = error_of(&text);
    assert!(
        err.contains("conf/purser.toml:15: overrides[0].accounts: no account \"nope\" is defined"),
        "{err}"
    );
    let text = BASE.replace(
        "[[providers]]",
        "[scheduler]\ntimeout = \"0s\"\n\n[[providers]]",
    );
    let err = error_of(&text);
    assert!(
        err.contains("conf/purser.toml:6: scheduler.timeout: must be longer than zero"),
        "{err}"
    );
}

#[test]
fn schedules_are_read_in_the_calendars_zone_unless_the_scheduler_names_one() {
    let c = Config::parse(BASE, Path::new("conf/purser.toml")).unwrap();
    assert_eq!(c.scheduler.timezone, chrono_tz::Asia::Shanghai);
    let text = format!("{BASE}\n[calendar]\nzone = \"Europe/Berlin\"\n");
    let c = Config::parse(&text, Path::new("conf/purser.toml")).unwrap();
    assert_eq!(c.scheduler.timezone, chrono_tz::Europe::Berlin);
    let text = format!("{BASE}\n[scheduler]\ntimezone = \"UTC\"\n");
    let c = Config::parse(&text, Path::new("conf/purser.toml")).unwrap();
    assert_eq!(c.scheduler.timezone, chrono_tz::UTC);
    assert!(purser::config::describe(&c).contains("in UTC: next"));
    let err = error_of(&format!("{BASE}\n[scheduler]\ntimezone = \"Mars/Base\"\n"));
    assert!(
        err.contains(
            "conf/purser.toml:15: scheduler.timezone: \"Mars/Base\" is not an IANA time zone"
        ),
        "{err}"
    );
}

#[test]
fn a_postgres_store_is_named_by_url_with_its_password_by_reference() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pg-password");
    std::fs::write(&pw, "s3cret-pg-pass\n").unwrap();
    let text = BASE.replace(
        "path = \"x.db\"",
        &format!(
            "url = \"postgres://purser@db.internal:6432/purser?sslmode=verify-full\"\npassword = \"file:{}\"\npool = 4\n\n[ha]\nlease = \"20s\"\nname = \"replica-a\"",
            pw.display()
        ),
    );
    let c = Config::parse(&text, Path::new("conf/purser.toml")).unwrap();
    let purser::config::Backend::Postgres(pg) = &c.store.backend else {
        panic!("{:?}", c.store.backend)
    };
    assert_eq!(pg.at, "db.internal:6432/purser");
    assert_eq!(pg.password.as_ref().unwrap().expose(), "s3cret-pg-pass");
    assert_eq!(pg.pool, 4);
    assert_eq!(pg.ha.lease, chrono::Duration::seconds(20));
    assert_eq!(pg.ha.name, "replica-a");
    assert_eq!(c.store.describe(), "PostgreSQL at db.internal:6432/purser");
    // Defaults: a 15 s lease, ten connections, the host and pid as name.
    let plain = BASE.replace("path = \"x.db\"", "url = \"postgres://purser@db/purser\"");
    let c = Config::parse(&plain, Path::new("conf/purser.toml")).unwrap();
    let purser::config::Backend::Postgres(pg) = &c.store.backend else {
        panic!()
    };
    assert_eq!((pg.pool, pg.ha.lease), (10, chrono::Duration::seconds(15)));
    assert!(
        pg.ha.name.ends_with(&format!(":{}", std::process::id())),
        "{}",
        pg.ha.name
    );
}

#[test]
fn a_password_written_into_the_store_url_is_refused_unrepeated() {
    let text = BASE.replace(
        "path = \"x.db\"",
        "url = \"postgres://purser:hunter2hunter2@db:5432/purser\"",
    );
    let err = error_of(&text);
    assert!(
        err.contains("conf/purser.toml:3: store.url: the URL holds a password"),
        "{err}"
    );
    assert!(err.contains("password = \"env:NAME\""), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    assert_eq!(err.lines().count(), 1, "said once: {err}");
}

#[test]
fn store_mistakes_are_each_named() {
    // Both a file and a server.
    let both = BASE.replace(
        "path = \"x.db\"",
        "path = \"x.db\"\nurl = \"postgres://purser@db/purser\"",
    );
    assert!(
        error_of(&both).contains("give either path (a SQLite file) or url (PostgreSQL), not both"),
        "{}",
        error_of(&both)
    );
    // Not PostgreSQL.
    let mysql = BASE.replace("path = \"x.db\"", "url = \"mysql://purser@db/purser\"");
    assert!(
        error_of(&mysql).contains("store.url: the scheme is \"mysql\""),
        "{}",
        error_of(&mysql)
    );
    // Replicas on a file.
    let ha = format!("{BASE}\n[ha]\nlease = \"15s\"\n");
    assert!(
        error_of(&ha).contains("ha: replicas share a PostgreSQL store"),
        "{}",
        error_of(&ha)
    );
    // A pool of nothing, a lease too short to renew.
    let bad = BASE.replace(
        "path = \"x.db\"",
        "url = \"postgres://purser@db/purser\"\npool = 0\n\n[ha]\nlease = \"1s\"",
    );
    let err = error_of(&bad);
    assert!(
        err.contains("store.pool: must be a number of connections, 1 to 1000"),
        "{err}"
    );
    assert!(
        err.contains("ha.lease: must be between 3s and 10m"),
        "{err}"
    );
    // Neither.
    let none = BASE.replace("path = \"x.db\"", "retention = \"35d\"");
    assert!(
        error_of(&none).contains("store: needs path = \"purser.db\""),
        "{}",
        error_of(&none)
    );
}

#[test]
fn a_setting_the_output_kind_does_not_read_is_refused_where_it_stands() {
    // A chat channel on a webhook, a timeout on a robot, an api on the console.
    let err = error_of(&format!(
        "{BASE}\n[[outputs]]\nname = \"w\"\nkind = \"webhook\"\nurl = \"https://example.com/hook\"\nsecret = \"env:PATH\"\nchannel = \"#ops\"\n\n[[outputs]]\nname = \"r\"\nkind = \"dingtalk\"\nurl = \"env:PATH\"\ntimeout = \"5s\"\n\n[[outputs]]\nname = \"c\"\nkind = \"console\"\napi = \"http://127.0.0.1:1\"\n"
    ));
    for want in [
        ":19: outputs[0].channel: a webhook output: unknown field `channel`, expected one of `url`, `secret`, `timeout`, `max_attempts`",
        ":25: outputs[1].timeout: a dingtalk output: unknown field `timeout`, expected `url` or `secret`",
        ":30: outputs[2].api: a console output: unknown field `api` (it reads nothing besides name and kind)",
    ] {
        assert!(err.contains(want), "{want:?} not in:\n{err}");
    }
}

#[test]
fn an_output_setting_of_the_wrong_type_or_a_missing_kind_is_located() {
    let err = error_of(&format!(
        "{BASE}\n[[outputs]]\nname = \"w\"\nkind = \"webhook\"\nurl = \"https://example.com/hook\"\nsecret = \"env:PATH\"\nmax_attempts = \"ten\"\n\n[[outputs]]\nname = \"k\"\n"
    ));
    for want in [
        ":19: outputs[0].max_attempts: a webhook output: expected a whole number, got string \"ten\"",
        ":21: outputs[1].kind: missing; every output has a kind",
    ] {
        assert!(err.contains(want), "{want:?} not in:\n{err}");
    }
    let err = error_of(&format!("outputs = 3\n{BASE}"));
    assert!(
        err.contains(":1: outputs: expected [[outputs]] tables, each with a name and a kind"),
        "{err}"
    );
}

#[test]
fn an_unknown_output_kind_lists_every_kind() {
    let err = error_of(&format!(
        "{BASE}\n[[outputs]]\nname = \"x\"\nkind = \"teams\"\n"
    ));
    assert!(
        err.contains(
            "outputs[0].kind: unknown output kind \"teams\"; known: console, webhook, slack, discord, telegram, dingtalk, wecom, feishu"
        ),
        "{err}"
    );
}
