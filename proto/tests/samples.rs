//! One deterministic value of every frame and message kind, shared by the snapshot and property
//! tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job
#![allow(dead_code)]

use muxagent_proto::app::*;
use muxagent_proto::frame::{self, *};
use muxagent_proto::identity::{Fingerprint, Identity, SECRET_BYTES_LEN};
use muxagent_proto::noise::ConnectionId;
use muxagent_proto::ticket::{PairingSecret, Ticket};

pub fn identity(seed: u8) -> Identity {
    Identity::from_secret_bytes(&[seed; SECRET_BYTES_LEN])
}

pub fn hostname(text: &str) -> Hostname {
    Hostname::try_from(text).expect("short hostname")
}

pub const SESSION: SessionId = SessionId([0x5e; 16]);
pub const PAIRING: PairingId = PairingId([0x9a; 16]);

pub fn fingerprint(seed: u8) -> Fingerprint {
    identity(seed).public().fingerprint()
}

pub fn frames() -> Vec<(&'static str, Frame)> {
    let device = identity(1);
    let machine = identity(2);
    let challenge = [0xc4; 32];
    let consent = machine.sign(
        muxagent_proto::identity::SignDomain::RegistryEntry,
        &RegistryEntry::consent_message(&device.public().fingerprint(), &PAIRING),
    );
    let register = SignedEntry::sign(
        &device,
        &RegistryEntry::RegisterMachine {
            device: device.public(),
            machine: machine.public(),
            hostname: hostname("pi"),
            pairing_id: PAIRING,
            machine_consent: consent,
            at: 1_800_000_000,
        },
    )
    .expect("device authors the entry");
    vec![
        (
            "server_hello",
            ServerHello {
                min_protocol: 1,
                max_protocol: 1,
                challenge,
            }
            .into(),
        ),
        (
            "login",
            Login::sign(&machine, &challenge, Role::Machine, Some(hostname("pi"))).into(),
        ),
        (
            "login_ok",
            LoginOk {
                protocol: 1,
                account: Some(fingerprint(1)),
            }
            .into(),
        ),
        (
            "open_pairing",
            OpenPairing {
                pairing_id: PAIRING,
                expires_at: 1_800_000_300,
            }
            .into(),
        ),
        (
            "pairing_opened",
            PairingOpened {
                pairing_id: PAIRING,
                expires_at: 1_800_000_300,
            }
            .into(),
        ),
        (
            "pair_send",
            PairSend {
                pairing_id: PAIRING,
                payload: vec![1, 2, 3],
            }
            .into(),
        ),
        (
            "pair_recv",
            PairRecv {
                pairing_id: PAIRING,
                from: fingerprint(1),
                payload: vec![4, 5],
            }
            .into(),
        ),
        (
            "send",
            frame::Send {
                to: fingerprint(2),
                payload: vec![0xab; 4],
            }
            .into(),
        ),
        (
            "recv",
            Recv {
                from: fingerprint(1),
                payload: vec![0xcd; 4],
            }
            .into(),
        ),
        (
            "registry",
            Registry {
                request: 7,
                entry: register,
            }
            .into(),
        ),
        ("registry_ack", RegistryAck { request: 7 }.into()),
        (
            "presence",
            Presence {
                machine: fingerprint(2),
                hostname: hostname("pi"),
                online: true,
            }
            .into(),
        ),
        (
            "error",
            frame::Error {
                code: ErrorCode::NotAllowed,
                request: None,
                reason: "not in your account".try_into().expect("short reason"),
            }
            .into(),
        ),
        (
            "restarting",
            Restarting {
                reconnect_in_ms: 2_000,
                try_for_ms: 60_000,
            }
            .into(),
        ),
        (
            "device_presence",
            DevicePresence {
                device: fingerprint(1),
                online: true,
                closed: [ConnectionId([0x5a; 8])].into_iter().collect(),
            }
            .into(),
        ),
        (
            "push_subscribe",
            PushSubscribe {
                request: 3,
                endpoint: Some("https://push.example/s/abc".into()),
            }
            .into(),
        ),
        ("push_query", PushQuery { request: 4 }.into()),
        (
            "push_state",
            PushState {
                request: 4,
                vapid_public_key: [4; 65].to_vec(),
                endpoint: None,
            }
            .into(),
        ),
        (
            "push",
            Push {
                device: fingerprint(1),
                urgency: PushUrgency::High,
                topic: Some([7; 16]),
                ttl_secs: 3600,
                body: vec![0xaa; 5],
            }
            .into(),
        ),
        ("devices_query", DevicesQuery { request: 5 }.into()),
        (
            "device_list",
            DeviceList {
                request: 5,
                machines: vec![
                    AccountMachine {
                        machine: fingerprint(2),
                        hostname: hostname("pi"),
                        online: true,
                    },
                    AccountMachine {
                        machine: fingerprint(3),
                        hostname: hostname("gpu"),
                        online: false,
                    },
                ],
                devices: vec![
                    AccountDevice {
                        device: fingerprint(1),
                        owner: true,
                        online: true,
                        paired: vec![0, 1],
                    },
                    AccountDevice {
                        device: fingerprint(4),
                        owner: false,
                        online: false,
                        paired: vec![1],
                    },
                ],
            }
            .into(),
        ),
        (
            "allowed_devices",
            AllowedDevices {
                devices: vec![fingerprint(1), fingerprint(4)],
            }
            .into(),
        ),
    ]
}

