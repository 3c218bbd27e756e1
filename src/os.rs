//! What the program takes from the operating system: randomness, the clock, the hostname.

use std::time::{SystemTime, UNIX_EPOCH};

use muxagent_proto::frame::Hostname;
use muxagent_proto::limits::MAX_HOSTNAME_LEN;

/// The OS's CSPRNG. Panics only if the kernel cannot provide randomness, where nothing secure
/// can continue anyway.
pub fn rng() -> rand_core::UnwrapErr<getrandom::SysRng> {
    rand_core::UnwrapErr(getrandom::SysRng)
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// This machine's name as devices see it: `$MUXAGENT_HOSTNAME`, else the hostname; cut to the
/// protocol's limit; `machine` if there is none.
pub fn hostname() -> Hostname {
    let uname = rustix::system::uname();
    let name = match std::env::var("MUXAGENT_HOSTNAME") {
        Ok(name) if !name.trim().is_empty() => name.trim().to_string(),
        _ => uname.nodename().to_string_lossy().into_owned(),
    };
    let mut host = Hostname::new();
    for ch in name
        .chars()
        .filter(|ch| !ch.is_control())
        .take(MAX_HOSTNAME_LEN)
    {
        if host.push(ch).is_err() {
            break;
        }
    }
    if host.is_empty() {
        let _ = host.push_str("machine");
    }
    host
}
