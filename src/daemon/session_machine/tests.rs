//! The session machine with no process, no log file and no clock: a session is its list of
//! emitted events, and after every step the fold of that list (what a restart rebuilds) must be
//! the machine's live state.

use muxagent_proto::app::{EventKind, Usage};
use proptest::prelude::*;

use super::*;

const ID: SessionId = SessionId([9; 16]);
const DEVICE: Fingerprint = Fingerprint([4; 32]);
const MODES: &[&str] = &["default", "plan"];

/// A session as the daemon keeps it: its log (events only) and its running agent; every step
/// builds the machine from them, as `Core::step` does.
struct Session {
    log: Vec<EventKind>,
    agent: Option<Agent>,
    policy: Policy,
    now: u64,
}

fn started() -> EventKind {
    EventKind::Started {
        runtime: "claude".try_into().expect("name"),
        args: vec!["--x".into()],
        cwd: "/".into(),
        title: "t".into(),
        device: DEVICE,
    }
}

/// The fold of a log: what the store holds, and what a restart rebuilds.
fn folded(log: &[EventKind]) -> (SessionStatus, Usage, SessionState) {
    let mut status = SessionStatus::Idle;
    let mut usage = Usage::default();
    let mut state = SessionState::default();
    for kind in log {
        fold(&mut status, &mut usage, &mut state, kind);
    }
    (status, usage, state)
}

impl Session {
    /// A session whose agent runs, with a turn open.
    fn running(policy: Policy) -> Self {
        let mut session = Session {
            log: vec![started()],
            agent: None,
            policy,
            now: 1_000,
        };
        session
            .step(Input::Launched {
                modes: MODES,
                prompt: Some("go".into()),
                turn_open: false,
            })
            .expect("launched");
        session
    }

    /// The same log after a restart: no agent.
    fn restarted(&self) -> Self {
        Session {
            log: self.log.clone(),
            agent: None,
            policy: self.policy,
            now: self.now,
        }
    }

    fn step(&mut self, input: Input) -> Result<Vec<Effect>, Refusal> {
        let (status, usage, state) = folded(&self.log);
        let mut machine = Machine::new(ID, status, usage, &state, self.agent.clone(), self.policy);
        let result = machine.step(input, self.now);
        let live = (machine.status(), machine.usage(), machine.state().clone());
        match &result {
            Ok(effects) => {
                self.log
                    .extend(effects.iter().filter_map(|effect| match effect {
                        Effect::Append(kind) => Some(kind.clone()),
                        _ => None,
                    }));
                self.agent = machine.into_agent();
                assert_eq!(folded(&self.log), live, "the log rebuilds the live state");
            }
            Err(_) => {
                assert_eq!(
                    live,
                    (status, usage, state.clone()),
                    "a refusal changes nothing"
                );
                assert_eq!(machine.into_agent(), self.agent, "nor the agent");
            }
        }
        result
    }

    fn state(&self) -> SessionState {
        folded(&self.log).2
    }

    fn status(&self) -> SessionStatus {
        folded(&self.log).0
    }

    fn ask(&mut self, agent_request: &str) -> ApprovalId {
        let effects = self
            .step(Input::Report(Report::Ask(ask(agent_request))))
            .expect("ask");
        effects
            .iter()
            .find_map(|effect| match effect {
                Effect::Append(EventKind::ApprovalRequested(request)) => Some(request.approval),
                _ => None,
            })
            .expect("an approval")
    }

    fn decision(&self, approval: ApprovalId) -> Input {
        let hash = self
            .state()
            .approvals
            .get(&approval)
            .map(|open| open.request.request_hash)
            .unwrap_or([0; 32]);
        Input::Decided {
            approval,
            request_hash: hash,
            decision: Decision::AllowOnce,
            device: DEVICE,
        }
    }

    fn decide(&mut self, approval: ApprovalId) -> Result<Vec<Effect>, Refusal> {
        self.step(self.decision(approval))
    }
}

