//! The values the UI sees, shaped exactly as `web/src/contract.ts` declares them (camelCase
//! fields, Unix milliseconds, lowercase hex ids), built from the [`Model`]. Plain serde types,
//! so their shape is tested natively; the glue turns them into JS objects.

use muxagent_client::controller::{Channel, Connection};
use muxagent_client::decide;
use muxagent_client::inbox::{self, Filter, Item};
use muxagent_client::model::{Machine, Model, Session, WholeInput};
use muxagent_client::words;
use muxagent_proto::app::{
    Decision, Event, EventKind, RuntimeInfo, SessionId, Stream, Usage as WireUsage,
};
use muxagent_proto::identity::Fingerprint;
use serde::Serialize;

/// `Connection` in the contract.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionView {
    /// `connecting`, `online`, `reconnecting`, `offline`, `revoked`.
    pub state: &'static str,
    /// Why the last attempt failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// When the next attempt starts (Unix ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<u64>,
}

/// `Usage` in the contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageView {
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
    /// Cached prompt tokens.
    pub cached_tokens: u64,
    /// Only when the agent reported one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd_micros: Option<u64>,
}

/// `SessionView` in the contract.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    /// Machine fingerprint.
    pub machine: String,
    /// Session id, 32 hex digits.
    pub id: String,
    /// Runtime name.
    pub runtime: String,
    /// Working directory.
    pub cwd: String,
    /// Title.
    pub title: String,
    /// Status word.
    pub status: &'static str,
    /// Unix ms.
    pub created_at: u64,
    /// Unix ms.
    pub updated_at: u64,
    /// Tokens and cost.
    pub usage: UsageView,
    /// Waiting approvals.
    pub pending_approvals: u32,
    /// Newest seq.
    pub last_seq: u64,
    /// The newest mode the device knows of.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

/// `MachineView` in the contract.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MachineView {
    /// 64 hex digits.
    pub fingerprint: String,
    /// The short form people compare.
    pub short: String,
    /// Hostname, as the machine gave it in the pairing or on its channel.
    pub hostname: String,
    /// The relay's presence names it otherwise: the relay's word, not the machine's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay_hostname: Option<String>,
    /// From relay presence.
    pub online: bool,
    /// `closed`, `handshaking`, `syncing`, `live`.
    pub channel: &'static str,
    /// Unix ms.
    pub paired_at: u64,
    /// Newest first.
    pub sessions: Vec<SessionView>,
    /// Waiting approvals across its sessions.
    pub pending_approvals: u32,
}

/// `Decision` in the contract (read from the UI by [`read::decision`](crate::read::decision)).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DecisionView {
    /// Allow this one request.
    AllowOnce,
    /// Allow and add a rule.
    AllowAlways,
    /// Refuse with a message for the agent.
    Deny {
        /// Told to the agent.
        message: String,
    },
}

impl From<&Decision> for DecisionView {
    fn from(decision: &Decision) -> Self {
        match decision {
            Decision::AllowOnce => DecisionView::AllowOnce,
            Decision::AllowAlways => DecisionView::AllowAlways,
            Decision::Deny { message } => DecisionView::Deny {
                message: message.clone(),
            },
        }
    }
}

impl From<DecisionView> for Decision {
    fn from(decision: DecisionView) -> Self {
        match decision {
            DecisionView::AllowOnce => Decision::AllowOnce,
            DecisionView::AllowAlways => Decision::AllowAlways,
            DecisionView::Deny { message } => Decision::Deny { message },
        }
    }
}

/// `ApprovalView` in the contract.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalView {
    /// Machine fingerprint.
    pub machine: String,
    /// Its hostname.
    pub hostname: String,
    /// Session id.
    pub session: String,
    /// The session's title.
    pub session_title: String,
    /// Approval number.
    pub approval: u64,
    /// `tool` or `plan`.
    pub kind: &'static str,
    /// Tool name.
    pub tool: String,
    /// The exact input.
    pub input: String,
    /// The plan text of a plan approval.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// 64 hex digits.
    pub request_hash: String,
    /// Unix ms.
    pub requested_at: u64,
    /// State word.
    pub state: &'static str,
    /// The decision, once made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<DecisionView>,
    /// Short fingerprint of the deciding device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// This device's decision is on its way.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub sending: bool,
    /// The machine refused this device's decision.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// `input` is cut: the approval's event carried less than the agent asked, and the whole
    /// is not here (yet). It cannot be allowed until it is; it can be denied.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub input_cut: bool,
    /// The whole input is being fetched: bytes so far and in all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_loading: Option<InputLoading>,
    /// Why the whole input could not be fetched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_error: Option<String>,
}

