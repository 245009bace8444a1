//! Which replica leads. The work that must happen once (polls, deliveries,
//! pages, request cards, sweeps, chat connections) runs on the leader only;
//! every replica answers chat.
//!
//! The leader renews its lease every third of the term. It stops leading
//! when it has not renewed by two thirds of the term (a third before the
//! lease runs out, so its work has stopped before a standby may start), or
//! at once when the store says another took over. A standby tries to take
//! the lease every third of the term, so after a leader dies the lead moves
//! within the term and a third.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::ports::{Clock, Lead, Leadership, StoreError};

/// This replica's part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// The only one (a SQLite store): it always leads.
    Sole,
    /// It leads until `until` unless it renews: the lease as taken or last
    /// renewed, less the margin that stops its work before a standby's
    /// starts. `failed` counts renewals tried since the last that worked.
    Leader {
        lead: Lead,
        until: DateTime<Utc>,
        failed: u32,
    },
    /// Another leads (as last read), or nobody yet; `error` when the lease
    /// could not be read at the last try (the store not answering).
    Standby {
        leader: Option<Lead>,
        error: Option<String>,
    },
}

impl Role {
    /// Whether work only the leader does may go on at `now`.
    pub fn leads_at(&self, now: DateTime<Utc>) -> bool {
        match self {
            Role::Sole => true,
            Role::Leader { until, .. } => now < *until,
            Role::Standby { .. } => false,
        }
    }

    /// `leader` or `standby`, as `/readyz` and the logs say it.
    pub fn name(&self) -> &'static str {
        match self {
            Role::Sole | Role::Leader { .. } => "leader",
            Role::Standby { .. } => "standby",
        }
    }
}

/// What leader-only work asks before each thing it sends: sent by a
/// replica that no longer leads, it could go twice.
#[derive(Clone)]
pub struct Gate(watch::Receiver<Role>);

impl Gate {
    /// Always open: the only replica.
    pub fn sole() -> Gate {
        Gate(watch::channel(Role::Sole).1)
    }

    pub fn new(role: watch::Receiver<Role>) -> Gate {
        Gate(role)
    }

    pub fn open_at(&self, now: DateTime<Utc>) -> bool {
        self.0.borrow().leads_at(now)
    }
}

/// Takes, keeps and gives up the lead for one replica.
pub struct Elector {
    pub leases: Arc<dyn Leadership>,
    /// This replica's name in the lease.
    pub name: String,
    pub term: Duration,
    pub clock: Arc<dyn Clock>,
    pub role: watch::Sender<Role>,
}

impl Elector {
    fn every(&self) -> Duration {
        self.term / 3
    }

    /// One step: takes or renews the lease as `now` calls for, and says
    /// when the next is due.
    pub async fn step(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let current = { self.role.borrow().clone() };
        match current {
            Role::Sole => now + Duration::days(1),
            Role::Leader {
                lead,
                until,
                failed,
            } => {
                if now >= until {
                    // Not renewed in time (paused, or the store unreachable):
                    // the work stops before a standby may take over.
                    warn!(replica = %self.name, token = lead.token, "leadership lost: the lease was not renewed in time; leading work stops");
                    self.set(Role::Standby {
                        leader: None,
                        error: None,
                    });
                    return now;
                }
                match self
                    .bounded(self.leases.renew(lead.token, now, self.term))
                    .await
                {
                    Ok(true) => {
                        let lead = Lead {
                            expires_at: now + self.term,
                            ..lead
                        };
                        self.set(Role::Leader {
                            until: now + self.term - self.every(),
                            lead,
                            failed: 0,
                        });
                        now + self.every()
                    }
                    Ok(false) => {
                        warn!(replica = %self.name, token = lead.token, "leadership lost: another replica took over; leading work stops");
                        self.set(Role::Standby {
                            leader: None,
                            error: None,
                        });
                        now
                    }
                    Err(e) => {
                        error!(replica = %self.name, error = %e, "renewing the lease failed; trying again");
                        self.set(Role::Leader {
                            lead,
                            until,
                            failed: failed.saturating_add(1),
                        });
                        // Again soon, and at the latest when the lead ends.
                        (now + Duration::seconds(1)).min(until)
                    }
                }
            }
            Role::Standby { .. } => match self
                .bounded(self.leases.lead(&self.name, now, self.term))
                .await
            {
                Ok(Some(lead)) => {
                    info!(replica = %self.name, token = lead.token, since = %lead.since, "leadership gained: this replica now polls, sends and pages");
                    self.set(Role::Leader {
                        until: now + self.term - self.every(),
                        lead,
                        failed: 0,
                    });
                    now + self.every()
                }
                Ok(None) => {
                    let leader = self.leases.leader().await.ok().flatten();
                    self.set(Role::Standby {
                        leader,
                        error: None,
                    });
                    now + self.every()
                }
                Err(e) => {
                    warn!(replica = %self.name, error = %e, "the lease cannot be read; standing by");
                    self.set(Role::Standby {
                        leader: None,
                        error: Some(e.to_string()),
                    });
                    now + self.every()
                }
            },
        }
    }

