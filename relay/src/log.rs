//! The registry's durable log, a [`muxagent_store::Log`] of [`Record`]s in the data folder: the
//! accounts as the relay last compacted them, then every [`SignedEntry`] accepted since,
//! exactly as its author signed it.
//!
//! An entry is appended **and synced** before the client is acknowledged, so a crash (even
//! `kill -9`) loses no acknowledged entry. Once the entries appended since the last compaction
//! outnumber a sixteenth of the registry's keys (and `RELAY_REGISTRY_COMPACT_FLOOR`), the log
//! is rewritten as one [`Record::Account`] per account (`Log::rewrite`: atomic, a crash leaves
//! the old log or the new one), so its size follows the live registry, not its history. A clean
//! shutdown compacts it too once it holds more than the floor's entries.
//!
//! At startup the entries are verified again (signatures and rules): an entry that no longer
//! verifies is skipped and counted. The account records are not: the relay verified every entry
//! they fold when it accepted it, and re-verifying a million signatures took minutes. So the
//! data folder is trusted like the relay's binary — whoever can write it can add a key to an
//! account (before compaction existed, they could already replay an old entry or delete a
//! revocation). What a forged record buys is routing, never the traffic: devices and machines
//! authenticate each other end to end with the keys they pinned at pairing.
//!
//! Relays before compaction kept bare [`SignedEntry`]s in `registry/`; such a log is replayed
//! (verified) once, compacted into `registry-v2/`, and removed.
//!
//! A lock file (`File::try_lock`, an `flock`) in the folder keeps a second relay process off the
//! same log.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use crate::limits::RELAY_REGISTRY_COMPACT_RATIO;
use muxagent_proto::frame::SignedEntry;
use muxagent_store::limits::LOG_SEGMENT_LEN;
use muxagent_store::{Log, Options};
use serde::{Deserialize, Serialize};

use crate::error::RelayError;
use crate::registry::AccountRecord;

/// Subfolder of the data folder holding the registry log.
const REGISTRY_DIR: &str = "registry-v2";
/// Where relays before compaction kept their log of bare entries.
const LEGACY_DIR: &str = "registry";
/// The legacy log is renamed to this (atomically) once replaced, then removed: a crash while
/// removing it never leaves a partial old log to be taken for the registry.
const LEGACY_REPLACED: &str = "registry.replaced";
/// Lock file in the data folder.
const LOCK_FILE: &str = "relay.lock";

/// One record of the registry log. Variants are only ever appended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Record {
    /// An accepted entry, as its author signed it; verified again at startup.
    Entry(SignedEntry),
    /// An account as the relay's fold held it when it compacted the log; trusted at startup.
    Account(AccountRecord),
}

pub(crate) struct RegistryLog {
    log: Log<Record>,
    /// Entries appended since the last compaction.
    entries: usize,
    /// Entries below which the log is not compacted.
    floor: usize,
    /// A pre-compaction log to remove once the first compaction has committed.
    legacy: Option<PathBuf>,
    _lock: File,
}

impl RegistryLog {
    /// Open (or create) the log under `data_dir` and read every stored record, oldest first.
    /// It is compacted once it holds `floor` entries and more than its ratio.
    pub(crate) fn open(data_dir: &Path, floor: usize) -> Result<(Self, Vec<Record>), RelayError> {
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
        let options = Options {
            segment_len: LOG_SEGMENT_LEN,
            retention: None,
        };
        let dir: PathBuf = data_dir.join(REGISTRY_DIR);
        let (mut log, report) =
            Log::<Record>::open(&dir, options).map_err(|e| store_error("cannot open", &dir, &e))?;
        warn_torn(&report);
        let replaced = data_dir.join(LEGACY_REPLACED);
        if replaced.is_dir() {
            std::fs::remove_dir_all(&replaced)
                .map_err(|e| store_error("cannot remove", &replaced, &e))?;
        }
        let legacy_dir = data_dir.join(LEGACY_DIR);
        // While the legacy log exists, no compaction has committed: it is the registry, and
        // whatever the new folder holds is an unfinished migration's.
        if legacy_dir.is_dir() {
            let (mut old, report) = Log::<SignedEntry>::open(&legacy_dir, options)
                .map_err(|e| store_error("cannot open", &legacy_dir, &e))?;
            warn_torn(&report);
            let mut records = Vec::new();
            for item in old
                .iter()
                .map_err(|e| store_error("cannot read", &legacy_dir, &e))?
            {
                let (_, entry) = item.map_err(|e| store_error("cannot read", &legacy_dir, &e))?;
                records.push(Record::Entry(entry));
            }
            let entries = records.len();
            let registry = RegistryLog {
                log,
                entries,
                floor,
                legacy: Some(legacy_dir),
                _lock: lock,
            };
            return Ok((registry, records));
        }
        let mut records = Vec::new();
        let mut entries = 0;
        for item in log
            .iter()
            .map_err(|e| store_error("cannot read", &dir, &e))?
        {
            let (_, record) = item.map_err(|e| store_error("cannot read", &dir, &e))?;
            entries += usize::from(matches!(record, Record::Entry(_)));
            records.push(record);
        }
        let registry = RegistryLog {
            log,
            entries,
            floor,
            legacy: None,
            _lock: lock,
        };
        Ok((registry, records))
    }

    /// Append `entry` and make it durable. After an error the log refuses every later write
    /// (see `muxagent_store`'s poisoning) until the relay restarts and reopens it.
    pub(crate) fn append_durable(&mut self, entry: SignedEntry) -> Result<(), String> {
        if self.legacy.is_some() {
            return Err("the registry log has not been migrated".into());
        }
        self.log
            .append(&Record::Entry(entry))
            .map_err(|e| e.to_string())?;
        self.log.sync().map_err(|e| e.to_string())?;
        self.entries += 1;
        Ok(())
    }

