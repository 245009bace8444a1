//! Walks each firing alert's escalation chain: starts one when an alert
//! fires, stops it when the alert is acknowledged or resolves, and takes the
//! steps that fall due: direct messages to the people the schedules name,
//! events to outside pagers, and a line in the alert's channels for each.
//!
//! Level-triggered underneath: a pass compares firing alerts with stored
//! escalations, so a missed wake-up or a restart loses nothing, and a step
//! stored as taken is never taken again. Most passes compare only what
//! changed since the last (the alerts written since, the steps due); the
//! first of a spell of leading and one after a failure read everything.
//! Every ten minutes a pass checks what it holds against every firing
//! alert's and open chain's mark (which row, which write of it), and reads
//! everything again only when they disagree. Pages are delivered from
//! their own table, retried with backoff.

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
    Clock, DirectMessages, EscalationWrite, Escalations, Mark, Meter, OutsidePager, PageItem,
    PageMessage, PagerEvent, PassRead, SendError, Sent, Store, StoreError, StoredNotice,
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

/// An alert occurrence, and the chain it walks: fingerprint and start.
type Key = (String, DateTime<Utc>);

/// What one spell of walking keeps between passes: the firing alerts as
/// last read, each with the number of the write read, and the open chains
/// as last read or written (the escalator is the chains' only writer), so
/// that a pass reads only the alerts written since the last and walks only
/// those and the chains with a step due.
#[derive(Debug, Default)]
pub struct Passes {
    alerts: HashMap<Key, (i64, Alert)>,
    open: HashMap<Key, Escalation>,
    /// Chains a silence holds, until it ends.
    held: HashMap<Key, DateTime<Utc>>,
    /// The silences in force at the last pass: when they change, the held
    /// chains are looked at again.
    silences: Vec<silence::Silence>,
    /// The newest alert write seen.
    seen: i64,
    /// Whether everything was read this spell and kept in line since;
    /// `false` reads it all at the next pass.
    read_whole: bool,
    /// When what is held was last read whole or checked against the marks.
    checked_at: Option<DateTime<Utc>>,
}

impl Passes {
    /// When the first step falls due: a held chain's when its silence ends.
    fn next_step(&self) -> Option<DateTime<Utc>> {
        self.open
            .iter()
            .filter_map(|(k, e)| {
                let next = e.next_at?;
                Some(match self.held.get(k) {
                    Some(end) => next.max(*end),
                    None => next,
                })
            })
            .min()
    }
}

/// How often a pass checks what it holds against every firing alert's and
/// open chain's mark even though nothing says it must: a safety net under
/// the bookkeeping. Marks are a few columns a row, a fraction of reading
/// every alert and chain whole.
const CHECK: i64 = 600;
const BATCH: u32 = 100;
/// Seconds a pass waits at most for a running cycle's polls to finish:
/// well inside any response time, so no step is late for it.
const SETTLE: i64 = 10;
const MAX_ATTEMPTS: u32 = 8;

