//! Push back instead of dropping: a routed frame whose receiver's queue is full at its own bound
//! is held by the sender's connection, which stops reading its socket once it holds several (so
//! TCP pushes back on the sender) but keeps writing its own queue and answering its timer (so
//! two connections that send to each other cannot deadlock). The frame goes as soon as the
//! receiver takes frames out of its queue, or is dropped as before (counted, `Error{Dropped}`)
//! once [`Limits::pushback`](crate::config::Limits::pushback) has passed.
//!
//! Only the connection's own bound (its depth or bytes) holds a frame. A frame refused by its
//! account's or the relay's byte pool is dropped at once: those pools are spent by many queues,
//! so room in them says nothing about this receiver (waiting would mean waking on every queue
//! of the relay), and they are spent only when readers stall elsewhere — an attacker's slow
//! readers must not be able to stall honest senders. Nor does a stuck receiver hold its senders
//! for ever: its writes time out, its full queue is cut as a slow reader, and once a sender has
//! waited on it in vain the queue counts as stalled and refuses at once until it drains.
//!
//! A frame for a device goes to each of its connections: the held frame keeps the list of those
//! still to take it and waits on one at a time.
//!
//! A connection holds a few frames at once ([`Holds`]) and goes on reading while they are few
//! and small: a machine's one connection carries frames for every device, so a phone that
//! stops reading must hold back only the frames for it, not the machine's frames for the
//! others. A frame for a receiver that already has a held frame from this connection is held
//! behind it, so each receiver gets its frames in the order sent; the others go at once.
//!
//! Once it holds so many that it stops reading, and it also sends to others (they wait while
//! it does not read), it gives up at once on the receivers of its oldest held frame: a
//! machine's frames for its other devices flow on past a phone that froze or cannot keep up
//! (that phone loses frames, and its channel resyncs). A sender talking to one receiver only (a
//! device to its machine) keeps its push-back for the whole
//! [`Limits::pushback`](crate::config::Limits::pushback).

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::Bytes;
use muxagent_proto::frame::ErrorCode;

use crate::limits::{RELAY_HOLD_AHEAD_BYTES, RELAY_HOLD_AHEAD_FRAMES};
use crate::metrics::{DropReason, Metrics, RouteKind};
use crate::outbox::{Bound, Outbox, PushError};
use crate::router::{Refused, drop_reason};

/// A frame held by its sender's connection until its receivers have room.
pub(crate) struct Held {
    frame: Bytes,
    /// Receivers that have not taken it yet; the last is the one waited on.
    waiting: Vec<Arc<Outbox>>,
    kind: RouteKind,
    /// Payload bytes, for the routing counters.
    len: usize,
    delivered: bool,
    dropped: bool,
    /// Whether the sender's waker is registered with the last of `waiting`.
    registered: bool,
    /// The sender's connection id (its name in waiter lists).
    waiter: u64,
    deadline: Instant,
    metrics: Arc<Metrics>,
}

impl Held {
    /// Hold `frame` for `waiting` (whose queues refused it at their own bound) on behalf of
    /// connection `waiter`, from `held_at` for `pushback`; `delivered` and `dropped` say how
    /// the other receivers fared.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        frame: Bytes,
        waiting: Vec<Arc<Outbox>>,
        kind: RouteKind,
        len: usize,
        delivered: bool,
        dropped: bool,
        waiter: u64,
        held_at: Instant,
        pushback: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Held {
            frame,
            waiting,
            kind,
            len,
            delivered,
            dropped,
            registered: false,
            waiter,
            deadline: held_at + pushback,
            metrics,
        }
    }

    /// Offer the frame to each receiver still waiting in turn: `Ready` once every one has
    /// taken or finally refused it, `Pending` while the next one's queue is full (woken when
    /// it takes frames out or closes).
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        while let Some(outbox) = self.waiting.last() {
            match outbox.push_or_wait(&self.frame, self.waiter, cx) {
                Poll::Pending => {
                    self.registered = true;
                    return Poll::Pending;
                }
                Poll::Ready(result) => {
                    if self.registered {
                        outbox.forget(self.waiter);
                        self.registered = false;
                    }
                    self.settle(result);
                    self.waiting.pop();
                }
            }
        }
        Poll::Ready(())
    }

    /// The deadline passed: a last offer to each receiver still waiting, then drop the frame
    /// for the rest (and mark their queues stalled).
    pub(crate) fn give_up(&mut self) {
        self.registered = false;
        for outbox in std::mem::take(&mut self.waiting) {
            self.last_offer(&outbox);
        }
    }

    /// Offer the frame to `outbox` one last time; if it is still full, its queue counts as
    /// stalled (it refuses at once until it drains).
    fn last_offer(&mut self, outbox: &Outbox) {
        let result = outbox.push(self.frame.clone());
        if result == Err(PushError::Full(Bound::Connection)) {
            outbox.give_up(self.waiter);
        } else {
            outbox.forget(self.waiter);
        }
        self.settle(result);
    }

    fn settle(&mut self, result: Result<(), PushError>) {
        let metrics = &self.metrics;
        match result {
            Ok(()) => {
                self.delivered = true;
                metrics.routed(self.kind, self.len);
            }
            Err(PushError::Closing) => metrics.dropped(DropReason::ReceiverClosing),
            Err(error) => {
                self.dropped = true;
                metrics.dropped(drop_reason(error));
            }
        }
    }

    fn waits_on(&self, outbox: &Outbox) -> bool {
        self.waiting
            .iter()
            .any(|receiver| std::ptr::eq(&**receiver, outbox))
    }

    fn receivers(&self) -> impl Iterator<Item = *const Outbox> + '_ {
        self.waiting.iter().map(Arc::as_ptr)
    }

    fn waits_on_any(&self, receivers: &[*const Outbox]) -> bool {
        self.receivers()
            .any(|receiver| receivers.contains(&receiver))
    }

    /// What the sender is told once every receiver is settled: `Dropped` if any receiver's
    /// queue refused the frame (that receiver's channel has a gap), `PeerOffline` if every
    /// receiver was closing, else nothing.
    pub(crate) fn outcome(&self) -> Option<Refused> {
        outcome(self.delivered, self.dropped)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.registered
            && let Some(outbox) = self.waiting.last()
        {
            outbox.forget(self.waiter);
        }
    }
}

