//! Property tests: records round-trip byte-exactly and the decoder is total; and a log driven
//! by random operations (appends, syncs, reopens, rotation, retention, rewrites, reads from a
//! seq) always agrees with a plain in-memory model.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

mod common;

use std::collections::VecDeque;

use common::*;
use muxagent_store::{
    Log, MAX_PAYLOAD_LEN, Options, RecordError, decode_record, encode_record, record_len,
};
use proptest::prelude::*;

proptest! {
    #[test]
    fn record_round_trip(seq in any::<u64>(), payload in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let mut bytes = vec![0xAA; 3];
        encode_record(seq, &payload, &mut bytes).unwrap();
        let record = &bytes[3..];
        prop_assert_eq!(record.len(), record_len(payload.len()));
        let (decoded, used) = decode_record(record).unwrap();
        prop_assert_eq!(used, record.len());
        prop_assert_eq!(decoded.seq, seq);
        prop_assert_eq!(decoded.payload, &payload[..]);
        // Trailing bytes are not looked at.
        let mut longer = record.to_vec();
        longer.extend_from_slice(&[1, 2, 3]);
        prop_assert_eq!(decode_record(&longer).unwrap(), (decoded, used));
        // Every proper prefix is incomplete, never anything else.
        for cut in 0..record.len() {
            let is_truncated = matches!(decode_record(&record[..cut]), Err(RecordError::Truncated { .. }));
            prop_assert!(is_truncated, "cut {}", cut);
        }
    }

    #[test]
    fn records_decode_in_sequence(payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..20)) {
        let mut bytes = Vec::new();
        for (seq, payload) in payloads.iter().enumerate() {
            encode_record(seq as u64, payload, &mut bytes).unwrap();
        }
        let mut rest = &bytes[..];
        for (seq, payload) in payloads.iter().enumerate() {
            let (record, used) = decode_record(rest).unwrap();
            prop_assert_eq!(record.seq, seq as u64);
            prop_assert_eq!(record.payload, &payload[..]);
            rest = &rest[used..];
        }
        prop_assert!(rest.is_empty());
    }

    #[test]
    fn decoder_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok((record, used)) = decode_record(&bytes) {
            prop_assert!(used <= bytes.len());
            let mut again = Vec::new();
            encode_record(record.seq, record.payload, &mut again).unwrap();
            prop_assert_eq!(&again[..], &bytes[..used]);
        }
    }

    #[test]
    fn payload_bound(extra in 1usize..100) {
        let mut out = Vec::new();
        prop_assert!(encode_record(0, &vec![0; MAX_PAYLOAD_LEN + extra], &mut out).is_err());
        prop_assert!(out.is_empty());
    }
}

#[derive(Clone, Debug)]
enum Op {
    Append(Vec<u8>),
    Sync,
    Reopen,
    Retain(u64),
    Rewrite(Vec<Vec<u8>>),
    ReadFrom(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let value = || proptest::collection::vec(any::<u8>(), 0..120);
    prop_oneof![
        8 => value().prop_map(Op::Append),
        2 => Just(Op::Sync),
        1 => Just(Op::Reopen),
        1 => (0u64..1500).prop_map(Op::Retain),
        1 => proptest::collection::vec(value(), 0..6).prop_map(Op::Rewrite),
        2 => any::<u64>().prop_map(Op::ReadFrom),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn log_matches_a_model(ops in proptest::collection::vec(op(), 1..60), segment_len in 100u64..700) {
        let tmp = TempDir::new("model");
        let options = Options { segment_len, retention: None };
        let (mut log, _) = Log::<Vec<u8>>::open(tmp.path(), options).unwrap();
        // The records the log must hold, and the seq of the next append.
        let mut model: VecDeque<(u64, Vec<u8>)> = VecDeque::new();
        let mut next = 0u64;
        for op in ops {
            match op {
                Op::Append(value) => {
                    prop_assert_eq!(log.append(&value).unwrap(), next);
                    model.push_back((next, value));
                    next += 1;
                }
                Op::Sync => {
                    prop_assert_eq!(log.sync().unwrap(), next);
                    prop_assert_eq!(log.durable_seq(), next);
                }
                Op::Reopen => {
                    log.sync().unwrap();
                    drop(log);
                    let (reopened, report) = Log::open(tmp.path(), options).unwrap();
                    prop_assert!(report.is_clean(), "{}", report);
                    log = reopened;
                }
                Op::Retain(budget) => {
                    let first = log.retain(budget).unwrap();
                    prop_assert!(log.disk_len() <= budget || log.segment_paths().count() == 1);
                    while model.front().is_some_and(|&(seq, _)| seq < first) {
                        model.pop_front();
                    }
                }
                Op::Rewrite(values) => {
                    prop_assert_eq!(log.rewrite(&values).unwrap(), next);
                    model = values.into_iter().enumerate().map(|(i, v)| (next + i as u64, v)).collect();
                    next += model.len() as u64;
                }
                Op::ReadFrom(seq) => {
                    let first = model.front().map_or(next, |&(s, _)| s);
                    let from = first + seq % (next - first + 1);
                    let page: Vec<_> = log.iter_from(from).unwrap().take(10).map(Result::unwrap).collect();
                    let expected: Vec<_> = model.iter().filter(|(s, _)| *s >= from).take(10).cloned().collect();
                    prop_assert_eq!(page, expected);
                }
            }
            prop_assert_eq!(log.next_seq(), next);
            prop_assert_eq!(log.first_seq(), model.front().map_or(next, |&(s, _)| s));
        }
        let all: Vec<_> = log.iter().unwrap().map(Result::unwrap).collect();
        prop_assert_eq!(all, Vec::from(model));
    }
}
