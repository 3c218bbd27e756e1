//! End to end: relay, daemons and controllers as real processes on 127.0.0.1, each with its own
//! `MUXAGENT_HOME`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

mod support;

use support::*;

#[test]
fn relay_process() {
    // Runs only when this binary is re-executed as a relay (see support::Relay).
    maybe_run_relay();
}

struct World {
    _temp: tempfile::TempDir,
    root: std::path::PathBuf,
    relay: Relay,
}

impl World {
    fn new() -> World {
        let temp = tempfile::tempdir().expect("tempdir");
        let root = temp.path().to_path_buf();
        let relay = Relay::start(&root.join("relay"));
        World {
            _temp: temp,
            root,
            relay,
        }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        let path = self.root.join(name);
        std::fs::create_dir_all(&path).expect("dir");
        path
    }

    fn machine(&self, name: &str) -> Daemon {
        Daemon::start(&self.path(name), &self.relay.url())
    }
}

fn lines_of(output: &[String]) -> Vec<String> {
    output
        .iter()
        .filter(|line| line.starts_with("line "))
        .cloned()
        .collect()
}

#[test]
fn two_machines_one_controller_sessions_on_both() {
    let world = World::new();
    let alpha = world.machine("alpha");
    let beta = world.machine("beta");
    let ctl = world.path("ctl");
    pair(&ctl, &alpha);
    pair(&ctl, &beta);

    let machines = ok(&ctl, &["ctl", "machines", "--json"]);
    let machines: serde_json::Value = serde_json::from_str(&machines).expect("json");
    assert_eq!(machines.as_array().map(Vec::len), Some(2));
    assert!(
        machines
            .as_array()
            .expect("list")
            .iter()
            .all(|m| m["online"] == serde_json::json!(true))
    );

    let work = world.path("work");
    let a = start_session(&ctl, "alpha", &work, "echo from alpha; echo oops >&2");
    let b = start_session(&ctl, "beta", &work, "pwd; echo from beta");
    for (machine, session, expect) in [("alpha", &a, "from alpha"), ("beta", &b, "from beta")] {
        let watch = Watch::start(&ctl, machine, &session[..8]);
        let output = watch.read_until(|line| line.starts_with("● done"));
        assert!(
            output.iter().any(|line| line == expect),
            "{machine}: {output:?}"
        );
        assert!(watch.finish().success());
    }
    let sessions = ok(&ctl, &["ctl", "sessions", "--json"]);
    let sessions: serde_json::Value = serde_json::from_str(&sessions).expect("json");
    assert_eq!(sessions.as_array().map(Vec::len), Some(2));
}

#[test]
fn relay_and_daemon_crashes_lose_nothing() {
    let mut world = World::new();
    let mut alpha = world.machine("alpha");
    let ctl = world.path("ctl");
    pair(&ctl, &alpha);
    let work = world.path("work");

    // A slow producer: 300 numbered lines.
    let session = start_session(
        &ctl,
        "alpha",
        &work,
        "i=1; while [ $i -le 300 ]; do echo line $i; i=$((i+1)); sleep 0.01; done",
    );
    let watch = Watch::start(&ctl, "alpha", &session[..8]);
    let mut seen = watch.read_until(|line| line == "line 20");
    world.relay.kill();
    world.relay.restart();
    seen.extend(watch.read_until(|line| line.starts_with("● ")));
    assert!(watch.finish().success());
    let expected: Vec<String> = (1..=300).map(|n| format!("line {n}")).collect();
    if lines_of(&seen) != expected {
        eprintln!(
            "WATCH STDERR: {}",
            std::fs::read_to_string(ctl.join("watch.err")).unwrap_or_default()
        );
        eprintln!("DAEMON LOG: {}", alpha.log());
    }
    assert_eq!(
        lines_of(&seen),
        expected,
        "every line exactly once, in order"
    );

    // The daemon dies hard; its history survives and a new session works.
    alpha.kill();
    alpha.restart();
    let watch = Watch::start(&ctl, "alpha", &session[..8]);
    let replayed = watch.read_until(|line| line.starts_with("● "));
    assert_eq!(lines_of(&replayed), expected);
    let again = start_session(&ctl, "alpha", &work, "echo after the crash");
    let watch = Watch::start(&ctl, "alpha", &again[..8]);
    let output = watch.read_until(|line| line.starts_with("● "));
    assert!(
        output.contains(&"after the crash".to_string()),
        "{output:?}"
    );
}

