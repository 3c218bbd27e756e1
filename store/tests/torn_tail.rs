//! A torn or damaged tail is cut off and reported; damage in the middle is an error that changes
//! nothing on disk; nothing before the damage is ever lost.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

mod common;

use std::fs;

use common::*;
use muxagent_store::{Corruption, Error, FollowedBy, RecordError};

/// Writes `count` events into a single-segment log and returns the segment file.
fn make_log(dir: &std::path::Path, count: u64) -> std::path::PathBuf {
    let (mut log, report) = open(dir, keep_all(1 << 20));
    assert!(report.is_clean());
    for n in 0..count {
        assert_eq!(log.append(&event(n)).unwrap(), n);
    }
    assert_eq!(log.close().unwrap(), count);
    let files = segment_files(dir);
    assert_eq!(files.len(), 1);
    files[0].clone()
}

#[test]
fn cut_at_every_byte_of_the_last_record() {
    let tmp = TempDir::new("cut");
    let original = tmp.sub("original");
    let segment = make_log(&original, 5);
    let bytes = fs::read(&segment).unwrap();
    let (offsets, len) = record_offsets(&segment);
    let last = offsets[4];

    for cut in last..len {
        let dir = tmp.sub(&format!("cut-{cut}"));
        copy_dir(&original, &dir);
        let file = dir.join(segment.file_name().unwrap());
        fs::write(&file, &bytes[..cut]).unwrap();

        let (mut log, report) = open(&dir, keep_all(1 << 20));
        if cut == last {
            assert!(report.is_clean(), "cut at a record boundary: {report}");
        } else {
            let truncation = report.truncated.as_ref().expect("a torn tail is reported");
            assert_eq!(truncation.segment, file);
            assert_eq!(truncation.offset, last as u64);
            assert_eq!(truncation.dropped_bytes, (cut - last) as u64);
            assert!(
                matches!(
                    truncation.reason,
                    Corruption::Record(RecordError::Truncated { .. })
                ),
                "{truncation}"
            );
            let text = report.to_string();
            assert!(text.contains(&format!("at byte offset {last}")), "{text}");
            assert_eq!(fs::metadata(&file).unwrap().len(), last as u64);
        }
        assert_holds(&mut log, 0, 4);
        assert_eq!(log.durable_seq(), 4);

        // Appending after recovery continues the seqs and survives a reopen.
        assert_eq!(log.append(&event(4)).unwrap(), 4);
        assert_eq!(log.append(&event(5)).unwrap(), 5);
        log.sync().unwrap();
        drop(log);
        let (mut log, report) = open(&dir, keep_all(1 << 20));
        assert!(report.is_clean(), "{report}");
        assert_holds(&mut log, 0, 6);
        drop(log);
        fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn every_bit_flip_in_the_last_record_is_truncated() {
    let tmp = TempDir::new("flip-last");
    let original = tmp.sub("original");
    let segment = make_log(&original, 5);
    let bytes = fs::read(&segment).unwrap();
    let (offsets, len) = record_offsets(&segment);
    let last = offsets[4];
    let dir = tmp.sub("work");

    for bit in last * 8..len * 8 {
        let _ = fs::remove_dir_all(&dir);
        copy_dir(&original, &dir);
        let file = dir.join(segment.file_name().unwrap());
        let mut damaged = bytes.clone();
        damaged[bit / 8] ^= 1 << (bit % 8);
        fs::write(&file, &damaged).unwrap();

        let (mut log, report) = open(&dir, keep_all(1 << 20));
        let truncation = report.truncated.as_ref().expect("damaged tail is reported");
        assert_eq!(truncation.offset, last as u64, "bit {bit}");
        assert_eq!(truncation.dropped_bytes, (len - last) as u64, "bit {bit}");
        assert_holds(&mut log, 0, 4);
        assert_eq!(log.append(&event(4)).unwrap(), 4);
        log.close().unwrap();
        let (mut log, _) = open(&dir, keep_all(1 << 20));
        assert_holds(&mut log, 0, 5);
    }
}

#[test]
fn bit_flips_in_a_middle_record_are_an_error_and_change_nothing() {
    let tmp = TempDir::new("flip-middle");
    let original = tmp.sub("original");
    let segment = make_log(&original, 5);
    let bytes = fs::read(&segment).unwrap();
    let (offsets, _) = record_offsets(&segment);
    let (start, end) = (offsets[2], offsets[3]);
    let dir = tmp.sub("work");

    // Every bit of the length and checksum fields, and a spread of body bits.
    let bits = (start * 8..(start + 8) * 8).chain((start * 8 + 64..end * 8).step_by(7));
    for bit in bits {
        let _ = fs::remove_dir_all(&dir);
        copy_dir(&original, &dir);
        let file = dir.join(segment.file_name().unwrap());
        let mut damaged = bytes.clone();
        damaged[bit / 8] ^= 1 << (bit % 8);
        fs::write(&file, &damaged).unwrap();

        let error = muxagent_store::Log::<Event>::open(&dir, keep_all(1 << 20)).unwrap_err();
        match &error {
            Error::Corrupt {
                segment,
                offset,
                followed_by,
                ..
            } => {
                assert_eq!(segment, &file);
                assert_eq!(*offset, start as u64, "bit {bit}");
                assert_eq!(
                    *followed_by,
                    FollowedBy::ValidRecord { offset: end as u64 },
                    "bit {bit}"
                );
            }
            other => panic!("bit {bit}: expected Corrupt, got {other:?}"),
        }
        let message = error.to_string();
        assert!(message.contains(&file.display().to_string()), "{message}");
        assert!(message.contains(&format!("offset {start}")), "{message}");
        assert!(message.contains("not a torn tail"), "{message}");
        assert_eq!(fs::read(&file).unwrap(), damaged, "nothing is truncated");
    }
}

#[test]
fn damage_in_an_earlier_segment_is_an_error_even_at_its_end() {
    let tmp = TempDir::new("flip-sealed");
    let dir = tmp.path();
    let (mut log, _) = open(dir, keep_all(200));
    for n in 0..20 {
        log.append(&event(n)).unwrap();
    }
    log.close().unwrap();
    let files = segment_files(dir);
    assert!(files.len() > 3);

    // Cut the first segment's last record in half: a torn tail is only possible in the last
    // segment, so here it is corruption.
    let (offsets, len) = record_offsets(&files[0]);
    let last = *offsets.last().unwrap();
    let bytes = fs::read(&files[0]).unwrap();
    fs::write(&files[0], &bytes[..len - 3]).unwrap();
    let error = muxagent_store::Log::<Event>::open(dir, keep_all(200)).unwrap_err();
    assert!(
        matches!(
            &error,
            Error::Corrupt { segment, offset, followed_by: FollowedBy::LaterSegments, .. }
                if segment == &files[0] && *offset == last as u64
        ),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("later segments follow"),
        "{error}"
    );
    assert_eq!(fs::metadata(&files[0]).unwrap().len(), (len - 3) as u64);

    // A missing middle segment is a gap.
    fs::write(&files[0], &bytes).unwrap();
    let second = fs::read(&files[1]).unwrap();
    fs::remove_file(&files[1]).unwrap();
    let error = muxagent_store::Log::<Event>::open(dir, keep_all(200)).unwrap_err();
    assert!(
        matches!(
            &error,
            Error::Corrupt {
                problem: Corruption::SegmentGap { .. },
                ..
            }
        ),
        "{error:?}"
    );
    fs::write(&files[1], &second).unwrap();

    // A damaged header anywhere, even on the last segment, is not a torn write.
    let last_file = files.last().unwrap();
    let header = fs::read(last_file).unwrap();
    let mut bad = header.clone();
    bad[10] ^= 1;
    fs::write(last_file, &bad).unwrap();
    let error = muxagent_store::Log::<Event>::open(dir, keep_all(200)).unwrap_err();
    assert!(
        matches!(
            &error,
            Error::Corrupt {
                problem: Corruption::HeaderChecksum,
                followed_by: FollowedBy::NotATornWrite,
                ..
            }
        ),
        "{error:?}"
    );
    fs::write(last_file, &header).unwrap();

    let (mut log, report) = open(dir, keep_all(200));
    assert!(report.is_clean());
    assert_holds(&mut log, 0, 20);
}

#[test]
fn zeroed_tail_and_stale_record_are_truncated() {
    let tmp = TempDir::new("zeros");
    let dir = tmp.path();
    let segment = make_log(dir, 3);
    let good = fs::read(&segment).unwrap();

    // A tail of zeros (a file extended but its data never written).
    let mut bytes = good.clone();
    bytes.extend_from_slice(&[0; 4096]);
    fs::write(&segment, &bytes).unwrap();
    let (mut log, report) = open(dir, keep_all(1 << 20));
    let t = report.truncated.unwrap();
    assert_eq!((t.offset, t.dropped_bytes), (good.len() as u64, 4096));
    assert_eq!(
        t.reason,
        Corruption::Record(RecordError::LengthTooSmall { len: 0 })
    );
    assert_holds(&mut log, 0, 3);
    drop(log);

    // A valid record with an old seq after the end (stale data from a reused block).
    let mut stale = Vec::new();
    muxagent_store::encode_record(1, b"stale", &mut stale).unwrap();
    let mut bytes = good.clone();
    bytes.extend_from_slice(&stale);
    fs::write(&segment, &bytes).unwrap();
    let (mut log, report) = open(dir, keep_all(1 << 20));
    assert_eq!(
        report.truncated.unwrap().reason,
        Corruption::UnexpectedSeq {
            expected: 3,
            found: 1
        }
    );
    assert_holds(&mut log, 0, 3);
}

/// Segments larger than the 1 MiB the scanner reads at a time, with records up to the maximum
/// size straddling its chunk boundaries.
#[test]
fn large_segments_with_large_records() {
    let tmp = TempDir::new("large");
    let original = tmp.sub("original");
    let options = keep_all(16 << 20);
    let value = |n: u64| -> Vec<u8> {
        let len = match n % 5 {
            0 => muxagent_store::MAX_PAYLOAD_LEN - 3,
            1 => 100_000 + n as usize,
            _ => (n * 37 % 3000) as usize,
        };
        (0..len).map(|i| (i as u64 ^ n) as u8).collect()
    };
    let count = 60;
    let (mut log, _) = muxagent_store::Log::<Vec<u8>>::open(&original, options).unwrap();
    for n in 0..count {
        log.append(&value(n)).unwrap();
    }
    log.close().unwrap();
    let files = segment_files(&original);
    assert_eq!(files.len(), 1);
    let file_name = files[0].file_name().unwrap().to_owned();
    let bytes = fs::read(&files[0]).unwrap();
    assert!(bytes.len() > 3 << 20, "{} bytes", bytes.len());
    let (offsets, len) = record_offsets(&files[0]);

    let check = |dir: &std::path::Path, end: u64| {
        let (mut log, report) = muxagent_store::Log::<Vec<u8>>::open(dir, options).unwrap();
        let all: Vec<_> = log.iter().unwrap().map(Result::unwrap).collect();
        let expected: Vec<_> = (0..end).map(|n| (n, value(n))).collect();
        assert!(all == expected, "records differ");
        report
    };
    assert!(check(&original, count).is_clean());

    // A torn last record (a large one), cut at a few places.
    let last = offsets[count as usize - 1];
    for cut in [last + 1, last + 9, (last + len) / 2, len - 1] {
        let dir = tmp.sub(&format!("cut-{cut}"));
        copy_dir(&original, &dir);
        fs::write(dir.join(&file_name), &bytes[..cut]).unwrap();
        let report = check(&dir, count - 1);
        assert_eq!(report.truncated.unwrap().offset, last as u64);
    }

    // Damage in a record past the first chunks is found, and so is the valid record after it.
    let victim = offsets.iter().position(|&o| o > (2 << 20)).unwrap();
    let dir = tmp.sub("flip");
    copy_dir(&original, &dir);
    let mut damaged = bytes.clone();
    damaged[offsets[victim] + 20] ^= 0x40;
    fs::write(dir.join(&file_name), &damaged).unwrap();
    let error = muxagent_store::Log::<Vec<u8>>::open(&dir, options).unwrap_err();
    assert!(
        matches!(
            error,
            Error::Corrupt { offset, followed_by: FollowedBy::ValidRecord { offset: next }, .. }
                if offset == offsets[victim] as u64 && next == offsets[victim + 1] as u64
        ),
        "{error:?}"
    );
}
