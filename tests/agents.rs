//! End to end with agents: relay, daemon and `muxagent ctl` as real processes on 127.0.0.1, with
//! each agent CLI replaced by the fake agent (`tests/programs/fake_agent.rs`) replaying a
//! recording of the real CLI (`agents/fixtures/`). The fake checks every line the daemon sends
//! it; its transcript says whether the daemon said the right things in the right order.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

mod support;

use serde_json::Value;
use support::agents::*;
use support::*;

#[test]
fn relay_process() {
    // Runs only when this binary is re-executed as a relay (see support::Relay).
    maybe_run_relay();
}

// ---- Claude Code ----

#[test]
fn claude_approve() {
    let world = World::fake("claude", "approve");
    let session = world.start("touch approved.txt", &[]);
    let events = approved(&world, &session, false);
    let tool = last(&events, "tool_started");
    assert_eq!(tool["name"], "Bash");
    assert!(
        with_kind(&events, "tool_finished")
            .iter()
            .any(|e| e["ok"] == true)
    );
    assert!(
        usage(&events)["cost_usd"].as_f64().unwrap_or(0.0) > 0.0,
        "Claude reports dollars"
    );
    assert!(!with_kind(&events, "agent_session").is_empty());
    world.played(0);
}

#[test]
fn claude_deny_tells_the_agent_why() {
    let world = World::fake("claude", "deny");
    let session = world.start("touch denied.txt", &[]);
    denied(&world, &session);
    world.played(0);
    let told = world.transcript().iter().any(|line| {
        line["line"]
            .as_str()
            .unwrap_or("")
            .contains("The user said no: not now.")
    });
    assert!(told, "the deny message reaches Claude");
}

#[test]
fn claude_allow_always() {
    let world = World::fake("claude", "allow_always");
    let session = world.start("touch always.txt", &[]);
    approved(&world, &session, true);
    world.ctl(&["send", "machine", &session, "again"]);
    let events = world.watch(&session, "idle");
    assert_eq!(
        with_kind(&events, "approval_requested").len(),
        1,
        "no second ask"
    );
    world.played(0);
}

#[test]
fn claude_interrupt_withdraws_the_approval() {
    let world = World::fake("claude", "interrupt");
    let session = world.start("touch interrupted.txt", &[]);
    interrupted(&world, &session, true);
    world.played(0);
}

#[test]
fn claude_plan_then_hand_off() {
    let world = World::fake("claude", "plan");
    let session = world.start("plan it", &["--mode", "plan"]);
    let events = approved(&world, &session, false);
    let plan = last(&events, "plan_proposed")["plan"]
        .as_str()
        .expect("plan")
        .to_string();
    assert!(plan.contains("Create plan.txt"), "{plan}");
    assert_eq!(last(&events, "approval_requested")["plan"], true);
    world.played(0);

    // Hand the approved plan to a session on another machine.
    let state = world.root.join("fake2");
    let other = Daemon::start_with_env(
        &world.root.join("other"),
        &world.relay_url,
        fake_env("claude", "approve", &state),
    );
    pair(&world.controller, &other);
    let work = world.work.display().to_string();
    let from = format!("machine:{session}");
    let out = world.ctl(&[
        "start",
        "other",
        "--runtime",
        "claude",
        "--cwd",
        &work,
        "--plan-from",
        &from,
        "--json",
    ]);
    let value: Value = serde_json::from_str(out.trim()).expect("json");
    let handed = value["session"].as_str().expect("session");
    let events = world.ctl(&["watch", "other", handed, "--json", "--until", "approval"]);
    let prompt = events
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("json"))
        .find(|event| event["kind"] == "prompt")
        .expect("a prompt event");
    assert!(
        prompt["text"].as_str().unwrap_or("").contains(plan.trim()),
        "{prompt}"
    );
}

#[test]
fn claude_resume_after_daemon_restart() {
    let mut world = World::fake("claude", "resume");
    let session = world.start("remember 42", &[]);
    resumed(&mut world, &session);
}

