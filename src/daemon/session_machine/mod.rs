//! A session's state machine, sans IO: its status, its open approvals and their life
//! (requested → delivered → decided → applied, or withdrawn / expired), its usage.
//!
//! It takes [`Input`]s — a report of the agent's runtime, a device's request, a decision the
//! daemon verified, a tick of the clock — with the current time given, and returns
//! [`Effect`]s: events to append to the session's log, commands for the agent, inputs to keep
//! whole, timers to set. It reads no clock, touches no file or process and spawns nothing; the
//! daemon's shell (`Core::step`, `agent::step`) runs its effects, and events reach devices
//! from the log (after the fsync covering them), never from here.
//!
//! What the log says of a session is folded by one function, [`fold`], which the session store
//! uses too: the machine decides on exactly what a restart would rebuild. Every event it emits
//! is folded into its own state at once, so a step's later decisions see its earlier events.
//! What only a running daemon knows — whether the agent's turn is open, its permission modes,
//! when open approvals expire — is [`Agent`], gone with the process (whose approvals are
//! withdrawn then).

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::limits::{EVENT_FIELD_MAX_LEN, MAX_PENDING_APPROVALS};
use muxagent_proto::app::{
    ApprovalId, ApprovalKind, ApprovalRequest, ApprovalState, Decision, EventKind, SessionId,
    SessionStatus, Usage, request_hash,
};
use muxagent_proto::identity::Fingerprint;

use super::refusal::Refusal;
use super::runtime::{Ask, Command, Report};
use super::sessions::SessionState;

mod fit;
mod fold;
#[cfg(test)]
mod tests;

pub use fit::{add_usage, fit};
use fold::{changes_state, fold_life, fold_state};
pub use fold::{fold, waiting};

/// Something that happened to a session, for its machine.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// Its agent process started, with these permission modes. `prompt`: the first prompt,
    /// sent with it; `turn_open`: the agent works without a prompt (a plain command).
    Launched {
        /// The modes its runtime accepts.
        modes: &'static [&'static str],
        /// The first prompt, if any.
        prompt: Option<String>,
        /// A turn runs from the start.
        turn_open: bool,
    },
    /// Its agent process could not be started (why, for people).
    LaunchFailed(String),
    /// Its runtime reported something.
    Report(Report),
    /// A device's prompt for the running agent.
    Prompt(String),
    /// A device asks to interrupt the agent's turn.
    Interrupt,
    /// A device asks for another permission mode.
    SetMode(String),
    /// A device's decision, its signature and signer already verified
    /// (`approvals::decide`); the machine checks it is still due.
    Decided {
        /// The approval.
        approval: ApprovalId,
        /// Its request hash as the device signed it.
        request_hash: [u8; 32],
        /// What the person decided.
        decision: Decision,
        /// The device that signed it.
        device: Fingerprint,
    },
    /// An approval's request was queued to a connection of an online device.
    Delivered(ApprovalId),
    /// The clock: approvals whose time is up expire.
    Tick,
    /// The agent process ended (`stopped`: a device asked for it).
    Exited {
        /// Its exit code.
        code: Option<i32>,
        /// The signal that ended it.
        signal: Option<i32>,
        /// A device stopped it.
        stopped: bool,
    },
    /// The daemon starts and finds the session unfinished: its agent died with the last one.
    Orphaned,
    /// The daemon stops: its agent is stopped with it.
    Shutdown,
}

/// What the shell does for a step, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Append this event to the session's log (devices get it once it is durable).
    Append(EventKind),
    /// Hand the agent this command. If its queue is full the whole step is void (nothing
    /// after it runs, and the device hears [`Refusal::Busy`]); so it is always a step's first
    /// effect.
    Tell(Command),
    /// Hand the agent this command if it can take it; the log says what happened either way.
    TellIfPossible(Command),
    /// Keep this approval's input whole for devices to fetch (its event carries it cut).
    KeepWhole {
        /// The approval.
        approval: ApprovalId,
        /// Its whole input.
        input: String,
    },
    /// Give the machine an [`Input::Tick`] at this time (unix seconds).
    Timer {
        /// When.
        at: u64,
    },
}

/// The daemon's policy, for the machine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Deny approvals nobody decided after this many minutes (`None` or 0: never).
    pub auto_deny_after_minutes: Option<u32>,
}

/// When an open approval expires, and the policy that set it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline {
    /// Unix seconds.
    pub at: u64,
    /// The policy's minutes, for the message.
    pub minutes: u32,
}

