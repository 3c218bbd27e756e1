//! `muxagent up`, the README's quick start: one process serves the web app and the relay, and
//! the link it prints pairs a controller.
#![cfg(feature = "up")] // built without `up` (a board build), there is no such command
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

mod support;

use std::process::Stdio;

use support::{fails, free_port, http_get, muxagent, ok, wait_for};

#[test]
fn up_serves_the_app_and_its_link_pairs() {
    let temp = tempfile::tempdir().expect("temp dir");
    let (machine, controller) = (temp.path().join("machine"), temp.path().join("controller"));
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut up = muxagent(&machine)
        .env("MUXAGENT_HOSTNAME", "quick")
        .args(["up", "--listen", &listen])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start muxagent up");
    let mut link = String::new();
    wait_for("up's pairing link", || {
        let status = support::run(&machine, &["daemon", "status", "--json"]);
        let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap_or_default();
        match status["pairing"]["link"].as_str() {
            Some(found) => {
                link = found.to_string();
                true
            }
            None => false,
        }
    });
    assert!(
        link.starts_with(&format!("http://{listen}/pair#")),
        "{link}"
    );
    let page = http_get(listen.parse().expect("addr"), "/pair").expect("the app's page");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(
        page.contains("<div id=\"app\">"),
        "the web app, not a placeholder: {page}"
    );
    let paired = ok(&controller, &["ctl", "pair", &link]);
    assert!(paired.starts_with("paired with quick"), "{paired}");
    let _ = up.kill();
    let _ = up.wait();
}

#[test]
fn up_on_every_interface_asks_for_the_url_a_phone_can_reach() {
    let temp = tempfile::tempdir().expect("temp dir");
    // Refused before anything binds, so nothing listens beyond loopback.
    let error = fails(temp.path(), &["up", "--listen", "0.0.0.0:8080"]);
    assert!(
        error.contains("--public-url http://192.168.1.20:8080"),
        "{error}"
    );
    let error = fails(
        temp.path(),
        &[
            "up",
            "--listen",
            "127.0.0.1:8080",
            "--public-url",
            "192.168.1.20",
        ],
    );
    assert!(error.contains("expected http://HOST:PORT"), "{error}");
}
