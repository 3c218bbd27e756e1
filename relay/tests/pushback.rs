//! Push-back instead of drops (issue 14, item 3): a sender whose receiver's queue is full is
//! held, not dropped. A burst larger than the queue reaches a reader that keeps up (slowly)
//! whole and in order; two connections flooding each other both get through (holding a frame
//! never stops a connection's own writes); a receiver that never reads is still cut, and its
//! sender is told and reads again; a machine's frames for a phone that froze do not hold back
//! its frames for the other devices. Every test is bounded in frames and time, on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

mod common;

use std::time::Duration;

use common::raw::{self, Raw};
use common::*;
use muxagent_proto::frame::{ErrorCode, Frame, Role};
use muxagent_proto::identity::Identity;
use muxagent_relay::limits::RELAY_QUEUE_DEPTH;
use muxagent_relay_client::Client;
use smol::future::FutureExt;

/// Frames in a burst: four times a receiver's queue.
const BURST: usize = 4 * RELAY_QUEUE_DEPTH;

/// Payload of a burst's frames: large enough that the kernel's buffers take only a part of a
/// burst, small enough that a queue's bytes (1 MiB) hold its 32 frames, so the queue's depth
/// is the bound that fills.
const PAYLOAD: usize = 30 * 1024;

/// Pause after each frame a slow reader takes: it keeps up, at ~15 MB/s.
const PACE: Duration = Duration::from_millis(2);

/// Payload number `n`.
fn numbered(n: usize) -> Vec<u8> {
    let mut payload = vec![0xA5; PAYLOAD];
    payload[..4].copy_from_slice(&(n as u32).to_be_bytes());
    payload
}

fn number(payload: &[u8]) -> usize {
    u32::from_be_bytes(payload[..4].try_into().expect("numbered")) as usize
}

/// A burst from the sender of `to`, as the bytes of its WebSocket messages.
fn burst(to: &Identity) -> Vec<u8> {
    (0..BURST)
        .flat_map(|n| raw::message(&send(to, &numbered(n))))
        .collect()
}

/// A connection of `id` logged in over a socket with a 4 KiB receive buffer, so what it does
/// not read backs up into the relay's queue at once.
async fn narrow(relay: &TestRelay, id: &Identity, role: Role) -> Raw {
    let mut raw = Raw::new(raw::tcp(relay.addr, None, Some(4096)).expect("tcp"));
    let hello = within("upgrade", raw.upgrade()).await.expect("upgrade");
    within("login", raw.log_in(id, &hello, role))
        .await
        .expect("login");
    raw
}

/// Take `count` routed frames from `raw`, pausing [`PACE`] after each; their numbers in the
/// order they came, and the codes of any errors in between.
async fn read_slowly(raw: &mut Raw, count: usize) -> (Vec<usize>, Vec<ErrorCode>) {
    let (mut numbers, mut errors) = (Vec::new(), Vec::new());
    while numbers.len() < count {
        match raw.recv().await.expect("read") {
            Some(Frame::Recv(recv)) => numbers.push(number(&recv.payload)),
            Some(Frame::Error(error)) => errors.push(error.code),
            Some(_) => {}
            None => panic!("closed after {} frames", numbers.len()),
        }
        smol::Timer::after(PACE).await;
    }
    (numbers, errors)
}

