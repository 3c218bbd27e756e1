//! The daemon's log lines: `2026-11-24T09:59:01Z LEVEL message` on standard error, which is the
//! log file when the daemon runs detached.
//!
//! Two things keep whoever can reach the daemon from filling its disk through the log:
//!
//! - [`Throttle`]: warnings caused by a peer (a device sending junk, the relay refusing things)
//!   go through a per-peer budget of [`DAEMON_WARNINGS_PER_PEER`] lines per
//!   [`DAEMON_WARNING_WINDOW_SECS`]; past it one line says the rest are suppressed, and the next
//!   window starts with a count of what was.
//! - [`log_to_file`]: a detached daemon writes `$MUXAGENT_HOME/daemon.log` itself and rotates
//!   it at [`DAEMON_LOG_MAX_LEN`] to `daemon.log.1` (one old file kept), so the log takes at most
//!   twice that.
//!
//! Secrets never go into a log line: the pairing link is shown with [`show`], which writes only
//! to a terminal.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::limits::{
    DAEMON_LOG_MAX_LEN, DAEMON_WARNING_PEERS, DAEMON_WARNING_WINDOW_SECS, DAEMON_WARNINGS_PER_PEER,
};
use crate::os;

/// Informational.
pub fn info(message: &str) {
    line("INFO", message);
}

/// Something was wrong but the daemon carries on.
pub fn warn(message: &str) {
    line("WARN", message);
}

/// An operation failed.
pub fn error(message: &str) {
    line("ERROR", message);
}

/// `text` for the person at the terminal, never for a log file: standard error when it is a
/// terminal and the daemon does not log to its file, else nothing. For what must not be kept
/// (the pairing link holds the pairing secret).
pub fn show(text: &str) {
    let to_file = SINK.lock().map(|sink| sink.is_some()).unwrap_or(true);
    let stderr = std::io::stderr();
    if !to_file && stderr.is_terminal() {
        let _ = writeln!(stderr.lock(), "{text}");
    }
}

/// The log file being written, when the daemon owns it.
struct Sink {
    file: LogFile,
}

static SINK: Mutex<Option<Sink>> = Mutex::new(None);

/// From now on, write the log to `path`, rotated at [`DAEMON_LOG_MAX_LEN`], and make it this
/// process's standard error too (so a panic lands in it).
pub fn log_to_file(path: &Path) -> std::io::Result<()> {
    let file = LogFile::open(path, DAEMON_LOG_MAX_LEN)?;
    rustix::stdio::dup2_stderr(file.file()?)?;
    if let Ok(mut sink) = SINK.lock() {
        *sink = Some(Sink { file });
    }
    Ok(())
}

