//! Configuration: TOML, read once, validated into [`Config`] before anything
//! starts. Every error names the file, the line and the key.

mod accounts;
mod chat;
pub use chat::{DiscordConfig, DiscordMode, SlackConfig, SlackMode, TelegramConfig, TelegramMode};
use chat::{
    RawDiscord, RawSlack, RawTelegram, TELEGRAM_TOKEN_SHAPE, api_base, build_discord, build_slack,
    build_telegram,
};
mod environment;
mod oncall;
mod operate;
mod outputs;
pub use outputs::{OutputConfig, OutputKind, dm_platform};
use outputs::{RawOutput, build_outputs, shows_requests};
mod people;
pub use people::{ApprovalsConfig, PersonConfig};
use people::{RawApprovals, RawPerson, bare_amount, build_approvals, build_people};
mod policy;
mod rules;
use rules::{RawOverride, RawRules, build_rules};

pub use accounts::{Cloud, ProviderConfig, ProviderKind};
use accounts::{RawAccount, RawProvider};
mod store;

pub use oncall::{OPSGENIE_API, OnCallConfig, PAGERDUTY_EVENTS, PagerConfig, PagerKind, holidays};

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use chrono::Duration;
use serde::Deserialize;
use toml::Spanned;

use crate::domain::account::AccountSpec;
use crate::domain::money::Currency;
use crate::domain::rules::RuleSet;

// ---------------------------------------------------------------- validated

#[derive(Debug, Clone)]
pub struct Config {
    pub file: PathBuf,
    pub store: StoreConfig,
    pub scheduler: SchedulerConfig,
    /// The rules purser's own alerts (`calendar_expiring`) follow.
    pub own_rules: RuleSet,
    pub providers: Vec<ProviderConfig>,
    /// Shared, not copied, by every part that reads the accounts.
    pub accounts: Arc<Vec<Arc<AccountSpec>>>,
    pub outputs: Vec<OutputConfig>,
    /// Which outputs hear of which alerts; none: every output hears all.
    pub routes: Vec<crate::domain::routing::Route>,
    /// The one HTTP listener (chat endpoints and `/healthz`), when set.
    pub http: Option<HttpConfig>,
    /// `/metrics` (with `/healthz` and `/readyz`) on an address of its own.
    pub metrics: Option<MetricsConfig>,
    /// The outside check pinged after every cycle of polls.
    pub heartbeat: Option<HeartbeatConfig>,
    pub slack: Option<SlackConfig>,
    pub discord: Option<DiscordConfig>,
    pub telegram: Option<TelegramConfig>,
    /// Who may ask purser things, and as whom they appear on each platform.
    pub people: Vec<PersonConfig>,
    /// How many must approve a request of a given size, and how long it waits.
    pub approvals: ApprovalsConfig,
    /// Working calendar, response targets, rotations, escalation chains, pagers.
    pub oncall: OnCallConfig,
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub listen: std::net::SocketAddr,
    /// Connections open at once (fewer when the open-file limit is low).
    pub max_connections: usize,
}

impl Config {
    /// Which outputs hear of which alerts.
    pub fn routing(&self) -> crate::domain::routing::Routing {
        let names: Vec<String> = self.outputs.iter().map(|o| o.name.clone()).collect();
        if self.routes.is_empty() {
            crate::domain::routing::Routing::everywhere(&names)
        } else {
            crate::domain::routing::Routing::new(self.routes.clone(), &names)
        }
    }

    /// Accounts whose balance a person enters (their cloud has no balance API).
    pub fn entered_balance_accounts(&self) -> HashSet<crate::domain::model::AccountId> {
        self.accounts
            .iter()
            .filter(|a| {
                self.providers.iter().any(|p| {
                    p.name == a.account.provider
                        && matches!(
                            p.kind,
                            ProviderKind::Cloud {
                                cloud: Cloud::AzureChina,
                                ..
                            }
                        )
                })
            })
            .map(|a| a.account.id.clone())
            .collect()
    }

    /// The people, as the chat layer looks them up.
    pub fn directory(&self) -> crate::domain::people::Directory {
        crate::domain::people::Directory::new(self.people.iter().flat_map(|p| {
            p.identities.iter().map(|(platform, user)| {
                (
                    platform.clone(),
                    user.clone(),
                    crate::domain::people::Person {
                        name: p.name.clone(),
                        role: p.role,
                    },
                )
            })
        }))
    }
}