#[test]
fn claude_file_write_shows_a_diff() {
    let world = World::fake("claude", "write");
    let session = world.start("write notes.txt", &[]);
    let events = approved(&world, &session, false);
    let finished = with_kind(&events, "tool_finished");
    assert!(
        finished.iter().any(|e| e["diff"].is_string()),
        "a diff for the write: {finished:#?}"
    );
    world.played(0);
}

// ---- Codex ----

#[test]
fn codex_approve() {
    let world = World::fake("codex", "approve");
    let session = world.start("touch approved.txt", &[]);
    let events = approved(&world, &session, false);
    assert!(
        with_kind(&events, "tool_finished")
            .iter()
            .any(|e| e["ok"] == true)
    );
    assert!(
        usage(&events)["cost_usd"].is_null(),
        "Codex reports tokens, not dollars"
    );
    assert!(
        !with_kind(&events, "opaque").is_empty(),
        "unknown notifications are kept"
    );
    world.played(0);
}

#[test]
fn codex_deny() {
    let world = World::fake("codex", "deny");
    let session = world.start("touch denied.txt", &[]);
    denied(&world, &session);
    world.played(0);
}

#[test]
fn codex_allow_always() {
    let world = World::fake("codex", "allow_always");
    let session = world.start("touch always.txt", &[]);
    approved(&world, &session, true);
    world.ctl(&["send", "machine", &session, "again"]);
    let events = world.watch(&session, "idle");
    assert_eq!(
        with_kind(&events, "approval_requested").len(),
        1,
        "no second ask"
    );
    world.played(0);
}

#[test]
fn codex_interrupt_withdraws_the_approval() {
    let world = World::fake("codex", "interrupt");
    let session = world.start("touch interrupted.txt", &[]);
    interrupted(&world, &session, true);
    world.played(0);
}

#[test]
fn codex_file_change_shows_a_diff() {
    let world = World::fake("codex", "file_change");
    let session = world.start("write notes.txt", &[]);
    let events = approved(&world, &session, false);
    assert!(
        with_kind(&events, "tool_finished").iter().any(|e| e["diff"]
            .as_str()
            .is_some_and(|d| d.contains("hello from apply_patch"))),
        "{events:#?}"
    );
    world.played(0);
}

#[test]
fn codex_resume_after_daemon_restart() {
    let mut world = World::fake("codex", "resume");
    let session = world.start("remember 42", &[]);
    resumed(&mut world, &session);
}

// ---- Gemini (ACP) ----

#[test]
fn gemini_approve() {
    let world = World::fake("gemini", "approve");
    let session = world.start("touch approved.txt", &[]);
    let events = approved(&world, &session, false);
    assert!(
        usage(&events)["cost_usd"].is_null(),
        "Gemini reports tokens, not dollars"
    );
    world.played(0);
}

#[test]
fn gemini_deny() {
    let world = World::fake("gemini", "deny");
    let session = world.start("touch denied.txt", &[]);
    denied(&world, &session);
    world.played(0);
}

#[test]
fn gemini_allow_always() {
    let world = World::fake("gemini", "allow_always");
    let session = world.start("touch always.txt", &[]);
    approved(&world, &session, true);
    world.ctl(&["send", "machine", &session, "again"]);
    let events = world.watch(&session, "idle");
    assert_eq!(
        with_kind(&events, "approval_requested").len(),
        1,
        "no second ask"
    );
    world.played(0);
}

#[test]
fn gemini_interrupt_withdraws_the_approval() {
    let world = World::fake("gemini", "interrupt");
    let session = world.start("touch interrupted.txt", &[]);
    interrupted(&world, &session, true);
    world.played(0);
}