/// `InputLoading` in the contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct InputLoading {
    /// Bytes fetched.
    pub have: u64,
    /// Bytes in all (0 until the first page came).
    pub total: u64,
}

/// The device in the view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeviceView {
    /// 64 hex digits.
    pub fingerprint: String,
    /// The short form.
    pub short: String,
}

/// `View` in the contract.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct View {
    /// This device.
    pub device: DeviceView,
    /// The relay's base URL.
    pub relay: String,
    /// The relay connection.
    pub connection: ConnectionView,
    /// By hostname.
    pub machines: Vec<MachineView>,
    /// Pending approvals, newest first.
    pub inbox: Vec<ApprovalView>,
    /// Every approval known, newest first.
    pub approvals: Vec<ApprovalView>,
    /// The cache was loaded.
    pub loaded: bool,
    /// Notifications (filled in by the core, which keeps their settings).
    pub push: crate::push::View,
}

/// `RuntimeView` in the contract.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuntimeView {
    /// Its name.
    pub name: String,
    /// Whether its program is installed.
    pub available: bool,
    /// A version, or why it is unavailable.
    pub detail: String,
}

impl From<&RuntimeInfo> for RuntimeView {
    fn from(runtime: &RuntimeInfo) -> Self {
        Self {
            name: runtime.name.to_string(),
            available: runtime.available,
            detail: runtime.detail.clone(),
        }
    }
}

/// Unix seconds (the wire) to Unix ms (the contract).
fn ms(seconds: u64) -> u64 {
    seconds.saturating_mul(1000)
}

/// A session id as the contract writes it: 32 hex digits.
pub fn session_hex(id: &SessionId) -> String {
    format!("{id:#}")
}

fn usage(usage: &WireUsage) -> UsageView {
    UsageView {
        input_tokens: usage.input_tokens,
        output_tokens: usage.output_tokens,
        cached_tokens: usage.cached_tokens,
        cost_usd_micros: usage.cost_usd_micros,
    }
}

fn channel_word(channel: Channel) -> &'static str {
    match channel {
        Channel::Closed => "closed",
        Channel::Handshaking => "handshaking",
        Channel::Syncing => "syncing",
        Channel::Live => "live",
    }
}

/// The connection as the contract shows it.
pub fn connection(connection: &Connection) -> ConnectionView {
    let (state, retry_at, detail) = match connection {
        Connection::Connecting => ("connecting", None, None),
        Connection::Online => ("online", None, None),
        Connection::Reconnecting { retry_at, detail } => ("reconnecting", *retry_at, Some(detail)),
        Connection::Offline { retry_at, detail } => ("offline", *retry_at, Some(detail)),
        Connection::Revoked { detail } => ("revoked", None, Some(detail)),
    };
    ConnectionView {
        state,
        detail: detail.filter(|detail| !detail.is_empty()).cloned(),
        retry_at,
    }
}

/// One session.
pub fn session(machine: &Fingerprint, session: &Session) -> SessionView {
    let info = &session.info;
    SessionView {
        machine: machine.to_hex(),
        id: session_hex(&info.id),
        runtime: info.runtime.to_string(),
        cwd: info.cwd.clone(),
        title: info.title.clone(),
        status: words::status_word(info.status),
        created_at: ms(info.created_at),
        updated_at: ms(info.updated_at),
        usage: usage(&info.usage),
        pending_approvals: info.pending_approvals,
        last_seq: info.last_seq,
        mode: session.mode.clone(),
    }
}