pub use operate::{HeartbeatConfig, MetricsConfig};
pub use store::{Backend, HaConfig, PostgresConfig, StoreConfig};

#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Each account's polls are shifted by a fixed share of this, so that
    /// accounts on one schedule do not all call their cloud at the same second.
    pub jitter: Duration,
    /// A poll that takes longer is abandoned and counted as failed.
    pub timeout: Duration,
    /// How long a stop may take: what is still under way then is cut off
    /// and resumes at the next start.
    pub shutdown_timeout: Duration,
    /// The zone cron schedules are read in: `[scheduler] timezone`, else
    /// the calendar's (Asia/Shanghai unless set), so `0 9 * * *` is 09:00
    /// where the team is.
    pub timezone: chrono_tz::Tz,
}

// ---------------------------------------------------------------- errors

/// One thing wrong with a config file, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    pub line: Option<usize>,
    pub key: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub issues: Vec<ConfigIssue>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.issues.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}", self.file.display())?;
            if let Some(line) = issue.line {
                write!(f, ":{line}")?;
            }
            if !issue.key.is_empty() {
                write!(f, ": {}", issue.key)?;
            }
            write!(f, ": {}", issue.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

struct Issues<'a> {
    source: &'a str,
    list: Vec<ConfigIssue>,
    /// Whether files the config names (scenarios) must exist now.
    files: bool,
}

impl Issues<'_> {
    fn line_of(&self, offset: usize) -> usize {
        self.source[..offset.min(self.source.len())]
            .matches('\n')
            .count()
            + 1
    }

    fn at<T>(&mut self, value: &Spanned<T>, key: impl Into<String>, message: impl Into<String>) {
        let line = self.line_of(value.span().start);
        self.list.push(ConfigIssue {
            line: Some(line),
            key: key.into(),
            message: message.into(),
        });
    }

    /// The parser's or a type's complaint, at its line, naming its key and
    /// saying what was wanted where the parser's words do not.
    fn parser_issue(&self, e: &toml::de::Error) -> ConfigIssue {
        let message = e.message().trim().to_owned();
        let Some(span) = e.span() else {
            return ConfigIssue {
                line: None,
                key: String::new(),
                message,
            };
        };
        let line = Some(self.line_of(span.start));
        let text = self.source.get(span.clone()).unwrap_or("").trim();
        let bare = text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        match mistyped(&message) {
            // A value of the wrong type: name its key, and say what was
            // wanted.
            Some((got, expected)) => {
                let key = key_at(self.source, span.start);
                let expected = match expected.as_str() {
                    "a string" => wanted(&key).to_owned(),
                    "i64" | "u64" | "i32" | "u32" | "u16" | "u8" | "usize" => {
                        "a whole number".to_owned()
                    }
                    _ => expected,
                };
                ConfigIssue {
                    line,
                    key,
                    message: format!("expected {expected}, got {got}"),
                }
            }
            None => ConfigIssue {
                line,
                key: if bare { text.to_owned() } else { String::new() },
                message,
            },
        }
    }

    fn nowhere(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.list.push(ConfigIssue {
            line: None,
            key: key.into(),
            message: message.into(),
        });
    }
}

// ---------------------------------------------------------------- raw