fn ask(agent_request: &str) -> Ask {
    Ask {
        agent_request: agent_request.into(),
        kind: ApprovalKind::Tool,
        tool: "Bash".into(),
        input: format!(r#"{{"command":"{agent_request}"}}"#),
        plan: None,
    }
}

fn withdrawn(agent_request: &str) -> Input {
    Input::Report(Report::Withdrawn {
        agent_request: agent_request.into(),
    })
}

fn applied(agent_request: &str) -> Input {
    Input::Report(Report::Applied {
        agent_request: agent_request.into(),
    })
}

fn turn_finished() -> Input {
    Input::Report(Report::Event(EventKind::TurnFinished {
        reason: "end".into(),
    }))
}

fn closed(approval: ApprovalId, state: ApprovalState) -> Effect {
    Effect::Append(EventKind::ApprovalState { approval, state })
}

fn status(status: SessionStatus) -> Effect {
    Effect::Append(EventKind::Status(status))
}

const FIVE_MINUTES: Policy = Policy {
    auto_deny_after_minutes: Some(5),
};

#[test]
fn an_ask_is_bound_to_its_input_and_the_session_waits() {
    let mut session = Session::running(Policy::default());
    let effects = session
        .step(Input::Report(Report::Ask(ask("req-1"))))
        .expect("ask");
    let hash = request_hash(&ID, "req-1", "Bash", r#"{"command":"req-1"}"#);
    assert_eq!(
        effects,
        [
            Effect::Append(EventKind::ApprovalRequested(ApprovalRequest {
                approval: 1,
                kind: ApprovalKind::Tool,
                agent_request: "req-1".into(),
                tool: "Bash".into(),
                input: r#"{"command":"req-1"}"#.into(),
                request_hash: hash,
            })),
            status(SessionStatus::WaitingApproval),
        ]
    );
    assert_eq!(session.ask("req-2"), 2);
    // Delivered once, from requested only.
    let delivered = session.step(Input::Delivered(1)).expect("delivered");
    assert_eq!(delivered, [closed(1, ApprovalState::Delivered)]);
    assert_eq!(session.step(Input::Delivered(1)), Ok(vec![]));
    assert_eq!(session.step(Input::Delivered(7)), Ok(vec![]));
}

#[test]
fn an_undecided_approval_expires_when_its_time_is_up_and_not_before() {
    let mut session = Session::running(FIVE_MINUTES);
    let effects = session
        .step(Input::Report(Report::Ask(ask("req-1"))))
        .expect("ask");
    assert_eq!(effects.last(), Some(&Effect::Timer { at: 1_300 }));

    session.now = 1_299;
    assert_eq!(session.step(Input::Tick), Ok(vec![]), "not yet");
    session.now = 1_300;
    let expired = session.step(Input::Tick).expect("tick");
    assert_eq!(
        expired,
        [
            Effect::TellIfPossible(Command::Answer {
                agent_request: "req-1".into(),
                decision: Decision::Deny {
                    message: "nobody decided within 5 minutes (this machine's policy)".into(),
                },
            }),
            closed(1, ApprovalState::Expired),
            status(SessionStatus::Running),
        ]
    );
    assert!(session.state().approvals.is_empty());
    // Expired once; a late decision is refused.
    assert_eq!(session.step(Input::Tick), Ok(vec![]));
    assert_eq!(
        session.decide(1),
        Err(Refusal::NoLongerPending {
            session: ID,
            approval: 1
        })
    );
}

#[test]
fn a_decided_approval_does_not_expire_and_is_applied_once() {
    let mut session = Session::running(FIVE_MINUTES);
    let approval = session.ask("req-1");
    let decided = session.decide(approval).expect("decided");
    assert_eq!(
        decided,
        [
            Effect::Tell(Command::Answer {
                agent_request: "req-1".into(),
                decision: Decision::AllowOnce,
            }),
            Effect::Append(EventKind::ApprovalResolved {
                approval,
                decision: Decision::AllowOnce,
                device: DEVICE,
            }),
            status(SessionStatus::Running),
        ]
    );
    session.now += 3_600;
    assert_eq!(session.step(Input::Tick), Ok(vec![]));
    assert_eq!(
        session.decide(approval),
        Err(Refusal::AlreadyDecided {
            session: ID,
            approval
        })
    );
    let applied_now = session.step(applied("req-1")).expect("applied");
    assert_eq!(applied_now, [closed(approval, ApprovalState::Applied)]);
    assert_eq!(session.step(applied("req-1")), Ok(vec![]));
}

#[test]
fn an_approval_withdrawn_after_its_decision_closes_as_withdrawn() {
    let mut session = Session::running(Policy::default());
    let approval = session.ask("req-1");
    session.decide(approval).expect("decided");
    let effects = session.step(withdrawn("req-1")).expect("withdrawn");
    assert_eq!(effects, [closed(approval, ApprovalState::Withdrawn)]);
    // Its answer can no longer be applied, nor decided again.
    assert_eq!(session.step(applied("req-1")), Ok(vec![]));
    assert_eq!(
        session.decide(approval),
        Err(Refusal::NoLongerPending {
            session: ID,
            approval
        })
    );
}

#[test]
fn a_decision_after_the_withdrawal_is_refused_and_the_agent_hears_nothing() {
    let mut session = Session::running(Policy::default());
    let approval = session.ask("req-1");
    let effects = session.step(withdrawn("req-1")).expect("withdrawn");
    assert_eq!(
        effects,
        [
            closed(approval, ApprovalState::Withdrawn),
            status(SessionStatus::Running)
        ]
    );
    assert_eq!(
        session.decide(approval),
        Err(Refusal::NoLongerPending {
            session: ID,
            approval
        })
    );
    // Applied without a decision (a runtime's confusion) changes nothing either.
    let other = session.ask("req-2");
    assert_eq!(session.step(applied("req-2")), Ok(vec![]));
    assert!(session.state().approvals.contains_key(&other));
}

#[test]
fn decisions_that_are_not_due_are_refused() {
    let mut session = Session::running(Policy::default());
    let approval = session.ask("req-1");
    let mut wrong = session.decision(approval);
    if let Input::Decided { request_hash, .. } = &mut wrong {
        request_hash[0] ^= 1;
    }
    assert_eq!(
        session.step(wrong),
        Err(Refusal::HashMismatch {
            session: ID,
            approval
        })
    );
    for never in [0, 2] {
        assert_eq!(
            session.decide(never),
            Err(Refusal::NoSuchApproval {
                session: ID,
                approval: never
            })
        );
    }
    // Without its agent an approval is void.
    let mut gone = session.restarted();
    assert_eq!(gone.decide(approval), Err(Refusal::ApprovalsVoid(ID)));
}

#[test]
fn a_turn_that_ends_while_an_approval_waits_goes_idle_when_it_closes() {
    let mut session = Session::running(Policy::default());
    let approval = session.ask("req-1");
    let effects = session.step(turn_finished()).expect("turn");
    assert_eq!(effects.len(), 1, "still waiting: {effects:?}");
    assert_eq!(session.status(), SessionStatus::WaitingApproval);
    let decided = session.decide(approval).expect("decided");
    assert_eq!(decided.last(), Some(&status(SessionStatus::Idle)));
    // A prompt opens a turn again.
    let prompted = session.step(Input::Prompt("more".into())).expect("prompt");
    assert_eq!(
        prompted,
        [
            Effect::Tell(Command::Prompt("more".into())),
            Effect::Append(EventKind::Prompt {
                text: "more".into()
            }),
            status(SessionStatus::Running),
        ]
    );
}

#[test]
fn too_many_open_approvals_deny_the_next_ask() {
    let mut session = Session::running(Policy::default());
    for n in 0..MAX_PENDING_APPROVALS {
        session.ask(&format!("req-{n}"));
    }
    let effects = session
        .step(Input::Report(Report::Ask(ask("one-more"))))
        .expect("ask");
    assert!(matches!(
        &effects[..],
        [
            Effect::TellIfPossible(Command::Answer { agent_request, decision: Decision::Deny { .. } }),
            Effect::Append(EventKind::Error { .. }),
        ] if agent_request == "one-more"
    ));
    assert_eq!(session.state().approvals.len(), MAX_PENDING_APPROVALS);
}

#[test]
fn a_long_input_is_shown_cut_and_kept_whole() {
    let mut session = Session::running(Policy::default());
    let mut long = ask("req-1");
    long.input = "x".repeat(EVENT_FIELD_MAX_LEN + 1_000);
    let effects = session
        .step(Input::Report(Report::Ask(long.clone())))
        .expect("ask");
    assert_eq!(
        effects[0],
        Effect::KeepWhole {
            approval: 1,
            input: long.input.clone()
        }
    );
    let open = &session.state().approvals[&1];
    assert!(open.request.input.len() < long.input.len());
    assert_eq!(
        open.request.request_hash,
        request_hash(&ID, "req-1", "Bash", &long.input),
        "the hash covers the whole input"
    );
}

#[test]
fn commands_for_an_agent_that_is_not_running_or_a_mode_it_does_not_know_are_refused() {
    let mut session = Session::running(Policy::default());
    assert_eq!(
        session.step(Input::SetMode("yolo".into())),
        Err(Refusal::UnknownMode {
            mode: "yolo".into(),
            runtime: None,
            modes: MODES
        })
    );
    assert_eq!(
        session.step(Input::SetMode("plan".into())),
        Ok(vec![Effect::Tell(Command::SetMode("plan".into()))])
    );
    let mut gone = session.restarted();
    for input in [
        Input::Prompt("hi".into()),
        Input::Interrupt,
        Input::SetMode("plan".into()),
    ] {
        assert_eq!(gone.step(input), Err(Refusal::NotRunning(ID)));
    }
}

#[test]
fn usage_adds_up_and_the_agent_session_is_logged_once() {
    let mut session = Session::running(Policy::default());
    let turn = Usage {
        input_tokens: 10,
        output_tokens: 5,
        cached_tokens: 1,
        cost_usd_micros: Some(7),
    };
    session
        .step(Input::Report(Report::TurnUsage(turn)))
        .expect("usage");
    session
        .step(Input::Report(Report::TurnUsage(turn)))
        .expect("usage");
    assert_eq!(folded(&session.log).1.input_tokens, 20);
    assert_eq!(folded(&session.log).1.cost_usd_micros, Some(14));
    let id = || Input::Report(Report::AgentSession("abc".into()));
    assert_eq!(session.step(id()).expect("first").len(), 1);
    assert_eq!(session.step(id()), Ok(vec![]));
}

/// The states a session can be in when the daemon stops: each rebuilt from its log alone, then
/// closed as an orphan: every open approval withdrawn, none decidable, the session failed.
#[test]
fn a_restart_rebuilds_every_state_and_closes_its_approvals() {
    type Setup = fn(&mut Session);
    let setups: [(&str, Setup); 7] = [
        ("running, nothing open", |_| {}),
        ("idle", |s| {
            s.step(turn_finished()).expect("turn");
        }),
        ("requested", |s| {
            s.ask("a");
        }),
        ("delivered", |s| {
            let approval = s.ask("a");
            s.step(Input::Delivered(approval)).expect("delivered");
        }),
        ("decided, not applied", |s| {
            let approval = s.ask("a");
            s.decide(approval).expect("decided");
        }),
        ("one decided, one waiting, turn over", |s| {
            let first = s.ask("a");
            s.ask("b");
            s.decide(first).expect("decided");
            s.step(turn_finished()).expect("turn");
        }),
        ("expired and withdrawn ones closed, one open", |s| {
            s.ask("a");
            s.now += 301;
            s.step(Input::Tick).expect("tick");
            s.ask("b");
            s.step(withdrawn("b")).expect("withdrawn");
            s.ask("c");
        }),
    ];
    for (name, setup) in setups {
        let mut live = Session::running(FIVE_MINUTES);
        live.step(Input::Report(Report::AgentSession("resume-me".into())))
            .expect("agent session");
        setup(&mut live);
        let open: Vec<ApprovalId> = live.state().approvals.keys().copied().collect();
        let mut restarted = live.restarted();
        assert_eq!(folded(&restarted.log), folded(&live.log), "{name}");

        let effects = restarted.step(Input::Orphaned).expect("orphaned");
        let withdrawn: Vec<Effect> = open
            .iter()
            .map(|approval| closed(*approval, ApprovalState::Withdrawn))
            .collect();
        assert_eq!(effects[..open.len()], withdrawn[..], "{name}");
        assert!(
            matches!(&effects[open.len()], Effect::Append(EventKind::Error { message }) if message.contains("resumes")),
            "{name}: {effects:?}"
        );
        assert_eq!(
            effects[open.len() + 1..],
            [status(SessionStatus::Error)],
            "{name}"
        );
        assert!(restarted.state().approvals.is_empty(), "{name}");
        for approval in open {
            assert_eq!(
                restarted.decide(approval),
                Err(Refusal::NoLongerPending {
                    session: ID,
                    approval
                }),
                "{name}"
            );
        }
        restarted.now += 3_600;
        assert_eq!(restarted.step(Input::Tick), Ok(vec![]), "{name}");
    }
}

#[test]
fn an_agent_that_exits_withdraws_its_approvals_and_says_how_it_ended() {
    for (code, stopped, end) in [
        (Some(0), false, SessionStatus::Done),
        (Some(1), false, SessionStatus::Error),
        (Some(0), true, SessionStatus::Stopped),
    ] {
        let mut session = Session::running(Policy::default());
        let approval = session.ask("a");
        let effects = session
            .step(Input::Exited {
                code,
                signal: None,
                stopped,
            })
            .expect("exited");
        assert_eq!(
            effects,
            [
                closed(approval, ApprovalState::Withdrawn),
                Effect::Append(EventKind::Exited { code, signal: None }),
                status(end),
            ]
        );
        assert!(session.agent.is_none());
    }
}

/// One random input, over few agent request ids and approval numbers so that they collide.
#[derive(Clone, Debug)]
enum Op {
    Ask(u8),
    Withdraw(u8),
    Apply(u8),
    Decide { approval: u64, right_hash: bool },
    Deliver(u64),
    TurnFinished,
    Prompt,
    Wait(u16),
    Exit,
    Launch,
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..4).prop_map(Op::Ask),
        2 => (0u8..4).prop_map(Op::Withdraw),
        2 => (0u8..4).prop_map(Op::Apply),
        4 => (0u64..7, proptest::bool::weighted(0.9))
            .prop_map(|(approval, right_hash)| Op::Decide { approval, right_hash }),
        2 => (0u64..7).prop_map(Op::Deliver),
        1 => Just(Op::TurnFinished),
        1 => Just(Op::Prompt),
        2 => (0u16..400).prop_map(Op::Wait),
        1 => Just(Op::Exit),
        1 => Just(Op::Launch),
        1 => Just(Op::Restart),
    ]
}

