//! The load tool runs end to end: it starts the relay and the forwarder, pairs devices with
//! machines through the real protocol, echoes, and prints one row per target.
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
