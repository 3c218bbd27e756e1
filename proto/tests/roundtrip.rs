//! Property tests: every frame and message decodes to what was encoded, and no input — cut,
//! extended or random — makes a decoder panic or accept trailing garbage.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

mod samples;

use muxagent_proto::Bytes64;
use muxagent_proto::app::*;
use muxagent_proto::envelope::{DecodeError, Decoded};
use muxagent_proto::frame::{self, *};
use muxagent_proto::identity::{Fingerprint, PublicIdentity, Signature};
use muxagent_proto::limits::{APPROVAL_INPUT_MAX_LEN, RELAY_TRACKED_CHANNELS_PER_CONNECTION};
use muxagent_proto::noise::ConnectionId;
use muxagent_proto::ticket::{PairingSecret, Ticket};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

fn bytes32() -> impl Strategy<Value = [u8; 32]> {
    any::<[u8; 32]>()
}

fn fingerprint() -> impl Strategy<Value = Fingerprint> {
    bytes32().prop_map(Fingerprint)
}

fn public_identity() -> impl Strategy<Value = PublicIdentity> {
    (bytes32(), bytes32()).prop_map(|(signing, noise)| PublicIdentity { signing, noise })
}

fn signature() -> impl Strategy<Value = Signature> {
    (bytes32(), bytes32()).prop_map(|(a, b)| {
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(&a);
        bytes[32..].copy_from_slice(&b);
        Signature(Bytes64(bytes))
    })
}

fn hostname() -> impl Strategy<Value = Hostname> {
    "[a-zA-Z0-9.-]{1,64}".prop_map(|host| Hostname::try_from(host.as_str()).expect("≤ 64"))
}

fn short<const N: usize>() -> impl Strategy<Value = heapless::String<N>> {
    "\\PC{0,12}".prop_filter_map("fits", |text| {
        heapless::String::try_from(text.as_str()).ok()
    })
}

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,40}"
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..300)
}

fn pairing_id() -> impl Strategy<Value = PairingId> {
    any::<[u8; 16]>().prop_map(PairingId)
}

fn session() -> impl Strategy<Value = SessionId> {
    any::<[u8; 16]>().prop_map(SessionId)
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![
        Just(Role::Device),
        Just(Role::Machine),
        Just(Role::PendingMachine)
    ]
}

fn frame_strategy() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (any::<u16>(), any::<u16>(), bytes32()).prop_map(|(a, b, challenge)| {
            ServerHello {
                min_protocol: a.min(b),
                max_protocol: a.max(b),
                challenge,
            }
            .into()
        }),
        (
            any::<u16>(),
            role(),
            public_identity(),
            hostname(),
            signature()
        )
            .prop_map(|(protocol, role, identity, host, signature)| {
                let hostname = (role != Role::Device).then_some(host);
                Login {
                    protocol,
                    role,
                    identity,
                    hostname,
                    signature,
                }
                .into()
            }),
        (any::<u16>(), option::of(fingerprint())).prop_map(|(protocol, account)| LoginOk {
            protocol,
            account
        }
        .into()),
        (pairing_id(), any::<u64>()).prop_map(|(pairing_id, expires_at)| OpenPairing {
            pairing_id,
            expires_at
        }
        .into()),
        (pairing_id(), any::<u64>()).prop_map(|(pairing_id, expires_at)| PairingOpened {
            pairing_id,
            expires_at
        }
        .into()),
        (pairing_id(), payload()).prop_map(|(pairing_id, payload)| PairSend {
            pairing_id,
            payload
        }
        .into()),
        (pairing_id(), fingerprint(), payload()).prop_map(|(pairing_id, from, payload)| PairRecv {
            pairing_id,
            from,
            payload
        }
        .into()),
        (fingerprint(), payload()).prop_map(|(to, payload)| frame::Send { to, payload }.into()),
        (fingerprint(), payload()).prop_map(|(from, payload)| Recv { from, payload }.into()),
        (any::<u32>(), vec(any::<u8>(), 0..512), signature()).prop_map(
            |(request, entry, signature)| {
                Registry {
                    request,
                    entry: SignedEntry { entry, signature },
                }
                .into()
            }
        ),
        any::<u32>().prop_map(|request| RegistryAck { request }.into()),
        (fingerprint(), hostname(), any::<bool>()).prop_map(|(machine, hostname, online)| {
            Presence {
                machine,
                hostname,
                online,
            }
            .into()
        }),
        (any::<u16>(), option::of(any::<u32>()), short::<200>()).prop_map(
            |(code, request, reason)| {
                frame::Error {
                    code: ErrorCode::from(code),
                    request,
                    reason,
                }
                .into()
            }
        ),
        (any::<u32>(), any::<u32>()).prop_map(|(reconnect_in_ms, try_for_ms)| {
            Restarting {
                reconnect_in_ms,
                try_for_ms,
            }
            .into()
        }),
        (
            fingerprint(),
            any::<bool>(),
            vec(any::<[u8; 8]>(), 0..=RELAY_TRACKED_CHANNELS_PER_CONNECTION)
        )
            .prop_map(|(device, online, closed)| {
                DevicePresence {
                    device,
                    online,
                    closed: closed.into_iter().map(ConnectionId).collect(),
                }
                .into()
            }),
    ]
}

