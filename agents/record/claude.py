#!/usr/bin/env python3
"""Drive the real Claude Code CLI against the mock and record its stream-json protocol.

    python3 agents/record/claude.py [scenario ...]      # default: all scenarios

Each scenario runs claude in a fresh temporary HOME and working directory, checks the
effect (file created or not, deny message seen by the model, cost reported), and writes
agents/fixtures/claude/<scenario>.jsonl.  Exit status 0 only if every scenario passed.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

AGENT = "claude"
DENY_MESSAGE = "The user said no: not now."


def start(sb, mock, extra_args=(), timeout=90):
    env = lib.base_env(sb)
    env.update({
        "ANTHROPIC_BASE_URL": "http://127.0.0.1:%d" % mock.port,
        "ANTHROPIC_API_KEY": "dummy",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        # Root may not use bypassPermissions unless it says it is in a sandbox.
        "IS_SANDBOX": "1",
    })
    argv = [lib.bin_path(AGENT, "claude"), "-p",
            "--input-format", "stream-json", "--output-format", "stream-json", "--verbose",
            "--permission-prompt-tool", "stdio"] + list(extra_args)
    s = lib.Session(argv, env, sb.cwd, sb, timeout=timeout)
    s.argv = argv
    return s


class Ids:
    def __init__(self):
        self.n = 0

    def __call__(self):
        self.n += 1
        return "req_%d" % self.n


def initialize(s, ids):
    rid = ids()
    s.send({"type": "control_request", "request_id": rid, "request": {"subtype": "initialize"}})
    return s.expect(lambda o: o.get("type") == "control_response"
                    and o["response"].get("request_id") == rid, 30, "initialize response")


def user(s, text):
    s.send({"type": "user", "message": {"role": "user", "content": text},
            "parent_tool_use_id": None, "session_id": ""})


def ask(s, tool=None):
    return s.expect(lambda o: o.get("type") == "control_request"
                    and o["request"].get("subtype") == "can_use_tool"
                    and (tool is None or o["request"].get("tool_name") == tool), 30, "can_use_tool")


def answer(s, req, response):
    s.send({"type": "control_response", "response": {
        "subtype": "success", "request_id": req["request_id"], "response": response}})


def result(s):
    return s.expect(lambda o: o.get("type") == "result", 60, "result")


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def finish(s):
    s.close_stdin()
    rc = s.wait(20)
    check(rc == 0, "claude exited with %r; stderr: %s" % (rc, s.stderr_lines[-10:]))


# --------------------------------------------------------------------------- scenarios


def sc_approve(sb, mock):
    """One Bash call, allowed once: approved.txt is created; cost in result."""
    ids = Ids()
    s = start(sb, mock)
    initialize(s, ids)
    user(s, "Create the file. [[mock:shell touch approved.txt]]")
    req = ask(s, "Bash")
    answer(s, req, {"behavior": "allow", "updatedInput": req["request"]["input"]})
    res = result(s)
    finish(s)
    check(os.path.exists(os.path.join(sb.cwd, "approved.txt")), "approved.txt missing")
    check(res.get("total_cost_usd", 0) > 0, "no total_cost_usd in result")
    check(res.get("subtype") == "success", "result not success: %r" % res.get("subtype"))
    return s


def sc_deny(sb, mock):
    """One Bash call, denied with a message: no file; the model sees the message."""
    ids = Ids()
    s = start(sb, mock)
    initialize(s, ids)
    user(s, "Create the file. [[mock:shell touch denied.txt]]")
    req = ask(s, "Bash")
    answer(s, req, {"behavior": "deny", "message": DENY_MESSAGE})
    result(s)
    finish(s)
    check(not os.path.exists(os.path.join(sb.cwd, "denied.txt")), "denied.txt exists")
    sent = json.dumps(mock.requests()[-1]["body"]["messages"][-1])
    check(DENY_MESSAGE in sent, "deny message did not reach the model")
    return s


def sc_interrupt(sb, mock):
    """Interrupt while the approval is pending: the CLI withdraws it with
    control_cancel_request; the turn ends; the process takes another prompt."""
    ids = Ids()
    s = start(sb, mock)
    initialize(s, ids)
    user(s, "Create the file. [[mock:shell touch interrupted.txt]]")
    req = ask(s, "Bash")
    rid = ids()
    s.send({"type": "control_request", "request_id": rid, "request": {"subtype": "interrupt"}})
    cancel = s.expect(lambda o: o.get("type") == "control_cancel_request", 20, "control_cancel_request")
    check(cancel.get("request_id") == req["request_id"], "cancel names another request")
    result(s)
    user(s, "Just say hello. [[mock:text]]")
    res2 = result(s)
    finish(s)
    check(not os.path.exists(os.path.join(sb.cwd, "interrupted.txt")), "interrupted.txt exists")
    check(res2.get("subtype") == "success", "second turn failed")
    return s


def sc_allow_always(sb, mock):
    """Allow with updatedPermissions (the CLI's own suggestion, a rule kept for the
    session): the same command a second time runs without asking."""
    ids = Ids()
    s = start(sb, mock)
    initialize(s, ids)
    user(s, "Create the file. [[mock:shell touch always.txt]]")
    req = ask(s, "Bash")
    sugg = [dict(p, destination="session") for p in req["request"].get("permission_suggestions", [])
            if p.get("type") == "addRules"]
    check(sugg, "no addRules suggestion")
    answer(s, req, {"behavior": "allow", "updatedInput": req["request"]["input"],
                    "updatedPermissions": sugg})
    result(s)
    os.remove(os.path.join(sb.cwd, "always.txt"))
    user(s, "Again. [[mock:shell touch always.txt]]")
    res2 = result(s)
    finish(s)
    asks = [r for r in s.records if r["dir"] == "out" and '"can_use_tool"' in r["line"]]
    check(len(asks) == 1, "expected exactly one ask, got %d" % len(asks))
    check(os.path.exists(os.path.join(sb.cwd, "always.txt")), "second run did not happen")
    check(res2.get("subtype") == "success", "second turn failed")
    return s


def sc_set_mode(sb, mock):
    """set_permission_mode acceptEdits: a Write in the cwd then needs no approval."""
    ids = Ids()
    s = start(sb, mock)
    initialize(s, ids)
    rid = ids()
    s.send({"type": "control_request", "request_id": rid,
            "request": {"subtype": "set_permission_mode", "mode": "acceptEdits"}})
    s.expect(lambda o: o.get("type") == "control_response" and o["response"].get("request_id") == rid,
             20, "set_permission_mode response")
    user(s, "Write the notes. [[mock:write notes.txt hello from acceptEdits]]")
    result(s)
    finish(s)
    asks = [r for r in s.records if r["dir"] == "out" and '"can_use_tool"' in r["line"]]
    check(not asks, "acceptEdits still asked")
    check(os.path.exists(os.path.join(sb.cwd, "notes.txt")), "notes.txt missing")
    return s


def sc_write(sb, mock):
    """A Write (file edit) approval in default mode: the ask carries the full content."""
    ids = Ids()
    s = start(sb, mock)
    initialize(s, ids)
    user(s, "Write the notes. [[mock:write notes.txt hello from the write tool]]")
    req = ask(s, "Write")
    answer(s, req, {"behavior": "allow", "updatedInput": req["request"]["input"]})
    result(s)
    finish(s)
    check(os.path.exists(os.path.join(sb.cwd, "notes.txt")), "notes.txt missing")
    return s


def sc_plan(sb, mock):
    """--permission-mode plan: the model calls ExitPlanMode, which arrives as a
    can_use_tool ask (the "plan proposed" approval); allowing it leaves plan mode."""
    ids = Ids()
    s = start(sb, mock, ["--permission-mode", "plan"])
    initialize(s, ids)
    user(s, "Plan it. [[mock:plan 1. Create plan.txt. 2. Say done.]]")
    req = ask(s, "ExitPlanMode")
    answer(s, req, {"behavior": "allow", "updatedInput": req["request"]["input"]})
    result(s)
    finish(s)
    return s


def sc_resume(sb, mock):
    """A first process answers one prompt and exits; a second one, started with
    --resume <session_id>, continues the same conversation."""
    ids = Ids()
    s1 = start(sb, mock)
    initialize(s1, ids)
    user(s1, "Remember the word kiwi. [[mock:text]]")
    res = result(s1)
    finish(s1)
    sid = res["session_id"]
    ids2 = Ids()
    s = start(sb, mock, ["--resume", sid])
    initialize(s, ids2)
    user(s, "What was the word? [[mock:text]]")
    res2 = result(s)
    finish(s)
    check(res2["session_id"] == sid, "resumed session has another id: %s" % res2["session_id"])
    last = mock.requests()[-1]["body"]["messages"]
    check("kiwi" in json.dumps(last), "resumed request lacks the first turn")
    # Keep both processes in one fixture: the first run's lines, then a marker, then the second's.
    s.records = s1.records + [{"dir": "meta", "ms": 0, "line": "restart: --resume " + sid}] + s.records
    return s


def sc_partial(sb, mock):
    """--include-partial-messages: the raw model stream arrives as stream_event lines
    (message_start, content_block_delta ...) before each complete assistant message."""
    ids = Ids()
    s = start(sb, mock, ["--include-partial-messages"])
    initialize(s, ids)
    user(s, "Create the file. [[mock:shell touch approved.txt]]")
    req = ask(s, "Bash")
    answer(s, req, {"behavior": "allow", "updatedInput": req["request"]["input"]})
    result(s)
    finish(s)
    check(s.seen(lambda o: o.get("type") == "stream_event"), "no stream_event lines")
    return s


def sc_unknown(sb, mock):
    """What the CLI does with input it does not know: a control_request with an unknown
    subtype gets an error control_response; a line with an unknown type ... see fixture.
    The session still works afterwards."""
    ids = Ids()
    s = start(sb, mock)
    initialize(s, ids)
    rid = ids()
    s.send({"type": "control_request", "request_id": rid, "request": {"subtype": "no_such_subtype"}})
    r = s.expect(lambda o: o.get("type") == "control_response" and o["response"].get("request_id") == rid,
                 20, "error response")
    check(r["response"].get("subtype") == "error", "unknown subtype did not give an error")
    s.send({"type": "no_such_type", "payload": 1})
    user(s, "Say hello. [[mock:text]]")
    res = result(s)
    finish(s)
    check(res.get("subtype") == "success", "session broken after unknown input")
    return s


SCENARIOS = {
    "approve": sc_approve,
    "deny": sc_deny,
    "interrupt": sc_interrupt,
    "allow_always": sc_allow_always,
    "set_mode": sc_set_mode,
    "write": sc_write,
    "plan": sc_plan,
    "resume": sc_resume,
    "partial": sc_partial,
    "unknown": sc_unknown,
}


def main(names):
    return lib.run_scenarios(AGENT, SCENARIOS, names)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
