//! `muxagent up`: the quick start. A relay and this machine's daemon in one process, ready to
//! pair: the relay serves the web app and WebSocket on `--listen`, the daemon dials it at its
//! public URL (the one in the pairing link).

use std::net::SocketAddr;

use muxagent_relay::{Relay, RelayConfig};

use crate::commands::CommandError;
use crate::daemon::{self, lock};
use crate::home::Home;

/// Run the relay (state in `$MUXAGENT_HOME/relay`) and the daemon until SIGINT/SIGTERM.
pub fn run(home: &Home, listen: &str, public_url: Option<String>) -> Result<(), CommandError> {
    if let Some(pid) = lock::running(home) {
        return Err(CommandError::Usage(format!(
            "a daemon already runs for {} (pid {pid}); stop it with `muxagent daemon stop` or set MUXAGENT_HOME",
            home.root().display()
        )));
    }
    let addr: SocketAddr = listen.parse().map_err(|_| {
        CommandError::Usage(format!(
            "--listen {listen}: expected an address like 127.0.0.1:8080"
        ))
    })?;
    if addr.ip().is_unspecified() && public_url.is_none() {
        return Err(CommandError::Usage(format!(
            "--listen {listen} listens on every interface, but a phone cannot open a link to \
             {listen}: add --public-url with this machine's address on your network, e.g. \
             --public-url http://192.168.1.20:{port}",
            port = addr.port()
        )));
    }
    let public_url = public_url.map(|url| checked_public_url(&url)).transpose()?;
    let mut config = RelayConfig::new(addr, home.path("relay"));
    config.public_url = public_url;
    let relay = smol::block_on(Relay::bind(config))?;
    let url = relay.public_url().to_string();
    eprintln!("relay listening on {url}");
    let relay_thread = std::thread::Builder::new()
        .name("relay".into())
        .spawn(move || smol::block_on(relay.run(std::future::pending())))
        .map_err(CommandError::io("cannot start the relay thread"))?;
    let result = daemon::run_foreground(home.clone(), Some(url));
    // The relay thread ends with the process.
    drop(relay_thread);
    Ok(result?)
}

/// `url` without a trailing slash, if it is an `http(s)://HOST[:PORT]` URL with nothing after.
fn checked_public_url(url: &str) -> Result<String, CommandError> {
    let trimmed = url.trim_end_matches('/');
    let host = trimmed
        .strip_prefix("http://")
        .or_else(|| trimmed.strip_prefix("https://"));
    match host {
        Some(host) if !host.is_empty() && !host.contains(['/', '?', '#', '@', ' ']) => {
            Ok(trimmed.to_string())
        }
        _ => Err(CommandError::Usage(format!(
            "--public-url {url}: expected http://HOST:PORT or https://HOST, e.g. \
             http://192.168.1.20:8080"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::checked_public_url;

    #[test]
    fn a_public_url_is_an_origin() {
        assert_eq!(
            checked_public_url("http://192.168.1.20:8080/")
                .ok()
                .as_deref(),
            Some("http://192.168.1.20:8080")
        );
        assert!(checked_public_url("https://relay.example.net").is_ok());
        for bad in [
            "192.168.1.20:8080",
            "http://",
            "ftp://x",
            "http://x/relay",
            "http://a@b",
        ] {
            assert!(checked_public_url(bad).is_err(), "{bad}");
        }
    }
}