/// One signed registry entry of every kind, as the relay's log stores them.
pub fn registry_entries() -> Vec<(&'static str, SignedEntry)> {
    let device = identity(1);
    let machine = identity(2);
    let consent = machine.sign(
        muxagent_proto::identity::SignDomain::RegistryEntry,
        &RegistryEntry::consent_message(&device.public().fingerprint(), &PAIRING),
    );
    let entries = [
        (
            "register_machine",
            &device,
            RegistryEntry::RegisterMachine {
                device: device.public(),
                machine: machine.public(),
                hostname: hostname("pi"),
                pairing_id: PAIRING,
                machine_consent: consent,
                at: 1_800_000_000,
            },
        ),
        (
            "revoke_machine",
            &device,
            RegistryEntry::RevokeMachine {
                device: device.public(),
                machine: fingerprint(2),
                at: 1_800_000_001,
            },
        ),
        (
            "unpair_machine",
            &machine,
            RegistryEntry::UnpairMachine {
                machine: machine.public(),
                at: 1_800_000_002,
            },
        ),
        (
            "grant_owner",
            &device,
            RegistryEntry::GrantOwner {
                owner: device.public(),
                device: fingerprint(4),
                at: 1_800_000_003,
            },
        ),
        (
            "revoke_device",
            &device,
            RegistryEntry::RevokeDevice {
                author: device.public(),
                device: fingerprint(4),
                at: 1_800_000_004,
            },
        ),
    ];
    entries
        .into_iter()
        .map(|(name, author, entry)| {
            let signed = SignedEntry::sign(author, &entry).expect("the author signs");
            (name, signed)
        })
        .collect()
}

