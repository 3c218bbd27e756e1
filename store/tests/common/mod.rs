//! Helpers shared by the integration tests: a self-deleting temporary directory, deterministic
//! test values, and reading a log back whole.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use muxagent_store::{Log, Options, RecoveryReport};
use serde::{Deserialize, Serialize};

/// A directory under the system temp dir, deleted when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "muxagent-store-test-{}-{name}-{n}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// A fresh subdirectory path (not created).
    pub fn sub(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The value type the tests store: something like a session event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub n: u64,
    pub text: String,
}

/// The value the tests append as their `n`-th record: its content is a function of `n`, so a
/// reader can check every record it gets back is intact and in its place.
pub fn event(n: u64) -> Event {
    Event {
        n,
        text: format!("event {n}: {}", "x".repeat((n % 23) as usize)),
    }
}

/// No retention, small segments unless told.
pub fn keep_all(segment_len: u64) -> Options {
    Options {
        segment_len,
        retention: None,
    }
}

pub fn open(dir: &Path, options: Options) -> (Log<Event>, RecoveryReport) {
    Log::open(dir, options).unwrap()
}

/// Every record of the log, checked to be consecutive.
pub fn read_all(log: &mut Log<Event>) -> Vec<(u64, Event)> {
    let records: Vec<_> = log.iter().unwrap().map(Result::unwrap).collect();
    for pair in records.windows(2) {
        assert_eq!(pair[0].0 + 1, pair[1].0, "seqs must be consecutive");
    }
    records
}

/// Asserts that the log holds exactly `event(first)..event(end)` at seqs `first..end`, assuming
/// the test appended `event(seq)` at each seq.
pub fn assert_holds(log: &mut Log<Event>, first: u64, end: u64) {
    let records = read_all(log);
    assert_eq!(log.first_seq(), first);
    assert_eq!(log.next_seq(), end);
    let expected: Vec<_> = (first..end).map(|n| (n, event(n))).collect();
    assert_eq!(records, expected);
}

/// The segment files of a log directory, in name (= seq) order.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

/// Copies every file of `from` into a new directory `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// The byte offsets at which each record of a segment file starts, and the file's length.
pub fn record_offsets(file: &Path) -> (Vec<usize>, usize) {
    let bytes = fs::read(file).unwrap();
    let mut offsets = Vec::new();
    let mut pos = muxagent_store::SEGMENT_HEADER_LEN;
    while pos < bytes.len() {
        offsets.push(pos);
        let (_, used) = muxagent_store::decode_record(&bytes[pos..]).unwrap();
        pos += used;
    }
    (offsets, bytes.len())
}
