//! The fold of a session's events into what its log says of its life: status, usage, open
//! approvals. One definition, for the session store (every event it logs, and a restart) and
//! for the machine (every event it emits).

use muxagent_proto::app::{ApprovalState, EventKind, SessionStatus, Usage};

use crate::daemon::sessions::{OpenApproval, SessionState};

/// Apply one event to what the log says of a session: its status, usage and open approvals.
/// The session store folds every event it logs with this, and so does the machine with every
/// event it emits.
pub fn fold(
    status: &mut SessionStatus,
    usage: &mut Usage,
    state: &mut SessionState,
    kind: &EventKind,
) {
    fold_life(status, usage, kind);
    if changes_state(kind) {
        fold_state(state, kind);
    }
}

/// [`fold`]'s part for status and usage.
pub(super) fn fold_life(status: &mut SessionStatus, usage: &mut Usage, kind: &EventKind) {
    match kind {
        EventKind::Started { .. } => *status = SessionStatus::Running,
        EventKind::Status(new) => *status = *new,
        EventKind::Usage(total) => *usage = *total,
        _ => {}
    }
}

/// [`fold`]'s part for the [`SessionState`].
pub(super) fn fold_state(state: &mut SessionState, kind: &EventKind) {
    match kind {
        EventKind::Started { args, .. } => state.args = args.clone(),
        EventKind::ApprovalRequested(request) => {
            state.last_approval = state.last_approval.max(request.approval);
            state.approvals.insert(
                request.approval,
                OpenApproval {
                    request: request.clone(),
                    state: ApprovalState::Requested,
                },
            );
        }
        EventKind::ApprovalResolved { approval, .. } => {
            if let Some(open) = state.approvals.get_mut(approval) {
                open.state = ApprovalState::Decided;
            }
        }
        EventKind::ApprovalState {
            approval,
            state: new_state,
        } => match new_state {
            ApprovalState::Applied | ApprovalState::Withdrawn | ApprovalState::Expired => {
                state.approvals.remove(approval);
            }
            ApprovalState::Requested | ApprovalState::Delivered | ApprovalState::Decided => {
                if let Some(open) = state.approvals.get_mut(approval) {
                    open.state = *new_state;
                }
            }
        },
        EventKind::AgentSession { id } => state.agent_session = Some(id.clone()),
        _ => {}
    }
}

/// Whether [`fold`] changes a session's [`SessionState`] for this event.
pub(super) fn changes_state(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Started { .. }
            | EventKind::ApprovalRequested(_)
            | EventKind::ApprovalResolved { .. }
            | EventKind::ApprovalState { .. }
            | EventKind::AgentSession { .. }
    )
}

/// Approvals that wait for a person: open and not decided yet.
pub fn waiting(state: &SessionState) -> usize {
    state
        .approvals
        .values()
        .filter(|open| open.state != ApprovalState::Decided)
        .count()
}
