//! The everyday contract: append, sync, read back, refuse what is too large, say clearly what
//! is wrong.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

mod common;

use common::*;
use muxagent_store::{Error, Log, MAX_PAYLOAD_LEN, Options};

#[test]
fn append_sync_reopen_read() {
    let tmp = TempDir::new("basic");
    let dir = tmp.sub("nested/log");
    let (mut log, report) = open(&dir, Options::default());
    assert!(report.created.is_some() && report.is_clean());
    assert_eq!(
        report.to_string(),
        format!(
            "created a new log: {}",
            report.created.as_ref().unwrap().display()
        )
    );
    assert_eq!(
        (log.first_seq(), log.next_seq(), log.durable_seq()),
        (0, 0, 0)
    );
    for n in 0..10 {
        assert_eq!(log.append(&event(n)).unwrap(), n);
    }
    assert_eq!(log.durable_seq(), 0);
    assert_eq!(log.sync().unwrap(), 10);
    assert_eq!(log.durable_seq(), 10);
    assert_eq!(
        log.sync().unwrap(),
        10,
        "a sync with nothing new is a no-op"
    );
    assert_holds(&mut log, 0, 10);
    drop(log);

    let (mut log, report) = open(&dir, Options::default());
    assert!(report.is_clean() && report.created.is_none());
    assert_eq!(report.to_string(), "clean");
    assert_eq!(log.durable_seq(), 10);
    assert_holds(&mut log, 0, 10);

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        for file in segment_files(&dir) {
            assert_eq!(mode(&file), 0o600);
        }
    }
}

#[test]
fn dropping_hands_buffered_records_to_the_os() {
    let tmp = TempDir::new("drop");
    let (mut log, _) = open(tmp.path(), Options::default());
    log.append(&event(0)).unwrap();
    drop(log);
    let (mut log, _) = open(tmp.path(), Options::default());
    assert_holds(&mut log, 0, 1);
}

#[test]
fn too_large_is_refused_at_append() {
    let tmp = TempDir::new("too-large");
    let (mut log, _) = Log::<Vec<u8>>::open(tmp.path(), Options::default()).unwrap();
    log.append(&vec![1]).unwrap();
    // postcard adds a 3-byte length prefix to a Vec this size.
    let fits = vec![7u8; MAX_PAYLOAD_LEN - 3];
    let over = vec![7u8; MAX_PAYLOAD_LEN - 2];
    let error = log.append(&over).unwrap_err();
    assert!(
        matches!(error, Error::RecordTooLarge { len, max } if len == MAX_PAYLOAD_LEN + 1 && max == MAX_PAYLOAD_LEN),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!(
            "refused to append a record of {} bytes: the limit is {MAX_PAYLOAD_LEN} bytes",
            MAX_PAYLOAD_LEN + 1
        )
    );
    // Nothing was appended, and the log goes on.
    assert_eq!(log.append(&fits).unwrap(), 1);
    log.sync().unwrap();
    let values: Vec<_> = log.iter().unwrap().map(|r| r.unwrap().1).collect();
    assert_eq!(values, [vec![1], fits]);
}

#[test]
fn a_type_mismatch_is_a_decode_error_naming_the_record() {
    let tmp = TempDir::new("decode");
    let (mut log, _) = Log::<String>::open(tmp.path(), Options::default()).unwrap();
    log.append(&"text".to_owned()).unwrap();
    log.close().unwrap();
    let (mut log, _) = Log::<Event>::open(tmp.path(), Options::default()).unwrap();
    let mut iter = log.iter().unwrap();
    let error = iter.next().unwrap().unwrap_err();
    assert!(
        matches!(
            error,
            Error::Decode {
                seq: 0,
                offset: 20,
                ..
            }
        ),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("record seq 0 at byte offset 20 of"),
        "{message}"
    );
    assert!(iter.next().is_none(), "the iterator stops after an error");
}