/// One machine with its sessions, most recently active first.
pub fn machine(fingerprint: &Fingerprint, machine: &Machine) -> MachineView {
    let mut sessions: Vec<SessionView> = machine
        .sessions
        .values()
        .map(|known| session(fingerprint, known))
        .collect();
    sessions.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then(a.id.cmp(&b.id)));
    MachineView {
        fingerprint: fingerprint.to_hex(),
        short: fingerprint.to_string(),
        hostname: machine.hostname.clone(),
        relay_hostname: machine.relay_hostname.clone(),
        online: machine.online,
        channel: channel_word(machine.channel),
        paired_at: ms(machine.record.paired_at),
        sessions,
        pending_approvals: machine.pending_approvals(),
    }
}

fn approval(model: &Model, item: &Item<'_>) -> ApprovalView {
    let known = model.machines.get(&item.machine);
    let session = known.and_then(|machine| machine.sessions.get(&item.session));
    let request = item.request;
    let plan = session.and_then(|session| {
        session
            .history
            .plans
            .iter()
            .rev()
            .find(|(number, _)| *number == request.approval)
            .map(|(_, plan)| plan.clone())
    });
    let key = (item.machine, item.session, request.approval);
    let (decision, decided_by) = match &item.approval.decision {
        Some((decision, device)) => (Some(decision.into()), Some(device.to_string())),
        None => (None, None),
    };
    let (mut input_cut, mut input_loading, mut input_error) = (false, None, None);
    let input = match model.whole_input(&key) {
        Some(WholeInput::Whole(whole)) => whole.input.clone(),
        whole => {
            input_cut = decide::digest(item.session, request).is_none();
            match whole {
                Some(WholeInput::Loading { have, total }) => {
                    input_loading = Some(InputLoading {
                        have: *have,
                        total: *total,
                    });
                }
                Some(WholeInput::Failed(why)) => input_error = Some(why.clone()),
                _ => {}
            }
            request.input.clone()
        }
    };
    ApprovalView {
        machine: item.machine.to_hex(),
        hostname: known.map(|m| m.hostname.clone()).unwrap_or_default(),
        session: session_hex(&item.session),
        session_title: session.map(|s| s.info.title.clone()).unwrap_or_default(),
        approval: request.approval,
        kind: words::approval_kind_word(request.kind),
        tool: request.tool.clone(),
        input,
        plan,
        request_hash: Fingerprint(request.request_hash).to_hex(),
        requested_at: ms(item.approval.requested_at.unwrap_or(0)),
        state: words::approval_state_word(item.state),
        decision,
        decided_by,
        sending: model.is_sending(&key),
        refused: model.refusal(&key).map(String::from),
        input_cut,
        input_loading,
        input_error,
    }
}

/// The whole view.
pub fn view(model: &Model, device: &Fingerprint, relay: &str, loaded: bool) -> View {
    let mut machines: Vec<MachineView> = model
        .machines
        .iter()
        .map(|(fingerprint, known)| machine(fingerprint, known))
        .collect();
    machines.sort_by(|a, b| {
        a.hostname
            .to_lowercase()
            .cmp(&b.hostname.to_lowercase())
            .then(a.fingerprint.cmp(&b.fingerprint))
    });
    let sessions = || {
        model.machines.iter().flat_map(|(fingerprint, known)| {
            known
                .sessions
                .iter()
                .map(move |(id, session)| (*fingerprint, *id, &session.history))
        })
    };
    let inbox = inbox::list(sessions(), Filter::Pending)
        .iter()
        .map(|item| approval(model, item))
        .collect();
    let approvals = inbox::list(sessions(), Filter::All)
        .iter()
        .map(|item| approval(model, item))
        .collect();
    View {
        device: DeviceView {
            fingerprint: device.to_hex(),
            short: device.to_string(),
        },
        relay: relay.into(),
        connection: connection(&model.connection),
        machines,
        inbox,
        approvals,
        loaded,
        push: crate::push::View::default(),
    }
}

