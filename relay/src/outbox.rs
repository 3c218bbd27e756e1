//! The bounded queue of frames waiting to be written to one connection.
//!
//! Any connection's task may push into any other's outbox; only the owner pops. A push fails
//! with [`PushError::Full`] when the queue holds `depth` frames or the frame's bytes do not fit
//! one of three byte budgets: the connection's own, its account's ([`Pool`], shared by the
//! account's connections) and the relay's (one [`Pool`]). Routed frames that do not fit the
//! connection's own bound are held by their sender ([`Outbox::push_or_wait`], see
//! [`crate::pushback`]): the sender registers as a waiter, and the owner wakes its waiters
//! whenever it takes frames out (or closes). A list holds at most one waiter per connection
//! (each waits on one receiver at a time), so it is bounded by the connections that may send
//! here. A sender that waited its whole time in vain marks the queue *stalled*
//! ([`Outbox::give_up`]): until the owner next takes a frame, further frames for a full queue
//! are refused at once instead of held again, so a stuck receiver costs each sender one wait,
//! not one per frame. Frames refused by a pool, and replies and notices the relay makes
//! itself, are dropped at once (drop-newest, counted by which bound was hit). A frame's
//! bytes are taken from every budget when it is queued and given back when it is written,
//! dropped, or the connection goes. A frame that leaves its queue within
//! [`QueueLimits::reserve`] bytes is queued even when a pool is spent (its bytes still count
//! in it): slow readers elsewhere can spend the pools, but never starve a receiver that keeps
//! up. The queue's storage is allocated on first use, so an idle connection's outbox is a few
//! words.
//!
//! A receiver that reads, but slower than it is sent to, keeps its queue full for ever
//! without ever stalling a write past the write timeout. So an outbox remembers since when it
//! has been full — from a frame refused while it was at its depth or over half of its bytes,
//! until it is back under a quarter of its bytes — and closes the connection
//! (`Disconnect::SlowReader`) once that has lasted [`QueueLimits::cut_after`], without a last
//! frame or a close handshake: both would only wait behind what the reader is not reading.
//!
//! A connection is closed through its outbox too: [`Outbox::close_with`] sets a final frame
//! (`Displaced`, `Revoked`, `Restarting`) that the owner writes before anything still queued,
//! and then it closes.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::Bytes;

use crate::metrics::Disconnect;

/// Which budget a refused frame did not fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Bound {
    /// The connection's own depth or bytes.
    Connection,
    /// Its account's bytes.
    Account,
    /// The relay's bytes.
    Total,
}

/// Why a frame was not queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PushError {
    /// The frame does not fit this bound.
    Full(Bound),
    /// The connection is closing.
    Closing,
}

/// Wakers to wake once an outbox's lock is released.
#[derive(Default)]
struct Wakes {
    owner: Option<Waker>,
    senders: Vec<(u64, Waker)>,
}

impl Wakes {
    fn wake(self) {
        if let Some(owner) = self.owner {
            owner.wake();
        }
        for (_, sender) in self.senders {
            sender.wake();
        }
    }
}

/// What the owner should do next.
pub(crate) enum Next {
    /// Write this frame.
    Frame(Bytes),
    /// Write this last frame (if any), then close the connection, counted under the reason.
    Close(Option<Bytes>, Disconnect),
}

/// Bytes queued across several outboxes, up to a cap.
pub(crate) struct Pool {
    queued: AtomicUsize,
    cap: usize,
}

impl Pool {
    pub(crate) fn new(cap: usize) -> Self {
        Pool {
            queued: AtomicUsize::new(0),
            cap,
        }
    }

    /// Take `bytes` if they fit.
    fn take(&self, bytes: usize) -> bool {
        self.queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                queued.checked_add(bytes).filter(|total| *total <= self.cap)
            })
            .is_ok()
    }

    /// Take `bytes` whether or not they fit (a queue's reserve).
    fn add(&self, bytes: usize) {
        self.queued.fetch_add(bytes, Ordering::AcqRel);
    }

    fn give(&self, bytes: usize) {
        let _ = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                Some(queued.saturating_sub(bytes))
            });
    }

    /// Bytes queued now.
    pub(crate) fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }
}

