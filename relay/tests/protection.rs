//! Slow and hostile peers: a frozen receiver, a full queue, duplicate logins, the login
//! deadline, malformed frames, connection caps, and the HTTP side of the port.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

mod common;

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::Message;
use common::*;
use muxagent_proto::frame::{ErrorCode, Frame, Role};
use muxagent_relay::limits::MAX_FRAME_LEN;
use muxagent_relay_client::{Client, ClientConfig, RelayUrl};
use smol::Async;
use smol::io::AsyncReadExt;

/// A TCP connection to `addr` with a tiny receive buffer, so a client that stops reading
/// stalls the relay's writes quickly.
fn tiny_socket(addr: SocketAddr) -> Async<TcpStream> {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket.connect(&addr.into()).expect("connect");
    Async::new(TcpStream::from(socket)).expect("async socket")
}

#[test]
fn a_frozen_receiver_stalls_nobody_and_is_cut_by_the_write_timeout() {
    smol::block_on(async {
        let temp = tempfile::tempdir().expect("temp dir");
        let mut config = common::config(temp.path());
        config.limits.write_timeout = Duration::from_millis(1500);
        config.limits.inbound_bytes_per_sec = 1 << 30;
        config.limits.inbound_burst_bytes = 1 << 30;
        let relay = TestRelay::start_with(config).await;
        let (frozen_id, sender_id, d2, m2) = (identity(), identity(), identity(), identity());

        // Account A: the frozen device and a machine that floods it.
        let url = RelayUrl::parse(&relay.url).expect("url");
        let mut frozen = within(
            "frozen login",
            Client::connect_over(
                tiny_socket(relay.addr),
                &url,
                &frozen_id,
                Role::Device,
                None,
                &ClientConfig::default(),
                Instant::now() + STEP,
            ),
        )
        .await
        .expect("frozen device logs in");
        pair(&relay, &frozen_id, &mut frozen, &sender_id).await;
        let mut flooder = relay.machine(&sender_id, "flood").await;
        // Account B: two peers that keep talking.
        let mut device2 = relay.device(&d2).await;
        pair(&relay, &d2, &mut device2, &m2).await;
        let mut machine2 = relay.machine(&m2, "calm").await;

        // From here on the frozen device never reads. Flood it: big frames fill the kernel's
        // buffers (up to 4 MiB on loopback) until the relay's write to it stalls; the small
        // frames after them then overflow its 32-deep queue at once.
        let big = vec![0xAB; 60 * 1024];
        for _ in 0..100 {
            flooder
                .send(&send(&frozen_id, &big))
                .await
                .expect("flooder sends");
        }
        for _ in 0..200 {
            flooder
                .send(&send(&frozen_id, b"small"))
                .await
                .expect("flooder sends");
        }
        // The other pair's round trips stay fast while the frozen one is stuck (a relay that
        // waited on the frozen receiver would take the whole write timeout, 1.5 s).
        for round in 0..20u32 {
            let started = Instant::now();
            device2
                .send(&send(&m2, &round.to_be_bytes()))
                .await
                .expect("send");
            let (_, got) = expect_recv(&mut machine2, "machine 2 receives").await;
            assert_eq!(got, round.to_be_bytes());
            machine2
                .send(&send(&d2, &round.to_be_bytes()))
                .await
                .expect("send");
            expect_recv(&mut device2, "device 2 receives").await;
            let rtt = started.elapsed();
            assert!(
                rtt < Duration::from_millis(750),
                "round trip {round} took {rtt:?}"
            );
        }
        // The flooder was told its frames were dropped (newest dropped, queue full) ...
        let code = expect_error(&mut flooder, "a drop notice").await;
        assert_eq!(
            code,
            ErrorCode::Dropped,
            "the queue overflowed before the write timeout"
        );
        assert!(
            relay
                .metric("relay_dropped_total{reason=\"queue_full\"}")
                .await
                > 0
        );
        // ... and the frozen receiver is cut by the write timeout.
        relay
            .wait_metric("relay_disconnects_total{reason=\"write_timeout\"}", 1)
            .await;
        // Once it is gone, sends to it say so.
        within("peer offline after the cut", async {
            loop {
                flooder
                    .send(&send(&frozen_id, b"ping"))
                    .await
                    .expect("send");
                if let Frame::Error(e) = flooder.recv().await.expect("flooder connected")
                    && e.code == ErrorCode::PeerOffline
                {
                    return;
                }
            }
        })
        .await;
        drop(frozen);
        relay.stop().await;
    });
}

