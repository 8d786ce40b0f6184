//! Inbound sync: ConnectWise → portal.
//!
//! The contract the web layer codes against (implementation in progress):
//! - [`accept_callback`]: verify, filter, store, answer fast.
//! - [`Processor`]: drains the inbox and applies tickets' changes to their cases.

use crate::SyncContext;

/// How the hook endpoint should answer a callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackOutcome {
    /// HTTP status for ConnectWise: 2xx accepted or deliberately ignored, 401 bad signature,
    /// 400 malformed, 404 unknown integration.
    pub status: u16,
    pub message: String,
}

/// Handles one callback delivery: verifies `x-content-signature` over the raw body first, then
/// drops callbacks for tickets nobody links, stores the event (de-duplicated by `MessageId`) and
/// wakes the processor.
pub async fn accept_callback(_ctx: &SyncContext, _integration_id: &str, _signature: Option<&str>, _body: &[u8]) -> CallbackOutcome {
    CallbackOutcome { status: 503, message: "inbound sync is not available yet".into() }
}
