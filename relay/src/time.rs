//! Time helpers: a deadline around any future (the client crate's), and the Unix clock (pairing
//! expiry is in Unix seconds on the wire).

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix seconds now.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(crate) use muxagent_relay_client::until;
