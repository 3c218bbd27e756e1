//! A fake agent CLI for the end-to-end tests: it replays a protocol recording of a real CLI
//! (`agents/fixtures/<agent>/<scenario>.jsonl`), so the daemon's runtimes are tested against
//! what Claude Code, Codex and Gemini really print, in every test run, without the CLIs.
//!
//! It prints the recording's `out` lines in order and, at each `in` line, reads one line from
//! its standard input and checks that it means the same: the same message type, subtype,
//! method, decision, behaviour or option at every level (ids the client chooses may differ and
//! are mapped onto the agent's later answers; ids the agent chose must be echoed exactly).
//! A `meta` line ends one process of the recording: the next start plays the next part
//! (resume scenarios).
//!
//! Environment: `FAKE_AGENT_FIXTURE` (the recording), `FAKE_AGENT_STATE` (a folder: which part
//! to play next, and `transcript.jsonl`, every line received and every mismatch, for the
//! tests to read). A mismatch is printed on standard error and ends the process with code 3.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Keys whose values say what a message is.
const MEANINGFUL: [&str; 9] = [
    "type", "subtype", "method", "behavior", "decision", "outcome", "optionId", "modeId", "mode",
];

/// Subtrees that carry content, not meaning (tool inputs, capabilities, client names).
const CONTENT: [&str; 9] = [
    "input",
    "updatedInput",
    "updatedPermissions",
    "clientInfo",
    "capabilities",
    "clientCapabilities",
    "_meta",
    "message",
    "prompt",
];

struct Entry {
    dir: String,
    line: String,
}

fn main() {
    if let Some(count) = std::env::var("FAKE_AGENT_BENCH")
        .ok()
        .and_then(|count| count.parse().ok())
    {
        bench(count);
        return;
    }
    if let Some(count) = std::env::var("FAKE_AGENT_DELTAS")
        .ok()
        .and_then(|count| count.parse().ok())
    {
        deltas(count);
        return;
    }
    let fixture = PathBuf::from(std::env::var("FAKE_AGENT_FIXTURE").unwrap_or_default());
    let state = PathBuf::from(std::env::var("FAKE_AGENT_STATE").unwrap_or_default());
    let entries = read_fixture(&fixture);
    let part = next_part(&state);
    let args: Vec<String> = std::env::args().skip(1).collect();
    transcript(&state, "args", &args.join(" "));
    let parts: Vec<&[Entry]> = entries.split(|entry| entry.dir == "meta").collect();
    let Some(script) = parts.get(part) else {
        fail(&state, &format!("the recording has no part {part}"));
    };
    let cwd = std::env::current_dir().unwrap_or_default();
    let home = std::env::var("HOME").unwrap_or_default();
    let fill = |line: &str| {
        line.replace("{{CWD}}", &cwd.display().to_string())
            .replace("{{HOME}}", &home)
            .replace(
                "{{ROOT}}",
                &cwd.parent().unwrap_or(&cwd).display().to_string(),
            )
    };
    let stdin = std::io::stdin();
    let mut input = stdin.lock().lines();
    let mut stdout = std::io::stdout();
    // Ids the recorder chose for its requests → the ids the daemon chose.
    let mut ids: HashMap<String, Value> = HashMap::new();
    for entry in script.iter() {
        match entry.dir.as_str() {
            "out" => {
                let line = map_ids(&fill(&entry.line), &ids);
                if writeln!(stdout, "{line}")
                    .and_then(|()| stdout.flush())
                    .is_err()
                {
                    return;
                }
            }
            "in" => {
                let got = loop {
                    let Some(Ok(got)) = input.next() else {
                        fail(&state, &format!("input ended; expected {}", entry.line));
                    };
                    // An ACP extension request (`_…`) the recording never saw: answer it as
                    // the real agents do, "method not found", and keep waiting.
                    let message: Value = serde_json::from_str(&got).unwrap_or(Value::Null);
                    let extension = message["method"]
                        .as_str()
                        .is_some_and(|m| m.starts_with('_'));
                    if !extension {
                        break got;
                    }
                    transcript(&state, "extension", &got);
                    if let Some(id) = message.get("id") {
                        let answer = serde_json::json!({"jsonrpc": "2.0", "id": id,
                            "error": {"code": -32601, "message": "Method not found"}});
                        if writeln!(stdout, "{answer}")
                            .and_then(|()| stdout.flush())
                            .is_err()
                        {
                            return;
                        }
                    }
                };
                transcript(&state, "in", &got);
                let expected: Value = serde_json::from_str(&entry.line).unwrap_or(Value::Null);
                let actual: Value = match serde_json::from_str(&got) {
                    Ok(value) => value,
                    Err(_) => fail(&state, &format!("not JSON: {got}")),
                };
                if let Err(why) = same_meaning(&expected, &actual, &mut ids) {
                    fail(
                        &state,
                        &format!("{why}\n  expected {}\n  got      {got}", entry.line),
                    );
                }
            }
            _ => {}
        }
    }
    transcript(&state, "done", &format!("part {part}"));
    // The recording is over: like a CLI waiting for its next prompt, wait for the end of input.
    for line in input.map_while(Result::ok) {
        transcript(&state, "extra", &line);
    }
}

