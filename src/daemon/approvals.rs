//! Approvals (DESIGN §5): an agent's ask becomes a numbered request bound by its hash to exactly
//! what was asked; a device's signed decision is checked against it before the agent hears it.
//!
//! Every step is an event in the session's log, so the log is the audit trail (who decided
//! what, from which device, when) and the state machine survives restarts. The approvals' life
//! (requested → delivered → decided → applied, or withdrawn / expired) is the session machine's
//! ([`super::session_machine`]); this module keeps what needs keys and memory: the decision's
//! signature and signer checks, and the whole inputs devices fetch.

use std::collections::BTreeSet;

use muxagent_proto::app::{
    ApprovalId, FetchInput, InputChunk, SessionId, SignedDecision, request_hash,
};
use muxagent_proto::identity::Fingerprint;
use muxagent_proto::limits::{APPROVAL_INPUT_MAX_LEN, INPUT_CHUNK_LEN};

use super::refusal::Refusal;
use super::session_machine::Input;
use super::{Core, Shared};
use crate::limits::DAEMON_WHOLE_INPUTS_MAX_LEN;
use crate::{log, os};

/// Keep `input` of `approval` whole for devices to fetch, if it is short enough and the
/// session's budget has room once closed approvals' inputs are dropped.
pub fn keep_whole(c: &mut Core, id: SessionId, approval: ApprovalId, input: &str) {
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
    let state = c.sessions.state(&id).ok_or(Refusal::UnknownSession(id))?;
    let Some(open) = state.approvals.get(&approval) else {
        return Err(Refusal::ApprovalNotOpen {
            session: id,
            approval,
        });
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
            return Err(Refusal::InputKeptCut {
                session: id,
                approval,
            });
        }
    };
    let total = whole.len() as u64;
    let start = usize::try_from(fetch.offset)
        .ok()
        .filter(|start| *start <= whole.len())
        .ok_or(Refusal::OffsetPastEnd {
            offset: fetch.offset,
            total,
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

/// A device sent `decision`: check it from end to end (is it due and for this request — the
/// machine's checks —, then its signature and signer), then let the session's machine answer
/// the agent and log it. A refused decision changes nothing.
pub fn decide(
    core: &Shared,
    sender: Fingerprint,
    decision: SignedDecision,
) -> Result<SessionId, Refusal> {
    let mut c = core.borrow_mut();
    let body = &decision.body;
    let id = body.session;
    let approval = body.approval;
    c.machine(id)?
        .check_decision(approval, &body.request_hash)?;
    if decision.verify().is_err() {
        return Err(Refusal::BadSignature);
    }
    let signer = decision.device.fingerprint();
    if signer != sender {
        return Err(Refusal::WrongSigner { signer, sender });
    }
    if !c.state.is_paired(&signer) {
        return Err(Refusal::SignerNotPaired(signer));
    }
    let decided = Input::Decided {
        approval,
        request_hash: body.request_hash,
        decision: body.decision.clone(),
        device: signer,
    };
    c.step(id, decided, os::unix_now())?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use std::rc::Rc;

    use muxagent_proto::app::{
        AppErrorCode, ApprovalKind, ApprovalRequest, ApprovalState, Decision, DecisionBody,
        EventKind,
    };
    use muxagent_proto::identity::Identity;
    use smol::channel::Receiver;

    use super::*;
    use crate::daemon::agent::Running;
    use crate::daemon::runtime::{Command, Report};
    use crate::daemon::session_machine::Agent;
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
                machine: Agent {
                    turn_open: true,
                    ..Agent::new(&[])
                },
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
        assert_eq!(result.map_err(|refusal| refusal.code()), Err(code));
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

    /// A decision the agent's full queue cannot take is refused whole: nothing logged, the
    /// approval still open, and it goes through once the agent has room.
    #[test]
    fn a_decision_the_agent_cannot_take_now_changes_nothing() {
        let setup = setup();
        let me = setup.device.public().fingerprint();
        let sender = setup.core.borrow().agents[&SESSION].commands.clone();
        while sender.try_send(Command::Interrupt).is_ok() {}
        let signed = SignedDecision::sign(
            &setup.device,
            body(1, setup.request.request_hash, Decision::AllowOnce),
        );
        let before = last_seq(&setup);
        let result = decide(&setup.core, me, signed.clone());
        assert_eq!(result, Err(Refusal::Busy));
        assert_eq!(last_seq(&setup), before, "nothing logged");
        let state = setup.core.borrow().sessions.state(&SESSION).cloned();
        assert_eq!(
            state.expect("state").approvals[&1].state,
            ApprovalState::Requested
        );
        while setup.agent.try_recv().is_ok() {}
        assert_eq!(decide(&setup.core, me, signed), Ok(SESSION));
    }

    /// The auto-deny policy without waiting: an ask sets a deadline the shell is asked to arm,
    /// and a tick at that time denies it (the agent hears why) and logs it expired.
    #[test]
    fn an_ask_expires_on_the_tick_at_its_deadline() {
        let setup = setup();
        let mut c = setup.core.borrow_mut();
        c.state.auto_deny_after_minutes = Some(2);
        let ask = Input::Report(Report::Ask(crate::daemon::runtime::Ask {
            agent_request: "req-10".into(),
            kind: ApprovalKind::Tool,
            tool: "Bash".into(),
            input: "{}".into(),
            plan: None,
        }));
        let stepped = c.step(SESSION, ask, 1_000).expect("ask");
        assert_eq!(stepped.timers, [1_120]);
        assert!(
            c.step(SESSION, Input::Tick, 1_119)
                .expect("tick")
                .timers
                .is_empty()
        );
        assert!(
            c.sessions
                .state(&SESSION)
                .expect("state")
                .approvals
                .contains_key(&2)
        );
        c.step(SESSION, Input::Tick, 1_120).expect("tick");
        assert_eq!(
            setup.agent.try_recv(),
            Ok(Command::Answer {
                agent_request: "req-10".into(),
                decision: Decision::Deny {
                    message: "nobody decided within 2 minutes (this machine's policy)".into()
                }
            })
        );
        let approvals = &c.sessions.state(&SESSION).expect("state").approvals;
        assert!(!approvals.contains_key(&2), "expired");
        assert!(approvals.contains_key(&1), "the older one had no deadline");
    }

    #[test]
    fn a_withdrawn_approval_cannot_be_decided() {
        let setup = setup();
        let me = setup.device.public().fingerprint();
        let withdrawn = Input::Report(Report::Withdrawn {
            agent_request: "req-9".into(),
        });
        setup
            .core
            .borrow_mut()
            .step(SESSION, withdrawn, 0)
            .expect("withdrawn");
        let signed = SignedDecision::sign(
            &setup.device,
            body(1, setup.request.request_hash, Decision::AllowOnce),
        );
        refused(&setup, me, signed, AppErrorCode::UnknownApproval);
    }
}