fn decision() -> impl Strategy<Value = Decision> {
    prop_oneof![
        Just(Decision::AllowOnce),
        Just(Decision::AllowAlways),
        text().prop_map(|message| Decision::Deny { message }),
    ]
}

fn usage() -> impl Strategy<Value = Usage> {
    (
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        option::of(any::<u64>()),
    )
        .prop_map(
            |(input_tokens, output_tokens, cached_tokens, cost_usd_micros)| Usage {
                input_tokens,
                output_tokens,
                cached_tokens,
                cost_usd_micros,
            },
        )
}

fn status() -> impl Strategy<Value = SessionStatus> {
    prop_oneof![
        Just(SessionStatus::Idle),
        Just(SessionStatus::Running),
        Just(SessionStatus::WaitingApproval),
        Just(SessionStatus::Done),
        Just(SessionStatus::Error),
        Just(SessionStatus::Stopped),
    ]
}

fn cursor() -> impl Strategy<Value = Cursor> {
    (session(), any::<u64>()).prop_map(|(session, last_seq)| Cursor { session, last_seq })
}

fn device_message_strategy() -> impl Strategy<Value = DeviceMessage> {
    let decide = (
        any::<u32>(),
        session(),
        any::<u64>(),
        bytes32(),
        decision(),
        any::<u64>(),
    )
        .prop_flat_map(
            |(request, session, approval, request_hash, decision, decided_at)| {
                (public_identity(), signature()).prop_map(move |(device, signature)| {
                    let body = DecisionBody {
                        session,
                        approval,
                        request_hash,
                        decision: decision.clone(),
                        decided_at,
                    };
                    Decide {
                        request,
                        decision: SignedDecision {
                            body,
                            device,
                            signature,
                        },
                    }
                    .into()
                })
            },
        );
    prop_oneof![
        vec(cursor(), 0..8).prop_map(|cursors| Hello { cursors }.into()),
        any::<u32>().prop_map(|request| ListRuntimes { request }.into()),
        any::<u32>().prop_map(|request| ListSessions { request }.into()),
        (
            any::<u32>(),
            short::<32>(),
            vec(text(), 0..4),
            "/[a-z/]{0,20}",
            text(),
            option::of(text()),
            option::of(short::<32>())
        )
            .prop_map(|(request, runtime, args, cwd, prompt, title, mode)| {
                StartSession {
                    request,
                    runtime,
                    args,
                    cwd,
                    prompt,
                    title,
                    mode,
                }
                .into()
            }),
        (any::<u32>(), session(), text()).prop_map(|(request, session, text)| SendPrompt {
            request,
            session,
            text
        }
        .into()),
        (any::<u32>(), session())
            .prop_map(|(request, session)| Interrupt { request, session }.into()),
        (any::<u32>(), session()).prop_map(|(request, session)| Stop { request, session }.into()),
        decide,
        (any::<u32>(), session(), short::<32>()).prop_map(|(request, session, mode)| SetMode {
            request,
            session,
            mode
        }
        .into()),
        (any::<u32>(), session(), any::<u64>()).prop_map(|(request, session, after_seq)| Replay {
            request,
            session,
            after_seq
        }
        .into()),
        any::<u32>().prop_map(|request| ForgetDevice { request }.into()),
        Just(PairingComplete {}.into()),
        (
            any::<u32>(),
            session(),
            any::<u64>(),
            0..=APPROVAL_INPUT_MAX_LEN as u64
        )
            .prop_map(|(request, session, approval, offset)| FetchInput {
                request,
                session,
                approval,
                offset
            }
            .into()),
    ]
}