#[test]
fn a_new_connection_gets_only_what_it_asked_for() {
    // Each `watch` below is killed mid-stream, leaving the machine a live subscription for a
    // connection that is gone. The controller's next connection must not inherit it: every
    // watch replays the session from its first event, in order, with none missing.
    let world = World::new();
    let alpha = world.machine("alpha");
    let controller = world.path("controller");
    pair(&controller, &alpha);
    let session = start_session(
        &controller,
        "alpha",
        &world.path("work"),
        "for i in $(seq 1 2000); do echo tick $i; sleep 0.005; done",
    );
    for round in 1..=6u64 {
        let watch = Watch::with_args(&controller, &["ctl", "watch", "alpha", &session, "--json"]);
        let mut expected = 1;
        // Past the history, into live events: more of them each round.
        let lines = watch.read_until(|line| {
            let event: serde_json::Value = serde_json::from_str(line).expect("event json");
            let seq = event["seq"].as_u64().expect("seq");
            assert_eq!(
                seq,
                expected,
                "round {round}: event {seq} after {}",
                expected - 1
            );
            expected += 1;
            event["kind"] == "output" && seq > 20 * round
        });
        assert!(lines.len() as u64 > 20 * round);
    }
    ok(&controller, &["ctl", "stop", "alpha", &session]);
}

#[test]
fn two_watches_with_one_controller_key_both_stay_and_see_every_event() {
    // `ctl watch` twice with the same device key (two terminals, or two tabs of the web app):
    // the relay keeps both connections, and the machine sends each its own live events.
    let world = World::new();
    let alpha = world.machine("alpha");
    let controller = world.path("controller");
    pair(&controller, &alpha);
    let work = world.path("work");
    let session = start_session(
        &controller,
        "alpha",
        &work,
        "while [ ! -f go ]; do sleep 0.02; done; for i in $(seq 1 60); do echo tick $i; sleep 0.01; done",
    );
    let args = ["ctl", "watch", "alpha", session.as_str(), "--json"];
    let watches = [
        Watch::logged(&controller, &args, "one.err"),
        Watch::logged(&controller, &args, "two.err"),
    ];
    let seq_of = |line: &str| -> u64 {
        let event: serde_json::Value = serde_json::from_str(line).expect("event json");
        event["seq"].as_u64().expect("seq")
    };
    // Both are connected and into the history before the session prints anything.
    let mut seen: Vec<Vec<u64>> = watches
        .iter()
        .map(|watch| {
            watch
                .read_until(|_| true)
                .iter()
                .map(|l| seq_of(l))
                .collect()
        })
        .collect();
    std::fs::write(work.join("go"), "").expect("go");
    let mut outputs = Vec::new();
    for (watch, seqs) in watches.iter().zip(&mut seen) {
        let mut output = 0;
        watch.read_until(|line| {
            seqs.push(seq_of(line));
            let event: serde_json::Value = serde_json::from_str(line).expect("event json");
            if event["kind"] == "output" {
                output += 1;
            }
            event["kind"] == "status" && event["status"] == "done"
        });
        let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
        assert_eq!(*seqs, expected, "every event once, in order");
        outputs.push(output);
    }
    assert_eq!(seen[0], seen[1], "both saw the same events");
    assert!(outputs[0] >= 10, "{} output events", outputs[0]);
    for err in ["one.err", "two.err"] {
        let text = std::fs::read_to_string(controller.join(err)).unwrap_or_default();
        assert!(!text.contains("reconnecting"), "{err}: {text}");
    }
    let metrics = world.relay.metrics();
    assert!(
        metrics.contains("relay_disconnects_total{reason=\"displaced\"} 0"),
        "{metrics}"
    );
    for watch in watches {
        assert!(watch.finish().success());
    }
}

