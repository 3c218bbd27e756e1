//! The machine-side commands: `daemon start|stop|status|install`, `pair`, `auth status`,
//! `unpair [--local]`, `sessions`, `version`. They talk to the running daemon over its control socket.

use std::fmt;
use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::process::Stdio;
use std::time::Duration;

use muxagent_proto::frame::EntryError;
use muxagent_proto::peer::PeerError;
use muxagent_proto::ticket::TicketError;
use serde_json::json;

use crate::cli;
use crate::daemon::control::{self, Notice};
use crate::daemon::sessions::SessionError;
use crate::daemon::state::{KEY_FILE, MachineState};
use crate::daemon::{self, DaemonError, lock};
use crate::home::{Home, HomeError};
use crate::limits::{CLI_DAEMON_WAIT_SECS, CLI_LINK_WAIT_SECS, CONTROL_POLL_MS};
use crate::{qr, render};

/// Why a command failed. Each variant says where the failure came from; its message is one
/// line for the person who ran the command, saying what went wrong and, where there is one,
/// what to do about it. Errors from other modules are kept whole as the source.
#[derive(Debug)]
pub enum CommandError {
    /// What was asked cannot be done as asked: an argument that does not parse, a name that
    /// matches nothing or more than one thing, or a state that forbids it (the daemon running).
    /// The message says what to give or do instead.
    Usage(String),
    /// The local daemon did not start, stop or answer, or refused what was asked.
    Daemon(String),
    /// Starting or running the daemon itself failed.
    DaemonFailed(DaemonError),
    /// The muxagent home folder (keys, state, the machine book) could not be used.
    Home(HomeError),
    /// A file or process operation of the command failed: what it was doing, and the OS error.
    Io {
        /// What was being done, e.g. "cannot open /home/me/.muxagent/daemon.log".
        doing: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Reaching a relay, or a machine through it, failed: the connection, the secure channel or
    /// an exchange (the message says which), or the relay refused what was asked.
    Relay(String),
    /// The relay client could not connect, log in or exchange a frame.
    RelayClient(muxagent_relay_client::ClientError),
    /// The pairing link does not parse, or has expired.
    Ticket(TicketError),
    /// Pairing with a machine failed: its answer did not check out.
    Pairing(PeerError),
    /// A registry entry (a revocation, an owner grant) could not be made.
    Entry(EntryError),
    /// The session logs on this machine could not be read.
    Sessions(SessionError),
    /// The relay `muxagent up` runs could not start.
    #[cfg(feature = "up")]
    RelayServer(muxagent_relay::RelayError),
    /// A machine answered with an error, or not as the protocol says it answers.
    Machine(String),
    /// A record this program keeps (the controller's machine book) is damaged; the message
    /// says which and what to do.
    Damaged(String),
    /// An approval was not signed: the person did not confirm, or what they would have signed
    /// could not be shown to them whole.
    NotSigned(String),
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Usage(message)
            | CommandError::Daemon(message)
            | CommandError::Relay(message)
            | CommandError::Machine(message)
            | CommandError::Damaged(message)
            | CommandError::NotSigned(message) => f.write_str(message),
            CommandError::DaemonFailed(error) => error.fmt(f),
            CommandError::Home(error) => error.fmt(f),
            CommandError::Io { doing, source } => write!(f, "{doing}: {source}"),
            CommandError::RelayClient(error) => error.fmt(f),
            CommandError::Ticket(error) => error.fmt(f),
            CommandError::Pairing(error) => error.fmt(f),
            CommandError::Entry(error) => error.fmt(f),
            CommandError::Sessions(error) => error.fmt(f),
            #[cfg(feature = "up")]
            CommandError::RelayServer(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for CommandError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CommandError::DaemonFailed(error) => Some(error),
            CommandError::Home(error) => Some(error),
            CommandError::Io { source, .. } => Some(source),
            CommandError::RelayClient(error) => Some(error),
            CommandError::Ticket(error) => Some(error),
            CommandError::Pairing(error) => Some(error),
            CommandError::Entry(error) => Some(error),
            CommandError::Sessions(error) => Some(error),
            #[cfg(feature = "up")]
            CommandError::RelayServer(error) => Some(error),
            CommandError::Usage(_)
            | CommandError::Daemon(_)
            | CommandError::Relay(_)
            | CommandError::Machine(_)
            | CommandError::Damaged(_)
            | CommandError::NotSigned(_) => None,
        }
    }
}

