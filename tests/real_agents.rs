//! The real agent CLIs, offline, end to end: Claude Code, Codex and Gemini CLI (the versions
//! pinned in `agents/install`) against the mock model API (`agents/mock/model_api.py`) on
//! 127.0.0.1, driven through relay + daemon + `muxagent ctl`. For each: a tool call approved
//! (the file appears), one denied (no file; the model is told), an interrupt while an approval
//! waits (withdrawn), tokens (and dollars where the CLI reports them), and every session's
//! history intact after a daemon restart.
//!
//! They need the CLIs (~900 MB), so they are `#[ignore]`d in `cargo test` and run by `.ci/run`
//! after `agents/install`: `cargo test --test real_agents -- --ignored`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;
use support::agents::*;
use support::*;

#[test]
fn relay_process() {
    // Runs only when this binary is re-executed as a relay (see support::Relay).
    maybe_run_relay();
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The CLI installed by `agents/install`.
fn cli(agent: &str) -> String {
    let cache = std::env::var("MUXAGENT_AGENT_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/muxagent/agents")
        });
    let path = cache.join(agent).join("node_modules/.bin").join(agent);
    assert!(
        path.exists(),
        "{} is missing: run agents/install first",
        path.display()
    );
    path.display().to_string()
}

/// The mock model API, stopped when dropped (it also stops itself after 5 minutes).
struct Mock {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Mock {
    fn start(root: &Path) -> Mock {
        let log = root.join("mock.jsonl");
        let mut child = Command::new("python3")
            .arg(repo().join("agents/mock/model_api.py"))
            .args(["--max-seconds", "300", "--log"])
            .arg(&log)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs the mock");
        let mut first = String::new();
        use std::io::BufRead;
        std::io::BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut first)
            .expect("mock prints its port");
        let port = first
            .trim()
            .strip_prefix("PORT=")
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("mock did not start: {first:?}"));
        Mock { child, port, log }
    }

    /// Everything the CLIs sent the model, as text.
    fn requests(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The daemon's environment for `agent`: its CLI, the mock as its model API, a private HOME.
fn agent_env(agent: &str, root: &Path, port: u16) -> Vec<(String, String)> {
    let home = root.join("home");
    std::fs::create_dir_all(&home).expect("home");
    let mut env = vec![
        ("HOME".to_string(), home.display().to_string()),
        (
            format!("MUXAGENT_{}", agent.to_ascii_uppercase()),
            cli(agent),
        ),
    ];
    let base = format!("http://127.0.0.1:{port}");
    match agent {
        "claude" => env.extend([
            ("ANTHROPIC_BASE_URL".into(), base),
            ("ANTHROPIC_API_KEY".into(), "dummy".into()),
            (
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC".into(),
                "1".into(),
            ),
            ("IS_SANDBOX".into(), "1".into()),
        ]),
        "codex" => {
            let codex_home = home.join(".codex");
            std::fs::create_dir_all(&codex_home).expect("codex home");
            // An unknown model name gets plain function tools the mock can call (agents/README.md).
            let config = format!(
                "model = \"mock-model\"\nmodel_provider = \"mock\"\n\n[model_providers.mock]\nname = \"Mock\"\nbase_url = \"{base}/v1\"\nwire_api = \"responses\"\n\n[features]\nplugins = false\n\n[analytics]\nenabled = false\n"
            );
            std::fs::write(codex_home.join("config.toml"), config).expect("config");
            env.push(("CODEX_HOME".into(), codex_home.display().to_string()));
        }
        "gemini" => {
            let settings = home.join(".gemini");
            std::fs::create_dir_all(&settings).expect("gemini dir");
            let json = serde_json::json!({
                "privacy": {"usageStatisticsEnabled": false},
                "telemetry": {"enabled": false},
                "general": {"enableAutoUpdate": false, "enableAutoUpdateNotification": false},
                "security": {"auth": {"selectedType": "gemini-api-key"}},
            });
            std::fs::write(settings.join("settings.json"), json.to_string()).expect("settings");
            env.extend([
                ("GEMINI_API_KEY".into(), "dummy".into()),
                ("GOOGLE_GEMINI_BASE_URL".into(), base),
                ("GEMINI_CLI_TRUST_WORKSPACE".into(), "true".into()),
            ]);
        }
        _ => unreachable!("no such agent"),
    }
    env
}

/// What the model is told when a tool call was denied, per CLI.
fn deny_seen_by_model(agent: &str) -> &'static str {
    match agent {
        "claude" => "The user said no: not now.",
        "codex" => "rejected by user",
        _ => "canceled by the user",
    }
}

fn scenario(agent: &'static str) {
    let mock_root = tempfile::tempdir().expect("tempdir");
    let mock = Mock::start(mock_root.path());
    let mut world = World::new(agent, |root| agent_env(agent, root, mock.port));
    let file = |name: &str| world.work.join(name);

    // Approved: the tool runs.
    let approve = world.start("Create the file. [[mock:shell touch approved.txt]]", &[]);
    let events = approved(&world, &approve, false);
    assert!(file("approved.txt").exists(), "the approved command ran");
    let usage = usage(&events);
    if agent == "claude" {
        assert!(usage["cost_usd"].as_f64().unwrap_or(0.0) > 0.0, "{usage}");
    } else {
        assert!(
            usage["cost_usd"].is_null(),
            "{agent} reports no dollars: {usage}"
        );
    }

    // Denied: nothing happens, and the model hears of it.
    let deny = world.start("Create the file. [[mock:shell touch denied.txt]]", &[]);
    denied(&world, &deny);
    assert!(
        !file("denied.txt").exists(),
        "the denied command did not run"
    );
    let told = deny_seen_by_model(agent);
    assert!(
        mock.requests().contains(told),
        "the model was told `{told}`"
    );

    // Interrupted while the approval waits: withdrawn, nothing happens.
    let interrupt = world.start("Create the file. [[mock:shell touch interrupted.txt]]", &[]);
    interrupted(&world, &interrupt, false);
    assert!(!file("interrupted.txt").exists());

    // A daemon restart keeps every session's history.
    let before: Vec<Vec<Value>> = [&approve, &deny, &interrupt]
        .iter()
        .map(|session| world.watch(session, "idle"))
        .collect();
    world.daemon.kill();
    world.daemon.restart();
    for (session, before) in [&approve, &deny, &interrupt].iter().zip(&before) {
        let after = world.watch(session, "end");
        assert_eq!(&after[..before.len()], &before[..], "history of {session}");
    }
}

#[test]
#[ignore = "needs the real CLIs: agents/install, then cargo test --test real_agents -- --ignored"]
fn claude_code() {
    scenario("claude");
}

#[test]
#[ignore = "needs the real CLIs: agents/install, then cargo test --test real_agents -- --ignored"]
fn codex() {
    scenario("codex");
}

#[test]
#[ignore = "needs the real CLIs: agents/install, then cargo test --test real_agents -- --ignored"]
fn gemini_cli() {
    scenario("gemini");
}
