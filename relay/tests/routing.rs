//! Routing between a device and the machines of its account, presence, and account isolation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

mod common;

use std::time::Duration;

use common::*;
use muxagent_proto::frame::{ErrorCode, Frame, Role};

#[test]
fn one_device_two_machines_route_both_ways_with_presence() {
    smol::block_on(async {
        let relay = TestRelay::start().await;
        let (d, m1, m2) = (identity(), identity(), identity());
        let mut device = relay.device(&d).await;
        assert_eq!(device.account(), None, "a new device has no account");
        pair(&relay, &d, &mut device, &m1).await;
        pair(&relay, &d, &mut device, &m2).await;

        let mut machine1 = relay.machine(&m1, "alpha").await;
        assert_eq!(
            machine1.account(),
            Some(d.public().fingerprint()),
            "account named by the device"
        );
        let presence = recv_until(&mut device, "presence of alpha", |frame| match frame {
            Frame::Presence(p) if p.online => Some(p.clone()),
            _ => None,
        })
        .await;
        assert_eq!(presence.machine, m1.public().fingerprint());
        assert_eq!(presence.hostname.as_str(), "alpha");
        let mut machine2 = relay.machine(&m2, "beta").await;

        for (machine, id) in [(&mut machine1, &m1), (&mut machine2, &m2)] {
            device
                .send(&send(id, b"prompt"))
                .await
                .expect("device sends");
            let (from, payload) = expect_recv(machine, "machine receives").await;
            assert_eq!(
                (from, payload.as_slice()),
                (d.public().fingerprint(), &b"prompt"[..])
            );
            machine
                .send(&send(&d, b"output"))
                .await
                .expect("machine sends");
            let (from, payload) = expect_recv(&mut device, "device receives").await;
            assert_eq!(
                (from, payload.as_slice()),
                (id.public().fingerprint(), &b"output"[..])
            );
        }

        // Machines cannot talk to each other.
        machine1.send(&send(&m2, b"hi")).await.expect("send");
        assert_eq!(
            expect_error(&mut machine1, "machine to machine refused").await,
            ErrorCode::NotAllowed
        );

        // A device logging in later learns who is online.
        let mut again = relay.device(&d).await; // a second connection of the device
        let mut online = Vec::new();
        while online.len() < 2 {
            let p = recv_until(&mut again, "presence at login", |frame| match frame {
                Frame::Presence(p) => Some(p.clone()),
                _ => None,
            })
            .await;
            online.push(p.machine);
        }
        assert!(
            online.contains(&m1.public().fingerprint())
                && online.contains(&m2.public().fingerprint())
        );

        // Offline presence when a machine leaves.
        machine2.close().await;
        let offline = recv_until(&mut again, "offline presence", |frame| match frame {
            Frame::Presence(p) if !p.online => Some(p.clone()),
            _ => None,
        })
        .await;
        assert_eq!(
            (offline.machine, offline.hostname.as_str()),
            (m2.public().fingerprint(), "beta")
        );

        // Sending to an offline machine says so.
        again.send(&send(&m2, b"x")).await.expect("send");
        assert_eq!(
            expect_error(&mut again, "peer offline").await,
            ErrorCode::PeerOffline
        );

        assert!(
            relay
                .metric("relay_routed_frames_total{kind=\"send\"}")
                .await
                >= 4
        );
        assert!(
            relay
                .metric("relay_refused_total{reason=\"not_allowed\"}")
                .await
                >= 1
        );
        relay.stop().await;
    });
}

#[test]
fn a_machine_of_another_account_gets_nothing() {
    smol::block_on(async {
        let relay = TestRelay::start().await;
        let (d1, m1, d2, m2) = (identity(), identity(), identity(), identity());
        let mut device1 = relay.device(&d1).await;
        let mut device2 = relay.device(&d2).await;
        pair(&relay, &d1, &mut device1, &m1).await;
        pair(&relay, &d2, &mut device2, &m2).await;
        let mut machine1 = relay.machine(&m1, "one").await;
        let mut machine2 = relay.machine(&m2, "two").await;

        // Device 1 to machine 2 (other account): refused, and machine 2 sees nothing.
        device1.send(&send(&m2, b"secret")).await.expect("send");
        assert_eq!(
            expect_error(&mut device1, "cross-account send").await,
            ErrorCode::NotAllowed
        );
        // Machine 2 to device 1: refused too.
        machine2.send(&send(&d1, b"secret")).await.expect("send");
        assert_eq!(
            expect_error(&mut machine2, "cross-account reply").await,
            ErrorCode::NotAllowed
        );
        // Device 2 does not learn of machine 1.
        device1.send(&send(&m1, b"ok")).await.expect("send");
        expect_recv(&mut machine1, "own account still routes").await;
        let leaked = quiet_for(Duration::from_millis(200), async {
            loop {
                match machine2.recv().await {
                    Ok(Frame::Recv(recv)) => return recv,
                    Ok(_) => continue,
                    Err(e) => panic!("machine 2 lost its connection: {e}"),
                }
            }
        })
        .await;
        assert!(
            leaked.is_none(),
            "machine 2 received a frame from another account"
        );
        let presence_leak = quiet_for(Duration::from_millis(100), async {
            loop {
                if let Ok(Frame::Presence(p)) = device2.recv().await
                    && p.machine == m1.public().fingerprint()
                {
                    return p;
                }
            }
        })
        .await;
        assert!(
            presence_leak.is_none(),
            "device 2 saw presence of another account's machine"
        );
        relay.stop().await;
    });
}

