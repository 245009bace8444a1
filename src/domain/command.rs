//! The chat command language. Every platform hands the text after its own
//! trigger (`/purser …`, or a shortcut such as `/balance …`) to
//! [`parse`], and gets back one typed [`Command`] or an error that carries the
//! command's usage. Nothing here knows which platform asked.

use std::fmt;

use chrono::Duration;

use super::model::{AccountId, ExternalId};
use super::money::{AmountError, Currency, Money};
use super::request::{PaymentMethod, RequestId};
use super::rules::{RuleName, Severity};

/// Who may do what. Ordered: each role may do everything the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Reads balances, runway, alerts and silences.
    Viewer,
    /// Also acknowledges and silences alerts, and (part 4) asks for payments.
    Requester,
    /// Also approves requests and enters balances by hand.
    Approver,
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Requester, Role::Approver, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Requester => "requester",
            Role::Approver => "approver",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One argument of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parameter {
    pub name: &'static str,
    pub required: bool,
    pub about: &'static str,
    /// Written `name=value` in the command text (`coupon=c1`).
    pub keyed: bool,
}

/// The commands, by name: for help, usage and authorization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    Balance,
    Runway,
    Expiring,
    Alerts,
    Ack,
    Silence,
    Unsilence,
    Silences,
    SetBalance,
    Topup,
    Renew,
    Pay,
    Autorenew,
    Allocate,
    Requests,
    Request,
    Approve,
    Deny,
    Cancel,
    Resolve,
    Oncall,
    Escalations,
    Whoami,
    Help,
}

