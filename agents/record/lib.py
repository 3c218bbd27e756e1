"""Shared helpers for the recorders: start the mock, run a CLI, log both directions.

A recording is JSON lines, one per protocol line, in the order they happened:

    {"dir": "in",  "ms": 12, "line": "<exact line written to the CLI's stdin>"}
    {"dir": "out", "ms": 80, "line": "<exact line the CLI wrote on stdout>"}

"line" is the raw text without its newline (not re-encoded), so a fake agent can
replay it byte for byte.  Machine-specific paths are replaced by placeholders:
{{CWD}} (the session's working directory) and {{HOME}} (the temporary HOME).
"ms" is milliseconds since the CLI was started.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
AGENTS = os.path.dirname(HERE)
MOCK = os.path.join(AGENTS, "mock", "model_api.py")
CACHE = os.environ.get("MUXAGENT_AGENT_CACHE") or os.path.join(
    os.path.expanduser("~"), ".cache", "muxagent", "agents")


def bin_path(agent, name):
    p = os.path.join(CACHE, agent, "node_modules", ".bin", name)
    if not os.path.exists(p):
        sys.exit("%s not installed: run agents/install first (looked for %s)" % (name, p))
    return p


class Mock:
    """The mock model API as a child process; stops itself after max_seconds anyway."""

    def __init__(self, log_path, max_seconds=240):
        self.log_path = log_path
        self.proc = subprocess.Popen(
            [sys.executable, MOCK, "--log", log_path, "--max-seconds", str(max_seconds)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("PORT="):
            raise RuntimeError("mock did not start: %r" % line)
        self.port = int(line[5:])

    def requests(self):
        if not os.path.exists(self.log_path):
            return []
        with open(self.log_path) as f:
            return [json.loads(l) for l in f if l.strip()]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Sandbox:
    """A temporary HOME and working directory, removed on close."""

    def __init__(self, prefix):
        # Not under /tmp for Codex's sake is not needed; see README. Keep it simple.
        self.root = tempfile.mkdtemp(prefix="muxagent-%s-" % prefix)
        self.sessions = []
        self.home = os.path.join(self.root, "home")
        self.cwd = os.path.join(self.root, "work")
        os.makedirs(self.home)
        os.makedirs(self.cwd)

    def scrub(self, s):
        # Longest first: cwd and home both live under root.
        for real, ph in ((self.cwd, "{{CWD}}"), (self.home, "{{HOME}}"), (self.root, "{{ROOT}}")):
            s = s.replace(real, ph)
            # Paths on macOS-like realpaths or JSON-escaped slashes.
            s = s.replace(real.replace("/", "\\/"), ph)
        return s

    def close(self, keep=False):
        if keep:
            print("kept sandbox", self.root, file=sys.stderr)
        else:
            shutil.rmtree(self.root, ignore_errors=True)


class Session:
    """One CLI process speaking newline-delimited JSON on stdin/stdout."""

    def __init__(self, argv, env, cwd, sandbox, timeout=120):
        self.sandbox = sandbox
        sandbox.sessions.append(self)
        self.t0 = time.monotonic()
        self.records = []
        self.objs = []
        self.cursor = 0
        self.eof = False
        self.cond = threading.Condition()
        self.stderr_lines = []
        if os.environ.get("STRACE_DIR"):
            # Debug aid: which network connections does the CLI attempt?
            os.makedirs(os.environ["STRACE_DIR"], exist_ok=True)
            argv = ["strace", "-f", "-qq", "-e", "trace=connect,sendto,sendmmsg", "-s", "120",
                    "-o", os.path.join(os.environ["STRACE_DIR"], "strace-%d.txt" % len(sandbox.sessions))] + argv
        self.proc = subprocess.Popen(
            ["timeout", "-k", "5", str(timeout)] + argv, env=env, cwd=cwd,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True)
        self.lock = threading.Lock()
        threading.Thread(target=self._read_out, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def ms(self):
        return int((time.monotonic() - self.t0) * 1000)

    def _record(self, direction, raw):
        with self.lock:
            self.records.append({"dir": direction, "ms": self.ms(), "line": raw})

    def _read_out(self):
        for b in self.proc.stdout:
            raw = b.decode("utf-8", "replace").rstrip("\n").rstrip("\r")
            self._record("out", raw)
            try:
                obj = json.loads(raw)
            except ValueError:
                obj = None
            with self.cond:
                self.objs.append(obj)
                self.cond.notify_all()
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    def _read_err(self):
        for b in self.proc.stderr:
            self.stderr_lines.append(b.decode("utf-8", "replace").rstrip("\n"))

    def send(self, obj):
        raw = json.dumps(obj, separators=(",", ":"))
        self._record("in", raw)
        self.proc.stdin.write((raw + "\n").encode())
        self.proc.stdin.flush()

    def expect(self, pred, timeout=60, what="message"):
        """Wait for the first stdout JSON object after the previous match for which
        pred(obj) is true. A timeout does not move the cursor."""
        deadline = time.monotonic() + timeout
        i = self.cursor
        with self.cond:
            while True:
                while i < len(self.objs):
                    obj = self.objs[i]
                    i += 1
                    if obj is not None and pred(obj):
                        self.cursor = i
                        return obj
                if self.eof:
                    raise EOFError("CLI closed stdout while waiting for %s; stderr tail:\n%s" % (
                        what, "\n".join(self.stderr_lines[-30:])))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("timed out waiting for %s; stderr tail:\n%s" % (
                        what, "\n".join(self.stderr_lines[-20:])))
                self.cond.wait(left)

    def seen(self, pred):
        """All stdout objects so far matching pred (ignores the cursor)."""
        with self.cond:
            return [o for o in self.objs if o is not None and pred(o)]

    def drain(self, seconds):
        """Let whatever arrives in the next few seconds be recorded."""
        time.sleep(seconds)

    def close_stdin(self):
        try:
            self.proc.stdin.close()
        except OSError:
            pass

    def wait(self, timeout=20):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.proc.wait(5)

    def kill(self):
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def save(self, path, extra_meta=None):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            for r in self.records:
                r = dict(r, line=self.sandbox.scrub(r["line"]))
                f.write(json.dumps(r, ensure_ascii=False) + "\n")


def base_env(sandbox):
    """A minimal environment: nothing of the caller's leaks into the CLI."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": sandbox.home,
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "TMPDIR": os.path.join(sandbox.root, "tmp"),
    }


