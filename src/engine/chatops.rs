//! What purser answers in chat, whichever platform asked: the command is
//! parsed once, the asker looked up and authorized, and the answer read from
//! the store. Platform adapters only carry text in and render the reply.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use crate::config::AccountConfig;
use crate::domain::alert::Alert;
use crate::domain::calendar::Calendar;
use crate::domain::command::{self, AlertRef, Command, Role, Target, Verb, When};
use crate::domain::forecast::{self, AccountView};
use crate::domain::model::{AccountId, ExternalId};
use crate::domain::model::{BalanceEntry, RenewalMode, Snapshot};
use crate::domain::oncall::{MAX_OVERRIDE_DAYS, Override, Rotation};
use crate::domain::people::{Directory, Person};
use crate::domain::request::{Action, Request, RequestId, State, Verdict, Via};
use crate::domain::{duration, silence};
use crate::engine::alert_view::{Button, On};
use crate::engine::approvals::{self, Approvals, Cancelled, Decided, Opened, Resolved, Vote};
use crate::engine::charts;
pub use crate::engine::charts::RunwayChart;
use crate::engine::request_view::Choice;
use crate::engine::{escalator, oncall_view};
use crate::ports::{
    AckOutcome, BalanceEntries, Clock, EndSilenceOutcome, Escalations, MessageRef, MessageRefs,
    NewSilence, Store, StoreError,
};

/// Someone on a platform: the platform's key and the user's id there.
#[derive(Debug, Clone)]
pub struct Asker {
    pub platform: String,
    pub user: String,
}

/// An answer, as plain lines that read well on a phone. Adapters decide how
/// to set them (a code block, a table, an embed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub kind: ReplyKind,
    pub title: String,
    pub lines: Vec<String>,
    /// A picture of the answer, for platforms that show images.
    pub chart: Option<RunwayChart>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    /// The command ran.
    Done,
    /// It did not parse: the lines hold the usage.
    Usage,
    /// Not allowed, or not known: nothing was read or changed.
    Refused,
    /// It ran into a problem on purser's side.
    Failed,
}

impl ReplyKind {
    /// A leading mark for platforms that show Unicode emoji as they are.
    pub fn icon(self) -> &'static str {
        match self {
            ReplyKind::Done => "",
            ReplyKind::Usage => "❔ ",
            ReplyKind::Refused => "⛔ ",
            ReplyKind::Failed => "⚠️ ",
        }
    }
}

impl Reply {
    /// The reply with every secret purser knows taken out (a cloud's or a
    /// platform's echoed error can carry one into a line).
    fn redacted(mut self) -> Reply {
        self.title = crate::secret::redact(&self.title).into_owned();
        for l in &mut self.lines {
            *l = crate::secret::redact(l).into_owned();
        }
        self
    }

    fn done(title: impl Into<String>, lines: Vec<String>) -> Reply {
        Reply {
            kind: ReplyKind::Done,
            title: title.into(),
            lines,
            chart: None,
        }
    }

    fn refused(title: impl Into<String>) -> Reply {
        Reply {
            kind: ReplyKind::Refused,
            title: title.into(),
            lines: Vec::new(),
            chart: None,
        }
    }

    pub fn failed(title: impl Into<String>) -> Reply {
        Reply {
            kind: ReplyKind::Failed,
            title: title.into(),
            lines: Vec::new(),
            chart: None,
        }
    }

    /// Title and lines as one text.
    pub fn text(&self) -> String {
        let mut s = self.title.clone();
        for l in &self.lines {
            s.push('\n');
            s.push_str(l);
        }
        s
    }
}

/// What a button press did: the answer for the presser, and whether the
/// alert changed (its message is then edited for everyone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pressed {
    pub reply: Reply,
    pub changed: bool,
}

/// What a pressed button acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pick {
    /// The alert with this fingerprint.
    Alert(String),
    /// Every alert the message shows.
    Message(MessageRef),
}

impl Pick {
    /// What a button's payload names, pressed on the message `at`.
    pub fn of(on: On<'_>, at: MessageRef) -> Pick {
        match on {
            On::Alert(fp) => Pick::Alert(fp.to_owned()),
            On::Message => Pick::Message(at),
        }
    }
}

pub struct ChatOps {
    pub store: Arc<dyn Store>,
    /// Which alerts each chat message shows, for buttons that act on all.
    pub refs: Arc<dyn MessageRefs>,
    pub entries: Arc<dyn BalanceEntries>,
    pub accounts: Arc<Vec<AccountConfig>>,
    /// Accounts whose balance is entered by hand (`setbalance`).
    pub entered: std::collections::HashSet<crate::domain::model::AccountId>,
    pub directory: Directory,
    pub clock: Arc<dyn Clock>,
    /// Where acknowledgements and silences are announced: the outputs that
    /// heard of the alert.
    pub routing: crate::domain::routing::Routing,
    /// Told when an acknowledgement queued notices, to wake the dispatcher.
    pub outbox: Option<OutboxSignal>,
    /// Requests: asking, deciding, cancelling.
    pub approvals: Arc<Approvals>,
    /// Schedules, chains and the calendar, for `oncall` and `escalations`.
    pub oncall: Arc<crate::engine::escalator::Settings>,
    /// Escalations and the overrides made in chat.
    pub escalations: Arc<dyn Escalations>,
}

/// How a writer of outbox rows wakes the dispatcher (and keeps the activity
/// count tests wait on honest).
#[derive(Clone)]
pub struct OutboxSignal {
    pub activity: crate::engine::activity::Activity,
    pub written: Arc<tokio::sync::Notify>,
}