impl Verb {
    pub const ALL: [Verb; 24] = [
        Verb::Balance,
        Verb::Runway,
        Verb::Expiring,
        Verb::Alerts,
        Verb::Ack,
        Verb::Silence,
        Verb::Unsilence,
        Verb::Silences,
        Verb::SetBalance,
        Verb::Topup,
        Verb::Renew,
        Verb::Pay,
        Verb::Autorenew,
        Verb::Allocate,
        Verb::Requests,
        Verb::Request,
        Verb::Approve,
        Verb::Deny,
        Verb::Cancel,
        Verb::Resolve,
        Verb::Oncall,
        Verb::Escalations,
        Verb::Whoami,
        Verb::Help,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Verb::Balance => "balance",
            Verb::Runway => "runway",
            Verb::Expiring => "expiring",
            Verb::Alerts => "alerts",
            Verb::Ack => "ack",
            Verb::Silence => "silence",
            Verb::Unsilence => "unsilence",
            Verb::Silences => "silences",
            Verb::SetBalance => "setbalance",
            Verb::Topup => "topup",
            Verb::Renew => "renew",
            Verb::Pay => "pay",
            Verb::Autorenew => "autorenew",
            Verb::Allocate => "allocate",
            Verb::Requests => "requests",
            Verb::Request => "request",
            Verb::Approve => "approve",
            Verb::Deny => "deny",
            Verb::Cancel => "cancel",
            Verb::Resolve => "resolve",
            Verb::Oncall => "oncall",
            Verb::Escalations => "escalations",
            Verb::Whoami => "whoami",
            Verb::Help => "help",
        }
    }

    /// Arguments, after the command's name.
    pub fn arguments(self) -> &'static str {
        match self {
            Verb::Balance => "[account | label=value] [page=N]",
            Verb::Runway => "[account] [page=N]",
            Verb::Expiring => "[days] [page=N]",
            Verb::Alerts => "[page=N]",
            Verb::Silences | Verb::Whoami | Verb::Escalations => "",
            Verb::Oncall => "[schedule] | override <schedule> <person> <from> <until> [reason]",
            Verb::Ack => "<alert id>",
            Verb::Silence => "<label=value[,label=value…]> <duration> [reason]",
            Verb::Unsilence => "<silence id>",
            Verb::SetBalance => "<account> <amount> [contract=number|unallocated]",
            Verb::Topup => "<account> <amount> [method] [reason]",
            Verb::Renew => "<resource[,resource…]> <period> [reason]",
            Verb::Pay => "<order[,order…]> [coupon=id] [discount=id] [reason]",
            Verb::Autorenew => "<resource> <on|off> [reason]",
            Verb::Allocate => "<account> <amount> <contract> [reason]",
            Verb::Requests => "[all]",
            Verb::Request | Verb::Cancel => "<request id>",
            Verb::Approve => "<request id> [code]",
            Verb::Deny => "<request id> [reason]",
            Verb::Resolve => "<request id> <done|failed> [what you found]",
            Verb::Help => "[command]",
        }
    }

    /// The arguments one by one, for platforms that ask for them so (a
    /// required one before any optional one; the last may hold spaces).
    pub fn parameters(self) -> &'static [Parameter] {
        // A struct literal (not a call) so that the slices are constants.
        macro_rules! p {
            ($name:literal, $required:literal, $about:literal) => {
                Parameter {
                    name: $name,
                    required: $required,
                    about: $about,
                    keyed: false,
                }
            };
            (keyed $name:literal, $about:literal) => {
                Parameter {
                    name: $name,
                    required: false,
                    about: $about,
                    keyed: true,
                }
            };
        }
        match self {
            Verb::Balance => &[
                p!("account", false, "an account id, or label=value"),
                p!(keyed "page", "which page of a long answer (25 lines a page)"),
            ],
            Verb::Runway => &[
                p!("account", false, "an account id"),
                p!(keyed "page", "which page of a long answer (25 lines a page)"),
            ],
            Verb::Expiring => &[
                p!("days", false, "how many days ahead (default 30)"),
                p!(keyed "page", "which page of a long answer (25 lines a page)"),
            ],
            Verb::Alerts => &[p!(keyed "page", "which page of a long answer (25 lines a page)")],
            Verb::Silences | Verb::Whoami | Verb::Escalations => &[],
            Verb::Oncall => &[p!(
                "schedule",
                false,
                "a schedule's name, or: override <schedule> <person> <from> <until> [reason]"
            )],
            Verb::Ack => &[p!("alert", true, "the alert's id (6 or more hex digits)")],
            Verb::Silence => &[
                p!(
                    "matchers",
                    true,
                    "label=value[,label=value…], e.g. account=shop-prod"
                ),
                p!("duration", true, "e.g. 1h, 3d"),
                p!("reason", false, "why, for the record"),
            ],
            Verb::Unsilence => &[p!("silence", true, "the silence's number")],
            Verb::SetBalance => &[
                p!("account", true, "an account id"),
                p!("amount", true, "e.g. ¥12,000.00"),
                p!(
                    keyed "contract",
                    "a service contract's number, or unallocated; default the account's balance"
                ),
            ],
            Verb::Topup => &[
                p!("account", true, "an account id"),
                p!("amount", true, "e.g. 10,000"),
                p!(
                    "method",
                    false,
                    "alipay, unionpay, wechat, online_banking or wire"
                ),
                p!("reason", false, "why, for the record"),
            ],
            Verb::Renew => &[
                p!("resources", true, "resource ids, comma-separated"),
                p!("period", true, "e.g. 1m, 6m, 1y"),
                p!("reason", false, "why, for the record"),
            ],
            Verb::Pay => &[
                p!(
                    "orders",
                    true,
                    "order ids, comma-separated (several: paid together)"
                ),
                p!(keyed "coupon", "a coupon's id"),
                p!(keyed "discount", "a discount's id"),
                p!("reason", false, "why, for the record"),
            ],
            Verb::Autorenew => &[
                p!("resource", true, "a resource id"),
                p!("setting", true, "on or off"),
                p!("reason", false, "why, for the record"),
            ],
            Verb::Allocate => &[
                p!("account", true, "an account id"),
                p!("amount", true, "e.g. 3,000"),
                p!("contract", true, "the service contract's id"),
                p!("reason", false, "why, for the record"),
            ],
            Verb::Requests => &[p!("all", false, "all: closed requests too")],
            Verb::Request | Verb::Cancel => &[p!("request", true, "e.g. R12")],
            Verb::Approve => &[
                p!("request", true, "e.g. R12"),
                p!("code", false, "your authenticator code, for large amounts"),
            ],
            Verb::Resolve => &[
                p!("request", true, "e.g. R12"),
                p!(
                    "outcome",
                    true,
                    "done or failed, as the cloud's console shows it"
                ),
                p!("note", false, "what you found, for the record"),
            ],
            Verb::Deny => &[
                p!("request", true, "e.g. R12"),
                p!("reason", false, "why, for the record"),
            ],
            Verb::Help => &[p!("command", false, "a command's name")],
        }
    }

    pub fn summary(self) -> &'static str {
        match self {
            Verb::Balance => {
                "balances, burn rate and runway, for one account or those with a label"
            }
            Verb::Runway => "days until the money runs out, with the burn rate behind it",
            Verb::Expiring => "resources expiring within the days given (default 30)",
            Verb::Alerts => "alerts firing now",
            Verb::Ack => "acknowledge an alert: it stops repeating until it resolves",
            Verb::Silence => {
                "mute alerts whose labels match (account, rule, provider, env, severity, resource, \
                 or any account label) for a while, e.g. silence account=shop-prod,rule=expiring 24h renewal booked"
            }
            Verb::Unsilence => "end a silence early",
            Verb::Silences => "silences in force, who set them and until when",
            Verb::SetBalance => {
                "enter an account's balance by hand, for a cloud with no balance API"
            }
            Verb::Topup => {
                "ask for money to be paid into an account; once approved it is a payment task purser follows until the money arrives"
            }
            Verb::Renew => "ask to renew prepaid resources from the balance, for approval",
            Verb::Pay => "ask to pay unpaid orders from the balance, for approval",
            Verb::Autorenew => "ask to turn a resource's auto-renewal on or off, for approval",
            Verb::Allocate => "ask to allocate paid-in money to a service contract, for approval",
            Verb::Requests => "requests still open (or all recent ones)",
            Verb::Request => "one request: what it does, its cost, who decided, where it stands",
            Verb::Approve => "approve a request (not your own)",
            Verb::Deny => "deny a request",
            Verb::Cancel => "withdraw a request before anything is charged",
            Verb::Resolve => {
                "say how a request purser could not tie to the cloud's records ended, after looking in the console"
            }
            Verb::Oncall => {
                "who is on call now and next, per schedule; or put someone on call for a while \
                 (a swap, cover for leave), e.g. oncall override ops bo 2026-11-25 2026-11-26"
            }
            Verb::Escalations => {
                "alerts walking their escalation chain: who was paged, what comes next, the response deadline"
            }
            Verb::Whoami => "who purser thinks you are, and your role",
            Verb::Help => "this list, or one command's usage",
        }
    }

    /// The least role that may run it.
    pub fn role(self) -> Role {
        match self {
            Verb::Balance
            | Verb::Runway
            | Verb::Expiring
            | Verb::Alerts
            | Verb::Silences
            | Verb::Whoami
            | Verb::Oncall
            | Verb::Escalations
            | Verb::Help => Role::Viewer,
            Verb::Ack | Verb::Silence | Verb::Unsilence => Role::Requester,
            Verb::Requests | Verb::Request => Role::Viewer,
            // Policy may ask more of a kind of request; this is the floor.
            Verb::Topup
            | Verb::Renew
            | Verb::Pay
            | Verb::Autorenew
            | Verb::Allocate
            | Verb::Cancel => Role::Requester,
            Verb::Approve | Verb::Deny | Verb::Resolve => Role::Approver,
            // It moves the figure low-balance alerts judge.
            Verb::SetBalance => Role::Approver,
        }
    }

    /// `silence <label=value[,label=value…]> <duration> [reason]`
    pub fn usage(self) -> String {
        match self.arguments() {
            "" => self.name().to_owned(),
            args => format!("{} {args}", self.name()),
        }
    }

    pub fn parse(word: &str) -> Option<Verb> {
        let word = word.to_ascii_lowercase();
        let word = match word.as_str() {
            "acknowledge" => "ack",
            "set-balance" | "set_balance" => "setbalance",
            "top-up" | "top_up" | "recharge" => "topup",
            "auto-renew" | "auto_renew" => "autorenew",
            "?" => "help",
            w => w,
        };
        Verb::ALL.into_iter().find(|v| v.name() == word)
    }
}

