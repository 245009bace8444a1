//! The `purser` command: parse the arguments, load the config, start.

mod stored;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use std::io::IsTerminal;

use clap::{Parser, Subcommand, ValueEnum};
use purser::config::Config;
use purser::engine::clock::SystemClock;
use purser::startup::Application;
use tracing_subscriber::EnvFilter;

use stored::{audit, outbox, set_balance, sla_report, status, store_copy};

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

fn main() -> ExitCode {
    allocator::limit_arenas();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(allocator::give_back_at_rest)
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("purser: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(cli())
}

/// glibc's allocator, told how to serve a daemon that rests most of the
/// time: it keeps what was freed for reuse, which for a resting daemon is
/// megabytes held for nothing.
///
/// The one `unsafe` in purser (`architecture::unsafe_code_is_only_the_allocator_tunables`).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
mod allocator {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Instant;

    /// glibc gives each thread that finds the heap busy an arena of its own,
    /// up to eight per core, each keeping what was freed in it. Two per
    /// core serve purser's threads (a runtime worker per core, four SQLite
    /// connections): with one per core, threads waited on each other's
    /// arena, and a cycle of 10,000 accounts cost 10 % more CPU; with
    /// eight, the daemon rested 1 MiB larger. `MALLOC_ARENA_MAX`, when
    /// set, still decides.
    pub fn limit_arenas() {
        if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            let arenas = i32::try_from(cores.saturating_mul(2)).unwrap_or(i32::MAX);
            // SAFETY: called first in main, before any other thread exists;
            // mallopt only sets one of glibc's tunables.
            unsafe {
                libc::mallopt(libc::M_ARENA_MAX, arenas);
            }
        }
    }

    /// At most this often, in milliseconds: a trim walks every arena's
    /// free lists.
    const EVERY_MS: u64 = 10_000;

    /// Hands back to the system the whole pages the arenas hold free, when a
    /// worker of the runtime runs out of work: after a poll, the daemon
    /// otherwise holds the most that poll needed until the next one (a
    /// poll every 15 minutes rests that long), up to 2.4 MiB at 100
    /// accounts. The walk holds one arena's lock at a time; on a heap of
    /// hundreds of MiB cut into many small free blocks it can take a
    /// tenth of a second.
    pub fn give_back_at_rest() {
        static START: OnceLock<Instant> = OnceLock::new();
        static LAST: AtomicU64 = AtomicU64::new(0);
        let now = u64::try_from(START.get_or_init(Instant::now).elapsed().as_millis())
            .unwrap_or(u64::MAX);
        let last = LAST.load(Ordering::Relaxed);
        if now.saturating_sub(last) < EVERY_MS
            || LAST
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        // SAFETY: malloc_trim is thread-safe (it takes each arena's lock)
        // and only releases pages no allocation holds.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod allocator {
    pub fn limit_arenas() {}
    pub fn give_back_at_rest() {}
}

async fn cli() -> ExitCode {
    let cli = Cli::parse();
    let log_format = cli.log_format;
    match cli.command {
        Command::Run { config } => run(config, log_format).await,
        Command::Check { config, format } => check(config, format, log_format).await,
        Command::Balance { command } => balance(command).await,
        Command::Ask {
            config,
            person,
            command,
        } => ask(config, person, command, log_format).await,
        Command::Audit { command } => audit_command(command).await,
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
        Command::Status { config } => status_command(config, log_format).await,
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
        Command::Probe { url } => probe(url).await,
        Command::Config {
            command: ConfigCommand::Example,
        } => {
            print!("{}", include_str!("../../../config/example.toml"));
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

/// `purser run`: the daemon, until a signal stops it (a second one stops it at once).
async fn run(config: PathBuf, log_format: LogFormat) -> ExitCode {
    let mut signals = Signals::listen();
    init_tracing("info", log_format);
    let config = match load(&config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let app = match Application::build(config, Arc::new(SystemClock), Default::default()).await {
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

/// `purser check`: one poll of every account, and what fires.
async fn check(config: PathBuf, format: Format, log_format: LogFormat) -> ExitCode {
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

/// `purser balance set`: a balance entered by hand.
async fn balance(command: BalanceCommand) -> ExitCode {
    let BalanceCommand::Set {
        config,
        account,
        amount,
        as_of,
        by,
        contract,
        unallocated,
    } = command;
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

/// `purser ask`: one chat command, run as a person from the terminal.
async fn ask(
    config: PathBuf,
    person: String,
    command: Vec<String>,
    log_format: LogFormat,
) -> ExitCode {
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

/// `purser audit`: the chain verified, or exported.
async fn audit_command(command: AuditCommand) -> ExitCode {
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

/// `purser status`: who leads, and what waits.
async fn status_command(config: PathBuf, log_format: LogFormat) -> ExitCode {
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

/// `purser probe`: asks a running purser's health endpoint.
async fn probe(url: String) -> ExitCode {
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