/// `From` for each typed source, so `?` keeps it whole.
macro_rules! from_source {
    ($($variant:ident($source:ty)),* $(,)?) => {
        $(impl From<$source> for CommandError {
            fn from(error: $source) -> Self {
                CommandError::$variant(error)
            }
        })*
    };
}

from_source!(
    DaemonFailed(DaemonError),
    Home(HomeError),
    RelayClient(muxagent_relay_client::ClientError),
    Ticket(TicketError),
    Pairing(PeerError),
    Entry(EntryError),
    Sessions(SessionError),
);

#[cfg(feature = "up")]
from_source!(RelayServer(muxagent_relay::RelayError));

impl CommandError {
    /// A file or process operation failed while `doing` something.
    pub fn io(doing: impl Into<String>) -> impl FnOnce(std::io::Error) -> CommandError {
        let doing = doing.into();
        move |source| CommandError::Io { doing, source }
    }
}

/// The daemon's log file when it runs detached.
pub const LOG_FILE: &str = "daemon.log";

/// How long `daemon start` waits for the new daemon to answer, and `daemon stop` for it to go.
const START_TIMEOUT: Duration = Duration::from_secs(CLI_DAEMON_WAIT_SECS);

/// How long `daemon start` waits for the relay to accept a pairing link before it returns.
const LINK_TIMEOUT: Duration = Duration::from_secs(CLI_LINK_WAIT_SECS);

/// `muxagent daemon start`.
pub fn daemon_start(home: &Home, start: cli::DaemonStart) -> Result<(), CommandError> {
    if let Some(pid) = lock::running(home) {
        return Err(DaemonError::AlreadyRunning(pid).into());
    }
    let relay = chosen_relay(home, start.relay)?;
    if let Some(minutes) = start.auto_deny_after {
        let mut state = MachineState::load(home)?;
        state.auto_deny_after_minutes = (minutes > 0).then_some(minutes);
        state.save(home)?;
    }
    if start.foreground {
        if start.log_file {
            let path = home.path(LOG_FILE);
            crate::log::log_to_file(&path).map_err(CommandError::io(format!(
                "cannot write the log {}",
                path.display()
            )))?;
        }
        if std::env::var_os(DETACHED_ENV).is_some() {
            // Leave the terminal's session so closing it does not stop the daemon.
            let _ = rustix::process::setsid();
        }
        return Ok(daemon::run_foreground(home.clone(), Some(relay))?);
    }
    let status = spawn_detached(home, &relay)?;
    println!("daemon started (pid {}), relay {relay}", status["pid"]);
    println!("log: {}", home.path(LOG_FILE).display());
    if status["paired_devices"].as_u64() == Some(0) {
        show_first_link(home)?;
    }
    Ok(())
}

const DETACHED_ENV: &str = "MUXAGENT_DETACHED";

fn chosen_relay(home: &Home, given: Option<String>) -> Result<String, CommandError> {
    let relay = match given {
        Some(relay) => relay,
        None => MachineState::load(home)?
            .relay
            .ok_or(DaemonError::NoRelay)?,
    };
    let url = muxagent_relay_client::RelayUrl::parse(&relay)?;
    if let Some(risk) = url.cleartext_risk() {
        // On the terminal of whoever starts it, and in the log of a detached daemon.
        crate::log::warn(&risk);
    }
    Ok(relay.trim_end_matches('/').to_string())
}

/// Start the daemon in the background and wait until it answers.
fn spawn_detached(home: &Home, relay: &str) -> Result<serde_json::Value, CommandError> {
    let log_path = home.path(LOG_FILE);
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&log_path)
        .map_err(CommandError::io(format!(
            "cannot open {}",
            log_path.display()
        )))?;
    let exe =
        std::env::current_exe().map_err(CommandError::io("cannot find this program's file"))?;
    std::process::Command::new(exe)
        .args([
            "daemon",
            "start",
            "--foreground",
            "--log-file",
            "--relay",
            relay,
        ])
        .env("MUXAGENT_HOME", home.root())
        .env(DETACHED_ENV, "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(CommandError::io(format!(
            "cannot open {}",
            log_path.display()
        )))?)
        .stderr(log)
        .spawn()
        .map_err(CommandError::io("cannot start the daemon"))?;
    smol::block_on(control::wait_until_up(home, START_TIMEOUT)).ok_or_else(|| {
        CommandError::Daemon(format!(
            "the daemon did not start; see {}",
            log_path.display()
        ))
    })
}