/// What the machine knows of a running agent beyond the log; gone with its process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Agent {
    /// The modes its runtime accepts.
    pub modes: &'static [&'static str],
    /// A prompt was sent and its turn has not finished: where a session goes when its last
    /// approval closes (running, or idle when the turn ended while the approval waited).
    pub turn_open: bool,
    /// When open approvals expire under the auto-deny policy.
    pub deadlines: BTreeMap<ApprovalId, Deadline>,
}

impl Agent {
    /// An agent that has not started a turn yet, with its runtime's modes.
    pub fn new(modes: &'static [&'static str]) -> Self {
        Agent {
            modes,
            turn_open: false,
            deadlines: BTreeMap::new(),
        }
    }
}

/// One session's machine: what its log says (borrowed until the machine emits an event that
/// changes it) and its running agent.
#[derive(Clone, Debug)]
pub struct Machine<'a> {
    id: SessionId,
    status: SessionStatus,
    usage: Usage,
    state: Cow<'a, SessionState>,
    agent: Option<Agent>,
    policy: Policy,
    effects: Vec<Effect>,
}

impl<'a> Machine<'a> {
    /// The machine of session `id`, from what its log says (`status`, `usage`, `state`: the
    /// store's fold) and its running agent, if any.
    pub fn new(
        id: SessionId,
        status: SessionStatus,
        usage: Usage,
        state: &'a SessionState,
        agent: Option<Agent>,
        policy: Policy,
    ) -> Self {
        Machine {
            id,
            status,
            usage,
            state: Cow::Borrowed(state),
            agent,
            policy,
            effects: Vec::new(),
        }
    }

    /// The session's status.
    #[cfg(test)]
    pub fn status(&self) -> SessionStatus {
        self.status
    }

    /// Its usage so far.
    #[cfg(test)]
    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// What its log says beyond status and usage.
    #[cfg(test)]
    pub fn state(&self) -> &SessionState {
        &self.state
    }

    /// The running agent, for the shell to keep until the next step.
    pub fn into_agent(self) -> Option<Agent> {
        self.agent
    }

    /// Whether a decision for `approval` with `hash` is due: the approval is open, undecided
    /// and the decision is for its request. Checked before the signature, so a device hears
    /// about a stale approval first.
    pub fn check_decision(&self, approval: ApprovalId, hash: &[u8; 32]) -> Result<(), Refusal> {
        let session = self.id;
        let Some(open) = self.state.approvals.get(&approval) else {
            return Err(if approval == 0 || approval > self.state.last_approval {
                Refusal::NoSuchApproval { session, approval }
            } else {
                Refusal::NoLongerPending { session, approval }
            });
        };
        if open.state == ApprovalState::Decided {
            return Err(Refusal::AlreadyDecided { session, approval });
        }
        if *hash != open.request.request_hash {
            return Err(Refusal::HashMismatch { session, approval });
        }
        Ok(())
    }

    /// Take one input at time `now` (unix seconds). Returns what the shell must do, in order;
    /// a refused input changes nothing and has no effect.
    pub fn step(&mut self, input: Input, now: u64) -> Result<Vec<Effect>, Refusal> {
        // Every refusal is decided before anything changes (or is emitted).
        match self.take(input, now) {
            Ok(()) => Ok(std::mem::take(&mut self.effects)),
            Err(refusal) => {
                debug_assert!(self.effects.is_empty(), "a refused input emitted effects");
                self.effects.clear();
                Err(refusal)
            }
        }
    }