fn line(level: &str, message: &str) {
    let text = format!("{} {level} {message}\n", timestamp(os::unix_now()));
    if let Ok(mut sink) = SINK.lock()
        && let Some(sink) = sink.as_mut()
    {
        if let Ok(Some(file)) = sink.file.write(text.as_bytes()) {
            // Rotated: standard error follows the new file.
            let _ = rustix::stdio::dup2_stderr(file);
        }
        return;
    }
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// A log file with a size cap: when a write takes it past the cap, it becomes `<path>.1`
/// (replacing the previous one) and a new file is started.
pub struct LogFile {
    path: PathBuf,
    cap: u64,
    file: Option<File>,
    len: u64,
}

impl LogFile {
    /// Append to `path` (created 0600), rotating at `cap` bytes.
    pub fn open(path: &Path, cap: u64) -> std::io::Result<Self> {
        let file = open_append(path)?;
        let len = file.metadata()?.len();
        Ok(Self {
            path: path.to_path_buf(),
            cap,
            file: Some(file),
            len,
        })
    }

    /// The file being written.
    fn file(&self) -> std::io::Result<&File> {
        self.file
            .as_ref()
            .ok_or_else(|| std::io::Error::other("the log file could not be reopened"))
    }

    /// Write `bytes`; returns the new file when this write rotated.
    pub fn write(&mut self, bytes: &[u8]) -> std::io::Result<Option<&File>> {
        let mut rotated = false;
        if self.len > 0 && self.len + bytes.len() as u64 > self.cap {
            let mut old = self.path.clone().into_os_string();
            old.push(".1");
            std::fs::rename(&self.path, &old)?;
            self.file = None;
            self.file = Some(open_append(&self.path)?);
            self.len = 0;
            rotated = true;
        }
        let mut file = self.file()?;
        file.write_all(bytes)?;
        self.len += bytes.len() as u64;
        Ok(rotated.then_some(self.file()?))
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// What [`Throttle::admit`] says about one warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Log it.
    Log,
    /// Log it, and say that further ones are suppressed until the window ends.
    LogLast,
    /// Count it, do not log it.
    Suppress,
}

/// One peer's budget in the current window.
#[derive(Clone, Copy, Debug)]
struct Window {
    started: u64,
    logged: u32,
    suppressed: u64,
}

impl Window {
    fn new(now: u64) -> Self {
        Self {
            started: now,
            logged: 0,
            suppressed: 0,
        }
    }

    fn expired(&self, now: u64) -> bool {
        now >= self.started + DAEMON_WARNING_WINDOW_SECS
    }

    fn admit(&mut self) -> Admit {
        if self.logged < DAEMON_WARNINGS_PER_PEER {
            self.logged += 1;
            if self.logged == DAEMON_WARNINGS_PER_PEER {
                Admit::LogLast
            } else {
                Admit::Log
            }
        } else {
            self.suppressed += 1;
            Admit::Suppress
        }
    }
}

/// Per-peer warning budgets: at most [`DAEMON_WARNINGS_PER_PEER`] lines per peer per
/// [`DAEMON_WARNING_WINDOW_SECS`], then one summary line when the window is over. It tracks at
/// most [`DAEMON_WARNING_PEERS`] peers (a peer is whoever the relay says sent the packet); past
/// that, new peers share one budget, so the table cannot be grown by an attacker either.
pub struct Throttle<K> {
    windows: BTreeMap<K, Window>,
    /// The shared budget of peers beyond the table's capacity.
    others: Option<Window>,
}

impl<K: Ord + Clone + fmt::Display> Default for Throttle<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Ord + Clone + fmt::Display> Throttle<K> {
    /// No budgets used.
    pub fn new() -> Self {
        Self {
            windows: BTreeMap::new(),
            others: None,
        }
    }

    /// Peers with a budget in use now.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.windows.len()
    }

    /// Whether a warning about `peer` at `now` (Unix seconds) is logged. Before that, the
    /// summaries of windows that ended (peer, or `None` for the shared budget, and how many
    /// warnings were suppressed) go to `summary`.
    pub fn admit(&mut self, peer: &K, now: u64, mut summary: impl FnMut(Option<&K>, u64)) -> Admit {
        self.windows.retain(|key, window| {
            let expired = window.expired(now);
            if expired && window.suppressed > 0 {
                summary(Some(key), window.suppressed);
            }
            !expired
        });
        if let Some(window) = self.others.filter(|window| window.expired(now)) {
            if window.suppressed > 0 {
                summary(None, window.suppressed);
            }
            self.others = None;
        }
        if let Some(window) = self.windows.get_mut(peer) {
            return window.admit();
        }
        if self.windows.len() < DAEMON_WARNING_PEERS {
            let mut window = Window::new(now);
            let admit = window.admit();
            self.windows.insert(peer.clone(), window);
            return admit;
        }
        self.others.get_or_insert_with(|| Window::new(now)).admit()
    }

    /// Log `message`, a warning caused by `peer`, within its budget.
    pub fn warn(&mut self, peer: &K, message: &str) {
        let admit = self.admit(peer, os::unix_now(), |key, suppressed| match key {
            Some(key) => warn(&format!(
                "{key}: {suppressed} more warnings were suppressed in the last {DAEMON_WARNING_WINDOW_SECS} s"
            )),
            None => warn(&format!(
                "{suppressed} more warnings about other peers were suppressed in the last {DAEMON_WARNING_WINDOW_SECS} s"
            )),
        });
        match admit {
            Admit::Log => warn(message),
            Admit::LogLast => warn(&format!(
                "{message} (the limit of {DAEMON_WARNINGS_PER_PEER} warnings about {peer} per \
                 {DAEMON_WARNING_WINDOW_SECS} s is reached: further ones are counted, not logged)"
            )),
            Admit::Suppress => {}
        }
    }
}

/// RFC 3339 UTC time of `unix` seconds.
pub fn timestamp(unix: u64) -> String {
    let days = unix / 86_400;
    let secs = unix % 86_400;
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Howard Hinnant's days-to-civil: (year, month, day) of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(super::timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::timestamp(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(super::timestamp(1_795_515_541), "2026-11-24T10:19:01Z");
    }

    #[test]
    fn a_peer_gets_its_budget_per_window_then_one_summary() {
        let mut throttle = Throttle::<u32>::new();
        let mut summaries = Vec::new();
        let mut logged = 0;
        for _ in 0..10_000 {
            match throttle.admit(&7, 1000, |peer, n| summaries.push((peer.copied(), n))) {
                Admit::Log | Admit::LogLast => logged += 1,
                Admit::Suppress => {}
            }
        }
        assert_eq!(logged, DAEMON_WARNINGS_PER_PEER);
        assert!(summaries.is_empty());
        // Another peer has its own budget.
        assert_eq!(throttle.admit(&8, 1001, |_, _| {}), Admit::Log);
        // The next window starts with the count of what was suppressed.
        let later = 1000 + DAEMON_WARNING_WINDOW_SECS;
        assert_eq!(
            throttle.admit(&7, later, |peer, n| summaries.push((peer.copied(), n))),
            Admit::Log
        );
        assert_eq!(
            summaries,
            [(Some(7), 10_000 - u64::from(DAEMON_WARNINGS_PER_PEER))]
        );
    }

    #[test]
    fn the_table_of_peers_is_bounded() {
        let mut throttle = Throttle::<u32>::new();
        let mut logged = 0u64;
        for peer in 0..100_000u32 {
            if throttle.admit(&peer, 5, |_, _| {}) != Admit::Suppress {
                logged += 1;
            }
        }
        assert_eq!(throttle.tracked(), DAEMON_WARNING_PEERS);
        // Every tracked peer logs once, and the rest share one budget.
        assert_eq!(
            logged,
            (DAEMON_WARNING_PEERS as u64) + u64::from(DAEMON_WARNINGS_PER_PEER)
        );
        let mut shared = Vec::new();
        throttle.admit(&1, 5 + DAEMON_WARNING_WINDOW_SECS, |peer, n| {
            shared.push((peer.copied(), n))
        });
        assert!(shared.contains(&(
            None,
            100_000 - DAEMON_WARNING_PEERS as u64 - u64::from(DAEMON_WARNINGS_PER_PEER)
        )));
    }

    #[test]
    fn the_log_file_rotates_at_its_cap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("daemon.log");
        let cap = 10_000;
        let mut file = LogFile::open(&path, cap).expect("open");
        let line = [b'x'; 99];
        let mut rotations = 0;
        for _ in 0..1_000 {
            let mut text = line.to_vec();
            text.push(b'\n');
            if file.write(&text).expect("write").is_some() {
                rotations += 1;
            }
            let len = std::fs::metadata(&path).expect("file").len();
            assert!(len <= cap, "{len}");
        }
        // 100 000 bytes written, 10 000 kept per file.
        assert_eq!(rotations, 9);
        let old = std::fs::metadata(dir.path().join("daemon.log.1")).expect("old file");
        assert_eq!(old.len(), cap);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).expect("file").permissions().mode() & 0o777,
            0o600
        );
    }
}
