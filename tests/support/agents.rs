//! Agent sessions end to end: a relay, one machine whose agent CLI is a fake agent
//! (`tests/programs/fake_agent.rs` replaying `agents/fixtures/`) or the real CLI, and a paired
//! `muxagent ctl`, with the steps and checks the agent tests share.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::*;

/// One relay, one machine whose `runtime` CLI is the fake agent, one paired controller.
pub struct World {
    pub _temp: tempfile::TempDir,
    pub root: PathBuf,
    pub _relay: Relay,
    pub relay_url: String,
    pub daemon: Daemon,
    pub controller: PathBuf,
    pub work: PathBuf,
    pub state: PathBuf,
    pub runtime: &'static str,
}

pub fn fake_agent() -> PathBuf {
    // target/<profile>/deps/agents-… → target/<profile>/examples/fake-agent
    let exe = std::env::current_exe().expect("exe");
    let profile = exe.parent().and_then(Path::parent).expect("target dir");
    profile.join("examples").join("fake-agent")
}

pub fn fixture(runtime: &str, scenario: &str) -> PathBuf {
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

pub fn fake_env(runtime: &str, scenario: &str, state: &Path) -> Vec<(String, String)> {
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
    /// The `runtime` CLI is the fake agent playing `agents/fixtures/RUNTIME/SCENARIO.jsonl`.
    pub fn fake(runtime: &'static str, scenario: &str) -> World {
        assert!(
            fake_agent().exists(),
            "build the fake agent: cargo build --examples"
        );
        World::new(runtime, |root| {
            fake_env(runtime, scenario, &root.join("fake"))
        })
    }

    /// A world whose daemon (and so its agents) gets the environment `env(root)` added.
    pub fn new(runtime: &'static str, env: impl FnOnce(&Path) -> Vec<(String, String)>) -> World {
        let temp = tempfile::tempdir().expect("tempdir");
        let root = temp.path().to_path_buf();
        let relay = Relay::start(&root.join("relay"));
        let relay_url = relay.url();
        let work = root.join("work");
        std::fs::create_dir_all(&work).expect("work");
        let state = root.join("fake");
        let env = env(&root);
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

    pub fn ctl(&self, args: &[&str]) -> String {
        let mut all = vec!["ctl"];
        all.extend_from_slice(args);
        ok(&self.controller, &all)
    }

    /// Start a session of this world's runtime; returns its id.
    pub fn start(&self, prompt: &str, extra: &[&str]) -> String {
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
    pub fn watch(&self, session: &str, until: &str) -> Vec<Value> {
        self.ctl(&["watch", "machine", session, "--json", "--until", until])
            .lines()
            .map(|line| serde_json::from_str(line).expect("event json"))
            .collect()
    }

    /// Wait for an approval and return `SESSION/N` for it.
    pub fn pending_approval(&self, session: &str) -> String {
        let events = self.watch(session, "approval");
        let requested = last(&events, "approval_requested");
        format!("{session}/{}", requested["approval"])
    }

    /// The digest `ctl approvals --json` gives for `request` (SESSION/N): what a script quotes
    /// to `ctl approve --digest`.
    pub fn digest(&self, request: &str) -> String {
        let (session, number) = request.split_once('/').expect("SESSION/N");
        let rows: Value =
            serde_json::from_str(&self.ctl(&["approvals", "--json"])).expect("approvals json");
        let row = rows
            .as_array()
            .into_iter()
            .flatten()
            .find(|row| {
                row["session"]
                    .as_str()
                    .is_some_and(|s| s.starts_with(session))
                    && row["approval"].as_u64() == number.parse().ok()
            })
            .unwrap_or_else(|| panic!("{request} is not waiting: {rows:#}"));
        assert_eq!(row["complete"], true, "{row:#}");
        row["digest"].as_str().expect("digest").to_string()
    }

    /// What the fake agent was sent; fails the test on a mismatch.
    pub fn transcript(&self) -> Vec<Value> {
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
    pub fn played(&self, part: u32) {
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

pub fn with_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|event| event["kind"] == kind)
        .collect()
}

pub fn last<'a>(events: &'a [Value], kind: &str) -> &'a Value {
    events
        .iter()
        .rev()
        .find(|event| event["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} event in {events:#?}"))
}

pub fn states(events: &[Value], approval: &Value) -> Vec<String> {
    events
        .iter()
        .filter(|event| event["kind"] == "approval_state" && event["approval"] == *approval)
        .map(|event| event["state"].as_str().unwrap_or("").to_string())
        .collect()
}

/// The common checks after an approved tool call.
pub fn approved(world: &World, session: &str, always: bool) -> Vec<Value> {
    let request = world.pending_approval(session);
    let digest = world.digest(&request);
    let mut args = vec!["approve", "machine", request.as_str(), "--digest", &digest];
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

pub fn denied(world: &World, session: &str) -> Vec<Value> {
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

pub fn interrupted(world: &World, session: &str, next_prompt: bool) -> Vec<Value> {
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

pub fn usage(events: &[Value]) -> &Value {
    let usage = last(events, "usage");
    assert!(usage["input_tokens"].as_u64().unwrap_or(0) > 0, "{usage}");
    assert!(usage["output_tokens"].as_u64().unwrap_or(0) > 0, "{usage}");
    usage
}

/// Restart the daemon (its agent dies with it), then resume the conversation with a prompt.
pub fn resumed(world: &mut World, session: &str) -> Vec<Value> {
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