/// An outbox's own bounds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct QueueLimits {
    /// Frames at most.
    pub depth: usize,
    /// Bytes at most.
    pub bytes: usize,
    /// Bytes the queue may hold whatever the account's and the relay's pools hold.
    pub reserve: usize,
    /// How long the queue may stay full before the connection is cut.
    pub cut_after: Duration,
}

pub(crate) struct Outbox {
    limits: QueueLimits,
    total: Arc<Pool>,
    inner: Mutex<Inner>,
}

struct Inner {
    queue: VecDeque<Bytes>,
    /// Bytes in `queue`.
    queued: usize,
    /// The account's pool, once the connection is known to belong to one.
    account: Option<Arc<Pool>>,
    /// Since when the queue has been full (see the module docs).
    full_since: Option<Instant>,
    /// `Some` once closing: the final frame (taken by the owner) and why.
    closing: Option<(Option<Bytes>, Disconnect)>,
    waker: Option<Waker>,
    /// Senders holding a frame for this queue until it has room: (their connection, waker).
    waiters: Vec<(u64, Waker)>,
    /// A sender waited its whole time in vain; cleared when the owner takes a frame.
    stalled: bool,
}

impl Inner {
    /// Give every queued byte back and empty the queue.
    fn release(&mut self, total: &Pool) {
        total.give(self.queued);
        if let Some(account) = &self.account {
            account.give(self.queued);
        }
        self.queued = 0;
        self.queue = VecDeque::new();
    }

    /// Start closing: the owner and every waiting sender are to be woken.
    fn close(&mut self, total: &Pool, last: Option<Bytes>, reason: Disconnect, wakes: &mut Wakes) {
        if self.closing.is_some() {
            return;
        }
        self.closing = Some((last, reason));
        self.release(total);
        wakes.owner = self.waker.take();
        wakes.senders = std::mem::take(&mut self.waiters);
    }
}