/// A typed command, ready to be authorized and run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Balance {
        target: Option<Target>,
        page: Page,
    },
    Runway {
        account: Option<AccountId>,
        page: Page,
    },
    Expiring {
        days: u32,
        page: Page,
    },
    Alerts {
        page: Page,
    },
    Ack {
        alert: AlertRef,
    },
    Silence {
        matchers: Vec<Matcher>,
        duration: Duration,
        reason: Option<String>,
    },
    Unsilence {
        id: u64,
    },
    Silences,
    SetBalance {
        account: AccountId,
        amount: AmountText,
        /// A contract's money or the unallocated money; `None`: the
        /// account's balance.
        part: Option<crate::domain::model::EnteredBucket>,
    },
    Topup {
        account: AccountId,
        amount: AmountText,
        method: Option<PaymentMethod>,
        reason: Option<String>,
    },
    Renew {
        resources: Vec<ExternalId>,
        months: u32,
        reason: Option<String>,
    },
    Pay {
        orders: Vec<ExternalId>,
        coupons: Vec<String>,
        discount: Option<String>,
        reason: Option<String>,
    },
    Autorenew {
        resource: ExternalId,
        on: bool,
        reason: Option<String>,
    },
    Allocate {
        account: AccountId,
        amount: AmountText,
        contract: String,
        reason: Option<String>,
    },
    Requests {
        all: bool,
    },
    Request {
        id: RequestId,
    },
    Approve {
        id: RequestId,
        code: Option<String>,
    },
    Deny {
        id: RequestId,
        reason: Option<String>,
    },
    Cancel {
        id: RequestId,
    },
    /// A person's word on how an unclear request ended.
    Resolve {
        id: RequestId,
        done: bool,
        note: Option<String>,
    },
    Oncall {
        schedule: Option<String>,
    },
    /// `oncall override`: taking yourself on asks for requester, putting
    /// someone else on for approver.
    Override {
        schedule: String,
        person: String,
        from: When,
        until: When,
        reason: Option<String>,
    },
    Escalations,
    Whoami,
    Help {
        topic: Option<Verb>,
    },
}

/// A moment as typed in chat, before the schedule's zone and the time of
/// asking make it an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Now,
    /// A wall date and minute of the day: `2026-11-25`, `2026-11-25 09:00`.
    Wall(chrono::NaiveDate, super::calendar::Minute),
    /// For `until`: this long after the start (`8h`, `3d`).
    After(Duration),
}

impl Command {
    pub fn verb(&self) -> Verb {
        match self {
            Command::Balance { .. } => Verb::Balance,
            Command::Runway { .. } => Verb::Runway,
            Command::Expiring { .. } => Verb::Expiring,
            Command::Alerts { .. } => Verb::Alerts,
            Command::Ack { .. } => Verb::Ack,
            Command::Silence { .. } => Verb::Silence,
            Command::Unsilence { .. } => Verb::Unsilence,
            Command::Silences => Verb::Silences,
            Command::SetBalance { .. } => Verb::SetBalance,
            Command::Topup { .. } => Verb::Topup,
            Command::Renew { .. } => Verb::Renew,
            Command::Pay { .. } => Verb::Pay,
            Command::Autorenew { .. } => Verb::Autorenew,
            Command::Allocate { .. } => Verb::Allocate,
            Command::Requests { .. } => Verb::Requests,
            Command::Request { .. } => Verb::Request,
            Command::Approve { .. } => Verb::Approve,
            Command::Deny { .. } => Verb::Deny,
            Command::Cancel { .. } => Verb::Cancel,
            Command::Resolve { .. } => Verb::Resolve,
            Command::Oncall { .. } | Command::Override { .. } => Verb::Oncall,
            Command::Escalations => Verb::Escalations,
            Command::Whoami => Verb::Whoami,
            Command::Help { .. } => Verb::Help,
        }
    }
}

