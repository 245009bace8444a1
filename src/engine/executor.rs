//! Carries out approved requests, exactly once. Every call to a cloud is
//! recorded before it is made (with the request's idempotency key) and its
//! answer after; a run that stops anywhere — a crash, a lost answer, another
//! replica — leaves the request where the next run can tell what happened:
//! a call whose answer was lost is read back from the cloud, and repeated
//! only when the cloud shows it did not take effect. What the cloud shows
//! that cannot be tied to the request leaves it unclear, for a person to
//! settle: purser never guesses with money. What no API can do (money paid
//! in, a payment only the console takes) becomes a task for a person that
//! purser closes when it sees the result.
//!
//! One runner carries a request out at a time: it holds a short lease on
//! the request's row and renews it while it works, so a runner that dies is
//! taken over once its lease lapses, and a live one never is. Two requests
//! that change the same thing run one after the other.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::{Instrument, warn};

use crate::domain::account::AccountSpec;
use crate::domain::audit::{Event, NewEntry};
use crate::domain::model::Account;
use crate::domain::request::{Action, Request, RequestId, State};
use crate::ports::{
    ActionError, Actions, CallAnswer, Clock, CloudCall, Lease, LostCall, NextCall, ProviderError,
    ReadBack, Requests, Step, StoreError, Written,
};

use super::approvals::PURSER;

/// Each call is given this many tries (each after the cloud showed the one
/// before did not take effect) before the request fails.
const TRIES: u32 = 5;

/// How long a runner's lease on a request lasts unless renewed; it renews
/// it every third of that while it works.
const LEASE: Duration = Duration::seconds(30);

/// A call without an idempotency token whose answer was lost is not taken
/// as not made until this long after it was sent: a cloud may still apply
/// it late, and a repeat would then charge twice.
const SETTLE: Duration = Duration::minutes(5);

/// A lost answer the cloud still shows neither way this long after the call
/// is for a person: something is wrong that waiting will not mend.
const UNKNOWN_FOR: Duration = Duration::hours(2);

/// One call made, with its answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Made {
    call: CloudCall,
    answer: CallAnswer,
}

/// A call recorded as about to be made, whose answer is not recorded yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Pending {
    call: CloudCall,
    at: DateTime<Utc>,
}

/// What carrying out a request has done, as stored in its progress.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Execution {
    #[serde(default)]
    made: Vec<Made>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pending: Option<Pending>,
    /// Tries of the call now under way or next: each one whose answer was
    /// lost and that the cloud showed had not taken effect counts.
    #[serde(default)]
    tries: u32,
    /// What the cloud's receipt says, once done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<String>,
    /// Why it failed, in the cloud's words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// Why purser cannot tell whether it was done, when it cannot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unclear: Option<String>,
}

impl Execution {
    fn made(&self) -> Vec<(CloudCall, CallAnswer)> {
        self.made
            .iter()
            .map(|m| (m.call.clone(), m.answer.clone()))
            .collect()
    }

    /// What the calls made at the cloud (order ids), this request's alone.
    pub fn effects(&self) -> impl Iterator<Item = &String> {
        self.made.iter().flat_map(|m| m.answer.effects.iter())
    }
}

/// A request's execution, read from its progress.
pub fn execution(progress: Option<&Value>) -> Option<Execution> {
    serde_json::from_value(progress?.get("execution")?.clone()).ok()
}

pub struct Executor {
    pub requests: Arc<dyn Requests>,
    pub accounts: Arc<Vec<Arc<AccountSpec>>>,
    /// Each provider's actions, by provider name. A provider without any
    /// (no API for changes) gets tasks for people instead.
    pub actions: HashMap<String, Arc<dyn Actions>>,
    pub clock: Arc<dyn Clock>,
    /// Names this runner in the leases it holds: unique per process.
    holder: String,
    /// Requests this process is running now.
    running: Mutex<HashSet<RequestId>>,
}