def ensure_tmp(sandbox):
    os.makedirs(os.path.join(sandbox.root, "tmp"), exist_ok=True)


def fixture_path(agent, scenario):
    return os.path.join(AGENTS, "fixtures", agent, scenario + ".jsonl")


def summarize_requests(reqs, sandbox):
    """A compact view of what the CLI sent to the model API (for the README / debugging)."""
    out = []
    for r in reqs:
        b = r.get("body") or {}
        item = {"method": r["method"], "path": r["path"]}
        if isinstance(b, dict):
            if "model" in b:
                item["model"] = b["model"]
            tools = b.get("tools")
            if isinstance(tools, list):
                names = []
                for t in tools:
                    if isinstance(t, dict):
                        if "functionDeclarations" in t:
                            names += [fd.get("name") for fd in t["functionDeclarations"]]
                        else:
                            names.append(t.get("name") or t.get("type"))
                item["tools"] = names
            last = None
            for key in ("messages", "input", "contents"):
                v = b.get(key)
                if isinstance(v, list) and v:
                    last = v[-1]
            if last is not None:
                t = json.dumps(last, ensure_ascii=False)
                item["last_input"] = t if len(t) <= 600 else t[:600] + "..."
        a = r.get("answer")
        item["answer"] = a[:2] if isinstance(a, list) else a
        out.append(json.loads(sandbox.scrub(json.dumps(item))))
    return out


RUNS = os.path.join(AGENTS, ".runs")  # git-ignored: raw request logs and stderr of the last run


def save_requests(agent, scenario, mock, sandbox):
    """Compact summary of the model API requests, committed next to the fixture."""
    path = os.path.join(AGENTS, "fixtures", agent, "model-requests", scenario + ".jsonl")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        for item in summarize_requests(mock.requests(), sandbox):
            f.write(json.dumps(item, ensure_ascii=False) + "\n")


def keep_run_log(agent, scenario, sandbox):
    """Full request bodies and the CLI's stderr, for debugging (not committed)."""
    d = os.path.join(RUNS, agent, scenario)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    src = os.path.join(sandbox.root, "requests.jsonl")
    if os.path.exists(src):
        shutil.copy(src, os.path.join(d, "requests.jsonl"))
    for i, s in enumerate(sandbox.sessions):
        with open(os.path.join(d, "stderr-%d.txt" % i), "w") as f:
            f.write("\n".join(s.stderr_lines) + "\n")
        with open(os.path.join(d, "protocol-%d.jsonl" % i), "w") as f:
            for r in s.records:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")


def run_scenarios(agent, scenarios, names):
    """Run the named scenarios (all when none are named); print PASS/FAIL lines;
    return the process exit status."""
    names = names or list(scenarios)
    unknown = [n for n in names if n not in scenarios]
    if unknown:
        print("unknown scenario(s) for %s: %s (have: %s)" % (agent, ", ".join(unknown), ", ".join(scenarios)))
        return 2
    failed = 0
    for name in names:
        sb = Sandbox(agent + "-" + name)
        ensure_tmp(sb)
        mock = Mock(os.path.join(sb.root, "requests.jsonl"))
        t0 = time.monotonic()
        ok = False
        try:
            s = scenarios[name](sb, mock)
            if not os.environ.get("NO_SAVE"):
                s.save(fixture_path(agent, name))
                save_requests(agent, name, mock, sb)
            ok = True
            print("PASS %s/%s (%.1f s)" % (agent, name, time.monotonic() - t0), flush=True)
        except Exception as e:  # noqa: BLE001 - report and go on with the next scenario
            failed += 1
            print("FAIL %s/%s: %s: %s" % (agent, name, type(e).__name__, e), flush=True)
        finally:
            for s in sb.sessions:
                if s.proc.poll() is None:
                    s.kill()
            mock.stop()
            keep_run_log(agent, name, sb)
            sb.close(keep=not ok and bool(os.environ.get("KEEP")))
    return 1 if failed else 0
