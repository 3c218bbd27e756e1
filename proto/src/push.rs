//! What a machine tells a device's service worker in a Web Push notification: a [`Notice`],
//! encoded as JSON (the service worker reads it before the wasm core has loaded), then encrypted
//! by the machine for the device's subscription keys (RFC 8291 `aes128gcm`). The relay and the
//! push service see only ciphertext.
//!
//! A notice carries an approval's full request only when it fits in one push; then the
//! notification can offer Allow/Deny and the service worker signs over the hash it recomputes
//! from exactly that input. When it does not fit, `approval` is absent and the notification
//! opens the approval card instead.

use alloc::string::String;
use serde::{Deserialize, Serialize};

use crate::limits::MAX_PUSH_BODY_LEN;

/// Bytes an RFC 8291 record adds around the plaintext: the 86-byte header (salt 16, record size
/// 4, key id length 1, key id 65), the AEAD tag (16) and the padding delimiter (1).
pub const PUSH_OVERHEAD_LEN: usize = 86 + 16 + 1;

/// Longest encoded [`Notice`] that fits in one push.
pub const MAX_NOTICE_LEN: usize = MAX_PUSH_BODY_LEN - PUSH_OVERHEAD_LEN;

/// Version of the [`Notice`] layout.
pub const NOTICE_VERSION: u8 = 1;

/// Why a machine notifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoticeKind {
    /// An approval is waiting.
    Approval,
    /// A session finished.
    Finished,
    /// A session failed.
    Failed,
    /// A plan is ready for review.
    Plan,
    /// The approval (or plan) this device was last shown for the session was decided
    /// elsewhere, withdrawn or expired, and nothing else of the session waits: the notification
    /// that asked is replaced by how it ended, so a stale one is never acted on.
    Resolved,
    /// The device asked for a test notification.
    Test,
}

/// A pending approval, complete enough for the service worker to recompute its hash and sign.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticeApproval {
    /// Its number in the session.
    pub id: u64,
    /// The agent's own id for the request.
    pub agent_request: String,
    /// The tool's name.
    pub tool: String,
    /// The tool's exact, whole input.
    pub input: String,
    /// The request hash, 64 hex digits.
    pub hash: String,
}

/// The plaintext of one push.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// [`NOTICE_VERSION`].
    pub v: u8,
    /// Why.
    pub kind: NoticeKind,
    /// The machine's fingerprint, 64 hex digits.
    pub machine: String,
    /// The machine's hostname.
    pub host: String,
    /// The session, 32 hex digits (none for a test).
    pub session: Option<String>,
    /// The session's title, cut to fit.
    pub title: String,
    /// One line for the notification's body, cut to fit.
    pub text: String,
    /// The approval, when `kind` is `approval` and its whole request fits.
    pub approval: Option<NoticeApproval>,
    /// When the machine sent it, Unix seconds.
    pub at: u64,
}
