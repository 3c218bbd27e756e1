//! What a session's events say, folded as they arrive: its status, its approvals and where each
//! is in its life, and the plans it proposed. `ctl approvals`, `approve`/`deny`, `watch --until`,
//! `start --plan-from` and the web app's inbox all read a session through this one fold, so they
//! agree on what "pending" and "approved" mean.
//!
//! The fold is bounded whatever the events say: at most [`MAX_APPROVALS_PER_SESSION`] approvals
//! (the oldest numbers are forgotten first) and [`MAX_PLANS_PER_SESSION`] plans.

use std::collections::BTreeMap;

use muxagent_proto::app::{
    ApprovalId, ApprovalRequest, ApprovalState, Decision, Event, EventKind, SessionStatus,
};
use muxagent_proto::identity::Fingerprint;
use serde::{Deserialize, Serialize};

use crate::limits::{MAX_APPROVALS_PER_SESSION, MAX_PLANS_PER_SESSION};
use crate::words;

/// One approval as the log tells it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// What was asked (absent when the request itself is no longer in the history).
    pub request: Option<ApprovalRequest>,
    /// When it was asked (the request event's time, Unix seconds on the machine).
    pub requested_at: Option<u64>,
    /// The latest state logged.
    pub state: Option<ApprovalState>,
    /// The decision and the device that made it.
    pub decision: Option<(Decision, Fingerprint)>,
}

impl Approval {
    /// Waiting for a person: asked, its latest state requested or delivered, and not decided.
    pub fn pending(&self) -> bool {
        self.request.is_some()
            && self.decision.is_none()
            && matches!(
                self.state,
                Some(ApprovalState::Requested | ApprovalState::Delivered)
            )
    }

    /// Where it is, for people: `delivered`, `withdrawn`, `allowed once`, `denied (why)` …
    pub fn describe(&self) -> String {
        match (&self.decision, self.state) {
            (Some((decision, _)), _) => words::decision_text(decision),
            (None, Some(state)) => words::approval_state_word(state).into(),
            (None, None) => "never requested".into(),
        }
    }

    /// Allowed, once or always.
    pub fn allowed(&self) -> bool {
        matches!(
            self.decision,
            Some((Decision::AllowOnce | Decision::AllowAlways, _))
        )
    }
}

/// Why a session has no plan to hand off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlanError {
    /// It never proposed one.
    NoPlan,
    /// Its newest plan was not approved.
    NotApproved {
        /// The approval that would have accepted it.
        approval: ApprovalId,
        /// Where that approval is ([`Approval::describe`]).
        state: String,
    },
}

/// A session's events, folded.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// The status, as of the last event (or as the session list said before any event).
    pub status: Option<SessionStatus>,
    /// Every approval mentioned, by number.
    pub approvals: BTreeMap<ApprovalId, Approval>,
    /// Plans proposed, oldest first, with the approval that accepts each.
    pub plans: Vec<(ApprovalId, String)>,
}

impl History {
    /// A fold starting from what the session list said.
    pub fn new(status: Option<SessionStatus>) -> Self {
        Self {
            status,
            ..Self::default()
        }
    }

