//! One module per outside system. Adapters translate; they decide nothing.

pub mod console;
pub mod signing;
pub mod simulated;
pub mod sqlite;
pub mod webhook;