/// `FAKE_AGENT_BENCH=N`: speak just enough of Claude Code's protocol to ask for approval `N`
/// times in a row after the first prompt, and time each ask from the moment it is printed to
/// the moment its answer is read. Writes the times (µs) to `FAKE_AGENT_STATE/bench.json`.
/// `FAKE_AGENT_INPUT_LEN=L`: each ask's command is padded to about `L` bytes (a big `Write`).
fn bench(count: usize) {
    let state = PathBuf::from(std::env::var("FAKE_AGENT_STATE").unwrap_or_default());
    let pad = std::env::var("FAKE_AGENT_INPUT_LEN")
        .ok()
        .and_then(|len| len.parse::<usize>().ok())
        .map(|len| {
            // Lines of text with a character of two bytes, so pages cut inside characters.
            let line = "écrire une ligne de plus dans le fichier\n";
            line.repeat(len / line.len() + 1)
        })
        .unwrap_or_default();
    let stdin = std::io::stdin();
    let mut input = stdin.lock().lines().map_while(Result::ok);
    let mut stdout = std::io::stdout();
    let mut say = |value: Value| {
        let _ = writeln!(stdout, "{value}").and_then(|()| stdout.flush());
    };
    let mut times = Vec::with_capacity(count);
    while let Some(line) = input.next() {
        let message: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        if message["type"] == "control_request" {
            say(serde_json::json!({"type": "control_response", "response": {
                "subtype": "success", "request_id": message["request_id"], "response": {}}}));
            continue;
        }
        if message["type"] != "user" {
            continue;
        }
        say(serde_json::json!({"type": "system", "subtype": "init", "session_id": "bench"}));
        for n in 0..count {
            let id = format!("bench-{n}");
            let started = std::time::Instant::now();
            say(
                serde_json::json!({"type": "control_request", "request_id": id, "request": {
                "subtype": "can_use_tool", "tool_name": "Bash",
                "input": {"command": format!("true {n}{pad}")}, "tool_use_id": format!("toolu_{n}")}}),
            );
            let answered = input.by_ref().any(|line| {
                let answer: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
                answer["type"] == "control_response" && answer["response"]["request_id"] == *id
            });
            if !answered {
                return;
            }
            times.push(started.elapsed().as_micros() as u64);
        }
        say(
            serde_json::json!({"type": "result", "subtype": "success", "is_error": false,
            "stop_reason": "end_turn", "usage": {"input_tokens": 1, "output_tokens": 1}}),
        );
        let _ = std::fs::write(
            state.join("bench.json"),
            Value::from(times.clone()).to_string(),
        );
    }
}

/// `FAKE_AGENT_DELTAS=N`: a chatty agent speaking Claude Code's stream-json protocol. Each
/// prompt is answered with one streamed message of `N` text deltas, as fast as the daemon reads
/// them, then the turn's result (bench/deltas.sh, and the test that kills the daemon mid-stream).
fn deltas(count: usize) {
    let stdin = std::io::stdin();
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    for line in stdin.lock().lines().map_while(Result::ok) {
        let message: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        let said = if message["type"] == "control_request" {
            say(
                &mut stdout,
                serde_json::json!({"type": "control_response", "response": {
                "subtype": "success", "request_id": message["request_id"], "response": {}}}),
            )
        } else if message["type"] == "user" {
            stream(&mut stdout, count)
        } else {
            Ok(())
        };
        // The daemon is gone: so is this agent.
        if said.and_then(|()| stdout.flush()).is_err() {
            return;
        }
    }
}