fn event_kind() -> impl Strategy<Value = EventKind> {
    let approval = (
        any::<u64>(),
        any::<bool>(),
        text(),
        text(),
        text(),
        bytes32(),
    )
        .prop_map(
            |(approval, plan, agent_request, tool, input, request_hash)| {
                EventKind::ApprovalRequested(ApprovalRequest {
                    approval,
                    kind: if plan {
                        ApprovalKind::Plan
                    } else {
                        ApprovalKind::Tool
                    },
                    agent_request,
                    tool,
                    input,
                    request_hash,
                })
            },
        );
    let approval_state = prop_oneof![
        Just(ApprovalState::Requested),
        Just(ApprovalState::Delivered),
        Just(ApprovalState::Decided),
        Just(ApprovalState::Applied),
        Just(ApprovalState::Withdrawn),
        Just(ApprovalState::Expired),
    ];
    let started = (
        short::<32>(),
        vec(text(), 0..3),
        text(),
        text(),
        fingerprint(),
    )
        .prop_map(|(runtime, args, cwd, title, device)| EventKind::Started {
            runtime,
            args,
            cwd,
            title,
            device,
        });
    prop_oneof![
        started,
        text().prop_map(|text| EventKind::Prompt { text }),
        text().prop_map(|text| EventKind::Text { text }),
        text().prop_map(|text| EventKind::TextDelta { text }),
        text().prop_map(|text| EventKind::Thinking { text }),
        (any::<bool>(), text()).prop_map(|(err, text)| EventKind::Output {
            stream: if err { Stream::Stderr } else { Stream::Stdout },
            text
        }),
        (text(), text(), text()).prop_map(|(tool_call, name, input)| EventKind::ToolStarted {
            tool_call,
            name,
            input
        }),
        (text(), text())
            .prop_map(|(tool_call, detail)| EventKind::ToolUpdated { tool_call, detail }),
        (text(), any::<bool>(), text(), option::of(text())).prop_map(
            |(tool_call, ok, output, diff)| EventKind::ToolFinished {
                tool_call,
                ok,
                output,
                diff
            }
        ),
        approval,
        (any::<u64>(), approval_state)
            .prop_map(|(approval, state)| EventKind::ApprovalState { approval, state }),
        (any::<u64>(), decision(), fingerprint()).prop_map(|(approval, decision, device)| {
            EventKind::ApprovalResolved {
                approval,
                decision,
                device,
            }
        }),
        (any::<u64>(), text())
            .prop_map(|(approval, plan)| EventKind::PlanProposed { approval, plan }),
        usage().prop_map(EventKind::Usage),
        status().prop_map(EventKind::Status),
        text().prop_map(|reason| EventKind::TurnFinished { reason }),
        text().prop_map(|message| EventKind::Error { message }),
        (option::of(any::<i32>()), option::of(any::<i32>()))
            .prop_map(|(code, signal)| EventKind::Exited { code, signal }),
        (short::<32>(), text()).prop_map(|(source, raw)| EventKind::Opaque { source, raw }),
        text().prop_map(|id| EventKind::AgentSession { id }),
    ]
}

fn session_info() -> impl Strategy<Value = SessionInfo> {
    (
        session(),
        short::<32>(),
        text(),
        text(),
        status(),
        any::<(u64, u64)>(),
        usage(),
        any::<u32>(),
        any::<u64>(),
    )
        .prop_map(
            |(
                id,
                runtime,
                cwd,
                title,
                status,
                (created_at, updated_at),
                usage,
                pending,
                last_seq,
            )| {
                SessionInfo {
                    id,
                    runtime,
                    cwd,
                    title,
                    status,
                    created_at,
                    updated_at,
                    usage,
                    pending_approvals: pending,
                    last_seq,
                }
            },
        )
}

