//! The subcommands that read or change the store without the daemon:
//! status, the outbox, reports, the audit trail, balances entered by hand,
//! and moving the store.

use std::path::Path;
use std::process::ExitCode;

use purser::config::Config;
use purser::domain::model::BalanceEntry;
use purser::domain::money::Money;

use crate::{ExportFormat, Format, OutboxCommand};

/// `purser store copy`: the SQLite store into an empty PostgreSQL one.
pub(crate) async fn store_copy(from: &Path, to: &str, history: &str) -> anyhow::Result<String> {
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
pub(crate) async fn status(config: &Config) -> anyhow::Result<(String, bool)> {
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
pub(crate) async fn outbox(config: &Config, command: OutboxCommand) -> anyhow::Result<String> {
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
pub(crate) async fn sla_report(
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
pub(crate) async fn audit(
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

pub(crate) async fn set_balance(
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
