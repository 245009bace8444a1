//! The long-running tasks: the scheduler (which runs polls and evaluations)
//! and the dispatcher (which delivers the outbox).

pub mod activity;
pub mod alert_view;
pub mod approvals;
pub mod board;
pub mod charts;
pub mod chatops;
pub mod clock;
pub mod dispatcher;
pub mod escalator;
pub mod executor;
pub mod guard;
pub mod leadership;
pub mod oncall_view;
pub mod poller;
pub mod pricing;
pub mod request_view;
pub mod scheduler;