#[test]
fn a_duplicate_login_displaces_the_old_connection() {
    smol::block_on(async {
        // One connection per device key here, so a device's second login displaces its first
        // as a machine's always does (the default cap is tested in `devices.rs`).
        let temp = tempfile::tempdir().expect("temp dir");
        let mut config = common::config(temp.path());
        config.limits.max_connections_per_device = 1;
        let relay = TestRelay::start_with(config).await;
        let (d, m) = (identity(), identity());
        let mut device = relay.device(&d).await;
        pair(&relay, &d, &mut device, &m).await;
        let mut machine = relay.machine(&m, "box").await;
        let mut newer = relay.device(&d).await;
        let frames = until_closed(&mut device, "old connection closed").await;
        assert!(
            frames
                .iter()
                .any(|f| matches!(f, Frame::Error(e) if e.code == ErrorCode::Displaced)),
            "{frames:?}"
        );
        machine
            .send(&send(&d, b"to the newest"))
            .await
            .expect("send");
        let (_, payload) = expect_recv(&mut newer, "the newest gets traffic").await;
        assert_eq!(payload, b"to the newest");
        // A duplicate machine too: the machine stays online, devices see no offline.
        let mut machine_again = relay.machine(&m, "box").await;
        until_closed(&mut machine, "old machine connection closed").await;
        newer.send(&send(&m, b"x")).await.expect("send");
        expect_recv(&mut machine_again, "newest machine gets traffic").await;
        relay
            .wait_metric("relay_disconnects_total{reason=\"displaced\"}", 2)
            .await;
        relay.stop().await;
    });
}

