//! ConnectWise Manage (PSA) REST client (facts: `shared/connectwise/API.md`).

pub mod classify;
mod client;
pub mod conditions;
pub mod hosts;
pub mod wire;

pub use client::{ConnectWiseClient, ConnectWiseConfig, DEFAULT_ACCEPT_VERSION};
