//! Several live connections per device key (tabs of the web app, `ctl watch` beside `ctl
//! approve`): all of them get what a machine sends, a login past the cap displaces the oldest,
//! they share one inbound budget, and machines hear when the device comes, goes, and which of
//! their channels ended with a connection.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

mod common;

use std::time::{Duration, Instant};

use common::*;
use muxagent_proto::frame::{DevicePresence, ErrorCode, Frame};
use muxagent_proto::identity::Identity;
use muxagent_proto::noise::ConnectionId;
use muxagent_relay::limits::{MAX_FRAME_LEN, RELAY_MAX_CONNECTIONS_PER_DEVICE};
use muxagent_relay_client::Client;

/// A session-init packet as a device's link sends it (the relay reads only its header).
fn session_init(connection: ConnectionId) -> Vec<u8> {
    let mut packet = vec![4];
    packet.extend_from_slice(&connection.0);
    packet.extend_from_slice(&[0x11; 48]);
    packet
}

/// The next `DevicePresence`, skipping other frames.
async fn device_presence(machine: &mut Client, what: &str) -> DevicePresence {
    recv_until(machine, what, |frame| match frame {
        Frame::DevicePresence(presence) => Some(presence.clone()),
        Frame::Error(error) => panic!("{what}: got error {error:?}"),
        _ => None,
    })
    .await
}

/// Frames up to the next `Recv` (which is left out).
async fn frames_before_recv(client: &mut Client, what: &str) -> Vec<Frame> {
    within(what, async {
        let mut before = Vec::new();
        loop {
            match client.recv().await.expect("connected") {
                Frame::Recv(_) => return before,
                other => before.push(other),
            }
        }
    })
    .await
}

