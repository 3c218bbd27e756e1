//! Rotation, retention and rewrite, including every on-disk state a crash during a rewrite or a
//! rotation can leave; and reading from a given seq across segments.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

mod common;

use std::fs;

use common::*;
use muxagent_store::{Error, Log, Options, SEGMENT_HEADER_LEN};

#[test]
fn rotation_keeps_segments_under_the_size_and_seqs_continue() {
    let tmp = TempDir::new("rotate");
    let dir = tmp.path();
    let (mut log, _) = open(dir, keep_all(1000));
    for n in 0..200 {
        assert_eq!(log.append(&event(n)).unwrap(), n);
    }
    log.sync().unwrap();
    let files = segment_files(dir);
    assert!(files.len() > 5, "{} segments", files.len());
    for file in &files {
        let len = fs::metadata(file).unwrap().len();
        assert!(len <= 1000, "{} is {len} bytes", file.display());
    }
    // Segments are named after their first seq and every one was synced when it was finished.
    let mut expected_base = 0;
    for file in &files {
        let name = file.file_name().unwrap().to_str().unwrap();
        assert_eq!(name, format!("{expected_base:020}.seg"));
        let (offsets, _) = record_offsets(file);
        expected_base += offsets.len() as u64;
    }
    assert_eq!(expected_base, 200);
    assert_eq!(
        log.disk_len(),
        files
            .iter()
            .map(|f| fs::metadata(f).unwrap().len())
            .sum::<u64>()
    );
    assert_holds(&mut log, 0, 200);
    drop(log);
    let (mut log, report) = open(dir, keep_all(1000));
    assert!(report.is_clean());
    assert_holds(&mut log, 0, 200);
}

#[test]
fn read_from_any_seq() {
    let tmp = TempDir::new("iter-from");
    let dir = tmp.path();
    // Large enough records to fill several index intervals per segment.
    let options = keep_all(300_000);
    let (mut log, _) = Log::<Vec<u8>>::open(dir, options).unwrap();
    let value = |n: u64| vec![n as u8; 1000 + (n % 7) as usize];
    for n in 0..1000 {
        log.append(&value(n)).unwrap();
    }
    // Reading sees buffered (not yet synced) records too.
    for from in [0, 1, 63, 64, 65, 299, 300, 301, 500, 998, 999] {
        let page: Vec<_> = log
            .iter_from(from)
            .unwrap()
            .take(70)
            .map(Result::unwrap)
            .collect();
        let expected: Vec<_> = (from..(from + 70).min(1000))
            .map(|n| (n, value(n)))
            .collect();
        assert_eq!(page, expected, "from {from}");
    }
    assert_eq!(log.iter_from(1000).unwrap().count(), 0);
    assert!(matches!(
        log.iter_from(1001),
        Err(Error::SeqNotAvailable {
            requested: 1001,
            first: 0,
            next: 1000
        })
    ));
    log.close().unwrap();
}

#[test]
fn retention_drops_whole_old_segments_and_reports_the_first_seq() {
    let tmp = TempDir::new("retain");
    let dir = tmp.path();
    let options = Options {
        segment_len: 1000,
        retention: Some(3000),
    };
    let (mut log, _) = open(dir, options);
    for n in 0..500 {
        log.append(&event(n)).unwrap();
        // The bound holds at all times: budget + one segment.
        assert!(log.disk_len() <= 3000 + 1000, "{}", log.disk_len());
    }
    log.sync().unwrap();
    let first = log.first_seq();
    assert!(first > 0);
    assert_holds(&mut log, first, 500);
    let on_disk: u64 = segment_files(dir)
        .iter()
        .map(|f| fs::metadata(f).unwrap().len())
        .sum();
    assert_eq!(on_disk, log.disk_len());

    // Asking for what was dropped says so.
    let error = log.iter_from(first - 1).unwrap_err();
    assert!(matches!(error, Error::SeqNotAvailable { .. }));
    assert!(error.to_string().contains("compacted away"), "{error}");

    // An explicit retain down to nothing keeps the segment being written.
    let kept = log.retain(0).unwrap();
    assert_eq!(segment_files(dir).len(), 1);
    assert_eq!(kept, log.first_seq());
    assert_holds(&mut log, kept, 500);
    assert_eq!(log.append(&event(500)).unwrap(), 500);
    log.close().unwrap();

    let (mut log, report) = open(dir, options);
    assert!(report.is_clean());
    assert_holds(&mut log, kept, 501);
}

