//! The `purser` command: parse the arguments, load the config, start.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use purser::config::Config;
use purser::engine::clock::SystemClock;
use purser::startup::Application;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "purser",
    version,
    about = "Keeps prepaid cloud accounts from running dry."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a config file and say what it defines.
    Check {
        #[arg(long, short)]
        config: PathBuf,
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

fn init_tracing(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config } => {
            init_tracing("info");
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
            match app.run_until_stopped(shutdown_signal()).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("purser: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Check { config, format } => {
            init_tracing("error");
            let config = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let report = purser::check::run(&config, Arc::new(SystemClock)).await;
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
        Command::Config {
            command: ConfigCommand::Check { config },
        } => match load(&config) {
            Ok(c) => {
                print!("{}", purser::config::describe(&c));
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
    }
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
