//! The registry survives a graceful restart and a `kill -9` of the relay process.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use common::*;
use muxagent_proto::frame::{ErrorCode, Frame, Role};
use muxagent_relay::limits;
use muxagent_relay_client::ClientError;

#[test]
fn a_restart_keeps_the_registry() {
    smol::block_on(async {
        let temp = tempfile::tempdir().expect("temp dir");
        let (d, m, revoked) = (identity(), identity(), identity());
        {
            let relay = TestRelay::start_with(common::config(temp.path())).await;
            let mut device = relay.device(&d).await;
            pair(&relay, &d, &mut device, &m).await;
            pair(&relay, &d, &mut device, &revoked).await;
            assert_eq!(
                registry(&mut device, 5, revoke_entry(&d, &revoked)).await,
                Ok(())
            );
            relay.stop().await;
        }
        let relay = TestRelay::start_with(common::config(temp.path())).await;
        assert_eq!(relay.metric("relay_machines").await, 1);
        assert_eq!(relay.metric("relay_revoked_keys").await, 1);
        assert_eq!(
            relay.metric("relay_registry_skipped_at_start_total").await,
            0
        );
        let mut machine = relay.machine(&m, "box").await;
        assert_eq!(machine.account(), Some(d.public().fingerprint()));
        let mut device = relay.device(&d).await;
        device
            .send(&send(&m, b"after restart"))
            .await
            .expect("send");
        expect_recv(&mut machine, "routing after restart").await;
        let refused = relay.try_connect(&revoked, Role::Machine, Some("x")).await;
        assert!(matches!(
            refused,
            Err(ClientError::Refused {
                code: ErrorCode::Revoked,
                ..
            })
        ));
        relay.stop().await;
    });
}

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start the relay binary on a free port; returns it and its `ws://` URL (read from its log).
fn spawn_relay(dir: &std::path::Path) -> (Process, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_muxagent-relay"))
        .args(["--listen", "127.0.0.1:0", "--threads", "2", "--data-dir"])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the relay binary");
    let stderr = child.stderr.take().expect("stderr");
    let process = Process(child);
    let mut lines = BufReader::new(stderr).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("the relay logs where it listens")
            .expect("read log");
        if let Some(rest) = line.split("listening on http://").nth(1) {
            let addr = rest.split_whitespace().next().expect("address");
            break format!("ws://{addr}");
        }
    };
    // Keep draining its log so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (process, url)
}

#[test]
fn kill_dash_nine_loses_no_acknowledged_entry() {
    let temp = tempfile::tempdir().expect("temp dir");
    let (d, m) = (identity(), identity());
    let (mut first, url) = spawn_relay(temp.path());
    smol::block_on(async {
        let relay = TestRelay::external(&url);
        let mut device = relay.device(&d).await;
        pair(&relay, &d, &mut device, &m).await; // waits for the RegistryAck
    });
    // SIGKILL: no shutdown, no flush.
    first.0.kill().expect("kill -9");
    first.0.wait().expect("reap");
    let (_second, url) = spawn_relay(temp.path());
    smol::block_on(async {
        let relay = TestRelay::external(&url);
        let machine = relay.machine(&m, "box").await;
        assert_eq!(machine.account(), Some(d.public().fingerprint()));
    });
}

#[test]
fn sigterm_tells_clients_and_exits_cleanly() {
    let temp = tempfile::tempdir().expect("temp dir");
    let (mut relay_process, url) = spawn_relay(temp.path());
    smol::block_on(async {
        let relay = TestRelay::external(&url);
        let mut devices = Vec::new();
        for _ in 0..8 {
            devices.push(relay.device(&identity()).await);
        }
        let status = Command::new("kill")
            .args(["-TERM", &relay_process.0.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        // Each is told when to come back, within the hint and its spread: not all at once.
        let base = limits::RELAY_RESTART_RECONNECT_IN_MS;
        let mut hints = std::collections::BTreeSet::new();
        for device in &mut devices {
            let frames = until_closed(device, "closed by SIGTERM").await;
            let [Frame::Restarting(r)] = frames.as_slice() else {
                panic!("{frames:?}");
            };
            assert!(
                (base..=base + limits::RELAY_RESTART_SPREAD_MS).contains(&r.reconnect_in_ms)
                    && r.try_for_ms >= r.reconnect_in_ms,
                "{r:?}"
            );
            hints.insert(r.reconnect_in_ms);
        }
        assert!(hints.len() > 1, "one hint for all: {hints:?}");
    });
    let exited = smol::block_on(within("the relay to exit", async {
        loop {
            if let Some(status) = relay_process.0.try_wait().expect("try_wait") {
                return status;
            }
            smol::Timer::after(std::time::Duration::from_millis(20)).await;
        }
    }));
    assert!(exited.success(), "the relay exited with {exited}");
}