#[test]
fn rewrite_replaces_the_log_and_seqs_continue() {
    let tmp = TempDir::new("rewrite");
    let dir = tmp.path();
    let (mut log, _) = open(dir, keep_all(1000));
    for n in 0..100 {
        log.append(&event(n)).unwrap();
    }
    log.sync().unwrap();
    log.append(&event(100)).unwrap(); // not synced: discarded with the old log

    let snapshot: Vec<_> = (101..111).map(event).collect();
    assert_eq!(log.rewrite(&snapshot).unwrap(), 101);
    assert_eq!(segment_files(dir).len(), 1);
    assert_eq!(log.durable_seq(), 111);
    assert_holds(&mut log, 101, 111);
    assert_eq!(log.append(&event(111)).unwrap(), 111);
    log.close().unwrap();

    let (mut log, report) = open(dir, keep_all(1000));
    assert!(report.is_clean(), "{report}");
    assert_holds(&mut log, 101, 112);

    // Rewriting to nothing keeps the seq position.
    assert_eq!(log.rewrite(&[]).unwrap(), 112);
    assert_eq!(log.first_seq(), 112);
    assert_eq!(log.next_seq(), 112);
    drop(log);
    let (mut log, report) = open(dir, keep_all(1000));
    assert!(report.is_clean());
    assert_holds(&mut log, 112, 112);
    // … and again while the active segment is empty (the rename replaces it).
    assert_eq!(log.rewrite(&[event(112)]).unwrap(), 112);
    drop(log);
    let (mut log, _) = open(dir, keep_all(1000));
    assert_holds(&mut log, 112, 113);
}

#[test]
fn a_too_large_snapshot_value_leaves_the_old_log() {
    let tmp = TempDir::new("rewrite-refused");
    let dir = tmp.path();
    let (mut log, _) = Log::<Vec<u8>>::open(dir, keep_all(1000)).unwrap();
    log.append(&vec![1; 10]).unwrap();
    log.sync().unwrap();
    let huge = vec![0u8; muxagent_store::MAX_PAYLOAD_LEN];
    let error = log.rewrite(&[vec![2; 10], huge]).unwrap_err();
    assert!(matches!(error, Error::RecordTooLarge { .. }), "{error:?}");
    assert_eq!(fs::read_dir(dir).unwrap().count(), 1, "temp file removed");
    let records: Vec<_> = log.iter().unwrap().map(Result::unwrap).collect();
    assert_eq!(records, [(0, vec![1; 10])]);
    log.append(&vec![3; 10]).unwrap();
    log.close().unwrap();
}

/// Builds the old log (`old`, several segments, seqs 0..50) and the same log after a finished
/// rewrite (`new`, one snapshot segment, seqs 50..55). Returns the snapshot segment's file name.
fn old_and_new(old: &std::path::Path, new: &std::path::Path) -> String {
    let (mut log, _) = open(old, keep_all(600));
    for n in 0..50 {
        log.append(&event(n)).unwrap();
    }
    log.close().unwrap();
    copy_dir(old, new);
    let (mut log, _) = open(new, keep_all(600));
    let snapshot: Vec<_> = (50..55).map(event).collect();
    assert_eq!(log.rewrite(&snapshot).unwrap(), 50);
    drop(log);
    let files = segment_files(new);
    assert_eq!(files.len(), 1);
    files[0].file_name().unwrap().to_str().unwrap().to_owned()
}