#[test]
fn gemini_start_in_a_mode() {
    let world = World::fake("gemini", "set_mode");
    let session = world.start("touch yolo.txt", &["--mode", "yolo"]);
    let events = world.watch(&session, "idle");
    assert!(
        with_kind(&events, "approval_requested").is_empty(),
        "yolo asks nothing"
    );
    world.played(0);
}

#[test]
fn gemini_resume_after_daemon_restart() {
    let mut world = World::fake("gemini", "resume");
    let session = world.start("remember 42", &[]);
    resumed(&mut world, &session);
}

// ---- Refusals ----

#[test]
fn decisions_for_unknown_or_closed_approvals_are_refused() {
    let world = World::fake("claude", "approve");
    let session = world.start("touch approved.txt", &[]);
    let request = world.pending_approval(&session);
    let digest = world.digest(&request);
    let unknown = fails(
        &world.controller,
        &[
            "ctl",
            "approve",
            "machine",
            &format!("{session}/99"),
            "--digest",
            &digest,
        ],
    );
    assert!(unknown.contains("99"), "{unknown}");
    world.ctl(&["approve", "machine", &request, "--digest", &digest]);
    world.watch(&session, "idle");
    let again = fails(
        &world.controller,
        &["ctl", "approve", "machine", &request, "--digest", &digest],
    );
    assert!(
        again.contains("no longer pending") || again.contains("not pending"),
        "{again}"
    );
}

#[test]
fn allowing_without_a_terminal_takes_the_digest_of_what_was_shown() {
    let world = World::fake("claude", "approve");
    let session = world.start("touch approved.txt", &[]);
    let request = world.pending_approval(&session);
    // `approvals` shows the input whole and the digest of exactly it.
    let shown = world.ctl(&["approvals"]);
    let digest = world.digest(&request);
    assert!(shown.contains(&format!("  digest   {digest}\n")), "{shown}");
    assert!(
        shown.contains(&format!("--digest {digest}\n")),
        "the allow hint quotes it: {shown}"
    );
    assert!(shown.contains("  │ "), "the input is printed: {shown}");
    // No terminal to ask on and no digest: nothing is signed.
    let bare = fails(&world.controller, &["ctl", "approve", "machine", &request]);
    assert!(bare.contains("--digest"), "{bare}");
    // A digest of something else: nothing is signed, and the approval still waits.
    let wrong = format!("{:016x}", u64::from_str_radix(&digest, 16).unwrap() ^ 1);
    let refused = fails(
        &world.controller,
        &["ctl", "approve", "machine", &request, "--digest", &wrong],
    );
    assert!(refused.contains("not the digest"), "{refused}");
    assert!(
        !refused.contains(&digest),
        "the right one is not given away: {refused}"
    );
    assert_eq!(world.digest(&request), digest, "still waiting");
    // The digest as shown (any case) allows it.
    world.ctl(&[
        "approve",
        "machine",
        &request,
        "--digest",
        &digest.to_uppercase(),
    ]);
    let events = world.watch(&session, "idle");
    assert_eq!(last(&events, "approval_resolved")["decision"], "allow");
}

#[test]
fn allowing_on_a_terminal_shows_the_input_whole_and_asks() {
    let world = World::fake("claude", "approve");
    let session = world.start("touch approved.txt", &[]);
    let request = world.pending_approval(&session);
    let digest = world.digest(&request);
    let args = ["ctl", "approve", "machine", request.as_str()];
    let prompt = "Type yes to sign: ";
    // Anything but yes signs nothing.
    let (status, out) = on_terminal(&world.controller, &args, prompt, "no");
    assert!(!status.success(), "{out}");
    assert!(out.contains("nothing was signed"), "{out}");
    assert_eq!(world.digest(&request), digest, "still waiting");
    let (status, out) = on_terminal(&world.controller, &args, prompt, "yes");
    assert!(status.success(), "{out}");
    assert!(out.contains("  tool     Bash\n"), "{out}");
    assert!(out.contains("  │ {"), "the input is printed: {out}");
    assert!(out.contains(&format!("  digest   {digest}\n")), "{out}");
    assert!(
        out.contains("Sign \"allowed once\" for exactly this?"),
        "{out}"
    );
    assert!(out.contains("answered "), "{out}");
    let events = world.watch(&session, "idle");
    assert_eq!(last(&events, "approval_resolved")["decision"], "allow");
}