fn machine_message_strategy() -> impl Strategy<Value = MachineMessage> {
    let code = prop_oneof![
        Just(AppErrorCode::UnknownSession),
        Just(AppErrorCode::UnknownRuntime),
        Just(AppErrorCode::UnknownApproval),
        Just(AppErrorCode::HashMismatch),
        Just(AppErrorCode::BadSignature),
        Just(AppErrorCode::InvalidState),
        Just(AppErrorCode::BadRequest),
        Just(AppErrorCode::Internal),
    ];
    prop_oneof![
        (
            option::of(any::<u32>()),
            hostname(),
            vec(session_info(), 0..4)
        )
            .prop_map(|(request, hostname, sessions)| SessionList {
                request,
                hostname,
                sessions
            }
            .into()),
        (
            any::<u32>(),
            vec((short::<32>(), any::<bool>(), text()), 0..4)
        )
            .prop_map(|(request, list)| {
                let runtimes = list
                    .into_iter()
                    .map(|(name, available, detail)| RuntimeInfo {
                        name,
                        available,
                        detail,
                    })
                    .collect();
                Runtimes { request, runtimes }.into()
            }),
        (session(), 1..u64::MAX, any::<u64>(), event_kind()).prop_map(
            |(session, seq, at, kind)| Event {
                session,
                seq,
                at,
                kind
            }
            .into()
        ),
        (option::of(any::<u32>()), vec(cursor(), 0..8))
            .prop_map(|(request, cursors)| ReplayComplete { request, cursors }.into()),
        (any::<u32>(), option::of(session())).prop_map(|(request, session)| Ack {
            request,
            session
        }
        .into()),
        (option::of(any::<u32>()), code, text()).prop_map(|(request, code, message)| AppError {
            request,
            code,
            message
        }
        .into()),
        (hostname(), signature()).prop_map(|(hostname, consent)| PairingConsent {
            hostname,
            consent
        }
        .into()),
        vec(cursor(), 0..8).prop_map(|cursors| ReplayMore { cursors }.into()),
        (
            any::<u32>(),
            session(),
            any::<u64>(),
            payload(),
            0..=1024u64
        )
            .prop_map(|(request, session, approval, bytes, rest)| {
                let offset = rest * 7;
                let after = if bytes.is_empty() { 0 } else { rest };
                InputChunk {
                    request,
                    session,
                    approval,
                    offset,
                    total: offset + bytes.len() as u64 + after,
                    bytes,
                }
                .into()
            }),
    ]
}

fn ticket_strategy() -> impl Strategy<Value = Ticket> {
    (
        "https?://[a-z0-9.-]{1,40}(:[0-9]{1,5})?(/[a-z]{0,10})?",
        pairing_id(),
        fingerprint(),
        bytes32(),
        bytes32(),
        hostname(),
        1u64..u64::MAX,
    )
        .prop_map(
            |(url, pairing_id, machine, machine_noise, secret, hostname, expires_at)| Ticket {
                relay_url: url.as_str().try_into().expect("≤ 200"),
                pairing_id,
                machine,
                machine_noise,
                secret: PairingSecret(secret),
                hostname,
                expires_at,
            },
        )
}

/// Every strict prefix of an encoding is refused (never taken for a different, shorter value).
fn assert_prefixes_refused<T: std::fmt::Debug>(
    bytes: &[u8],
    decode: impl Fn(&[u8]) -> Result<Decoded<T>, DecodeError>,
) {
    for cut in 0..bytes.len() {
        assert!(
            decode(&bytes[..cut]).is_err(),
            "prefix of {cut} bytes was accepted"
        );
    }
}

proptest! {
    #[test]
    fn frames_round_trip(frame in frame_strategy()) {
        let bytes = frame.encode();
        prop_assert_eq!(Frame::decode(&bytes), Ok(Decoded::Known(frame)));
        assert_prefixes_refused(&bytes, Frame::decode);
        let mut longer = bytes.clone();
        longer.push(0);
        let trailing = matches!(Frame::decode(&longer), Err(DecodeError::TrailingBytes { .. }));
        prop_assert!(trailing, "a trailing byte was accepted");
    }

    #[test]
    fn device_messages_round_trip(message in device_message_strategy()) {
        let bytes = message.encode();
        prop_assert_eq!(DeviceMessage::decode(&bytes), Ok(Decoded::Known(message)));
        assert_prefixes_refused(&bytes, DeviceMessage::decode);
    }

    #[test]
    fn machine_messages_round_trip(message in machine_message_strategy()) {
        let bytes = message.encode();
        prop_assert_eq!(MachineMessage::decode(&bytes), Ok(Decoded::Known(message)));
        assert_prefixes_refused(&bytes, MachineMessage::decode);
    }

    #[test]
    fn tickets_round_trip(ticket in ticket_strategy()) {
        let link = ticket.link();
        let now = ticket.expires_at - 1;
        prop_assert_eq!(Ticket::from_link(&link, now), Ok(ticket.clone()));
        prop_assert_eq!(Ticket::decode(&ticket.encode(), now), Ok(ticket));
    }

    #[test]
    fn random_bytes_never_panic(bytes in vec(any::<u8>(), 0..600)) {
        let _ = Frame::decode(&bytes);
        let _ = DeviceMessage::decode(&bytes);
        let _ = MachineMessage::decode(&bytes);
        if let Ok(Decoded::Known(frame)) = Frame::decode(&bytes) {
            // Whatever decodes re-encodes to a value that decodes the same.
            prop_assert_eq!(Frame::decode(&frame.encode()), Ok(Decoded::Known(frame)));
        }
    }

    #[test]
    fn random_text_is_never_a_ticket_by_accident(text in "[A-Za-z0-9_-]{0,600}") {
        let _ = Ticket::decode(&text, 0);
    }
}
