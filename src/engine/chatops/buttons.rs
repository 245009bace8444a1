//! Buttons pressed on alert messages: acknowledge, silence, or start the
//! request that would mend the alert.

use super::{Asker, ChatOps, Pick, Pressed, Reply, ReplyKind, role_refusal};
use crate::domain::alert::Alert;
use crate::domain::command::{self, AlertRef, Verb};
use crate::domain::model::ExternalId;
use crate::domain::people::Person;
use crate::domain::request::{Action, Via};
use crate::engine::alert_view::Button;
use crate::ports::StoreError;

impl ChatOps {
    pub(super) async fn press_button(&self, asker: &Asker, button: Button, pick: &Pick) -> Pressed {
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
            Button::Ack => self.ack_pressed(person, &chosen).await,
            Button::Silence1h | Button::Silence24h => {
                self.silence_pressed(asker, button, pick, &chosen).await
            }
            Button::TopUp | Button::Renew | Button::PayOrder => {
                self.remedy_pressed(asker, person, button, pick, &chosen)
                    .await
            }
        }
    }

    /// Acknowledges each chosen alert; one reply for all.
    async fn ack_pressed(&self, person: &Person, chosen: &[Alert]) -> Pressed {
        if let Some(no) = role_refusal(person, Verb::Ack) {
            return unchanged(no);
        }
        let now = self.clock.now();
        let mut replies = Vec::new();
        for a in chosen {
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
                    c if c == n => {
                        format!("Acknowledged {n} alerts: they will not repeat until they resolve.")
                    }
                    c => format!(
                        "Acknowledged {c} of {n} alerts (the others were already): they will not repeat until they resolve."
                    ),
                };
                Pressed {
                    reply: Reply::done(title, chosen.iter().map(|a| a.summary.clone()).collect()),
                    changed: changed > 0,
                }
            }
        }
    }

    /// Silences the chosen alerts for the button's time, as the command would.
    async fn silence_pressed(
        &self,
        asker: &Asker,
        button: Button,
        pick: &Pick,
        chosen: &[Alert],
    ) -> Pressed {
        let d = if button == Button::Silence1h {
            "1h"
        } else {
            "24h"
        };
        // One alert: exactly it. A message's alerts: each rule of
        // the account they share, so that the resources of the same
        // kind that fire next stay quiet as well.
        let mut matchers: Vec<String> = Vec::new();
        for a in chosen {
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

    /// Starts the request that would mend the alerts (or says how to).
    async fn remedy_pressed(
        &self,
        asker: &Asker,
        person: &Person,
        button: Button,
        pick: &Pick,
        chosen: &[Alert],
    ) -> Pressed {
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

fn unchanged(reply: Reply) -> Pressed {
    Pressed {
        reply,
        changed: false,
    }
}

fn trouble(e: StoreError) -> Pressed {
    tracing::error!(error = %e, "a button press could not read the store");
    unchanged(Reply::failed(
        "purser could not read its store; try again in a minute.",
    ))
}
