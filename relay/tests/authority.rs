//! Authority within an account: a device reaches (sends to, sees, revokes) only the machines it
//! paired with, an owner every machine of the account; an owner revokes devices and makes
//! owners; a revoked device is cut off at once and for good; machines are told which devices
//! may reach them; all of it survives a restart.
//!
//! "Nothing arrived" is checked without waiting: a round trip queued behind whatever would
//! have arrived (a `DevicesQuery` to the relay, or a frame from another sender) comes back
//! first, and everything before it is looked at.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

mod common;

use common::*;
use muxagent_proto::frame::{DeviceList, ErrorCode, Frame, Role};
use muxagent_proto::identity::{Fingerprint, Identity};
use muxagent_relay_client::{Client, ClientError};

fn fp(id: &Identity) -> Fingerprint {
    id.public().fingerprint()
}

/// The frames `client` was sent before the answer to a fresh `DevicesQuery`, and the answer.
async fn frames_before_list(client: &mut Client, request: u32) -> (Vec<Frame>, DeviceList) {
    client
        .send(&Frame::DevicesQuery(muxagent_proto::frame::DevicesQuery {
            request,
        }))
        .await
        .expect("send the query");
    within("the device list", async {
        let mut before = Vec::new();
        loop {
            match client.recv().await.expect("the relay answers") {
                Frame::DeviceList(list) if list.request == request => return (before, list),
                frame => before.push(frame),
            }
        }
    })
    .await
}

/// Machines whose online presence is among `frames`.
fn online_in(frames: &[Frame]) -> Vec<Fingerprint> {
    frames
        .iter()
        .filter_map(|frame| match frame {
            Frame::Presence(p) if p.online => Some(p.machine),
            _ => None,
        })
        .collect()
}

/// The frames `machine` was sent before `payload` from `sender` arrives (sent now).
async fn frames_before_recv(
    machine: &mut Client,
    sender: &mut Client,
    machine_id: &Identity,
    payload: &[u8],
) -> Vec<Frame> {
    sender.send(&send(machine_id, payload)).await.expect("send");
    within("the marker frame", async {
        let mut before = Vec::new();
        loop {
            match machine.recv().await.expect("the relay stays") {
                Frame::Recv(recv) if recv.payload == payload => return before,
                frame => before.push(frame),
            }
        }
    })
    .await
}

/// Wait for the next `AllowedDevices`.
async fn next_allowed(machine: &mut Client) -> Vec<Fingerprint> {
    recv_until(machine, "AllowedDevices", |frame| match frame {
        Frame::AllowedDevices(allowed) => Some(allowed.devices.clone()),
        _ => None,
    })
    .await
}

/// Wait until the machine is told exactly `devices` (it is told state: older lists may come
/// first).
async fn allowed_becomes(machine: &mut Client, devices: &[Fingerprint]) {
    within("the allowed devices", async {
        while next_allowed(machine).await != devices {}
    })
    .await
}

/// Owner `o` (the founder) with machines A and B; device `d` paired with A only.
struct Account {
    relay: TestRelay,
    o: Identity,
    d: Identity,
    a: Identity,
    b: Identity,
    owner: Client,
    machine_a: Client,
    machine_b: Client,
}

async fn account() -> Account {
    let relay = TestRelay::start().await;
    let (o, d, a, b) = (identity(), identity(), identity(), identity());
    let mut owner = relay.device(&o).await;
    pair(&relay, &o, &mut owner, &a).await;
    pair(&relay, &o, &mut owner, &b).await;
    let mut machine_a = relay.machine(&a, "alpha").await;
    let machine_b = relay.machine(&b, "beta").await;
    let mut device = relay.device(&d).await;
    pair(&relay, &d, &mut device, &a).await;
    device.close().await;
    allowed_becomes(&mut machine_a, &[fp(&o), fp(&d)]).await;
    Account {
        relay,
        o,
        d,
        a,
        b,
        owner,
        machine_a,
        machine_b,
    }
}

