//! Acknowledgements and silences.

use chrono::{DateTime, Duration, Utc};

use super::{ChatOps, Reply, ReplyKind};
use crate::domain::command::{AlertRef, Matcher};
use crate::domain::people::Person;
use crate::domain::{duration, silence};
use crate::ports::{AckOutcome, EndSilenceOutcome, NewSilence, StoreError};

impl ChatOps {
    /// Acknowledges for `person`: the reply, and whether this call is the
    /// one that did it (of two racing presses, one is).
    pub(super) async fn ack(
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

    /// `silence`: stored, and announced where the alerts it covers went.
    pub(super) async fn silence(
        &self,
        person: &Person,
        matchers: Vec<Matcher>,
        d: Duration,
        reason: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<Reply, StoreError> {
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
        Ok(Reply::done(
            format!(
                "Silence #{} set until {} ({}).",
                s.id,
                s.ends_at.format("%Y-%m-%d %H:%M UTC"),
                duration::format(d)
            ),
            vec![silence_line(&s)],
        ))
    }

    /// `unsilence`: ended early, by whoever asks.
    pub(super) async fn unsilence(
        &self,
        person: &Person,
        id: u64,
        now: DateTime<Utc>,
    ) -> Result<Reply, StoreError> {
        Ok(match self.store.end_silence(id, &person.name, now).await? {
            EndSilenceOutcome::Ended(s) => {
                if let Some(signal) = &self.outbox {
                    signal.silence_ended();
                }
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
            EndSilenceOutcome::NotFound => Reply::refused(format!("There is no silence #{id}.")),
        })
    }

    /// `silences`: those in force.
    pub(super) async fn silences(&self, now: DateTime<Utc>) -> Result<Reply, StoreError> {
        let list = self.store.silences(now).await?;
        Ok(Reply::done(
            format!("Silences in force: {}", list.len()),
            list.iter().map(silence_line).collect(),
        ))
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
