//! Requests for money: asking (`topup`, `allocate`, `renew`, `pay`,
//! `autorenew`), listing, and deciding (`approve`, `deny`, `cancel`,
//! `resolve`).

use chrono::{DateTime, Utc};

use super::{ChatOps, Reply, capitalize};
use crate::domain::command::{self, AmountText, Target};
use crate::domain::model::AccountId;
use crate::domain::people::Person;
use crate::domain::request::{Action, PaymentMethod, Request, RequestId, State, Verdict, Via};
use crate::engine::approvals::{self, Cancelled, Decided, Opened, Resolved, Vote};
use crate::ports::StoreError;

impl ChatOps {
    /// Where an approved top-up's money goes, as the account's config says.
    pub(super) fn payee(&self, r: &Request) -> Option<String> {
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
    pub(super) fn amount_on(
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
    pub(super) async fn ask(
        &self,
        person: &Person,
        account: Option<&AccountId>,
        action: Action,
        reason: Option<String>,
        via: Via,
        now: DateTime<Utc>,
    ) -> Result<Reply, StoreError> {
        let account = match self.approvals.account_of(account, &action).await? {
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

    /// `topup`: a request to pay money in, by the account's own method
    /// unless one is named.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn topup(
        &self,
        person: &Person,
        account: AccountId,
        amount: AmountText,
        method: Option<PaymentMethod>,
        reason: Option<String>,
        via: Via,
        now: DateTime<Utc>,
    ) -> Result<Reply, StoreError> {
        let amount = match self.amount_on(&account, &amount) {
            Ok(m) => m,
            Err(no) => return Ok(*no),
        };
        let Some(method) = method.or_else(|| self.approvals.default_method(&account)) else {
            return Ok(Reply::refused(format!(
                "{account} takes no top-ups through purser."
            )));
        };
        let action = Action::Topup { amount, method };
        self.ask(person, Some(&account), action, reason, via, now)
            .await
    }

    /// `allocate`: a request to move money to a contract.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn allocate(
        &self,
        person: &Person,
        account: AccountId,
        amount: AmountText,
        contract: String,
        reason: Option<String>,
        via: Via,
        now: DateTime<Utc>,
    ) -> Result<Reply, StoreError> {
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
            .await
    }

    /// `requests`: the open ones, or (`all`) the recent ones.
    pub(super) async fn requests(&self, all: bool) -> Result<Reply, StoreError> {
        let list = self.approvals.requests.requests(!all, 50).await?;
        let title = if all {
            format!("Recent requests: {}", list.len())
        } else {
            format!("Open requests: {}", list.len())
        };
        Ok(Reply::done(title, list.iter().map(request_line).collect()))
    }

    /// `request`: one request's card.
    pub(super) async fn request(&self, id: RequestId) -> Result<Reply, StoreError> {
        Ok(match self.approvals.requests.request(id).await? {
            Some(r) => {
                let mut lines = approvals::card(&r);
                if let Some(p) = self.payee(&r) {
                    lines.push(format!("pay to: {p}"));
                }
                Reply::done(format!("{} · {}", r.id, r.state), lines)
            }
            None => Reply::refused(format!("There is no request {id}.")),
        })
    }

    /// `approve`: a vote for; the payer is told where the money goes.
    pub(super) async fn approve(
        &self,
        person: &Person,
        id: RequestId,
        code: Option<String>,
        via: Via,
        now: DateTime<Utc>,
    ) -> Result<Reply, StoreError> {
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
        Ok(decided_reply(decided, payee))
    }

    /// `deny`: a vote against.
    pub(super) async fn deny(
        &self,
        person: &Person,
        id: RequestId,
        reason: Option<String>,
        via: Via,
        now: DateTime<Utc>,
    ) -> Result<Reply, StoreError> {
        let vote = Vote {
            verdict: Verdict::Deny,
            code: None,
            comment: reason,
            via,
        };
        Ok(decided_reply(
            self.approvals.decide(person, id, vote, now).await?,
            None,
        ))
    }

    /// `cancel`: by its requester, before anything is charged.
    pub(super) async fn cancel(
        &self,
        person: &Person,
        id: RequestId,
        now: DateTime<Utc>,
    ) -> Result<Reply, StoreError> {
        Ok(match self.approvals.cancel(person, id, now).await? {
            Cancelled::Cancelled(r) => Reply::done(
                format!("{} cancelled: nothing will be charged for it.", r.id),
                approvals::card(&r),
            ),
            Cancelled::Refused(no) => Reply::refused(format!("{}.", capitalize(&no.to_string()))),
            Cancelled::NotFound(id) => Reply::refused(format!("There is no request {id}.")),
        })
    }

    /// `resolve`: a person's word on how an unclear request ended.
    pub(super) async fn resolve(
        &self,
        person: &Person,
        id: RequestId,
        done: bool,
        note: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<Reply, StoreError> {
        let resolved = self
            .approvals
            .resolve(person, id, done, note.as_deref(), now)
            .await?;
        Ok(match resolved {
            Resolved::Resolved(r) => Reply::done(
                format!(
                    "{} is {}, on {}'s word; recorded in the audit log.",
                    r.id, r.state, person.name
                ),
                approvals::card(&r),
            ),
            Resolved::Refused(no) => Reply::refused(format!("{}.", capitalize(&no.to_string()))),
            Resolved::NotFound(id) => Reply::refused(format!("There is no request {id}.")),
        })
    }
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
