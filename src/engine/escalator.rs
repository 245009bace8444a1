//! Walks each firing alert's escalation chain: starts one when an alert
//! fires, stops it when the alert is acknowledged or resolves, and takes the
//! steps that fall due: direct messages to the people the schedules name,
//! events to outside pagers, and a line in the alert's channels for each.
//!
//! Level-triggered: every pass compares the open alerts with the stored
//! escalations, so a missed wake-up or a restart loses nothing, and a step
//! stored as taken is never taken again. Pages are delivered from their own
//! table, retried with backoff.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use tokio::sync::{Notify, watch};
use tracing::{error, info, warn};

use super::activity::Activity;
use crate::domain::alert::{Alert, AlertState, Notice, NoticeKind};
use crate::domain::backoff::SENDING;
use crate::domain::calendar::{Calendar, ResponseClock};
use crate::domain::escalation::{self, Chain, Escalation, Page, Phase, Response, Target};
use crate::domain::model::Account;
use crate::domain::oncall::{Override, Rotation};
use crate::domain::routing::Routing;
use crate::domain::rules::Severity;
use crate::domain::silence;
use crate::engine::leadership::Gate;
use crate::ports::{
    Clock, DirectMessages, EscalationWrite, Escalations, Meter, OutsidePager, PageItem,
    PageMessage, PagerEvent, SendError, Sent, Store, StoreError, StoredNotice,
};

/// A person as the escalator reaches them.
#[derive(Debug, Clone)]
pub struct Contact {
    pub name: String,
    /// (platform, user id), in the order to try.
    pub identities: Vec<(String, String)>,
}

/// What the escalator needs of the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub calendar: Calendar,
    /// The calendar a severity's response clock and chain run on, where it
    /// is not `calendar`.
    pub calendars: BTreeMap<Severity, Calendar>,
    pub responses: BTreeMap<Severity, Response>,
    pub chains: BTreeMap<Severity, Chain>,
    pub schedules: Vec<Rotation>,
    pub overrides: Vec<Override>,
    pub people: Vec<Contact>,
}

impl Settings {
    pub fn response(&self, s: Severity) -> Response {
        self.responses
            .get(&s)
            .copied()
            .unwrap_or_else(|| Response::default_for(s))
    }

    pub fn zone(&self) -> Tz {
        self.calendar.zone
    }

    /// The calendar `s`'s working clock runs on.
    pub fn calendar_of(&self, s: Severity) -> &Calendar {
        self.calendars.get(&s).unwrap_or(&self.calendar)
    }
}

pub struct Escalator {
    pub store: Arc<dyn Store>,
    pub escalations: Arc<dyn Escalations>,
    pub clock: Arc<dyn Clock>,
    pub settings: Arc<Settings>,
    /// By id.
    pub accounts: Arc<HashMap<String, Account>>,
    pub routing: Arc<Routing>,
    /// By platform.
    pub direct: HashMap<String, Arc<dyn DirectMessages>>,
    /// By pager name.
    pub pagers: HashMap<String, Arc<dyn OutsidePager>>,
    /// Wakes the dispatcher after a step's channel notices are written.
    pub written: Arc<Notify>,
    pub activity: Activity,
    /// Nobody is paged unless this replica leads.
    pub gate: Gate,
    pub meter: Arc<dyn Meter>,
}

const BATCH: u32 = 100;
/// Seconds a pass waits at most for a running cycle's polls to finish:
/// well inside any response time, so no step is late for it.
const SETTLE: i64 = 10;
const MAX_ATTEMPTS: u32 = 8;