/// Frames the relay has dropped, all reasons together.
async fn dropped(relay: &TestRelay) -> u64 {
    let (_, body) = relay.get("/metrics").await;
    body.lines()
        .filter(|line| line.starts_with("relay_dropped_total{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Send `client` a frame to a stranger and wait for its refusal: everything routed before it
/// has been answered. The `Dropped` notices seen on the way.
async fn barrier(client: &mut Client) -> usize {
    client
        .send(&send(&identity(), b"barrier"))
        .await
        .expect("send");
    let mut notices = 0;
    recv_until(client, "the barrier's refusal", |frame| match frame {
        Frame::Error(e) if e.code == ErrorCode::Dropped => {
            notices += 1;
            None
        }
        Frame::Error(e) if e.code == ErrorCode::NotAllowed => Some(()),
        _ => None,
    })
    .await;
    notices
}

/// [`barrier`] for a raw connection.
async fn raw_barrier(raw: &mut Raw) -> usize {
    raw.write(&raw::message(&send(&identity(), b"barrier")))
        .await
        .expect("write");
    let mut notices = 0;
    within("the barrier's refusal", async {
        loop {
            match raw.recv().await.expect("read") {
                Some(Frame::Error(e)) if e.code == ErrorCode::Dropped => notices += 1,
                Some(Frame::Error(e)) if e.code == ErrorCode::NotAllowed => return,
                Some(_) => {}
                None => panic!("closed before the barrier's refusal"),
            }
        }
    })
    .await;
    notices
}

#[test]
fn a_burst_of_four_queues_reaches_a_slow_steady_reader_whole_and_in_order() {
    smol::block_on(async {
        let relay = TestRelay::start().await;
        let (d, m) = (identity(), identity());
        let mut device = relay.device(&d).await;
        pair(&relay, &d, &mut device, &m).await;
        device.close().await;
        let mut device = within("device login", Raw::login(relay.addr, &d, Role::Device))
            .await
            .expect("device logs in");
        let mut machine = narrow(&relay, &m, Role::Machine).await;
        // One write: the frames go back to back, as fast as the relay takes them.
        let bytes = burst(&m);
        let tcp = device.tcp.clone();
        let sending = async {
            smol::io::AsyncWriteExt::write_all(&mut &*tcp, &bytes)
                .await
                .expect("device writes");
        };
        let (_, (numbers, errors)) = within(
            "the burst",
            smol::future::zip(sending, read_slowly(&mut machine, BURST)),
        )
        .await;
        let notices = raw_barrier(&mut device).await;
        let held = relay.metric("relay_pushback_total").await;
        eprintln!(
            "figure: a burst of {BURST} frames of {PAYLOAD} B to a reader taking one per \
             {PACE:?}: {} arrived, {held} held by the sender's connection, {} dropped",
            numbers.len(),
            dropped(&relay).await
        );
        assert_eq!(numbers, (0..BURST).collect::<Vec<_>>(), "lost or reordered");
        assert!(errors.is_empty(), "the reader got {errors:?}");
        assert_eq!(notices, 0, "the sender was told of drops");
        assert_eq!(dropped(&relay).await, 0);
        // The burst did overflow the queue: the frames past it were held, not dropped.
        assert!(
            held > 0,
            "nothing was held: the test did not fill the queue"
        );
        relay.stop().await;
    });
}

#[test]
fn two_connections_flooding_each_other_both_get_everything_through() {
    smol::block_on(async {
        let relay = TestRelay::start().await;
        let (d, m) = (identity(), identity());
        let mut device = relay.device(&d).await;
        pair(&relay, &d, &mut device, &m).await;
        device.close().await;
        let mut device = narrow(&relay, &d, Role::Device).await;
        let mut machine = narrow(&relay, &m, Role::Machine).await;
        let (to_machine, to_device) = (burst(&m), burst(&d));
        let (device_tcp, machine_tcp) = (device.tcp.clone(), machine.tcp.clone());
        // Each writes its whole burst while reading the other's slowly: both queues fill,
        // and each connection holds a frame for the other's queue at once.
        let writing = smol::future::zip(
            async {
                smol::io::AsyncWriteExt::write_all(&mut &*device_tcp, &to_machine)
                    .await
                    .expect("device writes");
            },
            async {
                smol::io::AsyncWriteExt::write_all(&mut &*machine_tcp, &to_device)
                    .await
                    .expect("machine writes");
            },
        );
        let reading = smol::future::zip(
            read_slowly(&mut device, BURST),
            read_slowly(&mut machine, BURST),
        );
        let (_, ((at_device, device_errors), (at_machine, machine_errors))) =
            within("both floods", smol::future::zip(writing, reading)).await;
        let held = relay.metric("relay_pushback_total").await;
        eprintln!(
            "figure: two connections sent each other {BURST} frames of {PAYLOAD} B at once: \
             {} and {} arrived, {held} held, {} dropped",
            at_device.len(),
            at_machine.len(),
            dropped(&relay).await
        );
        let all: Vec<usize> = (0..BURST).collect();
        assert_eq!(at_device, all, "the device's frames were lost or reordered");
        assert_eq!(
            at_machine, all,
            "the machine's frames were lost or reordered"
        );
        assert!(device_errors.is_empty() && machine_errors.is_empty());
        assert_eq!(dropped(&relay).await, 0);
        assert!(
            held > 0,
            "nothing was held: the test did not fill the queues"
        );
        relay.stop().await;
    });
}

#[test]
fn a_receiver_that_never_reads_is_cut_and_its_sender_is_told_and_reads_again() {
    smol::block_on(async {
        let relay = TestRelay::start().await;
        let (d, m) = (identity(), identity());
        let mut device = relay.device(&d).await;
        pair(&relay, &d, &mut device, &m).await;
        device.close().await;
        // Logged in, and never reads again.
        let _stuck = narrow(&relay, &d, Role::Device).await;
        let mut machine = relay.machine(&m, "box").await;
        // Send to it, one frame at a time, until the relay says it is gone: first its queue
        // fills and a frame is held for the push-back time, then dropped (its queue now counts
        // as stalled: the next ones are dropped at once), and then its writes time out.
        let payload = vec![0x5A; 60 * 1024];
        let mut seen = Vec::new();
        within("the stuck receiver to be cut", async {
            for _ in 0..2_000 {
                machine.send(&send(&d, &payload)).await.expect("send");
                if let Some(Ok(Frame::Error(error))) =
                    quiet_for(Duration::ZERO, machine.recv()).await
                {
                    if seen.last() != Some(&error.code) {
                        seen.push(error.code);
                    }
                    if error.code == ErrorCode::PeerOffline {
                        return;
                    }
                }
            }
            panic!("still no PeerOffline, after {seen:?}");
        })
        .await;
        eprintln!("figure: a machine sending to a device that never reads was told {seen:?}");
        assert_eq!(
            seen.first(),
            Some(&ErrorCode::Dropped),
            "the sender was not told of the drops first: {seen:?}"
        );
        assert!(relay.metric("relay_pushback_total").await >= 1);
        assert!(
            relay
                .metric("relay_dropped_total{reason=\"queue_full\"}")
                .await
                >= 1
        );
        let cut = relay
            .metric("relay_disconnects_total{reason=\"write_timeout\"}")
            .await
            + relay
                .metric("relay_disconnects_total{reason=\"slow_reader\"}")
                .await;
        assert_eq!(cut, 1, "the stuck receiver was not cut");
        // The sender's connection reads again: a request is answered.
        barrier(&mut machine).await;
        relay.stop().await;
    });
}

/// Frames the machine sends each of its two devices in the frozen-phone test.
const FAN_OUT: usize = 1_000;

#[test]
fn a_frozen_phone_does_not_hold_back_its_machines_frames_for_other_devices() {
    smol::block_on(async {
        // Push-back, slow-reader cut and write timeout far past the test's own deadline
        // (`STEP`): were the machine's connection to stop reading until it gave up on the
        // frozen phone, or until that phone was cut, the healthy one would wait past it.
        let temp = tempfile::tempdir().expect("tempdir");
        let mut config = common::config(temp.path());
        config.limits.pushback = Duration::from_secs(60);
        config.limits.slow_reader_cut = Duration::from_secs(60);
        config.limits.write_timeout = Duration::from_secs(60);
        let relay = TestRelay::start_with(config).await;
        let (frozen, healthy, m) = (identity(), identity(), identity());
        for device in [&frozen, &healthy] {
            let mut client = relay.device(device).await;
            pair(&relay, device, &mut client, &m).await;
            client.close().await;
        }
        // Small frames, one for each device in turn, in one write: the frozen phone's queue
        // and then the frames held for it fill long before the stream ends. (Made before any
        // login: the clients answer no pings meanwhile.)
        let to = |device: &Identity| device.public().fingerprint();
        let (to_frozen, to_healthy) = (to(&frozen), to(&healthy));
        let bytes: Vec<u8> = (0..FAN_OUT)
            .flat_map(|n| {
                let mut payload = vec![0x3C; 1024];
                payload[..4].copy_from_slice(&(n as u32).to_be_bytes());
                [to_frozen, to_healthy].map(|to| {
                    raw::message(&Frame::Send(muxagent_proto::frame::Send {
                        to,
                        payload: payload.clone(),
                    }))
                })
            })
            .flatten()
            .collect();
        // Logged in, and never reads again.
        let _frozen = narrow(&relay, &frozen, Role::Device).await;
        let mut healthy = within("login", Raw::login(relay.addr, &healthy, Role::Device))
            .await
            .expect("healthy device logs in");
        let mut machine = within("login", Raw::login(relay.addr, &m, Role::Machine))
            .await
            .expect("machine logs in");
        let tcp = machine.tcp.clone();
        let sending = async {
            smol::io::AsyncWriteExt::write_all(&mut &*tcp, &bytes)
                .await
                .expect("machine writes");
        };
        let receiving = async {
            let mut numbers = Vec::new();
            while numbers.len() < FAN_OUT {
                match healthy.recv().await.expect("read") {
                    Some(Frame::Recv(recv)) => numbers.push(number(&recv.payload)),
                    Some(_) => {}
                    None => panic!("closed after {} frames", numbers.len()),
                }
            }
            numbers
        };
        // The machine reads what the relay tells it meanwhile (the frozen phone's drops).
        let told = async { while let Ok(Some(_)) = machine.recv().await {} };
        // Boxed: the joined futures are too large for a test thread's stack in a debug build.
        let stream = Box::pin(smol::future::zip(sending, receiving));
        let ((), numbers) = within(
            "every frame for the healthy device",
            Box::pin(async { Some(stream.await) }.or(async {
                told.await;
                None
            })),
        )
        .await
        .expect("the machine's connection closed");
        let queue_full = relay
            .metric("relay_dropped_total{reason=\"queue_full\"}")
            .await;
        eprintln!(
            "figure: a machine streamed {FAN_OUT} frames of 1 KiB to each of a healthy and a \
             frozen phone: the healthy one got {}, {queue_full} were dropped for the frozen one",
            numbers.len()
        );
        assert_eq!(
            numbers,
            (0..FAN_OUT).collect::<Vec<_>>(),
            "the healthy device's frames were lost or reordered"
        );
        assert!(
            queue_full > 0,
            "nothing was dropped: the phone never filled"
        );
        relay.stop().await;
    });
}