impl OutboxSignal {
    pub fn wrote(&self) {
        // Counted before the wake, as the scheduler does.
        self.activity.update(|s| s.notices_written += 1);
        self.written.notify_one();
    }
}

impl ChatOps {
    /// Runs `text` (what followed the platform's trigger) for `asker`.
    pub async fn handle(&self, asker: &Asker, text: &str) -> Reply {
        self.handle_text(asker, text).await.redacted()
    }

    async fn handle_text(&self, asker: &Asker, text: &str) -> Reply {
        // Unknown people learn nothing, not even whether the command was valid.
        let Some(person) = self.directory.lookup(&asker.platform, &asker.user) else {
            return Reply::refused(format!(
                "Sorry, purser does not know you. Ask an admin to add your {} id ({}) to the people in purser's config.",
                asker.platform, asker.user
            ));
        };
        let command = match command::parse(text) {
            Ok(c) => c,
            Err(e) => {
                return Reply {
                    kind: ReplyKind::Usage,
                    title: e.message.clone(),
                    lines: vec![match e.verb {
                        Some(v) => format!("usage: {}", v.usage()),
                        None => "try: help".to_owned(),
                    }],
                    chart: None,
                };
            }
        };
        let verb = command.verb();
        if let Some(no) = role_refusal(person, verb) {
            return no;
        }
        let now = self.clock.now();
        let via = Via {
            platform: asker.platform.clone(),
            message: None,
        };
        match self.run(person, command, via, now).await {
            Ok(reply) => reply,
            Err(e) => {
                tracing::error!(error = %e, command = verb.name(), "chat command failed");
                Reply::failed("purser could not read its store; try again in a minute.")
            }
        }
    }

    /// Runs a button pressed on an alert message, on the alert it names or
    /// on every alert of the message, as the person pressing it.
    pub async fn press(&self, asker: &Asker, button: Button, pick: &Pick) -> Pressed {
        let pressed = self.press_button(asker, button, pick).await;
        Pressed {
            reply: pressed.reply.redacted(),
            changed: pressed.changed,
        }
    }

    async fn press_button(&self, asker: &Asker, button: Button, pick: &Pick) -> Pressed {
        let unchanged = |reply| Pressed {
            reply,
            changed: false,
        };
        let trouble = |e: StoreError| {
            tracing::error!(error = %e, "a button press could not read the store");
            unchanged(Reply::failed(
                "purser could not read its store; try again in a minute.",
            ))
        };
        // Strangers learn nothing about alerts, not even whether one is open.
        let Some(person) = self.directory.lookup(&asker.platform, &asker.user) else {
            return unchanged(self.handle(asker, "whoami").await);
        };
        let open = match self.store.all_open_alerts().await {
            Ok(open) => open,
            Err(e) => return trouble(e),
        };
        let chosen: Vec<Alert> = match pick {
            Pick::Alert(fp) => open.into_iter().filter(|a| a.fingerprint == *fp).collect(),
            Pick::Message(at) => match self.refs.alerts_in(at).await {
                Ok(fps) => open
                    .into_iter()
                    .filter(|a| fps.contains(&a.fingerprint))
                    .collect(),
                Err(e) => return trouble(e),
            },
        };
        if chosen.is_empty() {
            return unchanged(Reply::refused(match pick {
                Pick::Alert(_) => "That alert is no longer open.",
                Pick::Message(_) => "None of this message's alerts is still open.",
            }));
        }
        match button {
            Button::Ack => {
                if let Some(no) = role_refusal(person, Verb::Ack) {
                    return unchanged(no);
                }
                let now = self.clock.now();
                let mut replies = Vec::new();
                for a in &chosen {
                    let acked = match AlertRef::parse(&a.fingerprint) {
                        Ok(r) => self.ack(person, &r, now).await,
                        Err(e) => return unchanged(Reply::failed(e)),
                    };
                    match acked {
                        Ok(r) => replies.push(r),
                        Err(e) => return trouble(e),
                    }
                }
                let changed = replies.iter().filter(|(_, c)| *c).count();
                match replies.as_slice() {
                    [(reply, changed)] => Pressed {
                        reply: reply.clone(),
                        changed: *changed,
                    },
                    _ => {
                        let n = replies.len();
                        let title = match changed {
                            0 => format!("All {n} alerts were already acknowledged."),
                            c if c == n => format!(
                                "Acknowledged {n} alerts: they will not repeat until they resolve."
                            ),
                            c => format!(
                                "Acknowledged {c} of {n} alerts (the others were already): they will not repeat until they resolve."
                            ),
                        };
                        Pressed {
                            reply: Reply::done(
                                title,
                                chosen.iter().map(|a| a.summary.clone()).collect(),
                            ),
                            changed: changed > 0,
                        }
                    }
                }
            }
            Button::Silence1h | Button::Silence24h => {
                let d = if button == Button::Silence1h {
                    "1h"
                } else {
                    "24h"
                };
                // One alert: exactly it. A message's alerts: each rule of
                // the account they share, so that the resources of the same
                // kind that fire next stay quiet as well.
                let mut matchers: Vec<String> = Vec::new();
                for a in &chosen {
                    let mut m = format!("account={},rule={}", a.key.account, a.key.rule);
                    if matches!(pick, Pick::Alert(_)) && !a.key.resource.is_empty() {
                        m.push_str(&format!(",resource={}", a.key.resource));
                    }
                    if !matchers.contains(&m) {
                        matchers.push(m);
                    }
                }
                let mut replies = Vec::new();
                for m in &matchers {
                    replies.push(
                        self.handle(asker, &format!("silence {m} {d} silenced from the alert"))
                            .await,
                    );
                }
                let changed = replies.iter().any(|r| r.kind == ReplyKind::Done);
                let reply = match replies.as_slice() {
                    [one] => one.clone(),
                    _ => Reply {
                        kind: replies
                            .iter()
                            .map(|r| r.kind)
                            .find(|k| *k != ReplyKind::Done)
                            .unwrap_or(ReplyKind::Done),
                        title: format!("{} silences:", replies.len()),
                        lines: replies.iter().map(|r| r.title.clone()).collect(),
                        chart: None,
                    },
                };
                Pressed { reply, changed }
            }
            Button::TopUp | Button::Renew | Button::PayOrder => {
                if person.role < command::Role::Requester {
                    return unchanged(Reply::refused(format!(
                        "Starting a request needs the requester role; you are {}.",
                        person.role
                    )));
                }
                let account = &chosen[0].key.account;
                let fits = |a: &&Alert| Button::remedy(a.key.rule) == Some(button);
                let ids: Vec<ExternalId> = chosen
                    .iter()
                    .filter(fits)
                    .filter_map(|a| ExternalId::parse(&a.key.resource).ok())
                    .collect();
                // How much to pay in is a person's call: the button says how to ask.
                let action = match button {
                    Button::Renew if !ids.is_empty() => Action::Renew {
                        resources: ids,
                        months: 1,
                    },
                    Button::PayOrder if !ids.is_empty() => Action::Pay {
                        orders: ids,
                        coupons: Vec::new(),
                        discount: None,
                        offered: Vec::new(),
                    },
                    _ => {
                        return unchanged(Reply {
                            kind: ReplyKind::Usage,
                            title: format!(
                                "How much should be paid into {account}? Ask with: topup {account} <amount> [method] [reason]"
                            ),
                            lines: vec![
                                "Others approve it; then purser follows the payment until the money arrives.".into(),
                            ],
                            chart: None,
                        });
                    }
                };
                let via = Via {
                    platform: asker.platform.clone(),
                    message: match pick {
                        Pick::Message(at) => Some(format!("{}/{}", at.channel, at.message)),
                        Pick::Alert(_) => None,
                    },
                };
                let reason = Some("asked from the alert".to_owned());
                let now = self.clock.now();
                match self.ask(person, None, action, reason, via, now).await {
                    Ok(reply) => unchanged(reply),
                    Err(e) => trouble(e),
                }
            }
        }
    }