/// The body of a `TranscriptEvent` in the contract.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventBody {
    /// The session started.
    #[serde(rename_all = "camelCase")]
    Started {
        /// Runtime.
        runtime: String,
        /// Arguments.
        args: Vec<String>,
        /// Directory.
        cwd: String,
        /// Title.
        title: String,
        /// The device that started it.
        device: String,
    },
    /// A prompt.
    Prompt {
        /// Its text.
        text: String,
    },
    /// Agent text.
    Text {
        /// The text.
        text: String,
    },
    /// Streamed agent text.
    TextDelta {
        /// The fragment.
        text: String,
    },
    /// Reasoning.
    Thinking {
        /// The text.
        text: String,
    },
    /// Command output.
    Output {
        /// `stdout` or `stderr`.
        stream: &'static str,
        /// The text.
        text: String,
    },
    /// A tool call began.
    #[serde(rename_all = "camelCase")]
    ToolStarted {
        /// Call id.
        tool_call: String,
        /// Tool.
        name: String,
        /// Input.
        input: String,
    },
    /// A tool call progressed.
    #[serde(rename_all = "camelCase")]
    ToolUpdated {
        /// Call id.
        tool_call: String,
        /// What changed.
        detail: String,
    },
    /// A tool call ended.
    #[serde(rename_all = "camelCase")]
    ToolFinished {
        /// Call id.
        tool_call: String,
        /// Success.
        ok: bool,
        /// Output.
        output: String,
        /// A unified diff.
        #[serde(skip_serializing_if = "Option::is_none")]
        diff: Option<String>,
    },
    /// Permission asked.
    #[serde(rename_all = "camelCase")]
    ApprovalRequested {
        /// Number.
        approval: u64,
        /// `tool` or `plan`.
        approval_kind: &'static str,
        /// Tool.
        tool: String,
        /// Input.
        input: String,
    },
    /// An approval changed state.
    ApprovalState {
        /// Number.
        approval: u64,
        /// State word.
        state: &'static str,
    },
    /// A device decided.
    ApprovalResolved {
        /// Number.
        approval: u64,
        /// The decision.
        decision: DecisionView,
        /// The device, 64 hex digits.
        device: String,
    },
    /// A plan.
    PlanProposed {
        /// The approval that accepts it.
        approval: u64,
        /// The plan.
        plan: String,
    },
    /// Usage so far.
    Usage {
        /// Tokens and cost.
        usage: UsageView,
    },
    /// Status change.
    Status {
        /// Status word.
        status: &'static str,
    },
    /// A turn ended.
    TurnFinished {
        /// Why.
        reason: String,
    },
    /// An error.
    Error {
        /// What.
        message: String,
    },
    /// The process ended.
    Exited {
        /// Exit code.
        #[serde(skip_serializing_if = "Option::is_none")]
        code: Option<i32>,
        /// Signal.
        #[serde(skip_serializing_if = "Option::is_none")]
        signal: Option<i32>,
    },
    /// An agent message kept as it came.
    Opaque {
        /// Runtime.
        source: String,
        /// Raw JSON.
        raw: String,
    },
    /// The agent's own conversation id.
    AgentSession {
        /// The id.
        id: String,
    },
}

/// `TranscriptEvent` in the contract.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TranscriptEvent {
    /// Seq.
    pub seq: u64,
    /// Unix ms.
    pub at: u64,
    /// The rest.
    #[serde(flatten)]
    pub body: EventBody,
}