#[test]
fn a_second_device_joins_through_a_fresh_pairing() {
    smol::block_on(async {
        let relay = TestRelay::start().await;
        let (d1, d2, m) = (identity(), identity(), identity());
        let mut device1 = relay.device(&d1).await;
        pair(&relay, &d1, &mut device1, &m).await;
        let mut machine = relay.machine(&m, "shared").await;
        // The paired machine opens a fresh pairing (as a pending machine) for a second device.
        let mut device2 = relay.device(&d2).await;
        pair(&relay, &d2, &mut device2, &m).await;
        // Device 2 is now in device 1's account and reaches the machine.
        let device2 = relay.device(&d2).await;
        assert_eq!(device2.account(), Some(d1.public().fingerprint()));
        let mut device2 = device2;
        device2.send(&send(&m, b"from two")).await.expect("send");
        let (from, _) = expect_recv(&mut machine, "machine gets device 2's frame").await;
        assert_eq!(from, d2.public().fingerprint());
        machine.send(&send(&d2, b"back")).await.expect("send");
        expect_recv(&mut device2, "device 2 gets the answer").await;
        relay.stop().await;
    });
}

#[test]
fn pending_machine_can_only_use_its_pairing_ids() {
    smol::block_on(async {
        let relay = TestRelay::start().await;
        let (d, m, other) = (identity(), identity(), identity());
        let mut device = relay.device(&d).await;
        let (mut pending, pairing_id) = rendezvous(&relay, &mut device, &m).await;
        pending.send(&send(&d, b"x")).await.expect("send");
        assert_eq!(
            expect_error(&mut pending, "pending send").await,
            ErrorCode::NotAllowed
        );
        // A second device cannot take the claimed id.
        let mut intruder = relay.device(&other).await;
        intruder
            .send(&Frame::PairSend(muxagent_proto::frame::PairSend {
                pairing_id,
                payload: vec![1],
            }))
            .await
            .expect("send");
        assert_eq!(
            expect_error(&mut intruder, "claimed id").await,
            ErrorCode::PairingTaken
        );
        // An unknown id.
        intruder
            .send(&Frame::PairSend(muxagent_proto::frame::PairSend {
                pairing_id: new_pairing_id(),
                payload: vec![1],
            }))
            .await
            .expect("send");
        assert_eq!(
            expect_error(&mut intruder, "unknown id").await,
            ErrorCode::PairingUnknown
        );
        // A device may not open pairing ids.
        intruder
            .send(&Frame::OpenPairing(muxagent_proto::frame::OpenPairing {
                pairing_id: new_pairing_id(),
                expires_at: unix_now() + 60,
            }))
            .await
            .expect("send");
        assert_eq!(
            expect_error(&mut intruder, "device opens").await,
            ErrorCode::NotAllowed
        );
        // The relay caps a pairing id's life at its TTL (5 minutes), whatever the machine asks.
        let long = new_pairing_id();
        pending
            .send(&Frame::OpenPairing(muxagent_proto::frame::OpenPairing {
                pairing_id: long,
                expires_at: unix_now() + 24 * 3600,
            }))
            .await
            .expect("send");
        let expires_at = recv_until(&mut pending, "capped pairing", |frame| match frame {
            Frame::PairingOpened(opened) if opened.pairing_id == long => Some(opened.expires_at),
            _ => None,
        })
        .await;
        assert!(
            expires_at <= unix_now() + 5 * 60,
            "pairing id lives until {expires_at}"
        );
        // A pending machine logging in as Machine is refused.
        let refused = relay.try_connect(&m, Role::Machine, Some("box")).await;
        assert!(matches!(
            refused,
            Err(muxagent_relay_client::ClientError::Refused {
                code: ErrorCode::LoginFailed,
                ..
            })
        ));
        // After the machine's connection goes, its pairing id is gone.
        pending.close().await;
        within("pairing id forgotten", async {
            loop {
                device
                    .send(&Frame::PairSend(muxagent_proto::frame::PairSend {
                        pairing_id,
                        payload: vec![1],
                    }))
                    .await
                    .expect("send");
                if expect_error(&mut device, "pair send after close").await
                    == ErrorCode::PairingUnknown
                {
                    return;
                }
            }
        })
        .await;
        relay.stop().await;
    });
}