impl Escalator {
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut changes = self.activity.subscribe();
        loop {
            let seen = self.activity.get().notices_written;
            self.activity.update(|s| s.escalator_idle = None);
            let now = self.clock.now();
            let next = match self.pass(now).await {
                Ok(next) => next,
                Err(e) => {
                    error!(error = %e, "walking escalations failed");
                    self.activity.store_failed(&e);
                    Some(now + Duration::seconds(30))
                }
            };
            if *shutdown.borrow() {
                break;
            }
            if self.activity.get().notices_written != seen {
                self.settle(&mut changes, &mut shutdown).await;
                continue;
            }
            self.activity
                .update(|s| s.escalator_idle = Some((seen, next)));
            loop {
                tokio::select! {
                    _ = super::clock::sleep_until_opt(&*self.clock, next) => break,
                    _ = shutdown.changed() => break,
                    changed = changes.changed() => {
                        if changed.is_err() || changes.borrow_and_update().notices_written != seen {
                            break;
                        }
                    }
                }
            }
        }
        info!("escalator stopped");
    }

    /// Waits while polls are in flight, for at most `SETTLE`: a cycle of
    /// many accounts writes its notices a batch at a time, and one pass
    /// after the lot costs what one pass after each batch would, once.
    async fn settle(
        &self,
        changes: &mut watch::Receiver<super::activity::ActivityState>,
        shutdown: &mut watch::Receiver<bool>,
    ) {
        let until = self.clock.now() + Duration::seconds(SETTLE);
        while changes.borrow_and_update().polls_in_flight > 0 {
            tokio::select! {
                _ = self.clock.sleep_until(until) => return,
                _ = shutdown.changed() => return,
                changed = changes.changed() => if changed.is_err() { return },
            }
        }
    }

    /// One pass at `now`: escalations brought in line with the alerts, steps
    /// taken, pages sent. Returns when something is next due.
    pub async fn pass(&self, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, StoreError> {
        let alerts: Vec<Alert> = self
            .store
            .all_open_alerts()
            .await?
            .into_iter()
            .filter(|a| a.state == AlertState::Firing)
            .collect();
        let open = self.escalations.open_escalations().await?;
        let silences = self.store.silences(now).await?;
        let overrides = overrides(&self.settings, &*self.escalations, now).await?;
        let mut wrote_notices = false;
        // By fingerprint and start: each alert's chain found at once, not by
        // a walk of them all (thousands of each at a fleet's worst).
        let chained: HashSet<(&str, DateTime<Utc>)> = open.iter().map(key).collect();
        let mut raised = false;
        for a in &alerts {
            if chained.contains(&(a.fingerprint.as_str(), a.started_at)) {
                continue;
            }
            raised = true;
            let e = self.raise(a);
            self.escalations
                .write_escalation(&EscalationWrite {
                    escalation: &e,
                    read_version: None,
                    at: now,
                    pages: Vec::new(),
                    notices: Vec::new(),
                    reopen: false,
                })
                .await?;
        }
        // A silenced chain waits for its silence to end, not for its step.
        let mut held: HashMap<String, DateTime<Utc>> = HashMap::new();
        let by_key: HashMap<(&str, DateTime<Utc>), &Alert> = alerts
            .iter()
            .map(|a| ((a.fingerprint.as_str(), a.started_at), a))
            .collect();
        // Read again only when chains were raised: what this pass wrote.
        let walked = if raised {
            self.escalations.open_escalations().await?
        } else {
            open
        };
        let mut stepped = raised;
        for e in &walked {
            let alert = by_key.get(&key(e)).copied();
            let silenced = alert.and_then(|a| {
                let acc = self.account(&a.key.account)?;
                silence::silenced_by(&silences, acc, &a.key, a.severity.as_str(), now)
            });
            if let Some(s) = silenced {
                held.insert(e.fingerprint.clone(), s.ends_at);
            }
            let muted = silenced.is_some();
            let write = self.advance(e, alert, muted, &overrides, now).await?;
            if let Some(change) = write {
                stepped = true;
                wrote_notices |= !change.notices.is_empty();
                let written = self
                    .escalations
                    .write_escalation(&EscalationWrite {
                        escalation: &change.next,
                        read_version: Some(e.version),
                        at: now,
                        pages: change.pages,
                        notices: change.notices,
                        reopen: change.reopen,
                    })
                    .await?;
                if !written {
                    warn!(fingerprint = %e.fingerprint, "escalation changed while being walked; taken up again next pass");
                }
            }
        }
        if wrote_notices {
            self.activity.update(|s| s.notices_written += 1);
            self.written.notify_one();
        }
        self.deliver_due(now).await?;
        let walked = if stepped {
            self.escalations.open_escalations().await?
        } else {
            walked
        };
        let steps = walked
            .iter()
            .filter_map(|e| {
                let next = e.next_at?;
                Some(match held.get(&e.fingerprint) {
                    Some(end) => next.max(*end),
                    None => next,
                })
            })
            .min();
        let retry = self.escalations.next_page_due().await?;
        Ok([steps, retry].into_iter().flatten().min())
    }

    fn account(&self, id: &str) -> Option<&Account> {
        self.accounts.get(id)
    }

    fn raise(&self, a: &Alert) -> Escalation {
        let s = &self.settings;
        let chain = s.chains.get(&a.severity);
        let e = escalation::raise(
            &a.fingerprint,
            a.started_at,
            a.severity,
            a.fired_at.unwrap_or(a.started_at),
            s.response(a.severity),
            chain,
            s.calendar_of(a.severity),
        );
        match &a.acknowledged {
            Some(ack) => {
                escalation::acknowledge(&e, &ack.by, ack.at, chain, s.calendar_of(a.severity))
            }
            None => e,
        }
    }

    /// What changes for one escalation now, if anything.
    async fn advance(
        &self,
        e: &Escalation,
        alert: Option<&Alert>,
        muted: bool,
        overrides: &[Override],
        now: DateTime<Utc>,
    ) -> Result<Option<Change>, StoreError> {
        let s = &self.settings;
        let chain = s.chains.get(&e.severity);
        let mut pages = Vec::new();
        let mut notices = Vec::new();
        let Some(alert) = alert else {
            let at = self
                .escalations
                .resolved_at(&e.fingerprint, e.started_at)
                .await?
                .unwrap_or(now);
            let next = escalation::resolve(e, at);
            pages.extend(self.pager_events(&next, PagerEvent::Resolve, None).await?);
            return Ok(Some(Change {
                next,
                pages,
                notices,
                reopen: false,
            }));
        };
        let mut next = e.clone();
        // Only an acknowledgement made since this round began stops it: one
        // from before a re-escalation is what the re-escalation is about.
        if let Some(ack) = &alert.acknowledged
            && next.is_open()
            && ack.at >= next.round_start
        {
            next =
                escalation::acknowledge(&next, &ack.by, ack.at, chain, s.calendar_of(e.severity));
            pages.extend(
                self.pager_events(&next, PagerEvent::Acknowledge, Some(&ack.by))
                    .await?,
            );
        }
        if let Some(chain) = chain
            && !muted
        {
            let (walked, taken) = escalation::walk(&next, chain, s.calendar_of(e.severity), now);
            next = walked;
            for page in taken {
                let (p, line) = self.page(&next, alert, &page, overrides, now);
                pages.extend(p);
                notices.extend(self.paged_notice(alert, &line, &page, now));
            }
        }
        // Acknowledged, and walking again: the acknowledgement has run out.
        let reopen = next.phase == Phase::Walking && e.phase == Phase::Acknowledged;
        Ok((next != *e).then_some(Change {
            next,
            pages,
            notices,
            reopen,
        }))
    }

    /// The people and pagers a step names, resolved now, and the line its
    /// channel hears.
    fn page(
        &self,
        e: &Escalation,
        alert: &Alert,
        page: &Page,
        overrides: &[Override],
        now: DateTime<Utc>,
    ) -> (Vec<(String, PageMessage)>, String) {
        let s = &self.settings;
        let due = due_text(e, s.zone());
        match page {
            Page::Round { round } => {
                let line = match &e.acked_by {
                    Some(by) => format!(
                        "Still firing after {by} acknowledged it: escalating again (round {})",
                        round + 1
                    ),
                    None => format!(
                        "Nobody has acknowledged it: paging again (round {})",
                        round + 1
                    ),
                };
                (Vec::new(), line)
            }
            Page::Step {
                round,
                step,
                notify,
            } => {
                let mut out: Vec<(String, PageMessage)> = Vec::new();
                let mut told: Vec<String> = Vec::new();
                let mut missing: Vec<String> = Vec::new();
                for target in notify {
                    let (person, why) = match target {
                        Target::OnCall(name) => (
                            self.schedule(name)
                                .and_then(|r| r.on_call(now, overrides))
                                .map(|shift| shift.person),
                            format!("on call for {name}"),
                        ),
                        Target::Secondary(name) => (
                            self.schedule(name)
                                .and_then(|r| r.secondary(now, overrides)),
                            format!("secondary for {name}"),
                        ),
                        Target::Person(p) => {
                            (Some(p.clone()), format!("in the {} chain", e.severity))
                        }
                        Target::Pager(name) => {
                            let to = format!("pager:{name}");
                            if !out.iter().any(|(t, _)| *t == to) {
                                out.push((
                                    to,
                                    self.message(
                                        e,
                                        alert,
                                        None,
                                        name.clone(),
                                        *round,
                                        *step,
                                        PagerEvent::Trigger,
                                        None,
                                        &due,
                                    ),
                                ));
                                told.push(name.clone());
                            }
                            continue;
                        }
                    };
                    let Some(person) = person else {
                        missing.push(target.to_string());
                        continue;
                    };
                    let Some(to) = self.address(&person) else {
                        missing.push(format!("{person} (no direct message)"));
                        continue;
                    };
                    if out.iter().any(|(t, _)| *t == to) {
                        continue;
                    }
                    told.push(format!("{person} ({why})"));
                    out.push((
                        to,
                        self.message(
                            e,
                            alert,
                            Some(person),
                            why,
                            *round,
                            *step,
                            PagerEvent::Trigger,
                            None,
                            &due,
                        ),
                    ));
                }
                let waited = e
                    .clock
                    .elapsed(s.calendar_of(e.severity), e.round_start, now);
                let mut line = format!(
                    "Paged {} — not acknowledged after {}{}; respond by {due}",
                    if told.is_empty() {
                        "nobody".to_owned()
                    } else {
                        told.join(", ")
                    },
                    crate::domain::duration::format(waited),
                    if e.clock == ResponseClock::Working {
                        " of working time"
                    } else {
                        ""
                    },
                );
                if !missing.is_empty() {
                    line.push_str(&format!(" (could not reach: {})", missing.join(", ")));
                }
                (out, line)
            }
        }
    }

    fn schedule(&self, name: &str) -> Option<&Rotation> {
        self.settings.schedules.iter().find(|r| r.name == name)
    }

    /// `dm:<platform>:<user>` on the first platform purser can send a direct
    /// message on.
    fn address(&self, person: &str) -> Option<String> {
        let contact = self.settings.people.iter().find(|p| p.name == person)?;
        contact
            .identities
            .iter()
            .find(|(platform, _)| self.direct.contains_key(platform))
            .map(|(platform, user)| format!("dm:{platform}:{user}"))
    }

    #[allow(clippy::too_many_arguments)]
    fn message(
        &self,
        e: &Escalation,
        alert: &Alert,
        person: Option<String>,
        why: String,
        round: u32,
        step: u32,
        event: PagerEvent,
        acked_by: Option<String>,
        due: &str,
    ) -> PageMessage {
        let who = person.clone().unwrap_or_else(|| why.clone());
        PageMessage {
            id: format!(
                "{}-{}-r{round}-s{step}-{who}-{}",
                e.fingerprint,
                e.started_at.timestamp_millis(),
                event.as_str()
            ),
            fingerprint: e.fingerprint.clone(),
            started_at: e.started_at,
            account: alert.key.account.clone(),
            rule: alert.key.rule,
            severity: e.severity,
            summary: alert.summary.clone(),
            raised_at: e.raised_at,
            due_at: e.due_at,
            due_text: due.to_owned(),
            person,
            why,
            round,
            event,
            acked_by,
        }
    }

    /// Acknowledge or resolve events for the pagers this occurrence triggered.
    async fn pager_events(
        &self,
        e: &Escalation,
        event: PagerEvent,
        by: Option<&str>,
    ) -> Result<Vec<(String, PageMessage)>, StoreError> {
        let triggered = self
            .escalations
            .triggered_pagers(&e.fingerprint, e.started_at)
            .await?;
        Ok(triggered
            .into_iter()
            .map(|(to, trigger)| {
                let page = PageMessage {
                    id: format!(
                        "{}-{}-{to}-{}-r{}",
                        e.fingerprint,
                        e.started_at.timestamp_millis(),
                        event.as_str(),
                        e.round
                    ),
                    event,
                    acked_by: by.map(str::to_owned),
                    ..trigger
                };
                (to, page)
            })
            .collect())
    }

    /// The `paged` notice for each output the alert is routed to.
    fn paged_notice(
        &self,
        alert: &Alert,
        line: &str,
        page: &Page,
        now: DateTime<Utc>,
    ) -> Vec<(String, StoredNotice)> {
        let Some(account) = self.account(&alert.key.account) else {
            return Vec::new();
        };
        let (round, step) = match page {
            Page::Round { round } => (*round, 0),
            Page::Step { round, step, .. } => (*round, step + 1),
        };
        let id = format!(
            "{}-{}-paged-r{round}-p{step}",
            alert.fingerprint,
            alert.started_at.timestamp_millis()
        );
        let notice = Notice {
            kind: NoticeKind::Paged,
            alert: alert.clone(),
            escalated_from: None,
        };
        let mut stored = StoredNotice::from_notice(&notice, account, id, now);
        stored.paged = Some(line.to_owned());
        self.routing
            .outputs_for(account, &alert.key, alert.severity.as_str())
            .into_iter()
            .map(|o| (o, stored.clone()))
            .collect()
    }

    /// Sends the pages due now; each is marked delivered once it went out.
    /// A recipient that asks to be left alone (rate limited) gets nothing
    /// more in this pass: its pages wait until the pause ends.
    async fn deliver_due(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        let mut held: HashMap<String, (DateTime<Utc>, String)> = HashMap::new();
        for item in self.escalations.due_pages(now, BATCH).await? {
            if !self.gate.open_at(self.clock.now()) {
                return Err(StoreError::NotLeader(
                    "this replica no longer leads; the leader pages".into(),
                ));
            }
            let target = match item.to.strip_prefix("dm:") {
                // The platform, not the person: labels stay few.
                Some(rest) => format!("dm:{}", rest.split(':').next().unwrap_or_default()),
                None => item.to.clone(),
            };
            if let Some((until, why)) = held.get(&target) {
                self.escalations
                    .page_postponed(item.id, why, *until)
                    .await?;
                continue;
            }
            if self.escalations.paging(item.id, self.clock.now()).await? {
                warn!(page = %item.page.id, to = %item.to, "paging again: this page was being sent when purser (or a replica) stopped; the receiver drops it by its id");
                self.activity.update(|s| s.sent_again += 1);
            }
            let sent = self.send(&item).await;
            let retrying = |e: &SendError| e.is_retryable() && item.attempts + 1 < MAX_ATTEMPTS;
            self.meter.paged(
                &target,
                match &sent {
                    Ok(()) => Sent::Delivered,
                    Err(SendError::RateLimited { .. }) => Sent::RateLimited,
                    Err(e) if retrying(e) => Sent::Retrying,
                    Err(_) => Sent::Failed,
                },
            );
            let Err(e) = sent else {
                info!(page = %item.page.id, to = %item.to, "paged");
                self.escalations.page_delivered(item.id, now).await?;
                continue;
            };
            if let Some(until) = e.held_until(now) {
                warn!(page = %item.page.id, to = %item.to, error = %e, until = %until, "the recipient's platform asks purser to wait; its pages go then");
                let why = e.to_string();
                self.escalations
                    .page_postponed(item.id, &why, until)
                    .await?;
                held.insert(target, (until, why));
            } else if retrying(&e) {
                warn!(page = %item.page.id, to = %item.to, error = %e, "page failed; will retry");
                let retry_at = now + SENDING.after(item.attempts.saturating_add(1));
                self.escalations
                    .page_failed(item.id, e.message(), Some(retry_at))
                    .await?;
            } else {
                error!(page = %item.page.id, to = %item.to, error = %e, "page abandoned");
                self.escalations
                    .page_failed(item.id, e.message(), None)
                    .await?;
            }
        }
        Ok(())
    }

    async fn send(&self, item: &PageItem) -> Result<(), SendError> {
        if let Some(rest) = item.to.strip_prefix("dm:") {
            let (platform, user) = rest
                .split_once(':')
                .ok_or_else(|| SendError::refused(format!("bad recipient {:?}", item.to)))?;
            let dm = self.direct.get(platform).ok_or_else(|| {
                SendError::refused(format!("no direct messages on {platform} any more"))
            })?;
            return dm.page(user, &item.page).await;
        }
        if let Some(name) = item.to.strip_prefix("pager:") {
            let pager = self
                .pagers
                .get(name)
                .ok_or_else(|| SendError::refused(format!("no pager named {name:?} any more")))?;
            return pager.send(&item.page).await;
        }
        Err(SendError::refused(format!("bad recipient {:?}", item.to)))
    }
}