/// Print the pairing QR and link of a freshly started, unpaired daemon.
fn show_first_link(home: &Home) -> Result<(), CommandError> {
    let shown = smol::block_on(smol::future::or(
        async {
            let mut shown = false;
            let _ = control::follow(home, "pair", |notice| {
                if let Notice::PairingLink { link, .. } = notice {
                    print_link(&link);
                    shown = true;
                }
                false
            })
            .await;
            shown
        },
        async {
            smol::Timer::after(LINK_TIMEOUT).await;
            false
        },
    ));
    if !shown {
        println!(
            "not connected to the relay yet; `muxagent daemon status` shows the pairing link once it is"
        );
    }
    Ok(())
}

fn print_link(link: &str) {
    if let Some(code) = qr::render(link) {
        println!("{code}");
    }
    println!("Scan the code with your phone, or open the link in a browser, or run");
    println!("  muxagent ctl pair '{link}'");
    println!("on the controlling computer. The link works once and expires in 5 minutes.");
}

/// `muxagent daemon stop`.
pub fn daemon_stop(home: &Home) -> Result<(), CommandError> {
    if lock::running(home).is_none() {
        println!("the daemon is not running");
        return Ok(());
    }
    smol::block_on(control::request(home, "stop")).ok_or_else(|| {
        CommandError::Daemon("the daemon holds its lock but does not answer on its socket".into())
    })?;
    let deadline = std::time::Instant::now() + START_TIMEOUT;
    while lock::running(home).is_some() {
        if std::time::Instant::now() > deadline {
            return Err(CommandError::Daemon(format!(
                "the daemon did not stop within {CLI_DAEMON_WAIT_SECS} s"
            )));
        }
        std::thread::sleep(Duration::from_millis(CONTROL_POLL_MS));
    }
    println!("daemon stopped");
    Ok(())
}

/// `muxagent daemon status`.
pub fn daemon_status(home: &Home, json_out: bool) -> Result<(), CommandError> {
    let status = match smol::block_on(control::request(home, "status")).and_then(|mut r| r.pop()) {
        Some(status) => status,
        None => {
            let state = MachineState::load(home)?;
            json!({ "running": false, "relay": state.relay, "paired_devices": state.devices.len() })
        }
    };
    if json_out {
        println!("{}", render::json_text(&status));
        return Ok(());
    }
    if status["running"] != json!(true) {
        println!("the daemon is not running (start it with `muxagent daemon start`)");
        return Ok(());
    }
    println!(
        "daemon running (pid {}) on {}",
        status["pid"],
        status["hostname"].as_str().unwrap_or("?")
    );
    println!(
        "fingerprint  {}",
        status["fingerprint"].as_str().unwrap_or("?")
    );
    println!(
        "relay        {} ({})",
        status["relay"].as_str().unwrap_or("?"),
        if status["connected"] == json!(true) {
            "connected"
        } else if status["revoked"] == json!(true) {
            "revoked: `muxagent unpair --local`, then pair again"
        } else {
            "not connected"
        }
    );
    if let Some(error) = status["last_error"].as_str() {
        // It may quote the relay.
        println!("last error   {}", render::visible_text(error));
    }
    println!("devices      {}", status["paired_devices"]);
    if let Some(revoked) = status["revoked_devices"]
        .as_array()
        .filter(|revoked| !revoked.is_empty())
    {
        let names: Vec<&str> = revoked.iter().filter_map(|d| d.as_str()).collect();
        println!(
            "revoked      {} (forgotten: the relay no longer allows them)",
            names.join(", ")
        );
    }
    println!("sessions     {}", status["sessions"]);
    if let Some(damaged) = status["damaged_sessions"].as_u64().filter(|n| *n > 0) {
        println!("damaged      {damaged} (set aside; `muxagent sessions` says why)");
    }
    if let Some(link) = status["pairing"]["link"].as_str() {
        print_link(link);
    }
    Ok(())
}