pub fn device_messages() -> Vec<(&'static str, DeviceMessage)> {
    let device = identity(1);
    let hash = request_hash(&SESSION, "toolu_01", "Bash", r#"{"command":"ls"}"#);
    vec![
        (
            "hello",
            Hello {
                cursors: vec![Cursor {
                    session: SESSION,
                    last_seq: 41,
                }],
            }
            .into(),
        ),
        ("list_runtimes", ListRuntimes { request: 1 }.into()),
        ("list_sessions", ListSessions { request: 2 }.into()),
        (
            "start_session",
            StartSession {
                request: 3,
                runtime: "command".try_into().expect("short"),
                args: vec!["sh".into(), "-c".into(), "echo hi".into()],
                cwd: "/home/pi".into(),
                prompt: String::new(),
                title: Some("greeting".into()),
                mode: None,
            }
            .into(),
        ),
        (
            "send_prompt",
            SendPrompt {
                request: 4,
                session: SESSION,
                text: "go on".into(),
            }
            .into(),
        ),
        (
            "interrupt",
            Interrupt {
                request: 5,
                session: SESSION,
            }
            .into(),
        ),
        (
            "stop",
            Stop {
                request: 6,
                session: SESSION,
            }
            .into(),
        ),
        (
            "decide",
            Decide {
                request: 7,
                decision: SignedDecision::sign(
                    &device,
                    DecisionBody {
                        session: SESSION,
                        approval: 3,
                        request_hash: hash,
                        decision: Decision::Deny {
                            message: "not now".into(),
                        },
                        decided_at: 1_800_000_100,
                    },
                ),
            }
            .into(),
        ),
        (
            "set_mode",
            SetMode {
                request: 8,
                session: SESSION,
                mode: "plan".try_into().expect("short"),
            }
            .into(),
        ),
        (
            "replay",
            Replay {
                request: 9,
                session: SESSION,
                after_seq: 10,
            }
            .into(),
        ),
        ("forget_device", ForgetDevice { request: 10 }.into()),
        ("pairing_complete", PairingComplete {}.into()),
        (
            "set_push",
            SetPush {
                request: 11,
                push: Some(PushKeys {
                    p256dh: [4; 65].to_vec(),
                    auth: [9; 16],
                    kinds: PushKinds::ALL,
                }),
            }
            .into(),
        ),
        ("test_push", TestPush { request: 12 }.into()),
        ("set_foreground", SetForeground { visible: true }.into()),
        (
            "fetch_input",
            FetchInput {
                request: 13,
                session: SESSION,
                approval: 7,
                offset: 49_152,
            }
            .into(),
        ),
    ]
}

pub fn event_kinds() -> Vec<(&'static str, EventKind)> {
    let hash = request_hash(&SESSION, "toolu_01", "Bash", r#"{"command":"ls"}"#);
    let usage = Usage {
        input_tokens: 1200,
        output_tokens: 340,
        cached_tokens: 800,
        cost_usd_micros: Some(4_210),
    };
    vec![
        (
            "started",
            EventKind::Started {
                runtime: "command".try_into().expect("short"),
                args: vec!["make".into(), "test".into()],
                cwd: "/srv/app".into(),
                title: "make test".into(),
                device: fingerprint(1),
            },
        ),
        (
            "prompt",
            EventKind::Prompt {
                text: "fix the build".into(),
            },
        ),
        (
            "text",
            EventKind::Text {
                text: "Done.".into(),
            },
        ),
        ("text_delta", EventKind::TextDelta { text: "Do".into() }),
        ("thinking", EventKind::Thinking { text: "hmm".into() }),
        (
            "output",
            EventKind::Output {
                stream: Stream::Stderr,
                text: "warning\n".into(),
            },
        ),
        (
            "tool_started",
            EventKind::ToolStarted {
                tool_call: "toolu_01".into(),
                name: "Bash".into(),
                input: r#"{"command":"ls"}"#.into(),
            },
        ),
        (
            "tool_updated",
            EventKind::ToolUpdated {
                tool_call: "toolu_01".into(),
                detail: "running".into(),
            },
        ),
        (
            "tool_finished",
            EventKind::ToolFinished {
                tool_call: "toolu_01".into(),
                ok: true,
                output: "a\nb\n".into(),
                diff: Some("--- a\n+++ b\n".into()),
            },
        ),
        (
            "approval_requested",
            EventKind::ApprovalRequested(ApprovalRequest {
                approval: 3,
                kind: ApprovalKind::Tool,
                agent_request: "toolu_01".into(),
                tool: "Bash".into(),
                input: r#"{"command":"ls"}"#.into(),
                request_hash: hash,
            }),
        ),
        (
            "approval_state",
            EventKind::ApprovalState {
                approval: 3,
                state: ApprovalState::Delivered,
            },
        ),
        (
            "approval_resolved",
            EventKind::ApprovalResolved {
                approval: 3,
                decision: Decision::AllowAlways,
                device: fingerprint(1),
            },
        ),
        (
            "plan_proposed",
            EventKind::PlanProposed {
                approval: 4,
                plan: "1. test".into(),
            },
        ),
        ("usage", EventKind::Usage(usage)),
        ("status", EventKind::Status(SessionStatus::WaitingApproval)),
        (
            "turn_finished",
            EventKind::TurnFinished {
                reason: "end_turn".into(),
            },
        ),
        (
            "error",
            EventKind::Error {
                message: "agent crashed".into(),
            },
        ),
        (
            "exited",
            EventKind::Exited {
                code: Some(0),
                signal: None,
            },
        ),
        (
            "opaque",
            EventKind::Opaque {
                source: "claude".try_into().expect("short"),
                raw: r#"{"type":"new_thing"}"#.into(),
            },
        ),
        (
            "agent_session",
            EventKind::AgentSession {
                id: "5f0c1d2e-0000-4000-8000-000000000001".into(),
            },
        ),
    ]
}

pub fn session_info() -> SessionInfo {
    SessionInfo {
        id: SESSION,
        runtime: "claude".try_into().expect("short"),
        cwd: "/srv/app".into(),
        title: "fix the build".into(),
        status: SessionStatus::Running,
        created_at: 1_800_000_000,
        updated_at: 1_800_000_060,
        usage: Usage {
            input_tokens: 10,
            output_tokens: 20,
            cached_tokens: 0,
            cost_usd_micros: None,
        },
        pending_approvals: 1,
        last_seq: 42,
    }
}

pub fn machine_messages() -> Vec<(&'static str, MachineMessage)> {
    vec![
        (
            "session_list",
            SessionList {
                request: Some(2),
                hostname: hostname("pi"),
                sessions: vec![session_info()],
            }
            .into(),
        ),
        (
            "runtimes",
            Runtimes {
                request: 1,
                runtimes: vec![RuntimeInfo {
                    name: "codex".try_into().expect("short"),
                    available: false,
                    detail: "codex not found on PATH".into(),
                }],
            }
            .into(),
        ),
        (
            "event",
            Event {
                session: SESSION,
                seq: 42,
                at: 1_800_000_060,
                kind: EventKind::Status(SessionStatus::Done),
            }
            .into(),
        ),
        (
            "replay_complete",
            ReplayComplete {
                request: None,
                cursors: vec![Cursor {
                    session: SESSION,
                    last_seq: 42,
                }],
            }
            .into(),
        ),
        (
            "replay_more",
            ReplayMore {
                cursors: vec![Cursor {
                    session: SESSION,
                    last_seq: 16,
                }],
            }
            .into(),
        ),
        (
            "input_chunk",
            InputChunk {
                request: 13,
                session: SESSION,
                approval: 7,
                offset: 4,
                total: 10,
                bytes: b"mand\"}".to_vec(),
            }
            .into(),
        ),
        (
            "pairing_consent",
            PairingConsent {
                hostname: hostname("pi"),
                consent: identity(2).sign(
                    muxagent_proto::identity::SignDomain::RegistryEntry,
                    &RegistryEntry::consent_message(&fingerprint(1), &PAIRING),
                ),
            }
            .into(),
        ),
        (
            "ack",
            Ack {
                request: 3,
                session: Some(SESSION),
            }
            .into(),
        ),
        (
            "error",
            AppError {
                request: Some(7),
                code: AppErrorCode::HashMismatch,
                message: "the decision names another request".into(),
            }
            .into(),
        ),
    ]
}

pub fn ticket() -> Ticket {
    let machine = identity(2);
    Ticket {
        relay_url: "https://relay.example.net".try_into().expect("short url"),
        pairing_id: PAIRING,
        machine: machine.public().fingerprint(),
        machine_noise: machine.public().noise,
        secret: PairingSecret([0x77; 32]),
        hostname: hostname("pi"),
        expires_at: 1_800_000_300,
    }
}