type S = Spanned<String>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    store: store::RawStore,
    ha: Option<Spanned<store::RawHa>>,
    #[serde(default)]
    scheduler: RawScheduler,
    #[serde(default)]
    rules: RawRules,
    #[serde(default)]
    overrides: Vec<RawOverride>,
    #[serde(default)]
    providers: Vec<RawProvider>,
    #[serde(default)]
    accounts: Vec<RawAccount>,
    /// Read apart from the rest, by [`outputs::read`].
    #[serde(skip)]
    outputs: Vec<RawOutput>,
    #[serde(default)]
    routes: Vec<RawRoute>,
    http: Option<RawHttp>,
    metrics: Option<operate::RawMetrics>,
    heartbeat: Option<operate::RawHeartbeat>,
    slack: Option<Spanned<RawSlack>>,
    discord: Option<RawDiscord>,
    telegram: Option<RawTelegram>,
    #[serde(default)]
    people: Vec<RawPerson>,
    approvals: Option<RawApprovals>,
    #[serde(default)]
    policy: policy::RawPolicy,
    calendar: Option<oncall::RawCalendar>,
    #[serde(default)]
    calendars: BTreeMap<String, Spanned<oncall::RawCalendar>>,
    #[serde(default)]
    response: BTreeMap<String, Spanned<oncall::RawResponse>>,
    #[serde(default)]
    schedules: Vec<oncall::RawSchedule>,
    #[serde(default)]
    escalation: BTreeMap<String, Spanned<oncall::RawChain>>,
    #[serde(default)]
    pagers: Vec<oncall::RawPager>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    matchers: Option<S>,
    outputs: Spanned<Vec<String>>,
    #[serde(rename = "continue", default)]
    continue_matching: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: S,
    max_connections: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScheduler {
    schedule: Option<S>,
    jitter: Option<S>,
    timeout: Option<S>,
    shutdown_timeout: Option<S>,
    timezone: Option<S>,
}

// ---------------------------------------------------------------- parsing helpers

/// What a value of the wrong type was, from the parser's "invalid type:
/// integer `3000`, expected a string".
fn mistyped(message: &str) -> Option<(String, String)> {
    let rest = message.strip_prefix("invalid type: ")?;
    let (got, expected) = rest.split_once(", expected ")?;
    let got = got.trim();
    // "integer `3000`" reads better as 3000.
    let got = match (got.find('`'), got.rfind('`')) {
        (Some(a), Some(b)) if b > a => got[a + 1..b].to_owned(),
        _ => got.to_owned(),
    };
    Some((got, expected.trim().to_owned()))
}

/// The dotted key whose value starts at `offset`: the key on its line,
/// under the nearest table header above (`outputs[2]` for the third
/// `[[outputs]]`).
fn key_at(source: &str, offset: usize) -> String {
    let before = source.get(..offset).unwrap_or(source);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = source
        .get(line_start..)
        .unwrap_or("")
        .lines()
        .next()
        .unwrap_or("");
    let key = line.split('=').next().unwrap_or("").trim().to_owned();
    let mut table = String::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for l in before.get(..line_start).unwrap_or("").lines() {
        let l = l.trim();
        if let Some(name) = l.strip_prefix("[[").and_then(|r| r.strip_suffix("]]")) {
            let n = seen.entry(name.trim().to_owned()).or_insert(0);
            table = format!("{}[{}]", name.trim(), *n);
            *n += 1;
        } else if let Some(name) = l.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            table = name.trim().to_owned();
        }
    }
    match (table.is_empty(), key.is_empty()) {
        (_, true) => table,
        (true, false) => key,
        (false, false) => format!("{table}.{key}"),
    }
}

/// What a key wants, in words, by its name.
fn wanted(key: &str) -> &'static str {
    const DURATIONS: [&str; 13] = [
        "repeat",
        "pending",
        "after",
        "timeout",
        "jitter",
        "within",
        "window",
        "retention",
        "before_deadline",
        "expire_after",
        "shutdown_timeout",
        "settles_within",
        "after_ack",
    ];
    const AMOUNTS: [&str; 8] = [
        "below",
        "margin",
        "minimum",
        "multiple",
        "above",
        "per_request",
        "per_account_day",
        "per_requester_day",
    ];
    let last = key.rsplit('.').next().unwrap_or(key);
    if DURATIONS.contains(&last) {
        "a duration in quotes such as \"4h\""
    } else if AMOUNTS.contains(&last) {
        "an amount in quotes such as \"3,000\""
    } else {
        "text in quotes"
    }
}

pub use crate::domain::duration::parse as parse_duration;

