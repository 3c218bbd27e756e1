//! The byte stream under a relay WebSocket, metered. Every byte a client sends passes through
//! [`Metered`] before tungstenite sees it:
//!
//! - It is **charged** to the connection's inbound [`Budget`] as it is read: WebSocket headers,
//!   pings, pongs and empty continuation frames cost what they take on the wire, like payloads.
//!   While the budget is overspent nothing more is read (the refill timer is awaited instead),
//!   so TCP pushes back before any frame is parsed or answered.
//! - [`FrameMeter`] follows the **frame headers** in it (a header is at most 14 bytes; payloads
//!   are counted past, never copied or parsed) and stops the stream at the first header that
//!   breaks a rule: before login anything but one binary frame of at most
//!   [`RELAY_MAX_LOGIN_MESSAGE_LEN`] bytes; after it a message over [`MAX_FRAME_LEN`] or in more
//!   than [`RELAY_MAX_FRAGMENTS_PER_MESSAGE`] frames, or more than
//!   [`RELAY_MAX_CONTROL_FRAMES_PER_SEC`] control frames in a second. tungstenite gets an IO
//!   error; [`Metered::violation`] says which rule, for the close reason.
//!
//! Checking at the header matters for memory too: tungstenite reserves a frame's whole declared
//! length as soon as its header arrives, so a header the relay refuses must never reach it.
//! This is not a second WebSocket parser: tungstenite still parses, unmasks and validates every
//! frame; the meter only reads the fields that say how much follows and what kind it is.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use crate::limits::{
    MAX_FRAME_LEN, RELAY_MAX_CONTROL_FRAMES_PER_SEC, RELAY_MAX_FRAGMENTS_PER_MESSAGE,
    RELAY_MAX_LOGIN_MESSAGE_LEN,
};
use smol::Timer;
use smol::io::{AsyncRead, AsyncWrite};

use crate::bucket::{Budget, Window};
use crate::metrics::Metrics;
use crate::stream::Stream;

/// A rule a client's byte stream broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Violation {
    /// Before login: a frame other than one binary frame of a login's size, or any frame after
    /// it before the relay answered.
    NotALogin,
    /// A message longer than a relay frame.
    TooLong,
    /// A message in more frames than allowed.
    Fragments,
    /// Control frames past their rate.
    ControlFlood,
}

impl Violation {
    /// What the client is told.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Violation::NotALogin => {
                "only a Login, as one binary frame of at most 512 bytes, may be sent before \
                 LoginOk"
            }
            Violation::TooLong => "a message is longer than a relay frame",
            Violation::Fragments => "a message came in more than 16 frames",
            Violation::ControlFlood => "more than 16 control frames in a second",
        }
    }

    fn error(self) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, self.reason())
    }
}

const OP_CONTINUE: u8 = 0x0;
const OP_BINARY: u8 = 0x2;
/// Opcodes with this bit are control frames (close, ping, pong, reserved).
const CONTROL_BIT: u8 = 0x8;
/// Two bytes, an 8-byte extended length, a 4-byte masking key.
const MAX_HEADER_LEN: usize = 14;

/// The fields of a frame header the meter needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Header {
    fin: bool,
    opcode: u8,
    len: u64,
}