    /// The fold of `events`.
    pub fn of<'a>(events: impl IntoIterator<Item = &'a Event>) -> Self {
        let mut history = Self::default();
        for event in events {
            history.apply(event);
        }
        history
    }

    /// Take one more event.
    pub fn apply(&mut self, event: &Event) {
        match &event.kind {
            // The daemon counts a session as running from its first event.
            EventKind::Started { .. } => self.status = Some(SessionStatus::Running),
            EventKind::Status(status) => self.status = Some(*status),
            EventKind::ApprovalRequested(request) => {
                if let Some(approval) = self.approval(request.approval) {
                    approval.request = Some(request.clone());
                    approval.requested_at = Some(event.at);
                    approval.state.get_or_insert(ApprovalState::Requested);
                }
            }
            EventKind::ApprovalState { approval, state } => {
                if let Some(approval) = self.approval(*approval) {
                    approval.state = Some(*state);
                }
            }
            EventKind::ApprovalResolved {
                approval,
                decision,
                device,
            } => {
                if let Some(approval) = self.approval(*approval) {
                    approval.decision = Some((decision.clone(), *device));
                }
            }
            EventKind::PlanProposed { approval, plan } => {
                if self.plans.len() == MAX_PLANS_PER_SESSION {
                    self.plans.remove(0);
                }
                self.plans.push((*approval, plan.clone()));
            }
            _ => {}
        }
    }

    /// Take an event older than every event applied so far (history fetched backwards): it
    /// only fills in what is still unknown, so an old state never overwrites a newer one.
    pub fn backfill(&mut self, event: &Event) {
        match &event.kind {
            EventKind::ApprovalRequested(request) => {
                if let Some(approval) = self.approval(request.approval) {
                    approval.request.get_or_insert_with(|| request.clone());
                    approval.requested_at.get_or_insert(event.at);
                    approval.state.get_or_insert(ApprovalState::Requested);
                }
            }
            EventKind::ApprovalState { approval, state } => {
                if let Some(approval) = self.approval(*approval) {
                    approval.state.get_or_insert(*state);
                }
            }
            EventKind::ApprovalResolved {
                approval,
                decision,
                device,
            } => {
                if let Some(approval) = self.approval(*approval) {
                    approval
                        .decision
                        .get_or_insert_with(|| (decision.clone(), *device));
                }
            }
            EventKind::PlanProposed { approval, plan }
                if self.plans.len() < MAX_PLANS_PER_SESSION
                    && !self.plans.iter().any(|(number, _)| number == approval) =>
            {
                self.plans.insert(0, (*approval, plan.clone()));
            }
            _ => {}
        }
    }

    /// The entry for approval `number`, made if new; `None` when the table is full of newer
    /// ones (a full table forgets its lowest number to make room).
    fn approval(&mut self, number: ApprovalId) -> Option<&mut Approval> {
        if !self.approvals.contains_key(&number)
            && self.approvals.len() >= MAX_APPROVALS_PER_SESSION
        {
            let oldest = *self.approvals.keys().next()?;
            if number < oldest {
                return None;
            }
            self.approvals.remove(&oldest);
        }
        Some(self.approvals.entry(number).or_default())
    }

    /// The approvals waiting for a person, lowest number first.
    pub fn pending(&self) -> impl Iterator<Item = &ApprovalRequest> {
        self.approvals
            .values()
            .filter(|approval| approval.pending())
            .filter_map(|approval| approval.request.as_ref())
    }

    /// Whether the session has ended (done, error, stopped).
    pub fn finished(&self) -> bool {
        matches!(
            self.status,
            Some(SessionStatus::Done | SessionStatus::Error | SessionStatus::Stopped)
        )
    }

    /// Whether the agent waits for a prompt or has ended, with nothing left to approve.
    pub fn idle(&self) -> bool {
        (self.finished() || self.status == Some(SessionStatus::Idle))
            && self.pending().next().is_none()
    }

    /// The newest plan a person allowed (once or always).
    pub fn approved_plan(&self) -> Result<(ApprovalId, &str), PlanError> {
        let approval = |number| self.approvals.get(number).cloned().unwrap_or_default();
        if let Some((number, plan)) = self
            .plans
            .iter()
            .rev()
            .find(|(number, _)| approval(number).allowed())
        {
            return Ok((*number, plan));
        }
        match self.plans.last() {
            Some((number, _)) => Err(PlanError::NotApproved {
                approval: *number,
                state: approval(number).describe(),
            }),
            None => Err(PlanError::NoPlan),
        }
    }
}

#[cfg(test)]
mod tests {
    use muxagent_proto::app::{ApprovalKind, SessionId};

    use super::*;

    const DEVICE: Fingerprint = Fingerprint([9; 32]);

