//! The registry stays bounded under the loops an attacker can run with fresh keys — register →
//! unpair, register → revoke, register → revoke → leave — and its log stays proportional to
//! what it holds: it is compacted, and a restart after compaction keeps every account, pair and
//! revocation. Honest newcomers still get in. (The same loops at the default limits, for an
//! hour of a fake clock: `registry_sim` in the relay's unit tests.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

mod common;

use common::*;
use muxagent_proto::frame::{ErrorCode, RegistryEntry, Role, SignedEntry};
use muxagent_proto::identity::Identity;
use muxagent_relay_client::{Client, ClientError};

fn refused_code(result: Result<Client, ClientError>) -> ErrorCode {
    match result {
        Err(ClientError::Refused { code, .. }) => code,
        Err(other) => panic!("expected a refusal, got {other}"),
        Ok(_) => panic!("expected a refusal, the login succeeded"),
    }
}

fn unpair_entry(machine: &Identity) -> SignedEntry {
    let entry = RegistryEntry::UnpairMachine {
        machine: machine.public(),
        at: unix_now(),
    };
    SignedEntry::sign(machine, &entry).expect("machine signs")
}

/// Rendezvous and register, returning the registration's answer.
async fn try_pair(
    relay: &TestRelay,
    device_id: &Identity,
    device: &mut Client,
    machine: &Identity,
    request: u32,
) -> Result<(), ErrorCode> {
    let (pending, pairing_id) = rendezvous(relay, device, machine).await;
    let answer = registry(
        device,
        request,
        register_entry(device_id, machine, pairing_id),
    )
    .await;
    pending.close().await;
    answer
}

#[test]
fn a_restart_after_compaction_keeps_every_account_pair_and_revocation() {
    smol::block_on(async {
        let temp = tempfile::tempdir().expect("temp dir");
        let mut config = common::config(temp.path());
        config.limits.registry_compact_floor = 2;
        let (o, d, r) = (identity(), identity(), identity());
        let (a, b, c, e) = (identity(), identity(), identity(), identity());
        let before = {
            let relay = TestRelay::start_with(config.clone()).await;
            let mut owner = relay.device(&o).await;
            for machine in [&a, &b, &c, &e] {
                pair(&relay, &o, &mut owner, machine).await;
            }
            for joiner in [&d, &r] {
                let mut client = relay.device(joiner).await;
                pair(&relay, joiner, &mut client, &a).await;
            }
            assert_eq!(
                registry(&mut owner, 2, revoke_device_entry(&o, &r)).await,
                Ok(())
            );
            assert_eq!(registry(&mut owner, 3, revoke_entry(&o, &c)).await, Ok(()));
            let mut machine_e = relay.machine(&e, "e").await;
            assert_eq!(registry(&mut machine_e, 4, unpair_entry(&e)).await, Ok(()));
            assert!(relay.metric("relay_registry_compactions_total").await >= 2);
            // o, d, a, b live; r and c revoked; e gone.
            assert_eq!(relay.metric("relay_registry_keys").await, 6);
            let list = devices_query(&mut owner, 5).await.expect("list");
            relay.stop().await;
            list
        };
        for restart in 0..2 {
            let relay = TestRelay::start_with(config.clone()).await;
            assert_eq!(
                relay.metric("relay_registry_skipped_at_start_total").await,
                0
            );
            assert_eq!(relay.metric("relay_registry_keys").await, 6);
            assert_eq!(relay.metric("relay_revoked_keys").await, 2);
            let mut owner = relay.device(&o).await;
            let mut after = devices_query(&mut owner, 5).await.expect("list");
            let mut before = before.clone();
            for list in [&mut before, &mut after] {
                list.devices.iter_mut().for_each(|row| row.online = false);
                list.machines.iter_mut().for_each(|row| row.online = false);
            }
            assert_eq!(after, before, "restart {restart}");
            for (key, role, host) in [(&r, Role::Device, None), (&c, Role::Machine, Some("c"))] {
                assert_eq!(
                    refused_code(relay.try_connect(key, role, host).await),
                    ErrorCode::Revoked,
                    "restart {restart}"
                );
            }
            assert_eq!(
                refused_code(relay.try_connect(&e, Role::Machine, Some("e")).await),
                ErrorCode::LoginFailed,
                "an unpaired machine stays unpaired"
            );
            relay.stop().await;
        }
    });
}