#[test]
fn a_crash_during_rewrite_leaves_the_old_or_the_new_log() {
    let tmp = TempDir::new("rewrite-crash");
    let (old, new) = (tmp.sub("old"), tmp.sub("new"));
    let snapshot_name = old_and_new(&old, &new);
    let snapshot = fs::read(new.join(&snapshot_name)).unwrap();
    let old_segments = segment_files(&old);
    assert!(old_segments.len() > 2);
    let temp_name = format!("{snapshot_name}.tmp");

    // 1. Crash while writing the temporary file (any prefix of it): the old log.
    for cut in [0, 5, SEGMENT_HEADER_LEN, snapshot.len() / 2, snapshot.len()] {
        let dir = tmp.sub(&format!("temp-{cut}"));
        copy_dir(&old, &dir);
        fs::write(dir.join(&temp_name), &snapshot[..cut]).unwrap();
        let (mut log, report) = open(&dir, keep_all(600));
        assert_eq!(report.removed_temp_files, [dir.join(&temp_name)]);
        assert!(
            report
                .to_string()
                .contains("unfinished rotation or rewrite")
        );
        assert_holds(&mut log, 0, 50);
        assert_eq!(log.append(&event(50)).unwrap(), 50);
    }

    // 2. Crash after the rename, before or while deleting the old segments: the new log, and
    //    opening finishes the deletion.
    for kept in 0..=old_segments.len() {
        let dir = tmp.sub(&format!("renamed-{kept}"));
        fs::create_dir_all(&dir).unwrap();
        // Deletion goes in directory order; any subset left behind must work, so keep the newest.
        for file in &old_segments[old_segments.len() - kept..] {
            fs::copy(file, dir.join(file.file_name().unwrap())).unwrap();
        }
        fs::write(dir.join(&snapshot_name), &snapshot).unwrap();
        let (mut log, report) = open(&dir, keep_all(600));
        assert_eq!(report.superseded_segments.len(), kept);
        assert_eq!(segment_files(&dir), [dir.join(&snapshot_name)]);
        assert_holds(&mut log, 50, 55);
        assert_eq!(log.append(&event(55)).unwrap(), 55);
        log.close().unwrap();
        let (mut log, report) = open(&dir, keep_all(600));
        assert!(report.is_clean());
        assert_holds(&mut log, 50, 56);
    }

    // 3. The same with the oldest segments kept instead (no order is assumed).
    let dir = tmp.sub("renamed-oldest");
    copy_dir(&old, &dir);
    fs::remove_file(dir.join(old_segments.last().unwrap().file_name().unwrap())).unwrap();
    fs::write(dir.join(&snapshot_name), &snapshot).unwrap();
    let (mut log, _) = open(&dir, keep_all(600));
    assert_holds(&mut log, 50, 55);
}

#[test]
fn a_crash_during_rotation_is_harmless() {
    let tmp = TempDir::new("rotate-crash");
    let dir = tmp.path();
    let (mut log, _) = open(dir, keep_all(600));
    for n in 0..10 {
        log.append(&event(n)).unwrap();
    }
    log.close().unwrap();
    let next = segment_files(dir).len();
    // The new segment's temporary file was being written.
    let (log, _) = open(dir, keep_all(600));
    let next_seq = log.next_seq();
    drop(log);
    let temp = dir.join(format!("{next_seq:020}.seg.tmp"));
    fs::write(&temp, b"MUXL").unwrap();
    let (mut log, report) = open(dir, keep_all(600));
    assert_eq!(report.removed_temp_files, [temp]);
    assert_eq!(segment_files(dir).len(), next);
    assert_holds(&mut log, 0, 10);
}

#[test]
fn unknown_files_are_left_alone() {
    let tmp = TempDir::new("unknown");
    let dir = tmp.path();
    fs::write(dir.join("LOCK"), b"pid").unwrap();
    let (mut log, report) = open(dir, keep_all(600));
    assert!(report.created.is_some());
    assert!(report.is_clean());
    log.append(&event(0)).unwrap();
    log.close().unwrap();
    assert_eq!(fs::read(dir.join("LOCK")).unwrap(), b"pid");
}