#[test]
fn a_second_controller_sees_the_same_sessions() {
    let world = World::new();
    let alpha = world.machine("alpha");
    let first = world.path("first");
    let second = world.path("second");
    pair(&first, &alpha);
    let session = start_session(&first, "alpha", &world.path("work"), "echo shared");
    // Pairing a second device: the machine offers a new link on request.
    let mut pairing = muxagent(&alpha.home)
        .arg("pair")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("pair");
    let link = alpha.link();
    let out = ok(&second, &["ctl", "pair", &link]);
    assert!(out.starts_with("paired with alpha"), "{out}");
    assert!(pairing.wait().expect("pair exits").success());

    let list = |home| -> Vec<String> {
        let out = ok(home, &["ctl", "sessions", "alpha", "--json"]);
        let rows: serde_json::Value = serde_json::from_str(&out).expect("json");
        rows.as_array()
            .expect("rows")
            .iter()
            .map(|row| row["id"].as_str().expect("id").to_string())
            .collect()
    };
    assert_eq!(list(&first), vec![session.clone()]);
    assert_eq!(list(&second), vec![session.clone()]);
    let watch = Watch::start(&second, "alpha", &session[..8]);
    assert!(
        watch
            .read_until(|line| line.starts_with("● "))
            .contains(&"shared".to_string())
    );
}

#[test]
fn a_revoked_machine_is_cut_off_and_the_other_keeps_working() {
    let world = World::new();
    let alpha = world.machine("alpha");
    let beta = world.machine("beta");
    let ctl = world.path("ctl");
    pair(&ctl, &alpha);
    pair(&ctl, &beta);

    let out = ok(&ctl, &["ctl", "revoke", "alpha"]);
    assert!(out.starts_with("revoked alpha"), "{out}");
    let machines = ok(&ctl, &["ctl", "machines", "--json"]);
    let machines: serde_json::Value = serde_json::from_str(&machines).expect("json");
    let names: Vec<&str> = machines
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|m| m["hostname"].as_str())
        .collect();
    assert_eq!(names, ["beta"]);
    let error = fails(&ctl, &["ctl", "sessions", "alpha"]);
    assert!(
        error.contains("no paired machine is called `alpha`"),
        "{error}"
    );
    // The relay refuses alpha's key from now on.
    wait_for("alpha to be refused", || {
        alpha.status()["connected"] == serde_json::json!(false)
            && alpha.status()["revoked"] == serde_json::json!(true)
    });
    wait_for("the refusal in alpha's log", || {
        alpha.log().contains("revoked")
    });
    assert!(
        world.relay.metrics().contains("revocations"),
        "metrics count revocations"
    );

    let session = start_session(&ctl, "beta", &world.path("work"), "echo still here");
    let watch = Watch::start(&ctl, "beta", &session[..8]);
    assert!(
        watch
            .read_until(|line| line.starts_with("● "))
            .contains(&"still here".to_string())
    );
}

#[test]
fn bad_input_gets_one_clear_line_and_a_failure() {
    let world = World::new();
    let alpha = world.machine("alpha");
    let ctl = world.path("ctl");
    let link = alpha.link();

    // Tampered: a character of the ticket changed.
    let (base, ticket) = link.split_once('#').expect("fragment");
    let mut bytes = ticket.as_bytes().to_vec();
    let middle = bytes.len() / 2;
    bytes[middle] = if bytes[middle] == b'A' { b'B' } else { b'A' };
    let tampered = format!("{base}#{}", String::from_utf8(bytes).expect("ascii"));
    let error = fails(&ctl, &["ctl", "pair", &tampered]);
    assert!(error.contains("pair"), "{error}");

    // Expired: a real ticket whose expiry has passed, re-encoded.
    let expired = {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let mut ticket = muxagent_proto::ticket::Ticket::from_link(&link, now).expect("valid link");
        ticket.expires_at = now - 60;
        ticket.link()
    };
    let error = fails(&ctl, &["ctl", "pair", &expired]);
    assert!(error.contains("expired"), "{error}");

    // Used twice.
    ok(&ctl, &["ctl", "pair", &link]);
    let other = world.path("other");
    let error = fails(&other, &["ctl", "pair", &link]);
    assert!(
        error.contains("unknown, expired or already used"),
        "{error}"
    );

    // An unknown machine name.
    let error = fails(&ctl, &["ctl", "sessions", "gamma"]);
    assert!(
        error.contains("no paired machine is called `gamma`"),
        "{error}"
    );

    // A relay that does not answer.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let lonely = world.path("lonely");
    let error = fails(&lonely, &["daemon", "start", "--relay", "ftp://nowhere"]);
    assert!(error.contains("scheme"), "{error}");
    let dead_ticket = {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let mut ticket = muxagent_proto::ticket::Ticket::from_link(&link, now).expect("valid link");
        ticket.relay_url = dead.as_str().try_into().expect("short");
        ticket.link()
    };
    let error = fails(&other, &["ctl", "pair", &dead_ticket]);
    assert!(error.contains("does not answer"), "{error}");
}

