//! A deadline around any future: the client bounds every step of connecting with it, and the
//! server every step of a connection.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use smol::Timer;

/// `fut`, or `None` once `deadline` passes.
pub fn until<F: Future>(deadline: Instant, fut: F) -> Until<F> {
    Until {
        fut: Box::pin(fut),
        timer: Timer::at(deadline),
    }
}

/// The future of [`until`]: a plain struct (the inner future boxed), so wrapping a future in
/// a deadline adds a timer and a pointer, not a copy of the future's state.
pub struct Until<F> {
    fut: Pin<Box<F>>,
    timer: Timer,
}

impl<F: Future> Future for Until<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Poll::Ready(value) = this.fut.as_mut().poll(cx) {
            return Poll::Ready(Some(value));
        }
        match Pin::new(&mut this.timer).poll(cx) {
            Poll::Ready(_) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}
