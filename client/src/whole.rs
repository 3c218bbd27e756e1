//! Joining an approval's whole input from the pages a machine sends ([`InputChunk`]), sans-IO:
//! the caller sends what [`Assembly::ask`] gives, feeds each answer to [`Assembly::take`], and
//! gets either the next page to ask for or the whole input. The controller
//! ([`Controller::fetch_input`](crate::controller::Controller::fetch_input)) and `ctl` both
//! use it. The whole is only the machine's word until [`decide::whole`](crate::decide::whole)
//! checked it against the request's hash.
//!
//! Bounded: the wire refuses a page claiming more than
//! [`APPROVAL_INPUT_MAX_LEN`](muxagent_proto::limits::APPROVAL_INPUT_MAX_LEN) in all, and
//! every page must continue where the last ended with the same total, so an assembly never
//! holds more than that.

use std::fmt;

use muxagent_proto::app::{ApprovalId, FetchInput, InputChunk, SessionId};

/// The pages of one input so far.
#[derive(Clone, Debug)]
pub struct Assembly {
    session: SessionId,
    approval: ApprovalId,
    bytes: Vec<u8>,
    /// The whole length, as the first page said.
    total: Option<u64>,
}

/// What to do after a page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Ask for the next page ([`Assembly::ask`]).
    More {
        /// Bytes so far.
        have: u64,
        /// The whole length.
        total: u64,
    },
    /// The whole input.
    Whole(String),
}

/// The machine's pages do not join up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputError {
    /// A page for another approval, not where the last ended, or with another total.
    OutOfOrder,
    /// The whole is not UTF-8.
    NotText,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InputError::OutOfOrder => "the machine sent the input's pages out of order",
            InputError::NotText => "the machine sent an input that is not UTF-8 text",
        })
    }
}

impl std::error::Error for InputError {}

impl Assembly {
    /// Start fetching the input of `approval` of `session`.
    pub fn new(session: SessionId, approval: ApprovalId) -> Self {
        Self {
            session,
            approval,
            bytes: Vec::new(),
            total: None,
        }
    }

    /// The session and approval.
    pub fn key(&self) -> (SessionId, ApprovalId) {
        (self.session, self.approval)
    }

    /// The request for the next page, numbered `request`.
    pub fn ask(&self, request: u32) -> FetchInput {
        FetchInput {
            request,
            session: self.session,
            approval: self.approval,
            offset: self.bytes.len() as u64,
        }
    }

    /// Take the answer to the last [`ask`](Self::ask) (the caller matched its request number).
    pub fn take(&mut self, chunk: InputChunk) -> Result<Step, InputError> {
        let fits = chunk.session == self.session
            && chunk.approval == self.approval
            && chunk.offset == self.bytes.len() as u64
            && self.total.is_none_or(|total| total == chunk.total)
            && (!chunk.bytes.is_empty() || chunk.offset == chunk.total)
            && chunk.offset + chunk.bytes.len() as u64 <= chunk.total;
        if !fits {
            return Err(InputError::OutOfOrder);
        }
        self.total = Some(chunk.total);
        self.bytes.extend_from_slice(&chunk.bytes);
        let have = self.bytes.len() as u64;
        if have < chunk.total {
            return Ok(Step::More {
                have,
                total: chunk.total,
            });
        }
        String::from_utf8(std::mem::take(&mut self.bytes))
            .map(Step::Whole)
            .map_err(|_| InputError::NotText)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SESSION: SessionId = SessionId([1; 16]);

    fn page(offset: u64, total: u64, bytes: &[u8]) -> InputChunk {
        InputChunk {
            request: 1,
            session: SESSION,
            approval: 2,
            offset,
            total,
            bytes: bytes.to_vec(),
        }
    }

    #[test]
    fn pages_cut_inside_a_character_join_into_the_whole() {
        let whole = "añb";
        let bytes = whole.as_bytes();
        let mut assembly = Assembly::new(SESSION, 2);
        assert_eq!(assembly.ask(7).offset, 0);
        let total = bytes.len() as u64;
        assert_eq!(
            assembly.take(page(0, total, &bytes[..2])),
            Ok(Step::More { have: 2, total })
        );
        assert_eq!(assembly.ask(7).offset, 2);
        assert_eq!(
            assembly.take(page(2, total, &bytes[2..])),
            Ok(Step::Whole(whole.into()))
        );
        let mut empty = Assembly::new(SESSION, 2);
        assert_eq!(empty.take(page(0, 0, b"")), Ok(Step::Whole(String::new())));
    }

    #[test]
    fn pages_that_do_not_join_are_refused() {
        let mut assembly = Assembly::new(SESSION, 2);
        assert!(assembly.take(page(0, 6, b"abc")).is_ok());
        // A gap, an overlap, another total, another approval, an empty page before the end.
        for bad in [
            page(4, 6, b"ef"),
            page(2, 6, b"cdef"),
            page(3, 7, b"def"),
            InputChunk {
                approval: 3,
                ..page(3, 6, b"def")
            },
            page(3, 6, b""),
        ] {
            assert_eq!(assembly.clone().take(bad), Err(InputError::OutOfOrder));
        }
        assert_eq!(
            assembly.take(page(3, 6, &[0xff, 0xfe, 0xfd])),
            Err(InputError::NotText)
        );
    }
}
