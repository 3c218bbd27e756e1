#!/usr/bin/env python3
"""Drive the real Gemini CLI in ACP mode (`gemini --acp`, JSON-RPC over stdio) against the mock.

    python3 agents/record/gemini.py [scenario ...]      # default: all scenarios

Each scenario runs in a fresh temporary HOME and working directory, checks the effect,
and writes agents/fixtures/gemini/<scenario>.jsonl. Exit status 0 only if all passed.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

AGENT = "gemini"

# Written to $HOME/.gemini/settings.json: no telemetry, no usage statistics, no update
# check (each would try the network), no folder-trust dialog.
SETTINGS = {
    "privacy": {"usageStatisticsEnabled": False},
    "telemetry": {"enabled": False},
    "general": {"enableAutoUpdate": False, "enableAutoUpdateNotification": False},
    "security": {"auth": {"selectedType": "gemini-api-key"}},
}


def start(sb, mock, fs=False, timeout=90):
    env = lib.base_env(sb)
    env.update({
        "GEMINI_API_KEY": "dummy",
        "GOOGLE_GEMINI_BASE_URL": "http://127.0.0.1:%d" % mock.port,
        # Without it the cwd is an "untrusted folder": session/set_mode to yolo/autoEdit
        # fails ("Cannot enable privileged approval modes in an untrusted folder").
        "GEMINI_CLI_TRUST_WORKSPACE": "true",
    })
    gdir = os.path.join(sb.home, ".gemini")
    os.makedirs(gdir, exist_ok=True)
    with open(os.path.join(gdir, "settings.json"), "w") as f:
        json.dump(SETTINGS, f, indent=2)
    argv = [lib.bin_path(AGENT, "gemini"), "--acp"]
    s = lib.Session(argv, env, sb.cwd, sb, timeout=timeout)
    c = Client(s)
    c.request("initialize", {"protocolVersion": 1, "clientCapabilities": {
        "fs": {"readTextFile": fs, "writeTextFile": fs}, "terminal": False}})
    return s, c


class Client:
    def __init__(self, s):
        self.s = s
        self.next_id = 0

    def request(self, method, params, wait=True, timeout=30):
        self.next_id += 1
        rid = self.next_id
        self.s.send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        if not wait:
            return rid
        return self.response(rid, method, timeout)

    def response(self, rid, what="response", timeout=30):
        r = self.s.expect(lambda o: o.get("id") == rid and "method" not in o
                          and ("result" in o or "error" in o), timeout, what)
        if "error" in r:
            raise RuntimeError("%s failed: %s" % (what, r["error"]))
        return r["result"]

    def notify(self, method, params):
        self.s.send({"jsonrpc": "2.0", "method": method, "params": params})

    def server_request(self, method, timeout=30):
        return self.s.expect(lambda o: o.get("method") == method and "id" in o, timeout, method)

    def reply(self, req, result):
        self.s.send({"jsonrpc": "2.0", "id": req["id"], "result": result})


def new_session(c, sb):
    return c.request("session/new", {"cwd": sb.cwd, "mcpServers": []})["sessionId"]


def prompt(c, sid, text):
    """Send session/prompt without waiting; returns the request id."""
    return c.request("session/prompt", {"sessionId": sid, "prompt": [{"type": "text", "text": text}]},
                     wait=False)


def option(req, kind):
    return [o for o in req["params"]["options"] if o["kind"] == kind][0]["optionId"]


def select(c, req, kind):
    c.reply(req, {"outcome": {"outcome": "selected", "optionId": option(req, kind)}})


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def finish(s):
    s.drain(0.3)
    s.close_stdin()
    rc = s.wait(20)
    check(rc == 0, "gemini exited with %r; stderr: %s" % (rc, s.stderr_lines[-10:]))


def last_function_response(mock):
    for r in reversed(mock.requests()):
        contents = (r.get("body") or {}).get("contents") or []
        if contents and any("functionResponse" in p for p in contents[-1].get("parts") or []):
            return json.dumps(contents[-1])
    return ""


# --------------------------------------------------------------------------- scenarios


def sc_approve(sb, mock):
    """run_shell_command allowed once: approved.txt exists; tokens in the prompt result."""
    s, c = start(sb, mock)
    sid = new_session(c, sb)
    pid = prompt(c, sid, "Create the file. [[mock:shell touch approved.txt]]")
    req = c.server_request("session/request_permission")
    select(c, req, "allow_once")
    res = c.response(pid, "session/prompt", 60)
    finish(s)
    check(res.get("stopReason") == "end_turn", "stopReason %r" % res.get("stopReason"))
    check(os.path.exists(os.path.join(sb.cwd, "approved.txt")), "approved.txt missing")
    check("token_count" in json.dumps(res.get("_meta")), "no token counts in the result")
    return s


def sc_deny(sb, mock):
    """reject_once: the command does not run. ACP has no deny message."""
    s, c = start(sb, mock)
    sid = new_session(c, sb)
    pid = prompt(c, sid, "Create the file. [[mock:shell touch denied.txt]]")
    req = c.server_request("session/request_permission")
    select(c, req, "reject_once")
    res = c.response(pid, "session/prompt", 60)
    s.deny_result = res
    finish(s)
    check(not os.path.exists(os.path.join(sb.cwd, "denied.txt")), "denied.txt exists")
    return s


def sc_interrupt(sb, mock):
    """session/cancel while a permission request is pending. The ACP spec has the client
    answer its own pending request_permission with outcome "cancelled" after the cancel;
    the prompt then ends with stopReason "cancelled". Then one more prompt works."""
    s, c = start(sb, mock)
    sid = new_session(c, sb)
    pid = prompt(c, sid, "Create the file. [[mock:shell touch interrupted.txt]]")
    req = c.server_request("session/request_permission")
    c.notify("session/cancel", {"sessionId": sid})
    c.reply(req, {"outcome": {"outcome": "cancelled"}})
    res = c.response(pid, "session/prompt", 30)
    pid2 = prompt(c, sid, "Just say hello. [[mock:text]]")
    res2 = c.response(pid2, "session/prompt", 60)
    finish(s)
    check(res.get("stopReason") == "cancelled", "stopReason %r" % res.get("stopReason"))
    check(res2.get("stopReason") == "end_turn", "second stopReason %r" % res2.get("stopReason"))
    check(not os.path.exists(os.path.join(sb.cwd, "interrupted.txt")), "interrupted.txt exists")
    return s


def sc_interrupt_unanswered(sb, mock):
    """session/cancel while a permission request is pending, and the client does not
    answer the request: Gemini does NOT end the prompt by itself (nothing arrives for 3 s);
    it ends only once the client answers the request with outcome "cancelled"."""
    s, c = start(sb, mock)
    sid = new_session(c, sb)
    pid = prompt(c, sid, "Create the file. [[mock:shell touch interrupted.txt]]")
    req = c.server_request("session/request_permission")
    c.notify("session/cancel", {"sessionId": sid})
    try:
        c.response(pid, "session/prompt", 3)
        raise AssertionError("the prompt ended without the permission request being answered")
    except TimeoutError:
        pass
    c.reply(req, {"outcome": {"outcome": "cancelled"}})
    res = c.response(pid, "session/prompt", 15)
    finish(s)
    check(res.get("stopReason") == "cancelled", "stopReason %r" % res.get("stopReason"))
    check(not os.path.exists(os.path.join(sb.cwd, "interrupted.txt")), "interrupted.txt exists")
    return s


def sc_allow_always(sb, mock):
    """allow_always (proceed_always): the same command again runs without asking."""
    s, c = start(sb, mock)
    sid = new_session(c, sb)
    pid = prompt(c, sid, "Create the file. [[mock:shell touch always.txt]]")
    req = c.server_request("session/request_permission")
    select(c, req, "allow_always")
    c.response(pid, "session/prompt", 60)
    os.remove(os.path.join(sb.cwd, "always.txt"))
    pid = prompt(c, sid, "Again. [[mock:shell touch always.txt]]")
    c.response(pid, "session/prompt", 60)
    finish(s)
    asks = s.seen(lambda o: o.get("method") == "session/request_permission")
    check(len(asks) == 1, "expected one permission request, got %d" % len(asks))
    check(os.path.exists(os.path.join(sb.cwd, "always.txt")), "second run did not happen")
    return s


def sc_write(sb, mock):
    """write_file allowed, client without fs capabilities: Gemini writes the file itself."""
    s, c = start(sb, mock)
    sid = new_session(c, sb)
    pid = prompt(c, sid, "Write the notes. [[mock:write notes.txt hello from write_file]]")
    req = c.server_request("session/request_permission")
    select(c, req, "allow_once")
    c.response(pid, "session/prompt", 60)
    finish(s)
    check(os.path.exists(os.path.join(sb.cwd, "notes.txt")), "notes.txt missing")
    return s


def sc_write_fs(sb, mock):
    """write_file allowed, client WITH fs capabilities: Gemini asks the client to read and
    write the file (fs/read_text_file, fs/write_text_file); the client does the write."""
    s, c = start(sb, mock, fs=True)
    sid = new_session(c, sb)
    pid = prompt(c, sid, "Write the notes. [[mock:write notes.txt hello through the client]]")
    while True:
        msg = s.expect(lambda o: "id" in o and o.get("method") in (
            "session/request_permission", "fs/read_text_file", "fs/write_text_file")
            or (o.get("id") == pid and "method" not in o), 60, "request or prompt result")
        m = msg.get("method")
        if m is None:
            break
        if m == "session/request_permission":
            select(c, msg, "allow_once")
        elif m == "fs/read_text_file":
            p = msg["params"]["path"]
            if os.path.exists(p):
                with open(p) as f:
                    c.reply(msg, {"content": f.read()})
            else:
                # Gemini 0.61.0 cannot tell a JSON-RPC "not found" error from a real failure
                # (it tests `err instanceof Error` on the plain error object), so the write
                # of a NEW file fails with "Error checking existing file". Answering a missing
                # file with empty content works.
                c.reply(msg, {"content": ""})
        elif m == "fs/write_text_file":
            with open(msg["params"]["path"], "w") as f:
                f.write(msg["params"]["content"])
            c.reply(msg, None)
    finish(s)
    check(os.path.exists(os.path.join(sb.cwd, "notes.txt")), "notes.txt missing")
    check(s.seen(lambda o: o.get("method") == "fs/write_text_file"), "no fs/write_text_file")
    return s


def sc_set_mode(sb, mock):
    """session/set_mode yolo: a shell command then runs without a permission request."""
    s, c = start(sb, mock)
    sid = new_session(c, sb)
    c.request("session/set_mode", {"sessionId": sid, "modeId": "yolo"})
    pid = prompt(c, sid, "Create the file. [[mock:shell touch yolo.txt]]")
    c.response(pid, "session/prompt", 60)
    finish(s)
    check(not s.seen(lambda o: o.get("method") == "session/request_permission"), "yolo still asked")
    check(os.path.exists(os.path.join(sb.cwd, "yolo.txt")), "yolo.txt missing")
    return s


def age_session_file(sb, sid):
    """Gemini 0.61.0 names the transcript chats/session-<YYYY-MM-DDTHH-MM>-<id[:8]>.jsonl.
    session/load first starts a fresh recording for the same id, which, within the same
    minute, is the SAME file: the history is overwritten and the load fails with "No
    previous sessions found for this project". A real resume happens minutes later; the
    test makes the first file look older instead of sleeping to the next minute."""
    import glob
    import re
    for path in glob.glob(os.path.join(sb.home, ".gemini", "tmp", "*", "chats", "session-*.jsonl")):
        if sid[:8] in os.path.basename(path):
            os.rename(path, re.sub(r"session-[0-9T-]+-(?=%s)" % sid[:8], "session-2000-01-01T00-00-", path))


def sc_resume(sb, mock):
    """session/load in a second process replays the history as session/update
    notifications, then takes a new prompt."""
    s1, c1 = start(sb, mock)
    sid = new_session(c1, sb)
    c1.response(prompt(c1, sid, "Remember the word kiwi. [[mock:text]]"), "session/prompt", 60)
    finish(s1)
    age_session_file(sb, sid)
    s, c = start(sb, mock)
    c.request("session/load", {"sessionId": sid, "cwd": sb.cwd, "mcpServers": []})
    c.response(prompt(c, sid, "What was the word? [[mock:text]]"), "session/prompt", 60)
    finish(s)
    check("kiwi" in json.dumps(mock.requests()[-1]["body"]["contents"]), "resumed request lacks history")
    s.records = s1.records + [{"dir": "meta", "ms": 0, "line": "restart: session/load " + sid}] + s.records
    return s


def sc_unknown(sb, mock):
    """An unknown method gets a JSON-RPC error (-32601); an unknown notification is
    ignored; the session still works afterwards."""
    s, c = start(sb, mock)
    rid = c.request("no/such/method", {}, wait=False)
    r = s.expect(lambda o: o.get("id") == rid and "method" not in o, 20, "error response")
    check("error" in r, "unknown method did not give an error")
    c.notify("no/such/notification", {"x": 1})
    sid = new_session(c, sb)
    res = c.response(prompt(c, sid, "Say hello. [[mock:text]]"), "session/prompt", 60)
    finish(s)
    check(res.get("stopReason") == "end_turn", "stopReason %r" % res.get("stopReason"))
    return s


SCENARIOS = {
    "approve": sc_approve,
    "deny": sc_deny,
    "interrupt": sc_interrupt,
    "interrupt_unanswered": sc_interrupt_unanswered,
    "allow_always": sc_allow_always,
    "write": sc_write,
    "write_fs": sc_write_fs,
    "set_mode": sc_set_mode,
    "resume": sc_resume,
    "unknown": sc_unknown,
}


def main(names):
    return lib.run_scenarios(AGENT, SCENARIOS, names)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