    fn take(&mut self, input: Input, now: u64) -> Result<(), Refusal> {
        match input {
            Input::Launched {
                modes,
                prompt,
                turn_open,
            } => {
                self.agent = Some(Agent {
                    turn_open: turn_open || prompt.is_some(),
                    ..Agent::new(modes)
                });
                self.set_status(SessionStatus::Running);
                if let Some(text) = prompt {
                    // The agent's queue is new and empty: this reaches it.
                    self.effects
                        .push(Effect::TellIfPossible(Command::Prompt(text.clone())));
                    self.emit(EventKind::Prompt { text });
                }
            }
            Input::LaunchFailed(message) => {
                self.agent = None;
                self.emit(EventKind::Error { message });
                self.emit(EventKind::Status(SessionStatus::Error));
            }
            Input::Report(report) => self.report(report, now),
            Input::Prompt(text) => {
                let agent = self.running()?;
                agent.turn_open = true;
                self.effects
                    .push(Effect::Tell(Command::Prompt(text.clone())));
                self.emit(EventKind::Prompt { text });
                self.set_status(SessionStatus::Running);
            }
            Input::Interrupt => {
                self.running()?;
                self.effects.push(Effect::Tell(Command::Interrupt));
            }
            Input::SetMode(mode) => {
                let agent = self.running()?;
                if !agent.modes.contains(&mode.as_str()) {
                    return Err(Refusal::UnknownMode {
                        mode,
                        runtime: None,
                        modes: agent.modes,
                    });
                }
                self.effects.push(Effect::Tell(Command::SetMode(mode)));
            }
            Input::Decided {
                approval,
                request_hash,
                decision,
                device,
            } => {
                self.check_decision(approval, &request_hash)?;
                let Some(agent) = &mut self.agent else {
                    return Err(Refusal::ApprovalsVoid(self.id));
                };
                agent.deadlines.remove(&approval);
                let agent_request = self.state.approvals[&approval]
                    .request
                    .agent_request
                    .clone();
                self.effects.push(Effect::Tell(Command::Answer {
                    agent_request,
                    decision: decision.clone(),
                }));
                self.emit(EventKind::ApprovalResolved {
                    approval,
                    decision,
                    device,
                });
                self.after_close();
            }
            Input::Delivered(approval) => {
                let requested = self
                    .state
                    .approvals
                    .get(&approval)
                    .is_some_and(|open| open.state == ApprovalState::Requested);
                if requested {
                    self.emit(EventKind::ApprovalState {
                        approval,
                        state: ApprovalState::Delivered,
                    });
                }
            }
            Input::Tick => self.expire(now),
            Input::Exited {
                code,
                signal,
                stopped,
            } => {
                self.agent = None;
                self.withdraw_all();
                let status = if stopped {
                    SessionStatus::Stopped
                } else if code == Some(0) {
                    SessionStatus::Done
                } else {
                    SessionStatus::Error
                };
                self.emit(EventKind::Exited { code, signal });
                self.emit(EventKind::Status(status));
            }
            Input::Orphaned => {
                self.agent = None;
                self.withdraw_all();
                let message = if self.state.agent_session.is_some() {
                    "the daemon stopped while this session ran; its agent is gone — a new prompt resumes its conversation"
                } else {
                    "the daemon stopped while this session ran; its process is gone"
                };
                self.emit(EventKind::Error {
                    message: message.into(),
                });
                self.emit(EventKind::Status(SessionStatus::Error));
            }
            Input::Shutdown => {
                self.agent = None;
                self.withdraw_all();
                self.emit(EventKind::Error {
                    message: "the daemon was stopped".into(),
                });
                self.emit(EventKind::Status(SessionStatus::Stopped));
            }
        }
        Ok(())
    }

    fn report(&mut self, report: Report, now: u64) {
        match report {
            Report::Event(kind) => {
                let turn_over = matches!(kind, EventKind::TurnFinished { .. });
                self.emit(fit(kind));
                if turn_over {
                    if let Some(agent) = &mut self.agent {
                        agent.turn_open = false;
                    }
                    if waiting(&self.state) == 0 {
                        self.set_status(SessionStatus::Idle);
                    }
                }
            }
            Report::Ask(ask) => self.ask(ask, now),
            Report::Withdrawn { agent_request } => self.close(&agent_request, false),
            Report::Applied { agent_request } => self.close(&agent_request, true),
            Report::TurnUsage(delta) => {
                let total = add_usage(self.usage, delta);
                self.emit(EventKind::Usage(total));
            }
            Report::AgentSession(agent_session) => {
                if self.state.agent_session.as_deref() != Some(agent_session.as_str()) {
                    self.emit(EventKind::AgentSession { id: agent_session });
                }
            }
        }
    }