/// The overrides in force at or after `now`: the config's, then those made
/// in chat (newer, so they win where they overlap).
pub async fn overrides(
    settings: &Settings,
    store: &dyn Escalations,
    now: DateTime<Utc>,
) -> Result<Vec<Override>, StoreError> {
    let mut all: Vec<Override> = settings
        .overrides
        .iter()
        .filter(|o| o.to > now)
        .cloned()
        .collect();
    all.extend(store.overrides(now).await?);
    Ok(all)
}

/// One escalation's change, as written.
struct Change {
    next: Escalation,
    pages: Vec<(String, PageMessage)>,
    notices: Vec<(String, StoredNotice)>,
    reopen: bool,
}

/// What ties a chain to its alert: the alert's fingerprint and start.
fn key(e: &Escalation) -> (&str, DateTime<Utc>) {
    (e.fingerprint.as_str(), e.started_at)
}

/// The response deadline in the calendar's zone: "Tue 07 Apr 12:30 CST".
pub fn due_text(e: &Escalation, zone: Tz) -> String {
    e.due_at
        .with_timezone(&zone)
        .format("%a %d %b %H:%M %Z")
        .to_string()
}

/// What a direct message says, plain, for every platform to lay out.
pub fn page_text(p: &PageMessage) -> String {
    let who = p.person.as_deref().unwrap_or("someone");
    format!(
        "[{}] {}: {}\n{who}, you are paged as {}: nobody has acknowledged it. Respond by {}.",
        p.severity, p.account, p.summary, p.why, p.due_text
    )
}