/// Cron with a seconds field (`0 */5 * * * *`); a five-field expression gets `0` seconds.
pub fn parse_cron(text: &str) -> Result<cron::Schedule, String> {
    let fields = text.split_whitespace().count();
    let full = match fields {
        5 => format!("0 {text}"),
        6 | 7 => text.to_owned(),
        n => {
            return Err(format!(
                "{text:?} has {n} fields; write 5 (min hour day month weekday) or 6 with seconds first, e.g. \"0 */5 * * * *\""
            ));
        }
    };
    let schedule = cron::Schedule::from_str(&full).map_err(|e| {
        let why = e.to_string();
        let why = why.lines().next().unwrap_or_default().trim().to_owned();
        format!("{text:?} is not a cron expression ({why})")
    })?;
    // One that never comes again (30 February, a year gone) would poll once
    // at start and then never: purser would watch nothing, silently.
    let mut next = schedule.upcoming(chrono::Utc);
    match (next.next(), next.next()) {
        (Some(_), Some(_)) => Ok(schedule),
        _ => Err(format!(
            "{text:?} does not recur: purser would poll once at start and then be blind; give a schedule that repeats, e.g. \"0 */5 * * * *\""
        )),
    }
}

fn duration(issues: &mut Issues<'_>, key: &str, value: Option<&S>, default: Duration) -> Duration {
    match value {
        None => default,
        Some(v) => match parse_duration(v.get_ref()) {
            Ok(d) => d,
            Err(e) => {
                issues.at(v, key, e);
                default
            }
        },
    }
}

// ---------------------------------------------------------------- loading

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let source = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_owned(),
            issues: vec![ConfigIssue {
                line: None,
                key: String::new(),
                message: format!("cannot read: {e}"),
            }],
        })?;
        let overrides = environment::overrides(std::env::vars());
        if overrides.is_empty() {
            return Config::parse_with(&source, path, true);
        }
        Config::with_overrides(&source, path, &overrides)
    }

    /// The file with keys from the environment set over it. Its lines are
    /// not those of the file, so problems are reported without them, and
    /// with the variables that were applied.
    fn with_overrides(
        source: &str,
        path: &Path,
        overrides: &[(String, Vec<String>, toml::Value)],
    ) -> Result<Config, ConfigError> {
        let names: Vec<&str> = overrides.iter().map(|o| o.0.as_str()).collect();
        let unlocated = |mut e: ConfigError| {
            for issue in &mut e.issues {
                issue.line = None;
            }
            e.issues.push(ConfigIssue {
                line: None,
                key: String::new(),
                message: format!(
                    "(read with {} from the environment, so lines are not shown)",
                    names.join(", ")
                ),
            });
            e
        };
        let mut doc: toml::Table = match toml::from_str(source) {
            Ok(doc) => doc,
            // Not TOML at all: said of the file itself, with its lines.
            Err(_) => return Config::parse_with(source, path, true),
        };
        let refused = environment::apply(&mut doc, overrides);
        if !refused.is_empty() {
            return Err(ConfigError {
                file: path.to_owned(),
                issues: refused
                    .into_iter()
                    .map(|(name, why)| ConfigIssue {
                        line: None,
                        key: name,
                        message: why,
                    })
                    .collect(),
            });
        }
        let merged = toml::to_string(&doc).map_err(|e| ConfigError {
            file: path.to_owned(),
            issues: vec![ConfigIssue {
                line: None,
                key: String::new(),
                message: format!("cannot apply {}: {e}", names.join(", ")),
            }],
        })?;
        Config::parse_with(&merged, path, true).map_err(unlocated)
    }

    /// Parses and validates `source`, read from `path` (used for messages and
    /// for resolving relative file references).
    /// Scenario files are not looked for here; [`Config::load`] does.
    pub fn parse(source: &str, path: &Path) -> Result<Config, ConfigError> {
        Config::parse_with(source, path, false)
    }

    fn parse_with(source: &str, path: &Path, files: bool) -> Result<Config, ConfigError> {
        let fail = |issues: Vec<ConfigIssue>| ConfigError {
            file: path.to_owned(),
            issues,
        };
        let mut issues = Issues {
            source,
            files,
            list: Vec::new(),
        };
        // Outputs are read per kind (each kind its own settings, with
        // their lines), so they come out of the document before the rest.
        let mut doc =
            toml::de::DeTable::parse(source).map_err(|e| fail(vec![issues.parser_issue(&e)]))?;
        let outputs = doc.get_mut().remove("outputs");
        let mut raw = RawConfig::deserialize(toml::de::Deserializer::from(doc))
            .map_err(|e| fail(vec![issues.parser_issue(&e)]))?;
        raw.outputs = outputs::read(&mut issues, outputs);
        let base = path.parent().unwrap_or(Path::new(".")).to_owned();
        let config = build(&mut issues, raw, path, &base);
        if issues.list.is_empty() {
            Ok(config)
        } else {
            // In file order (unlocated last), as a person fixes them.
            issues.list.sort_by_key(|i| i.line.unwrap_or(usize::MAX));
            Err(fail(issues.list))
        }
    }
}