/// A world whose agent asks once, with an input of about `len` bytes.
fn asking_with(len: usize) -> World {
    World::new("claude", |root| {
        let state = root.join("fake");
        std::fs::create_dir_all(&state).expect("state");
        vec![
            ("MUXAGENT_CLAUDE".into(), fake_agent().display().to_string()),
            ("FAKE_AGENT_BENCH".into(), "1".into()),
            ("FAKE_AGENT_INPUT_LEN".into(), len.to_string()),
            ("FAKE_AGENT_STATE".into(), state.display().to_string()),
        ]
    })
}

#[test]
fn a_big_input_is_fetched_whole_and_allowed_with_its_digest() {
    // An ask of ~200 KiB (a big Write): its event carries it cut to 24 KiB, so `ctl` fetches
    // the rest in pages before it shows a digest, and the digest it shows allows it.
    const LEN: usize = 200 * 1024;
    let world = asking_with(LEN);
    let session = world.start("write the big file", &[]);
    let request = world.pending_approval(&session);
    let events = world.watch(&session, "approval");
    let cut = last(&events, "approval_requested")["input"]
        .as_str()
        .expect("input")
        .len();
    assert!(cut < 30 * 1024, "the event carries it cut: {cut} bytes");
    let rows: Value =
        serde_json::from_str(&world.ctl(&["approvals", "--json"])).expect("approvals json");
    let row = &rows[0];
    assert_eq!(row["complete"], true, "fetched whole");
    let input = row["input"].as_str().expect("input");
    assert!(input.len() > LEN, "{} bytes", input.len());
    let command: Value = serde_json::from_str(input).expect("the input is the agent's JSON");
    assert!(
        command["command"]
            .as_str()
            .expect("command")
            .starts_with("true 0écrire")
    );
    let digest = world.digest(&request);
    let shown = world.ctl(&["approvals"]);
    assert!(!shown.contains("CUT"), "shown whole");
    assert!(shown.contains(&format!("  digest   {digest}\n")));
    world.ctl(&["approve", "machine", &request, "--digest", &digest]);
    let events = world.watch(&session, "idle");
    assert_eq!(last(&events, "approval_resolved")["decision"], "allow");
}

#[test]
fn an_input_longer_than_a_device_fetches_stays_cut_and_can_only_be_denied() {
    let world = asking_with(1_200_000);
    let session = world.start("write the huge file", &[]);
    let request = world.pending_approval(&session);
    let rows: Value =
        serde_json::from_str(&world.ctl(&["approvals", "--json"])).expect("approvals json");
    assert_eq!(rows[0]["complete"], false, "{:#}", rows[0]["digest"]);
    assert_eq!(rows[0]["digest"], Value::Null);
    let shown = world.ctl(&["approvals"]);
    assert!(shown.contains("CUT"), "{}", &shown[..shown.len().min(2000)]);
    world.ctl(&["deny", "machine", &request, "--message", "too big"]);
    let events = world.watch(&session, "idle");
    assert_eq!(
        last(&events, "approval_resolved")["decision"],
        "deny: too big"
    );
}

// ---- Delivery ----

/// A gauge or counter of the relay's `/metrics`.
fn metric(world: &World, series: &str) -> Option<u64> {
    world._relay.metrics().lines().find_map(|line| {
        line.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|value| value.trim().parse().ok())
    })
}

/// The machine's own view of a session (its control socket, not a controller).
fn local_session(world: &World, session: &str) -> Value {
    let out = ok(&world.daemon.home, &["sessions", "--json"]);
    let rows: Value = serde_json::from_str(&out).expect("sessions json");
    rows.as_array()
        .into_iter()
        .flatten()
        .find(|row| row["id"].as_str().is_some_and(|id| id.starts_with(session)))
        .cloned()
        .unwrap_or_default()
}