/// Which page of a long answer is asked for (the first unless `page=N`
/// says otherwise), so that a fleet of a thousand accounts is answered
/// 25 lines at a time rather than cut short by the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page(u32);

impl Page {
    pub const FIRST: Page = Page(1);
    /// Lines on one page: inside every platform's limit for one message
    /// (the tightest allows 2,000 characters).
    pub const LINES: usize = 25;
    const MOST: u32 = 10_000;

    /// `n` counted from 1.
    pub fn new(n: u32) -> Option<Page> {
        (1..=Page::MOST).contains(&n).then_some(Page(n))
    }

    pub fn number(self) -> u32 {
        self.0
    }

    /// The lines before this page (at most 9,999 pages of 25).
    pub fn offset(self) -> usize {
        (self.0 as usize - 1) * Page::LINES
    }

    /// Where this page starts among `total` lines; `None` past the last.
    /// The first page always exists, empty or not.
    pub fn start(self, total: usize) -> Option<usize> {
        (self.offset() < total || self.0 == 1).then_some(self.offset())
    }

    /// This page's share of `items`; `None` past the last.
    pub fn of<T>(self, items: Vec<T>) -> Option<Vec<T>> {
        let start = self.start(items.len())?;
        Some(items.into_iter().skip(start).take(Page::LINES).collect())
    }

    /// How many pages `total` lines fill (one at least).
    pub fn count(total: usize) -> usize {
        total.div_ceil(Page::LINES).max(1)
    }
}

/// Which accounts a `balance` asks about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Account(AccountId),
    Label { name: String, value: String },
}

/// An alert named by its fingerprint, or by a prefix of it long enough to be
/// typed from a phone (6 of its 16 hex digits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRef(String);

impl AlertRef {
    pub const MIN_LEN: usize = 6;

    pub fn parse(text: &str) -> Result<AlertRef, String> {
        let t = text.trim().trim_start_matches('#').to_ascii_lowercase();
        if !t.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!(
                "{text:?} is not an alert id; ids are the hex fingerprints shown on alerts, e.g. e0fae2a6"
            ));
        }
        if t.len() < Self::MIN_LEN || t.len() > 16 {
            return Err(format!(
                "{text:?}: give at least {} and at most 16 hex digits of the alert's id",
                Self::MIN_LEN
            ));
        }
        Ok(AlertRef(t))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn matches(&self, fingerprint: &str) -> bool {
        fingerprint.starts_with(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Eq,
    NotEq,
}

/// One label condition of a silence: `env=prod`, `rule!=poll_failed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matcher {
    pub label: String,
    pub op: MatchOp,
    pub value: String,
}

impl Matcher {
    /// Whether an alert with these labels satisfies the condition. A label the
    /// alert does not have counts as empty, so `team!=core` matches it.
    pub fn matches<'a>(&self, label: impl Fn(&str) -> Option<&'a str>) -> bool {
        let actual = label(&self.label).unwrap_or("");
        match self.op {
            MatchOp::Eq => actual == self.value,
            MatchOp::NotEq => actual != self.value,
        }
    }

    /// `label=value[,label=value…]`, for a silence: each label once at most,
    /// and at least one `=`.
    pub fn parse_list(text: &str) -> Result<Vec<Matcher>, String> {
        let out = Matcher::parse_all(text)?;
        if !out.iter().any(|m| m.op == MatchOp::Eq) {
            // Only negations would silence nearly everything.
            return Err(format!(
                "{text:?} only excludes; name at least one label=value to silence"
            ));
        }
        Ok(out)
    }

    /// `label=value` or `label!=value`, comma-separated, each label once at
    /// most; an empty text is no matchers.
    pub fn parse_all(text: &str) -> Result<Vec<Matcher>, String> {
        let mut out: Vec<Matcher> = Vec::new();
        if text.trim().is_empty() {
            return Ok(out);
        }
        for part in text.split(',') {
            let m = Matcher::parse(part)?;
            if out.iter().any(|o| o.label == m.label) {
                return Err(format!("label {:?} is given twice", m.label));
            }
            out.push(m);
        }
        Ok(out)
    }

    fn parse(text: &str) -> Result<Matcher, String> {
        let (label, op, value) = if let Some((l, v)) = text.split_once("!=") {
            (l, MatchOp::NotEq, v)
        } else if let Some((l, v)) = text.split_once('=') {
            (l, MatchOp::Eq, v)
        } else {
            return Err(format!(
                "{text:?} is not a matcher; write label=value, e.g. account=shop-prod or rule=expiring"
            ));
        };
        let label = label.trim().to_ascii_lowercase();
        let value = value.trim();
        let label_ok = label.starts_with(|c: char| c.is_ascii_lowercase())
            && label
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !label_ok {
            return Err(format!(
                "{label:?} is not a label name; use letters, digits and _ (account, rule, env, …)"
            ));
        }
        if value.is_empty() || value.contains(['=', '!']) {
            return Err(format!(
                "{text:?}: give the label a value, e.g. {label}=prod"
            ));
        }
        match label.as_str() {
            "rule" if RuleName::parse(value).is_none() => {
                let known: Vec<&str> = RuleName::ALL.iter().map(|r| r.as_str()).collect();
                return Err(format!(
                    "unknown rule {value:?}; known: {}",
                    known.join(", ")
                ));
            }
            "severity" if Severity::parse(value).is_none() => {
                return Err(format!("unknown severity {value:?}; use A, B or C"));
            }
            _ => {}
        }
        Ok(Matcher {
            label,
            op,
            value: value.to_owned(),
        })
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            MatchOp::Eq => "=",
            MatchOp::NotEq => "!=",
        };
        write!(f, "{}{op}{}", self.label, self.value)
    }
}