    fn events(kinds: Vec<EventKind>) -> Vec<Event> {
        kinds
            .into_iter()
            .enumerate()
            .map(|(index, kind)| Event {
                session: SessionId([1; 16]),
                seq: index as u64 + 1,
                at: 0,
                kind,
            })
            .collect()
    }

    fn requested(approval: ApprovalId, kind: ApprovalKind) -> EventKind {
        EventKind::ApprovalRequested(ApprovalRequest {
            approval,
            kind,
            agent_request: format!("req-{approval}"),
            tool: "Bash".into(),
            input: "{}".into(),
            request_hash: [approval as u8; 32],
        })
    }

    fn state(approval: ApprovalId, state: ApprovalState) -> EventKind {
        EventKind::ApprovalState { approval, state }
    }

    fn resolved(approval: ApprovalId, decision: Decision) -> EventKind {
        EventKind::ApprovalResolved {
            approval,
            decision,
            device: DEVICE,
        }
    }

    fn plan(approval: ApprovalId, text: &str) -> EventKind {
        EventKind::PlanProposed {
            approval,
            plan: text.into(),
        }
    }

    fn pending_numbers(history: &History) -> Vec<ApprovalId> {
        history.pending().map(|request| request.approval).collect()
    }

    #[test]
    fn pending_follows_the_state_machine() {
        let history = History::of(&events(vec![
            requested(1, ApprovalKind::Tool),
            requested(2, ApprovalKind::Tool),
            state(2, ApprovalState::Delivered),
            requested(3, ApprovalKind::Tool),
            state(3, ApprovalState::Delivered),
            resolved(3, Decision::AllowOnce),
            state(3, ApprovalState::Decided),
            requested(4, ApprovalKind::Tool),
            state(4, ApprovalState::Withdrawn),
            requested(5, ApprovalKind::Tool),
            state(5, ApprovalState::Expired),
            requested(6, ApprovalKind::Tool),
            resolved(6, Decision::AllowOnce),
            state(6, ApprovalState::Decided),
            state(6, ApprovalState::Applied),
            // Resolved but the decided state not logged yet: no longer pending.
            requested(7, ApprovalKind::Tool),
            resolved(
                7,
                Decision::Deny {
                    message: "no".into(),
                },
            ),
        ]));
        assert_eq!(pending_numbers(&history), [1, 2]);
        assert_eq!(history.approvals[&2].describe(), "delivered");
        assert_eq!(history.approvals[&4].describe(), "withdrawn");
        assert_eq!(history.approvals[&7].describe(), "denied (no)");
        assert_eq!(history.approvals[&3].describe(), "allowed once");
        // A state for an approval whose request is gone from the history is not pending.
        let orphan = History::of(&events(vec![state(9, ApprovalState::Delivered)]));
        assert_eq!(pending_numbers(&orphan), Vec::<ApprovalId>::new());
    }

    #[test]
    fn a_flood_of_approvals_and_plans_stays_bounded() {
        let mut history = History::default();
        let total = MAX_APPROVALS_PER_SESSION as u64 * 3;
        for number in 1..=total {
            for kind in [requested(number, ApprovalKind::Plan), plan(number, "p")] {
                history.apply(&Event {
                    session: SessionId([1; 16]),
                    seq: number,
                    at: number,
                    kind,
                });
            }
        }
        assert_eq!(history.approvals.len(), MAX_APPROVALS_PER_SESSION);
        assert_eq!(history.plans.len(), MAX_PLANS_PER_SESSION);
        // The newest are kept; an old number arriving late finds no room.
        assert!(history.approvals.contains_key(&total));
        assert_eq!(history.plans.last().map(|(n, _)| *n), Some(total));
        history.apply(&events(vec![state(1, ApprovalState::Delivered)])[0]);
        assert!(!history.approvals.contains_key(&1));
        assert_eq!(history.approvals[&total].requested_at, Some(total));
    }

