//! Fetching an approval's whole input ([`Controller::fetch_input`]). An approval's event
//! carries its input cut to one event field; the hash a decision signs covers the whole. So
//! before a person may allow it, the device fetches the whole input from the machine a page
//! (`FetchInput` → [`InputChunk`]) at a time, one page in flight, joins the pages
//! ([`Assembly`]) and hands the whole back ([`Answer::Input`]); the caller shows it and signs over it
//! ([`decide::sign`](crate::decide::sign) recomputes the hash, so a machine sending other bytes
//! than it hashed produces no decision). Progress shows as [`Note::InputProgress`].
//!
//! Bounded: a machine may claim at most
//! [`APPROVAL_INPUT_MAX_LEN`](muxagent_proto::limits::APPROVAL_INPUT_MAX_LEN) bytes (the wire
//! refuses more), and at most [`MAX_INPUT_FETCHES`] run at once.

use muxagent_proto::app::{ApprovalId, InputChunk, SessionId};
use muxagent_proto::identity::Fingerprint;

use super::{Answer, ClientError, Controller, Note, Waiter};
use crate::limits::{MAX_INPUT_FETCHES, REQUEST_TIMEOUT_MS};
use crate::whole::{Assembly, Step};

/// One [`Controller::fetch_input`] under way.
pub(super) struct InputFetch {
    machine: Fingerprint,
    assembly: Assembly,
}

impl Controller {
    /// Fetch the whole input of `approval` of `session` from `machine`. The answer is
    /// [`Answer::Input`] (or why not: an input longer than a device fetches is refused by the
    /// machine), after a [`Note::InputProgress`] per page but the last. Asking again for an
    /// input already being fetched gives the same request number.
    pub fn fetch_input(
        &mut self,
        now: u64,
        machine: &Fingerprint,
        session: SessionId,
        approval: ApprovalId,
    ) -> Result<u32, ClientError> {
        if let Some((request, _)) = self.inputs.iter().find(|(_, fetch)| {
            fetch.machine == *machine && fetch.assembly.key() == (session, approval)
        }) {
            return Ok(*request);
        }
        if self.inputs.len() >= MAX_INPUT_FETCHES {
            return Err(ClientError::Busy);
        }
        let assembly = Assembly::new(session, approval);
        let request = self.request_as(now, machine, Waiter::Input(*machine), |request| {
            assembly.ask(request).into()
        })?;
        let machine = *machine;
        self.inputs
            .insert(request, InputFetch { machine, assembly });
        Ok(request)
    }

    /// A page came from `machine`: keep it, ask for the next, or answer with the whole.
    pub(super) fn on_input_chunk(&mut self, now: u64, machine: Fingerprint, chunk: InputChunk) {
        let request = chunk.request;
        if self.pending.get(&request).map(|p| p.waiter) != Some(Waiter::Input(machine)) {
            return; // not asked, or asked of another machine
        }
        let Some(fetch) = self.inputs.get_mut(&request) else {
            return;
        };
        let (session, approval) = fetch.assembly.key();
        let result = match fetch.assembly.take(chunk) {
            Ok(Step::More { have, total }) => {
                let next = fetch.assembly.ask(request);
                if let Some(pending) = self.pending.get_mut(&request) {
                    pending.deadline = now + REQUEST_TIMEOUT_MS;
                }
                self.note(Note::InputProgress {
                    request,
                    have,
                    total,
                });
                self.send_to(now, machine, &next.into());
                return;
            }
            Ok(Step::Whole(input)) => Ok(Answer::Input {
                session,
                approval,
                input,
            }),
            Err(error) => Err(ClientError::BadInput {
                hostname: self.hostname(&machine),
                error,
            }),
        };
        self.pending.remove(&request);
        self.answer(request, result);
    }
}