/// Wait until the gauge `series` is exactly `value`.
async fn wait_gauge(relay: &TestRelay, series: &str, value: u64) {
    within(&format!("{series} to be {value}"), async {
        loop {
            if relay.metric(series).await == value {
                return;
            }
            smol::Timer::after(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// A paired device key with one connection, and its machine logged in.
async fn account(relay: &TestRelay) -> (Identity, Client, Identity, Client) {
    let (d, m) = (identity(), identity());
    let mut device = relay.device(&d).await;
    pair(relay, &d, &mut device, &m).await;
    let machine = relay.machine(&m, "box").await;
    (d, device, m, machine)
}

#[test]
fn two_logins_of_one_device_key_both_stay_and_both_get_what_a_machine_sends() {
    smol::block_on(async {
        let relay = TestRelay::start().await;
        let (d, mut first, m, mut machine) = account(&relay).await;
        // The machine logged in after the device: it learns at once that the device is online.
        let presence = device_presence(&mut machine, "presence at login").await;
        assert_eq!(
            (presence.device, presence.online, presence.closed.len()),
            (d.public().fingerprint(), true, 0)
        );

        let mut second = relay.device(&d).await;
        // The device was online already: the machine hears nothing of the second login.
        second.send(&send(&m, b"from two")).await.expect("send");
        let before = frames_before_recv(&mut machine, "the second connection's frame").await;
        assert!(before.is_empty(), "{before:?}");

        machine.send(&send(&d, b"to all")).await.expect("send");
        for device in [&mut first, &mut second] {
            let (from, payload) = expect_recv(device, "each connection gets it").await;
            assert_eq!(
                (from, payload.as_slice()),
                (m.public().fingerprint(), &b"to all"[..])
            );
        }
        wait_gauge(&relay, "relay_connections{role=\"device\"}", 2).await;
        wait_gauge(&relay, "relay_devices_online", 1).await;
        assert_eq!(
            relay
                .metric("relay_disconnects_total{reason=\"displaced\"}")
                .await,
            0
        );
        relay.stop().await;
    });
}

#[test]
fn five_logins_of_one_device_key_displace_the_oldest_only() {
    smol::block_on(async {
        let relay = TestRelay::start().await;
        let (d, oldest, m, mut machine) = account(&relay).await;
        device_presence(&mut machine, "presence at login").await;
        let mut oldest = oldest;
        let mut others = Vec::new();
        for _ in 1..=RELAY_MAX_CONNECTIONS_PER_DEVICE {
            others.push(relay.device(&d).await);
        }
        let frames = until_closed(&mut oldest, "the oldest is displaced").await;
        assert!(
            frames
                .iter()
                .any(|f| matches!(f, Frame::Error(e) if e.code == ErrorCode::Displaced)),
            "{frames:?}"
        );
        machine.send(&send(&d, b"to the four")).await.expect("send");
        for (index, device) in others.iter_mut().enumerate() {
            let (_, payload) = expect_recv(device, &format!("connection {index}")).await;
            assert_eq!(payload, b"to the four");
        }
        // The device never went offline, and the displaced one had opened no channel: the
        // machine hears nothing.
        others[0].send(&send(&m, b"sync")).await.expect("send");
        let before = frames_before_recv(&mut machine, "a frame after the logins").await;
        assert!(before.is_empty(), "{before:?}");
        relay
            .wait_metric("relay_disconnects_total{reason=\"displaced\"}", 1)
            .await;
        wait_gauge(
            &relay,
            "relay_connections{role=\"device\"}",
            RELAY_MAX_CONNECTIONS_PER_DEVICE as u64,
        )
        .await;
        relay.stop().await;
    });
}

#[test]
fn a_flood_of_logins_with_one_key_never_holds_more_than_the_cap() {
    smol::block_on(async {
        let relay = TestRelay::start().await;
        let (d, first, m, _machine) = account(&relay).await;
        let cap = RELAY_MAX_CONNECTIONS_PER_DEVICE;
        let logins = 5 * cap;
        let mut live = std::collections::VecDeque::from([first]);
        for login in 1..logins {
            live.push_back(relay.device(&d).await);
            if live.len() > cap {
                // The oldest one, and only it, is told and closed.
                let mut oldest = live.pop_front().expect("one");
                let frames =
                    until_closed(&mut oldest, &format!("login {login} displaces the oldest")).await;
                assert!(
                    matches!(frames.last(), Some(Frame::Error(e)) if e.code == ErrorCode::Displaced),
                    "{frames:?}"
                );
            }
            let device_conns = relay.metric("relay_connections{role=\"device\"}").await;
            assert!(
                device_conns <= cap as u64,
                "{device_conns} live connections after login {login}"
            );
        }
        relay
            .wait_metric(
                "relay_disconnects_total{reason=\"displaced\"}",
                (logins - cap) as u64,
            )
            .await;
        wait_gauge(&relay, "relay_connections{role=\"device\"}", cap as u64).await;
        wait_gauge(&relay, "relay_devices_online", 1).await;
        // The survivors still work.
        for device in &mut live {
            device.send(&send(&m, b"alive")).await.expect("send");
        }
        relay.stop().await;
    });
}

#[test]
fn machines_hear_first_up_last_down_and_the_channels_that_ended() {
    smol::block_on(async {
        let relay = TestRelay::start().await;
        let (d, m) = (identity(), identity());
        let mut setup = relay.device(&d).await;
        pair(&relay, &d, &mut setup, &m).await;
        setup.close().await;
        let mut machine = relay.machine(&m, "box").await;
        relay
            .wait_metric("relay_disconnects_total{reason=\"closed\"}", 2)
            .await;
        wait_gauge(&relay, "relay_devices_online", 0).await;

        // First connection: online, nothing closed.
        let mut one = relay.device(&d).await;
        let up = device_presence(&mut machine, "first up").await;
        assert_eq!(
            (up.device, up.online, up.closed.len()),
            (d.public().fingerprint(), true, 0)
        );
        let (a, b) = (ConnectionId([0xaa; 8]), ConnectionId([0xbb; 8]));
        one.send(&send(&m, &session_init(a))).await.expect("send");
        expect_recv(&mut machine, "the first handshake").await;

        // A second connection: no news for the machine.
        let mut two = relay.device(&d).await;
        two.send(&send(&m, &session_init(b))).await.expect("send");
        let before = frames_before_recv(&mut machine, "the second handshake").await;
        assert!(before.is_empty(), "{before:?}");

        // The first closes: still online, and its channel ended.
        one.close().await;
        let closed = device_presence(&mut machine, "a connection closed").await;
        assert!(closed.online);
        assert_eq!(closed.closed.as_slice(), &[a]);

        // The last closes: offline, with its channel.
        two.close().await;
        let down = device_presence(&mut machine, "last down").await;
        assert!(!down.online);
        assert_eq!(down.closed.as_slice(), &[b]);
        wait_gauge(&relay, "relay_devices_online", 0).await;

        // A machine that logs in later learns who is online, and only that.
        let _three = relay.device(&d).await;
        device_presence(&mut machine, "up again").await;
        let mut again = relay.machine(&m, "box").await;
        let snapshot = device_presence(&mut again, "presence at login").await;
        assert_eq!(
            (snapshot.device, snapshot.online),
            (d.public().fingerprint(), true)
        );
        relay.stop().await;
    });
}

#[test]
fn the_connections_of_one_device_key_share_one_inbound_budget() {
    smol::block_on(async {
        let temp = tempfile::tempdir().expect("temp dir");
        let mut config = common::config(temp.path());
        config.limits.inbound_bytes_per_sec = 256 * 1024;
        config.limits.inbound_burst_bytes = MAX_FRAME_LEN as u32;
        let relay = TestRelay::start_with(config).await;
        let (d, first, m, mut machine) = account(&relay).await;
        let mut devices = vec![first];
        for _ in 1..RELAY_MAX_CONNECTIONS_PER_DEVICE {
            devices.push(relay.device(&d).await);
        }
        // 4 connections × 2 × 64 KiB = 512 KiB. Four budgets would pass it in one burst each
        // plus ~0.25 s; one shared budget takes about 1.75 s.
        let payload = vec![7u8; 64 * 1024];
        let started = Instant::now();
        let senders: Vec<_> = devices
            .into_iter()
            .map(|mut device| {
                let (m, payload) = (m.public().fingerprint(), payload.clone());
                smol::spawn(async move {
                    for _ in 0..2 {
                        let frame = Frame::Send(muxagent_proto::frame::Send {
                            to: m,
                            payload: payload.clone(),
                        });
                        device.send(&frame).await.expect("send");
                    }
                    device
                })
            })
            .collect();
        for _ in 0..8 {
            expect_recv(&mut machine, "throttled frames arrive").await;
        }
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_millis(1200),
            "8 frames over 4 connections took only {elapsed:?}"
        );
        for sender in senders {
            drop(within("sender done", sender).await);
        }
        relay.stop().await;
    });
}
