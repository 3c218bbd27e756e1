//! Keys that may send nothing, forged registry entries, revocation and unpairing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

mod common;

use common::*;
use muxagent_proto::Bytes64;
use muxagent_proto::frame::{ErrorCode, Frame, Registry, RegistryEntry, Role, SignedEntry};
use muxagent_proto::identity::Signature;
use muxagent_relay_client::{Client, ClientConfig, ClientError};

fn refused_code(result: Result<Client, ClientError>) -> ErrorCode {
    match result {
        Err(ClientError::Refused { code, .. }) => code,
        Err(other) => panic!("expected a refusal, got {other}"),
        Ok(_) => panic!("expected a refusal, the login succeeded"),
    }
}

#[test]
fn unauthenticated_connections_can_send_nothing() {
    smol::block_on(async {
        let relay = TestRelay::start().await;
        let (d, m) = (identity(), identity());
        let mut device = relay.device(&d).await;
        pair(&relay, &d, &mut device, &m).await;
        let mut machine = relay.machine(&m, "box").await;

        // Before login: a Send is refused and the connection closed; nothing reaches the machine.
        let config = ClientConfig::default();
        let (mut raw, _hello) = within("open", Client::open(&relay.url, &config))
            .await
            .expect("open");
        raw.send(&send(&m, b"sneak")).await.expect("send");
        let frames = until_closed(&mut raw, "closed before login").await;
        assert!(
            matches!(frames.as_slice(), [Frame::Error(e)] if e.code == ErrorCode::NotAllowed),
            "{frames:?}"
        );
        // A login with a signature over another challenge.
        let (mut raw, _hello) = within("open", Client::open(&relay.url, &config))
            .await
            .expect("open");
        let login = muxagent_proto::frame::Login::sign(&d, &[7; 32], Role::Device, None);
        raw.send(&Frame::Login(login)).await.expect("send");
        let frames = until_closed(&mut raw, "bad login").await;
        assert!(matches!(frames.as_slice(), [Frame::Error(e)] if e.code == ErrorCode::LoginFailed));

        // The machine received nothing, and still works.
        device.send(&send(&m, b"real")).await.expect("send");
        let (_, payload) = expect_recv(&mut machine, "the real frame only").await;
        assert_eq!(payload, b"real");
        assert!(
            relay
                .metric("relay_login_failures_total{reason=\"bad_signature\"}")
                .await
                >= 1
        );
        relay.stop().await;
    });
}

#[test]
fn unpaired_keys_can_send_nothing() {
    smol::block_on(async {
        let relay = TestRelay::start().await;
        let (d, m, lonely, stranger) = (identity(), identity(), identity(), identity());
        let mut device = relay.device(&d).await;
        pair(&relay, &d, &mut device, &m).await;
        let _machine = relay.machine(&m, "box").await;

        // A machine key that was never paired cannot log in as a machine.
        assert_eq!(
            refused_code(relay.try_connect(&stranger, Role::Machine, Some("x")).await),
            ErrorCode::LoginFailed
        );
        // A device with no machines reaches nobody.
        let mut lonely = relay.device(&lonely).await;
        lonely.send(&send(&m, b"hi")).await.expect("send");
        assert_eq!(
            expect_error(&mut lonely, "device without account").await,
            ErrorCode::NotAllowed
        );
        // A machine's key cannot log in as a device, a device's not as a pending machine.
        assert_eq!(
            refused_code(relay.try_connect(&m, Role::Device, None).await),
            ErrorCode::LoginFailed
        );
        assert_eq!(
            refused_code(relay.try_connect(&d, Role::PendingMachine, Some("x")).await),
            ErrorCode::LoginFailed
        );
        relay.stop().await;
    });
}

#[test]
fn forged_registrations_are_refused() {
    smol::block_on(async {
        let relay = TestRelay::start().await;
        let (d, m, other_device, other_machine) = (identity(), identity(), identity(), identity());
        let mut device = relay.device(&d).await;
        let (_pending, pairing_id) = rendezvous(&relay, &mut device, &m).await;

        // Bad author signature.
        let mut bad = register_entry(&d, &m, pairing_id);
        bad.signature = Signature(Bytes64([1; 64]));
        assert_eq!(
            registry(&mut device, 10, bad).await,
            Err(ErrorCode::EntryRefused)
        );
        // Consent made for another device.
        let entry = RegistryEntry::RegisterMachine {
            device: d.public(),
            machine: m.public(),
            hostname: hostname("box"),
            pairing_id,
            machine_consent: consent(&m, &other_device, &pairing_id),
            at: unix_now(),
        };
        let forged = SignedEntry::sign(&d, &entry).expect("sign");
        assert_eq!(
            registry(&mut device, 11, forged).await,
            Err(ErrorCode::EntryRefused)
        );
        // A correctly signed entry for a machine that did not open this pairing id.
        let wrong_machine = register_entry(&d, &other_machine, pairing_id);
        assert_eq!(
            registry(&mut device, 12, wrong_machine).await,
            Err(ErrorCode::EntryRefused)
        );
        // Another device's valid entry, sent from this device's connection.
        let mut other = relay.device(&other_device).await;
        let theirs = register_entry(&other_device, &m, pairing_id);
        assert_eq!(
            registry(&mut device, 13, theirs.clone()).await,
            Err(ErrorCode::EntryRefused)
        );
        // ... and from its own connection: it did not claim the pairing id.
        assert_eq!(
            registry(&mut other, 14, theirs).await,
            Err(ErrorCode::EntryRefused)
        );
        // An id nobody opened.
        let unopened = register_entry(&d, &m, new_pairing_id());
        assert_eq!(
            registry(&mut device, 15, unopened).await,
            Err(ErrorCode::EntryRefused)
        );
        // None of it created a machine record.
        assert_eq!(
            refused_code(relay.try_connect(&m, Role::Machine, Some("box")).await),
            ErrorCode::LoginFailed
        );
        assert_eq!(relay.metric("relay_machines").await, 0);
        assert_eq!(relay.metric("relay_registry_refused_total").await, 6);

        // The real one is accepted once; replaying it is refused (the id is used).
        let real = register_entry(&d, &m, pairing_id);
        assert_eq!(registry(&mut device, 16, real.clone()).await, Ok(()));
        assert_eq!(
            registry(&mut device, 17, real).await,
            Err(ErrorCode::EntryRefused)
        );
        assert_eq!(relay.metric("relay_machines").await, 1);
        relay.stop().await;
    });
}

