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
/// protocol's limit; `machine` if there is none. A `$MUXAGENT_HOSTNAME` with control, bidi or
/// invisible characters is refused (devices and the relay would refuse it); the system's
/// hostname loses them.
pub fn hostname() -> Result<Hostname, String> {
    let uname = rustix::system::uname();
    let name = match std::env::var("MUXAGENT_HOSTNAME") {
        Ok(name) if !name.trim().is_empty() => {
            let name = name.trim().to_string();
            if let Err(why) = muxagent_proto::frame::validate_hostname(&name) {
                return Err(format!(
                    "MUXAGENT_HOSTNAME `{}`: {why}; people tell machines apart by it, so pick a plain one",
                    muxagent_client::words::visible_field(&name)
                ));
            }
            name
        }
        _ => uname.nodename().to_string_lossy().into_owned(),
    };
    let mut host = Hostname::new();
    for ch in name
        .chars()
        .filter(|ch| !ch.is_control() && !muxagent_proto::text::is_hidden(*ch))
        .take(MAX_HOSTNAME_LEN)
    {
        if host.push(ch).is_err() {
            break;
        }
    }
    if host.is_empty() {
        let _ = host.push_str("machine");
    }
    Ok(host)
}