    /// Runs Approve or Deny pressed on request `id`'s card (the message
    /// `at`), as the person pressing it: the same as typing `approve R12`,
    /// recorded as coming from that message. A second press by the same
    /// person counts once; an approval that needs a code says how to give it.
    pub async fn choose(
        &self,
        asker: &Asker,
        choice: Choice,
        id: RequestId,
        at: Option<&MessageRef>,
    ) -> Reply {
        self.choose_button(asker, choice, id, at).await.redacted()
    }

    async fn choose_button(
        &self,
        asker: &Asker,
        choice: Choice,
        id: RequestId,
        at: Option<&MessageRef>,
    ) -> Reply {
        let Some(person) = self.directory.lookup(&asker.platform, &asker.user) else {
            return self.handle(asker, "whoami").await;
        };
        let (verb, command) = match choice {
            Choice::Approve => (Verb::Approve, Command::Approve { id, code: None }),
            Choice::Deny => (Verb::Deny, Command::Deny { id, reason: None }),
        };
        if let Some(no) = role_refusal(person, verb) {
            return no;
        }
        let via = Via {
            platform: asker.platform.clone(),
            message: at.map(|at| format!("{}/{}", at.channel, at.message)),
        };
        match self.run(person, command, via, self.clock.now()).await {
            Ok(reply) => reply,
            Err(e) => {
                tracing::error!(error = %e, "a request button press failed");
                Reply::failed("purser could not read its store; try again in a minute.")
            }
        }
    }

    /// Acknowledges for `person`: the reply, and whether this call is the
    /// one that did it (of two racing presses, one is).
    async fn ack(
        &self,
        person: &Person,
        alert: &AlertRef,
        now: DateTime<Utc>,
    ) -> Result<(Reply, bool), StoreError> {
        Ok(
            match self
                .store
                .acknowledge(
                    alert,
                    &person.name,
                    now,
                    &self.account_list(),
                    &self.routing,
                )
                .await?
            {
                AckOutcome::Acknowledged(a) => {
                    if let Some(signal) = &self.outbox {
                        signal.wrote();
                    }
                    let reply = Reply::done(
                        format!(
                            "Acknowledged {} ({}): it will not repeat until it resolves.",
                            &a.fingerprint[..8],
                            a.key.rule
                        ),
                        vec![a.summary],
                    );
                    (reply, true)
                }
                AckOutcome::AlreadyAcknowledged(a) => {
                    let by = a
                        .acknowledged
                        .map(|k| format!("{} at {}", k.by, k.at.format("%Y-%m-%d %H:%M UTC")))
                        .unwrap_or_default();
                    let reply =
                        Reply::done(format!("Already acknowledged by {by}."), vec![a.summary]);
                    (reply, false)
                }
                AckOutcome::NotFound => (
                    Reply::refused(format!(
                        "No open alert has an id starting {}.",
                        alert.as_str()
                    )),
                    false,
                ),
                AckOutcome::Ambiguous(fps) => (
                    Reply {
                        kind: ReplyKind::Usage,
                        title: format!(
                            "{} matches {} open alerts; give more of the id:",
                            alert.as_str(),
                            fps.len()
                        ),
                        lines: fps,
                        chart: None,
                    },
                    false,
                ),
            },
        )
    }

