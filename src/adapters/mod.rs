//! One module per outside system. Adapters translate; they decide nothing.

pub mod alibaba;
pub mod azure_china;
pub mod chart;
pub mod cloud;
pub mod console;
pub mod discord;
pub mod discord_channel;
pub mod discord_gateway;
pub mod http;
pub mod huawei;
pub mod pace;
pub mod robots;
pub mod signing;
pub mod simulated;
pub mod slack;
pub mod slack_channel;
pub mod slack_socket;
pub mod sqlite;
pub mod telegram;
pub mod telegram_channel;
pub mod tencent;
pub mod webhook;
pub mod ws;