/// A listening address, such as 127.0.0.1:8080.
fn address(issues: &mut Issues<'_>, key: &str, value: &S) -> Option<std::net::SocketAddr> {
    value
        .get_ref()
        .parse()
        .map_err(|e| {
            issues.at(
                value,
                key,
                format!(
                    "{:?} is not an address: {e}; write e.g. 127.0.0.1:8080",
                    value.get_ref()
                ),
            )
        })
        .ok()
}

fn build(issues: &mut Issues<'_>, raw: RawConfig, path: &Path, base: &Path) -> Config {
    let store = store::build(issues, &raw.store, raw.ha.as_ref(), base);

    let default_schedule = raw
        .scheduler
        .schedule
        .as_ref()
        .map(|s| (s, parse_cron(s.get_ref())));
    if let Some((s, Err(e))) = &default_schedule {
        issues.at(s, "scheduler.schedule", e.clone());
    }
    let scheduler = build_scheduler(issues, &raw.scheduler);

    let mut providers = accounts::build_providers(issues, &raw.providers, base);
    let default = Arc::new(match &default_schedule {
        Some((_, Ok(s))) => s.clone(),
        _ => default_cron(),
    });
    let accounts = accounts::build_accounts(issues, &raw, &default, &mut providers, base);
    // purser's own alerts (about itself) follow their [rules] table, with
    // no override; the accounts' rules, with their currencies, are not theirs.
    let before = issues.list.len();
    let own = RawRules {
        calendar_expiring: raw.rules.calendar_expiring.clone(),
        ..RawRules::default()
    };
    let own_rules = build_rules(issues, &own, Currency::Cny);
    dedup_from(&mut issues.list, before);
    if accounts.is_empty() && issues.list.is_empty() {
        issues.nowhere(
            "accounts",
            "no [[accounts]] defined: purser would watch nothing",
        );
    }

    let outputs = build_outputs(issues, &raw.outputs, base);

    let metrics = raw
        .metrics
        .as_ref()
        .and_then(|m| operate::metrics(issues, m));
    let heartbeat = raw
        .heartbeat
        .as_ref()
        .and_then(|h| operate::heartbeat(issues, h, base));
    let http = raw.http.as_ref().and_then(|h| build_http(issues, h));
    let slack = raw
        .slack
        .as_ref()
        .and_then(|s| build_slack(issues, base, s, raw.http.is_some()));
    let discord = raw
        .discord
        .as_ref()
        .and_then(|d| build_discord(issues, base, d, raw.http.is_some()));
    let routes = build_routes(issues, &raw.routes, &raw.outputs);
    let telegram = raw
        .telegram
        .as_ref()
        .and_then(|t| build_telegram(issues, base, t, raw.http.is_some()));
    let people = build_people(issues, base, &raw.people);
    let approvals = build_approvals(issues, raw.approvals.as_ref(), &outputs);
    let dm_platforms: Vec<&str> = ["slack", "discord", "telegram"]
        .into_iter()
        .filter(|p| outputs.iter().any(|o| dm_platform(&o.kind) == Some(*p)))
        .collect();
    let oncall = oncall::build(
        issues,
        base,
        oncall::RawOnCall {
            calendar: raw.calendar.as_ref(),
            calendars: &raw.calendars,
            response: &raw.response,
            schedules: &raw.schedules,
            escalation: &raw.escalation,
            pagers: &raw.pagers,
        },
        &people,
        &dm_platforms,
    );
    let mut scheduler = scheduler;
    scheduler.timezone = zone(
        issues,
        raw.scheduler.timezone.as_ref(),
        oncall.calendar.zone,
    );

    Config {
        file: path.to_owned(),
        own_rules,
        store,
        scheduler,
        providers,
        accounts: Arc::new(shared(accounts)),
        outputs,
        routes,
        http,
        metrics,
        heartbeat,
        slack,
        discord,
        telegram,
        people,
        approvals,
        oncall,
    }
}

