//! The Unix socket (`$MUXAGENT_HOME/daemon.sock`, mode 0600) through which the CLI drives a
//! running daemon: one JSON request line in, JSON lines out.
//!
//! Requests: `{"op":"status"}`, `{"op":"sessions"}`, `{"op":"stop"}`, `{"op":"pair"}` (streams
//! the pairing link, then `paired` or `expired`), `{"op":"unpair"}`, `{"op":"reset"}` (forget
//! the account and make new keys without the relay; answers `fingerprint` or `error`).

use std::os::unix::fs::PermissionsExt;
use std::rc::Rc;
use std::time::Duration;

use serde_json::json;
use smol::LocalExecutor;
use smol::channel::Sender;
use smol::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use smol::net::unix::{UnixListener, UnixStream};

use super::link::pairing;
use super::{DaemonError, Shared};
use crate::home::Home;
use crate::limits::{CONTROL_NOTICES_QUEUE, CONTROL_POLL_MS, CONTROL_REQUEST_MAX_LEN};

/// What [`follow`] streams: the news of a `pair` or `unpair` request (written by the relay
/// link's pairing, which the socket only passes on).
pub use super::link::pairing::Notice;

/// The socket's file name.
pub const SOCKET_FILE: &str = "daemon.sock";

/// Listen on the socket (replacing a dead daemon's socket file; the caller holds the lock).
pub fn bind(home: &Home) -> Result<UnixListener, DaemonError> {
    let path = home.path(SOCKET_FILE);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)
        .map_err(|error| DaemonError::Io("cannot listen on the control socket", error))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(|error| DaemonError::Io("cannot protect the control socket", error))?;
    Ok(listener)
}

/// Serve control connections until the daemon stops.
pub async fn serve(
    core: Shared,
    executor: Rc<LocalExecutor<'static>>,
    listener: UnixListener,
    stop: Sender<()>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        executor
            .spawn(handle(core.clone(), stream, stop.clone()))
            .detach();
    }
}

async fn handle(core: Shared, stream: UnixStream, stop: Sender<()>) {
    let mut reader = BufReader::new(stream.clone()).take(CONTROL_REQUEST_MAX_LEN as u64);
    let mut line = String::new();
    let mut writer = stream;
    if reader.read_line(&mut line).await.is_err() {
        return;
    }
    let request: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
    let op = request.get("op").and_then(|op| op.as_str()).unwrap_or("");
    let reply = match op {
        "status" => status(&core),
        "sessions" => json!({ "sessions": sessions(&core) }),
        "reset" => match core.borrow_mut().reset() {
            Ok(fingerprint) => json!({ "fingerprint": fingerprint.to_string() }),
            Err(error) => json!({ "error": error.to_string() }),
        },
        "stop" => {
            let _ = writer.write_all(b"{\"stopping\":true}\n").await;
            let _ = stop.send(()).await;
            return;
        }
        "pair" | "unpair" => {
            let (notices, receiver) = smol::channel::bounded(CONTROL_NOTICES_QUEUE);
            let started = if op == "pair" {
                pairing::watch(&core, notices);
                Ok(())
            } else {
                pairing::leave(&core, notices)
            };
            if let Err(reason) = started {
                let _ =
                    write_line(&mut writer, &json!({ "event": "failed", "reason": reason })).await;
                return;
            }
            while let Ok(notice) = receiver.recv().await {
                let last = !matches!(notice, Notice::PairingLink { .. });
                if write_line(
                    &mut writer,
                    &serde_json::to_value(&notice).unwrap_or_default(),
                )
                .await
                .is_err()
                    || last
                {
                    return;
                }
            }
            return;
        }
        _ => json!({ "error": format!("unknown request {line:?}") }),
    };
    let _ = write_line(&mut writer, &reply).await;
}

async fn write_line(writer: &mut UnixStream, value: &serde_json::Value) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec(value).unwrap_or_default();
    bytes.push(b'\n');
    writer.write_all(&bytes).await
}

fn status(core: &Shared) -> serde_json::Value {
    let c = core.borrow();
    json!({
        "running": true,
        "pid": std::process::id(),
        "hostname": c.hostname.as_str(),
        "fingerprint": c.identity.public().fingerprint().to_string(),
        "relay": c.state.relay,
        "connected": c.link.status().connected,
        "revoked": c.link.status().revoked,
        "last_error": c.link.status().last_error,
        "paired_devices": c.state.devices.len(),
        "revoked_devices": c.link.status().revoked_devices.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "sessions": c.sessions.list().len(),
        "damaged_sessions": c.sessions.damaged().len(),
        "pairing": c.link.status().pairing.as_ref().map(|offer| json!({ "link": offer.link, "expires_at": offer.expires_at })),
    })
}

/// Session metadata as JSON rows, then the sessions set aside because their logs are damaged.
pub fn sessions(core: &Shared) -> Vec<serde_json::Value> {
    let core = core.borrow();
    let sessions = &core.sessions;
    let damaged = sessions.damaged().iter().map(super::damaged_json);
    sessions
        .list()
        .iter()
        .map(crate::render::session_json)
        .chain(damaged)
        .collect()
}

/// Ask a running daemon; `None` when none answers.
pub async fn request(home: &Home, op: &str) -> Option<Vec<serde_json::Value>> {
    let stream = UnixStream::connect(home.path(SOCKET_FILE)).await.ok()?;
    let mut writer = stream.clone();
    write_line(&mut writer, &json!({ "op": op })).await.ok()?;
    let mut lines = BufReader::new(stream).lines();
    let mut out = Vec::new();
    use smol::stream::StreamExt;
    while let Some(Ok(line)) = lines.next().await {
        out.push(serde_json::from_str(&line).unwrap_or_default());
        if op == "status" || op == "sessions" || op == "stop" || op == "reset" {
            break;
        }
    }
    Some(out)
}

/// Stream a `pair` or `unpair` request's notices to `each` until the last one.
pub async fn follow(
    home: &Home,
    op: &str,
    mut each: impl FnMut(Notice) -> bool,
) -> Result<(), String> {
    let stream = UnixStream::connect(home.path(SOCKET_FILE))
        .await
        .map_err(|_| {
            "the daemon is not running; start it with `muxagent daemon start`".to_string()
        })?;
    let mut writer = stream.clone();
    write_line(&mut writer, &json!({ "op": op }))
        .await
        .map_err(|error| error.to_string())?;
    let mut lines = BufReader::new(stream).lines();
    use smol::stream::StreamExt;
    while let Some(line) = lines.next().await {
        let line = line.map_err(|error| error.to_string())?;
        let notice: Notice = serde_json::from_str(&line)
            .map_err(|error| format!("bad answer from the daemon: {error}"))?;
        if !each(notice) {
            break;
        }
    }
    Ok(())
}

/// Wait until a daemon answers on the socket (after `daemon start` spawned one).
pub async fn wait_until_up(home: &Home, within: Duration) -> Option<serde_json::Value> {
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        if let Some(status) = request(home, "status")
            .await
            .and_then(|mut replies| replies.pop())
        {
            return Some(status);
        }
        smol::Timer::after(Duration::from_millis(CONTROL_POLL_MS)).await;
    }
    None
}