/// Why a run stopped before the request reached a final or waiting state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Paused {
    /// Another run is on it (a racing replica, or one whose lease has not
    /// lapsed yet).
    Elsewhere,
    /// Another request changes the same thing and goes first.
    Queued { behind: RequestId, on: String },
    /// The cloud could not be asked; the next sweep tries again.
    Unreachable(String),
    /// The answer was lost and the cloud does not show yet whether the call
    /// took effect; the next sweep reads it back again.
    Unknown(String),
}

/// What a run left.
#[derive(Debug, Clone)]
pub struct Ran {
    pub request: Request,
    pub paused: Option<Paused>,
}

enum Flow {
    Again,
    Stop(Option<Paused>),
}

struct Running<'a> {
    set: &'a Mutex<HashSet<RequestId>>,
    id: RequestId,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

impl Executor {
    pub fn new(
        requests: Arc<dyn Requests>,
        accounts: Arc<Vec<Arc<AccountSpec>>>,
        actions: HashMap<String, Arc<dyn Actions>>,
        clock: Arc<dyn Clock>,
    ) -> Executor {
        Executor {
            requests,
            accounts,
            actions,
            clock,
            holder: runner_name(),
            running: Mutex::new(HashSet::new()),
        }
    }

    fn account(&self, r: &Request) -> Option<&AccountSpec> {
        self.accounts
            .iter()
            .find(|a| a.account.id == r.account)
            .map(|a| &**a)
    }

    fn actions_for(&self, a: &AccountSpec) -> Option<&Arc<dyn Actions>> {
        self.actions.get(&a.account.provider)
    }

    /// Runs request `id` as far as it can go now: an approved request is
    /// started, an executing one continued. Anything else is left as it is.
    pub async fn run(&self, id: RequestId) -> Result<Option<Ran>, StoreError> {
        let span = tracing::info_span!("execute", request = %id);
        self.run_request(id).instrument(span).await
    }

