//! What purser answers in chat, whichever platform asked: the command is
//! parsed once, the asker looked up and authorized, and the answer read from
//! the store. Platform adapters only carry text in and render the reply.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::domain::account::AccountSpec;
use crate::domain::command::{self, Command, Target, Verb};
pub use crate::domain::forecast::RunwayChart;
use crate::domain::people::{Directory, Person};
use crate::domain::request::{Action, RequestId, Via};
use crate::engine::alert_view::{Button, On};
use crate::engine::approvals::Approvals;

mod buttons;
mod oncall;
mod questions;
pub use questions::ViewCache;
mod quieting;
mod requests;
use crate::engine::request_view::Choice;
use crate::ports::{
    BalanceEntries, Clock, Escalations, MessageRef, MessageRefs, Store, StoreError,
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
    pub accounts: Arc<Vec<Arc<AccountSpec>>>,
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
    /// The accounts' views, kept between questions about the fleet.
    pub views: ViewCache,
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

    /// A silence ended early. No notice is written, but it counts as one:
    /// the escalator wakes on the count, and the chains the silence held
    /// go now rather than when it would have ended.
    pub fn silence_ended(&self) {
        self.wrote();
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

    /// Runs a parsed command for `person`: one line per verb, each to its
    /// family's module.
    async fn run(
        &self,
        person: &Person,
        command: Command,
        via: Via,
        now: DateTime<Utc>,
    ) -> Result<Reply, StoreError> {
        match command {
            // Questions about the accounts (questions.rs).
            Command::Balance { target, page } => self.balance(target, page, now).await,
            Command::Runway { account, page } => self.runway(account, page, now).await,
            Command::Expiring { days, page } => self.expiring(days, page, now).await,
            Command::Alerts { page } => self.alerts(page, now).await,
            Command::SetBalance {
                account,
                amount,
                part,
            } => self.set_balance(person, account, amount, part, now).await,
            Command::Whoami => Ok(questions::whoami(person)),
            Command::Help { topic } => Ok(questions::help(person, topic)),
            // Acknowledgements and silences (quieting.rs).
            Command::Ack { alert } => Ok(self.ack(person, &alert, now).await?.0),
            Command::Silence {
                matchers,
                duration,
                reason,
            } => self.silence(person, matchers, duration, reason, now).await,
            Command::Unsilence { id } => self.unsilence(person, id, now).await,
            Command::Silences => self.silences(now).await,
            // Requests for money (requests.rs).
            Command::Topup {
                account,
                amount,
                method,
                reason,
            } => {
                self.topup(person, account, amount, method, reason, via, now)
                    .await
            }
            Command::Allocate {
                account,
                amount,
                contract,
                reason,
            } => {
                self.allocate(person, account, amount, contract, reason, via, now)
                    .await
            }
            Command::Renew {
                resources,
                months,
                reason,
            } => {
                let action = Action::Renew { resources, months };
                self.ask(person, None, action, reason, via, now).await
            }
            Command::Pay {
                orders,
                coupons,
                discount,
                reason,
            } => {
                let offered = Vec::new();
                let action = Action::Pay {
                    orders,
                    coupons,
                    discount,
                    offered,
                };
                self.ask(person, None, action, reason, via, now).await
            }
            Command::Autorenew {
                resource,
                on,
                reason,
            } => {
                let action = Action::Autorenew { resource, on };
                self.ask(person, None, action, reason, via, now).await
            }
            Command::Requests { all } => self.requests(all).await,
            Command::Request { id } => self.request(id).await,
            Command::Approve { id, code } => self.approve(person, id, code, via, now).await,
            Command::Deny { id, reason } => self.deny(person, id, reason, via, now).await,
            Command::Cancel { id } => self.cancel(person, id, now).await,
            Command::Resolve { id, done, note } => self.resolve(person, id, done, note, now).await,
            // On call (oncall.rs).
            Command::Oncall { schedule } => self.oncall(schedule.as_deref(), now).await,
            Command::Override {
                schedule,
                person: who,
                from,
                until,
                reason,
            } => {
                self.add_override(person, &schedule, &who, from, until, reason, now)
                    .await
            }
            Command::Escalations => self.escalations(now).await,
        }
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
        // A long fleet is named in part: the reply stays one message.
        const NAMED: usize = 20;
        let mut list = known[..known.len().min(NAMED)].join(", ");
        if known.len() > NAMED {
            list.push_str(&format!(" and {} more", known.len() - NAMED));
        }
        Reply::refused(format!("{what} Known: {list}"))
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

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}
