//! Approvals (DESIGN §5): an agent's ask becomes a numbered request bound by its hash to exactly
//! what was asked; a device's signed decision is checked against it before the agent hears it.
//!
//! Every step is an event in the session's log, so the log is the audit trail (who decided
//! what, from which device, when) and the state machine survives restarts:
//! requested → delivered → decided (`ApprovalResolved`) → applied, or withdrawn / expired.
//! The open approvals themselves are folded from the log ([`super::sessions::SessionState`]).

use std::collections::BTreeSet;
use std::rc::Rc;
use std::time::Duration;

use muxagent_proto::app::{
    AppErrorCode, ApprovalId, ApprovalKind, ApprovalRequest, ApprovalState, Decision, EventKind,
    FetchInput, InputChunk, SessionId, SessionStatus, SignedDecision, request_hash,
};
use muxagent_proto::identity::Fingerprint;
use muxagent_proto::limits::{APPROVAL_INPUT_MAX_LEN, INPUT_CHUNK_LEN};
use smol::{LocalExecutor, Timer};

use super::agent::{self, Refusal};
use super::runtime::{Ask, Command};
use super::{Core, Shared};
use crate::limits::{DAEMON_WHOLE_INPUTS_MAX_LEN, EVENT_FIELD_MAX_LEN, MAX_PENDING_APPROVALS};
use crate::{log, os};

/// How an approval closed on the agent's side.
pub enum Close {
    /// The agent took the ask back.
    Withdrawn,
    /// The agent was given the decision.
    Applied,
}

/// Log a new ask of session `id` and, under an auto-deny policy, arm its timer.
pub fn ask(core: &Shared, executor: &Rc<LocalExecutor<'static>>, id: SessionId, ask: Ask) {
    let now = os::unix_now();
    let mut c = core.borrow_mut();
    let Some(state) = c.sessions.state(&id) else {
        return;
    };
    if state.approvals.len() >= MAX_PENDING_APPROVALS {
        let message = format!(
            "the agent asked for more than {MAX_PENDING_APPROVALS} approvals at once; this one was denied"
        );
        answer_agent(&c, id, &ask.agent_request, deny(&message));
        let _ = c.record(id, EventKind::Error { message }, now);
        return;
    }
    let approval = state.last_approval + 1;
    let hash = request_hash(&id, &ask.agent_request, &ask.tool, &ask.input);
    if let (ApprovalKind::Plan, Some(plan)) = (ask.kind, ask.plan) {
        record(
            &mut c,
            id,
            agent::fit(EventKind::PlanProposed { approval, plan }),
        );
    }
    // The hash covers the whole input; a very long one is shown cut, and kept whole (within
    // bounds) for devices to fetch before they allow it.
    if ask.input.len() > EVENT_FIELD_MAX_LEN {
        keep_whole(&mut c, id, approval, &ask.input);
    }
    let shown = match agent::fit(EventKind::Text { text: ask.input }) {
        EventKind::Text { text } => text,
        _ => String::new(),
    };
    let request = ApprovalRequest {
        approval,
        kind: ask.kind,
        agent_request: ask.agent_request,
        tool: ask.tool,
        input: shown,
        request_hash: hash,
    };
    record(&mut c, id, EventKind::ApprovalRequested(request));
    agent::set_status(&mut c, id, SessionStatus::WaitingApproval, now);
    if let Some(minutes) = c.state.auto_deny_after_minutes.filter(|m| *m > 0) {
        drop(c);
        let core = core.clone();
        executor
            .spawn(async move {
                Timer::after(Duration::from_secs(u64::from(minutes) * 60)).await;
                expire(&core, id, approval, minutes);
            })
            .detach();
    }
}