    async fn run_request(&self, id: RequestId) -> Result<Option<Ran>, StoreError> {
        let fresh = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id);
        if !fresh {
            return Ok(self.requests.request(id).await?.map(|request| Ran {
                request,
                paused: Some(Paused::Elsewhere),
            }));
        }
        let _guard = Running {
            set: &self.running,
            id,
        };
        let Some(r) = self.requests.request(id).await? else {
            return Ok(None);
        };
        if !matches!(r.state, State::Approved | State::Executing) {
            return Ok(Some(Ran {
                request: r,
                paused: None,
            }));
        }
        let now = self.clock.now();
        if let Lease::HeldBy { holder, until } = self
            .requests
            .hold(id, &self.holder, now, now + LEASE)
            .await?
        {
            tracing::debug!(request = %id, %holder, %until, "another runner holds it");
            return Ok(Some(Ran {
                request: r,
                paused: Some(Paused::Elsewhere),
            }));
        }
        // The work and the lease's heartbeat side by side: when the lease is
        // lost (this runner stalled past it), the work stops where it is and
        // the new holder reads back whatever was under way.
        let ran = tokio::select! {
            biased;
            ran = self.rounds(id) => ran,
            lost = self.heartbeat(id) => match lost {
                Ok(()) => self.requests.request(id).await.map(|r| {
                    r.map(|request| Ran {
                        request,
                        paused: Some(Paused::Elsewhere),
                    })
                }),
                Err(e) => Err(e),
            },
        };
        if let Err(e) = self.requests.release(id, &self.holder).await {
            // It lapses by itself.
            warn!(request = %id, error = %e, "the lease could not be given up");
        }
        ran
    }

    /// Renews the lease on `id` every third of its length; returns when
    /// another runner has taken it (this one stalled past it).
    async fn heartbeat(&self, id: RequestId) -> Result<(), StoreError> {
        loop {
            let at = self.clock.now() + LEASE / 3;
            self.clock.sleep_until(at).await;
            let now = self.clock.now();
            if let Lease::HeldBy { holder, .. } = self
                .requests
                .hold(id, &self.holder, now, now + LEASE)
                .await?
            {
                warn!(request = %id, %holder, "the lease was taken over; stopping here");
                return Ok(());
            }
        }
    }

    async fn rounds(&self, id: RequestId) -> Result<Option<Ran>, StoreError> {
        // Each round records something, so a run ends; the bound is a guard.
        for _ in 0..64 {
            let Some(r) = self.requests.request(id).await? else {
                return Ok(None);
            };
            let flow = match r.state {
                State::Approved => self.begin(&r).await?,
                State::Executing => self.step(&r).await?,
                _ => Flow::Stop(None),
            };
            if let Flow::Stop(paused) = flow {
                let request = self.requests.request(id).await?.unwrap_or(r);
                return Ok(Some(Ran { request, paused }));
            }
        }
        Err(StoreError::Corrupt(format!(
            "{id} did not settle in 64 steps"
        )))
    }

    /// Runs every approved or executing request: after a restart, and on
    /// each sweep for those a cloud could not be asked about before.
    pub async fn resume(&self) -> Result<Vec<Ran>, StoreError> {
        let mut out = Vec::new();
        for r in self.requests.requests(true, 500).await? {
            if matches!(r.state, State::Approved | State::Executing)
                && let Some(ran) = self.run(r.id).await?
            {
                out.push(ran);
            }
        }
        Ok(out)
    }

    /// An approved request: money paid in becomes a task for a person; a
    /// change the cloud's API makes starts executing; one it cannot make
    /// becomes a task too.
    async fn begin(&self, r: &Request) -> Result<Flow, StoreError> {
        let now = self.clock.now();
        let by_hand = match &r.action {
            Action::Topup { .. } | Action::Allocate { .. } => None,
            action => {
                let Some(a) = self.account(r) else {
                    return self
                        .fail(r, State::Approved, "the account is no longer configured")
                        .await;
                };
                match self.actions_for(a) {
                    None => Some("this cloud has no API for it; do it in the console".to_owned()),
                    Some(actions) => match actions.next(&a.account, action, &[]).await {
                        Ok(NextCall::ByHand(what)) => Some(what),
                        Ok(_) => {
                            let progress = json!({"execution": Execution::default()});
                            let step = Step {
                                progress: Some(&progress),
                                ..Step::new(State::Approved, State::Executing, PURSER, now)
                            };
                            return Ok(match self.requests.transition(r.id, step).await? {
                                Written::Done(_) => Flow::Again,
                                Written::Busy { by, on } => {
                                    Flow::Stop(Some(Paused::Queued { behind: by, on }))
                                }
                                Written::Stale(_) | Written::NotFound => {
                                    Flow::Stop(Some(Paused::Elsewhere))
                                }
                            });
                        }
                        Err(e) => return Ok(Flow::Stop(Some(Paused::Unreachable(e.to_string())))),
                    },
                }
            }
        };
        let mut task = json!({
            "owner": &r.requested_by,
            "reference": &r.key,
            "baseline": r.balance.map(|b| b.to_string()),
            "opened_at": now.to_rfc3339(),
        });
        if let Some(amount) = r.action.stated_amount() {
            task["amount"] = json!(amount.to_string());
        }
        if let Some(what) = &by_hand {
            task["by_hand"] = json!(what);
        }
        let progress = json!({ "task": &task });
        let note = [NewEntry::new(
            now,
            PURSER,
            Event::Note,
            Some(r.id),
            json!({ "task": &task }),
        )];
        let step = Step {
            progress: Some(&progress),
            audit: &note,
            ..Step::new(State::Approved, State::AwaitingPayment, PURSER, now)
        };
        self.requests.transition(r.id, step).await?;
        Ok(Flow::Stop(None))
    }

    /// One move of an executing request: read back a call whose answer was
    /// lost, or make the next call, or finish.
    async fn step(&self, r: &Request) -> Result<Flow, StoreError> {
        let now = self.clock.now();
        let mut exec = execution(self.requests.progress(r.id).await?.as_ref()).unwrap_or_default();
        let Some(a) = self.account(r) else {
            return self
                .fail(r, State::Executing, "the account is no longer configured")
                .await;
        };
        let Some(actions) = self.actions_for(a).cloned() else {
            return self
                .fail(r, State::Executing, "the cloud has no API for it")
                .await;
        };
        let account = &a.account;

        // This runner holds the lease: whoever recorded a call still pending
        // is not making it any more (it died, or its answer was lost).
        if let Some(p) = exec.pending.clone() {
            return self
                .read_back(r, exec, (account, actions.as_ref()), &p, now)
                .await;
        }

        let next = match actions.next(account, &r.action, &exec.made()).await {
            Ok(n) => n,
            Err(e) => return Ok(Flow::Stop(Some(Paused::Unreachable(e.to_string())))),
        };
        let call = match next {
            NextCall::Done { .. } | NextCall::ByHand(_) => {
                return self.finish(r, exec, next, now).await;
            }
            NextCall::Call(c) => c,
        };
        if exec.tries >= TRIES {
            let why = format!(
                "{} was tried {TRIES} times; each time its outcome was lost (no answer, or purser stopped mid-call) and the cloud showed afterwards that it had not taken effect",
                call.name
            );
            return self.fail_with(r, exec, &why, now).await;
        }

        // Recorded before the call: a crash from here on leaves a trace.
        exec.pending = Some(Pending {
            call: call.clone(),
            at: now,
        });
        exec.tries += 1;
        let audit = [NewEntry::new(
            now,
            PURSER,
            Event::Call,
            Some(r.id),
            json!({
                "call": &call.name,
                "params": &call.params,
                "key": &r.key,
                "repeatable": call.repeatable,
            }),
        )];
        let Some(r) = self.save(r, &exec, &audit).await? else {
            return Ok(Flow::Stop(Some(Paused::Elsewhere)));
        };

        match actions.call(account, &call, &r.key).await {
            Ok(answer) => self.answered(&r, exec, answer, false).await,
            Err(ActionError::Refused { code, message }) => {
                let why = format!("{}: {code}: {message}", call.name);
                let answer = [NewEntry::new(
                    self.clock.now(),
                    PURSER,
                    Event::Answer,
                    Some(r.id),
                    json!({"call": &call.name, "code": code, "message": message}),
                )];
                exec.pending = None;
                exec.failure = Some(why);
                self.end(&r, exec, State::Failed, &answer).await
            }
            Err(ActionError::NotSent(e)) => {
                // Nothing reached the cloud: the call is not pending. A
                // refused key will not heal by itself.
                exec.pending = None;
                exec.tries = exec.tries.saturating_sub(1);
                let note = [NewEntry::new(
                    self.clock.now(),
                    PURSER,
                    Event::Note,
                    Some(r.id),
                    json!({"call": &call.name, "not_sent": e.to_string()}),
                )];
                if let ProviderError::Unauthorized(_) = e {
                    exec.failure = Some(format!("{}: {e}", call.name));
                    return self.end(&r, exec, State::Failed, &note).await;
                }
                Ok(match self.save(&r, &exec, &note).await? {
                    Some(_) => Flow::Stop(Some(Paused::Unreachable(e.to_string()))),
                    None => Flow::Stop(Some(Paused::Elsewhere)),
                })
            }
            Err(ActionError::Unknown(why)) => {
                warn!(request = %r.id, call = %call.name, %why, "the answer was lost; reading back");
                let pending = Pending { call, at: now };
                self.read_back(
                    &r,
                    exec,
                    (account, actions.as_ref()),
                    &pending,
                    self.clock.now(),
                )
                .await
            }
        }
    }

    /// The answer to a call whose outcome was not known: what the cloud
    /// shows decides whether it happened.
    async fn read_back(
        &self,
        r: &Request,
        mut exec: Execution,
        (account, actions): (&Account, &dyn Actions),
        p: &Pending,
        now: DateTime<Utc>,
    ) -> Result<Flow, StoreError> {
        let claimed = self.claimed_by_others(r).await?;
        let lost = LostCall {
            call: &p.call,
            key: &r.key,
            since: p.at,
            claimed: &claimed,
        };
        match actions.read_back(account, lost).await {
            Ok(ReadBack::Happened(answer)) => {
                if let Some(e) = answer.effects.iter().find(|e| claimed.contains(e)) {
                    // The adapter should not have offered it; never pay for
                    // another request's effect.
                    let why = format!(
                        "{}'s answer was lost, and what the cloud shows ({e}) belongs to another request",
                        p.call.name
                    );
                    return self.unclear(r, exec, &why, now).await;
                }
                self.answered(r, exec, answer, true).await
            }
            Ok(ReadBack::NotHappened) if !p.call.repeatable && now < p.at + SETTLE => {
                Ok(Flow::Stop(Some(Paused::Unknown(format!(
                    "{} shows no effect yet; a cloud may still apply it late, so it is not sent again before {}",
                    p.call.name,
                    (p.at + SETTLE).format("%H:%M:%S UTC")
                )))))
            }
            Ok(ReadBack::Unknown(why)) if now >= p.at + UNKNOWN_FOR => {
                let why = format!(
                    "{}'s answer was lost, and {} hours later the cloud still does not show whether it took effect ({why})",
                    p.call.name,
                    UNKNOWN_FOR.num_hours()
                );
                self.unclear(r, exec, &why, now).await
            }
            Ok(ReadBack::Unclear(why)) => {
                let why = format!("{}'s answer was lost, and {why}", p.call.name);
                self.unclear(r, exec, &why, now).await
            }
            Ok(ReadBack::NotHappened) => {
                exec.pending = None;
                let note = [NewEntry::new(
                    now,
                    PURSER,
                    Event::Note,
                    Some(r.id),
                    json!({"call": &p.call.name, "read_back": "not happened"}),
                )];
                Ok(match self.save(r, &exec, &note).await? {
                    Some(_) => Flow::Again,
                    None => Flow::Stop(Some(Paused::Elsewhere)),
                })
            }
            Ok(ReadBack::Unknown(why)) => Ok(Flow::Stop(Some(Paused::Unknown(why)))),
            Err(e) => Ok(Flow::Stop(Some(Paused::Unknown(format!(
                "{} could not be read back: {e}",
                p.call.name
            ))))),
        }
    }

    /// The effects other requests on `r`'s account recorded as theirs.
    async fn claimed_by_others(&self, r: &Request) -> Result<Vec<String>, StoreError> {
        let mut claimed = Vec::new();
        for other in self.requests.requests(false, 500).await? {
            if other.id == r.id || other.account != r.account {
                continue;
            }
            let progress = self.requests.progress(other.id).await?;
            if let Some(exec) = execution(progress.as_ref()) {
                claimed.extend(exec.effects().cloned());
            }
        }
        Ok(claimed)
    }

    /// Stops `r` for a person to settle: the cloud's records cannot tell.
    async fn unclear(
        &self,
        r: &Request,
        mut exec: Execution,
        why: &str,
        now: DateTime<Utc>,
    ) -> Result<Flow, StoreError> {
        warn!(request = %r.id, %why, "a person must say whether it was done");
        exec.unclear = Some(why.to_owned());
        self.end_noted(r, exec, State::Unclear, json!({ "unclear": why }), now)
            .await
    }

    async fn answered(
        &self,
        r: &Request,
        mut exec: Execution,
        answer: CallAnswer,
        read_back: bool,
    ) -> Result<Flow, StoreError> {
        let Some(p) = exec.pending.take() else {
            return Ok(Flow::Stop(None));
        };
        let mut detail = json!({
            "call": &p.call.name,
            "code": &answer.code,
            "request_id": &answer.request_id,
            "result": &answer.result,
        });
        if read_back {
            detail["read_back"] = json!(true);
        }
        let audit = [NewEntry::new(
            self.clock.now(),
            PURSER,
            Event::Answer,
            Some(r.id),
            detail,
        )];
        exec.tries = 0;
        exec.made.push(Made {
            call: p.call,
            answer,
        });
        Ok(match self.save(r, &exec, &audit).await? {
            Some(_) => Flow::Again,
            None => Flow::Stop(Some(Paused::Elsewhere)),
        })
    }

    async fn finish(
        &self,
        r: &Request,
        mut exec: Execution,
        next: NextCall,
        now: DateTime<Utc>,
    ) -> Result<Flow, StoreError> {
        match next {
            NextCall::Done { summary, details } => {
                exec.receipt = Some(summary.clone());
                let receipt = [NewEntry::new(
                    now,
                    PURSER,
                    Event::Receipt,
                    Some(r.id),
                    json!({"summary": summary, "details": details}),
                )];
                self.end(r, exec, State::Succeeded, &receipt).await
            }
            NextCall::ByHand(what) => {
                let why = format!("the rest needs a person: {what}");
                self.fail_with(r, exec, &why, now).await
            }
            NextCall::Call(_) => Ok(Flow::Again),
        }
    }

    async fn fail(&self, r: &Request, from: State, why: &str) -> Result<Flow, StoreError> {
        let exec = Execution {
            failure: Some(why.to_owned()),
            ..Execution::default()
        };
        if from == State::Approved {
            // Not started: it moves to executing and fails there, so that
            // the log shows one path.
            let progress = json!({"execution": Execution::default()});
            let step = Step {
                progress: Some(&progress),
                ..Step::new(State::Approved, State::Executing, PURSER, self.clock.now())
            };
            let r = match self.requests.transition(r.id, step).await? {
                Written::Done(r) => r,
                Written::Busy { by, on } => {
                    return Ok(Flow::Stop(Some(Paused::Queued { behind: by, on })));
                }
                Written::Stale(_) | Written::NotFound => {
                    return Ok(Flow::Stop(Some(Paused::Elsewhere)));
                }
            };
            return self.end(&r, exec, State::Failed, &[]).await;
        }
        self.end(r, exec, State::Failed, &[]).await
    }

    async fn fail_with(
        &self,
        r: &Request,
        mut exec: Execution,
        why: &str,
        now: DateTime<Utc>,
    ) -> Result<Flow, StoreError> {
        exec.failure = Some(why.to_owned());
        self.end_noted(r, exec, State::Failed, json!({ "failure": why }), now)
            .await
    }

    /// Ends `r` in `to` with `note` in the audit log.
    async fn end_noted(
        &self,
        r: &Request,
        exec: Execution,
        to: State,
        note: Value,
        now: DateTime<Utc>,
    ) -> Result<Flow, StoreError> {
        let note = [NewEntry::new(now, PURSER, Event::Note, Some(r.id), note)];
        self.end(r, exec, to, &note).await
    }

    async fn end(
        &self,
        r: &Request,
        exec: Execution,
        to: State,
        audit: &[NewEntry],
    ) -> Result<Flow, StoreError> {
        let progress = json!({ "execution": exec });
        let step = Step {
            progress: Some(&progress),
            audit,
            ..Step::new(State::Executing, to, PURSER, self.clock.now())
        };
        Ok(match self.requests.transition(r.id, step).await? {
            Written::Done(_) => Flow::Stop(None),
            Written::Stale(_) | Written::NotFound | Written::Busy { .. } => {
                Flow::Stop(Some(Paused::Elsewhere))
            }
        })
    }

    /// Records `exec` guarded by the version `r` was read at; `None` when
    /// another run wrote first.
    async fn save(
        &self,
        r: &Request,
        exec: &Execution,
        audit: &[NewEntry],
    ) -> Result<Option<Request>, StoreError> {
        let progress = json!({ "execution": exec });
        Ok(
            match self
                .requests
                .record_progress(r.id, r.version, &progress, audit)
                .await?
            {
                Written::Done(after) => Some(after),
                Written::Stale(_) | Written::NotFound | Written::Busy { .. } => None,
            },
        )
    }
}