#[test]
fn an_approval_asked_while_no_controller_is_connected_waits_to_be_delivered() {
    let world = World::fake("claude", "approve");
    // A controller that followed a session and left: its subscription must not count as a
    // controller holding the next ask.
    let work = world.work.display().to_string();
    let out = world.ctl(&[
        "start",
        "machine",
        "--runtime",
        "command",
        "--cwd",
        &work,
        "--json",
        "--",
        "echo hi",
    ]);
    let value: Value = serde_json::from_str(out.trim()).expect("json");
    let first = value["session"].as_str().expect("session").to_string();
    world.ctl(&["watch", "machine", &first, "--until", "end"]);
    wait_for("the controller to be offline", || {
        metric(&world, "relay_devices_online") == Some(0)
    });

    // The agent asks while no controller is connected (the `start` below disconnects, and
    // it never subscribed).
    let session = world.start("touch approved.txt", &[]);
    wait_for("the approval to be asked", || {
        local_session(&world, &session)["status"] == "waiting_approval"
    });
    wait_for("the controller to be offline", || {
        metric(&world, "relay_devices_online") == Some(0)
    });
    let asked_by = local_session(&world, &session)["last_seq"]
        .as_u64()
        .expect("last_seq");

    // A controller connects and replays the session: only now is the ask delivered.
    let events = world.watch(&session, "approval");
    let requested = last(&events, "approval_requested");
    assert!(requested["seq"].as_u64() <= Some(asked_by));
    let delivered = events
        .iter()
        .find(|event| {
            event["kind"] == "approval_state"
                && event["approval"] == requested["approval"]
                && event["state"] == "delivered"
        })
        .expect("delivered once a controller connected");
    let seq = delivered["seq"].as_u64().expect("seq");
    assert!(
        seq > asked_by,
        "delivered (seq {seq}) while no controller was connected (the log was at {asked_by})"
    );
    // The rest of the flow is unchanged.
    approved(&world, &session, false);
    world.played(0);
}

/// What a device was sent is what the log holds after the daemon is killed (SIGKILL) in the
/// middle of a stream of deltas (logged in group commits) and restarted: no device holds a seq
/// that the restarted daemon gave to another event. (That events go out only after the fsync
/// that covers them is checked exactly by the daemon's unit test
/// `events_reach_devices_only_after_the_fsync_that_covers_them`; a kill cannot lose what was
/// written but not fsynced, so this checks the whole path around it.)
#[test]
fn what_a_device_was_sent_survives_the_daemon_killed_mid_stream() {
    let mut world = World::new("claude", |root| {
        let mut env = fake_env("claude", "approve", &root.join("fake"));
        env.push(("FAKE_AGENT_DELTAS".into(), "50000".into()));
        env
    });
    let session = world.start("stream", &[]);
    let args = ["ctl", "watch", "machine", &session, "--json"];
    let watch = Watch::with_args(&world.controller, &args);
    let mut seen = watch.read_until(|line| line.contains("\"seq\":200,"));
    world.daemon.kill();
    // Lines in flight when it died arrive while it restarts (any that come later are not
    // checked); lines the new daemon replays from its log may follow.
    world.daemon.restart();
    seen.extend(watch.stop());

    let log: std::collections::BTreeMap<u64, Value> = world
        .watch(&session, "end")
        .into_iter()
        .map(|event| (event["seq"].as_u64().expect("seq"), event))
        .collect();
    for line in &seen {
        let event: Value = serde_json::from_str(line).expect("event json");
        let seq = event["seq"].as_u64().expect("seq");
        assert_eq!(
            log.get(&seq),
            Some(&event),
            "the device was sent seq {seq}, which the log does not hold after the kill"
        );
    }
}