/// Keep `input` of `approval` whole for devices to fetch, if it is short enough and the
/// session's budget has room once closed approvals' inputs are dropped.
fn keep_whole(c: &mut Core, id: SessionId, approval: ApprovalId, input: &str) {
    let open: BTreeSet<ApprovalId> = c
        .sessions
        .state(&id)
        .map(|state| state.approvals.keys().copied().collect())
        .unwrap_or_default();
    let Some(running) = c.agents.get_mut(&id) else {
        return;
    };
    running.whole_inputs.retain(|kept, _| open.contains(kept));
    let held: usize = running.whole_inputs.values().map(String::len).sum();
    if input.len() <= APPROVAL_INPUT_MAX_LEN && held + input.len() <= DAEMON_WHOLE_INPUTS_MAX_LEN {
        running.whole_inputs.insert(approval, input.to_owned());
    } else {
        log::info(&format!(
            "session {id}: approval {approval}'s input ({} bytes) is kept cut only; it can be denied, not allowed",
            input.len()
        ));
    }
}

/// A page of the whole input of an open approval, from `offset` on.
pub fn input_page(core: &Shared, fetch: &FetchInput) -> Result<InputChunk, Refusal> {
    let c = core.borrow();
    let id = fetch.session;
    let approval = fetch.approval;
    let state = c
        .sessions
        .state(&id)
        .ok_or_else(|| (AppErrorCode::UnknownSession, format!("no session {id}")))?;
    let Some(open) = state.approvals.get(&approval) else {
        return Err((
            AppErrorCode::UnknownApproval,
            format!("approval {approval} of session {id} is not open"),
        ));
    };
    let request = &open.request;
    let whole = match c
        .agents
        .get(&id)
        .and_then(|running| running.whole_inputs.get(&approval))
    {
        Some(whole) => whole.as_str(),
        // Not cut: the event's input is the whole.
        None if request_hash(&id, &request.agent_request, &request.tool, &request.input)
            == request.request_hash =>
        {
            request.input.as_str()
        }
        None => {
            return Err((
                AppErrorCode::InvalidState,
                format!(
                    "approval {approval} of session {id} has an input longer than this machine keeps for devices ({} KiB at most); it can only be denied",
                    APPROVAL_INPUT_MAX_LEN / 1024
                ),
            ));
        }
    };
    let total = whole.len() as u64;
    let start = usize::try_from(fetch.offset)
        .ok()
        .filter(|start| *start <= whole.len())
        .ok_or_else(|| {
            (
                AppErrorCode::BadRequest,
                format!(
                    "offset {} is past the input's end ({total} bytes)",
                    fetch.offset
                ),
            )
        })?;
    let end = whole.len().min(start + INPUT_CHUNK_LEN);
    Ok(InputChunk {
        request: fetch.request,
        session: id,
        approval,
        offset: fetch.offset,
        total,
        bytes: whole.as_bytes()[start..end].to_vec(),
    })
}

/// The policy's time is up: deny the approval if nobody decided it.
fn expire(core: &Shared, id: SessionId, approval: u64, minutes: u32) {
    let mut c = core.borrow_mut();
    let Some(open) = c
        .sessions
        .state(&id)
        .and_then(|state| state.approvals.get(&approval))
        .filter(|open| open.state != ApprovalState::Decided)
        .cloned()
    else {
        return;
    };
    let message = format!("nobody decided within {minutes} minutes (this machine's policy)");
    answer_agent(&c, id, &open.request.agent_request, deny(&message));
    record(
        &mut c,
        id,
        EventKind::ApprovalState {
            approval,
            state: ApprovalState::Expired,
        },
    );
    after_close(&mut c, id);
}

fn deny(message: &str) -> Decision {
    Decision::Deny {
        message: message.into(),
    }
}

fn answer_agent(c: &Core, id: SessionId, agent_request: &str, decision: Decision) -> bool {
    c.agents.get(&id).is_some_and(|running| {
        running
            .commands
            .try_send(Command::Answer {
                agent_request: agent_request.into(),
                decision,
            })
            .is_ok()
    })
}

fn record(c: &mut Core, id: SessionId, kind: EventKind) {
    if let Err(error) = c.record(id, kind, os::unix_now()) {
        super::report(id, &error);
    }
}

