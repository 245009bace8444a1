//! Discord's objects as its API reference documents them (users, members,
//! messages, DM channels, interactions, Ready), for the mocks to answer and
//! send with: purser reads them with serenity's model, which wants them
//! whole.

use serde_json::{Value, json};

pub const APP_ID: &str = "1234567890";
pub const GUILD: &str = "613425648685547541";
/// The bot's own user id.
pub const BOT_USER: &str = "1234567890";

/// A user object.
pub fn user(id: &str, username: &str) -> Value {
    json!({"id": id, "username": username, "discriminator": "0", "global_name": username,
           "avatar": null, "bot": id == BOT_USER, "public_flags": 0})
}

/// A guild member object, as an interaction in a server carries it.
pub fn member(id: &str) -> Value {
    json!({"user": user(id, "member"), "nick": null, "avatar": null, "banner": null,
           "roles": [], "joined_at": "2025-06-01T10:00:00.000000+00:00", "premium_since": null,
           "deaf": false, "mute": false, "flags": 0, "pending": false,
           "permissions": "2248473465835073", "communication_disabled_until": null})
}

/// A message object: what creating or editing a message answers.
pub fn message(id: &str, channel: &str, content: &str) -> Value {
    json!({"id": id, "channel_id": channel, "author": user(BOT_USER, "purser"),
           "content": content, "timestamp": "2026-11-23T02:00:00.000000+00:00",
           "edited_timestamp": null, "tts": false, "mention_everyone": false,
           "mentions": [], "mention_roles": [], "attachments": [], "embeds": [],
           "pinned": false, "type": 0, "flags": 0, "components": []})
}

/// A DM channel object, as `POST /users/@me/channels` answers.
pub fn dm_channel(id: &str, recipient: &str) -> Value {
    json!({"id": id, "type": 1, "last_message_id": null, "flags": 0,
           "recipients": [user(recipient, "member")]})
}

/// The parts every interaction has; `user` in a server goes in `member`, in
/// a DM at the top.
fn interaction(id: &str, kind: u64, user_id: &str, in_server: bool, data: Value) -> Value {
    let mut v = json!({
        "id": id, "application_id": APP_ID, "type": kind, "data": data,
        "channel_id": "5550001", "token": format!("tok-{id}"), "version": 1,
        "app_permissions": "2248473465835073", "locale": "en-US",
        "entitlements": [], "authorizing_integration_owners": {"0": GUILD},
        "context": 0, "attachment_size_limit": 10485760,
    });
    if in_server {
        v["guild_id"] = json!(GUILD);
        v["guild_locale"] = json!("en-US");
        v["member"] = member(user_id);
    } else {
        v["user"] = user(user_id, "member");
        v["context"] = json!(1);
    }
    v
}

/// `/purser <sub> <options>` by `user` in a server.
pub fn command(id: &str, user_id: &str, sub: &str, options: Value) -> Value {
    interaction(
        id,
        2,
        user_id,
        true,
        json!({"id": "1100000000000000009", "name": "purser", "type": 1,
               "options": [{"name": sub, "type": 1, "options": options}]}),
    )
}

/// A press on the button `custom_id` of message `on` in `channel`.
pub fn press(id: &str, user_id: &str, custom_id: &str, on: &str, channel: &str) -> Value {
    let mut v = interaction(
        id,
        3,
        user_id,
        true,
        json!({"custom_id": custom_id, "component_type": 2}),
    );
    v["channel_id"] = json!(channel);
    v["message"] = message(on, channel, "");
    v
}

/// The same press in a DM with the bot (the interaction names `user`).
pub fn press_in_dm(id: &str, user_id: &str, custom_id: &str, on: &str, channel: &str) -> Value {
    let mut v = interaction(
        id,
        3,
        user_id,
        false,
        json!({"custom_id": custom_id, "component_type": 2}),
    );
    v["channel_id"] = json!(channel);
    v["message"] = message(on, channel, "");
    v
}

/// Discord's PING, which checks the endpoint.
pub fn ping(id: &str) -> Value {
    json!({"id": id, "application_id": APP_ID, "type": 1, "token": format!("tok-{id}"),
           "version": 1})
}

/// The gateway's Ready event data.
pub fn ready(session: &str, resume_url: &str) -> Value {
    json!({"v": 10, "user": user(BOT_USER, "purser"), "guilds": [{"id": GUILD, "unavailable": true}],
           "session_id": session, "resume_gateway_url": resume_url, "shard": [0, 1],
           "application": {"id": APP_ID, "flags": 8953856}})
}

/// What a bulk overwrite of the application's commands answers: each
/// command sent, as Discord stored it.
pub fn commands_stored(sent: &Value) -> Value {
    let stored: Vec<Value> = sent
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, c)| {
            let mut c = c.clone();
            c["id"] = json!(format!("11000000000000000{i:02}"));
            c["application_id"] = json!(APP_ID);
            c["version"] = json!("1100000000000000100");
            c["default_member_permissions"] = json!(null);
            if c.get("type").is_none() {
                c["type"] = json!(1);
            }
            c
        })
        .collect();
    Value::Array(stored)
}
