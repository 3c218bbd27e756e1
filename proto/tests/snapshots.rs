//! Byte-exact snapshots of every frame and message kind: a format change shows up in review as a
//! changed `.snap` file. Update with `INSTA_UPDATE=always cargo test -p muxagent-proto --test
//! snapshots` and read the diff.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

mod samples;

use std::fmt::Write;

use muxagent_proto::app::{DeviceMessage, Event, EventKind, MachineMessage};
use muxagent_proto::frame::Frame;

fn hex(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (index, chunk) in bytes.chunks(32).enumerate() {
        if index > 0 {
            out.push('\n');
        }
        for byte in chunk {
            write!(out, "{byte:02x}").expect("write to String");
        }
    }
    out
}

fn dump<'a>(items: impl IntoIterator<Item = (&'a str, Vec<u8>)>) -> String {
    let mut out = String::new();
    for (name, bytes) in items {
        writeln!(out, "{name} ({} bytes)\n{}\n", bytes.len(), hex(&bytes)).expect("write");
    }
    out
}

fn kinds<T>(items: &[(&str, T)], kind: impl Fn(&T) -> u8) -> Vec<u8> {
    let mut kinds: Vec<u8> = items.iter().map(|(_, item)| kind(item)).collect();
    kinds.sort_unstable();
    kinds
}

#[test]
fn every_frame_kind() {
    let frames = samples::frames();
    assert_eq!(
        kinds(&frames, Frame::kind),
        Frame::KINDS,
        "a frame kind has no snapshot"
    );
    insta::assert_snapshot!(dump(
        frames.iter().map(|(name, frame)| (*name, frame.encode()))
    ));
}

#[test]
fn every_device_message_kind() {
    let messages = samples::device_messages();
    assert_eq!(kinds(&messages, DeviceMessage::kind), DeviceMessage::KINDS);
    insta::assert_snapshot!(dump(messages.iter().map(|(name, m)| (*name, m.encode()))));
}

#[test]
fn every_machine_message_kind() {
    let messages = samples::machine_messages();
    assert_eq!(
        kinds(&messages, MachineMessage::kind),
        MachineMessage::KINDS
    );
    insta::assert_snapshot!(dump(messages.iter().map(|(name, m)| (*name, m.encode()))));
}

/// The position of each registry entry kind; exhaustive, like [`event_kind_index`].
fn entry_kind_index(entry: &muxagent_proto::frame::RegistryEntry) -> usize {
    use muxagent_proto::frame::RegistryEntry;
    match entry {
        RegistryEntry::RegisterMachine { .. } => 0,
        RegistryEntry::RevokeMachine { .. } => 1,
        RegistryEntry::UnpairMachine { .. } => 2,
        RegistryEntry::GrantOwner { .. } => 3,
        RegistryEntry::RevokeDevice { .. } => 4,
    }
}
const ENTRY_KIND_COUNT: usize = 5;

/// Signed registry entries as the relay's log stores them (postcard of the [`SignedEntry`]):
/// an older entry's bytes never change, and a new kind only appends.
///
/// [`SignedEntry`]: muxagent_proto::frame::SignedEntry
#[test]
fn every_registry_entry_kind() {
    let entries = samples::registry_entries();
    let covered: Vec<usize> = entries
        .iter()
        .map(|(_, signed)| entry_kind_index(&signed.verify().expect("verifies")))
        .collect();
    assert_eq!(
        covered,
        (0..ENTRY_KIND_COUNT).collect::<Vec<_>>(),
        "an entry kind has no sample, or they are out of order"
    );
    insta::assert_snapshot!(dump(entries.iter().map(|(name, signed)| {
        (*name, postcard::to_allocvec(signed).expect("encodes"))
    })));
}

/// The position of each event kind; exhaustive, so a new kind fails to compile here until it is
/// numbered, and then fails the coverage check until it has a sample.
fn event_kind_index(kind: &EventKind) -> usize {
    match kind {
        EventKind::Started { .. } => 0,
        EventKind::Prompt { .. } => 1,
        EventKind::Text { .. } => 2,
        EventKind::TextDelta { .. } => 3,
        EventKind::Thinking { .. } => 4,
        EventKind::Output { .. } => 5,
        EventKind::ToolStarted { .. } => 6,
        EventKind::ToolUpdated { .. } => 7,
        EventKind::ToolFinished { .. } => 8,
        EventKind::ApprovalRequested(_) => 9,
        EventKind::ApprovalState { .. } => 10,
        EventKind::ApprovalResolved { .. } => 11,
        EventKind::PlanProposed { .. } => 12,
        EventKind::Usage(_) => 13,
        EventKind::Status(_) => 14,
        EventKind::TurnFinished { .. } => 15,
        EventKind::Error { .. } => 16,
        EventKind::Exited { .. } => 17,
        EventKind::Opaque { .. } => 18,
        EventKind::AgentSession { .. } => 19,
    }
}
const EVENT_KIND_COUNT: usize = 20;

#[test]
fn every_event_kind() {
    let events = samples::event_kinds();
    let mut covered: Vec<usize> = events
        .iter()
        .map(|(_, kind)| event_kind_index(kind))
        .collect();
    covered.sort_unstable();
    assert_eq!(
        covered,
        (0..EVENT_KIND_COUNT).collect::<Vec<_>>(),
        "an event kind has no sample"
    );
    insta::assert_snapshot!(dump(events.into_iter().map(|(name, kind)| {
        let event = Event {
            session: samples::SESSION,
            seq: 1,
            at: 1_800_000_000,
            kind,
        };
        (name, MachineMessage::Event(event).encode())
    })));
}

#[test]
fn ticket() {
    insta::assert_snapshot!(samples::ticket().link());
}

/// Writes the samples as fuzz seeds (`fuzz/seeds/<target>/<name>`) when
/// `MUXAGENT_WRITE_FUZZ_SEEDS=1`; otherwise checks the committed seeds still decode.
#[test]
fn fuzz_seeds() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds");
    let mut seeds: Vec<(&str, &str, Vec<u8>)> = Vec::new();
    for (name, frame) in samples::frames() {
        seeds.push(("frame", name, frame.encode()));
    }
    for (name, message) in samples::device_messages() {
        seeds.push(("device_message", name, message.encode()));
    }
    for (name, message) in samples::machine_messages() {
        seeds.push(("machine_message", name, message.encode()));
    }
    seeds.push(("ticket", "link", samples::ticket().link().into_bytes()));
    let write = std::env::var_os("MUXAGENT_WRITE_FUZZ_SEEDS").is_some();
    for (target, name, bytes) in seeds {
        let path = root.join(target).join(name);
        if write {
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, &bytes).expect("write seed");
        } else if let Ok(committed) = std::fs::read(&path) {
            assert_eq!(
                committed,
                bytes,
                "{} is stale: rerun with MUXAGENT_WRITE_FUZZ_SEEDS=1",
                path.display()
            );
        }
    }
}
