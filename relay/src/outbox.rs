//! The bounded queue of frames waiting to be written to one connection.
//!
//! Any connection's task may push into any other's outbox; only the owner pops. A push never
//! waits: when the queue holds `depth` frames the push fails with [`PushError::Full`] and the
//! caller drops the frame it was routing (drop-newest, counted as `queue_full`). The queue's
//! storage is allocated on first use, so an idle connection's outbox is a few words.
//!
//! A connection is closed through its outbox too: [`Outbox::close_with`] sets a final frame
//! (`Displaced`, `Revoked`, `Restarting`) that the owner writes before anything still queued,
//! and then it closes.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use async_tungstenite::tungstenite::Bytes;

use crate::metrics::Disconnect;

/// Why a frame was not queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PushError {
    /// The queue is at its capacity.
    Full,
    /// The connection is closing.
    Closing,
}

/// What the owner should do next.
pub(crate) enum Next {
    /// Write this frame.
    Frame(Bytes),
    /// Write this last frame (if any), then close the connection, counted under the reason.
    Close(Option<Bytes>, Disconnect),
}

pub(crate) struct Outbox {
    depth: usize,
    inner: Mutex<Inner>,
}

struct Inner {
    queue: VecDeque<Bytes>,
    /// `Some` once closing: the final frame (taken by the owner) and why.
    closing: Option<(Option<Bytes>, Disconnect)>,
    waker: Option<Waker>,
}

impl Outbox {
    pub(crate) fn new(depth: usize) -> Self {
        Outbox {
            depth,
            inner: Mutex::new(Inner {
                queue: VecDeque::new(),
                closing: None,
                waker: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves a consistent queue; keep going.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queue `frame` unless the queue is full or closing.
    pub(crate) fn push(&self, frame: Bytes) -> Result<(), PushError> {
        let mut inner = self.lock();
        if inner.closing.is_some() {
            return Err(PushError::Closing);
        }
        if inner.queue.len() >= self.depth {
            return Err(PushError::Full);
        }
        inner.queue.push_back(frame);
        if let Some(waker) = inner.waker.take() {
            drop(inner);
            waker.wake();
        }
        Ok(())
    }

    /// Ask the owner to write `last` (ahead of anything queued) and close. The first call wins.
    pub(crate) fn close_with(&self, last: Option<Bytes>, reason: Disconnect) {
        let mut inner = self.lock();
        if inner.closing.is_some() {
            return;
        }
        inner.closing = Some((last, reason));
        inner.queue = VecDeque::new();
        if let Some(waker) = inner.waker.take() {
            drop(inner);
            waker.wake();
        }
    }

    /// The next thing to do, or `Pending` (waking `cx` on the next push or close).
    pub(crate) fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Next> {
        let mut inner = self.lock();
        if let Some((last, reason)) = &mut inner.closing {
            return Poll::Ready(Next::Close(last.take(), *reason));
        }
        if let Some(frame) = inner.queue.pop_front() {
            if inner.queue.is_empty() && inner.queue.capacity() > 4 {
                // Give back a burst's storage once it is written, so idle stays small.
                inner.queue = VecDeque::new();
            }
            return Poll::Ready(Next::Frame(frame));
        }
        match &inner.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => inner.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn poll(outbox: &Outbox) -> Poll<Next> {
        outbox.poll_next(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn drops_newest_when_full_and_close_jumps_the_queue() {
        let outbox = Outbox::new(2);
        assert_eq!(outbox.push(Bytes::from_static(b"a")), Ok(()));
        assert_eq!(outbox.push(Bytes::from_static(b"b")), Ok(()));
        assert_eq!(outbox.push(Bytes::from_static(b"c")), Err(PushError::Full));
        assert!(matches!(poll(&outbox), Poll::Ready(Next::Frame(f)) if f == "a"));
        assert_eq!(outbox.push(Bytes::from_static(b"d")), Ok(()));
        outbox.close_with(Some(Bytes::from_static(b"bye")), Disconnect::Shutdown);
        assert_eq!(
            outbox.push(Bytes::from_static(b"e")),
            Err(PushError::Closing)
        );
        assert!(matches!(poll(&outbox), Poll::Ready(Next::Close(Some(f), _)) if f == "bye"));
        assert!(matches!(
            poll(&outbox),
            Poll::Ready(Next::Close(None, Disconnect::Shutdown))
        ));
    }

    #[test]
    fn pending_when_empty() {
        let outbox = Outbox::new(1);
        assert!(poll(&outbox).is_pending());
    }
}