    /// A call to the store, given up after a third of the term: a database
    /// that hangs (a network cut without a reset) must not hold the
    /// election past the lead's end.
    async fn bounded<T>(
        &self,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let limit = self
            .every()
            .to_std()
            .unwrap_or(std::time::Duration::from_secs(5));
        tokio::time::timeout(limit, call).await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable(format!(
                "the store did not answer within {}",
                crate::domain::duration::format(self.every())
            )))
        })
    }

    fn set(&self, role: Role) {
        self.role.send_if_modified(|r| {
            if *r == role {
                return false;
            }
            *r = role;
            true
        });
    }

    /// Keeps the lease until `shutdown`, then gives it up, so a standby
    /// takes over at once rather than after the term.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            let now = self.clock.now();
            let next = self.step(now).await;
            tokio::select! {
                _ = self.clock.sleep_until(next) => {}
                _ = shutdown.changed() => break,
            }
        }
        let last = self.role.borrow().clone();
        if let Role::Leader { lead, .. } = last {
            self.set(Role::Standby {
                leader: None,
                error: None,
            });
            match self.leases.step_down(lead.token, self.clock.now()).await {
                Ok(()) => info!(replica = %self.name, "leadership given up on stopping"),
                Err(e) => {
                    warn!(replica = %self.name, error = %e, "could not give the lead up; a standby takes over when the lease runs out")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use chrono::TimeZone;
    use std::sync::Mutex;

    /// The lease row as a database would keep it.
    #[derive(Default)]
    struct Row(Mutex<(Option<Lead>, bool)>);

    #[async_trait]
    impl Leadership for Row {
        async fn lead(
            &self,
            holder: &str,
            now: DateTime<Utc>,
            term: Duration,
        ) -> Result<Option<Lead>, StoreError> {
            let mut g = self.0.lock().unwrap();
            if g.1 {
                return Err(StoreError::Unavailable("down".into()));
            }
            match &g.0 {
                Some(l) if l.expires_at > now && l.holder != holder => Ok(None),
                current => {
                    let token = current.as_ref().map_or(1, |l| l.token + 1);
                    let lead = Lead {
                        holder: holder.into(),
                        token,
                        since: now,
                        expires_at: now + term,
                    };
                    g.0 = Some(lead.clone());
                    Ok(Some(lead))
                }
            }
        }
        async fn renew(
            &self,
            token: i64,
            now: DateTime<Utc>,
            term: Duration,
        ) -> Result<bool, StoreError> {
            let mut g = self.0.lock().unwrap();
            if g.1 {
                return Err(StoreError::Unavailable("down".into()));
            }
            match &mut g.0 {
                Some(l) if l.token == token && l.expires_at > now => {
                    l.expires_at = now + term;
                    Ok(true)
                }
                _ => Ok(false),
            }
        }
        async fn step_down(&self, token: i64, now: DateTime<Utc>) -> Result<(), StoreError> {
            if let Some(l) = &mut self.0.lock().unwrap().0
                && l.token == token
            {
                l.expires_at = now;
            }
            Ok(())
        }
        async fn leader(&self) -> Result<Option<Lead>, StoreError> {
            Ok(self.0.lock().unwrap().0.clone())
        }
    }

    fn elector(row: &Arc<Row>, name: &str) -> (Elector, watch::Receiver<Role>) {
        let (tx, rx) = watch::channel(Role::Standby {
            leader: None,
            error: None,
        });
        (
            Elector {
                leases: row.clone(),
                name: name.into(),
                term: Duration::seconds(15),
                clock: Arc::new(crate::engine::clock::ManualClock::new(t(0))),
                role: tx,
            },
            rx,
        )
    }

    fn t(s: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap() + Duration::seconds(s)
    }

    #[tokio::test]
    async fn a_standby_takes_over_within_the_term_and_a_third_of_a_dead_leader() {
        let row = Arc::new(Row::default());
        let (a, ra) = elector(&row, "a");
        let (b, rb) = elector(&row, "b");
        assert_eq!(a.step(t(0)).await, t(5));
        assert!(ra.borrow().leads_at(t(0)));
        assert!(!ra.borrow().leads_at(t(10)), "stops a third before expiry");
        b.step(t(1)).await;
        assert_eq!(rb.borrow().name(), "standby");
        // a renews at 5 s, then dies; its lease runs to 20 s.
        a.step(t(5)).await;
        let (mut at, mut took) = (t(6), t(6));
        while !rb.borrow().leads_at(took) {
            took = at;
            at = b.step(at).await;
        }
        assert!(took > t(20), "not before the lease ran out: {took}");
        assert!(took <= t(5 + 15 + 5), "took over at {took}");
        let Role::Leader { lead, .. } = rb.borrow().clone() else {
            panic!()
        };
        assert_eq!(lead.token, 2);
        // a wakes after a pause: it stops without writing anything.
        a.step(t(40)).await;
        assert_eq!(ra.borrow().name(), "standby");
    }

    #[tokio::test]
    async fn a_leader_that_cannot_renew_stops_leading_before_its_lease_ends() {
        let row = Arc::new(Row::default());
        let (a, ra) = elector(&row, "a");
        a.step(t(0)).await;
        row.0.lock().unwrap().1 = true; // the database is unreachable
        let mut at = t(5);
        let mut last_leading = at;
        while ra.borrow().name() == "leader" {
            if ra.borrow().leads_at(at) {
                last_leading = at;
            }
            at = a.step(at).await;
        }
        assert!(last_leading < t(15), "led until {last_leading}");
        // Back: it leads again, with the same token while its lease stands
        // or the next once another could have taken it.
        row.0.lock().unwrap().1 = false;
        a.step(t(30)).await;
        assert!(ra.borrow().leads_at(t(30)));
    }

    #[tokio::test]
    async fn a_standby_that_cannot_read_the_lease_says_why_until_it_can() {
        let row = Arc::new(Row::default());
        let (b, rb) = elector(&row, "b");
        row.0.lock().unwrap().1 = true;
        b.step(t(0)).await;
        assert!(matches!(
            &*rb.borrow(),
            Role::Standby { error: Some(e), .. } if e.contains("down")
        ));
        row.0.lock().unwrap().1 = false;
        b.step(t(5)).await;
        assert_eq!(rb.borrow().name(), "leader");
    }

    #[tokio::test]
    async fn a_clean_stop_hands_the_lead_over_at_once() {
        let row = Arc::new(Row::default());
        let (a, ra) = elector(&row, "a");
        let (b, rb) = elector(&row, "b");
        let mut ra = ra;
        let (stop, rx) = watch::channel(false);
        let running = tokio::spawn(a.run(rx));
        ra.wait_for(|r| r.name() == "leader").await.unwrap();
        b.step(t(1)).await;
        assert_eq!(rb.borrow().name(), "standby");
        stop.send_replace(true);
        running.await.unwrap();
        // Long before a's lease would have run out (15 s), b leads.
        b.step(t(2)).await;
        assert_eq!(rb.borrow().name(), "leader");
    }
}