/// When nothing waits any more: back to running, or idle if the turn ended meanwhile.
fn after_close(c: &mut Core, id: SessionId) {
    let waiting = c
        .sessions
        .info(&id)
        .map(|info| (info.status, info.pending_approvals));
    if let Some((SessionStatus::WaitingApproval, 0)) = waiting {
        let turn_open = c.agents.get(&id).is_some_and(|running| running.turn_open);
        let status = if turn_open {
            SessionStatus::Running
        } else {
            SessionStatus::Idle
        };
        agent::set_status(c, id, status, os::unix_now());
    }
}

/// The agent withdrew an ask, or was given its answer.
pub fn close(c: &mut Core, id: SessionId, agent_request: &str, how: Close) {
    let Some((approval, state)) = c.sessions.state(&id).and_then(|state| {
        state
            .approvals
            .iter()
            .find(|(_, open)| open.request.agent_request == agent_request)
            .map(|(approval, open)| (*approval, open.state))
    }) else {
        return; // already closed (expired, or withdrawn by the runtime itself)
    };
    let closed = match how {
        Close::Withdrawn => ApprovalState::Withdrawn,
        Close::Applied if state == ApprovalState::Decided => ApprovalState::Applied,
        Close::Applied => return,
    };
    record(
        c,
        id,
        EventKind::ApprovalState {
            approval,
            state: closed,
        },
    );
    after_close(c, id);
}

/// The agent is gone: every open approval of the session is withdrawn.
pub fn withdraw_all(c: &mut Core, id: SessionId, now: u64) {
    let open: Vec<u64> = c
        .sessions
        .state(&id)
        .map(|state| state.approvals.keys().copied().collect())
        .unwrap_or_default();
    for approval in open {
        let kind = EventKind::ApprovalState {
            approval,
            state: ApprovalState::Withdrawn,
        };
        if let Err(error) = c.record(id, kind, now) {
            super::report(id, &error);
        }
    }
}

