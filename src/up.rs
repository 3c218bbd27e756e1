//! `muxagent up`: the quick start. A relay and this machine's daemon in one process, ready to
//! pair: the relay serves on `--listen`, the daemon dials it on loopback.

use std::net::SocketAddr;

use muxagent_relay::{Relay, RelayConfig};

use crate::commands::CommandError;
use crate::daemon::{self, lock};
use crate::home::Home;

/// Run the relay (state in `$MUXAGENT_HOME/relay`) and the daemon until SIGINT/SIGTERM.
pub fn run(home: &Home, listen: &str) -> Result<(), CommandError> {
    if let Some(pid) = lock::running(home) {
        return Err(CommandError(format!(
            "a daemon already runs for {} (pid {pid}); stop it with `muxagent daemon stop` or set MUXAGENT_HOME",
            home.root().display()
        )));
    }
    let addr: SocketAddr = listen.parse().map_err(|_| {
        CommandError(format!(
            "--listen {listen}: expected an address like 127.0.0.1:8080"
        ))
    })?;
    let config = RelayConfig::new(addr, home.path("relay"));
    let relay = smol::block_on(Relay::bind(config))?;
    let url = relay.public_url().to_string();
    eprintln!("relay listening on {url}");
    let relay_thread = std::thread::Builder::new()
        .name("relay".into())
        .spawn(move || smol::block_on(relay.run(std::future::pending())))
        .map_err(|error| CommandError(format!("cannot start the relay thread: {error}")))?;
    let result = daemon::run_foreground(home.clone(), Some(url));
    // The relay thread ends with the process.
    drop(relay_thread);
    Ok(result?)
}