/// One turn of `count` deltas.
fn stream(out: &mut impl Write, count: usize) -> std::io::Result<()> {
    say(
        out,
        serde_json::json!({"type": "system", "subtype": "init", "session_id": "deltas"}),
    )?;
    say(
        out,
        serde_json::json!({"type": "stream_event", "event": {
            "type": "message_start", "message": {"id": "msg_deltas"}}}),
    )?;
    for n in 0..count {
        say(
            out,
            serde_json::json!({"type": "stream_event", "event": {
                "type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": format!("token {n} ")}}}),
        )?;
    }
    say(
        out,
        serde_json::json!({"type": "result", "subtype": "success", "is_error": false,
            "stop_reason": "end_turn", "usage": {"input_tokens": 1, "output_tokens": count}}),
    )
}

fn say(out: &mut impl Write, value: Value) -> std::io::Result<()> {
    writeln!(out, "{value}")
}

fn read_fixture(path: &Path) -> Vec<Entry> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|error| {
        eprintln!("fake agent: cannot read {}: {error}", path.display());
        std::process::exit(2)
    });
    text.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .map(|value| Entry {
            dir: value["dir"].as_str().unwrap_or("").to_string(),
            line: value["line"].as_str().unwrap_or("").to_string(),
        })
        .collect()
}

/// Which part of the recording this start plays (0 first, then 1 after a restart …).
fn next_part(state: &Path) -> usize {
    let counter = state.join("starts");
    let part = std::fs::read_to_string(&counter)
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(0);
    let _ = std::fs::write(&counter, (part + 1).to_string());
    part
}

fn transcript(state: &Path, dir: &str, line: &str) {
    let record = serde_json::json!({ "dir": dir, "line": line }).to_string();
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state.join("transcript.jsonl"))
    {
        let _ = writeln!(file, "{record}");
    }
}

fn fail(state: &Path, why: &str) -> ! {
    transcript(state, "mismatch", why);
    eprintln!("fake agent: {why}");
    std::process::exit(3)
}

/// The id of a request a client sends: a JSON-RPC request's `id`, or Claude's `request_id`.
fn request_id(message: &Value) -> Option<&Value> {
    if message.get("method").is_some() {
        message.get("id")
    } else if message["type"] == "control_request" {
        message.get("request_id")
    } else {
        None
    }
}

/// The request an answer names: a JSON-RPC response's `id`, or Claude's
/// `response.request_id`.
fn answered_id(message: &Value) -> Option<&Value> {
    if message.get("method").is_none() && message.get("id").is_some() {
        message.get("id")
    } else if message["type"] == "control_response" {
        message["response"].get("request_id")
    } else {
        None
    }
}

fn same_meaning(
    expected: &Value,
    actual: &Value,
    ids: &mut HashMap<String, Value>,
) -> Result<(), String> {
    let mut wanted = Vec::new();
    meaning(expected, "", &mut wanted);
    let mut got = Vec::new();
    meaning(actual, "", &mut got);
    for pair in &wanted {
        if !got.contains(pair) {
            return Err(format!("missing {} = {}", pair.0, pair.1));
        }
    }
    if let Some(id) = request_id(expected) {
        let Some(theirs) = request_id(actual) else {
            return Err("a request without an id".into());
        };
        ids.insert(id.to_string(), theirs.clone());
    }
    if let Some(id) = answered_id(expected)
        && answered_id(actual) != Some(id)
    {
        return Err(format!("answers another request than {id}"));
    }
    Ok(())
}

fn meaning(value: &Value, path: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                if CONTENT.contains(&key.as_str()) {
                    continue;
                }
                let here = format!("{path}/{key}");
                if MEANINGFUL.contains(&key.as_str()) && !value.is_object() && !value.is_array() {
                    out.push((here.clone(), value.to_string()));
                }
                meaning(value, &here, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                meaning(item, &format!("{path}[]"), out);
            }
        }
        _ => {}
    }
}

/// Put the daemon's ids into an answer to one of its requests.
fn map_ids(line: &str, ids: &HashMap<String, Value>) -> String {
    let Ok(mut message) = serde_json::from_str::<Value>(line) else {
        return line.to_string();
    };
    let slot = if message.get("method").is_none() && message.get("id").is_some() {
        message.get_mut("id")
    } else if message["type"] == "control_response" {
        message
            .get_mut("response")
            .and_then(|response| response.get_mut("request_id"))
    } else {
        None
    };
    match slot {
        Some(slot) => match ids.get(&slot.to_string()) {
            Some(theirs) => {
                *slot = theirs.clone();
                message.to_string()
            }
            None => line.to_string(),
        },
        None => line.to_string(),
    }
}