/// `muxagent daemon install`.
pub fn daemon_install(home: &Home) -> Result<(), CommandError> {
    let exe =
        std::env::current_exe().map_err(CommandError::io("cannot find this program's file"))?;
    let user_home = std::env::var_os("HOME").ok_or(HomeError::NoHome)?;
    let user_home = std::path::PathBuf::from(user_home);
    if cfg!(target_os = "macos") {
        let path = user_home.join("Library/LaunchAgents/dev.muxagent.daemon.plist");
        let plist = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
  <key>Label</key><string>dev.muxagent.daemon</string>
  <key>ProgramArguments</key>
  <array><string>{}</string><string>daemon</string><string>start</string><string>--foreground</string><string>--log-file</string></array>
  <key>EnvironmentVariables</key><dict><key>MUXAGENT_HOME</key><string>{}</string></dict>
  <key>RunAtLoad</key><true/>
  <key>KeepAlive</key><true/>
  <key>StandardErrorPath</key><string>{}</string>
</dict>
</plist>
"#,
            exe.display(),
            home.root().display(),
            home.path(LOG_FILE).display()
        );
        write_unit(&path, &plist)?;
        println!(
            "wrote {}\nload it with: launchctl load -w {}",
            path.display(),
            path.display()
        );
    } else {
        let path = user_home.join(".config/systemd/user/muxagent.service");
        let unit = format!(
            "[Unit]\nDescription=muxagent daemon\nAfter=network-online.target\n\n[Service]\nEnvironment=MUXAGENT_HOME={}\nExecStart={} daemon start --foreground\nRestart=on-failure\nRestartSec=5\n\n[Install]\nWantedBy=default.target\n",
            home.root().display(),
            exe.display()
        );
        write_unit(&path, &unit)?;
        println!(
            "wrote {}\nenable it with: systemctl --user daemon-reload && systemctl --user enable --now muxagent",
            path.display()
        );
        println!("(to keep it running after you log out: loginctl enable-linger)");
    }
    Ok(())
}

fn write_unit(path: &std::path::Path, text: &str) -> Result<(), CommandError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(CommandError::io(format!("cannot create {}", dir.display())))?;
    }
    crate::home::write_atomic(path, text.as_bytes(), 0o644)?;
    Ok(())
}

/// `muxagent pair`.
pub fn pair(home: &Home, pair: cli::Pair) -> Result<(), CommandError> {
    if lock::running(home).is_none() {
        let relay = chosen_relay(home, pair.relay)?;
        let status = spawn_detached(home, &relay)?;
        println!("daemon started (pid {}), relay {relay}", status["pid"]);
    } else if pair.relay.is_some() {
        return Err(CommandError::Usage(
            "the daemon is running; stop it to change the relay (`muxagent daemon stop`)".into(),
        ));
    }
    let mut outcome = Err(CommandError::Daemon(
        "the daemon stopped before pairing finished".into(),
    ));
    smol::block_on(control::follow(home, "pair", |notice| match notice {
        Notice::PairingLink { link, .. } => {
            print_link(&link);
            println!("waiting for a device…");
            true
        }
        Notice::Paired { device } => {
            println!("paired with device {device}");
            outcome = Ok(());
            false
        }
        Notice::PairingExpired => {
            outcome = Err(CommandError::Daemon(
                "the pairing link expired unused; run `muxagent pair` again".into(),
            ));
            false
        }
        Notice::Unpaired | Notice::Failed { .. } => {
            outcome = Err(CommandError::Daemon(format!("pairing failed: {notice:?}")));
            false
        }
    }))
    .map_err(CommandError::Daemon)?;
    outcome
}

/// `muxagent auth status`.
pub fn auth_status(home: &Home, json_out: bool) -> Result<(), CommandError> {
    let identity = home.load_identity(KEY_FILE)?;
    let state = MachineState::load(home)?;
    let fingerprint = identity.map(|identity| identity.public().fingerprint());
    if json_out {
        let devices: Vec<_> = state
            .devices
            .iter()
            .map(|d| json!({ "fingerprint": d.fingerprint, "paired_at": d.paired_at }))
            .collect();
        println!(
            "{}",
            json!({
                "fingerprint": fingerprint.map(|f| f.to_string()),
                "fingerprint_full": fingerprint.map(|f| f.to_hex()),
                "relay": state.relay,
                "devices": devices,
            })
        );
        return Ok(());
    }
    match fingerprint {
        Some(fingerprint) => println!("fingerprint  {fingerprint}  ({})", fingerprint.to_hex()),
        None => println!("fingerprint  none yet (made on the first `muxagent daemon start`)"),
    }
    println!(
        "relay        {}",
        state.relay.as_deref().unwrap_or("not set")
    );
    if state.devices.is_empty() {
        println!("devices      none (pair with `muxagent pair`)");
    }
    for device in &state.devices {
        println!(
            "device       {}  paired {}",
            device.fingerprint,
            crate::log::timestamp(device.paired_at)
        );
    }
    Ok(())
}