    async fn run(
        &self,
        person: &Person,
        command: Command,
        via: Via,
        now: DateTime<Utc>,
    ) -> Result<Reply, StoreError> {
        Ok(match command {
            Command::Topup {
                account,
                amount,
                method,
                reason,
            } => {
                let amount = match self.amount_on(&account, &amount) {
                    Ok(m) => m,
                    Err(no) => return Ok(*no),
                };
                let Some(method) = method.or_else(|| self.approvals.default_method(&account))
                else {
                    return Ok(Reply::refused(format!(
                        "{account} takes no top-ups through purser."
                    )));
                };
                let action = Action::Topup { amount, method };
                self.ask(person, Some(&account), action, reason, via, now)
                    .await?
            }
            Command::Allocate {
                account,
                amount,
                contract,
                reason,
            } => {
                let amount = match self.amount_on(&account, &amount) {
                    Ok(m) => m,
                    Err(no) => return Ok(*no),
                };
                let action = Action::Allocate {
                    amount,
                    contract,
                    had: None,
                };
                self.ask(person, Some(&account), action, reason, via, now)
                    .await?
            }
            Command::Renew {
                resources,
                months,
                reason,
            } => {
                let action = Action::Renew { resources, months };
                self.ask(person, None, action, reason, via, now).await?
            }
            Command::Pay {
                orders,
                coupons,
                discount,
                reason,
            } => {
                let action = Action::Pay {
                    orders,
                    coupons,
                    discount,
                    offered: Vec::new(),
                };
                self.ask(person, None, action, reason, via, now).await?
            }
            Command::Autorenew {
                resource,
                on,
                reason,
            } => {
                let action = Action::Autorenew { resource, on };
                self.ask(person, None, action, reason, via, now).await?
            }
            Command::Requests { all } => {
                let list = self.approvals.requests.requests(!all, 50).await?;
                let title = if all {
                    format!("Recent requests: {}", list.len())
                } else {
                    format!("Open requests: {}", list.len())
                };
                Reply::done(title, list.iter().map(request_line).collect())
            }
            Command::Request { id } => match self.approvals.requests.request(id).await? {
                Some(r) => {
                    let mut lines = approvals::card(&r);
                    if let Some(p) = self.payee(&r) {
                        lines.push(format!("pay to: {p}"));
                    }
                    Reply::done(format!("{} · {}", r.id, r.state), lines)
                }
                None => Reply::refused(format!("There is no request {id}.")),
            },
            Command::Approve { id, code } => {
                let vote = Vote {
                    verdict: Verdict::Approve,
                    code: code.as_deref(),
                    comment: None,
                    via,
                };
                let decided = self.approvals.decide(person, id, vote, now).await?;
                let payee = match &decided {
                    Decided::Approved { request, .. } => self.payee(request),
                    _ => None,
                };
                decided_reply(decided, payee)
            }
            Command::Deny { id, reason } => {
                let vote = Vote {
                    verdict: Verdict::Deny,
                    code: None,
                    comment: reason,
                    via,
                };
                decided_reply(self.approvals.decide(person, id, vote, now).await?, None)
            }
            Command::Cancel { id } => match self.approvals.cancel(person, id, now).await? {
                Cancelled::Cancelled(r) => Reply::done(
                    format!("{} cancelled: nothing will be charged for it.", r.id),
                    approvals::card(&r),
                ),
                Cancelled::Refused(no) => {
                    Reply::refused(format!("{}.", capitalize(&no.to_string())))
                }
                Cancelled::NotFound(id) => Reply::refused(format!("There is no request {id}.")),
            },
            Command::Resolve { id, done, note } => {
                match self
                    .approvals
                    .resolve(person, id, done, note.as_deref(), now)
                    .await?
                {
                    Resolved::Resolved(r) => Reply::done(
                        format!(
                            "{} is {}, on {}'s word; recorded in the audit log.",
                            r.id, r.state, person.name
                        ),
                        approvals::card(&r),
                    ),
                    Resolved::Refused(no) => {
                        Reply::refused(format!("{}.", capitalize(&no.to_string())))
                    }
                    Resolved::NotFound(id) => Reply::refused(format!("There is no request {id}.")),
                }
            }
            Command::Help { topic: None } => Reply::done(
                "purser commands",
                command::help(person.role)
                    .lines()
                    .map(str::to_owned)
                    .collect(),
            ),
            Command::Help { topic: Some(v) } => Reply::done(
                format!("usage: {}", v.usage()),
                vec![
                    v.summary().to_owned(),
                    format!("needs the {} role", v.role()),
                ],
            ),
            Command::Oncall { schedule } => self.oncall(schedule.as_deref(), now).await?,
            Command::Override {
                schedule,
                person: who,
                from,
                until,
                reason,
            } => {
                self.add_override(person, &schedule, &who, from, until, reason, now)
                    .await?
            }
            Command::Escalations => {
                let open = self.escalations.open_escalations().await?;
                let alerts = self.store.all_open_alerts().await?;
                let lines: Vec<String> = open
                    .iter()
                    .map(|e| {
                        let alert = alerts.iter().find(|a| {
                            a.fingerprint == e.fingerprint && a.started_at == e.started_at
                        });
                        oncall_view::escalation_line(
                            e,
                            alert,
                            self.oncall.chains.get(&e.severity),
                            self.oncall.zone(),
                            now,
                        )
                    })
                    .collect();
                if lines.is_empty() {
                    Reply::done("No alert is waiting for an answer.", Vec::new())
                } else {
                    Reply::done(format!("Escalations open: {}", lines.len()), lines)
                }
            }
            Command::Whoami => Reply::done(
                format!("You are {}, {}.", person.name, person.role),
                Vec::new(),
            ),
            Command::Balance { target } => {
                let chosen: Vec<&AccountConfig> = match &target {
                    None => self.accounts.iter().collect(),
                    Some(Target::Account(id)) => self
                        .accounts
                        .iter()
                        .filter(|a| &a.account.id == id)
                        .collect(),
                    Some(Target::Label { name, value }) => self
                        .accounts
                        .iter()
                        .filter(|a| a.account.labels.get(name) == Some(value))
                        .collect(),
                };
                if chosen.is_empty() {
                    return Ok(self.no_such(&target));
                }
                let views = self.views(&chosen, now).await?;
                let mut lines = Vec::new();
                for (a, view) in chosen.iter().zip(views) {
                    lines.push(self.balance_line(a, view, now).await?);
                }
                Reply::done("Balances (available · burn/day · runway)", lines)
            }
            Command::Runway { account } => {
                let chosen: Vec<&AccountConfig> = self
                    .accounts
                    .iter()
                    .filter(|a| account.as_ref().is_none_or(|id| &a.account.id == id))
                    .collect();
                if chosen.is_empty() {
                    return Ok(self.no_such(&account.map(Target::Account)));
                }
                let views = self.views(&chosen, now).await?;
                let mut lines = Vec::new();
                for (a, view) in chosen.iter().zip(views) {
                    lines.push(match view {
                        Some(v) => runway_line(a, v),
                        None => self.unread_line(a).await?,
                    });
                }
                let mut reply = Reply::done("Runway", lines);
                // One account asked for by name: its chart too.
                if let (true, [a]) = (account.is_some(), chosen.as_slice()) {
                    reply.chart = self.chart(a, now).await?;
                }
                reply
            }
            Command::Expiring { days } => {
                let until = now + Duration::days(i64::from(days));
                let mut rows = Vec::new();
                for a in self.accounts.iter() {
                    let Some(latest) = self.latest(a, now).await? else {
                        continue;
                    };
                    for r in latest.resources {
                        if r.expires_at <= until && r.renewal != RenewalMode::ExpireWithoutRenewal {
                            let mut line = format!(
                                "{} {} · {} · {} renewal",
                                a.account.id,
                                r.name.as_deref().unwrap_or(r.id.as_str()),
                                in_days(r.expires_at, now),
                                r.renewal.as_str()
                            );
                            if let Some(price) = r.price_text() {
                                line.push_str(&format!(" · {price}"));
                            }
                            rows.push((r.expires_at, line));
                        }
                    }
                }
                rows.sort_by_key(|(at, _)| *at);
                let title = format!("Expiring within {days} days: {}", rows.len());
                Reply::done(title, rows.into_iter().map(|(_, l)| l).collect())
            }
            Command::Alerts => {
                let alerts = self.store.all_open_alerts().await?;
                let silences = self.store.silences(now).await?;
                let lines = alerts
                    .iter()
                    .filter(|a| a.state == crate::domain::alert::AlertState::Firing)
                    .map(|a| {
                        let account = self
                            .accounts
                            .iter()
                            .find(|c| c.account.id.as_str() == a.key.account);
                        let muted = account.and_then(|c| {
                            silence::silenced_by(
                                &silences,
                                &c.account,
                                &a.key,
                                a.severity.as_str(),
                                now,
                            )
                        });
                        let mut l = format!(
                            "[{}] {} · {} · {}",
                            a.severity,
                            &a.fingerprint[..8],
                            a.key.rule,
                            a.summary
                        );
                        if let Some(ack) = &a.acknowledged {
                            l.push_str(&format!(" (acknowledged by {})", ack.by));
                        }
                        if let Some(s) = muted {
                            l.push_str(&format!(" (silenced by #{})", s.id));
                        }
                        l
                    })
                    .collect::<Vec<_>>();
                Reply::done(format!("Firing: {}", lines.len()), lines)
            }
            Command::Ack { alert } => self.ack(person, &alert, now).await?.0,
            Command::Silence {
                matchers,
                duration: d,
                reason,
            } => {
                let s = self
                    .store
                    .add_silence(
                        &NewSilence {
                            matchers,
                            starts_at: now,
                            ends_at: now + d,
                            created_by: person.name.clone(),
                            reason,
                        },
                        &self.account_list(),
                        &self.routing,
                    )
                    .await?;
                if let Some(signal) = &self.outbox {
                    signal.wrote();
                }
                Reply::done(
                    format!(
                        "Silence #{} set until {} ({}).",
                        s.id,
                        s.ends_at.format("%Y-%m-%d %H:%M UTC"),
                        duration::format(d)
                    ),
                    vec![silence_line(&s)],
                )
            }
            Command::Unsilence { id } => match self.store.end_silence(id, &person.name, now).await?
            {
                EndSilenceOutcome::Ended(s) => {
                    Reply::done(format!("Silence #{} ended.", s.id), vec![silence_line(&s)])
                }
                EndSilenceOutcome::AlreadyOver(s) => Reply::done(
                    format!(
                        "Silence #{} had already ended at {}.",
                        s.id,
                        s.ends_at.format("%Y-%m-%d %H:%M UTC")
                    ),
                    Vec::new(),
                ),
                EndSilenceOutcome::NotFound => {
                    Reply::refused(format!("There is no silence #{id}."))
                }
            },
            Command::Silences => {
                let list = self.store.silences(now).await?;
                Reply::done(
                    format!("Silences in force: {}", list.len()),
                    list.iter().map(silence_line).collect(),
                )
            }
            Command::SetBalance {
                account,
                amount,
                part,
            } => {
                let Some(a) = self.accounts.iter().find(|a| a.account.id == account) else {
                    return Ok(self.no_such(&Some(Target::Account(account))));
                };
                // A contract's money or the unallocated money: no cloud reads
                // them by API, so any account may have them entered.
                if part.is_none() && !self.entered.contains(&a.account.id) {
                    return Ok(Reply::refused(format!(
                        "{account}'s cloud reports its own balance; setbalance is for accounts with no balance API."
                    )));
                }
                let money = match amount.money(a.currency) {
                    Ok(m) if m.currency() == a.currency => m,
                    Ok(m) => {
                        return Ok(Reply::refused(format!(
                            "{account} is billed in {}, not {}.",
                            a.currency,
                            m.currency()
                        )));
                    }
                    Err(e) => return Ok(Reply::refused(e.to_string())),
                };
                if part.is_some() && money.is_negative() {
                    return Ok(Reply::refused(format!(
                        "{} cannot hold a negative amount ({money}).",
                        part.as_ref().map(|p| p.describe()).unwrap_or_default()
                    )));
                }
                self.entries
                    .record_balance_entry(
                        &account,
                        &BalanceEntry {
                            bucket: part.clone(),
                            amount: money,
                            as_of: now,
                            entered_by: person.name.clone(),
                            entered_at: now,
                        },
                    )
                    .await?;
                if let Some(p) = part {
                    return Ok(Reply::done(
                        format!(
                            "{account} {} is now {money} as of {}, entered by {}.",
                            p.describe(),
                            now.format("%Y-%m-%d %H:%M UTC"),
                            person.name
                        ),
                        vec![
                            "It stands until the next entry, and goes stale as an entered balance does."
                                .into(),
                        ],
                    ));
                }
                Reply::done(
                    format!(
                        "{account}'s balance is now {money} as of {}, entered by {}.",
                        now.format("%Y-%m-%d %H:%M UTC"),
                        person.name
                    ),
                    vec!["purser subtracts the usage it reads from here on.".into()],
                )
            }
        })
    }