#[test]
fn a_device_paired_with_one_machine_reaches_only_that_one() {
    smol::block_on(async {
        let Account {
            relay,
            o,
            d,
            a,
            b,
            mut owner,
            mut machine_a,
            machine_b,
        } = account().await;
        let mut device = relay.device(&d).await;
        assert_eq!(device.account(), Some(fp(&o)), "d joined o's account");

        // d hears of A only, at login and when B comes back.
        let (frames, list) = frames_before_list(&mut device, 1).await;
        assert_eq!(online_in(&frames), vec![fp(&a)]);
        assert_eq!(
            list.machines.len(),
            1,
            "d is shown only the machine it paired with"
        );
        assert_eq!(list.machines[0].machine, fp(&a));
        assert_eq!(
            (
                list.devices.len(),
                list.devices[0].device,
                list.devices[0].owner
            ),
            (1, fp(&d), false),
            "d is shown only itself"
        );
        machine_b.close().await;
        let mut machine_b = relay.machine(&b, "beta").await;
        // B is told only the owner may reach it.
        assert_eq!(next_allowed(&mut machine_b).await, vec![fp(&o)]);
        let (frames, _) = frames_before_list(&mut device, 2).await;
        assert!(online_in(&frames).is_empty(), "d saw B: {frames:?}");

        // d to B, B to d: refused; d to A and back: routed.
        device.send(&send(&b, b"to B")).await.expect("send");
        assert_eq!(
            expect_error(&mut device, "d to B").await,
            ErrorCode::NotAllowed
        );
        machine_b.send(&send(&d, b"to d")).await.expect("send");
        assert_eq!(
            expect_error(&mut machine_b, "B to d").await,
            ErrorCode::NotAllowed
        );
        device.send(&send(&a, b"to A")).await.expect("send");
        assert_eq!(expect_recv(&mut machine_a, "d to A").await.1, b"to A");
        machine_a.send(&send(&d, b"to d")).await.expect("send");
        assert_eq!(expect_recv(&mut device, "A to d").await.1, b"to d");

        // B never hears of d.
        let frames = frames_before_recv(&mut machine_b, &mut owner, &b, b"marker").await;
        assert!(
            !frames
                .iter()
                .any(|f| matches!(f, Frame::DevicePresence(p) if p.device == fp(&d))),
            "B heard of d: {frames:?}"
        );

        // d cannot revoke B; the owner can.
        assert_eq!(
            registry(&mut device, 3, revoke_entry(&d, &b)).await,
            Err(ErrorCode::EntryRefused)
        );
        owner.send(&send(&b, b"still here")).await.expect("send");
        assert_eq!(
            expect_recv(&mut machine_b, "B stays").await.1,
            b"still here"
        );
        assert_eq!(registry(&mut owner, 4, revoke_entry(&o, &b)).await, Ok(()));
        let frames = until_closed(&mut machine_b, "B is cut off").await;
        assert!(
            frames
                .iter()
                .any(|f| matches!(f, Frame::Error(e) if e.code == ErrorCode::Revoked)),
            "{frames:?}"
        );
        // d, paired with A, may revoke A.
        assert_eq!(registry(&mut device, 5, revoke_entry(&d, &a)).await, Ok(()));
        relay.stop().await;
    });
}

#[test]
fn an_owner_makes_an_owner_that_reaches_every_machine_at_once() {
    smol::block_on(async {
        let Account {
            relay,
            o,
            d,
            a,
            b,
            mut owner,
            mut machine_a,
            mut machine_b,
        } = account().await;
        let mut device = relay.device(&d).await;
        let stranger = identity();
        let mut other = relay.device(&stranger).await;
        pair(&relay, &stranger, &mut other, &a).await;

        // A device that is no owner grants nothing, not even to itself.
        assert_eq!(
            registry(&mut device, 1, grant_entry(&d, &d)).await,
            Err(ErrorCode::EntryRefused)
        );
        assert_eq!(
            registry(&mut device, 2, grant_entry(&d, &stranger)).await,
            Err(ErrorCode::EntryRefused)
        );
        assert_eq!(registry(&mut owner, 3, grant_entry(&o, &d)).await, Ok(()));
        // d's live connection hears of B at once, and B of d.
        let presence = recv_until(&mut device, "B's presence", |frame| match frame {
            Frame::Presence(p) if p.online && p.machine == fp(&b) => Some(p.clone()),
            _ => None,
        })
        .await;
        assert_eq!(presence.hostname.as_str(), "beta");
        allowed_becomes(&mut machine_b, &[fp(&o), fp(&d)]).await;
        recv_until(&mut machine_b, "d online at B", |frame| match frame {
            Frame::DevicePresence(p) if p.device == fp(&d) && p.online => Some(()),
            _ => None,
        })
        .await;
        device.send(&send(&b, b"owner d")).await.expect("send");
        assert_eq!(expect_recv(&mut machine_b, "d to B").await.1, b"owner d");

        // An owner sees the whole account: who is an owner, who paired with what, who is on.
        let (_, list) = frames_before_list(&mut device, 4).await;
        let hosts: Vec<&str> = list.machines.iter().map(|m| m.hostname.as_str()).collect();
        assert_eq!(hosts, ["alpha", "beta"]);
        assert!(list.machines.iter().all(|m| m.online));
        let rows: Vec<(Fingerprint, bool, bool, Vec<u16>)> = list
            .devices
            .iter()
            .map(|row| (row.device, row.owner, row.online, row.paired.clone()))
            .collect();
        assert_eq!(
            rows,
            vec![
                (fp(&o), true, true, vec![0, 1]),
                (fp(&d), true, true, vec![0]),
                (fp(&stranger), false, true, vec![0]),
            ]
        );
        // The new owner may revoke what it never paired with, and grants in turn.
        assert_eq!(
            registry(&mut device, 5, grant_entry(&d, &stranger)).await,
            Ok(())
        );
        assert_eq!(registry(&mut device, 6, revoke_entry(&d, &b)).await, Ok(()));
        // A machine asks nothing of the account.
        assert_eq!(
            devices_query(&mut machine_a, 7).await.map(|_| ()),
            Err(ErrorCode::NotAllowed)
        );
        relay.stop().await;
    });
}