impl Escalator {
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut changes = self.activity.subscribe();
        let mut passes = Passes::default();
        loop {
            let seen = self.activity.get().notices_written;
            self.activity.update(|s| s.escalator_idle = None);
            let now = self.clock.now();
            let next = match self.walk(&mut passes, now).await {
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

    /// One pass at `now`: escalations brought in line with the alerts,
    /// steps taken, pages sent. The first pass of a spell and one after a
    /// failure read every firing alert and open chain; the others read the
    /// alerts written since and walk only those and the chains with a step
    /// due, and one every `CHECK` checks the marks of everything first.
    /// Returns when something is next due.
    pub async fn walk(
        &self,
        passes: &mut Passes,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let began = self.clock.now();
        let mut read = PassRead::Changes;
        let walked = self.walk_in(passes, &mut read, now).await;
        if walked.is_err() {
            // What was written is uncertain: read it all again.
            passes.read_whole = false;
        }
        let took = (self.clock.now() - began).to_std().unwrap_or_default();
        self.meter.escalator_pass(read, took);
        walked
    }

    async fn walk_in(
        &self,
        passes: &mut Passes,
        read: &mut PassRead,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let silences = self.store.silences(now).await?;
        let due = passes
            .checked_at
            .is_none_or(|at| now < at || now - at >= Duration::seconds(CHECK));
        let mut changes = None;
        if passes.read_whole {
            let read_changes = self.read_changes(passes, &silences, now).await?;
            if !due {
                changes = Some(read_changes);
            } else if self.agrees(passes).await? {
                passes.checked_at = Some(now);
                *read = PassRead::Checked;
                changes = Some(read_changes);
            }
        }
        let (work, told) = match changes {
            Some((work, told)) => (work, Some(told)),
            None => {
                *read = PassRead::All;
                (self.read_all(passes, now).await?, None)
            }
        };
        passes.silences = silences;
        if !work.is_empty() {
            let overrides = overrides(&self.settings, &*self.escalations, now).await?;
            let wrote = self
                .bring_in_line(passes, &work, told.as_ref(), &overrides, now)
                .await?;
            if wrote {
                self.activity.update(|s| s.notices_written += 1);
                self.written.notify_one();
            }
        }
        self.deliver_due(now).await?;
        let retry = self.escalations.next_page_due().await?;
        // The safety net is kept even when nothing else is due.
        let check = passes.checked_at.map(|at| at + Duration::seconds(CHECK));
        Ok([passes.next_step(), retry, check]
            .into_iter()
            .flatten()
            .min())
    }

    /// Reads every firing alert and open chain into `passes`: all of them
    /// are to be looked at.
    async fn read_all(
        &self,
        passes: &mut Passes,
        now: DateTime<Utc>,
    ) -> Result<Vec<Key>, StoreError> {
        // Before the alerts: a write made while they are read is read again
        // as a change, never missed.
        let seen = self.store.alerts_written().await?;
        // What is held goes before the new is read: never both at once.
        passes.alerts = HashMap::new();
        passes.open = HashMap::new();
        let alerts = self.store.firing_as_written().await?;
        let open = self.escalations.open_escalations().await?;
        let mut work: Vec<Key> = Vec::with_capacity(alerts.len().max(open.len()));
        passes.alerts = alerts
            .into_iter()
            .map(|(n, a)| {
                let k = (a.fingerprint.clone(), a.started_at);
                work.push(k.clone());
                (k, (n, a))
            })
            .collect();
        passes.open = open
            .into_iter()
            .map(|e| {
                let k = (e.fingerprint.clone(), e.started_at);
                if !passes.alerts.contains_key(&k) {
                    work.push(k.clone());
                }
                (k, e)
            })
            .collect();
        passes.held.clear();
        passes.seen = seen;
        passes.read_whole = true;
        passes.checked_at = Some(now);
        Ok(work)
    }

    /// Whether what `passes` holds agrees with the store's marks of every
    /// firing alert and open chain (see [`differences`]); a difference
    /// means the bookkeeping missed a write, and is logged. The check
    /// trusts that each write of an alert takes a new number, as every
    /// statement that writes one does.
    async fn agrees(&self, passes: &Passes) -> Result<bool, StoreError> {
        let alerts = self.store.firing_marks(passes.seen).await?;
        let chains = self.escalations.open_marks().await?;
        let differ = differences(passes, alerts, chains);
        if let Some(first) = differ.first() {
            warn!(
                differ = differ.len(),
                fingerprint = %first.0,
                "what the escalator held differed from the store; reading everything again"
            );
        }
        Ok(differ.is_empty())
    }

    /// Reads the alerts written since the last pass into `passes`. What is
    /// to be looked at: those alerts, the chains with a step due, and the
    /// held chains if the silences changed; and the keys of the alerts the
    /// store said changed.
    async fn read_changes(
        &self,
        passes: &mut Passes,
        silences: &[silence::Silence],
        now: DateTime<Utc>,
    ) -> Result<(Vec<Key>, HashSet<Key>), StoreError> {
        let (changed, upto) = self.store.alerts_changed_since(passes.seen).await?;
        passes.seen = upto;
        let mut told = HashSet::with_capacity(changed.len());
        let mut work = Vec::with_capacity(changed.len());
        for (n, a) in changed {
            let k = (a.fingerprint.clone(), a.started_at);
            if told.insert(k.clone()) {
                work.push(k.clone());
            }
            if a.state == AlertState::Firing {
                passes.alerts.insert(k, (n, a));
            } else {
                passes.alerts.remove(&k);
            }
        }
        let recheck = passes.silences != silences;
        for (k, e) in &passes.open {
            let due = match (passes.held.get(k), e.next_at) {
                (Some(_), _) if recheck => true,
                (Some(end), Some(next)) => next.max(*end) <= now,
                (None, Some(next)) => next <= now,
                (_, None) => false,
            };
            if due && !told.contains(k) {
                work.push(k.clone());
            }
        }
        Ok((work, told))
    }

    /// Raises a chain for each firing alert in `work` without one, then
    /// walks each chain in `work`, oldest first, writing what changed.
    /// `told` is what the store said changed, where only that was read.
    /// Whether notices were written.
    async fn bring_in_line(
        &self,
        passes: &mut Passes,
        work: &[Key],
        told: Option<&HashSet<Key>>,
        overrides: &[Override],
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        for k in work {
            let Some((_, a)) = passes.alerts.get(k) else {
                continue;
            };
            if passes.open.contains_key(k) {
                continue;
            }
            let e = self.raise(a);
            let written = self
                .escalations
                .write_escalation(&EscalationWrite {
                    escalation: &e,
                    read_version: None,
                    at: now,
                    pages: Vec::new(),
                    notices: Vec::new(),
                    reopen: false,
                })
                .await?;
            if written {
                passes
                    .open
                    .insert(k.clone(), Escalation { version: 1, ..e });
            } else {
                warn!(fingerprint = %k.0, "a chain was raised for this alert elsewhere; reading every chain again next pass");
                passes.read_whole = false;
            }
        }
        let mut walking: Vec<&Key> = work
            .iter()
            .filter(|k| passes.open.contains_key(*k))
            .collect();
        walking.sort_by_key(|k| (passes.open[*k].raised_at, &k.0, k.1));
        walking.dedup();
        let mut wrote_notices = false;
        for k in walking {
            let e = &passes.open[k];
            let alert = passes.alerts.get(k).map(|(_, a)| a);
            if alert.is_none() && told.is_some_and(|t| !t.contains(k)) {
                // A chain due whose alert this spell has not seen fire: the
                // store knows better than the bookkeeping.
                warn!(fingerprint = %k.0, "a chain fell due for an alert not known to fire; reading every alert again next pass");
                passes.read_whole = false;
                continue;
            }
            let silenced = alert.and_then(|a| {
                let acc = self.account(&a.key.account)?;
                silence::silenced_by(&passes.silences, acc, &a.key, a.severity.as_str(), now)
            });
            match silenced {
                Some(s) => passes.held.insert(k.clone(), s.ends_at),
                None => passes.held.remove(k),
            };
            let Some(change) = self
                .advance(e, alert, silenced.is_some(), overrides, now)
                .await?
            else {
                continue;
            };
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
                passes.read_whole = false;
                continue;
            }
            // Saturating: a version the store could not have written makes
            // the next write miss, and that pass read everything again.
            let next = Escalation {
                version: e.version.saturating_add(1),
                ..change.next
            };
            if next.phase == Phase::Resolved {
                passes.open.remove(k);
                passes.held.remove(k);
            } else {
                passes.open.insert(k.clone(), next);
            }
        }
        Ok(wrote_notices)
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
/// The keys where `passes` differs from the marks read: a firing alert not
/// held or held as another write, one held that no longer fires, a chain
/// not held, held at another version, or held and resolved. Alerts with a
/// write newer than `passes.seen` are on their way to the next read of
/// changes, and not compared.
fn differences(passes: &Passes, alerts: Vec<Mark>, chains: Vec<Mark>) -> Vec<Key> {
    let mut differ = Vec::new();
    let mut marked: HashMap<Key, i64> = alerts
        .into_iter()
        .map(|m| ((m.fingerprint, m.started_at), m.written))
        .collect();
    for (k, (n, _)) in &passes.alerts {
        match marked.remove(k) {
            Some(w) if w == *n || w > passes.seen => {}
            _ => differ.push(k.clone()),
        }
    }
    // Firing, not held, and not written since.
    differ.extend(
        marked
            .into_iter()
            .filter(|(_, w)| *w <= passes.seen)
            .map(|(k, _)| k),
    );
    let mut marked: HashMap<Key, i64> = chains
        .into_iter()
        .map(|m| ((m.fingerprint, m.started_at), m.written))
        .collect();
    for (k, e) in &passes.open {
        if marked.remove(k) != Some(e.version) {
            differ.push(k.clone());
        }
    }
    differ.extend(marked.into_keys());
    differ
}

struct Change {
    next: Escalation,
    pages: Vec<(String, PageMessage)>,
    notices: Vec<(String, StoredNotice)>,
    reopen: bool,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::rules::{AlertKey, RuleName};

    fn at(minute: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000, 0).expect("a time") + Duration::minutes(minute)
    }

    fn alert(fingerprint: &str) -> Alert {
        Alert {
            fingerprint: fingerprint.into(),
            key: AlertKey {
                rule: RuleName::LowBalance,
                account: "acme".into(),
                resource: String::new(),
                tier: "1000".into(),
            },
            severity: Severity::A,
            rank: 1,
            state: AlertState::Firing,
            summary: "low".into(),
            started_at: at(0),
            fired_at: Some(at(0)),
            last_notified_at: Some(at(0)),
            resolved_at: None,
            acknowledged: None,
        }
    }

    fn chain(fingerprint: &str, version: i64) -> Escalation {
        let calendar = Calendar::weekdays(chrono_tz::Asia::Shanghai, 9 * 60, 18 * 60);
        let e = escalation::raise(
            fingerprint,
            at(0),
            Severity::A,
            at(0),
            Response::default_for(Severity::A),
            None,
            &calendar,
        );
        Escalation { version, ..e }
    }

    fn mark(fingerprint: &str, written: i64) -> Mark {
        Mark {
            fingerprint: fingerprint.into(),
            started_at: at(0),
            written,
        }
    }

    /// Held: alerts a (write 3) and b (write 5), chains a and b at version
    /// 2; the changes were read up to write 6.
    fn held() -> Passes {
        let key = |f: &str| (f.to_owned(), at(0));
        Passes {
            alerts: [(key("a"), (3, alert("a"))), (key("b"), (5, alert("b")))].into(),
            open: [(key("a"), chain("a", 2)), (key("b"), chain("b", 2))].into(),
            seen: 6,
            ..Passes::default()
        }
    }

    fn differ(alerts: Vec<Mark>, chains: Vec<Mark>) -> Vec<String> {
        let mut d: Vec<String> = differences(&held(), alerts, chains)
            .into_iter()
            .map(|k| k.0)
            .collect();
        d.sort();
        d
    }

    #[test]
    fn held_as_the_store_has_it_differs_nowhere() {
        let chains = || vec![mark("a", 2), mark("b", 2)];
        assert!(differ(vec![mark("a", 3), mark("b", 5)], chains()).is_empty());
        // Written after the changes were read: left to the next read.
        assert!(differ(vec![mark("a", 3), mark("b", 7), mark("c", 8)], chains()).is_empty());
        // Resolved since (marked only for its newer write).
        assert!(differ(vec![mark("a", 3), mark("b", 9)], chains()).is_empty());
    }

    #[test]
    fn a_write_the_changes_did_not_bring_is_a_difference() {
        let chains = || vec![mark("a", 2), mark("b", 2)];
        // Another write of b, numbered below what was read.
        assert_eq!(differ(vec![mark("a", 3), mark("b", 4)], chains()), ["b"]);
        // c fires, unseen; b stopped firing, unseen.
        assert_eq!(
            differ(vec![mark("a", 3), mark("c", 2)], chains()),
            ["b", "c"]
        );
    }

    #[test]
    fn a_chain_at_another_version_missing_or_unheld_is_a_difference() {
        let alerts = || vec![mark("a", 3), mark("b", 5)];
        assert_eq!(differ(alerts(), vec![mark("a", 2), mark("b", 3)]), ["b"]);
        assert_eq!(differ(alerts(), vec![mark("a", 2)]), ["b"]);
        assert_eq!(
            differ(alerts(), vec![mark("a", 2), mark("b", 2), mark("c", 1)]),
            ["c"]
        );
    }
}
