//! End to end with agents: relay, daemon and `muxagent ctl` as real processes on 127.0.0.1, with
//! each agent CLI replaced by the fake agent (`tests/programs/fake_agent.rs`) replaying a
//! recording of the real CLI (`agents/fixtures/`). The fake checks every line the daemon sends
//! it; its transcript says whether the daemon said the right things in the right order.

mod support;

use std::path::{Path, PathBuf};

use serde_json::Value;
use support::*;

#[test]
fn relay_process() {
    // Runs only when this binary is re-executed as a relay (see support::Relay).
    maybe_run_relay();
}

/// One relay, one machine whose `runtime` CLI is the fake agent, one paired controller.
struct World {
    _temp: tempfile::TempDir,
    root: PathBuf,
    _relay: Relay,
    relay_url: String,
    daemon: Daemon,
    controller: PathBuf,
    work: PathBuf,
    state: PathBuf,
    runtime: &'static str,
}

fn fake_agent() -> PathBuf {
    // target/<profile>/deps/agents-… → target/<profile>/examples/fake-agent
    let exe = std::env::current_exe().expect("exe");
    let profile = exe.parent().and_then(Path::parent).expect("target dir");
    profile.join("examples").join("fake-agent")
}

fn fixture(runtime: &str, scenario: &str) -> PathBuf {
    let agent = if runtime == "gemini" {
        "gemini"
    } else {
        runtime
    };
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("agents/fixtures")
        .join(agent)
        .join(format!("{scenario}.jsonl"))
}

fn fake_env(runtime: &str, scenario: &str, state: &Path) -> Vec<(String, String)> {
    std::fs::create_dir_all(state).expect("state dir");
    vec![
        (
            format!("MUXAGENT_{}", runtime.to_ascii_uppercase()),
            fake_agent().display().to_string(),
        ),
        (
            "FAKE_AGENT_FIXTURE".into(),
            fixture(runtime, scenario).display().to_string(),
        ),
        ("FAKE_AGENT_STATE".into(), state.display().to_string()),
    ]
}

impl World {
    fn new(runtime: &'static str, scenario: &str) -> World {
        assert!(
            fake_agent().exists(),
            "build the fake agent: cargo build --examples"
        );
        let temp = tempfile::tempdir().expect("tempdir");
        let root = temp.path().to_path_buf();
        let relay = Relay::start(&root.join("relay"));
        let relay_url = relay.url();
        let work = root.join("work");
        std::fs::create_dir_all(&work).expect("work");
        let state = root.join("fake");
        let env = fake_env(runtime, scenario, &state);
        let daemon = Daemon::start_with_env(&root.join("machine"), &relay_url, env);
        let controller = root.join("controller");
        std::fs::create_dir_all(&controller).expect("controller");
        pair(&controller, &daemon);
        World {
            _temp: temp,
            root,
            _relay: relay,
            relay_url,
            daemon,
            controller,
            work,
            state,
            runtime,
        }
    }

    fn ctl(&self, args: &[&str]) -> String {
        let mut all = vec!["ctl"];
        all.extend_from_slice(args);
        ok(&self.controller, &all)
    }

    /// Start a session of this world's runtime; returns its id.
    fn start(&self, prompt: &str, extra: &[&str]) -> String {
        let work = self.work.display().to_string();
        let mut args = vec![
            "start",
            "machine",
            "--runtime",
            self.runtime,
            "--cwd",
            &work,
            "--json",
        ];
        args.extend_from_slice(extra);
        args.extend(["--prompt", prompt]);
        let out = self.ctl(&args);
        let value: Value = serde_json::from_str(out.trim()).expect("start --json");
        value["session"].as_str().expect("session").to_string()
    }

    /// `ctl watch --json --until STATE`: the session's history up to that state.
    fn watch(&self, session: &str, until: &str) -> Vec<Value> {
        self.ctl(&["watch", "machine", session, "--json", "--until", until])
            .lines()
            .map(|line| serde_json::from_str(line).expect("event json"))
            .collect()
    }