/// A device sent `decision`: check it from end to end, answer the agent, log it. A refused
/// decision changes nothing.
pub fn decide(
    core: &Shared,
    sender: Fingerprint,
    decision: SignedDecision,
) -> Result<SessionId, Refusal> {
    let mut c = core.borrow_mut();
    let body = &decision.body;
    let id = body.session;
    let state = c
        .sessions
        .state(&id)
        .ok_or_else(|| (AppErrorCode::UnknownSession, format!("no session {id}")))?;
    let approval = body.approval;
    let Some(open) = state.approvals.get(&approval) else {
        let message = if approval == 0 || approval > state.last_approval {
            format!("session {id} has no approval {approval}")
        } else {
            format!(
                "approval {approval} of session {id} is no longer pending (it was decided, withdrawn or expired)"
            )
        };
        return Err((AppErrorCode::UnknownApproval, message));
    };
    if open.state == ApprovalState::Decided {
        return Err((
            AppErrorCode::UnknownApproval,
            format!("approval {approval} of session {id} was already decided"),
        ));
    }
    if body.request_hash != open.request.request_hash {
        return Err((
            AppErrorCode::HashMismatch,
            format!(
                "the decision is for another request than approval {approval} of session {id} (hash mismatch); nothing was changed"
            ),
        ));
    }
    if decision.verify().is_err() {
        return Err((
            AppErrorCode::BadSignature,
            "the decision's signature does not verify; nothing was changed".into(),
        ));
    }
    let signer = decision.device.fingerprint();
    if signer != sender {
        return Err((
            AppErrorCode::BadSignature,
            format!("the decision is signed by device {signer}, not by {sender} which sent it"),
        ));
    }
    if !c.state.is_paired(&signer) {
        return Err((
            AppErrorCode::BadSignature,
            format!("device {signer} is not paired with this machine"),
        ));
    }
    let agent_request = open.request.agent_request.clone();
    if !c.agents.contains_key(&id) {
        return Err((
            AppErrorCode::InvalidState,
            format!("session {id} is not running; its approvals are void"),
        ));
    }
    if !answer_agent(&c, id, &agent_request, body.decision.clone()) {
        return Err((
            AppErrorCode::InvalidState,
            "the agent has too many commands waiting; try again in a moment".into(),
        ));
    }
    let kind = EventKind::ApprovalResolved {
        approval,
        decision: body.decision.clone(),
        device: signer,
    };
    record(&mut c, id, kind);
    after_close(&mut c, id);
    Ok(id)
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use muxagent_proto::app::{ApprovalId, DecisionBody};
    use muxagent_proto::identity::Identity;
    use smol::channel::Receiver;

    use super::*;
    use crate::daemon::agent::Running;
    use crate::home::Home;

    const SESSION: SessionId = SessionId([7; 16]);

    struct Setup {
        _dir: tempfile::TempDir,
        core: Shared,
        device: Identity,
        request: ApprovalRequest,
        agent: Receiver<Command>,
    }

    /// A machine with one paired device and one session whose agent asked once.
    fn setup() -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = Home::open(dir.path().to_path_buf()).expect("home");
        let (replays, _) = smol::channel::unbounded();
        let mut core = Core::load(home, replays).expect("core");
        let device = Identity::generate(&mut os::rng());
        core.state.add_device(&device.public(), 0);
        let started = EventKind::Started {
            runtime: "claude".try_into().expect("name"),
            args: Vec::new(),
            cwd: "/".into(),
            title: "t".into(),
            device: device.public().fingerprint(),
        };
        core.create_session(SESSION, started, 0).expect("session");
        let (commands, agent) = smol::channel::bounded(4);
        core.agents.insert(
            SESSION,
            Running {
                group: rustix::process::Pid::from_raw(i32::MAX).expect("pid"),
                commands,
                modes: &[],
                turn_open: true,
                whole_inputs: Default::default(),
            },
        );
        let input = r#"{"command":"rm -rf build"}"#;
        let request = ApprovalRequest {
            approval: 1,
            kind: ApprovalKind::Tool,
            agent_request: "req-9".into(),
            tool: "Bash".into(),
            input: input.into(),
            request_hash: request_hash(&SESSION, "req-9", "Bash", input),
        };
        core.record(SESSION, EventKind::ApprovalRequested(request.clone()), 0)
            .expect("ask");
        Setup {
            _dir: dir,
            core: Rc::new(RefCell::new(core)),
            device,
            request,
            agent,
        }
    }

    fn body(approval: ApprovalId, hash: [u8; 32], decision: Decision) -> DecisionBody {
        DecisionBody {
            session: SESSION,
            approval,
            request_hash: hash,
            decision,
            decided_at: 0,
        }
    }

    fn last_seq(setup: &Setup) -> u64 {
        setup
            .core
            .borrow()
            .sessions
            .info(&SESSION)
            .expect("info")
            .last_seq
    }

    /// `decision` is refused with `code`, and neither the log nor the agent hears of it.
    fn refused(setup: &Setup, sender: Fingerprint, decision: SignedDecision, code: AppErrorCode) {
        let before = last_seq(setup);
        let result = decide(&setup.core, sender, decision);
        assert_eq!(result.map_err(|(code, _)| code), Err(code));
        assert_eq!(last_seq(setup), before, "a refused decision logs nothing");
        assert!(setup.agent.try_recv().is_err(), "the agent hears nothing");
    }

    #[test]
    fn a_signed_decision_for_the_asked_request_reaches_the_agent_once() {
        let setup = setup();
        let me = setup.device.public().fingerprint();
        let signed = SignedDecision::sign(
            &setup.device,
            body(1, setup.request.request_hash, Decision::AllowOnce),
        );
        assert_eq!(decide(&setup.core, me, signed.clone()), Ok(SESSION));
        assert_eq!(
            setup.agent.try_recv(),
            Ok(Command::Answer {
                agent_request: "req-9".into(),
                decision: Decision::AllowOnce
            })
        );
        let core = setup.core.borrow();
        let open = &core.sessions.state(&SESSION).expect("state").approvals[&1];
        assert_eq!(open.state, ApprovalState::Decided);
        drop(core);
        refused(&setup, me, signed, AppErrorCode::UnknownApproval);
    }

    #[test]
    fn tampered_decisions_are_refused() {
        let setup = setup();
        let me = setup.device.public().fingerprint();
        let hash = setup.request.request_hash;

        let mut wrong_hash = hash;
        wrong_hash[0] ^= 1;
        let signed = SignedDecision::sign(&setup.device, body(1, wrong_hash, Decision::AllowOnce));
        refused(&setup, me, signed, AppErrorCode::HashMismatch);

        let mut forged = SignedDecision::sign(
            &setup.device,
            body(
                1,
                hash,
                Decision::Deny {
                    message: "no".into(),
                },
            ),
        );
        forged.body.decision = Decision::AllowAlways;
        refused(&setup, me, forged, AppErrorCode::BadSignature);

        let stranger = Identity::generate(&mut os::rng());
        let signed = SignedDecision::sign(&stranger, body(1, hash, Decision::AllowOnce));
        refused(
            &setup,
            stranger.public().fingerprint(),
            signed.clone(),
            AppErrorCode::BadSignature,
        );
        // Signed by one device, sent by another.
        refused(&setup, me, signed, AppErrorCode::BadSignature);

        let signed = SignedDecision::sign(&setup.device, body(2, hash, Decision::AllowOnce));
        refused(&setup, me, signed, AppErrorCode::UnknownApproval);

        let mut elsewhere = body(1, hash, Decision::AllowOnce);
        elsewhere.session = SessionId([8; 16]);
        let signed = SignedDecision::sign(&setup.device, elsewhere);
        refused(&setup, me, signed, AppErrorCode::UnknownSession);

        // After all that, the real decision still goes through.
        let signed = SignedDecision::sign(&setup.device, body(1, hash, Decision::AllowOnce));
        assert_eq!(decide(&setup.core, me, signed), Ok(SESSION));
    }

    #[test]
    fn a_device_the_relay_no_longer_allows_is_forgotten_and_its_decisions_refused() {
        let setup = setup();
        let me = setup.device.public().fingerprint();
        let other = Identity::generate(&mut os::rng());
        setup.core.borrow_mut().state.add_device(&other.public(), 0);
        // Listing every paired device forgets nothing.
        let allowed = [me, other.public().fingerprint()];
        assert!(setup.core.borrow_mut().allowed_devices(&allowed).is_empty());
        // The relay names only the other device now: this one was revoked.
        let gone = setup
            .core
            .borrow_mut()
            .allowed_devices(&[other.public().fingerprint()]);
        assert_eq!(gone, vec![me]);
        let signed = SignedDecision::sign(
            &setup.device,
            body(1, setup.request.request_hash, Decision::AllowOnce),
        );
        refused(&setup, me, signed, AppErrorCode::BadSignature);
        // Saved: the next start does not know it either.
        let home = setup.core.borrow().home.clone();
        let saved = crate::daemon::state::MachineState::load(&home).expect("state");
        assert!(!saved.is_paired(&me));
        assert!(saved.is_paired(&other.public().fingerprint()));
    }

    #[test]
    fn a_withdrawn_approval_cannot_be_decided() {
        let setup = setup();
        let me = setup.device.public().fingerprint();
        close(
            &mut setup.core.borrow_mut(),
            SESSION,
            "req-9",
            Close::Withdrawn,
        );
        let signed = SignedDecision::sign(
            &setup.device,
            body(1, setup.request.request_hash, Decision::AllowOnce),
        );
        refused(&setup, me, signed, AppErrorCode::UnknownApproval);
    }
}