#[test]
fn revoke_drops_the_machine_at_once_and_for_good() {
    smol::block_on(async {
        let relay = TestRelay::start().await;
        let (d, m, outsider, outsider_machine) = (identity(), identity(), identity(), identity());
        let mut device = relay.device(&d).await;
        pair(&relay, &d, &mut device, &m).await;
        let mut outsider_client = relay.device(&outsider).await;
        pair(&relay, &outsider, &mut outsider_client, &outsider_machine).await;
        let mut machine = relay.machine(&m, "box").await;

        // Forged revokes: bad signature, and a device of another account.
        let mut bad = revoke_entry(&d, &m);
        bad.signature = Signature(Bytes64([9; 64]));
        assert_eq!(
            registry(&mut device, 20, bad).await,
            Err(ErrorCode::EntryRefused)
        );
        assert_eq!(
            registry(&mut outsider_client, 21, revoke_entry(&outsider, &m)).await,
            Err(ErrorCode::EntryRefused)
        );
        device.send(&send(&m, b"still here")).await.expect("send");
        expect_recv(&mut machine, "machine survives forged revokes").await;

        // The real revoke: the machine is told and dropped at once.
        assert_eq!(
            registry(&mut device, 22, revoke_entry(&d, &m)).await,
            Ok(())
        );
        let frames = until_closed(&mut machine, "revoked machine closed").await;
        assert!(
            frames
                .iter()
                .any(|f| matches!(f, Frame::Error(e) if e.code == ErrorCode::Revoked)),
            "{frames:?}"
        );
        // It can log in no more, not even to pair again.
        assert_eq!(
            refused_code(relay.try_connect(&m, Role::Machine, Some("box")).await),
            ErrorCode::Revoked
        );
        assert_eq!(
            refused_code(
                relay
                    .try_connect(&m, Role::PendingMachine, Some("box"))
                    .await
            ),
            ErrorCode::Revoked
        );
        device.send(&send(&m, b"gone")).await.expect("send");
        assert_eq!(
            expect_error(&mut device, "send to revoked").await,
            ErrorCode::NotAllowed
        );
        assert_eq!(
            relay
                .metric("relay_registry_entries_total{kind=\"revoke\"}")
                .await,
            1
        );
        assert_eq!(relay.metric("relay_revoked_keys").await, 1);
        relay.stop().await;
    });
}

#[test]
fn unpair_removes_the_machine_record() {
    smol::block_on(async {
        let relay = TestRelay::start().await;
        let (d, m) = (identity(), identity());
        let mut device = relay.device(&d).await;
        pair(&relay, &d, &mut device, &m).await;
        let mut machine = relay.machine(&m, "box").await;
        recv_until(&mut device, "online", |f| {
            matches!(f, Frame::Presence(p) if p.online).then_some(())
        })
        .await;

        // A device cannot send an unpair; the machine signs its own.
        let unpair = RegistryEntry::UnpairMachine {
            machine: m.public(),
            at: unix_now(),
        };
        let signed = SignedEntry::sign(&m, &unpair).expect("sign");
        device
            .send(&Frame::Registry(Registry {
                request: 30,
                entry: signed.clone(),
            }))
            .await
            .expect("send");
        assert_eq!(
            expect_error(&mut device, "device sends unpair").await,
            ErrorCode::EntryRefused
        );
        assert_eq!(registry(&mut machine, 31, signed).await, Ok(()));
        recv_until(&mut device, "offline", |f| {
            matches!(f, Frame::Presence(p) if !p.online).then_some(())
        })
        .await;
        machine.send(&send(&d, b"x")).await.expect("send");
        assert_eq!(
            expect_error(&mut machine, "unpaired machine sends").await,
            ErrorCode::NotAllowed
        );
        machine.close().await;
        assert_eq!(
            refused_code(relay.try_connect(&m, Role::Machine, Some("box")).await),
            ErrorCode::LoginFailed
        );
        // It may pair again.
        pair(&relay, &d, &mut device, &m).await;
        let _machine = relay.machine(&m, "box").await;
        relay.stop().await;
    });
}
