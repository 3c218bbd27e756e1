//! The muxagent relay: authenticates keys and routes end-to-end-encrypted frames between a device
//! and the machines of its account.
#![forbid(unsafe_code)]
