//! Discord's gateway, through serenity's client: purser keeps a WebSocket to
//! Discord open as its bot (no public URL needed) and interactions —
//! `/purser` commands and button presses — arrive on it as
//! `INTERACTION_CREATE`, answered by the same `DiscordApp` as the HTTP
//! endpoint, through the interaction's callback.
//!
//! serenity keeps the session: heartbeats, zombie connections replaced,
//! resumes after Reconnect or a dropped connection, a new session after an
//! invalid one. No intents (interactions arrive without any), no cache, no
//! framework. When Discord refuses the session for good (a wrong token,
//! intents not allowed), the client ends; purser says so and tries again
//! slowly, so a token fixed in the environment is picked up by a restart or
//! the next attempt.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use serenity::all::{
    Builder as _, ClientBuilder, Context, EventHandler, GatewayIntents, Interaction, RatelimitInfo,
    Ready, ResumedEvent,
};
use tokio::sync::watch;
use tracing::{error, info, warn};

use super::discord::{self, DiscordApp, within};
use super::ws::{Backoff, stopped};
use crate::secret::Secret;

pub struct DiscordGateway {
    pub token: Secret,
    pub application_id: u64,
    /// Discord's API or a proxy in front of it (`discord::rest_client`).
    pub api: reqwest::Url,
    pub app: Arc<DiscordApp>,
}

/// What the gateway delivers, handed to `DiscordApp`.
struct Handler {
    app: Arc<DiscordApp>,
}

#[async_trait]
impl EventHandler for Handler {
    async fn ready(&self, _: Context, ready: Ready) {
        info!(user = %ready.user.name, "discord gateway ready");
    }

    async fn resume(&self, _: Context, _: ResumedEvent) {
        info!("discord gateway resumed");
    }

    /// The client puts this in place of `rest_client`'s callback.
    async fn ratelimit(&self, hit: RatelimitInfo) {
        discord::log_ratelimit(&hit);
    }

    /// Answers through the interaction's callback, then edits in a deferred
    /// answer. The work is the daemon's, so a stop waits for it.
    async fn interaction_create(&self, _: Context, interaction: Interaction) {
        let app = self.app.clone();
        self.app
            .tasks
            .clone()
            .spawn("discord interaction", async move {
                let Some(answered) = app.answer(&interaction).await else {
                    return;
                };
                let token = interaction.token().to_owned();
                let call = answered
                    .response
                    .clone()
                    .execute(&*app.http, (interaction.id(), &token));
                if let Err(e) = within("Discord: answering an interaction", call).await {
                    warn!(error = %e, "could not answer a discord interaction");
                    return;
                }
                app.follow_up(token, answered);
            });
    }
}

/// Keeps the gateway connection up until `stop`; publishes `/purser` first.
pub async fn run(gw: Arc<DiscordGateway>, mut stop: watch::Receiver<bool>) {
    match discord::register(&gw.app.http).await {
        Ok(()) => info!("discord /purser command published"),
        Err(e) => warn!(error = %e, "could not publish the discord /purser command"),
    }
    let mut backoff = Backoff::default();
    loop {
        // The client's own REST client only locates the gateway; answers go
        // through the app's, shared with the bot's outputs.
        let http = match discord::rest_client(&gw.token, Some(gw.application_id), &gw.api) {
            Ok(http) => http,
            Err(e) => {
                error!(error = %e, "discord gateway: cannot start");
                return;
            }
        };
        let built = ClientBuilder::new_with_http(http, GatewayIntents::empty())
            .event_handler(Handler {
                app: gw.app.clone(),
            })
            .await;
        let wait = match built {
            Err(e) => {
                warn!(error = %e, "discord gateway: the client could not be built");
                backoff.failed()
            }
            Ok(mut client) => {
                let shards = client.shard_manager.clone();
                tokio::select! {
                    ended = client.start() => {
                        match ended {
                            Err(e) => error!(error = %e, "discord gateway: Discord ended the session for good; check the bot token and the application"),
                            Ok(()) => warn!("discord gateway: the connection ended"),
                        }
                        backoff.lasting()
                    }
                    _ = stopped(&mut stop) => {
                        // A normal close ends the session.
                        shards.shutdown_all().await;
                        return;
                    }
                }
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait.max(StdDuration::from_secs(1))) => {}
            _ = stopped(&mut stop) => return,
        }
    }
}