    /// Whether the log should be compacted for a registry of `keys` keys: it is an old log
    /// still, or it holds more entries than [`RELAY_REGISTRY_COMPACT_RATIO`] allows.
    pub(crate) fn wants_compaction(&self, keys: usize) -> bool {
        self.legacy.is_some() || self.entries > self.floor.max(keys / RELAY_REGISTRY_COMPACT_RATIO)
    }

    /// Whether the log is still an older relay's, to be replaced by its first compaction.
    pub(crate) fn is_migrating(&self) -> bool {
        self.legacy.is_some()
    }

    /// Whether a clean shutdown should compact the log, so the next start verifies few entries.
    pub(crate) fn wants_compaction_at_shutdown(&self) -> bool {
        self.entries > self.floor
    }

    /// Replace the log with `accounts` (atomic: a crash leaves the old log or the new one), then
    /// remove a legacy log it replaces.
    pub(crate) fn compact(&mut self, accounts: Vec<AccountRecord>) -> Result<(), String> {
        let records: Vec<Record> = accounts.into_iter().map(Record::Account).collect();
        self.log.rewrite(&records).map_err(|e| e.to_string())?;
        self.entries = 0;
        if let Some(legacy) = self.legacy.take() {
            let replaced = legacy.with_file_name(LEGACY_REPLACED);
            let error = |e: std::io::Error| format!("cannot retire {}: {e}", legacy.display());
            std::fs::rename(&legacy, &replaced).map_err(error)?;
            if let Some(parent) = legacy.parent() {
                File::open(parent)
                    .and_then(|d| d.sync_all())
                    .map_err(error)?;
            }
            std::fs::remove_dir_all(&replaced).map_err(error)?;
        }
        Ok(())
    }

    /// Bytes the log takes on disk.
    pub(crate) fn disk_len(&self) -> u64 {
        self.log.disk_len()
    }

    /// Sync whatever is buffered (at shutdown; appends are synced already).
    pub(crate) fn flush(&mut self) -> Result<(), String> {
        self.log.sync().map(|_| ()).map_err(|e| e.to_string())
    }
}

fn warn_torn(report: &muxagent_store::RecoveryReport) {
    if let Some(cut) = &report.truncated {
        crate::warn(format_args!(
            "registry log: cut a torn tail of {} bytes from {} (never acknowledged)",
            cut.dropped_bytes,
            cut.segment.display()
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use muxagent_proto::Bytes64;
    use muxagent_proto::identity::{Fingerprint, Signature};

    use crate::registry::DeviceSnapshot;

    fn entry(n: u8) -> SignedEntry {
        SignedEntry {
            entry: vec![n; 200],
            signature: Signature(Bytes64([n; 64])),
        }
    }

    fn account(n: u8) -> AccountRecord {
        AccountRecord {
            name: Fingerprint([n; 32]),
            machines: Vec::new(),
            devices: vec![DeviceSnapshot {
                key: Fingerprint([n; 32]),
                owner: true,
                paired: Vec::new(),
            }],
            revoked: vec![Fingerprint([n.wrapping_add(100); 32])],
        }
    }

    #[test]
    fn a_legacy_log_is_replayed_then_replaced_by_its_compaction() {
        let dir = tempfile::tempdir().expect("temp dir");
        {
            let options = Options {
                segment_len: LOG_SEGMENT_LEN,
                retention: None,
            };
            let (mut old, _) =
                Log::<SignedEntry>::open(dir.path().join(LEGACY_DIR), options).expect("opens");
            for n in 0..3 {
                old.append(&entry(n)).expect("appends");
            }
            old.sync().expect("syncs");
        }
        {
            let (mut log, records) = RegistryLog::open(dir.path(), 16).expect("opens");
            let expected: Vec<Record> = (0..3).map(|n| Record::Entry(entry(n))).collect();
            assert_eq!(records, expected);
            assert!(log.wants_compaction(0), "an old log is compacted at once");
            assert!(
                log.append_durable(entry(9)).is_err(),
                "nothing is added to a log not yet migrated"
            );
            // Opened again before the compaction: the old log is still the registry.
            drop(log);
            let (mut log, records) = RegistryLog::open(dir.path(), 16).expect("opens");
            assert_eq!(records, expected);
            log.compact(vec![account(1)]).expect("compacts");
            assert!(!dir.path().join(LEGACY_DIR).exists());
            log.append_durable(entry(4)).expect("appends");
        }
        let (log, records) = RegistryLog::open(dir.path(), 16).expect("opens");
        assert_eq!(
            records,
            vec![Record::Account(account(1)), Record::Entry(entry(4))]
        );
        assert!(!log.wants_compaction(0));
    }

    #[test]
    fn the_log_is_compacted_past_its_floor_and_ratio() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut log, _) = RegistryLog::open(dir.path(), 4).expect("opens");
        for n in 0..4 {
            log.append_durable(entry(n)).expect("appends");
        }
        assert!(!log.wants_compaction(0));
        log.append_durable(entry(4)).expect("appends");
        assert!(log.wants_compaction(0));
        assert!(
            !log.wants_compaction(4 * RELAY_REGISTRY_COMPACT_RATIO * 2),
            "a large registry waits for a sixteenth of its keys in entries"
        );
        let before = log.disk_len();
        log.compact(vec![account(1), account(2)]).expect("compacts");
        assert!(log.disk_len() < before);
        assert!(!log.wants_compaction(0));
    }
}