    /// A new ask: an approval bound by its hash to exactly what was asked, with a deadline
    /// under an auto-deny policy.
    fn ask(&mut self, ask: Ask, now: u64) {
        if self.state.approvals.len() >= MAX_PENDING_APPROVALS {
            let message = format!(
                "the agent asked for more than {MAX_PENDING_APPROVALS} approvals at once; this one was denied"
            );
            self.effects.push(Effect::TellIfPossible(Command::Answer {
                agent_request: ask.agent_request,
                decision: Decision::Deny {
                    message: message.clone(),
                },
            }));
            self.emit(EventKind::Error { message });
            return;
        }
        let approval = self.state.last_approval + 1;
        let hash = request_hash(&self.id, &ask.agent_request, &ask.tool, &ask.input);
        if let (ApprovalKind::Plan, Some(plan)) = (ask.kind, ask.plan) {
            self.emit(fit(EventKind::PlanProposed { approval, plan }));
        }
        // The hash covers the whole input; a very long one is shown cut, and kept whole (within
        // the shell's bounds) for devices to fetch before they allow it.
        if ask.input.len() > EVENT_FIELD_MAX_LEN {
            self.effects.push(Effect::KeepWhole {
                approval,
                input: ask.input.clone(),
            });
        }
        let shown = match fit(EventKind::Text { text: ask.input }) {
            EventKind::Text { text } => text,
            _ => String::new(),
        };
        self.emit(EventKind::ApprovalRequested(ApprovalRequest {
            approval,
            kind: ask.kind,
            agent_request: ask.agent_request,
            tool: ask.tool,
            input: shown,
            request_hash: hash,
        }));
        self.set_status(SessionStatus::WaitingApproval);
        let minutes = self.policy.auto_deny_after_minutes.filter(|m| *m > 0);
        if let (Some(minutes), Some(agent)) = (minutes, &mut self.agent) {
            let at = now.saturating_add(u64::from(minutes) * 60);
            agent.deadlines.insert(approval, Deadline { at, minutes });
            self.effects.push(Effect::Timer { at });
        }
    }

    /// Deny every undecided approval whose time is up.
    fn expire(&mut self, now: u64) {
        let Some(agent) = &mut self.agent else {
            return;
        };
        let due: Vec<(ApprovalId, Deadline)> = agent
            .deadlines
            .iter()
            .filter(|(_, deadline)| deadline.at <= now)
            .map(|(approval, deadline)| (*approval, *deadline))
            .collect();
        for (approval, _) in &due {
            agent.deadlines.remove(approval);
        }
        for (approval, deadline) in due {
            let Some(open) = self
                .state
                .approvals
                .get(&approval)
                .filter(|open| open.state != ApprovalState::Decided)
            else {
                continue;
            };
            let message = format!(
                "nobody decided within {} minutes (this machine's policy)",
                deadline.minutes
            );
            self.effects.push(Effect::TellIfPossible(Command::Answer {
                agent_request: open.request.agent_request.clone(),
                decision: Decision::Deny { message },
            }));
            self.emit(EventKind::ApprovalState {
                approval,
                state: ApprovalState::Expired,
            });
            self.after_close();
        }
    }

    /// The agent withdrew an ask, or was given its answer (`applied`).
    fn close(&mut self, agent_request: &str, applied: bool) {
        let Some((approval, state)) = self
            .state
            .approvals
            .iter()
            .find(|(_, open)| open.request.agent_request == agent_request)
            .map(|(approval, open)| (*approval, open.state))
        else {
            return; // already closed (expired, or withdrawn by the runtime itself)
        };
        let closed = match (applied, state) {
            (false, _) => ApprovalState::Withdrawn,
            (true, ApprovalState::Decided) => ApprovalState::Applied,
            (true, _) => return,
        };
        if let Some(agent) = &mut self.agent {
            agent.deadlines.remove(&approval);
        }
        self.emit(EventKind::ApprovalState {
            approval,
            state: closed,
        });
        self.after_close();
    }

    /// The agent is gone: every open approval is withdrawn.
    fn withdraw_all(&mut self) {
        let open: Vec<ApprovalId> = self.state.approvals.keys().copied().collect();
        for approval in open {
            self.emit(EventKind::ApprovalState {
                approval,
                state: ApprovalState::Withdrawn,
            });
        }
    }

    /// When nothing waits any more: back to running, or idle if the turn ended meanwhile.
    fn after_close(&mut self) {
        if self.status == SessionStatus::WaitingApproval && waiting(&self.state) == 0 {
            let turn_open = self.agent.as_ref().is_some_and(|agent| agent.turn_open);
            self.set_status(if turn_open {
                SessionStatus::Running
            } else {
                SessionStatus::Idle
            });
        }
    }

    fn running(&mut self) -> Result<&mut Agent, Refusal> {
        let id = self.id;
        self.agent.as_mut().ok_or(Refusal::NotRunning(id))
    }

    /// Log a status change, if it is one.
    fn set_status(&mut self, status: SessionStatus) {
        if self.status != status {
            self.emit(EventKind::Status(status));
        }
    }

    /// Append an event, and fold it at once (the state is copied only when it changes).
    fn emit(&mut self, kind: EventKind) {
        fold_life(&mut self.status, &mut self.usage, &kind);
        if changes_state(&kind) {
            fold_state(self.state.to_mut(), &kind);
        }
        self.effects.push(Effect::Append(kind));
    }
}
