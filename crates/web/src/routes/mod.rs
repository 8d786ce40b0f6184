//! One module per resource.

pub mod accounts;
pub mod alerts;
pub mod cases;
pub mod health;
pub mod hooks;
pub mod settings;
pub mod sync_jobs;
