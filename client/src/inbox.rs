//! The approvals across every machine and session, newest first: the pending ones are the inbox
//! a person works through; all of them (decided ones with their outcome) are the record. Built
//! from each session's [`History`], so the state shown is the one the session's events say,
//! never a guess.

use std::cmp::Reverse;

use muxagent_proto::app::{ApprovalRequest, ApprovalState, SessionId};
use muxagent_proto::identity::Fingerprint;

use crate::history::{Approval, History};

/// One approval with where it belongs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Item<'a> {
    /// The machine.
    pub machine: Fingerprint,
    /// The session.
    pub session: SessionId,
    /// What was asked.
    pub request: &'a ApprovalRequest,
    /// Everything known about it.
    pub approval: &'a Approval,
    /// Its latest logged state.
    pub state: ApprovalState,
}

/// Which approvals to list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filter {
    /// Only those waiting for a person ([`Approval::pending`]).
    Pending,
    /// Every approval whose request is known.
    All,
}

/// The approvals of `sessions` that pass `filter`, newest request first (ties: higher approval
/// number first, then by machine and session so the order is stable).
pub fn list<'a>(
    sessions: impl IntoIterator<Item = (Fingerprint, SessionId, &'a History)>,
    filter: Filter,
) -> Vec<Item<'a>> {
    let mut items: Vec<Item<'a>> = sessions
        .into_iter()
        .flat_map(|(machine, session, history)| {
            history.approvals.values().filter_map(move |approval| {
                let request = approval.request.as_ref()?;
                if filter == Filter::Pending && !approval.pending() {
                    return None;
                }
                Some(Item {
                    machine,
                    session,
                    request,
                    approval,
                    state: approval.state.unwrap_or(ApprovalState::Requested),
                })
            })
        })
        .collect();
    items.sort_by_key(|item| {
        (
            Reverse(item.approval.requested_at.unwrap_or(0)),
            Reverse(item.request.approval),
            item.machine,
            item.session,
        )
    });
    items
}

#[cfg(test)]
mod tests {
    use muxagent_proto::app::{ApprovalKind, Decision, Event, EventKind};

    use super::*;

    fn asked(history: &mut History, session: SessionId, number: u64, at: u64) {
        history.apply(&Event {
            session,
            seq: number,
            at,
            kind: EventKind::ApprovalRequested(ApprovalRequest {
                approval: number,
                kind: ApprovalKind::Tool,
                agent_request: format!("r{number}"),
                tool: "Bash".into(),
                input: "{}".into(),
                request_hash: [0; 32],
            }),
        });
    }

    #[test]
    fn newest_first_across_machines_with_states() {
        let (a, b) = (Fingerprint([1; 32]), Fingerprint([2; 32]));
        let (s1, s2) = (SessionId([1; 16]), SessionId([2; 16]));
        let mut h1 = History::default();
        asked(&mut h1, s1, 1, 100);
        asked(&mut h1, s1, 2, 300);
        h1.apply(&Event {
            session: s1,
            seq: 3,
            at: 301,
            kind: EventKind::ApprovalState {
                approval: 2,
                state: ApprovalState::Delivered,
            },
        });
        let mut h2 = History::default();
        asked(&mut h2, s2, 1, 200);
        asked(&mut h2, s2, 2, 400);
        h2.apply(&Event {
            session: s2,
            seq: 9,
            at: 401,
            kind: EventKind::ApprovalResolved {
                approval: 2,
                decision: Decision::AllowOnce,
                device: Fingerprint([7; 32]),
            },
        });
        let sessions = [(a, s1, &h1), (b, s2, &h2)];
        let pending: Vec<_> = list(sessions, Filter::Pending)
            .iter()
            .map(|item| (item.machine, item.request.approval, item.state))
            .collect();
        assert_eq!(
            pending,
            [
                (a, 2, ApprovalState::Delivered),
                (b, 1, ApprovalState::Requested),
                (a, 1, ApprovalState::Requested)
            ]
        );
        let all = list(sessions, Filter::All);
        assert_eq!(all.len(), 4);
        assert_eq!((all[0].machine, all[0].request.approval), (b, 2));
        assert!(all[0].approval.decision.is_some());
    }
}
