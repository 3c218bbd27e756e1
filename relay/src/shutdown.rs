//! The shutdown signal for the binary: the first SIGTERM or SIGINT.

use std::future::Future;

use async_signal::{Signal, Signals};
use smol::stream::StreamExt as _;

use crate::error::RelayError;

/// A future that resolves on the first SIGTERM or SIGINT. Call it before binding, so a
/// signal that arrives during startup is not lost.
pub fn signals() -> Result<impl Future<Output = ()>, RelayError> {
    let mut signals = Signals::new([Signal::Term, Signal::Int]).map_err(RelayError::Signals)?;
    Ok(async move {
        if let Some(Ok(signal)) = signals.next().await {
            crate::info(format_args!("received {signal:?}"));
        }
    })
}
