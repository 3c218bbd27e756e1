//! Crashes of a real process: killed with SIGKILL while appending, and a disk that fills up
//! (a file size limit: `ulimit -f`, with SIGXFSZ ignored so writes fail with EFBIG). In both,
//! every record acknowledged as durable before the crash is read back intact, and the log goes
//! on after reopening.
//!
//! The writer is this test binary itself, re-executed to run only `child_writer`, which does
//! nothing unless the `MUXAGENT_STORE_CHILD_DIR` variable is set.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

mod common;

use std::hash::{BuildHasher, RandomState};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::*;
use muxagent_store::{Error, Log};

const CHILD_DIR: &str = "MUXAGENT_STORE_CHILD_DIR";
const CHILD_SEGMENT_LEN: &str = "MUXAGENT_STORE_CHILD_SEGMENT_LEN";
const CHILD_BATCH: &str = "MUXAGENT_STORE_CHILD_BATCH";
/// The most records one child appends, so that it stops by itself.
const CHILD_MAX_RECORDS: u64 = 200_000;

/// The writer. Appends `event(n)` from the log's next seq on, syncs every `batch` records and
/// prints `durable N` each time a sync returned `Ok` (every seq below N is acknowledged). On an
/// error prints `error …`, then what a further append says, and stops.
#[test]
fn child_writer() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let env = |name: &str| std::env::var(name).unwrap().parse::<u64>().unwrap();
    let (segment_len, batch) = (env(CHILD_SEGMENT_LEN), env(CHILD_BATCH));
    let mut out = std::io::stdout();
    let (mut log, report) = Log::<Event>::open(&dir, keep_all(segment_len)).unwrap();
    writeln!(out, "opened {report}").unwrap();
    let start = log.next_seq();
    for n in start..start + CHILD_MAX_RECORDS {
        let result = log.append(&event(n)).and_then(|seq| {
            assert_eq!(seq, n);
            if (n + 1).is_multiple_of(batch) {
                log.sync().map(Some)
            } else {
                Ok(None)
            }
        });
        match result {
            Ok(Some(durable)) => writeln!(out, "durable {durable}").unwrap(),
            Ok(None) => {}
            Err(error) => {
                writeln!(out, "error {error}").unwrap();
                let after = log.append(&event(n + 1)).unwrap_err();
                assert!(matches!(after, Error::Poisoned { .. }));
                writeln!(out, "then {after}").unwrap();
                return;
            }
        }
        out.flush().unwrap();
    }
    writeln!(out, "done").unwrap();
}

fn spawn_writer(command: &mut Command, dir: &Path, segment_len: u64, batch: u64) -> Child {
    command
        .args(["--exact", "child_writer", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir)
        .env(CHILD_SEGMENT_LEN, segment_len.to_string())
        .env(CHILD_BATCH, batch.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Parses one line of the writer's output; returns the acknowledged seq bound, if it is one.
fn durable(line: &str) -> Option<u64> {
    line.strip_prefix("durable ").map(|n| n.parse().unwrap())
}

/// Reopens the log and checks that it holds `event(n)` at every seq from 0 to at least
/// `acknowledged`; returns how many records it holds.
fn check_after_crash(dir: &Path, acknowledged: u64) -> u64 {
    let (mut log, report) = open(dir, keep_all(u64::MAX));
    let next = log.next_seq();
    assert!(
        next >= acknowledged,
        "acknowledged {acknowledged} records, only {next} survived ({report})"
    );
    assert_holds(&mut log, 0, next);
    // And the log goes on.
    assert_eq!(log.append(&event(next)).unwrap(), next);
    log.close().unwrap();
    next + 1
}

#[test]
fn killed_while_appending() {
    let tmp = TempDir::new("kill");
    let dir = tmp.path();
    let exe = std::env::current_exe().unwrap();
    let random = RandomState::new();
    let mut acknowledged = 0;
    for round in 0..6u64 {
        // Kill after a random number of acknowledged syncs (1..=40), while the writer goes on.
        let kill_after = 1 + random.hash_one(round) % 40;
        let batch = [1, 3, 8][round as usize % 3];
        // Small segments, so that kills also land in rotations.
        let mut child = spawn_writer(&mut Command::new(&exe), dir, 4096, batch);
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut seen = 0;
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(n) = durable(&line) {
                acknowledged = acknowledged.max(n);
                seen += 1;
                if seen == kill_after {
                    break;
                }
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Acknowledgements printed before the kill landed count too.
        for line in lines {
            if let Some(n) = durable(&line.unwrap()) {
                acknowledged = acknowledged.max(n);
            }
        }
        eprintln!("round {round}: killed after {seen} syncs, {acknowledged} acknowledged");
        acknowledged = check_after_crash(dir, acknowledged);
    }
}

#[test]
fn disk_full() {
    let tmp = TempDir::new("full");
    let dir = tmp.path();
    let exe = std::env::current_exe().unwrap();
    // 100 blocks: 50 KiB (dash counts 512-byte blocks) or 100 KiB (bash, 1 KiB). SIGXFSZ is
    // ignored, and stays ignored across exec, so the write fails with EFBIG instead.
    let mut sh = Command::new("sh");
    sh.args(["-c", "trap '' XFSZ; ulimit -f 100 && exec \"$0\" \"$@\""])
        .arg(&exe);
    let mut child = spawn_writer(&mut sh, dir, 1 << 30, 3);
    let output = BufReader::new(child.stdout.take().unwrap());
    let mut acknowledged = 0;
    let mut error = None;
    let mut then = None;
    for line in output.lines() {
        let line = line.unwrap();
        if let Some(n) = durable(&line) {
            acknowledged = n;
        } else if let Some(e) = line.strip_prefix("error ") {
            error = Some(e.to_owned());
        } else if let Some(e) = line.strip_prefix("then ") {
            then = Some(e.to_owned());
        }
    }
    assert!(child.wait().unwrap().success());
    let error = error.expect("the writer hit the size limit");
    assert!(error.contains("File too large"), "{error}");
    assert!(
        error.contains(".seg"),
        "the message names the file: {error}"
    );
    assert!(then.unwrap().contains("reopen"));
    assert!(acknowledged > 100, "only {acknowledged} records fit");

    let segment = &segment_files(dir)[0];
    let len = std::fs::metadata(segment).unwrap().len();
    assert!(len == 100 * 512 || len == 100 * 1024, "{len}");
    let (log, report) = open(dir, keep_all(1 << 30));
    eprintln!("acknowledged {acknowledged}; reopened: {report}");
    drop(log);
    check_after_crash(dir, acknowledged);
}