/// One line on how a request's execution stands, for chat.
pub fn outcome_line(
    r: &Request,
    progress: Option<&Value>,
    paused: Option<&Paused>,
) -> Option<String> {
    let exec = execution(progress);
    match (r.state, paused) {
        (State::Succeeded, _) => exec
            .and_then(|e| e.receipt)
            .map(|s| format!("Done: {}", sentence(&s))),
        (State::Failed, _) => exec
            .and_then(|e| e.failure)
            .map(|f| format!("Failed, nothing more will be tried: {}", sentence(&f))),
        (State::Unclear, _) => exec.and_then(|e| e.unclear).map(|why| {
            format!(
                "purser cannot tell whether it was done: {} Check the cloud's console, then say `resolve {} done` or `resolve {} failed`.",
                sentence(&why),
                r.id,
                r.id
            )
        }),
        (State::AwaitingPayment, _) => progress
            .and_then(|p| p.get("task")?.get("by_hand")?.as_str().map(str::to_owned))
            .map(|what| {
                format!(
                    "No API can do this: {} purser closes it when it sees it done.",
                    sentence(&what)
                )
            }),
        (_, Some(Paused::Queued { behind, on })) => Some(format!(
            "It waits for {behind}, which changes {on} too, to finish first."
        )),
        (_, Some(Paused::Unreachable(why))) => Some(format!(
            "The cloud could not be asked ({why}); purser tries again on its next sweep."
        )),
        (_, Some(Paused::Unknown(why))) => Some(format!(
            "The cloud's answer was lost and it does not show the outcome yet ({why}); purser reads it back on its next sweep and never repeats it blind."
        )),
        _ => None,
    }
}