#[test]
fn the_login_deadline_closes_silent_connections() {
    smol::block_on(async {
        let temp = tempfile::tempdir().expect("temp dir");
        let mut config = common::config(temp.path());
        config.limits.login_deadline = Duration::from_millis(300);
        let relay = TestRelay::start_with(config).await;
        // A WebSocket that never logs in.
        let (mut idle, _hello) = within("open", Client::open(&relay.url, &ClientConfig::default()))
            .await
            .expect("open");
        let started = Instant::now();
        let frames = until_closed(&mut idle, "deadline").await;
        assert!(
            matches!(frames.as_slice(), [Frame::Error(e)] if e.code == ErrorCode::LoginTimeout),
            "{frames:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        // A TCP connection that never even sends an HTTP request.
        let mut tcp = Async::<TcpStream>::connect(relay.addr)
            .await
            .expect("connect");
        let mut buf = [0u8; 16];
        let read = within("raw TCP closed", tcp.read(&mut buf)).await;
        assert!(matches!(read, Ok(0) | Err(_)));
        assert!(
            relay
                .metric("relay_login_failures_total{reason=\"deadline\"}")
                .await
                >= 1
        );
        relay.stop().await;
    });
}

#[test]
fn malformed_frames_close_only_their_connection() {
    smol::block_on(async {
        let relay = TestRelay::start().await;
        let (d, m) = (identity(), identity());
        let mut device = relay.device(&d).await;
        pair(&relay, &d, &mut device, &m).await;
        let mut machine = relay.machine(&m, "box").await;

        let bad_inputs: Vec<(&str, Message)> = vec![
            (
                "garbage body",
                Message::Binary(vec![8, 0xff, 0xff, 0xff, 0xff, 0xff].into()),
            ),
            ("empty message", Message::Binary(Vec::new().into())),
            (
                "oversized",
                Message::Binary(vec![8; MAX_FRAME_LEN + 1].into()),
            ),
            ("text", Message::Text("hello".into())),
        ];
        for (what, message) in bad_inputs {
            let attacker_id = identity();
            let mut attacker = relay.device(&attacker_id).await;
            attacker.send_message(message).await.expect("send");
            let frames = until_closed(&mut attacker, what).await;
            assert!(
                frames
                    .iter()
                    .all(|f| matches!(f, Frame::Error(e) if e.code == ErrorCode::Malformed)),
                "{what}: {frames:?}"
            );
            // Everyone else is fine.
            device.send(&send(&m, what.as_bytes())).await.expect("send");
            let (_, payload) = expect_recv(&mut machine, what).await;
            assert_eq!(payload, what.as_bytes());
        }
        // An unknown kind is skipped, not fatal.
        device.send_bytes(vec![200, 1, 2, 3]).await.expect("send");
        device
            .send(&send(&m, b"after unknown"))
            .await
            .expect("send");
        let (_, payload) = expect_recv(&mut machine, "after an unknown kind").await;
        assert_eq!(payload, b"after unknown");
        assert_eq!(relay.metric("relay_unknown_frames_total").await, 1);
        assert!(relay.metric("relay_malformed_frames_total").await >= 4);
        relay
            .wait_metric("relay_disconnects_total{reason=\"oversized\"}", 1)
            .await;
        relay.stop().await;
    });
}

#[test]
fn an_abrupt_close_is_counted_as_a_reset_not_as_malformed() {
    smol::block_on(async {
        let relay = TestRelay::start().await;
        // Logged in, then gone without a WebSocket close (the process died, the network went).
        let logged_in = relay.device(&identity()).await;
        drop(logged_in);
        relay
            .wait_metric("relay_disconnects_total{reason=\"reset\"}", 1)
            .await;
        // Upgraded, then gone before logging in.
        let (before_login, _hello) =
            within("open", Client::open(&relay.url, &ClientConfig::default()))
                .await
                .expect("open");
        drop(before_login);
        relay
            .wait_metric("relay_disconnects_total{reason=\"reset\"}", 2)
            .await;
        assert_eq!(
            relay
                .metric("relay_disconnects_total{reason=\"malformed\"}")
                .await,
            0
        );
        assert_eq!(relay.metric("relay_malformed_frames_total").await, 0);
        relay.stop().await;
    });
}

#[test]
fn connection_caps_close_at_accept() {
    smol::block_on(async {
        let temp = tempfile::tempdir().expect("temp dir");
        let mut config = common::config(temp.path());
        config.limits.max_connections_per_prefix = 2;
        let relay = TestRelay::start_with(config).await;
        // Two connections from 127.0.1.2 fill its /24's share; the third is closed at once.
        let from = |ip: [u8; 4]| {
            let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                .expect("socket");
            socket
                .bind(&SocketAddr::from((ip, 0)).into())
                .expect("bind source");
            socket.connect(&relay.addr.into()).expect("connect");
            Async::new(TcpStream::from(socket)).expect("async")
        };
        let _held = [from([127, 0, 1, 2]), from([127, 0, 1, 2])];
        let mut third = from([127, 0, 1, 2]);
        let mut buf = [0u8; 8];
        let read = within("capped connection closed", third.read(&mut buf)).await;
        assert!(matches!(read, Ok(0) | Err(_)));
        // Another /24 (127.0.0.1's) is not affected.
        let (status, _) = relay.get("/healthz").await;
        assert!(status.contains("200"), "{status}");
        assert_eq!(
            relay
                .metric("relay_connections_refused_total{reason=\"per_prefix_cap\"}")
                .await,
            1
        );
        relay.stop().await;
    });
}

#[test]
fn http_endpoints_on_the_same_port() {
    smol::block_on(async {
        let relay = TestRelay::start().await;
        let (status, body) = relay.get("/healthz").await;
        assert!(status.contains("200") && body == "ok\n", "{status} {body}");
        // The web app: what it serves is checked in tests/web.rs.
        for page in ["/", "/pair"] {
            let (status, _) = relay.get(page).await;
            assert!(status.contains("200"), "{page}: {status}");
        }
        let (status, _) = relay.get("/nothing-here").await;
        assert!(status.contains("404"));
        let (status, _) = relay.get("/relay").await;
        assert!(status.contains("426"), "{status}");
        let (status, body) = relay.get("/metrics").await;
        assert!(status.contains("200"));
        for series in [
            "relay_connections{role=\"device\"}",
            "relay_logins_total",
            "relay_routed_frames_total{kind=\"send\"}",
            "relay_routed_bytes_total{kind=\"send\"}",
            "relay_dropped_total{reason=\"queue_full\"}",
            "relay_pairings_opened_total",
            "relay_registry_entries_total{kind=\"revoke\"}",
            "relay_unknown_frames_total",
            "relay_malformed_frames_total",
            "relay_login_failures_total{reason=\"bad_signature\"}",
        ] {
            assert!(
                body.lines().any(|l| l.starts_with(series)),
                "{series} missing from /metrics"
            );
        }
        // Connections by role are visible.
        let d = identity();
        let _device = relay.device(&d).await;
        within("the silent device's connection to go", async {
            while relay.metric("relay_connections{role=\"device\"}").await != 1 {
                smol::Timer::after(Duration::from_millis(20)).await;
            }
        })
        .await;
        relay.stop().await;
    });
}

#[test]
fn shutdown_tells_clients_to_reconnect() {
    smol::block_on(async {
        let relay = TestRelay::start().await;
        let d = identity();
        let mut device = relay.device(&d).await;
        let reading =
            smol::spawn(async move { until_closed(&mut device, "closed by shutdown").await });
        // Wait until the relay counts the login, then stop it.
        relay.wait_metric("relay_logins_total", 1).await;
        let addr = relay.addr;
        relay.stop().await;
        let frames = within("client sees the restart", reading).await;
        match frames.as_slice() {
            [Frame::Restarting(r)] => {
                assert!(r.reconnect_in_ms > 0 && r.try_for_ms >= r.reconnect_in_ms)
            }
            other => panic!("expected Restarting, got {other:?}"),
        }
        // The port no longer accepts.
        assert!(Async::<TcpStream>::connect(addr).await.is_err());
    });
}

#[test]
fn pings_keep_readers_alive_and_cut_silent_peers() {
    smol::block_on(async {
        let temp = tempfile::tempdir().expect("temp dir");
        let mut config = common::config(temp.path());
        config.limits.ping_interval = Duration::from_millis(100);
        config.limits.ping_jitter = Duration::from_millis(20);
        config.limits.pong_timeout = Duration::from_millis(200);
        let relay = TestRelay::start_with(config).await;
        let (alive_id, silent_id) = (identity(), identity());
        // This one keeps a recv pending, so its client answers every ping.
        let mut alive = relay.device(&alive_id).await;
        let reader = smol::spawn(async move {
            let result = alive.recv().await;
            (alive, result)
        });
        // This one never reads: its pongs never go out.
        let _silent = relay.device(&silent_id).await;
        smol::Timer::after(Duration::from_secs(1)).await;
        let (_, body) = relay.get("/metrics").await;
        eprintln!(
            "{}",
            body.lines()
                .filter(|l| l.starts_with("relay_disc")
                    || l.starts_with("relay_conn")
                    || l.starts_with("relay_frames"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        relay
            .wait_metric("relay_disconnects_total{reason=\"pong_timeout\"}", 1)
            .await;
        // Several ping intervals later the reader is still connected.
        within("the silent device's connection to go", async {
            while relay.metric("relay_connections{role=\"device\"}").await != 1 {
                smol::Timer::after(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(
            quiet_for(Duration::from_millis(500), reader)
                .await
                .is_none(),
            "the reader was closed"
        );
        assert_eq!(
            relay
                .metric("relay_disconnects_total{reason=\"pong_timeout\"}")
                .await,
            1
        );
        relay.stop().await;
    });
}

#[test]
fn the_inbound_byte_budget_slows_a_fast_sender() {
    smol::block_on(async {
        let temp = tempfile::tempdir().expect("temp dir");
        let mut config = common::config(temp.path());
        config.limits.inbound_bytes_per_sec = 256 * 1024;
        config.limits.inbound_burst_bytes = MAX_FRAME_LEN as u32;
        let relay = TestRelay::start_with(config).await;
        let (d, m) = (identity(), identity());
        let mut device = relay.device(&d).await;
        pair(&relay, &d, &mut device, &m).await;
        let mut machine = relay.machine(&m, "box").await;
        // 8 × 64 KiB = 512 KiB at 256 KiB/s after a 65 KiB burst: about 1.75 s.
        let payload = vec![7u8; 64 * 1024];
        let started = Instant::now();
        let sender = smol::spawn(async move {
            for _ in 0..8 {
                device.send(&send(&m, &payload)).await.expect("send");
            }
            device
        });
        for _ in 0..8 {
            expect_recv(&mut machine, "throttled frames arrive").await;
        }
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_millis(1200),
            "8 frames took only {elapsed:?}"
        );
        assert!(relay.metric("relay_throttled_total").await > 0);
        drop(within("sender done", sender).await);
        relay.stop().await;
    });
}