/// An event as the contract shows it.
pub fn event(event: &Event) -> TranscriptEvent {
    let body = match &event.kind {
        EventKind::Started {
            runtime,
            args,
            cwd,
            title,
            device,
        } => EventBody::Started {
            runtime: runtime.to_string(),
            args: args.clone(),
            cwd: cwd.clone(),
            title: title.clone(),
            device: device.to_hex(),
        },
        EventKind::Prompt { text } => EventBody::Prompt { text: text.clone() },
        EventKind::Text { text } => EventBody::Text { text: text.clone() },
        EventKind::TextDelta { text } => EventBody::TextDelta { text: text.clone() },
        EventKind::Thinking { text } => EventBody::Thinking { text: text.clone() },
        EventKind::Output { stream, text } => EventBody::Output {
            stream: match stream {
                Stream::Stdout => "stdout",
                Stream::Stderr => "stderr",
            },
            text: text.clone(),
        },
        EventKind::ToolStarted {
            tool_call,
            name,
            input,
        } => EventBody::ToolStarted {
            tool_call: tool_call.clone(),
            name: name.clone(),
            input: input.clone(),
        },
        EventKind::ToolUpdated { tool_call, detail } => EventBody::ToolUpdated {
            tool_call: tool_call.clone(),
            detail: detail.clone(),
        },
        EventKind::ToolFinished {
            tool_call,
            ok,
            output,
            diff,
        } => EventBody::ToolFinished {
            tool_call: tool_call.clone(),
            ok: *ok,
            output: output.clone(),
            diff: diff.clone(),
        },
        EventKind::ApprovalRequested(request) => EventBody::ApprovalRequested {
            approval: request.approval,
            approval_kind: words::approval_kind_word(request.kind),
            tool: request.tool.clone(),
            input: request.input.clone(),
        },
        EventKind::ApprovalState { approval, state } => EventBody::ApprovalState {
            approval: *approval,
            state: words::approval_state_word(*state),
        },
        EventKind::ApprovalResolved {
            approval,
            decision,
            device,
        } => EventBody::ApprovalResolved {
            approval: *approval,
            decision: decision.into(),
            device: device.to_hex(),
        },
        EventKind::PlanProposed { approval, plan } => EventBody::PlanProposed {
            approval: *approval,
            plan: plan.clone(),
        },
        EventKind::Usage(used) => EventBody::Usage { usage: usage(used) },
        EventKind::Status(status) => EventBody::Status {
            status: words::status_word(*status),
        },
        EventKind::TurnFinished { reason } => EventBody::TurnFinished {
            reason: reason.clone(),
        },
        EventKind::Error { message } => EventBody::Error {
            message: message.clone(),
        },
        EventKind::Exited { code, signal } => EventBody::Exited {
            code: *code,
            signal: *signal,
        },
        EventKind::Opaque { source, raw } => EventBody::Opaque {
            source: source.to_string(),
            raw: raw.clone(),
        },
        EventKind::AgentSession { id } => EventBody::AgentSession { id: id.clone() },
    };
    TranscriptEvent {
        seq: event.seq,
        at: ms(event.at),
        body,
    }
}

#[cfg(test)]
mod tests {
    use muxagent_client::book::{self, Book};
    use muxagent_client::controller::Note;
    use muxagent_client::model::Changes;
    use muxagent_proto::app::{ApprovalKind, ApprovalRequest, ApprovalState, SessionStatus};
    use muxagent_proto::identity::{Identity, SECRET_BYTES_LEN};
    use serde_json::json;

    use super::*;

    const SESSION: SessionId = SessionId([0xab; 16]);

    fn model() -> (Model, Fingerprint) {
        let machine = Identity::from_secret_bytes(&[2; SECRET_BYTES_LEN]).public();
        let record = book::Machine::new(&machine, "alpha", "https://r.example", 7);
        let book = Book {
            machines: vec![record],
        };
        (Model::new(&book), machine.fingerprint())
    }

    fn apply(model: &mut Model, machine: Fingerprint, seq: u64, kind: EventKind) {
        let note = Note::Event {
            machine,
            event: Event {
                session: SESSION,
                seq,
                at: 100 + seq,
                kind,
            },
            older: false,
        };
        model.apply(&note, &mut Changes::default());
    }