/// The frames one connection holds for full queues, oldest first. Nothing while none is held
/// (an idle connection's future stays small).
#[derive(Default)]
pub(crate) struct Holds(Option<Box<HeldFrames>>);

#[derive(Default)]
struct HeldFrames {
    frames: VecDeque<Held>,
    /// Bytes of the frames held.
    bytes: usize,
    /// A frame read while these were held was routed to its receivers at once: the sender
    /// talks to others too, and they wait while it stops reading.
    others_wait: bool,
}

impl Holds {
    /// Hold one more (routed after every frame held already).
    pub(crate) fn push(&mut self, held: Held) {
        let holds = self.0.get_or_insert_default();
        holds.bytes += held.frame.len();
        holds.frames.push_back(held);
    }

    /// A frame read while frames are held was routed at once (see [`Holds::give_up_due`]).
    pub(crate) fn went_elsewhere(&mut self) {
        if let Some(holds) = self.0.as_mut() {
            holds.others_wait = true;
        }
    }

    /// Whether the connection may read another frame: while it holds fewer than
    /// [`RELAY_HOLD_AHEAD_FRAMES`] frames of fewer than [`RELAY_HOLD_AHEAD_BYTES`] bytes.
    pub(crate) fn may_read(&self) -> bool {
        self.0.as_ref().is_none_or(|holds| {
            holds.frames.len() < RELAY_HOLD_AHEAD_FRAMES && holds.bytes < RELAY_HOLD_AHEAD_BYTES
        })
    }

    /// Whether a frame held here still waits on `outbox` (a new frame for it goes behind).
    pub(crate) fn holds_for(&self, outbox: &Outbox) -> bool {
        self.0
            .as_ref()
            .is_some_and(|holds| holds.frames.iter().any(|held| held.waits_on(outbox)))
    }

    /// When the oldest frame's wait ends (each waits as long, so it ends first).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        Some(self.0.as_ref()?.frames.front()?.deadline)
    }

    /// Offer each frame to its receivers, oldest first; a frame waiting on a receiver that an
    /// older frame still waits on is not offered (its turn comes after). `Ready` with the
    /// answers for the senders of the frames that settled, if any did.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Vec<Option<Refused>>> {
        let Some(holds) = self.0.as_mut() else {
            return Poll::Pending;
        };
        let mut settled = Vec::new();
        let mut taken: Vec<*const Outbox> = Vec::new();
        let mut index = 0;
        while let Some(held) = holds.frames.get_mut(index) {
            let behind = held.waits_on_any(&taken);
            if !behind && held.poll(cx).is_ready() {
                if let Some(held) = holds.frames.remove(index) {
                    holds.bytes -= held.frame.len();
                    settled.push(held.outcome());
                }
                continue;
            }
            taken.extend(held.receivers());
            index += 1;
        }
        self.free_if_empty();
        if settled.is_empty() {
            Poll::Pending
        } else {
            Poll::Ready(settled)
        }
    }

    /// Give up on the frames whose wait ended by `now` (see [`Held::give_up`]) and, while the
    /// connection holds too many to read on and also sends to others
    /// ([`Holds::went_elsewhere`]), on the oldest frame: its receivers hold the others up. The
    /// answers for the senders of the frames that settled.
    pub(crate) fn give_up_due(&mut self, now: Instant) -> Vec<Option<Refused>> {
        let mut settled = Vec::new();
        let may_read = self.may_read();
        if let Some(holds) = self.0.as_mut() {
            let mut give_up = |holds: &mut HeldFrames, mut held: Held| {
                holds.bytes -= held.frame.len();
                held.give_up();
                settled.push(held.outcome());
            };
            while holds
                .frames
                .front()
                .is_some_and(|held| now >= held.deadline)
            {
                if let Some(held) = holds.frames.pop_front() {
                    give_up(holds, held);
                }
            }
            if !may_read
                && holds.others_wait
                && let Some(held) = holds.frames.pop_front()
            {
                give_up(holds, held);
            }
        }
        self.free_if_empty();
        settled
    }

    fn free_if_empty(&mut self) {
        if self.0.as_ref().is_some_and(|holds| holds.frames.is_empty()) {
            self.0 = None;
        }
    }
}

/// What the sender of a frame is told, from whether any receiver took it and whether any
/// dropped it.
pub(crate) fn outcome(delivered: bool, dropped: bool) -> Option<Refused> {
    if dropped {
        Some(Refused {
            code: ErrorCode::Dropped,
            counter: None,
            reason: "the receiver's queue is full: the frame was dropped",
        })
    } else if !delivered {
        Some(Refused {
            code: ErrorCode::PeerOffline,
            counter: None,
            reason: "the receiver is disconnecting",
        })
    } else {
        None
    }
}