#[test]
fn the_daemon_detaches_holds_its_lock_and_stops() {
    let world = World::new();
    let home = world.path("solo");
    let url = world.relay.url();
    let out = ok(&home, &["daemon", "start", "--relay", &url]);
    assert!(out.contains("daemon started"), "{out}");
    assert!(
        out.contains("/pair#"),
        "an unpaired daemon shows its pairing link: {out}"
    );
    let status = ok(&home, &["daemon", "status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&status).expect("json");
    assert_eq!(status["running"], serde_json::json!(true));
    assert!(
        status["pairing"]["link"]
            .as_str()
            .is_some_and(|link| link.contains("/pair#"))
    );

    let error = fails(&home, &["daemon", "start"]);
    assert!(error.contains("already running"), "{error}");

    let mode = |name: &str| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(home.join(name))
            .expect(name)
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("."), 0o700);
    assert_eq!(mode("machine.key"), 0o600);
    assert_eq!(mode("daemon.sock"), 0o600);

    assert!(ok(&home, &["daemon", "stop"]).contains("daemon stopped"));
    let status = ok(&home, &["daemon", "status", "--json"]);
    assert!(status.contains("\"running\":false"), "{status}");
}

/// CPU time (user + system) of process `pid` in clock ticks, from `/proc/PID/stat`.
fn cpu_ticks(pid: u64) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the `(comm)`: state is field 3, utime 14, stime 15.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |n: usize| {
        fields
            .get(n - 3)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(14) + field(15)
}

/// A secret key file of a home, as an identity.
fn identity_of(path: &std::path::Path) -> muxagent_proto::identity::Identity {
    let secret = std::fs::read(path).expect("key file");
    muxagent_proto::identity::Identity::from_secret_bytes(&secret[..].try_into().expect("64 bytes"))
}

#[test]
fn junk_from_an_account_member_cannot_fill_the_machines_disk() {
    use muxagent_proto::app::{DeviceMessage, ListSessions, MachineMessage};
    use muxagent_proto::device::{MachineLink, Received};
    use muxagent_proto::frame::{Frame, Role, Send};
    use muxagent_relay_client::{Client, ClientConfig};

    let world = World::new();
    let alpha = world.machine("alpha");
    let ctl = world.path("ctl");
    pair(&ctl, &alpha);
    let machine = identity_of(&alpha.home.join("machine.key")).public();
    // An account member: here the paired controller's own key, on a connection of its own.
    let device = identity_of(&ctl.join("controller/controller.key"));
    let pid = alpha.status()["pid"].as_u64().expect("pid");

    const JUNK: usize = 20_000;
    /// Junk frames between two round trips: fewer than the relay queues for the machine, so
    /// none is dropped on the way and the machine reads every one.
    const BATCH: usize = 24;
    let url = world.relay.url();
    let (log_before, cpu_before, elapsed) = smol::block_on(async {
        let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
        let mut client =
            Client::connect(&url, &device, Role::Device, None, &ClientConfig::default())
                .await
                .expect("log in");
        let mut link = MachineLink::new(machine);
        client
            .send(&link.connect(&device, &mut rng).expect("connect"))
            .await
            .expect("send");
        // Wait for a Recv from the machine that gives `want`.
        async fn answer(client: &mut Client, link: &mut MachineLink, opened: bool) {
            loop {
                if let Frame::Recv(recv) = client.recv().await.expect("relay") {
                    match link.receive(&recv.payload) {
                        Ok(Received::Opened) if opened => return,
                        Ok(Received::Message(MachineMessage::SessionList(_))) if !opened => return,
                        _ => {}
                    }
                }
            }
        }
        answer(&mut client, &mut link, true).await;
        let round_trip = |request: u32| DeviceMessage::ListSessions(ListSessions { request });

        let log_before = alpha.log().len();
        let cpu_before = cpu_ticks(pid);
        let started = std::time::Instant::now();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for n in 0..JUNK {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut payload = seed.to_le_bytes().repeat(6);
            // Half look like handshakes (each costs the machine a Noise attempt), half are not
            // packets at all.
            payload[0] = if n % 2 == 0 { 4 } else { 0xee };
            let to = machine.fingerprint();
            client
                .send(&Frame::Send(Send { to, payload }))
                .await
                .expect("send");
            if n % BATCH == BATCH - 1 {
                // A real request after the batch: its answer means the machine read the batch.
                let frame = link.send(&round_trip(n as u32)).expect("seal");
                client.send(&frame).await.expect("send");
                answer(&mut client, &mut link, false).await;
            }
        }
        (log_before, cpu_before, started.elapsed())
    });
    let grown = alpha.log().len() - log_before;
    let cpu = cpu_ticks(pid) - cpu_before;
    eprintln!(
        "junk flood: {JUNK} packets in {elapsed:?}; the daemon's log grew {grown} bytes; \
         daemon CPU {cpu} ticks"
    );
    assert!(
        grown < 16 * 1024,
        "the log grew {grown} bytes:\n{}",
        &alpha.log()[log_before..log_before + grown.min(2000)]
    );
}

#[test]
fn the_pairing_secret_never_reaches_the_log() {
    let world = World::new();
    // Detached: the daemon writes daemon.log itself.
    let solo = world.path("solo");
    let out = ok(&solo, &["daemon", "start", "--relay", &world.relay.url()]);
    let link = out
        .split_whitespace()
        .find(|word| word.contains("/pair#"))
        .expect("the link is shown to the person who started it")
        .trim_matches('\'')
        .to_string();
    let ctl = world.path("ctl");
    assert!(ok(&ctl, &["ctl", "pair", &link]).starts_with("paired with "));
    let (_, ticket) = link.split_once('#').expect("fragment");
    let read_log = || std::fs::read_to_string(solo.join("daemon.log")).unwrap_or_default();
    wait_for("the machine to log the pairing", || {
        read_log().contains("paired with device")
    });
    let log = read_log();
    assert!(
        log.contains("pairing ") && log.contains("open until"),
        "{log}"
    );
    assert!(!log.contains(ticket), "the ticket is in daemon.log:\n{log}");
    assert!(!log.contains("/pair#"), "a link is in daemon.log:\n{log}");
    ok(&solo, &["daemon", "stop"]);

    // In the foreground with standard error to a file, the same.
    let alpha = world.machine("alpha");
    let link = alpha.link();
    pair(&ctl, &alpha);
    let (_, ticket) = link.split_once('#').expect("fragment");
    assert!(!alpha.log().contains(ticket), "{}", alpha.log());
}

#[test]
fn one_damaged_session_log_is_set_aside_and_the_daemon_starts() {
    let world = World::new();
    let mut alpha = world.machine("alpha");
    let ctl = world.path("ctl");
    pair(&ctl, &alpha);
    let work = world.path("work");
    let broken = start_session(&ctl, "alpha", &work, "echo one; echo two; echo three");
    let kept = start_session(&ctl, "alpha", &work, "echo kept");
    for session in [&broken, &kept] {
        let watch = Watch::start(&ctl, "alpha", &session[..8]);
        watch.read_until(|line| line.starts_with("● "));
    }
    alpha.kill();
    // One flipped byte in the first record of one session's log, valid records after it.
    let segment = alpha
        .home
        .join("sessions")
        .join(&broken)
        .join("00000000000000000000.seg");
    let mut bytes = std::fs::read(&segment).expect("segment");
    bytes[40] ^= 0x01;
    std::fs::write(&segment, bytes).expect("write");

    // The daemon starts anyway (restart waits until it is connected) …
    alpha.restart();
    // … names the damaged session in its log and in `sessions` …
    let log = alpha.log();
    assert!(
        log.contains(&format!("session {broken} is set aside")),
        "{log}"
    );
    let rows = ok(&alpha.home, &["sessions", "--json"]);
    let rows: serde_json::Value = serde_json::from_str(&rows).expect("json");
    let rows = rows.as_array().expect("rows");
    let damaged = rows
        .iter()
        .find(|row| row["id"] == serde_json::json!(broken))
        .expect("the damaged session is listed");
    assert_eq!(damaged["status"], "damaged");
    assert!(
        damaged["error"]
            .as_str()
            .is_some_and(|error| error.contains("corrupt")),
        "{damaged}"
    );
    let text = ok(&alpha.home, &["sessions"]);
    assert!(text.contains("damaged"), "{text}");
    // … and the other sessions work.
    let watch = Watch::start(&ctl, "alpha", &kept[..8]);
    assert!(
        watch
            .read_until(|line| line.starts_with("● "))
            .contains(&"kept".to_string())
    );
    let again = start_session(&ctl, "alpha", &work, "echo after");
    let watch = Watch::start(&ctl, "alpha", &again[..8]);
    assert!(
        watch
            .read_until(|line| line.starts_with("● "))
            .contains(&"after".to_string())
    );
}

#[test]
fn a_revoked_machine_recovers_with_a_local_reset() {
    let world = World::new();
    let mut alpha = world.machine("alpha");
    let ctl = world.path("ctl");
    pair(&ctl, &alpha);
    let work = world.path("work");
    let before = start_session(&ctl, "alpha", &work, "echo before");
    let old = alpha.status()["fingerprint"]
        .as_str()
        .expect("fp")
        .to_string();
    ok(&ctl, &["ctl", "revoke", "alpha"]);

    // The refusal says how to recover; the relay-side unpair cannot help and says so.
    wait_for("the advice in alpha's log", || {
        alpha.log().contains("muxagent unpair --local")
    });
    let error = fails(&alpha.home, &["unpair"]);
    assert!(error.contains("unpair --local"), "{error}");

    // The local reset: new keys, no account, no devices, while the daemon runs …
    let out = ok(&alpha.home, &["unpair", "--local"]);
    assert!(out.contains("new keys"), "{out}");
    wait_for("alpha to log in again as a pending machine", || {
        let status = alpha.status();
        status["connected"] == serde_json::json!(true)
            && status["paired_devices"] == serde_json::json!(0)
            && status["fingerprint"].as_str().is_some_and(|fp| fp != old)
    });
    // … and it pairs again, with its history kept.
    pair(&ctl, &alpha);
    let sessions = ok(&alpha.home, &["sessions", "--json"]);
    assert!(sessions.contains(&before), "{sessions}");
    let after = start_session(&ctl, "alpha", &work, "echo after the reset");
    let watch = Watch::start(&ctl, "alpha", &after[..8]);
    assert!(
        watch
            .read_until(|line| line.starts_with("● "))
            .contains(&"after the reset".to_string())
    );

    // Without a running daemon, the same.
    alpha.kill();
    let auth = |home: &std::path::Path| -> serde_json::Value {
        serde_json::from_str(&ok(home, &["auth", "status", "--json"])).expect("json")
    };
    let paired = auth(&alpha.home);
    assert_eq!(paired["devices"].as_array().map(Vec::len), Some(1));
    ok(&alpha.home, &["unpair", "--local"]);
    let reset = auth(&alpha.home);
    assert_eq!(reset["devices"].as_array().map(Vec::len), Some(0));
    assert_ne!(reset["fingerprint"], paired["fingerprint"]);
    assert_eq!(reset["relay"], paired["relay"]);
}

/// `ctl devices --json` as rows.
fn device_rows(controller: &std::path::Path) -> Vec<serde_json::Value> {
    let out = ok(controller, &["ctl", "devices", "--json"]);
    let rows: serde_json::Value = serde_json::from_str(&out).expect("json");
    rows.as_array().expect("rows").clone()
}

#[test]
fn an_owner_revokes_a_device_and_the_machine_forgets_it() {
    let world = World::new();
    let alpha = world.machine("alpha");
    let owner = world.path("owner");
    let phone = world.path("phone");
    pair(&owner, &alpha);
    // A second device pairs through a fresh link: it joins the account, no owner.
    let mut pairing = muxagent(&alpha.home)
        .arg("pair")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("pair");
    let link = alpha.link();
    ok(&phone, &["ctl", "pair", &link]);
    assert!(pairing.wait().expect("pair exits").success());
    wait_for("alpha to know both devices", || {
        alpha.status()["paired_devices"].as_u64() == Some(2)
    });

    // The owner sees both devices, who owns, and what each paired with.
    let rows = device_rows(&owner);
    let summary: Vec<(bool, bool, Vec<&str>)> = rows
        .iter()
        .map(|row| {
            let paired = row["paired"]
                .as_array()
                .expect("paired")
                .iter()
                .filter_map(|m| m["hostname"].as_str())
                .collect();
            (
                row["you"].as_bool().expect("you"),
                row["owner"].as_bool().expect("owner"),
                paired,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![(true, true, vec!["alpha"]), (false, false, vec!["alpha"])]
    );
    let phone_print = rows[1]["fingerprint"]
        .as_str()
        .expect("fingerprint")
        .to_string();
    let owner_print = rows[0]["fingerprint"]
        .as_str()
        .expect("fingerprint")
        .to_string();
    let table = ok(&owner, &["ctl", "devices"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("DEVICE"), "{table}");
    assert!(
        lines[1].starts_with(&owner_print)
            && lines[1].contains(" owner ")
            && lines[1].contains("alpha")
            && lines[1].ends_with("(this controller)"),
        "{table}"
    );
    assert!(
        lines[2].starts_with(&phone_print)
            && lines[2].contains(" - ")
            && lines[2].contains("alpha"),
        "{table}"
    );
    // The phone sees only itself, and may not revoke the owner.
    let mine = device_rows(&phone);
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["fingerprint"].as_str(), Some(phone_print.as_str()));
    let error = fails(&phone, &["ctl", "revoke-device", &owner_print]);
    assert!(error.contains("not an owner"), "{error}");
    let error = fails(&owner, &["ctl", "revoke-device", "ab"]);
    assert!(error.contains("not a fingerprint prefix"), "{error}");

    // The owner revokes the phone by a prefix of its fingerprint.
    let out = ok(&owner, &["ctl", "revoke-device", &phone_print[..9]]);
    assert!(
        out.starts_with(&format!("revoked device {phone_print}")) && out.contains("alpha"),
        "{out}"
    );
    wait_for("alpha to forget the phone", || {
        let status = alpha.status();
        status["paired_devices"].as_u64() == Some(1)
            && status["revoked_devices"] == serde_json::json!([phone_print.as_str()])
    });
    assert!(
        alpha
            .log()
            .contains(&format!("device {phone_print} was revoked on the relay")),
        "{}",
        alpha.log()
    );
    let auth = ok(&alpha.home, &["auth", "status", "--json"]);
    let auth: serde_json::Value = serde_json::from_str(&auth).expect("json");
    let kept: Vec<&str> = auth["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .filter_map(|d| d["fingerprint"].as_str())
        .collect();
    assert_eq!(kept, [owner_print.as_str()]);
    let status = ok(&alpha.home, &["daemon", "status"]);
    assert!(
        status.contains(&format!("revoked      {phone_print}")),
        "{status}"
    );

    // The phone is refused; the owner goes on.
    let error = fails(&phone, &["ctl", "sessions", "alpha"]);
    assert!(error.contains("revoked"), "{error}");
    start_session(&owner, "alpha", &world.path("work"), "echo still mine");
    assert_eq!(device_rows(&owner).len(), 1);
}

#[test]
fn a_hostname_with_bidi_or_invisible_characters_is_refused_at_start() {
    let root = tempfile::tempdir().expect("tempdir");
    for bad in ["al\u{202e}ahp", "alpha\u{200b}"] {
        let mut child = muxagent(root.path())
            .env("MUXAGENT_HOSTNAME", bad)
            .args([
                "daemon",
                "start",
                "--foreground",
                "--relay",
                "http://127.0.0.1:9",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run the daemon");
        // It refuses before doing anything else; a daemon that starts is killed and fails this.
        let started = std::time::Instant::now();
        while child.try_wait().expect("wait").is_none() {
            if started.elapsed() > DEADLINE {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the daemon started as {bad:?}");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let output = child.wait_with_output().expect("output");
        assert!(!output.status.success());
        let error = String::from_utf8_lossy(&output.stderr);
        assert!(error.contains("MUXAGENT_HOSTNAME"), "{error}");
        assert!(error.contains("bidi or invisible"), "{error}");
        // The error names the character instead of obeying it.
        assert!(!error.contains(bad) && error.contains("⟪U+"), "{error}");
    }
}

#[test]
fn a_plain_relay_url_to_another_host_is_warned_about() {
    use std::io::BufRead;
    let root = tempfile::tempdir().expect("tempdir");
    // 0.0.0.0 is not a loopback name (on Linux it reaches this host: nothing leaves it).
    let mut child = muxagent(root.path())
        .env("MUXAGENT_HOSTNAME", "plain")
        .args([
            "daemon",
            "start",
            "--foreground",
            "--relay",
            "ws://0.0.0.0:9",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run the daemon");
    let stderr = child.stderr.take().expect("stderr");
    let (sender, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let warning = lines.recv_timeout(DEADLINE);
    let _ = child.kill();
    let _ = child.wait();
    let warning = warning.expect("a first line on stderr");
    assert!(warning.contains("WARN"), "{warning}");
    assert!(warning.contains("ws://0.0.0.0:9"), "{warning}");
    assert!(warning.contains("not encrypted"), "{warning}");
}
