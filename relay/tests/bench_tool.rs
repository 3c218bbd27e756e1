//! The load tool runs end to end: it starts the relay and the forwarder, pairs devices with
//! machines through the real protocol, echoes, and prints one row per target; its storm (at a
//! tiny size) registers machines, holds them idle over ws and wss, restarts the relay twice and
//! sees every machine back. Only counts are checked, never times.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

use std::process::Command;

#[test]
fn the_load_tool_pairs_echoes_and_reports_both_targets() {
    let output = Command::new(env!("CARGO_BIN_EXE_muxagent-relay-bench"))
        .args(["--relay-bin", env!("CARGO_BIN_EXE_muxagent-relay")])
        .args(["--seconds", "1", "closed", "--pairs", "2", "--window", "4"])
        .args(["--idle", "3"])
        .output()
        .expect("run the load tool");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for target in ["forwarder", "relay"] {
        let row = stdout
            .lines()
            .find(|line| line.contains(&format!("| {target} |")))
            .unwrap_or_else(|| panic!("no {target} row in:\n{stdout}"));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let round_trips: f64 = cells[3].parse().expect("round trips/s");
        assert!(round_trips > 0.0, "{row}");
        // Four in flight per pair stays far inside the queues: nothing may be lost.
        assert_eq!(cells[11], "0", "lost: {row}");
    }
}

/// Run the tool's storm at a tiny size; its output.
fn storm(clients: &str, wss: bool) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_muxagent-relay-bench"));
    command
        .args(["--relay-bin", env!("CARGO_BIN_EXE_muxagent-relay")])
        .args(["storm", "--clients", clients, "--deadline", "60"]);
    if wss {
        command.arg("--wss");
    }
    let output = command.output().expect("run the load tool");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The cells of the row that starts with `first` (after the leading `|`).
fn row<'a>(stdout: &'a str, first: &str) -> Vec<&'a str> {
    let line = stdout
        .lines()
        .find(|line| line.starts_with(&format!("| {first} |")))
        .unwrap_or_else(|| panic!("no {first} row in:\n{stdout}"));
    line.split('|').map(str::trim).skip(1).collect()
}

/// Every machine comes back after both restarts, and none is turned away by a cap; the idle
/// memory rows are there for both targets.
fn check_storm(stdout: &str, clients: &str, transport: &str) {
    for target in ["forwarder", "relay"] {
        let idle = stdout
            .lines()
            .find(|line| line.starts_with(&format!("| idle {transport} | {target} |")))
            .unwrap_or_else(|| panic!("no idle {transport} {target} row in:\n{stdout}"));
        let cells: Vec<&str> = idle.split('|').map(str::trim).collect();
        assert_eq!(cells[3], clients, "{idle}");
        let per_connection: f64 = cells[8].parse().expect("KiB per connection");
        assert!(per_connection.is_finite(), "{idle}");
    }
    for how in ["graceful (SIGTERM)", "kill -9"] {
        let cells = row(stdout, how);
        assert_eq!(cells[1], clients, "clients: {cells:?}");
        assert_eq!(cells[2], clients, "back: {cells:?}");
        assert_eq!(cells[3], "0", "not back: {cells:?}");
        assert_eq!(cells[12], "0", "closed at accept: {cells:?}");
    }
}

#[test]
fn the_storm_brings_every_machine_back_after_both_restarts_over_ws() {
    let stdout = storm("50", false);
    check_storm(&stdout, "50", "ws");
}

#[test]
fn the_storm_holds_idle_wss_connections_and_brings_them_back() {
    let stdout = storm("50", true);
    check_storm(&stdout, "50", "wss");
}