impl Header {
    /// The header, once `bytes` hold all of it (RFC 6455 § 5.2).
    fn parse(bytes: &[u8]) -> Option<Header> {
        let [first, second, rest @ ..] = bytes else {
            return None;
        };
        let extended = match second & 0x7F {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if second & 0x80 != 0 { 4 } else { 0 };
        if rest.len() < extended + mask {
            return None;
        }
        let len = match extended {
            0 => u64::from(second & 0x7F),
            2 => u64::from(u16::from_be_bytes([rest[0], rest[1]])),
            _ => {
                let mut len = [0u8; 8];
                len.copy_from_slice(&rest[..8]);
                u64::from_be_bytes(len)
            }
        };
        Some(Header {
            fin: first & 0x80 != 0,
            opcode: first & 0x0F,
            len,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for the login frame.
    Login,
    /// The login frame went by; nothing more until the relay opens the meter.
    LoginSent,
    /// Logged in.
    Open,
}

/// Follows the frame headers of a client's byte stream and checks each against the rules
/// (sans-IO: bytes and the time in, a verdict out).
pub(crate) struct FrameMeter {
    head: [u8; MAX_HEADER_LEN],
    head_len: u8,
    /// Payload bytes of the current frame not seen yet.
    remaining: u64,
    /// Frames of the data message in progress (0 between messages).
    fragments: usize,
    /// Payload bytes of the data message in progress.
    message_len: u64,
    phase: Phase,
    control: Window,
    violation: Option<Violation>,
}

impl FrameMeter {
    pub(crate) fn new(now: Instant) -> Self {
        FrameMeter {
            head: [0; MAX_HEADER_LEN],
            head_len: 0,
            remaining: 0,
            fragments: 0,
            message_len: 0,
            phase: Phase::Login,
            control: Window::new(now),
            violation: None,
        }
    }

    /// The client logged in: the rules for a logged-in connection apply from here on.
    pub(crate) fn open(&mut self) {
        self.phase = Phase::Open;
    }

    /// The rule broken, once one is (the meter refuses everything after it).
    pub(crate) fn violation(&self) -> Option<Violation> {
        self.violation
    }

    /// Follow `bytes`, the next bytes of the stream, read at `now`.
    pub(crate) fn feed(&mut self, mut bytes: &[u8], now: Instant) -> Result<(), Violation> {
        if let Some(violation) = self.violation {
            return Err(violation);
        }
        while let Some((&byte, rest)) = bytes.split_first() {
            if self.remaining > 0 {
                let skip = self.remaining.min(bytes.len() as u64);
                self.remaining -= skip;
                bytes = &bytes[skip as usize..];
                continue;
            }
            bytes = rest;
            self.head[usize::from(self.head_len)] = byte;
            self.head_len += 1;
            if let Some(header) = Header::parse(&self.head[..usize::from(self.head_len)]) {
                self.head_len = 0;
                if let Err(violation) = self.check(header, now) {
                    self.violation = Some(violation);
                    return Err(violation);
                }
                self.remaining = header.len;
            }
        }
        Ok(())
    }

    fn check(&mut self, header: Header, now: Instant) -> Result<(), Violation> {
        match self.phase {
            Phase::Login => {
                let login = header.opcode == OP_BINARY
                    && header.fin
                    && header.len <= RELAY_MAX_LOGIN_MESSAGE_LEN as u64;
                if !login {
                    return Err(Violation::NotALogin);
                }
                self.phase = Phase::LoginSent;
                return Ok(());
            }
            Phase::LoginSent => return Err(Violation::NotALogin),
            Phase::Open => {}
        }
        if header.opcode & CONTROL_BIT != 0 {
            let second = Duration::from_secs(1);
            if !self
                .control
                .allow(now, RELAY_MAX_CONTROL_FRAMES_PER_SEC, second)
            {
                return Err(Violation::ControlFlood);
            }
            return Ok(());
        }
        // A continuation without a message in progress is tungstenite's to refuse.
        let (fragments, len) = if header.opcode == OP_CONTINUE {
            (
                self.fragments + 1,
                self.message_len.saturating_add(header.len),
            )
        } else {
            (1, header.len)
        };
        if len > MAX_FRAME_LEN as u64 {
            return Err(Violation::TooLong);
        }
        if fragments > RELAY_MAX_FRAGMENTS_PER_MESSAGE {
            return Err(Violation::Fragments);
        }
        (self.fragments, self.message_len) = if header.fin { (0, 0) } else { (fragments, len) };
        Ok(())
    }
}

/// A connection's byte stream with its reads charged and metered (see the module docs).
pub(crate) struct Metered {
    inner: Stream,
    /// Bytes that arrived with the HTTP request head, handed out before the socket's.
    early: Vec<u8>,
    /// `None` until login: before it the meter lets one login-sized frame through, no more.
    budget: Option<Arc<Budget>>,
    refill: Timer,
    meter: FrameMeter,
    metrics: Arc<Metrics>,
}

impl Metered {
    pub(crate) fn new(inner: Stream, early: Vec<u8>, metrics: Arc<Metrics>) -> Self {
        Metered {
            inner,
            early,
            budget: None,
            refill: Timer::never(),
            meter: FrameMeter::new(Instant::now()),
            metrics,
        }
    }

    /// The connection logged in: charge its reads to `budget` (its key's) from now on.
    pub(crate) fn open(&mut self, budget: Arc<Budget>) {
        self.budget = Some(budget);
        self.meter.open();
    }

    /// The rule the client broke, if a read failed for that.
    pub(crate) fn violation(&self) -> Option<Violation> {
        self.meter.violation()
    }
}

impl AsyncRead for Metered {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(violation) = this.meter.violation() {
            return Poll::Ready(Err(violation.error()));
        }
        // One clock read per read: the socket read between does not block.
        let mut now = Instant::now();
        if let Some(budget) = &this.budget {
            while let Some(wait) = budget.wait(now) {
                this.refill.set_after(wait);
                if Pin::new(&mut this.refill).poll(cx).is_pending() {
                    this.metrics.throttled();
                    return Poll::Pending;
                }
                now = Instant::now();
            }
        }
        let read = if this.early.is_empty() {
            ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?
        } else {
            let n = buf.len().min(this.early.len());
            buf[..n].copy_from_slice(&this.early[..n]);
            this.early.drain(..n);
            if this.early.is_empty() {
                this.early = Vec::new();
            }
            n
        };
        if let Some(budget) = &this.budget {
            budget.spend(read, now);
        }
        if let Err(violation) = this.meter.feed(&buf[..read], now) {
            return Poll::Ready(Err(violation.error()));
        }
        Poll::Ready(Ok(read))
    }
}

impl AsyncWrite for Metered {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame header declaring `len` payload bytes.
    fn header(opcode: u8, fin: bool, len: usize) -> Vec<u8> {
        let mut out = vec![(u8::from(fin) << 7) | opcode];
        match len {
            0..=125 => out.push(0x80 | len as u8),
            126..=0xFFFF => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&[1, 2, 3, 4]);
        out
    }

    fn frame(opcode: u8, fin: bool, len: usize) -> Vec<u8> {
        let mut out = header(opcode, fin, len);
        out.resize(out.len() + len, 0xEE);
        out
    }

    fn open_meter(now: Instant) -> FrameMeter {
        let mut meter = FrameMeter::new(now);
        meter.open();
        meter
    }

    #[test]
    fn headers_are_found_however_the_bytes_are_split() {
        let now = Instant::now();
        let mut stream = frame(OP_BINARY, true, 300);
        stream.extend(frame(OP_BINARY, true, 70_000.min(MAX_FRAME_LEN)));
        stream.extend(frame(OP_BINARY, true, 5));
        for split in [1, 2, 3, 7, 13, 4096] {
            let mut meter = open_meter(now);
            for chunk in stream.chunks(split) {
                assert_eq!(meter.feed(chunk, now), Ok(()), "split {split}");
            }
            assert_eq!((meter.remaining, meter.head_len), (0, 0), "split {split}");
        }
    }

    #[test]
    fn before_login_only_one_login_sized_binary_frame() {
        let now = Instant::now();
        let login = frame(OP_BINARY, true, RELAY_MAX_LOGIN_MESSAGE_LEN);
        assert_eq!(FrameMeter::new(now).feed(&login, now), Ok(()));
        for bad in [
            header(OP_BINARY, true, RELAY_MAX_LOGIN_MESSAGE_LEN + 1),
            header(OP_BINARY, false, 10),
            header(0x1, true, 10),
            header(0x9, true, 0),
            header(0xA, true, 0),
        ] {
            let mut meter = FrameMeter::new(now);
            assert_eq!(meter.feed(&bad, now), Err(Violation::NotALogin));
            // And for good: nothing more is read.
            assert_eq!(meter.feed(&login, now), Err(Violation::NotALogin));
        }
        // A second frame before the relay answered.
        let mut meter = FrameMeter::new(now);
        let mut two = login.clone();
        two.extend(frame(OP_BINARY, true, 3));
        assert_eq!(meter.feed(&two, now), Err(Violation::NotALogin));
    }

    #[test]
    fn control_frames_are_rate_limited() {
        let now = Instant::now();
        let mut meter = open_meter(now);
        let ping = frame(0x9, true, 4);
        for _ in 0..RELAY_MAX_CONTROL_FRAMES_PER_SEC {
            assert_eq!(meter.feed(&ping, now), Ok(()));
        }
        assert_eq!(meter.feed(&ping, now), Err(Violation::ControlFlood));
        let mut meter = open_meter(now);
        for second in 0..5 {
            let at = now + Duration::from_secs(second);
            for _ in 0..RELAY_MAX_CONTROL_FRAMES_PER_SEC {
                assert_eq!(meter.feed(&frame(0xA, true, 0), at), Ok(()));
            }
        }
    }

    #[test]
    fn fragments_and_length_are_capped_per_message() {
        let now = Instant::now();
        let mut meter = open_meter(now);
        let mut message = frame(OP_BINARY, false, 1);
        for _ in 1..RELAY_MAX_FRAGMENTS_PER_MESSAGE - 1 {
            message.extend(frame(OP_CONTINUE, false, 0));
        }
        message.extend(frame(OP_CONTINUE, true, 1));
        // Twice: the count starts again with each message; control frames may interleave.
        assert_eq!(meter.feed(&message, now), Ok(()));
        assert_eq!(meter.feed(&frame(0x9, true, 0), now), Ok(()));
        assert_eq!(meter.feed(&message, now), Ok(()));
        let mut endless = frame(OP_BINARY, false, 0);
        for _ in 0..RELAY_MAX_FRAGMENTS_PER_MESSAGE {
            endless.extend(frame(OP_CONTINUE, false, 0));
        }
        assert_eq!(meter.feed(&endless, now), Err(Violation::Fragments));

        let mut meter = open_meter(now);
        let half = MAX_FRAME_LEN / 2 + 1;
        let mut long = frame(OP_BINARY, false, half);
        long.extend(header(OP_CONTINUE, true, half));
        assert_eq!(meter.feed(&long, now), Err(Violation::TooLong));
        let mut meter = open_meter(now);
        assert_eq!(
            meter.feed(&header(OP_BINARY, true, MAX_FRAME_LEN + 1), now),
            Err(Violation::TooLong)
        );
    }
}