    /// Where an approved top-up's money goes, as the account's config says.
    fn payee(&self, r: &Request) -> Option<String> {
        let Action::Topup { method, .. } = &r.action else {
            return None;
        };
        if r.state != State::AwaitingPayment {
            return None;
        }
        let a = self.accounts.iter().find(|a| a.account.id == r.account)?;
        a.payee.get(method).cloned()
    }

    /// An amount typed for `account`, in its currency unless it names one.
    fn amount_on(
        &self,
        account: &AccountId,
        amount: &command::AmountText,
    ) -> Result<crate::domain::money::Money, Box<Reply>> {
        let Some(a) = self.accounts.iter().find(|a| &a.account.id == account) else {
            return Err(Box::new(
                self.no_such(&Some(Target::Account(account.clone()))),
            ));
        };
        amount
            .money(a.currency)
            .map_err(|e| Box::new(Reply::refused(e.to_string())))
    }

    /// Opens a request and says what came of it.
    async fn ask(
        &self,
        person: &Person,
        account: Option<&AccountId>,
        action: Action,
        reason: Option<String>,
        via: Via,
        now: DateTime<Utc>,
    ) -> Result<Reply, StoreError> {
        let account = match self.approvals.account_of(account, &action, now).await? {
            Ok(a) => a,
            Err(why) => return Ok(Reply::refused(why)),
        };
        let opened = self
            .approvals
            .open(person, &account, action, reason, via, now)
            .await?;
        Ok(match opened {
            Opened::Opened(r) => Reply::done(
                format!("{} opened: {}.", r.id, r.action.describe()),
                approvals::card(&r),
            ),
            Opened::Refused(refusal) => Reply::refused(format!("Not opened: {refusal}.")),
            Opened::Unknown(why) => Reply::refused(why),
        })
    }