/// This process's name in the leases it holds: host, pid and a random part
/// (a pid is reused after a restart).
fn runner_name() -> String {
    format!(
        "{}:{}:{:08x}",
        crate::host::name(),
        std::process::id(),
        rand_u32()
    )
}

/// Enough randomness to tell two runners in one process apart.
fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or_default(),
    );
    h.finish() as u32
}

/// A cloud's message as a sentence: one full stop, not two.
fn sentence(text: &str) -> String {
    let t = text.trim_end();
    if t.ends_with(['.', '!', '?', '。', '！', '？']) {
        t.to_owned()
    } else {
        format!("{t}.")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_ending_in_a_full_stop_gets_no_second_one() {
        assert_eq!(sentence("not enough balance."), "not enough balance.");
        assert_eq!(sentence("余额不足。"), "余额不足。");
        assert_eq!(sentence("余额不足"), "余额不足.");
    }

    #[test]
    fn an_execution_round_trips_through_progress() {
        let exec = Execution {
            made: vec![Made {
                call: CloudCall {
                    name: "RenewalResources".into(),
                    params: json!({"resource_ids": ["r1"]}),
                    repeatable: false,
                },
                answer: CallAnswer {
                    request_id: Some("rq".into()),
                    code: "OK".into(),
                    result: json!({"order_ids": ["CS1"]}),
                    effects: vec!["CS1".into()],
                },
            }],
            pending: None,
            tries: 0,
            receipt: None,
            failure: None,
            unclear: None,
        };
        let progress = json!({ "execution": &exec });
        assert_eq!(execution(Some(&progress)), Some(exec));
        assert_eq!(execution(Some(&json!({"task": {}}))), None);
    }
}