    #[test]
    fn the_view_has_the_contracts_shape() {
        let (mut model, alpha) = model();
        apply(
            &mut model,
            alpha,
            1,
            EventKind::PlanProposed {
                approval: 1,
                plan: "1. do it".into(),
            },
        );
        apply(
            &mut model,
            alpha,
            2,
            EventKind::ApprovalRequested(ApprovalRequest {
                approval: 1,
                kind: ApprovalKind::Plan,
                agent_request: "r".into(),
                tool: "ExitPlanMode".into(),
                input: "{}".into(),
                request_hash: [0x11; 32],
            }),
        );
        apply(
            &mut model,
            alpha,
            3,
            EventKind::ApprovalState {
                approval: 1,
                state: ApprovalState::Delivered,
            },
        );
        apply(
            &mut model,
            alpha,
            4,
            EventKind::Status(SessionStatus::WaitingApproval),
        );
        let device = Fingerprint([9; 32]);
        let view = view(&model, &device, "https://r.example", true);
        let value = serde_json::to_value(&view).unwrap();
        assert_eq!(value["device"]["fingerprint"], json!("09".repeat(32)));
        assert_eq!(value["device"]["short"], json!("0909-0909-0909-0909"));
        assert_eq!(value["connection"], json!({ "state": "connecting" }));
        assert_eq!(value["loaded"], json!(true));
        let machine = &value["machines"][0];
        assert_eq!(machine["hostname"], json!("alpha"));
        assert_eq!(machine["channel"], json!("closed"));
        assert_eq!(machine["pairedAt"], json!(7000));
        assert_eq!(machine["pendingApprovals"], json!(1));
        let session = &machine["sessions"][0];
        assert_eq!(session["id"], json!("ab".repeat(16)));
        assert_eq!(session["status"], json!("waiting_approval"));
        assert_eq!(session["updatedAt"], json!(104_000));
        assert_eq!(session["lastSeq"], json!(4));
        assert_eq!(
            session["usage"],
            json!({ "inputTokens": 0, "outputTokens": 0, "cachedTokens": 0 })
        );
        assert!(session.get("mode").is_none());
        let card = &value["inbox"][0];
        assert_eq!(card["kind"], json!("plan"));
        assert_eq!(card["plan"], json!("1. do it"));
        assert_eq!(card["state"], json!("delivered"));
        assert_eq!(card["requestHash"], json!("11".repeat(32)));
        assert_eq!(card["requestedAt"], json!(102_000));
        assert_eq!(card["hostname"], json!("alpha"));
        assert!(card.get("sending").is_none() && card.get("decision").is_none());
        assert_eq!(value["approvals"].as_array().unwrap().len(), 1);
        // Its hash is not its input's: the input counts as cut (deniable only) until the whole
        // comes; nothing fetches it yet.
        assert_eq!(card["inputCut"], json!(true));
        assert!(card.get("inputLoading").is_none() && card.get("inputError").is_none());
        // The relay's presence names the machine otherwise: its claim, not the name.
        assert!(machine.get("relayHostname").is_none());
        let presence = Note::Presence {
            machine: alpha,
            hostname: "mallory".into(),
            online: true,
        };
        model.apply(&presence, &mut Changes::default());
        let value =
            serde_json::to_value(super::view(&model, &device, "https://r.example", true)).unwrap();
        assert_eq!(value["machines"][0]["hostname"], json!("alpha"));
        assert_eq!(value["machines"][0]["relayHostname"], json!("mallory"));
        assert_eq!(value["inbox"][0]["hostname"], json!("alpha"));
    }

    #[test]
    fn events_have_the_contracts_shape() {
        let shape = |kind: EventKind| {
            serde_json::to_value(event(&Event {
                session: SESSION,
                seq: 5,
                at: 2,
                kind,
            }))
            .unwrap()
        };
        assert_eq!(
            shape(EventKind::ToolFinished {
                tool_call: "t1".into(),
                ok: true,
                output: "done".into(),
                diff: None,
            }),
            json!({ "seq": 5, "at": 2000, "kind": "tool_finished", "toolCall": "t1", "ok": true, "output": "done" })
        );
        assert_eq!(
            shape(EventKind::ApprovalResolved {
                approval: 3,
                decision: Decision::Deny {
                    message: "no".into()
                },
                device: Fingerprint([1; 32]),
            }),
            json!({ "seq": 5, "at": 2000, "kind": "approval_resolved", "approval": 3,
                    "decision": { "kind": "deny", "message": "no" }, "device": "01".repeat(32) })
        );
        assert_eq!(
            shape(EventKind::Exited {
                code: Some(0),
                signal: None
            }),
            json!({ "seq": 5, "at": 2000, "kind": "exited", "code": 0 })
        );
        assert_eq!(
            shape(EventKind::Output {
                stream: Stream::Stderr,
                text: "x".into()
            }),
            json!({ "seq": 5, "at": 2000, "kind": "output", "stream": "stderr", "text": "x" })
        );
    }

    #[test]
    fn connection_states() {
        let offline = Connection::Offline {
            retry_at: Some(5),
            detail: "the relay does not answer".into(),
        };
        assert_eq!(
            serde_json::to_value(connection(&offline)).unwrap(),
            json!({ "state": "offline", "detail": "the relay does not answer", "retryAt": 5 })
        );
        assert_eq!(connection(&Connection::Online).state, "online");
        let revoked = Connection::Revoked {
            detail: "this device was revoked".into(),
        };
        assert_eq!(
            serde_json::to_value(connection(&revoked)).unwrap(),
            json!({ "state": "revoked", "detail": "this device was revoked" })
        );
    }
}