    /// Who is on call now and next, per schedule (or the one named).
    async fn oncall(&self, name: Option<&str>, now: DateTime<Utc>) -> Result<Reply, StoreError> {
        let schedules = &self.oncall.schedules;
        if schedules.is_empty() {
            return Ok(Reply::done(
                "No on-call schedules are configured.",
                vec!["Add [[schedules]] to purser's config (README, On call).".to_owned()],
            ));
        }
        let chosen: Vec<&Rotation> = match name {
            None => schedules.iter().collect(),
            Some(n) => match schedules.iter().find(|r| r.name == n) {
                Some(r) => vec![r],
                None => return Ok(self.no_schedule(n)),
            },
        };
        let overrides = escalator::overrides(&self.oncall, &*self.escalations, now).await?;
        Ok(Reply::done(
            "On call",
            chosen
                .iter()
                .map(|r| oncall_view::schedule_line(r, &overrides, now))
                .collect(),
        ))
    }

    fn no_schedule(&self, name: &str) -> Reply {
        let known: Vec<&str> = self
            .oncall
            .schedules
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        Reply::refused(format!(
            "No schedule is named {name:?}; schedules: {}.",
            known.join(", ")
        ))
    }

    /// `oncall override`: `who` answers for `schedule` from `from` until
    /// `until`, stored and audited. Taking a shift yourself asks for the
    /// requester role; putting someone else on, for approver.
    #[allow(clippy::too_many_arguments)]
    async fn add_override(
        &self,
        person: &Person,
        schedule: &str,
        who: &str,
        from: When,
        until: When,
        reason: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<Reply, StoreError> {
        let Some(rotation) = self.oncall.schedules.iter().find(|r| r.name == schedule) else {
            return Ok(self.no_schedule(schedule));
        };
        let needs = if who == person.name {
            Role::Requester
        } else {
            Role::Approver
        };
        if person.role < needs {
            return Ok(Reply::refused(if who == person.name {
                format!(
                    "Taking a shift needs the {needs} role; you are {}.",
                    person.role
                )
            } else {
                format!(
                    "Putting someone else on call needs the {needs} role; you are {}.",
                    person.role
                )
            }));
        }
        let Some(contact) = self.oncall.people.iter().find(|p| p.name == who) else {
            let known: Vec<&str> = self.oncall.people.iter().map(|p| p.name.as_str()).collect();
            return Ok(Reply::refused(format!(
                "Nobody is named {who:?}; people: {}.",
                known.join(", ")
            )));
        };
        if contact.identities.is_empty() {
            return Ok(Reply::refused(format!(
                "{who} has no chat identity in purser's config, so purser could not page them."
            )));
        }
        let zone = rotation.zone;
        let wall = |date, minute| Calendar::weekdays(zone, 0, 0).instant(date, minute);
        let start = match from {
            When::Now => now,
            When::Wall(d, m) => wall(d, m),
            When::After(_) => return Ok(Reply::refused("Give the start as now or a date.")),
        };
        let end = match until {
            When::After(d) => start + d,
            When::Wall(d, m) => wall(d, m),
            When::Now => {
                return Ok(Reply::refused(
                    "Give the end as a date or a span such as 8h.",
                ));
            }
        };
        if end <= start {
            return Ok(Reply::refused(format!(
                "The override would end ({}) before it starts ({}).",
                oncall_view::local(end, zone),
                oncall_view::local(start, zone)
            )));
        }
        if end <= now {
            return Ok(Reply::refused(format!(
                "That is over already: it ended {}.",
                oncall_view::local(end, zone)
            )));
        }
        if end - start > Duration::days(MAX_OVERRIDE_DAYS) {
            return Ok(Reply::refused(format!(
                "An override may last at most {MAX_OVERRIDE_DAYS} days; change the rotation in the config for longer."
            )));
        }
        let covering = rotation.scheduled(start).map(|s| s.person);
        let stored = self
            .escalations
            .add_override(
                &Override {
                    id: 0,
                    schedule: schedule.to_owned(),
                    person: who.to_owned(),
                    from: start,
                    to: end,
                    by: person.name.clone(),
                },
                reason.as_deref(),
                now,
            )
            .await?;
        let mut title = format!(
            "Override #{}: {who} is on call for {schedule} from {} until {}",
            stored.id,
            oncall_view::local(start, zone),
            oncall_view::local(end, zone)
        );
        match covering {
            Some(c) if c != who => title.push_str(&format!(", covering {c}.")),
            _ => title.push('.'),
        }
        let overrides = escalator::overrides(&self.oncall, &*self.escalations, now).await?;
        Ok(Reply::done(
            title,
            vec![oncall_view::schedule_line(rotation, &overrides, now)],
        ))
    }

    fn account_list(&self) -> Vec<crate::domain::model::Account> {
        self.accounts.iter().map(|a| a.account.clone()).collect()
    }

    fn no_such(&self, target: &Option<Target>) -> Reply {
        let known: Vec<&str> = self
            .accounts
            .iter()
            .map(|a| a.account.id.as_str())
            .collect();
        let what = match target {
            Some(Target::Account(id)) => format!("No account {id}."),
            Some(Target::Label { name, value }) => format!("No account has {name}={value}."),
            None => "No accounts are configured.".into(),
        };
        Reply::refused(format!("{what} Known: {}", known.join(", ")))
    }

    /// The snapshots the rules judge the account on, oldest first.
    async fn history(
        &self,
        a: &AccountConfig,
        now: DateTime<Utc>,
    ) -> Result<Vec<Snapshot>, StoreError> {
        self.store
            .history(&a.account.id, now - a.rules.runway.window)
            .await
    }

    async fn latest(
        &self,
        a: &AccountConfig,
        now: DateTime<Utc>,
    ) -> Result<Option<Snapshot>, StoreError> {
        approvals::last_read(self.store.as_ref(), a, now).await
    }

    /// The latest balance and forecast of each of `chosen`, in order: for
    /// one account from its history now; for several from the views the
    /// poller keeps, one read for all (an account without one yet, from its
    /// history).
    async fn views(
        &self,
        chosen: &[&AccountConfig],
        now: DateTime<Utc>,
    ) -> Result<Vec<Option<AccountView>>, StoreError> {
        let kept = if chosen.len() > 1 {
            self.store.views().await?
        } else {
            Default::default()
        };
        let mut out = Vec::with_capacity(chosen.len());
        for a in chosen {
            out.push(match kept.get(&a.account.id) {
                Some(v) => Some(v.clone()),
                None => AccountView::of(&self.history(a, now).await?, a.rules.runway.window, now),
            });
        }
        Ok(out)
    }

    /// An account with no good snapshot: why not.
    async fn unread_line(&self, a: &AccountConfig) -> Result<String, StoreError> {
        let health = self.store.health(&a.account.id).await?;
        Ok(match health.last_error {
            Some(e) => format!(
                "{} · cannot be read ({}): {e}",
                a.account.id,
                e.kind.as_str()
            ),
            None => format!("{} · not read yet", a.account.id),
        })
    }

    async fn balance_line(
        &self,
        a: &AccountConfig,
        view: Option<AccountView>,
        now: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        let Some(v) = view else {
            return self.unread_line(a).await;
        };
        let f = &v.forecast;
        let burn = f
            .as_ref()
            .map_or("-".to_owned(), |f| f.burn.per_day.to_string());
        let runway = if v.available.is_negative() {
            "in arrears".to_owned()
        } else {
            f.as_ref()
                .and_then(|f| f.runway_days)
                .map_or("-".to_owned(), |d| format!("{} d", d.round_dp(1)))
        };
        let mut line = format!("{} · {} · {burn} · {runway}", a.account.id, v.available);
        if v.taken_at < now - Duration::hours(1) {
            line.push_str(&format!(
                " (as of {})",
                v.taken_at.format("%Y-%m-%d %H:%M UTC")
            ));
        }
        Ok(line)
    }

    async fn chart(
        &self,
        a: &AccountConfig,
        now: DateTime<Utc>,
    ) -> Result<Option<RunwayChart>, StoreError> {
        Ok(charts::runway_chart(a, &self.history(a, now).await?, now))
    }
}

fn runway_line(a: &AccountConfig, v: AccountView) -> String {
    if v.available.is_negative() {
        // No runway is left to count: the account owes the cloud.
        let owed = crate::domain::money::Money::zero(v.available.currency())
            .checked_sub(&v.available)
            .unwrap_or(v.available);
        let mut line = format!(
            "{} · in arrears by {owed}: the cloud may already be suspending services",
            a.account.id
        );
        if let Some(f) = v.forecast.filter(|f| f.burn.per_day.is_positive()) {
            line.push_str(&format!(" · spending {}/day", f.burn.per_day));
        }
        return line;
    }
    match v.forecast {
        None => format!("{} · not enough history for a burn rate yet", a.account.id),
        Some(f) => match f.runway_days {
            Some(d) => format!(
                "{} · {} days at {}/day ({}) · {} left",
                a.account.id,
                d.round_dp(1),
                f.burn.per_day,
                match f.burn.source {
                    forecast::BurnSource::Reported => "the cloud's spend records",
                    forecast::BurnSource::BalanceDeltas => "balance changes",
                },
                v.available
            ),
            None => format!(
                "{} · nothing is being spent · {} left",
                a.account.id, v.available
            ),
        },
    }
}

/// The refusal for a person whose role is below what `verb` needs.
fn role_refusal(person: &Person, verb: Verb) -> Option<Reply> {
    (person.role < verb.role()).then(|| {
        Reply::refused(format!(
            "{} needs the {} role; you are {}.",
            verb.name(),
            verb.role(),
            person.role
        ))
    })
}

/// One request on a line, for `requests`.
fn request_line(r: &Request) -> String {
    let mut l = format!(
        "{} · {} · {} on {} · by {}",
        r.id,
        r.state,
        r.action.describe(),
        r.account,
        r.requested_by
    );
    if r.state == State::Requested
        && let Some(missing) = r.missing()
    {
        l.push_str(&format!(" · needs {missing}"));
    }
    l
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// What an approved top-up tells its payer: the amount, the method, where
/// the money goes (when the config says) and the reference to quote.
fn decided_reply(decided: Decided, payee: Option<String>) -> Reply {
    match decided {
        Decided::Counted { request, missing } => Reply::done(
            format!(
                "Your approval of {} is counted; it needs {missing}.",
                request.id
            ),
            approvals::card(&request),
        ),
        Decided::Approved {
            request: r,
            outcome,
        } => {
            let title = match (&r.state, &r.action) {
                (State::AwaitingPayment, Action::Topup { amount, method }) => format!(
                    "{} approved. Pay {amount} by {}{} quoting {}; purser closes it when the money arrives.",
                    r.id,
                    method.label(),
                    payee.map(|p| format!(" to {p},")).unwrap_or_default(),
                    r.key
                ),
                (
                    State::AwaitingPayment,
                    Action::Allocate {
                        amount, contract, ..
                    },
                ) => format!(
                    "{} approved. Allocate {amount} to contract {contract} in the cloud's console, then enter the contract's new balance (setbalance {} <amount> contract={contract}); purser closes it when a reading shows the money moved.",
                    r.id, r.account
                ),
                _ => match outcome {
                    Some(line) => format!("{} approved. {line}", r.id),
                    None => format!("{} approved.", r.id),
                },
            };
            Reply::done(title, approvals::card(&r))
        }
        Decided::Denied(r) => Reply::done(
            format!("{} denied: nothing will be charged for it.", r.id),
            approvals::card(&r),
        ),
        Decided::AlreadyDecided(r) => Reply::done(
            format!("You already decided on {}; a decision counts once.", r.id),
            approvals::card(&r),
        ),
        Decided::Refused(no) => Reply::refused(format!("{}.", capitalize(&no.to_string()))),
        Decided::NotFound(id) => Reply::refused(format!("There is no request {id}.")),
    }
}

fn in_days(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let days = (at - now).num_days();
    match days {
        d if at <= now => format!("expired {} d ago", (now - at).num_days().max(d.abs())),
        0 => "today".into(),
        1 => "in 1 day".into(),
        d => format!("in {d} days"),
    }
}

fn silence_line(s: &silence::Silence) -> String {
    let matchers: Vec<String> = s.matchers.iter().map(ToString::to_string).collect();
    let mut l = format!(
        "#{} {} until {} by {}",
        s.id,
        matchers.join(","),
        s.ends_at.format("%Y-%m-%d %H:%M UTC"),
        s.created_by
    );
    if let Some(r) = &s.reason {
        l.push_str(&format!(": {r}"));
    }
    if let Some(by) = &s.ended_by {
        l.push_str(&format!(" (ended by {by})"));
    }
    l
}