/// `[scheduler]`; its time zone is settled once the calendar is read.
fn build_scheduler(issues: &mut Issues<'_>, raw: &RawScheduler) -> SchedulerConfig {
    let scheduler = SchedulerConfig {
        jitter: duration(
            issues,
            "scheduler.jitter",
            raw.jitter.as_ref(),
            Duration::seconds(30),
        ),
        timeout: duration(
            issues,
            "scheduler.timeout",
            raw.timeout.as_ref(),
            Duration::seconds(30),
        ),
        shutdown_timeout: duration(
            issues,
            "scheduler.shutdown_timeout",
            raw.shutdown_timeout.as_ref(),
            Duration::seconds(10),
        ),
        // Settled once the calendar is read.
        timezone: chrono_tz::UTC,
    };
    for (key, value, raw_value) in [
        ("scheduler.timeout", scheduler.timeout, &raw.timeout),
        (
            "scheduler.shutdown_timeout",
            scheduler.shutdown_timeout,
            &raw.shutdown_timeout,
        ),
    ] {
        if value <= Duration::zero() {
            match raw_value {
                Some(v) => issues.at(v, key, "must be longer than zero"),
                None => issues.nowhere(key, "must be longer than zero"),
            }
        }
    }
    scheduler
}

/// `[[routes]]`: which alerts go to which outputs, every output named known.
fn build_routes(
    issues: &mut Issues<'_>,
    raw: &[RawRoute],
    outputs: &[RawOutput],
) -> Vec<crate::domain::routing::Route> {
    let mut routes = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let matchers = match &r.matchers {
            None => Ok(Vec::new()),
            Some(m) => crate::domain::command::Matcher::parse_all(m.get_ref())
                .map_err(|e| issues.at(m, format!("routes[{i}].matchers"), e)),
        };
        let names = r.outputs.get_ref();
        if names.is_empty() {
            issues.at(
                &r.outputs,
                format!("routes[{i}].outputs"),
                "name at least one output",
            );
        }
        for n in names {
            if !outputs.iter().any(|o| o.name.get_ref() == n) {
                let known: Vec<&str> = outputs.iter().map(|o| o.name.get_ref().as_str()).collect();
                issues.at(
                    &r.outputs,
                    format!("routes[{i}].outputs"),
                    format!("no output is named {n:?}; known: {}", known.join(", ")),
                );
            }
        }
        if let Ok(matchers) = matchers {
            routes.push(crate::domain::routing::Route {
                matchers,
                outputs: names.clone(),
                continue_matching: r.continue_matching,
            });
        }
    }
    routes
}

fn build_http(issues: &mut Issues<'_>, h: &RawHttp) -> Option<HttpConfig> {
    address(issues, "http.listen", &h.listen).map(|listen| HttpConfig {
        listen,
        max_connections: match &h.max_connections {
            None => 256,
            Some(n) => match usize::try_from(*n.get_ref()) {
                Ok(n) if (1..=100_000).contains(&n) => n,
                _ => {
                    issues.at(n, "http.max_connections", "give 1 to 100000 connections");
                    256
                }
            },
        },
    })
}

/// The zone cron schedules are read in: `[scheduler] timezone`, else the
/// calendar's.
fn zone(issues: &mut Issues<'_>, raw: Option<&S>, calendar: chrono_tz::Tz) -> chrono_tz::Tz {
    match raw {
        None => calendar,
        Some(z) => z.get_ref().trim().parse().unwrap_or_else(|_| {
            issues.at(
                z,
                "scheduler.timezone",
                format!(
                    "{:?} is not an IANA time zone; write e.g. Asia/Shanghai",
                    z.get_ref()
                ),
            );
            calendar
        }),
    }
}

fn default_cron() -> cron::Schedule {
    // Every five minutes; a constant expression, checked by a test.
    cron::Schedule::from_str("0 */5 * * * *")
        .unwrap_or_else(|_| unreachable!("constant cron expression"))
}