/// An amount as typed, known to parse; its currency is settled against the
/// account's when the command runs. May be negative: an overdue account's
/// portal shows what it owes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmountText(String);

impl AmountText {
    fn parse(text: &str) -> Result<AmountText, AmountError> {
        // The currency does not change what parses; the account's is applied later.
        Money::parse_signed(text, Currency::Cny)?;
        Ok(AmountText(text.to_owned()))
    }

    /// An amount to move: not negative, and not zero.
    fn parse_positive(text: &str) -> Result<AmountText, AmountError> {
        let m = Money::parse(text, Currency::Cny)?;
        if !m.is_positive() {
            return Err(AmountError::Invalid(text.to_owned()));
        }
        Ok(AmountText(text.to_owned()))
    }

    pub fn money(&self, default: Currency) -> Result<Money, AmountError> {
        Money::parse_signed(&self.0, default)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A command that could not be understood. Shown to the user as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandError {
    /// The command it was meant to be, when that much was clear.
    pub verb: Option<Verb>,
    pub message: String,
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        match self.verb {
            Some(v) => write!(f, "\nusage: {}", v.usage()),
            None => write!(f, "\ntry: help"),
        }
    }
}

mod parse;

pub use parse::parse;

/// Longest silence that may be set: a forgotten silence hides real trouble.
pub const MAX_SILENCE_DAYS: i64 = 90;

/// The list of commands a role may run, one per line, for `help`.
pub fn help(role: Role) -> String {
    let mut out = String::new();
    for v in Verb::ALL.into_iter().filter(|v| v.role() <= role) {
        out.push_str(&format!("{} — {}\n", v.usage(), v.summary()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Command {
        parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    fn err(text: &str) -> String {
        match parse(text) {
            Ok(c) => panic!("{text:?} parsed as {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn id(s: &str) -> AccountId {
        AccountId::parse(s).unwrap()
    }

    #[test]
    fn a_page_starts_where_the_one_before_ends() {
        assert_eq!(
            Page::FIRST.start(0),
            Some(0),
            "an empty answer has its first page"
        );
        assert_eq!(Page::new(2).and_then(|p| p.start(25)), None);
        assert_eq!(Page::new(2).and_then(|p| p.start(26)), Some(25));
        assert_eq!(
            Page::new(3).and_then(|p| p.of((0..60).collect())),
            Some((50..60).collect())
        );
        assert_eq!(Page::count(0), 1);
        assert_eq!(Page::count(25), 1);
        assert_eq!(Page::count(1000), 40);
        assert_eq!(Page::new(0), None);
        assert_eq!(Page::new(10_001), None);
    }

    #[test]
    fn parameters_agree_with_the_usage() {
        for verb in Verb::ALL {
            // A second form after `] | ` (oncall's override) is typed whole
            // into the one optional parameter.
            let args = verb.arguments().split("] | ").next().unwrap_or_default();
            let args = if args.len() < verb.arguments().len() {
                format!("{args}]")
            } else {
                args.to_owned()
            };
            let params = verb.parameters();
            let required = args.matches('<').count();
            // `[account | label=value]` is one optional argument; the
            // brackets inside `<label=value[,…]>` are not.
            let optional = args
                .split_whitespace()
                .filter(|w| w.starts_with('['))
                .count();
            assert_eq!(
                params.iter().filter(|p| p.required).count(),
                required,
                "{verb:?}"
            );
            assert_eq!(params.len(), required + optional, "{verb:?}");
            // Required ones first, as platforms that ask one by one insist.
            assert!(
                params.windows(2).all(|w| w[0].required || !w[1].required),
                "{verb:?}"
            );
            // Names and descriptions within what platforms allow.
            for p in params {
                assert!(p.name.len() <= 32 && p.about.chars().count() <= 100);
            }
        }
    }

    #[test]
    fn well_formed_commands() {
        let cases: Vec<(&str, Command)> = vec![
            ("", Command::Help { topic: None }),
            ("help", Command::Help { topic: None }),
            (
                "help silence",
                Command::Help {
                    topic: Some(Verb::Silence),
                },
            ),
            (
                "HELP /Balance",
                Command::Help {
                    topic: Some(Verb::Balance),
                },
            ),
            ("?", Command::Help { topic: None }),
            (
                "balance",
                Command::Balance {
                    target: None,
                    page: Page::FIRST,
                },
            ),
            (
                "balance shop-prod",
                Command::Balance {
                    target: Some(Target::Account(id("shop-prod"))),
                    page: Page::FIRST,
                },
            ),
            (
                "balance page=3",
                Command::Balance {
                    target: None,
                    page: Page(3),
                },
            ),
            (
                "balance Page=2 env=prod",
                Command::Balance {
                    target: Some(Target::Label {
                        name: "env".into(),
                        value: "prod".into(),
                    }),
                    page: Page(2),
                },
            ),
            (
                "  Balance   env=prod ",
                Command::Balance {
                    target: Some(Target::Label {
                        name: "env".into(),
                        value: "prod".into(),
                    }),
                    page: Page::FIRST,
                },
            ),
            (
                "runway",
                Command::Runway {
                    account: None,
                    page: Page::FIRST,
                },
            ),
            (
                "runway manual-cn",
                Command::Runway {
                    account: Some(id("manual-cn")),
                    page: Page::FIRST,
                },
            ),
            (
                "runway page=12",
                Command::Runway {
                    account: None,
                    page: Page(12),
                },
            ),
            (
                "expiring",
                Command::Expiring {
                    days: 30,
                    page: Page::FIRST,
                },
            ),
            (
                "expiring 7",
                Command::Expiring {
                    days: 7,
                    page: Page::FIRST,
                },
            ),
            (
                "expiring 2w page=2",
                Command::Expiring {
                    days: 14,
                    page: Page(2),
                },
            ),
            ("alerts", Command::Alerts { page: Page::FIRST }),
            ("alerts page=4", Command::Alerts { page: Page(4) }),
            ("silences", Command::Silences),
            ("whoami", Command::Whoami),
            (
                "ack e0fae2a6",
                Command::Ack {
                    alert: AlertRef("e0fae2a6".into()),
                },
            ),
            (
                "acknowledge #E0FAE2A62FEACDDD",
                Command::Ack {
                    alert: AlertRef("e0fae2a62feacddd".into()),
                },
            ),
            (
                "silence account=shop-prod,rule=expiring 24h renewal booked for Friday",
                Command::Silence {
                    matchers: vec![
                        Matcher {
                            label: "account".into(),
                            op: MatchOp::Eq,
                            value: "shop-prod".into(),
                        },
                        Matcher {
                            label: "rule".into(),
                            op: MatchOp::Eq,
                            value: "expiring".into(),
                        },
                    ],
                    duration: Duration::hours(24),
                    reason: Some("renewal booked for Friday".into()),
                },
            ),
            (
                "silence env=dev,severity!=A 1h30m “load test”",
                Command::Silence {
                    matchers: vec![
                        Matcher {
                            label: "env".into(),
                            op: MatchOp::Eq,
                            value: "dev".into(),
                        },
                        Matcher {
                            label: "severity".into(),
                            op: MatchOp::NotEq,
                            value: "A".into(),
                        },
                    ],
                    duration: Duration::minutes(90),
                    reason: Some("load test".into()),
                },
            ),
            (
                "silence team=core 2d",
                Command::Silence {
                    matchers: vec![Matcher {
                        label: "team".into(),
                        op: MatchOp::Eq,
                        value: "core".into(),
                    }],
                    duration: Duration::days(2),
                    reason: None,
                },
            ),
            ("unsilence 12", Command::Unsilence { id: 12 }),
            ("unsilence #12", Command::Unsilence { id: 12 }),
            (
                "setbalance manual-cn 12,000",
                Command::SetBalance {
                    account: id("manual-cn"),
                    amount: AmountText("12,000".into()),
                    part: None,
                },
            ),
            (
                "setbalance shop-prod ¥3,000 contract=COC-2024-7891",
                Command::SetBalance {
                    account: id("shop-prod"),
                    amount: AmountText("¥3,000".into()),
                    part: Some(crate::domain::model::EnteredBucket::Contract(
                        "COC-2024-7891".into(),
                    )),
                },
            ),
            (
                "setbalance shop-prod unallocated 5,000 CNY",
                Command::SetBalance {
                    account: id("shop-prod"),
                    amount: AmountText("5,000 CNY".into()),
                    part: Some(crate::domain::model::EnteredBucket::Unallocated),
                },
            ),
            (
                "setbalance manual-cn -¥120.50",
                Command::SetBalance {
                    account: id("manual-cn"),
                    amount: AmountText("-¥120.50".into()),
                    part: None,
                },
            ),
            (
                "set-balance manual-cn 1,000 CNY",
                Command::SetBalance {
                    account: id("manual-cn"),
                    amount: AmountText("1,000 CNY".into()),
                    part: None,
                },
            ),
        ];
        for (text, want) in cases {
            assert_eq!(ok(text), want, "{text:?}");
        }
    }

    #[test]
    fn every_malformed_form_gets_a_precise_message_and_usage() {
        let cases: Vec<(&str, &str)> = vec![
            (
                "balanse",
                "unknown command \"balanse\"; did you mean \"balance\"?\ntry: help",
            ),
            ("frobnicate", "unknown command \"frobnicate\"\ntry: help"),
            (
                "balance a b",
                "unexpected \"b\"\nusage: balance [account | label=value] [page=N]",
            ),
            (
                "balance page=0",
                "\"page=0\": write page=2 for the second page",
            ),
            ("runway page=two", "\"page=two\": write page=2"),
            ("alerts page=-1", "write page=2"),
            ("expiring 7 page=99999", "write page=2"),
            ("alerts page=2 page=3", "page= given twice"),
            (
                "alerts page=2 now",
                "unexpected \"now\"\nusage: alerts [page=N]",
            ),
            ("balance env=", "give the label a value"),
            ("balance env!=prod", "write label=value"),
            ("balance Bad/Id", "usage: balance"),
            ("runway a b", "unexpected \"b\""),
            ("expiring soon", "\"soon\" is not a number of days"),
            ("expiring 0", "give 1 to 366 days"),
            ("expiring 400", "give 1 to 366 days"),
            ("expiring 36h", "give whole days"),
            ("alerts now", "unexpected \"now\"\nusage: alerts [page=N]"),
            ("whoami please", "whoami takes no arguments"),
            ("ack", "which alert? give its id\nusage: ack <alert id>"),
            ("ack e0f", "at least 6"),
            ("ack low_balance", "is not an alert id"),
            ("ack e0fae2a6 e0fae2a6", "unexpected"),
            ("silence", "give what to silence and for how long"),
            ("silence env=dev", "give what to silence and for how long"),
            ("silence dev 1h", "\"dev\" is not a matcher"),
            ("silence env=dev forever", "\"forever\" is not a duration"),
            ("silence env=dev 5", "lacks a unit"),
            ("silence env=dev 0s", "more than 0s"),
            ("silence env=dev 91d", "at most 90d"),
            (
                "silence env=dev 99999999999999d",
                "a silence may last at most 90d",
            ),
            (
                "silence env=dev 99999999999999999999999w",
                "a silence may last at most 90d",
            ),
            (
                "silence rule=low_balace 1h",
                "unknown rule \"low_balace\"; known: low_balance",
            ),
            ("silence severity=D 1h", "unknown severity \"D\""),
            (
                "silence env=dev,env=prod 1h",
                "label \"env\" is given twice",
            ),
            ("silence env!=prod 1h", "only excludes"),
            ("silence 9env=x 1h", "is not a label name"),
            ("silence env=a=b 1h", "give the label a value"),
            ("unsilence", "which silence?"),
            ("unsilence abc", "\"abc\" is not a silence number"),
            ("unsilence -1", "is not a silence number"),
            ("setbalance", "give the account and its balance"),
            ("setbalance manual-cn", "give manual-cn's balance"),
            (
                "setbalance manual-cn 5,00.0",
                "misplaced thousands separators",
            ),
            ("setbalance manual-cn 1.234", "more than two decimals"),
            ("setbalance manual-cn 1e4", "exponent"),
            ("setbalance manual-cn 10 EUR", "unknown currency"),
            ("setbalance acme 5 contract=", "give the contract's number"),
            (
                "setbalance acme 5 contract=COC-1 unallocated",
                "give one contract, or unallocated",
            ),
            ("help me", "no command \"me\""),
            ("help silense", "did you mean \"silence\"?"),
        ];
        for (text, want) in cases {
            let got = err(text);
            assert!(got.contains(want), "{text:?}: {got:?} lacks {want:?}");
        }
    }

    #[test]
    fn an_override_reads_dates_times_spans_and_a_reason() {
        let date = |d: &str| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap();
        let over = |from, until, reason: Option<&str>| Command::Override {
            schedule: "ops".into(),
            person: "bo".into(),
            from,
            until,
            reason: reason.map(str::to_owned),
        };
        for (text, want) in [
            (
                "oncall override ops bo 2026-11-25 2026-11-26",
                over(
                    When::Wall(date("2026-11-25"), 0),
                    When::Wall(date("2026-11-26"), 0),
                    None,
                ),
            ),
            (
                "oncall override ops bo 2026-11-25 09:00 2026-11-25T18:30 covering leave",
                over(
                    When::Wall(date("2026-11-25"), 9 * 60),
                    When::Wall(date("2026-11-25"), 18 * 60 + 30),
                    Some("covering leave"),
                ),
            ),
            (
                "OnCall override ops bo now 12h",
                over(When::Now, When::After(Duration::hours(12)), None),
            ),
        ] {
            assert_eq!(ok(text), want, "{text}");
        }
        assert_eq!(ok("oncall"), Command::Oncall { schedule: None });
        assert_eq!(ok("oncall ops").verb(), Verb::Oncall);
        assert_eq!(ok("escalations"), Command::Escalations);
        for (text, says) in [
            (
                "oncall override ops bo 2026-11-25 24:00 2026-11-26",
                "from: \"2026-11-25T24:00\" is not a date or time",
            ),
            (
                "oncall override ops bo 8h 2026-11-26",
                "from: \"8h\" is not a date; write now or e.g. 2026-11-25",
            ),
            (
                "oncall override ops bo now 0h",
                "until: give a span longer than 0s",
            ),
            (
                "oncall override ops bo now 2026-02-30",
                "until: \"2026-02-30\" is not a date or time",
            ),
        ] {
            let e = err(text);
            assert!(e.starts_with(says), "{text}: {e}");
            assert!(e.ends_with("usage: oncall [schedule] | override <schedule> <person> <from> <until> [reason]"), "{e}");
        }
    }

    #[test]
    fn roles_are_ordered_and_help_shows_what_a_role_may_run() {
        assert!(Role::Viewer < Role::Requester && Role::Approver < Role::Admin);
        let viewer = help(Role::Viewer);
        assert!(viewer.contains("balance [account | label=value]"));
        assert!(!viewer.contains("silence <"));
        assert!(!viewer.contains("setbalance"));
        let admin = help(Role::Admin);
        assert_eq!(admin.lines().count(), Verb::ALL.len());
        assert_eq!(ok("setbalance a 1").verb().role(), Role::Approver);
        assert_eq!(ok("ack abcdef").verb().role(), Role::Requester);
    }

    #[test]
    fn matchers_match_labels_and_treat_missing_as_empty() {
        let ms = Matcher::parse_list("env=prod,team!=core").unwrap();
        let labels = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| *v)
        };
        let all = |l: &dyn Fn(&str) -> Option<&'static str>| ms.iter().all(|m| m.matches(l));
        assert!(all(&labels(&[("env", "prod")])));
        assert!(all(&labels(&[("env", "prod"), ("team", "data")])));
        assert!(!all(&labels(&[("env", "prod"), ("team", "core")])));
        assert!(!all(&labels(&[("env", "dev")])));
        assert_eq!(ms[1].to_string(), "team!=core");
    }

    #[test]
    fn amounts_take_the_accounts_currency_when_run() {
        let Command::SetBalance { amount, .. } = ok("setbalance a 1,000") else {
            unreachable!()
        };
        assert_eq!(
            amount.money(Currency::Usd).unwrap().to_string(),
            "$1,000.00"
        );
        let Command::SetBalance { amount, .. } = ok("setbalance a ¥1,000") else {
            unreachable!()
        };
        assert_eq!(
            amount.money(Currency::Cny).unwrap().to_string(),
            "¥1,000.00"
        );
    }

    fn eid(s: &str) -> ExternalId {
        ExternalId::parse(s).unwrap()
    }

    #[test]
    fn request_commands_parse() {
        assert_eq!(
            ok("topup shop-prod 10,000 wire month-end run"),
            Command::Topup {
                account: id("shop-prod"),
                amount: AmountText("10,000".into()),
                method: Some(PaymentMethod::Wire),
                reason: Some("month-end run".into()),
            }
        );
        let Command::Topup { amount, method, .. } = ok("top-up shop 5000 CNY") else {
            unreachable!()
        };
        assert_eq!(amount.as_str(), "5000 CNY");
        assert_eq!(method, None);
        assert_eq!(
            ok("renew ins-a,ins-b 1y before the audit"),
            Command::Renew {
                resources: vec![eid("ins-a"), eid("ins-b")],
                months: 12,
                reason: Some("before the audit".into()),
            }
        );
        assert!(matches!(
            ok("renew ins-a 6"),
            Command::Renew { months: 6, .. }
        ));
        assert_eq!(
            ok("pay 2024110100001 2024110100002 coupon=c1 discount=d9 quarterly"),
            Command::Pay {
                orders: vec![eid("2024110100001"), eid("2024110100002")],
                coupons: vec!["c1".into()],
                discount: Some("d9".into()),
                reason: Some("quarterly".into()),
            }
        );
        assert_eq!(
            ok("autorenew ins-a off retiring it"),
            Command::Autorenew {
                resource: eid("ins-a"),
                on: false,
                reason: Some("retiring it".into()),
            }
        );
        assert!(matches!(
            ok("allocate shop 3,000 COC-2024-7891"),
            Command::Allocate { ref contract, reason: None, .. } if contract == "COC-2024-7891"
        ));
        assert_eq!(ok("requests"), Command::Requests { all: false });
        assert_eq!(ok("requests all"), Command::Requests { all: true });
        assert_eq!(ok("request r3"), Command::Request { id: RequestId(3) });
        assert_eq!(
            ok("approve R3 123456"),
            Command::Approve {
                id: RequestId(3),
                code: Some("123456".into())
            }
        );
        assert_eq!(
            ok("deny #3 not this month"),
            Command::Deny {
                id: RequestId(3),
                reason: Some("not this month".into())
            }
        );
        assert_eq!(ok("cancel 3"), Command::Cancel { id: RequestId(3) });
    }

    #[test]
    fn malformed_requests_say_what_is_wrong() {
        let cases = [
            ("topup", "give the account and the amount"),
            ("topup shop", "give the amount for shop"),
            ("topup shop 5,00.0", "misplaced thousands separators"),
            ("topup shop -500", "negative amounts are not allowed"),
            ("topup shop 0", "is not an amount"),
            ("renew ins-a", "give what to renew and for how long"),
            ("renew ins-a 5w", "give months (6m) or years (1y)"),
            ("renew ins-a 0m", "give 1 month to 5 years"),
            ("renew ins-a 6y", "give 1 month to 5 years"),
            ("renew ins-a,,ins-b 1m", "an empty resource id"),
            ("renew ins-a,ins-a 1m", "resource ins-a is given twice"),
            ("pay", "which order?"),
            ("pay o1 o1", "order o1 is given twice"),
            ("pay o1 discount=a discount=b", "one discount at most"),
            ("pay o1 coupon=", "give the coupon's or discount's id"),
            ("autorenew ins-a maybe", "write on or off"),
            ("allocate shop 1000", "give the contract"),
            ("approve", "which request?"),
            ("approve R3 12345", "codes are 6 digits"),
            ("approve Rx", "not a request id"),
            ("requests some", "write requests, or requests all"),
            ("cancel R3 now", "unexpected"),
        ];
        for (text, wanted) in cases {
            let e = err(text);
            assert!(e.contains(wanted), "{text:?} gave {e:?}");
            assert!(e.contains("usage:"), "{text:?} gave {e:?}");
        }
    }

    #[test]
    fn request_verbs_need_their_roles() {
        assert_eq!(Verb::Requests.role(), Role::Viewer);
        assert_eq!(Verb::Topup.role(), Role::Requester);
        assert_eq!(Verb::Approve.role(), Role::Approver);
        assert_eq!(Verb::parse("recharge"), Some(Verb::Topup));
    }
}
