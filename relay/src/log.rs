//! The registry's durable log: every accepted [`SignedEntry`] exactly as its author signed it,
//! in a [`muxagent_store::Log`] in the data folder (no retention: nothing is ever dropped).
//!
//! An entry is appended **and synced** before the client is acknowledged, so a crash (even
//! `kill -9`) loses no acknowledged entry. At startup every stored entry is verified again
//! (signatures and rules): the relay's disk alone cannot forge an account, a machine or a
//! revocation, and an entry that no longer verifies is skipped and counted.
//!
//! A lock file (`File::try_lock`, an `flock`) in the folder keeps a second relay process off the same log.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use muxagent_proto::frame::SignedEntry;
use muxagent_proto::limits::LOG_SEGMENT_LEN;
use muxagent_store::{Log, Options};

use crate::error::RelayError;

/// Subfolder of the data folder holding the registry log.
const REGISTRY_DIR: &str = "registry";
/// Lock file in the data folder.
const LOCK_FILE: &str = "relay.lock";

pub(crate) struct RegistryLog {
    log: Log<SignedEntry>,
    _lock: File,
}

impl RegistryLog {
    /// Open (or create) the log under `data_dir` and read every stored entry, oldest first.
    pub(crate) fn open(data_dir: &Path) -> Result<(Self, Vec<SignedEntry>), RelayError> {
        let store_error = |what: &str, path: &Path, e: &dyn std::fmt::Display| RelayError::Store {
            reason: format!("{what} {}: {e}", path.display()),
        };
        std::fs::create_dir_all(data_dir)
            .map_err(|e| store_error("cannot create", data_dir, &e))?;
        let lock_path = data_dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| store_error("cannot open", &lock_path, &e))?;
        lock.try_lock().map_err(|_| RelayError::Store {
            reason: format!(
                "another relay is using {} (its lock {} is held)",
                data_dir.display(),
                lock_path.display()
            ),
        })?;
        let dir: PathBuf = data_dir.join(REGISTRY_DIR);
        let options = Options {
            segment_len: LOG_SEGMENT_LEN,
            retention: None,
        };
        let (mut log, report) =
            Log::open(&dir, options).map_err(|e| store_error("cannot open", &dir, &e))?;
        if let Some(cut) = &report.truncated {
            crate::warn(format_args!(
                "registry log: cut a torn tail of {} bytes from {} (never acknowledged)",
                cut.dropped_bytes,
                cut.segment.display()
            ));
        }
        let mut entries = Vec::new();
        for item in log
            .iter()
            .map_err(|e| store_error("cannot read", &dir, &e))?
        {
            let (_, entry) = item.map_err(|e| store_error("cannot read", &dir, &e))?;
            entries.push(entry);
        }
        Ok((RegistryLog { log, _lock: lock }, entries))
    }

    /// Append `entry` and make it durable. After an error the log refuses every later write
    /// (see `muxagent_store`'s poisoning) until the relay restarts and reopens it.
    pub(crate) fn append_durable(&mut self, entry: &SignedEntry) -> Result<(), String> {
        self.log.append(entry).map_err(|e| e.to_string())?;
        self.log.sync().map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Sync whatever is buffered (at shutdown; appends are synced already).
    pub(crate) fn flush(&mut self) -> Result<(), String> {
        self.log.sync().map(|_| ()).map_err(|e| e.to_string())
    }
}
