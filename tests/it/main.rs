//! One integration-test binary: the real daemon, in-process, on a temporary
//! SQLite file, with the simulated provider, a manual clock and a webhook
//! receiver on loopback that checks every signature.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod architecture;
mod chat;
mod chat_api;
mod cli;
mod clouds;
mod config_errors;
mod daemon;
mod delivery;
mod deploy;
mod discord;
mod discord_gateway;
mod discord_shapes;
mod escalation;
mod helpers;
mod lifecycle;
mod oncall_config;
mod operate;
mod postgres;
mod replicas;
mod request_cards;
mod requests;
mod resilience;
mod robots;
mod routing;
mod secrets;
mod silences;
mod slack_flow;
mod slack_socket;
mod telegram;
mod telegram_limits;
mod ws_peer;