    /// Wait for an approval and return `SESSION/N` for it.
    fn pending_approval(&self, session: &str) -> String {
        let events = self.watch(session, "approval");
        let requested = last(&events, "approval_requested");
        format!("{session}/{}", requested["approval"])
    }

    /// What the fake agent was sent; fails the test on a mismatch.
    fn transcript(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.state.join("transcript.jsonl")).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).expect("transcript json"))
            .collect();
        if let Some(mismatch) = lines.iter().find(|line| line["dir"] == "mismatch") {
            panic!(
                "the daemon said something the real CLI was not told: {}\ndaemon log:\n{}",
                mismatch["line"],
                self.daemon.log()
            );
        }
        lines
    }

    /// The recording's part `part` was played to its end.
    fn played(&self, part: u32) {
        let done = format!("part {part}");
        assert!(
            self.transcript()
                .iter()
                .any(|line| line["dir"] == "done" && line["line"] == done),
            "the fake agent did not get to the end of part {part}: {:#?}",
            self.transcript()
        );
    }
}

fn with_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|event| event["kind"] == kind)
        .collect()
}

fn last<'a>(events: &'a [Value], kind: &str) -> &'a Value {
    events
        .iter()
        .rev()
        .find(|event| event["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} event in {events:#?}"))
}

fn states(events: &[Value], approval: &Value) -> Vec<String> {
    events
        .iter()
        .filter(|event| event["kind"] == "approval_state" && event["approval"] == *approval)
        .map(|event| event["state"].as_str().unwrap_or("").to_string())
        .collect()
}

/// The common checks after an approved tool call.
fn approved(world: &World, session: &str, always: bool) -> Vec<Value> {
    let request = world.pending_approval(session);
    let mut args = vec!["approve", "machine", request.as_str()];
    if always {
        args.push("--always");
    }
    world.ctl(&args);
    let events = world.watch(session, "idle");
    let requested = last(&events, "approval_requested");
    let approval = requested["approval"].clone();
    assert_eq!(
        states(&events, &approval),
        ["delivered", "applied"],
        "requested → delivered → decided → applied"
    );
    let resolved = last(&events, "approval_resolved");
    assert_eq!(
        resolved["decision"],
        if always { "allow_always" } else { "allow" }
    );
    assert!(!with_kind(&events, "turn_finished").is_empty());
    assert_eq!(last(&events, "status")["status"], "idle");
    events
}

fn denied(world: &World, session: &str) -> Vec<Value> {
    let request = world.pending_approval(session);
    world.ctl(&[
        "deny",
        "machine",
        &request,
        "--message",
        "The user said no: not now.",
    ]);
    let events = world.watch(session, "idle");
    let resolved = last(&events, "approval_resolved");
    assert_eq!(resolved["decision"], "deny: The user said no: not now.");
    let approval = resolved["approval"].clone();
    assert_eq!(states(&events, &approval), ["delivered", "applied"]);
    events
}

fn interrupted(world: &World, session: &str, next_prompt: bool) -> Vec<Value> {
    world.pending_approval(session);
    world.ctl(&["interrupt", "machine", session]);
    let mut events = world.watch(session, "idle");
    let approval = last(&events, "approval_requested")["approval"].clone();
    assert_eq!(
        states(&events, &approval),
        ["delivered", "withdrawn"],
        "an interrupt withdraws the pending approval"
    );
    if next_prompt {
        world.ctl(&["send", "machine", session, "one more turn"]);
        events = world.watch(session, "idle");
        assert_eq!(with_kind(&events, "prompt").len(), 2);
    }
    events
}

fn usage(events: &[Value]) -> &Value {
    let usage = last(events, "usage");
    assert!(usage["input_tokens"].as_u64().unwrap_or(0) > 0, "{usage}");
    assert!(usage["output_tokens"].as_u64().unwrap_or(0) > 0, "{usage}");
    usage
}

