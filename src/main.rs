//! The `purser` command: parse the arguments, load the config, start.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use std::io::IsTerminal;

use clap::{Parser, Subcommand, ValueEnum};
use purser::config::Config;
use purser::domain::model::BalanceEntry;
use purser::domain::money::Money;
use purser::engine::clock::SystemClock;
use purser::startup::Application;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "purser",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("PURSER_COMMIT"), ")"),
    about = "Keeps prepaid cloud accounts from running dry."
)]
struct Cli {
    /// How log lines are written to standard error: text for people, or
    /// json, one object per line, for a log collector.
    #[arg(long, global = true, env = "PURSER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: poll on schedule, raise alerts, deliver notices.
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Poll every account once and print balances, runway, expiring resources and
    /// the alerts that fire. Exit status: 0 nothing fires, 1 something fires,
    /// 3 something of severity A fires, 2 the config is wrong.
    Check {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Balances entered by hand, for accounts whose cloud has no balance API
    /// (Azure operated by 21Vianet, Pay-in-advance).
    Balance {
        #[command(subcommand)]
        command: BalanceCommand,
    },
    /// Run one chat command as a person in the config's [[people]], from
    /// the terminal: `purser ask -c FILE --as ria approve R12`. Requests,
    /// approvals, balance entries and every query work as in chat.
    Ask {
        #[arg(long, short)]
        config: PathBuf,
        /// The person, by name, with their role.
        #[arg(long = "as")]
        person: String,
        /// The command as typed in chat.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Reports from what the store has kept.
    Report {
        #[command(subcommand)]
        command: ReportCommand,
    },
    /// The audit trail of requests, approvals, calls to clouds and receipts.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Who runs: on PostgreSQL, which replica leads, since when and until
    /// when its lease runs; on SQLite, whether a daemon holds the store.
    /// With what waits: open alerts and requests, notices not yet sent.
    /// Exit status: 0 someone leads (or runs), 1 nobody does, 2 it cannot tell.
    Status {
        #[arg(short, long, default_value = "purser.toml")]
        config: PathBuf,
    },
    /// Notices waiting to go out, and those an output never took.
    Outbox {
        #[command(subcommand)]
        command: OutboxCommand,
    },
    /// Asks a running purser's /healthz or /readyz (for a container's
    /// HEALTHCHECK, which has no curl): exit 0 when it answers 2xx, 1 when
    /// it answers otherwise or not within 5 s.
    Probe {
        /// Such as http://127.0.0.1:9477/healthz.
        #[arg(default_value = "http://127.0.0.1:9477/healthz")]
        url: String,
    },
    /// Moving the store.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Copies a SQLite store (purser stopped) into an empty PostgreSQL
    /// database: alerts, the outbox, requests, the audit log with its chain,
    /// escalations, pages, overrides, silences, entered balances and the
    /// history within --history; then verifies the chain there.
    Copy {
        /// The SQLite file.
        #[arg(long)]
        from: PathBuf,
        /// The database: postgres://user@host:5432/purser, or env:NAME or
        /// file:PATH holding that URL (so a password stays off the command
        /// line).
        #[arg(long)]
        to: String,
        /// Snapshots this far back are copied (each account's newest always).
        #[arg(long, default_value = "35d")]
        history: String,
    },
}

#[derive(Subcommand)]
enum OutboxCommand {
    /// Notices not delivered yet: waiting (with their next try) and failed
    /// (given up on after every attempt, with the output's last answer).
    List {
        #[arg(long, short)]
        config: PathBuf,
        /// Only those given up on.
        #[arg(long)]
        failed: bool,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Send failed notices again (with fresh attempts): the ones named by id,
    /// or all of them. The running daemon sends them within a minute.
    Retry {
        #[arg(long, short)]
        config: PathBuf,
        /// Outbox ids, as `outbox list` shows them.
        ids: Vec<i64>,
        /// Every failed notice.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
}

#[derive(Subcommand)]
enum ReportCommand {
    /// Per severity: alerts raised, acknowledged within their response
    /// target, late or missed, and the median and worst time to acknowledge.
    Sla {
        #[arg(long, short)]
        config: PathBuf,
        /// Alerts raised from: a date in the calendar's zone (2026-11-01), an
        /// RFC 3339 time, or a span back from now (30d).
        #[arg(long, default_value = "30d")]
        since: String,
        /// Alerts raised before this (same forms); default now.
        #[arg(long)]
        until: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain from the first entry to the last written. Exit
    /// status: 0 sound, 1 broken (says where and how), 2 no store or config.
    Verify {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Write the entries to stdout, for finance. The chain is verified
    /// first; a broken chain is still exported, with a warning and exit 1.
    Export {
        #[arg(long, short)]
        config: PathBuf,
        /// Entries at or after this time: 2026-11-01 (UTC) or RFC 3339.
        #[arg(long)]
        since: Option<String>,
        #[arg(long, value_enum, default_value_t = ExportFormat::Csv)]
        format: ExportFormat,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ExportFormat {
    Csv,
    Json,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a config file and say what it defines.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print a complete, commented config to start from.
    Example,
}

#[derive(Subcommand)]
enum BalanceCommand {
    /// Record the balance the portal shows. purser subtracts the cost the
    /// usage API reports after `--as-of` to estimate the balance until the next entry.
    Set {
        #[arg(long, short)]
        config: PathBuf,
        account: String,
        /// As the portal shows it: 12,345.67 or ¥12345.67.
        amount: String,
        /// When the portal showed it (RFC 3339); default now.
        #[arg(long)]
        as_of: Option<String>,
        /// Who read it off the portal; default $USER.
        #[arg(long)]
        by: Option<String>,
        /// The money of one service contract (its number), on any cloud:
        /// no API reads it.
        #[arg(long, conflicts_with = "unallocated")]
        contract: Option<String>,
        /// The money paid in but not yet allocated to a contract.
        #[arg(long)]
        unallocated: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
}

fn load(path: &Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(2)
    })
}

fn init_tracing(default: &str, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // Colour only for a person at a terminal, never into a file or journald.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let lines = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Whatever a server echoed into an error, no secret reaches the log.
        .with_writer(|| purser::secret::Redacting(std::io::stderr()));
    match format {
        LogFormat::Text => lines.with_ansi(colour).init(),
        // The event's fields at the top level, beside the span it happened
        // in (poll, deliver, execute) with that span's ids.
        LogFormat::Json => lines
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_format = cli.log_format;
    match cli.command {
        Command::Run { config } => {
            let mut signals = Signals::listen();
            init_tracing("info", log_format);
            let config = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let app =
                match Application::build(config, Arc::new(SystemClock), Default::default()).await {
                    Ok(app) => app,
                    Err(e) => {
                        eprintln!("purser: {e:#}");
                        return ExitCode::FAILURE;
                    }
                };
            let stop = async move {
                signals.next().await;
                // A second signal means now: what is under way resumes at
                // the next start.
                tokio::spawn(async move {
                    signals.next().await;
                    eprintln!(
                        "purser: a second signal; exiting at once (what was under way resumes at the next start)"
                    );
                    std::process::exit(130);
                });
            };
            match app.run_until_stopped(stop).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("purser: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Check { config, format } => {
            init_tracing("error", log_format);
            let config = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            // Hand-entered balances live in the store; read them if it exists,
            // without creating, migrating or writing anything.
            let store = match purser::database::for_reading(&config.store).await {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("purser: {e:#}");
                    return ExitCode::FAILURE;
                }
            };
            let entries = store
                .clone()
                .map(|s| s as Arc<dyn purser::ports::BalanceEntries>);
            // What the daemon's outputs never took is shown as delivery_failed.
            let mut undelivered: std::collections::HashMap<String, Vec<_>> = Default::default();
            if let Some(s) = &store {
                match s.failed_notices(None).await {
                    Ok(failed) => {
                        for f in failed {
                            undelivered
                                .entry(f.notice.account.clone())
                                .or_default()
                                .push(purser::domain::rules::Undelivered {
                                    output: f.output,
                                    rule: f.notice.rule,
                                    severity: f.notice.severity,
                                    error: f.error,
                                    failed_at: f.failed_at,
                                });
                        }
                    }
                    // A store from before failed notices were kept has none.
                    Err(e) => tracing::debug!(error = %e, "failed notices not read"),
                }
            }
            // Progress on a terminal only, and never into JSON's way.
            let progress = matches!(format, Format::Table) && std::io::stderr().is_terminal();
            let report = purser::check::run(
                &config,
                Arc::new(SystemClock),
                entries,
                &undelivered,
                progress.then_some(&purser::check::StderrProgress as &dyn purser::check::Progress),
            )
            .await;
            // Closed before exit, so no side file is left behind.
            if let Some(s) = store {
                s.close().await;
            }
            match format {
                Format::Table => print!("{}", purser::check::render_table(&report)),
                Format::Json => match serde_json::to_string_pretty(&report) {
                    Ok(json) => println!("{json}"),
                    Err(e) => {
                        eprintln!("purser: cannot encode the report: {e}");
                        return ExitCode::FAILURE;
                    }
                },
            }
            ExitCode::from(report.exit_code())
        }
        Command::Balance {
            command:
                BalanceCommand::Set {
                    config,
                    account,
                    amount,
                    as_of,
                    by,
                    contract,
                    unallocated,
                },
        } => {
            let config = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let part = match (contract, unallocated) {
                (Some(n), _) => match purser::domain::model::EnteredBucket::contract(&n) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        eprintln!("purser: --contract: {e}");
                        return ExitCode::from(2);
                    }
                },
                (None, true) => Some(purser::domain::model::EnteredBucket::Unallocated),
                (None, false) => None,
            };
            match set_balance(&config, &account, &amount, as_of.as_deref(), by, part).await {
                Ok(line) => {
                    println!("{line}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("purser: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Ask {
            config,
            person,
            command,
        } => {
            init_tracing("warn", log_format);
            let config = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match purser::startup::ask(&config, &person, &command.join(" ")).await {
                Ok((done, text)) => {
                    println!("{text}");
                    if done {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    }
                }
                Err(e) => {
                    eprintln!("purser: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Audit { command } => {
            let (config, export) = match command {
                AuditCommand::Verify { config } => (config, None),
                AuditCommand::Export {
                    config,
                    since,
                    format,
                } => (config, Some((since, format))),
            };
            let config = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match audit(&config, export).await {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("purser: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Report {
            command:
                ReportCommand::Sla {
                    config,
                    since,
                    until,
                    format,
                },
        } => {
            let config = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            printed(sla_report(&config, &since, until.as_deref(), format).await)
        }
        Command::Status { config } => {
            init_tracing("error", log_format);
            let config = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match status(&config).await {
                Ok((text, leads)) => {
                    print!("{text}");
                    if leads {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => {
                    eprintln!("purser: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Store {
            command: StoreCommand::Copy { from, to, history },
        } => {
            init_tracing("warn", log_format);
            printed(store_copy(&from, &to, &history).await)
        }
        Command::Outbox { command } => {
            let path = match &command {
                OutboxCommand::List { config, .. } | OutboxCommand::Retry { config, .. } => config,
            };
            let config = match load(path) {
                Ok(c) => c,
                Err(code) => return code,
            };
            printed(outbox(&config, command).await)
        }
        Command::Probe { url } => {
            let answer = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(5))
                .build()
                .map_err(|e| e.to_string())
                .map(|c| c.get(&url).send());
            let answer = match answer {
                Ok(sent) => sent.await.map_err(|e| e.without_url().to_string()),
                Err(e) => Err(e),
            };
            match answer {
                Ok(r) if r.status().is_success() => ExitCode::SUCCESS,
                Ok(r) => {
                    let status = r.status();
                    let body = r.text().await.unwrap_or_default();
                    eprintln!("purser probe: {url} answered {status}\n{body}");
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("purser probe: {url}: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Config {
            command: ConfigCommand::Example,
        } => {
            print!("{}", include_str!("../config/example.toml"));
            ExitCode::SUCCESS
        }
        Command::Config {
            command: ConfigCommand::Check { config },
        } => {
            // Warnings (a secret file others can read) are part of the check.
            init_tracing("warn", log_format);
            match load(&config) {
                Ok(c) => {
                    print!("{}", purser::config::describe(&c));
                    ExitCode::SUCCESS
                }
                Err(code) => code,
            }
        }
    }
}

/// A command's text on stdout (exit 0), or its error (exit 2).
fn printed(result: anyhow::Result<String>) -> ExitCode {
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("purser: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// `purser store copy`: the SQLite store into an empty PostgreSQL one.
async fn store_copy(from: &Path, to: &str, history: &str) -> anyhow::Result<String> {
    use anyhow::{Context, bail};
    use purser::adapters::{copy, postgres::PgStore, sqlite::SqliteStore};
    use purser::ports::Requests;
    let history = purser::domain::duration::parse(history)
        .map_err(anyhow::Error::msg)
        .context("--history")?;
    if !from.exists() {
        bail!("no store at {}", from.display());
    }
    if let Some(who) = purser::adapters::sqlite::lock::holder(from)? {
        bail!(
            "a purser is running on {} ({who}): stop it first, so that nothing is written after the copy",
            from.display()
        );
    }
    let url = if to.starts_with("env:") || to.starts_with("file:") {
        purser::secret::Secret::resolve(to, Path::new("."))
            .map_err(anyhow::Error::msg)
            .context("--to")?
    } else {
        purser::secret::Secret::from_value(to)
    };
    let source = SqliteStore::open(from).await?;
    let target = PgStore::open(url.expose(), None, 2).await?;
    let copied = copy::sqlite_to_postgres(&source, &target, chrono::Utc::now() - history).await;
    let head = source.audit_head().await;
    source.close().await;
    let copied = match copied {
        Ok(c) => c,
        Err(e) => {
            target.close().await;
            return Err(e.into());
        }
    };
    let log = target.audit_log(None).await?;
    let target_head = target.audit_head().await?;
    target.close().await;
    let verified =
        purser::domain::audit::verify(&log, target_head.as_ref().map(|(n, h)| (*n, h.as_str())))
            .map_err(|e| anyhow::anyhow!("the audit chain does not verify on the target: {e}"))?;
    if target_head != head? {
        bail!("the audit log's head on the target differs from the source's");
    }
    let mut out = format!("Copied {} into the PostgreSQL store:\n", from.display());
    for (table, n) in copied {
        out.push_str(&format!("  {table:<18} {n:>8}\n"));
    }
    if verified.entries == 0 {
        out.push_str("The audit log was empty, and is there.\n");
    } else {
        out.push_str(&format!(
            "The audit chain verifies there: {} entries, last hash {}.\n",
            verified.entries, verified.head
        ));
    }
    out.push_str(&format!(
        "Point [store] url at it and start purser; keep {} until you are sure.\n",
        from.display()
    ));
    Ok(out)
}

/// What `purser status` says, and whether anyone leads (or runs).
async fn status(config: &Config) -> anyhow::Result<(String, bool)> {
    use purser::config::Backend;
    let now = chrono::Utc::now();
    let mut out = format!("store: {}\n", config.store.describe());
    let (store, leads) = match &config.store.backend {
        Backend::Sqlite { path } => {
            let held = purser::adapters::sqlite::lock::holder(path)?;
            match &held {
                Some(who) => out.push_str(&format!("running: {who}\n")),
                None => out.push_str("running: no daemon holds the store\n"),
            }
            let Some(store) = purser::database::for_reading(&config.store).await? else {
                out.push_str("purser has not run with this config yet\n");
                return Ok((out, false));
            };
            (store, held.is_some())
        }
        Backend::Postgres(pg) => {
            let store = purser::database::postgres(pg).await?;
            out.push_str(&format!(
                "connection: {}\n",
                if store.encrypted().await? {
                    "TLS"
                } else {
                    "unencrypted"
                }
            ));
            let leads = match store.leader().await? {
                Some(l) if l.expires_at > now => {
                    out.push_str(&format!(
                        "leader: {} (token {}), leading since {}; lease until {} (in {})\n",
                        l.holder,
                        l.token,
                        l.since.to_rfc3339(),
                        l.expires_at.to_rfc3339(),
                        purser::domain::duration::format(l.expires_at - now)
                    ));
                    true
                }
                Some(l) => {
                    out.push_str(&format!(
                        "leader: none: the lease of {} ran out at {} ({} ago); a standby takes over within a third of the lease\n",
                        l.holder,
                        l.expires_at.to_rfc3339(),
                        purser::domain::duration::format(now - l.expires_at)
                    ));
                    false
                }
                None => {
                    out.push_str("leader: none: no replica has led yet\n");
                    false
                }
            };
            (
                std::sync::Arc::new(store) as std::sync::Arc<dyn purser::database::Database>,
                leads,
            )
        }
    };
    let alerts = store.all_open_alerts().await?;
    let requests = store.requests(true, 1000).await?;
    let outbox = store.undelivered(false).await?;
    let failed = outbox.iter().filter(|r| r.state == "failed").count();
    out.push_str(&format!(
        "open alerts: {}\nopen requests: {}\nnotices waiting: {}, failed: {}\n",
        alerts.len(),
        requests.len(),
        outbox.len() - failed,
        failed
    ));
    store.close().await;
    Ok((out, leads))
}

/// `outbox list` and `outbox retry`, against the store (the daemon may be
/// running: SQLite takes both).
async fn outbox(config: &Config, command: OutboxCommand) -> anyhow::Result<String> {
    use anyhow::bail;
    let store = purser::database::existing(&config.store).await?;
    let text = match command {
        OutboxCommand::List { failed, format, .. } => {
            let rows = store.undelivered(failed).await?;
            match format {
                Format::Json => serde_json::to_string_pretty(&rows)? + "\n",
                Format::Table => {
                    let mut out = format!(
                        "{:>6}  {:<14} {:<7} {:>8}  {:<20} {:<16} {:<16} {}\n",
                        "ID",
                        "OUTPUT",
                        "STATE",
                        "ATTEMPTS",
                        "WHEN",
                        "ACCOUNT",
                        "RULE",
                        "LAST ERROR"
                    );
                    for r in &rows {
                        out.push_str(&format!(
                            "{:>6}  {:<14} {:<7} {:>8}  {:<20} {:<16} {:<16} {}\n",
                            r.id,
                            r.output,
                            r.state,
                            r.attempts,
                            r.at.format("%Y-%m-%d %H:%M UTC"),
                            r.account,
                            format!("{} {}", r.rule, r.kind),
                            r.error.as_deref().unwrap_or("-")
                        ));
                    }
                    if rows.is_empty() {
                        out = if failed {
                            "No failed notices.\n".to_owned()
                        } else {
                            "Nothing waiting to be sent.\n".to_owned()
                        };
                    }
                    out
                }
            }
        }
        OutboxCommand::Retry { ids, all, .. } => {
            if ids.is_empty() && !all {
                bail!(
                    "name the notices to send again (ids from `purser outbox list --failed`), or give --all"
                );
            }
            let n = store
                .retry_failed((!all).then_some(ids.as_slice()), chrono::Utc::now())
                .await?;
            match n {
                0 => "No failed notice matched; nothing queued.\n".to_owned(),
                n => format!(
                    "{n} failed notice(s) queued again, with fresh attempts; a running purser sends them within a minute.\n"
                ),
            }
        }
    };
    store.close().await;
    Ok(text)
}

/// The SLA report over `since..until`, as a table or JSON.
async fn sla_report(
    config: &Config,
    since: &str,
    until: Option<&str>,
    format: Format,
) -> anyhow::Result<String> {
    use anyhow::{Context, bail};
    let settings = purser::startup::escalation_settings(config);
    let zone = settings.zone();
    let now = chrono::Utc::now();
    let since = purser::report::parse_when(since, zone, now)
        .map_err(anyhow::Error::msg)
        .context("--since")?;
    let until = match until {
        Some(t) => purser::report::parse_when(t, zone, now)
            .map_err(anyhow::Error::msg)
            .context("--until")?,
        None => now,
    };
    if until <= since {
        bail!("--until must come after --since");
    }
    let Some(store) = purser::database::for_reading(&config.store).await? else {
        bail!(
            "no store at {}: purser has not run with this config",
            config.store.describe()
        );
    };
    let escalations = store.escalations_since(since).await;
    store.close().await;
    let report = purser::report::sla(&escalations?, &settings, since, until, now);
    Ok(match format {
        Format::Table => purser::report::render(&report, zone),
        Format::Json => serde_json::to_string_pretty(&report)? + "\n",
    })
}

/// Verifies the chain; with `export`, writes the entries since a time.
async fn audit(
    config: &Config,
    export: Option<(Option<String>, ExportFormat)>,
) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    use purser::domain::audit;
    let since = match export.as_ref().and_then(|(s, _)| s.as_deref()) {
        None => None,
        Some(t) => Some(
            chrono::DateTime::parse_from_rfc3339(t)
                .map(|d| d.with_timezone(&chrono::Utc))
                .or_else(|_| {
                    chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d")
                        .map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
                })
                .with_context(|| {
                    format!(
                        "--since {t:?} is neither a date such as 2026-11-01 nor an RFC 3339 time"
                    )
                })?,
        ),
    };
    let store = purser::database::existing(&config.store).await?;
    let log = store.audit_log(None).await?;
    let head = store.audit_head().await?;
    let verdict = audit::verify(&log, head.as_ref().map(|(n, h)| (*n, h.as_str())));
    let Some((_, format)) = export else {
        return Ok(match verdict {
            Ok(v) => {
                println!(
                    "The audit log is sound: {} entries, last hash {}.",
                    v.entries, v.head
                );
                ExitCode::SUCCESS
            }
            Err(b) => {
                println!("The audit log is BROKEN: {b}.");
                ExitCode::from(1)
            }
        });
    };
    let entries: Vec<_> = log
        .into_iter()
        .filter(|e| since.is_none_or(|t| e.at >= t))
        .collect();
    match format {
        ExportFormat::Csv => print!("{}", audit::to_csv(&entries)),
        ExportFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&audit::to_json(&entries))?
        ),
    }
    Ok(match verdict {
        Ok(_) => ExitCode::SUCCESS,
        Err(b) => {
            eprintln!(
                "purser: warning: the audit log is BROKEN ({b}); these entries cannot be trusted"
            );
            ExitCode::from(1)
        }
    })
}

async fn set_balance(
    config: &Config,
    account: &str,
    amount: &str,
    as_of: Option<&str>,
    by: Option<String>,
    part: Option<purser::domain::model::EnteredBucket>,
) -> anyhow::Result<String> {
    use anyhow::{Context, bail};
    let Some(a) = config
        .accounts
        .iter()
        .find(|a| a.account.id.as_str() == account)
    else {
        let known: Vec<&str> = config
            .accounts
            .iter()
            .map(|a| a.account.id.as_str())
            .collect();
        bail!(
            "no account {account:?} in the config; known: {}",
            known.join(", ")
        );
    };
    if part.is_none() && !config.entered_balance_accounts().contains(&a.account.id) {
        bail!(
            "{account}'s cloud reports its own balance; `balance set` is for azure_china accounts, or a contract's money with --contract NUMBER or --unallocated"
        );
    }
    // A prepaid balance is never below zero: a used-up one is 0.
    let amount =
        Money::parse(amount, a.currency).with_context(|| format!("the amount for {account}"))?;
    if amount.currency() != a.currency {
        bail!(
            "{account} is kept in {}, not {}",
            a.currency,
            amount.currency()
        );
    }
    let now = chrono::Utc::now();
    let as_of = match as_of {
        Some(t) => chrono::DateTime::parse_from_rfc3339(t)
            .with_context(|| {
                format!("--as-of {t:?} is not an RFC 3339 time such as 2026-11-23T09:30:00+08:00")
            })?
            .with_timezone(&chrono::Utc),
        None => now,
    };
    if as_of > now {
        bail!("--as-of is in the future");
    }
    if now - as_of > chrono::Duration::days(366) {
        bail!(
            "--as-of {} is more than a year ago: a balance read then says nothing of today's; read the portal again",
            as_of.format("%Y-%m-%d")
        );
    }
    let entered_by = by
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "unknown".into());
    let store = purser::database::existing_or_new(&config.store).await?;
    let entry = BalanceEntry {
        bucket: part,
        amount,
        as_of,
        entered_by,
        entered_at: now,
    };
    store.record_balance_entry(&a.account.id, &entry).await?;
    store.close().await;
    Ok(format!(
        "{account}: {} {} as of {} recorded (by {})",
        entry
            .bucket
            .as_ref()
            .map_or("balance".to_owned(), |b| b.describe()),
        entry.amount,
        entry.as_of.format("%Y-%m-%d %H:%M UTC"),
        entry.entered_by
    ))
}

/// Completes on SIGINT or SIGTERM.
/// SIGINT and SIGTERM, listened for from the moment this is made (a signal
/// that comes while purser starts is a stop, not a kill).
struct Signals {
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn listen() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Signals {
                int: signal(SignalKind::interrupt()).ok(),
                term: signal(SignalKind::terminate()).ok(),
            }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    /// The next one.
    async fn next(&mut self) {
        #[cfg(unix)]
        {
            let int = async {
                match self.int.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let term = async {
                match self.term.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = int => {}
                _ = term => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