    #[test]
    fn backfilled_events_never_overwrite_newer_ones() {
        let newer = events(vec![
            state(1, ApprovalState::Applied),
            resolved(1, Decision::AllowOnce),
            plan(2, "second"),
        ]);
        let mut history = History::of(&newer);
        // Then the older events arrive, newest of them first or not: only gaps are filled.
        for kind in [
            requested(1, ApprovalKind::Plan),
            state(1, ApprovalState::Delivered),
            resolved(1, Decision::AllowAlways),
            plan(1, "first"),
        ] {
            history.backfill(&events(vec![kind])[0]);
        }
        let approval = &history.approvals[&1];
        assert!(approval.request.is_some());
        assert_eq!(approval.state, Some(ApprovalState::Applied));
        assert_eq!(approval.decision, Some((Decision::AllowOnce, DEVICE)));
        assert_eq!(
            history.plans,
            [(1, "first".to_string()), (2, "second".to_string())]
        );
    }

    #[test]
    fn idle_and_finished() {
        let mut history = History::new(Some(SessionStatus::Idle));
        assert!(history.idle() && !history.finished());
        for event in &events(vec![
            EventKind::Started {
                runtime: "claude".try_into().unwrap(),
                args: vec![],
                cwd: "/".into(),
                title: "t".into(),
                device: DEVICE,
            },
            requested(1, ApprovalKind::Tool),
            EventKind::Status(SessionStatus::Idle),
        ]) {
            history.apply(event);
        }
        assert!(!history.idle(), "an approval is pending");
        history.apply(&events(vec![state(1, ApprovalState::Withdrawn)])[0]);
        assert!(history.idle());
        history.apply(&events(vec![EventKind::Status(SessionStatus::Stopped)])[0]);
        assert!(history.finished() && history.idle());
    }

    #[test]
    fn the_newest_allowed_plan_is_handed_off() {
        let history = History::of(&events(vec![
            plan(1, "first plan"),
            requested(1, ApprovalKind::Plan),
            resolved(1, Decision::AllowAlways),
            state(1, ApprovalState::Applied),
            plan(2, "second plan"),
            requested(2, ApprovalKind::Plan),
            resolved(
                2,
                Decision::Deny {
                    message: "redo".into(),
                },
            ),
            plan(3, "third plan"),
            requested(3, ApprovalKind::Plan),
            resolved(3, Decision::AllowOnce),
            plan(4, "fourth plan"),
            requested(4, ApprovalKind::Plan),
        ]));
        assert_eq!(history.approved_plan(), Ok((3, "third plan")));
    }

    #[test]
    fn no_plan_or_an_unapproved_one_is_an_error_that_says_why() {
        let none = History::of(&events(vec![requested(1, ApprovalKind::Tool)]));
        assert_eq!(none.approved_plan(), Err(PlanError::NoPlan));
        let waiting = History::of(&events(vec![
            plan(2, "p"),
            requested(2, ApprovalKind::Plan),
            state(2, ApprovalState::Delivered),
        ]));
        assert_eq!(
            waiting.approved_plan(),
            Err(PlanError::NotApproved {
                approval: 2,
                state: "delivered".into()
            })
        );
        let denied = History::of(&events(vec![
            plan(1, "p"),
            requested(1, ApprovalKind::Plan),
            resolved(
                1,
                Decision::Deny {
                    message: "too broad".into(),
                },
            ),
            state(1, ApprovalState::Applied),
        ]));
        assert_eq!(
            denied.approved_plan(),
            Err(PlanError::NotApproved {
                approval: 1,
                state: "denied (too broad)".into()
            })
        );
        let withdrawn = History::of(&events(vec![
            plan(5, "p"),
            requested(5, ApprovalKind::Plan),
            state(5, ApprovalState::Withdrawn),
        ]));
        assert_eq!(
            withdrawn.approved_plan(),
            Err(PlanError::NotApproved {
                approval: 5,
                state: "withdrawn".into()
            })
        );
    }
}