/// Every approval of a log: at most one decision, never after it closed, and closed once.
fn check_approvals(log: &[EventKind]) {
    let mut decided = BTreeMap::new();
    let mut closed: BTreeMap<ApprovalId, ApprovalState> = BTreeMap::new();
    let mut requested = Vec::new();
    for kind in log {
        match kind {
            EventKind::ApprovalRequested(request) => {
                assert!(
                    requested.last().is_none_or(|last| *last < request.approval),
                    "approval numbers grow: {log:?}"
                );
                requested.push(request.approval);
            }
            EventKind::ApprovalResolved { approval, .. } => {
                assert!(requested.contains(approval), "decided unasked: {log:?}");
                assert!(
                    !closed.contains_key(approval),
                    "decided after closing: {log:?}"
                );
                assert!(
                    decided.insert(*approval, ()).is_none(),
                    "decided twice: {log:?}"
                );
            }
            EventKind::ApprovalState { approval, state } => match state {
                ApprovalState::Applied | ApprovalState::Withdrawn | ApprovalState::Expired => {
                    if *state == ApprovalState::Applied {
                        assert!(decided.contains_key(approval), "applied undecided: {log:?}");
                    }
                    if *state == ApprovalState::Expired {
                        assert!(!decided.contains_key(approval), "expired decided: {log:?}");
                    }
                    assert!(
                        closed.insert(*approval, *state).is_none(),
                        "closed twice: {log:?}"
                    );
                }
                _ => assert!(!closed.contains_key(approval), "reopened: {log:?}"),
            },
            _ => {}
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Any sequence of inputs: the log always rebuilds the live state (checked by every
    /// `Session::step`), every approval is decided at most once and closed at most once, the
    /// agent hears at most one answer per ask, and a session waits only while an approval does.
    #[test]
    fn any_input_sequence_keeps_the_machines_invariants(ops in proptest::collection::vec(op(), 1..60)) {
        let mut session = Session::running(FIVE_MINUTES);
        let mut answers: BTreeMap<String, usize> = BTreeMap::new();
        for op in ops {
            let running = session.agent.is_some();
            let input = match op {
                // A runtime reports only while its process runs.
                Op::Ask(_) | Op::Withdraw(_) | Op::Apply(_) | Op::TurnFinished if !running => {
                    Input::Tick
                }
                Op::Ask(k) => Input::Report(Report::Ask(ask(&format!("r{k}")))),
                Op::Withdraw(k) => withdrawn(&format!("r{k}")),
                Op::Apply(k) => applied(&format!("r{k}")),
                Op::Decide { approval, right_hash } => {
                    let mut decision = session.decision(approval);
                    if let (false, Input::Decided { request_hash, .. }) = (right_hash, &mut decision) {
                        request_hash[0] ^= 1;
                    }
                    decision
                }
                Op::Deliver(approval) => Input::Delivered(approval),
                Op::TurnFinished => turn_finished(),
                Op::Prompt => Input::Prompt("p".into()),
                Op::Wait(secs) => {
                    session.now += u64::from(secs);
                    Input::Tick
                }
                Op::Exit => Input::Exited { code: Some(0), signal: None, stopped: false },
                // The daemon launches a process only for a session without one.
                Op::Launch if session.agent.is_none() => {
                    Input::Launched { modes: MODES, prompt: None, turn_open: false }
                }
                Op::Launch => Input::Tick,
                Op::Restart => {
                    session = session.restarted();
                    Input::Orphaned
                }
            };
            let open_before: BTreeMap<ApprovalId, String> = session
                .state()
                .approvals
                .iter()
                .map(|(approval, open)| (*approval, open.request.agent_request.clone()))
                .collect();
            if let Ok(effects) = session.step(input) {
                for effect in effects {
                    if let Effect::Tell(Command::Answer { agent_request, .. })
                    | Effect::TellIfPossible(Command::Answer { agent_request, .. }) = effect
                    {
                        // An answer is for an ask that is open, or the one denied at once.
                        let known = open_before.values().any(|open| *open == agent_request);
                        if known {
                            *answers.entry(agent_request).or_default() += 1;
                        }
                    }
                }
            }
            check_approvals(&session.log);
            let (status, _, state) = folded(&session.log);
            // (A prompt while an approval waits shows the session running, as it always did.)
            if waiting(&state) == 0 {
                prop_assert_ne!(status, SessionStatus::WaitingApproval);
            }
            if session.agent.is_none() {
                prop_assert!(state.approvals.is_empty(), "no approvals without an agent");
            }
            // Answers per agent request id never outnumber its asks.
            for (agent_request, count) in &answers {
                let asks = session.log.iter().filter(|kind| matches!(
                    kind,
                    EventKind::ApprovalRequested(request) if request.agent_request == *agent_request
                )).count();
                prop_assert!(*count <= asks, "{} answers to {} asks of {}", count, asks, agent_request);
            }
        }
    }
}
