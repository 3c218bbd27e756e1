//! One daemon per `$MUXAGENT_HOME`: an exclusive lock on `daemon.lock`, which holds the pid. The
//! kernel drops the lock when the process dies, so a killed daemon's lock is never stale.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;

use super::DaemonError;
use crate::home::Home;

/// The lock file's name.
pub const LOCK_FILE: &str = "daemon.lock";

/// Held while the daemon runs.
#[derive(Debug)]
pub struct Lock(#[allow(dead_code)] File);

/// Take the lock or say who holds it.
pub fn acquire(home: &Home) -> Result<Lock, DaemonError> {
    let path = home.path(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|error| DaemonError::Io("cannot open the daemon lock", error))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(DaemonError::AlreadyRunning(holder(&mut file)));
        }
        Err(TryLockError::Error(error)) => return Err(DaemonError::Io("cannot lock", error)),
    }
    let write = |file: &mut File| -> std::io::Result<()> {
        file.set_len(0)?;
        file.rewind()?;
        writeln!(file, "{}", std::process::id())?;
        file.sync_all()
    };
    write(&mut file).map_err(|error| DaemonError::Io("cannot write the daemon lock", error))?;
    Ok(Lock(file))
}

/// The pid of a running daemon, if one holds the lock.
pub fn running(home: &Home) -> Option<String> {
    let mut file = File::open(home.path(LOCK_FILE)).ok()?;
    match file.try_lock() {
        Ok(()) => None,
        Err(_) => Some(holder(&mut file)),
    }
}

fn holder(file: &mut File) -> String {
    let mut pid = String::new();
    let _ = file.read_to_string(&mut pid);
    match pid.trim() {
        "" => "unknown".into(),
        pid => pid.into(),
    }
}
