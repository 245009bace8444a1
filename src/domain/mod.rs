//! Pure types and decisions: no I/O, no clock reads (time is a parameter).

pub mod account;
pub mod alert;
pub mod audit;
pub mod backoff;
pub mod calendar;
pub mod command;
pub mod duration;
pub mod escalation;
pub mod forecast;
pub mod model;
pub mod money;
pub mod oncall;
pub mod people;
pub mod policy;
pub mod request;
pub mod routing;
pub mod rules;
pub mod silence;
