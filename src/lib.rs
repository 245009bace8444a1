//! purser keeps prepaid cloud accounts from running dry.
//!
//! See ARCHITECTURE.md for the map: `domain` decides, `ports` are the traits the
//! engine needs, `adapters` translate to the outside world, `engine` runs the
//! long-lived tasks, `cli` is the surface.

pub mod adapters;
pub mod check;
pub mod config;
pub mod database;
pub mod domain;
pub mod engine;
pub mod host;
pub mod ports;
pub mod report;
pub mod secret;
pub mod startup;