fn dedup_from(list: &mut Vec<ConfigIssue>, from: usize) {
    let mut seen: Vec<ConfigIssue> = list[..from].to_vec();
    let tail = list.split_off(from);
    for issue in tail {
        if !seen.contains(&issue) {
            seen.push(issue.clone());
            list.push(issue);
        }
    }
}

pub fn describe(config: &Config) -> String {
    let mut out = String::new();
    let by_provider: BTreeMap<&str, usize> =
        config.accounts.iter().fold(BTreeMap::new(), |mut m, a| {
            *m.entry(a.account.provider.as_str()).or_insert(0) += 1;
            m
        });
    out.push_str(&format!(
        "{}: ok — {} accounts, {} providers, {} outputs; store {}\n",
        config.file.display(),
        config.accounts.len(),
        config.providers.len(),
        config.outputs.len(),
        config.store.describe()
    ));
    for (p, n) in by_provider {
        out.push_str(&format!("  provider {p}: {n} accounts\n"));
    }
    let zone = config.scheduler.timezone;
    let schedules: BTreeMap<String, &cron::Schedule> = config
        .accounts
        .iter()
        .map(|a| (a.schedule.to_string(), &*a.schedule))
        .collect();
    for (text, schedule) in schedules {
        let next = schedule.upcoming(zone).next().map_or_else(
            || "never".to_owned(),
            |t| {
                format!(
                    "{} ({})",
                    t.format("%Y-%m-%d %H:%M %Z"),
                    t.with_timezone(&chrono::Utc).format("%H:%M UTC")
                )
            },
        );
        out.push_str(&format!(
            "  polls \"{text}\" in {}: next {next}\n",
            zone.name()
        ));
    }
    let o = &config.oncall;
    for r in &o.schedules {
        out.push_str(&format!(
            "  schedule {}: {} ({} hand-off)\n",
            r.name,
            r.people.join(", "),
            match r.handoff {
                crate::domain::oncall::Handoff::Daily => "daily".to_owned(),
                crate::domain::oncall::Handoff::Weekly(d) => format!("weekly, {d}"),
            }
        ));
    }
    for (severity, chain) in &o.chains {
        let steps: Vec<String> = chain
            .steps
            .iter()
            .map(|s| {
                let who: Vec<String> = s.notify.iter().map(|t| t.to_string()).collect();
                format!(
                    "{} {}",
                    crate::domain::duration::format(s.after),
                    who.join("+")
                )
            })
            .collect();
        out.push_str(&format!("  escalation {severity}: {}\n", steps.join(" → ")));
    }
    for (severity, (name, c)) in &o.severity_calendars {
        let days: Vec<&str> = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
            .into_iter()
            .zip(c.days)
            .filter_map(|(d, on)| on.then_some(d))
            .collect();
        out.push_str(&format!(
            "  {severity} on calendar {name}: {:02}:{:02}-{:02}:{:02} {} ({})\n",
            c.opens / 60,
            c.opens % 60,
            c.closes / 60,
            c.closes % 60,
            days.join(","),
            c.zone.name()
        ));
    }
    for p in &o.pagers {
        let kind = match p.kind {
            PagerKind::PagerDuty { .. } => "pagerduty",
            PagerKind::Opsgenie { .. } => "opsgenie",
        };
        out.push_str(&format!("  pager {}: {kind}\n", p.name));
    }
    if !o.schedules.is_empty() || !o.chains.is_empty() {
        let years: Vec<String> = o.calendar_years.iter().map(|y| y.to_string()).collect();
        out.push_str(&format!(
            "  calendar {}: holidays for {}\n",
            o.calendar.zone.name(),
            if years.is_empty() {
                "no year (weekends only)".to_owned()
            } else {
                years.join(", ")
            }
        ));
    }
    out
}

/// Each account behind a pointer of its own, in a list of exactly their
/// number: collected in place, the pointers would keep the room the specs
/// took (11 MB at 10,000 accounts).
fn shared(accounts: Vec<AccountSpec>) -> Vec<Arc<AccountSpec>> {
    let mut list: Vec<Arc<AccountSpec>> = accounts.into_iter().map(Arc::new).collect();
    list.shrink_to_fit();
    list
}
