//! Keeps each request's card in the approval channels true to the stored
//! request: a card is posted for a request that waits for decisions, edited
//! when the request changes, and its thread told when the state changes (an
//! approval, a denial, an expiry). It works from what is stored, not from
//! events, so a failed post is tried again and a missed wake-up is caught up
//! by the next sweep.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use tokio::sync::{Notify, watch};
use tracing::{info, warn};

use super::activity::Activity;
use super::request_view::news;
use crate::domain::request::{Request, RequestId, State};
use crate::ports::{
    Clock, RequestCard, RequestCards, RequestMessages, Requests, SendError, StoreError,
};

/// How many of the latest requests are kept current.
const RECENT: u32 = 100;

/// A failed post or edit is tried again after this.
const RETRY_AFTER: i64 = 30;

/// How a writer of requests wakes the board (and keeps the activity count
/// tests wait on honest).
#[derive(Clone)]
pub struct BoardSignal {
    pub activity: Activity,
    pub wake: Arc<Notify>,
}

impl BoardSignal {
    pub fn changed(&self) {
        // Counted before the wake, as the outbox's writers do.
        self.activity.update(|s| s.request_changes += 1);
        self.wake.notify_one();
    }
}

pub struct Board {
    pub requests: Arc<dyn Requests>,
    pub cards: Arc<dyn RequestCards>,
    /// Where requests are shown, by output name.
    pub outputs: Vec<(String, Arc<dyn RequestMessages>)>,
    pub clock: Arc<dyn Clock>,
    pub signal: BoardSignal,
}

impl Board {
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        // A message a platform refused for good (a deleted channel) is not
        // tried again until the request changes.
        let mut given_up: HashSet<(RequestId, String, u64)> = HashSet::new();
        // Outputs that asked to be left alone (rate limited), until when.
        let mut held: HashMap<String, DateTime<Utc>> = HashMap::new();
        loop {
            let activity = &self.signal.activity;
            let seen = activity.get().request_changes;
            activity.update(|s| s.board_idle = None);
            let now = self.clock.now();
            held.retain(|_, until| *until > now);
            let retry = match self.show(now, &mut given_up, &mut held).await {
                Ok(retry) => retry,
                Err(e) => {
                    warn!(error = %e, "reading requests for their cards failed");
                    activity.store_failed(&e);
                    Some(now + Duration::seconds(RETRY_AFTER))
                }
            };
            if *shutdown.borrow() {
                break;
            }
            activity.update(|s| s.board_idle = Some((seen, retry)));
            tokio::select! {
                _ = self.signal.wake.notified() => {}
                _ = super::clock::sleep_until_opt(&*self.clock, retry) => {}
                _ = shutdown.changed() => {}
            }
        }
        info!("request board stopped");
    }

    /// Brings every recent request's cards up to date; when something
    /// failed and should be tried again, when.
    async fn show(
        &self,
        now: DateTime<Utc>,
        given_up: &mut HashSet<(RequestId, String, u64)>,
        held: &mut HashMap<String, DateTime<Utc>>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        if self.outputs.is_empty() {
            return Ok(None);
        }
        let mut recent = self.requests.requests(false, RECENT).await?;
        recent.reverse();
        let ids: Vec<RequestId> = recent.iter().map(|r| r.id).collect();
        let mut cards: HashMap<(RequestId, String), RequestCard> = self
            .cards
            .cards(&ids)
            .await?
            .into_iter()
            .map(|(id, c)| ((id, c.output.clone()), c))
            .collect();
        let mut retry = held.values().min().copied();
        let sooner = |retry: Option<DateTime<Utc>>, at: DateTime<Utc>| {
            Some(retry.map_or(at, |r: DateTime<Utc>| r.min(at)))
        };
        for r in &recent {
            for (output, channel) in &self.outputs {
                let card = cards.remove(&(r.id, output.clone()));
                if card.as_ref().is_some_and(|c| c.version == r.version)
                    || given_up.contains(&(r.id, output.clone(), r.version))
                    || held.contains_key(output)
                {
                    continue;
                }
                match self
                    .bring(channel.as_ref(), output, r, card.as_ref(), now)
                    .await
                {
                    Ok(()) => {}
                    Err(Failure::Send(e)) => {
                        if let Some(until) = e.held_until(now) {
                            warn!(output, request = %r.id, error = %e, until = %until, "request card not updated; the output asks purser to wait");
                            held.insert(output.clone(), until);
                            retry = sooner(retry, until);
                        } else if e.is_retryable() {
                            warn!(output, request = %r.id, error = %e, "request card not updated; will retry");
                            retry = sooner(retry, now + Duration::seconds(RETRY_AFTER));
                        } else {
                            warn!(output, request = %r.id, error = %e, "request card not updated; not retried until the request changes");
                            given_up.insert((r.id, output.clone(), r.version));
                        }
                    }
                    Err(Failure::Store(e)) => return Err(e),
                }
            }
        }
        Ok(retry)
    }

    /// Posts, or edits and tells the thread, one request's card on one
    /// output.
    async fn bring(
        &self,
        channel: &dyn RequestMessages,
        output: &str,
        r: &Request,
        card: Option<&RequestCard>,
        now: DateTime<Utc>,
    ) -> Result<(), Failure> {
        let at = match card {
            Some(c) => {
                channel.edit_request(&c.at, r).await?;
                if let Some(line) = news(r, c.state) {
                    channel.reply_request(&c.at, &line).await?;
                }
                c.at.clone()
            }
            // A request decided before its card went out still gets one,
            // the same hour; older ones (an output added later) do not.
            None if r.state == State::Requested || r.requested_at > now - Duration::hours(1) => {
                match channel.post_request(r).await? {
                    Some(at) => at,
                    None => return Ok(()),
                }
            }
            None => return Ok(()),
        };
        let shown = RequestCard {
            output: output.to_owned(),
            at,
            version: r.version,
            state: r.state,
        };
        self.cards.record_card(r.id, &shown).await?;
        Ok(())
    }
}

enum Failure {
    Send(SendError),
    Store(StoreError),
}

impl From<SendError> for Failure {
    fn from(e: SendError) -> Failure {
        Failure::Send(e)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Failure {
        Failure::Store(e)
    }
}