/// `muxagent unpair`.
pub fn unpair(home: &Home) -> Result<(), CommandError> {
    if lock::running(home).is_none() {
        return Err(CommandError::Usage(
            "the daemon must run to tell the relay; start it with `muxagent daemon start`".into(),
        ));
    }
    let mut outcome = Err(CommandError::Daemon(
        "the daemon stopped before the relay answered".into(),
    ));
    smol::block_on(control::follow(home, "unpair", |notice| {
        outcome = match notice {
            Notice::Unpaired => {
                println!("unpaired: the relay forgot this machine and it forgot its devices");
                Ok(())
            }
            Notice::Failed { reason } => Err(CommandError::Relay(reason)),
            other => Err(CommandError::Daemon(format!(
                "unexpected answer: {other:?}"
            ))),
        };
        false
    }))
    .map_err(CommandError::Daemon)?;
    outcome
}

/// `muxagent unpair --local`: forget the account and make new keys, without the relay.
pub fn reset(home: &Home) -> Result<(), CommandError> {
    let fingerprint = if lock::running(home).is_some() {
        let reply = smol::block_on(control::request(home, "reset"))
            .and_then(|mut replies| replies.pop())
            .ok_or_else(|| CommandError::Daemon("the daemon did not answer".into()))?;
        if let Some(error) = reply["error"].as_str() {
            return Err(CommandError::Daemon(format!("reset failed: {error}")));
        }
        reply["fingerprint"].as_str().unwrap_or("?").to_string()
    } else {
        let _lock = lock::acquire(home)?;
        let mut state = MachineState::load(home)?;
        let identity = daemon::state::reset(home, &mut state)?;
        identity.public().fingerprint().to_string()
    };
    println!(
        "this machine forgot its account and its devices and made new keys (fingerprint {fingerprint})"
    );
    println!("its sessions are kept; pair it again with `muxagent pair`");
    Ok(())
}

/// `muxagent sessions`.
pub fn sessions(home: &Home, json_out: bool) -> Result<(), CommandError> {
    let sessions = if lock::running(home).is_some() {
        let rows = smol::block_on(control::request(home, "sessions"))
            .and_then(|mut replies| replies.pop())
            .ok_or_else(|| CommandError::Daemon("the daemon did not answer".into()))?;
        if json_out {
            println!("{}", render::json_text(&rows["sessions"]));
            return Ok(());
        }
        rows["sessions"].as_array().cloned().unwrap_or_default()
    } else {
        let _lock = lock::acquire(home)?;
        let (sessions, _) = daemon::sessions::Sessions::open(&daemon::sessions_dir(home))?;
        let damaged = sessions.damaged().iter().map(daemon::damaged_json);
        let rows: Vec<_> = sessions
            .list()
            .iter()
            .map(render::session_json)
            .chain(damaged)
            .collect();
        if json_out {
            println!("{}", render::json_text(&serde_json::Value::Array(rows)));
            return Ok(());
        }
        rows
    };
    if sessions.is_empty() {
        println!("no sessions");
    }
    for row in sessions {
        let id = row["id"].as_str().unwrap_or("").get(..8).unwrap_or("");
        if let Some(error) = row["error"].as_str() {
            let error = render::visible_text(error);
            println!("{id:<10} {:<8} {:<16} {error}", "", "damaged");
            continue;
        }
        println!(
            "{id:<10} {:<8} {:<16} {}",
            render::visible_field(row["runtime"].as_str().unwrap_or("")),
            row["status"].as_str().unwrap_or(""),
            render::visible_field(row["title"].as_str().unwrap_or(""))
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::*;

    #[test]
    fn an_error_from_below_reads_as_before_and_stays_its_source() {
        let error = CommandError::from(DaemonError::NoRelay);
        assert_eq!(error.to_string(), DaemonError::NoRelay.to_string());
        let source = error.source().map(ToString::to_string);
        assert_eq!(source, Some(DaemonError::NoRelay.to_string()));
    }

    #[test]
    fn a_failed_file_operation_says_what_it_was_doing() {
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let error = CommandError::io("cannot create /x")(denied);
        assert!(
            error.to_string().starts_with("cannot create /x: "),
            "{error}"
        );
        assert!(error.source().is_some());
    }

    #[test]
    fn a_message_of_our_own_is_printed_as_it_is() {
        let error = CommandError::Usage("`x` is not MACHINE:SESSION".into());
        assert_eq!(error.to_string(), "`x` is not MACHINE:SESSION");
        assert!(error.source().is_none());
    }
}