/// Restart the daemon (its agent dies with it), then resume the conversation with a prompt.
fn resumed(world: &mut World, session: &str) -> Vec<Value> {
    let before = world.watch(session, "idle");
    let agent_session = last(&before, "agent_session")["id"]
        .as_str()
        .expect("agent session id")
        .to_string();
    world.daemon.kill();
    world.daemon.restart();
    let after_restart = world.watch(session, "end");
    assert_eq!(
        &after_restart[..before.len()],
        &before[..],
        "the history survives the restart unchanged"
    );
    world.ctl(&["send", "machine", session, "and now?"]);
    let events = world.watch(session, "idle");
    let seqs: Vec<u64> = events
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect();
    assert!(
        seqs.windows(2).all(|pair| pair[1] == pair[0] + 1),
        "{seqs:?}"
    );
    let args: Vec<String> = world
        .transcript()
        .iter()
        .filter(|line| line["dir"] == "args")
        .map(|line| line["line"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(args.len(), 2, "one agent process per daemon: {args:?}");
    if world.runtime == "claude" {
        assert!(
            args[1].contains(&format!("--resume {agent_session}")),
            "{args:?}"
        );
    }
    world.played(1);
    events
}

// ---- Claude Code ----

#[test]
fn claude_approve() {
    let world = World::new("claude", "approve");
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
    let world = World::new("claude", "deny");
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
    let world = World::new("claude", "allow_always");
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
    let world = World::new("claude", "interrupt");
    let session = world.start("touch interrupted.txt", &[]);
    interrupted(&world, &session, true);
    world.played(0);
}

#[test]
fn claude_plan_then_hand_off() {
    let world = World::new("claude", "plan");
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
    let mut world = World::new("claude", "resume");
    let session = world.start("remember 42", &[]);
    resumed(&mut world, &session);
}

#[test]
fn claude_file_write_shows_a_diff() {
    let world = World::new("claude", "write");
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
    let world = World::new("codex", "approve");
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
    let world = World::new("codex", "deny");
    let session = world.start("touch denied.txt", &[]);
    denied(&world, &session);
    world.played(0);
}

#[test]
fn codex_allow_always() {
    let world = World::new("codex", "allow_always");
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
    let world = World::new("codex", "interrupt");
    let session = world.start("touch interrupted.txt", &[]);
    interrupted(&world, &session, true);
    world.played(0);
}

#[test]
fn codex_file_change_shows_a_diff() {
    let world = World::new("codex", "file_change");
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
    let mut world = World::new("codex", "resume");
    let session = world.start("remember 42", &[]);
    resumed(&mut world, &session);
}

// ---- Gemini (ACP) ----

#[test]
fn gemini_approve() {
    let world = World::new("gemini", "approve");
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
    let world = World::new("gemini", "deny");
    let session = world.start("touch denied.txt", &[]);
    denied(&world, &session);
    world.played(0);
}

#[test]
fn gemini_allow_always() {
    let world = World::new("gemini", "allow_always");
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
    let world = World::new("gemini", "interrupt");
    let session = world.start("touch interrupted.txt", &[]);
    interrupted(&world, &session, true);
    world.played(0);
}

#[test]
fn gemini_start_in_a_mode() {
    let world = World::new("gemini", "set_mode");
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
    let mut world = World::new("gemini", "resume");
    let session = world.start("remember 42", &[]);
    resumed(&mut world, &session);
}

// ---- Refusals ----

#[test]
fn decisions_for_unknown_or_closed_approvals_are_refused() {
    let world = World::new("claude", "approve");
    let session = world.start("touch approved.txt", &[]);
    let request = world.pending_approval(&session);
    let unknown = fails(
        &world.controller,
        &["ctl", "approve", "machine", &format!("{session}/99")],
    );
    assert!(unknown.contains("99"), "{unknown}");
    world.ctl(&["approve", "machine", &request]);
    world.watch(&session, "idle");
    let again = fails(&world.controller, &["ctl", "approve", "machine", &request]);
    assert!(
        again.contains("no longer pending") || again.contains("not pending"),
        "{again}"
    );
}