impl Outbox {
    pub(crate) fn new(limits: QueueLimits, total: Arc<Pool>) -> Self {
        Outbox {
            limits,
            total,
            inner: Mutex::new(Inner {
                queue: VecDeque::new(),
                queued: 0,
                account: None,
                full_since: None,
                closing: None,
                waker: None,
                waiters: Vec::new(),
                stalled: false,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves a consistent queue; keep going.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Charge this connection's queue to its account's `pool` from now on (what it holds
    /// already too, whether or not it fits: it is in the relay's pool).
    pub(crate) fn set_account(&self, pool: Arc<Pool>) {
        let mut inner = self.lock();
        if inner.account.is_none() {
            pool.add(inner.queued);
            inner.account = Some(pool);
        }
    }

    /// Queue `frame` unless the queue is full or closing (the caller drops it then).
    pub(crate) fn push(&self, frame: Bytes) -> Result<(), PushError> {
        self.push_at(frame, &Instant::now)
    }

    /// (`now` is asked only when a refusal needs the time: most pushes never read the clock.)
    fn push_at(&self, frame: Bytes, now: &dyn Fn() -> Instant) -> Result<(), PushError> {
        let mut wakes = Wakes::default();
        let result = self.offer(&mut self.lock(), frame, now, &mut wakes);
        wakes.wake();
        result.map_err(|(error, _)| error)
    }

    /// Queue `frame` for a sender that holds it while this queue is full: `Pending` (with
    /// `waiter`'s waker registered until the owner takes a frame or closes) when it does not
    /// fit the connection's own bound, unless the queue is stalled; any other refusal is final.
    pub(crate) fn push_or_wait(
        &self,
        frame: &Bytes,
        waiter: u64,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), PushError>> {
        self.push_or_wait_at(frame, waiter, cx, &Instant::now)
    }

    fn push_or_wait_at(
        &self,
        frame: &Bytes,
        waiter: u64,
        cx: &mut Context<'_>,
        now: &dyn Fn() -> Instant,
    ) -> Poll<Result<(), PushError>> {
        let mut wakes = Wakes::default();
        let mut inner = self.lock();
        let result = match self.offer(&mut inner, frame.clone(), now, &mut wakes) {
            Ok(()) => Poll::Ready(Ok(())),
            // (Not once the refusal cut the receiver: it is closing, nobody would wake us.)
            Err((PushError::Full(Bound::Connection), _))
                if !inner.stalled && inner.closing.is_none() =>
            {
                match inner.waiters.iter_mut().find(|(id, _)| *id == waiter) {
                    Some((_, waker)) => waker.clone_from(cx.waker()),
                    None => inner.waiters.push((waiter, cx.waker().clone())),
                }
                Poll::Pending
            }
            Err((error, _)) => Poll::Ready(Err(error)),
        };
        drop(inner);
        wakes.wake();
        result
    }

    /// `waiter` waited its whole time in vain: forget it, and refuse frames at once while the
    /// queue stays full (until the owner takes a frame).
    pub(crate) fn give_up(&self, waiter: u64) {
        let mut inner = self.lock();
        inner.waiters.retain(|(id, _)| *id != waiter);
        inner.stalled = true;
    }

    /// `waiter` no longer waits here (its frame went, or its connection is going).
    pub(crate) fn forget(&self, waiter: u64) {
        self.lock().waiters.retain(|(id, _)| *id != waiter);
    }

    /// Queue `frame` unless it does not fit; the frame comes back with the refusal.
    fn offer(
        &self,
        inner: &mut Inner,
        frame: Bytes,
        now: &dyn Fn() -> Instant,
        wakes: &mut Wakes,
    ) -> Result<(), (PushError, Bytes)> {
        if inner.closing.is_some() {
            return Err((PushError::Closing, frame));
        }
        let len = frame.len();
        let refused = if inner.queue.len() >= self.limits.depth
            || inner.queued.saturating_add(len) > self.limits.bytes
        {
            Some(Bound::Connection)
        } else if inner.queued.saturating_add(len) <= self.limits.reserve {
            if let Some(account) = &inner.account {
                account.add(len);
            }
            self.total.add(len);
            None
        } else if !inner.account.as_ref().is_none_or(|pool| pool.take(len)) {
            Some(Bound::Account)
        } else if !self.total.take(len) {
            if let Some(account) = &inner.account {
                account.give(len);
            }
            Some(Bound::Total)
        } else {
            None
        };
        if let Some(bound) = refused {
            // Full by its own measure: at its depth, or over half its bytes.
            let own = inner.queue.len() >= self.limits.depth
                || inner.queued.saturating_mul(2) > self.limits.bytes;
            if own {
                let now = now();
                let since = *inner.full_since.get_or_insert(now);
                if now.saturating_duration_since(since) >= self.limits.cut_after {
                    inner.close(&self.total, None, Disconnect::SlowReader, wakes);
                }
            }
            return Err((PushError::Full(bound), frame));
        }
        inner.queued += len;
        inner.queue.push_back(frame);
        wakes.owner = inner.waker.take();
        Ok(())
    }

    /// Ask the owner to write `last` (ahead of anything queued) and close. The first call wins.
    pub(crate) fn close_with(&self, last: Option<Bytes>, reason: Disconnect) {
        let mut wakes = Wakes::default();
        self.lock().close(&self.total, last, reason, &mut wakes);
        wakes.wake();
    }

    /// The next thing to do, or `Pending` (waking `cx` on the next push or close).
    pub(crate) fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Next> {
        self.poll_next_at(cx, &Instant::now)
    }

    fn poll_next_at(&self, cx: &mut Context<'_>, now: &dyn Fn() -> Instant) -> Poll<Next> {
        let mut wakes = Wakes::default();
        let mut inner = self.lock();
        if let Some(since) = inner.full_since
            && now().saturating_duration_since(since) >= self.limits.cut_after
        {
            inner.close(&self.total, None, Disconnect::SlowReader, &mut wakes);
        }
        let next = if let Some((last, reason)) = &mut inner.closing {
            Poll::Ready(Next::Close(last.take(), *reason))
        } else if let Some(frame) = self.take_front(&mut inner, usize::MAX, &mut wakes) {
            Poll::Ready(Next::Frame(frame))
        } else {
            match &inner.waker {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                _ => inner.waker = Some(cx.waker().clone()),
            }
            Poll::Pending
        };
        drop(inner);
        // The owner is the one running: only senders are woken here.
        wakes.owner = None;
        wakes.wake();
        next
    }

    /// The next frame if there is one of at most `max_len` bytes (the owner adding to a write
    /// batch), without registering for a wake-up.
    pub(crate) fn pop_within(&self, max_len: usize) -> Option<Bytes> {
        let mut wakes = Wakes::default();
        let mut inner = self.lock();
        let frame = if inner.closing.is_some() {
            None
        } else {
            self.take_front(&mut inner, max_len, &mut wakes)
        };
        drop(inner);
        wakes.wake();
        frame
    }

    /// Take the front frame if it is at most `max_len` bytes, give its bytes back, and hand
    /// the waiting senders to `wakes` (there is room now).
    fn take_front(&self, inner: &mut Inner, max_len: usize, wakes: &mut Wakes) -> Option<Bytes> {
        if inner.queue.front()?.len() > max_len {
            return None;
        }
        let frame = inner.queue.pop_front()?;
        let len = frame.len();
        inner.queued -= len;
        self.total.give(len);
        if let Some(account) = &inner.account {
            account.give(len);
        }
        if inner.queued.saturating_mul(4) < self.limits.bytes
            && inner.queue.len() < self.limits.depth / 2
        {
            inner.full_since = None;
        }
        inner.stalled = false;
        if !inner.waiters.is_empty() {
            wakes.senders = std::mem::take(&mut inner.waiters);
        }
        if inner.queue.is_empty() && inner.queue.capacity() > 4 {
            // Give back a burst's storage once it is written, so idle stays small.
            inner.queue = VecDeque::new();
        }
        Some(frame)
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        let total = self.total.clone();
        self.lock().release(&total);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn limits(depth: usize, bytes: usize) -> QueueLimits {
        QueueLimits {
            depth,
            bytes,
            reserve: 0,
            cut_after: Duration::from_secs(4),
        }
    }

    fn poll(outbox: &Outbox) -> Poll<Next> {
        outbox.poll_next(&mut Context::from_waker(Waker::noop()))
    }

    fn frame(len: usize) -> Bytes {
        Bytes::from(vec![7u8; len])
    }

    #[test]
    fn drops_newest_when_full_and_close_jumps_the_queue() {
        let outbox = Outbox::new(limits(2, 1000), Arc::new(Pool::new(1000)));
        assert_eq!(outbox.push(Bytes::from_static(b"a")), Ok(()));
        assert_eq!(outbox.push(Bytes::from_static(b"b")), Ok(()));
        assert_eq!(
            outbox.push(Bytes::from_static(b"c")),
            Err(PushError::Full(Bound::Connection))
        );
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
        let outbox = Outbox::new(limits(1, 1000), Arc::new(Pool::new(1000)));
        assert!(poll(&outbox).is_pending());
    }

    #[test]
    fn bytes_are_bounded_per_connection_account_and_relay() {
        let total = Arc::new(Pool::new(1000));
        let account = Arc::new(Pool::new(600));
        let a = Outbox::new(limits(32, 400), total.clone());
        let b = Outbox::new(limits(32, 400), total.clone());
        let c = Outbox::new(limits(32, 1000), total.clone());
        a.set_account(account.clone());
        b.set_account(account.clone());
        assert_eq!(a.push(frame(300)), Ok(()));
        assert_eq!(a.push(frame(200)), Err(PushError::Full(Bound::Connection)));
        assert_eq!(b.push(frame(300)), Ok(()));
        assert_eq!(b.push(frame(50)), Err(PushError::Full(Bound::Account)));
        assert_eq!(c.push(frame(350)), Ok(()));
        assert_eq!(c.push(frame(100)), Err(PushError::Full(Bound::Total)));
        assert_eq!((account.queued(), total.queued()), (600, 950));
        // Written, closed, dropped: every byte comes back.
        assert!(matches!(poll(&a), Poll::Ready(Next::Frame(_))));
        b.close_with(None, Disconnect::Shutdown);
        drop(c);
        assert_eq!((account.queued(), total.queued()), (0, 0));
        assert_eq!(a.push(frame(400)), Ok(()));
    }

    #[test]
    fn a_queue_within_its_reserve_takes_frames_when_the_pools_are_spent() {
        let total = Arc::new(Pool::new(1000));
        let account = Arc::new(Pool::new(1000));
        let reserve = QueueLimits {
            reserve: 250,
            ..limits(32, 1000)
        };
        let slow = Outbox::new(limits(32, 1000), total.clone());
        let other = Outbox::new(limits(32, 1000), total.clone());
        let keeping_up = Outbox::new(reserve, total.clone());
        let same_account = Outbox::new(reserve, total.clone());
        same_account.set_account(account.clone());
        assert_eq!(slow.push(frame(1000)), Ok(()));
        assert_eq!(other.push(frame(10)), Err(PushError::Full(Bound::Total)));
        // Within the reserve: queued and counted, the pools overdrawn.
        assert_eq!(keeping_up.push(frame(200)), Ok(()));
        assert_eq!(keeping_up.push(frame(50)), Ok(()));
        assert_eq!(
            keeping_up.push(frame(1)),
            Err(PushError::Full(Bound::Total))
        );
        assert_eq!(same_account.push(frame(250)), Ok(()));
        assert_eq!((account.queued(), total.queued()), (250, 1500));
        assert!(matches!(poll(&keeping_up), Poll::Ready(Next::Frame(_))));
        drop((slow, same_account));
        assert_eq!((account.queued(), total.queued()), (0, 50));
    }

    #[test]
    fn a_queue_that_stays_full_is_cut() {
        let start = Instant::now();
        let outbox = Outbox::new(limits(32, 1000), Arc::new(Pool::new(10_000)));
        for _ in 0..3 {
            assert_eq!(outbox.push_at(frame(300), &|| start), Ok(()));
        }
        let full = Err(PushError::Full(Bound::Connection));
        assert_eq!(outbox.push_at(frame(300), &|| start), full);
        // Draining a frame (900 → 600 bytes) is not enough to count as keeping up ...
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        let later = start + Duration::from_secs(2);
        assert!(matches!(
            outbox.poll_next_at(&mut cx, &|| later),
            Poll::Ready(Next::Frame(_))
        ));
        assert_eq!(outbox.push_at(frame(300), &|| later), Ok(()));
        assert_eq!(outbox.push_at(frame(300), &|| later), full);
        // ... so four seconds after it first filled, it is cut.
        let cut = start + Duration::from_secs(4);
        assert!(matches!(
            outbox.poll_next_at(&mut cx, &|| cut),
            Poll::Ready(Next::Close(None, Disconnect::SlowReader))
        ));
    }

    /// A waker that counts its wakes.
    struct Count(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counting() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        (count.clone(), Waker::from(count))
    }

    fn wakes(count: &Count) -> usize {
        count.0.load(Ordering::SeqCst)
    }

    #[test]
    fn a_sender_waits_for_room_and_is_woken_when_the_owner_takes_a_frame() {
        let outbox = Outbox::new(limits(2, 1000), Arc::new(Pool::new(1000)));
        let (count, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        assert_eq!(outbox.push(frame(1)), Ok(()));
        assert_eq!(outbox.push(frame(2)), Ok(()));
        let held = frame(3);
        assert!(outbox.push_or_wait(&held, 7, &mut cx).is_pending());
        // Polled again while still full: one entry per waiter, not two.
        assert!(outbox.push_or_wait(&held, 7, &mut cx).is_pending());
        assert_eq!(outbox.lock().waiters.len(), 1);
        assert!(matches!(poll(&outbox), Poll::Ready(Next::Frame(_))));
        assert_eq!(wakes(&count), 1);
        assert_eq!(outbox.push_or_wait(&held, 7, &mut cx), Poll::Ready(Ok(())));
        // A bound other than the connection's own is final at once.
        let total = Arc::new(Pool::new(10));
        let pooled = Outbox::new(limits(8, 1000), total);
        assert_eq!(
            pooled.push_or_wait(&frame(20), 7, &mut cx),
            Poll::Ready(Err(PushError::Full(Bound::Total)))
        );
    }

    #[test]
    fn closing_wakes_waiting_senders_and_refuses_them() {
        let outbox = Outbox::new(limits(1, 1000), Arc::new(Pool::new(1000)));
        let (count, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        assert_eq!(outbox.push(frame(1)), Ok(()));
        assert!(outbox.push_or_wait(&frame(1), 7, &mut cx).is_pending());
        outbox.close_with(None, Disconnect::Shutdown);
        assert_eq!(wakes(&count), 1);
        assert_eq!(
            outbox.push_or_wait(&frame(1), 7, &mut cx),
            Poll::Ready(Err(PushError::Closing))
        );
    }

    #[test]
    fn after_a_sender_gave_up_a_full_queue_refuses_at_once_until_it_drains() {
        let outbox = Outbox::new(limits(1, 1000), Arc::new(Pool::new(1000)));
        let (_count, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        assert_eq!(outbox.push(frame(1)), Ok(()));
        assert!(outbox.push_or_wait(&frame(1), 7, &mut cx).is_pending());
        outbox.give_up(7);
        assert!(outbox.lock().waiters.is_empty());
        let full = Poll::Ready(Err(PushError::Full(Bound::Connection)));
        assert_eq!(outbox.push_or_wait(&frame(1), 8, &mut cx), full);
        // The owner takes a frame: senders wait again.
        assert!(matches!(poll(&outbox), Poll::Ready(Next::Frame(_))));
        assert_eq!(outbox.push(frame(1)), Ok(()));
        assert!(outbox.push_or_wait(&frame(1), 8, &mut cx).is_pending());
        outbox.forget(8);
        assert!(outbox.lock().waiters.is_empty());
    }

    #[test]
    fn a_write_batch_takes_only_frames_that_fit() {
        let outbox = Outbox::new(limits(8, 1000), Arc::new(Pool::new(1000)));
        let (count, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        for len in [100, 200, 300] {
            assert_eq!(outbox.push(frame(len)), Ok(()));
        }
        assert_eq!(outbox.pop_within(99), None);
        assert_eq!(outbox.pop_within(100).map(|f| f.len()), Some(100));
        assert_eq!(outbox.pop_within(250).map(|f| f.len()), Some(200));
        // Taking frames for a batch wakes waiting senders too.
        while outbox.push(frame(10)).is_ok() {}
        assert!(outbox.push_or_wait(&frame(10), 7, &mut cx).is_pending());
        assert!(outbox.pop_within(1000).is_some());
        assert_eq!(wakes(&count), 1);
        outbox.close_with(None, Disconnect::Shutdown);
        assert_eq!(outbox.pop_within(1000), None);
    }

    #[test]
    fn a_queue_that_drains_is_not_cut() {
        let start = Instant::now();
        let outbox = Outbox::new(limits(32, 1000), Arc::new(Pool::new(10_000)));
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        for second in 0..10 {
            let now = start + Duration::from_secs(second);
            while outbox.push_at(frame(300), &|| now).is_ok() {}
            // The reader takes everything each second.
            while let Poll::Ready(next) = outbox.poll_next_at(&mut cx, &|| now) {
                assert!(matches!(next, Next::Frame(_)), "cut at second {second}");
            }
        }
    }
}