#[test]
fn a_register_unpair_loop_is_held_by_its_account_and_its_log_stays_small() {
    smol::block_on(async {
        let temp = tempfile::tempdir().expect("temp dir");
        let mut config = common::config(temp.path());
        config.limits.registry_compact_floor = 2;
        config.limits.registry_requests_per_account_per_hour = 8;
        let relay = TestRelay::start_with(config).await;
        let (d, m) = (identity(), identity());
        let mut device = relay.device(&d).await;
        for round in 0..4u32 {
            assert_eq!(
                try_pair(&relay, &d, &mut device, &m, 10 + round).await,
                Ok(())
            );
            let mut machine = relay.machine(&m, "m").await;
            assert_eq!(registry(&mut machine, 1, unpair_entry(&m)).await, Ok(()));
            machine.close().await;
        }
        assert_eq!(
            try_pair(&relay, &d, &mut device, &m, 20).await,
            Err(ErrorCode::RateLimited),
            "the account's hour is spent"
        );
        assert_eq!(relay.metric("relay_registry_keys").await, 1);
        // Eight entries appended (~330 bytes each with the store's framing); compacted, the log
        // holds the account and at most the floor's entries.
        let log = relay.metric("relay_registry_log_bytes").await;
        assert!(log < 1_200, "the log holds {log} bytes");
        // A revocation is never held by the account's count.
        assert_eq!(
            registry(&mut device, 21, revoke_device_entry(&d, &d)).await,
            Ok(())
        );
        assert_eq!(relay.metric("relay_registry_keys").await, 0);
        // Someone else pairs as ever.
        let (n, nm) = (identity(), identity());
        let mut newcomer = relay.device(&n).await;
        pair(&relay, &n, &mut newcomer, &nm).await;
        relay.stop().await;
    });
}

#[test]
fn fresh_key_loops_are_held_by_admission_and_leave_nothing_behind() {
    smol::block_on(async {
        let temp = tempfile::tempdir().expect("temp dir");
        let mut config = common::config(temp.path());
        config.limits.new_keys_burst = 6;
        config.limits.new_keys_per_hour = 1;
        let relay = TestRelay::start_with(config).await;
        // Register → revoke → leave, with fresh keys each round: each round gives its keys back.
        for round in 0..5u32 {
            let (d, m) = (identity(), identity());
            let mut device = relay.device(&d).await;
            assert_eq!(try_pair(&relay, &d, &mut device, &m, 1).await, Ok(()));
            assert_eq!(registry(&mut device, 2, revoke_entry(&d, &m)).await, Ok(()));
            assert_eq!(
                registry(&mut device, 3, revoke_device_entry(&d, &d)).await,
                Ok(()),
                "round {round}"
            );
        }
        assert_eq!(relay.metric("relay_registry_keys").await, 0);
        assert_eq!(relay.metric("relay_revoked_keys").await, 0);
        // Register → revoke, keeping the device: two keys a round, until the bucket is empty.
        let mut kept = 0;
        loop {
            let (d, m) = (identity(), identity());
            let mut device = relay.device(&d).await;
            match try_pair(&relay, &d, &mut device, &m, 1).await {
                Ok(()) => {
                    assert_eq!(registry(&mut device, 2, revoke_entry(&d, &m)).await, Ok(()));
                    kept += 1;
                }
                Err(code) => {
                    assert_eq!(code, ErrorCode::RateLimited);
                    break;
                }
            }
            assert!(kept <= 3, "the bucket holds 6 keys");
        }
        assert_eq!(kept, 3);
        assert_eq!(relay.metric("relay_registry_keys").await, 6);
        relay.stop().await;
    });
}

/// A data folder of a relay before compaction (bare signed entries in `registry/`) is verified
/// once, compacted into `registry-v2/`, and removed; the next start reads the compacted log.
#[test]
fn an_older_relays_log_is_verified_once_and_compacted() {
    smol::block_on(async {
        let temp = tempfile::tempdir().expect("temp dir");
        let (d, a, b) = (identity(), identity(), identity());
        {
            let options = muxagent_store::Options {
                segment_len: 1 << 20,
                retention: None,
            };
            let (mut old, _) =
                muxagent_store::Log::<SignedEntry>::open(temp.path().join("registry"), options)
                    .expect("old log opens");
            for machine in [&a, &b] {
                let entry = register_entry(&d, machine, new_pairing_id());
                old.append(&entry).expect("appends");
            }
            old.append(&revoke_entry(&d, &b)).expect("appends");
            old.sync().expect("syncs");
        }
        let config = common::config(temp.path());
        for start in 0..2 {
            let relay = TestRelay::start_with(config.clone()).await;
            assert_eq!(
                relay.metric("relay_registry_skipped_at_start_total").await,
                0
            );
            assert_eq!(
                relay.metric("relay_registry_keys").await,
                3,
                "start {start}"
            );
            assert_eq!(
                refused_code(relay.try_connect(&b, Role::Machine, Some("b")).await),
                ErrorCode::Revoked
            );
            let _machine = relay.machine(&a, "a").await;
            assert!(!temp.path().join("registry").exists(), "start {start}");
            assert!(temp.path().join("registry-v2").is_dir());
            relay.stop().await;
        }
    });
}
