#!/usr/bin/env python3
"""Drive the real Codex CLI (`codex app-server`, JSON-RPC over stdio) against the mock.

    python3 agents/record/codex.py [scenario ...]      # default: all scenarios

Each scenario runs in a fresh temporary HOME / CODEX_HOME / working directory, checks the
effect, and writes agents/fixtures/codex/<scenario>.jsonl. Exit status 0 only if all passed.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

AGENT = "codex"
# An unknown slug gives Codex's "fallback metadata": plain function tools (exec_command,
# write_stdin, ...). The default model (gpt-6.1-sol in 0.169.0) instead gets "code mode",
# a single `exec` tool that runs JavaScript which calls the tools; the app-server protocol
# (items, approvals) is the same either way, but the mock would have to write JavaScript.
MODEL = "mock-model"

CONFIG = """\
model = "{model}"
model_provider = "mock"

[model_providers.mock]
name = "Mock"
base_url = "http://127.0.0.1:{port}/v1"
wire_api = "responses"

[features]
plugins = false

[analytics]
enabled = false
"""


def codex_home(sb, mock):
    home = os.path.join(sb.home, ".codex")
    os.makedirs(home, exist_ok=True)
    with open(os.path.join(home, "config.toml"), "w") as f:
        f.write(CONFIG.format(model=MODEL, port=mock.port))
    return home


class Client:
    """A minimal JSON-RPC 2.0 client over the recorded session."""

    def __init__(self, s):
        self.s = s
        self.next_id = 0

    def request(self, method, params, wait=True):
        self.next_id += 1
        rid = self.next_id
        self.s.send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        if not wait:
            return rid
        return self.response(rid, method)

    def response(self, rid, what="response"):
        r = self.s.expect(lambda o: o.get("id") == rid and "method" not in o
                          and ("result" in o or "error" in o), 30, what)
        if "error" in r:
            raise RuntimeError("%s failed: %s" % (what, r["error"]))
        return r["result"]

    def notify(self, method, params=None):
        msg = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            msg["params"] = params
        self.s.send(msg)

    def server_request(self, method):
        return self.s.expect(lambda o: o.get("method") == method and "id" in o, 30, method)

    def reply(self, req, result):
        self.s.send({"jsonrpc": "2.0", "id": req["id"], "result": result})

    def notification(self, method, pred=lambda p: True, timeout=30):
        return self.s.expect(lambda o: o.get("method") == method and "id" not in o
                             and pred(o.get("params") or {}), timeout, method)


def start(sb, mock, timeout=90):
    env = lib.base_env(sb)
    env["CODEX_HOME"] = codex_home(sb, mock)
    argv = [lib.bin_path(AGENT, "codex"), "app-server"]
    s = lib.Session(argv, env, sb.cwd, sb, timeout=timeout)
    c = Client(s)
    c.request("initialize", {"clientInfo": {"name": "muxagent", "title": "muxagent", "version": "0.1.0"}})
    c.notify("initialized")
    return s, c


def thread_start(c, sb):
    r = c.request("thread/start", {"cwd": sb.cwd, "approvalPolicy": "untrusted",
                                   "sandbox": "danger-full-access"})
    return r["thread"]["id"]


def turn(c, tid, text):
    r = c.request("turn/start", {"threadId": tid, "input": [{"type": "text", "text": text}]})
    return r["turn"]["id"]


def turn_completed(c, tid):
    return c.notification("turn/completed", lambda p: p.get("threadId") == tid, 60)["params"]["turn"]


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def finish(s):
    s.drain(0.3)
    s.close_stdin()
    rc = s.wait(20)
    check(rc == 0, "codex exited with %r; stderr: %s" % (rc, s.stderr_lines[-10:]))


def last_tool_output(mock):
    for r in reversed(mock.requests()):
        items = (r.get("body") or {}).get("input") or []
        if items and items[-1].get("type") == "function_call_output":
            return json.dumps(items[-1])
    return ""


def tokens_seen(s):
    return s.seen(lambda o: o.get("method") == "thread/tokenUsage/updated")


# --------------------------------------------------------------------------- scenarios


def sc_approve(sb, mock):
    """A command approval accepted once: approved.txt is created; tokens reported."""
    s, c = start(sb, mock)
    tid = thread_start(c, sb)
    turn(c, tid, "Create the file. [[mock:shell touch approved.txt]]")
    req = c.server_request("item/commandExecution/requestApproval")
    c.reply(req, {"decision": "accept"})
    t = turn_completed(c, tid)
    finish(s)
    check(t["status"] == "completed", "turn status %s" % t["status"])
    check(os.path.exists(os.path.join(sb.cwd, "approved.txt")), "approved.txt missing")
    check(tokens_seen(s), "no thread/tokenUsage/updated")
    return s


def sc_deny(sb, mock):
    """decline: the command does not run, the turn goes on, the model is told it was
    rejected (Codex has no field for a deny message)."""
    s, c = start(sb, mock)
    tid = thread_start(c, sb)
    turn(c, tid, "Create the file. [[mock:shell touch denied.txt]]")
    req = c.server_request("item/commandExecution/requestApproval")
    c.reply(req, {"decision": "decline"})
    t = turn_completed(c, tid)
    finish(s)
    check(t["status"] == "completed", "turn status %s" % t["status"])
    check(not os.path.exists(os.path.join(sb.cwd, "denied.txt")), "denied.txt exists")
    check("rejected by user" in last_tool_output(mock), "model did not see the rejection")
    return s


def sc_cancel(sb, mock):
    """cancel: deny and interrupt the turn in one answer."""
    s, c = start(sb, mock)
    tid = thread_start(c, sb)
    turn(c, tid, "Create the file. [[mock:shell touch cancelled.txt]]")
    req = c.server_request("item/commandExecution/requestApproval")
    c.reply(req, {"decision": "cancel"})
    t = turn_completed(c, tid)
    finish(s)
    check(t["status"] == "interrupted", "turn status %s" % t["status"])
    check(not os.path.exists(os.path.join(sb.cwd, "cancelled.txt")), "cancelled.txt exists")
    return s


def sc_interrupt(sb, mock):
    """turn/interrupt while an approval is pending: the turn completes as interrupted and
    serverRequest/resolved withdraws the pending request; the thread takes another turn."""
    s, c = start(sb, mock)
    tid = thread_start(c, sb)
    turn_id = turn(c, tid, "Create the file. [[mock:shell touch interrupted.txt]]")
    req = c.server_request("item/commandExecution/requestApproval")
    c.request("turn/interrupt", {"threadId": tid, "turnId": turn_id})
    t = turn_completed(c, tid)
    c.notification("serverRequest/resolved", lambda p: p.get("requestId") == req["id"], 10)
    turn(c, tid, "Just say hello. [[mock:text]]")
    t2 = turn_completed(c, tid)
    finish(s)
    check(t["status"] == "interrupted", "turn status %s" % t["status"])
    check(t2["status"] == "completed", "second turn status %s" % t2["status"])
    check(not os.path.exists(os.path.join(sb.cwd, "interrupted.txt")), "interrupted.txt exists")
    return s


def sc_file_change(sb, mock):
    """A patch (apply_patch): item/started carries the diff, the approval only the item id."""
    s, c = start(sb, mock)
    tid = thread_start(c, sb)
    turn(c, tid, "Write the notes. [[mock:write notes.txt hello from apply_patch]]")
    req = c.server_request("item/fileChange/requestApproval")
    c.reply(req, {"decision": "accept"})
    turn_completed(c, tid)
    finish(s)
    started = s.seen(lambda o: o.get("method") == "item/started"
                     and o["params"]["item"].get("id") == req["params"]["itemId"])
    check(started and started[0]["params"]["item"]["type"] == "fileChange", "no fileChange item/started")
    check(os.path.exists(os.path.join(sb.cwd, "notes.txt")), "notes.txt missing")
    return s


def sc_file_change_deny(sb, mock):
    """A patch declined: the file is not written."""
    s, c = start(sb, mock)
    tid = thread_start(c, sb)
    turn(c, tid, "Write the notes. [[mock:write notes.txt should not exist]]")
    req = c.server_request("item/fileChange/requestApproval")
    c.reply(req, {"decision": "decline"})
    turn_completed(c, tid)
    finish(s)
    check(not os.path.exists(os.path.join(sb.cwd, "notes.txt")), "notes.txt exists")
    return s


def sc_allow_always(sb, mock):
    """acceptForSession: the same command later in the session runs without asking."""
    s, c = start(sb, mock)
    tid = thread_start(c, sb)
    turn(c, tid, "Create the file. [[mock:shell touch always.txt]]")
    req = c.server_request("item/commandExecution/requestApproval")
    c.reply(req, {"decision": "acceptForSession"})
    turn_completed(c, tid)
    os.remove(os.path.join(sb.cwd, "always.txt"))
    turn(c, tid, "Again. [[mock:shell touch always.txt]]")
    turn_completed(c, tid)
    finish(s)
    asks = s.seen(lambda o: o.get("method") == "item/commandExecution/requestApproval")
    check(len(asks) == 1, "expected one approval request, got %d" % len(asks))
    check(os.path.exists(os.path.join(sb.cwd, "always.txt")), "second run did not happen")
    return s


def sc_resume(sb, mock):
    """A second app-server process continues the thread with thread/resume."""
    s1, c1 = start(sb, mock)
    tid = thread_start(c1, sb)
    turn(c1, tid, "Remember the word kiwi. [[mock:text]]")
    turn_completed(c1, tid)
    finish(s1)
    s, c = start(sb, mock)
    r = c.request("thread/resume", {"threadId": tid, "approvalPolicy": "untrusted",
                                    "sandbox": "danger-full-access"})
    check(r["thread"]["id"] == tid, "resumed another thread")
    turn(c, tid, "What was the word? [[mock:text]]")
    turn_completed(c, tid)
    finish(s)
    check("kiwi" in json.dumps(mock.requests()[-1]["body"]["input"]), "resumed request lacks history")
    s.records = s1.records + [{"dir": "meta", "ms": 0, "line": "restart: thread/resume " + tid}] + s.records
    return s


def sc_unknown(sb, mock):
    """An unknown method gets a JSON-RPC error; an unknown notification is ignored; the
    thread still works afterwards."""
    s, c = start(sb, mock)
    rid = c.request("no/such/method", {}, wait=False)
    r = s.expect(lambda o: o.get("id") == rid and "method" not in o, 20, "error response")
    check("error" in r, "unknown method did not give an error")
    c.notify("no/such/notification", {"x": 1})
    tid = thread_start(c, sb)
    turn(c, tid, "Say hello. [[mock:text]]")
    t = turn_completed(c, tid)
    finish(s)
    check(t["status"] == "completed", "turn status %s" % t["status"])
    return s


SCENARIOS = {
    "approve": sc_approve,
    "deny": sc_deny,
    "cancel": sc_cancel,
    "interrupt": sc_interrupt,
    "file_change": sc_file_change,
    "file_change_deny": sc_file_change_deny,
    "allow_always": sc_allow_always,
    "resume": sc_resume,
    "unknown": sc_unknown,
}


def main(names):
    return lib.run_scenarios(AGENT, SCENARIOS, names)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