#[test]
fn a_revoked_device_is_cut_off_at_once_and_for_good() {
    smol::block_on(async {
        let Account {
            relay,
            o,
            d,
            a,
            mut owner,
            mut machine_a,
            ..
        } = account().await;
        let p = identity();
        let mut peer = relay.device(&p).await;
        pair(&relay, &p, &mut peer, &a).await;
        assert_eq!(
            next_allowed(&mut machine_a).await,
            vec![fp(&o), fp(&d), fp(&p)]
        );
        // Two live connections of d (a phone's tabs).
        let mut first = relay.device(&d).await;
        let mut second = relay.device(&d).await;

        // Another device that is no owner cannot revoke d, nor can d revoke the owner.
        assert_eq!(
            registry(&mut peer, 1, revoke_device_entry(&p, &d)).await,
            Err(ErrorCode::EntryRefused)
        );
        assert_eq!(
            registry(&mut first, 2, revoke_device_entry(&d, &o)).await,
            Err(ErrorCode::EntryRefused)
        );
        assert_eq!(
            registry(&mut owner, 3, revoke_device_entry(&o, &d)).await,
            Ok(())
        );
        for (connection, name) in [(&mut first, "first"), (&mut second, "second")] {
            let frames = until_closed(connection, name).await;
            assert!(
                frames
                    .iter()
                    .any(|f| matches!(f, Frame::Error(e) if e.code == ErrorCode::Revoked)),
                "{name}: {frames:?}"
            );
        }
        // A is told at once that d may no longer reach it.
        assert_eq!(next_allowed(&mut machine_a).await, vec![fp(&o), fp(&p)]);
        machine_a.send(&send(&d, b"late")).await.expect("send");
        assert_eq!(
            expect_error(&mut machine_a, "A to revoked d").await,
            ErrorCode::NotAllowed
        );
        assert!(matches!(
            relay.try_connect(&d, Role::Device, None).await,
            Err(ClientError::Refused {
                code: ErrorCode::Revoked,
                ..
            })
        ));

        // A device may leave by itself: the acknowledgement, then the close.
        assert_eq!(
            registry(&mut peer, 4, revoke_device_entry(&p, &p)).await,
            Ok(())
        );
        until_closed(&mut peer, "p after leaving").await;
        assert_eq!(next_allowed(&mut machine_a).await, vec![fp(&o)]);
        assert!(matches!(
            relay.try_connect(&p, Role::Device, None).await,
            Err(ClientError::Refused {
                code: ErrorCode::Revoked,
                ..
            })
        ));
        assert!(
            relay
                .metric("relay_registry_entries_total{kind=\"revoke_device\"}")
                .await
                >= 2
        );
        relay.stop().await;
    });
}

#[test]
fn the_log_replays_owners_pairs_and_revoked_devices_after_a_restart() {
    smol::block_on(async {
        let temp = tempfile::tempdir().expect("temp dir");
        let (o, d, g, r, a, b) = (
            identity(),
            identity(),
            identity(),
            identity(),
            identity(),
            identity(),
        );
        let before = {
            let relay = TestRelay::start_with(common::config(temp.path())).await;
            let mut owner = relay.device(&o).await;
            pair(&relay, &o, &mut owner, &a).await;
            pair(&relay, &o, &mut owner, &b).await;
            for joiner in [&d, &g, &r] {
                let mut client = relay.device(joiner).await;
                pair(&relay, joiner, &mut client, &a).await;
            }
            assert_eq!(registry(&mut owner, 1, grant_entry(&o, &g)).await, Ok(()));
            assert_eq!(
                registry(&mut owner, 2, revoke_device_entry(&o, &r)).await,
                Ok(())
            );
            let list = devices_query(&mut owner, 3).await.expect("list");
            relay.stop().await;
            list
        };
        let relay = TestRelay::start_with(common::config(temp.path())).await;
        assert_eq!(
            relay.metric("relay_registry_skipped_at_start_total").await,
            0
        );
        let mut owner = relay.device(&o).await;
        let mut after = devices_query(&mut owner, 3).await.expect("list");
        // Only who is online may differ.
        let mut before = before;
        for list in [&mut before, &mut after] {
            list.devices.iter_mut().for_each(|row| row.online = false);
            list.machines.iter_mut().for_each(|row| row.online = false);
        }
        assert_eq!(after.devices.len(), 3, "o, d and g; r is gone");
        assert_eq!(after, before);
        // The rules hold as before: d reaches A only, g (an owner) reaches B, r is barred.
        let _machine_b = relay.machine(&b, "beta").await;
        let mut device = relay.device(&d).await;
        device.send(&send(&b, b"x")).await.expect("send");
        assert_eq!(
            expect_error(&mut device, "d to B after restart").await,
            ErrorCode::NotAllowed
        );
        let mut granted = relay.device(&g).await;
        let (frames, _) = frames_before_list(&mut granted, 4).await;
        assert_eq!(online_in(&frames), vec![fp(&b)]);
        assert!(matches!(
            relay.try_connect(&r, Role::Device, None).await,
            Err(ClientError::Refused {
                code: ErrorCode::Revoked,
                ..
            })
        ));
        relay.stop().await;
    });
}
